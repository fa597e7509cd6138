"""``python -m lguest`` is the same as the ``lguest`` command."""

from lguest.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

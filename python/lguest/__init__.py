"""lguest: Rusty Russell's lguest hypervisor, rebuilt as a Python package.

The guest is an unmodified i386 lguest kernel (2.6.32 ABI) or the bundled demo
guest; the host is the Rust extension ``lguest._core``, which interprets it;
this package is the Launcher, which loads the guest and serves it.

Run one from Python with :class:`Guest`, or from a shell with ``lguest run``.
Loading the kernel needs only this package; running it needs the extension,
which is imported when the first guest is built.
"""

from lguest.errors import GuestFault, LaunchError
from lguest.guest import Guest
from lguest.launcher import GuestExit

__version__ = "0.1.0"

__all__ = ["Guest", "GuestExit", "GuestFault", "LaunchError", "__version__"]

"""The ``lguest`` command.

``lguest run [options] [KERNEL] [[--] KERNEL_ARG ...]`` boots a kernel (or the
bundled demo guest) and runs it until it stops.  Whatever goes wrong, the user
sees one line on standard error starting with ``lguest:`` -- never a Python
traceback -- and a non-zero exit status:

- 0: the guest powered off;
- 1: the kernel could not be loaded, or the guest crashed or was killed;
- 2: the guest asked to reboot (not supported yet), or the command line was
  wrong (argparse's usage error);
- 130: interrupted with Ctrl-C.

``lguest journey [--markdown] [CHAPTER]`` prints the guided tour of the sources
(see :mod:`lguest.journey`); an unknown chapter is a usage error (2).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
from collections.abc import Sequence

from lguest import __version__, journey
from lguest.errors import LaunchError
from lguest.launcher import EXIT_DIED, EXIT_POWEROFF, EXIT_RESTART, GuestExit, Launcher
from lguest.layout import MAX_MEMORY_MIB

__all__ = ["build_parsers", "main"]

PROG = "lguest"
#: Conventional exit status after SIGINT (128 + 2).
EXIT_INTERRUPTED = 130
#: argparse's status for a usage error.
EXIT_USAGE = 2

DESCRIPTION = """\
Run i386 Linux guests under lguest, Rusty Russell's teaching hypervisor,
rebuilt as an interpreter: no /dev/lguest, no root, no kernel module."""

EPILOG = """\
examples:
  lguest run                        boot the bundled demo guest
  lguest run -m 128 vmlinux console=hvc0
  lguest run bzImage --initrd initrd.img -- root=/dev/ram0 quiet
  lguest journey H | less           read the Host chapter of the tour

Use "lguest run --help" for the options of run."""

RUN_DESCRIPTION = """\
Boot KERNEL and run it until it powers off, reboots or dies.  The guest's
console is this terminal's standard output."""

RUN_EPILOG = f"""\
KERNEL is an i386 vmlinux (ELF) or bzImage built with lguest guest support
(the 2.6.32 ABI); without it the demo guest that ships with lguest runs.
The words after KERNEL form the kernel command line; put "--" before them
if one of them starts with "-".

examples:
  lguest run
  lguest run -m 256 vmlinux root=/dev/vda
  lguest run bzImage --initrd initrd.img -- -v rdinit=/bin/sh

exit status:
  {EXIT_POWEROFF}    the guest powered off
  {EXIT_DIED}    the kernel could not be loaded, or the guest crashed or was killed
  {EXIT_RESTART}    the guest asked to reboot (not supported yet), or a usage error
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""

_CHAPTER_LIST = ", ".join(f"{ch} ({title})" for ch, title in journey.CHAPTERS.items())
JOURNEY_DESCRIPTION = f"""\
Print the Journey: the comments that explain lguest, in reading order, each
with the code it describes.  Chapters: {_CHAPTER_LIST}."""

_WHOLE_NUMBER = re.compile(r"[0-9]+")


def _memory_size(text: str) -> int:
    """argparse type for -m: a whole, positive number of MiB."""
    if not _WHOLE_NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a whole number of MiB, not {text!r}")
    value = int(text)
    if not 1 <= value <= MAX_MEMORY_MIB:
        raise argparse.ArgumentTypeError(
            f"memory must be between 1 and {MAX_MEMORY_MIB} MiB, not {value}"
        )
    return value


def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level parser and the parser of ``lguest run``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    commands.required = True

    run = commands.add_parser(
        "run",
        help="boot a kernel (or the demo guest) and run it until it stops",
        description=RUN_DESCRIPTION,
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [options] [KERNEL] [[--] KERNEL_ARG ...]",
    )
    run.add_argument(
        "-m",
        "--memory",
        metavar="MIB",
        type=_memory_size,
        default=64,
        help="guest RAM in MiB (default: %(default)s)",
    )
    run.add_argument("--initrd", metavar="FILE", help="load FILE as the initial RAM disk")
    run.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="describe what the Launcher does, on standard error",
    )
    run.add_argument(
        "kernel",
        metavar="KERNEL",
        nargs="?",
        help="vmlinux or bzImage to boot (default: the bundled demo guest)",
    )
    run.add_argument(
        "kernel_args",
        metavar="KERNEL_ARG",
        nargs="*",
        help="kernel command-line words, joined with spaces",
    )

    tour = commands.add_parser(
        "journey",
        help="print the guided tour of the sources",
        description=JOURNEY_DESCRIPTION,
    )
    tour.add_argument(
        "chapter",
        metavar="CHAPTER",
        nargs="?",
        help="print only this chapter (" + " ".join(journey.CHAPTERS) + ")",
    )
    tour.add_argument("--markdown", action="store_true", help="print Markdown instead of text")
    return parser, run


def _error(message: str) -> None:
    """Print one ``lguest: ...`` line on standard error."""
    line = " ".join(message.split())
    print(f"{PROG}: {line}", file=sys.stderr, flush=True)


def _describe_os_error(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{os.fsdecode(exc.filename)}: {exc.strerror}"
    return exc.strerror or str(exc)


def _split_kernel_args(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split at the first "--": everything after it is kernel command line, verbatim."""
    words = list(words)
    if "--" in words:
        at = words.index("--")
        return words[:at], words[at + 1 :]
    return words, []


def _report(result: GuestExit) -> int:
    if result.restart:
        _error("the guest asked to reboot; rebooting is not supported yet")
    elif not result.poweroff:
        _error(f"guest died: {result.reason}")
    return result.status


def run_command(args: argparse.Namespace, kernel_args: Sequence[str]) -> int:
    """``lguest run``: boot and run one guest; return the exit status."""
    handler: logging.Handler | None = None
    logger = logging.getLogger("lguest")
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        with Launcher(
            args.kernel,
            args.memory,
            " ".join(kernel_args),
            args.initrd,
            output=sys.stdout.buffer,
        ) as launcher:
            launcher.boot()
            result = launcher.run()
    except LaunchError as exc:
        _error(str(exc))
        return EXIT_DIED
    except ImportError as exc:
        _error(f"the lguest core (lguest._core) cannot be loaded: {exc}")
        return EXIT_DIED
    except BrokenPipeError:
        # Whoever read our output has gone (``lguest run | head``); say nothing
        # more, and stop Python from complaining about it at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_DIED
    except OSError as exc:
        _error(_describe_os_error(exc))
        return EXIT_DIED
    finally:
        if handler is not None:
            logger.removeHandler(handler)
    return _report(result)


def journey_command(args: argparse.Namespace) -> int:
    """``lguest journey``: print the tour, or one chapter of it."""
    chapter: str | None = args.chapter.upper() if args.chapter else None
    if chapter is not None and chapter not in journey.CHAPTERS:
        _error(f"unknown chapter {args.chapter!r} (chapters: {' '.join(journey.CHAPTERS)})")
        return EXIT_USAGE
    try:
        tour = journey.load()
    except (OSError, ValueError) as exc:
        _error(f"the journey cannot be read from this installation: {exc}")
        return EXIT_DIED
    if args.markdown:
        text = journey.render_markdown(tour, chapter)
    else:
        tty = sys.stdout.isatty()
        width = min(80, shutil.get_terminal_size().columns) if tty else 80
        color = tty and "NO_COLOR" not in os.environ
        text = journey.render_text(tour, chapter, width=width, color=color)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # ``lguest journey | head``: the reader has gone, which is fine.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lguest`` command; returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        parser, run = build_parsers()
        if words and words[0] == "run":
            options, after = _split_kernel_args(words[1:])
            args = run.parse_intermixed_args(options)
            return run_command(args, [*args.kernel_args, *after])
        # Anything else is journey, --help, --version or a mistake; argparse
        # deals with the last three (and exits).
        args = parser.parse_args(words)
        if args.command == "journey":
            return journey_command(args)
        parser.print_usage(sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())

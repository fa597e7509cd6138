"""The ``lguest`` command.

``lguest run [options] [KERNEL] [[--] KERNEL_ARG ...]`` boots a kernel (or the
bundled demo guest) and runs it until it stops.  Whatever goes wrong, the user
sees one line on standard error starting with ``lguest:`` -- never a Python
traceback -- and a non-zero exit status:

- 0: the guest powered off;
- 1: the kernel or a device could not be set up, or the guest crashed or was
  killed;
- 2: the guest asked to reboot and ``--no-reboot`` was given (without it the
  guest is rebooted in-process), or the command line was wrong (argparse's
  usage error);
- 130: interrupted with Ctrl-C (three Ctrl-Cs within a second at the guest's
  console, whose terminal passes Ctrl-C to the guest).

``lguest journey [--markdown] [CHAPTER]`` prints the guided tour of the sources
(see :mod:`lguest.journey`); an unknown chapter is a usage error (2).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from lguest import __version__, journey
from lguest.bus import LguestBus
from lguest.devices import Device
from lguest.devices.block import Block
from lguest.devices.console import Console
from lguest.devices.net import (
    Net,
    NetSpec,
    TapBackend,
    TunnetSpec,
    UnixSocketBackend,
    parse_net_spec,
    parse_tunnet,
)
from lguest.devices.rng import Rng
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
  lguest run --block disk.img --rng bzImage root=/dev/vda
  lguest run bzImage --initrd initrd.img -- root=/dev/ram0 quiet
  lguest journey H | less           read the Host chapter of the tour

Use "lguest run --help" for the options of run."""

RUN_DESCRIPTION = """\
Boot KERNEL and run it until it powers off or dies, rebooting it when it asks.
The guest's console (hvc0) is this terminal: keys go to the guest as typed,
Ctrl-C included; press Ctrl-C three times within a second to stop the guest.
Devices appear in the guest in command-line order (/dev/vda, /dev/vdb, ...;
eth0, eth1, ...), the console last."""

RUN_EPILOG = f"""\
KERNEL is an i386 vmlinux (ELF) or bzImage built with lguest guest support
(the 2.6.32 ABI); without it the demo guest that ships with lguest runs.
The words after KERNEL form the kernel command line; put "--" before them
if one of them starts with "-".  A kernel built with CONFIG_X86_PAE needs
--pae: lguest cannot tell which page-table format a kernel uses.  A
bzImage's compressed kernel is unpacked by lguest itself, which is much
faster than letting the guest decompress it; --guest-decompress runs the
bzImage's own decompressor instead.

devices:
  --block FILE[,ro]    a disk on the raw image FILE; ",ro" makes it read-only
  --tunnet IP[:MAC]    a network card on a new tap interface with host address IP
  --tunnet bridge:NAME[:MAC]
                       ... on a tap interface added to bridge NAME (needs root)
  --net unix:PATH[,mac=MAC]
                       a network card linked to another lguest through the Unix
                       socket PATH (the first to start listens, the second connects)
  --rng                a hardware random number generator (/dev/hwrng)

examples:
  lguest run
  lguest run -m 256 vmlinux root=/dev/vda
  lguest run bzImage --initrd initrd.img -- -v rdinit=/bin/sh
  lguest run --pae -m 128 bzImage-pae --initrd initrd.img -- console=hvc0
  lguest run --block disk.img --block cd.iso,ro --tunnet 192.168.19.1 vmlinux

exit status:
  {EXIT_POWEROFF}    the guest powered off
  {EXIT_DIED}    the kernel or a device could not be set up, or the guest crashed
       or was killed
  {EXIT_RESTART}    the guest asked to reboot and --no-reboot was given, or a usage error
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C, or three Ctrl-Cs at the guest's console)"""

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


def _block_spec(text: str) -> tuple[str, bool]:
    """argparse type for --block: FILE or FILE,ro."""
    path, readonly = text, False
    if text.endswith(",ro"):
        path, readonly = text[: -len(",ro")], True
    elif text.endswith(",rw"):
        path = text[: -len(",rw")]
    if not path:
        raise argparse.ArgumentTypeError(f"expected FILE or FILE,ro, not {text!r}")
    return path, readonly


def _tunnet_spec(text: str) -> TunnetSpec:
    try:
        return parse_tunnet(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (expected IP[:MAC] or bridge:NAME[:MAC])")


def _net_spec(text: str) -> NetSpec:
    try:
        return parse_net_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))


class _AddDevice(argparse.Action):
    """Append (kind, value) to ``devices``, keeping the command line's order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        devices = list(getattr(namespace, "devices", None) or [])
        devices.append((self.const, values))
        namespace.devices = devices


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
        "--pae",
        action="store_true",
        help="the kernel was built with CONFIG_X86_PAE: use PAE (3-level) page tables",
    )
    run.add_argument(
        "--guest-decompress",
        action="store_true",
        help="let a bzImage decompress itself in the guest instead of unpacking it on the host",
    )
    run.set_defaults(devices=[])
    run.add_argument(
        "--block",
        metavar="FILE[,ro]",
        action=_AddDevice,
        const="block",
        type=_block_spec,
        help="add a disk backed by the raw image FILE (repeatable)",
    )
    run.add_argument(
        "--tunnet",
        metavar="SPEC",
        action=_AddDevice,
        const="tunnet",
        type=_tunnet_spec,
        help="add a network card on a tap device: IP[:MAC] or bridge:NAME[:MAC] (root)",
    )
    run.add_argument(
        "--net",
        metavar="SPEC",
        action=_AddDevice,
        const="net",
        type=_net_spec,
        help="add a network card linked through a Unix socket: unix:PATH[,mac=MAC]",
    )
    run.add_argument(
        "--rng",
        action=_AddDevice,
        const="rng",
        nargs=0,
        help="add a random number generator",
    )
    run.add_argument(
        "--no-reboot",
        action="store_true",
        help="exit with status 2 when the guest asks to reboot, instead of rebooting it",
    )
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
        _error("the guest asked to reboot (not rebooting: --no-reboot)")
    elif not result.poweroff:
        _error(f"guest died: {result.reason}")
    return result.status


def build_devices(specs: Sequence[tuple[str, Any]]) -> list[Device]:
    """The devices of ``lguest run``'s options, in order; LaunchError if one cannot be made.

    Devices made before the failing one are closed again.
    """
    devices: list[Device] = []
    try:
        for kind, value in specs:
            if kind == "block":
                path, readonly = value
                devices.append(Block(path, readonly))
            elif kind == "tunnet":
                devices.append(Net(TapBackend(value), value.mac))
            elif kind == "net":
                devices.append(Net(UnixSocketBackend(value.path), value.mac))
            elif kind == "rng":
                devices.append(Rng())
            else:  # pragma: no cover - the parser makes only these
                raise AssertionError(kind)
    except BaseException:
        for device in devices:
            device.close()
        raise
    return devices


def _console_input() -> int | None:
    """Standard input's descriptor, or None if there is none."""
    try:
        return sys.stdin.fileno() if sys.stdin is not None else None
    except (OSError, ValueError):
        return None


@contextmanager
def _signals_as_exits() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into SystemExit while the guest runs, so that every
    cleanup (the terminal's mode above all) runs on the way out."""

    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous: list[tuple[int, Callable[[int, Any], Any] | int | None]] = []
    for signum in (int(signal.SIGTERM), int(signal.SIGHUP)):
        try:
            previous.append((signum, signal.signal(signum, leave)))
        except (ValueError, OSError):  # not the main thread
            pass
    try:
        yield
    finally:
        for signum, handler in previous:
            if handler is not None:
                signal.signal(signum, handler)


# P:030 One boot, end to end: what `lguest run` does, and the map of the
# journey ahead.  The Launcher reads and checks the kernel before anything
# else (L:105), so a bad file costs nothing.  The bus gets its devices
# (L:200), the console last.  boot() allocates the guest's memory, lays out
# the devices and loads the kernel, then hands over to the Host (see L:145
# and H:930).  run() is the Launcher's loop (L:150): the Rust core interprets
# the guest (H:940) from its first instruction (G:100) until it has a
# notification for us or the guest dies.  Dying is the only way out: power
# off, crash or reboot (L:170), and a reboot comes back around the loop
# (L:270).  Leaving the `with` closes the devices and gives the terminal
# back (L:180).
def run_command(args: argparse.Namespace, kernel_args: Sequence[str]) -> int:
    """``lguest run``: boot and run one guest; return the exit status."""
    logger = logging.getLogger("lguest")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        with _signals_as_exits():
            launcher = Launcher(
                args.kernel,
                args.memory,
                " ".join(kernel_args),
                args.initrd,
                output=sys.stdout.buffer,
                pae=args.pae,
                unpack=not args.guest_decompress,
            )
            launcher.prepare()
            bus = LguestBus(build_devices(args.devices))
            launcher.bus = bus
            bus.bind(launcher.stop_guest, launcher.interrupt)
            with launcher:
                bus.add(Console(_console_input(), sys.stdout.buffer))
                launcher.boot()
                result = launcher.run()
                while result.restart and not args.no_reboot:
                    logger.info("the guest asked to reboot: rebooting")
                    launcher.reboot()
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
        logger.removeHandler(handler)
        logger.setLevel(old_level)
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

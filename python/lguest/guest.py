"""The embedding API: run a guest from Python.

::

    from lguest import Guest

    with Guest(memory=32) as guest:       # the bundled demo guest
        result = guest.run()
    print(result.poweroff, result.status)  # True 0
    print(guest.output.decode())           # what it printed

With devices, and a script at the console::

    with Guest("bzImage", memory=128, cmdline="root=/dev/vda") as guest:
        guest.add_block("disk.img")
        guest.add_rng()
        guest.expect("login:", timeout=60)
        guest.send("root\\n")
        guest.expect(rb"# $")
        guest.send("poweroff\\n")
        print(guest.run(timeout=30).status)

The kernel and initrd are read and checked when the ``Guest`` is created, so
a bad path or image raises :class:`~lguest.LaunchError` right there.  Devices
are added before the guest boots, which happens at the first :meth:`run`,
:meth:`expect` or :meth:`boot`; the console is always there, last.
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from lguest.bus import LguestBus
from lguest.devices import Device
from lguest.devices.block import Block
from lguest.devices.console import Console
from lguest.devices.net import Net, NetBackend, Switch, UnixSocketBackend
from lguest.devices.rng import Rng
from lguest.launcher import GuestExit, KernelSource, Launcher

if TYPE_CHECKING:
    from types import TracebackType

    from lguest.boot import BootInfo
    from lguest.layout import MemoryLayout

__all__ = ["ConsoleLog", "Guest"]


class ConsoleLog:
    """Where a :class:`Guest`'s console output goes: kept for :meth:`Guest.expect`,
    and copied to ``stream`` if there is one.  Written from device threads."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self.stream = stream
        self._data = bytearray()
        self._all = io.BytesIO() if stream is None else None
        self._lock = threading.Lock()
        #: Where the next expect() starts looking, as an offset into _data.
        self._start = 0
        #: Called after each write while someone waits for output.
        self.on_write: Callable[[], None] | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        chunk = bytes(data)
        with self._lock:
            self._data += chunk
            if self._all is not None:
                self._all.write(chunk)
        if self.stream is not None:
            self.stream.write(chunk)
        hook = self.on_write
        if hook is not None:
            hook()
        return len(chunk)

    def flush(self) -> None:
        if self.stream is not None:
            self.stream.flush()

    @property
    def collected(self) -> bytes:
        """Everything written, if there is no stream to copy it to."""
        return self._all.getvalue() if self._all is not None else b""

    def search(self, pattern: re.Pattern[bytes]) -> re.Match[bytes] | None:
        """Find ``pattern`` in what arrived since the last match; consume up to its end."""
        with self._lock:
            found = pattern.search(self._data, self._start)
            if found is not None:
                self._start = found.end()
                if self.stream is not None and self._start > 1 << 20:
                    # Only expect() needs the old output, and it has seen it.
                    del self._data[: self._start]
                    self._start = 0
            return found


# M:010 You have seen the whole machine; now change it.  The stops of this
# chapter are exercises, each placed on the code it starts from.  This
# class is the workbench for all of them: a few lines of Python boot a
# guest with the devices you choose, feed its console and wait for what it
# prints, which is how the tests in tests/ check the demo guest's selftest
# (`lguest run -- selftest` does the same by hand).
class Guest:
    """One lguest guest, ready to run.

    ``kernel``
        Path of an i386 ``vmlinux`` (ELF) or ``bzImage``; ``None`` runs the
        demo guest that ships with the package.
    ``memory``
        Guest RAM in MiB.
    ``cmdline``
        The kernel command line.
    ``initrd``
        Path of an initial RAM disk to load at the top of RAM.
    ``output``
        A binary stream for the guest's console output.  Without one, the
        output is collected and available as :attr:`output`.
    ``input``
        Where console input comes from: a file descriptor or file (a terminal
        is put in the console's mode while the guest lives).  Without one,
        input is what :meth:`send` sends.
    ``devices``
        Devices to add, in order (more can be added with the ``add_*``
        methods before the guest boots).
    ``pae``
        The kernel was built with ``CONFIG_X86_PAE`` (three-level page tables
        with 64-bit entries).  lguest cannot tell from the image; a mismatch
        makes the guest fail early in its boot.
    ``unpack``
        Unpack a bzImage's compressed kernel on the host and load the ELF
        inside (the default, and much faster); ``False`` lets the guest run
        its own decompressor, as the original Launcher did.
    """

    def __init__(
        self,
        kernel: KernelSource = None,
        memory: int = 64,
        cmdline: str | bytes = "",
        initrd: str | os.PathLike[str] | None = None,
        *,
        output: BinaryIO | None = None,
        input: int | IO[bytes] | IO[str] | None = None,
        devices: Sequence[Device] = (),
        pae: bool = False,
        unpack: bool = True,
    ) -> None:
        self._log = ConsoleLog(output)
        self._bus = LguestBus(devices)
        stream = cast(BinaryIO, self._log)
        self._launcher = Launcher(
            kernel, memory, cmdline, initrd, output=stream, bus=self._bus, pae=pae, unpack=unpack
        )
        try:
            self._launcher.prepare()
            #: The console device (always present, and last on the bus).
            self.console = Console(input, stream)
        except BaseException:
            self._launcher.close()
            raise
        self._booted = False

    # --- devices -------------------------------------------------------------

    def add_device(self, device: Device) -> Device:
        """Add any device (a :class:`~lguest.devices.Device`) before the console."""
        if self._booted:
            raise RuntimeError("devices must be added before the guest boots")
        return self._bus.add(device)

    def add_block(
        self,
        path: str | os.PathLike[str],
        readonly: bool = False,
        *,
        serial: str | bytes | None = None,
    ) -> Block:
        """Add a disk backed by the raw image ``path`` (``/dev/vda``, ``/dev/vdb``, ...)."""
        device = Block(path, readonly, serial=serial)
        try:
            self.add_device(device)
        except BaseException:
            device.close()
            raise
        return device

    def add_net(self, backend: NetBackend | Switch | str, mac: bytes | str | None = None) -> Net:
        """Add a network card on ``backend``: a :class:`~lguest.devices.net.Switch`,
        any backend object, or ``"unix:PATH"`` for a Unix-socket link."""
        if isinstance(backend, str):
            if not backend.startswith("unix:"):
                raise ValueError(f"unknown network backend {backend!r} (try unix:PATH)")
            backend = UnixSocketBackend(backend[len("unix:") :])
        device = Net(backend, mac)
        try:
            self.add_device(device)
        except BaseException:
            device.close()
            raise
        return device

    def add_rng(self) -> Rng:
        """Add an entropy device (``/dev/hwrng`` in the guest)."""
        device = Rng()
        self.add_device(device)
        return device

    # --- running ---------------------------------------------------------------

    def boot(self) -> None:
        """Build the guest now (otherwise the first run or expect does)."""
        if self._booted:
            return
        self._bus.add(self.console)
        self._booted = True
        self._launcher.boot()

    def run(self, timeout: float | None = None) -> GuestExit:
        """Run the guest until it powers off, reboots or dies; return how it ended.

        With ``timeout`` (seconds), raise :class:`TimeoutError` if it is still
        running then; it is paused, and another ``run`` or ``expect`` carries
        on.  Calling ``run`` again after the guest has ended returns the same
        result; after a reboot request, call :meth:`reboot` first.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must not be negative, not {timeout}")
        self.boot()
        return self._launcher.run(timeout)

    def reboot(self) -> None:
        """After the guest asked to reboot: build it afresh, with the same devices."""
        self._launcher.reboot()

    # --- the console -----------------------------------------------------------

    def send(self, text: str | bytes) -> None:
        """Type ``text`` at the guest's console (needs no ``input`` given)."""
        self.console.send(text)

    def expect(
        self, pattern: str | bytes | re.Pattern[bytes], timeout: float | None = 10.0
    ) -> re.Match[bytes]:
        """Run the guest until its console output matches ``pattern``; return the match.

        ``pattern`` is a regular expression (``str`` patterns are encoded as
        UTF-8) searched in the output that arrived since the previous match.
        Raises :class:`TimeoutError` after ``timeout`` seconds (the guest is
        paused, and can go on), or :class:`EOFError` if the guest stops first.
        """
        if isinstance(pattern, str):
            pattern = pattern.encode()
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
        found = self._log.search(regex)
        if found is not None:
            return found
        self.boot()
        match: list[re.Match[bytes]] = []

        def until() -> bool:
            hit = self._log.search(regex)
            if hit is not None:
                match.append(hit)
            return hit is not None

        self._log.on_write = self._launcher.poke
        try:
            ended = self._launcher.run_until(until, timeout)
        finally:
            self._log.on_write = None
        if match:
            return match[0]
        if until():
            return match[0]
        assert ended is not None
        raise EOFError(f"the guest stopped ({ended.reason}) before {regex.pattern!r} appeared")

    # --- state -----------------------------------------------------------------

    @property
    def output(self) -> bytes:
        """Console output collected so far (empty if an ``output`` stream was given)."""
        return self._log.collected

    @property
    def exit(self) -> GuestExit | None:
        """How the guest ended, once it has; None before."""
        return self._launcher.exit

    @property
    def instructions(self) -> int:
        """Guest instructions executed so far (0 before the guest boots)."""
        lguest = self._launcher.lguest
        return lguest.instructions if lguest is not None else 0

    @property
    def layout(self) -> MemoryLayout:
        """The guest-physical memory layout."""
        return self._launcher.layout

    @property
    def boot_info(self) -> BootInfo | None:
        """Where the kernel, initrd and command line were loaded (once booted)."""
        return self._launcher.boot_info

    @property
    def bus(self) -> LguestBus:
        """The lguest bus and its devices."""
        return self._bus

    def close(self) -> None:
        """Stop the devices and release the guest and its memory.  The Guest cannot run
        afterwards."""
        try:
            self._launcher.close()
        finally:
            if not self._booted:
                self.console.close()

    def __enter__(self) -> Guest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "not run" if self.exit is None else f"exited: {self.exit.reason}"
        return f"<Guest {self._launcher.layout.megabytes} MiB, {state}>"

"""The Launcher: build a guest, run it, and serve what it asks for.

This is the part of lguest that was the userspace program ``lguest`` in
Linux: it allocates the guest's memory, loads the kernel, tells the host side
(here the Rust core, ``lguest._core``) to initialise the guest, and then loops
running it, handling every notification the core hands back, until the guest
dies.

How a run ends, and the exit status the command line gives for it:

====================  ======  ===============================================
guest did             status  ``GuestExit``
====================  ======  ===============================================
power off             0       ``poweroff`` true, reason ``"CRASH: Power down"``
crash or was killed   1       reason says why (a panic message, a host reason
                              such as ``"bad read address ..."``, or the
                              Launcher's own ``"bad NOTIFY ..."``)
reboot                2       ``restart`` true
====================  ======  ===============================================

(The original Launcher exited with status 1 on power-off and re-executed
itself to reboot.  Power-off is the orderly way for a guest to finish, so it
is success here.  A reboot is rebuilt in-process by :meth:`Launcher.reboot`:
fresh memory, the kernel loaded again, the same devices; ``lguest run`` does
that unless told ``--no-reboot``, in which case it exits with status 2.)
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, BinaryIO, Protocol

from lguest.boot import BootInfo, BootPlan, plan_guest, read_file
from lguest.errors import GuestFault, LaunchError
from lguest.layout import MemoryLayout

if TYPE_CHECKING:
    from types import TracebackType

    from lguest._core import GuestDied, Lguest

__all__ = [
    "EXIT_DIED",
    "EXIT_POWEROFF",
    "EXIT_RESTART",
    "POWER_DOWN_REASON",
    "Bus",
    "GuestExit",
    "KernelSource",
    "Launcher",
    "demo_kernel",
]

log = logging.getLogger("lguest")

#: A kernel the user names: a path, or None for the bundled demo guest.
KernelSource = str | os.PathLike[str] | None

#: Where the demo guest lives inside the package.
DEMO_GUEST = "guests/demo.elf"

# L:170 Death and exit codes.
#
# A guest never returns: it powers off, reboots, crashes or is killed, and in
# every case the core's run() raises GuestDied carrying the reason.  A power-off
# is the guest's SHUTDOWN hypercall with the text "Power down", which the host
# turns into the reason "CRASH: Power down" (the same path as a panic, hence the
# prefix); a reboot is SHUTDOWN with the restart flag, which the core reports as
# errno ERESTART and ``restart`` true.  We keep the three apart because they
# mean different things to whoever started the guest.
EXIT_POWEROFF = 0
EXIT_DIED = 1
EXIT_RESTART = 2
POWER_DOWN_REASON = "CRASH: Power down"
#: errno the core uses for a reboot request (Linux's ERESTART).
ERESTART = 85


@dataclass(frozen=True)
class GuestExit:
    """How a guest's run ended."""

    #: The death reason, e.g. "CRASH: Power down" or "bad read address 0x...".
    reason: str
    #: The guest asked to be rebooted.
    restart: bool = False

    @property
    def poweroff(self) -> bool:
        """The guest powered itself off in an orderly way."""
        return not self.restart and self.reason == POWER_DOWN_REASON

    @property
    def status(self) -> int:
        """Exit status for a command: 0 power-off, 2 reboot, 1 anything else."""
        if self.restart:
            return EXIT_RESTART
        if self.poweroff:
            return EXIT_POWEROFF
        return EXIT_DIED


class Bus(Protocol):
    """What the Launcher needs from the lguest bus (the device side).

    Without a bus the Launcher runs with no devices, and the guest's only
    output is the early console.  A bus must:

    - in :meth:`setup`, before the guest is initialised, write the device
      descriptors into ``layout.descriptor_page`` and allocate its vrings with
      ``layout.alloc_pages`` (the guest's memory limit is fixed at
      initialisation, so this cannot happen later);
    - in :meth:`notify`, claim the NOTIFY addresses that are its own -- a
      device descriptor (status change) or a vring (start that device) -- by
      returning True; the Launcher treats anything unclaimed as early console
      output or a bad NOTIFY (abi-devices.md 2.7).  A guest mistake (say, a
      NOTIFY to a device that is already running) raises
      :class:`~lguest.errors.GuestFault`, which stops the guest with that reason;
    - in :meth:`close`, stop its worker threads.

    :class:`lguest.bus.LguestBus` is the implementation.  A bus may also have a
    ``bind(on_fault, on_interrupt)`` method, which the Launcher calls with two
    thread-safe callbacks: stop the guest with a reason (a device thread found
    the guest misbehaving), and stop it as if interrupted (the console's triple
    Ctrl-C).  ``setup`` is called again, with a fresh core and layout, when the
    guest reboots.
    """

    def setup(self, lguest: Lguest, layout: MemoryLayout) -> None: ...

    def notify(self, address: int) -> bool: ...

    def close(self) -> None: ...


def demo_kernel() -> tuple[bytes, str]:
    """The bundled demo guest image and the name to use for it in messages."""
    resource = resources.files("lguest").joinpath(DEMO_GUEST)
    try:
        return resource.read_bytes(), "demo.elf"
    except OSError:
        raise LaunchError(
            f"the bundled demo guest (lguest/{DEMO_GUEST}) is missing from this installation; "
            "name a kernel to run"
        ) from None


class Launcher:
    """One guest, from loading to death.

    ``Launcher(kernel, memory, cmdline, initrd)`` only remembers its arguments
    (and checks the memory size); :meth:`prepare` reads and checks the files;
    :meth:`boot` allocates the guest and initialises it; :meth:`run` boots if
    needed and runs the guest until it dies.  Early console output goes to
    ``output`` (default: the process's standard output), flushed after each
    write.  ``pae=True`` is for kernels built with CONFIG_X86_PAE: the core
    then builds and shadows PAE page tables (there is no way to detect it).
    ``unpack=False`` leaves a bzImage's compressed kernel to the guest's own
    decompressor instead of unpacking it on the host (L:125).
    """

    def __init__(
        self,
        kernel: KernelSource = None,
        memory: int = 64,
        cmdline: str | bytes = "",
        initrd: str | os.PathLike[str] | None = None,
        *,
        output: BinaryIO | None = None,
        bus: Bus | None = None,
        pae: bool = False,
        unpack: bool = True,
    ) -> None:
        self.kernel = kernel
        #: Whether a bzImage's compressed kernel is unpacked on the host.
        self.unpack = unpack
        #: Whether the kernel uses PAE page tables (tells the core at initialize).
        self.pae = pae
        self.cmdline = cmdline
        self.initrd = initrd
        self.output: BinaryIO = output if output is not None else sys.stdout.buffer
        self.bus = bus
        self.layout = MemoryLayout(memory)
        #: The core's guest, once booted.
        self.lguest: Lguest | None = None
        #: What was loaded where, once booted.
        self.boot_info: BootInfo | None = None
        #: How the guest ended, once it has.
        self.exit: GuestExit | None = None
        #: How many times the guest has been rebooted.
        self.reboots = 0
        self._guest_died: type[GuestDied] | None = None
        self._mem: memoryview | None = None
        self._closed = False
        self._plan: tuple[BootPlan, str, str] | None = None
        # Stopping a running guest from other threads (L:260).
        self._fault: str | None = None
        self._interrupt = False
        bind = getattr(bus, "bind", None)
        if bind is not None:
            bind(self.stop_guest, self.interrupt)

    def _read_kernel(self) -> tuple[bytes, str]:
        if self.kernel is None:
            return demo_kernel()
        return read_file(self.kernel, "kernel"), os.fspath(self.kernel)

    def prepare(self) -> None:
        """Read the kernel and initrd and check that they fit, touching no guest memory.

        :meth:`boot` does this itself if it was not done; doing it early reports
        a bad kernel before anything else happens.
        """
        if self._plan is not None:
            return
        kernel, kernel_name = self._read_kernel()
        initrd = read_file(self.initrd, "initrd") if self.initrd is not None else None
        initrd_name = os.fspath(self.initrd) if self.initrd is not None else "initrd"
        plan = plan_guest(
            self.layout.ram_size,
            kernel,
            kernel_name,
            self.cmdline,
            initrd,
            initrd_name,
            unpack=self.unpack,
        )
        self._plan = (plan, kernel_name, initrd_name)

    # L:145 Booting: the Launcher's last job before the guest runs.  The
    # order is forced by one fact: the core learns the guest's memory limit
    # once, at INITIALIZE, and reads boot_params then.  So the bus lays out
    # its devices first, which hands out the pages above RAM (L:100, L:200);
    # then the plan writes the kernel, initrd, boot_params and command line
    # (L:105); and only then do we call initialize(), where the Host builds
    # the guest's first page tables and registers (H:930).  The guest does
    # not run yet: that is run()'s job (L:150).

    def boot(self) -> None:
        """Build the guest: read the files, allocate memory, load, initialise.

        Everything the user gave is checked before any guest memory is
        allocated, so mistakes are reported quickly and the same way with or
        without the core.  Then the order is the original Launcher's
        (abi-devices.md 5.2): devices first (they allocate device pages, which
        moves the guest's memory limit), then the kernel, the initrd,
        boot_params and the command line, and INITIALIZE last, because the core
        reads boot_params then.
        """
        if self._closed:
            raise RuntimeError("this Launcher is closed")
        if self.lguest is not None:
            raise RuntimeError("this Launcher has already booted its guest")
        layout = self.layout
        self.prepare()
        assert self._plan is not None
        plan, kernel_name, initrd_name = self._plan

        # The extension is imported here rather than at the top so that
        # ``import lguest`` (and all of the loading code) works without it.
        from lguest import _core

        try:
            lguest = _core.Lguest(layout.total_size)
        except (MemoryError, ValueError) as e:
            raise LaunchError(f"cannot allocate {layout.megabytes} MiB of guest memory: {e}") from None
        self._guest_died = _core.GuestDied
        log.debug(
            "guest memory: %d MiB of RAM, descriptor page at %#x",
            layout.megabytes,
            layout.descriptor_page,
        )

        if self.bus is not None:
            self.bus.setup(lguest, layout)
        info = plan.write(lguest.mem)
        log.debug(
            "%s: %s at %#x-%#x, entry %#x",
            kernel_name,
            info.kernel.kind,
            info.kernel.start,
            info.kernel.end - 1,
            info.kernel.entry,
        )
        if info.initrd is not None:
            log.debug(
                "%s: initrd at %#x, %d bytes", initrd_name, info.initrd.address, info.initrd.size
            )
        log.debug("command line: %r", info.command_line.decode("utf-8", "replace"))
        log.debug(
            "initialize: pfn_limit %#x, start %#x%s",
            layout.pfn_limit,
            info.kernel.entry,
            ", PAE page tables" if self.pae else "",
        )
        lguest.initialize(layout.pfn_limit, info.kernel.entry, pae=self.pae)
        self.lguest = lguest
        self._mem = lguest.mem
        self.boot_info = info

    # L:270 Rebooting.
    #
    # The original Launcher rebooted by re-executing itself with the same
    # arguments.  Here the same happens without a new process: the old guest
    # (its core object, and with it its memory) is dropped, a fresh one is
    # built with the same memory size, the kernel and initrd are read again
    # and the bus lays out the same devices again -- the same descriptor page,
    # the same vrings, the same interrupts.  The devices keep their host side
    # (the open disk image, the tap device, the terminal's mode); their queue
    # threads are stopped and they start over, reset, as on a real reboot.

    def reboot(self) -> None:
        """Rebuild the guest after it asked to reboot; :meth:`run` then boots it afresh."""
        if self._closed:
            raise RuntimeError("this Launcher is closed")
        if self.exit is None or not self.exit.restart:
            raise RuntimeError("the guest has not asked to reboot")
        log.debug("rebooting")
        self.layout = MemoryLayout(self.layout.megabytes)
        self.lguest = None
        self._mem = None
        self.boot_info = None
        self.exit = None
        self._fault = None
        self._interrupt = False
        self._plan = None
        self.reboots += 1
        self.boot()

    # L:150 The run loop.
    #
    # The core runs the guest with the GIL released and comes back only when it
    # has something the Launcher must handle: a NOTIFY to an address no device
    # thread has claimed with an eventfd, or the guest's death.  Kicks to a
    # running device's vring never come here -- the core signals that device's
    # eventfd itself and the guest carries on -- so this loop is not on any
    # fast path.  It handles one address, then resumes the guest.  Before
    # resuming it looks at what other threads asked for (L:260): a device
    # fault, an interrupt, the caller's condition or deadline.

    def run(self, timeout: float | None = None) -> GuestExit:
        """Run the guest until it dies; boot it first if :meth:`boot` was not called.

        Returns the same :class:`GuestExit` if called again after the guest
        died.  With ``timeout`` (seconds), raises :class:`TimeoutError` if the
        guest is still running then; it is paused, and ``run`` resumes it.
        KeyboardInterrupt (Ctrl-C, or three from the console) propagates,
        leaving the guest paused.
        """
        result = self.run_until(None, timeout)
        assert result is not None
        return result

    def run_until(
        self, until: Callable[[], bool] | None, timeout: float | None = None
    ) -> GuestExit | None:
        """Run the guest until ``until()`` is true (None), it dies (its exit), or
        ``timeout`` seconds pass (:class:`TimeoutError`).

        ``until`` is checked whenever the guest stops in this thread: call
        :meth:`poke` from the thread that makes it true.
        """
        if self.exit is not None:
            return self.exit
        if self._closed:
            raise RuntimeError("this Launcher is closed")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must not be negative, not {timeout}")
        if self.lguest is None:
            self.boot()
        assert self.lguest is not None and self._guest_died is not None
        lguest = self.lguest
        deadline = None if timeout is None else time.monotonic() + timeout
        timer: threading.Timer | None = None
        if timeout is not None:
            timer = threading.Timer(timeout, self.poke)
            timer.daemon = True
            timer.start()
        try:
            return self._loop(lguest, until, deadline)
        finally:
            if timer is not None:
                timer.cancel()

    def _loop(
        self, lguest: Lguest, until: Callable[[], bool] | None, deadline: float | None
    ) -> GuestExit | None:
        assert self._guest_died is not None
        guest_died = self._guest_died
        while self.exit is None:
            if self._fault is not None:
                self.exit = GuestExit(reason=self._fault)
                break
            if self._interrupt:
                self._interrupt = False
                raise KeyboardInterrupt
            if until is not None and until():
                return None
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("the guest is still running")
            try:
                address = lguest.run()
            except InterruptedError:
                # Another thread poked us (L:260): look at the requests again.
                continue
            except guest_died as death:
                self.exit = self._death(death)
                break
            if self._fault is not None:
                continue
            try:
                self.handle_notify(address)
            except GuestFault as fault:
                self.exit = GuestExit(reason=str(fault))
        assert self.exit is not None
        log.debug("guest exit: %s (status %d)", self.exit.reason, self.exit.status)
        return self.exit

    # L:260 Stopping the guest from another thread.
    #
    # The core's run() returns only for a NOTIFY the Launcher must see, for
    # the guest's death, or (every 10 ms or so) to let Python's signal
    # handlers run.  A device thread that finds the guest misbehaving, the
    # console's triple Ctrl-C, a timeout or a script waiting for console
    # output all need run() to return now, from whatever thread they are in.
    # The core's interrupt() does exactly that: run() raises InterruptedError
    # at the next block boundary, the guest intact, and the loop above looks
    # at what was asked.  A poke that arrives while the loop is not inside
    # run() makes the next run() return at once, so none is lost.

    def poke(self) -> None:
        """Make a running :meth:`run` look at its requests now (any thread)."""
        if self.lguest is not None:
            self.lguest.interrupt()

    def stop_guest(self, reason: str) -> None:
        """Stop the guest: it dies with ``reason`` (status 1).  Any thread."""
        if self._fault is None:
            self._fault = reason
        self.poke()

    def interrupt(self) -> None:
        """Stop the run loop with KeyboardInterrupt, as Ctrl-C would.  Any thread."""
        self._interrupt = True
        self.poke()

    def handle_notify(self, address: int) -> None:
        """Classify one NOTIFY address the core returned (abi-devices.md 2.7).

        In order: the bus's own addresses (device status, vring start), early
        console output anywhere else in guest memory, and anything beyond the
        guest's memory, which raises :class:`GuestFault`.
        """
        log.debug("notify %#x", address)
        if self.bus is not None and self.bus.notify(address):
            return
        if 0 <= address < self.layout.guest_limit:
            self._early_console(address)
            return
        raise GuestFault(
            f"bad NOTIFY {address:#x} (guest memory ends at {self.layout.guest_limit:#x})"
        )

    # L:160 The early console.
    #
    # Before the guest's virtio console driver is up (and with no devices, for
    # the whole life of the guest) the guest prints by copying a NUL-terminated
    # string into its memory and NOTIFYing its physical address.  We copy the
    # bytes up to the NUL, or up to the end of the guest's memory if it forgot
    # the NUL, and pass them on unchanged: it is the guest's console, so the
    # bytes are whatever the guest meant, not necessarily text.

    def _early_console(self, address: int) -> None:
        assert self._mem is not None
        text = read_c_string(self._mem, address, self.layout.guest_limit)
        if text:
            self.output.write(text)
            self.output.flush()

    # L:175 Every death reaches us the same way: the core's run() raises
    # GuestDied (H:1295) with the reason the Host recorded (H:920), in the
    # loop above.  We only translate it into a GuestExit (L:170), and the
    # loop ends; nothing of the guest runs any more, but its devices are
    # still there until close() (L:180), so a reboot can reuse them.

    def _death(self, death: GuestDied) -> GuestExit:
        # The core marks a reboot both ways (errno ERESTART and ``restart``);
        # either is enough.
        restart = bool(death.restart) or death.errno == ERESTART
        return GuestExit(reason=death.reason or str(death), restart=restart)

    # L:180 The end of the journey for a guest.  The bus goes first: its
    # queue threads stop and the devices give back what they hold on the
    # host (L:255).  Then we drop our references to the core's guest; once
    # nothing holds a view of its memory any more, the memory is unmapped.
    # The core object has nothing to close: a dead guest holds no thread.

    def close(self) -> None:
        """Stop the devices and let go of the guest (and its memory)."""
        self._closed = True
        if self.bus is not None:
            bus, self.bus = self.bus, None
            bus.close()
        self._mem = None
        self.lguest = None

    def __enter__(self) -> Launcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


#: How far to look for a NUL at first: most console strings are a line or
#: two, and looking further than necessary would copy guest memory for nothing.
#: The window doubles each time, so a long string costs few steps.
_SCAN_FIRST = 256
_SCAN_MAX = 1 << 20


def read_c_string(mem: memoryview | bytearray, address: int, limit: int) -> bytes:
    """The bytes at ``address`` up to (not including) the first NUL, never past ``limit``."""
    view = memoryview(mem)
    parts: list[bytes] = []
    at, window = address, _SCAN_FIRST
    while at < limit:
        chunk = bytes(view[at : min(at + window, limit)])
        nul = chunk.find(0)
        if nul >= 0:
            parts.append(chunk[:nul])
            break
        parts.append(chunk)
        at += len(chunk)
        window = min(window * 2, _SCAN_MAX)
    return b"".join(parts)

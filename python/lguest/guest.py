"""The embedding API: run a guest from Python.

::

    from lguest import Guest

    with Guest(memory=32) as guest:       # the bundled demo guest
        result = guest.run()
    print(result.poweroff, result.status)  # True 0
    print(guest.output.decode())           # what it printed

A guest is built (kernel loaded, memory initialised) when the ``Guest`` is
created, so a bad kernel path or image raises :class:`~lguest.LaunchError`
right there.  :meth:`Guest.run` runs it until it powers off, reboots or
crashes, and returns a :class:`~lguest.launcher.GuestExit` saying which.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, BinaryIO

from lguest.launcher import GuestExit, KernelSource, Launcher

if TYPE_CHECKING:
    from types import TracebackType

    from lguest.boot import BootInfo
    from lguest.layout import MemoryLayout

__all__ = ["Guest"]


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
    """

    def __init__(
        self,
        kernel: KernelSource = None,
        memory: int = 64,
        cmdline: str | bytes = "",
        initrd: str | os.PathLike[str] | None = None,
        *,
        output: BinaryIO | None = None,
    ) -> None:
        self._collected: io.BytesIO | None = None
        stream: BinaryIO
        if output is None:
            self._collected = stream = io.BytesIO()
        else:
            stream = output
        self._launcher = Launcher(kernel, memory, cmdline, initrd, output=stream)
        self._launcher.boot()

    @property
    def output(self) -> bytes:
        """Console output collected so far (empty if an ``output`` stream was given)."""
        return self._collected.getvalue() if self._collected is not None else b""

    @property
    def exit(self) -> GuestExit | None:
        """How the guest ended, once it has; None before."""
        return self._launcher.exit

    @property
    def layout(self) -> MemoryLayout:
        """The guest-physical memory layout."""
        return self._launcher.layout

    @property
    def boot_info(self) -> BootInfo | None:
        """Where the kernel, initrd and command line were loaded."""
        return self._launcher.boot_info

    def run(self, timeout: float | None = None) -> GuestExit:
        """Run the guest until it powers off, reboots or dies; return how it ended.

        ``timeout`` (seconds) is accepted for forward compatibility but **not
        enforced yet**: the core has no way to stop a running guest from outside
        so far, and a guest that never shuts down runs until Ctrl-C
        (KeyboardInterrupt).  Calling ``run`` again after the guest has ended
        returns the same result.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must not be negative, not {timeout}")
        return self._launcher.run()

    def close(self) -> None:
        """Release the guest and its memory.  The Guest cannot run afterwards."""
        self._launcher.close()

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

"""The console (virtio type 3): the guest's ``hvc0``."""

from __future__ import annotations

import atexit
import collections
import logging
import os
import sys
import termios
import threading
import time
from typing import IO, TYPE_CHECKING, Any, BinaryIO, ClassVar

from lguest.devices import Device, QueueWorker
from lguest.errors import GuestFault

if TYPE_CHECKING:
    from lguest.virtqueue import Virtqueue

__all__ = ["CTRL_C", "VIRTIO_ID_CONSOLE", "Console"]

log = logging.getLogger("lguest")

VIRTIO_ID_CONSOLE = 3
CTRL_C = 0x03

#: Anything the console can read keyboard input from.
InputSource = int | IO[bytes] | IO[str] | None


class Console(Device):
    """The guest's console.

    ``input`` is where keyboard input comes from: a file descriptor or a file
    object (a terminal, a pipe, a file), or None for input that a program
    supplies with :meth:`send`.  ``output`` is the binary stream the guest's
    console output goes to (default: standard output).

    On a terminal the console clears ISIG, ICANON and ECHO -- so keys go to
    the guest as they are typed, Ctrl-C included -- and restores the
    terminal on :meth:`close` (and at exit, should close be skipped).  Three
    Ctrl-Cs within a second end the guest as an interrupt would (``ctrl_c``,
    on by default for a terminal or pipe, off for :meth:`send` input).
    """

    device_type: ClassVar[int] = VIRTIO_ID_CONSOLE
    queue_names: ClassVar[tuple[str, ...]] = ("input", "output")

    def __init__(
        self,
        input: InputSource = None,
        output: BinaryIO | None = None,
        *,
        terminal: bool = True,
        ctrl_c: bool | None = None,
    ) -> None:
        super().__init__()
        self.output: BinaryIO = output if output is not None else sys.stdout.buffer
        self.input_fd: int | None = None
        if input is not None:
            self.input_fd = input if isinstance(input, int) else input.fileno()
        self.ctrl_c = ctrl_c if ctrl_c is not None else self.input_fd is not None
        self._script: collections.deque[bytes] = collections.deque()
        self._script_lock = threading.Lock()
        self._script_event = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._saved_termios: list[Any] | None = None
        self._output_failed = False
        self._ctrl_c_count = 0
        self._ctrl_c_first = 0.0
        self._closed = False
        #: Set once input has ended (EOF on the input file).
        self.input_ended = False
        if terminal and self.input_fd is not None:
            self._enter_terminal_mode()

    @property
    def name(self) -> str:
        return "console"

    # L:320 The terminal.
    #
    # The guest does its own line editing and echoing, so the host terminal
    # must pass every key through at once and print nothing itself: we clear
    # ICANON (no line buffering) and ECHO, and ISIG, so that Ctrl-C and
    # Ctrl-Z reach the guest instead of stopping us.  Nothing else changes --
    # the original Launcher did exactly this, not a full raw mode, so CR/NL
    # mapping and output processing stay as the user had them.  What we
    # change we must put back on every way out: close() restores it, and an
    # atexit hook does too in case close() never runs.  (The command line turns
    # SIGTERM and SIGHUP into exceptions, so those paths run close() as well.)

    def _enter_terminal_mode(self) -> None:
        assert self.input_fd is not None
        if not os.isatty(self.input_fd):
            return
        try:
            saved = termios.tcgetattr(self.input_fd)
        except termios.error:
            return
        changed = list(saved)
        changed[3] = int(changed[3]) & ~(termios.ISIG | termios.ICANON | termios.ECHO)
        termios.tcsetattr(self.input_fd, termios.TCSANOW, changed)
        self._saved_termios = saved
        atexit.register(self._restore_terminal)

    def _restore_terminal(self) -> None:
        saved, self._saved_termios = self._saved_termios, None
        if saved is not None and self.input_fd is not None:
            try:
                termios.tcsetattr(self.input_fd, termios.TCSANOW, saved)
            except (termios.error, OSError):
                pass
            atexit.unregister(self._restore_terminal)

    @property
    def terminal_mode(self) -> bool:
        """Whether the console changed the terminal's mode (and will restore it)."""
        return self._saved_termios is not None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._restore_terminal()
        os.close(self._script_event)

    def send(self, data: str | bytes) -> None:
        """Queue ``data`` as keyboard input for the guest (any thread)."""
        if isinstance(data, str):
            data = data.encode()
        if not data:
            return
        with self._script_lock:
            self._script.append(bytes(data))
        os.eventfd_write(self._script_event, 1)

    def serve(self, queue: Virtqueue, worker: QueueWorker) -> None:
        if queue.index == 0:
            self._serve_input(queue, worker)
        else:
            self._serve_output(queue, worker)

    # L:330 Console input.
    #
    # The guest keeps one page-sized buffer posted for input.  We take it,
    # sleep until there is something to read, read straight into it (one
    # read: whatever is there, up to the buffer's size) and hand it back with
    # an interrupt at once, since someone is waiting for that key.  End of
    # input (a closed pipe, the end of a file) is not an error: we say so once
    # (with --verbose) and stop serving the queue, and the guest simply gets
    # no more keys.
    #
    # With ISIG off, Ctrl-C is just byte 0x03 for the guest.  The original's
    # escape hatch was three of them, each read on its own, within about a
    # second: the guest still gets them, and the Launcher stops as if
    # interrupted.

    def _serve_input(self, queue: Virtqueue, worker: QueueWorker) -> None:
        while True:
            chain = worker.get()
            if chain.readable:
                raise GuestFault(f"{queue.name}: the guest offered a readable buffer")
            if self.input_fd is not None:
                n = self._read_fd(worker, chain.writable)
            else:
                n = self._read_script(worker, chain)
            if n == 0:
                self.input_ended = True
                # Not a warning: the end of a script's input is normal.
                log.info("console input ended; ignoring it from now on")
                return
            first = chain.writable[0]
            single_ctrl_c = n == 1 and first[0] == CTRL_C
            queue.push(chain, n)
            queue.trigger()
            if self.ctrl_c:
                self._count_ctrl_c(single_ctrl_c, worker)

    def _read_fd(self, worker: QueueWorker, buffers: list[memoryview]) -> int:
        assert self.input_fd is not None
        while True:
            worker.wait_readable(self.input_fd)
            try:
                return os.readv(self.input_fd, buffers)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                worker.log(f"console input failed: {exc.strerror}")
                return 0

    def _read_script(self, worker: QueueWorker, chain: object) -> int:
        from lguest.virtqueue import Chain

        assert isinstance(chain, Chain)
        room = chain.writable_len
        while True:
            with self._script_lock:
                if self._script:
                    data = self._script.popleft()
                    if len(data) > room:
                        self._script.appendleft(data[room:])
                        data = data[:room]
                    break
            worker.wait_readable(self._script_event)
            try:
                os.eventfd_read(self._script_event)
            except BlockingIOError:
                pass
        return chain.write(data)

    def _count_ctrl_c(self, single_ctrl_c: bool, worker: QueueWorker) -> None:
        if not single_ctrl_c:
            self._ctrl_c_count = 0
            return
        now = time.monotonic()
        if self._ctrl_c_count == 0:
            self._ctrl_c_first = now
        self._ctrl_c_count += 1
        if self._ctrl_c_count == 3:
            self._ctrl_c_count = 0
            if now <= self._ctrl_c_first + 1.0:
                worker.interrupt_launcher()

    # L:340 Console output.
    #
    # Each buffer the guest sends is text to print; we write all of it and
    # give the buffer back.  The guest's driver spins until it has the buffer
    # back, so this thread must keep up while the guest runs -- which is why
    # every queue has its own thread rather than being served when the guest
    # stops.  No interrupt until the queue runs dry: the guest asked for none
    # on this queue anyway.  A failed write (the reader went away) is reported
    # once and the rest of the output dropped, as later Launchers did.

    def _serve_output(self, queue: Virtqueue, worker: QueueWorker) -> None:
        while True:
            chain = worker.get()
            if chain.writable:
                raise GuestFault(f"{queue.name}: the guest offered a writable buffer")
            if not self._output_failed:
                try:
                    for buf in chain.readable:
                        self.output.write(buf)
                    self.output.flush()
                except (OSError, ValueError) as exc:
                    self._output_failed = True
                    if not isinstance(exc, BrokenPipeError):
                        worker.log(f"console output failed ({exc}); dropping it from now on")
            queue.push(chain, 0)

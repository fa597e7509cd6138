"""Virtio devices: what the guest's drivers talk to.

Every device is a subclass of :class:`Device`.  It says what it is (its virtio
type and the names of its queues), what it offers (feature bits and config
bytes), and how it serves each queue.  The lguest bus (:mod:`lguest.bus`) does
the rest: the descriptor page, the status protocol, one thread per queue woken
by the guest's kicks, interrupts and resets.

The simplest device serves each chain in :meth:`Device.handle` and returns how
many bytes it wrote into the chain's writable buffers; a device with its own
source of events (keyboard input, network packets) overrides
:meth:`Device.serve` and loops itself.  See docs/devices.md for a complete
example.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from lguest.virtqueue import Chain, Virtqueue

__all__ = [
    "VIRTIO_F_NOTIFY_ON_EMPTY",
    "VIRTIO_RING_F_INDIRECT_DESC",
    "Device",
    "DeviceStopped",
    "QueueWorker",
]

#: Transport feature bits (abi-devices.md 4.2).
VIRTIO_F_NOTIFY_ON_EMPTY = 24
VIRTIO_RING_F_INDIRECT_DESC = 28


class DeviceStopped(Exception):
    """Raised inside a queue's thread when the device is being stopped (reset or close).

    Device code lets it propagate; the thread then ends quietly.
    """


class QueueWorker(Protocol):
    """What a queue's thread offers the device code running in it."""

    def get(self) -> Chain:
        """The queue's next chain, sleeping until the guest makes one available."""
        ...

    def wait(self) -> None:
        """Sleep until the guest kicks the queue."""
        ...

    def wait_readable(self, fd: int | Sequence[int], timeout: float | None = None) -> bool:
        """Sleep until ``fd`` (or one of several) is readable (True) or ``timeout`` passes."""
        ...

    def interrupt_launcher(self) -> None:
        """Stop the guest as if the user had pressed Ctrl-C (the console's triple Ctrl-C)."""
        ...

    def log(self, message: str) -> None:
        """A warning for the user (standard error, once per message kind is the caller's job)."""
        ...


# M:120 Exercise: add a virtio device.  The Launcher's half is a subclass
# of this class: a virtio type, queue names, features and config, and
# handle() or serve() (docs/devices.md walks through one).  The guest's
# half is a driver in guest/: a probe function in the table of bus.c
# (D:100) that sets up its queues with vq_setup() (D:200) and talks
# through vq_add_buf() and vq_kick().  A virtio balloon is a good first
# choice: two queues, page-frame numbers in the buffers, and the host side
# decides what to do with the pages (madvise them away?).
class Device:
    """A virtio device on the lguest bus.

    Subclasses set :attr:`device_type` (the virtio device ID) and
    :attr:`queue_names` (one per virtqueue, in the order the driver expects),
    and override :meth:`handle` or :meth:`serve`.  Optional overrides:
    :meth:`features` and :meth:`config` (what the device offers),
    :meth:`start` and :meth:`reset` (the driver started or reset the device),
    :meth:`close` (release host resources).
    """

    #: The virtio device ID (1 net, 2 block, 3 console, 4 rng, ...).
    device_type: ClassVar[int]
    #: The virtqueues, by name, in index order.
    queue_names: ClassVar[tuple[str, ...]]

    def __init__(self) -> None:
        #: Feature bits the guest accepted (set when the driver starts the device).
        self.negotiated: int = 0

    @property
    def name(self) -> str:
        """A short name for messages."""
        return type(self).__name__.lower()

    def features(self) -> int:
        """The feature bits offered to the guest, as a bit mask (bit n = feature n)."""
        return 0

    def config(self) -> bytes:
        """The device-specific configuration bytes (at most 255)."""
        return b""

    def has_feature(self, bit: int) -> bool:
        """Whether the guest accepted feature ``bit``."""
        return bool(self.negotiated >> bit & 1)

    def start(self, features: int) -> None:
        """The guest's driver is starting the device with these accepted features.

        Called in the Launcher's thread before any queue thread runs.
        """
        self.negotiated = features

    def reset(self) -> None:
        """The guest reset the device; its queue threads have stopped."""
        self.negotiated = 0

    def close(self) -> None:
        """Release host resources (files, sockets, the terminal)."""

    # L:215 The body of every queue thread (L:213).  The usual device is a
    # loop: take the next chain, sleeping until the guest kicks if there is
    # none (L:217), do the work straight in guest memory, and give the chain
    # back (L:230).  Interrupts are not raised per chain: get() signals the
    # completions when the queue runs dry (L:240), which is the batching the
    # original Launcher did and the guest's drivers expect.

    def serve(self, queue: Virtqueue, worker: QueueWorker) -> None:
        """The body of ``queue``'s thread: by default, :meth:`handle` every chain.

        Completions are signalled when the queue runs dry, as the original
        Launcher does for most queues.  Raise :class:`~lguest.errors.GuestFault`
        for a guest mistake: it stops the guest with that reason.
        """
        while True:
            chain = worker.get()
            written = self.handle(queue, chain)
            queue.push(chain, written)

    def handle(self, queue: Virtqueue, chain: Chain) -> int:
        """Serve one chain; return the number of bytes written into its writable part."""
        raise NotImplementedError(f"{type(self).__name__} must define handle() or serve()")

"""Virtqueues: the vring shared with the guest, seen from the device side.

A :class:`Virtqueue` knows where one vring lives in guest memory and does the
device's half of the protocol of abi-devices.md section 3: take descriptor
chains the guest made available, check every address in them, hand them to
device code as :class:`Chain` objects whose buffers are ``memoryview`` slices
of guest memory (no copying), and give them back through the used ring,
interrupting the guest when the 2.6.32 rules say so.

Nothing here starts threads or touches eventfds: waiting for the guest is a
callable the caller passes in (see :mod:`lguest.bus`), which keeps this module
easy to drive from a test with a ``bytearray`` as guest memory.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from lguest.errors import GuestFault

__all__ = [
    "AVAIL_F_NO_INTERRUPT",
    "DESC_F_INDIRECT",
    "DESC_F_NEXT",
    "DESC_F_WRITE",
    "USED_F_NO_NOTIFY",
    "VRING_ALIGN",
    "VRING_NUM",
    "VRING_PAGES",
    "Chain",
    "Virtqueue",
    "vring_layout",
    "vring_size",
]

#: Entries in every vring the Launcher creates.
VRING_NUM = 256
#: Alignment of the used ring (LGUEST_VRING_ALIGN).
VRING_ALIGN = 4096

DESC_F_NEXT = 1
DESC_F_WRITE = 2
DESC_F_INDIRECT = 4
AVAIL_F_NO_INTERRUPT = 1
USED_F_NO_NOTIFY = 1

_DESC = struct.Struct("<QIHH")
_U16 = struct.Struct("<H")
_USED_ELEM = struct.Struct("<II")


def vring_layout(num: int, align: int = VRING_ALIGN) -> tuple[int, int, int]:
    """Offsets of the descriptor table, available ring and used ring (2.6.32 form)."""
    avail = 16 * num
    used = (avail + 2 * (2 + num) + align - 1) & ~(align - 1)
    return 0, avail, used


def vring_size(num: int, align: int = VRING_ALIGN) -> int:
    """Bytes of one vring of ``num`` entries (10244 for 256)."""
    return vring_layout(num, align)[2] + 2 * 2 + 8 * num


#: Pages each Launcher vring occupies.
VRING_PAGES = (vring_size(VRING_NUM) + 4095) // 4096


@dataclass
class Chain:
    """One descriptor chain the guest made available.

    ``readable`` are the device-readable buffers (what the guest sends), in
    chain order; ``writable`` the device-writable ones (where the device puts
    what it returns).  Each is a ``memoryview`` over guest memory: reading it
    reads the guest's bytes, writing it writes them, with no copy.  The
    guest-physical address of each buffer is in ``readable_at``/``writable_at``.
    """

    head: int
    readable: list[memoryview] = field(default_factory=list)
    writable: list[memoryview] = field(default_factory=list)
    readable_at: list[int] = field(default_factory=list)
    writable_at: list[int] = field(default_factory=list)
    #: The guest-physical ranges the device wrote, if it is not simply the
    #: first ``written`` bytes of the writable buffers (see Virtqueue.push).
    dirty: list[tuple[int, int]] | None = None

    @property
    def readable_len(self) -> int:
        return sum(len(b) for b in self.readable)

    @property
    def writable_len(self) -> int:
        return sum(len(b) for b in self.writable)

    def read(self) -> bytes:
        """All readable bytes, joined (this one copies)."""
        return b"".join(self.readable)

    def write(self, data: bytes | bytearray | memoryview, offset: int = 0) -> int:
        """Scatter ``data`` into the writable buffers from byte ``offset`` on.

        Returns how many bytes fitted.
        """
        src = memoryview(data).cast("B")
        done = 0
        for buf in self.writable:
            if offset >= len(buf):
                offset -= len(buf)
                continue
            n = min(len(buf) - offset, len(src) - done)
            buf[offset : offset + n] = src[done : done + n]
            done += n
            offset = 0
            if done == len(src):
                break
        return done

    def writable_ranges(self, length: int) -> Iterator[tuple[int, int]]:
        """The guest-physical ranges covering the first ``length`` writable bytes."""
        for gpa, buf in zip(self.writable_at, self.writable):
            if length <= 0:
                return
            n = min(len(buf), length)
            yield gpa, n
            length -= n


def _full_barrier() -> None:
    # Taking and releasing a lock is a locked read-modify-write on x86 (the
    # mutex's compare-and-exchange), which orders a store before a later load:
    # exactly the fence the NO_NOTIFY re-check needs (see L:230).
    _FENCE.acquire()
    _FENCE.release()


_FENCE = threading.Lock()


class Virtqueue:
    """The device side of one vring.

    ``mem`` is guest-physical memory (the core's ``mem``, or any writable
    buffer in tests), ``address`` the vring's guest-physical address,
    ``limit`` the end of the memory the guest may hand out (``guest_limit``),
    ``irq`` the queue's interrupt line and ``raise_irq`` how to raise it.
    ``note_dma(gpa, len)``, if given, is told about every range the device
    wrote before the guest can see it (the core drops decoded code there).
    """

    def __init__(
        self,
        mem: memoryview | bytearray,
        address: int,
        *,
        num: int = VRING_NUM,
        limit: int,
        irq: int = 0,
        raise_irq: Callable[[int], None] | None = None,
        note_dma: Callable[[int, int], None] | None = None,
        name: str = "vq",
        index: int = 0,
    ) -> None:
        if num <= 0 or num & (num - 1) or num > 32768:
            raise ValueError(f"vring size must be a power of two up to 32768, not {num}")
        view = memoryview(mem)
        self.mem = view if view.format == "B" else view.cast("B")
        self.address = address
        self.num = num
        self.limit = limit
        self.irq = irq
        self.name = name
        self.index = index
        self.raise_irq = raise_irq
        self.note_dma = note_dma
        _, avail, used = vring_layout(num)
        self.desc = address
        self.avail = address + avail
        self.used = address + used
        if address < 0 or address + vring_size(num) > len(self.mem):
            raise ValueError(f"vring at {address:#x} does not fit in guest memory")
        #: Index of the next available entry the device will take.
        self.last_avail = 0
        #: Completions published but not yet signalled with an interrupt.
        self.pending_used = 0
        #: Our copy of used.idx: only the device writes it.
        self.used_idx = 0

    def __repr__(self) -> str:
        return f"<Virtqueue {self.name} at {self.address:#x} irq {self.irq}>"

    # --- the rings -------------------------------------------------------

    def avail_idx(self) -> int:
        return int(_U16.unpack_from(self.mem, self.avail + 2)[0])

    def avail_flags(self) -> int:
        return int(_U16.unpack_from(self.mem, self.avail)[0])

    def used_flags(self) -> int:
        return int(_U16.unpack_from(self.mem, self.used)[0])

    def set_no_notify(self, on: bool) -> None:
        flags = self.used_flags()
        flags = flags | USED_F_NO_NOTIFY if on else flags & ~USED_F_NO_NOTIFY
        _U16.pack_into(self.mem, self.used, flags)

    def reset(self) -> None:
        """Zero the vring and forget our position, as after a device reset."""
        size = vring_size(self.num)
        self.mem[self.address : self.address + size] = bytes(size)
        self.last_avail = 0
        self.pending_used = 0
        self.used_idx = 0

    def has_available(self) -> bool:
        return self.avail_idx() != self.last_avail

    # L:220 Taking a chain from the available ring.
    #
    # The guest owns the available ring and the descriptors, and a broken or
    # hostile guest can put anything there, so everything we read is checked
    # before it is used and read exactly once (a descriptor's ``next`` could
    # change under us if we read it twice).  Each rule below is one of the
    # original Launcher's, and breaking it kills the guest with a reason
    # (GuestFault), never the Launcher: an available index that ran more than a
    # ring ahead of us, a head outside the table, an indirect table whose size
    # is not whole descriptors, a buffer reaching past the guest's memory, a
    # readable buffer after a writable one (the device could not tell which
    # bytes are the request), and a chain longer than its table, which is how
    # a loop shows itself: a chain can visit each descriptor at most once.

    def pop(self) -> Chain | None:
        """Take the next available chain, or None if the guest has made none available."""
        avail_idx = self.avail_idx()
        if avail_idx == self.last_avail:
            return None
        ahead = (avail_idx - self.last_avail) & 0xFFFF
        if ahead > self.num:
            raise GuestFault(
                f"{self.name}: guest moved the available index from {self.last_avail} "
                f"to {avail_idx}, more than {self.num} entries ahead"
            )
        slot = self.avail + 4 + 2 * (self.last_avail % self.num)
        head = int(_U16.unpack_from(self.mem, slot)[0])
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        if head >= self.num:
            raise GuestFault(f"{self.name}: guest says descriptor {head} is available")
        return self._walk(head)

    def _check_range(self, addr: int, length: int, what: str) -> None:
        # The later rule of abi-devices.md 1.4: the buffer must end at or
        # before the limit.  Python integers do not wrap, so no wrap check.
        if addr + length > self.limit:
            raise GuestFault(
                f"{self.name}: {what} {addr:#x}+{length:#x} is beyond guest memory "
                f"({self.limit:#x})"
            )

    def _walk(self, head: int) -> Chain:
        mem = self.mem
        chain = Chain(head)
        table, limit, i = self.desc, self.num, head
        addr, length, flags, nxt = _DESC.unpack_from(mem, table + 16 * i)
        if flags & DESC_F_INDIRECT:
            if length % 16 or length == 0:
                raise GuestFault(
                    f"{self.name}: indirect table of {length} bytes is not whole descriptors"
                )
            self._check_range(addr, length, "indirect table")
            table, limit, i = addr, length // 16, 0
            addr, length, flags, nxt = _DESC.unpack_from(mem, table)
        count = 0
        while True:
            count += 1
            if count > limit:
                raise GuestFault(f"{self.name}: descriptor chain loops (longer than {limit})")
            if flags & DESC_F_INDIRECT:
                raise GuestFault(f"{self.name}: indirect descriptor inside a chain")
            self._check_range(addr, length, "buffer")
            view = mem[addr : addr + length]
            if flags & DESC_F_WRITE:
                chain.writable.append(view)
                chain.writable_at.append(addr)
            else:
                if chain.writable:
                    raise GuestFault(f"{self.name}: readable buffer after a writable one")
                chain.readable.append(view)
                chain.readable_at.append(addr)
            if not flags & DESC_F_NEXT:
                return chain
            if nxt >= limit:
                raise GuestFault(f"{self.name}: descriptor {i} chains to {nxt}, beyond {limit}")
            i = nxt
            addr, length, flags, nxt = _DESC.unpack_from(mem, table + 16 * i)

    # L:230 Giving a chain back, and memory ordering.
    #
    # The guest runs on another host thread (the interpreter, with the GIL
    # released) and reads the used ring whenever it likes, so the order in
    # which our stores become visible matters: the element must be in place
    # before the index that publishes it.  Python has no fences, but it does
    # not need one here.  Each store is a separate call into C (struct's
    # pack_into on the memoryview), so neither Python nor the C compiler can
    # move one past the other, and x86 is TSO: stores reach other processors
    # in program order.  So "element, then index" is enough, as it was for the
    # original Launcher's compiler barrier.  The one reordering x86 does allow
    # is a load overtaking an earlier store, which is exactly what the
    # NO_NOTIFY dance in get() must prevent (store the flag, then load
    # avail.idx): there we take a lock, a locked instruction and so a full
    # fence.  The GIL adds nothing to the guest's side (the guest does not hold
    # it), but it does mean two Python threads never interleave inside one of
    # these updates -- and each queue has one worker thread anyway.
    #
    # Before publishing, the device tells the core which guest memory it wrote
    # (note_dma): the interpreter may have decoded code on those pages and must
    # drop it before the guest can run the new bytes.

    def push(
        self,
        chain: Chain,
        written: int,
        dirty: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        """Return ``chain`` to the guest saying ``written`` bytes were written into it.

        ``dirty`` lists the guest-physical ranges written; by default
        ``chain.dirty`` if the device set it, else the first ``written`` bytes
        of the writable buffers.
        """
        if dirty is None:
            dirty = chain.dirty
        if self.note_dma is not None and written:
            for gpa, length in dirty if dirty is not None else chain.writable_ranges(written):
                if length:
                    self.note_dma(gpa, length)
        slot = self.used + 4 + 8 * (self.used_idx % self.num)
        _USED_ELEM.pack_into(self.mem, slot, chain.head, written)
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        _U16.pack_into(self.mem, self.used + 2, self.used_idx)
        self.pending_used += 1

    # L:240 When to interrupt.
    #
    # A 2.6.32 guest can ask not to be interrupted (NO_INTERRUPT in the
    # available ring's flags), but the Launcher of that era interrupts anyway
    # once it has consumed every available buffer: that is the
    # NOTIFY_ON_EMPTY behaviour, applied to every queue, and the guest's
    # drivers rely on it.  So: nothing to signal, nothing to do; the guest
    # said "no interrupts" and there is still work queued, stay quiet;
    # otherwise raise the queue's line (L:245): the first step of an
    # interrupt's way into the guest.

    def trigger(self) -> bool:
        """Signal pending completions if the rules say so; return whether an IRQ was raised."""
        if not self.pending_used:
            return False
        self.pending_used = 0
        if self.avail_flags() & AVAIL_F_NO_INTERRUPT and self.has_available():
            return False
        if self.raise_irq is not None:
            self.raise_irq(self.irq)
        return True

    # L:217 Waiting for the guest without missing a kick.  While the thread
    # is busy the guest need not kick at all, so NO_NOTIFY stays set in the
    # used ring and the guest saves itself the trap (D:220).  When the ring
    # runs dry we signal what we completed (L:240), clear NO_NOTIFY and go
    # to sleep on the kick eventfd (L:213).  The race to avoid: the guest
    # adds a buffer and reads NO_NOTIFY still set just before we clear it,
    # then never kicks, and we sleep with work waiting.  So after clearing
    # the flag we look at the available ring once more, behind a full fence
    # (L:230), and only sleep if it is still empty.

    def get(self, wait: Callable[[], None]) -> Chain:
        """The next chain, blocking in ``wait()`` while the guest has none for us.

        Before sleeping, pending completions are signalled and NO_NOTIFY is
        cleared so that the guest kicks us; after it, NO_NOTIFY is set again so
        that the guest does not kick us while we are busy.  ``wait`` returns
        when the queue was kicked, or raises to stop the caller.
        """
        while True:
            chain = self.pop()
            if chain is not None:
                return chain
            self.trigger()
            self.set_no_notify(False)
            _full_barrier()
            if self.has_available():
                self.set_no_notify(True)
                continue
            wait()
            self.set_no_notify(True)

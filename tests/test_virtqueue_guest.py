"""A guest's side of the virtqueue protocol, in Python, for the device tests.

The other device tests import from here: :class:`FakeCore` stands in for
``lguest._core.Lguest`` (a bytearray as guest memory, recorded interrupts,
eventfds, DMA notes), :class:`GuestRing` posts descriptor chains as a guest
driver would, and :class:`BusHarness` puts devices on a real
:class:`~lguest.bus.LguestBus` and drives the guest's half of the status
protocol.  The tests at the bottom check the helpers themselves.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Sequence

from lguest.bus import (
    STATUS_ACKNOWLEDGE,
    STATUS_DRIVER,
    STATUS_DRIVER_OK,
    DeviceSlot,
    LguestBus,
)
from lguest.devices import Device, DeviceStopped
from lguest.layout import MemoryLayout
from lguest.virtqueue import (
    DESC_F_INDIRECT,
    DESC_F_NEXT,
    DESC_F_WRITE,
    Chain,
    Virtqueue,
    vring_layout,
)

DESC = struct.Struct("<QIHH")


class FakeCore:
    """What the bus and devices use of ``lguest._core.Lguest``."""

    def __init__(self, size: int) -> None:
        self.backing = bytearray(size)
        self.irqs: list[int] = []
        self.eventfds: dict[int, int] = {}
        self.dma: list[tuple[int, int]] = []
        self.attach_calls: list[tuple[int, int, bool]] = []
        self.dead = False
        self._lock = threading.Lock()

    @property
    def mem(self) -> memoryview:
        return memoryview(self.backing)

    def irq(self, n: int) -> None:
        if self.dead:
            raise OSError(2, "the guest is dead")
        assert 0 <= n < 32
        with self._lock:
            self.irqs.append(n)

    def eventfd(self, addr: int, fd: int, replace: bool = False) -> None:
        self.attach_calls.append((addr, fd, replace))
        if addr in self.eventfds and not replace:
            return  # appended after the first: never signalled (the 5.6 defect)
        self.eventfds[addr] = fd

    def detach_eventfd(self, addr: int) -> int:
        return 1 if self.eventfds.pop(addr, None) is not None else 0

    def note_dma(self, gpa: int, length: int) -> None:
        assert gpa + length <= len(self.backing)
        with self._lock:
            self.dma.append((gpa, length))

    def kick(self, addr: int) -> bool:
        """The guest NOTIFYs ``addr``: signal its eventfd as the core would."""
        fd = self.eventfds.get(addr)
        if fd is None:
            return False
        os.eventfd_write(fd, 1)
        return True


class GuestRing:
    """The guest driver's view of one vring at ``address`` in ``mem``.

    Buffers are allocated from ``[heap, heap_end)`` of guest memory.
    """

    def __init__(
        self,
        mem: memoryview | bytearray,
        address: int,
        heap: int,
        heap_end: int,
        num: int = 256,
    ) -> None:
        self.mem = memoryview(mem)
        self.address = address
        self.num = num
        _, avail, used = vring_layout(num)
        self.desc = address
        self.avail = address + avail
        self.used = address + used
        self.heap = heap
        self.heap_end = heap_end
        self.next_desc = 0
        self.avail_idx = 0
        self.seen_used = 0

    def alloc(self, size: int, data: bytes = b"") -> int:
        at = self.heap
        self.heap += (size + 15) & ~15
        assert self.heap <= self.heap_end, "test heap exhausted"
        self.mem[at : at + len(data)] = data
        return at

    def write_desc(self, table: int, i: int, addr: int, length: int, flags: int, nxt: int) -> None:
        DESC.pack_into(self.mem, table + 16 * i, addr, length, flags, nxt)

    def post(
        self,
        out: Sequence[bytes] = (),
        in_sizes: Sequence[int] = (),
        indirect: bool = False,
    ) -> tuple[int, list[int]]:
        """Publish a chain of readable ``out`` buffers then writable ones of ``in_sizes``.

        Returns the head and the addresses of the writable buffers.
        """
        parts: list[tuple[int, int, int]] = []
        for data in out:
            parts.append((self.alloc(len(data), data), len(data), 0))
        ins: list[int] = []
        for size in in_sizes:
            at = self.alloc(size)
            ins.append(at)
            parts.append((at, size, DESC_F_WRITE))
        if indirect:
            table = self.alloc(16 * len(parts))
            for i, (addr, length, flags) in enumerate(parts):
                last = i == len(parts) - 1
                self.write_desc(table, i, addr, length, flags | (0 if last else DESC_F_NEXT), i + 1)
            head = self.take_desc()
            self.write_desc(self.desc, head, table, 16 * len(parts), DESC_F_INDIRECT, 0)
        else:
            ids = [self.take_desc() for _ in parts]
            for n, (addr, length, flags) in enumerate(parts):
                last = n == len(parts) - 1
                nxt = 0 if last else ids[n + 1]
                self.write_desc(
                    self.desc,
                    ids[n],
                    addr,
                    length,
                    flags | (0 if last else DESC_F_NEXT),
                    nxt,
                )
            head = ids[0]
        self.publish(head)
        return head, ins

    def take_desc(self) -> int:
        i = self.next_desc
        self.next_desc = (self.next_desc + 1) % self.num
        return i

    def publish(self, head: int) -> None:
        struct.pack_into("<H", self.mem, self.avail + 4 + 2 * (self.avail_idx % self.num), head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        struct.pack_into("<H", self.mem, self.avail + 2, self.avail_idx)

    def set_avail_flags(self, flags: int) -> None:
        struct.pack_into("<H", self.mem, self.avail, flags)

    def used_idx(self) -> int:
        return int(struct.unpack_from("<H", self.mem, self.used + 2)[0])

    def used_flags(self) -> int:
        return int(struct.unpack_from("<H", self.mem, self.used)[0])

    def used_elem(self, i: int) -> tuple[int, int]:
        head, length = struct.unpack_from("<II", self.mem, self.used + 4 + 8 * (i % self.num))
        return int(head), int(length)

    def take_used(self) -> list[tuple[int, int]]:
        """The elements used since the last call."""
        out = []
        while self.seen_used != self.used_idx():
            out.append(self.used_elem(self.seen_used))
            self.seen_used = (self.seen_used + 1) & 0xFFFF
        return out

    def wait_used(self, count: int, timeout: float = 5.0) -> list[tuple[int, int]]:
        """Wait until ``count`` more elements are used; return them."""
        deadline = time.monotonic() + timeout
        got: list[tuple[int, int]] = []
        while len(got) < count:
            got += self.take_used()
            if len(got) >= count:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(got)} of {count} buffers came back")
            time.sleep(0.001)
        return got

    def read(self, addr: int, length: int) -> bytes:
        return bytes(self.mem[addr : addr + length])


class DirectWorker:
    """A QueueWorker for calling a device's serve() in the test's own thread:
    it serves what is available, then stops (signalling completions first)."""

    def __init__(self, queue: Virtqueue) -> None:
        self.queue = queue
        self.messages: list[str] = []
        self.interrupted = False

    def get(self) -> Chain:
        chain = self.queue.pop()
        if chain is None:
            self.queue.trigger()
            raise DeviceStopped
        return chain

    def wait(self) -> None:
        raise DeviceStopped

    def wait_readable(self, fd: int | Sequence[int], timeout: float | None = None) -> bool:
        raise DeviceStopped

    def interrupt_launcher(self) -> None:
        self.interrupted = True

    def log(self, message: str) -> None:
        self.messages.append(message)


def serve_directly(device: Device, queue: Virtqueue) -> DirectWorker:
    """Run ``device.serve`` on ``queue`` until it has nothing left to do."""
    worker = DirectWorker(queue)
    try:
        device.serve(queue, worker)
    except DeviceStopped:
        pass
    return worker


class BusHarness:
    """Devices on a real LguestBus over a FakeCore with 1 MiB of RAM."""

    def __init__(self, devices: Sequence[Device], megabytes: int = 1) -> None:
        self.layout = MemoryLayout(megabytes)
        self.core = FakeCore(self.layout.total_size)
        self.bus = LguestBus(devices)
        self.faults: list[str] = []
        self.interrupts = 0
        self.bus.bind(self.faults.append, self._interrupt)
        self.bus.setup(self.core, self.layout)
        # Buffers come from the second half of RAM.
        self.heap = self.layout.ram_size // 2

    def _interrupt(self) -> None:
        self.interrupts += 1

    def slot(self, i: int) -> DeviceSlot:
        return self.bus.slots[i]

    def ring(self, device: int, queue: int, heap_size: int = 0x20000) -> GuestRing:
        q = self.slot(device).queues[queue]
        heap = self.heap
        self.heap += heap_size
        assert self.heap <= self.layout.ram_size
        return GuestRing(self.core.mem, q.address, heap, heap + heap_size)

    def set_status(self, device: int, status: int) -> None:
        slot = self.slot(device)
        self.core.mem[slot.status_address] = status
        assert self.bus.notify(slot.address)

    def accept(self, device: int, features: int) -> None:
        slot = self.slot(device)
        at = slot.driver_features_address
        self.core.mem[at : at + slot.feature_len] = features.to_bytes(slot.feature_len, "little")

    def start(self, device: int, features: int | None = None) -> None:
        """The 2.6.32 guest's sequence: reset, ACK, DRIVER, features, DRIVER_OK."""
        slot = self.slot(device)
        self.set_status(device, 0)
        self.set_status(device, STATUS_ACKNOWLEDGE)
        self.set_status(device, STATUS_ACKNOWLEDGE | STATUS_DRIVER)
        self.accept(device, slot.device.features() if features is None else features)
        self.set_status(device, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK)

    def kick(self, device: int, queue: int) -> None:
        addr = self.slot(device).queues[queue].address
        if not self.core.kick(addr):
            self.bus.notify(addr)

    def wait_fault(self, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while not self.faults:
            if time.monotonic() > deadline:
                raise AssertionError("no fault reported")
            time.sleep(0.001)
        return self.faults[0]

    def close(self) -> None:
        self.bus.close()


# --- tests of the helpers themselves ------------------------------------------


def test_guest_ring_round_trip() -> None:
    mem = bytearray(1 << 20)
    ring = GuestRing(mem, 0x10000, 0x20000, 0x30000)
    head, ins = ring.post([b"hello"], [8])
    q = Virtqueue(mem, 0x10000, limit=len(mem))
    chain = q.pop()
    assert chain is not None and chain.head == head
    assert chain.read() == b"hello"
    assert chain.write(b"world") == 5
    q.push(chain, 5)
    assert ring.take_used() == [(head, 5)]
    assert ring.read(ins[0], 5) == b"world"


def test_fake_core_keeps_the_first_eventfd_unless_replaced() -> None:
    core = FakeCore(4096)
    core.eventfd(0x1000, 5)
    core.eventfd(0x1000, 6)
    assert core.eventfds[0x1000] == 5
    core.eventfd(0x1000, 7, replace=True)
    assert core.eventfds[0x1000] == 7

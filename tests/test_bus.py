"""The lguest bus: descriptor page, IRQs, status protocol, start/reset, faults."""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from lguest.bus import STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_FAILED, LguestBus
from lguest.devices import Device, QueueWorker
from lguest.devices.block import Block
from lguest.devices.console import Console
from lguest.devices.rng import Rng
from lguest.errors import GuestFault, LaunchError
from lguest.layout import MemoryLayout
from lguest.virtqueue import DESC_F_NEXT, Chain, Virtqueue
from test_virtqueue_guest import BusHarness, FakeCore

MiB = 1 << 20


class Echo(Device):
    """Copies what it reads into the writable part."""

    device_type: ClassVar[int] = 0x7F
    queue_names: ClassVar[tuple[str, ...]] = ("io",)

    def __init__(self, features: int = 0, config: bytes = b"") -> None:
        super().__init__()
        self._features = features
        self._config = config
        self.starts: list[int] = []
        self.resets = 0

    def features(self) -> int:
        return self._features

    def config(self) -> bytes:
        return self._config

    def start(self, features: int) -> None:
        super().start(features)
        self.starts.append(features)

    def reset(self) -> None:
        super().reset()
        self.resets += 1

    def handle(self, queue: Virtqueue, chain: Chain) -> int:
        return chain.write(chain.read())


class Many(Device):
    device_type: ClassVar[int] = 0x7E
    queue_names: ClassVar[tuple[str, ...]] = tuple(f"q{i}" for i in range(10))

    def serve(self, queue: Virtqueue, worker: QueueWorker) -> None:
        worker.wait()


def test_descriptor_page_matches_the_spec_layout(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    layout = MemoryLayout(64)
    core = FakeCore(layout.total_size)
    block, rng, console = Block(disk), Rng(), Console(None)
    bus = LguestBus([block, rng, console])
    bus.setup(core, layout)
    try:
        page = bytes(core.mem[layout.descriptor_page : layout.descriptor_page + 4096])
        # block: type 2, 1 queue, 2 bytes of features, 16 config bytes, status 0
        assert page[:5] == bytes([2, 1, 2, 16, 0])
        num, irq, pfn = struct.unpack_from("<HHI", page, 5)
        assert (num, irq, pfn) == (256, 1, 0x4001)
        offered = int.from_bytes(page[13:15], "little")
        assert offered == (1 << 0 | 1 << 2 | 1 << 9)  # BARRIER, SEG_MAX, FLUSH
        assert page[15:17] == b"\0\0"  # accepted, for the guest
        capacity, _size_max, seg_max = struct.unpack_from("<QII", page, 17)
        assert (capacity, seg_max) == (2048, 254)
        # rng: type 4, 1 queue (irq 2), no features, no config
        at = 33
        assert page[at : at + 5] == bytes([4, 1, 0, 0, 0])
        assert struct.unpack_from("<HHI", page, at + 5) == (256, 2, 0x4004)
        # console last: input irq 3, output irq 4
        at += 13
        assert page[at : at + 5] == bytes([3, 2, 0, 0, 0])
        assert struct.unpack_from("<HHI", page, at + 5) == (256, 3, 0x4007)
        assert struct.unpack_from("<HHI", page, at + 13) == (256, 4, 0x400A)
        # The list ends with a zero type.
        assert page[at + 21] == 0
        assert layout.guest_limit == 64 * MiB + 0xD000
        assert all(q.limit == layout.guest_limit for s in bus.slots for q in s.queues)
    finally:
        bus.close()


def test_thirty_first_queue_is_fine_but_the_thirty_second_is_refused() -> None:
    layout = MemoryLayout(4)
    core = FakeCore(layout.total_size)
    bus = LguestBus([Many(), Many(), Many(), Echo()])  # 31 queues
    bus.setup(core, layout)
    assert bus.slots[-1].queues[0].irq == 31
    layout = MemoryLayout(4)
    bus = LguestBus([Many(), Many(), Many(), Echo(), Echo()])
    with pytest.raises(LaunchError, match="too many virtqueues"):
        bus.setup(FakeCore(layout.total_size), layout)


def test_descriptor_page_overflow_is_refused() -> None:
    layout = MemoryLayout(4)
    bus = LguestBus([Echo(config=bytes(255)) for _ in range(16)])
    with pytest.raises(LaunchError, match="too many devices"):
        bus.setup(FakeCore(layout.total_size), layout)


def test_feature_bits_above_31_are_refused() -> None:
    layout = MemoryLayout(4)
    bus = LguestBus([Echo(features=1 << 32)])
    with pytest.raises(LaunchError, match="below 32"):
        bus.setup(FakeCore(layout.total_size), layout)


def test_unknown_addresses_are_not_claimed() -> None:
    h = BusHarness([Echo()])
    try:
        assert not h.bus.notify(0x5000)
        assert not h.bus.notify(h.slot(0).address + 1)
    finally:
        h.close()


def test_device_starts_on_driver_ok_with_accepted_features() -> None:
    echo = Echo(features=0b1011)
    h = BusHarness([echo])
    try:
        h.set_status(0, STATUS_ACKNOWLEDGE)
        h.set_status(0, STATUS_ACKNOWLEDGE | STATUS_DRIVER)
        assert not h.slot(0).running
        # The guest accepts one bit we offered and one we did not.
        h.start(0, features=0b0011 | 0b0100)
        assert h.slot(0).running
        assert echo.starts == [0b0011]
        q = h.slot(0).queues[0]
        assert h.core.attach_calls[-1][0] == q.address
        assert h.core.attach_calls[-1][2] is True
        ring = h.ring(0, 0)
        head, ins = ring.post([b"ping"], [4])
        h.kick(0, 0)
        assert ring.wait_used(1) == [(head, 4)]
        assert ring.read(ins[0], 4) == b"ping"
        deadline = time.monotonic() + 5
        while q.irq not in h.core.irqs and time.monotonic() < deadline:
            time.sleep(0.001)
        assert h.core.irqs == [q.irq]
        assert h.core.dma == [(ins[0], 4)]
        # A second DRIVER_OK notify does not start it twice.
        h.set_status(0, 7)
        assert echo.starts == [0b0011]
    finally:
        h.close()


def test_kick_before_driver_ok_starts_the_device() -> None:
    echo = Echo()
    h = BusHarness([echo])
    try:
        ring = h.ring(0, 0)
        head, _ = ring.post([b"early"], [5])
        h.kick(0, 0)  # no eventfd yet: reaches the bus
        assert h.slot(0).running
        assert ring.wait_used(1) == [(head, 5)]
    finally:
        h.close()


def test_kick_to_a_running_device_reaching_the_bus_is_a_fault() -> None:
    h = BusHarness([Echo()])
    try:
        h.start(0)
        with pytest.raises(GuestFault, match="running device"):
            h.bus.notify(h.slot(0).queues[0].address)
    finally:
        h.close()


def test_reset_stops_threads_zeroes_rings_and_detaches() -> None:
    echo = Echo(features=1)
    h = BusHarness([echo])
    try:
        h.start(0)
        ring = h.ring(0, 0)
        ring.post([b"x"], [1])
        h.kick(0, 0)
        ring.wait_used(1)
        worker = h.slot(0).workers[0]
        q = h.slot(0).queues[0]
        h.set_status(0, 0)
        assert not h.slot(0).running
        assert not worker.is_alive()
        assert q.address not in h.core.eventfds
        assert h.core.mem[ring.used + 2] == 0 and q.last_avail == 0
        at = h.slot(0).driver_features_address
        assert h.core.mem[at] == 0
        assert echo.resets >= 1
        # Restart after the reset: the new eventfd replaces the old one, and the
        # ring works from index 0 again.
        h.start(0)
        ring2 = h.ring(0, 0)
        head, _ = ring2.post([b"again"], [5])
        h.kick(0, 0)
        assert ring2.wait_used(1) == [(head, 5)]
        assert all(replace for _, _, replace in h.core.attach_calls)
    finally:
        h.close()


def test_failed_status_resets_a_running_device() -> None:
    h = BusHarness([Echo()])
    try:
        h.start(0)
        h.set_status(0, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FAILED)
        assert not h.slot(0).running
    finally:
        h.close()


def test_malformed_ring_in_a_queue_thread_stops_the_guest_with_the_reason() -> None:
    h = BusHarness([Echo()])
    try:
        h.start(0)
        ring = h.ring(0, 0)
        ring.write_desc(ring.desc, 0, ring.alloc(8), 8, DESC_F_NEXT, 0)
        ring.publish(0)
        h.kick(0, 0)
        reason = h.wait_fault()
        assert "loops" in reason
        assert h.bus.fault_reason == reason
        # Every eventfd is detached so the guest's next kick reaches the run loop.
        assert h.core.eventfds == {}
    finally:
        h.close()


def test_a_crashing_device_stops_the_guest_not_the_launcher() -> None:
    class Broken(Echo):
        def handle(self, queue: Virtqueue, chain: Chain) -> int:
            raise ZeroDivisionError("oops")

    h = BusHarness([Broken()])
    try:
        h.start(0)
        ring = h.ring(0, 0)
        ring.post([b"x"])
        h.kick(0, 0)
        assert "queue failed: oops" in h.wait_fault()
    finally:
        h.close()


def test_irq_after_death_ends_the_thread_quietly() -> None:
    h = BusHarness([Echo()])
    try:
        h.start(0)
        h.core.dead = True
        ring = h.ring(0, 0)
        ring.post([b"x"], [1])
        h.kick(0, 0)
        ring.wait_used(1)
        h.slot(0).workers[0].join(5)
        assert not h.slot(0).workers[0].is_alive()
        assert h.faults == []
    finally:
        h.close()


def test_setup_again_for_a_reboot_gives_the_same_layout() -> None:
    echo = Echo()
    h = BusHarness([echo, Rng()])
    h.start(0)
    before = bytes(h.core.mem[h.layout.descriptor_page : h.layout.descriptor_page + 64])
    workers = list(h.slot(0).workers)
    layout = MemoryLayout(1)
    core = FakeCore(layout.total_size)
    h.bus.setup(core, layout)
    try:
        assert not any(w.is_alive() for w in workers)
        after = bytes(core.mem[layout.descriptor_page : layout.descriptor_page + 64])
        assert after == before[:4] + b"\0" + before[5:]  # status cleared
        assert not h.bus.slots[0].running
    finally:
        h.bus.close()


def test_close_stops_every_thread() -> None:
    h = BusHarness([Echo(), Rng()])
    h.start(0)
    h.start(1)
    threads = [w for s in h.bus.slots for w in s.workers]
    assert threads and all(t.is_alive() for t in threads)
    h.close()
    assert not any(t.is_alive() for t in threads)
    assert threading.active_count() < 50

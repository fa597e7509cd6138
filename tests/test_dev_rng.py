"""virtio-rng: every writable byte filled from os.urandom."""

from __future__ import annotations

import pytest
from lguest.devices.rng import Rng
from lguest.errors import GuestFault
from lguest.virtqueue import Virtqueue
from test_virtqueue_guest import BusHarness, GuestRing, serve_directly

MEM = 1 << 20


def test_fills_every_buffer() -> None:
    mem = bytearray(MEM)
    ring = GuestRing(mem, 0x10000, 0x20000, MEM)
    dma: list[tuple[int, int]] = []
    irqs: list[int] = []
    q = Virtqueue(
        mem,
        0x10000,
        limit=MEM,
        irq=4,
        raise_irq=irqs.append,
        note_dma=lambda a, n: dma.append((a, n)),
    )
    head, ins = ring.post([], [64])
    head2, ins2 = ring.post([], [3000, 100], indirect=True)
    serve_directly(Rng(), q)
    assert ring.take_used() == [(head, 64), (head2, 3100)]
    assert ring.read(ins[0], 64) != bytes(64)
    assert ring.read(ins2[0], 3000).count(0) < 100
    assert dma == [(ins[0], 64), (ins2[0], 3000), (ins2[1], 100)]
    assert irqs == [4]


def test_readable_buffer_is_a_fault() -> None:
    mem = bytearray(MEM)
    ring = GuestRing(mem, 0x10000, 0x20000, MEM)
    ring.post([b"seed"], [64])
    with pytest.raises(GuestFault, match="readable buffer"):
        serve_directly(Rng(), Virtqueue(mem, 0x10000, limit=MEM))


def test_through_the_bus() -> None:
    h = BusHarness([Rng()])
    try:
        h.start(0)
        assert h.slot(0).feature_len == 0
        ring = h.ring(0, 0)
        for _ in range(4):
            ring.post([], [64])
        h.kick(0, 0)
        assert [n for _, n in ring.wait_used(4)] == [64] * 4
    finally:
        h.close()

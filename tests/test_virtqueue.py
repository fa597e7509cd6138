"""Virtqueue: chains, indirect tables, used ring, interrupts, and malformed rings."""

from __future__ import annotations

import struct

import pytest
from lguest.errors import GuestFault
from lguest.virtqueue import (
    AVAIL_F_NO_INTERRUPT,
    DESC_F_INDIRECT,
    DESC_F_NEXT,
    DESC_F_WRITE,
    USED_F_NO_NOTIFY,
    VRING_PAGES,
    Virtqueue,
    vring_layout,
    vring_size,
)
from test_virtqueue_guest import GuestRing

RING = 0x10000
HEAP = 0x20000
MEM = 1 << 20


@pytest.fixture
def setup() -> tuple[bytearray, GuestRing, Virtqueue, list[int], list[tuple[int, int]]]:
    mem = bytearray(MEM)
    irqs: list[int] = []
    dma: list[tuple[int, int]] = []
    ring = GuestRing(mem, RING, HEAP, MEM)
    q = Virtqueue(
        mem,
        RING,
        limit=MEM,
        irq=3,
        raise_irq=irqs.append,
        note_dma=lambda a, n: dma.append((a, n)),
        name="test",
    )
    return mem, ring, q, irqs, dma


Setup = tuple[bytearray, GuestRing, Virtqueue, list[int], list[tuple[int, int]]]


def test_geometry() -> None:
    assert vring_layout(256) == (0, 4096, 8192)
    assert vring_size(256) == 10244
    assert VRING_PAGES == 3


def test_empty_ring_pops_nothing(setup: Setup) -> None:
    _, _, q, _, _ = setup
    assert q.pop() is None


def test_chain_buffers_are_views_of_guest_memory(setup: Setup) -> None:
    mem, ring, q, _, dma = setup
    head, ins = ring.post([b"abc", b"defg"], [4, 6])
    chain = q.pop()
    assert chain is not None
    assert chain.head == head
    assert [bytes(b) for b in chain.readable] == [b"abc", b"defg"]
    assert [len(b) for b in chain.writable] == [4, 6]
    assert chain.writable_at == ins
    # Zero-copy: writing the view writes guest memory.
    chain.writable[1][:2] = b"XY"
    assert mem[ins[1] : ins[1] + 2] == b"XY"
    assert chain.write(b"0123456") == 7
    assert mem[ins[0] : ins[0] + 4] == b"0123"
    assert mem[ins[1] : ins[1] + 3] == b"456"
    q.push(chain, 7)
    # note_dma covers exactly the written prefix, before publication.
    assert dma == [(ins[0], 4), (ins[1], 3)]
    assert ring.take_used() == [(head, 7)]


def test_indirect_chain(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    head, _ = ring.post([b"hdr", b"payload"], [1], indirect=True)
    chain = q.pop()
    assert chain is not None and chain.head == head
    assert chain.read() == b"hdrpayload"
    assert [len(b) for b in chain.writable] == [1]


def test_used_index_wraps(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    q.last_avail = q.used_idx = ring.avail_idx = ring.seen_used = 0xFFFF
    struct.pack_into("<H", ring.mem, ring.avail + 2, 0xFFFF)
    struct.pack_into("<H", ring.mem, ring.used + 2, 0xFFFF)
    for _ in range(2):
        ring.post([b"x"])
        chain = q.pop()
        assert chain is not None
        q.push(chain, 0)
    assert q.used_idx == 1 and ring.used_idx() == 1


def test_interrupt_when_the_ring_runs_dry(setup: Setup) -> None:
    _, ring, q, irqs, _ = setup
    ring.post([b"a"])
    ring.post([b"b"])
    ring.set_avail_flags(AVAIL_F_NO_INTERRUPT)
    chain = q.pop()
    assert chain is not None
    q.push(chain, 0)
    # The guest asked for no interrupts and there is still work: stay quiet.
    assert not q.trigger()
    chain = q.pop()
    assert chain is not None
    q.push(chain, 0)
    # Drained: interrupt anyway (NOTIFY_ON_EMPTY behaviour of 2.6.32).
    assert q.trigger()
    assert irqs == [3]
    # Nothing pending: nothing to do.
    assert not q.trigger()


def test_get_clears_no_notify_before_sleeping_and_sets_it_after(setup: Setup) -> None:
    _, ring, q, irqs, _ = setup
    seen: list[int] = []

    def wait() -> None:
        seen.append(ring.used_flags())
        ring.post([b"late"])

    ring.post([b"first"])
    chain = q.get(wait)
    q.push(chain, 0)
    chain = q.get(wait)
    assert chain.read() == b"late"
    # While sleeping the guest must kick us; afterwards it need not.
    assert seen == [0]
    assert ring.used_flags() & USED_F_NO_NOTIFY
    # The first completion was signalled before sleeping.
    assert irqs == [3]


def test_reset_zeroes_the_ring(setup: Setup) -> None:
    mem, ring, q, _, _ = setup
    ring.post([b"x"])
    chain = q.pop()
    assert chain is not None
    q.push(chain, 0)
    q.reset()
    assert q.last_avail == q.used_idx == q.pending_used == 0
    assert mem[RING : RING + vring_size(256)] == bytes(vring_size(256))


# --- malformed rings: each one is a GuestFault with a reason --------------------


def fault_of(q: Virtqueue) -> str:
    with pytest.raises(GuestFault) as info:
        q.pop()
    return str(info.value)


def test_descriptor_loop(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    buf = ring.alloc(8)
    ring.write_desc(ring.desc, 0, buf, 8, DESC_F_NEXT, 1)
    ring.write_desc(ring.desc, 1, buf, 8, DESC_F_NEXT, 0)
    ring.publish(0)
    assert "loops" in fault_of(q)


def test_self_loop(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    ring.write_desc(ring.desc, 5, ring.alloc(8), 8, DESC_F_NEXT, 5)
    ring.publish(5)
    assert "loops" in fault_of(q)


def test_indirect_loop(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    table = ring.alloc(32)
    buf = ring.alloc(8)
    ring.write_desc(table, 0, buf, 8, DESC_F_NEXT, 1)
    ring.write_desc(table, 1, buf, 8, DESC_F_NEXT, 0)
    ring.write_desc(ring.desc, 0, table, 32, DESC_F_INDIRECT, 0)
    ring.publish(0)
    assert "loops" in fault_of(q)


def test_next_beyond_the_table(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    ring.write_desc(ring.desc, 0, ring.alloc(8), 8, DESC_F_NEXT, 256)
    ring.publish(0)
    assert "chains to 256" in fault_of(q)


def test_indirect_next_beyond_its_table(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    table = ring.alloc(32)
    ring.write_desc(table, 0, ring.alloc(8), 8, DESC_F_NEXT, 2)
    ring.write_desc(ring.desc, 0, table, 32, DESC_F_INDIRECT, 0)
    ring.publish(0)
    assert "chains to 2, beyond 2" in fault_of(q)


def test_buffer_beyond_guest_memory(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    ring.write_desc(ring.desc, 0, MEM - 4, 8, 0, 0)
    ring.publish(0)
    assert "beyond guest memory" in fault_of(q)


def test_buffer_ending_exactly_at_the_limit_is_fine(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    ring.write_desc(ring.desc, 0, MEM - 8, 8, 0, 0)
    ring.publish(0)
    chain = q.pop()
    assert chain is not None and len(chain.readable[0]) == 8


def test_huge_address_does_not_wrap(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    ring.write_desc(ring.desc, 0, (1 << 64) - 4, 8, 0, 0)
    ring.publish(0)
    assert "beyond guest memory" in fault_of(q)


def test_indirect_table_beyond_guest_memory(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    ring.write_desc(ring.desc, 0, MEM - 16, 32, DESC_F_INDIRECT, 0)
    ring.publish(0)
    assert "indirect table" in fault_of(q)


def test_indirect_table_of_partial_descriptors(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    ring.write_desc(ring.desc, 0, ring.alloc(24), 24, DESC_F_INDIRECT, 0)
    ring.publish(0)
    assert "not whole descriptors" in fault_of(q)


def test_empty_indirect_table(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    ring.write_desc(ring.desc, 0, ring.alloc(16), 0, DESC_F_INDIRECT, 0)
    ring.publish(0)
    assert "not whole descriptors" in fault_of(q)


def test_nested_indirect(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    table = ring.alloc(16)
    ring.write_desc(table, 0, ring.alloc(16), 16, DESC_F_INDIRECT, 0)
    ring.write_desc(ring.desc, 0, table, 16, DESC_F_INDIRECT, 0)
    ring.publish(0)
    assert "indirect descriptor inside" in fault_of(q)


def test_readable_after_writable(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    ring.write_desc(ring.desc, 0, ring.alloc(8), 8, DESC_F_WRITE | DESC_F_NEXT, 1)
    ring.write_desc(ring.desc, 1, ring.alloc(8), 8, 0, 0)
    ring.publish(0)
    assert "readable buffer after a writable one" in fault_of(q)


def test_bad_head_index(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    ring.publish(300)
    assert "descriptor 300 is available" in fault_of(q)


def test_avail_index_jumping_too_far(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    struct.pack_into("<H", ring.mem, ring.avail + 2, 257)
    assert "more than 256 entries ahead" in fault_of(q)


def test_avail_index_one_full_ring_ahead_is_fine(setup: Setup) -> None:
    _, ring, q, _, _ = setup
    for _ in range(256):
        ring.post([b"x"])
    for _ in range(256):
        assert q.pop() is not None
    assert q.pop() is None


def test_descriptor_is_read_once(setup: Setup) -> None:
    """The chain is built from one read of each descriptor: rewriting the table
    after pop changes nothing the device holds."""
    _, ring, q, _, _ = setup
    ring.post([b"stable"])
    chain = q.pop()
    assert chain is not None
    ring.write_desc(ring.desc, 0, 0, 1 << 20, DESC_F_WRITE, 0)
    assert chain.read() == b"stable" and not chain.writable


def test_vring_must_fit_in_memory() -> None:
    with pytest.raises(ValueError):
        Virtqueue(bytearray(8192), 0, limit=8192)
    with pytest.raises(ValueError):
        Virtqueue(bytearray(1 << 20), 0, num=100, limit=1 << 20)

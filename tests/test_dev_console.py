"""virtio console: input from scripts, pipes and terminals; output; Ctrl-C; terminal mode."""

from __future__ import annotations

import io
import os
import termios
import time

import pytest
from lguest.devices.console import Console
from lguest.errors import GuestFault
from lguest.virtqueue import Virtqueue
from test_virtqueue_guest import BusHarness, GuestRing, serve_directly

MEM = 1 << 20


def queue(mem: bytearray, address: int, irqs: list[int], index: int) -> Virtqueue:
    return Virtqueue(
        mem,
        address,
        limit=MEM,
        irq=index + 1,
        raise_irq=irqs.append,
        index=index,
        name="console",
    )


def test_output_goes_to_the_stream() -> None:
    mem = bytearray(MEM)
    out = io.BytesIO()
    console = Console(None, out)
    ring = GuestRing(mem, 0x10000, 0x20000, MEM)
    irqs: list[int] = []
    q = queue(mem, 0x10000, irqs, 1)
    h1, _ = ring.post([b"hello, "])
    h2, _ = ring.post([b"wor", b"ld\n"])
    serve_directly(console, q)
    assert out.getvalue() == b"hello, world\n"
    assert ring.take_used() == [(h1, 0), (h2, 0)]
    assert irqs == [2]  # once, when the queue ran dry
    console.close()


def test_output_with_a_writable_buffer_is_a_fault() -> None:
    mem = bytearray(MEM)
    ring = GuestRing(mem, 0x10000, 0x20000, MEM)
    ring.post([b"x"], [4])
    with pytest.raises(GuestFault, match="writable buffer"):
        serve_directly(Console(None, io.BytesIO()), queue(mem, 0x10000, [], 1))


def test_input_with_a_readable_buffer_is_a_fault() -> None:
    mem = bytearray(MEM)
    ring = GuestRing(mem, 0x10000, 0x20000, MEM)
    ring.post([b"x"], [4])
    with pytest.raises(GuestFault, match="readable buffer"):
        serve_directly(Console(None, io.BytesIO()), queue(mem, 0x10000, [], 0))


def test_output_failure_is_reported_once_and_dropped() -> None:
    class Broken(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: object) -> int:
            raise OSError(5, "Input/output error")

    mem = bytearray(MEM)
    ring = GuestRing(mem, 0x10000, 0x20000, MEM)
    ring.post([b"a"])
    ring.post([b"b"])
    worker = serve_directly(Console(None, Broken()), queue(mem, 0x10000, [], 1))  # type: ignore[arg-type]
    assert len(ring.take_used()) == 2
    assert len(worker.messages) == 1


def test_scripted_input_through_the_bus() -> None:
    console = Console(None, io.BytesIO())
    h = BusHarness([console])
    try:
        h.start(0)
        ring = h.ring(0, 0)
        head, ins = ring.post([], [4096])
        h.kick(0, 0)
        console.send("ls -l\n")
        used = ring.wait_used(1)
        assert used == [(head, 6)]
        assert ring.read(ins[0], 6) == b"ls -l\n"
        # Input raises the IRQ at once.
        deadline = time.monotonic() + 5
        while 1 not in h.core.irqs and time.monotonic() < deadline:
            time.sleep(0.001)
        assert 1 in h.core.irqs
        assert (ins[0], 6) in h.core.dma
        # Longer than the buffer: the rest comes in the next one.
        console.send(b"x" * 10)
        head, ins = ring.post([], [4])
        h.kick(0, 0)
        assert ring.wait_used(1) == [(head, 4)]
        head, ins = ring.post([], [100])
        h.kick(0, 0)
        assert ring.wait_used(1) == [(head, 6)]
    finally:
        h.close()


def test_pipe_input_and_end_of_input() -> None:
    r, w = os.pipe()
    console = Console(r, io.BytesIO())
    h = BusHarness([console])
    try:
        h.start(0)
        ring = h.ring(0, 0)
        head, ins = ring.post([], [64])
        h.kick(0, 0)
        os.write(w, b"echo hi\n")
        assert ring.wait_used(1) == [(head, 8)]
        assert ring.read(ins[0], 8) == b"echo hi\n"
        ring.post([], [64])
        h.kick(0, 0)
        os.close(w)
        w = -1
        deadline = time.monotonic() + 5
        while not console.input_ended and time.monotonic() < deadline:
            time.sleep(0.001)
        assert console.input_ended
        assert h.faults == []
    finally:
        if w >= 0:
            os.close(w)
        h.close()
        os.close(r)


def test_three_ctrl_c_within_a_second_interrupt_the_launcher() -> None:
    r, w = os.pipe()
    console = Console(r, io.BytesIO())
    assert console.ctrl_c
    h = BusHarness([console])
    try:
        h.start(0)
        ring = h.ring(0, 0)
        h.kick(0, 0)
        for n in range(3):
            head, ins = ring.post([], [16])
            h.kick(0, 0)
            os.write(w, b"\x03")
            assert ring.wait_used(1) == [(head, 1)]
            # The guest still gets every Ctrl-C.
            assert ring.read(ins[0], 1) == b"\x03"
            if n < 2:
                assert h.interrupts == 0
        deadline = time.monotonic() + 5
        while h.interrupts == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert h.interrupts == 1
    finally:
        h.close()
        os.close(r)
        os.close(w)


def test_ctrl_c_count_resets_on_other_input() -> None:
    r, w = os.pipe()
    console = Console(r, io.BytesIO())
    h = BusHarness([console])
    try:
        h.start(0)
        ring = h.ring(0, 0)
        for data in (b"\x03", b"\x03", b"a", b"\x03", b"\x03"):
            ring.post([], [16])
            h.kick(0, 0)
            os.write(w, data)
            ring.wait_used(1)
        time.sleep(0.05)
        assert h.interrupts == 0
    finally:
        h.close()
        os.close(r)
        os.close(w)


def test_terminal_mode_is_set_and_restored() -> None:
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        console = Console(slave, io.BytesIO())
        assert console.terminal_mode
        now = termios.tcgetattr(slave)
        lflag = now[3]
        assert not lflag & (termios.ISIG | termios.ICANON | termios.ECHO)
        # Only those three bits changed.
        assert lflag | termios.ISIG | termios.ICANON | termios.ECHO == before[3] | (
            termios.ISIG | termios.ICANON | termios.ECHO
        )
        assert now[:3] == before[:3]
        console.close()
        assert termios.tcgetattr(slave) == before
        assert not console.terminal_mode
    finally:
        os.close(master)
        os.close(slave)


def test_terminal_is_restored_when_the_launcher_fails() -> None:
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        console = Console(slave, io.BytesIO())
        h = BusHarness([console])
        with pytest.raises(RuntimeError):
            try:
                raise RuntimeError("something went wrong")
            finally:
                h.close()
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_terminal_option_off_leaves_the_terminal_alone() -> None:
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        console = Console(slave, io.BytesIO(), terminal=False)
        assert termios.tcgetattr(slave) == before
        console.close()
    finally:
        os.close(master)
        os.close(slave)

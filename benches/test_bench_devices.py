"""Device throughput, driven straight through the virtqueues from Python.

virtio-blk sequential read and write (MB/s) next to the host's own ``dd`` on
the same file, and console output (MB/s and buffers/s).  The "guest" is
Python code posting descriptor chains as a driver would (tests/
test_virtqueue_guest.py); the device's service routine runs in the
benchmark's thread, so the figures are the device side's cost per request:
parsing the ring, checking every address, the system calls, the used ring.
Guest memory is the core's (``lguest._core.Lguest.mem``) when the extension
is there, else a bytearray.

    python -m pytest benches/test_bench_devices.py --benchmark-enable
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lguest.devices.block import VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, Block
from lguest.devices.console import Console
from lguest.virtqueue import DESC_F_NEXT, DESC_F_WRITE, Virtqueue
from test_virtqueue_guest import GuestRing, serve_directly

DISK_MB = 64
REQUEST = 64 * 1024
#: Requests in flight per kick: 3 descriptors each, within the 256-entry ring.
BATCH = 64
RING = 0x10000
HEAP = 0x100000
MEM = 16 << 20


def guest_memory() -> memoryview:
    try:
        from lguest import _core

        return _core.Lguest(MEM).mem
    except ImportError:
        return memoryview(bytearray(MEM))


class BlockDriver:
    """Posts batches of BATCH requests of REQUEST bytes, then serves them."""

    def __init__(self, path: Path, kind: int) -> None:
        self.mem = guest_memory()
        self.ring = GuestRing(self.mem, RING, HEAP, MEM)
        self.q = Virtqueue(self.mem, RING, limit=MEM, irq=1, raise_irq=lambda n: None)
        self.dev = Block(path)
        self.kind = kind
        self.slots = []
        for _ in range(BATCH):
            hdr = self.ring.alloc(16)
            data = self.ring.alloc(REQUEST)
            status = self.ring.alloc(1)
            self.slots.append((hdr, data, status))
        self.sectors = DISK_MB * (1 << 20) // 512

    def run(self) -> int:
        data_flags = DESC_F_WRITE if self.kind == VIRTIO_BLK_T_IN else 0
        sector = 0
        moved = 0
        while sector < self.sectors:
            for i, (hdr, data, status) in enumerate(self.slots):
                if sector >= self.sectors:
                    break
                struct.pack_into("<IIQ", self.mem, hdr, self.kind, 0, sector)
                d = 3 * i
                self.ring.write_desc(self.ring.desc, d, hdr, 16, DESC_F_NEXT, d + 1)
                self.ring.write_desc(
                    self.ring.desc,
                    d + 1,
                    data,
                    REQUEST,
                    data_flags | DESC_F_NEXT,
                    d + 2,
                )
                self.ring.write_desc(self.ring.desc, d + 2, status, 1, DESC_F_WRITE, 0)
                self.ring.publish(d)
                sector += REQUEST // 512
                moved += REQUEST
            serve_directly(self.dev, self.q)
            for _, length in self.ring.take_used():
                assert length >= 1
        return moved


def dd(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run(["dd", *args], check=True, capture_output=True)
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "disk.img"
    with open(path, "wb") as f:
        chunk = os.urandom(1 << 20)
        f.writelines(chunk for _ in range(DISK_MB))
    return path


def rate(fn: Callable[[], int], benchmark: object) -> float:
    times: list[float] = []

    def once() -> int:
        start = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - start)
        return n

    moved = benchmark(once)  # type: ignore[operator]
    return moved / min(times) / 1e6


@pytest.mark.skipif(shutil.which("dd") is None, reason="needs dd")
def test_block_sequential_read(
    disk: Path, benchmark: object, report: Callable[[str], None]
) -> None:
    driver = BlockDriver(disk, VIRTIO_BLK_T_IN)
    mbs = rate(driver.run, benchmark)
    host = DISK_MB * (1 << 20) / dd(f"if={disk}", "of=/dev/null", "bs=64k") / 1e6
    report(
        f"virtio-blk sequential read, 64 KiB requests x{BATCH}: {mbs:8.0f} MB/s "
        f"(host dd bs=64k: {host:.0f} MB/s, page cache)"
    )


@pytest.mark.skipif(shutil.which("dd") is None, reason="needs dd")
def test_block_sequential_write(
    disk: Path, benchmark: object, report: Callable[[str], None]
) -> None:
    driver = BlockDriver(disk, VIRTIO_BLK_T_OUT)
    mbs = rate(driver.run, benchmark)
    host = (
        DISK_MB
        * (1 << 20)
        / dd(
            "if=/dev/zero",
            f"of={disk}",
            "bs=64k",
            f"count={DISK_MB * 16}",
            "conv=notrunc",
        )
        / 1e6
    )
    report(
        f"virtio-blk sequential write, 64 KiB requests x{BATCH}: {mbs:7.0f} MB/s "
        f"(host dd bs=64k: {host:.0f} MB/s, page cache, no fsync)"
    )


@pytest.mark.parametrize("size", [80, 4096])
def test_console_output(size: int, benchmark: object, report: Callable[[str], None]) -> None:
    mem = guest_memory()
    ring = GuestRing(mem, RING, HEAP, MEM)
    q = Virtqueue(mem, RING, limit=MEM, irq=2, raise_irq=lambda n: None, index=1)
    sink = open(os.devnull, "wb")  # noqa: SIM115
    console = Console(None, sink)
    line = ring.alloc(size, (b"x" * (size - 1) + b"\n"))
    rounds = 200

    def run() -> int:
        for _ in range(rounds):
            for i in range(BATCH):
                ring.write_desc(ring.desc, i, line, size, 0, 0)
                ring.publish(i)
            serve_directly(console, q)
            ring.take_used()
        return rounds * BATCH * size

    try:
        mbs = rate(run, benchmark)
    finally:
        console.close()
        sink.close()
    report(
        f"console output, {size:4d}-byte buffers to /dev/null: {mbs:7.1f} MB/s "
        f"({mbs * 1e6 / size / 1e3:.0f}k buffers/s)"
    )


def test_console_output_to_bytesio(benchmark: object, report: Callable[[str], None]) -> None:
    mem = guest_memory()
    ring = GuestRing(mem, RING, HEAP, MEM)
    q = Virtqueue(mem, RING, limit=MEM, irq=2, raise_irq=lambda n: None, index=1)
    out = io.BytesIO()
    console = Console(None, out)
    line = ring.alloc(16, b"hvc0 says hello\n")

    def run() -> int:
        for _ in range(100):
            for i in range(BATCH):
                ring.write_desc(ring.desc, i, line, 16, 0, 0)
                ring.publish(i)
            serve_directly(console, q)
            ring.take_used()
        return 100 * BATCH * 16

    mbs = rate(run, benchmark)
    console.close()
    report(f"console output, 16-byte buffers to BytesIO: {mbs * 1e6 / 16 / 1e3:.0f}k buffers/s")

"""virtio-blk driven through its request queue as a guest driver would."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lguest import LaunchError
from lguest.devices.block import (
    VIRTIO_BLK_F_RO,
    VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK,
    VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_BARRIER,
    VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID,
    VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
    VIRTIO_BLK_T_SCSI_CMD,
    Block,
)
from lguest.errors import GuestFault
from lguest.virtqueue import Virtqueue
from test_virtqueue_guest import BusHarness, GuestRing, serve_directly

MEM = 4 << 20
RING = 0x10000
TESTS_DIR = Path(__file__).resolve().parent


def header(kind: int, sector: int) -> bytes:
    return struct.pack("<IIQ", kind, 0, sector)


class Disk:
    def __init__(self, path: Path, readonly: bool = False, **kw: object) -> None:
        self.mem = bytearray(MEM)
        self.dma: list[tuple[int, int]] = []
        self.irqs: list[int] = []
        self.ring = GuestRing(self.mem, RING, 0x20000, MEM)
        self.q = Virtqueue(
            self.mem,
            RING,
            limit=MEM,
            irq=1,
            raise_irq=self.irqs.append,
            note_dma=lambda a, n: self.dma.append((a, n)),
            name="block requests",
        )
        self.dev = Block(path, readonly, **kw)  # type: ignore[arg-type]

    def request(
        self,
        kind: int,
        sector: int,
        data: bytes = b"",
        read: int = 0,
        indirect: bool = False,
    ) -> tuple[int, int, bytes]:
        """Post one request and serve it; (status, used length, data read)."""
        out = [header(kind, sector)] + ([data] if data else [])
        sizes = ([read] if read else []) + [1]
        head, ins = self.ring.post(out, sizes, indirect=indirect)
        serve_directly(self.dev, self.q)
        used = self.ring.take_used()
        assert used[0][0] == head
        status = self.mem[ins[-1]]
        got = self.ring.read(ins[0], read) if read else b""
        return status, used[0][1], got


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(range(256)) * 16 * 64)  # 256 KiB, 512 sectors
    return path


def test_capacity_and_features(image: Path) -> None:
    dev = Block(image)
    assert dev.capacity == 512
    assert struct.unpack("<QII", dev.config()) == (512, 0, 254)
    assert not dev.features() >> VIRTIO_BLK_F_RO & 1
    assert Block(image, readonly=True).features() >> VIRTIO_BLK_F_RO & 1


def test_read(image: Path) -> None:
    d = Disk(image)
    status, used, data = d.request(VIRTIO_BLK_T_IN, 2, read=1024)
    assert status == VIRTIO_BLK_S_OK
    assert used == 1025
    assert data == image.read_bytes()[1024:2048]
    # The core heard about the data and the status byte before publication.
    assert sum(n for _, n in d.dma) == 1025
    assert d.irqs == [1]


def test_read_scattered_over_indirect_buffers(image: Path) -> None:
    d = Disk(image)
    head, ins = d.ring.post([header(VIRTIO_BLK_T_IN, 1)], [100, 412, 1], indirect=True)
    serve_directly(d.dev, d.q)
    assert d.ring.take_used() == [(head, 513)]
    got = d.ring.read(ins[0], 100) + d.ring.read(ins[1], 412)
    assert got == image.read_bytes()[512:1024]
    assert d.mem[ins[2]] == VIRTIO_BLK_S_OK


def test_write_then_read_back(image: Path) -> None:
    d = Disk(image)
    payload = os.urandom(1536)
    status, used, _ = d.request(VIRTIO_BLK_T_OUT, 10, data=payload)
    assert (status, used) == (VIRTIO_BLK_S_OK, 1)
    assert image.read_bytes()[5120 : 5120 + 1536] == payload
    status, used, data = d.request(VIRTIO_BLK_T_IN, 10, read=1536)
    assert data == payload
    assert image.stat().st_size == 512 * 512


def test_flush_and_barrier(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = Disk(image)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    assert d.request(VIRTIO_BLK_T_FLUSH, 0)[:2] == (VIRTIO_BLK_S_OK, 1)
    assert len(synced) == 1
    status, _, _ = d.request(VIRTIO_BLK_T_OUT | VIRTIO_BLK_T_BARRIER, 0, data=bytes(512))
    assert status == VIRTIO_BLK_S_OK
    assert len(synced) == 3  # before and after


def test_read_only_refuses_writes(image: Path) -> None:
    before = image.read_bytes()
    d = Disk(image, readonly=True)
    assert d.request(VIRTIO_BLK_T_OUT, 0, data=b"x" * 512)[:2] == (
        VIRTIO_BLK_S_IOERR,
        1,
    )
    assert image.read_bytes() == before
    assert d.request(VIRTIO_BLK_T_IN, 0, read=512)[0] == VIRTIO_BLK_S_OK


def test_out_of_range_is_ioerr(image: Path) -> None:
    d = Disk(image)
    assert d.request(VIRTIO_BLK_T_IN, 512, read=512)[:2] == (VIRTIO_BLK_S_IOERR, 1)
    assert d.request(VIRTIO_BLK_T_IN, 511, read=1024)[0] == VIRTIO_BLK_S_IOERR
    assert d.request(VIRTIO_BLK_T_OUT, 511, data=bytes(1024))[0] == VIRTIO_BLK_S_IOERR
    assert d.request(VIRTIO_BLK_T_IN, 1 << 60, read=512)[0] == VIRTIO_BLK_S_IOERR
    # The file did not grow.
    assert image.stat().st_size == 512 * 512


def test_unsupported_types(image: Path) -> None:
    d = Disk(image)
    assert d.request(VIRTIO_BLK_T_SCSI_CMD, 0, read=16)[:2] == (VIRTIO_BLK_S_UNSUPP, 1)
    assert d.request(0x40, 0)[0] == VIRTIO_BLK_S_UNSUPP
    assert d.request(VIRTIO_BLK_T_GET_ID, 0, read=20)[:2] == (VIRTIO_BLK_S_UNSUPP, 1)


def test_get_id_with_a_serial(image: Path) -> None:
    d = Disk(image, serial="lguest-disk-0")
    status, used, data = d.request(VIRTIO_BLK_T_GET_ID, 0, read=20)
    assert (status, used) == (VIRTIO_BLK_S_OK, 21)
    assert data == b"lguest-disk-0".ljust(20, b"\0")


@pytest.mark.parametrize(
    ("out", "sizes", "reason"),
    [
        ([header(0, 0)], [], "without a header or a status"),
        ([], [1], "without a header or a status"),
        ([b"short"], [1], "header is 5 bytes"),
        ([header(0, 0)], [512, 2], "status is 2 bytes"),
    ],
)
def test_malformed_requests_are_faults(
    image: Path, out: list[bytes], sizes: list[int], reason: str
) -> None:
    d = Disk(image)
    d.ring.post(out, sizes)
    with pytest.raises(GuestFault, match=reason):
        serve_directly(d.dev, d.q)


def test_bad_files_are_launch_errors(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="No such file"):
        Block(tmp_path / "missing.img")
    with pytest.raises(LaunchError, match="(?i)is a directory"):
        Block(tmp_path)


def test_through_the_bus_with_a_thread(image: Path) -> None:
    h = BusHarness([Block(image)])
    try:
        h.start(0)
        ring = h.ring(0, 0)
        heads = [ring.post([header(VIRTIO_BLK_T_IN, i)], [512, 1])[0] for i in range(8)]
        h.kick(0, 0)
        used = ring.wait_used(8)
        assert [u[0] for u in used] == heads
        assert all(n == 513 for _, n in used)
    finally:
        h.close()


def test_data_before_a_flush_survives_the_launcher_being_killed(tmp_path: Path) -> None:
    """Write through the queue, FLUSH, then SIGKILL the process: the data is in the file."""
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    script = textwrap.dedent(
        f"""
        import os, struct, sys, time
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from test_dev_block import Disk, header
        from lguest.devices.block import VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH
        from pathlib import Path
        d = Disk(Path({str(image)!r}))
        assert d.request(VIRTIO_BLK_T_OUT, 100, data=b"persist!" * 64)[0] == 0
        assert d.request(VIRTIO_BLK_T_FLUSH, 0)[0] == 0
        print("flushed", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "flushed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert image.read_bytes()[51200 : 51200 + 512] == b"persist!" * 64

"""The block device (virtio type 2): a raw disk image as ``/dev/vda``, ``/dev/vdb``, ..."""

from __future__ import annotations

import os
import stat
import struct
from typing import TYPE_CHECKING, ClassVar

from lguest.devices import Device
from lguest.errors import GuestFault, LaunchError

if TYPE_CHECKING:
    from lguest.virtqueue import Chain, Virtqueue

__all__ = [
    "SECTOR_SIZE",
    "VIRTIO_BLK_F_BARRIER",
    "VIRTIO_BLK_F_FLUSH",
    "VIRTIO_BLK_F_RO",
    "VIRTIO_BLK_F_SEG_MAX",
    "VIRTIO_BLK_S_IOERR",
    "VIRTIO_BLK_S_OK",
    "VIRTIO_BLK_S_UNSUPP",
    "VIRTIO_BLK_T_BARRIER",
    "VIRTIO_BLK_T_FLUSH",
    "VIRTIO_BLK_T_GET_ID",
    "VIRTIO_BLK_T_IN",
    "VIRTIO_BLK_T_OUT",
    "VIRTIO_BLK_T_SCSI_CMD",
    "VIRTIO_ID_BLOCK",
    "Block",
]

VIRTIO_ID_BLOCK = 2
SECTOR_SIZE = 512

VIRTIO_BLK_F_BARRIER = 0
VIRTIO_BLK_F_SEG_MAX = 2
VIRTIO_BLK_F_RO = 5
VIRTIO_BLK_F_FLUSH = 9

VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_SCSI_CMD = 2
VIRTIO_BLK_T_FLUSH = 4
VIRTIO_BLK_T_GET_ID = 8
VIRTIO_BLK_T_BARRIER = 0x80000000

VIRTIO_BLK_S_OK = 0
VIRTIO_BLK_S_IOERR = 1
VIRTIO_BLK_S_UNSUPP = 2

#: Bytes of the ID a GET_ID request returns.
ID_BYTES = 20
#: Data segments per request: the ring's 256 descriptors minus header and status.
SEG_MAX = 256 - 2

_HEADER = struct.Struct("<IIQ")
_CONFIG = struct.Struct("<QII")


# L:300 The block device.
#
# A request is a chain: a 16-byte header the guest wrote (type, priority,
# sector), the data (readable for a write, writable for a read), and a final
# writable byte where we put the result.  We answer in place, reading and
# writing the file straight from and into guest memory with preadv/pwritev
# over the chain's memoryviews: no copies.
#
# What we offer: SEG_MAX (a request may have up to 254 data pieces), FLUSH,
# and, for a read-only disk, RO.  A 2.6.32 guest that sees FLUSH drains its
# queue and sends a FLUSH request where it needs an ordering point
# (QUEUE_ORDERED_DRAIN_FLUSH), and FLUSH is what every later guest uses, so we
# offer it rather than the original's BARRIER alone; we offer BARRIER too,
# because the 2.6.32 driver prefers FLUSH when it has both and an older one
# can still use BARRIER, which we honour with an fsync before and after the
# request.  A FLUSH is an fsync, so whatever the guest wrote before it is on
# stable storage when the guest hears back, and survives the Launcher being
# killed.
#
# The original exited on a write beyond the end of the file; we answer IOERR
# for any request outside the disk, and UNSUPP for any type we do not know.


class Block(Device):
    """A disk backed by a raw image file (or a host block device).

    ``readonly`` opens the file read-only, offers VIRTIO_BLK_F_RO and refuses
    writes with IOERR.  ``serial``, if given, is the ID (at most 20 bytes)
    returned for GET_ID requests; without it those are UNSUPP.  The size is
    taken once, when the device is created.
    """

    device_type: ClassVar[int] = VIRTIO_ID_BLOCK
    queue_names: ClassVar[tuple[str, ...]] = ("requests",)

    def __init__(
        self,
        path: str | os.PathLike[str],
        readonly: bool = False,
        *,
        serial: str | bytes | None = None,
    ) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.readonly = readonly
        if isinstance(serial, str):
            serial = serial.encode()
        if serial is not None and len(serial) > ID_BYTES:
            raise LaunchError(f"{self.path}: block serial is longer than {ID_BYTES} bytes")
        self.serial = serial
        flags = (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC
        try:
            self.fd = os.open(self.path, flags)
        except OSError as exc:
            raise LaunchError(f"{self.path}: {exc.strerror}") from None
        try:
            st = os.fstat(self.fd)
            if stat.S_ISDIR(st.st_mode):
                raise LaunchError(f"{self.path}: is a directory")
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                raise LaunchError(f"{self.path}: not a regular file or block device")
            #: Size of the disk in bytes: the file's, rounded down to whole sectors.
            self.size = os.lseek(self.fd, 0, os.SEEK_END) // SECTOR_SIZE * SECTOR_SIZE
        except BaseException:
            os.close(self.fd)
            raise
        self._closed = False

    @property
    def name(self) -> str:
        return f"block {os.path.basename(self.path)}"

    @property
    def capacity(self) -> int:
        """Disk size in 512-byte sectors."""
        return self.size // SECTOR_SIZE

    def features(self) -> int:
        bits = 1 << VIRTIO_BLK_F_SEG_MAX | 1 << VIRTIO_BLK_F_FLUSH | 1 << VIRTIO_BLK_F_BARRIER
        if self.readonly:
            bits |= 1 << VIRTIO_BLK_F_RO
        return bits

    def config(self) -> bytes:
        # capacity, size_max (not offered: 0), seg_max.
        return _CONFIG.pack(self.capacity, 0, SEG_MAX)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self.fd)

    def handle(self, queue: Virtqueue, chain: Chain) -> int:
        if not chain.readable or not chain.writable:
            raise GuestFault(f"{queue.name}: request without a header or a status byte")
        if len(chain.readable[0]) != _HEADER.size:
            raise GuestFault(
                f"{queue.name}: request header is {len(chain.readable[0])} bytes, not 16"
            )
        if len(chain.writable[-1]) != 1:
            raise GuestFault(
                f"{queue.name}: request status is {len(chain.writable[-1])} bytes, not 1"
            )
        kind, _prio, sector = _HEADER.unpack(chain.readable[0])
        status_buf = chain.writable[-1]
        data_out = chain.readable[1:]
        data_in = chain.writable[:-1]
        barrier = bool(kind & VIRTIO_BLK_T_BARRIER)
        kind &= ~VIRTIO_BLK_T_BARRIER
        read = 0
        if barrier and self._sync() != VIRTIO_BLK_S_OK:
            status = VIRTIO_BLK_S_IOERR
        elif kind & VIRTIO_BLK_T_SCSI_CMD:
            status = VIRTIO_BLK_S_UNSUPP
        elif kind & VIRTIO_BLK_T_OUT:
            status = self._write(sector, data_out)
        elif kind == VIRTIO_BLK_T_FLUSH:
            status = self._sync()
        elif kind == VIRTIO_BLK_T_GET_ID:
            status, read = self._get_id(chain, data_in)
        elif kind == VIRTIO_BLK_T_IN:
            status, read = self._read(sector, data_in)
        else:
            status = VIRTIO_BLK_S_UNSUPP
        if barrier and status == VIRTIO_BLK_S_OK:
            status = self._sync()
        status_buf[0] = status
        if read != sum(len(b) for b in data_in):
            # The data we read and the status byte are not one prefix of the
            # writable buffers (a short read, an ID shorter than its buffer):
            # name the ranges the core must hear about.
            chain.dirty = [*chain.writable_ranges(read), (chain.writable_at[-1], 1)]
        return read + 1

    def _in_range(self, sector: int, length: int) -> bool:
        return sector * SECTOR_SIZE + length <= self.size

    def _write(self, sector: int, data: list[memoryview]) -> int:
        if self.readonly:
            return VIRTIO_BLK_S_IOERR
        length = sum(len(b) for b in data)
        if not self._in_range(sector, length):
            return VIRTIO_BLK_S_IOERR
        offset = sector * SECTOR_SIZE
        try:
            while data:
                n = os.pwritev(self.fd, data, offset)
                offset += n
                data = _advance(data, n)
        except OSError:
            return VIRTIO_BLK_S_IOERR
        return VIRTIO_BLK_S_OK

    def _read(self, sector: int, data: list[memoryview]) -> tuple[int, int]:
        length = sum(len(b) for b in data)
        if not self._in_range(sector, length):
            return VIRTIO_BLK_S_IOERR, 0
        offset = sector * SECTOR_SIZE
        total = 0
        try:
            while data:
                n = os.preadv(self.fd, data, offset)
                if n == 0:  # the file shrank under us: report what we have
                    break
                offset += n
                total += n
                data = _advance(data, n)
        except OSError:
            return VIRTIO_BLK_S_IOERR, 0
        return VIRTIO_BLK_S_OK, total

    def _get_id(self, chain: Chain, data: list[memoryview]) -> tuple[int, int]:
        if self.serial is None or not data:
            return VIRTIO_BLK_S_UNSUPP, 0
        ident = self.serial.ljust(ID_BYTES, b"\0")
        n = 0
        for buf in data:
            take = min(len(buf), ID_BYTES - n)
            buf[:take] = ident[n : n + take]
            n += take
            if n == ID_BYTES:
                break
        return VIRTIO_BLK_S_OK, n

    def _sync(self) -> int:
        try:
            os.fsync(self.fd)
        except OSError:
            return VIRTIO_BLK_S_IOERR
        return VIRTIO_BLK_S_OK


def _advance(buffers: list[memoryview], n: int) -> list[memoryview]:
    """The buffers left after the first ``n`` bytes were transferred."""
    out: list[memoryview] = []
    for i, buf in enumerate(buffers):
        if n >= len(buf):
            n -= len(buf)
            continue
        out.append(buf[n:])
        out.extend(buffers[i + 1 :])
        break
    return out

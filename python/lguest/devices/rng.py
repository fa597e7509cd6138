"""The entropy device (virtio type 4): the guest's hardware random number generator."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, ClassVar

from lguest.devices import Device
from lguest.errors import GuestFault

if TYPE_CHECKING:
    from lguest.virtqueue import Chain, Virtqueue

__all__ = ["VIRTIO_ID_RNG", "Rng"]

VIRTIO_ID_RNG = 4


# L:400 The entropy device.
#
# The simplest device there is: one queue of writable buffers, which we fill
# with random bytes and hand back.  The original read /dev/random, which could
# block the guest for as long as the host was short of entropy; the kernel's
# CSPRNG (os.urandom, getrandom(2)) is what /dev/random has been since Linux
# 5.6 anyway, and never blocks once the host has booted.  No features, no
# config.


class Rng(Device):
    """Fills every buffer the guest offers with bytes from ``os.urandom``."""

    device_type: ClassVar[int] = VIRTIO_ID_RNG
    queue_names: ClassVar[tuple[str, ...]] = ("input",)

    @property
    def name(self) -> str:
        return "rng"

    def handle(self, queue: Virtqueue, chain: Chain) -> int:
        if chain.readable:
            raise GuestFault(f"{queue.name}: the guest offered a readable buffer")
        total = 0
        for buf in chain.writable:
            buf[:] = os.urandom(len(buf))
            total += len(buf)
        return total

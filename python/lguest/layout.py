"""The guest-physical memory layout (abi-devices.md section 1)."""

from __future__ import annotations

from lguest.errors import LaunchError

__all__ = [
    "DEVICE_PAGES",
    "MAX_MEMORY_MIB",
    "PAGE_SIZE",
    "MemoryLayout",
    "page_round_up",
]

#: Every address in the lguest ABI is page-granular at 4 KiB.
PAGE_SIZE = 4096

#: Pages reserved above RAM for the descriptor page and the vrings.  The number
#: is the original Launcher's; running out of it is a setup error.
DEVICE_PAGES = 256

#: Guest-physical addresses are 32 bits wide, and RAM plus the device area must
#: end below 4 GiB (the core keeps the limit in 32 bits), so RAM can be at
#: most 4094 MiB.
MAX_MEMORY_MIB = (1 << 32) // (1 << 20) - (DEVICE_PAGES * PAGE_SIZE >> 20) - 1


def page_round_up(n: int) -> int:
    """Round ``n`` bytes up to a whole number of pages."""
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


# L:100 The memory layout.
#
# The guest sees one flat range of physical memory.  The bottom ``MEM`` bytes
# are RAM, which the guest learns about from the single e820 entry in
# boot_params.  Immediately above RAM the Launcher reserves a device area of
# 256 pages that the guest's page allocator never sees: the first page holds the
# lguest bus's device descriptors (the guest finds it at exactly ``max_pfn <<
# 12``), and the pages after it are handed out, three at a time, for vrings as
# the bus creates virtqueues.
#
#     0 ........ boot_params, command line, kernel, ... initrd    MEM
#     MEM ...... descriptor page
#     MEM+4096 . vrings, in creation order                        guest_limit
#     guest_limit ... rest of the device area, not accessible     MEM + 256 pages
#
# ``guest_limit`` is the first byte after the last page handed out; the guest
# may touch ``[0, guest_limit)`` and nothing else.  The core is told the limit
# once, as a page-frame number, when the guest is initialised, so every page the
# bus needs must be allocated before that.


class MemoryLayout:
    """Where everything lives in guest-physical memory.

    Construction allocates the device descriptor page, exactly as the original
    Launcher does before it creates any device; the lguest bus allocates vrings
    afterwards with :meth:`alloc_pages`.
    """

    def __init__(self, megabytes: int) -> None:
        if isinstance(megabytes, bool) or not isinstance(megabytes, int):
            raise LaunchError(f"memory size must be a whole number of MiB, not {megabytes!r}")
        if not 1 <= megabytes <= MAX_MEMORY_MIB:
            raise LaunchError(
                f"memory size must be between 1 and {MAX_MEMORY_MIB} MiB, not {megabytes}"
            )
        #: Guest RAM in bytes: what the e820 map describes.
        self.ram_size: int = megabytes << 20
        #: First byte the guest may not touch; grows as device pages are handed out.
        self.guest_limit: int = self.ram_size
        #: The lguest bus's descriptor page, always the first page above RAM.
        self.descriptor_page: int = self.alloc_pages(1)

    @property
    def megabytes(self) -> int:
        """Guest RAM in MiB."""
        return self.ram_size >> 20

    @property
    def total_size(self) -> int:
        """Bytes of guest-physical memory to allocate: RAM plus the whole device area."""
        return self.ram_size + DEVICE_PAGES * PAGE_SIZE

    @property
    def device_area_end(self) -> int:
        """First byte after the device area."""
        return self.total_size

    @property
    def pfn_limit(self) -> int:
        """The page-frame limit handed to the core at initialisation."""
        return self.guest_limit // PAGE_SIZE

    def alloc_pages(self, n: int) -> int:
        """Hand out ``n`` zeroed pages of the device area; return their guest-physical address.

        Pages come out in order, so the layout is the same for the same devices
        on the same command line (the original Launcher's, which makes debugging
        against it easy).
        """
        if n < 1:
            raise ValueError(f"alloc_pages needs at least one page, not {n}")
        address = self.guest_limit
        if address + n * PAGE_SIZE > self.device_area_end:
            raise LaunchError(
                f"not enough memory for devices: the {DEVICE_PAGES}-page device area is full"
            )
        self.guest_limit = address + n * PAGE_SIZE
        return address

    def __repr__(self) -> str:
        return (
            f"MemoryLayout(ram={self.ram_size:#x}, descriptor_page={self.descriptor_page:#x}, "
            f"guest_limit={self.guest_limit:#x})"
        )

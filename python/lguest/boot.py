"""Loading a guest: the kernel, the initrd, the command line and boot_params.

Everything here is a small function over plain buffers: the image is a
``bytes``-like object holding the file, and guest memory is any writable
buffer (the core's ``memoryview``, or a ``bytearray`` in the tests) whose byte
offset is the guest-physical address.  Nothing here needs the Rust core.

Each step comes in two halves.  ``parse_*``/``place_*``/``plan_guest`` check
everything and work out where each piece goes without touching memory, so a
bad kernel is refused before any guest memory is allocated; ``load_*`` and
:meth:`BootPlan.write` then copy the bytes in.

Every problem with what the user gave raises :class:`~lguest.errors.LaunchError`
with a one-line message that names the file.  The specification is
abi-devices.md section 6 and abi-core.md sections 5.2-5.5.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Literal

from elftools.common.exceptions import ELFError
from elftools.construct import ConstructError
from elftools.elf.elffile import ELFFile

from lguest.errors import LaunchError
from lguest.layout import PAGE_SIZE, page_round_up

__all__ = [
    "BOOT_PARAMS_ADDR",
    "BZIMAGE_LOAD_ADDR",
    "CMDLINE_ADDR",
    "CMDLINE_MAX",
    "BootInfo",
    "BootPlan",
    "Initrd",
    "KernelImage",
    "Segment",
    "is_bzimage",
    "is_elf",
    "load_bzimage",
    "load_elf",
    "load_guest",
    "load_initrd",
    "load_kernel",
    "page_table_reserve",
    "parse_bzimage",
    "parse_elf",
    "parse_kernel",
    "place_initrd",
    "plan_guest",
    "unpack_bzimage",
    "read_file",
    "write_boot_params",
    "write_command_line",
    "write_initrd",
    "write_kernel",
]

#: Anything that holds the bytes of a file.
Image = bytes | bytearray | memoryview
#: Guest-physical memory: a writable buffer indexed by guest-physical address.
Memory = bytearray | memoryview

# The fixed places in low memory.  There is no BIOS and no real-mode code:
# boot_params ("the zero page") is the first page, the command line the second,
# and nothing else is written below the kernel.
BOOT_PARAMS_ADDR = 0x0000
BOOT_PARAMS_SIZE = 0x1000
CMDLINE_ADDR = 0x1000
#: The guest copies at most 2048 bytes (COMMAND_LINE_SIZE on x86 in 2.6.32),
#: including the terminating NUL, so a longer line would be cut off silently.
CMDLINE_MAX = 2047
#: Kernel segments must not overwrite boot_params or the command line.
LOW_RESERVED_END = CMDLINE_ADDR + PAGE_SIZE
#: The bzImage protected-mode payload always goes at 1 MiB.
BZIMAGE_LOAD_ADDR = 0x100000

# Offsets into boot_params (struct boot_params; the setup header starts at
# 0x1F1).  They are the same in the page we write and in a bzImage file, whose
# first sectors are a boot_params image.
BOOT_PARAMS_E820_ENTRIES = 0x1E8  # u8: how many e820_map entries are valid
BOOT_PARAMS_SETUP_SECTS = 0x1F1  # u8: 512-byte sectors of real-mode setup code
BOOT_PARAMS_HEADER = 0x202  # 4 bytes: "HdrS" marks a bzImage setup header
BOOT_PARAMS_VERSION = 0x206  # u16: boot protocol version
BOOT_PARAMS_TYPE_OF_LOADER = 0x210  # u8
BOOT_PARAMS_LOADFLAGS = 0x211  # u8
BOOT_PARAMS_CODE32_START = 0x214  # u32: 32-bit entry of the bzImage payload
BOOT_PARAMS_RAMDISK_IMAGE = 0x218  # u32: GPA of the initrd
BOOT_PARAMS_RAMDISK_SIZE = 0x21C  # u32: initrd length, page-rounded
BOOT_PARAMS_CMD_LINE_PTR = 0x228  # u32: GPA of the command line
BOOT_PARAMS_KERNEL_ALIGNMENT = 0x230  # u32: where a relocatable kernel goes
BOOT_PARAMS_HARDWARE_SUBARCH = 0x23C  # u32: which platform entry to take
BOOT_PARAMS_PAYLOAD_OFFSET = 0x248  # u32: compressed kernel, from the payload start (2.08+)
BOOT_PARAMS_PAYLOAD_LENGTH = 0x24C  # u32: its length (2.08+)
BOOT_PARAMS_E820_MAP = 0x2D0  # 128 entries of (u64 addr, u64 size, u32 type)

BZIMAGE_MAGIC = b"HdrS"
#: A setup_sects of 0 means 4 (a rule of the boot protocol from the days of
#: the original boot sector).
BZIMAGE_DEFAULT_SETUP_SECTS = 4
SECTOR_SIZE = 512

#: Boot protocol 2.07 is the first with hardware_subarch; the guest's entry
#: code only looks at the sub-architecture when the version says it may.
BOOT_PROTOCOL_VERSION = 0x0207
#: "Unknown boot loader": the guest only accepts an initrd from a loader that
#: has set type_of_loader to something non-zero.
LOADER_TYPE_UNDEFINED = 0xFF
#: KEEP_SEGMENTS: the guest runs at privilege level 1, where reloading the GDT
#: and the segment registers would fault; this flag tells both the bzImage
#: decompressor and the kernel entry to keep the segments they were given.
LOADFLAGS_KEEP_SEGMENTS = 0x40
#: A relocatable bzImage rounds its decompression address up to this.  The
#: 2.6.32 Launcher left it 0, which makes such a kernel decompress itself onto
#: boot_params at address 0; later Launchers use 16 MiB, and so do we.
KERNEL_ALIGNMENT = 0x1000000
#: X86_SUBARCH_LGUEST: makes the kernel entry jump to lguest_entry.
X86_SUBARCH_LGUEST = 1
#: e820 type of ordinary RAM.
E820_RAM = 1

ELF_MAGIC = b"\x7fELF"
ELF32_HEADER_SIZE = 52
ELF32_PHDR_SIZE = 32
#: The original Launcher's sanity limit on program headers.
ELF_MAX_PHDRS = 2048
ELFCLASS32 = 1
ELFDATA2LSB = 1


@dataclass(frozen=True)
class Segment:
    """One piece of a kernel to copy into guest memory."""

    #: Guest-physical address of the first byte.
    address: int
    #: The bytes from the file.
    data: memoryview
    #: Bytes the piece occupies in memory; those beyond ``data`` (bss) are zeroed.
    size: int


@dataclass(frozen=True)
class KernelImage:
    """Where a kernel goes (or went) and where it starts."""

    #: "bzimage-unpacked": a bzImage whose compressed vmlinux the Launcher
    #: unpacked itself and loaded like an ELF (L:125).
    kind: Literal["elf", "bzimage", "bzimage-unpacked"]
    #: Guest address of the first instruction (the core's ``start``).
    entry: int
    #: Lowest guest-physical address the kernel occupies.
    start: int
    #: First guest-physical address above the kernel (ELF: including bss).
    end: int
    #: What to copy where; not part of comparisons.
    segments: tuple[Segment, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class Initrd:
    """Where the initrd was loaded."""

    #: Guest-physical address of the first byte: page-aligned, ``ram_size - size``.
    address: int
    #: Length rounded up to whole pages, as boot_params and the core expect it.
    size: int


@dataclass(frozen=True)
class BootInfo:
    """Everything :func:`load_guest` put into guest memory."""

    kernel: KernelImage
    initrd: Initrd | None
    command_line: bytes


def _byte_view(buffer: Image) -> memoryview:
    """A flat memoryview of unsigned bytes over ``buffer``, without copying."""
    view = memoryview(buffer)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _mib(n: int) -> str:
    """A byte count in MiB for messages: '64 MiB', '1.5 MiB'."""
    return f"{n / (1 << 20):g} MiB"


def read_file(path: str | os.PathLike[str], what: str) -> bytes:
    """Read a whole file the user named, turning OS errors into one-line LaunchErrors.

    ``what`` says what the file is for ("kernel", "initrd"), so a bad path
    reads "missing.elf: cannot read kernel: No such file or directory".
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise LaunchError(f"{os.fspath(path)}: cannot read {what}: {reason}") from None


# L:110 Loading an ELF vmlinux.
#
# An uncompressed kernel is an ordinary i386 executable.  We copy each
# loadable segment's file bytes to its *physical* address (p_paddr): the
# virtual addresses are up at PAGE_OFFSET, where nothing is mapped yet when the
# guest starts.  The rest of each segment up to p_memsz is the bss, which must
# be zero; fresh guest memory already is, but we clear it anyway so that loading
# does not depend on it.  The entry point e_entry of an i386 vmlinux is a
# physical address too.
#
# The original Launcher trusted the file beyond a few header checks.  We also
# check that every segment lies in RAM and above the two pages of boot_params
# and command line, so a wrong kernel or too little memory gives a clear
# message here rather than a mysterious guest death later.


def is_elf(image: Image) -> bool:
    """True if ``image`` starts with the ELF magic number."""
    return bytes(_byte_view(image)[:4]) == ELF_MAGIC


def _elf_name(value: object) -> str:
    """pyelftools gives known enum values as names and unknown ones as ints."""
    return value if isinstance(value, str) else f"{value}"


def parse_elf(image: Image, name: str, ram_size: int) -> KernelImage:
    """Check an i386 ELF executable and work out where its segments go."""
    data = _byte_view(image)
    if len(data) < ELF32_HEADER_SIZE:
        raise LaunchError(f"{name}: truncated ELF ({len(data)} bytes, shorter than an ELF header)")
    try:
        elf = ELFFile(io.BytesIO(data))
        header = elf.header
        ident = header["e_ident"]
    except ELFError as exc:
        raise LaunchError(f"{name}: malformed ELF ({exc})") from None

    # The machine comes first because it is what a user most often gets
    # wrong (an x86-64 kernel), and it is the clearest thing to report.
    if header["e_machine"] != "EM_386":
        raise LaunchError(f"{name}: not an i386 ELF (machine {_elf_name(header['e_machine'])})")
    if ident["EI_CLASS"] != "ELFCLASS32":
        raise LaunchError(f"{name}: not an i386 ELF (class {_elf_name(ident['EI_CLASS'])})")
    if ident["EI_DATA"] != "ELFDATA2LSB":
        raise LaunchError(f"{name}: not an i386 ELF (data {_elf_name(ident['EI_DATA'])})")
    if header["e_type"] != "ET_EXEC":
        raise LaunchError(
            f"{name}: not an executable ELF (type {_elf_name(header['e_type'])}); "
            "a linked vmlinux is needed"
        )
    if header["e_phentsize"] != ELF32_PHDR_SIZE:
        raise LaunchError(
            f"{name}: malformed ELF (program header size {header['e_phentsize']}, "
            f"expected {ELF32_PHDR_SIZE})"
        )
    phnum: int = header["e_phnum"]
    if not 1 <= phnum <= ELF_MAX_PHDRS:
        raise LaunchError(
            f"{name}: malformed ELF ({phnum} program headers; expected 1 to {ELF_MAX_PHDRS})"
        )
    phoff: int = header["e_phoff"]
    if phoff + phnum * ELF32_PHDR_SIZE > len(data):
        raise LaunchError(f"{name}: truncated ELF (program headers run past the end of the file)")

    # Parse the program headers with pyelftools' own struct definitions rather
    # than through get_segment(), which for some segment types goes on to read
    # the section table too -- which a vmlinux need not even have.
    phdr_struct = elf.structs.Elf_Phdr
    try:
        segments = [
            phdr_struct.parse(bytes(data[at : at + ELF32_PHDR_SIZE]))
            for at in range(phoff, phoff + phnum * ELF32_PHDR_SIZE, ELF32_PHDR_SIZE)
        ]
    except (ConstructError, ELFError) as exc:
        raise LaunchError(f"{name}: malformed ELF ({exc})") from None

    loads: list[Segment] = []
    for index, phdr in enumerate(segments):
        if phdr["p_type"] != "PT_LOAD" or phdr["p_memsz"] == 0:
            continue
        offset, paddr = phdr["p_offset"], phdr["p_paddr"]
        filesz, memsz = phdr["p_filesz"], phdr["p_memsz"]
        if filesz > memsz:
            raise LaunchError(
                f"{name}: malformed ELF (segment {index} has more file bytes than memory bytes)"
            )
        if offset + filesz > len(data):
            raise LaunchError(
                f"{name}: truncated ELF (segment {index} runs past the end of the file)"
            )
        if paddr + memsz > ram_size:
            raise LaunchError(
                f"{name}: does not fit in {_mib(ram_size)} of RAM "
                f"(segment {index} at {paddr:#x}-{paddr + memsz - 1:#x}); "
                "give the guest more memory"
            )
        if paddr < LOW_RESERVED_END:
            raise LaunchError(
                f"{name}: segment {index} at {paddr:#x} overlaps boot_params and the "
                f"command line (0x0-{LOW_RESERVED_END - 1:#x})"
            )
        loads.append(Segment(paddr, data[offset : offset + filesz], memsz))
    if not loads:
        raise LaunchError(f"{name}: ELF has no loadable segments")
    return KernelImage(
        kind="elf",
        entry=header["e_entry"],
        start=min(seg.address for seg in loads),
        end=max(seg.address + seg.size for seg in loads),
        segments=tuple(loads),
    )


def write_kernel(mem: Memory, kernel: KernelImage) -> None:
    """Copy a parsed kernel's segments into guest memory, zeroing each one's bss."""
    view = _byte_view(mem)
    for seg in kernel.segments:
        end_of_file_bytes = seg.address + len(seg.data)
        view[seg.address : end_of_file_bytes] = seg.data
        view[end_of_file_bytes : seg.address + seg.size] = bytes(seg.size - len(seg.data))


def load_elf(mem: Memory, image: Image, name: str, ram_size: int) -> KernelImage:
    """Load an i386 ELF executable into guest memory; return where it went."""
    kernel = parse_elf(image, name, ram_size)
    write_kernel(mem, kernel)
    return kernel


# L:120 Loading a bzImage.
#
# A bzImage is what "make" leaves in arch/x86/boot: some 512-byte sectors of
# real-mode setup code (whose first page doubles as a boot_params template),
# followed by the protected-mode payload, a self-decompressor with the
# compressed kernel inside.  The guest never runs real-mode code, so we skip
# the setup sectors and put the payload at 1 MiB; it decompresses the real
# kernel using the boot_params we write.  None of the file's setup header is
# copied into our boot_params: the original Launcher didn't either.


def is_bzimage(image: Image) -> bool:
    """True if ``image`` carries the "HdrS" setup-header signature."""
    data = _byte_view(image)
    return bytes(data[BOOT_PARAMS_HEADER : BOOT_PARAMS_HEADER + 4]) == BZIMAGE_MAGIC


def _protected_mode_start(data: memoryview) -> tuple[int, int]:
    """The setup sectors of a bzImage and where its protected-mode code starts."""
    setup_sects = data[BOOT_PARAMS_SETUP_SECTS] or BZIMAGE_DEFAULT_SETUP_SECTS
    return setup_sects, (setup_sects + 1) * SECTOR_SIZE


def parse_bzimage(image: Image, name: str, ram_size: int) -> KernelImage:
    """Check a bzImage and find its protected-mode payload, which goes at 1 MiB."""
    data = _byte_view(image)
    if not is_bzimage(data):
        raise LaunchError(f"{name}: not a bzImage (no HdrS signature at {BOOT_PARAMS_HEADER:#x})")
    if len(data) < BOOT_PARAMS_CODE32_START + 4:
        raise LaunchError(f"{name}: truncated bzImage (the setup header is incomplete)")
    setup_sects, payload_offset = _protected_mode_start(data)
    if payload_offset >= len(data):
        raise LaunchError(
            f"{name}: truncated bzImage ({setup_sects} setup sectors but only {len(data)} bytes)"
        )
    payload_size = len(data) - payload_offset
    end = BZIMAGE_LOAD_ADDR + payload_size
    if end > ram_size:
        raise LaunchError(
            f"{name}: does not fit in {_mib(ram_size)} of RAM "
            f"(the payload needs {BZIMAGE_LOAD_ADDR:#x}-{end - 1:#x}); give the guest more memory"
        )
    (entry,) = struct.unpack_from("<I", data, BOOT_PARAMS_CODE32_START)
    payload = Segment(BZIMAGE_LOAD_ADDR, data[payload_offset:], payload_size)
    return KernelImage(
        kind="bzimage", entry=entry, start=BZIMAGE_LOAD_ADDR, end=end, segments=(payload,)
    )


# L:125 Unpacking a bzImage on the host.  The payload's self-decompressor
# does three things: it inflates the compressed vmlinux (gzip, bzip2 or
# lzma in 2.6.32), copies that ELF's segments to where they were linked, and
# jumps to its entry.  That is exactly what we do for a vmlinux (L:110),
# and the Launcher can inflate with zlib far faster than the guest can run
# the same loop through the interpreter: about 50 million guest instructions
# for a 2.6.32 kernel, a third of its boot.  Boot protocol 2.08 and later
# say where the compressed kernel is (payload_offset, payload_length), so
# by default we unpack it and load the ELF inside; the kernel proper starts
# in the same state either way.  Anything we cannot unpack (an older
# protocol, another compressor, something that is not an ELF inside) is
# simply left to the guest's own decompressor, as the original Launcher
# always did; ``unpack=False`` (``lguest run --guest-decompress``) asks for
# that path explicitly.


def _inflate(data: bytes, limit: int) -> bytes | None:
    """Decompress a 2.6.32 kernel payload (gzip, bzip2 or lzma), at most ``limit`` bytes."""
    try:
        if data[:2] == b"\x1f\x8b":
            out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, limit + 1)
        elif data[:3] == b"BZh":
            out = bz2.BZ2Decompressor().decompress(data, limit + 1)
        elif data[:1] == b"\x5d":
            out = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data, limit + 1)
        else:
            return None
    except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError):
        return None
    return out if len(out) <= limit else None


def unpack_bzimage(image: Image, name: str, ram_size: int) -> KernelImage | None:
    """The vmlinux inside a bzImage, checked and placed like an ELF, or None.

    None means "leave it to the guest's decompressor": the header is too old
    to say where the compressed kernel is, the compressor is not one we know,
    or what comes out is not a loadable ELF.
    """
    data = _byte_view(image)
    if len(data) < BOOT_PARAMS_PAYLOAD_LENGTH + 4:
        return None
    (version,) = struct.unpack_from("<H", data, BOOT_PARAMS_VERSION)
    if version < 0x0208:
        return None
    _, pm_start = _protected_mode_start(data)
    offset, length = struct.unpack_from("<II", data, BOOT_PARAMS_PAYLOAD_OFFSET)
    first, last = pm_start + offset, pm_start + offset + length
    if length == 0 or last > len(data):
        return None
    vmlinux = _inflate(bytes(data[first:last]), ram_size)
    if vmlinux is None or not is_elf(vmlinux):
        return None
    try:
        kernel = parse_elf(vmlinux, f"{name} (unpacked vmlinux)", ram_size)
    except LaunchError:
        return None
    return KernelImage(
        kind="bzimage-unpacked",
        entry=kernel.entry,
        start=kernel.start,
        end=kernel.end,
        segments=kernel.segments,
    )


def load_bzimage(mem: Memory, image: Image, name: str, ram_size: int) -> KernelImage:
    """Load a bzImage's protected-mode payload at 1 MiB; return where it went."""
    kernel = parse_bzimage(image, name, ram_size)
    write_kernel(mem, kernel)
    return kernel


def parse_kernel(image: Image, name: str, ram_size: int, *, unpack: bool = True) -> KernelImage:
    """Detect the kernel's format (ELF magic, else bzImage) and check it.

    A bzImage is unpacked on the host when ``unpack`` is true and it can be
    (L:125); otherwise its payload goes to 1 MiB to decompress itself.
    """
    data = _byte_view(image)
    if len(data) == 0:
        raise LaunchError(f"{name}: empty file, not a kernel image")
    if is_elf(data):
        return parse_elf(data, name, ram_size)
    if is_bzimage(data):
        packed = parse_bzimage(data, name, ram_size)
        if unpack:
            unpacked = unpack_bzimage(data, name, ram_size)
            if unpacked is not None:
                return unpacked
        return packed
    raise LaunchError(f"{name}: not a kernel image (no ELF magic and no bzImage header)")


def load_kernel(
    mem: Memory, image: Image, name: str, ram_size: int, *, unpack: bool = True
) -> KernelImage:
    """Detect the kernel's format and load it into guest memory."""
    kernel = parse_kernel(image, name, ram_size, unpack=unpack)
    write_kernel(mem, kernel)
    return kernel


# L:130 The initrd.
#
# The initial RAM disk goes at the very top of RAM, page-aligned, so that it
# ends exactly at MEM.  Its length is rounded up to whole pages and that rounded
# length is what we tell the guest: the host builds the guest's first page
# tables immediately below the initrd and needs it to end on a page boundary.
# The original Launcher never checked that the initrd fit; we refuse one that
# would overlap the kernel.


def place_initrd(length: int, name: str, ram_size: int, kernel: KernelImage) -> Initrd:
    """Work out where an initrd of ``length`` bytes goes, refusing one that does not fit."""
    if length == 0:
        raise LaunchError(f"{name}: empty initrd")
    size = page_round_up(length)
    if size > ram_size:
        raise LaunchError(
            f"{name}: initrd ({_mib(size)}) is larger than RAM ({_mib(ram_size)}); "
            "give the guest more memory"
        )
    address = ram_size - size
    if address < kernel.end:
        raise LaunchError(
            f"{name}: initrd at {address:#x}-{ram_size - 1:#x} would overlap the kernel "
            f"(which ends at {kernel.end - 1:#x}); give the guest more memory"
        )
    return Initrd(address=address, size=size)


def write_initrd(mem: Memory, data: Image, initrd: Initrd) -> None:
    """Copy the initrd's bytes to its place and zero the rest of its last page."""
    content = _byte_view(data)
    address, size = initrd.address, initrd.size
    view = _byte_view(mem)
    view[address : address + len(content)] = content
    view[address + len(content) : address + size] = bytes(size - len(content))


def load_initrd(mem: Memory, data: Image, name: str, ram_size: int, kernel: KernelImage) -> Initrd:
    """Copy an initrd to the top of RAM; return where it went."""
    initrd = place_initrd(len(_byte_view(data)), name, ram_size, kernel)
    write_initrd(mem, data, initrd)
    return initrd


def page_table_reserve(ram_size: int) -> int:
    """Bytes the core's initial page tables take just below the initrd (abi-core.md 5.4).

    At INITIALIZE the host maps all of RAM twice (at 0 and at 0xC0000000) with
    page tables it writes into guest memory right below the initrd (or the top
    of RAM).  We reserve the larger of the two formats: PAE needs one PTE page
    per 512 pages of RAM, one PMD page and the PDPT page; the 2-level format one
    PTE page per 1024 pages plus the directory.
    """
    pages = ram_size // PAGE_SIZE
    pae = -(-pages // 512) + 2
    two_level = -(-pages // 1024) + 1
    return max(pae, two_level) * PAGE_SIZE


def _check_page_table_room(kernel: KernelImage, initrd: Initrd | None, ram_size: int) -> None:
    top = initrd.address if initrd is not None else ram_size
    tables = top - page_table_reserve(ram_size)
    if kernel.end > tables:
        what = "kernel, initrd" if initrd is not None else "kernel"
        raise LaunchError(
            f"not enough memory: the {what} and the initial page tables "
            f"({page_table_reserve(ram_size) // 1024} KiB) do not fit in {_mib(ram_size)} of RAM; "
            "give the guest more memory"
        )


# L:140 boot_params.
#
# Linux on x86 learns everything about the machine from "the zero page",
# struct boot_params, whose address it finds in ESI (0 here).  Our page is all
# zero except for these fields (abi-devices.md 6.4):
#
# - one e820 entry saying [0, MEM) is RAM: the guest's page allocator uses it,
#   and max_pfn = MEM / 4096 is also how the guest finds the device page;
# - version 2.07 and hardware_subarch = lguest, so the kernel entry code takes
#   the lguest path instead of the native one;
# - loadflags KEEP_SEGMENTS, because the guest runs at privilege level 1 and
#   must not touch the segment set-up it was given;
# - kernel_alignment = 16 MiB, for relocatable bzImages (see KERNEL_ALIGNMENT);
# - cmd_line_ptr = 0x1000, where we put the command line;
# - with an initrd: its address and page-rounded size, and a non-zero
#   type_of_loader, without which the guest ignores the initrd.
#
# The core reads the e820 size and ramdisk_size at INITIALIZE to place the
# initial page tables, so boot_params must be complete before that.


def write_boot_params(mem: Memory, ram_size: int, initrd: Initrd | None = None) -> None:
    """Write the boot_params page at guest-physical address 0."""
    view = _byte_view(mem)
    view[BOOT_PARAMS_ADDR : BOOT_PARAMS_ADDR + BOOT_PARAMS_SIZE] = bytes(BOOT_PARAMS_SIZE)
    struct.pack_into("<B", view, BOOT_PARAMS_E820_ENTRIES, 1)
    struct.pack_into("<QQI", view, BOOT_PARAMS_E820_MAP, 0, ram_size, E820_RAM)
    struct.pack_into("<H", view, BOOT_PARAMS_VERSION, BOOT_PROTOCOL_VERSION)
    struct.pack_into("<B", view, BOOT_PARAMS_LOADFLAGS, LOADFLAGS_KEEP_SEGMENTS)
    struct.pack_into("<I", view, BOOT_PARAMS_CMD_LINE_PTR, CMDLINE_ADDR)
    struct.pack_into("<I", view, BOOT_PARAMS_KERNEL_ALIGNMENT, KERNEL_ALIGNMENT)
    struct.pack_into("<I", view, BOOT_PARAMS_HARDWARE_SUBARCH, X86_SUBARCH_LGUEST)
    if initrd is not None:
        struct.pack_into("<B", view, BOOT_PARAMS_TYPE_OF_LOADER, LOADER_TYPE_UNDEFINED)
        struct.pack_into("<I", view, BOOT_PARAMS_RAMDISK_IMAGE, initrd.address)
        struct.pack_into("<I", view, BOOT_PARAMS_RAMDISK_SIZE, initrd.size)


def encode_command_line(cmdline: str | bytes) -> bytes:
    """The command line as the bytes the guest will see, checked.

    A ``str`` is encoded as UTF-8 with ``surrogateescape``, so arguments that
    came from ``sys.argv`` reach the guest byte for byte.
    """
    raw = cmdline.encode("utf-8", "surrogateescape") if isinstance(cmdline, str) else bytes(cmdline)
    if b"\0" in raw:
        raise LaunchError("kernel command line contains a NUL byte")
    if len(raw) > CMDLINE_MAX:
        raise LaunchError(
            f"kernel command line too long ({len(raw)} bytes; the guest accepts at most "
            f"{CMDLINE_MAX})"
        )
    return raw


def write_command_line(mem: Memory, cmdline: str | bytes) -> bytes:
    """Write the command line, NUL-terminated, at 0x1000; return the bytes written (no NUL)."""
    raw = encode_command_line(cmdline)
    view = _byte_view(mem)
    view[CMDLINE_ADDR : CMDLINE_ADDR + len(raw) + 1] = raw + b"\0"
    return raw


@dataclass(frozen=True)
class BootPlan:
    """A checked plan of everything to write into a new guest's memory."""

    ram_size: int
    kernel: KernelImage
    initrd: Initrd | None
    initrd_data: memoryview | None = field(compare=False, repr=False)
    command_line: bytes

    def write(self, mem: Memory) -> BootInfo:
        """Write the kernel, initrd, boot_params and command line, in the original order.

        Kernel first, then the initrd at the top of RAM, then boot_params and
        the command line (abi-devices.md 5.2 steps 6-8).  ``mem`` must be at
        least ``ram_size`` bytes long.
        """
        view = _byte_view(mem)
        if len(view) < self.ram_size:
            raise ValueError(f"guest memory is {len(view)} bytes, less than RAM {self.ram_size}")
        write_kernel(view, self.kernel)
        if self.initrd is not None and self.initrd_data is not None:
            write_initrd(view, self.initrd_data, self.initrd)
        write_boot_params(view, self.ram_size, self.initrd)
        write_command_line(view, self.command_line)
        return BootInfo(kernel=self.kernel, initrd=self.initrd, command_line=self.command_line)


# L:105 Check everything, then write.  plan_guest() reads the kernel's
# headers (L:110, L:120), places the initrd (L:130), checks the command line
# and makes sure the Host's initial page tables will fit below it all, and
# it does so before any guest memory exists: a kernel that cannot boot is
# refused in a moment, with a message that says why.  The plan's write()
# then puts everything in place in the original Launcher's order: kernel,
# initrd, boot_params (L:140), command line.
def plan_guest(
    ram_size: int,
    kernel: Image,
    kernel_name: str,
    cmdline: str | bytes = "",
    initrd: Image | None = None,
    initrd_name: str = "initrd",
    *,
    unpack: bool = True,
) -> BootPlan:
    """Check the kernel, initrd and command line together, without touching memory."""
    raw_cmdline = encode_command_line(cmdline)
    image = parse_kernel(kernel, kernel_name, ram_size, unpack=unpack)
    rd_data = _byte_view(initrd) if initrd is not None else None
    rd = place_initrd(len(rd_data), initrd_name, ram_size, image) if rd_data is not None else None
    _check_page_table_room(image, rd, ram_size)
    return BootPlan(ram_size, image, rd, rd_data, raw_cmdline)


def load_guest(
    mem: Memory,
    ram_size: int,
    kernel: Image,
    kernel_name: str,
    cmdline: str | bytes = "",
    initrd: Image | None = None,
    initrd_name: str = "initrd",
    *,
    unpack: bool = True,
) -> BootInfo:
    """Check and load everything a guest needs to boot into ``mem``."""
    if len(_byte_view(mem)) < ram_size:
        raise ValueError(f"guest memory is {len(_byte_view(mem))} bytes, less than RAM {ram_size}")
    return plan_guest(
        ram_size, kernel, kernel_name, cmdline, initrd, initrd_name, unpack=unpack
    ).write(mem)

"""Kernel, initrd, command-line and boot_params loading (lguest.boot, lguest.layout).

None of this needs the Rust core: guest memory is a plain bytearray.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from lguest import boot
from lguest.boot import (
    BootInfo,
    Initrd,
    KernelImage,
    load_bzimage,
    load_elf,
    load_guest,
    load_initrd,
    load_kernel,
    page_table_reserve,
    parse_kernel,
    plan_guest,
    read_file,
    unpack_bzimage,
    write_boot_params,
    write_command_line,
)
from lguest.errors import LaunchError
from lguest.layout import DEVICE_PAGES, MAX_MEMORY_MIB, PAGE_SIZE, MemoryLayout, page_round_up

MiB = 1 << 20
RAM = 16 * MiB

PT_LOAD, PT_NOTE = 1, 4
ET_REL, ET_EXEC, ET_DYN = 1, 2, 3
EM_386, EM_X86_64, EM_ARM = 3, 62, 40


# --- image builders ---------------------------------------------------------


def make_elf(
    segments: list[tuple[int, bytes, int]] | None = None,
    *,
    entry: int = 0x100000,
    machine: int = EM_386,
    etype: int = ET_EXEC,
    data_encoding: int = 1,
    phentsize: int = 32,
    extra_phdrs: list[tuple[int, int, int, int, int]] | None = None,
) -> bytes:
    """An ELF32 executable: each segment is (paddr, file bytes, memsz), PT_LOAD.

    ``extra_phdrs`` adds raw (type, offset, paddr, filesz, memsz) headers.
    """
    if segments is None:
        segments = [(0x100000, b"\x90" * 64, 64)]
    phdrs: list[tuple[int, int, int, int, int]] = []
    offset = 52 + 32 * (len(segments) + len(extra_phdrs or []))
    blobs = b""
    for paddr, data, memsz in segments:
        phdrs.append((PT_LOAD, offset + len(blobs), paddr, len(data), memsz))
        blobs += data
    phdrs += extra_phdrs or []
    endian = "<" if data_encoding == 1 else ">"
    ident = b"\x7fELF" + bytes([1, data_encoding, 1]) + bytes(9)
    header = ident + struct.pack(
        endian + "HHIIIIIHHHHHH",
        etype,
        machine,
        1,
        entry,
        52,  # e_phoff
        0,  # e_shoff
        0,  # e_flags
        52,  # e_ehsize
        phentsize,
        len(phdrs),
        40,
        0,
        0,
    )
    table = b"".join(
        struct.pack(
            endian + "8I",
            p_type,
            off,
            (0xC0000000 + paddr) & 0xFFFFFFFF,
            paddr,
            filesz,
            memsz,
            7,
            4096,
        )
        for p_type, off, paddr, filesz, memsz in phdrs
    )
    return header + table + blobs


def make_elf64(machine: int = EM_X86_64) -> bytes:
    """A minimal ELF64 executable header with one PT_LOAD, as for x86-64."""
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", ET_EXEC, machine, 1, 0x401000, 64, 0, 0, 64, 56, 1, 64, 0, 0
    )
    phdr = struct.pack("<IIQQQQQQ", PT_LOAD, 5, 0, 0x400000, 0x400000, 120, 120, 4096)
    return header + phdr


def make_bzimage(
    payload: bytes = b"\xfc" * 1000,
    *,
    setup_sects: int = 2,
    code32_start: int = 0x100000,
    magic: bytes = b"HdrS",
) -> bytes:
    """A bzImage: real-mode setup sectors (a boot_params image) plus the payload."""
    setup = bytearray((max(setup_sects, 0) or 4) * 512 + 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = magic
    struct.pack_into("<I", setup, 0x214, code32_start)
    return bytes(setup) + payload


def fresh_memory(ram: int = RAM) -> bytearray:
    return bytearray(ram + DEVICE_PAGES * PAGE_SIZE)


# --- L:100 memory layout ----------------------------------------------------


def test_layout_places_descriptor_page_directly_above_ram() -> None:
    layout = MemoryLayout(64)
    assert layout.ram_size == 0x4000000
    assert layout.descriptor_page == 0x4000000
    assert layout.guest_limit == 0x4001000
    assert layout.pfn_limit == 0x4001
    assert layout.total_size == 0x4000000 + 256 * 4096


def test_layout_allocates_vrings_in_order_like_the_worked_example() -> None:
    # abi-devices.md 1.2: six 3-page vrings after the descriptor page.
    layout = MemoryLayout(64)
    rings = [layout.alloc_pages(3) for _ in range(6)]
    assert rings == [0x4001000, 0x4004000, 0x4007000, 0x400A000, 0x400D000, 0x4010000]
    assert layout.guest_limit == 0x4013000
    assert layout.pfn_limit == 0x4013


def test_layout_device_area_runs_out() -> None:
    layout = MemoryLayout(4)
    layout.alloc_pages(DEVICE_PAGES - 1)
    assert layout.guest_limit == layout.device_area_end
    with pytest.raises(LaunchError, match="not enough memory for devices"):
        layout.alloc_pages(1)


@pytest.mark.parametrize("bad", [0, -1, MAX_MEMORY_MIB + 1, True, 1.5, "64"])
def test_layout_rejects_bad_sizes(bad: object) -> None:
    with pytest.raises(LaunchError, match="memory size"):
        MemoryLayout(bad)  # type: ignore[arg-type]


def test_layout_largest_memory_still_fits_in_32_bits() -> None:
    # RAM plus the device area must end below 4 GiB: the core keeps the
    # guest's memory limit in 32 bits.  One more MiB would not fit.
    assert MemoryLayout(MAX_MEMORY_MIB).total_size <= (1 << 32) - 4096
    with pytest.raises(LaunchError, match="between 1 and"):
        MemoryLayout(MAX_MEMORY_MIB + 1)


def test_page_round_up() -> None:
    assert [page_round_up(n) for n in (0, 1, 4096, 4097)] == [0, 4096, 4096, 8192]


# --- reading files ----------------------------------------------------------


def test_read_file_missing_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.elf"
    with pytest.raises(LaunchError) as info:
        read_file(missing, "kernel")
    assert str(info.value) == f"{missing}: cannot read kernel: No such file or directory"


def test_read_file_directory(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="cannot read initrd: Is a directory"):
        read_file(tmp_path, "initrd")


def test_read_file_reads_bytes(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"abc")
    assert read_file(str(path), "kernel") == b"abc"


# --- L:110 ELF --------------------------------------------------------------


def test_elf_segments_go_to_their_physical_addresses() -> None:
    mem = fresh_memory()
    mem[0x200000:0x200100] = b"\xee" * 0x100  # stale bytes where the bss goes
    image = make_elf([(0x100000, b"text" * 16, 64), (0x1FFF00, b"data", 0x200)], entry=0x100010)
    kernel = load_elf(mem, image, "vmlinux", RAM)
    assert kernel == KernelImage(kind="elf", entry=0x100010, start=0x100000, end=0x200100)
    assert mem[0x100000:0x100040] == b"text" * 16
    assert mem[0x1FFF00:0x1FFF04] == b"data"
    # The bss is zero, even over stale bytes.
    assert mem[0x1FFF04:0x200100] == bytes(0x1FC)
    # Nothing at the virtual addresses' low bits or elsewhere.
    assert mem[:0x100000].count(0) == 0x100000


def test_elf_ignores_segments_that_are_not_pt_load() -> None:
    mem = fresh_memory()
    # A PT_NOTE pointing at bogus places must neither be loaded nor checked.
    image = make_elf(extra_phdrs=[(PT_NOTE, 0, 0xFFFFFF00, 0x1000, 0x1000)])
    kernel = load_elf(mem, image, "vmlinux", RAM)
    assert kernel.end == 0x100040


def test_load_kernel_detects_elf() -> None:
    kernel = load_kernel(fresh_memory(), make_elf(), "vmlinux", RAM)
    assert kernel.kind == "elf"


def test_x86_64_elf_is_rejected_by_machine() -> None:
    with pytest.raises(LaunchError) as info:
        load_kernel(fresh_memory(), make_elf64(), "demo.elf", RAM)
    assert str(info.value) == "demo.elf: not an i386 ELF (machine EM_X86_64)"


def test_elf64_for_i386_is_rejected_by_class() -> None:
    with pytest.raises(LaunchError, match=r"^k: not an i386 ELF \(class ELFCLASS64\)$"):
        load_elf(fresh_memory(), make_elf64(machine=EM_386), "k", RAM)


def test_arm_elf_is_rejected() -> None:
    with pytest.raises(LaunchError, match=r"not an i386 ELF \(machine EM_ARM\)"):
        load_elf(fresh_memory(), make_elf(machine=EM_ARM), "k", RAM)


def test_big_endian_elf_is_rejected() -> None:
    with pytest.raises(LaunchError, match=r"not an i386 ELF \(data ELFDATA2MSB\)"):
        load_elf(fresh_memory(), make_elf(data_encoding=2), "k", RAM)


@pytest.mark.parametrize(("etype", "name"), [(ET_REL, "ET_REL"), (ET_DYN, "ET_DYN")])
def test_non_executable_elf_is_rejected(etype: int, name: str) -> None:
    with pytest.raises(LaunchError, match=rf"k: not an executable ELF \(type {name}\)"):
        load_elf(fresh_memory(), make_elf(etype=etype), "k", RAM)


def test_wrong_program_header_size_is_rejected() -> None:
    with pytest.raises(LaunchError, match="program header size 40, expected 32"):
        load_elf(fresh_memory(), make_elf(phentsize=40), "k", RAM)


def test_elf_without_program_headers_is_rejected() -> None:
    image = bytearray(make_elf())
    struct.pack_into("<H", image, 44, 0)  # e_phnum
    with pytest.raises(LaunchError, match="0 program headers; expected 1 to 2048"):
        load_elf(fresh_memory(), image, "k", RAM)


def test_elf_with_too_many_program_headers_is_rejected() -> None:
    image = bytearray(make_elf())
    struct.pack_into("<H", image, 44, 2049)
    with pytest.raises(LaunchError, match="2049 program headers"):
        load_elf(fresh_memory(), image, "k", RAM)


@pytest.mark.parametrize("size", [4, 20, 51])
def test_truncated_elf_header(size: int) -> None:
    with pytest.raises(LaunchError, match=rf"^k: truncated ELF \({size} bytes"):
        load_kernel(fresh_memory(), make_elf()[:size], "k", RAM)


def test_truncated_program_headers() -> None:
    with pytest.raises(LaunchError, match="truncated ELF .program headers run past"):
        load_kernel(fresh_memory(), make_elf()[:60], "k", RAM)


def test_truncated_segment_data() -> None:
    image = make_elf([(0x100000, b"x" * 100, 100)])
    with pytest.raises(LaunchError, match=r"truncated ELF \(segment 0 runs past the end"):
        load_kernel(fresh_memory(), image[:-1], "k", RAM)


def test_elf_that_does_not_fit_in_ram() -> None:
    image = make_elf([(0x1000000, b"x" * 16, 0x400000)])
    with pytest.raises(LaunchError) as info:
        load_elf(fresh_memory(), image, "big.elf", RAM)
    message = str(info.value)
    assert message.startswith("big.elf: does not fit in 16 MiB of RAM")
    assert "0x1000000-0x13fffff" in message
    assert "\n" not in message


def test_elf_ending_exactly_at_the_top_of_ram_fits() -> None:
    mem = fresh_memory()
    kernel = load_elf(mem, make_elf([(RAM - 16, b"y" * 16, 16)]), "k", RAM)
    assert kernel.end == RAM


def test_elf_over_boot_params_is_rejected() -> None:
    with pytest.raises(LaunchError, match="overlaps boot_params and the command line"):
        load_elf(fresh_memory(), make_elf([(0x1800, b"z", 1)]), "k", RAM)


def test_elf_with_only_empty_segments_is_rejected() -> None:
    with pytest.raises(LaunchError, match="k: ELF has no loadable segments"):
        load_elf(fresh_memory(), make_elf([(0x100000, b"", 0)]), "k", RAM)


def test_elf_with_more_file_than_memory_bytes_is_rejected() -> None:
    with pytest.raises(LaunchError, match="more file bytes than memory bytes"):
        load_elf(fresh_memory(), make_elf([(0x100000, b"x" * 32, 16)]), "k", RAM)


def test_rejected_elf_leaves_memory_untouched() -> None:
    mem = fresh_memory()
    image = make_elf([(0x100000, b"a" * 16, 16), (RAM, b"b", 1)])
    with pytest.raises(LaunchError):
        load_elf(mem, image, "k", RAM)
    assert mem.count(0) == len(mem)


def test_elf_loads_into_a_memoryview() -> None:
    backing = fresh_memory()
    load_elf(memoryview(backing), make_elf(), "k", RAM)
    assert backing[0x100000] == 0x90


@pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("ld") is None, reason="needs gcc and ld"
)
def test_real_toolchain_elfs(tmp_path: Path) -> None:
    """An i386 and an x86-64 executable built by the real toolchain."""
    source = tmp_path / "k.c"
    source.write_text("int counter = 5;\nvoid start(void) { for (;;) counter++; }\n")

    def build(flags: list[str], ld_flags: list[str], name: str) -> bytes | None:
        obj, out = tmp_path / f"{name}.o", tmp_path / name
        steps = [
            ["gcc", *flags, "-ffreestanding", "-fno-pic", "-O1", "-c", str(source), "-o", str(obj)],
            ["ld", *ld_flags, "-e", "start", "-Ttext=0x100000", "-o", str(out), str(obj)],
        ]
        for cmd in steps:
            if subprocess.run(cmd, capture_output=True).returncode != 0:
                return None
        return out.read_bytes()

    x86_64 = build(["-m64"], ["-m", "elf_x86_64"], "k64")
    if x86_64 is None:
        pytest.skip("cannot build an x86-64 executable here")
    with pytest.raises(LaunchError, match=r"^k64: not an i386 ELF \(machine EM_X86_64\)$"):
        load_kernel(fresh_memory(), x86_64, "k64", RAM)

    i386 = build(["-m32"], ["-m", "elf_i386"], "k32")
    if i386 is None:
        pytest.skip("cannot build an i386 executable here (no -m32 support)")
    kernel = load_kernel(fresh_memory(), i386, "k32", RAM)
    assert kernel.kind == "elf"
    assert kernel.entry == 0x100000
    assert kernel.start <= 0x100000 < kernel.end


# --- L:120 bzImage ----------------------------------------------------------


def test_bzimage_payload_goes_to_one_mebibyte() -> None:
    mem = fresh_memory()
    payload = bytes(range(256)) * 8
    kernel = load_kernel(mem, make_bzimage(payload, code32_start=0x100200), "bzImage", RAM)
    assert kernel == KernelImage(kind="bzimage", entry=0x100200, start=0x100000, end=0x100800)
    assert mem[0x100000:0x100800] == payload
    # The setup sectors are not loaded anywhere.
    assert mem[:0x100000].count(0) == 0x100000


def make_packed_bzimage(vmlinux: bytes, compress: str = "gzip", version: int = 0x020A) -> bytes:
    """A bzImage whose header (protocol 2.08+) says where its compressed kernel is."""
    packed = {
        "gzip": lambda b: gzip.compress(b),
        "bzip2": lambda b: bz2.compress(b),
        "lzma": lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE),
    }[compress](vmlinux)
    stub = b"\xfc" * 300  # stands in for the decompressor's code
    image = bytearray(make_bzimage(stub + packed))
    struct.pack_into("<H", image, 0x206, version)
    struct.pack_into("<II", image, 0x248, len(stub), len(packed))
    return bytes(image)


@pytest.mark.parametrize("compress", ["gzip", "bzip2", "lzma"])
def test_bzimage_payload_is_unpacked_on_the_host(compress: str) -> None:
    vmlinux = make_elf([(0x100000, b"KERNEL" * 100, 0x2000)], entry=0x100010)
    mem = fresh_memory()
    kernel = load_kernel(mem, make_packed_bzimage(vmlinux, compress), "bzImage", RAM)
    assert kernel == KernelImage(kind="bzimage-unpacked", entry=0x100010, start=0x100000, end=0x102000)
    assert bytes(mem[0x100000 : 0x100000 + 600]) == b"KERNEL" * 100


def test_bzimage_unpacking_can_be_turned_off() -> None:
    vmlinux = make_elf([(0x100000, b"KERNEL", 0x1000)])
    image = make_packed_bzimage(vmlinux)
    kernel = parse_kernel(image, "bzImage", RAM, unpack=False)
    assert kernel.kind == "bzimage" and kernel.entry == 0x100000


@pytest.mark.parametrize(
    "why",
    ["old protocol", "bad data", "not an ELF", "too big", "offset past the end"],
)
def test_bzimage_that_cannot_be_unpacked_decompresses_itself(why: str) -> None:
    vmlinux = make_elf([(0x100000, b"KERNEL", 0x1000)])
    image = bytearray(make_packed_bzimage(vmlinux, version=0x0207 if why == "old protocol" else 0x020A))
    stub_end = 1536 + 300  # setup sectors (2 + 1) * 512, then the stub
    if why == "bad data":
        image[stub_end + 20 : stub_end + 40] = b"\xff" * 20
    elif why == "not an ELF":
        packed = gzip.compress(b"not an ELF at all" * 10)
        image = bytearray(make_bzimage(b"\xfc" * 300 + packed))
        struct.pack_into("<H", image, 0x206, 0x020A)
        struct.pack_into("<II", image, 0x248, 300, len(packed))
    elif why == "too big":
        packed = gzip.compress(b"\x7fELF" + bytes(RAM))
        image = bytearray(make_bzimage(b"\xfc" * 300 + packed))
        struct.pack_into("<H", image, 0x206, 0x020A)
        struct.pack_into("<II", image, 0x248, 300, len(packed))
    elif why == "offset past the end":
        struct.pack_into("<II", image, 0x248, 1 << 30, 100)
    kernel = parse_kernel(bytes(image), "bzImage", RAM)
    assert kernel.kind == "bzimage"
    assert unpack_bzimage(bytes(image), "bzImage", RAM) is None


def test_bzimage_setup_sects_zero_means_four() -> None:
    mem = fresh_memory()
    image = make_bzimage(b"PAYLOAD", setup_sects=0)
    assert len(image) == 5 * 512 + 7
    load_bzimage(mem, image, "bzImage", RAM)
    assert mem[0x100000:0x100007] == b"PAYLOAD"


def test_bzimage_without_hdrs_is_not_a_kernel() -> None:
    with pytest.raises(LaunchError) as info:
        load_kernel(fresh_memory(), make_bzimage(magic=b"HdrX"), "foo", RAM)
    assert str(info.value) == "foo: not a kernel image (no ELF magic and no bzImage header)"


def test_load_bzimage_directly_without_hdrs() -> None:
    with pytest.raises(LaunchError, match="foo: not a bzImage"):
        load_bzimage(fresh_memory(), b"x" * 4096, "foo", RAM)


def test_bzimage_with_incomplete_setup_header() -> None:
    image = make_bzimage()[:0x210]
    with pytest.raises(LaunchError, match="truncated bzImage .the setup header"):
        load_kernel(fresh_memory(), image, "bz", RAM)


def test_bzimage_truncated_in_setup_sectors() -> None:
    image = make_bzimage(b"", setup_sects=8)[:2048]
    with pytest.raises(LaunchError, match=r"bz: truncated bzImage \(8 setup sectors but only 2048"):
        load_kernel(fresh_memory(), image, "bz", RAM)


def test_bzimage_that_does_not_fit() -> None:
    with pytest.raises(LaunchError, match="bz: does not fit in 1 MiB of RAM"):
        load_kernel(fresh_memory(MiB), make_bzimage(), "bz", MiB)


# --- format detection -------------------------------------------------------


def test_empty_file_is_not_a_kernel() -> None:
    with pytest.raises(LaunchError, match="^empty: empty file, not a kernel image$"):
        load_kernel(fresh_memory(), b"", "empty", RAM)


@pytest.mark.parametrize("image", [b"#!/bin/sh\necho hi\n", bytes(8192), b"MZ" + bytes(600)])
def test_garbage_is_not_a_kernel(image: bytes) -> None:
    with pytest.raises(LaunchError, match=r"^junk: not a kernel image \(no ELF magic"):
        load_kernel(fresh_memory(), image, "junk", RAM)


def test_elf_magic_alone_is_a_truncated_elf() -> None:
    with pytest.raises(LaunchError, match="truncated ELF"):
        load_kernel(fresh_memory(), b"\x7fELF", "k", RAM)


# --- L:130 initrd -----------------------------------------------------------

KERNEL_AT_1M = KernelImage(kind="elf", entry=0x100000, start=0x100000, end=0x200000)


def test_initrd_ends_at_the_top_of_ram_page_rounded() -> None:
    mem = fresh_memory()
    mem[RAM - 4096 : RAM] = b"\xaa" * 4096  # stale bytes in the padding
    data = b"R" * 5000
    rd = load_initrd(mem, data, "initrd.img", RAM, KERNEL_AT_1M)
    assert rd == Initrd(address=RAM - 8192, size=8192)
    assert mem[RAM - 8192 : RAM - 8192 + 5000] == data
    assert mem[RAM - 8192 + 5000 : RAM] == bytes(8192 - 5000)
    # Nothing spills into the device area.
    assert mem[RAM:].count(0) == DEVICE_PAGES * PAGE_SIZE


def test_initrd_of_exact_pages_is_not_padded() -> None:
    rd = load_initrd(fresh_memory(), b"x" * 8192, "rd", RAM, KERNEL_AT_1M)
    assert rd == Initrd(address=RAM - 8192, size=8192)


def test_initrd_overlapping_the_kernel_is_refused() -> None:
    data = bytes(RAM - 0x200000 + 1)
    with pytest.raises(
        LaunchError, match="^rd: initrd at 0x1ff000-0xffffff would overlap the kernel"
    ):
        load_initrd(fresh_memory(), data, "rd", RAM, KERNEL_AT_1M)


def test_initrd_touching_the_kernel_fits() -> None:
    rd = load_initrd(fresh_memory(), bytes(RAM - 0x200000), "rd", RAM, KERNEL_AT_1M)
    assert rd.address == KERNEL_AT_1M.end


def test_initrd_larger_than_ram_is_refused() -> None:
    with pytest.raises(LaunchError, match=r"rd: initrd \(17 MiB\) is larger than RAM \(16 MiB\)"):
        load_initrd(fresh_memory(), bytes(17 * MiB), "rd", RAM, KERNEL_AT_1M)


def test_empty_initrd_is_refused() -> None:
    with pytest.raises(LaunchError, match="^rd: empty initrd$"):
        load_initrd(fresh_memory(), b"", "rd", RAM, KERNEL_AT_1M)


# --- L:140 boot_params ------------------------------------------------------


def expected_boot_params(ram: int, initrd: Initrd | None) -> bytes:
    """The boot_params page of abi-devices.md 6.4, built independently byte by byte."""
    page = bytearray(4096)
    page[0x1E8] = 1  # e820_entries
    page[0x206:0x208] = b"\x07\x02"  # version 0x0207
    page[0x211] = 0x40  # loadflags: KEEP_SEGMENTS
    page[0x228:0x22C] = b"\x00\x10\x00\x00"  # cmd_line_ptr 0x1000
    page[0x230:0x234] = b"\x00\x00\x00\x01"  # kernel_alignment 16 MiB
    page[0x23C:0x240] = b"\x01\x00\x00\x00"  # hardware_subarch: lguest
    page[0x2D0:0x2D8] = bytes(8)  # e820_map[0].addr
    page[0x2D8:0x2E0] = ram.to_bytes(8, "little")  # .size
    page[0x2E0:0x2E4] = b"\x01\x00\x00\x00"  # .type RAM
    if initrd is not None:
        page[0x210] = 0xFF  # type_of_loader
        page[0x218:0x21C] = initrd.address.to_bytes(4, "little")
        page[0x21C:0x220] = initrd.size.to_bytes(4, "little")
    return bytes(page)


def test_boot_params_without_initrd() -> None:
    mem = fresh_memory()
    mem[:4096] = b"\xcc" * 4096  # the page is rewritten whole, not just patched
    write_boot_params(mem, RAM)
    assert mem[:4096] == expected_boot_params(RAM, None)
    assert mem[4096] == 0


def test_boot_params_with_initrd() -> None:
    mem = fresh_memory()
    rd = Initrd(address=RAM - 3 * 4096, size=3 * 4096)
    write_boot_params(mem, RAM, rd)
    assert mem[:4096] == expected_boot_params(RAM, rd)


def test_boot_params_large_memory_e820() -> None:
    mem = bytearray(4096)
    write_boot_params(mem, 3 << 30)
    assert struct.unpack_from("<QQI", mem, 0x2D0) == (0, 3 << 30, 1)


def test_boot_params_constants_match_the_abi() -> None:
    assert boot.BOOT_PARAMS_E820_ENTRIES == 0x1E8
    assert boot.BOOT_PARAMS_VERSION == 0x206
    assert boot.BOOT_PARAMS_TYPE_OF_LOADER == 0x210
    assert boot.BOOT_PARAMS_LOADFLAGS == 0x211
    assert boot.BOOT_PARAMS_CODE32_START == 0x214
    assert boot.BOOT_PARAMS_RAMDISK_IMAGE == 0x218
    assert boot.BOOT_PARAMS_RAMDISK_SIZE == 0x21C
    assert boot.BOOT_PARAMS_CMD_LINE_PTR == 0x228
    assert boot.BOOT_PARAMS_KERNEL_ALIGNMENT == 0x230
    assert boot.BOOT_PARAMS_HARDWARE_SUBARCH == 0x23C
    assert boot.BOOT_PARAMS_E820_MAP == 0x2D0


# --- command line -----------------------------------------------------------


def test_command_line_is_nul_terminated_at_0x1000() -> None:
    mem = fresh_memory()
    mem[0x1000:0x1100] = b"\xff" * 0x100
    assert write_command_line(mem, "root=/dev/vda console=hvc0") == b"root=/dev/vda console=hvc0"
    assert mem[0x1000:0x101B] == b"root=/dev/vda console=hvc0\0"


def test_empty_command_line_is_a_lone_nul() -> None:
    mem = fresh_memory()
    mem[0x1000] = 0x41
    write_command_line(mem, "")
    assert mem[0x1000] == 0


def test_command_line_keeps_bytes_from_argv() -> None:
    mem = fresh_memory()
    arg = os.fsdecode(b"x=\xe9t\xc3\xa9")  # one invalid UTF-8 byte, one valid character
    assert write_command_line(mem, arg) == b"x=\xe9t\xc3\xa9"


def test_command_line_of_2047_bytes_fits() -> None:
    mem = fresh_memory()
    write_command_line(mem, "a" * 2047)
    assert mem[0x1000 + 2047] == 0
    assert mem[0x1000 + 2046] == ord("a")


def test_command_line_of_2048_bytes_is_refused() -> None:
    with pytest.raises(LaunchError, match=r"command line too long \(2048 bytes; .* at most 2047\)"):
        write_command_line(fresh_memory(), "a" * 2048)


def test_command_line_with_nul_is_refused() -> None:
    with pytest.raises(LaunchError, match="NUL"):
        write_command_line(fresh_memory(), b"a\0b")


# --- everything together ----------------------------------------------------


def test_load_guest_with_elf_and_initrd() -> None:
    mem = fresh_memory()
    info = load_guest(mem, RAM, make_elf(), "vmlinux", "quiet", b"I" * 100, "rd")
    assert info == BootInfo(
        kernel=KernelImage(kind="elf", entry=0x100000, start=0x100000, end=0x100040),
        initrd=Initrd(address=RAM - 4096, size=4096),
        command_line=b"quiet",
    )
    assert mem[:4096] == expected_boot_params(RAM, info.initrd)
    assert mem[0x1000:0x1006] == b"quiet\0"
    assert mem[0x100000] == 0x90
    assert mem[RAM - 4096 : RAM - 4096 + 100] == b"I" * 100


def test_load_guest_with_bzimage() -> None:
    mem = fresh_memory()
    info = load_guest(mem, RAM, make_bzimage(b"Z" * 10), "bzImage")
    assert info.kernel.kind == "bzimage"
    assert info.initrd is None
    assert mem[:4096] == expected_boot_params(RAM, None)
    assert mem[0x1000] == 0


def test_load_guest_checks_the_command_line_before_loading() -> None:
    mem = fresh_memory()
    with pytest.raises(LaunchError, match="too long"):
        load_guest(mem, RAM, make_elf(), "vmlinux", "x" * 3000)
    assert mem.count(0) == len(mem)


def test_load_guest_leaves_room_for_the_initial_page_tables() -> None:
    # A kernel that ends right at the top of RAM leaves the host nowhere to
    # build the guest's first page tables (abi-core.md 5.4).
    image = make_elf([(RAM - 4096, b"k", 4096)])
    with pytest.raises(
        LaunchError, match="^not enough memory: the kernel and the initial page tables"
    ):
        load_guest(fresh_memory(), RAM, image, "k")
    room = RAM - page_table_reserve(RAM)
    info = load_guest(fresh_memory(), RAM, make_elf([(room - 4096, b"k", 4096)]), "k")
    assert info.kernel.end == room


def test_load_guest_page_tables_go_below_the_initrd() -> None:
    rd_size = 4 * MiB
    room = RAM - rd_size - page_table_reserve(RAM)
    image = make_elf([(room - 4096, b"k", 4096 + 1)])
    with pytest.raises(LaunchError, match="the kernel, initrd and the initial page tables"):
        load_guest(fresh_memory(), RAM, image, "k", "", bytes(rd_size), "rd")


def test_page_table_reserve_covers_pae_and_two_level() -> None:
    # 64 MiB = 16384 pages: PAE needs 32 PTE pages + PMD + PDPT; 2-level 16 + 1.
    assert page_table_reserve(64 * MiB) == 34 * 4096
    assert page_table_reserve(4 * MiB) == 4 * 4096


def test_plan_guest_checks_everything_without_memory() -> None:
    plan = plan_guest(RAM, make_elf(), "vmlinux", "console=hvc0", b"rd", "rd")
    assert plan.kernel.entry == 0x100000
    assert plan.initrd == Initrd(address=RAM - 4096, size=4096)
    assert plan.command_line == b"console=hvc0"
    mem = fresh_memory()
    assert plan.write(mem) == BootInfo(plan.kernel, plan.initrd, b"console=hvc0")
    assert mem[RAM - 4096 : RAM - 4094] == b"rd"
    with pytest.raises(LaunchError, match="not a kernel image"):
        plan_guest(RAM, b"nope", "k")
    with pytest.raises(LaunchError, match="rd: empty initrd"):
        plan_guest(RAM, make_elf(), "k", "", b"", "rd")


def test_parse_kernel_describes_segments() -> None:
    kernel = parse_kernel(make_elf([(0x100000, b"ab", 16), (0x200000, b"cd", 2)]), "k", RAM)
    assert [(s.address, bytes(s.data), s.size) for s in kernel.segments] == [
        (0x100000, b"ab", 16),
        (0x200000, b"cd", 2),
    ]
    bz = parse_kernel(make_bzimage(b"PAY"), "bz", RAM)
    assert [(s.address, bytes(s.data), s.size) for s in bz.segments] == [(0x100000, b"PAY", 3)]


def test_load_guest_refuses_memory_smaller_than_ram() -> None:
    with pytest.raises(ValueError):
        load_guest(bytearray(100), RAM, make_elf(), "k")

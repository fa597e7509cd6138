"""The demo guest image is committed; check it is what guest/ builds, and sane.

The rebuild test needs a 32-bit capable gcc and make.  Byte-identical output
is only promised for the toolchain the image was made with (Debian gcc 12,
binutils 2.40), so the comparison is skipped with other gcc major versions.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUEST_SRC = ROOT / "guest"
IMAGE = ROOT / "python" / "lguest" / "guests" / "demo.elf"
PAGE_OFFSET = 0xC0000000
VMCALL = b"\x0f\x01\xc1"
GCC_MAJOR = "12"


def _need_toolchain(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    src = tmp_path / "probe.c"
    src.write_text("int probe;\n")
    probe = subprocess.run(
        ["gcc", "-m32", "-c", str(src), "-o", str(tmp_path / "probe.o")],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip("gcc -m32 cannot compile (no 32-bit multilib support)")
    version = subprocess.run(["gcc", "-dumpversion"], capture_output=True, text=True).stdout.strip()
    if version.split(".")[0] != GCC_MAJOR:
        pytest.skip(f"image was built with gcc {GCC_MAJOR}, found gcc {version}")


def test_rebuilt_image_matches_committed(tmp_path: Path) -> None:
    _need_toolchain(tmp_path)
    build = tmp_path / "build"
    subprocess.run(
        ["make", "-C", str(GUEST_SRC), f"BUILD={build}", "image"],
        check=True,
        capture_output=True,
    )
    rebuilt = (build / "demo.elf").read_bytes()
    assert rebuilt == IMAGE.read_bytes(), (
        "guest/ no longer builds the committed image: run `make -C guest`"
    )


def test_image_is_a_vmlinux_like_elf() -> None:
    elffile = pytest.importorskip("elftools.elf.elffile")
    with IMAGE.open("rb") as f:
        elf = elffile.ELFFile(f)
        assert elf.elfclass == 32
        assert elf.little_endian
        assert elf["e_machine"] == "EM_386"
        assert elf["e_type"] == "ET_EXEC"

        entry = elf["e_entry"]
        assert 0x100000 <= entry < 0x200000, "entry must be a physical address"

        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        assert loads
        for seg in loads:
            assert seg["p_paddr"] == seg["p_vaddr"] - PAGE_OFFSET
        assert any(s["p_paddr"] <= entry < s["p_paddr"] + s["p_filesz"] for s in loads), (
            "entry point is not inside a loaded segment"
        )

    assert VMCALL in IMAGE.read_bytes()


def test_user_programs_are_embedded_page_aligned() -> None:
    """mm.c maps the user blob's own pages into user space: it must start on a
    page boundary and begin with the program header ("USER", count, entries)."""
    elffile = pytest.importorskip("elftools.elf.elffile")
    with IMAGE.open("rb") as f:
        elf = elffile.ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        (blob,) = symtab.get_symbol_by_name("user_blob")
        (blob_end,) = symtab.get_symbol_by_name("user_blob_end")
        rodata = elf.get_section_by_name(".rodata")
        header = rodata.data()[blob["st_value"] - rodata["sh_addr"] :][:8]
    assert blob["st_value"] % 4096 == 0 and blob_end["st_value"] % 4096 == 0
    magic, count = struct.unpack("<II", header)
    assert magic == 0x52455355 and count >= 2


def test_lguest_data_initial_values() -> None:
    """The Host reads these at LGUEST_INIT, so they must be right in the file."""
    elffile = pytest.importorskip("elftools.elf.elffile")
    with IMAGE.open("rb") as f:
        elf = elffile.ELFFile(f)
        (sym,) = elf.get_section_by_name(".symtab").get_symbol_by_name("lguest_data")
        assert sym["st_size"] == 0x574
        vaddr = sym["st_value"]
        (seg,) = [
            s
            for s in elf.iter_segments()
            if s["p_type"] == "PT_LOAD" and s["p_vaddr"] <= vaddr < s["p_vaddr"] + s["p_filesz"]
        ]
        data = seg.data()[vaddr - seg["p_vaddr"] :][:0x574]

    # irq_enabled 0; every line masked (the timer too) until a driver asks.
    assert struct.unpack_from("<II", data, 0x000) == (0, 0xFFFFFFFF)
    assert data[0x018:0x058] == b"\xff" * 64  # async ring empty
    noirq_start, noirq_end, kernel_address, syscall_vec = struct.unpack_from("<IIII", data, 0x564)
    assert kernel_address == PAGE_OFFSET
    assert syscall_vec == 0x80
    # The no-interrupt window brackets lguest_iret's store, pop and iret.
    with IMAGE.open("rb") as f:
        elf = elffile.ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        (start,) = symtab.get_symbol_by_name("lguest_noirq_start")
        (end,) = symtab.get_symbol_by_name("lguest_noirq_end")
        text = elf.get_section_by_name(".text")
        window = text.data()[start["st_value"] - text["sh_addr"] : end["st_value"] - text["sh_addr"]]
    assert (noirq_start, noirq_end) == (start["st_value"], end["st_value"])
    assert window.endswith(b"\x58\xcf")  # popl %eax; iret

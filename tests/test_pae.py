"""PAE paging, chosen with ``initialize(..., pae=True)`` (``Guest(pae=True)``,
``lguest run --pae``).

The guests are tiny kernels written in assembler (tests/guestasm.py).  One
builds its own PAE tables, switches to them and touches a page through them;
the others only look at what the host told them: ``reserve_mem`` in
lguest_data (2 MiB with PAE, 4 MiB without) and CPUID's PAE bit.  The Rust
tests (rust/mmu/pae.rs, rust/host_tests.rs) cover the shadow algorithm in
detail; these check the way in from Python.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import guestasm
import pytest

_core = pytest.importorskip("lguest._core")

# What the host told the guest: reserve_mem at scratch, CPUID.1:EDX at
# scratch + 4.
LOOK = r"""
    mov lguest_data + 0x558, %eax
    mov %eax, scratch
    mov $1, %eax
    cpuid
    mov %edx, scratch + 4
    NOTIFY $1
    SHUTDOWN
"""

# Identity-map 0-4 MiB with the guest's own PAE tables (PDPT at 0x300000,
# page directory at 0x301000, page tables at 0x302000 and 0x303000), map
# 1 GiB onto scratch + 0x1000 through a second directory and table, switch
# with NEW_PGTABLE, write and read through 1 GiB.  Every entry is 64 bits
# with a zero high word (the memory is zero to start with).
OWN_TABLES = r"""
    mov $0x302000, %edi
    mov $7, %eax
    mov $1024, %ecx
1:  mov %eax, (%edi)
    movl $0, 4(%edi)
    add $0x1000, %eax
    add $8, %edi
    loop 1b
    movl $0x302067, 0x301000
    movl $0x303067, 0x301008
    movl $0x301001, 0x300000
    movl $0x301001, 0x300018
    movl $0x304001, 0x300008
    movl $0x305067, 0x304000
    movl $scratch + 0x1007, 0x305000
    mov $0x300000, %ebx
    HCALL 4
    movl $0x5a5a, 0x40000000
    mov 0x40000000, %ebx
    NOTIFY %ebx
    SHUTDOWN
"""

# Powers off if it was started in PAE mode, dies otherwise.
CHECK_PAE = r"""
    cmpl $0x200000, lguest_data + 0x558
    jne 1f
    mov $1, %eax
    cpuid
    test $0x40, %edx
    jz 1f
    mov $power_down, %ebx
    mov $1, %ecx
    HCALL 2
1:  HCALL 99
    .data
power_down:
    .asciz "Power down"
"""


def word(lg: _core.Lguest, addr: int) -> int:
    value: int = struct.unpack_from("<I", lg.mem, addr)[0]
    return value


@pytest.mark.parametrize(("pae", "reserve", "cpuid_pae"), [(False, 0x400000, 0), (True, 0x200000, 0x40)])
def test_the_host_tells_the_guest_its_paging_mode(pae: bool, reserve: int, cpuid_pae: int) -> None:
    lg = guestasm.guest(LOOK, pae=pae)
    assert lg.run() == 1
    assert word(lg, guestasm.SCRATCH) == reserve
    assert word(lg, guestasm.SCRATCH + 4) & 0x40 == cpuid_pae


def test_initial_tables_are_pae_tables() -> None:
    # The PDPT is the top page of RAM; its entries 0 and 3 share one page
    # directory (abi-core 5.4).
    lg = guestasm.guest(LOOK, pae=True)
    assert lg.run() == 1
    pdpt = guestasm.RAM - 4096
    assert word(lg, guestasm.SCRATCH) == 0x200000
    first, fourth = word(lg, pdpt), word(lg, pdpt + 24)
    assert first == fourth and first & 0xFFF == 1
    assert word(lg, pdpt + 8) == word(lg, pdpt + 16) == 0


def test_guest_runs_on_its_own_pae_tables() -> None:
    lg = guestasm.guest(OWN_TABLES, pae=True)
    assert lg.run() == 0x5A5A
    assert word(lg, guestasm.SCRATCH + 0x1000) == 0x5A5A
    # The host set accessed and dirty in the 64-bit entry, high word intact.
    assert word(lg, 0x305000) == guestasm.SCRATCH + 0x1067
    assert word(lg, 0x305004) == 0
    # The code page was fetched through the guest's table: accessed.
    assert word(lg, 0x302000 + 8 * (guestasm.LOAD_ADDR >> 12)) & 0x20


def test_own_pae_tables_mean_nothing_to_a_2_level_host() -> None:
    # Without pae the PDPT's 8-byte entries read as a page directory: the
    # guest dies at its first access through them.
    lg = guestasm.guest(OWN_TABLES)
    with pytest.raises(_core.GuestDied):
        while True:
            lg.run()


def test_pae_is_keyword_only() -> None:
    lg = _core.Lguest(guestasm.RAM)
    with pytest.raises(TypeError):
        lg.initialize(guestasm.RAM // 4096, guestasm.LOAD_ADDR, True)  # type: ignore[misc]


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lguest", "run", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_cli_pae_flag(tmp_path: Path) -> None:
    kernel = tmp_path / "check-pae.elf"
    kernel.write_bytes(guestasm.build(CHECK_PAE))
    with_pae = run_cli("--pae", "-v", "-m", "16", kernel)
    assert with_pae.returncode == 0, with_pae.stderr
    assert "PAE page tables" in with_pae.stderr
    without = run_cli("-m", "16", kernel)
    assert without.returncode == 1
    assert "Bad hypercall 99" in without.stderr


def test_cli_help_mentions_pae() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lguest", "run", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "--pae" in result.stdout and "CONFIG_X86_PAE" in result.stdout


def test_guest_api_passes_pae(tmp_path: Path) -> None:
    from lguest import Guest

    kernel = tmp_path / "check-pae.elf"
    kernel.write_bytes(guestasm.build(CHECK_PAE))
    with Guest(kernel, memory=16, pae=True) as g:
        assert g.run(timeout=30).poweroff
    with Guest(kernel, memory=16) as g:
        exit_ = g.run(timeout=30)
        assert not exit_.poweroff and "Bad hypercall 99" in exit_.reason

"""Self-modifying code: code rewrites instructions in its own pages and runs them.

Every program here executes an instruction, rewrites it (or writes a new one),
executes it again, and the results must follow the rewrite (x86 has coherent
instruction fetch: even a store to the very next instruction is seen, SDM vol. 3
§8.1.3 on P6 and later).  Expected values are written out; the same programs also
run on unicorn as a cross-check.  tests/native/smc.c does the same on silicon.
"""

from __future__ import annotations

import os
import struct

import diffharness as H
import pytest

TIMEOUT = int(os.environ.get("LGUEST_DIFF_TIMEOUT", "120"))
B = H.CODE_BASE


def d32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


def rel32(frm_next: int, to: int) -> bytes:
    return struct.pack("<i", to - frm_next)


def prog_patch_next_instruction() -> tuple[bytes, dict[str, int]]:
    """A store rewrites the immediate of the instruction right after it."""
    code = bytearray()
    code += b"\xc6\x05" + d32(B + 8) + b"\x22"  # 0: mov byte [L1+1], 0x22
    code += b"\xb0\x11"  # 7: L1: mov al, 0x11  -> runs as mov al, 0x22
    code += b"\x88\xc3"  # 9: mov bl, al
    return bytes(code), {"eax": 0x22, "ebx": 0x22}


def prog_loop_patches_earlier_instruction() -> tuple[bytes, dict[str, int]]:
    """Each loop iteration bumps the imm8 of an ADD it has already executed."""
    code = bytearray()
    code += b"\x31\xdb"  # 0: xor ebx, ebx
    code += b"\xb9" + d32(3)  # 2: mov ecx, 3
    p = len(code)  # 7: P: add ebx, 1
    code += b"\x83\xc3\x01"
    code += b"\xfe\x05" + d32(B + p + 2)  # 10: inc byte [P+2]
    code += b"\xe2" + struct.pack("<b", p - (len(code) + 2))  # loop P
    return bytes(code), {"ebx": 1 + 2 + 3, "ecx": 0}


def prog_loop_patches_later_instruction() -> tuple[bytes, dict[str, int]]:
    """Each iteration patches an instruction later in the same (cached) block."""
    code = bytearray()
    code += b"\x31\xdb"  # xor ebx, ebx
    code += b"\xb9" + d32(3)  # mov ecx, 3
    top = len(code)
    q = top + 6
    code += b"\xfe\x05" + d32(B + q + 1)  # inc byte [Q+1]
    assert len(code) == q
    code += b"\xb0\x00"  # Q: mov al, 0
    code += b"\x00\xc3"  # add bl, al
    code += b"\xe2" + struct.pack("<b", top - (len(code) + 2))  # loop top
    return bytes(code), {"ebx": 1 + 2 + 3, "eax": 3}


def prog_rewrite_opcode_and_call() -> tuple[bytes, dict[str, int]]:
    """A subroutine's opcode byte goes ADD -> SUB -> XOR between calls."""
    code = bytearray()
    f_off = 49
    f = B + f_off
    code += b"\xb8" + d32(100)  # mov eax, 100
    for opcode, save in ((0x05, b"\x89\xc6"), (0x2D, b"\x89\xc7"), (0x35, b"\x89\xc2")):
        code += b"\xc6\x05" + d32(f) + bytes([opcode])  # mov byte [F], opcode
        code += b"\xe8" + rel32(B + len(code) + 5, f)  # call F
        code += save  # mov esi/edi/edx, eax
    code += b"\xeb\x06"  # jmp over F
    assert len(code) == f_off
    code += b"\x90" + d32(10)  # F: <opcode> imm32 10  (a NOP + junk until patched)
    code += b"\xc3"  # ret
    return bytes(code), {"esi": 110, "edi": 100, "edx": 110, "eax": 110}


def prog_rep_movs_new_code() -> tuple[bytes, dict[str, int]]:
    """REP MOVSB copies a routine into the code page; it is called, then replaced."""
    s1, s2 = H.DATA_BASE + 0x100, H.DATA_BASE + 0x200
    code = bytearray()
    # plant the two routines in the data page: mov eax, imm32; ret
    code += b"\xc7\x05" + d32(s1) + b"\xb8\x11\x11\x11"  # mov dword [s1], b8 11 11 11
    code += b"\xc7\x05" + d32(s1 + 4) + b"\x11\xc3\x00\x00"
    code += b"\xc7\x05" + d32(s2) + b"\xb8\x22\x22\x22"
    code += b"\xc7\x05" + d32(s2 + 4) + b"\x22\xc3\x00\x00"
    code += b"\xfc"  # cld
    t_off = len(code) + 2 * (5 + 5 + 5 + 2 + 5 + 2) + 2
    t = B + t_off
    for src, save in ((s1, b"\x89\xc3"), (s2, b"\x89\xc2")):
        code += b"\xbe" + d32(src)  # mov esi, src
        code += b"\xbf" + d32(t)  # mov edi, T
        code += b"\xb9" + d32(6)  # mov ecx, 6
        code += b"\xf3\xa4"  # rep movsb
        code += b"\xe8" + rel32(B + len(code) + 5, t)  # call T
        code += save  # mov ebx/edx, eax
    code += b"\xeb\x06"  # jmp over T
    assert len(code) == t_off
    code += b"\xcc" * 6  # T: int3 until overwritten
    return bytes(code), {"ebx": 0x11111111, "edx": 0x22222222}


def prog_patch_across_page_boundary() -> tuple[bytes, dict[str, int]]:
    """An instruction straddling two pages; its bytes are patched in one page at a time."""
    x = (
        B + 0x1000 - 2
    )  # mov eax, imm32 at 0x..ffe: opcode+1 byte in page 0, 3 bytes in page 1
    code = bytearray()
    for patch, save in (
        (None, b"\x89\xc3"),
        ((x + 4, 0x99), b"\x89\xc2"),
        ((x + 1, 0x55), b"\x89\xc6"),
    ):
        if patch:
            code += (
                b"\xc6\x05" + d32(patch[0]) + bytes([patch[1]])
            )  # mov byte [addr], v
        code += b"\xe8" + rel32(B + len(code) + 5, x)  # call X
        code += save
    end = x + 6
    code += b"\xe9" + rel32(B + len(code) + 5, end)  # jmp end
    code += b"\xcc" * (x - B - len(code))
    code += b"\xb8\x11\x22\x33\x44"  # X: mov eax, 0x44332211
    code += b"\xc3"  # ret
    assert B + len(code) == end
    return bytes(code), {"ebx": 0x44332211, "edx": 0x99332211, "esi": 0x99332255}


def prog_code_in_data_page() -> tuple[bytes, dict[str, int]]:
    """Write a routine into the data page, call it, rewrite it, call it again."""
    r = H.DATA_BASE + 0x800
    code = bytearray()
    for imm, save in ((0x12345678, b"\x89\xc3"), (0x9ABCDEF0, b"\x89\xc2")):
        code += b"\xc6\x05" + d32(r) + b"\xb8"  # mov byte [r], 0xb8
        code += b"\xc7\x05" + d32(r + 1) + d32(imm)  # mov dword [r+1], imm
        code += b"\xc6\x05" + d32(r + 5) + b"\xc3"  # mov byte [r+5], 0xc3 (ret)
        code += b"\xb9" + d32(r)  # mov ecx, r
        code += b"\xff\xd1"  # call ecx
        code += save
    return bytes(code), {"ebx": 0x12345678, "edx": 0x9ABCDEF0}


def prog_stos_over_next_instructions() -> tuple[bytes, dict[str, int]]:
    """REP STOSB overwrites the instructions that follow it with NOPs."""
    code = bytearray()
    code += b"\x31\xdb"  # xor ebx, ebx
    code += b"\xfc"  # cld
    code += b"\xb0\x90"  # mov al, 0x90 (nop)
    target_off = len(code) + 5 + 5 + 2
    code += b"\xbf" + d32(B + target_off)  # mov edi, target
    code += b"\xb9" + d32(6)  # mov ecx, 6
    code += b"\xf3\xaa"  # rep stosb
    assert len(code) == target_off
    code += b"\xbb" + d32(0xDEAD)  # mov ebx, 0xdead   (5 bytes, becomes nops)
    code += b"\x43"  # inc ebx                          (1 byte, becomes nop)
    code += b"\x43"  # inc ebx  (survives)
    return bytes(code), {"ebx": 1, "edi": B + target_off + 6}


PROGRAMS = {
    "patch_next_instruction": prog_patch_next_instruction,
    "loop_patches_earlier_instruction": prog_loop_patches_earlier_instruction,
    "loop_patches_later_instruction": prog_loop_patches_later_instruction,
    "rewrite_opcode_and_call": prog_rewrite_opcode_and_call,
    "rep_movs_new_code": prog_rep_movs_new_code,
    "patch_across_page_boundary": prog_patch_across_page_boundary,
    "code_in_data_page": prog_code_in_data_page,
    "stos_over_next_instructions": prog_stos_over_next_instructions,
}


def _case(name: str) -> tuple[H.Case, dict[str, int]]:
    code, expect = PROGRAMS[name]()
    regs = {r: 0 for r in H.GPRS}
    regs["esp"] = H.STACK_INIT
    return H.Case(code=code, regs=regs, eflags=0x202), expect


def _check_expect(
    got: H.Outcome, case: H.Case, expect: dict[str, int], who: str
) -> None:
    assert not got.crash, f"{who}: {got.crash}"
    bad = {r: (v, got.regs[r]) for r, v in expect.items() if got.regs[r] != v}
    assert got.exit[0] == "address" and not bad, (
        f"{who}: exit {got.exit}, EIP {got.regs['eip']:#x};"
        + "".join(f"\n  {r}: expected {w:#x}, got {g:#x}" for r, (w, g) in bad.items())
        + "\n"
        + case.describe()
    )


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_self_modifying_code(name):
    case, expect = _case(name)
    factory = H.cpu_factory()
    got = H.run_case(factory, case)
    _check_expect(got, case, expect, H.backend_name())
    # and the whole machine state (incl. the rewritten code bytes) matches unicorn
    ref = H.run_reference(case)
    diffs = H.compare(ref, got, flag_mask=H.COMPARED_FLAGS & ~ref.flags_undefined)
    assert not diffs, "\n".join(diffs) + "\n" + case.describe()


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_self_modifying_code_on_unicorn(name):
    """The reference handles these too (else the comparison above would be moot)."""
    case, expect = _case(name)
    _check_expect(H.run_case(H.UnicornCpu, case), case, expect, "unicorn")


@pytest.mark.timeout(TIMEOUT)
def test_host_rewrites_code_between_runs():
    """mem_write over already-executed code is seen by the next run (no stale decode)."""
    factory = H.cpu_factory()
    cpu = factory()
    cpu.mem_map(B, 0x1000)
    cpu.mem_write(B, b"\xb8" + d32(1) + b"\x90")  # mov eax, 1; nop
    for i in range(1, 4):
        ex = cpu.run(start=B, until=B + 5)
        assert ex.kind == "address", ex
        assert cpu.reg_read("eax") == i, f"run {i}: eax={cpu.reg_read('eax'):#x}"
        cpu.mem_write(B + 1, d32(i + 1))

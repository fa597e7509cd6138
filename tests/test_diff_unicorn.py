"""Differential tests: random i386 programs on lguest._core.Cpu vs unicorn.

Programs are built by hypothesis from *items* (an instruction under test plus the
``mov`` set-up it needs: memory operand base/index registers pointing into the data
pages, shift counts in CL, string-op pointers and counts, non-faulting dividends...).
Each program runs on both CPUs via :mod:`diffharness`, which compares GPRs, EIP, all
mapped memory, the exit and the SDM-defined EFLAGS bits.

The generator tracks which status flags are undefined (``FLAG_TABLE``) and, before
any instruction that reads such a flag (ADC, Jcc, PUSHF, DAA...), inserts a
flag-defining "sanitizer" (``cmp r32, imm32`` or ``push imm32; popfd``), so programs
never depend on undefined behaviour; the reference run double-checks this.

Knobs (environment): ``LGUEST_DIFF_EXAMPLES`` examples per test (default 200),
``LGUEST_DIFF_SEED`` unset = derandomized (CI), set to an integer (or ``random``)
for other example sets, ``LGUEST_DIFF_BACKEND=unicorn`` to self-test the harness
against unicorn itself.
"""

from __future__ import annotations

import dataclasses

import os
import random

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from iced_x86 import Code, Encoder, Instruction, MemoryOperand, Register, RepPrefixKind

_MemoryOperand = MemoryOperand

import diffharness as H
from lguest import _core as lguest_core
from diffharness import AF, CF, DF, OF, STATUS, ZF

EXAMPLES = int(os.environ.get("LGUEST_DIFF_EXAMPLES", "200"))
_SEED = os.environ.get("LGUEST_DIFF_SEED", "")
# Per-test wall-clock limit (pytest-timeout), scaled with the number of examples.
TIMEOUT = int(os.environ.get("LGUEST_DIFF_TIMEOUT", str(max(120, EXAMPLES))))

SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=not _SEED,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)


def diff_test(fn):
    """hypothesis settings + pytest-timeout for every differential test."""
    fn = SETTINGS(fn)
    if _SEED and _SEED != "random":
        fn = seed(int(_SEED))(fn)
    return pytest.mark.timeout(TIMEOUT)(fn)


@pytest.fixture(scope="module")
def factory():
    return H.cpu_factory()


# ---------------------------------------------------------------------------
# Registers and values
# ---------------------------------------------------------------------------

R32 = [
    Register.EAX,
    Register.ECX,
    Register.EDX,
    Register.EBX,
    Register.ESP,
    Register.EBP,
    Register.ESI,
    Register.EDI,
]
R16 = [
    Register.AX,
    Register.CX,
    Register.DX,
    Register.BX,
    Register.SP,
    Register.BP,
    Register.SI,
    Register.DI,
]
R8 = [
    Register.AL,
    Register.CL,
    Register.DL,
    Register.BL,
    Register.AH,
    Register.CH,
    Register.DH,
    Register.BH,
]
REGS = {8: R8, 16: R16, 32: R32}
FULL = {r: H.GPRS[i] for regs in (R32, R16) for i, r in enumerate(regs)}
FULL.update({r: H.GPRS[i % 4] for i, r in enumerate(R8)})
ACC = {8: Register.AL, 16: Register.AX, 32: Register.EAX}
SPECIAL = [
    0,
    1,
    2,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0x80000001,
    0xFFFFFFFE,
    0xFFFFFFFF,
]
VAL32 = st.one_of(
    st.integers(0, 2**32 - 1),
    st.sampled_from(SPECIAL),
    st.integers(0, 0x3FF),
    st.integers(0, 0x3FF).map(lambda v: (-v) & 0xFFFFFFFF),
)
CCS = [
    "o",
    "no",
    "b",
    "ae",
    "e",
    "ne",
    "be",
    "a",
    "s",
    "ns",
    "p",
    "np",
    "l",
    "ge",
    "le",
    "g",
]
SUFFIX = {8: "B", 16: "W", 32: "D"}


def code(name: str) -> int:
    try:
        return getattr(Code, name)
    except AttributeError:
        raise AssertionError(f"iced_x86 has no Code.{name}") from None


def imm_code(size: int) -> str:
    return {8: "IMM8", 16: "IMM16", 32: "IMM32"}[size]


class _Ctx(H.StaticCtx):
    """Generation-time facts; immediate shift counts are read off the instruction."""

    def __init__(self, instr: Instruction, count=None, rep_count=None, src_value=None):
        super().__init__(count, rep_count, src_value)
        self.instr = instr

    def count(self) -> int:
        if self._count is None:
            k = self.instr.op_count - 1
            return self.instr.immediate(k)
        return self._count


class Asm:
    """Accumulates encoded instructions at a known address, tracking which status
    flags are undefined so flag readers get a sanitizer first."""

    def __init__(
        self, draw, ip: int, *, undefined: int = 0, avoid=("esp",), depth: int = 0
    ):
        self.draw = draw
        self.ip0 = ip
        self.buf = bytearray()
        self.undefined = undefined
        self.avoid = set(avoid)
        self.depth = depth  # nesting of branch bodies
        self.protect_stack = (
            False  # [esp+d] only below ESP (a return address is on top)
        )
        self.fault = (
            False  # memory operands point at unmapped memory (see test_memory_fault)
        )
        self.notes: list[str] = []

    # -- drawing helpers ---------------------------------------------------
    def pick(self, seq):
        return self.draw(st.sampled_from(list(seq)))

    def int(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def chance(self, p_in_8: int) -> bool:
        return self.draw(st.integers(0, 7)) < p_in_8

    def val(self, size: int = 32) -> int:
        return self.draw(VAL32) & ((1 << size) - 1)

    def wreg(self, size: int, extra_avoid=()) -> int:
        """A register that may be written."""
        bad = self.avoid | set(extra_avoid) | {"esp"}
        return self.pick([r for r in REGS[size] if FULL[r] not in bad])

    def rreg(self, size: int) -> int:
        return self.pick(REGS[size])

    # -- emission ----------------------------------------------------------
    @property
    def ip(self) -> int:
        return self.ip0 + len(self.buf)

    def encode(self, instr: Instruction, ip: int | None = None) -> bytes:
        enc = Encoder(32)
        enc.encode(instr, self.ip if ip is None else ip)
        return enc.take_buffer()

    def sanitize(self, need: int) -> None:
        if not need & self.undefined:
            return
        if self.chance(5):
            reg = self.rreg(32)
            self._emit(
                Instruction.create_reg_u32(code("CMP_RM32_IMM32"), reg, self.val())
            )
        else:
            flags = (self.val() & (STATUS | DF)) | 2
            self._emit(Instruction.create_u32(code("PUSHD_IMM32"), flags))
            self._emit(Instruction.create(code("POPFD")))
        assert not need & self.undefined

    def _emit(self, instr: Instruction, **facts) -> None:
        eff = H.reference_effect(instr, _Ctx(instr, **facts))
        if eff.undefined_result:
            raise H.HarnessError(
                f"generator emitted {H.fmt_insn(instr)}: {eff.undefined_result}"
            )
        self.sanitize(eff.read)
        self.buf += self.encode(instr)
        self.undefined = H.apply_effect(self.undefined, eff)

    def emit(self, instr: Instruction, *, count=None, rep=None, src=None) -> None:
        self._emit(instr, count=count, rep_count=rep, src_value=src)

    def raw(self, data: bytes) -> None:
        for _, b, _ in H.disasm(data, self.ip):
            ins = H.decode_one(b, self.ip)
            self._emit(ins)

    def mov_imm(self, reg: int, value: int) -> None:
        size = {**{r: 32 for r in R32}, **{r: 16 for r in R16}, **{r: 8 for r in R8}}[
            reg
        ]
        self.emit(
            Instruction.create_reg_u32(
                code(f"MOV_R{size}_IMM{size}"), reg, value & ((1 << size) - 1)
            )
        )

    def child(self, ip: int, extra_avoid=()) -> Asm:
        c = Asm(
            self.draw,
            ip,
            undefined=self.undefined,
            avoid=self.avoid | set(extra_avoid),
            depth=self.depth + 1,
        )
        c.protect_stack = self.protect_stack
        c.fault = self.fault
        return c

    # -- memory operands -----------------------------------------------------
    def mem(
        self,
        size: int,
        extra_avoid=(),
        *,
        allow_stack: bool = True,
        target: int | None = None,
    ) -> MemoryOperand:
        """A memory operand of ``size`` bytes in the data pages (or on the stack),
        emitting the ``mov`` set-up of its base/index registers."""
        forms = ["b", "bd8", "bd32", "bi", "bid", "id32", "abs", "a16", "a16", "bid"]
        if allow_stack and not self.fault:
            forms.append("esp")
        form = self.pick(forms)
        if self.fault:  # somewhere unmapped (not straddling into mapped memory)
            target = self.unmapped_address(size, low=form == "a16")
        elif target is None:
            target = self.int(H.DATA_BASE + 64, H.DATA_BASE + H.DATA_SIZE - 64 - size)
        # flat segments: an override changes nothing, but must decode and work
        seg = self.pick(
            [Register.NONE] * 5
            + [Register.ES, Register.SS, Register.DS, Register.FS, Register.GS]
        )

        def MemoryOperand(*args):  # shadows the iced class to add the override
            return _MemoryOperand(*args, *([0] * (5 - len(args))), False, seg)

        bad = self.avoid | set(extra_avoid) | {"esp"}
        free32 = [r for r in R32 if FULL[r] not in bad]
        if form == "esp":
            hi = -4 if self.protect_stack else 48
            return MemoryOperand(
                Register.ESP, Register.NONE, 1, self.int(-48, hi) & ~3, 1
            )
        if form == "abs":
            return MemoryOperand(Register.NONE, Register.NONE, 1, target, 4)
        if form == "a16":
            combos = [
                (Register.BX, Register.SI),
                (Register.BX, Register.DI),
                (Register.BP, Register.SI),
                (Register.BP, Register.DI),
                (Register.SI, None),
                (Register.DI, None),
                (Register.BX, None),
                (Register.BP, None),
                (None, None),
            ]
            combos = [
                c for c in combos if all(r is None or FULL[r] not in bad for r in c)
            ]
            b, i = self.pick(combos)
            dsize = self.pick([0, 1, 2]) if b is not None else 2
            disp = (
                0
                if dsize == 0
                else (self.int(-128, 127) if dsize == 1 else self.int(0, 0xFFFF))
            )
            if b is None:
                return MemoryOperand(Register.NONE, Register.NONE, 1, target, 2)
            ival = self.int(0, 0xFFFF) if i is not None else 0
            bval = (target - ival - disp) & 0xFFFF
            self.mov_imm(FULL_REG[FULL[b]], (self.val() & 0xFFFF0000) | bval)
            if i is not None:
                self.mov_imm(FULL_REG[FULL[i]], (self.val() & 0xFFFF0000) | ival)
            return MemoryOperand(
                b,
                Register.NONE if i is None else i,
                1,
                disp & 0xFFFF if dsize == 2 else disp,
                dsize,
            )
        if not free32 or (form in ("bi", "bid") and len(free32) < 2):
            return MemoryOperand(Register.NONE, Register.NONE, 1, target, 4)
        scale = self.pick([1, 2, 4, 8])
        if form in ("b", "bd8", "bd32"):
            base = self.pick(free32)
            disp = {"b": 0, "bd8": self.int(-128, 127), "bd32": self.val()}[form]
            self.mov_imm(base, target - disp)
            dsz = {"b": 0, "bd8": 1, "bd32": 4}[form]
            return MemoryOperand(
                base, Register.NONE, 1, disp if dsz != 4 else disp & 0xFFFFFFFF, dsz
            )
        if form == "id32":
            idx = self.pick(free32)
            ival = self.val() if self.chance(4) else self.int(0, 64)
            disp = (target - ival * scale) & 0xFFFFFFFF
            self.mov_imm(idx, ival)
            return MemoryOperand(Register.NONE, idx, scale, disp, 4)
        base = self.pick(free32)
        idx = self.pick([r for r in free32 if r != base])
        ival = self.val() if self.chance(4) else self.int(0, 64)
        dsz = 0 if form == "bi" else self.pick([1, 4])
        disp = 0 if dsz == 0 else (self.int(-128, 127) if dsz == 1 else self.val())
        self.mov_imm(idx, ival)
        self.mov_imm(base, target - ival * scale - disp)
        return MemoryOperand(
            base, idx, scale, disp if dsz != 4 else disp & 0xFFFFFFFF, dsz
        )

    def unmapped_address(self, size: int, low: bool = False) -> int:
        pages = [0x0000, 0x8000, 0xB000, 0xF000] + (
            [] if low else [0x20000, 0x7FFFF000, 0xC0000000]
        )
        return self.pick(pages) + self.int(0, 0x1000 - size)

    def rm(self, size: int, *, write: bool, extra_avoid=()):
        """("reg", register) or ("mem", MemoryOperand) for an r/m operand."""
        if self.chance(4):
            return "reg", (self.wreg(size, extra_avoid) if write else self.rreg(size))
        return "mem", self.mem(size // 8, extra_avoid)


FULL_REG = {name: R32[i] for i, name in enumerate(H.GPRS)}


def mk(name: str, kind: str, op, *rest, signed: bool = False) -> Instruction:
    """Create ``name`` with r/m operand ``op`` (kind "reg"/"mem") and more operands."""
    c = code(name)
    if kind == "reg":
        if not rest:
            return Instruction.create_reg(c, op)
        if len(rest) == 1:
            other = rest[0]
            if isinstance(other, int) and not _is_reg(other):
                return (
                    Instruction.create_reg_i32 if signed else Instruction.create_reg_u32
                )(c, op, other)
            return Instruction.create_reg_reg(c, op, other)
        if len(rest) == 2:
            if _is_reg(rest[1]):
                return Instruction.create_reg_reg_reg(c, op, rest[0], rest[1])
            return Instruction.create_reg_reg_u32(c, op, rest[0], rest[1])
    else:
        if not rest:
            return Instruction.create_mem(c, op)
        if len(rest) == 1:
            other = rest[0]
            if isinstance(other, int) and not _is_reg(other):
                return (
                    Instruction.create_mem_i32 if signed else Instruction.create_mem_u32
                )(c, op, other)
            return Instruction.create_mem_reg(c, op, other)
        if len(rest) == 2:
            if _is_reg(rest[1]):
                return Instruction.create_mem_reg_reg(c, op, rest[0], rest[1])
            return Instruction.create_mem_reg_u32(c, op, rest[0], rest[1])
    raise AssertionError("unsupported operand shape")


class RegImm(int):
    """Marks an int as a register (iced registers are plain ints)."""


def _is_reg(x) -> bool:
    return isinstance(x, RegImm)


def reg(r: int) -> RegImm:
    return RegImm(r)


# ---------------------------------------------------------------------------
# Items
# ---------------------------------------------------------------------------


def item_alu(a: Asm) -> None:
    op = a.pick(["ADD", "ADC", "SUB", "SBB", "AND", "OR", "XOR", "CMP"])
    size = a.pick([8, 16, 32])
    form = a.pick(["rm_r", "r_rm", "rm_imm", "rm_imm8", "acc"])
    writes = op != "CMP"
    if form == "acc":
        acc = ACC[size]
        if writes and FULL[acc] in a.avoid:
            return
        a.emit(
            Instruction.create_reg_u32(
                code(f"{op}_{H.REGISTER_NAME[acc].upper()}_{imm_code(size)}"),
                acc,
                a.val(size),
            )
        )
        return
    if form == "r_rm":
        dst = a.wreg(size) if writes else a.rreg(size)
        kind, src = a.rm(size, write=False)
        name = f"{op}_R{size}_RM{size}"
        a.emit(
            Instruction.create_reg_reg(code(name), dst, src)
            if kind == "reg"
            else Instruction.create_reg_mem(code(name), dst, src)
        )
        return
    kind, dst = a.rm(size, write=writes)
    if form == "rm_r":
        ins = mk(f"{op}_RM{size}_R{size}", kind, dst, reg(a.rreg(size)))
    elif form == "rm_imm":
        ins = mk(f"{op}_RM{size}_{imm_code(size)}", kind, dst, a.val(size))
    else:  # sign-extended imm8 (0x83), or the 0x82 alias for 8-bit
        name = f"{op}_RM8_IMM8_82" if size == 8 else f"{op}_RM{size}_IMM8"
        ins = mk(name, kind, dst, a.int(-128, 127), signed=True)
    maybe_lock(a, ins, kind, writes)
    a.emit(ins)


def maybe_lock(a: Asm, ins: Instruction, kind: str, writes: bool = True) -> None:
    """LOCK is legal on read-modify-write memory destinations (and nothing else)."""
    if kind == "mem" and writes and a.chance(2):
        ins.has_lock_prefix = True


def item_unary(a: Asm) -> None:
    op = a.pick(["INC", "DEC", "NEG", "NOT", "INC", "DEC"])
    size = a.pick([8, 16, 32])
    if op in ("INC", "DEC") and size != 8 and a.chance(3):
        a.emit(
            Instruction.create_reg(code(f"{op}_R{size}"), a.wreg(size))
        )  # 0x40+r short form
        return
    kind, dst = a.rm(size, write=True)
    ins = mk(f"{op}_RM{size}", kind, dst)
    maybe_lock(a, ins, kind)
    a.emit(ins)


def item_mov(a: Asm) -> None:
    form = a.pick(["rm_r", "r_rm", "r_imm", "rm_imm", "moffs_load", "moffs_store"])
    size = a.pick([8, 16, 32])
    if form == "r_imm":
        a.mov_imm(a.wreg(size), a.val(size))
    elif form == "rm_imm":
        kind, dst = a.rm(size, write=True)
        a.emit(mk(f"MOV_RM{size}_{imm_code(size)}", kind, dst, a.val(size)))
    elif form == "rm_r":
        kind, dst = a.rm(size, write=True)
        a.emit(mk(f"MOV_RM{size}_R{size}", kind, dst, reg(a.rreg(size))))
    elif form == "r_rm":
        dst = a.wreg(size)
        kind, src = a.rm(size, write=False)
        name = f"MOV_R{size}_RM{size}"
        a.emit(
            Instruction.create_reg_reg(code(name), dst, src)
            if kind == "reg"
            else Instruction.create_reg_mem(code(name), dst, src)
        )
    else:  # A0-A3 with a 32- or 16-bit (0x67) absolute offset
        acc = ACC[size]
        if form == "moffs_load" and FULL[acc] in a.avoid:
            return
        target = (
            a.unmapped_address(size // 8, low=True)
            if a.fault
            else a.int(H.DATA_BASE, H.DATA_BASE + H.DATA_SIZE - 4)
        )
        m = MemoryOperand(Register.NONE, Register.NONE, 1, target, a.pick([2, 4]))
        accn = H.REGISTER_NAME[acc].upper()
        if form == "moffs_load":
            a.emit(Instruction.create_reg_mem(code(f"MOV_{accn}_MOFFS{size}"), acc, m))
        else:
            a.emit(Instruction.create_mem_reg(code(f"MOV_MOFFS{size}_{accn}"), m, acc))


def item_nop(a: Asm) -> None:
    kind = a.pick(["nop", "nopw", "nop_rm", "pause", "xchg_ax"])
    if kind == "nop":
        a.emit(Instruction.create(code("NOPD")))
    elif kind == "nopw":
        a.emit(Instruction.create(code("NOPW")))
    elif kind == "pause":
        a.emit(Instruction.create(code("PAUSE")))
    elif kind == "xchg_ax":
        a.raw(b"\x66\x90")
    else:  # 0F 1F /0 multi-byte NOP: the memory operand is never accessed
        a.emit(
            Instruction.create_mem(
                code(a.pick(["NOP_RM32", "NOP_RM16"])), random_memop(a)
            )
        )


def item_test(a: Asm) -> None:
    size = a.pick([8, 16, 32])
    # (F6/F7 /1, the undocumented TEST alias, is #UD on unicorn: covered by the
    # silicon oracle, tests/native/misc.c, instead)
    form = a.pick(["rm_r", "rm_imm", "acc"])
    if form == "acc":
        a.emit(
            Instruction.create_reg_u32(
                code(f"TEST_{H.REGISTER_NAME[ACC[size]].upper()}_{imm_code(size)}"),
                ACC[size],
                a.val(size),
            )
        )
        return
    kind, dst = a.rm(size, write=False)
    if form == "rm_r":
        a.emit(mk(f"TEST_RM{size}_R{size}", kind, dst, reg(a.rreg(size))))
    elif form == "alias":  # F6/F7 /1, an undocumented alias of /0
        a.emit(
            mk(
                f"TEST_RM{size}_{imm_code(size)}_F{'6' if size == 8 else '7'}R1",
                kind,
                dst,
                a.val(size),
            )
        )
    else:
        a.emit(mk(f"TEST_RM{size}_{imm_code(size)}", kind, dst, a.val(size)))


def shift_count(a: Asm, size: int) -> int:
    return a.pick(
        [
            0,
            1,
            1,
            2,
            3,
            size - 1,
            size,
            size + 1,
            31,
            32,
            33,
            63,
            255,
            a.int(0, 255),
            a.int(0, 31),
        ]
    )


def item_shift(a: Asm) -> None:
    op = a.pick(["SHL", "SHR", "SAR", "SAL", "ROL", "ROR", "RCL", "RCR"])
    size = a.pick([8, 16, 32])
    how = a.pick(["1", "cl", "imm"])
    if how == "cl" and "ecx" in a.avoid:
        how = "imm"
    kind, dst = a.rm(size, write=True, extra_avoid=("ecx",) if how == "cl" else ())
    if how == "1":
        a.emit(mk(f"{op}_RM{size}_1", kind, dst, 1))
    elif how == "imm":
        a.emit(mk(f"{op}_RM{size}_IMM8", kind, dst, shift_count(a, size)))
    else:
        n = shift_count(a, size)
        a.mov_imm(Register.CL, n)
        a.emit(mk(f"{op}_RM{size}_CL", kind, dst, reg(Register.CL)), count=n)


def item_shiftd(a: Asm) -> None:
    op = a.pick(["SHLD", "SHRD"])
    size = a.pick([16, 32])
    how = a.pick(["imm", "cl"])
    if how == "cl" and "ecx" in a.avoid:
        how = "imm"
    n = shift_count(a, size)
    if size == 16 and (n & 31) > 16:
        n = a.pick([0, 1, 15, 16, 32, 48])  # masked count > 16: result undefined
    avoid = ("ecx",) if how == "cl" else ()
    kind, dst = a.rm(size, write=True, extra_avoid=avoid)
    src = a.rreg(size)
    if how == "imm":
        a.emit(mk(f"{op}_RM{size}_R{size}_IMM8", kind, dst, reg(src), n))
    else:
        a.mov_imm(Register.CL, n)
        a.emit(
            mk(f"{op}_RM{size}_R{size}_CL", kind, dst, reg(src), reg(Register.CL)),
            count=n,
        )


def item_mul(a: Asm) -> None:
    form = a.pick(["mul1", "imul1", "imul2", "imul3"])
    size = a.pick([8, 16, 32]) if form in ("mul1", "imul1") else a.pick([16, 32])
    if form in ("mul1", "imul1"):
        if {"eax", "edx"} & a.avoid:
            return
        kind, src = a.rm(size, write=False)
        a.emit(mk(f"{form[:-1].upper()}_RM{size}", kind, src))
        return
    dst = a.wreg(size)
    kind, src = a.rm(size, write=False)
    name = f"IMUL_R{size}_RM{size}"
    if form == "imul2":
        a.emit(
            Instruction.create_reg_reg(code(name), dst, src)
            if kind == "reg"
            else Instruction.create_reg_mem(code(name), dst, src)
        )
        return
    if a.chance(4):
        v, f = a.int(-128, 127), "IMM8"
    else:
        v, f = a.val(size), imm_code(size)
    if kind == "reg":
        ins = (
            Instruction.create_reg_reg_i32(code(f"{name}_{f}"), dst, src, v)
            if f == "IMM8"
            else Instruction.create_reg_reg_u32(code(f"{name}_{f}"), dst, src, v)
        )
    else:
        ins = (
            Instruction.create_reg_mem_i32(code(f"{name}_{f}"), dst, src, v)
            if f == "IMM8"
            else Instruction.create_reg_mem_u32(code(f"{name}_{f}"), dst, src, v)
        )
    a.emit(ins)


def _division(a: Asm, size: int, signed: bool) -> tuple[int, int]:
    """(dividend, divisor) of 2*size / size bits whose quotient fits: no #DE."""
    lim, half = 1 << size, 1 << (size - 1)
    d = a.pick(
        [1, 2, 3, 7, 10, lim - 1, half, half - 1, a.int(1, lim - 1), a.int(1, 255)]
    )
    if not signed:
        q = a.pick([0, 1, lim - 1, a.int(0, lim - 1), a.int(0, 255)])
        return q * d + a.int(0, d - 1), d
    if d >= half:
        d -= lim  # reinterpret as negative
    elif a.chance(4):
        d = -d
    q = a.pick([0, 1, -1, half - 1, -half, a.int(-half, half - 1), a.int(-100, 100)])
    r = a.int(0, abs(d) - 1)
    n = q * d
    n += -r if n < 0 else r
    tq = abs(n) // abs(d) * (1 if (n >= 0) == (d > 0) else -1)
    if tq != q:
        n = q * d
    assert -half <= q < half and -(1 << (2 * size - 1)) <= n < (1 << (2 * size - 1))
    return n & ((1 << 2 * size) - 1), d & (lim - 1)


def item_div(a: Asm) -> None:
    if {"eax", "edx"} & a.avoid:
        return
    op = a.pick(["DIV", "IDIV"])
    size = a.pick([8, 16, 32])
    n, d = _division(a, size, op == "IDIV")
    dividend_regs = ("eax",) if size == 8 else ("eax", "edx")
    kind = "reg" if a.chance(4) else "mem"
    if kind == "reg":
        src = a.wreg(size, extra_avoid=dividend_regs)
        a.mov_imm(src, d)
    else:
        src = a.mem(size // 8, extra_avoid=dividend_regs)
        a.emit(
            Instruction.create_mem_u32(code(f"MOV_RM{size}_{imm_code(size)}"), src, d)
        )
    if size == 8:
        a.mov_imm(Register.AX, n)
    elif size == 16:
        a.mov_imm(Register.AX, n & 0xFFFF)
        a.mov_imm(Register.DX, n >> 16)
    else:
        a.mov_imm(Register.EAX, n & 0xFFFFFFFF)
        a.mov_imm(Register.EDX, n >> 32)
    a.emit(mk(f"{op}_RM{size}", kind, src))


def item_movx(a: Asm) -> None:
    op = a.pick(["MOVZX", "MOVSX"])
    dsize, ssize = a.pick([(32, 8), (32, 16), (16, 8), (16, 16)])
    dst = a.wreg(dsize)
    kind, src = a.rm(ssize, write=False)
    name = f"{op}_R{dsize}_RM{ssize}"
    a.emit(
        Instruction.create_reg_reg(code(name), dst, src)
        if kind == "reg"
        else Instruction.create_reg_mem(code(name), dst, src)
    )


def random_memop(a: Asm) -> MemoryOperand:
    """Any addressing form with arbitrary registers (for LEA: nothing is accessed)."""
    if a.chance(2):
        combos = [
            (Register.BX, Register.SI),
            (Register.BX, Register.DI),
            (Register.BP, Register.SI),
            (Register.BP, Register.DI),
            (Register.SI, Register.NONE),
            (Register.DI, Register.NONE),
            (Register.BX, Register.NONE),
            (Register.BP, Register.NONE),
            (Register.NONE, Register.NONE),
        ]
        b, i = a.pick(combos)
        dsz = 2 if b == Register.NONE else a.pick([0, 1, 2])
        disp = 0 if dsz == 0 else (a.int(-128, 127) if dsz == 1 else a.int(0, 0xFFFF))
        return MemoryOperand(b, i, 1, disp, dsz)
    base = a.pick(R32 + [Register.NONE])
    idx = a.pick([r for r in R32 if r != Register.ESP] + [Register.NONE])
    scale = a.pick([1, 2, 4, 8]) if idx != Register.NONE else 1
    dsz = 4 if base == Register.NONE else a.pick([0, 1, 4])
    disp = 0 if dsz == 0 else (a.int(-128, 127) if dsz == 1 else a.val())
    return MemoryOperand(base, idx, scale, disp & 0xFFFFFFFF if dsz == 4 else disp, dsz)


def item_lea(a: Asm) -> None:
    size = a.pick([16, 32])
    a.emit(
        Instruction.create_reg_mem(
            code(f"LEA_R{size}_M"), a.wreg(size), random_memop(a)
        )
    )


def item_xchg(a: Asm) -> None:
    op = a.pick(["XCHG", "XCHG", "CMPXCHG", "XADD", "BSWAP", "CMPXCHG8B", "XCHGA"])
    size = a.pick([8, 16, 32])
    if op == "BSWAP":  # BSWAP r16 is undefined
        a.emit(Instruction.create_reg(code("BSWAP_R32"), a.wreg(32)))
        return
    if op == "XCHGA":
        if "eax" in a.avoid or size == 8:
            return
        a.emit(
            Instruction.create_reg_reg(
                code(f"XCHG_R{size}_{'AX' if size == 16 else 'EAX'}"),
                a.wreg(size),
                ACC[size],
            )
        )
        return
    if op == "CMPXCHG8B":
        if {"eax", "edx", "ebx", "ecx"} & a.avoid:
            return
        target = a.int(H.DATA_BASE + 64, H.DATA_BASE + H.DATA_SIZE - 72)
        m = a.mem(8, extra_avoid=("eax", "edx"), target=target)
        if a.chance(4):  # make the compare succeed
            lo, hi = a.val(), a.val()
            for off, v in ((0, lo), (4, hi)):
                a.emit(
                    Instruction.create_mem_u32(
                        code("MOV_RM32_IMM32"),
                        MemoryOperand(Register.NONE, Register.NONE, 1, target + off, 4),
                        v,
                    )
                )
            a.mov_imm(Register.EAX, lo)
            a.mov_imm(Register.EDX, hi)
        a.emit(Instruction.create_mem(code("CMPXCHG8B_M64"), m))
        return
    if op == "CMPXCHG" and "eax" in a.avoid:
        return
    avoid = ("eax",) if op == "CMPXCHG" else ()
    kind, dst = a.rm(size, write=True, extra_avoid=avoid)
    src = a.wreg(size) if op in ("XCHG", "XADD") else a.rreg(size)
    if op == "CMPXCHG" and a.chance(4):  # make the compare succeed
        v = a.val(size)
        if kind == "reg":
            a.mov_imm(dst, v)
        else:
            a.emit(
                Instruction.create_mem_u32(
                    code(f"MOV_RM{size}_{imm_code(size)}"), dst, v
                )
            )
        a.mov_imm(ACC[size], v)
    ins = mk(f"{op}_RM{size}_R{size}", kind, dst, reg(src))
    if op != "XCHG":  # (XCHG with memory is locked anyway)
        maybe_lock(a, ins, kind)
    a.emit(ins)


def item_bittest(a: Asm) -> None:
    op = a.pick(["BT", "BTS", "BTR", "BTC"])
    size = a.pick([16, 32])
    form = a.pick(["reg_reg", "reg_imm", "mem_imm", "mem_reg", "mem_reg"])
    write = op != "BT"
    if form == "reg_reg":
        a.emit(
            mk(
                f"{op}_RM{size}_R{size}",
                "reg",
                a.wreg(size) if write else a.rreg(size),
                reg(a.rreg(size)),
            )
        )
    elif form == "reg_imm":
        a.emit(
            mk(
                f"{op}_RM{size}_IMM8",
                "reg",
                a.wreg(size) if write else a.rreg(size),
                a.int(0, 255),
            )
        )
    elif form == "mem_imm":
        a.emit(mk(f"{op}_RM{size}_IMM8", "mem", a.mem(size // 8), a.int(0, 255)))
    else:
        # Register bit offsets address memory outside the operand (signed, in
        # operand-size units): keep the reached byte inside the data pages.
        off_reg = a.wreg(size)
        lim = 0x7FFF if size == 16 else 8 * 0x1E00
        off = a.pick(
            [0, 1, size - 1, size, -1, -size, a.int(-lim, lim), a.int(-64, 64)]
        )
        if a.fault:
            off = a.int(0, size - 1)
        mid = H.DATA_BASE + H.DATA_SIZE // 2
        m = a.mem(
            size // 8,
            extra_avoid=(FULL[off_reg],),
            allow_stack=False,
            target=mid + a.int(-16, 16),
        )
        a.mov_imm(off_reg, off & ((1 << size) - 1))
        ins = mk(f"{op}_RM{size}_R{size}", "mem", m, reg(off_reg))
        maybe_lock(a, ins, "mem", write)
        a.emit(ins)


def item_bitscan(a: Asm) -> None:
    op = a.pick(["BSF", "BSR"])
    size = a.pick([16, 32])
    dst = a.wreg(size)
    v = a.pick(
        [
            1,
            1 << (size - 1),
            (1 << size) - 1,
            a.int(1, (1 << size) - 1),
            1 << a.int(0, size - 1),
        ]
    )
    if a.chance(4):
        src = a.wreg(size)
        a.mov_imm(src, v)
        a.emit(
            Instruction.create_reg_reg(code(f"{op}_R{size}_RM{size}"), dst, src), src=v
        )
    else:
        m = a.mem(size // 8)
        a.emit(Instruction.create_mem_u32(code(f"MOV_RM{size}_{imm_code(size)}"), m, v))
        a.emit(
            Instruction.create_reg_mem(code(f"{op}_R{size}_RM{size}"), dst, m), src=v
        )


def item_setcc(a: Asm) -> None:
    cc = a.pick(CCS)
    kind, dst = a.rm(8, write=True)
    a.emit(mk(f"SET{cc.upper()}_RM8", kind, dst))


def item_cmov(a: Asm) -> None:
    cc = a.pick(CCS)
    size = a.pick([16, 32])
    dst = a.wreg(size)
    kind, src = a.rm(size, write=False)
    name = f"CMOV{cc.upper()}_R{size}_RM{size}"
    a.emit(
        Instruction.create_reg_reg(code(name), dst, src)
        if kind == "reg"
        else Instruction.create_reg_mem(code(name), dst, src)
    )


def item_convert(a: Asm) -> None:
    op = a.pick(["CBW", "CWDE", "CWD", "CDQ"])
    if {"eax", "edx"} & a.avoid:
        return
    a.emit(Instruction.create(code(op)))


def item_flags(a: Asm) -> None:
    op = a.pick(
        [
            "LAHF",
            "SAHF",
            "PUSHF",
            "PUSHFW",
            "POPF",
            "POPFW",
            "CLC",
            "STC",
            "CMC",
            "CLD",
            "STD",
        ]
    )
    if op == "LAHF" and "eax" in a.avoid:
        return
    if op in ("PUSHF", "PUSHFW"):
        size = 32 if op == "PUSHF" else 16
        a.emit(Instruction.create(code("PUSHFD" if size == 32 else "PUSHFW")))
        # only status flags and DF are compared: clear the system bits in the copy
        a.emit(
            Instruction.create_mem_u32(
                code(f"AND_RM{size}_{imm_code(size)}"),
                MemoryOperand(Register.ESP),
                STATUS | DF,
            )
        )
        if a.chance(4):
            a.emit(Instruction.create_reg(code(f"POP_R{size}"), a.wreg(size)))
        return
    if op in ("POPF", "POPFW"):
        flags = (a.val() & (STATUS | DF)) | 2
        if op == "POPF":
            a.emit(Instruction.create_u32(code("PUSHD_IMM32"), flags))
            a.emit(Instruction.create(code("POPFD")))
        else:
            a.emit(Instruction.create_u32(code("PUSH_IMM16"), flags))
            a.emit(Instruction.create(code("POPFW")))
        return
    a.emit(Instruction.create(code(op)))


def item_stack(a: Asm) -> None:
    op = a.pick(
        [
            "push_r",
            "push_r16",
            "push_imm",
            "push_imm8",
            "push_imm16",
            "push_m",
            "pop_r",
            "pop_r16",
            "pop_m",
            "push_m16",
            "pop_m16",
            "pusha",
            "popa",
            "pushaw",
            "popaw",
        ]
    )
    if op == "push_r":
        a.emit(Instruction.create_reg(code("PUSH_R32"), a.rreg(32)))
    elif op == "push_r16":
        a.emit(Instruction.create_reg(code("PUSH_R16"), a.rreg(16)))
    elif op == "push_imm":
        a.emit(Instruction.create_u32(code("PUSHD_IMM32"), a.val()))
    elif op == "push_imm8":
        a.emit(
            Instruction.create_i32(
                code(a.pick(["PUSHD_IMM8", "PUSHW_IMM8"])), a.int(-128, 127)
            )
        )
    elif op == "push_imm16":
        a.emit(Instruction.create_u32(code("PUSH_IMM16"), a.val(16)))
    elif op in ("push_m", "push_m16"):
        size = 32 if op == "push_m" else 16
        a.emit(Instruction.create_mem(code(f"PUSH_RM{size}"), a.mem(size // 8)))
    elif op in ("pop_r", "pop_r16"):
        size = 32 if op == "pop_r" else 16
        a.emit(Instruction.create_reg(code(f"POP_R{size}"), a.wreg(size)))
    elif op in ("pop_m", "pop_m16"):
        # POP [ESP+d] computes the address after incrementing ESP.
        size = 32 if op == "pop_m" else 16
        a.emit(Instruction.create_mem(code(f"POP_RM{size}"), a.mem(size // 8)))
    elif op in ("pusha", "pushaw"):
        a.emit(Instruction.create(code("PUSHAD" if op == "pusha" else "PUSHAW")))
    elif len(a.avoid - {"esp"}) == 0:
        a.emit(Instruction.create(code("POPAD" if op == "popa" else "POPAW")))


def item_bcd(a: Asm) -> None:
    if "eax" in a.avoid:
        return
    op = a.pick(["DAA", "DAS", "AAA", "AAS", "AAM", "AAD"])
    if a.chance(4):
        a.mov_imm(Register.AX, a.val(16))
    if a.chance(3):
        flags = (a.val() & (STATUS | DF)) | 2
        a.emit(Instruction.create_u32(code("PUSHD_IMM32"), flags))
        a.emit(Instruction.create(code("POPFD")))
    if op == "AAM":
        a.emit(
            Instruction.create_u32(
                code("AAM_IMM8"), a.pick([10, 10, 16, 1, 255, a.int(1, 255)])
            )
        )
    elif op == "AAD":
        a.emit(
            Instruction.create_u32(
                code("AAD_IMM8"), a.pick([10, 10, 16, 0, 255, a.int(0, 255)])
            )
        )
    else:
        a.emit(Instruction.create(code(op)))


def item_xlat(a: Asm) -> None:
    if {"eax", "ebx"} & a.avoid:
        return
    a.mov_imm(Register.EBX, a.int(H.DATA_BASE, H.DATA_BASE + H.DATA_SIZE - 256))
    a.emit(
        Instruction.create_mem(
            code("XLAT_M8"), MemoryOperand(Register.EBX, Register.AL)
        )
    )


def item_string(a: Asm) -> None:
    if {"esi", "edi", "ecx", "eax"} & a.avoid:
        return
    op = a.pick(["MOVS", "STOS", "LODS", "CMPS", "SCAS"])
    size = a.pick([8, 16, 32])
    n_bytes = size // 8
    addr16 = a.chance(1)
    down = a.chance(3)
    rep = a.pick(
        ["none", "rep", "rep", "repne"]
        if op in ("CMPS", "SCAS")
        else ["none", "rep", "rep"]
    )
    n = a.pick([0, 1, 2, 3, a.int(0, 16), a.int(0, 64)]) if rep != "none" else 1
    a.emit(Instruction.create(code("STD" if down else "CLD")))
    span = n * n_bytes + 8

    def ptr() -> int:
        lo, hi = H.DATA_BASE + 8, H.DATA_BASE + H.DATA_SIZE - 8
        return a.int(lo + span, hi) if down else a.int(lo, hi - span)

    hi_bits = (lambda: a.val() & 0xFFFF0000) if addr16 else (lambda: 0)
    if op in ("MOVS", "LODS", "CMPS"):
        a.mov_imm(Register.ESI, hi_bits() | ptr())
    if op in ("MOVS", "STOS", "CMPS", "SCAS"):
        if op == "CMPS" and a.chance(3):  # compare against a nearby, similar region
            a.mov_imm(Register.EDI, hi_bits() | ptr())
        else:
            a.mov_imm(Register.EDI, hi_bits() | ptr())
    if rep != "none":
        a.mov_imm(Register.ECX, (hi_bits() if addr16 else 0) | n)
    if op in ("STOS", "SCAS") and a.chance(4):
        a.mov_imm(Register.EAX, a.val())
    asz = 16 if addr16 else 32
    rk = {
        "none": RepPrefixKind.NONE,
        "rep": RepPrefixKind.REPE,
        "repne": RepPrefixKind.REPNE,
    }[rep]
    s = SUFFIX[size].lower()
    seg = a.pick(
        [
            Register.NONE,
            Register.NONE,
            Register.NONE,
            Register.DS,
            Register.ES,
            Register.SS,
        ]
    )
    if op == "MOVS":
        ins = getattr(Instruction, f"create_movs{s}")(asz, seg, rk)
    elif op == "CMPS":
        ins = getattr(Instruction, f"create_cmps{s}")(asz, seg, rk)
    elif op == "LODS":
        ins = getattr(Instruction, f"create_lods{s}")(asz, seg, rk)
    elif op == "STOS":
        ins = getattr(Instruction, f"create_stos{s}")(asz, rk)
    else:
        ins = getattr(Instruction, f"create_scas{s}")(asz, rk)
    a.emit(ins, rep=n if rep != "none" else None)


def item_enter_leave(a: Asm) -> None:
    if "ebp" in a.avoid or a.depth > 0:
        return
    a.mov_imm(
        Register.EBP,
        a.int(H.STACK_BASE + 0x300, H.STACK_INIT + 0x400) & ~a.pick([0, 3]),
    )
    size = 32
    alloc = a.pick([0, 4, 8, a.int(0, 64)])
    level = a.pick([0, 1, 2, 3, a.int(0, 31), a.int(32, 255)])
    a.emit(
        Instruction.create_u32_u32(
            code(f"ENTER{SUFFIX[size]}_IMM16_IMM8"), alloc, level
        )
    )
    a.avoid.add("ebp")  # LEAVE restores ESP from EBP
    for _ in range(a.int(0, 3)):
        a.pick(SIMPLE_ITEMS)(a)
    a.avoid.discard("ebp")
    a.emit(Instruction.create(code(f"LEAVE{SUFFIX[size]}")))


# -- control flow -------------------------------------------------------------


def body(a: Asm, c: Asm, items, max_len: int, n_max: int = 3) -> None:
    for _ in range(a.int(0, n_max)):
        before = len(c.buf), c.undefined
        a.pick(items)(c)
        if len(c.buf) > max_len:
            del c.buf[before[0] :]
            c.undefined = before[1]
            break


def item_jcc(a: Asm) -> None:
    kind = a.pick(["jcc", "jcc", "jcc32", "jmp", "jecxz", "jcxz"])
    cc = a.pick(CCS)
    if kind.startswith("jcc"):
        a.sanitize(H.FLAG_TABLE[f"j{cc}"].read)
    size = {"jcc": 2, "jcc32": 6, "jmp": 2, "jecxz": 2, "jcxz": 3}[kind]
    c = a.child(a.ip + size)
    body(a, c, SIMPLE_ITEMS, 120)
    target = c.ip
    name = {
        "jcc": f"J{cc.upper()}_REL8_32",
        "jcc32": f"J{cc.upper()}_REL32_32",
        "jmp": "JMP_REL8_32",
        "jecxz": "JECXZ_REL8_32",
        "jcxz": "JCXZ_REL8_32",
    }[kind]
    ins = Instruction.create_branch(code(name), target)
    enc = a.encode(ins)
    assert len(enc) == size, (name, enc.hex())
    a.emit(ins)
    a.buf += c.buf
    a.undefined |= c.undefined  # the body may or may not have run


def item_loop(a: Asm) -> None:
    if "ecx" in a.avoid or a.depth > 0:
        return
    kind = a.pick(["loop", "loope", "loopne", "loopcx", "dec_jnz"])
    n = a.int(1, 4)
    a.mov_imm(Register.ECX, (a.val() & 0xFFFF0000 if kind == "loopcx" else 0) | n)
    a.sanitize(STATUS)
    start = a.ip
    c = a.child(start, extra_avoid=("ecx",))
    if kind in (
        "loope",
        "loopne",
    ):  # later iterations start after LOOPcc (see REFERENCE_QUIRKS)
        c.undefined |= H.REFERENCE_QUIRKS[kind][0]
    body(a, c, SIMPLE_ITEMS, 100)
    c.sanitize(STATUS)  # the next iteration must start with every flag defined again
    if kind == "dec_jnz":
        c.emit(Instruction.create_reg(code("DEC_R32"), Register.ECX))
        c.emit(Instruction.create_branch(code("JNE_REL8_32"), start))
    else:
        name = {
            "loop": "LOOP_REL8_32_ECX",
            "loope": "LOOPE_REL8_32_ECX",
            "loopne": "LOOPNE_REL8_32_ECX",
            "loopcx": "LOOP_REL8_32_CX",
        }[kind]
        c.emit(Instruction.create_branch(code(name), start))
    c.sanitize(STATUS)
    a.buf += c.buf
    a.undefined = c.undefined


def item_call(a: Asm) -> None:
    if a.depth > 0:
        return
    kind = a.pick(["rel", "reg", "mem"])
    nargs = a.int(0, 3)
    for _ in range(nargs):
        a.emit(Instruction.create_u32(code("PUSHD_IMM32"), a.val()))
    ret_imm = a.pick([0, 4 * nargs]) if nargs else 0
    if kind == "reg":
        r = a.wreg(32)
        call_len, setup = 2, ("reg", r)
    elif kind == "mem":
        m = a.mem(4, allow_stack=False)
        call_len, setup = (
            len(a.encode(Instruction.create_mem(code("CALL_RM32"), m))),
            ("mem", m),
        )
    else:
        call_len, setup = 5, None
    mov_len = (
        5
        if kind == "reg"
        else (
            len(
                a.encode(
                    Instruction.create_mem_u32(code("MOV_RM32_IMM32"), setup[1], 0)
                )
            )
            if kind == "mem"
            else 0
        )
    )
    call_ip = a.ip + mov_len
    jmp_ip = call_ip + call_len
    fn = jmp_ip + 5
    c = a.child(fn)
    c.protect_stack = True
    body(a, c, SIMPLE_ITEMS, 400)
    c.emit(
        Instruction.create_u32(code("RETND_IMM16"), ret_imm)
        if ret_imm
        else Instruction.create(code("RETND"))
    )
    after = c.ip
    if kind == "reg":
        a.mov_imm(setup[1], fn)
        a.emit(Instruction.create_reg(code("CALL_RM32"), setup[1]))
    elif kind == "mem":
        a.emit(Instruction.create_mem_u32(code("MOV_RM32_IMM32"), setup[1], fn))
        a.emit(Instruction.create_mem(code("CALL_RM32"), setup[1]))
    else:
        a.emit(Instruction.create_branch(code("CALL_REL32_32"), fn))
    assert a.ip == jmp_ip, (hex(a.ip), hex(jmp_ip))
    a.emit(Instruction.create_branch(code("JMP_REL32_32"), after))
    assert a.ip == fn
    a.buf += c.buf
    a.undefined = c.undefined
    if nargs and not ret_imm:
        a.emit(
            Instruction.create_reg_i32(code("ADD_RM32_IMM8"), Register.ESP, 4 * nargs)
        )


SIMPLE_ITEMS = [
    item_alu,
    item_alu,
    item_unary,
    item_test,
    item_shift,
    item_shiftd,
    item_mul,
    item_movx,
    item_lea,
    item_setcc,
    item_cmov,
    item_bitscan,
    item_bittest,
    item_xchg,
    item_convert,
    item_mov,
    item_nop,
]
ALL_ITEMS = SIMPLE_ITEMS + [
    item_div,
    item_flags,
    item_stack,
    item_bcd,
    item_xlat,
    item_string,
    item_enter_leave,
    item_jcc,
    item_loop,
    item_call,
]


# ---------------------------------------------------------------------------
# Programs
# ---------------------------------------------------------------------------


def make_memory(seed_: int) -> tuple[bytes, bytes]:
    rng = random.Random(seed_)
    data = bytearray(rng.randbytes(H.DATA_SIZE))
    # Some repeated stretches so REPE CMPS / REPNE SCAS run for a while.
    for _ in range(8):
        src, dst, n = (
            rng.randrange(0, H.DATA_SIZE - 256),
            rng.randrange(0, H.DATA_SIZE - 256),
            rng.randrange(8, 256),
        )
        data[dst : dst + n] = data[src : src + n]
        if rng.random() < 0.5:
            data[dst + rng.randrange(n)] ^= 1 << rng.randrange(8)
    for _ in range(4):
        dst, n = rng.randrange(0, H.DATA_SIZE - 256), rng.randrange(8, 256)
        data[dst : dst + n] = bytes([rng.choice([0, 0xFF, 0x55])]) * n
    stack = rng.randbytes(H.STACK_SIZE)
    return bytes(data), stack


@st.composite
def programs(
    draw,
    items=ALL_ITEMS,
    min_items: int = 1,
    max_items: int = 10,
    prologue=None,
    epilogue=None,
):
    regs = {r: draw(VAL32) for r in H.GPRS}
    regs["esp"] = H.STACK_INIT
    eflags = 0x202 | (draw(st.integers(0, 0xFFF)) & (STATUS | DF))
    mem_seed = draw(st.integers(0, 2**32 - 1))
    a = Asm(draw, H.CODE_BASE)
    if prologue:
        prologue(a)
    for _ in range(draw(st.integers(min_items, max_items))):
        draw(st.sampled_from(items))(a)
    if epilogue:
        epilogue(a)
    if (
        not a.buf
    ):  # every item declined: run/until semantics at start == end are not under test
        a.raw(b"\x90")
    data, stack = make_memory(mem_seed)
    return H.Case(code=bytes(a.buf), regs=regs, eflags=eflags, data=data, stack=stack)


# ---------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------

GROUPS = {
    "alu": [item_alu, item_alu, item_unary, item_test],
    "shift": [item_shift, item_shift, item_shiftd, item_alu],
    "muldiv": [item_mul, item_div, item_alu],
    "movx_lea": [item_movx, item_lea, item_lea],
    "xchg": [item_xchg, item_alu],
    "bits": [item_bittest, item_bitscan, item_alu],
    "cond": [item_setcc, item_cmov, item_flags, item_convert, item_alu, item_shift],
    "stack": [item_stack, item_enter_leave, item_call, item_alu, item_flags],
    "string": [item_string, item_string, item_alu],
    "bcd": [item_bcd, item_bcd, item_alu],
    "control": [item_jcc, item_loop, item_call, item_alu, item_shift],
    "xlat_mov_nop": [item_xlat, item_mov, item_nop, item_alu],
    "mixed": ALL_ITEMS,
}


@pytest.mark.parametrize("group", list(GROUPS))
@diff_test
@given(data=st.data())
def test_random_programs(factory, group, data):
    case = data.draw(programs(GROUPS[group]), label="program")
    H.check(case, factory, what=group)


@pytest.mark.parametrize("group", ["alu", "shift", "cond", "control", "stack", "mixed"])
@diff_test
@given(data=st.data())
def test_random_programs_fast_path(factory, group, data):
    """The same programs, ended by an int3 and run without a stop address: the
    interpreter then runs whole blocks in its fast loop, with fused
    flag-setter-and-branch pairs and links from block to block, none of which
    the instruction-exact runs above exercise."""
    case = data.draw(programs(GROUPS[group]), label="program")
    case = dataclasses.replace(case, code=case.code + b"\xcc")
    H.check(case, factory, what=f"{group}, fast path", expect=("interrupt", 3), no_until=True)


# -- exceptions and interrupts ------------------------------------------------


def _int_epilogue(a: Asm) -> None:
    kind = a.pick(["int", "int", "int3", "into", "into_taken"])
    if kind == "int":
        a.emit(
            Instruction.create_u32(
                code("INT_IMM8"),
                a.pick([0x80, 0x21, 3, 4, 0, 13, 14, 255, a.int(0, 255)]),
            )
        )
    elif kind == "int3":
        a.emit(Instruction.create(code("INT3")))
    else:
        if kind == "into_taken":  # OF = 1
            a.emit(Instruction.create_u32(code("PUSHD_IMM32"), OF | 2))
            a.emit(Instruction.create(code("POPFD")))
        a.emit(Instruction.create(code("INTO")))
    for _ in range(a.int(0, 2)):
        a.pick(SIMPLE_ITEMS)(a)


@diff_test
@given(data=st.data())
def test_software_interrupts(factory, data):
    """INT n / INT3 / INTO stop the run with kind "interrupt", the vector, and EIP
    just past the instruction (INTO with OF=0 falls through)."""
    case = data.draw(
        programs(SIMPLE_ITEMS, 0, 4, epilogue=_int_epilogue), label="program"
    )
    ref = H.check(case, factory, what="software interrupt", expect=None)
    got = H.run_case(factory, case)
    ins = H.disasm(case.code, case.code_base)
    if ref.exit[0] == "interrupt":
        ((addr, b, t),) = [x for x in ins if x[2].startswith(("int", "into"))][-1:]
        assert got.regs["eip"] == addr + len(b), (
            f"EIP after `{t}` should be {addr + len(b):#x}"
        )


def _de_epilogue(a: Asm) -> None:
    which = a.pick(["div0", "idiv0", "div_ovf", "idiv_ovf", "idiv_min", "aam0"])
    size = a.pick([8, 16, 32])
    if which == "idiv_min" and size == 32:
        size = (
            16  # unicorn dies of SIGFPE on it: see test_idiv_most_negative_by_minus_one
        )
    lim = 1 << size
    if which == "aam0":
        a.emit(Instruction.create_u32(code("AAM_IMM8"), 0))
        a.notes.append("#DE expected at AAM 0")
        a.raw(b"\x90")  # never reached
        return
    op = "IDIV" if which.startswith("idiv") else "DIV"
    if which.endswith("0"):
        n, d = a.val(2 * size) if size < 32 else (a.val() | a.val() << 32), 0
    elif which == "div_ovf":  # quotient >= 2**size
        d = a.int(1, lim - 1)
        n = d * a.int(lim, lim + 5) + a.int(0, d - 1)
        n = min(n, lim * lim - 1)
    elif which == "idiv_min":  # most negative dividend / -1
        n, d = 1 << (2 * size - 1), lim - 1
    else:  # positive signed quotient 2**(size-1) does not fit
        n, d = lim // 2, 1
    dividend_regs = ("eax",) if size == 8 else ("eax", "edx")
    if a.chance(4):
        src = a.wreg(size, extra_avoid=dividend_regs)
        a.mov_imm(src, d)
        kind = "reg"
    else:
        src = a.mem(size // 8, extra_avoid=dividend_regs)
        a.emit(
            Instruction.create_mem_u32(code(f"MOV_RM{size}_{imm_code(size)}"), src, d)
        )
        kind = "mem"
    if size == 8:
        a.mov_imm(Register.AX, n & 0xFFFF)
    elif size == 16:
        a.mov_imm(Register.AX, n & 0xFFFF)
        a.mov_imm(Register.DX, (n >> 16) & 0xFFFF)
    else:
        a.mov_imm(Register.EAX, n & 0xFFFFFFFF)
        a.mov_imm(Register.EDX, (n >> 32) & 0xFFFFFFFF)
    a.emit(mk(f"{op}_RM{size}", kind, src))
    a.notes.append(f"#DE expected at the final {op}")
    a.raw(b"\x90")  # never reached


@diff_test
@given(data=st.data())
def test_divide_error(factory, data):
    """#DE (vector 0) on divide by zero / quotient overflow / AAM 0, with EIP at
    the faulting instruction and its destination registers untouched."""
    case = data.draw(
        programs(SIMPLE_ITEMS, 0, 4, epilogue=_de_epilogue), label="program"
    )
    ref = H.check(case, factory, what="divide error", expect=("exception", 0))
    assert ref.exit[:2] == ("exception", 0), f"reference did not fault: {ref.exit}"
    got = H.run_case(factory, case)
    last = H.disasm(case.code, case.code_base)[-2]
    assert got.regs["eip"] == last[0], f"EIP should point at `{last[2]}` ({last[0]:#x})"


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("divisor_in", ["ecx", "mem"])
def test_idiv_most_negative_by_minus_one(factory, divisor_in):
    """IDIV EDX:EAX = -2**63 by -1: quotient overflow, #DE at the IDIV, nothing
    written.  Checked against the SDM only: unicorn 2.1 computes it with a host
    64-bit division and the whole process dies of SIGFPE."""
    if H.backend_name() == "unicorn":
        pytest.skip("self-test: this kills unicorn (and the test process) with SIGFPE")
    div = (
        "f7f9" if divisor_in == "ecx" else "f73d00500000"
    )  # idiv ecx / idiv dword [0x5000]
    code_ = bytes.fromhex(
        "b800000000ba00000080b9ffffffffc70500500000ffffffff" + div + "90"
    )
    regs = {r: 0x11111111 for r in H.GPRS}
    regs["esp"] = H.STACK_INIT
    case = H.Case(code=code_, regs=regs, eflags=0x202)
    got = H.run_case(factory, case)
    assert not got.crash, got.crash
    div_eip = H.CODE_BASE + 25  # after the four set-up instructions
    assert got.exit[:2] == ("exception", 0), f"expected #DE, got {got.exit}"
    assert got.regs["eip"] == div_eip
    assert (got.regs["eax"], got.regs["edx"], got.regs["ecx"]) == (
        0,
        0x80000000,
        0xFFFFFFFF,
    )


# -- faults in the middle of a program ---------------------------------------------


def item_fault_access(a: Asm) -> None:
    """One memory-touching instruction whose operand is unmapped (see Asm.fault)."""
    a.fault = True
    kind = a.pick(
        [
            "alu",
            "alu",
            "unary",
            "shift",
            "shiftd",
            "mul",
            "div",
            "movx",
            "mov",
            "xchg",
            "bittest",
            "bitscan",
            "setcc",
            "cmov",
            "push",
            "pop",
            "call",
            "jmp",
            "string",
            "enter",
            "ret",
        ]
    )
    size = a.pick([8, 16, 32])
    w = size if size != 8 else 16  # forms without an 8-bit variant

    def m(n: int = size) -> MemoryOperand:
        return a.mem(n // 8, extra_avoid=("eax", "edx"))

    op = a.pick(["ADD", "ADC", "SUB", "SBB", "AND", "OR", "XOR", "CMP"])
    if kind == "alu":
        form = a.pick(["rm_r", "r_rm", "rm_imm"])
        if form == "rm_r":
            ins = mk(f"{op}_RM{size}_R{size}", "mem", m(), reg(a.rreg(size)))
        elif form == "r_rm":
            ins = Instruction.create_reg_mem(
                code(f"{op}_R{size}_RM{size}"), a.rreg(size), m()
            )
        else:
            ins = mk(f"{op}_RM{size}_{imm_code(size)}", "mem", m(), a.val(size))
        maybe_lock(a, ins, "mem", op != "CMP" and form != "r_rm")
        a.emit(ins)
    elif kind == "unary":
        a.emit(mk(f"{a.pick(['INC', 'DEC', 'NEG', 'NOT'])}_RM{size}", "mem", m()))
    elif kind == "shift":
        a.emit(
            mk(
                f"{a.pick(['SHL', 'SAR', 'ROL', 'RCR'])}_RM{size}_IMM8",
                "mem",
                m(),
                a.int(1, 7),
            )
        )
    elif kind == "shiftd":
        a.emit(
            mk(
                f"{a.pick(['SHLD', 'SHRD'])}_RM{w}_R{w}_IMM8",
                "mem",
                m(w),
                reg(a.rreg(w)),
                a.int(1, 7),
            )
        )
    elif kind == "mul":
        a.emit(mk(f"{a.pick(['MUL', 'IMUL'])}_RM{size}", "mem", m()))
    elif kind == "div":
        a.emit(mk(f"{a.pick(['DIV', 'IDIV'])}_RM{size}", "mem", m()))
    elif kind == "movx":
        a.emit(
            Instruction.create_reg_mem(
                code(f"{a.pick(['MOVZX', 'MOVSX'])}_R32_RM{a.pick([8, 16])}"),
                a.wreg(32),
                m(8),
            )
        )
    elif kind == "mov":
        if a.chance(4):
            a.emit(mk(f"MOV_RM{size}_R{size}", "mem", m(), reg(a.rreg(size))))
        else:
            a.emit(
                Instruction.create_reg_mem(
                    code(f"MOV_R{size}_RM{size}"), a.wreg(size), m()
                )
            )
    elif kind == "xchg":
        ins = mk(
            f"{a.pick(['XCHG', 'XADD', 'CMPXCHG'])}_RM{size}_R{size}",
            "mem",
            m(),
            reg(a.wreg(size, ("eax",))),
        )
        a.emit(ins)
    elif kind == "bittest":
        a.emit(
            mk(
                f"{a.pick(['BT', 'BTS', 'BTR', 'BTC'])}_RM{w}_IMM8",
                "mem",
                m(w),
                a.int(0, 255),
            )
        )
    elif kind == "bitscan":
        a.emit(
            Instruction.create_reg_mem(
                code(f"{a.pick(['BSF', 'BSR'])}_R{w}_RM{w}"), a.wreg(w), m(w)
            ),
            src=1,
        )
    elif kind == "setcc":
        a.emit(mk(f"SET{a.pick(CCS).upper()}_RM8", "mem", m(8)))
    elif kind == "cmov":  # the load happens whether or not the condition holds
        a.emit(
            Instruction.create_reg_mem(
                code(f"CMOV{a.pick(CCS).upper()}_R{w}_RM{w}"), a.wreg(w), m(w)
            )
        )
    elif kind == "push":
        a.emit(Instruction.create_mem(code(f"PUSH_RM{w}"), m(w)))
    elif kind == "pop":  # ESP must not move when the store faults
        a.emit(Instruction.create_mem(code(f"POP_RM{w}"), m(w)))
    elif kind in ("call", "jmp"):
        a.emit(Instruction.create_mem(code(f"{kind.upper()}_RM32"), m(32)))
    elif kind == "string":
        op = a.pick(["MOVS", "STOS", "LODS", "CMPS", "SCAS"])
        s_ = SUFFIX[size].lower()
        n = a.int(1, 5)
        good = a.int(H.DATA_BASE + 64, H.DATA_BASE + 0x1000)
        bad_src = a.chance(4)
        a.emit(Instruction.create(code("CLD")))
        a.mov_imm(
            Register.ESI, a.unmapped_address(32) if bad_src or op == "LODS" else good
        )
        a.mov_imm(
            Register.EDI,
            a.unmapped_address(32)
            if not bad_src or op in ("STOS", "SCAS")
            else good + 0x800,
        )
        a.mov_imm(Register.ECX, n)
        rk = RepPrefixKind.REPE if a.chance(5) else RepPrefixKind.NONE
        if op in ("MOVS", "CMPS", "LODS"):
            ins = getattr(Instruction, f"create_{op.lower()}{s_}")(
                32, Register.NONE, rk
            )
        else:
            ins = getattr(Instruction, f"create_{op.lower()}{s_}")(32, rk)
        a.emit(ins, rep=n if rk != RepPrefixKind.NONE else None)
    elif kind == "enter":  # nesting level >= 2 reads through an unmapped EBP
        a.mov_imm(Register.EBP, a.unmapped_address(32) + 28)
        a.emit(
            Instruction.create_u32_u32(
                code("ENTERD_IMM16_IMM8"), a.int(0, 16), a.int(2, 6)
            )
        )
    else:  # ret with ESP pointing at unmapped memory
        a.mov_imm(Register.ESP, a.unmapped_address(4) & ~3)
        a.emit(Instruction.create(code("RETND")))
    a.fault = False


def _fault_epilogue(a: Asm) -> None:
    item_fault_access(a)
    for _ in range(a.int(0, 2)):  # never reached
        a.pick(SIMPLE_ITEMS)(a)


@diff_test
@given(data=st.data())
def test_memory_fault(factory, data):
    """A #PF (vector 14) part-way through a program: same fault address, EIP at the
    faulting instruction, and no architectural effect of that instruction (no
    partial writes, ESP not moved by a faulting PUSH/POP/CALL/RET/ENTER, string
    registers as of the faulting iteration)."""
    if H.backend_name() == "unicorn":
        pytest.skip(
            "self-test: unicorn's own EFLAGS after a fault are unreliable (see run_reference)"
        )
    case = data.draw(
        programs(SIMPLE_ITEMS, 0, 4, epilogue=_fault_epilogue), label="program"
    )
    H.check(case, factory, what="memory fault", expect=("exception", 14))


# -- single-stepping with count= -----------------------------------------------------


@pytest.mark.timeout(TIMEOUT)
@settings(SETTINGS, max_examples=max(10, EXAMPLES // 5))
@given(data=st.data())
def test_count_stepping(factory, data):
    """run(count=k) stops after k instructions (kind "count") in the same state as
    unicorn does, for every k along a straight-line program."""
    items = [i for i in SIMPLE_ITEMS] + [item_flags, item_bcd, item_xlat]
    case = data.draw(programs(items, 1, 6), label="program")
    n = len(H.disasm(case.code, case.code_base))
    for k in range(1, n + 1):
        ref = H.run_reference(case, count=k, no_until=True)
        got = H.run_case(factory, case, count=k, no_until=True)
        diffs = H.compare(ref, got, flag_mask=H.COMPARED_FLAGS & ~ref.flags_undefined)
        assert not diffs, (
            f"after count={k}:\n" + "\n".join(diffs) + "\n" + case.describe()
        )


# -- privileged instructions at ring 3 -----------------------------------------

PRIVILEGED = {
    "cli": "fa",
    "sti": "fb",
    "in al,dx": "ec",
    "in eax,0x60": "e560",
    "out dx,al": "ee",
    "out 0x80,eax": "e780",
    "insb": "6c",
    "outsd": "6f",
    "lgdt [abs]": "0f0115" + (H.DATA_BASE + 0x100).to_bytes(4, "little").hex(),
    "lidt [abs]": "0f011d" + (H.DATA_BASE + 0x100).to_bytes(4, "little").hex(),
    "lldt ax": "0f00d0",
    "ltr ax": "0f00d8",
    "lmsw ax": "0f01f0",
    "invlpg [abs]": "0f013d" + (H.DATA_BASE + 0x100).to_bytes(4, "little").hex(),
    "mov cr0,eax": "0f22c0",
    "mov eax,cr0": "0f20c0",
    "mov cr3,eax": "0f22d8",
    "mov eax,cr4": "0f20e0",
    "mov dr7,eax": "0f23f8",
    "mov eax,dr6": "0f21f0",
    "clts": "0f06",
    "invd": "0f08",
    "wbinvd": "0f09",
    "wrmsr": "0f30",
    "rdmsr": "0f32",
    "rdpmc": "0f33",
}
# unicorn routes port I/O to hooks without the CPL/IOPL check: at ring 3 these
# execute there, while silicon (and the SDM) raise #GP(0).
UNICORN_NO_IOPL_CHECK = {
    "in al,dx",
    "in eax,0x60",
    "out dx,al",
    "out 0x80,eax",
    "insb",
    "outsd",
}
# unicorn raises #UD for RDPMC at ring 3; silicon with CR4.PCE=0 raises #GP(0).
UNICORN_DIFFERS = UNICORN_NO_IOPL_CHECK | {"rdpmc"}


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("name", list(PRIVILEGED))
def test_privileged_instruction_gp(factory, name):
    """Privileged instructions at ring 3 (IOPL 0): #GP with error code 0, EIP at the
    instruction, nothing changed (SDM vol. 2 and 3, 'Protected Mode Exceptions')."""
    if H.backend_name() == "unicorn" and name in UNICORN_DIFFERS:
        pytest.skip("self-test: unicorn does not model this (see UNICORN_DIFFERS)")
    body = bytes.fromhex(PRIVILEGED[name])
    prologue = bytes.fromhex(
        "b844332211ba78560000bf00500000be00500000b902000000"
    )  # mov eax/edx/edi/esi/ecx
    code_ = prologue + body + b"\x90"
    regs = {r: 0x1000 * (i + 1) for i, r in enumerate(H.GPRS)}
    regs["esp"] = H.STACK_INIT
    data, stack = make_memory(1)
    case = H.Case(code=code_, regs=regs, eflags=0x202 | CF | ZF, data=data, stack=stack)
    fault_eip = H.CODE_BASE + len(prologue)
    got = H.run_case(factory, case)
    assert not got.crash, got.crash
    detail = (
        f"`{name}` ({body.hex()}) at ring 3: exit {got.exit}, eip {got.regs['eip']:#x}"
    )
    assert got.exit[:2] == ("exception", 13), detail + ": expected #GP (vector 13)"
    assert got.regs["eip"] == fault_eip, detail + f": EIP should be {fault_eip:#x}"
    if H.backend_name() != "unicorn":  # unicorn does not report error codes
        assert got.exit[2] == 0, detail + ": #GP error code should be 0"
    if name in UNICORN_DIFFERS:
        return  # compared against the SDM only (see above)
    ref = H.run_reference(case)
    diffs = H.compare(ref, got, flag_mask=H.COMPARED_FLAGS)
    assert not diffs, detail + "\n" + case.describe() + "\n  " + "\n  ".join(diffs)


@pytest.mark.timeout(TIMEOUT)
def test_hlt_stops_the_bare_cpu():
    """HLT is the one deliberate departure from ring-3 semantics on the bare CPU.

    Silicon (and unicorn at ring 3) raise #GP(0) for HLT above ring 0.  The
    bare-CPU API promises a ``"hlt"`` exit (issue 3: exit kinds interrupt,
    exception, hlt, count, address) so that test programs and embedders have
    a way to stop: lguest's bare CPU therefore reports HLT as a stop, with
    EIP past the instruction (as a halted processor's would be).  Guests run
    by the lguest host still get #GP for HLT at ring 1 and 3 (rust
    host_tests: general_protection_is_reflected_with_a_frame).
    """
    if H.backend_name() == "unicorn":
        pytest.skip("lguest's bare-CPU convention; unicorn at ring 3 raises #GP")
    cpu = lguest_core.Cpu()
    cpu.mem_map(H.CODE_BASE, 0x1000)
    cpu.mem_write(H.CODE_BASE, b"\x90\xf4\x90")
    ex = cpu.run(start=H.CODE_BASE)
    assert ex.kind == "hlt", ex
    assert cpu.reg_read("eip") == H.CODE_BASE + 2


def test_hlt_on_unicorn_is_gp():
    """Documents the reference: unicorn (driven at ring 3 by UnicornCpu) raises #GP for HLT."""
    cpu = H.UnicornCpu()
    cpu.mem_map(H.CODE_BASE, 0x1000)
    cpu.mem_write(H.CODE_BASE, b"\x90\xf4")
    ex = cpu.run(start=H.CODE_BASE, until=H.CODE_BASE + 2)
    assert (ex.kind, ex.vector) == ("exception", 13)
    assert cpu.reg_read("eip") == H.CODE_BASE + 1


@pytest.mark.timeout(TIMEOUT)
def test_popf_cannot_change_if_or_iopl_at_ring3(factory):
    """POPF at CPL 3 with IOPL 0 silently keeps IF and IOPL (no fault)."""
    # pushfd; pop ebx; push 0x3002 (IF=0, IOPL=3); popfd; pushfd; pop eax;
    # push 0x202|0x3000 ; popfd ; pushfd ; pop edx
    code_ = bytes.fromhex("9c5b68023000009d9c5868023200009d9c5a")
    regs = {r: 0 for r in H.GPRS}
    regs["esp"] = H.STACK_INIT
    case = H.Case(code=code_, regs=regs, eflags=0x202)
    got = H.run_case(factory, case)
    assert got.exit[0] == "address", got.exit
    before, after1, after2 = got.regs["ebx"], got.regs["eax"], got.regs["edx"]
    assert before & H.IF, f"initial EFLAGS should have IF: {before:#x}"
    for v in (after1, after2):
        assert v & (H.IF | 0x3000) == before & (H.IF | 0x3000), (
            f"POPF changed IF/IOPL at ring 3: {before:#x} -> {v:#x}"
        )


INVALID = {
    "ud2": "0f0b",
    "ud1": "0fb9c0",
    "ud0": "0fff00",
    "lock nop": "f090",
    "lock add eax,ebx": "f001d8",
    "lea eax,eax": "8dc0",
    "mov cs,eax": "8ec8",
    "swapgs (64-bit only)": "0f01f8",
}


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_opcode_ud(factory, name):
    """Undefined encodings raise #UD (vector 6) with EIP at the instruction."""
    body = bytes.fromhex(INVALID[name])
    code_ = bytes.fromhex("b844332211") + body + b"\x90"
    regs = {r: H.DATA_BASE + 0x100 for r in H.GPRS}
    regs["esp"] = H.STACK_INIT
    case = H.Case(code=code_, regs=regs, eflags=0x202)
    got = H.run_case(factory, case)
    assert not got.crash, got.crash
    assert got.exit[:2] == ("exception", 6), (
        f"`{name}` ({body.hex()}): expected #UD, got {got.exit}"
    )
    assert got.regs["eip"] == H.CODE_BASE + 5
    ref = H.run_reference(case)
    diffs = H.compare(ref, got, flag_mask=H.COMPARED_FLAGS)
    assert not diffs, "\n".join(diffs)


# -- faults on unmapped memory -------------------------------------------------

PF_CASES = {
    # name: (code, expected fault address)
    "read": ("8b0500000050", 0x50000000),  # mov eax,[0x50000000]
    "write": ("c70500000050efbeadde", 0x50000000),
    "null_read": ("8a00", 0),  # mov al,[eax] (eax=0)
    "push_below_stack": (
        ("bc0090000050"),
        H.STACK_BASE - 4,
    ),  # mov esp,0x9000; push eax
    "fetch": (
        "e9"
        + (0x60000000 - (H.CODE_BASE + 5)).to_bytes(4, "little", signed=True).hex(),
        0x60000000,
    ),
    "rep_movs_into_hole": (("be00400000bf00780000b900100000fcf3a5"), 0x8000),
}


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("name", list(PF_CASES))
def test_unmapped_access_page_fault(factory, name):
    """Touching unmapped memory is #PF (vector 14) reporting the linear address,
    EIP at the faulting instruction (the branch target for a fetch)."""
    hexcode, addr = PF_CASES[name]
    regs = {r: 0 for r in H.GPRS}
    regs["esp"] = H.STACK_INIT
    case = H.Case(code=bytes.fromhex(hexcode), regs=regs, eflags=0x202)
    got = H.run_case(factory, case)
    ref = H.run_reference(case)
    assert ref.exit[1] == 14 and ref.exit[3] == addr, f"reference: {ref.exit}"
    if (
        H.backend_name() != "unicorn"
        and got.exit[:2] == ("exception", 14)
        and got.exit[2] is not None
    ):
        # error code as for a not-present page at CPL 3: U/S=1, W/R = write access
        write = name in ("write", "push_below_stack", "rep_movs_into_hole")
        assert got.exit[2] & 0b111 == (0b110 if write else 0b100), (
            f"#PF error code {got.exit[2]:#x}"
        )
    diffs = H.compare(ref, got, flag_mask=H.COMPARED_FLAGS)
    assert not diffs, (
        f"{name}:\n{case.describe()}\n  exit expected {ref.exit} got {got.exit}\n  "
        + "\n  ".join(diffs)
    )


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("size", [2, 4])
def test_page_straddling_write_faults_without_partial_write(factory, size):
    """A write straddling into an unmapped page faults with the address of the
    first unmapped byte (like CR2 on silicon) and writes nothing.  (unicorn reports
    the start of the access instead, so this is checked against the SDM only.)"""
    if H.backend_name() == "unicorn":
        pytest.skip(
            "self-test: unicorn writes the mapped part and reports another address"
        )
    end = H.DATA_BASE + H.DATA_SIZE  # 0x8000; 0x8000-0x8fff is unmapped
    start = end - size // 2
    mov = (
        ("66c705" + start.to_bytes(4, "little").hex() + "3412")
        if size == 2
        else ("c705" + start.to_bytes(4, "little").hex() + "78563412")
    )
    regs = {r: 0 for r in H.GPRS}
    regs["esp"] = H.STACK_INIT
    data = bytes(H.DATA_SIZE)
    case = H.Case(code=bytes.fromhex(mov), regs=regs, eflags=0x202, data=data)
    got = H.run_case(factory, case)
    assert not got.crash, got.crash
    assert got.exit[:2] == ("exception", 14), got.exit
    assert got.exit[3] == end, (
        f"fault address {got.exit[3]!r}, expected first unmapped byte {end:#x}"
    )
    assert got.regs["eip"] == H.CODE_BASE
    assert got.mem[H.DATA_BASE] == data, (
        "a faulting write must not be partially performed"
    )


# -- the harness itself ----------------------------------------------------------

_RB = {"OF": OF, "SF": H.SF, "ZF": ZF, "AF": AF, "CF": CF, "PF": H.PF, "DF": DF}


def _iced_flags(v: int) -> int:
    from iced_x86 import RflagsBits

    return sum(bit for name, bit in _RB.items() if v & getattr(RflagsBits, name))


@pytest.mark.parametrize(
    "hexcode",
    [
        "01d8",
        "11d8",
        "29d8",
        "19d8",
        "39d8",
        "f7d8",
        "0fb1d8",
        "0fc1d8",
        "40",
        "48",
        "21d8",
        "09d8",
        "31d8",
        "85d8",
        "f7d0",
        "f7e3",
        "f7eb",
        "0fafc3",
        "6bc305",
        "f7f3",
        "f7fb",
        "d1e0",
        "c1e005",
        "d1e8",
        "c1f805",
        "d1c0",
        "c1c805",
        "d1d0",
        "c1d805",
        "0fa4d801",
        "0fa4d805",
        "0facd805",
        "0fa3d8",
        "0fabd8",
        "0fb3d8",
        "0fbbd8",
        "0fbae005",
        "0fbcc3",
        "0fbdc3",
        "27",
        "2f",
        "37",
        "3f",
        "d40a",
        "d50a",
        "9e",
        "9f",
        "9c",
        "9d",
        "f8",
        "f9",
        "f5",
        "fc",
        "fd",
        "a6",
        "ae",
        "a4",
        "aa",
        "ac",
        "0f94c0",
        "0f4cc3",
        "7400",
        "e2fe",
        "e1fe",
        "e0fe",
        "e3fe",
        "ce",
        "cd80",
        "cc",
        "0fc70e",
        "8d0424",
        "87d8",
        "0fc8",
        "50",
        "58",
        "60",
        "61",
        "c8100000",
        "c9",
        "e800000000",
        "c3",
        "98",
        "99",
        "d7",
        "f4",
        "fa",
    ],
)
def test_flag_table_agrees_with_iced(hexcode):
    """Cross-check FLAG_TABLE with iced-x86's independent per-instruction flag info
    (for count-dependent rules, evaluated at the count in the encoding)."""
    ins = H.decode_one(bytes.fromhex(hexcode), 0)
    eff = H.flag_effect(ins, _Ctx(ins, src_value=1))
    undefined = _iced_flags(ins.rflags_undefined) & STATUS
    defined = (
        _iced_flags(
            ins.rflags_written
            | ins.rflags_cleared
            | ins.rflags_set
            | ins.rflags_modified
        )
        & ~undefined
        & (STATUS | DF)
    )
    read = _iced_flags(ins.rflags_read) & STATUS
    mine = (eff.read & STATUS, eff.defined, eff.undefined)
    assert mine == (read, defined, undefined), (
        f"{H.fmt_insn(ins)}: table read={H.flag_str(mine[0])} defined={H.flag_str(mine[1])} undefined={H.flag_str(mine[2])};"
        f" iced read={H.flag_str(read)} defined={H.flag_str(defined)} undefined={H.flag_str(undefined)}"
    )


@pytest.mark.timeout(TIMEOUT)
@settings(
    max_examples=min(EXAMPLES, 25),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_harness_selftest_unicorn_vs_unicorn(data):
    """The harness against itself: UnicornCpu must agree with the traced reference."""
    case = data.draw(programs(ALL_ITEMS), label="program")
    H.check(case, H.UnicornCpu, what="self-test")


def test_harness_detects_a_wrong_result():
    """A CPU that gets one flag wrong must be caught, with a located divergence."""

    class WrongCF(H.UnicornCpu):
        def reg_read(self, name):
            v = super().reg_read(name)
            return v ^ CF if name == "eflags" else v

    case = H.Case(
        code=bytes.fromhex("01d8f7e3"),
        regs={"eax": 0x80000000, "ebx": 0x80000000, "esp": H.STACK_INIT},
    )
    with pytest.raises(AssertionError, match="differ in CF"):
        H.check(case, WrongCF)

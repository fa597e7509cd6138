"""Differential test harness for the i386 interpreter (``lguest._core.Cpu``).

The same code runs on two CPUs with identical memory maps and registers:

* the *reference*, unicorn (QEMU's TCG) driven through :class:`UnicornCpu`, an adapter
  that mirrors the ``Cpu`` API of ``python/lguest/_core.pyi`` (ring 3, flat segments,
  paging off) and records every executed instruction, and
* the CPU under test, ``lguest._core.Cpu`` (or, for self-testing the harness,
  another :class:`UnicornCpu`; set ``LGUEST_DIFF_BACKEND=unicorn``).

After the run the harness compares the exit (kind/vector/fault address), the eight
GPRs, EIP, every mapped byte, and EFLAGS masked down to the flags whose value the
Intel SDM defines after the instructions that actually executed.  Which flags are
defined is worked out by :class:`FlagTracker` from :data:`FLAG_TABLE`, the single
table (keyed by mnemonic) of what each instruction reads, defines and leaves
undefined.  See ``docs/interpreter-testing.md``.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iced_x86 import (
    ConditionCode,
    Decoder,
    Formatter,
    FormatterSyntax,
    Instruction,
    MemorySizeExt,
    Mnemonic,
    OpKind,
    Register,
    RegisterExt,
)
from unicorn import (
    UC_ARCH_X86,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_CODE,
    UC_HOOK_INTR,
    UC_HOOK_MEM_UNMAPPED,
    UC_MEM_FETCH_UNMAPPED,
    UC_MODE_32,
    Uc,
    UcError,
)
from unicorn import x86_const as X

# ---------------------------------------------------------------------------
# EFLAGS bits
# ---------------------------------------------------------------------------

CF = 1 << 0
PF = 1 << 2
AF = 1 << 4
ZF = 1 << 6
SF = 1 << 7
TF = 1 << 8
IF = 1 << 9
DF = 1 << 10
OF = 1 << 11
#: The six arithmetic (status) flags.
STATUS = CF | PF | AF | ZF | SF | OF
#: What the harness ever compares in EFLAGS: status flags and DF.  System flags
#: (IF, IOPL, TF, AC, ID, ...) are not something user code can set at ring 3.
COMPARED_FLAGS = STATUS | DF
FLAG_NAMES = (
    (CF, "CF"),
    (PF, "PF"),
    (AF, "AF"),
    (ZF, "ZF"),
    (SF, "SF"),
    (DF, "DF"),
    (OF, "OF"),
)


def flag_str(mask: int) -> str:
    names = [n for bit, n in FLAG_NAMES if mask & bit]
    return "|".join(names) if names else "-"


GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")

# ---------------------------------------------------------------------------
# Standard memory layout of a differential test case.  Data and stack live
# below 64 KiB so that 16-bit addressing (0x67 prefix) can reach them.
# ---------------------------------------------------------------------------

PAGE = 0x1000
DATA_BASE = 0x4000
DATA_SIZE = 0x4000
STACK_BASE = 0x9000
STACK_SIZE = 0x2000
STACK_INIT = 0xA000  # initial ESP: room to push and to pop
CODE_BASE = 0x100000
CODE_MIN_SIZE = 0x2000

# unicorn's private page (GDT, ring-3 trampoline).  Tests must not map it.
SYS_BASE = 0xFFFFE000
SYS_SIZE = 0x2000
_USER_CS = 0x1B
_USER_DS = 0x23


def page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


# ---------------------------------------------------------------------------
# iced helpers
# ---------------------------------------------------------------------------

MNEMONIC_NAME: dict[int, str] = {
    getattr(Mnemonic, n): n.lower()
    for n in dir(Mnemonic)
    if n.isupper() and not n.startswith("_")
}
REGISTER_NAME: dict[int, str] = {
    getattr(Register, n): n.lower()
    for n in dir(Register)
    if n.isupper() and not n.startswith("_")
}
_CC_NAME = {
    getattr(ConditionCode, n): n.lower()
    for n in dir(ConditionCode)
    if n.isupper() and n != "NONE"
}

_FORMATTER = Formatter(FormatterSyntax.NASM)
_FORMATTER.uppercase_hex = False
_FORMATTER.hex_prefix = "0x"
_FORMATTER.hex_suffix = ""


def fmt_insn(instr: Instruction) -> str:
    return _FORMATTER.format(instr)


def decode_one(data: bytes, ip: int) -> Instruction:
    return next(iter(Decoder(32, data, ip=ip)))


def disasm(code: bytes, base: int = CODE_BASE) -> list[tuple[int, bytes, str]]:
    """Linear-sweep disassembly: (address, bytes, text) per instruction."""
    out = []
    for instr in Decoder(32, code, ip=base):
        off = instr.ip - base
        out.append((instr.ip, code[off : off + instr.len], fmt_insn(instr)))
    return out


def listing(code: bytes, base: int = CODE_BASE) -> str:
    return "\n".join(
        f"    {a:08x}  {b.hex(' '):<30} {t}" for a, b, t in disasm(code, base)
    )


def operand_bits(instr: Instruction, op: int = 0) -> int:
    kind = instr.op_kind(op)
    if kind == OpKind.REGISTER:
        return RegisterExt.size(instr.op_register(op)) * 8
    return MemorySizeExt.size(instr.memory_size) * 8


def _address_bits(instr: Instruction) -> int:
    for k in range(instr.op_count):
        kind = instr.op_kind(k)
        if kind in (OpKind.MEMORY_SEG_SI, OpKind.MEMORY_ESDI, OpKind.MEMORY_SEG_DI):
            return 16
        if kind == OpKind.MEMORY:
            for r in (instr.memory_base, instr.memory_index):
                if r != Register.NONE:
                    return RegisterExt.size(r) * 8
            return 16 if instr.memory_displ_size == 2 else 32
    return 32


# ---------------------------------------------------------------------------
# The flag table (Intel SDM vol. 2, "Flags Affected" of each instruction)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """What one executed instruction does to the status flags.

    ``read``: flags whose value changes the instruction's result;
    ``defined``: flags it writes with an architecturally defined value;
    ``undefined``: flags the SDM says are undefined afterwards;
    ``undefined_result``: set when a *register/memory result* is undefined
    (e.g. BSF of 0): a generated program must never do that.
    """

    read: int = 0
    defined: int = 0
    undefined: int = 0
    undefined_result: str | None = None


NONE = Effect()
S6 = STATUS


class InsnCtx:
    """Run-time facts a count/operand dependent rule asks for."""

    def count(self) -> int:  # raw shift/rotate count (before masking)
        raise NotImplementedError

    def rep_count(
        self,
    ) -> int | None:  # (E)CX before a rep-prefixed string op, None if no rep
        raise NotImplementedError

    def src_value(self) -> int:  # source operand value (BSF/BSR)
        raise NotImplementedError


def _shift(ins: Instruction, mn: str, ctx: InsnCtx) -> Effect:
    # SAL/SAR/SHL/SHR: count masked to 5 bits; 0 -> flags unaffected.  CF = last bit
    # out, undefined for SHL/SHR when count >= operand size; OF only for 1-bit
    # shifts; SF/ZF/PF from the result; AF undefined for a non-zero count.
    bits = operand_bits(ins)
    c = ctx.count() & 0x1F
    if c == 0:
        return NONE
    defined, undefined = SF | ZF | PF | CF, AF
    if mn in ("shl", "sal", "shr") and c >= bits:
        defined, undefined = defined & ~CF, undefined | CF
    if c == 1:
        defined |= OF
    else:
        undefined |= OF
    return Effect(defined=defined, undefined=undefined)


def _rotate(ins: Instruction, mn: str, ctx: InsnCtx) -> Effect:
    # ROL/ROR/RCL/RCR: masked count 0 -> nothing.  Else CF defined (for RCL/RCR it is
    # also read), OF defined only for a masked count of 1, otherwise undefined.
    # SF/ZF/AF/PF are never affected.
    c = ctx.count() & 0x1F
    if c == 0:
        return NONE
    read = CF if mn in ("rcl", "rcr") else 0
    if c == 1:
        return Effect(read=read, defined=CF | OF)
    return Effect(read=read, defined=CF, undefined=OF)


def _double_shift(ins: Instruction, mn: str, ctx: InsnCtx) -> Effect:
    # SHLD/SHRD: masked count 0 -> nothing; count > operand size (16-bit forms only)
    # -> destination and flags undefined; else CF/SF/ZF/PF defined, AF undefined,
    # OF defined for a 1-bit shift only.
    bits = operand_bits(ins)
    c = ctx.count() & 0x1F
    if c == 0:
        return NONE
    if c > bits:
        return Effect(
            undefined=S6, undefined_result=f"{mn} count {c} > operand size {bits}"
        )
    if c == 1:
        return Effect(defined=CF | SF | ZF | PF | OF, undefined=AF)
    return Effect(defined=CF | SF | ZF | PF, undefined=AF | OF)


def _bitscan(ins: Instruction, mn: str, ctx: InsnCtx) -> Effect:
    # BSF/BSR: ZF = (source == 0); CF, OF, SF, AF, PF undefined; destination
    # undefined when the source is 0.
    eff = Effect(defined=ZF, undefined=CF | OF | SF | AF | PF)
    if ctx.src_value() == 0:
        return dataclasses.replace(eff, undefined_result=f"{mn} with a zero source")
    return eff


def _string_cmp(ins: Instruction, mn: str, ctx: InsnCtx) -> Effect:
    # CMPS/SCAS set all six like CMP; with a REP prefix and (E)CX = 0 nothing happens.
    n = ctx.rep_count()
    if n is not None and n == 0:
        return NONE
    return Effect(defined=S6)


_CC_READS = {
    "o": OF,
    "no": OF,
    "b": CF,
    "ae": CF,
    "e": ZF,
    "ne": ZF,
    "be": CF | ZF,
    "a": CF | ZF,
    "s": SF,
    "ns": SF,
    "p": PF,
    "np": PF,
    "l": SF | OF,
    "ge": SF | OF,
    "le": ZF | SF | OF,
    "g": ZF | SF | OF,
}

Rule = Effect | Callable[[Instruction, str, InsnCtx], Effect]

#: mnemonic (iced spelling, lower case) -> flags effect.  The one place that says
#: which EFLAGS bits are comparable after an instruction.
FLAG_TABLE: dict[str, Rule] = {
    # Arithmetic: all six status flags defined.
    **{m: Effect(defined=S6) for m in ("add", "sub", "cmp", "neg", "cmpxchg", "xadd")},
    "adc": Effect(read=CF, defined=S6),
    "sbb": Effect(read=CF, defined=S6),
    # INC/DEC: CF unaffected.
    "inc": Effect(defined=OF | SF | ZF | AF | PF),
    "dec": Effect(defined=OF | SF | ZF | AF | PF),
    # Logic: OF = CF = 0, SF/ZF/PF by result, AF undefined.
    **{m: Effect(defined=S6 & ~AF, undefined=AF) for m in ("and", "or", "xor", "test")},
    "not": NONE,
    # MUL/IMUL (all forms): CF = OF = "upper half significant"; SF, ZF, AF, PF undefined.
    "mul": Effect(defined=CF | OF, undefined=SF | ZF | AF | PF),
    "imul": Effect(defined=CF | OF, undefined=SF | ZF | AF | PF),
    # DIV/IDIV: all six undefined.
    "div": Effect(undefined=S6),
    "idiv": Effect(undefined=S6),
    # Shifts and rotates: count dependent.
    "shl": _shift,
    "sal": _shift,
    "shr": _shift,
    "sar": _shift,
    "rol": _rotate,
    "ror": _rotate,
    "rcl": _rotate,
    "rcr": _rotate,
    "shld": _double_shift,
    "shrd": _double_shift,
    # Bit test: CF = selected bit; ZF unaffected; OF, SF, AF, PF undefined.
    **{
        m: Effect(defined=CF, undefined=OF | SF | AF | PF)
        for m in ("bt", "bts", "btr", "btc")
    },
    "bsf": _bitscan,
    "bsr": _bitscan,
    # BCD.
    "daa": Effect(read=AF | CF, defined=SF | ZF | AF | PF | CF, undefined=OF),
    "das": Effect(read=AF | CF, defined=SF | ZF | AF | PF | CF, undefined=OF),
    "aaa": Effect(read=AF, defined=AF | CF, undefined=OF | SF | ZF | PF),
    "aas": Effect(read=AF, defined=AF | CF, undefined=OF | SF | ZF | PF),
    "aam": Effect(defined=SF | ZF | PF, undefined=OF | AF | CF),
    "aad": Effect(defined=SF | ZF | PF, undefined=OF | AF | CF),
    # Flag transfer.  (PUSHF "reads" every status flag: they land in memory.)
    "sahf": Effect(defined=SF | ZF | AF | PF | CF),
    "lahf": Effect(read=SF | ZF | AF | PF | CF),
    "pushf": Effect(read=S6),
    "pushfd": Effect(read=S6),
    "popf": Effect(defined=S6 | DF),
    "popfd": Effect(defined=S6 | DF),
    "clc": Effect(defined=CF),
    "stc": Effect(defined=CF),
    "cmc": Effect(read=CF, defined=CF),
    "cld": Effect(defined=DF),
    "std": Effect(defined=DF),
    "salc": Effect(read=CF),
    "cmpxchg8b": Effect(defined=ZF),
    "arpl": Effect(defined=ZF),
    # String instructions.
    **{f"{m}{s}": _string_cmp for m in ("cmps", "scas") for s in "bwd"},
    **{f"{m}{s}": NONE for m in ("movs", "stos", "lods") for s in "bwd"},
    # Condition consumers.
    **{f"j{cc}": Effect(read=r) for cc, r in _CC_READS.items()},
    **{f"set{cc}": Effect(read=r) for cc, r in _CC_READS.items()},
    **{f"cmov{cc}": Effect(read=r) for cc, r in _CC_READS.items()},
    "loop": NONE,
    "loope": Effect(read=ZF),
    "loopne": Effect(read=ZF),
    "jcxz": NONE,
    "jecxz": NONE,
    "into": Effect(read=OF),
    # No flags touched.
    **{
        m: NONE
        for m in (
            "mov",
            "movzx",
            "movsx",
            "lea",
            "xchg",
            "bswap",
            "push",
            "pop",
            "pusha",
            "pushad",
            "popa",
            "popad",
            "enter",
            "leave",
            "call",
            "ret",
            "jmp",
            "cbw",
            "cwde",
            "cwd",
            "cdq",
            "nop",
            "pause",
            "xlatb",
            "int",
            "int3",
            "int1",
            "hlt",
            "ud2",
            "cpuid",
            "rdtsc",
            # privileged at ring 3: they fault before doing anything
            "cli",
            "sti",
            "in",
            "out",
            "insb",
            "insw",
            "insd",
            "outsb",
            "outsw",
            "outsd",
            "lgdt",
            "lidt",
            "lldt",
            "ltr",
            "lmsw",
            "clts",
            "invd",
            "wbinvd",
            "invlpg",
            "rdmsr",
            "wrmsr",
            "rdpmc",
            # #UD / undecodable
            "invalid",
            "ud0",
            "ud1",
            "syscall",
            "sysenter",
            "sysexit",
            "wait",
            "prefetch",
        )
    },
}


def flag_effect(instr: Instruction, ctx: InsnCtx) -> Effect:
    """Look ``instr`` up in :data:`FLAG_TABLE` (KeyError if it is not there)."""
    mn = MNEMONIC_NAME[instr.mnemonic]
    if mn == "mov" and any(
        instr.op_kind(k) == OpKind.REGISTER and RegisterExt.is_cr(instr.op_register(k))
        for k in range(instr.op_count)
    ):
        return NONE  # mov to/from CRn: #GP at ring 3
    try:
        rule = FLAG_TABLE[mn]
    except KeyError:
        raise KeyError(
            f"{mn!r} ({fmt_insn(instr)}) is not in diffharness.FLAG_TABLE"
        ) from None
    if isinstance(rule, Effect):
        return rule
    return rule(instr, mn, ctx)


def apply_effect(undefined: int, eff: Effect) -> int:
    return (undefined & ~eff.defined) | eff.undefined


#: Where the reference (unicorn 2.1) gets an SDM-defined flag wrong, checked against
#: silicon (tests/native): after the listed instruction these flags are not compared
#: (and a generated program redefines them before reading them).  Not SDM rules!
REFERENCE_QUIRKS: dict[str, tuple[int, str]] = {
    # LOOPE/LOOPNE right after an arithmetic op: unicorn leaves wrong OF/SF/AF/PF/CF
    # (ZF is right), e.g. cmp eax,1 (eax=0x4080); loope: silicon AF=1, unicorn AF=0;
    # add al,0xf (al=0x7f); loope: silicon OF|SF|AF|PF, unicorn SF|PF|CF.
    # tests/native/misc.c (tags *_loope/*_loopne) pins this down.
    "loope": (STATUS & ~ZF, "unicorn loses AF/CF across LOOPE"),
    "loopne": (STATUS & ~ZF, "unicorn loses AF/CF across LOOPNE"),
    # LOCK NEG m: unicorn leaves only CF/AF right (neg byte 7: silicon CF|PF|AF|SF,
    # unicorn CF|AF).  tests/native/lock.c, tags lock_neg*.
    "lock neg": (OF | SF | ZF | PF, "unicorn computes LOCK NEG flags wrongly"),
    # CMPXCHG8B must leave all but ZF alone; after a lazily-evaluated op unicorn
    # garbles them (add cl,cl with cl=0x80 first: silicon CF|PF|OF kept, unicorn
    # CF|PF|AF).  tests/native/lock.c, tag add_cmpxchg8b.
    "cmpxchg8b": (STATUS & ~ZF, "unicorn garbles the flags CMPXCHG8B must keep"),
}


def reference_effect(instr: Instruction, ctx: InsnCtx) -> Effect:
    """:func:`flag_effect` plus :data:`REFERENCE_QUIRKS` (flags unicorn gets wrong)."""
    eff = flag_effect(instr, ctx)
    mn = MNEMONIC_NAME[instr.mnemonic]
    quirk = REFERENCE_QUIRKS.get(f"lock {mn}" if instr.has_lock_prefix else mn)
    if quirk:
        eff = dataclasses.replace(
            eff, defined=eff.defined & ~quirk[0], undefined=eff.undefined | quirk[0]
        )
    return eff


class StaticCtx(InsnCtx):
    """Facts known when a program is *generated* (see test_diff_unicorn.py)."""

    def __init__(
        self,
        count: int | None = None,
        rep_count: int | None = None,
        src_value: int | None = None,
    ):
        self._count, self._rep, self._src = count, rep_count, src_value

    def count(self) -> int:
        if self._count is None:
            raise HarnessError("static flag tracking needs the shift count")
        return self._count

    def rep_count(self) -> int | None:
        return self._rep

    def src_value(self) -> int:
        if self._src is None:
            raise HarnessError("static flag tracking needs the source value")
        return self._src


# ---------------------------------------------------------------------------
# unicorn, dressed as lguest._core.Cpu
# ---------------------------------------------------------------------------


class HarnessError(Exception):
    """The harness or a generator did something it must not (not a CPU bug)."""


@dataclass
class UnicornExit:
    kind: str
    vector: int | None = None
    error_code: int | None = None
    address: int | None = None
    instructions: int = 0

    def __repr__(self) -> str:  # same shape as the real Exit's repr, roughly
        extra = "".join(
            f", {k}={v:#x}"
            for k, v in (
                ("vector", self.vector),
                ("error_code", self.error_code),
                ("address", self.address),
            )
            if v is not None
        )
        return f"Exit(kind={self.kind!r}{extra}, instructions={self.instructions})"


_UC_REGS: dict[str, int] = {
    n: getattr(X, f"UC_X86_REG_{n.upper()}")
    for n in [
        "eax",
        "ecx",
        "edx",
        "ebx",
        "esp",
        "ebp",
        "esi",
        "edi",
        "eip",
        "eflags",
        "ax",
        "cx",
        "dx",
        "bx",
        "sp",
        "bp",
        "si",
        "di",
        "al",
        "cl",
        "dl",
        "bl",
        "ah",
        "ch",
        "dh",
        "bh",
    ]
}
_SEGS = ("cs", "ds", "es", "fs", "gs", "ss")
_FAULT_VECTORS_WITH_CODE = {8, 10, 11, 12, 13, 14, 17}


class UnicornCpu:
    """unicorn behind the ``lguest._core.Cpu`` API (ring 3, flat segments, paging off).

    ``trace=True`` calls ``on_insn(self, address)`` before every instruction (and
    for each iteration of a REP string instruction) and counts instructions;
    without it ``Exit.instructions`` is 0.

    Differences from the real thing, all unicorn limitations:
      * ``error_code`` is always ``None`` (unicorn does not expose it);
      * IN/OUT (and INS/OUTS) at ring 3 execute instead of raising #GP(0):
        unicorn routes port I/O to hooks without the IOPL/TSS-bitmap check;
      * an unmapped access is reported as #PF (vector 14) with the address
        unicorn reports, which for a multi-byte access is its first byte.
    """

    def __init__(
        self,
        *,
        trace: bool = False,
        on_insn: Callable[[UnicornCpu, int], None] | None = None,
    ):
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self._regions: list[tuple[int, int]] = []
        self._segs = {
            "cs": _USER_CS,
            "ss": _USER_DS,
            "ds": _USER_DS,
            "es": _USER_DS,
            "fs": _USER_DS,
            "gs": _USER_DS,
        }
        self._enter_ring3()
        self._clean = self.uc.context_save()
        self.trace = trace or on_insn is not None
        self.on_insn = on_insn
        self._executed = 0
        self._last_pc: int | None = None
        self._intr: tuple[int, int, int | None] | None = (
            None  # (vector, eip in hook, last pc)
        )
        self._badmem: tuple[int, int] | None = None  # (access, address)
        self.uc.hook_add(UC_HOOK_INTR, self._hook_intr)
        self.uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._hook_unmapped)
        if self.trace:
            self.uc.hook_add(UC_HOOK_CODE, self._hook_code)

    # -- setup -------------------------------------------------------------
    def _enter_ring3(self) -> None:
        uc = self.uc
        uc.mem_map(SYS_BASE, SYS_SIZE)
        gdt = [
            0,
            0x00CF9A000000FFFF,
            0x00CF92000000FFFF,
            0x00CFFA000000FFFF,
            0x00CFF2000000FFFF,
        ]
        uc.mem_write(SYS_BASE, b"".join(struct.pack("<Q", g) for g in gdt))
        uc.reg_write(X.UC_X86_REG_GDTR, (0, SYS_BASE, len(gdt) * 8 - 1, 0))
        uc.reg_write(X.UC_X86_REG_CS, 0x08)
        uc.reg_write(X.UC_X86_REG_SS, 0x10)
        tramp, stub, frame = SYS_BASE + 0x100, SYS_BASE + 0x200, SYS_BASE + 0x1000
        uc.mem_write(tramp, b"\xcf")  # iretd
        uc.mem_write(stub, b"\x90\x90")
        uc.mem_write(
            frame,
            struct.pack("<5I", stub, _USER_CS, 0x202, SYS_BASE + 0x1800, _USER_DS),
        )
        uc.reg_write(X.UC_X86_REG_ESP, frame)
        uc.emu_start(tramp, stub)
        # unicorn does not run anything on the emu_start right after one that ended
        # at `until` on a freshly translated block; burn that one on a nop.
        uc.emu_start(stub, stub + 1)
        for r in (X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_FS, X.UC_X86_REG_GS):
            uc.reg_write(r, _USER_DS)
        assert uc.reg_read(X.UC_X86_REG_CS) == _USER_CS
        uc.reg_write(X.UC_X86_REG_EFLAGS, 0x202)
        for r in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip"):
            uc.reg_write(_UC_REGS[r], 0)
        uc.ctl_flush_tb()

    # -- memory ------------------------------------------------------------
    def mem_map(self, addr: int, size: int) -> None:
        if addr % PAGE or size % PAGE or size <= 0 or addr < 0 or addr + size > 1 << 32:
            raise ValueError(f"mem_map({addr:#x}, {size:#x}): not page aligned")
        end = addr + size
        for s, e in self._regions + [(SYS_BASE, SYS_BASE + SYS_SIZE)]:
            if addr < e and s < end:
                raise ValueError(
                    f"mem_map({addr:#x}, {size:#x}) overlaps [{s:#x}, {e:#x})"
                )
        self.uc.mem_map(addr, size)
        self._regions.append((addr, end))

    def _check(self, addr: int, n: int) -> None:
        a, end = addr, addr + n
        while a < end:
            for s, e in self._regions:
                if s <= a < e:
                    a = e
                    break
            else:
                raise ValueError(f"{a:#x} is not mapped")

    def mem_write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        self._check(addr, len(data))
        if data:
            self.uc.mem_write(addr, data)
            # unicorn keeps stale translations of rewritten code otherwise
            self.uc.ctl_remove_cache(addr & ~(PAGE - 1), page_up(addr + len(data)))

    def mem_read(self, addr: int, size: int) -> bytes:
        self._check(addr, size)
        return bytes(self.uc.mem_read(addr, size)) if size else b""

    def _readable(self, addr: int, n: int) -> bytes:
        for s, e in self._regions + [(SYS_BASE, SYS_BASE + SYS_SIZE)]:
            if s <= addr < e:
                return bytes(self.uc.mem_read(addr, min(n, e - addr)))
        return b""

    # -- registers ---------------------------------------------------------
    def reg_write(self, name: str, value: int) -> None:
        name = name.lower()
        if name in _SEGS:
            self._segs[name] = value & 0xFFFF
            return
        self.uc.reg_write(_UC_REGS[name], value & 0xFFFFFFFF)

    def reg_read(self, name: str) -> int:
        name = name.lower()
        if name in _SEGS:
            return self._segs[name]
        return self.uc.reg_read(_UC_REGS[name])

    def regs(self) -> dict[str, int]:
        return {r: self.reg_read(r) for r in GPRS + ("eip", "eflags")}

    # -- hooks -------------------------------------------------------------
    def _hook_code(self, uc: Uc, address: int, size: int, _ud: Any) -> None:
        self._executed += 1
        self._last_pc = address
        if self.on_insn is not None:
            self.on_insn(self, address)

    def _hook_intr(self, uc: Uc, intno: int, _ud: Any) -> None:
        self._intr = (intno, uc.reg_read(X.UC_X86_REG_EIP), self._last_pc)
        uc.emu_stop()

    def _hook_unmapped(
        self, uc: Uc, access: int, address: int, size: int, value: int, _ud: Any
    ) -> bool:
        self._badmem = (access, address)
        return False

    def _is_software_int(self, vector: int, eip: int, last_pc: int | None) -> bool:
        if last_pc is not None:
            ins = decode_one(self._readable(last_pc, 16), last_pc)
            return (
                ins.mnemonic
                in (Mnemonic.INT, Mnemonic.INT3, Mnemonic.INTO, Mnemonic.INT1)
                and ins.next_ip == eip
            )
        # No trace: software interrupts leave EIP after the instruction, faults at it.
        two, one = self._readable(eip - 2, 2), self._readable(eip - 1, 1)
        return (
            (two == bytes([0xCD, vector]))
            or (one == b"\xcc" and vector == 3)
            or (one == b"\xce" and vector == 4)
        )

    def _reset_exception_state(self) -> None:
        # unicorn never delivers the exception, so QEMU's "previous exception"
        # would stay set and turn the next fault into a #DF; restore a clean
        # context (registers are kept).
        regs = self.regs()
        self.uc.context_restore(self._clean)
        for r, v in regs.items():
            self.uc.reg_write(_UC_REGS[r], v)

    # -- run ---------------------------------------------------------------
    def run(
        self, start: int | None = None, count: int = 0, until: int | None = None
    ) -> UnicornExit:
        begin = self.reg_read("eip") if start is None else start
        stop = SYS_BASE + 0xFF0 if until is None else until
        self._executed, self._last_pc, self._intr, self._badmem = 0, None, None, None
        err: UcError | None = None
        try:
            self.uc.emu_start(begin, stop, count=count)
        except UcError as e:
            err = e
        n = self._executed
        if self._intr is not None:
            vector, eip, last_pc = self._intr
            if self._is_software_int(vector, eip, last_pc):
                self.uc.reg_write(X.UC_X86_REG_EIP, eip)
                return UnicornExit("interrupt", vector=vector, instructions=n)
            self.uc.reg_write(X.UC_X86_REG_EIP, eip)
            self._reset_exception_state()
            return UnicornExit("exception", vector=vector, instructions=max(n - 1, 0))
        if err is not None:
            if (
                err.errno
                in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_FETCH_UNMAPPED)
                and self._badmem
            ):
                access, address = self._badmem
                if access != UC_MEM_FETCH_UNMAPPED and self._last_pc is not None:
                    self.uc.reg_write(X.UC_X86_REG_EIP, self._last_pc)
                self._reset_exception_state()
                return UnicornExit(
                    "exception", vector=14, address=address, instructions=max(n - 1, 0)
                )
            if err.errno == UC_ERR_INSN_INVALID:
                self._reset_exception_state()
                return UnicornExit("exception", vector=6, instructions=max(n - 1, 0))
            raise err
        eip = self.reg_read("eip")
        if until is not None and eip == until:
            return UnicornExit("address", instructions=n)
        if count:
            return UnicornExit("count", instructions=n)
        raise HarnessError(
            f"unicorn stopped at {eip:#x} for no reason the adapter knows"
        )


# ---------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------


def backend_name() -> str:
    return os.environ.get("LGUEST_DIFF_BACKEND", "lguest")


def lguest_cpu_class() -> type | None:
    """``lguest._core.Cpu`` or None if the extension is not importable."""
    try:
        from lguest._core import Cpu  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Cpu


def cpu_factory() -> Callable[[], Any]:
    """The CPU under test.  Skips the calling test when lguest._core is missing
    (unless LGUEST_DIFF_BACKEND=unicorn selects the harness self-test)."""
    if backend_name() == "unicorn":
        return UnicornCpu
    cls = lguest_cpu_class()
    if cls is None:
        import pytest

        pytest.skip(
            "lguest._core is not built (set LGUEST_DIFF_BACKEND=unicorn to self-test the harness)"
        )
    return cls


# ---------------------------------------------------------------------------
# Test cases and outcomes
# ---------------------------------------------------------------------------


@dataclass
class Region:
    base: int
    size: int
    init: bytes = b""


@dataclass
class Case:
    """One program with its initial machine state, runnable on any backend."""

    code: bytes
    regs: dict[str, int]
    eflags: int = 0x202
    data: bytes = field(default=b"", repr=False)
    stack: bytes = field(default=b"", repr=False)
    code_base: int = CODE_BASE
    extra_regions: list[Region] = field(default_factory=list)
    max_insns: int = 100_000
    until: int | None = None  # default: end of code
    notes: list[str] = field(default_factory=list, repr=False)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # hypothesis/IPython printing
        p.text(repr(self))

    def __repr__(self) -> str:
        regs = ", ".join(f"{r}={self.regs.get(r, 0):#x}" for r in GPRS)
        return f"Case(code={self.code.hex()!r}, {regs}, eflags={self.eflags:#x})"

    @property
    def end(self) -> int:
        return self.code_base + len(self.code) if self.until is None else self.until

    def regions(self) -> list[Region]:
        return [
            Region(
                self.code_base,
                max(CODE_MIN_SIZE, page_up(len(self.code) + 16)),
                self.code,
            ),
            Region(DATA_BASE, DATA_SIZE, self.data),
            Region(STACK_BASE, STACK_SIZE, self.stack),
            *self.extra_regions,
        ]

    def describe(self) -> str:
        regs = " ".join(f"{r}={self.regs.get(r, 0):08x}" for r in GPRS)
        out = [
            f"  code ({len(self.code)} bytes at {self.code_base:#x}): {self.code.hex()}",
            listing(self.code, self.code_base),
            f"  initial: {regs} eflags={self.eflags:08x}",
        ]
        out += [f"  note: {n}" for n in self.notes]
        return "\n".join(out)


@dataclass
class Outcome:
    exit: tuple | None  # (kind, vector, error_code, address)
    regs: dict[str, int]
    mem: dict[int, bytes]
    crash: str | None = None
    flags_undefined: int = 0  # reference only
    undefined_by: dict[int, str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    undefined_results: list[str] = field(default_factory=list)


class _DynCtx(InsnCtx):
    def __init__(self, cpu: UnicornCpu, instr: Instruction):
        self.cpu, self.instr = cpu, instr

    def reg(self, r: int) -> int:
        return self.cpu.reg_read(REGISTER_NAME[r])

    def count(self) -> int:
        ins = self.instr
        k = ins.op_count - 1
        if ins.op_kind(k) == OpKind.REGISTER:
            return self.reg(ins.op_register(k))
        return ins.immediate(k)

    def rep_count(self) -> int | None:
        ins = self.instr
        if not (ins.has_rep_prefix or ins.has_repe_prefix or ins.has_repne_prefix):
            return None
        return self.reg(Register.CX if _address_bits(ins) == 16 else Register.ECX)

    def src_value(self) -> int:
        ins = self.instr
        if ins.op_kind(1) == OpKind.REGISTER:
            return self.reg(ins.op_register(1))
        abits = _address_bits(ins)
        ea = ins.memory_displacement
        if ins.memory_base != Register.NONE:
            ea += self.reg(ins.memory_base)
        if ins.memory_index != Register.NONE:
            ea += self.reg(ins.memory_index) * ins.memory_index_scale
        ea &= (1 << abits) - 1
        size = MemorySizeExt.size(ins.memory_size)
        data = self.cpu._readable(ea, size)
        return int.from_bytes(data, "little") if len(data) == size else 1


class FlagTracker:
    """Follows the defined/undefined state of each status flag along the executed
    instruction stream (hooked into the reference run)."""

    def __init__(self, initially_undefined: int = 0):
        self.undefined = initially_undefined
        self.undefined_by: dict[int, str] = {}
        self.violations: list[str] = []
        self.undefined_results: list[str] = []
        self._last: tuple[int, int, dict[int, str], int, int] | None = None

    def rollback_if_faulted_at(self, eip: int) -> None:
        """The instruction at ``eip`` faulted: it changed no flags after all."""
        if self._last is not None and self._last[0] == eip:
            _, self.undefined, self.undefined_by, nv, nr = self._last
            del self.violations[nv:], self.undefined_results[nr:]
            self._last = None

    def __call__(self, cpu: UnicornCpu, address: int) -> None:
        instr = decode_one(cpu._readable(address, 16), address)
        text = f"{address:08x} {fmt_insn(instr)}"
        self._last = (
            address,
            self.undefined,
            dict(self.undefined_by),
            len(self.violations),
            len(self.undefined_results),
        )
        try:
            eff = reference_effect(instr, _DynCtx(cpu, instr))
        except KeyError:
            # not in the table: compare no status flag from here on, and say so
            eff = Effect(
                undefined=STATUS,
                undefined_result=f"{MNEMONIC_NAME[instr.mnemonic]} is not in FLAG_TABLE",
            )
        if eff.read & self.undefined:
            why = ", ".join(
                f"{flag_str(b)} (left undefined by `{self.undefined_by.get(b, '?')}`)"
                for b, _ in FLAG_NAMES
                if b & eff.read & self.undefined
            )
            self.violations.append(f"`{text}` reads undefined {why}")
        if eff.undefined_result:
            self.undefined_results.append(f"`{text}`: {eff.undefined_result}")
        for b, _ in FLAG_NAMES:
            if b & eff.undefined:
                self.undefined_by[b] = text
        self.undefined = apply_effect(self.undefined, eff)


def _setup(cpu: Any, case: Case) -> None:
    for reg in case.regions():
        cpu.mem_map(reg.base, reg.size)
        if reg.init:
            cpu.mem_write(reg.base, reg.init)
    for r in GPRS:
        cpu.reg_write(r, case.regs.get(r, 0) & 0xFFFFFFFF)
    cpu.reg_write("eflags", case.eflags)


def _collect(cpu: Any, case: Case, exit: Any, crash: str | None = None) -> Outcome:
    regs = {r: cpu.reg_read(r) for r in GPRS + ("eip", "eflags")}
    mem = {reg.base: cpu.mem_read(reg.base, reg.size) for reg in case.regions()}
    ex = (
        None
        if exit is None
        else (exit.kind, exit.vector, exit.error_code, exit.address)
    )
    return Outcome(exit=ex, regs=regs, mem=mem, crash=crash)


def run_case(
    factory: Callable[[], Any],
    case: Case,
    *,
    until: int | None = None,
    start: int | None = None,
    count: int | None = None,
    no_until: bool = False,
) -> Outcome:
    """Run ``case`` on a fresh CPU from ``factory`` (no flag tracking)."""
    cpu = factory()
    _setup(cpu, case)
    try:
        exit = cpu.run(
            start=case.code_base if start is None else start,
            count=case.max_insns if count is None else count,
            until=None if no_until else case.end if until is None else until,
        )
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return _collect(cpu, case, None, crash=f"{type(e).__name__}: {e}")
    return _collect(cpu, case, exit)


def run_reference(
    case: Case,
    *,
    until: int | None = None,
    count: int | None = None,
    no_until: bool = False,
) -> Outcome:
    """Run ``case`` on unicorn, tracking which flags the SDM defines at the end."""
    tracker = FlagTracker()
    cpu = UnicornCpu(trace=True, on_insn=tracker)
    _setup(cpu, case)
    initial_eflags = cpu.reg_read("eflags")
    exit = cpu.run(
        start=case.code_base,
        count=case.max_insns if count is None else count,
        until=None if no_until else case.end if until is None else until,
    )
    pre_fault_eflags = None
    if exit.kind == "exception":
        tracker.rollback_if_faulted_at(cpu.reg_read("eip"))
        # A fault leaves EFLAGS as they were before the faulting instruction (or REP
        # iteration), but unicorn sometimes reports them wrongly after a fault (a
        # lazily-evaluated flag state restored badly: e.g. `add al,al` then a
        # faulting `bsf ax,[0]` gives CF|AF set).  Take them from a run that stops
        # just before the faulting step instead.
        if exit.instructions == 0:
            pre_fault_eflags = initial_eflags
        else:
            pre = UnicornCpu(trace=True)
            _setup(pre, case)
            pre.run(start=case.code_base, count=exit.instructions)
            pre_fault_eflags = pre.reg_read("eflags")
    out = _collect(cpu, case, exit)
    if pre_fault_eflags is not None:
        out.regs["eflags"] = pre_fault_eflags
    out.flags_undefined = tracker.undefined
    out.undefined_by = tracker.undefined_by
    out.violations = tracker.violations
    out.undefined_results = tracker.undefined_results
    return out


#: After a fault, this many bytes below ESP are not compared: that is free stack,
#: which an instruction may scribble on before faulting (unicorn's ENTER pushes EBP
#: before the frame-pointer read that faults; silicon may or may not), and which
#: no conforming program can read (a signal frame would overwrite it anyway).
FREE_STACK_SLACK = 0x200


def compare(
    ref: Outcome, got: Outcome, *, flag_mask: int, check_error_code: bool = False
) -> list[str]:
    """Differences between the reference and the CPU under test, as text lines."""
    diffs: list[str] = []
    ignore = range(0)
    if ref.exit is not None and ref.exit[0] == "exception":
        esp = ref.regs["esp"]
        ignore = range(max(esp - FREE_STACK_SLACK, 0), esp)
    if got.crash:
        return [f"CPU under test raised {got.crash}"]
    rk, gk = ref.exit, got.exit
    assert rk is not None and gk is not None
    if (rk[0], rk[1]) != (gk[0], gk[1]):
        diffs.append(
            f"exit: expected kind={rk[0]} vector={rk[1]}, got kind={gk[0]} vector={gk[1]} (error_code={gk[2]}, address={gk[3]})"
        )
    elif rk[1] == 14 and rk[3] != gk[3]:
        diffs.append(f"#PF address: expected {rk[3]:#x}, got {gk[3]!r:}")
    elif check_error_code and rk[2] is not None and rk[2] != gk[2]:
        diffs.append(f"error code: expected {rk[2]:#x}, got {gk[2]!r}")
    for r in GPRS + ("eip",):
        if ref.regs[r] != got.regs[r]:
            diffs.append(f"{r}: expected {ref.regs[r]:#010x}, got {got.regs[r]:#010x}")
    fe, fg = ref.regs["eflags"] & flag_mask, got.regs["eflags"] & flag_mask
    if fe != fg:
        diffs.append(
            f"eflags & {flag_mask:#x} ({flag_str(flag_mask)}): expected {fe:#x} ({flag_str(fe)}), got {fg:#x} ({flag_str(fg)}); differ in {flag_str(fe ^ fg)}"
            f" [full: expected {ref.regs['eflags']:#010x}, got {got.regs['eflags']:#010x}]"
        )
    for base, want in ref.mem.items():
        have = got.mem[base]
        if want != have:
            bad = [
                i
                for i in range(len(want))
                if want[i] != have[i] and base + i not in ignore
            ]
            if not bad:
                continue
            lo, hi = bad[0], bad[-1]
            shown = bad[:16]
            diffs.append(
                f"memory: {len(bad)} byte(s) differ in [{base + lo:#x}, {base + hi:#x}]: "
                + ", ".join(
                    f"[{base + i:#x}] expected {want[i]:02x} got {have[i]:02x}"
                    for i in shown
                )
                + (" ..." if len(bad) > len(shown) else "")
            )
    return diffs


def _straight_line_addresses(case: Case) -> list[int]:
    return [a for a, _, _ in disasm(case.code, case.code_base)]


def locate_divergence(factory: Callable[[], Any], case: Case) -> str | None:
    """Find the first instruction boundary where the two CPUs disagree (re-running
    both with ``until`` at each boundary of the linear disassembly)."""
    addrs = _straight_line_addresses(case)
    prev = None
    for a in addrs[1:] + [case.end]:
        ref = run_reference(case, until=a)
        got = run_case(factory, case, until=a)
        if got.crash:
            return f"the CPU under test raised {got.crash} when run up to {a:#x}"
        d = compare(ref, got, flag_mask=COMPARED_FLAGS & ~ref.flags_undefined)
        if d:
            ins = (
                [t for x, _, t in disasm(case.code, case.code_base) if x == prev]
                if prev is not None
                else []
            )
            last = (
                f" (last instruction before it: {prev:#x} `{ins[0] if ins else '?'}`)"
                if prev is not None
                else ""
            )
            return (
                f"first divergence when stopping at {a:#x}{last}:\n      "
                + "\n      ".join(d)
            )
        prev = a
    return None


def check(
    case: Case,
    factory: Callable[[], Any] | None = None,
    *,
    what: str = "",
    expect: tuple[str, int | None] | None = ("address", None),
    no_until: bool = False,
) -> Outcome:
    """Run ``case`` on unicorn and on the CPU under test; raise AssertionError with
    a full report on any difference.  Returns the reference outcome.

    ``expect``: the (kind, vector) the *reference* must stop with (default: reaching
    the end of the code); anything else means the program is not a valid test
    (HarnessError), e.g. an encoding unicorn does not implement.

    ``no_until``: run without a stop address (the program must end itself, e.g.
    with an ``int3``), so that the CPU under test takes its fast path: whole
    blocks, fused compare-and-branch pairs, links between blocks."""
    factory = factory or cpu_factory()
    ref = run_reference(case, no_until=no_until)
    if (
        expect is not None
        and ref.exit is not None
        and (ref.exit[0], ref.exit[1]) != expect
    ):
        raise HarnessError(
            f"reference (unicorn) stopped with {ref.exit}, expected {expect}: not a usable test program"
            f" (EIP {ref.regs['eip']:#x})\n" + case.describe()
        )
    if ref.violations or ref.undefined_results:
        raise HarnessError(
            "generated program depends on undefined behaviour (fix the generator):\n  "
            + "\n  ".join(ref.violations + ref.undefined_results)
            + "\n"
            + case.describe()
        )
    got = run_case(factory, case, no_until=no_until)
    mask = COMPARED_FLAGS & ~ref.flags_undefined
    diffs = compare(ref, got, flag_mask=mask)
    if diffs:
        why = ", ".join(
            f"{flag_str(b)} by `{t}`"
            for b, t in sorted(ref.undefined_by.items())
            if b & ref.flags_undefined
        )
        report = [
            f"differential mismatch{(' in ' + what) if what else ''}: CPU under test ({backend_name()}) vs unicorn",
            case.describe(),
            f"  exit: expected {ref.exit}, got {got.exit}",
            f"  flags compared: {flag_str(mask)}"
            + (f" (undefined: {why})" if why else ""),
            "  differences:",
            *("    " + d for d in diffs),
        ]
        try:
            loc = locate_divergence(factory, case)
        except Exception as e:  # noqa: BLE001 - any failure to locate is reported, not raised
            loc = f"(could not locate: {type(e).__name__}: {e})"
        if loc:
            report.append("  " + loc)
        raise AssertionError("\n".join(report))
    return ref


# ---------------------------------------------------------------------------
# Static i386 Linux ELF runner (for the silicon oracle)
# ---------------------------------------------------------------------------


@dataclass
class LinuxRun:
    stdout: bytes
    exit_status: int | None
    exit: Any
    instructions: int


def load_elf(
    cpu: Any, path: str, *, stack_top: int = 0xC0000000, stack_size: int = 0x40000
) -> int:
    """Map the PT_LOAD segments of a static i386 ELF at p_vaddr and a stack below
    ``stack_top``; set ESP (argc=0, argv/envp/auxv empty) and EIP.  Returns the entry."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        if elf["e_machine"] != "EM_386" or elf.elfclass != 32:
            raise ValueError(f"{path} is not an i386 ELF")
        segs = []
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD":
                segs.append((seg["p_vaddr"], seg["p_memsz"], seg.data()))
        entry = elf["e_entry"]
    pages: set[int] = set()
    for vaddr, memsz, _ in segs:
        pages.update(range(vaddr & ~(PAGE - 1), page_up(vaddr + memsz), PAGE))
    # map maximal runs of contiguous pages
    run_start = None
    prev = None
    for p in sorted(pages) + [None]:
        if run_start is None:
            run_start = p
        elif p is None or p != prev + PAGE:
            cpu.mem_map(run_start, prev + PAGE - run_start)
            run_start = p
        prev = p
    for vaddr, _, data in segs:
        if data:
            cpu.mem_write(vaddr, data)
    cpu.mem_map(stack_top - stack_size, stack_size)
    sp = (
        stack_top - 0x1000
    )  # room above, like the argv/envp/auxv area of a real process
    cpu.mem_write(
        sp, struct.pack("<4I", 0, 0, 0, 0)
    )  # argc, argv NULL, envp NULL, auxv AT_NULL
    for r in GPRS:
        cpu.reg_write(r, 0)
    cpu.reg_write("esp", sp)
    cpu.reg_write("eflags", 0x202)
    cpu.reg_write("eip", entry)
    return entry


def run_linux_static(
    cpu: Any, path: str, *, max_insns: int = 500_000_000, max_output: int = 1 << 26
) -> LinuxRun:
    """Run a static i386 Linux ELF that only uses write(2) and exit(2)/exit_group(2)
    via ``int $0x80``; anything else stops the run (``exit_status`` None)."""
    entry = load_elf(cpu, path)
    out = bytearray()
    total = 0
    start: int | None = entry
    while True:
        ex = cpu.run(start=start, count=max_insns)
        start = None
        total += ex.instructions
        if ex.kind != "interrupt" or ex.vector != 0x80:
            return LinuxRun(bytes(out), None, ex, total)
        nr = cpu.reg_read("eax")
        if nr == 4:  # write(fd, buf, len)
            fd, buf, n = cpu.reg_read("ebx"), cpu.reg_read("ecx"), cpu.reg_read("edx")
            if fd not in (1, 2) or len(out) + n > max_output:
                cpu.reg_write("eax", (-9) & 0xFFFFFFFF)  # EBADF
                continue
            out += cpu.mem_read(buf, n)
            cpu.reg_write("eax", n)
        elif nr in (1, 252):  # exit, exit_group
            return LinuxRun(bytes(out), cpu.reg_read("ebx") & 0xFF, ex, total)
        else:
            cpu.reg_write("eax", (-38) & 0xFFFFFFFF)  # ENOSYS


__all__ = [
    "AF",
    "CF",
    "CODE_BASE",
    "COMPARED_FLAGS",
    "DATA_BASE",
    "DATA_SIZE",
    "DF",
    "FLAG_TABLE",
    "GPRS",
    "OF",
    "PF",
    "SF",
    "STACK_BASE",
    "STACK_INIT",
    "STACK_SIZE",
    "STATUS",
    "ZF",
    "Case",
    "Effect",
    "FlagTracker",
    "HarnessError",
    "Outcome",
    "Region",
    "StaticCtx",
    "UnicornCpu",
    "apply_effect",
    "backend_name",
    "check",
    "compare",
    "cpu_factory",
    "decode_one",
    "disasm",
    "flag_effect",
    "flag_str",
    "lguest_cpu_class",
    "listing",
    "load_elf",
    "locate_divergence",
    "run_case",
    "run_linux_static",
    "run_reference",
]

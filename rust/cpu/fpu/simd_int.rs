//! Packed integer operations: MMX on 64-bit registers, SSE2 on 128-bit ones.
//
// H:770 MMX and the SSE2 integer instructions are the same operations at two
// widths: paddw on an MMX register adds four words, on an XMM register
// eight.  So each operation is written once over a u128 and a byte count,
// and the handler decides the width from the destination register.
//
// MMX registers are the significands of the x87 registers.  Every MMX
// instruction (but emms) sets TOP to 0 and tags all eight registers valid,
// and each write sets the register's exponent field to all ones, so an x87
// instruction that follows sees NaNs rather than stale numbers.  An MMX
// instruction is also a "waiting" instruction: a pending x87 exception
// fires as #MF before it.  SSE2 integer forms only check CR0.TS.
//
// A 128-bit memory operand must be 16-byte aligned (#GP(0) otherwise) except
// for the instructions whose name says "unaligned" (movdqu).

use iced_x86::{Instruction, MemorySize, Mnemonic as M, OpKind, Register};

use super::{check_nm, check_wait, mm_index, read_m128, read_mem_n, write_m128, xmm_index};
use crate::cpu::decode::{DInsn, Handler};
use crate::cpu::exec::{get_reg, mem_lin, set_reg, R};
use crate::cpu::state::{Cpu, Fault};

#[inline(always)]
pub fn is_xmm(r: Register) -> bool {
    r.is_xmm()
}

/// Read a vector register (XMM or MMX, zero-extended).
#[inline(always)]
pub fn vreg(cpu: &Cpu, r: Register) -> u128 {
    if r.is_xmm() {
        cpu.fpu.xmm[xmm_index(r)]
    } else {
        cpu.fpu.mm(mm_index(r)) as u128
    }
}

/// Write a vector register; an MMX write keeps the low 64 bits.
#[inline(always)]
pub fn set_vreg(cpu: &mut Cpu, r: Register, v: u128) {
    if r.is_xmm() {
        cpu.fpu.xmm[xmm_index(r)] = v;
    } else {
        cpu.fpu.set_mm(mm_index(r), v as u64);
    }
}

/// Operand `n` as a vector: a register, memory of the instruction's memory
/// size (aligned if 16 bytes and `aligned`), or an immediate.
#[inline(always)]
pub fn vsrc(cpu: &mut Cpu, d: &DInsn, n: u32, aligned: bool) -> Result<u128, Fault> {
    match d.i.op_kind(n) {
        OpKind::Register => {
            let r = d.i.op_register(n);
            Ok(if r.is_xmm() || r.is_mm() { vreg(cpu, r) } else { get_reg(cpu, r) as u128 })
        }
        OpKind::Memory => {
            let lin = mem_lin(cpu, d);
            read_mem_n(cpu, lin, d.i.memory_size().size(), aligned)
        }
        _ => Ok(d.i.immediate8() as u128),
    }
}

/// The checks for an instruction whose vector destination is `r`.
#[inline(always)]
pub fn pre(cpu: &mut Cpu, xmm: bool) -> R {
    if xmm {
        check_nm(cpu)
    } else {
        check_wait(cpu)
    }
}

#[inline(always)]
fn lane(v: u128, i: usize, b: usize) -> u64 {
    ((v >> (i * b * 8)) as u64) & mask(b)
}

#[inline(always)]
fn mask(b: usize) -> u64 {
    if b == 8 {
        !0
    } else {
        (1u64 << (b * 8)) - 1
    }
}

#[inline(always)]
fn sext(v: u64, b: usize) -> i64 {
    let s = 64 - 8 * b as u32;
    ((v << s) as i64) >> s
}

/// Apply `f` lane by lane (`b`-byte lanes over `n` bytes).
#[inline(always)]
fn map2(a: u128, c: u128, n: usize, b: usize, f: impl Fn(u64, u64) -> u64) -> u128 {
    let mut r = 0u128;
    for i in 0..n / b {
        r |= ((f(lane(a, i, b), lane(c, i, b)) & mask(b)) as u128) << (i * b * 8);
    }
    r
}

#[inline(always)]
fn sat_s(v: i64, b: usize) -> u64 {
    let hi = (1i64 << (8 * b - 1)) - 1;
    let lo = -(1i64 << (8 * b - 1));
    v.clamp(lo, hi) as u64
}

#[inline(always)]
fn sat_u(v: i64, b: usize) -> u64 {
    v.clamp(0, mask(b) as i64) as u64
}

// The operations.
pub const PADDB: u8 = 0;
pub const PADDW: u8 = 1;
pub const PADDD: u8 = 2;
pub const PADDQ: u8 = 3;
pub const PSUBB: u8 = 4;
pub const PSUBW: u8 = 5;
pub const PSUBD: u8 = 6;
pub const PSUBQ: u8 = 7;
pub const PADDSB: u8 = 8;
pub const PADDSW: u8 = 9;
pub const PADDUSB: u8 = 10;
pub const PADDUSW: u8 = 11;
pub const PSUBSB: u8 = 12;
pub const PSUBSW: u8 = 13;
pub const PSUBUSB: u8 = 14;
pub const PSUBUSW: u8 = 15;
pub const PMULLW: u8 = 16;
pub const PMULHW: u8 = 17;
pub const PMULHUW: u8 = 18;
pub const PMADDWD: u8 = 19;
pub const PMULUDQ: u8 = 20;
pub const PCMPEQB: u8 = 21;
pub const PCMPEQW: u8 = 22;
pub const PCMPEQD: u8 = 23;
pub const PCMPGTB: u8 = 24;
pub const PCMPGTW: u8 = 25;
pub const PCMPGTD: u8 = 26;
pub const PAND: u8 = 27;
pub const PANDN: u8 = 28;
pub const POR: u8 = 29;
pub const PXOR: u8 = 30;
pub const PSLLW: u8 = 31;
pub const PSLLD: u8 = 32;
pub const PSLLQ: u8 = 33;
pub const PSRLW: u8 = 34;
pub const PSRLD: u8 = 35;
pub const PSRLQ: u8 = 36;
pub const PSRAW: u8 = 37;
pub const PSRAD: u8 = 38;
pub const PACKSSWB: u8 = 39;
pub const PACKSSDW: u8 = 40;
pub const PACKUSWB: u8 = 41;
pub const PUNPCKLBW: u8 = 42;
pub const PUNPCKLWD: u8 = 43;
pub const PUNPCKLDQ: u8 = 44;
pub const PUNPCKLQDQ: u8 = 45;
pub const PUNPCKHBW: u8 = 46;
pub const PUNPCKHWD: u8 = 47;
pub const PUNPCKHDQ: u8 = 48;
pub const PUNPCKHQDQ: u8 = 49;
pub const PAVGB: u8 = 50;
pub const PAVGW: u8 = 51;
pub const PMINUB: u8 = 52;
pub const PMAXUB: u8 = 53;
pub const PMINSW: u8 = 54;
pub const PMAXSW: u8 = 55;
pub const PSADBW: u8 = 56;

/// One packed-integer operation over `n` bytes (8 for MMX, 16 for SSE2).
#[inline(always)]
pub fn compute<const OP: u8>(a: u128, c: u128, n: usize) -> u128 {
    let shift = |b: usize, f: &dyn Fn(u64, u32) -> u64| -> u128 {
        let cnt = c as u64;
        map2(a, 0, n, b, |x, _| if cnt >= (8 * b) as u64 { f(x, 64) } else { f(x, cnt as u32) })
    };
    match OP {
        PADDB => map2(a, c, n, 1, |x, y| x.wrapping_add(y)),
        PADDW => map2(a, c, n, 2, |x, y| x.wrapping_add(y)),
        PADDD => map2(a, c, n, 4, |x, y| x.wrapping_add(y)),
        PADDQ => map2(a, c, n, 8, |x, y| x.wrapping_add(y)),
        PSUBB => map2(a, c, n, 1, |x, y| x.wrapping_sub(y)),
        PSUBW => map2(a, c, n, 2, |x, y| x.wrapping_sub(y)),
        PSUBD => map2(a, c, n, 4, |x, y| x.wrapping_sub(y)),
        PSUBQ => map2(a, c, n, 8, |x, y| x.wrapping_sub(y)),
        PADDSB => map2(a, c, n, 1, |x, y| sat_s(sext(x, 1) + sext(y, 1), 1)),
        PADDSW => map2(a, c, n, 2, |x, y| sat_s(sext(x, 2) + sext(y, 2), 2)),
        PADDUSB => map2(a, c, n, 1, |x, y| sat_u((x + y) as i64, 1)),
        PADDUSW => map2(a, c, n, 2, |x, y| sat_u((x + y) as i64, 2)),
        PSUBSB => map2(a, c, n, 1, |x, y| sat_s(sext(x, 1) - sext(y, 1), 1)),
        PSUBSW => map2(a, c, n, 2, |x, y| sat_s(sext(x, 2) - sext(y, 2), 2)),
        PSUBUSB => map2(a, c, n, 1, |x, y| sat_u(x as i64 - y as i64, 1)),
        PSUBUSW => map2(a, c, n, 2, |x, y| sat_u(x as i64 - y as i64, 2)),
        PMULLW => map2(a, c, n, 2, |x, y| (sext(x, 2) * sext(y, 2)) as u64),
        PMULHW => map2(a, c, n, 2, |x, y| ((sext(x, 2) * sext(y, 2)) >> 16) as u64),
        PMULHUW => map2(a, c, n, 2, |x, y| (x * y) >> 16),
        PMADDWD => map2(a, c, n, 4, |x, y| {
            let p0 = sext(x & 0xffff, 2) * sext(y & 0xffff, 2);
            let p1 = sext(x >> 16, 2) * sext(y >> 16, 2);
            (p0 + p1) as u64
        }),
        PMULUDQ => map2(a, c, n, 8, |x, y| (x & 0xffff_ffff) * (y & 0xffff_ffff)),
        PCMPEQB => map2(a, c, n, 1, |x, y| if x == y { !0 } else { 0 }),
        PCMPEQW => map2(a, c, n, 2, |x, y| if x == y { !0 } else { 0 }),
        PCMPEQD => map2(a, c, n, 4, |x, y| if x == y { !0 } else { 0 }),
        PCMPGTB => map2(a, c, n, 1, |x, y| if sext(x, 1) > sext(y, 1) { !0 } else { 0 }),
        PCMPGTW => map2(a, c, n, 2, |x, y| if sext(x, 2) > sext(y, 2) { !0 } else { 0 }),
        PCMPGTD => map2(a, c, n, 4, |x, y| if sext(x, 4) > sext(y, 4) { !0 } else { 0 }),
        PAND => a & c,
        PANDN => !a & c,
        POR => a | c,
        PXOR => a ^ c,
        PSLLW => shift(2, &|x, s| if s >= 16 { 0 } else { x << s }),
        PSLLD => shift(4, &|x, s| if s >= 32 { 0 } else { x << s }),
        PSLLQ => shift(8, &|x, s| if s >= 64 { 0 } else { x << s }),
        PSRLW => shift(2, &|x, s| if s >= 16 { 0 } else { x >> s }),
        PSRLD => shift(4, &|x, s| if s >= 32 { 0 } else { x >> s }),
        PSRLQ => shift(8, &|x, s| if s >= 64 { 0 } else { x >> s }),
        PSRAW => shift(2, &|x, s| (sext(x, 2) >> s.min(15)) as u64),
        PSRAD => shift(4, &|x, s| (sext(x, 4) >> s.min(31)) as u64),
        PACKSSWB | PACKSSDW | PACKUSWB => {
            let (b, sat): (usize, fn(i64, usize) -> u64) = match OP {
                PACKSSWB => (2, sat_s),
                PACKSSDW => (4, sat_s),
                _ => (2, sat_u),
            };
            let half = n / b;
            let mut r = 0u128;
            for i in 0..2 * half {
                let src = if i < half { lane(a, i, b) } else { lane(c, i - half, b) };
                r |= ((sat(sext(src, b), b / 2) & mask(b / 2)) as u128) << (i * b * 4);
            }
            r
        }
        PUNPCKLBW | PUNPCKLWD | PUNPCKLDQ | PUNPCKLQDQ | PUNPCKHBW | PUNPCKHWD | PUNPCKHDQ | PUNPCKHQDQ => {
            let b = match OP {
                PUNPCKLBW | PUNPCKHBW => 1,
                PUNPCKLWD | PUNPCKHWD => 2,
                PUNPCKLDQ | PUNPCKHDQ => 4,
                _ => 8,
            };
            let base = if OP >= PUNPCKHBW { n / b / 2 } else { 0 };
            let mut r = 0u128;
            for k in 0..n / b / 2 {
                r |= (lane(a, base + k, b) as u128) << (2 * k * b * 8);
                r |= (lane(c, base + k, b) as u128) << ((2 * k + 1) * b * 8);
            }
            r
        }
        PAVGB => map2(a, c, n, 1, |x, y| (x + y + 1) >> 1),
        PAVGW => map2(a, c, n, 2, |x, y| (x + y + 1) >> 1),
        PMINUB => map2(a, c, n, 1, |x, y| x.min(y)),
        PMAXUB => map2(a, c, n, 1, |x, y| x.max(y)),
        PMINSW => map2(a, c, n, 2, |x, y| if sext(x, 2) < sext(y, 2) { x } else { y }),
        PMAXSW => map2(a, c, n, 2, |x, y| if sext(x, 2) > sext(y, 2) { x } else { y }),
        _ => map2(a, c, n, 8, |x, y| {
            // PSADBW
            (0..8).map(|k| ((x >> (8 * k)) & 0xff).abs_diff((y >> (8 * k)) & 0xff)).sum()
        }),
    }
}

/// dest = dest OP source, for MMX or XMM destinations.
pub fn pbin<const OP: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let dst = d.i.op0_register();
    let xmm = dst.is_xmm();
    pre(cpu, xmm)?;
    let n = if xmm { 16 } else { 8 };
    // Shift counts come from the low 64 bits of a register or memory
    // operand, or from an immediate.
    let c = vsrc(cpu, d, 1, true)?;
    let c = if (PSLLW..=PSRAD).contains(&OP) { c as u64 as u128 } else { c };
    let a = vreg(cpu, dst);
    if !xmm {
        cpu.fpu.enter_mmx();
    }
    set_vreg(cpu, dst, compute::<OP>(a, c, n));
    Ok(())
}

/// pslldq/psrldq: whole-register byte shifts.
fn pbyteshift<const LEFT: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_nm(cpu)?;
    let r = d.i.op0_register();
    let s = d.i.immediate8() as u32;
    let v = vreg(cpu, r);
    let out = if s > 15 {
        0
    } else if LEFT {
        v << (8 * s)
    } else {
        v >> (8 * s)
    };
    set_vreg(cpu, r, out);
    Ok(())
}

/// movd and movq in all their forms, movq2dq, movdq2q, movdqa/movdqu, movntq.
pub fn vmov<const ALIGNED: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    let i = &d.i;
    let (k0, k1) = (i.op0_kind(), i.op1_kind());
    let r0 = if k0 == OpKind::Register { i.op0_register() } else { Register::None };
    let r1 = if k1 == OpKind::Register { i.op1_register() } else { Register::None };
    let mmx = r0.is_mm() || r1.is_mm();
    pre(cpu, !mmx)?;
    let size = match i.mnemonic() {
        M::Movd => 4,
        M::Movq | M::Movq2dq | M::Movdq2q | M::Movntq => 8,
        _ => 16,
    };
    let v = vsrc(cpu, d, 1, ALIGNED)?;
    let v = if size == 16 { v } else { v & ((1u128 << (8 * size)) - 1) };
    match k0 {
        OpKind::Register if r0.is_xmm() || r0.is_mm() => set_vreg(cpu, r0, v),
        OpKind::Register => set_reg(cpu, r0, v as u32),
        _ => {
            let lin = mem_lin(cpu, d);
            match size {
                4 => cpu.write_u32(lin, v as u32)?,
                8 => cpu.write_u64(lin, v as u64)?,
                _ => write_m128(cpu, lin, v, ALIGNED)?,
            }
        }
    }
    if mmx {
        cpu.fpu.enter_mmx();
    }
    Ok(())
}

/// pshufw, pshufd, pshuflw, pshufhw.
fn pshuf(cpu: &mut Cpu, d: &DInsn) -> R {
    let dst = d.i.op0_register();
    pre(cpu, dst.is_xmm())?;
    let s = vsrc(cpu, d, 1, true)?;
    let imm = d.i.immediate8() as usize;
    let sel = |base: usize, b: usize, v: u128| -> u128 {
        let mut r = 0u128;
        for k in 0..4 {
            r |= (lane(v, base + ((imm >> (2 * k)) & 3), b) as u128) << ((base + k) * b * 8);
        }
        r
    };
    let out = match d.i.mnemonic() {
        M::Pshufw => sel(0, 2, s),
        M::Pshufd => sel(0, 4, s),
        M::Pshuflw => (s & !0xffff_ffff_ffff_ffffu128) | sel(0, 2, s),
        _ => (s & 0xffff_ffff_ffff_ffff) | sel(4, 2, s),
    };
    if !dst.is_xmm() {
        cpu.fpu.enter_mmx();
    }
    set_vreg(cpu, dst, out);
    Ok(())
}

/// pmovmskb: the top bit of every byte into a general register.
fn pmovmskb(cpu: &mut Cpu, d: &DInsn) -> R {
    let src = d.i.op1_register();
    pre(cpu, src.is_xmm())?;
    let v = vreg(cpu, src);
    let n = if src.is_xmm() { 16 } else { 8 };
    let m = (0..n).fold(0u32, |m, k| m | (((v >> (8 * k + 7)) & 1) as u32) << k);
    if !src.is_xmm() {
        cpu.fpu.enter_mmx();
    }
    set_reg(cpu, d.i.op0_register(), m);
    Ok(())
}

fn pextrw(cpu: &mut Cpu, d: &DInsn) -> R {
    let src = d.i.op1_register();
    pre(cpu, src.is_xmm())?;
    let v = vreg(cpu, src);
    let k = d.i.immediate8() as usize & if src.is_xmm() { 7 } else { 3 };
    if !src.is_xmm() {
        cpu.fpu.enter_mmx();
    }
    set_reg(cpu, d.i.op0_register(), lane(v, k, 2) as u32);
    Ok(())
}

fn pinsrw(cpu: &mut Cpu, d: &DInsn) -> R {
    let dst = d.i.op0_register();
    pre(cpu, dst.is_xmm())?;
    let w = if d.i.op1_kind() == OpKind::Memory {
        let lin = mem_lin(cpu, d);
        cpu.read_u16(lin)? as u128
    } else {
        (get_reg(cpu, d.i.op1_register()) & 0xffff) as u128
    };
    let k = d.i.immediate8() as usize & if dst.is_xmm() { 7 } else { 3 };
    let v = (vreg(cpu, dst) & !(0xffffu128 << (16 * k))) | w << (16 * k);
    if !dst.is_xmm() {
        cpu.fpu.enter_mmx();
    }
    set_vreg(cpu, dst, v);
    Ok(())
}

/// maskmovq/maskmovdqu: store the bytes whose mask byte has its top bit set
/// to DS:EDI.
fn maskmov(cpu: &mut Cpu, d: &DInsn) -> R {
    let dst = d.i.op0_register();
    pre(cpu, dst.is_xmm())?;
    let v = vreg(cpu, dst);
    let m = vreg(cpu, d.i.op1_register());
    let n = if dst.is_xmm() { 16 } else { 8 };
    let seg = super::super::exec::seg_of(d.i.memory_segment());
    let base = cpu.lin(seg, cpu.regs[crate::cpu::state::EDI]);
    for k in 0..n {
        if (m >> (8 * k + 7)) & 1 != 0 {
            cpu.probe_write(base.wrapping_add(k as u32), 1)?;
        }
    }
    for k in 0..n {
        if (m >> (8 * k + 7)) & 1 != 0 {
            cpu.write_u8(base.wrapping_add(k as u32), (v >> (8 * k)) as u8)?;
        }
    }
    if !dst.is_xmm() {
        cpu.fpu.enter_mmx();
    }
    Ok(())
}

pub fn pick(i: &Instruction) -> Option<Handler> {
    let _ = MemorySize::Unknown;
    let _ = read_m128;
    Some(match i.mnemonic() {
        M::Paddb => pbin::<PADDB>,
        M::Paddw => pbin::<PADDW>,
        M::Paddd => pbin::<PADDD>,
        M::Paddq => pbin::<PADDQ>,
        M::Psubb => pbin::<PSUBB>,
        M::Psubw => pbin::<PSUBW>,
        M::Psubd => pbin::<PSUBD>,
        M::Psubq => pbin::<PSUBQ>,
        M::Paddsb => pbin::<PADDSB>,
        M::Paddsw => pbin::<PADDSW>,
        M::Paddusb => pbin::<PADDUSB>,
        M::Paddusw => pbin::<PADDUSW>,
        M::Psubsb => pbin::<PSUBSB>,
        M::Psubsw => pbin::<PSUBSW>,
        M::Psubusb => pbin::<PSUBUSB>,
        M::Psubusw => pbin::<PSUBUSW>,
        M::Pmullw => pbin::<PMULLW>,
        M::Pmulhw => pbin::<PMULHW>,
        M::Pmulhuw => pbin::<PMULHUW>,
        M::Pmaddwd => pbin::<PMADDWD>,
        M::Pmuludq => pbin::<PMULUDQ>,
        M::Pcmpeqb => pbin::<PCMPEQB>,
        M::Pcmpeqw => pbin::<PCMPEQW>,
        M::Pcmpeqd => pbin::<PCMPEQD>,
        M::Pcmpgtb => pbin::<PCMPGTB>,
        M::Pcmpgtw => pbin::<PCMPGTW>,
        M::Pcmpgtd => pbin::<PCMPGTD>,
        M::Pand | M::Andps | M::Andpd => pbin::<PAND>,
        M::Pandn | M::Andnps | M::Andnpd => pbin::<PANDN>,
        M::Por | M::Orps | M::Orpd => pbin::<POR>,
        M::Pxor | M::Xorps | M::Xorpd => pbin::<PXOR>,
        M::Psllw => pbin::<PSLLW>,
        M::Pslld => pbin::<PSLLD>,
        M::Psllq => pbin::<PSLLQ>,
        M::Psrlw => pbin::<PSRLW>,
        M::Psrld => pbin::<PSRLD>,
        M::Psrlq => pbin::<PSRLQ>,
        M::Psraw => pbin::<PSRAW>,
        M::Psrad => pbin::<PSRAD>,
        M::Packsswb => pbin::<PACKSSWB>,
        M::Packssdw => pbin::<PACKSSDW>,
        M::Packuswb => pbin::<PACKUSWB>,
        M::Punpcklbw => pbin::<PUNPCKLBW>,
        M::Punpcklwd => pbin::<PUNPCKLWD>,
        M::Punpckldq => pbin::<PUNPCKLDQ>,
        M::Punpcklqdq => pbin::<PUNPCKLQDQ>,
        M::Punpckhbw => pbin::<PUNPCKHBW>,
        M::Punpckhwd => pbin::<PUNPCKHWD>,
        M::Punpckhdq => pbin::<PUNPCKHDQ>,
        M::Punpckhqdq => pbin::<PUNPCKHQDQ>,
        M::Pavgb => pbin::<PAVGB>,
        M::Pavgw => pbin::<PAVGW>,
        M::Pminub => pbin::<PMINUB>,
        M::Pmaxub => pbin::<PMAXUB>,
        M::Pminsw => pbin::<PMINSW>,
        M::Pmaxsw => pbin::<PMAXSW>,
        M::Psadbw => pbin::<PSADBW>,
        M::Pslldq => pbyteshift::<true>,
        M::Psrldq => pbyteshift::<false>,
        M::Movd | M::Movq | M::Movq2dq | M::Movdq2q | M::Movdqu | M::Movntq => vmov::<false>,
        M::Movdqa | M::Movntdq => vmov::<true>,
        M::Pshufw | M::Pshufd | M::Pshuflw | M::Pshufhw => pshuf,
        M::Pmovmskb => pmovmskb,
        M::Pextrw => pextrw,
        M::Pinsrw => pinsrw,
        M::Maskmovq | M::Maskmovdqu => maskmov,
        _ => return None,
    })
}

//! SSE/SSE2 floating point: arithmetic, min/max, compares and conversions.
//
// H:790 SSE arithmetic is IEEE single and double precision with the
// rounding mode, flush-to-zero and denormals-are-zero bits of MXCSR.  Unlike
// the x87, exceptions are precise: an unmasked one raises #XM (vector 19,
// since lguest guests run with CR4.OSXMMEXCPT) at the instruction itself,
// with the destination unchanged and the flags of every lane recorded in
// MXCSR.  With the default masks nothing traps, and the flags only stick.
//
// Each handler works lane by lane on the u128 image of the register: a
// scalar instruction computes lane 0 and keeps the rest of the destination,
// a packed one computes every lane.  The NaN rule differs from the x87: the
// first source's NaN wins, whatever the significands.

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use super::simd_int::vsrc;
use super::softfloat::{self as sf, Env, Fmt, Kind, F, F32, F64};
use super::{check_nm, check_wait, mm_index, xmm_index};
use crate::cpu::decode::{DInsn, Handler};
use crate::cpu::exec::{read_op, set_reg, R};
use crate::cpu::flags;
use crate::cpu::state::{Cpu, Fault, Stop};

/// The environment MXCSR describes.
#[inline]
pub fn env(cpu: &Cpu) -> Env {
    let m = cpu.fpu.mxcsr;
    Env {
        rc: ((m >> 13) & 3) as u8,
        ftz: m & super::MXCSR_FZ != 0,
        daz: m & super::MXCSR_DAZ != 0,
        ue_masked: m & (1 << 11) != 0,
        x87: false,
        flags: 0,
    }
}

/// Record flags; an unmasked one raises #XM before the result is written.
#[inline]
pub fn commit(cpu: &mut Cpu, flags: u32) -> R {
    let f = flags & 0x3f & !NAN_SEEN;
    if f != 0 {
        cpu.fpu.mxcsr |= f;
        if f & !(cpu.fpu.mxcsr >> 7) & 0x3f != 0 {
            return Err(Stop::fault(Fault::XM));
        }
    }
    Ok(())
}

#[inline(always)]
fn unpack(env: &mut Env, bits: u64, dbl: bool) -> F {
    let (f, den) = if dbl { sf::unpack_f64(bits, env.daz) } else { sf::unpack_f32(bits as u32, env.daz) };
    if den {
        env.flags |= sf::DE;
    }
    if f.is_nan() {
        env.flags |= NAN_SEEN;
    }
    f
}

/// Internal flag: a lane had a NaN operand (which hides DE, see `in_lane`).
const NAN_SEEN: u32 = 0x1000;

/// Run one lane's computation with its own flags: within a lane an invalid
/// operation hides a denormal operand (it is checked first), but the flags
/// of different lanes simply accumulate.
#[inline(always)]
fn in_lane<T>(env: &mut Env, f: impl FnOnce(&mut Env) -> T) -> T {
    let mut le = Env { flags: 0, ..*env };
    let r = f(&mut le);
    if le.flags & (sf::IE | sf::ZE | NAN_SEEN) != 0 {
        le.flags &= !sf::DE;
    }
    env.flags |= le.flags & !NAN_SEEN;
    r
}

#[inline(always)]
fn pack(f: F, dbl: bool) -> u64 {
    if dbl {
        sf::pack_f64(f)
    } else {
        sf::pack_f32(f) as u64
    }
}

#[inline(always)]
fn fmt(dbl: bool) -> Fmt {
    if dbl {
        F64
    } else {
        F32
    }
}

#[inline(always)]
fn get(v: u128, k: usize, dbl: bool) -> u64 {
    if dbl {
        (v >> (64 * k)) as u64
    } else {
        (v >> (32 * k)) as u32 as u64
    }
}

#[inline(always)]
fn put(v: u128, k: usize, dbl: bool, x: u64) -> u128 {
    if dbl {
        (v & !(0xffff_ffff_ffff_ffffu128 << (64 * k))) | (x as u128) << (64 * k)
    } else {
        (v & !(0xffff_ffffu128 << (32 * k))) | ((x as u32) as u128) << (32 * k)
    }
}

const ADD: u8 = 0;
const SUB: u8 = 1;
const MUL: u8 = 2;
const DIV: u8 = 3;
const MIN: u8 = 4;
const MAX: u8 = 5;
const SQRT: u8 = 6;

#[inline(always)]
fn lane_op<const OP: u8>(env: &mut Env, x: u64, y: u64, dbl: bool) -> u64 {
    // sqrt has one operand: the destination's old lane is not read.
    let a = if OP == SQRT { F::zero(false) } else { unpack(env, x, dbl) };
    let b = unpack(env, y, dbl);
    let f = fmt(dbl);
    let r = match OP {
        ADD => sf::add(env, f, a, b, false),
        SUB => sf::add(env, f, a, b, true),
        MUL => sf::mul(env, f, a, b),
        DIV => sf::div(env, f, a, b),
        SQRT => sf::sqrt(env, f, b),
        _ => {
            // minps/maxps: any NaN (and equal zeros) give the second operand.
            if a.is_nan() || b.is_nan() {
                env.flags |= sf::IE;
                // The second operand as-is, but after DAZ.
                return if b.is_nan() { y } else { pack(b, dbl) };
            }
            let lt = sf::compare(env, a, b, true) == Some(std::cmp::Ordering::Less);
            let gt = sf::compare(env, a, b, true) == Some(std::cmp::Ordering::Greater);
            let pick_a = if OP == MIN { lt } else { gt };
            return pack(if pick_a { a } else { b }, dbl);
        }
    };
    pack(r, dbl)
}

/// add/sub/mul/div/min/max/sqrt in ss, sd, ps and pd forms.
fn arith<const OP: u8, const DBL: bool, const PACKED: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_nm(cpu)?;
    let dst = xmm_index(d.i.op0_register());
    let b = vsrc(cpu, d, 1, true)?;
    let a = cpu.fpu.xmm[dst];
    let mut e = env(cpu);
    let lanes = if !PACKED {
        1
    } else if DBL {
        2
    } else {
        4
    };
    let mut r = a;
    for k in 0..lanes {
        let v = in_lane(&mut e, |e| lane_op::<OP>(e, get(a, k, DBL), get(b, k, DBL), DBL));
        r = put(r, k, DBL, v);
    }
    commit(cpu, e.flags)?;
    cpu.fpu.xmm[dst] = r;
    Ok(())
}

/// The eight compare predicates: (true when unordered, signals on QNaN,
/// mask of Less/Equal/Greater that are true).
fn predicate(env: &mut Env, x: u64, y: u64, dbl: bool, imm: u8) -> bool {
    let a = unpack(env, x, dbl);
    let b = unpack(env, y, dbl);
    let signalling = matches!(imm & 7, 1 | 2 | 5 | 6);
    let o = sf::compare(env, a, b, signalling);
    use std::cmp::Ordering::*;
    match imm & 7 {
        0 => o == Some(Equal),
        1 => o == Some(Less),
        2 => matches!(o, Some(Less | Equal)),
        3 => o.is_none(),
        4 => o != Some(Equal),
        5 => o != Some(Less),
        6 => !matches!(o, Some(Less | Equal)),
        _ => o.is_some(),
    }
}

fn cmp<const DBL: bool, const PACKED: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_nm(cpu)?;
    let dst = xmm_index(d.i.op0_register());
    let b = vsrc(cpu, d, 1, true)?;
    let a = cpu.fpu.xmm[dst];
    let imm = d.i.immediate8();
    let mut e = env(cpu);
    let lanes = if !PACKED {
        1
    } else if DBL {
        2
    } else {
        4
    };
    let mut r = a;
    for k in 0..lanes {
        let t = in_lane(&mut e, |e| predicate(e, get(a, k, DBL), get(b, k, DBL), DBL, imm));
        r = put(r, k, DBL, if t { !0 } else { 0 });
    }
    commit(cpu, e.flags)?;
    cpu.fpu.xmm[dst] = r;
    Ok(())
}

/// comiss/ucomiss/comisd/ucomisd: ZF, PF, CF as for fcomi; OF, SF, AF clear.
fn comis<const DBL: bool, const SIGNALLING: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_nm(cpu)?;
    let a = cpu.fpu.xmm[xmm_index(d.i.op0_register())];
    let b = vsrc(cpu, d, 1, true)?;
    let mut e = env(cpu);
    let x = unpack(&mut e, get(a, 0, DBL), DBL);
    let y = unpack(&mut e, get(b, 0, DBL), DBL);
    let o = sf::compare(&mut e, x, y, SIGNALLING);
    if e.flags & (sf::IE | NAN_SEEN) != 0 {
        e.flags &= !sf::DE;
    }
    commit(cpu, e.flags)?;
    use std::cmp::Ordering::*;
    let bits = match o {
        None => flags::ZF | flags::PF | flags::CF,
        Some(Less) => flags::CF,
        Some(Equal) => flags::ZF,
        Some(Greater) => 0,
    };
    cpu.set_arith_flags(bits);
    Ok(())
}

// ---- conversions -----------------------------------------------------------

/// Float to int32 with the MXCSR rounding or truncation; invalid gives the
/// integer indefinite 0x80000000.
#[inline]
fn f2i(env: &mut Env, bits: u64, dbl: bool, trunc: bool) -> u32 {
    in_lane(env, |env| f2i_lane(env, bits, dbl, trunc))
}

fn f2i_lane(env: &mut Env, bits: u64, dbl: bool, trunc: bool) -> u32 {
    // Conversions to integer do not report denormal operands.
    let a = unpack(env, bits, dbl);
    env.flags &= !sf::DE;
    let rc = if trunc { sf::RZ } else { env.rc };
    match sf::to_int(env, a, rc, 32) {
        Some(v) => v as u32,
        None => 0x8000_0000,
    }
}

#[inline]
fn i2f(env: &mut Env, v: i32, dbl: bool) -> u64 {
    pack(sf::from_i64(env, fmt(dbl), v as i64), dbl)
}

/// Change precision, quieting SNaNs (which raises IE).
#[inline]
fn f2f(env: &mut Env, bits: u64, from_dbl: bool) -> u64 {
    in_lane(env, |env| f2f_lane(env, bits, from_dbl))
}

fn f2f_lane(env: &mut Env, bits: u64, from_dbl: bool) -> u64 {
    let a = unpack(env, bits, from_dbl);
    let r = if a.is_nan() {
        if a.kind == Kind::SNaN {
            env.flags |= sf::IE;
        }
        a.quiet()
    } else {
        sf::round_f(env, fmt(!from_dbl), a)
    };
    pack(r, !from_dbl)
}

const CVTSI2SS: u8 = 0;
const CVTSI2SD: u8 = 1;
const CVTSS2SD: u8 = 2;
const CVTSD2SS: u8 = 3;
const CVTDQ2PS: u8 = 4;
const CVTPS2DQ: u8 = 5;
const CVTTPS2DQ: u8 = 6;
const CVTDQ2PD: u8 = 7;
const CVTPD2DQ: u8 = 8;
const CVTTPD2DQ: u8 = 9;
const CVTPS2PD: u8 = 10;
const CVTPD2PS: u8 = 11;
const CVTPI2PS: u8 = 12;
const CVTPI2PD: u8 = 13;

/// Conversions whose destination is an XMM register.
fn cvt<const OP: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let mmx_src = d.i.op1_kind() == OpKind::Register && d.i.op1_register().is_mm();
    if mmx_src {
        check_wait(cpu)?;
    } else {
        check_nm(cpu)?;
    }
    let dst = xmm_index(d.i.op0_register());
    let s = if matches!(OP, CVTSI2SS | CVTSI2SD) { read_op(cpu, d, 1, 4)? as u128 } else { vsrc(cpu, d, 1, true)? };
    let a = cpu.fpu.xmm[dst];
    let mut e = env(cpu);
    let l32 = |k: usize| (s >> (32 * k)) as u32;
    let l64 = |k: usize| (s >> (64 * k)) as u64;
    let r: u128 = match OP {
        CVTSI2SS => put(a, 0, false, i2f(&mut e, s as i32, false)),
        CVTSI2SD => put(a, 0, true, i2f(&mut e, s as i32, true)),
        CVTSS2SD => put(a, 0, true, f2f(&mut e, l32(0) as u64, false)),
        CVTSD2SS => put(a, 0, false, f2f(&mut e, l64(0), true)),
        CVTDQ2PS => (0..4).fold(0, |r, k| put(r, k, false, i2f(&mut e, l32(k) as i32, false))),
        CVTPS2DQ | CVTTPS2DQ => (0..4).fold(0, |r, k| put(r, k, false, f2i(&mut e, l32(k) as u64, false, OP == CVTTPS2DQ) as u64)),
        CVTDQ2PD => (0..2).fold(0, |r, k| put(r, k, true, i2f(&mut e, l32(k) as i32, true))),
        CVTPD2DQ | CVTTPD2DQ => (0..2).fold(0, |r, k| put(r, k, false, f2i(&mut e, l64(k), true, OP == CVTTPD2DQ) as u64)),
        CVTPS2PD => (0..2).fold(0, |r, k| put(r, k, true, f2f(&mut e, l32(k) as u64, false))),
        CVTPD2PS => (0..2).fold(0, |r, k| put(r, k, false, f2f(&mut e, l64(k), true))),
        CVTPI2PS => (0..2).fold(a, |r, k| put(r, k, false, i2f(&mut e, l32(k) as i32, false))),
        _ => (0..2).fold(0, |r, k| put(r, k, true, i2f(&mut e, l32(k) as i32, true))),
    };
    commit(cpu, e.flags)?;
    if mmx_src {
        cpu.fpu.enter_mmx();
    }
    cpu.fpu.xmm[dst] = r;
    Ok(())
}

/// cvt(t)ss2si, cvt(t)sd2si (to a general register) and cvt(t)ps2pi,
/// cvt(t)pd2pi (to an MMX register).
fn cvt2int<const DBL: bool, const TRUNC: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    let to_mm = d.i.op0_register().is_mm();
    if to_mm {
        check_wait(cpu)?;
    } else {
        check_nm(cpu)?;
    }
    let s = vsrc(cpu, d, 1, true)?;
    let mut e = env(cpu);
    if to_mm {
        let lo = f2i(&mut e, get(s, 0, DBL), DBL, TRUNC) as u64;
        let hi = f2i(&mut e, get(s, 1, DBL), DBL, TRUNC) as u64;
        commit(cpu, e.flags)?;
        cpu.fpu.enter_mmx();
        cpu.fpu.set_mm(mm_index(d.i.op0_register()), lo | hi << 32);
    } else {
        let v = f2i(&mut e, get(s, 0, DBL), DBL, TRUNC);
        commit(cpu, e.flags)?;
        set_reg(cpu, d.i.op0_register(), v);
    }
    Ok(())
}

pub fn pick(i: &Instruction) -> Option<Handler> {
    Some(match i.mnemonic() {
        M::Addss => arith::<ADD, false, false>,
        M::Addsd => arith::<ADD, true, false>,
        M::Addps => arith::<ADD, false, true>,
        M::Addpd => arith::<ADD, true, true>,
        M::Subss => arith::<SUB, false, false>,
        M::Subsd => arith::<SUB, true, false>,
        M::Subps => arith::<SUB, false, true>,
        M::Subpd => arith::<SUB, true, true>,
        M::Mulss => arith::<MUL, false, false>,
        M::Mulsd => arith::<MUL, true, false>,
        M::Mulps => arith::<MUL, false, true>,
        M::Mulpd => arith::<MUL, true, true>,
        M::Divss => arith::<DIV, false, false>,
        M::Divsd => arith::<DIV, true, false>,
        M::Divps => arith::<DIV, false, true>,
        M::Divpd => arith::<DIV, true, true>,
        M::Minss => arith::<MIN, false, false>,
        M::Minsd => arith::<MIN, true, false>,
        M::Minps => arith::<MIN, false, true>,
        M::Minpd => arith::<MIN, true, true>,
        M::Maxss => arith::<MAX, false, false>,
        M::Maxsd => arith::<MAX, true, false>,
        M::Maxps => arith::<MAX, false, true>,
        M::Maxpd => arith::<MAX, true, true>,
        M::Sqrtss => arith::<SQRT, false, false>,
        M::Sqrtsd => arith::<SQRT, true, false>,
        M::Sqrtps => arith::<SQRT, false, true>,
        M::Sqrtpd => arith::<SQRT, true, true>,
        M::Cmpss => cmp::<false, false>,
        M::Cmpsd if i.op_count() == 3 => cmp::<true, false>,
        M::Cmpps => cmp::<false, true>,
        M::Cmppd => cmp::<true, true>,
        M::Comiss => comis::<false, true>,
        M::Ucomiss => comis::<false, false>,
        M::Comisd => comis::<true, true>,
        M::Ucomisd => comis::<true, false>,
        M::Cvtsi2ss => cvt::<CVTSI2SS>,
        M::Cvtsi2sd => cvt::<CVTSI2SD>,
        M::Cvtss2sd => cvt::<CVTSS2SD>,
        M::Cvtsd2ss => cvt::<CVTSD2SS>,
        M::Cvtdq2ps => cvt::<CVTDQ2PS>,
        M::Cvtps2dq => cvt::<CVTPS2DQ>,
        M::Cvttps2dq => cvt::<CVTTPS2DQ>,
        M::Cvtdq2pd => cvt::<CVTDQ2PD>,
        M::Cvtpd2dq => cvt::<CVTPD2DQ>,
        M::Cvttpd2dq => cvt::<CVTTPD2DQ>,
        M::Cvtps2pd => cvt::<CVTPS2PD>,
        M::Cvtpd2ps => cvt::<CVTPD2PS>,
        M::Cvtpi2ps => cvt::<CVTPI2PS>,
        M::Cvtpi2pd => cvt::<CVTPI2PD>,
        M::Cvtss2si | M::Cvtps2pi => cvt2int::<false, false>,
        M::Cvttss2si | M::Cvttps2pi => cvt2int::<false, true>,
        M::Cvtsd2si | M::Cvtpd2pi => cvt2int::<true, false>,
        M::Cvttsd2si | M::Cvttpd2pi => cvt2int::<true, true>,
        _ => return None,
    })
}

//! x87 comparisons, classification, partial remainders and transcendental
//! functions.
//
// H:760 Comparisons report through the condition codes C3/C2/C0 (which
// `fnstsw ax; sahf` turns into ZF/PF/CF) or, since the Pentium Pro, straight
// into EFLAGS (fcomi).  The "unordered" variants only complain about
// signalling NaNs; the others treat any NaN as an invalid operation.
//
// fprem and fprem1 are exact: the remainder of two floating-point numbers is
// always representable.  When the exponents are far apart the hardware does
// the division in slices and sets C2 to say "call me again"; we slice the
// same way (the quotient bits kept per step make the result a multiple of
// 2^32 apart), which matches what silicon returns step by step.
//
// The transcendental functions (fsin, fcos, fptan, fpatan, f2xm1, fyl2x,
// fyl2xp1) go through the host's double-precision libm.  Their results are
// accurate to about one double ulp, not to the 64-bit significand the
// hardware delivers; docs/interpreter.md lists this deviation.

use std::cmp::Ordering;

use iced_x86::{Instruction, Mnemonic as M};

use super::softfloat::{self as sf, Env, Kind, F, F64, F80};
use super::x87::{kind_of, note, reg_pair, source, st01_operands, INDEFINITE, M16I, M32F, M32I, M64F, REG, SF};
use super::{check_wait, Fpu, Reg, SW_C0, SW_C1, SW_C2, SW_C3};
use crate::cpu::decode::{DInsn, Handler};
use crate::cpu::exec::R;
use crate::cpu::flags;
use crate::cpu::state::Cpu;

const CC: u16 = SW_C0 | SW_C1 | SW_C2 | SW_C3;

fn set_cc(f: &mut Fpu, c3: bool, c2: bool, c1: bool, c0: bool) {
    f.sw &= !CC;
    f.sw |= if c3 { SW_C3 } else { 0 } | if c2 { SW_C2 } else { 0 } | if c1 { SW_C1 } else { 0 } | if c0 { SW_C0 } else { 0 };
}

/// fcom, fcomp, fcompp, fucom*, ficom*, fcomi*, fucomi*: compare ST(0) with
/// the source; POPS is how many registers to pop afterwards.
fn fcom<const K: u8, const POPS: u8, const UNORD: bool, const EFL: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    let (a_reg, b_reg) = if K == REG { reg_pair(&d.i) } else { (0, 0) };
    let s = source::<K>(cpu, d, b_reg)?;
    note(cpu, d);
    let fpu = &mut cpu.fpu;
    let mut env = fpu.env();
    let ord = if s.empty || fpu.is_empty(a_reg) {
        env.flags |= sf::IE | SF;
        None
    } else {
        let (a, aden) = fpu.st(a_reg);
        if (aden || s.den) && !a.is_nanlike() && !s.f.is_nanlike() {
            env.flags |= sf::DE;
        }
        sf::compare(&mut env, a, s.f, !UNORD)
    };
    if fpu.commit(env.flags) {
        return Ok(());
    }
    let (z, p, c) = match ord {
        None => (true, true, true),
        Some(Ordering::Less) => (false, false, true),
        Some(Ordering::Equal) => (true, false, false),
        Some(Ordering::Greater) => (false, false, false),
    };
    if EFL {
        cpu.set_arith_flags(if z { flags::ZF } else { 0 } | if p { flags::PF } else { 0 } | if c { flags::CF } else { 0 });
    } else {
        set_cc(&mut cpu.fpu, z, p, false, c);
    }
    for _ in 0..POPS {
        cpu.fpu.pop();
    }
    Ok(())
}

fn ftst(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    let fpu = &mut cpu.fpu;
    let mut env = fpu.env();
    let ord = if fpu.is_empty(0) {
        env.flags |= sf::IE | SF;
        None
    } else {
        let (a, den) = fpu.st(0);
        if den {
            env.flags |= sf::DE;
        }
        sf::compare(&mut env, a, F::zero(false), true)
    };
    if fpu.commit(env.flags) {
        return Ok(());
    }
    match ord {
        None => set_cc(fpu, true, true, false, true),
        Some(Ordering::Less) => set_cc(fpu, false, false, false, true),
        Some(Ordering::Equal) => set_cc(fpu, true, false, false, false),
        Some(Ordering::Greater) => set_cc(fpu, false, false, false, false),
    }
    Ok(())
}

/// fxam: classify ST(0) into C3/C2/C0, sign into C1.  Never raises anything.
fn fxam(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    let fpu = &mut cpu.fpu;
    let r = fpu.st_reg(0);
    let sign = r.se & 0x8000 != 0;
    let (c3, c2, c0) = if fpu.is_empty(0) {
        (true, false, true)
    } else {
        let (a, den) = fpu.st(0);
        match a.kind {
            Kind::Bad => (false, false, false),
            Kind::QNaN | Kind::SNaN => (false, false, true),
            Kind::Inf => (false, true, true),
            Kind::Zero => (true, false, false),
            Kind::Finite if den => (true, true, false),
            Kind::Finite => (false, true, false),
        }
    };
    set_cc(fpu, c3, c2, sign, c0);
    Ok(())
}

/// fprem (truncating quotient) and fprem1 (IEEE remainder, nearest quotient).
fn fprem<const IEEE: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    let fpu = &mut cpu.fpu;
    let mut env = fpu.env();
    if fpu.is_empty(0) || fpu.is_empty(1) {
        if !fpu.commit(sf::IE | SF) {
            fpu.set_st_reg(0, INDEFINITE);
        }
        return Ok(());
    }
    let ((a, ad), (b, bd)) = (fpu.st(0), fpu.st(1));
    if (ad || bd) && !a.is_nanlike() && !b.is_nanlike() {
        env.flags |= sf::DE;
    }
    let mut q: u64 = 0;
    let mut partial = false;
    let r = if a.kind == Kind::Bad || b.kind == Kind::Bad {
        sf::invalid(&mut env)
    } else if a.is_nan() || b.is_nan() {
        sf::propagate(&mut env, a, b)
    } else if a.kind == Kind::Inf || b.kind == Kind::Zero {
        sf::invalid(&mut env)
    } else if a.kind == Kind::Zero || b.kind == Kind::Inf {
        a
    } else {
        let dexp = a.exp - b.exp;
        // Far apart: reduce by a slice that leaves the exponent difference a
        // multiple of 32 (between 32 and 63 quotient bits per step).
        let (bexp, dd) = if dexp >= 64 {
            partial = true;
            let s = ((dexp - 32) / 32) * 32;
            (b.exp + s, dexp - s)
        } else {
            (b.exp, dexp)
        };
        if dd < -1 || (dd == -1 && !IEEE) {
            a
        } else {
            let (n, m, unit) = if dd >= 0 {
                ((a.sig as u128) << dd, b.sig as u128, bexp - 63)
            } else {
                (a.sig as u128, (b.sig as u128) << 1, a.exp - 63)
            };
            let (mut qq, mut rr) = (n / m, n % m);
            let mut sign = a.sign;
            if IEEE && !partial && (2 * rr > m || (2 * rr == m && qq & 1 != 0)) {
                qq += 1;
                rr = m - rr;
                sign = !sign;
            }
            q = qq as u64;
            if rr == 0 {
                F::zero(a.sign)
            } else {
                sf::round(&mut env, F80, sign, unit + 127, rr)
            }
        }
    };
    if fpu.commit(env.flags) {
        return Ok(());
    }
    fpu.set_st(0, r);
    if partial {
        fpu.sw |= SW_C2;
    } else {
        set_cc(fpu, q & 2 != 0, false, q & 1 != 0, q & 4 != 0);
    }
    Ok(())
}

fn to_host(a: F) -> f64 {
    let mut e = Env::new(sf::RN, true);
    f64::from_bits(sf::pack_f64(sf::round_f(&mut e, F64, a)))
}

fn from_host(env: &mut Env, x: f64) -> F {
    if x.is_nan() {
        return sf::invalid(env);
    }
    env.flags |= sf::PE;
    sf::unpack_f64(x.to_bits(), false).0
}

const SIN: u8 = 0;
const COS: u8 = 1;
const SINCOS: u8 = 2;
const TAN: u8 = 3;
const F2XM1: u8 = 4;

/// Functions of ST(0) alone.  The trigonometric ones leave operands of
/// magnitude 2^63 or more untouched and set C2 ("reduce it yourself").
fn func1<const OP: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    let fpu = &mut cpu.fpu;
    let mut env = fpu.env();
    let pushes = OP == SINCOS || OP == TAN;
    if fpu.is_empty(0) || (pushes && fpu.empty >> fpu.phys(7) & 1 == 0) {
        if !fpu.commit(sf::IE | SF | if fpu.is_empty(0) { 0 } else { sf::UP }) {
            fpu.set_st_reg(0, INDEFINITE);
            if pushes {
                fpu.top = fpu.top.wrapping_sub(1) & 7;
                fpu.set_st_reg(0, INDEFINITE);
            }
        }
        return Ok(());
    }
    let (a, den) = fpu.st(0);
    if den {
        env.flags |= sf::DE;
    }
    if OP != F2XM1 && a.kind == Kind::Finite && a.exp >= 63 {
        fpu.commit(env.flags);
        fpu.sw |= SW_C2;
        return Ok(());
    }
    let (r1, r2) = match a.kind {
        Kind::Bad => (sf::invalid(&mut env), F::INDEFINITE),
        Kind::QNaN | Kind::SNaN => {
            let q = sf::propagate(&mut env, a, a);
            (q, q)
        }
        Kind::Inf if OP == F2XM1 => (if a.sign { F::ONE.negate() } else { a }, a),
        Kind::Inf => (sf::invalid(&mut env), F::INDEFINITE),
        // sin, tan and 2^x-1 of a zero are that zero, exactly.
        Kind::Zero if OP != COS => (a, F::ONE),
        _ => {
            let x = to_host(a);
            match OP {
                SIN => (from_host(&mut env, x.sin()), F::ONE),
                COS => (from_host(&mut env, x.cos()), F::ONE),
                SINCOS => (from_host(&mut env, x.sin()), from_host(&mut env, x.cos())),
                TAN => (from_host(&mut env, x.tan()), F::ONE),
                _ => (from_host(&mut env, (x * std::f64::consts::LN_2).exp_m1()), F::ONE),
            }
        }
    };
    if fpu.commit(env.flags) {
        return Ok(());
    }
    fpu.sw &= !SW_C2;
    fpu.set_st(0, r1);
    if pushes {
        let v = if OP == SINCOS && a.kind == Kind::Zero { F::ONE } else { r2 };
        let (sig, se) = sf::pack_f80(v);
        fpu.top = fpu.top.wrapping_sub(1) & 7;
        fpu.set_st_reg(0, Reg { sig, se });
    }
    Ok(())
}

const ATAN: u8 = 0;
const YL2X: u8 = 1;
const YL2XP1: u8 = 2;

/// Functions of ST(1) and ST(0) that leave their result in ST(1) and pop.
fn func2<const OP: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    let fpu = &mut cpu.fpu;
    let mut env = fpu.env();
    let r = match st01_operands(fpu, &mut env) {
        Err(r) => r,
        Ok((x, y)) => {
            let (xh, yh) = (to_host(x), to_host(y));
            match OP {
                ATAN => {
                    if x.kind == Kind::Zero && y.kind == Kind::Zero {
                        // atan2 of signed zeros is exact.
                        sf::unpack_f64(yh.atan2(xh).to_bits(), false).0
                    } else {
                        from_host(&mut env, yh.atan2(xh))
                    }
                }
                _ => {
                    let bad = if OP == YL2X { x.sign && x.kind != Kind::Zero } else { xh < -1.0 };
                    if bad {
                        sf::invalid(&mut env)
                    } else if OP == YL2X && x.kind == Kind::Zero {
                        if y.kind == Kind::Zero {
                            sf::invalid(&mut env)
                        } else {
                            env.flags |= sf::ZE;
                            F::inf(!y.sign)
                        }
                    } else {
                        let l = if OP == YL2X { xh.log2() } else { xh.ln_1p() / std::f64::consts::LN_2 };
                        let v = yh * l;
                        if v.is_nan() {
                            sf::invalid(&mut env)
                        } else if l == 0.0 || v.is_infinite() && !yh.is_infinite() && !l.is_infinite() {
                            sf::unpack_f64(v.to_bits(), false).0
                        } else {
                            from_host(&mut env, v)
                        }
                    }
                }
            }
        }
    };
    if !fpu.commit(env.flags) {
        fpu.set_st(1, r);
        fpu.pop();
    }
    Ok(())
}

pub fn pick(i: &Instruction) -> Option<Handler> {
    let k = kind_of(i);
    macro_rules! cmp {
        ($p:expr, $u:expr) => {
            match k {
                M32F => fcom::<M32F, $p, $u, false>,
                M64F => fcom::<M64F, $p, $u, false>,
                M16I => fcom::<M16I, $p, $u, false>,
                M32I => fcom::<M32I, $p, $u, false>,
                _ => fcom::<REG, $p, $u, false>,
            }
        };
    }
    Some(match i.mnemonic() {
        M::Fcom | M::Ficom => cmp!(0, false),
        M::Fcomp | M::Ficomp => cmp!(1, false),
        M::Fcompp => fcom::<REG, 2, false, false>,
        M::Fucom => fcom::<REG, 0, true, false>,
        M::Fucomp => fcom::<REG, 1, true, false>,
        M::Fucompp => fcom::<REG, 2, true, false>,
        M::Fcomi => fcom::<REG, 0, false, true>,
        M::Fcomip => fcom::<REG, 1, false, true>,
        M::Fucomi => fcom::<REG, 0, true, true>,
        M::Fucomip => fcom::<REG, 1, true, true>,
        M::Ftst => ftst,
        M::Fxam => fxam,
        M::Fprem => fprem::<false>,
        M::Fprem1 => fprem::<true>,
        M::Fsin => func1::<SIN>,
        M::Fcos => func1::<COS>,
        M::Fsincos => func1::<SINCOS>,
        M::Fptan => func1::<TAN>,
        M::F2xm1 => func1::<F2XM1>,
        M::Fpatan => func2::<ATAN>,
        M::Fyl2x => func2::<YL2X>,
        M::Fyl2xp1 => func2::<YL2XP1>,
        _ => return None,
    })
}

//! The x87 register stack: loads, stores and arithmetic.
//
// H:730 The x87 is a stack machine with eight physical registers.  TOP says
// which of them is ST(0); a push decrements it.  Each register is either
// empty or holds an 80-bit value, and reading an empty register or pushing
// onto a full one is a stack fault: the invalid-operation flag and SF are set
// and, with IE masked as every OS leaves it, the result is the "real
// indefinite" QNaN.
//
// Exceptions on the x87 are deferred.  An instruction that raises one only
// sets the flag in the status word; if the exception is unmasked it also sets
// ES, and the *next* waiting x87 instruction takes #MF.  For the
// "pre-computation" exceptions (invalid operand, denormal operand, divide by
// zero) an unmasked exception leaves the destination and TOP untouched.
//
// Registers are kept in their 80-bit memory image, so fld/fstp of m80 and the
// fsave/fxsave images round-trip exactly, and arithmetic unpacks them into
// the soft-float format, computes, and rounds to the precision that the
// control word's PC field selects.

use iced_x86::{Instruction, MemorySize, Mnemonic as M, OpKind, Register};

use super::softfloat::{self as sf, Env, Fmt, Kind, F, F80};
use super::{check_wait, st_index, Fpu, Reg, SW_C1};
use crate::cpu::decode::{DInsn, Handler};
use crate::cpu::exec::{ea, mem_lin, seg_of, R};
use crate::cpu::state::{Cpu, SegReg};

/// Flags word bit for a stack fault (the status word's SF position).
pub const SF: u32 = 0x40;
pub const INDEFINITE: Reg = Reg { sig: 0xC000_0000_0000_0000, se: 0xffff };

impl Fpu {
    #[inline(always)]
    pub fn phys(&self, i: u8) -> usize {
        (self.top.wrapping_add(i) & 7) as usize
    }
    #[inline(always)]
    pub fn is_empty(&self, i: u8) -> bool {
        self.empty >> self.phys(i) & 1 != 0
    }
    #[inline(always)]
    pub fn st_reg(&self, i: u8) -> Reg {
        self.r[self.phys(i)]
    }
    #[inline]
    pub fn st(&self, i: u8) -> (F, bool) {
        let r = self.st_reg(i);
        sf::unpack_f80(r.sig, r.se)
    }
    #[inline]
    pub fn set_st_reg(&mut self, i: u8, r: Reg) {
        let p = self.phys(i);
        self.r[p] = r;
        self.empty &= !(1 << p);
    }
    #[inline]
    pub fn set_st(&mut self, i: u8, v: F) {
        let (sig, se) = sf::pack_f80(v);
        self.set_st_reg(i, Reg { sig, se });
    }
    #[inline]
    pub fn pop(&mut self) {
        let p = self.phys(0);
        self.empty |= 1 << p;
        self.top = (self.top + 1) & 7;
    }

    /// Push a loaded value, with the stack-overflow rule.
    pub fn push(&mut self, mut v: Reg, mut flags: u32) {
        let p = (self.top.wrapping_sub(1) & 7) as usize;
        if self.empty >> p & 1 == 0 {
            flags |= sf::IE | SF | sf::UP;
            v = INDEFINITE;
        }
        if self.commit(flags) {
            return;
        }
        self.top = p as u8;
        self.r[p] = v;
        self.empty &= !(1 << p);
    }

    /// The rounding environment from the control word.
    #[inline]
    pub fn env(&self) -> Env {
        let mut e = Env::new(((self.cw >> 10) & 3) as u8, true);
        e.ue_masked = self.cw & 0x10 != 0;
        e
    }

    /// The precision that PC selects for the basic arithmetic.
    #[inline]
    pub fn prec(&self) -> Fmt {
        match (self.cw >> 8) & 3 {
            0 => Fmt { prec: 24, ..F80 },
            2 => Fmt { prec: 53, ..F80 },
            _ => F80,
        }
    }

    /// Record an instruction's exception flags (and C1) in the status word.
    /// True if an unmasked invalid, denormal or zero-divide exception means
    /// the destination must stay as it was.
    #[inline]
    pub fn commit(&mut self, mut flags: u32) -> bool {
        // An invalid operation hides a denormal operand (it is checked first).
        if flags & sf::IE != 0 {
            flags &= !sf::DE;
        }
        self.sw &= !SW_C1;
        if flags & sf::UP != 0 {
            self.sw |= SW_C1;
        }
        if flags & 0x7f != 0 {
            self.sw |= (flags & 0x7f) as u16;
            self.update_es();
        }
        flags & 0x7 & !(self.cw as u32) != 0
    }
}

/// Remember the instruction and data pointers for fnstenv/fxsave.
#[inline(always)]
pub fn note(cpu: &mut Cpu, d: &DInsn) {
    cpu.fpu.fip = cpu.next_eip.wrapping_sub(d.len as u32);
    cpu.fpu.fcs = cpu.segs[SegReg::Cs as usize].selector;
    if d.i.op_count() > 0 && d.i.op0_kind() == OpKind::Memory {
        cpu.fpu.fdp = ea(cpu, d);
        cpu.fpu.fds = cpu.segs[seg_of(d.i.memory_segment()) as usize].selector;
    }
}

// Operand kinds, chosen at decode time.
pub const M32F: u8 = 0;
pub const M64F: u8 = 1;
pub const M80F: u8 = 2;
pub const M16I: u8 = 3;
pub const M32I: u8 = 4;
pub const M64I: u8 = 5;
pub const REG: u8 = 6;

/// A source operand: its value, whether it was denormal, whether the
/// register it came from was empty.
pub struct Src {
    pub f: F,
    pub den: bool,
    pub empty: bool,
}

/// Read a memory source of kind `K`, or register ST(`reg`).
#[inline(always)]
pub fn source<const K: u8>(cpu: &mut Cpu, d: &DInsn, reg: u8) -> Result<Src, crate::cpu::state::Fault> {
    let mut e = Env::new(sf::RN, true);
    let (f, den) = match K {
        REG => {
            if cpu.fpu.is_empty(reg) {
                return Ok(Src { f: F::INDEFINITE, den: false, empty: true });
            }
            cpu.fpu.st(reg)
        }
        M32F => sf::unpack_f32(cpu.read_u32(mem_lin(cpu, d))?, false),
        M64F => sf::unpack_f64(cpu.read_u64(mem_lin(cpu, d))?, false),
        M80F => {
            let lin = mem_lin(cpu, d);
            let sig = cpu.read_u64(lin)?;
            let se = cpu.read_u16(lin.wrapping_add(8))?;
            sf::unpack_f80(sig, se)
        }
        M16I => (sf::from_i64(&mut e, F80, cpu.read_u16(mem_lin(cpu, d))? as i16 as i64), false),
        M32I => (sf::from_i64(&mut e, F80, cpu.read_u32(mem_lin(cpu, d))? as i32 as i64), false),
        _ => (sf::from_i64(&mut e, F80, cpu.read_u64(mem_lin(cpu, d))? as i64), false),
    };
    Ok(Src { f, den, empty: false })
}

/// The two ST registers of a register-form instruction (dest, source).
#[inline(always)]
pub fn reg_pair(i: &Instruction) -> (u8, u8) {
    match i.op_count() {
        0 => (0, 1),
        1 => (0, st_index(i.op0_register())),
        _ => (st_index(i.op0_register()), st_index(i.op1_register())),
    }
}

// ---- loads -----------------------------------------------------------------

fn fld<const K: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    let reg = if K == REG { st_index(d.i.op0_register()) } else { 0 };
    let s = source::<K>(cpu, d, reg)?;
    note(cpu, d);
    let mut flags = 0;
    let v = match K {
        // Register and m80 loads copy the bits: no conversion, no exceptions.
        REG if s.empty => {
            flags |= sf::IE | SF;
            INDEFINITE
        }
        REG => cpu.fpu.st_reg(reg),
        M80F => {
            let lin = mem_lin(cpu, d);
            Reg { sig: cpu.read_u64(lin)?, se: cpu.read_u16(lin.wrapping_add(8))? }
        }
        _ => {
            let mut f = s.f;
            if f.kind == Kind::SNaN {
                flags |= sf::IE;
                f = f.quiet();
            }
            if s.den {
                flags |= sf::DE;
            }
            let (sig, se) = sf::pack_f80(f);
            Reg { sig, se }
        }
    };
    cpu.fpu.push(v, flags);
    Ok(())
}

/// The constants, with enough bits to round correctly in every mode.
const PI: (i32, u128) = (1, 0xC90F_DAA2_2168_C234_C4C6_628B_80DC_1CD1);
const L2E: (i32, u128) = (0, 0xB8AA_3B29_5C17_F0BB_BE87_FED0_691D_3E89);
const L2T: (i32, u128) = (1, 0xD49A_784B_CD1B_8AFE_492B_F6FF_4DAF_DB4C);
const LG2: (i32, u128) = (-2, 0x9A20_9A84_FBCF_F798_8F89_59AC_0B7C_9178);
const LN2: (i32, u128) = (-1, 0xB172_17F7_D1CF_79AB_C9E3_B398_03F2_F6AF);

pub fn constant(cpu: &Cpu, c: (i32, u128)) -> F {
    let mut e = cpu.fpu.env();
    sf::round(&mut e, F80, false, c.0, c.1)
}

fn fldconst(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    let f = match d.i.mnemonic() {
        M::Fld1 => F::ONE,
        M::Fldz => F::zero(false),
        M::Fldpi => constant(cpu, PI),
        M::Fldl2e => constant(cpu, L2E),
        M::Fldl2t => constant(cpu, L2T),
        M::Fldlg2 => constant(cpu, LG2),
        _ => constant(cpu, LN2),
    };
    let (sig, se) = sf::pack_f80(f);
    cpu.fpu.push(Reg { sig, se }, 0);
    Ok(())
}

// ---- stores ----------------------------------------------------------------

fn fst<const K: u8, const POP: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    let fpu = &cpu.fpu;
    let mut env = fpu.env();
    let empty = fpu.is_empty(0);
    if empty {
        env.flags |= sf::IE | SF;
    }
    let (a, _) = fpu.st(0);
    let raw = if empty { INDEFINITE } else { fpu.st_reg(0) };
    // Compute the memory image first; nothing changes until it is written.
    let mut conv = |a: F, fmt: Fmt| -> F {
        if empty || a.kind == Kind::Bad {
            env.flags |= sf::IE;
            return F::INDEFINITE;
        }
        if a.kind == Kind::SNaN {
            env.flags |= sf::IE;
        }
        sf::round_f(&mut env, fmt, a.quiet())
    };
    let bits: u64 = match K {
        M32F => sf::pack_f32(conv(a, sf::F32)) as u64,
        M64F => sf::pack_f64(conv(a, sf::F64)),
        M16I | M32I | M64I => {
            let width = match K {
                M16I => 16,
                M32I => 32,
                _ => 64,
            };
            let rc = env.rc;
            let v = if empty || a.kind == Kind::Bad {
                env.flags |= sf::IE;
                None
            } else {
                sf::to_int(&mut env, a, rc, width)
            };
            v.map(|x| x as u64).unwrap_or(1u64 << (width - 1))
        }
        _ => 0,
    };
    let flags = env.flags;
    if flags & sf::IE != 0 && cpu.fpu.cw & 1 == 0 {
        cpu.fpu.commit(flags);
        return Ok(());
    }
    match K {
        REG => {}
        M80F => {
            let lin = mem_lin(cpu, d);
            cpu.probe_write(lin, 10)?;
            cpu.write_u64(lin, raw.sig)?;
            cpu.write_u16(lin.wrapping_add(8), raw.se)?;
        }
        M32F | M32I => cpu.write_u32(mem_lin(cpu, d), bits as u32)?,
        M16I => cpu.write_u16(mem_lin(cpu, d), bits as u16)?,
        _ => cpu.write_u64(mem_lin(cpu, d), bits)?,
    }
    note(cpu, d);
    cpu.fpu.commit(flags);
    if K == REG {
        let i = st_index(d.i.op0_register());
        cpu.fpu.set_st_reg(i, raw);
    }
    if POP {
        cpu.fpu.pop();
    }
    Ok(())
}

// ---- arithmetic ------------------------------------------------------------

const ADD: u8 = 0;
const MUL: u8 = 1;
const SUB: u8 = 2;
const SUBR: u8 = 3;
const DIV: u8 = 4;
const DIVR: u8 = 5;

/// dest = dest OP source, rounded to the precision PC selects.
fn farith<const OP: u8, const K: u8, const POP: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    let (dst, srcreg) = if K == REG { reg_pair(&d.i) } else { (0, 0) };
    let s = source::<K>(cpu, d, srcreg)?;
    note(cpu, d);
    let fpu = &mut cpu.fpu;
    let mut env = fpu.env();
    let r = if s.empty || fpu.is_empty(dst) {
        env.flags |= sf::IE | SF;
        F::INDEFINITE
    } else {
        let (a, aden) = fpu.st(dst);
        if (aden || s.den) && !a.is_nanlike() && !s.f.is_nanlike() {
            env.flags |= sf::DE;
        }
        let fmt = fpu.prec();
        let b = s.f;
        match OP {
            ADD => sf::add(&mut env, fmt, a, b, false),
            SUB => sf::add(&mut env, fmt, a, b, true),
            SUBR => sf::add(&mut env, fmt, b, a, true),
            MUL => sf::mul(&mut env, fmt, a, b),
            DIV => sf::div(&mut env, fmt, a, b),
            _ => sf::div(&mut env, fmt, b, a),
        }
    };
    if !fpu.commit(env.flags) {
        fpu.set_st(dst, r);
        if POP {
            fpu.pop();
        }
    }
    Ok(())
}

/// Unary operations on ST(0).
const CHS: u8 = 0;
const ABS: u8 = 1;
const SQRT: u8 = 2;
const RNDINT: u8 = 3;

fn unary<const OP: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    let fpu = &mut cpu.fpu;
    let mut env = fpu.env();
    if fpu.is_empty(0) {
        if !fpu.commit(sf::IE | SF) {
            fpu.set_st_reg(0, INDEFINITE);
        }
        return Ok(());
    }
    let (a, den) = fpu.st(0);
    let r = match OP {
        CHS | ABS => {
            let mut r = fpu.st_reg(0);
            if OP == CHS {
                r.se ^= 0x8000;
            } else {
                r.se &= 0x7fff;
            }
            fpu.commit(0);
            fpu.set_st_reg(0, r);
            return Ok(());
        }
        SQRT => {
            if den && !a.is_nanlike() {
                env.flags |= sf::DE;
            }
            let fmt = fpu.prec();
            sf::sqrt(&mut env, fmt, a)
        }
        _ => {
            if den {
                env.flags |= sf::DE;
            }
            let rc = env.rc;
            sf::round_to_int(&mut env, a, rc)
        }
    };
    if !fpu.commit(env.flags) {
        fpu.set_st(0, r);
    }
    Ok(())
}

/// The operands ST(0) and ST(1) of a two-operand function, or the result
/// it must produce without computing: the indefinite NaN for an empty
/// register (stack underflow), invalid for an unsupported encoding, the
/// propagated NaN.  Sets DE for a denormal operand.
pub(super) fn st01_operands(fpu: &Fpu, env: &mut Env) -> Result<(F, F), F> {
    if fpu.is_empty(0) || fpu.is_empty(1) {
        env.flags |= sf::IE | SF;
        return Err(F::INDEFINITE);
    }
    let ((a, ad), (b, bd)) = (fpu.st(0), fpu.st(1));
    if (ad || bd) && !a.is_nanlike() && !b.is_nanlike() {
        env.flags |= sf::DE;
    }
    if a.kind == Kind::Bad || b.kind == Kind::Bad {
        Err(sf::invalid(env))
    } else if a.is_nan() || b.is_nan() {
        Err(sf::propagate(env, a, b))
    } else {
        Ok((a, b))
    }
}

/// fscale: ST(0) * 2^trunc(ST(1)), exact but for overflow and underflow.
fn fscale(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    let fpu = &mut cpu.fpu;
    let mut env = fpu.env();
    let r = match st01_operands(fpu, &mut env) {
        Err(r) => r,
        Ok((a, b)) => {
            match (a.kind, b.kind) {
                (Kind::Zero, Kind::Inf) if !b.sign => sf::invalid(&mut env),
                (Kind::Inf, Kind::Inf) if b.sign => sf::invalid(&mut env),
                (Kind::Finite, Kind::Inf) => {
                    if b.sign {
                        F::zero(a.sign)
                    } else {
                        F::inf(a.sign)
                    }
                }
                (Kind::Finite, _) => {
                    let n = if b.kind == Kind::Zero {
                        0
                    } else if b.exp >= 20 {
                        if b.sign {
                            -(1 << 20)
                        } else {
                            1 << 20
                        }
                    } else if b.exp < 0 {
                        0
                    } else {
                        let m = (b.sig >> (63 - b.exp)) as i32;
                        if b.sign {
                            -m
                        } else {
                            m
                        }
                    };
                    sf::round(&mut env, F80, a.sign, a.exp + n + 64, a.sig as u128)
                }
                _ => a,
            }
        }
    };
    if !fpu.commit(env.flags) {
        fpu.set_st(0, r);
    }
    Ok(())
}

/// fxtract: replace ST(0) by its exponent and push its significand.
fn fxtract(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    let fpu = &mut cpu.fpu;
    let mut env = fpu.env();
    if fpu.is_empty(0) {
        if !fpu.commit(sf::IE | SF) {
            fpu.set_st_reg(0, INDEFINITE);
            fpu.push(INDEFINITE, 0);
        }
        return Ok(());
    }
    let (a, den) = fpu.st(0);
    if den {
        env.flags |= sf::DE;
    }
    let (e, m) = match a.kind {
        Kind::Bad => (sf::invalid(&mut env), F::INDEFINITE),
        Kind::QNaN | Kind::SNaN => {
            let q = sf::propagate(&mut env, a, a);
            (q, q)
        }
        Kind::Zero => {
            env.flags |= sf::ZE;
            (F::inf(true), a)
        }
        Kind::Inf => (F::inf(false), a),
        Kind::Finite => {
            let mut e2 = Env::new(sf::RN, true);
            (sf::from_i64(&mut e2, F80, a.exp as i64), F { exp: 0, ..a })
        }
    };
    if !fpu.commit(env.flags) {
        fpu.set_st(0, e);
        let (sig, se) = sf::pack_f80(m);
        fpu.push(Reg { sig, se }, 0);
    }
    Ok(())
}

// ---- register manipulation -------------------------------------------------

fn fxch(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    let (_, i) = reg_pair(&d.i);
    let i = if d.i.op_count() == 2 { st_index(d.i.op0_register()).max(st_index(d.i.op1_register())) } else { i };
    let fpu = &mut cpu.fpu;
    let mut flags = 0;
    let a = if fpu.is_empty(0) {
        flags = sf::IE | SF;
        INDEFINITE
    } else {
        fpu.st_reg(0)
    };
    let b = if fpu.is_empty(i) {
        flags = sf::IE | SF;
        INDEFINITE
    } else {
        fpu.st_reg(i)
    };
    if !fpu.commit(flags) {
        fpu.set_st_reg(0, b);
        fpu.set_st_reg(i, a);
    }
    Ok(())
}

fn ffree<const POP: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    let p = cpu.fpu.phys(st_index(d.i.op0_register()));
    cpu.fpu.empty |= 1 << p;
    if POP {
        cpu.fpu.pop();
    }
    Ok(())
}

fn fincdecstp<const INC: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    let f = &mut cpu.fpu;
    f.top = if INC { f.top.wrapping_add(1) } else { f.top.wrapping_sub(1) } & 7;
    f.sw &= !SW_C1;
    Ok(())
}

fn fnop(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    Ok(())
}

/// fcmovcc: copy ST(i) to ST(0) if the EFLAGS condition holds.
fn fcmov(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    note(cpu, d);
    let take = match d.i.mnemonic() {
        M::Fcmovb => cpu.cf(),
        M::Fcmove => cpu.zf(),
        M::Fcmovbe => cpu.cf() || cpu.zf(),
        M::Fcmovu => cpu.pf(),
        M::Fcmovnb => !cpu.cf(),
        M::Fcmovne => !cpu.zf(),
        M::Fcmovnbe => !(cpu.cf() || cpu.zf()),
        _ => !cpu.pf(),
    };
    let (_, i) = reg_pair(&d.i);
    let fpu = &mut cpu.fpu;
    if fpu.is_empty(0) || fpu.is_empty(i) {
        if !fpu.commit(sf::IE | SF) {
            fpu.set_st_reg(0, INDEFINITE);
        }
        return Ok(());
    }
    fpu.commit(0);
    if take {
        let v = fpu.st_reg(i);
        fpu.set_st_reg(0, v);
    }
    Ok(())
}

/// The memory operand kind of a load/store/arithmetic form.
pub fn kind_of(i: &Instruction) -> u8 {
    if i.op_count() == 0 || i.op0_kind() != OpKind::Memory {
        return REG;
    }
    match i.memory_size() {
        MemorySize::Float32 => M32F,
        MemorySize::Float64 => M64F,
        MemorySize::Float80 => M80F,
        MemorySize::Int16 => M16I,
        MemorySize::Int32 => M32I,
        _ => M64I,
    }
}

macro_rules! by_kind {
    ($f:ident, $($c:expr),*) => {
        |k: u8| -> Handler {
            match k {
                M32F => $f::<$($c,)* M32F>,
                M64F => $f::<$($c,)* M64F>,
                M16I => $f::<$($c,)* M16I>,
                M32I => $f::<$($c,)* M32I>,
                _ => $f::<$($c,)* REG>,
            }
        }
    };
}

fn arith_handler(op: u8, k: u8, pop: bool) -> Handler {
    match (op, pop) {
        (ADD, false) => by_kind!(farith_np, ADD)(k),
        (MUL, false) => by_kind!(farith_np, MUL)(k),
        (SUB, false) => by_kind!(farith_np, SUB)(k),
        (SUBR, false) => by_kind!(farith_np, SUBR)(k),
        (DIV, false) => by_kind!(farith_np, DIV)(k),
        (DIVR, false) => by_kind!(farith_np, DIVR)(k),
        (ADD, true) => farith::<ADD, REG, true>,
        (MUL, true) => farith::<MUL, REG, true>,
        (SUB, true) => farith::<SUB, REG, true>,
        (SUBR, true) => farith::<SUBR, REG, true>,
        (DIV, true) => farith::<DIV, REG, true>,
        _ => farith::<DIVR, REG, true>,
    }
}

fn farith_np<const OP: u8, const K: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    farith::<OP, K, false>(cpu, d)
}

pub fn pick(i: &Instruction) -> Option<Handler> {
    let k = kind_of(i);
    Some(match i.mnemonic() {
        M::Fld | M::Fild => match k {
            M32F => fld::<M32F>,
            M64F => fld::<M64F>,
            M80F => fld::<M80F>,
            M16I => fld::<M16I>,
            M32I => fld::<M32I>,
            M64I => fld::<M64I>,
            _ => fld::<REG>,
        },
        M::Fst | M::Fist => match k {
            M32F => fst::<M32F, false>,
            M64F => fst::<M64F, false>,
            M16I => fst::<M16I, false>,
            M32I => fst::<M32I, false>,
            _ => fst::<REG, false>,
        },
        M::Fstp | M::Fistp | M::Fstpnce => match k {
            M32F => fst::<M32F, true>,
            M64F => fst::<M64F, true>,
            M80F => fst::<M80F, true>,
            M16I => fst::<M16I, true>,
            M32I => fst::<M32I, true>,
            M64I => fst::<M64I, true>,
            _ => fst::<REG, true>,
        },
        M::Fld1 | M::Fldz | M::Fldpi | M::Fldl2e | M::Fldl2t | M::Fldlg2 | M::Fldln2 => fldconst,
        M::Fadd | M::Fiadd => arith_handler(ADD, k, false),
        M::Fmul | M::Fimul => arith_handler(MUL, k, false),
        M::Fsub | M::Fisub => arith_handler(SUB, k, false),
        M::Fsubr | M::Fisubr => arith_handler(SUBR, k, false),
        M::Fdiv | M::Fidiv => arith_handler(DIV, k, false),
        M::Fdivr | M::Fidivr => arith_handler(DIVR, k, false),
        M::Faddp => arith_handler(ADD, REG, true),
        M::Fmulp => arith_handler(MUL, REG, true),
        M::Fsubp => arith_handler(SUB, REG, true),
        M::Fsubrp => arith_handler(SUBR, REG, true),
        M::Fdivp => arith_handler(DIV, REG, true),
        M::Fdivrp => arith_handler(DIVR, REG, true),
        M::Fchs => unary::<CHS>,
        M::Fabs => unary::<ABS>,
        M::Fsqrt => unary::<SQRT>,
        M::Frndint => unary::<RNDINT>,
        M::Fscale => fscale,
        M::Fxtract => fxtract,
        M::Fxch => fxch,
        M::Ffree => ffree::<false>,
        M::Ffreep => ffree::<true>,
        M::Fincstp => fincdecstp::<true>,
        M::Fdecstp => fincdecstp::<false>,
        M::Fnop => fnop,
        M::Fcmovb | M::Fcmove | M::Fcmovbe | M::Fcmovu | M::Fcmovnb | M::Fcmovne | M::Fcmovnbe | M::Fcmovnu => fcmov,
        _ => return None,
    })
}

#[allow(dead_code)]
fn _unused(_: Register) {}

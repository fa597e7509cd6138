//! Specialised handlers for the most common instruction forms.
//!
// H:260 The generic handlers work for every operand form but ask the decoded
// instruction, at run time, what its operands are: register or memory,
// which register, what size.  That costs more than the operation itself.
// The forms that make up most of any program (register and memory moves,
// the ALU on registers, immediates and memory, inc/dec, push/pop, the
// branches) get handlers of their own here, one per operation, size and
// form, generated from const generics.  Their operands were resolved at
// decode time into `DInsn`: register numbers in `r0`/`r1`, the immediate in
// `imm`, the memory operand's parts in `m`.  Everything else keeps the
// generic path, which stays the reference for what each instruction does.

use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

use super::R;
use crate::cpu::decode::{DInsn, Handler, MemOp, Next, Pair, NO_REG};
use crate::cpu::flags::{mask, FlagOp};
use crate::cpu::state::{Cpu, SegReg, Stop, ESP};

/// Read register `r` (x86 encoding) at size S bytes.
#[inline(always)]
pub fn rget<const S: u8>(cpu: &Cpu, r: u8) -> u32 {
    match S {
        4 => cpu.regs[r as usize & 7],
        2 => cpu.regs[r as usize & 7] & 0xffff,
        _ => (cpu.regs[(r & 3) as usize] >> ((r & 4) * 2)) & 0xff,
    }
}

#[inline(always)]
pub fn rset<const S: u8>(cpu: &mut Cpu, r: u8, v: u32) {
    match S {
        4 => cpu.regs[r as usize & 7] = v,
        2 => {
            let x = &mut cpu.regs[r as usize & 7];
            *x = (*x & 0xffff_0000) | (v & 0xffff);
        }
        _ => {
            let sh = (r & 4) * 2;
            let x = &mut cpu.regs[(r & 3) as usize];
            *x = (*x & !(0xff << sh)) | ((v & 0xff) << sh);
        }
    }
}

/// Linear address of a pre-decoded 32-bit-addressing memory operand.
#[inline(always)]
pub fn mlin(cpu: &Cpu, m: &MemOp) -> u32 {
    mlin_form::<2>(cpu, m)
}

/// H:263 The three shapes of a memory operand, told apart at decode time
/// for the commonest moves: `[disp]` (0), `[base + disp]` (1, by far the
/// most frequent: stack slots and structure fields) and everything else (2).
/// The first two skip the index arithmetic altogether.
#[inline(always)]
fn mlin_form<const F: u8>(cpu: &Cpu, m: &MemOp) -> u32 {
    let a = match F {
        0 => m.disp,
        1 => m.disp.wrapping_add(cpu.regs[m.base as usize & 7]),
        _ => m.offset(&cpu.regs),
    };
    // SAFETY: `mem_op` only ever stores a `SegReg` number, below 6.
    unsafe { cpu.segs.get_unchecked(m.seg as usize) }.base.wrapping_add(a)
}

/// The form number of a decoded memory operand (see `mlin_form`).
fn form_of(m: &MemOp) -> u8 {
    match (m.base_mask, m.index_mask) {
        (0, 0) => 0,
        (_, 0) => 1,
        _ => 2,
    }
}

macro_rules! by_form {
    ($m:expr, $s:expr, $f:ident) => {
        match form_of(&$m) {
            0 => by_size!(mem; $s, $f, 0),
            1 => by_size!(mem; $s, $f, 1),
            _ => by_size!(mem; $s, $f, 2),
        }
    };
}

/// Both handlers of a memory instruction written once for both loops
/// (H:266): `f` with its constant arguments, then `Exact` or `Fast`.
macro_rules! mem {
    ($f:ident; $($c:expr),*) => {
        Pair { one: $f::<$($c,)* Exact>, fast: $f::<$($c,)* Fast>, pred: None }
    };
}

#[inline(always)]
fn mread<const S: u8>(cpu: &mut Cpu, lin: u32) -> Result<u32, crate::cpu::state::Fault> {
    match S {
        4 => cpu.read_u32(lin),
        2 => cpu.read_u16(lin).map(|v| v as u32),
        _ => cpu.read_u8(lin).map(|v| v as u32),
    }
}

#[inline(always)]
fn mwrite<const S: u8>(cpu: &mut Cpu, lin: u32, v: u32) -> Result<(), crate::cpu::state::Fault> {
    match S {
        4 => cpu.write_u32(lin, v),
        2 => cpu.write_u16(lin, v as u16),
        _ => cpu.write_u8(lin, v as u8),
    }
}

use super::alu::{writes, ADC, ADD, AND, CMP, OR, SBB, SUB, TEST, XOR};

/// The ALU operation at size S (see `alu::compute`).
#[inline(always)]
fn alu<const OP: u8, const S: u8>(cpu: &mut Cpu, a: u32, b: u32) -> u32 {
    super::alu::compute::<OP>(cpu, S * 8, a, b)
}

fn alu_rr<const OP: u8, const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let a = rget::<S>(cpu, d.r0);
    let b = rget::<S>(cpu, d.r1);
    let r = alu::<OP, S>(cpu, a, b);
    if writes(OP) {
        rset::<S>(cpu, d.r0, r);
    }
    Ok(())
}

fn alu_ri<const OP: u8, const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let a = rget::<S>(cpu, d.r0);
    let r = alu::<OP, S>(cpu, a, d.imm);
    if writes(OP) {
        rset::<S>(cpu, d.r0, r);
    }
    Ok(())
}




fn mov_rr<const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let v = rget::<S>(cpu, d.r1);
    rset::<S>(cpu, d.r0, v);
    Ok(())
}

fn mov_ri<const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    rset::<S>(cpu, d.r0, d.imm);
    Ok(())
}




fn lea32(cpu: &mut Cpu, d: &DInsn) -> R {
    let m = &d.m;
    cpu.regs[d.r0 as usize & 7] = m.offset(&cpu.regs);
    Ok(())
}

#[inline(always)]
pub fn incdec<const S: u8>(cpu: &mut Cpu, a: u32, dec: bool) -> u32 {
    let bits = S * 8;
    let res = if dec { a.wrapping_sub(1) } else { a.wrapping_add(1) } & mask(bits);
    cpu.lazy.op = if dec { FlagOp::Dec } else { FlagOp::Inc };
    cpu.lazy.bits = bits;
    cpu.lazy.res = res;
    res
}

fn incdec_r<const DEC: bool, const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let a = rget::<S>(cpu, d.r0);
    let r = incdec::<S>(cpu, a, DEC);
    rset::<S>(cpu, d.r0, r);
    Ok(())
}



fn push_i<X: Ret>(cpu: &mut Cpu, d: &DInsn) -> X::Out {
    if let Some(p) = cpu.tlb_write_hit(stack_lin(cpu, 4u32.wrapping_neg()), 4) {
        poke::<4>(p, d.imm);
        cpu.regs[ESP] = cpu.regs[ESP].wrapping_sub(4);
        return X::done(d);
    }
    X::slow(cpu, d, slow::push_i)
}


pub fn jcc<const CC: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    if cpu.cond(CC) {
        cpu.next_eip = cpu.next_eip.wrapping_add(d.rel);
        return Err(Stop::TAKEN);
    }
    Ok(())
}

fn jmp_rel(cpu: &mut Cpu, d: &DInsn) -> R {
    cpu.next_eip = cpu.next_eip.wrapping_add(d.rel);
    Ok(())
}



fn movzx_rr<const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let v = rget::<S>(cpu, d.r1);
    cpu.regs[d.r0 as usize & 7] = v;
    Ok(())
}


#[inline(always)]
fn sext<const S: u8>(v: u32) -> u32 {
    if S == 1 {
        v as u8 as i8 as i32 as u32
    } else {
        v as u16 as i16 as i32 as u32
    }
}

fn movsx_rr<const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let v = rget::<S>(cpu, d.r1);
    cpu.regs[d.r0 as usize & 7] = sext::<S>(v);
    Ok(())
}


// H:265 Loads and stores in two halves.  The common case, a TLB hit, is a
// few instructions; the miss path calls into the MMU and may fault, and
// merely having it in the same function made the compiler save and restore
// registers on every call.  So each memory handler below tries the hit
// alone and otherwise hands the whole instruction to its `slow` twin, a
// call in tail position that costs the hit path nothing.

/// An S-byte load if the TLB has it now.
#[inline(always)]
fn peek<const S: u8>(cpu: &Cpu, lin: u32) -> Option<u32> {
    cpu.tlb_read_hit(lin, S as u32).map(host_read::<S>)
}

/// Store S bytes at a host address from `tlb_write_hit`.
#[inline(always)]
fn poke<const S: u8>(p: *mut u8, v: u32) {
    // SAFETY: `p` came from a write-TLB hit for this access: inside one
    // checked guest page that holds no decoded code.
    unsafe {
        match S {
            4 => std::ptr::write_unaligned(p as *mut u32, v),
            2 => std::ptr::write_unaligned(p as *mut u16, v as u16),
            _ => *p = v as u8,
        }
    }
}

/// An S-byte load at a host address from a TLB hit for this access (a
/// read hit, or a write hit in the read-modify-write forms).
#[inline(always)]
fn host_read<const S: u8>(p: *const u8) -> u32 {
    // SAFETY: a hit means the access lies inside one guest page that passed
    // the memory bounds check (H:407); a writable page is readable.
    unsafe {
        match S {
            4 => std::ptr::read_unaligned(p as *const u32),
            2 => std::ptr::read_unaligned(p as *const u16) as u32,
            _ => *p as u32,
        }
    }
}

fn alu_rm<const OP: u8, const S: u8, X: Ret>(cpu: &mut Cpu, d: &DInsn) -> X::Out {
    let lin = mlin(cpu, &d.m);
    if let Some(b) = peek::<S>(cpu, lin) {
        let a = rget::<S>(cpu, d.r0);
        let r = alu::<OP, S>(cpu, a, b);
        if writes(OP) {
            rset::<S>(cpu, d.r0, r);
        }
        return X::done(d);
    }
    X::slow(cpu, d, slow::alu_rm::<OP, S>)
}

/// `[mem] OP= source`: a register (`r1`), or with `IMM` the immediate.
#[inline(always)]
fn alu_source<const IMM: bool, const S: u8>(cpu: &Cpu, d: &DInsn) -> u32 {
    if IMM {
        d.imm
    } else {
        rget::<S>(cpu, d.r1)
    }
}

fn alu_m<const OP: u8, const IMM: bool, const S: u8, X: Ret>(cpu: &mut Cpu, d: &DInsn) -> X::Out {
    let lin = mlin(cpu, &d.m);
    if writes(OP) {
        if let Some(p) = cpu.tlb_write_hit(lin, S as u32) {
            let b = alu_source::<IMM, S>(cpu, d);
            let r = alu::<OP, S>(cpu, host_read::<S>(p), b);
            poke::<S>(p, r);
            return X::done(d);
        }
    } else if let Some(a) = peek::<S>(cpu, lin) {
        let b = alu_source::<IMM, S>(cpu, d);
        alu::<OP, S>(cpu, a, b);
        return X::done(d);
    }
    X::slow(cpu, d, slow::alu_m::<OP, IMM, S>)
}

fn mov_rm<const F: u8, const S: u8, X: Ret>(cpu: &mut Cpu, d: &DInsn) -> X::Out {
    let lin = mlin_form::<F>(cpu, &d.m);
    if let Some(v) = peek::<S>(cpu, lin) {
        rset::<S>(cpu, d.r0, v);
        return X::done(d);
    }
    X::slow(cpu, d, slow::mov_rm::<S>)
}

fn mov_mr<const F: u8, const S: u8, X: Ret>(cpu: &mut Cpu, d: &DInsn) -> X::Out {
    let lin = mlin_form::<F>(cpu, &d.m);
    if let Some(p) = cpu.tlb_write_hit(lin, S as u32) {
        poke::<S>(p, rget::<S>(cpu, d.r1));
        return X::done(d);
    }
    X::slow(cpu, d, slow::mov_mr::<S>)
}

fn mov_mi<const F: u8, const S: u8, X: Ret>(cpu: &mut Cpu, d: &DInsn) -> X::Out {
    let lin = mlin_form::<F>(cpu, &d.m);
    if let Some(p) = cpu.tlb_write_hit(lin, S as u32) {
        poke::<S>(p, d.imm);
        return X::done(d);
    }
    X::slow(cpu, d, slow::mov_mi::<S>)
}

fn incdec_m<const DEC: bool, const S: u8, X: Ret>(cpu: &mut Cpu, d: &DInsn) -> X::Out {
    let lin = mlin(cpu, &d.m);
    if let Some(p) = cpu.tlb_write_hit(lin, S as u32) {
        let r = incdec::<S>(cpu, host_read::<S>(p), DEC);
        poke::<S>(p, r);
        return X::done(d);
    }
    X::slow(cpu, d, slow::incdec_m::<DEC, S>)
}

/// The linear address of the stack slot `delta` bytes from ESP.
#[inline(always)]
fn stack_lin(cpu: &Cpu, delta: u32) -> u32 {
    cpu.segs[SegReg::Ss as usize].base.wrapping_add(cpu.regs[ESP].wrapping_add(delta))
}

fn push_r<X: Ret>(cpu: &mut Cpu, d: &DInsn) -> X::Out {
    if let Some(p) = cpu.tlb_write_hit(stack_lin(cpu, 4u32.wrapping_neg()), 4) {
        poke::<4>(p, cpu.regs[d.r0 as usize & 7]);
        cpu.regs[ESP] = cpu.regs[ESP].wrapping_sub(4);
        return X::done(d);
    }
    X::slow(cpu, d, slow::push_r)
}

fn pop_r<X: Ret>(cpu: &mut Cpu, d: &DInsn) -> X::Out {
    if let Some(v) = peek::<4>(cpu, stack_lin(cpu, 0)) {
        cpu.regs[ESP] = cpu.regs[ESP].wrapping_add(4);
        cpu.regs[d.r0 as usize & 7] = v;
        return X::done(d);
    }
    X::slow(cpu, d, slow::pop_r)
}

fn call_rel(cpu: &mut Cpu, d: &DInsn) -> R {
    if let Some(p) = cpu.tlb_write_hit(stack_lin(cpu, 4u32.wrapping_neg()), 4) {
        let ret = cpu.next_eip;
        poke::<4>(p, ret);
        cpu.regs[ESP] = cpu.regs[ESP].wrapping_sub(4);
        cpu.next_eip = ret.wrapping_add(d.rel);
        return Ok(());
    }
    slow::call_rel(cpu, d)
}

fn ret_near(cpu: &mut Cpu, d: &DInsn) -> R {
    if let Some(v) = peek::<4>(cpu, stack_lin(cpu, 0)) {
        cpu.regs[ESP] = cpu.regs[ESP].wrapping_add(4);
        cpu.next_eip = v;
        return Ok(());
    }
    slow::ret_near(cpu, d)
}

fn movzx_rm<const F: u8, const S: u8, X: Ret>(cpu: &mut Cpu, d: &DInsn) -> X::Out {
    let lin = mlin_form::<F>(cpu, &d.m);
    if let Some(v) = peek::<S>(cpu, lin) {
        cpu.regs[d.r0 as usize & 7] = v;
        return X::done(d);
    }
    X::slow(cpu, d, slow::movzx_rm::<S>)
}

fn movsx_rm<const S: u8, X: Ret>(cpu: &mut Cpu, d: &DInsn) -> X::Out {
    let lin = mlin(cpu, &d.m);
    if let Some(v) = peek::<S>(cpu, lin) {
        cpu.regs[d.r0 as usize & 7] = sext::<S>(v);
        return X::done(d);
    }
    X::slow(cpu, d, slow::movsx_rm::<S>)
}

/// The same instructions with the TLB's miss path (and its faults).
mod slow;

// H:266 The memory handlers above are written once for both loops: `X`
// says how they finish.  For the exact loop (`Exact`) they return an `R`;
// for the fast loop (`Fast`) they return the next entry, and their miss
// path is a tail call to `slow_next`, which runs the slow twin and looks at
// its outcome.  So the hit path, which can neither fault nor end the block
// (a write hit is never to a page of code), has no outcome to inspect and
// no registers to save for after a call: it does its access and returns
// the next entry.
pub trait Ret {
    type Out;
    fn done(d: &DInsn) -> Self::Out;
    fn slow(cpu: &mut Cpu, d: &DInsn, f: Handler) -> Self::Out;
}

/// Finish for the instruction-exact loop.
pub struct Exact;
/// Finish for the fast loop.
pub struct Fast;

impl Ret for Exact {
    type Out = R;
    #[inline(always)]
    fn done(_: &DInsn) -> R {
        Ok(())
    }
    #[inline(always)]
    fn slow(cpu: &mut Cpu, d: &DInsn, f: Handler) -> R {
        f(cpu, d)
    }
}

impl Ret for Fast {
    type Out = Next;
    #[inline(always)]
    fn done(d: &DInsn) -> Next {
        Next::after(d)
    }
    #[inline(always)]
    fn slow(cpu: &mut Cpu, d: &DInsn, f: Handler) -> Next {
        slow_next(cpu, d, f)
    }
}

/// A memory handler's miss path in the fast loop (H:266).
#[inline(never)]
fn slow_next(cpu: &mut Cpu, d: &DInsn, f: Handler) -> Next {
    let r = f(cpu, d);
    crate::cpu::run::after_plain(cpu, d, r)
}

/// A shift (`KIND` 0 shl, 1 shr, 2 sar, 3 shr by one) of a `bits`-wide value by a count
/// of 1 to 31, masked to the size, and the lazy-flags operation that
/// describes it.
#[inline(always)]
pub fn shift<const KIND: u8>(a: u32, c: u32, bits: u8) -> (u32, FlagOp) {
    let (res, op) = match KIND {
        0 => (a << c, FlagOp::Shl),
        1 => (a >> c, FlagOp::Shr),
        // (Only ever with a count of one.)
        3 => (a >> 1, FlagOp::Shr1),
        _ => (((crate::cpu::flags::sign_extend(a, bits) as i32) >> c) as u32, FlagOp::Sar),
    };
    (res & mask(bits), op)
}

/// `shift` with the kind as a value, for tests.
#[cfg(test)]
pub fn shift_for_test(kind: u8, a: u32, c: u32) -> (u32, FlagOp) {
    match kind {
        0 => shift::<0>(a, c, 32),
        1 => shift::<1>(a, c, 32),
        _ => shift::<2>(a, c, 32),
    }
}

/// Shifts of a 32-bit register by an immediate or the implicit 1 (in
/// `imm`), or by CL (`CL`).
fn shift_r32<const KIND: u8, const CL: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    let c = if CL { cpu.regs[1] } else { d.imm } & 0x1f;
    if c == 0 {
        return Ok(());
    }
    let a = cpu.regs[d.r0 as usize & 7];
    let (res, op) = shift::<KIND>(a, c, 32);
    cpu.regs[d.r0 as usize & 7] = res;
    cpu.lazy.set(op, 32, a, c, res);
    Ok(())
}

/// Shifts of an 8- or 16-bit register by an immediate, 1 or CL (`CL`).
fn shift_small<const KIND: u8, const CL: bool, const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let c = if CL { cpu.regs[1] } else { d.imm } & 0x1f;
    if c == 0 {
        return Ok(());
    }
    let bits = S * 8;
    let a = rget::<S>(cpu, d.r0);
    let (res, op) = shift::<KIND>(a, c, bits);
    rset::<S>(cpu, d.r0, res);
    cpu.lazy.set(op, bits, a, c, res);
    Ok(())
}

/// Shifts of memory by an immediate, 1 or CL, through a write-TLB hit;
/// anything else goes to the generic handler of the same instruction.
fn shift_m<const KIND: u8, const CL: bool, const S: u8, X: Ret>(cpu: &mut Cpu, d: &DInsn) -> X::Out {
    let lin = mlin(cpu, &d.m);
    let Some(p) = cpu.tlb_write_hit(lin, S as u32) else {
        let generic: Handler = match KIND {
            0 => super::alu::shl,
            1 => super::alu::shr,
            _ => super::alu::sar,
        };
        return X::slow(cpu, d, generic);
    };
    let c = if CL { cpu.regs[1] } else { d.imm } & 0x1f;
    if c == 0 {
        return X::done(d);
    }
    let bits = S * 8;
    let a = host_read::<S>(p);
    let (res, op) = shift::<KIND>(a, c, bits);
    poke::<S>(p, res);
    cpu.lazy.set(op, bits, a, c, res);
    X::done(d)
}

fn not_r<const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let a = rget::<S>(cpu, d.r0);
    rset::<S>(cpu, d.r0, !a);
    Ok(())
}

fn neg_r<const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let a = rget::<S>(cpu, d.r0);
    let res = 0u32.wrapping_sub(a);
    rset::<S>(cpu, d.r0, res);
    cpu.lazy.set(FlagOp::Sub, S * 8, 0, a, res);
    Ok(())
}

/// x86 number of a general register of any size, if it is one.
pub fn gpr_code(r: Register) -> Option<u8> {
    let v = r as u32;
    let ranges = [(Register::EAX as u32, Register::EDI as u32), (Register::AX as u32, Register::DI as u32), (Register::AL as u32, Register::BH as u32)];
    for (lo, hi) in ranges {
        if (lo..=hi).contains(&v) {
            return Some((v - lo) as u8);
        }
    }
    None
}

/// Pre-decode the memory operand for the fast handlers (32-bit addressing only).
pub fn mem_op(i: &Instruction) -> Option<MemOp> {
    let base = match i.memory_base() {
        Register::None => NO_REG,
        r if r.is_gpr32() => gpr_code(r)?,
        _ => return None,
    };
    let index = match i.memory_index() {
        Register::None => NO_REG,
        r if r.is_gpr32() => gpr_code(r)?,
        _ => return None,
    };
    let seg = super::seg_of(i.memory_segment()) as u8;
    let mask = |r: u8| if r == NO_REG { 0 } else { u32::MAX };
    Some(MemOp {
        disp: i.memory_displacement32(),
        base_mask: mask(base),
        index_mask: mask(index),
        base: base & 7,
        index: index & 7,
        shift: i.memory_index_scale().trailing_zeros() as u8,
        seg,
    })
}

macro_rules! by_size {
    (mem; $s:expr, $f:ident $(, $c:expr)*) => {
        match $s {
            1 => mem!($f; $($c,)* 1),
            2 => mem!($f; $($c,)* 2),
            _ => mem!($f; $($c,)* 4),
        }
    };
    ($w:ident; $s:expr, $f:ident $(, $c:expr)*) => {
        match $s {
            1 => $w!($f::<$($c,)* 1>),
            2 => $w!($f::<$($c,)* 2>),
            _ => $w!($f::<$($c,)* 4>),
        }
    };
    ($s:expr, $f:ident $(, $c:expr)*) => {
        by_size!(plain; $s, $f $(, $c)*)
    };
}

macro_rules! alu_op {
    ($w:ident; $op:expr, $form:ident $(, $c:expr)*; $s:expr) => {
        match $op {
            ADD => by_size!($w; $s, $form, ADD $(, $c)*),
            OR => by_size!($w; $s, $form, OR $(, $c)*),
            ADC => by_size!($w; $s, $form, ADC $(, $c)*),
            SBB => by_size!($w; $s, $form, SBB $(, $c)*),
            AND => by_size!($w; $s, $form, AND $(, $c)*),
            SUB => by_size!($w; $s, $form, SUB $(, $c)*),
            XOR => by_size!($w; $s, $form, XOR $(, $c)*),
            CMP => by_size!($w; $s, $form, CMP $(, $c)*),
            _ => by_size!($w; $s, $form, TEST $(, $c)*),
        }
    };
}

fn jcc_handler(cc: u8) -> Pair {
    match cc {
        0 => control!(jcc::<0>),
        1 => control!(jcc::<1>),
        2 => control!(jcc::<2>),
        3 => control!(jcc::<3>),
        4 => control!(jcc::<4>),
        5 => control!(jcc::<5>),
        6 => control!(jcc::<6>),
        7 => control!(jcc::<7>),
        8 => control!(jcc::<8>),
        9 => control!(jcc::<9>),
        10 => control!(jcc::<10>),
        11 => control!(jcc::<11>),
        12 => control!(jcc::<12>),
        13 => control!(jcc::<13>),
        14 => control!(jcc::<14>),
        _ => control!(jcc::<15>),
    }
}

/// H:270 Pick a specialised handler and fill in the pre-decoded operands, or
/// say None to keep the generic one.
pub fn specialize(i: &Instruction, d: &mut DInsn) -> Option<Pair> {
    use Mnemonic as M;
    if i.has_lock_prefix() && i.op0_kind() != OpKind::Memory {
        return None;
    }
    let k0 = if i.op_count() > 0 { i.op0_kind() } else { OpKind::Register };
    let k1 = if i.op_count() > 1 { i.op1_kind() } else { OpKind::Register };
    let s = d.size;
    let is_imm = |k: OpKind| matches!(k, OpKind::Immediate8 | OpKind::Immediate16 | OpKind::Immediate32 | OpKind::Immediate8to16 | OpKind::Immediate8to32);
    let mnem = i.mnemonic();
    // Operands resolved once, here.
    if i.op_count() > 0 && k0 == OpKind::Register {
        d.r0 = gpr_code(i.op0_register()).unwrap_or(NO_REG);
    }
    if i.op_count() > 1 && k1 == OpKind::Register {
        d.r1 = gpr_code(i.op1_register()).unwrap_or(NO_REG);
    }
    if i.op_count() > 1 && is_imm(k1) {
        d.imm = (i.immediate(1) as u32) & mask(s * 8);
    }
    let has_mem = k0 == OpKind::Memory || k1 == OpKind::Memory;
    if has_mem {
        d.m = mem_op(i)?;
    }
    let n = i.op_count();
    let regs_ok = (n < 1 || k0 != OpKind::Register || d.r0 != NO_REG) && (n < 2 || k1 != OpKind::Register || d.r1 != NO_REG);
    if !regs_ok || !matches!(s, 1 | 2 | 4) {
        return None;
    }
    let op = match mnem {
        M::Add => Some(ADD),
        M::Or => Some(OR),
        M::Adc => Some(ADC),
        M::Sbb => Some(SBB),
        M::And => Some(AND),
        M::Sub => Some(SUB),
        M::Xor => Some(XOR),
        M::Cmp => Some(CMP),
        M::Test => Some(TEST),
        _ => None,
    };
    if let Some(op) = op {
        if i.op_count() != 2 {
            return None;
        }
        if s == 4 {
            d.fuse = match (op, k0, k1) {
                (CMP, OpKind::Register, OpKind::Register) => super::fuse::CMP_RR,
                (CMP, OpKind::Register, k) if is_imm(k) => super::fuse::CMP_RI,
                (TEST, OpKind::Register, OpKind::Register) => super::fuse::TEST_RR,
                (_, OpKind::Register, OpKind::Register) => super::fuse::ALU_RR + op,
                (_, OpKind::Register, k) if is_imm(k) => super::fuse::ALU_RI + op,
                _ => 0,
            };
        }
        return Some(match (k0, k1) {
            (OpKind::Register, OpKind::Register) => alu_op!(regs; op, alu_rr; s),
            (OpKind::Register, OpKind::Memory) => alu_op!(mem; op, alu_rm; s),
            (OpKind::Memory, OpKind::Register) => alu_op!(mem; op, alu_m, false; s),
            (OpKind::Register, k) if is_imm(k) => alu_op!(regs; op, alu_ri; s),
            (OpKind::Memory, k) if is_imm(k) => alu_op!(mem; op, alu_m, true; s),
            _ => return None,
        });
    }
    match mnem {
        M::Mov if i.op_count() == 2 => match (k0, k1) {
            (OpKind::Register, OpKind::Register) => Some(by_size!(regs; s, mov_rr)),
            (OpKind::Register, OpKind::Memory) => Some(by_form!(d.m, s, mov_rm)),
            (OpKind::Memory, OpKind::Register) => Some(by_form!(d.m, s, mov_mr)),
            (OpKind::Register, k) if is_imm(k) => Some(by_size!(regs; s, mov_ri)),
            (OpKind::Memory, k) if is_imm(k) => Some(by_form!(d.m, s, mov_mi)),
            _ => None,
        },
        M::Lea if s == 4 => {
            d.m = mem_op(i)?;
            Some(regs!(lea32))
        }
        M::Inc | M::Dec => {
            let dec = mnem == M::Dec;
            if s == 4 && k0 == OpKind::Register {
                d.fuse = if dec { super::fuse::DEC_R } else { super::fuse::INC_R };
            }
            match (k0, dec) {
                (OpKind::Register, false) => Some(by_size!(regs; s, incdec_r, false)),
                (OpKind::Register, true) => Some(by_size!(regs; s, incdec_r, true)),
                (OpKind::Memory, false) => Some(by_size!(mem; s, incdec_m, false)),
                (OpKind::Memory, true) => Some(by_size!(mem; s, incdec_m, true)),
                _ => None,
            }
        }
        M::Push if i.code() == Code::Push_r32 => Some(mem!(push_r;)),
        M::Push if matches!(i.code(), Code::Pushd_imm32 | Code::Pushd_imm8) => {
            d.imm = i.immediate(0) as u32;
            Some(mem!(push_i;))
        }
        M::Pop if i.code() == Code::Pop_r32 => Some(mem!(pop_r;)),
        _ if i.condition_code() != iced_x86::ConditionCode::None && matches!(k0, OpKind::NearBranch32) && mnem != M::Loop => {
            if matches!(mnem, M::Loope | M::Loopne | M::Jecxz) {
                return None;
            }
            Some(jcc_handler(i.condition_code() as u8 - 1))
        }
        M::Jmp if k0 == OpKind::NearBranch32 => Some(control!(jmp_rel)),
        M::Call if k0 == OpKind::NearBranch32 => Some(control!(call_rel)),
        M::Ret if i.code() == Code::Retnd => Some(control!(ret_near)),
        M::Movzx if s == 4 => {
            let s1 = super::op_size(i, 1);
            match (k1, s1) {
                (OpKind::Register, 1) => Some(regs!(movzx_rr::<1>)),
                (OpKind::Register, 2) => Some(regs!(movzx_rr::<2>)),
                (OpKind::Memory, 1 | 2) => Some(match form_of(&d.m) {
                    0 => by_size!(mem; s1, movzx_rm, 0),
                    1 => by_size!(mem; s1, movzx_rm, 1),
                    _ => by_size!(mem; s1, movzx_rm, 2),
                }),
                _ => None,
            }
        }
        M::Movsx if s == 4 => {
            let s1 = super::op_size(i, 1);
            match (k1, s1) {
                (OpKind::Register, 1) => Some(regs!(movsx_rr::<1>)),
                (OpKind::Register, 2) => Some(regs!(movsx_rr::<2>)),
                (OpKind::Memory, 1) => Some(mem!(movsx_rm; 1)),
                (OpKind::Memory, 2) => Some(mem!(movsx_rm; 2)),
                _ => None,
            }
        }
        M::Not if k0 == OpKind::Register => Some(by_size!(regs; s, not_r)),
        M::Neg if k0 == OpKind::Register => Some(by_size!(regs; s, neg_r)),
        M::Shl | M::Sal | M::Shr | M::Sar if k0 == OpKind::Memory => {
            let by_cl = i.op_count() == 2 && k1 == OpKind::Register;
            if by_cl && i.op1_register() != Register::CL {
                return None;
            }
            d.imm = if i.op_count() < 2 { 1 } else if by_cl { 0 } else { i.immediate8() as u32 };
            Some(match (mnem, by_cl) {
                (M::Shr, false) => by_size!(mem; s, shift_m, 1, false),
                (M::Shr, true) => by_size!(mem; s, shift_m, 1, true),
                (M::Sar, false) => by_size!(mem; s, shift_m, 2, false),
                (M::Sar, true) => by_size!(mem; s, shift_m, 2, true),
                (_, false) => by_size!(mem; s, shift_m, 0, false),
                (_, true) => by_size!(mem; s, shift_m, 0, true),
            })
        }
        M::Shl | M::Sal | M::Shr | M::Sar if k0 == OpKind::Register => {
            // The count: the implicit 1, an immediate, or CL.
            let by_cl = i.op_count() == 2 && k1 == OpKind::Register;
            if by_cl && i.op1_register() != Register::CL {
                return None;
            }
            d.imm = if i.op_count() < 2 { 1 } else if by_cl { 0 } else { i.immediate8() as u32 };
            let kind = match mnem {
                M::Shr => 1,
                M::Sar => 2,
                _ => 0,
            };
            if s == 4 && !by_cl {
                // A right shift by one has its own flag record (`Shr1`).
                let kind = if kind == 1 && d.imm & 0x1f == 1 { 3 } else { kind };
                d.fuse = super::fuse::SHIFT_RI + kind;
            }
            Some(match (s, by_cl, kind) {
                (4, false, 0) => regs!(shift_r32::<0, false>),
                (4, false, 1) => regs!(shift_r32::<1, false>),
                (4, false, _) => regs!(shift_r32::<2, false>),
                (4, true, 0) => regs!(shift_r32::<0, true>),
                (4, true, 1) => regs!(shift_r32::<1, true>),
                (4, true, _) => regs!(shift_r32::<2, true>),
                (1, false, 0) => regs!(shift_small::<0, false, 1>),
                (1, false, 1) => regs!(shift_small::<1, false, 1>),
                (1, false, _) => regs!(shift_small::<2, false, 1>),
                (1, true, 0) => regs!(shift_small::<0, true, 1>),
                (1, true, 1) => regs!(shift_small::<1, true, 1>),
                (1, true, _) => regs!(shift_small::<2, true, 1>),
                (2, false, 0) => regs!(shift_small::<0, false, 2>),
                (2, false, 1) => regs!(shift_small::<1, false, 2>),
                (2, false, _) => regs!(shift_small::<2, false, 2>),
                (2, true, 0) => regs!(shift_small::<0, true, 2>),
                (2, true, 1) => regs!(shift_small::<1, true, 2>),
                (2, true, _) => regs!(shift_small::<2, true, 2>),
                _ => return None,
            })
        }
        _ => None,
    }
}

//! Compare-and-branch fusion.
//!
// H:280 Nearly every conditional branch follows the instruction that set
// its flags: `cmp`/`test`/`dec` and then `jcc`.  Processors fuse such pairs
// into one operation; so do we, at decode time.  The pair becomes one
// handler that computes the comparison, records the lazy flags (later code
// may still read them), decides the branch straight from the operands, and
// moves EIP past both instructions: one dispatch instead of two, and no
// lazy-flag evaluation for the branch.  The branch keeps its own entry in the
// block, which the fast loop skips and instruction-exact runs (a count
// budget or a stop address between the two) execute on its own.

use super::fast::rget;
use crate::cpu::decode::{DInsn, FastHandler, Next};
use crate::cpu::flags::{parity, FlagOp, Lazy};
use crate::cpu::state::Cpu;

/// What a fused handler returns: it only ever runs in the fast loop.
type R = Next;

pub const CMP_RR: u8 = 1;
pub const CMP_RI: u8 = 2;
pub const TEST_RR: u8 = 3;
pub const DEC_R: u8 = 4;
pub const INC_R: u8 = 5;
/// `ALU_RI + OP`, `ALU_RR + OP`: any other 32-bit ALU operation on a
/// register (op numbers from `alu`, below 16).
pub const ALU_RI: u8 = 16;
pub const ALU_RR: u8 = 32;
/// `SHIFT_RI + kind` (0 shl, 1 shr, 2 sar, 3 shr by one): a 32-bit register
/// shifted by an immediate or 1.
pub const SHIFT_RI: u8 = 48;

/// Condition `CC` after `a - b` (32-bit).
#[inline(always)]
fn cond_sub<const CC: u8>(a: u32, b: u32) -> bool {
    let r = a.wrapping_sub(b);
    let t = match CC >> 1 {
        0 => ((a ^ b) & (a ^ r)) >> 31 != 0,
        1 => a < b,
        2 => a == b,
        3 => a <= b,
        4 => r >> 31 != 0,
        5 => parity(r),
        6 => (a as i32) < (b as i32),
        _ => (a as i32) <= (b as i32),
    };
    t ^ (CC & 1 != 0)
}

/// Condition `CC` after `a & b` (CF = OF = 0).
#[inline(always)]
fn cond_and<const CC: u8>(a: u32, b: u32) -> bool {
    let r = a & b;
    let t = match CC >> 1 {
        0 | 1 => false,
        2 | 3 => r == 0,
        4 | 6 => r >> 31 != 0,
        5 => parity(r),
        _ => r == 0 || r >> 31 != 0,
    };
    t ^ (CC & 1 != 0)
}

/// Where a fused pair goes: the next entry, or the branch target, inside
/// the block if it can (H:259).  Leaving, `next_eip` becomes the target: a
/// fused entry's `end` is the end of the pair (`Block::new`).  With `PRED`,
/// the branch skips exactly one simple instruction, done without a branch
/// (H:287).
#[inline(always)]
fn branch<const PRED: bool>(cpu: &mut Cpu, d: &DInsn, taken: bool) -> R {
    if PRED {
        return predicated(cpu, d, taken);
    }
    if taken {
        if let Some(n) = crate::cpu::run::stay(cpu, d) {
            return n;
        }
        cpu.next_eip = cpu.eip.wrapping_add(d.end as i32 as u32).wrapping_add(d.rel);
        return Next::LEAVE;
    }
    Next::after_pair(d)
}

// H:287 A conditional branch over a single instruction is how code for the
// i386, which has no cmov, says "if (c) x ^= k" or "if (c) x = y".  When the
// condition follows the data (a CRC's low bit, a comparison in a sort) the
// host's branch predictor guesses it wrong half the time, and each wrong
// guess costs the host more than the two guest instructions are worth.  So
// when a fused pair's branch skips exactly one entry, and that entry works
// on registers alone and is reached no other way, the pair does not branch
// at all: it notes whether the branch was taken (`Cpu::pred_skip`) and goes
// on to the skipped entry, whose fast handler becomes its predicated twin
// (`DInsn::hp`, made by `exec::regs!`).  The twin does the instruction's
// work, then keeps or undoes it with conditional moves and takes itself out
// of the count if it was skipped.  The guest sees the same state either
// way, and the host has nothing to mispredict.  (No event check is needed:
// the branch goes forwards.)

#[inline(always)]
fn predicated(cpu: &mut Cpu, d: &DInsn, skip: bool) -> R {
    cpu.pred_skip = skip;
    Next::after_pair(d)
}

fn cmp_rr<const CC: u8, const PRED: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    let a = cpu.regs[d.r0 as usize & 7];
    let b = cpu.regs[d.r1 as usize & 7];
    cpu.lazy.set(FlagOp::Sub, 32, a, b, a.wrapping_sub(b));
    branch::<PRED>(cpu, d, cond_sub::<CC>(a, b))
}

fn cmp_ri<const CC: u8, const PRED: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    let a = cpu.regs[d.r0 as usize & 7];
    let b = d.imm;
    cpu.lazy.set(FlagOp::Sub, 32, a, b, a.wrapping_sub(b));
    branch::<PRED>(cpu, d, cond_sub::<CC>(a, b))
}

fn test_rr<const CC: u8, const PRED: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    let a = cpu.regs[d.r0 as usize & 7];
    let b = cpu.regs[d.r1 as usize & 7];
    cpu.lazy.set(FlagOp::Logic, 32, a, b, a & b);
    branch::<PRED>(cpu, d, cond_and::<CC>(a, b))
}

fn dec_r<const CC: u8, const PRED: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    incdec_j::<true, CC, PRED>(cpu, d)
}

/// inc/dec and a branch, with the flags worked out in a local copy so that
/// the condition folds to a comparison (CF is kept, as inc/dec do).
#[inline(always)]
fn incdec_j<const DEC: bool, const CC: u8, const PRED: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    let a = rget::<4>(cpu, d.r0);
    let r = if DEC { a.wrapping_sub(1) } else { a.wrapping_add(1) };
    let mut l = cpu.lazy;
    l.op = if DEC { FlagOp::Dec } else { FlagOp::Inc };
    l.bits = 32;
    l.res = r;
    cpu.lazy = l;
    cpu.regs[d.r0 as usize & 7] = r;
    branch::<PRED>(cpu, d, l.cond(CC))
}

/// `a OP b` (32-bit) with its flags in a local copy (see `incdec_j`).
#[inline(always)]
fn alu_local<const OP: u8>(l: Lazy, a: u32, b: u32) -> (u32, Lazy) {
    let mut l = l;
    let (res, op) = super::alu::result::<OP>(a, b, l.cf);
    l.set(op, 32, a, b, res);
    (res, l)
}

// H:285 The same fusion for the other flag-setters in front of a branch
// (`and`/`add`/`sub`/... with a register or an immediate, `inc`, a shift
// by a constant): the branch is decided by the generic condition evaluation
// (H:305) right after the operation, which still saves a whole dispatch.
// Bit-twiddling loops (a CRC, the kernel's inflate) are made of these.
fn alu_ri<const OP: u8, const CC: u8, const PRED: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    let a = cpu.regs[d.r0 as usize & 7];
    let (r, l) = alu_local::<OP>(cpu.lazy, a, d.imm);
    cpu.lazy = l;
    if super::alu::writes(OP) {
        cpu.regs[d.r0 as usize & 7] = r;
    }
    branch::<PRED>(cpu, d, l.cond(CC))
}

fn alu_rr<const OP: u8, const CC: u8, const PRED: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    let a = cpu.regs[d.r0 as usize & 7];
    let b = cpu.regs[d.r1 as usize & 7];
    let (r, l) = alu_local::<OP>(cpu.lazy, a, b);
    cpu.lazy = l;
    if super::alu::writes(OP) {
        cpu.regs[d.r0 as usize & 7] = r;
    }
    branch::<PRED>(cpu, d, l.cond(CC))
}

fn inc_r<const CC: u8, const PRED: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    incdec_j::<false, CC, PRED>(cpu, d)
}

/// A shift by a constant 1 to 31 (a count of 0 changes no flags, and is
/// not fused: `try_fuse`).
fn shift_ri<const KIND: u8, const CC: u8, const PRED: bool>(cpu: &mut Cpu, d: &DInsn) -> R {
    let c = if KIND == 3 { 1 } else { d.imm & 0x1f };
    debug_assert!(c != 0);
    let a = cpu.regs[d.r0 as usize & 7];
    let (res, op) = super::fast::shift::<KIND>(a, c, 32);
    cpu.regs[d.r0 as usize & 7] = res;
    let mut l = cpu.lazy;
    l.set(op, 32, a, c, res);
    cpu.lazy = l;
    branch::<PRED>(cpu, d, l.cond(CC))
}

macro_rules! by_cc {
    ($f:ident $(, $c:expr)*; $cc:expr) => {
        match $cc {
            0 => $f::<$($c,)* 0, PRED> as FastHandler,
            1 => $f::<$($c,)* 1, PRED>,
            2 => $f::<$($c,)* 2, PRED>,
            3 => $f::<$($c,)* 3, PRED>,
            4 => $f::<$($c,)* 4, PRED>,
            5 => $f::<$($c,)* 5, PRED>,
            6 => $f::<$($c,)* 6, PRED>,
            7 => $f::<$($c,)* 7, PRED>,
            8 => $f::<$($c,)* 8, PRED>,
            9 => $f::<$($c,)* 9, PRED>,
            10 => $f::<$($c,)* 10, PRED>,
            11 => $f::<$($c,)* 11, PRED>,
            12 => $f::<$($c,)* 12, PRED>,
            13 => $f::<$($c,)* 13, PRED>,
            14 => $f::<$($c,)* 14, PRED>,
            _ => $f::<$($c,)* 15, PRED>,
        }
    };
    ($f:ident, $cc:expr) => {
        by_cc!($f; $cc)
    };
    ($f:ident, $c:expr, $cc:expr) => {
        by_cc!($f, $c; $cc)
    };
}

/// A fused handler for ALU operation `op` (0..=8) and condition `cc`.
macro_rules! by_op {
    ($f:ident, $op:expr, $cc:expr) => {
        match $op {
            0 => by_cc!($f, 0, $cc),
            1 => by_cc!($f, 1, $cc),
            2 => by_cc!($f, 2, $cc),
            3 => by_cc!($f, 3, $cc),
            4 => by_cc!($f, 4, $cc),
            5 => by_cc!($f, 5, $cc),
            6 => by_cc!($f, 6, $cc),
            7 => by_cc!($f, 7, $cc),
            8 => by_cc!($f, 8, $cc),
            _ => return None,
        }
    };
}

/// The fused handler for flag-setter `fuse` and condition `cc`, branching
/// or (`PRED`) skipping one instruction without a branch (H:287).
pub fn handler<const PRED: bool>(fuse: u8, cc: u8) -> Option<FastHandler> {
    Some(match fuse {
        CMP_RR => by_cc!(cmp_rr, cc),
        CMP_RI => by_cc!(cmp_ri, cc),
        TEST_RR => by_cc!(test_rr, cc),
        DEC_R => by_cc!(dec_r, cc),
        INC_R => by_cc!(inc_r, cc),
        f if (ALU_RI..ALU_RI + 16).contains(&f) => by_op!(alu_ri, f - ALU_RI, cc),
        f if (ALU_RR..ALU_RR + 16).contains(&f) => by_op!(alu_rr, f - ALU_RR, cc),
        f if f == SHIFT_RI => by_cc!(shift_ri, 0, cc),
        f if f == SHIFT_RI + 1 => by_cc!(shift_ri, 1, cc),
        f if f == SHIFT_RI + 2 => by_cc!(shift_ri, 2, cc),
        f if f == SHIFT_RI + 3 => by_cc!(shift_ri, 3, cc),
        _ => return None,
    })
}

/// If `prev` sets flags the way `next` (a jcc) wants, fuse the pair into
/// `prev`'s fast handler.
pub fn try_fuse(prev: &mut DInsn, next: &DInsn) {
    use iced_x86::{ConditionCode, Mnemonic, OpKind};
    if prev.fuse == 0 || prev.count != 1 {
        return;
    }
    let i = &next.i;
    if i.condition_code() == ConditionCode::None
        || i.op0_kind() != OpKind::NearBranch32
        || matches!(i.mnemonic(), Mnemonic::Loope | Mnemonic::Loopne | Mnemonic::Loop | Mnemonic::Jecxz)
        || i.op_count() != 1
    {
        return;
    }
    let cc = i.condition_code() as u8 - 1;
    if (SHIFT_RI..SHIFT_RI + 4).contains(&prev.fuse) && prev.imm & 0x1f == 0 {
        return;
    }
    let Some(h) = handler::<false>(prev.fuse, cc) else {
        return;
    };
    prev.h = h;
    prev.count = 2;
    prev.rel = next.rel;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_conditions_match_lazy_flags() {
        let vals = [0u32, 1, 2, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x1234_5678];
        for &a in &vals {
            for &b in &vals {
                let mut cpu = Cpu::new(crate::cpu::mem::Mmu::Bare(Default::default()));
                cpu.lazy.set(FlagOp::Sub, 32, a, b, a.wrapping_sub(b));
                let sub: [bool; 16] = [
                    cond_sub::<0>(a, b), cond_sub::<1>(a, b), cond_sub::<2>(a, b), cond_sub::<3>(a, b),
                    cond_sub::<4>(a, b), cond_sub::<5>(a, b), cond_sub::<6>(a, b), cond_sub::<7>(a, b),
                    cond_sub::<8>(a, b), cond_sub::<9>(a, b), cond_sub::<10>(a, b), cond_sub::<11>(a, b),
                    cond_sub::<12>(a, b), cond_sub::<13>(a, b), cond_sub::<14>(a, b), cond_sub::<15>(a, b),
                ];
                for (cc, want) in sub.iter().enumerate() {
                    assert_eq!(cpu.cond(cc as u8), *want, "sub cc {cc} a {a:#x} b {b:#x}");
                }
                cpu.lazy.set(FlagOp::Logic, 32, a, b, a & b);
                let and: [bool; 16] = [
                    cond_and::<0>(a, b), cond_and::<1>(a, b), cond_and::<2>(a, b), cond_and::<3>(a, b),
                    cond_and::<4>(a, b), cond_and::<5>(a, b), cond_and::<6>(a, b), cond_and::<7>(a, b),
                    cond_and::<8>(a, b), cond_and::<9>(a, b), cond_and::<10>(a, b), cond_and::<11>(a, b),
                    cond_and::<12>(a, b), cond_and::<13>(a, b), cond_and::<14>(a, b), cond_and::<15>(a, b),
                ];
                for (cc, want) in and.iter().enumerate() {
                    assert_eq!(cpu.cond(cc as u8), *want, "and cc {cc} a {a:#x} b {b:#x}");
                }
            }
        }
    }
}

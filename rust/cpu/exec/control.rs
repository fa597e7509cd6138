//! Control transfers: jumps, calls, returns, loops, software interrupts.
//!
// H:360 A relative branch stores only its displacement (see `decode`), so
// the target is computed from `next_eip`, which the run loop sets to the
// address after the current instruction before calling the handler.  A
// handler transfers control simply by changing `next_eip`.

use iced_x86::{Code, OpKind};

use super::{read_op, R};
use crate::cpu::decode::DInsn;
use crate::cpu::mem::Mmu;
use crate::cpu::state::{Cpu, Fault, SegReg, Stop, EBP, ECX, ESP};

#[inline(always)]
fn branch(cpu: &mut Cpu, d: &DInsn) {
    let t = cpu.next_eip.wrapping_add(d.rel);
    cpu.next_eip = if d.i.op0_kind() == OpKind::NearBranch16 { t & 0xffff } else { t };
}

/// A conditional branch that is taken leaves the (super)block.
#[inline(always)]
fn taken(cpu: &mut Cpu, d: &DInsn) -> R {
    branch(cpu, d);
    Err(Stop::TAKEN)
}

pub fn jcc(cpu: &mut Cpu, d: &DInsn) -> R {
    if cpu.cond((d.i.condition_code() as u8).wrapping_sub(1)) {
        return taken(cpu, d);
    }
    Ok(())
}

pub fn jmp_rel(cpu: &mut Cpu, d: &DInsn) -> R {
    branch(cpu, d);
    Ok(())
}

pub fn jmp_ind(cpu: &mut Cpu, d: &DInsn) -> R {
    let t = read_op(cpu, d, 0, d.size)?;
    cpu.next_eip = t;
    Ok(())
}

pub fn call_rel(cpu: &mut Cpu, d: &DInsn) -> R {
    let ret = cpu.next_eip;
    if d.i.op0_kind() == OpKind::NearBranch16 {
        cpu.push16(ret as u16)?;
    } else {
        cpu.push32(ret)?;
    }
    branch(cpu, d);
    Ok(())
}

pub fn call_ind(cpu: &mut Cpu, d: &DInsn) -> R {
    let t = read_op(cpu, d, 0, d.size)?;
    let ret = cpu.next_eip;
    if d.size == 2 {
        cpu.push16(ret as u16)?;
    } else {
        cpu.push32(ret)?;
    }
    cpu.next_eip = t;
    Ok(())
}

pub fn ret(cpu: &mut Cpu, d: &DInsn) -> R {
    let o16 = matches!(d.i.code(), Code::Retnw | Code::Retnw_imm16);
    let t = if o16 { cpu.pop16()? as u32 } else { cpu.pop32()? };
    if d.i.op_count() == 1 {
        cpu.regs[ESP] = cpu.regs[ESP].wrapping_add(d.i.immediate16() as u32);
    }
    cpu.next_eip = t;
    Ok(())
}

/// The counter of loop/jecxz: CX with a 16-bit address size, else ECX.
#[inline(always)]
fn counter16(d: &DInsn) -> bool {
    matches!(
        d.i.code(),
        Code::Loop_rel8_16_CX
            | Code::Loop_rel8_32_CX
            | Code::Loope_rel8_16_CX
            | Code::Loope_rel8_32_CX
            | Code::Loopne_rel8_16_CX
            | Code::Loopne_rel8_32_CX
            | Code::Jcxz_rel8_16
            | Code::Jcxz_rel8_32
    )
}

#[inline(always)]
fn dec_counter(cpu: &mut Cpu, d: &DInsn) -> bool {
    if counter16(d) {
        let c = (cpu.regs[ECX] as u16).wrapping_sub(1);
        cpu.regs[ECX] = (cpu.regs[ECX] & 0xffff_0000) | c as u32;
        c != 0
    } else {
        cpu.regs[ECX] = cpu.regs[ECX].wrapping_sub(1);
        cpu.regs[ECX] != 0
    }
}

pub fn loop_(cpu: &mut Cpu, d: &DInsn) -> R {
    if dec_counter(cpu, d) {
        return taken(cpu, d);
    }
    Ok(())
}

pub fn loope(cpu: &mut Cpu, d: &DInsn) -> R {
    if dec_counter(cpu, d) && cpu.zf() {
        return taken(cpu, d);
    }
    Ok(())
}

pub fn loopne(cpu: &mut Cpu, d: &DInsn) -> R {
    if dec_counter(cpu, d) && !cpu.zf() {
        return taken(cpu, d);
    }
    Ok(())
}

pub fn jecxz(cpu: &mut Cpu, d: &DInsn) -> R {
    let zero = if counter16(d) { cpu.regs[ECX] & 0xffff == 0 } else { cpu.regs[ECX] == 0 };
    if zero {
        return taken(cpu, d);
    }
    Ok(())
}

// H:370 Software interrupts leave the interpreter: what happens next (a
// hypercall, a system call through the guest's IDT, a #GP because the gate's
// DPL is too low) is the host's business, so the interpreter only reports
// the vector with EIP already past the instruction.
pub fn int(_: &mut Cpu, d: &DInsn) -> R {
    Err(Stop::int(d.i.immediate8()))
}

pub fn int3(_: &mut Cpu, _: &DInsn) -> R {
    Err(Stop::int(3))
}

pub fn int1(_: &mut Cpu, _: &DInsn) -> R {
    Err(Stop::int(1))
}

pub fn into(cpu: &mut Cpu, _: &DInsn) -> R {
    if cpu.of() {
        return Err(Stop::int(4));
    }
    Ok(())
}

pub fn hlt(cpu: &mut Cpu, _: &DInsn) -> R {
    // The bare CPU reports hlt so that test programs have a way to stop;
    // a guest above ring 0 gets the #GP a real processor gives it.
    if matches!(cpu.mmu, Mmu::Bare(_)) || cpu.cpl() == 0 {
        return Err(Stop::HLT);
    }
    Err(Stop::fault(Fault::GP0))
}

pub fn enter(cpu: &mut Cpu, d: &DInsn) -> R {
    let alloc = d.i.immediate16() as u32;
    let level = (d.i.immediate8_2nd() & 31) as u32;
    let ebp = cpu.regs[EBP];
    let sp = cpu.regs[ESP];
    // Check every read and write first, so a fault leaves ESP and EBP as
    // they were and the instruction can restart.  Then do it in the SDM's
    // order (push EBP, then copy the outer frame pointers), because the
    // copies may read the slot the push just wrote, as silicon shows.
    for k in 1..level {
        let l = cpu.lin(SegReg::Ss, ebp.wrapping_sub(4 * k));
        cpu.read_u32(l)?;
    }
    let pushes = 1 + level.saturating_sub(1) + (level > 0) as u32;
    let lin = cpu.lin(SegReg::Ss, sp.wrapping_sub(4 * pushes));
    cpu.probe_write(lin, 4 * pushes)?;
    cpu.push32(ebp)?;
    let frame = cpu.regs[ESP];
    for k in 1..level {
        let l = cpu.lin(SegReg::Ss, ebp.wrapping_sub(4 * k));
        let v = cpu.read_u32(l)?;
        cpu.push32(v)?;
    }
    if level > 0 {
        cpu.push32(frame)?;
    }
    cpu.regs[EBP] = frame;
    cpu.regs[ESP] = cpu.regs[ESP].wrapping_sub(alloc);
    Ok(())
}

pub fn leave(cpu: &mut Cpu, d: &DInsn) -> R {
    let o16 = d.i.code() == Code::Leavew;
    let bp = cpu.regs[EBP];
    let lin = cpu.lin(SegReg::Ss, bp);
    if o16 {
        let v = cpu.read_u16(lin)? as u32;
        cpu.regs[ESP] = bp.wrapping_add(2);
        cpu.regs[EBP] = (cpu.regs[EBP] & 0xffff_0000) | v;
    } else {
        let v = cpu.read_u32(lin)?;
        cpu.regs[ESP] = bp.wrapping_add(4);
        cpu.regs[EBP] = v;
    }
    Ok(())
}

// H:380 Far transfers and iret change CS, and with it possibly the privilege
// level.  They live in `system`, beside the segment loading they depend on.
pub use super::system::{call_far, iret, jmp_far, retf};

//! The memory handlers of `fast` with the TLB's miss path (and its
//! faults): what a hit-path handler hands the whole instruction to when
//! the software TLB does not have the access (H:265).

use super::*;

#[inline(never)]
pub fn alu_rm<const OP: u8, const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let lin = mlin(cpu, &d.m);
    let b = mread::<S>(cpu, lin)?;
    let a = rget::<S>(cpu, d.r0);
    let r = alu::<OP, S>(cpu, a, b);
    if writes(OP) {
        rset::<S>(cpu, d.r0, r);
    }
    Ok(())
}

/// `[mem] OP= source`, restartable: a fault on the write puts the flags
/// back.
#[inline(never)]
pub fn alu_m<const OP: u8, const IMM: bool, const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let lin = mlin(cpu, &d.m);
    let a = mread::<S>(cpu, lin)?;
    let b = alu_source::<IMM, S>(cpu, d);
    let saved = cpu.lazy;
    let r = alu::<OP, S>(cpu, a, b);
    if writes(OP) {
        if let Err(f) = mwrite::<S>(cpu, lin, r) {
            cpu.lazy = saved;
            return Err(f.into());
        }
    }
    Ok(())
}

#[inline(never)]
pub fn mov_rm<const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let lin = mlin(cpu, &d.m);
    let v = mread::<S>(cpu, lin)?;
    rset::<S>(cpu, d.r0, v);
    Ok(())
}

#[inline(never)]
pub fn mov_mr<const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let lin = mlin(cpu, &d.m);
    let v = rget::<S>(cpu, d.r1);
    mwrite::<S>(cpu, lin, v)?;
    Ok(())
}

#[inline(never)]
pub fn mov_mi<const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let lin = mlin(cpu, &d.m);
    mwrite::<S>(cpu, lin, d.imm)?;
    Ok(())
}

#[inline(never)]
pub fn incdec_m<const DEC: bool, const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let lin = mlin(cpu, &d.m);
    let a = mread::<S>(cpu, lin)?;
    let saved = cpu.lazy;
    let r = incdec::<S>(cpu, a, DEC);
    if let Err(f) = mwrite::<S>(cpu, lin, r) {
        cpu.lazy = saved;
        return Err(f.into());
    }
    Ok(())
}

#[inline(never)]
pub fn push_r(cpu: &mut Cpu, d: &DInsn) -> R {
    let v = cpu.regs[d.r0 as usize & 7];
    cpu.push32(v)?;
    Ok(())
}

#[inline(never)]
pub fn push_i(cpu: &mut Cpu, d: &DInsn) -> R {
    cpu.push32(d.imm)?;
    Ok(())
}

#[inline(never)]
pub fn pop_r(cpu: &mut Cpu, d: &DInsn) -> R {
    let v = cpu.pop32()?;
    cpu.regs[d.r0 as usize & 7] = v;
    Ok(())
}

#[inline(never)]
pub fn call_rel(cpu: &mut Cpu, d: &DInsn) -> R {
    let ret = cpu.next_eip;
    cpu.push32(ret)?;
    cpu.next_eip = ret.wrapping_add(d.rel);
    Ok(())
}

#[inline(never)]
pub fn ret_near(cpu: &mut Cpu, _: &DInsn) -> R {
    let t = cpu.pop32()?;
    cpu.next_eip = t;
    Ok(())
}

#[inline(never)]
pub fn movzx_rm<const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let lin = mlin(cpu, &d.m);
    let v = mread::<S>(cpu, lin)?;
    cpu.regs[d.r0 as usize & 7] = v;
    Ok(())
}

#[inline(never)]
pub fn movsx_rm<const S: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let lin = mlin(cpu, &d.m);
    let v = mread::<S>(cpu, lin)?;
    cpu.regs[d.r0 as usize & 7] = sext::<S>(v);
    Ok(())
}

//! SSE/SSE2 data movement on XMM registers: scalar and half-register moves,
//! sign masks, shuffles.
//
// H:780 Most of these only move bits, so they are the same for single and
// double precision and never raise floating-point exceptions.  The subtle
// part is which bits survive: a scalar load from memory (movss/movsd xmm,
// m) clears the rest of the register, a scalar move between registers
// keeps it, and the 64-bit half moves touch only their half.

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use super::simd_int::{self, vmov, vsrc, PUNPCKHDQ, PUNPCKHQDQ, PUNPCKLDQ, PUNPCKLQDQ};
use super::{check_nm, xmm_index};
use crate::cpu::decode::{DInsn, Handler};
use crate::cpu::exec::{get_reg, mem_lin, set_reg, R};
use crate::cpu::state::Cpu;

const LO64: u128 = 0xffff_ffff_ffff_ffff;

/// movss/movsd (`BYTES` = 4 or 8) in their three forms.
fn movs<const BYTES: u32>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_nm(cpu)?;
    let m: u128 = (1u128 << (8 * BYTES)) - 1;
    let i = &d.i;
    if i.op0_kind() == OpKind::Memory {
        let v = cpu.fpu.xmm[xmm_index(i.op1_register())];
        let lin = mem_lin(cpu, d);
        if BYTES == 4 {
            cpu.write_u32(lin, v as u32)?;
        } else {
            cpu.write_u64(lin, v as u64)?;
        }
        return Ok(());
    }
    let dst = xmm_index(i.op0_register());
    if i.op1_kind() == OpKind::Memory {
        let lin = mem_lin(cpu, d);
        let v = if BYTES == 4 { cpu.read_u32(lin)? as u128 } else { cpu.read_u64(lin)? as u128 };
        cpu.fpu.xmm[dst] = v;
    } else {
        let v = cpu.fpu.xmm[xmm_index(i.op1_register())] & m;
        cpu.fpu.xmm[dst] = (cpu.fpu.xmm[dst] & !m) | v;
    }
    Ok(())
}

/// movlps/movlpd/movhps/movhpd (to or from memory), movhlps, movlhps.
fn movhalf(cpu: &mut Cpu, d: &DInsn) -> R {
    check_nm(cpu)?;
    let i = &d.i;
    let high = matches!(i.mnemonic(), M::Movhps | M::Movhpd);
    if i.op0_kind() == OpKind::Memory {
        let v = cpu.fpu.xmm[xmm_index(i.op1_register())];
        let lin = mem_lin(cpu, d);
        cpu.write_u64(lin, if high { (v >> 64) as u64 } else { v as u64 })?;
        return Ok(());
    }
    let dst = xmm_index(i.op0_register());
    let (src, to_high) = match i.mnemonic() {
        M::Movhlps => ((cpu.fpu.xmm[xmm_index(i.op1_register())] >> 64) as u64, false),
        M::Movlhps => (cpu.fpu.xmm[xmm_index(i.op1_register())] as u64, true),
        _ => {
            let lin = mem_lin(cpu, d);
            (cpu.read_u64(lin)?, high)
        }
    };
    let x = &mut cpu.fpu.xmm[dst];
    *x = if to_high { (*x & LO64) | (src as u128) << 64 } else { (*x & !LO64) | src as u128 };
    Ok(())
}

fn movmsk<const LANE: u32>(cpu: &mut Cpu, d: &DInsn) -> R {
    check_nm(cpu)?;
    let v = cpu.fpu.xmm[xmm_index(d.i.op1_register())];
    let n = 128 / LANE;
    let m = (0..n).fold(0u32, |m, k| m | (((v >> (LANE * k + LANE - 1)) & 1) as u32) << k);
    set_reg(cpu, d.i.op0_register(), m);
    Ok(())
}

/// movnti: a plain general-register store with a non-temporal hint.
fn movnti(cpu: &mut Cpu, d: &DInsn) -> R {
    let v = get_reg(cpu, d.i.op1_register());
    let lin = mem_lin(cpu, d);
    cpu.write_u32(lin, v)?;
    Ok(())
}

fn shufps(cpu: &mut Cpu, d: &DInsn) -> R {
    check_nm(cpu)?;
    let dst = xmm_index(d.i.op0_register());
    let b = vsrc(cpu, d, 1, true)?;
    let a = cpu.fpu.xmm[dst];
    let imm = d.i.immediate8() as u32;
    let l = |v: u128, k: u32| (v >> (32 * (k & 3))) as u32 as u128;
    cpu.fpu.xmm[dst] = l(a, imm) | l(a, imm >> 2) << 32 | l(b, imm >> 4) << 64 | l(b, imm >> 6) << 96;
    Ok(())
}

fn shufpd(cpu: &mut Cpu, d: &DInsn) -> R {
    check_nm(cpu)?;
    let dst = xmm_index(d.i.op0_register());
    let b = vsrc(cpu, d, 1, true)?;
    let a = cpu.fpu.xmm[dst];
    let imm = d.i.immediate8() as u32;
    let l = |v: u128, k: u32| (v >> (64 * (k & 1))) & LO64;
    cpu.fpu.xmm[dst] = l(a, imm) | l(b, imm >> 1) << 64;
    Ok(())
}

pub fn pick(i: &Instruction) -> Option<Handler> {
    let _ = simd_int::is_xmm;
    Some(match i.mnemonic() {
        M::Movaps | M::Movapd | M::Movntps | M::Movntpd => vmov::<true>,
        M::Movups | M::Movupd => vmov::<false>,
        M::Movss => movs::<4>,
        M::Movsd => movs::<8>,
        M::Movlps | M::Movlpd | M::Movhps | M::Movhpd | M::Movhlps | M::Movlhps => movhalf,
        M::Movmskps => movmsk::<32>,
        M::Movmskpd => movmsk::<64>,
        M::Movnti => movnti,
        M::Shufps => shufps,
        M::Shufpd => shufpd,
        M::Unpcklps => simd_int::pbin::<PUNPCKLDQ>,
        M::Unpckhps => simd_int::pbin::<PUNPCKHDQ>,
        M::Unpcklpd => simd_int::pbin::<PUNPCKLQDQ>,
        M::Unpckhpd => simd_int::pbin::<PUNPCKHQDQ>,
        _ => return None,
    })
}

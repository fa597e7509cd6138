//! x87, MMX and SSE/SSE2: state, shared helpers, and the handler choice.
//!
// H:700 The floating-point and vector units.  A Pentium 4-class processor has
// three of them sharing one corner of the register file: the x87 stack of
// eight 80-bit registers, the MMX registers that alias the x87 significands,
// and the eight 128-bit XMM registers of SSE and SSE2 with their control
// word MXCSR.  The guest saves and restores all of it with fxsave/fxrstor,
// so it lives in one plain struct.
//
// Each file here is one concept:
//  * `softfloat` - the arithmetic itself, bit-exact in every format;
//  * `x87`       - the register stack, loads, stores and arithmetic;
//  * `x87ctl`    - control/status words, environment, fsave/fxsave images;
//  * `x87trans`  - comparisons, classification and transcendental functions;
//  * `simd_int`  - packed integer operations, shared by MMX and SSE2;
//  * `sse`       - data movement, shuffles and logic on XMM registers;
//  * `sse_fp`    - SSE/SSE2 floating point: arithmetic, compares, conversions.
//
// Before anything else, every one of these instructions checks the lazy-FPU
// protocol: while the guest's CR0.TS is set the instruction raises #NM, so a
// kernel can defer saving the previous task's registers until the new task
// really touches them.  That is the only interaction with lguest proper.

use iced_x86::{Instruction, Register};

use super::decode::{DInsn, Handler};
use super::exec::R;
use super::state::{Cpu, Fault, Stop};

pub mod simd_int;
pub mod softfloat;
pub mod sse;
pub mod sse_fp;
pub mod x87;
pub mod x87ctl;
pub mod x87trans;

/// Whether x87/MMX/SSE/SSE2 are implemented (and so advertised by CPUID).
pub const IMPLEMENTED: bool = true;

/// Status word bits.
pub const SW_IE: u16 = 0x0001;
pub const SW_SF: u16 = 0x0040;
pub const SW_ES: u16 = 0x0080;
pub const SW_C0: u16 = 0x0100;
pub const SW_C1: u16 = 0x0200;
pub const SW_C2: u16 = 0x0400;
pub const SW_C3: u16 = 0x4000;
pub const SW_B: u16 = 0x8000;
pub const SW_TOP: u16 = 0x3800;

/// MXCSR: flags 0..5, DAZ 6, masks 7..12, RC 13..14, FZ 15.
pub const MXCSR_DAZ: u32 = 0x40;
pub const MXCSR_FZ: u32 = 0x8000;
/// Bits of MXCSR that may be set (writing others is #GP).
pub const MXCSR_MASK: u32 = 0xffff;

/// One x87 physical register: 64-bit significand, sign and 15-bit exponent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reg {
    pub sig: u64,
    pub se: u16,
}

#[derive(Clone, Debug)]
pub struct Fpu {
    /// Physical registers R0..R7 (ST(i) is R[(top + i) & 7]).
    pub r: [Reg; 8],
    pub top: u8,
    /// Bit i set: physical register i is empty (tag 11).
    pub empty: u8,
    pub cw: u16,
    /// Status word with the TOP field kept separately in `top`.
    pub sw: u16,
    /// Last non-control instruction and data pointers (fnstenv, fxsave).
    pub fip: u32,
    pub fcs: u16,
    pub fop: u16,
    pub fdp: u32,
    pub fds: u16,
    pub xmm: [u128; 8],
    pub mxcsr: u32,
}

impl Default for Fpu {
    fn default() -> Self {
        Fpu {
            r: [Reg::default(); 8],
            top: 0,
            empty: 0xff,
            cw: 0x037f,
            sw: 0,
            fip: 0,
            fcs: 0,
            fop: 0,
            fdp: 0,
            fds: 0,
            xmm: [0; 8],
            mxcsr: 0x1f80,
        }
    }
}

impl Fpu {
    /// The status word as the guest reads it, TOP included.
    pub fn status(&self) -> u16 {
        (self.sw & !SW_TOP) | ((self.top as u16) << 11)
    }

    pub fn set_status(&mut self, v: u16) {
        self.top = ((v >> 11) & 7) as u8;
        self.sw = v & !SW_TOP;
        self.update_es();
    }

    /// ES and B summarise "an unmasked exception is pending"; they follow
    /// the flags and masks rather than being stored independently.
    pub fn update_es(&mut self) {
        if self.sw & !self.cw & 0x3f != 0 {
            self.sw |= SW_ES | SW_B;
        } else {
            self.sw &= !(SW_ES | SW_B);
        }
    }

    /// The full two-bit-per-register tag word: valid, zero, special, empty.
    pub fn tag_word(&self) -> u16 {
        let mut t = 0u16;
        for i in 0..8 {
            let r = self.r[i];
            let e = r.se & 0x7fff;
            let tag = if self.empty >> i & 1 != 0 {
                3
            } else if e == 0x7fff || (e == 0 && r.sig != 0) || (e != 0 && r.sig >> 63 == 0) {
                2
            } else if e == 0 {
                1
            } else {
                0
            };
            t |= tag << (2 * i);
        }
        t
    }

    /// The abridged tag byte of the fxsave image: bit i set = R[i] not empty.
    pub fn abridged_tag(&self) -> u8 {
        !self.empty
    }

    /// MMX register i is the significand of physical register i.
    #[inline]
    pub fn mm(&self, i: usize) -> u64 {
        self.r[i].sig
    }

    /// Writing an MMX register sets its exponent field to all ones.
    #[inline]
    pub fn set_mm(&mut self, i: usize, v: u64) {
        self.r[i] = Reg { sig: v, se: 0xffff };
    }

    /// Every MMX instruction but emms makes the whole stack valid, TOP 0.
    #[inline]
    pub fn enter_mmx(&mut self) {
        self.top = 0;
        self.empty = 0;
    }
}

// ---- checks every handler makes first ---------------------------------------

/// #NM while the guest's CR0.TS is set (the lazy-FPU trap).
#[inline(always)]
pub fn check_nm(cpu: &Cpu) -> R {
    if cpu.ts {
        return Err(Stop::fault(Fault::NM));
    }
    Ok(())
}

/// The checks of a "waiting" x87 or MMX instruction: #NM, then #MF if an
/// unmasked x87 exception is pending (CR0.NE is set for every guest).
#[inline(always)]
pub fn check_wait(cpu: &Cpu) -> R {
    check_nm(cpu)?;
    if cpu.fpu.sw & SW_ES != 0 {
        return Err(Stop::fault(Fault::MF));
    }
    Ok(())
}

/// Index of an XMM register operand.
#[inline(always)]
pub fn xmm_index(r: Register) -> usize {
    (r as u32 - Register::XMM0 as u32) as usize & 7
}

/// Index of an MMX register operand.
#[inline(always)]
pub fn mm_index(r: Register) -> usize {
    (r as u32 - Register::MM0 as u32) as usize & 7
}

/// Index i of an ST(i) operand.
#[inline(always)]
pub fn st_index(r: Register) -> u8 {
    (r as u32 - Register::ST0 as u32) as u8 & 7
}

/// Read 16 bytes of memory; `aligned` forms fault with #GP(0) unless the
/// address is a multiple of 16.
#[inline]
pub fn read_m128(cpu: &mut Cpu, lin: u32, aligned: bool) -> Result<u128, Fault> {
    if aligned && lin & 15 != 0 {
        return Err(Fault::GP0);
    }
    let lo = cpu.read_u64(lin)?;
    let hi = cpu.read_u64(lin.wrapping_add(8))?;
    Ok(lo as u128 | (hi as u128) << 64)
}

#[inline]
pub fn write_m128(cpu: &mut Cpu, lin: u32, v: u128, aligned: bool) -> Result<(), Fault> {
    if aligned && lin & 15 != 0 {
        return Err(Fault::GP0);
    }
    if lin & 0xfff <= 0xff0 {
        // One page: if the first half can be written, so can the second.
        cpu.write_u64(lin, v as u64)?;
        cpu.write_u64(lin.wrapping_add(8), (v >> 64) as u64)
    } else {
        cpu.write_bytes(lin, &v.to_le_bytes())
    }
}

/// Read memory of `n` bytes (1..=16), zero-extended.
#[inline]
pub fn read_mem_n(cpu: &mut Cpu, lin: u32, n: usize, aligned: bool) -> Result<u128, Fault> {
    Ok(match n {
        1 => cpu.read_u8(lin)? as u128,
        2 => cpu.read_u16(lin)? as u128,
        4 => cpu.read_u32(lin)? as u128,
        8 => cpu.read_u64(lin)? as u128,
        _ => read_m128(cpu, lin, aligned)?,
    })
}

/// H:720 Handler choice.  Each family's `pick` recognises its own mnemonics;
/// the first that answers wins.  Anything left is #UD (e.g. SSE3 and later,
/// which CPUID does not advertise).
pub fn pick(i: &Instruction) -> Option<Handler> {
    x87::pick(i)
        .or_else(|| x87ctl::pick(i))
        .or_else(|| x87trans::pick(i))
        .or_else(|| simd_int::pick(i))
        .or_else(|| sse::pick(i))
        .or_else(|| sse_fp::pick(i))
}

/// clflush: there are no caches to flush.  (Like the fences, it is not a
/// floating-point instruction and ignores CR0.TS.)
pub fn nop(_: &mut Cpu, _: &DInsn) -> R {
    Ok(())
}

#[cfg(test)]
mod tests;

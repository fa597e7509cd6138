//! x87 control: control and status words, the environment, fsave/frstor,
//! fxsave/fxrstor, MXCSR, emms.
//
// H:740 The "no-wait" forms (fninit, fnclex, fnstcw, fnstsw, fnstenv,
// fnsave) are the only x87 instructions that do not first deliver a pending
// unmasked exception as #MF: they are what an #MF handler uses to look at
// and clear the state.  The assembler's finit, fstsw, ... are the same
// instructions with a `wait` in front, which the decoder hands us as one
// instruction; those check first.
//
// The memory images use the 32-bit protected-mode layouts.  Everything is
// read or assembled into a buffer before any state changes, so a page fault
// in the middle of a 512-byte fxrstor restarts cleanly.

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use super::x87::note;
use super::{check_nm, check_wait, Fpu, Reg, MXCSR_MASK};
use crate::cpu::decode::{DInsn, Handler};
use crate::cpu::exec::{mem_lin, set_reg, R};
use crate::cpu::state::{Cpu, Fault, SegReg, Stop};

impl Fpu {
    /// fninit: the state Linux and every C runtime start from.
    pub fn init(&mut self) {
        self.cw = 0x037f;
        self.sw = 0;
        self.top = 0;
        self.empty = 0xff;
        self.fip = 0;
        self.fcs = 0;
        self.fop = 0;
        self.fdp = 0;
        self.fds = 0;
    }

    pub fn set_cw(&mut self, v: u16) {
        // Bits 6, 7 and 13..15 are reserved; bit 6 reads as one.
        self.cw = (v & 0x1f3f) | 0x0040;
        self.update_es();
    }

    /// Load the tag word: only "empty" versus "not empty" is kept, the
    /// rest is recomputed from the register contents when read.
    pub fn set_tag_word(&mut self, t: u16) {
        let mut e = 0u8;
        for i in 0..8 {
            if (t >> (2 * i)) & 3 == 3 {
                e |= 1 << i;
            }
        }
        self.empty = e;
    }
}

/// The opcode field of the last non-control instruction (11 bits: low three
/// bits of the escape byte and the ModRM byte), recovered from the code at
/// FCS:FIP when an image needs it.
fn last_opcode(cpu: &mut Cpu) -> u16 {
    if cpu.fpu.fip == 0 && cpu.fpu.fcs == 0 {
        return 0;
    }
    let base = cpu.segs[SegReg::Cs as usize].base;
    let mut a = base.wrapping_add(cpu.fpu.fip);
    for _ in 0..15 {
        let Ok(b) = cpu.read_u8(a) else { return 0 };
        if (0xd8..=0xdf).contains(&b) {
            let Ok(m) = cpu.read_u8(a.wrapping_add(1)) else { return 0 };
            return ((b as u16 & 7) << 8) | m as u16;
        }
        a = a.wrapping_add(1);
    }
    0
}

fn env_image(cpu: &mut Cpu) -> [u8; 28] {
    let fop = last_opcode(cpu);
    let f = &cpu.fpu;
    let words = [
        0xffff_0000 | f.cw as u32,
        0xffff_0000 | f.status() as u32,
        0xffff_0000 | f.tag_word() as u32,
        f.fip,
        f.fcs as u32 | (fop as u32) << 16,
        f.fdp,
        0xffff_0000 | f.fds as u32,
    ];
    let mut out = [0u8; 28];
    for (k, w) in words.iter().enumerate() {
        out[4 * k..4 * k + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

fn load_env(f: &mut Fpu, b: &[u8]) {
    let w = |k: usize| u32::from_le_bytes([b[4 * k], b[4 * k + 1], b[4 * k + 2], b[4 * k + 3]]);
    f.cw = (w(0) as u16 & 0x1f3f) | 0x40;
    f.set_status(w(1) as u16);
    f.set_tag_word(w(2) as u16);
    f.fip = w(3);
    f.fcs = w(4) as u16;
    f.fop = ((w(4) >> 16) & 0x7ff) as u16;
    f.fdp = w(5);
    f.fds = w(6) as u16;
}

fn reg_bytes(r: Reg) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&r.sig.to_le_bytes());
    b[8..].copy_from_slice(&r.se.to_le_bytes());
    b
}

fn reg_from(b: &[u8]) -> Reg {
    let mut s = [0u8; 8];
    s.copy_from_slice(&b[..8]);
    Reg { sig: u64::from_le_bytes(s), se: u16::from_le_bytes([b[8], b[9]]) }
}

fn waits(i: &Instruction) -> bool {
    matches!(i.mnemonic(), M::Finit | M::Fclex | M::Fstcw | M::Fstsw | M::Fstenv | M::Fsave)
}

fn pre(cpu: &Cpu, d: &DInsn) -> R {
    if waits(&d.i) {
        check_wait(cpu)
    } else {
        check_nm(cpu)
    }
}

fn finit(cpu: &mut Cpu, d: &DInsn) -> R {
    pre(cpu, d)?;
    cpu.fpu.init();
    Ok(())
}

fn fclex(cpu: &mut Cpu, d: &DInsn) -> R {
    pre(cpu, d)?;
    // PE, UE, OE, ZE, DE, IE, SF, ES and B.
    cpu.fpu.sw &= !0x80ff;
    Ok(())
}

fn fstcw(cpu: &mut Cpu, d: &DInsn) -> R {
    pre(cpu, d)?;
    let lin = mem_lin(cpu, d);
    cpu.write_u16(lin, cpu.fpu.cw)?;
    Ok(())
}

fn fstsw(cpu: &mut Cpu, d: &DInsn) -> R {
    pre(cpu, d)?;
    let v = cpu.fpu.status();
    if d.i.op0_kind() == OpKind::Register {
        set_reg(cpu, d.i.op0_register(), v as u32);
    } else {
        let lin = mem_lin(cpu, d);
        cpu.write_u16(lin, v)?;
    }
    Ok(())
}

fn fldcw(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    let lin = mem_lin(cpu, d);
    let v = cpu.read_u16(lin)?;
    cpu.fpu.set_cw(v);
    Ok(())
}

fn fstenv(cpu: &mut Cpu, d: &DInsn) -> R {
    pre(cpu, d)?;
    let img = env_image(cpu);
    let lin = mem_lin(cpu, d);
    cpu.write_bytes(lin, &img)?;
    // fnstenv then masks every exception (what an #MF handler wants).
    cpu.fpu.cw |= 0x3f;
    cpu.fpu.update_es();
    Ok(())
}

fn fldenv(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    let lin = mem_lin(cpu, d);
    let mut b = [0u8; 28];
    cpu.read_bytes(lin, &mut b)?;
    load_env(&mut cpu.fpu, &b);
    Ok(())
}

fn fsave(cpu: &mut Cpu, d: &DInsn) -> R {
    pre(cpu, d)?;
    let mut img = [0u8; 108];
    img[..28].copy_from_slice(&env_image(cpu));
    for i in 0..8u8 {
        let r = cpu.fpu.st_reg(i);
        img[28 + 10 * i as usize..38 + 10 * i as usize].copy_from_slice(&reg_bytes(r));
    }
    let lin = mem_lin(cpu, d);
    cpu.write_bytes(lin, &img)?;
    cpu.fpu.init();
    Ok(())
}

fn frstor(cpu: &mut Cpu, d: &DInsn) -> R {
    check_wait(cpu)?;
    let lin = mem_lin(cpu, d);
    let mut b = [0u8; 108];
    cpu.read_bytes(lin, &mut b)?;
    load_env(&mut cpu.fpu, &b[..28]);
    for i in 0..8u8 {
        let p = cpu.fpu.phys(i);
        cpu.fpu.r[p] = reg_from(&b[28 + 10 * i as usize..]);
    }
    Ok(())
}

// H:750 fxsave/fxrstor move the whole unit in one 512-byte image: x87,
// MMX, XMM and MXCSR.  Linux uses them for every context switch of a task
// that touched the FPU, and they are why the x87 registers are stored in
// their exact 80-bit form.

fn fxsave(cpu: &mut Cpu, d: &DInsn) -> R {
    check_nm(cpu)?;
    let lin = mem_lin(cpu, d);
    if lin & 15 != 0 {
        return Err(Stop::fault(Fault::GP0));
    }
    let fop = last_opcode(cpu);
    let f = &cpu.fpu;
    let mut img = [0u8; 288];
    img[0..2].copy_from_slice(&f.cw.to_le_bytes());
    img[2..4].copy_from_slice(&f.status().to_le_bytes());
    img[4] = f.abridged_tag();
    img[6..8].copy_from_slice(&fop.to_le_bytes());
    img[8..12].copy_from_slice(&f.fip.to_le_bytes());
    img[12..14].copy_from_slice(&f.fcs.to_le_bytes());
    img[16..20].copy_from_slice(&f.fdp.to_le_bytes());
    img[20..22].copy_from_slice(&f.fds.to_le_bytes());
    img[24..28].copy_from_slice(&f.mxcsr.to_le_bytes());
    img[28..32].copy_from_slice(&MXCSR_MASK.to_le_bytes());
    for i in 0..8u8 {
        let o = 32 + 16 * i as usize;
        img[o..o + 10].copy_from_slice(&reg_bytes(f.st_reg(i)));
    }
    for (k, x) in f.xmm.iter().enumerate() {
        img[160 + 16 * k..176 + 16 * k].copy_from_slice(&x.to_le_bytes());
    }
    cpu.write_bytes(lin, &img)?;
    Ok(())
}

fn fxrstor(cpu: &mut Cpu, d: &DInsn) -> R {
    check_nm(cpu)?;
    let lin = mem_lin(cpu, d);
    if lin & 15 != 0 {
        return Err(Stop::fault(Fault::GP0));
    }
    let mut b = [0u8; 288];
    cpu.read_bytes(lin, &mut b)?;
    let mxcsr = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    if mxcsr & !MXCSR_MASK != 0 {
        return Err(Stop::fault(Fault::GP0));
    }
    let f = &mut cpu.fpu;
    f.cw = (u16::from_le_bytes([b[0], b[1]]) & 0x1f3f) | 0x40;
    f.set_status(u16::from_le_bytes([b[2], b[3]]));
    f.empty = !b[4];
    f.fop = u16::from_le_bytes([b[6], b[7]]) & 0x7ff;
    f.fip = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    f.fcs = u16::from_le_bytes([b[12], b[13]]);
    f.fdp = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
    f.fds = u16::from_le_bytes([b[20], b[21]]);
    f.mxcsr = mxcsr;
    for i in 0..8u8 {
        let p = f.phys(i);
        f.r[p] = reg_from(&b[32 + 16 * i as usize..]);
    }
    for k in 0..8 {
        let mut x = [0u8; 16];
        x.copy_from_slice(&b[160 + 16 * k..176 + 16 * k]);
        f.xmm[k] = u128::from_le_bytes(x);
    }
    Ok(())
}

fn ldmxcsr(cpu: &mut Cpu, d: &DInsn) -> R {
    check_nm(cpu)?;
    let lin = mem_lin(cpu, d);
    let v = cpu.read_u32(lin)?;
    if v & !MXCSR_MASK != 0 {
        return Err(Stop::fault(Fault::GP0));
    }
    cpu.fpu.mxcsr = v;
    Ok(())
}

fn stmxcsr(cpu: &mut Cpu, d: &DInsn) -> R {
    check_nm(cpu)?;
    let lin = mem_lin(cpu, d);
    cpu.write_u32(lin, cpu.fpu.mxcsr)?;
    Ok(())
}

/// wait/fwait: deliver a pending unmasked exception, nothing else.
fn wait(cpu: &mut Cpu, _: &DInsn) -> R {
    check_wait(cpu)
}

/// emms: leave MMX mode, marking every x87 register empty.
fn emms(cpu: &mut Cpu, _: &DInsn) -> R {
    check_wait(cpu)?;
    cpu.fpu.empty = 0xff;
    Ok(())
}

/// feni, fdisi, fsetpm: 8087/287 leftovers the 387 and later ignore.
fn legacy_nop(cpu: &mut Cpu, _: &DInsn) -> R {
    check_nm(cpu)
}

fn _note_unused(cpu: &mut Cpu, d: &DInsn) {
    note(cpu, d)
}

pub fn pick(i: &Instruction) -> Option<Handler> {
    Some(match i.mnemonic() {
        M::Fninit | M::Finit => finit,
        M::Fnclex | M::Fclex => fclex,
        M::Fnstcw | M::Fstcw => fstcw,
        M::Fnstsw | M::Fstsw => fstsw,
        M::Fldcw => fldcw,
        M::Fnstenv | M::Fstenv => fstenv,
        M::Fldenv => fldenv,
        M::Fnsave | M::Fsave => fsave,
        M::Frstor => frstor,
        M::Fxsave => fxsave,
        M::Fxrstor => fxrstor,
        M::Ldmxcsr => ldmxcsr,
        M::Stmxcsr => stmxcsr,
        M::Wait => wait,
        M::Emms => emms,
        M::Feni | M::Fneni | M::Fdisi | M::Fndisi | M::Fsetpm | M::Fnsetpm => legacy_nop,
        M::Clflush => super::nop,
        _ => return None,
    })
}

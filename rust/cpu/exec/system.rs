//! Segments, privilege, and the instructions a guest may not use.
//!
// H:600 An lguest guest kernel runs at ring 1, so every instruction that
// would let it take over the machine (loading descriptor tables, touching
// control registers, port I/O, cli/sti, hlt) raises #GP exactly as on real
// hardware, and the host decides what to do: usually reflect the fault back
// into the guest, sometimes emulate it (see H:965 for `Guest::fault` in
// `crate::lguest`, and H:1050 for `crate::interrupts::emulate_insn`).
//
// Segment loads follow the protected-mode rules against the guest's GDT,
// which the host keeps (the guest edits it only through LOAD_GDT_ENTRY and
// LOAD_TLS).  There is no LDT: a selector with the TI bit set faults.

use iced_x86::{Code, OpKind};

use super::{read_op, R};
use crate::cpu::decode::DInsn;
use crate::cpu::flags;
use crate::cpu::mem::Mmu;
use crate::cpu::state::{Cpu, Fault, SegReg, Segment, Stop, EAX, EBX, ECX, EDX, ESP};

const GP: u8 = 13;
const NP: u8 = 11;
const SS_FAULT: u8 = 12;

fn gp(sel: u16) -> Fault {
    Fault::with_error(GP, (sel & !3) as u32)
}

/// Fetch the descriptor for a non-null selector, or fault.
fn descriptor(cpu: &Cpu, sel: u16) -> Result<u64, Fault> {
    if sel & 4 != 0 {
        return Err(gp(sel));
    }
    let idx = (sel >> 3) as usize;
    if idx >= cpu.gdt.len() {
        return Err(gp(sel));
    }
    Ok(cpu.gdt[idx])
}

const PRESENT: u16 = 0x80;
const S: u16 = 0x10;
const CODE: u16 = 0x08;
const CONFORMING: u16 = 0x04;
const WRITABLE_OR_READABLE: u16 = 0x02;

/// H:610 Load a data or stack segment register with the checks a processor
/// makes at CPL `cpu.cpl()`.
pub fn load_segment(cpu: &mut Cpu, seg: SegReg, sel: u16) -> Result<(), Fault> {
    let cpl = cpu.cpl() as u16;
    if sel & !3 == 0 {
        if seg == SegReg::Ss {
            return Err(Fault::GP0);
        }
        cpu.segs[seg as usize] = Segment { selector: sel, base: 0, limit: 0, rights: 0, usable: false };
        return Ok(());
    }
    let desc = descriptor(cpu, sel)?;
    let s = Segment::from_descriptor(sel, desc);
    let r = s.rights;
    let rpl = sel & 3;
    let dpl = s.dpl() as u16;
    if r & S == 0 {
        return Err(gp(sel));
    }
    if seg == SegReg::Ss {
        if rpl != cpl || dpl != cpl || r & CODE != 0 || r & WRITABLE_OR_READABLE == 0 {
            return Err(gp(sel));
        }
        if r & PRESENT == 0 {
            return Err(Fault::with_error(SS_FAULT, (sel & !3) as u32));
        }
    } else {
        let is_code = r & CODE != 0;
        if is_code && r & WRITABLE_OR_READABLE == 0 {
            return Err(gp(sel));
        }
        if (!is_code || r & CONFORMING == 0) && dpl < cpl.max(rpl) {
            return Err(gp(sel));
        }
        if r & PRESENT == 0 {
            return Err(Fault::with_error(NP, (sel & !3) as u32));
        }
    }
    cpu.segs[seg as usize] = s;
    Ok(())
}

/// Check a code segment for a far jump, call or return to privilege `new_cpl`.
fn code_segment(cpu: &Cpu, sel: u16, new_cpl: u8) -> Result<Segment, Fault> {
    if sel & !3 == 0 {
        return Err(Fault::GP0);
    }
    let desc = descriptor(cpu, sel)?;
    let mut s = Segment::from_descriptor(sel, desc);
    let r = s.rights;
    if r & S == 0 || r & CODE == 0 {
        // No call gates, task gates or TSS targets for our guests.
        return Err(gp(sel));
    }
    let dpl = s.dpl();
    if r & CONFORMING != 0 {
        if dpl > new_cpl {
            return Err(gp(sel));
        }
    } else if dpl != new_cpl {
        return Err(gp(sel));
    }
    if r & PRESENT == 0 {
        return Err(Fault::with_error(NP, (sel & !3) as u32));
    }
    s.selector = (sel & !3) | new_cpl as u16;
    Ok(s)
}

pub fn mov_to_sreg(cpu: &mut Cpu, d: &DInsn) -> R {
    let seg = super::seg_of(d.i.op0_register());
    if seg == SegReg::Cs {
        return Err(Stop::fault(Fault::UD));
    }
    let sel = read_op(cpu, d, 1, 2)? as u16;
    load_segment(cpu, seg, sel)?;
    Ok(())
}

pub fn load_far_pointer(cpu: &mut Cpu, d: &DInsn) -> R {
    let lin = super::mem_lin(cpu, d);
    let (off, sel) = if d.size == 2 {
        (cpu.read_u16(lin)? as u32, cpu.read_u16(lin.wrapping_add(2))?)
    } else {
        (cpu.read_u32(lin)?, cpu.read_u16(lin.wrapping_add(4))?)
    };
    let seg = match d.i.mnemonic() {
        iced_x86::Mnemonic::Les => SegReg::Es,
        iced_x86::Mnemonic::Lfs => SegReg::Fs,
        iced_x86::Mnemonic::Lgs => SegReg::Gs,
        iced_x86::Mnemonic::Lss => SegReg::Ss,
        _ => SegReg::Ds,
    };
    load_segment(cpu, seg, sel)?;
    super::set_reg(cpu, d.i.op0_register(), off);
    Ok(())
}

/// The (selector, offset) of a far jump or call operand.
fn far_target(cpu: &mut Cpu, d: &DInsn) -> Result<(u16, u32), Fault> {
    match d.i.op0_kind() {
        OpKind::FarBranch16 => Ok((d.i.far_branch_selector(), d.i.far_branch16() as u32)),
        OpKind::FarBranch32 => Ok((d.i.far_branch_selector(), d.i.far_branch32())),
        _ => {
            let lin = super::mem_lin(cpu, d);
            if d.i.memory_size() == iced_x86::MemorySize::SegPtr16 {
                Ok((cpu.read_u16(lin.wrapping_add(2))?, cpu.read_u16(lin)? as u32))
            } else {
                Ok((cpu.read_u16(lin.wrapping_add(4))?, cpu.read_u32(lin)?))
            }
        }
    }
}

fn bare(cpu: &Cpu) -> bool {
    matches!(cpu.mmu, Mmu::Bare(_))
}

pub fn jmp_far(cpu: &mut Cpu, d: &DInsn) -> R {
    let (sel, off) = far_target(cpu, d)?;
    let cs = code_segment(cpu, sel, cpu.cpl())?;
    cpu.segs[SegReg::Cs as usize] = cs;
    cpu.next_eip = off;
    cpu.end_block();
    Ok(())
}

pub fn call_far(cpu: &mut Cpu, d: &DInsn) -> R {
    let (sel, off) = far_target(cpu, d)?;
    let cs = code_segment(cpu, sel, cpu.cpl())?;
    let sp = cpu.regs[ESP];
    let lin = cpu.lin(SegReg::Ss, sp.wrapping_sub(8));
    cpu.probe_write(lin, 8)?;
    let old_cs = cpu.segs[SegReg::Cs as usize].selector as u32;
    let ret = cpu.next_eip;
    cpu.push32(old_cs)?;
    cpu.push32(ret)?;
    cpu.segs[SegReg::Cs as usize] = cs;
    cpu.next_eip = off;
    cpu.end_block();
    Ok(())
}

/// H:620 Return to an outer privilege level: after loading the new CS and
/// SS, data segment registers the new level may not use become null, as on
/// hardware (the guest kernel's data selectors vanish on return to user).
fn drop_inaccessible_segments(cpu: &mut Cpu) {
    for s in [SegReg::Es, SegReg::Ds, SegReg::Fs, SegReg::Gs] {
        let seg = cpu.segs[s as usize];
        if !seg.usable {
            continue;
        }
        let is_code = seg.rights & CODE != 0;
        let conforming = is_code && seg.rights & CONFORMING != 0;
        if !conforming && seg.dpl() < cpu.cpl() {
            cpu.segs[s as usize] = Segment { selector: 0, base: 0, limit: 0, rights: 0, usable: false };
        }
    }
}

pub fn retf(cpu: &mut Cpu, d: &DInsn) -> R {
    let extra = if d.i.op_count() == 1 { d.i.immediate16() as u32 } else { 0 };
    let eip = cpu.peek_stack(0, 4)?;
    let sel = cpu.peek_stack(4, 4)? as u16;
    if bare(cpu) {
        cpu.regs[ESP] = cpu.regs[ESP].wrapping_add(8 + extra);
        cpu.next_eip = eip;
        return Ok(());
    }
    let rpl = (sel & 3) as u8;
    if rpl < cpu.cpl() {
        return Err(Stop::fault(gp(sel)));
    }
    let cs = code_segment(cpu, sel, rpl)?;
    if rpl > cpu.cpl() {
        let esp = cpu.peek_stack(8 + extra, 4)?;
        let ss = cpu.peek_stack(12 + extra, 4)? as u16;
        let old = cpu.cpl();
        cpu.set_cpl(rpl);
        if let Err(f) = load_segment(cpu, SegReg::Ss, ss) {
            cpu.set_cpl(old);
            return Err(f.into());
        }
        cpu.regs[ESP] = esp.wrapping_add(extra);
        cpu.segs[SegReg::Cs as usize] = cs;
        drop_inaccessible_segments(cpu);
    } else {
        cpu.regs[ESP] = cpu.regs[ESP].wrapping_add(8 + extra);
        cpu.segs[SegReg::Cs as usize] = cs;
    }
    cpu.next_eip = eip;
    cpu.end_block();
    Ok(())
}

/// H:630 iret: the way back from every trap and interrupt.  From ring 1 to
/// ring 3 it also pops the user stack pointer and segment.  The flags it may
/// change depend on the *current* privilege: a guest kernel cannot set IOPL
/// or IF this way (lguest keeps the guest's interrupt flag in lguest_data).
pub fn iret(cpu: &mut Cpu, d: &DInsn) -> R {
    if d.i.code() == Code::Iretw {
        return Err(Stop::fault(Fault::GP0));
    }
    let eip = cpu.peek_stack(0, 4)?;
    let sel = cpu.peek_stack(4, 4)? as u16;
    let fl = cpu.peek_stack(8, 4)?;
    if bare(cpu) {
        cpu.regs[ESP] = cpu.regs[ESP].wrapping_add(12);
        super::data::write_flags_from_pop(cpu, fl, 4);
        cpu.next_eip = eip;
        cpu.end_block();
        return Ok(());
    }
    let rpl = (sel & 3) as u8;
    if rpl < cpu.cpl() {
        return Err(Stop::fault(gp(sel)));
    }
    let cs = code_segment(cpu, sel, rpl)?;
    if rpl > cpu.cpl() {
        let esp = cpu.peek_stack(12, 4)?;
        let ss = cpu.peek_stack(16, 4)? as u16;
        super::data::write_flags_from_pop(cpu, fl, 4);
        let old = cpu.cpl();
        cpu.set_cpl(rpl);
        if let Err(f) = load_segment(cpu, SegReg::Ss, ss) {
            cpu.set_cpl(old);
            return Err(f.into());
        }
        cpu.regs[ESP] = esp;
        cpu.segs[SegReg::Cs as usize] = cs;
        drop_inaccessible_segments(cpu);
    } else {
        cpu.regs[ESP] = cpu.regs[ESP].wrapping_add(12);
        super::data::write_flags_from_pop(cpu, fl, 4);
        cpu.segs[SegReg::Cs as usize] = cs;
    }
    cpu.next_eip = eip;
    cpu.end_block();
    Ok(())
}

pub fn cli_sti(cpu: &mut Cpu, d: &DInsn) -> R {
    let iopl = (cpu.eflags >> 12) & 3;
    if cpu.cpl() as u32 > iopl {
        return Err(Stop::fault(Fault::GP0));
    }
    if d.i.mnemonic() == iced_x86::Mnemonic::Cli {
        cpu.eflags &= !flags::IF;
    } else {
        cpu.eflags |= flags::IF;
    }
    Ok(())
}

/// Port I/O: no guest runs with enough privilege (IOPL is 0 and there is no
/// I/O bitmap), so every form faults; the host emulates the simple ones.
pub fn io(_: &mut Cpu, _: &DInsn) -> R {
    Err(Stop::fault(Fault::GP0))
}

/// H:605 Instructions reserved to ring 0.  We never run ring-0 code, so
/// they always fault: #GP(0), except `vmcall`, which is #UD on a processor
/// without VT.  That #UD is the first thing a 2.6.32 guest's first
/// hypercall does (G:110): the interpreter knows nothing of hypercalls and
/// just reports the fault, and the host recognises the instruction and
/// turns it into one (H:965, H:970).
pub fn privileged(cpu: &mut Cpu, d: &DInsn) -> R {
    if d.i.mnemonic() == iced_x86::Mnemonic::Vmcall {
        return Err(Stop::fault(Fault::UD));
    }
    let _ = cpu;
    Err(Stop::fault(Fault::GP0))
}

/// What `sgdt`, `sidt`, `sldt`, `str` and `smsw` reveal: host internals in
/// the original; fixed, harmless values here.
pub const GDT_LIMIT: u16 = 32 * 8 - 1;
pub const IDT_LIMIT: u16 = 256 * 8 - 1;
pub const HOST_TABLES_BASE: u32 = 0xFFC0_1000;
pub const TSS_SELECTOR: u16 = 0x80;

pub fn store_descriptor_regs(cpu: &mut Cpu, d: &DInsn) -> R {
    use iced_x86::Mnemonic as M;
    match d.i.mnemonic() {
        M::Sgdt | M::Sidt => {
            let limit = if d.i.mnemonic() == M::Sgdt { GDT_LIMIT } else { IDT_LIMIT };
            let lin = super::mem_lin(cpu, d);
            cpu.probe_write(lin, 6)?;
            cpu.write_u16(lin, limit)?;
            cpu.write_u32(lin.wrapping_add(2), HOST_TABLES_BASE)?;
        }
        M::Sldt => super::write_op(cpu, d, 0, d.size, 0)?,
        M::Str => super::write_op(cpu, d, 0, d.size, TSS_SELECTOR as u32)?,
        _ => {
            // PE, MP, ET, NE, and TS when the virtual TS flag is set.
            let v = 0x33 | if cpu.ts { 0x8 } else { 0 };
            super::write_op(cpu, d, 0, d.size, v)?
        }
    }
    Ok(())
}

// H:640 The processor we pretend to be.  CPUID answers come from one table so
// that the guest sees a consistent machine: we advertise only what the
// interpreter executes (no APIC, no MSRs, no SYSENTER, no NX).  PAE is a
// property of the paging unit, and ours walks PAE tables only for a guest
// initialized in PAE mode (H:592), so only that guest is told about it; the
// answer comes from the `Mmu`, which keeps the processor state itself
// unchanged.  A PAE Linux guest checks this bit at boot and stops if it is
// missing.
pub const CPUID_VENDOR: &[u8; 12] = b"LguestInterp";
/// Leaf 1 EDX: TSC, CX8, CMOV, plus FPU/MMX/FXSR/SSE/SSE2 once `fpu` says it
/// implements them, and PAE when the paging unit does.
pub fn cpuid_leaf1_edx(pae: bool) -> u32 {
    let mut edx = (1 << 4) | (1 << 8) | (1 << 15);
    if crate::cpu::fpu::IMPLEMENTED {
        edx |= 1 | (1 << 23) | (1 << 24) | (1 << 25) | (1 << 26);
    }
    if pae {
        edx |= 1 << 6;
    }
    edx
}

pub fn cpuid_values(leaf: u32, pae: bool) -> [u32; 4] {
    let v = CPUID_VENDOR;
    let w = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
    match leaf {
        0 => [1, w(0), w(8), w(4)],
        // Family 6, model 0x0f, stepping 1; no brand, one logical CPU.
        1 => [0x0000_06f1, 0x0001_0800, 0, cpuid_leaf1_edx(pae)],
        0x8000_0000 => [0x8000_0000, 0, 0, 0],
        _ => [0, 0, 0, 0],
    }
}

pub fn cpuid(cpu: &mut Cpu, _: &DInsn) -> R {
    let pae = matches!(&cpu.mmu, Mmu::Paged(p) if p.is_pae());
    let [a, b, c, dx] = cpuid_values(cpu.regs[EAX], pae);
    cpu.regs[EAX] = a;
    cpu.regs[EBX] = b;
    cpu.regs[ECX] = c;
    cpu.regs[EDX] = dx;
    Ok(())
}

pub fn rdtsc(cpu: &mut Cpu, _: &DInsn) -> R {
    let t = cpu.tsc();
    cpu.regs[EAX] = t as u32;
    cpu.regs[EDX] = (t >> 32) as u32;
    Ok(())
}

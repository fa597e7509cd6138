//! Traps, interrupts and the guest's IDT.
//!
// H:1000 A guest kernel handles its own traps and interrupts through an IDT
// it describes to the host, entry by entry, with LOAD_IDT_ENTRY.  When the
// guest faults, or a virtual interrupt is due, the host "reflects" it: it
// builds the frame the processor would have pushed on the guest's stack and
// jumps to the guest's handler, at ring 1.  The guest cannot tell this from
// a hardware delivery, which is the whole point.

use std::sync::atomic::Ordering;

use crate::cpu::flags;
use crate::cpu::state::{SegReg, Segment, EAX};
use crate::lguest::{ld, Guest};
use crate::segments::{GDT_ENTRY_KERNEL_CS, KERNEL_CS};

/// A guest IDT gate, as the host stores it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdtEntry {
    pub lo: u32,
    pub hi: u32,
}

impl IdtEntry {
    pub fn present(&self) -> bool {
        self.hi & 0x8000 != 0
    }
    pub fn gate_type(&self) -> u32 {
        (self.hi >> 8) & 0xf
    }
    pub fn dpl(&self) -> u32 {
        (self.hi >> 13) & 3
    }
    pub fn offset(&self) -> u32 {
        (self.lo & 0xffff) | (self.hi & 0xffff_0000)
    }
}

/// H:1010 LOAD_IDT_ENTRY: vectors the host keeps for itself are ignored;
/// only 32-bit interrupt and trap gates are accepted; the selector is forced
/// to the guest kernel's code segment so a gate cannot lead to ring 0.
pub fn load_idt_entry(g: &mut Guest, vec: u32, lo: u32, hi: u32) {
    if matches!(vec, 2 | 8 | 15 | 0x1f) {
        return;
    }
    if vec >= 256 {
        g.kill(format!("Setting idt entry {vec}"));
        return;
    }
    if hi & 0x8000 == 0 {
        g.idt[vec as usize] = IdtEntry::default();
        return;
    }
    let t = (hi >> 8) & 0xf;
    if t != 0xe && t != 0xf {
        g.kill(format!("bad IDT type {t}"));
        return;
    }
    let lo = (lo & 0xffff) | ((KERNEL_CS as u32) << 16);
    let hi = hi & 0xffff_efff & !0xff;
    g.idt[vec as usize] = IdtEntry { lo, hi };
}

fn has_error_code(vec: u32) -> bool {
    matches!(vec, 8 | 10 | 11 | 12 | 13 | 14 | 17)
}

/// Write a 32-bit word at a guest virtual address through the guest's page
/// tables (the host's own walk: no permission checks).
fn push_word(g: &mut Guest, sp: &mut u32, v: u32) -> bool {
    *sp = sp.wrapping_sub(4);
    let gva = *sp;
    let gpa = match g.paging().gva_to_gpa(gva) {
        Ok(a) => a,
        Err(e) => {
            g.kill(e);
            return false;
        }
    };
    if let Err(e) = g.mem.write_u32(gpa, v) {
        g.kill(e.to_string());
        return false;
    }
    if g.cpu.cache.is_code_page(gpa) {
        g.cpu.cache.invalidate_page(gpa);
    }
    true
}

/// H:1020 Reflect vector `vec` into the guest: push the frame the hardware
/// would push and enter the guest's handler at ring 1.  Faults come here
/// from `Guest::fault` (H:965) and `int n` from H:1030; a vector whose gate
/// the guest never set up is fatal, as a triple fault would be.
pub fn reflect(g: &mut Guest, vec: u32, err: Option<u32>, fault_addr: u32) {
    let gate = g.idt.get(vec as usize).copied().unwrap_or_default();
    if !gate.present() {
        let x = if vec == 14 { fault_addr } else { err.unwrap_or(0) };
        g.kill(format!("unhandled trap {vec} at {:#x} ({x:#x})", g.cpu.eip));
        return;
    }
    let err = if has_error_code(vec) { Some(err.unwrap_or(0)) } else { None };
    // H:1025 Vectors the original host let the processor deliver by itself
    // ("direct" traps: a trap gate for a vector below 32 other than the ones
    // the host must see, or the system-call vector) differ in one visible
    // way: the EFLAGS the hardware pushes is the real one, whose IF is always
    // set, and the guest's virtual IF is left alone.
    let direct = gate.gate_type() == 0xf && is_direct_capable(g, vec);
    deliver(g, gate, err, direct);
}

/// Vectors lguest let the processor deliver straight into the guest.
fn is_direct_capable(g: &Guest, vec: u32) -> bool {
    (vec < 32 && !matches!(vec, 6 | 7 | 13 | 14 | 0x1f)) || vec == g.syscall_vector || vec == 0x80
}

// H:1045 The delivery itself, shared by traps and interrupts, is the
// processor's interrupt sequence done by hand.  From user space the frame
// goes on the guest kernel's stack, the one it named with SET_STACK (which
// the host keeps mapped, H:1160), and SS:ESP of the user are pushed first;
// from the kernel it goes on the current stack.  Then EFLAGS, with the
// guest's virtual IF put in (except for the direct traps of H:1025), so
// that its iret (G:240) restores the interrupt state it had; CS, EIP and
// the error code.
// Execution continues at the gate's address in ring 1, at the guest's
// stub (G:230).  An interrupt gate turns the virtual IF off, as hardware
// clears IF, and a trap gate leaves it alone.
fn deliver(g: &mut Guest, gate: IdtEntry, err: Option<u32>, direct: bool) {
    let cpu_eflags = g.cpu.get_eflags();
    let old_ss = g.cpu.segs[SegReg::Ss as usize].selector as u32;
    let old_cs = g.cpu.segs[SegReg::Cs as usize].selector as u32;
    let old_esp = g.cpu.regs[crate::cpu::state::ESP];
    let from_user = old_ss & 3 != 1;
    let (new_ss, mut sp) = if from_user { (g.ss1, g.esp1) } else { (old_ss, old_esp) };
    // The guest's virtual interrupt flag goes into the pushed EFLAGS.
    let mut fl = cpu_eflags;
    if !direct {
        if let Some(ie) = g.ld_read(ld::IRQ_ENABLED) {
            if ie & flags::IF == 0 {
                fl &= !flags::IF;
            }
        }
    }
    if from_user && (!push_word(g, &mut sp, old_ss) || !push_word(g, &mut sp, old_esp)) {
        return;
    }
    if !push_word(g, &mut sp, fl) || !push_word(g, &mut sp, old_cs) || !push_word(g, &mut sp, g.cpu.eip) {
        return;
    }
    if let Some(e) = err {
        if !push_word(g, &mut sp, e) {
            return;
        }
    }
    let cpu = &mut g.cpu;
    cpu.set_cpl(1);
    if from_user {
        if let Err(f) = crate::cpu::exec::system::load_segment(cpu, SegReg::Ss, new_ss as u16) {
            g.kill(format!("unhandled trap 256 at {:#x} ({:#x})", g.cpu.eip, f.error.unwrap_or(0)));
            return;
        }
    }
    let cpu = &mut g.cpu;
    cpu.regs[crate::cpu::state::ESP] = sp;
    cpu.segs[SegReg::Cs as usize] = Segment::from_descriptor(KERNEL_CS, cpu.gdt[GDT_ENTRY_KERNEL_CS]);
    cpu.eip = gate.offset();
    // Like hardware (and later lguest hosts): no single-stepping or nested
    // task into the handler.
    let f = cpu.get_eflags() & !(flags::TF | flags::VM | flags::RF | flags::NT);
    cpu.set_eflags(f);
    if gate.gate_type() == 0xe {
        g.ld_write(ld::IRQ_ENABLED, 0, "Disabling interrupts");
    }
}

/// H:1030 `int n` from the guest.  Vector 0x1f from the kernel is a
/// hypercall: we only copy its registers into `pending_hcall`, and the run
/// loop carries it out before the guest runs on (H:1110).  Any other
/// vector, or 0x1f from user space, goes through the guest's IDT, and the
/// gate's DPL decides between delivery and #GP.
pub fn software_interrupt(g: &mut Guest, vec: u8) {
    let vec = vec as u32;
    let cpl = g.cpu.cpl() as u32;
    if vec == 0x1f {
        if cpl == 1 {
            let r = &g.cpu.regs;
            g.pending_hcall = Some([r[EAX], r[3], r[1], r[2], r[6]]);
        } else {
            // The trap was never executed: EIP goes back to the int.
            g.cpu.eip = g.cpu.eip.wrapping_sub(2);
            reflect(g, 13, Some(vec * 8 + 2), 0);
        }
        return;
    }
    let direct_capable = is_direct_capable(g, vec);
    let gate = g.idt[vec as usize];
    let dpl = if direct_capable && gate.present() { gate.dpl() } else { 0 };
    if cpl > dpl {
        // #GP with the IDT-vector error code, at the int instruction.
        let len = if vec == 3 || vec == 4 { 1 } else { 2 };
        g.cpu.eip = g.cpu.eip.wrapping_sub(len);
        reflect(g, 13, Some(vec * 8 + 2), 0);
        return;
    }
    reflect(g, vec, None, 0);
}

/// H:1040 Deliver one virtual interrupt if one is pending, unmasked, and the
/// guest's virtual IF allows it (6.6 of the ABI notes).  The run loop calls
/// this before every entry into the guest (H:940), so an interrupt raised by
/// a device thread (H:910) is taken at the next block boundary.  The checks
/// come in the original's order: the line's bit in blocked_interrupts (the
/// guest's mask), EIP inside lguest_iret's window (G:240), then the
/// virtual IF; a guest with interrupts off gets irq_pending set instead and
/// asks for the interrupt when it turns them on (G:245).  HALT counts as
/// "interrupts on": the guest halts with them off on purpose (G:252).
/// The lowest pending line goes first, through the IDT (H:1045).
pub fn try_deliver(g: &mut Guest) {
    if g.lguest_data.is_none() {
        return;
    }
    let pending = g.shared.irqs.load(Ordering::Acquire);
    if pending == 0 {
        return;
    }
    let blocked = match g.ld_read(ld::BLOCKED_INTERRUPTS) {
        Some(b) => b,
        None => return,
    };
    let cand = pending & !blocked;
    if cand == 0 {
        return;
    }
    let irq = cand.trailing_zeros();
    let eip = g.cpu.eip;
    if eip >= g.noirq_start && eip < g.noirq_end {
        return;
    }
    if g.halted {
        g.ld_write(ld::IRQ_ENABLED, flags::IF, "Re-enabling interrupts");
        g.halted = false;
    } else {
        let ie = g.ld_read(ld::IRQ_ENABLED).unwrap_or(0);
        // Only bit 9 means "enabled" (lguest_iret can leave other bits set).
        if ie & flags::IF == 0 {
            g.ld_write(ld::IRQ_PENDING, flags::IF, "Writing irq_pending");
            return;
        }
    }
    let vec = 32 + irq;
    let gate = g.idt[vec as usize];
    if gate.present() {
        g.shared.irqs.fetch_and(!(1 << irq), Ordering::AcqRel);
        deliver(g, gate, None, false);
    }
    g.write_timestamp();
    let rest = g.shared.irqs.load(Ordering::Acquire) & !blocked;
    if rest == 0 {
        g.ld_write(ld::IRQ_PENDING, 0, "Writing irq_pending");
    }
}

/// H:1050 The only instructions the host emulates: port I/O at ring 1 (the
/// guest probes ports at boot and uses port 0x80 for delays; every port reads
/// as "nothing here", all ones) and a stray `cli`, which later guests expect
/// to be skipped.
pub fn emulate_insn(g: &mut Guest) -> bool {
    let lin = g.cpu.lin(SegReg::Cs, g.cpu.eip);
    let mut b = [0u8; 3];
    if g.read_gva(lin, &mut b).is_err() {
        return false;
    }
    let (prefix, op) = if b[0] == 0x66 { (true, b[1]) } else { (false, b[0]) };
    if !prefix && op == 0xfa {
        g.cpu.eip = g.cpu.eip.wrapping_add(1);
        return true;
    }
    let (len, is_in) = match op & 0xfe {
        0xe4 => (2, true),
        0xec => (1, true),
        0xe6 => (2, false),
        0xee => (1, false),
        _ => return false,
    };
    if is_in {
        let eax = &mut g.cpu.regs[EAX];
        if op & 1 == 0 {
            *eax |= 0xff;
        } else if prefix {
            *eax |= 0xffff;
        } else {
            *eax = 0xffff_ffff;
        }
    }
    g.cpu.eip = g.cpu.eip.wrapping_add(len + prefix as u32);
    true
}

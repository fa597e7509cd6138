//! The guest's GDT: the host owns it, the guest edits it by hypercall.
//!
// H:800 A guest at ring 1 cannot be allowed to write its own descriptor
// table: it could make itself a ring-0 segment.  lguest therefore kept the
// GDT in the host and let the guest change entries only through the
// LOAD_GDT_ENTRY and LOAD_TLS hypercalls, fixing up each descriptor on the
// way in: a DPL of 0 becomes 1 (the guest kernel's ring), and the
// "accessed" bit is set in advance because the processor could not write
// it into a table the guest does not own.  A handful of entries belong to the
// host itself and are stored but never used.

use crate::cpu::state::{Cpu, SegReg, Segment};

pub const GDT_ENTRIES: u32 = 32;
pub const GDT_ENTRY_TLS_MIN: usize = 6;
pub const GDT_ENTRY_LGUEST_CS: usize = 10;
pub const GDT_ENTRY_LGUEST_DS: usize = 11;
pub const GDT_ENTRY_KERNEL_CS: usize = 12;
pub const GDT_ENTRY_KERNEL_DS: usize = 13;
pub const GDT_ENTRY_TSS: usize = 16;
pub const GDT_ENTRY_DOUBLEFAULT_TSS: usize = 31;

/// Guest kernel selectors with RPL 1.
pub const KERNEL_CS: u16 = (GDT_ENTRY_KERNEL_CS as u16) << 3 | 1;
pub const KERNEL_DS: u16 = (GDT_ENTRY_KERNEL_DS as u16) << 3 | 1;

fn desc(lo: u32, hi: u32) -> u64 {
    (hi as u64) << 32 | lo as u64
}

fn host_owned(num: usize) -> bool {
    matches!(num, GDT_ENTRY_LGUEST_CS | GDT_ENTRY_LGUEST_DS | GDT_ENTRY_TSS | GDT_ENTRY_DOUBLEFAULT_TSS)
}

/// H:810 The GDT a guest finds at its first instruction: the host's flat
/// ring-0 segments, flat ring-1 code and data for the guest kernel, and the
/// host's TSS.  Everything else is empty.
pub fn setup_initial_gdt(cpu: &mut Cpu) {
    cpu.gdt = [0; 32];
    cpu.gdt[GDT_ENTRY_LGUEST_CS] = desc(0x0000_FFFF, 0x00CF_9B00);
    cpu.gdt[GDT_ENTRY_LGUEST_DS] = desc(0x0000_FFFF, 0x00CF_9300);
    cpu.gdt[GDT_ENTRY_KERNEL_CS] = desc(0x0000_FFFF, 0x00CF_BB00);
    cpu.gdt[GDT_ENTRY_KERNEL_DS] = desc(0x0000_FFFF, 0x00CF_B300);
    // A 32-bit available TSS, DPL 0, at an address inside the reserved top.
    cpu.gdt[GDT_ENTRY_TSS] = desc(0x1000_0067, 0xFF00_89C0);
}

/// Store one descriptor with lguest's fix-ups.
pub fn load_gdt_entry(cpu: &mut Cpu, num: usize, lo: u32, hi: u32) {
    let mut hi = hi;
    if !host_owned(num) {
        if hi & (3 << 13) == 0 {
            hi |= 1 << 13;
        }
        hi |= 1 << 8;
    }
    cpu.gdt[num] = desc(lo, hi);
}

/// H:820 The host re-entered the guest through the GDT on every return, so a
/// descriptor change reached segment registers that were already loaded.  We
/// get the same effect by reloading the cached descriptors after each GDT
/// hypercall.  A register whose descriptor became unusable kills the guest,
/// as the original's faulting reload did.
pub fn refresh_segments(cpu: &mut Cpu) -> Result<(), String> {
    for s in SegReg::ALL {
        let cur = cpu.segs[s as usize];
        let sel = cur.selector;
        if sel & !3 == 0 {
            continue;
        }
        let idx = (sel >> 3) as usize;
        if sel & 4 != 0 || idx >= cpu.gdt.len() {
            return Err(format!("unhandled trap 256 at {:#x} ({:#x})", cpu.eip, sel));
        }
        let new = Segment::from_descriptor(sel, cpu.gdt[idx]);
        let present_segment = new.rights & 0x80 != 0 && new.rights & 0x10 != 0;
        let is_code = new.rights & 0x08 != 0;
        let ok = present_segment && (s != SegReg::Cs || is_code) && (s != SegReg::Ss || !is_code);
        if !ok {
            return Err(format!("unhandled trap 256 at {:#x} ({:#x})", cpu.eip, sel));
        }
        cpu.segs[s as usize] = new;
    }
    Ok(())
}

//! Paging for lguest guests.
//!
// H:500 An lguest guest runs with paging on from its first instruction: the
// 2.6.32 host built it a page table that maps both the first gigabytes of
// virtual addresses and the kernel's 0xC0000000 window onto guest RAM.  The
// guest later builds its own tables and tells the host about every change
// with hypercalls (SET_PTE, SET_PGD, FLUSH_TLB, NEW_PGTABLE).
//
// This first version walks the guest's own 2-level tables on each TLB miss,
// setting the accessed and dirty bits as a processor would, and keeps the
// checks that lguest made when it shadowed an entry: no large pages, no
// frames beyond the guest's memory, nothing in the reserved top 4 MiB.  The
// software TLB in `crate::cpu::mem` is what makes this cheap: a walk happens
// only on a miss, and the guest's hypercalls say precisely when to flush.

use std::sync::Arc;

use crate::cpu::mem::{Access, Translation};
use crate::cpu::state::Fault;
use crate::memory::GuestMemory;

/// The reserved top of every address space (the original's Switcher).
pub const SWITCHER_BASE: u32 = 0xFFC0_0000;

const P: u32 = 0x001;
const RW: u32 = 0x002;
const US: u32 = 0x004;
const A: u32 = 0x020;
const D: u32 = 0x040;
const PS: u32 = 0x080;

/// A pseudo-vector: the access could not be completed because the guest must
/// die.  The reason is left in `Paging::death`.
pub const KILL_VECTOR: u8 = 0xFF;

pub struct Paging {
    pub mem: Arc<GuestMemory>,
    /// Guest-physical address of the current top-level table (CR3).
    pub cr3: u32,
    /// Set when a walk found something the guest must die for.
    pub death: Option<String>,
}

impl Paging {
    pub fn new(mem: Arc<GuestMemory>, cr3: u32) -> Self {
        Paging { mem, cr3, death: None }
    }

    fn kill(&mut self, why: String) -> Fault {
        if self.death.is_none() {
            self.death = Some(why);
        }
        Fault::new(KILL_VECTOR)
    }

    fn frame_ok(&self, entry: u32) -> bool {
        let frame = entry & !0xfff;
        self.mem.check(frame, 4096)
    }

    /// H:510 Walk the guest's tables for `lin`.
    pub fn translate(&mut self, lin: u32, access: Access, user: bool) -> Result<Translation, Fault> {
        let write = access == Access::Write;
        let mut err = if write { 2 } else { 0 };
        if user {
            err |= 4;
        }
        let pde_addr = (self.cr3 & !0xfff) + (lin >> 22) * 4;
        let pde = match self.mem.read_u32(pde_addr) {
            Ok(v) => v,
            Err(e) => return Err(self.kill(e.to_string())),
        };
        if pde & P == 0 {
            return Err(Fault::page(lin, err));
        }
        if lin >= SWITCHER_BASE {
            return Err(self.kill("attempt to access switcher pages".into()));
        }
        if pde & PS != 0 || !self.frame_ok(pde) {
            return Err(self.kill("bad page directory entry".into()));
        }
        let pte_addr = (pde & !0xfff) + ((lin >> 12) & 0x3ff) * 4;
        let pte = match self.mem.read_u32(pte_addr) {
            Ok(v) => v,
            Err(e) => return Err(self.kill(e.to_string())),
        };
        if pte & P == 0 {
            return Err(Fault::page(lin, err));
        }
        // Write protection applies at every privilege level (CR0.WP is set
        // for lguest guests); user accesses need US at both levels.
        if (write && (pde & pte & RW) == 0) || (user && (pde & pte & US) == 0) {
            return Err(Fault::page(lin, err | 1));
        }
        if pte & PS != 0 || !self.frame_ok(pte) {
            return Err(self.kill("bad page table entry".into()));
        }
        let mut new = pte | A;
        if write {
            new |= D;
        }
        if new != pte {
            if let Err(e) = self.mem.write_u32(pte_addr, new) {
                return Err(self.kill(e.to_string()));
            }
        }
        let phys = pte & !0xfff;
        match self.mem.page_ptr(phys) {
            Some(host) => Ok(Translation { phys, host }),
            None => Err(self.kill(format!("failed to get page {}", phys >> 12))),
        }
    }

    /// H:520 The host's own walks (trap frames, instruction bytes): no
    /// permission checks and no accessed/dirty updates; an unmapped address
    /// kills the guest.
    pub fn gva_to_gpa(&mut self, gva: u32) -> Result<u32, String> {
        let pde = self.mem.read_u32((self.cr3 & !0xfff) + (gva >> 22) * 4).map_err(|e| e.to_string())?;
        if pde & P == 0 {
            return Err(format!("Bad address {gva:#x}"));
        }
        let pte = self.mem.read_u32((pde & !0xfff) + ((gva >> 12) & 0x3ff) * 4).map_err(|e| e.to_string())?;
        if pte & P == 0 {
            return Err(format!("Bad address {gva:#x}"));
        }
        Ok((pte & !0xfff) | (gva & 0xfff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Paging {
        let mem = Arc::new(GuestMemory::new(64 * 4096).unwrap());
        // Page directory at 0x1000, one page table at 0x2000 mapping
        // linear 0x0000..0x3FFFFF; entry 5 maps to frame 7, read-only for users.
        mem.write_u32(0x1000, 0x2000 | P | RW | US).unwrap();
        mem.write_u32(0x2000 + 5 * 4, 0x7000 | P | US).unwrap();
        Paging::new(mem, 0x1000)
    }

    #[test]
    fn walk_sets_accessed_and_dirty() {
        let mut p = setup();
        let t = p.translate(0x5123, Access::Read, false).unwrap();
        assert_eq!(t.phys, 0x7000);
        assert_eq!(p.mem.read_u32(0x2014).unwrap() & (A | D), A);
        // A write to a read-only page faults with P|W set.
        let f = p.translate(0x5000, Access::Write, true).unwrap_err();
        assert_eq!((f.vector, f.error, f.addr), (14, Some(7), 0x5000));
        // Not present gives P clear.
        let f = p.translate(0x6000, Access::Read, false).unwrap_err();
        assert_eq!(f.error, Some(0));
    }

    #[test]
    fn frames_beyond_memory_kill() {
        let mut p = setup();
        p.mem.write_u32(0x2000 + 6 * 4, 0x0100_0000 | P | RW).unwrap();
        let f = p.translate(0x6000, Access::Read, false).unwrap_err();
        assert_eq!(f.vector, KILL_VECTOR);
        assert_eq!(p.death.as_deref(), Some("bad page table entry"));
    }
}

/// H:530 The page tables the 2.6.32 host built for a guest before its first
/// instruction, just below the initrd: every page of RAM mapped twice, at its
/// own address and at 0xC0000000 above it, present, writable and
/// user-accessible.  Returns the page directory's guest-physical address.
pub fn setup_initial_pagetables(mem: &GuestMemory) -> Result<u32, String> {
    // boot_params: e820_map[0].size (u64 at 0x2D0 + 8), hdr.ramdisk_size (0x21C).
    let mem_size = mem.read_u32(0x2D0 + 8).map_err(|e| e.to_string())?;
    let mem_size_hi = mem.read_u32(0x2D0 + 12).map_err(|e| e.to_string())?;
    let ramdisk = mem.read_u32(0x21C).map_err(|e| e.to_string())?;
    if mem_size_hi != 0 || mem_size == 0 || mem_size % 4096 != 0 || mem_size > mem.limit() {
        return Err(format!("boot_params memory size {mem_size:#x} does not fit the guest's memory"));
    }
    if ramdisk % 4096 != 0 || ramdisk >= mem_size {
        return Err(format!("boot_params ramdisk size {ramdisk:#x} is not page aligned or too large"));
    }
    let pages = mem_size / 4096;
    let pt_pages = pages.div_ceil(1024);
    let pgdir = mem_size - ramdisk - 4096;
    let ptbase = pgdir
        .checked_sub(pt_pages * 4096)
        .ok_or_else(|| "no room for the initial page tables".to_string())?;
    for i in 0..pages {
        mem.write_u32(ptbase + 4 * i, (i << 12) | 0x007).map_err(|e| e.to_string())?;
    }
    // Both windows stop below the reserved top 4 MiB (directory entry 1023):
    // with more than about 1 GiB of RAM the 0xC0000000 window simply ends
    // there, as the kernel's own direct mapping would.
    for j in 0..pt_pages {
        let pde = (ptbase + j * 4096) | 0x007;
        if j < 1023 {
            mem.write_u32(pgdir + 4 * j, pde).map_err(|e| e.to_string())?;
        }
        if 768 + j < 1023 {
            mem.write_u32(pgdir + 4 * (768 + j), pde).map_err(|e| e.to_string())?;
        }
    }
    Ok(pgdir)
}

/// H:540 Forget every translation (lguest's "flush everything"): after the
/// host wrote into guest memory behind the processor's back, or when the
/// guest asks.
pub fn full_flush(g: &mut crate::lguest::Guest) {
    g.cpu.tlb.flush();
}

//! The shadow page-table cache and its update rules.
//!
// H:550 Shadow state, 2-level (non-PAE) layout.  Each of the four slots is a
// shadow page directory keyed by the guest-physical address of the guest's
// page directory it mirrors.  A shadow directory entry points at a shadow
// page table from a pool; a shadow page-table entry holds the guest frame and
// the flags the processor should enforce.  Entries are built on demand and
// dropped when the guest reports a change.

use super::{Fixup, A, D, G, P, PS, RW, SWITCHER_PGD_INDEX, US};
use crate::memory::GuestMemory;

pub const SLOTS: usize = 4;
const ENTRIES: usize = 1024;

/// Flags allowed in a guest page-directory entry (P, RW, US, A, D).
const PDE_ALLOWED: u32 = 0x067;

struct Slot {
    /// GPA of the guest page directory this slot mirrors; None = never used.
    key: Option<u32>,
    /// 0 = not present; else ((pool index + 1) << 12) | guest PDE flags.
    pgd: Box<[u32; ENTRIES]>,
}

impl Slot {
    fn blank(key: Option<u32>) -> Self {
        Slot { key, pgd: Box::new([0; ENTRIES]) }
    }
}

pub struct TwoLevel {
    slots: Vec<Slot>,
    current: usize,
    /// Shadow page tables; index `i` is referenced as `(i + 1) << 12`.
    pool: Vec<Box<[u32; ENTRIES]>>,
    free: Vec<u32>,
    /// Top-level index where the kernel part (shared by all address spaces)
    /// begins: `kernel_address >> 22`, from lguest_data at LGUEST_INIT.
    pub kernel_pgd_index: u32,
    rng: u32,
    /// Counters for tests and benchmarks.
    pub fills: u64,
    pub switches: u64,
}

impl TwoLevel {
    /// Slot 0 starts with the host-built initial page directory, current.
    pub fn new(initial: u32) -> Self {
        let mut slots: Vec<Slot> = (0..SLOTS).map(|_| Slot::blank(None)).collect();
        slots[0].key = Some(initial);
        TwoLevel { slots, current: 0, pool: Vec::new(), free: Vec::new(), kernel_pgd_index: SWITCHER_PGD_INDEX, rng: 0x2545_F491, fills: 0, switches: 0 }
    }

    pub fn current_key(&self) -> u32 {
        self.slots[self.current].key.unwrap_or(0)
    }

    pub fn current_slot(&self) -> usize {
        self.current
    }

    pub fn keys(&self) -> Vec<Option<u32>> {
        self.slots.iter().map(|s| s.key).collect()
    }

    fn alloc_page(&mut self) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.pool[i as usize].fill(0);
                i
            }
            None => {
                self.pool.push(Box::new([0; ENTRIES]));
                (self.pool.len() - 1) as u32
            }
        }
    }

    fn drop_pgd_entry(&mut self, slot: usize, idx: usize) {
        let e = self.slots[slot].pgd[idx];
        if e & P != 0 {
            self.free.push((e >> 12) - 1);
        }
        self.slots[slot].pgd[idx] = 0;
    }

    /// H:560 The processor's view: the shadow allows this access and maps it
    /// to this frame, or it raises a page fault with this error code.  P in
    /// the error code is set only if a shadow page-table entry exists.
    #[inline]
    pub fn lookup(&self, lin: u32, write: bool, user: bool) -> Result<u32, u32> {
        let mut err = if write { 2 } else { 0 };
        if user {
            err |= 4;
        }
        let spgd = self.slots[self.current].pgd[(lin >> 22) as usize];
        if spgd & P == 0 {
            return Err(err);
        }
        let spte = self.pool[((spgd >> 12) - 1) as usize][((lin >> 12) & 0x3ff) as usize];
        if spte & P == 0 {
            return Err(err);
        }
        if (write && spgd & spte & RW == 0) || (user && spgd & spte & US == 0) {
            return Err(err | 1);
        }
        Ok(spte & !0xfff)
    }

    fn pfn_ok(mem: &GuestMemory, entry: u32) -> bool {
        mem.check(entry & !0xfff, 4096)
    }

    /// The shadow entry for a guest PTE: the guest's flags minus G, and
    /// read-only until the guest's dirty bit is set, so that the first write
    /// comes back to us to set it.
    fn shadow_pte(gpte: u32) -> u32 {
        let mut s = gpte & !G;
        if gpte & D == 0 {
            s &= !RW;
        }
        s
    }

    /// H:570 lguest's page-fault fix-up (`demand_page`), for the current
    /// slot: the end of a page fault's journey when the guest is not to
    /// blame.  The shadow said no (H:560), but the shadow is only a cache,
    /// so we ask the guest's own tables whether the access is allowed.  If
    /// the guest's directory entry and page-table entry are present and
    /// permit it, we copy the entry into the shadow and the access is
    /// retried (H:510).  Otherwise it is the guest's fault to handle and we
    /// say `NotFixed`.  Entries we cannot trust (a frame outside guest
    /// memory, a large page, the reserved top) kill the guest instead.
    ///
    /// Like the processor, we set the accessed bit in the guest's entry,
    /// and the dirty bit on a write, so that the guest's page reclaim sees
    /// what it expects.  The shadow entry stays read-only until the guest's
    /// entry is dirty (`shadow_pte`), so the first write comes back here to
    /// set the bit.
    pub fn demand_page(&mut self, mem: &GuestMemory, va: u32, err: u32) -> Fixup {
        let write = err & 2 != 0;
        let user = err & 4 != 0;
        let top = self.current_key() & !0xfff;
        let pgd_idx = (va >> 22) as usize;
        let gpde = match mem.read_u32(top + 4 * pgd_idx as u32) {
            Ok(v) => v,
            Err(e) => return Fixup::Kill(e.to_string()),
        };
        if gpde & P == 0 {
            return Fixup::NotFixed;
        }
        if pgd_idx as u32 >= SWITCHER_PGD_INDEX {
            return Fixup::Kill("attempt to access switcher pages".into());
        }
        if self.slots[self.current].pgd[pgd_idx] & P == 0 {
            if gpde & 0xfff & !PDE_ALLOWED != 0 || gpde & PS != 0 || !Self::pfn_ok(mem, gpde) {
                return Fixup::Kill("bad page directory entry".into());
            }
            let page = self.alloc_page();
            self.slots[self.current].pgd[pgd_idx] = ((page + 1) << 12) | (gpde & PDE_ALLOWED);
        }
        // Where the guest's own directory entry forbids the access, the
        // processor would fault forever on the shadow; reflect instead (the
        // original could loop here; abi-core quirk Q8).
        if (write && gpde & RW == 0) || (user && gpde & US == 0) {
            return Fixup::NotFixed;
        }
        let pte_addr = (gpde & !0xfff) + ((va >> 12) & 0x3ff) * 4;
        let gpte = match mem.read_u32(pte_addr) {
            Ok(v) => v,
            Err(e) => return Fixup::Kill(e.to_string()),
        };
        if gpte & P == 0 {
            return Fixup::NotFixed;
        }
        if (write && gpte & RW == 0) || (user && gpte & US == 0) {
            return Fixup::NotFixed;
        }
        if gpte & PS != 0 || !Self::pfn_ok(mem, gpte) {
            return Fixup::Kill("bad page table entry".into());
        }
        let mut new = gpte | A;
        if write {
            new |= D;
        }
        let spgd = self.slots[self.current].pgd[pgd_idx];
        self.pool[((spgd >> 12) - 1) as usize][((va >> 12) & 0x3ff) as usize] = Self::shadow_pte(new);
        if new != gpte {
            if let Err(e) = mem.write_u32(pte_addr, new) {
                return Fixup::Kill(e.to_string());
            }
        }
        self.fills += 1;
        Fixup::Fixed
    }

    /// Whether the current shadow maps `va` present and writable.
    pub fn maps_writable(&self, va: u32) -> bool {
        self.lookup(va, true, false).is_ok()
    }

    /// H:580 NEW_PGTABLE: switch to the slot for `key`, or take a slot at
    /// random (as lguest did: no LRU, no preference for empty slots).  A
    /// reused slot keeps its kernel part, which SET_PTE keeps identical in
    /// every slot; its user part belonged to another process and goes.
    /// Returns true if the slot was blank (the kernel stack must be pinned).
    pub fn switch_to(&mut self, key: u32) -> bool {
        self.switches += 1;
        if let Some(i) = self.slots.iter().position(|s| s.key == Some(key)) {
            self.current = i;
            return false;
        }
        let i = pick_slot(&mut self.rng);
        let blank = self.slots[i].key.is_none();
        if blank {
            self.slots[i].key = Some(key);
        } else {
            self.slots[i].key = Some(key);
            self.drop_user_part(i);
        }
        self.current = i;
        blank
    }

    fn drop_user_part(&mut self, slot: usize) {
        for idx in 0..(self.kernel_pgd_index.min(SWITCHER_PGD_INDEX) as usize) {
            self.drop_pgd_entry(slot, idx);
        }
    }

    /// FLUSH_TLB(0): the current address space's user part.
    pub fn flush_user(&mut self) {
        self.drop_user_part(self.current);
    }

    /// Every entry of every slot (keys kept), except the reserved region.
    pub fn flush_all(&mut self) {
        for s in 0..SLOTS {
            for idx in 0..SWITCHER_PGD_INDEX as usize {
                self.drop_pgd_entry(s, idx);
            }
        }
    }

    /// H:590 SET_PTE: the guest changed one entry.  Kernel addresses are
    /// shared by every address space, so every slot hears about them; user
    /// addresses only concern the slot for `top`.  If the new entry is
    /// already accessed (or dirty) we install it at once, as lguest did;
    /// otherwise the next access will demand-fault it in.
    pub fn set_pte(&mut self, mem: &GuestMemory, top: u32, va: u32, gpte: u32) -> Result<(), String> {
        if va >> 22 >= SWITCHER_PGD_INDEX {
            return Err("attempt to access switcher pages".into());
        }
        let kernel = va >> 22 >= self.kernel_pgd_index;
        for s in 0..SLOTS {
            let hit = match self.slots[s].key {
                Some(k) => kernel || k == top,
                None => false,
            };
            if !hit {
                continue;
            }
            let spgd = self.slots[s].pgd[(va >> 22) as usize];
            if spgd & P == 0 {
                continue;
            }
            let page = ((spgd >> 12) - 1) as usize;
            let idx = ((va >> 12) & 0x3ff) as usize;
            self.pool[page][idx] = 0;
            if gpte & (A | D) != 0 {
                if gpte & PS != 0 || (gpte & P != 0 && !Self::pfn_ok(mem, gpte)) {
                    return Err("bad page table entry".into());
                }
                self.pool[page][idx] = Self::shadow_pte(gpte);
            }
        }
        Ok(())
    }

    /// SET_PGD: drop one top-level entry of the slot for `top`.
    pub fn set_pgd(&mut self, top: u32, idx: u32) {
        if idx >= SWITCHER_PGD_INDEX {
            return;
        }
        if let Some(s) = self.slots.iter().position(|s| s.key == Some(top)) {
            self.drop_pgd_entry(s, idx as usize);
        }
    }
}

/// The slot a new address space takes: uniformly at random among all of
/// them, as lguest chose (an xorshift generator is random enough for that).
/// Both page-table layouts (this one and PAE's, H:592) use it.
pub(super) fn pick_slot(rng: &mut u32) -> usize {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 17;
    *rng ^= *rng << 5;
    (*rng as usize) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemory {
        let m = GuestMemory::new(64 * 4096).unwrap();
        for top in [0x1000u32, 0x3000] {
            m.write_u32(top, 0x2000 | P | RW | US).unwrap();
            m.write_u32(top + 4 * 768, 0x2000 | P | RW | US).unwrap();
        }
        m.write_u32(0x2000 + 5 * 4, 0x7000 | P | RW | US).unwrap();
        m
    }

    #[test]
    fn switching_keeps_four_slots() {
        let mut s = TwoLevel::new(0x1000);
        let mut seen = std::collections::HashSet::new();
        for k in 0..20u32 {
            s.switch_to(0x10000 + k * 0x1000);
            seen.insert(s.current_slot());
            assert_eq!(s.current_key(), 0x10000 + k * 0x1000);
        }
        assert!(s.keys().iter().all(|k| k.is_some()));
        assert!(seen.len() > 1, "random eviction uses several slots");
    }

    #[test]
    fn set_pte_reaches_every_slot_for_kernel_addresses() {
        let m = mem();
        let mut s = TwoLevel::new(0x1000);
        s.kernel_pgd_index = 768;
        // Fill the kernel mapping in slot 0 and in a second slot.
        assert_eq!(s.demand_page(&m, 0xC000_5000, 0), Fixup::Fixed);
        s.switch_to(0x3000);
        assert_eq!(s.demand_page(&m, 0xC000_5000, 0), Fixup::Fixed);
        assert!(s.lookup(0xC000_5000, false, false).is_ok());
        // The guest unmaps it: gone from both slots.
        s.set_pte(&m, 0x1000, 0xC000_5000, 0).unwrap();
        assert!(s.lookup(0xC000_5000, false, false).is_err());
        s.switch_to(0x1000);
        assert!(s.lookup(0xC000_5000, false, false).is_err());
    }

    #[test]
    fn set_pgd_and_flush_user() {
        let m = mem();
        let mut s = TwoLevel::new(0x1000);
        s.kernel_pgd_index = 768;
        assert_eq!(s.demand_page(&m, 0x5000, 0), Fixup::Fixed);
        assert_eq!(s.demand_page(&m, 0xC000_5000, 0), Fixup::Fixed);
        s.flush_user();
        assert!(s.lookup(0x5000, false, false).is_err());
        assert!(s.lookup(0xC000_5000, false, false).is_ok());
        s.set_pgd(0x1000, 768);
        assert!(s.lookup(0xC000_5000, false, false).is_err());
    }

    #[test]
    fn reserved_region_kills() {
        let m = mem();
        m.write_u32(0x1000 + 4 * 1023, 0x2000 | P | RW).unwrap();
        let mut s = TwoLevel::new(0x1000);
        assert_eq!(s.demand_page(&m, 0xFFC0_1000, 0), Fixup::Kill("attempt to access switcher pages".into()));
        assert!(s.set_pte(&m, 0x1000, 0xFFC0_0000, 0).is_err());
    }
}

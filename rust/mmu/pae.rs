//! PAE paging: three levels of 64-bit entries, chosen by a flag.
//!
// H:592 The second page-table layout.  A 2.6.32 kernel built with
// CONFIG_X86_PAE writes its page tables in the processor's Physical Address
// Extension format: 64-bit entries, 512 to a page, three levels instead of
// two.  CR3 points at a "page directory pointer table" (PDPT) of only four
// entries, one per GiB of address space; each points at a page directory
// (Linux calls it the PMD), whose entries point at page tables.  The wider
// entries exist for frames above 4 GiB and for the no-execute bit (bit 63).
//
// lguest supported PAE as a build option: host and guest had to be built
// the same way, and nothing in the ABI says which one is in use.  So the
// Launcher tells us at INITIALIZE (H:930) and the choice holds for the
// guest's life; `Shadows` (H:555) holds one layout or the other.
//
// The algorithm is the 2-level one (H:550 to H:590) one level deeper: four
// cached shadows keyed by the guest's CR3, filled on demand with the same
// checks, accessed and dirty bits and error codes.  What differs is where
// the reserved top lives (the last 2 MiB instead of 4), how coarse the
// user/kernel split is (whole GiB), and that a change to a middle-level
// entry throws every shadow away (SET_PMD).  A frame above 4 GiB is simply
// outside the guest's memory, like any frame at or above its limit, and
// kills the guest when it is shadowed.

use super::shadow::{pick_slot, SLOTS};
use super::{Fixup, A, D, G, P, PS, RW, US};
use crate::memory::GuestMemory;

/// The reserved top of every PAE address space (the original's Switcher).
pub const SWITCHER_BASE: u32 = 0xFFE0_0000;
/// What LGUEST_INIT tells a PAE guest to keep clear at the top.
pub const RESERVE_MEM: u32 = 0x0020_0000;
/// The reserved region is the last page directory entry under the last
/// PDPT entry.
const SWITCHER_PDPT_INDEX: usize = 3;
const SWITCHER_PMD_INDEX: usize = 511;
const ENTRIES: usize = 512;
/// The frame bits of a PAE entry (bits 12-43).
pub const FRAME: u64 = 0x0000_0FFF_FFFF_F000;
/// Flags allowed in a PDPT entry: P only (the processor reserves the rest).
const PDPTE_ALLOWED: u64 = 0x001;
/// Flags allowed in a page-directory (middle) entry: P, RW, US, A, D.
const PMD_ALLOWED: u64 = 0x067;

#[inline(always)]
fn pdpt_index(va: u32) -> usize {
    (va >> 30) as usize
}

#[inline(always)]
fn pmd_index(va: u32) -> usize {
    ((va >> 21) & 0x1ff) as usize
}

#[inline(always)]
fn pte_index(va: u32) -> usize {
    ((va >> 12) & 0x1ff) as usize
}

/// Pool index stored in a shadow entry that points at a shadow page.
#[inline(always)]
fn page_of(entry: u32) -> usize {
    ((entry >> 12) - 1) as usize
}

/// Read one 8-byte entry of the guest's tables.  The address is 64 bits
/// wide because a PAE entry can name a frame above 4 GiB; no guest memory
/// is there, so that is a bad read like any other.
fn read_entry(mem: &GuestMemory, addr: u64) -> Result<u64, String> {
    let a = u32::try_from(addr).map_err(|_| format!("bad read address {addr:#x} len 8"))?;
    let mut b = [0u8; 8];
    mem.read(a, &mut b).map_err(|e| e.to_string())?;
    Ok(u64::from_le_bytes(b))
}

fn write_entry(mem: &GuestMemory, addr: u32, v: u64) -> Result<(), String> {
    mem.write(addr, &v.to_le_bytes()).map_err(|e| e.to_string())
}

/// Whether an entry's frame is a whole page of guest memory.
fn pfn_ok(mem: &GuestMemory, entry: u64) -> bool {
    match u32::try_from(entry & FRAME) {
        Ok(f) => mem.check(f, 4096),
        Err(_) => false,
    }
}

/// The guest-physical address of the guest's PDPT entry for `va`.  CR3
/// holds a 32-byte aligned PDPT in PAE mode, which need not start a page.
#[inline]
fn gpdpte_addr(top: u32, va: u32) -> u64 {
    (top & !0x1f) as u64 + 8 * pdpt_index(va) as u64
}

/// H:594 The page tables the 2.6.32 host built for a PAE guest: the same
/// two views of RAM as the 2-level ones (H:530), at 0 and at 0xC0000000,
/// from one page directory that both the first and the fourth PDPT entry
/// point at.  One page directory maps 1 GiB, which is as far as either view
/// goes, so they cannot overlap however much RAM there is; the 2-level
/// tables needed a rule for that, these do not.  With 1 GiB of RAM or more
/// the window's last 2 MiB fall in the reserved region, and a guest that
/// touches them there is killed (H:597), as the original killed it.  A
/// 2.6.32 guest with 1 GiB does, because it reads its initrd at the top of
/// RAM through the window; the 2-level window stops short of the reserved
/// region, so there the same guest takes a page fault instead.  It cannot
/// boot either way.  Returns the PDPT's guest-physical address.
pub fn setup_initial_pagetables(mem: &GuestMemory, mem_size: u32, ramdisk: u32) -> Result<u32, String> {
    let pages = mem_size / 4096;
    let pt_pages = pages.div_ceil(ENTRIES as u32);
    let pdpt = mem_size - ramdisk - 4096;
    let room = || "no room for the initial page tables".to_string();
    let ptbase = pdpt.checked_sub(pt_pages * 4096).ok_or_else(room)?;
    let pmd = ptbase.checked_sub(4096).ok_or_else(room)?;
    for i in 0..pages {
        write_entry(mem, ptbase + 8 * i, ((i as u64) << 12) | 0x007)?;
    }
    for j in 0..pt_pages.min(ENTRIES as u32) {
        write_entry(mem, pmd + 8 * j, (ptbase + j * 4096) as u64 | 0x007)?;
    }
    write_entry(mem, pdpt, pmd as u64 | P as u64)?;
    write_entry(mem, pdpt + 8 * SWITCHER_PDPT_INDEX as u32, pmd as u64 | P as u64)?;
    Ok(pdpt)
}

/// The host's own walk (H:520) through PAE tables.  A frame above 4 GiB
/// cannot be guest memory: the original cut it to 32 bits by accident, we
/// treat the address as unmapped.
pub fn gva_to_gpa(mem: &GuestMemory, top: u32, gva: u32) -> Result<u32, String> {
    let bad = || format!("Bad address {gva:#x}");
    let pdpte = read_entry(mem, gpdpte_addr(top, gva))?;
    if pdpte & P as u64 == 0 {
        return Err(bad());
    }
    let pmd = read_entry(mem, (pdpte & FRAME) + 8 * pmd_index(gva) as u64)?;
    if pmd & P as u64 == 0 {
        return Err(bad());
    }
    let pte = read_entry(mem, (pmd & FRAME) + 8 * pte_index(gva) as u64)?;
    if pte & P as u64 == 0 {
        return Err(bad());
    }
    let frame = u32::try_from(pte & FRAME).map_err(|_| bad())?;
    Ok(frame | (gva & 0xfff))
}

struct Slot {
    /// GPA of the guest PDPT this slot mirrors; None = never used.
    key: Option<u32>,
    /// Shadow PDPT: 0 = not present, else ((directory index + 1) << 12) | P.
    pdpt: [u32; 4],
}

/// H:595 Shadow state, PAE layout.  A slot's top level is four words; they
/// point at shadow page directories from one pool, whose entries point at
/// shadow page tables from another.  Shadow directory entries are 32-bit
/// (a pool index and the guest's flags); shadow page-table entries keep
/// all 64 bits of the guest's entry, so NX and the rest are copied through.
///
/// One thing the 2-level shadow does not have: the fourth PDPT entry of
/// every slot always exists.  The original needed a page directory there to
/// map its Switcher into the last 2 MiB, so it made one with each shadow and
/// never dropped it.  Three consequences are visible to the guest and we
/// keep them: the guest's own fourth PDPT entry is never checked (its
/// shadow is never "first made"), SET_PGD cannot drop it, and a full flush
/// empties that directory but keeps it.
pub struct Pae {
    slots: Vec<Slot>,
    current: usize,
    /// Shadow page directories: ((page-table index + 1) << 12) | guest flags.
    pmds: Vec<[u32; ENTRIES]>,
    free_pmds: Vec<u32>,
    /// Shadow page tables: the guest's entry with the shadow's flags.
    ptes: Vec<[u64; ENTRIES]>,
    free_ptes: Vec<u32>,
    /// `kernel_address` from lguest_data (LGUEST_INIT); everything at and
    /// above it is shared by every address space.
    kernel_address: u32,
    rng: u32,
    /// Counters for tests and benchmarks.
    pub fills: u64,
    pub switches: u64,
}

impl Pae {
    /// Slot 0 starts with the host-built initial PDPT, current.
    pub fn new(initial: u32) -> Self {
        let mut p = Pae {
            slots: (0..SLOTS).map(|_| Slot { key: None, pdpt: [0; 4] }).collect(),
            current: 0,
            pmds: Vec::new(),
            free_pmds: Vec::new(),
            ptes: Vec::new(),
            free_ptes: Vec::new(),
            kernel_address: SWITCHER_BASE,
            rng: 0x2545_F491,
            fills: 0,
            switches: 0,
        };
        for s in 0..SLOTS {
            let page = p.alloc_pmd();
            p.slots[s].pdpt[SWITCHER_PDPT_INDEX] = ((page + 1) << 12) | P;
        }
        p.slots[0].key = Some(initial);
        p
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

    /// Where the shared kernel part begins (lguest_data.kernel_address).
    pub fn set_kernel_address(&mut self, addr: u32) {
        self.kernel_address = addr;
    }

    fn alloc_pmd(&mut self) -> u32 {
        match self.free_pmds.pop() {
            Some(i) => {
                self.pmds[i as usize].fill(0);
                i
            }
            None => {
                self.pmds.push([0; ENTRIES]);
                (self.pmds.len() - 1) as u32
            }
        }
    }

    fn alloc_pte(&mut self) -> u32 {
        match self.free_ptes.pop() {
            Some(i) => {
                self.ptes[i as usize].fill(0);
                i
            }
            None => {
                self.ptes.push([0; ENTRIES]);
                (self.ptes.len() - 1) as u32
            }
        }
    }

    fn drop_pmd_entry(&mut self, dir: usize, idx: usize) {
        let e = self.pmds[dir][idx];
        if e & P != 0 {
            self.free_ptes.push(page_of(e) as u32);
        }
        self.pmds[dir][idx] = 0;
    }

    fn drop_pdpt_entry(&mut self, slot: usize, idx: usize) {
        let e = self.slots[slot].pdpt[idx];
        if e & P == 0 {
            return;
        }
        let dir = page_of(e);
        for k in 0..ENTRIES {
            self.drop_pmd_entry(dir, k);
        }
        self.free_pmds.push(dir as u32);
        self.slots[slot].pdpt[idx] = 0;
    }

    /// H:596 The processor's view (the PAE twin of H:560).  The PDPT level
    /// carries no permissions (its entries may only say "present"), so RW
    /// and US come from the directory and page-table entries.
    #[inline]
    pub fn lookup(&self, lin: u32, write: bool, user: bool) -> Result<u32, u32> {
        let mut err = if write { 2 } else { 0 };
        if user {
            err |= 4;
        }
        let top = self.slots[self.current].pdpt[pdpt_index(lin)];
        if top & P == 0 {
            return Err(err);
        }
        let spmd = self.pmds[page_of(top)][pmd_index(lin)];
        if spmd & P == 0 {
            return Err(err);
        }
        let spte = self.ptes[page_of(spmd)][pte_index(lin)];
        let flags = spte as u32;
        if flags & P == 0 {
            return Err(err);
        }
        if (write && spmd & flags & RW == 0) || (user && spmd & flags & US == 0) {
            return Err(err | 1);
        }
        // Shadowed frames passed `pfn_ok`, so they fit in 32 bits.
        Ok((spte & FRAME) as u32)
    }

    /// The shadow entry for a guest PTE: as in H:570, minus G and read-only
    /// until the guest's dirty bit is set.  NX and the high bits are kept.
    fn shadow_pte(gpte: u64) -> u64 {
        let mut s = gpte & !(G as u64);
        if gpte & D as u64 == 0 {
            s &= !(RW as u64);
        }
        s
    }

    /// H:597 `demand_page` with a middle level.  The steps are those of
    /// the 2-level fix-up (H:570), once more for the page directory: read
    /// the guest's entry, give up ("not fixed") if it is not present, check
    /// it and make a shadow for it if there is none yet.  The checks are the original's: a PDPT
    /// entry may only be present ("bad page directory entry"), a directory
    /// entry may carry P, RW, US, A and D ("bad page middle directory
    /// entry"), and every frame must be inside guest memory.  The reserved
    /// top is noticed only once the guest's own directory entry for it is
    /// present, as in the original.  The page-table entry gets its accessed
    /// (and, for a write, dirty) bit and is written back as 8 bytes.
    pub fn demand_page(&mut self, mem: &GuestMemory, va: u32, err: u32) -> Fixup {
        let write = err & 2 != 0;
        let user = err & 4 != 0;
        let pi = pdpt_index(va);
        let gpdpte = match read_entry(mem, gpdpte_addr(self.current_key(), va)) {
            Ok(v) => v,
            Err(e) => return Fixup::Kill(e),
        };
        if gpdpte & P as u64 == 0 {
            return Fixup::NotFixed;
        }
        if self.slots[self.current].pdpt[pi] & P == 0 {
            if gpdpte & !FRAME & !PDPTE_ALLOWED != 0 || !pfn_ok(mem, gpdpte) {
                return Fixup::Kill("bad page directory entry".into());
            }
            let dir = self.alloc_pmd();
            self.slots[self.current].pdpt[pi] = ((dir + 1) << 12) | P;
        }
        let mi = pmd_index(va);
        let gpmd = match read_entry(mem, (gpdpte & FRAME) + 8 * mi as u64) {
            Ok(v) => v,
            Err(e) => return Fixup::Kill(e),
        };
        if gpmd & P as u64 == 0 {
            return Fixup::NotFixed;
        }
        if pi == SWITCHER_PDPT_INDEX && mi >= SWITCHER_PMD_INDEX {
            return Fixup::Kill("attempt to access switcher pages".into());
        }
        let dir = page_of(self.slots[self.current].pdpt[pi]);
        if self.pmds[dir][mi] & P == 0 {
            if gpmd & !FRAME & !PMD_ALLOWED != 0 || !pfn_ok(mem, gpmd) {
                return Fixup::Kill("bad page middle directory entry".into());
            }
            let table = self.alloc_pte();
            self.pmds[dir][mi] = ((table + 1) << 12) | (gpmd as u32 & PMD_ALLOWED as u32);
        }
        // The guest's directory entry forbids what the shadow would forbid
        // forever: reflect (abi-core quirk Q8, as in H:570).
        if (write && gpmd & RW as u64 == 0) || (user && gpmd & US as u64 == 0) {
            return Fixup::NotFixed;
        }
        let pte_addr = (gpmd & FRAME) + 8 * pte_index(va) as u64;
        let gpte = match read_entry(mem, pte_addr) {
            Ok(v) => v,
            Err(e) => return Fixup::Kill(e),
        };
        if gpte & P as u64 == 0 {
            return Fixup::NotFixed;
        }
        if (write && gpte & RW as u64 == 0) || (user && gpte & US as u64 == 0) {
            return Fixup::NotFixed;
        }
        if gpte & PS as u64 != 0 || !pfn_ok(mem, gpte) {
            return Fixup::Kill("bad page table entry".into());
        }
        let mut new = gpte | A as u64;
        if write {
            new |= D as u64;
        }
        let table = page_of(self.pmds[dir][mi]);
        self.ptes[table][pte_index(va)] = Self::shadow_pte(new);
        if new != gpte {
            // The read succeeded, so the address fits in 32 bits.
            if let Err(e) = write_entry(mem, pte_addr as u32, new) {
                return Fixup::Kill(e);
            }
        }
        self.fills += 1;
        Fixup::Fixed
    }

    /// Whether the current shadow maps `va` present and writable.
    pub fn maps_writable(&self, va: u32) -> bool {
        self.lookup(va, true, false).is_ok()
    }

    /// NEW_PGTABLE, as H:580: the same random choice of a slot.
    pub fn switch_to(&mut self, key: u32) -> bool {
        self.switches += 1;
        if let Some(i) = self.slots.iter().position(|s| s.key == Some(key)) {
            self.current = i;
            return false;
        }
        let i = pick_slot(&mut self.rng);
        let blank = self.slots[i].key.is_none();
        self.slots[i].key = Some(key);
        if !blank {
            self.drop_user_part(i);
        }
        self.current = i;
        blank
    }

    /// H:598 The user part, PAE style.  The original dropped the top-level
    /// entries below kernel_address's top-level index, and with PAE a
    /// top-level entry covers a whole GiB: with the usual 0xC0000000 the
    /// user part is the first three PDPT entries and the kernel part the
    /// fourth.  A kernel_address that is not a multiple of 1 GiB makes the
    /// GiB it falls in count as kernel here, while SET_PTE (H:599) still
    /// compares addresses exactly; we keep that coarseness, as the original
    /// had it.
    fn drop_user_part(&mut self, slot: usize) {
        let user = pdpt_index(self.kernel_address).min(SWITCHER_PDPT_INDEX);
        for idx in 0..user {
            self.drop_pdpt_entry(slot, idx);
        }
    }

    /// FLUSH_TLB(0): the current address space's user part.
    pub fn flush_user(&mut self) {
        self.drop_user_part(self.current);
    }

    /// Every entry of every slot (keys kept), except the reserved region:
    /// the first three PDPT entries go, and the fourth one's directory is
    /// emptied below the reserved entry.
    pub fn flush_all(&mut self) {
        for s in 0..SLOTS {
            for idx in 0..SWITCHER_PDPT_INDEX {
                self.drop_pdpt_entry(s, idx);
            }
            let dir = page_of(self.slots[s].pdpt[SWITCHER_PDPT_INDEX]);
            for k in 0..SWITCHER_PMD_INDEX {
                self.drop_pmd_entry(dir, k);
            }
        }
    }

    /// H:599 SET_PTE with a 64-bit entry: the guest passes its low word in
    /// the third argument and its high word in the fourth.  Otherwise this
    /// is H:590: kernel addresses reach every slot, user addresses only the
    /// slot for `top`, and an entry already accessed is installed at once.
    pub fn set_pte(&mut self, mem: &GuestMemory, top: u32, va: u32, gpte: u64) -> Result<(), String> {
        if va >= SWITCHER_BASE {
            return Err("attempt to access switcher pages".into());
        }
        let kernel = va >= self.kernel_address;
        for s in 0..SLOTS {
            let hit = match self.slots[s].key {
                Some(k) => kernel || k == top,
                None => false,
            };
            if !hit {
                continue;
            }
            let t = self.slots[s].pdpt[pdpt_index(va)];
            if t & P == 0 {
                continue;
            }
            let spmd = self.pmds[page_of(t)][pmd_index(va)];
            if spmd & P == 0 {
                continue;
            }
            let table = page_of(spmd);
            let idx = pte_index(va);
            self.ptes[table][idx] = 0;
            if gpte & (A | D) as u64 != 0 {
                if gpte & PS as u64 != 0 || (gpte & P as u64 != 0 && !pfn_ok(mem, gpte)) {
                    return Err("bad page table entry".into());
                }
                self.ptes[table][idx] = Self::shadow_pte(gpte);
            }
        }
        Ok(())
    }

    /// SET_PGD: a PAE guest reports PDPT writes with the PDPT's address and
    /// the entry's index.  Index 3 and above is ignored, as the reserved
    /// region's directory must stay (H:595).
    pub fn set_pgd(&mut self, top: u32, idx: u32) {
        if idx as usize >= SWITCHER_PDPT_INDEX {
            return;
        }
        if let Some(s) = self.slots.iter().position(|s| s.key == Some(top)) {
            self.drop_pdpt_entry(s, idx as usize);
        }
    }
}

// M:110 Exercise: no-execute.  PAE entries have room for NX in bit 63, and
// we copy it into the shadow (`shadow_pte`) but never enforce it, because
// the CPUID we present (H:640) does not offer NX and so a Linux guest never
// sets it; lguest's guests were told the same.  Make it real: advertise NX
// in CPUID leaf 0x80000001 for PAE guests only, let `lookup` refuse an
// instruction fetch (`Access::Fetch`, which `translate` now treats as a
// read) from an NX page with error code bit 4 set, and find out what the
// guest kernel needs before it turns NX on (an EFER write it cannot make at
// ring 1).  The tests below show how to build PAE tables by hand.

#[cfg(test)]
mod tests {
    use super::*;

    /// No-execute (bit 63): copied into the shadow, never enforced.
    const NX: u64 = 1 << 63;
    const PDPT: u32 = 0x1000;
    const PMD: u32 = 0x2000;
    const PT: u32 = 0x3000;

    fn w(m: &GuestMemory, addr: u32, v: u64) {
        write_entry(m, addr, v).unwrap();
    }

    fn r(m: &GuestMemory, addr: u32) -> u64 {
        read_entry(m, addr as u64).unwrap()
    }

    /// 64 pages of memory; a PDPT at 0x1000 whose entries 0 and 3 share one
    /// directory at 0x2000, whose entry 0 points at a page table at 0x3000:
    /// VA 0x5000 and 0xC000_5000 both map frame 7 (user, writable).
    fn mem() -> GuestMemory {
        let m = GuestMemory::new(64 * 4096).unwrap();
        w(&m, PDPT, PMD as u64 | 1);
        w(&m, PDPT + 24, PMD as u64 | 1);
        w(&m, PMD, PT as u64 | 0x067);
        w(&m, PT + 5 * 8, 0x7000 | 0x007);
        m
    }

    fn kernel(s: &mut Pae) {
        s.set_kernel_address(0xC000_0000);
    }

    #[test]
    fn demand_fill_sets_accessed_then_dirty() {
        let m = mem();
        let mut s = Pae::new(PDPT);
        assert_eq!(s.lookup(0x5000, false, false), Err(0));
        assert_eq!(s.demand_page(&m, 0x5000, 0), Fixup::Fixed);
        assert_eq!(s.lookup(0x5123, false, true), Ok(0x7000));
        assert_eq!(r(&m, PT + 40) & 0x60, 0x20, "A, not D");
        // Not dirty yet, so the shadow is read-only: a write faults with P set.
        assert_eq!(s.lookup(0x5000, true, false), Err(3));
        assert_eq!(s.demand_page(&m, 0x5000, 2), Fixup::Fixed);
        assert_eq!(r(&m, PT + 40) & 0x60, 0x60, "A and D");
        assert_eq!(s.lookup(0x5000, true, true), Ok(0x7000));
        assert_eq!(s.fills, 2);
    }

    #[test]
    fn error_codes_come_from_the_shadow() {
        let m = mem();
        let mut s = Pae::new(PDPT);
        // A read-only user page: a user write is reflected with P|W|U once
        // the shadow has the entry, and not fixed by demand_page.
        w(&m, PT + 6 * 8, 0x8000 | 0x005);
        assert_eq!(s.demand_page(&m, 0x6000, 0), Fixup::Fixed);
        assert_eq!(s.lookup(0x6000, true, true), Err(7));
        assert_eq!(s.demand_page(&m, 0x6000, 6), Fixup::NotFixed);
        // A supervisor page never shadowed: user access gives 4, not 5.
        w(&m, PT + 9 * 8, 0xA000 | 0x003);
        assert_eq!(s.lookup(0x9000, false, true), Err(4));
        assert_eq!(s.demand_page(&m, 0x9000, 4), Fixup::NotFixed);
        // Not present at each level: not fixed.
        assert_eq!(s.demand_page(&m, 0x4000_0000, 0), Fixup::NotFixed);
        assert_eq!(s.demand_page(&m, 0x0020_0000, 0), Fixup::NotFixed);
        assert_eq!(s.demand_page(&m, 0x0000_8000, 0), Fixup::NotFixed);
        // A directory entry stricter than its page-table entry reflects.
        w(&m, PMD + 8, 0x4000 | 0x065);
        w(&m, 0x4000, 0xB000 | 0x067);
        assert_eq!(s.demand_page(&m, 0x0020_0000, 2), Fixup::NotFixed);
        assert_eq!(s.demand_page(&m, 0x0020_0000, 0), Fixup::Fixed);
        assert_eq!(s.lookup(0x0020_0000, true, false), Err(3));
    }

    #[test]
    fn bad_entries_kill_at_each_level() {
        let cases: [(u32, u64, &str); 6] = [
            // A PDPT entry with RW: only P is allowed there.
            (PDPT + 8, PMD as u64 | 0x003, "bad page directory entry"),
            // A PDPT entry for a frame beyond memory (and beyond 4 GiB).
            (PDPT + 8, 0x1_0000_2000 | 1, "bad page directory entry"),
            // A large page in the directory.
            (PMD + 8, 0x0040_0000 | 0x0e7, "bad page middle directory entry"),
            // NX in a directory entry is not among the allowed flags.
            (PMD + 8, NX | PT as u64 | 0x067, "bad page middle directory entry"),
            // A page-table entry whose high word puts it above 4 GiB.
            (PT + 8 * 0x10, 0x1_0000_7000 | 0x067, "bad page table entry"),
            (PT + 8 * 0x10, 0x7000 | 0x0e7, "bad page table entry"),
        ];
        for (addr, v, why) in cases {
            let m = mem();
            // Make the intermediate levels the cases skip present and sane.
            w(&m, PDPT + 8, if addr == PDPT + 8 { v } else { PMD as u64 | 1 });
            if addr != PDPT + 8 {
                w(&m, addr, v);
            }
            let va = match addr {
                a if a == PDPT + 8 => 0x4000_0000,
                a if a == PMD + 8 => 0x0020_0000,
                _ => 0x0001_0000,
            };
            let mut s = Pae::new(PDPT);
            assert_eq!(s.demand_page(&m, va, 0), Fixup::Kill(why.into()), "{addr:#x} = {v:#x}");
        }
    }

    #[test]
    fn nx_is_copied_and_the_frame_still_maps() {
        let m = mem();
        w(&m, PT + 8 * 0x11, NX | 0x7000 | 0x007);
        let mut s = Pae::new(PDPT);
        assert_eq!(s.demand_page(&m, 0x11000, 0), Fixup::Fixed);
        assert_eq!(s.lookup(0x11000, false, false), Ok(0x7000));
        assert_eq!(r(&m, PT + 8 * 0x11), NX | 0x7000 | 0x027);
    }

    #[test]
    fn the_switcher_region_kills_only_when_the_guest_maps_it() {
        let m = mem();
        let mut s = Pae::new(PDPT);
        // The guest's directory entry 511 is not present: an ordinary fault.
        assert_eq!(s.demand_page(&m, SWITCHER_BASE + 0x1000, 0), Fixup::NotFixed);
        // Present: the guest dies.
        w(&m, PMD + 8 * 511, PT as u64 | 0x067);
        assert_eq!(s.demand_page(&m, SWITCHER_BASE + 0x1000, 0), Fixup::Kill("attempt to access switcher pages".into()));
        // Just below it is fine.
        w(&m, PMD + 8 * 510, PT as u64 | 0x067);
        assert_eq!(s.demand_page(&m, SWITCHER_BASE - 0x20_0000 + 0x5000, 0), Fixup::Fixed);
        assert!(s.set_pte(&m, PDPT, SWITCHER_BASE, 0).is_err());
        assert!(s.set_pte(&m, PDPT, 0xFFFF_F000, 0).is_err());
        // SET_PGD for index 3 is ignored: the kernel part stays.
        assert_eq!(s.demand_page(&m, 0xC000_5000, 0), Fixup::Fixed);
        s.set_pgd(PDPT, 3);
        assert!(s.lookup(0xC000_5000, false, false).is_ok());
        // A full flush empties it, but keeps the directory for the region.
        s.flush_all();
        assert!(s.lookup(0xC000_5000, false, false).is_err());
        assert_eq!(s.slots[0].pdpt[3] & P, P);
    }

    #[test]
    fn the_fourth_pdpt_entry_is_never_checked() {
        // Its shadow always exists, so the guest's flags there are not
        // looked at (the original's behaviour); entries 0-2 are checked.
        let m = mem();
        w(&m, PDPT + 24, PMD as u64 | 0x007);
        let mut s = Pae::new(PDPT);
        assert_eq!(s.demand_page(&m, 0xC000_5000, 0), Fixup::Fixed);
        w(&m, PDPT, PMD as u64 | 0x007);
        assert_eq!(s.demand_page(&m, 0x5000, 0), Fixup::Kill("bad page directory entry".into()));
    }

    #[test]
    fn set_pte_takes_a_64_bit_entry() {
        let m = mem();
        let mut s = Pae::new(PDPT);
        kernel(&mut s);
        assert_eq!(s.demand_page(&m, 0xC000_5000, 0), Fixup::Fixed);
        // Accessed and dirty: installed at once, writable.
        s.set_pte(&m, PDPT, 0xC000_5000, 0x9000 | 0x067).unwrap();
        assert_eq!(s.lookup(0xC000_5000, true, false), Ok(0x9000));
        // Accessed only: installed read-only (the first write comes back).
        s.set_pte(&m, PDPT, 0xC000_5000, 0x9000 | 0x027).unwrap();
        assert_eq!(s.lookup(0xC000_5000, true, false), Err(3));
        assert_eq!(s.lookup(0xC000_5000, false, false), Ok(0x9000));
        // Neither: dropped, to be demand-faulted.
        s.set_pte(&m, PDPT, 0xC000_5000, 0x9000 | 0x007).unwrap();
        assert_eq!(s.lookup(0xC000_5000, false, false), Err(0));
        // The high word counts: frame 0x1_0000_9000 is not guest memory.
        assert_eq!(s.set_pte(&m, PDPT, 0xC000_5000, 0x1_0000_9000 | 0x067), Err("bad page table entry".into()));
        // A high word of NX alone is fine and kept.
        s.set_pte(&m, PDPT, 0xC000_5000, NX | 0x9000 | 0x067).unwrap();
        assert_eq!(s.lookup(0xC000_5000, false, false), Ok(0x9000));
    }

    #[test]
    fn set_pte_reaches_every_slot_for_kernel_addresses_only() {
        let m = mem();
        // A second address space at 0x4000 (a PDPT need not start a page:
        // 0x4020), sharing the directory.
        w(&m, 0x4020, PMD as u64 | 1);
        w(&m, 0x4020 + 24, PMD as u64 | 1);
        let mut s = Pae::new(PDPT);
        kernel(&mut s);
        for va in [0x5000, 0xC000_5000] {
            assert_eq!(s.demand_page(&m, va, 0), Fixup::Fixed);
        }
        assert!(s.switch_to(0x4020));
        for va in [0x5000, 0xC000_5000] {
            assert_eq!(s.demand_page(&m, va, 0), Fixup::Fixed);
        }
        // A user address of the first space: the second keeps its entry.
        s.set_pte(&m, PDPT, 0x5000, 0).unwrap();
        assert!(s.lookup(0x5000, false, false).is_ok());
        // A kernel address: gone everywhere.
        s.set_pte(&m, PDPT, 0xC000_5000, 0).unwrap();
        assert!(s.lookup(0xC000_5000, false, false).is_err());
        assert!(!s.switch_to(PDPT));
        assert!(s.lookup(0x5000, false, false).is_err());
        assert!(s.lookup(0xC000_5000, false, false).is_err());
    }

    #[test]
    fn reusing_a_slot_drops_only_the_user_part() {
        let m = mem();
        let mut s = Pae::new(PDPT);
        kernel(&mut s);
        // Four address spaces in the four slots, so the next switch must
        // reuse one.  (A random choice can evict one of them on the way;
        // going round until every slot is taken settles that.)
        let keys = [PDPT, 0x20000, 0x21000, 0x22000];
        for &k in &keys[1..] {
            w(&m, k, PMD as u64 | 1);
            w(&m, k + 24, PMD as u64 | 1);
        }
        let mut n = 0;
        while s.keys().iter().any(|k| k.is_none()) {
            s.switch_to(keys[n % 4]);
            n += 1;
        }
        for k in keys {
            s.switch_to(k);
            for va in [0x5000, 0xC000_5000] {
                assert_eq!(s.demand_page(&m, va, 0), Fixup::Fixed);
            }
        }
        // A fifth address space takes one of the four slots.
        w(&m, 0x30000, PMD as u64 | 1);
        w(&m, 0x30000 + 24, PMD as u64 | 1);
        assert!(!s.switch_to(0x30000), "not blank");
        assert!(s.lookup(0x5000, false, false).is_err(), "user part dropped");
        assert!(s.lookup(0xC000_5000, false, false).is_ok(), "kernel part kept");
        // FLUSH_TLB(0) does the same to the current slot.
        assert_eq!(s.demand_page(&m, 0x5000, 0), Fixup::Fixed);
        s.flush_user();
        assert!(s.lookup(0x5000, false, false).is_err());
        assert!(s.lookup(0xC000_5000, false, false).is_ok());
    }

    #[test]
    fn the_split_is_a_whole_gib() {
        // kernel_address 0xB000_0000: the third GiB counts as kernel for
        // the user flush, as in the original.
        let m = mem();
        w(&m, PDPT + 16, PMD as u64 | 1);
        let mut s = Pae::new(PDPT);
        s.set_kernel_address(0xB000_0000);
        assert_eq!(s.demand_page(&m, 0x8000_5000, 0), Fixup::Fixed);
        assert_eq!(s.demand_page(&m, 0x0000_5000, 0), Fixup::Fixed);
        s.flush_user();
        assert!(s.lookup(0x0000_5000, false, false).is_err());
        assert!(s.lookup(0x8000_5000, false, false).is_ok());
    }

    #[test]
    fn set_pgd_drops_one_gib_of_one_slot() {
        let m = mem();
        let mut s = Pae::new(PDPT);
        kernel(&mut s);
        assert_eq!(s.demand_page(&m, 0x5000, 0), Fixup::Fixed);
        s.set_pgd(0x9999_0000, 0);
        assert!(s.lookup(0x5000, false, false).is_ok(), "another key: untouched");
        s.set_pgd(PDPT, 0);
        assert!(s.lookup(0x5000, false, false).is_err());
        // The pages went back to the pools and are reused.
        let (pmds, ptes) = (s.pmds.len(), s.ptes.len());
        assert_eq!(s.demand_page(&m, 0x5000, 0), Fixup::Fixed);
        assert_eq!((s.pmds.len(), s.ptes.len()), (pmds, ptes));
    }

    #[test]
    fn initial_tables_map_ram_twice() {
        let m = GuestMemory::new(8 << 20).unwrap();
        let pdpt = setup_initial_pagetables(&m, 8 << 20, 0x2000).unwrap();
        assert_eq!(pdpt, (8 << 20) - 0x2000 - 4096);
        let ptbase = pdpt - 4 * 4096;
        let pmd = ptbase - 4096;
        assert_eq!(r(&m, pdpt), pmd as u64 | 1);
        assert_eq!(r(&m, pdpt + 8), 0);
        assert_eq!(r(&m, pdpt + 16), 0);
        assert_eq!(r(&m, pdpt + 24), pmd as u64 | 1);
        assert_eq!(r(&m, pmd + 8 * 3), (ptbase + 3 * 4096) as u64 | 7);
        assert_eq!(r(&m, pmd + 8 * 4), 0);
        for va in [0x0012_3456u32, 0xC012_3456] {
            assert_eq!(gva_to_gpa(&m, pdpt, va), Ok(0x0012_3456));
        }
        assert_eq!(gva_to_gpa(&m, pdpt, 0x4000_0000), Err("Bad address 0x40000000".into()));
        assert_eq!(gva_to_gpa(&m, pdpt, 0x0080_0000), Err("Bad address 0x800000".into()));
        let mut s = Pae::new(pdpt);
        assert_eq!(s.demand_page(&m, 0xC07F_F000, 2), Fixup::Fixed);
        assert_eq!(s.lookup(0xC07F_F000, true, true), Ok(0x7F_F000));
    }

    #[test]
    fn the_host_walk_refuses_frames_above_4_gib() {
        let m = mem();
        w(&m, PT + 8 * 0x12, 0x1_0000_7000 | 0x007);
        assert_eq!(gva_to_gpa(&m, PDPT, 0x12345), Err("Bad address 0x12345".into()));
        w(&m, PMD + 8, 0x2_0000_0000 | 0x067);
        assert_eq!(gva_to_gpa(&m, PDPT, 0x0020_0000), Err("bad read address 0x200000000 len 8".into()));
        assert_eq!(gva_to_gpa(&m, PDPT, 0x5678), Ok(0x7678));
    }
}

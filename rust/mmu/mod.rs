//! Paging for lguest guests: the shadow page tables.
//!
// H:500 The guest kernel keeps its own page tables, but it runs at ring 1 and
// could put anything in them, including the host's memory.  So lguest never
// let the processor use the guest's tables.  It kept "shadow" tables of its
// own, built lazily from the guest's: when the processor faulted on an
// address the shadow did not map yet, the host read the guest's entry,
// checked it, copied it into the shadow and let the guest retry.  The guest
// told the host about every change to its tables by hypercall, so the host
// knew exactly which shadow entries to drop.
//
// We keep the same algorithm, for the same reasons and with the same
// guest-visible behaviour: the accessed and dirty bits, the error codes of
// reflected faults, which changes are seen when.  Our "processor" is the
// interpreter's software TLB: a TLB miss consults the shadow (`translate`),
// a miss in the shadow is lguest's page fault, and `demand_page` is the
// host's fix-up.  Up to four shadow page directories are cached, one per
// recently used guest address space, like the original's.

mod pae;
mod shadow;

use std::sync::Arc;

pub use pae::Pae;
pub use shadow::{TwoLevel, SLOTS};

use crate::cpu::mem::{Access, Translation};
use crate::cpu::state::Fault;
use crate::memory::GuestMemory;

/// The reserved top of every address space (the original's Switcher).
pub const SWITCHER_BASE: u32 = 0xFFC0_0000;
/// Top-level index of the reserved region.
pub const SWITCHER_PGD_INDEX: u32 = SWITCHER_BASE >> 22;
/// What LGUEST_INIT tells a 2-level guest to keep clear at the top.
pub const RESERVE_MEM: u32 = 0x0040_0000;

pub const P: u32 = 0x001;
pub const RW: u32 = 0x002;
pub const US: u32 = 0x004;
pub const A: u32 = 0x020;
pub const D: u32 = 0x040;
pub const PS: u32 = 0x080;
pub const G: u32 = 0x100;

/// A pseudo-vector: the access could not be completed because the guest must
/// die.  The reason is left in `Paging::death`.
pub const KILL_VECTOR: u8 = 0xFF;

/// The page-table layout a guest uses, fixed at LHREQ_INITIALIZE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PagingMode {
    /// Two levels of 32-bit entries (the default, and 2.6.32's advice).
    #[default]
    TwoLevel,
    /// PAE: three levels of 64-bit entries (H:592).
    Pae,
}

impl PagingMode {
    /// Where the reserved top of every address space begins.
    pub fn switcher_base(self) -> u32 {
        match self {
            PagingMode::TwoLevel => SWITCHER_BASE,
            PagingMode::Pae => pae::SWITCHER_BASE,
        }
    }

    /// The size of that region, which LGUEST_INIT writes into lguest_data.
    pub fn reserve_mem(self) -> u32 {
        match self {
            PagingMode::TwoLevel => RESERVE_MEM,
            PagingMode::Pae => pae::RESERVE_MEM,
        }
    }
}

/// H:555 The shadow cache in one layout or the other.  The host's callers
/// (hypercalls, the stack pinning, `translate`) do not care which; each
/// method below passes the call on.  The choice costs one well-predicted
/// branch per TLB miss, and the 2-level code behind it is unchanged.
pub enum Shadows {
    TwoLevel(TwoLevel),
    Pae(Pae),
}

impl Shadows {
    /// A fresh cache whose slot 0 mirrors the top-level table at `initial`.
    pub fn new(mode: PagingMode, initial: u32) -> Self {
        match mode {
            PagingMode::TwoLevel => Shadows::TwoLevel(TwoLevel::new(initial)),
            PagingMode::Pae => Shadows::Pae(Pae::new(initial)),
        }
    }

    pub fn mode(&self) -> PagingMode {
        match self {
            Shadows::TwoLevel(_) => PagingMode::TwoLevel,
            Shadows::Pae(_) => PagingMode::Pae,
        }
    }

    #[inline]
    pub fn lookup(&self, lin: u32, write: bool, user: bool) -> Result<u32, u32> {
        match self {
            Shadows::TwoLevel(s) => s.lookup(lin, write, user),
            Shadows::Pae(s) => s.lookup(lin, write, user),
        }
    }

    pub fn demand_page(&mut self, mem: &GuestMemory, va: u32, err: u32) -> Fixup {
        match self {
            Shadows::TwoLevel(s) => s.demand_page(mem, va, err),
            Shadows::Pae(s) => s.demand_page(mem, va, err),
        }
    }

    pub fn current_key(&self) -> u32 {
        match self {
            Shadows::TwoLevel(s) => s.current_key(),
            Shadows::Pae(s) => s.current_key(),
        }
    }

    pub fn current_slot(&self) -> usize {
        match self {
            Shadows::TwoLevel(s) => s.current_slot(),
            Shadows::Pae(s) => s.current_slot(),
        }
    }

    pub fn keys(&self) -> Vec<Option<u32>> {
        match self {
            Shadows::TwoLevel(s) => s.keys(),
            Shadows::Pae(s) => s.keys(),
        }
    }

    /// Shadow fills so far (for tests and benchmarks).
    pub fn fills(&self) -> u64 {
        match self {
            Shadows::TwoLevel(s) => s.fills,
            Shadows::Pae(s) => s.fills,
        }
    }

    /// lguest_data.kernel_address, read at LGUEST_INIT: where the part of
    /// every address space that all of them share begins.
    pub fn set_kernel_address(&mut self, addr: u32) {
        match self {
            Shadows::TwoLevel(s) => s.kernel_pgd_index = addr >> 22,
            Shadows::Pae(s) => s.set_kernel_address(addr),
        }
    }

    pub fn maps_writable(&self, va: u32) -> bool {
        self.lookup(va, true, false).is_ok()
    }

    pub fn switch_to(&mut self, key: u32) -> bool {
        match self {
            Shadows::TwoLevel(s) => s.switch_to(key),
            Shadows::Pae(s) => s.switch_to(key),
        }
    }

    pub fn flush_user(&mut self) {
        match self {
            Shadows::TwoLevel(s) => s.flush_user(),
            Shadows::Pae(s) => s.flush_user(),
        }
    }

    pub fn flush_all(&mut self) {
        match self {
            Shadows::TwoLevel(s) => s.flush_all(),
            Shadows::Pae(s) => s.flush_all(),
        }
    }

    /// SET_PTE(top, va, low word, high word): a 2-level entry is the low
    /// word alone; a PAE entry is both.
    pub fn set_pte(&mut self, mem: &GuestMemory, top: u32, va: u32, lo: u32, hi: u32) -> Result<(), String> {
        match self {
            Shadows::TwoLevel(s) => s.set_pte(mem, top, va, lo),
            Shadows::Pae(s) => s.set_pte(mem, top, va, ((hi as u64) << 32) | lo as u64),
        }
    }

    pub fn set_pgd(&mut self, top: u32, idx: u32) {
        match self {
            Shadows::TwoLevel(s) => s.set_pgd(top, idx),
            Shadows::Pae(s) => s.set_pgd(top, idx),
        }
    }
}

pub struct Paging {
    pub mem: Arc<GuestMemory>,
    pub shadows: Shadows,
    /// Set when a walk found something the guest must die for.
    pub death: Option<String>,
}

/// Outcome of lguest's page-fault fix-up.
#[derive(Debug, PartialEq, Eq)]
pub enum Fixup {
    Fixed,
    NotFixed,
    Kill(String),
}

impl Paging {
    /// 2-level paging with slot 0 keyed by `cr3`.
    pub fn new(mem: Arc<GuestMemory>, cr3: u32) -> Self {
        Self::with_mode(mem, PagingMode::TwoLevel, cr3)
    }

    pub fn with_mode(mem: Arc<GuestMemory>, mode: PagingMode, cr3: u32) -> Self {
        Paging { mem, shadows: Shadows::new(mode, cr3), death: None }
    }

    /// Start over in `mode` from the top-level table at `cr3`
    /// (LHREQ_INITIALIZE).
    pub fn reset(&mut self, mode: PagingMode, cr3: u32) {
        self.shadows = Shadows::new(mode, cr3);
        self.death = None;
    }

    pub fn mode(&self) -> PagingMode {
        self.shadows.mode()
    }

    pub fn is_pae(&self) -> bool {
        self.mode() == PagingMode::Pae
    }

    /// Guest-physical address of the current guest top-level table.
    pub fn cr3(&self) -> u32 {
        self.shadows.current_key()
    }

    fn kill(&mut self, why: String) -> Fault {
        if self.death.is_none() {
            self.death = Some(why);
        }
        Fault::new(KILL_VECTOR)
    }

    /// H:510 A TLB miss: look in the shadow (H:560); if it does not allow
    /// the access, that is a page fault, which lguest first tries to fix by
    /// filling the shadow from the guest's tables (H:570).  Only if that
    /// fails does the guest see the fault, with the error code the shadow
    /// produced.
    pub fn translate(&mut self, lin: u32, access: Access, user: bool) -> Result<Translation, Fault> {
        let write = access == Access::Write;
        for attempt in 0..2 {
            match self.shadows.lookup(lin, write, user) {
                Ok(frame) => {
                    return match self.mem.page_ptr(frame) {
                        Some(host) => Ok(Translation { phys: frame, host }),
                        None => Err(self.kill(format!("failed to get page {}", frame >> 12))),
                    };
                }
                Err(err) if attempt == 0 => match self.shadows.demand_page(&self.mem, lin, err) {
                    Fixup::Fixed => continue,
                    Fixup::NotFixed => return Err(Fault::page(lin, err)),
                    Fixup::Kill(why) => return Err(self.kill(why)),
                },
                Err(err) => return Err(Fault::page(lin, err)),
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    /// H:520 The host's own walks (trap frames, instruction bytes): through
    /// the guest's tables, no permission checks and no accessed/dirty
    /// updates; an unmapped address kills the guest.
    pub fn gva_to_gpa(&mut self, gva: u32) -> Result<u32, String> {
        let top = self.cr3();
        if self.is_pae() {
            return pae::gva_to_gpa(&self.mem, top, gva);
        }
        let pde = self.mem.read_u32((top & !0xfff) + (gva >> 22) * 4).map_err(|e| e.to_string())?;
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

/// H:530 The page tables the 2.6.32 host built for a guest before its first
/// instruction, just below the initrd: every page of RAM mapped twice, at its
/// own address and at 0xC0000000 above it, present, writable and
/// user-accessible.  Returns the top-level table's guest-physical address.
/// This is the 2-level format; a PAE guest gets H:594's.
pub fn setup_initial_pagetables(mem: &GuestMemory, mode: PagingMode) -> Result<u32, String> {
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
    if mode == PagingMode::Pae {
        return pae::setup_initial_pagetables(mem, mem_size, ramdisk);
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
    // The 0xC0000000 window wins where the two overlap: the kernel is linked
    // there, and with more than 3 GiB of RAM the identity half would
    // otherwise remap it onto high RAM.  So the identity half stops at
    // 0xC0000000, and the window stops below the reserved top 4 MiB
    // (directory entry 1023), about 1 GiB in, as the kernel's own direct
    // mapping would.
    const KERNEL_PGD: u32 = 0xC000_0000 >> 22;
    for j in 0..pt_pages {
        let pde = (ptbase + j * 4096) | 0x007;
        if j < KERNEL_PGD {
            mem.write_u32(pgdir + 4 * j, pde).map_err(|e| e.to_string())?;
        }
        if KERNEL_PGD + j < SWITCHER_PGD_INDEX {
            mem.write_u32(pgdir + 4 * (KERNEL_PGD + j), pde).map_err(|e| e.to_string())?;
        }
    }
    Ok(pgdir)
}

/// H:540 Forget every shadow entry of every cached address space (lguest's
/// "flush everything"): after the host wrote into guest memory behind the
/// processor's back, or when the guest asks.  The kernel stack must stay
/// mapped, so it is faulted back in at once.
pub fn full_flush(g: &mut crate::lguest::Guest) {
    g.paging().shadows.flush_all();
    g.cpu.tlb.flush();
    crate::hypercalls::pin_stack_pages(g);
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
    fn demand_fill_sets_accessed_then_dirty() {
        let mut p = setup();
        let t = p.translate(0x5123, Access::Read, false).unwrap();
        assert_eq!(t.phys, 0x7000);
        assert_eq!(p.mem.read_u32(0x2014).unwrap() & (A | D), A);
        // A write to a read-only page is reflected with P|W (|U for user).
        let f = p.translate(0x5000, Access::Write, true).unwrap_err();
        assert_eq!((f.vector, f.error, f.addr), (14, Some(7), 0x5000));
        // Not present: P clear.
        let f = p.translate(0x6000, Access::Read, false).unwrap_err();
        assert_eq!(f.error, Some(0));
        // A writable page becomes dirty on the first write only.
        p.mem.write_u32(0x2000 + 8 * 4, 0x9000 | P | RW).unwrap();
        p.translate(0x8000, Access::Read, false).unwrap();
        assert_eq!(p.mem.read_u32(0x2020).unwrap() & (A | D), A);
        p.translate(0x8000, Access::Write, false).unwrap();
        assert_eq!(p.mem.read_u32(0x2020).unwrap() & (A | D), A | D);
    }

    #[test]
    fn supervisor_page_never_shadowed_gives_error_code_4() {
        // abi-core 7.5: no shadow entry existed, so P is clear even though the
        // guest's PTE is present.
        let mut p = setup();
        p.mem.write_u32(0x2000 + 9 * 4, 0xA000 | P | RW).unwrap();
        let f = p.translate(0x9000, Access::Read, true).unwrap_err();
        assert_eq!(f.error, Some(4));
    }

    #[test]
    fn frames_beyond_memory_kill() {
        let mut p = setup();
        p.mem.write_u32(0x2000 + 6 * 4, 0x0100_0000 | P | RW).unwrap();
        let f = p.translate(0x6000, Access::Read, false).unwrap_err();
        assert_eq!(f.vector, KILL_VECTOR);
        assert_eq!(p.death.as_deref(), Some("bad page table entry"));
    }

    #[test]
    fn large_pages_are_refused() {
        let mut p = setup();
        p.mem.write_u32(0x1000 + 4, 0x0040_0000 | P | RW | PS).unwrap();
        let f = p.translate(0x0040_1000, Access::Read, false).unwrap_err();
        assert_eq!(f.vector, KILL_VECTOR);
        assert_eq!(p.death.as_deref(), Some("bad page directory entry"));
    }
}

#[cfg(test)]
mod properties {
    //! H:545 The promise that matters most: whatever the guest puts in its
    //! page tables and whatever page-table hypercalls it makes, no
    //! translation ever leads outside the guest's memory, and nothing panics.
    //! Both layouts must keep it.
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Poke(u32, u32),
        SetPte(u32, u32, u32, u32),
        SetPgd(u32, u32),
        Switch(u32),
        FlushUser,
        FlushAll,
        Access(u32, bool, bool),
    }

    const PAGES: u32 = 32;

    fn op() -> impl Strategy<Value = Op> {
        // Addresses are drawn so that many land on real tables; values are
        // arbitrary 32-bit words, including frames far beyond memory, or
        // entries that name a real frame with arbitrary flags.  A PAE
        // entry's high word is mostly zero, sometimes anything.
        let addr = prop_oneof![0u32..PAGES * 4096, any::<u32>()];
        let value = prop_oneof![any::<u32>(), (0u32..PAGES, 0u32..0x1000).prop_map(|(f, fl)| (f << 12) | fl)];
        let high = prop_oneof![3 => Just(0u32), 1 => any::<u32>()];
        prop_oneof![
            (0u32..PAGES * 1024, value.clone()).prop_map(|(w, v)| Op::Poke(w * 4, v)),
            (addr.clone(), any::<u32>(), value, high).prop_map(|(t, va, v, h)| Op::SetPte(t, va, v, h)),
            (addr.clone(), 0u32..1100).prop_map(|(t, i)| Op::SetPgd(t, i)),
            addr.clone().prop_map(Op::Switch),
            Just(Op::FlushUser),
            Just(Op::FlushAll),
            (any::<u32>(), any::<bool>(), any::<bool>()).prop_map(|(a, w, u)| Op::Access(a, w, u)),
        ]
    }

    fn check(mode: PagingMode, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mem = Arc::new(GuestMemory::new((PAGES * 4096) as usize).unwrap());
        let mut p = Paging::with_mode(mem.clone(), mode, 0);
        p.shadows.set_kernel_address(0xC000_0000);
        // Top-level tables are page aligned in 2-level mode and 32-byte
        // aligned with PAE.
        let align = if mode == PagingMode::Pae { !0x1f } else { !0xfff };
        for op in ops {
            match op {
                Op::Poke(a, v) => mem.write_u32(a, v).unwrap(),
                Op::SetPte(t, va, lo, hi) => {
                    let _ = p.shadows.set_pte(&mem, t & align, va, lo, hi);
                }
                Op::SetPgd(t, i) => p.shadows.set_pgd(t & align, i),
                Op::Switch(t) => {
                    p.shadows.switch_to(t & align);
                }
                Op::FlushUser => p.shadows.flush_user(),
                // FLUSH_TLB(1), and in PAE mode also SET_PMD.
                Op::FlushAll => p.shadows.flush_all(),
                Op::Access(a, w, u) => {
                    let acc = if w { Access::Write } else { Access::Read };
                    p.death = None;
                    if let Ok(t) = p.translate(a, acc, u) {
                        prop_assert!(mem.check(t.phys, 4096), "frame {:#x} outside memory", t.phys);
                        let base = mem.as_ptr() as usize;
                        let host = t.host as usize;
                        prop_assert!(host >= base && host + 4096 <= base + mem.len());
                    }
                    // The host's own walk never panics either.
                    let _ = p.gva_to_gpa(a);
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
        #[test]
        fn translations_stay_inside_guest_memory(ops in proptest::collection::vec(op(), 1..200)) {
            check(PagingMode::TwoLevel, ops)?;
        }

        #[test]
        fn translations_stay_inside_guest_memory_pae(ops in proptest::collection::vec(op(), 1..200)) {
            check(PagingMode::Pae, ops)?;
        }
    }
}

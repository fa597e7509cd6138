//! Guest memory accesses and the software TLB.
//!
// H:400 Every load and store the guest makes goes through here, so this is
// the other half of the interpreter's speed (decoding being the first).  A
// real processor caches translations in its TLB; we keep a software TLB of
// 1024 direct-mapped entries per kind of access.  An entry maps a linear
// page to the host address of the guest-physical page behind it, so a hit
// costs one compare and one add and then a plain host load or store.
//
// There are four sets: read and write, each for supervisor (ring 0-2) and
// user (ring 3) accesses, because the same page can be readable by the kernel
// and not by user space.  A page is entered into a write set only after a
// write was allowed (and its dirty bit set), and never while it holds
// decoded code: a guest store to such a page must take the slow path so the
// decoded blocks can be thrown away (self-modifying code).
//
// A miss asks the `Mmu` for a translation.  The bare CPU maps linear to
// physical one to one; the lguest guest walks page tables (see `crate::mmu`).

use std::sync::Arc;

use memmap2::MmapMut;

use super::state::{Cpu, Fault, SegReg};
use crate::memory::GuestMemory;
use crate::mmu::Paging;

pub const TLB_SIZE: usize = 1024;
const TLB_MASK: u32 = TLB_SIZE as u32 - 1;
/// A tag no lookup can match: its epoch (the low 12 bits) is 0, and the
/// current epoch never is.
const INVALID: u32 = 0;
const EPOCH_MASK: u32 = 0xfff;

#[derive(Clone, Copy)]
pub struct TlbEntry {
    /// Linear page address ORed with the epoch it was made in, or INVALID.
    pub tag: u32,
    /// Guest-physical page address, for invalidation by physical page.
    pub phys: u32,
    /// Host address minus linear page address: host = addend + linear.
    pub addend: usize,
}

const EMPTY: TlbEntry = TlbEntry { tag: INVALID, phys: 0, addend: 0 };

/// H:405 Flushing the whole TLB happens on every address-space switch, so
/// it must be cheap: each entry's tag carries the "epoch" it was made in (in
/// the low 12 bits, which a page address leaves free), and a flush just
/// starts a new epoch.  Only every 4095th flush has to clear the arrays.
pub struct Tlb {
    /// [user][index]
    pub read: Box<[[TlbEntry; TLB_SIZE]; 2]>,
    pub write: Box<[[TlbEntry; TLB_SIZE]; 2]>,
    /// Current epoch, 1..=0xfff.
    pub epoch: u32,
}

impl Default for Tlb {
    fn default() -> Self {
        Self::new()
    }
}

impl Tlb {
    pub fn new() -> Self {
        Tlb { read: Box::new([[EMPTY; TLB_SIZE]; 2]), write: Box::new([[EMPTY; TLB_SIZE]; 2]), epoch: 1 }
    }

    /// The tag a valid entry for linear address `lin` has now.
    #[inline(always)]
    pub fn tag(&self, lin: u32) -> u32 {
        (lin & !0xfff) | self.epoch
    }

    // M:100 Exercise: switching address spaces flushes the whole TLB, so a
    // guest that bounces between two processes refills it every time, even
    // though the shadow keeps both page tables (four slots, H:580).  Give
    // each TLB entry the number of the shadow slot it was made from, as
    // processors do with address-space identifiers, and flush only on
    // changes that really invalidate translations (SET_PTE, SET_PGD,
    // FLUSH_TLB).  Careful with the kernel half, which SET_PTE changes in
    // every slot at once.  `benches/` has workloads to prove it helped.
    pub fn flush(&mut self) {
        self.epoch += 1;
        if self.epoch > EPOCH_MASK {
            for set in self.read.iter_mut().chain(self.write.iter_mut()) {
                set.fill(EMPTY);
            }
            self.epoch = 1;
        }
    }

    pub fn flush_page(&mut self, lin: u32) {
        let i = ((lin >> 12) & TLB_MASK) as usize;
        let tag = self.tag(lin);
        for set in self.read.iter_mut().chain(self.write.iter_mut()) {
            if set[i].tag == tag {
                set[i] = EMPTY;
            }
        }
    }

    /// Drop every write entry that points at guest-physical page `phys`.
    pub fn drop_writes_to(&mut self, phys: u32) {
        let epoch = self.epoch;
        for set in self.write.iter_mut() {
            for e in set.iter_mut() {
                if e.tag & EPOCH_MASK == epoch && e.phys == phys {
                    *e = EMPTY;
                }
            }
        }
    }
}

/// The kind of access, for permission checks and page-fault error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Fetch,
}

/// A successful translation: the guest-physical page and its host address.
#[derive(Clone, Copy, Debug)]
pub struct Translation {
    pub phys: u32,
    pub host: *mut u8,
}

/// Memory for the bare CPU: regions mapped anywhere in the 4 GiB space,
/// linear address = physical address, everything readable and writable.
#[derive(Default)]
pub struct BareMemory {
    pub regions: Vec<(u32, u32, MmapMut)>,
}

impl BareMemory {
    pub fn find(&self, addr: u32) -> Option<*mut u8> {
        for (start, len, map) in &self.regions {
            if addr >= *start && addr - start < *len {
                // SAFETY: addr - start < len, so the pointer stays inside the
                // region's mapping, which lives as long as `self`.
                return Some(unsafe { map.as_ptr().add((addr - start) as usize) as *mut u8 });
            }
        }
        None
    }
}

/// How linear addresses become guest-physical ones.
pub enum Mmu {
    Bare(BareMemory),
    /// A guest with paging, backed by one `GuestMemory`.
    Paged(Paging),
}

impl Mmu {
    pub fn guest_memory(&self) -> Option<&Arc<GuestMemory>> {
        match self {
            Mmu::Bare(_) => None,
            Mmu::Paged(p) => Some(&p.mem),
        }
    }
}

// H:407 The fast path, which every handler's load and store goes through
// (`Cpu::read_u32` and friends are generated here).  One array index, one
// compare of the tag (which also checks the epoch, H:405); then a plain host
// load.  The entry is chosen by the access's first byte and its tag compared
// with the page of its last byte: an entry only ever holds the tag of a page
// with its own index, so the compare fails for an access that runs into the
// next page, and the same compare checks both things.
// Anything else, a miss, a page-crossing access, a write to a page that is
// not in a write set, goes to the cold slow path, which translates (H:410)
// and may raise a page fault: that is the first step of a guest page fault.
macro_rules! fast_read {
    ($name:ident, $ty:ty, $n:expr) => {
        #[inline(always)]
        pub fn $name(&mut self, lin: u32) -> Result<$ty, Fault> {
            if let Some(p) = self.tlb_read_hit(lin, $n) {
                // SAFETY: the TLB entry was made from a page that passed the
                // memory bounds check, and the access stays inside that page.
                return Ok(unsafe { std::ptr::read_unaligned(p as *const $ty) });
            }
            let mut b = [0u8; $n];
            self.read_slow(lin, &mut b)?;
            Ok(<$ty>::from_le_bytes(b))
        }
    };
}

macro_rules! fast_write {
    ($name:ident, $ty:ty, $n:expr) => {
        #[inline(always)]
        pub fn $name(&mut self, lin: u32, v: $ty) -> Result<(), Fault> {
            if let Some(p) = self.tlb_write_hit(lin, $n) {
                // SAFETY: as for reads; write entries exist only for pages the
                // guest may write that hold no decoded code.
                unsafe { std::ptr::write_unaligned(p as *mut $ty, v) };
                return Ok(());
            }
            self.write_slow(lin, &v.to_le_bytes())
        }
    };
}

impl Cpu {
    /// Linear address of `seg:off`.  Segment limits are not checked: every
    /// segment an lguest guest uses for data is flat or expand-up with a 4 GiB
    /// limit (see docs/interpreter.md).
    #[inline(always)]
    pub fn lin(&self, seg: SegReg, off: u32) -> u32 {
        self.segs[seg as usize].base.wrapping_add(off)
    }

    fast_read!(read_u8, u8, 1);
    fast_read!(read_u16, u16, 2);
    fast_read!(read_u32, u32, 4);
    fast_read!(read_u64, u64, 8);
    fast_write!(write_u8, u8, 1);
    fast_write!(write_u16, u16, 2);
    fast_write!(write_u32, u32, 4);
    fast_write!(write_u64, u64, 8);

    /// Host address of an `n`-byte read at `lin` if the read TLB has it
    /// now, inside one page (H:407); no miss handling.
    #[inline(always)]
    pub fn tlb_read_hit(&self, lin: u32, n: u32) -> Option<*const u8> {
        let e = &self.tlb.read[self.user_index()][((lin >> 12) & TLB_MASK) as usize];
        (e.tag == self.tlb.tag(lin.wrapping_add(n - 1))).then_some(e.addend.wrapping_add(lin as usize) as *const u8)
    }

    /// Host address of an `n`-byte write at `lin` if the write TLB has it
    /// now, inside one page.  Write entries also allow reads.  Pages with
    /// decoded code never have write entries, so no write through this
    /// pointer (a bulk string store included) can miss self-modifying code.
    #[inline(always)]
    pub fn tlb_write_hit(&self, lin: u32, n: u32) -> Option<*mut u8> {
        let e = &self.tlb.write[self.user_index()][((lin >> 12) & TLB_MASK) as usize];
        (e.tag == self.tlb.tag(lin.wrapping_add(n - 1))).then_some(e.addend.wrapping_add(lin as usize) as *mut u8)
    }

    /// Read 1, 2 or 4 bytes, zero-extended.
    #[inline(always)]
    pub fn read_sized(&mut self, lin: u32, size: u8) -> Result<u32, Fault> {
        match size {
            1 => self.read_u8(lin).map(|v| v as u32),
            2 => self.read_u16(lin).map(|v| v as u32),
            _ => self.read_u32(lin),
        }
    }

    #[inline(always)]
    pub fn write_sized(&mut self, lin: u32, size: u8, v: u32) -> Result<(), Fault> {
        match size {
            1 => self.write_u8(lin, v as u8),
            2 => self.write_u16(lin, v as u16),
            _ => self.write_u32(lin, v),
        }
    }

    pub fn read_bytes(&mut self, lin: u32, out: &mut [u8]) -> Result<(), Fault> {
        self.read_slow(lin, out)
    }

    pub fn write_bytes(&mut self, lin: u32, data: &[u8]) -> Result<(), Fault> {
        self.write_slow(lin, data)
    }

    /// Check that a write of `len` bytes at `lin` would succeed, without
    /// writing.  Instructions that write several places (push of a frame,
    /// string moves) use it to fault before changing anything.
    pub fn probe_write(&mut self, lin: u32, len: u32) -> Result<(), Fault> {
        let user = self.user();
        self.translate(lin, Access::Write, user)?;
        let last = lin.wrapping_add(len.saturating_sub(1));
        if last & !0xfff != lin & !0xfff {
            self.translate(last, Access::Write, user)?;
        }
        Ok(())
    }

    #[cold]
    fn read_slow(&mut self, lin: u32, out: &mut [u8]) -> Result<(), Fault> {
        let user = self.user();
        let first = self.translate(lin, Access::Read, user)?;
        let n = out.len() as u32;
        let in_first = (0x1000 - (lin & 0xfff)).min(n);
        // SAFETY: `first.host` is the host address of a whole guest page that
        // passed the bounds check; we read at most to its end.
        unsafe {
            std::ptr::copy_nonoverlapping(first.host.add((lin & 0xfff) as usize), out.as_mut_ptr(), in_first as usize)
        };
        if in_first < n {
            let next = lin.wrapping_add(in_first);
            let second = self.translate(next, Access::Read, user)?;
            // SAFETY: as above, for the following page, from its start.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    second.host,
                    out.as_mut_ptr().add(in_first as usize),
                    (n - in_first) as usize,
                )
            };
        }
        Ok(())
    }

    #[cold]
    fn write_slow(&mut self, lin: u32, data: &[u8]) -> Result<(), Fault> {
        let user = self.user();
        let n = data.len() as u32;
        let in_first = (0x1000 - (lin & 0xfff)).min(n);
        // Translate both pages before writing anything, so a fault on the
        // second page leaves memory untouched (instructions restart cleanly).
        let first = self.translate(lin, Access::Write, user)?;
        let second = if in_first < n { Some(self.translate(lin.wrapping_add(in_first), Access::Write, user)?) } else { None };
        self.note_code_write(first.phys);
        // SAFETY: `first.host` is a whole checked guest page; we stay inside it.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), first.host.add((lin & 0xfff) as usize), in_first as usize) };
        if let Some(s) = second {
            self.note_code_write(s.phys);
            // SAFETY: as above for the second page.
            unsafe {
                std::ptr::copy_nonoverlapping(data.as_ptr().add(in_first as usize), s.host, (n - in_first) as usize)
            };
        }
        Ok(())
    }

    /// H:415 A store reached a physical page: if decoded code lives there,
    /// throw it away and end the current block so nothing stale runs.  This
    /// is how the decode cache (H:210) stays right when the guest writes its
    /// own code: pages with decoded blocks never get a write entry in the
    /// TLB, so such stores always come through the slow path and here.
    /// Writes the guest cannot see coming, from device threads, take a
    /// different road to the same end (H:915).
    #[inline]
    fn note_code_write(&mut self, phys: u32) {
        if self.cache.is_code_page(phys) {
            self.cache.invalidate_page(phys);
            self.end_block();
        }
    }

    /// H:410 The TLB miss path: ask the MMU, then remember the answer.  For
    /// an lguest guest the MMU is the shadow page tables (H:510).  If it
    /// says no, the fault travels back out of the instruction's handler,
    /// which has changed nothing yet (H:230), and out of the run loop as an
    /// `Exit::Fault` (H:255) for the host to deal with (H:965).
    pub fn translate(&mut self, lin: u32, access: Access, user: bool) -> Result<Translation, Fault> {
        let t = match &mut self.mmu {
            Mmu::Bare(b) => {
                let page = lin & !0xfff;
                match b.find(page) {
                    Some(host) => Translation { phys: page, host },
                    None => {
                        let mut err = if access == Access::Write { 2 } else { 0 };
                        if user {
                            err |= 4;
                        }
                        return Err(Fault::page(lin, err));
                    }
                }
            }
            Mmu::Paged(p) => p.translate(lin, access, user)?,
        };
        let idx = ((lin >> 12) & TLB_MASK) as usize;
        let entry = TlbEntry { tag: self.tlb.tag(lin), phys: t.phys, addend: (t.host as usize).wrapping_sub((lin & !0xfff) as usize) };
        match access {
            Access::Read | Access::Fetch => self.tlb.read[user as usize][idx] = entry,
            Access::Write => {
                // A write permission implies read permission too.
                self.tlb.read[user as usize][idx] = entry;
                if !self.cache.is_code_page(t.phys) {
                    self.tlb.write[user as usize][idx] = entry;
                }
            }
        }
        Ok(t)
    }

    /// Push and pop on the current stack (32-bit stack segment assumed: an
    /// lguest guest never runs on a 16-bit stack).
    #[inline(always)]
    pub fn push32(&mut self, v: u32) -> Result<(), Fault> {
        let sp = self.regs[super::state::ESP].wrapping_sub(4);
        let lin = self.lin(SegReg::Ss, sp);
        self.write_u32(lin, v)?;
        self.regs[super::state::ESP] = sp;
        Ok(())
    }

    #[inline(always)]
    pub fn push16(&mut self, v: u16) -> Result<(), Fault> {
        let sp = self.regs[super::state::ESP].wrapping_sub(2);
        let lin = self.lin(SegReg::Ss, sp);
        self.write_u16(lin, v)?;
        self.regs[super::state::ESP] = sp;
        Ok(())
    }

    #[inline(always)]
    pub fn pop32(&mut self) -> Result<u32, Fault> {
        let sp = self.regs[super::state::ESP];
        let lin = self.lin(SegReg::Ss, sp);
        let v = self.read_u32(lin)?;
        self.regs[super::state::ESP] = sp.wrapping_add(4);
        Ok(v)
    }

    #[inline(always)]
    pub fn pop16(&mut self) -> Result<u16, Fault> {
        let sp = self.regs[super::state::ESP];
        let lin = self.lin(SegReg::Ss, sp);
        let v = self.read_u16(lin)?;
        self.regs[super::state::ESP] = sp.wrapping_add(2);
        Ok(v)
    }

    /// Read the value `n` slots (of `size` bytes) above the stack pointer
    /// without popping, so multi-pop instructions can fault before changing state.
    pub fn peek_stack(&mut self, offset: u32, size: u8) -> Result<u32, Fault> {
        let lin = self.lin(SegReg::Ss, self.regs[super::state::ESP].wrapping_add(offset));
        self.read_sized(lin, size)
    }
}

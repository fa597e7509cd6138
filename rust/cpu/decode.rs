//! The decoded-block cache.
//!
// H:210 Decoding x86 is the expensive part of interpreting it: prefixes,
// ModRM, SIB, displacements and immediates take longer to pick apart than
// most instructions take to execute.  So we decode each stretch of code once
// into a `Block`: a straight run of instructions that ends at the first
// control transfer, at the end of the page, or after `MAX_BLOCK`
// instructions.  Each decoded instruction carries a pointer to the function
// that executes it, chosen once at decode time.
//
// Blocks are found by the guest-physical address of their first instruction,
// not the virtual one, because the same code is often mapped twice (Linux
// runs briefly at both its physical and its 0xC0000000 address).  For the
// same reason a decoded instruction never stores an absolute branch target:
// it stores the displacement from the next instruction.
//
// A block belongs to one physical page.  The cache remembers which pages hold
// code; a store to such a page (seen by the TLB slow path, which never caches
// write access to code pages) throws away every block of that page.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction};

use super::exec;
use super::state::{Cpu, Stop};

/// Longest block, in instructions.  Events are only checked between blocks,
/// so this also bounds how long an interrupt can wait.
pub const MAX_BLOCK: usize = 64;
/// Most direct jumps or calls a block follows to their target (H:226).
const MAX_FOLLOW: usize = 4;
const FAST_SIZE: usize = 1 << 14;

/// A handler for the instruction-exact loop: one instruction, its outcome.
pub type Handler = fn(&mut Cpu, &DInsn) -> Result<(), Stop>;

/// A handler for the fast loop (H:252): it says where to go next.
pub type FastHandler = fn(&mut Cpu, &DInsn) -> Next;

/// H:252 What a fast-loop handler returns, in one register: the address of
/// the entry to run next, or a `Stop` (whose top bit is set, which no host
/// address has).  Most handlers return the entry after their own; a branch
/// whose target is in the same block returns that entry; anything that
/// leaves the block returns `Next::LEAVE` with `next_eip` pointing where to
/// go.  So the loop does no bookkeeping of its own at all: it calls, tests
/// one sign bit and calls again.  The block's end needs no test either:
/// every fast array ends in a sentinel entry (`leave_block`) whose handler
/// leaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub struct Next(pub u64);

impl Next {
    /// Leave the block; the instruction completed and `next_eip` is set.
    pub const LEAVE: Next = Next(Stop::TAKEN.bits());

    /// Go on with the entry after `d` in its block.
    #[inline(always)]
    pub fn after(d: &DInsn) -> Next {
        Next((d as *const DInsn).wrapping_add(1) as u64)
    }

    /// Go on after a fused pair: past the entry of its branch.
    #[inline(always)]
    pub fn after_pair(d: &DInsn) -> Next {
        Next((d as *const DInsn).wrapping_add(2) as u64)
    }

    #[inline(always)]
    pub fn stop(s: Stop) -> Next {
        Next(s.bits())
    }
}

/// Both handlers of an instruction: `one` for the exact loop, `fast` for
/// the fast loop (`one` wrapped by `exec::control!` or `exec::regs!`, or
/// a memory handler's `Fast` form, H:266).
#[derive(Clone, Copy)]
pub struct Pair {
    pub one: Handler,
    pub fast: FastHandler,
    /// A predicated twin of `fast`, for a register-only instruction a
    /// branch may skip (H:287).
    pub pred: Option<FastHandler>,
}

/// The count correction of a branch that leaves its block (H:259): added to
/// the running count it exceeds any limit the fast loop is given
/// (`state::HORIZON`).
pub const LEAVE_DELTA: i32 = i32::MAX;

/// "No register" in a pre-decoded operand.
pub const NO_REG: u8 = 0xff;

/// A memory operand with 32-bit addressing, resolved at decode time.
///
/// An absent base or index register is register 0 with a mask of zero, so
/// that working out the address takes no branch: every form is
/// `disp + (base & base_mask) + ((index & index_mask) << shift)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemOp {
    pub disp: u32,
    pub base_mask: u32,
    pub index_mask: u32,
    /// Register numbers, always below 8.
    pub base: u8,
    pub index: u8,
    pub shift: u8,
    /// Segment register number (`SegReg as u8`), always below 6.
    pub seg: u8,
}

impl MemOp {
    /// The offset within the segment.
    #[inline(always)]
    pub fn offset(&self, regs: &[u32; 8]) -> u32 {
        let b = regs[self.base as usize & 7] & self.base_mask;
        let x = (regs[self.index as usize & 7] & self.index_mask) << self.shift;
        self.disp.wrapping_add(b).wrapping_add(x)
    }
}

/// One decoded instruction.
///
/// Laid out by hand, two cache lines exactly: the first holds everything
/// the fast loop's handlers read (so a specialised handler touches one
/// line), the second what only the generic handlers, the exact loop and
/// the way out of a block need.  A Linux boot decodes tens of thousands of
/// these, and every byte more per entry showed in its time.
#[derive(Clone)]
#[repr(C, align(64))]
pub struct DInsn {
    // The first line.
    /// The handler the fast loop calls: for a fused pair, both instructions.
    pub h: FastHandler,
    /// For a conditional branch whose target is an entry of this block
    /// (H:254): where that entry is, in bytes from this one.
    pub toff: i32,
    /// With `toff`: what to add to `Cpu::run_count` on the way there (the
    /// entry's `cum` minus the instructions before the target), or
    /// `LEAVE_DELTA` if there is no target in the block.
    pub tdelta: i32,
    /// The predicated twin of `h` (made by `exec::regs!`), for an
    /// instruction that works on registers alone, so that a branch may skip
    /// it without branching (H:287).
    pub hp: Option<FastHandler>,
    pub m: MemOp,
    /// The immediate operand, sign-extended and masked to the operand size.
    pub imm: u32,
    /// For relative branches, and for a fused pair's branch: target minus
    /// the address after the branch.
    pub rel: u32,
    /// Where this instruction ends, as an offset from the start of its block
    /// (blocks never leave their page, so this fits; negative after a jump
    /// backwards, H:226).  A fused pair's end is its branch's.
    pub end: i16,
    /// Instructions from the start of the block through this entry (a
    /// fused pair counts two).
    pub cum: u16,
    /// Register numbers (x86 encoding) of operands 0 and 1, if registers.
    pub r0: u8,
    pub r1: u8,
    /// Instructions `h` executes: 1, or 2 for a fused compare-and-branch
    /// (the branch then follows as its own entry, which the fast loop skips).
    pub count: u8,
    /// Length in bytes.
    pub len: u8,
    /// Operand size in bytes (1, 2 or 4) of the main operand.
    pub size: u8,
    /// The block's last instruction (its sentinel follows), which a control
    /// handler leaves the block from directly.
    pub last: bool,
    /// True if memory operands use 16-bit addressing (0x67 prefix).
    pub addr16: bool,
    /// What kind of flag-setter this is, for fusion with a following jcc
    /// (0: not fusable); see `exec::fuse`.
    pub fuse: u8,
    /// For a predicated instruction (H:287): the index in `Cpu::regs` of
    /// the register it writes (`run::dest_index`).
    pub rd: u8,
    // The second line.
    /// The handler for this instruction alone (instruction-exact runs).
    pub h1: Handler,
    /// H:229 Where the block went the last time it was left from this
    /// instruction, so that the next block can be found without the jump
    /// cache and its TLB check; see `Cpu::run_fast`.
    pub chain: std::cell::Cell<Chain>,
    pub i: Instruction,
}

const _: () = assert!(std::mem::size_of::<DInsn>() == 128);

pub struct Block {
    pub phys: u32,
    /// H:228 One entry per instruction, for both loops, and a sentinel
    /// entry at the end (H:252).  The instruction-exact loop calls each
    /// entry's `h1`; the fast loop calls `h`, which says where to go next:
    /// usually the next entry, an address it computes from its own without
    /// loading anything.  (With a step read from the entry itself, the
    /// address of the next instruction waited for a load from the current
    /// one, a chain the processor could not run ahead of.)  A fused pair's
    /// `h` does both instructions and goes on two entries later, past the
    /// branch's own entry.  One array rather than one per loop halves the
    /// memory decoded code takes, which a Linux boot notices.
    pub fast: Vec<DInsn>,
    /// Whether the block may be left for a chained successor at all: its
    /// last instruction is not a far transfer, a mode change or an exit.
    pub chainable: bool,
}

/// One remembered successor: valid while the target is on the same page
/// (at offset `off`) and no block has been thrown away since (`gen`).
#[derive(Clone, Copy)]
pub struct Chain {
    pub off: u32,
    pub gen: u32,
    pub block: *const Block,
}

// SAFETY: the pointer refers to a block owned by the same BlockCache, which
// moves between threads as a whole (the vCPU is run by one thread at a time).
unsafe impl Send for Chain {}

pub const NO_CHAIN: Chain = Chain { off: u32::MAX, gen: 0, block: std::ptr::null() };

impl Block {
    pub fn new(phys: u32, insns: Vec<DInsn>) -> Block {
        let chainable = insns.last().is_some_and(|d| near_exit(&d.i));
        let mut fast = insns;
        fast.reserve_exact(1);
        // Where each instruction starts, before a fused pair's end moves.
        let starts: Vec<i32> = fast.iter().map(|d| d.end as i32 - d.len as i32).collect();
        for k in 0..fast.len() {
            // Instructions through this entry, counting a fused pair's
            // branch; a fused pair ends where its branch (the next entry)
            // ends.
            fast[k].cum = (k + fast[k].count as usize) as u16;
            if fast[k].count == 2 {
                if let Some(branch_end) = fast.get(k + 1).map(|b| b.end) {
                    fast[k].end = branch_end;
                }
            }
        }
        if let Some(l) = fast.last_mut() {
            l.last = true;
        }
        // The sentinel (H:252): where the block's last instruction goes on
        // to, when it does not leave by itself.  It counts nothing and ends
        // where that instruction ends.
        {
            let mut s = match fast.last() {
                Some(last) => last.clone(),
                None => exec::make(&Instruction::default()),
            };
            // Only handlers that set no `next_eip` come here: a control
            // handler that is the block's last instruction leaves by itself
            // (`DInsn::last`).
            s.h = crate::cpu::run::leave_block;
            s.h1 = exec::undefined;
            s.count = 0;
            s.len = 0;
            s.last = false;
            s.fuse = 0;
            s.chain = std::cell::Cell::new(NO_CHAIN);
            fast.push(s);
        }
        // H:254 Conditional branches to an entry of this same block: a loop
        // that fits in one block, or a short forward skip.  The fast loop
        // takes them without leaving the block: the branch's handler returns
        // the target entry itself, found from its own address.
        let before: Vec<u16> = fast.iter().map(|d| d.cum - d.count as u16).collect();
        let real = fast.len().saturating_sub(1);
        let size = std::mem::size_of::<DInsn>() as i32;
        let mut targets: Vec<Option<usize>> = vec![None; real];
        for (k, d) in fast[..real].iter_mut().enumerate() {
            // Offsets wrap like the addresses they stand for: a guest's
            // branch displacement can be anything.
            // (A fused pair keeps its branch's displacement in `rel`.)
            let branch = d.count == 2 || d.i.flow_control() == FlowControl::ConditionalBranch && d.i.op0_kind() == iced_x86::OpKind::NearBranch32;
            let target = branch.then(|| (d.end as i32).wrapping_add(d.rel as i32));
            if let Some(t) = target {
                if let Some(idx) = starts[..real].iter().position(|&s| s == t) {
                    d.toff = (idx as i32 - k as i32) * size;
                    d.tdelta = d.cum as i32 - before[idx] as i32;
                    targets[k] = Some(idx);
                }
            }
        }
        // H:288 A fused branch over exactly one register-only instruction
        // does not branch (H:287), if nothing else in the block jumps to
        // that instruction: its twin relies on the pair in front of it.
        // The entries are: the pair at `k`, its branch's own entry, the
        // skipped instruction at `k + 2`, the target at `k + 3`.
        for k in 0..real.saturating_sub(3) {
            let reached = targets.contains(&Some(k + 2));
            if fast[k].count == 2 && targets[k] == Some(k + 3) && fast[k + 2].count == 1 && !reached {
                let cc = fast[k + 1].i.condition_code() as u8 - 1;
                if let (Some(h), Some(hp)) = (exec::fuse::handler::<true>(fast[k].fuse, cc), fast[k + 2].hp) {
                    fast[k].h = h;
                    fast[k + 2].h = hp;
                    fast[k + 2].rd = crate::cpu::run::dest_index(&fast[k + 2]) as u8;
                }
            }
        }
        Block { phys, fast, chainable }
    }
}

/// Whether control leaves this instruction for the same code segment, at
/// the same privilege, without any event the outer loop must see first.
fn near_exit(i: &Instruction) -> bool {
    use iced_x86::Mnemonic as M;
    use iced_x86::{MemorySize, OpKind};
    let near_flow = matches!(
        i.flow_control(),
        FlowControl::Next | FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch | FlowControl::IndirectBranch | FlowControl::Call | FlowControl::IndirectCall | FlowControl::Return
    );
    let mode_change = ends_block(i) && !matches!(i.flow_control(), FlowControl::UnconditionalBranch | FlowControl::IndirectBranch | FlowControl::Call | FlowControl::IndirectCall | FlowControl::Return);
    let far = matches!(i.mnemonic(), M::Retf | M::Iret | M::Iretd)
        || matches!(i.op0_kind(), OpKind::FarBranch16 | OpKind::FarBranch32)
        || (matches!(i.mnemonic(), M::Jmp | M::Call) && matches!(i.memory_size(), MemorySize::SegPtr32 | MemorySize::SegPtr16));
    near_flow && !mode_change && !far && !i.is_invalid()
}

/// A small multiplicative hasher: keys are page-aligned-ish u32 addresses,
/// and the std SipHash would cost more than the lookup saves.
#[derive(Default)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type AddrMap<V> = HashMap<u32, V, BuildHasherDefault<AddrHasher>>;

/// One entry of the jump cache: a linear EIP, the physical page its block
/// came from, and the block.
#[derive(Clone, Copy)]
pub struct JumpEntry {
    pub lin: u32,
    pub phys_page: u32,
    pub block: *const Block,
}

// SAFETY: the pointer refers to a block owned by the same BlockCache, which
// moves between threads as a whole (the vCPU is run by one thread at a time).
unsafe impl Send for JumpEntry {}

pub const JUMP_CACHE_SIZE: usize = 4096;
const JUMP_EMPTY: JumpEntry = JumpEntry { lin: 1, phys_page: 0, block: std::ptr::null() };

#[inline(always)]
pub fn jump_slot(lin: u32) -> usize {
    ((lin ^ (lin >> 12)) as usize) & (JUMP_CACHE_SIZE - 1)
}

pub struct BlockCache {
    /// H:225 The jump cache: the last block seen at each linear EIP, per
    /// privilege half.  It saves the TLB walk and the hash lookup on the way
    /// into a block.  An entry is trusted only while the TLB still maps its
    /// page to the same physical page, and the whole cache is dropped when any
    /// block is thrown away, so it can never lead to stale or freed code.
    pub jump: Box<[[JumpEntry; JUMP_CACHE_SIZE]; 2]>,
    blocks: Vec<Option<Box<Block>>>,
    free: Vec<u32>,
    map: AddrMap<u32>,
    /// Direct-mapped front of `map`: (phys, index + 1); 0 = empty.
    fast: Box<[(u32, u32)]>,
    page_blocks: AddrMap<Vec<u32>>,
    /// One bit per 4 KiB physical page of the 4 GiB space.
    code_bits: Vec<u64>,
    /// Blocks thrown away while one of them may still be executing; freed at
    /// the next lookup.
    // Boxed on purpose: the executing loop holds a raw pointer to the Block,
    // which must not move when it is retired here.
    #[allow(clippy::vec_box)]
    graveyard: Vec<Box<Block>>,
    pub stats_decoded: u64,
    pub stats_invalidated: u64,
    /// Bumped whenever a block is thrown away: chain links (H:229) made
    /// before are no longer trusted.
    pub gen: u32,
}

impl Default for BlockCache {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockCache {
    pub fn new() -> Self {
        BlockCache {
            jump: Box::new([[JUMP_EMPTY; JUMP_CACHE_SIZE]; 2]),
            blocks: Vec::new(),
            free: Vec::new(),
            map: AddrMap::default(),
            fast: vec![(0u32, 0u32); FAST_SIZE].into_boxed_slice(),
            page_blocks: AddrMap::default(),
            code_bits: vec![0; (1 << 20) / 64],
            graveyard: Vec::new(),
            stats_decoded: 0,
            stats_invalidated: 0,
            gen: 1,
        }
    }

    #[inline(always)]
    pub fn is_code_page(&self, phys: u32) -> bool {
        let p = (phys >> 12) as usize;
        self.code_bits[p / 64] & (1 << (p % 64)) != 0
    }

    /// Find the block starting at guest-physical `phys`.
    #[inline(always)]
    pub fn lookup(&mut self, phys: u32) -> Option<*const Block> {
        let slot = (phys as usize ^ (phys as usize >> 14)) & (FAST_SIZE - 1);
        let (k, v) = self.fast[slot];
        if v != 0 && k == phys {
            if let Some(b) = &self.blocks[(v - 1) as usize] {
                return Some(&**b as *const Block);
            }
        }
        let idx = *self.map.get(&phys)?;
        self.fast[slot] = (phys, idx + 1);
        self.blocks[idx as usize].as_deref().map(|b| b as *const Block)
    }

    pub fn insert(&mut self, block: Block) -> *const Block {
        self.graveyard.clear();
        let phys = block.phys;
        let page = phys & !0xfff;
        let b = Box::new(block);
        let ptr = &*b as *const Block;
        let idx = match self.free.pop() {
            Some(i) => {
                self.blocks[i as usize] = Some(b);
                i
            }
            None => {
                self.blocks.push(Some(b));
                (self.blocks.len() - 1) as u32
            }
        };
        self.map.insert(phys, idx);
        self.page_blocks.entry(page).or_default().push(idx);
        let p = (page >> 12) as usize;
        self.code_bits[p / 64] |= 1 << (p % 64);
        self.stats_decoded += 1;
        ptr
    }

    /// Throw away every block on physical page `phys`.
    pub fn invalidate_page(&mut self, phys: u32) {
        let page = phys & !0xfff;
        let p = (page >> 12) as usize;
        self.code_bits[p / 64] &= !(1 << (p % 64));
        if let Some(list) = self.page_blocks.remove(&page) {
            self.gen = self.gen.wrapping_add(1).max(1);
            for half in self.jump.iter_mut() {
                half.fill(JUMP_EMPTY);
            }
            for idx in list {
                if let Some(b) = self.blocks[idx as usize].take() {
                    self.map.remove(&b.phys);
                    let slot = (b.phys as usize ^ (b.phys as usize >> 14)) & (FAST_SIZE - 1);
                    if self.fast[slot].0 == b.phys {
                        self.fast[slot] = (0, 0);
                    }
                    self.graveyard.push(b);
                    self.free.push(idx);
                    self.stats_invalidated += 1;
                }
            }
        }
    }

    /// Throw away everything (used when code may have changed behind our back).
    pub fn clear(&mut self) {
        let pages: Vec<u32> = self.page_blocks.keys().copied().collect();
        for p in pages {
            self.invalidate_page(p);
        }
    }
}

/// What the decoder produced for a block start.
pub enum Decoded {
    Cached(*const Block),
    /// An instruction that crosses a page boundary: run once, not cached.
    Uncached(Box<Block>),
}

impl Cpu {
    /// H:220 Find or decode the block at the current EIP.
    #[inline(always)]
    pub fn fetch_block(&mut self) -> Result<Decoded, Stop> {
        let eip = self.eip;
        let lin = self.lin(super::state::SegReg::Cs, eip);
        let user = self.user() as usize;
        let e = self.cache.jump[user][jump_slot(lin)];
        if e.lin == lin {
            let t = &self.tlb.read[user][((lin >> 12) as usize) & (super::mem::TLB_SIZE - 1)];
            if t.tag == self.tlb.tag(lin) && t.phys == e.phys_page {
                return Ok(Decoded::Cached(e.block));
            }
        }
        self.fetch_block_slow(lin)
    }

    #[inline(never)]
    fn fetch_block_slow(&mut self, lin: u32) -> Result<Decoded, Stop> {
        let eip = self.eip;
        let user = self.user();
        let t = self.translate(lin, super::mem::Access::Fetch, user)?;
        let phys = t.phys | (lin & 0xfff);
        if let Some(b) = self.cache.lookup(phys) {
            self.cache.jump[user as usize][jump_slot(lin)] = JumpEntry { lin, phys_page: t.phys, block: b };
            return Ok(Decoded::Cached(b));
        }
        let off = (lin & 0xfff) as usize;
        // SAFETY: `t.host` is the host address of a whole guest page that
        // passed the bounds check; the slice is that page.
        let page = unsafe { std::slice::from_raw_parts(t.host as *const u8, 4096) };
        let page_eip = eip.wrapping_sub(off as u32);
        let mut decoder = Decoder::with_ip(32, page, page_eip as u64, DecoderOptions::NO_INVALID_CHECK);
        decoder.set_position(off).expect("an offset inside the page");
        decoder.set_ip(eip as u64);
        let mut insns = Vec::with_capacity(16);
        let mut i = Instruction::default();
        let mut starts = [u16::MAX; MAX_FOLLOW + 1];
        starts[0] = off as u16;
        let mut follows = 0;
        while decoder.can_decode() && insns.len() < MAX_BLOCK {
            decoder.decode_out(&mut i);
            if i.is_invalid() && decoder.last_error() == iced_x86::DecoderError::NoMoreBytes {
                // The instruction runs into the next page.
                if insns.is_empty() {
                    return self.decode_cross_page(lin, phys);
                }
                break;
            }
            let mut d = exec::make(&i);
            d.end = i.next_ip32().wrapping_sub(eip) as i16;
            let mut ends = i.is_invalid() || ends_block(&i);
            if let Some(prev) = insns.last_mut() {
                exec::fuse::try_fuse(prev, &d);
            }
            insns.push(d);
            // H:226 A direct jump or call to the same page does not end the
            // block: decoding carries on at its target, so straight-line
            // code strung together by jumps, and small functions called from
            // the same page, run as one block.  At most a few times per
            // block, and never twice to the same place.
            if ends && follows < MAX_FOLLOW && matches!(i.mnemonic(), iced_x86::Mnemonic::Jmp | iced_x86::Mnemonic::Call) && i.op0_kind() == iced_x86::OpKind::NearBranch32 {
                let target = i.near_branch32();
                let t_off = target.wrapping_sub(page_eip);
                if t_off < 4096 && !starts.contains(&(t_off as u16)) {
                    follows += 1;
                    starts[follows] = t_off as u16;
                    decoder.set_position(t_off as usize).expect("an offset inside the page");
                    decoder.set_ip(target as u64);
                    ends = false;
                }
            }
            if ends {
                break;
            }
        }
        if insns.is_empty() {
            // Only possible if the page ended exactly here: the next fetch
            // will translate the next page.
            return self.decode_cross_page(lin, phys);
        }
        let block = Block::new(phys, insns);
        // The page becomes a code page: stores to it must come through the
        // slow path from now on (H:210), so its write entries go.  If it
        // already was one, it has none (the slow path never adds them), and
        // the scan of the whole write TLB can be skipped.
        let fresh = !self.cache.is_code_page(phys);
        let ptr = self.cache.insert(block);
        if fresh {
            self.tlb.drop_writes_to(phys & !0xfff);
        }
        self.cache.jump[user as usize][jump_slot(lin)] = JumpEntry { lin, phys_page: t.phys, block: ptr };
        Ok(Decoded::Cached(ptr))
    }

    #[cold]
    fn decode_cross_page(&mut self, lin: u32, phys: u32) -> Result<Decoded, Stop> {
        let mut buf = [0u8; 15];
        let avail = 0x1000 - (lin & 0xfff) as usize;
        // Fetch what is on this page, then as much of the next as needed; a
        // fault on the next page is only reported if the instruction needs it.
        self.read_bytes(lin, &mut buf[..avail.min(15)]).map_err(Stop::fault)?;
        let mut i = Instruction::default();
        let mut ok = false;
        if avail < 15 {
            let next_ok = self.read_bytes(lin.wrapping_add(avail as u32), &mut buf[avail..]);
            let mut dec = Decoder::with_ip(32, &buf[..avail], self.eip as u64, DecoderOptions::NO_INVALID_CHECK);
            dec.decode_out(&mut i);
            if !(i.is_invalid() && dec.last_error() == iced_x86::DecoderError::NoMoreBytes) {
                ok = true;
            } else if let Err(f) = next_ok {
                return Err(Stop::fault(f));
            }
        }
        if !ok {
            let mut dec = Decoder::with_ip(32, &buf, self.eip as u64, DecoderOptions::NO_INVALID_CHECK);
            dec.decode_out(&mut i);
        }
        Ok(Decoded::Uncached(Box::new(Block::new(phys, vec![exec::make(&i)]))))
    }
}

/// H:227 Where a block ends.  Unconditional transfers end it; conditional
/// branches do not: decoding carries on along the fall-through path, and a
/// taken branch leaves the block early (its handler says so by returning
/// `Stop::TAKEN`).  These "superblocks" cut the number of block look-ups in
/// branchy loops.  Instructions that change how the following ones must run
/// (popf may set TF, sti opens an interrupt window, a segment load changes
/// the address space) also end a block.
fn ends_block(i: &Instruction) -> bool {
    use iced_x86::Mnemonic as M;
    match i.flow_control() {
        FlowControl::Next | FlowControl::ConditionalBranch => {}
        _ => return true,
    }
    match i.mnemonic() {
        M::Popfd | M::Popf | M::Sti => true,
        M::Mov | M::Pop => i.op0_kind() == iced_x86::OpKind::Register && i.op0_register().is_segment_register(),
        M::Lds | M::Les | M::Lfs | M::Lgs | M::Lss => true,
        _ => i.has_rep_prefix() || i.has_repne_prefix(),
    }
}

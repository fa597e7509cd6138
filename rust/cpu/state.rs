//! Processor state: registers, segments, and how execution stops.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::decode::BlockCache;
use super::flags::{self, FlagOp, Lazy};
use super::fpu::Fpu;
use super::mem::{Mmu, Tlb};

pub const EAX: usize = 0;
pub const ECX: usize = 1;
pub const EDX: usize = 2;
pub const EBX: usize = 3;
pub const ESP: usize = 4;
pub const EBP: usize = 5;
pub const ESI: usize = 6;
pub const EDI: usize = 7;

/// Segment registers in the encoding order of the instruction set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SegReg {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
}

impl SegReg {
    pub const ALL: [SegReg; 6] = [SegReg::Es, SegReg::Cs, SegReg::Ss, SegReg::Ds, SegReg::Fs, SegReg::Gs];
}

/// A segment register with its hidden descriptor cache, as the processor keeps
/// it after a load: the selector the program sees and the base, limit and
/// access rights it loaded from the descriptor table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub base: u32,
    /// Byte-granular limit (already scaled by the granularity bit).
    pub limit: u32,
    /// Access byte (type, S, DPL, P) in bits 0..8 and the flags nibble
    /// (AVL, L, D/B, G) in bits 12..16, as in descriptor bits 40..56.
    pub rights: u16,
    /// False for a null selector loaded into a data segment register.
    pub usable: bool,
}

impl Segment {
    pub fn flat(selector: u16, rights: u16) -> Self {
        Segment { selector, base: 0, limit: u32::MAX, rights, usable: true }
    }

    pub fn dpl(&self) -> u8 {
        ((self.rights >> 5) & 3) as u8
    }

    /// Build the cache from an 8-byte descriptor.
    pub fn from_descriptor(selector: u16, desc: u64) -> Self {
        let lo = desc as u32;
        let hi = (desc >> 32) as u32;
        let base = (lo >> 16) | ((hi & 0xff) << 16) | (hi & 0xff00_0000);
        let mut limit = (lo & 0xffff) | (hi & 0x000f_0000);
        if hi & (1 << 23) != 0 {
            limit = (limit << 12) | 0xfff;
        }
        let rights = ((hi >> 8) & 0xf0ff) as u16;
        Segment { selector, base, limit, rights, usable: true }
    }
}

/// An exception raised by an instruction: vector, optional error code, and
/// for a page fault the linear address (the future CR2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub vector: u8,
    pub error: Option<u32>,
    pub addr: u32,
}

impl Fault {
    pub const fn new(vector: u8) -> Self {
        Fault { vector, error: None, addr: 0 }
    }
    pub const fn with_error(vector: u8, error: u32) -> Self {
        Fault { vector, error: Some(error), addr: 0 }
    }
    pub const fn page(addr: u32, error: u32) -> Self {
        Fault { vector: 14, error: Some(error), addr }
    }
    pub const DE: Fault = Fault::new(0);
    pub const UD: Fault = Fault::new(6);
    pub const NM: Fault = Fault::new(7);
    pub const GP0: Fault = Fault::with_error(13, 0);
    pub const MF: Fault = Fault::new(16);
    pub const XM: Fault = Fault::new(19);
}

/// Why an instruction did not simply complete, unpacked for matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// A fault: EIP stays at the faulting instruction.
    Fault(Fault),
    /// A software interrupt (`int n`, `int3`, `into`): EIP is past it.
    Int(u8),
    /// `hlt` at a privilege level that may halt (or on the bare CPU).
    Hlt,
    /// A conditional branch was taken: the instruction completed and
    /// `next_eip` is the target, off the block's straight line.  Never
    /// leaves the run loop.
    Taken,
}

/// H:256 Why an instruction did not simply complete, packed into one
/// non-zero machine word.  Every handler returns `Result<(), Stop>`, and the
/// hot loop looks at that result after every instruction.  As an enum with a
/// `Fault` inside, the result was 16 bytes and went back through memory; as
/// a `NonZeroU64`, `Ok(())` is the zero word and the whole result comes back
/// in one register, so the common case costs one test.  The packing (kind in
/// the top three bits, then whether there is an error code, the 16-bit error
/// code, the vector and the fault address) holds everything a fault carries:
/// x86 error codes are selectors or page-fault bits, never wider than 16 bits.
/// Every kind has the top bit set, which no host address has: the fast loop's
/// handlers return either the next entry's address or a stop in one word
/// (`decode::Next`, H:252), and one sign test tells which.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stop(std::num::NonZeroU64);

const KIND_FAULT: u64 = 4;
const KIND_INT: u64 = 5;
const KIND_HLT: u64 = 6;
const KIND_TAKEN: u64 = 7;

impl Stop {
    const fn pack(kind: u64, payload: u64) -> Stop {
        match std::num::NonZeroU64::new(kind << 61 | payload) {
            Some(v) => Stop(v),
            None => panic!("a stop kind is never zero"),
        }
    }

    pub const HLT: Stop = Stop::pack(KIND_HLT, 0);
    pub const TAKEN: Stop = Stop::pack(KIND_TAKEN, 0);

    #[inline(always)]
    pub const fn fault(f: Fault) -> Stop {
        let error = match f.error {
            Some(e) => (1 << 60) | ((e as u64 & 0xffff) << 40),
            None => 0,
        };
        Stop::pack(KIND_FAULT, error | (f.vector as u64) << 32 | f.addr as u64)
    }

    #[inline(always)]
    pub const fn int(vector: u8) -> Stop {
        Stop::pack(KIND_INT, vector as u64)
    }

    /// The packed word (its top bit is always set).
    #[inline(always)]
    pub const fn bits(self) -> u64 {
        self.0.get()
    }

    /// Unpack a word made by `bits`.
    #[inline(always)]
    pub const fn from_bits(v: u64) -> Option<Stop> {
        if v >> 63 == 0 {
            return None;
        }
        match std::num::NonZeroU64::new(v) {
            Some(n) => Some(Stop(n)),
            None => None,
        }
    }

    #[inline(always)]
    pub fn is_taken(self) -> bool {
        self.0.get() >> 61 == KIND_TAKEN
    }

    /// Unpack for matching.
    pub fn kind(self) -> StopKind {
        let v = self.0.get();
        match v >> 61 {
            KIND_FAULT => StopKind::Fault(Fault {
                vector: (v >> 32) as u8,
                error: if v & (1 << 60) != 0 { Some(((v >> 40) & 0xffff) as u32) } else { None },
                addr: v as u32,
            }),
            KIND_INT => StopKind::Int(v as u8),
            KIND_HLT => StopKind::Hlt,
            _ => StopKind::Taken,
        }
    }
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind().fmt(f)
    }
}

impl From<Fault> for Stop {
    #[inline(always)]
    fn from(f: Fault) -> Self {
        Stop::fault(f)
    }
}

// H:255 This is the whole interface between the processor and the host:
// `Cpu::run` (H:250) executes until something needs a decision it cannot
// make, and says why in one of these.  A fault leaves EIP on the faulting
// instruction, so that after the host has fixed things (filled a shadow
// entry, rewritten a `vmcall`) the instruction simply runs again; a software
// interrupt leaves EIP after it, as the processor's own frame would.  The
// host's side of the conversation is `Guest::handle_exit` (H:960).
/// Why `Cpu::run` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Fault(Fault),
    Int(u8),
    Hlt,
    /// The instruction budget ran out.
    Count,
    /// EIP reached the requested stop address.
    Address,
    /// Another thread asked the vCPU to stop (interrupt, signal, eventfd...).
    Event,
}

// H:257 Other threads never touch the processor's state: a device thread
// that wants the guest's attention sets a bit in this one atomic word (an
// interrupt with `Shared::raise_irq`, H:910), and the run loop, which reads
// the word once per block, returns `Exit::Event` at the next block
// boundary.  The host's run loop (H:940) then consumes the bits and acts on
// them with the guest stopped between two instructions.  So an interrupt
// waits at most one block for a running guest (a `rep` instruction is cut
// into slices for the same reason, H:390).
/// Event bits other threads may set to pull the vCPU out of its loop at the
/// next block boundary.
pub const EVENT_IRQ: u32 = 1;
pub const EVENT_STOP: u32 = 2;
/// A device wrote guest memory (DMA): decoded code on those pages may be stale.
pub const EVENT_DMA: u32 = 4;

/// The event bits, and the instruction count at which the fast loop must
/// look at them.
///
/// H:258 A loop inside one block has two reasons to stop at its backward
/// branch: an event, or the end of its instruction budget.  Both are folded
/// into one comparison.  The loop is given the count at which its budget
/// ends (`arm`), and whoever raises an event also drops that limit to zero
/// (`raise`), so "the count has reached the limit" covers both.  The order
/// makes it safe: the loop stores its limit and then reads the bits; a
/// raiser sets its bit and then zeroes the limit.  In the one total order of
/// these sequentially consistent operations, either the loop's read sees the
/// bit, or the raiser's zero comes after the loop's limit and stays.
/// How far ahead of the instruction count the fast loop's limit may be:
/// 2^30 instructions, a second or two of guest time.  A branch's
/// `LEAVE_DELTA` (2^31 - 1) must always carry the count past the limit.
/// The unit tests use a short one, so that their long loops pass many
/// limits.
pub const HORIZON: u64 = if cfg!(test) { 1 << 12 } else { 1 << 30 };

#[derive(Default)]
pub struct Events {
    bits: AtomicU32,
    limit: AtomicU64,
}

impl Events {
    /// Set event bits, from any thread.
    pub fn raise(&self, bits: u32) {
        self.bits.fetch_or(bits, Ordering::SeqCst);
        self.limit.store(0, Ordering::SeqCst);
    }

    /// The pending bits.
    #[inline(always)]
    pub fn pending(&self) -> u32 {
        self.bits.load(Ordering::Acquire)
    }

    /// Clear `mask`, returning the bits that were pending.
    pub fn take(&self, mask: u32) -> u32 {
        self.bits.fetch_and(!mask, Ordering::AcqRel)
    }

    /// Let the fast loop run until `limit` instructions (at most `HORIZON`
    /// ahead, H:259): false if an event is already pending.
    #[inline]
    pub fn arm(&self, limit: u64) -> bool {
        self.limit.store(limit, Ordering::SeqCst);
        self.bits.load(Ordering::SeqCst) == 0
    }

    /// Make every backward branch leave its block (the exact loop: no
    /// event can be lost by lowering the limit).
    #[inline]
    pub fn disarm(&self) {
        self.limit.store(0, Ordering::Relaxed);
    }

    /// The count at which the fast loop must stop and look.
    #[inline(always)]
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }
}

pub struct Cpu {
    pub regs: [u32; 8],
    pub eip: u32,
    /// Where the current instruction continues; control transfers change it.
    pub next_eip: u32,
    /// EFLAGS, with the arithmetic bits valid only when `lazy.op == Eager`.
    pub eflags: u32,
    pub lazy: Lazy,
    pub segs: [Segment; 6],
    /// The current privilege level; private so that every change goes
    /// through `set_cpl`, which keeps `user` with it.
    cpl: u8,
    /// Whether the privilege level is 3, as an index (0 or 1) into the
    /// software TLB's halves (`user_index`).
    user: usize,
    pub gdt: [u64; 32],
    pub fpu: Fpu,
    pub tlb: Tlb,
    pub mmu: Mmu,
    pub cache: BlockCache,
    /// Instructions retired since creation.
    pub icount: u64,
    /// Set when something must end the current block early, after the
    /// instruction that did it: a write to a page holding decoded code, a
    /// change of mode; see `end_block`.
    pub block_ended: bool,
    /// While the fast loop runs a block (H:252): `icount` plus the
    /// corrections of the branches taken inside the block so far, so that
    /// the entry's running total `cum` added to it gives the true count.
    pub run_count: u64,
    /// Whether a fused branch just skipped the predicated instruction that
    /// follows it (H:287).
    pub pred_skip: bool,
    /// Asynchronous requests from other threads, checked between blocks.
    pub events: Arc<Events>,
    /// The guest's view of CR0.TS (lguest's virtual TS flag).
    pub ts: bool,
    /// Time stamp counter: with a clock, rdtsc counts nanoseconds since that
    /// instant (a 1 GHz TSC); without one it counts instructions retired, which
    /// keeps the bare CPU deterministic.
    pub tsc_clock: Option<std::time::Instant>,
    pub tsc_offset: u64,
}

impl Cpu {
    pub fn new(mmu: Mmu) -> Self {
        Cpu {
            regs: [0; 8],
            eip: 0,
            next_eip: 0,
            eflags: 0x2,
            lazy: Lazy::default(),
            segs: [Segment::default(); 6],
            cpl: 0,
            user: 0,
            gdt: [0; 32],
            fpu: Fpu::default(),
            tlb: Tlb::new(),
            mmu,
            cache: BlockCache::new(),
            icount: 0,
            block_ended: false,
            run_count: 0,
            pred_skip: false,
            events: Arc::new(Events::default()),
            ts: false,
            tsc_clock: None,
            tsc_offset: 0,
        }
    }

    /// H:307 EFLAGS with the lazy flags folded in.  Only the instructions
    /// that see the whole register pay for computing all six flags: pushf,
    /// lahf, and the host when it pushes a trap frame (H:1045).
    #[inline]
    pub fn get_eflags(&self) -> u32 {
        if self.lazy.op == FlagOp::Eager {
            self.eflags
        } else {
            (self.eflags & !flags::ARITH) | self.lazy.materialize()
        }
    }

    /// Replace EFLAGS (all bits; callers apply privilege rules first).
    #[inline]
    pub fn set_eflags(&mut self, v: u32) {
        self.eflags = (v & 0x003f_7fd5) | 0x2;
        self.lazy.op = FlagOp::Eager;
        self.lazy.cf = v & flags::CF != 0;
    }

    /// Fold the lazy flags into `eflags` so individual bits can be changed.
    #[inline]
    pub fn materialize_flags(&mut self) {
        if self.lazy.op != FlagOp::Eager {
            self.eflags = (self.eflags & !flags::ARITH) | self.lazy.materialize();
            self.lazy.op = FlagOp::Eager;
        }
    }

    /// Replace all six arithmetic flags at once (compares of the FPU and SSE
    /// units, flag-loading instructions): the one way to write them eagerly,
    /// which keeps `lazy.cf` in step.
    #[inline]
    pub fn set_arith_flags(&mut self, bits: u32) {
        self.eflags = (self.eflags & !flags::ARITH) | (bits & flags::ARITH);
        self.lazy.op = FlagOp::Eager;
        self.lazy.cf = bits & flags::CF != 0;
    }

    #[inline(always)]
    pub fn cf(&self) -> bool {
        self.lazy.cf
    }

    #[inline(always)]
    pub fn zf(&self) -> bool {
        if self.lazy.op == FlagOp::Eager {
            self.eflags & flags::ZF != 0
        } else {
            self.lazy.zf()
        }
    }

    #[inline(always)]
    pub fn sf(&self) -> bool {
        if self.lazy.op == FlagOp::Eager {
            self.eflags & flags::SF != 0
        } else {
            self.lazy.sf()
        }
    }

    #[inline(always)]
    pub fn of(&self) -> bool {
        if self.lazy.op == FlagOp::Eager {
            self.eflags & flags::OF != 0
        } else {
            self.lazy.of()
        }
    }

    #[inline(always)]
    pub fn pf(&self) -> bool {
        if self.lazy.op == FlagOp::Eager {
            self.eflags & flags::PF != 0
        } else {
            self.lazy.pf()
        }
    }

    #[inline(always)]
    pub fn af(&self) -> bool {
        if self.lazy.op == FlagOp::Eager {
            self.eflags & flags::AF != 0
        } else {
            self.lazy.af()
        }
    }

    /// Set a single arithmetic flag (after materialising the rest).
    pub fn set_flag(&mut self, bit: u32, on: bool) {
        self.materialize_flags();
        if bit == flags::CF {
            self.lazy.cf = on;
        }
        if on {
            self.eflags |= bit;
        } else {
            self.eflags &= !bit;
        }
    }

    /// H:305 Evaluate condition code `cc` (the low nibble of
    /// Jcc/SETcc/CMOVcc).  This is where laziness pays: a `jz` after a `cmp`
    /// asks for ZF, which is one comparison of the recorded result with
    /// zero, and the five other flags are never computed at all.
    #[inline(always)]
    pub fn cond(&self, cc: u8) -> bool {
        flags::cond(self, cc)
    }

    #[inline(always)]
    pub fn seg(&self, s: SegReg) -> &Segment {
        &self.segs[s as usize]
    }

    /// The current privilege level.
    #[inline(always)]
    pub fn cpl(&self) -> u8 {
        self.cpl
    }

    /// Change the privilege level.
    #[inline]
    pub fn set_cpl(&mut self, cpl: u8) {
        self.cpl = cpl;
        self.user = (cpl == 3) as usize;
    }

    /// Whether data accesses are user accesses for paging purposes.
    #[inline(always)]
    pub fn user(&self) -> bool {
        self.user != 0
    }

    /// `user` as an index, 0 or 1, kept with the privilege level so that
    /// the TLB's hit path (H:407) loads it rather than working it out.
    #[inline(always)]
    pub fn user_index(&self) -> usize {
        self.user & 1
    }

    /// End the current block after this instruction: the code or the mode it
    /// was decoded for may have changed.
    #[inline(always)]
    pub fn end_block(&mut self) {
        self.block_ended = true;
    }
}

impl flags::Flags for Cpu {
    #[inline(always)]
    fn of(&self) -> bool {
        Cpu::of(self)
    }
    #[inline(always)]
    fn cf(&self) -> bool {
        Cpu::cf(self)
    }
    #[inline(always)]
    fn zf(&self) -> bool {
        Cpu::zf(self)
    }
    #[inline(always)]
    fn sf(&self) -> bool {
        Cpu::sf(self)
    }
    #[inline(always)]
    fn pf(&self) -> bool {
        Cpu::pf(self)
    }
}

//! The hot loop.
//!
// H:250 This loop is where the guest spends its life.  Per block it finds
// the decoded block, usually through the link the previous block left
// (H:229), else through the jump cache and the TLB, and then calls the
// handlers one after another.  It allocates nothing, takes no lock and calls
// no Python; the only thing it looks at from the outside world is one atomic
// word, the limit that raising an event drops to zero (H:258), once per
// block and on every backward branch inside a block.  Instruction-exact
// stops (a count budget or a stop address) use a slower variant of the
// inner loop, so the common case pays nothing for them.

use super::decode::{Block, Chain, DInsn, Decoded, Next, MAX_BLOCK};
use super::exec::R;
use super::state::{Cpu, Exit, Stop, StopKind, HORIZON};

impl Cpu {
    /// Run until something needs attention.  `budget` is the number of
    /// instructions allowed (u64::MAX for no limit); `until` an address at
    /// which to stop before executing it.
    pub fn run(&mut self, budget: u64, until: Option<u32>) -> Exit {
        let start = self.icount;
        if until.is_none() && budget > MAX_BLOCK as u64 {
            if let Some(exit) = self.run_fast(start + (budget - MAX_BLOCK as u64)) {
                return exit;
            }
        }
        loop {
            if self.events.pending() != 0 {
                return Exit::Event;
            }
            let done = self.icount - start;
            if done >= budget {
                return Exit::Count;
            }
            if until == Some(self.eip) && done > 0 {
                return Exit::Address;
            }
            let decoded = match self.fetch_block() {
                Ok(d) => d,
                Err(stop) => return self.stop_exit(stop),
            };
            let remaining = budget - done;
            let result = match &decoded {
                // SAFETY: blocks are only freed through the graveyard, which is
                // emptied when a new block is inserted; nothing in this call
                // inserts one, so the block outlives the call.
                Decoded::Cached(b) => self.exec_block(unsafe { &**b }, remaining, until),
                Decoded::Uncached(b) => self.exec_block(b, remaining, until),
            };
            if let Err(stop) = result {
                return self.stop_exit(stop);
            }
        }
    }

    /// H:251 The loop for the common case: no stop address, and a budget
    /// that cannot end inside the next block.  It returns `None` once fewer
    /// than `MAX_BLOCK` instructions of the budget are left, for the exact
    /// loop to finish.
    ///
    /// Most blocks end in a branch to code on the same page, often the same
    /// few places over and over.  So a block remembers where it went (H:229),
    /// and when the next EIP is on the same page at the remembered offset,
    /// the next block is taken from there, skipping the jump cache and its
    /// TLB check.  That is safe because the link is only followed within one
    /// page, whose translation was checked when we entered it, and only while
    /// no block has been thrown away since the link was made (`gen`).
    fn run_fast(&mut self, stop_at: u64) -> Option<Exit> {
        let mut next: Option<*const Block> = None;
        if !self.events.arm(stop_at.min(self.icount.saturating_add(HORIZON))) {
            return Some(Exit::Event);
        }
        loop {
            // One test for both events and the budget (H:258).  The limit
            // is never more than `HORIZON` ahead, so a long run passes it
            // now and then and sets the next one.
            if self.icount >= self.events.limit() {
                if self.events.pending() != 0 {
                    return Some(Exit::Event);
                }
                if self.icount >= stop_at {
                    return None;
                }
                if !self.events.arm(stop_at.min(self.icount.saturating_add(HORIZON))) {
                    return Some(Exit::Event);
                }
            }
            let cur = match next.take() {
                Some(b) => b,
                None => match self.fetch_block() {
                    Ok(Decoded::Cached(b)) => b,
                    Ok(Decoded::Uncached(b)) => {
                        if let Err(stop) = self.exec_fast(&b) {
                            return Some(self.stop_exit(stop));
                        }
                        continue;
                    }
                    Err(stop) => return Some(self.stop_exit(stop)),
                },
            };
            // SAFETY: `cur` came from the cache (or a link checked against
            // `gen`); blocks are only freed when a later insert empties the
            // graveyard, and nothing between here and the end of `exec_fast`
            // inserts a block.
            let block = unsafe { &*cur };
            let gen = self.cache.gen;
            let cs_base = self.segs[super::state::SegReg::Cs as usize].base;
            let entry_lin = cs_base.wrapping_add(self.eip);
            let last = match self.exec_fast(block) {
                Ok(d) => d,
                Err(stop) => return Some(self.stop_exit(stop)),
            };
            // Follow or make a link, if the block is still valid and may be
            // left this way.
            if !block.chainable || self.block_ended || self.cache.gen != gen {
                continue;
            }
            let lin = cs_base.wrapping_add(self.eip);
            if (lin ^ entry_lin) & !0xfff != 0 {
                continue;
            }
            // SAFETY: `last` points into `block.fast`, alive as above.
            let cell = unsafe { &(*last).chain };
            let link = cell.get();
            if link.off == lin & 0xfff && link.gen == gen {
                next = Some(link.block);
                continue;
            }
            match self.fetch_block() {
                Ok(Decoded::Cached(b)) => {
                    if self.cache.gen == gen {
                        cell.set(Chain { off: lin & 0xfff, gen, block: b });
                    }
                    next = Some(b);
                }
                // Leave the rare cases to the top of the loop.
                Ok(Decoded::Uncached(_)) | Err(_) => {}
            }
        }
    }

    /// H:253 Execute one block, all of it unless it is left early.  On a
    /// fault EIP stays on the faulting instruction; on a software interrupt
    /// or hlt it moves past it.  Returns the entry the block was left from,
    /// whose link (H:229) says where to go next.
    ///
    /// The handlers do the stepping (H:252): each returns the entry to run
    /// next, and the loop only calls and tests.  EIP is not stored after
    /// every instruction: it stays at the block's start while the block
    /// runs, and each entry knows where it ends relative to that, so EIP is
    /// written once, when the block is left.  The instruction count is the
    /// running total kept in each entry (a fused pair counts two), plus the
    /// corrections that branches inside the block add to `run_count`.
    #[inline(always)]
    fn exec_fast(&mut self, block: &Block) -> Result<*const DInsn, Stop> {
        self.block_ended = false;
        self.run_count = self.icount;
        let mut p = block.fast.as_ptr();
        loop {
            // SAFETY: `p` is the first entry of the block or an address a
            // handler returned: the entry after its own (never past the
            // sentinel, whose handler always leaves) or a branch target
            // `Block::new` took from this same array.  The block is alive for
            // the whole call (see the callers).
            let d = unsafe { &*p };
            let next = (d.h)(self, d);
            match Stop::from_bits(next.0) {
                None => p = next.0 as *const DInsn,
                Some(s) if s.is_taken() => {
                    self.eip = self.next_eip;
                    self.icount = self.run_count + d.cum as u64;
                    return Ok(p);
                }
                Some(s) => {
                    // (A fused pair cannot fault: both halves work on
                    // registers; its `end` would be the pair's.)
                    self.eip = self.eip.wrapping_add(d.end as i32 as u32).wrapping_sub(d.len as u32);
                    self.icount = self.run_count + (d.cum - d.count as u16) as u64;
                    return Err(self.finish_stop(s));
                }
            }
        }
    }

    fn stop_exit(&mut self, stop: Stop) -> Exit {
        match stop.kind() {
            StopKind::Fault(f) => Exit::Fault(f),
            StopKind::Int(v) => Exit::Int(v),
            StopKind::Hlt => Exit::Hlt,
            StopKind::Taken => unreachable!("a taken branch completes inside the block"),
        }
    }

    /// Execute (part of) one block for the exact loop.  On a fault EIP stays
    /// on the faulting instruction; on a software interrupt or hlt it moves
    /// past it.
    #[inline(always)]
    fn exec_block(&mut self, block: &Block, remaining: u64, until: Option<u32>) -> Result<(), Stop> {
        let insns = &block.fast[..block.fast.len().saturating_sub(1)];
        if until.is_none() && remaining >= insns.len() as u64 {
            self.events.disarm();
            return self.exec_fast(block).map(|_| ());
        }
        self.block_ended = false;
        for (n, d) in insns.iter().enumerate() {
            if n as u64 >= remaining || (n > 0 && until == Some(self.eip)) {
                break;
            }
            self.next_eip = self.eip.wrapping_add(d.len as u32);
            match (d.h1)(self, d) {
                Ok(()) => {
                    self.eip = self.next_eip;
                    self.icount += 1;
                    if self.block_ended {
                        break;
                    }
                }
                Err(s) if s.is_taken() => {
                    self.eip = self.next_eip;
                    self.icount += 1;
                    break;
                }
                Err(s) => return Err(self.finish_stop(s)),
            }
        }
        Ok(())
    }

    #[cold]
    fn finish_stop(&mut self, s: Stop) -> Stop {
        match s.kind() {
            StopKind::Int(_) | StopKind::Hlt => {
                self.eip = self.next_eip;
                self.icount += 1;
            }
            StopKind::Fault(_) | StopKind::Taken => {}
        }
        s
    }

    pub fn tsc(&self) -> u64 {
        match self.tsc_clock {
            Some(t0) => (t0.elapsed().as_nanos() as u64).wrapping_add(self.tsc_offset),
            None => self.icount.wrapping_add(self.tsc_offset),
        }
    }
}

// H:232 The fast loop's side of a handler.  Most handlers are written once,
// for the exact loop, as `fn(&mut Cpu, &DInsn) -> R`; the macros
// `exec::control!` and `exec::regs!` wrap each in a small function of its
// own that calls it (inlined) and turns its outcome into a `Next`.  A
// control transfer, an interrupt or a system instruction reads `next_eip`,
// so `control!` sets it first, and notices a handler that ended the block
// early (`Cpu::end_block`).  A handler that works on registers alone
// (`regs!`) reads no `next_eip` and cannot end a block, so its wrapper only
// steps on.  The specialised memory handlers are written for both loops at
// once instead (H:266); their miss path comes back here (`after_plain`).

/// What follows a handler that never reads `next_eip`: the miss path of
/// a memory handler (H:266).
#[inline(always)]
pub fn after_plain(cpu: &mut Cpu, d: &DInsn, r: R) -> Next {
    match r {
        Ok(()) if !cpu.block_ended => Next::after(d),
        Ok(()) => {
            cpu.next_eip = cpu.eip.wrapping_add(d.end as i32 as u32);
            Next::LEAVE
        }
        Err(s) => Next::stop(s),
    }
}

/// What follows a register-only handler, which cannot end the block.
#[inline(always)]
pub fn after_regs(d: &DInsn, r: R) -> Next {
    match r {
        Ok(()) => Next::after(d),
        Err(s) => Next::stop(s),
    }
}

/// Where in `Cpu::regs` a register-only instruction writes: `r0` is an x86
/// register number, whose 8-bit numbers 4 to 7 are AH..BH, the second
/// bytes of registers 0 to 3.
#[inline(always)]
pub fn dest_index(d: &DInsn) -> usize {
    if d.size == 1 {
        d.r0 as usize & 3
    } else {
        d.r0 as usize & 7
    }
}

/// What follows the predicated twin of a register-only handler (H:287):
/// its work stands, or, if the branch in front of it was taken, the
/// register and the flags go back to what they were (`reg`, `lazy`) and the
/// instruction leaves the count.  All without a branch.
#[inline(always)]
pub fn after_pred(cpu: &mut Cpu, d: &DInsn, r: R, reg: u32, lazy: crate::cpu::flags::Lazy) -> Next {
    debug_assert!(r.is_ok(), "register-only handlers do not fail");
    let skip = cpu.pred_skip;
    let r0 = d.rd as usize & 7;
    cpu.regs[r0] = std::hint::select_unpredictable(skip, reg, cpu.regs[r0]);
    cpu.lazy = crate::cpu::flags::Lazy::select(skip, lazy, cpu.lazy);
    cpu.run_count = cpu.run_count.wrapping_sub(skip as u64);
    Next::after(d)
}

/// Point `next_eip` past the instruction, for a control handler.
#[inline(always)]
pub fn before_control(cpu: &mut Cpu, d: &DInsn) {
    cpu.next_eip = cpu.eip.wrapping_add(d.end as i32 as u32);
}

/// What follows a control handler, which has set `next_eip` itself.
#[inline(always)]
pub fn after_control(cpu: &mut Cpu, d: &DInsn, r: R) -> Next {
    match r {
        // The block's last instruction leaves at once, rather than through
        // the sentinel: most blocks end in a jump, call or return.
        Ok(()) if !(cpu.block_ended | d.last) => Next::after(d),
        Ok(()) => Next::LEAVE,
        Err(s) if s.is_taken() => match stay(cpu, d) {
            Some(n) => n,
            None => Next::LEAVE,
        },
        Err(s) => Next::stop(s),
    }
}

/// The fast handler of the floating-point and vector instructions (and of
/// an entry before its handlers are chosen): its exact handler, called
/// through the entry.  Those handlers are long enough that the second call
/// does not show, and many enough that a wrapper each is not worth it.
pub fn generic(cpu: &mut Cpu, d: &DInsn) -> Next {
    before_control(cpu, d);
    let r = (d.h1)(cpu, d);
    after_control(cpu, d, r)
}

/// H:259 A taken conditional branch whose target is an entry of the same
/// block (H:254) goes straight there, adding the branch's correction to the
/// running count.  A backward one is a loop, and a loop is where the outer
/// loop's checks would have come between blocks, so they come here: pending
/// events and the budget, in one comparison with the limit (H:258).  That
/// same comparison also sends a branch out of the block when its target is
/// elsewhere: such a branch's correction is `LEAVE_DELTA`, which lifts the
/// count above any limit (limits are never more than `state::HORIZON`
/// ahead of the count).  (Forward branches are checked too, which is
/// never wrong: leaving a block early only costs time.)  `None`: leave the
/// block (the count then includes the branch, through its own `cum`).
#[inline(always)]
pub fn stay(cpu: &mut Cpu, d: &DInsn) -> Option<Next> {
    let count = cpu.run_count.wrapping_add(d.tdelta as i64 as u64);
    if count >= cpu.events.limit() {
        return None;
    }
    cpu.run_count = count;
    Some(Next((d as *const DInsn as u64).wrapping_add(d.toff as i64 as u64)))
}

/// The sentinel at the end of every fast array (H:252): the block's last
/// instruction completed without leaving, so go on after it.
pub fn leave_block(cpu: &mut Cpu, d: &DInsn) -> Next {
    cpu.next_eip = cpu.eip.wrapping_add(d.end as i32 as u32);
    Next::LEAVE
}

#[cfg(test)]
mod tests {
    //! The fast loop's shortcuts (links between blocks, branches inside a
    //! block, fused pairs) must not change what a run does: the instruction
    //! count stays exact for any budget, and pending events still stop a loop
    //! that never leaves its block.
    use crate::bare::BareCpu;
    use crate::cpu::state::{Exit, EVENT_STOP};

    /// `l: add eax, 1; shr ebx, 1; jnc skip; inc edx; skip: dec ecx; jnz l; hlt`,
    /// a loop with a forward skip, both branches inside one block.
    const LOOP: [u8; 16] = [0x83, 0xc0, 0x01, 0xd1, 0xeb, 0x73, 0x01, 0x42, 0x49, 0x75, 0xf5, 0xf4, 0, 0, 0, 0];

    fn machine(ecx: u32) -> BareCpu {
        let mut b = BareCpu::new();
        b.mem_map(0x1000, 0x1000).unwrap();
        b.mem_write(0x1000, &LOOP).unwrap();
        b.reg_write("ecx", ecx as u128).unwrap();
        b.reg_write("ebx", 0xA5A5_A5A5).unwrap();
        b
    }

    /// Step the same program one instruction at a time (the exact loop).
    fn stepped(ecx: u32, n: u64) -> BareCpu {
        let mut b = machine(ecx);
        b.cpu.eip = 0x1000;
        for _ in 0..n {
            if b.run(None, 1, None) != Exit::Count {
                break;
            }
        }
        b
    }

    #[test]
    fn any_budget_stops_exactly_where_stepping_does() {
        for n in [1u64, 63, 64, 65, 66, 127, 200, 1000, 1001, 1002, 2499] {
            let mut fast = machine(500);
            let e = fast.run(Some(0x1000), n, None);
            let slow = stepped(500, n);
            assert_eq!(e, Exit::Count, "budget {n}");
            assert_eq!(fast.cpu.icount, n, "budget {n}");
            assert_eq!(slow.cpu.icount, n, "budget {n}");
            assert_eq!(fast.cpu.regs, slow.cpu.regs, "budget {n}");
            assert_eq!(fast.cpu.eip, slow.cpu.eip, "budget {n}");
            assert_eq!(fast.cpu.get_eflags() & 0x8d5, slow.cpu.get_eflags() & 0x8d5, "budget {n}");
        }
    }

    #[test]
    fn whole_loop_counts_every_instruction() {
        let mut b = machine(500);
        assert_eq!(b.run(Some(0x1000), 0, None), Exit::Hlt);
        // 5 instructions per pass, plus inc edx on the passes where the
        // bit shifted out of ebx was 1, plus the final hlt.
        let incs = b.cpu.regs[2] as u64;
        assert_eq!(b.cpu.icount, 500 * 5 + incs + 1);
        assert_eq!(b.cpu.regs[0], 500);
        assert_eq!(incs, 0xA5A5_A5A5u32.count_ones() as u64);
    }

    #[test]
    fn a_pending_event_stops_a_loop_inside_one_block() {
        // ecx = 0: the loop runs 2^32 times unless something stops it.
        let mut b = machine(0);
        let events = b.cpu.events.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            events.raise(EVENT_STOP);
        });
        let e = b.run(Some(0x1000), 0, None);
        t.join().unwrap();
        assert_eq!(e, Exit::Event);
        assert!(b.cpu.icount > 0);
        // It stopped at an instruction boundary of the loop, with a count
        // that matches the registers: eax counts the passes started.
        let passes = b.cpu.regs[0] as u64;
        let done = 0u32.wrapping_sub(b.cpu.regs[1]) as u64;
        assert!(passes == done || passes == done + 1, "eax {passes} ecx passes {done}");
    }

    /// A branch over one register-only instruction runs without a branch
    /// in the fast loop (H:287).  For many pairs of flag-setter and skipped
    /// instruction, a loop that takes the branch some times and not others
    /// must end exactly as stepping it does: registers, flags (which `lahf`
    /// samples after every pass) and the instruction count.
    #[test]
    fn branches_over_one_instruction_match_stepping() {
        // Flag-setters, each with the conditions to try.
        let setters: [(&[u8], &[u8]); 4] = [
            (&[0xd1, 0xeb], &[0x72, 0x73]),       // shr ebx, 1: jc, jnc
            (&[0x39, 0xd8], &[0x7c, 0x7f, 0x74]), // cmp eax, ebx: jl, jg, je
            (&[0x01, 0xdf], &[0x78, 0x70]),       // add edi, ebx: js, jo
            (&[0xc1, 0xeb, 0x03], &[0x72]),       // shr ebx, 3: jc
        ];
        let skipped: [&[u8]; 13] = [
            &[0x35, 0x20, 0x83, 0xb8, 0xed], // xor eax, 0xedb88320
            &[0x01, 0xcb],                   // add ebx, ecx
            &[0x42],                         // inc edx
            &[0xb8, 0x05, 0, 0, 0],          // mov eax, 5
            &[0xb0, 0x07],                   // mov al, 7
            &[0x88, 0xdc],                   // mov ah, bl
            &[0xd3, 0xe2],                   // shl edx, cl
            &[0x66, 0x83, 0xea, 0x03],       // sub dx, 3
            &[0xf7, 0xd8],                   // neg eax
            &[0x39, 0xd8],                   // cmp eax, ebx
            &[0x8d, 0x04, 0x4b],             // lea eax, [ebx+ecx*2]
            &[0x80, 0xc4, 0x81],             // add ah, 0x81
            &[0x11, 0xd8],                   // adc eax, ebx
        ];
        for (setter, conds) in setters {
            for &cc in conds {
                for b in skipped {
                    let mut code = setter.to_vec();
                    code.extend([cc, b.len() as u8]);
                    code.extend(b);
                    // The target samples the flags without losing a
                    // register: mov ebp, eax; seto dl; lahf; movzx eax, ah;
                    // add esi, eax; add esi, edx; mov eax, ebp; then
                    // add ebx, 0x1a2b3c4d; dec ecx; jnz back; hlt.
                    code.extend([0x89, 0xc5, 0x0f, 0x90, 0xc2, 0x9f, 0x0f, 0xb6, 0xc4, 0x01, 0xc6, 0x01, 0xd6, 0x89, 0xe8]);
                    code.extend([0x81, 0xc3, 0x4d, 0x3c, 0x2b, 0x1a, 0x49]);
                    let back = -(code.len() as i32 + 2);
                    code.extend([0x75, back as u8, 0xf4]);
                    let setup = |b: &mut BareCpu| {
                        b.mem_map(0x1000, 0x1000).unwrap();
                        b.mem_write(0x1000, &code).unwrap();
                        for (r, v) in [("eax", 0x8000_0001u128), ("ebx", 0x1234_5679), ("ecx", 40), ("edx", 7), ("esi", 0), ("edi", 0x7fff_fff0)] {
                            b.reg_write(r, v).unwrap();
                        }
                    };
                    let mut fast = BareCpu::new();
                    setup(&mut fast);
                    assert_eq!(fast.run(Some(0x1000), 0, None), Exit::Hlt);
                    let mut slow = BareCpu::new();
                    setup(&mut slow);
                    slow.cpu.eip = 0x1000;
                    while slow.run(None, 1, None) == Exit::Count {}
                    let what = format!("setter {setter:02x?} jcc {cc:#x} skipped {b:02x?}");
                    assert_eq!(fast.cpu.regs, slow.cpu.regs, "{what}");
                    assert_eq!(fast.cpu.icount, slow.cpu.icount, "{what}");
                    assert_eq!(fast.cpu.get_eflags() & 0x8d5, slow.cpu.get_eflags() & 0x8d5, "{what}");
                }
            }
        }
    }

    /// A block cut at its 64th instruction by a fused compare-and-branch
    /// that is not taken: the pair goes on through the sentinel, which must
    /// point EIP after the branch (the branch's own entry is control, but
    /// did not run).
    #[test]
    fn a_fused_pair_ending_a_full_block_falls_through() {
        let mut code = vec![0x40u8; 62]; // inc eax
        code.extend([0x39, 0xc9, 0x75, 0x10]); // cmp ecx, ecx; jne +16
        code.extend([0x42, 0xf4]); // inc edx; hlt
        let mut b = BareCpu::new();
        b.mem_map(0x1000, 0x1000).unwrap();
        b.mem_write(0x1000, &code).unwrap();
        assert_eq!(b.run(Some(0x1000), 0, None), Exit::Hlt);
        assert_eq!(b.cpu.regs[0], 62);
        assert_eq!(b.cpu.regs[2], 1);
        assert_eq!(b.cpu.icount, 62 + 2 + 2);
    }
}

//! The hot loop.
//!
// H:250 This loop is where the guest spends its life.  Per block it finds
// the decoded block, usually through the link the previous block left
// (H:229), else through the jump cache and the TLB, and then calls the
// handlers one after another.  It allocates nothing, takes no lock and calls
// no Python; the only thing it looks at from the outside world is one atomic
// word of event bits, once per block and on every backward branch inside a
// block.  Instruction-exact stops (a count budget or a stop address) use a
// slower variant of the inner loop, so the common case pays nothing for
// them.

use std::sync::atomic::Ordering;

use super::decode::{Block, Chain, DInsn, Decoded, MAX_BLOCK, NO_TARGET};
use super::state::{Cpu, Exit, Stop, StopKind};

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
            if self.events.load(Ordering::Acquire) != 0 {
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
        loop {
            if self.events.load(Ordering::Acquire) != 0 {
                return Some(Exit::Event);
            }
            if self.icount >= stop_at {
                return None;
            }
            let cur = match next.take() {
                Some(b) => b,
                None => match self.fetch_block() {
                    Ok(Decoded::Cached(b)) => b,
                    Ok(Decoded::Uncached(b)) => {
                        if let Err(stop) = self.exec_fast(&b, stop_at) {
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
            let last = match self.exec_fast(block, stop_at) {
                Ok(d) => d,
                Err(stop) => return Some(self.stop_exit(stop)),
            };
            // Follow or make a link, if the block is still valid and may be
            // left this way.
            if !block.chainable || self.block_limit == 0 || self.cache.gen != gen {
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
    /// or hlt it moves past it.  Returns the instruction the block was left
    /// from, whose link (H:229) says where to go next.
    ///
    /// The loop keeps as little as it can per instruction.  EIP is not
    /// stored after every instruction: each decoded instruction knows where
    /// it ends relative to the start of its block, so the loop only sets
    /// `next_eip` (which branches change) from the block's start, and EIP is
    /// written once when the block is left.  The instruction count is the
    /// running total kept in each entry (a fused pair counts two).
    /// And one comparison, against `block_limit`, both finds the end of the
    /// block and notices that a handler asked to end it early.
    #[inline(always)]
    fn exec_fast(&mut self, block: &Block, stop_at: u64) -> Result<*const DInsn, Stop> {
        let insns = &block.fast[..];
        let base = self.eip;
        self.block_limit = insns.as_ptr_range().end as usize;
        let start = insns.as_ptr();
        let mut p = start;
        // Instructions completed in earlier passes through the block
        // (intra-block branches, H:254), and instructions before the entry
        // this pass started at, so that `cum` still counts right.
        let mut done: u64 = 0;
        let mut skipped: u64 = 0;
        let last = loop {
            // SAFETY: `p` starts at the first entry and steps by one (or
            // jumps to a `target`, an index into the same entries); the loop
            // ends as soon as it reaches `block_limit`, which is at most the
            // end of the block's entries.
            let d = unsafe { &*p };
            self.next_eip = base.wrapping_add(d.end as i32 as u32);
            match (d.h)(self, d) {
                Ok(()) => {
                    // SAFETY: as above; at most one past the end, never read.
                    p = unsafe { p.add(1) };
                    if p as usize >= self.block_limit {
                        break d;
                    }
                }
                Err(s) if s.is_taken() => {
                    if d.target == NO_TARGET {
                        break d;
                    }
                    // A branch to an entry of this block: carry on there.
                    // Going backwards (a loop) is where the outer loop's
                    // checks would have come, so they come here: pending
                    // events and the budget.
                    done += d.cum as u64 - skipped;
                    if d.backward && (self.events.load(Ordering::Acquire) != 0 || self.icount + done >= stop_at) {
                        skipped = d.cum as u64;
                        break d;
                    }
                    skipped = d.target_skip as u64;
                    // SAFETY: `target` is an index into `block.fast`.
                    p = unsafe { start.add(d.target as usize) };
                }
                Err(s) => {
                    // (A fused pair cannot fault: both halves work on
                    // registers; its `end` would be the pair's.)
                    self.eip = base.wrapping_add(d.end as i32 as u32).wrapping_sub(d.len as u32);
                    self.icount += done + (d.cum - d.count as u16) as u64 - skipped;
                    return Err(self.finish_stop(s));
                }
            }
        };
        self.eip = self.next_eip;
        self.icount += done + last.cum as u64 - skipped;
        Ok(last as *const DInsn)
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
        let insns = &block.insns[..];
        if until.is_none() && remaining >= insns.len() as u64 {
            return self.exec_fast(block, 0).map(|_| ());
        }
        self.block_limit = usize::MAX;
        for (n, d) in insns.iter().enumerate() {
            if n as u64 >= remaining || (n > 0 && until == Some(self.eip)) {
                break;
            }
            self.next_eip = self.eip.wrapping_add(d.len as u32);
            match (d.h1)(self, d) {
                Ok(()) => {
                    self.eip = self.next_eip;
                    self.icount += 1;
                    if self.block_limit == 0 {
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

#[cfg(test)]
mod tests {
    //! The fast loop's shortcuts (links between blocks, branches inside a
    //! block, fused pairs) must not change what a run does: the instruction
    //! count stays exact for any budget, and pending events still stop a loop
    //! that never leaves its block.
    use crate::bare::BareCpu;
    use crate::cpu::state::{Exit, EVENT_STOP};
    use std::sync::atomic::Ordering;

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
            events.fetch_or(EVENT_STOP, Ordering::AcqRel);
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
}

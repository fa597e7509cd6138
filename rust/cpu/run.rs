//! The hot loop.
//!
// H:250 This loop is where the guest spends its life.  Per block it does one
// TLB lookup for EIP, one cache lookup for the decoded block, and then calls
// the handlers one after another.  It allocates nothing, takes no lock and
// calls no Python; the only thing it looks at from the outside world is one
// atomic word of event bits, once per block.  Instruction-exact stops (a
// count budget or a stop address) use a slower variant of the inner loop, so
// the common case pays nothing for them.

use std::sync::atomic::Ordering;

use super::decode::{Block, Decoded};
use super::state::{Cpu, Exit, Stop};

impl Cpu {
    /// Run until something needs attention.  `budget` is the number of
    /// instructions allowed (u64::MAX for no limit); `until` an address at
    /// which to stop before executing it.
    pub fn run(&mut self, budget: u64, until: Option<u32>) -> Exit {
        let start = self.icount;
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

    fn stop_exit(&mut self, stop: Stop) -> Exit {
        match stop {
            Stop::Fault(f) => Exit::Fault(f),
            Stop::Int(v) => Exit::Int(v),
            Stop::Hlt => Exit::Hlt,
            Stop::Taken => unreachable!("a taken branch completes inside the block"),
        }
    }

    /// Execute (part of) one block.  On a fault EIP stays on the faulting
    /// instruction; on a software interrupt or hlt it moves past it.
    #[inline(always)]
    fn exec_block(&mut self, block: &Block, remaining: u64, until: Option<u32>) -> Result<(), Stop> {
        self.stop_block = false;
        let exact = until.is_some() || remaining < block.insns.len() as u64;
        if !exact {
            let mut n = 0u64;
            let insns = &block.insns[..];
            let mut k = 0;
            while k < insns.len() {
                let d = &insns[k];
                self.next_eip = self.eip.wrapping_add(d.len as u32);
                match (d.h)(self, d) {
                    Ok(()) => {
                        self.eip = self.next_eip;
                        n += d.count as u64;
                        k += d.count as usize;
                        if self.stop_block {
                            break;
                        }
                    }
                    Err(Stop::Taken) => {
                        self.eip = self.next_eip;
                        n += d.count as u64;
                        break;
                    }
                    Err(s) => {
                        self.icount += n;
                        return Err(self.finish_stop(s));
                    }
                }
            }
            self.icount += n;
            return Ok(());
        }
        for (n, d) in block.insns.iter().enumerate() {
            if n as u64 >= remaining || (n > 0 && until == Some(self.eip)) {
                break;
            }
            self.next_eip = self.eip.wrapping_add(d.len as u32);
            match (d.h1)(self, d) {
                Ok(()) => {
                    self.eip = self.next_eip;
                    self.icount += 1;
                    if self.stop_block {
                        break;
                    }
                }
                Err(Stop::Taken) => {
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
        match s {
            Stop::Int(_) | Stop::Hlt => {
                self.eip = self.next_eip;
                self.icount += 1;
            }
            Stop::Fault(_) | Stop::Taken => {}
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

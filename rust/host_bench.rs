//! Micro-benchmarks of the host's costs, with tiny hand-encoded guests.
//!
//! Exposed to Python as `_core._host_bench(kind, n)` for benches/; each kind
//! runs one guest that repeats one operation `n` times and reports guest
//! instructions and host nanoseconds for the whole run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lguest::{ld, Guest, RunOutcome};
use crate::memory::GuestMemory;

const MEM: u32 = 8 << 20;
const CODE: u32 = 0x0010_0000;
const LGUEST_DATA: u32 = 0x0020_0000;
const STACK: u32 = 0x0018_0000;
const DIR_A: u32 = 0x0030_0000;
const DIR_B: u32 = 0x0030_1000;
const TOUCH: u32 = 0x0040_0000;
const TOUCH_PAGES: u32 = 256;

/// A very small x86 encoder: just the instructions these guests use.
#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn mov(&mut self, reg: u8, imm: u32) -> &mut Self {
        self.0.push(0xb8 + reg);
        self.0.extend(imm.to_le_bytes());
        self
    }
    fn int1f(&mut self) -> &mut Self {
        self.0.extend([0xcd, 0x1f]);
        self
    }
    fn hcall(&mut self, nr: u32, a1: u32) -> &mut Self {
        self.mov(3, a1).mov(0, nr).int1f()
    }
    fn here(&self) -> usize {
        self.0.len()
    }
    /// dec ecx; jnz target
    fn loop_ecx(&mut self, target: usize) -> &mut Self {
        self.0.push(0x49);
        let rel = target as i64 - (self.0.len() as i64 + 6);
        self.0.extend([0x0f, 0x85]);
        self.0.extend((rel as i32).to_le_bytes());
        self
    }
    /// mov eax, [esi]; add esi, 4096
    fn touch_and_advance(&mut self) -> &mut Self {
        self.0.extend([0x8b, 0x06, 0x81, 0xc6]);
        self.0.extend(4096u32.to_le_bytes());
        self
    }
    /// mov byte [addr], imm8
    fn store8(&mut self, addr: u32, v: u8) -> &mut Self {
        self.0.extend([0xc6, 0x05]);
        self.0.extend(addr.to_le_bytes());
        self.0.push(v);
        self
    }
    /// mov dword [addr], imm32
    fn store32(&mut self, addr: u32, v: u32) -> &mut Self {
        self.0.extend([0xc7, 0x05]);
        self.0.extend(addr.to_le_bytes());
        self.0.extend(v.to_le_bytes());
        self
    }
}

const EAX: u8 = 0;
const ECX: u8 = 1;
const EDX: u8 = 2;
const ESP: u8 = 4;
const ESI: u8 = 6;

fn guest(code: &[u8]) -> Guest {
    let mem = Arc::new(GuestMemory::new((MEM + 4096) as usize).expect("bench memory"));
    mem.write_u8(0x1E8, 1).unwrap();
    mem.write_u32(0x2D0 + 8, MEM).unwrap();
    mem.write_u32(0x2D0 + 16, 1).unwrap();
    mem.write(LGUEST_DATA + ld::HCALL_STATUS, &[0xff; 64]).unwrap();
    mem.write_u32(LGUEST_DATA + ld::SYSCALL_VEC, 0x80).unwrap();
    mem.write_u32(LGUEST_DATA + ld::KERNEL_ADDRESS, 0xC000_0000).unwrap();
    // Two page directories that both map the first 8 MiB one to one.
    for dir in [DIR_A, DIR_B] {
        mem.write_u32(dir, 0x0031_0000 | 7).unwrap();
        mem.write_u32(dir + 4, 0x0031_1000 | 7).unwrap();
    }
    for i in 0..2048u32 {
        mem.write_u32(0x0031_0000 + 4 * i, (i << 12) | 7).unwrap();
    }
    mem.write(CODE, code).unwrap();
    let mut g = Guest::new(mem);
    g.initialize(MEM / 4096 + 1, CODE, crate::mmu::PagingMode::TwoLevel).expect("bench guest initializes");
    g
}

fn prologue(e: &mut Enc) {
    e.mov(ESP, STACK).hcall(1, LGUEST_DATA);
}

/// Build the guest for `kind`; it ends with NOTIFY(1).
fn program(kind: &str, n: u32) -> Option<Vec<u8>> {
    let mut e = Enc::default();
    prologue(&mut e);
    e.mov(ECX, n);
    match kind {
        // A synchronous hypercall that does nothing: the cost of leaving the
        // interpreter, dispatching, and coming back.
        "sync_hypercall" => {
            let top = e.here();
            e.mov(EAX, 19).int1f().loop_ecx(top);
        }
        // One queued SEND_INTERRUPTS per iteration in slot 0, and the
        // FLUSH_ASYNC that drains it; compare with sync_hypercall.
        "async_hypercall" => {
            let top = e.here();
            e.store32(LGUEST_DATA + ld::HCALLS, 19).store8(LGUEST_DATA + ld::HCALL_STATUS, 0);
            e.mov(EAX, 0).int1f().loop_ecx(top);
        }
        // NEW_PGTABLE back and forth between two cached directories.
        "pgtable_switch" => {
            e.hcall(4, DIR_A);
            let top = e.here();
            e.hcall(4, DIR_B).hcall(4, DIR_A).loop_ecx(top);
        }
        // Touch 256 fresh pages, then drop every shadow entry: each touch is a
        // TLB miss, a shadow miss and a fill from the guest's tables.
        "shadow_fill" => {
            let top = e.here();
            e.mov(ESI, TOUCH).mov(EDX, TOUCH_PAGES);
            let inner = e.here();
            e.touch_and_advance();
            // dec edx; jnz inner
            e.0.push(0x4a);
            let rel = inner as i64 - (e.0.len() as i64 + 6);
            e.0.extend([0x0f, 0x85]);
            e.0.extend((rel as i32).to_le_bytes());
            e.hcall(5, 1).loop_ecx(top);
        }
        _ => return None,
    }
    e.hcall(17, 1);
    Some(e.0)
}

/// Run benchmark `kind` with `n` repetitions: (guest instructions, host ns,
/// operations).  None for an unknown kind.
pub fn run(kind: &str, n: u32) -> Option<Result<(u64, u64, u64), String>> {
    let code = program(kind, n.max(1))?;
    let mut g = guest(&code);
    let ops = match kind {
        "pgtable_switch" => 2 * n as u64,
        "shadow_fill" => n as u64 * TOUCH_PAGES as u64,
        _ => n as u64,
    };
    let t = Instant::now();
    let out = g.run(Duration::from_secs(60));
    let ns = t.elapsed().as_nanos() as u64;
    Some(match out {
        RunOutcome::Notify(1) => Ok((g.cpu.icount, ns, ops)),
        other => Err(format!("benchmark guest ended with {other:?} ({:?})", g.death)),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_runs_to_its_notify() {
        for kind in ["sync_hypercall", "async_hypercall", "pgtable_switch", "shadow_fill"] {
            let (insns, _, ops) = super::run(kind, 3).unwrap().unwrap();
            assert!(insns > 10 && ops >= 3, "{kind}");
        }
        assert!(super::run("nope", 1).is_none());
    }
}

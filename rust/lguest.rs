//! One guest: what an open /dev/lguest was in the original.
//!
// H:900 The Launcher talks to the host through a handful of requests:
// INITIALIZE (here is the memory, the limit and the entry point), IRQ (raise
// this interrupt), EVENTFD (signal this eventfd when the guest notifies this
// address) and "read", which runs the guest until it has something to say.
// This file is that object, minus Python: `crate::py` wraps it.
//
// The run loop below is the heart of the host side, in the same order as the
// original's: do the pending hypercall, hand a notification to its eventfd or
// to the Launcher, deliver an interrupt if one is due, sleep if the guest is
// halted, and otherwise enter the guest until it exits again.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cpu::mem::Mmu;
use crate::cpu::state::{Cpu, Exit, Fault, SegReg, EVENT_DMA, EVENT_IRQ, EVENT_STOP};
use crate::interrupts::IdtEntry;
use crate::memory::GuestMemory;
use crate::mmu::{Paging, PagingMode, KILL_VECTOR};
use crate::notify::NotifyMap;
use crate::segments;

/// Offsets inside `struct lguest_data` (2.6.32, i386).
pub mod ld {
    pub const IRQ_ENABLED: u32 = 0x000;
    pub const BLOCKED_INTERRUPTS: u32 = 0x004;
    pub const CR2: u32 = 0x008;
    pub const TIME: u32 = 0x00C;
    pub const IRQ_PENDING: u32 = 0x014;
    pub const HCALL_STATUS: u32 = 0x018;
    pub const HCALLS: u32 = 0x058;
    pub const RESERVE_MEM: u32 = 0x558;
    pub const TSC_KHZ: u32 = 0x55C;
    pub const PGDIR: u32 = 0x560;
    pub const NOIRQ_START: u32 = 0x564;
    pub const NOIRQ_END: u32 = 0x568;
    pub const KERNEL_ADDRESS: u32 = 0x56C;
    pub const SYSCALL_VEC: u32 = 0x570;
    pub const SIZE: u32 = 0x574;
}

pub const LGUEST_IRQS: u32 = 32;
pub const ERESTART: i32 = 85;
/// The TSC we present runs at exactly 1 GHz (it counts nanoseconds).
pub const TSC_KHZ: u32 = 1_000_000;
/// Instructions per slice of guest execution.  Between slices the host
/// checks its timer and, when the caller asks, returns so Python can see
/// signals; it bounds how late an interrupt the guest could not take can be.
pub const SLICE: u64 = 200_000;

/// How a guest ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Death {
    Reason(String),
    Restart,
}

/// What one call of `run` produced.
#[derive(Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The guest notified an address no eventfd claims.
    Notify(u32),
    /// The guest died during this call (read `death` for why).
    Died,
    /// The time slice the caller asked for is over (check for signals).
    Yield,
    /// Another thread called `Shared::interrupt`.
    Interrupted,
}

// P:040 Who runs where.  A running guest keeps several host threads busy,
// and it helps to know which before reading on.  The thread that called
// `Lguest.run` in Python is the guest's processor (the vCPU): it owns the
// whole `Guest` below and runs the interpreter with the GIL released
// (H:1295).  Each virtqueue of each device has a thread of its own in the
// Launcher (L:213), which mostly sleeps on an eventfd until the guest
// kicks its queue, and reads and writes guest memory directly.  Those
// threads never touch the `Guest`: what they may touch is this struct
// (raise an interrupt, stop the guest, report a write), the NOTIFY map
// (H:1200) and the memory itself.
/// State other threads touch: pending interrupts and the wake-up for a
/// halted vCPU.  Everything here is lock-free except the condition variable
/// a halted vCPU sleeps on.
pub struct Shared {
    pub irqs: AtomicU32,
    pub events: Arc<crate::cpu::state::Events>,
    sleep: Mutex<()>,
    wake: Condvar,
    /// Guest-physical ranges devices wrote since the vCPU last looked.
    dma: Mutex<Vec<(u32, u32)>>,
    /// Set by `interrupt`; the run loop returns `Interrupted` and clears it.
    stop: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// H:910 Raise an interrupt from any thread: set its bit, then make sure
    /// the vCPU notices, whether it is running (an event bit it checks at the
    /// next block boundary, H:257) or halted (the condition variable it
    /// sleeps on, H:950).  Delivery is the vCPU's job (H:1040).
    pub fn raise_irq(&self, irq: u32) {
        self.irqs.fetch_or(1 << irq, Ordering::AcqRel);
        self.events.raise(EVENT_IRQ);
        let _g = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
        self.wake.notify_all();
    }

    /// H:912 Stop a running (or halted) guest from any thread: the current
    /// `run` returns `Interrupted` at its next block boundary, with the guest
    /// intact.  Device threads use it to stop a guest that broke its
    /// virtqueue; the embedding API uses it for timeouts.
    pub fn interrupt(&self) {
        self.stop.store(true, Ordering::Release);
        self.events.raise(EVENT_STOP);
        let _g = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
        self.wake.notify_all();
    }

    /// H:915 A device thread wrote guest memory.  If the guest had code on
    /// those pages (a block read into a page that used to hold a program, say),
    /// the interpreter's decoded copy is stale.  The device records the range
    /// and raises an event; the vCPU drops those pages' blocks at its next
    /// block boundary, before it can jump into the new bytes.  The device does
    /// this before it publishes the used ring entry, so the guest cannot see
    /// the data before the vCPU has heard about it.
    pub fn note_dma(&self, gpa: u32, len: u32) {
        if len == 0 {
            return;
        }
        self.dma.lock().unwrap_or_else(|e| e.into_inner()).push((gpa, len));
        self.events.raise(EVENT_DMA);
    }
}

// M:150 Exercise: two processors.  lguest guests were uniprocessor, and so
// is this one: one `Cpu`, one `Guest`, one thread running it.  An SMP
// guest needs the fields below split into what each vCPU owns (the
// registers, `pending_hcall`, `halted`, the kernel stack from SET_STACK,
// its TLB) and what they share (memory, the IDT and GDT, the shadow page
// tables, lguest_data's interrupt bits), a second thread in `Lguest.run`,
// and an answer to the hard question: what does SET_PTE do to the other
// processor's TLB while it runs?
pub struct Guest {
    pub cpu: Cpu,
    pub mem: Arc<GuestMemory>,
    pub shared: Arc<Shared>,
    pub notify: Arc<NotifyMap>,
    pub initialized: bool,
    pub death: Option<Death>,
    /// GPA of lguest_data once LGUEST_INIT ran.
    pub lguest_data: Option<u32>,
    pub pending_hcall: Option<[u32; 5]>,
    pub pending_notify: u32,
    pub next_hcall: u32,
    pub noirq_start: u32,
    pub noirq_end: u32,
    pub kernel_address: u32,
    pub idt: Box<[IdtEntry; 256]>,
    pub ss1: u32,
    pub esp1: u32,
    pub stack_pages: u32,
    pub halted: bool,
    pub clock_deadline: Option<Instant>,
    /// Alternative system-call vector the host accepts (lguest's module
    /// parameter; 0x80 as in Linux by default).
    pub syscall_vector: u32,
    /// The vCPU's caching reader of the NOTIFY map, held only while `run`
    /// runs (H:1262).
    #[cfg(not(loom))]
    notify_reader: Option<crate::notify::NotifyReader>,
}

impl Guest {
    pub fn new(mem: Arc<GuestMemory>) -> Self {
        let cpu = Cpu::new(Mmu::Paged(Paging::new(mem.clone(), 0)));
        let shared = Arc::new(Shared {
            irqs: AtomicU32::new(0),
            events: cpu.events.clone(),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            dma: Mutex::new(Vec::new()),
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        Guest {
            cpu,
            mem,
            shared,
            notify: Arc::new(NotifyMap::new()),
            initialized: false,
            death: None,
            lguest_data: None,
            pending_hcall: None,
            pending_notify: 0,
            next_hcall: 0,
            noirq_start: 0,
            noirq_end: 0,
            kernel_address: 0,
            idt: Box::new([IdtEntry::default(); 256]),
            ss1: 0,
            esp1: 0,
            stack_pages: 0,
            halted: false,
            clock_deadline: None,
            syscall_vector: 0x80,
            #[cfg(not(loom))]
            notify_reader: None,
        }
    }

    /// H:920 kill_guest: remember the first reason; the guest never runs again.
    pub fn kill(&mut self, why: impl Into<String>) {
        if self.death.is_none() {
            self.death = Some(Death::Reason(why.into()));
        }
    }

    pub fn paging(&mut self) -> &mut Paging {
        match &mut self.cpu.mmu {
            Mmu::Paged(p) => p,
            Mmu::Bare(_) => unreachable!("an lguest guest always has paging"),
        }
    }

    /// H:930 LHREQ_INITIALIZE.  The Launcher has written boot_params
    /// (L:145); from the memory size and ramdisk size in it we build the
    /// guest's first page tables (H:530), then the GDT (H:810) and the
    /// registers the guest starts with (G:100): ring 1, flat segments,
    /// EFLAGS 0x202, EIP at the kernel's entry point and everything else
    /// zero.  `mode` says which page-table layout the guest kernel was
    /// built for: the original host was compiled for one, we are told
    /// (H:592), and the guest cannot ask.
    pub fn initialize(&mut self, pfn_limit: u32, start: u32, mode: PagingMode) -> Result<(), String> {
        let limit = (pfn_limit as u64) * 4096;
        if limit == 0 || limit > self.mem.len() as u64 {
            return Err(format!("pfn_limit {pfn_limit:#x} is outside the guest's {} bytes of memory", self.mem.len()));
        }
        self.mem.set_limit(limit as u32);
        let pgdir = crate::mmu::setup_initial_pagetables(&self.mem, mode)?;
        self.paging().reset(mode, pgdir);
        let cpu = &mut self.cpu;
        segments::setup_initial_gdt(cpu);
        cpu.set_cpl(1);
        let cs = crate::cpu::state::Segment::from_descriptor(segments::KERNEL_CS, cpu.gdt[segments::GDT_ENTRY_KERNEL_CS]);
        let ds = crate::cpu::state::Segment::from_descriptor(segments::KERNEL_DS, cpu.gdt[segments::GDT_ENTRY_KERNEL_DS]);
        cpu.segs[SegReg::Cs as usize] = cs;
        cpu.segs[SegReg::Ds as usize] = ds;
        cpu.segs[SegReg::Es as usize] = ds;
        cpu.segs[SegReg::Ss as usize] = ds;
        let null = crate::cpu::state::Segment::default();
        cpu.segs[SegReg::Fs as usize] = null;
        cpu.segs[SegReg::Gs as usize] = null;
        cpu.regs = [0; 8];
        cpu.eip = start;
        cpu.set_eflags(0x202);
        cpu.tsc_clock = Some(Instant::now());
        self.initialized = true;
        Ok(())
    }

    /// Read a word of lguest_data (None if not registered or out of range).
    pub fn ld_read(&self, off: u32) -> Option<u32> {
        let base = self.lguest_data?;
        self.mem.read_u32(base.wrapping_add(off)).ok()
    }

    /// Write a word of lguest_data; a bad address kills with `why`.
    pub fn ld_write(&mut self, off: u32, v: u32, why: &str) {
        if let Some(base) = self.lguest_data {
            if self.mem.write_u32(base.wrapping_add(off), v).is_err() {
                self.kill(why);
            }
        }
    }

    pub fn write_timestamp(&mut self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.ld_write(ld::TIME, now.as_secs() as u32, "Writing timestamp");
        self.ld_write(ld::TIME + 4, now.subsec_nanos(), "Writing timestamp");
    }

    /// H:940 The run loop ("read" on /dev/lguest).  `slice` bounds how long
    /// this call may run before returning `Yield`, so that the caller can look
    /// for signals (Ctrl-C) without the interpreter ever calling Python.
    ///
    /// Every stop of the guest comes back through here, so every path of
    /// the tour crosses it: a hypercall the interpreter left pending
    /// (H:1110), a notification to hand on (H:1290), device writes to
    /// forget (H:915), an interrupt to deliver (H:1040), a halted guest to
    /// put to sleep (H:950), and otherwise the interpreter (H:250), whose
    /// exit is sorted out by `handle_exit` (H:960).
    pub fn run(&mut self, slice: Duration) -> RunOutcome {
        let out = self.run_slice(slice);
        // Not running any more: let writers of the NOTIFY map finish their
        // grace period without waiting for us (H:1262).
        #[cfg(not(loom))]
        {
            self.notify_reader = None;
        }
        out
    }

    /// Signal the eventfd attached to a NOTIFY address, if any.
    #[inline]
    fn signal_eventfd(&mut self, addr: u32) -> bool {
        #[cfg(not(loom))]
        {
            let notify = &self.notify;
            self.notify_reader.get_or_insert_with(|| notify.reader()).signal(addr)
        }
        #[cfg(loom)]
        {
            self.notify.signal(addr)
        }
    }

    fn run_slice(&mut self, slice: Duration) -> RunOutcome {
        let started = Instant::now();
        loop {
            // A quiet moment for the NOTIFY map's cached reader (H:1262).
            #[cfg(not(loom))]
            if let Some(r) = &mut self.notify_reader {
                r.refresh();
            }
            if self.death.is_some() {
                return RunOutcome::Died;
            }
            if let Some(args) = self.pending_hcall {
                crate::hypercalls::do_hypercalls(self, args);
            }
            if self.pending_notify != 0 {
                // H:1290 Every notification leaves here exactly once: either
                // an eventfd claims it (H:1205), or it goes back to the
                // Launcher (L:150).  The
                // original cleared a returned notification at the start of
                // the next read; we clear it as we hand it over, which is the
                // same for the guest and means a run cut short by Ctrl-C (a
                // `Yield`) can never see it twice.
                let addr = self.pending_notify;
                self.pending_notify = 0;
                if !self.signal_eventfd(addr) {
                    return RunOutcome::Notify(addr);
                }
            }
            if self.death.is_some() {
                return RunOutcome::Died;
            }
            if started.elapsed() >= slice {
                return RunOutcome::Yield;
            }
            if self.shared.stop.swap(false, Ordering::AcqRel) {
                self.cpu.events.take(EVENT_STOP);
                return RunOutcome::Interrupted;
            }
            self.check_timer();
            // Consume the "look at interrupts" event before we look.
            let ev = self.cpu.events.take(EVENT_IRQ | EVENT_DMA);
            if ev & EVENT_DMA != 0 {
                self.drop_dma_code();
            }
            crate::interrupts::try_deliver(self);
            if self.death.is_some() {
                return RunOutcome::Died;
            }
            if self.halted {
                // Sleeping is a quiet moment too: no writer should wait on us.
                #[cfg(not(loom))]
                {
                    self.notify_reader = None;
                }
                self.sleep_while_halted(started, slice);
                continue;
            }
            let exit = self.cpu.run(SLICE, None);
            self.handle_exit(exit);
        }
    }

    fn drop_dma_code(&mut self) {
        let ranges = std::mem::take(&mut *self.shared.dma.lock().unwrap_or_else(|e| e.into_inner()));
        for (gpa, len) in ranges {
            let first = gpa & !0xfff;
            let last = gpa.saturating_add(len - 1) & !0xfff;
            let mut p = first;
            loop {
                if self.cpu.cache.is_code_page(p) {
                    self.cpu.cache.invalidate_page(p);
                }
                if p >= last {
                    break;
                }
                p += 4096;
            }
        }
    }

    fn check_timer(&mut self) {
        if let Some(d) = self.clock_deadline {
            if Instant::now() >= d {
                self.clock_deadline = None;
                self.shared.irqs.fetch_or(1, Ordering::AcqRel);
            }
        }
    }

    /// Whether an interrupt is pending that the guest has not masked.
    fn unblocked_pending(&self) -> bool {
        let pending = self.shared.irqs.load(Ordering::Acquire);
        let blocked = self.ld_read(ld::BLOCKED_INTERRUPTS).unwrap_or(u32::MAX);
        pending & !blocked != 0
    }

    /// H:950 HALT: sleep until an unmasked interrupt is pending, the guest's
    /// timer fires, or the caller's slice ends.
    fn sleep_while_halted(&mut self, started: Instant, slice: Duration) {
        let mut guard = self.shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.unblocked_pending() || self.shared.stop.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            if let Some(d) = self.clock_deadline {
                if now >= d {
                    return;
                }
            }
            let slice_end = started + slice;
            if now >= slice_end {
                return;
            }
            let mut until = slice_end;
            if let Some(d) = self.clock_deadline {
                until = until.min(d);
            }
            let (g, _) = self
                .shared
                .wake
                .wait_timeout(guard, until.saturating_duration_since(now))
                .unwrap_or_else(|e| e.into_inner());
            guard = g;
        }
    }

    /// H:960 Something stopped the interpreter: decide what it means.
    fn handle_exit(&mut self, exit: Exit) {
        match exit {
            Exit::Count | Exit::Address | Exit::Event => {}
            Exit::Hlt => self.kill("hlt at ring 0"),
            Exit::Int(v) => crate::interrupts::software_interrupt(self, v),
            Exit::Fault(f) => self.fault(f),
        }
    }

    // H:965 A fault the interpreter could not handle, sorted the way the
    // original host sorted a trap out of the guest.  Most are the guest's
    // own business and go back into it through its IDT (H:1020): a page
    // fault the shadow could not fix (H:570) is one, after its address goes
    // into lguest_data.cr2, since the guest cannot read a real CR2.  A few
    // are ours: a #GP from port I/O is emulated (H:1050), the #UD of a
    // `vmcall` (H:605) is rewritten into a hypercall (H:970), a #NM with TS
    // clear is spurious, and the pseudo-vector of a bad page table kills
    // the guest.  Unless an instruction was emulated, EIP still points at
    // the faulting instruction, which either runs again or is where the
    // guest's handler will return to.
    fn fault(&mut self, f: Fault) {
        if f.vector == KILL_VECTOR {
            let why = self.paging().death.take().unwrap_or_else(|| "bad page table entry".into());
            self.kill(why);
            return;
        }
        let cpl = self.cpu.cpl();
        match f.vector {
            13 if f.error == Some(0) && cpl == 1 && crate::interrupts::emulate_insn(self) => {}
            6 | 13 if cpl == 1 && self.is_vmcall_at_eip() => self.rewrite_vmcall(),
            7 if !self.cpu.ts => {}
            14 => {
                if self.lguest_data.is_some() {
                    self.ld_write(ld::CR2, f.addr, "Writing cr2");
                }
                crate::interrupts::reflect(self, 14, f.error, f.addr);
            }
            v => crate::interrupts::reflect(self, v as u32, f.error, f.addr),
        }
    }

    /// Read guest code bytes at a virtual address, through the guest's page
    /// tables, without permission checks (the host's own walk).
    pub fn read_gva(&mut self, gva: u32, out: &mut [u8]) -> Result<(), String> {
        for (k, b) in out.iter_mut().enumerate() {
            let a = gva.wrapping_add(k as u32);
            let gpa = self.paging().gva_to_gpa(a)?;
            *b = self.mem.read_u8(gpa).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn is_vmcall_at_eip(&mut self) -> bool {
        let lin = self.cpu.lin(SegReg::Cs, self.cpu.eip);
        let mut b = [0u8; 3];
        self.read_gva(lin, &mut b).is_ok() && b == [0x0f, 0x01, 0xc1]
    }

    /// H:970 The 2.6.32 guest makes hypercalls with `vmcall`, which faults on
    /// a processor without VT.  The first time each call site faults, the host
    /// patches it into `int $0x1f; nop` in guest memory and lets the guest
    /// retry: from then on that site traps straight into the hypercall path
    /// (H:370, then H:1030).  Writing guest code behind the interpreter's
    /// back means dropping the decoded blocks of that page before the guest
    /// retries.
    fn rewrite_vmcall(&mut self) {
        let lin = self.cpu.lin(SegReg::Cs, self.cpu.eip);
        for (k, byte) in [0xcdu8, 0x1f, 0x90].into_iter().enumerate() {
            let gva = lin.wrapping_add(k as u32);
            match self.paging().gva_to_gpa(gva) {
                Ok(gpa) => {
                    if let Err(e) = self.mem.write_u8(gpa, byte) {
                        self.kill(e.to_string());
                        return;
                    }
                    self.cpu.cache.invalidate_page(gpa);
                }
                Err(e) => {
                    self.kill(e);
                    return;
                }
            }
        }
        crate::mmu::full_flush(self);
    }

}

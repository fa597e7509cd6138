//! Hypercalls: the guest's requests to the host.
//!
// H:1100 A hypercall is `int $0x1f` (or, in 2.6.32 guests, a `vmcall` that
// the host rewrites into one) with the call number in EAX and up to four
// arguments in EBX, ECX, EDX and ESI.  There is no return value: a bad call
// kills the guest.  Calls that can wait (page-table updates during a context
// switch, say) are queued by the guest in a ring inside lguest_data and run
// in a batch before the next synchronous call.

use crate::lguest::{ld, Death, Guest};

pub const LHCALL_FLUSH_ASYNC: u32 = 0;
pub const LHCALL_LGUEST_INIT: u32 = 1;
pub const LHCALL_SHUTDOWN: u32 = 2;
pub const LHCALL_NEW_PGTABLE: u32 = 4;
pub const LHCALL_FLUSH_TLB: u32 = 5;
pub const LHCALL_LOAD_IDT_ENTRY: u32 = 6;
pub const LHCALL_SET_STACK: u32 = 7;
pub const LHCALL_TS: u32 = 8;
pub const LHCALL_SET_CLOCKEVENT: u32 = 9;
pub const LHCALL_HALT: u32 = 10;
/// PAE guests only: a page-directory (middle-level) entry changed.
pub const LHCALL_SET_PMD: u32 = 13;
pub const LHCALL_SET_PTE: u32 = 14;
pub const LHCALL_SET_PGD: u32 = 15;
pub const LHCALL_LOAD_TLS: u32 = 16;
pub const LHCALL_NOTIFY: u32 = 17;
pub const LHCALL_LOAD_GDT_ENTRY: u32 = 18;
pub const LHCALL_SEND_INTERRUPTS: u32 = 19;

pub const LGUEST_SHUTDOWN_RESTART: u32 = 2;
pub const ASYNC_SLOTS: u32 = 64;

/// H:1110 Run the pending synchronous hypercall, after the queued ones.
/// The interpreter left it in `pending_hcall` when the guest's `int $0x1f`
/// stopped it (H:1030), and the run loop calls us before it lets the guest
/// go on (H:940).  The very first call must be LGUEST_INIT: until the guest
/// has told us where lguest_data is, there is no ring to drain and no
/// interrupt state to read.
pub fn do_hypercalls(g: &mut Guest, args: [u32; 5]) {
    if g.lguest_data.is_none() {
        if args[0] != LHCALL_LGUEST_INIT {
            g.kill(format!("hypercall {} before INIT", args[0]));
        } else {
            initialize_lguest_data(g, args[1]);
        }
        g.pending_hcall = None;
        return;
    }
    do_async_hypercalls(g);
    if g.pending_notify != 0 {
        // The Launcher must see this notification first; the synchronous
        // call runs on the next pass.
        return;
    }
    do_hcall(g, args);
    g.pending_hcall = None;
}

/// H:1120 LGUEST_INIT: the guest tells us where its lguest_data is (G:111).
/// We fill in what the host provides and read what the guest fixed at
/// build time (G:112).  From here on the guest may make any hypercall, and
/// interrupts can be delivered; it goes on to its C code (G:150).
fn initialize_lguest_data(g: &mut Guest, addr: u32) {
    if !g.mem.check(addr, ld::SIZE) {
        g.kill(format!("bad guest page {addr:#x}"));
        return;
    }
    g.lguest_data = Some(addr);
    g.ld_write(ld::TSC_KHZ, crate::lguest::TSC_KHZ, "bad guest page");
    let vec = g.ld_read(ld::SYSCALL_VEC).unwrap_or(0);
    if vec != 0x80 && vec != g.syscall_vector {
        g.kill("bad syscall vector");
        return;
    }
    g.noirq_start = g.ld_read(ld::NOIRQ_START).unwrap_or(0);
    g.noirq_end = g.ld_read(ld::NOIRQ_END).unwrap_or(0);
    g.write_timestamp();
    g.kernel_address = g.ld_read(ld::KERNEL_ADDRESS).unwrap_or(0);
    // The reserved top is 4 MiB with 2-level tables and 2 MiB with PAE
    // (H:592); the kernel part must begin below it.
    let mode = g.paging().mode();
    g.ld_write(ld::RESERVE_MEM, mode.reserve_mem(), "bad guest page");
    let pgdir = g.paging().cr3();
    g.ld_write(ld::PGDIR, pgdir, "bad guest page");
    if g.kernel_address >= mode.switcher_base() {
        let k = g.kernel_address;
        g.kill(format!("bad kernel address {k:#x}"));
        return;
    }
    let k = g.kernel_address;
    g.paging().shadows.set_kernel_address(k);
    crate::mmu::full_flush(g);
}

/// H:1130 Drain the asynchronous ring, in order, stopping at the first empty
/// slot or after a NOTIFY (which the Launcher must see before anything else).
fn do_async_hypercalls(g: &mut Guest) {
    let base = match g.lguest_data {
        Some(b) => b,
        None => return,
    };
    let mut status = [0u8; ASYNC_SLOTS as usize];
    if g.mem.read(base + ld::HCALL_STATUS, &mut status).is_err() {
        return;
    }
    for _ in 0..ASYNC_SLOTS {
        let n = g.next_hcall;
        if status[n as usize] == 0xff {
            break;
        }
        g.next_hcall = (n + 1) % ASYNC_SLOTS;
        let mut raw = [0u8; 20];
        if g.mem.read(base + ld::HCALLS + n * 20, &mut raw).is_err() {
            g.kill("Fetching async hypercalls");
            break;
        }
        let mut args = [0u32; 5];
        for (k, a) in args.iter_mut().enumerate() {
            *a = u32::from_le_bytes([raw[4 * k], raw[4 * k + 1], raw[4 * k + 2], raw[4 * k + 3]]);
        }
        do_hcall(g, args);
        if g.mem.write_u8(base + ld::HCALL_STATUS + n, 0xff).is_err() {
            g.kill("Writing result for async hypercall");
            break;
        }
        if g.pending_notify != 0 || g.death.is_some() {
            break;
        }
    }
}

/// H:1140 One hypercall, synchronous or queued.  Most are done on the
/// spot.  Two only leave a note for the run loop, because what they ask
/// for must happen outside the hypercall: NOTIFY keeps the address for the
/// run loop to hand on (H:1290), and HALT marks the guest halted so that
/// the loop puts it to sleep (H:950).
pub fn do_hcall(g: &mut Guest, a: [u32; 5]) {
    match a[0] {
        LHCALL_FLUSH_ASYNC | LHCALL_SEND_INTERRUPTS => {}
        LHCALL_LGUEST_INIT => g.kill("already have lguest_data"),
        LHCALL_SHUTDOWN => shutdown(g, a[1], a[2]),
        LHCALL_NEW_PGTABLE => new_pgtable(g, a[1]),
        LHCALL_FLUSH_TLB => {
            if a[1] == 0 {
                g.paging().shadows.flush_user();
                g.cpu.tlb.flush();
            } else {
                crate::mmu::full_flush(g);
            }
        }
        LHCALL_LOAD_IDT_ENTRY => crate::interrupts::load_idt_entry(g, a[1], a[2], a[3]),
        LHCALL_SET_STACK => set_stack(g, a[1], a[2], a[3]),
        LHCALL_TS => g.cpu.ts = a[1] != 0,
        LHCALL_SET_CLOCKEVENT => {
            g.clock_deadline = if a[1] == 0 {
                None
            } else {
                Some(std::time::Instant::now() + std::time::Duration::from_nanos(a[1] as u64))
            };
        }
        LHCALL_HALT => g.halted = true,
        LHCALL_SET_PTE => set_pte(g, a[1], a[2], a[3], a[4]),
        LHCALL_SET_PGD => {
            g.paging().shadows.set_pgd(a[1], a[2]);
            g.cpu.tlb.flush();
        }
        // A PAE guest changed a middle-level entry: lguest threw every
        // shadow away rather than track which ones used it.  A 2-level
        // guest has no middle level, and this number is a bad hypercall.
        LHCALL_SET_PMD if g.paging().is_pae() => crate::mmu::full_flush(g),
        LHCALL_LOAD_TLS => load_tls(g, a[1]),
        LHCALL_NOTIFY => g.pending_notify = a[1],
        LHCALL_LOAD_GDT_ENTRY => {
            if a[1] >= crate::segments::GDT_ENTRIES {
                g.kill(format!("too many gdt entries {}", a[1] as i32));
                return;
            }
            crate::segments::load_gdt_entry(&mut g.cpu, a[1] as usize, a[2], a[3]);
            refresh(g);
        }
        // M:140 Exercise: add a hypercall.  Pick a free number (3, 11, 12
        // and 20 up are unused; 13 is SET_PMD for PAE guests), give it an
        // arm above, and call it from the demo guest with hcall() (G:114);
        // rust/host_tests.rs shows how to test it with a few guest
        // instructions assembled in Rust, without the demo guest.  Until
        // then an unknown number lands here and the guest dies, because
        // there is no way to return an error to it.  Then ask whether it
        // should be queued in the asynchronous ring (H:1130) or must be
        // synchronous.
        n => g.kill(format!("Bad hypercall {}", n as i32)),
    }
}

fn refresh(g: &mut Guest) {
    if let Err(e) = crate::segments::refresh_segments(&mut g.cpu) {
        g.kill(e);
    }
}

/// H:1150 SHUTDOWN: the guest's last words (power off, reboot or panic),
/// at most 127 bytes of them, from G:130.  Like every death it only records
/// a reason (H:920); the run loop sees it before it would run the guest
/// again and returns `Died` (H:940), and the Launcher turns the reason into
/// an exit (L:170).  "CRASH: " is the original's prefix for every
/// guest-requested death, a clean power-off included.
fn shutdown(g: &mut Guest, addr: u32, reason: u32) {
    let mut msg = [0u8; 128];
    if let Err(e) = g.mem.read(addr, &mut msg) {
        g.kill(e.to_string());
    } else {
        msg[127] = 0;
        let end = msg.iter().position(|&b| b == 0).unwrap_or(127);
        let text = String::from_utf8_lossy(&msg[..end]).into_owned();
        g.kill(format!("CRASH: {text}"));
    }
    if reason == LGUEST_SHUTDOWN_RESTART {
        g.death = Some(Death::Restart);
    }
}

fn set_stack(g: &mut Guest, ss: u32, esp: u32, pages: u32) {
    if ss & 3 != 1 {
        g.kill(format!("bad stack segment {}", ss as i32));
        return;
    }
    if pages > 2 {
        g.kill(format!("bad stack pages {pages}"));
        return;
    }
    g.ss1 = ss;
    g.esp1 = esp;
    g.stack_pages = pages;
    pin_stack_pages(g);
}

/// H:1160 The kernel stack must be mapped and writable whenever the guest
/// runs: on real hardware a trap from user space lands on it and the
/// processor cannot take a page fault there.  So after anything that could
/// unmap it, the host faults it straight back in (setting its accessed and
/// dirty bits) or kills a guest whose stack is not really there.
pub fn pin_stack_pages(g: &mut Guest) {
    for i in 0..g.stack_pages {
        let p = g.esp1.wrapping_sub(1).wrapping_sub(i * 4096);
        let mem = g.mem.clone();
        let shadows = &mut g.paging().shadows;
        if shadows.maps_writable(p) {
            continue;
        }
        match shadows.demand_page(&mem, p, 2) {
            crate::mmu::Fixup::Fixed => {}
            crate::mmu::Fixup::NotFixed => {
                g.kill(format!("bad stack page {p:#x}"));
                return;
            }
            crate::mmu::Fixup::Kill(why) => {
                g.kill(why);
                return;
            }
        }
    }
}

/// H:1170 NEW_PGTABLE: the guest loaded CR3.
fn new_pgtable(g: &mut Guest, top: u32) {
    let blank = g.paging().shadows.switch_to(top);
    g.cpu.tlb.flush();
    if blank {
        pin_stack_pages(g);
    }
}

/// SET_PTE: the fourth argument is a PAE entry's high word.
fn set_pte(g: &mut Guest, top: u32, va: u32, lo: u32, hi: u32) {
    let mem = g.mem.clone();
    if let Err(why) = g.paging().shadows.set_pte(&mem, top, va, lo, hi) {
        g.kill(why);
        return;
    }
    g.cpu.tlb.flush_page(va);
}

fn load_tls(g: &mut Guest, addr: u32) {
    let mut raw = [0u8; 24];
    if let Err(e) = g.mem.read(addr, &mut raw) {
        g.kill(e.to_string());
        return;
    }
    for k in 0..3 {
        let w = |o: usize| u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
        let (lo, hi) = (w(8 * k), w(8 * k + 4));
        crate::segments::load_gdt_entry(&mut g.cpu, crate::segments::GDT_ENTRY_TLS_MIN + k, lo, hi);
    }
    refresh(g);
}

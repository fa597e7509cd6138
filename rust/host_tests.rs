//! Tests of the lguest host core with small guests written in Rust.
//!
//! Each test assembles a few instructions with iced-x86's code assembler,
//! puts them at 1 MiB in a 4 MiB guest as the Launcher would place a kernel,
//! runs the guest through `Guest::run`, and checks what the host did: the
//! notification it reported, the reason it killed the guest for, what it
//! wrote into lguest_data or onto the guest's stack.

use std::sync::Arc;
use std::time::Duration;

use iced_x86::code_asm::*;

use crate::lguest::{ld, Death, Guest, RunOutcome};
use crate::memory::GuestMemory;
use crate::mmu::PagingMode;

const MEM: u32 = 4 << 20;
const CODE: u32 = 0x0010_0000;
const HANDLERS: u32 = 0x0011_0000;
const LGUEST_DATA: u32 = 0x0020_0000;
const STACK_TOP: u32 = 0x0018_0000;
const SCRATCH: u32 = 0x0019_0000;

type Asm = CodeAssembler;
/// A guest program and the death reason it must produce.
type DeathCase = (Box<dyn Fn(&mut Asm) -> Result<(), IcedError>>, &'static str);

fn asm_at(addr: u32, f: impl FnOnce(&mut Asm) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(32).unwrap();
    f(&mut a).unwrap();
    a.assemble(addr as u64).unwrap()
}

/// A guest with `main` at CODE and optional handler code at HANDLERS.
fn guest(main: impl FnOnce(&mut Asm) -> Result<(), IcedError>, handlers: Option<Vec<u8>>) -> Guest {
    guest_in(PagingMode::TwoLevel, main, handlers)
}

/// The same, with the page-table layout chosen.
fn guest_in(mode: PagingMode, main: impl FnOnce(&mut Asm) -> Result<(), IcedError>, handlers: Option<Vec<u8>>) -> Guest {
    let mem = Arc::new(GuestMemory::new((MEM + 4096) as usize).unwrap());
    // boot_params: one e820 entry of MEM bytes, no ramdisk.
    mem.write_u8(0x1E8, 1).unwrap();
    mem.write_u32(0x2D0 + 8, MEM).unwrap();
    mem.write_u32(0x2D0 + 16, 1).unwrap();
    // lguest_data as a guest image would have it.
    mem.write(LGUEST_DATA + ld::HCALL_STATUS, &[0xff; 64]).unwrap();
    mem.write_u32(LGUEST_DATA + ld::SYSCALL_VEC, 0x80).unwrap();
    mem.write_u32(LGUEST_DATA + ld::KERNEL_ADDRESS, 0xC000_0000).unwrap();
    mem.write(CODE, &asm_at(CODE, main)).unwrap();
    if let Some(h) = handlers {
        mem.write(HANDLERS, &h).unwrap();
    }
    let mut g = Guest::new(mem);
    g.initialize(MEM / 4096 + 1, CODE, mode).unwrap();
    g
}

fn hcall(a: &mut Asm, nr: u32, args: &[u32]) -> Result<(), IcedError> {
    let regs = [ebx, ecx, edx, esi];
    for (r, v) in regs.iter().zip(args) {
        a.mov(*r, *v)?;
    }
    a.mov(eax, nr)?;
    a.int(0x1f)
}

fn init(a: &mut Asm) -> Result<(), IcedError> {
    a.mov(esp, STACK_TOP)?;
    hcall(a, 1, &[LGUEST_DATA])
}

fn notify(a: &mut Asm, v: u32) -> Result<(), IcedError> {
    hcall(a, 17, &[v])
}

fn run(g: &mut Guest) -> RunOutcome {
    g.run(Duration::from_secs(5))
}

fn death(g: &mut Guest) -> String {
    assert_eq!(run(g), RunOutcome::Died);
    match g.death.clone().unwrap() {
        Death::Reason(r) => r,
        Death::Restart => "restart".into(),
    }
}

/// Gate words for a handler at `h`: type 0xE (interrupt) or 0xF (trap).
fn gate(h: u32, ty: u32, dpl: u32) -> (u32, u32) {
    ((0x61 << 16) | (h & 0xffff), (h & 0xffff_0000) | 0x8000 | (dpl << 13) | (ty << 8))
}

fn load_idt(a: &mut Asm, vec: u32, h: u32, ty: u32, dpl: u32) -> Result<(), IcedError> {
    let (lo, hi) = gate(h, ty, dpl);
    hcall(a, 6, &[vec, lo, hi])
}

#[test]
fn init_fills_lguest_data_and_notify_returns() {
    let mut g = guest(
        |a| {
            init(a)?;
            notify(a, 0x1234)?;
            notify(a, 0x5678)
        },
        None,
    );
    assert_eq!(run(&mut g), RunOutcome::Notify(0x1234));
    assert_eq!(g.mem.read_u32(LGUEST_DATA + ld::RESERVE_MEM).unwrap(), 0x40_0000);
    assert_eq!(g.mem.read_u32(LGUEST_DATA + ld::TSC_KHZ).unwrap(), crate::lguest::TSC_KHZ);
    // The host built the first page directory just below the top of RAM.
    assert_eq!(g.mem.read_u32(LGUEST_DATA + ld::PGDIR).unwrap(), MEM - 4096);
    assert_ne!(g.mem.read_u32(LGUEST_DATA + ld::TIME).unwrap(), 0);
    assert_eq!(run(&mut g), RunOutcome::Notify(0x5678));
}

#[test]
fn vmcall_is_rewritten_to_int_0x1f() {
    let mut g = guest(
        |a| {
            a.mov(esp, STACK_TOP)?;
            a.mov(eax, 1u32)?;
            a.mov(ebx, LGUEST_DATA)?;
            a.vmcall()?;
            notify(a, 7)
        },
        None,
    );
    assert_eq!(run(&mut g), RunOutcome::Notify(7));
    let mut b = [0u8; 3];
    g.mem.read(CODE + 15, &mut b).unwrap();
    assert_eq!(b, [0xcd, 0x1f, 0x90]);
}

#[test]
fn shutdown_power_off_and_restart() {
    let mut g = guest(
        |a| {
            init(a)?;
            hcall(a, 2, &[SCRATCH, 1])
        },
        None,
    );
    g.mem.write(SCRATCH, b"Power down\0").unwrap();
    assert_eq!(death(&mut g), "CRASH: Power down");

    let mut g = guest(
        |a| {
            init(a)?;
            hcall(a, 2, &[SCRATCH, 2])
        },
        None,
    );
    assert_eq!(run(&mut g), RunOutcome::Died);
    assert_eq!(g.death, Some(Death::Restart));
}

#[test]
fn death_reasons_for_bad_hypercalls() {
    let cases: Vec<DeathCase> = vec![
        (Box::new(|a| hcall(a, 5, &[0])), "hypercall 5 before INIT"),
        (Box::new(|a| { init(a)?; hcall(a, 99, &[]) }), "Bad hypercall 99"),
        (Box::new(|a| { init(a)?; hcall(a, 1, &[LGUEST_DATA]) }), "already have lguest_data"),
        (Box::new(|a| hcall(a, 1, &[MEM + 0xF00])), "bad guest page 0x400f00"),
        (Box::new(|a| { init(a)?; hcall(a, 18, &[40, 0, 0]) }), "too many gdt entries 40"),
        (Box::new(|a| { init(a)?; hcall(a, 7, &[0x68, STACK_TOP, 1]) }), "bad stack segment 104"),
        (Box::new(|a| { init(a)?; hcall(a, 7, &[0x69, STACK_TOP, 3]) }), "bad stack pages 3"),
        (Box::new(|a| { init(a)?; hcall(a, 6, &[300, 0, 0x8e00]) }), "Setting idt entry 300"),
        (Box::new(|a| { init(a)?; hcall(a, 6, &[32, 0, 0x8500]) }), "bad IDT type 5"),
        (Box::new(|a| { init(a)?; hcall(a, 2, &[0xffff_fff0, 1]) }), "bad read address 0xfffffff0 len 128"),
        (Box::new(|a| { init(a)?; a.ud2() }), "unhandled trap 6 at 0x100011 (0x0)"),
    ];
    for (code, want) in cases {
        let mut g = guest(code, None);
        assert_eq!(death(&mut g), want);
    }
}

#[test]
fn bad_syscall_vector_and_kernel_address() {
    let mut g = guest(init, None);
    g.mem.write_u32(LGUEST_DATA + ld::SYSCALL_VEC, 0x81).unwrap();
    assert_eq!(death(&mut g), "bad syscall vector");
    let mut g = guest(init, None);
    g.mem.write_u32(LGUEST_DATA + ld::KERNEL_ADDRESS, 0xFFC0_0000).unwrap();
    assert_eq!(death(&mut g), "bad kernel address 0xffc00000");
}

#[test]
fn general_protection_is_reflected_with_a_frame() {
    // hlt at ring 1 faults (cli would be skipped by the host, as later
    // lguest hosts do); the handler notifies with the error code and the
    // saved EIP it finds on its stack.
    let handler = asm_at(HANDLERS, |a| {
        a.mov(edi, dword_ptr(esp))?; // error code
        a.mov(esi, dword_ptr(esp + 4))?; // faulting EIP
        hcall(a, 17, &[0xE0])
    });
    let mut g = guest(
        |a| {
            init(a)?;
            load_idt(a, 13, HANDLERS, 0xF, 0)?;
            a.hlt()
        },
        Some(handler),
    );
    assert_eq!(run(&mut g), RunOutcome::Notify(0xE0));
    assert_eq!(g.cpu.regs[7], 0);
    // The hlt sits after init (17 bytes) and one LOAD_IDT_ENTRY (22 bytes).
    assert_eq!(g.cpu.regs[6], CODE + 39);
    assert_eq!(g.cpu.cpl(), 1);
}

#[test]
fn page_fault_reflected_with_cr2_and_error_code() {
    let handler = asm_at(HANDLERS, |a| {
        a.mov(edi, dword_ptr(esp))?;
        hcall(a, 17, &[0xF0])
    });
    let mut g = guest(
        |a| {
            init(a)?;
            load_idt(a, 14, HANDLERS, 0xE, 0)?;
            // Above RAM: not mapped by the initial page tables.
            a.mov(eax, dword_ptr(0x8000_0123u32))
        },
        Some(handler),
    );
    assert_eq!(run(&mut g), RunOutcome::Notify(0xF0));
    assert_eq!(g.mem.read_u32(LGUEST_DATA + ld::CR2).unwrap(), 0x8000_0123);
    assert_eq!(g.cpu.regs[7], 0, "read, supervisor, not present");
    // An interrupt gate turned the guest's interrupts off.
    assert_eq!(g.mem.read_u32(LGUEST_DATA + ld::IRQ_ENABLED).unwrap(), 0);
}

#[test]
fn timer_interrupt_wakes_a_halted_guest() {
    let handler = asm_at(HANDLERS, |a| hcall(a, 17, &[0x20]));
    let mut g = guest(
        |a| {
            init(a)?;
            load_idt(a, 0x20, HANDLERS, 0xE, 0)?;
            hcall(a, 9, &[1_000_000])?; // 1 ms
            hcall(a, 10, &[])?; // HALT
            notify(a, 0xBAD)
        },
        Some(handler),
    );
    let t = std::time::Instant::now();
    assert_eq!(run(&mut g), RunOutcome::Notify(0x20));
    assert!(t.elapsed() >= Duration::from_millis(1));
    // Delivery to a halted guest re-enabled its interrupts first, then the
    // interrupt gate disabled them again.
    assert_eq!(g.mem.read_u32(LGUEST_DATA + ld::IRQ_ENABLED).unwrap(), 0);
}

#[test]
fn masked_and_disabled_interrupts_wait() {
    let handler = asm_at(HANDLERS, |a| hcall(a, 17, &[0x21]));
    let mut g = guest(
        |a| {
            init(a)?;
            load_idt(a, 0x21, HANDLERS, 0xE, 0)?;
            notify(a, 1)?;
            // Unmask by enabling interrupts in lguest_data, then spin.
            a.mov(dword_ptr(LGUEST_DATA), 0x200u32)?;
            let mut spin = a.create_label();
            a.set_label(&mut spin)?;
            a.jmp(spin)
        },
        Some(handler),
    );
    assert_eq!(run(&mut g), RunOutcome::Notify(1));
    // IRQ 1 raised while the guest's virtual IF is 0: it waits.
    g.shared.raise_irq(1);
    assert_eq!(g.mem.read_u32(LGUEST_DATA + ld::IRQ_ENABLED).unwrap(), 0);
    assert_eq!(run(&mut g), RunOutcome::Notify(0x21));
}

#[test]
fn port_io_is_emulated_at_ring_1() {
    let mut g = guest(
        |a| {
            init(a)?;
            a.xor(eax, eax)?;
            a.in_(al, 0x80)?;
            a.mov(ebx, eax)?;
            a.out(0x80, al)?;
            a.mov(eax, 17u32)?;
            a.int(0x1f)
        },
        None,
    );
    assert_eq!(run(&mut g), RunOutcome::Notify(0xff));
}

#[test]
fn async_hypercalls_run_before_the_sync_one() {
    // The guest queues two LOAD_GDT_ENTRY calls in the ring inside
    // lguest_data, then makes a synchronous FLUSH_ASYNC: the host must run
    // them, in order, and mark their slots done.
    let mut g = guest(
        |a| {
            init(a)?;
            for (slot, entry) in [(0u32, 20u32), (1, 21)] {
                let base = LGUEST_DATA + ld::HCALLS + slot * 20;
                for (k, v) in [18u32, entry, 0x0000_ffff, 0x00cf_9300, 0].iter().enumerate() {
                    a.mov(dword_ptr(base + 4 * k as u32), *v)?;
                }
                a.mov(byte_ptr(LGUEST_DATA + ld::HCALL_STATUS + slot), 0u32)?;
            }
            hcall(a, 0, &[])?;
            notify(a, 2)
        },
        None,
    );
    assert_eq!(run(&mut g), RunOutcome::Notify(2));
    assert_eq!(g.mem.read_u8(LGUEST_DATA + ld::HCALL_STATUS).unwrap(), 0xff);
    assert_eq!(g.mem.read_u8(LGUEST_DATA + ld::HCALL_STATUS + 1).unwrap(), 0xff);
    // DPL 0 became 1 and the accessed bit is set.
    assert_eq!((g.cpu.gdt[20] >> 32) as u32, 0x00cf_b300);
    assert_eq!((g.cpu.gdt[21] >> 32) as u32, 0x00cf_b300);
    assert_eq!(g.next_hcall, 2);
}

#[test]
fn user_mode_system_call_through_a_trap_gate() {
    // The kernel sets a DPL-3 trap gate for 0x80, a kernel stack, user code
    // and data segments, and irets to ring 3; user code does int $0x80; the
    // handler sees the user SS:ESP on its frame and notifies with EAX.
    const USER: u32 = 0x0012_0000;
    const USER_STACK: u32 = 0x0013_0000;
    let handler = asm_at(HANDLERS, |a| {
        a.mov(edi, dword_ptr(esp + 16))?; // user SS
        a.mov(esi, dword_ptr(esp + 12))?; // user ESP
        a.mov(ebx, eax)?;
        a.mov(eax, 17u32)?;
        a.int(0x1f)
    });
    let mut g = guest(
        |a| {
            init(a)?;
            load_idt(a, 0x80, HANDLERS, 0xF, 3)?;
            hcall(a, 18, &[14, 0x0000_ffff, 0x00cf_fa00])?; // user code
            hcall(a, 18, &[15, 0x0000_ffff, 0x00cf_f200])?; // user data
            hcall(a, 7, &[0x69, STACK_TOP, 2])?;
            a.push(0x7bu32)?;
            a.push(USER_STACK)?;
            a.push(0x202u32)?;
            a.push(0x73u32)?;
            a.push(USER)?;
            a.iretd()
        },
        Some(handler),
    );
    g.mem.write(USER, &asm_at(USER, |a| {
        a.mov(eax, 0x55u32)?;
        a.int(0x80)
    }))
    .unwrap();
    assert_eq!(run(&mut g), RunOutcome::Notify(0x55));
    assert_eq!(g.cpu.regs[7], 0x7b);
    assert_eq!(g.cpu.regs[6], USER_STACK);
    assert_eq!(g.cpu.cpl(), 1);
    // A ring-3 hypercall is a #GP, not a hypercall: not registered, so fatal.
}

#[test]
fn ts_flag_raises_device_not_available() {
    let handler = asm_at(HANDLERS, |a| hcall(a, 17, &[0x07]));
    let mut g = guest(
        |a| {
            init(a)?;
            load_idt(a, 7, HANDLERS, 0xF, 0)?;
            hcall(a, 8, &[1])?;
            a.fninit()
        },
        Some(handler),
    );
    assert_eq!(run(&mut g), RunOutcome::Notify(0x07));
}

#[test]
fn shadow_paging_switches_address_spaces() {
    // Build a second page directory that maps VA 0x4000_0000 to SCRATCH and
    // also keeps the code mapped; switch to it with NEW_PGTABLE and read.
    let mut g = guest(
        |a| {
            init(a)?;
            hcall(a, 4, &[0x0030_0000])?;
            a.mov(ebx, dword_ptr(0x4000_0000u32))?;
            a.mov(eax, 17u32)?;
            a.int(0x1f)
        },
        None,
    );
    let pd = 0x0030_0000;
    let pt_low = 0x0030_1000;
    let pt_hi = 0x0030_2000;
    for i in 0..1024u32 {
        g.mem.write_u32(pt_low + 4 * i, (i << 12) | 7).unwrap();
    }
    g.mem.write_u32(pd, pt_low | 7).unwrap();
    g.mem.write_u32(pd + 4 * (0x4000_0000 >> 22), pt_hi | 7).unwrap();
    g.mem.write_u32(pt_hi, SCRATCH | 7).unwrap();
    g.mem.write_u32(SCRATCH, 0xCAFE).unwrap();
    assert_eq!(run(&mut g), RunOutcome::Notify(0xCAFE));
    assert_eq!(g.paging().cr3(), pd);
    // The accessed bit was set in the guest's PTE.
    assert_eq!(g.mem.read_u32(pt_hi).unwrap() & 0x20, 0x20);
}

#[test]
fn death_reasons_from_paging_and_segments() {
    let cases: Vec<DeathCase> = vec![
        // The kernel stack must be mapped: above RAM it is not.
        (Box::new(|a| { init(a)?; hcall(a, 7, &[0x69, 0x8000_1000, 1]) }), "bad stack page 0x80000fff"),
        // The top 4 MiB belong to the host.
        (Box::new(|a| { init(a)?; hcall(a, 14, &[MEM - 4096, 0xFFC0_1000, 0x1067]) }), "attempt to access switcher pages"),
        // A trap frame pushed onto an unmapped stack.
        (Box::new(|a| {
            init(a)?;
            load_idt(a, 6, HANDLERS, 0xF, 0)?;
            a.mov(esp, 0x8000_0000u32)?;
            a.ud2()
        }), "Bad address 0x7ffffffc"),
        // Making the loaded data segment not present kills at the next entry.
        (Box::new(|a| { init(a)?; hcall(a, 18, &[13, 0x0000_ffff, 0x00cf_3300]) }), "unhandled trap 256 at 0x100027 (0x69)"),
    ];
    for (code, want) in cases {
        let mut g = guest(code, None);
        assert_eq!(death(&mut g), want);
    }
}

#[test]
fn bad_guest_page_table_entries_kill_when_shadowed() {
    // A PTE with the PAT/PS bit, then a PDE for a large page: both are
    // refused when the host first shadows them, as lguest did.
    let mut g = guest(
        |a| {
            init(a)?;
            a.mov(eax, dword_ptr(0x0030_0000u32))
        },
        None,
    );
    let pgdir = MEM - 4096;
    let pt = g.mem.read_u32(pgdir).unwrap() & !0xfff;
    g.mem.write_u32(pt + 4 * 0x300, 0x0030_0000 | 0x87).unwrap();
    assert_eq!(death(&mut g), "bad page table entry");

    let mut g = guest(
        |a| {
            init(a)?;
            a.mov(eax, dword_ptr(0x0040_0000u32))
        },
        None,
    );
    g.mem.write_u32(MEM - 4096 + 4, 0x0040_0000 | 0x87).unwrap();
    assert_eq!(death(&mut g), "bad page directory entry");
}

// --- PAE guests ---------------------------------------------------------------

/// Where the PAE test guest builds its own tables: a PDPT that does not start
/// a page (CR3 only needs 32-byte alignment with PAE), a page directory
/// whose first two entries map 0-4 MiB through two page tables, and a second
/// directory and table for a page the fault handler maps at 1 GiB.
const PAE_PDPT: u32 = 0x0030_0020;
const PAE_PMD: u32 = 0x0030_1000;
const PAE_PT0: u32 = 0x0030_2000;
const PAE_PMD2: u32 = 0x0030_4000;
const PAE_PT2: u32 = 0x0030_5000;
const PAE_DATA: u32 = 0x001A_0000;
/// Where the initial PAE tables of a 4 MiB guest put their page directory:
/// below the PDPT (at the top page) and two page tables.
const INITIAL_PAE_PMD: u32 = MEM - 4 * 4096;

/// The guest writes a 64-bit entry whose high word is zero.
fn put_entry(a: &mut Asm, addr: u32, v: u32) -> Result<(), IcedError> {
    a.mov(dword_ptr(addr), v)?;
    a.mov(dword_ptr(addr + 4), 0u32)
}

#[test]
fn pae_guest_builds_its_own_tables_and_takes_faults() {
    // The page-fault handler: keep the error code and CR2, map 1 GiB onto
    // PAE_DATA with SET_PGD, SET_PMD and SET_PTE (each after writing the
    // entry, as Linux does), and return to the faulting instruction.
    let handler = asm_at(HANDLERS, |a| {
        a.pop(edi)?;
        a.mov(dword_ptr(SCRATCH + 0x2800), edi)?;
        a.mov(esi, dword_ptr(LGUEST_DATA + ld::CR2))?;
        a.mov(dword_ptr(SCRATCH + 0x2804), esi)?;
        put_entry(a, PAE_PDPT + 8, PAE_PMD2 | 1)?;
        hcall(a, 15, &[PAE_PDPT, 1])?;
        put_entry(a, PAE_PMD2, PAE_PT2 | 0x67)?;
        hcall(a, 13, &[PAE_PMD2, 0])?;
        put_entry(a, PAE_PT2, PAE_DATA | 7)?;
        hcall(a, 14, &[PAE_PDPT, 0x4000_0000, PAE_DATA | 7, 0])?;
        a.iretd()
    });
    let mut g = guest_in(
        PagingMode::Pae,
        |a| {
            init(a)?;
            load_idt(a, 14, HANDLERS, 0xE, 0)?;
            // Identity-map 0-4 MiB: 1024 entries in two page tables, present,
            // writable, user, accessed and dirty clear.
            a.mov(edi, PAE_PT0)?;
            a.mov(eax, 7u32)?;
            a.mov(ecx, 1024u32)?;
            let mut fill = a.create_label();
            a.set_label(&mut fill)?;
            a.mov(dword_ptr(edi), eax)?;
            a.mov(dword_ptr(edi + 4), 0u32)?;
            a.add(eax, 0x1000)?;
            a.add(edi, 8)?;
            a.dec(ecx)?;
            a.jnz(fill)?;
            put_entry(a, PAE_PMD, PAE_PT0 | 0x67)?;
            put_entry(a, PAE_PMD + 8, (PAE_PT0 + 0x1000) | 0x67)?;
            put_entry(a, PAE_PDPT, PAE_PMD | 1)?;
            put_entry(a, PAE_PDPT + 24, PAE_PMD | 1)?;
            // Switch to them, and pin a kernel stack page through them.
            hcall(a, 4, &[PAE_PDPT])?;
            hcall(a, 7, &[0x69, STACK_TOP, 1])?;
            // A read and a write the host fixes without telling the guest.
            a.mov(eax, dword_ptr(SCRATCH))?;
            a.mov(dword_ptr(SCRATCH + 0x1000), 0x1234u32)?;
            // Nothing at 1 GiB yet: the handler runs, then this succeeds.
            a.mov(ebx, dword_ptr(0x4000_0000u32))?;
            a.mov(eax, 17u32)?;
            a.int(0x1f)
        },
        Some(handler),
    );
    g.mem.write_u32(PAE_DATA, 0xCAFE_F00D).unwrap();
    assert!(g.paging().is_pae());
    assert_eq!(run(&mut g), RunOutcome::Notify(0xCAFE_F00D));
    assert_eq!(g.mem.read_u32(LGUEST_DATA + ld::RESERVE_MEM).unwrap(), 0x20_0000);
    // The PDPT the host built sits at the top of RAM.
    assert_eq!(g.mem.read_u32(LGUEST_DATA + ld::PGDIR).unwrap(), MEM - 4096);
    assert_eq!(g.paging().cr3(), PAE_PDPT);
    // The reflected fault: a supervisor read of a page with no PDPT entry.
    assert_eq!(g.mem.read_u32(SCRATCH + 0x2800).unwrap(), 0);
    assert_eq!(g.mem.read_u32(SCRATCH + 0x2804).unwrap(), 0x4000_0000);
    assert_eq!(g.mem.read_u32(LGUEST_DATA + ld::CR2).unwrap(), 0x4000_0000);
    // Accessed and dirty bits, written back as 8-byte entries.
    let pte = |va: u32| {
        let at = PAE_PT0 + 8 * (va >> 12);
        (g.mem.read_u32(at).unwrap(), g.mem.read_u32(at + 4).unwrap())
    };
    assert_eq!(pte(SCRATCH), (SCRATCH | 0x27, 0), "read: accessed");
    assert_eq!(pte(SCRATCH + 0x1000), ((SCRATCH + 0x1000) | 0x67, 0), "write: accessed and dirty");
    assert_eq!(pte(STACK_TOP - 1), ((STACK_TOP - 0x1000) | 0x67, 0), "pinned stack");
    assert_eq!(pte(CODE), (CODE | 0x27, 0), "code fetched");
    assert_eq!(g.mem.read_u32(PAE_PT2).unwrap(), PAE_DATA | 0x27);
    assert_eq!(g.mem.read_u32(SCRATCH + 0x1000).unwrap(), 0x1234);
}

#[test]
fn pae_death_reasons() {
    const PDPT: u32 = MEM - 4096;
    let cases: Vec<DeathCase> = vec![
        // The top 2 MiB belong to the host.
        (Box::new(|a| { init(a)?; hcall(a, 14, &[PDPT, 0xFFE0_1000, 0x1067, 0]) }), "attempt to access switcher pages"),
        // SET_PTE's fourth argument is the entry's high word: frame 4 GiB + 1 MiB.
        (Box::new(|a| {
            init(a)?;
            a.mov(eax, dword_ptr(0xC010_0000u32))?;
            hcall(a, 14, &[PDPT, 0xC010_0000, 0x0010_0067, 1])
        }), "bad page table entry"),
        // A PDPT entry may only say "present".
        (Box::new(|a| {
            init(a)?;
            put_entry(a, PDPT + 8, INITIAL_PAE_PMD | 7)?;
            a.mov(eax, dword_ptr(0x4000_0000u32))
        }), "bad page directory entry"),
        // No large pages in the middle level.
        (Box::new(|a| {
            init(a)?;
            put_entry(a, INITIAL_PAE_PMD + 16, 0x0040_0000 | 0xE7)?;
            a.mov(eax, dword_ptr(0x0040_0000u32))
        }), "bad page middle directory entry"),
        // The guest's own entry for the reserved top is present: death.
        (Box::new(|a| {
            init(a)?;
            put_entry(a, INITIAL_PAE_PMD + 8 * 511, (MEM - 3 * 4096) | 0x67)?;
            a.mov(eax, dword_ptr(0xFFE0_0000u32))
        }), "attempt to access switcher pages"),
    ];
    for (code, want) in cases {
        let mut g = guest_in(PagingMode::Pae, code, None);
        assert_eq!(death(&mut g), want);
    }
    // kernel_address must be below the reserved 2 MiB; 0xFFC00000, which a
    // 2-level guest may not use, is fine.
    let mut g = guest_in(PagingMode::Pae, init, None);
    g.mem.write_u32(LGUEST_DATA + ld::KERNEL_ADDRESS, 0xFFE0_0000).unwrap();
    assert_eq!(death(&mut g), "bad kernel address 0xffe00000");
    let mut g = guest_in(PagingMode::Pae, |a| { init(a)?; notify(a, 1) }, None);
    g.mem.write_u32(LGUEST_DATA + ld::KERNEL_ADDRESS, 0xFFC0_0000).unwrap();
    assert_eq!(run(&mut g), RunOutcome::Notify(1));
    // SET_PMD is PAE's alone.
    let mut g = guest(|a| { init(a)?; hcall(a, 13, &[0x1000, 0]) }, None);
    assert_eq!(death(&mut g), "Bad hypercall 13");
}

#[test]
fn set_pmd_is_a_full_flush_for_pae_guests() {
    // The guest reads through the kernel window, so the shadow maps it;
    // SET_PMD then throws every shadow entry away (the stack pinning that
    // follows a full flush has nothing to pin here).
    let mut g = guest_in(PagingMode::Pae, |a| { init(a)?; a.mov(eax, dword_ptr(0xC010_0000u32))?; notify(a, 1) }, None);
    assert_eq!(run(&mut g), RunOutcome::Notify(1));
    assert!(g.paging().shadows.lookup(0xC010_0000, false, false).is_ok());
    crate::hypercalls::do_hcall(&mut g, [13, INITIAL_PAE_PMD, 0x300, 0, 0]);
    assert!(g.death.is_none());
    assert!(g.paging().shadows.lookup(0xC010_0000, false, false).is_err());
    // The guest's tables are untouched: the next access fills it again.
    let t = g.paging().translate(0xC010_0000, crate::cpu::mem::Access::Read, false).unwrap();
    assert_eq!(t.phys, 0x0010_0000);
    assert!(g.paging().shadows.lookup(0xC010_0000, false, false).is_ok());
}

#[test]
fn cpuid_advertises_pae_only_to_pae_guests() {
    for (mode, pae) in [(PagingMode::TwoLevel, 0), (PagingMode::Pae, 1 << 6)] {
        let mut g = guest_in(
            mode,
            |a| {
                init(a)?;
                a.mov(eax, 1u32)?;
                a.cpuid()?;
                a.mov(ebx, edx)?;
                a.mov(eax, 17u32)?;
                a.int(0x1f)
            },
            None,
        );
        match run(&mut g) {
            RunOutcome::Notify(v) => assert_eq!(v & (1 << 6), pae, "{mode:?}"),
            other => panic!("{other:?}"),
        }
    }
}

// --- lguest_data write failures --------------------------------------------------
//
// LGUEST_INIT refuses an lguest_data that is not wholly inside guest memory,
// and the memory limit never moves afterwards, so the host's later writes to
// it cannot fail in a real run (in the original they could only fail if the
// Launcher unmapped its memory).  The kill reasons for them exist all the
// same.  To reach them, these tests move the registered address after INIT
// (the `lguest_data` field is the host's only record of it) so that the
// fields a path writes fall outside the limit while those it reads first do
// not.  "Writing result for async hypercall" stays unreachable: its status
// byte was just read in the same range.

/// The guest-physical limit of the test guests.
const LIMIT: u32 = MEM + 4096;

fn poison(g: &mut Guest, base: u32) {
    g.lguest_data = Some(base);
}

#[test]
fn writing_cr2_fails() {
    let mut g = guest(|a| { init(a)?; load_idt(a, 14, HANDLERS, 0xE, 0)?; notify(a, 1)?; a.mov(eax, dword_ptr(0x8000_0000u32)) }, None);
    assert_eq!(run(&mut g), RunOutcome::Notify(1));
    // cr2 (offset 8) is past the limit.
    poison(&mut g, LIMIT - 8);
    assert_eq!(death(&mut g), "Writing cr2");
}

#[test]
fn disabling_interrupts_fails() {
    // A #UD through an interrupt gate: the frame is pushed, then the
    // guest's virtual IF cannot be cleared.
    let mut g = guest(|a| { init(a)?; load_idt(a, 6, HANDLERS, 0xE, 0)?; notify(a, 1)?; a.ud2() }, None);
    assert_eq!(run(&mut g), RunOutcome::Notify(1));
    poison(&mut g, LIMIT);
    assert_eq!(death(&mut g), "Disabling interrupts");
}

#[test]
fn re_enabling_interrupts_fails() {
    // A halted guest is woken by an interrupt: blocked_interrupts (offset 4)
    // must be readable and irq_enabled (offset 0) not, which only a base
    // that wraps around 4 GiB gives (base + 4 is GPA 0, all zero here).
    let mut g = guest(|a| { init(a)?; hcall(a, 10, &[]) }, None);
    assert_eq!(g.run(Duration::from_millis(20)), RunOutcome::Yield);
    assert!(g.halted);
    poison(&mut g, 0xFFFF_FFFC);
    g.shared.raise_irq(1);
    assert_eq!(death(&mut g), "Re-enabling interrupts");
}

/// A guest that initialises, NOTIFYs address 1 and then spins, run up to
/// that notification.
fn notified_spinner() -> Guest {
    let mut g = guest(
        |a| {
            init(a)?;
            notify(a, 1)?;
            let mut spin = a.create_label();
            a.set_label(&mut spin)?;
            a.jmp(spin)
        },
        None,
    );
    assert_eq!(run(&mut g), RunOutcome::Notify(1));
    g
}

#[test]
fn writing_irq_pending_fails() {
    // Interrupts off (irq_enabled 0) and unmasked: the host records that one
    // is pending, at offset 0x14, past the limit.
    let mut g = notified_spinner();
    poison(&mut g, LIMIT - 8);
    g.shared.raise_irq(1);
    assert_eq!(death(&mut g), "Writing irq_pending");
}

#[test]
fn writing_timestamp_fails() {
    // Interrupts on and unmasked: after delivery (here to no handler) the
    // host updates the time, at offset 0xC, past the limit.
    let mut g = notified_spinner();
    poison(&mut g, LIMIT - 12);
    g.mem.write_u32(LIMIT - 12, 0x200).unwrap();
    g.shared.raise_irq(1);
    assert_eq!(death(&mut g), "Writing timestamp");
}

#[test]
fn fetching_async_hypercalls_fails() {
    // The status bytes (0x18..0x58) are readable and slot 0 is queued, but
    // the slot itself (0x58..0x6C) is past the limit.
    let mut g = guest(|a| { init(a)?; notify(a, 1)?; hcall(a, 0, &[]) }, None);
    assert_eq!(run(&mut g), RunOutcome::Notify(1));
    let base = LIMIT - 0x60;
    poison(&mut g, base);
    g.mem.write(base + ld::HCALL_STATUS, &[0xff; 64]).unwrap();
    g.mem.write_u8(base + ld::HCALL_STATUS, 0).unwrap();
    assert_eq!(death(&mut g), "Fetching async hypercalls");
}

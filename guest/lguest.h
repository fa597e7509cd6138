/*
 * lguest.h - what the demo Guest knows about its Host.
 *
 * Everything in here is ABI: numbers and layouts the Host (our Rust core)
 * expects from a 2.6.32-era lguest Guest.  The values come from
 * shared/docs/abi-core.md; the comments say why the Guest cares.
 *
 * This header is included by both head.S and C, so the C-only parts hide
 * behind __ASSEMBLY__.
 */
#ifndef LGUEST_DEMO_H
#define LGUEST_DEMO_H

/*
 * The Host builds our first page tables so that virtual address x and
 * 0xC0000000 + x both reach physical address x.  Like Linux we link the
 * kernel at 0xC0100000 and load it at 1 MiB, so a virtual address in our
 * image is its physical address plus PAGE_OFFSET.
 */
#define PAGE_OFFSET		0xC0000000

/* Hypercall numbers (the full table is in abi-core.md 3.3). */
#define LHCALL_FLUSH_ASYNC	0
#define LHCALL_LGUEST_INIT	1
#define LHCALL_SHUTDOWN		2
#define LHCALL_NEW_PGTABLE	4
#define LHCALL_FLUSH_TLB	5
#define LHCALL_LOAD_IDT_ENTRY	6
#define LHCALL_SET_STACK	7
#define LHCALL_TS		8
#define LHCALL_SET_CLOCKEVENT	9
#define LHCALL_HALT		10
#define LHCALL_SET_PTE		14
#define LHCALL_SET_PGD		15
#define LHCALL_LOAD_TLS		16
#define LHCALL_NOTIFY		17
#define LHCALL_LOAD_GDT_ENTRY	18
#define LHCALL_SEND_INTERRUPTS	19

/*
 * Segment selectors.  The Host starts us on GDT entries 12 and 13; we keep
 * Linux's numbering for everything we add.  Our kernel runs in ring 1, so
 * its selectors carry RPL 1; user selectors carry RPL 3.
 */
#define GDT_ENTRY_TLS_MIN	6
#define GDT_ENTRY_KERNEL_CS	12
#define GDT_ENTRY_KERNEL_DS	13
#define GDT_ENTRY_USER_CS	14
#define GDT_ENTRY_USER_DS	15
#define GDT_ENTRIES		32
#define __KERNEL_CS		(GDT_ENTRY_KERNEL_CS * 8 + 1)
#define __KERNEL_DS		(GDT_ENTRY_KERNEL_DS * 8 + 1)
#define __USER_CS		(GDT_ENTRY_USER_CS * 8 + 3)
#define __USER_DS		(GDT_ENTRY_USER_DS * 8 + 3)
#define __USER_TLS		(GDT_ENTRY_TLS_MIN * 8 + 3)

/* Interrupt lines: IRQ n arrives through IDT vector 0x20 + n. */
#define FIRST_EXTERNAL_VECTOR	0x20
#define LGUEST_IRQS		32

/* The second argument of LHCALL_SHUTDOWN. */
#define LGUEST_SHUTDOWN_POWEROFF	1
#define LGUEST_SHUTDOWN_RESTART		2

#define LHCALL_RING_SIZE	64	/* slots in the asynchronous ring */
#define SYSCALL_VECTOR		0x80	/* the Host insists on this one */

/* The size of our boot stack; Linux's 8k THREAD_SIZE is plenty here. */
#define BOOT_STACK_SIZE		8192

#ifndef __ASSEMBLY__

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

/* Converting between our virtual addresses and guest-physical ones. */
#define __pa(x)		((u32)(x) - PAGE_OFFSET)
#define __va(x)		((void *)((u32)(x) + PAGE_OFFSET))

/*
 * G:111 struct lguest_data is the mailbox we share with the Host.  It
 * lives in our image; LGUEST_INIT tells the Host where.  After that both
 * sides read and write it directly, at any time, so its layout is fixed to
 * the byte: the Host of 2.6.32 checks that all 0x574 bytes are valid guest
 * memory, and finds each field at the offset asserted below.
 */
struct hcall_args {
	/* arg0 is the call number, as EAX is for a synchronous call. */
	u32 arg0, arg1, arg2, arg3, arg4;
};

struct lguest_data {
	/* Our virtual interrupt flag: 0 or 0x200 (X86_EFLAGS_IF). */
	u32 irq_enabled;
	/* One bit per virtual interrupt line; a set bit masks the line. */
	u32 blocked_interrupts;
	/* The Host puts the faulting address here when it reflects a #PF. */
	u32 cr2;
	/* Wall-clock time, kept fresh by the Host. */
	struct {
		u32 tv_sec;
		u32 tv_nsec;
	} time;
	/* The Host sets this when an interrupt waits for us to enable. */
	u32 irq_pending;
	/*
	 * The asynchronous hypercall ring: 0xFF means "slot free", anything
	 * else "please execute hcalls[n]" (G:270 fills it).  The Host drains
	 * this ring before every synchronous call, so every byte must start
	 * as 0xFF or it would run 64 bogus hypercalls.
	 */
	u8 hcall_status[LHCALL_RING_SIZE];
	struct hcall_args hcalls[LHCALL_RING_SIZE];
	/* Written by the Host at LGUEST_INIT: */
	u32 reserve_mem;	/* bytes at the top we must leave alone */
	u32 tsc_khz;		/* TSC rate, or 0 if we must not use it */
	u32 pgdir;		/* physical address of our page directory */
	/* Read by the Host once, at LGUEST_INIT: */
	u32 noirq_start;	/* no interrupts while EIP is in */
	u32 noirq_end;		/*   [noirq_start, noirq_end) */
	u32 kernel_address;	/* where the kernel mapping starts */
	u32 syscall_vec;	/* which trap is the system call */
};

#define LGUEST_DATA_FIELD(field, off) \
	_Static_assert(__builtin_offsetof(struct lguest_data, field) == (off), \
		       "lguest_data." #field " must be at offset " #off)
LGUEST_DATA_FIELD(irq_enabled, 0x000);
LGUEST_DATA_FIELD(blocked_interrupts, 0x004);
LGUEST_DATA_FIELD(cr2, 0x008);
LGUEST_DATA_FIELD(time, 0x00C);
LGUEST_DATA_FIELD(irq_pending, 0x014);
LGUEST_DATA_FIELD(hcall_status, 0x018);
LGUEST_DATA_FIELD(hcalls, 0x058);
LGUEST_DATA_FIELD(reserve_mem, 0x558);
LGUEST_DATA_FIELD(tsc_khz, 0x55C);
LGUEST_DATA_FIELD(pgdir, 0x560);
LGUEST_DATA_FIELD(noirq_start, 0x564);
LGUEST_DATA_FIELD(noirq_end, 0x568);
LGUEST_DATA_FIELD(kernel_address, 0x56C);
LGUEST_DATA_FIELD(syscall_vec, 0x570);
_Static_assert(sizeof(struct lguest_data) == 0x574,
	       "struct lguest_data must be 0x574 bytes, as in 2.6.32");

extern struct lguest_data lguest_data;

/*
 * G:114 A hypercall is how we ask the Host for anything.  The 2.6.32 Guest
 * uses KVM's "vmcall" instruction with the call number in EAX and up to
 * four arguments in EBX, ECX, EDX and ESI.  We are not on VT hardware, so
 * vmcall faults; the Host spots the three bytes 0F 01 C1 at the faulting
 * address, patches them into "int $0x1f; nop" and retries.  From then on
 * that site is an ordinary trap into the Host.  Our text really does change
 * under us, one call site at a time, and nothing here minds.
 *
 * No register comes back changed and nothing is returned, so the asm has
 * only inputs.  The "memory" clobber matters: arguments are often the
 * address of something we just wrote (a string to print), and the compiler
 * must finish those stores before the Host looks.
 */
static inline void hcall(u32 call, u32 arg1, u32 arg2, u32 arg3, u32 arg4)
{
	asm volatile("vmcall"
		     : /* no outputs */
		     : "a"(call), "b"(arg1), "c"(arg2), "d"(arg3), "S"(arg4)
		     : "memory");
}

#endif /* !__ASSEMBLY__ */
#endif /* LGUEST_DEMO_H */

/*
 * traps.c - the GDT, the IDT, exceptions, interrupts and the clock.
 */
#include "kernel.h"

extern char trap_stubs[], syscall_stub[];

volatile u32 jiffies;
u32 irq_counts[LGUEST_IRQS];
u32 trap_counts[32];
u32 halts;
struct trap_probe probe = { .vector = -1 };

static irq_handler_t irq_handlers[LGUEST_IRQS];
static void *irq_args[LGUEST_IRQS];

/* An 8-byte segment descriptor, as the two words the hypercalls take. */
static void make_desc(u32 *lo, u32 *hi, u32 base, u32 limit, u32 access, u32 flags)
{
	*lo = (limit & 0xFFFF) | (base << 16);
	*hi = ((base >> 16) & 0xFF) | (access << 8) | (limit & 0xF0000) |
	      (flags << 20) | (base & 0xFF000000);
}

/*
 * G:210 A Guest cannot load a GDT (lgdt is privileged), so, like Linux, we
 * send the entries we want one at a time with LHCALL_LOAD_GDT_ENTRY.  Four
 * flat 4 GiB segments: kernel code and data in slots 12 and 13 (where the
 * Host already put its own versions, which we replace), user code and
 * data in 14 and 15.  The kernel ones are written with DPL 0 as Linux
 * writes them: the Host quietly turns DPL 0 into 1, since the Guest kernel
 * really runs in ring 1, and sets the "accessed" bit because the processor
 * could not write it into a table it does not own.  The TLS slots (6-8)
 * change with every task and are loaded by LHCALL_LOAD_TLS instead (G:290).
 *
 * Because the Host reloads our segment registers from the new descriptors
 * on the next entry, replacing the kernel's own CS and DS entries while we
 * use them is fine, as long as the new ones are still valid.
 */
void gdt_init(void)
{
	static const struct { u32 entry, access; } segs[] = {
		{ GDT_ENTRY_KERNEL_CS, 0x9A },	/* present, DPL 0, code, read */
		{ GDT_ENTRY_KERNEL_DS, 0x92 },	/* present, DPL 0, data, write */
		{ GDT_ENTRY_USER_CS, 0xFA },	/* present, DPL 3, code, read */
		{ GDT_ENTRY_USER_DS, 0xF2 },	/* present, DPL 3, data, write */
	};
	u32 i, lo, hi;

	for (i = 0; i < ARRAY_SIZE(segs); i++) {
		/* 4 KiB granularity (G) and 32-bit (D/B): flags 0xC. */
		make_desc(&lo, &hi, 0, 0xFFFFF, segs[i].access, 0xC);
		hcall(LHCALL_LOAD_GDT_ENTRY, segs[i].entry, lo, hi, 0);
	}
}

/* A TLS descriptor: a byte-granular, one-page user data segment at base. */
void make_tls_desc(u32 *desc, u32 base)
{
	make_desc(&desc[0], &desc[1], base, PAGE_SIZE - 1, 0xF2, 0x4);
}

/*
 * G:220 The IDT is the same story: LHCALL_LOAD_IDT_ENTRY per vector, with
 * the two words of an ordinary 32-bit gate.  The Host ignores the selector
 * (every gate leads to our ring-1 code segment), refuses anything but
 * interrupt and trap gates, and keeps vectors 2, 8, 15 and 0x1F for itself.
 *
 * The gate type matters more than on bare metal:
 *
 * - A trap gate (type 0xF) leaves our interrupt flag alone.  We use it for
 *   exceptions, and for the system call vector 0x80, which must also have
 *   DPL 3 or ring 3's "int $0x80" would itself fault.
 * - An interrupt gate (type 0xE) makes the Host clear irq_enabled as it
 *   delivers, which is what hardware does to IF.  We use it for the 32
 *   interrupt lines (vectors 0x20-0x3F), and for the page fault, because
 *   its address sits in lguest_data.cr2 until we have read it and another
 *   fault inside an interrupt handler would overwrite it.
 * - int3 gets DPL 3, as on Linux, so that user space may use it.
 */
static void set_gate(u32 vec, void *handler, u32 type, u32 dpl)
{
	u32 off = (u32)handler;
	u32 lo = (__KERNEL_CS << 16) | (off & 0xFFFF);
	u32 hi = (off & 0xFFFF0000) | 0x8000 | (dpl << 13) | (type << 8);

	hcall(LHCALL_LOAD_IDT_ENTRY, vec, lo, hi, 0);
}

void idt_init(void)
{
	u32 v;

	for (v = 0; v < 32; v++)
		set_gate(v, trap_stubs + 16 * v, v == 14 ? 0xE : 0xF, v == 3 ? 3 : 0);
	for (v = 0; v < LGUEST_IRQS; v++)
		set_gate(FIRST_EXTERNAL_VECTOR + v,
			 trap_stubs + 16 * (FIRST_EXTERNAL_VECTOR + v), 0xE, 0);
	set_gate(SYSCALL_VECTOR, syscall_stub, 0xF, 3);
}

void request_irq(u32 irq, irq_handler_t handler, void *arg)
{
	irq_args[irq] = arg;
	irq_handlers[irq] = handler;
	barrier();
	lguest_data.blocked_interrupts &= ~(1U << irq);
}

/*
 * G:250 The clock.  lguest gives us no periodic timer, only a one-shot
 * "interrupt me in N nanoseconds" (LHCALL_SET_CLOCKEVENT), which raises
 * IRQ 0.  So each timer interrupt arms the next one, 1/HZ seconds later.
 * Line 0 starts masked in blocked_interrupts (the image says so, G:112);
 * unmasking it in request_irq() is what lets the first tick through.
 *
 * For reading the time we have the TSC: the Host tells us its rate in
 * lguest_data.tsc_khz, so nanoseconds are cycles * 10^6 / tsc_khz.
 */
static void timer_interrupt(u32 irq, void *arg)
{
	(void)irq;
	(void)arg;
	hcall(LHCALL_SET_CLOCKEVENT, TICK_NS, 0, 0, 0);
	jiffies++;
	scheduler_tick();
}

void timer_init(void)
{
	request_irq(0, timer_interrupt, NULL);
	hcall(LHCALL_SET_CLOCKEVENT, TICK_NS, 0, 0, 0);
}

static u64 rdtsc(void)
{
	u32 lo, hi;

	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

u64 clock_ns(void)
{
	u64 t = rdtsc();
	u32 khz = lguest_data.tsc_khz;

	if (!khz)		/* no usable TSC: tick resolution will do */
		return (u64)jiffies * TICK_NS;
	if (khz == 1000000)
		return t;
	t *= 1000000;
	div64(&t, khz);
	return t;
}

u32 uptime_ms(void)
{
	u64 ns = clock_ns();

	div64(&ns, 1000000);
	return (u32)ns;
}

/*
 * G:252 Idling: with interrupts disabled, LHCALL_HALT tells the Host we
 * have nothing to do until an interrupt arrives.  The Host sleeps, then
 * re-enables our interrupt flag and delivers the interrupt; we come back
 * here after its handler ran.  Halting with interrupts *enabled* would
 * race: the interrupt we wait for could arrive between our check and the
 * hypercall, and we would sleep through it.
 */
void lguest_halt(void)
{
	halts++;
	hcall(LHCALL_HALT, 0, 0, 0, 0);
}

static const char *const trap_names[20] = {
	"divide error", "debug", "NMI", "int3", "overflow", "bounds",
	"invalid opcode", "device not available", "double fault",
	"coprocessor overrun", "invalid TSS", "segment not present",
	"stack fault", "general protection", "page fault", "reserved",
	"x87 error", "alignment check", "machine check", "SIMD error",
};

/*
 * G:254 Every trap, interrupt and system call arrives here, with the
 * frame that the stubs of G:230 built.  Interrupt lines go to the handler
 * a driver registered (for virtio queues, D:230); the system call goes to
 * syscall.c; a page fault from user space first tries demand paging
 * (G:310); #NM is lazy FPU switching (G:320).  Any other exception from user space kills
 * the task, and from the kernel it is a panic, unless the selftest armed a
 * probe for it.  On the way out, if the timer asked for a reschedule, this
 * is where a task gets preempted.
 */
void handle_trap(struct pt_regs *regs)
{
	u32 vec = regs->vector;

	if (vec >= FIRST_EXTERNAL_VECTOR && vec < FIRST_EXTERNAL_VECTOR + LGUEST_IRQS) {
		u32 irq = vec - FIRST_EXTERNAL_VECTOR;

		irq_counts[irq]++;
		if (irq_handlers[irq])
			irq_handlers[irq](irq, irq_args[irq]);
	} else if (vec == SYSCALL_VECTOR) {
		do_syscall(regs);
	} else {
		u32 cr2 = lguest_data.cr2;

		trap_counts[vec & 31]++;
		if (vec == 7) {
			do_device_not_available(regs);
		} else if (!user_mode(regs) && (int)vec == probe.vector) {
			probe.hit++;
			probe.error = regs->error;
			probe.cr2 = cr2;
			probe.vector = -1;
			regs->eip = probe.resume;
		} else if (user_mode(regs)) {
			if (vec == 14) {
				/* The fault may have come with interrupts on. */
				irq_enable();
				if (do_page_fault_user(cr2, regs->error))
					goto out;
			}
			printk("task %d (%s): %s at eip %p, address %p, killed\n",
			       current->id, current->name,
			       vec < 20 ? trap_names[vec] : "trap", regs->eip,
			       vec == 14 ? cr2 : 0);
			task_exit(-(int)vec - 1);
		} else {
			panic("%s (vector %u) in the kernel at %p, error %x, cr2 %p",
			      vec < 20 ? trap_names[vec] : "trap", vec, regs->eip,
			      regs->error, cr2);
		}
	}
out:
	if (need_resched)
		schedule();
}

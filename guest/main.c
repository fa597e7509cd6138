/*
 * main.c - the demo Guest's C entry: read what the Launcher gave us, set
 * the kernel up piece by piece, then run the selftest, the demo tasks or
 * the monitor, and ask the Host to turn us off.
 */
#include "kernel.h"
#include "virtio.h"

#define DEMO_VERSION "0.2"

/* The command line may be up to 2048 bytes, as in the 2.6.32 boot protocol. */
#define COMMAND_LINE_SIZE 2048

/*
 * G:112 Here is the struct lguest_data we registered in G:110.  Most of it
 * starts as zero, but four things must already be right in the image,
 * because the Host looks at them the moment we call LGUEST_INIT:
 *
 * - every async ring status byte is 0xFF ("empty"), or the Host would
 *   execute garbage the first time it drains the ring;
 * - the timer interrupt (line 0) is masked, as Linux masks it until its
 *   clock is set up; we never set one up at all;
 * - kernel_address is where our kernel mapping starts: the Host keeps
 *   everything above it identical in every address space;
 * - syscall_vec must be 0x80, or the Host refuses us.
 *
 * The Host also reads the no-interrupt window [noirq_start, noirq_end)
 * once, here: it brackets the two instructions of lguest_iret (G:240).
 * Every other interrupt line starts masked too, until a driver asks for it.
 */
extern char lguest_noirq_start[], lguest_noirq_end[];

struct lguest_data lguest_data = {
	.irq_enabled = 0,
	.blocked_interrupts = 0xFFFFFFFF,
	.hcall_status = { [0 ... LHCALL_RING_SIZE - 1] = 0xFF },
	.noirq_start = (u32)lguest_noirq_start,
	.noirq_end = (u32)lguest_noirq_end,
	.kernel_address = PAGE_OFFSET,
	.syscall_vec = SYSCALL_VECTOR,
};

/* Our private copy of the command line; the BSS keeps it NUL-terminated. */
char command_line[COMMAND_LINE_SIZE];
u32 ram_size;

/*
 * G:130 A Guest cannot simply stop.  "hlt" is privileged and faults in
 * ring 1, and the HALT hypercall only sleeps until an interrupt.  Instead
 * we ask the Host with LHCALL_SHUTDOWN.  The first argument is the
 * physical address of a reason string (the Host reads up to 128 bytes of
 * it), the second says whether the Launcher should power off (1) or boot a
 * fresh Guest (2).  Linux uses "Power down" for the first, and the panic
 * message, also with 1, when it dies; the Launcher tells the two apart by
 * the text alone.  We do the same, and print the reason too so that it
 * shows up on the console.
 *
 * The Host never returns from this call (H:1150 is the other end).  If it
 * somehow did, ud2 turns the surprise into a trap, which ends in a panic
 * or in the Host killing us.
 */
void noreturn power_off(const char *reason, u32 how)
{
	static char last_words[128];
	u32 n = strlen(reason);

	if (n > sizeof(last_words) - 1)
		n = sizeof(last_words) - 1;
	memcpy(last_words, reason, n);
	last_words[n] = '\0';
	printk("%s\n", last_words);
	irq_disable();
	hcall(LHCALL_SHUTDOWN, __pa(last_words), how, 0, 0);
	__builtin_trap();
}

void noreturn panic(const char *fmt, ...)
{
	static int panicking;
	char msg[120];
	va_list ap;

	irq_disable();
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* If the console itself panicked, fall back to the early one. */
	if (panicking++)
		console_output = NULL;
	printk("Kernel panic: ");
	power_off(msg, LGUEST_SHUTDOWN_POWEROFF);
}

/*
 * Tests want to see the other ways a Guest can end, so "crash" on the
 * command line makes us issue a hypercall number that does not exist.  The
 * Host has no way to report an error back, so it kills us ("Bad
 * hypercall 99").
 */
static void noreturn crash(void)
{
	printk("crash requested: calling bad hypercall 99\n");
	hcall(99, 0, 0, 0, 0);
	__builtin_trap();
}

/* Which ring are we in?  The low two bits of CS tell us (we expect 1). */
static u32 current_ring(void)
{
	u32 cs;

	asm volatile("mov %%cs, %0" : "=r"(cs));
	return cs & 3;
}

/* Is word one of the space-separated words of the command line? */
int cmdline_has_word(const char *word)
{
	const char *cmd = command_line;

	while (*cmd) {
		const char *w = word;

		while (*cmd == ' ')
			cmd++;
		while (*w && *cmd == *w) {
			cmd++;
			w++;
		}
		if (!*w && (*cmd == ' ' || *cmd == '\0'))
			return 1;
		while (*cmd && *cmd != ' ')
			cmd++;
	}
	return 0;
}

/*
 * G:140 The Launcher left us a "zero page" of boot parameters at physical
 * address 0 (head.S passed that address along).  We only need three
 * fields: how many e820 memory entries there are, the size of the first
 * (the Launcher gives exactly one, covering all our RAM), and the physical
 * address of the command line.  The Host's page tables map all RAM at
 * PAGE_OFFSET too, so __va() gets us there.
 */
#define BP_E820_ENTRIES		0x1E8	/* u8: how many e820 entries */
#define BP_CMD_LINE_PTR		0x228	/* u32: physical address of cmdline */
#define BP_E820_MAP		0x2D0	/* e820 entries: u64 addr, u64 size, u32 type */

static u32 bp_read32(const u8 *bp, u32 offset)
{
	return *(const u32 *)(bp + offset);
}

static u32 read_boot_params(u32 boot_params_pa)
{
	const u8 *bp = __va(boot_params_pa);
	u32 mem = 0, cmd_pa, i;

	/*
	 * The entry is 64-bit, but a 32-bit Guest with more than 4 GiB is
	 * not something the Launcher can build: the low word is enough.
	 */
	if (bp[BP_E820_ENTRIES] >= 1)
		mem = bp_read32(bp, BP_E820_MAP + 8);

	/* Copy the command line, if it points inside RAM. */
	cmd_pa = bp_read32(bp, BP_CMD_LINE_PTR);
	if (cmd_pa != 0 && cmd_pa < mem) {
		const char *src = __va(cmd_pa);

		for (i = 0; i < COMMAND_LINE_SIZE - 1 && cmd_pa + i < mem; i++) {
			if (!src[i])
				break;
			command_line[i] = src[i];
		}
	}
	return mem;
}

/* The two user programs run side by side; see user.c. */
static void run_user_demo(void)
{
	struct task *alpha = spawn_user("alpha", 0);
	struct task *beta = spawn_user("beta", 1);

	if (!alpha || !beta)
		panic("cannot start the user tasks");
	printk("demo: started user tasks alpha (pid %d) and beta (pid %d)\n",
	       alpha->id, beta->id);
	printk("demo: alpha exited with %d, ", task_wait(alpha));
	printk("beta exited with %d\n", task_wait(beta));
}

/*
 * G:150 This is where head.S sends us, at our virtual address, with a
 * stack and with the Host already knowing our lguest_data.  The order of
 * what follows matters:
 *
 * - the GDT and IDT first, so that any trap from here on has a handler;
 * - our own page tables (mm_init), which also sets up the page allocator
 *   everything after needs;
 * - task 0 and its kernel stack, then the FPU and the timer;
 * - only then interrupts on, and the devices on the lguest bus (D:100).
 */
void noreturn lguest_demo_main(u32 boot_params_pa)
{
	ram_size = read_boot_params(boot_params_pa);
	if (ram_size > 0x3F000000)	/* what fits below the reserved top */
		ram_size = 0x3F000000;
	printk("lguest demo guest " DEMO_VERSION ": hello from ring %u\n", current_ring());
	printk("boot_params: %u MiB RAM, command line \"%s\"\n", ram_size >> 20, command_line);
	/* These were written by the Host during LGUEST_INIT (G:110). */
	printk("lguest_data: pgdir %p reserve_mem %p tsc_khz %u\n",
	       lguest_data.pgdir, lguest_data.reserve_mem, lguest_data.tsc_khz);

	if (cmdline_has_word("crash"))
		crash();
	if (cmdline_has_word("reboot"))
		power_off("Restart", LGUEST_SHUTDOWN_RESTART);

	gdt_init();
	idt_init();
	mm_init();
	sched_init();
	fpu_init();
	timer_init();
	irq_enable();
	printk("kernel: own page tables at %p, %u pages free, FPU %s\n",
	       __pa(kernel_pgdir), pages_free,
	       fpu_present ? (fxsr_present ? "with FXSR" : "x87 only") : "not advertised");
	virtio_init();

	if (cmdline_has_word("selftest"))
		selftest();		/* never returns */
	run_user_demo();
	if (cmdline_has_word("bench"))
		bench();
	if (cmdline_has_word("monitor"))
		monitor();
	power_off("Power down", LGUEST_SHUTDOWN_POWEROFF);
}

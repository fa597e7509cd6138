/*
 * main.c - the demo Guest's C half: say hello, show what the Launcher gave
 * us, and ask the Host to turn us off.
 *
 * There is no libc here and no interrupts: just straight-line integer code
 * and hypercalls.
 */
#include "lguest.h"

#define DEMO_VERSION "0.1"

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
 * We never enable interrupts, so there is no iret path to protect and the
 * no-interrupt window [noirq_start, noirq_end) is left empty (0, 0).
 */
struct lguest_data lguest_data = {
	.irq_enabled = 0,
	.blocked_interrupts = 1,
	.hcall_status = { [0 ... LHCALL_RING_SIZE - 1] = 0xFF },
	.noirq_start = 0,
	.noirq_end = 0,
	.kernel_address = PAGE_OFFSET,
	.syscall_vec = SYSCALL_VECTOR,
};

/* Our private copy of the command line; the BSS keeps it NUL-terminated. */
static char command_line[COMMAND_LINE_SIZE];

/*
 * G:120 Before a Guest has a virtio console it still wants to talk, and
 * lguest gives it the simplest possible channel: LHCALL_NOTIFY with the
 * physical address of a NUL-terminated string of at most 16 characters.
 * The Host cannot make sense of that address, so it hands it to the
 * Launcher, which sees that it points into ordinary memory and prints it.
 *
 * So we cut every string into 16-character pieces, copy each into a small
 * buffer on our stack, and NOTIFY its physical address.  The stack is in
 * our BSS, so its physical address is simply virtual minus PAGE_OFFSET.
 */
static void early_write(const char *s)
{
	char buf[17];
	unsigned int n;

	while (*s) {
		for (n = 0; n < 16 && s[n]; n++)
			buf[n] = s[n];
		buf[n] = '\0';
		hcall(LHCALL_NOTIFY, __pa(buf), 0, 0, 0);
		s += n;
	}
}

/* Numbers are printed by turning them into strings first. */
static void early_write_dec(u32 v)
{
	char tmp[11];
	int i = sizeof(tmp) - 1;

	tmp[i] = '\0';
	do {
		tmp[--i] = '0' + v % 10;
		v /= 10;
	} while (v);
	early_write(&tmp[i]);
}

static void early_write_hex(u32 v)
{
	static const char digits[] = "0123456789abcdef";
	char tmp[11];
	int i;

	tmp[0] = '0';
	tmp[1] = 'x';
	for (i = 0; i < 8; i++)
		tmp[2 + i] = digits[(v >> (28 - 4 * i)) & 0xF];
	tmp[10] = '\0';
	early_write(tmp);
}

/*
 * G:130 A Guest cannot simply stop.  "hlt" is privileged and faults in
 * ring 1, and the HALT hypercall only sleeps until an interrupt, of which we
 * will never have any.  Instead we ask the Host with LHCALL_SHUTDOWN.  The first argument is the physical address of a reason
 * string (the Host reads up to 128 bytes of it), the second says whether
 * the Launcher should power off (1) or boot a fresh Guest (2).  Linux uses
 * "Power down" for the first; we do the same, and print it too so that the
 * reason shows up on the console.
 *
 * The Host never returns from this call.  If it somehow did, ud2 turns the
 * surprise into a trap we cannot handle, which the Host also kills us for.
 */
static void __attribute__((noreturn)) shutdown(const char *reason, u32 how)
{
	early_write(reason);
	early_write("\n");
	hcall(LHCALL_SHUTDOWN, __pa(reason), how, 0, 0);
	__builtin_trap();
}

/*
 * Tests want to see the other ways a Guest can end, so "crash" on the
 * command line makes us issue a hypercall number that does not exist.  The
 * Host has no way to report an error back, so it kills us ("Bad
 * hypercall 99").
 */
static void __attribute__((noreturn)) crash(void)
{
	early_write("crash requested: calling bad hypercall 99\n");
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
static int cmdline_has_word(const char *cmd, const char *word)
{
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

/*
 * G:150 This is where head.S sends us, at our virtual address, with a
 * stack and with the Host already knowing our lguest_data.  A real kernel
 * would now load its GDT and IDT, set up its clock and page tables and
 * start init; the demo just shows that it is alive and leaves.
 */
void __attribute__((noreturn)) lguest_demo_main(u32 boot_params_pa)
{
	u32 mem;

	early_write("lguest demo guest " DEMO_VERSION ": hello from ring ");
	early_write_dec(current_ring());
	early_write("\n");

	mem = read_boot_params(boot_params_pa);
	early_write("boot_params: ");
	early_write_dec(mem >> 20);
	early_write(" MiB RAM, command line \"");
	early_write(command_line);
	early_write("\"\n");

	/* These were written by the Host during LGUEST_INIT (G:110). */
	early_write("lguest_data: pgdir ");
	early_write_hex(lguest_data.pgdir);
	early_write(" reserve_mem ");
	early_write_hex(lguest_data.reserve_mem);
	early_write("\n");

	if (cmdline_has_word(command_line, "crash"))
		crash();
	if (cmdline_has_word(command_line, "reboot"))
		shutdown("Restart", LGUEST_SHUTDOWN_RESTART);
	shutdown("Power down", LGUEST_SHUTDOWN_POWEROFF);
}

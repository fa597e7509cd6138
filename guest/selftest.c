/*
 * selftest.c - "selftest" on the command line: check every part of the
 * Host we can reach, one line per check, and power off with the verdict.
 */
#include "virtio.h"

extern char _text[];

static u32 passed, failed, skipped;

static void pass(const char *name)
{
	passed++;
	printk("PASS %s\n", name);
}

static void fail(const char *name, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	failed++;
	printk("FAIL %s: %s\n", name, why);
}

static void skip(const char *name, const char *why)
{
	skipped++;
	printk("SKIP %s: %s\n", name, why);
}

#define CHECK(name, cond, ...) do {			\
		if (cond)				\
			pass(name);			\
		else					\
			fail(name, __VA_ARGS__);	\
	} while (0)

static void test_boot(void)
{
	u32 cs;

	asm volatile("mov %%cs, %0" : "=r"(cs));
	CHECK("boot", (cs & 3) == 1 && lguest_data.reserve_mem == 0x400000 && ram_size,
	      "cs %x reserve_mem %x ram %x", cs, lguest_data.reserve_mem, ram_size);
}

/*
 * G:500 The selftest's trap checks provoke exceptions in the kernel on
 * purpose.  Each arms the probe (traps.c) with the vector it expects and
 * the address to resume at, the label after the faulting instruction, then
 * runs that instruction.  The handler records what it saw and moves EIP to
 * the label, so the test carries on as if the instruction had been skipped.
 */
#define PROBE(vec, insn, ...) do {					\
		probe.hit = 0;						\
		probe.vector = (vec);					\
		asm volatile("movl $1f, %0\n\t" insn "\n1:"		\
			     : "=m"(probe.resume) : __VA_ARGS__);	\
		probe.vector = -1;					\
	} while (0)

static void test_traps(void)
{
	u32 al = 0;
	int ok = 1;

	PROBE(3, "int3", "i"(0) : "memory");
	ok &= probe.hit == 1;
	PROBE(6, "ud2", "i"(0) : "memory");
	ok &= probe.hit == 1;
	PROBE(0, "divl %%ecx", "a"(1), "d"(0), "c"(0) : "memory");
	ok &= probe.hit == 1;
	CHECK("traps", ok, "int3/#UD/#DE not all delivered");

	/* Ring 1 may not touch control registers: #GP with error code 0. */
	PROBE(13, "movl %%cr0, %%eax", "i"(0) : "eax", "memory");
	CHECK("gp", probe.hit == 1 && probe.error == 0, "hit %u error %x", probe.hit, probe.error);

	/* Port reads are emulated by the Host: nothing there, all ones. */
	asm volatile("inb $0x80, %%al" : "+a"(al));
	CHECK("io-emulation", (al & 0xFF) == 0xFF, "inb gave %x", al);
}

/*
 * LOAD_GDT_ENTRY gave us user data segments (G:210); LOAD_TLS fills slot 6.
 * Point a TLS descriptor at a variable and read it through %fs.
 */
static void test_segments(void)
{
	static u32 desc[6], target = 0x5EC7105;
	u32 via_fs = 0, via_user_ds = 0;
	void make_tls_desc(u32 *desc, u32 base);

	make_tls_desc(desc, (u32)&target);
	hcall(LHCALL_LOAD_TLS, __pa(desc), 0, 0, 0);
	asm volatile("movl %2, %%fs\n\t"
		     "movl %%fs:0, %0\n\t"
		     "movl %3, %%fs\n\t"
		     "movl %%fs:(%4), %1\n\t"
		     "movl %5, %%fs"
		     : "=&r"(via_fs), "=&r"(via_user_ds)
		     : "r"(__USER_TLS), "r"(__USER_DS), "r"(&target), "r"(0));
	CHECK("gdt-tls", via_fs == target && via_user_ds == target,
	      "read %x via TLS, %x via user DS", via_fs, via_user_ds);
}

static u32 count_queued(void)
{
	u32 i, n = 0;

	for (i = 0; i < LHCALL_RING_SIZE; i++)
		n += lguest_data.hcall_status[i] != 0xFF;
	return n;
}

static void test_paging(void)
{
	u8 *a = alloc_page(), *b = alloc_page();
	volatile u8 *win = (volatile u8 *)SCRATCH_VA;
	u8 *pages[16];
	u32 i, queued, ok = 1, flags;

	/* Our text is mapped read-only: a write must fault with P|W. */
	PROBE(14, "incb (%2)", "i"(0), "r"(_text + 0x40) : "memory");
	CHECK("kernel-text-ro", probe.hit == 1 && (probe.error & 3) == 3 &&
	      probe.cr2 == (u32)_text + 0x40,
	      "hit %u error %x cr2 %p", probe.hit, probe.error, probe.cr2);

	/* Remapping one address must take effect at once (SET_PTE). */
	a[0] = 'A';
	b[0] = 'B';
	set_pte(kernel_pgdir, SCRATCH_VA, __pa(a) | _PAGE_PRESENT | _PAGE_RW);
	ok &= win[0] == 'A';
	set_pte(kernel_pgdir, SCRATCH_VA, __pa(b) | _PAGE_PRESENT | _PAGE_RW);
	ok &= win[0] == 'B';
	set_pte(kernel_pgdir, SCRATCH_VA, 0);
	PROBE(14, "movb (%2), %%al", "i"(0), "r"(win) : "eax", "memory");
	ok &= probe.hit == 1 && probe.cr2 == SCRATCH_VA && !(probe.error & 1);
	CHECK("set-pte", ok, "remap or unmap of %p not seen", SCRATCH_VA);

	/*
	 * Sixteen mappings in one batch through the asynchronous ring.  Any
	 * synchronous hypercall drains the ring (the timer interrupt makes
	 * one), so interrupts stay off while we count what is queued.
	 */
	ok = 1;
	flags = irq_save();
	lazy_begin();
	for (i = 0; i < 16; i++) {
		pages[i] = alloc_page();
		pages[i][0] = 0x40 + i;
		set_pte(kernel_pgdir, SCRATCH_VA + i * PAGE_SIZE,
			__pa(pages[i]) | _PAGE_PRESENT | _PAGE_RW);
	}
	queued = count_queued();
	lazy_end();
	irq_restore(flags);
	for (i = 0; i < 16; i++)
		ok &= win[i * PAGE_SIZE] == 0x40 + i;
	CHECK("async-ring", ok && queued == 16 && count_queued() == 0,
	      "queued %u, left %u, contents %s", queued, count_queued(), ok ? "ok" : "wrong");
	lazy_begin();
	for (i = 0; i < 16; i++) {
		set_pte(kernel_pgdir, SCRATCH_VA + i * PAGE_SIZE, 0);
		free_page(pages[i]);
	}
	lazy_end();
	free_page(a);
	free_page(b);
}

static void test_timer(void)
{
	u32 j0 = jiffies, h0 = halts, t0 = uptime_ms(), dj, dt;

	sleep_ms(100);
	dj = jiffies - j0;
	dt = uptime_ms() - t0;
	CHECK("timer", dj >= 9 && dj <= 40 && dt >= 90 && dt < 1000,
	      "%u ticks and %u ms for a 100 ms sleep", dj, dt);
	CHECK("halt", halts > h0, "the idle loop never halted");
}

/* smsw shows the TS bit the Host keeps for us (LHCALL_TS). */
static u32 smsw(void)
{
	u32 v;

	asm volatile("smsw %0" : "=r"(v));
	return v;
}

static void test_ts(void)
{
	u32 before = smsw() & 8, set, clear;

	hcall(LHCALL_TS, 1, 0, 0, 0);
	set = smsw() & 8;
	hcall(LHCALL_TS, 0, 0, 0, 0);
	clear = smsw() & 8;
	hcall(LHCALL_TS, before, 0, 0, 0);
	CHECK("ts", set && !clear && (!!before == !!fpu_present),
	      "TS after set %x, after clear %x, at start %x", set, clear, before);
}

static void test_tasks(void)
{

	struct task *a = spawn_user("alpha", 0), *b = spawn_user("beta", 1);
	u32 cs0 = context_switches, nm0 = nm_traps;
	int ea, eb;

	if (!a || !b) {
		fail("tasks", "cannot spawn");
		return;
	}
	ea = task_wait(a);
	eb = task_wait(b);
	CHECK("tasks", ea >= 0 && eb >= 0 && context_switches > cs0,
	      "exit codes %d and %d", ea, eb);
	CHECK("syscalls", a->syscalls >= 5 && b->syscalls >= 3 && ea >= 0 && !(ea & 8),
	      "%u and %u system calls, exit %d", a->syscalls, b->syscalls, ea);
	CHECK("tls", ea >= 0 && eb >= 0 && !((ea | eb) & 1), "TLS id mismatch");
	CHECK("demand-zero", a->stack_pages >= 3 && b->stack_pages >= 5 &&
	      ea >= 0 && eb >= 0 && !((ea | eb) & 2),
	      "stack pages %u and %u, exit codes %d and %d",
	      a->stack_pages, b->stack_pages, ea, eb);
	CHECK("preempt", b->preempted > 0, "beta was never preempted");
	if (!fpu_present)
		skip("fpu", "not advertised");
	else
		CHECK("fpu", ea >= 0 && eb >= 0 && !((ea | eb) & 4) && nm_traps - nm0 >= 2,
		      "exit codes %d and %d, %u #NM traps", ea, eb, nm_traps - nm0);

	a = spawn_user("gamma", 2);
	b = spawn_user("delta", 3);
	if (!a || !b) {
		fail("user-faults", "cannot spawn");
		return;
	}
	ea = task_wait(a);
	eb = task_wait(b);
	CHECK("user-faults", ea == -15 && eb == -14,
	      "gamma exited %d (want -15), delta %d (want -14)", ea, eb);
}

static void test_console(void)
{
	if (!console_input_ready) {
		skip("console", "no virtio console");
		return;
	}
	/* Getting this far through it is the test: it would have fallen back. */
	CHECK("console", console_output != NULL, "fell back to the early console");
}

/*
 * The block test writes the last sector of the disk, reads it back, and
 * leaves it there: the Python test checks the image file from the host.
 */
static void test_blk(void)
{
	static u8 out[512], in[512];
	u32 last, i;
	int w, r;

	if (!blk_capacity) {
		skip("blk", "no virtio block device");
		return;
	}
	last = (u32)blk_capacity - 1;
	memset(out, 0, sizeof(out));
	snprintf((char *)out, sizeof(out), "lguest demo guest selftest: sector %u\n", last);
	for (i = 128; i < 512; i++)
		out[i] = (u8)i;
	w = blk_rw(1, last, out, 1);
	r = blk_rw(0, last, in, 1);
	CHECK("blk", w == 0 && r == 0 && memcmp(out, in, 512) == 0,
	      "write %d, read %d, data %s", w, r, memcmp(out, in, 512) ? "differs" : "ok");
}

static void test_rng(void)
{
	u8 a[32], b[32];
	u32 i, zero = 1;
	int na, nb;

	if (!rng_ready) {
		skip("rng", "no virtio rng");
		return;
	}
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	na = rng_read(a, sizeof(a));
	nb = rng_read(b, sizeof(b));
	for (i = 0; i < sizeof(a); i++)
		zero &= !a[i];
	CHECK("rng", na == 32 && nb == 32 && !zero && memcmp(a, b, 32),
	      "got %d and %d bytes", na, nb);
}

/*
 * G:510 With "netpeer" on the command line two guests on one network
 * find each other: each broadcasts HELLO frames until it has both seen a
 * HELLO from someone else and had its own HELLO acknowledged; every HELLO
 * from someone else gets an ACK.  It then keeps answering for a moment, so
 * that a slower peer gets its ACK too.
 */
#define ETH_P_DEMO	0x88B5		/* "local experimental" */

static void test_net(void)
{
	static const u8 bcast[6] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
	u8 frame[128];
	u32 deadline, linger = 0;
	int heard = 0, acked = 0;

	if (!net_ready) {
		skip("net", "no virtio net device");
		return;
	}
	CHECK("net", net_send(bcast, ETH_P_DEMO, "demo: test frame", 16) == 0,
	      "transmit did not complete");
	if (!cmdline_has_word("netpeer"))
		return;
	deadline = uptime_ms() + 10000;
	while (uptime_ms() < deadline && (!linger || uptime_ms() < linger)) {
		int n;

		if (!acked || !heard)
			net_send(bcast, ETH_P_DEMO, "HELLO", 5);
		while ((n = net_recv(frame, sizeof(frame), 100)) >= 19) {
			if (memcmp(frame + 6, net_mac, 6) == 0 ||
			    frame[12] != ETH_P_DEMO >> 8 || frame[13] != (ETH_P_DEMO & 0xFF))
				continue;
			if (!memcmp(frame + 14, "HELLO", 5)) {
				heard = 1;
				net_send(frame + 6, ETH_P_DEMO, "ACK!!", 5);
			} else if (!memcmp(frame + 14, "ACK!!", 5) && !memcmp(frame, net_mac, 6)) {
				acked = 1;
			}
		}
		if (heard && acked && !linger)
			linger = uptime_ms() + 500;
	}
	CHECK("net-peer", heard && acked, "heard a peer: %s, acknowledged: %s",
	      heard ? "yes" : "no", acked ? "yes" : "no");
}

/*
 * G:520 The verdict travels the way every Guest's last words do: the
 * SHUTDOWN reason.  "Power down" is what the Launcher calls a clean
 * power-off (exit status 0); any other text, like a panic message, is a
 * crash (status 1).
 */
void selftest(void)
{
	printk("selftest: starting\n");
	test_boot();
	test_traps();
	test_segments();
	test_paging();
	test_ts();
	test_timer();
	test_tasks();
	CHECK("bus", 1, "");
	test_console();
	test_blk();
	test_rng();
	test_net();
	printk("selftest: %u passed, %u failed, %u skipped\n", passed, failed, skipped);
	if (failed) {
		char why[64];

		snprintf(why, sizeof(why), "selftest failed: %u check(s)", failed);
		power_off(why, LGUEST_SHUTDOWN_POWEROFF);
	}
	power_off("Power down", LGUEST_SHUTDOWN_POWEROFF);
}

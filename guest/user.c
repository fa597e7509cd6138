/*
 * user.c - the two ring-3 programs, "alpha" and "beta".
 *
 * This file is not part of the kernel: it is linked on its own at
 * USER_CODE (user.lds), turned into a flat binary and embedded in the
 * kernel image (user_blob.S), which maps those pages read-only into every
 * user address space.  So it may not call kernel functions or have
 * writable globals: everything it knows lives on its stack, in its TLS page
 * (through %gs) or comes from system calls.  Unlike the kernel, it is
 * compiled with x87 floating point allowed.
 */
#include "syscalls.h"

typedef unsigned int u32;

/*
 * G:340 The user side of a system call: the number in EAX, arguments in
 * EBX, ECX, EDX, "int $0x80", and the result back in EAX.
 */
static inline int syscall2(int nr, u32 a, u32 b)
{
	int ret;

	asm volatile("int $0x80" : "=a"(ret) : "0"(nr), "b"(a), "c"(b) : "memory");
	return ret;
}

/* Print "<name>: <text><number>\n" in one write, so lines stay whole. */
static void say(const char *text, u32 num)
{
	char line[96], digits[12];
	u32 n = 0, i, k = 0;
	const char *name;

	/* Our name is in the TLS page (USER_TLS), after two words. */
	name = (const char *)(0x08040000 + 8);
	for (i = 0; name[i] && n < 16; i++)
		line[n++] = name[i];
	line[n++] = ':';
	line[n++] = ' ';
	for (i = 0; text[i] && n < 70; i++)
		line[n++] = text[i];
	if (num != ~0U) {
		do {
			digits[k++] = '0' + num % 10;
			num /= 10;
		} while (num);
		while (k)
			line[n++] = digits[--k];
	}
	line[n++] = '\n';
	syscall2(SYS_WRITE, (u32)line, n);
}

/* Our TLS word i, read through %gs, whose base is our TLS page. */
static u32 tls_word(u32 i)
{
	u32 v;

	asm volatile("movl %%gs:(,%1,4), %0" : "=r"(v) : "r"(i));
	return v;
}

static u32 rdtsc_lo(void)
{
	u32 lo, hi;

	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return lo;
}

/* CPUID is not privileged: user space asks the processor itself. */
static int have_fpu(void)
{
	u32 a = 1, b, c, d;

	asm volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d));
	return d & 1;
}

/*
 * G:350 Each level of this recursion puts almost a page of locals on the
 * stack.  The stack starts with no pages at all (G:300), so every new
 * level faults (the fault's way through the Host starts at H:407), and the
 * kernel hands out a zeroed page.  We check that the
 * fresh memory really is zero, fill it, and check after the deeper levels
 * returned that our pattern survived.  Returns the number of bad bytes.
 */
/* Reading the fresh stack before writing it is the point here. */
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
static u32 __attribute__((noinline)) stack_test(u32 depth)
{
	volatile unsigned char buf[3500];
	u32 i, bad = 0;

	for (i = 0; i < sizeof(buf); i++)
		if (buf[i])
			bad++;
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i + depth);
	if (depth > 1)
		bad += stack_test(depth - 1);
	for (i = 0; i < sizeof(buf); i++)
		if (buf[i] != (unsigned char)(i + depth))
			bad++;
	return bad;
}

/*
 * G:360 Floating point across task switches.  Both programs run a long
 * x87 sum and yield to each other every hundred steps.  The running sum
 * stays in an FPU register across the yield (the system call is an inline
 * asm that does not clobber it), so the result is right only if the kernel
 * saved and restored each task's FPU registers when the other one used
 * the FPU: the lazy switching of G:320.
 */
static u32 __attribute__((noinline)) fp_work(int squares)
{
	double sum = 0.0;
	u32 k;

	for (k = 1; k <= 2000; k++) {
		double x = (double)k;

		sum += squares ? 1.0 / (x * x) : 1.0 / x;
		if (k % 100 == 0)
			syscall2(SYS_YIELD, 0, 0);
	}
	return squares ? (u32)(sum * 1e5) : (u32)(sum * 1e4);
}

/*
 * The checks both programs make; the exit code has one bit per failure,
 * which the selftest reads back.
 */
static u32 common_checks(u32 depth, int squares)
{
	u32 fails = 0, pid = syscall2(SYS_GETPID, 0, 0);

	/* First, while the stack below us has never been touched. */
	if (stack_test(depth))
		fails |= 2;
	if (tls_word(0) != pid)
		fails |= 1;
	say("hello from ring 3, pid ", pid);
	if (have_fpu()) {
		u32 r = fp_work(squares);

		if (r != (squares ? 164443 : 81783))
			fails |= 4;
		say("fp result ", r);
	} else {
		say("no FPU advertised, skipping floating point", ~0U);
	}
	return fails;
}

/* alpha: sleeps between lines; its wake-ups need the timer. */
static void alpha(void)
{
	u32 fails = common_checks(3, 1), i;

	for (i = 1; i <= 3; i++) {
		say("tick ", i);
		syscall2(SYS_SLEEP, 20, 0);
	}
	/* An unknown system call must fail with -ENOSYS. */
	if (syscall2(99, 0, 0) != -38)
		fails |= 8;
	say("exiting with ", fails);
	syscall2(SYS_EXIT, fails, 0);
}

/*
 * beta: spins for about 60 ms without a single system call.  Only the
 * timer interrupt can take the processor away from it, which is what the
 * selftest's preemption check looks for.
 */
static void beta(void)
{
	u32 fails = common_checks(5, 0), start = rdtsc_lo(), spins = 0;

	while (rdtsc_lo() - start < 60000000)
		spins++;
	say("spun without yielding, loops: ", spins);
	say("exiting with ", fails);
	syscall2(SYS_EXIT, fails, 0);
}

/*
 * gamma and delta misbehave on purpose, for the selftest: a write to a
 * kernel address (the page is not user-accessible, so: page fault) and a
 * hypercall from ring 3 (the Host's gate for 0x1F has DPL 1, so: general
 * protection fault).  Either way the kernel must kill only the task.
 */
static void gamma(void)
{
	say("writing to a kernel address", ~0U);
	*(volatile u32 *)0xC0100000 = 0;
	syscall2(SYS_EXIT, 0, 0);
}

static void delta(void)
{
	say("making a hypercall from ring 3", ~0U);
	asm volatile("int $0x1f");
	syscall2(SYS_EXIT, 0, 0);
}

/*
 * The header the kernel reads (spawn_user in sched.c): a magic word, the
 * number of programs, and their entry points.  user.lds puts it first.
 */
__attribute__((section(".user.head"), used))
const u32 user_header[] = {
	0x52455355, 4, (u32)alpha, (u32)beta, (u32)gamma, (u32)delta
};

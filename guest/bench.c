/*
 * bench.c - CPU workloads timed by the Guest itself.
 */
#include "virtio.h"

static u8 sieve_bits[1000000 / 8 + 1];
static u8 bench_buf[256 * 1024];
static u8 copy_buf[256 * 1024];

static u32 sieve(u32 n)
{
	u32 i, j, count = 0;

	memset(sieve_bits, 0, sizeof(sieve_bits));
	for (i = 2; i < n; i++) {
		if (sieve_bits[i / 8] & (1 << (i % 8)))
			continue;
		count++;
		for (j = i + i; j < n; j += i)
			sieve_bits[j / 8] |= 1 << (j % 8);
	}
	return count;
}

static u32 fib(u32 n)
{
	return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static u32 copy_loop(void)
{
	u32 k;

	for (k = 0; k < 16; k++)
		asm volatile("rep movsl"
			     : : "S"(bench_buf), "D"(copy_buf), "c"(sizeof(copy_buf) / 4)
			     : "memory");
	return copy_buf[12345];
}

static u32 hypercalls(void)
{
	u32 k;

	for (k = 0; k < 1000; k++)
		hcall(LHCALL_FLUSH_ASYNC, 0, 0, 0, 0);
	return k;
}

static u32 busy_loop(void)
{
	u32 k, x = 0;

	for (k = 0; k < 5000000; k++)
		x = (x ^ k) + (x << 1);
	asm volatile("" : : "r"(x));
	return x;
}

/*
 * G:530 Each workload is timed with our clock (the TSC, which the Host
 * runs at tsc_khz): what the Guest itself experiences, interpreter and
 * all.  The hypercall round trip shows what a trap out of the Guest costs.
 */
void bench(void)
{
	static const struct {
		const char *name, *what;
		u32 (*fn)(void);
	} work[] = {
		{ "loop", "5M add/xor/shift iterations", busy_loop },
		{ "sieve", "primes below 1000000", NULL },
		{ "fib", "fib(24) recursively", NULL },
		{ "crc32", "256 KiB bitwise", NULL },
		{ "memcpy", "16 x 256 KiB rep movsl", copy_loop },
		{ "hypercall", "1000 FLUSH_ASYNC round trips", hypercalls },
	};
	u32 i;

	for (i = 0; i < sizeof(bench_buf); i++)
		bench_buf[i] = (u8)(i * 7);
	printk("bench: %u workloads, times measured by the guest\n", (u32)ARRAY_SIZE(work));
	for (i = 0; i < ARRAY_SIZE(work); i++) {
		u64 t0 = clock_ns(), dt;
		u32 result, us;

		if (i == 1)
			result = sieve(1000000);
		else if (i == 2)
			result = fib(24);
		else if (i == 3)
			result = crc32(0, bench_buf, sizeof(bench_buf));
		else
			result = work[i].fn();
		dt = clock_ns() - t0;
		div64(&dt, 1000);
		us = (u32)dt;
		printk("bench: %-10s %-30s %8u.%03u ms  (result %x)\n", work[i].name, work[i].what,
		       us / 1000, us % 1000, result);
	}
	if (!fpu_present)
		printk("bench: floating point skipped (no FPU advertised)\n");
}

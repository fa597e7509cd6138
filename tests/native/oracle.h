/* Tiny freestanding runtime for the silicon-oracle programs (i386 Linux, static).
 *
 * Built with: gcc -m32 -ffreestanding -nostdlib -static -O2 -fno-pic
 *             -fno-stack-protector -Wl,--build-id=none
 * Output is text, one record per line: "tag in... -> out... flags", so a
 * mismatch is easy to read.  Only write(2) and exit(2) are used (int $0x80).
 *
 * Every flag value printed is masked to what the Intel SDM defines for that
 * instruction; the masks mirror FLAG_TABLE in tests/diffharness.py.
 */
#ifndef ORACLE_H
#define ORACLE_H

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef int s32;

#define CF 0x001u
#define PF 0x004u
#define AF 0x010u
#define ZF 0x040u
#define SF 0x080u
#define DF 0x400u
#define OF 0x800u
#define STATUS (CF | PF | AF | ZF | SF | OF)

static int sys_write(int fd, const void *buf, u32 n)
{
    int ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "0"(4), "b"(fd), "c"(buf), "d"(n) : "memory");
    return ret;
}

static void __attribute__((noreturn)) sys_exit(int code)
{
    __asm__ volatile("int $0x80" : : "a"(1), "b"(code) : "memory");
    for (;;)
        ;
}

/* gcc may emit calls to these even when freestanding; keep it from turning
 * their own loops back into calls to themselves. */
#define NO_LIBCALL __attribute__((optimize("no-tree-loop-distribute-patterns"), used))
void *memset(void *d, int c, u32 n) NO_LIBCALL;
void *memcpy(void *d, const void *s, u32 n) NO_LIBCALL;
void *memset(void *d, int c, u32 n)
{
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}
void *memcpy(void *d, const void *s, u32 n)
{
    u8 *p = d;
    const u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

static char outbuf[8192];
static u32 outpos;

static void flush(void)
{
    u32 off = 0;
    while (off < outpos) {
        int n = sys_write(1, outbuf + off, outpos - off);
        if (n <= 0)
            sys_exit(3);
        off += (u32)n;
    }
    outpos = 0;
}

static void putch(char c)
{
    if (outpos == sizeof outbuf)
        flush();
    outbuf[outpos++] = c;
}

static void puts_(const char *s)
{
    while (*s)
        putch(*s++);
}

static void hex(u32 v)
{
    static const char digits[] = "0123456789abcdef";
    int i;
    for (i = 28; i >= 0; i -= 4)
        putch(digits[(v >> i) & 15]);
}

static void field(u32 v)
{
    putch(' ');
    hex(v);
}

/* "tag a b c -> r1 r2 fl\n" */
static void rec(const char *tag, u32 a, u32 b, u32 c, u32 r1, u32 r2, u32 fl)
{
    puts_(tag);
    field(a);
    field(b);
    field(c);
    puts_(" ->");
    field(r1);
    field(r2);
    field(fl);
    putch('\n');
}

/* xorshift32: the same inputs on every CPU */
static u32 rng_state = 0x12345678;
static u32 rnd(void)
{
    u32 x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

static const u32 special[] = {
    0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000,
    0x7fffffff, 0x80000000, 0x80000001, 0xfffffffe, 0xffffffff, 0x12345678, 0x9abcdef0,
};
#define NSPECIAL (sizeof special / sizeof special[0])

/* value #i of a test vector: specials first, then pseudo-random */
static u32 vec(u32 i)
{
    return i < NSPECIAL ? special[i] : rnd();
}

static void run(void);

void __attribute__((noreturn, used, force_align_arg_pointer)) _start(void)
{
    run();
    flush();
    sys_exit(0);
}

#endif

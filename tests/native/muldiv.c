/* MUL/IMUL (1, 2 and 3 operands) and DIV/IDIV at 8/16/32 bits.
 * MUL/IMUL: only CF and OF are defined.  DIV/IDIV: no flag is defined; inputs
 * are built so the quotient fits (no #DE). */
#include "oracle.h"

#define NVEC 26
#define MULMASK (CF | OF)

#define MUL1(fn, insn, W)                                                                   \
    static void fn(u32 a, u32 b)                                                            \
    {                                                                                       \
        u32 lo = a, hi = 0x5a5a5a5a, fl;                                                    \
        __asm__ volatile("pushl $0x8d7\n\tpopfl\n\t" insn " %" W "[b]\n\tpushfl\n\tpopl %[fl]" \
                         : "+a"(lo), "+d"(hi), [fl] "=&r"(fl)                                \
                         : [b] "q"(b)                                                       \
                         : "cc");                                                           \
        rec(#fn, a, b, 0, lo, hi, fl & MULMASK);                                            \
    }

MUL1(mulb, "mulb", "b")
MUL1(mulw, "mulw", "w")
MUL1(mull, "mull", "k")
MUL1(imul1b, "imulb", "b")
MUL1(imul1w, "imulw", "w")
MUL1(imul1l, "imull", "k")

#define IMUL2(fn, insn, W)                                                                  \
    static void fn(u32 a, u32 b)                                                            \
    {                                                                                       \
        u32 r = a, fl;                                                                      \
        __asm__ volatile("pushl $0x2\n\tpopfl\n\t" insn " %" W "[b], %" W "[r]\n\tpushfl\n\tpopl %[fl]" \
                         : [r] "+r"(r), [fl] "=&r"(fl)                                      \
                         : [b] "r"(b)                                                       \
                         : "cc");                                                           \
        rec(#fn, a, b, 0, r, 0, fl & MULMASK);                                              \
    }
IMUL2(imul2w, "imulw", "w")
IMUL2(imul2l, "imull", "k")

#define IMUL3(fn, insn, W, IMM)                                                             \
    static void fn(u32 a, u32 b)                                                            \
    {                                                                                       \
        u32 r = 0x33333333, fl;                                                             \
        (void)b;                                                                            \
        __asm__ volatile("pushl $0x2\n\tpopfl\n\t" insn " $" #IMM ", %" W "[a], %" W "[r]\n\t" \
                         "pushfl\n\tpopl %[fl]"                                             \
                         : [r] "+r"(r), [fl] "=&r"(fl)                                      \
                         : [a] "r"(a)                                                       \
                         : "cc");                                                           \
        rec(#fn, a, IMM, 0, r, 0, fl & MULMASK);                                            \
    }
IMUL3(imul3w_m3, "imulw", "w", -3)
IMUL3(imul3w_big, "imulw", "w", 0x1234)
IMUL3(imul3l_m3, "imull", "k", -3)
IMUL3(imul3l_big, "imull", "k", 0x12345)
IMUL3(imul3l_min, "imull", "k", -0x80000000)

typedef void (*mulfn)(u32, u32);
static const mulfn muls[] = {mulb, mulw, mull, imul1b, imul1w, imul1l, imul2w, imul2l,
                             imul3w_m3, imul3w_big, imul3l_m3, imul3l_big, imul3l_min};

/* ---- division ---- */
#define DIV(fn, insn, W)                                                                    \
    static void fn(u32 lo, u32 hi, u32 d)                                                   \
    {                                                                                       \
        u32 a = lo, dx = hi;                                                                \
        __asm__ volatile(insn " %" W "[d]" : "+a"(a), "+d"(dx) : [d] "q"(d) : "cc");        \
        rec(#fn, lo, hi, d, a, dx, 0);                                                      \
    }
DIV(divb, "divb", "b")
DIV(divw, "divw", "w")
DIV(divl, "divl", "k")
DIV(idivb, "idivb", "b")
DIV(idivw, "idivw", "w")
DIV(idivl, "idivl", "k")

typedef unsigned long long u64;
typedef long long s64;

/* unsigned: n = q*d + r with q < 2^bits */
static void udiv_case(u32 bits, u32 q, u32 d, u32 r)
{
    u64 mask = bits == 32 ? 0xffffffffull : ((1ull << bits) - 1);
    u64 n;
    q &= (u32)mask;
    d &= (u32)mask;
    if (!d)
        d = 1;
    r = d > 1 ? r % d : 0; /* 32-bit modulo: plain div instruction, no libgcc */
    n = (u64)q * d + r;
    if (bits == 8)
        divb((u32)n | 0xabcd0000u, 0x12345678, d | 0xffffff00u);
    else if (bits == 16)
        divw(((u32)n & 0xffff) | 0xabcd0000u, (u32)(n >> 16) | 0x12340000u, d | 0xffff0000u);
    else
        divl((u32)n, (u32)(n >> 32), d);
}

static u32 uabs(s32 x) { return x < 0 ? -(u32)x : (u32)x; }

/* signed: n = q*d + r, |r| < |d|, sign(r) = sign(n) */
static void sdiv_case(u32 bits, s32 q, s32 d, u32 r0)
{
    s64 n;
    u32 r;
    s32 lim = bits == 32 ? 0 : (s32)(1u << (bits - 1));
    if (bits < 32) { /* wrap into the signed range of the width */
        q = (s32)((u32)q << (32 - bits)) >> (32 - bits);
        d = (s32)((u32)d << (32 - bits)) >> (32 - bits);
    }
    (void)lim;
    if (!d)
        d = 1;
    r = uabs(d) > 1 ? r0 % uabs(d) : 0;
    n = (s64)q * d;
    n += n < 0 ? -(s64)r : (s64)r;
    if (n == 0 && r)
        n = 0;
    if (bits == 8)
        idivb(((u32)n & 0xffff) | 0xabcd0000u, 0x12345678, (u32)d | 0xffffff00u);
    else if (bits == 16)
        idivw(((u32)n & 0xffff) | 0xabcd0000u, ((u32)((u64)n >> 16) & 0xffff) | 0x12340000u,
              ((u32)d & 0xffff) | 0xffff0000u);
    else
        idivl((u32)n, (u32)((u64)n >> 32), (u32)d);
}

static void run(void)
{
    static u32 v[NVEC];
    u32 i, j, n, bits;
    for (i = 0; i < NVEC; i++)
        v[i] = vec(i);
    for (n = 0; n < sizeof muls / sizeof muls[0]; n++)
        for (i = 0; i < NVEC; i++)
            for (j = 0; j < NVEC; j++)
                muls[n](v[i], v[j]);
    for (bits = 8; bits <= 32; bits *= 2)
        for (i = 0; i < NVEC; i++)
            for (j = 0; j < NVEC; j++) {
                u32 r = rnd();
                udiv_case(bits, v[i], v[j], r);
                sdiv_case(bits, (s32)v[i], (s32)v[j], r);
                if ((i & 7) == 0) { /* small quotients too */
                    udiv_case(bits, v[i] & 0xff, v[j], r);
                    sdiv_case(bits, (s32)(v[i] & 0xff) - 128, (s32)v[j], r);
                }
            }
    /* the most negative quotient that still fits */
    idivb(0xff80 | 0xabcd0000u, 0, 0xff01); /* -128 / 1 */
    idivb(0x0080, 0, 0xffff);                /* 128 / -1 = -128 */
    idivw(0x8000, 0x0000, 0xffff);           /* 32768 / -1 */
    idivl(0x80000000u, 0, 0xffffffffu);      /* 2^31 / -1 = -2^31 */
    idivl(0x80000000u, 0xffffffffu, 1);      /* -2^31 / 1 */
}

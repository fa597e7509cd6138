/* LOCK-prefixed read-modify-write instructions on memory: same results and flags
 * as without LOCK; CMPXCHG8B keeping the other flags.  (unicorn 2.1 gets the
 * flags of LOCK NEG and of CMPXCHG8B-after-ADD wrong.) */
#include "oracle.h"

static u32 mem[2];

#define LK(fn, insn, W, MASK)                                                               \
    static void fn(u32 a, u32 b, u32 fin)                                                   \
    {                                                                                       \
        u32 fl, bb = b;                                                                     \
        mem[0] = a;                                                                         \
        __asm__ volatile("pushl %[fin]\n\tpopfl\n\tlock " insn "\n\tpushfl\n\tpopl %[fl]"   \
                         : [fl] "=&r"(fl), [m] "+m"(mem[0]), [b] "+q"(bb)                   \
                         : [fin] "r"(fin)                                                   \
                         : "cc", "memory");                                                 \
        rec(#fn, a, b, fin, mem[0], bb, fl & (MASK));                                       \
    }
#define LK3(op, MASK)                                                                       \
    LK(lock_##op##b, #op "b %b[b], %[m]", "b", MASK)                                        \
    LK(lock_##op##w, #op "w %w[b], %[m]", "w", MASK)                                        \
    LK(lock_##op##l, #op "l %k[b], %[m]", "k", MASK)
#define LK3U(op, MASK)                                                                      \
    LK(lock_##op##b, #op "b %[m]", "b", MASK)                                               \
    LK(lock_##op##w, #op "w %[m]", "w", MASK)                                               \
    LK(lock_##op##l, #op "l %[m]", "k", MASK)

LK3(add, STATUS)
LK3(adc, STATUS)
LK3(sub, STATUS)
LK3(sbb, STATUS)
LK3(and, STATUS & ~AF)
LK3(or, STATUS & ~AF)
LK3(xor, STATUS & ~AF)
LK3(xadd, STATUS)
LK3U(inc, STATUS)
LK3U(dec, STATUS)
LK3U(neg, STATUS)
LK3U(not, STATUS)
LK(lock_btsl, "btsl %k[b], %[m]", "k", CF)
LK(lock_btrl, "btrl %k[b], %[m]", "k", CF)
LK(lock_btcl, "btcl %k[b], %[m]", "k", CF)
LK(lock_xchgl, "xchgl %k[b], %[m]", "k", STATUS)

typedef void (*lkfn)(u32, u32, u32);
#define ALL3(n) lock_##n##b, lock_##n##w, lock_##n##l
static const lkfn fns[] = {ALL3(add), ALL3(adc), ALL3(sub), ALL3(sbb), ALL3(and), ALL3(or), ALL3(xor),
                           ALL3(xadd), ALL3(inc), ALL3(dec), ALL3(neg), ALL3(not),
                           lock_btsl, lock_btrl, lock_btcl, lock_xchgl};

/* CMPXCHG8B changes only ZF: the flags of a preceding ADD must survive */
static void add_cmpxchg8b(u32 i)
{
    static u32 m[2];
    u32 fl, a = i & 1 ? 0 : 0x80, lo = 5, hi = 6;
    m[0] = i & 2 ? 5 : 7;
    m[1] = 6;
    __asm__ volatile("pushl $0x8d7\n\tpopfl\n\taddb %%cl, %%cl\n\tcmpxchg8b %[m]\n\tpushfl\n\tpopl %0"
                     : "=&r"(fl), [m] "+m"(m), "+a"(lo), "+d"(hi), "+c"(a)
                     : "b"(0x11)
                     : "cc", "memory");
    rec("add_cmpxchg8b", i, 0, 0, fl & STATUS, lo, hi);
}

static void run(void)
{
    u32 n, i, j;
    for (n = 0; n < sizeof fns / sizeof fns[0]; n++)
        for (i = 0; i < 12; i++)
            for (j = 0; j < 6; j++)
                fns[n](vec(i), vec(j + 5) & (n >= 36 ? 31 : ~0u), (i + j) & 1 ? 0x002 | STATUS : 0x002);
    for (i = 0; i < 4; i++)
        add_cmpxchg8b(i);
}

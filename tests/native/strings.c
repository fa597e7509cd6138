/* MOVS STOS LODS CMPS SCAS at 8/16/32 bits, without and with REP/REPE/REPNE,
 * forwards and backwards (DF), over buffers with planted differences.
 * Records final ESI/EDI (as offsets), ECX, EAX, flags, and a hash of dst. */
#include "oracle.h"

static u8 src[1024], dst[1024];

static u32 hash(const u8 *p, u32 n)
{
    u32 h = 2166136261u;
    while (n--)
        h = (h ^ *p++) * 16777619u;
    return h;
}

#define STR(fn, insn)                                                                       \
    static void fn(u32 so, u32 d_o, u32 cnt, u32 fin, u32 ax)                               \
    {                                                                                       \
        u32 s = (u32)(src + so), d = (u32)(dst + d_o), c = cnt, a = ax, fl;                 \
        __asm__ volatile("pushl %[fin]\n\tpopfl\n\t" insn "\n\tpushfl\n\tpopl %[fl]\n\tcld"  \
                         : "+S"(s), "+D"(d), "+c"(c), "+a"(a), [fl] "=&r"(fl)               \
                         : [fin] "r"(fin)                                                   \
                         : "cc", "memory");                                                 \
        rec(#fn, so | d_o << 16, cnt, fin, s - (u32)src, d - (u32)dst, c);                  \
        rec(#fn, 0, 0, 0, a, hash(dst, sizeof dst), fl & (STATUS | DF));                    \
    }

#define STR3(name, insn)                                                                    \
    STR(name##b, insn "b")                                                                  \
    STR(name##w, insn "w")                                                                  \
    STR(name##l, insn "l")

STR3(movs, "movs")
STR3(rep_movs, "rep movs")
STR3(stos, "stos")
STR3(rep_stos, "rep stos")
STR3(lods, "lods")
STR3(rep_lods, "rep lods")
STR3(cmps, "cmps")
STR3(repe_cmps, "repe cmps")
STR3(repne_cmps, "repne cmps")
STR3(scas, "scas")
STR3(repe_scas, "repe scas")
STR3(repne_scas, "repne scas")

typedef void (*strfn)(u32, u32, u32, u32, u32);
#define ALL3(n) n##b, n##w, n##l
static const strfn fns[] = {ALL3(movs), ALL3(rep_movs), ALL3(stos), ALL3(rep_stos),
                            ALL3(lods), ALL3(rep_lods), ALL3(cmps), ALL3(repe_cmps),
                            ALL3(repne_cmps), ALL3(scas), ALL3(repe_scas), ALL3(repne_scas)};

static void fill(u32 diff_at)
{
    u32 i;
    for (i = 0; i < sizeof src; i++)
        src[i] = (u8)(i * 7 + (i >> 5));
    for (i = 0; i < sizeof dst; i++)
        dst[i] = src[i];
    if (diff_at < sizeof dst)
        dst[diff_at] ^= 0x40;
}

static void run(void)
{
    static const u32 counts[] = {0, 1, 2, 3, 7, 16, 33, 100};
    u32 n, k, dir, v;
    for (n = 0; n < sizeof fns / sizeof fns[0]; n++)
        for (dir = 0; dir < 2; dir++)
            for (k = 0; k < sizeof counts / sizeof counts[0]; k++)
                for (v = 0; v < 4; v++) {
                    u32 cnt = counts[k];
                    u32 so = dir ? 700 - v : 200 + v;
                    u32 d_o = v == 3 ? so + 3 : so; /* v==3: overlapping/shifted regions */
                    u32 fin = 0x002 | (dir ? DF : 0) | (v & 1 ? STATUS : 0);
                    /* plant a difference a few elements in (cmps/scas stop there) */
                    fill(dir ? so - 5 * (v + 1) : so + 5 * (v + 1));
                    /* EAX: the element at the start (scas matches it) or noise */
                    fns[n](so, d_o, cnt, fin, v == 2 ? 0x12345678 : *(u32 *)(dst + d_o));
                }
}

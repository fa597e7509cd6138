/* ALU: add adc sub sbb and or xor cmp test, neg not inc dec, at 8/16/32 bits,
 * over special + pseudo-random operands, with CF/all-status clear and set. */
#include "oracle.h"

#define NVEC 22

#define BIN(fn, insn, W, CONS)                                                              \
    static void fn(u32 a, u32 b, u32 fin, u32 mask)                                         \
    {                                                                                       \
        u32 r = a, fl;                                                                      \
        __asm__ volatile("pushl %[fin]\n\tpopfl\n\t" insn " %" W "[b], %" W "[r]\n\t"         \
                         "pushfl\n\tpopl %[fl]"                                             \
                         : [r] CONS(r), [fl] "=&r"(fl)                                      \
                         : [b] "q"(b), [fin] "r"(fin)                                       \
                         : "cc");                                                           \
        rec(#fn, a, b, fin, r, 0, fl & mask);                                               \
    }

#define UN(fn, insn, W, CONS)                                                               \
    static void fn(u32 a, u32 fin, u32 mask)                                                \
    {                                                                                       \
        u32 r = a, fl;                                                                      \
        __asm__ volatile("pushl %[fin]\n\tpopfl\n\t" insn " %" W "[r]\n\t"                    \
                         "pushfl\n\tpopl %[fl]"                                             \
                         : [r] CONS(r), [fl] "=&r"(fl)                                      \
                         : [fin] "r"(fin)                                                   \
                         : "cc");                                                           \
        rec(#fn, a, 0, fin, r, 0, fl & mask);                                               \
    }

#define BIN3(op)                                                                            \
    BIN(op##b, #op "b", "b", "+q")                                                          \
    BIN(op##w, #op "w", "w", "+r")                                                          \
    BIN(op##l, #op "l", "k", "+r")
#define UN3(op)                                                                             \
    UN(op##b, #op "b", "b", "+q")                                                           \
    UN(op##w, #op "w", "w", "+r")                                                           \
    UN(op##l, #op "l", "k", "+r")

BIN3(add)
BIN3(adc)
BIN3(sub)
BIN3(sbb)
BIN3(and)
BIN3(or)
BIN3(xor)
BIN3(cmp)
BIN3(test)
UN3(neg)
UN3(not)
UN3(inc)
UN3(dec)

typedef void (*binfn)(u32, u32, u32, u32);
typedef void (*unfn)(u32, u32, u32);

#define LOGIC (STATUS & ~AF) /* AF undefined after AND/OR/XOR/TEST */
static const struct {
    binfn f;
    u32 mask;
} bins[] = {
    {addb, STATUS}, {addw, STATUS}, {addl, STATUS}, {adcb, STATUS}, {adcw, STATUS}, {adcl, STATUS},
    {subb, STATUS}, {subw, STATUS}, {subl, STATUS}, {sbbb, STATUS}, {sbbw, STATUS}, {sbbl, STATUS},
    {andb, LOGIC},  {andw, LOGIC},  {andl, LOGIC},  {orb, LOGIC},   {orw, LOGIC},   {orl, LOGIC},
    {xorb, LOGIC},  {xorw, LOGIC},  {xorl, LOGIC},  {cmpb, STATUS}, {cmpw, STATUS}, {cmpl, STATUS},
    {testb, LOGIC}, {testw, LOGIC}, {testl, LOGIC},
};
static const unfn uns[] = {negb, negw, negl, notb, notw, notl, incb, incw, incl, decb, decw, decl};

static void run(void)
{
    static u32 v[NVEC];
    static const u32 fins[] = {0x002, 0x002 | STATUS};
    u32 i, j, k, n;
    for (i = 0; i < NVEC; i++)
        v[i] = vec(i);
    for (n = 0; n < sizeof bins / sizeof bins[0]; n++)
        for (k = 0; k < 2; k++)
            for (i = 0; i < NVEC; i++)
                for (j = 0; j < NVEC; j++)
                    bins[n].f(v[i], v[j], fins[k], bins[n].mask);
    for (n = 0; n < sizeof uns / sizeof uns[0]; n++)
        for (k = 0; k < 2; k++)
            for (i = 0; i < NVEC; i++)
                uns[n](v[i], fins[k], STATUS);
}

/* DAA DAS AAA AAS for every AL with AF and CF in all combinations (and a few
 * AH values), AAM/AAD with several bases.  Flags masked per the SDM. */
#include "oracle.h"

#define BCD(fn, insn, MASK)                                                                 \
    static void fn(u32 ax, u32 fin)                                                         \
    {                                                                                       \
        u32 a = ax, fl;                                                                     \
        __asm__ volatile("pushl %[fin]\n\tpopfl\n\t" insn "\n\tpushfl\n\tpopl %[fl]"        \
                         : "+a"(a), [fl] "=&r"(fl)                                          \
                         : [fin] "r"(fin)                                                   \
                         : "cc");                                                           \
        rec(#fn, ax, fin, 0, a, 0, fl & (MASK));                                            \
    }
BCD(daa, "daa", SF | ZF | AF | PF | CF)
BCD(das, "das", SF | ZF | AF | PF | CF)
BCD(aaa, "aaa", AF | CF)
BCD(aas, "aas", AF | CF)
BCD(aam10, "aam $10", SF | ZF | PF)
BCD(aam16, "aam $16", SF | ZF | PF)
BCD(aam7, "aam $7", SF | ZF | PF)
BCD(aam1, "aam $1", SF | ZF | PF)
BCD(aam255, "aam $255", SF | ZF | PF)
BCD(aad10, "aad $10", SF | ZF | PF)
BCD(aad16, "aad $16", SF | ZF | PF)
BCD(aad0, "aad $0", SF | ZF | PF)
BCD(aad7, "aad $7", SF | ZF | PF)
BCD(aad255, "aad $255", SF | ZF | PF)

typedef void (*bcdfn)(u32, u32);
/* which inputs matter: DAA/DAS read AL, AF, CF; AAA/AAS read AX and AF;
 * AAM reads AL; AAD reads AX. */
static const struct {
    bcdfn f;
    int use_ah;
    u32 fin_mask;
} all[] = {
    {daa, 0, AF | CF},    {das, 0, AF | CF},    {aaa, 1, AF},         {aas, 1, AF},
    {aam10, 0, 0},        {aam16, 0, 0},        {aam7, 0, 0},         {aam1, 0, 0},
    {aam255, 0, 0},       {aad10, 1, 0},        {aad16, 1, 0},        {aad0, 1, 0},
    {aad7, 1, 0},         {aad255, 1, 0},
};

static void run(void)
{
    static const u32 ahs[] = {0x00, 0x01, 0x09, 0x99, 0xff};
    static const u32 fins[] = {0, CF, AF, AF | CF};
    u32 n, al, h, k;
    for (n = 0; n < sizeof all / sizeof all[0]; n++)
        for (h = 0; h < (all[n].use_ah ? sizeof ahs / sizeof ahs[0] : 1); h++)
            for (k = 0; k < 4; k++) {
                if (fins[k] & ~all[n].fin_mask)
                    continue;
                for (al = 0; al < 256; al++) /* other status flags set: must not leak in */
                    all[n].f(0xdead0000u | ahs[h] << 8 | al, 0x002 | fins[k] | (k & 1 ? (SF | ZF | PF | OF) : 0));
            }
}

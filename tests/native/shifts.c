/* Shifts and rotates by every count (CL = 0..33, 63, 255: masked to 5 bits),
 * by 1 (D0/D1 forms) and by immediates, at 8/16/32 bits, with CF clear and set;
 * SHLD/SHRD by every count the SDM defines.  Flags masked per the SDM (see
 * FLAG_TABLE in tests/diffharness.py). */
#include "oracle.h"

enum { SHL, SHR, SAR, ROL, ROR, RCL, RCR };

/* the flags the SDM defines after op by count at width bits; STATUS when the
 * masked count is 0 (nothing changes, so everything stays as it was). */
static u32 shift_mask(int op, u32 bits, u32 count)
{
    u32 c = count & 31, m;
    if (c == 0)
        return STATUS;
    if (op >= ROL) /* rotates: SF ZF AF PF untouched, CF defined, OF only for 1 */
        return c == 1 ? STATUS : STATUS & ~OF;
    m = SF | ZF | PF | CF;
    if ((op == SHL || op == SHR) && c >= bits)
        m &= ~CF;
    if (c == 1)
        m |= OF;
    return m;
}

#define SH(fn, insn, W, CONS, OP, BITS)                                                     \
    static void fn(u32 a, u32 cnt, u32 fin)                                                 \
    {                                                                                       \
        u32 r = a, fl;                                                                      \
        __asm__ volatile("pushl %[fin]\n\tpopfl\n\t" insn " %%cl, %" W "[r]\n\tpushfl\n\tpopl %[fl]" \
                         : [r] CONS(r), [fl] "=&r"(fl)                                      \
                         : "c"(cnt), [fin] "r"(fin)                                         \
                         : "cc");                                                           \
        rec(#fn, a, cnt, fin, r, 0, fl & shift_mask(OP, BITS, cnt));                        \
    }
#define SH3(op, OP)                                                                         \
    SH(op##b, #op "b", "b", "+q", OP, 8)                                                    \
    SH(op##w, #op "w", "w", "+r", OP, 16)                                                   \
    SH(op##l, #op "l", "k", "+r", OP, 32)
SH3(shl, SHL)
SH3(shr, SHR)
SH3(sar, SAR)
SH3(rol, ROL)
SH3(ror, ROR)
SH3(rcl, RCL)
SH3(rcr, RCR)

/* by an immediate; "$1" assembles to the short D0/D1 form */
#define SHI(fn, insn, W, CONS, OP, BITS, N)                                                 \
    static void fn(u32 a, u32 fin)                                                          \
    {                                                                                       \
        u32 r = a, fl;                                                                      \
        __asm__ volatile("pushl %[fin]\n\tpopfl\n\t" insn " $" #N ", %" W "[r]\n\tpushfl\n\tpopl %[fl]" \
                         : [r] CONS(r), [fl] "=&r"(fl)                                      \
                         : [fin] "r"(fin)                                                   \
                         : "cc");                                                           \
        rec(#fn, a, N, fin, r, 0, fl & shift_mask(OP, BITS, N));                            \
    }
#define SHI_ALL(op, OP)                                                                     \
    SHI(op##b_1, #op "b", "b", "+q", OP, 8, 1)                                              \
    SHI(op##w_1, #op "w", "w", "+r", OP, 16, 1)                                             \
    SHI(op##l_1, #op "l", "k", "+r", OP, 32, 1)                                             \
    SHI(op##b_9, #op "b", "b", "+q", OP, 8, 9)                                              \
    SHI(op##w_17, #op "w", "w", "+r", OP, 16, 17)                                           \
    SHI(op##l_31, #op "l", "k", "+r", OP, 32, 31)                                           \
    SHI(op##l_36, #op "l", "k", "+r", OP, 32, 36)
SHI_ALL(shl, SHL)
SHI_ALL(shr, SHR)
SHI_ALL(sar, SAR)
SHI_ALL(rol, ROL)
SHI_ALL(ror, ROR)
SHI_ALL(rcl, RCL)
SHI_ALL(rcr, RCR)

typedef void (*shfn)(u32, u32, u32);
typedef void (*shifn)(u32, u32);
static const shfn shs[] = {shlb, shlw, shll, shrb, shrw, shrl, sarb, sarw, sarl, rolb, rolw, roll,
                           rorb, rorw, rorl, rclb, rclw, rcll, rcrb, rcrw, rcrl};
#define IMMS(op) op##b_1, op##w_1, op##l_1, op##b_9, op##w_17, op##l_31, op##l_36
static const shifn shis[] = {IMMS(shl), IMMS(shr), IMMS(sar), IMMS(rol), IMMS(ror), IMMS(rcl), IMMS(rcr)};

/* SHLD/SHRD: count > operand size (16-bit forms) leaves the result undefined */
static u32 dshift_mask(u32 count)
{
    u32 c = count & 31;
    if (c == 0)
        return STATUS;
    return CF | SF | ZF | PF | (c == 1 ? OF : 0);
}
#define DSH(fn, insn, W)                                                                    \
    static void fn(u32 a, u32 b, u32 cnt, u32 fin)                                          \
    {                                                                                       \
        u32 r = a, fl;                                                                      \
        __asm__ volatile("pushl %[fin]\n\tpopfl\n\t" insn " %%cl, %" W "[b], %" W "[r]\n\tpushfl\n\tpopl %[fl]" \
                         : [r] "+r"(r), [fl] "=&r"(fl)                                      \
                         : [b] "r"(b), "c"(cnt), [fin] "r"(fin)                             \
                         : "cc");                                                           \
        rec(#fn, a, b, cnt, r, fin, fl & dshift_mask(cnt));                                 \
    }
DSH(shldw, "shldw", "w")
DSH(shldl, "shldl", "k")
DSH(shrdw, "shrdw", "w")
DSH(shrdl, "shrdl", "k")

static void run(void)
{
    static const u32 vals[] = {0x00000000, 0x00000001, 0x80000000, 0xffffffff, 0x12345678,
                               0x87654321, 0x00008001, 0x000000c3, 0x40000040, 0xa5a5a5a5};
    static const u32 fins[] = {0x002, 0x002 | STATUS};
    u32 i, c, k, n;
    for (n = 0; n < sizeof shs / sizeof shs[0]; n++)
        for (k = 0; k < 2; k++)
            for (i = 0; i < sizeof vals / sizeof vals[0]; i++) {
                for (c = 0; c <= 33; c++)
                    shs[n](vals[i], c, fins[k]);
                shs[n](vals[i], 63, fins[k]);
                shs[n](vals[i], 255, fins[k]);
                shs[n](vals[i], 0xffffff08, fins[k]); /* only CL counts */
            }
    for (n = 0; n < sizeof shis / sizeof shis[0]; n++)
        for (k = 0; k < 2; k++)
            for (i = 0; i < sizeof vals / sizeof vals[0]; i++)
                shis[n](vals[i], fins[k]);
    for (k = 0; k < 2; k++)
        for (i = 0; i < sizeof vals / sizeof vals[0]; i++)
            for (c = 0; c < 64; c++) {
                u32 b = vals[(i + 3) % (sizeof vals / sizeof vals[0])];
                if ((c & 31) <= 16) {
                    shldw(vals[i], b, c, fins[k]);
                    shrdw(vals[i], b, c, fins[k]);
                }
                shldl(vals[i], b, c, fins[k]);
                shrdl(vals[i], b, c, fins[k]);
            }
}

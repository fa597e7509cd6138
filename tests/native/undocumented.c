/* Undocumented-but-real encodings that software (and fuzzers) do hit:
 * SALC (D6), the 0x82 alias of 0x80 (ADD..CMP r/m8, imm8), SAL as /6 of the
 * shift group, and TEST r/m, imm as /1 of F6/F7.  unicorn 2.1 raises #UD for the
 * F6/F7 /1 forms, so they come last. */
#include "oracle.h"

static void salc(u32 a, u32 fin)
{
    u32 r = a;
    __asm__ volatile("pushl %[fin]\n\tpopfl\n\t.byte 0xd6" : "+a"(r) : [fin] "r"(fin) : "cc");
    rec("salc", a, fin, 0, r, 0, 0);
}

static void alias82(u32 a, u32 fin)
{
    u32 r = a, fl;
    /* add al, 0x7f ; adc al, 0x01 ; sub al, 0x80 ; cmp al, 0x10  (all via 0x82) */
    __asm__ volatile("pushl %[fin]\n\tpopfl\n\t.byte 0x82, 0xc0, 0x7f, 0x82, 0xd0, 0x01, 0x82, 0xe8, 0x80\n\t"
                     "pushfl\n\tpopl %[fl]\n\t.byte 0x82, 0xf8, 0x10\n\t"
                     : "+a"(r), [fl] "=&r"(fl)
                     : [fin] "r"(fin)
                     : "cc");
    rec("alias82", a, fin, 0, r, 0, fl & STATUS);
}

static void sal6(u32 a, u32 cnt)
{
    u32 r1 = a, r2 = a, r3 = a, f1, f2, f3;
    __asm__ volatile("pushl $2\n\tpopfl\n\t.byte 0xd0, 0xf0\n\tpushfl\n\tpopl %[f]" : "+a"(r1), [f] "=&r"(f1) : : "cc"); /* sal al,1 */
    __asm__ volatile("pushl $2\n\tpopfl\n\t.byte 0xc1, 0xf0, 0x05\n\tpushfl\n\tpopl %[f]" : "+a"(r2), [f] "=&r"(f2) : : "cc"); /* sal eax,5 */
    __asm__ volatile("pushl $0x8d7\n\tpopfl\n\t.byte 0xd3, 0xf0\n\tpushfl\n\tpopl %[f]" : "+a"(r3), [f] "=&r"(f3) : "c"(cnt) : "cc"); /* sal eax,cl */
    rec("sal_slash6", a, cnt, 0, r1, r2, r3);
    rec("sal_slash6_flags", a, cnt, 0, f1 & (STATUS & ~AF), f2 & (CF | PF | ZF | SF),
        (cnt & 31) == 0 ? f3 & STATUS : f3 & (CF | PF | ZF | SF | ((cnt & 31) == 1 ? OF : 0)));
}

/* F6 /1 and F7 /1: aliases of TEST r/m, imm */
static void test_alias(u32 a)
{
    u32 fl8, fl32;
    __asm__ volatile("pushl $2\n\tpopfl\n\t.byte 0xf6, 0xc8, 0x81\n\tpushfl\n\tpopl %0" /* test al, 0x81 */
                     : "=r"(fl8) : "a"(a) : "cc");
    __asm__ volatile("pushl $2\n\tpopfl\n\t.byte 0xf7, 0xc8, 0x01, 0x00, 0x00, 0x80\n\tpushfl\n\tpopl %0" /* test eax, 0x80000001 */
                     : "=r"(fl32) : "a"(a) : "cc");
    rec("test_f6_f7_slash1", a, 0, 0, fl8 & (STATUS & ~AF), fl32 & (STATUS & ~AF), 0);
}

static void run(void)
{
    u32 i;
    for (i = 0; i < 24; i++) {
        salc(vec(i), i & 1 ? 0x003 : 0x002);
        alias82(vec(i), i & 1 ? 0x003 : 0x002);
        sal6(vec(i), i * 3);
    }
    for (i = 0; i < 24; i++)
        test_alias(vec(i));
}

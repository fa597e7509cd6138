/* Bitwise CRC32; BT/BTS/BTR/BTC (register and memory, bit offsets outside the
 * operand), BSF/BSR, BSWAP, XADD, CMPXCHG, CMPXCHG8B, SETcc and CMOVcc under
 * every status-flag combination, LAHF/SAHF, PUSHF/POPF, CBW/CWDE/CWD/CDQ,
 * MOVZX/MOVSX, LEA with 16-bit addressing, XLAT, PUSHA/POPA, ENTER/LEAVE,
 * LOOP/LOOPE/LOOPNE/JECXZ, CALL/RET imm16.  Flags masked per the SDM. */
#include "oracle.h"

static u8 buf[8192];
static u32 bits[256];

static u32 crc32(const u8 *p, u32 n, u32 crc)
{
    u32 i, k;
    crc = ~crc;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
    }
    return ~crc;
}

/* ---- bit tests ---- */
#define BTREG(fn, insn, W)                                                                  \
    static void fn(u32 a, u32 off)                                                          \
    {                                                                                       \
        u32 r = a, fl;                                                                      \
        __asm__ volatile(insn " %" W "[o], %" W "[r]\n\tpushfl\n\tpopl %[fl]"               \
                         : [r] "+r"(r), [fl] "=&r"(fl)                                      \
                         : [o] "r"(off)                                                     \
                         : "cc");                                                           \
        rec(#fn, a, off, 0, r, 0, fl & CF);                                                 \
    }
#define BTMEM(fn, insn, W)                                                                  \
    static void fn(s32 off)                                                                 \
    {                                                                                       \
        u32 fl, *base = &bits[128];                                                         \
        __asm__ volatile(insn " %" W "[o], (%[b])\n\tpushfl\n\tpopl %[fl]"                  \
                         : [fl] "=&r"(fl)                                                   \
                         : [o] "r"(off), [b] "r"(base)                                      \
                         : "cc", "memory");                                                 \
        rec(#fn, (u32)off, 0, 0, bits[128 + (off >> 5)], bits[128 + ((s32)(s16_(off)) >> 5)], fl & CF); \
    }
#define BTIMM(fn, insn, W, N)                                                               \
    static void fn(u32 a)                                                                   \
    {                                                                                       \
        u32 r = a, fl;                                                                      \
        __asm__ volatile(insn " $" #N ", %" W "[r]\n\tpushfl\n\tpopl %[fl]"                 \
                         : [r] "+r"(r), [fl] "=&r"(fl)                                      \
                         :                                                                  \
                         : "cc");                                                           \
        rec(#fn, a, N, 0, r, 0, fl & CF);                                                   \
    }
static s32 s16_(s32 x) { return (s32)(short)x; }

BTREG(btl, "btl", "k")
BTREG(btsl, "btsl", "k")
BTREG(btrl, "btrl", "k")
BTREG(btcl, "btcl", "k")
BTREG(btsw, "btsw", "w")
BTREG(btcw, "btcw", "w")
BTMEM(btl_m, "btl", "k")
BTMEM(btsl_m, "btsl", "k")
BTMEM(btrl_m, "btrl", "k")
BTMEM(btcl_m, "btcl", "k")
BTMEM(btsw_m, "btsw", "w")
BTMEM(btrw_m, "btrw", "w")
BTIMM(btsl_5, "btsl", "k", 5)
BTIMM(btcl_37, "btcl", "k", 37)
BTIMM(btrw_17, "btrw", "w", 17)

/* ---- scans and exchanges ---- */
#define SCAN(fn, insn, W)                                                                   \
    static void fn(u32 a)                                                                   \
    {                                                                                       \
        u32 r = 0x77777777, fl;                                                             \
        __asm__ volatile(insn " %" W "[a], %" W "[r]\n\tpushfl\n\tpopl %[fl]"               \
                         : [r] "+r"(r), [fl] "=&r"(fl)                                      \
                         : [a] "r"(a)                                                       \
                         : "cc");                                                           \
        /* destination undefined for a zero source: not printed */                          \
        rec(#fn, a, 0, 0, (fl & ZF) ? 0 : r, 0, fl & ZF);                                   \
    }
SCAN(bsfl, "bsfl", "k")
SCAN(bsrl, "bsrl", "k")
SCAN(bsfw, "bsfw", "w")
SCAN(bsrw, "bsrw", "w")

static void xchgs(u32 a, u32 b)
{
    u32 r = a, s = b, fl, m = a, acc;
    __asm__ volatile("bswap %0" : "+r"(r));
    rec("bswap", a, 0, 0, r, 0, 0);
    r = a;
    __asm__ volatile("xaddl %[s], %[r]\n\tpushfl\n\tpopl %[fl]" : [r] "+r"(r), [s] "+r"(s), [fl] "=&r"(fl) : : "cc");
    rec("xaddl", a, b, 0, r, s, fl & STATUS);
    r = a, s = b;
    __asm__ volatile("xaddb %b[s], %b[r]\n\tpushfl\n\tpopl %[fl]" : [r] "+q"(r), [s] "+q"(s), [fl] "=&r"(fl) : : "cc");
    rec("xaddb", a, b, 0, r, s, fl & STATUS);
    /* cmpxchg: unequal, then equal */
    acc = b;
    __asm__ volatile("cmpxchgl %[n], %[m]\n\tpushfl\n\tpopl %[fl]" : [m] "+m"(m), "+a"(acc), [fl] "=&r"(fl) : [n] "r"(0x5555aaaa) : "cc");
    rec("cmpxchgl", a, b, 0, m, acc, fl & STATUS);
    acc = m;
    __asm__ volatile("cmpxchgl %[n], %[m]\n\tpushfl\n\tpopl %[fl]" : [m] "+m"(m), "+a"(acc), [fl] "=&r"(fl) : [n] "r"(b) : "cc");
    rec("cmpxchgl=", a, b, 0, m, acc, fl & STATUS);
    acc = b;
    r = a;
    __asm__ volatile("cmpxchgw %w[n], %w[r]\n\tpushfl\n\tpopl %[fl]" : [r] "+r"(r), "+a"(acc), [fl] "=&r"(fl) : [n] "r"(0x1234) : "cc");
    rec("cmpxchgw", a, b, 0, r, acc, fl & STATUS);
}

static void cmpxchg8b_test(u32 lo, u32 hi, int equal)
{
    static u32 mem[2];
    u32 a = equal ? lo : lo ^ 1, d = hi, fl;
    mem[0] = lo;
    mem[1] = hi;
    __asm__ volatile("cmpxchg8b (%[p])\n\tpushfl\n\tpopl %[fl]"
                     : "+a"(a), "+d"(d), [fl] "=&r"(fl)
                     : [p] "S"(mem), "b"(0xbbbbbbbb), "c"(0xcccccccc)
                     : "cc", "memory");
    rec("cmpxchg8b", lo, hi, (u32)equal, a, d, fl & ZF);
    rec("cmpxchg8b", 0, 0, 0, mem[0], mem[1], 0);
}

/* ---- condition codes ---- */
#define SETCC(cc)                                                                           \
    __asm__ volatile("pushl %[fin]\n\tpopfl\n\tset" #cc " %b[r]" : [r] "=q"(t) : [fin] "r"(fin) : "cc"); \
    m = m << 1 | (t & 1);
#define CMOV(cc)                                                                            \
    t = 0;                                                                                  \
    __asm__ volatile("pushl %[fin]\n\tpopfl\n\tcmov" #cc "l %[one], %[r]" : [r] "+r"(t) : [fin] "r"(fin), [one] "r"(1) : "cc"); \
    m = m << 1 | t;

static void conditions(u32 fin)
{
    u32 m = 0, t;
    SETCC(o) SETCC(no) SETCC(b) SETCC(ae) SETCC(e) SETCC(ne) SETCC(be) SETCC(a)
    SETCC(s) SETCC(ns) SETCC(p) SETCC(np) SETCC(l) SETCC(ge) SETCC(le) SETCC(g)
    CMOV(o) CMOV(no) CMOV(b) CMOV(ae) CMOV(e) CMOV(ne) CMOV(be) CMOV(a)
    CMOV(s) CMOV(ns) CMOV(p) CMOV(np) CMOV(l) CMOV(ge) CMOV(le) CMOV(g)
    rec("setcc_cmovcc", fin, 0, 0, m, 0, 0);
}

/* jcc taken/not taken for all conditions */
#define JCC(cc)                                                                             \
    __asm__ volatile("pushl %[fin]\n\tpopfl\n\tmovl $1, %[r]\n\tj" #cc " 1f\n\tmovl $0, %[r]\n1:" \
                     : [r] "=&r"(t) : [fin] "r"(fin) : "cc");                               \
    m = m << 1 | t;
static void jumps(u32 fin)
{
    u32 m = 0, t;
    JCC(o) JCC(no) JCC(b) JCC(ae) JCC(e) JCC(ne) JCC(be) JCC(a)
    JCC(s) JCC(ns) JCC(p) JCC(np) JCC(l) JCC(ge) JCC(le) JCC(g)
    rec("jcc", fin, 0, 0, m, 0, 0);
}

static void flagops(u32 fin, u32 ah)
{
    u32 a = ah << 8, fl;
    __asm__ volatile("pushl %[fin]\n\tpopfl\n\tsahf\n\tpushfl\n\tpopl %[fl]" : [fl] "=&r"(fl) : "a"(a), [fin] "r"(fin) : "cc");
    rec("sahf", fin, ah, 0, 0, 0, fl & (STATUS | DF));
    a = 0x11111111;
    __asm__ volatile("pushl %[fin]\n\tpopfl\n\tlahf" : "+a"(a) : [fin] "r"(fin) : "cc");
    rec("lahf", fin, 0, 0, a, 0, 0);
    __asm__ volatile("pushl %[fin]\n\tpopfl\n\tpushfl\n\tpopl %[fl]\n\tcld" : [fl] "=&r"(fl) : [fin] "r"(fin) : "cc");
    rec("popf_pushf", fin, 0, 0, 0, 0, fl & (STATUS | DF));
    __asm__ volatile("pushl %[fin]\n\tpopfl\n\tcmc\n\tpushfl\n\tpopl %[fl]" : [fl] "=&r"(fl) : [fin] "r"(fin) : "cc");
    rec("cmc", fin, 0, 0, 0, 0, fl & STATUS);
    /* 16-bit pushf/popf */
    __asm__ volatile("pushw %w[fin]\n\tpopfw\n\tpushfw\n\tpopw %w[fl]\n\tandl $0xffff, %[fl]\n\tcld" : [fl] "=&r"(fl) : [fin] "r"(fin) : "cc");
    rec("popfw_pushfw", fin, 0, 0, 0, 0, fl & (STATUS | DF));
}

static void conversions(u32 a)
{
    u32 r, d;
    r = a;
    __asm__("cbtw" : "+a"(r));
    rec("cbw", a, 0, 0, r, 0, 0);
    r = a;
    __asm__("cwtl" : "+a"(r));
    rec("cwde", a, 0, 0, r, 0, 0);
    r = a, d = 0x5a5a5a5a;
    __asm__("cwtd" : "+a"(r), "+d"(d));
    rec("cwd", a, 0, 0, r, d, 0);
    r = a;
    __asm__("cltd" : "+a"(r), "=d"(d));
    rec("cdq", a, 0, 0, r, d, 0);
    __asm__("movzbl %b1, %0" : "=r"(r) : "q"(a));
    rec("movzbl", a, 0, 0, r, 0, 0);
    __asm__("movsbl %b1, %0" : "=r"(r) : "q"(a));
    rec("movsbl", a, 0, 0, r, 0, 0);
    __asm__("movzwl %w1, %0" : "=r"(r) : "r"(a));
    rec("movzwl", a, 0, 0, r, 0, 0);
    __asm__("movswl %w1, %0" : "=r"(r) : "r"(a));
    rec("movswl", a, 0, 0, r, 0, 0);
    r = 0x99999999;
    __asm__("movsbw %b1, %w0" : "+r"(r) : "q"(a));
    rec("movsbw", a, 0, 0, r, 0, 0);
}

u32 lea_in[4] __attribute__((used)), lea_out[5] __attribute__((used));
static void lea16(u32 bx, u32 si, u32 di, u32 bp)
{
    lea_in[0] = bx, lea_in[1] = si, lea_in[2] = di, lea_in[3] = bp;
    __asm__ volatile("pushal\n\t"
                     "movl lea_in, %%ebx\n\tmovl lea_in+4, %%esi\n\tmovl lea_in+8, %%edi\n\tmovl lea_in+12, %%ebp\n\t"
                     "leal 0x1234(%%bx,%%si), %%eax\n\tmovl %%eax, lea_out\n\t"
                     "leal -3(%%bp,%%di), %%eax\n\tmovl %%eax, lea_out+4\n\t"
                     "leal 0xfff0(%%si), %%eax\n\tmovl %%eax, lea_out+8\n\t"
                     "movl $0x99999999, %%eax\n\tleaw 0x10(%%ebx,%%esi,8), %%ax\n\tmovl %%eax, lea_out+12\n\t"
                     "leal (%%bp), %%eax\n\tmovl %%eax, lea_out+16\n\t"
                     "popal"
                     :
                     :
                     : "memory");
    rec("lea16", bx, si, di, lea_out[0], lea_out[1], lea_out[2]);
    rec("lea16", bp, 0, 0, lea_out[3], lea_out[4], 0);
}

u32 st_esp0 __attribute__((used)), st_w[9] __attribute__((used));
static void stackops(void)
{
    /* PUSHA: the ESP image is the value before the first push */
    __asm__ volatile("pushal\n\t"
                     "movl $0xaaaa0001, %%eax\n\tmovl $0xcccc0002, %%ecx\n\tmovl $0xdddd0003, %%edx\n\t"
                     "movl $0xbbbb0004, %%ebx\n\tmovl $0x55550005, %%esi\n\tmovl $0xdddd0006, %%edi\n\t"
                     "movl %%esp, st_esp0\n\tpushal\n\t"
                     "movl (%%esp), %%eax\n\tmovl %%eax, st_w\n\t"
                     "movl 4(%%esp), %%eax\n\tmovl %%eax, st_w+4\n\t"
                     "movl 12(%%esp), %%eax\n\tmovl %%eax, st_w+12\n\t"
                     "movl 16(%%esp), %%eax\n\tmovl %%eax, st_w+16\n\t"
                     "movl 28(%%esp), %%eax\n\tmovl %%eax, st_w+28\n\t"
                     "popal\n\tmovl %%eax, st_w+32\n\t"
                     "popal"
                     :
                     :
                     : "memory");
    rec("pusha", st_w[0], st_w[1], st_w[4], st_w[7], st_esp0 - st_w[3], st_w[8]);
    /* POPA skips the ESP image */
    __asm__ volatile("pushal\n\tmovl %%esp, st_esp0\n\t"
                     "pushl $1\n\tpushl $2\n\tpushl $3\n\tpushl $0x12345678\n\t"
                     "pushl $5\n\tpushl $6\n\tpushl $7\n\tpushl $8\n\tpopal\n\t"
                     "movl %%eax, st_w\n\tmovl %%ecx, st_w+4\n\tmovl %%edx, st_w+8\n\tmovl %%ebx, st_w+12\n\t"
                     "movl %%esi, st_w+16\n\tmovl %%edi, st_w+20\n\tmovl %%ebp, st_w+24\n\t"
                     "movl %%esp, %%eax\n\tsubl st_esp0, %%eax\n\tmovl %%eax, st_w+28\n\t"
                     "popal"
                     :
                     :
                     : "memory");
    rec("popa", st_w[0], st_w[1], st_w[2], st_w[3], st_w[4], st_w[5]);
    rec("popa", st_w[6], st_w[7], 0, 0, 0, 0);
}

/* ENTER with nesting levels: frame pointers copied from a fake chain */
u32 fake[64] __attribute__((used)), en_out[40] __attribute__((used)), en_before __attribute__((used)), en_after __attribute__((used)), en_ebp __attribute__((used));
static u32 stackrel(u32 v)
{
    return v - en_after < 0x2000 ? 0x57ac0000u | (en_before - v) : v;
}
static void enter_test(void)
{
    u32 i;
    for (i = 0; i < 64; i++)
        fake[i] = 0xf0000000u + i;
#define ENTER(ALLOC, LEVEL)                                                                 \
    __asm__ volatile("pushal\n\tmovl $fake+192, %%ebp\n\tmovl %%esp, en_before\n\t"        \
                     "enter $" #ALLOC ", $" #LEVEL "\n\t"                                   \
                     "movl %%esp, en_after\n\tmovl %%ebp, en_ebp\n\t"                       \
                     "movl %%esp, %%esi\n\tmovl $en_out, %%edi\n\tmovl $40, %%ecx\n\tcld\n\trep movsl\n\t" \
                     "leave\n\tmovl %%esp, %%eax\n\tsubl en_before, %%eax\n\tmovl %%eax, en_out+156\n\t" \
                     "popal"                                                                \
                     :                                                                      \
                     :                                                                      \
                     : "memory");                                                           \
    rec("enter", ALLOC, LEVEL, en_out[39], en_before - en_after, en_before - en_ebp, 0);     \
    /* words ENTER wrote (not the ALLOC bytes): stack addresses relative to ESP */           \
    for (i = ALLOC / 4; i < 39 && i * 4 < en_before - en_after; i++)                         \
        rec("enter_frame", ALLOC, LEVEL, i, stackrel(en_out[i]), 0, 0);
    ENTER(0, 0)
    ENTER(8, 0)
    ENTER(12, 1)
    ENTER(4, 2)
    ENTER(0, 3)
    ENTER(16, 5)
    ENTER(8, 31)
    ENTER(8, 33)
}

/* ENTER whose frame-pointer read overlaps the slot its own PUSH EBP just wrote:
 * the SDM order (push EBP, then read [EBP-4]) makes the copy see the new bytes. */
u32 ov_save __attribute__((used)), ov_out[4] __attribute__((used));
static void enter_overlap(void)
{
    __asm__ volatile("pushal\n\tmovl %%esp, ov_save\n\t"
                     "andl $0xffffff00, %%esp\n\t"          /* low byte of ESP known: 0 */
                     "pushl $0x11223344\n\tpushl $0x55667788\n\taddl $8, %%esp\n\t"
                     "movl %%esp, %%ebp\n\tsubl $3, %%ebp\n\t" /* [EBP-4] = ESP-7 .. ESP-4 */
                     "enter $0, $2\n\t"
                     "movl 4(%%esp), %%eax\n\tmovl %%eax, ov_out\n\t" /* the copied frame pointer */
                     "movl %%esp, %%eax\n\tmovl %%ebp, %%ecx\n\tsubl %%eax, %%ecx\n\tmovl %%ecx, ov_out+4\n\t"
                     "movl ov_save, %%esp\n\tpopal"
                     :
                     :
                     : "memory");
    rec("enter_overlap", 0, 2, 0, ov_out[0], ov_out[1], 0);
}

static void loops(u32 n)
{
    u32 c = n, k = 0, z;
    __asm__ volatile("1: incl %[k]\n\tloop 1b" : "+c"(c), [k] "+r"(k) : : "cc");
    rec("loop", n, 0, 0, k, c, 0);
    /* LOOPE: stop when k reaches 5 (ZF from cmp) */
    c = n, k = 0;
    __asm__ volatile("1: incl %[k]\n\tcmpl $5, %[k]\n\tloopne 1b" : "+c"(c), [k] "+r"(k) : : "cc");
    rec("loopne", n, 0, 0, k, c, 0);
    c = n, k = 0;
    __asm__ volatile("1: incl %[k]\n\tcmpl $1, %[k]\n\tloope 1b" : "+c"(c), [k] "+r"(k) : : "cc");
    rec("loope", n, 0, 0, k, c, 0);
    c = n;
    __asm__ volatile("movl $1, %[z]\n\tjecxz 1f\n\tmovl $0, %[z]\n1:" : [z] "=&r"(z) : "c"(c));
    rec("jecxz", n, 0, 0, z, 0, 0);
}

/* LOOPcc right after an arithmetic op must keep that op's flags (unicorn 2.1
 * loses AF and CF here) */
#define LOOPCC(name, val, op, lp)                                                           \
    __asm__ volatile("pushl $2\n\tpopfl\n\tmovl $1, %%ecx\n\tmovl %[v], %%eax\n\t" op "\n"  \
                     "1: " lp " 1b\n\tpushfl\n\tpopl %[fl]"                                 \
                     : [fl] "=r"(fl)                                                        \
                     : [v] "g"(val)                                                         \
                     : "eax", "ecx", "cc");                                                 \
    rec(name, val, 0, 0, 0, 0, fl & STATUS);
static void loopcc_flags(u32 v)
{
    u32 fl;
    LOOPCC("cmp1_loope", v, "cmpl $1, %%eax", "loope")
    LOOPCC("cmp1_loopne", v, "cmpl $1, %%eax", "loopne")
    LOOPCC("sub1_loop", v, "subl $1, %%eax", "loop")
    LOOPCC("negw_loopne", v, "negw %%ax", "loopne")
    LOOPCC("addb_loope", v, "addb $0x0f, %%al", "loope")
}

static u32 __attribute__((noinline, regparm(0))) callee_ret8(u32 x)
{
    return x;
}

static void calls(void)
{
    u32 r, d;
    __asm__ volatile("movl %%esp, %%edx\n\tpushl $7\n\tpushl $9\n\tcall 1f\n\tjmp 2f\n"
                     "1:\tmovl 4(%%esp), %%eax\n\taddl 8(%%esp), %%eax\n\tret $8\n"
                     "2:\tsubl %%esp, %%edx"
                     : "=&a"(r), "=&d"(d) : : "memory", "cc");
    rec("call_ret8", 0, 0, 0, r, d, 0);
    (void)callee_ret8;
}

static void xlat_test(u32 al)
{
    static u8 table[256];
    u32 i, a = 0xabcd0000u | al;
    for (i = 0; i < 256; i++)
        table[i] = (u8)(255 - i * 3);
    __asm__("xlat" : "+a"(a) : "b"(table), "m"(table));
    rec("xlat", al, 0, 0, a, 0, 0);
}

static void run(void)
{
    u32 i, j;
    for (i = 0; i < sizeof buf; i++)
        buf[i] = (u8)rnd();
    for (i = 0; i < sizeof buf; i += 1024)
        rec("crc32", i, 1024, 0, crc32(buf + i, 1024, 0), crc32(buf, i + 1024, 0), 0);

    for (i = 0; i < 40; i++) {
        u32 a = vec(i), off = i < 20 ? i * 3 : rnd();
        btl(a, off), btsl(a, off), btrl(a, off), btcl(a, off), btsw(a, off), btcw(a, off);
        btsl_5(a), btcl_37(a), btrw_17(a);
    }
    for (i = 0; i < 256; i++)
        bits[i] = rnd();
    for (i = 0; i < 64; i++) {
        s32 off = (s32)(rnd() % 8000) - 4000; /* reaches bits[128 +- 125] */
        if (i < 8)
            off = (s32)i * 31 - 100;
        btl_m(off), btsl_m(off), btrl_m(off), btcl_m(off);
        btsw_m(off), btrw_m(off);
    }
    for (i = 0; i < 40; i++) {
        u32 a = vec(i);
        bsfl(a), bsrl(a), bsfw(a), bsrw(a);
        xchgs(a, vec(i + 7));
        cmpxchg8b_test(a, vec(i + 3), (int)(i & 1));
        conversions(a);
        lea16(rnd(), rnd(), rnd(), rnd());
    }
    for (i = 0; i < 64; i++) { /* every status-flag combination */
        u32 fin = 0x002 | (i & 1 ? CF : 0) | (i & 2 ? PF : 0) | (i & 4 ? AF : 0) |
                  (i & 8 ? ZF : 0) | (i & 16 ? SF : 0) | (i & 32 ? OF : 0);
        conditions(fin);
        jumps(fin);
        for (j = 0; j < 4; j++)
            flagops(fin | (j & 1 ? DF : 0), j * 0x55 + i);
    }
    stackops();
    enter_test();
    enter_overlap();
    for (i = 1; i < 12; i++)
        loops(i);
    calls();
    for (i = 0; i < 24; i++) {
        loopcc_flags(vec(i));
    }
    for (i = 0; i < 256; i += 17)
        xlat_test(i);
}

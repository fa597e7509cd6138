/* Self-modifying code on silicon (see tests/test_smc.py for the same programs as
 * raw bytes).  The text segment is made writable with mprotect(2); under the
 * interpreter mprotect is not emulated (-ENOSYS) and memory is writable anyway. */
#include "oracle.h"

extern char __executable_start[], etext[];
u32 r[16] __attribute__((used));
u8 movs_src[16] __attribute__((used)) = {0xb8, 0x11, 0x11, 0x11, 0x11, 0xc3, 0, 0,
                                         0xb8, 0x22, 0x22, 0x22, 0x22, 0xc3, 0, 0};

static int sys_mprotect(u32 addr, u32 len, u32 prot)
{
    int ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "0"(125), "b"(addr), "c"(len), "d"(prot) : "memory");
    return ret;
}

static void run(void)
{
    u32 start = (u32)__executable_start & ~0xfffu;
    u32 end = ((u32)etext + 0xfff) & ~0xfffu;
    sys_mprotect(start, end - start, 7); /* result not printed: differs under emulation */

    __asm__ volatile(
        /* patch the next instruction */
        "xorl %%eax, %%eax\n"
        "movb $0x22, 1f+1\n"
        "1: movb $0x11, %%al\n\t"
        "movl %%eax, r\n\t"
        /* a loop bumps the imm8 of an ADD it already executed */
        "xorl %%ebx, %%ebx\n\tmovl $3, %%ecx\n"
        "2: addl $1, %%ebx\n\t"
        "incb 2b+2\n\t"
        "loop 2b\n\t"
        "movl %%ebx, r+4\n\t"
        /* opcode rewritten between calls: add, sub, xor eax, 10 */
        "movl $100, %%eax\n\t"
        "movb $0x05, 3f\n\tcall 3f\n\tmovl %%eax, r+8\n\t"
        "movb $0x2d, 3f\n\tcall 3f\n\tmovl %%eax, r+12\n\t"
        "movb $0x35, 3f\n\tcall 3f\n\tmovl %%eax, r+16\n\t"
        "jmp 4f\n"
        "3: .byte 0x90\n\t.long 10\n\tret\n"
        "4:\n\t"
        /* rep movsb new routines over a stub, call each */
        "cld\n\tmovl $movs_src, %%esi\n\tmovl $7f, %%edi\n\tmovl $6, %%ecx\n\trep movsb\n\t"
        "call 7f\n\tmovl %%eax, r+20\n\t"
        "movl $movs_src+8, %%esi\n\tmovl $7f, %%edi\n\tmovl $6, %%ecx\n\trep movsb\n\t"
        "call 7f\n\tmovl %%eax, r+24\n\t"
        "jmp 8f\n"
        "7: .byte 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc\n"
        "8:\n\t"
        /* an instruction straddling a page boundary, patched one page at a time */
        "jmp 6f\n"
        ".balign 4096\n"
        ".skip 4094\n"
        "5: .byte 0xb8\n\t.long 0x44332211\n\tret\n"
        "6: call 5b\n\tmovl %%eax, r+28\n\t"
        "movb $0x99, 5b+4\n\tcall 5b\n\tmovl %%eax, r+32\n\t"
        "movb $0x55, 5b+1\n\tcall 5b\n\tmovl %%eax, r+36\n\t"
        /* rep stosb turns the following instructions into NOPs */
        "xorl %%ebx, %%ebx\n\tmovb $0x90, %%al\n\tmovl $9f, %%edi\n\tmovl $6, %%ecx\n\trep stosb\n"
        "9: movl $0xdead, %%ebx\n\tincl %%ebx\n\tincl %%ebx\n\t"
        "movl %%ebx, r+40\n\t"
        :
        :
        : "eax", "ebx", "ecx", "esi", "edi", "memory", "cc");
    rec("smc", r[0], r[1], r[2], r[3], r[4], 0);
    rec("smc", r[5], r[6], r[7], r[8], r[9], r[10]);
}

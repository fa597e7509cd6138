/*
 * head.S - the first instructions the demo Guest executes.
 *
 * G:100 Our journey begins where a Linux Guest's would, but without the
 * detour through the generic x86 entry code.  The Launcher loads us like a
 * vmlinux: each loadable segment is copied to its physical address and the
 * Host starts us at the physical entry point, startup_32 below.
 *
 * The Host has already done a lot for us.  We run in ring 1 (CS 0x61, data
 * segments 0x69) with paging on, using page tables the Host built so that
 * both x and 0xC0000000 + x reach physical address x.  That is why we can
 * start at our physical address (0x100000) and still use the virtual
 * addresses (0xC01xxxxx) the linker gave every symbol.  ESI holds 0, the
 * physical address of boot_params.  What we do not have is a stack: ESP is
 * 0, so not a single push or call may happen before we set one up.
 */
#include "lguest.h"

	.section .head.text, "ax"
	.code32
	.globl	startup_32
startup_32:
	/*
	 * The Launcher hands us zeroed memory, so our BSS (which includes
	 * the stack) is already clear.  We clear it anyway, as any kernel
	 * does: it costs a few instructions and means we never depend on
	 * how kind the loader was.  DF is clear at entry, but say so.
	 */
	cld
	movl	$__bss_start, %edi
	movl	$__bss_stop, %ecx
	subl	%edi, %ecx
	shrl	$2, %ecx
	xorl	%eax, %eax
	rep stosl

	/* Now we have a stack, at its virtual address like everything else. */
	movl	$boot_stack_top, %esp

	/*
	 * G:110 Before we can make any other hypercall we must tell the Host
	 * where our struct lguest_data is (G:111 in lguest.h).  The Host
	 * only speaks in guest-physical addresses, so we hand it the symbol's
	 * virtual address minus PAGE_OFFSET.  In return it fills in a few
	 * fields: pgdir, reserve_mem, tsc_khz and the time.
	 *
	 * This vmcall is the first one the Host sees: it faults (H:605), the
	 * Host rewrites it into "int $0x1f; nop" (H:970), the retried "int"
	 * leaves the interpreter (H:1030), and the Host runs it as LGUEST_INIT
	 * (H:1120) before it lets us go on to the next instruction.
	 */
	movl	$LHCALL_LGUEST_INIT, %eax
	movl	$(lguest_data - PAGE_OFFSET), %ebx
	vmcall

	/*
	 * We are still executing at our physical address.  A relative call
	 * would stay there, so jump through a register to the virtual address
	 * of our C code, which is where the rest of the kernel lives.  The one
	 * argument is the physical address of boot_params (ESI, untouched so
	 * far: neither rep stosl nor a hypercall changes it).
	 */
	pushl	%esi
	movl	$lguest_demo_main, %eax
	call	*%eax

	/*
	 * lguest_demo_main() never returns: it ends by asking the Host to
	 * shut us down.  If we ever get here, ud2 raises a trap that ends in
	 * a panic (or, before our IDT exists, in the Host killing us).
	 */
	ud2

/* The boot stack lives in the BSS, so it costs nothing in the image. */
	.section .bss
	.balign	16
	.globl	boot_stack_top
boot_stack:
	.skip	BOOT_STACK_SIZE
boot_stack_top:

/* We never want an executable stack; say so to keep the linker quiet. */
	.section .note.GNU-stack, "", @progbits

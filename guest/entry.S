/*
 * entry.S - the ways into and out of the kernel: trap and interrupt
 * stubs, the return path with lguest's special iret, and the context
 * switch.
 */
#include "lguest.h"

/*
 * G:230 Every IDT vector we use gets a tiny stub, 16 bytes apart so that
 * traps.c can compute a stub's address from its vector number.  The Host
 * (H:1045) has already pushed EIP, CS and EFLAGS, plus ESP and SS when we
 * came from ring 3, plus an error code for the vectors that have one (8,
 * 10-14, 17).  The stub evens that out by pushing a dummy 0 where no error
 * code came, then the vector number, so trap_common always sees the same
 * frame: struct pt_regs in kernel.h.
 */
.macro	trap_stub vec
	.balign	16
	.if (\vec == 8) || ((\vec >= 10) && (\vec <= 14)) || (\vec == 17)
	pushl	$\vec
	.else
	pushl	$0
	pushl	$\vec
	.endif
	jmp	trap_common
.endm

	.text
	.balign	16
	.globl	trap_stubs
trap_stubs:
	.irp	v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	trap_stub \v
	.endr
	.irp	v, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
	trap_stub \v
	.endr
	.globl	syscall_stub
syscall_stub:
	trap_stub 128

/*
 * G:232 The common path saves the segment registers and all general
 * registers, then switches to kernel data segments.  DS and ES may hold
 * user selectors if we came from ring 3; FS and GS we simply clear while
 * in the kernel, because GS may refer to a TLS descriptor that the next
 * LHCALL_LOAD_TLS replaces, and a loaded selector whose descriptor changes
 * under it would make the Host's next entry into us fail (9.4 of the ABI
 * notes).  Then C gets a pointer to the frame.
 */
trap_common:
	cld
	pushl	%ds
	pushl	%es
	pushl	%fs
	pushl	%gs
	pushal
	movl	$__KERNEL_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	xorl	%eax, %eax
	movl	%eax, %fs
	movl	%eax, %gs
	pushl	%esp
	call	handle_trap
	addl	$4, %esp
	.globl	ret_from_trap
ret_from_trap:
	popal
	popl	%gs
	popl	%fs
	popl	%es
	popl	%ds
	addl	$8, %esp		/* the vector and the error code */
	jmp	lguest_iret

/*
 * G:240 Returning from a trap is where a paravirtualized kernel has to be
 * careful.  A real iret restores the interrupt flag from the frame along
 * with everything else, atomically.  Our interrupt flag is
 * lguest_data.irq_enabled, which iret knows nothing about, so we store the
 * frame's EFLAGS there ourselves and then iret.  Between that store and
 * the iret, interrupts count as enabled but we are still on the way out:
 * an interrupt delivered there would push a second frame on top of the
 * one we are unwinding.
 *
 * So we tell the Host, through noirq_start and noirq_end in lguest_data
 * (G:112), never to deliver an interrupt while EIP lies between the two
 * labels (the Host checks in H:1040).  Faults are not affected, and
 * nothing in the window can fault.
 * The store goes through SS because DS may already hold a user selector.
 * After this, irq_enabled holds a whole EFLAGS image (say 0x246), not just
 * 0 or 0x200: only bit 9 matters.
 */
	.globl	lguest_iret, lguest_noirq_start, lguest_noirq_end
lguest_iret:
	pushl	%eax
	movl	12(%esp), %eax		/* the frame's EFLAGS, above EAX, EIP, CS */
lguest_noirq_start:
	movl	%eax, %ss:lguest_data
	popl	%eax
	iret
lguest_noirq_end:

/*
 * G:292 The context switch proper is the classic one: push the registers
 * the C calling convention wants preserved, save ESP in the old task,
 * load the new task's ESP, pop and return.  We return into wherever the
 * new task last called switch_to(), or, for a brand-new task, into
 * ret_from_fork, which sched.c placed on its stack for this purpose.
 *
 *	void switch_to(u32 *prev_ksp, u32 next_ksp);
 */
	.globl	switch_to
switch_to:
	movl	4(%esp), %eax
	movl	8(%esp), %edx
	pushl	%ebp
	pushl	%ebx
	pushl	%esi
	pushl	%edi
	movl	%esp, (%eax)
	movl	%edx, %esp
	popl	%edi
	popl	%esi
	popl	%ebx
	popl	%ebp
	ret

/*
 * A new task leaves switch_to() here.  Its stack holds a complete trap
 * frame that "returns" to ring 3 at the program's entry point.
 */
	.globl	ret_from_fork
ret_from_fork:
	call	schedule_tail
	jmp	ret_from_trap

	.section .note.GNU-stack, "", @progbits

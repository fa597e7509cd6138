/*
 * user_blob.S - embed the user programs (build/user.bin, linked by
 * user.lds) in the kernel's read-only data, on page boundaries of their
 * own, so that mm.c can map exactly those pages into user space.
 */
	.section .rodata.user, "a"
	.balign	4096
	.globl	user_blob, user_blob_end
user_blob:
	.incbin	"user.bin"
	.balign	4096
user_blob_end:

	.section .note.GNU-stack, "", @progbits

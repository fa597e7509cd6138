/*
 * syscall.c - what ring 3 may ask of the kernel.
 */
#include "kernel.h"
#include "syscalls.h"

#define ENOSYS	38
#define EFAULT	14
#define EINVAL	22

/*
 * Copy a user buffer out through the task's own page tables.  We walk them
 * ourselves rather than just dereferencing the pointer: a bad pointer from
 * user space must fail the call, not fault in the kernel.  A page of the
 * stack window that was never touched is demand-faulted first, as the
 * processor would have done had the task touched it.
 */
static int copy_from_user(void *dst, u32 src, u32 len)
{
	u8 *d = dst;

	while (len) {
		u32 chunk = PAGE_SIZE - (src & ~PAGE_MASK), pa;

		if (chunk > len)
			chunk = len;
		pa = virt_to_phys_user(current->pgdir, src);
		if (!pa && (!do_page_fault_user(src, 0) ||
			    !(pa = virt_to_phys_user(current->pgdir, src))))
			return -EFAULT;
		memcpy(d, __va(pa), chunk);
		d += chunk;
		src += chunk;
		len -= chunk;
	}
	return 0;
}

/*
 * G:330 A system call is "int $0x80" from ring 3, with the call number in
 * EAX and arguments in EBX, ECX and EDX, as on Linux.  Vector 0x80 is a
 * trap gate with DPL 3 (G:220); the Host reflects it to us like any trap,
 * on the task's kernel stack, with our interrupt flag untouched, so system
 * calls run with interrupts enabled and can be preempted.  The result goes
 * back in the saved EAX, which the return path restores.
 */
void do_syscall(struct pt_regs *regs)
{
	char buf[256];
	u32 a = regs->ebx, b = regs->ecx;
	int ret = 0;

	current->syscalls++;
	switch (regs->eax) {
	case SYS_EXIT:
		task_exit((int)a);
		break;
	case SYS_WRITE:
		if (b > sizeof(buf))
			ret = -EINVAL;
		else if ((ret = copy_from_user(buf, a, b)) == 0) {
			console_write(buf, b);
			ret = b;
		}
		break;
	case SYS_YIELD:
		need_resched = 1;
		break;
	case SYS_SLEEP:
		sleep_ms(a);
		break;
	case SYS_GETPID:
		ret = current->id;
		break;
	case SYS_UPTIME:
		ret = uptime_ms();
		break;
	default:
		ret = -ENOSYS;
	}
	regs->eax = ret;
}

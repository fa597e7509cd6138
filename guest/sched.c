/*
 * sched.c - tasks, the scheduler, sleeping and waking, and lazy FPU
 * switching.
 */
#include "kernel.h"

extern char boot_stack_top[];
extern char ret_from_fork[];
void switch_to(u32 *prev_ksp, u32 next_ksp);
void make_tls_desc(u32 *desc, u32 base);

struct task tasks[MAX_TASKS];
struct task *current;
volatile int need_resched;
u32 context_switches, nm_traps;
int fpu_present, fxsr_present;

static int in_schedule;
static struct task *fpu_owner;
static int ts_set;
static struct waitq exit_wq;

/* Kernel stacks must be virtually contiguous: take them from the BSS. */
static u8 kstacks[MAX_TASKS][KSTACK_SIZE] __attribute__((aligned(PAGE_SIZE)));

/*
 * G:280 The boot thread becomes task 0, "kernel": it runs the selftest or
 * the monitor, waits for the user tasks, and is what runs when nothing
 * else can.  Its kernel stack is the boot stack, and LHCALL_SET_STACK
 * tells the Host so.  The Host needs to know where our kernel stack is
 * because, when a trap or interrupt interrupts ring 3, it is the Host
 * that switches to that stack and builds the frame there (the TSS's
 * ss1:esp1, in processor terms).  The selector must carry RPL 1 (0x69), and
 * the "2" says the stack is two pages long, both of which the Host checks
 * are mapped and writable right away.
 */
void sched_init(void)
{
	struct task *t = &tasks[0];

	t->state = TASK_RUNNABLE;
	t->id = 0;
	memcpy(t->name, "kernel", 7);
	t->pgdir = kernel_pgdir;
	t->kstack = (u32)boot_stack_top - KSTACK_SIZE;
	current = t;
	hcall(LHCALL_SET_STACK, __KERNEL_DS, (u32)boot_stack_top, 2, 0);
}

/*
 * M:130 Exercise: make the idle Guest really idle.  The clock ticks 100
 * times a second whether anybody waits or not (G:250), and blocked tasks
 * are simply made runnable on every tick to look again (G:296), so an idle
 * Guest still wakes the Host a hundred times a second.  Keep a proper list
 * of what each task waits for, let wake_up() be the only way out of
 * TASK_BLOCKED, and before halting arm LHCALL_SET_CLOCKEVENT for the first
 * sleeper's deadline instead of the next tick.  The monitor's "info"
 * command counts halts and interrupts, so you can see the difference.
 */
static struct task *pick_next(void)
{
	int i, start = current - tasks;

	for (i = 1; i <= MAX_TASKS; i++) {
		struct task *t = &tasks[(start + i) % MAX_TASKS];

		if (t->state == TASK_RUNNABLE)
			return t;
	}
	return NULL;
}

/*
 * G:290 Switching tasks means telling the Host four things, and none of
 * them has to happen before the switch itself, so they all go into the
 * asynchronous ring (G:270) and cost one trap together:
 *
 * - the new page directory (LHCALL_NEW_PGTABLE; we also keep its physical
 *   address in lguest_data.pgdir, where Linux keeps its "CR3");
 * - the new task's kernel stack (LHCALL_SET_STACK, see G:280);
 * - its thread-local-storage descriptors (LHCALL_LOAD_TLS: GDT entries 6-8
 *   from three descriptors in memory).  Our user tasks find their TLS page
 *   through %gs = 0x33, entry 6;
 * - the TS flag, if the FPU holds someone else's registers (G:320).
 */
static void context_switch(struct task *prev, struct task *next)
{
	lazy_begin();
	if (next->pgdir != prev->pgdir) {
		lguest_data.pgdir = __pa(next->pgdir);
		lazy_hcall(LHCALL_NEW_PGTABLE, __pa(next->pgdir), 0, 0);
	}
	lazy_hcall(LHCALL_SET_STACK, __KERNEL_DS, next->kstack + KSTACK_SIZE, 2);
	if (next->user)
		lazy_hcall(LHCALL_LOAD_TLS, __pa(next->tls_desc), 0, 0);
	if (fpu_present && !ts_set && fpu_owner != next) {
		lazy_hcall(LHCALL_TS, 1, 0, 0);
		ts_set = 1;
	}
	lazy_end();
	context_switches++;
	next->switches_in++;
	current = next;
	switch_to(&prev->ksp, next->ksp);
}

/*
 * G:294 schedule() picks the next runnable task, round robin, and switches
 * to it.  If nothing at all can run, we idle right here with LHCALL_HALT
 * (G:252): the interrupt that wakes us runs its handler on the current
 * stack, may make a task runnable, and we look again.
 *
 * A handler that asks for a reschedule while we are already in here must
 * not start a second schedule() on top of this one; in_schedule prevents
 * that.  It is one counter for the whole kernel, and that works because
 * every task that was switched away is itself inside schedule() (or is new
 * and leaves through schedule_tail()), and clears it when it resumes.
 */
void schedule(void)
{
	struct task *prev = current, *next;
	u32 flags;

	if (in_schedule)
		return;
	flags = irq_save();
	in_schedule = 1;
	need_resched = 0;
	while (!(next = pick_next())) {
		lguest_halt();
		irq_disable();
	}
	if (next != prev) {
		if (prev->state == TASK_RUNNABLE)
			prev->preempted++;
		context_switch(prev, next);
	}
	in_schedule = 0;
	irq_restore(flags);
}

/* A new task's first stop (see ret_from_fork in entry.S). */
void schedule_tail(void)
{
	in_schedule = 0;
}

/*
 * G:296 Called from the timer interrupt: wake sleepers whose time has
 * come, and if anyone else could run, ask for a reschedule.  handle_trap()
 * acts on that on its way out (G:254), which is how a task spinning in
 * ring 3 without ever making a system call still gets preempted.
 */
void scheduler_tick(void)
{
	int i, others = 0;

	for (i = 0; i < MAX_TASKS; i++) {
		struct task *t = &tasks[i];

		if (t->state == TASK_SLEEPING && (s32)(jiffies - t->wake_at) >= 0)
			t->state = TASK_RUNNABLE;
		/*
		 * Blocked tasks get a look every tick as well: they re-check
		 * what they wait for (wait_event loops), so a wake-up that never
		 * comes costs a little polling instead of a hang, and timeouts
		 * work.
		 */
		if (t->state == TASK_BLOCKED)
			t->state = TASK_RUNNABLE;
		if (t != current && t->state == TASK_RUNNABLE)
			others++;
	}
	if (others)
		need_resched = 1;
}

void sleep_ms(u32 ms)
{
	u32 flags = irq_save();

	current->wake_at = jiffies + (ms * HZ + 999) / 1000 + 1;
	current->state = TASK_SLEEPING;
	schedule();
	irq_restore(flags);
}

/* Both called with interrupts disabled (see wait_event in kernel.h). */
void wait_on(struct waitq *q)
{
	q->waiter = current;
	current->state = TASK_BLOCKED;
	schedule();
}

void wake_up(struct waitq *q)
{
	struct task *t = q->waiter;

	if (t && t->state == TASK_BLOCKED) {
		t->state = TASK_RUNNABLE;
		need_resched = 1;
	}
	q->waiter = NULL;
}

/*
 * G:298 A user task starts life as if it had been interrupted just before
 * its first instruction: its kernel stack holds a trap frame (struct
 * pt_regs) that "returns" to ring 3 at the program's entry point, with
 * user segments, interrupts enabled and ESP at the top of the (not yet
 * existing) stack.  Below it sits what switch_to() pops: four zero
 * registers and a return address, ret_from_fork.  The first time the
 * scheduler picks the task, switch_to() returns there, and the frame is
 * unwound by the same code that ends every trap, lguest_iret included.
 */
struct task *spawn_user(const char *name, u32 program)
{
	const u32 *header = (const u32 *)user_blob;
	struct task *t = NULL;
	struct pt_regs *regs;
	u32 *sp, i;

	if (header[0] != 0x52455355 || program >= header[1])	/* "USER" */
		return NULL;
	for (i = 1; i < MAX_TASKS; i++)
		if (tasks[i].state == TASK_UNUSED) {
			t = &tasks[i];
			break;
		}
	if (!t)
		return NULL;
	memset(t, 0, sizeof(*t));
	t->id = i;
	t->user = 1;
	for (i = 0; i < sizeof(t->name) - 1 && name[i]; i++)
		t->name[i] = name[i];
	t->pgdir = new_user_pgdir(&t->tls);
	if (!t->pgdir)
		return NULL;
	/* The TLS page: our id, the program number, our name. */
	t->tls[0] = t->id;
	t->tls[1] = program;
	memcpy(&t->tls[2], t->name, sizeof(t->name));
	make_tls_desc(t->tls_desc, USER_TLS);

	t->kstack = (u32)kstacks[t->id];
	regs = (struct pt_regs *)(t->kstack + KSTACK_SIZE) - 1;
	memset(regs, 0, sizeof(*regs));
	regs->eip = header[2 + program];
	regs->cs = __USER_CS;
	regs->eflags = X86_EFLAGS_IF | 0x2;
	regs->esp = USER_STACK_TOP;
	regs->ss = regs->ds = regs->es = __USER_DS;
	regs->gs = __USER_TLS;
	sp = (u32 *)regs;
	*--sp = (u32)ret_from_fork;
	for (i = 0; i < 4; i++)
		*--sp = 0;
	t->ksp = (u32)sp;
	barrier();
	t->state = TASK_RUNNABLE;
	return t;
}

void task_exit(int code)
{
	irq_disable();
	current->exit_code = code;
	current->state = TASK_ZOMBIE;
	if (fpu_owner == current)
		fpu_owner = NULL;
	wake_up(&exit_wq);
	schedule();
	panic("a dead task was scheduled");
}

/* Wait for a task to exit, free what it had, and return its exit code. */
int task_wait(struct task *t)
{
	wait_event(&exit_wq, t->state == TASK_ZOMBIE);
	free_user_pgdir(t->pgdir);
	t->state = TASK_UNUSED;
	return t->exit_code;
}

/*
 * G:320 Lazy FPU switching.  Saving and restoring the floating-point
 * registers (512 bytes with fxsave) on every switch would be wasted on
 * tasks that never touch them, so we do it only when needed, with the
 * processor's help: the TS ("task switched") flag in CR0 makes the next
 * x87/MMX/SSE instruction raise #NM (vector 7) instead of executing.
 *
 * We cannot write CR0 in ring 1, so TS is set and cleared by hypercall
 * (LHCALL_TS), and the Host keeps the flag for us.  The rule: whenever
 * the task we switch to does not own the FPU registers, set TS (G:290).
 * When it then uses the FPU, #NM arrives here: clear TS, save the old
 * owner's registers into its task, load ours (or start fresh with fninit
 * on first use), and return to retry the instruction.  A task that keeps
 * the FPU to itself pays nothing, even across many switches.
 *
 * All of this only happens if CPUID leaf 1 says there is an FPU; fxsave
 * and fxrstor only if it also advertises FXSR, otherwise fnsave/frstor.
 */
static u8 *fpu_area(struct task *t)
{
	return (u8 *)(((u32)t->fpu_area + 15) & ~15U);
}

void fpu_init(void)
{
	u32 a = 1, b, c, d;

	asm volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d));
	fpu_present = d & 1;
	fxsr_present = (d >> 24) & 1;
	if (fpu_present) {
		hcall(LHCALL_TS, 1, 0, 0, 0);
		ts_set = 1;
	}
}

void do_device_not_available(struct pt_regs *regs)
{
	if (!fpu_present) {
		if (user_mode(regs)) {
			printk("task %d: FPU instruction without an FPU, killed\n", current->id);
			task_exit(-8);
		}
		panic("#NM in the kernel without an FPU at %p", regs->eip);
	}
	nm_traps++;
	hcall(LHCALL_TS, 0, 0, 0, 0);
	ts_set = 0;
	if (fpu_owner == current)
		return;
	if (fpu_owner) {
		if (fxsr_present)
			asm volatile("fxsave %0" : "=m"(*fpu_area(fpu_owner)));
		else
			asm volatile("fnsave %0" : "=m"(*fpu_area(fpu_owner)));
	}
	if (current->fpu_used) {
		if (fxsr_present)
			asm volatile("fxrstor %0" : : "m"(*fpu_area(current)));
		else
			asm volatile("frstor %0" : : "m"(*fpu_area(current)));
	} else {
		asm volatile("fninit");
		current->fpu_used = 1;
	}
	fpu_owner = current;
}

/*
 * kernel.h - what the parts of the demo Guest know about each other.
 *
 * lguest.h is the ABI we share with the Host; this header is the kernel's
 * own business: types, the interrupt-flag helpers, and one short section
 * per file (boot, lib, printk, hcall, mm, traps, sched, virtio, drivers).
 */
#ifndef DEMO_KERNEL_H
#define DEMO_KERNEL_H

#include "lguest.h"

typedef signed int s32;
typedef unsigned long long u64;
typedef signed long long s64;
typedef __builtin_va_list va_list;
#define va_start(ap, last)	__builtin_va_start(ap, last)
#define va_arg(ap, type)	__builtin_va_arg(ap, type)
#define va_end(ap)		__builtin_va_end(ap)

#define NULL		((void *)0)
#define PAGE_SIZE	4096
#define PAGE_MASK	(~(PAGE_SIZE - 1))
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define barrier()	asm volatile("" ::: "memory")
#define noreturn	__attribute__((noreturn))

/* Page-table entry bits (2-level i386 paging). */
#define _PAGE_PRESENT	0x001
#define _PAGE_RW	0x002
#define _PAGE_USER	0x004
#define _PAGE_ACCESSED	0x020
#define _PAGE_DIRTY	0x040
#define _PAGE_TABLE	(_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY)
#define X86_EFLAGS_IF	0x200

/* The user address space (see G:300). */
#define USER_TLS	0x08040000	/* one page: the task's TLS block */
#define USER_CODE	0x08048000	/* the user program blob, read-only */
#define USER_STACK_TOP	0xBF000000	/* stacks grow down from here... */
#define USER_STACK_MAX	(64 * PAGE_SIZE) /* ...by at most this much */

#define KSTACK_SIZE	8192		/* two pages, as SET_STACK expects */
#define SCRATCH_VA	0xF0000000	/* kernel window the selftest remaps */

/* ---- boot (main.c) ---- */
extern u32 ram_size;
extern char command_line[];
int cmdline_has_word(const char *word);
void noreturn power_off(const char *reason, u32 how);
void noreturn panic(const char *fmt, ...);

/* ---- lib.c ---- */
void *memset(void *s, int c, u32 n);
void *memcpy(void *d, const void *s, u32 n);
int memcmp(const void *a, const void *b, u32 n);
u32 strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, u32 n);
u32 div64(u64 *n, u32 base);
u32 parse_uint(const char **s, int *ok);
int vsnprintf(char *buf, u32 size, const char *fmt, va_list ap);
int snprintf(char *buf, u32 size, const char *fmt, ...);
u32 crc32(u32 crc, const void *p, u32 len);

/* ---- printk.c ---- */
void printk(const char *fmt, ...);
void console_write(const char *s, u32 len);
void early_write(const char *s, u32 len);
/* Once the virtio console is up it takes over (D:300). */
extern void (*console_output)(const char *s, u32 len);

/* ---- the virtual interrupt flag ---- */

/*
 * G:245 Our interrupt flag is a word in lguest_data, so disabling
 * interrupts is a plain store, with no trap at all: that is why a
 * paravirtualized kernel can afford to disable them as often as Linux does.
 * The Host reads the word before it delivers (H:1040).  The price comes on
 * the way back: an interrupt that arrived while we had them off is still
 * waiting, and the Host looks for interrupts only when the interpreter
 * stops, which may be a whole slice of instructions later.  So the Host
 * sets irq_pending when it finds an interrupt it may not deliver, and when
 * we turn interrupts back on we look at that word and, if it is set, make
 * the cheapest hypercall there is (SEND_INTERRUPTS, which does nothing):
 * on the way back into us, the Host delivers the waiting interrupt.
 */
static inline u32 irq_save(void)
{
	u32 flags = lguest_data.irq_enabled;

	lguest_data.irq_enabled = 0;
	barrier();
	return flags;
}

static inline void irq_restore(u32 flags)
{
	barrier();
	lguest_data.irq_enabled = flags;
	barrier();
	if ((flags & X86_EFLAGS_IF) && (lguest_data.irq_pending & X86_EFLAGS_IF))
		hcall(LHCALL_SEND_INTERRUPTS, 0, 0, 0, 0);
}

static inline void irq_disable(void) { irq_save(); }
static inline void irq_enable(void) { irq_restore(X86_EFLAGS_IF); }

/* ---- hcall.c: the asynchronous ring ---- */
void lazy_begin(void);
void lazy_hcall(u32 call, u32 arg1, u32 arg2, u32 arg3);
void lazy_end(void);
extern u32 async_hcalls_queued;

/* ---- mm.c ---- */
extern u32 *kernel_pgdir;
extern u32 pages_free, pages_total;
void mm_init(void);
void *alloc_page(void);
void free_page(void *p);
u32 *pte_lookup(u32 *pgdir, u32 va, int create);
void set_pte(u32 *pgdir, u32 va, u32 pte);
void map_device(u32 gpa, u32 pages);
u32 virt_to_phys_user(u32 *pgdir, u32 va);
u32 *new_user_pgdir(u32 **tls_out);
void free_user_pgdir(u32 *pgdir);

/* ---- traps.c ---- */
struct pt_regs {
	u32 edi, esi, ebp, esp_unused, ebx, edx, ecx, eax;
	u32 gs, fs, es, ds;
	u32 vector, error;
	u32 eip, cs, eflags;
	u32 esp, ss;		/* only when we came from ring 3 */
};
static inline int user_mode(const struct pt_regs *r) { return (r->cs & 3) == 3; }

typedef void (*irq_handler_t)(u32 irq, void *arg);
void gdt_init(void);
void idt_init(void);
void timer_init(void);
void request_irq(u32 irq, irq_handler_t handler, void *arg);
void lguest_halt(void);
u64 clock_ns(void);
u32 uptime_ms(void);
extern volatile u32 jiffies;
extern u32 irq_counts[LGUEST_IRQS];
extern u32 trap_counts[32];
extern u32 halts;
#define HZ		100
#define TICK_NS		(1000000000 / HZ)

/*
 * A trap probe lets the selftest provoke an exception in the kernel on
 * purpose: the handler records it and resumes at probe.resume.
 */
struct trap_probe {
	int vector;
	u32 resume, hit, error, cr2;
};
extern struct trap_probe probe;

/* ---- sched.c ---- */
enum task_state { TASK_UNUSED, TASK_RUNNABLE, TASK_SLEEPING, TASK_BLOCKED, TASK_ZOMBIE };

struct task {
	u32 ksp;		/* saved kernel stack pointer (switch_to) */
	enum task_state state;
	int id;
	char name[16];
	int user;
	u32 *pgdir;		/* kernel_pgdir for kernel threads */
	u32 kstack;		/* base of the 8 KiB kernel stack */
	u32 wake_at;		/* jiffies, when sleeping */
	int exit_code;
	u32 tls_desc[6];	/* three GDT descriptors for LOAD_TLS */
	u32 *tls;		/* kernel address of the TLS page */
	u32 stack_pages;	/* demand-zero stack pages handed out */
	u32 syscalls, switches_in, preempted;
	int fpu_used;
	u8 fpu_area[512 + 16];	/* fxsave needs 16-byte alignment */
};
#define MAX_TASKS 6

extern struct task *current;
extern struct task tasks[MAX_TASKS];
extern volatile int need_resched;
extern u32 context_switches, nm_traps;
extern int fpu_present, fxsr_present;
void sched_init(void);
void schedule(void);
void sleep_ms(u32 ms);
struct task *spawn_user(const char *name, u32 program);
int task_wait(struct task *t);
void task_exit(int code) noreturn;
void scheduler_tick(void);
void fpu_init(void);
void do_device_not_available(struct pt_regs *regs);

/* A wait queue is just a flag of "someone is blocked here". */
struct waitq { struct task *waiter; };
void wait_on(struct waitq *q);
void wake_up(struct waitq *q);
#define wait_event(q, cond) do {			\
		u32 __f = irq_save();			\
		while (!(cond))				\
			wait_on(q);			\
		irq_restore(__f);			\
	} while (0)
/* The same, giving up after ms milliseconds; true if cond became true. */
#define wait_event_timeout(q, cond, ms) ({				\
		u32 __f = irq_save(), __end = jiffies + (ms) / (1000 / HZ) + 1; \
		int __ok;						\
		while (!(__ok = !!(cond)) && (s32)(jiffies - __end) < 0) \
			wait_on(q);					\
		irq_restore(__f);					\
		__ok;							\
	})

/* ---- syscall.c ---- */
void do_syscall(struct pt_regs *regs);
int do_page_fault_user(u32 addr, u32 error);

/* ---- user programs (user_blob.S, user.c) ---- */
extern const u8 user_blob[], user_blob_end[];

#endif /* DEMO_KERNEL_H */

/*
 * mm.c - physical pages, our own page tables, and user address spaces.
 */
#include "kernel.h"

extern char _text[], __ro_end[], _end[];

u32 *kernel_pgdir;
u32 pages_free, pages_total;
static u32 next_free_pa, alloc_limit_pa;
static void *free_list;
/* Until mm_init() switches to our tables, nobody needs to hear of changes. */
static int report_changes;

/*
 * G:260 Physical memory is one range, [0, ram_size), which the Launcher
 * described in boot_params' e820 map.  Our image sits at 1 MiB; everything
 * from its end up is ours to hand out, except the page tables the Host
 * built for us just below the top of RAM (5.4 of the ABI notes).  We are
 * still running on those, so until we have switched to our own tables the
 * allocator stops short of them.
 *
 * The allocator is as simple as an allocator gets: a bump pointer through
 * never-used pages and a linked list of freed ones (the link lives in the
 * free page itself).  Every page comes back zeroed, which is also what
 * makes demand-zero user stacks (G:300) zero.
 */
void *alloc_page(void)
{
	u32 flags = irq_save();
	void *p = NULL;

	if (free_list) {
		p = free_list;
		free_list = *(void **)p;
	} else if (next_free_pa + PAGE_SIZE <= alloc_limit_pa) {
		p = __va(next_free_pa);
		next_free_pa += PAGE_SIZE;
	}
	if (p)
		pages_free--;
	irq_restore(flags);
	if (p)
		memset(p, 0, PAGE_SIZE);
	return p;
}

void free_page(void *p)
{
	u32 flags = irq_save();

	*(void **)p = free_list;
	free_list = p;
	pages_free++;
	irq_restore(flags);
}

/*
 * G:262 The Host shadows our page tables, so it must hear about every
 * change to a table that may be live.  The rules are Linux's: a changed
 * page-directory entry is LHCALL_SET_PGD (which table, which index), a
 * changed page-table entry is LHCALL_SET_PTE (which top-level table, which
 * virtual address, the new value).  For kernel addresses the Host applies
 * the change to every address space it has cached, since the kernel half
 * is shared.  Both go through lazy_hcall(), so a burst of changes made
 * between lazy_begin() and lazy_end() costs one trap instead of dozens.
 */
u32 *pte_lookup(u32 *pgdir, u32 va, int create)
{
	u32 idx = va >> 22, *pt;

	if (!(pgdir[idx] & _PAGE_PRESENT)) {
		if (!create || !(pt = alloc_page()))
			return NULL;
		/*
		 * Directory entries are as permissive as Linux's (0x067); the
		 * page-table entries below decide what is really allowed.
		 */
		pgdir[idx] = __pa(pt) | _PAGE_TABLE;
		if (report_changes)
			lazy_hcall(LHCALL_SET_PGD, __pa(pgdir), idx, 0);
	}
	pt = __va(pgdir[idx] & PAGE_MASK);
	return &pt[(va >> 12) & 1023];
}

void set_pte(u32 *pgdir, u32 va, u32 pte)
{
	u32 *p = pte_lookup(pgdir, va, 1);

	if (!p)
		panic("out of memory for a page table");
	*p = pte;
	if (report_changes)
		lazy_hcall(LHCALL_SET_PTE, __pa(pgdir), va & PAGE_MASK, pte);
}

/*
 * G:264 Our kernel page tables map all of RAM at PAGE_OFFSET, like the
 * Host's did, but with two differences that show we are in charge now:
 * there is no identity mapping at 0 any more (low addresses are for user
 * space), and our own text and read-only data are mapped read-only.  The
 * Host enforces write protection in ring 1 too, so a stray write into our
 * code faults instead of silently corrupting it.
 *
 * We also create (empty) page tables for the megabyte above RAM where the
 * Launcher puts the lguest bus: drivers map their pages there later
 * (map_device), and because the tables already exist, that only changes
 * page-table entries, never the shared top-level entries.
 *
 * The tables are not live while we build them, so we tell the Host
 * nothing until the single LHCALL_NEW_PGTABLE that switches to them.  After
 * that the Host's own tables are garbage and the allocator may use them.
 */
void mm_init(void)
{
	u32 host_pt_pages = (ram_size + 0x3FFFFF) >> 22, pa, va;

	next_free_pa = (__pa(_end) + PAGE_SIZE - 1) & PAGE_MASK;
	alloc_limit_pa = lguest_data.pgdir - host_pt_pages * PAGE_SIZE;
	pages_total = pages_free = (ram_size - next_free_pa) / PAGE_SIZE;

	kernel_pgdir = alloc_page();
	for (pa = 0; pa < ram_size; pa += PAGE_SIZE) {
		u32 pte = pa | _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_DIRTY;
		u32 *p;

		if (pa < __pa(_text) || pa >= __pa(__ro_end))
			pte |= _PAGE_RW;
		p = pte_lookup(kernel_pgdir, PAGE_OFFSET + pa, 1);
		if (!p)
			panic("no memory for the kernel page tables");
		*p = pte;
	}
	for (va = PAGE_OFFSET + ram_size; va < PAGE_OFFSET + ram_size + 0x100000;
	     va += 0x400000)
		pte_lookup(kernel_pgdir, va, 1);
	/* The last page-table slot of each would-be device megabyte. */
	pte_lookup(kernel_pgdir, PAGE_OFFSET + ram_size + 0xFFFFF, 1);
	/* A window for the selftest's mapping experiments. */
	pte_lookup(kernel_pgdir, SCRATCH_VA, 1);

	lguest_data.pgdir = __pa(kernel_pgdir);
	hcall(LHCALL_NEW_PGTABLE, __pa(kernel_pgdir), 0, 0, 0);
	report_changes = 1;
	alloc_limit_pa = ram_size;
}

/* Map device pages (descriptor page, vrings) at PAGE_OFFSET + gpa. */
void map_device(u32 gpa, u32 pages)
{
	lazy_begin();
	for (; pages; pages--, gpa += PAGE_SIZE)
		set_pte(kernel_pgdir, PAGE_OFFSET + gpa,
			gpa | _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY);
	lazy_end();
}

/* The physical address behind a user virtual address, or 0. */
u32 virt_to_phys_user(u32 *pgdir, u32 va)
{
	u32 *p;

	if (va >= PAGE_OFFSET)
		return 0;
	p = pte_lookup(pgdir, va, 0);
	if (!p || (*p & (_PAGE_PRESENT | _PAGE_USER)) != (_PAGE_PRESENT | _PAGE_USER))
		return 0;
	return (*p & PAGE_MASK) | (va & ~PAGE_MASK);
}

/*
 * G:300 A user address space is a fresh page directory whose kernel half
 * (entries 768 up) is copied from ours: those entries point at the same
 * kernel page tables, so every address space shares one kernel.  The user
 * half gets three things:
 *
 * - the user program blob at USER_CODE, present and user-accessible but
 *   read-only: every task maps the same physical pages;
 * - a TLS page at USER_TLS, which the task reaches through %gs (G:290);
 * - nothing at all for the stack.  The task starts with ESP at
 *   USER_STACK_TOP and its first push faults; do_page_fault_user() then
 *   hands out a zeroed page (G:310).
 *
 * The whole construction is one batch of SET_PGD/SET_PTE calls in the
 * asynchronous ring, flushed once at the end.
 */
u32 *new_user_pgdir(u32 **tls_out)
{
	u32 *pgdir = alloc_page(), *tls = alloc_page(), off, i;
	u32 blob_pa = __pa(user_blob);
	u32 blob_len = (u32)(user_blob_end - user_blob);

	if (!pgdir || !tls)
		return NULL;
	for (i = PAGE_OFFSET >> 22; i < 1023; i++)
		pgdir[i] = kernel_pgdir[i];
	lazy_begin();
	for (off = 0; off < blob_len; off += PAGE_SIZE)
		set_pte(pgdir, USER_CODE + off,
			(blob_pa + off) | _PAGE_PRESENT | _PAGE_USER);
	set_pte(pgdir, USER_TLS, __pa(tls) | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER);
	lazy_end();
	*tls_out = tls;
	return pgdir;
}

/*
 * G:305 Tearing an address space down must be reported too.  The Host
 * keeps its shadow page tables keyed by the physical address of our page
 * directory, and it keeps them after we switch away: that is the point of
 * its cache.  Our allocator hands out recently freed pages first, so the
 * next task's page directory is very likely this one's page again, and
 * whatever the Host still remembers for it would come back to life: the old
 * task's stack mapped in the new task, pointing at a page that is now
 * something else.  So, like Linux when it frees page tables, we clear every
 * user directory entry and tell the Host with LHCALL_SET_PGD, one batch for
 * the lot, before any of the pages can be reused.
 */
void free_user_pgdir(u32 *pgdir)
{
	u32 blob_lo = __pa(user_blob), blob_hi = __pa(user_blob_end), i, j;
	u32 *tables[PAGE_OFFSET >> 22], n = 0;

	lazy_begin();
	for (i = 0; i < PAGE_OFFSET >> 22; i++) {
		if (!(pgdir[i] & _PAGE_PRESENT))
			continue;
		tables[n++] = __va(pgdir[i] & PAGE_MASK);
		pgdir[i] = 0;
		lazy_hcall(LHCALL_SET_PGD, __pa(pgdir), i, 0);
	}
	lazy_end();
	while (n--) {
		u32 *pt = tables[n];

		for (j = 0; j < 1024; j++) {
			u32 pa = pt[j] & PAGE_MASK;

			/* The program blob is shared by every task: keep it. */
			if ((pt[j] & _PAGE_PRESENT) && (pa < blob_lo || pa >= blob_hi))
				free_page(__va(pa));
		}
		free_page(pt);
	}
	free_page(pgdir);
}

/*
 * G:310 A page fault from user space arrives with the faulting address in
 * lguest_data.cr2 (the Host put it there, as it cannot give us a real CR2).
 * If it lies in the stack window and nothing is mapped there, this is the
 * stack growing: map a zeroed page and let the instruction run again.  The
 * Host learns about the new entry through SET_PTE like any other change
 * (H:590).  The entry has no accessed bit yet, so the Host does not copy it
 * into its shadow there; instead the retried instruction misses in the
 * shadow once more, and this time the Host's fix-up finds a present entry
 * and fills the shadow (H:570) without bothering us.  Anything else is a
 * real fault, and the caller kills the task.
 */
int do_page_fault_user(u32 addr, u32 error)
{
	u32 *pte;
	void *page;

	(void)error;
	if (addr < USER_STACK_TOP - USER_STACK_MAX || addr >= USER_STACK_TOP)
		return 0;
	pte = pte_lookup(current->pgdir, addr, 1);
	if (!pte || (*pte & _PAGE_PRESENT) || !(page = alloc_page()))
		return 0;
	set_pte(current->pgdir, addr & PAGE_MASK,
		__pa(page) | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER);
	current->stack_pages++;
	return 1;
}

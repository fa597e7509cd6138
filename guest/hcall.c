/*
 * hcall.c - batching hypercalls in the asynchronous ring.
 */
#include "kernel.h"

static int lazy_depth;
static u32 next_slot;
u32 async_hcalls_queued;

/*
 * G:270 Every hypercall is a trip out of the Guest, and some operations
 * make many of them in a row: a context switch changes the page table, the
 * kernel stack, the TLS entries and the TS flag; building an address space
 * sets dozens of page-table entries.  None of those needs to happen *now*,
 * only before the Guest next depends on them.
 *
 * So lguest_data holds a ring of 64 hypercall slots.  Instead of trapping
 * we write the call into the slot at our cursor and flip its status byte
 * from 0xFF ("empty") to 0 ("ready").  The Host runs every ready slot, in
 * order, before it executes the next *synchronous* hypercall, and marks it
 * 0xFF again.  Ending a batch is therefore one synchronous call that does
 * nothing by itself: LHCALL_FLUSH_ASYNC.
 *
 * If the slot at our cursor is still busy the ring is full; we then make
 * the call synchronously, which drains everything queued before it, so the
 * order is still right.  Interrupts are off while we fill a slot, because
 * an interrupt handler could queue a call of its own into the same slot.
 */
static void async_hcall(u32 call, u32 arg1, u32 arg2, u32 arg3)
{
	u32 flags = irq_save();

	if (lguest_data.hcall_status[next_slot] != 0xFF) {
		hcall(call, arg1, arg2, arg3, 0);
	} else {
		struct hcall_args *slot = &lguest_data.hcalls[next_slot];

		slot->arg0 = call;
		slot->arg1 = arg1;
		slot->arg2 = arg2;
		slot->arg3 = arg3;
		slot->arg4 = 0;
		/* The arguments must be in place before the Host sees "ready". */
		barrier();
		lguest_data.hcall_status[next_slot] = 0;
		next_slot = (next_slot + 1) % LHCALL_RING_SIZE;
		async_hcalls_queued++;
	}
	irq_restore(flags);
}

/* Between lazy_begin() and lazy_end(), lazy_hcall() queues; otherwise it calls. */
void lazy_begin(void)
{
	lazy_depth++;
}

void lazy_hcall(u32 call, u32 arg1, u32 arg2, u32 arg3)
{
	if (lazy_depth)
		async_hcall(call, arg1, arg2, arg3);
	else
		hcall(call, arg1, arg2, arg3, 0);
}

void lazy_end(void)
{
	if (--lazy_depth == 0)
		hcall(LHCALL_FLUSH_ASYNC, 0, 0, 0, 0);
}

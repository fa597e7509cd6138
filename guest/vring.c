/*
 * vring.c - virtqueues: handing buffers to a device and getting them back.
 */
#include "virtio.h"

/*
 * D:230 This is where a device's interrupt ends up.  A queue thread in the
 * Launcher gave buffers back and raised the queue's line (L:240), the Host
 * delivered it through our IDT (H:1040), and handle_trap() called the
 * handler that vq_setup() registered for the line (G:254).  We run with
 * interrupts off, on whatever stack the interrupt found us, so the work is
 * left to the driver's callback, which only collects finished buffers and
 * wakes whoever waits for them.
 *
 * The check for news comes first because an interrupt can arrive when
 * there is nothing to collect: the driver may already have taken the
 * buffers while spinning or polling (D:310), before the line was raised.
 */
static void vring_interrupt(u32 irq, void *arg)
{
	struct virtqueue *vq = arg;

	(void)irq;
	/* Lines are not shared, but a spurious interrupt must be harmless. */
	if (vq->last_used == vq->used->idx)
		return;
	vq->interrupts++;
	if (vq->callback)
		vq->callback(vq);
}

/*
 * D:200 A vring is three parts in guest memory that both sides read and
 * write: a table of buffer descriptors (address, length, flags, next), the
 * "available" ring where we publish the heads of descriptor chains for the
 * device, and the "used" ring where the device hands finished chains back
 * with the number of bytes it wrote.  The Launcher allocated each queue's
 * three pages above RAM and tells us, in the descriptor, their page frame,
 * the ring size (256) and the interrupt line it raises for this queue.  The
 * layout follows from the size: descriptors at 0, the available ring right
 * after them, the used ring at the next 4096-byte boundary.
 *
 * Unused descriptors form a free list through their "next" fields.  A
 * queue whose driver wants no completion interrupts says so with
 * NO_INTERRUPT in the available ring's flags (only advice: the 2.6.32
 * Launcher still interrupts when it runs out of work).  Last, we unmask
 * the queue's interrupt line and route it to vring_interrupt() (D:230).
 */
struct virtqueue *vq_setup(struct virtio_device *vdev, u32 index,
			   void (*callback)(struct virtqueue *vq))
{
	struct lguest_vqconfig *cfg;
	struct virtqueue *vq;
	u32 num, gpa, used_off, i;

	if (index >= vdev->desc->num_vq)
		return NULL;
	cfg = &vdev->vqconfig[index];
	num = cfg->num;
	if (!num || num > VQ_MAX_NUM || (num & (num - 1)) || cfg->irq >= LGUEST_IRQS)
		return NULL;
	vq = alloc_page();
	if (!vq)
		return NULL;
	gpa = cfg->pfn << 12;
	used_off = (16 * num + 2 * (2 + num) + PAGE_SIZE - 1) & PAGE_MASK;
	map_device(gpa, (used_off + 4 + 8 * num + PAGE_SIZE - 1) / PAGE_SIZE);

	vq->vdev = vdev;
	vq->index = index;
	vq->num = num;
	vq->pfn = cfg->pfn;
	vq->irq = cfg->irq;
	vq->desc = __va(gpa);
	vq->avail = (void *)((u8 *)vq->desc + 16 * num);
	vq->used = (void *)((u8 *)vq->desc + used_off);
	vq->callback = callback;
	for (i = 0; i < num; i++)
		vq->desc[i].next = i + 1;
	vq->free_head = 0;
	vq->num_free = num;
	vq->last_used = vq->used->idx;
	if (!callback)
		vq->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	request_irq(vq->irq, vring_interrupt, vq);
	return vq;
}

/*
 * D:210 Adding a buffer: take descriptors off the free list, one per
 * piece, device-readable pieces ("out") first, then device-writable ones
 * ("in"), chained with NEXT.  Then put the chain's head into the next slot
 * of the available ring and, only after a barrier (the device may be
 * looking at the ring this very moment, from another host thread), bump
 * the ring's index.  The device sees nothing until vq_kick().
 */
int vq_add_buf(struct virtqueue *vq, struct sg *sg, u32 out, u32 in, void *data)
{
	u32 flags, n = out + in, k;
	u16 head, i, prev = 0;

	if (!n)
		return -1;
	flags = irq_save();
	if (vq->num_free < n) {
		irq_restore(flags);
		return -1;
	}
	head = i = vq->free_head;
	for (k = 0; k < n; k++) {
		vq->desc[i].addr = __pa(sg[k].addr);
		vq->desc[i].len = sg[k].len;
		vq->desc[i].flags = VRING_DESC_F_NEXT | (k >= out ? VRING_DESC_F_WRITE : 0);
		prev = i;
		i = vq->desc[i].next;
	}
	vq->desc[prev].flags &= ~VRING_DESC_F_NEXT;
	vq->free_head = i;
	vq->num_free -= n;
	vq->data[head] = data;
	vq->avail->ring[vq->avail->idx % vq->num] = head;
	barrier();
	vq->avail->idx++;
	irq_restore(flags);
	return 0;
}

/*
 * D:220 Kicking: NOTIFY with the vring's physical address, the start of
 * the NOTIFY path through the Host.  A kick made before the device runs
 * (our console posts its input buffer during its probe, before DRIVER_OK)
 * reaches the Launcher, which starts the device (L:210).  Once it runs,
 * the Host hands each kick straight to the thread serving this queue by
 * signalling an eventfd (H:1290), and we are back at work after a single
 * trap.  A device thread that is busy anyway sets NO_NOTIFY in the used
 * ring (L:217), and then we save ourselves the trap.
 */
void vq_kick(struct virtqueue *vq)
{
	barrier();
	if (!(vq->used->flags & VRING_USED_F_NO_NOTIFY)) {
		vq->kicks++;
		hcall(LHCALL_NOTIFY, vq->pfn << 12, 0, 0, 0);
	}
}

/*
 * D:240 Getting a buffer back: if the used ring's index moved past ours,
 * the element there names the head of a finished chain and how many bytes
 * the device wrote.  The chain's descriptors go back on the free list.
 */
void *vq_get_buf(struct virtqueue *vq, u32 *len)
{
	struct vring_used_elem *e;
	u32 flags = irq_save();
	u16 id, i;
	void *data;

	if (vq->last_used == vq->used->idx) {
		irq_restore(flags);
		return NULL;
	}
	barrier();
	e = &vq->used->ring[vq->last_used % vq->num];
	id = e->id;
	if (len)
		*len = e->len;
	if (id >= vq->num)
		panic("virtqueue %u: device returned bad id %u", vq->index, id);
	data = vq->data[id];
	vq->data[id] = NULL;
	for (i = id; vq->desc[i].flags & VRING_DESC_F_NEXT; i = vq->desc[i].next)
		vq->num_free++;
	vq->num_free++;
	vq->desc[i].next = vq->free_head;
	vq->free_head = id;
	vq->last_used++;
	irq_restore(flags);
	return data;
}

/*
 * D:250 Most drivers have nothing to do in interrupt context: the task that
 * made the request sleeps in wait_event_timeout() until the buffer comes
 * back, and the callback only wakes it.  A sleeping task leaves the
 * processor to the others, and when nobody can run the kernel halts (G:294)
 * until this very interrupt arrives.
 */
void vq_wake_callback(struct virtqueue *vq)
{
	wake_up(&vq->wq);
}

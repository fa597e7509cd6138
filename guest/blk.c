/*
 * blk.c - the virtio block device: read and write 512-byte sectors.
 */
#include "virtio.h"

#define VIRTIO_BLK_T_IN		0
#define VIRTIO_BLK_T_OUT	1
#define VIRTIO_BLK_S_OK		0

static struct virtqueue *blk_vq;
u64 blk_capacity;

struct blk_req_hdr {
	u32 type, ioprio;
	u64 sector;
};

/*
 * D:400 A block request is one descriptor chain of three parts: a 16-byte
 * header the device reads (read or write, which sector), the data (read by
 * the device for a write, written by it for a read), and one status byte
 * the device writes last.  We have one request in flight at a time and
 * sleep until the queue's interrupt says it is back.  The header and
 * status live on our stack, which is fine: the kernel stacks are ordinary
 * memory in the direct mapping, so __pa() works on them.
 */
int blk_rw(int write, u32 sector, void *buf, u32 count)
{
	struct blk_req_hdr hdr = { write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, 0, sector };
	volatile u8 status = 0xFF;
	struct sg sg[3] = {
		{ &hdr, sizeof(hdr) },
		{ buf, count * 512 },
		{ (void *)&status, 1 },
	};
	void *done = NULL;

	if (!blk_vq || (u64)sector + count > blk_capacity || !count)
		return -1;
	if (vq_add_buf(blk_vq, sg, write ? 2 : 1, write ? 1 : 2, &hdr) < 0)
		return -1;
	vq_kick(blk_vq);
	if (!wait_event_timeout(&blk_vq->wq, (done = vq_get_buf(blk_vq, NULL)) != NULL, 5000))
		return -2;
	return status == VIRTIO_BLK_S_OK ? 0 : -3;
}

int virtblk_probe(struct virtio_device *vdev)
{
	u32 lo, hi;

	if (vdev->desc->config_len < 8)
		return -1;
	/* The config bytes are unaligned: read the capacity bytewise. */
	memcpy(&lo, vdev->config, 4);
	memcpy(&hi, vdev->config + 4, 4);
	blk_capacity = ((u64)hi << 32) | lo;
	blk_vq = vq_setup(vdev, 0, vq_wake_callback);
	if (!blk_vq)
		return -1;
	printk("virtio block: %u sectors (%u KiB), irq %u\n",
	       (u32)blk_capacity, (u32)(blk_capacity / 2), blk_vq->irq);
	return 0;
}

/*
 * rng.c - the virtio entropy device.
 */
#include "virtio.h"

static struct virtqueue *rng_vq;
int rng_ready;

/*
 * D:500 The simplest virtio device there is: one queue, no features, no
 * config.  We offer a device-writable buffer; the device fills every byte
 * with randomness from the host and gives it back.
 */
int rng_read(void *buf, u32 len)
{
	struct sg sg = { buf, len };
	u32 got = 0;

	if (!rng_vq || vq_add_buf(rng_vq, &sg, 0, 1, buf) < 0)
		return -1;
	vq_kick(rng_vq);
	if (!wait_event_timeout(&rng_vq->wq, vq_get_buf(rng_vq, &got) != NULL, 5000))
		return -2;
	return got;
}

int virtrng_probe(struct virtio_device *vdev)
{
	rng_vq = vq_setup(vdev, 0, vq_wake_callback);
	if (!rng_vq)
		return -1;
	rng_ready = 1;
	printk("virtio rng: irq %u\n", rng_vq->irq);
	return 0;
}

/*
 * bus.c - finding devices on the lguest bus and walking them through the
 * virtio status protocol.
 */
#include "virtio.h"

struct virtio_device virtio_devices[MAX_VIRTIO_DEVICES];
u32 nr_virtio_devices;

const char *virtio_type_name(u32 type)
{
	switch (type) {
	case VIRTIO_ID_NET: return "net";
	case VIRTIO_ID_BLOCK: return "block";
	case VIRTIO_ID_CONSOLE: return "console";
	case VIRTIO_ID_RNG: return "rng";
	}
	return "unknown";
}

/*
 * D:110 Every status change is announced to the Launcher with a NOTIFY of
 * the descriptor's physical address.  The Launcher looks at the status
 * byte as it is now: 0 means reset, DRIVER_OK means "start serving this
 * device", FAILED means we gave up on it (L:210 is the other end).  The
 * barrier keeps the compiler from moving the store to the status byte
 * after the hypercall: the Launcher reads the byte as soon as it sees the
 * NOTIFY.
 */
void virtio_set_status(struct virtio_device *vdev, u8 status)
{
	vdev->desc->status = status;
	barrier();
	hcall(LHCALL_NOTIFY, vdev->desc_gpa, 0, 0, 0);
}

int virtio_has_feature(struct virtio_device *vdev, u32 bit)
{
	return bit < 32 && (vdev->features >> bit) & 1;
}

/*
 * D:120 Features are negotiated through the descriptor itself.  The device
 * offers bits in the first bitmap; we accept one by setting the same bit
 * in the second, which is ours to write.  Nothing is announced: the
 * Launcher reads our answer once, when DRIVER_OK starts the device, and
 * serves the device with the bits both sides agreed on.  We only accept
 * what was offered, and never past the bitmap's length.
 */
void virtio_accept_feature(struct virtio_device *vdev, u32 bit)
{
	if (virtio_has_feature(vdev, bit) && bit / 8 < vdev->desc->feature_len)
		vdev->driver_features[bit / 8] |= 1 << (bit % 8);
}

static int (*const drivers[])(struct virtio_device *) = {
	[VIRTIO_ID_NET] = virtnet_probe,
	[VIRTIO_ID_BLOCK] = virtblk_probe,
	[VIRTIO_ID_CONSOLE] = virtcons_probe,
	[VIRTIO_ID_RNG] = virtrng_probe,
};

/*
 * D:100 Here the Drivers chapter begins: how our kernel finds its devices
 * and talks to them.  The lguest bus is one page, the first page above our
 * RAM: the Launcher fills it with device descriptors before we boot
 * (L:200), and we find it at ram_size because the e820 map told us where
 * RAM ends.  It is not RAM, so our page tables do not map it yet;
 * map_device() does.
 *
 * Each descriptor is five bytes (type, number of queues, feature-bitmap
 * length, config length, status), then the queue records (ring size,
 * interrupt line, page frame of the vring), then two feature bitmaps of
 * feature_len bytes (the device's offer, our answer), then the config
 * bytes.  Nothing is aligned, and a type of 0 ends the list.
 *
 * For each device we follow the virtio dance as Linux 2.6.32 does:
 * reset (status 0), ACKNOWLEDGE ("seen it"), DRIVER ("I have a driver"),
 * let the driver pick features and set up its queues, and finally
 * DRIVER_OK, or FAILED if the driver said no.
 */
void virtio_init(void)
{
	u32 gpa = ram_size, off = 0;
	u8 *page = __va(gpa);

	map_device(gpa, 1);
	while (off + sizeof(struct lguest_device_desc) <= PAGE_SIZE &&
	       page[off] != 0 && nr_virtio_devices < MAX_VIRTIO_DEVICES) {
		struct lguest_device_desc *d = (void *)(page + off);
		struct virtio_device *vdev = &virtio_devices[nr_virtio_devices++];
		u8 *p = (u8 *)(d + 1);
		u32 i, type = d->type;
		int err = -1;

		vdev->desc = d;
		vdev->desc_gpa = gpa + off;
		vdev->vqconfig = (void *)p;
		p += d->num_vq * sizeof(struct lguest_vqconfig);
		for (i = 0; i < d->feature_len && i < 4; i++)
			vdev->features |= (u32)p[i] << (8 * i);
		vdev->driver_features = p + d->feature_len;
		vdev->config = p + 2 * d->feature_len;
		off += sizeof(*d) + d->num_vq * sizeof(struct lguest_vqconfig) +
		       2 * d->feature_len + d->config_len;

		virtio_set_status(vdev, 0);
		virtio_set_status(vdev, VIRTIO_STATUS_ACKNOWLEDGE);
		if (type >= ARRAY_SIZE(drivers) || !drivers[type]) {
			printk("lguest bus: device %u: type %u, no driver\n",
			       nr_virtio_devices - 1, type);
			continue;
		}
		virtio_set_status(vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
		for (i = 0; i < d->feature_len; i++)
			vdev->driver_features[i] = 0;
		err = drivers[type](vdev);
		vdev->driver = virtio_type_name(type);
		if (err) {
			virtio_set_status(vdev, d->status | VIRTIO_STATUS_FAILED);
			printk("lguest bus: %s device failed to start\n", vdev->driver);
		} else {
			virtio_set_status(vdev, d->status | VIRTIO_STATUS_DRIVER_OK);
		}
	}
	if (nr_virtio_devices)
		printk("lguest bus: %u device(s)\n", nr_virtio_devices);
	else
		printk("lguest bus: no devices\n");
}

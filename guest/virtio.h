/*
 * virtio.h - the lguest bus, virtqueues, and the drivers' entry points.
 *
 * Layouts are from abi-devices.md sections 2 (bus) and 3 (vrings).
 */
#ifndef DEMO_VIRTIO_H
#define DEMO_VIRTIO_H

#include "kernel.h"

/* Device types (virtio IDs). */
#define VIRTIO_ID_NET		1
#define VIRTIO_ID_BLOCK		2
#define VIRTIO_ID_CONSOLE	3
#define VIRTIO_ID_RNG		4

/* The status byte. */
#define VIRTIO_STATUS_ACKNOWLEDGE	0x01
#define VIRTIO_STATUS_DRIVER		0x02
#define VIRTIO_STATUS_DRIVER_OK		0x04
#define VIRTIO_STATUS_FAILED		0x80

/* One device on the lguest bus; variable parts follow (see bus.c). */
struct lguest_device_desc {
	u8 type, num_vq, feature_len, config_len, status;
} __attribute__((packed));

struct lguest_vqconfig {
	u16 num, irq;
	u32 pfn;
} __attribute__((packed));

/* The vring: descriptor table, available ring, used ring. */
#define VRING_DESC_F_NEXT	1
#define VRING_DESC_F_WRITE	2
#define VRING_AVAIL_F_NO_INTERRUPT	1
#define VRING_USED_F_NO_NOTIFY		1

struct vring_desc {
	u64 addr;
	u32 len;
	u16 flags, next;
};

struct vring_avail {
	u16 flags, idx;
	u16 ring[];
};

struct vring_used_elem {
	u32 id, len;
};

struct vring_used {
	u16 flags, idx;
	struct vring_used_elem ring[];
};

#define VQ_MAX_NUM	256

struct virtqueue {
	struct virtio_device *vdev;
	u32 index, num, pfn, irq;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	u16 free_head, num_free, last_used;
	void (*callback)(struct virtqueue *vq);
	struct waitq wq;
	u32 kicks, interrupts;
	void *data[VQ_MAX_NUM];
};

struct virtio_device {
	struct lguest_device_desc *desc;
	u32 desc_gpa;
	u32 features;		/* what the device offers (first 32 bits) */
	u8 *driver_features;	/* where we write what we accept */
	u8 *config;
	struct lguest_vqconfig *vqconfig;
	const char *driver;
};

/* A piece of a buffer: kernel virtual address and length. */
struct sg {
	void *addr;
	u32 len;
};

/* bus.c */
#define MAX_VIRTIO_DEVICES 8
extern struct virtio_device virtio_devices[MAX_VIRTIO_DEVICES];
extern u32 nr_virtio_devices;
void virtio_init(void);
void virtio_set_status(struct virtio_device *vdev, u8 status);
int virtio_has_feature(struct virtio_device *vdev, u32 bit);
void virtio_accept_feature(struct virtio_device *vdev, u32 bit);
const char *virtio_type_name(u32 type);

/* vring.c */
struct virtqueue *vq_setup(struct virtio_device *vdev, u32 index,
			   void (*callback)(struct virtqueue *vq));
int vq_add_buf(struct virtqueue *vq, struct sg *sg, u32 out, u32 in, void *data);
void vq_kick(struct virtqueue *vq);
void *vq_get_buf(struct virtqueue *vq, u32 *len);
void vq_wake_callback(struct virtqueue *vq);

/* The drivers (console.c, blk.c, rng.c, net.c). */
int virtcons_probe(struct virtio_device *vdev);
int virtblk_probe(struct virtio_device *vdev);
int virtrng_probe(struct virtio_device *vdev);
int virtnet_probe(struct virtio_device *vdev);

extern int console_input_ready;
int console_getc(void);
u32 console_readline(char *buf, u32 size);

extern u64 blk_capacity;	/* in 512-byte sectors; 0 = no disk */
int blk_rw(int write, u32 sector, void *buf, u32 count);

extern int rng_ready;
int rng_read(void *buf, u32 len);

extern int net_ready;
extern u8 net_mac[6];
extern u32 net_rx_frames, net_tx_frames;
int net_send(const u8 *dst, u16 ethertype, const void *payload, u32 len);
int net_recv(u8 *frame, u32 size, u32 timeout_ms);

/* monitor.c, selftest.c, bench.c */
void noreturn monitor(void);
void noreturn selftest(void);
void bench(void);

#endif /* DEMO_VIRTIO_H */

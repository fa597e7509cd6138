/*
 * net.c - the virtio network device: raw Ethernet frames in and out.
 */
#include "virtio.h"

#define VIRTIO_NET_F_MAC	5
#define NET_HDR_LEN		10	/* struct virtio_net_hdr, all zero for us */
#define RX_BUFS			8
#define FRAME_MAX		1518

struct rx_buf {
	u8 hdr[NET_HDR_LEN];
	u8 frame[FRAME_MAX];
};

static struct virtqueue *rx_vq, *tx_vq;
static struct rx_buf rx_bufs[RX_BUFS];
static u8 tx_hdr[NET_HDR_LEN], tx_frame[FRAME_MAX];
static struct waitq rx_wq;

/* Frames received but not yet read by net_recv(). */
static u8 rxq[RX_BUFS][FRAME_MAX];
static u32 rxq_len[RX_BUFS], rxq_head, rxq_tail;

int net_ready;
u8 net_mac[6];
u32 net_rx_frames, net_tx_frames, net_rx_dropped;

/*
 * D:600 Every frame in either direction is preceded by a 10-byte
 * virtio_net_hdr describing checksum and segmentation offloads.  We accept
 * none of those features, so our headers are all zeroes and the device's
 * are ignored.  Receive buffers are chains of two device-writable pieces,
 * header and a full-sized frame area; we keep eight of them posted, and
 * the queue's interrupt tells us when some came back full.
 */
static void post_rx(struct rx_buf *b)
{
	struct sg sg[2] = { { b->hdr, NET_HDR_LEN }, { b->frame, FRAME_MAX } };

	vq_add_buf(rx_vq, sg, 0, 2, b);
}

/*
 * D:610 The receive interrupt: copy each filled frame into our little
 * queue for net_recv(), put the buffer straight back in the ring, and kick
 * once for the lot.  The kick matters: a receive thread that ran out of
 * buffers sleeps until we post more, and packets it cannot place meanwhile
 * wait on the host side.
 */
static void rx_done(struct virtqueue *vq)
{
	struct rx_buf *b;
	u32 len;

	while ((b = vq_get_buf(vq, &len))) {
		net_rx_frames++;
		if (len > NET_HDR_LEN && (rxq_head + 1) % RX_BUFS != rxq_tail) {
			len -= NET_HDR_LEN;
			if (len > FRAME_MAX)
				len = FRAME_MAX;
			memcpy(rxq[rxq_head], b->frame, len);
			rxq_len[rxq_head] = len;
			rxq_head = (rxq_head + 1) % RX_BUFS;
		} else {
			net_rx_dropped++;
		}
		post_rx(b);
	}
	vq_kick(vq);
	wake_up(&rx_wq);
}

/*
 * Transmit one frame: destination, our address, the EtherType, the
 * payload, padded to Ethernet's 60-byte minimum.  One frame in flight.
 */
int net_send(const u8 *dst, u16 ethertype, const void *payload, u32 len)
{
	struct sg sg[2] = { { tx_hdr, NET_HDR_LEN }, { tx_frame, 0 } };
	u32 n = 14 + len;

	if (!net_ready || len > FRAME_MAX - 18)
		return -1;
	memcpy(tx_frame, dst, 6);
	memcpy(tx_frame + 6, net_mac, 6);
	tx_frame[12] = ethertype >> 8;
	tx_frame[13] = ethertype & 0xFF;
	memcpy(tx_frame + 14, payload, len);
	for (; n < 60; n++)
		tx_frame[n] = 0;
	sg[1].len = n;
	if (vq_add_buf(tx_vq, sg, 2, 0, tx_frame) < 0)
		return -1;
	vq_kick(tx_vq);
	if (!wait_event_timeout(&tx_vq->wq, vq_get_buf(tx_vq, NULL) != NULL, 2000))
		return -2;
	net_tx_frames++;
	return 0;
}

/* The next received frame (Ethernet header included), or -1 on timeout. */
int net_recv(u8 *frame, u32 size, u32 timeout_ms)
{
	u32 len;

	if (!net_ready || !wait_event_timeout(&rx_wq, rxq_head != rxq_tail, timeout_ms))
		return -1;
	len = rxq_len[rxq_tail];
	if (len > size)
		len = size;
	memcpy(frame, rxq[rxq_tail], len);
	rxq_tail = (rxq_tail + 1) % RX_BUFS;
	return len;
}

int virtnet_probe(struct virtio_device *vdev)
{
	u32 i;

	if (virtio_has_feature(vdev, VIRTIO_NET_F_MAC) && vdev->desc->config_len >= 6) {
		virtio_accept_feature(vdev, VIRTIO_NET_F_MAC);
		memcpy(net_mac, vdev->config, 6);
	} else {
		/* No address given: make up a locally administered one. */
		u64 t = clock_ns();
		u32 r = crc32(0, &t, sizeof(t));

		net_mac[0] = 0x02;
		net_mac[1] = 0x4C;
		memcpy(net_mac + 2, &r, 4);
	}
	rx_vq = vq_setup(vdev, 0, rx_done);
	tx_vq = vq_setup(vdev, 1, vq_wake_callback);
	if (!rx_vq || !tx_vq)
		return -1;
	for (i = 0; i < RX_BUFS; i++)
		post_rx(&rx_bufs[i]);
	vq_kick(rx_vq);
	net_ready = 1;
	printk("virtio net: address %02x:%02x:%02x:%02x:%02x:%02x, irqs %u, %u\n",
	       net_mac[0], net_mac[1], net_mac[2], net_mac[3], net_mac[4], net_mac[5],
	       rx_vq->irq, tx_vq->irq);
	return 0;
}

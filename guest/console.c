/*
 * console.c - the virtio console: output for printk, input for the
 * monitor.
 */
#include "virtio.h"

static struct virtqueue *in_vq, *out_vq;
static char in_buf[128];
static char out_buf[512];
static char ring[1024];
static u32 ring_head, ring_tail;
static struct waitq input_wq;
int console_input_ready;

/*
 * D:310 Output: copy the bytes into our one output buffer, add it to the
 * output queue, kick, and spin until the device gives it back.  That is
 * what Linux 2.6.32's driver does too, and why the device side must keep
 * working while we spin (abi-devices.md 3.8).  console_write() called us
 * with interrupts off, so whole lines come out in one piece.  If the device
 * never answers, we give up on it and go back to the early console rather
 * than hang.
 */
static void virtcons_write(const char *s, u32 len)
{
	while (len) {
		u32 n = len < sizeof(out_buf) ? len : sizeof(out_buf), spins = 0;
		struct sg sg = { out_buf, n };

		memcpy(out_buf, s, n);
		if (vq_add_buf(out_vq, &sg, 1, 0, out_buf) < 0)
			break;
		vq_kick(out_vq);
		while (!vq_get_buf(out_vq, NULL)) {
			asm volatile("pause");
			if (++spins == 200000000) {
				console_output = NULL;
				early_write("virtio console stuck; back to the early console\n", 49);
				early_write(s, len);
				return;
			}
		}
		s += n;
		len -= n;
	}
}

/*
 * D:320 Input: one buffer is always waiting in the input queue.  When the
 * Launcher has keystrokes it fills the buffer and raises the queue's
 * interrupt; we copy the bytes into a ring, hand the buffer back to the
 * device, and wake whoever waits for a character (the monitor).  Each
 * time we hand the buffer back we kick (D:220), because the input thread
 * may be asleep waiting for exactly that.
 */
static void post_input(void)
{
	struct sg sg = { in_buf, sizeof(in_buf) };

	vq_add_buf(in_vq, &sg, 0, 1, in_buf);
	vq_kick(in_vq);
}

static void input_done(struct virtqueue *vq)
{
	u32 len, i;

	while (vq_get_buf(vq, &len)) {
		for (i = 0; i < len && i < sizeof(in_buf); i++) {
			if ((ring_head + 1) % sizeof(ring) == ring_tail)
				break;	/* full: drop */
			ring[ring_head] = in_buf[i];
			ring_head = (ring_head + 1) % sizeof(ring);
		}
		post_input();
	}
	wake_up(&input_wq);
}

int console_getc(void)
{
	int c;

	wait_event(&input_wq, ring_head != ring_tail);
	c = (u8)ring[ring_tail];
	ring_tail = (ring_tail + 1) % sizeof(ring);
	return c;
}

/* Read a line (without its newline); echo is the terminal's business. */
u32 console_readline(char *buf, u32 size)
{
	u32 n = 0;

	for (;;) {
		int c = console_getc();

		if (c == '\r' || c == '\n')
			break;
		if ((c == 0x7F || c == '\b') && n) {
			n--;
			continue;
		}
		if (n + 1 < size && c >= ' ')
			buf[n++] = (char)c;
	}
	buf[n] = '\0';
	return n;
}

/*
 * D:300 The console is the device the rest of the kernel notices most:
 * once its probe succeeds, console_output points here and every printk()
 * goes through the output queue instead of the 16-byte NOTIFYs of the early
 * console (G:120).  Input gets a callback, because keys arrive whenever the
 * user types; output gets none, because we spin for each buffer anyway, so
 * that queue asks for no interrupts at all (D:200).  The Launcher adds the
 * console last, so the other drivers' messages during boot still go
 * through the early console.
 */
int virtcons_probe(struct virtio_device *vdev)
{
	in_vq = vq_setup(vdev, 0, input_done);
	out_vq = vq_setup(vdev, 1, NULL);
	if (!in_vq || !out_vq)
		return -1;
	post_input();
	console_input_ready = 1;
	console_output = virtcons_write;
	printk("virtio console: output and input up (irqs %u, %u)\n", in_vq->irq, out_vq->irq);
	return 0;
}

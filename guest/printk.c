/*
 * printk.c - the kernel's one way to talk: format into a buffer and hand
 * the bytes to whichever console is up.
 */
#include "kernel.h"

/*
 * G:120 Before a Guest has a virtio console it still wants to talk, and
 * lguest gives it the simplest possible channel: LHCALL_NOTIFY with the
 * physical address of a NUL-terminated string of at most 16 characters.
 * The Host cannot make sense of that address, so it hands it to the
 * Launcher (H:1290), which sees that it points into ordinary memory and
 * prints it (L:160).
 *
 * So we cut every string into 16-character pieces, copy each into a small
 * buffer on our stack, and NOTIFY its physical address.  Our stacks are in
 * the BSS, so a physical address is simply virtual minus PAGE_OFFSET.  This
 * stays the console until the virtio console driver takes over (D:300).
 */
void early_write(const char *s, u32 len)
{
	char buf[17];
	u32 n;

	while (len) {
		for (n = 0; n < 16 && n < len; n++)
			buf[n] = s[n];
		buf[n] = '\0';
		hcall(LHCALL_NOTIFY, __pa(buf), 0, 0, 0);
		s += n;
		len -= n;
	}
}

void (*console_output)(const char *s, u32 len);

/*
 * Output from interrupt handlers, the kernel and user tasks may race, so a
 * whole write happens with interrupts off: lines never interleave.
 */
void console_write(const char *s, u32 len)
{
	u32 flags = irq_save();

	if (console_output)
		console_output(s, len);
	else
		early_write(s, len);
	irq_restore(flags);
}

void printk(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	console_write(buf, n);
}

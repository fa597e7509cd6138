/*
 * monitor.c - a tiny command interpreter on the virtio console.
 */
#include "virtio.h"

static const char help_text[] =
	"commands:\n"
	"  help              this text\n"
	"  info              what the Host and Launcher told us\n"
	"  mem               page allocator and page tables\n"
	"  tasks             the task table; 'tasks run' starts the demo tasks\n"
	"  blk read N        show sector N of the block device\n"
	"  blk write N TEXT  write TEXT into sector N\n"
	"  rng               16 random bytes from the host\n"
	"  net send [TEXT]   broadcast a frame; net recv shows received ones\n"
	"  bench             run the CPU benchmarks\n"
	"  poweroff          turn the guest off\n"
	"  reboot            ask the Launcher for a fresh guest\n";

static const char *word(const char **s)
{
	static char w[32];
	u32 n = 0;

	while (**s == ' ')
		(*s)++;
	while (**s && **s != ' ' && n < sizeof(w) - 1)
		w[n++] = *(*s)++;
	w[n] = '\0';
	while (**s == ' ')
		(*s)++;
	return w;
}

static void hexdump(const u8 *p, u32 len)
{
	u32 i, j;

	for (i = 0; i < len; i += 16) {
		char line[80];
		u32 n = snprintf(line, sizeof(line), "%04x:", i);

		for (j = 0; j < 16 && i + j < len; j++)
			n += snprintf(line + n, sizeof(line) - n, " %02x", p[i + j]);
		n += snprintf(line + n, sizeof(line) - n, "  ");
		for (j = 0; j < 16 && i + j < len; j++)
			line[n++] = p[i + j] >= ' ' && p[i + j] < 0x7F ? p[i + j] : '.';
		line[n] = '\0';
		printk("%s\n", line);
	}
}

static void cmd_info(void)
{
	u32 i;

	printk("RAM %u MiB, command line \"%s\"\n", ram_size >> 20, command_line);
	printk("lguest_data at %p: tsc_khz %u, reserve_mem %p, pgdir %p\n",
	       __pa(&lguest_data), lguest_data.tsc_khz, lguest_data.reserve_mem,
	       lguest_data.pgdir);
	printk("uptime %u ms, %u ticks, %u halts, %u context switches, %u async hypercalls\n",
	       uptime_ms(), jiffies, halts, context_switches, async_hcalls_queued);
	printk("FPU: %s, %u #NM traps\n",
	       fpu_present ? (fxsr_present ? "x87+FXSR" : "x87") : "not advertised", nm_traps);
	for (i = 0; i < nr_virtio_devices; i++) {
		struct virtio_device *v = &virtio_devices[i];

		printk("device %u: %s (type %u), status %x, features %x, %u queue(s)\n", i,
		       virtio_type_name(v->desc->type), v->desc->type, v->desc->status,
		       v->features, v->desc->num_vq);
	}
	for (i = 0; i < LGUEST_IRQS; i++)
		if (irq_counts[i])
			printk("irq %u: %u\n", i, irq_counts[i]);
}

static void cmd_tasks(const char *arg)
{
	static const char *const states[] = { "unused", "run", "sleep", "block", "zombie" };
	u32 i;

	if (!strcmp(arg, "run")) {
		struct task *a = spawn_user("alpha", 0), *b = spawn_user("beta", 1);

		if (a && b) {
			printk("alpha exited with %d\n", task_wait(a));
			printk("beta exited with %d\n", task_wait(b));
		}
		return;
	}
	printk("pid name         state  syscalls switches preempted stack-pages\n");
	for (i = 0; i < MAX_TASKS; i++) {
		struct task *t = &tasks[i];

		if (t->state != TASK_UNUSED)
			printk("%3d %-12s %-6s %8u %8u %9u %11u\n", t->id, t->name,
			       states[t->state], t->syscalls, t->switches_in, t->preempted,
			       t->stack_pages);
	}
}

static void cmd_blk(const char *args)
{
	static u8 sector[512];
	const char *op = word(&args);
	int is_write = !strcmp(op, "write"), ok, r;
	u32 n;

	if (strcmp(op, "read") && !is_write) {
		printk("usage: blk read N | blk write N TEXT\n");
		return;
	}
	n = parse_uint(&args, &ok);
	if (!ok || !blk_capacity || n >= blk_capacity) {
		printk("blk: need a sector number below %u\n", (u32)blk_capacity);
		return;
	}
	while (*args == ' ')
		args++;
	if (is_write) {
		u32 len = strlen(args);

		memset(sector, 0, sizeof(sector));
		memcpy(sector, args, len > 511 ? 511 : len);
		r = blk_rw(1, n, sector, 1);
		printk(r ? "blk: write failed (%d)\n" : "blk: wrote sector %u\n", r ? r : (int)n);
	} else if ((r = blk_rw(0, n, sector, 1)) == 0) {
		hexdump(sector, 128);
	} else {
		printk("blk: read failed (%d)\n", r);
	}
}

static void cmd_rng(void)
{
	u8 buf[16];
	int n = rng_read(buf, sizeof(buf));

	if (n <= 0)
		printk("rng: %s\n", rng_ready ? "read failed" : "no device");
	else
		hexdump(buf, n);
}

static void cmd_net(const char *args)
{
	static const u8 bcast[6] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
	const char *op = word(&args);
	u8 frame[128];
	int n;

	if (!net_ready) {
		printk("net: no device\n");
		return;
	}
	if (!strcmp(op, "send")) {
		const char *text = *args ? args : "hello from the lguest demo guest";

		n = net_send(bcast, 0x88B5, text, strlen(text));
		printk(n ? "net: send failed\n" : "net: sent %u bytes\n", strlen(text));
	} else if (!strcmp(op, "recv")) {
		while ((n = net_recv(frame, sizeof(frame) - 1, 0)) >= 14) {
			frame[n] = '\0';
			printk("net: %u bytes from %02x:%02x:%02x:%02x:%02x:%02x: %s\n", n,
			       frame[6], frame[7], frame[8], frame[9], frame[10], frame[11],
			       (char *)frame + 14);
		}
		printk("net: %u frames received, %u sent\n", net_rx_frames, net_tx_frames);
	} else {
		printk("usage: net send [TEXT] | net recv\n");
	}
}

/*
 * G:540 The monitor reads a line from the virtio console, waiting (and so
 * halting, when nothing else runs) until the input queue's interrupt
 * brings keystrokes, and runs one command.  It is the interactive way to
 * poke at each device and at the kernel's own counters.
 */
void monitor(void)
{
	char line[160];

	if (!console_input_ready) {
		printk("monitor: no console input device\n");
		power_off("Power down", LGUEST_SHUTDOWN_POWEROFF);
	}
	printk("monitor: type 'help' for commands\n");
	for (;;) {
		const char *args = line, *cmd;

		printk("lguest> ");
		console_readline(line, sizeof(line));
		cmd = word(&args);
		if (!*cmd)
			continue;
		if (!strcmp(cmd, "help"))
			console_write(help_text, sizeof(help_text) - 1);
		else if (!strcmp(cmd, "info"))
			cmd_info();
		else if (!strcmp(cmd, "mem"))
			printk("%u of %u pages free; kernel page directory at %p\n",
			       pages_free, pages_total, __pa(kernel_pgdir));
		else if (!strcmp(cmd, "tasks"))
			cmd_tasks(args);
		else if (!strcmp(cmd, "blk"))
			cmd_blk(args);
		else if (!strcmp(cmd, "rng"))
			cmd_rng();
		else if (!strcmp(cmd, "net"))
			cmd_net(args);
		else if (!strcmp(cmd, "bench"))
			bench();
		else if (!strcmp(cmd, "poweroff"))
			power_off("Power down", LGUEST_SHUTDOWN_POWEROFF);
		else if (!strcmp(cmd, "reboot"))
			power_off("Restart", LGUEST_SHUTDOWN_RESTART);
		else
			printk("unknown command '%s'; try 'help'\n", cmd);
	}
}

/*
 * syscalls.h - system call numbers, shared by the kernel and the user
 * programs (user.c).
 */
#ifndef DEMO_SYSCALLS_H
#define DEMO_SYSCALLS_H

#define SYS_EXIT	0	/* exit(code): never returns */
#define SYS_WRITE	1	/* write(buf, len): to the console */
#define SYS_YIELD	2	/* yield(): let another task run */
#define SYS_SLEEP	3	/* sleep(ms) */
#define SYS_GETPID	4	/* getpid() */
#define SYS_UPTIME	5	/* uptime(): milliseconds since boot */

#endif

/*
 * lib.c - the handful of library routines a kernel without libc needs:
 * memory and string helpers, 64-bit division, number parsing, a small
 * vsnprintf and a CRC-32.
 *
 * gcc may still emit calls to memset and memcpy for large structure
 * assignments even when freestanding, so those two keep their standard
 * names.
 */
#include "kernel.h"

void *memset(void *s, int c, u32 n)
{
	u8 *p = s;

	while (n--)
		*p++ = (u8)c;
	return s;
}

void *memcpy(void *d, const void *s, u32 n)
{
	u8 *dp = d;
	const u8 *sp = s;

	while (n--)
		*dp++ = *sp++;
	return d;
}

int memcmp(const void *a, const void *b, u32 n)
{
	const u8 *x = a, *y = b;

	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}

u32 strlen(const char *s)
{
	u32 n = 0;

	while (s[n])
		n++;
	return n;
}

int strncmp(const char *a, const char *b, u32 n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return (u8)*a - (u8)*b;
		if (!*a)
			break;
	}
	return 0;
}

int strcmp(const char *a, const char *b)
{
	return strncmp(a, b, 0xFFFFFFFF);
}

/*
 * Dividing a 64-bit number needs libgcc's __udivdi3, which we do not link.
 * The processor's divl divides a 64-bit EDX:EAX by 32 bits as long as the
 * quotient fits in 32 bits, so we divide the high word first and feed its
 * remainder into the second step.  Returns the remainder; *n becomes the
 * quotient.
 */
u32 div64(u64 *n, u32 base)
{
	u32 hi = (u32)(*n >> 32), lo = (u32)*n, qhi = 0, rem;

	if (hi >= base) {
		qhi = hi / base;
		hi %= base;
	}
	asm("divl %4" : "=a"(lo), "=d"(rem) : "0"(lo), "1"(hi), "rm"(base));
	*n = ((u64)qhi << 32) | lo;
	return rem;
}

/* Parse a decimal (or 0x-prefixed hexadecimal) number, advancing *s. */
u32 parse_uint(const char **s, int *ok)
{
	const char *p = *s;
	u32 v = 0, base = 10, digits = 0;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	for (;; p++, digits++) {
		u32 d;

		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = *p - 'A' + 10;
		else
			break;
		v = v * base + d;
	}
	*ok = digits > 0;
	*s = p;
	return v;
}

/* A bounded output cursor for vsnprintf. */
struct outbuf {
	char *buf;
	u32 size, len;
};

static void put(struct outbuf *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void put_num(struct outbuf *o, u64 v, u32 base, int width, char pad, int neg)
{
	char tmp[24];
	int n = 0;

	do {
		u32 d = div64(&v, base);

		tmp[n++] = "0123456789abcdef"[d];
	} while (v);
	if (neg)
		tmp[n++] = '-';
	while (n < width--)
		put(o, pad);
	while (n)
		put(o, tmp[--n]);
}

/*
 * The formats we need and no more: %s %c %d %u %x %p %%, an optional
 * field width with '0' or '-' flags, and the "ll" modifier for u64.
 */
int vsnprintf(char *buf, u32 size, const char *fmt, va_list ap)
{
	struct outbuf o = { buf, size, 0 };

	for (; *fmt; fmt++) {
		int width = 0, left = 0, ll = 0;
		char pad = ' ';

		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		if (*fmt == '-') {
			left = 1;
			fmt++;
		}
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l') {
			ll++;
			fmt++;
		}
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			int n;

			if (!s)
				s = "(null)";
			n = strlen(s);
			if (!left)
				for (; n < width; width--)
					put(&o, ' ');
			while (*s)
				put(&o, *s++);
			for (; n < width; width--)
				put(&o, ' ');
			break;
		}
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case 'd': {
			s64 v = ll >= 2 ? va_arg(ap, s64) : va_arg(ap, int);

			put_num(&o, v < 0 ? -(u64)v : (u64)v, 10, width, pad, v < 0);
			break;
		}
		case 'u':
		case 'x': {
			u64 v = ll >= 2 ? va_arg(ap, u64) : va_arg(ap, u32);

			put_num(&o, v, *fmt == 'u' ? 10 : 16, width, pad, 0);
			break;
		}
		case 'p':
			put(&o, '0');
			put(&o, 'x');
			put_num(&o, va_arg(ap, u32), 16, 8, '0', 0);
			break;
		case '\0':
			fmt--;
			break;
		default:
			put(&o, *fmt);
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return o.len;
}

int snprintf(char *buf, u32 size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

/* The CRC-32 of Ethernet and zlib, bit by bit: small, and a fair workload. */
u32 crc32(u32 crc, const void *p, u32 len)
{
	const u8 *b = p;
	int k;

	crc = ~crc;
	while (len--) {
		crc ^= *b++;
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1));
	}
	return ~crc;
}

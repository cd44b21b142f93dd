/* broken-udp-truncate: a UDP echo server with a 1024-byte receive buffer, "large enough
 * for any message we expect". recvfrom() silently cuts a longer datagram to the buffer
 * (the rest is discarded by the kernel) and the server echoes the cut copy.
 *
 * Failure mode: a truncated answer: the datagram's data is not sent back (RFC 862).
 * Real-world pattern: the fixed `char buf[1024]` of countless tutorial UDP servers.
 * Must fail: udp.sizes, udp.one-answer.
 */
#include "broken.h"

static void answer(int fd, char *buf, ssize_t n, const struct datagram *d)
{
	if (n >= 0 && !udp_from_amplifier(d))
		(void)udp_answer(fd, buf, (size_t)n, d);
}

int main(int argc, char **argv)
{
	/* The bug: 1024 bytes, where a datagram may carry 65507 (65527 over IPv6). */
	udp_serve(argc, argv, &(struct udp_server){ .recv_size = 1024, .answer = answer });
}

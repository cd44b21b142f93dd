/* broken-udp-truncate: a UDP echo server with a 1024-byte receive buffer, "large enough
 * for any message we expect". recvfrom() silently cuts a longer datagram to the buffer
 * (the rest is discarded by the kernel) and the server echoes the cut copy.
 *
 * Failure mode: a truncated answer: the datagram's data is not sent back (RFC 862).
 * Real-world pattern: the fixed `char buf[1024]` of countless tutorial UDP servers.
 * Must fail: udp.sizes, udp.one-answer.
 */
#include "broken.h"

int main(int argc, char **argv)
{
	struct options opt;
	parse_options(argc, argv, &opt);
	exit_on_signals();
	int fd = udp_bind(&opt);
	for (;;) {
		char buf[1024];
		struct datagram d;
		ssize_t n = udp_receive(fd, buf, sizeof buf, &d);
		if (n < 0 || udp_from_amplifier(&d))
			continue;
		(void)udp_answer(fd, buf, (size_t)n, &d);
	}
}

/* broken-udp-refused-fatal: a UDP echo server that turns on IP_RECVERR, so that send errors
 * are reported instead of lost, and then treats every recvfrom() error as fatal. When a
 * client has gone before its answer arrives, the ICMP port unreachable that comes back
 * makes the next recvfrom() fail with ECONNREFUSED, and the server exits.
 *
 * Failure mode: an ICMP error about one client stops the service for all.
 * Real-world pattern: `if (n < 0) { perror("recvfrom"); exit(1); }` in UDP servers that
 * connect() their socket or ask for extended errors.
 * Must fail: udp.unreachable, udp.health (its clients vanish too).
 */
#include "broken.h"

static void answer(int fd, char *buf, ssize_t n, const struct datagram *d)
{
	/* The bug: an error is an error. The ICMP port unreachable of a client that left
	 * before its answer fails the next receive (ECONNREFUSED), and that ends the server. */
	if (n < 0)
		die("recvmsg");
	if (!udp_from_amplifier(d))
		(void)udp_answer(fd, buf, (size_t)n, d);
}

int main(int argc, char **argv)
{
	udp_serve(argc, argv, &(struct udp_server){ .recv_size = 65536, .recverr = true, .answer = answer });
}

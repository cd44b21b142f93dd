/* broken-udp-ipv4-only: a UDP echo server that binds 0.0.0.0 when asked for the wildcard
 * "::", yet reports the address it was asked for: IPv6 datagrams go unanswered.
 *
 * Failure mode: FM-17 (IPv6 / dual-stack binding), for UDP.
 * Real-world pattern: socket(AF_INET, SOCK_DGRAM, 0) and INADDR_ANY, as most UDP examples
 * begin, in a server that says it serves both families.
 * Must fail: udp.ipv6.
 */
#include "broken.h"

static void answer(int fd, char *buf, ssize_t n, const struct datagram *d)
{
	if (n >= 0 && !udp_from_amplifier(d))
		(void)udp_answer(fd, buf, (size_t)n, d);
}

int main(int argc, char **argv)
{
	/* The bug: the wildcard "::" becomes IPv4's. */
	udp_serve(argc, argv, &(struct udp_server){ .recv_size = 65536, .wildcard = "0.0.0.0",
						     .answer = answer });
}

/* broken-udp-ipv4-only: a UDP echo server that binds 0.0.0.0 when asked for the wildcard
 * "::", yet reports the address it was asked for: IPv6 datagrams go unanswered.
 *
 * Failure mode: FM-17 (IPv6 / dual-stack binding), for UDP.
 * Real-world pattern: socket(AF_INET, SOCK_DGRAM, 0) and INADDR_ANY, as most UDP examples
 * begin, in a server that says it serves both families.
 * Must fail: udp.ipv6.
 */
#include "broken.h"

int main(int argc, char **argv)
{
	struct options opt;
	parse_options(argc, argv, &opt);
	exit_on_signals();
	/* The bug: the wildcard "::" becomes IPv4's. */
	if (strcmp(opt.host, "::") == 0)
		opt.host = "0.0.0.0";
	int fd = udp_bind(&opt);
	static char buf[65536];
	for (;;) {
		struct datagram d;
		ssize_t n = udp_receive(fd, buf, sizeof buf, &d);
		if (n < 0 || udp_from_amplifier(&d))
			continue;
		(void)udp_answer(fd, buf, (size_t)n, &d);
	}
}

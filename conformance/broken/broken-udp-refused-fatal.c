/* broken-udp-refused-fatal: a UDP echo server that turns on IP_RECVERR, so that send errors
 * are reported instead of lost, and then treats every recvfrom() error as fatal. When a
 * client has gone before its answer arrives, the ICMP port unreachable that comes back
 * makes the next recvfrom() fail with ECONNREFUSED, and the server exits.
 *
 * Failure mode: an ICMP error about one client stops the service for all.
 * Real-world pattern: `if (n < 0) { perror("recvfrom"); exit(1); }` in UDP servers that
 * connect() their socket or ask for extended errors.
 * Must fail: udp.unreachable.
 */
#include "broken.h"

#include <netinet/in.h>

int main(int argc, char **argv)
{
	struct options opt;
	parse_options(argc, argv, &opt);
	exit_on_signals();
	int fd = udp_bind(&opt);
	int on = 1;
	struct sockaddr_storage self;
	socklen_t self_len = sizeof self;
	if (getsockname(fd, (struct sockaddr *)&self, &self_len) < 0)
		die("getsockname");
	if (setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof on) < 0 ||
	    (self.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &on, sizeof on) < 0))
		die("setsockopt RECVERR");
	static char buf[65536];
	for (;;) {
		struct datagram d;
		ssize_t n = udp_receive(fd, buf, sizeof buf, &d);
		if (n < 0)
			die("recvmsg");
		if (!udp_from_amplifier(&d))
			(void)udp_answer(fd, buf, (size_t)n, &d);
	}
}

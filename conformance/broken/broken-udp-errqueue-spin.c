/* broken-udp-errqueue-spin: a poll() UDP echo server that asks for ICMP errors (IP_RECVERR)
 * and never reads them: once a client has gone before its answer, poll() reports POLLERR
 * at once, every time, and the server spins.
 *
 * Failure mode: 100 % of a core after the first "port unreachable", for ever; answers
 * still go out, so only the server's CPU shows it.
 * Real-world pattern: IP_RECVERR turned on for better error reports, POLLERR treated as
 * "nothing to read", the error queue (recvmsg(MSG_ERRQUEUE)) never drained.
 * Must fail: udp.health.
 */
#include "broken.h"

int main(int argc, char **argv)
{
	struct options opt;
	parse_options(argc, argv, &opt);
	exit_on_signals();
	int fd = udp_bind(&opt);
	udp_recverr(fd);
	set_blocking(fd, false);
	static char buf[65536];
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, -1) < 0)
			continue;
		/* The bug: POLLERR (a queued ICMP error) is not read, so it stays, and poll()
		 * returns at once from now on. */
		if (!(p.revents & POLLIN))
			continue;
		for (;;) {
			struct datagram d;
			ssize_t n = udp_receive(fd, buf, sizeof buf, &d);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				continue; /* the error's other copy (ECONNREFUSED): skipped */
			}
			if (!udp_from_amplifier(&d))
				(void)udp_answer(fd, buf, (size_t)n, &d);
		}
	}
}

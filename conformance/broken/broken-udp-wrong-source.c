/* broken-udp-wrong-source: a UDP echo server on a wildcard address that answers with
 * plain sendto(), so each answer leaves from whichever address the route to the client
 * prefers, not from the address the datagram was sent to.
 *
 * Failure mode: on a host with several addresses, a client that asked one of the others
 * gets its answer from an address it never asked; with a connected socket (or through a
 * stateful firewall) it never sees the answer at all.
 * Real-world pattern: recvfrom()/sendto() on a socket bound to 0.0.0.0 or ::, as nearly
 * every UDP tutorial writes it; IP_PKTINFO / IPV6_RECVPKTINFO are left out.
 * Must fail: udp.reply-source.
 */
#include "broken.h"

int main(int argc, char **argv)
{
	struct options opt;
	parse_options(argc, argv, &opt);
	exit_on_signals();
	int fd = udp_bind(&opt);
	static char buf[65536];
	for (;;) {
		struct datagram d;
		ssize_t n = udp_receive(fd, buf, sizeof buf, &d);
		if (n < 0 || udp_from_amplifier(&d))
			continue;
		/* The bug: d.ctl, the address the datagram came to, is not passed on. */
		(void)sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&d.peer, d.peer_len);
	}
}

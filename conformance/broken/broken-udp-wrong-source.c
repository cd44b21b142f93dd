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

static void answer(int fd, char *buf, ssize_t n, const struct datagram *d)
{
	if (n < 0 || udp_from_amplifier(d))
		return;
	/* The bug: d->ctl, the address the datagram came to, is not passed on. */
	(void)sendto(fd, buf, (size_t)n, 0, (const struct sockaddr *)&d->peer, d->peer_len);
}

int main(int argc, char **argv)
{
	udp_serve(argc, argv, &(struct udp_server){ .recv_size = 65536, .answer = answer });
}

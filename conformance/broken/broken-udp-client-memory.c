/* broken-udp-client-memory: a UDP echo server that gives every new client address a 128 KiB
 * buffer, filled, and never frees one.
 *
 * Failure mode: memory grows with every client that ever sent a datagram (each port of
 * each host), until the server is killed for it.
 * Real-world pattern: per-peer state (a reassembly buffer, a session) keyed by address with
 * no expiry: for UDP there is no close to free it at.
 * Must fail: udp.health.
 */
#include "broken.h"

#define STATE (128 * 1024)

struct client {
	struct client *next;
	struct sockaddr_storage peer;
	char state[STATE];
};

static void answer(int fd, char *buf, ssize_t n, const struct datagram *d)
{
	static struct client *clients;

	if (n < 0 || udp_from_amplifier(d))
		return;
	struct client *c = clients;
	while (c != NULL && memcmp(&c->peer, &d->peer, d->peer_len) != 0)
		c = c->next;
	if (c == NULL) {
		/* The bug: one per address, kept for ever. */
		c = malloc(sizeof *c);
		if (c == NULL)
			die("malloc");
		memset(&c->peer, 0, sizeof c->peer);
		memcpy(&c->peer, &d->peer, d->peer_len);
		memset(c->state, 0xff, sizeof c->state); /* "nothing reassembled yet" */
		c->next = clients;
		clients = c;
	}
	(void)udp_answer(fd, buf, (size_t)n, d);
}

int main(int argc, char **argv)
{
	udp_serve(argc, argv, &(struct udp_server){ .recv_size = 65536, .answer = answer });
}

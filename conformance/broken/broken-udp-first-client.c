/* broken-udp-first-client: a UDP echo server that learns "the client" from the first
 * datagram and answers every later datagram there, whoever sent it.
 *
 * Failure mode: answers to the wrong address: the sender never gets its echo, another
 * client gets data it did not send.
 * Real-world pattern: a peer address kept in a global after the first recvfrom(), as in
 * servers written for one client and then given several.
 * Must fail: the udp.* cases after the first on the shared server (udp.sizes: its client is
 * the first; udp.reply-source starts an instance of its own):
 * udp.empty, udp.one-answer, udp.clients, udp.unreachable, udp.burst, udp.health,
 * udp.loop-safety (whose sentinel's answer goes to the first client).
 */
#include "broken.h"

static void answer(int fd, char *buf, ssize_t n, const struct datagram *d)
{
	static struct datagram client;
	static bool have_client;

	if (n < 0 || udp_from_amplifier(d))
		return;
	/* The bug: "the client" is whoever came first. */
	if (!have_client) {
		client = *d;
		have_client = true;
	}
	/* From where this datagram was sent, to the first client. */
	memcpy(client.ctl, d->ctl, sizeof d->ctl);
	client.ctl_len = d->ctl_len;
	(void)udp_answer(fd, buf, (size_t)n, &client);
}

int main(int argc, char **argv)
{
	udp_serve(argc, argv, &(struct udp_server){ .recv_size = 65536, .answer = answer });
}

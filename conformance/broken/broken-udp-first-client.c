/* broken-udp-first-client: a UDP echo server that learns "the client" from the first
 * datagram and answers every later datagram there, whoever sent it.
 *
 * Failure mode: answers to the wrong address: the sender never gets its echo, another
 * client gets data it did not send.
 * Real-world pattern: a peer address kept in a global after the first recvfrom(), as in
 * servers written for one client and then given several.
 * Must fail: udp.one-answer, udp.clients, udp.unreachable (udp.sizes, the first case, is
 * the first client).
 */
#include "broken.h"

int main(int argc, char **argv)
{
	struct options opt;
	parse_options(argc, argv, &opt);
	exit_on_signals();
	int fd = udp_bind(&opt);
	static char buf[65536];
	struct datagram client;
	bool have_client = false;
	for (;;) {
		struct datagram d;
		ssize_t n = udp_receive(fd, buf, sizeof buf, &d);
		if (n < 0 || udp_from_amplifier(&d))
			continue;
		if (!have_client) {
			client = d;
			have_client = true;
		}
		/* From where this datagram was sent, to the first client. */
		memcpy(client.ctl, d.ctl, sizeof d.ctl);
		client.ctl_len = d.ctl_len;
		(void)udp_answer(fd, buf, (size_t)n, &client);
	}
}

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
	struct sockaddr_storage client;
	socklen_t client_len = 0;
	for (;;) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof peer;
		ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
		if (n < 0)
			continue;
		if (client_len == 0) {
			client = peer;
			client_len = len;
		}
		(void)sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&client, client_len);
	}
}

/* broken-udp-amplifier: a UDP echo server that answers every datagram, whatever port it
 * came from.
 *
 * Failure mode: a datagram from port 19 (chargen) or 7 (another echo server) is answered,
 * that server answers the answer, and the two loop for ever; with a forged source, one
 * datagram sets two servers flooding each other (CERT CA-1996-01).
 * Real-world pattern: the textbook recvfrom()/sendto() loop, with no check of the source
 * port: what the inetd echo services did before the advisory.
 * Must fail: udp.loop-safety.
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
		if (n < 0)
			continue;
		/* The bug: no udp_from_amplifier(&d) check. */
		(void)udp_answer(fd, buf, (size_t)n, &d);
	}
}

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

static void answer(int fd, char *buf, ssize_t n, const struct datagram *d)
{
	/* The bug: no udp_from_amplifier(d) check. */
	if (n >= 0)
		(void)udp_answer(fd, buf, (size_t)n, d);
}

int main(int argc, char **argv)
{
	udp_serve(argc, argv, &(struct udp_server){ .recv_size = 65536, .answer = answer });
}

/* broken-udp-chunked: a UDP echo server that receives whole datagrams but sends the echo
 * back in 1024-byte pieces, as a TCP server writes a stream: one datagram in, several out.
 *
 * Failure mode: a datagram split into several answers (RFC 862: one answering datagram).
 * Real-world pattern: stream code (write in fixed-size chunks) reused for datagrams.
 * Must fail: udp.sizes, udp.one-answer.
 */
#include "broken.h"

#define PIECE 1024

static void answer(int fd, char *buf, ssize_t n, const struct datagram *d)
{
	if (n < 0 || udp_from_amplifier(d))
		return;
	/* The bug: written out as a stream would be, a piece at a time. */
	size_t off = 0;
	do {
		size_t piece = (size_t)n - off < PIECE ? (size_t)n - off : PIECE;
		(void)udp_answer(fd, buf + off, piece, d);
		off += piece;
	} while (off < (size_t)n);
}

int main(int argc, char **argv)
{
	udp_serve(argc, argv, &(struct udp_server){ .recv_size = 65536, .answer = answer });
}

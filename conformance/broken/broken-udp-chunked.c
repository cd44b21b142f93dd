/* broken-udp-chunked: a UDP echo server that receives whole datagrams but sends the echo
 * back in 1024-byte pieces, as a TCP server writes a stream: one datagram in, several out.
 *
 * Failure mode: a datagram split into several answers (RFC 862: one answering datagram).
 * Real-world pattern: stream code (write in fixed-size chunks) reused for datagrams.
 * Must fail: udp.sizes, udp.one-answer.
 */
#include "broken.h"

#define PIECE 1024

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
		size_t off = 0;
		do {
			size_t piece = (size_t)n - off < PIECE ? (size_t)n - off : PIECE;
			(void)udp_answer(fd, buf + off, piece, &d);
			off += piece;
		} while (off < (size_t)n);
	}
}

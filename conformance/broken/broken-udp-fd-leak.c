/* broken-udp-fd-leak: a UDP echo server that opens a log file for each datagram and never
 * closes it.
 *
 * Failure mode: one descriptor more per datagram, until RLIMIT_NOFILE; the echo goes on,
 * so only the server's descriptor table shows it (and whatever else it then cannot open).
 * Real-world pattern: an early return, or a forgotten close(), on a per-request path.
 * Must fail: udp.health.
 */
#include "broken.h"

#include <fcntl.h>

static void answer(int fd, char *buf, ssize_t n, const struct datagram *d)
{
	if (n < 0 || udp_from_amplifier(d))
		return;
	/* The bug: never closed. */
	int log = open("/dev/null", O_WRONLY | O_APPEND | O_CLOEXEC);
	if (log >= 0)
		(void)dprintf(log, "%zd bytes\n", n);
	(void)udp_answer(fd, buf, (size_t)n, d);
}

int main(int argc, char **argv)
{
	udp_serve(argc, argv, &(struct udp_server){ .recv_size = 65536, .answer = answer });
}

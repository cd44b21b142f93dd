/* broken-cross-talk: a poll() echo server with one receive buffer for all clients:
 * each client only remembers how much of it to echo, so when two clients are read
 * in the same round, or a write is short, one client is sent another's bytes.
 *
 * Failure mode: FM-21 (stale data leaked: another client's data).
 * Real-world pattern: xroche/httrack #1496 (4 046 bytes of another client's data),
 * single-client tutorial servers made concurrent by wrapping them in poll().
 * Must fail: echo.concurrent, partial.many-interleaved.
 */
#include "broken.h"

#define BUF_SIZE 65536

static char buf[BUF_SIZE]; /* the data last read, waiting to be echoed */

struct conn {
	int fd;
	size_t off, len; /* buf[off, len) is still owed to this client */
};

int main(int argc, char **argv)
{
	struct options opt;

	parse_options(argc, argv, &opt);
	exit_on_signals();
	int lfd = listen_on(&opt);

	size_t max = (size_t)opt.max_conns, nconns = 0;
	struct conn *conns = calloc(max, sizeof *conns);
	struct pollfd *pfds = calloc(max + 1, sizeof *pfds);
	if (conns == NULL || pfds == NULL)
		die("calloc");

	for (;;) {
		pfds[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (size_t i = 0; i < nconns; i++) {
			/* Read a client only once its last echo is out: backpressure. */
			short ev = conns[i].off < conns[i].len ? POLLOUT : POLLIN;
			pfds[i + 1] = (struct pollfd){ .fd = conns[i].fd, .events = ev };
		}
		if (poll(pfds, nconns + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		/* Walk backwards so that removing entry i keeps the others in place. */
		for (size_t i = nconns; i-- > 0;) {
			struct conn *c = &conns[i];
			short re = pfds[i + 1].revents;
			ssize_t n = 0;

			if (re == 0)
				continue;
			if (c->off < c->len) {
				n = send(c->fd, buf + c->off, c->len - c->off, MSG_NOSIGNAL);
				if (n > 0)
					c->off += (size_t)n;
			} else {
				n = read(c->fd, buf, sizeof buf);
				if (n > 0) {
					c->off = 0;
					c->len = (size_t)n;
				}
			}
			if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
				continue;
			/* EOF with nothing owed (we read only then), or an error. */
			close(c->fd);
			conns[i] = conns[--nconns];
		}
		if (pfds[0].revents & POLLIN) {
			int fd;
			while ((fd = accept_client(lfd)) >= 0) {
				if (nconns >= max) {
					close(fd);
					continue;
				}
				conns[nconns++] = (struct conn){ .fd = fd };
			}
		}
	}
}

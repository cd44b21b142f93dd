/* broken-short-write: a non-blocking poll() echo server that treats any positive
 * write() as complete, so the unsent tail of a short write is silently dropped.
 *
 * Failure mode: FM-01 (short send/write ignored).
 * Real-world pattern: PyMOTW's select_echo_server.py ignores the count returned by
 * s.send(); objeck-lang PR #670 and Watt-32 PR #106 dropped the rest of a buffer.
 * A small SO_SNDBUF on accepted sockets makes short writes happen on every large echo.
 * Must fail: echo.large, partial.slow-reader, partial.tiny-buffers,
 *            partial.burst-half-close, close.half-close-flush (the cases its bug is
 *            about; implementations.toml lists all).
 */
#include "broken.h"

#define BUF_SIZE 65536 /* per-connection bound: stop reading while it is full */

struct conn {
	int fd;
	size_t len; /* buf[0, len) is owed to the client */
	bool eof;   /* the client has shut down its sending side */
	char buf[BUF_SIZE];
};

/* Reads what fits, writes what it can; false once the connection is finished. */
static bool serve(struct conn *c, short revents)
{
	if (!c->eof && c->len < BUF_SIZE && (revents & (POLLIN | POLLHUP | POLLERR))) {
		ssize_t n = read(c->fd, c->buf + c->len, BUF_SIZE - c->len);
		if (n > 0)
			c->len += (size_t)n;
		else if (n == 0)
			c->eof = true;
		else if (errno != EAGAIN && errno != EINTR)
			return false;
	}
	if (c->len > 0) {
		ssize_t n = send(c->fd, c->buf, c->len, MSG_NOSIGNAL);
		if (n > 0)
			c->len = 0; /* sent: the buffer is free again */
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			return false;
	} else if (revents & (POLLERR | POLLHUP) && c->eof) {
		return false;
	}
	return !(c->eof && c->len == 0);
}

int main(int argc, char **argv)
{
	struct options opt;

	parse_options(argc, argv, &opt);
	exit_on_signals();
	int lfd = listen_on(&opt);

	size_t max = (size_t)opt.max_conns, nconns = 0;
	struct conn **conns = calloc(max, sizeof *conns);
	struct pollfd *pfds = calloc(max + 1, sizeof *pfds);
	if (conns == NULL || pfds == NULL)
		die("calloc");

	for (;;) {
		pfds[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (size_t i = 0; i < nconns; i++) {
			struct conn *c = conns[i];
			short ev = 0;
			if (!c->eof && c->len < BUF_SIZE)
				ev |= POLLIN;
			if (c->len > 0)
				ev |= POLLOUT;
			pfds[i + 1] = (struct pollfd){ .fd = c->fd, .events = ev };
		}
		if (poll(pfds, nconns + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		/* Walk backwards so that removing entry i keeps the others in place. */
		for (size_t i = nconns; i-- > 0;) {
			if (pfds[i + 1].revents == 0 || serve(conns[i], pfds[i + 1].revents))
				continue;
			close(conns[i]->fd);
			free(conns[i]);
			conns[i] = conns[--nconns];
		}
		if (pfds[0].revents & POLLIN) {
			int fd;
			while ((fd = accept_client(lfd)) >= 0) {
				struct conn *c = nconns < max ? calloc(1, sizeof *c) : NULL;
				/* Keep kernel buffering small: memory per client stays low. */
				int sndbuf = 4096;
				if (c == NULL ||
				    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) < 0) {
					free(c);
					close(fd);
					continue;
				}
				c->fd = fd;
				conns[nconns++] = c;
			}
		}
	}
}

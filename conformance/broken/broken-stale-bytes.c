/* broken-stale-bytes: a poll() echo server that echoes "what its buffer holds", the
 * longest read so far, instead of what the last read() returned: after a shorter
 * read the client gets stale bytes from an earlier one.
 *
 * Failure mode: FM-21 (buffer size echoed instead of nread; stale data leaked).
 * Real-world pattern: thlorenz/libuv-dox PR #1 ("Stop sending random crap in
 * tcp-echo-server": buf.len instead of nread), xroche/httrack #1496 (4 046 bytes of
 * another request's data, invisible to ASan because the read stays in bounds).
 * Must fail: echo.no-extra, echo.pipelined, echo.large, partial.slow-reader,
 *            partial.one-byte-writes (the cases its bug is about; implementations.toml
 *            lists all).
 */
#include "broken.h"

#define BUF_SIZE 1024 /* one read at a time: read again once it is echoed */

struct conn {
	int fd;
	size_t off;      /* buf[off, len) is still owed to the client */
	size_t len;      /* how much of buf holds data */
	bool eof;        /* the client has shut down its sending side */
	char buf[BUF_SIZE];
};

/* Reads what fits, writes what it can; false once the connection is finished. */
static bool serve(struct conn *c, short revents)
{
	if (!c->eof && c->off == c->len && (revents & (POLLIN | POLLHUP | POLLERR))) {
		ssize_t n = read(c->fd, c->buf, BUF_SIZE);
		if (n > 0) {
			/* A read overwrites the start of buf; the rest still holds data. */
			if ((size_t)n > c->len)
				c->len = (size_t)n;
			c->off = 0;
		} else if (n == 0)
			c->eof = true;
		else if (errno != EAGAIN && errno != EINTR)
			return false;
	}
	if (c->off < c->len) {
		ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
		if (n >= 0)
			c->off += (size_t)n;
		else if (errno != EAGAIN && errno != EINTR)
			return false;
	} else if (revents & (POLLERR | POLLHUP) && c->eof) {
		return false;
	}
	/* Half-close: everything owed is delivered, so our FIN follows it. */
	return !(c->eof && c->off == c->len);
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
			if (!c->eof && c->off == c->len)
				ev |= POLLIN;
			if (c->off < c->len)
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
				if (c == NULL) {
					close(fd); /* over --max-conns (or out of memory): refuse */
					continue;
				}
				c->fd = fd;
				conns[nconns++] = c;
			}
		}
	}
}

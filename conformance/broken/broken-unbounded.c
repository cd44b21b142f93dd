/* broken-unbounded: a poll() echo server that always reads and appends to a growing
 * buffer, so a client that sends without reading makes it buffer without limit.
 *
 * Failure mode: FM-14 (unbounded memory: a client that sends but never reads).
 * Real-world pattern: redis/redis #91 and #2679 (no output / query buffer limit),
 * http-kit #180, bun #32469; PyMOTW's select server (RSS 14.5 MB -> 288 MB in 3 s).
 * Must fail: robust.bounded-memory.
 */
#include "broken.h"

#define READ_SIZE 65536 /* bytes asked of each read() */

struct conn {
	int fd;
	size_t off, len; /* buf[off, len) is still owed to the client */
	bool eof;        /* the client has shut down its sending side */
	size_t cap;
	char *buf;
};

/* Reads what fits, writes what it can; false once the connection is finished. */
static bool serve(struct conn *c, short revents)
{
	if (!c->eof && (revents & (POLLIN | POLLHUP | POLLERR))) {
		if (c->cap - c->len < READ_SIZE) {
			/* Make room: the client gets all of it back eventually. */
			size_t cap = c->cap ? 2 * c->cap : READ_SIZE;
			char *buf = realloc(c->buf, cap);
			if (buf == NULL)
				return false;
			c->buf = buf;
			c->cap = cap;
		}
		ssize_t n = read(c->fd, c->buf + c->len, READ_SIZE);
		if (n > 0)
			c->len += (size_t)n;
		else if (n == 0)
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
		if (c->off == c->len)
			c->off = c->len = 0;
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
			if (!c->eof)
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
			free(conns[i]->buf);
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

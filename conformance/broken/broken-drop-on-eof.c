/* broken-drop-on-eof: a poll() echo server that closes the connection as soon as
 * read() returns 0, dropping the echo it still owes the client.
 *
 * Failure mode: FM-05 (close on read-EOF while output is queued).
 * Real-world pattern: PyMOTW select_echo_server.py (pymotw and pymotw-3) closes and
 * discards the message queue on an empty recv(): after SHUT_WR the tail is lost.
 * Like PyMOTW, readable sockets are handled before writable ones, and data read in
 * one round is written in the next, so the EOF that follows the last data wins.
 * Must fail: close.half-close-flush, partial.burst-half-close.
 */
#include "broken.h"

#define BUF_SIZE 65536 /* per-connection bound: stop reading while it is full */

struct conn {
	int fd;
	size_t off, len; /* buf[off, len) is still owed to the client */
	bool eof;        /* the client has shut down its sending side */
	char buf[BUF_SIZE];
};

/* Reads what fits, writes what it can; false once the connection is finished. */
static bool serve(struct conn *c, short revents)
{
	if (!c->eof && c->len < BUF_SIZE && (revents & (POLLIN | POLLHUP | POLLERR))) {
		ssize_t n = read(c->fd, c->buf + c->len, BUF_SIZE - c->len);
		if (n > 0) {
			c->len += (size_t)n;
			return true; /* written in the next round, after the next read */
		} else if (n == 0)
			return false; /* the client is gone: drop it */
		else if (errno != EAGAIN && errno != EINTR)
			return false;
	}
	if (c->off < c->len && (revents & POLLOUT)) {
		ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
		if (n >= 0)
			c->off += (size_t)n;
		else if (errno != EAGAIN && errno != EINTR)
			return false;
		if (c->off == c->len)
			c->off = c->len = 0;
	} else if (revents & (POLLERR | POLLHUP) && (c->eof || c->len == BUF_SIZE)) {
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
			if (!c->eof && c->len < BUF_SIZE)
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

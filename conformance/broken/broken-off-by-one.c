/* broken-off-by-one: a poll() echo server that NUL-terminates each read for its debug
 * log with chunk[n] = '\0', one byte past the end when read() fills the chunk.
 * Built with AddressSanitizer, so the overflow aborts the server visibly.
 *
 * Failure mode: FM-22 (fixed-buffer overflow / off-by-one NUL termination).
 * Real-world pattern: ultravnc PR #366 (buffer[1024]), async-sockets-cpp #32 (a CVE
 * was requested), troglobit/redir PR #47, nanoMODBUS #118 (CWE-193).
 * Any read of CHUNK_SIZE (16 KiB) bytes or more in one go aborts it.
 * Must fail: echo.sizes, echo.nul, echo.large, partial.slow-reader,
 *            partial.burst-half-close, close.half-close-flush, close.reset-pending,
 *            close.vanish-while-writing, robust.eintr (the cases its bug is about;
 *            implementations.toml lists all).
 */
#include "broken.h"

#define BUF_SIZE 65536 /* per-connection bound: stop reading while it is full */
#define CHUNK_SIZE 16384

struct conn {
	int fd;
	size_t off, len; /* buf[off, len) is still owed to the client */
	bool eof;        /* the client has shut down its sending side */
	char buf[BUF_SIZE];
};

static bool debug; /* BROKEN_DEBUG=1 logs every read */

/* Reads what fits, writes what it can; false once the connection is finished. */
static bool serve(struct conn *c, short revents)
{
	if (!c->eof && BUF_SIZE - c->len >= CHUNK_SIZE && (revents & (POLLIN | POLLHUP | POLLERR))) {
		char chunk[CHUNK_SIZE];
		ssize_t n = read(c->fd, chunk, sizeof chunk);
		if (n > 0) {
			chunk[n] = '\0'; /* so that the debug log can print it */
			if (debug)
				fprintf(stderr, "fd %d: %zd bytes: %s\n", c->fd, n, chunk);
			memcpy(c->buf + c->len, chunk, (size_t)n);
			c->len += (size_t)n;
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
		if (c->off == c->len)
			c->off = c->len = 0;
	} else if (revents & (POLLERR | POLLHUP) && (c->eof || BUF_SIZE - c->len < CHUNK_SIZE)) {
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
	debug = getenv("BROKEN_DEBUG") != NULL;
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
			if (!c->eof && BUF_SIZE - c->len >= CHUNK_SIZE)
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

/* broken-line-buffered: a poll() echo server that thinks in text lines: it echoes a
 * line only once its '\n' has arrived, turns "\r\n" into "\n", and drops an unfinished
 * last line at EOF. RFC 862 echoes bytes, not lines.
 *
 * Failure mode: FM-20 (data treated as text), FM-21 (messages assumed to be lines).
 * Real-world pattern: fgets()/readline() echo loops and text-mode line discipline;
 * Lincoln Stein's select server hanging on readline(); Python's asynchat terminators.
 * Must fail: echo.basic, echo.crlf, echo.byte-values,
 *            echo.chunking, partial.one-byte-writes, state.machine (the cases its bug
 *            is about; implementations.toml lists all).
 */
#include "broken.h"

#define LINE_MAX_LEN 4096 /* a longer line is echoed in pieces of this size */
#define OUT_SIZE 65536    /* per-connection bound: stop reading while it is full */

struct conn {
	int fd;
	bool eof;
	size_t line_len;
	size_t off, len; /* out[off, len) is still owed to the client */
	char line[LINE_MAX_LEN];
	char out[OUT_SIZE];
};

/* Moves the finished line to the output, with a Unix line ending. */
static void end_line(struct conn *c, bool newline)
{
	size_t n = c->line_len;
	if (newline && n > 0 && c->line[n - 1] == '\r')
		n--; /* CRLF -> LF */
	memcpy(c->out + c->len, c->line, n);
	c->len += n;
	if (newline)
		c->out[c->len++] = '\n';
	c->line_len = 0;
}

static bool serve(struct conn *c, short revents)
{
	/* Room for a whole line and its newline, so a line is never split. */
	if (!c->eof && OUT_SIZE - c->len > LINE_MAX_LEN && (revents & (POLLIN | POLLHUP | POLLERR))) {
		char buf[LINE_MAX_LEN];
		ssize_t n = read(c->fd, buf, OUT_SIZE - c->len - LINE_MAX_LEN < sizeof buf
						? OUT_SIZE - c->len - LINE_MAX_LEN : sizeof buf);
		if (n == 0)
			c->eof = true; /* an unfinished last line is not a line */
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			return false;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				end_line(c, true);
				continue;
			}
			c->line[c->line_len++] = buf[i];
			if (c->line_len == LINE_MAX_LEN)
				end_line(c, false);
		}
	}
	if (c->off < c->len) {
		ssize_t n = send(c->fd, c->out + c->off, c->len - c->off, MSG_NOSIGNAL);
		if (n >= 0)
			c->off += (size_t)n;
		else if (errno != EAGAIN && errno != EINTR)
			return false;
		if (c->off == c->len)
			c->off = c->len = 0;
	} else if (revents & (POLLERR | POLLHUP) && (c->eof || OUT_SIZE - c->len <= LINE_MAX_LEN)) {
		return false;
	}
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
			if (!c->eof && OUT_SIZE - c->len > LINE_MAX_LEN)
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
					close(fd);
					continue;
				}
				c->fd = fd;
				conns[nconns++] = c;
			}
		}
	}
}

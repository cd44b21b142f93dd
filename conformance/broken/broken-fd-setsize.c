/* broken-fd-setsize: a non-blocking select() echo server that FD_SETs every accepted
 * descriptor, even one >= FD_SETSIZE (1024), writing past the end of its fd_set.
 *
 * Failure mode: FM-09 (FD_SETSIZE overflow in select() servers).
 * Real-world pattern: mbedtls #4169, ncat (nmap PR #2202), curl bug 3413274,
 * microsoft/omi #625 (__chk_fail). Built with -D_FORTIFY_SOURCE=2, so glibc aborts
 * with "bit out of range 0 - FD_SETSIZE on fd_set" instead of corrupting the stack.
 * Must fail: robust.fd-setsize.
 */
#include "broken.h"

#include <sys/select.h>

#define BUF_SIZE 65536 /* per-connection bound: stop reading while it is full */

struct conn {
	int fd;
	size_t off, len; /* buf[off, len) is still owed to the client */
	bool eof;        /* the client has shut down its sending side */
	char buf[BUF_SIZE];
};

/* Reads what fits, writes what it can; false once the connection is finished. */
static bool serve(struct conn *c, bool readable)
{
	if (readable && !c->eof && c->len < BUF_SIZE) {
		ssize_t n = read(c->fd, c->buf + c->len, BUF_SIZE - c->len);
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
	if (conns == NULL)
		die("calloc");

	for (;;) {
		fd_set rd, wr;
		int maxfd = lfd;

		FD_ZERO(&rd);
		FD_ZERO(&wr);
		FD_SET(lfd, &rd);
		for (size_t i = 0; i < nconns; i++) {
			struct conn *c = conns[i];
			if (!c->eof && c->len < BUF_SIZE)
				FD_SET(c->fd, &rd);
			if (c->off < c->len)
				FD_SET(c->fd, &wr);
			if (c->fd > maxfd)
				maxfd = c->fd;
		}
		if (select(maxfd + 1, &rd, &wr, NULL, NULL) < 0) {
			if (errno == EINTR)
				continue;
			die("select");
		}
		for (size_t i = nconns; i-- > 0;) {
			struct conn *c = conns[i];
			bool readable = FD_ISSET(c->fd, &rd), writable = FD_ISSET(c->fd, &wr);
			if ((!readable && !writable) || serve(c, readable))
				continue;
			close(c->fd);
			free(c);
			conns[i] = conns[--nconns];
		}
		if (FD_ISSET(lfd, &rd)) {
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

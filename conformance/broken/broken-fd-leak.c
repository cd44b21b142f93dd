/* broken-fd-leak: a poll() echo server that ends a finished connection with shutdown()
 * and drops it from its poll set, but never close()s the descriptor nor reuses the
 * slot: every client leaks a descriptor and after MAX_CLIENTS clients it stops serving.
 *
 * Failure mode: FM-11 (fd leaks on EOF / error paths).
 * Real-world pattern: CVE-2002-1372 (CUPS: fds never freed -> remote DoS),
 * SeerLabs/CiteSeerX #68 (> 10 000 CLOSE_WAIT), PhotonLibOS #1247, civetweb #962.
 * Must fail: echo.sequential, close.connect-close, close.connect-reset,
 *            robust.fd-leak, robust.fd-exhaustion (the cases its bug is about;
 *            implementations.toml lists all).
 */
#include "broken.h"

#define BUF_SIZE 65536 /* per-connection bound: stop reading while it is full */
#define MAX_CLIENTS 100

struct conn {
	size_t off, len; /* buf[off, len) is still owed to the client */
	bool eof;        /* the client has shut down its sending side */
	char buf[BUF_SIZE];
};

/* Entry 0 is the listener; client i uses fds[i] and conns[i]. */
static struct pollfd fds[1 + MAX_CLIENTS];
static struct conn conns[1 + MAX_CLIENTS];
static size_t nfds = 1;

/* Reads what fits, writes what it can; false once the connection is finished. */
static bool serve(struct pollfd *p, struct conn *c)
{
	if (!c->eof && c->len < BUF_SIZE && (p->revents & (POLLIN | POLLHUP | POLLERR))) {
		ssize_t n = read(p->fd, c->buf + c->len, BUF_SIZE - c->len);
		if (n > 0)
			c->len += (size_t)n;
		else if (n == 0)
			c->eof = true;
		else if (errno != EAGAIN && errno != EINTR)
			return false;
	}
	if (c->off < c->len) {
		ssize_t n = send(p->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
		if (n >= 0)
			c->off += (size_t)n;
		else if (errno != EAGAIN && errno != EINTR)
			return false;
		if (c->off == c->len)
			c->off = c->len = 0;
	} else if (p->revents & (POLLERR | POLLHUP) && (c->eof || c->len == BUF_SIZE)) {
		return false;
	}
	return !(c->eof && c->off == c->len);
}

int main(int argc, char **argv)
{
	struct options opt;

	parse_options(argc, argv, &opt);
	exit_on_signals();
	fds[0] = (struct pollfd){ .fd = listen_on(&opt), .events = POLLIN };

	for (;;) {
		for (size_t i = 1; i < nfds; i++) {
			struct conn *c = &conns[i];
			fds[i].events = 0;
			if (!c->eof && c->len < BUF_SIZE)
				fds[i].events |= POLLIN;
			if (c->off < c->len)
				fds[i].events |= POLLOUT;
		}
		/* A full table: stop accepting until a slot is free again. */
		fds[0].events = nfds < 1 + MAX_CLIENTS ? POLLIN : 0;
		if (poll(fds, nfds, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		for (size_t i = 1; i < nfds; i++) {
			if (fds[i].fd < 0 || fds[i].revents == 0 || serve(&fds[i], &conns[i]))
				continue;
			/* Done: send our FIN, and poll() ignores negative fds. */
			if (shutdown(fds[i].fd, SHUT_RDWR) < 0 && errno != ENOTCONN)
				perror("shutdown");
			fds[i].fd = -1;
		}
		if (fds[0].revents & POLLIN) {
			int fd;
			while (nfds < 1 + MAX_CLIENTS && (fd = accept_client(fds[0].fd)) >= 0) {
				conns[nfds] = (struct conn){ .eof = false };
				fds[nfds++] = (struct pollfd){ .fd = fd };
			}
		}
	}
}

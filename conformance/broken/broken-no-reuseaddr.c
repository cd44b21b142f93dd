/* broken-no-reuseaddr: a poll() echo server whose listener does not set SO_REUSEADDR,
 * so after a crash or restart bind() fails with EADDRINUSE while connections of the
 * old process linger in TIME_WAIT or FIN_WAIT on its port.
 *
 * Failure mode: FM-18 (no SO_REUSEADDR: restart fails during TIME_WAIT).
 * Real-world pattern: uWebSockets PR #176, OpenSlides PR #1053 (#1043), tio/tio #257,
 * dicedb PR #134, ms-tpm-20-ref PR #118: "bind: Address already in use" for ~60 s.
 * Must fail: robust.restart-rebind.
 */
#include "broken.h"

#include <netdb.h>
#include <netinet/in.h>

#define BUF_SIZE 65536 /* per-connection bound: stop reading while it is full */

struct conn {
	int fd;
	size_t off, len; /* buf[off, len) is still owed to the client */
	bool eof;        /* the client has shut down its sending side */
	char buf[BUF_SIZE];
};

/* The listener: "::" also accepts IPv4 clients (IPV6_V6ONLY off). */
static int open_listener(const struct options *opt)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char port[16];
	int off = 0;

	snprintf(port, sizeof port, "%d", opt->port);
	int rc = getaddrinfo(opt->host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", opt->host, gai_strerror(rc));
		exit(2);
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (res->ai_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) < 0)
		die("setsockopt IPV6_V6ONLY");
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
		die("bind");
	freeaddrinfo(res);
	if (listen(fd, SOMAXCONN) < 0)
		die("listen");
	announce(fd, NULL);
	return fd;
}

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
	if (c->off < c->len) {
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
	int lfd = open_listener(&opt);

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

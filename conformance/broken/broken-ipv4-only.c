/* broken-ipv4-only: a poll() echo server that binds 0.0.0.0 when asked for the
 * wildcard "::", yet reports the address it was asked for: IPv6 clients are refused.
 *
 * Failure mode: FM-17 (IPv6 / dual-stack binding).
 * Real-world pattern: netdata #402 (IPv4-only assumptions), rfc1036/udptunnel #13,
 * muety/wakapi #860, zhboner/realm #124: an AF_INET socket behind an IPv6 address.
 * Must fail: robust.ipv6.
 */
#include "broken.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#define BUF_SIZE 65536 /* per-connection bound: stop reading while it is full */

struct conn {
	int fd;
	size_t off, len; /* buf[off, len) is still owed to the client */
	bool eof;        /* the client has shut down its sending side */
	char buf[BUF_SIZE];
};

/* The listener: an IPv4 address, or every interface for a wildcard. */
static int open_listener(const struct options *opt)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)opt->port) };
	int on = 1;

	if (strcmp(opt->host, "::") == 0 || strcmp(opt->host, "0.0.0.0") == 0) {
		sa.sin_addr.s_addr = htonl(INADDR_ANY);
	} else if (inet_pton(AF_INET, opt->host, &sa.sin_addr) != 1) {
		fprintf(stderr, "%s: not an IPv4 address\n", opt->host);
		exit(2);
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0)
		die("setsockopt SO_REUSEADDR");
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		die("bind");
	if (listen(fd, SOMAXCONN) < 0)
		die("listen");
	announce(fd, opt->host);
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

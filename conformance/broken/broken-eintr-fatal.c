/* broken-eintr-fatal: an epoll echo server that treats every epoll_wait() failure as
 * fatal, EINTR included. Linux returns EINTR from epoll_wait() after SIGSTOP/SIGCONT
 * even with no signal handler, so stopping and continuing the server kills it.
 *
 * Failure mode: FM-04 (EINTR treated as fatal).
 * Real-world pattern: LibVNC/libvncserver PR #733 (#732: the port stays open but
 * nothing is accepted), EternalTerminal PR #516, cpp-httplib PR #451, libjuice PR #26.
 * Must fail: robust.eintr.
 */
#include "broken.h"

#include <sys/epoll.h>

#define BUF_SIZE 65536 /* per-connection bound: stop reading while it is full */
#define MAX_EVENTS 64

struct conn {
	int fd;
	uint32_t events; /* what epoll watches for now */
	size_t off, len; /* buf[off, len) is still owed to the client */
	bool eof;        /* the client has shut down its sending side */
	char buf[BUF_SIZE];
};

/* Reads what fits, writes what it can; false once the connection is finished. */
static bool serve(struct conn *c, uint32_t revents)
{
	if (!c->eof && c->len < BUF_SIZE && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
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
	} else if (revents & (EPOLLERR | EPOLLHUP) && (c->eof || c->len == BUF_SIZE)) {
		return false;
	}
	return !(c->eof && c->off == c->len);
}

/* Level-triggered interest that matches the buffer state. */
static bool watch(int ep, struct conn *c)
{
	uint32_t ev = 0;
	if (!c->eof && c->len < BUF_SIZE)
		ev |= EPOLLIN;
	if (c->off < c->len)
		ev |= EPOLLOUT;
	if (ev == c->events)
		return true;
	struct epoll_event e = { .events = ev, .data.ptr = c };
	c->events = ev;
	return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) == 0;
}

int main(int argc, char **argv)
{
	struct options opt;
	struct epoll_event events[MAX_EVENTS];
	int nconns = 0;

	parse_options(argc, argv, &opt);
	exit_on_signals();
	int lfd = listen_on(&opt);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	struct epoll_event le = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le) < 0)
		die("epoll_ctl");

	for (;;) {
		int n = epoll_wait(ep, events, MAX_EVENTS, -1);
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct conn *c = events[i].data.ptr;
			if (c == NULL) {
				int fd;
				while ((fd = accept_client(lfd)) >= 0) {
					struct conn *nc = nconns < opt.max_conns ? calloc(1, sizeof *nc) : NULL;
					struct epoll_event e = { .events = EPOLLIN, .data.ptr = nc };
					if (nc == NULL || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) {
						free(nc);
						close(fd);
						continue;
					}
					nc->fd = fd;
					nc->events = EPOLLIN;
					nconns++;
				}
				continue;
			}
			if (serve(c, events[i].events) && watch(ep, c))
				continue;
			close(c->fd); /* also removes it from the epoll set */
			free(c);
			nconns--;
		}
	}
}

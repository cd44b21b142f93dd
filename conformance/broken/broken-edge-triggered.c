/* broken-edge-triggered: an edge-triggered (EPOLLET) epoll echo server that reads
 * once per EPOLLIN event instead of until EAGAIN. Data that arrived together with
 * the last edge stays in the kernel buffer: no new edge comes, the echo stalls.
 *
 * Failure mode: FM-16 (edge-triggered epoll misuse).
 * Real-world pattern: pistacheio/pistache #1114, Andrewpqc/qiaqia #4, meh/nucular #6;
 * opentechinstitute/commotiond PR #18 went back to level-triggered to fix it.
 * Must fail: partial.burst-half-close, partial.many-interleaved, echo.large,
 *            partial.slow-reader (the cases its bug is about; implementations.toml lists
 *            all).
 */
#include "broken.h"

#include <sys/epoll.h>

#define BUF_SIZE 65536 /* per-connection bound: stop reading while it is full */
/* A 9-byte read per wake-up. The harness ends its streams with a 19-byte sentinel, and at
 * most two reads follow its arrival: the one its own edge wakes, and one whose wake-up came
 * before it arrived but whose read comes after. 2 x 9 < 19, so part of the sentinel always
 * stays, whatever the timing. With 16-byte reads a loaded machine let that second read take
 * the rest (echo.basic passed once in a CI). */
#define READ_SIZE 9
#define MAX_EVENTS 64

struct conn {
	int fd;
	size_t off, len; /* buf[off, len) is still owed to the client */
	bool eof;        /* the client has shut down its sending side */
	bool want_out;   /* EPOLLOUT is in its interest set: output is waiting for room */
	char buf[BUF_SIZE];
};

static int ep = -1;

/* EPOLLOUT is asked for only while output waits for room: with it always in the interest
 * set, any write-space wakeup of the socket (the kernel sends some under memory pressure or
 * load) would report EPOLLIN again and read the stranded bytes, and whether the bug shows
 * would depend on the scheduler. */
static void want_output(struct conn *c, bool want)
{
	if (c->want_out == want)
		return;
	struct epoll_event e = { .events = EPOLLIN | EPOLLET | (want ? EPOLLOUT : 0), .data.ptr = c };
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->want_out = want;
}

/* Reads what fits, writes what it can; false once the connection is finished. */
static bool serve(struct conn *c, uint32_t revents)
{
	if (!c->eof && c->len < BUF_SIZE && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
		/* One read per wake-up: if more is there, epoll says so again. */
		size_t room = BUF_SIZE - c->len < READ_SIZE ? BUF_SIZE - c->len : READ_SIZE;
		ssize_t n = read(c->fd, c->buf + c->len, room);
		if (n > 0)
			c->len += (size_t)n;
		else if (n == 0)
			c->eof = true;
		else if (errno != EAGAIN && errno != EINTR)
			return false;
	}
	/* Edge-triggered: write until done or EAGAIN, the next EPOLLOUT resumes. */
	while (c->off < c->len) {
		ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return false;
			break;
		}
		c->off += (size_t)n;
		if (c->off == c->len)
			c->off = c->len = 0;
	}
	want_output(c, c->off < c->len);
	return !(c->eof && c->off == c->len);
}

int main(int argc, char **argv)
{
	struct options opt;
	struct epoll_event events[MAX_EVENTS];
	int nconns = 0;

	parse_options(argc, argv, &opt);
	exit_on_signals();
	int lfd = listen_on(&opt);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	struct epoll_event le = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le) < 0)
		die("epoll_ctl");

	for (;;) {
		int n = epoll_wait(ep, events, MAX_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = events[i].data.ptr;
			if (c == NULL) {
				int fd;
				while ((fd = accept_client(lfd)) >= 0) {
					struct conn *nc = nconns < opt.max_conns ? calloc(1, sizeof *nc) : NULL;
					struct epoll_event e = {
						.events = EPOLLIN | EPOLLET, .data.ptr = nc
					};
					if (nc == NULL || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) {
						free(nc);
						close(fd);
						continue;
					}
					nc->fd = fd;
					nconns++;
				}
				continue;
			}
			if (serve(c, events[i].events))
				continue;
			close(c->fd); /* also removes it from the epoll set */
			free(c);
			nconns--;
		}
	}
}

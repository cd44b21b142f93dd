/* broken-idle-timeout: a poll() echo server that closes a connection after one
 * second without traffic, although RFC 862 echoes "until the calling user terminates".
 *
 * Failure mode: R3 (the server closes first), a misapplied FM-15 slowloris defence.
 * Real-world pattern: an idle timeout on by default and far too short (MPD's
 * connection_timeout, HAProxy's "timeout client"); OpenBSD relayd's regress test
 * asserts the opposite: a 3 s timeout must not fire within 2 s of idleness.
 * The timeout is 1 s, half the 2 s that the idle cases idle: a client idling 2 s loses every
 * time, and a harness that gets no CPU for up to 1 s in another case does not lose.
 * Must fail: close.no-early-close, echo.pause.
 */
#include "broken.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <time.h>

#define BUF_SIZE 65536 /* per-connection bound: stop reading while it is full */
#define IDLE_TIMEOUT_MS 1000 /* drop clients that have gone quiet */

struct conn {
	int fd;
	size_t off, len; /* buf[off, len) is still owed to the client */
	bool eof;        /* the client has shut down its sending side */
	long long last_active; /* ms: last byte read or written */
	bool talked;           /* it has sent something: only then does the timer run */
	char buf[BUF_SIZE];
};

static long long now_ms(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		die("clock_gettime");
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* A client still reading echo the kernel holds for it is not idle, nor is one whose input
 * is already here, nor one that has not sent anything yet (a case connecting many clients
 * before the first sends): only silence both ways after some traffic starts the timer.
 * The kernel's queues are read at the moment of deciding, not taken from the poll() before:
 * a server that gets no CPU (or is stopped) between the two must not take input that
 * arrived meanwhile for silence. Otherwise time the harness or this server spends off the
 * CPU on a loaded machine would count, and the bug would show in cases that are not about
 * idleness, in some runs only. */
static bool busy(struct conn *c)
{
	int unsent = 0, unread = 0;
	if (ioctl(c->fd, SIOCOUTQ, &unsent) < 0 || ioctl(c->fd, FIONREAD, &unread) < 0 || unsent > 0 ||
	    unread > 0) {
		c->last_active = now_ms();
		return true;
	}
	return false;
}

/* Reads what fits, writes what it can; false once the connection is finished. */
static bool serve(struct conn *c, short revents)
{
	if (!c->eof && c->len < BUF_SIZE && (revents & (POLLIN | POLLHUP | POLLERR))) {
		ssize_t n = read(c->fd, c->buf + c->len, BUF_SIZE - c->len);
		if (n > 0) {
			c->len += (size_t)n;
			c->talked = true;
			c->last_active = now_ms();
		} else if (n == 0)
			c->eof = true;
		else if (errno != EAGAIN && errno != EINTR)
			return false;
	}
	if (c->off < c->len) {
		ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
		if (n > 0) {
			c->off += (size_t)n;
			c->last_active = now_ms();
		} else if (n < 0 && errno != EAGAIN && errno != EINTR)
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
		if (poll(pfds, nconns + 1, IDLE_TIMEOUT_MS / 5) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		/* Walk backwards so that removing entry i keeps the others in place. */
		for (size_t i = nconns; i-- > 0;) {
			struct conn *c = conns[i];
			bool idle = c->talked && pfds[i + 1].revents == 0 && c->off == c->len &&
				    now_ms() - c->last_active > IDLE_TIMEOUT_MS && !busy(c);
			if (!idle && (pfds[i + 1].revents == 0 || serve(c, pfds[i + 1].revents)))
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
				c->last_active = now_ms();
				conns[nconns++] = c;
			}
		}
	}
}

/* broken-hol-blocking: a select() echo server on blocking client sockets that writes
 * each echo in full before looking at anyone else, so one client that does not read
 * freezes every other client (head-of-line blocking).
 *
 * Failure mode: FM-13 (one slow client stalls everyone).
 * Real-world pattern: lima-vm/socket_vmnet #173 (blocking writev()), romanz/electrs
 * #1326 (> 30 min stall), the naive C select() server of failure-modes.md §2, and
 * Lincoln Stein's select server that hangs on readline().
 * Must fail: robust.stalled-reader.
 */
#include "broken.h"

#include <sys/select.h>

#define BUF_SIZE 16384

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct options opt;

	parse_options(argc, argv, &opt);
	exit_on_signals();
	int lfd = listen_on(&opt);

	size_t max = (size_t)opt.max_conns, nconns = 0;
	int *fds = calloc(max, sizeof *fds);
	if (fds == NULL)
		die("calloc");

	for (;;) {
		fd_set rd;
		int maxfd = lfd;

		FD_ZERO(&rd);
		FD_SET(lfd, &rd);
		for (size_t i = 0; i < nconns; i++) {
			FD_SET(fds[i], &rd);
			if (fds[i] > maxfd)
				maxfd = fds[i];
		}
		if (select(maxfd + 1, &rd, NULL, NULL, NULL) < 0) {
			if (errno == EINTR)
				continue;
			die("select");
		}
		for (size_t i = nconns; i-- > 0;) {
			char buf[BUF_SIZE];
			if (!FD_ISSET(fds[i], &rd))
				continue;
			/* select() said readable, so neither call waits for long. */
			ssize_t n = read(fds[i], buf, sizeof buf);
			if (n > 0 && write_all(fds[i], buf, (size_t)n) == 0)
				continue;
			if (n < 0 && errno == EINTR)
				continue;
			close(fds[i]); /* EOF (everything was echoed already) or error */
			fds[i] = fds[--nconns];
		}
		if (FD_ISSET(lfd, &rd)) {
			int fd;
			while ((fd = accept_client(lfd)) >= 0) {
				if (nconns >= max || fd >= FD_SETSIZE) {
					close(fd); /* select() cannot watch it */
					continue;
				}
				set_blocking(fd, true);
				fds[nconns++] = fd;
			}
		}
	}
}

/* broken-sigpipe: a thread-per-client echo server that write()s without MSG_NOSIGNAL
 * and leaves SIGPIPE at its default action, so writing to a connection the client
 * has reset kills the whole server (exit by signal 13).
 *
 * Failure mode: FM-07 (SIGPIPE kills the whole server).
 * Real-world pattern: stonier/ecl_core #34 (EPIPE handled, but SIGPIPE killed first),
 * mangband #552 (handler commented out), devnull-cz/unix-linux-prog-in-c #36 (141).
 * The errors are even handled: on a failed read or write it tells the client why it
 * hangs up, and that last write to a reset connection raises SIGPIPE.
 * Must fail: close.reset-pending, close.vanish-while-writing, close.connect-reset.
 */
#include "broken.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define BUF_SIZE 16384

static atomic_int nclients;

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
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

static void *echo_client(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[BUF_SIZE];
	ssize_t n;

	/* Blocking I/O: write_all() waits while the client is slow to read. */
	while ((n = read(fd, buf, sizeof buf)) > 0) {
		if (write_all(fd, buf, (size_t)n) < 0)
			break;
	}
	if (n != 0) {
		/* Tell the client why we hang up. After a reset that write raises
		 * SIGPIPE, and the default action ends every connection at once. */
		char msg[80];
		int len = snprintf(msg, sizeof msg, "echo: %s\n", strerror(errno));
		if (len > 0 && write_all(fd, msg, (size_t)len) < 0)
			perror("write");
	}
	close(fd);
	atomic_fetch_sub(&nclients, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	struct options opt;

	parse_options(argc, argv, &opt);
	exit_on_signals();
	int lfd = listen_on(&opt);

	for (;;) {
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };
		if (poll(&pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		int fd;
		while ((fd = accept_client(lfd)) >= 0) {
			pthread_t tid;
			if (atomic_load(&nclients) >= opt.max_conns) {
				close(fd);
				continue;
			}
			set_blocking(fd, true);
			atomic_fetch_add(&nclients, 1);
			int rc = pthread_create(&tid, NULL, echo_client, (void *)(intptr_t)fd);
			if (rc != 0) {
				fprintf(stderr, "pthread_create: %s\n", strerror(rc));
				atomic_fetch_sub(&nclients, 1);
				close(fd);
				continue;
			}
			pthread_detach(tid);
		}
	}
}

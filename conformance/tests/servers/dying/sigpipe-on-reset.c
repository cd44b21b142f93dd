/* sigpipe-on-reset: a thread-per-client echo server that write()s without MSG_NOSIGNAL and
 * leaves SIGPIPE at its default action. When a client resets the connection while the server
 * still writes to it, the failed write is followed by a goodbye line, and writing to the reset
 * connection raises SIGPIPE, which kills the whole server (Docker: exit status 141 = 128 + 13).
 * Otherwise a correct echo server. A test server for `echoconf run --image` (a death must be a
 * failed case, the container restarted, the run going on); static, FROM scratch. */
#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>

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

static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[16384];
	ssize_t n;

	while ((n = read(fd, buf, sizeof buf)) > 0)
		if (write_all(fd, buf, (size_t)n) < 0)
			break;
	if (n != 0) {
		/* The bug: tell a client that is gone why we hang up. */
		char msg[80];
		int len = snprintf(msg, sizeof msg, "echo: %s\n", strerror(errno));
		fprintf(stderr, "sigpipe-on-reset: %s; writing a goodbye to the reset connection\n", strerror(errno));
		if (len > 0)
			write_all(fd, msg, (size_t)len);
	}
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	int lfd = listen_on(argc, argv);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		pthread_t t;
		if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) != 0) {
			close(fd);
			continue;
		}
		pthread_detach(t);
	}
}

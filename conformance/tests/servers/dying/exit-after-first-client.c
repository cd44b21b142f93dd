/* exit-after-first-client: echoes its first client correctly to the end, then exits with
 * status 0 instead of accepting the next one (a server written as "accept, serve, return").
 * A test server for `echoconf run --image`: every case after the first finds it dead; the
 * death must be a failed case and the container restarted. Static, FROM scratch. */
#include "common.h"

#include <errno.h>

int main(int argc, char **argv)
{
	int lfd = listen_on(argc, argv), fd;
	char buf[16384];
	ssize_t n;

	while ((fd = accept(lfd, NULL, NULL)) < 0)
		;
	while ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
		for (ssize_t off = 0; n > 0 && off < n;) {
			ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				goto done;
			off += w;
		}
	}
done:
	close(fd);
	fprintf(stderr, "exit-after-first-client: served one client, exiting\n");
	return 0;
}

/* exit-after-first-client: echoes its first client correctly to the end, then exits with
 * status 0 instead of accepting the next one (a server written as "accept, serve, return").
 * A test server for `echoconf run --image`: every case after the first finds it dead; the
 * death must be a failed case and the container restarted. Static, FROM scratch. */
#include "common.h"

int main(int argc, char **argv)
{
	int lfd = listen_on(argc, argv), fd;

	while ((fd = accept(lfd, NULL, NULL)) < 0)
		;
	echo_until_eof(fd);
	fprintf(stderr, "exit-after-first-client: served one client, exiting\n");
	return 0;
}

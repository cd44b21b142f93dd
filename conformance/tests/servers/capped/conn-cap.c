/* conn-cap: a correct thread-per-connection echo server that stops accepting after its
 * 1000th connection (a fixed-size connection table filled once and never reused). The listener
 * stays open, so later clients complete the handshake into the backlog and wait forever.
 * A test server for a plain `echoconf run --image IMAGE --port 7`: correct for the first 1000
 * clients, it must still exit 1 (echo.sequential's 1000 connections reach the cap).
 * Static, FROM scratch:
 *   gcc -static -O2 -pthread -o server conn-cap.c      (built by conformance/tests/test_image.py)
 */
#include "../dying/common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>

#define MAX_CONNECTIONS 1000

static void *serve(void *arg)
{
	echo_until_eof((int)(long)arg);
	return NULL;
}

int main(int argc, char **argv)
{
	int lfd = listen_on(argc, argv);
	pthread_attr_t attr;

	if (pthread_attr_init(&attr) != 0 || pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0)
		return 2;
	/* A reserve descriptor: at the descriptor limit it is given up to accept and close a
	 * waiting client, so the server neither spins on EMFILE (accept fails at once while no
	 * descriptor is free) nor leaves clients hanging in the backlog. */
	int spare = open("/", O_RDONLY | O_CLOEXEC);
	for (int accepted = 0; accepted < MAX_CONNECTIONS;) {
		int fd = accept(lfd, NULL, NULL);
		pthread_t t;
		if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
			struct pollfd p = { .fd = lfd, .events = POLLIN };
			if (poll(&p, 1, -1) < 0) /* until a client waits: a descriptor may be free by then */
				continue;
			fd = accept(lfd, NULL, NULL);
			if (fd < 0 && (errno == EMFILE || errno == ENFILE) && spare >= 0) {
				close(spare);
				fd = accept(lfd, NULL, NULL);
				if (fd >= 0)
					close(fd);
				spare = open("/", O_RDONLY | O_CLOEXEC);
				continue;
			}
		}
		if (fd < 0)
			continue;
		accepted++;
		if (pthread_create(&t, &attr, serve, (void *)(long)fd) != 0)
			close(fd);
	}
	fprintf(stderr, "conn-cap: %d connections accepted, accepting no more\n", MAX_CONNECTIONS);
	for (;;)
		pause();
}

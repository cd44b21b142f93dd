/* What the static test servers share: the listener (port from argv[1], default 7, dual-stack
 * on ::, IPv4 fallback, SO_REUSEADDR so a restart binds at once; prints `listening :: PORT`)
 * and a correct echo of one client to its end. */
#ifndef DYING_COMMON_H
#define DYING_COMMON_H

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_on(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 7, one = 1, zero = 0;
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd >= 0) {
		struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any };
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
		if (bind(fd, (struct sockaddr *)&a6, sizeof a6) == 0 && listen(fd, 128) == 0) {
			printf("listening :: %d\n", port);
			fflush(stdout);
			return fd;
		}
		close(fd);
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY) };
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a4, sizeof a4) != 0 || listen(fd, 128) != 0) {
		perror("listen");
		exit(2);
	}
	printf("listening 0.0.0.0 %d\n", port);
	fflush(stdout);
	return fd;
}

/* Echoes everything fd sends, short writes and EINTR handled, until EOF or an error; closes fd. */
static inline void echo_until_eof(int fd)
{
	char buf[16384];
	ssize_t n;

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
}

#endif

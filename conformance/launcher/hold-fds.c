/*
 * echoconf-hold-fds N PROGRAM [ARG...]: open descriptors until the next one is N + 3, then
 * exec PROGRAM in place (same pid), so that the sockets PROGRAM creates land past N.
 *
 * robust.fd-setsize uses it to start a server with its listener near descriptor 1019 and its
 * clients past 1023, where an fd_set overflows. Locally the harness does this in Python; a
 * server image FROM scratch has no interpreter and no shell, so under `echoconf run --image`
 * this static binary is bind-mounted into the container and put before the image's
 * entrypoint. It must stay static: nothing of the image may be needed to run it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int parse_count(const char *s, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 1 << 20)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    long n = 0;
    if (argc < 3 || parse_count(argv[1], &n) != 0) {
        fprintf(stderr, "usage: %s N PROGRAM [ARG...]  (0 <= N <= 1048576)\n", argv[0]);
        return 2;
    }
    /* Room for the held descriptors and for the server's own above them: a container's
     * default soft limit may be as low as 1024. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        perror("echoconf-hold-fds: getrlimit");
        return 126;
    }
    rlim_t want = (rlim_t)n + 4096;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            perror("echoconf-hold-fds: setrlimit");
            return 126;
        }
    }
    for (;;) {
        /* Not O_CLOEXEC: the descriptors must stay open in the server. */
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            fprintf(stderr, "echoconf-hold-fds: open /dev/null: %s\n", strerror(errno));
            return 126;
        }
        if (fd >= n + 2)
            break;
    }
    execvp(argv[2], argv + 2);
    fprintf(stderr, "echoconf-hold-fds: exec %s: %s\n", argv[2], strerror(errno));
    return 127;
}

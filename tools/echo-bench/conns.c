/* The modes that measure connections rather than bytes: connrate and
 * connrate-rst (one short connection after another) and hold (many idle
 * ones at once). Each connection is proven served by a 1-byte echo, a
 * blocking one with a timeout, so these modes need no event loop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define ONE_BYTE_TIMEOUT_S 5
#define SLOW_CONNECT_S 0.5

static int send_byte(int fd, unsigned char b, const char *what)
{
    if (send(fd, &b, 1, MSG_NOSIGNAL) != 1) {
        fprintf(stderr, "echo-bench: %s: send: %s\n", what, strerror(errno));
        return -1;
    }
    return 0;
}

/* The byte b back within ONE_BYTE_TIMEOUT_S (the socket's SO_RCVTIMEO); -1
 * with a message otherwise. */
static int recv_byte(int fd, unsigned char b, const char *what)
{
    unsigned char got;
    ssize_t n;

    do
        n = recv(fd, &got, 1, 0);
    while (n < 0 && errno == EINTR);
    if (n != 1 || got != b) {
        fprintf(stderr, "echo-bench: %s: %s\n", what,
                n < 0 ? strerror(errno) : n == 0 ? "closed before the echo" : "wrong byte");
        return -1;
    }
    return 0;
}

static int one_byte_echo(int fd, unsigned char b, const char *what)
{
    return send_byte(fd, b, what) < 0 ? -1 : recv_byte(fd, b, what);
}

static int timed(int fd)
{
    struct timeval tv = {.tv_sec = ONE_BYTE_TIMEOUT_S};

    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
        perror("echo-bench: setsockopt");
        return -1;
    }
    return 0;
}

/* The server's resident set in KiB from /proc, -1 when it cannot be read. */
static long rss_kib(long pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    (void)snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    (void)fclose(f);
    return kib;
}

int connrate(const char *host, const char *port, double seconds, int rst)
{
    double start = now(), stop_at = start + seconds, elapsed;
    unsigned long long done = 0, slow = 0;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    while (now() < stop_at) {
        double t = now();
        int fd = connect_to(host, port), rc;

        if (fd < 0)
            return 1;
        /* Over loopback a connect takes microseconds; half a second means a
         * SYN sent again after the host dropped one (a full connection-
         * tracking table does that): the figure is then the host's. */
        if (now() - t > SLOW_CONNECT_S)
            slow++;
        rc = timed(fd);
        if (rc == 0)
            rc = one_byte_echo(fd, (unsigned char)done, "connrate");
        if (rc == 0 && rst && setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0) {
            perror("echo-bench: setsockopt");
            rc = -1;
        }
        if (close(fd) < 0 && rc == 0) {
            perror("echo-bench: close");
            rc = -1;
        }
        if (rc < 0)
            return 1;
        done++;
    }
    elapsed = now() - start;
    printf("%s seconds=%.2f connections=%llu per_second=%.0f slow_connects=%llu ok\n",
           rst ? "connrate-rst" : "connrate", elapsed, done, (double)done / elapsed, slow);
    return 0;
}

int hold(const char *host, const char *port, int conns, double seconds, long pid)
{
    int *fds = malloc((size_t)conns * sizeof(*fds)), opened = 0, status = 1;
    double start = now(), up, again;
    long rss = -1;

    if (fds == NULL) {
        perror("echo-bench");
        return 1;
    }
    for (; opened < conns; opened++) {
        /* The server's memory as connections are added: twenty points. */
        if (pid > 0 && opened % (conns / 20 > 0 ? conns / 20 : 1) == 0)
            printf("sample conns=%d server_rss_kib=%ld\n", opened, rss_kib(pid));
        fds[opened] = connect_to(host, port);
        if (fds[opened] < 0 || timed(fds[opened]) < 0 ||
            one_byte_echo(fds[opened], (unsigned char)opened, "hold: a new connection") < 0) {
            fprintf(stderr, "echo-bench: hold: connection %d of %d not served\n", opened + 1, conns);
            if (fds[opened] >= 0)
                opened++;
            goto out;
        }
    }
    up = now() - start;
    if (pid > 0) {
        rss = rss_kib(pid);
        printf("sample conns=%d server_rss_kib=%ld\n", conns, rss);
    }
    {
        struct timespec ts = {.tv_sec = (time_t)seconds,
                              .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    /* Every connection is asked at once, then each answer read: all must
     * echo, and a server that scans every descriptor per wakeup (poll,
     * select) is not charged n wakeups of n descriptors for it. */
    again = now();
    for (int i = 0; i < conns; i++)
        if (send_byte(fds[i], (unsigned char)~i, "hold: a connection after the hold") < 0)
            goto out;
    for (int i = 0; i < conns; i++)
        if (recv_byte(fds[i], (unsigned char)~i, "hold: a connection after the hold") < 0)
            goto out;
    printf("hold conns=%d establish_seconds=%.2f per_second=%.0f server_rss_kib=%ld "
           "echo_again_seconds=%.2f ok\n", conns, up, (double)conns / up, rss, now() - again);
    status = 0;
out:
    for (int i = 0; i < opened; i++)
        (void)close(fds[i]);
    free(fds);
    return status;
}

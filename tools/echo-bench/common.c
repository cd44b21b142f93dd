/* What every mode leans on: the monotonic clock, the pseudo-random pattern
 * whose windows are the bytes sent (so that each one coming back can be
 * checked, and a byte of one connection can never pass for another's), the
 * TCP connect with the options every TCP mode wants, and the descriptor limit
 * raised for --conns. Kept apart so that no mode depends on another. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define PATTERN_SIZE (1u << 20)

static unsigned char pattern[PATTERN_SIZE + CHUNK];

double now(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

unsigned long long now_ns(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* Fills the pattern from a fixed seed: every run sends the same bytes. Only
 * the modes that send it pay for it. */
void pattern_init(void)
{
    unsigned seed = 12345;

    for (size_t i = 0; i < sizeof(pattern); i++) {
        seed = seed * 1103515245u + 12345u;
        pattern[i] = (unsigned char)(seed >> 16);
    }
    /* the tail repeats the head, so any window of CHUNK bytes is contiguous */
    memcpy(pattern + PATTERN_SIZE, pattern, CHUNK);
}

/* The stream of connection i at offset off: a window into one random
 * pattern, shifted per connection so cross-talk between clients shows. */
const unsigned char *stream_at(int i, unsigned long long off)
{
    return pattern + (off + (unsigned long long)i * 7919u) % PATTERN_SIZE;
}

int connect_to(const char *host, const char *port)
{
    struct addrinfo hints = {0}, *res, *ai;
    int fd = -1, one = 1, rc;

    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "echo-bench: %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        (void)close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "echo-bench: cannot connect to %s port %s: %s\n", host, port,
                strerror(errno));
        return -1;
    }
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &(int){1 << 20}, sizeof(int)) < 0) {
        perror("echo-bench: setsockopt");
        (void)close(fd);
        return -1;
    }
    return fd;
}

/* Room for `conns` descriptors and a few more: the soft limit raised, up to
 * the hard one. */
int ensure_nofile(int conns)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)conns + 64;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        perror("echo-bench: getrlimit");
        return -1;
    }
    if (rl.rlim_cur >= want)
        return 0;
    rl.rlim_cur = want;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
        rl.rlim_max = want; /* root may raise it */
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        fprintf(stderr, "echo-bench: %d connections need %llu descriptors: %s (as root: ulimit -Hn %llu)\n",
                conns, (unsigned long long)want, strerror(errno), (unsigned long long)want);
        return -1;
    }
    return 0;
}

/* Adds a socket of the mode's idx-th client to the epoll set, the index as
 * its event data; -1 with a message when it cannot. */
int epoll_watch(int ep, int fd, unsigned events, unsigned idx)
{
    struct epoll_event e = {.events = events, .data.u32 = idx};

    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) {
        perror("echo-bench: epoll_ctl");
        return -1;
    }
    return 0;
}

/* The udp mode: --conns connected UDP sockets, one datagram in flight each,
 * every answer checked byte for byte against the pattern. UDP loses and
 * duplicates, so this mode alone numbers its datagrams, sends them again when
 * unanswered and tells a late copy from a wrong answer. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

#define UDP_TRIES 3
#define UDP_RETRY_NS 1000000000ull

/* A udp socket and its datagram in flight. */
struct probe {
    int fd, tries, done;
    unsigned long long seq;
    unsigned long long first_ns, last_ns; /* its first and latest try */
};

static unsigned char dgram_out[UDP_MAX], dgram_in[65536];

/* A UDP socket connected to the server: the kernel then delivers only what
 * comes from the address and port asked, so an answer from anywhere else is
 * never seen (and ends as lost). The first address of res that takes one. */
static int udp_open(const struct addrinfo *res, const char *host, const char *port)
{
    int fd = -1;

    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            return fd;
        (void)close(fd);
        fd = -1;
    }
    fprintf(stderr, "echo-bench: udp: cannot reach %s port %s: %s\n", host, port, strerror(errno));
    return -1;
}

/* Sends (again) the datagram in flight of socket i: the socket's pattern
 * window at seq * size, its first bytes (8, or all of a shorter one) replaced
 * by seq, little-endian. */
static int udp_send(struct probe *p, int i, size_t size)
{
    size_t k = size < 8 ? size : 8;
    unsigned long long t;
    ssize_t n;

    memcpy(dgram_out, stream_at(i, p->seq * size), size);
    for (size_t b = 0; b < k; b++)
        dgram_out[b] = (unsigned char)(p->seq >> (8 * b));
    t = now_ns();
    do /* blocking: a UDP send waits at most for room in our own buffer */
        n = send(p->fd, dgram_out, size, 0);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)size) {
        fprintf(stderr, "echo-bench: udp socket %d: send: %s\n", i,
                n < 0 ? (errno == ECONNREFUSED ? "port unreachable: no UDP echo there" : strerror(errno))
                      : "datagram cut");
        return -1;
    }
    if (p->tries++ == 0)
        p->first_ns = t;
    p->last_ns = t;
    return 0;
}

/* Reads every answer waiting on socket i. The answer to the datagram in
 * flight is a round trip, and the next datagram goes unless time is up; a
 * copy of an answer already taken (the datagram was sent more than once, or
 * the server doubled it) is counted late. Anything else is wrong: -1. */
static int udp_readable(struct probe *p, int i, size_t size, int time_up, unsigned long long *rounds,
                        unsigned long long *late)
{
    size_t k = size < 8 ? size : 8;
    unsigned long long mask = k == 8 ? ~0ull : (1ull << (8 * k)) - 1;

    for (;;) {
        /* MSG_TRUNC: the datagram's own length, even past the buffer */
        ssize_t n = recv(p->fd, dgram_in, sizeof(dgram_in), MSG_DONTWAIT | MSG_TRUNC);
        unsigned long long got = 0, back;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            fprintf(stderr, "echo-bench: udp socket %d: %s\n", i,
                    errno == ECONNREFUSED ? "port unreachable: no UDP echo there" : strerror(errno));
            return -1;
        }
        if ((size_t)n != size) {
            fprintf(stderr, "echo-bench: udp socket %d: wrong answer: %zd bytes to a datagram of %zu\n", i,
                    n, size);
            return -1;
        }
        for (size_t b = 0; b < k; b++)
            got |= (unsigned long long)dgram_in[b] << (8 * b);
        /* how many datagrams back it answers (a short datagram's sequence
         * number wraps: the nearest one at or before seq) */
        back = (p->seq - got) & mask;
        if (back > p->seq ||
            memcmp(dgram_in + k, stream_at(i, (p->seq - back) * size) + k, size - k) != 0) {
            fprintf(stderr, "echo-bench: udp socket %d: wrong bytes in an answer (datagram %llu in flight)\n",
                    i, p->seq);
            return -1;
        }
        if (back > 0 || p->done) {
            (*late)++;
            continue;
        }
        hist_record(now_ns() - p->first_ns);
        (*rounds)++;
        if (time_up) {
            p->done = 1;
            continue;
        }
        p->seq++;
        p->tries = 0;
        if (udp_send(p, i, size) < 0)
            return -1;
    }
}

int udp(const char *host, const char *port, int conns, double seconds, size_t size)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
    struct probe *pr = calloc((size_t)conns, sizeof(*pr));
    int ep = -1, status = 1, open = conns, rc;
    unsigned long long rounds = 0, lost = 0, late = 0;
    double start, stop_at, next_scan;

    if (pr == NULL) {
        perror("echo-bench");
        return 1;
    }
    for (int i = 0; i < conns; i++)
        pr[i].fd = -1;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "echo-bench: %s: %s\n", host, gai_strerror(rc));
        res = NULL;
        goto out;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("echo-bench: epoll_create1");
        goto out;
    }
    for (int i = 0; i < conns; i++) {
        pr[i].fd = udp_open(res, host, port);
        if (pr[i].fd < 0 || epoll_watch(ep, pr[i].fd, EPOLLIN, (unsigned)i) < 0)
            goto out;
    }
    start = now();
    stop_at = start + seconds;
    next_scan = start + 0.1;
    for (int i = 0; i < conns; i++)
        if (udp_send(&pr[i], i, size) < 0)
            goto out;
    while (open > 0) {
        struct epoll_event ev[64];
        int n = epoll_wait(ep, ev, 64, 100);
        double t = now();

        if (n < 0 && errno != EINTR) {
            perror("echo-bench: epoll_wait");
            goto out;
        }
        for (int k = 0; k < n; k++) {
            int i = (int)ev[k].data.u32, was_done = pr[i].done;

            if (udp_readable(&pr[i], i, size, t >= stop_at, &rounds, &late) < 0)
                goto out;
            open -= pr[i].done && !was_done;
        }
        if (t >= next_scan) {
            /* every tenth of a second: a try is given up within 1.0 to 1.1 s,
             * without a timer per datagram */
            unsigned long long t_ns = now_ns();

            for (int i = 0; i < conns; i++) {
                struct probe *p = &pr[i];

                if (p->done || t_ns - p->last_ns < UDP_RETRY_NS)
                    continue;
                if (p->tries >= UDP_TRIES) {
                    fprintf(stderr, "echo-bench: udp socket %d: no answer to datagram %llu in %d tries, 1 s apart\n",
                            i, p->seq, UDP_TRIES);
                    goto out;
                }
                lost++;
                if (udp_send(p, i, size) < 0)
                    goto out;
            }
            next_scan = t + 0.1;
        }
        if (t > stop_at + GRACE_S) {
            fprintf(stderr, "echo-bench: udp: the server did not answer within %d s\n", GRACE_S);
            goto out;
        }
    }
    {
        double elapsed = now() - start;

        printf("udp conns=%d size=%zu seconds=%.2f round_trips=%llu per_second=%.0f", conns, size, elapsed,
               rounds, (double)rounds / elapsed);
        print_latency();
        printf(" lost=%llu late=%llu ok\n", lost, late);
    }
    status = 0;
out:
    for (int i = 0; i < conns; i++)
        if (pr[i].fd >= 0)
            (void)close(pr[i].fd);
    free(pr);
    if (res != NULL)
        freeaddrinfo(res);
    if (ep >= 0)
        (void)close(ep);
    return status;
}

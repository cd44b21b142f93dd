/* The stream and pingpong modes: --conns TCP connections driven by one epoll
 * loop, each sending its window of the pattern and checking every byte that
 * comes back. The two differ only in how much each connection may have in
 * flight (a bounded stream, or one --size message), so they share the loop
 * and the per-connection state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

struct client {
    int fd;
    unsigned long long sent, received; /* stream offsets */
    unsigned long long msg_end;        /* pingpong: where the message in flight ends */
    unsigned long long msg_start_ns;   /* pingpong: when it went */
    unsigned long long rounds;         /* pingpong: messages back whole */
    int done_writing, closed;
};

static int watch(int ep, struct client *c, int idx)
{
    struct epoll_event e = {.data.u32 = (unsigned)idx};

    e.events = EPOLLIN | (c->done_writing ? 0 : EPOLLOUT);
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Returns 0 while fine, -1 on a mismatch or an error. */
static int on_readable(struct client *c, int idx, int pingpong)
{
    unsigned char buf[CHUNK];
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (n == 0) {
        c->closed = 1;
        return c->received == c->sent ? 0 : -1;
    }
    if (c->received + (unsigned long long)n > c->sent ||
        memcmp(buf, stream_at(idx, c->received), (size_t)n) != 0) {
        fprintf(stderr, "echo-bench: connection %d: wrong bytes near offset %llu\n", idx,
                c->received);
        return -1;
    }
    c->received += (unsigned long long)n;
    /* never past msg_end: nothing beyond it was sent */
    if (pingpong && c->received == c->msg_end) {
        hist_record(now_ns() - c->msg_start_ns);
        c->rounds++;
    }
    return 0;
}

static int on_writable(struct client *c, int idx, int pingpong, size_t size)
{
    size_t len = CHUNK;
    ssize_t n;

    if (pingpong) {
        if (c->received == c->msg_end) { /* back whole: the next message */
            c->msg_end = c->sent + size;
            c->msg_start_ns = now_ns();
        }
        if (c->sent == c->msg_end)
            return 0; /* one message in flight */
        len = (size_t)(c->msg_end - c->sent); /* the rest of a short send */
    } else if (c->sent - c->received > 4u * CHUNK) {
        return 0; /* keep the amount in flight bounded */
    }
    n = send(c->fd, stream_at(idx, c->sent), len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    c->sent += (unsigned long long)n;
    return 0;
}

int stream(const char *host, const char *port, int conns, double seconds, int pingpong, size_t size)
{
    struct client *cl = calloc((size_t)conns, sizeof(*cl));
    int ep = epoll_create1(0), status = 1;
    double start, stop_at, elapsed;
    unsigned long long total = 0, rounds = 0;

    if (cl == NULL || ep < 0) {
        perror("echo-bench");
        goto out;
    }
    for (int i = 0; i < conns; i++) {
        cl[i].fd = connect_to(host, port);
        if (cl[i].fd < 0 || epoll_watch(ep, cl[i].fd, EPOLLIN | EPOLLOUT, (unsigned)i) < 0)
            goto out;
    }

    start = now();
    stop_at = start + seconds;
    for (int open = conns; open > 0;) {
        struct epoll_event ev[64];
        int n = epoll_wait(ep, ev, 64, 1000);
        double t = now();

        if (n < 0 && errno != EINTR) {
            perror("echo-bench: epoll_wait");
            goto out;
        }
        if (t > stop_at + GRACE_S) {
            fprintf(stderr, "echo-bench: the server did not finish the echo within %d s\n", GRACE_S);
            goto out;
        }
        for (int k = 0; k < n; k++) {
            int i = (int)ev[k].data.u32;
            struct client *c = &cl[i];

            if ((ev[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && on_readable(c, i, pingpong) < 0)
                goto out;
            if (c->closed) {
                open--;
                if (epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL) < 0) {
                    perror("echo-bench: epoll_ctl");
                    goto out;
                }
                continue;
            }
            if (!c->done_writing && t >= stop_at && (!pingpong || c->received == c->msg_end)) {
                /* time is up: half-close and collect what is still owed */
                c->done_writing = 1;
                if (shutdown(c->fd, SHUT_WR) < 0 || watch(ep, c, i) < 0) {
                    perror("echo-bench: shutdown");
                    goto out;
                }
            } else if (!c->done_writing && on_writable(c, i, pingpong, size) < 0) {
                fprintf(stderr, "echo-bench: connection %d: send: %s\n", i, strerror(errno));
                goto out;
            }
        }
    }
    elapsed = now() - start;
    for (int i = 0; i < conns; i++) {
        total += cl[i].received;
        rounds += cl[i].rounds;
    }
    if (pingpong) {
        printf("pingpong conns=%d size=%zu seconds=%.2f round_trips=%llu per_second=%.0f", conns, size,
               elapsed, rounds, (double)rounds / elapsed);
        print_latency();
        printf(" samples=%llu ok\n", hist_samples());
    } else {
        printf("stream conns=%d seconds=%.2f echoed_bytes=%llu MiB_per_second=%.1f ok\n", conns,
               elapsed, total, (double)total / elapsed / (1 << 20));
    }
    status = 0;
out:
    for (int i = 0; cl != NULL && i < conns; i++)
        if (cl[i].fd > 0)
            (void)close(cl[i].fd);
    free(cl);
    if (ep >= 0)
        (void)close(ep);
    return status;
}

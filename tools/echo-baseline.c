/* echo-baseline - the bench's yardstick: a minimal TCP echo server on
 * level-triggered epoll, written as a textbook writes one, sharing no code
 * with impl/. `echoconf bench` and the CI's ratio guard measure the reference
 * servers against it: a reference server slower than this has lost its way.
 *
 *   echo-baseline --port N [--host ADDR]
 *
 * Per connection one 64 KiB buffer, the size the reference servers read:
 * read when it is empty, write it back, and while a write is short wait for
 * EPOLLOUT instead of reading more (the client's unread echo pushes back on
 * its sending). After the client's half-close what is owed is written, then
 * the connection closed. It prints `listening ADDR PORT` when ready, as the
 * reference servers do. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (64 * 1024)

struct conn {
    int fd;
    unsigned watching; /* EPOLLIN or EPOLLOUT: what epoll reports for it now */
    size_t len, off;   /* bytes in buf, bytes of them written */
    char buf[BUF];
};

static int listen_on(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    int fd, one = 1, rc = getaddrinfo(host, port, &hints, &res);

    if (rc != 0) {
        fprintf(stderr, "echo-baseline: %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
        perror("echo-baseline: listen");
        if (fd >= 0)
            (void)close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static void drop(struct conn *c)
{
    (void)close(c->fd); /* closing removes it from the epoll set */
    free(c);
}

static int watch(int ep, struct conn *c, unsigned events)
{
    struct epoll_event e = {.events = events, .data.ptr = c};

    if (c->watching == events)
        return 0;
    c->watching = events;
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Moves bytes until the socket would block; -1 when the connection is done:
 * the client's EOF is read only once all it sent was written back, so then
 * nothing is owed. */
static int serve(int ep, struct conn *c)
{
    for (;;) {
        if (c->off < c->len) {
            ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);

            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return watch(ep, c, EPOLLOUT);
            if (n < 0)
                return -1;
            c->off += (size_t)n;
            continue;
        }
        c->len = c->off = 0;
        ssize_t n = recv(c->fd, c->buf, BUF, 0);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return watch(ep, c, EPOLLIN);
        if (n <= 0)
            return -1;
        c->len = (size_t)n;
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port = NULL;
    struct epoll_event ev[256], e = {.events = EPOLLIN};
    int lfd, ep;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            port = argv[i + 1];
        else if (strcmp(argv[i], "--host") == 0)
            host = argv[i + 1];
    }
    if (port == NULL || argc % 2 == 0) {
        fprintf(stderr, "usage: echo-baseline --port N [--host ADDR]\n");
        return 2;
    }
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR || (lfd = listen_on(host, port)) < 0)
        return 1;
    ep = epoll_create1(0);
    e.data.ptr = NULL; /* the listener */
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e) < 0) {
        perror("echo-baseline: epoll");
        return 1;
    }
    printf("listening %s %s\n", host, port);
    if (fflush(stdout) != 0)
        return 1;
    for (;;) {
        int n = epoll_wait(ep, ev, 256, -1);

        if (n < 0 && errno != EINTR) {
            perror("echo-baseline: epoll_wait");
            return 1;
        }
        for (int k = 0; k < n; k++) {
            struct conn *c = ev[k].data.ptr;

            if (c == NULL) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);

                if (fd < 0)
                    continue; /* out of descriptors it spins: a yardstick for speed, not a model */
                c = malloc(sizeof(*c)); /* buf is written before it is read */
                e.events = EPOLLIN;
                e.data.ptr = c;
                if (c == NULL || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) {
                    (void)close(fd);
                    free(c);
                    continue;
                }
                c->fd = fd;
                c->len = c->off = 0;
                c->watching = EPOLLIN;
                continue;
            }
            if (serve(ep, c) < 0)
                drop(c);
        }
    }
}

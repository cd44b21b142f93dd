/* The oneway mode: the loopback ceiling the echo figures are read against,
 * with no server at all. A forked sink on the loopback reads and discards
 * what --conns connections stream to it, and its byte count, reported through
 * a pipe, must equal what was sent, so that even the ceiling is a checked
 * figure. Apart from the other modes because it alone listens and forks. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

/* A listener on the loopback, IPv6 or IPv4, on a free port (its number in
 * port). Non-blocking: the sink accepts only when epoll says so, and a
 * connection reset in between must not block it. */
static int loopback_listener(int v6, char *port, size_t len)
{
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } a;
    socklen_t alen = v6 ? sizeof(a.in6) : sizeof(a.in);
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        perror("echo-bench: oneway: socket");
        return -1;
    }
    memset(&a, 0, sizeof(a));
    if (v6) {
        a.in6.sin6_family = AF_INET6;
        a.in6.sin6_addr = in6addr_loopback;
    } else {
        a.in.sin_family = AF_INET;
        a.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    if (bind(fd, &a.sa, alen) < 0 || listen(fd, SOMAXCONN) < 0 || getsockname(fd, &a.sa, &alen) < 0) {
        fprintf(stderr, "echo-bench: oneway: a listener on %s: %s\n", v6 ? "::1" : "127.0.0.1",
                strerror(errno));
        (void)close(fd);
        return -1;
    }
    (void)snprintf(port, len, "%u", (unsigned)ntohs(v6 ? a.in6.sin6_port : a.in.sin_port));
    return fd;
}

/* The child of oneway: accepts `conns` connections on lfd, reads each to its
 * EOF and discards it, then writes the byte count to `report`. Dies with the
 * parent, whatever becomes of it. */
static _Noreturn void sink(int lfd, int conns, int report, pid_t parent)
{
    static unsigned char buf[1 << 18];
    unsigned long long total = 0;
    int ep, accepted = 0, open = 0;
    struct epoll_event e = {.events = EPOLLIN, .data.fd = lfd};

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
        perror("echo-bench: oneway sink: prctl");
        _exit(1);
    }
    if (getppid() != parent)
        _exit(1); /* the parent was gone before the line above: no signal will come */
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e) < 0) {
        perror("echo-bench: oneway sink: epoll");
        _exit(1);
    }
    while (accepted < conns || open > 0) {
        struct epoll_event ev[64];
        int n = epoll_wait(ep, ev, 64, -1);

        if (n < 0 && errno != EINTR) {
            perror("echo-bench: oneway sink: epoll_wait");
            _exit(1);
        }
        for (int k = 0; k < n; k++) {
            int fd = ev[k].data.fd;
            ssize_t r;

            if (fd == lfd) {
                fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                    if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                        continue;
                    perror("echo-bench: oneway sink: accept");
                    _exit(1);
                }
                e.data.fd = fd;
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) {
                    perror("echo-bench: oneway sink: epoll_ctl");
                    _exit(1);
                }
                open++;
                if (++accepted == conns) { /* closing it leaves the epoll set too */
                    if (close(lfd) < 0) {
                        perror("echo-bench: oneway sink: close");
                        _exit(1);
                    }
                    lfd = -1;
                }
                continue;
            }
            r = read(fd, buf, sizeof(buf));
            if (r > 0) {
                total += (unsigned long long)r;
            } else if (r == 0) {
                if (close(fd) < 0) {
                    perror("echo-bench: oneway sink: close");
                    _exit(1);
                }
                open--;
            } else if (errno != EAGAIN && errno != EINTR) {
                perror("echo-bench: oneway sink: read");
                _exit(1);
            }
        }
    }
    if (write(report, &total, sizeof(total)) != (ssize_t)sizeof(total)) {
        perror("echo-bench: oneway sink: write");
        _exit(1);
    }
    _exit(0);
}

/* The sink's byte count, waited for up to GRACE_S; -1 with a message when it
 * does not come. */
static int sink_report(int fd, unsigned long long *total)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    double give_up = now() + GRACE_S;
    ssize_t n;
    int rc;

    do {
        int left = (int)((give_up - now()) * 1000);

        rc = poll(&p, 1, left > 0 ? left : 0);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        perror("echo-bench: oneway: poll");
        return -1;
    }
    if (rc == 0) {
        fprintf(stderr, "echo-bench: oneway: the sink did not finish within %d s\n", GRACE_S);
        return -1;
    }
    do
        n = read(fd, total, sizeof(*total));
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(*total)) {
        fprintf(stderr, "echo-bench: oneway: the sink ended without a count%s%s\n",
                n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
        return -1;
    }
    return 0;
}

int oneway(const char *host, int conns, double seconds)
{
    struct in6_addr v6addr;
    int v6 = inet_pton(AF_INET6, host, &v6addr) == 1, lfd, report[2] = {-1, -1}, ep = -1,
        status = 1, *fds = NULL, ws;
    unsigned long long *sent = NULL, total = 0, got;
    double start, stop_at, elapsed;
    pid_t child = -1, parent = getpid();
    char port[16];

    lfd = loopback_listener(v6, port, sizeof(port));
    if (lfd < 0)
        return 1;
    fds = malloc((size_t)conns * sizeof(*fds));
    sent = calloc((size_t)conns, sizeof(*sent));
    if (fds == NULL || sent == NULL) {
        perror("echo-bench");
        goto out;
    }
    for (int i = 0; i < conns; i++)
        fds[i] = -1;
    if (pipe(report) < 0) {
        perror("echo-bench: oneway: pipe");
        goto out;
    }
    if (fflush(stdout) == EOF) { /* or the child's exit would print it twice */
        perror("echo-bench: stdout");
        goto out;
    }
    child = fork();
    if (child < 0) {
        perror("echo-bench: oneway: fork");
        goto out;
    }
    if (child == 0) {
        (void)close(report[0]);
        sink(lfd, conns, report[1], parent);
    }
    /* The child holds the listener and the only write end: its death shows as
     * refused connections and an EOF on the report. */
    (void)close(lfd);
    lfd = -1;
    (void)close(report[1]);
    report[1] = -1;

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("echo-bench: epoll_create1");
        goto out;
    }
    for (int i = 0; i < conns; i++) {
        fds[i] = connect_to(v6 ? "::1" : "127.0.0.1", port);
        if (fds[i] < 0 || epoll_watch(ep, fds[i], EPOLLOUT, (unsigned)i) < 0)
            goto out;
    }
    start = now();
    stop_at = start + seconds;
    while (now() < stop_at) {
        struct epoll_event ev[64];
        int n = epoll_wait(ep, ev, 64, 100);

        if (n < 0 && errno != EINTR) {
            perror("echo-bench: epoll_wait");
            goto out;
        }
        for (int k = 0; k < n; k++) {
            int i = (int)ev[k].data.u32;
            ssize_t w = send(fds[i], stream_at(i, sent[i]), CHUNK, MSG_DONTWAIT | MSG_NOSIGNAL);

            if (w < 0 && errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "echo-bench: oneway: connection %d: send: %s\n", i, strerror(errno));
                goto out;
            }
            if (w > 0)
                sent[i] += (unsigned long long)w;
        }
    }
    for (int i = 0; i < conns; i++) {
        if (shutdown(fds[i], SHUT_WR) < 0) {
            perror("echo-bench: oneway: shutdown");
            goto out;
        }
        total += sent[i];
    }
    if (sink_report(report[0], &got) < 0)
        goto out;
    elapsed = now() - start; /* until the sink has read the last byte */
    while (waitpid(child, &ws, 0) < 0) {
        if (errno != EINTR) {
            perror("echo-bench: oneway: waitpid");
            goto out;
        }
    }
    child = -1;
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
        fprintf(stderr, "echo-bench: oneway: the sink failed\n");
        goto out;
    }
    if (got != total) {
        fprintf(stderr, "echo-bench: oneway: the sink received %llu bytes of the %llu sent\n", got,
                total);
        goto out;
    }
    printf("oneway conns=%d seconds=%.2f bytes=%llu MiB_per_second=%.1f ok\n", conns, elapsed, total,
           (double)total / elapsed / (1 << 20));
    status = 0;
out:
    if (child > 0) {
        (void)kill(child, SIGKILL);
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    for (int i = 0; fds != NULL && i < conns; i++)
        if (fds[i] >= 0)
            (void)close(fds[i]);
    free(fds);
    free(sent);
    if (ep >= 0)
        (void)close(ep);
    if (lfd >= 0)
        (void)close(lfd);
    for (int i = 0; i < 2; i++)
        if (report[i] >= 0)
            (void)close(report[i]);
    return status;
}

/* echo-epoll - the event loop (loop.c) on epoll, level-triggered.
 *
 * Level-triggered on purpose: the loop reads at most one buffer per wakeup
 * to stay fair between clients, and edge-triggered readiness would then be
 * lost for whatever is left in the socket. */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

const char echo_server_name[] = "echo-epoll";

struct be_state {
    int epfd;
    struct epoll_event out[ECHO_LOOP_EVENTS];
};

int be_fd_ok(int fd)
{
    return fd >= 0;
}

int be_create(struct be_state **be, char *err)
{
    struct be_state *s = malloc(sizeof(*s));

    if (s == NULL) {
        echo_set_error(err, "out of memory");
        return ECHO_ERR;
    }
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        echo_set_error(err, "epoll_create1: %s", strerror(errno));
        free(s);
        return ECHO_ERR;
    }
    *be = s;
    return ECHO_OK;
}

void be_free(struct be_state *be)
{
    (void)close(be->epfd);
    free(be);
}

int be_watch(struct be_state *be, int fd, unsigned had, unsigned want)
{
    struct epoll_event e = {0};
    int op;

    if (had == 0 && want == 0)
        return ECHO_OK;
    op = had == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    e.events = ((want & ECHO_READ) ? EPOLLIN : 0) | ((want & ECHO_WRITE) ? EPOLLOUT : 0);
    e.data.fd = fd;
    return epoll_ctl(be->epfd, op, fd, &e) < 0 ? ECHO_ERR : ECHO_OK;
}

int be_wait(struct be_state *be, struct be_event *ev, int max, int timeout_ms)
{
    int n;

    if (max > ECHO_LOOP_EVENTS)
        max = ECHO_LOOP_EVENTS;
    /* EINTR (a stop/continue, a debugger) is not an error: zero events. */
    n = epoll_wait(be->epfd, be->out, max, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : ECHO_ERR;
    for (int i = 0; i < n; i++) {
        uint32_t r = be->out[i].events;

        ev[i].fd = be->out[i].data.fd;
        if (r & (EPOLLHUP | EPOLLERR))
            ev[i].ready = ECHO_READ | ECHO_WRITE;
        else
            ev[i].ready = ((r & EPOLLIN) ? ECHO_READ : 0) | ((r & EPOLLOUT) ? ECHO_WRITE : 0);
    }
    return n;
}

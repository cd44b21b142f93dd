/* echo-select - the event loop (loop.c) on select().
 *
 * select() can only watch descriptors below FD_SETSIZE; FD_SET past it
 * writes outside the fd_set. Such connections are closed at once (be_fd_ok)
 * and the others keep being served. */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/select.h>

const char echo_server_name[] = "echo-select";

struct be_state {
    fd_set rd, wr; /* what each descriptor waits for */
    int maxfd;     /* highest watched descriptor, -1 when none */
    int cursor;    /* where the next scan starts, so no fd is starved */
};

int be_fd_ok(int fd)
{
    return fd >= 0 && fd < FD_SETSIZE;
}

int be_create(struct be_state **be, char *err)
{
    struct be_state *s = malloc(sizeof(*s));

    if (s == NULL) {
        echo_set_error(err, "out of memory");
        return ECHO_ERR;
    }
    FD_ZERO(&s->rd);
    FD_ZERO(&s->wr);
    s->maxfd = -1;
    s->cursor = 0;
    *be = s;
    return ECHO_OK;
}

void be_free(struct be_state *be)
{
    free(be);
}

int be_watch(struct be_state *be, int fd, unsigned had, unsigned want)
{
    (void)had;
    if (!be_fd_ok(fd)) {
        errno = EBADF;
        return ECHO_ERR;
    }
    FD_CLR(fd, &be->rd);
    FD_CLR(fd, &be->wr);
    if (want & ECHO_READ)
        FD_SET(fd, &be->rd);
    if (want & ECHO_WRITE)
        FD_SET(fd, &be->wr);
    if (want != 0 && fd > be->maxfd)
        be->maxfd = fd;
    while (be->maxfd >= 0 && !FD_ISSET(be->maxfd, &be->rd) &&
           !FD_ISSET(be->maxfd, &be->wr))
        be->maxfd--;
    return ECHO_OK;
}

int be_wait(struct be_state *be, struct be_event *ev, int max, int timeout_ms)
{
    fd_set rd = be->rd, wr = be->wr;
    struct timeval tv, *tvp = NULL;
    int n, count = 0, span = be->maxfd + 1;

    if (timeout_ms >= 0) {
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        tvp = &tv;
    }
    n = select(span, &rd, &wr, NULL, tvp);
    if (n < 0)
        return errno == EINTR ? 0 : ECHO_ERR;
    for (int i = 0; i < span && count < max && n > 0; i++) {
        int fd = (be->cursor + i) % span;
        unsigned ready = (FD_ISSET(fd, &rd) ? ECHO_READ : 0) |
                         (FD_ISSET(fd, &wr) ? ECHO_WRITE : 0);

        if (ready != 0) {
            ev[count].fd = fd;
            ev[count].ready = ready;
            count++;
            n--;
            be->cursor = fd + 1;
        }
    }
    return count;
}

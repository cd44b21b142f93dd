/* echo-poll - the event loop (loop.c) on poll().
 *
 * The pollfd array is kept dense: a descriptor that stops being watched is
 * replaced by the last entry, and slot[] maps each descriptor to its entry. */
#include "loop.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

const char echo_server_name[] = "echo-poll";

struct be_state {
    struct pollfd *fds;
    size_t nfds, cap;
    int *slot; /* slot[fd]: index in fds, -1 when not watched */
    size_t slot_len;
    size_t cursor; /* where the next scan starts, so no fd is starved */
};

int be_fd_ok(int fd)
{
    return fd >= 0;
}

int be_create(struct be_state **be, char *err)
{
    struct be_state *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        echo_set_error(err, "out of memory");
        return ECHO_ERR;
    }
    *be = s;
    return ECHO_OK;
}

void be_free(struct be_state *be)
{
    free(be->fds);
    free(be->slot);
    free(be);
}

static int grow(struct be_state *be, int fd)
{
    if (be->nfds == be->cap) {
        size_t cap = be->cap ? be->cap * 2 : 64;
        struct pollfd *p = realloc(be->fds, cap * sizeof(*p));

        if (p == NULL)
            return ECHO_ERR;
        be->fds = p;
        be->cap = cap;
    }
    if ((size_t)fd >= be->slot_len) {
        size_t len = be->slot_len ? be->slot_len : 64;
        int *p;

        while (len <= (size_t)fd)
            len *= 2;
        p = realloc(be->slot, len * sizeof(*p));
        if (p == NULL)
            return ECHO_ERR;
        memset(p + be->slot_len, 0xff, (len - be->slot_len) * sizeof(*p));
        be->slot = p;
        be->slot_len = len;
    }
    return ECHO_OK;
}

static short poll_events(unsigned want)
{
    return (short)(((want & ECHO_READ) ? POLLIN : 0) | ((want & ECHO_WRITE) ? POLLOUT : 0));
}

int be_watch(struct be_state *be, int fd, unsigned had, unsigned want)
{
    if (had == 0) {
        if (want == 0)
            return ECHO_OK;
        if (grow(be, fd) != ECHO_OK) {
            errno = ENOMEM;
            return ECHO_ERR;
        }
        be->slot[fd] = (int)be->nfds;
        be->fds[be->nfds].fd = fd;
        be->fds[be->nfds].events = poll_events(want);
        be->fds[be->nfds].revents = 0;
        be->nfds++;
    } else if (want != 0) {
        be->fds[be->slot[fd]].events = poll_events(want);
    } else {
        size_t i = (size_t)be->slot[fd];

        be->fds[i] = be->fds[--be->nfds];
        be->slot[be->fds[i].fd] = (int)i;
        be->slot[fd] = -1;
    }
    return ECHO_OK;
}

int be_wait(struct be_state *be, struct be_event *ev, int max, int timeout_ms)
{
    int n = poll(be->fds, be->nfds, timeout_ms), count = 0;

    if (n < 0)
        return errno == EINTR ? 0 : ECHO_ERR;
    for (size_t i = 0; i < be->nfds && count < max && n > 0; i++) {
        size_t at = (be->cursor + i) % be->nfds;
        short r = be->fds[at].revents;

        if (r == 0)
            continue;
        n--;
        ev[count].fd = be->fds[at].fd;
        /* Hang-up and error surface on the next read or write. */
        if (r & (POLLHUP | POLLERR | POLLNVAL))
            ev[count].ready = ECHO_READ | ECHO_WRITE;
        else
            ev[count].ready = ((r & POLLIN) ? ECHO_READ : 0) | ((r & POLLOUT) ? ECHO_WRITE : 0);
        count++;
        be->cursor = at + 1;
    }
    return count;
}

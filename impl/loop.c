/* loop.c - the event loop of echo-select, echo-poll and echo-epoll.
 *
 * Level-triggered: a connection is watched for reading while its buffer has
 * room and the client has not finished, and for writing while it owes bytes.
 * So a client that does not read stops being read (backpressure), and one
 * slow client never holds up another. */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail with a valid clock id and pointer */
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int echo_loop_init(struct echo_loop *l, int listen_fd, unsigned max_conns, char *err)
{
    memset(l, 0, sizeof(*l));
    l->acceptor.listen_fd = -1;
    l->acceptor.reserve_fd = -1;
    l->max_conns = max_conns;
    if (listen_fd != -1 && !be_fd_ok(listen_fd)) {
        echo_set_error(err, "listener descriptor %d is beyond what %s can watch",
                       listen_fd, echo_server_name);
        return ECHO_ERR;
    }
    if (be_create(&l->be, err) != ECHO_OK)
        return ECHO_ERR;
    if (listen_fd == -1)
        return ECHO_OK; /* UDP only: nothing to accept */
    if (echo_acceptor_init(&l->acceptor, listen_fd, err) != ECHO_OK)
        goto fail;
    if (be_watch(l->be, listen_fd, 0, ECHO_READ) != ECHO_OK) {
        echo_set_error(err, "watching the listener: %s", strerror(errno));
        goto fail;
    }
    l->listening = 1;
    return ECHO_OK;
fail:
    echo_loop_free(l);
    return ECHO_ERR;
}

int echo_loop_add_udp(struct echo_loop *l, int fd, char *err)
{
    if (!be_fd_ok(fd)) {
        echo_set_error(err, "udp descriptor %d is beyond what %s can watch", fd,
                       echo_server_name);
        return ECHO_ERR;
    }
    l->udp = malloc(sizeof(*l->udp));
    if (l->udp == NULL) {
        echo_set_error(err, "out of memory");
        return ECHO_ERR;
    }
    if (echo_udp_init(l->udp, fd, err) != ECHO_OK)
        goto fail;
    if (be_watch(l->be, fd, 0, ECHO_READ) != ECHO_OK) {
        echo_set_error(err, "watching the udp socket: %s", strerror(errno));
        goto fail;
    }
    l->udp_watched = ECHO_READ;
    return ECHO_OK;
fail:
    free(l->udp);
    l->udp = NULL;
    return ECHO_ERR;
}

static void udp_service(struct echo_loop *l)
{
    unsigned want = echo_udp_service(l->udp);

    /* A failed change leaves the old watch: reading on, or a reply retried
     * once the socket is readable again. Neither loses the socket. */
    if (want != l->udp_watched && be_watch(l->be, l->udp->fd, l->udp_watched, want) == ECHO_OK)
        l->udp_watched = want;
}

void echo_loop_free(struct echo_loop *l)
{
    for (size_t fd = 0; fd < l->by_fd_len; fd++)
        echo_conn_free(l->by_fd[fd]);
    free(l->by_fd);
    l->by_fd = NULL;
    l->by_fd_len = 0;
    l->nconns = 0;
    free(l->udp);
    l->udp = NULL;
    if (l->be != NULL)
        be_free(l->be);
    l->be = NULL;
    echo_acceptor_close(&l->acceptor);
}

static void conn_close(struct echo_loop *l, struct echo_conn *c)
{
    /* A failed unwatch needs no handling: close() below drops the
     * descriptor from every kernel watch list anyway. */
    if (c->watched != 0)
        (void)be_watch(l->be, c->fd, c->watched, 0);
    l->by_fd[c->fd] = NULL;
    l->nconns--;
    echo_conn_free(c);
}

static int conn_add(struct echo_loop *l, int fd)
{
    struct echo_conn *c;

    if ((size_t)fd >= l->by_fd_len) {
        size_t len = l->by_fd_len ? l->by_fd_len : 64;
        struct echo_conn **p;

        while (len <= (size_t)fd)
            len *= 2;
        p = realloc(l->by_fd, len * sizeof(*p));
        if (p == NULL)
            return ECHO_ERR;
        memset(p + l->by_fd_len, 0, (len - l->by_fd_len) * sizeof(*p));
        l->by_fd = p;
        l->by_fd_len = len;
    }
    c = echo_conn_new(fd);
    if (c == NULL)
        return ECHO_ERR;
    if (be_watch(l->be, fd, 0, ECHO_READ) != ECHO_OK) {
        free(c);
        return ECHO_ERR;
    }
    c->watched = ECHO_READ;
    l->by_fd[fd] = c;
    l->nconns++;
    return ECHO_OK;
}

static void pause_accepting(struct echo_loop *l)
{
    if (be_watch(l->be, l->acceptor.listen_fd, ECHO_READ, 0) == ECHO_OK)
        l->listening = 0;
    l->resume_ms = now_ms() + ECHO_ACCEPT_BACKOFF_MS;
}

static void accept_some(struct echo_loop *l)
{
    for (int i = 0; i < ECHO_ACCEPT_BATCH; i++) {
        int fd = echo_accept(&l->acceptor, SOCK_NONBLOCK);

        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (echo_accept_retry(errno))
                continue;
            /* Out of descriptors with the reserve spent, or a listener
             * error: stop watching the listener for a moment rather than
             * spin on it while it stays readable. */
            pause_accepting(l);
            return;
        }
        /* Refused connections are closed at once: the client sees an
         * immediate end instead of waiting in a queue nobody serves. */
        if (l->nconns >= l->max_conns || !be_fd_ok(fd) || conn_add(l, fd) != ECHO_OK)
            (void)close(fd);
    }
}

int echo_loop_step(struct echo_loop *l, int timeout_ms, char *err)
{
    int n, wait = timeout_ms;

    if (!l->listening && l->acceptor.listen_fd >= 0 && now_ms() >= l->resume_ms) {
        if (be_watch(l->be, l->acceptor.listen_fd, 0, ECHO_READ) == ECHO_OK)
            l->listening = 1;
        else
            l->resume_ms = now_ms() + ECHO_ACCEPT_BACKOFF_MS;
    }
    if (!l->listening && l->acceptor.listen_fd >= 0) {
        /* wake up when the back-off ends, unless the caller wants it sooner */
        long long left = l->resume_ms - now_ms();

        if (left < 0)
            left = 0;
        if (wait < 0 || left < wait)
            wait = (int)left;
    }

    n = be_wait(l->be, l->events, ECHO_LOOP_EVENTS, wait);
    if (n < 0) {
        echo_set_error(err, "waiting for events: %s", strerror(errno));
        return ECHO_ERR;
    }
    for (int i = 0; i < n; i++) {
        struct be_event *ev = &l->events[i];
        struct echo_conn *c;
        int want;

        if (ev->fd == l->acceptor.listen_fd) {
            if (l->listening)
                accept_some(l);
            continue;
        }
        if (l->udp != NULL && ev->fd == l->udp->fd) {
            udp_service(l);
            continue;
        }
        /* An earlier event in this batch may have closed the connection. */
        if ((size_t)ev->fd >= l->by_fd_len || (c = l->by_fd[ev->fd]) == NULL)
            continue;
        want = echo_conn_service(c, ev->ready);
        if (want == ECHO_CONN_CLOSE) {
            conn_close(l, c);
        } else if ((unsigned)want != c->watched) {
            if (be_watch(l->be, c->fd, c->watched, (unsigned)want) != ECHO_OK) {
                conn_close(l, c);
                continue;
            }
            c->watched = (unsigned)want;
        }
    }
    return ECHO_OK;
}

int echo_serve(const struct echo_sockets *s, const struct echo_config *cfg, char *err)
{
    struct echo_loop l;

    if (echo_loop_init(&l, s->tcp, cfg->max_conns, err) != ECHO_OK)
        return ECHO_ERR;
    if (s->udp < 0 || echo_loop_add_udp(&l, s->udp, err) == ECHO_OK)
        while (echo_loop_step(&l, -1, err) == ECHO_OK)
            ;
    echo_loop_free(&l);
    return ECHO_ERR;
}

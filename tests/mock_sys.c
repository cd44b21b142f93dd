/* mock_sys.c - the __wrap_X side of the scripted system calls (mock_sys.h).
 *
 * Results come from cmocka's queues (will_return and mock, expect_ and
 * check_expected), filled by the helpers at the bottom. The wait calls
 * (select, poll, epoll_wait) share one script format, so one loop test runs
 * unchanged against the three backends; epoll's interest list is modelled
 * here from the epoll_ctl calls, the way the kernel keeps it. */
#include "mock_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "echo.h"

ssize_t __real_recv(int fd, void *buf, size_t len, int flags);
ssize_t __real_send(int fd, const void *buf, size_t len, int flags);
int __real_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
int __real_close(int fd);
int __real_open(const char *path, int flags, ...);
int __real_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
int __real_poll(struct pollfd *fds, nfds_t n, int timeout);
int __real_select(int n, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv);
int __real_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout);
int __real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __real_epoll_create1(int flags);
int __real_clock_gettime(clockid_t clk, struct timespec *ts);

ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags);
int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
int __wrap_close(int fd);
int __wrap_open(const char *path, int flags, ...);
int __wrap_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
int __wrap_poll(struct pollfd *fds, nfds_t n, int timeout);
int __wrap_select(int n, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv);
int __wrap_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout);
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __wrap_epoll_create1(int flags);
int __wrap_clock_gettime(clockid_t clk, struct timespec *ts);

#define MAX_FAKE 64
#define MAX_WATCH 32

struct fake {
    int fd;
    int open;
    unsigned char *out; /* what send() took */
    size_t outlen, outcap;
};

struct wait_script {
    struct wait_script *next; /* every script of the test, freed at teardown */
    int timeout_ms;
    int err;
    size_t nwatch, nready;
    struct mock_watch watch[MAX_WATCH];
    struct mock_watch ready[MAX_WATCH];
};

struct ep_entry {
    int fd;
    uint32_t events;
    epoll_data_t data;
};

static struct fake fakes[MAX_FAKE];
static size_t nfakes;
static struct wait_script *scripts;
static unsigned open_pending, epoll_create_pending;
static int clock_set;
static long long clock_ms;
static int ep_state; /* 0 never created, 1 open, 2 closed */
static struct ep_entry ep[MAX_FAKE];
static size_t nep;

static struct fake *find_fake(int fd)
{
    for (size_t i = 0; i < nfakes; i++)
        if (fakes[i].fd == fd)
            return &fakes[i];
    return NULL;
}

static int is_fake(int fd)
{
    return find_fake(fd) != NULL || (fd == MOCK_FD_EPOLL && ep_state != 0);
}

/* A fake descriptor comes (back) into use: accept4 or open returned it. */
static void fake_opened(int fd)
{
    struct fake *f = find_fake(fd);

    if (f == NULL) {
        if (nfakes == MAX_FAKE)
            fail_msg("more than %d fake descriptors", MAX_FAKE);
        f = &fakes[nfakes++];
        f->fd = fd;
    } else if (f->open) {
        fail_msg("descriptor %d handed out twice without a close", fd);
    }
    f->open = 1;
}

static struct fake *fake_in_use(int fd, const char *call)
{
    struct fake *f = find_fake(fd);

    if (f == NULL || !f->open)
        fail_msg("%s on descriptor %d, which is closed", call, fd);
    return f;
}

int mock_sys_setup(void **state)
{
    (void)state;
    mock_sys_teardown(NULL);
    return 0;
}

int mock_sys_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < nfakes; i++)
        free(fakes[i].out);
    memset(fakes, 0, sizeof(fakes));
    nfakes = 0;
    while (scripts != NULL) {
        struct wait_script *next = scripts->next;

        free(scripts);
        scripts = next;
    }
    open_pending = 0;
    epoll_create_pending = 0;
    clock_set = 0;
    clock_ms = 0;
    ep_state = 0;
    nep = 0;
    return 0;
}

void mock_fd_fake(int fd)
{
    fake_opened(fd);
}

void mock_sent_clear(int fd)
{
    struct fake *f = find_fake(fd);

    if (f != NULL)
        f->outlen = 0;
}

int mock_fd_is_open(int fd)
{
    struct fake *f = find_fake(fd);

    return f != NULL && f->open;
}

const unsigned char *mock_sent(int fd, size_t *len)
{
    struct fake *f = find_fake(fd);

    *len = f ? f->outlen : 0;
    return f && f->out ? f->out : (const unsigned char *)"";
}

/* ---- recv, send, close, accept4, setsockopt, open ---- */

ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags)
{
    ssize_t ret;
    int err;
    const void *data;

    if (!is_fake(fd))
        return __real_recv(fd, buf, len, flags);
    fake_in_use(fd, "recv");
    check_expected(fd);
    check_expected(len);
    check_expected(flags);
    ret = mock_type(ssize_t);
    err = mock_type(int);
    data = mock_ptr_type(const void *);
    if (ret < 0) {
        errno = err;
        return -1;
    }
    if ((size_t)ret > len)
        fail_msg("recv script returns %zd bytes, the caller offered room for %zu",
                 ret, len);
    if (ret > 0)
        memcpy(buf, data, (size_t)ret);
    return ret;
}

ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags)
{
    struct fake *f;
    ssize_t ret;
    int err;

    if (!is_fake(fd))
        return __real_send(fd, buf, len, flags);
    f = fake_in_use(fd, "send");
    /* Without it a peer that went away kills the whole server with SIGPIPE. */
    if (!(flags & MSG_NOSIGNAL))
        fail_msg("send(%d) without MSG_NOSIGNAL (flags 0x%x)", fd, (unsigned)flags);
    check_expected(fd);
    check_expected(len);
    ret = mock_type(ssize_t);
    err = mock_type(int);
    if (ret < 0) {
        errno = err;
        return -1;
    }
    if ((size_t)ret > len)
        fail_msg("send script takes %zd bytes of %zu", ret, len);
    if (f->outlen + (size_t)ret > f->outcap) {
        size_t cap = f->outcap ? f->outcap : 4096;
        unsigned char *p;

        while (cap < f->outlen + (size_t)ret)
            cap *= 2;
        p = realloc(f->out, cap);
        assert_non_null(p);
        f->out = p;
        f->outcap = cap;
    }
    memcpy(f->out + f->outlen, buf, (size_t)ret);
    f->outlen += (size_t)ret;
    return ret;
}

static void ep_forget(int fd)
{
    for (size_t i = 0; i < nep; i++) {
        if (ep[i].fd == fd) {
            ep[i] = ep[--nep];
            return;
        }
    }
}

int __wrap_close(int fd)
{
    struct fake *f;

    if (fd == MOCK_FD_EPOLL && ep_state == 1) {
        ep_state = 2;
        nep = 0;
        return 0;
    }
    if (!is_fake(fd))
        return __real_close(fd);
    check_expected(fd);
    f = find_fake(fd);
    if (f == NULL || !f->open)
        fail_msg("close(%d) of a descriptor already closed", fd);
    f->open = 0;
    ep_forget(fd); /* the kernel drops a closed descriptor from epoll sets */
    return 0;
}

int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    int ret, err;

    if (!is_fake(fd))
        return __real_accept4(fd, addr, len, flags);
    fake_in_use(fd, "accept4");
    check_expected(fd);
    check_expected(flags);
    ret = mock_type(int);
    err = mock_type(int);
    if (ret < 0) {
        errno = err;
        return -1;
    }
    fake_opened(ret);
    return ret;
}

int __wrap_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    int value, err;

    if (!is_fake(fd))
        return __real_setsockopt(fd, level, name, val, len);
    fake_in_use(fd, "setsockopt");
    assert_int_equal(len, sizeof(int));
    memcpy(&value, val, sizeof(value));
    check_expected(fd);
    check_expected(level);
    check_expected(name);
    check_expected(value);
    err = mock_type(int);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

int __wrap_open(const char *path, int flags, ...)
{
    int ret, err;
    mode_t mode = 0;

    if (flags & O_CREAT) {
        va_list ap;

        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (open_pending == 0)
        return __real_open(path, flags, mode);
    open_pending--;
    check_expected(path);
    check_expected(flags);
    ret = mock_type(int);
    err = mock_type(int);
    if (ret < 0) {
        errno = err;
        return -1;
    }
    fake_opened(ret);
    return ret;
}

/* ---- the wait calls ---- */

static struct wait_script *wait_next(void)
{
    return mock_ptr_type(struct wait_script *);
}

static int by_fd(const void *a, const void *b)
{
    const struct mock_watch *x = a, *y = b;

    return (x->fd > y->fd) - (x->fd < y->fd);
}

static void print_set(const char *what, const struct mock_watch *w, size_t n)
{
    print_error("%s:", what);
    for (size_t i = 0; i < n; i++)
        print_error(" %d%s%s", w[i].fd, (w[i].want & ECHO_READ) ? "R" : "",
                    (w[i].want & ECHO_WRITE) ? "W" : "");
    print_error("\n");
}

/* The wait must be for exactly what the script says, with its timeout. */
static void check_wait(const char *call, const struct wait_script *w, int timeout_ms,
                       struct mock_watch *actual, size_t nactual)
{
    struct mock_watch expect[MAX_WATCH];
    int same = nactual == w->nwatch;

    if (timeout_ms != w->timeout_ms)
        fail_msg("%s with timeout %d ms, expected %d ms", call, timeout_ms, w->timeout_ms);
    memcpy(expect, w->watch, w->nwatch * sizeof(*expect));
    qsort(expect, w->nwatch, sizeof(*expect), by_fd);
    qsort(actual, nactual, sizeof(*actual), by_fd);
    for (size_t i = 0; same && i < nactual; i++)
        same = actual[i].fd == expect[i].fd && actual[i].want == expect[i].want;
    if (!same) {
        print_set("waiting for", actual, nactual);
        print_set("expected   ", expect, w->nwatch);
        fail_msg("%s waits for the wrong descriptors", call);
    }
}

static unsigned watched(const struct mock_watch *set, size_t n, int fd)
{
    for (size_t i = 0; i < n; i++)
        if (set[i].fd == fd)
            return set[i].want;
    fail_msg("readiness scripted for descriptor %d, which is not being waited for", fd);
    return 0;
}

int __wrap_select(int n, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
    struct mock_watch actual[MAX_WATCH];
    size_t nactual = 0;
    const struct wait_script *w;
    int involved = n == 0, timeout_ms = -1, count = 0;

    for (int fd = 0; fd < n; fd++)
        if (is_fake(fd) && ((rd && FD_ISSET(fd, rd)) || (wr && FD_ISSET(fd, wr)) ||
                            (ex && FD_ISSET(fd, ex))))
            involved = 1;
    if (!involved)
        return __real_select(n, rd, wr, ex, tv);
    w = wait_next();
    if (tv != NULL) {
        assert_true(tv->tv_usec >= 0 && tv->tv_usec < 1000000);
        timeout_ms = (int)(tv->tv_sec * 1000 + tv->tv_usec / 1000);
    }
    for (int fd = 0; fd < n; fd++) {
        unsigned want = ((rd && FD_ISSET(fd, rd)) ? ECHO_READ : 0) |
                        ((wr && FD_ISSET(fd, wr)) ? ECHO_WRITE : 0);

        if (ex && FD_ISSET(fd, ex))
            fail_msg("select watches descriptor %d for exceptions", fd);
        if (want != 0) {
            if (nactual == MAX_WATCH)
                fail_msg("select watches more than %d descriptors", MAX_WATCH);
            actual[nactual].fd = fd;
            actual[nactual++].want = want;
        }
    }
    check_wait("select", w, timeout_ms, actual, nactual);
    if (w->err != 0) {
        errno = w->err;
        return -1;
    }
    if (rd)
        FD_ZERO(rd);
    if (wr)
        FD_ZERO(wr);
    for (size_t i = 0; i < w->nready; i++) {
        int fd = w->ready[i].fd;
        unsigned want = watched(actual, nactual, fd);
        /* select has no hang-up: the descriptor turns readable and writable */
        unsigned r = (w->ready[i].want & MOCK_HUP) ? want : w->ready[i].want;

        if ((r & ~want & (ECHO_READ | ECHO_WRITE)) != 0)
            fail_msg("select cannot report %u on descriptor %d waiting for %u", r, fd, want);
        if (r & ECHO_READ) {
            FD_SET(fd, rd);
            count++;
        }
        if (r & ECHO_WRITE) {
            FD_SET(fd, wr);
            count++;
        }
    }
    return count;
}

int __wrap_poll(struct pollfd *fds, nfds_t n, int timeout)
{
    struct mock_watch actual[MAX_WATCH];
    const struct wait_script *w;
    int involved = n == 0, count = 0;

    for (nfds_t i = 0; i < n; i++)
        if (is_fake(fds[i].fd))
            involved = 1;
    if (!involved)
        return __real_poll(fds, n, timeout);
    w = wait_next();
    if (n > MAX_WATCH)
        fail_msg("poll on more than %d descriptors", MAX_WATCH);
    for (nfds_t i = 0; i < n; i++) {
        if (fds[i].events & ~(POLLIN | POLLOUT))
            fail_msg("poll asks for events 0x%x on %d", (unsigned)fds[i].events, fds[i].fd);
        actual[i].fd = fds[i].fd;
        actual[i].want = ((fds[i].events & POLLIN) ? ECHO_READ : 0) |
                         ((fds[i].events & POLLOUT) ? ECHO_WRITE : 0);
    }
    check_wait("poll", w, timeout, actual, (size_t)n);
    if (w->err != 0) {
        errno = w->err;
        return -1;
    }
    for (nfds_t i = 0; i < n; i++)
        fds[i].revents = 0;
    for (size_t k = 0; k < w->nready; k++) {
        unsigned r = w->ready[k].want;
        nfds_t i;

        for (i = 0; i < n && fds[i].fd != w->ready[k].fd; i++)
            ;
        if (i == n)
            fail_msg("readiness scripted for descriptor %d, which poll does not watch",
                     w->ready[k].fd);
        if ((r & ECHO_READ) && !(fds[i].events & POLLIN))
            fail_msg("poll cannot report POLLIN on %d", fds[i].fd);
        if ((r & ECHO_WRITE) && !(fds[i].events & POLLOUT))
            fail_msg("poll cannot report POLLOUT on %d", fds[i].fd);
        if (fds[i].revents == 0)
            count++;
        fds[i].revents = (short)(fds[i].revents | ((r & ECHO_READ) ? POLLIN : 0) |
                                 ((r & ECHO_WRITE) ? POLLOUT : 0) |
                                 ((r & MOCK_HUP) ? POLLHUP : 0));
    }
    return count;
}

int __wrap_epoll_create1(int flags)
{
    if (epoll_create_pending > 0) {
        epoll_create_pending--;
        errno = mock_type(int);
        return -1;
    }
    if (ep_state == 1)
        fail_msg("a second epoll instance while the first is open");
    assert_int_equal(flags, EPOLL_CLOEXEC);
    ep_state = 1;
    nep = 0;
    return MOCK_FD_EPOLL;
}

int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    size_t i;

    if (epfd != MOCK_FD_EPOLL || ep_state == 0)
        return __real_epoll_ctl(epfd, op, fd, ev);
    if (ep_state != 1)
        fail_msg("epoll_ctl on the closed epoll descriptor");
    fake_in_use(fd, "epoll_ctl");
    for (i = 0; i < nep && ep[i].fd != fd; i++)
        ;
    /* Level-triggered only: the loop leaves data in the socket. */
    if (op != EPOLL_CTL_DEL && (ev->events & ~(uint32_t)(EPOLLIN | EPOLLOUT)) != 0)
        fail_msg("epoll_ctl asks for events 0x%x on %d", (unsigned)ev->events, fd);
    switch (op) {
    case EPOLL_CTL_ADD:
        if (i < nep) {
            errno = EEXIST;
            return -1;
        }
        if (nep == MAX_FAKE)
            fail_msg("epoll set full");
        ep[nep].fd = fd;
        ep[nep].events = ev->events;
        ep[nep++].data = ev->data;
        return 0;
    case EPOLL_CTL_MOD:
        if (i == nep) {
            errno = ENOENT;
            return -1;
        }
        ep[i].events = ev->events;
        ep[i].data = ev->data;
        return 0;
    case EPOLL_CTL_DEL:
        if (i == nep) {
            errno = ENOENT;
            return -1;
        }
        ep[i] = ep[--nep];
        return 0;
    default:
        fail_msg("epoll_ctl op %d", op);
        return -1;
    }
}

int __wrap_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
    struct mock_watch actual[MAX_WATCH];
    const struct wait_script *w;

    if (epfd != MOCK_FD_EPOLL || ep_state == 0)
        return __real_epoll_wait(epfd, ev, max, timeout);
    if (ep_state != 1)
        fail_msg("epoll_wait on the closed epoll descriptor");
    w = wait_next();
    if (nep > MAX_WATCH)
        fail_msg("epoll set larger than %d", MAX_WATCH);
    for (size_t i = 0; i < nep; i++) {
        actual[i].fd = ep[i].fd;
        actual[i].want = ((ep[i].events & EPOLLIN) ? ECHO_READ : 0) |
                         ((ep[i].events & EPOLLOUT) ? ECHO_WRITE : 0);
    }
    check_wait("epoll_wait", w, timeout, actual, nep);
    if (w->err != 0) {
        errno = w->err;
        return -1;
    }
    if ((int)w->nready > max)
        fail_msg("%zu events scripted, epoll_wait takes at most %d", w->nready, max);
    for (size_t k = 0; k < w->nready; k++) {
        unsigned r = w->ready[k].want;
        size_t i;

        for (i = 0; i < nep && ep[i].fd != w->ready[k].fd; i++)
            ;
        if (i == nep)
            fail_msg("readiness scripted for descriptor %d, not in the epoll set",
                     w->ready[k].fd);
        if ((r & ECHO_READ) && !(ep[i].events & EPOLLIN))
            fail_msg("epoll cannot report EPOLLIN on %d", ep[i].fd);
        if ((r & ECHO_WRITE) && !(ep[i].events & EPOLLOUT))
            fail_msg("epoll cannot report EPOLLOUT on %d", ep[i].fd);
        ev[k].events = ((r & ECHO_READ) ? (uint32_t)EPOLLIN : 0u) |
                       ((r & ECHO_WRITE) ? (uint32_t)EPOLLOUT : 0u) |
                       ((r & MOCK_HUP) ? (uint32_t)EPOLLHUP : 0u);
        ev[k].data = ep[i].data;
    }
    return (int)w->nready;
}

int __wrap_clock_gettime(clockid_t clk, struct timespec *ts)
{
    if (!clock_set || clk != CLOCK_MONOTONIC)
        return __real_clock_gettime(clk, ts);
    ts->tv_sec = (time_t)(clock_ms / 1000);
    ts->tv_nsec = (long)(clock_ms % 1000) * 1000000L;
    return 0;
}

/* ---- the script helpers ---- */

static void recv_flags_result(int fd, size_t room, int flags, ssize_t ret, int err, const void *data)
{
    expect_value(__wrap_recv, fd, fd);
    if (room == MOCK_ANY_LEN)
        expect_any(__wrap_recv, len);
    else
        expect_value(__wrap_recv, len, room);
    expect_value(__wrap_recv, flags, flags);
    will_return(__wrap_recv, ret);
    will_return(__wrap_recv, err);
    will_return(__wrap_recv, cast_ptr_to_largest_integral_type(data));
}

static void recv_result(int fd, size_t room, ssize_t ret, int err, const void *data)
{
    recv_flags_result(fd, room, 0, ret, err, data);
}

void mock_recv_wait(int fd, ssize_t ret, int err)
{
    static const unsigned char any = 0;

    recv_flags_result(fd, 1, MSG_PEEK, ret, err, ret > 0 ? &any : NULL);
}

void mock_recv_data(int fd, size_t room, const void *data, size_t n)
{
    assert_true(n > 0);
    recv_result(fd, room, (ssize_t)n, 0, data);
}

void mock_recv_error(int fd, size_t room, int err)
{
    recv_result(fd, room, -1, err, NULL);
}

void mock_recv_eof(int fd, size_t room)
{
    recv_result(fd, room, 0, 0, NULL);
}

void mock_send_take(int fd, size_t len, size_t take)
{
    expect_value(__wrap_send, fd, fd);
    expect_value(__wrap_send, len, len);
    will_return(__wrap_send, (ssize_t)take);
    will_return(__wrap_send, 0);
}

void mock_send_error(int fd, size_t len, int err)
{
    expect_value(__wrap_send, fd, fd);
    expect_value(__wrap_send, len, len);
    will_return(__wrap_send, -1);
    will_return(__wrap_send, err);
}

void mock_close(int fd)
{
    expect_value(__wrap_close, fd, fd);
}

static void accept_result(int listen_fd, int flags, int ret, int err)
{
    expect_value(__wrap_accept4, fd, listen_fd);
    expect_value(__wrap_accept4, flags, flags);
    will_return(__wrap_accept4, ret);
    will_return(__wrap_accept4, err);
}

void mock_accept(int listen_fd, int flags, int fd, int nodelay_err)
{
    accept_result(listen_fd, flags, fd, 0);
    expect_value(__wrap_setsockopt, fd, fd);
    expect_value(__wrap_setsockopt, level, IPPROTO_TCP);
    expect_value(__wrap_setsockopt, name, TCP_NODELAY);
    expect_value(__wrap_setsockopt, value, 1);
    will_return(__wrap_setsockopt, nodelay_err);
}

void mock_accept_plain(int listen_fd, int flags, int fd)
{
    accept_result(listen_fd, flags, fd, 0);
}

void mock_accept_error(int listen_fd, int flags, int err)
{
    accept_result(listen_fd, flags, -1, err);
}

void mock_open(const char *path, int flags, int fd, int err)
{
    open_pending++;
    expect_string(__wrap_open, path, path);
    expect_value(__wrap_open, flags, flags);
    will_return(__wrap_open, fd);
    will_return(__wrap_open, err);
}

void mock_epoll_create_error(int err)
{
    epoll_create_pending++;
    will_return(__wrap_epoll_create1, err);
}

int mock_epoll_state(void)
{
    return ep_state;
}

void mock_clock_set_ms(long long ms)
{
    clock_set = 1;
    clock_ms = ms;
}

static void wait_script(int timeout_ms, const struct mock_watch *watch, size_t nwatch,
                        const struct mock_watch *ready, size_t nready, int err)
{
    struct wait_script *w = calloc(1, sizeof(*w));

    assert_non_null(w);
    assert_true(nwatch <= MAX_WATCH && nready <= MAX_WATCH);
    w->next = scripts;
    scripts = w;
    w->timeout_ms = timeout_ms;
    w->err = err;
    w->nwatch = nwatch;
    w->nready = nready;
    if (nwatch > 0)
        memcpy(w->watch, watch, nwatch * sizeof(*watch));
    if (nready > 0)
        memcpy(w->ready, ready, nready * sizeof(*ready));
    will_return(wait_next, cast_ptr_to_largest_integral_type(w));
}

void mock_wait(int timeout_ms, const struct mock_watch *watch, size_t nwatch,
               const struct mock_watch *ready, size_t nready)
{
    wait_script(timeout_ms, watch, nwatch, ready, nready, 0);
}

void mock_wait_error(int timeout_ms, const struct mock_watch *watch, size_t nwatch,
                     int err)
{
    wait_script(timeout_ms, watch, nwatch, NULL, 0, err);
}

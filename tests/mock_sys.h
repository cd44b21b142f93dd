/* mock_sys.h - scripted system calls for the unit tests.
 *
 * The tests link with -Wl,--wrap=recv,send,... so every call the code under
 * test makes lands in a __wrap_X of mock_sys.c. A call about a descriptor the
 * test declared fake (mock_fd_fake, or one a scripted accept4/open returned)
 * takes its result from the cmocka queues the helpers below fill; a call about
 * any other descriptor goes to the real system call.
 *
 * The script is strict: an unscripted call on a fake descriptor, an argument
 * that differs from the expected one, a send without MSG_NOSIGNAL, a second
 * close of the same descriptor or a scripted result left unused fails the
 * test. */
#ifndef MOCK_SYS_H
#define MOCK_SYS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h>

/* Fake descriptors sit well above whatever the test process really has open
 * and below FD_SETSIZE, so the select backend can watch them. */
#define MOCK_FD_LISTEN 500
#define MOCK_FD_RESERVE 501
#define MOCK_FD_CLIENT 510 /* first client; the next ones are 511, 512, ... */
#define MOCK_FD_EPOLL 900  /* what epoll_create1 returns */

/* recv: do not check how much room the caller offered. */
#define MOCK_ANY_LEN ((size_t)-1)

/* Readiness a wait reports, beyond ECHO_READ/ECHO_WRITE: a hang-up
 * (POLLHUP, EPOLLHUP; select reports it as readable and writable). */
#define MOCK_HUP 4u

/* Per-test state. mock_sys_setup/mock_sys_teardown fit cmocka's
 * setup/teardown signature. */
int mock_sys_setup(void **state);
int mock_sys_teardown(void **state);

void mock_fd_fake(int fd);
int mock_fd_is_open(int fd);

/* Every byte the code under test handed to send() on fd, in order. */
const unsigned char *mock_sent(int fd, size_t *len);
void mock_sent_clear(int fd);

/* recv(fd, buf, room, 0) returns the n bytes at data (kept valid by the
 * caller until the call), or fails with err, or reports end of stream. */
void mock_recv_data(int fd, size_t room, const void *data, size_t n);
void mock_recv_error(int fd, size_t room, int err);
void mock_recv_eof(int fd, size_t room);
/* echo_stream's wait for the client while nothing is owed: recv(fd, 1 byte,
 * MSG_PEEK) returning ret (1: bytes wait, 0: EOF, -1: errno err). */
void mock_recv_wait(int fd, ssize_t ret, int err);

/* send(fd, buf, len, MSG_NOSIGNAL) takes the first take bytes, or fails. */
void mock_send_take(int fd, size_t len, size_t take);
void mock_send_error(int fd, size_t len, int err);

/* close(fd) is expected next among closes of fake descriptors (the fake
 * epoll descriptor excepted: its close is only recorded). */
void mock_close(int fd);

/* accept4(listen_fd, NULL, NULL, flags) returns fd, then the code sets
 * TCP_NODELAY on it (setsockopt answers nodelay_err, 0 = success). */
void mock_accept(int listen_fd, int flags, int fd, int nodelay_err);
/* accept4 returns fd and nothing else is expected of it (the reserve path
 * takes the pending connection only to close it). */
void mock_accept_plain(int listen_fd, int flags, int fd);
void mock_accept_error(int listen_fd, int flags, int err);

/* open(path, flags) returns fd, or -1 with err when fd < 0. */
void mock_open(const char *path, int flags, int fd, int err);

/* epoll_create1 fails once with err (it otherwise returns MOCK_FD_EPOLL). */
void mock_epoll_create_error(int err);
/* The fake epoll descriptor was created and is still open / was closed. */
int mock_epoll_state(void); /* 0 never created, 1 open, 2 closed */

/* The monotonic clock: once set, CLOCK_MONOTONIC reads this time. */
void mock_clock_set_ms(long long ms);

/* One wait call: select, poll or epoll_wait, whichever the code calls.
 * watch is the exact set of (descriptor, ECHO_READ|ECHO_WRITE) the call must
 * be waiting for, ready the readiness it reports; timeout_ms is checked
 * exactly. mock_wait_error makes the call fail with err. */
struct mock_watch {
    int fd;
    unsigned want;
};
void mock_wait(int timeout_ms, const struct mock_watch *watch, size_t nwatch,
               const struct mock_watch *ready, size_t nready);
void mock_wait_error(int timeout_ms, const struct mock_watch *watch, size_t nwatch,
                     int err);

/* Lists for mock_wait: MOCK_SET({fd, ECHO_READ}, {fd2, ECHO_WRITE}) or
 * MOCK_NONE. */
#define MOCK_SET(...)                                                           \
    ((const struct mock_watch[]){__VA_ARGS__}),                                 \
        (sizeof((const struct mock_watch[]){__VA_ARGS__}) / sizeof(struct mock_watch))
#define MOCK_NONE NULL, 0

#endif

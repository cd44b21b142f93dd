/* test_loop.c - echo_loop_init/echo_loop_step (loop.c) driven by scripted
 * readiness. Built once per backend (echo-select.c, echo-poll.c,
 * echo-epoll.c); mock_sys.c answers select, poll or epoll_wait from the same
 * script, and checks that each wait is for exactly the descriptors and the
 * timeout the script expects. The clock is scripted: no test sleeps. */
#include "mock_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>

#include "loop.h"

#define L MOCK_FD_LISTEN
#define RESERVE MOCK_FD_RESERVE
#define RESERVE2 (MOCK_FD_RESERVE + 1)
#define C1 MOCK_FD_CLIENT
#define C2 (MOCK_FD_CLIENT + 1)
#define C3 (MOCK_FD_CLIENT + 2)
#define PENDING (MOCK_FD_CLIENT + 20)
#define BIG (FD_SETSIZE + 6) /* beyond what select can watch */
#define NB (SOCK_NONBLOCK | SOCK_CLOEXEC)
#define BUF ECHO_BUF_SIZE
#define R ECHO_READ
#define W ECHO_WRITE
#define T0 1000000LL /* the scripted clock at the start of each test */

static struct echo_loop loop;
static char err[ECHO_ERR_LEN];
static unsigned char data[ECHO_BUF_SIZE + 64];

static int is_select(void)
{
    return strcmp(echo_server_name, "echo-select") == 0;
}

static int setup(void **state)
{
    mock_sys_setup(state);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 13 + i / 256);
    err[0] = '\0';
    mock_fd_fake(L);
    mock_clock_set_ms(T0);
    return 0;
}

static void start(unsigned max_conns)
{
    mock_open("/dev/null", O_RDONLY | O_CLOEXEC, RESERVE, 0);
    assert_int_equal(echo_loop_init(&loop, L, max_conns, err), ECHO_OK);
    assert_int_equal(loop.listening, 1);
    assert_int_equal(loop.acceptor.reserve_fd, RESERVE);
}

static void step(void)
{
    assert_int_equal(echo_loop_step(&loop, -1, err), ECHO_OK);
    assert_string_equal(err, "");
}

/* echo_loop_free closes the connections in descriptor order, then the
 * reserve. */
static void finish(const int *open_fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mock_close(open_fds[i]);
    if (loop.acceptor.reserve_fd >= 0)
        mock_close(loop.acceptor.reserve_fd);
    echo_loop_free(&loop);
    for (size_t i = 0; i < n; i++)
        assert_false(mock_fd_is_open(open_fds[i]));
    assert_false(mock_fd_is_open(RESERVE));
    assert_int_equal(mock_epoll_state(), strcmp(echo_server_name, "echo-epoll") == 0 ? 2 : 0);
}

#define NO_CONNS NULL, 0
#define CONNS(...) ((const int[]){__VA_ARGS__}), sizeof((const int[]){__VA_ARGS__}) / sizeof(int)

/* The listener is ready, fd is accepted and the queue is then empty. */
static void accept_one(const struct mock_watch *watch, size_t nwatch, int fd)
{
    mock_wait(-1, watch, nwatch, MOCK_SET({L, R}));
    mock_accept(L, NB, fd, 0);
    mock_accept_error(L, NB, EAGAIN);
    step();
}

static void assert_sent(int fd, const unsigned char *expected, size_t n)
{
    size_t len;
    const unsigned char *out = mock_sent(fd, &len);

    assert_int_equal(len, n);
    assert_memory_equal(out, expected, n);
}

static void test_init_watches_listener(void **state)
{
    (void)state;
    start(4);
    mock_wait(-1, MOCK_SET({L, R}), MOCK_NONE);
    step();
    /* the caller's timeout reaches the wait unchanged */
    mock_wait(250, MOCK_SET({L, R}), MOCK_NONE);
    assert_int_equal(echo_loop_step(&loop, 250, err), ECHO_OK);
    finish(NO_CONNS);
}

static void test_init_rejects_unwatchable_listener(void **state)
{
    char expect[ECHO_ERR_LEN];

    (void)state;
    assert_int_equal(echo_loop_init(&loop, -2, 4, err), ECHO_ERR);
    snprintf(expect, sizeof(expect), "listener descriptor -2 is beyond what %s can watch",
             echo_server_name);
    assert_string_equal(err, expect);
    if (is_select()) {
        assert_int_equal(echo_loop_init(&loop, FD_SETSIZE, 4, err), ECHO_ERR);
        snprintf(expect, sizeof(expect),
                 "listener descriptor %d is beyond what echo-select can watch", FD_SETSIZE);
        assert_string_equal(err, expect);
    }
    echo_loop_free(&loop);
}

static void test_init_fails_without_reserve(void **state)
{
    (void)state;
    mock_open("/dev/null", O_RDONLY | O_CLOEXEC, -1, ENFILE);
    assert_int_equal(echo_loop_init(&loop, L, 4, err), ECHO_ERR);
    assert_string_equal(err, "open /dev/null: Too many open files in system");
    /* what init had set up is released again (epoll: its descriptor) */
    assert_null(loop.be);
    assert_int_not_equal(mock_epoll_state(), 1);
    echo_loop_free(&loop);
}

static void test_init_fails_without_epoll(void **state)
{
    (void)state;
    if (strcmp(echo_server_name, "echo-epoll") != 0)
        skip();
    mock_epoll_create_error(EMFILE);
    assert_int_equal(echo_loop_init(&loop, L, 4, err), ECHO_ERR);
    assert_string_equal(err, "epoll_create1: Too many open files");
    echo_loop_free(&loop);
}

static void test_accept_and_echo(void **state)
{
    (void)state;
    start(4);
    accept_one(MOCK_SET({L, R}), C1);
    assert_int_equal(loop.nconns, 1);
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}), MOCK_SET({C1, R}));
    mock_recv_data(C1, BUF, data, 5);
    mock_send_take(C1, 5, 5);
    step();
    assert_sent(C1, data, 5);
    /* the client finishes: unwatched and closed */
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}), MOCK_SET({C1, R}));
    mock_recv_eof(C1, BUF);
    mock_close(C1);
    step();
    assert_int_equal(loop.nconns, 0);
    mock_wait(-1, MOCK_SET({L, R}), MOCK_NONE);
    step();
    finish(NO_CONNS);
}

static void test_two_clients_accepted_in_one_wakeup(void **state)
{
    (void)state;
    start(4);
    mock_wait(-1, MOCK_SET({L, R}), MOCK_SET({L, R}));
    mock_accept(L, NB, C1, 0);
    mock_accept_error(L, NB, ECONNABORTED); /* one gave up: keep accepting */
    mock_accept(L, NB, C2, 0);
    mock_accept_error(L, NB, EAGAIN);
    step();
    assert_int_equal(loop.nconns, 2);
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}, {C2, R}), MOCK_NONE);
    step();
    finish(CONNS(C1, C2));
}

static void test_slow_client_switches_to_write_and_back(void **state)
{
    (void)state;
    start(4);
    accept_one(MOCK_SET({L, R}), C1);
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}), MOCK_SET({C1, R}));
    mock_recv_data(C1, BUF, data, 10);
    mock_send_take(C1, 10, 3);
    mock_send_error(C1, 7, EAGAIN);
    step();
    assert_int_equal(loop.by_fd[C1]->watched, R | W);
    mock_wait(-1, MOCK_SET({L, R}, {C1, R | W}), MOCK_SET({C1, W}));
    mock_send_take(C1, 7, 7);
    step();
    assert_int_equal(loop.by_fd[C1]->watched, R);
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}), MOCK_NONE);
    step();
    assert_sent(C1, data, 10);
    finish(CONNS(C1));
}

static void test_full_buffer_watches_write_only(void **state)
{
    (void)state;
    start(4);
    accept_one(MOCK_SET({L, R}), C1);
    accept_one(MOCK_SET({L, R}, {C1, R}), C2);
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}, {C2, R}), MOCK_SET({C1, R}));
    mock_recv_data(C1, BUF, data, BUF);
    mock_send_error(C1, BUF, EAGAIN);
    step();
    /* C1 is not read while it owes a full buffer; C2 is served meanwhile */
    mock_wait(-1, MOCK_SET({L, R}, {C1, W}, {C2, R}), MOCK_SET({C2, R}));
    mock_recv_data(C2, BUF, data, 1);
    mock_send_take(C2, 1, 1);
    step();
    mock_wait(-1, MOCK_SET({L, R}, {C1, W}, {C2, R}), MOCK_SET({C1, W}));
    mock_send_take(C1, BUF, BUF);
    step();
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}, {C2, R}), MOCK_NONE);
    step();
    assert_sent(C1, data, BUF);
    assert_sent(C2, data, 1);
    finish(CONNS(C1, C2));
}

static void test_eof_with_pending_output_in_loop(void **state)
{
    (void)state;
    start(4);
    accept_one(MOCK_SET({L, R}), C1);
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}), MOCK_SET({C1, R}));
    mock_recv_data(C1, BUF, data, 100);
    mock_send_take(C1, 100, 40);
    mock_send_error(C1, 60, EAGAIN);
    step();
    mock_wait(-1, MOCK_SET({L, R}, {C1, R | W}), MOCK_SET({C1, R}));
    mock_recv_eof(C1, BUF - 100);
    mock_send_error(C1, 60, EAGAIN);
    step();
    /* finished sending, still owed: watched for writing only */
    mock_wait(-1, MOCK_SET({L, R}, {C1, W}), MOCK_SET({C1, W}));
    mock_send_take(C1, 60, 60);
    mock_close(C1);
    step();
    assert_sent(C1, data, 100);
    mock_wait(-1, MOCK_SET({L, R}), MOCK_NONE);
    step();
    finish(NO_CONNS);
}

static void test_hangup_reset_closes_connection(void **state)
{
    (void)state;
    start(4);
    accept_one(MOCK_SET({L, R}), C1);
    accept_one(MOCK_SET({L, R}, {C1, R}), C2);
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}, {C2, R}), MOCK_SET({C1, R | MOCK_HUP}));
    mock_recv_error(C1, BUF, ECONNRESET);
    mock_close(C1);
    step();
    assert_int_equal(loop.nconns, 1);
    /* the other client is untouched */
    mock_wait(-1, MOCK_SET({L, R}, {C2, R}), MOCK_SET({C2, R}));
    mock_recv_data(C2, BUF, data, 2);
    mock_send_error(C2, 2, EPIPE);
    mock_close(C2);
    step();
    mock_wait(-1, MOCK_SET({L, R}), MOCK_NONE);
    step();
    finish(NO_CONNS);
}

static void test_max_conns_refusal_closes_new_fd(void **state)
{
    (void)state;
    start(1);
    accept_one(MOCK_SET({L, R}), C1);
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}), MOCK_SET({L, R}));
    mock_accept(L, NB, C2, 0);
    mock_close(C2); /* refused at once */
    mock_accept(L, NB, C3, 0);
    mock_close(C3);
    mock_accept_error(L, NB, EAGAIN);
    step();
    assert_int_equal(loop.nconns, 1);
    assert_false(mock_fd_is_open(C2));
    /* a place frees up: the next client is served */
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}), MOCK_SET({C1, R}));
    mock_recv_eof(C1, BUF);
    mock_close(C1);
    step();
    accept_one(MOCK_SET({L, R}), C2);
    mock_wait(-1, MOCK_SET({L, R}, {C2, R}), MOCK_NONE);
    step();
    finish(CONNS(C2));
}

static void test_fd_beyond_fd_setsize(void **state)
{
    (void)state;
    start(4);
    if (is_select()) {
        /* FD_SET on it would write past the fd_set: closed at once */
        mock_wait(-1, MOCK_SET({L, R}), MOCK_SET({L, R}));
        mock_accept(L, NB, BIG, 0);
        mock_close(BIG);
        mock_accept(L, NB, C1, 0);
        mock_accept_error(L, NB, EAGAIN);
        step();
        assert_int_equal(loop.nconns, 1);
        assert_false(mock_fd_is_open(BIG));
        mock_wait(-1, MOCK_SET({L, R}, {C1, R}), MOCK_SET({C1, R}));
        mock_recv_data(C1, BUF, data, 4);
        mock_send_take(C1, 4, 4);
        step();
        finish(CONNS(C1));
        return;
    }
    /* poll and epoll have no such limit: served like any other */
    accept_one(MOCK_SET({L, R}), BIG);
    mock_wait(-1, MOCK_SET({L, R}, {BIG, R}), MOCK_SET({BIG, R}));
    mock_recv_data(BIG, BUF, data, 4);
    mock_send_take(BIG, 4, 4);
    step();
    assert_sent(BIG, data, 4);
    finish(CONNS(BIG));
}

static void test_emfile_reserve_path_keeps_listening(void **state)
{
    (void)state;
    start(4);
    mock_wait(-1, MOCK_SET({L, R}), MOCK_SET({L, R}));
    mock_accept_error(L, NB, EMFILE);
    mock_close(RESERVE);
    mock_accept_plain(L, SOCK_CLOEXEC, PENDING);
    mock_close(PENDING);
    mock_open("/dev/null", O_RDONLY | O_CLOEXEC, RESERVE2, 0);
    mock_accept(L, NB, C1, 0); /* a descriptor freed up: accepting goes on */
    mock_accept_error(L, NB, EAGAIN);
    step();
    assert_int_equal(loop.listening, 1);
    assert_int_equal(loop.acceptor.reserve_fd, RESERVE2);
    assert_false(mock_fd_is_open(PENDING));
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}), MOCK_NONE);
    step();
    finish(CONNS(C1));
}

/* Reserve spent and still out of descriptors: the listener is unwatched,
 * the wait is bounded by what is left of ECHO_ACCEPT_BACKOFF_MS on the
 * scripted clock, and the listener is watched again once it has passed. */
static void test_emfile_spent_pauses_then_resumes(void **state)
{
    (void)state;
    start(4);
    accept_one(MOCK_SET({L, R}), C1);
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}), MOCK_SET({L, R}));
    mock_accept_error(L, NB, EMFILE);
    mock_close(RESERVE);
    mock_accept_plain(L, SOCK_CLOEXEC, PENDING);
    mock_close(PENDING);
    mock_open("/dev/null", O_RDONLY | O_CLOEXEC, -1, EMFILE);
    mock_accept_error(L, NB, EMFILE); /* the retry: no reserve left */
    step();
    assert_int_equal(loop.listening, 0);
    assert_int_equal(loop.acceptor.reserve_fd, -1);

    /* paused: the listener is not waited for, the wait is bounded */
    mock_wait(ECHO_ACCEPT_BACKOFF_MS, MOCK_SET({C1, R}), MOCK_SET({C1, R}));
    mock_recv_data(C1, BUF, data, 3);
    mock_send_take(C1, 3, 3);
    step();
    mock_clock_set_ms(T0 + 40);
    mock_wait(ECHO_ACCEPT_BACKOFF_MS - 40, MOCK_SET({C1, R}), MOCK_NONE);
    step();
    /* a shorter timeout of the caller's own wins */
    mock_wait(25, MOCK_SET({C1, R}), MOCK_NONE);
    assert_int_equal(echo_loop_step(&loop, 25, err), ECHO_OK);
    mock_clock_set_ms(T0 + ECHO_ACCEPT_BACKOFF_MS - 1);
    mock_wait(1, MOCK_SET({C1, R}), MOCK_NONE);
    step();
    assert_int_equal(loop.listening, 0);

    /* the back-off has passed: watched again, no timeout added */
    mock_clock_set_ms(T0 + ECHO_ACCEPT_BACKOFF_MS);
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}), MOCK_SET({L, R}));
    mock_accept_error(L, NB, EMFILE); /* still out, reserve still spent */
    step();
    assert_int_equal(loop.listening, 0);
    mock_wait(ECHO_ACCEPT_BACKOFF_MS, MOCK_SET({C1, R}), MOCK_NONE);
    step();
    mock_clock_set_ms(T0 + 2 * ECHO_ACCEPT_BACKOFF_MS + 5);
    /* descriptors are free again: the accepted client brings the reserve back */
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}), MOCK_SET({L, R}));
    mock_accept(L, NB, C2, 0);
    mock_open("/dev/null", O_RDONLY | O_CLOEXEC, RESERVE, 0);
    mock_accept_error(L, NB, EAGAIN);
    step();
    assert_int_equal(loop.listening, 1);
    assert_int_equal(loop.acceptor.reserve_fd, RESERVE);
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}, {C2, R}), MOCK_NONE);
    step();
    assert_sent(C1, data, 3);
    finish(CONNS(C1, C2));
}

static void test_emfile_pause_with_no_connections(void **state)
{
    (void)state;
    start(4);
    mock_close(RESERVE);
    echo_acceptor_close(&loop.acceptor); /* reserve already spent */
    mock_wait(-1, MOCK_SET({L, R}), MOCK_SET({L, R}));
    mock_accept_error(L, NB, ENFILE);
    step();
    assert_int_equal(loop.listening, 0);
    /* nothing watched at all: the wait is only the back-off */
    mock_wait(ECHO_ACCEPT_BACKOFF_MS, MOCK_NONE, MOCK_NONE);
    step();
    mock_clock_set_ms(T0 + ECHO_ACCEPT_BACKOFF_MS + 1000);
    mock_wait(-1, MOCK_SET({L, R}), MOCK_NONE);
    step();
    assert_int_equal(loop.listening, 1);
    finish(NO_CONNS);
}

static void test_wait_eintr_is_zero_events(void **state)
{
    (void)state;
    start(4);
    accept_one(MOCK_SET({L, R}), C1);
    mock_wait_error(-1, MOCK_SET({L, R}, {C1, R}), EINTR);
    step(); /* no recv, no accept: none is scripted */
    assert_int_equal(loop.nconns, 1);
    mock_wait(-1, MOCK_SET({L, R}, {C1, R}), MOCK_NONE);
    step();
    finish(CONNS(C1));
}

static void test_wait_failure_is_reported(void **state)
{
    (void)state;
    start(4);
    mock_wait_error(-1, MOCK_SET({L, R}), EBADF);
    assert_int_equal(echo_loop_step(&loop, -1, err), ECHO_ERR);
    assert_string_equal(err, "waiting for events: Bad file descriptor");
    finish(NO_CONNS);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, mock_sys_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_init_watches_listener),
        T(test_init_rejects_unwatchable_listener),
        T(test_init_fails_without_reserve),
        T(test_init_fails_without_epoll),
        T(test_accept_and_echo),
        T(test_two_clients_accepted_in_one_wakeup),
        T(test_slow_client_switches_to_write_and_back),
        T(test_full_buffer_watches_write_only),
        T(test_eof_with_pending_output_in_loop),
        T(test_hangup_reset_closes_connection),
        T(test_max_conns_refusal_closes_new_fd),
        T(test_fd_beyond_fd_setsize),
        T(test_emfile_reserve_path_keeps_listening),
        T(test_emfile_spent_pauses_then_resumes),
        T(test_emfile_pause_with_no_connections),
        T(test_wait_eintr_is_zero_events),
        T(test_wait_failure_is_reported),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

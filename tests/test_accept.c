/* test_accept.c - the acceptor: echo_acceptor_init/close, echo_accept with
 * its reserve descriptor, echo_accept_retry and echo_accept_wait. */
#include "mock_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>

#include "echo.h"

#define LISTEN MOCK_FD_LISTEN
#define RESERVE MOCK_FD_RESERVE
#define RESERVE2 (MOCK_FD_RESERVE + 1)
#define CLIENT MOCK_FD_CLIENT
#define PENDING (MOCK_FD_CLIENT + 20) /* the connection the reserve turns away */
#define RESERVE_FLAGS (O_RDONLY | O_CLOEXEC)
#define FLAGS_NB (SOCK_NONBLOCK | SOCK_CLOEXEC)

static struct echo_acceptor acc;

static int setup(void **state)
{
    char err[ECHO_ERR_LEN] = "";

    mock_sys_setup(state);
    mock_fd_fake(LISTEN);
    mock_open("/dev/null", RESERVE_FLAGS, RESERVE, 0);
    assert_int_equal(echo_acceptor_init(&acc, LISTEN, err), ECHO_OK);
    assert_int_equal(acc.listen_fd, LISTEN);
    assert_int_equal(acc.reserve_fd, RESERVE);
    return 0;
}

static void close_acceptor(void)
{
    if (acc.reserve_fd >= 0)
        mock_close(acc.reserve_fd);
    echo_acceptor_close(&acc);
    assert_int_equal(acc.reserve_fd, -1);
}

static void test_init_fails_without_reserve(void **state)
{
    struct echo_acceptor a;
    char err[ECHO_ERR_LEN] = "";

    (void)state;
    close_acceptor();
    mock_open("/dev/null", RESERVE_FLAGS, -1, EMFILE);
    assert_int_equal(echo_acceptor_init(&a, LISTEN, err), ECHO_ERR);
    assert_string_equal(err, "open /dev/null: Too many open files");
    assert_int_equal(a.reserve_fd, -1);
}

static void test_close_twice_closes_once(void **state)
{
    (void)state;
    mock_close(RESERVE);
    echo_acceptor_close(&acc);
    echo_acceptor_close(&acc); /* no second close is scripted */
    assert_int_equal(acc.reserve_fd, -1);
    assert_false(mock_fd_is_open(RESERVE));
}

static void test_accept_sets_nodelay(void **state)
{
    (void)state;
    mock_accept(LISTEN, FLAGS_NB, CLIENT, 0);
    assert_int_equal(echo_accept(&acc, SOCK_NONBLOCK), CLIENT);
    /* blocking servers ask for no flags: close-on-exec all the same */
    mock_accept(LISTEN, SOCK_CLOEXEC, CLIENT + 1, 0);
    assert_int_equal(echo_accept(&acc, 0), CLIENT + 1);
    assert_int_equal(acc.reserve_fd, RESERVE);
    close_acceptor();
}

static void test_accept_nodelay_failure_is_harmless(void **state)
{
    (void)state;
    mock_accept(LISTEN, FLAGS_NB, CLIENT, EINVAL);
    assert_int_equal(echo_accept(&acc, SOCK_NONBLOCK), CLIENT);
    close_acceptor();
}

static void test_accept_eintr_retried(void **state)
{
    (void)state;
    mock_accept_error(LISTEN, FLAGS_NB, EINTR);
    mock_accept_error(LISTEN, FLAGS_NB, EINTR);
    mock_accept(LISTEN, FLAGS_NB, CLIENT, 0);
    assert_int_equal(echo_accept(&acc, SOCK_NONBLOCK), CLIENT);
    close_acceptor();
}

static void test_accept_errors_returned(void **state)
{
    static const int errs[] = {EAGAIN, ECONNABORTED, EPROTO, ENOBUFS, EBADF, EINVAL};

    (void)state;
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        errno = 0;
        mock_accept_error(LISTEN, FLAGS_NB, errs[i]);
        assert_int_equal(echo_accept(&acc, SOCK_NONBLOCK), -1);
        assert_int_equal(errno, errs[i]);
        assert_int_equal(acc.reserve_fd, RESERVE); /* untouched */
    }
    close_acceptor();
}

/* Out of descriptors: the reserve is given up to take the pending
 * connection off the queue, which is closed at once; then the reserve is
 * taken back. The caller hears ECONNABORTED, which says "try again". */
static void reserve_path(int first_err)
{
    mock_accept_error(LISTEN, FLAGS_NB, first_err);
    mock_close(RESERVE);
    mock_accept_plain(LISTEN, SOCK_CLOEXEC, PENDING);
    mock_close(PENDING);
    mock_open("/dev/null", RESERVE_FLAGS, RESERVE2, 0);
    errno = 0;
    assert_int_equal(echo_accept(&acc, SOCK_NONBLOCK), -1);
    assert_int_equal(errno, ECONNABORTED);
    assert_true(echo_accept_retry(errno));
    assert_int_equal(acc.reserve_fd, RESERVE2);
    assert_false(mock_fd_is_open(PENDING));
    assert_false(mock_fd_is_open(RESERVE));
    assert_true(mock_fd_is_open(RESERVE2));
}

static void test_emfile_spends_reserve_on_pending(void **state)
{
    (void)state;
    reserve_path(EMFILE);
    close_acceptor();
}

static void test_enfile_spends_reserve_on_pending(void **state)
{
    (void)state;
    reserve_path(ENFILE);
    close_acceptor();
}

static void test_emfile_twice_uses_reserve_twice(void **state)
{
    (void)state;
    reserve_path(EMFILE);
    /* the reopened reserve serves the next exhaustion as well */
    mock_accept_error(LISTEN, FLAGS_NB, EMFILE);
    mock_close(RESERVE2);
    mock_accept_plain(LISTEN, SOCK_CLOEXEC, PENDING);
    mock_close(PENDING);
    mock_open("/dev/null", RESERVE_FLAGS, RESERVE, 0);
    assert_int_equal(echo_accept(&acc, SOCK_NONBLOCK), -1);
    assert_int_equal(errno, ECONNABORTED);
    assert_int_equal(acc.reserve_fd, RESERVE);
    close_acceptor();
}

static void test_emfile_nothing_pending_after_all(void **state)
{
    (void)state;
    /* the client gave up in between: nothing to close, reserve back */
    mock_accept_error(LISTEN, FLAGS_NB, EMFILE);
    mock_close(RESERVE);
    mock_accept_error(LISTEN, SOCK_CLOEXEC, EAGAIN);
    mock_open("/dev/null", RESERVE_FLAGS, RESERVE2, 0);
    assert_int_equal(echo_accept(&acc, SOCK_NONBLOCK), -1);
    assert_int_equal(errno, ECONNABORTED);
    assert_int_equal(acc.reserve_fd, RESERVE2);
    close_acceptor();
}

static void test_emfile_reserve_spent_then_recovered(void **state)
{
    (void)state;
    mock_accept_error(LISTEN, FLAGS_NB, EMFILE);
    mock_close(RESERVE);
    mock_accept_plain(LISTEN, SOCK_CLOEXEC, PENDING);
    mock_close(PENDING);
    mock_open("/dev/null", RESERVE_FLAGS, -1, EMFILE);
    assert_int_equal(echo_accept(&acc, SOCK_NONBLOCK), -1);
    assert_int_equal(errno, ECONNABORTED);
    assert_int_equal(acc.reserve_fd, -1);
    /* reserve spent: EMFILE reaches the caller, which must back off; no
     * close, no accept of the pending connection, no open */
    mock_accept_error(LISTEN, FLAGS_NB, EMFILE);
    assert_int_equal(echo_accept(&acc, SOCK_NONBLOCK), -1);
    assert_int_equal(errno, EMFILE);
    assert_false(echo_accept_retry(errno));
    mock_accept_error(LISTEN, FLAGS_NB, ENFILE);
    assert_int_equal(echo_accept(&acc, SOCK_NONBLOCK), -1);
    assert_int_equal(errno, ENFILE);
    /* descriptors free again: the next accepted client brings the reserve
     * back, so a later exhaustion can shed connections again */
    mock_accept(LISTEN, FLAGS_NB, CLIENT, 0);
    mock_open("/dev/null", RESERVE_FLAGS, RESERVE, 0);
    assert_int_equal(echo_accept(&acc, SOCK_NONBLOCK), CLIENT);
    assert_int_equal(acc.reserve_fd, RESERVE);
    close_acceptor();
}

static void test_retry_table(void **state)
{
    static const int retry[] = {ECONNABORTED, EPROTO,      EPERM,    ENOBUFS,
                                ENOMEM,       ENETDOWN,    ENOPROTOOPT, EHOSTDOWN,
                                ENONET,       EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH};
    static const int stop[] = {EAGAIN, EMFILE, ENFILE, EBADF, EINVAL, ENOTSOCK, EFAULT, 0};

    (void)state;
    for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
        assert_int_equal(echo_accept_retry(retry[i]), 1);
    for (size_t i = 0; i < sizeof(stop) / sizeof(stop[0]); i++)
        assert_int_equal(echo_accept_retry(stop[i]), 0);
    close_acceptor();
}

#define WAIT_LISTEN MOCK_SET({LISTEN, ECHO_READ})

static void test_wait_accepts(void **state)
{
    char err[ECHO_ERR_LEN] = "";

    (void)state;
    mock_wait(-1, WAIT_LISTEN, WAIT_LISTEN);
    mock_accept(LISTEN, SOCK_CLOEXEC, CLIENT, 0);
    assert_int_equal(echo_accept_wait(&acc, 0, err), CLIENT);
    assert_string_equal(err, "");
    close_acceptor();
}

static void test_wait_poll_eintr_retried(void **state)
{
    char err[ECHO_ERR_LEN] = "";

    (void)state;
    mock_wait_error(-1, WAIT_LISTEN, EINTR);
    mock_wait(-1, WAIT_LISTEN, WAIT_LISTEN);
    mock_accept(LISTEN, SOCK_CLOEXEC, CLIENT, 0);
    assert_int_equal(echo_accept_wait(&acc, 0, err), CLIENT);
    close_acceptor();
}

static void test_wait_poll_failure(void **state)
{
    char err[ECHO_ERR_LEN] = "";

    (void)state;
    mock_wait_error(-1, WAIT_LISTEN, ENOMEM);
    assert_int_equal(echo_accept_wait(&acc, 0, err), ECHO_ERR);
    assert_string_equal(err, "poll: Cannot allocate memory");
    close_acceptor();
}

static void test_wait_retries_transient_errors(void **state)
{
    char err[ECHO_ERR_LEN] = "";

    (void)state;
    /* spurious readiness, then a client that reset before accept */
    mock_wait(-1, WAIT_LISTEN, WAIT_LISTEN);
    mock_accept_error(LISTEN, SOCK_CLOEXEC, EAGAIN);
    mock_wait(-1, WAIT_LISTEN, WAIT_LISTEN);
    mock_accept_error(LISTEN, SOCK_CLOEXEC, ECONNABORTED);
    mock_wait(-1, WAIT_LISTEN, WAIT_LISTEN);
    mock_accept(LISTEN, SOCK_CLOEXEC, CLIENT, 0);
    assert_int_equal(echo_accept_wait(&acc, 0, err), CLIENT);
    close_acceptor();
}

static void test_wait_emfile_uses_reserve(void **state)
{
    char err[ECHO_ERR_LEN] = "";

    (void)state;
    mock_wait(-1, WAIT_LISTEN, WAIT_LISTEN);
    mock_accept_error(LISTEN, SOCK_CLOEXEC, EMFILE);
    mock_close(RESERVE);
    mock_accept_plain(LISTEN, SOCK_CLOEXEC, PENDING);
    mock_close(PENDING);
    mock_open("/dev/null", RESERVE_FLAGS, RESERVE2, 0);
    mock_wait(-1, WAIT_LISTEN, WAIT_LISTEN);
    mock_accept(LISTEN, SOCK_CLOEXEC, CLIENT, 0);
    assert_int_equal(echo_accept_wait(&acc, 0, err), CLIENT);
    assert_int_equal(acc.reserve_fd, RESERVE2);
    close_acceptor();
}

static void test_wait_emfile_spent_backs_off(void **state)
{
    char err[ECHO_ERR_LEN] = "";

    (void)state;
    mock_close(RESERVE);
    echo_acceptor_close(&acc); /* as if the reserve could not be reopened */
    mock_wait(-1, WAIT_LISTEN, WAIT_LISTEN);
    mock_accept_error(LISTEN, SOCK_CLOEXEC, EMFILE);
    /* the back-off: a poll on nothing, for ECHO_ACCEPT_BACKOFF_MS */
    mock_wait(ECHO_ACCEPT_BACKOFF_MS, MOCK_NONE, MOCK_NONE);
    mock_wait(-1, WAIT_LISTEN, WAIT_LISTEN);
    mock_accept_error(LISTEN, SOCK_CLOEXEC, ENFILE);
    mock_wait(ECHO_ACCEPT_BACKOFF_MS, MOCK_NONE, MOCK_NONE);
    mock_wait(-1, WAIT_LISTEN, WAIT_LISTEN);
    mock_accept(LISTEN, SOCK_CLOEXEC, CLIENT, 0);
    assert_int_equal(echo_accept_wait(&acc, 0, err), CLIENT);
    assert_string_equal(err, "");
}

static void test_wait_accept_failure(void **state)
{
    char err[ECHO_ERR_LEN] = "";

    (void)state;
    mock_wait(-1, WAIT_LISTEN, WAIT_LISTEN);
    mock_accept_error(LISTEN, SOCK_CLOEXEC, EBADF);
    assert_int_equal(echo_accept_wait(&acc, 0, err), ECHO_ERR);
    assert_string_equal(err, "accept: Bad file descriptor");
    close_acceptor();
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, mock_sys_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_init_fails_without_reserve),
        T(test_close_twice_closes_once),
        T(test_accept_sets_nodelay),
        T(test_accept_nodelay_failure_is_harmless),
        T(test_accept_eintr_retried),
        T(test_accept_errors_returned),
        T(test_emfile_spends_reserve_on_pending),
        T(test_enfile_spends_reserve_on_pending),
        T(test_emfile_twice_uses_reserve_twice),
        T(test_emfile_nothing_pending_after_all),
        T(test_emfile_reserve_spent_then_recovered),
        T(test_retry_table),
        T(test_wait_accepts),
        T(test_wait_poll_eintr_retried),
        T(test_wait_poll_failure),
        T(test_wait_retries_transient_errors),
        T(test_wait_emfile_uses_reserve),
        T(test_wait_emfile_spent_backs_off),
        T(test_wait_accept_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

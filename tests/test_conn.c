/* test_conn.c - echo_conn_service and echo_stream, the echo logic every
 * server shares, against scripted recv/send results. */
#include "mock_sys.h"

#include <errno.h>
#include <string.h>

#include "echo.h"

#define FD MOCK_FD_CLIENT
#define BUF ECHO_BUF_SIZE
#define HALF (ECHO_BUF_SIZE / 2)

/* Two buffers' worth of bytes covering all 256 values, in an order that
 * makes a byte out of place show. */
static unsigned char data[2 * ECHO_BUF_SIZE];

static int setup(void **state)
{
    mock_sys_setup(state);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 7 + i / 256);
    mock_fd_fake(FD);
    return 0;
}

static void assert_sent(const unsigned char *expected, size_t n)
{
    size_t len;
    const unsigned char *out = mock_sent(FD, &len);

    assert_int_equal(len, n);
    assert_memory_equal(out, expected, n);
}

static struct echo_conn *conn(void)
{
    struct echo_conn *c = echo_conn_new(FD);

    assert_non_null(c);
    return c;
}

static void finish(struct echo_conn *c)
{
    mock_close(FD);
    echo_conn_free(c);
    assert_false(mock_fd_is_open(FD));
}

static void test_new_conn_is_empty(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    assert_int_equal(c->fd, FD);
    assert_int_equal(c->eof, 0);
    assert_int_equal(c->watched, 0);
    assert_int_equal(c->head, 0);
    assert_int_equal(c->tail, 0);
    finish(c);
    echo_conn_free(NULL); /* no close of anything */
}

static void test_echo_exact_bytes(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_data(FD, BUF, data, 300);
    mock_send_take(FD, 300, 300);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ);
    assert_sent(data, 300);
    /* everything sent: the whole buffer is offered to the next read */
    mock_recv_data(FD, BUF, data + 300, 5);
    mock_send_take(FD, 5, 5);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ);
    assert_sent(data, 305);
    finish(c);
}

static void test_short_reads_every_length(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    for (size_t n = 1; n <= BUF; n++) {
        mock_sent_clear(FD);
        mock_recv_data(FD, BUF, data + n % 251, n);
        mock_send_take(FD, n, n);
        assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ);
        assert_sent(data + n % 251, n);
    }
    finish(c);
}

/* A full buffer, written back k bytes at first: the remainder stays owed,
 * nothing more is read while the buffer is full (or the front half is not
 * yet free), and the next writable event sends exactly the rest. */
static void test_short_writes_every_length(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    for (size_t k = 1; k < BUF; k++) {
        unsigned want = k >= HALF ? ECHO_READ | ECHO_WRITE : ECHO_WRITE;

        mock_sent_clear(FD);
        mock_recv_data(FD, BUF, data + k % 251, BUF);
        mock_send_take(FD, BUF, k);
        mock_send_error(FD, BUF - k, EAGAIN);
        assert_int_equal(echo_conn_service(c, ECHO_READ), want);
        mock_send_take(FD, BUF - k, BUF - k);
        assert_int_equal(echo_conn_service(c, ECHO_WRITE), ECHO_READ);
        assert_sent(data + k % 251, BUF);
    }
    finish(c);
}

static void test_short_writes_in_one_call(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_data(FD, BUF, data, 10);
    mock_send_take(FD, 10, 1);
    mock_send_take(FD, 9, 2);
    mock_send_take(FD, 7, 7);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ);
    assert_sent(data, 10);
    finish(c);
}

static void test_short_write_keeps_remainder_owed(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_data(FD, BUF, data, 100);
    mock_send_take(FD, 100, 30);
    mock_send_error(FD, 70, EAGAIN);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ | ECHO_WRITE);
    assert_sent(data, 30);
    /* more arrives while 70 bytes are owed: it queues behind them */
    mock_recv_data(FD, BUF - 100, data + 100, 20);
    mock_send_take(FD, 90, 90);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ);
    assert_sent(data, 120);
    finish(c);
}

static void test_buffer_full_stops_reading(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_data(FD, BUF, data, BUF);
    mock_send_error(FD, BUF, EAGAIN);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_WRITE);
    /* readable again, but full: no recv (none is scripted) */
    mock_send_error(FD, BUF, EAGAIN);
    assert_int_equal(echo_conn_service(c, ECHO_READ | ECHO_WRITE), ECHO_WRITE);
    /* owed bytes are tried on any event, but still nothing is read */
    mock_send_error(FD, BUF, EAGAIN);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_WRITE);
    mock_send_take(FD, BUF, BUF);
    assert_int_equal(echo_conn_service(c, ECHO_WRITE), ECHO_READ);
    assert_sent(data, BUF);
    finish(c);
}

static void test_half_drained_buffer_reads_again(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_data(FD, BUF, data, BUF);
    mock_send_take(FD, BUF, HALF - 1);
    mock_send_error(FD, BUF - (HALF - 1), EAGAIN);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_WRITE);
    mock_send_take(FD, BUF - (HALF - 1), 1);
    mock_send_error(FD, HALF, EAGAIN);
    /* the front half is free now: the owed bytes move and reading resumes */
    assert_int_equal(echo_conn_service(c, ECHO_WRITE), ECHO_READ | ECHO_WRITE);
    mock_recv_data(FD, HALF, data + BUF, 10);
    mock_send_take(FD, HALF + 10, HALF + 10);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ);
    assert_sent(data, BUF + 10);
    finish(c);
}

static void test_eof_with_pending_output_flushes_then_closes(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_data(FD, BUF, data, 100);
    mock_send_take(FD, 100, 40);
    mock_send_error(FD, 60, EAGAIN);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ | ECHO_WRITE);
    mock_recv_eof(FD, BUF - 100);
    mock_send_take(FD, 60, 60);
    assert_int_equal(echo_conn_service(c, ECHO_READ | ECHO_WRITE), ECHO_CONN_CLOSE);
    assert_sent(data, 100);
    finish(c);
}

static void test_eof_with_pending_output_waits_for_writable(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_data(FD, BUF, data, 100);
    mock_send_error(FD, 100, EAGAIN);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ | ECHO_WRITE);
    mock_recv_eof(FD, BUF - 100);
    mock_send_error(FD, 100, EAGAIN);
    /* owed bytes keep it open; the finished client is not read again */
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_WRITE);
    assert_int_equal(c->eof, 1);
    mock_send_take(FD, 100, 50);
    mock_send_error(FD, 50, EAGAIN);
    assert_int_equal(echo_conn_service(c, ECHO_READ | ECHO_WRITE), ECHO_WRITE);
    mock_send_take(FD, 50, 50);
    assert_int_equal(echo_conn_service(c, ECHO_WRITE), ECHO_CONN_CLOSE);
    assert_sent(data, 100);
    finish(c);
}

static void test_eof_nothing_pending_closes(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_eof(FD, BUF);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_CONN_CLOSE);
    assert_sent(data, 0);
    finish(c);
}

static void test_recv_errors_close(void **state)
{
    static const int errs[] = {ECONNRESET, ETIMEDOUT, ENOTCONN, EHOSTUNREACH};

    (void)state;
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        struct echo_conn *c = conn();

        mock_recv_error(FD, BUF, errs[i]);
        assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_CONN_CLOSE);
        finish(c);
        mock_fd_fake(FD);
    }
    assert_sent(data, 0);
}

static void test_reset_with_pending_output_closes(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_data(FD, BUF, data, 10);
    mock_send_error(FD, 10, EAGAIN);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ | ECHO_WRITE);
    mock_recv_error(FD, BUF - 10, ECONNRESET);
    assert_int_equal(echo_conn_service(c, ECHO_READ | ECHO_WRITE), ECHO_CONN_CLOSE);
    finish(c);
}

static void test_send_reset_and_epipe_close(void **state)
{
    static const int errs[] = {ECONNRESET, EPIPE};

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        struct echo_conn *c = conn();

        mock_recv_data(FD, BUF, data, 5);
        mock_send_error(FD, 5, errs[i]);
        assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_CONN_CLOSE);
        finish(c);
        mock_fd_fake(FD);
    }
    assert_sent(data, 0);
}

static void test_send_error_after_short_write_closes(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_data(FD, BUF, data, 50);
    mock_send_take(FD, 50, 20);
    mock_send_error(FD, 30, EPIPE);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_CONN_CLOSE);
    assert_sent(data, 20);
    finish(c);
}

static void test_recv_eagain_keeps_waiting(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_error(FD, BUF, EAGAIN);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ);
    mock_recv_error(FD, BUF, EWOULDBLOCK);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ);
    finish(c);
}

static void test_recv_eintr_keeps_connection(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_error(FD, BUF, EINTR);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ);
    mock_recv_data(FD, BUF, data, 3);
    mock_send_take(FD, 3, 3);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ);
    assert_sent(data, 3);
    finish(c);
}

static void test_send_eagain_waits_for_writable(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_data(FD, BUF, data, 5);
    mock_send_error(FD, 5, EAGAIN);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ | ECHO_WRITE);
    assert_sent(data, 0);
    /* a writable event alone does not read */
    mock_send_take(FD, 5, 5);
    assert_int_equal(echo_conn_service(c, ECHO_WRITE), ECHO_READ);
    assert_sent(data, 5);
    finish(c);
}

static void test_send_eintr_retried(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    mock_recv_data(FD, BUF, data, 5);
    mock_send_error(FD, 5, EINTR);
    mock_send_take(FD, 5, 2);
    mock_send_error(FD, 3, EINTR);
    mock_send_take(FD, 3, 3);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ);
    assert_sent(data, 5);
    finish(c);
}

static void test_writable_with_nothing_owed(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    /* no recv, no send is scripted: none may happen */
    assert_int_equal(echo_conn_service(c, ECHO_WRITE), ECHO_READ);
    assert_int_equal(echo_conn_service(c, 0), ECHO_READ);
    finish(c);
}

/* Each time nothing is owed, echo_stream waits for the client with a peek
 * (no buffer held); an interrupted wait is waited again. */
static void test_stream_echoes_until_eof(void **state)
{
    (void)state;
    mock_recv_wait(FD, 1, 0);
    mock_recv_data(FD, BUF, data, 3);
    mock_send_take(FD, 3, 3);
    mock_recv_wait(FD, -1, EINTR);
    mock_recv_wait(FD, 1, 0);
    mock_recv_error(FD, BUF, EINTR);
    mock_recv_wait(FD, 1, 0);
    mock_recv_data(FD, BUF, data + 3, 4);
    mock_send_take(FD, 4, 1);
    mock_send_error(FD, 3, EINTR);
    mock_send_take(FD, 3, 3);
    mock_recv_wait(FD, 1, 0);
    mock_recv_data(FD, BUF, data + 7, BUF);
    mock_send_take(FD, BUF, BUF);
    mock_recv_wait(FD, 0, 0); /* the client's EOF with nothing owed: closed at once */
    mock_close(FD);
    assert_int_equal(echo_stream(FD), ECHO_OK);
    assert_sent(data, BUF + 7);
    assert_false(mock_fd_is_open(FD));
}

static void test_stream_eof_with_pending_output(void **state)
{
    (void)state;
    mock_recv_wait(FD, 1, 0);
    mock_recv_data(FD, BUF, data, 10);
    mock_send_take(FD, 10, 4);
    mock_send_error(FD, 6, EAGAIN);
    mock_recv_eof(FD, BUF - 10);
    mock_send_take(FD, 6, 6);
    mock_close(FD);
    assert_int_equal(echo_stream(FD), ECHO_OK);
    assert_sent(data, 10);
}

static void test_stream_reset_closes(void **state)
{
    (void)state;
    mock_recv_wait(FD, 1, 0);
    mock_recv_data(FD, BUF, data, 5);
    mock_send_take(FD, 5, 5);
    mock_recv_wait(FD, -1, ECONNRESET);
    mock_close(FD);
    assert_int_equal(echo_stream(FD), ECHO_OK);
    assert_sent(data, 5);
}

static void test_stream_epipe_closes(void **state)
{
    (void)state;
    mock_recv_wait(FD, 1, 0);
    mock_recv_data(FD, BUF, data, 5);
    mock_send_error(FD, 5, EPIPE);
    mock_close(FD);
    assert_int_equal(echo_stream(FD), ECHO_OK);
    assert_sent(data, 0);
}

/* The buffer is held only while bytes are owed: an idle connection costs its
 * header alone, whatever it echoed before. */
static void test_buffer_held_only_while_bytes_are_owed(void **state)
{
    struct echo_conn *c = conn();

    (void)state;
    assert_null(c->buf);
    mock_recv_data(FD, BUF, data, 100);
    mock_send_take(FD, 100, 40);
    mock_send_error(FD, 60, EAGAIN);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ | ECHO_WRITE);
    assert_non_null(c->buf); /* 60 bytes owed */
    mock_send_take(FD, 60, 60);
    assert_int_equal(echo_conn_service(c, ECHO_WRITE), ECHO_READ);
    assert_null(c->buf);
    assert_sent(data, 100);
    /* A readable event with nothing to read takes a buffer and gives it back. */
    mock_recv_error(FD, BUF, EAGAIN);
    assert_int_equal(echo_conn_service(c, ECHO_READ), ECHO_READ);
    assert_null(c->buf);
    finish(c);
}

/* A connection that ends with bytes still owed gives its buffer back (the
 * sanitizer build's leak check sees one that is lost), and the next
 * connection that takes it echoes its own bytes, not the stale ones. */
static void test_pooled_buffer_carries_only_its_own_bytes(void **state)
{
    struct echo_conn *a = conn(), *b;

    (void)state;
    mock_recv_data(FD, BUF, data, BUF);
    mock_send_take(FD, BUF, 10);
    mock_send_error(FD, BUF - 10, EAGAIN);
    assert_int_equal(echo_conn_service(a, ECHO_READ), ECHO_WRITE);
    finish(a);
    mock_fd_fake(FD);
    mock_sent_clear(FD);
    b = conn();
    mock_recv_data(FD, BUF, data + 1000, 7);
    mock_send_take(FD, 7, 7);
    assert_int_equal(echo_conn_service(b, ECHO_READ), ECHO_READ);
    assert_sent(data + 1000, 7);
    finish(b);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, mock_sys_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_new_conn_is_empty),
        T(test_echo_exact_bytes),
        T(test_short_reads_every_length),
        T(test_short_writes_every_length),
        T(test_short_writes_in_one_call),
        T(test_short_write_keeps_remainder_owed),
        T(test_buffer_full_stops_reading),
        T(test_half_drained_buffer_reads_again),
        T(test_eof_with_pending_output_flushes_then_closes),
        T(test_eof_with_pending_output_waits_for_writable),
        T(test_eof_nothing_pending_closes),
        T(test_recv_errors_close),
        T(test_reset_with_pending_output_closes),
        T(test_send_reset_and_epipe_close),
        T(test_send_error_after_short_write_closes),
        T(test_recv_eagain_keeps_waiting),
        T(test_recv_eintr_keeps_connection),
        T(test_send_eagain_waits_for_writable),
        T(test_send_eintr_retried),
        T(test_writable_with_nothing_owed),
        T(test_stream_echoes_until_eof),
        T(test_stream_eof_with_pending_output),
        T(test_stream_reset_closes),
        T(test_stream_epipe_closes),
        T(test_buffer_held_only_while_bytes_are_owed),
        T(test_pooled_buffer_carries_only_its_own_bytes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

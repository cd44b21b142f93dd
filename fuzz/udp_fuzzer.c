/* udp_fuzzer.c - RFC 862's UDP echo (impl/udp.c), the way each server runs it.
 *
 * Built four times, over the simulated sockets of simsock.c and simdgram.c:
 *   udp_select, udp_poll, udp_epoll: impl/loop.c with one backend, the UDP
 *     socket added by echo_loop_add_udp(), alone (listen_fd -1) or beside a
 *     TCP listener in the same loop, as the event-loop servers run;
 *   udp_serve (UDP_FUZZ_SERVE): echo_udp_serve(), the poll loop that
 *     echo-blocking and echo-threaded run in a thread of their own.
 * A target of its own rather than more operations in loop_fuzzer.c: that
 * format has no free opcode or value left, and its seed corpora must keep
 * their meaning.
 *
 * Input: one configuration byte:
 *   bits 0-1  the socket: 0 IPv4, 1 IPv6 only, 2-3 IPv6 dual-stack
 *   bits 2-3  the server's port: 7, 7777, 40000, 1000
 *   bit 4     loop targets: a TCP listener in the same loop (max_conns 4)
 * then operations, one byte each, low 3 bits the operation and high 5 bits
 * its argument a:
 *   0 STEP   1 + a % 4 loop steps (udp_serve: the server's next 1 + a % 4
 *            waits return)
 *   1 DGRAM  a datagram to local address a % 4: the next byte is its source
 *            (format at the top of simdgram.c), the next 2 its size
 *   2 BURST  a + 1 datagrams, the i-th of i * 37 bytes from source byte
 *            s + i (s: the next byte) to local address i % 4
 *   3 ICMP   an ICMP error is queued: ECONNREFUSED (a even), EHOSTUNREACH
 *   4 TCP    (with a listener) a client connects, sends (a + 1) * 100
 *            bytes and half-closes
 *   5..7     nothing
 * The outcome bytes of the server's calls come from the same input as they
 * happen (simsock.c, simdgram.c). When the input ends every outcome is
 * benign, and within a bounded number of steps every datagram must have
 * been received and every reply owed sent. fuzz/make_seeds.py writes seeds
 * in this format. */
#include "fuzz.h"
#include "simsock.h"

#include "echo.h"
#ifndef UDP_FUZZ_SERVE
#include "loop.h"
#endif

#include <errno.h>
#include <string.h>

#define MAX_INPUT 4096
#define MAX_STEPS 1024
#define DRAIN_STEPS 4096 /* SIM_MAX_DGRAMS / ECHO_UDP_BATCH, many times over */
#define MAX_CONNS 4

enum { OP_STEP, OP_DGRAM, OP_BURST, OP_ICMP, OP_TCP };

static char err[ECHO_ERR_LEN];
static unsigned steps;
static int tcp;

static int steps_run(unsigned n);

static enum sim_udp_family family_of(unsigned cfg)
{
    static const enum sim_udp_family f[4] = {SIM_UDP_V4, SIM_UDP_V6, SIM_UDP_DUAL, SIM_UDP_DUAL};

    return f[cfg & 3];
}

/* One operation of the script; 0 when the script has ended. */
static int script_op(void)
{
    unsigned b, a;

    if (fz_remaining() == 0 || steps >= MAX_STEPS)
        return 0;
    b = fz_u8();
    a = b >> 3;
    switch (b & 7) {
    case OP_STEP:
        return steps_run(1 + a % 4);
    case OP_DGRAM: {
        unsigned src = fz_u8();

        sim_udp_send(src, a, fz_u16());
        break;
    }
    case OP_BURST: {
        unsigned src = fz_u8();

        for (unsigned i = 0; i <= a; i++)
            sim_udp_send(src + i, i, i * 37);
        break;
    }
    case OP_ICMP:
        sim_udp_icmp(a % 2 ? EHOSTUNREACH : ECONNREFUSED);
        break;
    case OP_TCP:
        if (tcp) {
            int c = sim_connect();

            if (c >= 0) {
                sim_client_send((unsigned)c, (a + 1) * 100);
                sim_client_shutdown((unsigned)c);
            }
        }
        break;
    }
    return 1;
}

#ifdef UDP_FUZZ_SERVE

const char echo_server_name[] = "udp_serve_fuzzer";

static unsigned turns, drain_waits;
static int drained, ended;

static int steps_run(unsigned n)
{
    turns = n;
    steps += n;
    return 1;
}

/* echo_udp_serve's poll: the peers act until the script gives the server a
 * turn; once the script is over, the drain, and the end of the loop. */
static int serve_wait(void)
{
    while (turns == 0 && !drained && script_op())
        ;
    if (turns > 0) {
        turns--;
        return 1;
    }
    if (!drained) {
        sim_drain();
        drained = 1;
    }
    if (sim_udp_done()) {
        ended = 1;
        return 0;
    }
    if (++drain_waits == DRAIN_STEPS) {
        sim_udp_dump();
        fprintf(stderr, "simsock: udp: datagrams still queued or owed after %u waits\n",
                DRAIN_STEPS);
        abort();
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned cfg;
    int fd, rc;

    if (size > MAX_INPUT)
        return 0;
    fz_init(data, size);
    cfg = fz_u8();
    sim_reset(SIM_NONBLOCKING, MAX_CONNS);
    fd = sim_udp(family_of(cfg), (cfg >> 2) & 3);
    steps = turns = drain_waits = 0;
    tcp = drained = ended = 0;
    err[0] = '\0';
    sim_set_wait_hook(serve_wait);
    sim_enter();
    rc = echo_udp_serve(fd, err);
    sim_leave();
    /* It only ever returns on a failure, which says what failed: here the
     * end of the run, an injected poll failure, or getsockname's. */
    CHECK_EQ(rc, ECHO_ERR, "echo_udp_serve");
    CHECK(err[0] != '\0');
    if (!ended && sim_wait_failures() == 0 && strstr(err, "getsockname") == NULL) {
        fprintf(stderr, "simsock: udp: echo_udp_serve stopped on its own: %s\n", err);
        abort();
    }
    sim_finish();
    return 0;
}

#else

static struct echo_loop loop;
static int failed; /* an injected wait failure ended the loop */

static int step(void)
{
    int rc;

    sim_enter();
    rc = echo_loop_step(&loop, 0, err);
    sim_leave();
    if (rc != ECHO_OK)
        CHECK(err[0] != '\0');
    return rc;
}

static int steps_run(unsigned n)
{
    for (unsigned i = 0; i < n; i++, steps++)
        if (step() != ECHO_OK) {
            failed = 1;
            return 0;
        }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned cfg;
    int ufd, rc, ok;

    if (size > MAX_INPUT)
        return 0;
    fz_init(data, size);
    cfg = fz_u8();
    tcp = (cfg >> 4) & 1;
    steps = 0;
    failed = 0;
    sim_reset(SIM_NONBLOCKING, MAX_CONNS);
    err[0] = '\0';
    {
        int lfd = tcp ? sim_listener() : -1;

        sim_enter();
        rc = echo_loop_init(&loop, lfd, MAX_CONNS, err);
        sim_leave();
    }
    if (rc != ECHO_OK) {
        CHECK(err[0] != '\0');
        sim_finish();
        return 0;
    }
    ufd = sim_udp(family_of(cfg), (cfg >> 2) & 3);
    sim_enter();
    rc = echo_loop_add_udp(&loop, ufd, err);
    sim_leave();
    ok = rc == ECHO_OK;
    if (!ok)
        CHECK(err[0] != '\0');

    while (ok && script_op())
        ;
    ok = ok && !failed;

    if (ok) {
        unsigned i;

        sim_drain();
        for (i = 0; i < DRAIN_STEPS && !(sim_done() && sim_udp_done()); i++) {
            sim_tick(ECHO_ACCEPT_BACKOFF_MS / 2);
            CHECK_EQ(step(), ECHO_OK, err);
        }
        if (i == DRAIN_STEPS) {
            sim_dump();
            sim_udp_dump();
        }
        CHECK_LT(i, DRAIN_STEPS, "datagrams or clients still unserved after the drain");
    }
    sim_teardown();
    sim_enter();
    echo_loop_free(&loop);
    sim_leave();
    sim_finish();
    return 0;
}

#endif

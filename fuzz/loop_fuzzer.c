/* loop_fuzzer.c - the event loop of echo-select, echo-poll and echo-epoll.
 *
 * Built three times (select_fuzzer, poll_fuzzer, epoll_fuzzer), each time
 * with impl/loop.c, impl/conn.c, impl/net.c and one backend file, all
 * unchanged, over the simulated sockets of simsock.c. The input is a script
 * of client actions and loop steps; the outcome of every call the server
 * makes is read from the same input as it happens.
 *
 * Input: one byte max_conns (8 - b % 8), then operations, one byte each,
 * low 3 bits the operation and high 5 bits its argument a (a client index,
 * modulo the clients that exist):
 *   0 STEP      1 + a % 4 calls of echo_loop_step(timeout 0)
 *   1 CONNECT   1 + a % 4 new clients wait in the listen queue
 *   2 SEND      client a sends N bytes (N: next 2 bytes, big-endian)
 *   3 READ      client a, if stalled, reads N bytes (N: next 2 bytes)
 *   4 STALL     client a stops reading (or, if stalled, resumes)
 *   5 SHUTDOWN  client a half-closes
 *   6 RESET     client a resets
 *   7 TICK      the clock moves (a + 1) * 8 ms (accept back-off)
 * The outcome bytes the server's calls consume are documented in simsock.c.
 * When the input ends, every client half-closes and reads everything, and
 * the loop must then serve each one to the end: all bytes echoed, then
 * closed. fuzz/make_seeds.py writes seeds in this format. */
#include "fuzz.h"
#include "loop.h"
#include "simsock.h"

#include <string.h>

#define MAX_INPUT 4096
#define MAX_STEPS 1024   /* loop steps the input may ask for */
#define DRAIN_STEPS 4096 /* enough for every client to finish, with margin */

enum { OP_STEP, OP_CONNECT, OP_SEND, OP_READ, OP_STALL, OP_SHUTDOWN, OP_RESET, OP_TICK };

static struct echo_loop loop;
static char err[ECHO_ERR_LEN];

static int step(void)
{
    int rc;

    sim_enter();
    rc = echo_loop_step(&loop, 0, err);
    sim_leave();
    if (rc != ECHO_OK)
        CHECK(err[0] != '\0'); /* a failure always says why */
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned max_conns, steps = 0;
    int rc, ok = 1;

    if (size > MAX_INPUT)
        return 0;
    fz_init(data, size);
    max_conns = 8 - fz_u8() % 8;
    sim_reset(SIM_NONBLOCKING, max_conns);
    err[0] = '\0';
    {
        int lfd = sim_listener();

        sim_enter();
        rc = echo_loop_init(&loop, lfd, max_conns, err);
        sim_leave();
    }
    if (rc != ECHO_OK) {
        CHECK(err[0] != '\0');
        sim_finish(); /* whatever init got, it gave back */
        return 0;
    }

    while (ok && fz_remaining() > 0 && steps < MAX_STEPS) {
        unsigned b = fz_u8(), a = b >> 3;

        switch (b & 7) {
        case OP_STEP:
            for (unsigned i = 0; i <= a % 4 && ok; i++, steps++)
                ok = step() == ECHO_OK;
            break;
        case OP_CONNECT:
            for (unsigned i = 0; i <= a % 4; i++)
                (void)sim_connect();
            break;
        case OP_SEND:
            sim_client_send(a, fz_u16());
            break;
        case OP_READ:
            sim_client_read(a, fz_u16());
            break;
        case OP_STALL:
            sim_client_stall(a);
            break;
        case OP_SHUTDOWN:
            sim_client_shutdown(a);
            break;
        case OP_RESET:
            sim_client_reset(a);
            break;
        case OP_TICK:
            sim_tick((a + 1) * 8);
            break;
        }
    }

    if (ok) {
        unsigned i;

        sim_drain();
        for (i = 0; i < DRAIN_STEPS && !sim_done(); i++) {
            sim_tick(ECHO_ACCEPT_BACKOFF_MS / 2);
            CHECK_EQ(step(), ECHO_OK, err);
        }
        if (i == DRAIN_STEPS)
            sim_dump();
        CHECK_LT(i, DRAIN_STEPS, "clients still connected or queued after the drain");
    }
    sim_teardown();
    sim_enter();
    echo_loop_free(&loop);
    sim_leave();
    sim_finish();
    return 0;
}

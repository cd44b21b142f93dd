/* e2e_fuzzer.c - echo-epoll's loop over real loopback sockets.
 *
 * The server is the real thing with nothing simulated: impl/loop.c and
 * impl/echo-epoll.c in a thread of the fuzzing process, listening on
 * 127.0.0.1 on a free port. The input is a script for a few clients that
 * talk to it through the kernel; every wait is bounded, so a server that
 * stops answering fails the input instead of hanging it.
 *
 * Input: operations, one byte each, low 3 bits the operation and high 5
 * bits its argument a (a client index, modulo the open clients):
 *   0 OPEN      a new client connects (at most MAX_OPEN at once)
 *   1 WRITE     client a writes (next byte + 1) * 16 bytes
 *   2 READ      client a reads up to (next byte + 1) * 16 bytes, waiting
 *               at most a millisecond for them
 *   3 SHUTDOWN  client a half-closes
 *   4 RESET     client a resets (SO_LINGER 0) and is gone
 *   5 PAUSE     (a + 1) * 50 microseconds pass
 *   6, 7        client a writes a + 1 bytes
 * When the input ends every client half-closes and reads to the end: it
 * must get back exactly what it sent, then a clean end of stream (FIN, not
 * a reset). */
#include "fuzz.h"
#include "loop.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_INPUT 512
#define MAX_OPEN 4
#define MAX_BYTES (16 * 1024) /* written per client per input */
#define READ_WAIT_MS 1
#define FINISH_WAIT_MS 5000

struct client {
    int fd;
    unsigned id;
    int shut;
    size_t sent, echoed;
};

static unsigned port;
static unsigned next_id;

static unsigned char pattern(unsigned id, size_t i)
{
    uint32_t x = (uint32_t)i * 2654435761u + id * 40503u;

    return (unsigned char)(x >> 24 ^ x >> 13);
}

static void *serve(void *arg)
{
    static struct echo_loop l;
    char err[ECHO_ERR_LEN] = "";
    int fd = *(int *)arg;

    CHECK_EQ(echo_loop_init(&l, fd, 1024, err), ECHO_OK, err);
    for (;;)
        CHECK_EQ(echo_loop_step(&l, -1, err), ECHO_OK, err);
    return NULL;
}

static void start_server(void)
{
    static int fd;
    struct echo_config cfg;
    char err[ECHO_ERR_LEN] = "", addr[64];
    pthread_t tid;

    /* A client that resets must cost the server one connection, never the
     * process: what echo_signals_init() does for the real servers. */
    CHECK(signal(SIGPIPE, SIG_IGN) != SIG_ERR);
    memset(&cfg, 0, sizeof(cfg));
    strcpy(cfg.host, "127.0.0.1");
    cfg.port = 0;
    fd = echo_listen(&cfg, addr, sizeof(addr), &port, err);
    CHECK_LE(0, fd, err);
    CHECK_EQ(pthread_create(&tid, NULL, serve, &fd), 0, "pthread_create");
    CHECK_EQ(pthread_detach(tid), 0, "pthread_detach");
}

static long long now_ms(void)
{
    struct timespec ts;

    CHECK_EQ(clock_gettime(CLOCK_MONOTONIC, &ts), 0, "clock_gettime");
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_for(int fd, short events, int ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int n;

    do
        n = poll(&p, 1, ms);
    while (n < 0 && errno == EINTR);
    CHECK_LE(0, n, "poll");
    return n;
}

static void open_client(struct client *c)
{
    struct sockaddr_in sin;
    int one = 1;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    memset(c, 0, sizeof(*c));
    c->id = next_id++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK_LE(0, c->fd, strerror(errno));
    (void)setsockopt(c->fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        CHECK_EQ(errno, EINPROGRESS, strerror(errno));
        CHECK_EQ(wait_for(c->fd, POLLOUT, FINISH_WAIT_MS), 1, "connect did not finish");
    }
}

static void write_some(struct client *c, size_t n)
{
    unsigned char buf[4096];
    ssize_t w;

    if (c->shut)
        return;
    if (n > MAX_BYTES - c->sent)
        n = MAX_BYTES - c->sent;
    if (n > sizeof(buf))
        n = sizeof(buf);
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        buf[i] = pattern(c->id, c->sent + i);
    w = send(c->fd, buf, n, MSG_NOSIGNAL);
    if (w < 0)
        CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    else
        c->sent += (size_t)w;
}

/* Reads what is there (waiting up to ms for the first byte); returns the
 * recv() result. The bytes must continue the client's own stream. */
static ssize_t read_some(struct client *c, size_t max, int ms)
{
    unsigned char buf[4096];
    ssize_t n;

    if (max > sizeof(buf))
        max = sizeof(buf);
    if (wait_for(c->fd, POLLIN, ms) == 0)
        return -1;
    n = recv(c->fd, buf, max, 0);
    if (n < 0 && errno == ECONNRESET) {
        fprintf(stderr, "client %u: reset by the server after %zu of %zu bytes echoed\n",
                c->id, c->echoed, c->sent);
        abort();
    }
    if (n < 0) {
        CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
        return -1;
    }
    CHECK_LE(c->echoed + (size_t)n, c->sent, "echoed more than the client sent");
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] != pattern(c->id, c->echoed + (size_t)i)) {
            fprintf(stderr, "client %u: echoed byte %zu differs from what was sent\n",
                    c->id, c->echoed + (size_t)i);
            abort();
        }
    c->echoed += (size_t)n;
    return n;
}

/* Closing with SO_LINGER 0 sends a reset and leaves no TIME_WAIT behind,
 * so millions of inputs do not run the machine out of ports. */
static void abort_close(struct client *c)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    CHECK_EQ(setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0, strerror(errno));
    CHECK_EQ(close(c->fd), 0, strerror(errno));
    c->fd = -1;
}

static void finish(struct client *c)
{
    long long deadline = now_ms() + FINISH_WAIT_MS;

    if (!c->shut)
        CHECK_EQ(shutdown(c->fd, SHUT_WR), 0, strerror(errno));
    for (;;) {
        long long left = deadline - now_ms();
        ssize_t n;

        if (left <= 0) {
            fprintf(stderr, "client %u: got %zu of %zu bytes back, then nothing for %d ms\n",
                    c->id, c->echoed, c->sent, FINISH_WAIT_MS);
            abort();
        }
        if (wait_for(c->fd, POLLIN, (int)left) == 0)
            continue;
        n = read_some(c, 4096, 0);
        if (n == 0)
            break;
    }
    CHECK_EQ(c->echoed, c->sent, "end of stream before every byte came back");
    abort_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct client cl[MAX_OPEN];
    unsigned n = 0;

    if (size > MAX_INPUT)
        return 0;
    pthread_once(&once, start_server);
    fz_init(data, size);

    while (fz_remaining() > 0) {
        unsigned b = fz_u8(), a = b >> 3, op = b & 7;
        struct client *c = n ? &cl[a % n] : NULL;

        if (op == 0) {
            if (n < MAX_OPEN)
                open_client(&cl[n++]);
            continue;
        }
        if (op == 5) {
            struct timespec ts = {0, (long)(a + 1) * 50000};

            (void)nanosleep(&ts, NULL);
            continue;
        }
        if (c == NULL)
            continue;
        switch (op) {
        case 1:
            write_some(c, (fz_u8() + 1) * 16);
            break;
        case 2:
            (void)read_some(c, (fz_u8() + 1) * 16, READ_WAIT_MS);
            break;
        case 3:
            if (!c->shut)
                CHECK_EQ(shutdown(c->fd, SHUT_WR), 0, strerror(errno));
            c->shut = 1;
            break;
        case 4:
            abort_close(c);
            *c = cl[--n];
            break;
        default:
            write_some(c, a + 1);
            break;
        }
    }
    for (unsigned i = 0; i < n; i++)
        finish(&cl[i]);
    return 0;
}

/* simsock.c - the simulated socket layer (see simsock.h).
 *
 * Outcome bytes, one per call that has a choice to make; 0 is always the
 * benign choice, so an exhausted input runs every connection to its end:
 *   recv/send:  0 all it can; 1..0xDF at most that many bytes;
 *               0xE0..0xEF at most (b - 0xDF) * 512; 0xF0..0xF7 EINTR;
 *               0xF8..0xFF EAGAIN (EINTR on a blocking socket)
 *   accept4:    0..0xEF a connection; 0xF0..0xF3 EINTR; 0xF4..0xF7
 *               ECONNABORTED (the queued client is dropped); 0xF8..0xFB
 *               EMFILE; 0xFC..0xFD ENFILE; 0xFE ENOBUFS; 0xFF EPROTO
 *   open, epoll_create1, epoll_ctl ADD: 0xF8..0xFF fails (EMFILE/ENOMEM)
 *   wait:       0 every ready descriptor; 1..0xBF a rotating window of the
 *               ready ones; 0xC0..0xDF spurious (every watched descriptor,
 *               ready or not); 0xE0..0xEF timeout; 0xF0..0xFB EINTR;
 *               0xFC..0xFF failure (ENOMEM/EINVAL)
 *
 * The UDP socket's outcome bytes (getsockname, recvmsg, sendmsg) and the
 * source byte of a datagram are documented at the top of simdgram.c. */
#include "simsock.h"
#include "simsock_impl.h"

#include "echo.h"
#include "fuzz.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIM_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SIM_ASAN 1
#endif
#ifdef SIM_ASAN
#include <sanitizer/asan_interface.h>
#endif

ssize_t __real_recv(int, void *, size_t, int);
ssize_t __real_send(int, const void *, size_t, int);
int __real_accept4(int, struct sockaddr *, socklen_t *, int);
int __real_close(int);
int __real_open(const char *, int, ...);
int __real_setsockopt(int, int, int, const void *, socklen_t);
int __real_poll(struct pollfd *, nfds_t, int);
int __real_select(int, fd_set *, fd_set *, fd_set *, struct timeval *);
int __real_epoll_create1(int);
int __real_epoll_ctl(int, int, int, struct epoll_event *);
int __real_epoll_wait(int, struct epoll_event *, int, int);
int __real_clock_gettime(clockid_t, struct timespec *);

#define SIM_POOL 80
#define SIM_FD_LIMIT FD_SETSIZE
#define PAT_LEN 65521 /* prime: a pattern shift never lines up by chance */
#define UNLIMITED ((uint64_t)1 << 62)

/* enum sim_kind (simsock_impl.h) by name. */
static const char *const kind_name[] = {"not simulated", "never handed out", "closed",
                                        "listener", "client", "reserve", "epoll", "udp"};

struct sim_desc {
    enum sim_kind kind;
    int client;   /* K_CLIENT: index into clients[] */
    int nonblock; /* accepted with SOCK_NONBLOCK */
    int ep_in;    /* in the epoll interest list */
    uint32_t ep_events;
    epoll_data_t ep_data;
};

enum cl_state { CL_QUEUED, CL_OPEN, CL_CLOSED, CL_ABORTED };

struct sim_client {
    enum cl_state state;
    int fd;
    int shut_wr;     /* the client half-closed: EOF after its data */
    int reset;       /* the client reset the connection */
    int excused;     /* an injected resource failure: an abrupt close is fine */
    int unserved_ok; /* accepted while the reserve was spent: closed at once */
    int touched;     /* the server called recv or send on it */
    int eof_seen;    /* recv returned 0 to the server */
    int stalled;     /* not reading: send() only has `space` bytes of room */
    uint64_t space;
    uint64_t sent, read, echoed;
};

static struct sim_desc desc[SIM_FD_LIMIT];
static int pool[SIM_POOL];
static int pool_ready, pool_used;
static unsigned char pat[PAT_LEN];

static struct sim_client clients[SIM_MAX_CLIENTS];
static unsigned nclients;
static int queue[SIM_MAX_CLIENTS];
static unsigned q_head, q_tail;
static unsigned n_open, reserves_open, max_conns;
static enum sim_mode mode;
static int draining, tearing_down;
static long long clock_ms;
static int (*block_hook)(void);
static _Thread_local int active;
static int (*wait_hook)(void);
static unsigned wait_fails;

int simsock_tracing; /* SIMSOCK_TRACE=1: every simulated call on stderr */

static void pool_init(void)
{
    uint32_t x = 0x9e3779b9u;

    for (int i = 0; i < SIM_POOL; i++) {
        int fd = __real_open("/dev/null", O_RDONLY | O_CLOEXEC);

        CHECK(fd >= 0);
        CHECK_LT(fd, SIM_FD_LIMIT, "simulated descriptors must fit an fd_set");
        pool[i] = fd;
        desc[fd].kind = K_FREE;
    }
    for (size_t i = 0; i < PAT_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pat[i] = (unsigned char)x;
    }
    pool_ready = 1;
    simsock_tracing = getenv("SIMSOCK_TRACE") != NULL;
}

void sim_reset(enum sim_mode m, unsigned conns)
{
    if (!pool_ready)
        pool_init();
    for (int i = 0; i < SIM_POOL; i++)
        memset(&desc[pool[i]], 0, sizeof(desc[0])), desc[pool[i]].kind = K_FREE;
    pool_used = 0;
    memset(clients, 0, sizeof(clients[0]) * nclients);
    nclients = 0;
    q_head = q_tail = 0;
    n_open = reserves_open = 0;
    max_conns = conns;
    mode = m;
    draining = tearing_down = 0;
    clock_ms = 1000000;
    block_hook = NULL;
    wait_hook = NULL;
    wait_fails = 0;
    simdgram_reset();
}

void sim_enter(void)
{
    active = 1;
}

void sim_leave(void)
{
    active = 0;
}

void sim_set_block_hook(int (*hook)(void))
{
    block_hook = hook;
}

void sim_set_wait_hook(int (*hook)(void))
{
    wait_hook = hook;
}

unsigned sim_wait_failures(void)
{
    return wait_fails;
}

struct sim_desc *simsock_fd(int fd)
{
    if (fd < 0 || fd >= SIM_FD_LIMIT || desc[fd].kind == K_NONE)
        return NULL;
    return &desc[fd];
}

/* Every use of a descriptor by the server must name one it holds. */
struct sim_desc *simsock_held(int fd, enum sim_kind kind, const char *call)
{
    struct sim_desc *d = &desc[fd];

    if (d->kind != kind) {
        fprintf(stderr, "simsock: %s(%d): descriptor is %s, expected %s\n", call, fd,
                kind_name[d->kind], kind_name[kind]);
        abort();
    }
    return d;
}

int simsock_alloc_fd(enum sim_kind kind)
{
    int fd = -1;

    if (pool_used < SIM_POOL) {
        fd = pool[pool_used++];
    } else {
        /* Out of fresh numbers: reuse a closed one, as the kernel would. A
         * double close of that number is then no longer caught, but a long
         * input must not run out of descriptors the server gave back. */
        for (int i = 0; i < SIM_POOL && fd < 0; i++)
            if (desc[pool[i]].kind == K_CLOSED)
                fd = pool[i];
        if (fd < 0)
            return -1;
    }
    memset(&desc[fd], 0, sizeof(desc[fd]));
    desc[fd].kind = kind;
    desc[fd].client = -1;
    return fd;
}

int sim_listener(void)
{
    int fd = simsock_alloc_fd(K_LISTEN);

    CHECK(fd >= 0);
    return fd;
}

int sim_connect(void)
{
    if (nclients == SIM_MAX_CLIENTS)
        return -1;
    memset(&clients[nclients], 0, sizeof(clients[0]));
    clients[nclients].state = CL_QUEUED;
    clients[nclients].fd = -1;
    queue[q_tail++] = (int)nclients;
    return (int)nclients++;
}

int sim_attach(void)
{
    int i = sim_connect(), fd = simsock_alloc_fd(K_CLIENT);

    CHECK(i >= 0 && fd >= 0);
    q_head++;
    clients[i].state = CL_OPEN;
    clients[i].fd = fd;
    desc[fd].client = i;
    n_open++;
    return fd;
}

unsigned sim_clients(void)
{
    return nclients;
}

static struct sim_client *pick(unsigned i)
{
    return nclients ? &clients[i % nclients] : NULL;
}

/* A client whose connection still exists from its own point of view. */
static int live(const struct sim_client *c)
{
    return c != NULL && (c->state == CL_QUEUED || c->state == CL_OPEN) && !c->reset;
}

void sim_client_send(unsigned i, unsigned n)
{
    struct sim_client *c = pick(i);

    if (live(c) && !c->shut_wr)
        c->sent += n;
}

void sim_client_stall(unsigned i)
{
    struct sim_client *c = pick(i);

    if (live(c)) {
        c->stalled = !c->stalled;
        c->space = 0;
    }
}

void sim_client_read(unsigned i, unsigned n)
{
    struct sim_client *c = pick(i);

    if (live(c))
        c->space += n;
}

void sim_client_shutdown(unsigned i)
{
    struct sim_client *c = pick(i);

    if (live(c))
        c->shut_wr = 1;
}

void sim_client_reset(unsigned i)
{
    struct sim_client *c = pick(i);

    if (live(c))
        c->reset = 1;
}

int sim_client_closed(unsigned i)
{
    return clients[i].state == CL_CLOSED;
}

void sim_tick(unsigned ms)
{
    clock_ms += ms;
}

void sim_drain(void)
{
    draining = 1;
    for (unsigned i = 0; i < nclients; i++) {
        clients[i].shut_wr = 1;
        clients[i].stalled = 0;
    }
}

int simsock_draining(void)
{
    return draining;
}

int sim_done(void)
{
    return q_head == q_tail && n_open == 0;
}

void sim_dump(void)
{
    static const char *const st[] = {"queued", "open", "closed", "aborted"};

    fprintf(stderr, "simsock: %u clients, %u queued, %u open, clock %lld ms\n", nclients,
            q_tail - q_head, n_open, clock_ms);
    for (unsigned i = 0; i < nclients; i++) {
        const struct sim_client *c = &clients[i];

        fprintf(stderr,
                "  client %u: %s fd %d sent %llu read %llu echoed %llu%s%s%s%s%s\n", i,
                st[c->state], c->fd, (unsigned long long)c->sent,
                (unsigned long long)c->read, (unsigned long long)c->echoed,
                c->shut_wr ? " shut_wr" : "", c->reset ? " reset" : "",
                c->eof_seen ? " eof_seen" : "", c->stalled ? " stalled" : "",
                c->fd >= 0 && desc[c->fd].kind == K_CLIENT && desc[c->fd].ep_in ? " in-epoll"
                                                                                 : "");
    }
}

void sim_teardown(void)
{
    tearing_down = 1;
}

void sim_finish(void)
{
    for (int i = 0; i < pool_used; i++) {
        struct sim_desc *d = &desc[pool[i]];

        if (d->kind != K_CLOSED && d->kind != K_LISTEN && d->kind != K_UDP) {
            fprintf(stderr, "simsock: descriptor %d (%s) was never closed\n", pool[i],
                    kind_name[d->kind]);
            abort();
        }
    }
}

/* Outcome of one recv/send: a cap on the bytes moved, or an errno. */
static int io_outcome(size_t *cap)
{
    unsigned b = draining ? 0 : fz_u8();

    *cap = (size_t)-1;
    if (b == 0)
        return 0;
    if (b < 0xE0) {
        *cap = b;
        return 0;
    }
    if (b < 0xF0) {
        *cap = (size_t)(b - 0xDF) * 512;
        return 0;
    }
    if (b < 0xF8 || mode == SIM_BLOCKING)
        return EINTR;
    return EAGAIN;
}

void simsock_pattern_fill(unsigned id, uint64_t off, unsigned char *dst, size_t n)
{
    size_t pos = (size_t)((off + (uint64_t)id * 4099) % PAT_LEN);

    while (n > 0) {
        size_t k = PAT_LEN - pos < n ? PAT_LEN - pos : n;

        memcpy(dst, pat + pos, k);
        dst += k;
        n -= k;
        pos = 0;
    }
}

/* How many of the n bytes at src are the pattern of id from off on. */
size_t simsock_pattern_diff(unsigned id, uint64_t off, const unsigned char *src, size_t n)
{
    size_t pos = (size_t)((off + (uint64_t)id * 4099) % PAT_LEN), done = 0;

    while (done < n) {
        size_t k = PAT_LEN - pos < n - done ? PAT_LEN - pos : n - done;

        if (memcmp(src + done, pat + pos, k) != 0) {
            size_t j = 0;

            while (src[done + j] == pat[pos + j])
                j++;
            return done + j;
        }
        done += k;
        pos = 0;
    }
    return n;
}

static void pattern_check(unsigned id, uint64_t off, const unsigned char *src, size_t n)
{
    size_t j = simsock_pattern_diff(id, off, src, n);

    if (j < n) {
        fprintf(stderr,
                "simsock: client %u: echoed byte %llu is 0x%02x, the client sent 0x%02x "
                "there: the echo is not a prefix of what was sent\n",
                id, (unsigned long long)(off + j), src[j],
                pat[(size_t)((off + j + (uint64_t)id * 4099) % PAT_LEN)]);
        abort();
    }
}

void simsock_check_addressable(const void *buf, size_t len, const char *call)
{
#ifdef SIM_ASAN
    /* Both ends rather than the whole range: the 64 KiB scan would cost a
     * third of the run, and an overflow shows at the far end. */
    const char *p = buf;

    if (__asan_address_is_poisoned(p) || __asan_address_is_poisoned(p + len - 1)) {
        fprintf(stderr, "simsock: %s: buffer of %zu bytes is not all addressable\n", call,
                len);
        abort();
    }
#else
    (void)buf;
    (void)len;
    (void)call;
#endif
}

ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags)
{
    struct sim_client *c;
    size_t cap, n;
    int e;

    if (simsock_fd(fd) == NULL)
        return __real_recv(fd, buf, len, flags);
    c = &clients[simsock_held(fd, K_CLIENT, "recv")->client];
    CHECK_LT(0, len, "recv() of 0 bytes returns 0, which reads as end of stream");
    CHECK_EQ(desc[fd].nonblock, mode == SIM_NONBLOCKING, "socket blocking mode");
    simsock_check_addressable(buf, len, "recv");
    c->touched = 1;
    while (mode == SIM_BLOCKING && !c->reset && !c->shut_wr && c->read == c->sent)
        if (block_hook == NULL || !block_hook())
            c->shut_wr = 1; /* the script is over: the client finishes */
    if (c->reset) {
        errno = ECONNRESET;
        return -1;
    }
    if (c->read == c->sent && !c->shut_wr) {
        errno = EAGAIN;
        return -1;
    }
    e = io_outcome(&cap);
    if (e != 0) {
        errno = e;
        return -1;
    }
    n = c->sent - c->read < len ? (size_t)(c->sent - c->read) : len;
    if (n > cap)
        n = cap;
    if (flags & MSG_PEEK) {
        /* A look at what waits: the next recv() gets the same bytes. A
         * peeked EOF is the server's to act on as a read one. */
        CHECK_EQ(flags, MSG_PEEK, "recv flags");
        if (n > 0)
            simsock_pattern_fill((unsigned)(c - clients), c->read, buf, n);
        else
            c->eof_seen = 1;
        TRACE("recv(%d, %zu, MSG_PEEK) = %zu\n", fd, len, n);
        return (ssize_t)n;
    }
    CHECK_EQ(flags, 0, "recv flags");
    if (n == 0) {
        c->eof_seen = 1;
        TRACE("recv(%d) = 0 (EOF)\n", fd);
        return 0;
    }
    TRACE("recv(%d, %zu) = %zu\n", fd, len, n);
    simsock_pattern_fill((unsigned)(c - clients), c->read, buf, n);
    c->read += n;
    CHECK_LE(c->read - c->echoed, ECHO_BUF_SIZE,
             "bytes read but not yet echoed exceed the per-connection bound");
    return (ssize_t)n;
}

ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags)
{
    struct sim_client *c;
    size_t cap, n;
    int e;

    if (simsock_fd(fd) == NULL)
        return __real_send(fd, buf, len, flags);
    c = &clients[simsock_held(fd, K_CLIENT, "send")->client];
    CHECK_LT(0, len, "send() of 0 bytes");
    CHECK_EQ(desc[fd].nonblock, mode == SIM_NONBLOCKING, "socket blocking mode");
    simsock_check_addressable(buf, len, "send");
    c->touched = 1;
    if (c->reset) {
        errno = (fz_u8() & 1) ? ECONNRESET : EPIPE;
        return -1;
    }
    if (mode == SIM_NONBLOCKING && c->stalled && c->space == 0) {
        errno = EAGAIN;
        return -1;
    }
    e = io_outcome(&cap);
    if (e != 0) {
        errno = e;
        return -1;
    }
    n = len < cap ? len : cap;
    if (mode == SIM_NONBLOCKING && c->stalled && n > c->space)
        n = (size_t)c->space;
    CHECK_LE(c->echoed + n, c->read, "echoing bytes the server never read");
    TRACE("send(%d, %zu) = %zu\n", fd, len, n);
    pattern_check((unsigned)(c - clients), c->echoed, buf, n);
    c->echoed += n;
    if (c->stalled)
        c->space -= n;
    return (ssize_t)n;
}

int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    struct sim_client *c;
    unsigned b;
    int cfd;

    if (simsock_fd(fd) == NULL)
        return __real_accept4(fd, addr, addrlen, flags);
    simsock_held(fd, K_LISTEN, "accept4");
    if (q_head == q_tail) {
        errno = EAGAIN;
        return -1;
    }
    b = draining ? 0 : fz_u8();
    if (b >= 0xF0) {
        static const int errs[16] = {EINTR,  EINTR,  EINTR,  EINTR,  ECONNABORTED,
                                     ECONNABORTED, ECONNABORTED, ECONNABORTED,
                                     EMFILE, EMFILE, EMFILE, EMFILE, ENFILE, ENFILE,
                                     ENOBUFS, EPROTO};
        errno = errs[b - 0xF0];
        TRACE("accept4() = -1 (%s)\n", strerror(errno));
        if (errno == ECONNABORTED) /* the kernel dropped the queued client */
            clients[queue[q_head++]].state = CL_ABORTED;
        return -1;
    }
    cfd = simsock_alloc_fd(K_CLIENT);
    if (cfd < 0) {
        errno = EMFILE;
        return -1;
    }
    c = &clients[queue[q_head]];
    desc[cfd].client = queue[q_head++];
    desc[cfd].nonblock = (flags & SOCK_NONBLOCK) != 0;
    c->state = CL_OPEN;
    c->fd = cfd;
    c->unserved_ok = reserves_open == 0;
    TRACE("accept4() = %d: client %d\n", cfd, desc[cfd].client);
    n_open++;
    if (addr != NULL && addrlen != NULL) {
        struct sockaddr_in sin = {.sin_family = AF_INET};
        socklen_t k = *addrlen < sizeof(sin) ? *addrlen : (socklen_t)sizeof(sin);

        memcpy(addr, &sin, k);
        *addrlen = sizeof(sin);
    }
    return cfd;
}

int __wrap_close(int fd)
{
    struct sim_desc *d = simsock_fd(fd);
    struct sim_client *c;

    if (d == NULL)
        return __real_close(fd);
    if (d->kind != K_CLIENT && d->kind != K_RESERVE && d->kind != K_EPOLL) {
        fprintf(stderr, "simsock: close(%d): descriptor is %s%s\n", fd, kind_name[d->kind],
                d->kind == K_CLOSED ? " already (closed twice)" : "");
        abort();
    }
    if (d->kind == K_RESERVE)
        reserves_open--;
    if (d->kind != K_CLIENT) {
        d->kind = K_CLOSED;
        return 0;
    }
    c = &clients[d->client];
    TRACE("close(%d): client %d\n", fd, d->client);
    d->kind = K_CLOSED;
    d->ep_in = 0; /* the last close drops the descriptor from every epoll set */
    c->state = CL_CLOSED;
    n_open--;
    if (c->reset || c->excused || tearing_down)
        return 0;
    if (!c->touched) {
        /* Refused without a word: only allowed while the server is full, or
         * when it took the connection off the queue to shed it (EMFILE). */
        if (!c->unserved_ok && n_open < max_conns) {
            fprintf(stderr,
                    "simsock: client %d refused with %u of %u connections open\n",
                    d->client, n_open, max_conns);
            abort();
        }
        return 0;
    }
    if (!c->eof_seen) {
        fprintf(stderr, "simsock: client %d: closed before the client finished sending\n",
                d->client);
        abort();
    }
    if (c->echoed != c->sent) {
        fprintf(stderr, "simsock: client %d: closed after echoing %llu of %llu bytes\n",
                d->client, (unsigned long long)c->echoed, (unsigned long long)c->sent);
        abort();
    }
    return 0;
}

int __wrap_open(const char *path, int flags, ...)
{
    mode_t m = 0;

    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;

        va_start(ap, flags);
        m = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (!active || strcmp(path, "/dev/null") != 0)
        return __real_open(path, flags, m);
    if (!draining && fz_u8() >= 0xF8) {
        errno = EMFILE;
        return -1;
    }
    {
        int fd = simsock_alloc_fd(K_RESERVE);

        if (fd < 0) {
            errno = EMFILE;
            return -1;
        }
        reserves_open++;
        return fd;
    }
}

int __wrap_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    if (simsock_fd(fd) == NULL)
        return __real_setsockopt(fd, level, name, val, len);
    simsock_held(fd, K_CLIENT, "setsockopt");
    return 0;
}

int __wrap_clock_gettime(clockid_t id, struct timespec *ts)
{
    if (!active || id != CLOCK_MONOTONIC)
        return __real_clock_gettime(id, ts);
    ts->tv_sec = clock_ms / 1000;
    ts->tv_nsec = (clock_ms % 1000) * 1000000;
    return 0;
}

/* Readiness as the kernel would see it (R_* in simsock_impl.h). */
static unsigned truth(int fd)
{
    const struct sim_desc *d = &desc[fd];
    const struct sim_client *c;

    if (d->kind == K_LISTEN)
        return q_head != q_tail ? R_IN : 0;
    if (d->kind == K_UDP)
        return simdgram_ready();
    if (d->kind != K_CLIENT)
        return 0;
    c = &clients[d->client];
    if (c->reset)
        return R_IN | R_OUT | R_HUP;
    return (c->sent > c->read || c->shut_wr ? R_IN : 0) |
           (!c->stalled || c->space > 0 ? R_OUT : 0);
}

/* The wait call's fate: 0 report ready ones (through the window), 1 report
 * every watched descriptor, 2 nothing, 3 EINTR, 4 failure. */
struct wait_plan {
    int what;
    unsigned w;
};

static struct wait_plan wait_plan(void)
{
    unsigned w = draining ? 0 : fz_u8();
    struct wait_plan p = {0, w};

    simdgram_wait(); /* a wait gives the kernel time to empty the send buffer */

    if (w >= 0xFC) {
        p.what = 4;
        wait_fails++;
    }
    else if (w >= 0xF0)
        p.what = 3;
    else if (w >= 0xE0)
        p.what = 2;
    else if (w >= 0xC0)
        p.what = 1;
    return p;
}

/* Whether the j-th of nready ready descriptors is reported: all of them, or
 * a window of them starting somewhere, so any one can be served first. */
static int in_window(unsigned w, unsigned j, unsigned nready)
{
    unsigned start, count;

    if (w == 0 || nready == 0)
        return 1;
    start = w % nready;
    count = 1 + (w / 7) % nready;
    return (j + nready - start) % nready < count;
}

static void check_watchable(int fd, const char *call)
{
    const struct sim_desc *d = simsock_fd(fd);

    if (d == NULL || (d->kind != K_CLIENT && d->kind != K_LISTEN && d->kind != K_UDP)) {
        fprintf(stderr, "simsock: %s: waits on descriptor %d (%s)\n", call, fd,
                d ? kind_name[d->kind] : "unknown");
        abort();
    }
}

int __wrap_poll(struct pollfd *fds, nfds_t n, int timeout)
{
    static unsigned stamp[SIM_FD_LIMIT], gen;
    struct wait_plan p;
    unsigned ready[SIM_POOL], nready = 0;
    int count = 0, ours = 0;

    for (nfds_t i = 0; i < n && !ours; i++)
        ours = simsock_fd(fds[i].fd) != NULL;
    if (!ours)
        return __real_poll(fds, n, timeout);
    if (timeout < 0 && wait_hook != NULL && !wait_hook()) {
        errno = ECANCELED;
        return -1;
    }
    gen++;
    for (nfds_t i = 0; i < n; i++) {
        if (fds[i].fd < 0)
            continue;
        check_watchable(fds[i].fd, "poll");
        CHECK(stamp[fds[i].fd] != gen); /* one pollfd per descriptor */
        stamp[fds[i].fd] = gen;
    }
    p = wait_plan();
    TRACE("poll(%zu fds): plan %d/%u\n", (size_t)n, p.what, p.w);
    if (p.what >= 3) {
        errno = p.what == 3 ? EINTR : ENOMEM;
        return -1;
    }
    for (nfds_t i = 0; i < n; i++) {
        unsigned t = fds[i].fd < 0 ? 0 : truth(fds[i].fd);
        short want = fds[i].events, r = 0;

        if (p.what == 1) {
            r = want & (POLLIN | POLLOUT);
        } else if (p.what == 0) {
            r = (short)(((t & R_IN) ? POLLIN : 0) | ((t & R_OUT) ? POLLOUT : 0));
            r &= want;
            if (t & R_HUP)
                r |= POLLHUP | POLLERR;
            if (t & R_ERR)
                r |= POLLERR;
        }
        fds[i].revents = r;
        if (r != 0 && nready < SIM_POOL)
            ready[nready++] = (unsigned)i;
    }
    for (unsigned j = 0; j < nready; j++) {
        if (p.what == 0 && !in_window(p.w, j, nready))
            fds[ready[j]].revents = 0;
        else
            count++;
    }
    return count;
}

int __wrap_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
    struct wait_plan p;
    fd_set ord, owr;
    int ours = 0, count = 0, ready[SIM_POOL];
    unsigned nready = 0, bits[SIM_POOL];

    for (int fd = 0; fd < nfds && fd < SIM_FD_LIMIT && !ours; fd++)
        ours = simsock_fd(fd) != NULL &&
               ((rd && FD_ISSET(fd, rd)) || (wr && FD_ISSET(fd, wr)));
    if (!ours)
        return __real_select(nfds, rd, wr, ex, tv);
    CHECK_LE(nfds, FD_SETSIZE, "select() past FD_SETSIZE");
    for (int fd = 0; fd < nfds; fd++)
        if ((rd && FD_ISSET(fd, rd)) || (wr && FD_ISSET(fd, wr)) || (ex && FD_ISSET(fd, ex)))
            check_watchable(fd, "select");
    p = wait_plan();
    TRACE("select(%d): plan %d/%u\n", nfds, p.what, p.w);
    if (p.what >= 3) {
        errno = p.what == 3 ? EINTR : ENOMEM;
        return -1;
    }
    for (int fd = 0; fd < nfds && p.what != 2; fd++) {
        unsigned want = (rd && FD_ISSET(fd, rd) ? R_IN : 0) | (wr && FD_ISSET(fd, wr) ? R_OUT : 0);
        unsigned t = truth(fd);
        unsigned got = p.what == 1 ? want : want & ((t & R_ERR) ? R_IN | R_OUT : t);

        if (got != 0 && nready < SIM_POOL) {
            ready[nready] = fd;
            bits[nready++] = got;
        }
    }
    FD_ZERO(&ord);
    FD_ZERO(&owr);
    for (unsigned j = 0; j < nready; j++) {
        if (p.what == 0 && !in_window(p.w, j, nready))
            continue;
        if (bits[j] & R_IN) {
            FD_SET(ready[j], &ord);
            count++;
        }
        if (bits[j] & R_OUT) {
            FD_SET(ready[j], &owr);
            count++;
        }
    }
    if (rd != NULL)
        *rd = ord;
    if (wr != NULL)
        *wr = owr;
    if (ex != NULL)
        FD_ZERO(ex);
    return count;
}

int __wrap_epoll_create1(int flags)
{
    int fd;

    if (!active)
        return __real_epoll_create1(flags);
    if (fz_u8() >= 0xF8 || (fd = simsock_alloc_fd(K_EPOLL)) < 0) {
        errno = EMFILE;
        return -1;
    }
    return fd;
}

int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    struct sim_desc *d;

    if (simsock_fd(epfd) == NULL)
        return __real_epoll_ctl(epfd, op, fd, ev);
    simsock_held(epfd, K_EPOLL, "epoll_ctl");
    check_watchable(fd, "epoll_ctl");
    d = &desc[fd];
    switch (op) {
    case EPOLL_CTL_ADD:
        CHECK(!d->ep_in); /* EEXIST: the backend lost track */
        if (!draining && fz_u8() >= 0xF8) {
            if (d->kind == K_CLIENT)
                clients[d->client].excused = 1;
            errno = ENOMEM;
            return -1;
        }
        d->ep_in = 1;
        break;
    case EPOLL_CTL_MOD:
        CHECK(d->ep_in); /* ENOENT */
        break;
    case EPOLL_CTL_DEL:
        CHECK(d->ep_in); /* ENOENT */
        d->ep_in = 0;
        return 0;
    default:
        CHECK(!"unknown epoll_ctl op");
    }
    d->ep_events = ev->events;
    d->ep_data = ev->data;
    return 0;
}

int __wrap_epoll_wait(int epfd, struct epoll_event *out, int max, int timeout)
{
    struct wait_plan p;
    int ready[SIM_POOL];
    unsigned nready = 0, got[SIM_POOL];
    int count = 0;

    if (simsock_fd(epfd) == NULL)
        return __real_epoll_wait(epfd, out, max, timeout);
    simsock_held(epfd, K_EPOLL, "epoll_wait");
    CHECK_LT(0, max, "epoll_wait maxevents");
    p = wait_plan();
    if (p.what >= 3) {
        errno = p.what == 3 ? EINTR : EINVAL;
        return -1;
    }
    if (p.what == 2)
        return 0;
    for (int i = 0; i < pool_used; i++) {
        int fd = pool[i];
        const struct sim_desc *d = &desc[fd];
        unsigned t, r = 0;

        if ((d->kind != K_CLIENT && d->kind != K_LISTEN && d->kind != K_UDP) || !d->ep_in)
            continue;
        t = truth(fd);
        if (p.what == 1) {
            r = d->ep_events & (EPOLLIN | EPOLLOUT);
        } else {
            r = (((t & R_IN) ? EPOLLIN : 0) | ((t & R_OUT) ? EPOLLOUT : 0)) & d->ep_events;
            if (t & R_HUP)
                r |= EPOLLHUP | EPOLLERR;
            if (t & R_ERR)
                r |= EPOLLERR;
        }
        if (r != 0) {
            ready[nready] = fd;
            got[nready++] = r;
        }
    }
    for (unsigned j = 0; j < nready && count < max; j++) {
        if (p.what == 0 && !in_window(p.w, j, nready))
            continue;
        out[count].events = got[j];
        out[count].data = desc[ready[j]].ep_data;
        count++;
    }
    return count;
}

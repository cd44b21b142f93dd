/* echo-bench - throughput, round trips, connection rate and idle connections of
 * any TCP echo server.
 *
 *   echo-bench --port N [--host ADDR] [--conns N] [--seconds S] [--pid PID]
 *              [--mode stream|pingpong|connrate|connrate-rst|hold]
 *
 * stream: every connection writes a pseudo-random stream as fast as the
 * server takes it and checks every byte that comes back, then half-closes
 * and waits for the rest: the figure is echoed MiB/s, and a wrong byte is a
 * failure, so a fast-but-wrong server cannot win. pingpong: one 64-byte
 * message in flight per connection: round trips per second. connrate: one
 * connection after another, each a 1-byte echo then a close (connrate-rst:
 * then a reset, SO_LINGER 0): connections per second. hold: --conns
 * connections opened one after another, each proven served by a 1-byte echo
 * (the time to establish them all), kept idle for --seconds, then every one
 * must echo again; with --pid, the server's resident memory once they are up.
 * More connections than RLIMIT_NOFILE allows raise it (its hard limit too, as root).
 * Exit status 0 when every byte came back exact, 1 otherwise, 2 on bad use. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define PATTERN_SIZE (1u << 20)
#define CHUNK (64 * 1024)
#define MAX_CONNS 200000
#define ONE_BYTE_TIMEOUT_S 5
#define PING_SIZE 64

struct client {
    int fd;
    unsigned long long sent, received; /* stream offsets */
    int done_writing, closed;
};

static unsigned char pattern[PATTERN_SIZE + CHUNK];

static double now(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The stream of connection i at offset off: a window into one random
 * pattern, shifted per connection so cross-talk between clients shows. */
static const unsigned char *stream_at(int i, unsigned long long off)
{
    return pattern + (off + (unsigned long long)i * 7919u) % PATTERN_SIZE;
}

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints = {0}, *res, *ai;
    int fd = -1, one = 1, rc;

    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "echo-bench: %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        (void)close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "echo-bench: cannot connect to %s port %s: %s\n", host, port,
                strerror(errno));
        return -1;
    }
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &(int){1 << 20}, sizeof(int)) < 0) {
        perror("echo-bench: setsockopt");
        (void)close(fd);
        return -1;
    }
    return fd;
}

static int watch(int ep, struct client *c, int idx)
{
    struct epoll_event e = {.data.u32 = (unsigned)idx};

    e.events = EPOLLIN | (c->done_writing ? 0 : EPOLLOUT);
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Returns 0 while fine, -1 on a mismatch or an error. */
static int on_readable(struct client *c, int idx, int pingpong)
{
    unsigned char buf[CHUNK];
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (n == 0) {
        c->closed = 1;
        return c->received == c->sent ? 0 : -1;
    }
    if (c->received + (unsigned long long)n > c->sent ||
        memcmp(buf, stream_at(idx, c->received), (size_t)n) != 0) {
        fprintf(stderr, "echo-bench: connection %d: wrong bytes near offset %llu\n", idx,
                c->received);
        return -1;
    }
    c->received += (unsigned long long)n;
    (void)pingpong;
    return 0;
}

static int on_writable(struct client *c, int idx, int pingpong)
{
    size_t len = CHUNK;
    ssize_t n;

    if (pingpong) {
        if (c->sent != c->received)
            return 0; /* one message in flight */
        len = PING_SIZE;
    } else if (c->sent - c->received > 4u * CHUNK) {
        return 0; /* keep the amount in flight bounded */
    }
    n = send(c->fd, stream_at(idx, c->sent), len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    c->sent += (unsigned long long)n;
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: echo-bench --port N [--host ADDR] [--conns N] [--seconds S] [--pid PID] "
                 "[--mode stream|pingpong|connrate|connrate-rst|hold]\n");
}

/* Room for `conns` descriptors and a few more: the soft limit raised, up to
 * the hard one. */
static int ensure_nofile(int conns)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)conns + 64;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        perror("echo-bench: getrlimit");
        return -1;
    }
    if (rl.rlim_cur >= want)
        return 0;
    rl.rlim_cur = want;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
        rl.rlim_max = want; /* root may raise it */
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        fprintf(stderr, "echo-bench: %d connections need %llu descriptors: %s (as root: ulimit -Hn %llu)\n",
                conns, (unsigned long long)want, strerror(errno), (unsigned long long)want);
        return -1;
    }
    return 0;
}

/* One byte out, the same byte back, within ONE_BYTE_TIMEOUT_S; -1 with a
 * message otherwise. */
static int one_byte_echo(int fd, unsigned char b, const char *what)
{
    unsigned char got;
    ssize_t n;

    if (send(fd, &b, 1, MSG_NOSIGNAL) != 1) {
        fprintf(stderr, "echo-bench: %s: send: %s\n", what, strerror(errno));
        return -1;
    }
    do
        n = recv(fd, &got, 1, 0);
    while (n < 0 && errno == EINTR);
    if (n != 1 || got != b) {
        fprintf(stderr, "echo-bench: %s: %s\n", what,
                n < 0 ? strerror(errno) : n == 0 ? "closed before the echo" : "wrong byte");
        return -1;
    }
    return 0;
}

static int timed(int fd)
{
    struct timeval tv = {.tv_sec = ONE_BYTE_TIMEOUT_S};

    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
        perror("echo-bench: setsockopt");
        return -1;
    }
    return 0;
}

/* The server's resident set in KiB from /proc, -1 when it cannot be read. */
static long rss_kib(long pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    (void)snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    (void)fclose(f);
    return kib;
}

static int connrate(const char *host, const char *port, double seconds, int rst)
{
    double start = now(), stop_at = start + seconds, elapsed;
    unsigned long long done = 0;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    while (now() < stop_at) {
        int fd = connect_to(host, port), rc;

        if (fd < 0)
            return 1;
        rc = timed(fd);
        if (rc == 0)
            rc = one_byte_echo(fd, (unsigned char)done, "connrate");
        if (rc == 0 && rst && setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0) {
            perror("echo-bench: setsockopt");
            rc = -1;
        }
        if (close(fd) < 0 && rc == 0) {
            perror("echo-bench: close");
            rc = -1;
        }
        if (rc < 0)
            return 1;
        done++;
    }
    elapsed = now() - start;
    printf("%s seconds=%.2f connections=%llu per_second=%.0f ok\n", rst ? "connrate-rst" : "connrate",
           elapsed, done, (double)done / elapsed);
    return 0;
}

static int hold(const char *host, const char *port, int conns, double seconds, long pid)
{
    int *fds = malloc((size_t)conns * sizeof(*fds)), opened = 0, status = 1;
    double start = now(), up, again;
    long rss = -1;

    if (fds == NULL) {
        perror("echo-bench");
        return 1;
    }
    for (; opened < conns; opened++) {
        fds[opened] = connect_to(host, port);
        if (fds[opened] < 0 || timed(fds[opened]) < 0 ||
            one_byte_echo(fds[opened], (unsigned char)opened, "hold: a new connection") < 0) {
            fprintf(stderr, "echo-bench: hold: connection %d of %d not served\n", opened + 1, conns);
            if (fds[opened] >= 0)
                opened++;
            goto out;
        }
    }
    up = now() - start;
    if (pid > 0)
        rss = rss_kib(pid);
    {
        struct timespec ts = {.tv_sec = (time_t)seconds,
                              .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    again = now();
    for (int i = 0; i < conns; i++)
        if (one_byte_echo(fds[i], (unsigned char)~i, "hold: a connection after the hold") < 0)
            goto out;
    printf("hold conns=%d establish_seconds=%.2f per_second=%.0f server_rss_kib=%ld "
           "echo_again_seconds=%.2f ok\n", conns, up, (double)conns / up, rss, now() - again);
    status = 0;
out:
    for (int i = 0; i < opened; i++)
        (void)close(fds[i]);
    free(fds);
    return status;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port = NULL, *mode = "stream";
    int conns = 1, pingpong, ep = -1, status = 1;
    double seconds = 3, start, stop_at, elapsed;
    unsigned long long total = 0, rounds = 0;
    struct client *cl = NULL;
    unsigned seed = 12345;
    long pid = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        if (strcmp(argv[i], "--host") == 0)
            host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0)
            port = argv[++i];
        else if (strcmp(argv[i], "--conns") == 0)
            conns = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--mode") == 0)
            mode = argv[++i];
        else if (strcmp(argv[i], "--pid") == 0)
            pid = atol(argv[++i]);
        else {
            usage(stderr);
            return 2;
        }
    }
    pingpong = strcmp(mode, "pingpong") == 0;
    if (port == NULL || conns < 1 || conns > MAX_CONNS || seconds <= 0 || seconds > 600 || pid < 0 ||
        (!pingpong && strcmp(mode, "stream") != 0 && strcmp(mode, "connrate") != 0 &&
         strcmp(mode, "connrate-rst") != 0 && strcmp(mode, "hold") != 0)) {
        usage(stderr);
        return 2;
    }
    if (ensure_nofile(conns) < 0)
        return 2;
    if (strncmp(mode, "connrate", 8) == 0)
        return connrate(host, port, seconds, strcmp(mode, "connrate-rst") == 0);
    if (strcmp(mode, "hold") == 0)
        return hold(host, port, conns, seconds, pid);
    for (size_t i = 0; i < sizeof(pattern); i++) {
        seed = seed * 1103515245u + 12345u;
        pattern[i] = (unsigned char)(seed >> 16);
    }
    /* the tail repeats the head, so any window of CHUNK bytes is contiguous */
    memcpy(pattern + PATTERN_SIZE, pattern, CHUNK);

    cl = calloc((size_t)conns, sizeof(*cl));
    ep = epoll_create1(0);
    if (cl == NULL || ep < 0) {
        perror("echo-bench");
        goto out;
    }
    for (int i = 0; i < conns; i++) {
        struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (unsigned)i};

        cl[i].fd = connect_to(host, port);
        if (cl[i].fd < 0)
            goto out;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cl[i].fd, &e) < 0) {
            perror("echo-bench: epoll_ctl");
            goto out;
        }
    }

    start = now();
    stop_at = start + seconds;
    for (int open = conns; open > 0;) {
        struct epoll_event ev[64];
        int n = epoll_wait(ep, ev, 64, 1000);
        double t = now();

        if (n < 0 && errno != EINTR) {
            perror("echo-bench: epoll_wait");
            goto out;
        }
        if (t > stop_at + 10) {
            fprintf(stderr, "echo-bench: the server did not finish the echo within 10 s\n");
            goto out;
        }
        for (int k = 0; k < n; k++) {
            int i = (int)ev[k].data.u32;
            struct client *c = &cl[i];

            if ((ev[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && on_readable(c, i, pingpong) < 0)
                goto out;
            if (c->closed) {
                open--;
                if (epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL) < 0) {
                    perror("echo-bench: epoll_ctl");
                    goto out;
                }
                continue;
            }
            if (!c->done_writing && t >= stop_at && (!pingpong || c->sent == c->received)) {
                /* time is up: half-close and collect what is still owed */
                c->done_writing = 1;
                if (shutdown(c->fd, SHUT_WR) < 0 || watch(ep, c, i) < 0) {
                    perror("echo-bench: shutdown");
                    goto out;
                }
            } else if (!c->done_writing && on_writable(c, i, pingpong) < 0) {
                fprintf(stderr, "echo-bench: connection %d: send: %s\n", i, strerror(errno));
                goto out;
            }
        }
    }
    elapsed = now() - start;
    for (int i = 0; i < conns; i++) {
        total += cl[i].received;
        rounds += cl[i].received / PING_SIZE;
    }
    if (pingpong)
        printf("pingpong conns=%d seconds=%.2f round_trips=%llu per_second=%.0f ok\n", conns,
               elapsed, rounds, (double)rounds / elapsed);
    else
        printf("stream conns=%d seconds=%.2f echoed_bytes=%llu MiB_per_second=%.1f ok\n", conns,
               elapsed, total, (double)total / elapsed / (1 << 20));
    status = 0;
out:
    for (int i = 0; cl != NULL && i < conns; i++)
        if (cl[i].fd > 0)
            (void)close(cl[i].fd);
    free(cl);
    if (ep >= 0)
        (void)close(ep);
    return status;
}

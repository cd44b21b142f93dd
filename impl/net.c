/* net.c - listener, signals and accepting: what every server does the same way. */
#include "echo.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void echo_set_error(char *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(err, ECHO_ERR_LEN, fmt, ap);
    va_end(ap);
}

/* A socket of ai's kind bound to ai's address: a listening one for TCP, one
 * that reports each datagram's destination address for UDP. */
static int bind_on(const struct addrinfo *ai, int dual_stack, char *err)
{
    int fd, one = 1, zero = 0;

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) {
        echo_set_error(err, "socket: %s", strerror(errno));
        return ECHO_ERR;
    }
    /* A restart must bind at once, even with old connections in TIME_WAIT. */
    if (ai->ai_socktype == SOCK_STREAM &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
        echo_set_error(err, "setsockopt SO_REUSEADDR: %s", strerror(errno));
        goto fail;
    }
    /* Dual-stack whatever net.ipv6.bindv6only says, when asked for "::". */
    if (dual_stack &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0) {
        echo_set_error(err, "setsockopt IPV6_V6ONLY: %s", strerror(errno));
        goto fail;
    }
    /* Each datagram's destination address, so the reply leaves from it (udp.c);
     * over IPv6 it also comes for IPv4 datagrams, as a mapped address. */
    if (ai->ai_socktype == SOCK_DGRAM &&
        (ai->ai_family == AF_INET6
             ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one))
             : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one))) < 0) {
        echo_set_error(err, "setsockopt PKTINFO: %s", strerror(errno));
        goto fail;
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        echo_set_error(err, "bind: %s", strerror(errno));
        goto fail;
    }
    /* The listener is non-blocking: a client that resets between readiness
     * and accept() must not block the server inside accept(). */
    if (ai->ai_socktype == SOCK_STREAM && listen(fd, SOMAXCONN) < 0) {
        echo_set_error(err, "listen: %s", strerror(errno));
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return ECHO_ERR;
}

/* Binds a socket of socktype on cfg->host and port; addr and *bound say
 * where it is. */
static int open_on(const struct echo_config *cfg, int socktype, unsigned port, char *addr,
                   size_t addrlen, unsigned *bound, char *err)
{
    struct addrinfo hints, *res = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char portstr[16], serv[16];
    int fd = ECHO_ERR, rc, wildcard6 = strcmp(cfg->host, "::") == 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    hints.ai_flags = AI_PASSIVE;
    snprintf(portstr, sizeof(portstr), "%u", port);
    rc = getaddrinfo(cfg->host, portstr, &hints, &res);
    if (rc != 0) {
        echo_set_error(err, "cannot resolve '%s': %s", cfg->host, gai_strerror(rc));
        return ECHO_ERR;
    }
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
        fd = bind_on(ai, wildcard6 && ai->ai_family == AF_INET6, err);
    freeaddrinfo(res);
    res = NULL;

    /* A host without IPv6 still serves IPv4 when given the default "::". */
    if (fd < 0 && wildcard6) {
        struct sockaddr_in sin;
        struct addrinfo ai4;

        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons((unsigned short)port);
        sin.sin_addr.s_addr = htonl(INADDR_ANY);
        memset(&ai4, 0, sizeof(ai4));
        ai4.ai_family = AF_INET;
        ai4.ai_socktype = socktype;
        ai4.ai_protocol = socktype == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
        ai4.ai_addr = (struct sockaddr *)&sin;
        ai4.ai_addrlen = sizeof(sin);
        fd = bind_on(&ai4, 0, err);
    }
    if (fd < 0)
        return ECHO_ERR;

    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
        echo_set_error(err, "getsockname: %s", strerror(errno));
        goto fail;
    }
    rc = getnameinfo((struct sockaddr *)&ss, sslen, addr, (socklen_t)addrlen, serv,
                     sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV);
    if (rc != 0) {
        echo_set_error(err, "getnameinfo: %s", gai_strerror(rc));
        goto fail;
    }
    *bound = (unsigned)strtoul(serv, NULL, 10);
    return fd;
fail:
    close(fd);
    return ECHO_ERR;
}

int echo_listen(const struct echo_config *cfg, char *addr, size_t addrlen,
                unsigned *port, char *err)
{
    return open_on(cfg, SOCK_STREAM, cfg->port, addr, addrlen, port, err);
}

/* With --port 0 the kernel picks the TCP port; the same number may be taken
 * for UDP, and then a few other numbers are tried. */
#define ECHO_PORT_TRIES 16

int echo_open(const struct echo_config *cfg, struct echo_sockets *s, char *addr,
              size_t addrlen, unsigned *port, char *err)
{
    s->tcp = s->udp = -1;
    for (int i = 0; i < ECHO_PORT_TRIES; i++) {
        unsigned p = cfg->port;

        if ((cfg->transports & ECHO_TCP) &&
            (s->tcp = open_on(cfg, SOCK_STREAM, p, addr, addrlen, &p, err)) < 0)
            return ECHO_ERR;
        if (cfg->transports & ECHO_UDP) {
            s->udp = open_on(cfg, SOCK_DGRAM, p, addr, addrlen, &p, err);
            if (s->udp < 0) {
                int taken = errno == EADDRINUSE;

                echo_close(s);
                if (taken && cfg->port == 0 && (cfg->transports & ECHO_TCP))
                    continue;
                return ECHO_ERR;
            }
        }
        *port = p;
        return ECHO_OK;
    }
    return ECHO_ERR;
}

void echo_close(struct echo_sockets *s)
{
    if (s->tcp >= 0)
        (void)close(s->tcp);
    if (s->udp >= 0)
        (void)close(s->udp);
    s->tcp = s->udp = -1;
}

static void *signal_waiter(void *arg)
{
    sigset_t *set = arg;
    int sig;

    /* exit() runs from this thread, so no connection thread is ever
     * interrupted halfway through a write by a signal handler. */
    if (sigwait(set, &sig) == 0)
        exit(0);
    abort();
}

int echo_signals_init(char *err)
{
    static sigset_t set;
    pthread_attr_t attr;
    pthread_t tid;
    int rc;

    /* A peer that vanishes must cost one connection (EPIPE), not the process. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        echo_set_error(err, "signal SIGPIPE: %s", strerror(errno));
        return ECHO_ERR;
    }
    /* Blocked here, before any other thread exists, so every thread inherits
     * the mask and only the waiter ever receives SIGTERM or SIGINT. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (rc != 0) {
        echo_set_error(err, "pthread_sigmask: %s", strerror(rc));
        return ECHO_ERR;
    }
    rc = pthread_attr_init(&attr);
    if (rc == 0)
        rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (rc == 0)
        rc = pthread_create(&tid, &attr, signal_waiter, &set);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        echo_set_error(err, "pthread_create: %s", strerror(rc));
        return ECHO_ERR;
    }
    return ECHO_OK;
}

int echo_acceptor_init(struct echo_acceptor *a, int listen_fd, char *err)
{
    a->listen_fd = listen_fd;
    a->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (a->reserve_fd < 0) {
        echo_set_error(err, "open /dev/null: %s", strerror(errno));
        return ECHO_ERR;
    }
    return ECHO_OK;
}

void echo_acceptor_close(struct echo_acceptor *a)
{
    if (a->reserve_fd >= 0)
        close(a->reserve_fd);
    a->reserve_fd = -1;
}

/* Returns a connected descriptor, or -1 with errno set. EAGAIN: nothing is
 * pending. ECONNABORTED: a connection was dropped because descriptors ran
 * out (or the client gave up first); try again. EMFILE/ENFILE: out of
 * descriptors and the reserve is spent: back off before trying again. */
int echo_accept(struct echo_acceptor *a, int flags)
{
    int fd;

    for (;;) {
        fd = accept4(a->listen_fd, NULL, NULL, flags | SOCK_CLOEXEC);
        if (fd >= 0) {
            int one = 1;

            /* An echo answers whatever arrived: waiting to coalesce small
             * writes (Nagle) would only add the peer's delayed-ACK time.
             * Failing to set it costs latency, not correctness. */
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            /* A reserve that could not be reopened after it was spent is
             * taken back as soon as descriptors are free again. */
            if (a->reserve_fd < 0)
                a->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            return fd;
        }
        if (errno == EINTR)
            continue;
        if ((errno != EMFILE && errno != ENFILE) || a->reserve_fd < 0)
            return -1;

        /* Out of descriptors. Left in the queue, the connection would keep
         * the listener readable and the loop would spin; so use the reserve
         * descriptor to accept it and close it: the client sees a prompt
         * close instead of a hang. */
        close(a->reserve_fd);
        a->reserve_fd = -1;
        fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            close(fd);
        a->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        errno = ECONNABORTED;
        return -1;
    }
}

int echo_accept_retry(int e)
{
    /* Errors about one pending connection, not about the listener. */
    switch (e) {
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENOBUFS:
    case ENOMEM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return 1;
    default:
        return 0;
    }
}

/* For the blocking servers: waits until a connection can be accepted. */
int echo_accept_wait(struct echo_acceptor *a, int flags, char *err)
{
    for (;;) {
        struct pollfd p = {.fd = a->listen_fd, .events = POLLIN};
        int fd;

        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            echo_set_error(err, "poll: %s", strerror(errno));
            return ECHO_ERR;
        }
        fd = echo_accept(a, flags);
        if (fd >= 0)
            return fd;
        if (errno == EAGAIN || errno == EWOULDBLOCK || echo_accept_retry(errno))
            continue;
        if (errno != EMFILE && errno != ENFILE) {
            echo_set_error(err, "accept: %s", strerror(errno));
            return ECHO_ERR;
        }
        /* Out of descriptors, reserve spent: a pause, not a spin. poll()
         * with no descriptors only sleeps; an early wake-up is harmless. */
        (void)poll(NULL, 0, ECHO_ACCEPT_BACKOFF_MS);
    }
}

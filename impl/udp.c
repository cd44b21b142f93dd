/* udp.c - RFC 862's UDP echo, one copy for every server: each datagram is
 * answered by one datagram with the same bytes, to the address and port it
 * came from, from the address it was sent to.
 *
 * The event-loop servers call echo_udp_service() when the socket is ready;
 * the blocking and threaded servers run echo_udp_serve() in a thread of its
 * own (echo_udp_spawn). */
#include "echo.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Planted bug (fuzz/README.md): a fixed 1 KiB receive buffer whose cut
 * datagrams are answered anyway. Fuzzing builds only, never a server. */
#if defined(ECHO_PLANT_UDP_TRUNCATE) && !defined(FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION)
#error "planted bugs are for fuzzing builds only"
#endif

int echo_udp_init(struct echo_udp *u, int fd, char *err)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    memset(u, 0, offsetof(struct echo_udp, buf));
    u->fd = fd;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        echo_set_error(err, "getsockname (udp): %s", strerror(errno));
        return ECHO_ERR;
    }
    u->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    return ECHO_OK;
}

static unsigned peer_port(const struct echo_udp *u)
{
    if (u->peer.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&u->peer)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&u->peer)->sin_port);
}

/* Services that answer whatever they get: echo, daytime, chargen, time.
 * Replying to one of them starts a loop between two servers that never ends
 * (CERT CA-1996-01); port 0 cannot be replied to at all. */
static int amplifier_port(unsigned port)
{
    return port == 0 || port == 7 || port == 13 || port == 19 || port == 37;
}

/* The datagram's destination address, from the control message the kernel
 * attached (IP_PKTINFO / IPV6_PKTINFO), turned into the control message that
 * makes the reply leave from it: a server bound to a wildcard on a host with
 * several addresses must not answer from whichever the route prefers, or the
 * client, which only listens to the address it asked, never sees the answer.
 * Returns whether the datagram came from that very address and our own port:
 * a datagram the server sent to itself. A pktinfo the kernel had to cut
 * (MSG_CTRUNC: the control buffer was full) is ignored, not read past its
 * end. */
static int take_destination(struct echo_udp *u, struct msghdr *m)
{
    struct cmsghdr *in;
    int self = 0;

    u->ctllen = 0;
    for (in = CMSG_FIRSTHDR(m); in != NULL; in = CMSG_NXTHDR(m, in)) {
        if (in->cmsg_level == IPPROTO_IP && in->cmsg_type == IP_PKTINFO &&
            in->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo)) &&
            u->peer.ss_family == AF_INET) {
            struct in_pktinfo pi;
            struct cmsghdr *out = (struct cmsghdr *)(void *)u->ctl;

            memcpy(&pi, CMSG_DATA(in), sizeof(pi));
            self = pi.ipi_addr.s_addr == ((struct sockaddr_in *)&u->peer)->sin_addr.s_addr;
            pi.ipi_spec_dst = pi.ipi_addr;
            pi.ipi_ifindex = 0; /* the route picks the interface, the source is fixed */
            out->cmsg_level = IPPROTO_IP;
            out->cmsg_type = IP_PKTINFO;
            out->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(out), &pi, sizeof(pi));
            u->ctllen = CMSG_SPACE(sizeof(pi));
        } else if (in->cmsg_level == IPPROTO_IPV6 && in->cmsg_type == IPV6_PKTINFO &&
                   in->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo)) &&
                   u->peer.ss_family == AF_INET6) {
            struct in6_pktinfo pi;
            struct cmsghdr *out = (struct cmsghdr *)(void *)u->ctl;

            memcpy(&pi, CMSG_DATA(in), sizeof(pi));
            self = memcmp(&pi.ipi6_addr, &((struct sockaddr_in6 *)&u->peer)->sin6_addr,
                          sizeof(pi.ipi6_addr)) == 0;
            /* The interface stays: a link-local address means nothing without it. */
            out->cmsg_level = IPPROTO_IPV6;
            out->cmsg_type = IPV6_PKTINFO;
            out->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(out), &pi, sizeof(pi));
            u->ctllen = CMSG_SPACE(sizeof(pi));
        }
    }
    return self && peer_port(u) == u->port;
}

/* Reads one datagram into the reply slot. Returns 1 when one was read (and
 * is owed a reply or was dropped), 0 when there is nothing to read. */
static int receive(struct echo_udp *u)
{
#ifdef ECHO_PLANT_UDP_TRUNCATE
    struct iovec iov = {.iov_base = u->buf, .iov_len = 1024};
#else
    struct iovec iov = {.iov_base = u->buf, .iov_len = sizeof(u->buf)};
#endif
    _Alignas(struct cmsghdr) unsigned char ctl[ECHO_UDP_CTL];
    struct msghdr m;
    ssize_t n;

    for (;;) {
        memset(&m, 0, sizeof(m));
        m.msg_name = &u->peer;
        m.msg_namelen = sizeof(u->peer);
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl;
        m.msg_controllen = sizeof(ctl);
        n = recvmsg(u->fd, &m, MSG_DONTWAIT);
        if (n >= 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        /* An ICMP error queued by an earlier reply (the client was gone),
         * or a transient shortage: about one peer, never about the socket. */
        return 1;
    }
    u->peerlen = m.msg_namelen;
    /* A reply must carry exactly the bytes received: never a truncated copy. */
#ifndef ECHO_PLANT_UDP_TRUNCATE
    if (m.msg_flags & MSG_TRUNC)
        return 1;
#endif
    if (take_destination(u, &m) || amplifier_port(peer_port(u)))
        return 1;
    u->len = (size_t)n;
    u->pending = 1;
    return 1;
}

/* Sends the owed reply. Returns 0 when it is gone (sent, or lost with an
 * error no retry can fix), EAGAIN when the send buffer is full. */
static int send_reply(struct echo_udp *u)
{
    struct iovec iov = {.iov_base = u->buf, .iov_len = u->len};
    struct msghdr m;

    memset(&m, 0, sizeof(m));
    m.msg_name = &u->peer;
    m.msg_namelen = u->peerlen;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    if (u->ctllen > 0) {
        m.msg_control = u->ctl;
        m.msg_controllen = u->ctllen;
    }
    for (;;) {
        if (sendmsg(u->fd, &m, MSG_DONTWAIT) >= 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return EAGAIN;
        break; /* unreachable peer, a vanished address: this reply is lost */
    }
    u->pending = 0;
    return 0;
}

unsigned echo_udp_service(struct echo_udp *u)
{
    for (int i = 0; i < ECHO_UDP_BATCH; i++) {
        /* While a reply waits for room, the next datagram stays in the
         * kernel: if the burst outgrows the receive buffer, the kernel drops
         * and counts it, instead of the server losing it unseen. */
        if (u->pending && send_reply(u) == EAGAIN)
            return ECHO_WRITE;
        if (!receive(u))
            return ECHO_READ;
    }
    return u->pending ? ECHO_WRITE : ECHO_READ;
}

int echo_udp_serve(int fd, char *err)
{
    struct echo_udp *u = malloc(sizeof(*u));
    unsigned want = ECHO_READ;

    if (u == NULL) {
        echo_set_error(err, "out of memory");
        return ECHO_ERR;
    }
    if (echo_udp_init(u, fd, err) != ECHO_OK)
        goto out;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = want == ECHO_WRITE ? POLLOUT : POLLIN};

        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            echo_set_error(err, "poll (udp): %s", strerror(errno));
            break;
        }
        want = echo_udp_service(u);
    }
out:
    free(u);
    return ECHO_ERR;
}

static void *udp_thread(void *arg)
{
    char err[ECHO_ERR_LEN] = "";

    echo_udp_serve((int)(intptr_t)arg, err);
    /* A server that stopped answering datagrams must not go on looking
     * healthy over TCP: it ends, as it would if the main loop had failed. */
    fprintf(stderr, "%s: %s\n", echo_server_name, err);
    exit(1);
}

int echo_udp_spawn(int fd, char *err)
{
    pthread_attr_t attr;
    pthread_t tid;
    int rc;

    rc = pthread_attr_init(&attr);
    if (rc == 0) {
        rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (rc == 0)
            rc = pthread_create(&tid, &attr, udp_thread, (void *)(intptr_t)fd);
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        echo_set_error(err, "pthread_create (udp): %s", strerror(rc));
        return ECHO_ERR;
    }
    return ECHO_OK;
}

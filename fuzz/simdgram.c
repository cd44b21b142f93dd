/* simdgram.c - the simulated UDP socket (see simsock.h), on the descriptor
 * table, byte patterns and outcome conventions of simsock.c (shared through
 * simsock_impl.h): as there, 0 is always the benign outcome byte.
 *
 * The UDP socket (sim_udp). Datagram n carries the pattern bytes of id
 * SIM_MAX_CLIENTS + n, so a reply names the datagram it echoes.
 *   getsockname: 0xF8..0xFF fails (ENOBUFS)
 *   recvmsg:    (nothing queued: EAGAIN, no byte read; a queued ICMP error
 *               comes first, no byte read either)
 *               0..0xCF the next datagram, with its pktinfo;
 *               0xD0..0xD7 without any control data;
 *               0xD8..0xDF after a filler control message that leaves
 *               {0, 8, 16, 24, 32, 40, 48, 56}[b - 0xD8] bytes of the
 *               server's control buffer, so the pktinfo is dropped or cut
 *               (MSG_CTRUNC) as the kernel's put_cmsg() does;
 *               0xE0..0xE7 EINTR; 0xE8..0xEF ENOBUFS; 0xF0..0xF3
 *               ECONNREFUSED; 0xF4..0xF7 EHOSTUNREACH; 0xF8..0xFF EAGAIN
 *               (a datagram that failed its checksum). No error consumes
 *               the queued datagram. MSG_TRUNC when it outgrows the buffer.
 *   sendmsg:    (send buffer full after an EAGAIN, until the next wait:
 *               EAGAIN, no byte read)
 *               0..0xDF sent; 0xE0..0xE7 EINTR; 0xE8..0xEB EMSGSIZE;
 *               0xEC..0xEF ENOBUFS; 0xF0..0xF7 ECONNREFUSED (these three
 *               lose the reply, which is allowed); 0xF8..0xFF EAGAIN (the
 *               send buffer is full: the reply is still owed)
 *   source byte of a datagram (sim_udp_send): bits 0-1 the peer's address
 *               (IPv4 203.0.113.5, 127.0.0.1, 198.18.0.9, 10.1.2.3; IPv6
 *               2001:db8:ff::5, ::1, fe80::99, 2001:db8:1::20: each list
 *               holds a local address), bit 2 on a dual-stack socket an
 *               IPv4 peer, bits 3-5 its port: 0 40001 + bits 6-7, 1 port
 *               0, 2..5 the amplifiers 7, 13, 19, 37, 6 the server itself
 *               (the destination address, the server's port), 7 1021 +
 *               bits 6-7. The local (destination) addresses are IPv4
 *               127.0.0.1 (lo, ifindex 1), 192.0.2.10, 198.51.100.20 (2),
 *               10.1.2.3 (3); IPv6 ::1 (1), 2001:db8::10, fe80::10 (2),
 *               2001:db8:1::20 (3). */
#include "simsock.h"
#include "simsock_impl.h"

#include "fuzz.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

ssize_t __real_recvmsg(int, struct msghdr *, int);
ssize_t __real_sendmsg(int, const struct msghdr *, int);
int __real_getsockname(int, struct sockaddr *, socklen_t *);

/* The UDP socket and the datagrams of one input, in the order sent: the
 * receive queue is dgrams[rx_head..ndgrams). */
#define SIM_MAX_DGRAMS 4096
#define DG_ID(k) ((unsigned)(SIM_MAX_CLIENTS + (k))) /* pattern id */

enum dg_state {
    DG_QUEUED,   /* in the receive queue */
    DG_OWED,     /* received: exactly one reply is owed */
    DG_MAYBE,    /* from the server itself, but without the pktinfo that tells */
    DG_NONE,     /* from an amplifier port or the server itself: no reply */
    DG_TRUNC,    /* cut on receive (MSG_TRUNC): no reply */
    DG_ANSWERED,
    DG_LOST      /* its reply met a send error that loses it: allowed */
};
static const char *const dg_state_name[] = {"queued", "owed", "maybe", "not owed",
                                            "truncated", "answered", "lost"};

struct sim_dgram {
    union {
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } src;               /* the peer, as recvmsg reports it */
    socklen_t srclen;
    uint32_t len;
    uint32_t rcvbuf;     /* bytes the server's buffer held, once received */
    unsigned char dst;   /* index of the local address it was sent to */
    unsigned char v4;    /* an IPv4 peer (mapped on a dual-stack socket) */
    unsigned char self, amplifier;
    unsigned char whole_ctl; /* the server got the whole pktinfo */
    unsigned char state;
};

static struct sim_dgram dgrams[SIM_MAX_DGRAMS];
static unsigned ndgrams, rx_head;
static unsigned owed[SIM_MAX_DGRAMS], nowed; /* DG_OWED datagrams, any order */
static int udp_fd = -1;
static enum sim_udp_family udp_family;
static unsigned udp_port;
static int udp_err;   /* a queued ICMP error */
static int udp_wfull; /* the send buffer is full until the next wait */

void simdgram_reset(void)
{
    ndgrams = rx_head = nowed = 0;
    udp_fd = -1;
    udp_err = udp_wfull = 0;
}

unsigned simdgram_ready(void)
{
    return (rx_head < ndgrams || udp_err ? R_IN : 0) | (udp_wfull ? 0 : R_OUT) |
           (udp_err ? R_ERR : 0);
}

void simdgram_wait(void)
{
    udp_wfull = 0; /* a wait gives the kernel time to empty the send buffer */
}

struct sim_addr {
    unsigned char a[16]; /* IPv4 in the first 4 bytes */
    unsigned ifindex;    /* local addresses: the interface that holds it */
};

/* Local addresses on three interfaces (lo, a LAN, another one) and peers;
 * each peer list holds a local address, as a client on the host would. */
static const struct sim_addr local4[4] = {
    {{127, 0, 0, 1}, 1}, {{192, 0, 2, 10}, 2}, {{198, 51, 100, 20}, 2}, {{10, 1, 2, 3}, 3}};
static const struct sim_addr local6[4] = {{{[15] = 1}, 1},
                                          {{0x20, 0x01, 0x0d, 0xb8, [15] = 0x10}, 2},
                                          {{0xfe, 0x80, [15] = 0x10}, 2},
                                          {{0x20, 0x01, 0x0d, 0xb8, 0, 1, [15] = 0x20}, 3}};
static const struct sim_addr peer4[4] = {
    {{203, 0, 113, 5}, 0}, {{127, 0, 0, 1}, 0}, {{198, 18, 0, 9}, 0}, {{10, 1, 2, 3}, 0}};
static const struct sim_addr peer6[4] = {{{0x20, 0x01, 0x0d, 0xb8, 0, 0xff, [15] = 5}, 0},
                                         {{[15] = 1}, 0},
                                         {{0xfe, 0x80, [15] = 0x99}, 0},
                                         {{0x20, 0x01, 0x0d, 0xb8, 0, 1, [15] = 0x20}, 0}};
static const unsigned server_ports[4] = {7, 7777, 40000, 1000};
static const unsigned amplifier_ports[5] = {0, 7, 13, 19, 37};

#define UDP_MAX4 65507u /* 65535 - 20 (IPv4 header) - 8 (UDP header) */
#define UDP_MAX6 65527u /* 65535 - 8: the IPv6 payload length excludes its header */

static int link_local(const unsigned char *a)
{
    return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

static void mapped(unsigned char out[16], const unsigned char *v4)
{
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, v4, 4);
}

/* The address a datagram was sent to, as the server's family spells it. */
static void dest_of(const struct sim_dgram *dg, unsigned char out[16], unsigned *ifindex)
{
    const struct sim_addr *a = dg->v4 ? &local4[dg->dst] : &local6[dg->dst];

    if (udp_family == SIM_UDP_V4)
        memcpy(out, a->a, 4);
    else if (dg->v4)
        mapped(out, a->a);
    else
        memcpy(out, a->a, 16);
    *ifindex = a->ifindex;
}

static const char *sa_str(const void *sa, socklen_t len, char *buf, size_t size)
{
    char a[INET6_ADDRSTRLEN] = "?";
    sa_family_t fam;

    if (sa == NULL || len < sizeof(fam)) {
        snprintf(buf, size, "(no address)");
        return buf;
    }
    memcpy(&fam, sa, sizeof(fam));
    if (fam == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in in;

        memcpy(&in, sa, sizeof(in));
        (void)inet_ntop(AF_INET, &in.sin_addr, a, sizeof(a));
        snprintf(buf, size, "%s:%u", a, ntohs(in.sin_port));
    } else if (fam == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;

        memcpy(&in6, sa, sizeof(in6));
        (void)inet_ntop(AF_INET6, &in6.sin6_addr, a, sizeof(a));
        snprintf(buf, size, "[%s%%%u]:%u", a, (unsigned)in6.sin6_scope_id, ntohs(in6.sin6_port));
    } else {
        snprintf(buf, size, "(family %u, %u bytes)", (unsigned)fam, (unsigned)len);
    }
    return buf;
}

int sim_udp(enum sim_udp_family family, unsigned port)
{
    udp_fd = simsock_alloc_fd(K_UDP);
    CHECK(udp_fd >= 0);
    udp_family = family;
    udp_port = server_ports[port % 4];
    return udp_fd;
}

void sim_udp_send(unsigned src, unsigned dst, unsigned len)
{
    unsigned kind = (src >> 3) & 7, sel = (src >> 6) & 3, port, max;
    const struct sim_addr *a;
    struct sim_dgram *dg;

    if (udp_fd < 0 || ndgrams == SIM_MAX_DGRAMS)
        return;
    dg = &dgrams[ndgrams];
    memset(dg, 0, sizeof(*dg));
    dg->dst = (unsigned char)(dst % 4);
    dg->v4 = udp_family == SIM_UDP_V4 || (udp_family == SIM_UDP_DUAL && (src & 4));
    max = dg->v4 ? UDP_MAX4 : UDP_MAX6;
    dg->len = len < max ? len : max;
    dg->self = kind == 6;
    dg->amplifier = kind >= 1 && kind <= 5;
    if (dg->self)
        a = dg->v4 ? &local4[dg->dst] : &local6[dg->dst];
    else
        a = dg->v4 ? &peer4[src & 3] : &peer6[src & 3];
    port = kind == 0 ? 40001 + sel : kind == 7 ? 1021 + sel : kind == 6 ? udp_port
                                                                         : amplifier_ports[kind - 1];
    if (udp_family == SIM_UDP_V4) {
        dg->src.in.sin_family = AF_INET;
        dg->src.in.sin_port = htons((uint16_t)port);
        memcpy(&dg->src.in.sin_addr, a->a, 4);
        dg->srclen = sizeof(dg->src.in);
    } else {
        unsigned char six[16];

        if (dg->v4)
            mapped(six, a->a);
        else
            memcpy(six, a->a, 16);
        dg->src.in6.sin6_family = AF_INET6;
        dg->src.in6.sin6_port = htons((uint16_t)port);
        memcpy(&dg->src.in6.sin6_addr, six, 16);
        /* The kernel scopes a link-local source to the arrival interface. */
        if (link_local(six))
            dg->src.in6.sin6_scope_id = local6[dg->dst].ifindex;
        dg->srclen = sizeof(dg->src.in6);
    }
    dg->state = DG_QUEUED;
    ndgrams++;
}

void sim_udp_icmp(int err)
{
    if (udp_fd >= 0)
        udp_err = err;
}

int sim_udp_done(void)
{
    return rx_head == ndgrams && nowed == 0 && udp_err == 0;
}

void sim_udp_dump(void)
{
    char who[96];

    fprintf(stderr, "simsock: udp: %u datagrams, %u received, %u owed%s%s\n", ndgrams, rx_head,
            nowed, udp_err ? ", an ICMP error queued" : "", udp_wfull ? ", send buffer full" : "");
    for (unsigned k = 0; k < ndgrams; k++)
        if (dgrams[k].state == DG_QUEUED || dgrams[k].state == DG_OWED)
            fprintf(stderr, "  datagram #%u: %s, %u bytes from %s\n", k,
                    dg_state_name[dgrams[k].state], (unsigned)dgrams[k].len,
                    sa_str(&dgrams[k].src, dgrams[k].srclen, who, sizeof(who)));
}

int __wrap_getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
    union {
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } me;
    socklen_t mylen;

    if (simsock_fd(fd) == NULL)
        return __real_getsockname(fd, sa, len);
    simsock_held(fd, K_UDP, "getsockname");
    if (!simsock_draining() && fz_u8() >= 0xF8) {
        errno = ENOBUFS;
        return -1;
    }
    memset(&me, 0, sizeof(me));
    if (udp_family == SIM_UDP_V4) {
        me.in.sin_family = AF_INET;
        me.in.sin_port = htons((uint16_t)udp_port);
        mylen = sizeof(me.in);
    } else {
        me.in6.sin6_family = AF_INET6;
        me.in6.sin6_port = htons((uint16_t)udp_port);
        mylen = sizeof(me.in6);
    }
    memcpy(sa, &me, *len < mylen ? *len : mylen);
    *len = mylen;
    return 0;
}

/* The bytes the iovecs hold, each one checked addressable. */
static size_t iov_total(const struct msghdr *m, const char *call)
{
    size_t total = 0;

    CHECK(m->msg_iovlen == 0 || m->msg_iov != NULL);
    for (size_t i = 0; i < m->msg_iovlen; i++) {
        if (m->msg_iov[i].iov_len > 0)
            simsock_check_addressable(m->msg_iov[i].iov_base, m->msg_iov[i].iov_len, call);
        total += m->msg_iov[i].iov_len;
    }
    return total;
}

/* How many of the first n bytes the iovecs gather are datagram k's. */
static size_t iov_diff(const struct msghdr *m, unsigned k, size_t n)
{
    size_t off = 0;

    for (size_t i = 0; i < m->msg_iovlen && off < n; i++) {
        size_t len = m->msg_iov[i].iov_len < n - off ? m->msg_iov[i].iov_len : n - off;
        size_t same = simsock_pattern_diff(DG_ID(k), off, m->msg_iov[i].iov_base, len);

        off += same;
        if (same < len)
            return off;
    }
    return off;
}

/* The kernel's put_cmsg(): what does not fit is cut, and MSG_CTRUNC says so;
 * a message is dropped whole when not even its header fits. */
struct ctl_out {
    unsigned char *p;
    size_t room, used;
    int trunc;
};

static int put_cmsg(struct ctl_out *c, int level, int type, const void *data, size_t len)
{
    struct cmsghdr h;
    size_t cmlen = CMSG_LEN(len), left = c->room - c->used, space = CMSG_SPACE(len);

    if (left < sizeof(h)) {
        c->trunc = 1;
        return 0;
    }
    if (left < cmlen) {
        c->trunc = 1;
        cmlen = left;
    }
    memset(&h, 0, sizeof(h));
    h.cmsg_level = level;
    h.cmsg_type = type;
    h.cmsg_len = cmlen;
    memcpy(c->p + c->used, &h, sizeof(h));
    if (cmlen > CMSG_LEN(0))
        memcpy(c->p + c->used + CMSG_LEN(0), data, cmlen - CMSG_LEN(0));
    c->used += space < left ? space : left;
    return cmlen == CMSG_LEN(len);
}

/* The control data of one datagram; returns whether its pktinfo got whole. */
static int deliver_ctl(struct msghdr *m, const struct sim_dgram *dg, unsigned b)
{
    static const unsigned char leave[8] = {0, 8, 16, 24, 32, 40, 48, 56};
    static const unsigned char filler[128];
    struct ctl_out c = {m->msg_control, m->msg_control ? m->msg_controllen : 0, 0, 0};
    unsigned char to[16];
    unsigned ifindex;
    int whole;

    if (c.room > 0) {
        simsock_check_addressable(c.p, c.room, "recvmsg control");
        /* What the kernel leaves alone is whatever the caller's stack held:
         * a recognisable value, so a server that reads it is caught. */
        memset(c.p, 0xA5, c.room);
    }
    if (b >= 0xD0 && b < 0xD8) {
        m->msg_controllen = 0;
        return 0;
    }
    if (b >= 0xD8 && c.room > leave[b - 0xD8] + CMSG_LEN(0)) {
        size_t len = c.room - leave[b - 0xD8] - CMSG_LEN(0);

        if (len > sizeof(filler))
            len = sizeof(filler);
        /* A timestamp would come first (sock_recv_cmsgs before pktinfo). */
        (void)put_cmsg(&c, SOL_SOCKET, SO_TIMESTAMP, filler, len);
    }
    dest_of(dg, to, &ifindex);
    if (udp_family == SIM_UDP_V4) {
        struct in_pktinfo pi;

        memset(&pi, 0, sizeof(pi));
        pi.ipi_ifindex = (int)ifindex;
        memcpy(&pi.ipi_spec_dst, to, 4);
        memcpy(&pi.ipi_addr, to, 4);
        whole = put_cmsg(&c, IPPROTO_IP, IP_PKTINFO, &pi, sizeof(pi));
    } else {
        struct in6_pktinfo pi;

        memset(&pi, 0, sizeof(pi));
        memcpy(&pi.ipi6_addr, to, 16);
        pi.ipi6_ifindex = ifindex;
        whole = put_cmsg(&c, IPPROTO_IPV6, IPV6_PKTINFO, &pi, sizeof(pi));
    }
    m->msg_controllen = c.used;
    if (c.trunc)
        m->msg_flags |= MSG_CTRUNC;
    return whole;
}

static void owe(unsigned k)
{
    dgrams[k].state = DG_OWED;
    owed[nowed++] = k;
}

static void settle(struct sim_dgram *dg, enum dg_state state)
{
    unsigned k = (unsigned)(dg - dgrams);

    if (dg->state == DG_OWED)
        for (unsigned i = 0; i < nowed; i++)
            if (owed[i] == k) {
                owed[i] = owed[--nowed];
                break;
            }
    dg->state = (unsigned char)state;
}

ssize_t __wrap_recvmsg(int fd, struct msghdr *m, int flags)
{
    struct sim_dgram *dg;
    size_t cap, n, off = 0;
    unsigned b, k;

    if (simsock_fd(fd) == NULL)
        return __real_recvmsg(fd, m, flags);
    simsock_held(fd, K_UDP, "recvmsg");
    CHECK((flags & (MSG_PEEK | MSG_ERRQUEUE | MSG_WAITALL)) == 0);
    if (udp_err != 0) {
        errno = udp_err;
        udp_err = 0;
        TRACE("recvmsg(%d) = -1 (%s, queued)\n", fd, strerror(errno));
        return -1;
    }
    if (rx_head == ndgrams) {
        errno = EAGAIN;
        return -1;
    }
    b = simsock_draining() ? 0 : fz_u8();
    if (b >= 0xE0) {
        errno = b < 0xE8 ? EINTR : b < 0xF0 ? ENOBUFS : b < 0xF4 ? ECONNREFUSED
                : b < 0xF8 ? EHOSTUNREACH : EAGAIN;
        TRACE("recvmsg(%d) = -1 (%s)\n", fd, strerror(errno));
        return -1;
    }
    k = rx_head++;
    dg = &dgrams[k];
    cap = iov_total(m, "recvmsg");
    n = dg->len < cap ? dg->len : cap;
    for (size_t i = 0; i < m->msg_iovlen && off < n; i++) {
        size_t len = m->msg_iov[i].iov_len < n - off ? m->msg_iov[i].iov_len : n - off;

        simsock_pattern_fill(DG_ID(k), off, m->msg_iov[i].iov_base, len);
        off += len;
    }
    if (m->msg_name != NULL) {
        memcpy(m->msg_name, &dg->src, m->msg_namelen < dg->srclen ? m->msg_namelen : dg->srclen);
        m->msg_namelen = dg->srclen;
    }
    m->msg_flags = dg->len > cap ? MSG_TRUNC : 0;
    dg->whole_ctl = (unsigned char)deliver_ctl(m, dg, b);
    dg->rcvbuf = (uint32_t)(cap < UINT32_MAX ? cap : UINT32_MAX);
    if (dg->len > cap)
        dg->state = DG_TRUNC;
    else if (dg->amplifier || (dg->self && dg->whole_ctl))
        dg->state = DG_NONE;
    else if (dg->self)
        dg->state = DG_MAYBE; /* nothing tells the server it is its own */
    else
        owe(k);
    TRACE("recvmsg(%d) = datagram #%u, %zu of %u bytes, %s\n", fd, k, n, (unsigned)dg->len,
          dg_state_name[dg->state]);
    /* Linux returns the datagram's real length when asked with MSG_TRUNC. */
    return (ssize_t)((flags & MSG_TRUNC) ? dg->len : n);
}

static int same_peer(const struct msghdr *m, const struct sim_dgram *dg)
{
    if (m->msg_namelen != dg->srclen)
        return 0;
    if (udp_family == SIM_UDP_V4) {
        struct sockaddr_in in;

        memcpy(&in, m->msg_name, sizeof(in));
        return in.sin_family == AF_INET && in.sin_port == dg->src.in.sin_port &&
               in.sin_addr.s_addr == dg->src.in.sin_addr.s_addr;
    } else {
        struct sockaddr_in6 in6;

        memcpy(&in6, m->msg_name, sizeof(in6));
        return in6.sin6_family == AF_INET6 && in6.sin6_port == dg->src.in6.sin6_port &&
               memcmp(&in6.sin6_addr, &dg->src.in6.sin6_addr, 16) == 0 &&
               in6.sin6_scope_id == dg->src.in6.sin6_scope_id;
    }
}

#define UDP_FAIL(...)                                                        \
    do {                                                                     \
        fprintf(stderr, "simsock: udp: " __VA_ARGS__);                       \
        abort();                                                             \
    } while (0)

/* The reply's source address, from its control data: each datagram is
 * answered from the address it was sent to (RFC 862 over a wildcard bind),
 * and only the pktinfo the server received can say which that was. */
static void check_reply_ctl(const struct msghdr *m, const struct sim_dgram *dg, const char *who)
{
    struct msghdr c = *m; /* the CMSG macros take a non-const header */
    unsigned char want[16], got[16];
    unsigned want_if, got_if = 0, k = (unsigned)(dg - dgrams);
    size_t alen = udp_family == SIM_UDP_V4 ? 4 : 16;
    int seen = 0;

    dest_of(dg, want, &want_if);
    if (c.msg_control == NULL)
        c.msg_controllen = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&c); h != NULL; h = CMSG_NXTHDR(&c, h)) {
        if (h->cmsg_level == IPPROTO_IP && h->cmsg_type == IP_PKTINFO &&
            (udp_family == SIM_UDP_V4 || dg->v4)) {
            struct in_pktinfo pi;

            if (h->cmsg_len != CMSG_LEN(sizeof(pi)))
                UDP_FAIL("reply to %s: IP_PKTINFO of %zu bytes, the kernel refuses it\n", who,
                         (size_t)h->cmsg_len);
            memcpy(&pi, CMSG_DATA(h), sizeof(pi));
            /* ipi_spec_dst is the source; ipi_addr means nothing on send. */
            if (udp_family == SIM_UDP_V4)
                memcpy(got, &pi.ipi_spec_dst, 4);
            else
                mapped(got, (const unsigned char *)&pi.ipi_spec_dst);
            got_if = (unsigned)pi.ipi_ifindex;
        } else if (h->cmsg_level == IPPROTO_IPV6 && h->cmsg_type == IPV6_PKTINFO &&
                   udp_family != SIM_UDP_V4) {
            struct in6_pktinfo pi;

            if (h->cmsg_len != CMSG_LEN(sizeof(pi)))
                UDP_FAIL("reply to %s: IPV6_PKTINFO of %zu bytes, the kernel refuses it\n",
                         who, (size_t)h->cmsg_len);
            memcpy(&pi, CMSG_DATA(h), sizeof(pi));
            memcpy(got, &pi.ipi6_addr, 16);
            got_if = pi.ipi6_ifindex;
        } else {
            UDP_FAIL("reply to %s carries a control message (level %d, type %d) that is no "
                     "source address for this socket\n",
                     who, h->cmsg_level, h->cmsg_type);
        }
        if (seen++)
            UDP_FAIL("reply to %s names its source address twice\n", who);
        if (memcmp(got, want, alen) != 0) {
            char g[INET6_ADDRSTRLEN], w[INET6_ADDRSTRLEN];
            int fam = udp_family == SIM_UDP_V4 ? AF_INET : AF_INET6;

            (void)inet_ntop(fam, got, g, sizeof(g));
            (void)inet_ntop(fam, want, w, sizeof(w));
            UDP_FAIL("reply to datagram #%u from %s leaves from %s, but it was sent to %s%s\n",
                     k, who, g, w,
                     dg->whole_ctl ? "" : " (the server never got that pktinfo whole: stale "
                                          "or garbage control data)");
        }
        if (got_if != 0 && got_if != want_if)
            UDP_FAIL("reply to datagram #%u from %s goes out on interface %u, it came in on "
                     "%u\n", k, who, got_if, want_if);
        if (got_if == 0 && !dg->v4 && link_local(got))
            UDP_FAIL("reply to datagram #%u from %s: link-local source without its "
                     "interface\n", k, who);
    }
    if (!seen && dg->whole_ctl)
        UDP_FAIL("reply to datagram #%u from %s names no source address: it leaves from "
                 "whichever address the route prefers, not the one the client asked\n",
                 k, who);
}

/* The datagram a reply answers, every property of the reply checked. */
static struct sim_dgram *reply_for(const struct msghdr *m, size_t len)
{
    struct sim_dgram *dg = NULL;
    char who[96];

    if (m->msg_name == NULL)
        UDP_FAIL("sendmsg() without an address on an unconnected socket\n");
    sa_str(m->msg_name, m->msg_namelen, who, sizeof(who));
    if (len > UDP_MAX6)
        UDP_FAIL("reply of %zu bytes to %s: larger than any datagram\n", len, who);
    for (unsigned i = 0; i < nowed && dg == NULL; i++) {
        struct sim_dgram *o = &dgrams[owed[i]];

        if (o->len == len && same_peer(m, o) && iov_diff(m, owed[i], len) == len)
            dg = o;
    }
    /* Not an owed reply: a permitted one (a lost reply sent again, an answer
     * to itself the server could not recognise), or a violation, which the
     * datagram it resembles most explains. */
    for (unsigned k = ndgrams; k-- > 0 && dg == NULL;) {
        struct sim_dgram *o = &dgrams[k];

        if ((o->state == DG_MAYBE || o->state == DG_LOST) && o->len == len &&
            same_peer(m, o) && iov_diff(m, k, len) == len)
            dg = o;
    }
    for (unsigned k = ndgrams; k-- > 0 && dg == NULL;) {
        struct sim_dgram *o = &dgrams[k];
        size_t common = len < o->len ? len : o->len;

        if (!same_peer(m, o) || iov_diff(m, k, common) != common)
            continue;
        if (o->len == len && o->state == DG_ANSWERED)
            UDP_FAIL("datagram #%u (%zu bytes) from %s answered twice\n", k, len, who);
        if (o->state == DG_TRUNC)
            UDP_FAIL("reply of %zu bytes to %s echoes datagram #%u of %u bytes, which was "
                     "truncated into a %u-byte buffer (MSG_TRUNC): a cut copy is no echo\n",
                     len, who, k, (unsigned)o->len, (unsigned)o->rcvbuf);
        if (o->len == len && o->state == DG_NONE && o->amplifier)
            UDP_FAIL("reply to %s: port %u is 0 or an amplifier (echo, daytime, chargen, "
                     "time), never to be answered\n",
                     who, udp_family == SIM_UDP_V4 ? ntohs(o->src.in.sin_port)
                                                   : ntohs(o->src.in6.sin6_port));
        if (o->len == len && o->state == DG_NONE)
            UDP_FAIL("reply to %s, the server's own address and port: it would answer "
                     "itself\n", who);
        if (o->len == len && o->state == DG_QUEUED)
            UDP_FAIL("reply to datagram #%u from %s before it was received\n", k, who);
        if (o->len == len)
            continue; /* the same bytes, but not this one: keep looking */
        UDP_FAIL("reply of %zu bytes to %s, but the datagram #%u it echoes (%s) has %u "
                 "bytes%s\n",
                 len, who, k, dg_state_name[o->state], (unsigned)o->len,
                 len > o->len ? ": a reply larger than its request" : "");
    }
    if (dg == NULL) {
        unsigned from = 0, newest = 0;

        for (unsigned k = 0; k < ndgrams; k++)
            if (same_peer(m, &dgrams[k]))
                from++, newest = k;
        if (from == 0)
            UDP_FAIL("reply of %zu bytes to %s, which never sent a datagram\n", len, who);
        UDP_FAIL("reply of %zu bytes to %s matches none of its %u datagrams (byte %zu differs "
                 "from its newest, #%u of %u bytes)\n",
                 len, who, from, iov_diff(m, newest, len < dgrams[newest].len ? len : dgrams[newest].len),
                 newest, (unsigned)dgrams[newest].len);
    }
    check_reply_ctl(m, dg, who);
    return dg;
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *m, int flags)
{
    struct sim_dgram *dg;
    size_t len;
    unsigned b;
    int e;

    if (simsock_fd(fd) == NULL)
        return __real_sendmsg(fd, m, flags);
    simsock_held(fd, K_UDP, "sendmsg");
    len = iov_total(m, "sendmsg");
    dg = reply_for(m, len);
    if (udp_wfull) {
        errno = EAGAIN;
        TRACE("sendmsg(%d, #%u) = -1 (EAGAIN, still full)\n", fd, (unsigned)(dg - dgrams));
        return -1;
    }
    b = simsock_draining() ? 0 : fz_u8();
    if (b < 0xE0) {
        TRACE("sendmsg(%d, #%u) = %zu\n", fd, (unsigned)(dg - dgrams), len);
        settle(dg, DG_ANSWERED);
        return (ssize_t)len;
    }
    e = b < 0xE8 ? EINTR : b < 0xEC ? EMSGSIZE : b < 0xF0 ? ENOBUFS : b < 0xF8 ? ECONNREFUSED
                                                                                : EAGAIN;
    TRACE("sendmsg(%d, #%u) = -1 (%s)\n", fd, (unsigned)(dg - dgrams), strerror(e));
    if (e == EAGAIN)
        udp_wfull = 1;
    else if (e != EINTR)
        settle(dg, DG_LOST);
    errno = e;
    return -1;
}

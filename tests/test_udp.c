/* test_udp.c - echo_udp_service (impl/udp.c), the UDP echo every server
 * shares. recvmsg and sendmsg are replaced (--wrap): each test scripts the
 * datagrams the kernel hands over, with their destination-address control
 * messages, and the results of the sends, and checks every reply. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "echo.h"

const char echo_server_name[] = "echo-test";

#define SERVER_PORT 7007
#define FD 5

/* What recvmsg hands over next: a datagram, or an error. */
struct incoming {
    int error; /* errno, or 0 for a datagram */
    unsigned char data[64];
    size_t len;
    int truncated;
    uint32_t src, dst; /* IPv4, host order */
    unsigned src_port;
};

static struct incoming queue[128];
static size_t queued, taken;
static int send_errors[8];
static size_t send_errors_len, sends_tried;

/* The replies sent. */
struct reply {
    unsigned char data[64];
    size_t len;
    uint32_t to, from;
    unsigned to_port;
};
static struct reply sent[128];
static size_t nsent;

ssize_t __wrap_recvmsg(int fd, struct msghdr *m, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *m, int flags);

ssize_t __wrap_recvmsg(int fd, struct msghdr *m, int flags)
{
    struct incoming *in;
    struct sockaddr_in *sin = m->msg_name;
    struct in_pktinfo pi;
    struct cmsghdr *c;

    assert_int_equal(fd, FD);
    assert_true(flags & MSG_DONTWAIT);
    if (taken == queued) {
        errno = EAGAIN;
        return -1;
    }
    in = &queue[taken++];
    if (in->error != 0) {
        errno = in->error;
        return -1;
    }
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)in->src_port);
    sin->sin_addr.s_addr = htonl(in->src);
    m->msg_namelen = sizeof(*sin);
    memcpy(m->msg_iov[0].iov_base, in->data, in->len);
    memset(&pi, 0, sizeof(pi));
    pi.ipi_addr.s_addr = htonl(in->dst);
    pi.ipi_ifindex = 1;
    assert_true(m->msg_controllen >= CMSG_SPACE(sizeof(pi)));
    c = CMSG_FIRSTHDR(m);
    if (c == NULL) {
        fail_msg("no room for a control message");
        return -1;
    }
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(pi));
    memcpy(CMSG_DATA(c), &pi, sizeof(pi));
    m->msg_controllen = CMSG_SPACE(sizeof(pi));
    m->msg_flags = in->truncated ? MSG_TRUNC : 0;
    return (ssize_t)in->len;
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *m, int flags)
{
    const struct sockaddr_in *to = m->msg_name;
    struct reply *r = &sent[nsent];
    struct in_pktinfo pi;
    struct cmsghdr *c;

    assert_int_equal(fd, FD);
    assert_true(flags & MSG_DONTWAIT);
    if (sends_tried < send_errors_len && send_errors[sends_tried++] != 0) {
        errno = send_errors[sends_tried - 1];
        return -1;
    }
    assert_int_equal(m->msg_iovlen, 1);
    r->len = m->msg_iov[0].iov_len;
    memcpy(r->data, m->msg_iov[0].iov_base, r->len);
    r->to = ntohl(to->sin_addr.s_addr);
    r->to_port = ntohs(to->sin_port);
    /* the reply names its source address: the one the datagram was sent to */
    c = CMSG_FIRSTHDR((struct msghdr *)m);
    if (c == NULL) {
        fail_msg("the reply names no source address");
        return -1;
    }
    assert_int_equal(c->cmsg_level, IPPROTO_IP);
    assert_int_equal(c->cmsg_type, IP_PKTINFO);
    memcpy(&pi, CMSG_DATA(c), sizeof(pi));
    r->from = ntohl(pi.ipi_spec_dst.s_addr);
    nsent++;
    return (ssize_t)r->len;
}

/* getsockname is real: a bound UDP socket tells the server its port. */
static struct echo_udp u;

static void make_server(void)
{
    /* echo_udp_init reads the port with getsockname on a real socket: a
     * UDP socket bound to loopback on any port, then scripted as FD. */
    struct sockaddr_in sin = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    socklen_t len = sizeof(sin);
    char err[ECHO_ERR_LEN] = "";

    assert_true(fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(echo_udp_init(&u, fd, err), ECHO_OK);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    assert_int_equal(u.port, ntohs(sin.sin_port));
    assert_int_equal(close(fd), 0);
    u.fd = FD;
    u.port = SERVER_PORT;
}

static int setup(void **state)
{
    (void)state;
    queued = taken = nsent = send_errors_len = sends_tried = 0;
    memset(queue, 0, sizeof(queue));
    make_server();
    return 0;
}

static void datagram(const char *data, size_t len, uint32_t src, unsigned src_port, uint32_t dst)
{
    struct incoming *in = &queue[queued++];

    assert_true(len <= sizeof(in->data));
    memcpy(in->data, data, len);
    in->len = len;
    in->src = src;
    in->src_port = src_port;
    in->dst = dst;
}

#define LO1 0x7f000001u /* 127.0.0.1 */
#define LO2 0x7f000002u /* 127.0.0.2 */

static void test_each_datagram_one_reply_same_bytes_from_its_destination(void **state)
{
    (void)state;
    datagram("ping", 4, LO1, 40000, LO1);
    datagram("", 0, LO1, 40001, LO1);   /* empty: answered empty */
    datagram("two", 3, LO1, 40002, LO2); /* sent to the second address */
    assert_int_equal(echo_udp_service(&u), ECHO_READ);
    assert_int_equal(nsent, 3);
    assert_int_equal(sent[0].len, 4);
    assert_memory_equal(sent[0].data, "ping", 4);
    assert_int_equal(sent[0].to, LO1);
    assert_int_equal(sent[0].to_port, 40000);
    assert_int_equal(sent[1].len, 0);
    assert_int_equal(sent[1].to_port, 40001);
    assert_int_equal(sent[2].from, LO2);
    assert_int_equal(sent[2].to_port, 40002);
}

static void test_truncated_never_answered(void **state)
{
    (void)state;
    datagram("cut", 3, LO1, 40000, LO1);
    queue[0].truncated = 1;
    datagram("whole", 5, LO1, 40001, LO1);
    assert_int_equal(echo_udp_service(&u), ECHO_READ);
    assert_int_equal(nsent, 1);
    assert_int_equal(sent[0].to_port, 40001);
}

static void test_no_loops(void **state)
{
    static const unsigned amplifiers[] = {0, 7, 13, 19, 37};

    (void)state;
    for (size_t i = 0; i < sizeof(amplifiers) / sizeof(amplifiers[0]); i++)
        datagram("x", 1, LO1, amplifiers[i], LO1);
    datagram("me", 2, LO1, SERVER_PORT, LO1); /* from itself */
    datagram("ok", 2, LO2, SERVER_PORT, LO1); /* another host's port 7007: fine */
    datagram("ok", 2, LO1, 38, LO1);
    assert_int_equal(echo_udp_service(&u), ECHO_READ);
    assert_int_equal(nsent, 2);
    assert_int_equal(sent[0].to, LO2);
    assert_int_equal(sent[1].to_port, 38);
}

static void test_errors_of_one_peer_do_not_stop_it(void **state)
{
    (void)state;
    datagram("a", 1, LO1, 40000, LO1);
    queue[queued++].error = ECONNREFUSED; /* an ICMP error for an earlier reply */
    queue[queued++].error = EINTR;
    datagram("b", 1, LO1, 40001, LO1);
    send_errors[0] = EHOSTUNREACH; /* the reply to "a" is lost */
    send_errors[1] = EINTR;        /* the reply to "b" is retried */
    send_errors_len = 2;
    assert_int_equal(echo_udp_service(&u), ECHO_READ);
    assert_int_equal(nsent, 1);
    assert_memory_equal(sent[0].data, "b", 1);
}

static void test_full_send_buffer_waits_without_reading(void **state)
{
    (void)state;
    datagram("a", 1, LO1, 40000, LO1);
    datagram("b", 1, LO1, 40001, LO1);
    send_errors[0] = EAGAIN;
    send_errors_len = 1;
    assert_int_equal(echo_udp_service(&u), ECHO_WRITE);
    assert_int_equal(nsent, 0);
    assert_int_equal(taken, 1); /* "b" stays in the kernel meanwhile */
    assert_int_equal(echo_udp_service(&u), ECHO_READ);
    assert_int_equal(nsent, 2);
    assert_memory_equal(sent[0].data, "a", 1);
    assert_memory_equal(sent[1].data, "b", 1);
}

static void test_a_batch_per_wakeup(void **state)
{
    (void)state;
    for (int i = 0; i < ECHO_UDP_BATCH + 5; i++)
        datagram("n", 1, LO1, 40000 + (unsigned)i, LO1);
    /* a batch, then the caller's other clients get their turn */
    assert_int_equal(echo_udp_service(&u), ECHO_WRITE);
    assert_int_equal(nsent, ECHO_UDP_BATCH - 1);
    assert_int_equal(echo_udp_service(&u), ECHO_READ);
    assert_int_equal(nsent, ECHO_UDP_BATCH + 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_each_datagram_one_reply_same_bytes_from_its_destination, setup),
        cmocka_unit_test_setup(test_truncated_never_answered, setup),
        cmocka_unit_test_setup(test_no_loops, setup),
        cmocka_unit_test_setup(test_errors_of_one_peer_do_not_stop_it, setup),
        cmocka_unit_test_setup(test_full_send_buffer_waits_without_reading, setup),
        cmocka_unit_test_setup(test_a_batch_per_wakeup, setup),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* echo.h - the shared core of the echoconf reference servers (RFC 862 TCP echo).
 *
 * Every server is one executable: main.c parses the command line, opens the
 * listener and calls echo_serve(), which each server defines in its own file.
 * The per-connection logic (echo_conn_*) is shared by all of them, so the five
 * servers differ only in how they wait for readiness and how they schedule
 * connections. Functions return ECHO_OK (0) or ECHO_ERR (-1); those that can
 * fail in a way worth reporting take a caller-owned buffer of ECHO_ERR_LEN. */
#ifndef ECHO_H
#define ECHO_H

#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>

#define ECHO_OK 0
#define ECHO_ERR (-1)
#define ECHO_ERR_LEN 256

#define ECHO_DEFAULT_PORT 7 /* RFC 862 */
#define ECHO_DEFAULT_MAX_CONNS 1024
#define ECHO_HOST_MAX 256

/* Bytes read but not yet written back, per connection. When the buffer is
 * full the server stops reading from that client, so TCP flow control pushes
 * back on a client that sends without reading: memory stays bounded. A
 * connection holds its buffer only while bytes are in flight (an idle one
 * costs its small header), taken from and given back to a shared pool of at
 * most ECHO_POOL_MAX spare buffers, so a busy server does not allocate per
 * read. */
#define ECHO_BUF_SIZE (64 * 1024)
#define ECHO_POOL_MAX 16

/* Readiness, as the backends report it and as connections ask for it. */
#define ECHO_READ 1u
#define ECHO_WRITE 2u

/* Transports, as --transport names them; inetd serves both on port 7. */
#define ECHO_TCP 1u
#define ECHO_UDP 2u

struct echo_config {
    char host[ECHO_HOST_MAX]; /* "::" = dual-stack wildcard */
    unsigned port;            /* 0 = any free port */
    unsigned max_conns;       /* connections served at once; more are refused */
    unsigned transports;      /* ECHO_TCP | ECHO_UDP */
    int help;                 /* --help was given */
};

/* What main() opened for the server: -1 for a transport not served. */
struct echo_sockets {
    int tcp; /* the listener */
    int udp;
};

/* args.c */
int echo_parse_args(int argc, char **argv, struct echo_config *cfg, char *err);
void echo_usage(FILE *out, const char *prog);

/* net.c */
void echo_set_error(char *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int echo_listen(const struct echo_config *cfg, char *addr, size_t addrlen,
                unsigned *port, char *err);
/* Every transport cfg asks for, on one port number; addr and port as the
 * `listening` line prints them. */
int echo_open(const struct echo_config *cfg, struct echo_sockets *s, char *addr,
              size_t addrlen, unsigned *port, char *err);
void echo_close(struct echo_sockets *s);
int echo_signals_init(char *err);

/* Accepting without spinning when descriptors run out: a reserve descriptor
 * is spent to take the pending connection off the queue and close it. */
struct echo_acceptor {
    int listen_fd;
    int reserve_fd; /* -1 while spent and not yet recovered */
};
int echo_acceptor_init(struct echo_acceptor *a, int listen_fd, char *err);
void echo_acceptor_close(struct echo_acceptor *a);
int echo_accept(struct echo_acceptor *a, int flags);
int echo_accept_retry(int err); /* is this accept() errno worth another try? */
int echo_accept_wait(struct echo_acceptor *a, int flags, char *err);

/* How long to stop accepting when descriptors run out and the reserve is
 * spent: short enough to recover quickly, long enough not to spin. */
#define ECHO_ACCEPT_BACKOFF_MS 100

/* conn.c: one client connection and the bytes it is owed. */
struct echo_conn {
    int fd;
    int eof;          /* the client has finished sending (read returned 0) */
    unsigned watched; /* ECHO_READ/ECHO_WRITE the loop currently waits for */
    size_t head;      /* first byte not yet written back */
    size_t tail;      /* end of the bytes read so far */
    unsigned char *buf; /* ECHO_BUF_SIZE bytes while head < tail, else NULL */
};

#define ECHO_CONN_CLOSE (-1) /* echo_conn_service: the connection is over */

struct echo_conn *echo_conn_new(int fd);
void echo_conn_free(struct echo_conn *c);
int echo_conn_service(struct echo_conn *c, unsigned ready);
int echo_stream(int fd);

/* udp.c: the UDP echo of one datagram socket. At most one reply waits for
 * room in the send buffer, and while it does the socket is not read. */
#define ECHO_UDP_MAX 65536 /* more than any UDP payload (65527 bytes over IPv6) */
#define ECHO_UDP_BATCH 64  /* datagrams per wakeup, so TCP clients get turns too */
#define ECHO_UDP_CTL 128   /* room for the kernel's control messages */

struct echo_udp {
    int fd;
    unsigned port;                 /* the server's own, to never answer itself */
    int pending;                   /* buf holds a reply not yet sent */
    size_t len;
    struct sockaddr_storage peer;  /* where the reply goes */
    socklen_t peerlen;
    size_t ctllen;                 /* the reply's source address, as a control message */
    _Alignas(struct cmsghdr) unsigned char ctl[ECHO_UDP_CTL];
    unsigned char buf[ECHO_UDP_MAX];
};

int echo_udp_init(struct echo_udp *u, int fd, char *err);
/* Answers what the socket holds, up to a batch; returns what to wait for
 * next: ECHO_READ, or ECHO_WRITE while a reply waits for room. */
unsigned echo_udp_service(struct echo_udp *u);
/* The blocking servers: serve the socket in this thread, or in a new one. */
int echo_udp_serve(int fd, char *err);
int echo_udp_spawn(int fd, char *err);

/* Each server: serve what main() opened until a signal ends the process.
 * Returns only on a fatal error, with err filled in. */
int echo_serve(const struct echo_sockets *s, const struct echo_config *cfg, char *err);
extern const char echo_server_name[];

#endif

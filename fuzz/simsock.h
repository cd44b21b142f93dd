/* simsock.h - a simulated socket layer under the servers' real code.
 *
 * The fuzz targets link impl/ unchanged with -Wl,--wrap= for the socket
 * calls the servers make (recv, send, accept4, close, open, setsockopt,
 * poll, select, epoll_*, clock_gettime, recvmsg, sendmsg, getsockname).
 * A wrapper simulates the call when it names a simulated descriptor and
 * passes everything else to the real call, so libFuzzer and the sanitizers
 * keep doing their own I/O.
 *
 * Simulated descriptors are real ones (a pool of /dev/null descriptors
 * opened once, all below FD_SETSIZE) that the server never really closes:
 * numbers stay unique within one input, so a second close() of the same
 * connection is caught instead of silently closing somebody else's file.
 *
 * Every outcome comes from the fuzz input (fuzz.h): how many bytes each
 * recv()/send() moves, EINTR, EAGAIN, resets, accept() failures, what the
 * wait call reports.
 *
 * One simulated UDP socket (sim_udp, simdgram.c) takes recvmsg, sendmsg and
 * getsockname: datagrams from simulated peers wait in its receive queue,
 * each delivered with the pktinfo control message naming the local address
 * it was sent to, and every reply is matched, where it is sent, against the
 * datagram it answers. The clients are scripted by the target through the
 * sim_client_* calls. Each client's bytes follow a fixed pattern, so every
 * byte the server sends is checked where it is sent: the echo must be a
 * prefix of what the client sent, in order, without gaps. */
#ifndef ECHO_SIMSOCK_H
#define ECHO_SIMSOCK_H

#include <stdint.h>

#define SIM_MAX_CLIENTS 48

enum sim_mode {
    SIM_NONBLOCKING, /* event loops: EAGAIN exists, nothing ever blocks */
    SIM_BLOCKING     /* echo_stream: a blocked call lets the client act */
};

/* A new input: every descriptor back in the pool, no clients. max_conns is
 * what the server was told, so refusals can be told from lost clients. */
void sim_reset(enum sim_mode mode, unsigned max_conns);
/* Calls between sim_enter() and sim_leave() are the server's: only then do
 * open("/dev/null"), epoll_create1() and the clock belong to the sim. */
void sim_enter(void);
void sim_leave(void);

int sim_listener(void);
/* SIM_BLOCKING: one client, already connected; returns the server's fd. */
int sim_attach(void);
/* Called when a blocking call would wait for the client: lets the client
 * act (send, half-close, reset). Returns 0 when the script has ended. */
void sim_set_block_hook(int (*hook)(void));

/* Client actions. i is taken modulo the clients that exist. */
int sim_connect(void); /* queued until the server accepts; -1 when full */
unsigned sim_clients(void);
void sim_client_send(unsigned i, unsigned n);
void sim_client_stall(unsigned i);             /* stops reading */
void sim_client_read(unsigned i, unsigned n);  /* a stalled client reads n */
void sim_client_shutdown(unsigned i);          /* half-close: FIN after data */
void sim_client_reset(unsigned i);
void sim_tick(unsigned ms);

/* Input over: every client half-closes and reads everything it is sent. */
void sim_drain(void);
/* Nothing queued, no connection open: every client has been served. */
int sim_done(void);
/* Every client's state on stderr, for a failure report. */
void sim_dump(void);
/* From now on the server is shutting down: closing with bytes owed is fine. */
void sim_teardown(void);
/* End of input: every descriptor the server got must have been closed
 * exactly once, except the listener (which the caller owns). */
void sim_finish(void);

/* The server's UDP socket, bound to the wildcard address of its family on
 * port 7, 7777, 40000 or 1000 (port % 4); the caller owns it, the server
 * must never close it. */
enum sim_udp_family {
    SIM_UDP_V4,   /* AF_INET, IP_PKTINFO */
    SIM_UDP_V6,   /* AF_INET6, IPV6_V6ONLY, IPV6_RECVPKTINFO */
    SIM_UDP_DUAL  /* AF_INET6 dual-stack: IPv4 peers arrive as ::ffff:a.b.c.d */
};
int sim_udp(enum sim_udp_family family, unsigned port);
/* A peer sends len bytes (clamped to what the family carries) to local
 * address dst % 4; src picks the peer (format at the top of simdgram.c). */
void sim_udp_send(unsigned src, unsigned dst, unsigned len);
/* An ICMP error (ECONNREFUSED, EHOSTUNREACH) queued on the socket: the next
 * recvmsg() returns it, before any datagram. */
void sim_udp_icmp(int err);
/* Every datagram received, every reply owed sent, no error left queued. */
int sim_udp_done(void);
void sim_udp_dump(void);
/* Called by a wait without a time limit (echo_udp_serve's poll): lets the
 * peers act. Returns 0 when the run is over: the wait then fails with
 * ECANCELED, which is how the target ends a server loop that never returns. */
void sim_set_wait_hook(int (*hook)(void));
/* How many waits the input made fail (ENOMEM/EINVAL), which ends a loop. */
unsigned sim_wait_failures(void);

/* Blocking mode: the attached client's fate, for the final checks. */
int sim_client_closed(unsigned i);

#endif

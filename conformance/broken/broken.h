/* broken.h: the plumbing every broken echo server shares.
 *
 * Nothing here is a bug on purpose: argument parsing of the server contract, the
 * listening socket, the ready line, exit on SIGTERM/SIGINT and an accept() that
 * survives EMFILE live here so that each broken-*.c shows only its own bug.
 * Include this header first: it selects the POSIX/GNU interfaces.
 */
#ifndef ECHOCONF_BROKEN_H
#define ECHOCONF_BROKEN_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>

struct options {
	const char *host; /* "::" unless --host */
	int port;         /* 7 unless --port; 0 picks a free port */
	int max_conns;    /* connections served at once; extra ones are closed */
};

/* Parses [--host ADDR] [--port N] [--max-conns N] [--help]. --help prints usage and
 * exits 0; a bad argument prints one line on stderr and exits 2. */
void parse_options(int argc, char **argv, struct options *opt);

/* A non-blocking listener on opt->host:opt->port with SO_REUSEADDR; "::" is
 * dual-stack and falls back to 0.0.0.0 without IPv6. Prints the ready line. */
int listen_on(const struct options *opt);

/* A blocking UDP socket on opt->host:opt->port (dual-stack for "::"), for the UDP echo
 * servers, that reports each datagram's destination address; prints the ready line. */
int udp_bind(const struct options *opt);

/* A datagram's sender, and the control message that makes its answer leave from the
 * address the datagram was sent to (a wildcard socket on a host with several addresses
 * would otherwise answer from whichever address the route prefers). */
struct datagram {
	struct sockaddr_storage peer;
	socklen_t peer_len;
	_Alignas(struct cmsghdr) unsigned char ctl[64];
	size_t ctl_len;
};

/* recvfrom() that also fills d; -1 with errno as recvfrom(). A truncated datagram
 * (bigger than size) is returned cut, as recvfrom() does: that is the caller's bug. */
ssize_t udp_receive(int fd, void *buf, size_t size, struct datagram *d);

/* sendto() d's sender from the address the datagram was sent to. */
ssize_t udp_answer(int fd, const void *buf, size_t n, const struct datagram *d);

/* Whether d came from a port whose service answers anything (0, echo 7, daytime 13,
 * chargen 19, time 37): answering it starts a loop between two servers. */
bool udp_from_amplifier(const struct datagram *d);

/* A UDP echo server's whole life, so that each broken UDP server is only its bug: parse
 * the options, bind (a wildcard "::" bound as `wildcard` instead when that is set), then
 * hand answer() every receive into a buffer of `recv_size` bytes (at most 65536): the
 * byte count, or -1 with errno for a failed receive. Never returns. */
struct udp_server {
	size_t recv_size;
	const char *wildcard;
	bool recverr; /* udp_recverr() on the socket */
	void (*answer)(int fd, char *buf, ssize_t n, const struct datagram *d);
};
_Noreturn void udp_serve(int argc, char **argv, const struct udp_server *srv);

/* Asks for the ICMP errors of the socket's datagrams (IP_RECVERR, and IPV6_RECVERR on an
 * IPv6 socket): each is queued on the socket's error queue, and the next receive fails
 * with it. */
void udp_recverr(int fd);

/* Prints "listening ADDR PORT" for a bound socket and flushes stdout. */
void announce(int lfd, const char *shown_host);

/* SIGTERM and SIGINT end the process with status 0. */
void exit_on_signals(void);

/* Accepts one pending connection as a non-blocking descriptor, or returns -1 when
 * none is pending. Under EMFILE/ENFILE it frees a reserve descriptor to accept and
 * close the connection, so a full table never leaves a readable listener behind. */
int accept_client(int lfd);

/* Clears or sets O_NONBLOCK; exits on failure. */
void set_blocking(int fd, bool blocking);

/* perror(what) and exit 1: for errors a server cannot go on after. */
_Noreturn void die(const char *what);

#endif

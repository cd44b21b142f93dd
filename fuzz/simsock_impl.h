/* simsock_impl.h - shared between simsock.c and simdgram.c, not for targets
 * (their API is simsock.h).
 *
 * simsock.c owns the simulated descriptor table, the byte patterns, the
 * draining state and the trace switch; simdgram.c simulates the UDP socket
 * on top of them, and simsock.c asks it for what the wait calls and
 * sim_reset() need. Names defined in simsock.c start with simsock_, names
 * defined in simdgram.c with simdgram_; neither prefix is API. */
#ifndef ECHO_SIMSOCK_IMPL_H
#define ECHO_SIMSOCK_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- defined in simsock.c ---- */

/* What a simulated descriptor is. */
enum sim_kind { K_NONE, K_FREE, K_CLOSED, K_LISTEN, K_CLIENT, K_RESERVE, K_EPOLL, K_UDP };

struct sim_desc; /* one entry of the descriptor table (simsock.c) */

/* The entry of a simulated descriptor; NULL for any other descriptor, which
 * the wrappers pass to the real call. */
struct sim_desc *simsock_fd(int fd);
/* The entry of fd, which must be of that kind: aborts naming call if not. */
struct sim_desc *simsock_held(int fd, enum sim_kind kind, const char *call);
/* A fresh descriptor of that kind from the pool; -1 when none is left. */
int simsock_alloc_fd(enum sim_kind kind);

/* The pattern bytes of id (a client, or a datagram) from offset off. */
void simsock_pattern_fill(unsigned id, uint64_t off, unsigned char *dst, size_t n);
/* How many of the n bytes at src are the pattern of id from off on. */
size_t simsock_pattern_diff(unsigned id, uint64_t off, const unsigned char *src, size_t n);
/* Under ASan: aborts unless the server's buffer is addressable at both ends. */
void simsock_check_addressable(const void *buf, size_t len, const char *call);

/* The input is over (sim_drain): every outcome is the benign one, and no
 * outcome byte is read. */
int simsock_draining(void);

extern int simsock_tracing; /* SIMSOCK_TRACE=1: every simulated call on stderr */
#define TRACE(...)                                                           \
    do {                                                                     \
        if (simsock_tracing)                                                 \
            fprintf(stderr, "simsock: " __VA_ARGS__);                        \
    } while (0)

/* ---- defined in simdgram.c ---- */

/* Readiness as the kernel would see it (simdgram_ready, and the wait calls). */
#define R_IN 1u
#define R_OUT 2u
#define R_HUP 4u
#define R_ERR 8u /* a queued socket error: POLLERR, readable and writable */

/* A new input (sim_reset): no UDP socket, no datagram, no queued error. */
void simdgram_reset(void);
/* The UDP socket's readiness (R_IN, R_OUT, R_ERR). */
unsigned simdgram_ready(void);
/* A wait call decided its outcome: the kernel had time to empty the send
 * buffer, so a sendmsg() that met EAGAIN may go through again. */
void simdgram_wait(void);

#endif

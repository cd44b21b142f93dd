/* loop.h - the event loop shared by echo-select, echo-poll and echo-epoll, and
 * the contract each of their backends implements.
 *
 * A backend is one file (select.c, poll.c, epoll.c) defining the be_*
 * functions below; the executable links exactly one, so there is no runtime
 * dispatch. Readiness is reported as ECHO_READ/ECHO_WRITE; hang-ups and errors
 * are reported as both, so the connection code meets the error on its next
 * read or write. */
#ifndef ECHO_LOOP_H
#define ECHO_LOOP_H

#include "echo.h"

struct be_state; /* each backend's private state */

struct be_event {
    int fd;
    unsigned ready; /* ECHO_READ | ECHO_WRITE */
};

int be_create(struct be_state **be, char *err);
void be_free(struct be_state *be);
/* Start, change or stop (want == 0) waiting for fd; had is what it waited
 * for until now (0 = not watched). */
int be_watch(struct be_state *be, int fd, unsigned had, unsigned want);
/* Waits up to timeout_ms (-1: no limit). Returns how many events were
 * stored, 0 on timeout or interruption, ECHO_ERR on failure. */
int be_wait(struct be_state *be, struct be_event *ev, int max, int timeout_ms);
/* Can this descriptor be watched at all? select() cannot go past FD_SETSIZE. */
int be_fd_ok(int fd);

#define ECHO_LOOP_EVENTS 256
#define ECHO_ACCEPT_BATCH 64       /* accepts per wakeup, so clients are served too */

struct echo_loop {
    struct be_state *be;
    struct echo_acceptor acceptor;
    int listening;         /* the listener is being watched */
    long long resume_ms;   /* when to watch it again after a back-off */
    struct echo_udp *udp;  /* the datagram socket, when UDP is served */
    unsigned udp_watched;
    struct echo_conn **by_fd;
    size_t by_fd_len;
    unsigned nconns;
    unsigned max_conns;
    struct be_event events[ECHO_LOOP_EVENTS];
};

/* listen_fd -1: no TCP (UDP only). */
int echo_loop_init(struct echo_loop *l, int listen_fd, unsigned max_conns, char *err);
/* Serve UDP echo on fd too. */
int echo_loop_add_udp(struct echo_loop *l, int fd, char *err);
int echo_loop_step(struct echo_loop *l, int timeout_ms, char *err);
void echo_loop_free(struct echo_loop *l);

#endif

/* What the files of echo-bench share: the few sizes more than one of them
 * needs, the clock, the byte pattern every mode sends and checks, the TCP
 * connect every TCP mode makes, the latency histogram that pingpong and udp
 * both fill, and one entry point per mode. Each mode lives in its own file so
 * that it can be read (and changed) without the others; anything only one
 * file uses stays static there. */
#ifndef ECHO_BENCH_H
#define ECHO_BENCH_H

#include <stddef.h>

#define CHUNK (64 * 1024)
#define UDP_MAX 65507 /* the largest UDP payload over IPv4 */
#define GRACE_S 10 /* what a run may take past --seconds to collect what is owed */

/* common.c */
double now(void);
unsigned long long now_ns(void);
void pattern_init(void);
const unsigned char *stream_at(int i, unsigned long long off);
int connect_to(const char *host, const char *port);
int epoll_watch(int ep, int fd, unsigned events, unsigned idx);
int ensure_nofile(int conns);

/* hist.c */
void hist_record(unsigned long long ns);
unsigned long long hist_samples(void);
void print_latency(void);

/* The modes: each prints its result line and returns the exit status. */
int stream(const char *host, const char *port, int conns, double seconds, int pingpong, size_t size);
int connrate(const char *host, const char *port, double seconds, int rst);
int hold(const char *host, const char *port, int conns, double seconds, long pid);
int oneway(const char *host, int conns, double seconds);
int udp(const char *host, const char *port, int conns, double seconds, size_t size);

#endif

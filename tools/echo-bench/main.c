/* echo-bench - throughput, round trips, latency, connection rate and idle
 * connections of any TCP or UDP echo server, and the loopback ceiling.
 *
 *   echo-bench --port N [--host ADDR] [--conns N] [--seconds S] [--pid PID] [--size N]
 *              [--mode stream|pingpong|connrate|connrate-rst|hold|udp]
 *   echo-bench --mode oneway [--host ADDR] [--conns N] [--seconds S]
 *
 * stream: every connection writes a pseudo-random stream as fast as the
 * server takes it and checks every byte that comes back, then half-closes
 * and waits for the rest: the figure is echoed MiB/s, and a wrong byte is a
 * failure, so a fast-but-wrong server cannot win. pingpong: one --size-byte
 * message (default 64, at most 65536) in flight per connection: round trips
 * per second, and the latency of each (its first byte sent to its last byte
 * back) in a log-linear histogram. connrate: one connection after another,
 * each a 1-byte echo then a close (connrate-rst: then a reset, SO_LINGER 0):
 * connections per second. hold: --conns connections opened one after another,
 * each proven served by a 1-byte echo (the time to establish them all), kept
 * idle for --seconds, then every one must echo again (all asked at once, then
 * each answer read: echo_again_seconds); with --pid, the server's resident
 * memory as they are added and once they are up. oneway: no server at all, the
 * ceiling the echoes are measured against: a forked sink on the loopback of
 * --host's family (::1 when --host is an IPv6 literal, else 127.0.0.1) reads
 * and discards what --conns connections stream to it, and must report as many
 * bytes as were sent; --port is not used. udp: --conns connected UDP sockets,
 * each with one datagram of --size bytes (default 64, at most 65507) in
 * flight; its first 8 bytes (fewer in a shorter datagram) are its sequence
 * number, the rest the socket's window of the pattern, so every answer is
 * checked byte for byte and a late copy of an earlier answer is told from a
 * wrong one. A datagram unanswered for 1 s is sent again, up to 3 tries.
 * More connections than RLIMIT_NOFILE allows raise it (its hard limit too, as root).
 *
 * The result is one line on stdout, `MODE key=value ... ok`:
 *   stream    conns seconds echoed_bytes MiB_per_second
 *   pingpong  conns size seconds round_trips per_second p50_us p90_us p99_us
 *             p999_us max_us samples
 *   connrate, connrate-rst  seconds connections per_second slow_connects
 *             (connects that took over 0.5 s: a SYN the host dropped)
 *   hold      conns establish_seconds per_second server_rss_kib (-1: unknown)
 *             echo_again_seconds; with --pid, before it twenty lines
 *             `sample conns=N server_rss_kib=K` as the connections are added
 *             (not ending in ok: they are no result)
 *   oneway    conns seconds bytes MiB_per_second
 *   udp       conns size seconds round_trips per_second p50_us p90_us p99_us
 *             p999_us max_us lost late
 * seconds is the time measured, per_second round trips (or connections) by
 * it. pNN_us: the latency under which NN % of the round trips came back, in
 * microseconds, as the upper end of the histogram bucket it falls in (within
 * 1/64 of the value, never above max_us); p999 is 99.9 %. samples: the round
 * trips the histogram holds. lost: udp tries unanswered within 1 s (each sent
 * again; a datagram's latency counts from its first try); late: answers to a
 * datagram already answered, ignored.
 * Exit status 0 when every byte came back exact, 1 otherwise (a udp datagram
 * unanswered after 3 tries is "no answer"), 2 on bad use. */

/* main.c: the command line (its checks, the usage text) and the dispatch to
 * the modes, each in a file of its own (bench.h lists them), so that the
 * tool's whole interface is read in one place. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define MAX_CONNS 200000
#define PING_SIZE 64

static void usage(FILE *out)
{
    fprintf(out,
            "usage: echo-bench --port N [--host ADDR] [--conns N] [--seconds S] [--pid PID] [--size N]\n"
            "                  [--mode stream|pingpong|connrate|connrate-rst|hold|udp]\n"
            "       echo-bench --mode oneway [--host ADDR] [--conns N] [--seconds S]\n"
            "\n"
            "Loads an echo server (RFC 862) and checks every byte it sends back.\n"
            "\n"
            "  --host ADDR   the server (default 127.0.0.1); oneway: its family picks the\n"
            "                loopback, ::1 for an IPv6 literal, else 127.0.0.1\n"
            "  --port N      the server's port (every mode but oneway)\n"
            "  --conns N     connections (udp: sockets) at once, 1..%d (default 1)\n"
            "  --seconds S   length of the run, at most 600 (default 3)\n"
            "  --pid PID     hold: the server's process, for its resident memory\n"
            "  --size N      pingpong: message size, 1..%d; udp: datagram size, 1..%d\n"
            "                (default %d)\n"
            "  --mode M      stream (default): echoed MiB/s; pingpong: one message in flight\n"
            "                per connection, round trips/s and latency; connrate(-rst): a\n"
            "                1-byte echo per connection, then a close (a reset); hold:\n"
            "                --conns idle connections; oneway: the loopback ceiling, a\n"
            "                stream into echo-bench's own sink, no server; udp: one\n"
            "                datagram in flight per socket, resent after 1 s, 3 tries\n"
            "\n"
            "One result line, `MODE key=value ... ok`, keys by mode:\n"
            "  stream        conns seconds echoed_bytes MiB_per_second\n"
            "  pingpong      conns size seconds round_trips per_second p50_us p90_us\n"
            "                p99_us p999_us max_us samples\n"
            "  connrate(-rst) seconds connections per_second\n"
            "  hold          conns establish_seconds per_second server_rss_kib\n"
            "                echo_again_seconds\n"
            "  oneway        conns seconds bytes MiB_per_second\n"
            "  udp           conns size seconds round_trips per_second p50_us p90_us p99_us\n"
            "                p999_us max_us lost late\n"
            "pNN_us: latency percentiles (p999: 99.9 %%) in microseconds, the upper end of\n"
            "a histogram bucket (within 1/64); samples: round trips measured; lost: udp\n"
            "tries unanswered within 1 s; late: answers to a datagram already answered.\n"
            "Exit status: 0 every byte exact, 1 a wrong or missing byte or an error, 2 bad use.\n",
            MAX_CONNS, CHUNK, UDP_MAX, PING_SIZE);
}

/* --size's value, 1..max; -1 when it is not a number in that range. */
static long parse_size(const char *arg, long max)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || v < 1 || v > max)
        return -1;
    return v;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port = NULL, *mode = "stream", *size_arg = NULL;
    int conns = 1, pingpong, udp_mode, oneway_mode;
    double seconds = 3;
    size_t size = PING_SIZE;
    long pid = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        if (strcmp(argv[i], "--host") == 0)
            host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0)
            port = argv[++i];
        else if (strcmp(argv[i], "--conns") == 0)
            conns = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--mode") == 0)
            mode = argv[++i];
        else if (strcmp(argv[i], "--pid") == 0)
            pid = atol(argv[++i]);
        else if (strcmp(argv[i], "--size") == 0)
            size_arg = argv[++i];
        else {
            usage(stderr);
            return 2;
        }
    }
    pingpong = strcmp(mode, "pingpong") == 0;
    udp_mode = strcmp(mode, "udp") == 0;
    oneway_mode = strcmp(mode, "oneway") == 0;
    if ((port == NULL && !oneway_mode) || conns < 1 || conns > MAX_CONNS || seconds <= 0 ||
        seconds > 600 || pid < 0 ||
        (!pingpong && !udp_mode && !oneway_mode && strcmp(mode, "stream") != 0 &&
         strcmp(mode, "connrate") != 0 && strcmp(mode, "connrate-rst") != 0 && strcmp(mode, "hold") != 0)) {
        usage(stderr);
        return 2;
    }
    if (size_arg != NULL) {
        /* a size the mode would not use is a mistake to say, not to ignore */
        long v = pingpong ? parse_size(size_arg, CHUNK) : udp_mode ? parse_size(size_arg, UDP_MAX) : -1;

        if (v < 0) {
            if (pingpong || udp_mode)
                fprintf(stderr, "echo-bench: --size %s: the %s mode takes 1..%d bytes\n", size_arg, mode,
                        pingpong ? CHUNK : UDP_MAX);
            else
                fprintf(stderr, "echo-bench: --size is for the pingpong and udp modes, not %s\n", mode);
            usage(stderr);
            return 2;
        }
        size = (size_t)v;
    }
    if (ensure_nofile(conns) < 0)
        return 2;
    if (strncmp(mode, "connrate", 8) == 0)
        return connrate(host, port, seconds, strcmp(mode, "connrate-rst") == 0);
    if (strcmp(mode, "hold") == 0)
        return hold(host, port, conns, seconds, pid);
    pattern_init();
    if (oneway_mode)
        return oneway(host, conns, seconds);
    if (udp_mode)
        return udp(host, port, conns, seconds, size);
    return stream(host, port, conns, seconds, pingpong, size);
}

/* The latency histogram that pingpong and udp fill, one sample per round
 * trip, and the percentiles their result lines print. One per process (a run
 * is one mode), kept here behind three functions so that the bucket layout
 * can change without the modes knowing. */
#include <stdio.h>

#include "bench.h"

/* Latencies in nanoseconds: 64 linear buckets per power of two (each within
 * 1/64 of its values) up to 2^36 ns, 68.7 s; below 64 ns, one per value.
 * Fixed memory, and a sample costs an increment. */
#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_TOP_BITS 36
#define HIST_BUCKETS (HIST_SUB * (HIST_TOP_BITS - HIST_SUB_BITS + 1))

static struct {
    unsigned long long count[HIST_BUCKETS], samples, max;
} latency;

static unsigned hist_index(unsigned long long v)
{
    unsigned e;

    if (v >= 1ull << HIST_TOP_BITS)
        v = (1ull << HIST_TOP_BITS) - 1; /* past any run's 10 s of grace */
    if (v < HIST_SUB)
        return (unsigned)v;
    e = 63u - (unsigned)__builtin_clzll(v); /* v in [2^e, 2^(e+1)), e >= HIST_SUB_BITS */
    return (e - HIST_SUB_BITS + 1) * HIST_SUB + (unsigned)(v >> (e - HIST_SUB_BITS)) - HIST_SUB;
}

/* The highest value bucket idx holds. */
static unsigned long long hist_high(unsigned idx)
{
    unsigned shift = idx / HIST_SUB;

    if (shift == 0)
        return idx;
    shift--;
    return (((unsigned long long)(HIST_SUB + idx % HIST_SUB) + 1) << shift) - 1;
}

void hist_record(unsigned long long ns)
{
    latency.count[hist_index(ns)]++;
    latency.samples++;
    if (ns > latency.max)
        latency.max = ns;
}

unsigned long long hist_samples(void)
{
    return latency.samples;
}

/* The latency under which a fraction q of the samples fall, in microseconds:
 * the upper end of its bucket, but never above the largest sample, which is
 * known exactly. */
static double hist_us(double q)
{
    unsigned long long want = (unsigned long long)(q * (double)latency.samples), seen = 0;

    if ((double)want < q * (double)latency.samples)
        want++;
    if (want == 0)
        want = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += latency.count[i];
        if (seen >= want) {
            unsigned long long v = hist_high(i);

            return (double)(v < latency.max ? v : latency.max) / 1e3;
        }
    }
    return (double)latency.max / 1e3; /* no samples: 0 */
}

void print_latency(void)
{
    printf(" p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f", hist_us(0.50),
           hist_us(0.90), hist_us(0.99), hist_us(0.999), (double)latency.max / 1e3);
}

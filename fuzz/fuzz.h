/* fuzz.h - what every echoconf fuzz target shares: the input provider and
 * the CHECK assertions.
 *
 * The provider turns the fuzz input into numbers the way libxml2's does:
 * big-endian, and once the input runs out every read returns 0 instead of
 * failing. The targets are written so that 0 always means the benign choice
 * (move everything, report every ready descriptor, connect nobody new), so
 * a short input is a complete, well-behaved run and the fuzzer only pays
 * bytes for hostility. */
#ifndef ECHO_FUZZ_H
#define ECHO_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

void fz_init(const uint8_t *data, size_t size);
size_t fz_remaining(void);
unsigned fz_u8(void);
unsigned fz_u16(void);

/* Assertions that never compile out (no NDEBUG), print both operands and
 * abort, so libFuzzer and the standalone driver both see a crash. */
#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            abort();                                                         \
        }                                                                    \
    } while (0)

#define CHECK_OP(a, op, b, what)                                             \
    do {                                                                     \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);      \
        if (!(check_a_ op check_b_)) {                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s %s %s (%lld vs %lld): %s\n", \
                    __FILE__, __LINE__, #a, #op, #b, check_a_, check_b_,     \
                    what);                                                   \
            abort();                                                         \
        }                                                                    \
    } while (0)

#define CHECK_EQ(a, b, what) CHECK_OP(a, ==, b, what)
#define CHECK_LE(a, b, what) CHECK_OP(a, <=, b, what)
#define CHECK_LT(a, b, what) CHECK_OP(a, <, b, what)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif

/* A tiny assertion kit shared by the C test areas; main.c is the runner. */
#ifndef CC_TEST_H
#define CC_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

extern int cc_test_failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            cc_test_failures++;                                                      \
        }                                                                            \
    } while (0)

#define CHECK_EQ(a, b)                                                                          \
    do {                                                                                        \
        long long cc_a_ = (long long)(a), cc_b_ = (long long)(b);                               \
        if (cc_a_ != cc_b_) {                                                                   \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n", __FILE__,      \
                    __LINE__, #a, #b, cc_a_, cc_b_);                                            \
            cc_test_failures++;                                                                 \
        }                                                                                       \
    } while (0)

/* Stops the area at once: for failures that make the rest meaningless. */
#define REQUIRE(cond)                                                                  \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
            cc_test_failures++;                                                        \
            return;                                                                    \
        }                                                                              \
    } while (0)

/* A small deterministic generator (splitmix64) so failures reproduce. */
static inline uint64_t cc_test_rand(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void cc_test_clock(void);
void cc_test_delivery(void);
void cc_test_queue(void);
void cc_test_loop(void);
void cc_test_frame(void);
void cc_test_node(void);

#endif

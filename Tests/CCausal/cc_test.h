/* A tiny assertion kit shared by the C tests; main.c is the runner and
 * test_list.h lists every test. A test is `TEST_IMPL(area, name) { ... }`. */
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

/* Stops the test at once: for failures that make the rest meaningless. */
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

/* Defines test `name` of `area`, listed in test_list.h. */
#define TEST_IMPL(area, name) void cc_test_##area##_##name(void)

#define CC_TEST_DECLARE(area, name) TEST_IMPL(area, name);
#include "test_list.h"
CC_TESTS(CC_TEST_DECLARE)
#undef CC_TEST_DECLARE

#endif

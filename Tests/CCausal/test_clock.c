/* Vector clocks: every path the CPU supports against a scalar reference, at
 * every width from 1 to 1100 so that each block size and tail length of each
 * path is crossed. Buffers are allocated at their exact size so that a vector
 * load past the end shows up under AddressSanitizer. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "cc_clock.h"
#include "cc_error.h"
#include "cc_test.h"

enum { MAX_WIDTH = 1100 };

static cc_order ref_compare(const uint64_t *a, const uint64_t *b, size_t n) {
    bool less = false, greater = false;
    for (size_t i = 0; i < n; i++) {
        if (a[i] < b[i])
            less = true;
        if (a[i] > b[i])
            greater = true;
    }
    if (less && greater)
        return CC_ORDER_CONCURRENT;
    if (less)
        return CC_ORDER_BEFORE;
    if (greater)
        return CC_ORDER_AFTER;
    return CC_ORDER_EQUAL;
}

static bool ref_dominates(const uint64_t *a, const uint64_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] < b[i])
            return false;
    return true;
}

/* Counters near the edges matter most: 0, UINT64_MAX and both sides of 2^63,
 * where a signed compare would get the order backwards. */
static uint64_t rand_value(uint64_t *rng) {
    uint64_t r = cc_test_rand(rng);
    switch (r % 8) {
    case 0: return 0;
    case 1: return UINT64_MAX - (r >> 60);
    case 2: return (UINT64_C(1) << 63) + (r >> 58);
    case 3: return (UINT64_C(1) << 63) - 1 - (r >> 58);
    case 4: return r >> 40;
    default: return cc_test_rand(rng);
    }
}

/* A value strictly greater than v (requires v < UINT64_MAX), sometimes just
 * above, sometimes across 2^63, sometimes far away. */
static uint64_t rand_above(uint64_t *rng, uint64_t v) {
    uint64_t room = UINT64_MAX - v, r = cc_test_rand(rng);
    switch (r % 4) {
    case 0: return v + 1;
    case 1: return UINT64_MAX;
    case 2: return v < (UINT64_C(1) << 63) ? (UINT64_C(1) << 63) | r : v + 1 + r % room;
    default: return v + 1 + r % room;
    }
}

/* Makes a[p] < b[p] with every other entry untouched. */
static void raise_at(uint64_t *rng, uint64_t *a, uint64_t *b, size_t p) {
    if (a[p] == UINT64_MAX)
        a[p] = rand_value(rng) >> 1;
    b[p] = rand_above(rng, a[p]);
}

struct buffers {
    uint64_t *a, *b, *dst, *expect, *keep;
};

/* Checks every operation on (a, b) in both directions against the reference;
 * leaves a and b as they were. */
static void check_pair(const struct buffers *w, size_t n, cc_order want, const char *what) {
    static const cc_order reversed[] = {CC_ORDER_EQUAL, CC_ORDER_AFTER, CC_ORDER_BEFORE, CC_ORDER_CONCURRENT};
    size_t bytes = n * sizeof *w->a;
    cc_order ref = ref_compare(w->a, w->b, n);
    cc_order got = cc_clock_compare(w->a, w->b, n), back = cc_clock_compare(w->b, w->a, n);
    bool ok = ref == want && got == ref && back == reversed[ref];
    ok &= cc_clock_dominates(w->a, w->b, n) == ref_dominates(w->a, w->b, n);
    ok &= cc_clock_dominates(w->b, w->a, n) == ref_dominates(w->b, w->a, n);

    for (size_t i = 0; i < n; i++)
        w->expect[i] = w->a[i] > w->b[i] ? w->a[i] : w->b[i];
    memcpy(w->dst, w->a, bytes);
    memcpy(w->keep, w->b, bytes);
    cc_clock_merge(w->dst, w->b, n);
    ok &= memcmp(w->dst, w->expect, bytes) == 0 && memcmp(w->b, w->keep, bytes) == 0;
    /* dst == src: max(x, x) == x */
    memcpy(w->dst, w->b, bytes);
    cc_clock_merge(w->dst, w->dst, n);
    ok &= memcmp(w->dst, w->keep, bytes) == 0;

    if (!ok) {
        fprintf(stderr, "  path %s width %zu case %s: want %d ref %d got %d back %d\n",
                cc_clock_path_name(cc_clock_selected()), n, what, (int)want, (int)ref, (int)got, (int)back);
        CHECK(ok);
    }
}

static void fill(uint64_t *rng, uint64_t *c, size_t n) {
    for (size_t i = 0; i < n; i++)
        c[i] = rand_value(rng);
}

/* Positions worth a difference: the first and last entry, the last entries
 * (inside every path's tail when the width is not a multiple of its vector),
 * block boundaries, and random ones. */
static size_t position(uint64_t *rng, size_t n, unsigned kind) {
    switch (kind) {
    case 0: return 0;
    case 1: return n - 1;
    case 2: return n >= 2 ? n - 2 : 0;
    case 3: return n > 16 ? 16 : n - 1;
    default: return (size_t)(cc_test_rand(rng) % n);
    }
}

static void check_width(uint64_t *rng, const struct buffers *w, size_t n) {
    char what[64];

    fill(rng, w->a, n);
    memcpy(w->b, w->a, n * sizeof *w->a);
    check_pair(w, n, CC_ORDER_EQUAL, "equal");

    for (unsigned kind = 0; kind < 6; kind++) {
        fill(rng, w->a, n);
        memcpy(w->b, w->a, n * sizeof *w->a);
        size_t p = position(rng, n, kind);
        raise_at(rng, w->a, w->b, p);
        snprintf(what, sizeof what, "before at %zu", p);
        check_pair(w, n, CC_ORDER_BEFORE, what);
    }

    /* Every entry differs: no block can be skipped as equal. */
    fill(rng, w->a, n);
    memcpy(w->b, w->a, n * sizeof *w->a);
    for (size_t i = 0; i < n; i++)
        raise_at(rng, w->a, w->b, i);
    check_pair(w, n, CC_ORDER_BEFORE, "before everywhere");
    if (n >= 2) {
        size_t p = position(rng, n, 5);
        uint64_t t = w->a[p];
        w->a[p] = w->b[p];
        w->b[p] = t;
        snprintf(what, sizeof what, "before everywhere but %zu", p);
        check_pair(w, n, CC_ORDER_CONCURRENT, what);
    }

    if (n >= 2) {
        static const unsigned kinds[][2] = {{0, 1}, {1, 0}, {2, 1}, {1, 2}, {0, 3}, {3, 5}, {5, 5}, {5, 4}};
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            fill(rng, w->a, n);
            memcpy(w->b, w->a, n * sizeof *w->a);
            size_t p = position(rng, n, kinds[k][0]), q = position(rng, n, kinds[k][1]);
            if (p == q)
                q = (p + 1 + (size_t)(cc_test_rand(rng) % (n - 1))) % n;
            raise_at(rng, w->a, w->b, p);
            raise_at(rng, w->b, w->a, q);
            snprintf(what, sizeof what, "concurrent at %zu and %zu", p, q);
            check_pair(w, n, CC_ORDER_CONCURRENT, what);
        }
    }

    /* Independent clocks: almost always concurrent, compared anyway. */
    fill(rng, w->a, n);
    fill(rng, w->b, n);
    check_pair(w, n, ref_compare(w->a, w->b, n), "random");

    /* All at the extremes. */
    memset(w->a, 0, n * sizeof *w->a);
    memset(w->b, 0xff, n * sizeof *w->b);
    check_pair(w, n, CC_ORDER_BEFORE, "zero vs max");
}

static void check_path(uint64_t *rng) {
    for (size_t n = 1; n <= MAX_WIDTH; n++) {
        uint64_t *c[5];
        for (size_t k = 0; k < 5; k++)
            c[k] = malloc(n * sizeof *c[k]);
        REQUIRE(c[0] && c[1] && c[2] && c[3] && c[4]);
        struct buffers w = {c[0], c[1], c[2], c[3], c[4]};
        check_width(rng, &w, n);
        for (size_t k = 0; k < 5; k++)
            free(c[k]);
    }

    /* malloc returns 16-byte aligned memory; the vector paths also treat the
     * entries before a 32-byte boundary apart, so try every placement of each
     * operand relative to that boundary. */
    static uint64_t storage[5][MAX_WIDTH + 8] __attribute__((aligned(64)));
    static const size_t widths[] = {1,  3,   4,   5,   15,  16,  17,  31,  33,  47,  64,
                                    65, 127, 128, 129, 143, 255, 256, 257, 271, 1024};
    for (size_t skew_a = 0; skew_a < 4; skew_a++)
        for (size_t skew_b = 0; skew_b < 4; skew_b++)
            for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++) {
                struct buffers w = {storage[0] + skew_a, storage[1] + skew_b, storage[2] + skew_a, storage[3],
                                    storage[4]};
                check_width(rng, &w, widths[k]);
            }
}

static void check_tick(void) {
    uint64_t c[5] = {0, 7, UINT64_MAX - 1, 3, 0};
    CHECK_EQ(cc_clock_tick(c, 5, 1), 8);
    CHECK_EQ(cc_clock_tick(c, 5, 1), 9);
    CHECK(cc_clock_tick(c, 5, 2) == UINT64_MAX);
    CHECK_EQ(cc_clock_tick(c, 5, 4), 1);
    CHECK(c[0] == 0 && c[1] == 9 && c[2] == UINT64_MAX && c[3] == 3 && c[4] == 1);
}

static void check_empty(void) {
    /* Width 0: nothing is read, so NULL is fine. */
    CHECK_EQ(cc_clock_compare(NULL, NULL, 0), CC_ORDER_EQUAL);
    CHECK(cc_clock_dominates(NULL, NULL, 0));
    cc_clock_merge(NULL, NULL, 0);
}

static void check_selection(void) {
    CHECK(strcmp(cc_clock_path_name(CC_CLOCK_PATH_AUTO), "auto") == 0);
    CHECK(strcmp(cc_clock_path_name(CC_CLOCK_PATH_PORTABLE), "portable") == 0);
    CHECK(strcmp(cc_clock_path_name(CC_CLOCK_PATH_AVX2), "avx2") == 0);
    CHECK(strcmp(cc_clock_path_name(CC_CLOCK_PATH_AVX512), "avx512") == 0);

    CHECK(cc_clock_path_supported(CC_CLOCK_PATH_AUTO));
    CHECK(cc_clock_path_supported(CC_CLOCK_PATH_PORTABLE));
    CHECK(!cc_clock_path_supported((cc_clock_path)42));

    CHECK(cc_clock_selected() != CC_CLOCK_PATH_AUTO);
    CHECK_EQ(cc_clock_select(CC_CLOCK_PATH_AUTO), CC_OK);
    cc_clock_path best = cc_clock_selected();
    CHECK(best != CC_CLOCK_PATH_AUTO);
    CHECK(cc_clock_path_supported(best));
    for (int p = CC_CLOCK_PATH_AVX512; p > (int)best; p--)
        CHECK(!cc_clock_path_supported((cc_clock_path)p));

    CHECK_EQ(cc_clock_select(CC_CLOCK_PATH_PORTABLE), CC_OK);
    CHECK_EQ(cc_clock_selected(), CC_CLOCK_PATH_PORTABLE);
    CHECK_EQ(cc_clock_select((cc_clock_path)42), CC_EUNSUPPORTED);
    CHECK_EQ(cc_clock_selected(), CC_CLOCK_PATH_PORTABLE);
    for (int p = CC_CLOCK_PATH_PORTABLE; p <= CC_CLOCK_PATH_AVX512; p++) {
        if (cc_clock_path_supported((cc_clock_path)p))
            continue;
        CHECK_EQ(cc_clock_select((cc_clock_path)p), CC_EUNSUPPORTED);
        CHECK_EQ(cc_clock_selected(), CC_CLOCK_PATH_PORTABLE);
    }
    CHECK_EQ(cc_clock_select(CC_CLOCK_PATH_AUTO), CC_OK);
    CHECK_EQ(cc_clock_selected(), best);
}

TEST_IMPL(clock, selection) {
    check_selection();
}

TEST_IMPL(clock, tick) {
    check_tick();
}

TEST_IMPL(clock, paths) {
    uint64_t rng = 0x5eed;
    for (int p = CC_CLOCK_PATH_PORTABLE; p <= CC_CLOCK_PATH_AVX512; p++) {
        cc_clock_path path = (cc_clock_path)p;
        if (cc_clock_select(path) != CC_OK) {
            printf("clock: %s not supported by this CPU, skipped\n", cc_clock_path_name(path));
            continue;
        }
        CHECK_EQ(cc_clock_selected(), path);
        check_empty();
        check_path(&rng);
    }
    CHECK_EQ(cc_clock_select(CC_CLOCK_PATH_AUTO), CC_OK);
}

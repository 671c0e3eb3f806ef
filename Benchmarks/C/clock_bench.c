/* cc_bench: the vector clock operations beside the memory primitives they have
 * to keep up with, measured in the same run on the same bytes.
 *
 *   compare        a before b, where b is a one event later (its last entry
 *                  ticked): the whole clock is read, nothing can exit early
 *   compare-dense  a before b, where every block of b has entries ahead of a
 *   baseline       memcmp of two equal buffers of the same size, which also
 *                  reads every byte of both
 *   merge          into a clock that the source dominates
 *   baseline       memcpy of the same size into the same destination
 *
 * Each figure is the best of many short rounds: the machine is shared, and the
 * minimum is the figure least disturbed by other work. The operations and
 * their baselines alternate within every round so that all see the same
 * weather. The mallocs column counts allocations over all timed calls.
 *
 * Usage: cc_bench [--offset K]   place every buffer K entries past a 64-byte
 *                                boundary (default 0) to see what alignment costs. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cc_clock.h"

/* Counting allocations: every hot-path benchmark reports them. The counters
 * interpose malloc on glibc; sanitizer builds bring their own allocator. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CC_BENCH_NO_MALLOC_COUNT 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || !defined(__GLIBC__)
#define CC_BENCH_NO_MALLOC_COUNT 1
#endif

#ifndef CC_BENCH_NO_MALLOC_COUNT
static unsigned long long mallocs;
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *malloc(size_t size) {
    mallocs++;
    return __libc_malloc(size);
}
void *calloc(size_t count, size_t size) {
    mallocs++;
    return __libc_calloc(count, size);
}
void *realloc(void *p, size_t size) {
    mallocs++;
    return __libc_realloc(p, size);
}
static unsigned long long malloc_count(void) {
    return mallocs;
}
#else
static unsigned long long malloc_count(void) {
    return 0;
}
#endif

/* Through volatile pointers so that the compiler neither inlines nor elides
 * the baselines: they pay a call, as the clock operations do. */
static int (*volatile memcmp_fn)(const void *, const void *, size_t) = memcmp;
static void *(*volatile memcpy_fn)(void *, const void *, size_t) = memcpy;
static volatile uint64_t sink;

struct fixture {
    size_t n;
    uint64_t *a, *b;  /* a happened before b: b is a with its last entry ticked */
    uint64_t *dense;  /* a happened before dense too, which differs from a in every block */
    uint64_t *a_copy; /* equal to a: memcmp reads every byte */
    uint64_t *dst;    /* merge and memcpy destination */
    void *arena;
};

enum op { OP_COMPARE, OP_COMPARE_DENSE, OP_MEMCMP, OP_MERGE, OP_MEMCPY, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"compare", "compare-dense", "memcmp", "merge", "memcpy"};
static const enum op baseline_of[OP_COUNT] = {OP_MEMCMP, OP_MEMCMP, OP_MEMCMP, OP_MEMCPY, OP_MEMCPY};

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Runs op iters times and returns the nanoseconds per call. */
static double time_op(const struct fixture *f, enum op op, size_t iters) {
    size_t n = f->n, bytes = n * sizeof(uint64_t);
    uint64_t acc = 0;
    double start = now_ns();
    switch (op) {
    case OP_COMPARE:
        for (size_t i = 0; i < iters; i++)
            acc += (uint64_t)cc_clock_compare(f->a, f->b, n);
        break;
    case OP_COMPARE_DENSE:
        for (size_t i = 0; i < iters; i++)
            acc += (uint64_t)cc_clock_compare(f->a, f->dense, n);
        break;
    case OP_MEMCMP:
        for (size_t i = 0; i < iters; i++)
            acc += (uint64_t)memcmp_fn(f->a, f->a_copy, bytes);
        break;
    case OP_MERGE:
        for (size_t i = 0; i < iters; i++)
            cc_clock_merge(f->dst, f->b, n);
        break;
    case OP_MEMCPY:
        for (size_t i = 0; i < iters; i++)
            memcpy_fn(f->dst, f->b, bytes);
        break;
    default: break;
    }
    double elapsed = now_ns() - start;
    sink += acc + f->dst[n - 1];
    return elapsed / (double)iters;
}

static uint64_t next_rand(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* All buffers in one arena, each in its own pages at a chosen offset within
 * a page. A load that follows a store whose address agrees in its low 12 bits
 * waits for it (4K aliasing), and L1 banking depends on the same bits, so the
 * figures would otherwise depend on where malloc put things. Every operation
 * and its baseline see the same relative placement: a_copy, b and dense sit at
 * the same page offset, dst at another. */
static void fill(struct fixture *f, size_t n, size_t offset) {
    enum { BUFFERS = 5, PAGE = 4096 };
    static const size_t page_offset[BUFFERS] = {0, 1024, 1024, 1024, 2048};
    size_t bytes = n * sizeof(uint64_t),
           stride = (bytes + offset * sizeof(uint64_t) + 2048 + PAGE - 1) / PAGE * PAGE;
    f->arena = aligned_alloc(PAGE, BUFFERS * stride);
    if (!f->arena) {
        fprintf(stderr, "cc_bench: out of memory\n");
        exit(1);
    }
    uint64_t *bufs[BUFFERS];
    for (size_t k = 0; k < BUFFERS; k++)
        bufs[k] = (uint64_t *)((char *)f->arena + k * stride + page_offset[k]) + offset;
    f->n = n;
    f->a = bufs[0], f->a_copy = bufs[1], f->b = bufs[2], f->dense = bufs[3], f->dst = bufs[4];
    uint64_t rng = 42;
    for (size_t i = 0; i < n; i++) {
        f->a[i] = next_rand(&rng) >> 24;
        f->b[i] = f->a[i];
        f->dense[i] = f->a[i] + (next_rand(&rng) & 1);
    }
    f->b[n - 1]++;
    f->dense[n - 1] = f->a[n - 1] + 1;
    memcpy(f->a_copy, f->a, bytes);
    memcpy(f->dst, f->a, bytes);
}

/* The ratios the clock operations must stay within, per width; 0 = no bar. */
static double bar(enum op op, size_t n) {
    if (op == OP_COMPARE || op == OP_COMPARE_DENSE)
        return n == 8 ? 2.0 : (n == 64 || n == 512) ? 1.25 : 0;
    if (op == OP_MERGE)
        return (n == 64 || n == 512) ? 1.5 : 0;
    return 0;
}

int main(int argc, char **argv) {
    size_t offset = 0;
    if (argc == 3 && strcmp(argv[1], "--offset") == 0) {
        offset = strtoul(argv[2], NULL, 10);
    } else if (argc != 1) {
        fprintf(stderr, "usage: cc_bench [--offset ENTRIES]\n");
        return 2;
    }
    enum { ROUNDS = 600 };
    static const size_t widths[] = {8, 16, 64, 512, 1024};

    cc_clock_select(CC_CLOCK_PATH_AUTO);
    printf(
        "clock operations vs memory baselines, best of %d rounds, buffers %zu bytes past 64-byte alignment\n",
        ROUNDS, offset * sizeof(uint64_t));
    printf("auto selects: %s\n\n", cc_clock_path_name(cc_clock_selected()));
    printf("%6s  %-9s %-14s %8s  %-8s %8s  %6s  %7s  %s\n", "width", "path", "op", "ns/op", "baseline",
           "ns/op", "ratio", "mallocs", "bar");

    bool all_met = true;
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        size_t n = widths[w];
        struct fixture f;
        fill(&f, n, offset);
        /* Rounds of about 20 us: short enough that most of them run between
         * two preemptions on a busy machine. */
        size_t iters = 200000 / (n + 32);
        for (int p = CC_CLOCK_PATH_PORTABLE; p <= CC_CLOCK_PATH_AVX512; p++) {
            if (cc_clock_select((cc_clock_path)p) != 0)
                continue;
            double best[OP_COUNT];
            unsigned long long allocs[OP_COUNT] = {0};
            for (int op = 0; op < OP_COUNT; op++) {
                time_op(&f, (enum op)op, iters); /* warm caches and predictors */
                best[op] = 1e300;
            }
            for (int r = 0; r < ROUNDS; r++) {
                for (int op = 0; op < OP_COUNT; op++) {
                    unsigned long long before = malloc_count();
                    double t = time_op(&f, (enum op)op, iters);
                    allocs[op] += malloc_count() - before;
                    if (t < best[op])
                        best[op] = t;
                }
            }
            for (int op = 0; op < OP_COUNT; op++) {
                enum op base = baseline_of[op];
                if (base == (enum op)op)
                    continue;
                double ratio = best[op] / best[base], limit = bar((enum op)op, n);
                char verdict[32] = "";
                /* The bars are for the vector paths; portable is the fallback. */
                if (limit > 0 && p != CC_CLOCK_PATH_PORTABLE) {
                    bool met = ratio <= limit;
                    all_met &= met;
                    snprintf(verdict, sizeof verdict, "<= %.2fx %s", limit, met ? "met" : "MISSED");
                }
                printf("%6zu  %-9s %-14s %8.2f  %-8s %8.2f  %5.2fx  %7llu  %s\n", n,
                       cc_clock_path_name((cc_clock_path)p), op_names[op], best[op], op_names[base],
                       best[base], ratio, allocs[op], verdict);
            }
        }
        free(f.arena);
    }
    cc_clock_select(CC_CLOCK_PATH_AUTO);
    printf("\nbars on the vector paths: %s\n", all_met ? "all met" : "some missed");
    return 0;
}

/* Vector clocks stored as contiguous uint64_t buffers.
 *
 * Every function takes the buffers and their width explicitly and never
 * allocates. Both operands of a binary operation have the same width; callers
 * that let groups grow pad the shorter clock themselves (Swift does).
 *
 * Each operation has a portable path and, on x86-64, AVX2 and AVX-512 paths.
 * The fastest path the CPU supports is chosen on first use; cc_clock_select
 * forces a path (tests use it to run every path the machine supports).
 *
 * Thread safety: the operations are pure functions of their arguments and may
 * run on any thread. cc_clock_select swaps a process-wide table with an atomic
 * store; call it before sharing clocks between threads (tests, startup). */
#ifndef CC_CLOCK_H
#define CC_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The outcome of comparing clock a with clock b. */
typedef enum cc_order {
    CC_ORDER_EQUAL = 0,      /* a[k] == b[k] for every k */
    CC_ORDER_BEFORE = 1,     /* a <= b everywhere and a != b: a happened before b */
    CC_ORDER_AFTER = 2,      /* b happened before a */
    CC_ORDER_CONCURRENT = 3, /* a[k] < b[k] and a[l] > b[l] for some k, l */
} cc_order;

/** The code paths behind the clock operations. */
typedef enum cc_clock_path {
    CC_CLOCK_PATH_AUTO = 0,     /* the fastest path the CPU supports */
    CC_CLOCK_PATH_PORTABLE = 1, /* plain C, any CPU (the compiler may still vectorise it) */
    CC_CLOCK_PATH_AVX2 = 2,
    CC_CLOCK_PATH_AVX512 = 3,
} cc_clock_path;

/** Increments c[slot] and returns the new value. Requires slot < n. */
uint64_t cc_clock_tick(uint64_t *c, size_t n, size_t slot);

/** dst[k] = max(dst[k], src[k]) for every k < n. dst and src may be equal but must not otherwise overlap. */
void cc_clock_merge(uint64_t *dst, const uint64_t *src, size_t n);

/** Compares a with b in one pass, stopping as soon as the answer is CC_ORDER_CONCURRENT. */
cc_order cc_clock_compare(const uint64_t *a, const uint64_t *b, size_t n);

/** True when a[k] >= b[k] for every k < n (a dominates b; equal clocks dominate each other). */
bool cc_clock_dominates(const uint64_t *a, const uint64_t *b, size_t n);

/** True when this CPU can run the path. CC_CLOCK_PATH_AUTO and CC_CLOCK_PATH_PORTABLE always can. */
bool cc_clock_path_supported(cc_clock_path path);

/** Makes every later operation use path. Returns CC_OK, or CC_EUNSUPPORTED (the current path is kept). */
int cc_clock_select(cc_clock_path path);

/** The path in use now (never CC_CLOCK_PATH_AUTO). */
cc_clock_path cc_clock_selected(void);

/** A static name for a path: "auto", "portable", "avx2", "avx512". */
const char *cc_clock_path_name(cc_clock_path path);

#ifdef __cplusplus
}
#endif
#endif

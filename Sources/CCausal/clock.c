/* Vector clock operations: a portable path, AVX2 and AVX-512 paths, and the
 * run-time dispatch between them.
 *
 * The x86 paths use function-level target attributes instead of -mavx2 so
 * that SwiftPM, which builds this file with default flags, gets them too; the
 * CPU is asked at run time which of them may execute. */
#include "cc_clock.h"

#include <assert.h>
#include <stdatomic.h>

#include "cc_error.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------ */

struct clock_ops {
    cc_clock_path path;
    void (*merge)(uint64_t *dst, const uint64_t *src, size_t n);
    cc_order (*compare)(const uint64_t *a, const uint64_t *b, size_t n);
    bool (*dominates)(const uint64_t *a, const uint64_t *b, size_t n);
};

/* The tables are immutable and statically initialised, so a relaxed load of
 * the pointer is enough: there is nothing for an acquire to publish. */
static const struct clock_ops resolve_ops;
static _Atomic(const struct clock_ops *) current_ops = &resolve_ops;

static inline const struct clock_ops *ops(void) {
    return atomic_load_explicit(&current_ops, memory_order_relaxed);
}

uint64_t cc_clock_tick(uint64_t *c, size_t n, size_t slot) {
    assert(slot < n);
    (void)n;
    return ++c[slot];
}

void cc_clock_merge(uint64_t *dst, const uint64_t *src, size_t n) {
    ops()->merge(dst, src, n);
}

cc_order cc_clock_compare(const uint64_t *a, const uint64_t *b, size_t n) {
    return ops()->compare(a, b, n);
}

bool cc_clock_dominates(const uint64_t *a, const uint64_t *b, size_t n) {
    return ops()->dominates(a, b, n);
}

/* CC_ORDER_BEFORE is bit 0 ("some a[k] < b[k]") and CC_ORDER_AFTER bit 1
 * ("some a[k] > b[k]"), so both set is CC_ORDER_CONCURRENT and neither is
 * CC_ORDER_EQUAL; every path builds its answer from the two bits. */
_Static_assert(CC_ORDER_CONCURRENT == (CC_ORDER_BEFORE | CC_ORDER_AFTER), "cc_order is a pair of bits");
_Static_assert(CC_ORDER_EQUAL == 0, "cc_order is a pair of bits");

static inline cc_order order_of(bool less, bool greater) {
    return (cc_order)((less ? CC_ORDER_BEFORE : 0) | (greater ? CC_ORDER_AFTER : 0));
}

/* ---------------------------------------------------------------------------
 * Portable path
 *
 * Branch-free blocks with integer accumulators, so that compilers vectorise
 * them where the target has unsigned 64-bit compares (NEON on arm64).
 * ------------------------------------------------------------------------ */

enum { PORTABLE_BLOCK = 16 };

static void merge_portable(uint64_t *dst, const uint64_t *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = dst[i] > src[i] ? dst[i] : src[i];
}

static cc_order compare_portable(const uint64_t *a, const uint64_t *b, size_t n) {
    uint64_t less = 0, greater = 0;
    size_t i = 0;
    for (; i + PORTABLE_BLOCK <= n; i += PORTABLE_BLOCK) {
        for (size_t k = i; k < i + PORTABLE_BLOCK; k++) {
            less |= a[k] < b[k];
            greater |= a[k] > b[k];
        }
        if (less & greater)
            return CC_ORDER_CONCURRENT;
    }
    for (; i < n; i++) {
        less |= a[i] < b[i];
        greater |= a[i] > b[i];
    }
    return order_of(less, greater);
}

static bool dominates_portable(const uint64_t *a, const uint64_t *b, size_t n) {
    uint64_t less = 0;
    size_t i = 0;
    for (; i + PORTABLE_BLOCK <= n; i += PORTABLE_BLOCK) {
        for (size_t k = i; k < i + PORTABLE_BLOCK; k++)
            less |= a[k] < b[k];
        if (less)
            return false;
    }
    for (; i < n; i++)
        less |= a[i] < b[i];
    return !less;
}

static const struct clock_ops portable_ops = {
    CC_CLOCK_PATH_PORTABLE,
    merge_portable,
    compare_portable,
    dominates_portable,
};

#if defined(__x86_64__)

/* ---------------------------------------------------------------------------
 * AVX2 path
 *
 * AVX2 compares 64-bit lanes only as signed numbers. Flipping the top bit of
 * both operands maps unsigned order onto signed order (0 -> INT64_MIN,
 * UINT64_MAX -> INT64_MAX), so counters at or above 2^63 still compare right.
 * ------------------------------------------------------------------------ */

#define CC_AVX2 __attribute__((target("avx2")))

/* Entries per block: the unit between early-exit checks. Four vectors keep
 * enough independent loads in flight while a check per block stays cheap. */
enum { AVX2_BLOCK = 16 };

/* A 32-byte access that straddles two cache lines costs two, and with 8- or
 * 16-byte aligned clocks (malloc, Swift arrays) every other one would. From
 * these widths on, the block loops start where the first operand is 32-byte
 * aligned, after the few entries before that boundary; below them the extra
 * head and tail work costs more than it saves (measured on Zen 3). */
enum { AVX2_ALIGN_MIN_READ = 128, AVX2_ALIGN_MIN_MERGE = 256 };

/* Entries from p to the next 32-byte boundary (0 when p is on one). */
static inline size_t avx2_lead(const uint64_t *p) {
    return (size_t)(-((uintptr_t)p / sizeof *p) % 4);
}

CC_AVX2 static inline __m256i avx2_load(const uint64_t *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

CC_AVX2 static inline void avx2_store(uint64_t *p, __m256i v) {
    _mm256_storeu_si256((__m256i *)p, v);
}

CC_AVX2 static inline __m256i avx2_load_biased(const uint64_t *p, __m256i bias) {
    return _mm256_xor_si256(avx2_load(p), bias);
}

/* Lanes where x > y (unsigned), for the vector at x, y. */
CC_AVX2 static inline __m256i avx2_gt(const uint64_t *x, const uint64_t *y, __m256i bias) {
    return _mm256_cmpgt_epi64(avx2_load_biased(x, bias), avx2_load_biased(y, bias));
}

/* max(dst, src) per unsigned lane, stored to dst. It works on the biased
 * values and unbiases the result: one more XOR than blending the raw values,
 * but both loads fold into the biasing XORs, where GCC would otherwise load
 * each vector twice and run out of load ports first. (Clang turns it back
 * into a blend of the raw values with single loads.) blendv reads only the
 * top bit of each lane. */
CC_AVX2 static inline void avx2_merge_vector(uint64_t *dst, __m256i xd, __m256i xs, __m256i bias) {
    __m256i take = _mm256_cmpgt_epi64(xs, xd);
    __m256d max =
        _mm256_blendv_pd(_mm256_castsi256_pd(xd), _mm256_castsi256_pd(xs), _mm256_castsi256_pd(take));
    avx2_store(dst, _mm256_xor_si256(_mm256_castpd_si256(max), bias));
}

/* dst[0..16) = max(dst, src): all loads before the stores, so that no load
 * waits behind a store to an address that merely looks the same in its low
 * 12 bits (4K aliasing between dst and src). */
CC_AVX2 static inline void avx2_merge_block(uint64_t *dst, const uint64_t *src, __m256i bias) {
    __m256i d0 = avx2_load_biased(dst, bias), d1 = avx2_load_biased(dst + 4, bias);
    __m256i d2 = avx2_load_biased(dst + 8, bias), d3 = avx2_load_biased(dst + 12, bias);
    __m256i s0 = avx2_load_biased(src, bias), s1 = avx2_load_biased(src + 4, bias);
    __m256i s2 = avx2_load_biased(src + 8, bias), s3 = avx2_load_biased(src + 12, bias);
    avx2_merge_vector(dst, d0, s0, bias);
    avx2_merge_vector(dst + 4, d1, s1, bias);
    avx2_merge_vector(dst + 8, d2, s2, bias);
    avx2_merge_vector(dst + 12, d3, s3, bias);
}

/* Fewer than AVX2_BLOCK entries; out of line so that the block loop of
 * merge_avx2 needs no saved registers. */
CC_AVX2 __attribute__((noinline)) static void merge_avx2_short(uint64_t *dst, const uint64_t *src, size_t n) {
    const __m256i bias = _mm256_set1_epi64x(INT64_MIN);
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        avx2_merge_vector(dst + i, avx2_load_biased(dst + i, bias), avx2_load_biased(src + i, bias), bias);
    for (; i < n; i++)
        dst[i] = dst[i] > src[i] ? dst[i] : src[i];
}

/* Merge is bound by its vector operations, so the main loop takes two blocks
 * at a time to spend less on loop control; widths that are a multiple of the
 * block size leave without touching the tail code. The entries before the
 * alignment boundary are merged one by one: an overlapping vector store
 * there would stall the next load of the same bytes. */
CC_AVX2 static void merge_avx2(uint64_t *dst, const uint64_t *src, size_t n) {
    const __m256i bias = _mm256_set1_epi64x(INT64_MIN);
    size_t i = 0;
    if (n >= AVX2_ALIGN_MIN_MERGE)
        for (size_t lead = avx2_lead(dst); i < lead; i++)
            dst[i] = dst[i] > src[i] ? dst[i] : src[i];
    for (; i + 2 * AVX2_BLOCK <= n; i += 2 * AVX2_BLOCK) {
        avx2_merge_block(dst + i, src + i, bias);
        avx2_merge_block(dst + i + AVX2_BLOCK, src + i + AVX2_BLOCK, bias);
    }
    if (i + AVX2_BLOCK <= n) {
        avx2_merge_block(dst + i, src + i, bias);
        i += AVX2_BLOCK;
    }
    if (i != n)
        merge_avx2_short(dst + i, src + i, n - i);
}

CC_AVX2 static inline bool avx2_block_equal(const uint64_t *a, const uint64_t *b) {
    __m256i d0 = _mm256_xor_si256(avx2_load(a), avx2_load(b));
    __m256i d1 = _mm256_xor_si256(avx2_load(a + 4), avx2_load(b + 4));
    __m256i d2 = _mm256_xor_si256(avx2_load(a + 8), avx2_load(b + 8));
    __m256i d3 = _mm256_xor_si256(avx2_load(a + 12), avx2_load(b + 12));
    __m256i d = _mm256_or_si256(_mm256_or_si256(d0, d1), _mm256_or_si256(d2, d3));
    return _mm256_testz_si256(d, d);
}

/* The order of a block known to differ somewhere. Something in it is greater
 * or less; asking first whether anything is greater often saves the second
 * question, and needs the same biased operands. */
CC_AVX2 static inline cc_order avx2_block_order(const uint64_t *a, const uint64_t *b, __m256i bias) {
    __m256i a0 = avx2_load_biased(a, bias), b0 = avx2_load_biased(b, bias);
    __m256i a1 = avx2_load_biased(a + 4, bias), b1 = avx2_load_biased(b + 4, bias);
    __m256i a2 = avx2_load_biased(a + 8, bias), b2 = avx2_load_biased(b + 8, bias);
    __m256i a3 = avx2_load_biased(a + 12, bias), b3 = avx2_load_biased(b + 12, bias);
    __m256i gt = _mm256_or_si256(_mm256_or_si256(_mm256_cmpgt_epi64(a0, b0), _mm256_cmpgt_epi64(a1, b1)),
                                 _mm256_or_si256(_mm256_cmpgt_epi64(a2, b2), _mm256_cmpgt_epi64(a3, b3)));
    if (_mm256_testz_si256(gt, gt))
        return CC_ORDER_BEFORE;
    __m256i lt = _mm256_or_si256(_mm256_or_si256(_mm256_cmpgt_epi64(b0, a0), _mm256_cmpgt_epi64(b1, a1)),
                                 _mm256_or_si256(_mm256_cmpgt_epi64(b2, a2), _mm256_cmpgt_epi64(b3, a3)));
    return _mm256_testz_si256(lt, lt) ? CC_ORDER_AFTER : CC_ORDER_CONCURRENT;
}

/* The order bits of fewer than AVX2_BLOCK entries: vectors, then scalars.
 * Out of line so that the block loops of compare_avx2 stay small. */
CC_AVX2 __attribute__((noinline)) static unsigned avx2_short_order(const uint64_t *a, const uint64_t *b,
                                                                   size_t n) {
    const __m256i bias = _mm256_set1_epi64x(INT64_MIN);
    __m256i less = _mm256_setzero_si256(), greater = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        less = _mm256_or_si256(less, avx2_gt(b + i, a + i, bias));
        greater = _mm256_or_si256(greater, avx2_gt(a + i, b + i, bias));
    }
    bool lt = !_mm256_testz_si256(less, less), gt = !_mm256_testz_si256(greater, greater);
    for (; i < n; i++) {
        lt |= a[i] < b[i];
        gt |= a[i] > b[i];
    }
    return order_of(lt, gt);
}

/* True when x[k] > y[k] for some k < n, n < AVX2_BLOCK. Out of line, like
 * avx2_short_order, so that its scalar loop does not make every caller save
 * registers. */
CC_AVX2 __attribute__((noinline)) static bool avx2_any_greater_short(const uint64_t *x, const uint64_t *y,
                                                                     size_t n) {
    const __m256i bias = _mm256_set1_epi64x(INT64_MIN);
    __m256i gt = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        gt = _mm256_or_si256(gt, avx2_gt(x + i, y + i, bias));
    bool any = !_mm256_testz_si256(gt, gt);
    for (; i < n; i++)
        any |= x[i] > y[i];
    return any;
}

/* True when x[k] > y[k] for some k < n: one direction only, which is half the
 * work of asking for both. */
CC_AVX2 __attribute__((always_inline)) static inline bool
avx2_any_greater(const uint64_t *x, const uint64_t *y, size_t n, __m256i bias) {
    size_t i = 0;
    for (; i + AVX2_BLOCK <= n; i += AVX2_BLOCK) {
        __m256i gt = _mm256_or_si256(
            _mm256_or_si256(avx2_gt(x + i, y + i, bias), avx2_gt(x + i + 4, y + i + 4, bias)),
            _mm256_or_si256(avx2_gt(x + i + 8, y + i + 8, bias), avx2_gt(x + i + 12, y + i + 12, bias)));
        if (!_mm256_testz_si256(gt, gt))
            return true;
    }
    return i != n && avx2_any_greater_short(x + i, y + i, n - i);
}

/* The order bits of the four entries at a, b. */
CC_AVX2 static inline unsigned avx2_vector_order(const uint64_t *a, const uint64_t *b, __m256i bias) {
    __m256i av = avx2_load_biased(a, bias), bv = avx2_load_biased(b, bias);
    __m256i lt = _mm256_cmpgt_epi64(bv, av), gt = _mm256_cmpgt_epi64(av, bv);
    return order_of(!_mm256_testz_si256(lt, lt), !_mm256_testz_si256(gt, gt));
}

/* Asks only what is still open, from entry i on, given the order of the
 * entries before. While the clocks are equal, whether a block differs (the
 * cheapest test, as fast as memcmp); at the first block that differs, both
 * directions; after that only the direction not seen yet, whose first sighting
 * makes the answer CC_ORDER_CONCURRENT. */
CC_AVX2 __attribute__((always_inline)) static inline cc_order
avx2_compare_from(const uint64_t *a, const uint64_t *b, size_t n, size_t i, unsigned order, __m256i bias) {
    if (order == CC_ORDER_EQUAL) {
        for (; i + AVX2_BLOCK <= n; i += AVX2_BLOCK)
            if (!avx2_block_equal(a + i, b + i))
                goto differ;
        return i == n ? CC_ORDER_EQUAL : (cc_order)avx2_short_order(a + i, b + i, n - i);
    differ:
        order = avx2_block_order(a + i, b + i, bias);
        i += AVX2_BLOCK;
    }
    if (order == CC_ORDER_CONCURRENT || i == n)
        return (cc_order)order;
    const uint64_t *lower = order == CC_ORDER_BEFORE ? a : b, *upper = order == CC_ORDER_BEFORE ? b : a;
    return avx2_any_greater(lower + i, upper + i, n - i, bias) ? CC_ORDER_CONCURRENT : (cc_order)order;
}

/* Long clocks: the entries before the alignment boundary are read by one
 * unaligned vector, and the few it shares with the first block are compared
 * twice, which changes nothing. A function of its own so that short clocks
 * pay a single branch for it. */
CC_AVX2 __attribute__((noinline)) static cc_order compare_avx2_long(const uint64_t *a, const uint64_t *b,
                                                                    size_t n) {
    const __m256i bias = _mm256_set1_epi64x(INT64_MIN);
    size_t lead = avx2_lead(a);
    unsigned order = lead != 0 ? avx2_vector_order(a, b, bias) : CC_ORDER_EQUAL;
    return avx2_compare_from(a, b, n, lead, order, bias);
}

CC_AVX2 static cc_order compare_avx2(const uint64_t *a, const uint64_t *b, size_t n) {
    if (n >= AVX2_ALIGN_MIN_READ)
        return compare_avx2_long(a, b, n);
    return avx2_compare_from(a, b, n, 0, CC_ORDER_EQUAL, _mm256_set1_epi64x(INT64_MIN));
}

CC_AVX2 static bool dominates_avx2(const uint64_t *a, const uint64_t *b, size_t n) {
    const __m256i bias = _mm256_set1_epi64x(INT64_MIN);
    size_t i = 0;
    if (n >= AVX2_ALIGN_MIN_READ && (i = avx2_lead(b)) != 0) {
        __m256i gt = avx2_gt(b, a, bias);
        if (!_mm256_testz_si256(gt, gt))
            return false;
    }
    return !avx2_any_greater(b + i, a + i, n - i, bias);
}

static const struct clock_ops avx2_ops = {CC_CLOCK_PATH_AVX2, merge_avx2, compare_avx2, dominates_avx2};

/* ---------------------------------------------------------------------------
 * AVX-512 path
 *
 * Unsigned compares and max exist natively. Tails use masked loads: masked-off
 * lanes read as zero in both operands, compare equal and change nothing, and
 * the mask suppresses faults past the end of the buffer.
 * ------------------------------------------------------------------------ */

#define CC_AVX512 __attribute__((target("avx512f")))

CC_AVX512 static inline __mmask8 avx512_tail_mask(size_t left) {
    return left >= 8 ? (__mmask8)0xff : (__mmask8)((1u << left) - 1);
}

CC_AVX512 static void merge_avx512(uint64_t *dst, const uint64_t *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i d0 = _mm512_loadu_si512(dst + i), s0 = _mm512_loadu_si512(src + i);
        __m512i d1 = _mm512_loadu_si512(dst + i + 8), s1 = _mm512_loadu_si512(src + i + 8);
        _mm512_storeu_si512(dst + i, _mm512_max_epu64(d0, s0));
        _mm512_storeu_si512(dst + i + 8, _mm512_max_epu64(d1, s1));
    }
    for (; i < n; i += 8) {
        __mmask8 m = avx512_tail_mask(n - i);
        __m512i d = _mm512_maskz_loadu_epi64(m, dst + i), s = _mm512_maskz_loadu_epi64(m, src + i);
        _mm512_mask_storeu_epi64(dst + i, m, _mm512_max_epu64(d, s));
    }
}

CC_AVX512 static cc_order compare_avx512(const uint64_t *a, const uint64_t *b, size_t n) {
    unsigned less = 0, greater = 0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i a0 = _mm512_loadu_si512(a + i), b0 = _mm512_loadu_si512(b + i);
        __m512i a1 = _mm512_loadu_si512(a + i + 8), b1 = _mm512_loadu_si512(b + i + 8);
        __m512i a2 = _mm512_loadu_si512(a + i + 16), b2 = _mm512_loadu_si512(b + i + 16);
        __m512i a3 = _mm512_loadu_si512(a + i + 24), b3 = _mm512_loadu_si512(b + i + 24);
        greater |= (unsigned)(_mm512_cmpgt_epu64_mask(a0, b0) | _mm512_cmpgt_epu64_mask(a1, b1) |
                              _mm512_cmpgt_epu64_mask(a2, b2) | _mm512_cmpgt_epu64_mask(a3, b3));
        less |= (unsigned)(_mm512_cmplt_epu64_mask(a0, b0) | _mm512_cmplt_epu64_mask(a1, b1) |
                           _mm512_cmplt_epu64_mask(a2, b2) | _mm512_cmplt_epu64_mask(a3, b3));
        if (greater && less)
            return CC_ORDER_CONCURRENT;
    }
    for (; i < n; i += 8) {
        __mmask8 m = avx512_tail_mask(n - i);
        __m512i av = _mm512_maskz_loadu_epi64(m, a + i), bv = _mm512_maskz_loadu_epi64(m, b + i);
        greater |= _mm512_cmpgt_epu64_mask(av, bv);
        less |= _mm512_cmplt_epu64_mask(av, bv);
    }
    return order_of(less != 0, greater != 0);
}

CC_AVX512 static bool dominates_avx512(const uint64_t *a, const uint64_t *b, size_t n) {
    unsigned less = 0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i a0 = _mm512_loadu_si512(a + i), b0 = _mm512_loadu_si512(b + i);
        __m512i a1 = _mm512_loadu_si512(a + i + 8), b1 = _mm512_loadu_si512(b + i + 8);
        __m512i a2 = _mm512_loadu_si512(a + i + 16), b2 = _mm512_loadu_si512(b + i + 16);
        __m512i a3 = _mm512_loadu_si512(a + i + 24), b3 = _mm512_loadu_si512(b + i + 24);
        less |= (unsigned)(_mm512_cmplt_epu64_mask(a0, b0) | _mm512_cmplt_epu64_mask(a1, b1) |
                           _mm512_cmplt_epu64_mask(a2, b2) | _mm512_cmplt_epu64_mask(a3, b3));
        if (less)
            return false;
    }
    for (; i < n; i += 8) {
        __mmask8 m = avx512_tail_mask(n - i);
        less |=
            _mm512_cmplt_epu64_mask(_mm512_maskz_loadu_epi64(m, a + i), _mm512_maskz_loadu_epi64(m, b + i));
    }
    return less == 0;
}

static const struct clock_ops avx512_ops = {CC_CLOCK_PATH_AVX512, merge_avx512, compare_avx512,
                                            dominates_avx512};

#endif /* __x86_64__ */

/* ---------------------------------------------------------------------------
 * Selection
 * ------------------------------------------------------------------------ */

static const struct clock_ops *ops_for(cc_clock_path path) {
    switch (path) {
    case CC_CLOCK_PATH_PORTABLE: return &portable_ops;
#if defined(__x86_64__)
    case CC_CLOCK_PATH_AVX2: __builtin_cpu_init(); return __builtin_cpu_supports("avx2") ? &avx2_ops : NULL;
    case CC_CLOCK_PATH_AVX512:
        /* The libgcc/compiler-rt check also asks the OS (XGETBV) whether it
         * saves the ZMM and mask registers, not only the CPU. */
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") ? &avx512_ops : NULL;
#endif
    case CC_CLOCK_PATH_AUTO: {
        static const cc_clock_path fastest_first[] = {CC_CLOCK_PATH_AVX512, CC_CLOCK_PATH_AVX2};
        for (size_t k = 0; k < sizeof fastest_first / sizeof fastest_first[0]; k++) {
            const struct clock_ops *o = ops_for(fastest_first[k]);
            if (o)
                return o;
        }
        return &portable_ops;
    }
    default: return NULL;
    }
}

/* The table in place until the first operation: it picks the fastest path,
 * installs it unless cc_clock_select got there first, and forwards the call.
 * Starting from a table rather than NULL keeps the hot path free of a check. */
static const struct clock_ops *resolve(void) {
    const struct clock_ops *expected = &resolve_ops, *chosen = ops_for(CC_CLOCK_PATH_AUTO);
    if (atomic_compare_exchange_strong_explicit(&current_ops, &expected, chosen, memory_order_relaxed,
                                                memory_order_relaxed))
        return chosen;
    return expected;
}

static void merge_resolve(uint64_t *dst, const uint64_t *src, size_t n) {
    resolve()->merge(dst, src, n);
}

static cc_order compare_resolve(const uint64_t *a, const uint64_t *b, size_t n) {
    return resolve()->compare(a, b, n);
}

static bool dominates_resolve(const uint64_t *a, const uint64_t *b, size_t n) {
    return resolve()->dominates(a, b, n);
}

static const struct clock_ops resolve_ops = {CC_CLOCK_PATH_AUTO, merge_resolve, compare_resolve,
                                             dominates_resolve};

bool cc_clock_path_supported(cc_clock_path path) {
    return ops_for(path) != NULL;
}

int cc_clock_select(cc_clock_path path) {
    const struct clock_ops *o = ops_for(path);
    if (!o)
        return CC_EUNSUPPORTED;
    atomic_store_explicit(&current_ops, o, memory_order_relaxed);
    return CC_OK;
}

cc_clock_path cc_clock_selected(void) {
    const struct clock_ops *o = ops();
    return o == &resolve_ops ? resolve()->path : o->path;
}

const char *cc_clock_path_name(cc_clock_path path) {
    switch (path) {
    case CC_CLOCK_PATH_AUTO: return "auto";
    case CC_CLOCK_PATH_PORTABLE: return "portable";
    case CC_CLOCK_PATH_AVX2: return "avx2";
    case CC_CLOCK_PATH_AVX512: return "avx512";
    default: return "unknown";
    }
}

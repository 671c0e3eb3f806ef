/* libFuzzer target: the frame codec (cc_frame.h) on hostile bytes.
 *
 * The input is a byte stream as a connection would read it. Frames are
 * parsed one after another, as a stream reader does, and each one is held
 * to what cc_frame.h promises; a broken promise aborts (a finding), and
 * AddressSanitizer catches any read past the input:
 *   - a parsed frame lies within the buffer, its payload ends where it does;
 *   - the same bytes under the handshake's bound (256) parse the same, or
 *     are too big: the size is judged before anything else;
 *   - a truncated frame needs more than the buffer holds;
 *   - a dense clock decodes and encodes back to the very same bytes;
 *   - a sparse clock decodes, encodes against the clock it was applied to
 *     and decodes again to the same clock, and a rejected one leaves the
 *     caller's clock as it was. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cc_error.h"
#include "cc_frame.h"

#define SMALL_BOUND 256     /* the node's bound before the key is proven */
#define CLOCK_ROOM 4096     /* widest clock the target decodes a sparse frame into */
#define CHECK(cond)          \
    do {                     \
        if (!(cond))         \
            abort();         \
    } while (0)

static int same_frame(const cc_frame *a, const cc_frame *b) {
    return a->type == b->type && a->level == b->level && a->flags == b->flags && a->sender == b->sender &&
           a->width == b->width && a->entries == b->entries && a->kind == b->kind && a->seq == b->seq &&
           a->clock == b->clock && a->payload == b->payload && a->payload_len == b->payload_len &&
           a->size == b->size;
}

/* The errors cc_frame_parse documents for a complete frame. */
static int parse_error(int64_t r) {
    return r == CC_ETOOBIG || r == CC_EVERSION || r == CC_ETYPE || r == CC_EFLAGS || r == CC_ELENGTH ||
           r == CC_ELEVEL || r == CC_ESENDER || r == CC_EWIDTH;
}

static void check_dense(const uint8_t *buf, const cc_frame *f) {
    uint64_t *clock = malloc(((size_t)f->width + 1) * sizeof *clock);
    CHECK(clock != NULL);
    CHECK(cc_frame_clock(f, clock, f->width) == CC_OK);
    CHECK(cc_frame_clock(f, clock, (size_t)f->width + 1) == CC_EWIDTH);
    uint8_t *out = malloc(f->size);
    CHECK(out != NULL);
    int64_t n = cc_frame_encode(out, f->size, f, clock, NULL, f->width, f->payload, f->payload_len);
    CHECK(n == (int64_t)f->size);
    CHECK(memcmp(out, buf, f->size) == 0);
    CHECK(cc_frame_encode(out, f->size - 1, f, clock, NULL, f->width, f->payload, f->payload_len) ==
          CC_EFULL);
    free(out);
    free(clock);
}

static void check_sparse(const cc_frame *f) {
    size_t width = f->width < CLOCK_ROOM ? f->width : CLOCK_ROOM;
    uint64_t *base = calloc(width + 1, sizeof *base), *clock = calloc(width + 1, sizeof *clock);
    CHECK(base != NULL && clock != NULL);
    for (size_t k = 0; k < width; k++)
        base[k] = clock[k] = k * 0x9e3779b97f4a7c15ull; /* nonzero: entries that set 0 still differ */
    int rc = cc_frame_clock(f, clock, width);
    if (rc != CC_OK) {
        CHECK(rc == CC_EWIDTH || rc == CC_ESPARSE);
        CHECK(memcmp(clock, base, width * sizeof *clock) == 0); /* validated before applied */
    } else if (width == f->width) {
        /* Encoded against the clock it was applied to, the frame carries the
         * entries that changed; applied to that clock again, it gives the same. */
        size_t cap = cc_frame_size(CC_FRAME_FLAG_SPARSE, f->entries, f->payload_len);
        CHECK(cap != 0);
        uint8_t *out = malloc(cap);
        CHECK(out != NULL);
        int64_t n = cc_frame_encode(out, cap, f, clock, base, width, f->payload, f->payload_len);
        CHECK(n > 0 && (size_t)n <= cap);
        cc_frame g;
        CHECK(cc_frame_parse(out, (size_t)n, (size_t)n, &g) == n);
        CHECK(g.type == f->type && g.level == f->level && g.flags == f->flags && g.sender == f->sender &&
              g.width == f->width && g.kind == f->kind && g.seq == f->seq && g.payload_len == f->payload_len);
        CHECK(g.entries <= f->entries);
        CHECK(f->payload_len == 0 || memcmp(g.payload, f->payload, f->payload_len) == 0);
        uint64_t *again = malloc((width + 1) * sizeof *again);
        CHECK(again != NULL);
        memcpy(again, base, width * sizeof *again);
        CHECK(cc_frame_clock(&g, again, width) == CC_OK);
        CHECK(memcmp(again, clock, width * sizeof *again) == 0);
        free(again);
        free(out);
    }
    free(base);
    free(clock);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A copy of exactly `size` bytes: AddressSanitizer catches a read past it. */
    uint8_t *buf = malloc(size ? size : 1);
    CHECK(buf != NULL);
    if (size)
        memcpy(buf, data, size);
    size_t off = 0;
    for (;;) {
        const uint8_t *p = buf + off;
        size_t len = size - off;
        cc_frame f, s;
        int64_t r = cc_frame_parse(p, len, CC_FRAME_DEFAULT_MAX, &f);
        int64_t small = cc_frame_parse(p, len, SMALL_BOUND, &s);
        size_t needed = cc_frame_needed(p, len);
        CHECK(needed >= 4);
        CHECK(small == r || small == CC_ETOOBIG);
        if (small == CC_ETOOBIG && r != CC_ETOOBIG)
            CHECK(len >= 4 && needed > SMALL_BOUND);
        if (r == CC_ETRUNCATED) {
            CHECK(needed > len);
            break;
        }
        if (r < 0) {
            CHECK(parse_error(r));
            break;
        }
        CHECK((size_t)r <= len && (size_t)r == f.size && (size_t)r == needed);
        CHECK(f.type >= 1 && f.type <= CC_FRAME_TYPE_MAX);
        CHECK(f.payload >= p + CC_FRAME_HEADER_SIZE && f.payload + f.payload_len == p + r);
        CHECK(cc_frame_size(f.flags, f.entries, f.payload_len) == f.size);
        if (small > 0)
            CHECK(same_frame(&s, &f));
        if (f.flags & CC_FRAME_FLAG_SPARSE)
            check_sparse(&f);
        else
            check_dense(p, &f);
        off += (size_t)r;
    }
    free(buf);
    return 0;
}

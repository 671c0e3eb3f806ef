/* The frame codec: golden bytes, round trips and streaming reassembly.
 * Malformed input, encoder errors and the fuzz loop are in
 * test_frame_faults.c. */
#include <stdint.h>
#include <string.h>

#include "cc_error.h"
#include "cc_frame.h"
#include "cc_test.h"
#include "frame_support.h"

/* ---- golden bytes: the layout of cc_frame.h, byte for byte ---- */

TEST_IMPL(frame, golden) {
    const uint64_t clock[3] = {1, 0x0102030405060708ull, 0xFFFFFFFFFFFFFFFFull};
    const uint8_t payload[2] = {0xAB, 0xCD};
    cc_frame h = header(CC_FRAME_MESSAGE, 4, 2, 0x11223344u, 0x8877665544332211ull);

    // clang-format off
    static const uint8_t dense[] = {
        0x36, 0, 0, 0,              /* length: 28 + 24 + 2 = 54 */
        1, 3, 4, 0,                 /* version, type MESSAGE, level 4, flags */
        2, 0, 0, 0,                 /* sender */
        3, 0, 0, 0,                 /* width */
        3, 0, 0, 0,                 /* entries */
        0x44, 0x33, 0x22, 0x11,     /* kind */
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, /* seq */
        1, 0, 0, 0, 0, 0, 0, 0,
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xAB, 0xCD,
    };
    // clang-format on
    uint8_t buf[128];
    memset(buf, 0xEE, sizeof buf);
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &h, clock, NULL, 3, payload, 2), sizeof dense);
    CHECK(memcmp(buf, dense, sizeof dense) == 0);
    CHECK_EQ(buf[sizeof dense], 0xEE); /* nothing written past the frame */

    const uint64_t base[3] = {1, 0, 0xFFFFFFFFFFFFFFFFull}; /* only slot 1 changed */
    // clang-format off
    static const uint8_t sparse[] = {
        0x2A, 0, 0, 0,              /* length: 28 + 12 + 2 = 42 */
        1, 3, 4, 1,                 /* flags: sparse */
        2, 0, 0, 0,
        3, 0, 0, 0,
        1, 0, 0, 0,                 /* one entry */
        0x44, 0x33, 0x22, 0x11,
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
        1, 0, 0, 0,                 /* slot 1 */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        0xAB, 0xCD,
    };
    // clang-format on
    memset(buf, 0xEE, sizeof buf);
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &h, clock, base, 3, payload, 2), sizeof sparse);
    CHECK(memcmp(buf, sparse, sizeof sparse) == 0);
    CHECK_EQ(buf[sizeof sparse], 0xEE);

    /* And the parser reads the golden bytes back field by field. */
    cc_frame f;
    CHECK_EQ(cc_frame_parse(dense, sizeof dense, CC_FRAME_DEFAULT_MAX, &f), sizeof dense);
    CHECK_EQ(f.type, CC_FRAME_MESSAGE);
    CHECK_EQ(f.level, 4);
    CHECK_EQ(f.flags, 0);
    CHECK_EQ(f.sender, 2);
    CHECK_EQ(f.width, 3);
    CHECK_EQ(f.entries, 3);
    CHECK_EQ(f.kind, 0x11223344u);
    CHECK(f.seq == 0x8877665544332211ull);
    CHECK(f.clock == dense + 32);
    CHECK(f.payload == dense + 56);
    CHECK_EQ(f.payload_len, 2);
    CHECK_EQ(f.size, sizeof dense);
    uint64_t got[3] = {0};
    CHECK_EQ(cc_frame_clock(&f, got, 3), CC_OK);
    CHECK(memcmp(got, clock, sizeof got) == 0);

    CHECK_EQ(cc_frame_parse(sparse, sizeof sparse, CC_FRAME_DEFAULT_MAX, &f), sizeof sparse);
    CHECK_EQ(f.flags, CC_FRAME_FLAG_SPARSE);
    CHECK_EQ(f.entries, 1);
    CHECK(f.payload == sparse + 44);
    uint64_t applied[3] = {1, 0, 0xFFFFFFFFFFFFFFFFull};
    CHECK_EQ(cc_frame_clock(&f, applied, 3), CC_OK);
    CHECK(memcmp(applied, clock, sizeof applied) == 0);
}

/* ---- round trips ---- */

/* Encodes one frame, parses it back and checks every field, the clock and
 * the payload. With base != NULL the frame is sparse and is applied on top
 * of a copy of base. */
static void round_trip(uint8_t type, size_t width, int sparse, size_t payload_len, uint64_t *rng) {
    size_t clock_cap = width ? width : 1;
    uint64_t *clock = malloc(clock_cap * sizeof *clock);
    uint64_t *base = malloc(clock_cap * sizeof *base);
    uint64_t *got = malloc(clock_cap * sizeof *got);
    uint8_t *payload = malloc(payload_len ? payload_len : 1);
    size_t cap = CC_FRAME_HEADER_SIZE + width * 12 + payload_len;
    uint8_t *buf = malloc(cap);
    REQUIRE(clock && base && got && payload && buf);

    for (size_t k = 0; k < width; k++) {
        clock[k] = cc_test_rand(rng);
        base[k] = cc_test_rand(rng) % 3 == 0 ? clock[k] : clock[k] ^ (1 + cc_test_rand(rng) % 255);
    }
    for (size_t i = 0; i < payload_len; i++) payload[i] = (uint8_t)cc_test_rand(rng);
    size_t changed = 0;
    for (size_t k = 0; k < width; k++) changed += clock[k] != base[k];

    uint32_t sender = type == CC_FRAME_MESSAGE ? (uint32_t)(cc_test_rand(rng) % width)
                                               : (uint32_t)cc_test_rand(rng);
    cc_frame h = header(type, level_for(type, cc_test_rand(rng)), sender,
                        (uint32_t)cc_test_rand(rng), cc_test_rand(rng));
    size_t entries = sparse ? changed : width;
    size_t want = cc_frame_size(sparse ? CC_FRAME_FLAG_SPARSE : 0, entries, payload_len);
    CHECK_EQ(want, CC_FRAME_HEADER_SIZE + entries * (sparse ? 12 : 8) + payload_len);

    int64_t n = cc_frame_encode(buf, cap, &h, clock, sparse ? base : NULL, width, payload,
                                payload_len);
    CHECK_EQ(n, want);
    if (n <= 0) goto out;

    cc_frame f;
    memset(&f, 0, sizeof f);
    CHECK_EQ(cc_frame_parse(buf, (size_t)n, CC_FRAME_DEFAULT_MAX, &f), n);
    CHECK_EQ(f.type, type);
    CHECK_EQ(f.level, h.level);
    CHECK_EQ(f.flags, sparse ? CC_FRAME_FLAG_SPARSE : 0);
    CHECK_EQ(f.sender, sender);
    CHECK_EQ(f.width, width);
    CHECK_EQ(f.entries, entries);
    CHECK_EQ(f.kind, h.kind);
    CHECK(f.seq == h.seq);
    CHECK_EQ(f.size, n);
    CHECK_EQ(f.payload_len, payload_len);
    CHECK(f.payload == buf + n - payload_len);
    CHECK(payload_len == 0 || memcmp(f.payload, payload, payload_len) == 0);
    CHECK_EQ(cc_frame_needed(buf, (size_t)n), n);

    if (sparse) memcpy(got, base, width * sizeof *got);
    else
        for (size_t k = 0; k < width; k++) got[k] = ~clock[k];
    CHECK_EQ(cc_frame_clock(&f, got, width), CC_OK);
    CHECK(width == 0 || memcmp(got, clock, width * sizeof *got) == 0);

out:
    free(clock);
    free(base);
    free(got);
    free(payload);
    free(buf);
}

TEST_IMPL(frame, round_trips) {
    uint64_t rng = 1;
    static const size_t payloads[] = {0, 1, 7, 300, 4096, 200000};
    size_t nth = 0;
    for (size_t width = 1; width <= 1025; width++) {
        if (width > 64 && width != 1024) continue;
        for (uint8_t type = 1; type <= CC_FRAME_TYPE_MAX; type++) {
            for (int sparse = 0; sparse < 2; sparse++) {
                size_t p = payloads[nth++ % (sizeof payloads / sizeof payloads[0])];
                round_trip(type, width, sparse, p, &rng);
            }
        }
    }
    /* Every payload size with the widest clock, and control frames without a clock. */
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
        round_trip(CC_FRAME_MESSAGE, 1024, 0, payloads[i], &rng);
        round_trip(CC_FRAME_MESSAGE, 1024, 1, payloads[i], &rng);
        for (uint8_t type = 1; type <= CC_FRAME_TYPE_MAX; type++) {
            if (type == CC_FRAME_MESSAGE) continue;
            round_trip(type, 0, 0, payloads[i], &rng);
            round_trip(type, 0, 1, payloads[i], &rng);
        }
    }
}

TEST_IMPL(frame, sparse_edges) {
    enum { W = 40 };
    uint64_t clock[W], base[W], got[W];
    for (size_t k = 0; k < W; k++) clock[k] = base[k] = 1000 + k;
    cc_frame h = header(CC_FRAME_MESSAGE, 1, 7, 0, 0);
    uint8_t buf[CC_FRAME_HEADER_SIZE + W * 12 + 3];
    cc_frame f;

    /* Nothing changed: no entries, just the header (and payload). */
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &h, clock, base, W, "abc", 3), 35);
    CHECK_EQ(cc_frame_parse(buf, 35, CC_FRAME_DEFAULT_MAX, &f), 35);
    CHECK_EQ(f.entries, 0);
    CHECK_EQ(f.width, W);
    CHECK_EQ(f.payload_len, 3);
    CHECK(memcmp(f.payload, "abc", 3) == 0);
    memcpy(got, base, sizeof got);
    CHECK_EQ(cc_frame_clock(&f, got, W), CC_OK);
    CHECK(memcmp(got, base, sizeof got) == 0);

    /* Everything changed: as many entries as the width. */
    for (size_t k = 0; k < W; k++) clock[k] = base[k] + 1 + k;
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &h, clock, base, W, NULL, 0), 32 + W * 12);
    CHECK_EQ(cc_frame_parse(buf, sizeof buf, CC_FRAME_DEFAULT_MAX, &f), 32 + W * 12);
    CHECK_EQ(f.entries, W);
    memcpy(got, base, sizeof got);
    CHECK_EQ(cc_frame_clock(&f, got, W), CC_OK);
    CHECK(memcmp(got, clock, sizeof got) == 0);

    /* A sparse frame applies into a wider clock and leaves the rest alone. */
    uint64_t wide[W + 8];
    for (size_t k = 0; k < W + 8; k++) wide[k] = 77;
    CHECK_EQ(cc_frame_clock(&f, wide, W + 8), CC_OK);
    CHECK(memcmp(wide, clock, sizeof clock) == 0);
    for (size_t k = W; k < W + 8; k++) CHECK_EQ(wide[k], 77);
}

/* ---- streaming ---- */

enum { STREAM_FRAMES = 400, STREAM_WIDTH = 24 };

typedef struct stream {
    uint8_t *bytes;
    size_t len;
    size_t off[STREAM_FRAMES], size[STREAM_FRAMES];
    uint64_t clock[STREAM_FRAMES][STREAM_WIDTH]; /* the sender's clock after frame i */
} stream;

/* A connection's worth of frames: messages tick the sender's clock and are
 * sent dense or sparse against the previous message; control frames carry
 * no clock. */
static int build_stream(stream *s, uint64_t *rng) {
    size_t cap = STREAM_FRAMES * (CC_FRAME_HEADER_SIZE + STREAM_WIDTH * 12 + 600);
    s->bytes = malloc(cap);
    if (s->bytes == NULL) return 0;
    s->len = 0;
    uint64_t clock[STREAM_WIDTH] = {0}, prev[STREAM_WIDTH] = {0};
    uint8_t payload[600];
    for (size_t i = 0; i < STREAM_FRAMES; i++) {
        uint8_t type = (uint8_t)(1 + cc_test_rand(rng) % CC_FRAME_TYPE_MAX);
        if (cc_test_rand(rng) % 2) type = CC_FRAME_MESSAGE;
        size_t plen = cc_test_rand(rng) % 4 == 0 ? 0 : cc_test_rand(rng) % sizeof payload;
        for (size_t j = 0; j < plen; j++) payload[j] = (uint8_t)(i + j);
        cc_frame h = header(type, level_for(type, i), (uint32_t)(i % STREAM_WIDTH), (uint32_t)i, i);
        int64_t n;
        if (type == CC_FRAME_MESSAGE) {
            size_t ticks = cc_test_rand(rng) % 4;
            for (size_t t = 0; t < ticks; t++) clock[cc_test_rand(rng) % STREAM_WIDTH]++;
            int sparse = cc_test_rand(rng) % 3 != 0;
            n = cc_frame_encode(s->bytes + s->len, cap - s->len, &h, clock, sparse ? prev : NULL,
                                STREAM_WIDTH, payload, plen);
            memcpy(prev, clock, sizeof clock);
        } else {
            n = cc_frame_encode(s->bytes + s->len, cap - s->len, &h, NULL, NULL, 0, payload, plen);
        }
        if (n <= 0) return 0;
        s->off[i] = s->len;
        s->size[i] = (size_t)n;
        memcpy(s->clock[i], clock, sizeof clock);
        s->len += (size_t)n;
    }
    return 1;
}

/* Feeds the stream in chunks (chunk 0: random sizes up to 3000) through a
 * reassembly buffer and checks that every frame comes out whole, in order,
 * byte for byte, with the clock the sender had. */
static void feed_stream(const stream *s, size_t chunk, uint64_t *rng) {
    uint8_t *acc = malloc(s->len);
    REQUIRE(acc != NULL);
    size_t have = 0, fed = 0, next = 0;
    uint64_t last[STREAM_WIDTH] = {0}; /* the receiver's view of the peer's clock */
    int failed = 0;
    while (fed < s->len && !failed) {
        size_t step = chunk ? chunk : 1 + cc_test_rand(rng) % 3000;
        if (step > s->len - fed) step = s->len - fed;
        memcpy(acc + have, s->bytes + fed, step);
        have += step;
        fed += step;
        for (;;) {
            cc_frame f;
            int64_t rc = cc_frame_parse(acc, have, CC_FRAME_DEFAULT_MAX, &f);
            if (rc == CC_ETRUNCATED) {
                size_t need = cc_frame_needed(acc, have);
                if (need <= have || (have >= 4 && need != s->size[next])) {
                    CHECK(need > have);
                    CHECK_EQ(need, s->size[next]);
                    failed = 1;
                }
                break;
            }
            if (rc <= 0 || next >= STREAM_FRAMES || (size_t)rc != s->size[next] ||
                memcmp(acc, s->bytes + s->off[next], (size_t)rc) != 0 || f.kind != next) {
                CHECK(rc > 0);
                CHECK(next < STREAM_FRAMES);
                CHECK_EQ(rc, next < STREAM_FRAMES ? s->size[next] : 0);
                failed = 1;
                break;
            }
            if (f.type == CC_FRAME_MESSAGE) {
                CHECK_EQ(cc_frame_clock(&f, last, STREAM_WIDTH), CC_OK);
                if (memcmp(last, s->clock[next], sizeof last) != 0) {
                    CHECK(!"reassembled clock differs from the sender's");
                    failed = 1;
                    break;
                }
            }
            memmove(acc, acc + rc, have - (size_t)rc);
            have -= (size_t)rc;
            next++;
        }
    }
    CHECK_EQ(next, STREAM_FRAMES);
    CHECK_EQ(have, 0);
    free(acc);
}

TEST_IMPL(frame, stream) {
    uint64_t rng = 2;
    stream *s = malloc(sizeof *s);
    REQUIRE(s != NULL);
    if (!build_stream(s, &rng)) {
        CHECK(!"could not build the stream");
        free(s->bytes);
        free(s);
        return;
    }
    feed_stream(s, 1, &rng);
    feed_stream(s, 0, &rng);
    feed_stream(s, 0, &rng);
    feed_stream(s, s->len, &rng);
    free(s->bytes);
    free(s);
}

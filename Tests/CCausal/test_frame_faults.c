/* The frame codec against bad input: one test per malformed input, the
 * encoder's errors, and a fuzz loop meant to run under AddressSanitizer
 * (every parsed input sits in a heap block of exactly its length, so a
 * read past `len` is caught). */
#include <stdint.h>
#include <string.h>

#include "cc_error.h"
#include "cc_frame.h"
#include "cc_test.h"
#include "frame_support.h"

/* ---- malformed input: one code per fault ---- */

/* A valid MESSAGE: width 4, dense, sender 1, level 2, payload "hello". */
enum { VALID_SIZE = 32 + 4 * 8 + 5 };

static void make_valid(uint8_t out[VALID_SIZE]) {
    const uint64_t clock[4] = {5, 6, 7, 8};
    cc_frame h = header(CC_FRAME_MESSAGE, 2, 1, 9, 10);
    int64_t n = cc_frame_encode(out, VALID_SIZE, &h, clock, NULL, 4, "hello", 5);
    CHECK_EQ(n, VALID_SIZE);
}

/* Parses a mutation of the valid frame. */
static int64_t parse_mutated(size_t at, const uint8_t *bytes, size_t n) {
    uint8_t buf[VALID_SIZE];
    make_valid(buf);
    memcpy(buf + at, bytes, n);
    return parse_exact(buf, VALID_SIZE, CC_FRAME_DEFAULT_MAX, NULL);
}

static int64_t with_byte(size_t at, uint8_t v) { return parse_mutated(at, &v, 1); }

static int64_t with_u32(size_t at, uint32_t v) {
    uint8_t b[4];
    put32(b, v);
    return parse_mutated(at, b, 4);
}

TEST_IMPL(frame, truncated) {
    uint8_t buf[VALID_SIZE];
    make_valid(buf);
    CHECK_EQ(parse_exact(buf, VALID_SIZE, CC_FRAME_DEFAULT_MAX, NULL), VALID_SIZE);
    for (size_t n = 0; n < VALID_SIZE; n++) {
        CHECK_EQ(parse_exact(buf, n, CC_FRAME_DEFAULT_MAX, NULL), CC_ETRUNCATED);
        CHECK_EQ(cc_frame_needed(buf, n), n < 4 ? 4 : VALID_SIZE);
    }
    cc_frame f;
    CHECK_EQ(cc_frame_parse(NULL, 0, CC_FRAME_DEFAULT_MAX, &f), CC_ETRUNCATED);
    CHECK_EQ(cc_frame_needed(NULL, 0), 4);
    /* Truncation is reported before the header is judged: the rest may come. */
    buf[4] = 99;
    CHECK_EQ(parse_exact(buf, 20, CC_FRAME_DEFAULT_MAX, NULL), CC_ETRUNCATED);
}

TEST_IMPL(frame, too_big) {
    uint8_t b[4];
    /* Judged from the length alone, with only 4 bytes present. */
    put32(b, 0xFFFFFFFFu);
    CHECK_EQ(parse_exact(b, 4, CC_FRAME_DEFAULT_MAX, NULL), CC_ETOOBIG);
    CHECK_EQ(parse_exact(b, 4, SIZE_MAX, NULL), CC_ETOOBIG); /* beyond 32 bits whatever the limit */
    CHECK_EQ(cc_frame_needed(b, 4), (uint64_t)0xFFFFFFFFu + 4 > SIZE_MAX ? SIZE_MAX
                                                                       : (size_t)0xFFFFFFFFu + 4);
    put32(b, CC_FRAME_DEFAULT_MAX - 3); /* 4 + length = max + 1 */
    CHECK_EQ(parse_exact(b, 4, CC_FRAME_DEFAULT_MAX, NULL), CC_ETOOBIG);
    put32(b, CC_FRAME_DEFAULT_MAX - 4); /* exactly max: allowed, so wait for it */
    CHECK_EQ(parse_exact(b, 4, CC_FRAME_DEFAULT_MAX, NULL), CC_ETRUNCATED);
    /* The limit counts the length prefix. */
    uint8_t buf[VALID_SIZE];
    make_valid(buf);
    CHECK_EQ(parse_exact(buf, VALID_SIZE, VALID_SIZE, NULL), VALID_SIZE);
    CHECK_EQ(parse_exact(buf, VALID_SIZE, VALID_SIZE - 1, NULL), CC_ETOOBIG);
    CHECK_EQ(parse_exact(buf, 4, VALID_SIZE - 1, NULL), CC_ETOOBIG);
    /* Even a frame whose header is bad is too big first. */
    buf[4] = 2;
    CHECK_EQ(parse_exact(buf, VALID_SIZE, 16, NULL), CC_ETOOBIG);
}

TEST_IMPL(frame, length) {
    /* Shorter than the header: frames of 4 + length bytes, all present. */
    uint8_t buf[VALID_SIZE];
    make_valid(buf);
    for (uint32_t length = 0; length < 28; length++) {
        put32(buf, length);
        CHECK_EQ(parse_exact(buf, 4 + length, CC_FRAME_DEFAULT_MAX, NULL), CC_ELENGTH);
    }
    /* Exactly the header is enough for a control frame without a clock. */
    uint8_t ctl[32];
    cc_frame h = header(CC_FRAME_HEARTBEAT, 0, 0, 0, 0);
    CHECK_EQ(cc_frame_encode(ctl, sizeof ctl, &h, NULL, NULL, 0, NULL, 0), 32);
    CHECK_EQ(ctl[0], 28);
    CHECK_EQ(parse_exact(ctl, 32, CC_FRAME_DEFAULT_MAX, NULL), 32);

    /* The clock runs past the declared length. */
    make_valid(buf);
    put32(buf, 28 + 4 * 8 - 1);
    CHECK_EQ(parse_exact(buf, 4 + 28 + 4 * 8 - 1, CC_FRAME_DEFAULT_MAX, NULL), CC_ELENGTH);
    put32(buf, 28 + 4 * 8); /* just the clock, no payload: fine */
    CHECK_EQ(parse_exact(buf, 4 + 28 + 4 * 8, CC_FRAME_DEFAULT_MAX, NULL), 4 + 28 + 4 * 8);
    /* Entry counts whose byte size overflows 32 bits. */
    CHECK_EQ(with_u32(12, 0x20000000u), CC_EWIDTH); /* width alone: a dense mismatch */
    uint8_t huge[8];
    put32(huge, 0x20000000u); /* width */
    put32(huge + 4, 0x20000000u); /* entries: 0x20000000 * 8 == 2^32 */
    CHECK_EQ(parse_mutated(12, huge, 8), CC_ELENGTH);
    put32(huge, 0xFFFFFFFFu);
    put32(huge + 4, 0xFFFFFFFFu);
    CHECK_EQ(parse_mutated(12, huge, 8), CC_ELENGTH);
    /* Sparse: 0x15555556 * 12 > 2^32; and 6 entries (72 bytes) > 37 bytes left. */
    make_valid(buf);
    buf[7] = CC_FRAME_FLAG_SPARSE;
    put32(buf + 16, 0x15555556u);
    CHECK_EQ(parse_exact(buf, VALID_SIZE, CC_FRAME_DEFAULT_MAX, NULL), CC_ELENGTH);
    put32(buf + 16, 0xFFFFFFFFu);
    CHECK_EQ(parse_exact(buf, VALID_SIZE, CC_FRAME_DEFAULT_MAX, NULL), CC_ELENGTH);
    put32(buf + 16, 4); /* 48 bytes of clock > 37 */
    CHECK_EQ(parse_exact(buf, VALID_SIZE, CC_FRAME_DEFAULT_MAX, NULL), CC_ELENGTH);
    put32(buf + 16, 3); /* 36 <= 37 */
    CHECK_EQ(parse_exact(buf, VALID_SIZE, CC_FRAME_DEFAULT_MAX, NULL), VALID_SIZE);
}

TEST_IMPL(frame, header_faults) {
    CHECK_EQ(with_byte(4, 0), CC_EVERSION);
    CHECK_EQ(with_byte(4, 2), CC_EVERSION);
    CHECK_EQ(with_byte(4, 255), CC_EVERSION);

    CHECK_EQ(with_byte(5, 0), CC_ETYPE);
    CHECK_EQ(with_byte(5, 7), CC_ETYPE);
    CHECK_EQ(with_byte(5, 255), CC_ETYPE);

    for (unsigned bit = 1; bit < 8; bit++) CHECK_EQ(with_byte(7, (uint8_t)(1u << bit)), CC_EFLAGS);
    CHECK_EQ(with_byte(7, 0xFF), CC_EFLAGS);

    CHECK_EQ(with_byte(6, 0), CC_ELEVEL);
    CHECK_EQ(with_byte(6, 5), CC_ELEVEL);
    CHECK_EQ(with_byte(6, 255), CC_ELEVEL);
    for (uint8_t level = 1; level <= 4; level++) CHECK_EQ(with_byte(6, level), VALID_SIZE);
    /* A control frame must carry level 0. */
    const uint8_t ack_lvl1[2] = {CC_FRAME_ACK, 1}, ack_lvl0[2] = {CC_FRAME_ACK, 0};
    CHECK_EQ(parse_mutated(5, ack_lvl1, 2), CC_ELEVEL);
    CHECK_EQ(parse_mutated(5, ack_lvl0, 2), VALID_SIZE);

    /* Dense: entries must equal width. */
    CHECK_EQ(with_u32(16, 3), CC_EWIDTH);
    CHECK_EQ(with_u32(16, 5), CC_EWIDTH);
    CHECK_EQ(with_u32(12, 3), CC_EWIDTH);

    /* MESSAGE: sender inside the width, and a width at all. */
    CHECK_EQ(with_u32(8, 4), CC_ESENDER);
    CHECK_EQ(with_u32(8, 0xFFFFFFFFu), CC_ESENDER);
    CHECK_EQ(with_u32(8, 3), VALID_SIZE);
    uint8_t nowidth[8] = {0}; /* width 0, entries 0 */
    CHECK_EQ(parse_mutated(12, nowidth, 8), CC_ESENDER);
    /* Control frames may have width 0 and any sender. */
    uint8_t ctl[VALID_SIZE];
    make_valid(ctl);
    ctl[5] = CC_FRAME_HELLO;
    ctl[6] = 0;
    put32(ctl + 8, 1234);
    CHECK_EQ(parse_exact(ctl, VALID_SIZE, CC_FRAME_DEFAULT_MAX, NULL), VALID_SIZE);
    put32(ctl + 12, 0);
    put32(ctl + 16, 0);
    cc_frame f = {0}; /* set by a parse that succeeds */
    CHECK_EQ(parse_exact(ctl, VALID_SIZE, CC_FRAME_DEFAULT_MAX, &f), VALID_SIZE);
    CHECK_EQ(f.payload_len, VALID_SIZE - 32);

    /* The checks run in the documented order. */
    uint8_t two[2] = {2, 0}; /* bad version and bad type: version first */
    CHECK_EQ(parse_mutated(4, two, 2), CC_EVERSION);
    uint8_t typeflags[4] = {1, 9, 0, 0x80}; /* bad type and flags: type first */
    CHECK_EQ(parse_mutated(4, typeflags, 4), CC_ETYPE);
    uint8_t flagslevel[4] = {1, 3, 0, 0x80}; /* bad flags and level: flags first */
    CHECK_EQ(parse_mutated(4, flagslevel, 4), CC_EFLAGS);
    uint8_t levelwidth[16] = {1, 3, 9, 0, 1, 0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0};
    CHECK_EQ(parse_mutated(4, levelwidth, 16), CC_ELEVEL); /* then width */
    uint8_t widthsender[12] = {9, 0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0};
    CHECK_EQ(parse_mutated(8, widthsender, 12), CC_EWIDTH); /* then sender */
}

/* A sparse MESSAGE of width 8 with the given slots (values 100 + i) into buf. */
static size_t make_sparse(uint8_t *buf, const uint32_t *slots, uint32_t n) {
    size_t size = 32 + 12 * (size_t)n;
    memset(buf, 0, size);
    put32(buf, (uint32_t)(size - 4));
    buf[4] = CC_FRAME_VERSION;
    buf[5] = CC_FRAME_MESSAGE;
    buf[6] = 1;
    buf[7] = CC_FRAME_FLAG_SPARSE;
    put32(buf + 8, 0);
    put32(buf + 12, 8);
    put32(buf + 16, n);
    for (uint32_t i = 0; i < n; i++) {
        put32(buf + 32 + 12 * i, slots[i]);
        put64(buf + 36 + 12 * i, 100 + i);
    }
    return size;
}

/* Parses a sparse frame with the given slots and applies it to a clock of
 * `width` holding 1, 2, 3, ...; on error the clock must be unchanged. */
static int apply_sparse(const uint32_t *slots, uint32_t n, size_t width) {
    uint8_t buf[32 + 12 * 16];
    size_t size = make_sparse(buf, slots, n);
    uint8_t *p = copy_exact(buf, size);
    if (p == NULL) return CC_ENOMEM;
    cc_frame f;
    int64_t rc = cc_frame_parse(p, size, CC_FRAME_DEFAULT_MAX, &f);
    CHECK_EQ(rc, size);
    int r = (int)rc;
    if (rc > 0) {
        uint64_t clock[16], before[16];
        for (size_t k = 0; k < 16; k++) clock[k] = before[k] = k + 1;
        r = cc_frame_clock(&f, clock, width);
        if (r != CC_OK) CHECK(memcmp(clock, before, sizeof clock) == 0);
        for (size_t k = width; k < 16; k++) CHECK_EQ(clock[k], k + 1);
    }
    free(p);
    return r;
}

TEST_IMPL(frame, clock_faults) {
    const uint32_t ok[3] = {0, 3, 7};
    CHECK_EQ(apply_sparse(ok, 3, 8), CC_OK);
    /* A slot outside the receiver's clock; the bad entry last, so that an
     * apply-as-you-go decoder would already have written the others. */
    const uint32_t out_of_range[3] = {0, 3, 8};
    CHECK_EQ(apply_sparse(out_of_range, 3, 8), CC_EWIDTH);
    const uint32_t far[2] = {1, 0xFFFFFFFFu};
    CHECK_EQ(apply_sparse(far, 2, 8), CC_EWIDTH);
    CHECK_EQ(apply_sparse(ok, 3, 7), CC_EWIDTH); /* receiver's clock too narrow */
    CHECK_EQ(apply_sparse(ok, 3, 0), CC_EWIDTH);
    /* A slot inside the receiver's clock but beyond the frame's own width. */
    const uint32_t beyond_frame[2] = {2, 9};
    CHECK_EQ(apply_sparse(beyond_frame, 2, 12), CC_ESPARSE);
    /* Out of order and duplicated. */
    const uint32_t descending[3] = {0, 5, 4};
    CHECK_EQ(apply_sparse(descending, 3, 8), CC_ESPARSE);
    const uint32_t duplicate[3] = {1, 2, 2};
    CHECK_EQ(apply_sparse(duplicate, 3, 8), CC_ESPARSE);
    const uint32_t dup_first[2] = {0, 0};
    CHECK_EQ(apply_sparse(dup_first, 2, 8), CC_ESPARSE);

    /* Dense into a clock of the wrong width, both ways: clock untouched. */
    uint8_t buf[VALID_SIZE];
    make_valid(buf);
    cc_frame f;
    REQUIRE(cc_frame_parse(buf, VALID_SIZE, CC_FRAME_DEFAULT_MAX, &f) == VALID_SIZE);
    uint64_t clock[8], before[8];
    for (size_t k = 0; k < 8; k++) clock[k] = before[k] = 0xC0FFEE00u + k;
    CHECK_EQ(cc_frame_clock(&f, clock, 3), CC_EWIDTH);
    CHECK_EQ(cc_frame_clock(&f, clock, 5), CC_EWIDTH);
    CHECK_EQ(cc_frame_clock(&f, clock, 0), CC_EWIDTH);
    CHECK(memcmp(clock, before, sizeof clock) == 0);
    CHECK_EQ(cc_frame_clock(&f, clock, 4), CC_OK);
    CHECK_EQ(clock[0], 5);
    CHECK_EQ(clock[3], 8);
    CHECK(clock[4] == before[4]);
}

/* ---- the encoder's errors ---- */

TEST_IMPL(frame, encode_errors) {
    const uint64_t clock[4] = {1, 2, 3, 4}, base[4] = {1, 0, 3, 0};
    cc_frame h = header(CC_FRAME_MESSAGE, 1, 0, 0, 0);
    uint8_t buf[128];

    /* Too small a buffer, dense and sparse, and nothing written past cap. */
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &h, clock, NULL, 4, "xy", 2), 32 + 32 + 2);
    for (size_t cap = 0; cap < 66; cap++) {
        memset(buf, 0xEE, sizeof buf);
        CHECK_EQ(cc_frame_encode(buf, cap, &h, clock, NULL, 4, "xy", 2), CC_EFULL);
        CHECK_EQ(buf[cap], 0xEE);
    }
    CHECK_EQ(cc_frame_encode(buf, 66, &h, clock, NULL, 4, "xy", 2), 66);
    CHECK_EQ(cc_frame_encode(buf, 32 + 24 - 1, &h, clock, base, 4, NULL, 0), CC_EFULL);
    CHECK_EQ(cc_frame_encode(buf, 32 + 24, &h, clock, base, 4, NULL, 0), 32 + 24);
    CHECK_EQ(cc_frame_encode(NULL, 0, &h, clock, NULL, 4, NULL, 0), CC_EFULL);

    /* Frames that would not parse. */
    cc_frame bad = h;
    bad.type = 0;
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &bad, clock, NULL, 4, NULL, 0), CC_EINVAL);
    bad.type = CC_FRAME_TYPE_MAX + 1;
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &bad, clock, NULL, 4, NULL, 0), CC_EINVAL);
    bad = h;
    bad.level = 0;
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &bad, clock, NULL, 4, NULL, 0), CC_EINVAL);
    bad.level = 5;
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &bad, clock, NULL, 4, NULL, 0), CC_EINVAL);
    bad = header(CC_FRAME_ACK, 1, 0, 0, 0);
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &bad, clock, NULL, 4, NULL, 0), CC_EINVAL);
    bad = h;
    bad.sender = 4;
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &bad, clock, NULL, 4, NULL, 0), CC_EINVAL);
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &h, NULL, NULL, 0, NULL, 0), CC_EINVAL);
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, NULL, clock, NULL, 4, NULL, 0), CC_EINVAL);
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &h, clock, NULL, 4, NULL, 1), CC_EINVAL);
    /* Sizes beyond 32 bits are refused before anything is read or written. */
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &h, clock, NULL, 4, "x", UINT32_MAX), CC_EINVAL);
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &h, clock, NULL, 4, "x", SIZE_MAX), CC_EINVAL);
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &h, clock, NULL, (size_t)1 << 29, NULL, 0),
             CC_EINVAL);
#if SIZE_MAX > UINT32_MAX
    CHECK_EQ(cc_frame_encode(buf, sizeof buf, &h, clock, NULL, (size_t)UINT32_MAX + 1, NULL, 0),
             CC_EINVAL);
#endif

    /* cc_frame_size at its 32-bit edges. */
    const size_t room = UINT32_MAX - 32;
    CHECK_EQ(cc_frame_size(0, 0, 0), 32);
    CHECK_EQ(cc_frame_size(CC_FRAME_FLAG_SPARSE, 2, 3), 32 + 24 + 3);
    CHECK_EQ(cc_frame_size(0, 0, room), UINT32_MAX);
    CHECK_EQ(cc_frame_size(0, 0, room + 1), 0);
    CHECK_EQ(cc_frame_size(0, room / 8, room % 8), UINT32_MAX);
    CHECK_EQ(cc_frame_size(0, room / 8, room % 8 + 1), 0);
    CHECK_EQ(cc_frame_size(0, room / 8 + 1, 0), 0);
    CHECK_EQ(cc_frame_size(CC_FRAME_FLAG_SPARSE, room / 12, room % 12), UINT32_MAX);
    CHECK_EQ(cc_frame_size(CC_FRAME_FLAG_SPARSE, room / 12 + 1, 0), 0);
    CHECK_EQ(cc_frame_size(CC_FRAME_FLAG_SPARSE, SIZE_MAX / 12 + 1, 0), 0); /* wraps if multiplied */
    CHECK_EQ(cc_frame_size(0, 1, SIZE_MAX), 0);
    CHECK_EQ(cc_frame_size(0, SIZE_MAX, SIZE_MAX), 0);
}

/* ---- fuzz ---- */

enum { FUZZ_ROUNDS = 200000, FUZZ_CAP = 1200 };

/* A valid frame of random shape; returns its size. */
static size_t fuzz_seed(uint8_t *buf, uint64_t *rng) {
    uint64_t clock[48], base[48];
    uint8_t payload[96];
    uint8_t type = (uint8_t)(1 + cc_test_rand(rng) % CC_FRAME_TYPE_MAX);
    size_t width = cc_test_rand(rng) % 48;
    if (type == CC_FRAME_MESSAGE && width == 0) width = 1;
    for (size_t k = 0; k < width; k++) {
        clock[k] = cc_test_rand(rng) % 4 ? cc_test_rand(rng) % 16 : cc_test_rand(rng);
        base[k] = cc_test_rand(rng) % 2 ? clock[k] : clock[k] + 1;
    }
    size_t plen = cc_test_rand(rng) % sizeof payload;
    for (size_t i = 0; i < plen; i++) payload[i] = (uint8_t)cc_test_rand(rng);
    uint32_t sender = (uint32_t)(width ? cc_test_rand(rng) % width : cc_test_rand(rng));
    cc_frame h = header(type, level_for(type, cc_test_rand(rng)), sender,
                        (uint32_t)cc_test_rand(rng), cc_test_rand(rng));
    int64_t n = cc_frame_encode(buf, FUZZ_CAP, &h, clock, cc_test_rand(rng) % 2 ? base : NULL,
                                width, payload, plen);
    return n > 0 ? (size_t)n : 0;
}

static size_t fuzz_mutate(uint8_t *buf, size_t len, uint64_t *rng) {
    switch (cc_test_rand(rng) % 8) {
    case 0: /* keep it valid */
        return len;
    case 1: { /* flip a few bits anywhere */
        size_t flips = 1 + cc_test_rand(rng) % 4;
        for (size_t i = 0; i < flips && len; i++)
            buf[cc_test_rand(rng) % len] ^= (uint8_t)(1u << cc_test_rand(rng) % 8);
        return len;
    }
    case 2: /* a random header byte */
        if (len >= 32) buf[cc_test_rand(rng) % 32] = (uint8_t)cc_test_rand(rng);
        return len;
    case 3: /* a small change to a header field: stays near the valid edge */
        if (len >= 32) {
            size_t at = 4 * (2 + cc_test_rand(rng) % 3); /* sender, width or entries */
            uint32_t v = (uint32_t)buf[at] | (uint32_t)buf[at + 1] << 8 |
                         (uint32_t)buf[at + 2] << 16 | (uint32_t)buf[at + 3] << 24;
            put32(buf + at, v + (uint32_t)(cc_test_rand(rng) % 5) - 2);
        }
        return len;
    case 4: /* truncate */
        return len ? cc_test_rand(rng) % len : 0;
    case 5: { /* a random length field */
        uint64_t r = cc_test_rand(rng);
        if (len >= 4) put32(buf, r % 2 ? (uint32_t)(r >> 32) : (uint32_t)(len - 4 + r % 9) - 4);
        return len;
    }
    case 6: { /* grow with garbage, length field fixed up or not */
        size_t extra = cc_test_rand(rng) % 64;
        if (len + extra > FUZZ_CAP) extra = FUZZ_CAP - len;
        for (size_t i = 0; i < extra; i++) buf[len + i] = (uint8_t)cc_test_rand(rng);
        if (cc_test_rand(rng) % 2 && len >= 4) put32(buf, (uint32_t)(len + extra - 4));
        return len + extra;
    }
    default: { /* pure noise behind a plausible header start */
        size_t n = cc_test_rand(rng) % 160;
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)cc_test_rand(rng);
        if (n >= 8 && cc_test_rand(rng) % 2) {
            put32(buf, (uint32_t)(n - 4));
            buf[4] = CC_FRAME_VERSION;
            buf[5] = (uint8_t)(1 + cc_test_rand(rng) % CC_FRAME_TYPE_MAX);
            buf[7] &= CC_FRAME_FLAG_SPARSE;
        }
        return n;
    }
    }
}

static int known_code(int64_t rc) {
    switch (rc) {
    case CC_ETRUNCATED: case CC_ETOOBIG: case CC_EVERSION: case CC_ETYPE: case CC_EFLAGS:
    case CC_ELENGTH: case CC_ELEVEL: case CC_ESENDER: case CC_EWIDTH:
        return 1;
    default:
        return 0;
    }
}

/* Checks one accepted frame: bounds, clock decoding and a byte-exact re-encode. */
static void fuzz_accepted(const uint8_t *p, size_t len, int64_t rc, const cc_frame *f,
                          uint64_t *rng, size_t *reencoded) {
    size_t size = (size_t)rc;
    CHECK(size <= len);
    CHECK_EQ(f->size, size);
    CHECK_EQ(cc_frame_needed(p, len), size);
    CHECK(f->clock == p + CC_FRAME_HEADER_SIZE);
    CHECK(f->payload >= f->clock && f->payload + f->payload_len == p + size);

    int sparse = (f->flags & CC_FRAME_FLAG_SPARSE) != 0;
    size_t width = f->width;
    if (width > 4096) { /* only a sparse frame can claim a width it does not carry */
        CHECK(sparse);
        return;
    }
    uint64_t *clock = malloc((width ? width : 1) * sizeof *clock);
    uint64_t *base = malloc((width ? width : 1) * sizeof *base);
    uint8_t *again = malloc(size);
    if (!clock || !base || !again) {
        CHECK(!"out of memory");
        goto out;
    }
    for (size_t k = 0; k < width; k++) clock[k] = base[k] = cc_test_rand(rng);
    int r = cc_frame_clock(f, clock, width);
    if (!sparse) CHECK_EQ(r, CC_OK);
    if (r != CC_OK) {
        CHECK(r == CC_EWIDTH || r == CC_ESPARSE);
        CHECK(width == 0 || memcmp(clock, base, width * sizeof *clock) == 0);
        goto out;
    }
    /* For a sparse frame, a base that differs exactly at the frame's slots
     * makes the encoder pick the same entries. */
    for (uint32_t i = 0; sparse && i < f->entries; i++) {
        const uint8_t *e = f->clock + 12 * (size_t)i;
        uint32_t slot = (uint32_t)e[0] | (uint32_t)e[1] << 8 | (uint32_t)e[2] << 16 |
                        (uint32_t)e[3] << 24;
        base[slot] = clock[slot] ^ 1;
    }
    int64_t n = cc_frame_encode(again, size, f, clock, sparse ? base : NULL, width, f->payload,
                                f->payload_len);
    CHECK_EQ(n, rc);
    if (n == rc && memcmp(again, p, size) != 0) CHECK(!"re-encoded frame differs");
    (*reencoded)++;
out:
    free(clock);
    free(base);
    free(again);
}

TEST_IMPL(frame, fuzz) {
    static const size_t limits[] = {48, 256, CC_FRAME_DEFAULT_MAX, SIZE_MAX};
    uint64_t rng = 3;
    uint8_t *buf = malloc(FUZZ_CAP);
    REQUIRE(buf != NULL);
    size_t accepted = 0, reencoded = 0, dense = 0, seen[19] = {0};
    for (int round = 0; round < FUZZ_ROUNDS; round++) {
        size_t len = fuzz_seed(buf, &rng);
        if (len == 0) {
            CHECK(!"fuzz seed failed to encode");
            break;
        }
        size_t mutations = 1 + cc_test_rand(&rng) % 3;
        for (size_t m = 0; m < mutations; m++) len = fuzz_mutate(buf, len, &rng);

        uint8_t *p = copy_exact(buf, len); /* exact size: ASan catches any over-read */
        REQUIRE(p != NULL);
        size_t max = limits[cc_test_rand(&rng) % 4];
        cc_frame f;
        int64_t rc = cc_frame_parse(p, len, max, &f);
        if (rc > 0) {
            accepted++;
            dense += !(f.flags & CC_FRAME_FLAG_SPARSE);
            CHECK((size_t)rc <= max);
            fuzz_accepted(p, len, rc, &f, &rng, &reencoded);
        } else if (!known_code(rc)) {
            CHECK_EQ(rc, 0); /* not a code the parser may return */
        } else {
            seen[-rc]++;
            if (rc == CC_ETRUNCATED) CHECK(len < 4 || cc_frame_needed(p, len) > len);
        }
        free(p);
    }
    free(buf);
    /* The fuzzer must reach both sides of every check to mean anything. */
    CHECK(accepted > FUZZ_ROUNDS / 10);
    CHECK(dense > accepted / 4 && dense < accepted);
    CHECK(reencoded > accepted / 2);
    int codes[] = {CC_ETRUNCATED, CC_ETOOBIG, CC_EVERSION, CC_ETYPE,   CC_EFLAGS,
                   CC_ELENGTH,    CC_ELEVEL,  CC_ESENDER,  CC_EWIDTH};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (seen[-codes[i]] == 0) fprintf(stderr, "fuzz never produced %s\n", cc_strerror(codes[i]));
        CHECK(seen[-codes[i]] > 0);
    }
}

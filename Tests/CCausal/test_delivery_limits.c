/* The causal delivery engine at its edges: emergency ordering, bounds and
 * bad input, scale, growth, local sends and the in-order fast path. */
#include <stdlib.h>
#include <string.h>

#include "cc_delivery.h"
#include "cc_error.h"
#include "cc_test.h"
#include "delivery_support.h"

/* --- Emergency levels. --- */

TEST_IMPL(delivery, emergency) {
    cc_delivery d;
    REQUIRE(cc_delivery_init(&d, 5, 8, 16) == CC_OK);
    uint64_t c[5][5] = {{1}, {0, 1}, {0, 0, 1}, {0, 0, 0, 1}, {0, 0, 0, 0, 1}};
    uint8_t lv[5] = {CC_LEVEL_LOW, CC_LEVEL_HIGH, CC_LEVEL_LOW, CC_LEVEL_HIGH, CC_LEVEL_CRITICAL};
    cc_msg m[5];
    for (uint32_t i = 0; i < 5; i++) {
        m[i] = mk(c[i], 5, i, lv[i]);
        CHECK_EQ(cc_delivery_offer(&d, &m[i]), CC_OK);
    }
    static const int want[] = {4, 1, 3, 0, 2}; /* by level, FIFO within a level */
    for (int i = 0; i < 5; i++) CHECK(cc_delivery_next(&d) == &m[want[i]]);
    CHECK(cc_delivery_next(&d) == NULL);
    CHECK_EQ(d.stats.overtakes, 3);
    cc_delivery_destroy(&d);

    /* A critical message still waits for its predecessor, then goes first. */
    REQUIRE(cc_delivery_init(&d, 3, 8, 16) == CC_OK);
    uint64_t cp[] = {1, 0, 0}, ce[] = {1, 1, 0}, cx1[] = {0, 0, 1}, cx2[] = {0, 0, 2};
    cc_msg p = mk(cp, 3, 0, CC_LEVEL_LOW), e = mk(ce, 3, 1, CC_LEVEL_CRITICAL);
    cc_msg x1 = mk(cx1, 3, 2, CC_LEVEL_LOW), x2 = mk(cx2, 3, 2, CC_LEVEL_LOW);
    CHECK_EQ(cc_delivery_offer(&d, &e), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &x1), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &x2), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &p), CC_OK);
    CHECK(cc_delivery_next(&d) == &x1); /* the critical one is not deliverable yet */
    CHECK(cc_delivery_next(&d) == &p);  /* x2 is ready too, but p came first */
    CHECK(cc_delivery_next(&d) == &e);  /* right after its predecessor, ahead of x2 */
    CHECK(cc_delivery_next(&d) == &x2);
    CHECK(cc_delivery_next(&d) == NULL);
    CHECK_EQ(d.stats.overtakes, 1);
    CHECK_EQ(d.stats.held_back, 2);
    cc_delivery_destroy(&d);

    /* Heads released by the same delivery keep the order in which they began to wait. */
    REQUIRE(cc_delivery_init(&d, 4, 8, 16) == CC_OK);
    uint64_t cq[] = {1, 0, 0, 0}, cr1[] = {1, 1, 0, 0}, cr2[] = {1, 0, 1, 0}, cr3[] = {1, 0, 0, 1};
    cc_msg q = mk(cq, 4, 0, CC_LEVEL_LOW);
    cc_msg r[3] = {mk(cr2, 4, 2, CC_LEVEL_HIGH), mk(cr1, 4, 1, CC_LEVEL_HIGH), mk(cr3, 4, 3, CC_LEVEL_HIGH)};
    for (int i = 0; i < 3; i++) CHECK_EQ(cc_delivery_offer(&d, &r[i]), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &q), CC_OK);
    CHECK(cc_delivery_next(&d) == &q);
    for (int i = 0; i < 3; i++) CHECK(cc_delivery_next(&d) == &r[i]);
    cc_delivery_destroy(&d);
}

/* --- Bounds and bad input. --- */

TEST_IMPL(delivery, bounds) {
    cc_delivery d;
    CHECK_EQ(cc_delivery_init(&d, 0, 4, 4), CC_EINVAL);
    CHECK_EQ(cc_delivery_init(&d, 3, 4, 0), CC_EINVAL);
    REQUIRE(cc_delivery_init(&d, 3, 0, 1) == CC_OK);
    CHECK_EQ(d.window, 1);
    cc_delivery_destroy(&d);
    REQUIRE(cc_delivery_init(&d, 3, 3, 3) == CC_OK);
    CHECK_EQ(d.window, 4);

    int same;
    uint64_t c5[] = {5, 0, 0}, c4[] = {4, 0, 0};
    cc_msg m5 = mk(c5, 3, 0, CC_LEVEL_LOW), m4 = mk(c4, 3, 0, CC_LEVEL_LOW);
    CHECK_EQ(offer_refused(&d, &m5, &same), CC_EAHEAD);
    CHECK(same);
    CHECK_EQ(cc_delivery_offer(&d, &m4), CC_OK); /* the edge of the window */

    uint64_t cb1[] = {0, 1, 0}, cb2[] = {0, 2, 0}, cc1[] = {0, 0, 1};
    cc_msg b1 = mk(cb1, 3, 1, CC_LEVEL_LOW), b2 = mk(cb2, 3, 1, CC_LEVEL_LOW);
    cc_msg c1 = mk(cc1, 3, 2, CC_LEVEL_LOW), b1dup = b1;
    CHECK_EQ(cc_delivery_offer(&d, &b1), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &c1), CC_OK);
    CHECK_EQ(d.pending, 3);
    CHECK_EQ(offer_refused(&d, &b2, &same), CC_EFULL);
    CHECK(same);
    CHECK_EQ(offer_refused(&d, &b1dup, &same), CC_EDUPLICATE); /* a duplicate says so even when full */
    CHECK(same);
    CHECK(cc_delivery_next(&d) == &b1);
    CHECK(cc_delivery_next(&d) == &c1);
    CHECK(cc_delivery_next(&d) == NULL);
    CHECK_EQ(cc_delivery_offer(&d, &b2), CC_OK); /* room again */
    CHECK(cc_delivery_next(&d) == &b2);

    uint64_t c4w[] = {0, 3, 0, 0}, cz[] = {0, 3, 0};
    cc_msg bad[] = {
        mk(cz, 3, 3, CC_LEVEL_LOW),  /* sender outside its clock */
        mk(c4w, 4, 1, CC_LEVEL_LOW), /* wider than the engine */
        mk(cz, 3, 1, 0),             /* level below LOW */
        mk(cz, 3, 1, 5),             /* level above CRITICAL */
        mk(cz, 3, 0, CC_LEVEL_LOW),  /* m[sender] == 0 */
        mk(cz, 0, 0, CC_LEVEL_LOW),  /* no clock at all */
    };
    static const int codes[] = {CC_ESENDER, CC_EWIDTH, CC_ELEVEL, CC_ELEVEL, CC_EINVAL, CC_ESENDER};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(offer_refused(&d, &bad[i], &same), codes[i]);
        CHECK(same);
    }
    CHECK_EQ(cc_delivery_offer(&d, NULL), CC_EINVAL);
    CHECK_EQ(d.stats.rejected, 1 + 1 + 6 + 1);
    CHECK_EQ(d.stats.duplicates, 1);

    /* Still intact: what was held comes out once its predecessors arrive. */
    uint64_t c1a[] = {1, 0, 0}, c2a[] = {2, 0, 0}, c3a[] = {3, 0, 0};
    cc_msg a1 = mk(c1a, 3, 0, CC_LEVEL_LOW), a2 = mk(c2a, 3, 0, CC_LEVEL_LOW);
    cc_msg a3 = mk(c3a, 3, 0, CC_LEVEL_LOW);
    CHECK_EQ(cc_delivery_offer(&d, &a2), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &a1), CC_OK);
    uint64_t shadow[3] = {0, 2, 1};
    cc_msg *out[2];
    CHECK_EQ(drain(&d, shadow, out, 2), 2);
    CHECK(out[0] == &a1 && out[1] == &a2);
    CHECK_EQ(cc_delivery_offer(&d, &a3), CC_OK);
    CHECK_EQ(drain(&d, shadow, out, 2), 2);
    CHECK(out[0] == &a3 && out[1] == &m4);
    CHECK_EQ(d.pending, 0);
    cc_delivery_destroy(&d);
}

/* --- Scale: one sender far ahead of a missing message. --- */

TEST_IMPL(delivery, scale) {
    enum { W = 1024, N = 10000, A = W - 2, B = W - 1 };
    cc_delivery d;
    REQUIRE(cc_delivery_init(&d, W, N, N + 1) == CC_OK);
    /* calloc: the zero part of each clock is never written, so it costs no memory */
    uint64_t *clocks = calloc((size_t)(N + 1) * W, sizeof *clocks);
    cc_msg *m = malloc((N + 1) * sizeof *m);
    REQUIRE(clocks && m);
    for (size_t i = 0; i < N; i++) {
        uint64_t *c = clocks + i * W;
        c[A] = i + 1;
        c[B] = 1; /* A delivered B's first message before sending any */
        m[i] = mk(c, W, A, CC_LEVEL_LOW);
        CHECK_EQ(cc_delivery_offer(&d, &m[i]), CC_OK);
    }
    CHECK(cc_delivery_next(&d) == NULL);
    CHECK_EQ(d.pending, N);
    CHECK_EQ(d.stats.held_back, N);

    uint64_t *cb = clocks + (size_t)N * W;
    cb[B] = 1;
    m[N] = mk(cb, W, B, CC_LEVEL_LOW);
    CHECK_EQ(cc_delivery_offer(&d, &m[N]), CC_OK);
    CHECK(cc_delivery_next(&d) == &m[N]);
    size_t in_order = 0;
    for (size_t i = 0; i < N; i++) in_order += cc_delivery_next(&d) == &m[i];
    CHECK_EQ(in_order, N);
    CHECK(cc_delivery_next(&d) == NULL);
    CHECK_EQ(cc_delivery_clock(&d)[A], N);
    CHECK_EQ(cc_delivery_clock(&d)[B], 1);
    CHECK_EQ(d.pending, 0);
    CHECK_EQ(d.stats.delivered, N + 1);
    cc_delivery_destroy(&d);
    free(clocks);
    free(m);
}

/* --- Growing the group. --- */

TEST_IMPL(delivery, grow) {
    cc_delivery d;
    REQUIRE(cc_delivery_init(&d, 4, 8, 32) == CC_OK);
    uint64_t ca[] = {0, 1, 0, 0};  /* ready, not taken yet */
    uint64_t cb2[] = {0, 0, 2, 0}; /* not the head of sender 2 */
    uint64_t cc[] = {0, 2, 0, 1};  /* head of sender 3, waits on slot 1 */
    uint64_t cg[] = {0, 2, 0, 0};  /* not the head of sender 1 */
    cc_msg a = mk(ca, 4, 1, CC_LEVEL_LOW), b2 = mk(cb2, 4, 2, CC_LEVEL_LOW);
    cc_msg c = mk(cc, 4, 3, CC_LEVEL_HIGH), g = mk(cg, 4, 1, CC_LEVEL_LOW);
    CHECK_EQ(cc_delivery_offer(&d, &a), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &b2), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &c), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &g), CC_OK);

    uint64_t wide[16] = {0, 1};
    wide[10] = 1;
    cc_msg early = mk(wide, 16, 10, CC_LEVEL_LOW);
    int same;
    CHECK_EQ(offer_refused(&d, &early, &same), CC_EWIDTH);
    CHECK(same);

    /* Room reserved ahead: growing within it moves nothing. */
    CHECK_EQ(cc_delivery_reserve(&d, 32), CC_OK);
    CHECK_EQ(d.width, 4);
    CHECK_EQ(d.room, 32);
    CHECK_EQ(offer_refused(&d, &early, &same), CC_EWIDTH); /* room is not width */
    CHECK_EQ(cc_delivery_reserve(&d, 8), CC_OK);
    CHECK_EQ(d.room, 32);
    cc_msg **ring = d.ring;
    uint64_t *local = d.local;
    CHECK_EQ(cc_delivery_grow(&d, 2), CC_EINVAL);
    CHECK_EQ(cc_delivery_grow(&d, 4), CC_OK);
    CHECK_EQ(cc_delivery_grow(&d, 16), CC_OK);
    CHECK_EQ(d.width, 16);
    CHECK(d.ring == ring && d.local == local);
    for (size_t k = 0; k < 16; k++) CHECK_EQ(cc_delivery_clock(&d)[k], 0);

    uint64_t cf[16] = {0};
    cf[10] = 1;
    cf[12] = 1;
    cc_msg f = mk(cf, 16, 12, CC_LEVEL_CRITICAL); /* a new sender that saw `early` */
    uint64_t cb1[] = {0, 0, 1, 0};
    cc_msg b1 = mk(cb1, 4, 2, CC_LEVEL_LOW);
    CHECK_EQ(cc_delivery_offer(&d, &f), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &early), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &b1), CC_OK);
    CHECK_EQ(d.pending, 7);

    uint64_t shadow[16] = {0};
    cc_msg *out[8];
    CHECK_EQ(drain(&d, shadow, out, 8), 7);
    uint64_t want[16] = {0, 2, 2, 1};
    want[10] = 1;
    want[12] = 1;
    CHECK(memcmp(cc_delivery_clock(&d), want, sizeof want) == 0);
    CHECK_EQ(d.pending, 0);
    cc_delivery_destroy(&d);
}

/* --- Local sends. --- */

TEST_IMPL(delivery, send) {
    cc_delivery d;
    REQUIRE(cc_delivery_init(&d, 3, 8, 16) == CC_OK);
    uint64_t cx[] = {1, 1, 0}; /* node 1 saw our first message */
    uint64_t cy[] = {2, 1, 1}; /* node 2 saw our second and x */
    cc_msg x = mk(cx, 3, 1, CC_LEVEL_LOW), y = mk(cy, 3, 2, CC_LEVEL_LOW);
    CHECK_EQ(cc_delivery_offer(&d, &y), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &x), CC_OK);
    CHECK(cc_delivery_next(&d) == NULL);

    uint64_t out[3];
    memset(out, 0xff, sizeof out);
    CHECK_EQ(cc_delivery_send(&d, 0, out), 1);
    uint64_t want1[] = {1, 0, 0};
    CHECK(memcmp(out, want1, sizeof out) == 0);
    CHECK(cc_delivery_next(&d) == &x);
    CHECK(cc_delivery_next(&d) == NULL); /* y needs our second message */

    memset(out, 0xff, sizeof out);
    CHECK_EQ(cc_delivery_send(&d, 0, out), 2);
    uint64_t want2[] = {2, 1, 0};
    CHECK(memcmp(out, want2, sizeof out) == 0);
    CHECK(cc_delivery_next(&d) == &y);
    CHECK(cc_delivery_next(&d) == NULL);
    CHECK_EQ(d.stats.delivered, 4);

    uint64_t cown[] = {1, 0, 0};
    cc_msg own = mk(cown, 3, 0, CC_LEVEL_LOW); /* our own message looped back */
    int same;
    CHECK_EQ(offer_refused(&d, &own, &same), CC_EDUPLICATE);
    CHECK(same);
    cc_delivery_destroy(&d);
}

/* --- The in-order fast path. --- */

TEST_IMPL(delivery, take) {
    cc_delivery d;
    REQUIRE(cc_delivery_init(&d, 3, 8, 16) == CC_OK);
    uint64_t c1[] = {0, 1, 0}, c2[] = {0, 2, 0}, c3[] = {1, 2, 1}, ca[] = {1, 0, 0};
    cc_msg m1 = mk(c1, 3, 1, CC_LEVEL_LOW), m2 = mk(c2, 3, 1, CC_LEVEL_LOW), m3 = mk(c3, 3, 2, CC_LEVEL_HIGH);
    cc_msg a = mk(ca, 3, 0, CC_LEVEL_LOW);
    snapshot s;

    /* Deliverable with nothing held: taken, exactly as offer + next would. */
    CHECK_EQ(cc_delivery_take(&d, &m1), 1);
    uint64_t want1[] = {0, 1, 0};
    CHECK(memcmp(cc_delivery_clock(&d), want1, sizeof want1) == 0);
    CHECK_EQ(d.pending, 0);
    CHECK_EQ(d.stats.offered, 1);
    CHECK_EQ(d.stats.delivered, 1);

    /* Not deliverable (needs a from 0 and 1 from 2): nothing changes. */
    snap_take(&s, &d);
    CHECK_EQ(cc_delivery_take(&d, &m3), 0);
    CHECK(snap_same(&s, &d));
    CHECK_EQ(d.stats.offered, 1);
    snap_free(&s);

    /* A duplicate, a bad level: not taken, nothing changes. */
    snap_take(&s, &d);
    CHECK_EQ(cc_delivery_take(&d, &m1), 0);
    cc_msg bad = mk(c2, 3, 1, 9);
    CHECK_EQ(cc_delivery_take(&d, &bad), 0);
    CHECK(snap_same(&s, &d));
    snap_free(&s);

    /* With a message held, even a deliverable one goes through offer: it may
     * unblock what is held. */
    CHECK_EQ(cc_delivery_offer(&d, &m3), CC_OK);
    CHECK_EQ(d.pending, 1);
    CHECK_EQ(cc_delivery_take(&d, &a), 0);
    CHECK_EQ(cc_delivery_offer(&d, &a), CC_OK);
    CHECK(cc_delivery_next(&d) == &a);
    CHECK(cc_delivery_next(&d) == NULL); /* m3 also needs m2 */
    CHECK_EQ(cc_delivery_take(&d, &m2), 0);
    CHECK_EQ(cc_delivery_offer(&d, &m2), CC_OK);
    CHECK(cc_delivery_next(&d) == &m2);
    CHECK(cc_delivery_next(&d) == &m3);
    CHECK_EQ(d.pending, 0);
    uint64_t want2[] = {1, 2, 1};
    CHECK(memcmp(cc_delivery_clock(&d), want2, sizeof want2) == 0);
    CHECK_EQ(d.stats.delivered, 4);
    cc_delivery_destroy(&d);
}

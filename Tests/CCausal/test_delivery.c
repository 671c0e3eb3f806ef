/* The causal delivery engine: textbook cases, randomized causal histories
 * checked against happened-before, emergency ordering, bounds and bad input,
 * scale, grow, local sends and the in-order fast path. */
#include <stdlib.h>
#include <string.h>

#include "cc_delivery.h"
#include "cc_error.h"
#include "cc_test.h"

static cc_msg mk(const uint64_t *clock, uint32_t width, uint32_t sender, uint8_t level) {
    cc_msg m;
    memset(&m, 0, sizeof m);
    m.clock = clock;
    m.width = width;
    m.sender = sender;
    m.level = level;
    return m;
}

/* The delivery condition, evaluated independently of the engine. */
static int bss_ok(const cc_msg *m, const uint64_t *local, size_t width) {
    for (size_t k = 0; k < width; k++) {
        uint64_t c = k < m->width ? m->clock[k] : 0;
        if (k == m->sender ? c != local[k] + 1 : c > local[k]) return 0;
    }
    return 1;
}

/* Takes every deliverable message, checking each against a shadow clock that
 * the test keeps itself; returns how many came out (order in `out`). */
static size_t drain(cc_delivery *d, uint64_t *shadow, cc_msg **out, size_t max) {
    size_t n = 0;
    cc_msg *m;
    while ((m = cc_delivery_next(d)) != NULL) {
        CHECK(bss_ok(m, shadow, d->width));
        shadow[m->sender] += 1;
        CHECK(memcmp(shadow, cc_delivery_clock(d), d->width * sizeof *shadow) == 0);
        if (out && n < max) out[n] = m;
        n++;
    }
    return n;
}

/* Everything an error must leave alone: the clock, the pending set, the lists
 * and the counters other than offered/duplicates/rejected. */
typedef struct {
    cc_delivery d;
    uint64_t *local;
    cc_msg **ring, **waiting;
} snapshot;

static void snap_take(snapshot *s, const cc_delivery *d) {
    s->d = *d;
    s->local = malloc(d->width * sizeof *s->local);
    s->ring = malloc(d->width * d->window * sizeof *s->ring);
    s->waiting = malloc(d->width * sizeof *s->waiting);
    memcpy(s->local, d->local, d->width * sizeof *s->local);
    memcpy(s->ring, d->ring, d->width * d->window * sizeof *s->ring);
    memcpy(s->waiting, d->waiting, d->width * sizeof *s->waiting);
}

static int snap_same(const snapshot *s, const cc_delivery *d) {
    const cc_delivery *o = &s->d;
    return o->width == d->width && o->window == d->window && o->capacity == d->capacity &&
           o->pending == d->pending && o->stats.delivered == d->stats.delivered &&
           o->stats.held_back == d->stats.held_back && o->stats.overtakes == d->stats.overtakes &&
           memcmp(o->ready_head, d->ready_head, sizeof o->ready_head) == 0 &&
           memcmp(o->ready_tail, d->ready_tail, sizeof o->ready_tail) == 0 &&
           memcmp(s->local, d->local, d->width * sizeof *s->local) == 0 &&
           memcmp(s->ring, d->ring, d->width * d->window * sizeof *s->ring) == 0 &&
           memcmp(s->waiting, d->waiting, d->width * sizeof *s->waiting) == 0;
}

static void snap_free(snapshot *s) {
    free(s->local);
    free(s->ring);
    free(s->waiting);
}

/* Offers a message that must be refused; *same tells whether the engine and
 * every field of the message (the engine's own included) stayed as they were. */
static int offer_refused(cc_delivery *d, cc_msg *m, int *same) {
    snapshot s;
    snap_take(&s, d);
    m->_scan = 0xA5A5A5A5u;
    m->_next = m;
    cc_msg before = *m;
    int rc = cc_delivery_offer(d, m);
    *same = snap_same(&s, d) && memcmp(&before, m, sizeof before) == 0;
    snap_free(&s);
    return rc;
}

/* --- Textbook cases: receiver is node 2 of 3. --- */

TEST_IMPL(delivery, in_order) {
    cc_delivery d;
    REQUIRE(cc_delivery_init(&d, 3, 8, 16) == CC_OK);
    uint64_t c1[] = {1, 0, 0}, c2[] = {2, 0, 0}, c3[] = {3, 0, 0};
    cc_msg m1 = mk(c1, 3, 0, CC_LEVEL_LOW), m2 = mk(c2, 3, 0, CC_LEVEL_LOW), m3 = mk(c3, 3, 0, CC_LEVEL_LOW);
    cc_msg *ms[] = {&m1, &m2, &m3};
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(cc_delivery_offer(&d, ms[i]), CC_OK);
        CHECK(cc_delivery_next(&d) == ms[i]);
        CHECK(cc_delivery_next(&d) == NULL);
        CHECK_EQ(cc_delivery_clock(&d)[0], i + 1);
    }
    CHECK_EQ(d.stats.held_back, 0);
    cc_delivery_destroy(&d);

    /* The same three arriving backwards are held and come out in order. */
    REQUIRE(cc_delivery_init(&d, 3, 8, 16) == CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &m3), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &m2), CC_OK);
    CHECK(cc_delivery_next(&d) == NULL);
    CHECK_EQ(d.pending, 2);
    CHECK_EQ(cc_delivery_offer(&d, &m1), CC_OK);
    CHECK(cc_delivery_next(&d) == &m1);
    CHECK(cc_delivery_next(&d) == &m2);
    CHECK(cc_delivery_next(&d) == &m3);
    CHECK(cc_delivery_next(&d) == NULL);
    CHECK_EQ(d.stats.held_back, 2);
    CHECK_EQ(d.pending, 0);
    cc_delivery_destroy(&d);
}

TEST_IMPL(delivery, waits_for_dependency) {
    cc_delivery d;
    REQUIRE(cc_delivery_init(&d, 3, 8, 16) == CC_OK);
    uint64_t ca[] = {1, 0, 0}; /* node 0 sends a */
    uint64_t cb[] = {1, 1, 0}; /* node 1 sends b after delivering a */
    cc_msg a = mk(ca, 3, 0, CC_LEVEL_LOW), b = mk(cb, 3, 1, CC_LEVEL_LOW);
    CHECK_EQ(cc_delivery_offer(&d, &b), CC_OK);
    CHECK(cc_delivery_next(&d) == NULL);
    CHECK_EQ(d.stats.held_back, 1);
    CHECK_EQ(cc_delivery_offer(&d, &a), CC_OK);
    CHECK(cc_delivery_next(&d) == &a);
    CHECK(cc_delivery_next(&d) == &b);
    CHECK(cc_delivery_next(&d) == NULL);
    uint64_t want[] = {1, 1, 0};
    CHECK(memcmp(cc_delivery_clock(&d), want, sizeof want) == 0);
    cc_delivery_destroy(&d);
}

TEST_IMPL(delivery, concurrent) {
    cc_delivery d;
    REQUIRE(cc_delivery_init(&d, 3, 8, 16) == CC_OK);
    uint64_t ca[] = {1, 0, 0}, cb[] = {0, 1, 0};
    cc_msg a = mk(ca, 3, 0, CC_LEVEL_LOW), b = mk(cb, 3, 1, CC_LEVEL_LOW);
    CHECK_EQ(cc_delivery_offer(&d, &b), CC_OK);
    CHECK_EQ(cc_delivery_offer(&d, &a), CC_OK);
    CHECK_EQ(d.stats.held_back, 0);
    CHECK(cc_delivery_next(&d) == &b); /* FIFO within a level */
    CHECK(cc_delivery_next(&d) == &a);
    CHECK(cc_delivery_next(&d) == NULL);
    uint64_t want[] = {1, 1, 0};
    CHECK(memcmp(cc_delivery_clock(&d), want, sizeof want) == 0);
    cc_delivery_destroy(&d);
}

TEST_IMPL(delivery, duplicates) {
    cc_delivery d;
    REQUIRE(cc_delivery_init(&d, 3, 8, 16) == CC_OK);
    uint64_t c1[] = {1, 0, 0}, c2[] = {2, 0, 0}, c3[] = {3, 0, 0}, cw[] = {2, 1, 0};
    cc_msg m1 = mk(c1, 3, 0, CC_LEVEL_LOW), m1b = m1;
    cc_msg m3 = mk(c3, 3, 0, CC_LEVEL_LOW), m3b = m3;
    cc_msg w = mk(cw, 3, 1, CC_LEVEL_HIGH), wb = w;
    int same;

    CHECK_EQ(cc_delivery_offer(&d, &m1), CC_OK);
    CHECK(cc_delivery_next(&d) == &m1);
    CHECK_EQ(offer_refused(&d, &m1b, &same), CC_EDUPLICATE); /* already delivered */
    CHECK(same);

    CHECK_EQ(cc_delivery_offer(&d, &m3), CC_OK);              /* pending, not the head */
    CHECK_EQ(offer_refused(&d, &m3b, &same), CC_EDUPLICATE);
    CHECK(same);
    CHECK_EQ(cc_delivery_offer(&d, &w), CC_OK);               /* pending head, blocked on slot 0 */
    CHECK_EQ(offer_refused(&d, &wb, &same), CC_EDUPLICATE);
    CHECK(same);
    snapshot s; /* the very same message again: no sentinels, the engine holds it */
    snap_take(&s, &d);
    cc_msg held = w;
    CHECK_EQ(cc_delivery_offer(&d, &w), CC_EDUPLICATE);
    CHECK(snap_same(&s, &d) && memcmp(&held, &w, sizeof held) == 0);
    snap_free(&s);
    CHECK_EQ(d.stats.duplicates, 4);
    CHECK_EQ(d.pending, 2);

    cc_msg m2 = mk(c2, 3, 0, CC_LEVEL_LOW);
    CHECK_EQ(cc_delivery_offer(&d, &m2), CC_OK);
    uint64_t shadow[3] = {1, 0, 0};
    cc_msg *out[3];
    CHECK_EQ(drain(&d, shadow, out, 3), 3);
    CHECK(out[0] == &m2);
    CHECK_EQ(d.stats.offered, 8);
    CHECK_EQ(d.stats.delivered, 4);
    CHECK_EQ(d.pending, 0);
    cc_delivery_destroy(&d);
}

/* --- Randomized causal histories. --- */

enum { HN = 8, HMAX = 400 };

typedef struct {
    uint64_t c[HN];
    uint32_t sender;
} hmsg;

/* HN nodes each send (clock = what it delivered, with its own slot ticked) or
 * deliver one of the others' messages that its own reference check finds
 * deliverable, in random order, until HMAX messages exist. */
static void make_history(uint64_t seed, hmsg *h) {
    static int32_t by[HN][HMAX + 2]; /* index of (sender, seq), -1 when not sent */
    uint64_t v[HN][HN];
    memset(v, 0, sizeof v);
    memset(by, 0xff, sizeof by);
    size_t n = 0;
    while (n < HMAX) {
        unsigned i = (unsigned)(cc_test_rand(&seed) % HN);
        if (cc_test_rand(&seed) % 3 == 0) {
            v[i][i]++;
            memcpy(h[n].c, v[i], sizeof v[i]);
            h[n].sender = i;
            by[i][v[i][i]] = (int32_t)n++;
            continue;
        }
        int32_t cand[HN];
        int nc = 0;
        for (unsigned j = 0; j < HN; j++) {
            if (j == i) continue;
            int32_t x = by[j][v[i][j] + 1];
            if (x < 0) continue;
            int ok = 1;
            for (unsigned k = 0; k < HN; k++)
                if (k != j && h[x].c[k] > v[i][k]) ok = 0;
            if (ok) cand[nc++] = x;
        }
        if (nc) {
            int32_t x = cand[cc_test_rand(&seed) % (uint64_t)nc];
            v[i][h[x].sender]++;
        }
    }
}

static int happened_before(const uint64_t *a, const uint64_t *b) {
    int less = 0;
    for (size_t k = 0; k < HN; k++) {
        if (a[k] > b[k]) return 0;
        if (a[k] < b[k]) less = 1;
    }
    return less;
}

/* Offers every message of a history plus ~20% duplicates in random order and
 * levels, draining after each offer; an offer beyond the window is retried
 * later, as a sender's retransmission would be. */
static void run_history(uint64_t seed, size_t window) {
    hmsg *h = malloc(HMAX * sizeof *h);
    size_t ncopy = HMAX + HMAX / 5;
    cc_msg *cp = malloc(ncopy * sizeof *cp);
    size_t *id = malloc(ncopy * sizeof *id), *queue = malloc(ncopy * sizeof *queue);
    long *pos = malloc(HMAX * sizeof *pos);
    REQUIRE(h && cp && id && queue && pos);
    make_history(seed, h);

    for (size_t k = 0; k < ncopy; k++) {
        id[k] = k < HMAX ? k : (size_t)(cc_test_rand(&seed) % HMAX);
        const hmsg *x = &h[id[k]];
        cp[k] = mk(x->c, HN, x->sender, (uint8_t)(CC_LEVEL_LOW + cc_test_rand(&seed) % CC_LEVEL_COUNT));
        cp[k]._scan = (uint32_t)cc_test_rand(&seed); /* leftovers of a reused buffer */
        cp[k]._next = &cp[k];
        queue[k] = k;
        if (k < HMAX) pos[k] = -1;
    }
    for (size_t k = ncopy - 1; k > 0; k--) {
        size_t r = (size_t)(cc_test_rand(&seed) % (k + 1)), t = queue[k];
        queue[k] = queue[r];
        queue[r] = t;
    }

    cc_delivery d;
    REQUIRE(cc_delivery_init(&d, HN, window, HMAX) == CC_OK);
    uint64_t shadow[HN] = {0};
    size_t head = 0, len = ncopy, accepted = 0, dups = 0, ahead = 0, steps = 0;
    long t = 0;
    while (len > 0 && steps++ < ncopy * ncopy) {
        size_t k = queue[head];
        head = (head + 1) % ncopy;
        len--;
        int rc = cc_delivery_offer(&d, &cp[k]);
        if (rc == CC_OK) {
            accepted++;
        } else if (rc == CC_EDUPLICATE) {
            dups++;
        } else if (rc == CC_EAHEAD) {
            ahead++;
            queue[(head + len++) % ncopy] = k;
        } else {
            CHECK_EQ(rc, CC_OK);
        }
        cc_msg *m;
        while ((m = cc_delivery_next(&d)) != NULL) {
            size_t x = id[m - cp];
            CHECK(pos[x] == -1);
            CHECK(bss_ok(m, shadow, HN));
            shadow[m->sender]++;
            pos[x] = t++;
        }
    }
    CHECK_EQ(len, 0);
    CHECK_EQ(accepted, HMAX);
    CHECK_EQ(dups, ncopy - HMAX);
    CHECK_EQ(t, HMAX);

    int hb_ok = 1;
    uint64_t max[HN] = {0};
    for (size_t a = 0; a < HMAX; a++) {
        if (pos[a] < 0) hb_ok = 0;
        for (size_t k = 0; k < HN; k++)
            if (h[a].c[k] > max[k]) max[k] = h[a].c[k];
        for (size_t b = 0; b < HMAX; b++)
            if (happened_before(h[a].c, h[b].c) && pos[a] >= pos[b]) hb_ok = 0;
    }
    CHECK(hb_ok);
    CHECK(memcmp(cc_delivery_clock(&d), max, sizeof max) == 0);
    CHECK_EQ(d.pending, 0);
    for (int l = 0; l < CC_LEVEL_COUNT; l++) CHECK(d.ready_head[l] == NULL);
    for (size_t k = 0; k < HN; k++) CHECK(d.waiting[k] == NULL);
    CHECK_EQ(d.stats.offered, ncopy + ahead);
    CHECK_EQ(d.stats.delivered, HMAX);
    CHECK_EQ(d.stats.duplicates, dups);
    CHECK_EQ(d.stats.rejected, ahead);
    CHECK(d.stats.held_back > 0 && d.stats.held_back <= HMAX);
    CHECK(d.stats.overtakes > 0);
    if (window >= HMAX)
        CHECK_EQ(ahead, 0);
    else
        CHECK(ahead > 0);

    cc_delivery_destroy(&d);
    free(h);
    free(cp);
    free(id);
    free(queue);
    free(pos);
}

TEST_IMPL(delivery, random_histories) {
    static const uint64_t seeds[] = {1, 2, 3, 0x5eed, 0xdeadbeef};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) run_history(seeds[i], HMAX);
    run_history(7, 2); /* a tight window: many offers refused and retried */
    run_history(8, 4);
}

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

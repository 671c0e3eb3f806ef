/* The causal delivery engine: textbook cases and randomized causal
 * histories checked against happened-before. Emergencies, bounds and bad
 * input, scale, growth, local sends and the fast path are in
 * test_delivery_limits.c. */
#include <stdlib.h>
#include <string.h>

#include "cc_delivery.h"
#include "cc_error.h"
#include "cc_test.h"
#include "delivery_support.h"

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

/* What the delivery engine's tests share: a message, the delivery
 * condition evaluated apart from the engine, a drain checked against a
 * shadow clock, and a snapshot that tells whether a refused offer left the
 * engine as it was. */
#ifndef CC_DELIVERY_SUPPORT_H
#define CC_DELIVERY_SUPPORT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cc_delivery.h"
#include "cc_test.h"

static inline cc_msg mk(const uint64_t *clock, uint32_t width, uint32_t sender, uint8_t level) {
    cc_msg m;
    memset(&m, 0, sizeof m);
    m.clock = clock;
    m.width = width;
    m.sender = sender;
    m.level = level;
    return m;
}

/* The delivery condition, evaluated independently of the engine. */
static inline int bss_ok(const cc_msg *m, const uint64_t *local, size_t width) {
    for (size_t k = 0; k < width; k++) {
        uint64_t c = k < m->width ? m->clock[k] : 0;
        if (k == m->sender ? c != local[k] + 1 : c > local[k]) return 0;
    }
    return 1;
}

/* Takes every deliverable message, checking each against a shadow clock that
 * the test keeps itself; returns how many came out (order in `out`). */
static inline size_t drain(cc_delivery *d, uint64_t *shadow, cc_msg **out, size_t max) {
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

static inline void snap_take(snapshot *s, const cc_delivery *d) {
    s->d = *d;
    s->local = malloc(d->width * sizeof *s->local);
    s->ring = malloc(d->width * d->window * sizeof *s->ring);
    s->waiting = malloc(d->width * sizeof *s->waiting);
    memcpy(s->local, d->local, d->width * sizeof *s->local);
    memcpy(s->ring, d->ring, d->width * d->window * sizeof *s->ring);
    memcpy(s->waiting, d->waiting, d->width * sizeof *s->waiting);
}

static inline int snap_same(const snapshot *s, const cc_delivery *d) {
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

static inline void snap_free(snapshot *s) {
    free(s->local);
    free(s->ring);
    free(s->waiting);
}

/* Offers a message that must be refused; *same tells whether the engine and
 * every field of the message (the engine's own included) stayed as they were. */
static inline int offer_refused(cc_delivery *d, cc_msg *m, int *same) {
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

#endif

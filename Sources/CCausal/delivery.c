/* The causal delivery engine (see cc_delivery.h for the contract).
 *
 * Every message the engine holds sits in ring[j * window + (seq & mask)] and,
 * on top of that, in at most one list:
 *   - a non-head (seq > local[j] + 1) is in no list: nothing can make it
 *     deliverable before its sender's head is delivered, so it is not looked
 *     at until then;
 *   - a blocked head (seq == local[j] + 1) is in waiting[k] for the slot k =
 *     _scan where it found m[k] > local[k];
 *   - a deliverable head is in the ready list of its level.
 *
 * All pending sequences of sender j lie in (local[j], local[j] + window], a
 * range of `window` consecutive values, so seq & mask names each of them by a
 * distinct slot: an occupied slot for an in-window seq can only hold that
 * very (sender, seq), which is what makes the duplicate check O(1).
 *
 * local[] only grows, so once m[k] <= local[k] holds it holds for good: a
 * head's scan never has to look back, and `_scan` only moves forward. Each
 * wait list holds heads only, at most one per sender, so waking a slot costs
 * at most O(width) and each message is scanned across the clock once.
 *
 * A local send from slot `self` moves local[self] without a delivery; the
 * invariants above therefore assume the caller never offers a message whose
 * sender is `self` with a sequence it has not sent yet (a looped-back copy of
 * its own message is simply a duplicate). */
#include "cc_delivery.h"

#include <stdlib.h>
#include <string.h>

#include "cc_clock.h"
#include "cc_error.h"

_Static_assert(CC_LEVEL_COUNT == CC_LEVEL_CRITICAL - CC_LEVEL_LOW + 1, "one ready list per level");
_Static_assert(CC_LEVEL_COUNT == 4, "cc_delivery_next tests the four ready lists at once");
_Static_assert(sizeof(((cc_msg *)0)->_scan) == sizeof(((cc_msg *)0)->sender),
               "_scan must reach every slot a sender can name");

static inline cc_msg **ring_slot(const cc_delivery *d, size_t sender, uint64_t seq) {
    return &d->ring[sender * d->window + (size_t)(seq & (uint64_t)(d->window - 1))];
}

static inline void push_ready(cc_delivery *d, cc_msg *m) {
    unsigned l = (unsigned)m->level - CC_LEVEL_LOW;
    m->_next = NULL;
    if (d->ready_tail[l])
        d->ready_tail[l]->_next = m;
    else
        d->ready_head[l] = m;
    d->ready_tail[l] = m;
}

/* The first k in [k, end) with c[k] > local[k], or end. A plain loop: a
 * resumed scan usually stops within a few entries, and blocked or unrolled
 * variants measured slower on reordered input (more work, more mispredicts). */
static inline uint32_t first_unmet(const uint64_t *c, const uint64_t *local, uint32_t k, uint32_t end) {
    while (k < end && c[k] <= local[k]) k++;
    return k;
}

/* Continues the scan of a head from where its last look stopped and files it
 * as ready or as waiting on the first unmet slot. Entries past m->width are
 * implicit zeros and always met. Returns 1 when the head became ready.
 *
 * The head's own entry is met by definition (m[j] == local[j] + 1 is what
 * makes it the head); raising local[j] by one for the length of the scan
 * makes that entry compare as met too, so one uniform loop covers every slot
 * and a blocked head never waits on its own sender. */
static int settle(cc_delivery *d, cc_msg *m) {
    uint64_t *local = d->local;
    uint32_t n = m->width, j = m->sender;
    local[j]++;
    uint32_t k = first_unmet(m->clock, local, m->_scan, n);
    local[j]--;
    if (k < n) {
        m->_scan = k;
        m->_next = d->waiting[k];
        d->waiting[k] = m;
        return 0;
    }
    push_ready(d, m);
    return 1;
}

/* local[k] just grew: looks again at the heads waiting on k. The list is
 * detached first, so a head still blocked on k goes back onto a fresh
 * waiting[k] and is not seen twice. Wait lists are newest-first; reversing
 * hands heads released by the same event to the ready lists oldest-first,
 * and heads that go back keep their relative order. A head that is still
 * short on k (local[k] usually grows one step at a time) is put back with a
 * single compare instead of a full settle. */
static void wake(cc_delivery *d, size_t k) {
    cc_msg *m = d->waiting[k], *rev = NULL;
    if (!m) return;
    d->waiting[k] = NULL;
    while (m) {
        cc_msg *next = m->_next;
        m->_next = rev;
        rev = m;
        m = next;
    }
    uint64_t now = d->local[k];
    while (rev) {
        cc_msg *next = rev->_next;
        if (rev->clock[k] > now) {
            rev->_next = d->waiting[k];
            d->waiting[k] = rev;
        } else {
            settle(d, rev);
        }
        rev = next;
    }
}

int cc_delivery_init(cc_delivery *d, size_t width, size_t window, size_t capacity) {
    memset(d, 0, sizeof *d);
    if (width == 0 || width > UINT32_MAX || capacity == 0) return CC_EINVAL;
    size_t w = 1;
    while (w < window) {
        if (w > SIZE_MAX / 2) return CC_EINVAL;
        w <<= 1;
    }
    if (width > SIZE_MAX / sizeof(cc_msg *) / w) return CC_EINVAL;
    d->local = calloc(width, sizeof *d->local);
    d->ring = calloc(width * w, sizeof *d->ring);
    d->waiting = calloc(width, sizeof *d->waiting);
    if (!d->local || !d->ring || !d->waiting) {
        cc_delivery_destroy(d);
        return CC_ENOMEM;
    }
    d->width = width;
    d->room = width;
    d->window = w;
    d->capacity = capacity;
    return CC_OK;
}

void cc_delivery_destroy(cc_delivery *d) {
    free(d->local);
    free(d->ring);
    free(d->waiting);
    memset(d, 0, sizeof *d);
}

/* The ring is laid out by sender, so the old ring is exactly the first
 * room * window entries of the new one: reserving only appends zeroed rows and
 * nothing has to be rehashed. Held messages never point into these arrays
 * (wait and ready lists link the messages themselves), so moving them is
 * safe. Each realloc that succeeds is kept even if a later one fails: the
 * arrays are merely larger than d->room says, and the engine is unchanged.
 * Rows past the width stay zero (nothing writes a slot >= width), so a
 * growth within the room has nothing to clear. */
int cc_delivery_reserve(cc_delivery *d, size_t room) {
    size_t old = d->room;
    if (room <= old) return CC_OK;
    if (room > UINT32_MAX || room > SIZE_MAX / sizeof(cc_msg *) / d->window) return CC_EINVAL;

    uint64_t *local = realloc(d->local, room * sizeof *local);
    if (!local) return CC_ENOMEM;
    d->local = local;
    cc_msg **waiting = realloc(d->waiting, room * sizeof *waiting);
    if (!waiting) return CC_ENOMEM;
    d->waiting = waiting;
    cc_msg **ring = realloc(d->ring, room * d->window * sizeof *ring);
    if (!ring) return CC_ENOMEM;
    d->ring = ring;

    memset(local + old, 0, (room - old) * sizeof *local);
    memset(waiting + old, 0, (room - old) * sizeof *waiting);
    memset(ring + old * d->window, 0, (room - old) * d->window * sizeof *ring);
    d->room = room;
    return CC_OK;
}

int cc_delivery_grow(cc_delivery *d, size_t new_width) {
    if (new_width < d->width || new_width > UINT32_MAX) return CC_EINVAL;
    int rc = cc_delivery_reserve(d, new_width);
    if (rc != CC_OK) return rc;
    d->width = new_width;
    return CC_OK;
}

/* Decides whether the engine may take m, without writing anything: on an
 * error both the engine and the message stay exactly as they were. */
static int admit(const cc_delivery *d, const cc_msg *m) {
    if (!m || (m->width && !m->clock)) return CC_EINVAL;
    if (m->width > d->width) return CC_EWIDTH;
    if (m->sender >= m->width) return CC_ESENDER;
    if (m->level < CC_LEVEL_LOW || m->level > CC_LEVEL_CRITICAL) return CC_ELEVEL;
    uint64_t seq = m->clock[m->sender], have = d->local[m->sender];
    if (seq == 0) return CC_EINVAL;
    if (seq <= have) return CC_EDUPLICATE;
    if (seq - have > d->window) return CC_EAHEAD;
    if (*ring_slot(d, m->sender, seq)) return CC_EDUPLICATE;
    if (d->pending == d->capacity) return CC_EFULL;
    return CC_OK;
}

int cc_delivery_offer(cc_delivery *d, cc_msg *m) {
    d->stats.offered++;
    int rc = admit(d, m);
    if (rc != CC_OK) {
        if (rc == CC_EDUPLICATE)
            d->stats.duplicates++;
        else
            d->stats.rejected++;
        return rc;
    }
    uint64_t seq = m->clock[m->sender];
    *ring_slot(d, m->sender, seq) = m;
    d->pending++;
    m->_scan = 0;
    m->_next = NULL;
    if (seq != d->local[m->sender] + 1 || !settle(d, m)) d->stats.held_back++;
    return CC_OK;
}

cc_msg *cc_delivery_next(cc_delivery *d) {
    /* One test for "nothing ready", the answer to every other call in a drain loop. */
    cc_msg *const *h = d->ready_head;
    if (!((uintptr_t)h[0] | (uintptr_t)h[1] | (uintptr_t)h[2] | (uintptr_t)h[3])) return NULL;
    int l = CC_LEVEL_COUNT - 1;
    while (!h[l]) l--;

    cc_msg *m = d->ready_head[l];
    d->ready_head[l] = m->_next;
    if (!m->_next) d->ready_tail[l] = NULL;
    m->_next = NULL;
    for (int lower = 0; lower < l; lower++) {
        if (d->ready_head[lower]) {
            d->stats.overtakes++;
            break;
        }
    }

    /* A ready message is its sender's head, so this is local[j] + 1. */
    uint32_t j = m->sender;
    uint64_t seq = m->clock[j];
    d->local[j] = seq;
    *ring_slot(d, j, seq) = NULL;
    d->pending--;
    d->stats.delivered++;

    wake(d, j);
    cc_msg *head = *ring_slot(d, j, seq + 1);
    if (head) settle(d, head);
    return m;
}

int cc_delivery_take(cc_delivery *d, const cc_msg *m) {
    /* What admit checks, less what an empty engine makes moot: with nothing
     * pending no ring slot is taken and nothing can be full, and
     * m[j] == local[j] + 1 is neither a duplicate nor ahead. */
    if (d->pending != 0 || !m || !m->clock || m->width > d->width || m->sender >= m->width ||
        m->level < CC_LEVEL_LOW || m->level > CC_LEVEL_CRITICAL)
        return 0;
    uint64_t *local = d->local;
    uint32_t j = m->sender;
    if (m->clock[j] != local[j] + 1) return 0;
    /* As in settle: local[j] + 1 makes the sender's own entry compare as met.
     * If m is deliverable that is exactly its new value; if not, undo it.
     * Unlike a resumed scan, this one runs over the whole clock when m is
     * deliverable, the case it is for: the vector compare pays. */
    local[j]++;
    if (!cc_clock_dominates(local, m->clock, m->width)) {
        local[j]--;
        return 0;
    }
    /* Nothing is pending, so no head waits on j: there is nothing to wake. */
    d->stats.offered++;
    d->stats.delivered++;
    return 1;
}

uint64_t cc_delivery_send(cc_delivery *d, size_t self, uint64_t *clock_out) {
    uint64_t seq = ++d->local[self];
    if (clock_out) memcpy(clock_out, d->local, d->width * sizeof *clock_out);
    d->stats.delivered++;
    if (d->waiting[self]) wake(d, self); /* once per own broadcast: skip the call when nobody waits */
    return seq;
}

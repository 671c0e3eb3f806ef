/* The causal delivery engine (Birman–Schiper–Stephenson).
 *
 * A message m from sender j is deliverable when m[j] == local[j] + 1 and
 * m[k] <= local[k] for every k != j; delivering it sets local[j] += 1.
 * Messages with m[j] <= local[j] are duplicates and are dropped.
 *
 * Messages that arrive early wait in a bounded pending set. Per sender the
 * pending messages sit in a ring indexed by sequence (m[j]), so only the
 * head of each sender (sequence local[j] + 1) can ever be deliverable. A
 * blocked head waits on the first slot k whose dependency is unmet; when
 * local[k] grows only the heads waiting on k are looked at again, and each
 * head's scan position only moves forward. The work per message is therefore
 * O(width) amortised; nothing ever rescans the whole pending set.
 *
 * Among messages deliverable at the same moment a higher emergency level is
 * delivered first (FIFO within a level). Priority never overrides
 * causality: an emergency message still waits for its predecessors.
 *
 * Messages are intrusive: the caller owns each cc_msg (typically embedded in
 * a pooled buffer) and gets it back from cc_delivery_next or from an error
 * return of cc_delivery_offer. The engine allocates only in init and grow.
 *
 * Thread safety: none; one engine belongs to one thread (the loop thread). */
#ifndef CC_DELIVERY_H
#define CC_DELIVERY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Emergency levels; a normal message is LOW. */
enum {
    CC_LEVEL_LOW = 1,
    CC_LEVEL_MEDIUM = 2,
    CC_LEVEL_HIGH = 3,
    CC_LEVEL_CRITICAL = 4,
    CC_LEVEL_COUNT = 4,
};

/** A message as the engine sees it. The caller sets clock, width, sender and
 * level; fields that start with an underscore belong to the engine while it
 * holds the message. */
typedef struct cc_msg {
    const uint64_t *clock; /* `width` entries; entries past width count as 0 */
    uint32_t width;        /* at most the engine's width */
    uint32_t sender;       /* slot of the sender, < width */
    uint8_t level;         /* CC_LEVEL_LOW..CC_LEVEL_CRITICAL */
    uint8_t _pad[3];
    uint32_t _scan;        /* first slot whose dependency is not yet known to hold */
    struct cc_msg *_next;  /* link in a wait list or a ready list */
} cc_msg;

/** Counters, monotonically increasing. */
typedef struct cc_delivery_stats {
    uint64_t offered;    /* calls to cc_delivery_offer */
    uint64_t delivered;  /* messages returned by cc_delivery_next, plus local sends */
    uint64_t duplicates; /* offers dropped as already delivered or already pending */
    uint64_t held_back;  /* offers that had to wait for a predecessor */
    uint64_t rejected;   /* offers refused with CC_EFULL, CC_EAHEAD or an invalid field */
    uint64_t overtakes;  /* deliveries that went ahead of a lower-level ready message */
} cc_delivery_stats;

/** The engine. Caller-owned; treat the fields as private. */
typedef struct cc_delivery {
    uint64_t *local;      /* width entries: messages delivered from each sender */
    cc_msg **ring;        /* width * window: pending messages by (sender, seq & mask) */
    cc_msg **waiting;     /* width: heads blocked on each slot (singly linked) */
    cc_msg *ready_head[CC_LEVEL_COUNT];
    cc_msg *ready_tail[CC_LEVEL_COUNT];
    size_t width;
    size_t room;          /* senders the arrays have room for (>= width): no allocation to grow to it */
    size_t window;        /* power of two: a sender may run at most this far ahead */
    size_t capacity;      /* most messages pending at once */
    size_t pending;       /* messages held now (waiting or ready) */
    cc_delivery_stats stats;
} cc_delivery;

/** Sets up an engine for `width` senders. `window` (rounded up to a power of
 * two, at least 1) bounds how far ahead of local[j] a message from j may be;
 * `capacity` bounds the messages held at once. Returns CC_OK, CC_EINVAL or CC_ENOMEM. */
int cc_delivery_init(cc_delivery *d, size_t width, size_t window, size_t capacity);

/** Frees what init allocated. Messages still held are simply forgotten. */
void cc_delivery_destroy(cc_delivery *d);

/** Widens the engine to new_width senders (new slots start at 0); pending
 * messages are kept. Allocates only past the room reserved (at least the
 * width). Returns CC_OK, CC_EINVAL (narrower) or CC_ENOMEM. */
int cc_delivery_grow(cc_delivery *d, size_t new_width);

/** Makes room for `room` senders without changing the width, so that later
 * growths up to it allocate nothing: a caller that grows one slot at a time
 * reserves ahead geometrically and copies the arrays O(log width) times, not
 * once per slot. Costs room * (window + 2) * 8 bytes. Returns CC_OK,
 * CC_EINVAL (too large) or CC_ENOMEM (the engine is unchanged). */
int cc_delivery_reserve(cc_delivery *d, size_t room);

/** Hands a message to the engine. Returns CC_OK when the engine now holds it
 * (ready or waiting), or an error and leaves it with the caller:
 * CC_EDUPLICATE (already delivered or pending), CC_EFULL (pending set full),
 * CC_EAHEAD (beyond the window), CC_EWIDTH (wider than the engine),
 * CC_ESENDER, CC_ELEVEL, CC_EINVAL (m[sender] == 0). */
int cc_delivery_offer(cc_delivery *d, cc_msg *m);

/** Takes the next deliverable message (highest level first), applies it to
 * the local clock and returns it; NULL when nothing is deliverable. */
cc_msg *cc_delivery_next(cc_delivery *d);

/** The in-order fast path. When the engine holds nothing and m is
 * deliverable now, applies m to the local clock exactly as cc_delivery_offer
 * followed by cc_delivery_next would (counters included) and returns 1: m
 * never enters the engine and the caller delivers it at once. Otherwise
 * returns 0 and changes nothing; offer m as usual (an invalid or duplicate m
 * also returns 0, and the offer then says what is wrong). With nothing held
 * there is nothing m could overtake or unblock, so this is the whole of
 * delivering it: one pass over its clock instead of filing it in the ring
 * and a ready list and taking it out again. */
int cc_delivery_take(cc_delivery *d, const cc_msg *m);

/** Records a local send from slot `self`: local[self] += 1, then copies the
 * local clock into clock_out (width entries; may be NULL) and returns the new
 * sequence. Heads that waited on `self` are looked at again. Requires
 * self < width. A node that sends through this function must never offer a
 * message from its own slot that it has not sent (a looped-back copy of one
 * it sent is simply a CC_EDUPLICATE). */
uint64_t cc_delivery_send(cc_delivery *d, size_t self, uint64_t *clock_out);

/** The local clock (width entries), valid until the next call that changes the engine. */
static inline const uint64_t *cc_delivery_clock(const cc_delivery *d) { return d->local; }

#ifdef __cplusplus
}
#endif
#endif

/* A bounded lock-free queue of pointers (Vyukov's bounded ring with a
 * sequence number per cell).
 *
 * cc_queue_push may be called from any thread (multi-producer).
 * cc_queue_pop may be called from one consumer thread only (the loop
 * thread): it needs no compare-and-swap. cc_queue_pop_shared may be called
 * from any thread and pays a compare-and-swap; a queue must not mix the two
 * pop flavours. Neither push nor pop ever allocates or blocks; a full queue
 * makes push fail so that callers see back-pressure instead of growth. */
#ifndef CC_QUEUE_H
#define CC_QUEUE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CC_CACHE_LINE 64

typedef struct cc_queue_cell {
    _Atomic size_t seq; /* == position when free for a push, position + 1 when it holds an item */
    void *item;
} cc_queue_cell;

/** Caller-owned; treat the fields as private. The producers' index and the
 * consumer's index sit on separate cache lines: producers hammer `tail` with
 * compare-and-swap and the consumer writes `head` on every pop, so sharing a
 * line would make every operation miss in the other core's cache. */
typedef struct cc_queue {
    _Alignas(CC_CACHE_LINE) _Atomic size_t tail; /* next position to push (producers) */
    _Alignas(CC_CACHE_LINE) _Atomic size_t head; /* next position to pop (consumer) */
    _Alignas(CC_CACHE_LINE) cc_queue_cell *cells;
    size_t mask;
} cc_queue;

/** capacity is rounded up to a power of two (at least 2). Returns CC_OK, CC_EINVAL or CC_ENOMEM. */
int cc_queue_init(cc_queue *q, size_t capacity);
void cc_queue_destroy(cc_queue *q);

/** Any thread. Returns CC_OK or CC_EFULL. item must not be NULL. */
int cc_queue_push(cc_queue *q, void *item);

/** Consumer thread only. Returns the oldest item or NULL when empty. */
void *cc_queue_pop(cc_queue *q);

/** Consumer thread only. Pops up to max items into out; returns how many. */
size_t cc_queue_pop_batch(cc_queue *q, void **out, size_t max);

/** Any thread (multi-consumer). Returns the oldest item or NULL when empty. */
void *cc_queue_pop_shared(cc_queue *q);

/** The number of slots. */
static inline size_t cc_queue_capacity(const cc_queue *q) { return q->mask + 1; }

#ifdef __cplusplus
}
#endif
#endif

/* Vyukov's bounded MPMC ring: every cell carries a sequence number that
 * says whose turn it is. A cell at position p (index p & mask) is free for
 * the producer of position p when seq == p, and holds the item for the
 * consumer of position p when seq == p + 1; the consumer hands it to the
 * producer of the next lap by storing p + capacity.
 *
 * The item itself is a plain field: it is published by the release store of
 * the cell's seq and read after an acquire load of it, so the seq handshake
 * orders every access to it. The head index only arbitrates which consumer
 * owns a position and can use relaxed order. The tail is read with acquire
 * and advanced with release for one guarantee callers rely on: when the
 * items pushed are drawn from a fixed set no larger than the capacity (pool
 * blocks) and a single consumer pops them, a push never sees CC_EFULL. The
 * producer of position p needs the pop of p - capacity to be visible; by
 * pigeonhole some block was pushed at b < p after being popped at a >= p -
 * capacity, and the release/acquire chain on tail (a release sequence of
 * CASes) carries that pop to the producer of p. */
#include "cc_queue.h"

#include <stdint.h>
#include <stdlib.h>

#include "cc_error.h"

int cc_queue_init(cc_queue *q, size_t capacity) {
    if (q == NULL || capacity == 0 || capacity > SIZE_MAX / 4 / sizeof(cc_queue_cell))
        return CC_EINVAL;
    size_t n = 2;
    while (n < capacity)
        n <<= 1;
    cc_queue_cell *cells = calloc(n, sizeof *cells);
    if (cells == NULL)
        return CC_ENOMEM;
    for (size_t i = 0; i < n; i++)
        atomic_init(&cells[i].seq, i);
    atomic_init(&q->tail, 0);
    atomic_init(&q->head, 0);
    q->cells = cells;
    q->mask = n - 1;
    return CC_OK;
}

void cc_queue_destroy(cc_queue *q) {
    if (q == NULL)
        return;
    free(q->cells);
    q->cells = NULL;
    q->mask = 0;
}

int cc_queue_push(cc_queue *q, void *item) {
    if (item == NULL)
        return CC_EINVAL;
    /* Acquire on every read of tail, release on the CAS: see the top. */
    size_t pos = atomic_load_explicit(&q->tail, memory_order_acquire);
    cc_queue_cell *cell;
    for (;;) {
        cell = &q->cells[pos & q->mask];
        /* Acquire: pairs with the consumer's release of this cell one lap
         * ago, so its read of the old item happens before our write. */
        size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&q->tail, &pos, pos + 1, memory_order_acq_rel,
                                                      memory_order_acquire))
                break;
        } else if (dif < 0) {
            return CC_EFULL; /* the cell still holds last lap's item (or its consumer is mid-pop) */
        } else {
            pos = atomic_load_explicit(&q->tail, memory_order_acquire); /* another producer took pos */
        }
    }
    cell->item = item;
    /* Release: the item (and everything the producer wrote into it) is
     * visible to whoever acquires seq == pos + 1. */
    atomic_store_explicit(&cell->seq, pos + 1, memory_order_release);
    return CC_OK;
}

/* One consumer: nobody else writes head, so it needs no CAS and a relaxed
 * load sees our own last store. */
static inline void *pop_one(cc_queue *q, size_t pos) {
    cc_queue_cell *cell = &q->cells[pos & q->mask];
    /* Acquire: pairs with the producer's release of seq == pos + 1, so the
     * item and what it points at are fully written before we read them. */
    size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
    if (seq != pos + 1)
        return NULL; /* empty, or the producer of pos has not published yet */
    void *item = cell->item;
    /* Release: our read of item happens before the next lap's producer
     * overwrites it. */
    atomic_store_explicit(&cell->seq, pos + q->mask + 1, memory_order_release);
    return item;
}

void *cc_queue_pop(cc_queue *q) {
    size_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
    void *item = pop_one(q, pos);
    /* Release is not needed for producers (they never read head, they read
     * the cell seq); it keeps head a safe lower bound for any reader. */
    if (item != NULL)
        atomic_store_explicit(&q->head, pos + 1, memory_order_release);
    return item;
}

size_t cc_queue_pop_batch(cc_queue *q, void **out, size_t max) {
    size_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
    size_t n = 0;
    while (n < max) {
        void *item = pop_one(q, pos + n);
        if (item == NULL)
            break;
        out[n++] = item;
    }
    /* Each cell was handed back individually above; head moves once. */
    if (n > 0)
        atomic_store_explicit(&q->head, pos + n, memory_order_release);
    return n;
}

void *cc_queue_pop_shared(cc_queue *q) {
    size_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
    cc_queue_cell *cell;
    for (;;) {
        cell = &q->cells[pos & q->mask];
        /* Acquire: as in pop_one, the item is published by this seq. */
        size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)(pos + 1);
        if (dif == 0) {
            /* Relaxed: the CAS only elects the consumer of pos; the data
             * was already ordered by the acquire above. */
            if (atomic_compare_exchange_weak_explicit(&q->head, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return NULL; /* empty */
        } else {
            pos = atomic_load_explicit(&q->head, memory_order_relaxed); /* another consumer took pos */
        }
    }
    void *item = cell->item;
    /* Release: hand the cell to the producer of the next lap after our read. */
    atomic_store_explicit(&cell->seq, pos + q->mask + 1, memory_order_release);
    return item;
}

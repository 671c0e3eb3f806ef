/* A pool of fixed-size blocks carved from one slab at init.
 *
 * cc_pool_get and cc_pool_put may be called from any thread; the free list
 * is a cc_queue used with pop_shared. A block is 64-byte aligned. An
 * exhausted pool returns NULL: that is the back-pressure signal. */
#ifndef CC_POOL_H
#define CC_POOL_H

#include <stddef.h>
#include "cc_queue.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cc_pool {
    cc_queue free;        /* blocks not in use */
    unsigned char *slab;  /* count * block_size bytes */
    size_t block_size;    /* rounded up to a multiple of CC_CACHE_LINE */
    size_t count;
} cc_pool;

/** Returns CC_OK, CC_EINVAL (zero size or count) or CC_ENOMEM. */
int cc_pool_init(cc_pool *p, size_t block_size, size_t count);
/** Frees the slab; every block must have been put back (or be abandoned). */
void cc_pool_destroy(cc_pool *p);
/** Any thread. A free block, or NULL when all are in use. */
void *cc_pool_get(cc_pool *p);
/** Any thread. block must have come from cc_pool_get on this pool. */
void cc_pool_put(cc_pool *p, void *block);
/** True when ptr points at the start of one of the pool's blocks. */
int cc_pool_owns(const cc_pool *p, const void *ptr);

#ifdef __cplusplus
}
#endif
#endif

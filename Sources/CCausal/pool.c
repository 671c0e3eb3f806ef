/* Fixed-size blocks carved from one 64-byte aligned slab; the free list is a
 * cc_queue of block pointers used with push and pop_shared, so get and put
 * work from any thread and never allocate. */
#include "cc_pool.h"

#include <sched.h>
#include <stdint.h>
#include <stdlib.h>

#include "cc_error.h"

int cc_pool_init(cc_pool *p, size_t block_size, size_t count) {
    if (p == NULL || block_size == 0 || count == 0)
        return CC_EINVAL;
    if (block_size > SIZE_MAX - CC_CACHE_LINE)
        return CC_EINVAL;
    size_t size = (block_size + CC_CACHE_LINE - 1) & ~(size_t)(CC_CACHE_LINE - 1);
    if (count > SIZE_MAX / size)
        return CC_EINVAL;
    unsigned char *slab = aligned_alloc(CC_CACHE_LINE, size * count);
    if (slab == NULL)
        return CC_ENOMEM;
    int rc = cc_queue_init(&p->free, count);
    if (rc != CC_OK) {
        free(slab);
        return rc;
    }
    /* The queue holds at least count cells, so these pushes cannot fail. */
    for (size_t i = 0; i < count; i++)
        cc_queue_push(&p->free, slab + i * size);
    p->slab = slab;
    p->block_size = size;
    p->count = count;
    return CC_OK;
}

void cc_pool_destroy(cc_pool *p) {
    if (p == NULL)
        return;
    cc_queue_destroy(&p->free);
    free(p->slab);
    p->slab = NULL;
    p->count = 0;
}

void *cc_pool_get(cc_pool *p) {
    return cc_queue_pop_shared(&p->free);
}

void cc_pool_put(cc_pool *p, void *block) {
    /* The queue has room for every block, so a put can only see CC_EFULL
     * when the cell it needs is still being read by a pop_shared that
     * claimed it a lap ago and has not yet handed it back (it is a couple
     * of instructions from doing so, perhaps preempted). Wait for it rather
     * than lose the block. */
    if (block == NULL)
        return;
    unsigned spins = 0;
    while (cc_queue_push(&p->free, block) != CC_OK) {
        if (++spins > 64)
            sched_yield();
    }
}

int cc_pool_owns(const cc_pool *p, const void *ptr) {
    uintptr_t a = (uintptr_t)ptr, base = (uintptr_t)p->slab;
    if (p->slab == NULL || a < base)
        return 0;
    uintptr_t off = a - base;
    return off < p->block_size * p->count && off % p->block_size == 0;
}

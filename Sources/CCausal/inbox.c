/* A causal inbox: pooled buffers, a lock-free queue into the loop thread and
 * the delivery engine behind it.
 *
 * Every buffer is one block of a cc_pool: the cc_inbox_msg header, then the
 * clock (width entries), then max_payload bytes. Blocks are 64-byte aligned,
 * so the low bit of a queued pointer is free to say "local send" rather than
 * "post from a peer".
 *
 * Producers touch the async handle only between an increment and a decrement
 * of `users`, after checking `closed`; the loop thread closes the handle only
 * after it has set `closed` and seen `users` at zero (both seq-cst, so either
 * the producer sees closed or the loop sees the producer). The same wait runs
 * again in the close callback before the memory goes, so a call that started
 * before the `closed` callback is always safe.
 *
 * Closing from another thread wakes the loop through the inbox's own async
 * handle instead of a cc_loop_call: that wake cannot fail for a full call
 * queue, and the loop thread notices `closed` on its next drain. */
#include "cc_inbox.h"

#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cc_error.h"
#include "cc_pool.h"
#include "cc_queue.h"
#include "loop_internal.h"

_Static_assert(offsetof(cc_inbox_msg, head) == 0, "a cc_msg from the engine is its cc_inbox_msg");
_Static_assert(CC_CACHE_LINE % 2 == 0, "blocks must leave the low pointer bit free for the send tag");

#define SEND_TAG ((uintptr_t)1)

/* Messages handed out per pop, and per wake-up before the loop thread yields
 * to its other handles (it re-arms the async handle and comes back). */
#define BATCH 64
#define BUDGET 4096

struct cc_inbox {
    /* The queue and the pool keep their producer and consumer indices on
     * separate cache lines themselves (see cc_queue). */
    cc_queue queue;
    cc_pool pool;

    /* Written by every producer on every post: alone on its line so that
     * it does not evict the read-mostly fields below from the producers'
     * caches, nor the loop's counters. */
    _Alignas(CC_CACHE_LINE) _Atomic unsigned users;

    /* 1 from an acquire that found no buffer until the loop calls `room`:
     * written only then, read by the loop once per wake-up. */
    _Alignas(CC_CACHE_LINE) _Atomic int want_room;

    /* Read on every call, written once (closed) or never after open. */
    _Alignas(CC_CACHE_LINE) _Atomic int closed;
    cc_loop *loop;
    cc_inbox_config config;
    cc_inbox_callbacks cb;
    size_t clock_offset; /* from the block start */
    size_t payload_offset;

    /* Written by the loop thread on every message; read only by
     * cc_inbox_stats_get. On a line of their own so that the loop's stores
     * do not invalidate the line producers read on every post. */
    _Alignas(CC_CACHE_LINE) struct {
        _Atomic uint64_t posted, delivered, sent, duplicates, held_back, rejected, overtakes, wakeups,
            pending;
    } stats;
    uint64_t refused; /* posts the inbox itself refused (a forged sequence of self) */
    cc_delivery engine;
    int closing; /* the async handle is closing: deliver nothing more */
    cc__loop_member member;

    /* libuv's pending flag in here is written by producers (uv_async_send)
     * and by the loop thread alike; keep it off the other lines. */
    _Alignas(CC_CACHE_LINE) uv_async_t async;
};

/* The loop thread is the only writer of the counters, so a relaxed load and
 * store make an increment; readers only need each value to be untorn. */
static inline void bump(_Atomic uint64_t *c, uint64_t n) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void set(_Atomic uint64_t *c, uint64_t v) {
    atomic_store_explicit(c, v, memory_order_relaxed);
}

static void sync_engine_stats(cc_inbox *in) {
    const cc_delivery_stats *s = &in->engine.stats;
    set(&in->stats.duplicates, s->duplicates);
    set(&in->stats.held_back, s->held_back);
    set(&in->stats.rejected, s->rejected + in->refused);
    set(&in->stats.overtakes, s->overtakes);
    set(&in->stats.pending, in->engine.pending);
}

static void wait_for_users(cc_inbox *in) {
    unsigned spins = 0;
    while (atomic_load(&in->users) != 0) {
        if (++spins > 64)
            sched_yield();
    }
}

/* ---- the loop thread ---------------------------------------------------- */

static void on_closed(uv_handle_t *h) {
    cc_inbox *in = h->data;
    wait_for_users(in);
    cc__loop_member_closed(in->loop, &in->member);
    if (in->cb.closed)
        in->cb.closed(in->cb.ctx);
    /* Queued buffers and the ones the engine still holds all live in the
     * pool's slab and nothing else refers to them: freeing the slab releases
     * every one of them. */
    cc_delivery_destroy(&in->engine);
    cc_queue_destroy(&in->queue);
    cc_pool_destroy(&in->pool);
    free(in);
}

static void begin_close(cc_inbox *in) {
    if (in->closing)
        return;
    in->closing = 1;
    atomic_store(&in->closed, 1);
    wait_for_users(in); /* nobody is inside uv_async_send on our handle any more */
    uv_close((uv_handle_t *)&in->async, on_closed);
}

static void on_loop_stop(cc__loop_member *m) {
    begin_close((cc_inbox *)((char *)m - offsetof(cc_inbox, member)));
}

static inline void give_back(cc_inbox *in, cc_inbox_msg *m) {
    cc_pool_put(&in->pool, m);
}

static void deliver(cc_inbox *in, cc_inbox_msg *m) {
    bump(&in->stats.delivered, 1);
    in->cb.deliver(in->cb.ctx, m);
    give_back(in, m);
}

/* Hands out everything the engine can deliver now, highest level first.
 * The counters are brought up to date before every callback (a callback
 * may read them), and once at the end when there was none. */
static void deliver_ready(cc_inbox *in) {
    cc_msg *h;
    int any = 0;
    while (!in->closing && (h = cc_delivery_next(&in->engine)) != NULL) {
        sync_engine_stats(in);
        deliver(in, (cc_inbox_msg *)h);
        any = 1;
    }
    if (!any)
        sync_engine_stats(in);
}

static void handle_send(cc_inbox *in, cc_inbox_msg *m) {
    m->head.clock = m->clock;
    m->head.width = in->config.width;
    m->head.sender = in->config.self;
    cc_delivery_send(&in->engine, in->config.self, m->clock);
    bump(&in->stats.sent, 1);
    if (in->cb.emit)
        in->cb.emit(in->cb.ctx, m);
    /* A node delivers its own broadcast at once: it is causally ready by
     * construction (it follows everything delivered here). */
    if (in->closing)
        give_back(in, m);
    else
        deliver(in, m);
    deliver_ready(in); /* heads that waited on our own slot */
}

static void handle_post(cc_inbox *in, cc_inbox_msg *m) {
    if (in->config.raw) {
        deliver(in, m);
        return;
    }
    int rc;
    uint32_t self = in->config.self;
    /* The engine trusts that messages of `self` beyond what it sent do not
     * exist; a peer claiming one is refused here. A looped-back copy of a
     * real send is an ordinary duplicate. */
    if (self != UINT32_MAX && m->head.sender == self && m->head.width > self && m->head.clock &&
        m->head.clock[self] > cc_delivery_clock(&in->engine)[self]) {
        in->refused++;
        rc = CC_ESENDER;
    } else {
        rc = cc_delivery_offer(&in->engine, &m->head);
        if (rc == CC_EFULL && !in->closing) {
            /* The batch's deliverable messages still occupy the engine:
             * hand them out and try once more before refusing. */
            deliver_ready(in);
            if (!in->closing)
                rc = cc_delivery_offer(&in->engine, &m->head);
        }
    }
    if (rc != CC_OK) {
        sync_engine_stats(in);
        if (in->cb.reject)
            in->cb.reject(in->cb.ctx, m, rc);
        give_back(in, m);
        return;
    }
    /* Delivery waits for the end of the batch (on_async): messages that
     * arrive together compete by emergency level once they are deliverable. */
}

/* Buffers went back to the pool in this wake-up, or another thread's
 * cc_inbox_release woke the loop for this: `room` for the acquirers that
 * found none. This fence and cc_inbox_acquire's (each between a store and a
 * load: the pool's, want_room) are Dekker's pattern: an acquire that found
 * the pool empty either sees a buffer put back before this fence, or is
 * seen here. One fence per wake-up. */
static void notify_room(cc_inbox *in) {
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&in->want_room, memory_order_relaxed) &&
        atomic_exchange_explicit(&in->want_room, 0, memory_order_relaxed) && in->cb.room)
        in->cb.room(in->cb.ctx);
}

static void on_async(uv_async_t *h) {
    cc_inbox *in = h->data;
    if (in->closing)
        return;
    bump(&in->stats.wakeups, 1);
    void *batch[BATCH];
    size_t done = 0;
    while (done < BUDGET) {
        /* Relaxed: a close from another thread also wakes us, and this
         * check only makes us stop sooner. */
        if (atomic_load_explicit(&in->closed, memory_order_relaxed))
            break;
        size_t n = cc_queue_pop_batch(&in->queue, batch, BATCH);
        if (n == 0)
            break;
        bump(&in->stats.posted, n);
        for (size_t i = 0; i < n; i++) {
            cc_inbox_msg *m = (cc_inbox_msg *)((uintptr_t)batch[i] & ~SEND_TAG);
            if (in->closing) /* a callback closed the inbox: deliver nothing more */
                give_back(in, m);
            else if ((uintptr_t)batch[i] & SEND_TAG)
                handle_send(in, m);
            else
                handle_post(in, m);
        }
        deliver_ready(in);
        if (in->closing)
            return;
        done += n;
    }
    if (!atomic_load(&in->closed)) {
        notify_room(in);
        if (in->closing)
            return; /* the callback closed the inbox */
    }
    if (atomic_load(&in->closed))
        begin_close(in);
    else if (done >= BUDGET)
        uv_async_send(&in->async); /* more may be queued: come back after the other handles */
}

/* ---- open ---------------------------------------------------------------- */

/* Held-back messages keep their buffers. If the engine could hold every
 * buffer, a pool full of messages waiting for a predecessor would leave no
 * buffer for that predecessor: keep a quarter of the pool out of its reach. */
static uint32_t default_pending(uint32_t capacity) {
    uint32_t pending = capacity - capacity / 4;
    return pending ? pending : 1;
}

static int setup(void *arg) {
    cc_inbox *in = arg;
    if (uv_async_init(cc_loop_uv(in->loop), &in->async, on_async) != 0)
        return CC_ESYS;
    in->async.data = in;
    in->member.close = on_loop_stop;
    cc__loop_join(in->loop, &in->member);
    return CC_OK;
}

static void destroy_unopened(cc_inbox *in) {
    cc_delivery_destroy(&in->engine);
    cc_queue_destroy(&in->queue);
    cc_pool_destroy(&in->pool);
    free(in);
}

int cc_inbox_open(cc_loop *loop, const cc_inbox_config *config, const cc_inbox_callbacks *callbacks,
                  cc_inbox **out) {
    if (out)
        *out = NULL;
    if (!loop || !config || !callbacks || !callbacks->deliver || !out)
        return CC_EINVAL;
    if (config->width == 0 || config->capacity == 0)
        return CC_EINVAL;
    if (config->self != UINT32_MAX && config->self >= config->width)
        return CC_EINVAL;

    cc_inbox *in = aligned_alloc(CC_CACHE_LINE, sizeof *in);
    if (!in)
        return CC_ENOMEM;
    memset(in, 0, sizeof *in);
    in->loop = loop;
    in->config = *config;
    in->cb = *callbacks;
    in->clock_offset = (sizeof(cc_inbox_msg) + 7) & ~(size_t)7;
    in->payload_offset = in->clock_offset + (size_t)config->width * sizeof(uint64_t);
    atomic_init(&in->users, 0);
    atomic_init(&in->closed, 0);
    atomic_init(&in->want_room, 0);

    int rc = cc_pool_init(&in->pool, in->payload_offset + config->max_payload, config->capacity);
    if (rc != CC_OK) {
        free(in);
        return rc;
    }
    /* At least as many cells as buffers: a post of a pooled buffer never
     * finds the queue full (see cc_queue_push). */
    rc = cc_queue_init(&in->queue, config->capacity);
    if (rc == CC_OK)
        rc = cc_delivery_init(&in->engine, config->width, config->window ? config->window : config->capacity,
                              config->pending ? config->pending : default_pending(config->capacity));
    if (rc != CC_OK) {
        destroy_unopened(in);
        return rc;
    }

    /* The async handle belongs to the loop thread: set it up there. */
    int result = CC_ESYS;
    rc = cc__loop_call_sync(loop, setup, in, &result);
    if (rc == CC_OK)
        rc = result;
    if (rc != CC_OK) {
        destroy_unopened(in);
        return rc;
    }
    *out = in;
    return CC_OK;
}

int cc_inbox_close(cc_inbox *in) {
    if (!in)
        return CC_EINVAL;
    if (cc_loop_on_thread(in->loop)) {
        if (in->closing || atomic_exchange(&in->closed, 1))
            return CC_ECLOSED;
        begin_close(in);
        return CC_OK;
    }
    atomic_fetch_add(&in->users, 1);
    int rc = atomic_exchange(&in->closed, 1) ? CC_ECLOSED : CC_OK;
    if (rc == CC_OK)
        uv_async_send(&in->async); /* the loop sees closed and closes the handle */
    atomic_fetch_sub_explicit(&in->users, 1, memory_order_release);
    return rc;
}

/* ---- any thread ---------------------------------------------------------- */

cc_inbox_msg *cc_inbox_acquire(cc_inbox *in) {
    if (atomic_load_explicit(&in->closed, memory_order_relaxed))
        return NULL;
    unsigned char *b = cc_pool_get(&in->pool);
    if (!b) {
        /* None free: ask the loop for `room`, then look again (see notify_room). */
        atomic_store_explicit(&in->want_room, 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_seq_cst);
        if (!(b = cc_pool_get(&in->pool)))
            return NULL;
    }
    cc_inbox_msg *m = (cc_inbox_msg *)b;
    m->clock = (uint64_t *)(b + in->clock_offset);
    m->payload = b + in->payload_offset;
    memset(m->clock, 0, (size_t)in->config.width * sizeof(uint64_t));
    m->head.clock = m->clock;
    m->head.width = in->config.width;
    m->head.sender = 0;
    m->head.level = CC_LEVEL_LOW;
    m->kind = 0;
    m->length = 0;
    m->user = NULL;
    return m;
}

void cc_inbox_release(cc_inbox *in, cc_inbox_msg *m) {
    if (!in || !m || !cc_pool_owns(&in->pool, m))
        return;
    cc_pool_put(&in->pool, m);
    /* Outside the loop's wake-ups: if an acquire waits for a buffer, wake
     * the loop to call `room` (the fence as in notify_room). */
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&in->want_room, memory_order_relaxed))
        return;
    atomic_fetch_add(&in->users, 1);
    if (!atomic_load(&in->closed))
        uv_async_send(&in->async);
    atomic_fetch_sub_explicit(&in->users, 1, memory_order_release);
}

static int enqueue(cc_inbox *in, cc_inbox_msg *m, uintptr_t tag) {
    /* Seq-cst increment, then the closed check: pairs with begin_close. */
    atomic_fetch_add(&in->users, 1);
    int rc = CC_ECLOSED;
    if (!atomic_load(&in->closed)) {
        rc = cc_queue_push(&in->queue, (void *)((uintptr_t)m | tag));
        /* libuv coalesces: a send while one is pending is one load. */
        if (rc == CC_OK)
            uv_async_send(&in->async);
    }
    if (rc != CC_OK)
        cc_pool_put(&in->pool, m);
    atomic_fetch_sub_explicit(&in->users, 1, memory_order_release);
    return rc;
}

int cc_inbox_post(cc_inbox *in, cc_inbox_msg *m) {
    if (!in || !m || !cc_pool_owns(&in->pool, m))
        return CC_EINVAL;
    return enqueue(in, m, 0);
}

int cc_inbox_send(cc_inbox *in, cc_inbox_msg *m) {
    if (!in || !m || !cc_pool_owns(&in->pool, m))
        return CC_EINVAL;
    if (in->config.self == UINT32_MAX) {
        cc_pool_put(&in->pool, m);
        return CC_EINVAL;
    }
    return enqueue(in, m, SEND_TAG);
}

void cc_inbox_stats_get(const cc_inbox *in, cc_inbox_stats *out) {
    out->posted = atomic_load_explicit(&in->stats.posted, memory_order_relaxed);
    out->delivered = atomic_load_explicit(&in->stats.delivered, memory_order_relaxed);
    out->sent = atomic_load_explicit(&in->stats.sent, memory_order_relaxed);
    out->duplicates = atomic_load_explicit(&in->stats.duplicates, memory_order_relaxed);
    out->held_back = atomic_load_explicit(&in->stats.held_back, memory_order_relaxed);
    out->rejected = atomic_load_explicit(&in->stats.rejected, memory_order_relaxed);
    out->overtakes = atomic_load_explicit(&in->stats.overtakes, memory_order_relaxed);
    out->wakeups = atomic_load_explicit(&in->stats.wakeups, memory_order_relaxed);
    out->pending = atomic_load_explicit(&in->stats.pending, memory_order_relaxed);
}

size_t cc_inbox_clock(const cc_inbox *in, uint64_t *out, size_t n) {
    size_t w = in->engine.width;
    memcpy(out, cc_delivery_clock(&in->engine), (n < w ? n : w) * sizeof *out);
    return w;
}

cc_loop *cc_inbox_loop(const cc_inbox *in) {
    return in->loop;
}

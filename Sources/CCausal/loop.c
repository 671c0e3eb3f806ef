/* A libuv loop on its own thread, reached from other threads through a
 * bounded queue of call records and one uv_async_t.
 *
 * Stopping: cc_loop_stop marks the loop stopping, waits until no thread is
 * inside cc_loop_call (so nobody can touch the async handle after it is
 * closed), and wakes the loop. The loop thread then runs every call still
 * queued, runs each member's close hook, closes its own async handle and lets
 * uv_run return once the last close callback has run. The stopping thread
 * joins it, checks uv_loop_close and frees everything. */
#include "loop_internal.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <uv.h>

#include "cc_error.h"
#include "cc_pool.h"
#include "cc_queue.h"

typedef struct call {
    cc_loop_fn fn;
    void *ctx;
} call;

struct cc_loop {
    /* Calls in flight: producers write the queue's tail and the pool. Both
     * structs keep their own hot indices on separate cache lines. */
    cc_queue calls;
    cc_pool records;
    /* Threads inside cc_loop_call: written by every caller, so it has a line
     * of its own rather than bouncing the read-mostly fields below. */
    _Alignas(CC_CACHE_LINE) _Atomic unsigned callers;
    /* Written once by cc_loop_stop and read by every cc_loop_call. */
    _Alignas(CC_CACHE_LINE) _Atomic int stopping;
    uv_thread_t tid; /* set by the loop thread before start returns */
    uv_thread_t thread;
    uv_sem_t started;
    /* Loop thread only. */
    _Alignas(CC_CACHE_LINE) uv_loop_t uv;
    uv_async_t async;
    cc__loop_member members; /* sentinel of a circular list */
    int closing;             /* member hooks have run; the async handle is closing */
};

/* A drain runs at most this many calls before yielding to the rest of the
 * loop (it re-arms the async handle), so a flood of calls cannot starve I/O. */
#define CC_LOOP_BUDGET 1024

static size_t drain(cc_loop *loop, size_t budget) {
    void *batch[64];
    size_t ran = 0;
    while (ran < budget) {
        size_t n = cc_queue_pop_batch(&loop->calls, batch, sizeof batch / sizeof batch[0]);
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            call *c = batch[i];
            cc_loop_fn fn = c->fn;
            void *ctx = c->ctx;
            cc_pool_put(&loop->records, c); /* free the record first: fn may call again */
            fn(ctx);
        }
        ran += n;
    }
    return ran;
}

static void on_async(uv_async_t *h) {
    cc_loop *loop = h->data;
    if (loop->closing)
        return;
    if (!atomic_load_explicit(&loop->stopping, memory_order_acquire)) {
        if (drain(loop, CC_LOOP_BUDGET) >= CC_LOOP_BUDGET)
            uv_async_send(&loop->async);
        return;
    }
    /* Stopping, and no thread is inside cc_loop_call any more, so the queue
     * only shrinks: calls accepted before the stop run now, in order. A call
     * made from one of them is refused with CC_ECLOSED. */
    while (drain(loop, SIZE_MAX) > 0) {
    }
    loop->closing = 1;
    cc__loop_member *m = loop->members.next;
    while (m != &loop->members) {
        cc__loop_member *next = m->next; /* the hook may unlink m at once */
        m->close(m);
        m = next;
    }
    uv_close((uv_handle_t *)&loop->async, NULL); /* embedded: freed with the loop after the join */
}

static void run(void *arg) {
    cc_loop *loop = arg;
    loop->tid = uv_thread_self();
    uv_sem_post(&loop->started);
    uv_run(&loop->uv, UV_RUN_DEFAULT); /* returns once every handle is closed */
}

int cc_loop_start(size_t call_capacity, cc_loop **out) {
    if (out == NULL)
        return CC_EINVAL;
    *out = NULL;
    if (call_capacity == 0)
        call_capacity = 1024;
    cc_loop *loop = aligned_alloc(CC_CACHE_LINE, sizeof *loop);
    if (loop == NULL)
        return CC_ENOMEM;
    int rc = cc_queue_init(&loop->calls, call_capacity);
    if (rc != CC_OK)
        goto fail_queue;
    rc = cc_pool_init(&loop->records, sizeof(call), call_capacity);
    if (rc != CC_OK)
        goto fail_pool;
    atomic_init(&loop->callers, 0);
    atomic_init(&loop->stopping, 0);
    loop->members.next = loop->members.prev = &loop->members;
    loop->members.close = NULL;
    loop->closing = 0;
    rc = CC_ESYS;
    if (uv_loop_init(&loop->uv) != 0)
        goto fail_uv;
    if (uv_async_init(&loop->uv, &loop->async, on_async) != 0)
        goto fail_async;
    loop->async.data = loop;
    if (uv_sem_init(&loop->started, 0) != 0)
        goto fail_sem;
    /* The loop was set up on this thread; creating the thread orders that
     * before the loop thread's first use of it. */
    if (uv_thread_create(&loop->thread, run, loop) != 0)
        goto fail_thread;
    uv_sem_wait(&loop->started);
    uv_sem_destroy(&loop->started);
    *out = loop;
    return CC_OK;

fail_thread:
    uv_sem_destroy(&loop->started);
fail_sem:
    uv_close((uv_handle_t *)&loop->async, NULL);
    uv_run(&loop->uv, UV_RUN_NOWAIT); /* runs the close callback */
fail_async:
    uv_loop_close(&loop->uv);
fail_uv:
    cc_pool_destroy(&loop->records);
fail_pool:
    cc_queue_destroy(&loop->calls);
fail_queue:
    free(loop);
    return rc;
}

int cc_loop_stop(cc_loop *loop) {
    if (loop == NULL || cc_loop_on_thread(loop))
        return CC_EINVAL;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&loop->stopping, &expected, 1))
        return CC_ECLOSED;
    /* Seq-cst pairs with cc_loop_call: either a caller sees stopping, or we
     * see its callers increment and wait for it to finish its async send. */
    unsigned spins = 0;
    while (atomic_load(&loop->callers) != 0) {
        if (++spins > 64)
            sched_yield();
    }
    uv_async_send(&loop->async);
    uv_thread_join(&loop->thread);
    int rc = uv_loop_close(&loop->uv) == 0 ? CC_OK : CC_ESYS;
    if (rc != CC_OK)
        return rc; /* a handle is still open: leak rather than free live memory */
    cc_pool_destroy(&loop->records);
    cc_queue_destroy(&loop->calls);
    free(loop);
    return CC_OK;
}

int cc_loop_call(cc_loop *loop, cc_loop_fn fn, void *ctx) {
    if (loop == NULL || fn == NULL)
        return CC_EINVAL;
    atomic_fetch_add(&loop->callers, 1);
    int rc = CC_ECLOSED;
    if (atomic_load(&loop->stopping))
        goto out;
    rc = CC_EFULL;
    call *c = cc_pool_get(&loop->records);
    if (c == NULL)
        goto out;
    c->fn = fn;
    c->ctx = ctx;
    /* The queue has a cell for every record, so a push of a record cannot
     * find it full (see cc_queue_push); stay safe if it ever did. */
    if (cc_queue_push(&loop->calls, c) != CC_OK) {
        cc_pool_put(&loop->records, c);
        goto out;
    }
    uv_async_send(&loop->async);
    rc = CC_OK;
out:
    atomic_fetch_sub_explicit(&loop->callers, 1, memory_order_release);
    return rc;
}

bool cc_loop_on_thread(const cc_loop *loop) {
    uv_thread_t self = uv_thread_self();
    return uv_thread_equal(&self, &loop->tid) != 0;
}

void *cc_loop_uv(cc_loop *loop) {
    return &loop->uv;
}

void cc__loop_join(cc_loop *loop, cc__loop_member *m) {
    m->next = &loop->members;
    m->prev = loop->members.prev;
    m->prev->next = m;
    loop->members.prev = m;
    if (loop->closing)
        m->close(m); /* joined while the loop closes: close it too */
}

void cc__loop_member_closed(cc_loop *loop, cc__loop_member *m) {
    (void)loop;
    m->prev->next = m->next;
    m->next->prev = m->prev;
    m->next = m->prev = m;
}

typedef struct sync_call {
    int (*fn)(void *ctx);
    void *ctx;
    int result;
    uv_sem_t done;
} sync_call;

static void run_sync_call(void *arg) {
    sync_call *s = arg;
    s->result = s->fn(s->ctx);
    uv_sem_post(&s->done);
}

int cc__loop_call_sync(cc_loop *loop, int (*fn)(void *ctx), void *ctx, int *result) {
    if (cc_loop_on_thread(loop)) {
        *result = fn(ctx);
        return CC_OK;
    }
    sync_call s = {.fn = fn, .ctx = ctx};
    if (uv_sem_init(&s.done, 0) != 0)
        return CC_ESYS;
    int rc = cc_loop_call(loop, run_sync_call, &s);
    if (rc == CC_OK) {
        uv_sem_wait(&s.done); /* an accepted call always runs */
        *result = s.result;
    }
    uv_sem_destroy(&s.done);
    return rc;
}

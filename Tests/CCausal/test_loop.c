/* cc_loop: calls reach the loop thread exactly once and in order, and stop
 * drains and refuses.
 *
 * Every wait is on a semaphore posted from a callback (or on a condition
 * the callbacks make observable) and gives up after a deadline, so a bug
 * fails the test instead of hanging it. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "cc_error.h"
#include "cc_loop.h"
#include "cc_test.h"
#include "loop_support.h"

TEST_IMPL(loop, start_stop) {
    sem_t ran;
    sem_init(&ran, 0, 0);
    for (int i = 0; i < 50; i++) {
        cc_loop *loop = NULL;
        REQUIRE(cc_loop_start(i % 2 ? 0 : 4, &loop) == CC_OK);
        REQUIRE(loop != NULL);
        CHECK(!cc_loop_on_thread(loop));
        CHECK(cc_loop_uv(loop) != NULL);
        if (i % 3 == 0) { /* sometimes with a call, sometimes idle */
            CHECK_EQ(cc_loop_call(loop, post_sem, &ran), CC_OK);
            CHECK(wait_sem(&ran));
        }
        CHECK_EQ(cc_loop_stop(loop), CC_OK);
    }
    sem_destroy(&ran);
}

enum { CALL_THREADS = 4, CALLS_PER_THREAD = 20000 };

static struct {
    cc_loop *loop;
    uint64_t next[CALL_THREADS]; /* loop thread only */
    uint64_t off_thread, out_of_order;
} calls;

static void count_call(void *ctx) {
    uint64_t v = (uint64_t)(uintptr_t)ctx - 1, t = v >> 32, i = v & 0xffffffffu;
    if (!cc_loop_on_thread(calls.loop))
        calls.off_thread++;
    if (t >= CALL_THREADS || i != calls.next[t]) {
        calls.out_of_order++;
        return;
    }
    calls.next[t]++;
}

static void *caller(void *arg) {
    uint64_t t = (uint64_t)(uintptr_t)arg;
    double deadline = now_s() + WAIT_S;
    for (uint64_t i = 0; i < CALLS_PER_THREAD; i++) {
        void *ctx = (void *)(uintptr_t)(((t << 32) | i) + 1);
        int rc;
        while ((rc = cc_loop_call(calls.loop, count_call, ctx)) == CC_EFULL) {
            if (now_s() > deadline)
                return (void *)1;
            sched_yield();
        }
        if (rc != CC_OK)
            return (void *)1;
    }
    return NULL;
}

TEST_IMPL(loop, calls_from_threads) {
    memset(&calls, 0, sizeof calls);
    /* A small call queue so that callers often meet CC_EFULL and retry. */
    REQUIRE(cc_loop_start(64, &calls.loop) == CC_OK);
    CHECK_EQ(cc_loop_call(calls.loop, NULL, NULL), CC_EINVAL);
    pthread_t t[CALL_THREADS];
    for (uintptr_t i = 0; i < CALL_THREADS; i++)
        REQUIRE(pthread_create(&t[i], NULL, caller, (void *)i) == 0);
    for (int i = 0; i < CALL_THREADS; i++) {
        void *failed;
        pthread_join(t[i], &failed);
        CHECK(failed == NULL);
    }
    /* Calls run in order, so this one runs after all of the above; the
     * queue may still be full of them, so retry while it is. */
    sem_t done;
    sem_init(&done, 0, 0);
    int rc;
    double deadline = now_s() + WAIT_S;
    while ((rc = cc_loop_call(calls.loop, post_sem, &done)) == CC_EFULL && now_s() < deadline)
        sched_yield();
    CHECK_EQ(rc, CC_OK);
    CHECK(wait_sem(&done));
    CHECK_EQ(calls.off_thread, 0);
    CHECK_EQ(calls.out_of_order, 0);
    for (int i = 0; i < CALL_THREADS; i++)
        CHECK_EQ(calls.next[i], CALLS_PER_THREAD);
    CHECK_EQ(cc_loop_stop(calls.loop), CC_OK);
    sem_destroy(&done);
}

static _Atomic int queued_ran, refused_ran;

static void count_queued(void *ctx) {
    atomic_fetch_add(&queued_ran, 1);
}

static void count_refused(void *ctx) {
    atomic_fetch_add(&refused_ran, 1);
}

typedef struct stopper {
    cc_loop *loop;
    int rc;
} stopper;

static void *stop_thread(void *arg) {
    stopper *s = arg;
    s->rc = cc_loop_stop(s->loop);
    return NULL;
}

/* Calls accepted before cc_loop_stop began run before the loop closes;
 * calls made after it began are refused and never run. */
TEST_IMPL(loop, stop_drains_and_refuses) {
    atomic_store(&queued_ran, 0);
    atomic_store(&refused_ran, 0);
    stopper s = {.rc = 1};
    REQUIRE(cc_loop_start(1024, &s.loop) == CC_OK);
    blocker b;
    sem_init(&b.entered, 0, 0);
    sem_init(&b.unblock, 0, 0);
    REQUIRE(cc_loop_call(s.loop, block_loop, &b) == CC_OK);
    CHECK(wait_sem(&b.entered));
    int accepted = 0;
    for (int i = 0; i < 100; i++)
        accepted += cc_loop_call(s.loop, count_queued, NULL) == CC_OK;
    CHECK_EQ(accepted, 100);

    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, stop_thread, &s) == 0);
    /* Keep calling until the stop is visible: the loop is blocked, so the
     * stop cannot complete meanwhile, and every accepted call must run. */
    double deadline = now_s() + WAIT_S;
    int rc;
    while ((rc = cc_loop_call(s.loop, count_queued, NULL)) != CC_ECLOSED && now_s() < deadline) {
        if (rc == CC_OK)
            accepted++;
        sched_yield();
    }
    CHECK_EQ(rc, CC_ECLOSED);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(cc_loop_call(s.loop, count_refused, NULL), CC_ECLOSED);
    sem_post(&b.unblock);
    pthread_join(t, NULL);
    CHECK_EQ(s.rc, CC_OK);
    CHECK_EQ(atomic_load(&queued_ran), accepted);
    CHECK_EQ(atomic_load(&refused_ran), 0);
    sem_destroy(&b.entered);
    sem_destroy(&b.unblock);
}

typedef struct self_stop {
    cc_loop *loop;
    int rc;
    sem_t done;
} self_stop;

static void stop_from_loop(void *ctx) {
    self_stop *s = ctx;
    s->rc = cc_loop_stop(s->loop);
    sem_post(&s->done);
}

TEST_IMPL(loop, stop_from_loop_thread) {
    self_stop s = {.rc = 1};
    sem_init(&s.done, 0, 0);
    REQUIRE(cc_loop_start(0, &s.loop) == CC_OK);
    CHECK_EQ(cc_loop_call(s.loop, stop_from_loop, &s), CC_OK);
    CHECK(wait_sem(&s.done));
    CHECK_EQ(s.rc, CC_EINVAL);
    CHECK_EQ(cc_loop_stop(s.loop), CC_OK);
    sem_destroy(&s.done);
}

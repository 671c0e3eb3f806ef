/* cc_inbox: closing while messages are in flight, while producers race
 * the close, and by the loop's stop. */
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "cc_error.h"
#include "cc_inbox.h"
#include "cc_test.h"
#include "loop_support.h"

/* Close while messages are queued and the loop is busy: nothing more is
 * delivered, later posts fail with CC_ECLOSED and give their buffer back,
 * and every buffer goes with the inbox (valgrind checks the last part). */
static void inbox_close_in_flight(cc_loop *loop) {
    recorder r;
    recorder_init(&r, loop, 0);
    cc_inbox_config cfg = {.width = 4, .self = 3, .capacity = 32, .max_payload = 8};
    cc_inbox_callbacks cb = recorder_callbacks(&r);
    cc_inbox *in;
    REQUIRE(cc_inbox_open(loop, &cfg, &cb, &in) == CC_OK);
    blocker b;
    sem_init(&b.entered, 0, 0);
    sem_init(&b.unblock, 0, 0);
    REQUIRE(cc_loop_call(loop, block_loop, &b) == CC_OK);
    CHECK(wait_sem(&b.entered));
    for (uint64_t i = 1; i <= 10; i++) {
        uint64_t ready[4] = {i, 0, 0, 0}, held[4] = {0, i + 1, 0, 0};
        CHECK_EQ(cc_inbox_post(in, new_msg(in, 0, CC_LEVEL_LOW, ready, 4, i)), CC_OK);
        CHECK_EQ(cc_inbox_post(in, new_msg(in, 1, CC_LEVEL_LOW, held, 4, i)), CC_OK);
    }
    CHECK_EQ(cc_inbox_send(in, new_msg(in, 3, CC_LEVEL_LOW, NULL, 0, 99)), CC_OK);
    cc_inbox_msg *late = new_msg(in, 0, CC_LEVEL_LOW, NULL, 0, 1);
    cc_inbox_msg *late_send = new_msg(in, 3, CC_LEVEL_LOW, NULL, 0, 2);
    REQUIRE(late && late_send);
    CHECK_EQ(cc_inbox_close(in), CC_OK);
    CHECK_EQ(cc_inbox_close(in), CC_ECLOSED);
    CHECK_EQ(cc_inbox_post(in, late), CC_ECLOSED);
    CHECK_EQ(cc_inbox_send(in, late_send), CC_ECLOSED);
    CHECK(cc_inbox_acquire(in) == NULL);
    CHECK(!atomic_load(&r.closed_called)); /* the loop is still blocked */
    sem_post(&b.unblock);
    CHECK(wait_sem(&r.closed));
    CHECK_EQ(r.n, 0); /* nothing delivered, emitted or rejected after close */
    sem_destroy(&b.entered);
    sem_destroy(&b.unblock);
    recorder_destroy(&r);
}

TEST_IMPL(inbox, close_in_flight) {
    with_loop(inbox_close_in_flight);
}

/* Producers post while another thread closes: every post returns CC_OK or
 * CC_ECLOSED, and once closed stays closed. The `closed` callback joins the
 * producers, as an owner must before the inbox is freed. */
enum { RACE_PRODUCERS = 3 };

static struct {
    cc_inbox *in;
    _Atomic int stop;
    _Atomic uint64_t delivered;
    pthread_t t[RACE_PRODUCERS];
    uint64_t errors[RACE_PRODUCERS];
    sem_t enough, closed;
    int joined_ok;
} race;

static void race_deliver(void *ctx, const cc_inbox_msg *m) {
    if (atomic_fetch_add_explicit(&race.delivered, 1, memory_order_relaxed) == 5000)
        sem_post(&race.enough);
}

static void race_closed(void *ctx) {
    race.joined_ok = 1;
    for (int i = 0; i < RACE_PRODUCERS; i++)
        if (pthread_join(race.t[i], NULL) != 0)
            race.joined_ok = 0;
    sem_post(&race.closed);
}

static void *race_producer(void *arg) {
    uint32_t s = (uint32_t)(uintptr_t)arg;
    uint64_t seq = 0;
    int closed = 0;
    while (!atomic_load(&race.stop)) {
        cc_inbox_msg *m = cc_inbox_acquire(race.in);
        if (!m) {
            sched_yield();
            continue;
        }
        m->head.sender = s;
        m->clock[s] = seq + 1;
        int rc = cc_inbox_post(race.in, m);
        if (rc == CC_OK) {
            if (closed)
                race.errors[s]++; /* accepted after a refusal */
            seq++;
        } else if (rc == CC_ECLOSED) {
            closed = 1;
        } else {
            race.errors[s]++;
        }
    }
    return NULL;
}

static void inbox_close_race(cc_loop *loop) {
    memset(race.errors, 0, sizeof race.errors);
    atomic_store(&race.stop, 0);
    atomic_store(&race.delivered, 0);
    race.joined_ok = 0;
    sem_init(&race.enough, 0, 0);
    sem_init(&race.closed, 0, 0);
    cc_inbox_config cfg = {.width = RACE_PRODUCERS, .self = UINT32_MAX, .capacity = 128};
    cc_inbox_callbacks cb = {.deliver = race_deliver, .closed = race_closed};
    REQUIRE(cc_inbox_open(loop, &cfg, &cb, &race.in) == CC_OK);
    for (uintptr_t i = 0; i < RACE_PRODUCERS; i++)
        REQUIRE(pthread_create(&race.t[i], NULL, race_producer, (void *)i) == 0);
    CHECK(wait_sem(&race.enough));
    CHECK_EQ(cc_inbox_close(race.in), CC_OK);
    atomic_store(&race.stop, 1);
    CHECK(wait_sem(&race.closed));
    CHECK(race.joined_ok);
    for (int i = 0; i < RACE_PRODUCERS; i++)
        CHECK_EQ(race.errors[i], 0);
    sem_destroy(&race.enough);
    sem_destroy(&race.closed);
}

TEST_IMPL(inbox, close_race) {
    with_loop(inbox_close_race);
}

/* Inboxes left open (one with messages the engine holds, one with a close
 * still pending) are closed by cc_loop_stop through their member hooks. */
TEST_IMPL(inbox, closed_by_stop) {
    cc_loop *loop;
    REQUIRE(cc_loop_start(0, &loop) == CC_OK);
    recorder r;
    recorder_init(&r, loop, 3);
    cc_inbox_config cfg = {.width = 4, .self = UINT32_MAX, .capacity = 16, .max_payload = 8};
    cc_inbox_callbacks cb = recorder_callbacks(&r);
    cc_inbox *in;
    REQUIRE(cc_inbox_open(loop, &cfg, &cb, &in) == CC_OK);
    for (uint64_t i = 1; i <= 3; i++) {
        uint64_t ready[4] = {i, 0, 0, 0}, held[4] = {0, 0, i + 1, 0};
        CHECK_EQ(cc_inbox_post(in, new_msg(in, 0, CC_LEVEL_LOW, ready, 4, i)), CC_OK);
        CHECK_EQ(cc_inbox_post(in, new_msg(in, 2, CC_LEVEL_LOW, held, 4, i)), CC_OK);
    }
    CHECK(wait_sem(&r.done)); /* the three ready ones */
    /* The held ones need no callback; wait (bounded) until the engine has them. */
    cc_inbox_stats st;
    double deadline = now_s() + WAIT_S;
    for (;;) {
        cc_inbox_stats_get(in, &st);
        if (st.pending == 3 || now_s() > deadline)
            break;
        sched_yield();
    }
    CHECK_EQ(st.pending, 3);
    cc_inbox_msg *unposted = cc_inbox_acquire(in); /* a buffer still out: goes with the slab */
    CHECK(unposted != NULL);
    CHECK(!atomic_load(&r.closed_called));
    CHECK_EQ(cc_loop_stop(loop), CC_OK);
    CHECK(atomic_load(&r.closed_called));
    CHECK_EQ(r.delivered, 3);
    recorder_destroy(&r);
}

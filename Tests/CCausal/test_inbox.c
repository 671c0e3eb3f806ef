/* cc_inbox: local sends, emergency levels, raw mode, buffers and `room`.
 * Every wait is bounded (loop_support.h). */
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "cc_error.h"
#include "cc_inbox.h"
#include "cc_test.h"
#include "loop_support.h"

static void check_clock(const uint64_t *got, uint64_t a, uint64_t b, uint64_t c) {
    CHECK_EQ(got[0], a);
    CHECK_EQ(got[1], b);
    CHECK_EQ(got[2], c);
}

typedef struct clock_probe {
    cc_inbox *in;
    uint64_t clock[4];
    size_t width;
    sem_t done;
} clock_probe;

static void probe_clock(void *ctx) {
    clock_probe *p = ctx;
    p->width = cc_inbox_clock(p->in, p->clock, 4);
    sem_post(&p->done);
}

static void inbox_local_sends(cc_loop *loop) {
    recorder r;
    recorder_init(&r, loop, 5);
    cc_inbox_config cfg = {.width = 3, .self = 0, .capacity = 16, .max_payload = 8};
    cc_inbox_callbacks cb = recorder_callbacks(&r);
    cc_inbox *in;
    REQUIRE(cc_inbox_open(loop, &cfg, &cb, &in) == CC_OK);
    CHECK(cc_inbox_loop(in) == loop);

    /* A peer's message that depends on our first send: held until we send. */
    uint64_t peer[3] = {1, 1, 0};
    CHECK_EQ(cc_inbox_post(in, new_msg(in, 1, CC_LEVEL_LOW, peer, 3, 100)), CC_OK);
    cc_inbox_msg *a = new_msg(in, 0, CC_LEVEL_LOW, NULL, 0, 1);
    a->head.sender = 2; /* overwritten by the stamp */
    CHECK_EQ(cc_inbox_send(in, a), CC_OK);
    CHECK_EQ(cc_inbox_send(in, new_msg(in, 0, CC_LEVEL_HIGH, NULL, 0, 2)), CC_OK);
    /* A looped-back copy of our first send is a duplicate; a "send of ours"
     * we never made is refused. */
    uint64_t echo[3] = {1, 0, 0}, forged[3] = {5, 0, 0};
    CHECK_EQ(cc_inbox_post(in, new_msg(in, 0, CC_LEVEL_LOW, echo, 3, 200)), CC_OK);
    CHECK_EQ(cc_inbox_post(in, new_msg(in, 0, CC_LEVEL_LOW, forged, 3, 300)), CC_OK);
    REQUIRE(wait_sem(&r.done));

    CHECK_EQ(r.off_thread, 0);
    REQUIRE(r.n == 7);
    /* emit(own 1), deliver(own 1), deliver(peer), emit(own 2), deliver(own 2), reject, reject */
    CHECK(r.log[0].what == 'e' && r.log[0].seq == 1 && r.log[0].sender == 0);
    check_clock(r.log[0].clock, 1, 0, 0);
    CHECK(r.log[1].what == 'd' && r.log[1].seq == 1 && r.log[1].sender == 0);
    check_clock(r.log[1].clock, 1, 0, 0);
    CHECK(r.log[2].what == 'd' && r.log[2].seq == 100 && r.log[2].sender == 1);
    CHECK(r.log[3].what == 'e' && r.log[3].seq == 2 && r.log[3].level == CC_LEVEL_HIGH);
    check_clock(r.log[3].clock, 2, 1, 0); /* our second send follows the peer's message */
    CHECK(r.log[4].what == 'd' && r.log[4].seq == 2);
    CHECK(r.log[5].what == 'r' && r.log[5].seq == 200 && r.log[5].code == CC_EDUPLICATE);
    CHECK(r.log[6].what == 'r' && r.log[6].seq == 300 && r.log[6].code == CC_ESENDER);

    clock_probe p = {.in = in};
    sem_init(&p.done, 0, 0);
    CHECK_EQ(cc_loop_call(loop, probe_clock, &p), CC_OK);
    CHECK(wait_sem(&p.done));
    CHECK_EQ(p.width, 3);
    check_clock(p.clock, 2, 1, 0);
    sem_destroy(&p.done);

    cc_inbox_stats st;
    cc_inbox_stats_get(in, &st);
    CHECK_EQ(st.sent, 2);
    CHECK_EQ(st.delivered, 3);
    CHECK_EQ(st.posted, 5);
    CHECK_EQ(st.duplicates, 1);
    CHECK_EQ(st.rejected, 1);
    CHECK_EQ(st.held_back, 1);
    CHECK_EQ(cc_inbox_close(in), CC_OK);
    CHECK(wait_sem(&r.closed));
    recorder_destroy(&r);
}

TEST_IMPL(inbox, local_sends) {
    with_loop(inbox_local_sends);
}

static void inbox_levels(cc_loop *loop) {
    recorder r;
    recorder_init(&r, loop, 6);
    cc_inbox_config cfg = {.width = 6, .self = UINT32_MAX, .capacity = 16, .max_payload = 8};
    cc_inbox_callbacks cb = recorder_callbacks(&r);
    cc_inbox *in;
    REQUIRE(cc_inbox_open(loop, &cfg, &cb, &in) == CC_OK);
    /* Five messages from five senders, each depending on sender 0's first
     * message only: posted first, they wait; once it arrives they become
     * deliverable at the same moment and must come out by level, FIFO
     * within a level. The root itself is LOW and goes first: an emergency
     * never overtakes its own cause. */
    static const uint8_t levels[6] = {
        0, CC_LEVEL_LOW, CC_LEVEL_CRITICAL, CC_LEVEL_HIGH, CC_LEVEL_MEDIUM, CC_LEVEL_CRITICAL};
    for (uint32_t s = 1; s <= 5; s++) {
        uint64_t c[6] = {1, 0, 0, 0, 0, 0};
        c[s] = 1;
        CHECK_EQ(cc_inbox_post(in, new_msg(in, s, levels[s], c, 6, s)), CC_OK);
    }
    uint64_t root[6] = {1, 0, 0, 0, 0, 0};
    CHECK_EQ(cc_inbox_post(in, new_msg(in, 0, CC_LEVEL_LOW, root, 6, 0)), CC_OK);
    REQUIRE(wait_sem(&r.done));
    REQUIRE(r.n == 6);
    static const uint64_t expect[6] = {0, 2, 5, 3, 4, 1};
    for (int i = 0; i < 6; i++) {
        CHECK(r.log[i].what == 'd');
        CHECK_EQ(r.log[i].seq, expect[i]);
    }
    cc_inbox_stats st;
    cc_inbox_stats_get(in, &st);
    CHECK_EQ(st.held_back, 5);
    CHECK_EQ(st.overtakes, 4); /* CRITICAL x2, HIGH and MEDIUM each went ahead of a lower ready one */
    CHECK_EQ(cc_inbox_close(in), CC_OK);
    CHECK(wait_sem(&r.closed));
    recorder_destroy(&r);
}

TEST_IMPL(inbox, levels) {
    with_loop(inbox_levels);
}

enum { RAW_COUNT = 2000 };

static struct {
    uint64_t next, bad;
    sem_t done;
} raw;

static void raw_deliver(void *ctx, const cc_inbox_msg *m) {
    uint64_t seq;
    memcpy(&seq, m->payload, sizeof seq);
    if (seq != raw.next)
        raw.bad++;
    raw.next = seq + 1;
    if (raw.next == RAW_COUNT)
        sem_post(&raw.done);
}

static void inbox_raw(cc_loop *loop) {
    raw.next = raw.bad = 0;
    sem_init(&raw.done, 0, 0);
    cc_inbox_config cfg = {.width = 4, .self = UINT32_MAX, .capacity = 32, .max_payload = 8, .raw = 1};
    cc_inbox_callbacks cb = {.deliver = raw_deliver};
    cc_inbox *in;
    REQUIRE(cc_inbox_open(loop, &cfg, &cb, &in) == CC_OK);
    /* Clocks that a causal inbox would hold back, reject or drop as
     * duplicates: raw mode hands every one over in arrival order. */
    uint64_t rng = 7;
    double deadline = now_s() + WAIT_S;
    for (uint64_t i = 0; i < RAW_COUNT; i++) {
        uint64_t c[4] = {cc_test_rand(&rng) % 5, cc_test_rand(&rng) % 5, 0, 1000};
        cc_inbox_msg *m;
        while ((m = new_msg(in, (uint32_t)(i % 4), CC_LEVEL_LOW + i % 4, c, 4, i)) == NULL &&
               now_s() < deadline)
            sched_yield(); /* all 32 buffers in flight: wait for the loop */
        REQUIRE(m != NULL);
        CHECK_EQ(cc_inbox_post(in, m), CC_OK);
    }
    /* A raw inbox without a self slot cannot send; the buffer is released. */
    cc_inbox_msg *m;
    while ((m = cc_inbox_acquire(in)) == NULL && now_s() < deadline)
        sched_yield();
    REQUIRE(m != NULL);
    CHECK_EQ(cc_inbox_send(in, m), CC_EINVAL);
    CHECK(wait_sem(&raw.done));
    CHECK_EQ(raw.bad, 0);
    cc_inbox_stats st;
    cc_inbox_stats_get(in, &st);
    CHECK_EQ(st.delivered, RAW_COUNT);
    CHECK_EQ(st.posted, RAW_COUNT);
    CHECK_EQ(st.duplicates, 0);
    CHECK_EQ(st.held_back, 0);
    /* Without a `closed` callback nobody is told; the inbox frees itself on
     * the loop thread, so it must not be touched after this. */
    CHECK_EQ(cc_inbox_close(in), CC_OK);
    sem_destroy(&raw.done);
}

TEST_IMPL(inbox, raw) {
    with_loop(inbox_raw);
}

static void inbox_buffers(cc_loop *loop) {
    recorder r;
    recorder_init(&r, loop, 0);
    cc_inbox_config cfg = {.width = 5, .self = UINT32_MAX, .capacity = 4, .max_payload = 100};
    cc_inbox_callbacks cb = recorder_callbacks(&r);
    cc_inbox *in;
    cc_inbox_config bad = cfg;
    bad.width = 0;
    CHECK_EQ(cc_inbox_open(loop, &bad, &cb, &in), CC_EINVAL);
    bad = cfg;
    bad.self = 5;
    CHECK_EQ(cc_inbox_open(loop, &bad, &cb, &in), CC_EINVAL);
    cc_inbox_callbacks no_deliver = cb;
    no_deliver.deliver = NULL;
    CHECK_EQ(cc_inbox_open(loop, &cfg, &no_deliver, &in), CC_EINVAL);
    REQUIRE(cc_inbox_open(loop, &cfg, &cb, &in) == CC_OK);

    cc_inbox_msg *m[4];
    for (int i = 0; i < 4; i++) {
        m[i] = cc_inbox_acquire(in);
        REQUIRE(m[i] != NULL);
        for (int j = 0; j < i; j++)
            CHECK(m[i] != m[j]);
        CHECK_EQ(m[i]->head.width, 5);
        CHECK_EQ(m[i]->head.level, CC_LEVEL_LOW);
        CHECK(m[i]->head.clock == m[i]->clock);
        CHECK_EQ(m[i]->length, 0);
        CHECK_EQ(m[i]->kind, 0);
        /* Clock and payload lie inside the buffer, one after the other. */
        CHECK((uint8_t *)m[i]->clock >= (uint8_t *)(m[i] + 1));
        CHECK(m[i]->payload == (uint8_t *)(m[i]->clock + 5));
        memset(m[i]->payload, 0xee, 100);
    }
    CHECK(cc_inbox_acquire(in) == NULL);
    /* Dirty a buffer, give it back: it comes back clean. */
    m[2]->kind = 7;
    m[2]->length = 3;
    m[2]->head.level = CC_LEVEL_HIGH;
    m[2]->head.width = 2;
    for (int k = 0; k < 5; k++)
        m[2]->clock[k] = 9;
    cc_inbox_release(in, m[2]);
    cc_inbox_msg *again = cc_inbox_acquire(in);
    CHECK(again == m[2]);
    CHECK(cc_inbox_acquire(in) == NULL);
    CHECK_EQ(again->kind, 0);
    CHECK_EQ(again->length, 0);
    CHECK_EQ(again->head.level, CC_LEVEL_LOW);
    CHECK_EQ(again->head.width, 5);
    for (int k = 0; k < 5; k++)
        CHECK_EQ(again->clock[k], 0);
    /* Buffers that are not the inbox's are refused and left alone. */
    cc_inbox_msg foreign;
    CHECK_EQ(cc_inbox_post(in, &foreign), CC_EINVAL);
    CHECK_EQ(cc_inbox_post(in, NULL), CC_EINVAL);
    cc_inbox_release(in, &foreign);
    CHECK(cc_inbox_acquire(in) == NULL);
    for (int i = 0; i < 4; i++)
        cc_inbox_release(in, m[i]);
    for (int i = 0; i < 4; i++)
        CHECK((m[i] = cc_inbox_acquire(in)) != NULL);
    for (int i = 0; i < 4; i++)
        cc_inbox_release(in, m[i]);
    CHECK_EQ(cc_inbox_close(in), CC_OK);
    CHECK(wait_sem(&r.closed));
    recorder_destroy(&r);
}

TEST_IMPL(inbox, buffers) {
    with_loop(inbox_buffers);
}

/* `room`: buffers came back after an acquire found none. */
typedef struct room_probe {
    recorder r;
    atomic_int rooms;
    sem_t room;
} room_probe;

static void on_room(void *ctx) {
    room_probe *p = ctx;
    atomic_fetch_add(&p->rooms, 1);
    sem_post(&p->room);
}

static void inbox_room(cc_loop *loop) {
    room_probe p;
    recorder_init(&p.r, loop, 4);
    atomic_init(&p.rooms, 0);
    sem_init(&p.room, 0, 0);
    cc_inbox_config cfg = {.width = 1, .self = UINT32_MAX, .capacity = 4, .max_payload = 8};
    cc_inbox_callbacks cb = recorder_callbacks(&p.r);
    cb.ctx = &p; /* the recorder is the probe's first member */
    cb.room = on_room;
    cc_inbox *in;
    REQUIRE(cc_inbox_open(loop, &cfg, &cb, &in) == CC_OK);

    /* Every buffer acquired: a release from this thread wakes the loop for `room`. */
    cc_inbox_msg *m[4];
    for (int i = 0; i < 4; i++)
        REQUIRE((m[i] = cc_inbox_acquire(in)) != NULL);
    CHECK(cc_inbox_acquire(in) == NULL);
    CHECK(cc_inbox_acquire(in) == NULL); /* two empty acquires, one call */
    cc_inbox_release(in, m[3]);
    CHECK(wait_sem(&p.room));
    CHECK_EQ(atomic_load(&p.rooms), 1);
    m[3] = cc_inbox_acquire(in);
    REQUIRE(m[3] != NULL);

    /* Every buffer posted while the loop is held: the deliveries give them back. */
    blocker b;
    sem_init(&b.entered, 0, 0);
    sem_init(&b.unblock, 0, 0);
    REQUIRE(cc_loop_call(loop, block_loop, &b) == CC_OK);
    CHECK(wait_sem(&b.entered));
    for (uint64_t i = 0; i < 4; i++) {
        m[i]->head.sender = 0;
        m[i]->clock[0] = i + 1;
        m[i]->length = 0;
        CHECK_EQ(cc_inbox_post(in, m[i]), CC_OK);
    }
    CHECK(cc_inbox_acquire(in) == NULL);
    sem_post(&b.unblock);
    CHECK(wait_sem(&p.r.done)); /* four delivered */
    CHECK(wait_sem(&p.room));
    CHECK_EQ(atomic_load(&p.rooms), 2);
    /* Nobody found the pool empty since: deliveries do not call it. */
    cc_inbox_msg *one = new_msg(in, 0, CC_LEVEL_LOW, (uint64_t[]){5}, 1, 5);
    REQUIRE(one != NULL);
    p.r.target = 5;
    CHECK_EQ(cc_inbox_post(in, one), CC_OK);
    CHECK(wait_sem(&p.r.done));
    CHECK_EQ(atomic_load(&p.rooms), 2);
    CHECK_EQ(cc_inbox_close(in), CC_OK);
    CHECK(wait_sem(&p.r.closed));
    CHECK_EQ(atomic_load(&p.rooms), 2);
    sem_destroy(&b.entered);
    sem_destroy(&b.unblock);
    sem_destroy(&p.room);
    recorder_destroy(&p.r);
}

TEST_IMPL(inbox, room) {
    with_loop(inbox_room);
}

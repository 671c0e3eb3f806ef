/* cc_loop and cc_inbox: calls reach the loop thread exactly once and in
 * order, stop drains and refuses, and the inbox delivers a scrambled causal
 * history from four threads in happened-before order.
 *
 * Every wait is on a semaphore posted from a callback (or on a condition
 * the callbacks make observable) and gives up after a deadline, so a bug
 * fails the area instead of hanging it. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cc_error.h"
#include "cc_inbox.h"
#include "cc_loop.h"
#include "cc_test.h"

enum { WAIT_S = 60 };

/* sem_wait with a deadline; returns 1 when posted, 0 on timeout. */
static int wait_sem(sem_t *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_S;
    while (sem_timedwait(s, &ts) != 0) {
        if (errno != EINTR)
            return 0;
    }
    return 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void post_sem(void *ctx) {
    sem_post(ctx);
}

/* Blocks the loop thread until `unblock` is posted (bounded). */
typedef struct blocker {
    sem_t entered, unblock;
} blocker;

static void block_loop(void *ctx) {
    blocker *b = ctx;
    sem_post(&b->entered);
    wait_sem(&b->unblock);
}

/* ---- cc_loop -------------------------------------------------------------- */

static void test_start_stop(void) {
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

static void test_calls_from_threads(void) {
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
static void test_stop_drains_and_refuses(void) {
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

static void test_stop_from_loop_thread(void) {
    self_stop s = {.rc = 1};
    sem_init(&s.done, 0, 0);
    REQUIRE(cc_loop_start(0, &s.loop) == CC_OK);
    CHECK_EQ(cc_loop_call(s.loop, stop_from_loop, &s), CC_OK);
    CHECK(wait_sem(&s.done));
    CHECK_EQ(s.rc, CC_EINVAL);
    CHECK_EQ(cc_loop_stop(s.loop), CC_OK);
    sem_destroy(&s.done);
}

/* ---- cc_inbox: a causal history from four threads ------------------------- */

enum {
    H_WIDTH = 4,
    H_PER = 1500,
    H_TOTAL = H_WIDTH * H_PER,
    H_BLOCK = 8,
    H_DUPS = H_WIDTH * (H_PER / H_BLOCK)
};

static struct {
    uint64_t clocks[H_WIDTH][H_PER][H_WIDTH]; /* clocks[s][i] is sender s's message with seq i + 1 */
    cc_inbox *in;
    /* loop thread only */
    uint64_t have[H_WIDTH];
    uint64_t delivered, dup_rejects, other_rejects, violations;
    int signalled;
    sem_t done, closed;
} hist;

/* Simulates four processes: each step one process either sends, or first
 * receives (merges) a recent message of another process and then sends. The
 * merges create dependencies across senders. */
static void make_history(void) {
    uint64_t state[H_WIDTH][H_WIDTH] = {{0}};
    uint64_t count[H_WIDTH] = {0};
    uint64_t rng = 42;
    size_t made = 0, cross = 0;
    while (made < H_TOTAL) {
        size_t s = cc_test_rand(&rng) % H_WIDTH;
        if (count[s] == H_PER)
            continue;
        size_t o = cc_test_rand(&rng) % H_WIDTH;
        if (o != s && count[o] > 0 && cc_test_rand(&rng) % 2) {
            uint64_t back = cc_test_rand(&rng) % (count[o] < 16 ? count[o] : 16);
            const uint64_t *c = hist.clocks[o][count[o] - 1 - back];
            for (size_t k = 0; k < H_WIDTH; k++)
                if (c[k] > state[s][k])
                    state[s][k] = c[k];
            cross++;
        }
        state[s][s]++;
        memcpy(hist.clocks[s][count[s]], state[s], sizeof state[s]);
        count[s]++;
        made++;
    }
    CHECK(cross > H_TOTAL / 4);
}

static void hist_check_done(void) {
    if (!hist.signalled && hist.delivered == H_TOTAL && hist.dup_rejects == H_DUPS) {
        hist.signalled = 1;
        sem_post(&hist.done);
    }
}

static void hist_deliver(void *ctx, const cc_inbox_msg *m) {
    uint32_t s = m->head.sender;
    const uint64_t *c = m->head.clock;
    uint64_t seq;
    if (s >= H_WIDTH || m->length != sizeof seq) {
        hist.violations++;
        return;
    }
    memcpy(&seq, m->payload, sizeof seq);
    /* Happened-before order: everything this message depends on, and its
     * sender's previous message, was delivered already; nothing later was. */
    if (c[s] != hist.have[s] + 1 || seq != c[s])
        hist.violations++;
    for (size_t k = 0; k < H_WIDTH; k++)
        if (k != s && c[k] > hist.have[k])
            hist.violations++;
    if (seq >= 1 && seq <= H_PER && memcmp(c, hist.clocks[s][seq - 1], sizeof hist.clocks[s][0]) != 0)
        hist.violations++;
    hist.have[s] = c[s];
    hist.delivered++;
    hist_check_done();
}

static void hist_reject(void *ctx, const cc_inbox_msg *m, int code) {
    if (code == CC_EDUPLICATE)
        hist.dup_rejects++;
    else
        hist.other_rejects++;
    hist_check_done();
}

static void hist_closed(void *ctx) {
    sem_post(&hist.closed);
}

static int post_clock(cc_inbox *in, uint32_t sender, const uint64_t *clock, uint64_t seq, double deadline) {
    cc_inbox_msg *m;
    while ((m = cc_inbox_acquire(in)) == NULL) {
        if (now_s() > deadline)
            return CC_EFULL;
        sched_yield();
    }
    memcpy(m->clock, clock, H_WIDTH * sizeof *clock);
    m->head.sender = sender;
    memcpy(m->payload, &seq, sizeof seq);
    m->length = sizeof seq;
    return cc_inbox_post(in, m);
}

static void *hist_producer(void *arg) {
    uint32_t s = (uint32_t)(uintptr_t)arg;
    uint64_t rng = 1000 + s;
    double deadline = now_s() + WAIT_S;
    for (uint64_t base = 0; base < H_PER; base += H_BLOCK) {
        /* Scramble each block of H_BLOCK sequences, then re-post one of them. */
        uint64_t order[H_BLOCK];
        size_t n = H_PER - base < H_BLOCK ? H_PER - base : H_BLOCK;
        for (size_t i = 0; i < n; i++)
            order[i] = base + i;
        for (size_t i = n; i > 1; i--) {
            size_t j = cc_test_rand(&rng) % i;
            uint64_t tmp = order[i - 1];
            order[i - 1] = order[j];
            order[j] = tmp;
        }
        for (size_t i = 0; i < n; i++)
            if (post_clock(hist.in, s, hist.clocks[s][order[i]], order[i] + 1, deadline) != CC_OK)
                return (void *)1;
        if (n == H_BLOCK) {
            uint64_t again = base + cc_test_rand(&rng) % n;
            if (post_clock(hist.in, s, hist.clocks[s][again], again + 1, deadline) != CC_OK)
                return (void *)1;
        }
    }
    return NULL;
}

static void test_inbox_history(cc_loop *loop) {
    memset(&hist.have, 0, sizeof hist.have);
    hist.delivered = hist.dup_rejects = hist.other_rejects = hist.violations = 0;
    hist.signalled = 0;
    sem_init(&hist.done, 0, 0);
    sem_init(&hist.closed, 0, 0);
    make_history();
    /* Buffers for the whole history: a sender may run arbitrarily far ahead
     * of the others, and its held-back messages keep their buffers. */
    cc_inbox_config cfg = {.width = H_WIDTH, .self = UINT32_MAX, .capacity = H_TOTAL + 64, .max_payload = 8};
    cc_inbox_callbacks cb = {.deliver = hist_deliver, .reject = hist_reject, .closed = hist_closed};
    REQUIRE(cc_inbox_open(loop, &cfg, &cb, &hist.in) == CC_OK);
    pthread_t t[H_WIDTH];
    for (uintptr_t i = 0; i < H_WIDTH; i++)
        REQUIRE(pthread_create(&t[i], NULL, hist_producer, (void *)i) == 0);
    for (int i = 0; i < H_WIDTH; i++) {
        void *failed;
        pthread_join(t[i], &failed);
        CHECK(failed == NULL);
    }
    CHECK(wait_sem(&hist.done));
    /* The semaphore orders the loop thread's writes before these reads. */
    CHECK_EQ(hist.violations, 0);
    CHECK_EQ(hist.delivered, H_TOTAL);
    CHECK_EQ(hist.dup_rejects, H_DUPS);
    CHECK_EQ(hist.other_rejects, 0);
    for (int s = 0; s < H_WIDTH; s++)
        CHECK_EQ(hist.have[s], H_PER);
    cc_inbox_stats st;
    cc_inbox_stats_get(hist.in, &st);
    CHECK_EQ(st.posted, H_TOTAL + H_DUPS);
    CHECK_EQ(st.delivered, H_TOTAL);
    CHECK_EQ(st.duplicates, H_DUPS);
    CHECK_EQ(st.rejected, 0);
    CHECK_EQ(st.pending, 0);
    CHECK(st.held_back > 0);
    CHECK(st.wakeups > 0);
    CHECK_EQ(cc_inbox_close(hist.in), CC_OK);
    CHECK(wait_sem(&hist.closed));
    sem_destroy(&hist.done);
    sem_destroy(&hist.closed);
}

/* ---- cc_inbox: local sends, levels, raw mode, buffers, close ------------- */

enum { LOG_MAX = 64 };

typedef struct event {
    char what; /* 'e' emit, 'd' deliver, 'r' reject */
    uint32_t sender;
    uint8_t level;
    int code;
    uint64_t seq; /* from the payload */
    uint64_t clock[8];
} event;

typedef struct recorder {
    event log[LOG_MAX];
    size_t n, delivered, rejected, target; /* post `done` when delivered + rejected reaches target */
    int off_thread;
    cc_loop *loop;
    sem_t done, closed;
    _Atomic int closed_called;
} recorder;

static void record(recorder *r, char what, const cc_inbox_msg *m, int code) {
    if (!cc_loop_on_thread(r->loop))
        r->off_thread++;
    if (r->n < LOG_MAX) {
        event *e = &r->log[r->n++];
        e->what = what;
        e->sender = m->head.sender;
        e->level = m->head.level;
        e->code = code;
        e->seq = 0;
        if (m->length == sizeof e->seq)
            memcpy(&e->seq, m->payload, sizeof e->seq);
        memset(e->clock, 0, sizeof e->clock);
        memcpy(e->clock, m->head.clock, (m->head.width < 8 ? m->head.width : 8) * sizeof(uint64_t));
    }
    if (what == 'd')
        r->delivered++;
    if (what == 'r')
        r->rejected++;
    if (what != 'e' && r->delivered + r->rejected == r->target)
        sem_post(&r->done);
}

static void rec_deliver(void *ctx, const cc_inbox_msg *m) {
    record(ctx, 'd', m, 0);
}
static void rec_emit(void *ctx, const cc_inbox_msg *m) {
    record(ctx, 'e', m, 0);
}
static void rec_reject(void *ctx, const cc_inbox_msg *m, int code) {
    record(ctx, 'r', m, code);
}
static void rec_closed(void *ctx) {
    recorder *r = ctx;
    atomic_store(&r->closed_called, 1);
    sem_post(&r->closed);
}

static void recorder_init(recorder *r, cc_loop *loop, size_t target) {
    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->target = target;
    sem_init(&r->done, 0, 0);
    sem_init(&r->closed, 0, 0);
}

static void recorder_destroy(recorder *r) {
    sem_destroy(&r->done);
    sem_destroy(&r->closed);
}

static cc_inbox_callbacks recorder_callbacks(recorder *r) {
    return (cc_inbox_callbacks){
        .ctx = r, .deliver = rec_deliver, .emit = rec_emit, .reject = rec_reject, .closed = rec_closed};
}

/* Fills a buffer: sender, level, clock (n entries), payload = seq. */
static cc_inbox_msg *msg(cc_inbox *in, uint32_t sender, uint8_t level, const uint64_t *clock, size_t n,
                         uint64_t seq) {
    cc_inbox_msg *m = cc_inbox_acquire(in);
    if (!m)
        return NULL;
    m->head.sender = sender;
    m->head.level = level;
    if (clock)
        memcpy(m->clock, clock, n * sizeof *clock);
    memcpy(m->payload, &seq, sizeof seq);
    m->length = sizeof seq;
    return m;
}

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

static void test_inbox_local_sends(cc_loop *loop) {
    recorder r;
    recorder_init(&r, loop, 5);
    cc_inbox_config cfg = {.width = 3, .self = 0, .capacity = 16, .max_payload = 8};
    cc_inbox_callbacks cb = recorder_callbacks(&r);
    cc_inbox *in;
    REQUIRE(cc_inbox_open(loop, &cfg, &cb, &in) == CC_OK);
    CHECK(cc_inbox_loop(in) == loop);

    /* A peer's message that depends on our first send: held until we send. */
    uint64_t peer[3] = {1, 1, 0};
    CHECK_EQ(cc_inbox_post(in, msg(in, 1, CC_LEVEL_LOW, peer, 3, 100)), CC_OK);
    cc_inbox_msg *a = msg(in, 0, CC_LEVEL_LOW, NULL, 0, 1);
    a->head.sender = 2; /* overwritten by the stamp */
    CHECK_EQ(cc_inbox_send(in, a), CC_OK);
    CHECK_EQ(cc_inbox_send(in, msg(in, 0, CC_LEVEL_HIGH, NULL, 0, 2)), CC_OK);
    /* A looped-back copy of our first send is a duplicate; a "send of ours"
     * we never made is refused. */
    uint64_t echo[3] = {1, 0, 0}, forged[3] = {5, 0, 0};
    CHECK_EQ(cc_inbox_post(in, msg(in, 0, CC_LEVEL_LOW, echo, 3, 200)), CC_OK);
    CHECK_EQ(cc_inbox_post(in, msg(in, 0, CC_LEVEL_LOW, forged, 3, 300)), CC_OK);
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

static void test_inbox_levels(cc_loop *loop) {
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
        CHECK_EQ(cc_inbox_post(in, msg(in, s, levels[s], c, 6, s)), CC_OK);
    }
    uint64_t root[6] = {1, 0, 0, 0, 0, 0};
    CHECK_EQ(cc_inbox_post(in, msg(in, 0, CC_LEVEL_LOW, root, 6, 0)), CC_OK);
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

static void test_inbox_raw(cc_loop *loop) {
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
        while ((m = msg(in, (uint32_t)(i % 4), CC_LEVEL_LOW + i % 4, c, 4, i)) == NULL && now_s() < deadline)
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

static void test_inbox_buffers(cc_loop *loop) {
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

static void test_inbox_room(cc_loop *loop) {
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
    cc_inbox_msg *one = msg(in, 0, CC_LEVEL_LOW, (uint64_t[]){5}, 1, 5);
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

/* Close while messages are queued and the loop is busy: nothing more is
 * delivered, later posts fail with CC_ECLOSED and give their buffer back,
 * and every buffer goes with the inbox (valgrind checks the last part). */
static void test_inbox_close_in_flight(cc_loop *loop) {
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
        CHECK_EQ(cc_inbox_post(in, msg(in, 0, CC_LEVEL_LOW, ready, 4, i)), CC_OK);
        CHECK_EQ(cc_inbox_post(in, msg(in, 1, CC_LEVEL_LOW, held, 4, i)), CC_OK);
    }
    CHECK_EQ(cc_inbox_send(in, msg(in, 3, CC_LEVEL_LOW, NULL, 0, 99)), CC_OK);
    cc_inbox_msg *late = msg(in, 0, CC_LEVEL_LOW, NULL, 0, 1);
    cc_inbox_msg *late_send = msg(in, 3, CC_LEVEL_LOW, NULL, 0, 2);
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

static void test_inbox_close_race(cc_loop *loop) {
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

/* Inboxes left open (one with messages the engine holds, one with a close
 * still pending) are closed by cc_loop_stop through their member hooks. */
static void test_inbox_closed_by_stop(void) {
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
        CHECK_EQ(cc_inbox_post(in, msg(in, 0, CC_LEVEL_LOW, ready, 4, i)), CC_OK);
        CHECK_EQ(cc_inbox_post(in, msg(in, 2, CC_LEVEL_LOW, held, 4, i)), CC_OK);
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

static void on_watchdog(int sig) {
    (void)sig;
    static const char msg[] = "loop: watchdog: the area did not finish in time\n";
    if (write(2, msg, sizeof msg - 1) < 0)
        _exit(1);
    _exit(1);
}

void cc_test_loop(void) {
    signal(SIGALRM, on_watchdog);
    alarm(110);
    test_start_stop();
    test_calls_from_threads();
    test_stop_drains_and_refuses();
    test_stop_from_loop_thread();
    test_inbox_closed_by_stop();

    cc_loop *loop;
    REQUIRE(cc_loop_start(0, &loop) == CC_OK);
    test_inbox_history(loop);
    test_inbox_local_sends(loop);
    test_inbox_levels(loop);
    test_inbox_raw(loop);
    test_inbox_buffers(loop);
    test_inbox_room(loop);
    test_inbox_close_in_flight(loop);
    test_inbox_close_race(loop);
    CHECK_EQ(cc_loop_stop(loop), CC_OK);
    alarm(0);
    signal(SIGALRM, SIG_DFL);
}

/* What the loop and inbox tests share (loop_support.h). */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "cc_error.h"
#include "cc_test.h"
#include "loop_support.h"

/* sem_wait with a deadline; returns 1 when posted, 0 on timeout. */
int wait_sem(sem_t *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_S;
    while (sem_timedwait(s, &ts) != 0) {
        if (errno != EINTR)
            return 0;
    }
    return 1;
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void post_sem(void *ctx) {
    sem_post(ctx);
}

void block_loop(void *ctx) {
    blocker *b = ctx;
    sem_post(&b->entered);
    wait_sem(&b->unblock);
}

void with_loop(void (*fn)(cc_loop *loop)) {
    cc_loop *loop;
    REQUIRE(cc_loop_start(0, &loop) == CC_OK);
    fn(loop);
    CHECK_EQ(cc_loop_stop(loop), CC_OK);
}

/* ---- the recorder ------------------------------------------------------- */

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

void recorder_init(recorder *r, cc_loop *loop, size_t target) {
    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->target = target;
    sem_init(&r->done, 0, 0);
    sem_init(&r->closed, 0, 0);
}

void recorder_destroy(recorder *r) {
    sem_destroy(&r->done);
    sem_destroy(&r->closed);
}

cc_inbox_callbacks recorder_callbacks(recorder *r) {
    return (cc_inbox_callbacks){
        .ctx = r, .deliver = rec_deliver, .emit = rec_emit, .reject = rec_reject, .closed = rec_closed};
}

/* Fills a buffer: sender, level, clock (n entries), payload = seq. */
cc_inbox_msg *new_msg(cc_inbox *in, uint32_t sender, uint8_t level, const uint64_t *clock, size_t n,
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

/* cc_inbox: a scrambled causal history posted from four threads, with
 * duplicates, is delivered in happened-before order, each message once. */
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "cc_error.h"
#include "cc_inbox.h"
#include "cc_test.h"
#include "loop_support.h"

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

static void inbox_history(cc_loop *loop) {
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

TEST_IMPL(inbox, history) {
    with_loop(inbox_history);
}

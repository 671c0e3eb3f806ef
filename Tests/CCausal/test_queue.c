/* cc_queue and cc_pool: single-thread semantics, then multi-thread stress
 * that checks no loss, no duplicate and per-producer FIFO. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "cc_error.h"
#include "cc_pool.h"
#include "cc_queue.h"
#include "cc_test.h"

/* Items are (producer << 32 | seq) + 1, cast to a pointer: never NULL. */
static void *item_of(uint64_t producer, uint64_t seq) {
    return (void *)(uintptr_t)(((producer << 32) | seq) + 1);
}
static uint64_t producer_of(void *p) {
    return ((uint64_t)(uintptr_t)p - 1) >> 32;
}
static uint64_t seq_of(void *p) {
    return ((uint64_t)(uintptr_t)p - 1) & 0xffffffffu;
}

/* Every wait in the stress tests gives up after this long, so that a broken
 * queue fails the test instead of hanging it. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
enum { DEADLINE_S = 20 };
static _Atomic int timed_out;
static int past(double deadline) {
    if (now_s() < deadline)
        return 0;
    atomic_store(&timed_out, 1);
    return 1;
}

TEST_IMPL(queue, single_thread) {
    cc_queue q;
    CHECK_EQ(cc_queue_init(&q, 0), CC_EINVAL);
    REQUIRE(cc_queue_init(&q, 5) == CC_OK);
    CHECK_EQ(cc_queue_capacity(&q), 8);
    CHECK(cc_queue_pop(&q) == NULL);
    CHECK_EQ(cc_queue_push(&q, NULL), CC_EINVAL);
    /* Several laps so that every cell's sequence number wraps at least once. */
    for (int lap = 0; lap < 5; lap++) {
        for (uint64_t i = 0; i < 8; i++)
            CHECK_EQ(cc_queue_push(&q, item_of(lap, i)), CC_OK);
        CHECK_EQ(cc_queue_push(&q, item_of(9, 9)), CC_EFULL);
        for (uint64_t i = 0; i < 8; i++)
            CHECK(cc_queue_pop(&q) == item_of(lap, i));
        CHECK(cc_queue_pop(&q) == NULL);
    }
    /* Batches, interleaved with pushes. */
    void *out[8];
    for (uint64_t i = 0; i < 5; i++)
        cc_queue_push(&q, item_of(1, i));
    CHECK_EQ(cc_queue_pop_batch(&q, out, 3), 3);
    for (uint64_t i = 0; i < 3; i++)
        CHECK(out[i] == item_of(1, i));
    for (uint64_t i = 5; i < 11; i++)
        CHECK_EQ(cc_queue_push(&q, item_of(1, i)), CC_OK);
    CHECK_EQ(cc_queue_push(&q, item_of(1, 99)), CC_EFULL);
    CHECK_EQ(cc_queue_pop_batch(&q, out, 8), 8);
    for (uint64_t i = 0; i < 8; i++)
        CHECK(out[i] == item_of(1, i + 3));
    CHECK_EQ(cc_queue_pop_batch(&q, out, 8), 0);
    cc_queue_destroy(&q);

    /* The shared flavour on its own queue. */
    REQUIRE(cc_queue_init(&q, 2) == CC_OK);
    CHECK_EQ(cc_queue_capacity(&q), 2);
    CHECK(cc_queue_pop_shared(&q) == NULL);
    CHECK_EQ(cc_queue_push(&q, item_of(0, 1)), CC_OK);
    CHECK_EQ(cc_queue_push(&q, item_of(0, 2)), CC_OK);
    CHECK_EQ(cc_queue_push(&q, item_of(0, 3)), CC_EFULL);
    CHECK(cc_queue_pop_shared(&q) == item_of(0, 1));
    CHECK(cc_queue_pop_shared(&q) == item_of(0, 2));
    CHECK(cc_queue_pop_shared(&q) == NULL);
    cc_queue_destroy(&q);
}

enum { PRODUCERS = 4, PER_PRODUCER = 200000 };

typedef struct {
    cc_queue *q;
    uint64_t id;
    uint64_t count;
} producer_arg;

static void *producer(void *arg) {
    producer_arg *a = arg;
    double deadline = now_s() + DEADLINE_S;
    for (uint64_t i = 0; i < a->count; i++) {
        while (cc_queue_push(a->q, item_of(a->id, i)) != CC_OK) {
            if (atomic_load(&timed_out) || past(deadline))
                return NULL;
            sched_yield();
        }
    }
    return NULL;
}

TEST_IMPL(queue, mpsc_stress) {
    cc_queue q;
    REQUIRE(cc_queue_init(&q, 1024) == CC_OK);
    pthread_t t[PRODUCERS];
    producer_arg args[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (producer_arg){&q, (uint64_t)i, PER_PRODUCER};
        REQUIRE(pthread_create(&t[i], NULL, producer, &args[i]) == 0);
    }
    /* Per-producer FIFO means each producer's next sequence is exactly the
     * one expected: that alone rules out loss, duplicates and reordering. */
    uint64_t next[PRODUCERS] = {0};
    uint64_t total = 0, bad = 0;
    void *batch[32];
    double deadline = now_s() + DEADLINE_S;
    atomic_store(&timed_out, 0);
    while (total < (uint64_t)PRODUCERS * PER_PRODUCER && bad == 0) {
        size_t n = (total & 1) ? cc_queue_pop_batch(&q, batch, 32) : (batch[0] = cc_queue_pop(&q)) != NULL;
        if (n == 0) {
            if (past(deadline))
                break;
            sched_yield();
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t p = producer_of(batch[i]), s = seq_of(batch[i]);
            if (p >= PRODUCERS || s != next[p]) {
                bad++;
                break;
            }
            next[p]++;
        }
        total += n;
    }
    atomic_store(&timed_out, 1); /* releases producers stuck on a full queue after a failure */
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(bad, 0);
    for (int i = 0; i < PRODUCERS; i++)
        CHECK_EQ(next[i], PER_PRODUCER);
    CHECK(cc_queue_pop(&q) == NULL);
    cc_queue_destroy(&q);
}

enum { SHARED_PRODUCERS = 2, SHARED_CONSUMERS = 2, SHARED_PER_PRODUCER = 200000 };

typedef struct {
    cc_queue *q;
    _Atomic uint64_t *taken; /* items popped by all consumers */
    _Atomic uint8_t *seen;   /* one flag per item */
    _Atomic uint64_t *dups;
    uint64_t last[SHARED_PRODUCERS]; /* per consumer: each producer's items must arrive increasing */
    uint64_t disorder;
} consumer_arg;

static void *shared_consumer(void *arg) {
    consumer_arg *a = arg;
    const uint64_t total = (uint64_t)SHARED_PRODUCERS * SHARED_PER_PRODUCER;
    for (int i = 0; i < SHARED_PRODUCERS; i++)
        a->last[i] = UINT64_MAX;
    double deadline = now_s() + DEADLINE_S;
    while (atomic_load(a->taken) < total && !atomic_load(&timed_out)) {
        void *p = cc_queue_pop_shared(a->q);
        if (p == NULL) {
            if (past(deadline))
                break;
            sched_yield();
            continue;
        }
        uint64_t prod = producer_of(p), s = seq_of(p);
        if (prod >= SHARED_PRODUCERS) {
            atomic_fetch_add(a->dups, 1);
            continue;
        }
        if (a->last[prod] != UINT64_MAX && s <= a->last[prod])
            a->disorder++;
        a->last[prod] = s;
        if (atomic_exchange(&a->seen[prod * SHARED_PER_PRODUCER + s], 1) != 0)
            atomic_fetch_add(a->dups, 1);
        atomic_fetch_add(a->taken, 1);
    }
    return NULL;
}

TEST_IMPL(queue, mpmc_stress) {
    cc_queue q;
    REQUIRE(cc_queue_init(&q, 256) == CC_OK);
    const size_t total = (size_t)SHARED_PRODUCERS * SHARED_PER_PRODUCER;
    _Atomic uint8_t *seen = calloc(total, sizeof *seen);
    REQUIRE(seen != NULL);
    _Atomic uint64_t taken = 0, dups = 0;
    atomic_store(&timed_out, 0);
    pthread_t pt[SHARED_PRODUCERS], ct[SHARED_CONSUMERS];
    producer_arg pargs[SHARED_PRODUCERS];
    consumer_arg cargs[SHARED_CONSUMERS];
    for (int i = 0; i < SHARED_CONSUMERS; i++) {
        cargs[i] = (consumer_arg){.q = &q, .taken = &taken, .seen = seen, .dups = &dups};
        REQUIRE(pthread_create(&ct[i], NULL, shared_consumer, &cargs[i]) == 0);
    }
    for (int i = 0; i < SHARED_PRODUCERS; i++) {
        pargs[i] = (producer_arg){&q, (uint64_t)i, SHARED_PER_PRODUCER};
        REQUIRE(pthread_create(&pt[i], NULL, producer, &pargs[i]) == 0);
    }
    for (int i = 0; i < SHARED_PRODUCERS; i++)
        pthread_join(pt[i], NULL);
    for (int i = 0; i < SHARED_CONSUMERS; i++)
        pthread_join(ct[i], NULL);
    CHECK(!atomic_load(&timed_out));
    CHECK_EQ(atomic_load(&taken), total);
    CHECK_EQ(atomic_load(&dups), 0);
    size_t missing = 0;
    for (size_t i = 0; i < total; i++)
        missing += atomic_load(&seen[i]) == 0;
    CHECK_EQ(missing, 0);
    /* Each consumer sees a producer's items in increasing order (the queue is FIFO). */
    for (int i = 0; i < SHARED_CONSUMERS; i++)
        CHECK_EQ(cargs[i].disorder, 0);
    CHECK(cc_queue_pop_shared(&q) == NULL);
    free(seen);
    cc_queue_destroy(&q);
}

/* Consumers racing on a full queue: every pop_shared contends for head. */
enum { RACE_ITEMS = 1 << 15, RACE_ROUNDS = 20, RACE_CONSUMERS = 3 };

typedef struct {
    cc_queue *q;
    pthread_barrier_t *go;
    _Atomic uint8_t *seen;
    uint64_t got, dups;
} race_arg;

static void *race_consumer(void *arg) {
    race_arg *a = arg;
    pthread_barrier_wait(a->go);
    void *p;
    while ((p = cc_queue_pop_shared(a->q)) != NULL) {
        uint64_t s = seq_of(p);
        if (s >= RACE_ITEMS || atomic_exchange(&a->seen[s], 1) != 0)
            a->dups++;
        a->got++;
    }
    return NULL;
}

TEST_IMPL(queue, mpmc_drain_race) {
    cc_queue q;
    REQUIRE(cc_queue_init(&q, RACE_ITEMS) == CC_OK);
    _Atomic uint8_t *seen = calloc(RACE_ITEMS, sizeof *seen);
    REQUIRE(seen != NULL);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, RACE_CONSUMERS);
    for (int round = 0; round < RACE_ROUNDS; round++) {
        for (uint64_t i = 0; i < RACE_ITEMS; i++) {
            atomic_store(&seen[i], 0);
            CHECK_EQ(cc_queue_push(&q, item_of(0, i)), CC_OK);
        }
        pthread_t t[RACE_CONSUMERS];
        race_arg args[RACE_CONSUMERS];
        for (int i = 0; i < RACE_CONSUMERS; i++) {
            args[i] = (race_arg){.q = &q, .go = &go, .seen = seen};
            REQUIRE(pthread_create(&t[i], NULL, race_consumer, &args[i]) == 0);
        }
        uint64_t got = 0, dups = 0;
        for (int i = 0; i < RACE_CONSUMERS; i++) {
            pthread_join(t[i], NULL);
            got += args[i].got;
            dups += args[i].dups;
        }
        CHECK_EQ(dups, 0);
        CHECK_EQ(got, RACE_ITEMS);
        if (dups != 0 || got != RACE_ITEMS)
            break;
    }
    pthread_barrier_destroy(&go);
    free(seen);
    cc_queue_destroy(&q);
}

TEST_IMPL(queue, pool_single) {
    cc_pool p;
    CHECK_EQ(cc_pool_init(&p, 0, 4), CC_EINVAL);
    CHECK_EQ(cc_pool_init(&p, 8, 0), CC_EINVAL);
    REQUIRE(cc_pool_init(&p, 100, 5) == CC_OK);
    CHECK_EQ(p.block_size, 128);
    void *b[5];
    for (int i = 0; i < 5; i++) {
        b[i] = cc_pool_get(&p);
        REQUIRE(b[i] != NULL);
        CHECK_EQ((uintptr_t)b[i] % 64, 0);
        CHECK(cc_pool_owns(&p, b[i]));
        CHECK(!cc_pool_owns(&p, (char *)b[i] + 1));
        for (int j = 0; j < i; j++)
            CHECK(b[i] != b[j]);
        memset(b[i], 0xab, 128); /* the whole rounded block is usable */
    }
    CHECK(cc_pool_get(&p) == NULL);
    CHECK(!cc_pool_owns(&p, (char *)b[0] - 128 * 5 - 64));
    CHECK(!cc_pool_owns(&p, p.slab + 128 * 5));
    CHECK(!cc_pool_owns(&p, NULL));
    cc_pool_put(&p, b[3]);
    CHECK(cc_pool_get(&p) == b[3]);
    CHECK(cc_pool_get(&p) == NULL);
    for (int i = 0; i < 5; i++)
        cc_pool_put(&p, b[i]);
    cc_pool_destroy(&p);
}

enum { POOL_THREADS = 4, POOL_BLOCKS = 16, POOL_ROUNDS = 100000 };

typedef struct {
    cc_pool *p;
    _Atomic uint64_t *holder; /* per block: 0 when free, else thread id + 1 */
    uint64_t id;
    uint64_t clashes, empties, foreign;
} pool_arg;

static void *pool_worker(void *arg) {
    pool_arg *a = arg;
    void *held[3];
    for (int r = 0; r < POOL_ROUNDS; r++) {
        size_t n = 0;
        /* Take up to three blocks so that 4 threads x 3 > 16 sometimes runs the pool dry. */
        for (int k = 0; k < 3; k++) {
            void *b = cc_pool_get(a->p);
            if (b == NULL) {
                a->empties++;
                break;
            }
            if (!cc_pool_owns(a->p, b)) {
                a->foreign++;
                continue;
            }
            size_t idx = (size_t)((unsigned char *)b - a->p->slab) / a->p->block_size;
            uint64_t expected = 0;
            /* The mark: a block already marked is held by someone else. */
            if (!atomic_compare_exchange_strong(&a->holder[idx], &expected, a->id + 1))
                a->clashes++;
            /* Scribble over the block and check it after: a concurrent holder would clobber it. */
            memset(b, (int)a->id + 1, a->p->block_size);
            held[n++] = b;
        }
        for (size_t k = 0; k < n; k++) {
            unsigned char *b = held[k];
            if (b[0] != a->id + 1 || b[a->p->block_size - 1] != a->id + 1)
                a->clashes++;
            size_t idx = (size_t)(b - a->p->slab) / a->p->block_size;
            uint64_t expected = a->id + 1;
            if (!atomic_compare_exchange_strong(&a->holder[idx], &expected, 0))
                a->clashes++;
            cc_pool_put(a->p, b);
        }
    }
    return NULL;
}

TEST_IMPL(queue, pool_concurrent) {
    cc_pool p;
    REQUIRE(cc_pool_init(&p, 64, POOL_BLOCKS) == CC_OK);
    _Atomic uint64_t holder[POOL_BLOCKS];
    for (int i = 0; i < POOL_BLOCKS; i++)
        atomic_init(&holder[i], 0);
    pthread_t t[POOL_THREADS];
    pool_arg args[POOL_THREADS];
    for (int i = 0; i < POOL_THREADS; i++) {
        args[i] = (pool_arg){.p = &p, .holder = holder, .id = (uint64_t)i};
        REQUIRE(pthread_create(&t[i], NULL, pool_worker, &args[i]) == 0);
    }
    for (int i = 0; i < POOL_THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < POOL_THREADS; i++) {
        CHECK_EQ(args[i].clashes, 0);
        CHECK_EQ(args[i].foreign, 0);
    }
    /* Every block came back: all 16 can be taken again, all distinct, then none. */
    void *b[POOL_BLOCKS];
    for (int i = 0; i < POOL_BLOCKS; i++) {
        b[i] = cc_pool_get(&p);
        CHECK(b[i] != NULL);
        for (int j = 0; j < i; j++)
            CHECK(b[i] != b[j]);
    }
    CHECK(cc_pool_get(&p) == NULL);
    cc_pool_destroy(&p);
}

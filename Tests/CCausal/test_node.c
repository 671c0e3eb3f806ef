/* cc_node: a group at work. Concurrent broadcasts, a member with the wrong
 * key, connections cut mid-stream, a causal chain that arrives out of
 * order, back-pressure, `room` and `acked`, and wake-ups. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cc_delivery.h"
#include "cc_error.h"
#include "cc_frame.h"
#include "cc_test.h"
#include "node_support.h"

/* ---- (a) three members, concurrent broadcasts ------------------------------------ */

TEST_IMPL(node, group) {
    tnode t[3];
    REQUIRE(start_group(t, 3, 3, NULL));
    group_wait g = {.t = t, .count = 3, .each = 3 * A_EACH};
    run_senders(t, 3, 0, A_EACH);
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_delivered, &g, WAIT_S));
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(t[i].delivered, 3 * A_EACH);
        CHECK_EQ(t[i].violations, 0);
        for (int k = 0; k < 3; k++)
            CHECK_EQ(t[i].got[k], A_EACH);
        CHECK_EQ(t[i].refused, 0);
        CHECK_EQ(t[i].protocol, 0);
        CHECK_EQ(t[i].listening, 1);
    }
    pthread_mutex_unlock(&mu);
    uint64_t expect[3] = {A_EACH, A_EACH, A_EACH};
    check_clocks(t, 3, expect, 3);
    CHECK(wait_acked(&g));
    for (int i = 0; i < 3; i++) {
        cc_node_stats st;
        cc_node_stats_get(t[i].node, &st);
        CHECK_EQ(st.sent, A_EACH);
        CHECK_EQ(st.delivered, 3 * A_EACH);
        CHECK_EQ(st.pending, 0);
        CHECK_EQ(st.width, 3);
        CHECK_EQ(st.peers_up, 2);
        CHECK_EQ(st.unacked, 0);
        CHECK(st.bytes_in > 0 && st.bytes_out > 0);
    }
    /* Arguments the contract refuses. */
    uint8_t big[300] = {0};
    CHECK_EQ(cc_node_broadcast(t[0].node, big, sizeof big, CC_LEVEL_LOW, 0), CC_EINVAL);
    CHECK_EQ(cc_node_broadcast(t[0].node, big, 8, 0, 0), CC_EINVAL);
    CHECK_EQ(cc_node_broadcast(t[0].node, big, 8, 5, 0), CC_EINVAL);
    cc_node_peer self = peer_at(0, 1), taken = peer_at(1, 1), named = peer_at(5, 1),
                 huge = peer_at(1u << 20, 1);
    snprintf(named.host, sizeof named.host, "localhost"); /* a name, not an address */
    CHECK_EQ(cc_node_add_peer(t[0].node, &self), CC_EINVAL);
    CHECK_EQ(cc_node_add_peer(t[0].node, &taken), CC_EINVAL);
    CHECK_EQ(cc_node_add_peer(t[0].node, &named), CC_ESYS);
    CHECK_EQ(cc_node_add_peer(t[0].node, &huge), CC_EWIDTH);
    CHECK_EQ(cc_node_add_peer(t[0].node, NULL), CC_EINVAL);
    /* t[2] is left for the loop's stop to close. */
    stop(&t[0]);
    stop(&t[1]);
    CHECK_EQ(cc_loop_stop(t[2].loop), CC_OK);
    CHECK(t[2].closed);
}

/* ---- (b) a member with the wrong key ----------------------------------------------- */

static int refused_both(void *arg) {
    tnode *t = arg;
    return t[0].refused >= 1 && t[1].refused >= 1 && t[2].refused >= 2;
}

TEST_IMPL(node, wrong_key) {
    tnode t[3];
    cc_node_peer p01[2] = {peer_at(0, 0), peer_at(1, 0)};
    cc_node_config c2 = base_config(2, 3);
    memcpy(c2.key, BAD_KEY, sizeof c2.key);
    REQUIRE(start(&t[2], &c2, p01, 2));
    uint16_t p2 = cc_node_port(t[2].node);
    cc_node_peer p1[2] = {peer_at(0, 0), peer_at(2, p2)};
    cc_node_config c1 = base_config(1, 3);
    REQUIRE(start(&t[1], &c1, p1, 2));
    cc_node_peer p0[2] = {peer_at(1, cc_node_port(t[1].node)), peer_at(2, p2)};
    cc_node_config c0 = base_config(0, 3);
    REQUIRE(start(&t[0], &c0, p0, 2));

    pthread_mutex_lock(&mu);
    CHECK(wait_for(refused_both, t, WAIT_S));
    pthread_mutex_unlock(&mu);
    run_senders(t, 2, 0, 300);
    group_wait g = {.t = t, .count = 2, .each = 600};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_delivered, &g, WAIT_S));
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(t[i].violations, 0);
        CHECK_EQ(t[i].up[2 - (i == 2)] * (i == 2), 0); /* nobody came up with the wrong-key member */
    }
    CHECK_EQ(t[0].up[2], 0);
    CHECK_EQ(t[1].up[2], 0);
    CHECK_EQ(t[2].up[0] + t[2].up[1], 0);
    CHECK_EQ(t[0].delivered, 600);
    CHECK_EQ(t[1].delivered, 600);
    CHECK_EQ(t[2].delivered, 0);
    /* Each side says why: the MAC did not verify. */
    for (int i = 0; i < 3; i++) {
        int seen = 0;
        for (int e = 0; e < t[i].nev; e++) {
            if (t[i].evs[e].kind == CC_NODE_REFUSED && t[i].evs[e].code == CC_EINVAL &&
                strstr(t[i].evs[e].reason, "authentication"))
                seen = 1;
        }
        CHECK(seen);
    }
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 3; i++) {
        cc_node_stats st;
        cc_node_stats_get(t[i].node, &st);
        CHECK(st.refused >= 1);
        CHECK_EQ(st.peers_up, i == 2 ? 0 : 1);
    }
    stop(&t[0]);
    stop(&t[1]);
    stop(&t[2]);
}

/* ---- (d) connections cut mid-stream ------------------------------------------------ */

static int delivered_at_least(void *arg) {
    group_wait *g = arg;
    return g->t->delivered >= g->each;
}

typedef struct chaos {
    tnode *t;
    int cuts;
} chaos;

static int ups_at_least(void *arg) {
    group_wait *g = arg;
    return (uint64_t)(g->t->up[0] + g->t->up[2]) >= g->each;
}

/* Cuts every connection of the middle member six times, each time once it
 * delivered another 800 messages and both links are back up. */
static void *chaos_thread(void *arg) {
    chaos *c = arg;
    for (int i = 1; i <= 6; i++) {
        group_wait w = {.t = c->t, .count = 1, .each = (uint64_t)i * 800};
        group_wait u = {.t = c->t, .count = 1, .each = (uint64_t)i * 2};
        pthread_mutex_lock(&mu);
        int ok = wait_for(delivered_at_least, &w, WAIT_S) && wait_for(ups_at_least, &u, WAIT_S);
        pthread_mutex_unlock(&mu);
        if (!ok)
            break;
        if (cc__node_drop_connections(c->t->node) == CC_OK)
            c->cuts++;
    }
    return NULL;
}

TEST_IMPL(node, cut_connections) {
    tnode t[3];
    REQUIRE(start_group(t, 3, 3, NULL));
    group_wait g = {.t = t, .count = 3, .each = 3 * A_EACH};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_up, &g, WAIT_S));
    pthread_mutex_unlock(&mu);
    chaos c = {.t = &t[1]};
    pthread_t ct;
    pthread_create(&ct, NULL, chaos_thread, &c);
    run_senders(t, 3, 0, A_EACH);
    pthread_join(ct, NULL);
    CHECK_EQ(c.cuts, 6);
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_delivered, &g, WAIT_S));
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(t[i].delivered, 3 * A_EACH);
        CHECK_EQ(t[i].violations, 0);
    }
    CHECK(t[1].downs >= 2 * c.cuts);
    pthread_mutex_unlock(&mu);
    uint64_t expect[3] = {A_EACH, A_EACH, A_EACH};
    check_clocks(t, 3, expect, 3);
    uint64_t reconnects = 0;
    for (int i = 0; i < 3; i++) {
        cc_node_stats st;
        cc_node_stats_get(t[i].node, &st);
        reconnects += st.reconnects;
        CHECK_EQ(st.delivered, 3 * A_EACH);
    }
    CHECK(reconnects >= (uint64_t)2 * c.cuts);
    CHECK(wait_acked(&g));
    for (int i = 0; i < 3; i++)
        stop(&t[i]);
}

/* ---- held back: a late member receives a causal chain out of order -------------- */

enum { CHAIN = 300 };

TEST_IMPL(node, held_back) {
    /* 0 and 1 play ping-pong (each message of 1 follows one of 0 and the
     * next of 0 follows it) while 2, which both know, is down: both keep
     * their broadcasts for it. 2 then starts knowing only slot 1, so it
     * refuses 0 until 1's MEMBERS frame tells it about 0; meanwhile 1's
     * whole chain arrives and must wait. 2 holds at most 16 messages, so its
     * reader pauses and resumes as 0's messages release 1's. */
    tnode t[3];
    uint16_t p2 = free_port();
    REQUIRE(p2 != 0);
    cc_node_peer p1[2] = {peer_at(0, 0), peer_at(2, p2)};
    cc_node_config c1 = base_config(1, 3);
    REQUIRE(start(&t[1], &c1, p1, 2));
    cc_node_peer p0[2] = {peer_at(1, cc_node_port(t[1].node)), peer_at(2, p2)};
    cc_node_config c0 = base_config(0, 3);
    REQUIRE(start(&t[0], &c0, p0, 2));
    uint8_t buf[128];
    for (uint32_t k = 0; k < CHAIN; k++) {
        CHECK_EQ(cc_node_broadcast(t[0].node, buf, payload(buf, 0, k), level_of(k), 0), CC_OK);
        group_wait w1 = {.t = &t[1], .count = 0, .each = k + 1};
        pthread_mutex_lock(&mu);
        int ok = wait_for(got_from, &w1, WAIT_S);
        pthread_mutex_unlock(&mu);
        REQUIRE(ok);
        CHECK_EQ(cc_node_broadcast(t[1].node, buf, payload(buf, 1, k), level_of(k + 1), 0), CC_OK);
        group_wait w0 = {.t = &t[0], .count = 1, .each = k + 1};
        pthread_mutex_lock(&mu);
        ok = wait_for(got_from, &w0, WAIT_S);
        pthread_mutex_unlock(&mu);
        REQUIRE(ok);
    }
    cc_node_peer p2peers[1] = {peer_at(1, 0)};
    cc_node_config c2 = base_config(2, 3);
    c2.listen_port = p2;
    c2.pending = 16;
    REQUIRE(start(&t[2], &c2, p2peers, 1));
    CHECK_EQ(cc_node_port(t[2].node), p2);
    group_wait g = {.t = &t[2], .each = 2 * CHAIN};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(delivered_n, &g, WAIT_S));
    CHECK_EQ(t[2].delivered, 2 * CHAIN);
    CHECK_EQ(t[2].violations, 0);
    CHECK_EQ(t[0].violations, 0);
    CHECK_EQ(t[1].violations, 0);
    CHECK_EQ(t[2].added, 1); /* slot 0, learnt from slot 1 */
    pthread_mutex_unlock(&mu);
    uint64_t expect[3] = {CHAIN, CHAIN, 0};
    check_clocks(t, 3, expect, 3);
    cc_node_stats st;
    cc_node_stats_get(t[2].node, &st);
    CHECK_EQ(st.pending, 0);
    group_wait all = {.t = t, .count = 3};
    CHECK(wait_acked(&all));
    for (int i = 0; i < 3; i++)
        stop(&t[i]);
}

/* ---- (e) back-pressure ---------------------------------------------------------- */

enum { BP_WINDOW = 12, BP_MORE = 200 }; /* not a power of two: the window is exact, not the ring's size */

TEST_IMPL(node, back_pressure) {
    /* Slot 1 with a window of 12 knows slot 0, which is down (and would dial
     * it: slot 1 only waits). */
    tnode a, b;
    cc_node_config ca = base_config(1, 2);
    ca.send_window = BP_WINDOW;
    cc_node_peer pa = peer_at(0, 0);
    REQUIRE(start(&a, &ca, &pa, 1));
    uint8_t buf[128];
    for (uint32_t i = 0; i < BP_WINDOW; i++)
        CHECK_EQ(cc_node_broadcast(a.node, buf, payload(buf, 1, i), CC_LEVEL_LOW, 0), CC_OK);
    CHECK_EQ(cc_node_broadcast(a.node, buf, payload(buf, 1, BP_WINDOW), CC_LEVEL_LOW, 0), CC_EFULL);
    group_wait ga = {.t = &a, .each = BP_WINDOW};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(delivered_n, &ga, WAIT_S)); /* own broadcasts are delivered at once */
    pthread_mutex_unlock(&mu);
    cc_node_stats st;
    cc_node_stats_get(a.node, &st);
    CHECK_EQ(st.unacked, BP_WINDOW);
    CHECK_EQ(cc_node_broadcast(a.node, buf, payload(buf, 1, BP_WINDOW), CC_LEVEL_LOW, 0), CC_EFULL);

    cc_node_config cb = base_config(0, 2);
    cc_node_peer pb = peer_at(1, cc_node_port(a.node));
    REQUIRE(start(&b, &cb, &pb, 1));
    group_wait gb = {.t = &b, .each = BP_WINDOW};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(delivered_n, &gb, WAIT_S));
    pthread_mutex_unlock(&mu);
    /* The window opens once b's acknowledgement arrives. */
    struct timespec end = deadline_in(WAIT_S);
    int rc;
    while ((rc = cc_node_broadcast(a.node, buf, payload(buf, 1, BP_WINDOW), CC_LEVEL_HIGH, 0)) == CC_EFULL) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_sec > end.tv_sec)
            break;
        sched_yield();
    }
    CHECK_EQ(rc, CC_OK);
    gb.each = BP_WINDOW + 1;
    pthread_mutex_lock(&mu);
    CHECK(wait_for(delivered_n, &gb, WAIT_S));
    pthread_mutex_unlock(&mu);
    /* Many times the window through it: the broadcast ring wraps. */
    sender more = {.t = &a, .from = BP_WINDOW + 1, .to = BP_WINDOW + 1 + BP_MORE};
    send_thread(&more);
    CHECK_EQ(more.rc, CC_OK);
    gb.each = BP_WINDOW + 1 + BP_MORE;
    pthread_mutex_lock(&mu);
    CHECK(wait_for(delivered_n, &gb, WAIT_S));
    CHECK_EQ(b.violations, 0);
    CHECK_EQ(a.violations, 0);
    CHECK_EQ(b.got[1], BP_WINDOW + 1 + BP_MORE);
    pthread_mutex_unlock(&mu);
    stop(&b);
    stop(&a);
}

/* `room` after a full window, `acked` when the log empties: the waits below
 * are woken by them, with no retry loop. */
static int has_room(void *arg) {
    return ((tnode *)arg)->rooms > 0;
}

typedef struct acks_past {
    tnode *t;
    int acks;
} acks_past;

static int acked_again(void *arg) {
    acks_past *a = arg;
    return a->t->acks > a->acks;
}

TEST_IMPL(node, room_and_acked) {
    tnode a, b;
    cc_node_config ca = base_config(1, 2);
    ca.send_window = BP_WINDOW;
    cc_node_peer pa = peer_at(0, 0);
    REQUIRE(start(&a, &ca, &pa, 1));
    uint8_t buf[128];
    for (uint32_t i = 0; i < BP_WINDOW; i++)
        CHECK_EQ(cc_node_broadcast(a.node, buf, payload(buf, 1, i), CC_LEVEL_LOW, 0), CC_OK);
    CHECK_EQ(cc_node_unacked(a.node), BP_WINDOW); /* taken into the log or not yet */
    CHECK_EQ(cc_node_broadcast(a.node, buf, payload(buf, 1, BP_WINDOW), CC_LEVEL_LOW, 0), CC_EFULL);
    CHECK_EQ(cc_node_broadcast(a.node, buf, payload(buf, 1, BP_WINDOW), CC_LEVEL_LOW, 0), CC_EFULL);
    group_wait ga = {.t = &a, .each = BP_WINDOW};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(delivered_n, &ga, WAIT_S));
    CHECK_EQ(a.rooms, 0); /* slot 0 is down: nothing acknowledged */
    CHECK_EQ(a.acks, 0);
    pthread_mutex_unlock(&mu);
    CHECK_EQ(cc_node_unacked(a.node), BP_WINDOW);

    cc_node_config cb = base_config(0, 2);
    cc_node_peer pb = peer_at(1, cc_node_port(a.node));
    REQUIRE(start(&b, &cb, &pb, 1));
    acks_past past = {.t = &a, .acks = 0};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(has_room, &a, WAIT_S));
    CHECK(wait_for(acked_again, &past, WAIT_S));
    CHECK_EQ(a.rooms, 1); /* two CC_EFULL, one call */
    past.acks = a.acks;
    pthread_mutex_unlock(&mu);
    CHECK_EQ(cc_node_unacked(a.node), 0);
    CHECK_EQ(cc_node_broadcast(a.node, buf, payload(buf, 1, BP_WINDOW), CC_LEVEL_HIGH, 0), CC_OK);
    pthread_mutex_lock(&mu);
    CHECK(wait_for(acked_again, &past, WAIT_S));
    pthread_mutex_unlock(&mu);
    CHECK_EQ(cc_node_unacked(a.node), 0);
    pthread_mutex_lock(&mu);
    CHECK_EQ(a.rooms, 1); /* the window was not full */
    CHECK_EQ(b.rooms, 0);
    CHECK_EQ(b.acks, 0); /* b never broadcast */
    pthread_mutex_unlock(&mu);
    CHECK_EQ(cc_node_unacked(b.node), 0);
    stop(&b);
    stop(&a);
}

/* ---- (k) wake-ups -------------------------------------------------------------------- */

enum { K_ROUNDS = 300 };

/* Timers a second apart: the node's tick (a quarter of the shortest) is then
 * 250 ms, so a broadcast whose wake-up were lost would wait that long for
 * the tick's safety net. */
static cc_node_config slow_ticks(cc_node_config cfg) {
    cfg.heartbeat_ms = 1000;
    cfg.reconnect_min_ms = 1000;
    cfg.reconnect_max_ms = 1000;
    cfg.handshake_ms = 2000;
    cfg.timeout_ms = 5000;
    return cfg;
}

/* One broadcast in flight at a time, so that every one finds the sending
 * loop idle or about to sleep: each must wake it (on_prepare and
 * cc_node_broadcast see each other's store), never wait for the tick. */
TEST_IMPL(node, wake_ups) {
    tnode t[2];
    REQUIRE(start_group(t, 2, 2, slow_ticks));
    pthread_mutex_lock(&mu);
    REQUIRE(wait_for(both_up, t, WAIT_S));
    pthread_mutex_unlock(&mu);
    uint8_t buf[128];
    int slow = 0;
    for (uint32_t i = 0; i < K_ROUNDS; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int rc;
        while ((rc = cc_node_broadcast(t[0].node, buf, payload(buf, 0, i), CC_LEVEL_LOW, 0)) == CC_EFULL)
            sched_yield();
        CHECK_EQ(rc, CC_OK);
        group_wait g = {.t = &t[1], .each = i + 1};
        pthread_mutex_lock(&mu);
        CHECK(wait_for(delivered_n, &g, WAIT_S));
        pthread_mutex_unlock(&mu);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if ((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 >= 200)
            slow++;
    }
    /* A loaded machine (or valgrind) may stall a thread now and then; lost
     * wake-ups would stall one broadcast after another. */
    CHECK(slow <= K_ROUNDS / 20);
    pthread_mutex_lock(&mu);
    CHECK_EQ(t[1].violations, 0);
    CHECK_EQ(t[1].got[0], K_ROUNDS);
    pthread_mutex_unlock(&mu);
    stop(&t[1]);
    stop(&t[0]);
}

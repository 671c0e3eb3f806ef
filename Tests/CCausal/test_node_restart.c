/* cc_node with a state folder: a member restarts, delivers again what it
 * had not handed over (all of it, or only what the application did not
 * confirm), survives a crash in the middle of a delivery, and keeps large
 * payloads across a restart. */
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
#include <signal.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <sys/stat.h>

/* ---- (d2) a member restarts from its state folder ----------------------------------- */

TEST_IMPL(node, restart) {
    for (uint32_t k = 0; k < 3; k++)
        remove_state(k);
    tnode t[3];
    REQUIRE(start_group(t, 3, 3, with_state));
    group_wait g = {.t = t, .count = 3, .each = 3 * A_EACH};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_up, &g, WAIT_S));
    pthread_mutex_unlock(&mu);

    /* Everyone sends half; slot 1 goes away while the others go on. */
    pthread_t th[3];
    sender s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = (sender){.t = &t[i], .from = 0, .to = i == 1 ? A_EACH / 2 : A_EACH};
        pthread_create(&th[i], NULL, send_thread, &s[i]);
    }
    pthread_join(th[1], NULL);
    CHECK_EQ(s[1].rc, CC_OK);
    /* No wait for acknowledgements: slot 1 stops with its last broadcasts
     * unacknowledged (the reloaded log resends them) and others' pending. */
    uint16_t port1 = cc_node_port(t[1].node);
    CHECK_EQ(cc_loop_stop(t[1].loop), CC_OK); /* its node closes with the loop */
    CHECK(t[1].closed);

    /* The same slot, port and folder; the checker carries on from what the
     * old one delivered, so a redelivery or a gap shows as a violation. */
    tnode old = t[1];
    cc_node_peer peers[2] = {peer_at(0, 0), peer_at(2, cc_node_port(t[2].node))};
    cc_node_config c1 = with_state(base_config(1, 3));
    c1.listen_port = port1;
    REQUIRE(start_from(&t[1], &old, &c1, peers, 2));
    s[1] = (sender){.t = &t[1], .from = A_EACH / 2, .to = A_EACH};
    pthread_create(&th[1], NULL, send_thread, &s[1]);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(s[i].rc, CC_OK);
    }
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_delivered, &g, WAIT_S));
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(t[i].delivered, 3 * A_EACH);
        CHECK_EQ(t[i].violations, 0);
        for (int k = 0; k < 3; k++)
            CHECK_EQ(t[i].got[k], A_EACH);
    }
    pthread_mutex_unlock(&mu);
    uint64_t expect[3] = {A_EACH, A_EACH, A_EACH};
    check_clocks(t, 3, expect, 3);
    CHECK(wait_acked(&g));
    cc_node_stats st;
    cc_node_stats_get(t[1].node, &st);
    CHECK_EQ(st.sent, A_EACH / 2); /* this incarnation's own */
    if (getenv("CC_NODE_VERBOSE"))
        fprintf(stderr, "  restart: slot 1 stopped with %llu delivered\n", (unsigned long long)old.delivered);
    for (int i = 0; i < 3; i++)
        stop(&t[i]);
    for (uint32_t k = 0; k < 3; k++)
        remove_state(k);
}

/* ---- large payloads: past the pool block, past a chunk, through a restart ---------- */

enum { L_EACH = 24, L_MAX = 300 * 1024 };

/* Broadcast idx's payload as payload() makes it, but of a length that runs
 * from a few bytes to L_MAX (larger than a block's inline room and than a
 * frame chunk). */
static size_t large_payload(uint8_t *buf, uint32_t slot, uint32_t idx) {
    static const size_t sizes[] = {8, 239, 240, 241, 4096, 65536, 200000, L_MAX};
    size_t len = sizes[idx % (sizeof sizes / sizeof sizes[0])];
    memcpy(buf, &slot, 4);
    memcpy(buf + 4, &idx, 4);
    for (size_t i = 8; i < len; i++)
        buf[i] = (uint8_t)(idx + i);
    return len;
}

static int send_large(tnode *t, uint32_t from, uint32_t to, uint8_t *buf) {
    for (uint32_t i = from; i < to; i++) {
        int rc = cc_node_broadcast(t->node, buf, large_payload(buf, t->slot, i), level_of(i), i);
        if (rc != CC_OK)
            return rc;
    }
    return CC_OK;
}

static cc_node_config large(cc_node_config c) {
    c.max_payload = L_MAX;
    return c;
}

TEST_IMPL(node, large) {
    /* Slot 1 broadcasts while slot 0 is away, so its frames wait in its log;
     * it restarts from its state folder (the frames are reloaded), then slot
     * 0 comes, gets them resent, and both go on. */
    remove_state(1);
    static uint8_t buf[L_MAX];
    tnode t[2];
    cc_node_config c1 = large(with_state(base_config(1, 2)));
    cc_node_peer p1 = peer_at(0, 0);
    REQUIRE(start(&t[1], &c1, &p1, 1));
    CHECK_EQ(send_large(&t[1], 0, L_EACH, buf), CC_OK);
    group_wait own = {.t = &t[1], .each = L_EACH};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(delivered_n, &own, WAIT_S));
    pthread_mutex_unlock(&mu);
    stop(&t[1]);
    tnode old = t[1];
    REQUIRE(start_from(&t[1], &old, &c1, &p1, 1));
    cc_node_stats st;
    cc_node_stats_get(t[1].node, &st);
    CHECK_EQ(st.unacked, L_EACH);

    cc_node_config c0 = large(base_config(0, 2));
    cc_node_peer p0 = peer_at(1, cc_node_port(t[1].node));
    REQUIRE(start(&t[0], &c0, &p0, 1));
    group_wait first = {.t = &t[0], .count = 1, .each = L_EACH};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(got_from, &first, WAIT_S));
    pthread_mutex_unlock(&mu);
    CHECK_EQ(send_large(&t[0], 0, L_EACH, buf), CC_OK);
    CHECK_EQ(send_large(&t[1], L_EACH, 2 * L_EACH, buf), CC_OK);
    group_wait g = {.t = t, .count = 2, .each = 3 * L_EACH};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_delivered, &g, WAIT_S));
    CHECK_EQ(t[0].got[0], L_EACH);
    CHECK_EQ(t[0].got[1], 2 * L_EACH);
    CHECK_EQ(t[1].got[0], L_EACH);
    CHECK_EQ(t[1].got[1], 2 * L_EACH);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(t[i].violations, 0);
    pthread_mutex_unlock(&mu);
    CHECK(wait_acked(&g));
    for (int i = 0; i < 2; i++)
        stop(&t[i]);
    remove_state(1);
}

/* ---- (l) hand-off: what the application confirmed, and a crash mid-delivery ---- */

enum { C_EACH = 400, C_HANDED = 300, C_MORE = 100 };

static cc_node_config confirming(cc_node_config c) {
    c = with_state(c);
    c.confirm = c.self == 0;
    return c;
}

static int delivered_each(void *arg) {
    group_wait *g = arg;
    return g->t[0].delivered >= g->each && g->t[1].delivered >= g->each;
}

TEST_IMPL(node, confirm) {
    /* Slot 0 confirms only its first C_HANDED deliveries; then both stop.
     * Slot 0 restarts alone: it delivers again, in causal order, everything
     * after what it confirmed, its own broadcasts from its log (those that
     * depend on slot 1's wait for them) and broadcasts more meanwhile. Slot
     * 1 comes back, resends what 0 never acknowledged, and both end with
     * every message, the checkers starting from what was handed over. */
    remove_state(0);
    remove_state(1);
    tnode t[2];
    REQUIRE(start_group(t, 2, 2, confirming));
    pthread_mutex_lock(&mu);
    t[0].confirm_node = t[0].node;
    t[0].confirm_upto = C_HANDED;
    CHECK(wait_for(both_up, t, WAIT_S));
    pthread_mutex_unlock(&mu);
    run_senders(t, 2, 0, C_EACH);
    group_wait g = {.t = t, .count = 2, .each = 2 * C_EACH};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_delivered, &g, WAIT_S));
    pthread_mutex_unlock(&mu);
    /* What 0 has not handed over stays: its own in its log, 1's in 1's. */
    cc_node_stats st0, st1;
    cc_node_stats_get(t[0].node, &st0);
    cc_node_stats_get(t[1].node, &st1);
    CHECK(st0.unacked > 0);
    CHECK(st1.unacked > 0);
    CHECK_EQ(cc_node_confirm(t[1].node, t[0].seen, 2), CC_EINVAL); /* 1 does not confirm */
    uint16_t port1 = cc_node_port(t[1].node);
    stop(&t[1]);
    stop(&t[0]);

    tnode old0 = t[0], old1 = t[1], from = t[0];
    memcpy(from.seen, old0.handed_seen, sizeof from.seen);
    memcpy(from.got, old0.handed_seen, sizeof from.got);
    from.delivered = old0.handed_delivered;
    CHECK_EQ(from.delivered, C_HANDED);
    cc_node_config c0 = confirming(base_config(0, 2));
    cc_node_peer p1 = peer_at(1, port1);
    REQUIRE(start_from(&t[0], &from, &c0, &p1, 1));
    sender more = {.t = &t[0], .from = C_EACH, .to = C_EACH + C_MORE};
    send_thread(&more);
    CHECK_EQ(more.rc, CC_OK);
    if (getenv("CC_NODE_VERBOSE")) {
        pthread_mutex_lock(&mu);
        fprintf(stderr, "  confirm: handed %llu+%llu; before 1 is back, 0 delivered %llu+%llu\n",
                (unsigned long long)old0.handed_seen[0], (unsigned long long)old0.handed_seen[1],
                (unsigned long long)t[0].seen[0], (unsigned long long)t[0].seen[1]);
        pthread_mutex_unlock(&mu);
    }
    cc_node_config c1 = confirming(base_config(1, 2));
    c1.listen_port = port1;
    cc_node_peer p0 = peer_at(0, cc_node_port(t[0].node));
    REQUIRE(start_from(&t[1], &old1, &c1, &p0, 1));
    g.each = 2 * C_EACH + C_MORE;
    pthread_mutex_lock(&mu);
    CHECK(wait_for(delivered_each, &g, WAIT_S));
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(t[i].delivered, 2 * C_EACH + C_MORE);
        CHECK_EQ(t[i].violations, 0);
        CHECK_EQ(t[i].got[0], C_EACH + C_MORE);
        CHECK_EQ(t[i].got[1], C_EACH);
    }
    pthread_mutex_unlock(&mu);
    uint64_t expect[2] = {C_EACH + C_MORE, C_EACH};
    check_clocks(t, 2, expect, 2);
    /* The clock of the last delivery covers everything: confirming it hands
     * it all over, and both logs empty. */
    CHECK_EQ(cc_node_confirm(t[0].node, expect, 2), CC_OK);
    uint64_t wide[3] = {1, 1, 1};
    CHECK_EQ(cc_node_confirm(t[0].node, wide, 3), CC_EWIDTH);
    CHECK(wait_acked(&g));
    stop(&t[1]);
    stop(&t[0]);
    remove_state(0);
    remove_state(1);
}

enum { X_EACH = 1000, X_KILL = 500 };

/* The last sequence in slot 0's log (its frames are cc_frame's). */
static uint64_t last_logged(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/cc_node_test_%d_0/log", (int)getpid());
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    static uint8_t buf[1 << 20];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof buf && (r = read(fd, buf + len, sizeof buf - len)) > 0)
        len += (size_t)r;
    close(fd);
    uint64_t last = 0;
    cc_frame f;
    int64_t used;
    for (size_t off = 0; (used = cc_frame_parse(buf + off, len - off, CC_FRAME_DEFAULT_MAX, &f)) > 0;
         off += (size_t)used)
        last = f.seq;
    return last;
}

TEST_IMPL(node, crash) {
    /* A member without `confirm` dies (SIGKILL) inside the deliver callback
     * of its own X_KILL-th broadcast, in the middle of a burst. Restarted on
     * its folder, it delivers again every own broadcast it had stamped from
     * one at or before X_KILL on (that one was not handed over), then
     * carries on after the last. */
    remove_state(0);
    cc_node_config c = with_state(base_config(0, 1));
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        alarm(30);
        tnode t;
        if (!start(&t, &c, NULL, 0))
            _exit(2);
        pthread_mutex_lock(&mu);
        t.kill_at = X_KILL;
        pthread_mutex_unlock(&mu);
        sender s = {.t = &t, .from = 0, .to = X_EACH};
        send_thread(&s);
        group_wait g = {.t = &t, .each = X_EACH};
        pthread_mutex_lock(&mu);
        wait_for(delivered_n, &g, WAIT_S);
        _exit(3); /* not killed */
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    uint64_t last = last_logged();
    CHECK(last >= X_KILL);

    /* A joiner from the start: it starts wherever the folder says (first[]
     * tells), and may deliver before cc_node_start has returned here. */
    tnode t, fresh = {.joiner = 1};
    REQUIRE(start_from(&t, &fresh, &c, NULL, 0));
    uint8_t buf[128];
    CHECK_EQ(cc_node_broadcast(t.node, buf, payload(buf, 0, (uint32_t)last), CC_LEVEL_LOW, 0), CC_OK);
    group_wait g = {.t = &t, .count = 0, .each = last + 1};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(got_from_seq, &g, WAIT_S));
    CHECK(t.first[0] >= 1 && t.first[0] <= X_KILL);
    CHECK_EQ(t.seen[0], last + 1);
    CHECK_EQ(t.got[0], last + 2 - t.first[0]);
    CHECK_EQ(t.violations, 0);
    pthread_mutex_unlock(&mu);
    if (getenv("CC_NODE_VERBOSE"))
        fprintf(stderr, "  crash: %llu stamped, delivered again from %llu\n", (unsigned long long)last,
                (unsigned long long)t.first[0]);
    stop(&t);
    remove_state(0);
}

/* cc_node: the group grows (a member added to one member is announced to
 * the others), and a member reached through a forwarder stays reached
 * through it. */
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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

/* ---- (f) growth ------------------------------------------------------------------ */

enum { F_EACH = 200 };

static int width_four(void *arg) {
    group_wait *g = arg;
    for (int i = 0; i < g->count; i++) {
        cc_node_stats st;
        cc_node_stats_get(g->t[i].node, &st);
        if (st.width != 4)
            return 0;
    }
    return g->t[3].up[0] && g->t[3].up[1] && g->t[3].up[2];
}

TEST_IMPL(node, growth) {
    tnode t[4];
    REQUIRE(start_group(t, 3, 3, NULL));
    group_wait g3 = {.t = t, .count = 3, .each = 3 * F_EACH};
    run_senders(t, 3, 0, F_EACH);
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_delivered, &g3, WAIT_S));
    pthread_mutex_unlock(&mu);
    CHECK(wait_acked(&g3));

    /* The newcomer knows everyone; the group learns of it from one member. */
    cc_node_peer p[3] = {peer_at(0, 0), peer_at(1, 0), peer_at(2, 0)};
    cc_node_config c3 = base_config(3, 4);
    REQUIRE(start(&t[3], &c3, p, 3));
    t[3].joiner = 1;
    cc_node_peer joiner = peer_at(3, cc_node_port(t[3].node));
    CHECK_EQ(cc_node_add_peer(t[0].node, &joiner), CC_OK);
    CHECK_EQ(cc_node_add_peer(t[0].node, &joiner), CC_EINVAL); /* slot taken now */
    group_wait g4 = {.t = t, .count = 4};
    CHECK(poll_for(width_four, &g4, WAIT_S));
    pthread_mutex_lock(&mu);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(t[i].added, 1);
    pthread_mutex_unlock(&mu);

    run_senders(t, 4, F_EACH, 2 * F_EACH);
    /* The old members deliver their 3 x 200 earlier ones too. */
    g4.each = 4 * F_EACH;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < 4; i++) {
        group_wait one = {.t = &t[i], .each = i < 3 ? 3 * F_EACH + 4 * F_EACH : 4 * F_EACH};
        CHECK(wait_for(delivered_n, &one, WAIT_S));
        CHECK_EQ(t[i].violations, 0);
        CHECK_EQ(t[i].got[3], F_EACH);
    }
    CHECK_EQ(t[3].delivered, 4 * F_EACH);
    pthread_mutex_unlock(&mu);
    uint64_t expect[4] = {2 * F_EACH, 2 * F_EACH, 2 * F_EACH, F_EACH};
    check_clocks(t, 4, expect, 4);
    for (int i = 0; i < 4; i++)
        stop(&t[i]);
}

/* ---- a member reached through a forwarder stays reached through it --------------- */

/* A TCP forwarder on a thread of its own: each connection to `port` is
 * relayed to 127.0.0.1:target, which the test may change (the member moved);
 * `accepted` counts the relayed connections. */
typedef struct forwarder {
    int listen_fd, wake[2];
    uint16_t port;
    _Atomic int target, accepted;
    pthread_t thread;
} forwarder;

enum { FWD_PAIRS = 8 };

static void *forward_thread(void *arg) {
    forwarder *f = arg;
    int a[FWD_PAIRS], b[FWD_PAIRS];
    static uint8_t buf[65536]; /* one forwarder at a time */
    for (int i = 0; i < FWD_PAIRS; i++)
        a[i] = b[i] = -1;
    for (;;) {
        struct pollfd p[2 + 2 * FWD_PAIRS];
        int np = 0;
        p[np++] = (struct pollfd){.fd = f->wake[0], .events = POLLIN};
        p[np++] = (struct pollfd){.fd = f->listen_fd, .events = POLLIN};
        for (int i = 0; i < FWD_PAIRS; i++) {
            if (a[i] >= 0) {
                p[np++] = (struct pollfd){.fd = a[i], .events = POLLIN};
                p[np++] = (struct pollfd){.fd = b[i], .events = POLLIN};
            }
        }
        if (poll(p, (nfds_t)np, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[0].revents)
            break;
        /* Relay what is readable; a pair closes both ways when either side ends. */
        for (int i = 0, k = 2; i < FWD_PAIRS; i++) {
            if (a[i] < 0)
                continue;
            for (int side = 0; side < 2 && a[i] >= 0; side++) {
                if (!(p[k + side].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                int from = side ? b[i] : a[i], to = side ? a[i] : b[i];
                ssize_t r = recv(from, buf, sizeof buf, 0);
                if (r <= 0 || !send_all(to, buf, (size_t)r)) {
                    close(a[i]);
                    close(b[i]);
                    a[i] = b[i] = -1;
                }
            }
            k += 2;
        }
        if (p[1].revents & POLLIN) {
            int in = accept(f->listen_fd, NULL, NULL);
            int out = in >= 0 ? raw_connect((uint16_t)atomic_load(&f->target)) : -1;
            int slot = -1;
            for (int i = 0; i < FWD_PAIRS && slot < 0; i++)
                slot = a[i] < 0 ? i : -1;
            if (in >= 0 && out >= 0 && slot >= 0) {
                a[slot] = in;
                b[slot] = out;
                atomic_fetch_add(&f->accepted, 1);
            } else {
                if (in >= 0)
                    close(in);
                if (out >= 0)
                    close(out);
            }
        }
    }
    for (int i = 0; i < FWD_PAIRS; i++) {
        if (a[i] >= 0) {
            close(a[i]);
            close(b[i]);
        }
    }
    return NULL;
}

static int forwarder_start(forwarder *f, uint16_t target) {
    memset(f, 0, sizeof *f);
    atomic_init(&f->target, target);
    atomic_init(&f->accepted, 0);
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof a;
    if (f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(f->listen_fd, 8) != 0 || getsockname(f->listen_fd, (struct sockaddr *)&a, &len) != 0 ||
        pipe(f->wake) != 0)
        return 0;
    f->port = ntohs(a.sin_port);
    return pthread_create(&f->thread, NULL, forward_thread, f) == 0;
}

static void forwarder_stop(forwarder *f) {
    CHECK_EQ(write(f->wake[1], "x", 1), 1);
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
    close(f->wake[0]);
    close(f->wake[1]);
}

typedef struct up_wait {
    tnode *t;
    uint32_t slot;
    int count;
} up_wait;

static int up_n(void *arg) {
    up_wait *w = arg;
    return w->t->up[w->slot] >= w->count;
}

enum { FW_EACH = 100 };

TEST_IMPL(node, forwarded) {
    /* Slot 0 knows slot 1 only through a forwarder. Slot 1 announces its own
     * listening address in MEMBERS, and then moves to another port (restarted
     * with its state folder); the forwarder follows it. Slot 0 must keep
     * dialing the forwarder, the address it was given: the announced one is
     * gone, and behind a proxy or a NAT it would never have been reachable. */
    remove_state(1);
    tnode t[2];
    cc_node_config c1 = with_state(base_config(1, 2));
    cc_node_peer p1 = peer_at(0, 0); /* slot 0 dials */
    REQUIRE(start(&t[1], &c1, &p1, 1));
    forwarder fw;
    REQUIRE(forwarder_start(&fw, cc_node_port(t[1].node)));
    cc_node_config c0 = base_config(0, 2);
    cc_node_peer p0 = peer_at(1, fw.port);
    REQUIRE(start(&t[0], &c0, &p0, 1));

    /* Both broadcast: slot 0 has slot 1's MEMBERS (sent before its first
     * message on the connection) by the time it delivers slot 1's messages. */
    group_wait g = {.t = t, .count = 2, .each = 2 * FW_EACH};
    run_senders(t, 2, 0, FW_EACH);
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_delivered, &g, WAIT_S));
    pthread_mutex_unlock(&mu);
    CHECK(wait_acked(&g));
    CHECK_EQ(atomic_load(&fw.accepted), 1);

    /* Slot 1 moves to a new port; the checker carries on from what the old
     * incarnation delivered. */
    stop(&t[1]);
    tnode old = t[1];
    REQUIRE(start_from(&t[1], &old, &c1, &p1, 1));
    atomic_store(&fw.target, cc_node_port(t[1].node));

    up_wait w = {.t = &t[0], .slot = 1, .count = 2};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(up_n, &w, WAIT_S));
    pthread_mutex_unlock(&mu);
    CHECK_EQ(atomic_load(&fw.accepted), 2);

    g.each = 4 * FW_EACH;
    run_senders(t, 2, FW_EACH, 2 * FW_EACH);
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_delivered, &g, WAIT_S));
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(t[i].violations, 0);
        for (int k = 0; k < 2; k++)
            CHECK_EQ(t[i].got[k], 2 * FW_EACH);
    }
    pthread_mutex_unlock(&mu);
    CHECK_EQ(atomic_load(&fw.accepted), 2); /* every connection went through it */
    for (int i = 0; i < 2; i++)
        stop(&t[i]);
    forwarder_stop(&fw);
    remove_state(1);
}

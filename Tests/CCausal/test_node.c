/* cc_node: causal broadcast over TCP between nodes on their own loops in
 * this process, on 127.0.0.1 with ports picked by the system.
 *
 * Every node checks each delivery against its own delivered vector (the
 * message's own entry is exactly one past what it has from that sender, and
 * no other entry is ahead of it), so exactly-once and happened-before order
 * are checked on every message, not only at the end. Every wait is on a
 * condition variable signalled from node callbacks, with a deadline; a
 * watchdog alarm ends the area if something hangs anyway. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cc_delivery.h"
#include "cc_error.h"
#include "cc_frame.h"
#include "cc_loop.h"
#include "cc_node.h"
#include "cc_test.h"

/* Test hook, declared in Sources/CCausal/node_internal.h. */
int cc__node_drop_connections(cc_node *node);

enum { WAIT_S = 15, MAXW = 8, MAXEV = 64 };

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

typedef struct ev {
    int kind, code;
    uint32_t slot;
    char reason[96];
} ev;

typedef struct tnode {
    cc_loop *loop;
    cc_node *node;
    uint32_t slot;
    int joiner; /* joined a running group: its first message from each sender may skip */
    /* guarded by mu */
    uint64_t seen[MAXW], got[MAXW];
    uint64_t first[MAXW]; /* the sequence of the first message delivered from each sender */
    /* Hand-off (test_confirm): confirm each of the first confirm_upto
     * deliveries to confirm_node, and remember the checker's state after the
     * last one confirmed. */
    cc_node *confirm_node;
    uint64_t confirm_upto, handed_seen[MAXW], handed_delivered;
    uint64_t kill_at; /* test_crash: die in the callback of this own delivery */
    uint64_t delivered, violations;
    int up[MAXW], downs, refused, protocol, added, listening, closed;
    int rooms, acks; /* `room` and `acked` callbacks */
    uint32_t width_seen;
    ev evs[MAXEV];
    int nev;
} tnode;

static const uint8_t KEY[CC_NODE_KEY_SIZE] = "0123456789abcdef0123456789abcdef";
static const uint8_t BAD_KEY[CC_NODE_KEY_SIZE] = "fedcba9876543210fedcba9876543210";

static struct timespec deadline_in(int s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += s;
    return ts;
}

/* Waits (mu held) until pred holds or the deadline passes; returns pred. */
static int wait_for(int (*pred)(void *), void *arg, int seconds) {
    struct timespec dl = deadline_in(seconds);
    while (!pred(arg)) {
        if (pthread_cond_timedwait(&cv, &mu, &dl) == ETIMEDOUT)
            return pred(arg);
    }
    return 1;
}

/* Waits for a condition that no callback signals (a counter in the stats):
 * wakes every 5 ms to look again, up to the deadline. */
static int poll_for(int (*pred)(void *), void *arg, int seconds) {
    struct timespec end = deadline_in(seconds);
    pthread_mutex_lock(&mu);
    for (;;) {
        if (pred(arg)) {
            pthread_mutex_unlock(&mu);
            return 1;
        }
        struct timespec now, step;
        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
            break;
        step = now;
        step.tv_nsec += 5 * 1000 * 1000;
        if (step.tv_nsec >= 1000000000L) {
            step.tv_sec++;
            step.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&cv, &mu, &step);
    }
    int ok = pred(arg);
    pthread_mutex_unlock(&mu);
    return ok;
}

/* ---- callbacks -------------------------------------------------------------- */

static void on_deliver(void *ctx, const cc_node_msg *m) {
    tnode *t = ctx;
    pthread_mutex_lock(&mu);
    uint32_t s = m->sender;
    if (s >= MAXW || m->width > MAXW || m->length < 8) {
        t->violations++;
    } else {
        const uint64_t *c = m->clock;
        uint32_t idx, from;
        memcpy(&from, m->payload, 4);
        memcpy(&idx, m->payload + 4, 4);
        if (from != s || idx + 1 != c[s])
            t->violations++; /* the payload says which broadcast it is: the n-th has sequence n */
        for (uint32_t i = 8; i < m->length; i++) {
            if (m->payload[i] != (uint8_t)(idx + i))
                t->violations++;
        }
        if (t->joiner && t->seen[s] == 0) {
            t->seen[s] = c[s] - 1; /* the first message seen from s after joining */
        }
        if (c[s] != t->seen[s] + 1)
            t->violations++; /* a duplicate or a gap */
        for (uint32_t k = 0; k < m->width && !t->joiner; k++) {
            if (k != s && c[k] > t->seen[k])
                t->violations++; /* delivered before something it depends on */
        }
        t->seen[s] = c[s];
        t->got[s]++;
        if (!t->first[s])
            t->first[s] = c[s];
        if (t->kill_at && s == t->slot && c[s] == t->kill_at)
            raise(SIGKILL); /* before the callback returns: not handed over */
    }
    t->delivered++;
    if (t->confirm_node && t->delivered <= t->confirm_upto) {
        CHECK_EQ(cc_node_confirm(t->confirm_node, m->clock, m->width), CC_OK);
        memcpy(t->handed_seen, t->seen, sizeof t->seen);
        t->handed_delivered = t->delivered;
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void on_event(void *ctx, const cc_node_event *e) {
    tnode *t = ctx;
    pthread_mutex_lock(&mu);
    switch (e->kind) {
    case CC_NODE_PEER_UP:
        if (e->slot < MAXW)
            t->up[e->slot]++;
        break;
    case CC_NODE_PEER_DOWN: t->downs++; break;
    case CC_NODE_REFUSED: t->refused++; break;
    case CC_NODE_PROTOCOL: t->protocol++; break;
    case CC_NODE_MEMBER_ADDED: t->added++; break;
    case CC_NODE_LISTENING: t->listening++; break;
    }
    t->width_seen = e->width;
    if (t->nev < MAXEV) {
        ev *x = &t->evs[t->nev++];
        x->kind = e->kind;
        x->code = e->code;
        x->slot = e->slot;
        snprintf(x->reason, sizeof x->reason, "%s", e->reason ? e->reason : "");
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void on_room(void *ctx) {
    tnode *t = ctx;
    pthread_mutex_lock(&mu);
    t->rooms++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void on_acked(void *ctx) {
    tnode *t = ctx;
    pthread_mutex_lock(&mu);
    t->acks++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void on_closed(void *ctx) {
    tnode *t = ctx;
    pthread_mutex_lock(&mu);
    t->closed = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* ---- helpers ------------------------------------------------------------------ */

static cc_node_config base_config(uint32_t slot, uint32_t width) {
    cc_node_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.self = slot;
    cfg.width = width;
    cfg.listen_host = "127.0.0.1";
    memcpy(cfg.key, KEY, sizeof cfg.key);
    cfg.heartbeat_ms = 100;
    cfg.timeout_ms = 3000;
    cfg.reconnect_min_ms = 10;
    cfg.reconnect_max_ms = 100;
    cfg.handshake_ms = 1000;
    cfg.max_payload = 256;
    return cfg;
}

static cc_node_peer peer_at(uint32_t slot, uint16_t port) {
    cc_node_peer p;
    memset(&p, 0, sizeof p);
    p.slot = slot;
    snprintf(p.host, sizeof p.host, "127.0.0.1");
    p.port = port;
    return p;
}

/* Starts a member whose checker carries on from `old` (what an earlier
 * incarnation of the slot delivered, and whether it checks as a joiner), or
 * from nothing. The checker state is in place before the node can deliver
 * anything. */
static int start_from(tnode *t, const tnode *old, const cc_node_config *cfg, const cc_node_peer *peers,
                      size_t np) {
    pthread_mutex_lock(&mu);
    memset(t, 0, sizeof *t);
    if (old) {
        memcpy(t->seen, old->seen, sizeof old->seen);
        memcpy(t->got, old->got, sizeof old->got);
        t->delivered = old->delivered;
        t->violations = old->violations;
        t->joiner = old->joiner;
    }
    pthread_mutex_unlock(&mu);
    t->slot = cfg->self;
    if (cc_loop_start(0, &t->loop) != CC_OK)
        return 0;
    cc_node_callbacks cb = {.ctx = t,
                            .deliver = on_deliver,
                            .event = on_event,
                            .closed = on_closed,
                            .room = on_room,
                            .acked = on_acked};
    return cc_node_start(t->loop, cfg, peers, np, &cb, &t->node) == CC_OK;
}

static int start(tnode *t, const cc_node_config *cfg, const cc_node_peer *peers, size_t np) {
    return start_from(t, NULL, cfg, peers, np);
}

/* Starts `count` members of one group, highest slot first: a member only
 * dials higher slots, so every address it dials is known by then, and lower
 * slots it only accepts (their port is learnt from their MEMBERS frame). */
static int start_group(tnode *t, uint32_t count, uint32_t width, cc_node_config (*tweak)(cc_node_config)) {
    uint16_t ports[MAXW] = {0};
    for (int s = (int)count - 1; s >= 0; s--) {
        cc_node_peer peers[MAXW];
        size_t np = 0;
        for (uint32_t k = 0; k < count; k++) {
            if (k != (uint32_t)s)
                peers[np++] = peer_at(k, ports[k]);
        }
        cc_node_config cfg = base_config((uint32_t)s, width);
        if (tweak)
            cfg = tweak(cfg);
        if (!start(&t[s], &cfg, peers, np))
            return 0;
        ports[s] = cc_node_port(t[s].node);
        if (ports[s] == 0)
            return 0;
    }
    return 1;
}

typedef struct group_wait {
    tnode *t;
    int count;
    uint64_t each;
} group_wait;

static int delivered_n(void *arg) {
    group_wait *g = arg;
    return g->t->delivered >= g->each;
}

static int is_closed(void *arg) {
    return ((tnode *)arg)->closed;
}

/* Closes the node (its `closed` callback must come), then stops its loop. */
static void stop(tnode *t) {
    if (!t->loop)
        return;
    if (t->node && getenv("CC_NODE_VERBOSE")) {
        cc_node_stats st;
        cc_node_stats_get(t->node, &st);
        fprintf(stderr,
                "  slot %u: sent %llu delivered %llu dup %llu resent %llu reconnects %llu refused %llu "
                "protocol %llu unacked %llu width %u up %u\n",
                t->slot, (unsigned long long)st.sent, (unsigned long long)st.delivered,
                (unsigned long long)st.duplicates, (unsigned long long)st.resent,
                (unsigned long long)st.reconnects, (unsigned long long)st.refused,
                (unsigned long long)st.protocol_errors, (unsigned long long)st.unacked, st.width,
                st.peers_up);
    }
    if (t->node) {
        CHECK_EQ(cc_node_close(t->node), CC_OK);
        pthread_mutex_lock(&mu);
        CHECK(wait_for(is_closed, t, WAIT_S));
        pthread_mutex_unlock(&mu);
        t->node = NULL;
    }
    CHECK_EQ(cc_loop_stop(t->loop), CC_OK);
    t->loop = NULL;
}

/* The payload of broadcast number idx from slot: slot, idx, then a pattern
 * of a length that varies with idx. */
static size_t payload(uint8_t *buf, uint32_t slot, uint32_t idx) {
    size_t len = 8 + idx % 64;
    memcpy(buf, &slot, 4);
    memcpy(buf + 4, &idx, 4);
    for (size_t i = 8; i < len; i++)
        buf[i] = (uint8_t)(idx + i);
    return len;
}

static uint8_t level_of(uint32_t idx) {
    return idx % 97 == 0   ? CC_LEVEL_CRITICAL
           : idx % 13 == 0 ? CC_LEVEL_HIGH
           : idx % 7 == 0  ? CC_LEVEL_MEDIUM
                           : CC_LEVEL_LOW;
}

/* Broadcasts from..to-1 from one node, retrying while the window is full. */
typedef struct sender {
    tnode *t;
    uint32_t from, to;
    int rc;
} sender;

static void *send_thread(void *arg) {
    sender *s = arg;
    struct timespec end = deadline_in(WAIT_S);
    uint8_t buf[128];
    s->rc = CC_OK;
    for (uint32_t i = s->from; i < s->to; i++) {
        size_t len = payload(buf, s->t->slot, i);
        int rc;
        while ((rc = cc_node_broadcast(s->t->node, buf, len, level_of(i), i)) == CC_EFULL) {
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            if (now.tv_sec > end.tv_sec) {
                s->rc = rc;
                return NULL;
            }
            sched_yield(); /* the window frees as peers acknowledge */
        }
        if (rc != CC_OK) {
            s->rc = rc;
            return NULL;
        }
    }
    return NULL;
}

static int all_delivered(void *arg) {
    group_wait *g = arg;
    for (int i = 0; i < g->count; i++) {
        if (g->t[i].delivered < g->each)
            return 0;
    }
    return 1;
}

static int all_up(void *arg) {
    group_wait *g = arg;
    for (int i = 0; i < g->count; i++) {
        for (int k = 0; k < g->count; k++) {
            if (k != i && g->t[i].up[k] == 0)
                return 0;
        }
    }
    return 1;
}

static int all_acked(void *arg) {
    group_wait *g = arg;
    for (int i = 0; i < g->count; i++) {
        cc_node_stats st;
        cc_node_stats_get(g->t[i].node, &st);
        if (st.unacked != 0 || cc_node_unacked(g->t[i].node) != 0)
            return 0;
    }
    return 1;
}

/* Every node of g has every broadcast acknowledged: woken by `acked`. */
static int wait_acked(group_wait *g) {
    pthread_mutex_lock(&mu);
    int ok = wait_for(all_acked, g, WAIT_S);
    pthread_mutex_unlock(&mu);
    return ok;
}

typedef struct clock_call {
    cc_node *node;
    uint64_t clock[MAXW];
    size_t width;
    sem_t done;
} clock_call;

static void read_clock(void *arg) {
    clock_call *c = arg;
    c->width = cc_node_clock(c->node, c->clock, MAXW);
    sem_post(&c->done);
}

static size_t node_clock(tnode *t, uint64_t *out) {
    clock_call c = {.node = t->node};
    sem_init(&c.done, 0, 0);
    if (cc_loop_call(t->loop, read_clock, &c) != CC_OK)
        return 0;
    struct timespec dl = deadline_in(WAIT_S);
    while (sem_timedwait(&c.done, &dl) != 0) {
        if (errno != EINTR)
            return 0;
    }
    sem_destroy(&c.done);
    memcpy(out, c.clock, sizeof c.clock);
    return c.width;
}

/* Every node has the same clock, equal to `expect` (per sender). */
static void check_clocks(tnode *t, int count, const uint64_t *expect, size_t width) {
    for (int i = 0; i < count; i++) {
        uint64_t c[MAXW] = {0};
        CHECK_EQ(node_clock(&t[i], c), width);
        for (size_t k = 0; k < width; k++)
            CHECK_EQ(c[k], expect[k]);
    }
}

/* Every node broadcasts its numbers from..to-1 (the joiner of the growth
 * test counts from 0: its n-th broadcast has sequence n). */
static void run_senders(tnode *t, int count, uint32_t from, uint32_t to) {
    pthread_t th[MAXW];
    sender s[MAXW];
    for (int i = 0; i < count; i++) {
        s[i] = (sender){.t = &t[i], .from = t[i].joiner ? 0 : from, .to = t[i].joiner ? to - from : to};
        pthread_create(&th[i], NULL, send_thread, &s[i]);
    }
    for (int i = 0; i < count; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(s[i].rc, CC_OK);
    }
}

/* ---- (a) three members, concurrent broadcasts ------------------------------------ */

enum { A_EACH = 2000 };

static void test_group(void) {
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

static void test_wrong_key(void) {
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

/* ---- (c) raw sockets ---------------------------------------------------------- */

static int raw_connect(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *buf, size_t len) {
    const uint8_t *p = buf;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w <= 0)
            return 0;
        p += w;
        len -= (size_t)w;
    }
    return 1;
}

/* Reads until the peer closes (or resets) the connection: 1, or 0 on timeout. */
static int wait_eof(int fd) {
    uint8_t buf[4096];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return 1;
        if (r < 0 && errno != EINTR)
            return 0;
    }
}

typedef struct ev_wait {
    tnode *t;
    int kind, count;
} ev_wait;

static int has_events(void *arg) {
    ev_wait *w = arg;
    int n = 0;
    for (int e = 0; e < w->t->nev; e++)
        n += w->t->evs[e].kind == w->kind;
    return n >= w->count;
}

/* The last event of a kind: its code and reason. */
static const ev *last_event(tnode *t, int kind) {
    for (int e = t->nev - 1; e >= 0; e--) {
        if (t->evs[e].kind == kind)
            return &t->evs[e];
    }
    return NULL;
}

static void expect_event(tnode *t, int kind, int count, int code, const char *reason) {
    ev_wait w = {.t = t, .kind = kind, .count = count};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(has_events, &w, WAIT_S));
    const ev *e = last_event(t, kind);
    CHECK(e != NULL);
    if (e) {
        CHECK_EQ(e->code, code);
        if (!strstr(e->reason, reason)) {
            fprintf(stderr, "node: expected reason \"%s\", got \"%s\"\n", reason, e->reason);
            cc_test_failures++;
        }
    }
    pthread_mutex_unlock(&mu);
}

static size_t control_frame(uint8_t *buf, size_t cap, uint8_t type, uint32_t sender, uint32_t width,
                            const void *p, size_t len) {
    uint64_t clock[MAXW] = {0};
    cc_frame h = {.type = type, .sender = sender};
    int64_t r = cc_frame_encode(buf, cap, &h, clock, clock, width, p, len);
    return r > 0 ? (size_t)r : 0;
}

/* Reads frames until one of `type` arrives; copies its payload. */
static int read_frame(int fd, uint8_t *stream, size_t *have, uint8_t type, uint8_t *out, size_t outlen) {
    for (;;) {
        cc_frame f;
        int64_t r = cc_frame_parse(stream, *have, CC_FRAME_DEFAULT_MAX, &f);
        if (r > 0) {
            int match = f.type == type && f.payload_len == outlen;
            if (match)
                memcpy(out, f.payload, outlen);
            memmove(stream, stream + r, *have - (size_t)r);
            *have -= (size_t)r;
            if (match)
                return 1;
            continue;
        }
        if (r != CC_ETRUNCATED)
            return 0;
        ssize_t got = recv(fd, stream + *have, 4096 - *have, 0);
        if (got <= 0)
            return 0;
        *have += (size_t)got;
    }
}

static void auth_mac(uint8_t *mac, uint32_t own, uint32_t peer, const uint8_t *own_nonce,
                     const uint8_t *peer_nonce) {
    uint8_t in[17 + 8 + 64];
    memcpy(in, "causalucp-auth-v1", 17);
    uint8_t s[8] = {(uint8_t)own,  (uint8_t)(own >> 8),  (uint8_t)(own >> 16),  (uint8_t)(own >> 24),
                    (uint8_t)peer, (uint8_t)(peer >> 8), (uint8_t)(peer >> 16), (uint8_t)(peer >> 24)};
    memcpy(in + 17, s, 8);
    memcpy(in + 25, own_nonce, 32);
    memcpy(in + 57, peer_nonce, 32);
    crypto_auth(mac, in, sizeof in, KEY);
}

static cc_node_config short_handshake(cc_node_config c) {
    c.handshake_ms = 300;
    c.timeout_ms = 500; /* heartbeats every 100 ms keep the good link up */
    return c;
}

/* A control frame as any peer may write one: a sparse clock with no entries
 * and whatever width it claims (control_frame's clock has only MAXW). */
static size_t bare_frame(uint8_t *buf, uint8_t type, uint32_t sender, uint32_t width, const void *p,
                         size_t len) {
    uint32_t length = (uint32_t)(CC_FRAME_HEADER_SIZE - 4 + len);
    memset(buf, 0, CC_FRAME_HEADER_SIZE);
    memcpy(buf, &length, 4); /* the tests run on little-endian hosts, as the frame is */
    buf[4] = CC_FRAME_VERSION;
    buf[5] = type;
    buf[7] = CC_FRAME_FLAG_SPARSE;
    memcpy(buf + 8, &sender, 4);
    memcpy(buf + 12, &width, 4);
    if (len)
        memcpy(buf + CC_FRAME_HEADER_SIZE, p, len);
    return CC_FRAME_HEADER_SIZE + len;
}

/* Completes the handshake with the member at `port` (slot 1) as slot 0,
 * claiming a group of `width`. */
static int raw_handshake_as(uint16_t port, uint32_t width) {
    int fd = raw_connect(port);
    if (fd < 0)
        return -1;
    uint8_t frame[512], hello[48] = {0}, nonce[32], peer_hello[48], peer_mac[32], mac[32], expect[32];
    randombytes_buf(nonce, sizeof nonce);
    memcpy(hello, nonce, 32);
    size_t hl = bare_frame(frame, CC_FRAME_HELLO, 0, width, hello, sizeof hello);
    uint8_t stream[4096];
    size_t have = 0;
    if (!send_all(fd, frame, hl) ||
        !read_frame(fd, stream, &have, CC_FRAME_HELLO, peer_hello, sizeof peer_hello) ||
        !read_frame(fd, stream, &have, CC_FRAME_AUTH, peer_mac, sizeof peer_mac)) {
        close(fd);
        return -1;
    }
    auth_mac(expect, 1, 0, peer_hello, nonce); /* the member proves the key too */
    CHECK(memcmp(expect, peer_mac, 32) == 0);
    auth_mac(mac, 0, 1, nonce, peer_hello);
    hl = bare_frame(frame, CC_FRAME_AUTH, 0, width, mac, sizeof mac);
    if (!send_all(fd, frame, hl)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int raw_handshake(uint16_t port) {
    return raw_handshake_as(port, 3);
}

/* Reads (and drops) until the peer closes or resets the connection within
 * ms: 1, or 0 when it is still open then. Heartbeats do not extend it. */
static int eof_within(int fd, int ms) {
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += ms / 1000;
    end.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    uint8_t buf[4096];
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = (long)(end.tv_sec - now.tv_sec) * 1000 + (end.tv_nsec - now.tv_nsec) / 1000000L;
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got == 0 || (got < 0 && errno == ECONNRESET))
            return 1;
        if (got < 0 && errno != EINTR && errno != EAGAIN)
            return 0;
    }
}

static void test_raw_sockets(void) {
    /* Slots 1 and 2 are good members; slot 0 is known to them, and it is the
     * slot the raw socket claims. Nobody dials slot 0 (it is the lowest). */
    tnode t[3];
    memset(&t[0], 0, sizeof t[0]);
    uint16_t ports[3] = {0};
    for (int s = 2; s >= 1; s--) {
        cc_node_peer peers[2];
        size_t np = 0;
        for (uint32_t k = 0; k < 3; k++) {
            if (k != (uint32_t)s)
                peers[np++] = peer_at(k, ports[k]);
        }
        cc_node_config cfg = short_handshake(base_config((uint32_t)s, 3));
        REQUIRE(start(&t[s], &cfg, peers, np));
        ports[s] = cc_node_port(t[s].node);
    }
    tnode *g = &t[1]; /* the target */
    group_wait pair = {.t = &t[1], .count = 2, .each = 2 * 1000};

    /* A concurrent broadcast between the good members all along. */
    pthread_t th[2];
    sender s[2] = {{.t = &t[1], .from = 0, .to = 1000}, {.t = &t[2], .from = 0, .to = 1000}};
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, send_thread, &s[i]);

    /* Garbage: a plausible length and an unknown version. */
    int fd = raw_connect(ports[1]);
    REQUIRE(fd >= 0);
    uint8_t junk[64];
    memset(junk, 0x5a, sizeof junk);
    junk[0] = 60, junk[1] = junk[2] = junk[3] = 0;
    CHECK(send_all(fd, junk, sizeof junk));
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_REFUSED, 1, CC_EVERSION, cc_strerror(CC_EVERSION));

    /* An oversized length prefix: refused before any body is awaited. */
    fd = raw_connect(ports[1]);
    REQUIRE(fd >= 0);
    uint8_t huge[4] = {0xff, 0xff, 0xff, 0x7f};
    CHECK(send_all(fd, huge, sizeof huge));
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_REFUSED, 2, CC_ETOOBIG, cc_strerror(CC_ETOOBIG));

    /* Silence: the handshake deadline closes it. */
    fd = raw_connect(ports[1]);
    REQUIRE(fd >= 0);
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_REFUSED, 3, CC_ECLOSED, "handshake timed out");

    /* A message before the handshake. */
    fd = raw_connect(ports[1]);
    REQUIRE(fd >= 0);
    uint8_t frame[512];
    uint64_t clock[3] = {1, 0, 0};
    cc_frame h = {.type = CC_FRAME_MESSAGE, .level = CC_LEVEL_LOW, .sender = 0, .seq = 1};
    int64_t len = cc_frame_encode(frame, sizeof frame, &h, clock, NULL, 3, "x", 1);
    REQUIRE(len > 0);
    CHECK(send_all(fd, frame, (size_t)len));
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_REFUSED, 4, CC_EINVAL, "before the handshake");

    /* A HELLO from a slot nobody knows. */
    fd = raw_connect(ports[1]);
    REQUIRE(fd >= 0);
    uint8_t hello[48] = {0};
    randombytes_buf(hello, 32);
    size_t hl = control_frame(frame, sizeof frame, CC_FRAME_HELLO, 7, 8, hello, sizeof hello);
    CHECK(send_all(fd, frame, hl));
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_REFUSED, 5, CC_ESENDER, "unknown slot");

    /* A full handshake as slot 0 (the test knows the key), then a MESSAGE
     * whose dense clock has fewer entries than its width. */
    fd = raw_handshake(ports[1]);
    REQUIRE(fd >= 0);
    pthread_mutex_lock(&mu);
    ev_wait upw = {.t = g, .kind = CC_NODE_PEER_UP, .count = 2}; /* slot 2, then the raw slot 0 */
    CHECK(wait_for(has_events, &upw, WAIT_S));
    CHECK_EQ(g->up[0], 1);
    pthread_mutex_unlock(&mu);
    len = cc_frame_encode(frame, sizeof frame, &h, clock, NULL, 3, "x", 1);
    REQUIRE(len > 0);
    frame[16] = 2; /* entries: 2, width: 3 */
    CHECK(send_all(fd, frame, (size_t)len));
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_PROTOCOL, 1, CC_EWIDTH, cc_strerror(CC_EWIDTH));
    expect_event(g, CC_NODE_PEER_DOWN, 1, CC_EWIDTH, cc_strerror(CC_EWIDTH));

    /* A member that authenticates and then says nothing (no heartbeats) is
     * dropped after timeout_ms; the good link, idle by now, lives on its
     * heartbeats. */
    fd = raw_handshake(ports[1]);
    REQUIRE(fd >= 0);
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_PEER_DOWN, 2, CC_ECLOSED, "silent");

    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(s[i].rc, CC_OK);
    }
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_delivered, &pair, WAIT_S));
    CHECK_EQ(t[1].delivered, 2000);
    CHECK_EQ(t[2].delivered, 2000);
    CHECK_EQ(t[1].violations, 0);
    CHECK_EQ(t[2].violations, 0);
    CHECK_EQ(t[2].refused, 0);
    CHECK_EQ(t[1].up[2], 1); /* the good link never went down */
    CHECK_EQ(t[1].up[0], 2);
    CHECK_EQ(t[1].downs, 2);
    CHECK_EQ(t[2].downs, 0);
    pthread_mutex_unlock(&mu);
    cc_node_stats st;
    cc_node_stats_get(g->node, &st);
    CHECK_EQ(st.refused, 5);
    CHECK_EQ(st.protocol_errors, 1);
    CHECK_EQ(st.peers_up, 1);
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

static void test_cut_connections(void) {
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

/* ---- (d2) a member restarts from its state folder ----------------------------------- */

static cc_node_config with_state(cc_node_config c) {
    static char dirs[MAXW][64];
    snprintf(dirs[c.self], sizeof dirs[c.self], "/tmp/cc_node_test_%d_%u", (int)getpid(), c.self);
    c.state_dir = dirs[c.self];
    return c;
}

static void remove_state(uint32_t slot) {
    char path[128];
    static const char *files[] = {"state", "state.tmp", "log", "log.tmp"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "/tmp/cc_node_test_%d_%u/%s", (int)getpid(), slot, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "/tmp/cc_node_test_%d_%u", (int)getpid(), slot);
    rmdir(path);
}

static void test_restart(void) {
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

/* ---- held back: a late member receives a causal chain out of order -------------- */

enum { CHAIN = 300 };

static int got_from_seq(void *arg) {
    group_wait *g = arg; /* count: the sender; each: the sequence to reach */
    return g->t->seen[g->count] >= g->each;
}

static int got_from(void *arg) {
    group_wait *g = arg; /* count: the sender; each: how many from it */
    return g->t->got[g->count] >= g->each;
}

/* A free port: bound, read and released (the member binds it right after). */
static uint16_t free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof a;
    uint16_t port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void test_held_back(void) {
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

static void test_back_pressure(void) {
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

static void test_room_and_acked(void) {
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

static void test_growth(void) {
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

static void test_forwarded(void) {
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

static void test_large(void) {
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

static void on_watchdog(int sig) {
    (void)sig;
    static const char msg[] = "node: watchdog: a test did not finish in time\n";
    if (write(2, msg, sizeof msg - 1) < 0)
        _exit(1);
    _exit(1);
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

static int both_up(void *arg) {
    tnode *t = arg;
    return t[0].up[1] && t[1].up[0];
}

/* One broadcast in flight at a time, so that every one finds the sending
 * loop idle or about to sleep: each must wake it (on_prepare and
 * cc_node_broadcast see each other's store), never wait for the tick. */
static void test_wake_ups(void) {
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

static void test_confirm(void) {
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

static void test_crash(void) {
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

/* ---- (n) hostile input ------------------------------------------------------------------ */

/* Slot 1, which knows slot 0: the slot the raw socket claims (with the key, in
 * the tests where a holder of the key misbehaves). Nobody dials slot 0. */
static int start_target(tnode *t, const cc_node_config *cfg) {
    cc_node_peer p = peer_at(0, 0);
    return start(t, cfg, &p, 1);
}

static void wait_events(tnode *t, int kind, int count) {
    ev_wait w = {.t = t, .kind = kind, .count = count};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(has_events, &w, WAIT_S));
    pthread_mutex_unlock(&mu);
}

static uint32_t width_of(tnode *t) {
    cc_node_stats st;
    cc_node_stats_get(t->node, &st);
    return st.width;
}

enum { WIDE = 65536, WIDEST_DEFAULT = 1024, GROW_PAST = 1100, W_WINDOW = 64, W_SENDS = 50 };

/* A holder of the key claims a huge group: in its HELLO, then in one MEMBERS
 * frame. The member never grows past its widest group (1024 by default),
 * says why, and takes the next connection as before. */
static void test_wide_groups(void) {
    /* Slot 1 the target, slot 2 a good member broadcasting with it all along;
     * both know slot 0, which the raw socket claims. */
    tnode t[3];
    memset(&t[0], 0, sizeof t[0]);
    uint16_t ports[3] = {0};
    for (int s = 2; s >= 1; s--) {
        cc_node_peer peers[2] = {peer_at(0, 0), peer_at(s == 1 ? 2 : 1, ports[s == 1 ? 2 : 1])};
        cc_node_config cfg = base_config((uint32_t)s, 3);
        cfg.send_window = W_WINDOW; /* a slot costs the engine ~0.5 KiB: a growth to 65536 stays affordable */
        REQUIRE(start(&t[s], &cfg, peers, 2));
        ports[s] = cc_node_port(t[s].node);
    }
    tnode *g = &t[1];
    uint16_t port = ports[1];
    pthread_t th[2];
    /* Within the window: slot 0 never acknowledges, so the window never opens. */
    sender s[2] = {{.t = &t[1], .from = 0, .to = W_SENDS}, {.t = &t[2], .from = 0, .to = W_SENDS}};
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, send_thread, &s[i]);

    /* A HELLO claiming 65536 members: refused before AUTH. */
    int fd = raw_handshake_as(port, WIDE);
    CHECK(fd < 0);
    if (fd >= 0)
        close(fd);
    expect_event(g, CC_NODE_REFUSED, 1, CC_EWIDTH, "HELLO: group wider than max_width");
    CHECK_EQ(width_of(g), 3);

    /* One 32-byte MEMBERS frame claiming 65536 members, on an authenticated link. */
    fd = raw_handshake_as(port, 3);
    REQUIRE(fd >= 0);
    pthread_mutex_lock(&mu);
    ev_wait upw = {.t = g, .kind = CC_NODE_PEER_UP, .count = 2}; /* slot 2, then the raw slot 0 */
    CHECK(wait_for(has_events, &upw, WAIT_S));
    CHECK_EQ(g->up[0], 1);
    pthread_mutex_unlock(&mu);
    uint8_t frame[64];
    CHECK(send_all(fd, frame, bare_frame(frame, CC_FRAME_MEMBERS, 0, WIDE, NULL, 0)));
    CHECK(eof_within(fd, 5000));
    close(fd);
    expect_event(g, CC_NODE_PROTOCOL, 1, CC_EWIDTH, "MEMBERS: group wider than max_width");
    expect_event(g, CC_NODE_PEER_DOWN, 1, CC_EWIDTH, "wider than max_width");
    CHECK_EQ(width_of(g), 3);

    /* The member carries on: it takes the next connection, and the good
     * link delivered every broadcast, never down. */
    fd = raw_handshake_as(port, 3);
    CHECK(fd >= 0);
    wait_events(g, CC_NODE_PEER_UP, 3);
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(s[i].rc, CC_OK);
    }
    group_wait pair = {.t = &t[1], .count = 2, .each = 2 * W_SENDS};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_delivered, &pair, WAIT_S));
    CHECK_EQ(t[1].violations, 0);
    CHECK_EQ(t[2].violations, 0);
    CHECK_EQ(t[1].up[2], 1);
    CHECK_EQ(t[2].downs, 0);
    CHECK_EQ(g->refused, 1);
    CHECK_EQ(g->protocol, 1);
    pthread_mutex_unlock(&mu);
    stop(&t[1]);
    stop(&t[2]);
}

/* MEMBERS frames growing the group one slot at a time, past the widest: up
 * to it (the room doubles, so that is a few copies, not one per slot), and
 * no further. */
static void test_growth_by_one(void) {
    tnode t;
    cc_node_config cfg = base_config(1, 2);
    cfg.send_window = W_WINDOW; /* as above */
    REQUIRE(start_target(&t, &cfg));
    uint16_t port = cc_node_port(t.node);
    int fd = raw_handshake_as(port, 3);
    REQUIRE(fd >= 0);
    wait_events(&t, CC_NODE_PEER_UP, 1);
    static uint8_t stream[GROW_PAST * CC_FRAME_HEADER_SIZE];
    size_t len = 0;
    for (uint32_t w = 4; w <= GROW_PAST; w++)
        len += bare_frame(stream + len, CC_FRAME_MEMBERS, 0, w, NULL, 0);
    send_all(fd, stream, len); /* the member may close the link before it takes them all */
    CHECK(eof_within(fd, 5000));
    close(fd);
    expect_event(&t, CC_NODE_PROTOCOL, 1, CC_EWIDTH, "MEMBERS: group wider than max_width");
    CHECK_EQ(width_of(&t), WIDEST_DEFAULT);
    fd = raw_handshake_as(port, 3); /* the member carries on */
    CHECK(fd >= 0);
    wait_events(&t, CC_NODE_PEER_UP, 2);
    if (fd >= 0)
        close(fd);
    stop(&t);
}

/* The widest group is an option: start, add_peer and HELLO keep to it. */
static void test_max_width(void) {
    tnode t;
    cc_node_config cfg = base_config(1, 8);
    cfg.max_width = 4;
    CHECK(!start_target(&t, &cfg)); /* a width of 8 is past it */
    stop(&t);
    cfg.width = 2;
    cfg.max_width = WIDE + 1;
    CHECK(!start_target(&t, &cfg)); /* past the widest a node supports */
    stop(&t);
    cfg.max_width = 4;
    REQUIRE(start_target(&t, &cfg));
    cc_node_peer p = peer_at(4, 1);
    CHECK_EQ(cc_node_add_peer(t.node, &p), CC_EWIDTH);
    p = peer_at(3, 1);
    CHECK_EQ(cc_node_add_peer(t.node, &p), CC_OK);
    CHECK_EQ(width_of(&t), 4);
    int fd = raw_handshake_as(cc_node_port(t.node), 5);
    CHECK(fd < 0);
    if (fd >= 0)
        close(fd);
    expect_event(&t, CC_NODE_REFUSED, 1, CC_EWIDTH, "wider than max_width");
    fd = raw_handshake_as(cc_node_port(t.node), 4);
    CHECK(fd >= 0);
    wait_events(&t, CC_NODE_PEER_UP, 1);
    if (fd >= 0)
        close(fd);
    stop(&t);
}

enum { HANDSHAKE_SLOTS = 64, FLOOD = HANDSHAKE_SLOTS + 16, FLOOD_SENDS = 100 };

/* A stranger without the key sends six bytes: a length prefix within
 * max_frame (almost 1 MiB) and two more. Refused at once, not waited for
 * with a read buffer grown to the frame. */
static void test_handshake_buffer(void) {
    tnode t;
    cc_node_config cfg = base_config(1, 2);
    cfg.handshake_ms = 30000; /* far past the wait below: the deadline does not close it */
    REQUIRE(start_target(&t, &cfg));
    uint16_t port = cc_node_port(t.node);
    int fd = raw_connect(port);
    REQUIRE(fd >= 0);
    uint8_t head[6];
    uint32_t length = CC_FRAME_DEFAULT_MAX - 64;
    memcpy(head, &length, 4);
    head[4] = CC_FRAME_VERSION;
    head[5] = CC_FRAME_HELLO;
    CHECK(send_all(fd, head, sizeof head));
    CHECK(eof_within(fd, 3000));
    close(fd);
    expect_event(&t, CC_NODE_REFUSED, 1, CC_ETOOBIG, cc_strerror(CC_ETOOBIG));
    fd = raw_handshake_as(port, 2); /* the member carries on */
    CHECK(fd >= 0);
    wait_events(&t, CC_NODE_PEER_UP, 1);
    if (fd >= 0)
        close(fd);
    stop(&t);
}

/* Strangers without the key open more silent connections than there are
 * handshake slots; they do not keep a member out. */
static void test_handshake_flood(void) {
    tnode t[2]; /* t[1] the target, t[0] a member that joins during the flood */
    memset(&t[0], 0, sizeof t[0]);
    cc_node_config cfg = base_config(1, 2);
    cfg.handshake_ms = 30000; /* far past the waits below: no handshake deadline rescues anyone */
    REQUIRE(start_target(&t[1], &cfg));
    uint16_t port = cc_node_port(t[1].node);

    /* Silent connections, more than the slots, then a member: it joins at
     * once (well within the handshake deadline) and its broadcasts get
     * through. Each connection past the slots, the member's included,
     * closes the oldest in the handshake (the first ones), not itself; the
     * kernel queued them all before the member dialed, so they are accepted
     * first. */
    int fds[FLOOD];
    for (int i = 0; i < FLOOD; i++) {
        fds[i] = raw_connect(port);
        REQUIRE(fds[i] >= 0);
    }
    cc_node_config cb = base_config(0, 2);
    cc_node_peer p1 = peer_at(1, port);
    REQUIRE(start(&t[0], &cb, &p1, 1));
    pthread_mutex_lock(&mu);
    CHECK(wait_for(both_up, t, 5));
    pthread_mutex_unlock(&mu);
    CHECK(eof_within(fds[0], 3000));
    CHECK(eof_within(fds[FLOOD - HANDSHAKE_SLOTS], 3000)); /* the oldest when the member came */
    expect_event(&t[1], CC_NODE_REFUSED, 1 + FLOOD - HANDSHAKE_SLOTS, CC_EFULL, "handshake slots full");
    sender s = {.t = &t[0], .from = 0, .to = FLOOD_SENDS};
    send_thread(&s);
    CHECK_EQ(s.rc, CC_OK);
    group_wait g = {.t = &t[1], .each = FLOOD_SENDS};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(delivered_n, &g, WAIT_S));
    CHECK_EQ(t[1].got[0], FLOOD_SENDS);
    CHECK_EQ(t[1].violations, 0);
    CHECK_EQ(t[0].refused, 0);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < FLOOD; i++)
        close(fds[i]);
    stop(&t[0]);
    stop(&t[1]);
}

enum { P_WINDOW = 16, P_AHEAD = 100 };

/* A holder of the key sends a message too far ahead (past the engine's
 * look-ahead, the send window) and then nothing: the link pauses at it, and
 * still times out. Nothing of it was accepted, so after a reconnect the
 * sender's first message is delivered as usual. */
static void test_paused_too_long(void) {
    tnode t;
    cc_node_config cfg = base_config(1, 2);
    cfg.send_window = P_WINDOW;
    cfg.timeout_ms = 500;
    REQUIRE(start_target(&t, &cfg));
    uint16_t port = cc_node_port(t.node);
    int fd = raw_handshake_as(port, 2);
    REQUIRE(fd >= 0);
    wait_events(&t, CC_NODE_PEER_UP, 1);
    uint8_t frame[512], buf[128];
    uint64_t clock[2] = {P_AHEAD, 0};
    cc_frame h = {.type = CC_FRAME_MESSAGE, .level = CC_LEVEL_LOW, .sender = 0, .seq = P_AHEAD};
    int64_t len = cc_frame_encode(frame, sizeof frame, &h, clock, NULL, 2, buf, payload(buf, 0, P_AHEAD - 1));
    REQUIRE(len > 0);
    CHECK(send_all(fd, frame, (size_t)len));
    CHECK(eof_within(fd, 5000)); /* its heartbeats keep coming meanwhile; the link goes all the same */
    close(fd);
    expect_event(&t, CC_NODE_PEER_DOWN, 1, CC_EAHEAD, "too far ahead");

    fd = raw_handshake_as(port, 2);
    REQUIRE(fd >= 0);
    wait_events(&t, CC_NODE_PEER_UP, 2);
    clock[0] = 1;
    h.seq = 1;
    len = cc_frame_encode(frame, sizeof frame, &h, clock, NULL, 2, buf, payload(buf, 0, 0));
    REQUIRE(len > 0);
    CHECK(send_all(fd, frame, (size_t)len));
    group_wait g = {.t = &t, .each = 1};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(delivered_n, &g, WAIT_S));
    CHECK_EQ(t.got[0], 1);
    CHECK_EQ(t.violations, 0);
    pthread_mutex_unlock(&mu);
    close(fd);
    stop(&t);
}

typedef struct area {
    const char *name;
    void (*run)(void);
} area;

void cc_test_node(void) {
    signal(SIGALRM, on_watchdog);
    signal(SIGPIPE, SIG_IGN);
    static const area tests[] = {
        {"group", test_group},
        {"wrong key", test_wrong_key},
        {"raw sockets", test_raw_sockets},
        {"cut connections", test_cut_connections},
        {"restart", test_restart},
        {"held back", test_held_back},
        {"back-pressure", test_back_pressure},
        {"room and acked", test_room_and_acked},
        {"growth", test_growth},
        {"forwarded", test_forwarded},
        {"large payloads", test_large},
        {"wake-ups", test_wake_ups},
        {"confirm", test_confirm},
        {"crash", test_crash},
        {"wide groups", test_wide_groups},
        {"growth by one", test_growth_by_one},
        {"max width", test_max_width},
        {"handshake buffer", test_handshake_buffer},
        {"handshake flood", test_handshake_flood},
        {"paused too long", test_paused_too_long},
    };
    const char *only = getenv("CC_NODE_TEST");
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (only && !strstr(tests[i].name, only))
            continue;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        alarm(60); /* generous for valgrind; each test takes well under a second natively */
        tests[i].run();
        alarm(0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (getenv("CC_NODE_VERBOSE"))
            fprintf(stderr, "node: %-16s %.2f s\n", tests[i].name,
                    (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9);
    }
    signal(SIGALRM, SIG_DFL);
}

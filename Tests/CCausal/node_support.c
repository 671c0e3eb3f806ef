/* The harness of the cc_node tests (node_support.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cc_delivery.h"
#include "cc_error.h"
#include "cc_frame.h"
#include "cc_loop.h"
#include "cc_test.h"
#include "node_support.h"

pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

const uint8_t KEY[CC_NODE_KEY_SIZE] = "0123456789abcdef0123456789abcdef";

const uint8_t BAD_KEY[CC_NODE_KEY_SIZE] = "fedcba9876543210fedcba9876543210";

struct timespec deadline_in(int s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += s;
    return ts;
}

/* Waits (mu held) until pred holds or the deadline passes; returns pred. */
int wait_for(int (*pred)(void *), void *arg, int seconds) {
    struct timespec dl = deadline_in(seconds);
    while (!pred(arg)) {
        if (pthread_cond_timedwait(&cv, &mu, &dl) == ETIMEDOUT)
            return pred(arg);
    }
    return 1;
}

/* Waits for a condition that no callback signals (a counter in the stats):
 * wakes every 5 ms to look again, up to the deadline. */
int poll_for(int (*pred)(void *), void *arg, int seconds) {
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

/* ---- callbacks ---------------------------------------------------------- */

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

/* ---- helpers ------------------------------------------------------------ */

cc_node_config base_config(uint32_t slot, uint32_t width) {
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

cc_node_peer peer_at(uint32_t slot, uint16_t port) {
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
int start_from(tnode *t, const tnode *old, const cc_node_config *cfg, const cc_node_peer *peers, size_t np) {
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

int start(tnode *t, const cc_node_config *cfg, const cc_node_peer *peers, size_t np) {
    return start_from(t, NULL, cfg, peers, np);
}

/* Starts `count` members of one group, highest slot first: a member only
 * dials higher slots, so every address it dials is known by then, and lower
 * slots it only accepts (their port is learnt from their MEMBERS frame). */
int start_group(tnode *t, uint32_t count, uint32_t width, cc_node_config (*tweak)(cc_node_config)) {
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

int delivered_n(void *arg) {
    group_wait *g = arg;
    return g->t->delivered >= g->each;
}

int is_closed(void *arg) {
    return ((tnode *)arg)->closed;
}

/* Closes the node (its `closed` callback must come), then stops its loop. */
void stop(tnode *t) {
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
size_t payload(uint8_t *buf, uint32_t slot, uint32_t idx) {
    size_t len = 8 + idx % 64;
    memcpy(buf, &slot, 4);
    memcpy(buf + 4, &idx, 4);
    for (size_t i = 8; i < len; i++)
        buf[i] = (uint8_t)(idx + i);
    return len;
}

uint8_t level_of(uint32_t idx) {
    return idx % 97 == 0   ? CC_LEVEL_CRITICAL
           : idx % 13 == 0 ? CC_LEVEL_HIGH
           : idx % 7 == 0  ? CC_LEVEL_MEDIUM
                           : CC_LEVEL_LOW;
}

void *send_thread(void *arg) {
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

int all_delivered(void *arg) {
    group_wait *g = arg;
    for (int i = 0; i < g->count; i++) {
        if (g->t[i].delivered < g->each)
            return 0;
    }
    return 1;
}

int all_up(void *arg) {
    group_wait *g = arg;
    for (int i = 0; i < g->count; i++) {
        for (int k = 0; k < g->count; k++) {
            if (k != i && g->t[i].up[k] == 0)
                return 0;
        }
    }
    return 1;
}

int all_acked(void *arg) {
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
int wait_acked(group_wait *g) {
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

size_t node_clock(tnode *t, uint64_t *out) {
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
void check_clocks(tnode *t, int count, const uint64_t *expect, size_t width) {
    for (int i = 0; i < count; i++) {
        uint64_t c[MAXW] = {0};
        CHECK_EQ(node_clock(&t[i], c), width);
        for (size_t k = 0; k < width; k++)
            CHECK_EQ(c[k], expect[k]);
    }
}

/* Every node broadcasts its numbers from..to-1 (the joiner of the growth
 * test counts from 0: its n-th broadcast has sequence n). */
void run_senders(tnode *t, int count, uint32_t from, uint32_t to) {
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

cc_node_config with_state(cc_node_config c) {
    static char dirs[MAXW][64];
    snprintf(dirs[c.self], sizeof dirs[c.self], "/tmp/cc_node_test_%d_%u", (int)getpid(), c.self);
    c.state_dir = dirs[c.self];
    return c;
}

void remove_state(uint32_t slot) {
    char path[128];
    static const char *files[] = {"state", "state.tmp", "log", "log.tmp"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "/tmp/cc_node_test_%d_%u/%s", (int)getpid(), slot, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "/tmp/cc_node_test_%d_%u", (int)getpid(), slot);
    rmdir(path);
}

int got_from_seq(void *arg) {
    group_wait *g = arg; /* count: the sender; each: the sequence to reach */
    return g->t->seen[g->count] >= g->each;
}

int got_from(void *arg) {
    group_wait *g = arg; /* count: the sender; each: how many from it */
    return g->t->got[g->count] >= g->each;
}

/* A free port: bound, read and released (the member binds it right after). */
uint16_t free_port(void) {
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

int both_up(void *arg) {
    tnode *t = arg;
    return t[0].up[1] && t[1].up[0];
}

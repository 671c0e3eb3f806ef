/* A member of a causal broadcast group: the group logic (see cc_node.h).
 *
 * Other threads reach the loop the way cc_inbox does: a broadcast takes a
 * block from the pool (send_window blocks: an empty pool is the window being
 * full), copies its payload in and pushes the block on a bounded queue; one
 * uv_async_t wakes the loop. Producers touch the async handle only between an
 * increment and a decrement of `users`, after checking `closed`; the loop
 * closes the handle only after setting `closed` and seeing `users` at zero
 * (both seq-cst, so either the producer sees closed or the loop sees it).
 *
 * On the loop thread a broadcast is stamped by the engine, its header and
 * clock are encoded once into the log entry for its sequence, it is delivered
 * locally and written to every authenticated peer (node_link.c). The entry
 * and its block are released when every known peer has acknowledged it.
 *
 * A received message is delivered straight from the read buffer when it is
 * causally ready (the common case); only a message that must wait is copied,
 * into a block from per-size free lists that grow to the high-water mark and
 * are then reused, so the steady state allocates nothing. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cc_error.h"
#include "cc_frame.h"
#include "node_internal.h"

_Static_assert(offsetof(rxmsg, head) == 0, "a cc_msg from the engine is its rxmsg");
_Static_assert(CC_CACHE_LINE % 2 == 0, "pool blocks leave the low pointer bit free for the request tag");

#define REQ_TAG ((uintptr_t)1)
#define BATCH 64
#define BUDGET 4096

/* ---- small helpers --------------------------------------------------------- */

void cc__node_emit(cc_node *n, cc_node_event_kind kind, uint32_t slot, int code, const char *reason,
                   const char *address) {
    if (!n->cb.event || n->closing)
        return;
    cc_node_event e = {.kind = kind,
                       .slot = slot,
                       .code = code,
                       .width = n->width,
                       .port = atomic_load_explicit(&n->port, memory_order_relaxed),
                       .reason = reason ? reason : "",
                       .address = address && address[0] ? address : NULL};
    n->cb.event(n->cb.ctx, &e);
}

static void wait_for_users(cc_node *n) {
    unsigned spins = 0;
    while (atomic_load(&n->users) != 0) {
        if (++spins > 64)
            sched_yield();
    }
}

static int valid_host(const char *host, uint16_t port) {
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    if (!host || !host[0] || strlen(host) >= CC_NODE_HOST_MAX)
        return 0;
    return uv_ip4_addr(host, port, &a4) == 0 || uv_ip6_addr(host, port, &a6) == 0;
}

static void sync_stats(cc_node *n) {
    node_set(&n->stats.pending, n->engine.pending);
    node_set(&n->stats.unacked, n->log_hi + 1 - n->log_lo);
    atomic_store_explicit(&n->stats.width, n->width, memory_order_relaxed);
}

/* ---- held-back message blocks ------------------------------------------------ */

static rxmsg *rx_get(cc_node *n, uint32_t width, uint32_t length) {
    size_t need = sizeof(rxmsg) + (size_t)width * sizeof(uint64_t) + length;
    unsigned cls = 0;
    while (cls < NODE_RX_CLASSES && ((size_t)256 << cls) < need)
        cls++;
    if (cls == NODE_RX_CLASSES)
        return NULL;
    rxmsg *r = n->rx_free[cls];
    if (r) {
        n->rx_free[cls] = r->free;
        return r;
    }
    /* Warm-up only: a class grows to the most messages of that size held at
     * once (bounded by the engine's capacity), then its blocks are reused. */
    r = malloc((size_t)256 << cls);
    if (!r)
        return NULL;
    r->cls = (uint8_t)cls;
    r->clock = (uint64_t *)(r + 1);
    r->all = n->rx_all;
    n->rx_all = r;
    return r;
}

static void rx_put(cc_node *n, rxmsg *r) {
    r->free = n->rx_free[r->cls];
    n->rx_free[r->cls] = r;
}

/* ---- growth -------------------------------------------------------------------- */

/* Widens the clock: the engine, the peer table and the clock buffers. Frames
 * already in the log keep the width they were stamped with (receivers pad). */
int cc__node_grow(cc_node *n, uint32_t width) {
    if (width <= n->width)
        return CC_OK;
    if (width > NODE_WIDTH_MAX)
        return CC_EWIDTH;
    int rc = cc_delivery_grow(&n->engine, width);
    if (rc != CC_OK)
        return rc;
    node_peer **peers = realloc(n->peers, (size_t)width * sizeof *peers);
    if (!peers)
        return CC_ENOMEM;
    memset(peers + n->width, 0, (size_t)(width - n->width) * sizeof *peers);
    n->peers = peers;
    void **retired = realloc(n->retired, (n->nretired + 2) * sizeof *retired);
    if (!retired)
        return CC_ENOMEM;
    n->retired = retired;
    uint64_t *sc = calloc(width, sizeof *sc), *rc2 = calloc(width, sizeof *rc2);
    if (!sc || !rc2) {
        free(sc);
        free(rc2);
        return CC_ENOMEM;
    }
    memcpy(sc, n->sendclock, (size_t)n->width * sizeof *sc);
    if (n->durable) {
        uint64_t *d = realloc(n->durable, (size_t)width * sizeof *d);
        if (!d) {
            free(sc);
            free(rc2);
            return CC_ENOMEM;
        }
        memset(d + n->width, 0, (size_t)(width - n->width) * sizeof *d);
        n->durable = d;
    }
    n->retired[n->nretired++] = n->sendclock;
    n->retired[n->nretired++] = n->scratch_clock;
    n->sendclock = sc;
    n->scratch_clock = rc2;
    n->width = width;
    sync_stats(n);
    return CC_OK;
}

static int add_peer(cc_node *n, const cc_node_peer *p, int announce) {
    if (p->slot == n->cfg.self || p->slot >= NODE_WIDTH_MAX || !valid_host(p->host, p->port))
        return CC_EINVAL;
    if (p->slot < n->width && n->peers[p->slot])
        return CC_EINVAL;
    int rc = cc__node_grow(n, p->slot + 1);
    if (rc != CC_OK)
        return rc;
    node_peer *np = calloc(1, sizeof *np);
    if (!np)
        return CC_ENOMEM;
    np->addr = *p;
    np->addr.host[CC_NODE_HOST_MAX - 1] = 0;
    np->backoff = n->cfg.reconnect_min_ms;
    np->dial_at = uv_now(cc_loop_uv(n->loop));
    n->peers[p->slot] = np;
    if (!announce)
        return CC_OK; /* start-up peers: not news */
    cc__node_emit(n, CC_NODE_MEMBER_ADDED, p->slot, 0, "member added", NULL);
    if (n->closing)
        return CC_OK;
    if (n->cfg.self < p->slot)
        cc__link_dial(n, np);
    return CC_OK;
}

/* MEMBERS payload: records of slot (u32) | port (u16) | host length (u8) | host. */
size_t cc__node_members_payload(cc_node *n, uint8_t *out, size_t cap) {
    size_t len = 0;
    for (uint32_t s = 0; s < n->width; s++) {
        const char *host;
        uint16_t port;
        if (s == n->cfg.self) {
            host = n->listen_host;
            port = atomic_load_explicit(&n->port, memory_order_relaxed);
        } else if (n->peers[s]) {
            host = n->peers[s]->addr.host;
            port = n->peers[s]->addr.port;
        } else {
            continue;
        }
        size_t hl = strlen(host);
        if (out) {
            if (len + 7 + hl > cap)
                return 0;
            node_wr32(out + len, s);
            out[len + 4] = (uint8_t)port, out[len + 5] = (uint8_t)(port >> 8);
            out[len + 6] = (uint8_t)hl;
            memcpy(out + len + 7, host, hl);
        }
        len += 7 + hl;
    }
    return len;
}

static void announce_members(cc_node *n) {
    for (node_conn *c = n->conns; c; c = c->next) {
        if (c->state != CONN_UP)
            continue;
        size_t len = cc__node_members_payload(n, NULL, 0);
        uint8_t *buf = malloc(len ? len : 1); /* membership changes are rare: not the hot path */
        if (!buf)
            return;
        cc__node_members_payload(n, buf, len);
        cc__link_ctl_frame(c, CC_FRAME_MEMBERS, 0, buf, len);
        free(buf);
        cc__link_flush(c);
    }
}

int cc__node_on_members(cc_node *n, node_conn *c, const uint8_t *p, size_t len) {
    size_t off = 0;
    int added = 0;
    while (off < len) {
        if (len - off < 7)
            return CC_ELENGTH;
        uint32_t slot = node_rd32(p + off);
        uint16_t port = (uint16_t)(p[off + 4] | p[off + 5] << 8);
        size_t hl = p[off + 6];
        if (len - off - 7 < hl || hl >= CC_NODE_HOST_MAX)
            return CC_ELENGTH;
        cc_node_peer peer = {.slot = slot, .port = port};
        memcpy(peer.host, p + off + 7, hl);
        peer.host[hl] = 0;
        off += 7 + hl;
        if (slot == n->cfg.self)
            continue;
        if (slot < n->width && n->peers[slot]) {
            /* A member knows its own address best: follow it when it moved. */
            node_peer *np = n->peers[slot];
            if (slot == c->slot && valid_host(peer.host, port))
                np->addr = peer;
            continue;
        }
        if (slot >= NODE_WIDTH_MAX)
            return CC_EWIDTH;
        if (add_peer(n, &peer, 1) == CC_OK)
            added++;
        if (n->closing || c->state == CONN_CLOSING)
            return CC_OK;
    }
    (void)added;
    return CC_OK;
}

/* ---- the log ----------------------------------------------------------------- */

/* Releases the own broadcasts every known peer has acknowledged, but never
 * one that a write in flight still points at (libuv reads the buffers until
 * the write callback). */
void cc__node_trim(cc_node *n) {
    uint64_t lim = n->log_hi;
    for (uint32_t s = 0; s < n->width && lim >= n->log_lo; s++) {
        if (n->peers[s] && n->peers[s]->acked < lim)
            lim = n->peers[s]->acked;
    }
    for (node_conn *c = n->conns; c; c = c->next) {
        if (c->wr_busy && c->wr_lo != UINT64_MAX && c->wr_lo - 1 < lim)
            lim = c->wr_lo - 1;
    }
    while (n->log_lo <= lim) {
        log_entry *e = &n->log[n->log_lo % n->cfg.send_window];
        cc_pool_put(&n->pool, e->b);
        e->b = NULL;
        n->log_lo++;
    }
    sync_stats(n);
}

/* ---- delivery ------------------------------------------------------------------ */

static void deliver_one(cc_node *n, const rxmsg *r) {
    cc_node_message m = {.sender = r->head.sender,
                         .level = r->head.level,
                         .kind = r->kind,
                         .clock = r->head.clock,
                         .width = r->head.width,
                         .payload = r->payload,
                         .length = r->length};
    n->progress++;
    node_bump(&n->stats.delivered, 1);
    n->cb.deliver(n->cb.ctx, &m);
}

void cc__node_drain(cc_node *n) {
    cc_msg *m;
    while (!n->closing && (m = cc_delivery_next(&n->engine)) != NULL) {
        rxmsg *r = (rxmsg *)m;
        node_set(&n->stats.pending, n->engine.pending);
        deliver_one(n, r);
        if (r != &n->scratch)
            rx_put(n, r);
    }
    node_set(&n->stats.pending, n->engine.pending);
}

/* A peer's oldest retained broadcast is `first`: everything before it was
 * acknowledged by every member that peer knew, so a member that has none of
 * them (it just joined) starts after them rather than waiting forever. For a
 * member the peer already knew this is a no-op: the peer keeps what we have
 * not acknowledged, and we acknowledge only what we delivered. */
static void skip_before(cc_node *n, uint32_t slot, uint64_t first) {
    uint64_t *local = n->engine.local;
    if (first < 2 || local[slot] + 1 >= first)
        return;
    /* cc_delivery_send raises local[slot] by one and wakes the heads that
     * waited on it: exactly the effect of having delivered up to first - 1. */
    local[slot] = first - 2;
    cc_delivery_send(&n->engine, slot, NULL);
    cc__node_drain(n);
}

void cc__node_peer_up(cc_node *n, node_conn *c) {
    node_peer *p = c->peer;
    if (p->conn && p->conn != c)
        cc__link_close(p->conn, CC_NODE_PEER_DOWN, CC_ECLOSED, "replaced by a new connection");
    p->conn = c;
    c->state = CONN_UP;
    n->nhandshaking--;
    if (c->peer_width > n->width)
        cc__node_grow(n, c->peer_width < NODE_WIDTH_MAX ? c->peer_width : NODE_WIDTH_MAX);
    uint64_t has = c->peer_has < n->log_hi ? c->peer_has : n->log_hi;
    if (has > p->acked)
        p->acked = has;
    c->next_send = has + 1 > n->log_lo ? has + 1 : n->log_lo;
    uint64_t again_hi = p->sent_hi < n->log_hi ? p->sent_hi : n->log_hi;
    if (again_hi >= c->next_send)
        node_bump(&n->stats.resent, again_hi - c->next_send + 1);
    if (p->ever_up)
        node_bump(&n->stats.reconnects, 1);
    p->ever_up = 1;
    p->backoff = n->cfg.reconnect_min_ms;
    atomic_fetch_add_explicit(&n->stats.peers_up, 1, memory_order_relaxed);
    c->ack_sent = UINT64_MAX; /* acknowledge once at once: the peer may trim */

    /* Tell the peer the whole membership: a member that was down when the
     * group grew learns it here. */
    size_t len = cc__node_members_payload(n, NULL, 0);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf) {
        cc__node_members_payload(n, buf, len);
        cc__link_ctl_frame(c, CC_FRAME_MEMBERS, 0, buf, len);
        free(buf);
    }
    cc__node_emit(n, CC_NODE_PEER_UP, c->slot, 0, "handshake done", c->addr);
    if (n->closing || c->state != CONN_UP)
        return;
    skip_before(n, c->slot, c->peer_log_lo);
    if (n->closing || c->state != CONN_UP)
        return;
    cc__node_trim(n);
    cc__link_flush(c);
}

/* A MESSAGE frame from an authenticated peer. */
int cc__node_on_message(cc_node *n, node_conn *c, const void *frame) {
    const cc_frame *f = frame;
    uint32_t s = f->sender;
    if (s != c->slot) {
        cc__link_close(c, CC_NODE_PROTOCOL, CC_ESENDER, "message from another slot than the peer's");
        return NODE_FRAME_CLOSED;
    }
    if (f->flags & CC_FRAME_FLAG_SPARSE) {
        cc__link_close(c, CC_NODE_PROTOCOL, CC_ESPARSE, "sparse clocks are not used on this link");
        return NODE_FRAME_CLOSED;
    }
    if (f->width > n->width) {
        /* A known member already counts a member we have not heard of yet. */
        int rc = cc__node_grow(n, f->width);
        if (rc != CC_OK) {
            cc__link_close(c, CC_NODE_PROTOCOL, rc, cc_strerror(rc));
            return NODE_FRAME_CLOSED;
        }
    }
    rxmsg *sc = &n->scratch;
    sc->clock = n->scratch_clock;
    int rc = cc_frame_clock(f, sc->clock, f->width);
    if (rc != CC_OK) {
        cc__link_close(c, CC_NODE_PROTOCOL, rc, cc_strerror(rc));
        return NODE_FRAME_CLOSED;
    }
    const uint64_t *local = n->engine.local;
    uint64_t seq = sc->clock[s];
    if (seq == 0 || f->seq != seq) {
        cc__link_close(c, CC_NODE_PROTOCOL, CC_EINVAL, "message sequence does not match its clock");
        return NODE_FRAME_CLOSED;
    }
    if (seq <= local[s]) {
        node_bump(&n->stats.duplicates, 1); /* normal after a resend */
        return NODE_FRAME_DONE;
    }
    /* Ready now? Then the engine delivers it in this drain, before anything
     * reuses the read buffer: no copy. */
    int ready = seq == local[s] + 1;
    for (uint32_t k = 0; ready && k < f->width; k++)
        ready = k == s || sc->clock[k] <= local[k];
    rxmsg *r = sc;
    if (!ready) {
        /* Keep the engine's last slot for a ready message. Without it the
         * pending set could fill with messages waiting on a sender whose
         * next (ready) message then finds no room: every reader would pause
         * and nothing would ever be delivered. With it, the causally first
         * undelivered message, which heads its sender's stream, always gets
         * in, and each delivery lets paused readers try again. */
        if (n->engine.pending + 1 >= n->engine.capacity)
            return NODE_FRAME_PAUSE;
        r = rx_get(n, f->width, f->payload_len);
        if (!r)
            return NODE_FRAME_PAUSE; /* out of memory: wait for deliveries to free blocks */
        memcpy(r->clock, sc->clock, (size_t)f->width * sizeof(uint64_t));
        memcpy((uint8_t *)(r->clock + f->width), f->payload, f->payload_len);
        r->payload = (const uint8_t *)(r->clock + f->width);
    } else {
        r->payload = f->payload;
    }
    r->head.clock = r->clock;
    r->head.width = f->width;
    r->head.sender = s;
    r->head.level = f->level;
    r->kind = f->kind;
    r->length = f->payload_len;
    rc = cc_delivery_offer(&n->engine, &r->head);
    if (rc != CC_OK && r != sc)
        rx_put(n, r);
    switch (rc) {
    case CC_OK:
        if (ready)
            cc__node_drain(n);
        node_set(&n->stats.pending, n->engine.pending);
        return NODE_FRAME_DONE;
    case CC_EDUPLICATE: node_bump(&n->stats.duplicates, 1); return NODE_FRAME_DONE;
    case CC_EFULL:
    case CC_EAHEAD: return NODE_FRAME_PAUSE; /* not accepted, not acknowledged: read it again later */
    default: cc__link_close(c, CC_NODE_PROTOCOL, rc, cc_strerror(rc)); return NODE_FRAME_CLOSED;
    }
}

/* ---- own broadcasts -------------------------------------------------------- */

static int encode_entry(cc_node *n, log_entry *e, const node_bcast *b, uint64_t seq) {
    size_t need = CC_FRAME_HEADER_SIZE + (size_t)n->width * sizeof(uint64_t);
    if (e->hdr_cap < need) {
        /* The entry is free (trimmed), so no write points at it. Happens once
         * per entry, and again only when the width grows. */
        uint8_t *h = realloc(e->hdr, need);
        if (!h)
            return CC_ENOMEM;
        e->hdr = h;
        e->hdr_cap = (uint32_t)need;
    }
    cc_frame h = {
        .type = CC_FRAME_MESSAGE, .level = b->level, .sender = n->cfg.self, .kind = b->kind, .seq = seq};
    int64_t size = cc_frame_encode(e->hdr, e->hdr_cap, &h, n->sendclock, NULL, n->width, NULL, 0);
    if (size < 0)
        return (int)size;
    /* The payload stays in its block and goes out as a second iovec; the
     * length prefix covers it. */
    node_wr32(e->hdr, (uint32_t)(size - 4 + b->length));
    e->hdr_len = (uint32_t)size;
    return CC_OK;
}

/* Stamps a broadcast and files it in the log; it is persisted, delivered
 * and written after the whole batch is stamped (see on_async). */
static uint64_t stamp(cc_node *n, node_bcast *b) {
    uint64_t seq = cc_delivery_send(&n->engine, n->cfg.self, n->sendclock);
    log_entry *e = &n->log[seq % n->cfg.send_window];
    if (encode_entry(n, e, b, seq) != CC_OK) {
        /* Only an allocation can fail here (first use of the entry). The
         * sequence is taken; peers will wait for it, as for a lost member. */
        e->hdr_len = 0;
    }
    e->b = b;
    n->log_hi = seq;
    node_bump(&n->stats.sent, 1);
    return seq;
}

/* Delivers an own broadcast from its log entry: its clock is the one
 * encoded in the entry (later stamps of the same batch moved sendclock on). */
static void deliver_own(cc_node *n, uint64_t seq) {
    log_entry *e = &n->log[seq % n->cfg.send_window];
    uint32_t w = e->hdr_len ? node_rd32(e->hdr + 12) : 0;
    for (uint32_t k = 0; k < w; k++)
        n->sendclock[k] = node_rd64(e->hdr + CC_FRAME_HEADER_SIZE + (size_t)k * 8);
    if (!e->hdr_len) {
        memcpy(n->sendclock, n->engine.local, (size_t)n->width * sizeof(uint64_t));
        w = n->width;
    }
    rxmsg own;
    own.clock = n->sendclock;
    own.head.clock = n->sendclock;
    own.head.width = w;
    own.head.sender = n->cfg.self;
    own.head.level = e->b->level;
    own.kind = e->b->kind;
    own.length = e->b->length;
    own.payload = (const uint8_t *)e->b + NODE_BCAST_PAYLOAD;
    deliver_one(n, &own);
}

static void handle_req(cc_node *n, node_req *r) {
    switch (r->kind) {
    case REQ_ADD_PEER:
        r->rc = n->closing || n->close_begun ? CC_ECLOSED : add_peer(n, &r->peer, 1);
        if (r->rc == CC_OK)
            announce_members(n);
        break;
    case REQ_DROP:
        for (node_conn *c = n->conns; c; c = c->next)
            cc__link_close(c, c->state == CONN_UP ? CC_NODE_PEER_DOWN : 0, CC_ECLOSED, "connection dropped");
        r->rc = CC_OK;
        break;
    default: r->rc = CC_EINVAL;
    }
    uv_sem_post(&r->done);
}

static void begin_close(cc_node *n);

/* Takes up to `budget` items off the queue: broadcasts are stamped,
 * recorded in the state folder, then delivered; requests run (or fail with
 * CC_ECLOSED when `final`). Returns how many items it took. */
static size_t process_queue(cc_node *n, size_t budget, int final, size_t *sends) {
    void *batch[BATCH];
    size_t done = 0;
    while (done < budget && !n->closing) {
        if (!final && atomic_load_explicit(&n->closed, memory_order_relaxed))
            break;
        size_t k = cc_queue_pop_batch(&n->queue, batch, BATCH);
        if (k == 0)
            break;
        /* Nothing is delivered or sent before the state folder has it: a
         * restart must not give a sequence a second meaning. */
        uint64_t first = n->log_hi + 1;
        for (size_t i = 0; i < k; i++) {
            if ((uintptr_t)batch[i] & REQ_TAG)
                continue;
            if (n->closing)
                cc_pool_put(&n->pool, batch[i]);
            else
                stamp(n, batch[i]);
        }
        uint64_t last = n->log_hi;
        if (last >= first) {
            *sends += last - first + 1;
            sync_stats(n); /* before the deliver callbacks: they may read the counters */
            cc__node_append_log(n, first, last);
            for (uint64_t seq = first; seq <= last && !n->closing; seq++)
                deliver_own(n, seq);
            cc__node_drain(n); /* heads that waited on our own slot */
            if (!n->closing)
                cc__node_trim(n); /* with no peers the entries go at once */
        }
        for (size_t i = 0; i < k; i++) {
            if (!((uintptr_t)batch[i] & REQ_TAG))
                continue;
            node_req *r = (node_req *)((uintptr_t)batch[i] & ~REQ_TAG);
            if (n->closing || final) {
                r->rc = CC_ECLOSED;
                uv_sem_post(&r->done);
            } else {
                handle_req(n, r);
            }
        }
        done += k;
    }
    return done;
}

static void on_async(uv_async_t *h) {
    cc_node *n = h->data;
    if (n->closing || n->close_begun)
        return;
    size_t sends = 0;
    size_t done = process_queue(n, BUDGET, 0, &sends);
    if (n->closing || n->close_begun)
        return;
    if (atomic_load(&n->closed)) {
        begin_close(n);
        return;
    }
    /* One write per peer for the whole batch of broadcasts. */
    if (sends)
        cc__link_flush_all(n);
    cc__link_after_io(n);
    if (done >= BUDGET)
        uv_async_send(&n->async);
}

/* ---- close ------------------------------------------------------------------- */

static void node_free(cc_node *n) {
    for (uint32_t s = 0; s < n->width; s++)
        free(n->peers ? n->peers[s] : NULL);
    free(n->peers);
    free(n->sendclock);
    free(n->durable);
    free(n->scratch_clock);
    for (size_t i = 0; i < n->nretired; i++)
        free(n->retired[i]);
    free(n->retired);
    if (n->log) {
        for (uint32_t i = 0; i < n->cfg.send_window; i++)
            free(n->log[i].hdr);
        free(n->log);
    }
    while (n->rx_all) {
        rxmsg *r = n->rx_all;
        n->rx_all = r->all;
        free(r);
    }
    if (n->state_fd_log >= 0)
        close(n->state_fd_log);
    free(n->state_dir);
    cc_delivery_destroy(&n->engine);
    cc_queue_destroy(&n->queue);
    cc_pool_destroy(&n->pool);
    free(n);
}

static void finish_close(cc_node *n) {
    wait_for_users(n);
    if (n->joined)
        cc__loop_member_closed(n->loop, &n->member);
    /* Nobody can push any more: fail the requests still queued (their
     * callers wait on them). Broadcast blocks die with the pool. */
    void *item;
    while ((item = cc_queue_pop(&n->queue)) != NULL) {
        if ((uintptr_t)item & REQ_TAG) {
            node_req *r = (node_req *)((uintptr_t)item & ~REQ_TAG);
            r->rc = CC_ECLOSED;
            uv_sem_post(&r->done);
        }
    }
    if (!n->start_failed) {
        cc__node_save_state(n);
        if (n->cb.closed)
            n->cb.closed(n->cb.ctx);
    }
    node_free(n);
}

void cc__node_release(cc_node *n) {
    if (--n->handles == 0 && n->closing)
        finish_close(n);
}

void cc__node_handle_closed(uv_handle_t *h) {
    cc__node_release(h->data);
}

static void begin_close(cc_node *n) {
    if (n->closing || n->close_begun)
        return;
    n->close_begun = 1;
    atomic_store(&n->closed, 1);
    wait_for_users(n); /* nobody is inside uv_async_send on our handle, nor pushing, any more */
    if (!n->start_failed) {
        /* A broadcast that returned CC_OK is not dropped: it is stamped,
         * recorded, delivered here and written to the peers still up (with
         * a state folder it is resent after a restart if that write is cut). */
        size_t sends = 0;
        process_queue(n, SIZE_MAX, 1, &sends);
        if (sends && !n->closing)
            cc__link_flush_all(n);
        if (!n->closing)
            cc__node_save_state(n);
    }
    n->closing = 1;
    for (node_conn *c = n->conns; c; c = c->next)
        cc__link_close(c, 0, 0, NULL);
    uv_handle_t *own[3] = {(uv_handle_t *)&n->listener, (uv_handle_t *)&n->timer, (uv_handle_t *)&n->async};
    for (int i = 0; i < 3; i++) {
        if (own[i]->data == n && !uv_is_closing(own[i]))
            uv_close(own[i], cc__node_handle_closed);
    }
    /* handles never reaches zero above while the async handle is open, so
     * finish_close runs from the last close callback. */
}

static void on_loop_stop(cc__loop_member *m) {
    begin_close((cc_node *)((char *)m - offsetof(cc_node, member)));
}

/* ---- start --------------------------------------------------------------- */

typedef struct setup_call {
    cc_node *n;
    int rc;
    uv_sem_t done;
} setup_call;

static int setup(cc_node *n) {
    uv_loop_t *uv = cc_loop_uv(n->loop);
    if (uv_async_init(uv, &n->async, on_async) != 0)
        return CC_ESYS;
    n->async.data = n;
    n->handles++;
    uv_timer_init(uv, &n->timer);
    n->timer.data = n;
    n->handles++;
    int rc = cc__link_listen(n);
    if (rc != CC_OK) {
        /* Close what was opened; the node is freed in the last close
         * callback, and no callback of the caller's runs. */
        n->start_failed = 1;
        begin_close(n);
        return rc;
    }
    uint64_t now = uv_now(uv);
    for (uint32_t s = 0; s < n->width; s++) {
        if (n->peers[s])
            n->peers[s]->dial_at = now;
    }
    uv_timer_start(&n->timer, cc__link_on_timer, n->tick_ms, n->tick_ms);
    n->member.close = on_loop_stop;
    n->joined = 1;
    cc__loop_join(n->loop, &n->member);
    if (n->closing) {
        n->start_failed = 1; /* the loop is closing and cc__loop_join closed us */
        return CC_ECLOSED;
    }
    cc__node_emit(n, CC_NODE_LISTENING, UINT32_MAX, 0, "listening", NULL);
    for (uint32_t s = n->cfg.self + 1; s < n->width && !n->closing; s++) {
        if (n->peers[s])
            cc__link_dial(n, n->peers[s]);
    }
    return CC_OK;
}

static void setup_on_loop(void *arg) {
    setup_call *s = arg;
    s->rc = setup(s->n);
    uv_sem_post(&s->done);
}

int cc_node_start(cc_loop *loop, const cc_node_config *config, const cc_node_peer *peers, size_t npeers,
                  const cc_node_callbacks *callbacks, cc_node **out) {
    if (out)
        *out = NULL;
    if (!loop || !config || !callbacks || !callbacks->deliver || !out || (npeers && !peers))
        return CC_EINVAL;
    cc_node_config cfg = *config;
    if (!cfg.listen_host || !valid_host(cfg.listen_host, cfg.listen_port))
        return CC_EINVAL;
    if (cfg.self >= NODE_WIDTH_MAX)
        return CC_EINVAL;
    uint32_t width = cfg.width > cfg.self ? cfg.width : cfg.self + 1;
    for (size_t i = 0; i < npeers; i++) {
        if (peers[i].slot == cfg.self || peers[i].slot >= NODE_WIDTH_MAX ||
            !valid_host(peers[i].host, peers[i].port))
            return CC_EINVAL;
        for (size_t j = 0; j < i; j++) {
            if (peers[j].slot == peers[i].slot)
                return CC_EINVAL;
        }
        if (peers[i].slot >= width)
            width = peers[i].slot + 1;
    }
    if (width > NODE_WIDTH_MAX)
        return CC_EINVAL;
    cfg.width = width;
    if (!cfg.heartbeat_ms)
        cfg.heartbeat_ms = 1000;
    if (!cfg.timeout_ms)
        cfg.timeout_ms = 5000;
    if (!cfg.reconnect_min_ms)
        cfg.reconnect_min_ms = 50;
    if (!cfg.reconnect_max_ms)
        cfg.reconnect_max_ms = 2000;
    if (cfg.reconnect_max_ms < cfg.reconnect_min_ms)
        cfg.reconnect_max_ms = cfg.reconnect_min_ms;
    if (!cfg.handshake_ms)
        cfg.handshake_ms = 2000;
    if (!cfg.max_frame)
        cfg.max_frame = CC_FRAME_DEFAULT_MAX;
    if (!cfg.max_payload)
        cfg.max_payload = 64u << 10;
    if (!cfg.send_window)
        cfg.send_window = 4096;
    if (!cfg.pending)
        cfg.pending = 65536;
    if (cfg.pending < 2)
        cfg.pending = 2; /* one slot stays free for a ready message */
    /* A broadcast must fit in a frame even after the group grows a little. */
    if ((uint64_t)cfg.max_payload + CC_FRAME_HEADER_SIZE + (uint64_t)width * 8 > cfg.max_frame ||
        cfg.max_frame < 64)
        return CC_EINVAL;
    if (sodium_init() < 0) /* idempotent and thread-safe */
        return CC_ESYS;

    cc_node *n = aligned_alloc(CC_CACHE_LINE, (sizeof *n + CC_CACHE_LINE - 1) & ~(size_t)(CC_CACHE_LINE - 1));
    if (!n)
        return CC_ENOMEM;
    memset(n, 0, sizeof *n);
    atomic_init(&n->users, 0);
    atomic_init(&n->closed, 0);
    atomic_init(&n->port, 0);
    n->state_fd_log = -1;
    n->loop = loop;
    n->cb = *callbacks;
    snprintf(n->listen_host, sizeof n->listen_host, "%s", cfg.listen_host);
    cfg.listen_host = n->listen_host;
    if (cfg.state_dir) {
        n->state_dir = strdup(cfg.state_dir);
        if (!n->state_dir) {
            free(n);
            return CC_ENOMEM;
        }
        cfg.state_dir = n->state_dir;
    }
    n->cfg = cfg;
    n->width = width;
    uint32_t tick = cfg.heartbeat_ms;
    if (cfg.handshake_ms < tick)
        tick = cfg.handshake_ms;
    if (cfg.reconnect_min_ms < tick)
        tick = cfg.reconnect_min_ms;
    if (cfg.timeout_ms < tick)
        tick = cfg.timeout_ms;
    tick /= 4;
    n->tick_ms = tick < 5 ? 5 : tick > 250 ? 250 : tick;

    int rc = cc_pool_init(&n->pool, NODE_BCAST_PAYLOAD + cfg.max_payload, cfg.send_window);
    if (rc != CC_OK) {
        free(n->state_dir);
        free(n);
        return rc;
    }
    /* Room for every broadcast block plus concurrent requests: a push of a
     * block never finds the queue full. */
    rc = cc_queue_init(&n->queue, (size_t)cfg.send_window + 64);
    if (rc != CC_OK) {
        cc_pool_destroy(&n->pool);
        free(n->state_dir);
        free(n);
        return rc;
    }
    /* A sender runs at most its send window ahead of what we acknowledged,
     * so the engine's per-sender look-ahead is the same window. */
    rc = cc_delivery_init(&n->engine, width, cfg.send_window, cfg.pending);
    n->peers = calloc(width, sizeof *n->peers);
    n->sendclock = calloc(width, sizeof *n->sendclock);
    n->scratch_clock = calloc(width, sizeof *n->scratch_clock);
    n->log = calloc(cfg.send_window, sizeof *n->log);
    if (cfg.state_dir)
        n->durable = calloc(width, sizeof *n->durable);
    if (rc == CC_OK && cfg.state_dir && !n->durable)
        rc = CC_ENOMEM;
    if (rc == CC_OK && (!n->peers || !n->sendclock || !n->scratch_clock || !n->log))
        rc = CC_ENOMEM;
    n->log_lo = 1;
    n->log_hi = 0;
    for (size_t i = 0; rc == CC_OK && i < npeers; i++)
        rc = add_peer(n, &peers[i], 0);
    if (rc == CC_OK)
        rc = cc__node_load_state(n);
    if (rc != CC_OK) {
        node_free(n);
        return rc;
    }
    sync_stats(n);

    if (cc_loop_on_thread(loop)) {
        rc = setup(n);
    } else {
        setup_call s = {.n = n, .rc = CC_ESYS};
        if (uv_sem_init(&s.done, 0) != 0) {
            node_free(n);
            return CC_ESYS;
        }
        rc = cc_loop_call(loop, setup_on_loop, &s);
        if (rc == CC_OK) { /* an accepted call always runs */
            uv_sem_wait(&s.done);
            rc = s.rc;
        } else {
            node_free(n); /* never reached the loop */
            uv_sem_destroy(&s.done);
            return rc;
        }
        uv_sem_destroy(&s.done);
    }
    /* After a failed setup the node closes itself on the loop. */
    if (rc != CC_OK)
        return rc;
    *out = n;
    return CC_OK;
}

/* ---- any thread -------------------------------------------------------------- */

static int push_req(cc_node *n, node_req *r) {
    atomic_fetch_add(&n->users, 1);
    int rc = CC_ECLOSED;
    if (!atomic_load(&n->closed)) {
        while ((rc = cc_queue_push(&n->queue, (void *)((uintptr_t)r | REQ_TAG))) == CC_EFULL)
            sched_yield(); /* more than 64 requests at once: rare, and the loop is draining */
        if (rc == CC_OK)
            uv_async_send(&n->async);
    }
    atomic_fetch_sub_explicit(&n->users, 1, memory_order_release);
    return rc;
}

static int run_req(cc_node *n, node_req *r) {
    if (uv_sem_init(&r->done, 0) != 0)
        return CC_ESYS;
    int rc = push_req(n, r);
    if (rc == CC_OK) {
        uv_sem_wait(&r->done); /* posted by the loop, or by the close that fails it */
        rc = r->rc;
    }
    uv_sem_destroy(&r->done);
    return rc;
}

int cc_node_broadcast(cc_node *n, const void *payload, size_t length, uint8_t level, uint32_t kind) {
    if (!n || (length && !payload))
        return CC_EINVAL;
    if (length > n->cfg.max_payload || level < CC_LEVEL_LOW || level > CC_LEVEL_CRITICAL)
        return CC_EINVAL;
    /* Seq-cst increment, then the closed check: pairs with begin_close. */
    atomic_fetch_add(&n->users, 1);
    int rc = CC_ECLOSED;
    if (!atomic_load(&n->closed)) {
        node_bcast *b = cc_pool_get(&n->pool);
        rc = CC_EFULL; /* send_window broadcasts not yet acknowledged by everyone */
        if (b) {
            b->length = (uint32_t)length;
            b->kind = kind;
            b->level = level;
            if (length)
                memcpy((uint8_t *)b + NODE_BCAST_PAYLOAD, payload, length);
            /* The queue has a cell for every block: this push cannot fail. */
            rc = cc_queue_push(&n->queue, b);
            if (rc == CC_OK)
                uv_async_send(&n->async); /* coalesces while one is pending */
            else
                cc_pool_put(&n->pool, b);
        }
    }
    atomic_fetch_sub_explicit(&n->users, 1, memory_order_release);
    return rc;
}

int cc_node_add_peer(cc_node *n, const cc_node_peer *peer) {
    if (!n || !peer || peer->slot == n->cfg.self || !valid_host(peer->host, peer->port))
        return CC_EINVAL;
    if (cc_loop_on_thread(n->loop)) {
        if (n->closing || n->close_begun)
            return CC_ECLOSED;
        int rc = add_peer(n, peer, 1);
        if (rc == CC_OK)
            announce_members(n);
        return rc;
    }
    node_req r = {.kind = REQ_ADD_PEER, .peer = *peer};
    return run_req(n, &r);
}

int cc__node_drop_connections(cc_node *n) {
    node_req r = {.kind = REQ_DROP};
    if (cc_loop_on_thread(n->loop)) {
        if (n->closing)
            return CC_ECLOSED;
        for (node_conn *c = n->conns; c; c = c->next)
            cc__link_close(c, c->state == CONN_UP ? CC_NODE_PEER_DOWN : 0, CC_ECLOSED, "connection dropped");
        return CC_OK;
    }
    return run_req(n, &r);
}

uint16_t cc_node_port(const cc_node *n) {
    return atomic_load_explicit(&((cc_node *)n)->port, memory_order_relaxed);
}

void cc_node_stats_get(const cc_node *cn, cc_node_stats *out) {
    cc_node *n = (cc_node *)cn;
#define LD(f) atomic_load_explicit(&n->stats.f, memory_order_relaxed)
    out->sent = LD(sent);
    out->delivered = LD(delivered);
    out->pending = LD(pending);
    out->duplicates = LD(duplicates);
    out->resent = LD(resent);
    out->reconnects = LD(reconnects);
    out->refused = LD(refused);
    out->protocol_errors = LD(protocol_errors);
    out->unacked = LD(unacked);
    out->bytes_out = LD(bytes_out);
    out->bytes_in = LD(bytes_in);
    out->width = LD(width);
    out->peers_up = LD(peers_up);
#undef LD
}

size_t cc_node_clock(const cc_node *n, uint64_t *out, size_t count) {
    size_t w = n->width;
    if (out && count)
        memcpy(out, n->engine.local, (count < w ? count : w) * sizeof *out);
    return w;
}

int cc_node_close(cc_node *n) {
    if (!n)
        return CC_EINVAL;
    if (cc_loop_on_thread(n->loop)) {
        if (n->closing || n->close_begun || atomic_exchange(&n->closed, 1))
            return CC_ECLOSED;
        begin_close(n);
        return CC_OK;
    }
    atomic_fetch_add(&n->users, 1);
    int rc = atomic_exchange(&n->closed, 1) ? CC_ECLOSED : CC_OK;
    if (rc == CC_OK)
        uv_async_send(&n->async); /* the loop sees closed and closes everything */
    atomic_fetch_sub_explicit(&n->users, 1, memory_order_release);
    return rc;
}

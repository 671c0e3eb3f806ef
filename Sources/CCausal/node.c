/* A member of a causal broadcast group: the group logic (see cc_node.h).
 *
 * Other threads reach the loop through the broadcast ring (node_internal.h:
 * a broadcast claims the next cell unless send_window broadcasts await
 * acknowledgement, copies its payload in and publishes the cell) and a
 * bounded queue of requests; one uv_async_t wakes the loop, and a broadcast
 * wakes it only when the loop is not bound to look at the ring anyway
 * (`awake`, on_prepare). Producers touch the async handle only between an
 * increment and a decrement of `users`, after checking `closed`; the loop
 * closes the handle only after setting `closed` and seeing `users` at zero
 * (both seq-cst, so either the producer sees closed or the loop sees it).
 *
 * On the loop thread a broadcast is stamped by the engine and encoded once,
 * whole, into the log's chunks, right after the frame stamped before it (so
 * that a batch goes out as one iovec); it is delivered locally and written
 * to every authenticated peer (node_link.c). The entry, its frame and its
 * ring cell are released when every known peer has acknowledged it (and,
 * with a state folder, once the folder records it as handed over: after a
 * restart the node delivers it again from there, cc__node_replay_next).
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
_Static_assert(NODE_BCAST_PAYLOAD + 16 <= NODE_BLOCK && NODE_BLOCK % 16 == 0, "a ring cell holds its header");

#define BATCH 64
#define NODE_AHEAD 4 /* frames whose memory is prefetched ahead of the one being stamped or read */
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
 * already in the log keep the width they were stamped with (receivers pad).
 * Never past max_width, whoever asks (a frame, a MEMBERS record, the caller).
 * The engine's rows and the clock buffers are reserved geometrically (room
 * doubles, capped at max_width): a peer that grows the group one slot at a
 * time makes O(log max_width) copies and retires less than the final buffers,
 * not a buffer per slot. */
int cc__node_grow(cc_node *n, uint32_t width) {
    if (width <= n->width)
        return CC_OK;
    if (width > n->cfg.max_width)
        return CC_EWIDTH;
    uint32_t room = n->clock_room;
    if (width > room) {
        room = room > n->cfg.max_width / 2 ? n->cfg.max_width : room * 2;
        if (room < width)
            room = width;
    }
    int rc = cc_delivery_reserve(&n->engine, room);
    if (rc == CC_OK)
        rc = cc_delivery_grow(&n->engine, width);
    if (rc != CC_OK)
        return rc;
    node_peer **peers = realloc(n->peers, (size_t)width * sizeof *peers);
    if (!peers)
        return CC_ENOMEM;
    memset(peers + n->width, 0, (size_t)(width - n->width) * sizeof *peers);
    n->peers = peers;
    uint64_t *sc = NULL, *rc2 = NULL;
    if (room > n->clock_room) {
        void **retired = realloc(n->retired, (n->nretired + 2) * sizeof *retired);
        if (!retired)
            return CC_ENOMEM;
        n->retired = retired;
        sc = calloc(room, sizeof *sc);
        rc2 = calloc(room, sizeof *rc2);
        if (!sc || !rc2) {
            free(sc);
            free(rc2);
            return CC_ENOMEM;
        }
        memcpy(sc, n->sendclock, (size_t)n->width * sizeof *sc);
    }
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
    if (n->handed) {
        uint64_t *h = realloc(n->handed, (size_t)width * sizeof *h);
        if (!h) {
            free(sc);
            free(rc2);
            return CC_ENOMEM;
        }
        memset(h + n->width, 0, (size_t)(width - n->width) * sizeof *h);
        n->handed = h;
        /* The application confirms clocks of delivered messages, at most
         * this wide: room for them before any is delivered. */
        uv_mutex_lock(&n->confirm_lock);
        uint64_t *c = realloc(n->confirmed, (size_t)width * sizeof *c);
        if (c) {
            memset(c + n->confirmed_width, 0, (size_t)(width - n->confirmed_width) * sizeof *c);
            n->confirmed = c;
            n->confirmed_width = width;
        }
        uv_mutex_unlock(&n->confirm_lock);
        if (!c) {
            free(sc);
            free(rc2);
            return CC_ENOMEM;
        }
    }
    if (sc) {
        n->retired[n->nretired++] = n->sendclock;
        n->retired[n->nretired++] = n->scratch_clock;
        n->sendclock = sc;
        n->scratch_clock = rc2;
        n->clock_room = room;
    } else {
        /* Within the room: the new entries read as 0, as in fresh buffers. */
        memset(n->sendclock + n->width, 0, (size_t)(width - n->width) * sizeof *sc);
        memset(n->scratch_clock + n->width, 0, (size_t)(width - n->width) * sizeof *rc2);
    }
    n->width = width;
    sync_stats(n);
    return CC_OK;
}

/* The checks of cc_node_add_peer, in its codes. */
static int check_new_peer(const cc_node *n, const cc_node_peer *p) {
    if (p->slot == n->cfg.self)
        return CC_EINVAL;
    if (p->slot >= n->cfg.max_width)
        return CC_EWIDTH;
    if (!valid_host(p->host, p->port))
        return CC_ESYS; /* uv_ip4_addr and uv_ip6_addr both refused it */
    return CC_OK;
}

/* Adds a member. `configured`: the address came from our caller
 * (cc_node_start, cc_node_add_peer), not from another member's MEMBERS, and
 * is kept whatever the member announces. `announce`: report it and dial. */
static int add_peer(cc_node *n, const cc_node_peer *p, int announce, int configured) {
    int rc = check_new_peer(n, p);
    if (rc != CC_OK)
        return rc;
    if (p->slot < n->width && n->peers[p->slot])
        return CC_EINVAL;
    rc = cc__node_grow(n, p->slot + 1);
    if (rc != CC_OK)
        return rc;
    node_peer *np = calloc(1, sizeof *np);
    if (!np)
        return CC_ENOMEM;
    np->addr = *p;
    np->configured = configured;
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
            wire_wr32(out + len, s);
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
        uint32_t slot = wire_rd32(p + off);
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
            /* A member we only heard of from others: it knows its own address
             * best, so follow it when it moved. But an address our caller
             * gave us stays: it may be a proxy, a NAT's outside or a name for
             * a member that listens on 0.0.0.0, none of which the member's
             * own view of where it listens would reach. */
            node_peer *np = n->peers[slot];
            if (slot == c->slot && !np->configured && valid_host(peer.host, port))
                np->addr = peer;
            continue;
        }
        if (slot >= n->cfg.max_width)
            return CC_EWIDTH; /* a member past the widest group we accept */
        if (add_peer(n, &peer, 1, 0) == CC_OK)
            added++;
        if (n->closing || c->state == CONN_CLOSING)
            return CC_OK;
    }
    (void)added;
    return CC_OK;
}

/* ---- the log ----------------------------------------------------------------- */

/* After cells were released: `room` for the producers that found the window
 * full, `acked` when the log is empty (cc_node.h). The publication of
 * ring_released and the load of want_room here, with cc_node_broadcast's
 * store of want_room and its second look at ring_released (all seq-cst),
 * are Dekker's pattern: a broadcast that found the window full either sees
 * this release or is seen here. One load per batch of releases when nobody
 * waits. */
static void notify_released(cc_node *n) {
    if (n->closing || n->close_begun)
        return;
    if (atomic_load_explicit(&n->want_room, memory_order_seq_cst) &&
        atomic_exchange_explicit(&n->want_room, 0, memory_order_relaxed) && n->cb.room) {
        n->cb.room(n->cb.ctx);
        if (n->closing || n->close_begun)
            return; /* the callback closed the node */
    }
    if (n->log_lo > n->log_hi && n->cb.acked)
        n->cb.acked(n->cb.ctx);
}

/* Releases the own broadcasts every known peer has acknowledged, but never
 * one that a write in flight still points at (libuv reads the buffers until
 * the write callback). */
void cc__node_trim(cc_node *n) {
    uint64_t lim = n->log_hi;
    /* With a state folder an entry also stays until the folder records it
     * as handed over here: a restart delivers it again from the log. */
    if (n->state_dir && n->durable[n->cfg.self] < lim)
        lim = n->durable[n->cfg.self];
    for (uint32_t s = 0; s < n->width && lim >= n->log_lo; s++) {
        if (n->peers[s] && n->peers[s]->acked < lim)
            lim = n->peers[s]->acked;
    }
    for (node_conn *c = n->conns; c; c = c->next) {
        if (c->wr_busy && c->wr_lo != UINT64_MAX && c->wr_lo - 1 < lim)
            lim = c->wr_lo - 1;
    }
    int released = n->log_lo <= lim;
    if (released) {
        cc__node_release_log(n, n->log_lo, lim);
        n->log_lo = lim + 1;
        cc__node_publish_released(n);
    }
    sync_stats(n);
    if (released)
        notify_released(n);
}

void cc__node_publish_released(cc_node *n) {
    /* Release: the loop is done with the cells (stamp copied the payloads
     * out) before a producer that sees the count writes them again.
     * Sequentially consistent for notify_released's load of want_room. */
    atomic_store_explicit(&n->ring_released, n->ring_free, memory_order_seq_cst);
}

node_bcast *cc__node_take_cell(cc_node *n) {
    /* Before the node is shared: claim and take the next position at once. */
    uint64_t pos = atomic_load_explicit(&n->ring_tail, memory_order_relaxed);
    if (pos - atomic_load_explicit(&n->ring_released, memory_order_relaxed) >= n->cfg.send_window)
        return NULL;
    atomic_store_explicit(&n->ring_tail, pos + 1, memory_order_relaxed);
    n->ring_head = pos + 1;
    node_bcast *b = node_cell(n, pos);
    atomic_store_explicit(&b->seq, pos + 1, memory_order_relaxed);
    return b;
}

/* ---- frame chunks ---------------------------------------------------------- */

static node_chunk *chunk_new(cc_node *n, size_t need) {
    node_chunk *ck = n->chunk_free;
    if (ck && need <= ck->cap) {
        n->chunk_free = ck->free;
    } else {
        /* Warm-up only: chunks grow to the most bytes held at once (at most
         * the send window's frames), then come from the free list. */
        size_t cap = need > NODE_CHUNK ? need : NODE_CHUNK;
        if (cap > UINT32_MAX)
            return NULL;
        ck = malloc(sizeof *ck + cap);
        if (!ck)
            return NULL;
        ck->cap = (uint32_t)cap;
        ck->prev = NULL;
        ck->next = n->chunks;
        if (n->chunks)
            n->chunks->prev = ck;
        n->chunks = ck;
    }
    ck->used = 0;
    ck->live = 0;
    return ck;
}

static void chunk_free(cc_node *n, node_chunk *ck) {
    if (ck->cap == NODE_CHUNK) {
        ck->free = n->chunk_free;
        n->chunk_free = ck;
        return;
    }
    /* An outsize chunk (one frame larger than NODE_CHUNK): rare, not kept. */
    if (ck->prev)
        ck->prev->next = ck->next;
    else
        n->chunks = ck->next;
    if (ck->next)
        ck->next->prev = ck->prev;
    free(ck);
}

uint8_t *cc__node_reserve(cc_node *n, log_entry *e, size_t len) {
    node_chunk *ck = n->chunk;
    if (ck && ck->live == 0)
        ck->used = 0; /* no held frame lies in it, so no write points at it: start over */
    if (!ck || ck->cap - ck->used < len) {
        ck = chunk_new(n, len);
        if (!ck)
            return NULL;
        /* The chunk we leave goes back when its last frame is released. */
        if (n->chunk && n->chunk->live == 0)
            chunk_free(n, n->chunk);
        n->chunk = ck;
    }
    e->ck = ck;
    e->off = ck->used;
    e->len = (uint32_t)len;
    ck->used += (uint32_t)len;
    ck->live++;
    return ck->data + e->off;
}

/* cc__node_reserve's common case, inline on the per-message path: room
 * right after the frame before, in a chunk that holds frames. */
static inline uint8_t *reserve(cc_node *n, log_entry *e, size_t len) {
    node_chunk *ck = n->chunk;
    if (!ck || ck->live == 0 || ck->cap - ck->used < len)
        return cc__node_reserve(n, e, len);
    e->ck = ck;
    e->off = ck->used;
    e->len = (uint32_t)len;
    ck->used += (uint32_t)len;
    ck->live++;
    return ck->data + e->off;
}

/* The last sequence in [from, to] whose frame lies in the same chunk as
 * from's. Among held entries each chunk holds one run of consecutive
 * sequences, back to back: frames go into the current chunk in sequence
 * order, and a chunk left behind is reused only once none of its frames is
 * held. (An entry without a frame ends a run: it only happens when no chunk
 * could be had, so the next frame goes to another chunk.) So "same chunk"
 * is true up to the run's end and false after it, and a binary search finds
 * the end: a batch costs per chunk, not per message. */
static uint64_t run_end(const cc_node *n, uint64_t from, uint64_t to) {
    const node_chunk *ck = node_log(n, from)->ck;
    if (node_log(n, to)->ck == ck)
        return to;
    uint64_t lo = from, hi = to - 1; /* lo is in the run; the end is in [lo, hi] */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo + 1) / 2;
        if (node_log(n, mid)->ck == ck)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

void cc__node_release_log(cc_node *n, uint64_t from, uint64_t to) {
    /* Entries go in log order, which is ring order: one cell each. */
    n->ring_free += to - from + 1;
    while (from <= to) {
        node_chunk *ck = node_log(n, from)->ck;
        uint64_t end = ck ? run_end(n, from, to) : from;
        if (ck) {
            ck->live -= (uint32_t)(end - from + 1);
            if (ck->live == 0 && ck != n->chunk)
                chunk_free(n, ck);
        }
        from = end + 1;
    }
}

unsigned cc__node_gather(cc_node *n, uint64_t *seq, uint64_t to, uv_buf_t *iov, unsigned niov, unsigned max,
                         size_t *bytes) {
    uint64_t s = *seq;
    while (s <= to) {
        const log_entry *e = node_log(n, s);
        if (!e->ck) {
            s++; /* not encoded: never sent */
            continue;
        }
        uint64_t end = run_end(n, s, to);
        const log_entry *last = node_log(n, end);
        char *p = (char *)e->ck->data + e->off;
        size_t len = (size_t)last->off + last->len - e->off;
        if (niov && iov[niov - 1].base + iov[niov - 1].len == p)
            iov[niov - 1].len += len; /* right after the previous run */
        else if (niov < max)
            iov[niov++] = uv_buf_init(p, (unsigned)len);
        else
            break;
        *bytes += len;
        s = end + 1;
    }
    *seq = s;
    return niov;
}

/* ---- delivery ------------------------------------------------------------------ */

static void deliver_one(cc_node *n, const rxmsg *r) {
    cc_node_msg m = {.sender = r->head.sender,
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
        if (r == &n->replay)
            cc__node_replay_next(n); /* the engine has room: the replayed one left it */
        else if (r != &n->scratch)
            rx_put(n, r);
    }
    node_set(&n->stats.pending, n->engine.pending);
}

void cc__node_replay_next(cc_node *n) {
    /* While replaying, the engine's own entry counts own deliveries. */
    n->own_delivered = n->engine.local[n->cfg.self];
    for (;;) {
        uint64_t seq = n->own_delivered + 1;
        if (seq > n->log_hi) {
            /* Delivered up to the sequence: stamping moves the engine's clock again. */
            n->replaying = 0;
            return;
        }
        /* Held: an entry stays until handed over (cc__node_trim). */
        const log_entry *e = node_log(n, seq);
        if (!e->len) {
            /* Never encoded (out of memory): no member delivers it, nor do we. */
            cc_delivery_send(&n->engine, n->cfg.self, NULL);
            n->own_delivered = seq;
            continue;
        }
        const uint8_t *f = e->ck->data + e->off;
        uint32_t w = wire_rd32(f + 12);
        if (w > n->replay_width) {
            /* After a restart only, with no replayed message in the engine. */
            uint64_t *c = realloc(n->replay_clock, (size_t)w * sizeof *c);
            if (!c)
                return; /* not delivered now; the folder keeps it for the next start */
            n->replay_clock = c;
            n->replay_width = w;
        }
        rxmsg *r = &n->replay;
        r->head.clock = node_clock_of(f + CC_FRAME_HEADER_SIZE, w, n->replay_clock);
        r->head.width = w;
        r->head.sender = n->cfg.self;
        r->head.level = f[6];
        r->kind = wire_rd32(f + 20);
        r->length = (uint32_t)(e->len - CC_FRAME_HEADER_SIZE - (size_t)w * 8);
        r->payload = f + CC_FRAME_HEADER_SIZE + (size_t)w * 8;
        /* The head of our slot (seq == local + 1) in an engine with room
         * (its predecessor just left it, or it is fresh): always accepted. */
        cc_delivery_offer(&n->engine, &r->head);
        return;
    }
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
    if (n->handed && n->handed[slot] < first - 1)
        n->handed[slot] = first - 1; /* never delivered, never to be: handed over as well */
    n->handed_moves++;
    cc__node_drain(n);
}

void cc__node_peer_up(cc_node *n, node_conn *c) {
    node_peer *p = c->peer;
    if (p->conn && p->conn != c)
        cc__link_close(p->conn, CC_NODE_PEER_DOWN, CC_ECLOSED, "replaced by a new connection");
    p->conn = c;
    c->state = CONN_UP;
    if (!c->dialer)
        n->nhandshaking--;
    if (c->peer_width > n->width)
        cc__node_grow(n, c->peer_width); /* on_hello refused a HELLO wider than max_width */
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

/* The steady state of a link, in one pass over the bytes: a run of dense
 * MESSAGEs from the peer's own slot, each the next of its sequence, causally
 * ready, with nothing held back. Each is checked against exactly what
 * cc_frame_parse and cc__node_on_message would check for such a frame (the
 * frame layout is in cc_frame.h), applied by the engine (cc_delivery_take)
 * and delivered from the read buffer. The run stops at the first frame that
 * is anything else, valid or not, and leaves it untouched for the general
 * path, which decides and reports; so this accepts a subset of what that
 * path accepts, and every test that streams messages runs it. One call per
 * run, not per frame: a read brings about a thousand of them.
 *
 * A deliver callback may run anything the loop thread may (close the link or
 * the node, add a member and so grow the clock): what it can change is read
 * again after each one. Returns the bytes delivered. */
size_t cc__node_fast_run(cc_node *n, node_conn *c, const uint8_t *p, size_t avail) {
    const uint32_t sender = c->slot;
    const uint32_t max_frame = n->cfg.max_frame;
    size_t off = 0;
    while (avail - off >= CC_FRAME_HEADER_SIZE) {
        const uint8_t *f = p + off;
        uint32_t length = wire_rd32(f);
        uint64_t total = (uint64_t)length + 4;
        /* The frame NODE_AHEAD frames on, if they are of this one's size:
         * every line of a frame is read here (header, clock, the callback's
         * payload), from a read of up to NODE_RBUF bytes that has mostly
         * left the first-level cache. Small frames only (a large one brings
         * enough lines for the hardware to stream). A prefetch never faults. */
        if (total <= 512) {
            uintptr_t ahead = (uintptr_t)f + NODE_AHEAD * total;
            for (uintptr_t at = ahead & ~(uintptr_t)63; at < ahead + total; at += 64)
                __builtin_prefetch((const void *)at);
        }
        uint8_t level = f[6];
        uint32_t width = wire_rd32(f + 12);
        if (total > avail - off || total > max_frame || f[4] != CC_FRAME_VERSION || f[5] != CC_FRAME_MESSAGE ||
            level < CC_LEVEL_LOW || level > CC_LEVEL_CRITICAL || f[7] != 0 /* dense, no reserved flag */ ||
            wire_rd32(f + 8) != sender || sender >= width || width > n->width || wire_rd32(f + 16) != width)
            break;
        uint64_t clock_bytes = (uint64_t)width * 8;
        if (length < CC_FRAME_HEADER_SIZE - 4 || clock_bytes > (uint64_t)length - (CC_FRAME_HEADER_SIZE - 4))
            break;
        const uint64_t *clock = node_clock_of(f + CC_FRAME_HEADER_SIZE, width, n->scratch_clock);
        uint64_t seq = clock[sender];
        if (seq != wire_rd64(f + 24) || seq != n->engine.local[sender] + 1)
            break;
        cc_msg head = {.clock = clock, .width = width, .sender = sender, .level = level};
        if (!cc_delivery_take(&n->engine, &head))
            break;
        cc_node_msg m = {.sender = sender,
                             .level = level,
                             .kind = wire_rd32(f + 20),
                             .clock = clock,
                             .width = width,
                             .payload = f + CC_FRAME_HEADER_SIZE + clock_bytes,
                             .length = (uint32_t)(length - (CC_FRAME_HEADER_SIZE - 4) - clock_bytes)};
        n->progress++;
        node_bump(&n->stats.delivered, 1);
        off += (size_t)total;
        n->cb.deliver(n->cb.ctx, &m);
        if (c->state == CONN_CLOSING || n->closing)
            break;
    }
    return off;
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
    /* Dense (sparse is refused above), so cc_frame_parse checked entries == width. */
    const uint64_t *clock = node_clock_of(f->clock, f->width, n->scratch_clock);
    const uint64_t *local = n->engine.local;
    uint64_t seq = clock[s];
    if (seq == 0 || f->seq != seq) {
        cc__link_close(c, CC_NODE_PROTOCOL, CC_EINVAL, "message sequence does not match its clock");
        return NODE_FRAME_CLOSED;
    }
    if (seq <= local[s]) {
        node_bump(&n->stats.duplicates, 1); /* normal after a resend */
        return NODE_FRAME_DONE;
    }
    sc->head.clock = clock;
    sc->head.width = f->width;
    sc->head.sender = s;
    sc->head.level = f->level;
    sc->kind = f->kind;
    sc->length = f->payload_len;
    sc->payload = f->payload;
    /* In order with nothing held back (the steady state): delivered straight
     * from the read buffer without passing through the engine's lists. */
    if (cc_delivery_take(&n->engine, &sc->head)) {
        deliver_one(n, sc);
        return NODE_FRAME_DONE;
    }
    /* Ready now? Then the engine delivers it in this drain, before anything
     * reuses the read buffer: no copy. */
    int ready = seq == local[s] + 1;
    for (uint32_t k = 0; ready && k < f->width; k++)
        ready = k == s || clock[k] <= local[k];
    rxmsg *r = sc;
    if (!ready) {
        /* Keep the engine's last slot for a ready message. Without it the
         * pending set could fill with messages waiting on a sender whose
         * next (ready) message then finds no room: every reader would pause
         * and nothing would ever be delivered. With it, the causally first
         * undelivered message, which heads its sender's stream, always gets
         * in, and each delivery lets paused readers try again. */
        if (n->engine.pending + 1 >= n->engine.capacity) {
            c->pause_code = CC_EFULL;
            return NODE_FRAME_PAUSE;
        }
        r = rx_get(n, f->width, f->payload_len);
        if (!r) {
            c->pause_code = CC_ENOMEM;
            return NODE_FRAME_PAUSE; /* out of memory: wait for deliveries to free blocks */
        }
        memcpy(r->clock, clock, (size_t)f->width * sizeof(uint64_t));
        memcpy((uint8_t *)(r->clock + f->width), f->payload, f->payload_len);
        r->payload = (const uint8_t *)(r->clock + f->width);
        r->head.clock = r->clock;
    } else {
        r->payload = f->payload;
        r->head.clock = clock;
    }
    r->head.width = f->width;
    r->head.sender = s;
    r->head.level = f->level;
    r->kind = f->kind;
    r->length = f->payload_len;
    int rc = cc_delivery_offer(&n->engine, &r->head);
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
    case CC_EAHEAD:
        c->pause_code = rc;
        return NODE_FRAME_PAUSE; /* not accepted, not acknowledged: read it again later */
    default: cc__link_close(c, CC_NODE_PROTOCOL, rc, cc_strerror(rc)); return NODE_FRAME_CLOSED;
    }
}

/* ---- own broadcasts -------------------------------------------------------- */

/* The clock of an own broadcast stamped while own broadcasts from before a
 * restart are delivered again (the engine's own entry is behind the
 * sequence): after the broadcast stamped before it, whose frame is held, and
 * after what was delivered since. */
static const uint64_t *replaying_clock(cc_node *n, uint64_t seq) {
    uint64_t *c = n->sendclock;
    memcpy(c, n->engine.local, (size_t)n->width * sizeof *c);
    const log_entry *prev = node_log(n, seq - 1);
    if (seq - 1 >= n->log_lo && seq - 1 <= n->log_hi && prev->len) {
        const uint8_t *f = prev->ck->data + prev->off;
        uint32_t w = wire_rd32(f + 12);
        for (uint32_t k = 0; k < w && k < n->width; k++) {
            uint64_t v = wire_rd64(f + CC_FRAME_HEADER_SIZE + (size_t)k * 8);
            if (v > c[k])
                c[k] = v;
        }
    }
    c[n->cfg.self] = seq;
    return c;
}

/* Stamps a broadcast and files it in the log, encoded whole; it is
 * persisted, delivered and written after the whole batch is stamped (see
 * on_async). */
static uint64_t stamp(cc_node *n, node_bcast *b) {
    /* The frame is encoded from the engine's clock right after the send:
     * that is the broadcast's clock, with no copy in between. */
    uint64_t seq;
    const uint64_t *local;
    if (__builtin_expect(!n->replaying, 1)) {
        seq = cc_delivery_send(&n->engine, n->cfg.self, NULL);
        local = n->engine.local;
    } else {
        seq = n->log_hi + 1;
        local = replaying_clock(n, seq);
    }
    log_entry *e = node_log(n, seq);
    e->b = b;
    e->ck = NULL;
    e->len = 0;
    /* An own frame is always a dense MESSAGE of a valid level from a slot
     * inside the width, of a size max_frame allows (checked at start): the
     * codec's checks are skipped and cc_frame_encode's dense layout
     * (cc_frame.h) is written directly, on the per-message path. Every peer
     * parses it with cc_frame_parse, so every test checks it. */
    /* Everything the header needs is read before the first store: a store
     * through a byte pointer may alias the node, and would make the
     * compiler read each field again. */
    const uint32_t width = n->width, length = b->length, kind = b->kind, self = n->cfg.self;
    const uint8_t level = b->level;
    size_t clock_bytes = (size_t)width * 8;
    size_t size = CC_FRAME_HEADER_SIZE + clock_bytes + length;
    uint8_t *p = size <= UINT32_MAX ? reserve(n, e, size) : NULL;
    if (p) {
        const uint8_t *payload = node_bcast_payload(n, b);
        /* Where the frame NODE_AHEAD broadcasts on goes, if they are of this
         * one's size (see process_queue). A prefetch never faults: the
         * address may lie past the chunk. */
        for (size_t at = NODE_AHEAD * size; at < (NODE_AHEAD + 1) * size; at += 64)
            __builtin_prefetch((const void *)((uintptr_t)p + at), 1);
        wire_wr32(p, (uint32_t)(size - 4));
        p[4] = CC_FRAME_VERSION;
        p[5] = CC_FRAME_MESSAGE;
        p[6] = level;
        p[7] = 0; /* flags: dense */
        wire_wr32(p + 8, self);
        wire_wr32(p + 12, width);
        wire_wr32(p + 16, width); /* entries */
        wire_wr32(p + 20, kind);
        wire_wr64(p + 24, seq);
#if WIRE_LE
        memcpy(p + CC_FRAME_HEADER_SIZE, local, clock_bytes);
#else
        for (uint32_t k = 0; k < width; k++)
            wire_wr64(p + CC_FRAME_HEADER_SIZE + (size_t)k * 8, local[k]);
#endif
        if (length)
            memcpy(p + CC_FRAME_HEADER_SIZE + clock_bytes, payload, length);
    }
    /* Without room (out of memory) the sequence is still taken; peers wait
     * for it, as for a lost member. */
    n->log_hi = seq;
    node_bump(&n->stats.sent, 1);
    return seq;
}

/* Delivers an own broadcast from its log entry: its clock is the one
 * encoded in its frame (later stamps of the same batch moved sendclock on). */
static void deliver_own(cc_node *n, uint64_t seq) {
    log_entry *e = node_log(n, seq);
    rxmsg own;
    if (e->len) {
        /* The frame stays in the log at least until this returns: entries go
         * only when acknowledged, never inside a deliver callback. */
        const uint8_t *f = e->ck->data + e->off;
        uint32_t w = wire_rd32(f + 12);
        own.head.clock = node_clock_of(f + CC_FRAME_HEADER_SIZE, w, n->sendclock);
        own.head.width = w;
        own.payload = f + CC_FRAME_HEADER_SIZE + (size_t)w * 8;
    } else {
        memcpy(n->sendclock, n->engine.local, (size_t)n->width * sizeof(uint64_t));
        own.head.clock = n->sendclock;
        own.head.width = n->width;
        own.payload = node_bcast_payload(n, e->b);
    }
    own.head.sender = n->cfg.self;
    own.head.level = e->b->level;
    own.kind = e->b->kind;
    own.length = e->b->length;
    n->own_delivered = seq;
    deliver_one(n, &own);
}

static void handle_req(cc_node *n, node_req *r) {
    switch (r->kind) {
    case REQ_ADD_PEER:
        r->rc = n->closing || n->close_begun ? CC_ECLOSED : add_peer(n, &r->peer, 1, 1);
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

/* Takes up to `budget` items: broadcasts off the ring (a batch at a time:
 * stamped, recorded in the state folder, then delivered), then requests
 * (run, or failed with CC_ECLOSED when `final`). A broadcast a thread made
 * before its request is thus stamped before the request runs. Returns how
 * many items it took. */
static size_t process_queue(cc_node *n, size_t budget, int final, size_t *sends) {
    size_t done = 0;
    while (done < budget && !n->closing) {
        if (!final && atomic_load_explicit(&n->closed, memory_order_relaxed))
            break;
        /* Nothing is delivered or sent before the state folder has it: a
         * restart must not give a sequence a second meaning. */
        uint64_t first = n->log_hi + 1;
        size_t k = 0;
        for (; k < BATCH && !n->closing; k++) {
            node_bcast *b = node_cell(n, n->ring_head);
            /* Acquire: pairs with the producer's publication of the cell. A
             * position claimed but not yet published stops the batch; the
             * producer's wake-up brings the loop back. */
            if (atomic_load_explicit(&b->seq, memory_order_acquire) != n->ring_head + 1)
                break;
            n->ring_head++;
            /* The cells come from the producers' cores and the frames go to
             * chunk memory that has left this core's caches: ask for the
             * lines a few broadcasts ahead, so that their misses overlap
             * instead of stalling one broadcast after another. */
            const uint8_t *ahead = (const uint8_t *)node_cell(n, n->ring_head + NODE_AHEAD);
            __builtin_prefetch(ahead);
            __builtin_prefetch(ahead + 64);
            stamp(n, b);
        }
        uint64_t last = n->log_hi;
        if (last >= first) {
            *sends += last - first + 1;
            sync_stats(n); /* before the deliver callbacks: they may read the counters */
            cc__node_append_log(n, first, last);
            /* While replaying, these are delivered after the run before them. */
            for (uint64_t seq = first; seq <= last && !n->closing && !n->replaying; seq++)
                deliver_own(n, seq);
            cc__node_drain(n); /* heads that waited on our own slot */
            if (!n->closing)
                cc__node_trim(n); /* with no peers the entries go at once */
        }
        size_t nreq = 0;
        node_req *r;
        while (nreq < BATCH && (r = cc_queue_pop(&n->queue)) != NULL) {
            nreq++;
            if (n->closing || final) {
                r->rc = CC_ECLOSED;
                uv_sem_post(&r->done);
            } else {
                handle_req(n, r);
            }
        }
        if (k == 0 && nreq == 0)
            break;
        done += k + nreq;
    }
    return done;
}

/* Takes what other threads handed over (on_async and on_prepare): stamps
 * and sends the broadcasts, runs the requests. Returns the items taken. */
static size_t take_handed_over(cc_node *n) {
    size_t sends = 0;
    size_t done = process_queue(n, BUDGET, 0, &sends);
    if (n->closing || n->close_begun)
        return done;
    if (atomic_load(&n->closed)) {
        begin_close(n);
        return done;
    }
    /* One write per peer for the whole batch of broadcasts. */
    if (sends)
        cc__link_flush_all(n);
    cc__link_after_io(n);
    return done;
}

static void on_async(uv_async_t *h) {
    cc_node *n = h->data;
    if (n->closing || n->close_begun)
        return;
    /* on_prepare looks at the ring before the loop sleeps again: until then
     * a broadcast need not wake the loop (see cc_node_broadcast). */
    atomic_store_explicit(&n->awake, 1, memory_order_relaxed);
    if (n->replaying)
        cc__node_drain(n); /* the first own broadcast to deliver again may be ready at start */
    if (take_handed_over(n) >= BUDGET && !n->closing && !n->close_begun)
        uv_async_send(&n->async); /* more: after the I/O that waits */
}

/* Runs before the loop sleeps in epoll. While `awake` was 1 producers
 * published without waking the loop; take what they published, and clear
 * `awake` before the last look, so that a broadcast published after that
 * look sees 0 and wakes the loop. The fence here and cc_node_broadcast's
 * sequentially consistent exchange and load make it Dekker's pattern: the
 * loop stores awake = 0 and then reads the cell, a producer stores the cell
 * and then reads awake, so at least one of them sees the other's store: no
 * broadcast is left unseen while the loop sleeps.
 * In the steady state of a busy sender this takes many batches without a
 * wake-up, and the producers make no system call for them. */
static void on_prepare(uv_prepare_t *h) {
    cc_node *n = h->data;
    size_t done = 0;
    while (!n->closing && !n->close_begun) {
        atomic_store_explicit(&n->awake, 0, memory_order_relaxed);
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&node_cell(n, n->ring_head)->seq, memory_order_acquire) != n->ring_head + 1)
            return;
        if (done >= BUDGET) {
            uv_async_send(&n->async); /* more: after the I/O that waits */
            return;
        }
        atomic_store_explicit(&n->awake, 1, memory_order_relaxed);
        done += take_handed_over(n);
    }
}

/* ---- close ------------------------------------------------------------------- */

static void node_free(cc_node *n) {
    for (uint32_t s = 0; s < n->width; s++)
        free(n->peers ? n->peers[s] : NULL);
    free(n->peers);
    free(n->sendclock);
    free(n->durable);
    free(n->handed);
    free(n->replay_clock);
    if (n->confirmed) {
        free(n->confirmed);
        uv_mutex_destroy(&n->confirm_lock);
    }
    free(n->scratch_clock);
    for (size_t i = 0; i < n->nretired; i++)
        free(n->retired[i]);
    free(n->retired);
    free(n->log);
    free(n->big);
    while (n->chunks) {
        node_chunk *ck = n->chunks;
        n->chunks = ck->next;
        free(ck);
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
    free(n->ring);
    free(n);
}

static void finish_close(cc_node *n) {
    wait_for_users(n);
    if (n->joined)
        cc__loop_member_closed(n->loop, &n->member);
    /* Nobody can push any more: fail the requests still queued (their
     * callers wait on them). Broadcast cells die with the ring. */
    node_req *r;
    while ((r = cc_queue_pop(&n->queue)) != NULL) {
        r->rc = CC_ECLOSED;
        uv_sem_post(&r->done);
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
    uv_handle_t *own[4] = {(uv_handle_t *)&n->listener, (uv_handle_t *)&n->timer, (uv_handle_t *)&n->prepare,
                           (uv_handle_t *)&n->async};
    for (int i = 0; i < 4; i++) {
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

static int setup(void *arg) {
    cc_node *n = arg;
    uv_loop_t *uv = cc_loop_uv(n->loop);
    if (uv_async_init(uv, &n->async, on_async) != 0)
        return CC_ESYS;
    n->async.data = n;
    n->handles++;
    uv_timer_init(uv, &n->timer);
    n->timer.data = n;
    n->handles++;
    uv_prepare_init(uv, &n->prepare);
    n->prepare.data = n;
    n->handles++;
    uv_prepare_start(&n->prepare, on_prepare);
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
    if (n->replaying)
        uv_async_send(&n->async); /* deliveries start on the loop, after cc_node_start returns */
    for (uint32_t s = n->cfg.self + 1; s < n->width && !n->closing; s++) {
        if (n->peers[s])
            cc__link_dial(n, n->peers[s]);
    }
    return CC_OK;
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
    if (!cfg.max_width)
        cfg.max_width = NODE_WIDTH_DEFAULT;
    if (cfg.max_width > NODE_WIDTH_MAX || cfg.self >= cfg.max_width)
        return CC_EINVAL;
    uint32_t width = cfg.width > cfg.self ? cfg.width : cfg.self + 1;
    for (size_t i = 0; i < npeers; i++) {
        if (peers[i].slot == cfg.self || peers[i].slot >= cfg.max_width ||
            !valid_host(peers[i].host, peers[i].port))
            return CC_EINVAL;
        for (size_t j = 0; j < i; j++) {
            if (peers[j].slot == peers[i].slot)
                return CC_EINVAL;
        }
        if (peers[i].slot >= width)
            width = peers[i].slot + 1;
    }
    if (width > cfg.max_width)
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
    atomic_init(&n->ring_tail, 0);
    atomic_init(&n->ring_released, 0);
    atomic_init(&n->awake, 0);
    atomic_init(&n->want_room, 0);
    atomic_init(&n->closed, 0);
    atomic_init(&n->confirm_dirty, 0);
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

    size_t cells = 1;
    while (cells < cfg.send_window)
        cells <<= 1;
    n->ring_mask = cells - 1;
    /* Zeroed: no cell's seq says "published" for its first-lap position. */
    n->ring = aligned_alloc(CC_CACHE_LINE, cells * NODE_BLOCK);
    if (n->ring)
        memset(n->ring, 0, cells * NODE_BLOCK);
    int rc = n->ring ? CC_OK : CC_ENOMEM;
    if (rc == CC_OK)
        rc = cc_queue_init(&n->queue, 64); /* requests; more at once wait their turn (push_req) */
    if (rc != CC_OK) {
        free(n->ring);
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
    n->clock_room = width;
    n->log_mask = cells - 1; /* as many entries as ring cells: indexed by a mask */
    n->log = calloc(cells, sizeof *n->log);
    /* Address space only: pages are touched by payloads larger than NODE_INLINE. */
    if (cfg.max_payload > NODE_INLINE)
        n->big = malloc(cells * cfg.max_payload);
    if (cfg.state_dir)
        n->durable = calloc(width, sizeof *n->durable);
    if (rc == CC_OK && cfg.state_dir && !n->durable)
        rc = CC_ENOMEM;
    if (rc == CC_OK && cfg.state_dir && cfg.confirm) {
        n->handed = calloc(width, sizeof *n->handed);
        n->confirmed = calloc(width, sizeof *n->confirmed);
        if (!n->handed || !n->confirmed || uv_mutex_init(&n->confirm_lock) != 0) {
            free(n->confirmed); /* node_free destroys the lock only with the array */
            n->confirmed = NULL;
            rc = !n->handed || !n->confirmed ? CC_ENOMEM : CC_ESYS;
        }
        n->confirmed_width = width;
    }
    if (rc == CC_OK && (!n->peers || !n->sendclock || !n->scratch_clock || !n->log ||
                        (cfg.max_payload > NODE_INLINE && !n->big)))
        rc = CC_ENOMEM;
    n->log_lo = 1;
    n->log_hi = 0;
    for (size_t i = 0; rc == CC_OK && i < npeers; i++)
        rc = add_peer(n, &peers[i], 0, 1);
    if (rc == CC_OK)
        rc = cc__node_load_state(n);
    if (rc != CC_OK) {
        node_free(n);
        return rc;
    }
    sync_stats(n);

    int result = CC_ESYS;
    rc = cc__loop_call_sync(loop, setup, n, &result);
    if (rc != CC_OK) {
        node_free(n); /* never reached the loop */
        return rc;
    }
    /* After a failed setup the node closes itself on the loop. */
    if (result != CC_OK)
        return result;
    *out = n;
    return CC_OK;
}

/* ---- any thread -------------------------------------------------------------- */

static int push_req(cc_node *n, node_req *r) {
    atomic_fetch_add(&n->users, 1);
    int rc = CC_ECLOSED;
    if (!atomic_load(&n->closed)) {
        while ((rc = cc_queue_push(&n->queue, r)) == CC_EFULL)
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
        uint64_t pos = atomic_load_explicit(&n->ring_tail, memory_order_relaxed);
        for (;;) {
            /* Acquire: pairs with cc__node_publish_released; the loop is done
             * with the cell's previous broadcast. A stale count only makes
             * the window look fuller than it is. */
            if (pos - atomic_load_explicit(&n->ring_released, memory_order_acquire) >= n->cfg.send_window) {
                /* Full: ask the loop for `room`, then look again (Dekker's
                 * pattern with notify_released: either this load sees a
                 * release, or the loop sees the request). */
                atomic_store_explicit(&n->want_room, 1, memory_order_seq_cst);
                if (pos - atomic_load_explicit(&n->ring_released, memory_order_seq_cst) >= n->cfg.send_window) {
                    rc = CC_EFULL; /* send_window broadcasts not yet acknowledged by everyone */
                    break;
                }
                continue;
            }
            /* The compare-and-swap only elects this producer for pos: the
             * cell's data is published by its seq below. */
            if (atomic_compare_exchange_weak_explicit(&n->ring_tail, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                node_bcast *b = node_cell(n, pos);
                b->length = (uint32_t)length;
                b->kind = kind;
                b->level = level;
                if (length)
                    memcpy(node_bcast_payload(n, b), payload, length);
                /* Sequentially consistent, as the load of awake below: the
                 * cell is written before the loop sees it, and the store and
                 * that load are Dekker's pattern with on_prepare's store
                 * and fence. A loop that will look at the ring before it
                 * sleeps needs no wake-up, which saves a system call here
                 * and a wake-up there per batch. (One exchange: on x86 a
                 * plain store and a fence would cost more.) */
                atomic_exchange_explicit(&b->seq, pos + 1, memory_order_seq_cst);
                if (!atomic_load_explicit(&n->awake, memory_order_seq_cst))
                    uv_async_send(&n->async); /* coalesces while one is pending */
                rc = CC_OK;
                break;
            }
        }
    }
    atomic_fetch_sub_explicit(&n->users, 1, memory_order_release);
    return rc;
}

int cc_node_confirm(cc_node *n, const uint64_t *clock, size_t count) {
    if (!n || (count && !clock) || !n->cfg.confirm)
        return CC_EINVAL;
    if (!n->confirmed)
        return CC_OK; /* no state folder: nothing to write */
    atomic_fetch_add(&n->users, 1);
    int rc = CC_ECLOSED;
    if (!atomic_load(&n->closed)) {
        rc = CC_OK;
        uv_mutex_lock(&n->confirm_lock);
        uint64_t *c = n->confirmed;
        size_t w = count < n->confirmed_width ? count : n->confirmed_width;
        for (size_t k = 0; k < w; k++) {
            if (clock[k] > c[k])
                c[k] = clock[k];
        }
        uv_mutex_unlock(&n->confirm_lock);
        for (size_t k = w; k < count && rc == CC_OK; k++) {
            if (clock[k])
                rc = CC_EWIDTH; /* wider than anything delivered */
        }
        /* One wake-up per batch the loop takes: the exchange pairs with the
         * loop's in take_confirmed, which clears the flag before it reads. */
        if (!atomic_exchange(&n->confirm_dirty, 1))
            uv_async_send(&n->async);
    }
    atomic_fetch_sub_explicit(&n->users, 1, memory_order_release);
    return rc;
}

int cc_node_add_peer(cc_node *n, const cc_node_peer *peer) {
    if (!n || !peer)
        return CC_EINVAL;
    int rc = check_new_peer(n, peer);
    if (rc != CC_OK)
        return rc;
    if (cc_loop_on_thread(n->loop)) {
        if (n->closing || n->close_begun)
            return CC_ECLOSED;
        rc = add_peer(n, peer, 1, 1);
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

uint64_t cc_node_unacked(const cc_node *cn) {
    cc_node *n = (cc_node *)cn;
    /* The released count first: the tail read after it is at least as far
     * on (those cells were claimed before they were released), so the
     * difference never wraps. */
    uint64_t released = atomic_load_explicit(&n->ring_released, memory_order_acquire);
    return atomic_load_explicit(&n->ring_tail, memory_order_relaxed) - released;
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

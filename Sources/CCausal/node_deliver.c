/* Delivery: peers' messages, own broadcasts, and own broadcasts again
 * after a restart, through the causal engine to the deliver callback. Loop
 * thread only.
 *
 * A received message is delivered straight from the read buffer when it is
 * causally ready (the common case); only a message that must wait is copied,
 * into a block from per-size free lists that grow to the high-water mark and
 * are then reused, so the steady state allocates nothing. */
#include <stdlib.h>
#include <string.h>

#include "cc_error.h"
#include "cc_frame.h"
#include "node_internal.h"

_Static_assert(offsetof(rxmsg, head) == 0, "a cc_msg from the engine is its rxmsg");

/* ---- held-back message blocks ------------------------------------------- */

static rxmsg *rx_get(cc_node *n, uint32_t width, uint32_t length) {
    size_t need = sizeof(rxmsg) + (size_t)width * sizeof(uint64_t) + length;
    unsigned cls = 0;
    while (cls < NODE_RX_CLASSES && ((size_t)256 << cls) < need)
        cls++;
    if (cls == NODE_RX_CLASSES)
        return NULL;
    rxmsg *r = n->rx.free[cls];
    if (r) {
        n->rx.free[cls] = r->free;
        return r;
    }
    /* Warm-up only: a class grows to the most messages of that size held at
     * once (bounded by the engine's capacity), then its blocks are reused. */
    r = malloc((size_t)256 << cls);
    if (!r)
        return NULL;
    r->cls = (uint8_t)cls;
    r->clock = (uint64_t *)(r + 1);
    r->all = n->rx.all;
    n->rx.all = r;
    return r;
}

static void rx_put(cc_node *n, rxmsg *r) {
    r->free = n->rx.free[r->cls];
    n->rx.free[r->cls] = r;
}

/* ---- delivery ----------------------------------------------------------- */

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
    while (!node_is(n, NODE_CLOSING) && (m = cc_delivery_next(&n->engine)) != NULL) {
        rxmsg *r = (rxmsg *)m;
        node_set(&n->stats.pending, n->engine.pending);
        deliver_one(n, r);
        if (r == &n->replay.msg)
            cc__node_replay_next(n); /* the engine has room: the replayed one left it */
        else if (r != &n->rx.scratch)
            rx_put(n, r);
    }
    node_set(&n->stats.pending, n->engine.pending);
}

/* Delivers an own broadcast from its log entry: its clock is the one
 * encoded in its frame (later stamps of the same batch moved clocks.send on). */
void cc__node_deliver_own(cc_node *n, uint64_t seq) {
    log_entry *e = node_entry(n, seq);
    rxmsg own;
    if (e->len) {
        /* The frame stays in the log at least until this returns: entries go
         * only when acknowledged, never inside a deliver callback. */
        const uint8_t *f = e->ck->data + e->off;
        uint32_t w = wire_rd32(f + 12);
        own.head.clock = node_clock_of(f + CC_FRAME_HEADER_SIZE, w, n->clocks.send);
        own.head.width = w;
        own.payload = f + CC_FRAME_HEADER_SIZE + (size_t)w * 8;
    } else {
        memcpy(n->clocks.send, n->engine.local, (size_t)n->width * sizeof(uint64_t));
        own.head.clock = n->clocks.send;
        own.head.width = n->width;
        own.payload = node_bcast_payload(n, e->b);
    }
    own.head.sender = n->cfg.self;
    own.head.level = e->b->level;
    own.kind = e->b->kind;
    own.length = e->b->length;
    n->handed.own = seq;
    deliver_one(n, &own);
}

void cc__node_replay_next(cc_node *n) {
    /* While replaying, the engine's own entry counts own deliveries. */
    n->handed.own = n->engine.local[n->cfg.self];
    for (;;) {
        uint64_t seq = n->handed.own + 1;
        if (seq > n->log.hi) {
            /* Delivered up to the sequence: stamping moves the engine's clock again. */
            n->replay.on = 0;
            return;
        }
        /* Held: an entry stays until handed over (cc__node_trim). */
        const log_entry *e = node_entry(n, seq);
        if (!e->len) {
            /* Never encoded (out of memory): no member delivers it, nor do we. */
            cc_delivery_send(&n->engine, n->cfg.self, NULL);
            n->handed.own = seq;
            continue;
        }
        const uint8_t *f = e->ck->data + e->off;
        uint32_t w = wire_rd32(f + 12);
        if (w > n->replay.width) {
            /* After a restart only, with no replayed message in the engine. */
            uint64_t *c = realloc(n->replay.clock, (size_t)w * sizeof *c);
            if (!c)
                return; /* not delivered now; the folder keeps it for the next start */
            n->replay.clock = c;
            n->replay.width = w;
        }
        rxmsg *r = &n->replay.msg;
        r->head.clock = node_clock_of(f + CC_FRAME_HEADER_SIZE, w, n->replay.clock);
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
void cc__node_skip_before(cc_node *n, uint32_t slot, uint64_t first) {
    uint64_t *local = n->engine.local;
    if (first < 2 || local[slot] + 1 >= first)
        return;
    /* cc_delivery_send raises local[slot] by one and wakes the heads that
     * waited on it: exactly the effect of having delivered up to first - 1. */
    local[slot] = first - 2;
    cc_delivery_send(&n->engine, slot, NULL);
    if (n->handed.clock && n->handed.clock[slot] < first - 1)
        n->handed.clock[slot] = first - 1; /* never delivered, never to be: handed over as well */
    n->handed.moves++;
    cc__node_drain(n);
}

/* ---- from a peer -------------------------------------------------------- */

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
            wire_rd32(f + 8) != sender || sender >= width || width > n->width ||
            wire_rd32(f + 16) != width)
            break;
        uint64_t clock_bytes = (uint64_t)width * 8;
        if (length < CC_FRAME_HEADER_SIZE - 4 || clock_bytes > (uint64_t)length - (CC_FRAME_HEADER_SIZE - 4))
            break;
        const uint64_t *clock = node_clock_of(f + CC_FRAME_HEADER_SIZE, width, n->clocks.scratch);
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
        if (c->state == CONN_CLOSING || node_is(n, NODE_CLOSING))
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
    rxmsg *sc = &n->rx.scratch;
    /* Dense (sparse is refused above), so cc_frame_parse checked entries == width. */
    const uint64_t *clock = node_clock_of(f->clock, f->width, n->clocks.scratch);
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

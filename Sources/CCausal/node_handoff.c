/* What other threads hand over to a node's loop: broadcasts through the
 * ring (node_internal.h), requests through a queue. Loop thread only; the
 * producers' side is in node.c (cc_node_broadcast, push_req).
 *
 * On the loop thread a broadcast is stamped by the engine and encoded once,
 * whole, into the log's chunks (node_log.c), right after the frame stamped
 * before it (so that a batch goes out as one iovec); it is recorded in the
 * state folder, delivered locally (node_deliver.c) and written to every
 * authenticated peer (node_write.c). */
#include <stdint.h>
#include <string.h>

#include "cc_error.h"
#include "cc_frame.h"
#include "node_internal.h"

_Static_assert(NODE_BCAST_PAYLOAD + 16 <= NODE_BLOCK && NODE_BLOCK % 16 == 0, "a ring cell holds its header");

#define BATCH 64
#define BUDGET 4096

/* ---- stamping ----------------------------------------------------------- */

/* The clock of an own broadcast stamped while own broadcasts from before a
 * restart are delivered again (the engine's own entry is behind the
 * sequence): after the broadcast stamped before it, whose frame is held, and
 * after what was delivered since. */
static const uint64_t *replaying_clock(cc_node *n, uint64_t seq) {
    uint64_t *c = n->clocks.send;
    memcpy(c, n->engine.local, (size_t)n->width * sizeof *c);
    const log_entry *prev = node_entry(n, seq - 1);
    if (seq - 1 >= n->log.lo && seq - 1 <= n->log.hi && prev->len) {
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
 * cc__node_process_queue). */
static uint64_t stamp(cc_node *n, node_bcast *b) {
    /* The frame is encoded from the engine's clock right after the send:
     * that is the broadcast's clock, with no copy in between. */
    uint64_t seq;
    const uint64_t *local;
    if (__builtin_expect(!n->replay.on, 1)) {
        seq = cc_delivery_send(&n->engine, n->cfg.self, NULL);
        local = n->engine.local;
    } else {
        seq = n->log.hi + 1;
        local = replaying_clock(n, seq);
    }
    log_entry *e = node_entry(n, seq);
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
    uint8_t *p = size <= UINT32_MAX ? node_reserve(n, e, size) : NULL;
    if (p) {
        const uint8_t *payload = node_bcast_payload(n, b);
        /* Where the frame NODE_AHEAD broadcasts on goes, if they are of this
         * one's size (see cc__node_process_queue). A prefetch never faults: the
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
    n->log.hi = seq;
    node_bump(&n->stats.sent, 1);
    return seq;
}

/* ---- the queue ---------------------------------------------------------- */

static void handle_req(cc_node *n, node_req *r) {
    switch (r->kind) {
    case REQ_ADD_PEER:
        r->rc = node_is(n, NODE_CLOSING | NODE_CLOSE_BEGUN) ? CC_ECLOSED
                                                             : cc__node_add_peer(n, &r->peer, 1, 1);
        if (r->rc == CC_OK)
            cc__node_announce(n);
        break;
    case REQ_DROP:
        for (node_conn *c = n->links.conns; c; c = c->next)
            cc__link_close(c, c->state == CONN_UP ? CC_NODE_PEER_DOWN : 0, CC_ECLOSED, "connection dropped");
        r->rc = CC_OK;
        break;
    default: r->rc = CC_EINVAL;
    }
    uv_sem_post(&r->done);
}

/* Takes up to `budget` items: broadcasts off the ring (a batch at a time:
 * stamped, recorded in the state folder, then delivered), then requests
 * (run, or failed with CC_ECLOSED when `final`). A broadcast a thread made
 * before its request is thus stamped before the request runs. Returns how
 * many items it took. */
size_t cc__node_process_queue(cc_node *n, size_t budget, int final, size_t *sends) {
    size_t done = 0;
    while (done < budget && !node_is(n, NODE_CLOSING)) {
        if (!final && node_is(n, NODE_CLOSED))
            break;
        /* Nothing is delivered or sent before the state folder has it: a
         * restart must not give a sequence a second meaning. */
        uint64_t first = n->log.hi + 1;
        size_t k = 0;
        for (; k < BATCH && !node_is(n, NODE_CLOSING); k++) {
            node_bcast *b = node_cell(n, n->log.taken);
            /* Acquire: pairs with the producer's publication of the cell. A
             * position claimed but not yet published stops the batch; the
             * producer's wake-up brings the loop back. */
            if (atomic_load_explicit(&b->seq, memory_order_acquire) != n->log.taken + 1)
                break;
            n->log.taken++;
            /* The cells come from the producers' cores and the frames go to
             * chunk memory that has left this core's caches: ask for the
             * lines a few broadcasts ahead, so that their misses overlap
             * instead of stalling one broadcast after another. */
            const uint8_t *ahead = (const uint8_t *)node_cell(n, n->log.taken + NODE_AHEAD);
            __builtin_prefetch(ahead);
            __builtin_prefetch(ahead + 64);
            stamp(n, b);
        }
        uint64_t last = n->log.hi;
        if (last >= first) {
            *sends += last - first + 1;
            node_sync_stats(n); /* before the deliver callbacks: they may read the counters */
            cc__node_append_log(n, first, last);
            /* While replaying, these are delivered after the run before them. */
            for (uint64_t seq = first; seq <= last && !node_is(n, NODE_CLOSING) && !n->replay.on; seq++)
                cc__node_deliver_own(n, seq);
            cc__node_drain(n); /* heads that waited on our own slot */
            if (!node_is(n, NODE_CLOSING))
                cc__node_trim(n); /* with no peers the entries go at once */
        }
        size_t nreq = 0;
        node_req *r;
        while (nreq < BATCH && (r = cc_queue_pop(&n->queue)) != NULL) {
            nreq++;
            if (node_is(n, NODE_CLOSING) || final) {
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

/* Takes what other threads handed over (cc__node_on_async and
 * cc__node_on_prepare): stamps and sends the broadcasts, runs the requests.
 * Returns the items taken. */
static size_t take_handed_over(cc_node *n) {
    size_t sends = 0;
    size_t done = cc__node_process_queue(n, BUDGET, 0, &sends);
    if (node_is(n, NODE_CLOSING | NODE_CLOSE_BEGUN))
        return done;
    if (node_closed(n)) {
        cc__node_begin_close(n);
        return done;
    }
    /* One write per peer for the whole batch of broadcasts. */
    if (sends)
        cc__link_flush_all(n);
    cc__link_after_io(n);
    return done;
}

void cc__node_on_async(uv_async_t *h) {
    cc_node *n = h->data;
    if (node_is(n, NODE_CLOSING | NODE_CLOSE_BEGUN))
        return;
    /* on_prepare looks at the ring before the loop sleeps again: until then
     * a broadcast need not wake the loop (see cc_node_broadcast). */
    atomic_store_explicit(&n->ring.awake, 1, memory_order_relaxed);
    if (n->replay.on)
        cc__node_drain(n); /* the first own broadcast to deliver again may be ready at start */
    if (take_handed_over(n) >= BUDGET && !node_is(n, NODE_CLOSING | NODE_CLOSE_BEGUN))
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
void cc__node_on_prepare(uv_prepare_t *h) {
    cc_node *n = h->data;
    size_t done = 0;
    while (!node_is(n, NODE_CLOSING | NODE_CLOSE_BEGUN)) {
        atomic_store_explicit(&n->ring.awake, 0, memory_order_relaxed);
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&node_cell(n, n->log.taken)->seq, memory_order_acquire) != n->log.taken + 1)
            return;
        if (done >= BUDGET) {
            uv_async_send(&n->async); /* more: after the I/O that waits */
            return;
        }
        atomic_store_explicit(&n->ring.awake, 1, memory_order_relaxed);
        done += take_handed_over(n);
    }
}

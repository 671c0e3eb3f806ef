/* A node's send log: its own broadcasts, kept until every peer has
 * acknowledged them. Loop thread only.
 *
 * An entry holds its ring cell (the window: node_handoff.c) and its frame,
 * encoded once when stamped. Frames lie back to back in chunks, so that a
 * batch is one iovec (cc__node_gather). The entry, its frame and its ring
 * cell are released when every known peer has acknowledged it (and, with a
 * state folder, once the folder records it as handed over: after a restart
 * the node delivers it again from there, cc__node_replay_next). */
#include <stdlib.h>
#include <string.h>

#include "cc_error.h"
#include "node_internal.h"

/* ---- releases ----------------------------------------------------------- */

/* After cells were released: `room` for the producers that found the window
 * full, `acked` when the log is empty (cc_node.h). The publication of
 * ring.released and the load of ring.want_room here, with
 * cc_node_broadcast's store of want_room and its second look at `released`
 * (all seq-cst), are Dekker's pattern: a broadcast that found the window
 * full either sees this release or is seen here. One load per batch of
 * releases when nobody waits. */
static void notify_released(cc_node *n) {
    if (node_is(n, NODE_CLOSING | NODE_CLOSE_BEGUN))
        return;
    if (atomic_load_explicit(&n->ring.want_room, memory_order_seq_cst) &&
        atomic_exchange_explicit(&n->ring.want_room, 0, memory_order_relaxed) && n->cb.room) {
        n->cb.room(n->cb.ctx);
        if (node_is(n, NODE_CLOSING | NODE_CLOSE_BEGUN))
            return; /* the callback closed the node */
    }
    if (n->log.lo > n->log.hi && n->cb.acked)
        n->cb.acked(n->cb.ctx);
}

/* Releases the own broadcasts every known peer has acknowledged, but never
 * one that a write in flight still points at (libuv reads the buffers until
 * the write callback). */
void cc__node_trim(cc_node *n) {
    uint64_t lim = n->log.hi;
    /* With a state folder an entry also stays until the folder records it
     * as handed over here: a restart delivers it again from the log. */
    if (n->folder.dir && n->folder.durable[n->cfg.self] < lim)
        lim = n->folder.durable[n->cfg.self];
    for (uint32_t s = 0; s < n->width && lim >= n->log.lo; s++) {
        if (n->peers[s] && n->peers[s]->acked < lim)
            lim = n->peers[s]->acked;
    }
    for (node_conn *c = n->links.conns; c; c = c->next) {
        if (c->wr_busy && c->wr_lo != UINT64_MAX && c->wr_lo - 1 < lim)
            lim = c->wr_lo - 1;
    }
    int released = n->log.lo <= lim;
    if (released) {
        cc__node_release_log(n, n->log.lo, lim);
        n->log.lo = lim + 1;
        cc__node_publish_released(n);
    }
    node_sync_stats(n);
    if (released)
        notify_released(n);
}

void cc__node_publish_released(cc_node *n) {
    /* Release: the loop is done with the cells (stamp copied the payloads
     * out) before a producer that sees the count writes them again.
     * Sequentially consistent for notify_released's load of want_room. */
    atomic_store_explicit(&n->ring.released, n->log.freed, memory_order_seq_cst);
}

node_bcast *cc__node_take_cell(cc_node *n) {
    /* Before the node is shared: claim and take the next position at once. */
    uint64_t pos = atomic_load_explicit(&n->ring.tail, memory_order_relaxed);
    if (pos - atomic_load_explicit(&n->ring.released, memory_order_relaxed) >= n->cfg.send_window)
        return NULL;
    atomic_store_explicit(&n->ring.tail, pos + 1, memory_order_relaxed);
    n->log.taken = pos + 1;
    node_bcast *b = node_cell(n, pos);
    atomic_store_explicit(&b->seq, pos + 1, memory_order_relaxed);
    return b;
}

/* ---- frame chunks ------------------------------------------------------- */

static node_chunk *chunk_new(cc_node *n, size_t need) {
    node_chunk *ck = n->log.spare;
    if (ck && need <= ck->cap) {
        n->log.spare = ck->free;
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
        ck->next = n->log.chunks;
        if (n->log.chunks)
            n->log.chunks->prev = ck;
        n->log.chunks = ck;
    }
    ck->used = 0;
    ck->live = 0;
    return ck;
}

static void chunk_free(cc_node *n, node_chunk *ck) {
    if (ck->cap == NODE_CHUNK) {
        ck->free = n->log.spare;
        n->log.spare = ck;
        return;
    }
    /* An outsize chunk (one frame larger than NODE_CHUNK): rare, not kept. */
    if (ck->prev)
        ck->prev->next = ck->next;
    else
        n->log.chunks = ck->next;
    if (ck->next)
        ck->next->prev = ck->prev;
    free(ck);
}

uint8_t *cc__node_reserve(cc_node *n, log_entry *e, size_t len) {
    node_chunk *ck = n->log.chunk;
    if (ck && ck->live == 0)
        ck->used = 0; /* no held frame lies in it, so no write points at it: start over */
    if (!ck || ck->cap - ck->used < len) {
        ck = chunk_new(n, len);
        if (!ck)
            return NULL;
        /* The chunk we leave goes back when its last frame is released. */
        if (n->log.chunk && n->log.chunk->live == 0)
            chunk_free(n, n->log.chunk);
        n->log.chunk = ck;
    }
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
    const node_chunk *ck = node_entry(n, from)->ck;
    if (node_entry(n, to)->ck == ck)
        return to;
    uint64_t lo = from, hi = to - 1; /* lo is in the run; the end is in [lo, hi] */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo + 1) / 2;
        if (node_entry(n, mid)->ck == ck)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

void cc__node_release_log(cc_node *n, uint64_t from, uint64_t to) {
    /* Entries go in log order, which is ring order: one cell each. */
    n->log.freed += to - from + 1;
    while (from <= to) {
        node_chunk *ck = node_entry(n, from)->ck;
        uint64_t end = ck ? run_end(n, from, to) : from;
        if (ck) {
            ck->live -= (uint32_t)(end - from + 1);
            if (ck->live == 0 && ck != n->log.chunk)
                chunk_free(n, ck);
        }
        from = end + 1;
    }
}

unsigned cc__node_gather(cc_node *n, uint64_t *seq, uint64_t to, uv_buf_t *iov, unsigned niov, unsigned max,
                         size_t *bytes) {
    uint64_t s = *seq;
    while (s <= to) {
        const log_entry *e = node_entry(n, s);
        if (!e->ck) {
            s++; /* not encoded: never sent */
            continue;
        }
        uint64_t end = run_end(n, s, to);
        const log_entry *last = node_entry(n, end);
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

/* A member of a causal broadcast group (cc_node.h): the functions other
 * threads call, and the start. One file per part of the node, each with its
 * structures in node_internal.h:
 *
 *   node.c            the public functions: start (configuration, memory),
 *                     broadcast, confirm, add a member, counters, close
 *   node_life.c       the lifecycle on the loop: set-up, close, free
 *   node_handoff.c    from other threads to the loop: the broadcast ring,
 *                     requests, stamping into the log
 *   node_log.c        the send log: own frames until every peer has them
 *   node_deliver.c    delivery: peers' messages, own broadcasts, again
 *                     after a restart; held-back messages
 *   node_members.c    the members: peer table, growth, MEMBERS, a peer up
 *   node_state.c      the state folder
 *   node_link.c       TCP links: connections, listening, dialing, the timer
 *   node_handshake.c  the handshake
 *   node_read.c       reads: framing, frames, pauses
 *   node_write.c      batched writes
 *
 * Calls go down: the loop's entry points (node_handoff.c's wake-ups,
 * node_read.c's reads, node_link.c's timer and connection callbacks,
 * node_write.c's write callback) call into delivery, the log, the members
 * and the state folder, and those write through node_write.c and close
 * links through node_link.c; the application hears back only through its
 * callbacks.
 *
 * Other threads reach the loop through the broadcast ring (node_handoff.c:
 * a broadcast claims the next cell unless send_window broadcasts await
 * acknowledgement, copies its payload in and publishes the cell) and a
 * bounded queue of requests; one uv_async_t wakes the loop, and a broadcast
 * wakes it only when the loop is not bound to look at the ring anyway
 * (`awake`, cc__node_on_prepare). Producers touch the async handle only
 * between an increment and a decrement of `users`, after checking `closed`; the loop
 * closes the handle only after setting `closed` and seeing `users` at zero
 * (both seq-cst, so either the producer sees closed or the loop sees it). */
#include <sched.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc_error.h"
#include "cc_frame.h"
#include "node_internal.h"

/* ---- start -------------------------------------------------------------- */

int cc_node_start(cc_loop *loop, const cc_node_config *config, const cc_node_peer *peers, size_t npeers,
                  const cc_node_callbacks *callbacks, cc_node **out) {
    if (out)
        *out = NULL;
    if (!loop || !config || !callbacks || !callbacks->deliver || !out || (npeers && !peers))
        return CC_EINVAL;
    cc_node_config cfg = *config;
    if (!cfg.listen_host || !cc__node_valid_host(cfg.listen_host, cfg.listen_port))
        return CC_EINVAL;
    if (!cfg.max_width)
        cfg.max_width = NODE_WIDTH_DEFAULT;
    if (cfg.max_width > NODE_WIDTH_MAX || cfg.self >= cfg.max_width)
        return CC_EINVAL;
    uint32_t width = cfg.width > cfg.self ? cfg.width : cfg.self + 1;
    for (size_t i = 0; i < npeers; i++) {
        if (peers[i].slot == cfg.self || peers[i].slot >= cfg.max_width ||
            !cc__node_valid_host(peers[i].host, peers[i].port))
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
    atomic_init(&n->ring.tail, 0);
    atomic_init(&n->ring.released, 0);
    atomic_init(&n->ring.awake, 0);
    atomic_init(&n->ring.want_room, 0);
    atomic_init(&n->life, 0);
    atomic_init(&n->confirm.dirty, 0);
    atomic_init(&n->port, 0);
    n->folder.log_fd = -1;
    n->loop = loop;
    n->cb = *callbacks;
    snprintf(n->listen_host, sizeof n->listen_host, "%s", cfg.listen_host);
    cfg.listen_host = n->listen_host;
    if (cfg.state_dir) {
        n->folder.dir = strdup(cfg.state_dir);
        if (!n->folder.dir) {
            free(n);
            return CC_ENOMEM;
        }
        cfg.state_dir = n->folder.dir;
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
    n->links.tick_ms = tick < 5 ? 5 : tick > 250 ? 250 : tick;

    size_t cells = 1;
    while (cells < cfg.send_window)
        cells <<= 1;
    n->ring.mask = cells - 1;
    /* Zeroed: no cell's seq says "published" for its first-lap position. */
    n->ring.cells = aligned_alloc(CC_CACHE_LINE, cells * NODE_BLOCK);
    if (n->ring.cells)
        memset(n->ring.cells, 0, cells * NODE_BLOCK);
    int rc = n->ring.cells ? CC_OK : CC_ENOMEM;
    if (rc == CC_OK)
        rc = cc_queue_init(&n->queue, 64); /* requests; more at once wait their turn (push_req) */
    if (rc != CC_OK) {
        free(n->ring.cells);
        free(n->folder.dir);
        free(n);
        return rc;
    }
    /* A sender runs at most its send window ahead of what we acknowledged,
     * so the engine's per-sender look-ahead is the same window. */
    rc = cc_delivery_init(&n->engine, width, cfg.send_window, cfg.pending);
    n->peers = calloc(width, sizeof *n->peers);
    n->clocks.send = calloc(width, sizeof *n->clocks.send);
    n->clocks.scratch = calloc(width, sizeof *n->clocks.scratch);
    n->clocks.room = width;
    n->log.mask = cells - 1; /* as many entries as ring cells: indexed by a mask */
    n->log.entries = calloc(cells, sizeof *n->log.entries);
    /* Address space only: pages are touched by payloads larger than NODE_INLINE. */
    if (cfg.max_payload > NODE_INLINE)
        n->ring.big = malloc(cells * cfg.max_payload);
    if (cfg.state_dir)
        n->folder.durable = calloc(width, sizeof *n->folder.durable);
    if (rc == CC_OK && cfg.state_dir && !n->folder.durable)
        rc = CC_ENOMEM;
    if (rc == CC_OK && cfg.state_dir && cfg.confirm) {
        n->handed.clock = calloc(width, sizeof *n->handed.clock);
        n->confirm.clock = calloc(width, sizeof *n->confirm.clock);
        if (!n->handed.clock || !n->confirm.clock || uv_mutex_init(&n->confirm.lock) != 0) {
            free(n->confirm.clock); /* node_free destroys the lock only with the array */
            n->confirm.clock = NULL;
            rc = !n->handed.clock || !n->confirm.clock ? CC_ENOMEM : CC_ESYS;
        }
        n->confirm.width = width;
    }
    if (rc == CC_OK && (!n->peers || !n->clocks.send || !n->clocks.scratch || !n->log.entries ||
                        (cfg.max_payload > NODE_INLINE && !n->ring.big)))
        rc = CC_ENOMEM;
    n->log.lo = 1;
    n->log.hi = 0;
    for (size_t i = 0; rc == CC_OK && i < npeers; i++)
        rc = cc__node_add_peer(n, &peers[i], 0, 1);
    if (rc == CC_OK)
        rc = cc__node_load_state(n);
    if (rc != CC_OK) {
        cc__node_free(n);
        return rc;
    }
    node_sync_stats(n);

    int result = CC_ESYS;
    rc = cc__loop_call_sync(loop, cc__node_setup, n, &result);
    if (rc != CC_OK) {
        cc__node_free(n); /* never reached the loop */
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
    if (!node_closed(n)) {
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
    /* Seq-cst increment, then the closed check: pairs with cc__node_begin_close. */
    atomic_fetch_add(&n->users, 1);
    int rc = CC_ECLOSED;
    if (!node_closed(n)) {
        uint64_t pos = atomic_load_explicit(&n->ring.tail, memory_order_relaxed);
        for (;;) {
            /* Acquire: pairs with cc__node_publish_released; the loop is done
             * with the cell's previous broadcast. A stale count only makes
             * the window look fuller than it is. */
            if (pos - atomic_load_explicit(&n->ring.released, memory_order_acquire) >= n->cfg.send_window) {
                /* Full: ask the loop for `room`, then look again (Dekker's
                 * pattern with notify_released: either this load sees a
                 * release, or the loop sees the request). */
                atomic_store_explicit(&n->ring.want_room, 1, memory_order_seq_cst);
                uint64_t released = atomic_load_explicit(&n->ring.released, memory_order_seq_cst);
                if (pos - released >= n->cfg.send_window) {
                    rc = CC_EFULL; /* send_window broadcasts not yet acknowledged by everyone */
                    break;
                }
                continue;
            }
            /* The compare-and-swap only elects this producer for pos: the
             * cell's data is published by its seq below. */
            if (atomic_compare_exchange_weak_explicit(&n->ring.tail, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                node_bcast *b = node_cell(n, pos);
                b->length = (uint32_t)length;
                b->kind = kind;
                b->level = level;
                if (length)
                    memcpy(node_bcast_payload(n, b), payload, length);
                /* Sequentially consistent, as the load of awake below: the
                 * cell is written before the loop sees it, and the store and
                 * that load are Dekker's pattern with cc__node_on_prepare's store
                 * and fence. A loop that will look at the ring before it
                 * sleeps needs no wake-up, which saves a system call here
                 * and a wake-up there per batch. (One exchange: on x86 a
                 * plain store and a fence would cost more.) */
                atomic_exchange_explicit(&b->seq, pos + 1, memory_order_seq_cst);
                if (!atomic_load_explicit(&n->ring.awake, memory_order_seq_cst))
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
    if (!n->confirm.clock)
        return CC_OK; /* no state folder: nothing to write */
    atomic_fetch_add(&n->users, 1);
    int rc = CC_ECLOSED;
    if (!node_closed(n)) {
        rc = CC_OK;
        uv_mutex_lock(&n->confirm.lock);
        uint64_t *c = n->confirm.clock;
        size_t w = count < n->confirm.width ? count : n->confirm.width;
        for (size_t k = 0; k < w; k++) {
            if (clock[k] > c[k])
                c[k] = clock[k];
        }
        uv_mutex_unlock(&n->confirm.lock);
        for (size_t k = w; k < count && rc == CC_OK; k++) {
            if (clock[k])
                rc = CC_EWIDTH; /* wider than anything delivered */
        }
        /* One wake-up per batch the loop takes: the exchange pairs with the
         * loop's in take_confirmed (node_state.c), which clears the flag before it reads. */
        if (!atomic_exchange(&n->confirm.dirty, 1))
            uv_async_send(&n->async);
    }
    atomic_fetch_sub_explicit(&n->users, 1, memory_order_release);
    return rc;
}

int cc_node_add_peer(cc_node *n, const cc_node_peer *peer) {
    if (!n || !peer)
        return CC_EINVAL;
    int rc = cc__node_check_peer(n, peer);
    if (rc != CC_OK)
        return rc;
    if (cc_loop_on_thread(n->loop)) {
        if (node_is(n, NODE_CLOSING | NODE_CLOSE_BEGUN))
            return CC_ECLOSED;
        rc = cc__node_add_peer(n, peer, 1, 1);
        if (rc == CC_OK)
            cc__node_announce(n);
        return rc;
    }
    node_req r = {.kind = REQ_ADD_PEER, .peer = *peer};
    return run_req(n, &r);
}

int cc__node_drop_connections(cc_node *n) {
    node_req r = {.kind = REQ_DROP};
    if (cc_loop_on_thread(n->loop)) {
        if (node_is(n, NODE_CLOSING))
            return CC_ECLOSED;
        for (node_conn *c = n->links.conns; c; c = c->next)
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
    uint64_t released = atomic_load_explicit(&n->ring.released, memory_order_acquire);
    return atomic_load_explicit(&n->ring.tail, memory_order_relaxed) - released;
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
        if (node_is(n, NODE_CLOSING | NODE_CLOSE_BEGUN) ||
            (atomic_fetch_or(&n->life, NODE_CLOSED) & NODE_CLOSED))
            return CC_ECLOSED;
        cc__node_begin_close(n);
        return CC_OK;
    }
    atomic_fetch_add(&n->users, 1);
    int rc = atomic_fetch_or(&n->life, NODE_CLOSED) & NODE_CLOSED ? CC_ECLOSED : CC_OK;
    if (rc == CC_OK)
        uv_async_send(&n->async); /* the loop sees closed and closes everything */
    atomic_fetch_sub_explicit(&n->users, 1, memory_order_release);
    return rc;
}

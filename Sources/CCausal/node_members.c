/* A node's members: the peer table, the clock's width and its growth,
 * MEMBERS frames, and a peer whose connection came up. Loop thread only
 * (and cc_node_start, before the node is shared). */
#include <stdlib.h>
#include <string.h>

#include "cc_error.h"
#include "cc_frame.h"
#include "node_internal.h"

void cc__node_emit(cc_node *n, cc_node_event_kind kind, uint32_t slot, int code, const char *reason,
                   const char *address) {
    if (!n->cb.event || node_is(n, NODE_CLOSING))
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

int cc__node_valid_host(const char *host, uint16_t port) {
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    if (!host || !host[0] || strlen(host) >= CC_NODE_HOST_MAX)
        return 0;
    return uv_ip4_addr(host, port, &a4) == 0 || uv_ip6_addr(host, port, &a6) == 0;
}

/* ---- growth ------------------------------------------------------------- */

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
    uint32_t room = n->clocks.room;
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
    if (room > n->clocks.room) {
        void **retired = realloc(n->clocks.retired, (n->clocks.nretired + 2) * sizeof *retired);
        if (!retired)
            return CC_ENOMEM;
        n->clocks.retired = retired;
        sc = calloc(room, sizeof *sc);
        rc2 = calloc(room, sizeof *rc2);
        if (!sc || !rc2) {
            free(sc);
            free(rc2);
            return CC_ENOMEM;
        }
        memcpy(sc, n->clocks.send, (size_t)n->width * sizeof *sc);
    }
    if (n->folder.durable) {
        uint64_t *d = realloc(n->folder.durable, (size_t)width * sizeof *d);
        if (!d) {
            free(sc);
            free(rc2);
            return CC_ENOMEM;
        }
        memset(d + n->width, 0, (size_t)(width - n->width) * sizeof *d);
        n->folder.durable = d;
    }
    if (n->handed.clock) {
        uint64_t *h = realloc(n->handed.clock, (size_t)width * sizeof *h);
        if (!h) {
            free(sc);
            free(rc2);
            return CC_ENOMEM;
        }
        memset(h + n->width, 0, (size_t)(width - n->width) * sizeof *h);
        n->handed.clock = h;
        /* The application confirms clocks of delivered messages, at most
         * this wide: room for them before any is delivered. */
        uv_mutex_lock(&n->confirm.lock);
        uint64_t *c = realloc(n->confirm.clock, (size_t)width * sizeof *c);
        if (c) {
            memset(c + n->confirm.width, 0, (size_t)(width - n->confirm.width) * sizeof *c);
            n->confirm.clock = c;
            n->confirm.width = width;
        }
        uv_mutex_unlock(&n->confirm.lock);
        if (!c) {
            free(sc);
            free(rc2);
            return CC_ENOMEM;
        }
    }
    if (sc) {
        n->clocks.retired[n->clocks.nretired++] = n->clocks.send;
        n->clocks.retired[n->clocks.nretired++] = n->clocks.scratch;
        n->clocks.send = sc;
        n->clocks.scratch = rc2;
        n->clocks.room = room;
    } else {
        /* Within the room: the new entries read as 0, as in fresh buffers. */
        memset(n->clocks.send + n->width, 0, (size_t)(width - n->width) * sizeof *sc);
        memset(n->clocks.scratch + n->width, 0, (size_t)(width - n->width) * sizeof *rc2);
    }
    n->width = width;
    node_sync_stats(n);
    return CC_OK;
}

/* ---- members ------------------------------------------------------------ */

/* The checks of cc_node_add_peer, in its codes. */
int cc__node_check_peer(const cc_node *n, const cc_node_peer *p) {
    if (p->slot == n->cfg.self)
        return CC_EINVAL;
    if (p->slot >= n->cfg.max_width)
        return CC_EWIDTH;
    if (!cc__node_valid_host(p->host, p->port))
        return CC_ESYS; /* uv_ip4_addr and uv_ip6_addr both refused it */
    return CC_OK;
}

/* Adds a member. `configured`: the address came from our caller
 * (cc_node_start, cc_node_add_peer), not from another member's MEMBERS, and
 * is kept whatever the member announces. `announce`: report it and dial. */
int cc__node_add_peer(cc_node *n, const cc_node_peer *p, int announce, int configured) {
    int rc = cc__node_check_peer(n, p);
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
    if (node_is(n, NODE_CLOSING))
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

void cc__node_announce(cc_node *n) {
    for (node_conn *c = n->links.conns; c; c = c->next) {
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
            if (slot == c->slot && !np->configured && cc__node_valid_host(peer.host, port))
                np->addr = peer;
            continue;
        }
        if (slot >= n->cfg.max_width)
            return CC_EWIDTH; /* a member past the widest group we accept */
        if (cc__node_add_peer(n, &peer, 1, 0) == CC_OK)
            added++;
        if (node_is(n, NODE_CLOSING) || c->state == CONN_CLOSING)
            return CC_OK;
    }
    (void)added;
    return CC_OK;
}

void cc__node_peer_up(cc_node *n, node_conn *c) {
    node_peer *p = c->peer;
    if (p->conn && p->conn != c)
        cc__link_close(p->conn, CC_NODE_PEER_DOWN, CC_ECLOSED, "replaced by a new connection");
    p->conn = c;
    c->state = CONN_UP;
    if (!c->dialer)
        n->links.nhandshaking--;
    if (c->peer_width > n->width)
        cc__node_grow(n, c->peer_width); /* on_hello refused a HELLO wider than max_width */
    uint64_t has = c->peer_has < n->log.hi ? c->peer_has : n->log.hi;
    if (has > p->acked)
        p->acked = has;
    c->next_send = has + 1 > n->log.lo ? has + 1 : n->log.lo;
    uint64_t again_hi = p->sent_hi < n->log.hi ? p->sent_hi : n->log.hi;
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
    if (node_is(n, NODE_CLOSING) || c->state != CONN_UP)
        return;
    cc__node_skip_before(n, c->slot, c->peer_log_lo);
    if (node_is(n, NODE_CLOSING) || c->state != CONN_UP)
        return;
    cc__node_trim(n);
    cc__link_flush(c);
}

/* A node's TCP links: connections, listening and accepting, dialing with
 * backoff, and the timer that sweeps them. Loop thread only. Reads are in
 * node_read.c, writes in node_write.c, the handshake in node_handshake.c. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc_error.h"
#include "cc_frame.h"
#include "node_internal.h"

/* ---- connections -------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h) {
    node_conn *c = h->data;
    cc_node *n = c->node;
    if (c->prev)
        c->prev->next = c->next;
    else
        n->links.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->rbuf);
    free(c->ctl[0]);
    free(c->ctl[1]);
    free(c);
    cc__node_release(n);
}

static node_conn *conn_new(cc_node *n) {
    node_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    /* Small until the peer has proven the key: connections that never
     * authenticate hold little. */
    c->rcap = NODE_RBUF_HELLO;
    c->rbuf = malloc(c->rcap);
    c->ctl_cap[0] = c->ctl_cap[1] = 512;
    c->ctl[0] = malloc(512);
    c->ctl[1] = malloc(512);
    if (!c->rbuf || !c->ctl[0] || !c->ctl[1] || uv_tcp_init(cc_loop_uv(n->loop), &c->tcp) != 0) {
        free(c->rbuf);
        free(c->ctl[0]);
        free(c->ctl[1]);
        free(c);
        return NULL;
    }
    c->tcp.data = c;
    c->wreq.data = c;
    c->connect.data = c;
    c->node = n;
    c->slot = UINT32_MAX;
    c->wr_lo = UINT64_MAX;
    c->started = c->last_rx = c->last_tx = uv_now(cc_loop_uv(n->loop));
    randombytes_buf(c->nonce, sizeof c->nonce);
    c->next = n->links.conns;
    if (n->links.conns)
        n->links.conns->prev = c;
    n->links.conns = c;
    n->handles++;
    return c;
}

void cc__link_close(node_conn *c, int event, int code, const char *reason) {
    if (c->state == CONN_CLOSING)
        return;
    cc_node *n = c->node;
    int was = c->state;
    c->state = CONN_CLOSING;
    if (c->paused) {
        c->paused = 0;
        n->links.npaused--;
    }
    if (was != CONN_UP && !c->dialer)
        n->links.nhandshaking--;
    node_peer *p = c->peer;
    if (p && p->conn == c) {
        p->conn = NULL;
        if (was == CONN_UP)
            atomic_fetch_sub_explicit(&n->stats.peers_up, 1, memory_order_relaxed);
        if (n->cfg.self < p->addr.slot && !node_is(n, NODE_CLOSING)) {
            p->dial_at = uv_now(cc_loop_uv(n->loop)) + p->backoff;
            p->backoff = p->backoff * 2 > n->cfg.reconnect_max_ms ? n->cfg.reconnect_max_ms : p->backoff * 2;
        }
    }
    /* Close first, report after: a callback that closes the node finds this
     * connection already closing. Its memory lives until on_conn_closed. */
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    if (node_is(n, NODE_CLOSING) || !event)
        return;
    if (was == CONN_UP) {
        if (event == CC_NODE_PROTOCOL) {
            node_bump(&n->stats.protocol_errors, 1);
            cc__node_emit(n, CC_NODE_PROTOCOL, c->slot, code, reason, c->addr);
        }
        cc__node_emit(n, CC_NODE_PEER_DOWN, c->slot, code, reason, c->addr);
    } else if (event == CC_NODE_REFUSED || event == CC_NODE_PROTOCOL) {
        node_bump(&n->stats.refused, 1);
        cc__node_emit(n, CC_NODE_REFUSED, c->slot, code, reason, c->addr);
    }
}

/* ---- accepting and dialing ---------------------------------------------- */

/* The handshake slots are full: closes the oldest accepted connection still
 * in the handshake. Refusing the newest instead let a flood of silent
 * connections hold every slot for handshake_ms, again and again, and keep
 * members out; this way a member's connection is closed only if
 * NODE_HANDSHAKING_MAX others arrive within its handshake (a round trip and
 * a half), and then its retry gets in. Not "silent ones first": a HELLO
 * costs a stranger nothing (slots are no secret), and the newcomer, which
 * has not spoken yet either, would then be the one to go. Runs only when
 * full: one pass over the connections (newest first) per accept. */
static void evict_oldest(cc_node *n) {
    node_conn *oldest = NULL;
    for (node_conn *c = n->links.conns; c; c = c->next) {
        if (!c->dialer && c->state == CONN_HANDSHAKE)
            oldest = c;
    }
    if (oldest)
        cc__link_close(oldest, CC_NODE_REFUSED, CC_EFULL,
                       "handshake slots full: the oldest connection closed");
}

static void on_connection(uv_stream_t *server, int status) {
    cc_node *n = server->data;
    if (status < 0 || node_is(n, NODE_CLOSING))
        return;
    node_conn *c = conn_new(n);
    if (!c)
        return;
    n->links.nhandshaking++; /* until it is up or closed (cc__link_close, cc__node_peer_up) */
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        cc__link_close(c, 0, 0, NULL);
        return;
    }
    cc__link_start_reading(c);
    if (n->links.nhandshaking > NODE_HANDSHAKING_MAX)
        evict_oldest(n);
    /* The acceptor waits for the dialer's HELLO: it has to learn who calls
     * before it can say what it has from them. */
}

int cc__link_listen(cc_node *n) {
    uv_loop_t *uv = cc_loop_uv(n->loop);
    struct sockaddr_storage ss;
    if (uv_ip4_addr(n->listen_host, n->cfg.listen_port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(n->listen_host, n->cfg.listen_port, (struct sockaddr_in6 *)&ss) != 0)
        return CC_EINVAL;
    if (uv_tcp_init(uv, &n->links.listener) != 0)
        return CC_ESYS;
    n->links.listener.data = n;
    n->handles++;
    if (uv_tcp_bind(&n->links.listener, (struct sockaddr *)&ss, 0) != 0 ||
        uv_listen((uv_stream_t *)&n->links.listener, 128, on_connection) != 0)
        return CC_ESYS;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&n->links.listener, (struct sockaddr *)&ss, &len) != 0)
        return CC_ESYS;
    uint16_t port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    atomic_store_explicit(&n->port, port, memory_order_relaxed);
    return CC_OK;
}

static void on_connect(uv_connect_t *req, int status) {
    node_conn *c = req->data;
    if (status == UV_ECANCELED || c->state == CONN_CLOSING || node_is(c->node, NODE_CLOSING))
        return;
    if (status < 0) {
        cc__link_close(c, 0, 0, NULL); /* nobody there yet: retried with backoff, no event */
        return;
    }
    cc__link_start_reading(c);
    if (c->state == CONN_CLOSING)
        return;
    cc__link_send_hello(c);
    cc__link_flush(c);
}

void cc__link_dial(cc_node *n, node_peer *p) {
    if (p->conn || node_is(n, NODE_CLOSING))
        return;
    node_conn *c = conn_new(n);
    if (!c)
        return;
    c->dialer = 1;
    c->peer = p;
    c->slot = p->addr.slot;
    p->conn = c;
    c->state = CONN_CONNECTING;
    snprintf(c->addr, sizeof c->addr, "%s:%u", p->addr.host, (unsigned)p->addr.port);
    struct sockaddr_storage ss;
    int rc = uv_ip4_addr(p->addr.host, p->addr.port, (struct sockaddr_in *)&ss);
    if (rc != 0)
        rc = uv_ip6_addr(p->addr.host, p->addr.port, (struct sockaddr_in6 *)&ss);
    if (rc == 0)
        rc = uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&ss, on_connect);
    if (rc != 0)
        cc__link_close(c, 0, 0, NULL);
}

/* ---- fuzz hooks (node_internal.h) --------------------------------------- */

node_conn *cc__link_adopt(cc_node *n, int fd) {
    if (node_is(n, NODE_CLOSING))
        return NULL;
    node_conn *c = conn_new(n);
    if (!c)
        return NULL;
    n->links.nhandshaking++; /* as on_connection */
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        cc__link_close(c, 0, 0, NULL);
        return NULL;
    }
    cc__link_start_reading(c);
    return c;
}

/* ---- the sweep ---------------------------------------------------------- */

/* One timer per node: handshake deadlines, heartbeats, silent peers and due
 * reconnects. Its period is a quarter of the shortest of those intervals. */
void cc__link_on_timer(uv_timer_t *t) {
    cc_node *n = t->data;
    if (node_is(n, NODE_CLOSING))
        return;
    /* A safety net for a lost wake-up: cc__node_on_prepare and
     * cc_node_broadcast see each other's store (node_handoff.c), but
     * uv_async_send returns at once when it reads its handle as already
     * pending (a relaxed read), which a weakly ordered machine may read stale
     * after the loop looked. A broadcast then
     * waits for the next one's wake-up; this tick bounds the wait when there
     * is no next one. */
    if (atomic_load_explicit(&node_cell(n, n->log.taken)->seq, memory_order_acquire) == n->log.taken + 1)
        uv_async_send(&n->async);
    uint64_t now = uv_now(cc_loop_uv(n->loop));
    for (node_conn *c = n->links.conns; c && !node_is(n, NODE_CLOSING); c = c->next) {
        if (c->state == CONN_CLOSING)
            continue;
        if (c->state != CONN_UP) {
            if (now - c->started >= n->cfg.handshake_ms)
                cc__link_close(c, c->state == CONN_CONNECTING ? 0 : CC_NODE_REFUSED, CC_ECLOSED,
                               "handshake timed out");
            continue;
        }
        if (!c->paused && now - c->last_rx >= n->cfg.timeout_ms) {
            cc__link_close(c, CC_NODE_PEER_DOWN, CC_ECLOSED, "peer silent for too long");
            continue;
        }
        /* Paused at one frame for as long: a message too far ahead (or a
         * pending set that stays full) would otherwise hold the link, and
         * everything behind it, forever. Reconnecting costs nothing stored:
         * the frame was not acknowledged, so the peer sends it again. */
        if (c->paused && now - c->stuck_since >= n->cfg.timeout_ms) {
            cc__link_close(c, CC_NODE_PEER_DOWN, c->pause_code,
                           c->pause_code == CC_EAHEAD ? "paused too long: a message too far ahead"
                                                      : "paused too long: no room for held-back messages");
            continue;
        }
        if (now - c->last_tx >= n->cfg.heartbeat_ms) {
            c->hb_due = 1;
            cc__link_flush(c);
        }
    }
    for (uint32_t s = n->cfg.self + 1; s < n->width && !node_is(n, NODE_CLOSING); s++) {
        node_peer *p = n->peers[s];
        if (p && !p->conn && p->dial_at <= now)
            cc__link_dial(n, p);
    }
    cc__link_after_io(n);
}

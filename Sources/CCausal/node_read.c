/* A node's reads: framing of the byte stream, the frames of an
 * authenticated peer, and paused readers. Loop thread only.
 *
 * Reads land in the connection's own buffer (alloc_cb hands out its free
 * tail); every complete frame is handled in place and the leftover partial
 * frame is moved to the front. The buffer is small in the handshake, grows to
 * NODE_RBUF once the peer is authenticated (large reads: fewer syscalls,
 * wake-ups and acknowledgements per message), and beyond that only to the
 * largest frame the peer sends (at most max_frame, which the parser enforces
 * before waiting for a body), so the steady state allocates nothing. Before
 * that the parser's bound is NODE_HANDSHAKE_FRAME, so a stranger's length
 * prefix never grows the buffer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc_error.h"
#include "cc_frame.h"
#include "node_internal.h"

static void conn_process(node_conn *c);

static int on_frame(node_conn *c, const cc_frame *f) {
    cc_node *n = c->node;
    if (c->state != CONN_UP) {
        if (f->type == CC_FRAME_HELLO && !c->got_hello)
            return cc__link_on_hello(c, f);
        if (f->type == CC_FRAME_AUTH && c->got_hello)
            return cc__link_on_auth(c, f);
        cc__link_close(c, CC_NODE_REFUSED, CC_EINVAL,
                       f->type == CC_FRAME_MESSAGE ? "message before the handshake"
                                                   : "unexpected frame in the handshake");
        return NODE_FRAME_CLOSED;
    }
    switch (f->type) {
    case CC_FRAME_MESSAGE: return cc__node_on_message(n, c, f);
    case CC_FRAME_ACK: {
        uint64_t a = f->seq < n->log.hi ? f->seq : n->log.hi;
        if (a > c->peer->acked) {
            c->peer->acked = a;
            cc__node_trim(n);
        }
        return NODE_FRAME_DONE;
    }
    case CC_FRAME_HEARTBEAT: return NODE_FRAME_DONE; /* any frame is a sign of life */
    case CC_FRAME_MEMBERS: {
        if (f->width > n->width) {
            int rc = cc__node_grow(n, f->width);
            if (rc != CC_OK) {
                cc__link_close(c, CC_NODE_PROTOCOL, rc,
                               rc == CC_EWIDTH ? "MEMBERS: group wider than max_width" : cc_strerror(rc));
                return NODE_FRAME_CLOSED;
            }
        }
        int rc = cc__node_on_members(n, c, f->payload, f->payload_len);
        if (rc != CC_OK) {
            cc__link_close(c, CC_NODE_PROTOCOL, rc,
                           rc == CC_EWIDTH ? "MEMBERS: a slot past max_width" : "malformed MEMBERS");
            return NODE_FRAME_CLOSED;
        }
        return c->state == CONN_CLOSING ? NODE_FRAME_CLOSED : NODE_FRAME_DONE;
    }
    default:
        cc__link_close(c, CC_NODE_PROTOCOL, CC_ETYPE, "handshake frame after the handshake");
        return NODE_FRAME_CLOSED;
    }
}

static void conn_process(node_conn *c) {
    cc_node *n = c->node;
    size_t off = 0;
    int64_t r = 0;
    while (c->state != CONN_CLOSING && !node_is(n, NODE_CLOSING)) {
        if (c->state == CONN_UP) {
            size_t run = cc__node_fast_run(n, c, c->rbuf + off, c->rlen - off);
            off += run; /* delivered (a callback may have closed the link or the node) */
            if (c->state == CONN_CLOSING || node_is(n, NODE_CLOSING))
                return;
        }
        cc_frame f;
        int up = c->state == CONN_UP;
        r = cc_frame_parse(c->rbuf + off, c->rlen - off, up ? n->cfg.max_frame : NODE_HANDSHAKE_FRAME, &f);
        if (r == CC_ETRUNCATED)
            break;
        if (r < 0) {
            /* In the handshake, "too big" means past NODE_HANDSHAKE_FRAME. */
            cc__link_close(c, CC_NODE_PROTOCOL, (int)r, cc_strerror((int)r));
            return;
        }
        int h = on_frame(c, &f);
        if (h == NODE_FRAME_CLOSED || c->state == CONN_CLOSING || node_is(n, NODE_CLOSING))
            return;
        if (h == NODE_FRAME_PAUSE) {
            /* Not accepted, so not acknowledged: the frame stays in the
             * buffer and is read again when deliveries make room. Stuck
             * since the first pause at this frame (a retry that took
             * nothing does not restart the clock). */
            if (off || !c->stuck_since)
                c->stuck_since = uv_now(cc_loop_uv(n->loop));
            c->paused = 1;
            c->pause_progress = n->progress;
            n->links.npaused++;
            uv_read_stop((uv_stream_t *)&c->tcp);
            break;
        }
        off += (size_t)r;
    }
    if (!c->paused)
        c->stuck_since = 0;
    if (off) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    size_t need = cc_frame_needed(c->rbuf, c->rlen);
    if (c->state == CONN_UP && need < NODE_RBUF)
        need = NODE_RBUF; /* authenticated: large reads from now on (once) */
    if (!c->paused && c->state == CONN_UP && need > c->rcap) {
        /* Authenticated, or a frame larger than any before (the parser
         * already checked it against max_frame): the buffer grows once.
         * Never before the key is proven: handshake frames fit NODE_RBUF_HELLO. */
        uint8_t *b = realloc(c->rbuf, need);
        if (!b) {
            cc__link_close(c, CC_NODE_PROTOCOL, CC_ENOMEM, cc_strerror(CC_ENOMEM));
            return;
        }
        c->rbuf = b;
        c->rcap = need;
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    node_conn *c = h->data;
    buf->base = (char *)c->rbuf + c->rlen;
    buf->len = c->rcap - c->rlen;
}

/* nread bytes landed in the buffer's free tail (on_alloc's). */
void cc__link_received(node_conn *c, size_t nread) {
    cc_node *n = c->node;
    c->rlen += nread;
    c->last_rx = uv_now(cc_loop_uv(n->loop));
    node_bump(&n->stats.bytes_in, (uint64_t)nread);
    conn_process(c);
    cc__link_after_io(n);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    node_conn *c = s->data;
    cc_node *n = c->node;
    if (c->state == CONN_CLOSING || node_is(n, NODE_CLOSING))
        return;
    if (nread < 0) {
        int up = c->state == CONN_UP;
        const char *why = nread == UV_EOF ? "connection closed by the peer" : uv_strerror((int)nread);
        cc__link_close(c, up ? CC_NODE_PEER_DOWN : CC_NODE_REFUSED, CC_ECLOSED,
                       up ? why : "connection closed during the handshake");
        return;
    }
    if (nread == 0)
        return;
    cc__link_received(c, (size_t)nread);
}

static void set_addr(node_conn *c) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char host[64] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    snprintf(c->addr, sizeof c->addr, "%s:%d", host, port);
}

void cc__link_start_reading(node_conn *c) {
    uv_tcp_nodelay(&c->tcp, 1); /* small frames: latency matters more than segments */
    set_addr(c);
    c->state = CONN_HANDSHAKE;
    c->started = c->last_rx = uv_now(cc_loop_uv(c->node->loop));
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        cc__link_close(c, 0, 0, NULL);
}

/* After a batch of reads, sends or a timer tick: persist what is about to be
 * acknowledged, send the acknowledgements (one per connection per batch, not
 * one per message) and let paused readers retry once deliveries freed room. */
void cc__link_after_io(cc_node *n) {
    if (node_is(n, NODE_CLOSING))
        return;
    cc__node_save_state(n);
    for (node_conn *c = n->links.conns; c && !node_is(n, NODE_CLOSING); c = c->next) {
        if (c->state == CONN_UP && c->ack_sent != cc__node_has(n, c->slot))
            cc__link_flush(c);
    }
    while (n->links.npaused && !node_is(n, NODE_CLOSING)) {
        int resumed = 0;
        for (node_conn *c = n->links.conns; c && !node_is(n, NODE_CLOSING); c = c->next) {
            if (!c->paused || c->state == CONN_CLOSING || c->pause_progress == n->progress)
                continue;
            c->paused = 0;
            n->links.npaused--;
            resumed = 1;
            /* Unread while paused: its silence starts now, not at the last read. */
            c->last_rx = uv_now(cc_loop_uv(n->loop));
            conn_process(c);
            if (!c->paused && c->state != CONN_CLOSING && !node_is(n, NODE_CLOSING))
                uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        }
        if (!resumed)
            break;
        cc__node_save_state(n);
        for (node_conn *c = n->links.conns; c && !node_is(n, NODE_CLOSING); c = c->next) {
            if (c->state == CONN_UP && c->ack_sent != cc__node_has(n, c->slot))
                cc__link_flush(c);
        }
    }
}

/* ---- fuzz hooks (node_internal.h) --------------------------------------- */

size_t cc__link_feed(node_conn *c, const uint8_t *p, size_t len) {
    cc_node *n = c->node;
    size_t fed = 0;
    /* A paused link has stopped reading: the rest would wait in the socket. */
    while (fed < len && c->state != CONN_CLOSING && !node_is(n, NODE_CLOSING) && !c->paused) {
        size_t k = c->rcap - c->rlen; /* on_alloc's buffer */
        if (k == 0)
            break; /* libuv would fail the read with UV_ENOBUFS */
        if (k > len - fed)
            k = len - fed;
        memcpy(c->rbuf + c->rlen, p + fed, k);
        fed += k;
        cc__link_received(c, k);
    }
    return fed;
}

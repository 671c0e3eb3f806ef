/* A node's TCP links: listening, dialing with backoff, the handshake,
 * framing of the byte stream and batched writes. Loop thread only.
 *
 * Reads land in the connection's own buffer (alloc_cb hands out its free
 * tail); every complete frame is handled in place and the leftover partial
 * frame is moved to the front. The buffer is small in the handshake, grows to
 * NODE_RBUF once the peer is authenticated (large reads: fewer syscalls,
 * wake-ups and acknowledgements per message), and beyond that only to the
 * largest frame the peer sends (at most max_frame, which the parser enforces
 * before waiting for a body), so the steady state allocates nothing. Before
 * that the parser's bound is NODE_HANDSHAKE_FRAME, so a stranger's length
 * prefix never grows the buffer.
 *
 * Writes gather the control frames (built into the active one of two small
 * buffers) and the log's frames (stored back to back: one iovec per run of
 * them, so a batch of any length is one or two iovecs) into one
 * uv_try_write: one syscall per connection per batch, not per message. What
 * the socket does not take goes out with one uv_write; until its callback
 * nothing else is written on that connection, the control buffer it holds is
 * left alone (new control frames go into the other one) and the log keeps
 * the entries it points at. libuv copies an iovec array of more than four
 * entries for a uv_write: one allocation per backed-up batch at most, never
 * per message.
 *
 * Handshake (both directions on one connection, the dialer speaks first):
 *   dialer -> HELLO(nonce_d, has, log_lo)
 *   acceptor -> HELLO(nonce_a, has, log_lo), AUTH(mac_a)
 *   dialer -> AUTH(mac_d)
 * mac_x = crypto_auth(key, "causalucp-auth-v1" | u32 own slot | u32 peer slot
 *                           | own nonce | peer nonce), little-endian slots;
 * the order of the fields differs for the two sides, so neither MAC can be
 * replayed as the other, and the fresh nonces keep old sessions from being
 * replayed. `has` is the highest sequence of the receiver's broadcasts the
 * sender has delivered (where resending starts); `log_lo` the oldest of its
 * own broadcasts it still holds. Nothing but HELLO and AUTH is accepted
 * before both MACs check out. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc_error.h"
#include "cc_frame.h"
#include "node_internal.h"

static const char AUTH_LABEL[] = "causalucp-auth-v1";
#define AUTH_INPUT (sizeof AUTH_LABEL - 1 + 8 + 2 * NODE_NONCE)

_Static_assert(CC_NODE_KEY_SIZE == crypto_auth_KEYBYTES, "the cluster key is a crypto_auth key");
_Static_assert(NODE_MAC == crypto_auth_BYTES, "AUTH carries one crypto_auth tag");
_Static_assert(CC_FRAME_HEADER_SIZE + NODE_HELLO_SIZE <= NODE_HANDSHAKE_FRAME &&
                   CC_FRAME_HEADER_SIZE + NODE_MAC <= NODE_HANDSHAKE_FRAME,
               "HELLO and AUTH (control frames: no clock entries) pass the handshake's frame bound");
_Static_assert(NODE_HANDSHAKE_FRAME <= NODE_RBUF_HELLO, "a handshake frame fits the handshake's buffer");

static void conn_process(node_conn *c);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* ---- connections ------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h) {
    node_conn *c = h->data;
    cc_node *n = c->node;
    if (c->prev)
        c->prev->next = c->next;
    else
        n->conns = c->next;
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
    c->next = n->conns;
    if (n->conns)
        n->conns->prev = c;
    n->conns = c;
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
        n->npaused--;
    }
    if (was != CONN_UP && !c->dialer)
        n->nhandshaking--;
    node_peer *p = c->peer;
    if (p && p->conn == c) {
        p->conn = NULL;
        if (was == CONN_UP)
            atomic_fetch_sub_explicit(&n->stats.peers_up, 1, memory_order_relaxed);
        if (n->cfg.self < p->addr.slot && !n->closing) {
            p->dial_at = uv_now(cc_loop_uv(n->loop)) + p->backoff;
            p->backoff = p->backoff * 2 > n->cfg.reconnect_max_ms ? n->cfg.reconnect_max_ms : p->backoff * 2;
        }
    }
    /* Close first, report after: a callback that closes the node finds this
     * connection already closing. Its memory lives until on_conn_closed. */
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    if (n->closing || !event)
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

/* ---- writes -------------------------------------------------------------------- */

int cc__link_ctl_frame(node_conn *c, uint8_t type, uint64_t seq, const void *payload, size_t len) {
    cc_node *n = c->node;
    int a = c->ctl_cur; /* never the buffer a write in flight holds */
    size_t need = c->ctl_len[a] + CC_FRAME_HEADER_SIZE + len;
    if (need > c->ctl_cap[a]) {
        size_t cap = c->ctl_cap[a] * 2 > need ? c->ctl_cap[a] * 2 : need;
        uint8_t *b = realloc(c->ctl[a], cap);
        if (!b)
            return CC_ENOMEM;
        c->ctl[a] = b;
        c->ctl_cap[a] = cap;
    }
    /* Control frames carry no clock: sparse with no entries, but the
     * sender's width, from which a peer learns that the group grew. */
    cc_frame h = {.type = type, .sender = n->cfg.self, .seq = seq};
    int64_t r = cc_frame_encode(c->ctl[a] + c->ctl_len[a], c->ctl_cap[a] - c->ctl_len[a], &h, n->engine.local,
                                n->engine.local, n->width, payload, len);
    if (r < 0)
        return (int)r;
    c->ctl_len[a] += (size_t)r;
    return CC_OK;
}

static void on_write(uv_write_t *req, int status) {
    node_conn *c = req->data;
    cc_node *n = c->node;
    c->wr_busy = 0;
    c->wr_lo = UINT64_MAX;
    c->ctl_len[c->ctl_cur ^ 1] = 0; /* the buffer that was in flight */
    if (n->closing)
        return;
    if (c->state == CONN_CLOSING) {
        cc__node_trim(n); /* entries it held may go now */
        return;
    }
    if (status < 0) {
        cc__link_close(c, c->state == CONN_UP ? CC_NODE_PEER_DOWN : CC_NODE_REFUSED, CC_ESYS,
                       uv_strerror(status));
        return;
    }
    cc__node_trim(n);
    cc__link_flush(c);
}

void cc__link_flush(node_conn *c) {
    cc_node *n = c->node;
    if (c->state == CONN_CONNECTING || c->state == CONN_CLOSING || c->wr_busy || n->closing)
        return;
    if (c->state == CONN_UP) {
        uint64_t have = cc__node_has(n, c->slot);
        if (c->ack_sent != have && cc__link_ctl_frame(c, CC_FRAME_ACK, have, NULL, 0) == CC_OK)
            c->ack_sent = have;
        if (c->next_send < n->log_lo)
            c->next_send = n->log_lo; /* acknowledged over an earlier connection */
    }
    if (c->hb_due) {
        c->hb_due = 0;
        if (c->ctl_len[c->ctl_cur] == 0 && !(c->state == CONN_UP && c->next_send <= n->log_hi))
            cc__link_ctl_frame(c, CC_FRAME_HEARTBEAT, 0, NULL, 0);
    }
    for (;;) {
        uv_buf_t iov[NODE_IOV];
        unsigned niov = 0;
        size_t total = 0;
        int a = c->ctl_cur;
        if (c->ctl_len[a]) {
            iov[niov++] = uv_buf_init((char *)c->ctl[a], (unsigned)c->ctl_len[a]);
            total += c->ctl_len[a];
        }
        uint64_t first = c->next_send, seq = first;
        if (c->state == CONN_UP)
            niov = cc__node_gather(n, &seq, n->log_hi, iov, niov, NODE_IOV, &total);
        if (niov == 0)
            return;
        int r = uv_try_write((uv_stream_t *)&c->tcp, iov, niov);
        if (r == UV_EAGAIN || r == UV_ENOSYS)
            r = 0;
        if (r < 0) {
            cc__link_close(c, c->state == CONN_UP ? CC_NODE_PEER_DOWN : CC_NODE_REFUSED, CC_ESYS,
                           uv_strerror(r));
            return;
        }
        node_bump(&n->stats.bytes_out, (uint64_t)r);
        c->last_tx = uv_now(cc_loop_uv(n->loop));
        c->next_send = seq;
        if (c->peer && seq > first && seq - 1 > c->peer->sent_hi)
            c->peer->sent_hi = seq - 1;
        if ((size_t)r == total) {
            c->ctl_len[a] = 0;
            if (c->state == CONN_UP && seq <= n->log_hi)
                continue; /* more than one batch of the log to send */
            return;
        }
        /* The socket is full: hand the rest to libuv and wait for its callback. */
        size_t skip = (size_t)r;
        unsigned i = 0;
        while (skip >= iov[i].len) {
            skip -= iov[i].len;
            i++;
        }
        unsigned nrem = 0;
        for (; i < niov; i++) {
            c->wiov[nrem] = iov[i];
            if (nrem == 0) {
                c->wiov[0].base += skip;
                c->wiov[0].len -= skip;
            }
            nrem++;
        }
        if (c->ctl_len[a])
            c->ctl_cur ^= 1; /* new control frames go to the other buffer meanwhile */
        c->wr_lo = seq > first ? first : UINT64_MAX;
        int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, c->wiov, nrem, on_write);
        if (rc != 0) {
            c->wr_lo = UINT64_MAX;
            cc__link_close(c, c->state == CONN_UP ? CC_NODE_PEER_DOWN : CC_NODE_REFUSED, CC_ESYS,
                           uv_strerror(rc));
            return;
        }
        c->wr_busy = 1;
        return;
    }
}

void cc__link_flush_all(cc_node *n) {
    for (node_conn *c = n->conns; c && !n->closing; c = c->next) {
        if (c->state == CONN_UP)
            cc__link_flush(c);
    }
}

/* After a batch of reads, sends or a timer tick: persist what is about to be
 * acknowledged, send the acknowledgements (one per connection per batch, not
 * one per message) and let paused readers retry once deliveries freed room. */
void cc__link_after_io(cc_node *n) {
    if (n->closing)
        return;
    cc__node_save_state(n);
    for (node_conn *c = n->conns; c && !n->closing; c = c->next) {
        if (c->state == CONN_UP && c->ack_sent != cc__node_has(n, c->slot))
            cc__link_flush(c);
    }
    while (n->npaused && !n->closing) {
        int resumed = 0;
        for (node_conn *c = n->conns; c && !n->closing; c = c->next) {
            if (!c->paused || c->state == CONN_CLOSING || c->pause_progress == n->progress)
                continue;
            c->paused = 0;
            n->npaused--;
            resumed = 1;
            /* Unread while paused: its silence starts now, not at the last read. */
            c->last_rx = uv_now(cc_loop_uv(n->loop));
            conn_process(c);
            if (!c->paused && c->state != CONN_CLOSING && !n->closing)
                uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        }
        if (!resumed)
            break;
        cc__node_save_state(n);
        for (node_conn *c = n->conns; c && !n->closing; c = c->next) {
            if (c->state == CONN_UP && c->ack_sent != cc__node_has(n, c->slot))
                cc__link_flush(c);
        }
    }
}

/* ---- the handshake ------------------------------------------------------------ */

static void auth_input(uint8_t *out, uint32_t own, uint32_t peer, const uint8_t *own_nonce,
                       const uint8_t *peer_nonce) {
    size_t l = sizeof AUTH_LABEL - 1;
    memcpy(out, AUTH_LABEL, l);
    wire_wr32(out + l, own);
    wire_wr32(out + l + 4, peer);
    memcpy(out + l + 8, own_nonce, NODE_NONCE);
    memcpy(out + l + 8 + NODE_NONCE, peer_nonce, NODE_NONCE);
}

static void send_hello(node_conn *c) {
    cc_node *n = c->node;
    uint8_t p[NODE_HELLO_SIZE];
    memcpy(p, c->nonce, NODE_NONCE);
    wire_wr64(p + NODE_NONCE, cc__node_has(n, c->slot));
    wire_wr64(p + NODE_NONCE + 8, n->log_lo);
    cc__link_ctl_frame(c, CC_FRAME_HELLO, 0, p, sizeof p);
}

static void send_auth(node_conn *c) {
    cc_node *n = c->node;
    uint8_t in[AUTH_INPUT], mac[NODE_MAC];
    auth_input(in, n->cfg.self, c->slot, c->nonce, c->peer_nonce);
    crypto_auth(mac, in, sizeof in, n->cfg.key);
    cc__link_ctl_frame(c, CC_FRAME_AUTH, 0, mac, sizeof mac);
}

static int on_hello(node_conn *c, const cc_frame *f) {
    cc_node *n = c->node;
    if (f->payload_len != NODE_HELLO_SIZE) {
        cc__link_close(c, CC_NODE_REFUSED, CC_ELENGTH, "malformed HELLO");
        return NODE_FRAME_CLOSED;
    }
    uint32_t slot = f->sender;
    if (slot == n->cfg.self || slot >= n->width || !n->peers[slot] || (c->dialer && slot != c->slot)) {
        cc__link_close(c, CC_NODE_REFUSED, CC_ESENDER,
                       c->dialer ? "the peer is not the member dialed" : "unknown slot");
        return NODE_FRAME_CLOSED;
    }
    if (f->width > n->cfg.max_width) {
        /* Applied after AUTH, but refused now: no key holder may make us
         * allocate for a group wider than we accept. */
        cc__link_close(c, CC_NODE_REFUSED, CC_EWIDTH, "HELLO: group wider than max_width");
        return NODE_FRAME_CLOSED;
    }
    c->slot = slot;
    c->peer = n->peers[slot];
    memcpy(c->peer_nonce, f->payload, NODE_NONCE);
    c->peer_has = wire_rd64(f->payload + NODE_NONCE);
    c->peer_log_lo = wire_rd64(f->payload + NODE_NONCE + 8);
    c->peer_width = f->width; /* applied only once the peer has proven the key */
    c->got_hello = 1;
    if (!c->dialer)
        send_hello(c);
    send_auth(c);
    cc__link_flush(c);
    return c->state == CONN_CLOSING ? NODE_FRAME_CLOSED : NODE_FRAME_DONE;
}

static int on_auth(node_conn *c, const cc_frame *f) {
    cc_node *n = c->node;
    if (f->payload_len != NODE_MAC) {
        cc__link_close(c, CC_NODE_REFUSED, CC_ELENGTH, "malformed AUTH");
        return NODE_FRAME_CLOSED;
    }
    uint8_t in[AUTH_INPUT];
    auth_input(in, c->slot, n->cfg.self, c->peer_nonce, c->nonce);
    if (crypto_auth_verify(f->payload, in, sizeof in, n->cfg.key) != 0) {
        cc__link_close(c, CC_NODE_REFUSED, CC_EINVAL, "authentication failed (wrong key?)");
        return NODE_FRAME_CLOSED;
    }
    cc__node_peer_up(n, c);
    return c->state == CONN_CLOSING ? NODE_FRAME_CLOSED : NODE_FRAME_DONE;
}

/* ---- reads -------------------------------------------------------------------- */

static int on_frame(node_conn *c, const cc_frame *f) {
    cc_node *n = c->node;
    if (c->state != CONN_UP) {
        if (f->type == CC_FRAME_HELLO && !c->got_hello)
            return on_hello(c, f);
        if (f->type == CC_FRAME_AUTH && c->got_hello)
            return on_auth(c, f);
        cc__link_close(c, CC_NODE_REFUSED, CC_EINVAL,
                       f->type == CC_FRAME_MESSAGE ? "message before the handshake"
                                                   : "unexpected frame in the handshake");
        return NODE_FRAME_CLOSED;
    }
    switch (f->type) {
    case CC_FRAME_MESSAGE: return cc__node_on_message(n, c, f);
    case CC_FRAME_ACK: {
        uint64_t a = f->seq < n->log_hi ? f->seq : n->log_hi;
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
    while (c->state != CONN_CLOSING && !n->closing) {
        if (c->state == CONN_UP) {
            size_t run = cc__node_fast_run(n, c, c->rbuf + off, c->rlen - off);
            off += run; /* delivered (a callback may have closed the link or the node) */
            if (c->state == CONN_CLOSING || n->closing)
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
        if (h == NODE_FRAME_CLOSED || c->state == CONN_CLOSING || n->closing)
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
            n->npaused++;
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
static void received(node_conn *c, size_t nread) {
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
    if (c->state == CONN_CLOSING || n->closing)
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
    received(c, (size_t)nread);
}

static void start_reading(node_conn *c) {
    uv_tcp_nodelay(&c->tcp, 1); /* small frames: latency matters more than segments */
    set_addr(c);
    c->state = CONN_HANDSHAKE;
    c->started = c->last_rx = uv_now(cc_loop_uv(c->node->loop));
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        cc__link_close(c, 0, 0, NULL);
}

/* ---- accepting and dialing ------------------------------------------------------ */

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
    for (node_conn *c = n->conns; c; c = c->next) {
        if (!c->dialer && c->state == CONN_HANDSHAKE)
            oldest = c;
    }
    if (oldest)
        cc__link_close(oldest, CC_NODE_REFUSED, CC_EFULL,
                       "handshake slots full: the oldest connection closed");
}

static void on_connection(uv_stream_t *server, int status) {
    cc_node *n = server->data;
    if (status < 0 || n->closing)
        return;
    node_conn *c = conn_new(n);
    if (!c)
        return;
    n->nhandshaking++; /* until it is up or closed (cc__link_close, cc__node_peer_up) */
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        cc__link_close(c, 0, 0, NULL);
        return;
    }
    start_reading(c);
    if (n->nhandshaking > NODE_HANDSHAKING_MAX)
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
    if (uv_tcp_init(uv, &n->listener) != 0)
        return CC_ESYS;
    n->listener.data = n;
    n->handles++;
    if (uv_tcp_bind(&n->listener, (struct sockaddr *)&ss, 0) != 0 ||
        uv_listen((uv_stream_t *)&n->listener, 128, on_connection) != 0)
        return CC_ESYS;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&n->listener, (struct sockaddr *)&ss, &len) != 0)
        return CC_ESYS;
    uint16_t port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    atomic_store_explicit(&n->port, port, memory_order_relaxed);
    return CC_OK;
}

static void on_connect(uv_connect_t *req, int status) {
    node_conn *c = req->data;
    if (status == UV_ECANCELED || c->state == CONN_CLOSING || c->node->closing)
        return;
    if (status < 0) {
        cc__link_close(c, 0, 0, NULL); /* nobody there yet: retried with backoff, no event */
        return;
    }
    start_reading(c);
    if (c->state == CONN_CLOSING)
        return;
    send_hello(c);
    cc__link_flush(c);
}

void cc__link_dial(cc_node *n, node_peer *p) {
    if (p->conn || n->closing)
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

/* ---- fuzz hooks (node_internal.h) ----------------------------------------------- */

node_conn *cc__link_adopt(cc_node *n, int fd) {
    if (n->closing)
        return NULL;
    node_conn *c = conn_new(n);
    if (!c)
        return NULL;
    n->nhandshaking++; /* as on_connection */
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        cc__link_close(c, 0, 0, NULL);
        return NULL;
    }
    start_reading(c);
    return c;
}

size_t cc__link_feed(node_conn *c, const uint8_t *p, size_t len) {
    cc_node *n = c->node;
    size_t fed = 0;
    /* A paused link has stopped reading: the rest would wait in the socket. */
    while (fed < len && c->state != CONN_CLOSING && !n->closing && !c->paused) {
        size_t k = c->rcap - c->rlen; /* on_alloc's buffer */
        if (k == 0)
            break; /* libuv would fail the read with UV_ENOBUFS */
        if (k > len - fed)
            k = len - fed;
        memcpy(c->rbuf + c->rlen, p + fed, k);
        fed += k;
        received(c, k);
    }
    return fed;
}

void cc__link_peer_mac(const node_conn *c, uint8_t mac[NODE_MAC]) {
    uint8_t in[AUTH_INPUT];
    auth_input(in, c->slot, c->node->cfg.self, c->peer_nonce, c->nonce); /* what on_auth verifies */
    crypto_auth(mac, in, sizeof in, c->node->cfg.key);
}

/* ---- the sweep ------------------------------------------------------------------- */

/* One timer per node: handshake deadlines, heartbeats, silent peers and due
 * reconnects. Its period is a quarter of the shortest of those intervals. */
void cc__link_on_timer(uv_timer_t *t) {
    cc_node *n = t->data;
    if (n->closing)
        return;
    /* A safety net for a lost wake-up: on_prepare and cc_node_broadcast see
     * each other's store (node.c), but uv_async_send returns at once when it
     * reads its handle as already pending (a relaxed read), which a weakly
     * ordered machine may read stale after the loop looked. A broadcast then
     * waits for the next one's wake-up; this tick bounds the wait when there
     * is no next one. */
    if (atomic_load_explicit(&node_cell(n, n->ring_head)->seq, memory_order_acquire) == n->ring_head + 1)
        uv_async_send(&n->async);
    uint64_t now = uv_now(cc_loop_uv(n->loop));
    for (node_conn *c = n->conns; c && !n->closing; c = c->next) {
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
    for (uint32_t s = n->cfg.self + 1; s < n->width && !n->closing; s++) {
        node_peer *p = n->peers[s];
        if (p && !p->conn && p->dial_at <= now)
            cc__link_dial(n, p);
    }
    cc__link_after_io(n);
}

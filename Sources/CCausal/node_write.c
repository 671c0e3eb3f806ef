/* A node's writes. Loop thread only.
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
 * per message. */
#include <stdlib.h>
#include <string.h>

#include "cc_error.h"
#include "cc_frame.h"
#include "node_internal.h"

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
    if (node_is(n, NODE_CLOSING))
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
    if (c->state == CONN_CONNECTING || c->state == CONN_CLOSING || c->wr_busy || node_is(n, NODE_CLOSING))
        return;
    if (c->state == CONN_UP) {
        uint64_t have = cc__node_has(n, c->slot);
        if (c->ack_sent != have && cc__link_ctl_frame(c, CC_FRAME_ACK, have, NULL, 0) == CC_OK)
            c->ack_sent = have;
        if (c->next_send < n->log.lo)
            c->next_send = n->log.lo; /* acknowledged over an earlier connection */
    }
    if (c->hb_due) {
        c->hb_due = 0;
        if (c->ctl_len[c->ctl_cur] == 0 && !(c->state == CONN_UP && c->next_send <= n->log.hi))
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
            niov = cc__node_gather(n, &seq, n->log.hi, iov, niov, NODE_IOV, &total);
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
            if (c->state == CONN_UP && seq <= n->log.hi)
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
    for (node_conn *c = n->links.conns; c && !node_is(n, NODE_CLOSING); c = c->next) {
        if (c->state == CONN_UP)
            cc__link_flush(c);
    }
}

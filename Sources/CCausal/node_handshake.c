/* A node's handshake: each side proves it holds the cluster key. Loop
 * thread only.
 *
 * Both directions on one connection, the dialer speaks first:
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

static void auth_input(uint8_t *out, uint32_t own, uint32_t peer, const uint8_t *own_nonce,
                       const uint8_t *peer_nonce) {
    size_t l = sizeof AUTH_LABEL - 1;
    memcpy(out, AUTH_LABEL, l);
    wire_wr32(out + l, own);
    wire_wr32(out + l + 4, peer);
    memcpy(out + l + 8, own_nonce, NODE_NONCE);
    memcpy(out + l + 8 + NODE_NONCE, peer_nonce, NODE_NONCE);
}

void cc__link_send_hello(node_conn *c) {
    cc_node *n = c->node;
    uint8_t p[NODE_HELLO_SIZE];
    memcpy(p, c->nonce, NODE_NONCE);
    wire_wr64(p + NODE_NONCE, cc__node_has(n, c->slot));
    wire_wr64(p + NODE_NONCE + 8, n->log.lo);
    cc__link_ctl_frame(c, CC_FRAME_HELLO, 0, p, sizeof p);
}

static void send_auth(node_conn *c) {
    cc_node *n = c->node;
    uint8_t in[AUTH_INPUT], mac[NODE_MAC];
    auth_input(in, n->cfg.self, c->slot, c->nonce, c->peer_nonce);
    crypto_auth(mac, in, sizeof in, n->cfg.key);
    cc__link_ctl_frame(c, CC_FRAME_AUTH, 0, mac, sizeof mac);
}

int cc__link_on_hello(node_conn *c, const cc_frame *f) {
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
        cc__link_send_hello(c);
    send_auth(c);
    cc__link_flush(c);
    return c->state == CONN_CLOSING ? NODE_FRAME_CLOSED : NODE_FRAME_DONE;
}

int cc__link_on_auth(node_conn *c, const cc_frame *f) {
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

/* ---- fuzz hooks (node_internal.h) --------------------------------------- */

void cc__link_peer_mac(const node_conn *c, uint8_t mac[NODE_MAC]) {
    uint8_t in[AUTH_INPUT];
    auth_input(in, c->slot, c->node->cfg.self, c->peer_nonce, c->nonce); /* what on_auth verifies */
    crypto_auth(mac, in, sizeof in, c->node->cfg.key);
}

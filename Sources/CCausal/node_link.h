/* Private to the node: its TCP links, the parts in node_link.c,
 * node_handshake.c, node_read.c and node_write.c (included by
 * node_internal.h, which has the rest of the node). Not installed. */
#ifndef CC_NODE_LINK_H
#define CC_NODE_LINK_H

#include <stdint.h>
#include <uv.h>

#include "cc_frame.h"
#include "cc_node.h"

#define NODE_NONCE 32                        /* HELLO challenge, bytes */
#define NODE_MAC 32                          /* crypto_auth_BYTES */
#define NODE_HELLO_SIZE (NODE_NONCE + 8 + 8) /* nonce | has (u64) | log_lo (u64) */
#define NODE_IOV 64          /* iovecs per write: control frames plus runs of back-to-back log frames */
#define NODE_RBUF_HELLO 4096 /* read buffer of a connection in the handshake (HELLO and AUTH are small) */
/* Read buffer once authenticated (it grows to the largest frame seen): a read
 * takes ~1000 small frames, so reads, wake-ups and acknowledgements are per batch. */
#define NODE_RBUF (256u << 10)
#define NODE_HANDSHAKING_MAX 64   /* accepted connections in the handshake at once (the oldest goes) */
#define NODE_HANDSHAKE_FRAME 256  /* largest frame before the key is proven (HELLO is 80 bytes, AUTH 64) */

enum conn_state { CONN_CONNECTING, CONN_HANDSHAKE, CONN_UP, CONN_CLOSING };

/* A member this one knows (it has an address), by slot. */
typedef struct node_peer {
    cc_node_peer addr;
    struct node_conn *conn; /* the dialing or the authenticated connection */
    uint64_t acked;         /* highest own sequence it acknowledged (cumulative) */
    uint64_t sent_hi;       /* highest own sequence ever written to it: what a resend repeats */
    uint64_t dial_at;       /* uv_now() when the next dial may start (dialer side) */
    uint32_t backoff;       /* next reconnect delay */
    int ever_up;
    int configured; /* addr came from our caller: never replaced by what the member announces */
} node_peer;

typedef struct node_conn {
    uv_tcp_t tcp; /* first: handle->data is the connection */
    uv_connect_t connect;
    uv_write_t wreq;
    struct cc_node *node;
    struct node_conn *prev, *next; /* node->links.conns, until the close callback */
    node_peer *peer;               /* set at HELLO (acceptor) or dial (dialer) */
    uint32_t slot;                 /* UINT32_MAX until known */
    int state, dialer, got_hello, paused;
    int pause_code; /* why it paused: CC_EAHEAD, CC_EFULL or CC_ENOMEM */
    uint64_t started, last_rx, last_tx, pause_progress;
    uint64_t stuck_since; /* uv_now() when it paused at the frame it is paused at; 0: not paused */
    /* handshake */
    uint8_t nonce[NODE_NONCE], peer_nonce[NODE_NONCE];
    uint64_t peer_has, peer_log_lo;
    uint32_t peer_width;
    /* reads: frames are parsed in place; the buffer is reused, never per message */
    uint8_t *rbuf;
    size_t rlen, rcap;
    /* writes: one uv_write in flight at most; control frames are built into
     * the active one of two buffers while the other may be in flight */
    int wr_busy, hb_due;
    uint64_t wr_lo;     /* lowest log sequence the write in flight references; UINT64_MAX none */
    uint64_t next_send; /* next own sequence to write here */
    uint64_t ack_sent;  /* last ACK value written */
    uint8_t *ctl[2];
    size_t ctl_len[2], ctl_cap[2];
    int ctl_cur;
    uv_buf_t wiov[NODE_IOV];
    char addr[72]; /* remote "host:port" */
} node_conn;

/* The TCP links (node_link.c and its neighbours). */
typedef struct node_links {
    node_conn *conns;
    int npaused;
    int nhandshaking; /* accepted connections not yet up (dialed ones are bounded by the peers) */
    uv_tcp_t listener;
    uv_timer_t timer; /* the sweep, every tick_ms */
    uint32_t tick_ms;
} node_links;

/* The functions, loop thread. */
enum { NODE_FRAME_DONE = 0, NODE_FRAME_PAUSE = 1, NODE_FRAME_CLOSED = 2 };
int cc__link_listen(cc_node *n);
void cc__link_on_timer(uv_timer_t *t);
void cc__link_dial(cc_node *n, node_peer *p);
void cc__link_close(node_conn *c, int event, int code, const char *reason); /* event: 0 quiet, or a kind */
void cc__link_start_reading(node_conn *c); /* connected or accepted: the handshake begins */
void cc__link_send_hello(node_conn *c);
int cc__link_on_hello(node_conn *c, const cc_frame *f); /* NODE_FRAME_* */
int cc__link_on_auth(node_conn *c, const cc_frame *f);  /* NODE_FRAME_* */
void cc__link_received(node_conn *c, size_t nread);     /* nread bytes landed in the read buffer */
void cc__link_flush(node_conn *c);
void cc__link_flush_all(cc_node *n);
void cc__link_after_io(cc_node *n);
int cc__link_ctl_frame(node_conn *c, uint8_t type, uint64_t seq, const void *payload, size_t len);

/* Fuzz hooks (Fuzz/C/fuzz_node.c), loop thread: the receive path without a
 * socket to read from. cc__link_adopt takes fd, one end of a connected
 * stream socket, as a connection the listener accepted (in the handshake;
 * the node writes to it, and closes it with the connection); NULL on
 * failure, and fd is still the caller's. cc__link_feed hands the
 * connection bytes as reads would, as many at a time as its buffer has
 * room for, until all are taken or it closes or pauses (stops reading);
 * returns the bytes taken. cc__link_peer_mac is the AUTH tag the peer must
 * send once the connection took its HELLO. */
node_conn *cc__link_adopt(cc_node *n, int fd);
size_t cc__link_feed(node_conn *c, const uint8_t *p, size_t len);
void cc__link_peer_mac(const node_conn *c, uint8_t mac[NODE_MAC]);

#endif

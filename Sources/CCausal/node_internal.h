/* Private to the node: the structures node.c (group logic: hand-off, log,
 * delivery, growth, state folder) and node_link.c (TCP: dialing, accepting,
 * framing, handshake, batched writes, timers) share. Not installed.
 *
 * Everything below the `stats` line of cc_node belongs to the loop thread. */
#ifndef CC_NODE_INTERNAL_H
#define CC_NODE_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "cc_delivery.h"
#include "cc_node.h"
#include "cc_pool.h"
#include "cc_queue.h"

#define NODE_NONCE 32                        /* HELLO challenge, bytes */
#define NODE_MAC 32                          /* crypto_auth_BYTES */
#define NODE_HELLO_SIZE (NODE_NONCE + 8 + 8) /* nonce | has (u64) | log_lo (u64) */
#define NODE_IOV 64             /* iovecs per write: a batch of up to ~31 frames plus control frames */
#define NODE_RBUF 65536         /* initial read buffer per connection (grows to the largest frame seen) */
#define NODE_WIDTH_MAX 65536u   /* no frame may grow the clock past this */
#define NODE_HANDSHAKING_MAX 64 /* connections allowed in the handshake at once */
#define NODE_RX_CLASSES 24      /* held-back message blocks: 256 B << class */

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
} node_peer;

typedef struct node_conn {
    uv_tcp_t tcp; /* first: handle->data is the connection */
    uv_connect_t connect;
    uv_write_t wreq;
    struct cc_node *node;
    struct node_conn *prev, *next; /* node->conns, until the close callback */
    node_peer *peer;               /* set at HELLO (acceptor) or dial (dialer) */
    uint32_t slot;                 /* UINT32_MAX until known */
    int state, dialer, got_hello, paused;
    uint64_t started, last_rx, last_tx, pause_progress;
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

/* A broadcast on its way from cc_node_broadcast into the log: one block of
 * the node's pool, header then payload. The pool has send_window blocks and
 * a block goes back only when every peer acknowledged it, so an empty pool
 * is exactly "window full". */
typedef struct node_bcast {
    uint32_t length, kind;
    uint8_t level;
} node_bcast;
#define NODE_BCAST_PAYLOAD ((sizeof(node_bcast) + 15) & ~(size_t)15)

/* An own broadcast kept until acknowledged: the payload block plus the
 * frame header and dense clock, encoded once at send time (frames are written
 * as two iovecs, so a later growth of the width never moves a payload). */
typedef struct log_entry {
    node_bcast *b;
    uint8_t *hdr;
    uint32_t hdr_len, hdr_cap;
} log_entry;

/* A received message the engine holds (or the per-node scratch one that is
 * delivered straight from the read buffer). */
typedef struct rxmsg {
    cc_msg head;        /* first: the engine hands back the cc_msg */
    struct rxmsg *all;  /* every block ever made, freed at close */
    struct rxmsg *free; /* link in a class free list */
    uint64_t *clock;    /* a block's own storage right after this header, or the node's scratch clock */
    const uint8_t *payload;
    uint32_t kind, length;
    uint8_t cls;
} rxmsg;

/* A request from another thread that needs the loop (tagged queue item). */
enum { REQ_ADD_PEER = 1, REQ_DROP = 2 };
typedef struct node_req {
    _Alignas(8) int kind;
    int rc;
    cc_node_peer peer;
    uv_sem_t done;
} node_req;

struct cc_node {
    /* any thread */
    cc_queue queue; /* broadcasts and requests into the loop */
    cc_pool pool;   /* broadcast blocks = the send window */
    /* Touched by every producer on every call: alone on its line. */
    _Alignas(CC_CACHE_LINE) _Atomic unsigned users;
    _Alignas(CC_CACHE_LINE) _Atomic int closed;
    _Atomic uint16_t port;
    cc_loop *loop;
    cc_node_config cfg; /* defaults resolved; listen_host/state_dir point at our copies */
    cc_node_callbacks cb;
    char listen_host[CC_NODE_HOST_MAX];
    char *state_dir;
    /* Written by the loop thread, read by cc_node_stats_get: own line so that
     * the loop's stores do not bounce the line producers read. */
    _Alignas(CC_CACHE_LINE) struct {
        _Atomic uint64_t sent, delivered, pending, duplicates, resent, reconnects, refused, protocol_errors,
            unacked, bytes_out, bytes_in;
        _Atomic uint32_t width, peers_up;
    } stats;

    /* ---- loop thread only ---- */
    _Alignas(CC_CACHE_LINE) cc_delivery engine;
    uint32_t width;
    node_peer **peers;       /* width entries; NULL: no member known at that slot */
    uint64_t *sendclock;     /* width: the clock of the broadcast being stamped */
    rxmsg scratch;           /* a message delivered straight from the read buffer */
    uint64_t *scratch_clock; /* width */
    /* Clock buffers replaced by a growth. A growth can happen inside a
     * deliver callback (cc_node_add_peer from the loop thread) while the
     * message being delivered points at the old buffer, so they are freed
     * only at close; growths are rare and small. */
    void **retired;
    size_t nretired;
    node_conn *conns;
    int npaused, nhandshaking;
    uint64_t progress;       /* deliveries so far: paused readers retry when it moves */
    log_entry *log;          /* send_window entries, by sequence % send_window */
    uint64_t log_lo, log_hi; /* held: [log_lo, log_hi]; empty when log_lo > log_hi */
    rxmsg *rx_free[NODE_RX_CLASSES];
    rxmsg *rx_all;
    uv_tcp_t listener;
    uv_timer_t timer;
    uv_async_t async;
    int handles; /* open libuv handles; the node is freed when the last closes */
    int closing, close_begun, start_failed, joined;
    uint32_t tick_ms;
    cc__loop_member member;
    /* state folder */
    int state_fd_log;  /* own frames, appended; -1 without a folder */
    uint64_t *durable; /* width: the delivered clock as last written (what ACKs may say) */
    uint64_t saved_progress, saved_log_lo, saved_log_hi;
    uint64_t log_file_bytes;
    int saved_once;
};

/* What this member may tell `slot` it has from it (ACK, HELLO): with a state
 * folder, only what the folder already records. */
static inline uint64_t cc__node_has(const cc_node *n, uint32_t slot) {
    return n->state_dir ? n->durable[slot] : n->engine.local[slot];
}

/* node.c, for node_link.c */
void cc__node_emit(cc_node *n, cc_node_event_kind kind, uint32_t slot, int code, const char *reason,
                   const char *address);
int cc__node_grow(cc_node *n, uint32_t width);
void cc__node_trim(cc_node *n);
int cc__node_on_message(cc_node *n, node_conn *c, const void *frame); /* NODE_FRAME_* */
int cc__node_on_members(cc_node *n, node_conn *c, const uint8_t *p, size_t len);
size_t cc__node_members_payload(cc_node *n, uint8_t *out, size_t cap);
void cc__node_peer_up(cc_node *n, node_conn *c);
void cc__node_drain(cc_node *n);
void cc__node_handle_closed(uv_handle_t *h);
void cc__node_release(cc_node *n);    /* a connection's handle has closed */
void cc__node_save_state(cc_node *n); /* before ACKs leave: what we acknowledge survives a restart */
int cc__node_load_state(cc_node *n);
int cc__node_append_log(cc_node *n, uint64_t from, uint64_t to); /* own frames [from, to] before they leave */

/* node_link.c */
enum { NODE_FRAME_DONE = 0, NODE_FRAME_PAUSE = 1, NODE_FRAME_CLOSED = 2 };
int cc__link_listen(cc_node *n);
void cc__link_on_timer(uv_timer_t *t);
void cc__link_dial(cc_node *n, node_peer *p);
void cc__link_close(node_conn *c, int event, int code, const char *reason); /* event: 0 quiet, or a kind */
void cc__link_flush(node_conn *c);
void cc__link_flush_all(cc_node *n);
void cc__link_after_io(cc_node *n);
int cc__link_ctl_frame(node_conn *c, uint8_t type, uint64_t seq, const void *payload, size_t len);

/* Test hook (Tests/CCausal/test_node.c): any thread; drops every connection
 * as a network failure would (peers see the connection end; dialers
 * reconnect). Returns CC_OK or CC_ECLOSED. */
int cc__node_drop_connections(cc_node *node);

/* The loop thread is the only writer of the counters: a relaxed load and
 * store make an increment; readers only need untorn values. */
static inline void node_bump(_Atomic uint64_t *c, uint64_t v) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}
static inline void node_set(_Atomic uint64_t *c, uint64_t v) {
    atomic_store_explicit(c, v, memory_order_relaxed);
}

static inline void node_wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}
static inline void node_wr64(uint8_t *p, uint64_t v) {
    node_wr32(p, (uint32_t)v);
    node_wr32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t node_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t node_rd64(const uint8_t *p) {
    return (uint64_t)node_rd32(p) | (uint64_t)node_rd32(p + 4) << 32;
}

#endif

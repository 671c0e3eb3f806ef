/* Private to the node: the structures its parts share (node.c lists the
 * files, one per part) and the functions they call across files; the TCP
 * links' are in node_link.h. Not installed.
 *
 * Everything below the `stats` line of cc_node belongs to the loop thread. */
#ifndef CC_NODE_INTERNAL_H
#define CC_NODE_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include "cc_delivery.h"
#include "cc_frame.h"
#include "cc_node.h"
#include "cc_queue.h"
#include "loop_internal.h"
#include "node_link.h"
#include "wire.h"

#define NODE_WIDTH_MAX 65536u     /* the largest max_width */
#define NODE_WIDTH_DEFAULT 1024u  /* max_width when 0 */
#define NODE_RX_CLASSES 24      /* held-back message blocks: 256 B << class */
#define NODE_AHEAD 4 /* frames whose memory is prefetched ahead of the one being stamped or read */

/* A broadcast on its way from cc_node_broadcast into the log: one cell of
 * the node's broadcast ring, header then payload.
 *
 * The ring has a power of two of cells, at least send_window. Producers
 * claim positions in order (a compare-and-swap on ring.tail), fill the cell
 * and publish it through its `seq`; the loop takes cells in position order.
 * A taken cell stays held by its log entry until every peer acknowledged
 * the broadcast, and cells are released in the same order (log order is
 * ring order), so the loop only counts releases (ring.released). A producer
 * may claim position p only while p - ring.released < send_window: "window
 * full" is exactly send_window broadcasts not yet acknowledged, and a cell
 * is never written while its previous broadcast is still held. One claim
 * and one store per broadcast; the loop gives cells back with one store per
 * batch of acknowledgements, not one atomic operation per message.
 *
 * Cells are small (NODE_BLOCK bytes, payloads up to NODE_INLINE inline) so
 * that the window sits densely in memory: with cells of max_payload bytes
 * every broadcast touched a page of its own, and the TLB misses of the
 * producer's copy, the loop's read and the kernel's copy out of it cost more
 * than the rest of the send path. A larger payload goes to the cell's slot in
 * a parallel slab of max_payload-byte slots (node_bcast_payload). */
typedef struct node_bcast {
    _Atomic uint64_t seq; /* position + 1 once the cell at that position is written */
    uint32_t length, kind;
    uint8_t level;
} node_bcast;
#define NODE_BCAST_PAYLOAD ((sizeof(node_bcast) + 15) & ~(size_t)15)
#define NODE_BLOCK 256
#define NODE_INLINE (NODE_BLOCK - NODE_BCAST_PAYLOAD)

/* Own frames, encoded once when stamped, back to back in chunks of
 * NODE_CHUNK bytes (larger for a frame that does not fit one). A batch of
 * frames is then one iovec, not two per frame: the kernel's cost of a writev
 * grows with its iovecs far more than with its bytes. A chunk is reused once
 * no held frame lies in it (live == 0); spare chunks stay in a free list, so
 * the steady state allocates nothing. */
#define NODE_CHUNK (256u << 10)
typedef struct node_chunk {
    struct node_chunk *prev, *next; /* every chunk of the node, freed at close */
    struct node_chunk *free;        /* link in the free list */
    uint32_t cap, used;             /* bytes of data; bytes handed out */
    uint32_t live;                  /* held frames in this chunk */
    _Alignas(16) uint8_t data[];
} node_chunk;

/* An own broadcast kept until acknowledged: its ring cell (the window) and
 * its encoded frame. A frame keeps the width it was stamped with: a later
 * growth never re-encodes it (receivers pad). */
typedef struct log_entry {
    node_bcast *b;
    node_chunk *ck; /* NULL: no room could be had (out of memory) */
    uint32_t off;   /* the frame: ck->data + off */
    uint32_t len;   /* its bytes; 0: not encoded (never sent; peers wait for it as for a lost member) */
} log_entry;

/* A received message the engine holds (or the per-node scratch one that is
 * delivered straight from the read buffer). */
typedef struct rxmsg {
    cc_msg head;        /* first: the engine hands back the cc_msg */
    struct rxmsg *all;  /* every block ever made, freed at close */
    struct rxmsg *free; /* link in a class free list */
    uint64_t *clock;    /* a block's own storage right after this header (not used by the scratch one) */
    const uint8_t *payload;
    uint32_t kind, length;
    uint8_t cls;
} rxmsg;

/* A request from another thread that needs the loop (on the request queue). */
enum { REQ_ADD_PEER = 1, REQ_DROP = 2 };
typedef struct node_req {
    _Alignas(8) int kind;
    int rc;
    cc_node_peer peer;
    uv_sem_t done;
} node_req;

/* The broadcast ring (node_handoff.c): producers on any thread claim,
 * fill and publish cells; the loop takes them into the log (node_bcast). */
typedef struct node_ring {
    uint8_t *cells; /* mask + 1 cells of NODE_BLOCK bytes */
    uint64_t mask;
    /* A max_payload-byte slot per cell for payloads past NODE_INLINE; NULL if none can be. */
    uint8_t *big;
    /* Claimed by producers (compare-and-swap): alone on its line. */
    _Alignas(CC_CACHE_LINE) _Atomic uint64_t tail;
    /* Written by the loop once per batch of releases, read by producers. */
    _Alignas(CC_CACHE_LINE) _Atomic uint64_t released;
    /* Written by the loop a few times per loop iteration, read by producers
     * on every broadcast (released's pattern, so its line): 1 while the loop
     * is bound to look at the ring again before it next sleeps (from
     * cc__node_on_async to cc__node_on_prepare), so a broadcast need not
     * wake it. */
    _Atomic int awake;
    /* 1 from a cc_node_broadcast that found the window full until the loop
     * next releases cells and calls `room`. Written by producers only then;
     * on this line because the loop reads it right after `released`. */
    _Atomic int want_room;
} node_ring;

/* cc_node_confirm (with `confirm` and a state folder): the clocks the
 * application confirmed, merged under `lock`; `dirty` is 1 from a
 * confirmation until the loop takes them (cc__node_save_state). Written by
 * the application's thread per message: its own line, away from what
 * producers and the loop read per message. */
typedef struct node_confirm {
    _Alignas(CC_CACHE_LINE) _Atomic int dirty;
    uv_mutex_t lock;
    uint64_t *clock; /* `width` entries; NULL without `confirm` and a state folder */
    uint32_t width;
} node_confirm;

/* The send log (node_log.c): own broadcasts until every peer acknowledged
 * them. Entries are ring cells taken in order and released in order. */
typedef struct node_log {
    uint64_t taken;     /* ring positions taken: the next one to take */
    uint64_t freed;     /* ring positions released (ring.released as the loop knows it) */
    log_entry *entries; /* mask + 1 entries (send_window rounded up to a power of two), by sequence */
    /* A mask, not a division by send_window: the log is indexed several times per message. */
    uint64_t mask;
    uint64_t lo, hi;    /* held: [lo, hi]; empty when lo > hi */
    node_chunk *chunk;  /* where the next own frame goes */
    node_chunk *chunks; /* every chunk (prev/next) */
    node_chunk *spare;  /* spare standard-size chunks */
} node_log;

/* Received messages (node_deliver.c): the one delivered from the read
 * buffer, and the blocks of held-back ones by size class. */
typedef struct node_rx {
    rxmsg scratch; /* a message delivered straight from the read buffer */
    rxmsg *free[NODE_RX_CLASSES];
    rxmsg *all;
} node_rx;

/* Clock buffers as wide as the group (node_members.c grows them). */
typedef struct node_clocks {
    uint64_t *send;    /* an own broadcast's clock when it cannot be read in place in its frame */
    uint64_t *scratch; /* a received clock when it cannot be read in place (node_clock_of) */
    uint32_t room;     /* entries both have room for (>= width) */
    /* Buffers replaced by a growth. A growth can happen inside a deliver
     * callback (cc_node_add_peer from the loop thread) while the message
     * being delivered points at the old buffer, so they are freed only at
     * close. Room grows geometrically up to max_width, so they hold less
     * than twice the final buffers however the group grew. */
    void **retired;
    size_t nretired;
} node_clocks;

/* The state folder (node_state.c). */
typedef struct node_folder {
    char *dir;         /* NULL: no folder */
    int log_fd;        /* own frames, appended; -1 without a folder */
    uint64_t *durable; /* width: the handed-over clock as last written (what ACKs may say) */
    uint64_t saved_moves, saved_lo, saved_hi; /* what the last write recorded */
    uint64_t log_bytes;
    int saved; /* written at least once */
} node_folder;

/* Handed over to the application (cc_node.h). Without `confirm` it is the
 * delivered clock with `own` for the own slot (cc__node_handed): own
 * broadcasts are stamped, which counts them in the engine's clock, before
 * they are delivered. With `confirm`, `clock` (width). */
typedef struct node_handed {
    uint64_t own;    /* the last own broadcast delivered */
    uint64_t *clock; /* width, with `confirm` and a state folder; else NULL */
    uint64_t moves;  /* changes of the handed-over clock other than deliveries */
} node_handed;

/* Re-delivery after a restart: own broadcasts (handed.own, log.hi] go
 * through the engine like a peer's, one at a time (`msg`, read from its log
 * frame), and broadcasts stamped meanwhile join the end of the run; the
 * engine's own entry is then what was delivered, not the sequence. Once the
 * run is delivered, stamping moves the engine's clock again. */
typedef struct node_replay {
    int on;
    rxmsg msg;
    uint64_t *clock; /* width entries: `msg`'s clock when it cannot be read in its frame */
    uint32_t width;
} node_replay;

struct cc_node {
    /* any thread */
    cc_queue queue; /* requests into the loop */
    node_ring ring;
    /* Touched by every producer on every call: alone on its line. */
    _Alignas(CC_CACHE_LINE) _Atomic unsigned users;
    /* The lifecycle, NODE_* bits: NODE_CLOSED from any thread, the rest
     * from the loop. Read by producers on every call and by the loop on
     * every message, written a few times in the node's life. */
    _Alignas(CC_CACHE_LINE) _Atomic unsigned life;
    _Atomic uint16_t port;
    node_confirm confirm;
    cc_loop *loop;
    cc_node_config cfg; /* defaults resolved; listen_host/state_dir point at our copies */
    cc_node_callbacks cb;
    char listen_host[CC_NODE_HOST_MAX];
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
    node_peer **peers; /* width entries; NULL: no member known at that slot */
    uint64_t progress; /* deliveries so far: paused readers retry when it moves */
    node_log log;
    node_rx rx;
    node_clocks clocks;
    node_links links;
    uv_async_t async;
    uv_prepare_t prepare; /* before the loop sleeps: takes what producers published without a wake-up */
    int handles; /* open libuv handles; the node is freed when the last closes */
    cc__loop_member member;
    node_folder folder;
    node_handed handed;
    node_replay replay;
};

/* The bits of cc_node.life, in the order they are set. */
enum {
    NODE_JOINED = 1,       /* loop: set up, and a member of the loop (cc__loop_join) */
    NODE_CLOSED = 2,       /* any thread: closing was asked for; producers are refused */
    NODE_CLOSE_BEGUN = 4,  /* loop: cc__node_begin_close takes what was handed over */
    NODE_CLOSING = 8,      /* loop: the handles close; nothing more is delivered or reported */
    NODE_START_FAILED = 16 /* loop: the set-up failed or was cut short: none of the caller's callbacks runs */
};

/* Loop thread (or, for NODE_CLOSED, any thread that only needs to stop
 * sooner): any of `bits` set? */
static inline int node_is(const cc_node *n, unsigned bits) {
    return (atomic_load_explicit(&((cc_node *)n)->life, memory_order_relaxed) & bits) != 0;
}

/* Loop thread: sets lifecycle bits (an atomic or: NODE_CLOSED may come from
 * another thread at the same time). */
static inline void node_mark(cc_node *n, unsigned bits) {
    atomic_fetch_or_explicit(&n->life, bits, memory_order_relaxed);
}

/* Any thread: NODE_CLOSED, sequentially consistent: after an increment of
 * `users`, either this sees the close or the closing loop sees the user. */
static inline int node_closed(cc_node *n) {
    return (atomic_load(&n->life) & NODE_CLOSED) != 0;
}

/* The handed-over clock's entry for `slot` (state folder only). */
static inline uint64_t cc__node_handed(const cc_node *n, uint32_t slot) {
    if (n->handed.clock)
        return n->handed.clock[slot];
    return slot == n->cfg.self ? n->handed.own : n->engine.local[slot];
}

/* What this member may tell `slot` it has from it (ACK, HELLO): with a state
 * folder, only what the folder already records. */
static inline uint64_t cc__node_has(const cc_node *n, uint32_t slot) {
    return n->folder.dir ? n->folder.durable[slot] : n->engine.local[slot];
}

static inline node_bcast *node_cell(const cc_node *n, uint64_t pos) {
    return (node_bcast *)(void *)(n->ring.cells + (size_t)(pos & n->ring.mask) * NODE_BLOCK);
}

/* Where a broadcast's payload is until its frame is encoded. Any thread
 * (the producer fills it, the loop reads it). */
static inline uint8_t *node_bcast_payload(const cc_node *n, const node_bcast *b) {
    if (b->length <= NODE_INLINE)
        return (uint8_t *)b + NODE_BCAST_PAYLOAD;
    size_t slot = (size_t)((const uint8_t *)b - n->ring.cells) / NODE_BLOCK;
    return n->ring.big + slot * n->cfg.max_payload;
}

static inline log_entry *node_entry(const cc_node *n, uint64_t seq) {
    return &n->log.entries[seq & n->log.mask];
}

/* ---- the parts' functions, by file (loop thread unless said) ---- */

/* node_life.c */
int cc__node_setup(void *n); /* cc_node_start, on the loop: handles, listener, timer, dials */
void cc__node_begin_close(cc_node *n);
void cc__node_free(cc_node *n); /* a node that never started, or whose last handle closed */
void cc__node_handle_closed(uv_handle_t *h);
void cc__node_release(cc_node *n); /* a connection's handle has closed */

/* node_handoff.c */
void cc__node_on_async(uv_async_t *h);
void cc__node_on_prepare(uv_prepare_t *h);
/* Takes up to `budget` broadcasts and requests (failing the requests with
 * CC_ECLOSED when `final`); adds the broadcasts to *sends. Returns the items taken. */
size_t cc__node_process_queue(cc_node *n, size_t budget, int final, size_t *sends);

/* node_log.c */
void cc__node_trim(cc_node *n);
/* Room for own frame e (len bytes) in a chunk; NULL: out of memory. */
uint8_t *cc__node_reserve(cc_node *n, log_entry *e, size_t len);
/* The oldest held entries, [from, to], give back their ring cells and frames. */
void cc__node_release_log(cc_node *n, uint64_t from, uint64_t to);
void cc__node_publish_released(cc_node *n); /* producers may reuse the cells released so far */
node_bcast *cc__node_take_cell(cc_node *n); /* cc_node_start only: a cell for a reloaded entry */
/* Appends own frames [*seq, to] (held ones) to iov[niov..max) as runs of
 * back-to-back frames, one iovec per chunk, skips entries that could not be
 * encoded, advances *seq past what it took and adds their bytes to *bytes.
 * Returns the new niov. */
unsigned cc__node_gather(cc_node *n, uint64_t *seq, uint64_t to, uv_buf_t *iov, unsigned niov, unsigned max,
                         size_t *bytes);

/* node_deliver.c */
int cc__node_on_message(cc_node *n, node_conn *c, const void *frame); /* NODE_FRAME_* */
/* The run of in-order MESSAGEs at p (avail bytes) delivered at once: their bytes (0: none). */
size_t cc__node_fast_run(cc_node *n, node_conn *c, const uint8_t *p, size_t avail);
void cc__node_drain(cc_node *n);
void cc__node_deliver_own(cc_node *n, uint64_t seq); /* a broadcast just stamped */
void cc__node_replay_next(cc_node *n); /* offers the next own broadcast to deliver again, or ends the run */
void cc__node_skip_before(cc_node *n, uint32_t slot, uint64_t first); /* a joiner starts at a peer's log */

/* node_members.c */
void cc__node_emit(cc_node *n, cc_node_event_kind kind, uint32_t slot, int code, const char *reason,
                   const char *address);
int cc__node_valid_host(const char *host, uint16_t port); /* any thread */
int cc__node_check_peer(const cc_node *n, const cc_node_peer *p); /* any thread: cc_node_add_peer's checks */
int cc__node_add_peer(cc_node *n, const cc_node_peer *p, int announce, int configured);
void cc__node_announce(cc_node *n); /* MEMBERS to every peer up */
int cc__node_grow(cc_node *n, uint32_t width);
int cc__node_on_members(cc_node *n, node_conn *c, const uint8_t *p, size_t len);
size_t cc__node_members_payload(cc_node *n, uint8_t *out, size_t cap);
void cc__node_peer_up(cc_node *n, node_conn *c);

/* node_state.c */
void cc__node_save_state(cc_node *n); /* before ACKs leave: what we acknowledge survives a restart */
int cc__node_load_state(cc_node *n);
int cc__node_append_log(cc_node *n, uint64_t from, uint64_t to); /* own frames [from, to] before they leave */

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

static inline void node_sync_stats(cc_node *n) {
    node_set(&n->stats.pending, n->engine.pending);
    node_set(&n->stats.unacked, n->log.hi + 1 - n->log.lo);
    atomic_store_explicit(&n->stats.width, n->width, memory_order_relaxed);
}

/* cc__node_reserve's common case, inline on the per-message path: room
 * right after the frame before, in a chunk that holds frames. */
static inline uint8_t *node_reserve(cc_node *n, log_entry *e, size_t len) {
    node_chunk *ck = n->log.chunk;
    if (!ck || ck->live == 0 || ck->cap - ck->used < len)
        return cc__node_reserve(n, e, len);
    e->ck = ck;
    e->off = ck->used;
    e->len = (uint32_t)len;
    ck->used += (uint32_t)len;
    ck->live++;
    return ck->data + e->off;
}

/* A frame's dense clock as an array: in place when the host is little-endian
 * and the bytes are aligned for uint64_t (back-to-back frames whose sizes are
 * multiples of 8, as a 64-byte payload makes them, all are), else decoded into
 * `scratch`. Saves a copy of the whole clock per message. The bytes live as
 * long as the frame (the read buffer until the message is delivered or
 * copied, or the log entry). */
static inline const uint64_t *node_clock_of(const uint8_t *p, uint32_t w, uint64_t *scratch) {
    if (WIRE_LE && ((uintptr_t)p & (_Alignof(uint64_t) - 1)) == 0)
        return (const uint64_t *)(const void *)p;
    for (uint32_t k = 0; k < w; k++)
        scratch[k] = wire_rd64(p + (size_t)k * 8);
    return scratch;
}

#endif

/* A causal inbox: the lock-free queue feeding the delivery engine on a loop.
 *
 * Any thread acquires a pooled message buffer, fills it and posts it (a
 * message from a peer, clock already set) or sends it (a local broadcast,
 * stamped on the loop thread). The loop thread is woken with uv_async_send
 * (which coalesces: it drains until the queue is empty), offers each message
 * to the delivery engine and hands deliverable ones to the deliver callback
 * in causal order. Delivery happens after each batch taken from the queue,
 * so messages that arrive together are "deliverable at the same moment" and
 * the most urgent goes first. Stamped local sends go to the emit callback first (the
 * transport forwards them to peers), then are delivered locally like any
 * other message. Buffers go back to the pool after their callback returns.
 *
 * In raw mode the causal engine is skipped and posted messages go straight
 * to the deliver callback in arrival order: the benchmarks' baseline for the
 * cost of the hand-off alone.
 *
 * Steady state allocates nothing: buffers, queue and engine are sized at open.
 *
 * Thread safety: acquire, release, post, send and stats from any thread;
 * callbacks and cc_inbox_clock on the loop thread only. */
#ifndef CC_INBOX_H
#define CC_INBOX_H

#include <stdint.h>
#include "cc_delivery.h"
#include "cc_loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cc_inbox cc_inbox;

/** A pooled message buffer. `head.clock` points at `clock` (width entries)
 * and `payload` at max_payload bytes of storage, both inside the block. */
typedef struct cc_inbox_msg {
    cc_msg head;       /* sender, level and clock for the engine */
    uint32_t kind;     /* application-defined message kind */
    uint32_t length;   /* payload bytes in use */
    uint8_t *payload;  /* max_payload bytes */
    uint64_t *clock;   /* width entries (mutable view of head.clock) */
    void *user;        /* free for the caller (a transport's link, say) */
} cc_inbox_msg;

typedef struct cc_inbox_config {
    uint32_t width;       /* clock width of the group */
    uint32_t self;        /* this node's slot, used by cc_inbox_send; UINT32_MAX when none */
    uint32_t capacity;    /* message buffers (and queue slots) */
    uint32_t max_payload; /* bytes per buffer */
    uint32_t window;      /* per-sender look-ahead of the engine (0 picks capacity) */
    uint32_t pending;     /* most messages the engine holds at once (0 picks 3/4 of capacity, so that a
                           * pool full of held-back messages never starves their predecessors) */
    int raw;              /* nonzero: no causal check (baseline) */
} cc_inbox_config;

/** Loop thread. m is valid only during the call. */
typedef void (*cc_inbox_handler)(void *ctx, const cc_inbox_msg *m);
/** Loop thread. A posted message the engine refused, with the reason (CC_EDUPLICATE, CC_EFULL, ...;
 * CC_ESENDER for a message claiming to be ours with a sequence we never sent). */
typedef void (*cc_inbox_reject_handler)(void *ctx, const cc_inbox_msg *m, int code);
/** Loop thread. Called once when the inbox has closed; the inbox is freed after it returns. */
typedef void (*cc_inbox_closed_handler)(void *ctx);
/** Loop thread. Buffers came back after cc_inbox_acquire found none: try again
 * instead of polling. Once for any number of empty acquires before it; an
 * acquire that finds none again asks again. No moment is missed by a waiter
 * that registers itself, then acquires, and on NULL waits for the next call.
 * Not called once the inbox has begun to close. */
typedef void (*cc_inbox_room_handler)(void *ctx);

typedef struct cc_inbox_callbacks {
    void *ctx;
    cc_inbox_handler deliver;        /* required */
    cc_inbox_handler emit;           /* optional: stamped local sends, before local delivery */
    cc_inbox_reject_handler reject;  /* optional */
    cc_inbox_closed_handler closed;  /* optional */
    cc_inbox_room_handler room;      /* optional */
} cc_inbox_callbacks;

/** Counters readable from any thread. */
typedef struct cc_inbox_stats {
    uint64_t posted;      /* messages taken from the queue */
    uint64_t delivered;   /* deliver callbacks */
    uint64_t sent;        /* local sends stamped */
    uint64_t duplicates;
    uint64_t held_back;
    uint64_t rejected;    /* refused for any other reason */
    uint64_t overtakes;   /* emergency deliveries ahead of lower-level ready messages */
    uint64_t wakeups;     /* times the loop thread drained the queue */
    uint64_t pending;     /* messages the engine holds now */
} cc_inbox_stats;

/** Any thread. Opens an inbox on loop. Returns CC_OK, CC_EINVAL, CC_ENOMEM, CC_ESYS or CC_ECLOSED. */
int cc_inbox_open(cc_loop *loop, const cc_inbox_config *config, const cc_inbox_callbacks *callbacks,
                  cc_inbox **out);

/** Any thread. Stops accepting posts, delivers nothing more, and calls
 * `closed` on the loop thread; the inbox is freed after that. Also happens
 * when the loop stops. Until `closed` returns, calls on the inbox stay safe
 * (posts and sends fail with CC_ECLOSED, acquire returns NULL); none may
 * start after it. Returns CC_OK or CC_ECLOSED (already closing). */
int cc_inbox_close(cc_inbox *in);

/** Any thread. A free buffer (kind, length 0, level LOW, width = config width,
 * clock zeroed), or NULL when all are in use or the inbox is closing. */
cc_inbox_msg *cc_inbox_acquire(cc_inbox *in);
/** Any thread. Gives back a buffer that was acquired but not posted or sent. */
void cc_inbox_release(cc_inbox *in, cc_inbox_msg *m);

/** Any thread. Queues a message from a peer (clock, sender, level set).
 * Returns CC_OK, or CC_EFULL / CC_ECLOSED / CC_EINVAL (then m is released). */
int cc_inbox_post(cc_inbox *in, cc_inbox_msg *m);
/** Any thread. Queues a local broadcast; the loop stamps sender = self and
 * the clock. Returns like cc_inbox_post, and CC_EINVAL when self is unset. */
int cc_inbox_send(cc_inbox *in, cc_inbox_msg *m);

/** Any thread. A snapshot of the counters. */
void cc_inbox_stats_get(const cc_inbox *in, cc_inbox_stats *out);

/** Loop thread only. Copies the local clock into out (up to n entries) and returns the width. */
size_t cc_inbox_clock(const cc_inbox *in, uint64_t *out, size_t n);

/** The loop the inbox lives on. */
cc_loop *cc_inbox_loop(const cc_inbox *in);

#ifdef __cplusplus
}
#endif
#endif

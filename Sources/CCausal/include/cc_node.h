/* A member of a causal broadcast group over TCP, on a cc_loop.
 *
 * Every member listens, connects to the members it knows (the member with the
 * lower slot dials; the other accepts, so each pair shares one connection),
 * and broadcasts its own messages to every peer. Each message is a
 * CC_FRAME_MESSAGE stamped with the member's clock; receivers deliver through
 * the causal delivery engine (cc_delivery), so every member delivers every
 * message exactly once, in causal order, its own broadcasts included.
 *
 * Only members get in: before anything else each side proves it holds the
 * cluster key with a mutual challenge-response (HELLO carries a fresh random
 * nonce, AUTH the HMAC of both nonces and both slots under the key, libsodium's
 * crypto_auth). A peer that fails, stalls or sends a malformed or oversized
 * frame is disconnected with a reported reason; other connections carry on.
 *
 * No loss, no duplicates: a member keeps its own broadcasts in a bounded log
 * until every peer has acknowledged them (CC_FRAME_ACK carries the highest
 * sequence received in order from that peer, cumulatively). After a dropped
 * connection the dialing side reconnects with exponential backoff, the
 * handshake tells each side what the other has, and the log is resent from
 * there; receivers drop what they already have. Heartbeats keep idle
 * connections alive; a peer silent for timeout_ms is disconnected and
 * reported down.
 *
 * Restarts: with a state folder a member survives its own end, a crash
 * (SIGKILL) included, without losing a message. It appends each own broadcast
 * to a log there before sending or delivering it, and writes its sequence and
 * its handed-over clock (below) before acknowledging; at start it reloads
 * both, continues its sequence after the last one it used, and delivers again
 * everything after the handed-over clock: its own broadcasts from the log (in
 * causal order, through the delivery engine), peers' broadcasts resent by
 * them (a member acknowledges only what it has handed over, so they still
 * hold them). A message is thus delivered at least once to the application
 * across restarts, and again after a crash when it was handed over after the
 * last state write; within one run of a node, exactly once. A broadcast
 * that returned CC_OK but was not yet stamped into the log when the process
 * died is lost with it: no member has it.
 *
 * Handed over: by default a message counts as handed over to the application
 * when the deliver callback returns. With `confirm` set, only once the
 * application confirms it with cc_node_confirm: for an application that
 * queues deliveries and handles them later, on another thread, so that what
 * sits in its queue when the process dies is delivered again. Files are not
 * fsync'ed: this survives the process, not the machine losing power.
 *
 * Back-pressure: when the log holds send_window unacknowledged broadcasts,
 * cc_node_broadcast returns CC_EFULL instead of growing; reading from a peer
 * pauses while the delivery engine's pending set is full, or while its next
 * message is more than send_window ahead of what was delivered from it. A
 * link that stays paused at the same frame for timeout_ms is closed
 * (CC_NODE_PEER_DOWN, CC_EAHEAD or CC_EFULL): nothing it held was
 * acknowledged, so the peer sends it again after the reconnect. While the
 * link is paused the silence check does not apply (its frames are not read).
 *
 * Groups grow: cc_node_add_peer adds a member with a new slot; the clock width
 * grows, and the member announces the new membership to its peers
 * (CC_FRAME_MEMBERS) so that older members learn the new width. Never past
 * max_width (default 1024): a width costs about (send_window + 8) * 8 bytes
 * per slot (32 KiB with the defaults, so 32 MiB at 1024), and any holder of
 * the key could otherwise make a member allocate gigabytes with one frame.
 * A wider HELLO is refused (CC_NODE_REFUSED, CC_EWIDTH); a wider MEMBERS or
 * MESSAGE, or a slot at or past max_width in a MEMBERS record, closes that
 * link (CC_NODE_PROTOCOL, CC_EWIDTH); the width stays what it was. Room is
 * reserved geometrically, so a group grown one slot at a time up to
 * max_width allocates O(max_width) bytes in all, not O(max_width^2).
 *
 * Hostile connections: before a peer has proven the key, a connection holds
 * a 4 KiB read buffer (and two 512-byte write buffers), never more, and
 * accepts only frames of up to 256 bytes (HELLO and AUTH are smaller); a
 * larger length prefix is refused at once (CC_ETOOBIG), not waited for. At
 * most 64 accepted connections may be in the handshake at once (the node's
 * own dials do not count); when one more arrives, the oldest of them is
 * closed (CC_NODE_REFUSED, CC_EFULL). A flood of connections then keeps a
 * member out only while it opens 64 within one handshake (a round trip and
 * a half), not for handshake_ms after each batch. Each must still finish
 * within handshake_ms.
 *
 * Addresses: a member is dialed at the address this node was given for it
 * (cc_node_start's peers, cc_node_add_peer), whatever that member announces
 * about itself, so a proxy, a NAT's outside address or the address of a
 * member listening on 0.0.0.0 keeps working across reconnects. Only for a
 * member this node learned of from another one's MEMBERS is the announced
 * address used, and updated when that member announces a new one.
 *
 * A joining member does not receive the group's history: it starts at the
 * group's current point. From each peer it delivers the broadcasts that peer
 * still holds unacknowledged, and everything after; older broadcasts count
 * as delivered in its clock (it never sees them), so nothing waits on them.
 *
 * Events: a malformed frame on an authenticated link gives CC_NODE_PROTOCOL
 * and then CC_NODE_PEER_DOWN for that slot; anything wrong before the
 * handshake completes gives CC_NODE_REFUSED. The code says what: the
 * cc_frame_parse error (CC_EVERSION, CC_ETOOBIG, CC_EWIDTH, ...), CC_EINVAL
 * for a failed authentication or a message before the handshake, CC_ESENDER
 * for an unknown slot, CC_ECLOSED for a timeout or a closed connection,
 * CC_EWIDTH for a group wider than max_width, CC_EFULL for a connection
 * closed to free a handshake slot, CC_EAHEAD (or CC_EFULL) in the
 * CC_NODE_PEER_DOWN of a link paused too long. Failed dials are retried
 * quietly (no event).
 *
 * A broadcast that returned CC_OK is never dropped: a closing node stamps,
 * delivers and (with a state folder) records it before it closes. (A node
 * still delivering again own broadcasts from before its restart delivers the
 * later ones after them, so one that closes meanwhile delivers them after its
 * next start.)
 *
 * Thread safety: cc_node_start, cc_node_broadcast, cc_node_add_peer,
 * cc_node_confirm, cc_node_stats_get, cc_node_unacked and cc_node_close from
 * any thread; callbacks run on the loop thread. Nothing may be called after the `closed` callback returns.
 *
 * Signals: libuv writes to sockets with write(2), which raises SIGPIPE when
 * the peer has reset the connection; the default action ends the process.
 * The caller should ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)) before starting
 * a node: the write then fails with EPIPE and only that connection closes.
 * (The Swift CausalNode does so unless the process set its own handler.) */
#ifndef CC_NODE_H
#define CC_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "cc_loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cc_node cc_node;

#define CC_NODE_KEY_SIZE 32 /* crypto_auth_KEYBYTES */
#define CC_NODE_HOST_MAX 64

/** A member as seen by this one: its slot and where it listens. */
typedef struct cc_node_peer {
    uint32_t slot;
    char host[CC_NODE_HOST_MAX]; /* IPv4 or IPv6 literal, NUL-terminated */
    uint16_t port;
} cc_node_peer;

typedef struct cc_node_config {
    uint32_t self;                      /* this member's slot */
    uint32_t width;                     /* initial clock width (> every known slot) */
    const char *listen_host;            /* address to listen on */
    uint16_t listen_port;               /* 0: pick a free port (see cc_node_port) */
    uint8_t key[CC_NODE_KEY_SIZE];      /* the cluster key */
    const char *state_dir;              /* NULL: no persistence; else a folder this member owns */
    uint32_t heartbeat_ms;              /* send a heartbeat after this much idle time (0: 1000) */
    uint32_t timeout_ms;                /* drop a peer silent for this long (0: 5000) */
    uint32_t reconnect_min_ms;          /* first reconnect delay, doubled per failure (0: 50) */
    uint32_t reconnect_max_ms;          /* ceiling of the reconnect delay (0: 2000) */
    uint32_t handshake_ms;              /* a peer must finish the handshake within this (0: 2000) */
    uint32_t max_frame;                 /* largest frame accepted or sent (0: CC_FRAME_DEFAULT_MAX) */
    uint32_t max_payload;               /* largest broadcast payload (0: 64 KiB) */
    uint32_t send_window;               /* most unacknowledged own broadcasts (0: 4096) */
    uint32_t pending;                   /* most messages the engine holds (0: 65536) */
    uint32_t confirm;                   /* with a state folder, 1: handed over once cc_node_confirm says so */
    uint32_t max_width;                 /* widest group accepted, from any source (0: 1024; at most 65536) */
} cc_node_config;

/** A delivered message, valid only during the deliver callback. */
typedef struct cc_node_msg {
    uint32_t sender;
    uint8_t level;
    uint32_t kind;
    const uint64_t *clock;
    uint32_t width;
    const uint8_t *payload;
    uint32_t length;
} cc_node_msg;

typedef enum cc_node_event_kind {
    CC_NODE_PEER_UP = 1,       /* handshake done with `slot` */
    CC_NODE_PEER_DOWN = 2,     /* connection with `slot` lost (reason says why); reconnecting if we dial */
    CC_NODE_REFUSED = 3,       /* a connection closed before or during the handshake (wrong key, garbage, ...) */
    CC_NODE_PROTOCOL = 4,      /* a member's connection closed for a malformed frame (code, reason) */
    CC_NODE_MEMBER_ADDED = 5,  /* the group grew: `slot` is new, width in `width` */
    CC_NODE_LISTENING = 6,     /* the listener is up on `port` */
} cc_node_event_kind;

typedef struct cc_node_event {
    cc_node_event_kind kind;
    uint32_t slot;         /* the peer concerned, or UINT32_MAX when unknown */
    int code;              /* a CC_E* code when something failed, else 0 */
    uint32_t width;        /* the clock width after the event */
    uint16_t port;         /* for CC_NODE_LISTENING */
    const char *reason;    /* human-readable, static or valid during the callback */
    const char *address;   /* the remote address as "host:port", when known */
} cc_node_event;

/* Callbacks run on the loop thread. `room` and `acked` tell a waiting
 * application when to try again, so that it need not poll:
 *
 *   room   the send window has room again after a cc_node_broadcast
 *          returned CC_EFULL (acknowledgements released some of it). Once
 *          for any number of CC_EFULL returns before it; a broadcast that
 *          finds the window full again asks again. No moment is missed by
 *          a waiter that registers itself, then broadcasts, and on CC_EFULL
 *          waits for the next call.
 *   acked  every own broadcast the loop has taken is acknowledged by every
 *          peer (with a state folder: and handed over and written), so the
 *          log is empty; called each time it empties. Broadcasts accepted
 *          meanwhile may still be on their way into the log: cc_node_unacked
 *          is 0 only when none is left anywhere.
 *
 * Like `deliver`, they may call any cc_node function (another broadcast,
 * say); neither is called once the node has begun to close. */
typedef struct cc_node_callbacks {
    void *ctx;
    void (*deliver)(void *ctx, const cc_node_msg *m); /* required; causal order */
    void (*event)(void *ctx, const cc_node_event *e);     /* optional */
    void (*closed)(void *ctx);                            /* optional; after it the node is freed */
    void (*room)(void *ctx);                              /* optional: the window has room again */
    void (*acked)(void *ctx);                             /* optional: every broadcast is acknowledged */
} cc_node_callbacks;

typedef struct cc_node_stats {
    uint64_t sent;          /* own broadcasts */
    uint64_t delivered;     /* deliveries, own included */
    uint64_t pending;       /* messages the engine holds now */
    uint64_t duplicates;    /* messages dropped as already received */
    uint64_t resent;        /* frames written again after a reconnect */
    uint64_t reconnects;    /* connections re-established */
    uint64_t refused;       /* connections refused in or before the handshake */
    uint64_t protocol_errors;
    uint64_t unacked;       /* own broadcasts not yet acknowledged by every peer (nor, with a state
                               folder, handed over here and written) */
    uint64_t bytes_out, bytes_in;
    uint32_t width;
    uint32_t peers_up;
} cc_node_stats;

/** Any thread. Starts a member on loop with the known peers (slots != self).
 * Returns CC_OK, CC_EINVAL (also for a slot at or past max_width, or a
 * max_width past 65536), CC_EWIDTH (the state folder records a group wider
 * than max_width), CC_ENOMEM, CC_ESYS (listen failed: the address is
 * in use, say) or CC_ECLOSED. A state folder that exists is reloaded. */
int cc_node_start(cc_loop *loop, const cc_node_config *config, const cc_node_peer *peers, size_t npeers,
                  const cc_node_callbacks *callbacks, cc_node **out);

/** Any thread. Broadcasts a payload to the group. Returns CC_OK, CC_EFULL
 * (send window full: try again later), CC_EINVAL (payload too large, bad
 * level) or CC_ECLOSED. */
int cc_node_broadcast(cc_node *node, const void *payload, size_t length, uint8_t level, uint32_t kind);

/** Any thread, on a node started with `confirm` (else CC_EINVAL). The
 * application has handed over the delivered message whose clock is `clock`
 * (n entries) and everything before it in causal order: the handed-over clock
 * becomes the entrywise maximum of the clocks confirmed (capped at what was
 * delivered). Confirming each message after handling it, in delivery order,
 * makes it exactly what was handled. The node writes it to the state folder
 * and acknowledges it soon after (it wakes the loop); what was delivered but
 * not confirmed when the process ends is delivered again after the restart.
 * No allocation; without a state folder it does nothing. Returns CC_OK,
 * CC_EINVAL, CC_EWIDTH (a nonzero entry past the node's width) or CC_ECLOSED
 * (the node is closing: the state it writes as it closes has what was
 * confirmed before). */
int cc_node_confirm(cc_node *node, const uint64_t *clock, size_t n);

/** Any thread. Adds a member; its slot may be past the current width (the
 * group grows). Its address is kept as given (see Addresses above). Returns
 * CC_OK, CC_EINVAL (the slot is this node's or already a member's, or an
 * argument is NULL), CC_ESYS (host and port are not an IPv4 or IPv6 literal
 * address: uv_ip4_addr and uv_ip6_addr refused them), CC_EWIDTH (the slot is
 * at or past max_width), CC_ENOMEM or CC_ECLOSED. */
int cc_node_add_peer(cc_node *node, const cc_node_peer *peer);

/** The port the node listens on (useful with listen_port 0). Any thread. */
uint16_t cc_node_port(const cc_node *node);

/** Any thread. A snapshot of the counters. */
void cc_node_stats_get(const cc_node *node, cc_node_stats *out);

/** Any thread; no allocation, no lock. Own broadcasts not yet acknowledged
 * by every peer (with a state folder: nor handed over and written), those
 * cc_node_broadcast accepted that the loop has not taken yet included (the
 * stats' `unacked` counts only the taken ones). 0: everything broadcast so
 * far is acknowledged. With the `acked` callback, a waiter that reads this
 * after registering itself misses no moment it becomes 0. */
uint64_t cc_node_unacked(const cc_node *node);

/** Loop thread only (e.g. inside a callback, or through cc_loop_call). The
 * delivered clock: copies up to n entries and returns the width. */
size_t cc_node_clock(const cc_node *node, uint64_t *out, size_t n);

/** Any thread. Closes connections and the listener, flushes the state folder
 * and calls `closed` on the loop thread; the node is freed after it. The
 * loop's stop also closes open nodes. Returns CC_OK or CC_ECLOSED. */
int cc_node_close(cc_node *node);

#ifdef __cplusplus
}
#endif
#endif

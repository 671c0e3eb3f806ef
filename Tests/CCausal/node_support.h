/* The harness of the cc_node tests: nodes on their own loops in this
 * process, on 127.0.0.1 with ports picked by the system, and raw peers that
 * speak the wire protocol by hand (node_raw.c).
 *
 * Every node checks each delivery against its own delivered vector (the
 * message's own entry is exactly one past what it has from that sender, and
 * no other entry is ahead of it), so exactly-once and happened-before order
 * are checked on every message, not only at the end. Every wait is on a
 * condition variable signalled from node callbacks (mu, cv), with a
 * deadline; the runner's watchdog ends a test that hangs anyway. */
#ifndef CC_NODE_SUPPORT_H
#define CC_NODE_SUPPORT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cc_node.h"

/* Test hook, declared in Sources/CCausal/node_internal.h. */
int cc__node_drop_connections(cc_node *node);

enum { WAIT_S = 15, MAXW = 8, MAXEV = 64 };
enum { A_EACH = 2000 }; /* broadcasts per member in the group tests (node.group, node.restart) */

typedef struct ev {
    int kind, code;
    uint32_t slot;
    char reason[96];
} ev;

typedef struct tnode {
    cc_loop *loop;
    cc_node *node;
    uint32_t slot;
    int joiner; /* joined a running group: its first message from each sender may skip */
    /* guarded by mu */
    uint64_t seen[MAXW], got[MAXW];
    uint64_t first[MAXW]; /* the sequence of the first message delivered from each sender */
    /* Hand-off (node.confirm): confirm each of the first confirm_upto
     * deliveries to confirm_node, and remember the checker's state after the
     * last one confirmed. */
    cc_node *confirm_node;
    uint64_t confirm_upto, handed_seen[MAXW], handed_delivered;
    uint64_t kill_at; /* node.crash: die in the callback of this own delivery */
    uint64_t delivered, violations;
    int up[MAXW], downs, refused, protocol, added, listening, closed;
    int rooms, acks; /* `room` and `acked` callbacks */
    uint32_t width_seen;
    ev evs[MAXEV];
    int nev;
} tnode;

typedef struct group_wait {
    tnode *t;
    int count;
    uint64_t each;
} group_wait;

/* Broadcasts from..to-1 from one node, retrying while the window is full. */
typedef struct sender {
    tnode *t;
    uint32_t from, to;
    int rc;
} sender;

typedef struct ev_wait {
    tnode *t;
    int kind, count;
} ev_wait;

extern pthread_mutex_t mu; /* guards every tnode; cv is broadcast on every callback */
extern pthread_cond_t cv;
extern const uint8_t KEY[CC_NODE_KEY_SIZE], BAD_KEY[CC_NODE_KEY_SIZE];

/* Waits: wait_for (mu held) until pred holds or `seconds` pass, woken by
 * the callbacks; poll_for for a condition no callback signals. Predicates
 * take a group_wait, a tnode or a tnode array, as their names say. */
struct timespec deadline_in(int s);
int wait_for(int (*pred)(void *), void *arg, int seconds);
int poll_for(int (*pred)(void *), void *arg, int seconds);
int delivered_n(void *arg);   /* group_wait: t has delivered `each` */
int all_delivered(void *arg); /* group_wait: each of `count` nodes has delivered `each` */
int all_up(void *arg);        /* group_wait: every pair of `count` nodes is up */
int all_acked(void *arg);     /* group_wait: nothing unacknowledged at any of `count` nodes */
int wait_acked(group_wait *g); /* all_acked, woken by `acked` */
int is_closed(void *arg);     /* tnode */
int got_from_seq(void *arg);  /* group_wait: from sender `count`, sequence `each` seen */
int got_from(void *arg);      /* group_wait: from sender `count`, `each` messages */
int both_up(void *arg);       /* tnode[2]: up with each other */

/* Nodes: started on a loop of their own, checked on every delivery. */
cc_node_config base_config(uint32_t slot, uint32_t width);
cc_node_config with_state(cc_node_config c); /* a state folder for the slot */
void remove_state(uint32_t slot);
cc_node_peer peer_at(uint32_t slot, uint16_t port);
int start_from(tnode *t, const tnode *old, const cc_node_config *cfg, const cc_node_peer *peers, size_t np);
int start(tnode *t, const cc_node_config *cfg, const cc_node_peer *peers, size_t np);
int start_group(tnode *t, uint32_t count, uint32_t width, cc_node_config (*tweak)(cc_node_config));
void stop(tnode *t);
uint16_t free_port(void);

/* Broadcasts: payload number idx of a slot, its level, and sender threads. */
size_t payload(uint8_t *buf, uint32_t slot, uint32_t idx);
uint8_t level_of(uint32_t idx);
void *send_thread(void *arg); /* a sender */
void run_senders(tnode *t, int count, uint32_t from, uint32_t to);
size_t node_clock(tnode *t, uint64_t *out);
void check_clocks(tnode *t, int count, const uint64_t *expect, size_t width);

/* node_raw.c: a peer that speaks the protocol by hand. */
int raw_connect(uint16_t port);
int send_all(int fd, const void *buf, size_t len);
int wait_eof(int fd);
int eof_within(int fd, int ms);
int has_events(void *arg); /* ev_wait */
const ev *last_event(tnode *t, int kind);
void expect_event(tnode *t, int kind, int count, int code, const char *reason);
void wait_events(tnode *t, int kind, int count);
size_t control_frame(uint8_t *buf, size_t cap, uint8_t type, uint32_t sender, uint32_t width, const void *p,
                     size_t len);
size_t bare_frame(uint8_t *buf, uint8_t type, uint32_t sender, uint32_t width, const void *p, size_t len);
int read_frame(int fd, uint8_t *stream, size_t *have, uint8_t type, uint8_t *out, size_t outlen);
void auth_mac(uint8_t *mac, uint32_t own, uint32_t peer, const uint8_t *own_nonce,
              const uint8_t *peer_nonce);
cc_node_config short_handshake(cc_node_config c);
int raw_handshake_as(uint16_t port, uint32_t width);
int raw_handshake(uint16_t port);
int start_target(tnode *t, const cc_node_config *cfg);
uint32_t width_of(tnode *t);

#endif

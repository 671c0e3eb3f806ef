/* libFuzzer target: a node's receive path (node_link.c, node.c) on the bytes
 * of one peer's connection, past the handshake.
 *
 * Each input runs on a fresh node: slot 1 of a group of 2 that knows slot 0,
 * with small windows so that the back-pressure paths are near. The input:
 *   byte 0   own broadcasts the node makes before the connection (low 3 bits)
 *   byte 1   bytes per read: 0 for as many as the read buffer takes
 *   rest     what slot 0's connection carries, as the node reads it
 * The connection is one end of a socketpair, adopted as if the listener had
 * accepted it (cc__link_adopt), and the bytes are handed to it read by read
 * (cc__link_feed); the node's writes go to the other end, unread.
 *
 * The fuzzer cannot forge a MAC, so the harness signs for it: an AUTH frame
 * with seq 0 and a 32-byte payload gets the tag the node expects
 * (cc__link_peer_mac) just before the node reads it. Any other AUTH is left
 * as it is, which is a peer with the wrong key.
 *
 * Every delivery is checked against the node's delivered clock (causal
 * order: nothing in its clock is ahead of what was delivered) and against
 * the sender's previous delivery (rising sequences: no duplicate), and its
 * clock and payload are read whole for AddressSanitizer. A violation, or a
 * reader left with no room that is neither paused nor closed, aborts.
 *
 * No packet leaves the process: a MEMBERS frame names any address and the
 * node dials new members above its slot, so connect() is replaced below and
 * fails at once, as a refused connection does. */
#include <errno.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cc_error.h"
#include "cc_frame.h"
#include "cc_loop.h"
#include "cc_node.h"
#include "node_internal.h"

#define MAX_WIDTH 32
#define PENDING 8
#define CHECK(cond)          \
    do {                     \
        if (!(cond))         \
            abort();         \
    } while (0)

static const uint8_t KEY[CC_NODE_KEY_SIZE] = "fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz";
static cc_loop *loop;

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    (void)fd, (void)addr, (void)len;
    errno = ECONNREFUSED;
    return -1;
}

typedef struct run {
    cc_node *node;
    int fd; /* the node's end of the socketpair */
    uint8_t *stream;
    size_t len, read_size;
    uint64_t last[MAX_WIDTH]; /* the last sequence delivered from each sender */
    volatile uint64_t sink;
    sem_t done;
} run;

static void on_deliver(void *ctx, const cc_node_msg *m) {
    run *r = ctx;
    uint64_t local[MAX_WIDTH];
    size_t width = cc_node_clock(r->node, local, MAX_WIDTH);
    CHECK(width <= MAX_WIDTH && m->width <= width && m->sender < m->width);
    uint64_t sum = 0;
    for (uint32_t k = 0; k < m->width; k++) {
        CHECK(m->clock[k] <= local[k]);
        sum += m->clock[k];
    }
    CHECK(m->clock[m->sender] > r->last[m->sender]);
    r->last[m->sender] = m->clock[m->sender];
    for (uint32_t i = 0; i < m->length; i++)
        sum += m->payload[i];
    r->sink += sum;
}

static void on_closed(void *ctx) {
    sem_post(&((run *)ctx)->done);
}

/* Feeds stream[from, to) read by read; 0 once the node stopped reading. */
static int feed(run *r, node_conn *c, size_t from, size_t to) {
    while (from < to) {
        size_t k = to - from;
        if (r->read_size && k > r->read_size)
            k = r->read_size;
        size_t took = cc__link_feed(c, r->stream + from, k);
        from += took;
        if (took < k) {
            /* Closed, or paused at a frame it cannot take yet; never out of room. */
            CHECK(c->state == CONN_CLOSING || node_is(c->node, NODE_CLOSING) || c->paused);
            return 0;
        }
    }
    return 1;
}

static void on_loop(void *arg) {
    run *r = arg;
    node_conn *c = cc__link_adopt(r->node, r->fd);
    if (!c) {
        close(r->fd);
    } else {
        /* Up to each AUTH to sign: its HELLO has been read by then. */
        size_t at = 0, off = 0;
        cc_frame f;
        int64_t n;
        int reading = 1;
        while (reading && (n = cc_frame_parse(r->stream + off, r->len - off, CC_FRAME_DEFAULT_MAX, &f)) > 0) {
            if (f.type == CC_FRAME_AUTH && f.seq == 0 && f.payload_len == NODE_MAC) {
                size_t mac = (size_t)(f.payload - r->stream);
                reading = feed(r, c, at, mac);
                cc__link_peer_mac(c, r->stream + mac);
                at = mac;
            }
            off += (size_t)n;
        }
        if (reading)
            feed(r, c, at, r->len);
    }
    cc_node_stats st;
    cc_node_stats_get(r->node, &st);
    CHECK(st.pending < PENDING && st.width <= MAX_WIDTH);
    cc_node_close(r->node);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    signal(SIGPIPE, SIG_IGN);
    CHECK(cc_loop_start(0, &loop) == CC_OK);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    static run r;
    memset((void *)&r, 0, sizeof r);
    unsigned own = data[0] & 7;
    r.read_size = data[1];
    r.len = size - 2;
    r.stream = malloc(r.len ? r.len : 1); /* exactly the input: AddressSanitizer sees past it */
    CHECK(r.stream != NULL);
    memcpy(r.stream, data + 2, r.len);
    CHECK(sem_init(&r.done, 0, 0) == 0);

    cc_node_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.self = 1;
    cfg.width = 2;
    cfg.listen_host = "127.0.0.1";
    memcpy(cfg.key, KEY, sizeof cfg.key);
    cfg.heartbeat_ms = cfg.timeout_ms = cfg.handshake_ms = 60000; /* no timer acts within a run */
    cfg.max_frame = 4096;
    cfg.max_payload = 512;
    cfg.send_window = 16;
    cfg.pending = PENDING;
    cfg.max_width = MAX_WIDTH;
    cc_node_peer peer = {.slot = 0, .host = "127.0.0.1", .port = 9}; /* never dialed: a lower slot dials */
    cc_node_callbacks cb = {.ctx = &r, .deliver = on_deliver, .closed = on_closed};
    CHECK(cc_node_start(loop, &cfg, &peer, 1, &cb, &r.node) == CC_OK);

    /* Own broadcasts, stamped (and delivered) before the connection exists. */
    for (unsigned i = 0; i < own; i++) {
        uint8_t p[8] = {'o', 'w', 'n', (uint8_t)i};
        CHECK(cc_node_broadcast(r.node, p, sizeof p, CC_LEVEL_LOW + i % CC_LEVEL_COUNT, i) == CC_OK);
    }
    cc_node_stats st;
    for (cc_node_stats_get(r.node, &st); st.sent < own; cc_node_stats_get(r.node, &st))
        sched_yield();

    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    r.fd = sv[0];
    CHECK(cc_loop_call(loop, on_loop, &r) == CC_OK);
    while (sem_wait(&r.done) != 0)
        CHECK(errno == EINTR);
    close(sv[1]);
    sem_destroy(&r.done);
    free(r.stream);
    return 0;
}

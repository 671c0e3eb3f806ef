/* cc_node against hostile input from raw sockets (node_raw.c): garbage,
 * oversized and malformed frames, groups wider than allowed, floods of
 * connections in the handshake, and a link paused too long. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cc_delivery.h"
#include "cc_error.h"
#include "cc_frame.h"
#include "cc_test.h"
#include "node_support.h"
#include <sys/socket.h>

/* ---- (c) raw sockets ---------------------------------------------------------- */

TEST_IMPL(node, raw_sockets) {
    /* Slots 1 and 2 are good members; slot 0 is known to them, and it is the
     * slot the raw socket claims. Nobody dials slot 0 (it is the lowest). */
    tnode t[3];
    memset(&t[0], 0, sizeof t[0]);
    uint16_t ports[3] = {0};
    for (int s = 2; s >= 1; s--) {
        cc_node_peer peers[2];
        size_t np = 0;
        for (uint32_t k = 0; k < 3; k++) {
            if (k != (uint32_t)s)
                peers[np++] = peer_at(k, ports[k]);
        }
        cc_node_config cfg = short_handshake(base_config((uint32_t)s, 3));
        REQUIRE(start(&t[s], &cfg, peers, np));
        ports[s] = cc_node_port(t[s].node);
    }
    tnode *g = &t[1]; /* the target */
    group_wait pair = {.t = &t[1], .count = 2, .each = 2 * 1000};

    /* A concurrent broadcast between the good members all along. */
    pthread_t th[2];
    sender s[2] = {{.t = &t[1], .from = 0, .to = 1000}, {.t = &t[2], .from = 0, .to = 1000}};
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, send_thread, &s[i]);

    /* Garbage: a plausible length and an unknown version. */
    int fd = raw_connect(ports[1]);
    REQUIRE(fd >= 0);
    uint8_t junk[64];
    memset(junk, 0x5a, sizeof junk);
    junk[0] = 60, junk[1] = junk[2] = junk[3] = 0;
    CHECK(send_all(fd, junk, sizeof junk));
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_REFUSED, 1, CC_EVERSION, cc_strerror(CC_EVERSION));

    /* An oversized length prefix: refused before any body is awaited. */
    fd = raw_connect(ports[1]);
    REQUIRE(fd >= 0);
    uint8_t huge[4] = {0xff, 0xff, 0xff, 0x7f};
    CHECK(send_all(fd, huge, sizeof huge));
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_REFUSED, 2, CC_ETOOBIG, cc_strerror(CC_ETOOBIG));

    /* Silence: the handshake deadline closes it. */
    fd = raw_connect(ports[1]);
    REQUIRE(fd >= 0);
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_REFUSED, 3, CC_ECLOSED, "handshake timed out");

    /* A message before the handshake. */
    fd = raw_connect(ports[1]);
    REQUIRE(fd >= 0);
    uint8_t frame[512];
    uint64_t clock[3] = {1, 0, 0};
    cc_frame h = {.type = CC_FRAME_MESSAGE, .level = CC_LEVEL_LOW, .sender = 0, .seq = 1};
    int64_t len = cc_frame_encode(frame, sizeof frame, &h, clock, NULL, 3, "x", 1);
    REQUIRE(len > 0);
    CHECK(send_all(fd, frame, (size_t)len));
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_REFUSED, 4, CC_EINVAL, "before the handshake");

    /* A HELLO from a slot nobody knows. */
    fd = raw_connect(ports[1]);
    REQUIRE(fd >= 0);
    uint8_t hello[48] = {0};
    randombytes_buf(hello, 32);
    size_t hl = control_frame(frame, sizeof frame, CC_FRAME_HELLO, 7, 8, hello, sizeof hello);
    CHECK(send_all(fd, frame, hl));
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_REFUSED, 5, CC_ESENDER, "unknown slot");

    /* A full handshake as slot 0 (the test knows the key), then a MESSAGE
     * whose dense clock has fewer entries than its width. */
    fd = raw_handshake(ports[1]);
    REQUIRE(fd >= 0);
    pthread_mutex_lock(&mu);
    ev_wait upw = {.t = g, .kind = CC_NODE_PEER_UP, .count = 2}; /* slot 2, then the raw slot 0 */
    CHECK(wait_for(has_events, &upw, WAIT_S));
    CHECK_EQ(g->up[0], 1);
    pthread_mutex_unlock(&mu);
    len = cc_frame_encode(frame, sizeof frame, &h, clock, NULL, 3, "x", 1);
    REQUIRE(len > 0);
    frame[16] = 2; /* entries: 2, width: 3 */
    CHECK(send_all(fd, frame, (size_t)len));
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_PROTOCOL, 1, CC_EWIDTH, cc_strerror(CC_EWIDTH));
    expect_event(g, CC_NODE_PEER_DOWN, 1, CC_EWIDTH, cc_strerror(CC_EWIDTH));

    /* A member that authenticates and then says nothing (no heartbeats) is
     * dropped after timeout_ms; the good link, idle by now, lives on its
     * heartbeats. */
    fd = raw_handshake(ports[1]);
    REQUIRE(fd >= 0);
    CHECK(wait_eof(fd));
    close(fd);
    expect_event(g, CC_NODE_PEER_DOWN, 2, CC_ECLOSED, "silent");

    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(s[i].rc, CC_OK);
    }
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_delivered, &pair, WAIT_S));
    CHECK_EQ(t[1].delivered, 2000);
    CHECK_EQ(t[2].delivered, 2000);
    CHECK_EQ(t[1].violations, 0);
    CHECK_EQ(t[2].violations, 0);
    CHECK_EQ(t[2].refused, 0);
    CHECK_EQ(t[1].up[2], 1); /* the good link never went down */
    CHECK_EQ(t[1].up[0], 2);
    CHECK_EQ(t[1].downs, 2);
    CHECK_EQ(t[2].downs, 0);
    pthread_mutex_unlock(&mu);
    cc_node_stats st;
    cc_node_stats_get(g->node, &st);
    CHECK_EQ(st.refused, 5);
    CHECK_EQ(st.protocol_errors, 1);
    CHECK_EQ(st.peers_up, 1);
    stop(&t[1]);
    stop(&t[2]);
}

/* ---- (n) hostile input ------------------------------------------------------------------ */

enum { WIDE = 65536, WIDEST_DEFAULT = 1024, GROW_PAST = 1100, W_WINDOW = 64, W_SENDS = 50 };

/* A holder of the key claims a huge group: in its HELLO, then in one MEMBERS
 * frame. The member never grows past its widest group (1024 by default),
 * says why, and takes the next connection as before. */
TEST_IMPL(node, wide_groups) {
    /* Slot 1 the target, slot 2 a good member broadcasting with it all along;
     * both know slot 0, which the raw socket claims. */
    tnode t[3];
    memset(&t[0], 0, sizeof t[0]);
    uint16_t ports[3] = {0};
    for (int s = 2; s >= 1; s--) {
        cc_node_peer peers[2] = {peer_at(0, 0), peer_at(s == 1 ? 2 : 1, ports[s == 1 ? 2 : 1])};
        cc_node_config cfg = base_config((uint32_t)s, 3);
        cfg.send_window = W_WINDOW; /* a slot costs the engine ~0.5 KiB: a growth to 65536 stays affordable */
        REQUIRE(start(&t[s], &cfg, peers, 2));
        ports[s] = cc_node_port(t[s].node);
    }
    tnode *g = &t[1];
    uint16_t port = ports[1];
    pthread_t th[2];
    /* Within the window: slot 0 never acknowledges, so the window never opens. */
    sender s[2] = {{.t = &t[1], .from = 0, .to = W_SENDS}, {.t = &t[2], .from = 0, .to = W_SENDS}};
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, send_thread, &s[i]);

    /* A HELLO claiming 65536 members: refused before AUTH. */
    int fd = raw_handshake_as(port, WIDE);
    CHECK(fd < 0);
    if (fd >= 0)
        close(fd);
    expect_event(g, CC_NODE_REFUSED, 1, CC_EWIDTH, "HELLO: group wider than max_width");
    CHECK_EQ(width_of(g), 3);

    /* One 32-byte MEMBERS frame claiming 65536 members, on an authenticated link. */
    fd = raw_handshake_as(port, 3);
    REQUIRE(fd >= 0);
    pthread_mutex_lock(&mu);
    ev_wait upw = {.t = g, .kind = CC_NODE_PEER_UP, .count = 2}; /* slot 2, then the raw slot 0 */
    CHECK(wait_for(has_events, &upw, WAIT_S));
    CHECK_EQ(g->up[0], 1);
    pthread_mutex_unlock(&mu);
    uint8_t frame[64];
    CHECK(send_all(fd, frame, bare_frame(frame, CC_FRAME_MEMBERS, 0, WIDE, NULL, 0)));
    CHECK(eof_within(fd, 5000));
    close(fd);
    expect_event(g, CC_NODE_PROTOCOL, 1, CC_EWIDTH, "MEMBERS: group wider than max_width");
    expect_event(g, CC_NODE_PEER_DOWN, 1, CC_EWIDTH, "wider than max_width");
    CHECK_EQ(width_of(g), 3);

    /* The member carries on: it takes the next connection, and the good
     * link delivered every broadcast, never down. */
    fd = raw_handshake_as(port, 3);
    CHECK(fd >= 0);
    wait_events(g, CC_NODE_PEER_UP, 3);
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(s[i].rc, CC_OK);
    }
    group_wait pair = {.t = &t[1], .count = 2, .each = 2 * W_SENDS};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(all_delivered, &pair, WAIT_S));
    CHECK_EQ(t[1].violations, 0);
    CHECK_EQ(t[2].violations, 0);
    CHECK_EQ(t[1].up[2], 1);
    CHECK_EQ(t[2].downs, 0);
    CHECK_EQ(g->refused, 1);
    CHECK_EQ(g->protocol, 1);
    pthread_mutex_unlock(&mu);
    stop(&t[1]);
    stop(&t[2]);
}

/* MEMBERS frames growing the group one slot at a time, past the widest: up
 * to it (the room doubles, so that is a few copies, not one per slot), and
 * no further. */
TEST_IMPL(node, growth_by_one) {
    tnode t;
    cc_node_config cfg = base_config(1, 2);
    cfg.send_window = W_WINDOW; /* as above */
    REQUIRE(start_target(&t, &cfg));
    uint16_t port = cc_node_port(t.node);
    int fd = raw_handshake_as(port, 3);
    REQUIRE(fd >= 0);
    wait_events(&t, CC_NODE_PEER_UP, 1);
    static uint8_t stream[GROW_PAST * CC_FRAME_HEADER_SIZE];
    size_t len = 0;
    for (uint32_t w = 4; w <= GROW_PAST; w++)
        len += bare_frame(stream + len, CC_FRAME_MEMBERS, 0, w, NULL, 0);
    send_all(fd, stream, len); /* the member may close the link before it takes them all */
    CHECK(eof_within(fd, 5000));
    close(fd);
    expect_event(&t, CC_NODE_PROTOCOL, 1, CC_EWIDTH, "MEMBERS: group wider than max_width");
    CHECK_EQ(width_of(&t), WIDEST_DEFAULT);
    fd = raw_handshake_as(port, 3); /* the member carries on */
    CHECK(fd >= 0);
    wait_events(&t, CC_NODE_PEER_UP, 2);
    if (fd >= 0)
        close(fd);
    stop(&t);
}

/* The widest group is an option: start, add_peer and HELLO keep to it. */
TEST_IMPL(node, max_width) {
    tnode t;
    cc_node_config cfg = base_config(1, 8);
    cfg.max_width = 4;
    CHECK(!start_target(&t, &cfg)); /* a width of 8 is past it */
    stop(&t);
    cfg.width = 2;
    cfg.max_width = WIDE + 1;
    CHECK(!start_target(&t, &cfg)); /* past the widest a node supports */
    stop(&t);
    cfg.max_width = 4;
    REQUIRE(start_target(&t, &cfg));
    cc_node_peer p = peer_at(4, 1);
    CHECK_EQ(cc_node_add_peer(t.node, &p), CC_EWIDTH);
    p = peer_at(3, 1);
    CHECK_EQ(cc_node_add_peer(t.node, &p), CC_OK);
    CHECK_EQ(width_of(&t), 4);
    int fd = raw_handshake_as(cc_node_port(t.node), 5);
    CHECK(fd < 0);
    if (fd >= 0)
        close(fd);
    expect_event(&t, CC_NODE_REFUSED, 1, CC_EWIDTH, "wider than max_width");
    fd = raw_handshake_as(cc_node_port(t.node), 4);
    CHECK(fd >= 0);
    wait_events(&t, CC_NODE_PEER_UP, 1);
    if (fd >= 0)
        close(fd);
    stop(&t);
}

enum { HANDSHAKE_SLOTS = 64, FLOOD = HANDSHAKE_SLOTS + 16, FLOOD_SENDS = 100 };

/* A stranger without the key sends six bytes: a length prefix within
 * max_frame (almost 1 MiB) and two more. Refused at once, not waited for
 * with a read buffer grown to the frame. */
TEST_IMPL(node, handshake_buffer) {
    tnode t;
    cc_node_config cfg = base_config(1, 2);
    cfg.handshake_ms = 30000; /* far past the wait below: the deadline does not close it */
    REQUIRE(start_target(&t, &cfg));
    uint16_t port = cc_node_port(t.node);
    int fd = raw_connect(port);
    REQUIRE(fd >= 0);
    uint8_t head[6];
    uint32_t length = CC_FRAME_DEFAULT_MAX - 64;
    memcpy(head, &length, 4);
    head[4] = CC_FRAME_VERSION;
    head[5] = CC_FRAME_HELLO;
    CHECK(send_all(fd, head, sizeof head));
    CHECK(eof_within(fd, 3000));
    close(fd);
    expect_event(&t, CC_NODE_REFUSED, 1, CC_ETOOBIG, cc_strerror(CC_ETOOBIG));
    fd = raw_handshake_as(port, 2); /* the member carries on */
    CHECK(fd >= 0);
    wait_events(&t, CC_NODE_PEER_UP, 1);
    if (fd >= 0)
        close(fd);
    stop(&t);
}

/* Strangers without the key open more silent connections than there are
 * handshake slots; they do not keep a member out. */
TEST_IMPL(node, handshake_flood) {
    tnode t[2]; /* t[1] the target, t[0] a member that joins during the flood */
    memset(&t[0], 0, sizeof t[0]);
    cc_node_config cfg = base_config(1, 2);
    cfg.handshake_ms = 30000; /* far past the waits below: no handshake deadline rescues anyone */
    REQUIRE(start_target(&t[1], &cfg));
    uint16_t port = cc_node_port(t[1].node);

    /* Silent connections, more than the slots, then a member: it joins at
     * once (well within the handshake deadline) and its broadcasts get
     * through. Each connection past the slots, the member's included,
     * closes the oldest in the handshake (the first ones), not itself; the
     * kernel queued them all before the member dialed, so they are accepted
     * first. */
    int fds[FLOOD];
    for (int i = 0; i < FLOOD; i++) {
        fds[i] = raw_connect(port);
        REQUIRE(fds[i] >= 0);
    }
    cc_node_config cb = base_config(0, 2);
    cc_node_peer p1 = peer_at(1, port);
    REQUIRE(start(&t[0], &cb, &p1, 1));
    pthread_mutex_lock(&mu);
    CHECK(wait_for(both_up, t, 5));
    pthread_mutex_unlock(&mu);
    CHECK(eof_within(fds[0], 3000));
    CHECK(eof_within(fds[FLOOD - HANDSHAKE_SLOTS], 3000)); /* the oldest when the member came */
    expect_event(&t[1], CC_NODE_REFUSED, 1 + FLOOD - HANDSHAKE_SLOTS, CC_EFULL, "handshake slots full");
    sender s = {.t = &t[0], .from = 0, .to = FLOOD_SENDS};
    send_thread(&s);
    CHECK_EQ(s.rc, CC_OK);
    group_wait g = {.t = &t[1], .each = FLOOD_SENDS};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(delivered_n, &g, WAIT_S));
    CHECK_EQ(t[1].got[0], FLOOD_SENDS);
    CHECK_EQ(t[1].violations, 0);
    CHECK_EQ(t[0].refused, 0);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < FLOOD; i++)
        close(fds[i]);
    stop(&t[0]);
    stop(&t[1]);
}

enum { P_WINDOW = 16, P_AHEAD = 100 };

/* A holder of the key sends a message too far ahead (past the engine's
 * look-ahead, the send window) and then nothing: the link pauses at it, and
 * still times out. Nothing of it was accepted, so after a reconnect the
 * sender's first message is delivered as usual. */
TEST_IMPL(node, paused_too_long) {
    tnode t;
    cc_node_config cfg = base_config(1, 2);
    cfg.send_window = P_WINDOW;
    cfg.timeout_ms = 500;
    REQUIRE(start_target(&t, &cfg));
    uint16_t port = cc_node_port(t.node);
    int fd = raw_handshake_as(port, 2);
    REQUIRE(fd >= 0);
    wait_events(&t, CC_NODE_PEER_UP, 1);
    uint8_t frame[512], buf[128];
    uint64_t clock[2] = {P_AHEAD, 0};
    cc_frame h = {.type = CC_FRAME_MESSAGE, .level = CC_LEVEL_LOW, .sender = 0, .seq = P_AHEAD};
    int64_t len = cc_frame_encode(frame, sizeof frame, &h, clock, NULL, 2, buf, payload(buf, 0, P_AHEAD - 1));
    REQUIRE(len > 0);
    CHECK(send_all(fd, frame, (size_t)len));
    CHECK(eof_within(fd, 5000)); /* its heartbeats keep coming meanwhile; the link goes all the same */
    close(fd);
    expect_event(&t, CC_NODE_PEER_DOWN, 1, CC_EAHEAD, "too far ahead");

    fd = raw_handshake_as(port, 2);
    REQUIRE(fd >= 0);
    wait_events(&t, CC_NODE_PEER_UP, 2);
    clock[0] = 1;
    h.seq = 1;
    len = cc_frame_encode(frame, sizeof frame, &h, clock, NULL, 2, buf, payload(buf, 0, 0));
    REQUIRE(len > 0);
    CHECK(send_all(fd, frame, (size_t)len));
    group_wait g = {.t = &t, .each = 1};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(delivered_n, &g, WAIT_S));
    CHECK_EQ(t.got[0], 1);
    CHECK_EQ(t.violations, 0);
    pthread_mutex_unlock(&mu);
    close(fd);
    stop(&t);
}

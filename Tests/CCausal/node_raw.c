/* A peer that speaks the cc_node wire protocol by hand over a raw socket
 * (node_support.h), for the tests of hostile and malformed input. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cc_delivery.h"
#include "cc_error.h"
#include "cc_frame.h"
#include "cc_test.h"
#include "node_support.h"

int raw_connect(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int send_all(int fd, const void *buf, size_t len) {
    const uint8_t *p = buf;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w <= 0)
            return 0;
        p += w;
        len -= (size_t)w;
    }
    return 1;
}

/* Reads until the peer closes (or resets) the connection: 1, or 0 on timeout. */
int wait_eof(int fd) {
    uint8_t buf[4096];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return 1;
        if (r < 0 && errno != EINTR)
            return 0;
    }
}

int has_events(void *arg) {
    ev_wait *w = arg;
    int n = 0;
    for (int e = 0; e < w->t->nev; e++)
        n += w->t->evs[e].kind == w->kind;
    return n >= w->count;
}

/* The last event of a kind: its code and reason. */
const ev *last_event(tnode *t, int kind) {
    for (int e = t->nev - 1; e >= 0; e--) {
        if (t->evs[e].kind == kind)
            return &t->evs[e];
    }
    return NULL;
}

void expect_event(tnode *t, int kind, int count, int code, const char *reason) {
    ev_wait w = {.t = t, .kind = kind, .count = count};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(has_events, &w, WAIT_S));
    const ev *e = last_event(t, kind);
    CHECK(e != NULL);
    if (e) {
        CHECK_EQ(e->code, code);
        if (!strstr(e->reason, reason)) {
            fprintf(stderr, "node: expected reason \"%s\", got \"%s\"\n", reason, e->reason);
            cc_test_failures++;
        }
    }
    pthread_mutex_unlock(&mu);
}

size_t control_frame(uint8_t *buf, size_t cap, uint8_t type, uint32_t sender, uint32_t width, const void *p,
                     size_t len) {
    uint64_t clock[MAXW] = {0};
    cc_frame h = {.type = type, .sender = sender};
    int64_t r = cc_frame_encode(buf, cap, &h, clock, clock, width, p, len);
    return r > 0 ? (size_t)r : 0;
}

/* Reads frames until one of `type` arrives; copies its payload. */
int read_frame(int fd, uint8_t *stream, size_t *have, uint8_t type, uint8_t *out, size_t outlen) {
    for (;;) {
        cc_frame f;
        int64_t r = cc_frame_parse(stream, *have, CC_FRAME_DEFAULT_MAX, &f);
        if (r > 0) {
            int match = f.type == type && f.payload_len == outlen;
            if (match)
                memcpy(out, f.payload, outlen);
            memmove(stream, stream + r, *have - (size_t)r);
            *have -= (size_t)r;
            if (match)
                return 1;
            continue;
        }
        if (r != CC_ETRUNCATED)
            return 0;
        ssize_t got = recv(fd, stream + *have, 4096 - *have, 0);
        if (got <= 0)
            return 0;
        *have += (size_t)got;
    }
}

void auth_mac(uint8_t *mac, uint32_t own, uint32_t peer, const uint8_t *own_nonce,
              const uint8_t *peer_nonce) {
    uint8_t in[17 + 8 + 64];
    memcpy(in, "causalucp-auth-v1", 17);
    uint8_t s[8] = {(uint8_t)own,  (uint8_t)(own >> 8),  (uint8_t)(own >> 16),  (uint8_t)(own >> 24),
                    (uint8_t)peer, (uint8_t)(peer >> 8), (uint8_t)(peer >> 16), (uint8_t)(peer >> 24)};
    memcpy(in + 17, s, 8);
    memcpy(in + 25, own_nonce, 32);
    memcpy(in + 57, peer_nonce, 32);
    crypto_auth(mac, in, sizeof in, KEY);
}

cc_node_config short_handshake(cc_node_config c) {
    c.handshake_ms = 300;
    c.timeout_ms = 500; /* heartbeats every 100 ms keep the good link up */
    return c;
}

/* A control frame as any peer may write one: a sparse clock with no entries
 * and whatever width it claims (control_frame's clock has only MAXW). */
size_t bare_frame(uint8_t *buf, uint8_t type, uint32_t sender, uint32_t width, const void *p, size_t len) {
    uint32_t length = (uint32_t)(CC_FRAME_HEADER_SIZE - 4 + len);
    memset(buf, 0, CC_FRAME_HEADER_SIZE);
    memcpy(buf, &length, 4); /* the tests run on little-endian hosts, as the frame is */
    buf[4] = CC_FRAME_VERSION;
    buf[5] = type;
    buf[7] = CC_FRAME_FLAG_SPARSE;
    memcpy(buf + 8, &sender, 4);
    memcpy(buf + 12, &width, 4);
    if (len)
        memcpy(buf + CC_FRAME_HEADER_SIZE, p, len);
    return CC_FRAME_HEADER_SIZE + len;
}

/* Completes the handshake with the member at `port` (slot 1) as slot 0,
 * claiming a group of `width`. */
int raw_handshake_as(uint16_t port, uint32_t width) {
    int fd = raw_connect(port);
    if (fd < 0)
        return -1;
    uint8_t frame[512], hello[48] = {0}, nonce[32], peer_hello[48], peer_mac[32], mac[32], expect[32];
    randombytes_buf(nonce, sizeof nonce);
    memcpy(hello, nonce, 32);
    size_t hl = bare_frame(frame, CC_FRAME_HELLO, 0, width, hello, sizeof hello);
    uint8_t stream[4096];
    size_t have = 0;
    if (!send_all(fd, frame, hl) ||
        !read_frame(fd, stream, &have, CC_FRAME_HELLO, peer_hello, sizeof peer_hello) ||
        !read_frame(fd, stream, &have, CC_FRAME_AUTH, peer_mac, sizeof peer_mac)) {
        close(fd);
        return -1;
    }
    auth_mac(expect, 1, 0, peer_hello, nonce); /* the member proves the key too */
    CHECK(memcmp(expect, peer_mac, 32) == 0);
    auth_mac(mac, 0, 1, nonce, peer_hello);
    hl = bare_frame(frame, CC_FRAME_AUTH, 0, width, mac, sizeof mac);
    if (!send_all(fd, frame, hl)) {
        close(fd);
        return -1;
    }
    return fd;
}

int raw_handshake(uint16_t port) {
    return raw_handshake_as(port, 3);
}

/* Reads (and drops) until the peer closes or resets the connection within
 * ms: 1, or 0 when it is still open then. Heartbeats do not extend it. */
int eof_within(int fd, int ms) {
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += ms / 1000;
    end.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    uint8_t buf[4096];
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = (long)(end.tv_sec - now.tv_sec) * 1000 + (end.tv_nsec - now.tv_nsec) / 1000000L;
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got == 0 || (got < 0 && errno == ECONNRESET))
            return 1;
        if (got < 0 && errno != EINTR && errno != EAGAIN)
            return 0;
    }
}

/* Slot 1, which knows slot 0: the slot the raw socket claims (with the key, in
 * the tests where a holder of the key misbehaves). Nobody dials slot 0. */
int start_target(tnode *t, const cc_node_config *cfg) {
    cc_node_peer p = peer_at(0, 0);
    return start(t, cfg, &p, 1);
}

void wait_events(tnode *t, int kind, int count) {
    ev_wait w = {.t = t, .kind = kind, .count = count};
    pthread_mutex_lock(&mu);
    CHECK(wait_for(has_events, &w, WAIT_S));
    pthread_mutex_unlock(&mu);
}

uint32_t width_of(tnode *t) {
    cc_node_stats st;
    cc_node_stats_get(t->node, &st);
    return st.width;
}

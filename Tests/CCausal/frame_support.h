/* What the frame tests share: little-endian writers of their own (the
 * tests do not trust the codec's), and a parse of a copy held in a heap
 * block of exactly its length (a read past it is caught by AddressSanitizer). */
#ifndef CC_FRAME_SUPPORT_H
#define CC_FRAME_SUPPORT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cc_error.h"
#include "cc_frame.h"

static inline void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint8_t *copy_exact(const uint8_t *src, size_t n) {
    uint8_t *p = malloc(n ? n : 1);
    if (p != NULL && n != 0) memcpy(p, src, n);
    return p;
}

/* Parses a copy of buf[0..n) held in a heap block of exactly n bytes. */
static inline int64_t parse_exact(const uint8_t *buf, size_t n, size_t max_frame, cc_frame *out) {
    uint8_t *p = copy_exact(buf, n);
    if (p == NULL) return CC_ENOMEM;
    cc_frame f;
    int64_t rc = cc_frame_parse(p, n, max_frame, &f);
    free(p);
    if (rc > 0 && out != NULL) {
        *out = f;
        out->clock = out->payload = NULL; /* they pointed into the freed copy */
    }
    return rc;
}

static inline cc_frame header(uint8_t type, uint8_t level, uint32_t sender, uint32_t kind, uint64_t seq) {
    cc_frame h;
    memset(&h, 0, sizeof h);
    h.type = type;
    h.level = level;
    h.sender = sender;
    h.kind = kind;
    h.seq = seq;
    return h;
}

static inline uint8_t level_for(uint8_t type, uint64_t r) {
    return type == CC_FRAME_MESSAGE ? (uint8_t)(1 + r % 4) : 0;
}

#endif

/* The wire frame: versioned, length-prefixed, little-endian.
 *
 *   offset size field
 *   0      4    length   bytes after this field (header rest + clock + payload)
 *   4      1    version  CC_FRAME_VERSION
 *   5      1    type     cc_frame_type
 *   6      1    level    emergency level (1..4) for MESSAGE, 0 otherwise
 *   7      1    flags    bit 0: sparse clock; other bits reserved, must be 0
 *   8      4    sender   sender's slot in the group
 *   12     4    width    the group's clock width as the sender knows it
 *   16     4    entries  clock entries that follow (== width when dense)
 *   20     4    kind     application-defined message kind
 *   24     8    seq      link sequence (acknowledgements, resends)
 *   32     ...  clock    dense: entries x u64; sparse: entries x (u32 slot, u64 value), slots ascending
 *   ...    ...  payload  the rest
 *
 * A sparse clock carries only the entries that changed since the previous
 * frame on the same connection; the receiver applies them to the last clock
 * it saw from that peer. Every malformed input has its own error code; the
 * parser never reads past `len` and never trusts a declared length.
 *
 * Thread safety: pure functions. */
#ifndef CC_FRAME_H
#define CC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CC_FRAME_VERSION 1
#define CC_FRAME_HEADER_SIZE 32
#define CC_FRAME_FLAG_SPARSE 0x01u
#define CC_FRAME_DEFAULT_MAX (1u << 20)

typedef enum cc_frame_type {
    CC_FRAME_HELLO = 1,     /* a connecting peer names itself and offers a challenge */
    CC_FRAME_AUTH = 2,      /* answer to a challenge */
    CC_FRAME_MESSAGE = 3,   /* a causal message */
    CC_FRAME_ACK = 4,       /* cumulative acknowledgement: seq = last received */
    CC_FRAME_HEARTBEAT = 5, /* keeps an idle connection alive */
    CC_FRAME_MEMBERS = 6,   /* membership change: the group grew */
    CC_FRAME_TYPE_MAX = 6,
} cc_frame_type;

/** A parsed frame. Pointers point into the parsed buffer. */
typedef struct cc_frame {
    uint8_t type, level, flags;
    uint32_t sender, width, entries, kind;
    uint64_t seq;
    const uint8_t *clock;   /* encoded clock (see cc_frame_clock) */
    const uint8_t *payload;
    uint32_t payload_len;
    uint32_t size;          /* whole frame, length prefix included */
} cc_frame;

/** The encoded size of a frame; 0 when it would not fit in 32 bits. */
size_t cc_frame_size(unsigned flags, size_t entries, size_t payload_len);

/** Parses one frame at the start of buf. Returns the frame's size (> 0) and
 * fills out; or CC_ETRUNCATED when buf holds only part of a frame (a stream
 * reader waits for more), or an error: CC_ETOOBIG, CC_EVERSION, CC_ETYPE,
 * CC_EFLAGS, CC_ELENGTH, CC_ELEVEL, CC_ESENDER, CC_EWIDTH. */
int64_t cc_frame_parse(const uint8_t *buf, size_t len, size_t max_frame, cc_frame *out);

/** Bytes needed to finish the frame starting at buf (at least 4); lets a
 * reader size its next read. */
size_t cc_frame_needed(const uint8_t *buf, size_t len);

/** Decodes f's clock into clock[0..width). A dense clock needs
 * f->width == width; a sparse one is applied on top of what clock holds.
 * Returns CC_OK, CC_EWIDTH or CC_ESPARSE. */
int cc_frame_clock(const cc_frame *f, uint64_t *clock, size_t width);

/** Encodes a frame into buf (capacity cap). With base == NULL the clock is
 * dense; otherwise only entries where clock differs from base are written
 * (sparse), and the caller updates its base afterwards. h supplies type,
 * level, sender, kind and seq; width is taken from `width`. Returns the
 * frame size, CC_EFULL when buf is too small, or CC_EINVAL. */
int64_t cc_frame_encode(uint8_t *buf, size_t cap, const cc_frame *h, const uint64_t *clock,
                        const uint64_t *base, size_t width, const void *payload, size_t payload_len);

#ifdef __cplusplus
}
#endif
#endif

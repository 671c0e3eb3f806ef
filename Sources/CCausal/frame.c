/* The wire frame codec (see cc_frame.h for the layout).
 *
 * Every multi-byte field is read and written in little-endian order
 * through wire.h, so the codec is independent of the host's byte order and
 * never dereferences an unaligned pointer. Only the bulk copy of a dense
 * clock on a little-endian host takes a memcpy shortcut.
 *
 * Size arithmetic is done in uint64_t from uint32_t inputs, where it cannot
 * overflow, and compared against bounds before anything narrower sees it. */
#include "cc_frame.h"

#include <string.h>

#include "cc_error.h"
#include "wire.h"

#define LENGTH_MIN (CC_FRAME_HEADER_SIZE - 4) /* the header after the length field */
#define DENSE_ENTRY 8u
#define SPARSE_ENTRY 12u
#define LEVEL_MIN 1 /* CC_LEVEL_LOW */
#define LEVEL_MAX 4 /* CC_LEVEL_CRITICAL */

_Static_assert(CC_FRAME_HEADER_SIZE == 32, "the header layout in cc_frame.h is 32 bytes");
_Static_assert(CC_FRAME_TYPE_MAX <= 255, "the type is one byte on the wire");

static inline int level_ok(unsigned type, unsigned level) {
    if (type == CC_FRAME_MESSAGE) return level >= LEVEL_MIN && level <= LEVEL_MAX;
    return level == 0;
}

size_t cc_frame_size(unsigned flags, size_t entries, size_t payload_len) {
    uint64_t per = (flags & CC_FRAME_FLAG_SPARSE) ? SPARSE_ENTRY : DENSE_ENTRY;
    uint64_t room = UINT32_MAX - CC_FRAME_HEADER_SIZE;
    /* Compare before multiplying: entries * 12 overflows size_t on 32-bit hosts. */
    if ((uint64_t)entries > room / per) return 0;
    room -= (uint64_t)entries * per;
    if ((uint64_t)payload_len > room) return 0;
    return (size_t)(CC_FRAME_HEADER_SIZE + (uint64_t)entries * per + (uint64_t)payload_len);
}

size_t cc_frame_needed(const uint8_t *buf, size_t len) {
    if (buf == NULL || len < 4) return 4;
    uint64_t total = (uint64_t)wire_rd32(buf) + 4;
    /* Only a 32-bit size_t can fail to hold 0xFFFFFFFF + 4; no buffer that
     * large exists there, so saturate. */
    return total > SIZE_MAX ? SIZE_MAX : (size_t)total;
}

int64_t cc_frame_parse(const uint8_t *buf, size_t len, size_t max_frame, cc_frame *out) {
    if (out == NULL || (buf == NULL && len != 0)) return CC_EINVAL;
    if (len < 4) return CC_ETRUNCATED;

    /* Judge the size before waiting for the body: a reader must not buffer
     * up to 4 GiB for a frame it will reject anyway. cc_frame.size is 32
     * bits, so a frame longer than that is too big whatever max_frame says. */
    uint32_t length = wire_rd32(buf);
    uint64_t total = (uint64_t)length + 4;
    if (total > (uint64_t)max_frame || total > UINT32_MAX) return CC_ETOOBIG;
    if ((uint64_t)len < total) return CC_ETRUNCATED;
    if (length < LENGTH_MIN) return CC_ELENGTH;

    uint8_t version = buf[4], type = buf[5], level = buf[6], flags = buf[7];
    uint32_t sender = wire_rd32(buf + 8), width = wire_rd32(buf + 12), entries = wire_rd32(buf + 16);
    if (version != CC_FRAME_VERSION) return CC_EVERSION;
    if (type == 0 || type > CC_FRAME_TYPE_MAX) return CC_ETYPE;
    if (flags & ~CC_FRAME_FLAG_SPARSE) return CC_EFLAGS;
    if (!level_ok(type, level)) return CC_ELEVEL;
    int sparse = (flags & CC_FRAME_FLAG_SPARSE) != 0;
    if (!sparse && entries != width) return CC_EWIDTH;
    /* Control frames may come from a peer that has no slot yet (width 0). */
    if (type == CC_FRAME_MESSAGE && (width == 0 || sender >= width)) return CC_ESENDER;

    uint64_t clock_bytes = (uint64_t)entries * (sparse ? SPARSE_ENTRY : DENSE_ENTRY);
    if (clock_bytes > (uint64_t)(length - LENGTH_MIN)) return CC_ELENGTH;

    out->type = type;
    out->level = level;
    out->flags = flags;
    out->sender = sender;
    out->width = width;
    out->entries = entries;
    out->kind = wire_rd32(buf + 20);
    out->seq = wire_rd64(buf + 24);
    out->clock = buf + CC_FRAME_HEADER_SIZE;
    out->payload = out->clock + clock_bytes;
    out->payload_len = (uint32_t)(length - LENGTH_MIN - clock_bytes);
    out->size = (uint32_t)total;
    return (int64_t)total;
}

int cc_frame_clock(const cc_frame *f, uint64_t *clock, size_t width) {
    if (f == NULL || (clock == NULL && width != 0) || (f->clock == NULL && f->entries != 0))
        return CC_EINVAL;

    if (!(f->flags & CC_FRAME_FLAG_SPARSE)) {
        if ((uint64_t)f->width != (uint64_t)width || f->entries != f->width) return CC_EWIDTH;
        if (WIRE_LE) {
            if (width != 0) memcpy(clock, f->clock, width * sizeof *clock);
        } else {
            for (size_t k = 0; k < width; k++) clock[k] = wire_rd64(f->clock + k * DENSE_ENTRY);
        }
        return CC_OK;
    }

    /* Validate every entry before applying any, so that a bad frame leaves
     * the caller's clock exactly as it was. A slot beyond the caller's clock
     * is a width mismatch; one beyond the frame's own width, or out of
     * order, is a malformed sparse clock. */
    const uint8_t *e = f->clock;
    for (uint32_t i = 0; i < f->entries; i++, e += SPARSE_ENTRY) {
        uint32_t slot = wire_rd32(e);
        if ((uint64_t)slot >= (uint64_t)width) return CC_EWIDTH;
        if (slot >= f->width) return CC_ESPARSE;
        if (i > 0 && slot <= wire_rd32(e - SPARSE_ENTRY)) return CC_ESPARSE;
    }
    e = f->clock;
    for (uint32_t i = 0; i < f->entries; i++, e += SPARSE_ENTRY) clock[wire_rd32(e)] = wire_rd64(e + 4);
    return CC_OK;
}

int64_t cc_frame_encode(uint8_t *buf, size_t cap, const cc_frame *h, const uint64_t *clock,
                        const uint64_t *base, size_t width, const void *payload,
                        size_t payload_len) {
    if (h == NULL || (clock == NULL && width != 0) || (payload == NULL && payload_len != 0) ||
        (buf == NULL && cap != 0))
        return CC_EINVAL;
    if (h->type == 0 || h->type > CC_FRAME_TYPE_MAX || !level_ok(h->type, h->level))
        return CC_EINVAL;
    if ((uint64_t)width > UINT32_MAX) return CC_EINVAL;
    if (h->type == CC_FRAME_MESSAGE && (width == 0 || (uint64_t)h->sender >= (uint64_t)width))
        return CC_EINVAL;

    unsigned flags = base != NULL ? CC_FRAME_FLAG_SPARSE : 0;
    size_t entries = width;
    if (base != NULL) {
        entries = 0;
        for (size_t k = 0; k < width; k++) entries += clock[k] != base[k];
    }
    size_t size = cc_frame_size(flags, entries, payload_len);
    if (size == 0) return CC_EINVAL;
    if (size > cap) return CC_EFULL;

    /* buf must not overlap clock, base or payload. */
    wire_wr32(buf, (uint32_t)(size - 4));
    buf[4] = CC_FRAME_VERSION;
    buf[5] = h->type;
    buf[6] = h->level;
    buf[7] = (uint8_t)flags;
    wire_wr32(buf + 8, h->sender);
    wire_wr32(buf + 12, (uint32_t)width);
    wire_wr32(buf + 16, (uint32_t)entries);
    wire_wr32(buf + 20, h->kind);
    wire_wr64(buf + 24, h->seq);

    uint8_t *p = buf + CC_FRAME_HEADER_SIZE;
    if (base == NULL) {
        if (WIRE_LE) {
            if (width != 0) memcpy(p, clock, width * sizeof *clock);
        } else {
            for (size_t k = 0; k < width; k++) wire_wr64(p + k * DENSE_ENTRY, clock[k]);
        }
        p += width * DENSE_ENTRY;
    } else {
        for (size_t k = 0; k < width; k++) {
            if (clock[k] == base[k]) continue;
            wire_wr32(p, (uint32_t)k);
            wire_wr64(p + 4, clock[k]);
            p += SPARSE_ENTRY;
        }
    }
    if (payload_len != 0) memcpy(p, payload, payload_len);
    return (int64_t)size;
}

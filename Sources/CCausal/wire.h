/* Private to the C core: the little-endian fields of the wire format
 * (cc_frame.h), for the frame codec and the node, which writes and reads
 * its own frames directly on the per-message paths. Not installed.
 *
 * One load or store each: memcpy of a fixed size compiles to a single move
 * (unaligned access is fine), whereas byte-wise code through a uint8_t
 * pointer, which may alias anything, keeps the compiler from merging the
 * bytes and cost several instructions per field. */
#ifndef CC_WIRE_H
#define CC_WIRE_H

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WIRE_LE 1 /* the host's order is the wire's: dense clocks may be copied whole */
#else
#define WIRE_LE 0
#endif

static inline void wire_wr32(uint8_t *p, uint32_t v) {
#if !WIRE_LE
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, 4);
}

static inline void wire_wr64(uint8_t *p, uint64_t v) {
#if !WIRE_LE
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

static inline uint32_t wire_rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if !WIRE_LE
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t wire_rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if !WIRE_LE
    v = __builtin_bswap64(v);
#endif
    return v;
}

#endif

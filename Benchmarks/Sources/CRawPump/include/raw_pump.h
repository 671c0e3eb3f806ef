/* A raw TCP pump over libuv: the transport benchmark's baseline.
 *
 * Two loops on two threads, joined by one loopback TCP connection. Any one
 * thread hands frames to the sending loop through a single-producer ring
 * (copied in, the loop woken with uv_async_send, as a node's broadcasts are);
 * the sending loop writes them in batches with one uv_write in flight; the
 * receiving loop splits the byte stream at each frame's little-endian 32-bit
 * length prefix (the causal frame's layout) and hands each frame to a
 * callback. No clocks, no log, no acknowledgements, no delivery engine: what
 * moving the same bytes costs by itself.
 *
 * Steady state allocates nothing: the ring and the read buffer are sized at
 * start.
 *
 * Thread safety: raw_pump_send from one producer thread at a time;
 * raw_pump_start and raw_pump_stop from that thread too (never a loop's);
 * the callback runs on the receiving loop's thread. */
#ifndef RAW_PUMP_H
#define RAW_PUMP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct raw_pump raw_pump;

/** A received frame, valid during the call only. */
typedef void (*raw_pump_on_frame)(void *ctx, const uint8_t *frame, size_t size);

/** Starts both loops and connects them over 127.0.0.1. frame_size is the
 * size of every frame (length prefix included, at least 4); ring is the number
 * of frames that may wait for the socket (rounded up to a power of two).
 * Returns 0, or a negative libuv error code. */
int raw_pump_start(size_t frame_size, size_t ring, raw_pump_on_frame on_frame, void *ctx, raw_pump **out);

/** Copies one frame (frame_size bytes) into the ring and wakes the sending
 * loop. Returns 0, or -1 when the ring is full (retry later). */
int raw_pump_send(raw_pump *p, const void *frame);

/** Closes the connection, stops both loops, joins their threads, frees. */
void raw_pump_stop(raw_pump *p);

#ifdef __cplusplus
}
#endif
#endif

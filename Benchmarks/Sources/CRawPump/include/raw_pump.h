/* A raw TCP pump over libuv: the transport benchmark's baseline.
 *
 * The two ends of one loopback TCP connection, each on a libuv loop running on
 * a thread of its own, meant for two processes as the two nodes of the
 * benchmark are. The sending end (raw_pump_connect) takes frames from one
 * producer thread through a single-producer ring (copied in, the loop woken
 * with uv_async_send, as a node's broadcasts are) and writes what the ring
 * holds with one uv_write in flight; the receiving end (raw_pump_listen)
 * splits the byte stream at each frame's little-endian 32-bit length prefix
 * (the causal frame's layout) and hands each frame to a callback. No clocks,
 * no log, no acknowledgements, no delivery engine: what moving the same bytes
 * costs by itself.
 *
 * Steady state allocates nothing: the ring and the read buffer are sized at
 * start.
 *
 * Thread safety: raw_pump_send from one producer thread at a time; the other
 * functions from that thread too (never a loop's); the callback runs on the
 * receiving loop's thread. */
#ifndef RAW_PUMP_H
#define RAW_PUMP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct raw_pump_sender raw_pump_sender;
typedef struct raw_pump_receiver raw_pump_receiver;

/** A received frame, valid during the call only. */
typedef void (*raw_pump_on_frame)(void *ctx, const uint8_t *frame, size_t size);

/** Starts a receiving end listening on 127.0.0.1 (a port the system picks,
 * stored in *port); it reads the first connection it accepts (one sender).
 * Frames must be smaller than 256 KiB. Returns 0, or a negative libuv error
 * code. */
int raw_pump_listen(raw_pump_on_frame on_frame, void *ctx, raw_pump_receiver **out, uint16_t *port);

/** Closes the receiving end, stops its loop, joins its thread, frees it. */
void raw_pump_receiver_stop(raw_pump_receiver *r);

/** Starts a sending end connected to 127.0.0.1:port. frame_size is the size
 * of every frame (length prefix included, at least 4); ring is the number of
 * frames that may wait for the socket (rounded up to a power of two).
 * Returns 0 once connected, or a negative libuv error code. */
int raw_pump_connect(uint16_t port, size_t frame_size, size_t ring, raw_pump_sender **out);

/** Copies one frame (frame_size bytes) into the ring and wakes the sending
 * loop. Returns 0, or -1 when the ring is full (retry later). */
int raw_pump_send(raw_pump_sender *s, const void *frame);

/** Closes the connection, stops the sending loop, joins its thread, frees. */
void raw_pump_sender_stop(raw_pump_sender *s);

#ifdef __cplusplus
}
#endif
#endif

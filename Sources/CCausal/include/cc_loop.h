/* A libuv event loop running on a thread of its own.
 *
 * cc_loop_start creates the loop and its thread; cc_loop_stop closes every
 * handle the loop owns (memory is freed only in libuv close callbacks), lets
 * uv_run return, joins the thread and frees the loop. cc_loop_call runs a
 * function on the loop thread; it is how other threads reach loop state.
 *
 * Thread safety: cc_loop_call and cc_loop_on_thread from any thread;
 * cc_loop_stop from any thread but the loop's own, once. */
#ifndef CC_LOOP_H
#define CC_LOOP_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cc_loop cc_loop;
typedef void (*cc_loop_fn)(void *ctx);

/** Starts a loop on a new thread. call_capacity bounds the cc_loop_call
 * requests in flight (0 picks 1024). Returns CC_OK, CC_ENOMEM or CC_ESYS. */
int cc_loop_start(size_t call_capacity, cc_loop **out);

/** Stops the loop: runs the calls accepted before the stop began (in
 * order), then the close hooks of everything still open on it (inboxes close
 * and are freed), waits for their close callbacks, joins the thread and frees
 * the loop. Calls made once the stop has begun, from any thread or from those
 * last calls, fail with CC_ECLOSED. Returns CC_OK, or CC_EINVAL when called
 * from the loop thread (CC_ESYS if a handle outlived the close: the loop is
 * then left allocated rather than freed under it). */
int cc_loop_stop(cc_loop *loop);

/** Any thread. Runs fn(ctx) on the loop thread soon, in call order.
 * Returns CC_OK, CC_EFULL (too many calls in flight) or CC_ECLOSED; on an
 * error fn is never called. */
int cc_loop_call(cc_loop *loop, cc_loop_fn fn, void *ctx);

/** True on the loop's own thread. */
bool cc_loop_on_thread(const cc_loop *loop);

/** The underlying uv_loop_t (as void * to keep uv.h out of this header).
 * Use only on the loop thread. */
void *cc_loop_uv(cc_loop *loop);

#ifdef __cplusplus
}
#endif
#endif

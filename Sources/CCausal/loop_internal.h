/* Private to the C core: what the things that live on a cc_loop (cc_inbox,
 * cc_node) need from it beyond cc_loop.h. Not installed. */
#ifndef CC_LOOP_INTERNAL_H
#define CC_LOOP_INTERNAL_H

#include "cc_loop.h"

/* Things that live on a loop register a close hook so that cc_loop_stop can
 * close them. Loop thread only. */
typedef struct cc__loop_member {
    struct cc__loop_member *prev, *next;
    void (*close)(struct cc__loop_member *self); /* must eventually call cc__loop_member_closed */
} cc__loop_member;
void cc__loop_join(cc_loop *loop, cc__loop_member *m);
void cc__loop_member_closed(cc_loop *loop, cc__loop_member *m);

/* Any thread (but not from inside another cc_loop_call of the same loop,
 * which would wait for itself). Runs fn(ctx) on the loop thread and waits
 * for it: at once on the loop thread, else through cc_loop_call. Returns
 * CC_OK once fn ran, with its result in *result; else CC_EFULL, CC_ECLOSED
 * or CC_ESYS, and fn never ran. An accepted call always runs, even when the
 * loop begins to stop meanwhile. */
int cc__loop_call_sync(cc_loop *loop, int (*fn)(void *ctx), void *ctx, int *result);

#endif

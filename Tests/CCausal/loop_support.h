/* What the loop and inbox tests share: bounded waits, a call that holds
 * the loop thread, a loop per test, and a recorder of an inbox's callbacks. */
#ifndef CC_LOOP_SUPPORT_H
#define CC_LOOP_SUPPORT_H

#include <semaphore.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cc_inbox.h"
#include "cc_loop.h"

enum { WAIT_S = 60 };

/* sem_wait with a deadline; returns 1 when posted, 0 on timeout. */
int wait_sem(sem_t *s);
double now_s(void);
void post_sem(void *ctx); /* a cc_loop_fn */

/* Blocks the loop thread until `unblock` is posted (bounded). */
typedef struct blocker {
    sem_t entered, unblock;
} blocker;
void block_loop(void *ctx); /* a cc_loop_fn */

/* Runs fn on a loop of its own, started and stopped around it. */
void with_loop(void (*fn)(cc_loop *loop));

enum { LOG_MAX = 64 };

typedef struct event {
    char what; /* 'e' emit, 'd' deliver, 'r' reject */
    uint32_t sender;
    uint8_t level;
    int code;
    uint64_t seq; /* from the payload */
    uint64_t clock[8];
} event;

/* Records an inbox's callbacks (on the loop thread). */
typedef struct recorder {
    event log[LOG_MAX];
    size_t n, delivered, rejected, target; /* post `done` when delivered + rejected reaches target */
    int off_thread;
    cc_loop *loop;
    sem_t done, closed;
    _Atomic int closed_called;
} recorder;

void recorder_init(recorder *r, cc_loop *loop, size_t target);
void recorder_destroy(recorder *r);
cc_inbox_callbacks recorder_callbacks(recorder *r);

/* Fills a buffer: sender, level, clock (n entries), payload = seq. NULL when none is free. */
cc_inbox_msg *new_msg(cc_inbox *in, uint32_t sender, uint8_t level, const uint64_t *clock, size_t n,
                      uint64_t seq);

#endif

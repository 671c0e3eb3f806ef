/* A node's lifecycle on its loop: the set-up of its handles, the close and
 * the free. Loop thread only.
 *
 * Closing: cc__node_begin_close marks the node closed (no producer gets in any
 * more), waits until none is inside, takes and delivers what producers
 * handed over (a broadcast that returned CC_OK is never dropped), saves the
 * state folder, then closes every connection and handle. The node is freed
 * in the close callback of the last handle (finish_close), after the
 * `closed` callback. */
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "cc_error.h"
#include "node_internal.h"

static void wait_for_users(cc_node *n) {
    unsigned spins = 0;
    while (atomic_load(&n->users) != 0) {
        if (++spins > 64)
            sched_yield();
    }
}

static void on_loop_stop(cc__loop_member *m) {
    cc__node_begin_close((cc_node *)((char *)m - offsetof(cc_node, member)));
}

/* ---- set-up ------------------------------------------------------------- */

int cc__node_setup(void *arg) {
    cc_node *n = arg;
    uv_loop_t *uv = cc_loop_uv(n->loop);
    if (uv_async_init(uv, &n->async, cc__node_on_async) != 0)
        return CC_ESYS;
    n->async.data = n;
    n->handles++;
    uv_timer_init(uv, &n->links.timer);
    n->links.timer.data = n;
    n->handles++;
    uv_prepare_init(uv, &n->prepare);
    n->prepare.data = n;
    n->handles++;
    uv_prepare_start(&n->prepare, cc__node_on_prepare);
    int rc = cc__link_listen(n);
    if (rc != CC_OK) {
        /* Close what was opened; the node is freed in the last close
         * callback, and no callback of the caller's runs. */
        node_mark(n, NODE_START_FAILED);
        cc__node_begin_close(n);
        return rc;
    }
    uint64_t now = uv_now(uv);
    for (uint32_t s = 0; s < n->width; s++) {
        if (n->peers[s])
            n->peers[s]->dial_at = now;
    }
    uv_timer_start(&n->links.timer, cc__link_on_timer, n->links.tick_ms, n->links.tick_ms);
    n->member.close = on_loop_stop;
    node_mark(n, NODE_JOINED);
    cc__loop_join(n->loop, &n->member);
    if (node_is(n, NODE_CLOSING)) {
        node_mark(n, NODE_START_FAILED); /* the loop is closing and cc__loop_join closed us */
        return CC_ECLOSED;
    }
    cc__node_emit(n, CC_NODE_LISTENING, UINT32_MAX, 0, "listening", NULL);
    if (n->replay.on)
        uv_async_send(&n->async); /* deliveries start on the loop, after cc_node_start returns */
    for (uint32_t s = n->cfg.self + 1; s < n->width && !node_is(n, NODE_CLOSING); s++) {
        if (n->peers[s])
            cc__link_dial(n, n->peers[s]);
    }
    return CC_OK;
}

/* ---- close -------------------------------------------------------------- */

void cc__node_free(cc_node *n) {
    for (uint32_t s = 0; s < n->width; s++)
        free(n->peers ? n->peers[s] : NULL);
    free(n->peers);
    free(n->clocks.send);
    free(n->folder.durable);
    free(n->handed.clock);
    free(n->replay.clock);
    if (n->confirm.clock) {
        free(n->confirm.clock);
        uv_mutex_destroy(&n->confirm.lock);
    }
    free(n->clocks.scratch);
    for (size_t i = 0; i < n->clocks.nretired; i++)
        free(n->clocks.retired[i]);
    free(n->clocks.retired);
    free(n->log.entries);
    free(n->ring.big);
    while (n->log.chunks) {
        node_chunk *ck = n->log.chunks;
        n->log.chunks = ck->next;
        free(ck);
    }
    while (n->rx.all) {
        rxmsg *r = n->rx.all;
        n->rx.all = r->all;
        free(r);
    }
    if (n->folder.log_fd >= 0)
        close(n->folder.log_fd);
    free(n->folder.dir);
    cc_delivery_destroy(&n->engine);
    cc_queue_destroy(&n->queue);
    free(n->ring.cells);
    free(n);
}

static void finish_close(cc_node *n) {
    wait_for_users(n);
    if (node_is(n, NODE_JOINED))
        cc__loop_member_closed(n->loop, &n->member);
    /* Nobody can push any more: fail the requests still queued (their
     * callers wait on them). Broadcast cells die with the ring. */
    node_req *r;
    while ((r = cc_queue_pop(&n->queue)) != NULL) {
        r->rc = CC_ECLOSED;
        uv_sem_post(&r->done);
    }
    if (!node_is(n, NODE_START_FAILED)) {
        cc__node_save_state(n);
        if (n->cb.closed)
            n->cb.closed(n->cb.ctx);
    }
    cc__node_free(n);
}

void cc__node_release(cc_node *n) {
    if (--n->handles == 0 && node_is(n, NODE_CLOSING))
        finish_close(n);
}

void cc__node_handle_closed(uv_handle_t *h) {
    cc__node_release(h->data);
}

void cc__node_begin_close(cc_node *n) {
    if (node_is(n, NODE_CLOSING | NODE_CLOSE_BEGUN))
        return;
    atomic_fetch_or(&n->life, NODE_CLOSE_BEGUN | NODE_CLOSED); /* seq-cst: see node_closed */
    wait_for_users(n); /* nobody is inside uv_async_send on our handle, nor pushing, any more */
    if (!node_is(n, NODE_START_FAILED)) {
        /* A broadcast that returned CC_OK is not dropped: it is stamped,
         * recorded, delivered here and written to the peers still up (with
         * a state folder it is resent after a restart if that write is cut). */
        size_t sends = 0;
        cc__node_process_queue(n, SIZE_MAX, 1, &sends);
        if (sends && !node_is(n, NODE_CLOSING))
            cc__link_flush_all(n);
        if (!node_is(n, NODE_CLOSING))
            cc__node_save_state(n);
    }
    node_mark(n, NODE_CLOSING);
    for (node_conn *c = n->links.conns; c; c = c->next)
        cc__link_close(c, 0, 0, NULL);
    uv_handle_t *own[4] = {(uv_handle_t *)&n->links.listener, (uv_handle_t *)&n->links.timer,
                           (uv_handle_t *)&n->prepare, (uv_handle_t *)&n->async};
    for (int i = 0; i < 4; i++) {
        if (own[i]->data == n && !uv_is_closing(own[i]))
            uv_close(own[i], cc__node_handle_closed);
    }
    /* handles never reaches zero above while the async handle is open, so
     * finish_close runs from the last close callback. */
}


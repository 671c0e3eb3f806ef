#include "raw_pump.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define BATCH 64 /* frames per uv_write at most, as a node batches its writes */
#define LINE 64

struct raw_pump {
    size_t frame_size, mask;
    uint8_t *ring; /* (mask + 1) frames */
    /* The producer writes head, the sending loop tail: each on its own line
     * so that the two threads do not bounce one line at every frame. */
    _Alignas(LINE) _Atomic uint64_t head; /* frames published */
    _Alignas(LINE) _Atomic uint64_t tail; /* frames written to the socket (their slots free again) */
    _Alignas(LINE) raw_pump_on_frame on_frame;
    void *ctx;
    uv_sem_t connected; /* posted by the connect and the accept */
    int status;

    /* sending loop */
    uv_loop_t send_loop;
    uv_thread_t send_thread;
    uv_async_t wake, send_stop;
    uv_tcp_t out;
    uv_connect_t connect;
    uv_write_t write;
    uv_buf_t iov[2];
    int busy, up;
    uint64_t writing; /* tail once the write in flight completes */

    /* receiving loop */
    uv_loop_t recv_loop;
    uv_thread_t recv_thread;
    uv_async_t recv_stop;
    uv_tcp_t listener, in;
    uint8_t *rbuf;
    size_t rlen, rcap;
};

static uint32_t rd32(const uint8_t *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* ---- sending loop ---------------------------------------------------------------- */

static void flush(raw_pump *p);

static void on_written(uv_write_t *w, int status) {
    raw_pump *p = w->data;
    p->busy = 0;
    if (status < 0)
        return;
    /* Release: the producer may reuse the slots once it sees the new tail. */
    atomic_store_explicit(&p->tail, p->writing, memory_order_release);
    flush(p);
}

/* Writes the frames published so far, in one run of the ring or two when it
 * wraps, BATCH at most; one write in flight at a time. */
static void flush(raw_pump *p) {
    if (p->busy || !p->up)
        return;
    uint64_t tail = atomic_load_explicit(&p->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&p->head, memory_order_acquire);
    uint64_t n = head - tail;
    if (n == 0)
        return;
    if (n > BATCH)
        n = BATCH;
    size_t first = (size_t)(tail & p->mask), slots = p->mask + 1;
    size_t run = first + n <= slots ? (size_t)n : slots - first;
    unsigned k = 0;
    p->iov[k++] = uv_buf_init((char *)p->ring + first * p->frame_size, (unsigned)(run * p->frame_size));
    if (run < n)
        p->iov[k++] = uv_buf_init((char *)p->ring, (unsigned)((n - run) * p->frame_size));
    p->writing = tail + n;
    p->busy = 1;
    if (uv_write(&p->write, (uv_stream_t *)&p->out, p->iov, k, on_written) != 0)
        p->busy = 0;
}

static void on_wake(uv_async_t *a) {
    flush(a->data);
}

static void on_connect(uv_connect_t *c, int status) {
    raw_pump *p = c->data;
    if (status < 0)
        p->status = status;
    else {
        uv_tcp_nodelay(&p->out, 1);
        p->up = 1;
        flush(p);
    }
    uv_sem_post(&p->connected);
}

static void on_send_stop(uv_async_t *a) {
    raw_pump *p = a->data;
    uv_close((uv_handle_t *)&p->out, NULL);
    uv_close((uv_handle_t *)&p->wake, NULL);
    uv_close((uv_handle_t *)&p->send_stop, NULL);
}

static void run_send(void *arg) {
    raw_pump *p = arg;
    uv_run(&p->send_loop, UV_RUN_DEFAULT);
}

/* ---- receiving loop -------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    raw_pump *p = h->data;
    (void)hint;
    *buf = uv_buf_init((char *)p->rbuf + p->rlen, (unsigned)(p->rcap - p->rlen));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    raw_pump *p = s->data;
    (void)buf;
    if (nread <= 0)
        return;
    p->rlen += (size_t)nread;
    size_t off = 0;
    while (p->rlen - off >= 4) {
        size_t size = (size_t)rd32(p->rbuf + off) + 4;
        if (p->rlen - off < size)
            break;
        p->on_frame(p->ctx, p->rbuf + off, size);
        off += size;
    }
    memmove(p->rbuf, p->rbuf + off, p->rlen - off);
    p->rlen -= off;
}

static void on_accept(uv_stream_t *listener, int status) {
    raw_pump *p = listener->data;
    if (status < 0 || uv_tcp_init(&p->recv_loop, &p->in) != 0) {
        p->status = status < 0 ? status : UV_EINVAL;
        uv_sem_post(&p->connected);
        return;
    }
    p->in.data = p;
    if (uv_accept(listener, (uv_stream_t *)&p->in) == 0) {
        uv_tcp_nodelay(&p->in, 1);
        uv_read_start((uv_stream_t *)&p->in, on_alloc, on_read);
    }
    uv_sem_post(&p->connected);
}

static void on_recv_stop(uv_async_t *a) {
    raw_pump *p = a->data;
    uv_close((uv_handle_t *)&p->listener, NULL);
    uv_close((uv_handle_t *)&p->in, NULL);
    uv_close((uv_handle_t *)&p->recv_stop, NULL);
}

static void run_recv(void *arg) {
    raw_pump *p = arg;
    uv_run(&p->recv_loop, UV_RUN_DEFAULT);
}

/* ---- the pump ---------------------------------------------------------------------- */

int raw_pump_start(size_t frame_size, size_t ring, raw_pump_on_frame on_frame, void *ctx, raw_pump **out) {
    if (frame_size < 4 || !on_frame || !out)
        return UV_EINVAL;
    size_t slots = 1;
    while (slots < ring)
        slots <<= 1;
    raw_pump *p = aligned_alloc(LINE, (sizeof *p + LINE - 1) / LINE * LINE);
    if (!p)
        return UV_ENOMEM;
    memset(p, 0, sizeof *p);
    p->frame_size = frame_size;
    p->mask = slots - 1;
    p->on_frame = on_frame;
    p->ctx = ctx;
    p->rcap = frame_size * BATCH * 4 > 262144 ? frame_size * BATCH * 4 : 262144;
    p->ring = malloc(slots * frame_size);
    p->rbuf = malloc(p->rcap);
    if (!p->ring || !p->rbuf || uv_sem_init(&p->connected, 0) != 0) {
        free(p->ring);
        free(p->rbuf);
        free(p);
        return UV_ENOMEM;
    }

    /* Everything is set up before the threads start: after that each loop's
     * handles belong to its thread (uv_async_send excepted). */
    struct sockaddr_in addr;
    int rc = uv_ip4_addr("127.0.0.1", 0, &addr);
    rc = rc ? rc : uv_loop_init(&p->recv_loop);
    rc = rc ? rc : uv_tcp_init(&p->recv_loop, &p->listener);
    rc = rc ? rc : uv_tcp_bind(&p->listener, (const struct sockaddr *)&addr, 0);
    p->listener.data = p;
    rc = rc ? rc : uv_listen((uv_stream_t *)&p->listener, 4, on_accept);
    struct sockaddr_storage bound;
    int len = sizeof bound;
    rc = rc ? rc : uv_tcp_getsockname(&p->listener, (struct sockaddr *)&bound, &len);
    rc = rc ? rc : uv_async_init(&p->recv_loop, &p->recv_stop, on_recv_stop);
    p->recv_stop.data = p;
    rc = rc ? rc : uv_loop_init(&p->send_loop);
    rc = rc ? rc : uv_tcp_init(&p->send_loop, &p->out);
    rc = rc ? rc : uv_async_init(&p->send_loop, &p->wake, on_wake);
    rc = rc ? rc : uv_async_init(&p->send_loop, &p->send_stop, on_send_stop);
    p->wake.data = p->send_stop.data = p->connect.data = p->write.data = p->out.data = p;
    rc = rc ? rc : uv_tcp_connect(&p->connect, &p->out, (const struct sockaddr *)&bound, on_connect);
    rc = rc ? rc : uv_thread_create(&p->recv_thread, run_recv, p);
    rc = rc ? rc : uv_thread_create(&p->send_thread, run_send, p);
    if (rc != 0)
        return rc; /* set-up failures leak: a benchmark that cannot start stops anyway */
    uv_sem_wait(&p->connected);
    uv_sem_wait(&p->connected);
    if (p->status != 0)
        return p->status;
    *out = p;
    return 0;
}

int raw_pump_send(raw_pump *p, const void *frame) {
    uint64_t head = atomic_load_explicit(&p->head, memory_order_relaxed);
    /* Acquire: the loop has finished reading a slot before it moved tail past it. */
    if (head - atomic_load_explicit(&p->tail, memory_order_acquire) > p->mask)
        return -1;
    memcpy(p->ring + (size_t)(head & p->mask) * p->frame_size, frame, p->frame_size);
    atomic_store_explicit(&p->head, head + 1, memory_order_release);
    uv_async_send(&p->wake);
    return 0;
}

void raw_pump_stop(raw_pump *p) {
    uv_async_send(&p->send_stop);
    uv_thread_join(&p->send_thread);
    uv_async_send(&p->recv_stop);
    uv_thread_join(&p->recv_thread);
    uv_loop_close(&p->send_loop);
    uv_loop_close(&p->recv_loop);
    uv_sem_destroy(&p->connected);
    free(p->ring);
    free(p->rbuf);
    free(p);
}

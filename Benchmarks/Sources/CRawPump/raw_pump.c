#include "raw_pump.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define LINE 64
#define RBUF (256u << 10) /* read buffer of the receiving end */

static uint32_t rd32(const uint8_t *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* ---- sending end ------------------------------------------------------------------ */

struct raw_pump_sender {
    size_t frame_size, mask;
    uint8_t *ring; /* (mask + 1) frames */
    /* The producer writes head, the sending loop tail: each on its own line
     * so that the two threads do not bounce one line at every frame. */
    _Alignas(LINE) _Atomic uint64_t head; /* frames published */
    _Alignas(LINE) _Atomic uint64_t tail; /* frames written to the socket (their slots free again) */
    _Alignas(LINE) uv_sem_t connected;
    int status;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake, stop;
    uv_tcp_t out;
    uv_connect_t connect;
    uv_write_t write;
    uv_buf_t iov[2];
    int busy, up;
    uint64_t writing; /* tail once the write in flight completes */
};

static void flush(raw_pump_sender *s);

static void on_written(uv_write_t *w, int status) {
    raw_pump_sender *s = w->data;
    s->busy = 0;
    if (status < 0)
        return;
    /* Release: the producer may reuse the slots once it sees the new tail. */
    atomic_store_explicit(&s->tail, s->writing, memory_order_release);
    flush(s);
}

/* Writes every frame published so far, in one run of the ring or two when it
 * wraps; one write in flight at a time (as a node writes its log). */
static void flush(raw_pump_sender *s) {
    if (s->busy || !s->up)
        return;
    uint64_t tail = atomic_load_explicit(&s->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&s->head, memory_order_acquire);
    uint64_t n = head - tail;
    if (n == 0)
        return;
    size_t first = (size_t)(tail & s->mask), slots = s->mask + 1;
    size_t run = first + n <= slots ? (size_t)n : slots - first;
    unsigned k = 0;
    s->iov[k++] = uv_buf_init((char *)s->ring + first * s->frame_size, (unsigned)(run * s->frame_size));
    if (run < n)
        s->iov[k++] = uv_buf_init((char *)s->ring, (unsigned)((n - run) * s->frame_size));
    s->writing = tail + n;
    s->busy = 1;
    if (uv_write(&s->write, (uv_stream_t *)&s->out, s->iov, k, on_written) != 0)
        s->busy = 0;
}

static void on_wake(uv_async_t *a) {
    flush(a->data);
}

static void on_connect(uv_connect_t *c, int status) {
    raw_pump_sender *s = c->data;
    if (status < 0) {
        s->status = status;
    } else {
        uv_tcp_nodelay(&s->out, 1);
        s->up = 1;
        flush(s);
    }
    uv_sem_post(&s->connected);
}

static void on_sender_stop(uv_async_t *a) {
    raw_pump_sender *s = a->data;
    uv_close((uv_handle_t *)&s->out, NULL);
    uv_close((uv_handle_t *)&s->wake, NULL);
    uv_close((uv_handle_t *)&s->stop, NULL);
}

static void run_sender(void *arg) {
    raw_pump_sender *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

int raw_pump_connect(uint16_t port, size_t frame_size, size_t ring, raw_pump_sender **out) {
    if (frame_size < 4 || !out)
        return UV_EINVAL;
    size_t slots = 1;
    while (slots < ring)
        slots <<= 1;
    raw_pump_sender *s = aligned_alloc(LINE, (sizeof *s + LINE - 1) / LINE * LINE);
    if (!s)
        return UV_ENOMEM;
    memset(s, 0, sizeof *s);
    s->frame_size = frame_size;
    s->mask = slots - 1;
    s->ring = malloc(slots * frame_size);
    if (!s->ring || uv_sem_init(&s->connected, 0) != 0) {
        free(s->ring);
        free(s);
        return UV_ENOMEM;
    }
    /* Everything is set up before the thread starts: after that the loop's
     * handles belong to it (uv_async_send excepted). */
    struct sockaddr_in addr;
    int rc = uv_ip4_addr("127.0.0.1", port, &addr);
    rc = rc ? rc : uv_loop_init(&s->loop);
    rc = rc ? rc : uv_tcp_init(&s->loop, &s->out);
    rc = rc ? rc : uv_async_init(&s->loop, &s->wake, on_wake);
    rc = rc ? rc : uv_async_init(&s->loop, &s->stop, on_sender_stop);
    s->wake.data = s->stop.data = s->connect.data = s->write.data = s->out.data = s;
    rc = rc ? rc : uv_tcp_connect(&s->connect, &s->out, (const struct sockaddr *)&addr, on_connect);
    rc = rc ? rc : uv_thread_create(&s->thread, run_sender, s);
    if (rc != 0)
        return rc; /* set-up failures leak: a benchmark that cannot start stops anyway */
    uv_sem_wait(&s->connected);
    if (s->status != 0)
        return s->status;
    *out = s;
    return 0;
}

int raw_pump_send(raw_pump_sender *s, const void *frame) {
    uint64_t head = atomic_load_explicit(&s->head, memory_order_relaxed);
    /* Acquire: the loop has finished reading a slot before it moved tail past it. */
    if (head - atomic_load_explicit(&s->tail, memory_order_acquire) > s->mask)
        return -1;
    memcpy(s->ring + (size_t)(head & s->mask) * s->frame_size, frame, s->frame_size);
    atomic_store_explicit(&s->head, head + 1, memory_order_release);
    uv_async_send(&s->wake);
    return 0;
}

void raw_pump_sender_stop(raw_pump_sender *s) {
    uv_async_send(&s->stop);
    uv_thread_join(&s->thread);
    uv_loop_close(&s->loop);
    uv_sem_destroy(&s->connected);
    free(s->ring);
    free(s);
}

/* ---- receiving end ---------------------------------------------------------------- */

struct raw_pump_receiver {
    raw_pump_on_frame on_frame;
    void *ctx;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop;
    uv_tcp_t listener, in;
    int accepted; /* `in` holds the one connection read */
    uint8_t *rbuf;
    size_t rlen, rcap;
};

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    raw_pump_receiver *r = h->data;
    (void)hint;
    *buf = uv_buf_init((char *)r->rbuf + r->rlen, (unsigned)(r->rcap - r->rlen));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    raw_pump_receiver *r = st->data;
    (void)buf;
    if (nread < 0) {
        uv_read_stop(st); /* the sender went away */
        return;
    }
    r->rlen += (size_t)nread;
    size_t off = 0;
    while (r->rlen - off >= 4) {
        size_t size = (size_t)rd32(r->rbuf + off) + 4;
        if (r->rlen - off < size)
            break;
        r->on_frame(r->ctx, r->rbuf + off, size);
        off += size;
    }
    memmove(r->rbuf, r->rbuf + off, r->rlen - off);
    r->rlen -= off;
}

static void on_accept(uv_stream_t *listener, int status) {
    raw_pump_receiver *r = listener->data;
    if (status < 0)
        return;
    if (r->accepted || uv_tcp_init(&r->loop, &r->in) != 0)
        return; /* one sender: later connections are left unanswered */
    r->in.data = r;
    r->accepted = 1;
    if (uv_accept(listener, (uv_stream_t *)&r->in) == 0) {
        uv_tcp_nodelay(&r->in, 1);
        uv_read_start((uv_stream_t *)&r->in, on_alloc, on_read);
    }
}

static void on_receiver_stop(uv_async_t *a) {
    raw_pump_receiver *r = a->data;
    uv_close((uv_handle_t *)&r->listener, NULL);
    if (r->accepted)
        uv_close((uv_handle_t *)&r->in, NULL);
    uv_close((uv_handle_t *)&r->stop, NULL);
}

static void run_receiver(void *arg) {
    raw_pump_receiver *r = arg;
    uv_run(&r->loop, UV_RUN_DEFAULT);
}

int raw_pump_listen(raw_pump_on_frame on_frame, void *ctx, raw_pump_receiver **out, uint16_t *port) {
    if (!on_frame || !out || !port)
        return UV_EINVAL;
    raw_pump_receiver *r = calloc(1, sizeof *r);
    if (!r)
        return UV_ENOMEM;
    r->on_frame = on_frame;
    r->ctx = ctx;
    r->rcap = RBUF;
    r->rbuf = malloc(r->rcap);
    if (!r->rbuf) {
        free(r);
        return UV_ENOMEM;
    }
    struct sockaddr_in addr;
    int rc = uv_ip4_addr("127.0.0.1", 0, &addr);
    rc = rc ? rc : uv_loop_init(&r->loop);
    rc = rc ? rc : uv_tcp_init(&r->loop, &r->listener);
    r->listener.data = r;
    rc = rc ? rc : uv_tcp_bind(&r->listener, (const struct sockaddr *)&addr, 0);
    rc = rc ? rc : uv_listen((uv_stream_t *)&r->listener, 4, on_accept);
    struct sockaddr_storage bound;
    int len = sizeof bound;
    rc = rc ? rc : uv_tcp_getsockname(&r->listener, (struct sockaddr *)&bound, &len);
    rc = rc ? rc : uv_async_init(&r->loop, &r->stop, on_receiver_stop);
    r->stop.data = r;
    rc = rc ? rc : uv_thread_create(&r->thread, run_receiver, r);
    if (rc != 0)
        return rc; /* set-up failures leak: a benchmark that cannot start stops anyway */
    *port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    *out = r;
    return 0;
}

void raw_pump_receiver_stop(raw_pump_receiver *r) {
    uv_async_send(&r->stop);
    uv_thread_join(&r->thread);
    uv_loop_close(&r->loop);
    free(r->rbuf);
    free(r);
}

/* The state folder of a node, so that a member survives its own restart.
 * Loop thread only (and cc_node_start, before the node is shared).
 *
 *   log    the member's own broadcast frames, appended as they are stamped
 *          and before they are delivered or sent (one writev per batch). A
 *          sequence once used is never reused: on reload the sequence
 *          continues after the last frame of the log.
 *   state  written to state.tmp and renamed over state: magic, version,
 *          self, width, own sequence, oldest sequence still held, then the
 *          handed-over clock (cc_node.h: what the application has taken
 *          over; without `confirm`, what the deliver callback returned from).
 *          Written before acknowledgements leave, and ACK and HELLO values
 *          come from the clock as last written, so a peer never discards
 *          what a restart would forget. An own broadcast stays in the log
 *          until this clock, as written, covers it (cc__node_trim).
 *
 * On reload the engine's clock is the handed-over clock; own broadcasts
 * after it are delivered again from the log (cc__node_replay_next), peers'
 * are resent by them. What was handed over but not yet written is thus
 * delivered again after a crash; nothing is lost.
 *
 * The log is cut back to nothing when every own broadcast has been
 * acknowledged and handed over, and rewritten with only the held entries
 * when it grows past LOG_REWRITE while some are held. Files are not fsync'ed:
 * the folder survives the process, not the machine losing power. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cc_error.h"
#include "cc_frame.h"
#include "node_internal.h"

#define STATE_MAGIC 0x314e4343u /* "CCN1" */
#define STATE_VERSION 1u
#define STATE_HEAD 32 /* magic, version, self, width, seq, log_lo */
#define LOG_REWRITE (16u << 20)

static int path_of(const cc_node *n, const char *name, char *out, size_t cap) {
    int r = snprintf(out, cap, "%s/%s", n->folder.dir, name);
    return r > 0 && (size_t)r < cap;
}

static int write_all(int fd, const uint8_t *p, size_t len) {
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return 0;
        p += w;
        len -= (size_t)w;
    }
    return 1;
}

/* libuv's uv_buf_t is laid out as a struct iovec on Unix (it says it may be
 * cast to one): the runs cc__node_gather makes go straight to writev. */
_Static_assert(sizeof(uv_buf_t) == sizeof(struct iovec) &&
                   offsetof(uv_buf_t, base) == offsetof(struct iovec, iov_base) &&
                   offsetof(uv_buf_t, len) == offsetof(struct iovec, iov_len),
               "uv_buf_t is an iovec");

/* Writes the held own frames [from, to] to fd, IOV_BATCH runs of frames per call. */
#define IOV_BATCH 16
static int write_entries(cc_node *n, int fd, uint64_t from, uint64_t to, uint64_t *bytes) {
    uint64_t seq = from;
    while (seq <= to) {
        uv_buf_t iov[IOV_BATCH];
        size_t want = 0;
        unsigned k = cc__node_gather(n, &seq, to, iov, 0, IOV_BATCH, &want);
        if (k == 0)
            continue; /* nothing encoded in the rest */
        ssize_t w = writev(fd, (const struct iovec *)iov, (int)k);
        if (w < 0 || (size_t)w != want) {
            /* A short write (disk full, say): write the rest plainly. */
            size_t done = w < 0 ? 0 : (size_t)w;
            for (unsigned i = 0; i < k; i++) {
                if (done >= iov[i].len) {
                    done -= iov[i].len;
                    continue;
                }
                if (!write_all(fd, (uint8_t *)iov[i].base + done, iov[i].len - done))
                    return 0;
                done = 0;
            }
        }
        *bytes += want;
    }
    return 1;
}

int cc__node_append_log(cc_node *n, uint64_t from, uint64_t to) {
    if (n->folder.log_fd < 0 || from > to)
        return CC_OK;
    return write_entries(n, n->folder.log_fd, from, to, &n->folder.log_bytes) ? CC_OK : CC_ESYS;
}

static int write_state(cc_node *n) {
    char tmp[4096], dst[4096];
    if (!path_of(n, "state.tmp", tmp, sizeof tmp) || !path_of(n, "state", dst, sizeof dst))
        return CC_EINVAL;
    size_t len = STATE_HEAD + (size_t)n->width * 8;
    uint8_t *buf = malloc(len); /* once per batch, and only with a state folder */
    if (!buf)
        return CC_ENOMEM;
    wire_wr32(buf, STATE_MAGIC);
    wire_wr32(buf + 4, STATE_VERSION);
    wire_wr32(buf + 8, n->cfg.self);
    wire_wr32(buf + 12, n->width);
    wire_wr64(buf + 16, n->log.hi);
    wire_wr64(buf + 24, n->log.lo);
    for (uint32_t k = 0; k < n->width; k++)
        wire_wr64(buf + STATE_HEAD + (size_t)k * 8, cc__node_handed(n, k));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int ok = fd >= 0 && write_all(fd, buf, len);
    if (fd >= 0)
        ok = close(fd) == 0 && ok;
    free(buf);
    if (!ok || rename(tmp, dst) != 0)
        return CC_ESYS;
    return CC_OK;
}

/* Replaces the log file with the entries still held. */
static void rewrite_log(cc_node *n) {
    char tmp[4096], dst[4096];
    if (!path_of(n, "log.tmp", tmp, sizeof tmp) || !path_of(n, "log", dst, sizeof dst))
        return;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    uint64_t bytes = 0;
    if (n->log.lo <= n->log.hi && !write_entries(n, fd, n->log.lo, n->log.hi, &bytes)) {
        close(fd);
        unlink(tmp);
        return;
    }
    if (rename(tmp, dst) != 0) {
        close(fd);
        unlink(tmp);
        return;
    }
    close(n->folder.log_fd);
    n->folder.log_fd = fd;
    n->folder.log_bytes = bytes;
}

/* Takes what the application confirmed (cc_node_confirm) into `handed`,
 * capped at what was delivered. */
static void take_confirmed(cc_node *n) {
    /* Cleared before the read: a confirmation after it wakes the loop again. */
    if (!atomic_exchange(&n->confirm.dirty, 0))
        return;
    uv_mutex_lock(&n->confirm.lock);
    uint32_t w = n->confirm.width < n->width ? n->confirm.width : n->width;
    for (uint32_t k = 0; k < w; k++) {
        uint64_t v = n->confirm.clock[k];
        uint64_t delivered = k == n->cfg.self ? n->handed.own : n->engine.local[k];
        if (v > delivered)
            v = delivered;
        if (v > n->handed.clock[k])
            n->handed.clock[k] = v;
    }
    uv_mutex_unlock(&n->confirm.lock);
    n->handed.moves++;
}

void cc__node_save_state(cc_node *n) {
    if (!n->folder.dir)
        return;
    if (n->handed.clock)
        take_confirmed(n);
    /* Without `confirm` every delivery moves the handed-over clock. */
    uint64_t moves = n->progress + n->handed.moves;
    if (n->folder.saved && n->folder.saved_moves == moves && n->folder.saved_lo == n->log.lo &&
        n->folder.saved_hi == n->log.hi)
        return; /* nothing new since the last write */
    if (write_state(n) != CC_OK)
        return; /* keep acknowledging only what the folder holds */
    n->folder.saved = 1;
    n->folder.saved_moves = moves;
    n->folder.saved_lo = n->log.lo;
    n->folder.saved_hi = n->log.hi;
    uint64_t own = n->folder.durable[n->cfg.self];
    for (uint32_t k = 0; k < n->width; k++)
        n->folder.durable[k] = cc__node_handed(n, k);
    /* Own entries the folder now records as handed over may go. */
    if (n->folder.durable[n->cfg.self] != own && !node_is(n, NODE_CLOSING))
        cc__node_trim(n);
    /* The state now records the sequence, so the log may shrink. */
    if (n->folder.log_fd >= 0 && n->folder.log_bytes > 0) {
        if (n->log.lo > n->log.hi) {
            if (ftruncate(n->folder.log_fd, 0) == 0)
                n->folder.log_bytes = 0;
        } else if (n->folder.log_bytes > LOG_REWRITE) {
            rewrite_log(n);
        }
    }
}

static uint8_t *read_file(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) == 0 && (buf = malloc(st.st_size ? (size_t)st.st_size : 1)) != NULL) {
        size_t got = 0;
        while (got < (size_t)st.st_size) {
            ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        *len = got;
    }
    close(fd);
    return buf;
}

/* Reloads the folder into a node that is not running yet: the handed-over
 * clock (as the engine's clock), the own sequence and the own broadcasts
 * still held (all of them count as unacknowledged until the peers' HELLOs
 * say what they have), and starts the re-delivery of those after the
 * handed-over clock. */
int cc__node_load_state(cc_node *n) {
    if (!n->folder.dir)
        return CC_OK;
    if (mkdir(n->folder.dir, 0700) != 0 && errno != EEXIST)
        return CC_ESYS;
    char path[4096];
    if (!path_of(n, "state", path, sizeof path))
        return CC_EINVAL;
    uint64_t seq = 0, log_lo = 1;
    size_t len = 0;
    uint8_t *st = read_file(path, &len);
    if (st) {
        if (len < STATE_HEAD || wire_rd32(st) != STATE_MAGIC || wire_rd32(st + 4) != STATE_VERSION ||
            wire_rd32(st + 8) != n->cfg.self || len != STATE_HEAD + (size_t)wire_rd32(st + 12) * 8) {
            free(st);
            return CC_EINVAL; /* another member's folder, or not ours at all */
        }
        uint32_t w = wire_rd32(st + 12);
        int rc = cc__node_grow(n, w);
        if (rc != CC_OK) {
            free(st);
            return rc;
        }
        seq = wire_rd64(st + 16);
        log_lo = wire_rd64(st + 24);
        /* The engine is fresh (nothing pending, nobody waiting), so its
         * clock can simply be set. */
        for (uint32_t k = 0; k < w; k++)
            n->engine.local[k] = wire_rd64(st + STATE_HEAD + (size_t)k * 8);
        free(st);
    }

    if (!path_of(n, "log", path, sizeof path))
        return CC_EINVAL;
    uint8_t *lg = read_file(path, &len);
    size_t good = 0;
    if (lg) {
        /* First pass: the last sequence used (frames appended after the
         * last state write count too) and where the complete frames end. */
        cc_frame f;
        int64_t r;
        for (size_t off = 0; (r = cc_frame_parse(lg + off, len - off, n->cfg.max_frame, &f)) > 0;
             off += (size_t)r) {
            if (f.type != CC_FRAME_MESSAGE || f.sender != n->cfg.self)
                break;
            if (f.seq > seq)
                seq = f.seq;
            good = off + (size_t)r;
        }
        /* Second pass: reload what may still be unacknowledged. */
        uint64_t lo = seq >= n->cfg.send_window ? seq - n->cfg.send_window + 1 : 1;
        if (lo < log_lo)
            lo = log_lo;
        uint64_t first = 0, prev = 0;
        uint32_t wide = 0;
        for (size_t off = 0; off < good; off += f.size) {
            cc_frame_parse(lg + off, good - off, n->cfg.max_frame, &f);
            if (f.seq < lo || f.seq > seq || (prev && f.seq != prev + 1) ||
                f.payload_len > n->cfg.max_payload)
                continue;
            if (f.width > wide)
                wide = f.width;
            /* The ring cell is the window's count; the frame is the log's copy. */
            node_bcast *b = cc__node_take_cell(n);
            log_entry *e = node_entry(n, f.seq);
            e->b = b;
            e->ck = NULL;
            e->len = 0;
            uint8_t *p = b ? cc__node_reserve(n, e, f.size) : NULL;
            if (!p) {
                free(lg); /* node_free takes the rest: nothing is shared yet */
                return CC_ENOMEM;
            }
            memcpy(p, lg + off, f.size);
            b->length = f.payload_len;
            b->kind = f.kind;
            b->level = f.level;
            if (!first)
                first = f.seq;
            prev = f.seq;
        }
        free(lg);
        /* A frame is delivered again through the engine: as wide as it. */
        int rc = first && prev == seq ? cc__node_grow(n, wide) : CC_OK;
        if (rc != CC_OK)
            return rc;
        if (first && prev == seq) {
            n->log.lo = first;
        } else {
            /* Nothing held (or a gap we cannot fill): release what was loaded. */
            if (first) {
                cc__node_release_log(n, first, prev);
                cc__node_publish_released(n);
            }
            n->log.lo = seq + 1;
        }
    } else {
        n->log.lo = seq + 1;
    }
    n->log.hi = seq;
    /* Own broadcasts after the handed-over clock are delivered again, from
     * the log. The log holds them (entries stay until handed over and
     * written); if a damaged or older folder does not, those it lacks count
     * as delivered: they cannot be had again. */
    uint64_t *local = n->engine.local;
    uint32_t self = n->cfg.self;
    if (local[self] > seq)
        local[self] = seq;
    if (local[self] < seq && (n->log.lo > n->log.hi || n->log.lo > local[self] + 1))
        local[self] = n->log.lo <= n->log.hi ? n->log.lo - 1 : seq;
    n->handed.own = local[self];
    if (n->handed.clock)
        memcpy(n->handed.clock, local, (size_t)n->width * sizeof(uint64_t));
    if (local[self] < seq) {
        n->replay.on = 1;
        cc__node_replay_next(n); /* the engine is fresh: the first goes in */
    }

    /* Continue the log after its last complete frame (a torn tail from a
     * crash is cut off). */
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return CC_ESYS;
    if (ftruncate(fd, (off_t)good) != 0) {
        close(fd);
        return CC_ESYS;
    }
    n->folder.log_fd = fd;
    n->folder.log_bytes = good;
    memcpy(n->folder.durable, n->engine.local, (size_t)n->width * sizeof(uint64_t));
    return CC_OK;
}

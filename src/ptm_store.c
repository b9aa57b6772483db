/* The store: the handle on the segment, its lock and writing mark, the
 * numbering and recording of events, and the counters mod_status reads.
 * See ptm_store.h for the design and ptm_store_int.h for the layout. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <apr_strings.h>
#include "ptm_store_int.h"
#include "ptm_test_hook.h"

void ptm_store_format(void *base, apr_size_t size, apr_size_t ring)
{
    hdr_t *h = base;
    uint64_t off;
    uint32_t cap, hcap;
    int s;

    memset(h, 0, sizeof(*h));
    /* About one type slot per 2 KiB per stream: the arena is the limit
     * that matters; this only bounds the tables. */
    cap = (uint32_t)(size / 2048);
    if (cap < 16) {
        cap = 16;
    }
    for (hcap = 32; hcap < 2 * cap; hcap *= 2) {
    }
    off = ALIGN8(sizeof(*h));
    for (s = 0; s < 2; s++) {
        h->map[s].cap = cap;
        h->map[s].hcap = hcap;
        h->map[s].slots = off;
        off += ALIGN8((uint64_t)cap * sizeof(slot_t));
        h->map[s].index = off;
        memset((char *)base + off, 0, (size_t)hcap * sizeof(uint32_t));
        off += ALIGN8((uint64_t)hcap * sizeof(uint32_t));
    }
    /* The ring takes the end of the segment, the arena what is between. */
    ring &= ~(apr_size_t)7;
    if (ring > size || size - ring < off) {
        ring = 0;
    }
    h->ring = size - ring;
    h->ring_size = ring;
    h->arena = off;
    h->arena_size = h->ring > off ? h->ring - off : 0;
    h->next_n = 1;
    h->ring_first_n = 1;
    h->size = size;
    /* run_gen only ever grows in a segment; starting it from the clock
     * (and a counter) keeps a remembered generation of an earlier format
     * from matching this one (ptm_store_run_seen). */
    {
        static uint32_t formats;

        h->run_gen = ((uint64_t)apr_time_now() << 12)
                     + (__atomic_add_fetch(&formats, 1, __ATOMIC_RELAXED)
                        & 0xfff);
    }
    /* Event ids are <epoch>-<n>: a state made anew must not repeat the
     * ids of the one it replaces. */
    h->epoch = (uint64_t)apr_time_now();
    h->version = LAYOUT_VERSION;
    h->magic = MAGIC;
}

int ptm_store_is_formatted(const void *base, apr_size_t size,
                           apr_size_t ring)
{
    const hdr_t *h = base;

    return h->magic == MAGIC && h->version == LAYOUT_VERSION
           && h->size == size
           && (ring == PTM_STORE_RING_ANY
               || h->ring_size == (ring & ~(apr_size_t)7));
}

void ptm_store_use_sync(ptm_store_t *st, ptm_sync_t *board)
{
    st->sync = board;
}

void ptm_store_use_lock(ptm_store_t *st, ptm_lock_t *lock)
{
    st->lock = lock;
}

void ptm_store_close_files(ptm_store_t *st)
{
    ptm_ndjson_file_close(&st->files[0]);
    ptm_ndjson_file_close(&st->files[1]);
}

ptm_store_t *ptm_store_attach(void *base, apr_global_mutex_t *mutex,
                              apr_pool_t *p)
{
    static uint64_t handles;
    ptm_store_t *st = apr_pcalloc(p, sizeof(*st));

    st->base = base;
    st->hdr = base;
    /* Checked against the mapping by whoever attaches (ptm_store_is_
     * formatted, ptm_store_open_file); kept here because the header's
     * copy is data that a reader without the lock must not trust. */
    st->size = st->hdr->size;
    st->mutex = mutex;
    st->id = __atomic_add_fetch(&handles, 1, __ATOMIC_RELAXED);
    ptm_ndjson_file_init(&st->files[0]);
    ptm_ndjson_file_init(&st->files[1]);
    st->pool = p;
    return st;
}

/* The signals that end a prefork child at once (SIGHUP of `apachectl
 * restart`, SIGTERM, ...) wait while a thread holds the lock.  A child
 * ended between taking the mutex and APR's noting that it took it leaves
 * the mutex "owner died" although its pool cleanup already counted it
 * out: APR 1.7 then counts it out a second time for the next locker, the
 * shared reference count of its pthread mutex reaches zero and the mutex
 * is destroyed under everyone (every request 500 until httpd is stopped
 * and started).  SIGKILL still ends a holder: APR recovers from that. */
static __thread sigset_t held_mask;
/* 1 once this thread was found blocking them all already: the threads of
 * worker and event block every signal for good (their child's main thread
 * handles them), and two system calls per lock are then saved.  prefork's
 * process, which takes them, blocks and unblocks each time. */
static __thread int always_held;

static const int ending_signals[] = {
    SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGWINCH
};

static void hold_signals(void)
{
    sigset_t ending;
    size_t i;

    if (always_held) {
        return;
    }
    sigemptyset(&ending);
    for (i = 0; i < sizeof(ending_signals) / sizeof(ending_signals[0]); i++) {
        sigaddset(&ending, ending_signals[i]);
    }
    pthread_sigmask(SIG_BLOCK, &ending, &held_mask);
}

static void release_signals(void)
{
    size_t i;

    if (always_held) {
        return;
    }
    pthread_sigmask(SIG_SETMASK, &held_mask, NULL);
    for (i = 0; i < sizeof(ending_signals) / sizeof(ending_signals[0]); i++) {
        if (sigismember(&held_mask, ending_signals[i]) != 1) {
            return;
        }
    }
    always_held = 1;
}

/* A state left mid-update: the writing mark set (a process died inside
 * an update), or the view's generation odd, which no lock holder leaves
 * behind (every change of the view is inside the mark) but which would
 * send every reader to the lock. */
static int torn(const hdr_t *h)
{
    return h->writing || (__atomic_load_n(&h->view_gen, __ATOMIC_RELAXED) & 1);
}

static void give_lock(ptm_store_t *st)
{
    if (st->mutex) {
        apr_global_mutex_unlock(st->mutex);
    }
    if (st->lock) {
        ptm_lock_give(st->lock);
    }
    if (st->mutex || st->lock) {
        release_signals();
    }
}

/* The front lock first (ptm_lock.h: the global mutex behind it is then
 * free whenever it is taken, unless a process without the front lock
 * holds it), then the global mutex. */
static apr_status_t take_lock(ptm_store_t *st, int wait)
{
    apr_status_t rv;

    if (!st->mutex && !st->lock) {
        return torn(st->hdr) ? ptm_repair_locked(st) : APR_SUCCESS;
    }
    hold_signals();
    if (st->lock && (rv = ptm_lock_take(st->lock, wait)) != APR_SUCCESS) {
        release_signals();
        return rv;
    }
    if (st->mutex) {
        rv = wait ? apr_global_mutex_lock(st->mutex)
                  : apr_global_mutex_trylock(st->mutex);
        if (rv != APR_SUCCESS) {
            if (st->lock) {
                ptm_lock_give(st->lock);
            }
            release_signals();
            return rv;
        }
    }
    if (torn(st->hdr) && (rv = ptm_repair_locked(st)) != APR_SUCCESS) {
        give_lock(st);
        return rv;
    }
    return APR_SUCCESS;
}

apr_status_t ptm_store_lock(ptm_store_t *st)
{
    return take_lock(st, 1);
}

apr_status_t ptm_store_trylock(ptm_store_t *st)
{
    return take_lock(st, 0);
}

/* Bracket every change to the segment.  The stores are ordered so that a
 * process killed anywhere in between leaves `writing` set. */
void ptm_store_begin_locked(hdr_t *h, int stream, uint64_t seq)
{
    h->pending_stream = (uint32_t)stream;
    h->pending_seq = seq;
    __atomic_store_n(&h->writing, 1, __ATOMIC_SEQ_CST);
}

void ptm_store_end_locked(hdr_t *h)
{
    __atomic_store_n(&h->writing, 0, __ATOMIC_SEQ_CST);
}

void ptm_store_unlock(ptm_store_t *st)
{
    give_lock(st);
}

apr_status_t ptm_store_event(ptm_store_t *st, const ptm_store_event_t *ev,
                             uint64_t *seq)
{
    static const char *const stream_part[2] = {
        ",\"stream\":\"site\"", ",\"stream\":\"run\""
    };
    hdr_t *h = st->hdr;
    map_t *m = &h->map[ev->stream];
    char head[32];
    size_t head_len;
    struct iovec iov[5];
    uint64_t n, id, payload_len = 0, freed = 0;
    uint32_t hash = 0;
    int slot = -1;
    apr_status_t rv;
    /* Group commit: the line's ticket and file, the descriptor its wait
     * flushes with (ours when dup'd), and why there is none. */
    int group = ev->sync && st->sync && (ev->fd >= 0 || ev->path);
    ptm_sync_line_t line;
    uint64_t ticket = 0;
    int wait_fd = -1, own_fd = 0;
    apr_status_t sync_rv = APR_SUCCESS;
    struct stat fd_st;

    if (group && ev->fd >= 0
        && (fstat(ev->fd, &fd_st) != 0 || !S_ISREG(fd_st.st_mode))) {
        /* The caller's file, whose identity cannot change while open:
         * anything but a regular file is flushed under the lock, as
         * without a board (fdatasync then says what it says). */
        group = 0;
    }
    if ((rv = ptm_store_lock(st)) != APR_SUCCESS) {
        return rv;
    }
    if (h->run_gen != ev->run_gen) {
        rv = PTM_STORE_STALE;
        goto out;
    }
    /* Seqs are int64 in every JSON reader: never past that, never
     * wrapped (only a planted file could bring the counter near it).
     * INT64_MAX itself is never given out: a repair takes a counter there
     * for one no state reaches (ptm_repair.c). */
    if (h->seq[ev->stream] >= INT64_MAX - 1) {
        rv = APR_FROM_OS_ERROR(EOVERFLOW);
        goto out;
    }
    n = h->seq[ev->stream] + 1;
    memcpy(head, "{\"seq\":", 7);
    head_len = 7 + ptm_fmt_u64(head + 7, n);
    if (ev->make_current) {
        hash = ptm_view_hash(ev->key, ev->key_len);
        slot = ptm_view_find_locked(st, ev->stream, ev->key, ev->key_len, hash);
        if (slot < 0 && m->count == m->cap) {
            rv = PTM_STORE_FULL;
            goto out;
        }
        payload_len = ev->key_len + head_len + ev->ts_len + ev->body_len;
        /* The value this one replaces is released before the new one is
         * claimed, so only the difference has to fit.  Nothing moves
         * before the write: compaction waits until it has succeeded. */
        if (slot >= 0) {
            freed = BLOB_TOTAL(blob_hdr(st, slots(st, ev->stream)[slot].blob)
                               ->len);
        }
        if ((rv = ptm_arena_fits_locked(st, payload_len, freed)) != APR_SUCCESS) {
            goto out;
        }
    }
    /* From here a death leaves `writing` set, and the repair skips seq
     * `n`: it may already be in the file. */
    ptm_store_begin_locked(h, ev->stream, n);
    iov[0].iov_base = head;
    iov[0].iov_len = head_len;
    iov[1].iov_base = (void *)ev->ts_part;
    iov[1].iov_len = ev->ts_len;
    iov[2].iov_base = (void *)stream_part[ev->stream];
    iov[2].iov_len = strlen(stream_part[ev->stream]);
    iov[3].iov_base = (void *)ev->body_part;
    iov[3].iov_len = ev->body_len;
    iov[4].iov_base = "\n";
    iov[4].iov_len = 1;
    if (ev->fd >= 0 || ev->path) {
        const char *step = "write";

        if (group) {
            ticket = ptm_sync_ticket_locked(st->sync, ev->stream);
        }
        ptm_ndjson_tail_t *tail = st->lock ? ptm_lock_tail(st->lock,
                                                           ev->stream)
                                           : NULL;

        rv = ev->fd >= 0
             ? ptm_ndjson_append_tail(ev->fd, iov, 5, ev->sync && !group,
                                      tail)
             : ptm_ndjson_file_append_tail(&st->files[ev->stream], ev->path,
                                           iov, 5, ev->sync && !group, tail,
                                           &step, ev->pool);
        if (rv != APR_SUCCESS) {
            ptm_store_end_locked(h);              /* the append left nothing behind */
            if (ev->failed_step) {
                *ev->failed_step = step;
            }
            if (ev->fd >= 0 && APR_STATUS_IS_ENOENT(rv)) {
                rv = PTM_STORE_STALE;   /* deleted since it was opened */
            }
            goto out;
        }
    }
    if (group) {
        /* The wait flushes with a descriptor of the line's own file: the
         * caller's, or a copy of this process's (another thread may close
         * or replace that one as soon as the lock is let go). */
        if (ev->fd >= 0) {
            wait_fd = ev->fd;
            ptm_sync_written_locked(st->sync, &line, ev->stream, ticket,
                                    fd_st.st_dev, fd_st.st_ino);
        }
        else if (st->files[ev->stream].fd < 0) {
            /* Not a regular file (it is not kept open): nothing to
             * flush, as fdatasync would say. */
            sync_rv = APR_EINVAL;
        }
        else if ((wait_fd = fcntl(st->files[ev->stream].fd,
                                  F_DUPFD_CLOEXEC, 0)) < 0) {
            sync_rv = APR_FROM_OS_ERROR(errno);
        }
        else {
            own_fd = 1;
            ptm_sync_written_locked(st->sync, &line, ev->stream, ticket,
                                    st->files[ev->stream].dev,
                                    st->files[ev->stream].ino);
        }
    }
    /* The line is written: from here on nothing can fail.  Atomic stores:
     * server-status reads the counters without the lock. */
    __atomic_store_n(&h->seq[ev->stream], n, __ATOMIC_RELAXED);
    __atomic_store_n(&h->events[ev->stream], h->events[ev->stream] + 1,
                     __ATOMIC_RELAXED);
    id = h->next_n;
    if (ev->make_current) {
        char *b;

        /* Readers of the view copy it without the lock: only this part
         * of the section, memory only, is one they wait for. */
        ptm_seq_write_begin(&h->view_gen);
        if (slot < 0) {
            b = ptm_view_append_locked(st, ev->stream, hash, ev->key_len,
                                  payload_len - ev->key_len);
            slot = (int)m->count - 1;
        }
        else {
            slot_t *sl = &slots(st, ev->stream)[slot];

            m->bytes -= sl->key_len + sl->env_len;
            ptm_arena_release_locked(st, sl->blob);
            ptm_arena_make_room_locked(st, payload_len);
            sl->blob = ptm_arena_claim_locked(st, payload_len, OWNER_FREE);
            sl->env_len = (uint32_t)(payload_len - ev->key_len);
            m->bytes += payload_len;
            b = arena(st) + sl->blob;
        }
        memcpy(b, ev->key, ev->key_len);
        b += ev->key_len;
        memcpy(b, head, head_len);
        PTM_TEST_HOOK("view:copy", 1);
        memcpy(b + head_len, ev->ts_part, ev->ts_len);
        memcpy(b + head_len + ev->ts_len, ev->body_part, ev->body_len);
        ptm_view_own_locked(st, ev->stream, (uint32_t)slot);
        /* The id counter moves with the view: a snapshot holds every
         * event before the next_n read with it (ptm_store_current_at). */
        __atomic_store_n(&h->next_n, id + 1, __ATOMIC_RELAXED);
        ptm_seq_write_end(&h->view_gen);
        PTM_TEST_HOOK("view:done", 1);
    }
    else {
        __atomic_store_n(&h->next_n, id + 1, __ATOMIC_RELAXED);
    }
    /* Its id, and the ring (which never fails: it drops the oldest). */
    {
        rec_t r;
        uint64_t line_len;

        memset(&r, 0, sizeof(r));
        r.n = id;
        r.accepted = ev->accepted;
        r.ts = ev->ts_us;
        r.seq = n;
        r.tie = ev->stream == PTM_STREAM_RUN ? ev->tie : 0;
        r.flags = (uint32_t)ev->stream | (ev->stored ? REC_STORED : 0);
        r.type_len = (uint32_t)ev->key_len;
        line_len = head_len + ev->ts_len + iov[2].iov_len + ev->body_len;
        /* Beyond 32 bits: too big to hold (ptm_ring_append_locked). */
        r.line_len = line_len < UINT32_MAX / 2 ? (uint32_t)line_len
                                               : UINT32_MAX / 2;
        ptm_ring_append_locked(st, &r, ev->key, iov, 4);
        if (ev->id) {
            *ev->id = r.n;
        }
    }
    ptm_store_end_locked(h);
    *seq = n;
out:
    if (rv != APR_SUCCESS && ev->fd >= 0 && ev->path) {
        /* A refused event leaves no trace, not even the empty file its
         * open created (nor one opened for a run that has ended since);
         * under the lock, so no writer is mid-append. */
        ptm_ndjson_discard_if_empty(ev->fd, ev->path);
    }
    ptm_store_unlock(st);
    if (group && rv == APR_SUCCESS) {
        /* Recorded; answered once a flush that began after the write is
         * done, without the lock (group commit, ptm_sync.h). */
        rv = sync_rv == APR_SUCCESS
             ? ptm_sync_wait(st->sync, &line, wait_fd) : sync_rv;
        if (own_fd) {
            close(wait_fd);
        }
        if (rv != APR_SUCCESS && ev->failed_step) {
            *ev->failed_step = "sync";
        }
    }
    return rv;
}

/* ---- counters ------------------------------------------------------------ */

static const int status_codes[PTM_STORE_NSTATUS] = {
    400, 404, 405, 409, 413, 422, 500, 503, 507
};

void ptm_store_count_answer(ptm_store_t *st, int status)
{
    int i;

    for (i = 0; i < PTM_STORE_NSTATUS; i++) {
        if (status_codes[i] == status) {
            __atomic_fetch_add(&st->hdr->answers[i], 1, __ATOMIC_RELAXED);
            return;
        }
    }
}

void ptm_store_count_write_error(ptm_store_t *st)
{
    __atomic_fetch_add(&st->hdr->write_errors, 1, __ATOMIC_RELAXED);
}

int ptm_store_status_code(int i)
{
    return i >= 0 && i < PTM_STORE_NSTATUS ? status_codes[i] : 0;
}

apr_status_t ptm_store_stats(ptm_store_t *st, ptm_store_stats_t *stats,
                             apr_pool_t *p)
{
    hdr_t *h = st->hdr;
    ptm_buf_t run;
    size_t obj_len, id_len, dir_len;
    apr_status_t rv;
    int s;

    memset(stats, 0, sizeof(*stats));
    /* A writer stuck on a hung disk holds the lock for as long as the disk
     * hangs: the page an admin opens to see why must not hang with it.
     * The run's strings are copied without the lock (a consistent copy,
     * ptm_view_read, which here never waits for the lock either); only
     * the ring's oldest record needs it. */
    ptm_buf_init(&run, p, 512);
    rv = ptm_store_run_read(st, &run, &obj_len, &id_len, &dir_len, 0);
    if (rv == APR_SUCCESS) {
        stats->run_active = 1;
        stats->run_obj = apr_pstrmemdup(p, run.data, obj_len);
        stats->run_id = apr_pstrmemdup(p, run.data + obj_len, id_len);
    }
    else {
        stats->run_active = rv == PTM_STORE_NORUN
                            ? 0 : ptm_store_run_active(st);
    }
    rv = ptm_store_trylock(st);
    if (APR_STATUS_IS_EBUSY(rv)) {
        stats->busy = 1;
    }
    else if (rv != APR_SUCCESS) {
        return rv;
    }
    for (s = 0; s < 2; s++) {
        stats->seq[s] = __atomic_load_n(&h->seq[s], __ATOMIC_RELAXED);
        stats->events[s] = __atomic_load_n(&h->events[s], __ATOMIC_RELAXED);
        stats->types[s] = __atomic_load_n(&h->map[s].count, __ATOMIC_RELAXED);
    }
    stats->bytes_used = h->arena + __atomic_load_n(&h->live,
                                                   __ATOMIC_RELAXED);
    stats->bytes_total = h->ring;       /* the ring is reported apart */
    stats->repairs = __atomic_load_n(&h->repairs, __ATOMIC_RELAXED);
    stats->write_errors = __atomic_load_n(&h->write_errors, __ATOMIC_RELAXED);
    for (s = 0; s < PTM_STORE_NSTATUS; s++) {
        stats->answers[s] = __atomic_load_n(&h->answers[s], __ATOMIC_RELAXED);
    }
    stats->epoch = h->epoch;
    stats->next_n = __atomic_load_n(&h->next_n, __ATOMIC_RELAXED);
    stats->recent_events = __atomic_load_n(&h->ring_count, __ATOMIC_RELAXED);
    stats->recent_bytes = __atomic_load_n(&h->ring_bytes, __ATOMIC_RELAXED);
    stats->recent_size = h->ring_size;
    stats->view_retries = __atomic_load_n(&h->view_retries,
                                          __ATOMIC_RELAXED);
    stats->view_locked = __atomic_load_n(&h->view_locked, __ATOMIC_RELAXED);
    stats->lock_waits = st->lock ? ptm_lock_waits(st->lock) : 0;
    if (stats->busy) {
        return APR_SUCCESS;
    }
    stats->recent_oldest = ptm_ring_oldest_locked(st);
    ptm_store_unlock(st);
    return APR_SUCCESS;
}

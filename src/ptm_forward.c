/* Forwarding: the shared board and the forwarder; see ptm_forward.h.
 *
 * The forwarder is the only writer of the pipe, of the position and of
 * the board's byte count and line log, so they need no lock: the
 * position and the counters are atomic stores and adds that readers
 * (server-status, the parent) load without waiting.  The store's lock is
 * taken only to copy a batch of events from the ring (ptm_store_follow),
 * never while writing to the pipe. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include "ptm_forward.h"
#include "ptm_store_fwd.h"
#include "ptm_shm.h"

typedef struct {
    uint64_t n;
    uint64_t end;           /* the board's byte count after the line */
} log_t;

struct ptm_fwd_board_t {
    uint32_t lease;         /* pid of the forwarder; 0: none */
    uint32_t program;       /* pid of the program; 0: not running */
    uint64_t restarts;
    uint64_t deaths;        /* exits seen by the parent */
    uint64_t handled;       /* exits the forwarder rewound for */
    uint64_t consumed;      /* least bytes taken by a program at an exit
                             * not yet handled */
    uint64_t written;       /* bytes written to the pipe */
    int64_t head;           /* see ptm_fwd_board_stats_t */
    uint32_t torn;          /* a line was left half written */
    uint32_t err;
    int32_t err_num;
    uint32_t cold;          /* 1: a new parent (ptm_fwd_board_create): the
                             * last lines handed over may have died with
                             * the program of the httpd before it */
    int64_t err_at;
    uint64_t high;          /* every n below was handed over once */
    uint64_t log_count;     /* lines logged; the last PTM_FWD_LOG kept */
    log_t log[PTM_FWD_LOG];
};

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

size_t ptm_fwd_board_size(void)
{
    return sizeof(ptm_fwd_board_t);
}

ptm_fwd_board_t *ptm_fwd_board_init(void *mem)
{
    memset(mem, 0, sizeof(ptm_fwd_board_t));
    return mem;
}

apr_status_t ptm_fwd_board_create(ptm_fwd_board_t **out, apr_pool_t *p)
{
    void *base;
    apr_status_t rv;

    if ((rv = ptm_shm_anon(&base, sizeof(ptm_fwd_board_t), p))
        != APR_SUCCESS) {
        return rv;
    }
    *out = ptm_fwd_board_init(base);
    (*out)->cold = 1;
    return APR_SUCCESS;
}

/* The sizes of the held events before `before`, oldest first (the ring's
 * filter: under the lock, only a note). */
typedef struct {
    uint64_t before;
    apr_array_header_t *seen;   /* uint64_t pairs: n, bytes */
} cold_t;

static int cold_note(void *ctx, const ptm_recent_t *ev)
{
    cold_t *c = ctx;

    if (ev->n < c->before) {
        uint64_t *e = apr_array_push(c->seen);

        e[0] = ev->n;
        e[1] = ev->line_len + 48;       /* the line with its id */
    }
    return 0;
}

uint64_t ptm_fwd_cold_rewind(ptm_store_t *st, uint64_t next_n,
                             uint64_t margin, apr_pool_t *p)
{
    ptm_recent_info_t info;
    ptm_ring_pos_t pos;
    cold_t c;
    uint64_t sum = 0, n = 0;
    int truncated, i;

    c.before = next_n;
    c.seen = apr_array_make(p, 1024, 2 * sizeof(uint64_t));
    pos.n = 0;
    pos.off = PTM_RING_NOWHERE;
    pos.at = 0;
    do {
        if (ptm_store_follow(&info, NULL, &truncated, st, &pos, 0, cold_note,
                             &c, p) != APR_SUCCESS) {
            return 0;
        }
    } while (truncated);
    /* Back from the newest handed over while the lines fit the margin. */
    for (i = c.seen->nelts - 1; i >= 0; i--) {
        const uint64_t *e = (const uint64_t *)c.seen->elts + 2 * i;

        if (sum + e[1] > margin && n) {
            break;
        }
        sum += e[1];
        n = e[0];
    }
    return n;
}

void ptm_fwd_program_started(ptm_fwd_board_t *b, pid_t pid, int restart)
{
    STORE(b->program, (uint32_t)pid);
    if (restart) {
        __atomic_add_fetch(&b->restarts, 1, __ATOMIC_RELAXED);
    }
}

void ptm_fwd_program_exited(ptm_fwd_board_t *b, int status, uint64_t unread)
{
    /* `written` first, `unread` measured after it (by the caller, before
     * this call? no: the caller measured it first).  Either way bytes
     * only come in while nobody reads, so written - unread can only be
     * less than what the program took: the rewind goes further back,
     * never short. */
    uint64_t w = LOAD(b->written);
    uint64_t taken = w > unread ? w - unread : 0;

    STORE(b->program, 0);
    if (LOAD(b->handled) == LOAD(b->deaths) || taken < LOAD(b->consumed)) {
        STORE(b->consumed, taken);
    }
    __atomic_add_fetch(&b->deaths, 1, __ATOMIC_SEQ_CST);
    ptm_fwd_note_error(b, PTM_FWD_ERR_EXIT, status, apr_time_now());
}

void ptm_fwd_note_error(ptm_fwd_board_t *b, ptm_fwd_err_e code, int num,
                        apr_time_t when)
{
    STORE(b->err_num, num);
    STORE(b->err_at, when);
    STORE(b->err, (uint32_t)code);
}

pid_t ptm_fwd_program_pid(ptm_fwd_board_t *b)
{
    return (pid_t)LOAD(b->program);
}

int ptm_fwd_lease(ptm_fwd_board_t *b, pid_t pid)
{
    uint32_t holder = LOAD(b->lease);

    if (holder == (uint32_t)pid) {
        return 1;
    }
    if (holder != 0 && (kill((pid_t)holder, 0) == 0 || errno != ESRCH)) {
        return 0;
    }
    /* Free, or its holder died without giving it back (kill -9). */
    return __atomic_compare_exchange_n(&b->lease, &holder, (uint32_t)pid, 0,
                                       __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

void ptm_fwd_unlease(ptm_fwd_board_t *b, pid_t pid)
{
    uint32_t holder = (uint32_t)pid;

    __atomic_compare_exchange_n(&b->lease, &holder, 0, 0, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
}

void ptm_fwd_board_stats(ptm_fwd_board_t *b, ptm_fwd_board_stats_t *out)
{
    out->program = (pid_t)LOAD(b->program);
    out->restarts = LOAD(b->restarts);
    out->forwarder = (pid_t)LOAD(b->lease);
    out->head = LOAD(b->head);
    out->written = LOAD(b->written);
    out->err = (ptm_fwd_err_e)LOAD(b->err);
    out->err_num = LOAD(b->err_num);
    out->err_at = LOAD(b->err_at);
}

const char *ptm_fwd_err_text(char *buf, size_t len, ptm_fwd_err_e code,
                             int num)
{
    char e[120];

    switch (code) {
    case PTM_FWD_OK:
        apr_cpystrn(buf, "none", len);
        break;
    case PTM_FWD_ERR_START:
        apr_snprintf(buf, len, "cannot start the program: %s",
                     apr_strerror(num, e, sizeof(e)));
        break;
    case PTM_FWD_ERR_EXIT:
        /* httpd's MPMs hand the other-child maintenance the exit code or
         * the signal number, without saying which: both are named. */
        apr_snprintf(buf, len, "the program ended (exit code or signal "
                     "%d)", num);
        break;
    case PTM_FWD_ERR_FULL:
        apr_cpystrn(buf, "the pipe is full: the program is not reading",
                    len);
        break;
    case PTM_FWD_ERR_WRITE:
        apr_snprintf(buf, len, "cannot write to the pipe: %s",
                     apr_strerror(num, e, sizeof(e)));
        break;
    case PTM_FWD_ERR_DROPPED:
        apr_cpystrn(buf, "events left the ring before they were forwarded",
                    len);
        break;
    default:
        apr_snprintf(buf, len, "cannot read the recent events: %s",
                     apr_strerror(num, e, sizeof(e)));
    }
    return buf;
}

/* ---- pure parts ----------------------------------------------------------- */

void ptm_fwd_line(ptm_buf_t *out, uint64_t epoch, uint64_t n,
                  const char *line, size_t len)
{
    char *d = ptm_buf_reserve(out, len + 48);

    memcpy(d, "{\"id\":\"", 7);
    d += 7;
    d += ptm_fmt_u64(d, epoch);
    *d++ = '-';
    d += ptm_fmt_u64(d, n);
    *d++ = '"';
    *d++ = ',';
    memcpy(d, line + 1, len - 1);
    d += len - 1;
    *d++ = '\n';
    out->len = (size_t)(d - out->data);
}

uint64_t ptm_fwd_resume(uint64_t pos, uint64_t first, uint64_t next,
                        uint64_t high, uint64_t *dropped)
{
    uint64_t from;

    *dropped = 0;
    if (first > next) {
        first = next;
    }
    if (pos == 0) {
        return first;           /* never forwarded: all the ring holds */
    }
    if (pos > next) {
        pos = next;             /* not ours; ptm_store_fwd_copy clamps too */
    }
    if (pos >= first) {
        return pos;
    }
    /* Gone from the ring: those handed over once already (before a
     * rewind) are not lost, the others are. */
    from = pos > high ? pos : high;
    if (from < first) {
        *dropped = first - from;
    }
    return first;
}

uint64_t ptm_fwd_rewind(ptm_fwd_board_t *b, uint64_t consumed,
                        uint64_t margin, int *short_of)
{
    uint64_t count = b->log_count;
    uint64_t lo = count > PTM_FWD_LOG ? count - PTM_FWD_LOG : 0;
    uint64_t from = consumed > margin ? consumed - margin : 0;
    uint64_t i;

    *short_of = 0;
    for (i = lo; i < count; i++) {
        if (b->log[i % PTM_FWD_LOG].end > from) {
            break;
        }
    }
    if (i == count) {
        return 0;
    }
    /* The log does not go back far enough: it wrapped, and even its
     * oldest line ended after `from` (the log starts with the pipe, so
     * one that never wrapped reaches back to the first byte). */
    *short_of = i == lo && lo > 0;
    STORE(b->log_count, i);
    return b->log[i % PTM_FWD_LOG].n;
}

/* ---- the forwarder -------------------------------------------------------- */

struct ptm_fwd_t {
    ptm_fwd_board_t *b;
    ptm_store_t *st;
    int fd;
    uint64_t high;          /* every n below was handed over once */
    apr_pool_t *round;      /* cleared every round */
    /* The batch being written: buf[0, len) of lines, off of it written;
     * line i is event ns[i], ends at ends[i], was accepted at acc[i]. */
    char *buf;
    size_t len, off, cap;
    unsigned nlines, done;
    uint64_t ns[PTM_FWD_BATCH];
    size_t ends[PTM_FWD_BATCH];
    apr_time_t acc[PTM_FWD_BATCH];
    size_t lead;            /* bytes before the first line (a newline
                             * ending a torn one) */
    ptm_ring_pos_t ring;    /* where the last copy left the ring */
};

ptm_fwd_t *ptm_fwd_create(ptm_fwd_board_t *b, ptm_store_t *st, int fd,
                          apr_pool_t *p)
{
    ptm_fwd_t *f = apr_pcalloc(p, sizeof(*f));
    ptm_store_fwd_t pos;
    int fl = fcntl(fd, F_GETFL);

    f->b = b;
    f->st = st;
    f->fd = fd;
    /* Only the forwarder writes this end; O_NONBLOCK is on the open file
     * that the other processes share, and none of them writes. */
    if (fl >= 0 && !(fl & O_NONBLOCK)) {
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
    apr_pool_create(&f->round, p);
    f->ring.off = PTM_RING_NOWHERE;
    ptm_store_fwd_get(st, &pos);
    /* A forwarder before this one may have rewound. */
    f->high = LOAD(b->high) > pos.next_n ? LOAD(b->high) : pos.next_n;
    return f;
}

/* Lines [done, upto) of the batch were fully written: move the position,
 * count them, log where they ended. */
static void advance(ptm_fwd_t *f, unsigned upto, uint64_t base)
{
    ptm_fwd_board_t *b = f->b;
    uint64_t fresh = 0, again = 0, count = b->log_count;
    unsigned i;

    if (upto == f->done) {
        return;
    }
    for (i = f->done; i < upto; i++) {
        log_t *l = &b->log[count % PTM_FWD_LOG];

        l->n = f->ns[i];
        l->end = base + f->ends[i];
        count++;
        if (f->ns[i] < f->high) {
            again++;
        }
        else {
            fresh++;
        }
    }
    STORE(b->log_count, count);
    f->done = upto;
    if (f->ns[upto - 1] + 1 > f->high) {
        f->high = f->ns[upto - 1] + 1;
        STORE(b->high, f->high);
    }
    ptm_store_fwd_set(f->st, f->ns[upto - 1] + 1);
    ptm_store_fwd_count(f->st, fresh, 0, again);
    STORE(b->head, upto < f->nlines ? f->acc[upto] : 0);
}

/* Write what is left of the batch, or (`stop`) only up to the end of the
 * line under way, waiting at most `timeout` for room.  APR_SUCCESS when it
 * is all written, APR_TIMEUP when the pipe stayed full, else the error. */
static apr_status_t flush(ptm_fwd_t *f, apr_interval_time_t timeout,
                          int stop)
{
    apr_time_t until = apr_time_now() + timeout;
    uint64_t base = LOAD(f->b->written) - f->off;

    for (;;) {
        size_t end = f->len;
        unsigned upto = f->done;
        ssize_t n;

        if (stop) {
            /* Only the line under way: the first whose end is past off
             * (none when off is at a line's start). */
            if (f->off == 0 || (f->off == f->lead && f->lead)) {
                return APR_SUCCESS;
            }
            while (upto < f->nlines && f->ends[upto] <= f->off) {
                upto++;
            }
            if (upto == f->done && f->done > 0
                && f->ends[f->done - 1] == f->off) {
                return APR_SUCCESS;
            }
            end = upto < f->nlines ? f->ends[upto] : f->len;
        }
        if (f->off >= end) {
            return APR_SUCCESS;
        }
        n = write(f->fd, f->buf + f->off, end - f->off);
        if (n > 0) {
            f->off += (size_t)n;
            __atomic_add_fetch(&f->b->written, (uint64_t)n,
                               __ATOMIC_RELEASE);
            upto = f->done;
            while (upto < f->nlines && f->ends[upto] <= f->off) {
                upto++;
            }
            advance(f, upto, base);
            if (f->lead && f->off >= f->lead) {
                STORE(f->b->torn, 0);   /* the fragment is ended */
                f->lead = 0;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            apr_interval_time_t left = until - apr_time_now();
            struct pollfd pfd;

            if (left <= 0) {
                return APR_TIMEUP;
            }
            pfd.fd = f->fd;
            pfd.events = POLLOUT;
            pfd.revents = 0;
            if (poll(&pfd, 1, (int)((left + 999) / 1000)) < 0
                && errno != EINTR) {
                return APR_FROM_OS_ERROR(errno);
            }
            continue;
        }
        return APR_FROM_OS_ERROR(n < 0 ? errno : EIO);
    }
}

static void reserve(ptm_fwd_t *f, size_t more)
{
    if (f->len + more > f->cap) {
        size_t cap = f->cap ? f->cap : 64 * 1024;
        char *nb;

        while (cap < f->len + more) {
            cap *= 2;
        }
        nb = realloc(f->buf, cap);
        if (!nb) {
            abort();    /* as apr_palloc does when out of memory */
        }
        f->buf = nb;
        f->cap = cap;
    }
}

apr_status_t ptm_fwd_step(ptm_fwd_t *f, apr_interval_time_t timeout,
                          ptm_fwd_report_t *rep)
{
    ptm_fwd_board_t *b = f->b;
    ptm_store_fwd_t pos;
    ptm_recent_info_t info;
    apr_array_header_t *evs;
    uint64_t deaths, first, from, dropped;
    apr_status_t rv;
    ptm_buf_t line;
    int i, more = 0;

    memset(rep, 0, sizeof(*rep));
    if (f->off < f->len) {
        rv = flush(f, timeout, 0);
        if (rv != APR_SUCCESS) {
            rep->blocked = rv == APR_TIMEUP;
            rep->error = rv == APR_TIMEUP ? APR_SUCCESS : rv;
            return APR_SUCCESS;
        }
    }
    f->len = f->off = 0;
    f->nlines = f->done = 0;
    /* A new httpd: the program of the one before may have died with it,
     * and the lines it held, the pipe with them: write again the last
     * PTM_FWD_REWIND_BYTES handed over (counted as repeats). */
    if (LOAD(b->cold) && __atomic_exchange_n(&b->cold, 0, __ATOMIC_ACQ_REL)) {
        uint64_t n;

        ptm_store_fwd_get(f->st, &pos);
        apr_pool_clear(f->round);
        n = ptm_fwd_cold_rewind(f->st, pos.next_n, PTM_FWD_REWIND_BYTES,
                                f->round);
        if (n && n < pos.next_n) {
            ptm_store_fwd_set(f->st, n);
            rep->rewound_to = n;
            rep->rewind_cold = 1;
        }
    }
    /* The program exited: write again what it may have held. */
    deaths = LOAD(b->deaths);
    if (deaths != LOAD(b->handled)) {
        uint64_t n = ptm_fwd_rewind(b, LOAD(b->consumed),
                                    PTM_FWD_REWIND_BYTES,
                                    &rep->rewind_short);

        ptm_store_fwd_get(f->st, &pos);
        if (n && n < pos.next_n) {
            ptm_store_fwd_set(f->st, n);
            rep->rewound_to = n;
        }
        STORE(b->handled, deaths);
    }
    ptm_store_fwd_get(f->st, &pos);
    apr_pool_clear(f->round);
    evs = apr_array_make(f->round, 64, sizeof(ptm_recent_t));
    if (f->ring.n != pos.next_n) {
        /* Not where the last copy ended (a rewind, lines not all
         * written): no hint. */
        f->ring.n = pos.next_n;
        f->ring.off = PTM_RING_NOWHERE;
    }
    rv = ptm_store_follow(&info, evs, &more, f->st, &f->ring,
                          PTM_FWD_BATCH, NULL, NULL, f->round);
    if (rv != APR_SUCCESS) {
        rep->error = rv;
        return rv;
    }
    first = info.count ? info.first_n : info.next_n;
    from = ptm_fwd_resume(pos.next_n, first, info.next_n, f->high,
                          &dropped);
    if (dropped) {
        ptm_store_fwd_count(f->st, 0, dropped, 0);
        rep->dropped = dropped;
        rep->gap_from = first - dropped;
        rep->gap_to = first;
        if (first > f->high) {
            f->high = first;
            STORE(b->high, first);
        }
    }
    if (from != pos.next_n) {
        ptm_store_fwd_set(f->st, from);
    }
    if (!evs->nelts) {
        STORE(b->head, 0);
        /* Not idle when the walk only stopped to let the lock go (it
         * skipped PTM_RING_LOOK_MAX records before the position): the
         * next round goes on at once, not at the next event. */
        rep->idle = !more;
        return APR_SUCCESS;
    }
    /* A line the last forwarder left half written: end it, so that the
     * fragment is a line of its own and the next starts clean. */
    if (LOAD(b->torn)) {
        reserve(f, 1);
        f->buf[f->len++] = '\n';
        f->lead = 1;
    }
    for (i = 0; i < evs->nelts; i++) {
        const ptm_recent_t *ev = &APR_ARRAY_IDX(evs, i, ptm_recent_t);

        reserve(f, ev->line_len + 48);
        line.data = f->buf;
        line.len = f->len;
        line.cap = f->cap;
        line.pool = NULL;
        ptm_fwd_line(&line, info.epoch, ev->n, ev->line, ev->line_len);
        f->len = line.len;
        f->ns[i] = ev->n;
        f->ends[i] = f->len;
        f->acc[i] = ev->accepted;
    }
    f->nlines = (unsigned)evs->nelts;
    STORE(b->head, f->acc[0]);
    rv = flush(f, timeout, 0);
    rep->lines = f->done;
    if (rv != APR_SUCCESS) {
        rep->blocked = rv == APR_TIMEUP;
        rep->error = rv == APR_TIMEUP ? APR_SUCCESS : rv;
    }
    return APR_SUCCESS;
}

void ptm_fwd_destroy(ptm_fwd_t *f, apr_interval_time_t timeout)
{
    if (f->off < f->len && f->off > 0
        && flush(f, timeout, 1) != APR_SUCCESS) {
        STORE(f->b->torn, 1);
    }
    free(f->buf);
    f->buf = NULL;
    f->len = f->off = f->cap = 0;
}

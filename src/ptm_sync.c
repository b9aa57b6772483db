/* Group commit: the board and the wait (ptm_sync.h). */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include "ptm_sync.h"
#include "ptm_wake.h"
#include "ptm_shm.h"

#define SYNC_MAGIC 0x43595350u          /* "PSYC" */
#define SYNC_VERSION 3u          /* 2: identities; 3: poison records */

/* Poisons a stream remembers the error of (poison()). */
#define POISONS 8

/* One file a stream's lines went to.  `gen` is its identity on the board
 * (0: unused; never reused, so a waiter that finds another gen knows its
 * entry was given to another file).  The store lock serialises the
 * appenders; `flushed` and `flusher` change without it (CAS). */
typedef struct {
    uint64_t gen;
    uint64_t dev;
    uint64_t ino;
    uint64_t last;          /* highest ticket whose write is complete */
    uint64_t flushed;       /* highest ticket a good flush covered */
    uint64_t flusher;       /* token (identity << 32 | n) of the flush
                             * under way; 0: none */
    uint32_t done;          /* bumped after each flush: waiters sleep on
                             * it (a futex, ptm_wake.h) */
    uint32_t flusher_pid;   /* the flusher's pid, to see it gone; 0: not
                             * known (yet) */
} entry_t;

typedef struct {
    uint64_t issued;        /* tickets given */
    uint64_t poisoned;      /* tickets at or below it answer an error */
    uint64_t gen;           /* last entry gen given */
    uint64_t npoisons;      /* records written to `poisons` */
    uint64_t poisons[POISONS];  /* the last poisons that raised the mark:
                             * upto << 16 | errno (0: an entry reused
                             * before its flush) */
    uint64_t lines;
    uint64_t flushes;
    uint64_t failures;
    uint64_t unconfirmed;
    entry_t files[PTM_SYNC_FILES];
} stream_t;

struct ptm_sync_t {
    uint32_t magic;
    uint32_t version;
    uint32_t identities;    /* identities given to processes (self_id) */
    uint32_t pad;
    stream_t s[2];
};

#ifdef PTM_TEST_HOOKS
int (*ptm_sync_test_flush)(int fd);
#endif

static int flush_fd(int fd)
{
#ifdef PTM_TEST_HOOKS
    if (ptm_sync_test_flush) {
        return ptm_sync_test_flush(fd);
    }
#endif
    return fdatasync(fd);
}

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)

static int cas64(uint64_t *p, uint64_t want, uint64_t to)
{
    return __atomic_compare_exchange_n(p, &want, to, 0, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}

/* *p = max(*p, v). */
static void raise_to(uint64_t *p, uint64_t v)
{
    uint64_t now = LOAD(p);

    while (now < v && !__atomic_compare_exchange_n(p, &now, v, 0,
                                                   __ATOMIC_SEQ_CST,
                                                   __ATOMIC_SEQ_CST)) {
    }
}

size_t ptm_sync_size(void)
{
    return sizeof(ptm_sync_t);
}

/* This process's identity on the board: its pid (to see a fork) and the
 * identity taken for it, 0 when none yet. */
static uint64_t self;

ptm_sync_t *ptm_sync_init(void *mem)
{
    ptm_sync_t *b = mem;

    /* A new board: this process's identity was another board's.  (Other
     * processes that use it are forked later, and take their own.) */
    STORE(&self, 0);

    memset(b, 0, sizeof(*b));
    b->version = SYNC_VERSION;
    b->magic = SYNC_MAGIC;
    return b;
}

int ptm_sync_is_ours(const ptm_sync_t *b)
{
    return b && b->magic == SYNC_MAGIC && b->version == SYNC_VERSION;
}

apr_status_t ptm_sync_create(ptm_sync_t **out, apr_pool_t *p)
{
    void *base;
    apr_status_t rv;

    if ((rv = ptm_shm_anon(&base, sizeof(ptm_sync_t), p)) != APR_SUCCESS) {
        return rv;
    }
    *out = ptm_sync_init(base);
    return APR_SUCCESS;
}

/* Every ticket up to `upto` answers an error, `err` (0: unconfirmed)
 * those no poison covered before.  A line keeps the error of the first
 * poison that covered it: one stream-wide errno, the last one, told an
 * EIO'd line "unconfirmed" once its entry was reused (or the reverse), or
 * another flush's errno.  The first is the one that failed the line; a
 * later one covers it only because it covers everything issued.  So each
 * poison that raises the mark writes down (upto, err) in a ring, before
 * raising it, so that a waiter who sees the mark finds why (err_of); one
 * that does not raise it covers only lines that already have an error,
 * and writes nothing.  Tickets are kept in 48 bits there: beyond 2^48
 * lines on a stream the text may be wrong, never the verdict (that is
 * the mark's). */
static void poison(stream_t *s, uint64_t upto, int err)
{
    uint64_t i;

    if (upto <= LOAD(&s->poisoned)) {
        return;
    }
    if (err < 0 || err > 0xffff) {
        err = EIO;
    }
    i = __atomic_fetch_add(&s->npoisons, 1, __ATOMIC_SEQ_CST);
    STORE(&s->poisons[i % POISONS],
          ((upto & 0xffffffffffffu) << 16) | (uint64_t)err);
    raise_to(&s->poisoned, upto);
}

uint64_t ptm_sync_ticket_locked(ptm_sync_t *b, int stream)
{
    stream_t *s = &b->s[stream & 1];
    uint64_t t = s->issued + 1;

    /* Before the write: a flusher that reads `issued` after its flush
     * failed covers every line whose write could have been caught in the
     * failed writeback. */
    STORE(&s->issued, t);
    return t;
}

void ptm_sync_written_locked(ptm_sync_t *b, ptm_sync_line_t *line,
                             int stream, uint64_t ticket, dev_t dev,
                             ino_t ino)
{
    stream_t *s = &b->s[stream & 1];
    entry_t *e = NULL;
    uint64_t g;
    unsigned i;

    line->stream = stream & 1;
    line->ticket = ticket;
    /* The file of the stream's last line first: nearly always it. */
    g = s->gen;
    for (i = 0; i < PTM_SYNC_FILES; i++) {
        entry_t *c = &s->files[(g - i) % PTM_SYNC_FILES];

        if (c->gen != 0 && c->dev == (uint64_t)dev
            && c->ino == (uint64_t)ino) {
            e = c;
            break;
        }
    }
    if (e) {
        /* Tickets grow with the lock's order: this is the highest. */
        STORE(&e->last, ticket);
        line->gen = e->gen;
        return;
    }
    /* A file not on the board: it takes the entry of the oldest.  Lines
     * of that one not yet flushed lose their only way to be confirmed:
     * they answer an error (their tickets are all below this one).  Gens
     * only grow, so a waiter of the old file sees its gen gone. */
    g = s->gen + 1;
    e = &s->files[g % PTM_SYNC_FILES];
    if (e->gen != 0 && LOAD(&e->flushed) < e->last) {
        poison(s, e->last, 0);
        ADD(&s->unconfirmed, 1);
    }
    /* gen 0 while the fields change: a waiter reading them in between
     * sees no gen of its own (it reads gen before and after). */
    STORE(&e->gen, 0);
    e->dev = (uint64_t)dev;
    e->ino = (uint64_t)ino;
    STORE(&e->last, ticket);
    STORE(&e->flushed, 0);
    /* A flush of the old file still under way keeps its token to itself:
     * its end neither clears a new flusher's token (CAS) nor covers a
     * line of the new file (its mark is below every ticket of it). */
    STORE(&e->flusher_pid, 0);
    STORE(&e->flusher, 0);
    s->gen = g;
    STORE(&e->gen, g);
    /* The old file's waiters look again now rather than after a nap
     * (a system call under the store lock, once per new file). */
    ADD(&e->done, 1);
    ptm_wake_all(&e->done);
    line->gen = g;
}

/* This process's identity on `b`, taken from the board's counter the
 * first time it flushes: what makes a flush "this process's" (the waiters
 * never take one over from their own process: its threads share a file
 * description).  Not the pid: a flusher killed mid-flush leaves its token
 * behind, and a new process given the same pid would take the token for
 * its own and wait for it forever.  A fork (the pid changed) takes a new
 * one; threads racing for the first agree on one (CAS), the loser's
 * number is simply never used. */
static uint32_t self_id(ptm_sync_t *b, uint32_t pid)
{
    for (;;) {
        uint64_t now = LOAD(&self), mine;
        uint32_t id;

        if (now >> 32 == pid && (uint32_t)now != 0) {
            return (uint32_t)now;
        }
        while ((id = __atomic_add_fetch(&b->identities, 1,
                                        __ATOMIC_RELAXED)) == 0) {
        }
        mine = ((uint64_t)pid << 32) | id;
        if (cas64(&self, now, mine)) {
            return id;
        }
    }
}

/* A token for one flush: never the same twice among live processes. */
static uint64_t new_token(uint32_t id)
{
    static uint32_t n;
    uint32_t k = __atomic_add_fetch(&n, 1, __ATOMIC_RELAXED);

    return ((uint64_t)id << 32) | (k ? k : 1);
}

/* The error of ticket `t`, poisoned: that of the poison with the lowest
 * mark at or above it, the first that covered it.  When more than POISONS
 * raised the mark while its line waited, the first's record is gone and a
 * later one (which covered it too) answers.  None at all (records being
 * rewritten this instant): EIO. */
static apr_status_t poisoned_status(stream_t *s, uint64_t t)
{
    uint64_t best = 0, tt = t & 0xffffffffffffu;
    int i;

    for (i = 0; i < POISONS; i++) {
        uint64_t r = LOAD(&s->poisons[i]);

        if (r != 0 && r >> 16 >= tt && (best == 0 || r >> 16 < best >> 16)) {
            best = r;
        }
    }
    if (best == 0) {
        return APR_FROM_OS_ERROR(EIO);
    }
    return (best & 0xffff) ? APR_FROM_OS_ERROR((int)(best & 0xffff))
                           : PTM_SYNC_UNCONFIRMED;
}

/* The answer once the line's fate is known: covered by a good flush (or
 * its entry reused, which poisons every line not covered), unless a
 * failed flush poisoned it meanwhile.  Read after the coverage, so a
 * failure that came before the good flush (it poisoned before letting the
 * next flusher start) is always seen. */
static apr_status_t verdict(stream_t *s, uint64_t t)
{
    return t <= LOAD(&s->poisoned) ? poisoned_status(s, t) : APR_SUCCESS;
}

/* Flush `fd` for entry `e` (gen `gen`) while holding its token.  Returns
 * nothing: the outcome is on the board for every waiter, this one too. */
static void flush_as(stream_t *s, entry_t *e, uint64_t gen, uint64_t token,
                     uint32_t pid, int fd)
{
    uint64_t snap;
    int err = 0;

    snap = LOAD(&e->last);
    /* The token was taken for this file: if the entry went to another
     * in between, `snap` may be a ticket of that one, which this flush
     * does not cover. */
    if (LOAD(&e->gen) == gen) {
        ADD(&s->flushes, 1);
        if (flush_fd(fd) != 0) {
            err = errno ? errno : EIO;
        }
        if (!err) {
            raise_to(&e->flushed, snap);
        }
        else {
            /* Every line written so far may have been in the writeback
             * that failed, whichever file of the stream it went to. */
            ADD(&s->failures, 1);
            poison(s, LOAD(&s->issued), err);
        }
    }
    /* Only now may the next flush start: it sees the poison.  The pid
     * goes first: a pid left behind would be read as the next flusher's
     * (one taken over meanwhile keeps whoever's is there). */
    __atomic_compare_exchange_n(&e->flusher_pid, &pid, 0, 0,
                                __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    cas64(&e->flusher, token, 0);
    ADD(&e->done, 1);
    ptm_wake_all(&e->done);
}

/* 1 if the flusher `pid` (0: not known) of a token not of this process
 * (`me`) has ended.  Our own pid on a token of another identity: the
 * process that had it before us has ended, killed in the middle of its
 * flush.  The pid is only a hint (it is not set with the token, in one
 * step): read wrong, a waiter waits PTM_SYNC_STUCK for a flusher that
 * is gone, or flushes beside one of another process, which is safe. */
static int flusher_gone(uint32_t pid, uint32_t me)
{
    if (pid == 0) {
        return 0;
    }
    return pid == me || (kill((pid_t)pid, 0) != 0 && errno == ESRCH);
}

apr_status_t ptm_sync_wait(ptm_sync_t *b, const ptm_sync_line_t *line,
                           int fd)
{
    stream_t *s = &b->s[line->stream & 1];
    entry_t *e = &s->files[line->gen % PTM_SYNC_FILES];
    uint64_t t = line->ticket, gen = line->gen;
    uint64_t watched = 0;
    apr_time_t since = 0;
    uint32_t me = (uint32_t)getpid(), id = self_id(b, me);

    ADD(&s->lines, 1);
    for (;;) {
        uint32_t done = LOAD(&e->done);
        uint64_t g1 = LOAD(&e->gen);
        uint64_t flushed = LOAD(&e->flushed);
        uint64_t owner = LOAD(&e->flusher);
        uint32_t owner_pid = LOAD(&e->flusher_pid);
        uint64_t g2 = LOAD(&e->gen);

        if (t <= LOAD(&s->poisoned)) {
            return poisoned_status(s, t);
        }
        if (g1 != gen || g2 != gen) {
            /* Reused: every line of the old file that no good flush
             * covered was poisoned before the gen changed. */
            return verdict(s, t);
        }
        if (flushed >= t) {
            return verdict(s, t);
        }
        if (owner == 0) {
            uint64_t token = new_token(id);

            if (!cas64(&e->flusher, 0, token)) {
                continue;
            }
            if (LOAD(&e->flushed) >= t) {
                /* Covered just before the token was ours. */
                cas64(&e->flusher, token, 0);
                continue;
            }
            STORE(&e->flusher_pid, me);
            flush_as(s, e, gen, token, me, fd);
            continue;
        }
        /* Someone flushes.  A flusher killed mid-flush never hands the
         * token back: take it from a process that is gone, or one of
         * another process that has held it for PTM_SYNC_STUCK (its
         * errors are its descriptor's; ours reports ours).  Never from
         * this process (its identity, not its pid: see self_id): a thread
         * of ours shares our descriptor, and the error that one flush
         * reports, the next one does not. */
        if (owner != watched) {
            watched = owner;
            since = apr_time_now();
        }
        else if ((uint32_t)(owner >> 32) != id
                 && (flusher_gone(owner_pid, me)
                     || apr_time_now() - since > PTM_SYNC_STUCK)) {
            /* The pid first, only if still that flusher's; then the
             * token, only if still the same. */
            if (__atomic_compare_exchange_n(&e->flusher_pid, &owner_pid, 0,
                                            0, __ATOMIC_SEQ_CST,
                                            __ATOMIC_SEQ_CST)) {
                cas64(&e->flusher, owner, 0);
            }
            watched = 0;
            continue;
        }
        ptm_wake_wait(&e->done, done, PTM_SYNC_NAP);
    }
}

void ptm_sync_stats(ptm_sync_t *b, ptm_sync_stats_t *out)
{
    int i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < 2; i++) {
        out->lines += LOAD(&b->s[i].lines);
        out->flushes += LOAD(&b->s[i].flushes);
        out->failures += LOAD(&b->s[i].failures);
        out->unconfirmed += LOAD(&b->s[i].unconfirmed);
    }
}

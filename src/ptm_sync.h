/* Group commit for PanoptesTelemetrySync On (SPEC §11.3 F12): an event's
 * line is appended under the store lock, the lock is let go, and the
 * request then waits until an fdatasync that began after its line was
 * written has finished without error.  One waiter flushes the file for
 * every line appended to it before, the others sleep until that flush is
 * done, so concurrent events share one flush (PostgreSQL's group commit)
 * and no request waits for the disk while holding the store lock.
 *
 * The bookkeeping is a board in shared memory that the parent makes once
 * and keeps across graceful restarts (children inherit it by fork; it is
 * not in the state file: no waiter outlives the processes).  Per stream
 * (site, run):
 *
 *   - tickets: every line gets the next one, under the store lock, BEFORE
 *     its write (so that any line written before a failure was noticed
 *     has a ticket at or below the count read after it);
 *   - a few file entries (one per file identity, dev + inode, the line
 *     went to): `last`, the highest ticket whose write is complete, and
 *     `flushed`, the highest ticket a successful flush covered, plus the
 *     flusher's token (one flush at a time per file) and a futex word the
 *     waiters sleep on;
 *   - `poisoned`: every ticket at or below it answers an error, whatever
 *     flush succeeds later.  A failed fdatasync raises it to every ticket
 *     given so far on the stream.  This is PostgreSQL's fsync lesson: after
 *     a failed writeback Linux may have dropped the dirty pages (or marked
 *     them clean), and it reports the error once per open file description,
 *     so a second fdatasync can succeed without those lines ever reaching
 *     the disk.  Nothing is retried to claim them.  Each line answers the
 *     error of the first poison that covered it (a few are remembered).
 *
 * A line's waiter flushes with its own descriptor of the file its line
 * went to (fdatasync on any descriptor of an inode flushes that inode), so
 * a day file that rotated, a run that ended or a file replaced under its
 * name never gets a flush meant for another.  Entries are reused for new
 * files round-robin; one reused before its lines were all flushed poisons
 * them (PTM_SYNC_UNCONFIRMED: that takes PTM_SYNC_FILES file changes on a
 * stream while a line waits). */
#ifndef PTM_SYNC_H
#define PTM_SYNC_H

#include <stdint.h>
#include <sys/types.h>
#include <apr_errno.h>
#include <apr_pools.h>
#include <apr_time.h>

typedef struct ptm_sync_t ptm_sync_t;

/* Files per stream whose lines can be waited for at once. */
#define PTM_SYNC_FILES 8

/* The flush that would have covered a line could not be confirmed (its
 * file's entry was reused first): an error answer, like a failed flush. */
#define PTM_SYNC_UNCONFIRMED (APR_OS_START_USERERR + 40)

/* How long a waiter sleeps before it looks at the flusher again, and how
 * long a flusher of another process may hold a file before a waiter stops
 * waiting for it and flushes itself (its own descriptor reports its own
 * errors, so two flushes at once are safe across processes). */
#define PTM_SYNC_NAP apr_time_from_msec(20)
#define PTM_SYNC_STUCK apr_time_from_sec(10)

/** Bytes a board takes. */
size_t ptm_sync_size(void);

/** Lay out a board in `mem` (8-aligned, ptm_sync_size() bytes); returns
 * it.  Tests share one with fork. */
ptm_sync_t *ptm_sync_init(void *mem);

/** Make a board in anonymous shared memory from `p` (the parent's process
 * pool, so that it outlives generations).  Returns APR_SUCCESS or the
 * error of apr_shm_create. */
apr_status_t ptm_sync_create(ptm_sync_t **out, apr_pool_t *p);

/** 1 if `b` was laid out by this version of the code. */
int ptm_sync_is_ours(const ptm_sync_t *b);

/* What a waiter needs to know about its line. */
typedef struct {
    int stream;
    uint64_t ticket;
    uint64_t gen;           /* its file's entry */
} ptm_sync_line_t;

/**
 * Under the store lock, before the line of `stream` is written: its
 * ticket.  A ticket whose write then fails is simply never waited for.
 */
uint64_t ptm_sync_ticket_locked(ptm_sync_t *b, int stream);

/**
 * Under the store lock, once the line with `ticket` is written to the
 * file `dev`/`ino`: record it and fill `line`.  Cannot fail.
 */
void ptm_sync_written_locked(ptm_sync_t *b, ptm_sync_line_t *line,
                             int stream, uint64_t ticket, dev_t dev,
                             ino_t ino);

/**
 * Without the lock: return once `line` is on stable storage, flushing
 * with `fd` (a descriptor of the line's file) when no other waiter is
 * doing it.  Returns APR_SUCCESS; the error of a failed fdatasync that
 * covered the line (this waiter's or another's); or PTM_SYNC_UNCONFIRMED:
 * of those, whichever came first for this line.
 * Never APR_SUCCESS for a line written before a failed flush of its
 * stream was noticed, even if a later flush succeeds.
 */
apr_status_t ptm_sync_wait(ptm_sync_t *b, const ptm_sync_line_t *line,
                           int fd);

typedef struct {
    uint64_t lines;         /* lines waited for */
    uint64_t flushes;       /* fdatasync calls */
    uint64_t failures;      /* of which failed */
    uint64_t unconfirmed;   /* lines poisoned by an entry reused early */
} ptm_sync_stats_t;

/** The board's counters, summed over both streams (atomic reads). */
void ptm_sync_stats(ptm_sync_t *b, ptm_sync_stats_t *out);

#ifdef PTM_TEST_HOOKS
/* Unit tests only: replaces fdatasync (return -1 with errno to fail). */
extern int (*ptm_sync_test_flush)(int fd);
#endif

#endif

/* The shared state (SPEC §1, §11.4): active run, the two seq counters and
 * the two current-view maps, in one shared memory segment guarded by one
 * global mutex, so every child process and thread of every MPM sees one
 * truth.
 *
 * The segment holds fixed-width data and offsets only (children and DSO
 * reloads may map it or our code elsewhere).  Envelopes live in an arena
 * inside the segment as [key][public envelope] blobs; a blob carries a
 * back-reference to its owner so the arena can be compacted in place when
 * it runs out of room.  Critical sections only copy bytes and, for events,
 * do the one append, so that file order is seq order. */
#ifndef PTM_STORE_H
#define PTM_STORE_H

#include <stdint.h>
#include <apr_pools.h>
#include <apr_global_mutex.h>
#include <apr_shm.h>
#include <apr_tables.h>
#include <apr_time.h>
#include "ptm_buf.h"
#include "ptm_lock.h"
#include "ptm_sync.h"

typedef struct ptm_store_t ptm_store_t;

enum { PTM_STREAM_SITE = 0, PTM_STREAM_RUN = 1 };

/* Statuses beyond APR's. */
#define PTM_STORE_FULL   (APR_OS_START_USERERR + 1)  /* -> 507 */
#define PTM_STORE_BUSY   (APR_OS_START_USERERR + 2)  /* run active -> 409 */
#define PTM_STORE_NORUN  (APR_OS_START_USERERR + 3)  /* no run -> 404 */
#define PTM_STORE_STALE  (APR_OS_START_USERERR + 4)  /* run changed: redo */
#define PTM_STORE_NOTFOUND (APR_OS_START_USERERR + 5)
#define PTM_STORE_DAMAGED (APR_OS_START_USERERR + 6)  /* -> 500 */

/** Smallest segment size accepted (PanoptesTelemetryStateSize). */
#define PTM_STORE_MIN_SIZE (64 * 1024)

/**
 * Lay out a fresh state in `base` (`size` bytes, zeroed or not), the last
 * `ring` of them (rounded down to 8) for the recent-events ring (0: off;
 * too big for `size`: off).  Used on a segment the first time only; later
 * generations attach.
 */
void ptm_store_format(void *base, apr_size_t size, apr_size_t ring);

/* ptm_store_is_formatted, ptm_store_open_file: any ring size will do. */
#define PTM_STORE_RING_ANY ((apr_size_t)-1)

/** 1 if `base` holds a state of this layout version, `size` and `ring`
 * (as given to ptm_store_format, or PTM_STORE_RING_ANY). */
int ptm_store_is_formatted(const void *base, apr_size_t size,
                           apr_size_t ring);

/**
 * A process-local handle on a formatted segment.  `mutex` guards it
 * (apr_global_mutex, or NULL in single-threaded unit tests).  Allocated
 * from `p`.
 */
ptm_store_t *ptm_store_attach(void *base, apr_global_mutex_t *mutex,
                              apr_pool_t *p);

/** Let the events of `st` with `sync` set share flushes through `board`
 * (NULL: each is flushed under the lock, as before group commit). */
void ptm_store_use_sync(ptm_store_t *st, ptm_sync_t *board);

/** Take `lock` (ptm_lock.h) before the global mutex, every time `st` is
 * locked (NULL: the global mutex alone).  Every handle on one segment
 * should use the same board; one without it is still excluded, by the
 * global mutex. */
void ptm_store_use_lock(ptm_store_t *st, ptm_lock_t *lock);

/** Close the stream files this process keeps open through `st`. */
void ptm_store_close_files(ptm_store_t *st);

typedef enum {
    PTM_STORE_OPEN_NEW,          /* no state file: a fresh state */
    PTM_STORE_OPEN_RECOVERED,    /* the previous state, as it was left */
    PTM_STORE_OPEN_RESIZED,      /* the previous state, moved to a new size */
    PTM_STORE_OPEN_UPGRADED,     /* the state of an earlier layout, moved */
    PTM_STORE_OPEN_MIGRATED,     /* the state of `legacy`, moved here */
    PTM_STORE_OPEN_UNRECOGNISED  /* a file that held no state: replaced */
} ptm_store_open_e;

/**
 * Map the state file `path` (created 0600 if missing) as a shared segment
 * of `size` bytes, `ring` of them for the ring (ptm_store_format), so the state outlives httpd itself: a stop and start or
 * a crash finds it again.  Every block of the file is allocated first (no
 * SIGBUS on a full disk later).  The file must be a regular file of ours
 * (links are not followed); its directory, which only root should be able
 * to write (ptm_store_prepare_dir), is locked (flock) for as long as `*fd`
 * stays open, so a second httpd on the same state is refused.  Whatever
 * the file holds is checked before use (SPEC §11.6): a state left
 * mid-update, damaged or crafted is rebuilt from what checks out (`*dropped`
 * counts what did not); one of another size or an earlier layout is carried
 * over into a new file renamed over it.  Without a file, the state at
 * `legacy` (where earlier versions kept it; may be NULL) is carried over
 * and removed.  Returns APR_SUCCESS with `*base` (never unmapped), `*fd`
 * and `*how`; EBUSY when another process holds the directory; APR_FROM_OS_ERROR(EPERM)
 * when the file is not a regular file of ours; or the error of
 * open/posix_fallocate (ENOSPC)/mmap/rename.
 */
apr_status_t ptm_store_open_file(void **base, int *fd, ptm_store_open_e *how,
                                 unsigned *dropped, const char *path,
                                 const char *legacy, apr_size_t size,
                                 apr_size_t ring, apr_pool_t *p);

/**
 * Create the state directory `dir` if missing (0700) and check that it and
 * every directory on the way to it (through links, which must be root's
 * or this process's user's) is one only root (or that user) can change,
 * so that no other user can point the root parent's writes elsewhere;
 * nothing is created under a directory that fails.  Returns APR_SUCCESS,
 * or an error with `*why`.
 */
apr_status_t ptm_store_prepare_dir(const char **why, const char *dir,
                                   apr_pool_t *p);

/**
 * Raise the seq counters to the highest seq at the end of the stream files
 * (every site_*.ndjson of `site_dir`, and the active run's file) so that no
 * number in a file is ever given out twice, even when the state is older
 * than the files.  The active run's directory is reached beneath its root
 * (`site_dir` or one of `roots`, as ptm_run_split_dir) without following a
 * link.  Files are only read (httpd's parent runs this as root over the
 * User's files): a last line a crash left without its newline is ignored
 * and cut by the next append.  Call before the children start.  Returns
 * APR_SUCCESS or the error of reading `site_dir`.
 */
apr_status_t ptm_store_reconcile(ptm_store_t *st, const char *site_dir,
                                 const apr_array_header_t *roots,
                                 apr_pool_t *p);

/** How many times a state torn by a crash was rebuilt. */
uint64_t ptm_store_repairs(ptm_store_t *st);

/* ---- runs --------------------------------------------------------------- */

typedef struct {
    int active;
    uint64_t gen;          /* changes on every start and stop */
    const char *run_id;    /* pool copies, when active */
    size_t run_id_len;
    const char *run_dir;
} ptm_store_run_t;

/** Copy what an event needs to know about the run. */
apr_status_t ptm_store_run_peek(ptm_store_run_t *run, ptm_store_t *st,
                                apr_pool_t *p);

/**
 * What an event needs to know about the run, usually without taking the
 * lock: the answer this thread remembers from its last look, while the
 * run's generation is still the one it saw; otherwise (or with `refresh`)
 * a look under the lock (as ptm_store_run_peek), remembered.  Between
 * that check and ptm_store_event the run can still change: the store then
 * refuses the event (PTM_STORE_STALE); ask again with `refresh`.  Strings
 * are copied into `p`.
 */
apr_status_t ptm_store_run_seen(ptm_store_run_t *run, ptm_store_t *st,
                                int refresh, apr_pool_t *p);

/** 1 if the run has started or stopped since generation `gen` (read
 * without the lock). */
int ptm_store_run_changed(ptm_store_t *st, uint64_t gen);

/**
 * 1 if a run is active, else 0, read without the lock so that /ready never
 * waits for a writer (one stuck on a hung disk holds the lock for as long
 * as the disk hangs).  It may be a moment stale: a start or stop under
 * way shows once it is done.  Cannot fail.
 */
int ptm_store_run_active(ptm_store_t *st);

/* Creates the run directory under the lock; sets `*seq_floor` to the
 * highest seq already in the directory's telemetry.ndjson (0 if none). */
typedef apr_status_t (*ptm_store_prepare_fn)(void *ctx, uint64_t *seq_floor);

/**
 * Start a run: under the lock, if none is active, call `prepare` (its error
 * is returned and nothing changes), then store the run object `obj` (the
 * response JSON), its id and directory, raise the run counter to the floor
 * prepare found, and clear the run's current view.  Returns APR_SUCCESS,
 * PTM_STORE_BUSY, PTM_STORE_FULL or prepare's error.
 */
apr_status_t ptm_store_run_start(ptm_store_t *st, const char *obj,
                                 size_t obj_len, const char *run_id,
                                 size_t run_id_len, const char *run_dir,
                                 ptm_store_prepare_fn prepare, void *ctx);

/** Stop the active run; `out` gets its object.  PTM_STORE_NORUN if none. */
apr_status_t ptm_store_run_stop(ptm_store_t *st, ptm_buf_t *out);

/* Told, under the lock, the directory of the run being stopped. */
typedef void (*ptm_store_note_fn)(void *ctx, const char *run_dir);

/** ptm_store_run_stop, calling `note` under the lock first (so that what
 * it records is in the order of the starts and stops). */
apr_status_t ptm_store_run_stop_noting(ptm_store_t *st, ptm_buf_t *out,
                                       ptm_store_note_fn note, void *ctx);

/** Copy the active run's object into `out`.  PTM_STORE_NORUN if none. */
apr_status_t ptm_store_run_get(ptm_store_t *st, ptm_buf_t *out);

/* ---- events ------------------------------------------------------------- */

typedef struct {
    uint64_t run_gen;      /* of the ptm_store_run_peek it was built from */
    int stream;
    const char *key;       /* type as a JSON string */
    size_t key_len;
    const char *ts_part;   /* ,"ts":"..." */
    size_t ts_len;
    const char *body_part; /* ,"type":..,"data":..,"meta":..} */
    size_t body_len;
    int make_current;
    int fd;                /* append here when >= 0 (path: removed on
                            * failure if still empty) ... */
    const char *path;      /* ... else, when set, append to this file
                            * through the process's open files */
    int sync;              /* answer only once the line is on stable
                            * storage (PanoptesTelemetrySync On) */
    apr_pool_t *pool;      /* for opening `path` */
    const char **failed_step; /* if set, gets "open" or "write" when the
                               * append fails, "sync" when its flush
                               * does */
    /* For the recent-events ring (SPEC §12.1): */
    apr_time_t accepted;   /* the server clock at acceptance */
    apr_time_t ts_us;      /* the envelope's ts parsed (ptm_time_parse_
                            * rfc3339, lenient), or PTM_TS_NONE */
    uint32_t tie;          /* ptm_query_tie of the run dir; 0 for site */
    int stored;            /* store_permanently */
    uint64_t *id;          /* if set, gets the event id's number */
} ptm_store_event_t;

/* The ts of an event whose ts is not a time (client-supplied, SPEC §6). */
#define PTM_TS_NONE INT64_MIN

/**
 * Number and record one event, all under the lock: the next seq of the
 * stream, the append (to `fd`, or to `path` through the process's cache
 * of open stream files, one per stream), then the current view.  Nothing
 * changes unless everything succeeds.  Returns APR_SUCCESS with `*seq`,
 * PTM_STORE_STALE when the run changed since `run_gen` or the file was
 * deleted since it was opened (open and build again),
 * PTM_STORE_FULL when the current view has no room, or the write error.
 *
 * With `sync` and a board (ptm_store_use_sync), the lock is let go after
 * the append and the call returns once a flush covering the line is done
 * (group commit, ptm_sync.h).  If that flush fails the event stays
 * recorded (its seq used, in the current view and the ring, its line
 * perhaps in the file: see the README) and the flush's error is returned
 * with `*failed_step` "sync", or PTM_SYNC_UNCONFIRMED.  Without a board,
 * the line is flushed under the lock and a failure changes nothing.
 */
apr_status_t ptm_store_event(ptm_store_t *st, const ptm_store_event_t *ev,
                             uint64_t *seq);

/* ---- the recent-events ring (ptm_ring.c, SPEC §12.1) ---------------------- */

/** The epoch of the event ids `<epoch>-<n>`: changes only when the state
 * is lost or made anew. */
uint64_t ptm_store_epoch(ptm_store_t *st);

typedef struct {
    uint64_t n;             /* the id's number */
    apr_time_t accepted;    /* server clock when it was accepted */
    apr_time_t ts;          /* the envelope's ts, or PTM_TS_NONE */
    int stream;
    uint64_t seq;
    uint32_t tie;           /* as ptm_store_event_t */
    int stored;
    const char *type;       /* the type as a JSON string (the view key) */
    size_t type_len;
    const char *line;       /* the file form, without the newline */
    size_t line_len;
} ptm_recent_t;

/* Decides, under the store lock and with pointers into the segment, if an
 * event is wanted: must be quick and must not keep the pointers. */
typedef int (*ptm_recent_want_fn)(void *ctx, const ptm_recent_t *ev);

/* Seqs lo..hi of one stream (and, for run, one run by its tie) that the
 * ring holds, every one. */
typedef struct {
    int stream;
    uint32_t tie;           /* 0 for site */
    uint64_t lo, hi;
} ptm_recent_span_t;

typedef struct {
    uint64_t epoch;
    uint64_t count;         /* events held */
    uint64_t bytes;         /* bytes they take */
    uint64_t size;          /* the ring's size; 0: off */
    uint64_t first_n;       /* n of the oldest held (when count) */
    uint64_t next_n;        /* n the next accepted event gets */
    apr_time_t oldest;      /* its acceptance time; 0 when empty */
    /* What the files hold that the ring holds too: a stored line of
     * stream s (run: of the run whose tie is t) with a seq inside one of
     * the spans of s (and t) is in the ring, the same bytes; any other is
     * not (seqs a crash left unused, or raised past, fall between spans). */
    apr_array_header_t *spans;  /* ptm_recent_span_t, in ring order */
} ptm_recent_info_t;

/**
 * Under the lock: fill `info` and copy into `out` (ptm_recent_t, strings
 * from `p`) every event of the ring with n >= `from_n` that `want` (may
 * be NULL: all) takes, oldest first; at most `max` (0: no limit; then
 * `*truncated` is set if more were wanted).  Returns APR_SUCCESS or the
 * error of the lock.
 */
apr_status_t ptm_store_recent(ptm_recent_info_t *info,
                              apr_array_header_t *out, int *truncated,
                              ptm_store_t *st, uint64_t from_n,
                              unsigned max, ptm_recent_want_fn want,
                              void *ctx, apr_pool_t *p);

/**
 * ptm_store_recent from n 0, for a query of events whose ts lies in
 * [t0, t1): `want` is only asked about records that may (those of a part
 * of the ring whose ts range overlaps the window), and must refuse any
 * outside it.  What it gives (events, spans, info) is what
 * ptm_store_recent gives with that `want`, but the walk under the lock
 * follows the window, not the ring: this process keeps a summary of the
 * ring's records in blocks (their ts range and seq spans), brought up to
 * date with the records added since its last call.
 */
apr_status_t ptm_store_recent_window(ptm_recent_info_t *info,
                                     apr_array_header_t *out,
                                     int *truncated, ptm_store_t *st,
                                     apr_time_t t0, apr_time_t t1,
                                     unsigned max, ptm_recent_want_fn want,
                                     void *ctx, apr_pool_t *p);

/** Forget this process's summary of the ring (the next
 * ptm_store_recent_window builds it again).  Only a test that formats a
 * segment anew under a handle needs it: the pool cleanup of the handle
 * frees it otherwise. */
void ptm_store_forget_ring(ptm_store_t *st);

/* Where a follower of the ring (GET /stream, forwarding) is: the n of the
 * next event to look at, and where its record was (a hint, checked before
 * it is used; PTM_RING_NOWHERE: none). */
typedef struct {
    uint64_t n;
    uint64_t off;           /* where the walk goes on: the record ... */
    uint64_t at;            /* ... of this n (<= n) */
} ptm_ring_pos_t;

#define PTM_RING_NOWHERE UINT64_MAX
/* Records one call looks at, at most, before it lets the lock go (and
 * says *truncated): a follower never holds the POSTs up for long. */
#define PTM_RING_LOOK_MAX 4096

/**
 * ptm_store_recent for followers: the events of the ring with n >= pos->n
 * that `want` takes, at most `max` (0: all), starting the walk where the
 * last call left it instead of at the oldest (a subscriber looks after
 * every event: a walk of the whole ring each time, under the lock, would
 * cost every POST).  One call looks at PTM_RING_LOOK_MAX records at most
 * (then *truncated is set, as when `max` is reached).  `info` is filled
 * but for spans (left empty).  Then pos->n is the n of the first event
 * not looked at (info->next_n when every one was), and pos->off and
 * pos->at where the next call's walk begins.
 */
apr_status_t ptm_store_follow(ptm_recent_info_t *info,
                              apr_array_header_t *out, int *truncated,
                              ptm_store_t *st, ptm_ring_pos_t *pos,
                              unsigned max, ptm_recent_want_fn want,
                              void *ctx, apr_pool_t *p);

/* ---- reads -------------------------------------------------------------- */

/** Append {"current":{...}} (site order, run values win in place, run-only
 * types after). */
apr_status_t ptm_store_current(ptm_store_t *st, ptm_buf_t *out);

/** ptm_store_current, and in the same hold of the lock the n the next
 * accepted event will get: the snapshot holds every event before it and
 * none from it on (GET /stream's first event, SPEC §12.3). */
apr_status_t ptm_store_current_at(ptm_store_t *st, ptm_buf_t *out,
                                  uint64_t *next_n);

/** Append the public envelope of `key` (run first, then site), or return
 * PTM_STORE_NOTFOUND. */
apr_status_t ptm_store_current_one(ptm_store_t *st, const char *key,
                                   size_t key_len, ptm_buf_t *out);

/* Answers counted by status for mod_status: 400 404 405 409 413 422 500
 * 503 507, in that order. */
#define PTM_STORE_NSTATUS 9

typedef struct {
    uint64_t seq[2];
    uint64_t events[2];        /* accepted events per stream */
    uint32_t types[2];         /* current types per stream */
    uint64_t bytes_used;       /* tables and live values */
    uint64_t bytes_total;      /* PanoptesTelemetryStateSize: the ring's
                                * bytes are recent_size */
    int run_active;
    const char *run_id;        /* pool copies, when a run is active */
    const char *run_obj;       /* (NULL if no consistent copy was had
                                * without waiting: very rarely) */
    uint64_t repairs;
    uint64_t write_errors;
    uint64_t answers[PTM_STORE_NSTATUS];
    int busy;                  /* the lock was held: no recent_oldest */
    uint64_t epoch;            /* of the event ids */
    uint64_t next_n;
    uint64_t recent_events;    /* the ring: events held, */
    uint64_t recent_bytes;     /* bytes they take, */
    uint64_t recent_size;      /* bytes it has (0: off), */
    apr_time_t recent_oldest;  /* when its oldest was accepted (0: empty
                                * or busy) */
    uint64_t view_retries;     /* reads without the lock made again */
    uint64_t view_locked;      /* reads that took the lock after
                                * PTM_VIEW_TRIES tries */
    uint64_t lock_waits;       /* takes of the lock that found it held
                                * (the front lock's, ptm_lock.h) */
} ptm_store_stats_t;

/**
 * The counters for mod_status, without ever waiting for the lock: they are
 * read with atomic loads (each exact, together a moment apart at most);
 * the run's id and object, which need a consistent copy, are copied
 * without the lock (a sequence lock, see ptm_seqlock.h); the age of the
 * ring's oldest event only when the lock is free at once, else `busy` is
 * set.  Strings from `p`.  Returns APR_SUCCESS, or the error of the mutex
 * or of repairing a state left mid-update.
 */
apr_status_t ptm_store_stats(ptm_store_t *st, ptm_store_stats_t *stats,
                             apr_pool_t *p);

/** Count an error answer (no lock: an atomic add). */
void ptm_store_count_answer(ptm_store_t *st, int status);

/** Count a failed append (no lock: an atomic add). */
void ptm_store_count_write_error(ptm_store_t *st);

/** The status counted at index `i` of ptm_store_stats_t.answers. */
int ptm_store_status_code(int i);

#endif

/* Forwarding (SPEC §12.5): every accepted event, as one line, to the
 * standard input of a program httpd runs (PanoptesTelemetryForward).
 *
 * The parts that need no httpd:
 *   - the board the parent and the children share (anonymous shared
 *     memory the parent makes once): who forwards (a lease, so that one
 *     forwarder runs at a time even while children of two generations
 *     overlap), the program's pid and exits, the bytes written to the
 *     pipe and a log of where each recent line ended in them, the last
 *     error;
 *   - the forwarder, run by one background thread: it copies events from
 *     the recent-events ring from the position kept in the state
 *     (ptm_store_fwd.h), forms the lines and writes them to the pipe
 *     without ever blocking for long (non-blocking writes, poll with a
 *     timeout), moving the position after each line fully written.
 *
 * At least once.  httpd keeps the pipe, so lines written but not read
 * survive a program's exit; what a program had read but not passed on
 * dies with it.  When the program exits, the parent notes how many bytes
 * the program had taken from the pipe (bytes written minus bytes still
 * unread), and the forwarder rewinds to the first line that ended after
 * that point less PTM_FWD_REWIND_BYTES: those lines are written again
 * (counted as repeats; `id` lets a consumer drop them).  A program that
 * held more than that unpublished can still lose lines.  A new httpd
 * (stop and start, a kill -9 of all of it) does the same from the last
 * line handed over: the program of the httpd before, and its pipe, may
 * have died with it. */
#ifndef PTM_FORWARD_H
#define PTM_FORWARD_H

#include <stdint.h>
#include <sys/types.h>
#include <apr_pools.h>
#include <apr_time.h>
#include "ptm_buf.h"
#include "ptm_store.h"

/* How far before the point a dead program had read up to the forwarder
 * goes back: what a consumer may have read but not yet published (a stdio
 * buffer, a batch, the queue of mosquitto_pub -l, which reads ahead of
 * what the broker has acknowledged: 64 KiB was seen to lose lines). */
#define PTM_FWD_REWIND_BYTES (1024 * 1024)

/** The n to write again from after a cold start: the earliest event the
 * ring holds before `next_n` such that the lines from it to `next_n` take
 * at most `margin` bytes (at least the last one); 0 when there is none. */
uint64_t ptm_fwd_cold_rewind(ptm_store_t *st, uint64_t next_n,
                             uint64_t margin, apr_pool_t *p);
/* Events taken from the ring per round. */
#define PTM_FWD_BATCH 512
/* Lines whose end in the pipe is remembered for rewinds. */
#define PTM_FWD_LOG 4096

typedef struct ptm_fwd_board_t ptm_fwd_board_t;

/* The last error, for server-status. */
typedef enum {
    PTM_FWD_OK = 0,
    PTM_FWD_ERR_START,      /* the program could not be started (errno) */
    PTM_FWD_ERR_EXIT,       /* the program exited (wait status) */
    PTM_FWD_ERR_FULL,       /* the pipe stayed full: program not reading */
    PTM_FWD_ERR_WRITE,      /* write to the pipe failed (errno) */
    PTM_FWD_ERR_DROPPED,    /* events left the ring unforwarded */
    PTM_FWD_ERR_READ        /* the ring could not be read (status) */
} ptm_fwd_err_e;

/** Bytes a board takes, and a board laid out in `mem` (8-aligned, at least
 * that many bytes). */
size_t ptm_fwd_board_size(void);
ptm_fwd_board_t *ptm_fwd_board_init(void *mem);

/** Make a board in anonymous shared memory from `p` (the process pool:
 * it must outlive generations).  Returns the error of apr_shm_create. */
apr_status_t ptm_fwd_board_create(ptm_fwd_board_t **out, apr_pool_t *p);

/** The parent started the program as `pid` (`restart`: after an exit). */
void ptm_fwd_program_started(ptm_fwd_board_t *b, pid_t pid, int restart);

/** The parent saw the program exit with wait status `status`; `unread`
 * bytes were still in the pipe (FIONREAD).  The forwarder rewinds. */
void ptm_fwd_program_exited(ptm_fwd_board_t *b, int status,
                            uint64_t unread);

/** Note an error (`num`: errno, wait status or apr_status_t). */
void ptm_fwd_note_error(ptm_fwd_board_t *b, ptm_fwd_err_e code, int num,
                        apr_time_t when);

/** The pid of the program (0: none running). */
pid_t ptm_fwd_program_pid(ptm_fwd_board_t *b);

/**
 * Take the lease for process `pid`: 1 if it holds it now (it had it, it
 * was free, or its holder no longer exists: kill(pid, 0) fails with
 * ESRCH), else 0.
 */
int ptm_fwd_lease(ptm_fwd_board_t *b, pid_t pid);

/** Give the lease back (its holder only). */
void ptm_fwd_unlease(ptm_fwd_board_t *b, pid_t pid);

typedef struct {
    pid_t program;          /* 0: not running */
    uint64_t restarts;      /* starts after an exit */
    pid_t forwarder;        /* the process holding the lease, 0: none */
    apr_time_t head;        /* acceptance of the oldest event not yet
                             * written, 0 when none is waiting */
    uint64_t written;       /* bytes written to the pipe */
    ptm_fwd_err_e err;
    int err_num;
    apr_time_t err_at;
} ptm_fwd_board_stats_t;

void ptm_fwd_board_stats(ptm_fwd_board_t *b, ptm_fwd_board_stats_t *out);

/** The message of an error (`buf` of `len` bytes gets it). */
const char *ptm_fwd_err_text(char *buf, size_t len, ptm_fwd_err_e code,
                             int num);

/* ---- pure parts (unit-tested alone) -------------------------------------- */

/** Append `{"id":"<epoch>-<n>",` + the file line after its `{` + "\n".
 * `line` must start with `{` and hold a member (every envelope does). */
void ptm_fwd_line(ptm_buf_t *out, uint64_t epoch, uint64_t n,
                  const char *line, size_t len);

/**
 * Where to go on from: `pos` the position kept (0: never forwarded),
 * `first` the n of the oldest event the ring holds (its next_n when it
 * holds none), `next` the n of the next event, `high` the position
 * before any rewind (what was handed over once already).  Returns the n
 * to go on from; `*dropped` gets how many events that were never handed
 * over left the ring (never forwarded: none; forwarding starts with the
 * ring's oldest).
 */
uint64_t ptm_fwd_resume(uint64_t pos, uint64_t first, uint64_t next,
                        uint64_t high, uint64_t *dropped);

/**
 * The rewind after a program exit: `consumed` the bytes the program had
 * taken from the pipe.  Returns the n of the first line of the log that
 * ended after consumed - `margin` (and forgets the lines from it on, which
 * are written again), or 0 when none did (nothing to write again).
 * `*short_of` is set when the log does not reach back that far (the rewind
 * goes to its oldest line).
 */
uint64_t ptm_fwd_rewind(ptm_fwd_board_t *b, uint64_t consumed,
                        uint64_t margin, int *short_of);

/* ---- the forwarder -------------------------------------------------------- */

typedef struct ptm_fwd_t ptm_fwd_t;

/** A forwarder writing to `fd` (made non-blocking here) the events of
 * `st`.  Memory from `p` and the heap (freed by ptm_fwd_destroy). */
ptm_fwd_t *ptm_fwd_create(ptm_fwd_board_t *b, ptm_store_t *st, int fd,
                          apr_pool_t *p);

/** What one round did, for the log. */
typedef struct {
    int idle;               /* nothing to forward: wait for an event */
    int blocked;            /* the pipe stayed full for the timeout */
    apr_status_t error;     /* a write or read failed (else APR_SUCCESS) */
    uint64_t lines;         /* lines fully written */
    uint64_t dropped;       /* events that had left the ring */
    uint64_t gap_from, gap_to; /* their n: [gap_from, gap_to) */
    uint64_t rewound_to;    /* n written again from, after an exit; 0 */
    int rewind_cold;        /* ... after a new httpd's start */
    int rewind_short;       /* the rewind could not reach back enough */
} ptm_fwd_report_t;

/**
 * One round: finish what is left of a write, rewind after a program
 * exit, copy events from the ring and write them, waiting at most
 * `timeout` for room in the pipe.  Cannot block longer.  Returns
 * APR_SUCCESS, or the error of the ring's lock (in `rep->error` too).
 */
apr_status_t ptm_fwd_step(ptm_fwd_t *f, apr_interval_time_t timeout,
                          ptm_fwd_report_t *rep);

/**
 * Stop: finish the line under way within `timeout` (a line is never left
 * half written if the program reads at all), or mark the stream torn (the
 * next forwarder starts with a newline, so the fragment stands alone).
 * Frees what ptm_fwd_create took from the heap.
 */
void ptm_fwd_destroy(ptm_fwd_t *f, apr_interval_time_t timeout);

#endif

/* The runs index (SPEC §12.2): every run the module started, with its id,
 * directory and start and stop times, so that GET /events finds a run's
 * file wherever its run_dir is, across restarts.  It is a journal in the
 * site directory, `<site_dir>/.runs.ndjson` (a name the module keeps,
 * SPEC §11.6), one line per start and one per stop, appended under the
 * store lock by whichever child starts or stops the run:
 *   {"run_id":"..","run_dir":"..","start":"<RFC 3339>"}
 *   {"run_dir":"..","stop":"<RFC 3339>"}
 * A reader never trusts it: what does not parse is skipped, and a run
 * directory is only opened beneath the site directory or a run root
 * without following a link (ptm_fs), as run start does. */
#ifndef PTM_RUNS_H
#define PTM_RUNS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

#define PTM_RUNS_FILE ".runs.ndjson"

typedef struct {
    const char *run_id;
    const char *run_dir;        /* as the store keeps it: absolute */
    apr_time_t start;
    apr_time_t stop;            /* APR_INT64_MAX while it may be active */
} ptm_runs_entry_t;

/**
 * Append the start line of a run to the journal of `site_dir` (created
 * 0644 if missing; opened without following a link), in one write.
 * Returns APR_SUCCESS or the error of open/write (nothing partial stays).
 */
apr_status_t ptm_runs_note_start(const char *site_dir, const char *run_id,
                                 size_t run_id_len, const char *run_dir,
                                 apr_time_t start, apr_pool_t *p);

/**
 * The journal's size now, for ptm_runs_cut: -1 when it is missing (or is
 * not a regular file reached without a link).
 */
apr_off_t ptm_runs_size(const char *site_dir, apr_pool_t *p);

/**
 * Take back what was appended since the journal had `size` bytes (-1: it
 * was missing, and goes again): a start noted for a run that then could
 * not start.  Only under the store lock, which every module writer of the
 * journal holds.  Returns APR_SUCCESS or the error of truncate/unlink.
 */
apr_status_t ptm_runs_cut(const char *site_dir, apr_off_t size,
                          apr_pool_t *p);

/** Append the stop line of the run in `run_dir`.  As ptm_runs_note_start. */
apr_status_t ptm_runs_note_stop(const char *site_dir, const char *run_dir,
                                apr_time_t stop, apr_pool_t *p);

/**
 * Read the journal of `site_dir` into `*runs` (ptm_runs_entry_t, in start
 * order; a stop matches the latest unstopped start of the same run_dir; a
 * run with no stop ends at the next start, the last one never).  A missing
 * journal is an empty index.  Lines that do not parse are skipped and
 * counted in `*skipped`.  Returns APR_SUCCESS or the error of reading.
 */
apr_status_t ptm_runs_read(apr_array_header_t **runs, unsigned *skipped,
                           const char *site_dir, apr_pool_t *p);

/**
 * As ptm_runs_read, from a per-process cache (see ptm_runs.c) that parses
 * only what was appended since the journal was last read by this process.
 * `*runs` is shared: read only, valid as long as `p`.  Safe from any
 * thread.  Returns APR_SUCCESS or the error of reading (or ENOMEM).
 */
apr_status_t ptm_runs_read_cached(const apr_array_header_t **runs,
                                  unsigned *skipped, const char *site_dir,
                                  apr_pool_t *p);

/** Drop what the cache of ptm_runs_read_cached holds (at child exit; a
 * snapshot a request still holds goes with its pool). */
void ptm_runs_cache_clear(void);

#endif

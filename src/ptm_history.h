/* GET /events (SPEC §12.2): the events of a window, from the recent-events
 * ring of the store (every event it still holds, ephemeral ones too) and
 * from the stored files (site day files, and the files of the runs in the
 * runs index), each event once, in (ts, stream, seq) order, filtered,
 * thinned by `every`, cut by `limit`, continued after a cursor.
 *
 * Memory stays bounded whatever the window: the window is taken a slice
 * of time at a time (a slice is split when it holds too many events); in
 * each slice only the keys of the matching events are held and sorted,
 * and their lines are read back when they are emitted.  Only the files
 * that can hold events of the slice are opened: the site day files of its
 * days and one more on each side (a client-supplied ts may be a day off),
 * and the run files of the runs that were active around it. */
#ifndef PTM_HISTORY_H
#define PTM_HISTORY_H

#include <apr_pools.h>
#include <apr_tables.h>
#include "ptm_query.h"
#include "ptm_store.h"

typedef struct {
    ptm_store_t *store;
    const char *site_dir;                 /* normalised absolute path */
    const apr_array_header_t *run_roots;  /* const char *, normalised */
    size_t page_bytes;                    /* the answer ends (`more`) before
                                           * the event that would take its
                                           * lines past this; never before
                                           * its first; 0: no such end */
    /* 1 when the client has gone away (may be NULL): a long query stops
     * between slices rather than answer nobody. */
    int (*gone)(void *ctx);
    void *gone_ctx;
} ptm_history_conf_t;

/** Takes one selected event: its line (the file form, no newline; valid
 * during the call only).  A status other than APR_SUCCESS (the client
 * went away) stops the query and is returned by it. */
typedef apr_status_t (*ptm_history_emit_fn)(void *ctx, const char *line,
                                            size_t len);

typedef struct {
    unsigned events;            /* emitted */
    int more;                   /* `limit` cut the selection short */
    ptm_key_t last;             /* the key of the last one emitted */
    uint64_t skipped;           /* damaged or foreign lines met */
    apr_time_t recent_since;    /* when the ring's oldest event was
                                 * accepted; 0: ring off or empty */
} ptm_history_result_t;

/**
 * Select the events of `q` at `now` and hand them to `emit` in q's order
 * (ascending when q->ndjson).  Returns APR_SUCCESS with `*res`, the error
 * of `emit`, or the error of the store; a file that cannot be read or a
 * line that does not parse is skipped (and counted), never an error.
 */
apr_status_t ptm_history_query(ptm_history_result_t *res,
                               const ptm_history_conf_t *conf,
                               const ptm_query_t *q, apr_time_t now,
                               ptm_history_emit_fn emit, void *ctx,
                               apr_pool_t *p);

#endif

/* The parameters of GET /events (SPEC §12.2): the query string parsed and
 * checked into a ptm_query_t (422 items at ["query", name] for each bad
 * one), RFC 3339 times and durations resolved against the clock, and the
 * cursor that carries a page's position and window to the next request. */
#ifndef PTM_QUERY_H
#define PTM_QUERY_H

#include <stdint.h>
#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include "ptm_err.h"

/* Where an event sorts (SPEC §12.2: by ts, then stream, site first, then
 * seq).  `tie` tells apart run events of different runs that share ts and
 * seq (run counters of different states): the FNV-1a 32-bit hash of the
 * run directory as the store keeps it (ptm_query_tie), 0 for site. */
typedef struct {
    apr_time_t ts;      /* microseconds since the epoch, UTC */
    int stream;         /* PTM_STREAM_SITE (0) or PTM_STREAM_RUN (1) */
    uint64_t seq;
    uint32_t tie;
} ptm_key_t;

/** <0, 0, >0 as `a` sorts before, with, after `b`. */
int ptm_key_cmp(const ptm_key_t *a, const ptm_key_t *b);

/** The `tie` of a run directory (FNV-1a 32 of its bytes; never 0). */
uint32_t ptm_query_tie(const char *run_dir, size_t len);

enum { PTM_Q_ALL = -1 };    /* stream: site (0), run (1) or both */

#define PTM_QUERY_LIMIT_MAX 10000
/* The most type= values a GET /events or GET /stream may give (each is
 * compared with the ring's events under the store lock). */
#define PTM_QUERY_TYPES_MAX 64
#define PTM_QUERY_LIMIT_DEFAULT 1000

typedef struct {
    /* type=: each as the canonical JSON string the files hold
     * ("\"weather\""), so that it compares as bytes; empty: all types. */
    apr_array_header_t *types;          /* ptm_query_str_t */
    apr_time_t since;                   /* inclusive */
    apr_time_t until;                   /* exclusive; APR_INT64_MAX: none */
    int stream;                         /* PTM_Q_ALL, 0 or 1 */
    const char *run_id;                 /* decoded UTF-8, or NULL */
    size_t run_id_len;
    int desc;                           /* order=desc (the default) */
    int limit;                          /* events per answer; 0: none */
    int limit_given;
    apr_interval_time_t every;          /* bucket width; 0: none */
    int ndjson;                         /* format=ndjson */
    int has_after;                      /* a cursor was given: */
    ptm_key_t after;                    /* continue after this key */
    uint64_t params;                    /* hash of the parameters a
                                         * cursor belongs to */
} ptm_query_t;

typedef struct {
    const char *s;
    size_t len;
} ptm_query_str_t;

/**
 * Parse the query string `args` (raw, as in the URL; NULL or "" for none)
 * of GET /events at `now`.  `accept_ndjson` is 1 when the request's Accept
 * asks for application/x-ndjson (format=ndjson does the same; format=json
 * or format=ndjson, when given, wins over Accept).  `epoch` is the store's
 * epoch: cursors are bound to it.  With a valid cursor, since and until
 * are the window of the cursor's first page, not the text resolved at
 * `now`.  Returns 0, or -1 with one 422 item per bad parameter in `err`
 * (`q` is then unspecified).
 */
int ptm_query_parse(ptm_query_t *q, ptm_err_t *err, const char *args,
                    int accept_ndjson, apr_time_t now, uint64_t epoch,
                    apr_pool_t *p);

/**
 * Percent-decode s[0..n): %XX is a byte, a '%' that does not start two
 * hex digits stays as it is, and with `plus` a '+' is a space (a query
 * string, as Python's unquote_plus; a path segment keeps its '+').
 * Returns a NUL-terminated copy from `p` with its length in `*len` (%00
 * decodes to a NUL inside it).  Cannot fail.
 */
char *ptm_query_unescape(size_t *len, const char *s, size_t n, int plus,
                         apr_pool_t *p);

/** The cursor continuing `q` (as ptm_query_parse left it) after `last`:
 * 72 characters of base64url, safe in a URL unescaped.  Cannot fail. */
const char *ptm_query_cursor(const ptm_query_t *q, const ptm_key_t *last,
                             uint64_t epoch, apr_pool_t *p);

#endif

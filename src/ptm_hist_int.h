/* What the parts of GET /events' engine share and nobody else sees: the
 * state of a request and of a slice, the line prefix, the few constants
 * and helpers they all use, and the functions that cross from one part
 * to another.  The design is told at the top of ptm_history.c.
 *
 *   ptm_history.c    the query: the window walked in slices, the runs
 *                    near it, each slice's lines handed out in order
 *   ptm_hist_line.c  one NDJSON line (its prefix parsed by ptm_line.c):
 *                    the tests it must pass to be selected
 *   ptm_hist_keys.c  a slice's keys: where each selected event is; with
 *                    `every`, one per type per bucket
 *   ptm_hist_ring.c  the ring's events of a slice, and what it held of
 *                    the files
 *   ptm_hist_files.c the day files and run files of a slice: read,
 *                    scanned for its keys, what is known of them
 */
#ifndef PTM_HIST_INT_H
#define PTM_HIST_INT_H

#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <apr_hash.h>
#include <apr_tables.h>
#include <apr_time.h>
#include "ptm_buf.h"
#include "ptm_filecache.h"
#include "ptm_history.h"
#include "ptm_line.h"
#include "ptm_time.h"

/* Keys held by one slice (about 70 bytes each).  The unit tests lower it
 * to see slices split. */
#ifndef PTM_HISTORY_SLICE_CAP
#define PTM_HISTORY_SLICE_CAP 65536
#endif
#ifdef PTM_TEST_HOOKS
extern unsigned ptm_history_slice_cap;
#define SLICE_CAP ((size_t)ptm_history_slice_cap)
#else
#define SLICE_CAP ((size_t)PTM_HISTORY_SLICE_CAP)
#endif

#define DAY ((apr_time_t)86400 * APR_USEC_PER_SEC)
/* Day files are named by the server clock: none before the epoch, none
 * much after now.  Outside, a slice asks the ring and the run files only. */
#define ERA_LO ((apr_time_t)0)

/* ---- what a request keeps ------------------------------------------------*/

typedef struct {
    apr_time_t lo, hi;
} span_t;

/* A file that may hold events: a site day file or a run file. */
typedef struct {
    int run;                    /* PTM_STREAM_SITE or PTM_STREAM_RUN */
    char day[PTM_DAYKEY_LEN + 1];
    const char *root, *rel;     /* run: its directory, for ptm_fs */
    uint32_t tie;               /* run: what its lines sort with */
    apr_array_header_t *ties;   /* run: uint32_t, of each run that used it */
    apr_array_header_t *spans;  /* run: span_t, when they were active */
    int gone;                   /* missing or refused: not looked at again */
    int known;                  /* read to its end once: min..max hold */
    int counted;                /* its damaged lines are counted */
    apr_time_t min, max;        /* ts range of its lines (min > max: none) */
} src_t;

/* Where one selected event is. */
typedef struct {
    ptm_key_t key;
    uint64_t off;               /* file: offset of the line; ring: index */
    uint64_t thash;             /* every: hash of the type */
    const char *type;           /* every: the type's bytes, or NULL (long:
                                 * read back from the file) */
    uint32_t len;               /* of the line, without the newline */
    uint32_t type_off, type_len;
    int file;                   /* index in the slice's files; -1: ring */
} ent_t;

typedef struct {
    int fd;
    src_t *src;
    dev_t dev;
    ino_t ino;
    char *data;                 /* read whole: its bytes (ptm_stash_take) */
    size_t len, cap;
    int verified;               /* its lines that can be sent are known to
                                 * be well-formed, in exactly these bytes */
    const ptm_fc_t *fc;         /* data is the child's kept copy */
} sfile_t;

typedef struct {
    const ptm_history_conf_t *conf;
    const ptm_query_t *q;
    ptm_history_result_t *res;
    ptm_history_emit_fn emit;
    void *ctx;
    apr_pool_t *p;
    apr_time_t lo, hi;          /* the window, narrowed by the cursor */
    apr_time_t era_hi;
    int asc;
    int looking;                /* limit reached: does one more match? */
    int done;
    size_t bytes;               /* of the lines emitted */
    int site_fd;
    apr_hash_t *days;           /* day key -> src_t */
    apr_array_header_t *runs;   /* src_t * */
    /* The ring, as first seen by a complete look. */
    int ring_asked;
    int ring_on;
    int ring_range;             /* ring_min..ring_max hold */
    apr_time_t ring_min, ring_max;
    /* The first look copied the ring's events of the whole window (they
     * were few enough): the slices take theirs from this copy. */
    apr_array_header_t *ring_all;   /* ptm_recent_t, or NULL */
    ptm_recent_info_t ring_all_info;
    /* run_id= as the files hold it. */
    ptm_buf_t rid;
    int rid_int;                /* it is also an integer's text */
    /* Reused from slice to slice (malloc'd; freed by a cleanup). */
    char *buf;
    size_t buf_cap;
    char *lbuf;
    size_t lbuf_cap;
    ent_t *ents;
    size_t ents_cap;
    ent_t **order;              /* the slice's ents, sorted */
    size_t order_cap;
    ent_t **merge;              /* room for sorting them */
    size_t merge_cap;
    size_t held;                /* bytes of files read whole, held now */
    unsigned kept;              /* files this request gave the child */
    uint32_t *slots;            /* every: index + 1 of ents, 0: free */
    size_t nslots;
} hist_t;

typedef struct {
    apr_time_t t0, t1;
    apr_pool_t *p;
    size_t cap;                 /* entries allowed (SIZE_MAX: any) */
    size_t n;
    int overflow;
    int found;                  /* looking: one more matched */
    apr_array_header_t *ring;   /* ptm_recent_t copies */
    apr_hash_t *ring_keys;      /* rkey_t of each copy */
    int have_info;
    ptm_recent_info_t info;
    apr_array_header_t *files;  /* sfile_t */
} slice_t;

/* A parsed line prefix (ptm_line.h). */
typedef ptm_line_t line_t;

/* ---- arithmetic ----------------------------------------------------------*/

static inline apr_time_t sat_add(apr_time_t a, apr_time_t d)
{
    return a > APR_INT64_MAX - d ? APR_INT64_MAX : a + d;
}

static inline apr_time_t sat_sub(apr_time_t a, apr_time_t d)
{
    return a < APR_INT64_MIN + d ? APR_INT64_MIN : a - d;
}

static inline apr_time_t floor_div(apr_time_t a, apr_time_t b)
{
    apr_time_t q = a / b;

    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static inline int overlaps(apr_time_t lo, apr_time_t hi, apr_time_t t0,
                           apr_time_t t1)
{
    return lo < t1 && hi > t0;
}

/* ---- ptm_hist_line.c: one line -------------------------------------------*/

int ptm_hist_run_id_matches(const hist_t *h, const char *s, size_t n,
                            size_t i);

/* The three below run for every line and ring event: inline, as they
 * were before the engine was split in files.
 *
 * The ts of a parsed line (apart: a line of a type not asked for needs
 * none).  An escape is never part of a time, and the module's lines
 * escape nothing a time holds: a ts with one is not a time here, nor in
 * the ring (which parsed the decoded string). */
static inline apr_time_t ptm_hist_line_ts(line_t *l, const char *s)
{
    if (memchr(s + l->ts_off, '\\', l->ts_len)
        || ptm_time_parse_rfc3339(&l->ts, s + l->ts_off, l->ts_len, 1) != 0) {
        l->ts = PTM_TS_NONE;
    }
    return l->ts;
}

/* 1 if the query asks for type t[0..n) (or for every type). */
static inline int ptm_hist_type_wanted(const ptm_query_t *q, const char *t,
                                       size_t n)
{
    int i;

    if (!q->types || q->types->nelts == 0) {
        return 1;
    }
    for (i = 0; i < q->types->nelts; i++) {
        const ptm_query_str_t *w = &APR_ARRAY_IDX(q->types, i,
                                                  ptm_query_str_t);

        if (w->len == n && memcmp(w->s, t, n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Strictly after the cursor, in the answer's order. */
static inline int ptm_hist_after_cursor(const hist_t *h,
                                        const ptm_key_t *k)
{
    int c;

    if (!h->q->has_after) {
        return 1;
    }
    c = ptm_key_cmp(k, &h->q->after);
    return h->asc ? c > 0 : c < 0;
}

/* ---- ptm_hist_keys.c: collecting keys ------------------------------------*/

/* Grow the malloc'd array *mem to hold `need` items of `size`; -1 when
 * memory is out (*mem unchanged). */
int ptm_hist_grow(void **mem, size_t *cap, size_t need, size_t size);
int ptm_hist_slots_grow(hist_t *h, size_t want, size_t n);
int ptm_hist_add_key(hist_t *h, slice_t *sl, ent_t *c, const char *type);

/* ---- ptm_hist_ring.c: the ring -------------------------------------------*/

apr_status_t ptm_hist_take_ring(hist_t *h, slice_t *sl);
apr_array_header_t *ptm_hist_ring_spans(const slice_t *sl,
                                        const src_t *src);
/* 1 if seq is in one of the spans.  Inline too: asked for every line of a
 * file the ring held a part of. */
static inline int ptm_hist_in_spans(const apr_array_header_t *spans,
                                    uint64_t seq)
{
    int i;

    for (i = 0; spans && i < spans->nelts; i++) {
        const ptm_recent_span_t *r = &APR_ARRAY_IDX(spans, i,
                                                    ptm_recent_span_t);

        if (seq >= r->lo && seq <= r->hi) {
            return 1;
        }
    }
    return 0;
}

int ptm_hist_ring_has(const slice_t *sl, const src_t *src, const line_t *l);

/* ---- ptm_hist_files.c: the files and their days --------------------------*/

apr_time_t ptm_hist_day_noon(apr_time_t t, int add);
void ptm_hist_sfile_close(hist_t *h, sfile_t *sf);
void ptm_hist_read_files(hist_t *h, slice_t *sl);

#endif

/* Unit tests for ptm_history, the engine of GET /events (SPEC §12.2), on a
 * real store (plain memory, one process) with its ring, real site day
 * files and run files written by the store (or by hand, for damage), and
 * the runs journal.  Each test keeps a model of what it posted and checks
 * the answer against it: order by (ts, stream, seq) whatever the files'
 * order, client ts a day off in a neighbouring day file, both orders, the
 * filters and the window's bounds, ring and files merged with nothing
 * twice and nothing missed where they meet (the ring wrapped; file lines
 * altered to tell which copy was taken), ephemeral events while the ring
 * has them, `every`, limits and cursors (also with events posted between
 * pages), damaged and planted files, the cost of a window in a long
 * archive, and slices split when they hold too much.
 *
 * The process runs in a fixed zone east of UTC (UTC+3) so the noon-local
 * day files are not UTC's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include "ptm_buf.h"
#include "ptm_facts.h"
#include "ptm_fs.h"
#include "ptm_history.h"
#include "ptm_json.h"
#include "ptm_query.h"
#include "ptm_runs.h"
#include "ptm_store.h"
#include "ptm_store_int.h"
#include "ptm_test_hook.h"
#include "ptm_time.h"

extern unsigned ptm_history_slice_cap;

#define SIZE (4 * 1024 * 1024)
#define HOUR ((apr_time_t)3600 * APR_USEC_PER_SEC)
#define DAY (24 * HOUR)

/* ---- a store, a site dir, and a model of what was posted -----------------*/

typedef struct {
    int i;                  /* data {"i":i}: which event a line is */
    apr_time_t ts;          /* PTM_TS_NONE when not a time */
    int stream;
    uint64_t seq;
    uint32_t tie;
    int stored;
    const char *type;       /* as JSON ("\"weather\"") */
    const char *run_id;     /* meta.run_id as JSON, or NULL */
    const char *line;
    int in_ring;            /* (set by ring_now) */
} ev_t;

typedef struct {
    apr_pool_t *p;
    void *base;
    ptm_store_t *st;
    char *dir;
    ptm_history_conf_t conf;
    apr_array_header_t *roots;
    apr_array_header_t *evs;        /* ev_t */
    const char *site_meta;          /* meta of site events */
    int next_i;
} fx_t;

static fx_t *open_fx;

static void fx_open(fx_t *fx, apr_size_t ring)
{
    memset(fx, 0, sizeof(*fx));
    assert_int_equal(apr_pool_create(&fx->p, gpool), APR_SUCCESS);
    fx->dir = ptm_unit_tmpdir(fx->p, "ptm_history_test");
    fx->base = calloc(1, SIZE);
    assert_non_null(fx->base);
    ptm_store_format(fx->base, SIZE, ring);
    fx->st = ptm_store_attach(fx->base, NULL, fx->p);
    fx->roots = apr_array_make(fx->p, 2, sizeof(const char *));
    fx->conf.store = fx->st;
    fx->conf.site_dir = fx->dir;
    fx->conf.run_roots = fx->roots;
    fx->evs = apr_array_make(fx->p, 64, sizeof(ev_t));
    fx->site_meta = "{}";
    ptm_history_slice_cap = 65536;
    open_fx = fx;
}

static void fx_close(fx_t *fx)
{
    open_fx = NULL;
    ptm_test_hook = NULL;
    ptm_history_slice_cap = 65536;
    ptm_store_close_files(fx->st);
    rm_rf(fx->dir);
    free(fx->base);
    apr_pool_destroy(fx->p);
}

static int test_teardown(void **state)
{
    (void)state;
    if (open_fx) {
        fx_close(open_fx);
    }
    return 0;
}

static apr_time_t T(const char *s)
{
    apr_time_t t;

    if (ptm_time_parse_rfc3339(&t, s, strlen(s), 0) != 0) {
        fail_msg("bad time in the test: %s", s);
    }
    return t;
}

static const char *iso(apr_pool_t *p, apr_time_t t)
{
    char b[PTM_TS_LEN + 1];

    ptm_time_utc_iso(b, t);
    return apr_pstrdup(p, b);
}

static const char *day_file(fx_t *fx, apr_time_t accepted)
{
    char k[PTM_DAYKEY_LEN + 1];

    assert_int_equal(ptm_time_day_key(k, accepted), APR_SUCCESS);
    return apr_pstrcat(fx->p, fx->dir, "/site_", k, ".ndjson", NULL);
}

/* Post one event through the store, as the handler does: to the run if
 * one is active, else to the site day file of `accepted`; with a `ts`
 * string as the client sent it (any string).  Returns its model. */
static ev_t *post(fx_t *fx, apr_time_t accepted, const char *ts,
                  const char *type, int stored)
{
    ptm_store_event_t e;
    ptm_store_run_t run;
    ev_t *m;
    const char *meta, *head;
    uint64_t seq = 0;
    int i = ++fx->next_i;

    memset(&e, 0, sizeof(e));
    assert_int_equal(ptm_store_run_peek(&run, fx->st, fx->p), APR_SUCCESS);
    m = apr_array_push(fx->evs);
    memset(m, 0, sizeof(*m));
    m->i = i;
    m->stream = run.active ? PTM_STREAM_RUN : PTM_STREAM_SITE;
    m->type = apr_psprintf(fx->p, "\"%s\"", type);
    if (run.active) {
        m->run_id = apr_psprintf(fx->p, "\"%s\"", run.run_id);
        meta = apr_psprintf(fx->p, "{\"run_id\":%s}", m->run_id);
        m->tie = ptm_query_tie(run.run_dir, strlen(run.run_dir));
    }
    else {
        meta = fx->site_meta;
        if (strstr(meta, "\"run_id\":")) {
            const char *v = strstr(meta, "\"run_id\":") + 9;

            m->run_id = apr_pstrndup(fx->p, v, strcspn(v, ",}"));
        }
    }
    if (ptm_time_parse_rfc3339(&m->ts, ts, strlen(ts), 1) != 0) {
        m->ts = PTM_TS_NONE;
    }
    m->stored = stored;
    e.run_gen = run.gen;
    e.stream = m->stream;
    e.key = m->type;
    e.key_len = strlen(m->type);
    e.ts_part = apr_psprintf(fx->p, ",\"ts\":\"%s\"", ts);
    e.ts_len = strlen(e.ts_part);
    e.body_part = apr_psprintf(fx->p, ",\"type\":%s,\"data\":{\"i\":%d},"
                               "\"meta\":%s}", m->type, i, meta);
    e.body_len = strlen(e.body_part);
    e.make_current = 1;
    e.fd = -1;
    if (stored) {
        e.path = run.active
                 ? apr_pstrcat(fx->p, run.run_dir, "/telemetry.ndjson", NULL)
                 : day_file(fx, accepted);
    }
    e.pool = fx->p;
    e.accepted = accepted;
    e.ts_us = m->ts;
    e.tie = m->tie;
    e.stored = stored;
    assert_int_equal(ptm_store_event(fx->st, &e, &seq), APR_SUCCESS);
    m->seq = seq;
    head = apr_psprintf(fx->p, "{\"seq\":%" PRIu64 "%s,\"stream\":\"%s\"",
                        seq, e.ts_part, run.active ? "run" : "site");
    m->line = apr_pstrcat(fx->p, head, e.body_part, NULL);
    m->line = apr_pstrndup(fx->p, m->line, strlen(m->line));
    return m;
}

/* Post at `accepted` with ts = accepted (as the client's clock says). */
static ev_t *post_now(fx_t *fx, apr_time_t accepted, const char *type,
                      int stored)
{
    return post(fx, accepted, iso(fx->p, accepted), type, stored);
}

static void start_run(fx_t *fx, const char *id, const char *dir,
                      apr_time_t when, int journal)
{
    const char *obj = apr_psprintf(fx->p, "{\"run_dir\":\"%s\","
                                   "\"run_id\":\"%s\"}", dir, id);

    assert_int_equal(ptm_fs_mkdirs(dir, fx->p), APR_SUCCESS);
    assert_int_equal(ptm_store_run_start(fx->st, obj, strlen(obj), id,
                                         strlen(id), dir, NULL, NULL),
                     APR_SUCCESS);
    if (journal) {
        assert_int_equal(ptm_runs_note_start(fx->dir, id, strlen(id), dir,
                                             when, fx->p), APR_SUCCESS);
    }
}

static void stop_run(fx_t *fx, const char *dir, apr_time_t when)
{
    ptm_buf_t b;

    ptm_buf_init(&b, fx->p, 128);
    assert_int_equal(ptm_store_run_stop(fx->st, &b), APR_SUCCESS);
    assert_int_equal(ptm_runs_note_stop(fx->dir, dir, when, fx->p),
                     APR_SUCCESS);
}

static void append_raw(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);

    if (fd < 0) {
        fail_msg("open %s: %s", path, strerror(errno));
    }
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
    close(fd);
}

/* Mark the model's events the ring holds now. */
static void ring_now(fx_t *fx)
{
    apr_array_header_t *out = apr_array_make(fx->p, 64, sizeof(ptm_recent_t));
    ptm_recent_info_t info;
    int i, j;

    assert_int_equal(ptm_store_recent(&info, out, NULL, fx->st, 0, 0, NULL,
                                      NULL, fx->p), APR_SUCCESS);
    for (j = 0; j < fx->evs->nelts; j++) {
        APR_ARRAY_IDX(fx->evs, j, ev_t).in_ring = 0;
    }
    for (i = 0; i < out->nelts; i++) {
        const ptm_recent_t *r = &APR_ARRAY_IDX(out, i, ptm_recent_t);

        for (j = 0; j < fx->evs->nelts; j++) {
            ev_t *m = &APR_ARRAY_IDX(fx->evs, j, ev_t);

            if (m->stream == r->stream && m->seq == r->seq
                && m->tie == r->tie) {
                m->in_ring = 1;
            }
        }
    }
}

/* ---- queries -------------------------------------------------------------*/

static ptm_query_t query(fx_t *fx, apr_time_t since)
{
    ptm_query_t q;

    memset(&q, 0, sizeof(q));
    q.types = apr_array_make(fx->p, 2, sizeof(ptm_query_str_t));
    q.since = since;
    q.until = APR_INT64_MAX;
    q.stream = PTM_Q_ALL;
    q.desc = 1;
    return q;
}

static void want_type(fx_t *fx, ptm_query_t *q, const char *type)
{
    ptm_query_str_t *s = apr_array_push(q->types);

    s->s = apr_psprintf(fx->p, "\"%s\"", type);
    s->len = strlen(s->s);
}

static apr_status_t sink(void *ctx, const char *line, size_t len)
{
    apr_array_header_t *a = ctx;

    /* An emitted line is one line of JSON, without its newline. */
    assert_null(memchr(line, '\n', len));
    APR_ARRAY_PUSH(a, const char *) = apr_pstrmemdup(a->pool, line, len);
    return APR_SUCCESS;
}

static apr_array_header_t *run_q(fx_t *fx, const ptm_query_t *q,
                                 apr_time_t now, ptm_history_result_t *res)
{
    apr_array_header_t *out = apr_array_make(fx->p, 64, sizeof(const char *));
    ptm_history_result_t r;

    assert_int_equal(ptm_history_query(res ? res : &r, &fx->conf, q, now,
                                       sink, out, fx->p), APR_SUCCESS);
    return out;
}

static int id_of(const char *line)
{
    const char *d = strstr(line, "\"data\":{\"");
    int i = -1;

    if (d) {
        sscanf(d + 12, "%d", &i);           /* "data":{"i":N */
    }
    return i;
}

static int key_of_ev(const ev_t *m, ptm_key_t *k)
{
    k->ts = m->ts;
    k->stream = m->stream;
    k->seq = m->seq;
    k->tie = m->tie;
    return 0;
}

static const ptm_query_t *sort_q;

static int ev_cmp(const void *a, const void *b)
{
    const ev_t *x = *(const ev_t *const *)a, *y = *(const ev_t *const *)b;
    ptm_key_t kx, ky;
    int c;

    key_of_ev(x, &kx);
    key_of_ev(y, &ky);
    c = ptm_key_cmp(&kx, &ky);
    return (sort_q->ndjson || !sort_q->desc) ? c : -c;
}

static int model_type_ok(const ptm_query_t *q, const ev_t *m)
{
    int i;

    if (q->types->nelts == 0) {
        return 1;
    }
    for (i = 0; i < q->types->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(q->types, i, ptm_query_str_t).s,
                   m->type) == 0) {
            return 1;
        }
    }
    return 0;
}

static apr_time_t fdiv(apr_time_t a, apr_time_t b)
{
    return a / b - (a % b != 0 && a < 0);
}

/* What the answer must be, from the model: the events still stored or in
 * the ring, matching, in order, thinned by `every`, after the cursor. */
static apr_array_header_t *expect(fx_t *fx, const ptm_query_t *q)
{
    apr_array_header_t *sel = apr_array_make(fx->p, 64, sizeof(ev_t *));
    apr_array_header_t *out = apr_array_make(fx->p, 64, sizeof(const char *));
    int i, j;

    ring_now(fx);
    for (i = 0; i < fx->evs->nelts; i++) {
        ev_t *m = &APR_ARRAY_IDX(fx->evs, i, ev_t);

        if ((!m->stored && !m->in_ring) || m->ts == PTM_TS_NONE
            || m->ts < q->since || m->ts >= q->until
            || (q->stream != PTM_Q_ALL && m->stream != q->stream)
            || !model_type_ok(q, m)) {
            continue;
        }
        if (q->run_id) {
            const char *want = apr_psprintf(fx->p, "\"%s\"", q->run_id);

            if (!m->run_id || (strcmp(m->run_id, want) != 0
                               && strcmp(m->run_id, q->run_id) != 0)) {
                continue;
            }
        }
        APR_ARRAY_PUSH(sel, ev_t *) = m;
    }
    if (q->every) {
        /* The greatest key per type per bucket. */
        for (i = 0; i < sel->nelts; i++) {
            ev_t *a = APR_ARRAY_IDX(sel, i, ev_t *);
            ptm_key_t ka, kb;

            if (!a) {
                continue;
            }
            key_of_ev(a, &ka);
            for (j = 0; j < sel->nelts; j++) {
                ev_t *b = APR_ARRAY_IDX(sel, j, ev_t *);

                if (!b || b == a || strcmp(a->type, b->type) != 0
                    || fdiv(a->ts, q->every) != fdiv(b->ts, q->every)) {
                    continue;
                }
                key_of_ev(b, &kb);
                if (ptm_key_cmp(&kb, &ka) > 0) {
                    APR_ARRAY_IDX(sel, i, ev_t *) = NULL;
                    break;
                }
            }
        }
    }
    sort_q = q;
    for (i = j = 0; i < sel->nelts; i++) {
        if (APR_ARRAY_IDX(sel, i, ev_t *)) {
            APR_ARRAY_IDX(sel, j++, ev_t *) = APR_ARRAY_IDX(sel, i, ev_t *);
        }
    }
    sel->nelts = j;
    qsort(sel->elts, (size_t)sel->nelts, sizeof(ev_t *), ev_cmp);
    for (i = 0; i < sel->nelts; i++) {
        ev_t *m = APR_ARRAY_IDX(sel, i, ev_t *);
        ptm_key_t k;

        key_of_ev(m, &k);
        if (q->has_after) {
            int c = ptm_key_cmp(&k, &q->after);

            if ((q->ndjson || !q->desc) ? c <= 0 : c >= 0) {
                continue;
            }
        }
        APR_ARRAY_PUSH(out, const char *) = m->line;
    }
    return out;
}

static void same_lines(const apr_array_header_t *got,
                       const apr_array_header_t *want)
{
    int i;

    for (i = 0; i < got->nelts && i < want->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(got, i, const char *),
                   APR_ARRAY_IDX(want, i, const char *)) != 0) {
            fail_msg("line %d:\n  got  %s\n  want %s", i,
                     APR_ARRAY_IDX(got, i, const char *),
                     APR_ARRAY_IDX(want, i, const char *));
        }
    }
    if (got->nelts != want->nelts) {
        fail_msg("%d lines, want %d (next: %s)", got->nelts, want->nelts,
                 got->nelts > want->nelts
                 ? APR_ARRAY_IDX(got, want->nelts, const char *)
                 : APR_ARRAY_IDX(want, got->nelts, const char *));
    }
}

/* Check `q` against the model, both orders. */
static void check_both(fx_t *fx, ptm_query_t q, apr_time_t now)
{
    q.desc = 1;
    same_lines(run_q(fx, &q, now, NULL), expect(fx, &q));
    q.desc = 0;
    same_lines(run_q(fx, &q, now, NULL), expect(fx, &q));
    q.desc = 1;
    q.ndjson = 1;                               /* always ascending */
    same_lines(run_q(fx, &q, now, NULL), expect(fx, &q));
}

/* Follow cursors with pages of `limit`; the pages joined. */
static apr_array_header_t *paged(fx_t *fx, ptm_query_t q, int limit,
                                 apr_time_t now)
{
    apr_array_header_t *all = apr_array_make(fx->p, 64, sizeof(const char *));
    ptm_history_result_t res;
    int pages = 0;

    q.limit = limit;
    do {
        apr_array_header_t *page = run_q(fx, &q, now, &res);

        assert_true(page->nelts <= limit);
        assert_int_equal(res.events, (unsigned)page->nelts);
        apr_array_cat(all, page);
        q.has_after = 1;
        q.after = res.last;
        assert_true(++pages < 10000);
    } while (res.more);
    return all;
}

/* ---- hooks ---------------------------------------------------------------*/

static apr_hash_t *opened_days;
static unsigned run_opens, splits, slices, runs_kept;

static void count_hook(const char *where, unsigned n)
{
    if (strcmp(where, "history:open-day") == 0) {
        unsigned *k = apr_palloc(gpool, sizeof(*k));

        *k = n;
        apr_hash_set(opened_days, k, sizeof(*k), k);
    }
    else if (strcmp(where, "history:open-run") == 0) {
        run_opens++;
    }
    else if (strcmp(where, "history:split") == 0) {
        splits++;
    }
    else if (strcmp(where, "history:run") == 0) {
        runs_kept++;
    }
    else if (strcmp(where, "history:slice") == 0) {
        slices++;
    }
}

static void hook_on(void)
{
    opened_days = apr_hash_make(gpool);
    run_opens = splits = slices = runs_kept = 0;
    ptm_test_hook = count_hook;
}

/* ---- tests ---------------------------------------------------------------*/

/* Client ts out of file order, a ts a day off in the neighbouring day
 * file, site and run events sharing a ts (site first), both orders; with
 * the ring off (files only) and on (every event in both). */
static void test_order(void **state)
{
    static fx_t fx;
    apr_size_t rings[2] = { 0, 1024 * 1024 };
    apr_time_t d = T("2026-03-17T10:00:00Z"), now;
    const char *run_dir;
    int r;

    for (r = 0; r < 2; r++) {
        fx_open(&fx, rings[r]);
        run_dir = apr_pstrcat(fx.p, fx.dir, "/001", NULL);
        /* Day 1: 10:00Z is 13:00 local: file 20260317. */
        post(&fx, d, "2026-03-17T10:00:05.000Z", "weather", 1);
        post(&fx, d + 1, "2026-03-17T09:00:00.000Z", "weather", 1);
        post(&fx, d + 2, "2026-03-17T10:00:05.000Z", "power", 1);
        /* Accepted on day 1 (file 20260317) with day 2's ts (a clock
         * ahead), and on day 2 (file 20260318) with day 1's. */
        post(&fx, d + 3, "2026-03-18T11:30:00.000Z", "power", 1);
        post(&fx, d + DAY, "2026-03-17T11:00:00.000Z", "weather", 1);
        /* Offsets and fractions. */
        post(&fx, d + DAY + 1, "2026-03-18T13:00:00.5+03:00", "weather", 1);
        post(&fx, d + DAY + 2, "2026-03-18T10:00:00.4999Z", "power", 1);
        /* Not a time: never in a window. */
        post(&fx, d + DAY + 3, "yesterday", "weather", 1);
        post(&fx, d + DAY + 4, "", "weather", 1);
        /* A run: one of its events shares a site event's ts. */
        start_run(&fx, "001", run_dir, d + DAY + 10, 1);
        post(&fx, d + DAY + 11, "2026-03-17T10:00:05.000Z", "weather", 1);
        post(&fx, d + DAY + 12, "2026-03-18T12:00:00.000Z", "weather", 1);
        stop_run(&fx, run_dir, d + DAY + 13);
        /* Day 3, before noon local (08:00Z = 11:00 local): file 20260318. */
        post(&fx, d + 2 * DAY - 2 * HOUR, "2026-03-18T23:00:00.000Z",
             "weather", 1);
        post(&fx, d + 2 * DAY - 2 * HOUR + 1, "2026-03-19T08:00:00.000Z",
             "weather", 1);
        assert_int_not_equal(access(apr_pstrcat(fx.p, fx.dir,
                                                "/site_20260318.ndjson",
                                                NULL), F_OK), -1);
        now = d + 3 * DAY;
        check_both(&fx, query(&fx, d - 5 * DAY), now);
        /* Sanity: the model has them all, in the expected order. */
        {
            ptm_query_t q = query(&fx, d - 5 * DAY);
            apr_array_header_t *got;

            q.desc = 0;
            got = run_q(&fx, &q, now, NULL);
            assert_int_equal(got->nelts, 11);
            {
                static const int order[11] = { 2, 1, 3, 10, 5, 7, 6, 4, 11,
                                                12, 13 };
                int k;

                for (k = 0; k < 11; k++) {
                    assert_int_equal(id_of(APR_ARRAY_IDX(got, k,
                                                         const char *)),
                                     order[k]);
                }
            }
        }
        fx_close(&fx);
    }
}

/* Many events, accepted in an order far from their ts's (runs in order
 * of every length, some ts shared), stored or only in the ring: the
 * answer is in key order all the same (the merge of ordered runs). */
static void test_order_many(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), ts;
    unsigned x = 12345;
    int i, r;

    for (r = 0; r < 2; r++) {
        fx_open(&fx, r ? 1024 * 1024 : 0);
        for (i = 0; i < 600; i++) {
            x = x * 1103515245u + 12345u;
            if (i % 100 < 40) {
                ts = d + (apr_time_t)i * APR_USEC_PER_SEC;      /* a run */
            }
            else if (i % 100 < 50) {
                ts = d + (apr_time_t)(600 - i) * APR_USEC_PER_SEC;
            }
            else {
                ts = d + (apr_time_t)((x >> 8) % 500) * APR_USEC_PER_SEC;
            }
            post(&fx, d + i, iso(fx.p, ts), i % 3 ? "weather" : "power",
                 r ? (int)(x >> 20) % 2 : 1);
        }
        check_both(&fx, query(&fx, d - DAY), d + DAY);
        fx_close(&fx);
    }
}

/* since is inclusive, until exclusive, to the microsecond. */
static void test_window_bounds(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z");
    ptm_query_t q;
    apr_array_header_t *got;
    int i;

    fx_open(&fx, 0);
    for (i = 0; i < 10; i++) {
        post(&fx, d + i * HOUR, apr_psprintf(fx.p, "2026-03-17T%02d:00:00."
                                             "000Z", 10 + i), "w", 1);
    }
    q = query(&fx, T("2026-03-17T12:00:00Z"));
    q.until = T("2026-03-17T15:00:00Z");
    q.desc = 0;
    got = run_q(&fx, &q, d + DAY, NULL);
    assert_int_equal(got->nelts, 3);
    assert_int_equal(id_of(APR_ARRAY_IDX(got, 0, const char *)), 3);
    assert_int_equal(id_of(APR_ARRAY_IDX(got, 2, const char *)), 5);
    q.since += 1;
    q.until += 1;
    got = run_q(&fx, &q, d + DAY, NULL);
    assert_int_equal(got->nelts, 3);
    assert_int_equal(id_of(APR_ARRAY_IDX(got, 0, const char *)), 4);
    assert_int_equal(id_of(APR_ARRAY_IDX(got, 2, const char *)), 6);
    check_both(&fx, q, d + DAY);
    /* An empty window. */
    q.until = q.since;
    assert_int_equal(run_q(&fx, &q, d + DAY, NULL)->nelts, 0);
    fx_close(&fx);
}

/* type= (several), stream=, run_id= (a string; an integer as its text). */
static void test_filters(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + 2 * DAY;
    const char *run_dir;
    ptm_query_t q;
    int i;

    fx_open(&fx, 64 * 1024);
    run_dir = apr_pstrcat(fx.p, fx.dir, "/4242", NULL);
    for (i = 0; i < 6; i++) {
        post_now(&fx, d + i * HOUR, i % 3 == 0 ? "weather" : i % 3 == 1
                 ? "power" : "we\\\"ird\\u00e9", 1);
    }
    fx.site_meta = "{\"run_id\":4242,\"x\":[1,{\"run_id\":\"no\"}]}";
    post_now(&fx, d + 7 * HOUR, "weather", 1);
    fx.site_meta = "{\"a\":\"}\\\"\",\"run_id\":\"4242\"}";
    post_now(&fx, d + 8 * HOUR, "power", 0);
    fx.site_meta = "{\"run_id\":\"42420\"}";
    post_now(&fx, d + 9 * HOUR, "power", 1);
    fx.site_meta = "{}";
    start_run(&fx, "4242", run_dir, d + 10 * HOUR, 1);
    for (i = 0; i < 4; i++) {
        post_now(&fx, d + 11 * HOUR + i, i % 2 ? "weather" : "power", 1);
    }
    q = query(&fx, d - DAY);
    check_both(&fx, q, now);
    want_type(&fx, &q, "weather");
    check_both(&fx, q, now);
    want_type(&fx, &q, "we\\\"ird\\u00e9");
    check_both(&fx, q, now);
    want_type(&fx, &q, "nothing");
    q.stream = PTM_STREAM_SITE;
    check_both(&fx, q, now);
    q.stream = PTM_STREAM_RUN;
    check_both(&fx, q, now);
    q = query(&fx, d - DAY);
    q.run_id = "4242";
    q.run_id_len = 4;
    check_both(&fx, q, now);
    assert_int_equal(run_q(&fx, &q, now, NULL)->nelts, 6);
    q.run_id = "42420";
    q.run_id_len = 5;
    assert_int_equal(run_q(&fx, &q, now, NULL)->nelts, 1);
    q.run_id = "no";
    q.run_id_len = 2;
    assert_int_equal(run_q(&fx, &q, now, NULL)->nelts, 0);
    fx_close(&fx);
}

/* Flip the data key of every stored line ("i" -> "j", the same length):
 * a line read from its file then tells itself from the ring's copy. */
static void mark_files(fx_t *fx, const char *path)
{
    size_t len, k;
    char *s = slurp(path, &len, fx->p);
    int fd;

    assert_non_null(s);
    for (k = 0; k + 9 < len; k++) {
        if (memcmp(s + k, "\"data\":{\"i\"", 11) == 0) {
            s[k + 9] = 'j';
        }
    }
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, s, len, 0), (ssize_t)len);
    close(fd);
}

/* The ring wrapped: the stored events it still holds come from it (the
 * file's altered copies are not taken), the older ones from the files,
 * each once; ephemeral events only while the ring has them. */
static void test_ring_and_files(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + 3 * DAY;
    const char *run_dir;
    apr_array_header_t *got, *want;
    ptm_history_result_t res;
    ptm_query_t q;
    int i, from_ring = 0, from_file = 0;

    fx_open(&fx, 8 * 1024);
    run_dir = apr_pstrcat(fx.p, fx.dir, "/run1", NULL);
    for (i = 0; i < 120; i++) {
        if (i == 60) {
            start_run(&fx, "run1", run_dir, d + i * 10 * 60 * 1000000LL, 1);
        }
        /* Every third ephemeral; ts a little off the acceptance. */
        post(&fx, d + (apr_time_t)i * 10 * 60 * 1000000LL,
             iso(fx.p, d + (apr_time_t)i * 10 * 60 * 1000000LL
                 - (i % 5) * 7 * 60 * 1000000LL),
             i % 2 ? "weather" : "power", i % 3 != 0);
    }
    mark_files(&fx, day_file(&fx, d));
    mark_files(&fx, apr_pstrcat(fx.p, run_dir, "/telemetry.ndjson", NULL));
    ring_now(&fx);
    q = query(&fx, d - DAY);
    got = run_q(&fx, &q, now, &res);
    want = expect(&fx, &q);
    assert_int_equal(got->nelts, want->nelts);
    for (i = 0; i < got->nelts; i++) {
        const char *g = APR_ARRAY_IDX(got, i, const char *);
        const char *w = APR_ARRAY_IDX(want, i, const char *);
        int j;

        /* The same event; its bytes from the ring if the ring has it. */
        assert_int_equal(id_of(g), id_of(w));
        for (j = 0; j < fx.evs->nelts; j++) {
            ev_t *m = &APR_ARRAY_IDX(fx.evs, j, ev_t);

            if (m->i == id_of(g)) {
                if (m->in_ring) {
                    assert_string_equal(g, m->line);
                    from_ring++;
                }
                else {
                    assert_true(m->stored);
                    assert_non_null(strstr(g, "{\"j\":"));
                    from_file++;
                }
            }
        }
    }
    /* Both sources met, in both streams' files. */
    assert_true(from_ring > 10);
    assert_true(from_file > 10);
    assert_int_equal(res.skipped, 0);
    assert_true(res.recent_since > d);
    fx_close(&fx);
}

/* recent_since: when the oldest event the ring holds was accepted; 0
 * with the ring off or empty; also for an empty window. */
static void test_recent_since(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z");
    ptm_history_result_t res;
    ptm_query_t q;

    fx_open(&fx, 64 * 1024);
    q = query(&fx, d);
    run_q(&fx, &q, d, &res);
    assert_true(res.recent_since == 0);
    post_now(&fx, d + 5, "w", 0);
    post_now(&fx, d + 6, "w", 1);
    run_q(&fx, &q, d + DAY, &res);
    assert_true(res.recent_since == d + 5);
    assert_int_equal(res.events, 2);
    q.until = q.since;
    run_q(&fx, &q, d + DAY, &res);
    assert_true(res.recent_since == d + 5);
    fx_close(&fx);
    fx_open(&fx, 0);
    post_now(&fx, d + 5, "w", 0);
    post_now(&fx, d + 6, "w", 1);
    q = query(&fx, d);
    run_q(&fx, &q, d + DAY, &res);
    assert_true(res.recent_since == 0);
    assert_int_equal(res.events, 1);
    fx_close(&fx);
}

/* `every`: the latest event per type per bucket (epoch-aligned), both
 * orders, and the same selection page by page after cursors. */
static void test_every(void **state)
{
    static fx_t fx;
    static char longtype[2][301];
    apr_size_t rings[2] = { 16 * 1024, 0 };
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + 4 * DAY;
    ptm_query_t q;
    int i, r, limit;

    /* Types longer than the engine copies (read back from the file when
     * compared), two of them alike but for the last byte. */
    memset(longtype[0], 'L', sizeof(longtype[0]) - 1);
    longtype[0][sizeof(longtype[0]) - 1] = '\0';
    memcpy(longtype[1], longtype[0], sizeof(longtype[0]));
    longtype[1][sizeof(longtype[1]) - 2] = 'M';
    for (r = 0; r < 2; r++) {
        fx_open(&fx, rings[r]);
        for (i = 0; i < 150; i++) {
            apr_time_t t = d + (apr_time_t)i * 17 * 60 * 1000000LL;

            post(&fx, t, iso(fx.p, t - (i % 4) * 40 * 60 * 1000000LL),
                 i % 5 == 1 ? longtype[i / 5 % 2] : i % 3 ? "weather"
                 : "power", i % 7 != 0);
        }
        q = query(&fx, d - DAY);
        q.every = HOUR;
        check_both(&fx, q, now);
        q.every = 7 * 60 * 1000000LL;
        check_both(&fx, q, now);
        q.every = 3 * DAY;
        check_both(&fx, q, now);
        q.every = 5 * HOUR;
        check_both(&fx, q, now);
        q.every = HOUR;
        q.since = d + 90 * 60 * 1000000LL;      /* mid-bucket */
        check_both(&fx, q, now);
        for (limit = 1; limit <= 4; limit++) {
            q.desc = 1;
            same_lines(paged(&fx, q, limit, now), expect(&fx, &q));
            q.desc = 0;
            same_lines(paged(&fx, q, limit, now), expect(&fx, &q));
        }
        fx_close(&fx);
    }
}

/* limit and more: the first `limit` events, more set only when another
 * matches; cursors from page to page give each event once. */
static void test_limit_and_cursor(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + 4 * DAY;
    ptm_history_result_t res;
    apr_array_header_t *got, *want;
    ptm_query_t q;
    int i, limit;

    fx_open(&fx, 16 * 1024);
    for (i = 0; i < 40; i++) {
        apr_time_t t = d + (apr_time_t)i * 97 * 60 * 1000000LL;

        post(&fx, t, iso(fx.p, t - (i % 3) * HOUR), "w", i % 4 != 0);
    }
    /* Events sharing one ts: the cursor tells them apart by seq. */
    for (i = 0; i < 5; i++) {
        post(&fx, d + 2 * DAY + i, "2026-03-19T10:00:00.000Z", "w", 1);
    }
    q = query(&fx, d - DAY);
    want = expect(&fx, &q);
    q.limit = want->nelts;
    got = run_q(&fx, &q, now, &res);
    assert_int_equal(got->nelts, want->nelts);
    assert_false(res.more);
    q.limit = want->nelts - 1;
    got = run_q(&fx, &q, now, &res);
    assert_int_equal(got->nelts, want->nelts - 1);
    assert_true(res.more);
    q.limit = 0;
    for (limit = 1; limit <= 7; limit += 3) {
        q.desc = 1;
        same_lines(paged(&fx, q, limit, now), expect(&fx, &q));
        q.desc = 0;
        same_lines(paged(&fx, q, limit, now), expect(&fx, &q));
        q.ndjson = 1;
        same_lines(paged(&fx, q, limit, now), expect(&fx, &q));
        q.ndjson = 0;
    }
    fx_close(&fx);
}

/* Pages followed while others post: every event that matched at the
 * first page comes exactly once, nothing comes twice, though the ring
 * wraps between pages (stored events move from the ring to their files)
 * and new events land before and after the cursor. */
static void test_cursor_while_posting(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + 2 * DAY, t;
    apr_hash_t *seen;
    ptm_history_result_t res;
    ptm_query_t q;
    int orders, i, k, first_n;

    for (orders = 0; orders < 2; orders++) {
        fx_open(&fx, 6 * 1024);
        for (i = 0; i < 60; i++) {
            t = d + (apr_time_t)i * 11 * 60 * 1000000LL;
            post(&fx, t, iso(fx.p, t - (i % 4) * 20 * 60 * 1000000LL),
                 i % 2 ? "a" : "b", 1);
        }
        first_n = fx.next_i;
        seen = apr_hash_make(fx.p);
        q = query(&fx, d - DAY);
        q.desc = orders == 0;
        q.limit = 4;
        k = 0;
        do {
            apr_array_header_t *page = run_q(&fx, &q, now, &res);

            for (i = 0; i < page->nelts; i++) {
                int *id = apr_palloc(fx.p, sizeof(int));

                *id = id_of(APR_ARRAY_IDX(page, i, const char *));
                assert_null(apr_hash_get(seen, id, sizeof(int)));
                apr_hash_set(seen, id, sizeof(int), id);
            }
            /* Others post meanwhile: stored and ephemeral, ts spread
             * over the window. */
            for (i = 0; i < 3; i++) {
                t = d + (apr_time_t)(k * 3 + i) * 37 * 60 * 1000000LL;
                post(&fx, d + DAY / 2 + k * 3 + i, iso(fx.p, t),
                     i ? "a" : "b", i != 1);
            }
            k++;
            q.has_after = 1;
            q.after = res.last;
        } while (res.more && k < 1000);
        assert_false(res.more);
        for (i = 1; i <= first_n; i++) {
            if (!apr_hash_get(seen, &i, sizeof(int))) {
                fail_msg("event %d never came", i);
            }
        }
        fx_close(&fx);
    }
}

/* Others post while a query runs: at the start of each slice and between
 * its look at the ring and its files (a small ring, so stored events it
 * held leave it meanwhile).  Every event there was before the query comes
 * once, none twice, in order. */
static fx_t *during_fx;
static int during_posts;
static apr_time_t during_base;

static void post_during(const char *where, unsigned n)
{
    (void)n;
    if ((strcmp(where, "history:slice") == 0
         || strcmp(where, "history:ring-taken") == 0) && during_posts < 400) {
        apr_time_t t = during_base
                       + (apr_time_t)(during_posts * 7919 % 2880) * 60
                         * 1000000LL;

        during_posts++;
        post(during_fx, during_base + 3 * DAY + during_posts,
             iso(during_fx->p, t), during_posts % 2 ? "a" : "b",
             during_posts % 3 != 0);
    }
}

static void test_posting_during_query(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + 4 * DAY, t;
    apr_array_header_t *got;
    apr_hash_t *seen;
    ptm_query_t q;
    int i, orders, first_n;

    for (orders = 0; orders < 2; orders++) {
        fx_open(&fx, 4 * 1024);
        for (i = 0; i < 200; i++) {
            t = d + (apr_time_t)i * 14 * 60 * 1000000LL;
            post(&fx, t, iso(fx.p, t - (i % 5) * 30 * 60 * 1000000LL),
                 i % 2 ? "a" : "b", 1);
        }
        first_n = fx.next_i;
        during_fx = &fx;
        during_posts = 0;
        during_base = d;
        q = query(&fx, d - DAY);
        q.desc = orders == 0;
        ptm_history_slice_cap = 16;         /* many slices, and splits */
        ptm_test_hook = post_during;
        got = run_q(&fx, &q, now, NULL);
        ptm_test_hook = NULL;
        assert_true(during_posts > 20);
        seen = apr_hash_make(fx.p);
        for (i = 0; i < got->nelts; i++) {
            int *id = apr_palloc(fx.p, sizeof(int));

            *id = id_of(APR_ARRAY_IDX(got, i, const char *));
            if (apr_hash_get(seen, id, sizeof(int))) {
                fail_msg("event %d twice", *id);
            }
            apr_hash_set(seen, id, sizeof(int), id);
            if (i > 0) {
                ptm_key_t a, b;
                ev_t *ea = NULL, *eb = NULL;
                int j;

                for (j = 0; j < fx.evs->nelts; j++) {
                    ev_t *m = &APR_ARRAY_IDX(fx.evs, j, ev_t);

                    if (m->i == *id) {
                        eb = m;
                    }
                    if (m->i == id_of(APR_ARRAY_IDX(got, i - 1,
                                                    const char *))) {
                        ea = m;
                    }
                }
                key_of_ev(ea, &a);
                key_of_ev(eb, &b);
                assert_true(q.desc ? ptm_key_cmp(&a, &b) > 0
                                   : ptm_key_cmp(&a, &b) < 0);
            }
        }
        for (i = 1; i <= first_n; i++) {
            if (!apr_hash_get(seen, &i, sizeof(int))) {
                fail_msg("event %d never came", i);
            }
        }
        fx_close(&fx);
    }
}

/* Lines that are not the module's are skipped and counted once each,
 * however many slices read their file; a ts that is not a time is not
 * damage. */
static void test_damaged_lines(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + 3 * DAY;
    const char *f1, *f2, *run_dir;
    ptm_history_result_t res;
    apr_array_header_t *got;
    ptm_query_t q;

    fx_open(&fx, 0);
    f1 = day_file(&fx, d);
    f2 = day_file(&fx, d + DAY);
    append_raw(f1,
        "{\"seq\":1,\"ts\":\"2026-03-17T10:00:00.000Z\",\"stream\":\"site\","
        "\"type\":\"w\",\"data\":{\"i\":1},\"meta\":{}}\n"
        /* foreign: a run line in a site file */
        "{\"seq\":2,\"ts\":\"2026-03-17T10:00:01.000Z\",\"stream\":\"run\","
        "\"type\":\"w\",\"data\":{\"i\":2},\"meta\":{}}\n"
        "hello\n"
        "\n"
        /* hand-edited: a space */
        "{\"seq\": 3,\"ts\":\"2026-03-17T10:00:02.000Z\",\"stream\":\"site\","
        "\"type\":\"w\",\"data\":{\"i\":3},\"meta\":{}}\n"
        /* the right start, not JSON: found when it is selected */
        "{\"seq\":4,\"ts\":\"2026-03-17T10:00:03.000Z\",\"stream\":\"site\","
        "\"type\":\"w\",\"data\":{\"i\":4,},\"meta\":{}}\n"
        /* not a time: never selected, not damage */
        "{\"seq\":5,\"ts\":\"soon\",\"stream\":\"site\","
        "\"type\":\"w\",\"data\":{\"i\":5},\"meta\":{}}\n"
        "{\"seq\":6,\"ts\":\"2026-03-17T10:00:0\\u0035.000Z\",\"stream\":"
        "\"site\",\"type\":\"w\",\"data\":{\"i\":6},\"meta\":{}}\n"
        "{\"seq\":7,\"ts\":\"2026-03-17T10:00:07.000Z\",\"stream\":\"site\","
        "\"type\":\"w\",\"data\":{\"i\":7},\"meta\":{}}\n"
        /* torn: no newline */
        "{\"seq\":8,\"ts\":\"2026-03-17T10:00:08.000Z\",\"stream\":\"site\","
        "\"type\":\"w\",\"data\":{\"i\":8},\"meta\":{}}");
    append_raw(f2,
        "{\"seq\":9,\"ts\":\"2026-03-18T10:00:00.000Z\",\"stream\":\"site\","
        "\"type\":\"w\",\"data\":{\"i\":9},\"meta\":{}}\n"
        "{\"seq\":99999999999999999999,\"ts\":\"2026-03-18T10:00:00.000Z\","
        "\"stream\":\"site\",\"type\":\"w\",\"data\":{},\"meta\":{}}\n");
    run_dir = apr_pstrcat(fx.p, fx.dir, "/r", NULL);
    start_run(&fx, "r", run_dir, d, 1);
    append_raw(apr_pstrcat(fx.p, run_dir, "/telemetry.ndjson", NULL),
        "{\"seq\":10,\"ts\":\"2026-03-17T11:00:00.000Z\",\"stream\":\"site\","
        "\"type\":\"w\",\"data\":{\"i\":10},\"meta\":{}}\n"
        "{\"seq\":11,\"ts\":\"2026-03-17T11:00:01.000Z\",\"stream\":\"run\","
        "\"type\":\"w\",\"data\":{\"i\":11},\"meta\":{\"run_id\":\"r\"}}\n");
    q = query(&fx, d - 2 * DAY);
    q.desc = 0;
    got = run_q(&fx, &q, now, &res);
    assert_int_equal(got->nelts, 4);
    assert_int_equal(id_of(APR_ARRAY_IDX(got, 0, const char *)), 1);
    assert_int_equal(id_of(APR_ARRAY_IDX(got, 1, const char *)), 7);
    assert_int_equal(id_of(APR_ARRAY_IDX(got, 2, const char *)), 11);
    assert_int_equal(id_of(APR_ARRAY_IDX(got, 3, const char *)), 9);
    /* foreign, hello, empty, space, not JSON, torn; seq too big; a site
     * line in the run file */
    assert_int_equal(res.skipped, 8);
    fx_close(&fx);
}

/* Links planted as a day file or as a run directory are not followed (and
 * count as a file skipped); a journal naming a directory outside every
 * root is not looked at. */
static void test_links_not_followed(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + DAY;
    const char *other, *line;
    ptm_history_result_t res;
    apr_array_header_t *got;
    ptm_query_t q;

    fx_open(&fx, 0);
    other = apr_pstrcat(fx.p, fx.dir, "/elsewhere", NULL);
    assert_int_equal(mkdir(other, 0755), 0);
    line = "{\"seq\":1,\"ts\":\"2026-03-17T10:00:00.000Z\",\"stream\":\"site\","
           "\"type\":\"w\",\"data\":{\"i\":1},\"meta\":{}}\n";
    append_raw(apr_pstrcat(fx.p, other, "/f", NULL), line);
    assert_int_equal(symlink(apr_pstrcat(fx.p, other, "/f", NULL),
                             day_file(&fx, d)), 0);
    append_raw(apr_pstrcat(fx.p, other, "/telemetry.ndjson", NULL),
               "{\"seq\":1,\"ts\":\"2026-03-17T10:00:00.000Z\",\"stream\":"
               "\"run\",\"type\":\"w\",\"data\":{\"i\":2},\"meta\":{}}\n");
    assert_int_equal(symlink(other, apr_pstrcat(fx.p, fx.dir, "/lnk", NULL)),
                     0);
    assert_int_equal(ptm_runs_note_start(fx.dir, "lnk", 3,
                                         apr_pstrcat(fx.p, fx.dir, "/lnk",
                                                     NULL), d, fx.p),
                     APR_SUCCESS);
    /* Outside the site dir and every root. */
    assert_int_equal(ptm_runs_note_start(fx.dir, "out", 3, "/tmp", d + 1,
                                         fx.p), APR_SUCCESS);
    /* A FIFO as the next day's file: not waited on. */
    assert_int_equal(mkfifo(day_file(&fx, d + DAY), 0666), 0);
    q = query(&fx, d - DAY);
    alarm(20);
    got = run_q(&fx, &q, now, &res);
    alarm(0);
    assert_int_equal(got->nelts, 0);
    assert_int_equal(res.skipped, 4);
    fx_close(&fx);
}

/* A line longer than any the module writes (64 MiB of a hole, no
 * newline) is skipped and counted, and the lines after it still count. */
static void test_long_line(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + DAY;
    const char *f, *line;
    ptm_history_result_t res;
    apr_array_header_t *got;
    ptm_query_t q;

    fx_open(&fx, 0);
    f = day_file(&fx, d);
    line = "{\"seq\":1,\"ts\":\"2026-03-17T10:00:00.000Z\",\"stream\":\"site\","
           "\"type\":\"w\",\"data\":{\"i\":1},\"meta\":{}}\n";
    append_raw(f, line);
    assert_int_equal(truncate(f, (off_t)strlen(line) + (65 << 20)), 0);
    append_raw(f, "\n{\"seq\":2,\"ts\":\"2026-03-17T10:00:01.000Z\","
                  "\"stream\":\"site\",\"type\":\"w\",\"data\":{\"i\":2},"
                  "\"meta\":{}}\n");
    q = query(&fx, d - DAY);
    q.desc = 0;
    got = run_q(&fx, &q, now, &res);
    assert_int_equal(got->nelts, 2);
    assert_int_equal(id_of(APR_ARRAY_IDX(got, 0, const char *)), 1);
    assert_int_equal(id_of(APR_ARRAY_IDX(got, 1, const char *)), 2);
    assert_int_equal(res.skipped, 1);
    fx_close(&fx);
}

/* Only the day files of the window (and a day around it) are opened, in
 * an archive of 400 days; a file further away is not read even though
 * it holds an event (ts a year off) of the window. */
static void test_cost_follows_window(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2025-03-01T10:00:00Z"), now, t;
    apr_hash_index_t *hi;
    ptm_query_t q;
    apr_array_header_t *got;
    const char *stamp;
    int i;

    fx_open(&fx, 0);
    now = d + 400 * DAY;
    stamp = iso(fx.p, now - HOUR);
    for (i = 0; i <= 400; i++) {
        t = d + (apr_time_t)i * DAY;
        post_now(&fx, t, "w", 1);
        post(&fx, t + 1, stamp, "x", 1);        /* ts: now - 1h */
    }
    hook_on();
    q = query(&fx, now - DAY);
    got = run_q(&fx, &q, now, NULL);
    ptm_test_hook = NULL;
    /* The two of today's file (now - 1h), yesterday's (now - 1d is
     * outside: it is at now - 1 day... the window starts there). */
    assert_true(got->nelts >= 2 && got->nelts <= 4);
    for (i = 0; i < got->nelts; i++) {
        int id = id_of(APR_ARRAY_IDX(got, i, const char *));

        assert_true(id > 2 * 398);              /* from the last days */
    }
    assert_true(apr_hash_count(opened_days) <= 7);
    for (hi = apr_hash_first(fx.p, opened_days); hi; hi = apr_hash_next(hi)) {
        const unsigned *k;
        char key[PTM_DAYKEY_LEN + 1], lo[PTM_DAYKEY_LEN + 1],
             up[PTM_DAYKEY_LEN + 1];

        apr_hash_this(hi, (const void **)&k, NULL, NULL);
        apr_snprintf(key, sizeof(key), "%08u", *k);
        assert_int_equal(ptm_time_day_key(lo, now - 2 * DAY), APR_SUCCESS);
        assert_int_equal(ptm_time_day_key(up, now + 3 * DAY), APR_SUCCESS);
        assert_true(strcmp(key, lo) >= 0 && strcmp(key, up) <= 0);
    }
    /* (The x of the files further than a day from now - 1h are not
     * found: the model knows nothing of that.) */
    q = query(&fx, now - 3 * DAY);
    want_type(&fx, &q, "w");
    check_both(&fx, q, now);
    fx_close(&fx);
}

/* A window from 1900 to no end: the ring's events far off (before the
 * epoch, centuries ahead) are found, the files' only within a day of
 * theirs; and it takes a moment, not minutes. */
static void test_wide_window(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), t0;
    apr_array_header_t *got;
    ptm_query_t q;
    int ring;

    for (ring = 0; ring < 2; ring++) {
        fx_open(&fx, ring ? 64 * 1024 : 0);
        post(&fx, d, "1969-12-31T00:00:00.000Z", "w", 1);
        post(&fx, d + 1, "2026-03-17T10:00:00.000Z", "w", 1);
        post(&fx, d + 2, "2500-01-01T00:00:00.000Z", "w", 1);
        post(&fx, d + 3, "1800-01-01T00:00:00.000Z", "w", 1);
        q = query(&fx, T("1900-01-01T00:00:00Z"));
        t0 = apr_time_now();
        got = run_q(&fx, &q, d + HOUR, NULL);
        assert_true(apr_time_now() - t0 < apr_time_from_sec(20));
        if (ring) {
            assert_int_equal(got->nelts, 3);
            assert_int_equal(id_of(APR_ARRAY_IDX(got, 0, const char *)), 3);
            assert_int_equal(id_of(APR_ARRAY_IDX(got, 2, const char *)), 1);
            check_both(&fx, q, d + HOUR);
        }
        else {
            assert_int_equal(got->nelts, 1);
            assert_int_equal(id_of(APR_ARRAY_IDX(got, 0, const char *)), 2);
        }
        fx_close(&fx);
    }
}

/* A slice that holds more than the cap is halved and done again, the
 * answer unchanged; events sharing one ts beyond the cap are taken whole. */
static void test_slices_split(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + 3 * DAY, t;
    ptm_query_t q;
    int i, limit;

    fx_open(&fx, 4 * 1024);
    for (i = 0; i < 80; i++) {
        t = d + (apr_time_t)i * 29 * 60 * 1000000LL;
        post(&fx, t, iso(fx.p, t - (i % 3) * HOUR), i % 2 ? "a" : "b",
             i % 5 != 0);
    }
    for (i = 0; i < 9; i++) {
        post(&fx, d + DAY + i, "2026-03-18T10:00:00.000Z", "a", 1);
    }
    q = query(&fx, d - DAY);
    ptm_history_slice_cap = 4;
    hook_on();
    check_both(&fx, q, now);
    assert_true(splits > 10);
    q.every = HOUR;
    check_both(&fx, q, now);
    q.every = 0;
    for (limit = 1; limit <= 9; limit += 4) {
        q.desc = 1;
        same_lines(paged(&fx, q, limit, now), expect(&fx, &q));
        q.desc = 0;
        same_lines(paged(&fx, q, limit, now), expect(&fx, &q));
    }
    ptm_test_hook = NULL;
    fx_close(&fx);
}

/* Runs are found through the journal wherever their directory is (under
 * a run root too), and the active run even when the journal does not
 * have it; a run far from the window is not opened. */
static void test_runs(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + 40 * DAY;
    const char *root, *a, *b, *c;
    ptm_query_t q;

    fx_open(&fx, 0);
    root = apr_pstrcat(fx.p, fx.dir, "-root", NULL);
    assert_int_equal(mkdir(root, 0755), 0);
    APR_ARRAY_PUSH(fx.roots, const char *) = root;
    a = apr_pstrcat(fx.p, fx.dir, "/a", NULL);
    b = apr_pstrcat(fx.p, root, "/nights/b", NULL);
    c = apr_pstrcat(fx.p, fx.dir, "/c", NULL);
    start_run(&fx, "a", a, d, 1);
    post_now(&fx, d + HOUR, "w", 1);
    stop_run(&fx, a, d + 2 * HOUR);
    post_now(&fx, d + 3 * HOUR, "w", 1);
    start_run(&fx, "b", b, d + 30 * DAY, 1);
    post_now(&fx, d + 30 * DAY + HOUR, "w", 1);
    post_now(&fx, d + 30 * DAY + 2 * HOUR, "w", 1);
    stop_run(&fx, b, d + 31 * DAY);
    /* Started before there was a journal. */
    start_run(&fx, "c", c, d + 35 * DAY, 0);
    post_now(&fx, d + 35 * DAY + HOUR, "w", 1);
    check_both(&fx, query(&fx, d - DAY), now);
    hook_on();
    q = query(&fx, d + 29 * DAY);
    check_both(&fx, q, now);
    /* b and c, each read once or twice; never a. */
    assert_true(run_opens >= 2);
    run_opens = 0;
    q.until = d + 32 * DAY;
    q.stream = PTM_STREAM_RUN;
    assert_int_equal(run_q(&fx, &q, now, NULL)->nelts, 2);
    assert_true(run_opens >= 1);
    ptm_test_hook = NULL;
    rm_rf(root);
    fx_close(&fx);
}

/* A runs index planted with thousands of runs (the User can write the
 * site dir): those that cannot hold events of the window are not looked
 * at, and the rest once per request, not once per slice. */
static void test_planted_runs(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + 40 * DAY;
    const char *idx;
    ptm_buf_t b;
    ptm_query_t q;
    int i;

    fx_open(&fx, 0);
    post_now(&fx, d + 30 * DAY, "w", 1);
    idx = apr_pstrcat(fx.p, fx.dir, "/.runs.ndjson", NULL);
    ptm_buf_init(&b, fx.p, 1 << 20);
    for (i = 0; i < 5000; i++) {
        ptm_buf_puts(&b, apr_psprintf(fx.p, "{\"run_id\":\"p%d\",\"run_dir\""
                                      ":\"%s/p%d\",\"start\":\"%s\"}\n", i,
                                      fx.dir, i, iso(fx.p, d - 10 * DAY
                                                     + i * APR_USEC_PER_SEC)));
    }
    /* And one that may hold the window's events (it does not exist). */
    ptm_buf_puts(&b, apr_psprintf(fx.p, "{\"run_id\":\"q\",\"run_dir\":"
                                  "\"%s/q\",\"start\":\"%s\"}\n", fx.dir,
                                  iso(fx.p, d + 29 * DAY)));
    ptm_buf_putc(&b, '\0');
    append_raw(idx, b.data);
    q = query(&fx, d + 28 * DAY);
    q.until = d + 33 * DAY;
    check_both(&fx, q, now);
    hook_on();
    assert_int_equal(run_q(&fx, &q, now, NULL)->nelts, 1);
    /* Only q and the last planted one (a run without a stop lasts until
     * the next start) are kept, each opened once, though the window takes
     * several slices. */
    assert_true(slices > 1);
    assert_int_equal(runs_kept, 2);
    assert_int_equal(run_opens, 2);
    ptm_test_hook = NULL;
    fx_close(&fx);
}

static unsigned gone_calls;

static int gone_after_two(void *ctx)
{
    return ++gone_calls > 2;
}

/* A client that hung up: a long query stops between slices. */
static void test_client_gone(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + 40 * DAY;
    apr_array_header_t *out = apr_array_make(gpool, 4, sizeof(const char *));
    ptm_history_result_t res;
    ptm_query_t q;

    fx_open(&fx, 0);
    post_now(&fx, d, "w", 1);
    hook_on();
    fx.conf.gone = gone_after_two;
    gone_calls = 0;
    q = query(&fx, d - 30 * DAY);
    assert_int_equal(ptm_history_query(&res, &fx.conf, &q, now, sink, out,
                                       fx.p), APR_ECONNABORTED);
    assert_int_equal(gone_calls, 3);
    assert_int_equal(slices, 2);
    fx.conf.gone = NULL;
    ptm_test_hook = NULL;
    fx_close(&fx);
}

/* A day file of the Python server (SPEC §5 F4): its seqs began again at 1
 * on each of its restarts, so lines in the middle of a file can carry the
 * seqs the module goes on to give out (it goes on from the last line of
 * each file).  Such a line is another event than the ring's one with its
 * seq: it is still taken from the file, not dropped as the ring's copy. */
static void test_legacy_seqs(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + DAY;
    apr_array_header_t *got;
    ptm_history_result_t res;
    ptm_query_t q;
    int i, seen[8] = { 0 };

    fx_open(&fx, 64 * 1024);
    /* Upstream: 1..3, a restart, 1 (the last line: the module's site
     * counter goes on from 1). */
    for (i = 1; i <= 4; i++) {
        append_raw(day_file(&fx, d),
                   apr_psprintf(fx.p, "{\"seq\":%d,\"ts\":\"2026-03-17T09:0%d:"
                                "00.000Z\",\"stream\":\"site\",\"type\":\"w\","
                                "\"data\":{\"i\":%d},\"meta\":{}}\n",
                                i < 4 ? i : 1, i, 100 + i));
    }
    /* The counter goes on from the last line: the module's events get
     * 2 and 3, as two of upstream's did. */
    assert_int_equal(ptm_store_reconcile(fx.st, fx.dir, fx.roots, fx.p),
                     APR_SUCCESS);
    assert_int_equal(post(&fx, d, "2026-03-17T10:00:00.000Z", "w", 1)->seq,
                     2);
    assert_int_equal(post(&fx, d, "2026-03-17T10:00:01.000Z", "w", 1)->seq,
                     3);
    q = query(&fx, d - DAY);
    q.desc = 0;
    got = run_q(&fx, &q, now, &res);
    for (i = 0; i < got->nelts; i++) {
        int k = id_of(APR_ARRAY_IDX(got, i, const char *));

        if (k >= 101 && k <= 104) {
            seen[k - 100]++;
        }
        else {
            assert_true(k == 1 || k == 2);
            seen[4 + k]++;
        }
    }
    /* The four upstream lines and the module's two, each once. */
    for (i = 1; i <= 6; i++) {
        assert_int_equal(seen[i], 1);
    }
    assert_int_equal(got->nelts, 6);
    fx_close(&fx);
}

static int history_group_setup(void **state)
{
    /* UTC+3 all year: local noon is 09:00Z. */
    setenv("TZ", "ABC-3", 1);
    tzset();
    return group_setup(state);
}


/* ---- the per-process facts of day files -----------------------------------*/

extern unsigned ptm_history_facts_slots;
static unsigned reads_of_day, reads_key;

static void read_hook(const char *where, unsigned n)
{
    if (strcmp(where, "history:read-day") == 0 && n == reads_key) {
        reads_of_day++;
    }
}

static const char *day_line(fx_t *fx, int seq, apr_time_t ts)
{
    return apr_psprintf(fx->p, "{\"seq\":%d,\"ts\":\"%s\",\"stream\":\"site\","
                        "\"type\":\"w\",\"data\":{\"i\":%d},\"meta\":{}}\n",
                        seq, iso(fx->p, ts), seq);
}

/* A neighbour day file whose ts range misses the window is read once,
 * then known (its damaged lines still counted every time); any change to
 * it (an append, a replacement) is seen at once; a link put in its place
 * is refused, never followed; a table of one slot (every file evicting
 * the other) answers the same. */
static void test_day_facts(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + 3 * DAY;
    const char *prev, *next, *copy;
    char k[PTM_DAYKEY_LEN + 1];
    ptm_history_result_t res;
    apr_array_header_t *got;
    ptm_query_t q;
    int slots;

    fx_open(&fx, 0);
    prev = day_file(&fx, d - DAY);
    next = day_file(&fx, d + DAY);
    append_raw(prev, day_line(&fx, 1, d - DAY));
    append_raw(prev, "hello\n");
    append_raw(day_file(&fx, d), day_line(&fx, 2, d));
    append_raw(next, day_line(&fx, 3, d + DAY));
    assert_int_equal(ptm_time_day_key(k, d - DAY), APR_SUCCESS);
    reads_key = (unsigned)atoi(k);
    for (slots = 0; slots < 2; slots++) {
        ptm_history_facts_slots = slots ? 1 : 1024;
        q = query(&fx, d - HOUR);
        q.until = d + HOUR;
        q.desc = 0;
        reads_of_day = 0;
        ptm_test_hook = read_hook;
        got = run_q(&fx, &q, now, &res);
        assert_int_equal(got->nelts, 1);
        assert_int_equal(res.skipped, 1);
        assert_int_equal(reads_of_day, 1);
        reads_of_day = 0;
        got = run_q(&fx, &q, now, &res);
        ptm_test_hook = NULL;
        assert_int_equal(got->nelts, 1);
        assert_int_equal(res.skipped, 1);               /* still counted */
        if (!slots) {
            assert_int_equal(reads_of_day, 0);          /* known: not read */
        }
    }
    ptm_history_facts_slots = 1024;
    /* Appended to: a ts a day off, in the window. */
    append_raw(prev, day_line(&fx, 4, d));
    got = run_q(&fx, &q, now, &res);
    assert_int_equal(got->nelts, 2);
    assert_int_equal(res.skipped, 1);
    /* Replaced by a file of the same size, another event in the window. */
    copy = apr_pstrcat(fx.p, fx.dir, "/copy", NULL);
    append_raw(copy, day_line(&fx, 5, d - DAY));
    append_raw(copy, "hello\n");
    append_raw(copy, day_line(&fx, 6, d + 1));
    assert_int_equal(rename(copy, prev), 0);
    got = run_q(&fx, &q, now, &res);
    assert_int_equal(got->nelts, 2);
    assert_int_equal(id_of(APR_ARRAY_IDX(got, 1, const char *)), 6);
    /* A link in its place: refused (one file skipped), not followed. */
    copy = apr_pstrcat(fx.p, fx.dir, "/copy2", NULL);
    append_raw(copy, day_line(&fx, 7, d - DAY));
    append_raw(copy, "hello\n");
    append_raw(copy, day_line(&fx, 8, d + 1));
    assert_int_equal(unlink(prev), 0);
    assert_int_equal(symlink(copy, prev), 0);
    got = run_q(&fx, &q, now, &res);
    assert_int_equal(got->nelts, 1);
    assert_int_equal(res.skipped, 1);
    fx_close(&fx);
}

/* ---- lines checked once per file (ptm_facts.c) --------------------------*/

extern int ptm_facts_ignore_times;
extern int ptm_fc_off;

/* The digest: the same bytes the same digest, one byte changed or one
 * more byte another (at every place in a block and in the last one). */
static void test_facts_digest(void **state)
{
    char a[3000], b[3000];
    uint64_t da, db;
    size_t i, n;

    for (i = 0; i < sizeof(a); i++) {
        a[i] = (char)('a' + i % 23);
    }
    for (n = 0; n <= sizeof(a); n += n < 40 ? 1 : 997) {
        memcpy(b, a, sizeof(a));
        assert_int_equal(ptm_facts_digest(&da, a, n), 0);
        assert_int_equal(ptm_facts_digest(&db, b, n), 0);
        assert_true(da == db);
        for (i = 0; i < n; i += (i < 16 ? 1 : 61)) {
            b[i] ^= 0x20;
            assert_int_equal(ptm_facts_digest(&db, b, n), 0);
            assert_true(da != db);
            b[i] ^= 0x20;
        }
        if (n < sizeof(a)) {
            assert_int_equal(ptm_facts_digest(&db, a, n + 1), 0);
            assert_true(da != db);
        }
    }
}

/* A file whose lines were all found well-formed is not checked again
 * while its bytes are the same; rewritten in place with the same size
 * and, as far as a stat can tell, the same times (a neighbour within a
 * tick of the clock, or writing through a mapping), a line made not JSON
 * is never sent: the lines go out from the copy the child kept (checked),
 * or, without it, the line is checked, skipped and counted. */
static void test_facts_rewritten_in_place(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z"), now = d + DAY;
    const char *f, *l2;
    ptm_history_result_t res;
    apr_array_header_t *got;
    ptm_query_t q;
    char *at;
    int fd, k;

    fx_open(&fx, 0);
    f = day_file(&fx, d);
    append_raw(f, day_line(&fx, 1, d));
    append_raw(f, l2 = day_line(&fx, 2, d + 1));
    append_raw(f, day_line(&fx, 3, d + 2));
    q = query(&fx, d - HOUR);
    q.desc = 0;
    for (k = 0; k < 2; k++) {           /* checked, then known checked */
        got = run_q(&fx, &q, now, &res);
        assert_int_equal(got->nelts, 3);
        assert_int_equal(res.skipped, 0);
    }
    /* {"i":2} becomes {"i"!2}: the same size, the right start. */
    at = strstr(strstr(l2, "\"data\""), "\"i\":");
    assert_non_null(at);
    fd = open(f, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "!", 1,
                            (off_t)strlen(day_line(&fx, 1, d))
                            + (at + 3 - l2)), 1);
    close(fd);
    ptm_facts_ignore_times = 1;
    /* The child kept the file as it read it (ptm_filecache.c): its lines
     * go out from those bytes, the ones that were checked. */
    got = run_q(&fx, &q, now, &res);
    assert_int_equal(got->nelts, 3);
    assert_int_equal(res.skipped, 0);
    for (k = 0; k < 3; k++) {
        const char *line = APR_ARRAY_IDX(got, k, const char *);

        assert_true(ptm_json_well_formed(line, strlen(line)));
    }
    /* Without that copy the file is read: its digest is not the checked
     * one, so the broken line is checked, skipped and counted. */
    ptm_fc_off = 1;
    got = run_q(&fx, &q, now, &res);
    ptm_fc_off = 0;
    assert_int_equal(got->nelts, 2);
    assert_int_equal(id_of(APR_ARRAY_IDX(got, 0, const char *)), 1);
    assert_int_equal(id_of(APR_ARRAY_IDX(got, 1, const char *)), 3);
    assert_int_equal(res.skipped, 1);
    ptm_facts_ignore_times = 0;
    /* As a stat sees it too. */
    got = run_q(&fx, &q, now, &res);
    assert_int_equal(got->nelts, 2);
    assert_int_equal(res.skipped, 1);
    fx_close(&fx);
}

/* ---- a ring restored from a crafted state --------------------------------*/

/* Rewrite the line of the ring's record `idx` (from the oldest) to
 * head + "xxx..." + tail, of the same length, with the record's check made
 * right (as a crafted state file would have it), then restore the state as
 * a start of httpd does (the writing mark set: a repair, ptm_ring_copy). */
static void plant_ring_line(fx_t *fx, int idx, const char *head,
                            const char *tail)
{
    hdr_t *h = (hdr_t *)fx->base;
    rec_t *r = (rec_t *)((char *)fx->base + h->ring + h->ring_head);
    char *line;
    size_t hl = strlen(head), tl = strlen(tail);
    int i;

    for (i = 0; i < idx; i++) {
        r = (rec_t *)((char *)r + r->len);
    }
    line = (char *)(r + 1) + r->type_len;
    assert_true(r->line_len >= hl + tl + 2);
    memcpy(line, head, hl);
    line[hl] = '"';
    memset(line + hl + 1, 'x', r->line_len - hl - tl - 2);
    line[r->line_len - tl - 1] = '"';
    memcpy(line + r->line_len - tl, tail, tl);
    r->check = ptm_ring_check(r);
    h->writing = 1;
    assert_int_equal(ptm_store_lock(fx->st), APR_SUCCESS);
    ptm_store_unlock(fx->st);
    assert_int_equal(ptm_store_repairs(fx->st), 1);
}

static apr_status_t sink_any(void *ctx, const char *line, size_t len)
{
    apr_array_header_t *a = ctx;

    APR_ARRAY_PUSH(a, const char *) = apr_pstrmemdup(a->pool, line, len);
    return APR_SUCCESS;
}

/* Every line of an answer is an envelope in the file form, one line:
 * {"seq":N,"ts":"..","stream":"site"|"run","type":"..","data":..}. */
static void all_envelopes(fx_t *fx, const ptm_query_t *q, apr_time_t now)
{
    apr_array_header_t *got = apr_array_make(fx->p, 8, sizeof(char *));
    ptm_history_result_t res;
    int i;

    assert_int_equal(ptm_history_query(&res, &fx->conf, q, now, sink_any,
                                       got, fx->p), APR_SUCCESS);
    for (i = 0; i < got->nelts; i++) {
        const char *l = APR_ARRAY_IDX(got, i, const char *);
        size_t n = strlen(l);

        if (!memchr(l, '\n', n) && !memchr(l, '\r', n)
            && ptm_json_well_formed(l, n)
            && strncmp(l, "{\"seq\":", 7) == 0
            && strstr(l, ",\"ts\":\"")
            && (strstr(l, "\",\"stream\":\"site\",\"type\":\"")
                || strstr(l, "\",\"stream\":\"run\",\"type\":\""))
            && strstr(l, "\",\"data\":")) {
            continue;
        }
        fail_msg("GET /events (%s%s) served a line that is not an "
                 "envelope: [%s]", q->ndjson ? "ndjson" : "json",
                 q->every ? ", every" : "", l);
    }
}

/* SPEC §11.6 (a crafted state is data: refused or checked, never served
 * as it is) and §12.2 (each event an envelope in the file form): GET
 * /events selects a ring copy by its record's numbers and serves its line
 * unparsed (unless every= or run_id= needs the parse), so the restore
 * must refuse a line that is not its record's envelope, such as a crafted
 * {"seq":2,"note":"xx"} (well-formed, starting as an envelope does).  No
 * form of the answer serves it, with every= or without. */
static void test_restored_ring_line_not_envelope(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z");
    ptm_query_t q;

    fx_open(&fx, 64 * 1024);
    post_now(&fx, d + 1, "a", 0);
    post_now(&fx, d + 2, "a", 0);
    post_now(&fx, d + 3, "a", 0);
    plant_ring_line(&fx, 1, "{\"seq\":2,\"note\":", "}");
    q = query(&fx, d);
    q.every = 1000;
    all_envelopes(&fx, &q, d + HOUR);
    q.every = 0;
    all_envelopes(&fx, &q, d + HOUR);
    q.ndjson = 1;
    all_envelopes(&fx, &q, d + HOUR);
    fx_close(&fx);
}

/* Nor a line with a line break in it (JSON whitespace, after "data":),
 * which the prefix parse alone would pass: an NDJSON answer would carry
 * that event as two lines, neither of them JSON (SPEC §12.2: one envelope
 * per line; §11.6: never malformed JSON).  The module itself never writes
 * a raw line break (compact JSON, escapes). */
static void test_restored_ring_line_break(void **state)
{
    static fx_t fx;
    apr_time_t d = T("2026-03-17T10:00:00Z");
    ptm_query_t q;

    fx_open(&fx, 64 * 1024);
    fx.site_meta = "{\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                   "xxxxxxxxxxxxxxxxxxxxxx\"}";
    post_now(&fx, d + 1, "a", 0);
    post_now(&fx, d + 2, "a", 0);
    plant_ring_line(&fx, 1, "{\"seq\":2,\"ts\":\"2026-03-17T10:00:00.000Z\","
                    "\"stream\":\"site\",\"type\":\"a\",\"data\":\n{\"i\":2},"
                    "\"meta\":{\"p\":", "}}");
    q = query(&fx, d);
    q.ndjson = 1;
    all_envelopes(&fx, &q, d + HOUR);
    fx_close(&fx);
}

#define TEST(f) cmocka_unit_test_teardown(f, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_order),
        TEST(test_order_many),
        TEST(test_window_bounds),
        TEST(test_filters),
        TEST(test_ring_and_files),
        TEST(test_recent_since),
        TEST(test_every),
        TEST(test_limit_and_cursor),
        TEST(test_cursor_while_posting),
        TEST(test_posting_during_query),
        TEST(test_damaged_lines),
        TEST(test_links_not_followed),
        TEST(test_long_line),
        TEST(test_cost_follows_window),
        TEST(test_wide_window),
        TEST(test_slices_split),
        TEST(test_runs),
        TEST(test_legacy_seqs),
        TEST(test_planted_runs),
        TEST(test_client_gone),
        TEST(test_day_facts),
        TEST(test_facts_digest),
        TEST(test_facts_rewritten_in_place),
        TEST(test_restored_ring_line_not_envelope),
        TEST(test_restored_ring_line_break),
    };

    return cmocka_run_group_tests_name("ptm_history", tests,
                                       history_group_setup, group_teardown);
}

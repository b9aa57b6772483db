/* GET /events; see ptm_history.h.
 *
 * Where the events are.  The ring of the store holds the most recent ones,
 * every one (ephemeral ones too), with their ts already parsed.  The site
 * day files hold the stored site events by the server's local date of
 * acceptance (noon boundary), so a client ts is normally in the file of
 * its own day and at most a day off in a neighbour's; a run's file holds
 * the events of the runs that used its directory.  A slice of time
 * [t0, t1) therefore needs the ring, the day files day_key(t0 - 1 day) ..
 * day_key(t1 + 1 day), and the run files of the runs active within a day
 * of it: dates are iterated, the directory is never listed, so the cost
 * follows the window and not the archive.
 *
 * Bounded memory.  The window is walked a slice at a time in the order of
 * the answer (noon-local day slices, so each day file is mostly read by
 * one slice).  A slice collects only the keys of its matching events
 * (where each line is: the ring copy, or a file and an offset), at most
 * SLICE_CAP of them; a slice that holds more is halved and done again.
 * With `every` it keeps one key per type per bucket as it goes, so a long
 * window costs its buckets, not its events.  The keys are sorted and the
 * lines read back one by one as they are handed to `emit`.  Each file's
 * ts range is remembered once it has been read to its end, so later
 * slices skip the files that cannot hold their events.
 *
 * Each event once.  A stored event is appended to its file and put into
 * the ring in one critical section, file first, and the ring drops its
 * oldest events first, so what the ring holds of a file is known from
 * seqs alone: the spans of ptm_recent_info_t (per stream, and per run by
 * its tie; seqs a crash left unused fall between them).  A slice first
 * copies the ring's events of the slice, with the spans as they were at
 * that moment, then reads the files: a line whose seq is in a span was in
 * the ring then and is skipped in favour of the copy (same bytes); any
 * other was not, and is taken from the file (a line appended after that
 * moment has a seq beyond every span: a new event, taken or not).  Every
 * event of the slice is so taken once, from exactly one place.  A slice
 * whose time the ring held nothing of when it was first asked is not
 * asked again: all its stored events then come from the files, and the
 * ring's later arrivals there (new events) may be missed, which the
 * contract allows.
 *
 * Each event once across pages.  A page ends at the key of its last
 * event, L, and the next continues strictly after L in the same order.
 * Keys are the event's own (ts, stream, seq, tie), the same whether it is
 * read from the ring or from its file, so each page takes each event of
 * its window once (above) and consecutive pages take disjoint ranges of
 * keys: an event that matched on the first page and is still stored (or
 * still in the ring) is returned on exactly one page; events that arrive
 * meanwhile fall wherever their key puts them, before L (never seen) or
 * after (seen once).  An ephemeral event the ring dropped between pages
 * is gone (recent_since says from when the ring is complete).  With
 * `every`, the selection of a bucket (the greatest key per type) depends
 * on the whole bucket: a slice never splits a bucket, and a page after a
 * cursor reads the cursor's bucket whole again, selects as the first
 * page did and emits only what lies after L.
 *
 * A line is trusted as little as the files are (they are the User's): it
 * must start as the module writes it, {"seq":N,"ts":"..","stream":"site"
 * or "run","type":"..","data":..,"meta":..}, in a file of its stream, and
 * end in a newline; a line that is emitted must be well-formed JSON (a
 * ring line is: the module wrote it, or ptm_ring_copy checked it).  What
 * fails is skipped and counted once per file per request.  A ts that is
 * not an RFC 3339 time (clients may send any string) is a line that never
 * matches a window, not damage.
 *
 * This file walks the window and hands out each slice's lines; its parts
 * (one line, a slice's keys, the ring, the files) are listed in
 * ptm_hist_int.h. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include "ptm_buf.h"
#include "ptm_hist_int.h"
#include "ptm_history.h"
#include "ptm_json.h"
#include "ptm_run.h"
#include "ptm_runs.h"
#include "ptm_stash.h"
#include "ptm_test_hook.h"

#ifdef PTM_TEST_HOOKS
/* SLICE_CAP of the unit tests (ptm_hist_int.h). */
unsigned ptm_history_slice_cap = PTM_HISTORY_SLICE_CAP;
#endif

#define SLICE_MIN ((apr_time_t)1000)            /* 1 ms */
#define OVERFLOW (APR_OS_START_USERERR + 90)    /* internal: split */

/* ---- arithmetic ----------------------------------------------------------*/

/* The bucket boundary at or below / above `t` (buckets of `every` from
 * the epoch). */
static apr_time_t align_down(apr_time_t t, apr_time_t every)
{
    apr_time_t q = floor_div(t, every);

    return q < APR_INT64_MIN / every ? APR_INT64_MIN : q * every;
}

static apr_time_t align_up(apr_time_t t, apr_time_t every)
{
    apr_time_t d = align_down(t, every);

    return d == t ? t : sat_add(d, every);
}

/* ---- the window in slices ------------------------------------------------*/

/* The end of the slice starting at `pos` (ascending): the next noon, or
 * the window's or the era's edge; no wider than `width` when set. */
static apr_time_t slice_end(const hist_t *h, apr_time_t pos,
                            apr_time_t width)
{
    apr_time_t b;

    if (pos < ERA_LO) {
        b = ERA_LO;
    }
    else if (pos >= h->era_hi) {
        b = h->hi;
    }
    else {
        b = ptm_hist_day_noon(pos, 1);
        if (b <= pos) {
            b = sat_add(pos, DAY);
        }
        if (b > h->era_hi) {
            b = h->era_hi;
        }
    }
    if (width && sat_add(pos, width) < b) {
        b = sat_add(pos, width);
    }
    if (h->q->every) {
        b = align_up(b, h->q->every);
    }
    return b > h->hi ? h->hi : b;
}

/* The start of the slice ending at `pos` (descending). */
static apr_time_t slice_start(const hist_t *h, apr_time_t pos,
                              apr_time_t width)
{
    apr_time_t a;

    if (pos > h->era_hi) {
        a = h->era_hi;
    }
    else if (pos <= ERA_LO) {
        a = h->lo;
    }
    else {
        a = ptm_hist_day_noon(pos - 1, 0);
        if (a >= pos || a == 0) {
            a = sat_sub(pos, DAY);
        }
        if (a < ERA_LO) {
            a = ERA_LO;
        }
    }
    if (width && sat_sub(pos, width) > a) {
        a = sat_sub(pos, width);
    }
    if (h->q->every) {
        a = align_down(a, h->q->every);
    }
    return a < h->lo ? h->lo : a;
}

/* ---- emitting ------------------------------------------------------------*/

/* The order of the answer (ascending): by key, then where (two lines of
 * a file may carry one key; no two entries are in the same place). */
static int ent_cmp(const ent_t *x, const ent_t *y)
{
    int c;

    if (x->key.ts != y->key.ts) {
        return x->key.ts < y->key.ts ? -1 : 1;
    }
    if ((c = ptm_key_cmp(&x->key, &y->key)) != 0) {
        return c;
    }
    if (x->file != y->file) {
        return x->file < y->file ? -1 : 1;
    }
    return x->off < y->off ? -1 : x->off > y->off;
}

/* The end of the run in order that starts at a[i]. */
static size_t run_end(ent_t *const *a, size_t i, size_t n)
{
    for (i++; i < n && ent_cmp(a[i - 1], a[i]) < 0; i++) {
    }
    return i;
}

/* Sort a[0..n) by ent_cmp, with room for n more at t.  The keys come as a
 * few runs already in order (the ring's events in the order they were
 * accepted, each file's lines in its order, both mostly by ts), so runs
 * are merged, two by two, until one is left: about linear here, and
 * never worse than a merge sort. */
static void sort_ents(ent_t **a, ent_t **t, size_t n)
{
    ent_t **src = a, **dst = t, **sw;
    size_t i, j, k, x, y, o, runs;

    if (n < 2 || run_end(a, 0, n) == n) {
        return;
    }
    do {
        runs = 0;
        for (i = 0; i < n; i = k) {
            j = run_end(src, i, n);
            k = j < n ? run_end(src, j, n) : n;
            for (x = i, y = j, o = i; x < j && y < k; o++) {
                dst[o] = ent_cmp(src[y], src[x]) < 0 ? src[y++] : src[x++];
            }
            while (x < j) {
                dst[o++] = src[x++];
            }
            while (y < k) {
                dst[o++] = src[y++];
            }
            runs++;
        }
        sw = src;
        src = dst;
        dst = sw;
    } while (runs > 1);
    if (src != a) {
        memcpy(a, src, n * sizeof(*a));
    }
}

/* The line of `e`: the ring's copy, or read back from its file and found
 * to be still the line that was selected. */
static const char *ent_line(hist_t *h, slice_t *sl, const ent_t *e)
{
    const sfile_t *f;
    line_t l;

    if (e->file < 0) {
        return APR_ARRAY_IDX(sl->ring, (int)e->off, ptm_recent_t).line;
    }
    f = &APR_ARRAY_IDX(sl->files, e->file, sfile_t);
    if (f->data) {
        return f->data + e->off;        /* the bytes that were scanned */
    }
    if (ptm_hist_grow((void **)&h->lbuf, &h->lbuf_cap, (size_t)e->len + 1,
                      1) != 0
        || pread(f->fd, h->lbuf, (size_t)e->len + 1, (off_t)e->off)
           != (ssize_t)e->len + 1
        || h->lbuf[e->len] != '\n'
        || ptm_line_parse(&l, h->lbuf, e->len) != 0
        || l.seq != e->key.seq
        || ptm_hist_line_ts(&l, h->lbuf) != e->key.ts) {
        return NULL;
    }
    return h->lbuf;
}

static apr_status_t emit_slice(hist_t *h, slice_t *sl)
{
    const ptm_query_t *q = h->q;
    size_t k;

    /* Sorted by pointer: a merge moves 8 bytes an entry rather than a
     * whole ent_t. */
    if (ptm_hist_grow((void **)&h->order, &h->order_cap, sl->n,
                      sizeof(ent_t *))
        || ptm_hist_grow((void **)&h->merge, &h->merge_cap, sl->n,
                         sizeof(ent_t *))) {
        return APR_ENOMEM;
    }
    for (k = 0; k < sl->n; k++) {
        h->order[k] = &h->ents[k];
    }
    sort_ents(h->order, h->merge, sl->n);
    for (k = 0; k < sl->n; k++) {
        const ent_t *e = h->order[h->asc ? k : sl->n - 1 - k];
        const char *line;
        apr_status_t rv;

        if (q->every && !ptm_hist_after_cursor(h, &e->key)) {
            continue;                   /* before the cursor, in its bucket */
        }
        /* A line of a file is the User's: checked as it goes out, unless
         * the bytes it is sent from were checked whole already.  The
         * ring's are the module's own, well-formed when written, and
         * checked when restored from an old state (ptm_ring_copy). */
        if (!(line = ent_line(h, sl, e))
            || (e->file >= 0
                && !APR_ARRAY_IDX(sl->files, e->file, sfile_t).verified
                && !ptm_json_well_formed(line, e->len))) {
            h->res->skipped++;
            continue;
        }
        if ((q->limit > 0 && h->res->events >= (unsigned)q->limit)
            || (h->conf->page_bytes && h->res->events
                && h->bytes + e->len > h->conf->page_bytes)) {
            h->res->more = 1;
            h->done = 1;
            return APR_SUCCESS;
        }
        if ((rv = h->emit(h->ctx, line, e->len)) != APR_SUCCESS) {
            return rv;
        }
        h->bytes += e->len;
        h->res->events++;
        h->res->last = e->key;
    }
    if (q->limit > 0 && h->res->events >= (unsigned)q->limit) {
        h->looking = 1;
    }
    return APR_SUCCESS;
}

/* One slice: the ring, then the files, then the lines in order.  Returns
 * APR_SUCCESS, OVERFLOW (split it), or the error of the store or emit. */
static apr_status_t do_slice(hist_t *h, apr_time_t t0, apr_time_t t1,
                             int uncapped)
{
    slice_t sl;
    apr_status_t rv;
    int i;

    memset(&sl, 0, sizeof(sl));
    if ((rv = apr_pool_create(&sl.p, h->p)) != APR_SUCCESS) {
        return rv;
    }
    sl.t0 = t0;
    sl.t1 = t1;
    sl.cap = uncapped ? SIZE_MAX : SLICE_CAP;
    sl.files = apr_array_make(sl.p, 8, sizeof(sfile_t));
    if (h->q->every && ptm_hist_slots_grow(h, 1024, 0) != 0) {
        rv = APR_ENOMEM;
        goto out;
    }
    PTM_TEST_HOOK("history:slice", 0);
    if ((rv = ptm_hist_take_ring(h, &sl)) != APR_SUCCESS) {
        goto out;
    }
    PTM_TEST_HOOK("history:ring-taken", 0);
    if (!sl.overflow && !sl.found) {
        ptm_hist_read_files(h, &sl);
    }
    if (sl.overflow) {
        /* Uncapped, only memory can have run out. */
        rv = uncapped ? APR_ENOMEM : OVERFLOW;
    }
    else if (sl.found) {
        h->res->more = 1;
        h->done = 1;
    }
    else if (!h->looking) {
        rv = emit_slice(h, &sl);
    }
out:
    for (i = 0; i < sl.files->nelts; i++) {
        ptm_hist_sfile_close(h, &APR_ARRAY_IDX(sl.files, i, sfile_t));
    }
    apr_pool_destroy(sl.p);
    return rv;
}

/* ---- runs ----------------------------------------------------------------*/

static void add_run(hist_t *h, apr_hash_t *by_dir, const ptm_runs_entry_t *e)
{
    const char *root, *rel, *k;
    uint32_t tie;
    span_t *s;
    src_t *src;
    int i;

    /* Its events were accepted while it ran; their ts, a day off at most.
     * A run that cannot hold events of the window is not looked at again
     * (a journal planted with a million runs costs one pass, not one per
     * slice). */
    if (!overlaps(sat_sub(e->start, DAY), sat_add(e->stop, DAY), h->lo,
                  h->hi)) {
        return;
    }
    /* Only beneath the site dir or a run root, as run start allows (the
     * journal is the User's; the roots are the admin's, and may have
     * changed since). */
    if (ptm_run_split_dir(&root, &rel, e->run_dir, h->conf->site_dir,
                          h->conf->run_roots, h->p) != APR_SUCCESS) {
        h->res->skipped++;
        return;
    }
    PTM_TEST_HOOK("history:run", 0);
    k = apr_pstrcat(h->p, root, "/", rel, NULL);
    if (!(src = apr_hash_get(by_dir, k, APR_HASH_KEY_STRING))) {
        src = apr_pcalloc(h->p, sizeof(*src));
        src->run = PTM_STREAM_RUN;
        src->root = root;
        src->rel = rel;
        src->ties = apr_array_make(h->p, 1, sizeof(uint32_t));
        src->spans = apr_array_make(h->p, 1, sizeof(span_t));
        apr_hash_set(by_dir, k, APR_HASH_KEY_STRING, src);
        APR_ARRAY_PUSH(h->runs, src_t *) = src;
    }
    /* Its events were accepted while it ran; their ts, a day off at most. */
    s = apr_array_push(src->spans);
    s->lo = sat_sub(e->start, DAY);
    s->hi = sat_add(e->stop, DAY);
    /* Lines sort with the tie of the latest run that used the directory
     * (the one the ring's copies are likeliest to belong to). */
    tie = ptm_query_tie(e->run_dir, strlen(e->run_dir));
    src->tie = tie;
    for (i = 0; i < src->ties->nelts; i++) {
        if (APR_ARRAY_IDX(src->ties, i, uint32_t) == tie) {
            return;
        }
    }
    APR_ARRAY_PUSH(src->ties, uint32_t) = tie;
}

/* 1 if the run `e` can hold events of [lo, hi): its events were accepted
 * while it ran, their ts a day off at most (as add_run's span). */
static int run_near(const ptm_runs_entry_t *e, apr_time_t lo, apr_time_t hi)
{
    return overlaps(sat_sub(e->start, DAY), sat_add(e->stop, DAY), lo, hi);
}

/* The runs index and the active run (which may predate the journal, or
 * have failed to be noted in it).  Only the directories of the runs near
 * the window are looked at (a year of runs is mostly far from it), with
 * every run that used them (their ties say which ring events are theirs). */
static apr_status_t load_runs(hist_t *h)
{
    const apr_array_header_t *runs;
    apr_hash_t *by_dir = apr_hash_make(h->p), *near;
    ptm_store_run_t run;
    const ptm_runs_entry_t *last;
    ptm_runs_entry_t active;
    unsigned bad = 0;
    apr_status_t rv;
    int i, n, has_active = 0;

    h->runs = apr_array_make(h->p, 8, sizeof(src_t *));
    if (h->q->stream == PTM_STREAM_SITE) {
        return APR_SUCCESS;
    }
    if (ptm_runs_read_cached(&runs, &bad, h->conf->site_dir, h->p)
        != APR_SUCCESS) {
        bad++;                          /* a journal we cannot read */
    }
    h->res->skipped += bad;
    if ((rv = ptm_store_run_peek(&run, h->conf->store, h->p)) != APR_SUCCESS) {
        return rv;
    }
    last = runs->nelts ? &APR_ARRAY_IDX(runs, runs->nelts - 1,
                                        ptm_runs_entry_t) : NULL;
    if (run.active && !(last && last->stop == APR_INT64_MAX
                        && strcmp(last->run_dir, run.run_dir) == 0)) {
        /* Its start is not known: any time. */
        active.run_id = run.run_id;
        active.run_dir = run.run_dir;
        active.start = APR_INT64_MIN;
        active.stop = APR_INT64_MAX;
        has_active = 1;
    }
    n = runs->nelts + has_active;
    /* The directories of the runs near the window, by name as the
     * journal has it (the module writes each one normalised). */
    near = apr_hash_make(h->p);
    for (i = 0; i < n; i++) {
        const ptm_runs_entry_t *e = i < runs->nelts
            ? &APR_ARRAY_IDX(runs, i, ptm_runs_entry_t) : &active;

        if (run_near(e, h->lo, h->hi)) {
            apr_hash_set(near, e->run_dir, APR_HASH_KEY_STRING, e);
        }
    }
    for (i = 0; apr_hash_count(near) && i < n; i++) {
        const ptm_runs_entry_t *e = i < runs->nelts
            ? &APR_ARRAY_IDX(runs, i, ptm_runs_entry_t) : &active;

        if (apr_hash_get(near, e->run_dir, APR_HASH_KEY_STRING)) {
            add_run(h, by_dir, e);
        }
    }
    return APR_SUCCESS;
}

/* ---- the query -----------------------------------------------------------*/

static apr_status_t free_buffers(void *data)
{
    hist_t *h = data;

    free(h->buf);
    free(h->lbuf);
    ptm_stash_give(h->ents, h->ents_cap * sizeof(ent_t));
    free(h->order);
    free(h->merge);
    free(h->slots);
    if (h->site_fd >= 0) {
        close(h->site_fd);
    }
    return APR_SUCCESS;
}

/* 1 if `s` is an integer as JSON writes one (-?(0|[1-9][0-9]*)). */
static int is_json_int(const char *s, size_t n)
{
    size_t i = 0;

    if (n && s[0] == '-') {
        i++;
    }
    if (i == n || (s[i] == '0' && n - i > 1)) {
        return 0;
    }
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

/* Walk the window slice by slice in the answer's order. */
static apr_status_t walk(hist_t *h)
{
    apr_time_t pos = h->asc ? h->lo : h->hi, width = 0, a, b, mid;
    apr_time_t every = h->q->every;
    apr_status_t rv;
    int uncapped;

    while (!h->done && (h->asc ? pos < h->hi : pos > h->lo)) {
        if (h->conf->gone && h->conf->gone(h->conf->gone_ctx)) {
            return APR_ECONNABORTED;
        }
        if (h->asc) {
            a = pos;
            b = slice_end(h, pos, width);
        }
        else {
            b = pos;
            a = slice_start(h, pos, width);
        }
        uncapped = 0;
        while ((rv = do_slice(h, a, b, uncapped)) == OVERFLOW) {
            /* Too many events: half of it (in the answer's order), again;
             * never a bucket split; below a millisecond (events that share
             * one ts), take it whole. */
            PTM_TEST_HOOK("history:split", 0);
            /* (Halves taken apart: b - a may not fit an int64.) */
            mid = a / 2 + b / 2 + (a % 2 + b % 2) / 2;
            if (every) {
                mid = h->asc ? align_down(mid, every) : align_up(mid, every);
            }
            if ((uint64_t)b - (uint64_t)a <= (uint64_t)SLICE_MIN || mid <= a
                || mid >= b) {
                uncapped = 1;
                continue;
            }
            if (h->asc) {
                b = mid;
            }
            else {
                a = mid;
            }
            width = (uint64_t)b - (uint64_t)a > (uint64_t)APR_INT64_MAX
                    ? APR_INT64_MAX : b - a;
        }
        if (rv != APR_SUCCESS) {
            return rv;
        }
        pos = h->asc ? b : a;
        if (width) {
            /* Grow back: the next stretch may be quieter. */
            width = width > DAY ? 0 : width * 2;
        }
    }
    return APR_SUCCESS;
}

apr_status_t ptm_history_query(ptm_history_result_t *res,
                               const ptm_history_conf_t *conf,
                               const ptm_query_t *q, apr_time_t now,
                               ptm_history_emit_fn emit, void *ctx,
                               apr_pool_t *p)
{
    hist_t h;
    apr_status_t rv;
    apr_time_t every = q->every;

    memset(res, 0, sizeof(*res));
    memset(&h, 0, sizeof(h));
    h.conf = conf;
    h.q = q;
    h.res = res;
    h.emit = emit;
    h.ctx = ctx;
    h.site_fd = -1;
    if ((rv = apr_pool_create(&h.p, p)) != APR_SUCCESS) {
        return rv;
    }
    apr_pool_cleanup_register(h.p, &h, free_buffers, apr_pool_cleanup_null);
    h.asc = q->ndjson || !q->desc;
    h.lo = q->since;
    h.hi = q->until;
    h.era_hi = sat_add(now, 2 * DAY);
    h.days = apr_hash_make(h.p);
    if (q->has_after) {
        /* Only what lies after the cursor; with `every`, its bucket whole
         * (its selection needs all of it). */
        apr_time_t t = q->after.ts;

        if (h.asc) {
            t = every ? align_down(t, every) : t;
            h.lo = t > h.lo ? t : h.lo;
        }
        else {
            t = every ? sat_add(align_down(t, every), every) : sat_add(t, 1);
            h.hi = t < h.hi ? t : h.hi;
        }
    }
    if (q->run_id) {
        ptm_buf_init(&h.rid, h.p, q->run_id_len + 8);
        ptm_json_dump_string(&h.rid, q->run_id, q->run_id_len);
        h.rid_int = is_json_int(q->run_id, q->run_id_len);
    }
    if ((h.ents = ptm_stash_take(1024 * sizeof(ent_t), &h.ents_cap)) == NULL) {
        rv = APR_ENOMEM;
        goto out;
    }
    h.ents_cap /= sizeof(ent_t);
    if (q->stream != PTM_STREAM_RUN) {
        h.site_fd = open(conf->site_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if ((rv = load_runs(&h)) != APR_SUCCESS) {
        goto out;
    }
    if ((rv = walk(&h)) != APR_SUCCESS) {
        goto out;
    }
    if (!h.ring_asked) {
        /* An empty window: still say how far back the ring goes. */
        slice_t sl;

        memset(&sl, 0, sizeof(sl));
        sl.p = h.p;
        sl.t0 = sl.t1 = 0;
        sl.cap = 1;
        rv = ptm_hist_take_ring(&h, &sl);
    }
out:
    apr_pool_destroy(h.p);
    return rv;
}

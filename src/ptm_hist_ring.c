/* The ring's part of a slice (ptm_history.c): the store's recent events
 * of the slice copied out under its lock, with the spans of seqs the ring
 * held at that moment, and the tests by which the files then skip the
 * lines the ring gave (each event is taken once, from one place). */
#include <string.h>
#include <apr_hash.h>
#include "ptm_hist_int.h"
#include "ptm_query.h"
#include "ptm_stash.h"
#include "ptm_store.h"

/* An event of the ring, as a line of a file tells it. */
typedef struct {
    uint64_t seq;
    int64_t ts;
    uint32_t tie;
    uint32_t stream;
} rkey_t;

typedef struct {
    hist_t *h;
    apr_time_t t0, t1;          /* what to copy */
    int track;                  /* note the ts range of what matches */
    apr_time_t min, max;
} want_t;

/* Under the store lock: quick tests on copied-out numbers only. */
static int ring_want(void *ctx, const ptm_recent_t *ev)
{
    want_t *w = ctx;
    const hist_t *h = w->h;
    const ptm_query_t *q = h->q;
    ptm_key_t k;

    if (ev->ts == PTM_TS_NONE || (q->stream != PTM_Q_ALL
                                  && ev->stream != q->stream)
        || !ptm_hist_type_wanted(q, ev->type, ev->type_len)) {
        return 0;
    }
    if (w->track) {
        if (ev->ts < w->min) {
            w->min = ev->ts;
        }
        if (ev->ts > w->max) {
            w->max = ev->ts;
        }
    }
    if (ev->ts < w->t0 || ev->ts >= w->t1) {
        return 0;
    }
    k.ts = ev->ts;
    k.stream = ev->stream;
    k.seq = ev->seq;
    k.tie = ev->tie;
    return q->every || ptm_hist_after_cursor(h, &k);
}

/* Keep the keys of the copies of the slice's events (sl->ring). */
static apr_status_t take_copies(hist_t *h, slice_t *sl)
{
    int i;

    sl->ring_keys = apr_hash_make(sl->p);
    for (i = 0; i < sl->ring->nelts; i++) {
        const ptm_recent_t *ev = &APR_ARRAY_IDX(sl->ring, i, ptm_recent_t);
        line_t l;
        ent_t c;

        if (ev->ts < sl->t0 || ev->ts >= sl->t1) {
            continue;                   /* another slice's (ring_all) */
        }
        /* Only a stored event is a file line's copy (ptm_hist_ring_has). */
        if (ev->stored) {
            rkey_t *rk = apr_pcalloc(sl->p, sizeof(*rk));

            rk->seq = ev->seq;
            rk->ts = ev->ts;
            rk->tie = ev->tie;
            rk->stream = (uint32_t)ev->stream;
            apr_hash_set(sl->ring_keys, rk, sizeof(*rk), rk);
        }
        /* The record's numbers select it; its line's prefix is parsed
         * only when the type's place in it (`every`) or its meta
         * (run_id=) is needed: for a day of copies that parse was 6% of
         * an NDJSON export's CPU.  The line is the module's own, checked
         * to be the envelope its record tells when restored from an old
         * state (ptm_ring.c, line_ok). */
        memset(&l, 0, sizeof(l));
        if ((h->q->every || h->q->run_id)
            && ptm_line_parse(&l, ev->line, ev->line_len) != 0) {
            h->res->skipped++;
            continue;
        }
        if (h->q->run_id
            && !ptm_hist_run_id_matches(h, ev->line, ev->line_len, l.rest)) {
            continue;
        }
        memset(&c, 0, sizeof(c));
        c.key.ts = ev->ts;
        c.key.stream = ev->stream;
        c.key.seq = ev->seq;
        c.key.tie = ev->tie;
        c.off = (uint64_t)i;
        c.len = (uint32_t)ev->line_len;
        c.file = -1;
        c.type_off = (uint32_t)l.type_off;
        c.type_len = (uint32_t)l.type_len;
        if (ptm_hist_add_key(h, sl, &c, ev->line + l.type_off) != 0) {
            break;
        }
    }
    return APR_SUCCESS;
}

static unsigned ring_hint;

/* An array of `n` ptm_recent_t in a buffer this thread kept from an
 * earlier request (ptm_stash): the first look's copies of a day of a
 * full ring run to thousands, and fresh pool memory for them (cleared by
 * apr_array_make) cost more than the copying.  It grows in `p` as any
 * array if it must. */
static apr_array_header_t *stash_array(apr_pool_t *p, unsigned n)
{
    apr_array_header_t *a;
    size_t cap;
    void *mem = ptm_stash_take_for(p, n * sizeof(ptm_recent_t), &cap);

    if (!mem) {
        return apr_array_make(p, (int)n, sizeof(ptm_recent_t));
    }
    a = apr_palloc(p, sizeof(*a));
    a->pool = p;
    a->elt_size = sizeof(ptm_recent_t);
    a->nelts = 0;
    a->nalloc = (int)(cap / sizeof(ptm_recent_t));
    a->elts = mem;
    return a;
}

/* The first look at the ring: the copies of the events of the whole
 * window, when there are at most SLICE_CAP of them, for every slice to
 * take its own from (one walk of the ring under the lock per request,
 * rather than one per slice); else, as for a slice, only the range. */
static apr_status_t look_ring(hist_t *h)
{
    want_t w;
    int truncated = 0;
    unsigned hint;
    apr_array_header_t *all;
    apr_pool_t *p;
    apr_status_t rv;

    /* Its own pool: copies cut short are given back at once. */
    if ((rv = apr_pool_create(&p, h->p)) != APR_SUCCESS) {
        return rv;
    }
    w.h = h;
    w.t0 = h->lo;
    w.t1 = h->hi;
    w.track = 1;
    w.min = APR_INT64_MAX;
    w.max = APR_INT64_MIN;
    /* Room for as many as the last look of this child found (up to a
     * point): the array is not grown (copied) a dozen times. */
    hint = __atomic_load_n(&ring_hint, __ATOMIC_RELAXED);
    all = stash_array(p, (hint < 8192 ? hint : 8192) + 64);
    rv = ptm_store_recent_window(&h->ring_all_info, all, &truncated,
                                 h->conf->store, h->lo, h->hi,
                                 (unsigned)SLICE_CAP, ring_want, &w, p);
    if (rv != APR_SUCCESS) {
        apr_pool_destroy(p);
        return rv;
    }
    h->ring_asked = 1;
    h->ring_on = h->ring_all_info.size > 0;
    h->res->recent_since = h->ring_all_info.count
                           ? h->ring_all_info.oldest : 0;
    __atomic_store_n(&ring_hint, (unsigned)all->nelts, __ATOMIC_RELAXED);
    if (truncated) {
        h->ring_all_info.spans = NULL;  /* in p: not used again */
        apr_pool_destroy(p);
        return APR_SUCCESS;
    }
    h->ring_all = all;
    h->ring_range = 1;
    h->ring_min = w.min;
    h->ring_max = w.max;
    return APR_SUCCESS;
}

/* Copy the ring's events of the slice (and the spans of seqs it holds)
 * first: from the first look's copies, taken before any file was read
 * (so what they say of the files holds as for a copy taken now), or from
 * the ring. */
apr_status_t ptm_hist_take_ring(hist_t *h, slice_t *sl)
{
    want_t w;
    int truncated = 0;
    apr_status_t rv;

    if (!h->ring_asked && (rv = look_ring(h)) != APR_SUCCESS) {
        return rv;
    }
    if (!h->ring_on || (h->ring_range
                        && !overlaps(h->ring_min, sat_add(h->ring_max, 1),
                                     sl->t0, sl->t1))) {
        return APR_SUCCESS;             /* it held nothing of this slice */
    }
    if (h->ring_all) {
        sl->ring = h->ring_all;
        sl->info = h->ring_all_info;
        sl->have_info = 1;
        return take_copies(h, sl);
    }
    w.h = h;
    w.t0 = sl->t0;
    w.t1 = sl->t1;
    w.track = !h->ring_range;
    w.min = APR_INT64_MAX;
    w.max = APR_INT64_MIN;
    sl->ring = apr_array_make(sl->p, 16, sizeof(ptm_recent_t));
    /* The query's window, not the slice's: the ts range of what matches
     * (w.track) must count every record the query may want. */
    rv = ptm_store_recent_window(&sl->info, sl->ring, &truncated,
                                 h->conf->store, h->lo, h->hi,
                                 sl->cap == SIZE_MAX ? 0 : (unsigned)sl->cap,
                                 ring_want, &w, sl->p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    sl->have_info = 1;
    if (truncated) {
        /* More than a slice holds (and the range is not known). */
        if (h->looking) {
            sl->found = 1;
        }
        else {
            sl->overflow = 1;
        }
        return APR_SUCCESS;
    }
    if (w.track) {
        /* Every event was looked at: its matching range is known. */
        h->ring_range = 1;
        h->ring_min = w.min;
        h->ring_max = w.max;
    }
    return take_copies(h, sl);
}

/* The spans of seqs of `src` the ring held when the slice asked it (its
 * lines with those seqs were taken from there); NULL: none. */
apr_array_header_t *ptm_hist_ring_spans(const slice_t *sl, const src_t *src)
{
    apr_array_header_t *out = NULL;
    int i, j;

    for (i = 0; sl->have_info && i < sl->info.spans->nelts; i++) {
        const ptm_recent_span_t *r = &APR_ARRAY_IDX(sl->info.spans, i,
                                                    ptm_recent_span_t);
        int mine = r->stream == src->run && src->run == PTM_STREAM_SITE;

        for (j = 0; !mine && r->stream == src->run && j < src->ties->nelts;
             j++) {
            mine = APR_ARRAY_IDX(src->ties, j, uint32_t) == r->tie;
        }
        if (mine) {
            if (!out) {
                out = apr_array_make(sl->p, 2, sizeof(ptm_recent_span_t));
            }
            *(ptm_recent_span_t *)apr_array_push(out) = *r;
        }
    }
    return out;
}

/* 1 if the line `l` of `src`, whose seq is in a span the ring held, is
 * the event of a copy of this slice: the same seq and ts.  Seqs alone do
 * not tell: a day file of the Python server began again at 1 on each of
 * its restarts (SPEC §5 F4), and the module goes on from its last line,
 * so a line in its middle can carry a seq the ring holds for another
 * event.  (The copies are every ring event that passed the tests the line
 * did, so its own copy, if any, is among them.) */
int ptm_hist_ring_has(const slice_t *sl, const src_t *src, const line_t *l)
{
    rkey_t k;
    int j;

    if (!sl->ring_keys) {
        return 0;
    }
    memset(&k, 0, sizeof(k));
    k.seq = l->seq;
    k.ts = l->ts;
    k.stream = (uint32_t)src->run;
    if (src->run == PTM_STREAM_SITE) {
        return apr_hash_get(sl->ring_keys, &k, sizeof(k)) != NULL;
    }
    for (j = 0; j < src->ties->nelts; j++) {
        k.tie = APR_ARRAY_IDX(src->ties, j, uint32_t);
        if (apr_hash_get(sl->ring_keys, &k, sizeof(k))) {
            return 1;
        }
    }
    return 0;
}

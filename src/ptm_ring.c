/* Event ids and the recent-events ring (SPEC §12.1).
 *
 * Every accepted event gets the next n of the id <epoch>-<n> and a record
 * in the ring, a region at the end of the segment holding the newest
 * events, stored or not, as [rec_t][type key][file line] records written
 * one after the other and wrapping round; the oldest are dropped to make
 * room.  The ring always holds every event from its oldest on (an event
 * too big for it empties it): that is what lets GET /events tell, from a
 * seq alone, whether a stored line is in the ring too.
 *
 * Appends happen inside the event's writing mark, after its line reached
 * the file.  Only space outside the held records is written, and the
 * bookkeeping after: a death half way leaves the held records as they
 * were, and the repair (ptm_ring_copy) keeps every record that checks out
 * from the oldest on, up to the first that does not. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>
#include "ptm_json.h"
#include "ptm_line.h"
#include "ptm_store_int.h"
#include "ptm_test_hook.h"

#define REC_TOTAL(type_len, line_len) \
    ALIGN8(sizeof(rec_t) + (uint64_t)(type_len) + (line_len))

/* The check of a record: everything after the field itself. */
uint32_t ptm_ring_check(const rec_t *r)
{
    const char *after = (const char *)&r->check + sizeof(r->check);

    return ptm_fnv32(PTM_FNV32_START, after,
                     sizeof(rec_t) - (size_t)(after - (const char *)r)
                     + r->type_len + r->line_len);
}

static rec_t *rec_at(char *ring, uint64_t off)
{
    return (rec_t *)(ring + off);
}

/* Where the record at `off` really starts: the region's end, or the mark
 * of its unused end, sends the walk back to the start. */
static uint64_t wrap(const char *ring, uint64_t size, uint64_t off)
{
    if (off + sizeof(rec_t) > size
        || ((const rec_t *)(ring + off))->len == 0) {
        return 0;
    }
    return off;
}

static void drop_oldest_locked(hdr_t *h, char *ring)
{
    uint64_t off = wrap(ring, h->ring_size, h->ring_head);
    rec_t *r = rec_at(ring, off);

    h->ring_first_n = r->n + 1;
    h->ring_bytes -= r->len;
    h->ring_count--;
    h->ring_head = h->ring_count ? wrap(ring, h->ring_size, off + r->len)
                                 : 0;
    if (!h->ring_count) {
        h->ring_tail = 0;
    }
}

/* The offset where a record of `total` bytes goes, dropping the oldest
 * until it is free.  The free space is never used up to the last byte
 * (head == tail only when the ring is empty), so that the walk of a
 * repair knows where the held records end. */
static uint64_t make_room_locked(hdr_t *h, char *ring, uint64_t total)
{
    for (;;) {
        uint64_t head = h->ring_head, tail = h->ring_tail;

        if (!h->ring_count) {
            h->ring_head = h->ring_tail = 0;
            return 0;
        }
        if (head < tail) {
            /* [head, tail) held: free after tail, then before head. */
            if (tail + total <= h->ring_size) {
                return tail;
            }
            if (total < head) {
                if (tail + sizeof(uint32_t) <= h->ring_size) {
                    rec_at(ring, tail)->len = 0;    /* the unused end */
                }
                return 0;
            }
        }
        else if (tail + total < head) {
            /* Wrapped: [head, end) and [0, tail) held. */
            return tail;
        }
        drop_oldest_locked(h, ring);
    }
}

void ptm_ring_append_locked(ptm_store_t *st, const rec_t *in,
                            const char *type, const struct iovec *iov,
                            int niov)
{
    hdr_t *h = st->hdr;
    char *ring = st->base + h->ring;
    uint64_t total = REC_TOTAL(in->type_len, in->line_len), off, bytes = 0;
    rec_t *r;
    char *d;
    int i;

    if (!h->ring_size) {
        return;
    }
    for (i = 0; i < niov; i++) {
        bytes += iov[i].iov_len;
    }
    /* A line whose length does not fit the record's 32 bits comes with
     * it capped (ptm_store_event): too big too, not to be copied past the
     * record's end. */
    if (bytes != in->line_len || total > h->ring_size
        || total > UINT32_MAX) {
        /* Too big to hold: holding the newer events without it would
         * break "everything from the oldest on". */
        while (h->ring_count) {
            drop_oldest_locked(h, ring);
        }
        h->ring_first_n = in->n + 1;
        return;
    }
    off = make_room_locked(h, ring, total);
    r = rec_at(ring, off);
    *r = *in;
    r->len = (uint32_t)total;
    d = (char *)(r + 1);
    memcpy(d, type, in->type_len);
    d += in->type_len;
    for (i = 0; i < niov; i++) {
        memcpy(d, iov[i].iov_base, iov[i].iov_len);
        d += iov[i].iov_len;
    }
    memset(d, 0, (size_t)((char *)r + total - d));
    r->check = ptm_ring_check(r);
    PTM_TEST_HOOK("ring:written", (unsigned)in->n);
    if (!h->ring_count) {
        h->ring_head = off;
        h->ring_first_n = in->n;
    }
    h->ring_tail = off + total;
    h->ring_bytes += total;
    h->ring_count++;
}

apr_time_t ptm_ring_oldest_locked(ptm_store_t *st)
{
    hdr_t *h = st->hdr;
    char *ring = st->base + h->ring;

    if (!h->ring_count) {
        return 0;
    }
    return rec_at(ring, wrap(ring, h->ring_size, h->ring_head))->accepted;
}

uint64_t ptm_store_epoch(ptm_store_t *st)
{
    return st->hdr->epoch;
}

/* ptm_line_t tells a stream as the record's flags do. */
_Static_assert(PTM_STREAM_SITE == 0 && PTM_STREAM_RUN == 1,
               "streams as ptm_line.h tells them");

/* 1 if the line of `r` is one the module could have written for it: its
 * prefix as ptm_store_event writes it (ptm_line.h), telling the record's
 * seq, stream and type, well-formed JSON, and on one line (NDJSON).  A
 * ring line is served by GET /events, by GET /stream and to the
 * forwarding program as it is, selected by the record's numbers alone:
 * the module writes only such lines, and one that comes from an old state
 * is checked here, once. */
static int line_ok(const rec_t *r)
{
    const char *type = (const char *)(r + 1), *line = type + r->type_len;
    ptm_line_t l;

    return ptm_line_parse(&l, line, r->line_len) == 0
           && l.seq == r->seq && l.stream == (int)(r->flags & 1u)
           && l.type_len == r->type_len
           && memcmp(line + l.type_off, type, r->type_len) == 0
           && !memchr(line, '\n', r->line_len)
           && !memchr(line, '\r', r->line_len)
           && ptm_json_well_formed(line, r->line_len);
}

/* A record at `off` of a ring of `size` bytes at `ring` that checks out:
 * within the region, its lengths adding up, its check right, its line
 * one the module could have written for it (line_ok). */
static const rec_t *valid_at(const char *ring, uint64_t size, uint64_t off)
{
    const rec_t *r;

    if (off % 8 || off + sizeof(rec_t) > size) {
        return NULL;
    }
    r = (const rec_t *)(ring + off);
    if (r->len < sizeof(rec_t) || r->len % 8 || r->len > size - off
        || (uint64_t)r->type_len + r->line_len > r->len - sizeof(rec_t)
        || REC_TOTAL(r->type_len, r->line_len) != r->len
        || (r->flags & ~(REC_STORED | 1u)) || r->type_len < 2
        || r->line_len < 8 || ptm_ring_check(r) != r->check || !line_ok(r)) {
        return NULL;
    }
    return r;
}

unsigned ptm_ring_copy(char *base, hdr_t *h, const char *obase,
                       const hdr_t *o, uint64_t hdr_size, uint64_t size)
{
    const char *oring;
    uint64_t osize, off, i, n = 0, keep_from, bytes = 0, *offs;
    unsigned lost = 0;
    ptm_store_t st;

    if (hdr_size <= offsetof(hdr_t, ring_first_n)) {
        return 0;               /* an earlier layout: no ring, no ids */
    }
    /* Ids are never given twice: an event half way through may have
     * used the next number (a gap, not a repeat). */
    if (o->next_n >= h->next_n && o->next_n < UINT64_MAX - 1) {
        h->next_n = o->next_n + (o->writing ? 1 : 0);
    }
    h->ring_first_n = h->next_n;
    osize = o->ring_size;
    if (!o->ring_count) {
        return 0;
    }
    /* Records start 8-aligned: a head or tail that is not was not ours,
     * and the walk must not read a record's length at it (wrap). */
    if (o->ring < hdr_size || o->ring % 8 || o->ring > size
        || osize > size - o->ring || o->ring_count > osize / sizeof(rec_t)
        || o->ring_head % 8 || o->ring_tail % 8) {
        return 1;
    }
    oring = obase + o->ring;
    offs = malloc(sizeof(*offs) * (size_t)(o->ring_count + 1));
    if (!offs) {
        return 1;
    }
    /* The held records in order from the oldest, each where the one
     * before ends, up to the tail (the count is not trusted: a death in
     * drop_oldest_locked leaves it one off).  A record that does not
     * check out, or breaks the run of numbers, ends the walk. */
    off = o->ring_head;
    for (i = 0; i < o->ring_count + 1 && n < o->ring_count + 1; i++) {
        const rec_t *r;

        if (off == o->ring_tail && n) {
            break;
        }
        off = wrap(oring, osize, off);
        if (!(r = valid_at(oring, osize, off))
            || (n && r->n <= ((const rec_t *)(oring + offs[n - 1]))->n)
            || r->n >= h->next_n) {
            n = 0;
            break;
        }
        offs[n++] = off;
        off += r->len;
    }
    if (!n || off != o->ring_tail) {
        /* What was held after a bad record cannot be found: keeping the
         * ones before it would leave a hole ("everything from the oldest
         * on" would no longer hold).  Only a complete ring is kept. */
        free(offs);
        return 1;
    }
    /* The newest that fit the new region. */
    keep_from = n;
    while (keep_from > 0) {
        const rec_t *r = (const rec_t *)(oring + offs[keep_from - 1]);

        if (bytes + r->len > h->ring_size) {
            break;
        }
        bytes += r->len;
        keep_from--;
    }
    memset(&st, 0, sizeof(st));
    st.base = base;
    st.hdr = h;
    for (i = keep_from; i < n; i++) {
        const rec_t *r = (const rec_t *)(oring + offs[i]);
        struct iovec iov;

        iov.iov_base = (void *)((const char *)(r + 1) + r->type_len);
        iov.iov_len = r->line_len;
        ptm_ring_append_locked(&st, r, (const char *)(r + 1), &iov, 1);
    }
    if (keep_from == n) {
        h->ring_first_n = h->next_n;
    }
    free(offs);
    return lost;
}

/* ---- reads ---------------------------------------------------------------- */

/* A held record as the readers see it (pointers into the segment). */
static void event_of(ptm_recent_t *ev, const rec_t *r)
{
    ev->n = r->n;
    ev->accepted = r->accepted;
    ev->ts = r->ts;
    ev->stream = (int)(r->flags & 1u);
    ev->seq = r->seq;
    ev->tie = r->tie;
    ev->stored = (r->flags & REC_STORED) != 0;
    ev->type = (const char *)(r + 1);
    ev->type_len = r->type_len;
    ev->line = ev->type + r->type_len;
    ev->line_len = r->line_len;
}

/* Take the lock and fill what `info` says of the ring as a whole (not its
 * oldest time, nor its spans: those come from the walk). */
static apr_status_t info_locked(ptm_recent_info_t *info, int *truncated,
                                ptm_store_t *st, apr_pool_t *p)
{
    hdr_t *h = st->hdr;
    apr_status_t rv;

    memset(info, 0, sizeof(*info));
    info->spans = apr_array_make(p, 4, sizeof(ptm_recent_span_t));
    if (truncated) {
        *truncated = 0;
    }
    if ((rv = ptm_store_lock(st)) != APR_SUCCESS) {
        return rv;
    }
    info->epoch = h->epoch;
    info->count = h->ring_count;
    info->bytes = h->ring_bytes;
    info->size = h->ring_size;
    info->first_n = h->ring_first_n;
    info->next_n = h->next_n;
    return APR_SUCCESS;
}

/* The span of seqs a record of (stream, tie, seq) extends: the last one of
 * its stream and tie, if seq comes right after it; NULL if the record
 * starts a span.  Seqs of a stream (a run) count up by one from event to
 * event, but for the ones a crash left unused or a start raised past. */
static ptm_recent_span_t *span_to_extend(ptm_recent_span_t *spans,
                                         size_t nspans, int stream,
                                         uint32_t tie, uint64_t seq)
{
    while (nspans-- > 0) {
        if (spans[nspans].stream == stream && spans[nspans].tie == tie) {
            return spans[nspans].hi + 1 == seq ? &spans[nspans] : NULL;
        }
    }
    return NULL;
}

/* Note the records lo..hi of a stream in the spans of seqs. */
static void add_span(apr_array_header_t *spans, int stream, uint32_t tie,
                     uint64_t lo, uint64_t hi)
{
    ptm_recent_span_t *sp = span_to_extend((ptm_recent_span_t *)spans->elts,
                                           (size_t)spans->nelts, stream,
                                           tie, lo);

    if (!sp) {
        sp = apr_array_push(spans);
        sp->stream = stream;
        sp->tie = tie;
        sp->lo = lo;
    }
    sp->hi = hi;
}

/* Copy the record of `ev` into `out` if `want` takes it and `max` allows
 * (else note that more were wanted). */
static void take_locked(apr_array_header_t *out, int *truncated,
                        ptm_recent_t *ev, unsigned max,
                        ptm_recent_want_fn want, void *ctx, apr_pool_t *p)
{
    char *c;

    if (want && !want(ctx, ev)) {
        return;
    }
    if (max && (unsigned)out->nelts >= max) {
        if (truncated) {
            *truncated = 1;
        }
        return;
    }
    /* One block for both (each NUL-terminated): half the allocations,
     * under the lock. */
    c = apr_palloc(p, ev->type_len + ev->line_len + 2);
    memcpy(c, ev->type, ev->type_len);
    c[ev->type_len] = '\0';
    memcpy(c + ev->type_len + 1, ev->line, ev->line_len);
    c[ev->type_len + 1 + ev->line_len] = '\0';
    ev->type = c;
    ev->line = c + ev->type_len + 1;
    *(ptm_recent_t *)apr_array_push(out) = *ev;
}

/* The walk of every held record, from the oldest. */
static void walk_all_locked(ptm_recent_info_t *info, apr_array_header_t *out,
                            int *truncated, ptm_store_t *st,
                            uint64_t from_n, unsigned max,
                            ptm_recent_want_fn want, void *ctx,
                            apr_pool_t *p)
{
    hdr_t *h = st->hdr;
    char *ring = st->base + h->ring;
    uint64_t off = h->ring_head, i;

    for (i = 0; i < h->ring_count; i++) {
        rec_t *r;
        ptm_recent_t ev;

        off = wrap(ring, h->ring_size, off);
        r = rec_at(ring, off);
        off += r->len;
        event_of(&ev, r);
        if (i == 0) {
            info->oldest = r->accepted;
        }
        add_span(info->spans, ev.stream, ev.tie, r->seq, r->seq);
        if (out && r->n >= from_n) {
            take_locked(out, truncated, &ev, max, want, ctx, p);
        }
    }
}

apr_status_t ptm_store_recent(ptm_recent_info_t *info,
                              apr_array_header_t *out, int *truncated,
                              ptm_store_t *st, uint64_t from_n,
                              unsigned max, ptm_recent_want_fn want,
                              void *ctx, apr_pool_t *p)
{
    apr_status_t rv;

    if ((rv = info_locked(info, truncated, st, p)) != APR_SUCCESS) {
        return rv;
    }
    walk_all_locked(info, out, truncated, st, from_n, max, want, ctx, p);
    ptm_store_unlock(st);
    return APR_SUCCESS;
}

/* 1 when `off` is inside the held records, [head, tail) round the ring. */
static int held(const hdr_t *h, uint64_t off)
{
    if (!h->ring_count) {
        return 0;
    }
    if (h->ring_head < h->ring_tail) {
        return off >= h->ring_head && off < h->ring_tail;
    }
    return off >= h->ring_head || off < h->ring_tail;
}

/* ---- this process's summary of the ring ----------------------------------
 *
 * GET /events wants the ring's events of a window of ts.  A walk of the
 * whole ring under the lock costs every query (and every POST waiting
 * behind it) the ring's size, 26k records for the default 8 MiB, though a
 * one-day window of an 8-day ring holds an eighth of them.  So each
 * process keeps, per block of IDX_BLOCK consecutive records, where the
 * block starts, the range of its ts and its spans of seqs, and brings it
 * up to date under the lock with the records added since (a handful per
 * query).  A held record never changes and its n is never given twice
 * (within an epoch), so what a block says of its records stays true while
 * they are held; where they are may change (a repair lays the ring out
 * anew), so a block's first record is checked before it is read, and any
 * surprise throws the summary away: that query walks the whole ring, the
 * next builds the summary again. */

#define IDX_BLOCK 128

typedef struct {
    uint64_t first_n, last_n;   /* of its records */
    uint64_t off;               /* where its first record starts */
    uint32_t count;
    apr_time_t min, max;        /* ts range (PTM_TS_NONE left out) */
    ptm_recent_span_t *spans;   /* its records' spans, as add_span */
    uint32_t nspans, cap;
} blk_t;

struct ptm_ring_idx_t {
    uint64_t epoch, ring, size; /* of the ring it describes */
    uint64_t next_n;            /* the n after the last one summed up */
    uint64_t next_off;          /* where that one's record goes */
    blk_t *b;
    size_t b0, nb, cap;         /* blocks b[b0..nb) */
};

static void idx_reset(struct ptm_ring_idx_t *x)
{
    size_t i;

    for (i = x->b0; i < x->nb; i++) {
        free(x->b[i].spans);        /* those before b0 went already */
    }
    x->b0 = x->nb = 0;
    x->next_n = 0;
    x->next_off = PTM_RING_NOWHERE;
}

apr_status_t ptm_ring_index_free(void *data)
{
    ptm_store_t *st = data;

    if (st->ridx) {
        idx_reset(st->ridx);
        free(st->ridx->b);
        free(st->ridx);
        st->ridx = NULL;
    }
    return APR_SUCCESS;
}

void ptm_store_forget_ring(ptm_store_t *st)
{
    if (st->ridx && st->pool) {
        apr_pool_cleanup_kill(st->pool, st, ptm_ring_index_free);
    }
    ptm_ring_index_free(st);
}

/* Sum up one more record (the newest) in the last block or a new one.
 * Returns 0, or -1 out of memory. */
static int idx_add(struct ptm_ring_idx_t *x, const rec_t *r, uint64_t off)
{
    blk_t *b = x->nb > x->b0 ? &x->b[x->nb - 1] : NULL;
    ptm_recent_span_t *sp;
    int stream = (int)(r->flags & 1u);

    if (!b || b->count == IDX_BLOCK) {
        if (x->b0 && x->nb == x->cap) {
            /* Blocks dropped at the front make room at the back. */
            memmove(x->b, x->b + x->b0, (x->nb - x->b0) * sizeof(blk_t));
            x->nb -= x->b0;
            x->b0 = 0;
        }
        if (x->nb == x->cap) {
            size_t cap = x->cap ? x->cap * 2 : 64;
            blk_t *nb = realloc(x->b, cap * sizeof(blk_t));

            if (!nb) {
                return -1;
            }
            x->b = nb;
            x->cap = cap;
        }
        b = &x->b[x->nb++];
        memset(b, 0, sizeof(*b));
        b->first_n = r->n;
        b->off = off;
        b->min = APR_INT64_MAX;
        b->max = APR_INT64_MIN;
    }
    if (!(sp = span_to_extend(b->spans, b->nspans, stream, r->tie,
                              r->seq))) {
        if (b->nspans == b->cap) {
            uint32_t cap = b->cap ? b->cap * 2 : 4;
            ptm_recent_span_t *ns = realloc(b->spans, cap * sizeof(*ns));

            if (!ns) {
                return -1;
            }
            b->spans = ns;
            b->cap = cap;
        }
        sp = &b->spans[b->nspans++];
        sp->stream = stream;
        sp->tie = r->tie;
        sp->lo = r->seq;
    }
    sp->hi = r->seq;
    if (r->ts != PTM_TS_NONE) {
        if (r->ts < b->min) {
            b->min = r->ts;
        }
        if (r->ts > b->max) {
            b->max = r->ts;
        }
    }
    b->last_n = r->n;
    b->count++;
    return 0;
}

/* The record at ring offset `off` (wrapped) if it is whole and has the
 * very n `n` (n 0: any n from `from` on, below next_n). */
static const rec_t *idx_rec(const hdr_t *h, char *ring, uint64_t off,
                            uint64_t n, uint64_t from)
{
    const rec_t *r;

    if (off % 8 || off + sizeof(rec_t) > h->ring_size || !held(h, off)) {
        return NULL;
    }
    r = (const rec_t *)(ring + off);
    if (r->len < sizeof(rec_t) || r->len % 8
        || r->len > h->ring_size - off
        || REC_TOTAL(r->type_len, r->line_len) != r->len
        || (n ? r->n != n : (r->n < from || r->n >= h->next_n))) {
        return NULL;
    }
    return r;
}

/* Bring this process's summary up to date with the ring.  Returns 0, or
 * -1 when it cannot be trusted (it is then thrown away; the caller walks
 * the whole ring). */
static int idx_sync_locked(ptm_store_t *st)
{
    hdr_t *h = st->hdr;
    char *ring = st->base + h->ring;
    struct ptm_ring_idx_t *x = st->ridx;
    uint64_t off, prev = 0, i;
    const rec_t *r;

    if (!x) {
        if (!(x = st->ridx = calloc(1, sizeof(*x)))) {
            return -1;
        }
        idx_reset(x);
        /* Only now, and so only for a handle that serves GET /events (a
         * child's): the parent's handles live in pools (the process's)
         * destroyed after httpd unloads this module, when a cleanup of
         * ours can no longer be called. */
        if (st->pool) {
            apr_pool_cleanup_register(st->pool, st, ptm_ring_index_free,
                                      apr_pool_cleanup_null);
        }
    }
    if (x->epoch != h->epoch || x->ring != h->ring || x->size != h->ring_size
        || x->next_n > h->next_n) {
        idx_reset(x);
        x->epoch = h->epoch;
        x->ring = h->ring;
        x->size = h->ring_size;
    }
    while (x->b0 < x->nb && x->b[x->b0].last_n < h->ring_first_n) {
        free(x->b[x->b0].spans);
        x->b0++;
    }
    if (!h->ring_count) {
        idx_reset(x);
        x->next_n = h->next_n;
        return 0;
    }
    if (x->b0 == x->nb) {
        /* Nothing summed up is held: from the oldest. */
        x->b0 = x->nb = 0;
        off = h->ring_head;
        prev = h->ring_first_n;
    }
    else if (x->next_n == h->next_n) {
        return 0;                       /* nothing new */
    }
    else {
        /* From where the last one ended: the very next n (ids are given
         * one after the other but for a repair, which also moves the
         * records: then build it again). */
        off = x->next_off;
        if (off == h->ring_tail || off % 8 || off >= h->ring_size
            || !idx_rec(h, ring, wrap(ring, h->ring_size, off), x->next_n,
                        0)) {
            idx_reset(x);
            return -1;
        }
        prev = x->next_n;
    }
    for (i = 0; i <= h->ring_count; i++) {
        if (i && off == h->ring_tail) {
            x->next_off = off;
            x->next_n = h->next_n;
            return 0;
        }
        off = wrap(ring, h->ring_size, off);
        if (!(r = idx_rec(h, ring, off, 0, prev)) || idx_add(x, r, off)) {
            break;
        }
        prev = r->n + 1;
        off += r->len;
    }
    idx_reset(x);
    return -1;
}

/* The walk through the summary: the first block's records one by one
 * (some of them may have been dropped), then each later block's spans
 * and, when its ts range meets [t0, t1), its records.  Returns 0, or -1
 * when a block is not where the summary says (nothing was taken). */
static int walk_index_locked(ptm_recent_info_t *info,
                             apr_array_header_t *out, int *truncated,
                             ptm_store_t *st, apr_time_t t0, apr_time_t t1,
                             unsigned max, ptm_recent_want_fn want,
                             void *ctx, apr_pool_t *p)
{
    hdr_t *h = st->hdr;
    char *ring = st->base + h->ring;
    struct ptm_ring_idx_t *x = st->ridx;
    size_t i;
    uint32_t k;

    for (i = x->b0; i < x->nb; i++) {
        const blk_t *b = &x->b[i];
        uint64_t off = b->off, prev = 0;
        int first = i == x->b0, look;

        look = b->min <= b->max && b->max >= t0 && b->min < t1;
        if (!first) {
            for (k = 0; k < b->nspans; k++) {
                add_span(info->spans, b->spans[k].stream, b->spans[k].tie,
                         b->spans[k].lo, b->spans[k].hi);
            }
            if (!look) {
                continue;
            }
        }
        else {
            off = h->ring_head;         /* its held part */
        }
        for (k = 0; k < b->count; k++) {
            const rec_t *r;
            ptm_recent_t ev;

            if (k && off == h->ring_tail) {
                return -1;              /* fewer than it said */
            }
            off = wrap(ring, h->ring_size, off);
            if (!(r = idx_rec(h, ring, off, k || first ? 0 : b->first_n,
                              prev))
                || r->n > b->last_n || (!k && !first
                                        && ptm_ring_check(r) != r->check)) {
                return -1;
            }
            prev = r->n + 1;
            off += r->len;
            event_of(&ev, r);
            if (first) {
                add_span(info->spans, ev.stream, ev.tie, r->seq, r->seq);
            }
            if (look) {
                take_locked(out, truncated, &ev, max, want, ctx, p);
            }
            if (r->n == b->last_n) {
                break;
            }
        }
        if (prev != b->last_n + 1) {
            return -1;
        }
    }
    return 0;
}

apr_status_t ptm_store_recent_window(ptm_recent_info_t *info,
                                     apr_array_header_t *out,
                                     int *truncated, ptm_store_t *st,
                                     apr_time_t t0, apr_time_t t1,
                                     unsigned max, ptm_recent_want_fn want,
                                     void *ctx, apr_pool_t *p)
{
    hdr_t *h = st->hdr;
    apr_status_t rv;

    if ((rv = info_locked(info, truncated, st, p)) != APR_SUCCESS) {
        return rv;
    }
    if (h->ring_count) {
        info->oldest = ptm_ring_oldest_locked(st);
    }
    if (h->ring_count
        && (idx_sync_locked(st) != 0
            || walk_index_locked(info, out, truncated, st, t0, t1, max,
                                 want, ctx, p) != 0)) {
        /* Not to be trusted: the whole ring, as ptm_store_recent. */
        if (st->ridx) {
            idx_reset(st->ridx);
        }
        apr_array_clear(out);
        apr_array_clear(info->spans);
        if (truncated) {
            *truncated = 0;
        }
        walk_all_locked(info, out, truncated, st, 0, max, want, ctx, p);
    }
    ptm_store_unlock(st);
    return APR_SUCCESS;
}

/* The record of `pos` if the hint still names it: held, whole (its check:
 * a record never moves while held, and bytes inside a line cannot pass
 * for one, lines having no NUL), the very n (`at`). */
static const rec_t *hinted(const hdr_t *h, char *ring,
                           const ptm_ring_pos_t *pos)
{
    const rec_t *r;
    uint64_t off;

    if (pos->off == PTM_RING_NOWHERE || pos->at > pos->n
        || pos->at < h->ring_first_n || pos->at >= h->next_n
        || pos->off % 8
        || pos->off >= h->ring_size || !held(h, pos->off)) {
        return NULL;
    }
    off = wrap(ring, h->ring_size, pos->off);
    if (!held(h, off)) {
        return NULL;
    }
    r = (const rec_t *)(ring + off);
    if (r->n != pos->at || r->len < sizeof(rec_t) || r->len % 8
        || r->len > h->ring_size - off
        || REC_TOTAL(r->type_len, r->line_len) != r->len
        || ptm_ring_check(r) != r->check) {
        return NULL;
    }
    return r;
}

apr_status_t ptm_store_follow(ptm_recent_info_t *info,
                              apr_array_header_t *out, int *truncated,
                              ptm_store_t *st, ptm_ring_pos_t *pos,
                              unsigned max, ptm_recent_want_fn want,
                              void *ctx, apr_pool_t *p)
{
    hdr_t *h = st->hdr;
    char *ring;
    const rec_t *r;
    uint64_t off, i;
    apr_status_t rv;

    if ((rv = info_locked(info, truncated, st, p)) != APR_SUCCESS) {
        return rv;
    }
    ring = st->base + h->ring;
    if (h->ring_count) {
        info->oldest = rec_at(ring, wrap(ring, h->ring_size,
                                         h->ring_head))->accepted;
    }
    /* From the hint, else from the oldest. */
    r = hinted(h, ring, pos);
    off = r ? (uint64_t)((const char *)r - ring) : h->ring_head;
    for (i = 0; i < h->ring_count; i++) {
        ptm_recent_t ev;

        off = wrap(ring, h->ring_size, off);
        r = rec_at(ring, off);
        if (i == PTM_RING_LOOK_MAX) {
            /* Enough for one hold of the lock: the next call goes on
             * from this record. */
            if (truncated) {
                *truncated = 1;
            }
            if (r->n > pos->n) {
                pos->n = r->n;
            }
            pos->at = r->n;
            pos->off = off;
            ptm_store_unlock(st);
            return APR_SUCCESS;
        }
        if (r->n >= pos->n) {
            event_of(&ev, r);
            if (!want || want(ctx, &ev)) {
                if (max && (unsigned)out->nelts >= max) {
                    /* Not looked at: the next call begins here. */
                    if (truncated) {
                        *truncated = 1;
                    }
                    pos->n = pos->at = r->n;
                    pos->off = off;
                    ptm_store_unlock(st);
                    return APR_SUCCESS;
                }
                ev.type = apr_pstrmemdup(p, ev.type, ev.type_len);
                ev.line = apr_pstrmemdup(p, ev.line, ev.line_len);
                *(ptm_recent_t *)apr_array_push(out) = ev;
            }
        }
        off += r->len;
        if (off == h->ring_tail) {
            break;
        }
    }
    /* Every held event looked at: the next one goes at the tail (or, if
     * it does not fit there, at 0 with the mark of the unused end at the
     * tail, which wrap() follows). */
    if (pos->n < h->next_n) {
        pos->n = h->next_n;
    }
    pos->at = h->next_n;
    pos->off = h->ring_count ? h->ring_tail : PTM_RING_NOWHERE;
    ptm_store_unlock(st);
    return APR_SUCCESS;
}

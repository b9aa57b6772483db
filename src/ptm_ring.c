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
#include "ptm_store_int.h"
#include "ptm_test_hook.h"

#define REC_TOTAL(type_len, line_len) \
    ALIGN8(sizeof(rec_t) + (uint64_t)(type_len) + (line_len))

/* The check of a record: everything after the field itself. */
static uint32_t rec_check(const rec_t *r)
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
    uint64_t total = REC_TOTAL(in->type_len, in->line_len), off;
    rec_t *r;
    char *d;
    int i;

    if (!h->ring_size) {
        return;
    }
    if (total > h->ring_size || total > UINT32_MAX) {
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
    r->check = rec_check(r);
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

/* A record at `off` of a ring of `size` bytes at `ring` that checks out:
 * within the region, its lengths adding up, its check right, its line
 * well-formed JSON (a line in the ring is served by GET /events as it is:
 * the module writes only well-formed ones, and one that comes from an old
 * state is checked here, once). */
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
        || r->line_len < 8 || rec_check(r) != r->check
        || !ptm_json_well_formed((const char *)(r + 1) + r->type_len,
                                 r->line_len)) {
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

apr_status_t ptm_store_recent(ptm_recent_info_t *info,
                              apr_array_header_t *out, int *truncated,
                              ptm_store_t *st, uint64_t from_n,
                              unsigned max, ptm_recent_want_fn want,
                              void *ctx, apr_pool_t *p)
{
    hdr_t *h = st->hdr;
    char *ring;
    uint64_t off, i;
    apr_status_t rv;

    if ((rv = info_locked(info, truncated, st, p)) != APR_SUCCESS) {
        return rv;
    }
    ring = st->base + h->ring;
    off = h->ring_head;
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
        /* Seqs of a stream (a run) count up by one from event to event,
         * but for the ones a crash left unused or a start raised past. */
        {
            ptm_recent_span_t *sp = NULL;
            int k;

            for (k = info->spans->nelts - 1; k >= 0; k--) {
                sp = &APR_ARRAY_IDX(info->spans, k, ptm_recent_span_t);
                if (sp->stream == ev.stream && sp->tie == ev.tie) {
                    break;
                }
                sp = NULL;
            }
            if (sp && sp->hi + 1 == r->seq) {
                sp->hi = r->seq;
            }
            else {
                sp = apr_array_push(info->spans);
                sp->stream = ev.stream;
                sp->tie = ev.tie;
                sp->lo = sp->hi = r->seq;
            }
        }
        if (!out || r->n < from_n || (want && !want(ctx, &ev))) {
            continue;
        }
        if (max && (unsigned)out->nelts >= max) {
            if (truncated) {
                *truncated = 1;
            }
            continue;
        }
        {
            /* One block for both (each NUL-terminated): half the
             * allocations, under the lock. */
            char *c = apr_palloc(p, ev.type_len + ev.line_len + 2);

            memcpy(c, ev.type, ev.type_len);
            c[ev.type_len] = '\0';
            memcpy(c + ev.type_len + 1, ev.line, ev.line_len);
            c[ev.type_len + 1 + ev.line_len] = '\0';
            ev.type = c;
            ev.line = c + ev.type_len + 1;
        }
        *(ptm_recent_t *)apr_array_push(out) = ev;
    }
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
        || rec_check(r) != r->check) {
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

/* Rebuilding a state: one a process left mid-update (the writing mark is
 * set), one of another size or layout version, and every state file found
 * at start-up.  A fresh state is formatted and filled with what checks out
 * in the old one, value by value.  The old one is data, not code (SPEC
 * §11.6): torn, stale or crafted, every offset, length and string in it is
 * checked against the bytes really there before anything is copied, so
 * the worst it can do is lose values. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "ptm_json.h"
#include "ptm_run.h"
#include "ptm_store_int.h"

/* The old state: its header, where that header ends in its layout, and
 * how many bytes are really there. */
typedef struct {
    const hdr_t *h;
    uint64_t hdr_size;
    uint64_t size;
} src_t;

/* The payload at `payload` in `src` if a blob of `len` bytes owned by
 * `owner` really is there; NULL otherwise. */
static const char *src_payload(const src_t *src, uint64_t payload,
                               uint64_t len, uint32_t owner)
{
    const hdr_t *h = src->h;
    const blob_t *b;

    if (h->arena < src->hdr_size || h->arena % 8 || h->arena > src->size
        || h->arena_size > src->size - h->arena || h->top > h->arena_size
        || payload < sizeof(blob_t) || (payload - sizeof(blob_t)) % 8
        || payload > h->top || len > h->top - payload) {
        return NULL;
    }
    b = (const blob_t *)((const char *)h + h->arena + payload
                         - sizeof(blob_t));
    if (b->len != len || b->owner != owner) {
        return NULL;
    }
    return (const char *)h + h->arena + payload;
}

/* The run blob is [run object][run id][run dir]: a JSON object; an id of
 * UTF-8 (it is a JSON string in every run event's meta) without control
 * characters, as run start takes them (ptm_run_id_has_control); an
 * absolute UTF-8 path without NUL (control characters are legal in a
 * directory name, and run start takes them).  Anything run start accepts
 * must check out here, or a restart would drop a run it acknowledged. */
static int run_checks_out(const char *p, const hdr_t *h)
{
    const char *id = p + h->run_obj_len, *dir = id + h->run_id_len;

    return h->run_obj_len >= 2 && p[0] == '{'
           && ptm_json_well_formed(p, h->run_obj_len)
           && h->run_id_len >= 1 && !ptm_run_id_has_control(id, h->run_id_len)
           && ptm_utf8_valid(id, h->run_id_len)
           && h->run_dir_len >= 1 && dir[0] == '/'
           && !memchr(dir, '\0', h->run_dir_len)
           && ptm_utf8_valid(dir, h->run_dir_len);
}

/* A value is [key][envelope]: a JSON string as the store writes keys
 * (only then are equal types equal bytes, and duplicates found) and a
 * JSON object that starts as every envelope does. */
static int value_checks_out(const char *p, uint64_t key_len,
                            uint64_t env_len)
{
    return key_len >= 2 && env_len >= 8
           && memcmp(p + key_len, "{\"seq\":", 7) == 0
           && ptm_json_string_canonical(p, (size_t)key_len)
           && ptm_json_well_formed(p + key_len, (size_t)env_len);
}

/* Fill the freshly formatted state of `st` from `src`: counters, the run
 * and every current value that checks out, in their order.  Returns how
 * many things were dropped. */
static unsigned copy(ptm_store_t *st, const src_t *src)
{
    const hdr_t *o = src->h;
    hdr_t *h = st->hdr;
    unsigned lost = 0;
    uint32_t i;
    int s;

    for (s = 0; s < 2; s++) {
        h->seq[s] = o->seq[s];
        h->events[s] = o->events[s];
    }
    /* An append may have reached the file before the counter moved: that
     * number is never given out again (a gap, not a duplicate). */
    if (o->writing && o->pending_stream < 2
        && o->pending_seq > h->seq[o->pending_stream]) {
        h->seq[o->pending_stream] = o->pending_seq;
    }
    /* A seq no state reaches (envelopes hold int64: JSON readers refuse
     * more) was not ours; the files tell where to go on from
     * (ptm_store_reconcile). */
    for (s = 0; s < 2; s++) {
        if (h->seq[s] >= INT64_MAX) {
            h->seq[s] = 0;
            lost++;
        }
    }
    h->run_gen = o->run_gen + 1;
    h->repairs = o->repairs;
    h->write_errors = o->write_errors;
    memcpy(h->answers, o->answers, sizeof(h->answers));
    /* Layout 3 had no epoch: that state gets the fresh one. */
    if (o->version >= 4 && o->epoch) {
        h->epoch = o->epoch;
    }
    if (o->run_active) {
        uint64_t len = (uint64_t)o->run_obj_len + o->run_id_len
                       + o->run_dir_len;
        const char *p = src_payload(src, o->run_blob, len, OWNER_RUN);

        if (p && run_checks_out(p, o)
            && ptm_arena_reserve_locked(st, len) == APR_SUCCESS) {
            h->run_blob = ptm_arena_claim_locked(st, len, OWNER_RUN);
            memcpy(arena(st) + h->run_blob, p, (size_t)len);
            h->run_obj_len = o->run_obj_len;
            h->run_id_len = o->run_id_len;
            h->run_dir_len = o->run_dir_len;
            h->run_active = 1;
        }
        else {
            lost++;
        }
    }
    for (s = 0; s < 2; s++) {
        const map_t *m = &o->map[s];
        const slot_t *x;
        uint32_t n = m->count < m->cap ? m->count : m->cap;

        if (m->slots < src->hdr_size || m->slots % 8 || m->slots > src->size
            || (uint64_t)n * sizeof(slot_t) > src->size - m->slots) {
            lost += m->count ? 1 : 0;
            continue;
        }
        /* Only now: an offset out of bounds is not even a pointer. */
        x = (const slot_t *)((const char *)o + m->slots);
        /* Run values only with their run: a start or stop cut short
         * leaves some behind with none active (or the run was lost). */
        if (s == PTM_STREAM_RUN && !h->run_active) {
            lost += m->count ? 1 : 0;
            continue;
        }
        /* A count beyond the table's capacity: what is past it is lost. */
        lost += m->count > n ? 1 : 0;
        for (i = 0; i < n; i++) {
            uint64_t len = (uint64_t)x[i].key_len + x[i].env_len;
            const char *p = src_payload(src, x[i].blob, len,
                                        2u + 2u * i + (uint32_t)s);

            if (!p || !value_checks_out(p, x[i].key_len, x[i].env_len)
                || ptm_view_find_locked(st, s, p, x[i].key_len,
                                        ptm_view_hash(p, x[i].key_len)) >= 0
                || h->map[s].count == h->map[s].cap
                || ptm_arena_fits_locked(st, len, 0) != APR_SUCCESS) {
                lost++;
                continue;
            }
            memcpy(ptm_view_append_locked(st, s,
                                          ptm_view_hash(p, x[i].key_len),
                                          x[i].key_len, x[i].env_len),
                   p, (size_t)len);
            ptm_view_own_locked(st, s, h->map[s].count - 1);
        }
    }
    lost += ptm_ring_copy(st->base, h, (const char *)o, o, src->hdr_size,
                          src->size);
    return lost + ptm_store_fwd_copy(h, o, src->hdr_size);
}

unsigned ptm_repair_copy(ptm_store_t *st, const hdr_t *src,
                         uint64_t src_size)
{
    src_t s;

    if (src_size < sizeof(hdr_t)) {
        return 1;
    }
    s.h = src;
    /* Layout 3's header ended before `epoch`, layout 4's before
     * `next_n`, layout 5's before `fwd_next_n`, layout 6's before
     * `view_gen`: their tables start there. */
    s.hdr_size = src->version >= 7   ? sizeof(hdr_t)
                 : src->version == 6 ? offsetof(hdr_t, view_gen)
                 : src->version == 5 ? offsetof(hdr_t, fwd_next_n)
                 : src->version == 4 ? offsetof(hdr_t, next_n)
                                     : offsetof(hdr_t, epoch);
    s.size = src_size;
    return copy(st, &s);
}

apr_status_t ptm_repair_rebuild(unsigned *lost, ptm_store_t *st,
                                uint64_t size, int count)
{
    /* calloc: the unused parts are copied back too, and should be zeros
     * rather than whatever the heap held. */
    char *fresh = calloc(1, (size_t)size);
    ptm_store_t aside;
    hdr_t *h;

    if (!fresh) {
        return APR_ENOMEM;
    }
    /* The ring keeps its size (checked against the configured one by
     * whoever maps the file, ptm_store_open_file). */
    ptm_store_format(fresh, (apr_size_t)size,
                     (apr_size_t)st->hdr->ring_size);
    memset(&aside, 0, sizeof(aside));
    aside.base = fresh;
    aside.hdr = (hdr_t *)fresh;
    *lost = ptm_repair_copy(&aside, st->hdr, size);
    h = aside.hdr;
    if (count) {
        h->repairs++;
    }
    /* Body first, header last, with `writing` still set: a process killed
     * half-way leaves the old header (its counters and pending seq) and a
     * body the next repair checks value by value again.  Readers without
     * the lock see the view's generation odd throughout (the header's
     * copy carries the same odd value, so the memcpy does not move it)
     * and a new even one after: theirs is never a copy of half of each. */
    h->writing = 1;
    __atomic_store_n(&st->hdr->writing, 1, __ATOMIC_SEQ_CST);
    ptm_seq_write_begin(&st->hdr->view_gen);
    h->view_gen = st->hdr->view_gen;
    h->view_retries = st->hdr->view_retries;
    h->view_locked = st->hdr->view_locked;
    memcpy(st->base + sizeof(hdr_t), fresh + sizeof(hdr_t),
           (size_t)size - sizeof(hdr_t));
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    memcpy(st->base, fresh, sizeof(hdr_t));
    ptm_seq_write_end(&st->hdr->view_gen);
    ptm_store_end_locked(st->hdr);
    free(fresh);
    return APR_SUCCESS;
}

apr_status_t ptm_repair_locked(ptm_store_t *st)
{
    unsigned lost;

    /* The mapping's size as attached: the header's could have been
     * changed since by anything that can write the segment. */
    return ptm_repair_rebuild(&lost, st, st->size, 1);
}

uint64_t ptm_store_repairs(ptm_store_t *st)
{
    return st->hdr->repairs;
}

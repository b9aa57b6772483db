/* Rebuilding a state: one a process left mid-update (the writing mark is
 * set), or one of another size.  A fresh state is formatted and filled
 * with what still checks out in the old one, value by value. */
#include <stdlib.h>
#include <string.h>
#include "ptm_store_int.h"

/* The payload at `payload` in the snapshot `src` if a blob of `len` bytes
 * owned by `owner` really is there; NULL otherwise.  Everything is checked
 * against the snapshot's own bounds: it may be torn. */
static const char *src_payload(const hdr_t *src, uint64_t payload,
                               uint64_t len, uint32_t owner)
{
    const blob_t *b;

    if (src->arena > src->size || src->arena_size > src->size - src->arena
        || src->top > src->arena_size || payload < sizeof(blob_t)
        || (payload - sizeof(blob_t)) % 8 || payload > src->top
        || len > src->top - payload) {
        return NULL;
    }
    b = (const blob_t *)((const char *)src + src->arena + payload
                         - sizeof(blob_t));
    if (b->len != len || b->owner != owner) {
        return NULL;
    }
    return (const char *)src + src->arena + payload;
}

/* Fill the freshly formatted state of `st` from the snapshot `src` (a
 * torn state, or one of another size): counters, the run and every
 * current value that still checks out, in their order.  Returns how many
 * things were dropped. */
unsigned ptm_repair_copy(ptm_store_t *st, const hdr_t *src)
{
    hdr_t *h = st->hdr;
    unsigned lost = 0;
    uint32_t i;
    int s;

    for (s = 0; s < 2; s++) {
        h->seq[s] = src->seq[s];
        h->events[s] = src->events[s];
    }
    /* An append may have reached the file before the counter moved: that
     * number is never given out again (a gap, not a duplicate). */
    if (src->writing && src->pending_stream < 2
        && src->pending_seq > h->seq[src->pending_stream]) {
        h->seq[src->pending_stream] = src->pending_seq;
    }
    h->run_gen = src->run_gen + 1;
    h->repairs = src->repairs;
    if (src->run_active) {
        uint64_t len = (uint64_t)src->run_obj_len + src->run_id_len
                       + src->run_dir_len;
        const char *p = src_payload(src, src->run_blob, len, OWNER_RUN);

        if (p && ptm_arena_reserve_locked(st, len) == APR_SUCCESS) {
            h->run_blob = ptm_arena_claim_locked(st, len, OWNER_RUN);
            memcpy(arena(st) + h->run_blob, p, (size_t)len);
            h->run_obj_len = src->run_obj_len;
            h->run_id_len = src->run_id_len;
            h->run_dir_len = src->run_dir_len;
            h->run_active = 1;
        }
        else {
            lost++;
        }
    }
    for (s = 0; s < 2; s++) {
        const map_t *m = &src->map[s];
        const slot_t *x = (const slot_t *)((const char *)src + m->slots);

        if (m->slots > src->size
            || (uint64_t)m->cap * sizeof(slot_t) > src->size - m->slots) {
            lost++;
            continue;
        }
        /* Run values only with their run: a start or stop cut short
         * leaves some behind with none active (or the run was lost). */
        if (s == PTM_STREAM_RUN && !h->run_active) {
            lost += m->count ? 1 : 0;
            continue;
        }
        for (i = 0; i < m->count && i < m->cap; i++) {
            uint64_t len = (uint64_t)x[i].key_len + x[i].env_len;
            const char *p = src_payload(src, x[i].blob, len,
                                        2u + 2u * i + (uint32_t)s);

            if (!p || x[i].key_len < 2 || p[0] != '"' || x[i].env_len < 8
                || memcmp(p + x[i].key_len, "{\"seq\":", 7) != 0
                || h->map[s].count == h->map[s].cap
                || ptm_arena_fits_locked(st, len, 0) != APR_SUCCESS) {
                lost++;
                continue;
            }
            memcpy(ptm_view_append_locked(st, s, ptm_view_hash(p, x[i].key_len),
                                     x[i].key_len, x[i].env_len),
                   p, (size_t)len);
            ptm_view_own_locked(st, s, h->map[s].count - 1);
        }
    }
    return lost;
}

/* Rebuild a torn state.  The new state is built aside and copied over the
 * old one body first, header last, with `writing` still set: a repairer
 * killed half-way leaves the old header (its counters and pending seq) and
 * a body the next repair checks value by value again. */
apr_status_t ptm_repair_locked(ptm_store_t *st)
{
    apr_size_t size = (apr_size_t)st->hdr->size;
    /* calloc: the unused parts are copied back too, and should be zeros
     * rather than whatever the heap held. */
    char *fresh = calloc(1, size);
    ptm_store_t aside;
    hdr_t *h;

    if (!fresh) {
        return APR_ENOMEM;
    }
    ptm_store_format(fresh, size);
    aside.base = fresh;
    aside.hdr = (hdr_t *)fresh;
    aside.mutex = NULL;
    ptm_repair_copy(&aside, st->hdr);
    h = aside.hdr;
    h->repairs++;
    h->writing = 1;
    memcpy(st->base + sizeof(hdr_t), fresh + sizeof(hdr_t),
           size - sizeof(hdr_t));
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    memcpy(st->base, fresh, sizeof(hdr_t));
    ptm_store_end_locked(st->hdr);
    free(fresh);
    return APR_SUCCESS;
}

uint64_t ptm_store_repairs(ptm_store_t *st)
{
    return st->hdr->repairs;
}

/* The keys of a slice (ptm_history.c): where each event it selects is,
 * the ring's copy or a file and an offset, kept as the ring and the files
 * are read, up to the slice's cap (beyond it the slice is split).  With
 * `every`, only the greatest key per type per bucket is kept, found
 * through an open-addressing table of slots, so a long window costs its
 * buckets and not its events. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <apr_strings.h>
#include "ptm_hash.h"
#include "ptm_hist_int.h"
#include "ptm_query.h"

/* With `every`, the types of the kept keys are copied when this short
 * (nearly always), else read back from the file to be compared. */
#define TYPE_COPY_MAX 256

int ptm_hist_grow(void **mem, size_t *cap, size_t need, size_t size)
{
    size_t n = *cap ? *cap : 1024;
    void *m;

    while (n < need) {
        n *= 2;
    }
    if (n == *cap) {
        return 0;
    }
    if (!(m = realloc(*mem, n * size))) {
        return -1;
    }
    *mem = m;
    *cap = n;
    return 0;
}

/* The bytes of the type of `e`, into h->lbuf when read back. */
static const char *ent_type(hist_t *h, slice_t *sl, const ent_t *e)
{
    const sfile_t *f;

    if (e->type) {
        return e->type;
    }
    f = &APR_ARRAY_IDX(sl->files, e->file, sfile_t);
    if (f->data) {
        return f->data + e->off + e->type_off;  /* the bytes scanned */
    }
    if (ptm_hist_grow((void **)&h->lbuf, &h->lbuf_cap, e->type_len, 1) != 0
        || pread(f->fd, h->lbuf, e->type_len, (off_t)(e->off + e->type_off))
           != (ssize_t)e->type_len) {
        return NULL;
    }
    return h->lbuf;
}

static size_t slot_of(const ent_t *e, apr_time_t every, size_t mask)
{
    uint64_t b = (uint64_t)floor_div(e->key.ts, every);

    return (size_t)((e->thash ^ (b * 0x9e3779b97f4a7c15ULL)) & mask);
}

/* Make the table of `every` at least `want` slots and put the slots of
 * ents[0..n) back in it. */
int ptm_hist_slots_grow(hist_t *h, size_t want, size_t n)
{
    size_t i, j, mask, size = h->nslots ? h->nslots : 1024;
    uint32_t *s;

    while (size < want) {
        size *= 2;
    }
    if (size != h->nslots) {
        if (!(s = calloc(size, sizeof(*s)))) {
            return -1;
        }
        free(h->slots);
        h->slots = s;
        h->nslots = size;
    }
    else {
        memset(h->slots, 0, size * sizeof(*h->slots));
    }
    mask = size - 1;
    for (i = 0; i < n; i++) {
        j = slot_of(&h->ents[i], h->q->every, mask);
        while (h->slots[j]) {
            j = (j + 1) & mask;
        }
        h->slots[j] = (uint32_t)(i + 1);
    }
    return 0;
}

/**
 * Keep the event `c` (its type's bytes at `type`, valid for now).  With
 * `every`, only the greatest key per type per bucket stays.  Returns 0,
 * or -1 when the slice is done collecting (it overflowed, or, looking for
 * one more, found it).
 */
int ptm_hist_add_key(hist_t *h, slice_t *sl, ent_t *c, const char *type)
{
    apr_time_t every = h->q->every;
    size_t j = 0, mask;
    ent_t *e;

    if (h->looking) {
        sl->found = 1;
        return -1;
    }
    if (every) {
        c->thash = ptm_fnv64(PTM_FNV64_START, type, c->type_len);
        if (sl->n + 1 > h->nslots / 2
            && ptm_hist_slots_grow(h, (sl->n + 1) * 2, sl->n) != 0) {
            sl->overflow = 1;
            return -1;
        }
        mask = h->nslots - 1;
        for (j = slot_of(c, every, mask); h->slots[j]; j = (j + 1) & mask) {
            const char *et;

            e = &h->ents[h->slots[j] - 1];
            if (e->thash != c->thash || e->type_len != c->type_len
                || floor_div(e->key.ts, every) != floor_div(c->key.ts, every)) {
                continue;
            }
            if (!(et = ent_type(h, sl, e))
                || memcmp(et, type, c->type_len) != 0) {
                continue;
            }
            /* The same type in the same bucket: the latest stays. */
            if (ptm_key_cmp(&c->key, &e->key) > 0) {
                e->key = c->key;
                e->off = c->off;
                e->len = c->len;
                e->file = c->file;
                e->type_off = c->type_off;
                if (!e->type && c->file < 0) {
                    e->type = type;             /* in a ring copy */
                }
            }
            return 0;
        }
    }
    if (sl->n >= sl->cap) {
        sl->overflow = 1;
        return -1;
    }
    if (sl->n >= h->ents_cap
        && ptm_hist_grow((void **)&h->ents, &h->ents_cap, sl->n + 1,
                         sizeof(ent_t))) {
        sl->overflow = 1;
        return -1;
    }
    if (every) {
        if (c->file < 0) {
            c->type = type;
        }
        else {
            c->type = c->type_len <= TYPE_COPY_MAX
                      ? apr_pmemdup(sl->p, type, c->type_len) : NULL;
        }
        h->slots[j] = (uint32_t)(sl->n + 1);
    }
    h->ents[sl->n++] = *c;
    return 0;
}

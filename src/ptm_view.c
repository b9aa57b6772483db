/* The current view (SPEC §3.7, §3.8): per stream, an ordered map from
 * type (as a JSON string) to the latest envelope, and the two reads that
 * print it.
 *
 * Readers never wait for writers (who hold the lock across their file
 * I/O): they copy what they need without the lock under the view's
 * sequence lock (ptm_seqlock.h, ptm_view_read), bounding every offset and
 * length they read, since the bytes may change under them (or be
 * crafted: SPEC §11.6), and build the answer from their private copy
 * (GET /current: the copy is the answer, kept only if it checks out). */
#include <string.h>
#include "ptm_store_int.h"
#include "ptm_test_hook.h"

#ifdef PTM_TEST_HOOKS
/* Set by a test to break the readers on purpose: a copy is kept without
 * checking the generation (the torture test must then find torn ones). */
int ptm_test_view_unchecked;
#endif

int ptm_view_find_locked(ptm_store_t *st, int s, const char *key,
                           size_t len, uint32_t h)
{
    map_t *m = &st->hdr->map[s];
    uint32_t *ix = index_of(st, s);
    slot_t *sl = slots(st, s);
    uint32_t i = h & (m->hcap - 1);

    while (ix[i]) {
        slot_t *x = &sl[ix[i] - 1];

        if (x->hash == h && x->key_len == len
            && memcmp(arena(st) + x->blob, key, len) == 0) {
            return (int)ix[i] - 1;
        }
        i = (i + 1) & (m->hcap - 1);
    }
    return -1;
}

static void view_index_locked(ptm_store_t *st, int s, uint32_t slot)
{
    map_t *m = &st->hdr->map[s];
    uint32_t *ix = index_of(st, s);
    uint32_t i = slots(st, s)[slot].hash & (m->hcap - 1);

    while (ix[i]) {
        i = (i + 1) & (m->hcap - 1);
    }
    ix[i] = slot + 1;
}

void ptm_view_clear_locked(ptm_store_t *st, int s)
{
    map_t *m = &st->hdr->map[s];
    slot_t *sl = slots(st, s);
    uint32_t i;

    for (i = 0; i < m->count; i++) {
        ptm_arena_release_locked(st, sl[i].blob);
    }
    m->count = 0;
    m->bytes = 0;
    memset(index_of(st, s), 0, (size_t)m->hcap * sizeof(uint32_t));
}

/* A value's blob is claimed unowned and handed to its slot only once all
 * of its bytes are in place: a process killed in the middle of the copy
 * leaves a blob that a repair drops (src_payload checks the owner), not a
 * torn envelope that it would keep and /current would serve. */
void ptm_view_own_locked(ptm_store_t *st, int s, uint32_t slot)
{
    blob_t *b = blob_hdr(st, slots(st, s)[slot].blob);

    __atomic_store_n(&b->owner, 2u + 2u * slot + (uint32_t)s,
                     __ATOMIC_RELEASE);
}

/* Append a new type to map `s`; the caller has checked there is a free
 * slot and that `key_len + env_len` bytes fit.  Returns where the payload
 * goes (key, then envelope); the caller fills it, then calls ptm_view_own_locked. */
char *ptm_view_append_locked(ptm_store_t *st, int s, uint32_t hash,
                               uint64_t key_len, uint64_t env_len)
{
    map_t *m = &st->hdr->map[s];
    uint32_t slot = m->count++;
    slot_t *sl = &slots(st, s)[slot];

    ptm_arena_make_room_locked(st, key_len + env_len);
    sl->blob = ptm_arena_claim_locked(st, key_len + env_len, OWNER_FREE);
    sl->hash = hash;
    sl->key_len = (uint32_t)key_len;
    sl->env_len = (uint32_t)env_len;
    m->bytes += key_len + env_len;
    view_index_locked(st, s, slot);
    return arena(st) + sl->blob;
}

/* ---- reading without the lock ------------------------------------------- */

apr_status_t ptm_view_read(ptm_store_t *st, ptm_view_read_fn fn, void *ctx,
                           int wait)
{
    hdr_t *h = st->hdr;
    apr_status_t rv;
    unsigned tries, round = 0;
    uint64_t g;

    for (tries = 0; tries < PTM_VIEW_TRIES; tries++) {
        g = ptm_seq_read_begin(&h->view_gen);
        if (g & 1) {
            /* A writer is in the middle of a change: wait a little for
             * it rather than copy what it is changing. */
            ptm_seq_backoff(round++);
            __atomic_fetch_add(&h->view_retries, 1, __ATOMIC_RELAXED);
            continue;
        }
        rv = fn(st, ctx);
#ifdef PTM_TEST_HOOKS
        if (ptm_test_view_unchecked && rv != PTM_VIEW_TORN) {
            return rv;
        }
#endif
        if (ptm_seq_read_valid(&h->view_gen, g)) {
            if (rv != PTM_VIEW_TORN) {
                return rv;
            }
            /* Nothing changed, yet it does not check out: not a race
             * but a damaged state; the lock decides. */
            break;
        }
        __atomic_fetch_add(&h->view_retries, 1, __ATOMIC_RELAXED);
    }
    /* Never starve: a reader overlapped by change after change (or by
     * one writer preempted in its section) waits for the lock once. */
    __atomic_fetch_add(&h->view_locked, 1, __ATOMIC_RELAXED);
    rv = wait ? ptm_store_lock(st) : ptm_store_trylock(st);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    rv = fn(st, ctx);
    ptm_store_unlock(st);
    return rv == PTM_VIEW_TORN ? PTM_STORE_DAMAGED : rv;
}

const char *ptm_view_payload(const ptm_store_t *st, uint64_t payload,
                             uint64_t n)
{
    const hdr_t *h = st->hdr;
    uint64_t a = ptm_seq_ld64(&h->arena);
    uint64_t size = ptm_seq_ld64(&h->arena_size);

    if (!ptm_view_at(st, a, size, 1) || payload < sizeof(blob_t)
        || payload > size || n > size - payload) {
        return NULL;
    }
    return st->base + a + payload;
}

/* {"current":{...}} built straight from the segment into the answer:
 * the site's entries in order, each copied once from its blob into
 * place, with the run's value in place of the site's where the run has
 * the type, then the run-only types.  Only the run's values are copied
 * twice (into `run` first: they are looked up by key), and the run's
 * types are found through a table built here (the segment's index is
 * not copied).  What the answer holds is kept only if the generation
 * did not move (ptm_view_read); a retry starts it again. */
typedef struct {
    apr_pool_t *p;
    ptm_buf_t *out;
    size_t len0;            /* what `out` held before */
    slot_t *sl;             /* both maps' slots, site first */
    uint64_t sl_cap;        /* slots `sl` has room for */
    char *run;              /* the run's [key][envelope]s; each run slot's
                             * blob rewritten to its offset here */
    uint64_t run_cap;
    uint32_t *tab;          /* run slot + 1 by hash, 0 empty */
    unsigned char *taken;   /* run slots printed in a site's place */
    uint32_t tab_cap, taken_cap;
    uint32_t n[2];
    uint64_t next_n;
} snap_t;

/* Whether `len` more bytes fit in the room made for the answer at the
 * start.  A snapshot's answer always does: each of its bytes comes from
 * a different byte of the maps' (their byte counts) but for a ',' and a
 * ':' per type and the wrapping.  A torn copy may not, and is refused
 * rather than let grow (two site slots read with one key, say, would
 * print the run's value twice). */
static int snap_fits(const ptm_buf_t *out, const char *d, uint64_t len)
{
    return len <= (uint64_t)(out->cap - (size_t)(d - out->data));
}

/* A ptm_view_read_fn: the answer into the snap_t `ctx`.  Every payload
 * is bounded by the maps' byte counts (what the answer holds), those by
 * the arena. */
static apr_status_t snap_build(ptm_store_t *st, void *ctx)
{
    snap_t *sn = ctx;
    ptm_buf_t *out = sn->out;
    const hdr_t *h = st->hdr;
    uint64_t arena_size = ptm_seq_ld64(&h->arena_size);
    uint64_t budget = 0, off[2], bytes[2], i, total, used = 0;
    uint64_t run_used = 0;
    uint32_t cap, nrun, mask = 0, j;
    const slot_t *site, *run;
    int s, first = 1;
    char *d;

    out->len = sn->len0;
    /* The arena inside the segment first: its size bounds what is
     * allocated for the answer. */
    if (!ptm_view_at(st, ptm_seq_ld64(&h->arena), arena_size, 1)) {
        return PTM_VIEW_TORN;
    }
    for (s = 0; s < 2; s++) {
        const map_t *m = &h->map[s];

        bytes[s] = ptm_seq_ld64(&m->bytes);
        sn->n[s] = ptm_seq_ld32(&m->count);
        cap = ptm_seq_ld32(&m->cap);
        off[s] = ptm_seq_ld64(&m->slots);
        if (sn->n[s] > cap
            || !ptm_view_at(st, off[s], (uint64_t)cap * sizeof(slot_t), 1)
            || bytes[s] > arena_size) {
            return PTM_VIEW_TORN;
        }
        budget += bytes[s];
    }
    if (budget > arena_size) {
        return PTM_VIEW_TORN;
    }
    total = (uint64_t)sn->n[0] + sn->n[1];
    nrun = sn->n[1];
    /* Memory from the pool, only when it grows: a retry reuses it. */
    if (total > sn->sl_cap) {
        sn->sl = apr_palloc(sn->p, (apr_size_t)total * sizeof(slot_t));
        sn->sl_cap = total;
    }
    ptm_seq_copy(sn->sl, st->base + off[0], sn->n[0] * sizeof(slot_t));
    ptm_seq_copy(sn->sl + sn->n[0], st->base + off[1],
                 nrun * sizeof(slot_t));
    site = sn->sl;
    run = sn->sl + sn->n[0];

    /* The run's values, and the table that finds them by key. */
    if (nrun) {
        for (mask = 32; mask < 2 * nrun; mask *= 2) {
        }
        if (mask > sn->tab_cap) {
            sn->tab = apr_palloc(sn->p, (apr_size_t)mask * sizeof(*sn->tab));
            sn->tab_cap = mask;
        }
        if (nrun > sn->taken_cap) {
            sn->taken = apr_palloc(sn->p, nrun);
            sn->taken_cap = nrun;
        }
        /* The run's map holds exactly its byte count (kept with every
         * change): more is a torn copy. */
        if (bytes[1] > sn->run_cap) {
            sn->run = apr_palloc(sn->p, (apr_size_t)bytes[1]);
            sn->run_cap = bytes[1];
        }
        memset(sn->tab, 0, (size_t)mask * sizeof(*sn->tab));
        memset(sn->taken, 0, nrun);
        mask--;
        for (i = 0; i < nrun; i++) {
            slot_t *x = &sn->sl[sn->n[0] + i];
            uint64_t len = (uint64_t)x->key_len + x->env_len;
            const char *src = ptm_view_payload(st, x->blob, len);

            if (!src || len > budget - used || len > bytes[1] - run_used) {
                return PTM_VIEW_TORN;
            }
            ptm_seq_copy(sn->run + run_used, src, (size_t)len);
            x->blob = run_used;
            run_used += len;
            used += len;
            for (j = x->hash & mask; sn->tab[j]; j = (j + 1) & mask) {
            }
            sn->tab[j] = (uint32_t)i + 1;
        }
    }

    /* Room for the answer once (snap_fits). */
    ptm_buf_reserve(out, 16 + (size_t)budget + 2 * (size_t)total);
    ptm_buf_puts(out, "{\"current\":{");
    for (i = 0; i < sn->n[0]; i++) {
        const slot_t *x = &site[i], *val = NULL;
        uint64_t len = (uint64_t)x->key_len + x->env_len;
        const char *src = ptm_view_payload(st, x->blob, len);
        char *key;

        d = out->data + out->len;
        if (!src || len > budget - used || !snap_fits(out, d, 2 + len)) {
            return PTM_VIEW_TORN;
        }
        used += len;
        if (!first) {
            *d++ = ',';
        }
        first = 0;
        key = d;
        /* Key and value in one copy from where the blob is aligned (the
         * copy goes word by word from there), one byte on; then the key
         * (short) one byte back, for the ':'. */
        ptm_seq_copy(d + 1, src, (size_t)len);
        memmove(d, d + 1, x->key_len);
        d += x->key_len;
        *d++ = ':';
        if (nrun) {
            for (j = x->hash & mask; sn->tab[j]; j = (j + 1) & mask) {
                const slot_t *r = &run[sn->tab[j] - 1];

                if (r->hash == x->hash && r->key_len == x->key_len
                    && memcmp(sn->run + r->blob, key, r->key_len) == 0) {
                    val = r;
                    sn->taken[sn->tab[j] - 1] = 1;
                    break;
                }
            }
        }
        if (val) {
            /* The run's value may be longer than the site's. */
            if (!snap_fits(out, d, val->env_len)) {
                return PTM_VIEW_TORN;
            }
            memcpy(d, sn->run + val->blob + val->key_len, val->env_len);
            d += val->env_len;
        }
        else {
            d += x->env_len;
        }
        out->len = (size_t)(d - out->data);
    }
    for (i = 0; i < nrun; i++) {
        const slot_t *r = &run[i];

        if (sn->taken[i]) {
            continue;
        }
        d = out->data + out->len;
        if (!snap_fits(out, d, 2 + (uint64_t)r->key_len + r->env_len)) {
            return PTM_VIEW_TORN;
        }
        if (!first) {
            *d++ = ',';
        }
        first = 0;
        memcpy(d, sn->run + r->blob, r->key_len);
        d += r->key_len;
        *d++ = ':';
        memcpy(d, sn->run + r->blob + r->key_len, r->env_len);
        out->len = (size_t)(d - out->data) + r->env_len;
    }
    ptm_buf_puts(out, "}}");
    sn->next_n = ptm_seq_ld64(&h->next_n);
    return APR_SUCCESS;
}

apr_status_t ptm_store_current(ptm_store_t *st, ptm_buf_t *out)
{
    return ptm_store_current_at(st, out, NULL);
}

apr_status_t ptm_store_current_at(ptm_store_t *st, ptm_buf_t *out,
                                  uint64_t *next_n)
{
    snap_t sn;
    apr_status_t rv;

    memset(&sn, 0, sizeof(sn));
    sn.p = out->pool;
    sn.out = out;
    sn.len0 = out->len;
    if ((rv = ptm_view_read(st, snap_build, &sn, 1)) != APR_SUCCESS) {
        out->len = sn.len0;
        return rv;
    }
    if (next_n) {
        *next_n = sn.next_n;
    }
    return APR_SUCCESS;
}

/* GET /current/{type}: one lookup through the segment's index. */
typedef struct {
    const char *key;
    size_t key_len;
    uint32_t hash;
    char *tmp;              /* room for a key of key_len bytes */
    ptm_buf_t *out;
    size_t len0;            /* what `out` held before */
} one_t;

/* Find `o->key` in map `s` without the lock: *found gets a copy of its
 * slot, *payload where its key and envelope are (bounded).  Returns
 * APR_SUCCESS (found), PTM_STORE_NOTFOUND or PTM_VIEW_TORN. */
static apr_status_t one_find(ptm_store_t *st, int s, const one_t *o,
                             slot_t *found, const char **payload)
{
    const map_t *m = &st->hdr->map[s];
    uint32_t hcap = ptm_seq_ld32(&m->hcap), cap = ptm_seq_ld32(&m->cap);
    uint64_t ix_off = ptm_seq_ld64(&m->index);
    uint64_t sl_off = ptm_seq_ld64(&m->slots);
    const uint32_t *ix;
    const slot_t *sl;
    uint32_t i, probes, v;

    if (!hcap || (hcap & (hcap - 1))
        || !ptm_view_at(st, ix_off, (uint64_t)hcap * sizeof(uint32_t), 1)
        || !ptm_view_at(st, sl_off, (uint64_t)cap * sizeof(slot_t), 1)) {
        return PTM_VIEW_TORN;
    }
    ix = (const uint32_t *)(const void *)(st->base + ix_off);
    sl = (const slot_t *)(const void *)(st->base + sl_off);
    i = o->hash & (hcap - 1);
    for (probes = 0; probes < hcap; probes++, i = (i + 1) & (hcap - 1)) {
        const char *key;

        if (!(v = ptm_seq_ld32(&ix[i]))) {
            return PTM_STORE_NOTFOUND;
        }
        if (v > cap) {
            return PTM_VIEW_TORN;
        }
        ptm_seq_copy(found, &sl[v - 1], sizeof(*found));
        if (found->hash != o->hash || found->key_len != o->key_len) {
            continue;
        }
        key = ptm_view_payload(st, found->blob,
                               (uint64_t)found->key_len + found->env_len);
        if (!key) {
            return PTM_VIEW_TORN;
        }
        ptm_seq_copy(o->tmp, key, o->key_len);
        if (memcmp(o->tmp, o->key, o->key_len) == 0) {
            *payload = key;
            return APR_SUCCESS;
        }
    }
    return PTM_VIEW_TORN;       /* a full table: never one of ours */
}

/* A ptm_view_read_fn: the envelope of `o->key` (run first) into `out`. */
static apr_status_t one_copy(ptm_store_t *st, void *ctx)
{
    one_t *o = ctx;
    const char *payload;
    slot_t x;
    apr_status_t rv;
    int s;

    o->out->len = o->len0;
    for (s = PTM_STREAM_RUN; s >= PTM_STREAM_SITE; s--) {
        rv = one_find(st, s, o, &x, &payload);
        if (rv == APR_SUCCESS) {
            /* Bounded by one_find (key and envelope in the arena). */
            ptm_seq_copy(ptm_buf_reserve(o->out, x.env_len),
                         payload + x.key_len, x.env_len);
            o->out->len += x.env_len;
            return APR_SUCCESS;
        }
        if (rv != PTM_STORE_NOTFOUND) {
            return rv;
        }
    }
    return PTM_STORE_NOTFOUND;
}

apr_status_t ptm_store_current_one(ptm_store_t *st, const char *key,
                                   size_t key_len, ptm_buf_t *out)
{
    one_t o;
    apr_status_t rv;

    o.key = key;
    o.key_len = key_len;
    o.hash = ptm_view_hash(key, key_len);
    o.tmp = apr_palloc(out->pool, key_len ? key_len : 1);
    o.out = out;
    o.len0 = out->len;
    rv = ptm_view_read(st, one_copy, &o, 1);
    if (rv != APR_SUCCESS) {
        out->len = o.len0;
    }
    return rv;
}

/* The current view (SPEC §3.7, §3.8): per stream, an ordered map from
 * type (as a JSON string) to the latest envelope, and the two reads that
 * print it. */
#include <string.h>
#include "ptm_store_int.h"

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

static void put_entry(ptm_store_t *st, ptm_buf_t *out, const slot_t *key,
                      const slot_t *val, int *first)
{
    if (!*first) {
        ptm_buf_putc(out, ',');
    }
    *first = 0;
    ptm_buf_add(out, arena(st) + key->blob, key->key_len);
    ptm_buf_putc(out, ':');
    ptm_buf_add(out, arena(st) + val->blob + val->key_len, val->env_len);
}

/* The most {"current":{...}} can take now. */
static size_t current_size(const hdr_t *h)
{
    return 16 + __atomic_load_n(&h->map[0].bytes, __ATOMIC_RELAXED)
           + __atomic_load_n(&h->map[1].bytes, __ATOMIC_RELAXED)
           + 2 * ((size_t)__atomic_load_n(&h->map[0].count, __ATOMIC_RELAXED)
                  + __atomic_load_n(&h->map[1].count, __ATOMIC_RELAXED));
}

apr_status_t ptm_store_current(ptm_store_t *st, ptm_buf_t *out)
{
    return ptm_store_current_at(st, out, NULL);
}

apr_status_t ptm_store_current_at(ptm_store_t *st, ptm_buf_t *out,
                                  uint64_t *next_n)
{
    hdr_t *h = st->hdr;
    slot_t *site, *run;
    uint32_t i;
    int first = 1, j;
    apr_status_t rv;

    /* The answer is at most both maps plus punctuation: allocated before
     * the lock from sizes read without it (a guess: under the lock the
     * buffer only grows if the maps grew meanwhile). */
    ptm_buf_reserve(out, current_size(h) + 1024);
    if ((rv = ptm_store_lock(st)) != APR_SUCCESS) {
        return rv;
    }
    site = slots(st, PTM_STREAM_SITE);
    run = slots(st, PTM_STREAM_RUN);
    ptm_buf_reserve(out, current_size(h));
    ptm_buf_puts(out, "{\"current\":{");
    for (i = 0; i < h->map[PTM_STREAM_SITE].count; i++) {
        j = h->map[PTM_STREAM_RUN].count
            ? ptm_view_find_locked(st, PTM_STREAM_RUN,
                              arena(st) + site[i].blob, site[i].key_len,
                              site[i].hash)
            : -1;
        put_entry(st, out, &site[i], j >= 0 ? &run[j] : &site[i], &first);
    }
    for (i = 0; i < h->map[PTM_STREAM_RUN].count; i++) {
        if (ptm_view_find_locked(st, PTM_STREAM_SITE, arena(st) + run[i].blob,
                            run[i].key_len, run[i].hash) < 0) {
            put_entry(st, out, &run[i], &run[i], &first);
        }
    }
    ptm_buf_puts(out, "}}");
    if (next_n) {
        *next_n = h->next_n;
    }
    ptm_store_unlock(st);
    return APR_SUCCESS;
}

apr_status_t ptm_store_current_one(ptm_store_t *st, const char *key,
                                   size_t key_len, ptm_buf_t *out)
{
    uint32_t hash = ptm_view_hash(key, key_len);
    apr_status_t rv;
    int s, i;

    if ((rv = ptm_store_lock(st)) != APR_SUCCESS) {
        return rv;
    }
    rv = PTM_STORE_NOTFOUND;
    for (s = PTM_STREAM_RUN; s >= PTM_STREAM_SITE; s--) {
        i = ptm_view_find_locked(st, s, key, key_len, hash);
        if (i >= 0) {
            slot_t *sl = &slots(st, s)[i];

            ptm_buf_add(out, arena(st) + sl->blob + sl->key_len, sl->env_len);
            rv = APR_SUCCESS;
            break;
        }
    }
    ptm_store_unlock(st);
    return rv;
}

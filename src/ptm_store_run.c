/* The active run in the store: what events need to know of it (read
 * under the lock, or remembered per thread while its generation holds),
 * and starting, stopping and reading it. */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>
#include "ptm_store_int.h"

apr_status_t ptm_store_run_peek(ptm_store_run_t *run, ptm_store_t *st,
                                apr_pool_t *p)
{
    hdr_t *h = st->hdr;
    apr_status_t rv;
    char *id = NULL, *dir = NULL;

    if ((rv = ptm_store_lock(st)) != APR_SUCCESS) {
        return rv;
    }
    run->active = (int)h->run_active;
    run->gen = h->run_gen;
    run->run_id_len = h->run_id_len;
    if (run->active) {
        const char *b = arena(st) + h->run_blob + h->run_obj_len;

        id = apr_palloc(p, h->run_id_len + 1 + h->run_dir_len + 1);
        memcpy(id, b, h->run_id_len);
        id[h->run_id_len] = '\0';
        dir = id + h->run_id_len + 1;
        memcpy(dir, b + h->run_id_len, h->run_dir_len);
        dir[h->run_dir_len] = '\0';
    }
    ptm_store_unlock(st);
    run->run_id = id;
    run->run_dir = dir;
    return APR_SUCCESS;
}

/* What this thread last saw of the run, for one store handle: a malloc'd
 * block [seen_t][run id][run dir], freed when the thread exits. */
typedef struct {
    uint64_t store_id;
    size_t cap;
    ptm_store_run_t run;
} seen_t;

static pthread_key_t seen_key;
static pthread_once_t seen_once = PTHREAD_ONCE_INIT;
static int seen_ok;

static void seen_init(void)
{
    seen_ok = pthread_key_create(&seen_key, free) == 0;
}

apr_status_t ptm_store_run_seen(ptm_store_run_t *run, ptm_store_t *st,
                                int refresh, apr_pool_t *p)
{
    seen_t *seen;
    apr_status_t rv;
    size_t need;

    pthread_once(&seen_once, seen_init);
    seen = seen_ok ? pthread_getspecific(seen_key) : NULL;
    /* The generation read without the lock only decides whether to take
     * it: a wrong guess is caught by ptm_store_event's check under it. */
    if (!refresh && seen && seen->store_id == st->id
        && seen->run.gen == __atomic_load_n(&st->hdr->run_gen,
                                            __ATOMIC_ACQUIRE)) {
        *run = seen->run;
        if (run->active) {
            run->run_id = apr_pstrmemdup(p, run->run_id, run->run_id_len);
            run->run_dir = apr_pstrdup(p, run->run_dir);
        }
        return APR_SUCCESS;
    }
    if ((rv = ptm_store_run_peek(run, st, p)) != APR_SUCCESS || !seen_ok) {
        return rv;
    }
    need = sizeof(*seen) + (run->active ? run->run_id_len + 1
                                          + strlen(run->run_dir) + 1 : 0);
    if (!seen || seen->cap < need) {
        seen_t *bigger = realloc(seen, need);

        if (!bigger) {
            return APR_SUCCESS;         /* no memory: nothing remembered */
        }
        if (pthread_setspecific(seen_key, bigger) != 0) {
            free(bigger);               /* nothing remembered */
            pthread_setspecific(seen_key, NULL);
            return APR_SUCCESS;
        }
        seen = bigger;
        seen->cap = need;
    }
    seen->store_id = st->id;
    seen->run = *run;
    if (run->active) {
        char *id = (char *)(seen + 1);
        char *dir = id + run->run_id_len + 1;

        memcpy(id, run->run_id, run->run_id_len + 1);
        strcpy(dir, run->run_dir);
        seen->run.run_id = id;
        seen->run.run_dir = dir;
    }
    return APR_SUCCESS;
}

int ptm_store_run_changed(ptm_store_t *st, uint64_t gen)
{
    return __atomic_load_n(&st->hdr->run_gen, __ATOMIC_ACQUIRE) != gen;
}

int ptm_store_run_active(ptm_store_t *st)
{
    return __atomic_load_n(&st->hdr->run_active, __ATOMIC_ACQUIRE) != 0;
}

apr_status_t ptm_store_run_start(ptm_store_t *st, const char *obj,
                                 size_t obj_len, const char *run_id,
                                 size_t run_id_len, const char *run_dir,
                                 ptm_store_prepare_fn prepare, void *ctx)
{
    hdr_t *h = st->hdr;
    uint64_t floor = 0;
    size_t dir_len = strlen(run_dir);
    uint64_t len = (uint64_t)obj_len + run_id_len + dir_len, off;
    apr_status_t rv;
    char *b;

    if ((rv = ptm_store_lock(st)) != APR_SUCCESS) {
        return rv;
    }
    if (h->run_active) {
        rv = PTM_STORE_BUSY;
        goto out;
    }
    /* Room first, then the directory: a 507 must leave nothing behind.
     * Only checked here: a refused start changes no byte, so it needs no
     * mark. */
    if ((rv = ptm_arena_fits_locked(st, len, 0)) != APR_SUCCESS) {
        goto out;
    }
    if (prepare && (rv = prepare(ctx, &floor)) != APR_SUCCESS) {
        goto out;
    }
    ptm_store_begin_locked(h, PTM_STREAM_RUN, 0);
    /* A reused run directory may hold numbers this state never gave out
     * (the state was lost or is older): never repeat one in that file. */
    if (floor > h->seq[PTM_STREAM_RUN]) {
        h->seq[PTM_STREAM_RUN] = floor;
    }
    /* The run's values go and the run comes in one change for readers
     * without the lock. */
    ptm_seq_write_begin(&h->view_gen);
    ptm_view_clear_locked(st, PTM_STREAM_RUN);
    /* Compaction moves every blob: inside the mark, so that a death half
     * way is repaired rather than left for the next compaction to walk. */
    ptm_arena_make_room_locked(st, len);
    off = ptm_arena_claim_locked(st, len, OWNER_RUN);
    b = arena(st) + off;
    memcpy(b, obj, obj_len);
    memcpy(b + obj_len, run_id, run_id_len);
    memcpy(b + obj_len + run_id_len, run_dir, dir_len);
    h->run_blob = off;
    h->run_obj_len = (uint32_t)obj_len;
    h->run_id_len = (uint32_t)run_id_len;
    h->run_dir_len = (uint32_t)dir_len;
    h->run_active = 1;
    __atomic_add_fetch(&h->run_gen, 1, __ATOMIC_RELEASE);
    ptm_seq_write_end(&h->view_gen);
    ptm_store_end_locked(h);
out:
    ptm_store_unlock(st);
    return rv;
}

apr_status_t ptm_store_run_stop(ptm_store_t *st, ptm_buf_t *out)
{
    return ptm_store_run_stop_noting(st, out, NULL, NULL);
}

apr_status_t ptm_store_run_stop_noting(ptm_store_t *st, ptm_buf_t *out,
                                       ptm_store_note_fn note, void *ctx)
{
    hdr_t *h = st->hdr;
    apr_status_t rv;

    if ((rv = ptm_store_lock(st)) != APR_SUCCESS) {
        return rv;
    }
    if (!h->run_active) {
        ptm_store_unlock(st);
        return PTM_STORE_NORUN;
    }
    if (note) {
        /* A copy: the callee may take its time, but not the segment. */
        char dir[PATH_MAX];
        size_t n = h->run_dir_len < sizeof(dir) - 1 ? h->run_dir_len
                                                    : sizeof(dir) - 1;

        memcpy(dir, arena(st) + h->run_blob + h->run_obj_len
                    + h->run_id_len, n);
        dir[n] = '\0';
        note(ctx, dir);
    }
    ptm_buf_add(out, arena(st) + h->run_blob, h->run_obj_len);
    ptm_store_begin_locked(h, PTM_STREAM_RUN, 0);
    ptm_seq_write_begin(&h->view_gen);
    h->run_active = 0;
    ptm_arena_release_locked(st, h->run_blob);
    ptm_view_clear_locked(st, PTM_STREAM_RUN);
    h->run_blob = 0;
    h->run_obj_len = h->run_id_len = h->run_dir_len = 0;
    __atomic_add_fetch(&h->run_gen, 1, __ATOMIC_RELEASE);
    ptm_seq_write_end(&h->view_gen);
    ptm_store_end_locked(h);
    ptm_store_unlock(st);
    return APR_SUCCESS;
}

/* ---- reading the run without the lock ----------------------------------- */

typedef struct {
    ptm_buf_t *out;
    size_t len0;            /* what `out` held before */
    size_t obj_len, id_len, dir_len;
} run_read_t;

/* A ptm_view_read_fn: the run blob [object][id][dir] into `out`. */
static apr_status_t run_copy(ptm_store_t *st, void *ctx)
{
    run_read_t *rd = ctx;
    const hdr_t *h = st->hdr;
    uint32_t obj_len, id_len, dir_len;
    uint64_t len;
    const char *src;

    rd->out->len = rd->len0;
    if (!ptm_seq_ld32(&h->run_active)) {
        return PTM_STORE_NORUN;
    }
    obj_len = ptm_seq_ld32(&h->run_obj_len);
    id_len = ptm_seq_ld32(&h->run_id_len);
    dir_len = ptm_seq_ld32(&h->run_dir_len);
    len = (uint64_t)obj_len + id_len + dir_len;
    src = ptm_view_payload(st, ptm_seq_ld64(&h->run_blob), len);
    if (!src) {
        return PTM_VIEW_TORN;
    }
    ptm_seq_copy(ptm_buf_reserve(rd->out, (size_t)len), src, (size_t)len);
    rd->out->len += (size_t)len;
    rd->obj_len = obj_len;
    rd->id_len = id_len;
    rd->dir_len = dir_len;
    return APR_SUCCESS;
}

apr_status_t ptm_store_run_read(ptm_store_t *st, ptm_buf_t *out,
                                size_t *obj_len, size_t *id_len,
                                size_t *dir_len, int wait)
{
    run_read_t rd;
    apr_status_t rv;

    memset(&rd, 0, sizeof(rd));
    rd.out = out;
    rd.len0 = out->len;
    rv = ptm_view_read(st, run_copy, &rd, wait);
    if (rv != APR_SUCCESS) {
        out->len = rd.len0;
        return rv;
    }
    *obj_len = rd.obj_len;
    *id_len = rd.id_len;
    *dir_len = rd.dir_len;
    return APR_SUCCESS;
}

apr_status_t ptm_store_run_get(ptm_store_t *st, ptm_buf_t *out)
{
    size_t len0 = out->len, obj_len, id_len, dir_len;
    apr_status_t rv;

    rv = ptm_store_run_read(st, out, &obj_len, &id_len, &dir_len, 1);
    if (rv == APR_SUCCESS) {
        out->len = len0 + obj_len;      /* the object only */
    }
    return rv;
}

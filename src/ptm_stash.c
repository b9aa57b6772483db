/* Big buffers kept per thread from one request to the next; see
 * ptm_stash.h.
 *
 * A request mallocs a few big buffers (a day file read whole, the keys of
 * a slice, an answer held whole) and frees them; glibc gives such sizes
 * back to the kernel, so the next request faults every page in again (a
 * seventh of a GET /events).  Each thread keeps up to STASH_N of them,
 * STASH_MAX bytes in all, for its next request; bigger ones are freed as
 * before.  Freed with the thread (a pthread key's destructor). */
#include <pthread.h>
#include <stdlib.h>
#include "ptm_stash.h"

#define STASH_N 4
#define STASH_MAX ((size_t)2 * 1024 * 1024)

typedef struct {
    void *p[STASH_N];
    size_t cap[STASH_N];
} stash_t;

static pthread_key_t stash_key;
static pthread_once_t stash_once = PTHREAD_ONCE_INIT;
static int stash_ok;

static void stash_free(void *data)
{
    stash_t *st = data;
    int i;

    for (i = 0; i < STASH_N; i++) {
        free(st->p[i]);
    }
    free(st);
}

static void stash_init(void)
{
    stash_ok = pthread_key_create(&stash_key, stash_free) == 0;
}

static stash_t *stash_get(void)
{
    stash_t *st;

    if (pthread_once(&stash_once, stash_init) != 0 || !stash_ok) {
        return NULL;
    }
    if (!(st = pthread_getspecific(stash_key))) {
        if (!(st = calloc(1, sizeof(*st)))
            || pthread_setspecific(stash_key, st) != 0) {
            free(st);
            return NULL;
        }
    }
    return st;
}

void *ptm_stash_take(size_t want, size_t *cap)
{
    stash_t *st = stash_get();
    int i, best = -1;
    void *p;

    for (i = 0; st && i < STASH_N; i++) {
        if (st->p[i] && st->cap[i] >= want
            && (best < 0 || st->cap[i] < st->cap[best])) {
            best = i;
        }
    }
    if (best >= 0) {
        p = st->p[best];
        *cap = st->cap[best];
        st->p[best] = NULL;
        return p;
    }
    *cap = want;
    return malloc(want ? want : 1);
}

void ptm_stash_give(void *p, size_t cap)
{
    stash_t *st;
    size_t held = 0;
    int i, free_slot = -1, small = -1;

    if (!p) {
        return;
    }
    if (cap > STASH_MAX || !(st = stash_get())) {
        free(p);
        return;
    }
    for (i = 0; i < STASH_N; i++) {
        if (!st->p[i]) {
            free_slot = free_slot < 0 ? i : free_slot;
            continue;
        }
        held += st->cap[i];
        if (small < 0 || st->cap[i] < st->cap[small]) {
            small = i;
        }
    }
    /* Room made by dropping the smallest kept ones (a bigger one serves
     * more requests). */
    while ((free_slot < 0 || held + cap > STASH_MAX) && small >= 0
           && st->cap[small] < cap) {
        held -= st->cap[small];
        free(st->p[small]);
        st->p[small] = NULL;
        free_slot = small;
        small = -1;
        for (i = 0; i < STASH_N; i++) {
            if (st->p[i] && (small < 0 || st->cap[i] < st->cap[small])) {
                small = i;
            }
        }
    }
    if (free_slot < 0 || held + cap > STASH_MAX) {
        free(p);
        return;
    }
    st->p[free_slot] = p;
    st->cap[free_slot] = cap;
}


#ifdef PTM_TEST_HOOKS
size_t ptm_stash_kept(void);

/* Bytes this thread keeps (for the unit tests). */
size_t ptm_stash_kept(void)
{
    stash_t *st = stash_get();
    size_t n = 0;
    int i;

    for (i = 0; st && i < STASH_N; i++) {
        n += st->p[i] ? st->cap[i] : 0;
    }
    return n;
}
#endif

typedef struct {
    void *mem;
    size_t cap;
} lent_t;

static apr_status_t lent_give(void *data)
{
    lent_t *l = data;

    ptm_stash_give(l->mem, l->cap);
    return APR_SUCCESS;
}

void *ptm_stash_take_for(apr_pool_t *p, size_t want, size_t *cap)
{
    lent_t *l = apr_palloc(p, sizeof(*l));

    if (!(l->mem = ptm_stash_take(want, &l->cap))) {
        return NULL;
    }
    apr_pool_cleanup_register(p, l, lent_give, apr_pool_cleanup_null);
    *cap = l->cap;
    return l->mem;
}

/* The store's front lock; see ptm_lock.h. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "ptm_lock.h"
#include "ptm_shm.h"

#define LOCK_MAGIC 0x4b434c50u          /* "PLCK" */
#define LOCK_VERSION 1u

struct ptm_lock_t {
    uint32_t magic;
    uint32_t version;
    char pad0[56];
    pthread_mutex_t mutex;
    /* Its own cache line: bumped by waiters while the holder works. */
    char pad1[64];
    uint64_t waits;
    char pad2[56];
    /* Under the lock only. */
    ptm_ndjson_tail_t tail[2];
};

size_t ptm_lock_size(void)
{
    return sizeof(ptm_lock_t);
}

ptm_lock_t *ptm_lock_init(void *mem, apr_status_t *rv)
{
    ptm_lock_t *l = mem;
    pthread_mutexattr_t a;
    int err;

    memset(l, 0, sizeof(*l));
    if ((err = pthread_mutexattr_init(&a)) != 0) {
        *rv = APR_FROM_OS_ERROR(err);
        return NULL;
    }
    /* The protocol stays PTHREAD_PRIO_NONE: the point of this lock. */
    if ((err = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED)) == 0
        && (err = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST)) == 0) {
        err = pthread_mutex_init(&l->mutex, &a);
    }
    pthread_mutexattr_destroy(&a);
    if (err != 0) {
        *rv = APR_FROM_OS_ERROR(err);
        return NULL;
    }
    l->tail[0].end = l->tail[1].end = -1;
    l->version = LOCK_VERSION;
    l->magic = LOCK_MAGIC;
    *rv = APR_SUCCESS;
    return l;
}

apr_status_t ptm_lock_create(ptm_lock_t **out, apr_pool_t *p)
{
    void *base;
    apr_status_t rv;

    *out = NULL;
    if ((rv = ptm_shm_anon(&base, sizeof(ptm_lock_t), p)) != APR_SUCCESS) {
        return rv;
    }
    *out = ptm_lock_init(base, &rv);
    return rv;
}

int ptm_lock_is_ours(const ptm_lock_t *l)
{
    return l && l->magic == LOCK_MAGIC && l->version == LOCK_VERSION;
}

apr_status_t ptm_lock_take(ptm_lock_t *l, int wait)
{
    int err = pthread_mutex_trylock(&l->mutex);

    if (err == EBUSY && wait) {
        __atomic_fetch_add(&l->waits, 1, __ATOMIC_RELAXED);
        err = pthread_mutex_lock(&l->mutex);
    }
    if (err == EOWNERDEAD) {
        /* Its holder died: the lock is ours, and usable again once marked
         * so.  What the holder left half done is the caller's to see. */
        err = pthread_mutex_consistent(&l->mutex);
        if (err != 0) {
            pthread_mutex_unlock(&l->mutex);
        }
        else {
            /* It may have died between its write and its note of where
             * the file ends: forget the ends (the next append reads the
             * last byte back, as without the board). */
            l->tail[0].end = l->tail[1].end = -1;
        }
    }
    return err == 0 ? APR_SUCCESS
           : err == EBUSY ? APR_EBUSY : APR_FROM_OS_ERROR(err);
}

void ptm_lock_give(ptm_lock_t *l)
{
    pthread_mutex_unlock(&l->mutex);
}

ptm_ndjson_tail_t *ptm_lock_tail(ptm_lock_t *l, int stream)
{
    return &l->tail[stream & 1];
}

apr_uint64_t ptm_lock_waits(const ptm_lock_t *l)
{
    return __atomic_load_n(&l->waits, __ATOMIC_RELAXED);
}

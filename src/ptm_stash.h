/* Big buffers (hundreds of KiB) kept per thread between requests, so
 * that GET /events does not fault fresh pages in on every request.  At
 * most a few buffers and 2 MiB per thread are kept; the rest is freed. */
#ifndef PTM_STASH_H
#define PTM_STASH_H

#include <stddef.h>
#include <apr_pools.h>

/** A malloc'd buffer of at least `want` bytes (its size in `*cap`): one
 * this thread kept, or a new one.  NULL when memory is out. */
void *ptm_stash_take(size_t want, size_t *cap);

/** Keep `p` (malloc'd, `cap` bytes) for this thread's next request, or
 * free it.  NULL is ignored. */
void ptm_stash_give(void *p, size_t cap);

/** ptm_stash_take for the life of the pool `p`: the buffer goes back to
 * the stash when `p` is cleared or destroyed.  NULL when memory is out. */
void *ptm_stash_take_for(apr_pool_t *p, size_t want, size_t *cap);

#endif

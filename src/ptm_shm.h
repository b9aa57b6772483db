/* The anonymous shared memory of the boards the parent makes once (live
 * feed, forwarding, group commit) and keeps across graceful restarts. */
#ifndef PTM_SHM_H
#define PTM_SHM_H

#include <apr_pools.h>

/**
 * `*base` gets `size` bytes of anonymous shared memory, zeroed, that the
 * children forked later share: nothing on the file system for anyone to
 * plant or open, and gone with the last process that maps it.  Lives as
 * long as `p`.
 */
apr_status_t ptm_shm_anon(void **base, apr_size_t size, apr_pool_t *p);

#endif

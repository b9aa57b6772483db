/* The forwarding position and counters kept in the shared state (SPEC
 * §12.5, state layout 6), so that forwarding resumes where it stopped
 * after a graceful restart, a restart or a kill -9 of every httpd process.
 *
 * Only the forwarder (one thread in one child, ptm_forward.c) changes
 * them, without the store lock: the position with an atomic store, the
 * counters with atomic adds.  Anyone reads them with atomic loads. */
#ifndef PTM_STORE_FWD_H
#define PTM_STORE_FWD_H

#include <stdint.h>
#include "ptm_store.h"

typedef struct {
    uint64_t next_n;        /* n of the next event to hand over; 0: never */
    uint64_t forwarded;     /* lines fully written */
    uint64_t dropped;       /* events that left the ring unforwarded */
    uint64_t repeats;       /* lines written again after a rewind */
    uint64_t id_next_n;     /* n the next accepted event gets */
} ptm_store_fwd_t;

/** Read the position and counters (atomic loads; cannot fail). */
void ptm_store_fwd_get(ptm_store_t *st, ptm_store_fwd_t *out);

/** Set the position: the n of the next event to hand over. */
void ptm_store_fwd_set(ptm_store_t *st, uint64_t next_n);

/** Add to the counters. */
void ptm_store_fwd_count(ptm_store_t *st, uint64_t forwarded,
                         uint64_t dropped, uint64_t repeats);

#endif

/* The forwarding position and counters in the shared state; see
 * ptm_store_fwd.h.  The repair (ptm_repair.c) carries them with the rest
 * through ptm_store_fwd_copy. */
#include <stddef.h>
#include "ptm_store_fwd.h"
#include "ptm_store_int.h"

void ptm_store_fwd_get(ptm_store_t *st, ptm_store_fwd_t *out)
{
    hdr_t *h = st->hdr;

    out->next_n = __atomic_load_n(&h->fwd_next_n, __ATOMIC_ACQUIRE);
    out->forwarded = __atomic_load_n(&h->fwd_forwarded, __ATOMIC_RELAXED);
    out->dropped = __atomic_load_n(&h->fwd_dropped, __ATOMIC_RELAXED);
    out->repeats = __atomic_load_n(&h->fwd_repeats, __ATOMIC_RELAXED);
    out->id_next_n = __atomic_load_n(&h->next_n, __ATOMIC_RELAXED);
}

void ptm_store_fwd_set(ptm_store_t *st, uint64_t next_n)
{
    __atomic_store_n(&st->hdr->fwd_next_n, next_n, __ATOMIC_RELEASE);
}

void ptm_store_fwd_count(ptm_store_t *st, uint64_t forwarded,
                         uint64_t dropped, uint64_t repeats)
{
    hdr_t *h = st->hdr;

    if (forwarded) {
        __atomic_add_fetch(&h->fwd_forwarded, forwarded, __ATOMIC_RELAXED);
    }
    if (dropped) {
        __atomic_add_fetch(&h->fwd_dropped, dropped, __ATOMIC_RELAXED);
    }
    if (repeats) {
        __atomic_add_fetch(&h->fwd_repeats, repeats, __ATOMIC_RELAXED);
    }
}

unsigned ptm_store_fwd_copy(hdr_t *h, const hdr_t *o, uint64_t hdr_size)
{
    /* Layout 5 and earlier never forwarded: the fresh zeros say so (the
     * forwarder then starts from the ring's oldest, counting no drop). */
    if (hdr_size < offsetof(hdr_t, fwd_repeats) + sizeof(h->fwd_repeats)) {
        return 0;
    }
    h->fwd_forwarded = o->fwd_forwarded;
    h->fwd_dropped = o->fwd_dropped;
    h->fwd_repeats = o->fwd_repeats;
    /* Ids are never given twice (ptm_ring_copy set next_n): a position
     * beyond the next id was not ours.  Clamped, forwarding goes on with
     * the next event accepted (nothing held is skipped: the ring holds
     * none at or past next_n). */
    if (o->fwd_next_n > h->next_n) {
        h->fwd_next_n = h->next_n;
        return 1;
    }
    h->fwd_next_n = o->fwd_next_n;
    return 0;
}

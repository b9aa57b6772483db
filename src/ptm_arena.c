/* The arena of the segment: variable-size blobs [blob_t][payload], each
 * naming its owner (a view slot, the run, or nobody), so that the arena can
 * be compacted in place when its tail runs out. */
#include <string.h>
#include "ptm_store_int.h"
#include "ptm_test_hook.h"

#ifdef PTM_TEST_HOOKS
void (*ptm_test_hook)(const char *where, unsigned n);
#endif

/* Slide every owned blob down over the free ones and fix its owner's
 * offset: O(arena) memmoves, only when the arena's tail is used up.
 * Inside the writing mark: after a death half way, a repair takes each
 * value from where its owner points if the blob there still names it. */
void ptm_arena_compact_locked(ptm_store_t *st)
{
    hdr_t *h = st->hdr;
    char *a = arena(st);
    uint64_t off = 0, dst = 0;
    unsigned moved = 0;

    /* Nothing else moves every value at once: a compaction outside the
     * mark is one a death leaves torn and unrepaired. */
    PTM_TEST_ASSERT(h->writing);
    /* ... and one outside a change of the view's generation is one that
     * readers without the lock would copy torn. */
    PTM_TEST_ASSERT(h->view_gen & 1);
    while (off < h->top) {
        blob_t *b = (blob_t *)(a + off);
        uint64_t total = BLOB_TOTAL(b->len);
        uint32_t owner = b->owner;

        if (owner != OWNER_FREE) {
            uint64_t payload = dst + sizeof(blob_t);
            /* A blob slid by less than its size overwrites itself, in
             * whatever order memmove stores: unowned while it moves, so
             * that a repair drops a copy cut short rather than trust the
             * original's header over bytes already overwritten. */
            int self = dst != off && off - dst < total;

            if (self) {
                __atomic_store_n(&b->owner, OWNER_FREE, __ATOMIC_RELEASE);
            }
            if (dst != off) {
                memmove(a + dst, a + off, (size_t)total);
                moved++;
                PTM_TEST_HOOK("compact:moved", moved);
            }
            if (owner == OWNER_RUN) {
                h->run_blob = payload;
            }
            else {
                slots(st, (int)((owner - 2) & 1))[(owner - 2) / 2].blob =
                    payload;
            }
            if (self) {
                __atomic_store_n(&((blob_t *)(a + dst))->owner, owner,
                                 __ATOMIC_RELEASE);
            }
            if (dst != off) {
                PTM_TEST_HOOK("compact:owned", moved);
            }
            dst += total;
        }
        off += total;
    }
    h->top = dst;
}

/* Would a blob of `len` bytes fit once `freed` bytes of live blobs (the
 * value it replaces) are released?  Changes nothing.  Returns
 * PTM_STORE_FULL when even a compacted arena is too small. */
apr_status_t ptm_arena_fits_locked(ptm_store_t *st, uint64_t len,
                                uint64_t freed)
{
    hdr_t *h = st->hdr;

    if (len > UINT32_MAX
        || h->live - freed + BLOB_TOTAL(len) > h->arena_size) {
        return PTM_STORE_FULL;
    }
    return APR_SUCCESS;
}

/* Compact if a blob of `len` bytes (known to fit) is not free at `top`.
 * Changes nothing visible, but moves blobs: only inside the writing mark
 * of a live segment. */
void ptm_arena_make_room_locked(ptm_store_t *st, uint64_t len)
{
    hdr_t *h = st->hdr;

    if (h->top + BLOB_TOTAL(len) > h->arena_size) {
        ptm_arena_compact_locked(st);
    }
}

/* Make sure a blob of `len` bytes fits at `top`, compacting if need be
 * (so, on a live segment, only inside the writing mark).  Returns
 * PTM_STORE_FULL when even a compacted arena is too small. */
apr_status_t ptm_arena_reserve_locked(ptm_store_t *st, uint64_t len)
{
    apr_status_t rv = ptm_arena_fits_locked(st, len, 0);

    if (rv == APR_SUCCESS) {
        ptm_arena_make_room_locked(st, len);
    }
    return rv;
}

/* Take the reserved space at `top`; returns the payload offset. */
uint64_t ptm_arena_claim_locked(ptm_store_t *st, uint64_t len, uint32_t owner)
{
    hdr_t *h = st->hdr;
    blob_t *b = (blob_t *)(arena(st) + h->top);
    uint64_t total = BLOB_TOTAL(len);

    b->len = (uint32_t)len;
    b->owner = owner;
    h->top += total;
    h->live += total;
    return (uint64_t)((char *)(b + 1) - arena(st));
}

void ptm_arena_release_locked(ptm_store_t *st, uint64_t payload)
{
    blob_t *b = blob_hdr(st, payload);

    st->hdr->live -= BLOB_TOTAL(b->len);
    b->owner = OWNER_FREE;
}


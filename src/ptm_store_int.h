/* What the files of the store share and nobody else sees: the layout of
 * the segment and the internal functions of its parts.
 *
 *   ptm_store.c      the handle, the lock and the writing mark, events,
 *                    counters
 *   ptm_arena.c      the arena: blobs, their owners, compaction
 *   ptm_view.c       the current view: two ordered maps, /current
 *   ptm_store_run.c  the active run
 *   ptm_repair.c     rebuilding a torn state, or one of another size
 *   ptm_statefile.c  the state file: open, lock, size, map
 *   ptm_reconcile.c  seq counters raised to what the files hold
 *   ptm_ring.c       event ids and the recent-events ring
 *
 * Segment layout (all offsets from the segment base, all 8-byte aligned):
 *   hdr_t | site slots | site index | run slots | run index | arena | ring
 * A map keeps its types in insertion order in `slots` (what /current
 * prints) and finds them through `index`, an open-addressing table of
 * slot numbers.  Types are never removed one by one, only all at once when
 * a run starts or stops, so neither table needs tombstones.
 *
 * Functions ending in _locked expect the store lock held and, when they
 * change the segment, the writing mark set (ptm_store_begin_locked). */
#ifndef PTM_STORE_INT_H
#define PTM_STORE_INT_H

#include <stdint.h>
#include <sys/uio.h>
#include "ptm_hash.h"
#include "ptm_ndjson.h"
#include "ptm_seqlock.h"
#include "ptm_store.h"
#include "ptm_sync.h"

#define MAGIC 0x314d5450u           /* "PTM1" */
#define LAYOUT_VERSION 7u
#define OWNER_FREE 0u
#define OWNER_RUN 1u
#define ALIGN8(n) (((n) + 7) & ~(uint64_t)7)

typedef struct {
    uint32_t hash;
    uint32_t key_len;
    uint32_t env_len;
    uint32_t pad;
    uint64_t blob;                  /* arena offset of the payload */
} slot_t;

typedef struct {
    uint32_t count;
    uint32_t cap;
    uint32_t hcap;                  /* power of two, >= 2 * cap */
    uint32_t pad;
    uint64_t slots;
    uint64_t index;                 /* uint32_t[hcap]: slot + 1, 0 empty */
    uint64_t bytes;                 /* key + envelope bytes of all slots */
} map_t;

/* seq, events, the map counts, live and repairs change under the lock but
 * mod_status reads them without it (ptm_store_stats): aligned words, so a
 * load sees the value before or after a change, never half of one. */
typedef struct {
    uint32_t magic;
    uint32_t version;
    uint64_t size;
    uint64_t seq[2];
    uint64_t events[2];
    uint64_t run_gen;
    uint32_t run_active;
    uint32_t run_obj_len;
    uint32_t run_id_len;
    uint32_t run_dir_len;
    uint64_t run_blob;
    map_t map[2];
    uint64_t arena;
    uint64_t arena_size;
    uint64_t top;                   /* first free byte of the arena */
    uint64_t live;                  /* bytes of owned blobs, headers too */
    /* Set while a mutation is under way.  Whoever finds it set (the next
     * lock holder after a child died mid-update, or the next start after
     * a crash) rebuilds the state from what still checks out. */
    uint32_t writing;
    uint32_t pending_stream;
    uint64_t pending_seq;           /* the seq a pending append may carry */
    uint64_t repairs;
    /* Counted without the lock (atomic adds): mod_status only reads them. */
    uint64_t write_errors;
    uint64_t answers[PTM_STORE_NSTATUS];
    /* Layout 4.  New fields go after the old ones, so that a later
     * version can still read a state of this one (ptm_repair.c). */
    uint64_t epoch;                 /* when this state was first made (us) */
    /* Layout 5: event ids <epoch>-<n> and the recent-events ring. */
    uint64_t next_n;                /* n of the next accepted event */
    uint64_t ring;                  /* offset of the ring region */
    uint64_t ring_size;             /* its bytes (8-aligned); 0: off */
    uint64_t ring_head;             /* ring offset of the oldest record */
    uint64_t ring_tail;             /* ring offset of the next record */
    uint64_t ring_count;            /* records held */
    uint64_t ring_bytes;            /* bytes they take, headers too */
    uint64_t ring_first_n;          /* n of the oldest held */
    /* Layout 6: forwarding (SPEC §12.5, ptm_store_fwd.c).  Written by the
     * one forwarder without the lock (aligned words, atomic stores and
     * adds), read without it by server-status. */
    uint64_t fwd_next_n;            /* n of the next event to hand over;
                                     * 0: never forwarded */
    uint64_t fwd_forwarded;         /* lines fully written to the pipe */
    uint64_t fwd_dropped;           /* events that left the ring first */
    uint64_t fwd_repeats;           /* lines written again (rewinds) */
    /* Layout 7: the view's generation, a sequence lock (ptm_seqlock.h).
     * Odd while a lock holder changes the current view, the run or
     * anything they point to (the arena: compaction moves them all), and
     * next_n with them; readers copy without the lock and keep the copy
     * only if it did not move (ptm_view_read).  A new layout because
     * code that does not bump it (an older module's children during a
     * graceful restart) must never share a segment with readers that
     * trust it. */
    uint64_t view_gen;
    /* Counted without the lock, for server-status: optimistic copies
     * that had to be made again, and reads that took the lock after
     * PTM_VIEW_TRIES of them. */
    uint64_t view_retries;
    uint64_t view_locked;
} hdr_t;

/* A record of the ring: [rec_t][type key][file line], 8-aligned.  `len`
 * 0 marks the unused end of the region where the records wrap round. */
typedef struct {
    uint32_t len;                   /* bytes of the record, all of it */
    uint32_t check;                 /* FNV-1a of the rest (torn writes) */
    uint64_t n;
    int64_t accepted;
    int64_t ts;
    uint64_t seq;
    uint32_t tie;
    uint32_t flags;                 /* stream | REC_STORED */
    uint32_t type_len;
    uint32_t line_len;
} rec_t;

#define REC_STORED 2u

typedef struct {
    uint32_t len;                   /* payload bytes */
    uint32_t owner;                 /* OWNER_*, or 2 + 2 * slot + stream */
} blob_t;

struct ptm_store_t {
    char *base;
    hdr_t *hdr;
    uint64_t size;          /* of the mapping, as it was when attached:
                             * readers without the lock bound every
                             * offset by it, never by the header's */
    apr_global_mutex_t *mutex;
    uint64_t id;            /* unique among this process's handles */
    /* This process's open stream files, used under the lock only. */
    ptm_ndjson_file_t files[2];
    /* Group commit's board (ptm_sync.h), or NULL: Sync On then flushes
     * each line under the lock. */
    ptm_sync_t *sync;
    /* This process's summary of the ring (ptm_ring.c), used under the
     * lock only; NULL until GET /events first asks.  Freed with `pool`,
     * the pool the handle was attached in. */
    struct ptm_ring_idx_t *ridx;
    apr_pool_t *pool;
    /* The front lock (ptm_lock.h), or NULL: the global mutex alone. */
    ptm_lock_t *lock;
};

#define BLOB_TOTAL(len) (sizeof(blob_t) + ALIGN8((uint64_t)(len)))

static inline char *arena(ptm_store_t *st)
{
    return st->base + st->hdr->arena;
}

static inline slot_t *slots(ptm_store_t *st, int s)
{
    return (slot_t *)(st->base + st->hdr->map[s].slots);
}

static inline uint32_t *index_of(ptm_store_t *st, int s)
{
    return (uint32_t *)(st->base + st->hdr->map[s].index);
}

static inline blob_t *blob_hdr(ptm_store_t *st, uint64_t payload)
{
    return (blob_t *)(arena(st) + payload - sizeof(blob_t));
}

static inline uint32_t ptm_view_hash(const char *k, size_t n)
{
    return ptm_fnv32(PTM_FNV32_START, k, n);
}

/* ---- layout ------------------------------------------------------------- */

/* ---- ptm_store.c ---------------------------------------------------------- */

/** Take the lock, repairing a state left mid-update.  Returns the mutex's
 * error or the repair's. */
apr_status_t ptm_store_lock(ptm_store_t *st);

/** ptm_store_lock if the lock is free at once; else APR_EBUSY (test with
 * APR_STATUS_IS_EBUSY) without waiting. */
apr_status_t ptm_store_trylock(ptm_store_t *st);
void ptm_store_unlock(ptm_store_t *st);

/* Bracket every change to the segment: a process killed in between leaves
 * `writing` set, with the seq its append may have used. */
void ptm_store_begin_locked(hdr_t *h, int stream, uint64_t seq);
void ptm_store_end_locked(hdr_t *h);

/* ---- ptm_view.c: reads without the lock -------------------------------- */

/* Optimistic copies tried before a reader takes the lock. */
#define PTM_VIEW_TRIES 8

/* A copy that does not check out (torn, or the state is damaged): never
 * leaves ptm_view_read, which makes the copy again or, under the lock,
 * answers PTM_STORE_DAMAGED. */
#define PTM_VIEW_TORN (APR_OS_START_USERERR + 40)

/* Copies what a reader needs out of the segment into `ctx`, starting
 * afresh each call (it may be called again).  Every offset and length
 * read from the segment is bounded before use (ptm_view_at).  Returns
 * APR_SUCCESS, PTM_VIEW_TORN, or an answer of its own (NOTFOUND...). */
typedef apr_status_t (*ptm_view_read_fn)(ptm_store_t *st, void *ctx);

/**
 * Run `fn` without the lock until a run is not overlapped by a change
 * (the view generation even and unchanged around it), at most
 * PTM_VIEW_TRIES times; then under the lock (taken with trylock when
 * `wait` is 0: APR_EBUSY if it is held).  Returns fn's answer,
 * PTM_STORE_DAMAGED when even under the lock it does not check out, or
 * the lock's error.
 */
apr_status_t ptm_view_read(ptm_store_t *st, ptm_view_read_fn fn, void *ctx,
                           int wait);

/* Where `n` bytes at segment offset `off` are, if they lie inside the
 * segment past its header (and `off` is 8-aligned when `align`); else
 * NULL. */
static inline const char *ptm_view_at(const ptm_store_t *st, uint64_t off,
                                      uint64_t n, int align)
{
    if (off < sizeof(hdr_t) || off > st->size || n > st->size - off
        || (align && off % 8)) {
        return NULL;
    }
    return st->base + off;
}

/* Where the `n` payload bytes at arena offset `payload` are, read
 * without the lock (the arena's place bounded too); else NULL. */
const char *ptm_view_payload(const ptm_store_t *st, uint64_t payload,
                             uint64_t n);

/* The run's object, id and directory, back to back, copied into `out`
 * (after what it holds) without the lock as ptm_view_read does, with
 * their lengths.  PTM_STORE_NORUN when no run is active. */
apr_status_t ptm_store_run_read(ptm_store_t *st, ptm_buf_t *out,
                                size_t *obj_len, size_t *id_len,
                                size_t *dir_len, int wait);

/* ---- ptm_arena.c ---------------------------------------------------------- */

void ptm_arena_compact_locked(ptm_store_t *st);
apr_status_t ptm_arena_fits_locked(ptm_store_t *st, uint64_t len,
                                   uint64_t freed);
void ptm_arena_make_room_locked(ptm_store_t *st, uint64_t len);
apr_status_t ptm_arena_reserve_locked(ptm_store_t *st, uint64_t len);
uint64_t ptm_arena_claim_locked(ptm_store_t *st, uint64_t len,
                                uint32_t owner);
void ptm_arena_release_locked(ptm_store_t *st, uint64_t payload);

/* ---- ptm_view.c ----------------------------------------------------------- */

int ptm_view_find_locked(ptm_store_t *st, int s, const char *key,
                         size_t len, uint32_t h);
void ptm_view_clear_locked(ptm_store_t *st, int s);
char *ptm_view_append_locked(ptm_store_t *st, int s, uint32_t hash,
                             uint64_t key_len, uint64_t env_len);
void ptm_view_own_locked(ptm_store_t *st, int s, uint32_t slot);

/* ---- ptm_ring.c ----------------------------------------------------------- */

/* The check of a record (FNV-1a of what follows the field): a torn write
 * does not pass it.  Tests that plant a state make theirs right with it. */
uint32_t ptm_ring_check(const rec_t *r);

/* Hold a new event in the ring (inside the writing mark), dropping the
 * oldest to make room; an event bigger than the whole ring empties it
 * (the ring always holds every event from its oldest on).  The line is
 * the `niov` pieces of `iov`, its newline excluded. */
void ptm_ring_append_locked(ptm_store_t *st, const rec_t *r,
                            const char *type, const struct iovec *iov,
                            int niov);

/* When the oldest event held was accepted; 0 when none is. */
apr_time_t ptm_ring_oldest_locked(ptm_store_t *st);

/* Free this handle's summary of the ring (a cleanup of its pool, from
 * the summary's making on). */
apr_status_t ptm_ring_index_free(void *st);

/* Copy into the fresh ring of `h` (at `base`) the newest records of the
 * ring of `o` (of `size` bytes really there, header read up to
 * `hdr_size`) that check out and fit, and the id counter.  Returns how
 * many were dropped for not checking out (1 for a whole ring). */
unsigned ptm_ring_copy(char *base, hdr_t *h, const char *obase,
                       const hdr_t *o, uint64_t hdr_size, uint64_t size);

/* ---- ptm_store_fwd.c ------------------------------------------------------ */

/* Carry the forwarding position and counters of the old header `o` (read
 * up to `hdr_size`: none before layout 6) into `h`, whose id counter is
 * already set (ptm_ring_copy): a position past it is clamped.  Returns 1
 * if something did not check out, else 0. */
unsigned ptm_store_fwd_copy(hdr_t *h, const hdr_t *o, uint64_t hdr_size);

/* ---- ptm_repair.c --------------------------------------------------------- */

/* Fill the freshly formatted state of `st` from the old state `src` (of
 * `src_size` bytes really there; torn, of another size or an older
 * layout, or crafted): returns how many things did not check out and were
 * dropped. */
unsigned ptm_repair_copy(ptm_store_t *st, const hdr_t *src,
                         uint64_t src_size);

/* Rebuild the state of `st` (`size` bytes, the mapping's real size) in
 * place from what checks out in it; `count` it as a repair after a crash.
 * Returns APR_ENOMEM or APR_SUCCESS with `*lost`. */
apr_status_t ptm_repair_rebuild(unsigned *lost, ptm_store_t *st,
                                uint64_t size, int count);

/* ptm_repair_rebuild after a process died mid-update (the mark is set). */
apr_status_t ptm_repair_locked(ptm_store_t *st);

#endif

/* The shared state; see ptm_store.h for the design.
 *
 * Segment layout (all offsets from the segment base, all 8-byte aligned):
 *   hdr_t | site slots | site index | run slots | run index | arena
 * A map keeps its types in insertion order in `slots` (what /current
 * prints) and finds them through `index`, an open-addressing table of
 * slot numbers.  Types are never removed one by one, only all at once when
 * a run starts or stops, so neither table needs tombstones. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <apr_strings.h>
#include "ptm_store.h"
#include "ptm_ndjson.h"

#define MAGIC 0x314d5450u           /* "PTM1" */
#define LAYOUT_VERSION 3u
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
} hdr_t;

typedef struct {
    uint32_t len;                   /* payload bytes */
    uint32_t owner;                 /* OWNER_*, or 2 + 2 * slot + stream */
} blob_t;

struct ptm_store_t {
    char *base;
    hdr_t *hdr;
    apr_global_mutex_t *mutex;
    uint64_t id;            /* unique among this process's handles */
    /* This process's open stream files, used under the lock only. */
    ptm_ndjson_file_t files[2];
};

#define BLOB_TOTAL(len) (sizeof(blob_t) + ALIGN8((uint64_t)(len)))

static char *arena(ptm_store_t *st)
{
    return st->base + st->hdr->arena;
}

static slot_t *slots(ptm_store_t *st, int s)
{
    return (slot_t *)(st->base + st->hdr->map[s].slots);
}

static uint32_t *index_of(ptm_store_t *st, int s)
{
    return (uint32_t *)(st->base + st->hdr->map[s].index);
}

static blob_t *blob_hdr(ptm_store_t *st, uint64_t payload)
{
    return (blob_t *)(arena(st) + payload - sizeof(blob_t));
}

static uint32_t hash_key(const char *k, size_t n)
{
    uint32_t h = 2166136261u;       /* FNV-1a */

    while (n--) {
        h = (h ^ (unsigned char)*k++) * 16777619u;
    }
    return h;
}

/* ---- layout ------------------------------------------------------------- */

void ptm_store_format(void *base, apr_size_t size)
{
    hdr_t *h = base;
    uint64_t off;
    uint32_t cap, hcap;
    int s;

    memset(h, 0, sizeof(*h));
    /* About one type slot per 2 KiB per stream: the arena is the limit
     * that matters; this only bounds the tables. */
    cap = (uint32_t)(size / 2048);
    if (cap < 16) {
        cap = 16;
    }
    for (hcap = 32; hcap < 2 * cap; hcap *= 2) {
    }
    off = ALIGN8(sizeof(*h));
    for (s = 0; s < 2; s++) {
        h->map[s].cap = cap;
        h->map[s].hcap = hcap;
        h->map[s].slots = off;
        off += ALIGN8((uint64_t)cap * sizeof(slot_t));
        h->map[s].index = off;
        memset((char *)base + off, 0, (size_t)hcap * sizeof(uint32_t));
        off += ALIGN8((uint64_t)hcap * sizeof(uint32_t));
    }
    h->arena = off;
    h->arena_size = size > off ? size - off : 0;
    h->size = size;
    /* run_gen only ever grows in a segment; starting it from the clock
     * (and a counter) keeps a remembered generation of an earlier format
     * from matching this one (ptm_store_run_seen). */
    {
        static uint32_t formats;

        h->run_gen = ((uint64_t)apr_time_now() << 12)
                     + (__atomic_add_fetch(&formats, 1, __ATOMIC_RELAXED)
                        & 0xfff);
    }
    h->version = LAYOUT_VERSION;
    h->magic = MAGIC;
}

int ptm_store_is_formatted(const void *base, apr_size_t size)
{
    const hdr_t *h = base;

    return h->magic == MAGIC && h->version == LAYOUT_VERSION
           && h->size == size;
}

void ptm_store_close_files(ptm_store_t *st)
{
    ptm_ndjson_file_close(&st->files[0]);
    ptm_ndjson_file_close(&st->files[1]);
}

ptm_store_t *ptm_store_attach(void *base, apr_global_mutex_t *mutex,
                              apr_pool_t *p)
{
    static uint64_t handles;
    ptm_store_t *st = apr_pcalloc(p, sizeof(*st));

    st->base = base;
    st->hdr = base;
    st->mutex = mutex;
    st->id = __atomic_add_fetch(&handles, 1, __ATOMIC_RELAXED);
    ptm_ndjson_file_init(&st->files[0]);
    ptm_ndjson_file_init(&st->files[1]);
    return st;
}

static apr_status_t repair_locked(ptm_store_t *st);

static apr_status_t lock(ptm_store_t *st)
{
    apr_status_t rv;

    if (st->mutex && (rv = apr_global_mutex_lock(st->mutex)) != APR_SUCCESS) {
        return rv;
    }
    if (st->hdr->writing && (rv = repair_locked(st)) != APR_SUCCESS) {
        if (st->mutex) {
            apr_global_mutex_unlock(st->mutex);
        }
        return rv;
    }
    return APR_SUCCESS;
}

/* Bracket every change to the segment.  The stores are ordered so that a
 * process killed anywhere in between leaves `writing` set. */
static void begin_locked(hdr_t *h, int stream, uint64_t seq)
{
    h->pending_stream = (uint32_t)stream;
    h->pending_seq = seq;
    __atomic_store_n(&h->writing, 1, __ATOMIC_SEQ_CST);
}

static void end_locked(hdr_t *h)
{
    __atomic_store_n(&h->writing, 0, __ATOMIC_SEQ_CST);
}

static void unlock(ptm_store_t *st)
{
    if (st->mutex) {
        apr_global_mutex_unlock(st->mutex);
    }
}

/* ---- arena -------------------------------------------------------------- */

/* Slide every owned blob down over the free ones and fix its owner's
 * offset: O(arena) memmoves, only when the arena's tail is used up. */
static void compact_locked(ptm_store_t *st)
{
    hdr_t *h = st->hdr;
    char *a = arena(st);
    uint64_t off = 0, dst = 0;

    while (off < h->top) {
        blob_t *b = (blob_t *)(a + off);
        uint64_t total = BLOB_TOTAL(b->len);
        uint32_t owner = b->owner;

        if (owner != OWNER_FREE) {
            uint64_t payload = dst + sizeof(blob_t);

            if (dst != off) {
                memmove(a + dst, a + off, (size_t)total);
            }
            if (owner == OWNER_RUN) {
                h->run_blob = payload;
            }
            else {
                slots(st, (int)((owner - 2) & 1))[(owner - 2) / 2].blob =
                    payload;
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
static apr_status_t fits_locked(ptm_store_t *st, uint64_t len,
                                uint64_t freed)
{
    hdr_t *h = st->hdr;

    if (len > UINT32_MAX
        || h->live - freed + BLOB_TOTAL(len) > h->arena_size) {
        return PTM_STORE_FULL;
    }
    return APR_SUCCESS;
}

/* Compact if a blob of `len` bytes (known to fit) is not free at `top`;
 * changes nothing visible. */
static void make_room_locked(ptm_store_t *st, uint64_t len)
{
    hdr_t *h = st->hdr;

    if (h->top + BLOB_TOTAL(len) > h->arena_size) {
        compact_locked(st);
    }
}

/* Make sure a blob of `len` bytes fits at `top`; changes nothing visible.
 * Returns PTM_STORE_FULL when even a compacted arena is too small. */
static apr_status_t reserve_locked(ptm_store_t *st, uint64_t len)
{
    apr_status_t rv = fits_locked(st, len, 0);

    if (rv == APR_SUCCESS) {
        make_room_locked(st, len);
    }
    return rv;
}

/* Take the reserved space at `top`; returns the payload offset. */
static uint64_t claim_locked(ptm_store_t *st, uint64_t len, uint32_t owner)
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

static void release_locked(ptm_store_t *st, uint64_t payload)
{
    blob_t *b = blob_hdr(st, payload);

    st->hdr->live -= BLOB_TOTAL(b->len);
    b->owner = OWNER_FREE;
}

/* ---- maps --------------------------------------------------------------- */

static int map_find_locked(ptm_store_t *st, int s, const char *key,
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

static void map_index_locked(ptm_store_t *st, int s, uint32_t slot)
{
    map_t *m = &st->hdr->map[s];
    uint32_t *ix = index_of(st, s);
    uint32_t i = slots(st, s)[slot].hash & (m->hcap - 1);

    while (ix[i]) {
        i = (i + 1) & (m->hcap - 1);
    }
    ix[i] = slot + 1;
}

static void map_clear_locked(ptm_store_t *st, int s)
{
    map_t *m = &st->hdr->map[s];
    slot_t *sl = slots(st, s);
    uint32_t i;

    for (i = 0; i < m->count; i++) {
        release_locked(st, sl[i].blob);
    }
    m->count = 0;
    m->bytes = 0;
    memset(index_of(st, s), 0, (size_t)m->hcap * sizeof(uint32_t));
}

/* ---- repair, resize, files ------------------------------------------------ */

/* The payload at `payload` in the snapshot `src` if a blob of `len` bytes
 * owned by `owner` really is there; NULL otherwise.  Everything is checked
 * against the snapshot's own bounds: it may be torn. */
static const char *src_payload(const hdr_t *src, uint64_t payload,
                               uint64_t len, uint32_t owner)
{
    const blob_t *b;

    if (src->arena > src->size || src->arena_size > src->size - src->arena
        || src->top > src->arena_size || payload < sizeof(blob_t)
        || (payload - sizeof(blob_t)) % 8 || payload > src->top
        || len > src->top - payload) {
        return NULL;
    }
    b = (const blob_t *)((const char *)src + src->arena + payload
                         - sizeof(blob_t));
    if (b->len != len || b->owner != owner) {
        return NULL;
    }
    return (const char *)src + src->arena + payload;
}

/* A value's blob is claimed unowned and handed to its slot only once all
 * of its bytes are in place: a process killed in the middle of the copy
 * leaves a blob that a repair drops (src_payload checks the owner), not a
 * torn envelope that it would keep and /current would serve. */
static void own_locked(ptm_store_t *st, int s, uint32_t slot)
{
    blob_t *b = blob_hdr(st, slots(st, s)[slot].blob);

    __atomic_store_n(&b->owner, 2u + 2u * slot + (uint32_t)s,
                     __ATOMIC_RELEASE);
}

/* Append a new type to map `s`; the caller has checked there is a free
 * slot and that `key_len + env_len` bytes fit.  Returns where the payload
 * goes (key, then envelope); the caller fills it, then calls own_locked. */
static char *map_append_locked(ptm_store_t *st, int s, uint32_t hash,
                               uint64_t key_len, uint64_t env_len)
{
    map_t *m = &st->hdr->map[s];
    uint32_t slot = m->count++;
    slot_t *sl = &slots(st, s)[slot];

    make_room_locked(st, key_len + env_len);
    sl->blob = claim_locked(st, key_len + env_len, OWNER_FREE);
    sl->hash = hash;
    sl->key_len = (uint32_t)key_len;
    sl->env_len = (uint32_t)env_len;
    m->bytes += key_len + env_len;
    map_index_locked(st, s, slot);
    return arena(st) + sl->blob;
}

/* Fill the freshly formatted state of `st` from the snapshot `src` (a
 * torn state, or one of another size): counters, the run and every
 * current value that still checks out, in their order.  Returns how many
 * things were dropped. */
static unsigned copy_state(ptm_store_t *st, const hdr_t *src)
{
    hdr_t *h = st->hdr;
    unsigned lost = 0;
    uint32_t i;
    int s;

    for (s = 0; s < 2; s++) {
        h->seq[s] = src->seq[s];
        h->events[s] = src->events[s];
    }
    /* An append may have reached the file before the counter moved: that
     * number is never given out again (a gap, not a duplicate). */
    if (src->writing && src->pending_stream < 2
        && src->pending_seq > h->seq[src->pending_stream]) {
        h->seq[src->pending_stream] = src->pending_seq;
    }
    h->run_gen = src->run_gen + 1;
    h->repairs = src->repairs;
    if (src->run_active) {
        uint64_t len = (uint64_t)src->run_obj_len + src->run_id_len
                       + src->run_dir_len;
        const char *p = src_payload(src, src->run_blob, len, OWNER_RUN);

        if (p && reserve_locked(st, len) == APR_SUCCESS) {
            h->run_blob = claim_locked(st, len, OWNER_RUN);
            memcpy(arena(st) + h->run_blob, p, (size_t)len);
            h->run_obj_len = src->run_obj_len;
            h->run_id_len = src->run_id_len;
            h->run_dir_len = src->run_dir_len;
            h->run_active = 1;
        }
        else {
            lost++;
        }
    }
    for (s = 0; s < 2; s++) {
        const map_t *m = &src->map[s];
        const slot_t *x = (const slot_t *)((const char *)src + m->slots);

        if (m->slots > src->size
            || (uint64_t)m->cap * sizeof(slot_t) > src->size - m->slots) {
            lost++;
            continue;
        }
        /* Run values only with their run: a start or stop cut short
         * leaves some behind with none active (or the run was lost). */
        if (s == PTM_STREAM_RUN && !h->run_active) {
            lost += m->count ? 1 : 0;
            continue;
        }
        for (i = 0; i < m->count && i < m->cap; i++) {
            uint64_t len = (uint64_t)x[i].key_len + x[i].env_len;
            const char *p = src_payload(src, x[i].blob, len,
                                        2u + 2u * i + (uint32_t)s);

            if (!p || x[i].key_len < 2 || p[0] != '"' || x[i].env_len < 8
                || memcmp(p + x[i].key_len, "{\"seq\":", 7) != 0
                || h->map[s].count == h->map[s].cap
                || fits_locked(st, len, 0) != APR_SUCCESS) {
                lost++;
                continue;
            }
            memcpy(map_append_locked(st, s, hash_key(p, x[i].key_len),
                                     x[i].key_len, x[i].env_len),
                   p, (size_t)len);
            own_locked(st, s, h->map[s].count - 1);
        }
    }
    return lost;
}

/* Rebuild a torn state.  The new state is built aside and copied over the
 * old one body first, header last, with `writing` still set: a repairer
 * killed half-way leaves the old header (its counters and pending seq) and
 * a body the next repair checks value by value again. */
static apr_status_t repair_locked(ptm_store_t *st)
{
    apr_size_t size = (apr_size_t)st->hdr->size;
    /* calloc: the unused parts are copied back too, and should be zeros
     * rather than whatever the heap held. */
    char *fresh = calloc(1, size);
    ptm_store_t aside;
    hdr_t *h;

    if (!fresh) {
        return APR_ENOMEM;
    }
    ptm_store_format(fresh, size);
    aside.base = fresh;
    aside.hdr = (hdr_t *)fresh;
    aside.mutex = NULL;
    copy_state(&aside, st->hdr);
    h = aside.hdr;
    h->repairs++;
    h->writing = 1;
    memcpy(st->base + sizeof(hdr_t), fresh + sizeof(hdr_t),
           size - sizeof(hdr_t));
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    memcpy(st->base, fresh, sizeof(hdr_t));
    end_locked(st->hdr);
    free(fresh);
    return APR_SUCCESS;
}

uint64_t ptm_store_repairs(ptm_store_t *st)
{
    return st->hdr->repairs;
}

apr_status_t ptm_store_open_file(void **base, int *fd_out,
                                 ptm_store_open_e *how, const char *path,
                                 apr_size_t size, apr_pool_t *p)
{
    struct stat sb;
    hdr_t *old = NULL;
    void *map;
    int fd, err;
    ptm_store_t *st;

    *how = PTM_STORE_OPEN_NEW;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    /* One httpd per state: a second one would bring its own mutex. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        err = errno == EWOULDBLOCK ? EBUSY : errno;
        goto fail;
    }
    if (fstat(fd, &sb) != 0) {
        err = errno;
        goto fail;
    }
    if (sb.st_size >= (off_t)sizeof(hdr_t) && (apr_size_t)sb.st_size != size) {
        /* Another StateSize: keep what was there, in the new size. */
        old = malloc((size_t)sb.st_size);
        if (!old || pread(fd, old, (size_t)sb.st_size, 0) != sb.st_size
            || !ptm_store_is_formatted(old, (apr_size_t)sb.st_size)) {
            free(old);
            old = NULL;
        }
        if (ftruncate(fd, 0) != 0) {
            err = errno;
            goto fail;
        }
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        err = errno;
        goto fail;
    }
    map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        err = errno;
        goto fail;
    }
    st = ptm_store_attach(map, NULL, p);
    if (old) {
        ptm_store_format(map, size);
        copy_state(st, old);
        free(old);
        *how = PTM_STORE_OPEN_RESIZED;
    }
    else if (ptm_store_is_formatted(map, size)) {
        *how = PTM_STORE_OPEN_RECOVERED;
        if (st->hdr->writing) {
            repair_locked(st);
        }
    }
    else {
        if (sb.st_size > 0) {
            *how = PTM_STORE_OPEN_UNRECOGNISED;
        }
        ptm_store_format(map, size);
    }
    *base = map;
    *fd_out = fd;
    return APR_SUCCESS;

fail:
    free(old);
    close(fd);
    return APR_FROM_OS_ERROR(err);
}

apr_status_t ptm_store_reconcile(ptm_store_t *st, const char *site_dir,
                                 apr_pool_t *p)
{
    hdr_t *h = st->hdr;
    uint64_t site = 0, run = 0, n;
    const char *run_file = NULL;
    struct dirent *de;
    apr_status_t rv;
    DIR *d;

    if ((rv = lock(st)) != APR_SUCCESS) {
        return rv;
    }
    if (h->run_active) {
        run_file = apr_pstrcat(p, apr_pstrmemdup(p, arena(st) + h->run_blob
                                                 + h->run_obj_len
                                                 + h->run_id_len,
                                                 h->run_dir_len),
                               "/telemetry.ndjson", NULL);
    }
    unlock(st);

    /* File I/O without the lock: this runs before any child exists. */
    d = opendir(site_dir);
    if (!d) {
        return APR_FROM_OS_ERROR(errno);
    }
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);

        if (len > 12 && strncmp(de->d_name, "site_", 5) == 0
            && strcmp(de->d_name + len - 7, ".ndjson") == 0
            && ptm_ndjson_last_seq(&n, apr_pstrcat(p, site_dir, "/",
                                                   de->d_name, NULL))
               == APR_SUCCESS
            && n > site) {
            site = n;
        }
    }
    closedir(d);
    if (run_file && ptm_ndjson_last_seq(&run, run_file) != APR_SUCCESS) {
        run = 0;
    }

    if ((rv = lock(st)) != APR_SUCCESS) {
        return rv;
    }
    if (site > h->seq[PTM_STREAM_SITE]) {
        h->seq[PTM_STREAM_SITE] = site;
    }
    if (run > h->seq[PTM_STREAM_RUN]) {
        h->seq[PTM_STREAM_RUN] = run;
    }
    unlock(st);
    return APR_SUCCESS;
}

/* ---- runs --------------------------------------------------------------- */

apr_status_t ptm_store_run_peek(ptm_store_run_t *run, ptm_store_t *st,
                                apr_pool_t *p)
{
    hdr_t *h = st->hdr;
    apr_status_t rv;
    char *id = NULL, *dir = NULL;

    if ((rv = lock(st)) != APR_SUCCESS) {
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
    unlock(st);
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

    if ((rv = lock(st)) != APR_SUCCESS) {
        return rv;
    }
    if (h->run_active) {
        rv = PTM_STORE_BUSY;
        goto out;
    }
    /* Room first, then the directory: a 507 must leave nothing behind. */
    if ((rv = reserve_locked(st, len)) != APR_SUCCESS) {
        goto out;
    }
    if (prepare && (rv = prepare(ctx, &floor)) != APR_SUCCESS) {
        goto out;
    }
    begin_locked(h, PTM_STREAM_RUN, 0);
    /* A reused run directory may hold numbers this state never gave out
     * (the state was lost or is older): never repeat one in that file. */
    if (floor > h->seq[PTM_STREAM_RUN]) {
        h->seq[PTM_STREAM_RUN] = floor;
    }
    map_clear_locked(st, PTM_STREAM_RUN);
    /* Clearing may have freed blobs but `top` is unchanged, so the space
     * reserved above is still there. */
    off = claim_locked(st, len, OWNER_RUN);
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
    end_locked(h);
out:
    unlock(st);
    return rv;
}

apr_status_t ptm_store_run_stop(ptm_store_t *st, ptm_buf_t *out)
{
    hdr_t *h = st->hdr;
    apr_status_t rv;

    if ((rv = lock(st)) != APR_SUCCESS) {
        return rv;
    }
    if (!h->run_active) {
        unlock(st);
        return PTM_STORE_NORUN;
    }
    ptm_buf_add(out, arena(st) + h->run_blob, h->run_obj_len);
    begin_locked(h, PTM_STREAM_RUN, 0);
    h->run_active = 0;
    release_locked(st, h->run_blob);
    map_clear_locked(st, PTM_STREAM_RUN);
    h->run_blob = 0;
    h->run_obj_len = h->run_id_len = h->run_dir_len = 0;
    __atomic_add_fetch(&h->run_gen, 1, __ATOMIC_RELEASE);
    end_locked(h);
    unlock(st);
    return APR_SUCCESS;
}

apr_status_t ptm_store_run_get(ptm_store_t *st, ptm_buf_t *out)
{
    hdr_t *h = st->hdr;
    apr_status_t rv;

    if ((rv = lock(st)) != APR_SUCCESS) {
        return rv;
    }
    rv = PTM_STORE_NORUN;
    if (h->run_active) {
        ptm_buf_add(out, arena(st) + h->run_blob, h->run_obj_len);
        rv = APR_SUCCESS;
    }
    unlock(st);
    return rv;
}

/* ---- events ------------------------------------------------------------- */

apr_status_t ptm_store_event(ptm_store_t *st, const ptm_store_event_t *ev,
                             uint64_t *seq)
{
    static const char *const stream_part[2] = {
        ",\"stream\":\"site\"", ",\"stream\":\"run\""
    };
    hdr_t *h = st->hdr;
    map_t *m = &h->map[ev->stream];
    char head[32];
    size_t head_len;
    uint64_t n, payload_len = 0, freed = 0;
    uint32_t hash = 0;
    int slot = -1;
    apr_status_t rv;

    if ((rv = lock(st)) != APR_SUCCESS) {
        return rv;
    }
    if (h->run_gen != ev->run_gen) {
        rv = PTM_STORE_STALE;
        goto out;
    }
    n = h->seq[ev->stream] + 1;
    memcpy(head, "{\"seq\":", 7);
    head_len = 7 + ptm_fmt_u64(head + 7, n);
    if (ev->make_current) {
        hash = hash_key(ev->key, ev->key_len);
        slot = map_find_locked(st, ev->stream, ev->key, ev->key_len, hash);
        if (slot < 0 && m->count == m->cap) {
            rv = PTM_STORE_FULL;
            goto out;
        }
        payload_len = ev->key_len + head_len + ev->ts_len + ev->body_len;
        /* The value this one replaces is released before the new one is
         * claimed, so only the difference has to fit.  Nothing moves
         * before the write: compaction waits until it has succeeded. */
        if (slot >= 0) {
            freed = BLOB_TOTAL(blob_hdr(st, slots(st, ev->stream)[slot].blob)
                               ->len);
        }
        if ((rv = fits_locked(st, payload_len, freed)) != APR_SUCCESS) {
            goto out;
        }
    }
    /* From here a death leaves `writing` set, and the repair skips seq
     * `n`: it may already be in the file. */
    begin_locked(h, ev->stream, n);
    if (ev->fd >= 0 || ev->path) {
        struct iovec iov[5];
        const char *step = "write";

        iov[0].iov_base = head;
        iov[0].iov_len = head_len;
        iov[1].iov_base = (void *)ev->ts_part;
        iov[1].iov_len = ev->ts_len;
        iov[2].iov_base = (void *)stream_part[ev->stream];
        iov[2].iov_len = strlen(stream_part[ev->stream]);
        iov[3].iov_base = (void *)ev->body_part;
        iov[3].iov_len = ev->body_len;
        iov[4].iov_base = "\n";
        iov[4].iov_len = 1;
        rv = ev->fd >= 0
             ? ptm_ndjson_append(ev->fd, iov, 5, ev->sync)
             : ptm_ndjson_file_append(&st->files[ev->stream], ev->path, iov,
                                      5, ev->sync, &step, ev->pool);
        if (rv != APR_SUCCESS) {
            end_locked(h);              /* the append left nothing behind */
            if (ev->failed_step) {
                *ev->failed_step = step;
            }
            if (ev->fd >= 0 && APR_STATUS_IS_ENOENT(rv)) {
                rv = PTM_STORE_STALE;   /* deleted since it was opened */
            }
            goto out;
        }
    }
    /* The line is on disk: from here on nothing can fail. */
    h->seq[ev->stream] = n;
    h->events[ev->stream]++;
    if (ev->make_current) {
        char *b;

        if (slot < 0) {
            b = map_append_locked(st, ev->stream, hash, ev->key_len,
                                  payload_len - ev->key_len);
            slot = (int)m->count - 1;
        }
        else {
            slot_t *sl = &slots(st, ev->stream)[slot];

            m->bytes -= sl->key_len + sl->env_len;
            release_locked(st, sl->blob);
            make_room_locked(st, payload_len);
            sl->blob = claim_locked(st, payload_len, OWNER_FREE);
            sl->env_len = (uint32_t)(payload_len - ev->key_len);
            m->bytes += payload_len;
            b = arena(st) + sl->blob;
        }
        memcpy(b, ev->key, ev->key_len);
        b += ev->key_len;
        memcpy(b, head, head_len);
        memcpy(b + head_len, ev->ts_part, ev->ts_len);
        memcpy(b + head_len + ev->ts_len, ev->body_part, ev->body_len);
        own_locked(st, ev->stream, (uint32_t)slot);
    }
    end_locked(h);
    *seq = n;
out:
    if (rv != APR_SUCCESS && ev->fd >= 0 && ev->path) {
        /* A refused event leaves no trace, not even the empty file its
         * open created (nor one opened for a run that has ended since);
         * under the lock, so no writer is mid-append. */
        ptm_ndjson_discard_if_empty(ev->fd, ev->path);
    }
    unlock(st);
    return rv;
}

/* ---- reads -------------------------------------------------------------- */

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
    hdr_t *h = st->hdr;
    slot_t *site, *run;
    uint32_t i;
    int first = 1, j;
    apr_status_t rv;

    /* The answer is at most both maps plus punctuation: allocated before
     * the lock from sizes read without it (a guess: under the lock the
     * buffer only grows if the maps grew meanwhile). */
    ptm_buf_reserve(out, current_size(h) + 1024);
    if ((rv = lock(st)) != APR_SUCCESS) {
        return rv;
    }
    site = slots(st, PTM_STREAM_SITE);
    run = slots(st, PTM_STREAM_RUN);
    ptm_buf_reserve(out, current_size(h));
    ptm_buf_puts(out, "{\"current\":{");
    for (i = 0; i < h->map[PTM_STREAM_SITE].count; i++) {
        j = h->map[PTM_STREAM_RUN].count
            ? map_find_locked(st, PTM_STREAM_RUN,
                              arena(st) + site[i].blob, site[i].key_len,
                              site[i].hash)
            : -1;
        put_entry(st, out, &site[i], j >= 0 ? &run[j] : &site[i], &first);
    }
    for (i = 0; i < h->map[PTM_STREAM_RUN].count; i++) {
        if (map_find_locked(st, PTM_STREAM_SITE, arena(st) + run[i].blob,
                            run[i].key_len, run[i].hash) < 0) {
            put_entry(st, out, &run[i], &run[i], &first);
        }
    }
    ptm_buf_puts(out, "}}");
    unlock(st);
    return APR_SUCCESS;
}

apr_status_t ptm_store_current_one(ptm_store_t *st, const char *key,
                                   size_t key_len, ptm_buf_t *out)
{
    uint32_t hash = hash_key(key, key_len);
    apr_status_t rv;
    int s, i;

    if ((rv = lock(st)) != APR_SUCCESS) {
        return rv;
    }
    rv = PTM_STORE_NOTFOUND;
    for (s = PTM_STREAM_RUN; s >= PTM_STREAM_SITE; s--) {
        i = map_find_locked(st, s, key, key_len, hash);
        if (i >= 0) {
            slot_t *sl = &slots(st, s)[i];

            ptm_buf_add(out, arena(st) + sl->blob + sl->key_len, sl->env_len);
            rv = APR_SUCCESS;
            break;
        }
    }
    unlock(st);
    return rv;
}

static const int status_codes[PTM_STORE_NSTATUS] = {
    400, 404, 405, 409, 413, 422, 500, 503, 507
};

void ptm_store_count_answer(ptm_store_t *st, int status)
{
    int i;

    for (i = 0; i < PTM_STORE_NSTATUS; i++) {
        if (status_codes[i] == status) {
            __atomic_fetch_add(&st->hdr->answers[i], 1, __ATOMIC_RELAXED);
            return;
        }
    }
}

void ptm_store_count_write_error(ptm_store_t *st)
{
    __atomic_fetch_add(&st->hdr->write_errors, 1, __ATOMIC_RELAXED);
}

int ptm_store_status_code(int i)
{
    return i >= 0 && i < PTM_STORE_NSTATUS ? status_codes[i] : 0;
}

apr_status_t ptm_store_stats(ptm_store_t *st, ptm_store_stats_t *stats,
                             apr_pool_t *p)
{
    hdr_t *h = st->hdr;
    apr_status_t rv;
    int s;

    memset(stats, 0, sizeof(*stats));
    if ((rv = lock(st)) != APR_SUCCESS) {
        return rv;
    }
    for (s = 0; s < 2; s++) {
        stats->seq[s] = h->seq[s];
        stats->events[s] = h->events[s];
        stats->types[s] = h->map[s].count;
    }
    stats->bytes_used = h->arena + h->live;
    stats->bytes_total = h->size;
    stats->run_active = (int)h->run_active;
    if (h->run_active) {
        stats->run_obj = apr_pstrmemdup(p, arena(st) + h->run_blob,
                                        h->run_obj_len);
        stats->run_id = apr_pstrmemdup(p, arena(st) + h->run_blob
                                       + h->run_obj_len, h->run_id_len);
    }
    stats->repairs = h->repairs;
    stats->write_errors = __atomic_load_n(&h->write_errors, __ATOMIC_RELAXED);
    for (s = 0; s < PTM_STORE_NSTATUS; s++) {
        stats->answers[s] = __atomic_load_n(&h->answers[s], __ATOMIC_RELAXED);
    }
    unlock(st);
    return APR_SUCCESS;
}

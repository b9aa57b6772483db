/* The runs journal; see ptm_runs.h.
 *
 * Writing: one line per start or stop, appended with ptm_ndjson_append
 * (one write on an O_APPEND descriptor, so lines never interleave; undone
 * on a short write).  Starts are noted under the store lock, stops just
 * after it, so a stop may land after the next start: the reader knows.
 * Reading: the whole journal, bounded, each line parsed on its own; the
 * journal lives in a directory the User can write to, so nothing in it is
 * trusted beyond being a run that GET /events may look for, and the paths
 * it names are only ever opened beneath a configured root (ptm_history). */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <apr_strings.h>
#include <jansson.h>
#include "ptm_buf.h"
#include "ptm_hash.h"
#include "ptm_json.h"
#include "ptm_ndjson.h"
#include "ptm_runs.h"
#include "ptm_time.h"

/* A run every night for a century is a few MiB: a journal this big was
 * not written by us, and is refused rather than read into memory on every
 * GET /events. */
#ifndef PTM_RUNS_MAX
#define PTM_RUNS_MAX ((apr_off_t)64 * 1024 * 1024)
#endif

/* Append `line` (with its newline) to the journal of `site_dir`.
 * Write-only, so ptm_ndjson_append does not cut a partial last line: a
 * stop is noted after the store lock is released (ptm_api), so another
 * writer may be in the middle of its line; a fragment a killed writer
 * left is instead recovered from by the reader (take_glued).  Never
 * through a link planted at the name (ELOOP), never blocking on a FIFO
 * (ENXIO), and only into a regular file. */
static apr_status_t append_line(const char *site_dir, ptm_buf_t *line,
                                apr_pool_t *p)
{
    const char *path = apr_pstrcat(p, site_dir, "/", PTM_RUNS_FILE, NULL);
    struct iovec iov;
    struct stat st;
    apr_status_t rv;
    int fd;

    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC
                    | O_NONBLOCK, 0644);
    if (fd < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    if (fstat(fd, &st) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
    }
    else if (!S_ISREG(st.st_mode)) {
        rv = APR_FROM_OS_ERROR(EINVAL);
    }
    else {
        iov.iov_base = line->data;
        iov.iov_len = line->len;
        rv = ptm_ndjson_append(fd, &iov, 1, 0);
    }
    close(fd);
    return rv;
}

apr_off_t ptm_runs_size(const char *site_dir, apr_pool_t *p)
{
    const char *path = apr_pstrcat(p, site_dir, "/", PTM_RUNS_FILE, NULL);
    struct stat st;

    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        return -1;
    }
    return (apr_off_t)st.st_size;
}

apr_status_t ptm_runs_cut(const char *site_dir, apr_off_t size,
                          apr_pool_t *p)
{
    const char *path = apr_pstrcat(p, site_dir, "/", PTM_RUNS_FILE, NULL);
    apr_status_t rv = APR_SUCCESS;
    struct stat st;
    int fd;

    fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    /* Only shorter, and only a regular file: what it was before. */
    if (fstat(fd, &st) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
    }
    else if (S_ISREG(st.st_mode) && st.st_size > (size < 0 ? 0 : size)
             && ftruncate(fd, (off_t)(size < 0 ? 0 : size)) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
    }
    close(fd);
    if (rv == APR_SUCCESS && size < 0 && S_ISREG(st.st_mode)
        && unlink(path) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
    }
    return rv;
}

static void put_time(ptm_buf_t *b, apr_time_t t)
{
    char ts[PTM_TS_LEN + 1];

    ptm_time_utc_iso(ts, t);
    ptm_buf_putc(b, '"');
    ptm_buf_add(b, ts, PTM_TS_LEN);
    ptm_buf_putc(b, '"');
}

apr_status_t ptm_runs_note_start(const char *site_dir, const char *run_id,
                                 size_t run_id_len, const char *run_dir,
                                 apr_time_t start, apr_pool_t *p)
{
    ptm_buf_t b;

    ptm_buf_init(&b, p, 128 + run_id_len + strlen(run_dir));
    ptm_buf_puts(&b, "{\"run_id\":");
    ptm_json_dump_string(&b, run_id, run_id_len);
    ptm_buf_puts(&b, ",\"run_dir\":");
    ptm_json_dump_string(&b, run_dir, strlen(run_dir));
    ptm_buf_puts(&b, ",\"start\":");
    put_time(&b, start);
    ptm_buf_add(&b, "}\n", 2);
    return append_line(site_dir, &b, p);
}

apr_status_t ptm_runs_note_stop(const char *site_dir, const char *run_dir,
                                apr_time_t stop, apr_pool_t *p)
{
    ptm_buf_t b;

    ptm_buf_init(&b, p, 96 + strlen(run_dir));
    ptm_buf_puts(&b, "{\"run_dir\":");
    ptm_json_dump_string(&b, run_dir, strlen(run_dir));
    ptm_buf_puts(&b, ",\"stop\":");
    put_time(&b, stop);
    ptm_buf_add(&b, "}\n", 2);
    return append_line(site_dir, &b, p);
}

/* The string member `name` of `o` as a NUL-terminated copy, or NULL when
 * it is missing or not a string.  A NUL inside is refused with `no_nul`
 * (a path cannot hold one); otherwise the copy ends there (a run id may
 * hold one: it is only ever shown). */
static const char *get_str(const json_t *o, const char *name, int no_nul,
                           apr_pool_t *p)
{
    const json_t *v = json_object_get(o, name);
    const char *s;
    size_t n;

    if (!json_is_string(v)) {
        return NULL;
    }
    s = json_string_value(v);
    n = json_string_length(v);
    if (no_nul && memchr(s, '\0', n)) {
        return NULL;
    }
    return apr_pstrmemdup(p, s, n);
}

static int get_time(apr_time_t *t, const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);

    return json_is_string(v)
           && ptm_time_parse_rfc3339(t, json_string_value(v),
                                     json_string_length(v), 1) == 0;
}

/* Take one journal line into `runs`.  Returns 0, or -1 when it is not a
 * line we write (or names a relative directory). */
static int take_line(apr_array_header_t *runs, const char *s, size_t n,
                     apr_pool_t *p)
{
    ptm_json_error_t jerr;
    json_t *o = ptm_json_parse(s, n, &jerr);
    ptm_runs_entry_t *e, *last;
    const char *dir, *id;
    apr_time_t t;
    int rc = -1;

    if (!o || !json_is_object(o)) {
        goto out;
    }
    dir = get_str(o, "run_dir", 1, p);
    if (!dir || dir[0] != '/') {
        goto out;
    }
    last = runs->nelts ? &APR_ARRAY_IDX(runs, runs->nelts - 1,
                                        ptm_runs_entry_t) : NULL;
    if (json_object_get(o, "start")) {
        if (!(id = get_str(o, "run_id", 0, p)) || !get_time(&t, o, "start")) {
            goto out;
        }
        /* One run at a time: a run whose stop was never noted (its
         * append failed, httpd was killed) ended when the next began. */
        if (last && last->stop == APR_INT64_MAX) {
            last->stop = t > last->start ? t : last->start;
        }
        e = apr_array_push(runs);
        e->run_id = id;
        e->run_dir = dir;
        e->start = t;
        e->stop = APR_INT64_MAX;
        rc = 0;
    }
    else if (get_time(&t, o, "stop")) {
        /* Only the last run can still be open (see above).  A stop is
         * noted after the run's lock is released, so the next run may be
         * noted first, in the same directory too: a stop from before the
         * open run's start is that earlier run's, and changes nothing. */
        if (last && last->stop == APR_INT64_MAX && t >= last->start
            && strcmp(last->run_dir, dir) == 0) {
            last->stop = t;
        }
        rc = 0;
    }
out:
    if (o) {
        json_decref(o);
    }
    return rc;
}

/* A line that does not parse may be a fragment a killed writer left with
 * the next line appended to it: that line starts at the last `{"run_`
 * (which no string we write holds: its quote would be escaped).  Returns
 * how many lines were skipped (1 or 2). */
static unsigned take_glued(apr_array_header_t *runs, const char *s,
                           size_t n, apr_pool_t *p)
{
    size_t i;

    for (i = n; i-- > 1;) {
        if (s[i] == '{' && n - i > 6 && memcmp(s + i, "{\"run_", 6) == 0) {
            return take_line(runs, s + i, n - i, p) == 0 ? 1 : 2;
        }
    }
    return 1;
}

/* Take the whole lines of buf[0..have) into `runs`, counting in `*bad`
 * those that do not parse.  Returns the length of what was taken (up to
 * and with the last newline); what follows is a torn line. */
static size_t take_lines(apr_array_header_t *runs, unsigned *bad,
                         const char *buf, size_t have, apr_pool_t *p)
{
    size_t at, end;

    for (at = 0; at < have; at = end + 1) {
        const char *nl = memchr(buf + at, '\n', have - at);

        if (!nl) {
            break;
        }
        end = (size_t)(nl - buf);
        if (end > at && take_line(runs, buf + at, end - at, p) != 0) {
            *bad += take_glued(runs, buf + at, end - at, p);
        }
    }
    return at;
}

/* Open the journal of `site_dir` read only, never through a link, never
 * blocking on a FIFO, and check it is a regular file not too big to be
 * ours.  Returns the descriptor (-1 and *err = 0: there is none; -1 and
 * *err: it cannot be read). */
static int open_journal(struct stat *st, int *err, const char *site_dir,
                        apr_pool_t *p)
{
    const char *path = apr_pstrcat(p, site_dir, "/", PTM_RUNS_FILE, NULL);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

    *err = 0;
    if (fd < 0) {
        *err = errno == ENOENT ? 0 : errno;
        return -1;
    }
    if (fstat(fd, st) != 0) {
        *err = errno;
    }
    else if (!S_ISREG(st->st_mode)) {
        *err = EINVAL;
    }
    else if (st->st_size > PTM_RUNS_MAX) {
        *err = EFBIG;
    }
    if (*err) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Read buf[0..want) at `from`; returns what was read (less: the file was
 * cut meanwhile), -1 with errno on an error. */
static ssize_t read_at(int fd, char *buf, size_t want, off_t from)
{
    size_t have = 0;
    ssize_t n;

    while (have < want) {
        n = pread(fd, buf + have, want - have, from + (off_t)have);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            break;                      /* truncated meanwhile */
        }
        have += (size_t)n;
    }
    return (ssize_t)have;
}

apr_status_t ptm_runs_read(apr_array_header_t **runs, unsigned *skipped,
                           const char *site_dir, apr_pool_t *p)
{
    unsigned bad = 0;
    struct stat st;
    size_t taken;
    ssize_t have;
    char *buf;
    int fd, err = 0;

    *runs = apr_array_make(p, 8, sizeof(ptm_runs_entry_t));
    if (skipped) {
        *skipped = 0;
    }
    if ((fd = open_journal(&st, &err, site_dir, p)) < 0) {
        return err ? APR_FROM_OS_ERROR(err) : APR_SUCCESS;
    }
    /* What it held when looked at: a line appended meanwhile is a run
     * that started after this request did. */
    buf = apr_palloc(p, (apr_size_t)st.st_size + 1);
    have = read_at(fd, buf, (size_t)st.st_size, 0);
    if (have < 0) {
        err = errno;
    }
    else {
        taken = take_lines(*runs, &bad, buf, (size_t)have, p);
        if (taken < (size_t)have) {
            bad++;                      /* torn: a writer died mid-line */
        }
    }
    close(fd);
    if (skipped) {
        *skipped = bad;
    }
    return err ? APR_FROM_OS_ERROR(err) : APR_SUCCESS;
}

/* ---- the per-process cache ------------------------------------------------
 *
 * Parsing a year's journal (two lines a run) costs more than the rest of
 * a GET /events of a day, and it hardly ever changes: each child keeps
 * what it parsed, per site dir, as an immutable snapshot that requests
 * share by reference count (threads of a worker/event child share it; the
 * one mutex is held only to look up, take or swap a snapshot, and while
 * parsing what is new, which is rare).
 *
 * A snapshot stands for the journal while its inode, size and mtime are
 * the same.  A journal that grew on the same inode is the old one plus
 * what was appended (the module only ever appends) when every byte of
 * what was parsed is still the same (a hash of it is compared: reading is
 * cheap next to parsing, and an operator's edit in place, e.g. by an
 * editor that rewrites the file, must not leave a child with the old runs
 * for good): only the new lines are parsed, into a new snapshot.  Anything
 * else (a new inode, a smaller file, other bytes) is parsed whole again.
 * The journal is the User's, who could rewrite it in place keeping its
 * size and mtime: the runs it names are then stale until it changes again,
 * which opens nothing more than before (a run directory is still only
 * opened beneath a configured root, never through a link).  Memory: at
 * most CACHE_SLOTS snapshots in use, each of a journal of at most
 * PTM_RUNS_MAX. */

#define CACHE_SLOTS 4

struct ptm_runs_snap {
    apr_pool_t *pool;           /* everything of the snapshot */
    unsigned refs;              /* the cache's own, and each request's */
    char *site_dir;
    apr_array_header_t *runs;   /* ptm_runs_entry_t */
    unsigned bad;               /* lines of `taken` that do not parse */
    dev_t dev;
    ino_t ino;
    off_t size;                 /* as last seen */
    struct timespec mtime;
    size_t taken;               /* whole lines parsed */
    uint64_t sum;               /* FNV-1a of those bytes */
    unsigned torn;              /* a torn line after `taken` */
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ptm_runs_snap *cache[CACHE_SLOTS];
static unsigned cache_next;
#ifdef PTM_TEST_HOOKS
unsigned ptm_runs_cache_parses;   /* full parses, for the unit tests */
unsigned ptm_runs_cache_slots_used(void);

unsigned ptm_runs_cache_slots_used(void)
{
    unsigned i, n = 0;

    pthread_mutex_lock(&cache_lock);
    for (i = 0; i < CACHE_SLOTS; i++) {
        n += cache[i] != NULL;
    }
    pthread_mutex_unlock(&cache_lock);
    return n;
}
#endif

/* Under cache_lock. */
static void snap_release_locked(struct ptm_runs_snap *s)
{
    if (s && --s->refs == 0) {
        apr_pool_destroy(s->pool);
    }
}

static apr_status_t snap_release(void *data)
{
    pthread_mutex_lock(&cache_lock);
    snap_release_locked(data);
    pthread_mutex_unlock(&cache_lock);
    return APR_SUCCESS;
}

static struct ptm_runs_snap *snap_new(const char *site_dir)
{
    struct ptm_runs_snap *s;
    apr_pool_t *pool;

    /* Unmanaged: its own allocator, no parent shared between threads. */
    if (apr_pool_create_unmanaged_ex(&pool, NULL, NULL) != APR_SUCCESS) {
        return NULL;
    }
    s = apr_pcalloc(pool, sizeof(*s));
    s->pool = pool;
    s->refs = 1;
    s->site_dir = apr_pstrdup(pool, site_dir);
    s->runs = apr_array_make(pool, 16, sizeof(ptm_runs_entry_t));
    return s;
}

/* A copy of `old`'s runs in `s` (the strings too: `old` may go first). */
static void snap_copy_runs(struct ptm_runs_snap *s,
                           const struct ptm_runs_snap *old)
{
    int i;

    for (i = 0; i < old->runs->nelts; i++) {
        const ptm_runs_entry_t *o = &APR_ARRAY_IDX(old->runs, i,
                                                   ptm_runs_entry_t);
        ptm_runs_entry_t *e = apr_array_push(s->runs);

        e->run_id = apr_pstrdup(s->pool, o->run_id);
        e->run_dir = apr_pstrdup(s->pool, o->run_dir);
        e->start = o->start;
        e->stop = o->stop;
    }
}

/* 1 if the first `n` bytes of `fd` still hash to `sum`. */
static int prefix_same(int fd, size_t n, uint64_t sum)
{
    char chunk[16384];
    uint64_t h = PTM_FNV64_START;
    size_t at = 0;

    while (at < n) {
        size_t want = n - at < sizeof(chunk) ? n - at : sizeof(chunk);
        ssize_t got = read_at(fd, chunk, want, (off_t)at);

        if (got != (ssize_t)want) {
            return 0;
        }
        h = ptm_fnv64(h, chunk, want);
        at += want;
    }
    return h == sum;
}

static int same_time(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Under cache_lock: a snapshot of the journal open at `fd` (as `st`),
 * from `old` (of the same site dir, or NULL) when it is still that, or
 * grew from it; NULL when memory or reading failed (*err). */
static struct ptm_runs_snap *snap_update_locked(struct ptm_runs_snap *old,
                                                int fd, const struct stat *st,
                                                const char *site_dir,
                                                int *err)
{
    struct ptm_runs_snap *s;
    size_t from = 0, want;
    ssize_t got;
    char *buf;

    *err = 0;
    if (old && old->dev == st->st_dev && old->ino == st->st_ino) {
        if (old->size == st->st_size && same_time(&old->mtime, &st->st_mtim)) {
            old->refs++;
            return old;
        }
        if ((off_t)old->taken <= st->st_size && old->taken > 0
            && prefix_same(fd, old->taken, old->sum)) {
            from = old->taken;
        }
    }
    if (!(s = snap_new(site_dir))) {
        *err = ENOMEM;
        return NULL;
    }
    if (from) {
        snap_copy_runs(s, old);
        s->bad = old->bad;
    }
#ifdef PTM_TEST_HOOKS
    else {
        ptm_runs_cache_parses++;
    }
#endif
    want = (size_t)st->st_size - from;
    buf = apr_palloc(s->pool, want + 1);
    got = read_at(fd, buf, want, (off_t)from);
    if (got < 0) {
        *err = errno;
        apr_pool_destroy(s->pool);
        return NULL;
    }
    s->taken = from + take_lines(s->runs, &s->bad, buf, (size_t)got, s->pool);
    s->torn = s->taken < from + (size_t)got;
    s->dev = st->st_dev;
    s->ino = st->st_ino;
    /* Cut short meanwhile: what was read is what is known; the size that
     * was seen makes the next look read again. */
    s->size = from + (size_t)got == (size_t)st->st_size ? st->st_size : -1;
    s->mtime = st->st_mtim;
    s->sum = ptm_fnv64(from ? old->sum : PTM_FNV64_START, buf, s->taken - from);
    s->refs = 2;                        /* the cache's and the caller's */
    return s;
}

void ptm_runs_cache_clear(void)
{
    int i;

    pthread_mutex_lock(&cache_lock);
    for (i = 0; i < CACHE_SLOTS; i++) {
        snap_release_locked(cache[i]);  /* requests may still hold it */
        cache[i] = NULL;
    }
    pthread_mutex_unlock(&cache_lock);
}

apr_status_t ptm_runs_read_cached(const apr_array_header_t **runs,
                                  unsigned *skipped, const char *site_dir,
                                  apr_pool_t *p)
{
    struct ptm_runs_snap *s = NULL, *old = NULL;
    struct stat st;
    int fd, err = 0, slot = -1, i;

    *skipped = 0;
    *runs = apr_array_make(p, 1, sizeof(ptm_runs_entry_t));
    if ((fd = open_journal(&st, &err, site_dir, p)) < 0) {
        return err ? APR_FROM_OS_ERROR(err) : APR_SUCCESS;
    }
    pthread_mutex_lock(&cache_lock);
    for (i = 0; i < CACHE_SLOTS; i++) {
        if (cache[i] && strcmp(cache[i]->site_dir, site_dir) == 0) {
            slot = i;
            old = cache[i];
            break;
        }
    }
    s = snap_update_locked(old, fd, &st, site_dir, &err);
    if (s && s != old) {
        if (slot < 0) {
            slot = (int)(cache_next++ % CACHE_SLOTS);
            old = cache[slot];
        }
        cache[slot] = s;
        snap_release_locked(old);       /* requests may still hold it */
    }
    pthread_mutex_unlock(&cache_lock);
    close(fd);
    if (!s) {
        return APR_FROM_OS_ERROR(err);
    }
    apr_pool_cleanup_register(p, s, snap_release, apr_pool_cleanup_null);
    *runs = s->runs;
    *skipped = s->bad + s->torn;
    return APR_SUCCESS;
}

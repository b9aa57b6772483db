/* Files kept by each child for GET /events; see ptm_filecache.h.
 *
 * An export of a day, or the last 24 h asked every few seconds, read the
 * same finished day file on every request: a pread of it whole, its
 * digest (ptm_facts.c), and a parse of the start of each line with its ts
 * (together a quarter of an export).  Each child now keeps the last FC_N
 * files its requests read whole and checked, with the selectable lines
 * of each, and a request finds a file there by its device, inode, size,
 * mtime and ctime.  That cannot prove the file's bytes are still the kept
 * ones (a rewrite in place within one tick of ctime's clock, or a store
 * through a shared mapping, changes none of them), but nothing then goes
 * out that was not checked: the lines are sent from the kept bytes, which
 * were the file's when it was read.  What a stat can see (an append, a
 * rename, any write in a later tick) misses, and the file is read again.
 *
 * One table per process, under a mutex held only to find, add or drop an
 * entry; an entry in use by a request (refs) is never dropped, and a
 * request reads its bytes without the lock (they never change).  At most
 * FC_MAX bytes are kept; they live as long as the process. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "ptm_filecache.h"

#define FC_N 16
#define FC_MAX ((size_t)16 * 1024 * 1024)

static pthread_mutex_t fc_lock = PTHREAD_MUTEX_INITIALIZER;
static ptm_fc_t fc[FC_N];
static size_t fc_bytes;         /* kept now */
static unsigned long fc_clock;

#ifdef PTM_TEST_HOOKS
/* A test turns the table off, or makes a rewrite in place look like the
 * same file (ptm_facts.c). */
int ptm_fc_off;
extern int ptm_facts_ignore_times;
#define FC_OFF ptm_fc_off
#define TIMES_EQ(e, st) (ptm_facts_ignore_times \
    || (ts_eq(&(e)->mtime, &(st)->st_mtim) \
        && ts_eq(&(e)->ctime, &(st)->st_ctim)))
#else
#define FC_OFF 0
#define TIMES_EQ(e, st) \
    (ts_eq(&(e)->mtime, &(st)->st_mtim) && ts_eq(&(e)->ctime, &(st)->st_ctim))
#endif

static size_t fc_size(size_t cap, size_t nlines)
{
    return cap + nlines * sizeof(ptm_fc_line_t);
}

static int ts_eq(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static int same_file(const ptm_fc_t *e, const struct stat *st)
{
    return e->data && e->dev == st->st_dev && e->ino == st->st_ino;
}

const ptm_fc_t *ptm_fc_get(const struct stat *st)
{
    ptm_fc_t *e, *found = NULL;
    int i;

    if (FC_OFF) {
        return NULL;
    }
    pthread_mutex_lock(&fc_lock);
    for (i = 0; i < FC_N; i++) {
        e = &fc[i];
        if (same_file(e, st) && e->size == st->st_size && TIMES_EQ(e, st)) {
            e->refs++;
            e->used = ++fc_clock;
            found = e;
            break;
        }
    }
    pthread_mutex_unlock(&fc_lock);
    return found;
}

const ptm_fc_t *ptm_fc_put(const struct stat *st, char *data, size_t cap,
                           ptm_fc_line_t *lines, size_t nlines)
{
    ptm_fc_t *e = NULL, *c, gone[FC_N];
    size_t need = fc_size(cap, nlines);
    int i, ngone = 0;

    if (FC_OFF || need > FC_MAX) {
        return NULL;
    }
    pthread_mutex_lock(&fc_lock);
    /* The same file as it was (stale now), else a free entry, else the
     * least recently used; never one in use.  One kept as it is now (by
     * another thread meanwhile) stays as it is. */
    for (i = 0; i < FC_N; i++) {
        c = &fc[i];
        if (same_file(c, st)) {
            e = c->refs || (c->size == st->st_size && TIMES_EQ(c, st))
                ? NULL : c;
            break;
        }
        if (!c->refs && (!e || (e->data && (!c->data || c->used < e->used)))) {
            e = c;
        }
    }
    if (e && e->data) {
        gone[ngone++] = *e;
        fc_bytes -= fc_size(e->cap, e->nlines);
        memset(e, 0, sizeof(*e));
    }
    /* Room: the least recently used others go too if need be. */
    while (e && fc_bytes + need > FC_MAX) {
        c = NULL;
        for (i = 0; i < FC_N; i++) {
            if (fc[i].data && !fc[i].refs
                && (!c || fc[i].used < c->used)) {
                c = &fc[i];
            }
        }
        if (!c) {
            e = NULL;                   /* all in use: not kept */
            break;
        }
        gone[ngone++] = *c;
        fc_bytes -= fc_size(c->cap, c->nlines);
        memset(c, 0, sizeof(*c));
    }
    if (e) {
        fc_bytes += need;
        e->dev = st->st_dev;
        e->ino = st->st_ino;
        e->size = st->st_size;
        e->mtime = st->st_mtim;
        e->ctime = st->st_ctim;
        e->data = data;
        e->cap = cap;
        e->lines = lines;
        e->nlines = nlines;
        e->refs = 1;
        e->used = ++fc_clock;
    }
    pthread_mutex_unlock(&fc_lock);
    for (i = 0; i < ngone; i++) {
        free(gone[i].data);
        free(gone[i].lines);
    }
    return e;
}

void ptm_fc_release(const ptm_fc_t *e)
{
    if (e) {
        pthread_mutex_lock(&fc_lock);
        ((ptm_fc_t *)e)->refs--;
        pthread_mutex_unlock(&fc_lock);
    }
}

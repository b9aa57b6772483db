/* What each child knows of the files GET /events reads; see ptm_facts.h.
 *
 * A finished day file is read by every GET /events whose window is near
 * its day, and mostly to learn that its events are not in the window (its
 * neighbours are read because a client's ts may be a day off).  Each child
 * remembers, per file (device and inode) as it was (size, mtime and
 * ctime), the ts range of its lines and how many are damaged, as found by
 * reading it to its end: a file whose range cannot meet a slice is then
 * neither opened nor read (its damaged lines are counted all the same),
 * and one that can is read without parsing the ts of the lines of other
 * types.  Any change to the file (an append, a rewrite, a chmod) changes
 * its size or times and misses; the caller looks with a stat that does
 * not follow a link.  FACTS_SLOTS entries, direct-mapped by inode; one
 * mutex held for a copy in or out (threads of worker and event). */
#include <pthread.h>
#include "ptm_facts.h"

#define FACTS_SLOTS 1024

static pthread_mutex_t facts_lock = PTHREAD_MUTEX_INITIALIZER;
static ptm_facts_t facts[FACTS_SLOTS];
#ifdef PTM_TEST_HOOKS
unsigned ptm_history_facts_slots = FACTS_SLOTS;
#define FACTS_N ((size_t)ptm_history_facts_slots)
#else
#define FACTS_N ((size_t)FACTS_SLOTS)
#endif

static size_t facts_slot(const struct stat *st)
{
    uint64_t k = (uint64_t)st->st_ino * 0x9e3779b97f4a7c15ULL
                 ^ (uint64_t)st->st_dev;

    return (size_t)(k % FACTS_N);
}

static int ts_eq(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

int ptm_facts_get(ptm_facts_t *f, const struct stat *st)
{
    ptm_facts_t *e = &facts[facts_slot(st)];
    int hit;

    pthread_mutex_lock(&facts_lock);
    hit = e->ino == st->st_ino && e->dev == st->st_dev && e->ino != 0
          && e->size == st->st_size && ts_eq(&e->mtime, &st->st_mtim)
          && ts_eq(&e->ctime, &st->st_ctim);
    if (hit) {
        *f = *e;
    }
    pthread_mutex_unlock(&facts_lock);
    return hit;
}

void ptm_facts_put(const struct stat *st, apr_time_t min, apr_time_t max,
                   uint64_t dmg)
{
    ptm_facts_t *e = &facts[facts_slot(st)];

    pthread_mutex_lock(&facts_lock);
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->size = st->st_size;
    e->mtime = st->st_mtim;
    e->ctime = st->st_ctim;
    e->min = min;
    e->max = max;
    e->dmg = dmg;
    pthread_mutex_unlock(&facts_lock);
}

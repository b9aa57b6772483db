/* What each child process knows of the files GET /events reads: per file
 * as it was (device, inode, size, mtime, ctime), the ts range of its lines
 * and how many are damaged, so that a finished day file whose events
 * cannot be in a window is neither opened nor read again (ptm_history.c).
 * Any change to a file changes its size or times: the lookup misses. */
#ifndef PTM_FACTS_H
#define PTM_FACTS_H

#include <stdint.h>
#include <sys/stat.h>
#include <apr_time.h>

typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    apr_time_t min, max;        /* ts range of its lines (min > max: none) */
    uint64_t dmg;               /* damaged lines */
} ptm_facts_t;

/** 1 with `*f` when the file as `st` (a regular file) is known, else 0. */
int ptm_facts_get(ptm_facts_t *f, const struct stat *st);

/** Remember what reading the file as `st` to its end found.  Cannot
 * fail (an entry of another file may be replaced). */
void ptm_facts_put(const struct stat *st, apr_time_t min, apr_time_t max,
                   uint64_t dmg);

#endif

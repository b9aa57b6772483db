/* What each child process knows of the files GET /events reads: per file
 * as it was (device, inode, size, mtime, ctime), the ts range of its lines
 * and how many are damaged, so that a finished day file whose events
 * cannot be in a window is neither opened nor read again (ptm_hist_files.c).
 * Any change to a file changes its size or times: the lookup misses.
 * Also whether every line of it that GET /events could send was found
 * well-formed, with a keyed digest of the bytes that were checked: the
 * check is skipped only for bytes with the same digest (ptm_facts_digest). */
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
    int verified;               /* every line it could send well-formed
                                 * (1) or not (0) in the bytes of this
                                 * digest; -1: not checked */
    uint64_t digest;
} ptm_facts_t;

/** 1 with `*f` when the file as `st` (a regular file) is known, else 0. */
int ptm_facts_get(ptm_facts_t *f, const struct stat *st);

/** Remember what reading the file as `st` to its end found (`verified`:
 * 1 if its lines were checked in the bytes of `digest` and found
 * well-formed, 0 if one was not, -1 if they were not checked).  Cannot
 * fail (an entry of another file may be replaced). */
void ptm_facts_put(const struct stat *st, apr_time_t min, apr_time_t max,
                   uint64_t dmg, int verified, uint64_t digest);

/** A digest of `n` bytes at `s` under a key of this process that no other
 * process can know: bytes of the same length with the same digest are
 * the same bytes but with a chance of about 2^-32 (whoever chose them).
 * Returns 0, or -1 when there is no key (no randomness): trust nothing. */
int ptm_facts_digest(uint64_t *out, const char *s, size_t n);

#endif

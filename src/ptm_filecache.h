/* Files GET /events has read whole, kept by each child with the place, ts,
 * seq and type of each line, so that a finished day file asked for again
 * (an export, the last 24 h) is neither read, nor hashed, nor parsed
 * again (ptm_hist_files.c).  Only a file whose every line that could be sent
 * was checked well-formed is kept, and its lines are then sent from the
 * kept bytes: whatever happens to the file, what goes out was checked. */
#ifndef PTM_FILECACHE_H
#define PTM_FILECACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <apr_time.h>

/* One line of a kept file that can be selected: of the file's stream,
 * with a ts that is a time (the others are never selected). */
typedef struct {
    apr_time_t ts;
    uint64_t seq;
    uint32_t off, len;          /* the line in the bytes (no newline) */
    uint32_t type_off, type_len;    /* in the line: the type's JSON string */
    uint32_t rest;              /* in the line: just after it */
} ptm_fc_line_t;

typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    char *data;                 /* the file's `size` bytes */
    size_t cap;
    ptm_fc_line_t *lines;
    size_t nlines;
    unsigned refs;              /* requests using it now */
    unsigned long used;         /* when last used (least recent goes) */
} ptm_fc_t;

/** The kept copy of the file as `st` (device, inode, size, mtime, ctime
 * all the same), held until ptm_fc_release; NULL if none.  Its bytes and
 * lines never change while it is held. */
const ptm_fc_t *ptm_fc_get(const struct stat *st);

/** Keep `data` (malloc'd, `cap` bytes, the file as `st`) and `lines`
 * (malloc'd): the entry, held as by ptm_fc_get, which owns both now; or
 * NULL when there is no room, or the file is kept already (the caller
 * still owns them). */
const ptm_fc_t *ptm_fc_put(const struct stat *st, char *data, size_t cap,
                           ptm_fc_line_t *lines, size_t nlines);

/** The request is done with `e` (NULL is ignored). */
void ptm_fc_release(const ptm_fc_t *e);

#endif

/* Appending NDJSON lines (SPEC §4): one writev per line on an O_APPEND
 * descriptor, so a line is never torn or interleaved, and a failed write
 * leaves no partial line behind.  Callers hold the store lock while
 * appending so file order is seq order. */
#ifndef PTM_NDJSON_H
#define PTM_NDJSON_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <apr_pools.h>

/**
 * Create the parent directory if needed and open `path` for appending
 * (created 0666 less the umask), readable too when allowed so that
 * ptm_ndjson_append can see a partial last line, and non-blocking so that
 * a FIFO or device at `path` fails an append with EAGAIN rather than
 * blocking it.  A symbolic link at `path` itself is not followed.  Returns
 * APR_SUCCESS with `*fd`, or the error of mkdir/open (EISDIR when `path` is
 * a directory, ELOOP when it is a symbolic link).
 */
apr_status_t ptm_ndjson_open(int *fd, const char *path, apr_pool_t *p);

/**
 * Open (creating it) the file `name` of the directory `dirfd` (a
 * ptm_fs_open_dir descriptor) as ptm_ndjson_open does, without making any
 * directory.  Returns APR_SUCCESS with `*fd`, or the error of openat
 * (ELOOP when `name` is a symbolic link, which is never followed).
 */
apr_status_t ptm_ndjson_open_at(int *fd, int dirfd, const char *name);

/**
 * Append the line made of `iov[0..n)` with one writev; with `sync`,
 * fdatasync before returning.  On any failure the file is truncated back
 * to its previous length and the error is returned (APR_ENOENT when the
 * file was deleted since it was opened: open it again; after a short write
 * the rest is tried again, so the errno names the cause).  First, when `fd` is readable and the
 * file does not end in a newline, the partial line a writer killed
 * mid-append left is cut off (callers hold the store lock, so no living
 * writer is mid-line), so that the new line is not glued to it.
 */
apr_status_t ptm_ndjson_append(int fd, const struct iovec *iov, int n,
                               int sync);

/**
 * Where the last line appended to a stream ended: the file (device and
 * inode) and the offset, or `end` -1 when unknown.  Shared by the
 * processes that append under the store lock (ptm_lock.h's board), and
 * only read or written under it, so that a file that still ends there is
 * known to end in a newline without reading it back, whichever process
 * appended last.
 */
typedef struct {
    uint64_t dev;
    uint64_t ino;
    int64_t end;
} ptm_ndjson_tail_t;

/**
 * ptm_ndjson_append, except that the check for a partial last line is
 * skipped when `tail` (may be NULL) says the file ends where the last line
 * appended to it did; `tail` then says where this line ends (or -1 after
 * a failure).
 */
apr_status_t ptm_ndjson_append_tail(int fd, const struct iovec *iov, int n,
                                    int sync, ptm_ndjson_tail_t *tail);

/**
 * One stream file kept open by a process between lines, so that a line
 * costs a stat and a writev rather than an open, a read and a close
 * (regular files only: anything else is opened for each line).
 * Used only under the store lock (which also serialises the threads of a
 * process).
 */
typedef struct {
    int fd;                /* -1 when nothing is open */
    char *path;            /* what fd was opened as (malloc'd) */
    dev_t dev;             /* the file as opened */
    ino_t ino;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    off_t end;             /* where this process's last line ended, or -1 */
} ptm_ndjson_file_t;

void ptm_ndjson_file_init(ptm_ndjson_file_t *f);

/** Close the file, if any, and forget it. */
void ptm_ndjson_file_close(ptm_ndjson_file_t *f);

/**
 * Append the line `iov[0..n)` to `path` through `f`: the open file is used
 * while `path` still names it with the same owner and mode; otherwise
 * (another path, deleted, renamed away, replaced, by a symbolic link too,
 * chmod/chown) it is closed and `path` opened as ptm_ndjson_open does
 * (a link is refused: ELOOP, step "open").  The append is
 * ptm_ndjson_append's, except that the check for a partial last line is
 * skipped when the file ends where this process's last line did.  On
 * failure the file is closed, removed if the open created it empty, and
 * `*step` says which step failed ("open" or "write").
 */
apr_status_t ptm_ndjson_file_append(ptm_ndjson_file_t *f, const char *path,
                                    const struct iovec *iov, int n, int sync,
                                    const char **step, apr_pool_t *p);

/** ptm_ndjson_file_append with a shared `tail` (may be NULL), as
 * ptm_ndjson_append_tail uses it: the check is also skipped when the file
 * ends where the last line another process appended did. */
apr_status_t ptm_ndjson_file_append_tail(ptm_ndjson_file_t *f,
                                         const char *path,
                                         const struct iovec *iov, int n,
                                         int sync, ptm_ndjson_tail_t *tail,
                                         const char **step, apr_pool_t *p);

/**
 * Remove `path` if it is still the empty regular file open as `fd` (a
 * refused event's open created it).  Callers hold the store lock; a writer
 * that opened it meanwhile sees it deleted (APR_ENOENT from append) and
 * opens it again.
 */
void ptm_ndjson_discard_if_empty(int fd, const char *path);

/* The longest tail of a file searched for the start or end of its last
 * line: no event line is this long (PanoptesTelemetryMaxBody is far
 * smaller), so a file whose last newline is further back was not written
 * by us and is refused (EFBIG) rather than read to its start. */
#define PTM_NDJSON_SCAN_MAX ((off_t)64 * 1024 * 1024)

/* Most parts ptm_ndjson_append takes. */
#define PTM_NDJSON_MAX_IOV 8

/**
 * The seq of the last complete line of the NDJSON file `path` (0 when the
 * file is missing or empty).  Read only: a last line without its newline
 * (a crash cut it; it was never acknowledged) is ignored here and cut by
 * the next append.  Links are not followed and only a regular file is
 * read.  Returns APR_SUCCESS, or the error of open/read (APR_EINVAL for
 * something that is not a regular file).
 */
apr_status_t ptm_ndjson_last_seq(uint64_t *seq, const char *path);

/** ptm_ndjson_last_seq of `name` in the directory open as `dirfd`. */
apr_status_t ptm_ndjson_last_seq_at(uint64_t *seq, int dirfd,
                                   const char *name);


#endif

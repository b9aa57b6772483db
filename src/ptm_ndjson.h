/* Appending NDJSON lines (SPEC §4): one writev per line on an O_APPEND
 * descriptor, so a line is never torn or interleaved, and a failed write
 * leaves no partial line behind.  Callers hold the store lock while
 * appending so file order is seq order. */
#ifndef PTM_NDJSON_H
#define PTM_NDJSON_H

#include <sys/uio.h>
#include <apr_pools.h>

/**
 * mkdir -p `dir` with mode 0777 less the umask, as upstream's
 * Path.mkdir(parents=True, exist_ok=True).  Returns APR_SUCCESS when `dir`
 * is a directory afterwards, APR_ENOTDIR when a non-directory is in the
 * way, or the mkdir error.
 */
apr_status_t ptm_ndjson_mkdirs(const char *dir, apr_pool_t *p);

/**
 * Create the parent directory if needed and open `path` for appending
 * (created 0666 less the umask).  Returns APR_SUCCESS with `*fd`, or the
 * error of mkdir/open (APR_EISDIR when `path` is a directory).
 */
apr_status_t ptm_ndjson_open(int *fd, const char *path, apr_pool_t *p);

/**
 * Append the line made of `iov[0..n)` with one writev; with `sync`,
 * fdatasync before returning.  On any failure the file is truncated back
 * to its previous length and the error is returned (APR_EGENERAL for a
 * short write that left no errno).
 */
apr_status_t ptm_ndjson_append(int fd, const struct iovec *iov, int n,
                               int sync);

#endif

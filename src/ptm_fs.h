/* Opening and making directories beneath a root without following links
 * (SPEC §11.3 F1, §11.6).  Run directories live in the site directory or a
 * PanoptesTelemetryRunRoot, both writable by the User every web
 * application of the site runs as, so anything below them may have been
 * replaced by a symbolic link since it was last looked at.  The walk goes
 * one component at a time from a descriptor of the root, each step an
 * openat(..., O_NOFOLLOW | O_DIRECTORY) or a mkdirat on the directory
 * already open: no link below the root is followed, and nothing is
 * checked by name and then used by name.  The root's own path is the
 * admin's and is opened as it is. */
#ifndef PTM_FS_H
#define PTM_FS_H

#include <errno.h>
#include <apr_errno.h>
#include <apr_pools.h>

/* A symbolic link was met where a directory or file was to be opened. */
#define PTM_FS_LINK APR_FROM_OS_ERROR(ELOOP)

/**
 * mkdir -p `dir` with mode 0777 less the umask, as upstream's
 * Path.mkdir(parents=True, exist_ok=True).  Returns APR_SUCCESS when `dir`
 * is a directory afterwards (links on the way followed: for paths that
 * are the admin's), APR_ENOTDIR when a non-directory is in the
 * way, or the mkdir error.
 */
apr_status_t ptm_fs_mkdirs(const char *dir, apr_pool_t *p);

/**
 * Open the directory `rel` beneath the directory `root`.  `rel` is
 * relative and '/'-separated ("" is the root itself; empty components are
 * skipped).  With `create`, what is missing is made, mode 0777 less the
 * umask, the root included (mkdir -p along the root's own path); a
 * directory another process makes at the same moment is fine.
 * Returns APR_SUCCESS with `*fd`, a close-on-exec descriptor good for the
 * *at() calls (O_PATH).  On failure `*bad` is the path that failed (the
 * root, or the root joined with the part of `rel` walked so far) and the
 * status is PTM_FS_LINK (a symbolic link, dangling or not), APR_ENOTDIR
 * (another non-directory), APR_ENOENT (missing, without `create`),
 * APR_EINVAL (a "." or ".." component: it is never followed either), or
 * the error of open/mkdirat.
 */
apr_status_t ptm_fs_open_dir(int *fd, const char **bad, const char *root,
                             const char *rel, int create, apr_pool_t *p);

/**
 * A short sentence for the error `rv` met at `path` (by ptm_fs_open_dir,
 * or an O_NOFOLLOW open): "<path> is a symbolic link (not followed)",
 * "<path> is not a directory", or "<path>: <strerror>".  Never NULL.
 */
const char *ptm_fs_describe(apr_status_t rv, const char *path,
                            apr_pool_t *p);

#endif

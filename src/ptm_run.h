/* Run ids and run directories (SPEC §3.4 steps 3-6, §11.3 F1/F2/F13):
 * deriving the next id from the site directory, normalising a run_dir the
 * way pathlib does, and confining it to the site directory or a configured
 * run root. */
#ifndef PTM_RUN_H
#define PTM_RUN_H

#include <apr_pools.h>
#include <apr_tables.h>

#define PTM_RUN_ID_MAX 255

/**
 * The next run id: one more than the largest all-ASCII-digit directory
 * name in `site_dir` (symlinks followed), zero-padded to
 * max(3, longest such name without its leading zeros); "001" when there is
 * none.  Returns APR_SUCCESS, or the error of opening `site_dir`.
 */
apr_status_t ptm_run_derive_id(const char **id, const char *site_dir,
                               apr_pool_t *p);

/** 1 if `id` can be a directory name: 1..255 bytes, not "." or "..", no
 * '/', no NUL or control character. */
int ptm_run_id_is_segment(const char *id, size_t len);

/**
 * Normalise an absolute directory path for configuration: collapse "//"
 * and "/./", drop a trailing "/", keep ".." as pathlib does.
 */
const char *ptm_run_normalise(const char *path, apr_pool_t *p);

/**
 * Resolve the run directory of a start request.  With `run_dir` NULL it is
 * `site_dir/run_id`; otherwise a relative `run_dir` is taken under
 * `site_dir` and an absolute one as is, both normalised like pathlib ("" is
 * `site_dir`).  The result must stay, once ".." is resolved, inside
 * `site_dir` or one of `roots` (const char *, normalised absolute paths),
 * and so must every directory mkdir -p would make on the way to it.
 * Returns the reported path, or NULL with `*why` saying which roots are
 * allowed.  `site_dir` is a normalised absolute path.
 */
const char *ptm_run_resolve_dir(const char **why, const char *site_dir,
                                const apr_array_header_t *roots,
                                const char *run_dir, size_t run_dir_len,
                                const char *run_id, apr_pool_t *p);

#endif

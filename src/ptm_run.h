/* Run ids and run directories (SPEC §3.4 steps 3-6, §11.3 F1/F2/F13,
 * §11.6): deriving the next id from the site directory, checking ids,
 * normalising a run_dir the way pathlib does, confining it to the site
 * directory or a configured run root, away from the names the module
 * keeps, and splitting a run directory into its root and the rest for the
 * walk that never follows a link (ptm_fs). */
#ifndef PTM_RUN_H
#define PTM_RUN_H

#include <limits.h>
#include <apr_pools.h>
#include <apr_tables.h>

#define PTM_RUN_ID_MAX 255

/* Longest run directory path, in bytes: its telemetry.ndjson must still
 * have a path (shorter than PATH_MAX). */
#define PTM_RUN_DIR_MAX (PATH_MAX - (int)sizeof("/telemetry.ndjson"))

/* Most detours (ptm_run_detours) a run_dir may make: real ones use one or
 * two "..", and each costs a walk from the root under the store lock. */
#define PTM_RUN_DETOURS_MAX 16

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

/** 1 if `id` holds a control character (below 0x20, NUL included, or
 * 0x7f): refused in every run id, which reaches log and status lines. */
int ptm_run_id_has_control(const char *id, size_t len);

/** 1 if `name` (one path component) is one the module keeps for itself in
 * the site directory (SPEC §11.6): site_*.ndjson, or anything beginning
 * with '.' (the state file). */
int ptm_run_name_is_reserved(const char *name, size_t len);

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
 * and so must every directory mkdir -p would make on the way to it; and
 * inside the site dir the first component of the path and of each detour
 * (ptm_run_detours) must not be a name the module keeps
 * (ptm_run_name_is_reserved).  `site_dir` is a normalised absolute
 * path.  The reported path may be at most PTM_RUN_DIR_MAX bytes, with at
 * most PTM_RUN_DETOURS_MAX detours.  Returns
 * the reported path (pathlib's: ".." kept; what the client sees) with
 * `*real`, if `real` is not NULL, the path with ".." resolved
 * (the directory to make and use, always inside a root); or NULL with
 * `*why` saying what is allowed (`*real` NULL).
 */
const char *ptm_run_resolve_dir(const char **real, const char **why,
                                const char *site_dir,
                                const apr_array_header_t *roots,
                                const char *run_dir, size_t run_dir_len,
                                const char *run_id, apr_pool_t *p);

/**
 * The directories mkdir -p of `path` (normalised, absolute, ".." kept: a
 * reported run dir) makes besides the ones on the way to `path` with its
 * ".." resolved: the directory before each "..", resolved ("a/b/../c"
 * makes a/b), each once, in order.  Making them keeps the reported path
 * naming the run directory, as upstream's mkdir -p does.  Returns an
 * array of const char * from `p`, empty when `path` has no "..".
 */
apr_array_header_t *ptm_run_detours(const char *path, apr_pool_t *p);

/**
 * Split the run directory `dir` (absolute; its ".." are resolved first,
 * for states that stored the reported path) into the root it lies in and
 * the path below that root ("" for the root itself), for ptm_fs_open_dir:
 * `*root` is the site dir when it holds `dir`, else the outermost of
 * `roots` that does (roots are compared with their ".." resolved).
 * Returns APR_SUCCESS, or APR_EINVAL with both NULL when no root holds
 * `dir` (the configuration changed since the run started).
 */
apr_status_t ptm_run_split_dir(const char **root, const char **rel,
                               const char *dir, const char *site_dir,
                               const apr_array_header_t *roots,
                               apr_pool_t *p);

#endif

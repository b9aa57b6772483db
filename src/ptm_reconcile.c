/* At start-up, the seq counters are raised to what the stream files
 * already hold, so that no number is given out twice in a file.  This runs
 * in httpd's parent, as root, over a directory the User can write: files
 * are only read, never through a link (ptm_ndjson_last_seq). */
#include <dirent.h>
#include <errno.h>
#include <unistd.h>
#include <apr_strings.h>
#include "ptm_fs.h"
#include "ptm_run.h"
#include <string.h>
#include "ptm_store_int.h"

/* The last seq in the run directory `dir`'s telemetry.ndjson, reached
 * beneath its root without following a link (0 when there is none). */
static uint64_t run_last_seq(const char *dir, const char *site_dir,
                             const apr_array_header_t *roots, apr_pool_t *p)
{
    const char *root, *rel, *bad;
    uint64_t seq = 0;
    int fd;

    if (ptm_run_split_dir(&root, &rel, dir, site_dir, roots, p)
        != APR_SUCCESS
        || ptm_fs_open_dir(&fd, &bad, root, rel, 0, p) != APR_SUCCESS) {
        return 0;
    }
    if (ptm_ndjson_last_seq_at(&seq, fd, "telemetry.ndjson")
        != APR_SUCCESS) {
        seq = 0;
    }
    close(fd);
    return seq;
}

apr_status_t ptm_store_reconcile(ptm_store_t *st, const char *site_dir,
                                 const apr_array_header_t *roots,
                                 apr_pool_t *p)
{
    hdr_t *h = st->hdr;
    uint64_t site = 0, run = 0, n;
    const char *run_dir = NULL;
    struct dirent *de;
    apr_status_t rv;
    DIR *d;

    if ((rv = ptm_store_lock(st)) != APR_SUCCESS) {
        return rv;
    }
    if (h->run_active) {
        run_dir = apr_pstrmemdup(p, arena(st) + h->run_blob + h->run_obj_len
                                 + h->run_id_len, h->run_dir_len);
    }
    ptm_store_unlock(st);

    /* File I/O without the lock: this runs before any child exists. */
    d = opendir(site_dir);
    if (!d) {
        return APR_FROM_OS_ERROR(errno);
    }
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);

        if (len > 12 && strncmp(de->d_name, "site_", 5) == 0
            && strcmp(de->d_name + len - 7, ".ndjson") == 0
            && ptm_ndjson_last_seq_at(&n, dirfd(d), de->d_name)
               == APR_SUCCESS
            && n > site) {
            site = n;
        }
    }
    closedir(d);
    if (run_dir) {
        run = run_last_seq(run_dir, site_dir, roots, p);
    }

    if ((rv = ptm_store_lock(st)) != APR_SUCCESS) {
        return rv;
    }
    /* Two counters only raised, nothing a death could tear: marked all
     * the same, as every change to the segment is. */
    ptm_store_begin_locked(h, PTM_STREAM_SITE, 0);
    if (site > h->seq[PTM_STREAM_SITE]) {
        h->seq[PTM_STREAM_SITE] = site;
    }
    if (run > h->seq[PTM_STREAM_RUN]) {
        h->seq[PTM_STREAM_RUN] = run;
    }
    ptm_store_end_locked(h);
    ptm_store_unlock(st);
    return APR_SUCCESS;
}

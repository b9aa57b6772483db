/* The runs journal; see ptm_runs.h.
 *
 * Writing: one line per start or stop, appended with ptm_ndjson_append
 * (one write on an O_APPEND descriptor, so lines never interleave; undone
 * on a short write).  Starts are noted under the store lock, stops just
 * after it, so a stop may land after the next start: the reader knows.
 * Reading: the whole journal, bounded, each line parsed on its own; the
 * journal lives in a directory the User can write to, so nothing in it is
 * trusted beyond being a run that GET /events may look for, and the paths
 * it names are only ever opened beneath a configured root (ptm_history). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <apr_strings.h>
#include <jansson.h>
#include "ptm_buf.h"
#include "ptm_json.h"
#include "ptm_ndjson.h"
#include "ptm_runs.h"
#include "ptm_time.h"

/* A run every night for a century is a few MiB: a journal this big was
 * not written by us, and is refused rather than read into memory on every
 * GET /events. */
#ifndef PTM_RUNS_MAX
#define PTM_RUNS_MAX ((apr_off_t)64 * 1024 * 1024)
#endif

/* Append `line` (with its newline) to the journal of `site_dir`.
 * Write-only, so ptm_ndjson_append does not cut a partial last line: a
 * stop is noted after the store lock is released (ptm_api), so another
 * writer may be in the middle of its line; a fragment a killed writer
 * left is instead recovered from by the reader (take_glued).  Never
 * through a link planted at the name (ELOOP), never blocking on a FIFO
 * (ENXIO), and only into a regular file. */
static apr_status_t append_line(const char *site_dir, ptm_buf_t *line,
                                apr_pool_t *p)
{
    const char *path = apr_pstrcat(p, site_dir, "/", PTM_RUNS_FILE, NULL);
    struct iovec iov;
    struct stat st;
    apr_status_t rv;
    int fd;

    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC
                    | O_NONBLOCK, 0644);
    if (fd < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    if (fstat(fd, &st) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
    }
    else if (!S_ISREG(st.st_mode)) {
        rv = APR_FROM_OS_ERROR(EINVAL);
    }
    else {
        iov.iov_base = line->data;
        iov.iov_len = line->len;
        rv = ptm_ndjson_append(fd, &iov, 1, 0);
    }
    close(fd);
    return rv;
}

apr_off_t ptm_runs_size(const char *site_dir, apr_pool_t *p)
{
    const char *path = apr_pstrcat(p, site_dir, "/", PTM_RUNS_FILE, NULL);
    struct stat st;

    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        return -1;
    }
    return (apr_off_t)st.st_size;
}

apr_status_t ptm_runs_cut(const char *site_dir, apr_off_t size,
                          apr_pool_t *p)
{
    const char *path = apr_pstrcat(p, site_dir, "/", PTM_RUNS_FILE, NULL);
    apr_status_t rv = APR_SUCCESS;
    struct stat st;
    int fd;

    fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    /* Only shorter, and only a regular file: what it was before. */
    if (fstat(fd, &st) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
    }
    else if (S_ISREG(st.st_mode) && st.st_size > (size < 0 ? 0 : size)
             && ftruncate(fd, (off_t)(size < 0 ? 0 : size)) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
    }
    close(fd);
    if (rv == APR_SUCCESS && size < 0 && S_ISREG(st.st_mode)
        && unlink(path) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
    }
    return rv;
}

static void put_time(ptm_buf_t *b, apr_time_t t)
{
    char ts[PTM_TS_LEN + 1];

    ptm_time_utc_iso(ts, t);
    ptm_buf_putc(b, '"');
    ptm_buf_add(b, ts, PTM_TS_LEN);
    ptm_buf_putc(b, '"');
}

apr_status_t ptm_runs_note_start(const char *site_dir, const char *run_id,
                                 size_t run_id_len, const char *run_dir,
                                 apr_time_t start, apr_pool_t *p)
{
    ptm_buf_t b;

    ptm_buf_init(&b, p, 128 + run_id_len + strlen(run_dir));
    ptm_buf_puts(&b, "{\"run_id\":");
    ptm_json_dump_string(&b, run_id, run_id_len);
    ptm_buf_puts(&b, ",\"run_dir\":");
    ptm_json_dump_string(&b, run_dir, strlen(run_dir));
    ptm_buf_puts(&b, ",\"start\":");
    put_time(&b, start);
    ptm_buf_add(&b, "}\n", 2);
    return append_line(site_dir, &b, p);
}

apr_status_t ptm_runs_note_stop(const char *site_dir, const char *run_dir,
                                apr_time_t stop, apr_pool_t *p)
{
    ptm_buf_t b;

    ptm_buf_init(&b, p, 96 + strlen(run_dir));
    ptm_buf_puts(&b, "{\"run_dir\":");
    ptm_json_dump_string(&b, run_dir, strlen(run_dir));
    ptm_buf_puts(&b, ",\"stop\":");
    put_time(&b, stop);
    ptm_buf_add(&b, "}\n", 2);
    return append_line(site_dir, &b, p);
}

/* The string member `name` of `o` as a NUL-terminated copy, or NULL when
 * it is missing or not a string.  A NUL inside is refused with `no_nul`
 * (a path cannot hold one); otherwise the copy ends there (a run id may
 * hold one: it is only ever shown). */
static const char *get_str(const json_t *o, const char *name, int no_nul,
                           apr_pool_t *p)
{
    const json_t *v = json_object_get(o, name);
    const char *s;
    size_t n;

    if (!json_is_string(v)) {
        return NULL;
    }
    s = json_string_value(v);
    n = json_string_length(v);
    if (no_nul && memchr(s, '\0', n)) {
        return NULL;
    }
    return apr_pstrmemdup(p, s, n);
}

static int get_time(apr_time_t *t, const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);

    return json_is_string(v)
           && ptm_time_parse_rfc3339(t, json_string_value(v),
                                     json_string_length(v), 1) == 0;
}

/* Take one journal line into `runs`.  Returns 0, or -1 when it is not a
 * line we write (or names a relative directory). */
static int take_line(apr_array_header_t *runs, const char *s, size_t n,
                     apr_pool_t *p)
{
    ptm_json_error_t jerr;
    json_t *o = ptm_json_parse(s, n, &jerr);
    ptm_runs_entry_t *e, *last;
    const char *dir, *id;
    apr_time_t t;
    int rc = -1;

    if (!o || !json_is_object(o)) {
        goto out;
    }
    dir = get_str(o, "run_dir", 1, p);
    if (!dir || dir[0] != '/') {
        goto out;
    }
    last = runs->nelts ? &APR_ARRAY_IDX(runs, runs->nelts - 1,
                                        ptm_runs_entry_t) : NULL;
    if (json_object_get(o, "start")) {
        if (!(id = get_str(o, "run_id", 0, p)) || !get_time(&t, o, "start")) {
            goto out;
        }
        /* One run at a time: a run whose stop was never noted (its
         * append failed, httpd was killed) ended when the next began. */
        if (last && last->stop == APR_INT64_MAX) {
            last->stop = t > last->start ? t : last->start;
        }
        e = apr_array_push(runs);
        e->run_id = id;
        e->run_dir = dir;
        e->start = t;
        e->stop = APR_INT64_MAX;
        rc = 0;
    }
    else if (get_time(&t, o, "stop")) {
        /* Only the last run can still be open (see above).  A stop is
         * noted after the run's lock is released, so the next run may be
         * noted first, in the same directory too: a stop from before the
         * open run's start is that earlier run's, and changes nothing. */
        if (last && last->stop == APR_INT64_MAX && t >= last->start
            && strcmp(last->run_dir, dir) == 0) {
            last->stop = t;
        }
        rc = 0;
    }
out:
    if (o) {
        json_decref(o);
    }
    return rc;
}

/* A line that does not parse may be a fragment a killed writer left with
 * the next line appended to it: that line starts at the last `{"run_`
 * (which no string we write holds: its quote would be escaped).  Returns
 * how many lines were skipped (1 or 2). */
static unsigned take_glued(apr_array_header_t *runs, const char *s,
                           size_t n, apr_pool_t *p)
{
    size_t i;

    for (i = n; i-- > 1;) {
        if (s[i] == '{' && n - i > 6 && memcmp(s + i, "{\"run_", 6) == 0) {
            return take_line(runs, s + i, n - i, p) == 0 ? 1 : 2;
        }
    }
    return 1;
}

apr_status_t ptm_runs_read(apr_array_header_t **runs, unsigned *skipped,
                           const char *site_dir, apr_pool_t *p)
{
    const char *path = apr_pstrcat(p, site_dir, "/", PTM_RUNS_FILE, NULL);
    unsigned bad = 0;
    struct stat st;
    size_t have = 0, at, end;
    char *buf;
    ssize_t n;
    int fd, err = 0;

    *runs = apr_array_make(p, 8, sizeof(ptm_runs_entry_t));
    if (skipped) {
        *skipped = 0;
    }
    /* Read only, never through a link, never blocking on a FIFO. */
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? APR_SUCCESS : APR_FROM_OS_ERROR(errno);
    }
    if (fstat(fd, &st) != 0) {
        err = errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        err = EINVAL;
        goto out;
    }
    if (st.st_size > PTM_RUNS_MAX) {
        err = EFBIG;
        goto out;
    }
    /* What it held when looked at: a line appended meanwhile is a run
     * that started after this request did. */
    buf = apr_palloc(p, (apr_size_t)st.st_size + 1);
    while (have < (size_t)st.st_size) {
        n = pread(fd, buf + have, (size_t)st.st_size - have, (off_t)have);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            err = errno;
            goto out;
        }
        if (n == 0) {
            break;                      /* truncated meanwhile */
        }
        have += (size_t)n;
    }
    for (at = 0; at < have; at = end + 1) {
        const char *nl = memchr(buf + at, '\n', have - at);

        if (!nl) {
            bad++;                      /* torn: a writer died mid-line */
            break;
        }
        end = (size_t)(nl - buf);
        if (end > at && take_line(*runs, buf + at, end - at, p) != 0) {
            bad += take_glued(*runs, buf + at, end - at, p);
        }
    }
out:
    close(fd);
    if (skipped) {
        *skipped = bad;
    }
    return err ? APR_FROM_OS_ERROR(err) : APR_SUCCESS;
}

/* The files of a slice (ptm_history.c): the site day files of its days
 * and the run files of the runs near it, opened beneath their roots
 * without following links, read whole or in chunks, their lines scanned
 * for the slice's keys; and what is known of each file (its ts range,
 * its damage, whether its bytes were checked: ptm_facts.c, and the
 * checked files a child keeps: ptm_filecache.c), so later slices and
 * requests skip the files that cannot hold their events. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include "ptm_facts.h"
#include "ptm_filecache.h"
#include "ptm_fs.h"
#include "ptm_hist_int.h"
#include "ptm_json.h"
#include "ptm_stash.h"
#include "ptm_test_hook.h"
#include "ptm_time.h"

/* No event line is longer (PanoptesTelemetryMaxBody is far smaller): a
 * longer one was not written by us and is skipped, not held. */
#define LINE_MAX_LEN ((size_t)64 * 1024 * 1024)
#define READ_CHUNK ((size_t)256 * 1024)
/* A file up to WHOLE_MAX is read whole and its lines emitted from memory,
 * while a request holds at most HOLD_MAX so (a day file is well under a
 * MiB at POCS's rate); beyond, lines are read back one by one. */
#define WHOLE_MAX ((size_t)8 * 1024 * 1024)
/* At most this many files read by a request are kept by its child
 * (ptm_filecache.c keeps 16). */
#define KEEP_MAX 8
#define HOLD_MAX ((size_t)16 * 1024 * 1024)

#define RUN_FILE "telemetry.ndjson"

/* ---- days ----------------------------------------------------------------*/

static int key_date(const char *k, int *y, int *m, int *d)
{
    int i, v[8];

    for (i = 0; i < 8; i++) {
        if (k[i] < '0' || k[i] > '9') {
            return -1;
        }
        v[i] = k[i] - '0';
    }
    *y = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3];
    *m = v[4] * 10 + v[5];
    *d = v[6] * 10 + v[7];
    return 0;
}

static void date_next(int *y, int *m, int *d)
{
    static const int mdays[12] = { 31, 28, 31, 30, 31, 30,
                                   31, 31, 30, 31, 30, 31 };
    int leap = (*y % 4 == 0 && *y % 100 != 0) || *y % 400 == 0;
    int last = mdays[(*m - 1) % 12] + (*m == 2 && leap);

    if (++*d > last) {
        *d = 1;
        if (++*m > 12) {
            *m = 1;
            ++*y;
        }
    }
}

static void key_fmt(char *out, int y, int m, int d)
{
    apr_snprintf(out, PTM_DAYKEY_LEN + 1, "%04d%02d%02d", y % 10000, m, d);
}

/* Local noon of the day `add` days after the day file of `t` (the time
 * its file begins or ends); 0 when that cannot be worked out. */
apr_time_t ptm_hist_day_noon(apr_time_t t, int add)
{
    char k[PTM_DAYKEY_LEN + 1];
    struct tm tm;
    time_t s;
    int y, m, d;

    if (ptm_time_day_key(k, t) != APR_SUCCESS || key_date(k, &y, &m, &d)) {
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d + add;           /* mktime carries it over */
    tm.tm_hour = 12;
    tm.tm_isdst = -1;
    s = mktime(&tm);
    return s == (time_t)-1 ? 0 : apr_time_from_sec((apr_time_t)s);
}

/* ---- the files -----------------------------------------------------------*/

/* Open `src` read-only, never through a link, never blocking on a FIFO;
 * -1 with errno. */
static int open_src(hist_t *h, const src_t *src, apr_pool_t *p)
{
    int fd, dfd, err;
    const char *bad;
    apr_status_t rv;

    if (src->run == PTM_STREAM_SITE) {
        char name[sizeof("site_.ndjson") + PTM_DAYKEY_LEN];

        apr_snprintf(name, sizeof(name), "site_%s.ndjson", src->day);
        PTM_TEST_HOOK("history:open-day", (unsigned)atoi(src->day));
        return openat(h->site_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK
                                        | O_CLOEXEC);
    }
    PTM_TEST_HOOK("history:open-run", 0);
    rv = ptm_fs_open_dir(&dfd, &bad, src->root, src->rel, 0, p);
    if (rv != APR_SUCCESS) {
        errno = APR_STATUS_IS_ENOENT(rv) ? ENOENT : ELOOP;
        return -1;
    }
    fd = openat(dfd, RUN_FILE, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    err = errno;
    close(dfd);
    errno = err;
    return fd;
}

/* Worth opening for [t0, t1): not refused before, and not read to its end
 * already with a ts range that misses the slice. */
static int src_wanted(const src_t *src, apr_time_t t0, apr_time_t t1)
{
    return !src->gone && (!src->known || (src->max >= t0 && src->min < t1));
}

void ptm_hist_sfile_close(hist_t *h, sfile_t *sf)
{
    close(sf->fd);
    if (sf->fc) {
        ptm_fc_release(sf->fc);         /* kept for the next requests */
        sf->fc = NULL;
        sf->data = NULL;
    }
    else if (sf->data) {
        ptm_stash_give(sf->data, sf->cap);
        h->held -= sf->len;
        sf->data = NULL;
    }
}

/* ---- what is known of the files (ptm_facts.c) ----------------------------*/

/* The facts of `src` were found (or stood) for this request. */
static void src_learn(hist_t *h, src_t *src, apr_time_t min, apr_time_t max,
                      uint64_t dmg)
{
    src->known = 1;
    src->min = min;
    src->max = max;
    if (!src->counted) {
        src->counted = 1;
        h->res->skipped += dmg;
    }
}

/* What a scan of one file keeps track of. */
typedef struct {
    src_t *src;
    apr_array_header_t *spans;
    int idx;                    /* its index in sl->files */
    int known;                  /* its facts stand: ts only where needed */
    apr_time_t fmin, fmax;
    size_t dmg, used;
} scan_t;

/* The line s[0..n) at offset `at`, parsed as `l` (its ts a time): kept if
 * the slice wants it.  Returns 0, or -1 when the slice is done
 * collecting. */
static int scan_parsed(hist_t *h, slice_t *sl, scan_t *sc, const char *s,
                       size_t n, off_t at, const line_t *l)
{
    const ptm_query_t *q = h->q;
    ent_t c;

    if (l->ts < sl->t0 || l->ts >= sl->t1) {
        return 0;
    }
    memset(&c, 0, sizeof(c));
    c.key.ts = l->ts;
    c.key.stream = l->stream;
    c.key.seq = l->seq;
    c.key.tie = sc->src->run ? sc->src->tie : 0;
    if ((!q->every && !ptm_hist_after_cursor(h, &c.key))
        || !ptm_hist_type_wanted(q, s + l->type_off, l->type_len)
        || (ptm_hist_in_spans(sc->spans, l->seq)
            && ptm_hist_ring_has(sl, sc->src, l))
        || (q->run_id && !ptm_hist_run_id_matches(h, s, n, l->rest))) {
        return 0;
    }
    c.off = (uint64_t)at;
    c.len = (uint32_t)n;
    c.file = sc->idx;
    c.type_off = (uint32_t)l->type_off;
    c.type_len = (uint32_t)l->type_len;
    if (ptm_hist_add_key(h, sl, &c, s + l->type_off) != 0) {
        return -1;
    }
    sc->used++;
    return 0;
}

/* One line s[0..n) (its newline after it) at offset `at`.  Returns 0, or
 * -1 when the slice is done collecting. */
static int scan_line(hist_t *h, slice_t *sl, scan_t *sc, const char *s,
                     size_t n, off_t at)
{
    const ptm_query_t *q = h->q;
    line_t l;

    if (n == 0 || ptm_line_parse(&l, s, n) != 0
        || l.stream != sc->src->run) {
        sc->dmg++;
        return 0;
    }
    if (sc->known && !ptm_hist_type_wanted(q, s + l.type_off, l.type_len)) {
        return 0;
    }
    if (ptm_hist_line_ts(&l, s) == PTM_TS_NONE) {
        return 0;
    }
    if (l.ts < sc->fmin) {
        sc->fmin = l.ts;
    }
    if (l.ts > sc->fmax) {
        sc->fmax = l.ts;
    }
    return scan_parsed(h, sl, sc, s, n, at, &l);
}

/* A kept file (ptm_filecache.c): its selectable lines as they were parsed
 * when it was read.  Returns 1, or -1 when the slice is done collecting. */
static int scan_kept(hist_t *h, slice_t *sl, scan_t *sc, const ptm_fc_t *fc)
{
    size_t i;
    line_t l;

    memset(&l, 0, sizeof(l));
    l.stream = sc->src->run;
    for (i = 0; i < fc->nlines; i++) {
        const ptm_fc_line_t *x = &fc->lines[i];
        const char *s = fc->data + x->off;

        if (x->ts < sl->t0 || x->ts >= sl->t1
            || !ptm_hist_type_wanted(h->q, s + x->type_off, x->type_len)) {
            continue;
        }
        l.seq = x->seq;
        l.ts = x->ts;
        l.type_off = x->type_off;
        l.type_len = x->type_len;
        l.rest = x->rest;
        if (scan_parsed(h, sl, sc, s, x->len, (off_t)x->off, &l) != 0) {
            return -1;
        }
    }
    return 1;
}

/* Read a file of `size` bytes whole into memory (bounded: WHOLE_MAX per
 * file, HOLD_MAX held by a request at once) and scan it.  Its lines are
 * then emitted from that copy: no read per line, and the bytes emitted
 * are the bytes scanned.  Returns 1 when read to its end, 0 when cut
 * short meanwhile, -1 when the slice is done collecting. */
static int scan_whole(hist_t *h, slice_t *sl, scan_t *sc, sfile_t *sf,
                      int fd, off_t size)
{
    size_t have = 0, at = 0, cap;
    ssize_t got;
    char *data = ptm_stash_take((size_t)size + 1, &cap), *nl;

    if (!data) {
        return 0;
    }
    sf->cap = cap;
    while (have < (size_t)size) {
        got = pread(fd, data + have, (size_t)size - have, (off_t)have);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            break;                      /* cut short under us */
        }
        have += (size_t)got;
    }
    sf->data = data;
    sf->len = have;
    h->held += have;
    while (at < have && (nl = memchr(data + at, '\n', have - at)) != NULL) {
        size_t n = (size_t)(nl - (data + at));

        if (scan_line(h, sl, sc, data + at, n, (off_t)at) != 0) {
            return -1;
        }
        at += n + 1;
    }
    if (have < (size_t)size) {
        return 0;
    }
    if (at < have) {
        sc->dmg++;                      /* no newline: torn */
    }
    return 1;
}

/* The same, a READ_CHUNK at a time (a file too big to hold): lines are
 * read back one by one when emitted. */
static int scan_chunked(hist_t *h, slice_t *sl, scan_t *sc, int fd,
                        off_t size)
{
    size_t have = 0, scan = 0, want;
    off_t base = 0;
    int skip_long = 0;
    ssize_t got;

    if (ptm_hist_grow((void **)&h->buf, &h->buf_cap, READ_CHUNK, 1) != 0) {
        return 0;
    }
    for (;;) {
        char *nl;

        while (scan < have && (nl = memchr(h->buf + scan, '\n',
                                           have - scan)) != NULL) {
            const char *s = h->buf + scan;
            size_t n = (size_t)(nl - s);
            off_t at = base + (off_t)scan;

            scan += n + 1;
            if (skip_long) {
                skip_long = 0;          /* the end of the long line */
                continue;
            }
            if (scan_line(h, sl, sc, s, n, at) != 0) {
                return -1;
            }
        }
        if (base + (off_t)have >= size) {
            if (scan < have && !skip_long) {
                sc->dmg++;              /* no newline: torn */
            }
            return 1;
        }
        /* Keep the partial line, at the front. */
        if (scan > 0) {
            memmove(h->buf, h->buf + scan, have - scan);
            base += (off_t)scan;
            have -= scan;
            scan = 0;
        }
        if (have == h->buf_cap) {
            if (h->buf_cap >= LINE_MAX_LEN) {
                /* Longer than any line we write: dropped up to its
                 * newline. */
                if (!skip_long) {
                    sc->dmg++;
                }
                skip_long = 1;
                base += (off_t)have;
                have = 0;
            }
            else if (ptm_hist_grow((void **)&h->buf, &h->buf_cap,
                                   h->buf_cap * 2, 1)) {
                return 0;
            }
        }
        want = h->buf_cap - have;
        if ((off_t)want > size - base - (off_t)have) {
            want = (size_t)(size - base - (off_t)have);
        }
        got = pread(fd, h->buf + have, want, base + (off_t)have);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            /* Cut short under us (truncated, or an I/O error): what was
             * read stands; the range is not known. */
            return 0;
        }
        have += (size_t)got;
    }
}

/* The lines of the file `s` (`n` bytes, read whole) that could be sent
 * (of its stream, with the prefix the module writes): with `check`, 1 if
 * every one is well-formed (then none needs checking as it goes out while
 * the file's bytes are these, ptm_facts.c), else 0; a damaged line is
 * never sent, so it does not count, one that starts right but is not JSON
 * does.  With `out`, also those whose ts is a time, to keep the file
 * (ptm_filecache.c): malloc'd, or NULL when memory is out. */
static int index_lines(ptm_fc_line_t **out, size_t *nout, const char *s,
                       size_t n, int run, int check)
{
    size_t at = 0, len, cap = 0;
    ptm_fc_line_t *x = NULL;
    const char *nl;
    line_t l;
    int ok = 1;

    *nout = 0;
    while (at < n && (nl = memchr(s + at, '\n', n - at)) != NULL) {
        len = (size_t)(nl - (s + at));
        if (len && ptm_line_parse(&l, s + at, len) == 0
            && l.stream == run) {
            if (check && !ptm_json_well_formed(s + at, len)) {
                ok = 0;
                break;
            }
            if (out && *nout == cap) {
                ptm_fc_line_t *m = realloc(x, (cap ? cap * 2 : 1024)
                                              * sizeof(*x));

                if (!m) {
                    free(x);            /* not kept, only checked */
                    x = NULL;
                    out = NULL;
                }
                else {
                    x = m;
                    cap = cap ? cap * 2 : 1024;
                }
            }
            if (out && ptm_hist_line_ts(&l, s + at) != PTM_TS_NONE) {
                x[*nout].ts = l.ts;
                x[*nout].seq = l.seq;
                x[*nout].off = (uint32_t)at;
                x[*nout].len = (uint32_t)len;
                x[*nout].type_off = (uint32_t)l.type_off;
                x[*nout].type_len = (uint32_t)l.type_len;
                x[*nout].rest = (uint32_t)l.rest;
                (*nout)++;
            }
        }
        at += len + 1;
    }
    if (out) {
        *out = x;
    }
    else {
        free(x);
    }
    return ok;
}

/* Keep the file `sf` (read whole, every line it could send checked, its
 * bytes a buffer of the stash) for the child's next requests: the table
 * then owns the bytes, and the request uses them from there. */
static void keep_file(hist_t *h, sfile_t *sf, const struct stat *st,
                      ptm_fc_line_t *lines, size_t nlines)
{
    const ptm_fc_t *fc = ptm_fc_put(st, sf->data, sf->cap, lines, nlines);

    if (!fc) {
        free(lines);
        return;
    }
    h->held -= sf->len;
    h->kept++;
    sf->fc = fc;
}

/* Read `src` and keep the keys of the slice's events in it. */
static void read_src(hist_t *h, slice_t *sl, src_t *src)
{
    ptm_facts_t f;
    scan_t sc;
    off_t size;
    int fd, i, rc, have_digest, keep, ver;
    uint64_t digest = 0;
    const ptm_fc_t *kept;
    ptm_fc_line_t *lines;
    size_t nlines;
    struct stat st;
    sfile_t *sf;

    fd = open_src(h, src, sl->p);
    if (fd < 0) {
        /* Missing: nothing to read (and a day file made meanwhile holds
         * only new events).  Anything else (a link, no permission) is a
         * file we cannot read: skipped, counted once. */
        if (errno != ENOENT) {
            h->res->skipped++;
        }
        src->gone = 1;
        return;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        h->res->skipped++;
        src->gone = 1;
        return;
    }
    for (i = 0; i < sl->files->nelts; i++) {
        sf = &APR_ARRAY_IDX(sl->files, i, sfile_t);
        if (sf->dev == st.st_dev && sf->ino == st.st_ino) {
            close(fd);                  /* the same file by another name */
            return;
        }
    }
    memset(&sc, 0, sizeof(sc));
    memset(&f, 0, sizeof(f));
    kept = NULL;
    if (ptm_facts_get(&f, &st)) {
        src_learn(h, src, f.min, f.max, f.dmg);
        if (!src_wanted(src, sl->t0, sl->t1)) {
            close(fd);
            return;
        }
        sc.known = 1;
    }
    PTM_TEST_HOOK(src->run ? "history:read-run" : "history:read-day",
                  src->run ? 0 : (unsigned)atoi(src->day));
    sc.src = src;
    sc.spans = ptm_hist_ring_spans(sl, src);
    sc.idx = sl->files->nelts;
    sc.fmin = APR_INT64_MAX;
    sc.fmax = APR_INT64_MIN;
    sf = apr_array_push(sl->files);
    memset(sf, 0, sizeof(*sf));
    sf->fd = fd;
    sf->src = src;
    sf->dev = st.st_dev;
    sf->ino = st.st_ino;
    /* What it held when opened: a line appended since is a new event. */
    size = st.st_size;
    if (sc.known && (kept = ptm_fc_get(&st)) != NULL) {
        /* Kept by this child, checked, as a stat still sees it. */
        sf->fc = kept;
        sf->data = kept->data;
        sf->len = (size_t)size;
        sf->verified = 1;
        rc = scan_kept(h, sl, &sc, kept);
    }
    /* Compared as off_t: a size_t of 32 bits would wrap a bigger file. */
    else if (size >= 0 && size <= (off_t)WHOLE_MAX
             && h->held + (size_t)size <= HOLD_MAX) {
        rc = scan_whole(h, sl, &sc, sf, fd, size);
    }
    else {
        rc = scan_chunked(h, sl, &sc, fd, size);
    }
    /* Read whole, to its end: its lines need no check as they go out if
     * these very bytes were checked (ptm_facts.c says why a digest). */
    have_digest = rc == 1 && sf->data && !kept
                  && ptm_facts_digest(&digest, sf->data, sf->len) == 0;
    lines = NULL;
    nlines = 0;
    /* A wide window reads many files: only the first few are kept (the
     * cost of their index is then bounded, and the files of a
     * narrow window are not all pushed out). */
    keep = !kept && h->kept < KEEP_MAX;
    if (rc == 1 && !sc.known) {
        ver = have_digest ? index_lines(keep ? &lines : NULL, &nlines,
                                        sf->data, sf->len, src->run, 1)
                          : -1;
        src_learn(h, src, sc.fmin, sc.fmax, sc.dmg);
        ptm_facts_put(&st, sc.fmin, sc.fmax, sc.dmg, ver, digest);
        sf->verified = ver == 1;
    }
    else if (have_digest && f.verified >= 0 && f.digest == digest) {
        /* These very bytes were checked: as found then. */
        sf->verified = f.verified;
        if (sf->verified && keep) {
            index_lines(&lines, &nlines, sf->data, sf->len, src->run, 0);
        }
    }
    else if (have_digest) {
        /* Not checked yet (it was read in chunks), or other bytes under
         * the same name, size and times (rewritten in place): checked
         * now, and remembered for these bytes. */
        ver = index_lines(keep ? &lines : NULL, &nlines, sf->data, sf->len,
                          src->run, 1);
        ptm_facts_put(&st, f.min, f.max, f.dmg, ver, digest);
        sf->verified = ver;
    }
    if (sf->verified && lines && keep) {
        keep_file(h, sf, &st, lines, nlines);
    }
    else {
        free(lines);
    }
    if (!sc.used && sl->files->nelts == sc.idx + 1) {
        /* Nothing of it is kept: no need to hold it open. */
        ptm_hist_sfile_close(h, sf);
        sl->files->nelts--;
    }
}

/* A day file as its facts say, without opening it, when they stand and
 * its range misses [t0, t1): 1 (nothing to read), else 0. */
static int day_skip(hist_t *h, src_t *src, apr_time_t t0, apr_time_t t1)
{
    char name[sizeof("site_.ndjson") + PTM_DAYKEY_LEN];
    struct stat st;
    ptm_facts_t f;

    if (src->known) {
        return 0;                       /* src_wanted said it may meet */
    }
    apr_snprintf(name, sizeof(name), "site_%s.ndjson", src->day);
    if (fstatat(h->site_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) {
            src->gone = 1;              /* as open_src would find it */
            return 1;
        }
        return 0;
    }
    if (!S_ISREG(st.st_mode) || !ptm_facts_get(&f, &st)) {
        return 0;
    }
    src_learn(h, src, f.min, f.max, f.dmg);
    return !src_wanted(src, t0, t1);
}

static src_t *day_src(hist_t *h, const char *key)
{
    src_t *src = apr_hash_get(h->days, key, PTM_DAYKEY_LEN);

    if (!src) {
        src = apr_pcalloc(h->p, sizeof(*src));
        src->run = PTM_STREAM_SITE;
        memcpy(src->day, key, PTM_DAYKEY_LEN + 1);
        apr_hash_set(h->days, src->day, PTM_DAYKEY_LEN, src);
    }
    return src;
}

void ptm_hist_read_files(hist_t *h, slice_t *sl)
{
    int i, j;

    if (h->q->stream != PTM_STREAM_RUN && h->site_fd >= 0) {
        apr_time_t a = sl->t0 > ERA_LO ? sl->t0 : ERA_LO;
        apr_time_t b = sl->t1 < h->era_hi ? sl->t1 : h->era_hi;
        char k[PTM_DAYKEY_LEN + 1], last[PTM_DAYKEY_LEN + 1];
        int y, m, d;

        /* A client's ts may be a day off its file's: the days of the
         * slice and one more on each side. */
        if (a < b && ptm_time_day_key(k, sat_sub(a, DAY)) == APR_SUCCESS
            && ptm_time_day_key(last, sat_add(b - 1, DAY)) == APR_SUCCESS
            && key_date(k, &y, &m, &d) == 0) {
            while (strcmp(k, last) <= 0) {
                src_t *src = day_src(h, k);

                if (src_wanted(src, sl->t0, sl->t1)
                    && !day_skip(h, src, sl->t0, sl->t1)) {
                    read_src(h, sl, src);
                    if (sl->overflow || sl->found) {
                        return;
                    }
                }
                date_next(&y, &m, &d);
                key_fmt(k, y, m, d);
            }
        }
    }
    if (h->q->stream == PTM_STREAM_SITE) {
        return;
    }
    for (i = 0; i < h->runs->nelts; i++) {
        src_t *src = APR_ARRAY_IDX(h->runs, i, src_t *);

        if (!src_wanted(src, sl->t0, sl->t1)) {
            continue;
        }
        for (j = 0; j < src->spans->nelts; j++) {
            const span_t *s = &APR_ARRAY_IDX(src->spans, j, span_t);

            if (overlaps(s->lo, s->hi, sl->t0, sl->t1)) {
                read_src(h, sl, src);
                if (sl->overflow || sl->found) {
                    return;
                }
                break;
            }
        }
    }
}

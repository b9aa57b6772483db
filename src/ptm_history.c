/* GET /events; see ptm_history.h.
 *
 * Where the events are.  The ring of the store holds the most recent ones,
 * every one (ephemeral ones too), with their ts already parsed.  The site
 * day files hold the stored site events by the server's local date of
 * acceptance (noon boundary), so a client ts is normally in the file of
 * its own day and at most a day off in a neighbour's; a run's file holds
 * the events of the runs that used its directory.  A slice of time
 * [t0, t1) therefore needs the ring, the day files day_key(t0 - 1 day) ..
 * day_key(t1 + 1 day), and the run files of the runs active within a day
 * of it: dates are iterated, the directory is never listed, so the cost
 * follows the window and not the archive.
 *
 * Bounded memory.  The window is walked a slice at a time in the order of
 * the answer (noon-local day slices, so each day file is mostly read by
 * one slice).  A slice collects only the keys of its matching events
 * (where each line is: the ring copy, or a file and an offset), at most
 * SLICE_CAP of them; a slice that holds more is halved and done again.
 * With `every` it keeps one key per type per bucket as it goes, so a long
 * window costs its buckets, not its events.  The keys are sorted and the
 * lines read back one by one as they are handed to `emit`.  Each file's
 * ts range is remembered once it has been read to its end, so later
 * slices skip the files that cannot hold their events.
 *
 * Each event once.  A stored event is appended to its file and put into
 * the ring in one critical section, file first, and the ring drops its
 * oldest events first, so what the ring holds of a file is known from
 * seqs alone: the spans of ptm_recent_info_t (per stream, and per run by
 * its tie; seqs a crash left unused fall between them).  A slice first
 * copies the ring's events of the slice, with the spans as they were at
 * that moment, then reads the files: a line whose seq is in a span was in
 * the ring then and is skipped in favour of the copy (same bytes); any
 * other was not, and is taken from the file (a line appended after that
 * moment has a seq beyond every span: a new event, taken or not).  Every
 * event of the slice is so taken once, from exactly one place.  A slice
 * whose time the ring held nothing of when it was first asked is not
 * asked again: all its stored events then come from the files, and the
 * ring's later arrivals there (new events) may be missed, which the
 * contract allows.
 *
 * Each event once across pages.  A page ends at the key of its last
 * event, L, and the next continues strictly after L in the same order.
 * Keys are the event's own (ts, stream, seq, tie), the same whether it is
 * read from the ring or from its file, so each page takes each event of
 * its window once (above) and consecutive pages take disjoint ranges of
 * keys: an event that matched on the first page and is still stored (or
 * still in the ring) is returned on exactly one page; events that arrive
 * meanwhile fall wherever their key puts them, before L (never seen) or
 * after (seen once).  An ephemeral event the ring dropped between pages
 * is gone (recent_since says from when the ring is complete).  With
 * `every`, the selection of a bucket (the greatest key per type) depends
 * on the whole bucket: a slice never splits a bucket, and a page after a
 * cursor reads the cursor's bucket whole again, selects as the first
 * page did and emits only what lies after L.
 *
 * A line is trusted as little as the files are (they are the User's): it
 * must start as the module writes it, {"seq":N,"ts":"..","stream":"site"
 * or "run","type":"..","data":..,"meta":..}, in a file of its stream, and
 * end in a newline; a line that is emitted must be well-formed JSON (a
 * ring line is: the module wrote it, or ptm_ring_copy checked it).  What
 * fails is skipped and counted once per file per request.  A ts that is
 * not an RFC 3339 time (clients may send any string) is a line that never
 * matches a window, not damage. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include "ptm_buf.h"
#include "ptm_facts.h"
#include "ptm_filecache.h"
#include "ptm_hash.h"
#include "ptm_fs.h"
#include "ptm_hist_int.h"
#include "ptm_history.h"
#include "ptm_json.h"
#include "ptm_run.h"
#include "ptm_runs.h"
#include "ptm_stash.h"
#include "ptm_test_hook.h"
#include "ptm_time.h"

#ifdef PTM_TEST_HOOKS
unsigned ptm_history_slice_cap = PTM_HISTORY_SLICE_CAP;
#endif

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
#define SLICE_MIN ((apr_time_t)1000)            /* 1 ms */

#define RUN_FILE "telemetry.ndjson"
#define OVERFLOW (APR_OS_START_USERERR + 90)    /* internal: split */

/* ---- arithmetic ----------------------------------------------------------*/

/* The bucket boundary at or below / above `t` (buckets of `every` from
 * the epoch). */
static apr_time_t align_down(apr_time_t t, apr_time_t every)
{
    apr_time_t q = floor_div(t, every);

    return q < APR_INT64_MIN / every ? APR_INT64_MIN : q * every;
}

static apr_time_t align_up(apr_time_t t, apr_time_t every)
{
    apr_time_t d = align_down(t, every);

    return d == t ? t : sat_add(d, every);
}

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

/* ---- the window in slices ------------------------------------------------*/

/* The end of the slice starting at `pos` (ascending): the next noon, or
 * the window's or the era's edge; no wider than `width` when set. */
static apr_time_t slice_end(const hist_t *h, apr_time_t pos,
                            apr_time_t width)
{
    apr_time_t b;

    if (pos < ERA_LO) {
        b = ERA_LO;
    }
    else if (pos >= h->era_hi) {
        b = h->hi;
    }
    else {
        b = ptm_hist_day_noon(pos, 1);
        if (b <= pos) {
            b = sat_add(pos, DAY);
        }
        if (b > h->era_hi) {
            b = h->era_hi;
        }
    }
    if (width && sat_add(pos, width) < b) {
        b = sat_add(pos, width);
    }
    if (h->q->every) {
        b = align_up(b, h->q->every);
    }
    return b > h->hi ? h->hi : b;
}

/* The start of the slice ending at `pos` (descending). */
static apr_time_t slice_start(const hist_t *h, apr_time_t pos,
                              apr_time_t width)
{
    apr_time_t a;

    if (pos > h->era_hi) {
        a = h->era_hi;
    }
    else if (pos <= ERA_LO) {
        a = h->lo;
    }
    else {
        a = ptm_hist_day_noon(pos - 1, 0);
        if (a >= pos || a == 0) {
            a = sat_sub(pos, DAY);
        }
        if (a < ERA_LO) {
            a = ERA_LO;
        }
    }
    if (width && sat_sub(pos, width) > a) {
        a = sat_sub(pos, width);
    }
    if (h->q->every) {
        a = align_down(a, h->q->every);
    }
    return a < h->lo ? h->lo : a;
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

    if (n == 0 || ptm_hist_parse_line(&l, s, n) != 0
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
        if (len && ptm_hist_parse_line(&l, s + at, len) == 0
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

/* ---- emitting ------------------------------------------------------------*/

/* The order of the answer (ascending): by key, then where (two lines of
 * a file may carry one key; no two entries are in the same place). */
static int ent_cmp(const ent_t *x, const ent_t *y)
{
    int c;

    if (x->key.ts != y->key.ts) {
        return x->key.ts < y->key.ts ? -1 : 1;
    }
    if ((c = ptm_key_cmp(&x->key, &y->key)) != 0) {
        return c;
    }
    if (x->file != y->file) {
        return x->file < y->file ? -1 : 1;
    }
    return x->off < y->off ? -1 : x->off > y->off;
}

/* The end of the run in order that starts at a[i]. */
static size_t run_end(ent_t *const *a, size_t i, size_t n)
{
    for (i++; i < n && ent_cmp(a[i - 1], a[i]) < 0; i++) {
    }
    return i;
}

/* Sort a[0..n) by ent_cmp, with room for n more at t.  The keys come as a
 * few runs already in order (the ring's events in the order they were
 * accepted, each file's lines in its order, both mostly by ts), so runs
 * are merged, two by two, until one is left: about linear here, and
 * never worse than a merge sort. */
static void sort_ents(ent_t **a, ent_t **t, size_t n)
{
    ent_t **src = a, **dst = t, **sw;
    size_t i, j, k, x, y, o, runs;

    if (n < 2 || run_end(a, 0, n) == n) {
        return;
    }
    do {
        runs = 0;
        for (i = 0; i < n; i = k) {
            j = run_end(src, i, n);
            k = j < n ? run_end(src, j, n) : n;
            for (x = i, y = j, o = i; x < j && y < k; o++) {
                dst[o] = ent_cmp(src[y], src[x]) < 0 ? src[y++] : src[x++];
            }
            while (x < j) {
                dst[o++] = src[x++];
            }
            while (y < k) {
                dst[o++] = src[y++];
            }
            runs++;
        }
        sw = src;
        src = dst;
        dst = sw;
    } while (runs > 1);
    if (src != a) {
        memcpy(a, src, n * sizeof(*a));
    }
}

/* The line of `e`: the ring's copy, or read back from its file and found
 * to be still the line that was selected. */
static const char *ent_line(hist_t *h, slice_t *sl, const ent_t *e)
{
    const sfile_t *f;
    line_t l;

    if (e->file < 0) {
        return APR_ARRAY_IDX(sl->ring, (int)e->off, ptm_recent_t).line;
    }
    f = &APR_ARRAY_IDX(sl->files, e->file, sfile_t);
    if (f->data) {
        return f->data + e->off;        /* the bytes that were scanned */
    }
    if (ptm_hist_grow((void **)&h->lbuf, &h->lbuf_cap, (size_t)e->len + 1,
                      1) != 0
        || pread(f->fd, h->lbuf, (size_t)e->len + 1, (off_t)e->off)
           != (ssize_t)e->len + 1
        || h->lbuf[e->len] != '\n'
        || ptm_hist_parse_line(&l, h->lbuf, e->len) != 0
        || l.seq != e->key.seq
        || ptm_hist_line_ts(&l, h->lbuf) != e->key.ts) {
        return NULL;
    }
    return h->lbuf;
}

static apr_status_t emit_slice(hist_t *h, slice_t *sl)
{
    const ptm_query_t *q = h->q;
    size_t k;

    /* Sorted by pointer: a merge moves 8 bytes an entry rather than a
     * whole ent_t. */
    if (ptm_hist_grow((void **)&h->order, &h->order_cap, sl->n,
                      sizeof(ent_t *))
        || ptm_hist_grow((void **)&h->merge, &h->merge_cap, sl->n,
                         sizeof(ent_t *))) {
        return APR_ENOMEM;
    }
    for (k = 0; k < sl->n; k++) {
        h->order[k] = &h->ents[k];
    }
    sort_ents(h->order, h->merge, sl->n);
    for (k = 0; k < sl->n; k++) {
        const ent_t *e = h->order[h->asc ? k : sl->n - 1 - k];
        const char *line;
        apr_status_t rv;

        if (q->every && !ptm_hist_after_cursor(h, &e->key)) {
            continue;                   /* before the cursor, in its bucket */
        }
        /* A line of a file is the User's: checked as it goes out, unless
         * the bytes it is sent from were checked whole already.  The
         * ring's are the module's own, well-formed when written, and
         * checked when restored from an old state (ptm_ring_copy). */
        if (!(line = ent_line(h, sl, e))
            || (e->file >= 0
                && !APR_ARRAY_IDX(sl->files, e->file, sfile_t).verified
                && !ptm_json_well_formed(line, e->len))) {
            h->res->skipped++;
            continue;
        }
        if ((q->limit > 0 && h->res->events >= (unsigned)q->limit)
            || (h->conf->page_bytes && h->res->events
                && h->bytes + e->len > h->conf->page_bytes)) {
            h->res->more = 1;
            h->done = 1;
            return APR_SUCCESS;
        }
        if ((rv = h->emit(h->ctx, line, e->len)) != APR_SUCCESS) {
            return rv;
        }
        h->bytes += e->len;
        h->res->events++;
        h->res->last = e->key;
    }
    if (q->limit > 0 && h->res->events >= (unsigned)q->limit) {
        h->looking = 1;
    }
    return APR_SUCCESS;
}

/* One slice: the ring, then the files, then the lines in order.  Returns
 * APR_SUCCESS, OVERFLOW (split it), or the error of the store or emit. */
static apr_status_t do_slice(hist_t *h, apr_time_t t0, apr_time_t t1,
                             int uncapped)
{
    slice_t sl;
    apr_status_t rv;
    int i;

    memset(&sl, 0, sizeof(sl));
    if ((rv = apr_pool_create(&sl.p, h->p)) != APR_SUCCESS) {
        return rv;
    }
    sl.t0 = t0;
    sl.t1 = t1;
    sl.cap = uncapped ? SIZE_MAX : SLICE_CAP;
    sl.files = apr_array_make(sl.p, 8, sizeof(sfile_t));
    if (h->q->every && ptm_hist_slots_grow(h, 1024, 0) != 0) {
        rv = APR_ENOMEM;
        goto out;
    }
    PTM_TEST_HOOK("history:slice", 0);
    if ((rv = ptm_hist_take_ring(h, &sl)) != APR_SUCCESS) {
        goto out;
    }
    PTM_TEST_HOOK("history:ring-taken", 0);
    if (!sl.overflow && !sl.found) {
        ptm_hist_read_files(h, &sl);
    }
    if (sl.overflow) {
        /* Uncapped, only memory can have run out. */
        rv = uncapped ? APR_ENOMEM : OVERFLOW;
    }
    else if (sl.found) {
        h->res->more = 1;
        h->done = 1;
    }
    else if (!h->looking) {
        rv = emit_slice(h, &sl);
    }
out:
    for (i = 0; i < sl.files->nelts; i++) {
        ptm_hist_sfile_close(h, &APR_ARRAY_IDX(sl.files, i, sfile_t));
    }
    apr_pool_destroy(sl.p);
    return rv;
}

/* ---- runs ----------------------------------------------------------------*/

static void add_run(hist_t *h, apr_hash_t *by_dir, const ptm_runs_entry_t *e)
{
    const char *root, *rel, *k;
    uint32_t tie;
    span_t *s;
    src_t *src;
    int i;

    /* Its events were accepted while it ran; their ts, a day off at most.
     * A run that cannot hold events of the window is not looked at again
     * (a journal planted with a million runs costs one pass, not one per
     * slice). */
    if (!overlaps(sat_sub(e->start, DAY), sat_add(e->stop, DAY), h->lo,
                  h->hi)) {
        return;
    }
    /* Only beneath the site dir or a run root, as run start allows (the
     * journal is the User's; the roots are the admin's, and may have
     * changed since). */
    if (ptm_run_split_dir(&root, &rel, e->run_dir, h->conf->site_dir,
                          h->conf->run_roots, h->p) != APR_SUCCESS) {
        h->res->skipped++;
        return;
    }
    PTM_TEST_HOOK("history:run", 0);
    k = apr_pstrcat(h->p, root, "/", rel, NULL);
    if (!(src = apr_hash_get(by_dir, k, APR_HASH_KEY_STRING))) {
        src = apr_pcalloc(h->p, sizeof(*src));
        src->run = PTM_STREAM_RUN;
        src->root = root;
        src->rel = rel;
        src->ties = apr_array_make(h->p, 1, sizeof(uint32_t));
        src->spans = apr_array_make(h->p, 1, sizeof(span_t));
        apr_hash_set(by_dir, k, APR_HASH_KEY_STRING, src);
        APR_ARRAY_PUSH(h->runs, src_t *) = src;
    }
    /* Its events were accepted while it ran; their ts, a day off at most. */
    s = apr_array_push(src->spans);
    s->lo = sat_sub(e->start, DAY);
    s->hi = sat_add(e->stop, DAY);
    /* Lines sort with the tie of the latest run that used the directory
     * (the one the ring's copies are likeliest to belong to). */
    tie = ptm_query_tie(e->run_dir, strlen(e->run_dir));
    src->tie = tie;
    for (i = 0; i < src->ties->nelts; i++) {
        if (APR_ARRAY_IDX(src->ties, i, uint32_t) == tie) {
            return;
        }
    }
    APR_ARRAY_PUSH(src->ties, uint32_t) = tie;
}

/* 1 if the run `e` can hold events of [lo, hi): its events were accepted
 * while it ran, their ts a day off at most (as add_run's span). */
static int run_near(const ptm_runs_entry_t *e, apr_time_t lo, apr_time_t hi)
{
    return overlaps(sat_sub(e->start, DAY), sat_add(e->stop, DAY), lo, hi);
}

/* The runs index and the active run (which may predate the journal, or
 * have failed to be noted in it).  Only the directories of the runs near
 * the window are looked at (a year of runs is mostly far from it), with
 * every run that used them (their ties say which ring events are theirs). */
static apr_status_t load_runs(hist_t *h)
{
    const apr_array_header_t *runs;
    apr_hash_t *by_dir = apr_hash_make(h->p), *near;
    ptm_store_run_t run;
    const ptm_runs_entry_t *last;
    ptm_runs_entry_t active;
    unsigned bad = 0;
    apr_status_t rv;
    int i, n, has_active = 0;

    h->runs = apr_array_make(h->p, 8, sizeof(src_t *));
    if (h->q->stream == PTM_STREAM_SITE) {
        return APR_SUCCESS;
    }
    if (ptm_runs_read_cached(&runs, &bad, h->conf->site_dir, h->p)
        != APR_SUCCESS) {
        bad++;                          /* a journal we cannot read */
    }
    h->res->skipped += bad;
    if ((rv = ptm_store_run_peek(&run, h->conf->store, h->p)) != APR_SUCCESS) {
        return rv;
    }
    last = runs->nelts ? &APR_ARRAY_IDX(runs, runs->nelts - 1,
                                        ptm_runs_entry_t) : NULL;
    if (run.active && !(last && last->stop == APR_INT64_MAX
                        && strcmp(last->run_dir, run.run_dir) == 0)) {
        /* Its start is not known: any time. */
        active.run_id = run.run_id;
        active.run_dir = run.run_dir;
        active.start = APR_INT64_MIN;
        active.stop = APR_INT64_MAX;
        has_active = 1;
    }
    n = runs->nelts + has_active;
    /* The directories of the runs near the window, by name as the
     * journal has it (the module writes each one normalised). */
    near = apr_hash_make(h->p);
    for (i = 0; i < n; i++) {
        const ptm_runs_entry_t *e = i < runs->nelts
            ? &APR_ARRAY_IDX(runs, i, ptm_runs_entry_t) : &active;

        if (run_near(e, h->lo, h->hi)) {
            apr_hash_set(near, e->run_dir, APR_HASH_KEY_STRING, e);
        }
    }
    for (i = 0; apr_hash_count(near) && i < n; i++) {
        const ptm_runs_entry_t *e = i < runs->nelts
            ? &APR_ARRAY_IDX(runs, i, ptm_runs_entry_t) : &active;

        if (apr_hash_get(near, e->run_dir, APR_HASH_KEY_STRING)) {
            add_run(h, by_dir, e);
        }
    }
    return APR_SUCCESS;
}

/* ---- the query -----------------------------------------------------------*/

static apr_status_t free_buffers(void *data)
{
    hist_t *h = data;

    free(h->buf);
    free(h->lbuf);
    ptm_stash_give(h->ents, h->ents_cap * sizeof(ent_t));
    free(h->order);
    free(h->merge);
    free(h->slots);
    if (h->site_fd >= 0) {
        close(h->site_fd);
    }
    return APR_SUCCESS;
}

/* 1 if `s` is an integer as JSON writes one (-?(0|[1-9][0-9]*)). */
static int is_json_int(const char *s, size_t n)
{
    size_t i = 0;

    if (n && s[0] == '-') {
        i++;
    }
    if (i == n || (s[i] == '0' && n - i > 1)) {
        return 0;
    }
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

/* Walk the window slice by slice in the answer's order. */
static apr_status_t walk(hist_t *h)
{
    apr_time_t pos = h->asc ? h->lo : h->hi, width = 0, a, b, mid;
    apr_time_t every = h->q->every;
    apr_status_t rv;
    int uncapped;

    while (!h->done && (h->asc ? pos < h->hi : pos > h->lo)) {
        if (h->conf->gone && h->conf->gone(h->conf->gone_ctx)) {
            return APR_ECONNABORTED;
        }
        if (h->asc) {
            a = pos;
            b = slice_end(h, pos, width);
        }
        else {
            b = pos;
            a = slice_start(h, pos, width);
        }
        uncapped = 0;
        while ((rv = do_slice(h, a, b, uncapped)) == OVERFLOW) {
            /* Too many events: half of it (in the answer's order), again;
             * never a bucket split; below a millisecond (events that share
             * one ts), take it whole. */
            PTM_TEST_HOOK("history:split", 0);
            /* (Halves taken apart: b - a may not fit an int64.) */
            mid = a / 2 + b / 2 + (a % 2 + b % 2) / 2;
            if (every) {
                mid = h->asc ? align_down(mid, every) : align_up(mid, every);
            }
            if ((uint64_t)b - (uint64_t)a <= (uint64_t)SLICE_MIN || mid <= a
                || mid >= b) {
                uncapped = 1;
                continue;
            }
            if (h->asc) {
                b = mid;
            }
            else {
                a = mid;
            }
            width = (uint64_t)b - (uint64_t)a > (uint64_t)APR_INT64_MAX
                    ? APR_INT64_MAX : b - a;
        }
        if (rv != APR_SUCCESS) {
            return rv;
        }
        pos = h->asc ? b : a;
        if (width) {
            /* Grow back: the next stretch may be quieter. */
            width = width > DAY ? 0 : width * 2;
        }
    }
    return APR_SUCCESS;
}

apr_status_t ptm_history_query(ptm_history_result_t *res,
                               const ptm_history_conf_t *conf,
                               const ptm_query_t *q, apr_time_t now,
                               ptm_history_emit_fn emit, void *ctx,
                               apr_pool_t *p)
{
    hist_t h;
    apr_status_t rv;
    apr_time_t every = q->every;

    memset(res, 0, sizeof(*res));
    memset(&h, 0, sizeof(h));
    h.conf = conf;
    h.q = q;
    h.res = res;
    h.emit = emit;
    h.ctx = ctx;
    h.site_fd = -1;
    if ((rv = apr_pool_create(&h.p, p)) != APR_SUCCESS) {
        return rv;
    }
    apr_pool_cleanup_register(h.p, &h, free_buffers, apr_pool_cleanup_null);
    h.asc = q->ndjson || !q->desc;
    h.lo = q->since;
    h.hi = q->until;
    h.era_hi = sat_add(now, 2 * DAY);
    h.days = apr_hash_make(h.p);
    if (q->has_after) {
        /* Only what lies after the cursor; with `every`, its bucket whole
         * (its selection needs all of it). */
        apr_time_t t = q->after.ts;

        if (h.asc) {
            t = every ? align_down(t, every) : t;
            h.lo = t > h.lo ? t : h.lo;
        }
        else {
            t = every ? sat_add(align_down(t, every), every) : sat_add(t, 1);
            h.hi = t < h.hi ? t : h.hi;
        }
    }
    if (q->run_id) {
        ptm_buf_init(&h.rid, h.p, q->run_id_len + 8);
        ptm_json_dump_string(&h.rid, q->run_id, q->run_id_len);
        h.rid_int = is_json_int(q->run_id, q->run_id_len);
    }
    if ((h.ents = ptm_stash_take(1024 * sizeof(ent_t), &h.ents_cap)) == NULL) {
        rv = APR_ENOMEM;
        goto out;
    }
    h.ents_cap /= sizeof(ent_t);
    if (q->stream != PTM_STREAM_RUN) {
        h.site_fd = open(conf->site_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if ((rv = load_runs(&h)) != APR_SUCCESS) {
        goto out;
    }
    if ((rv = walk(&h)) != APR_SUCCESS) {
        goto out;
    }
    if (!h.ring_asked) {
        /* An empty window: still say how far back the ring goes. */
        slice_t sl;

        memset(&sl, 0, sizeof(sl));
        sl.p = h.p;
        sl.t0 = sl.t1 = 0;
        sl.cap = 1;
        rv = ptm_hist_take_ring(&h, &sl);
    }
out:
    apr_pool_destroy(h.p);
    return rv;
}

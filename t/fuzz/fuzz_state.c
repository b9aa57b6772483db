/* A libFuzzer target over the state file (SPEC §11.6: the shared state is
 * data, not code).  The input is a state file as httpd's parent would find
 * it at start; it is written to a scratch state directory, opened with
 * ptm_store_open_file, and whatever was in it, the store must then answer
 * well-formed JSON and keep working:
 *   - /current is one JSON object {"current":{...}} whose keys are unique
 *     and whose every value /current/{type} gives back the same;
 *   - the run is a JSON object with a printable id and an absolute dir
 *     (as run start takes them),
 *     or there is none;
 *   - an event, a run stop and a run start succeed or fail cleanly (507);
 *   - the state as left reopens exactly as it was, nothing dropped.
 * Built with clang -fsanitize=fuzzer,address,undefined (`make fuzz-state`),
 * or with -DPTM_FUZZ_REPLAY as a plain program that runs the files named
 * on its command line (`make fuzz-replay`), and that also writes the seed
 * corpus (--seeds DIR: states made through the store's own API).
 *
 * Input: one flags byte, then the file.
 *   flags  bits 0-1: 0 this layout, opened at its own size (used in place)
 *                    1 this layout, opened at another size (carried over)
 *                    2 layout 3, the one before (upgraded)
 *                    3 raw: the header as given (magic, version, size)
 *                    For 0-2 the header's magic, version and size are set
 *                    so that the file is taken as a state and the rest of
 *                    it is what gets checked.
 *          bit 2:    the file is the state an earlier version left in the
 *                    site directory (`legacy`), with no state file
 *          bit 3:    the file is as long as the input, not 64 KiB
 *          bit 4:    (0-2) the writing mark is set: a crash mid-update
 * A file shorter than 64 KiB (PTM_STORE_MIN_SIZE) is padded with zeros, so
 * a state whose arena ends early needs only its first bytes.
 *
 * ptm_store_open_file maps the file itself; the link wraps mmap()
 * (-Wl,--wrap=mmap) so that every shared file mapping sits between two
 * inaccessible pages: a read or write past either end of the state faults
 * at once instead of landing in a neighbouring mapping. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <jansson.h>

#include "ptm_buf.h"
#include "ptm_json.h"
#include "ptm_store.h"
#include "ptm_store_int.h"

#define STATE_SIZE ((apr_size_t)PTM_STORE_MIN_SIZE)
#define OTHER_SIZE ((apr_size_t)80 * 1024)
#define PAGE 4096
#define TS_PART ",\"ts\":\"2026-03-17T20:15:00.000Z\""

enum { M_SAME, M_OTHER_SIZE, M_LAYOUT3, M_RAW };
#define F_LEGACY 4
#define F_INPUT_LEN 8
#define F_WRITING 16

static void fail(const char *what, int line)
{
    fprintf(stderr, "fuzz_state.c:%d: invariant failed: %s\n", line, what);
    __builtin_trap();
}

#define CHECK(c) ((c) ? (void)0 : fail(#c, __LINE__))

/* ---- shared file mappings between guard pages ---------------------------- */

void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd,
                  off_t off);

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd,
                  off_t off)
{
    size_t span = (len + PAGE - 1) / PAGE * PAGE + 2 * PAGE;
    char *g;
    void *m;

    if (fd < 0 || addr || !(flags & MAP_SHARED)) {
        return __real_mmap(addr, len, prot, flags, fd, off);
    }
    g = __real_mmap(NULL, span, PROT_NONE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (g == MAP_FAILED) {
        return MAP_FAILED;
    }
    m = __real_mmap(g + PAGE, len, prot, flags | MAP_FIXED, fd, off);
    if (m == MAP_FAILED) {
        munmap(g, span);
    }
    return m;
}

/* Unmap what ptm_store_open_file mapped, guards too. */
static void unmap_state(void *base, apr_size_t size)
{
    CHECK(munmap((char *)base - PAGE,
                 (size + PAGE - 1) / PAGE * PAGE + 2 * PAGE) == 0);
}

/* ---- the fixture, made once --------------------------------------------- */

static apr_pool_t *g_pool;
static char *g_top, *g_state_dir, *g_state, *g_legacy;

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    remove(path);                       /* best effort: keep walking */
    return 0;
}

static void cleanup_at_exit(void)
{
    if (g_top) {
        nftw(g_top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
}

static void fixture_init(void)
{
    const char *tmp = getenv("TMPDIR");
    char *tmpl;

    apr_initialize();
    CHECK(apr_pool_create(&g_pool, NULL) == APR_SUCCESS);
    tmpl = apr_pstrcat(g_pool, tmp && *tmp ? tmp : "/tmp",
                       "/ptm-fuzz-state-XXXXXX", NULL);
    CHECK(mkdtemp(tmpl) != NULL);
    g_top = tmpl;
    atexit(cleanup_at_exit);
    g_state_dir = apr_pstrcat(g_pool, g_top, "/state", NULL);
    CHECK(mkdir(g_state_dir, 0700) == 0);
    CHECK(mkdir(apr_pstrcat(g_pool, g_top, "/site", NULL), 0755) == 0);
    g_state = apr_pstrcat(g_pool, g_state_dir, "/state", NULL);
    g_legacy = apr_pstrcat(g_pool, g_top, "/site/.panoptes-telemetry.state",
                           NULL);
}

/* ---- helpers ------------------------------------------------------------ */

static void write_file(const char *path, const char *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    CHECK(fd >= 0);
    CHECK(write(fd, buf, len) == (ssize_t)len);
    CHECK(close(fd) == 0);
}

/* 1 if `path` holds exactly `len` bytes equal to `buf`. */
static int file_is(const char *path, const char *buf, size_t len)
{
    struct stat sb;
    char *got;
    int fd, same;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    if (fstat(fd, &sb) != 0 || (size_t)sb.st_size != len) {
        close(fd);
        return 0;
    }
    got = malloc(len ? len : 1);
    CHECK(got != NULL);
    same = read(fd, got, len) == (ssize_t)len && memcmp(got, buf, len) == 0;
    free(got);
    close(fd);
    return same;
}

/* The state directory holds the state file and nothing else (no
 * state.new left behind, nothing made through a link). */
static void check_state_dir(void)
{
    DIR *d = opendir(g_state_dir);
    struct dirent *de;

    CHECK(d != NULL);
    while ((de = readdir(d)) != NULL) {
        CHECK(strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0
              || strcmp(de->d_name, "state") == 0);
    }
    closedir(d);
}

static int printable(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* jansson reads only what both grammars share, and the store serves only
 * JSON in that intersection: no raw NUL, numbers within double and int64,
 * no lone surrogate.  NUL escapes in strings are fine. */
static json_t *load(const char *s, size_t n, int any)
{
    json_error_t err;

    return json_loadb(s, n, JSON_ALLOW_NUL | (any ? JSON_DECODE_ANY : 0),
                      &err);
}

/* Record one event of `type` (an identifier) on `stream`, current only.
 * Returns the store's status. */
static apr_status_t post(ptm_store_t *st, int stream, const char *type,
                         const char *data, uint64_t *seq, apr_pool_t *p)
{
    ptm_store_event_t ev;
    ptm_store_run_t run;
    ptm_buf_t body;
    apr_status_t rv;

    if ((rv = ptm_store_run_peek(&run, st, p)) != APR_SUCCESS) {
        return rv;
    }
    memset(&ev, 0, sizeof(ev));
    ev.run_gen = run.gen;
    ev.stream = stream;
    ev.key = apr_psprintf(p, "\"%s\"", type);
    ev.key_len = strlen(ev.key);
    ev.ts_part = TS_PART;
    ev.ts_len = strlen(TS_PART);
    ptm_buf_init(&body, p, 128);
    ptm_buf_puts(&body, ",\"type\":");
    ptm_buf_puts(&body, ev.key);
    ptm_buf_puts(&body, ",\"data\":");
    ptm_buf_puts(&body, data);
    ptm_buf_puts(&body, ",\"meta\":{");
    if (stream == PTM_STREAM_RUN && run.active) {
        ptm_buf_puts(&body, "\"run_id\":");
        ptm_json_dump_string(&body, run.run_id, run.run_id_len);
    }
    ptm_buf_puts(&body, "}}");
    ev.body_part = body.data;
    ev.body_len = body.len;
    ev.make_current = 1;
    ev.fd = -1;
    return ptm_store_event(st, &ev, seq);
}

/* What a state shows: /current, the run object (NULL: none), and its
 * counters. */
typedef struct {
    ptm_buf_t current;
    ptm_buf_t run;
    int run_active;
    ptm_store_stats_t stats;
} view_t;

/* Read everything the API can read of `st` and check it. */
static void check_view(view_t *v, ptm_store_t *st, apr_pool_t *p)
{
    json_t *all, *cur, *val, *one, *seen;
    ptm_store_run_t run;
    ptm_buf_t key, b;
    const char *t = NULL;
    size_t at, tlen = 0;
    apr_status_t rv;

    memset(v, 0, sizeof(*v));
    CHECK(ptm_store_stats(st, &v->stats, p) == APR_SUCCESS);
    CHECK(v->stats.bytes_used <= v->stats.bytes_total);

    /* /current: one object with one member, an object. */
    ptm_buf_init(&v->current, p, 256);
    CHECK(ptm_store_current(st, &v->current) == APR_SUCCESS);
    all = load(v->current.data, v->current.len, 0);
    if (!all) {
        fprintf(stderr, "/current: %.*s\n", (int)v->current.len,
                v->current.data);
    }
    CHECK(all != NULL);
    cur = json_object_get(all, "current");
    CHECK(json_object_size(all) == 1 && json_is_object(cur));

    /* Its members one by one (jansson keeps the last of duplicate keys
     * without a word): each key a string seen once, each value an
     * envelope object that /current/{type} gives back the same. */
    CHECK(memcmp(v->current.data, "{\"current\":{", 12) == 0);
    at = 12;
    seen = json_object();
    while (v->current.data[at] != '}') {
        json_error_t err;
        json_t *k;

        k = json_loadb(v->current.data + at, v->current.len - at,
                       JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK
                       | JSON_ALLOW_NUL, &err);
        CHECK(json_is_string(k));
        at += err.position;
        t = json_string_value(k);
        tlen = json_string_length(k);
        CHECK(json_object_getn(seen, t, tlen) == NULL);
        json_object_setn_new(seen, t, tlen, json_true());
        CHECK(v->current.data[at] == ':');
        at++;
        val = json_loadb(v->current.data + at, v->current.len - at,
                         JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, &err);
        CHECK(json_is_object(val));
        CHECK(json_is_integer(json_object_get(val, "seq")));
        at += err.position;
        CHECK(v->current.data[at] == ',' || v->current.data[at] == '}');
        at += v->current.data[at] == ',';

        ptm_buf_init(&key, p, tlen + 8);
        ptm_json_dump_string(&key, t, tlen);
        ptm_buf_init(&b, p, 256);
        rv = ptm_store_current_one(st, key.data, key.len, &b);
        CHECK(rv == APR_SUCCESS);
        one = load(b.data, b.len, 0);
        CHECK(one != NULL && json_equal(one, val));
        json_decref(one);
        json_decref(val);
        json_decref(k);
    }
    CHECK(json_object_size(seen) == json_object_size(cur));
    CHECK(at + 2 == v->current.len
          && memcmp(v->current.data + at, "}}", 2) == 0);
    json_decref(seen);
    json_decref(all);

    /* The run: an object with an id and a dir that can be used. */
    ptm_buf_init(&v->run, p, 256);
    rv = ptm_store_run_get(st, &v->run);
    CHECK(rv == APR_SUCCESS || rv == PTM_STORE_NORUN);
    v->run_active = rv == APR_SUCCESS;
    CHECK(v->run_active == v->stats.run_active);
    CHECK(ptm_store_run_peek(&run, st, p) == APR_SUCCESS);
    CHECK(run.active == v->run_active);
    if (v->run_active) {
        json_t *o = load(v->run.data, v->run.len, 0);

        /* jansson refuses a NUL in an object key even with
         * JSON_ALLOW_NUL; run start takes one in a meta key ("k\u0000"),
         * and it is JSON all the same. */
        CHECK(json_is_object(o)
              || (v->run.data[0] == '{'
                  && ptm_json_well_formed(v->run.data, v->run.len)
                  && memmem(v->run.data, v->run.len, "\\u0000", 6)));
        json_decref(o);
        /* As run start takes them: an id of UTF-8 without control
         * characters (a log and status item), any length with a run_dir;
         * an absolute dir, whose name may hold control characters. */
        CHECK(run.run_id_len >= 1
              && printable(run.run_id, run.run_id_len)
              && ptm_utf8_valid(run.run_id, run.run_id_len));
        CHECK(run.run_dir[0] == '/'
              && ptm_utf8_valid(run.run_dir, strlen(run.run_dir)));
    }
}

/* An event, and a run stopped and (another) started, on whatever the
 * state held: each succeeds or fails cleanly. */
static void use_state(ptm_store_t *st, const view_t *v, apr_pool_t *p)
{
    static const char obj[] = "{\"run_dir\":\"/srv/fz/9\",\"run_id\":\"9\","
                              "\"meta\":{\"run_id\":\"9\"}}";
    ptm_buf_t out;
    uint64_t seq = 0;
    apr_status_t rv;
    view_t after;

    rv = post(st, PTM_STREAM_SITE, "fz", "[1,\"\\u00e9\"]", &seq, p);
    /* Refused cleanly: no room, or a counter at the top of int64. */
    CHECK(rv == APR_SUCCESS || rv == PTM_STORE_FULL
          || rv == APR_FROM_OS_ERROR(EOVERFLOW));
    CHECK(rv != APR_SUCCESS || seq == v->stats.seq[PTM_STREAM_SITE] + 1);
    if (v->run_active) {
        ptm_buf_init(&out, p, 256);
        CHECK(ptm_store_run_stop(st, &out) == APR_SUCCESS);
        CHECK(out.len == v->run.len
              && memcmp(out.data, v->run.data, out.len) == 0);
    }
    rv = ptm_store_run_start(st, obj, strlen(obj), "9", 1, "/srv/fz/9",
                             NULL, NULL);
    CHECK(rv == APR_SUCCESS || rv == PTM_STORE_FULL);
    if (rv == APR_SUCCESS) {
        rv = post(st, PTM_STREAM_RUN, "fz", "{\"r\":null}", &seq, p);
        CHECK(rv == APR_SUCCESS || rv == PTM_STORE_FULL
              || rv == APR_FROM_OS_ERROR(EOVERFLOW));
    }
    check_view(&after, st, p);
}

static void check_same(const view_t *a, const view_t *b)
{
    int s;

    CHECK(a->current.len == b->current.len
          && memcmp(a->current.data, b->current.data, a->current.len) == 0);
    CHECK(a->run_active == b->run_active && a->run.len == b->run.len
          && memcmp(a->run.data, b->run.data, a->run.len) == 0);
    for (s = 0; s < 2; s++) {
        CHECK(a->stats.seq[s] == b->stats.seq[s]);
        CHECK(a->stats.events[s] == b->stats.events[s]);
        CHECK(a->stats.types[s] == b->stats.types[s]);
    }
    CHECK(a->stats.write_errors == b->stats.write_errors);
    CHECK(memcmp(a->stats.answers, b->stats.answers,
                 sizeof(a->stats.answers)) == 0);
}

/* ---- the target ---------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned flags, mode;
    size_t flen;
    apr_size_t open_size, ring;
    apr_pool_t *p;
    ptm_store_open_e how, want = (ptm_store_open_e)-1;
    unsigned dropped;
    void *base;
    int dfd, fixed;
    char *img;
    view_t v, again;
    ptm_store_t *st;

    if (!g_pool) {
        fixture_init();
    }
    if (size < 1) {
        return 0;
    }
    flags = data[0];
    mode = flags & 3;
    flen = flags & F_INPUT_LEN ? size - 1 : STATE_SIZE;
    open_size = mode == M_OTHER_SIZE ? OTHER_SIZE : STATE_SIZE;
    CHECK(apr_pool_create(&p, g_pool) == APR_SUCCESS);

    img = calloc(1, flen ? flen : 1);
    CHECK(img != NULL);
    memcpy(img, data + 1, size - 1 < flen ? size - 1 : flen);
    fixed = mode != M_RAW && flen >= sizeof(hdr_t);
    ring = 0;
    if (fixed) {
        hdr_t *h = (hdr_t *)img;

        /* Opened in place, the file's ring size is the configured one
         * (its region and records as crafted); else no ring. */
        if (mode == M_SAME) {
            ring = (apr_size_t)h->ring_size;
        }
        h->magic = MAGIC;
        h->version = mode == M_LAYOUT3 ? 3 : LAYOUT_VERSION;
        h->size = flen;
        h->writing = flags & F_WRITING ? 1 : 0;
        want = flags & F_LEGACY ? PTM_STORE_OPEN_MIGRATED
               : mode == M_LAYOUT3 ? PTM_STORE_OPEN_UPGRADED
               : flen == open_size ? PTM_STORE_OPEN_RECOVERED
               : PTM_STORE_OPEN_RESIZED;
    }
    else if (flen == 0 && !(flags & F_LEGACY)) {
        want = PTM_STORE_OPEN_NEW;
    }
    write_file(flags & F_LEGACY ? g_legacy : g_state, img, flen);

    CHECK(ptm_store_open_file(&base, &dfd, &how, &dropped, g_state,
                              g_legacy, open_size, ring, p) == APR_SUCCESS);
    CHECK(want == (ptm_store_open_e)-1 || how == want
          || (ring % 8 && how == PTM_STORE_OPEN_RESIZED));
    CHECK(ptm_store_is_formatted(base, open_size, PTM_STORE_RING_ANY));
    check_state_dir();
    if (flags & F_LEGACY) {
        /* Carried over and removed, or not touched at all. */
        CHECK(how == PTM_STORE_OPEN_MIGRATED || how == PTM_STORE_OPEN_NEW);
        CHECK(how == PTM_STORE_OPEN_MIGRATED ? access(g_legacy, F_OK) != 0
                                             : file_is(g_legacy, img, flen));
    }
    free(img);

    st = ptm_store_attach(base, NULL, p);
    check_view(&v, st, p);
    use_state(st, &v, p);
    check_view(&v, st, p);
    ptm_store_close_files(st);
    unmap_state(base, open_size);
    close(dfd);

    /* What the checks let through reopens as it was: nothing dropped,
     * nothing changed. */
    CHECK(ptm_store_open_file(&base, &dfd, &how, &dropped, g_state,
                              g_legacy, open_size, PTM_STORE_RING_ANY, p)
          == APR_SUCCESS);
    CHECK(how == PTM_STORE_OPEN_RECOVERED && dropped == 0);
    st = ptm_store_attach(base, NULL, p);
    check_view(&again, st, p);
    check_same(&v, &again);
    unmap_state(base, open_size);
    close(dfd);

    unlink(g_state);
    unlink(g_legacy);
    apr_pool_destroy(p);
    return 0;
}

#ifdef PTM_FUZZ_REPLAY
/* ---- the seed corpus ----------------------------------------------------- */

/* Write `flags` and the first bytes of the state file: up to the end of
 * its arena's used part (the rest is zeros the target pads back). */
static void write_seed(const char *dir, const char *name, unsigned flags,
                       apr_pool_t *p)
{
    unsigned char flag = (unsigned char)flags;
    size_t len;
    hdr_t *h;
    char *path;
    FILE *f;
    int fd;

    fd = open(g_state, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    h = apr_palloc(p, STATE_SIZE);
    CHECK(read(fd, h, STATE_SIZE) == (ssize_t)STATE_SIZE);
    close(fd);
    len = (size_t)(h->arena + h->top);
    if (flags & F_INPUT_LEN) {
        h->size = len;          /* a short file: its header says so too */
    }
    path = apr_pstrcat(p, dir, "/", name, NULL);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(&flag, 1, 1, f) == 1 && fwrite(h, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

/* A state with `nsite` site values, and a run with `nrun` values if
 * `run`; the file is left at g_state. */
static void make_state(int nsite, int run, int nrun, int writing,
                       apr_pool_t *p)
{
    static const char *const data[] = {
        "1", "[2.5,-3e-7]", "{\"x\":{\"y\":[true,false,null]}}",
        "\"\\u00e9\\ud83d\\ude00 \\\"q\\\" \\\\ \\n\"", "\"caf\xc3\xa9\"",
        "-9223372036854775808", "{}"
    };
    static const char obj[] = "{\"run_dir\":\"/srv/t/001\",\"run_id\":\"001\","
                              "\"meta\":{\"run_id\":\"001\"},"
                              "\"started_at\":\"2026-03-17T20:15:00Z\"}";
    apr_size_t size = STATE_SIZE;
    ptm_store_open_e how;
    ptm_store_t *st;
    void *base;
    uint64_t seq;
    int dfd, i;

    unlink(g_state);
    /* With a ring: its records are state to check too. */
    CHECK(ptm_store_open_file(&base, &dfd, &how, NULL, g_state, NULL, size,
                              size / 4, p) == APR_SUCCESS);
    st = ptm_store_attach(base, NULL, p);
    for (i = 0; i < nsite; i++) {
        CHECK(post(st, PTM_STREAM_SITE, apr_psprintf(p, "t%d", i % 5),
                   data[i % 7], &seq, p) == APR_SUCCESS);
    }
    if (run) {
        CHECK(ptm_store_run_start(st, obj, strlen(obj), "001", 3,
                                  "/srv/t/001", NULL, NULL) == APR_SUCCESS);
        for (i = 0; i < nrun; i++) {
            CHECK(post(st, PTM_STREAM_RUN, apr_psprintf(p, "t%d", i % 3 + 3),
                       data[(i + 3) % 7], &seq, p) == APR_SUCCESS);
        }
    }
    ptm_store_count_write_error(st);
    ptm_store_count_answer(st, 422);
    if (writing) {
        ptm_store_begin_locked((hdr_t *)base, PTM_STREAM_SITE,
                               ((hdr_t *)base)->seq[0] + 1);
    }
    unmap_state(base, size);
    close(dfd);
}

static void make_seeds(const char *dir)
{
    apr_pool_t *p;

    CHECK(apr_pool_create(&p, g_pool) == APR_SUCCESS);
    CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST);
    make_state(0, 0, 0, 0, p);
    write_seed(dir, "empty", M_SAME, p);
    write_seed(dir, "empty-raw", M_RAW, p);
    make_state(7, 1, 5, 0, p);
    write_seed(dir, "run", M_SAME, p);
    write_seed(dir, "run-other-size", M_OTHER_SIZE, p);
    write_seed(dir, "run-layout3", M_LAYOUT3, p);
    write_seed(dir, "run-legacy", M_SAME | F_LEGACY, p);
    write_seed(dir, "run-legacy-layout3", M_LAYOUT3 | F_LEGACY, p);
    write_seed(dir, "run-short", M_SAME | F_INPUT_LEN, p);
    write_seed(dir, "run-raw", M_RAW, p);
    make_state(7, 1, 5, 1, p);
    write_seed(dir, "run-writing", M_SAME | F_WRITING, p);
    make_state(3, 0, 0, 0, p);
    write_seed(dir, "site", M_SAME, p);
    make_state(20, 1, 9, 0, p);
    write_seed(dir, "many", M_SAME, p);
    unlink(g_state);
    apr_pool_destroy(p);
}

#include "fuzz_replay.h"

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--seeds") == 0) {
        fixture_init();
        make_seeds(argv[2]);
        return 0;
    }
    return replay_all(argc, argv, 1, "fuzz-replay (state)");
}
#endif

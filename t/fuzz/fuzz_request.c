/* A libFuzzer target over the request -> envelope path: what a client can
 * send reaches the core here exactly as it does through the glue
 * (ptm_api_handle with a real store and a real site directory), and every
 * answer is checked against invariants that must hold whatever was sent.
 * Built with clang -fsanitize=fuzzer,address,undefined (`make fuzz`), or
 * with -DPTM_FUZZ_REPLAY as a plain program that runs the files named on
 * its command line (`make fuzz-replay`: the corpus as a regression test).
 *
 * Input: one or more requests separated by "\n--\n", after one flags byte.
 *   flags  bits 0-1: state segment of 64 KiB (PTM_STORE_MIN_SIZE), 16 KiB,
 *                    256 KiB or 4 KiB.  The two small ones are below what
 *                    the directive allows; they are here because a full
 *                    arena (507) and its compaction are otherwise out of
 *                    reach of libFuzzer-sized inputs.
 *          bit 2:    a PanoptesTelemetryRunRoot is configured
 *          bit 3:    a quarter of the segment is the recent-events ring
 *   request: one selector byte, then the body.  Bits 0-3 pick the route
 *            (table `routes` below; in ASCII '@' is the JSON layer alone,
 *            'A' POST /event, 'B' POST /run/start, 'C' GET /current/{raw},
 *            'D' POST /run/stop, 'N' GET /events?<body>, ...), bits 4-5
 *            the Content-Type (0x4_ application/json, 0x5_ text/plain,
 *            0x6_ none, 0x7_ and 0x3_ Application/Problem+JSON with a
 *            charset; GET /events asks for NDJSON when there is one).
 * So "@A{\"type\":\"x\",\"data\":1}" is one event on a 64 KiB state.
 *
 * Every input starts from a freshly formatted state and an empty site
 * directory, so a crash reproduces from its input alone.  Bodies are
 * copied into their own heap blocks and, in this binary, apr_palloc() on
 * the request pool is redirected to malloc(): ASan then sees the end of
 * every buffer the core builds, which pool memory would hide. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* memmem, RTLD_NEXT */
#endif
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <jansson.h>

#include "ptm_api.h"
#include "ptm_buf.h"
#include "ptm_event.h"
#include "ptm_json.h"
#include "ptm_run.h"
#include "ptm_runs.h"
#include "ptm_store.h"
#include "ptm_time.h"

#define SEP "\n--\n"
#define SEP_LEN 4
#define MAX_REQUESTS 64
/* 2026-03-17 09:00:00 UTC; each request is 97 minutes later, so an input
 * of a few requests crosses the noon day-file boundary. */
#define NOW_BASE ((apr_time_t)1773738000 * APR_USEC_PER_SEC)
#define NOW_STEP ((apr_time_t)97 * 60 * APR_USEC_PER_SEC)

static void fail(const char *what, int line)
{
    fprintf(stderr, "fuzz_request.c:%d: invariant failed: %s\n", line, what);
    __builtin_trap();
}

#define CHECK(c) ((c) ? (void)0 : fail(#c, __LINE__))

/* ---- apr_palloc on the request pool goes to malloc ---------------------- */

static apr_pool_t *g_req_pool;
static void **g_allocs;
static size_t g_nallocs, g_allocs_cap;
static void *(*real_palloc)(apr_pool_t *, apr_size_t);

/* Interposes libapr's own (its apr_pstrcat & co. call it through the PLT,
 * so their results are heap blocks too).  Other pools are left alone. */
void *apr_palloc(apr_pool_t *p, apr_size_t size)
{
    void *m;

    if (p != g_req_pool || g_req_pool == NULL) {
        if (!real_palloc) {
            real_palloc = (void *(*)(apr_pool_t *, apr_size_t))
                          dlsym(RTLD_NEXT, "apr_palloc");
        }
        return real_palloc(p, size);
    }
    if (g_nallocs == g_allocs_cap) {
        g_allocs_cap = g_allocs_cap ? 2 * g_allocs_cap : 1024;
        g_allocs = realloc(g_allocs, g_allocs_cap * sizeof(*g_allocs));
        CHECK(g_allocs != NULL);
    }
    m = malloc(size ? size : 1);
    CHECK(m != NULL);
    g_allocs[g_nallocs++] = m;
    return m;
}

static void req_pool_clear(void)
{
    size_t i;

    /* Cleanups registered on the pool live in our blocks: run them first. */
    apr_pool_clear(g_req_pool);
    for (i = 0; i < g_nallocs; i++) {
        free(g_allocs[i]);
    }
    g_nallocs = 0;
}

/* ---- the fixture, made once --------------------------------------------- */

static const apr_size_t seg_sizes[4] = {
    PTM_STORE_MIN_SIZE, 16 * 1024, 256 * 1024, 4 * 1024
};

static apr_pool_t *g_pool, *g_input_pool;
static void *g_seg;
static ptm_store_t *g_st;
static char *g_top, *g_site, *g_root;
static char g_site_real[PATH_MAX], g_root_real[PATH_MAX];
static apr_array_header_t *g_roots;
static ptm_api_conf_t g_conf;
static int g_trace;             /* PTM_FUZZ_TRACE=1: print each exchange */

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    remove(path);                       /* best effort: keep walking */
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup_at_exit(void)
{
    if (g_st) {
        ptm_store_close_files(g_st);
    }
    if (g_top) {
        rm_rf(g_top);
    }
}

static void fixture_init(void)
{
    const char *tmp = getenv("TMPDIR");
    char *tmpl, top[PATH_MAX];

    apr_initialize();
    CHECK(apr_pool_create(&g_pool, NULL) == APR_SUCCESS);
    CHECK(apr_pool_create(&g_input_pool, g_pool) == APR_SUCCESS);
    CHECK(apr_pool_create(&g_req_pool, g_pool) == APR_SUCCESS);
    tmpl = apr_pstrcat(g_pool, tmp && *tmp ? tmp : "/tmp",
                       "/ptm-fuzz-XXXXXX", NULL);
    CHECK(mkdtemp(tmpl) != NULL);
    /* The site directory is configured as a normalised absolute path. */
    CHECK(realpath(tmpl, top) != NULL);
    g_top = apr_pstrdup(g_pool, top);
    atexit(cleanup_at_exit);
    g_site = apr_pstrcat(g_pool, g_top, "/site", NULL);
    g_root = apr_pstrcat(g_pool, g_top, "/root", NULL);
    CHECK(mkdir(g_site, 0777) == 0 && mkdir(g_root, 0777) == 0);
    CHECK(realpath(g_site, g_site_real) && realpath(g_root, g_root_real));
    g_roots = apr_array_make(g_pool, 1, sizeof(const char *));
    g_seg = malloc(seg_sizes[2]);
    CHECK(g_seg != NULL);
    g_st = ptm_store_attach(g_seg, NULL, g_pool);
    g_conf.store = g_st;
    g_conf.site_dir = g_site;
    g_conf.sync = 0;
    g_conf.version = "fuzz";
    g_trace = getenv("PTM_FUZZ_TRACE") != NULL;
}

/* ---- helpers ------------------------------------------------------------ */

static char *heap_copy(const uint8_t *d, size_t n)
{
    /* Exactly n bytes, no NUL: reading one past the body is a report. */
    char *b = malloc(n ? n : 1);

    CHECK(b != NULL);
    if (n) {
        memcpy(b, d, n);
    }
    return b;
}

static void stats(ptm_store_stats_t *s)
{
    memset(s, 0, sizeof(*s));
    CHECK(ptm_store_stats(g_st, s, g_req_pool) == APR_SUCCESS);
    CHECK(s->bytes_used <= s->bytes_total);
}

static int stats_same(const ptm_store_stats_t *a, const ptm_store_stats_t *b)
{
    return a->seq[0] == b->seq[0] && a->seq[1] == b->seq[1]
           && a->events[0] == b->events[0] && a->events[1] == b->events[1]
           && a->types[0] == b->types[0] && a->types[1] == b->types[1]
           && a->run_active == b->run_active
           && a->bytes_used == b->bytes_used;
}

static int is_dir(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static long long file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static int within(const char *path, const char *root)
{
    size_t n = strlen(root);

    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Object keys of `v` are exactly `keys` (NULL-terminated), in order. */
static int keys_are(const json_t *v, const char *const *keys)
{
    void *it;

    if (!json_is_object(v)) {
        return 0;
    }
    for (it = json_object_iter((json_t *)v); it;
         it = json_object_iter_next((json_t *)v, it), keys++) {
        if (!*keys || strcmp(json_object_iter_key(it), *keys) != 0) {
            return 0;
        }
    }
    return *keys == NULL;
}

/* json_equal() looks object keys up as C strings, and keys may hold NUL. */
static int same_value(const json_t *a, const json_t *b)
{
    void *it;
    size_t i;

    if (json_typeof(a) != json_typeof(b)) {
        return 0;
    }
    switch (json_typeof(a)) {
    case JSON_OBJECT:
        if (json_object_size(a) != json_object_size(b)) {
            return 0;
        }
        for (it = json_object_iter((json_t *)a); it;
             it = json_object_iter_next((json_t *)a, it)) {
            const json_t *w = json_object_getn(b, json_object_iter_key(it),
                                               json_object_iter_key_len(it));

            if (!w || !same_value(json_object_iter_value(it), w)) {
                return 0;
            }
        }
        return 1;
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b)) {
            return 0;
        }
        for (i = 0; i < json_array_size(a); i++) {
            if (!same_value(json_array_get(a, i), json_array_get(b, i))) {
                return 0;
            }
        }
        return 1;
    default:
        return json_equal((json_t *)a, (json_t *)b);
    }
}

/* The answer to any request: one of the statuses the router gives, and a
 * JSON object in ensure_ascii form ({"detail": ...} unless it is a 200). */
static json_t *check_resp(const ptm_api_resp_t *resp)
{
    static const int ok[] = { 200, 400, 404, 405, 409, 413, 422, 500, 507 };
    ptm_json_error_t jerr;
    json_t *v;
    size_t i;
    int known = 0;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        known |= resp->status == ok[i];
    }
    CHECK(known);
    CHECK(resp->body != NULL && resp->body_len > 0);
    for (i = 0; i < resp->body_len; i++) {
        CHECK(resp->body[i] >= 0x20 && resp->body[i] < 0x7f);
    }
    v = ptm_json_parse(resp->body, resp->body_len, &jerr);
    if (!v && jerr.kind == PTM_JSON_TOO_DEEP) {
        /* An answer may nest deeper than a request may: /current wraps
         * envelopes in two objects, a 422 quotes the body three deep.
         * jansson's limit is 2048; it refuses NUL in keys (not seen
         * through, then). */
        json_error_t je;

        v = json_loadb(resp->body, resp->body_len, JSON_ALLOW_NUL, &je);
        if (!v && strstr(je.text, "NUL")) {
            return json_object();
        }
    }
    CHECK(v != NULL);
    CHECK(json_is_object(v));
    if (resp->status != 200) {
        CHECK(json_object_size(v) == 1 && json_object_get(v, "detail"));
    }
    CHECK((resp->status == 405) == (resp->allow != NULL));
    return v;
}

static json_t *call(ptm_api_resp_t *resp, ptm_method_e m, const char *path,
                    const char *raw_last, const char *ct, const char *body,
                    size_t len, apr_time_t now)
{
    ptm_api_req_t req;

    memset(&req, 0, sizeof(req));
    req.method = m;
    req.path = path;
    req.raw_last = raw_last;
    req.content_type = ct;
    /* The glue reads a body only for the routes that take one. */
    if (ptm_api_wants_body(m, path)) {
        req.body = body;
        req.body_len = len;
    }
    req.now = now;
    ptm_api_handle(resp, &g_conf, &req, g_req_pool);
    if (g_trace) {
        fprintf(stderr, "%s %s -> %d %.*s%s\n",
                m == PTM_POST ? "POST" : m == PTM_HEAD ? "HEAD" : "GET", path,
                resp->status, (int)(resp->body_len > 300 ? 300
                                                          : resp->body_len),
                resp->body, resp->body_len > 300 ? "..." : "");
    }
    return check_resp(resp);
}

/* GET /current/{type} for a type sent as every byte percent-encoded; NULL
 * when the type cannot be fetched singly (empty, '/', NUL). */
static json_t *get_current_one(ptm_api_resp_t *resp, const char *type,
                               size_t len, apr_time_t now)
{
    static const char hex[] = "0123456789ABCDEF";
    char *raw, *path;
    size_t i;

    if (len == 0 || memchr(type, '/', len) || memchr(type, '\0', len)) {
        return NULL;
    }
    raw = apr_palloc(g_req_pool, 3 * len + 1);
    for (i = 0; i < len; i++) {
        raw[3 * i] = '%';
        raw[3 * i + 1] = hex[(unsigned char)type[i] >> 4];
        raw[3 * i + 2] = hex[(unsigned char)type[i] & 15];
    }
    raw[3 * len] = '\0';
    path = apr_pstrcat(g_req_pool, "/current/", type, NULL);
    return call(resp, PTM_GET, path, raw, NULL, NULL, 0, now);
}

/* ---- the JSON layer alone ----------------------------------------------- */

static void fuzz_json(const char *s, size_t n)
{
    ptm_json_error_t err;
    json_error_t jerr;
    json_t *v, *v2, *j, *js;
    ptm_buf_t d1, d2;
    size_t off = 0, i;
    char *z;

    v = ptm_json_parse(s, n, &err);
    /* jansson as a second opinion, on what both grammars share (a BOM is
     * Python's, not jansson's). */
    if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
        off = 3;
    }
    /* jansson's lexer takes a raw NUL byte for the end of the text in
     * places (" [2 , 2\0] " loads as [2,2]): no opinion on those. */
    j = memchr(s, '\0', n) ? NULL
        : json_loadb(s + off, n - off, JSON_DECODE_ANY | JSON_ALLOW_NUL,
                     &jerr);
    if (v) {
        ptm_buf_init(&d1, g_req_pool, 64);
        CHECK(ptm_json_dump(&d1, v) == 0);
        for (i = 0; i < d1.len; i++) {
            CHECK(d1.data[i] >= 0x20 && d1.data[i] < 0x7f);
        }
        v2 = ptm_json_parse(d1.data, d1.len, &err);
        CHECK(v2 != NULL);
        ptm_buf_init(&d2, g_req_pool, d1.len);
        CHECK(ptm_json_dump(&d2, v2) == 0);
        CHECK(d1.len == d2.len && memcmp(d1.data, d2.data, d1.len) == 0);
        CHECK(same_value(v, v2));
        /* What jansson reads the same way must be the same value; it
         * refuses NUL in keys, which Python (and we) take. */
        if (j) {
            CHECK(same_value(v, j));
        }
        else if (!memchr(s, '\0', n)) {
            CHECK(strstr(jerr.text, "NUL") != NULL);
        }
        json_decref(v2);
    }
    else {
        CHECK(err.kind == PTM_JSON_SYNTAX || err.kind == PTM_JSON_TOO_DEEP);
        CHECK(err.msg[0] != '\0');
        CHECK(err.pos <= n);
        /* jansson nests deeper (2048) than we do (512). */
        CHECK(j == NULL || err.kind == PTM_JSON_TOO_DEEP);
    }
    json_decref(v);
    json_decref(j);

    /* UTF-8 validity agrees with jansson's; the lossy decoding is always
     * valid and is the identity on valid input. */
    js = json_stringn(n ? s : "", n);
    CHECK(ptm_utf8_valid(s, n) == (js != NULL));
    json_decref(js);
    js = ptm_json_string_lossy(s, n);
    CHECK(js != NULL);
    CHECK(ptm_utf8_valid(json_string_value(js), json_string_length(js)));
    if (ptm_utf8_valid(s, n)) {
        CHECK(json_string_length(js) == n
              && memcmp(json_string_value(js), s, n) == 0);
    }
    json_decref(js);
    ptm_buf_init(&d1, g_req_pool, n + 2);
    ptm_json_py_repr(&d1, s, n);
    CHECK(ptm_utf8_valid(d1.data, d1.len));
    ptm_buf_init(&d2, g_req_pool, n + 2);
    ptm_json_dump_string(&d2, s, n);
    v = ptm_json_parse(d2.data, d2.len, &err);
    CHECK(v != NULL && json_is_string(v));
    json_decref(v);

    /* Paths and Content-Types are C strings. */
    z = apr_pstrmemdup(g_req_pool, s, n);
    ptm_body_is_json_type(z);
    {
        const char *a = ptm_run_normalise(z, g_req_pool);
        const char *b = ptm_run_normalise(a, g_req_pool);

        CHECK(strcmp(a, b) == 0);
    }
}

/* ---- requests ----------------------------------------------------------- */

typedef enum {
    F_JSON, F_EVENT, F_RUN_START, F_CURRENT_ONE, F_RUN_STOP, F_CURRENT,
    F_RUN, F_READY, F_HEALTH, F_SHUTDOWN, F_RAW_PATH, F_WRONG_METHOD,
    F_HEAD_ONE, F_EVENTS
} froute_e;

static const froute_e routes[16] = {
    F_JSON, F_EVENT, F_RUN_START, F_CURRENT_ONE,         /* @ A B C */
    F_RUN_STOP, F_EVENT, F_CURRENT, F_RUN,               /* D E F G */
    F_READY, F_HEALTH, F_SHUTDOWN, F_RAW_PATH,           /* H I J K */
    F_WRONG_METHOD, F_HEAD_ONE, F_EVENTS, F_RUN_START    /* L M N O */
};

static const char *const ctypes[4] = {
    "application/json", "text/plain", NULL,
    "Application/Problem+JSON ; charset=utf-8"
};

typedef struct {
    char *run_obj;          /* the 200 body of the active run's start */
    size_t run_obj_len;
} iter_t;

static void fuzz_event(iter_t *it, const char *ct, const char *body,
                       size_t len, apr_time_t now)
{
    ptm_store_stats_t before, after;
    ptm_store_run_t run;
    ptm_api_resp_t resp, one;
    ptm_event_req_t ev;
    ptm_err_t err = { 0, NULL, NULL };
    json_t *parsed, *v, *seqv, *cur;
    char day[PTM_DAYKEY_LEN + 1];
    const char *file;
    long long size0, size1;
    int valid, stream;

    /* What the core's own validation says, to hold the answer to it. */
    memset(&ev, 0, sizeof(ev));
    valid = ptm_body_parse(&parsed, &err, ct, body, len) == 0
            && ptm_event_validate(&ev, parsed, &err) == 0;
    ptm_err_clear(&err);

    stats(&before);
    CHECK(ptm_store_run_peek(&run, g_st, g_req_pool) == APR_SUCCESS);
    stream = run.active ? PTM_STREAM_RUN : PTM_STREAM_SITE;
    CHECK(ptm_time_day_key(day, now) == APR_SUCCESS);
    file = run.active
           ? apr_pstrcat(g_req_pool, run.run_dir, "/telemetry.ndjson", NULL)
           : apr_pstrcat(g_req_pool, g_site, "/site_", day, ".ndjson", NULL);
    size0 = file_size(file);

    v = call(&resp, PTM_POST, "/event", "event", ct, body, len, now);
    stats(&after);

    if (resp.status != 200) {
        /* A refused event changes nothing, its seq included (SPEC §2.6). */
        CHECK(stats_same(&before, &after));
        CHECK(valid ? (resp.status == 500 || resp.status == 507)
                    : (resp.status == 422 || resp.status == 400));
        /* The file is opened (and so created) before the store can say
         * 507; it then stays empty.  An invalid request gets nowhere. */
        size1 = file_size(file);
        CHECK(size1 == size0 || (valid && size0 < 0 && size1 == 0));
        goto done;
    }
    CHECK(valid);
    {
        static const char *const pub[] = {
            "seq", "ts", "type", "data", "meta", NULL
        };

        CHECK(keys_are(v, pub));
    }
    CHECK(resp.body_len > 7 && memcmp(resp.body, "{\"seq\":", 7) == 0);
    seqv = json_object_get(v, "seq");
    CHECK(json_is_integer(seqv));
    CHECK((uint64_t)json_integer_value(seqv) == before.seq[stream] + 1);
    CHECK(after.seq[stream] == before.seq[stream] + 1);
    CHECK(after.seq[!stream] == before.seq[!stream]);
    CHECK(after.events[stream] == before.events[stream] + 1);
    CHECK(after.run_active == before.run_active);

    size1 = file_size(file);
    if (!ev.store_permanently) {
        CHECK(size1 == size0);
    }
    else {
        /* One line: the public envelope with the stream after ts. */
        static const char *const line_keys[] = {
            "seq", "ts", "stream", "type", "data", "meta", NULL
        };
        const char *sp = stream ? ",\"stream\":\"run\""
                                : ",\"stream\":\"site\"";
        size_t sp_len = strlen(sp), n, at;
        char *line, *hit;
        ptm_json_error_t jerr;
        json_t *lv;
        int fd;

        if (size0 < 0) {
            size0 = 0;
        }
        CHECK(size1 > size0);
        n = (size_t)(size1 - size0);
        line = apr_palloc(g_req_pool, n + 1);
        fd = open(file, O_RDONLY);
        CHECK(fd >= 0);
        CHECK(pread(fd, line, n, size0) == (ssize_t)n);
        close(fd);
        line[n] = '\0';
        CHECK(line[n - 1] == '\n');
        CHECK(memchr(line, '\n', n - 1) == NULL);
        /* `,"` cannot occur inside an ensure_ascii string (its quotes are
         * escaped), so the first one is the stream part. */
        hit = memmem(line, n, ",\"stream\":\"", 11);
        CHECK(hit != NULL);
        at = (size_t)(hit - line);
        CHECK(n - 1 - sp_len == resp.body_len);
        CHECK(memcmp(hit, sp, sp_len) == 0);
        CHECK(memcmp(line, resp.body, at) == 0);
        CHECK(memcmp(hit + sp_len, resp.body + at, resp.body_len - at) == 0);
        lv = ptm_json_parse(line, n - 1, &jerr);
        CHECK(lv != NULL);
        CHECK(keys_are(lv, line_keys));
        json_decref(lv);
    }
    /* The current view now answers with this very envelope. */
    if (ev.make_current) {
        cur = get_current_one(&one, ev.type, ev.type_len, now);
        if (cur) {
            CHECK(one.status == 200);
            CHECK(one.body_len == resp.body_len
                  && memcmp(one.body, resp.body, resp.body_len) == 0);
            json_decref(cur);
        }
        CHECK(after.types[stream] >= before.types[stream]);
    }
    else {
        CHECK(after.types[stream] == before.types[stream]);
    }
done:
    ptm_event_req_free(&ev);
    json_decref(v);
}

static void fuzz_run_start(iter_t *it, const char *ct, const char *body,
                           size_t len, apr_time_t now)
{
    static const char *const run_keys[] = {
        "run_dir", "run_id", "meta", "started_at", NULL
    };
    ptm_store_stats_t before, after;
    ptm_api_resp_t resp, again;
    json_t *v, *dir, *id, *meta, *g;
    char real[PATH_MAX];

    stats(&before);
    v = call(&resp, PTM_POST, "/run/start", "start", ct, body, len, now);
    stats(&after);
    if (resp.status != 200) {
        CHECK(stats_same(&before, &after));
        CHECK(resp.status != 409 || before.run_active);
        goto done;
    }
    CHECK(!before.run_active && after.run_active);
    CHECK(after.types[PTM_STREAM_RUN] == 0);
    CHECK(after.seq[PTM_STREAM_SITE] == before.seq[PTM_STREAM_SITE]);
    CHECK(after.seq[PTM_STREAM_RUN] >= before.seq[PTM_STREAM_RUN]);
    CHECK(keys_are(v, run_keys));
    dir = json_object_get(v, "run_dir");
    id = json_object_get(v, "run_id");
    meta = json_object_get(v, "meta");
    CHECK(json_is_string(dir) && json_is_string(id) && json_is_object(meta));
    CHECK(json_equal(json_object_get(meta, "run_id"), id));
    CHECK(json_string_length(id) > 0);
    /* Confined: the directory exists and is inside the site dir or the
     * configured root, symlinks and ".." resolved. */
    CHECK(strlen(json_string_value(dir)) == json_string_length(dir));
    CHECK(is_dir(json_string_value(dir)));
    CHECK(realpath(json_string_value(dir), real) != NULL);
    CHECK(within(real, g_site_real)
          || (g_roots->nelts && within(real, g_root_real)));
    /* GET /run is the same object, byte for byte. */
    g = call(&again, PTM_GET, "/run", "run", NULL, NULL, 0, now);
    CHECK(again.status == 200 && again.body_len == resp.body_len
          && memcmp(again.body, resp.body, resp.body_len) == 0);
    json_decref(g);
    it->run_obj = apr_pmemdup(g_input_pool, resp.body, resp.body_len);
    it->run_obj_len = resp.body_len;
done:
    json_decref(v);
}

static void fuzz_run_stop(iter_t *it, apr_time_t now)
{
    ptm_store_stats_t before, after;
    ptm_api_resp_t resp;
    json_t *v;

    stats(&before);
    v = call(&resp, PTM_POST, "/run/stop", "stop", NULL, NULL, 0, now);
    stats(&after);
    CHECK((resp.status == 200) == before.run_active);
    if (resp.status == 200) {
        CHECK(!after.run_active && after.types[PTM_STREAM_RUN] == 0);
        CHECK(after.seq[0] == before.seq[0] && after.seq[1] == before.seq[1]);
        CHECK(it->run_obj && resp.body_len == it->run_obj_len
              && memcmp(resp.body, it->run_obj, resp.body_len) == 0);
        it->run_obj = NULL;
    }
    else {
        CHECK(resp.status == 404 && stats_same(&before, &after));
    }
    json_decref(v);
}

/* A read: any answer (checked by call()) and no change. */
static void fuzz_read(ptm_method_e m, const char *path, const char *raw,
                      apr_time_t now)
{
    ptm_store_stats_t before, after;
    ptm_api_resp_t resp;
    json_t *v;

    stats(&before);
    v = call(&resp, m, path, raw, NULL, NULL, 0, now);
    stats(&after);
    CHECK(stats_same(&before, &after));
    json_decref(v);
}

/* GET /events with the body as its query string (NDJSON when a
 * Content-Type is chosen): 200 or 422, every line of an NDJSON answer an
 * object, and no state changed. */
static void fuzz_events(const char *ct, const char *body, size_t len,
                        apr_time_t now)
{
    ptm_store_stats_t before, after;
    ptm_api_resp_t resp;
    ptm_api_req_t req;
    const char *line, *end;

    memset(&req, 0, sizeof(req));
    req.method = PTM_GET;
    req.path = "/events";
    req.raw_last = "events";
    req.args = apr_pstrmemdup(g_req_pool, body, len);
    req.accept = ct ? "application/x-ndjson" : NULL;
    req.now = now;
    stats(&before);
    ptm_api_handle(&resp, &g_conf, &req, g_req_pool);
    stats(&after);
    CHECK(stats_same(&before, &after));
    if (g_trace) {
        fprintf(stderr, "GET /events?%s -> %d %.*s\n", req.args, resp.status,
                (int)(resp.body_len > 300 ? 300 : resp.body_len), resp.body);
    }
    if (!resp.content_type) {
        json_decref(check_resp(&resp));
        CHECK(resp.status == 200 || resp.status == 422);
        return;
    }
    CHECK(resp.status == 200);
    for (line = resp.body; line < resp.body + resp.body_len; line = end + 1) {
        json_error_t je;
        json_t *v;

        end = memchr(line, '\n', resp.body_len - (size_t)(line - resp.body));
        CHECK(end != NULL);
        v = json_loadb(line, (size_t)(end - line), JSON_ALLOW_NUL, &je);
        CHECK(v != NULL && json_is_object(v));
        json_decref(v);
    }
}

/* A raw last path segment: decoded (httpd refuses %00 and, by default,
 * %2F before we are asked) for the route, kept as is for raw_last. */
static void fuzz_current_one(ptm_method_e m, const char *body, size_t len,
                             apr_time_t now)
{
    char *raw = apr_pstrmemdup(g_req_pool, body, len), *dec, *o;
    const char *s;

    if (strchr(raw, '/')) {
        raw = strrchr(raw, '/') + 1;
    }
    dec = apr_palloc(g_req_pool, strlen(raw) + 1);
    for (s = raw, o = dec; *s; s++) {
        if (s[0] == '%' && isxdigit((unsigned char)s[1])
            && isxdigit((unsigned char)s[2])) {
            char h[3] = { s[1], s[2], '\0' };
            long c = strtol(h, NULL, 16);

            if (c == 0 || c == '/') {
                return;                 /* httpd answers these itself */
            }
            *o++ = (char)c;
            s += 2;
        }
        else {
            *o++ = *s;
        }
    }
    *o = '\0';
    fuzz_read(m, apr_pstrcat(g_req_pool, "/current/", dec, NULL), raw, now);
}

static void fuzz_one(iter_t *it, const uint8_t *d, size_t n, int idx)
{
    apr_time_t now = NOW_BASE + (apr_time_t)idx * NOW_STEP;
    unsigned sel;
    const char *ct;
    char *body, *path;
    ptm_api_resp_t resp;
    json_t *v;

    if (n == 0) {
        return;
    }
    sel = d[0];
    ct = ctypes[(sel >> 4) & 3];
    body = heap_copy(d + 1, n - 1);
    n--;
    switch (routes[sel & 15]) {
    case F_JSON:
        fuzz_json(body, n);
        break;
    case F_EVENT:
        fuzz_event(it, ct, body, n, now);
        break;
    case F_RUN_START:
        fuzz_run_start(it, ct, body, n, now);
        break;
    case F_RUN_STOP:
        fuzz_run_stop(it, now);
        break;
    case F_CURRENT_ONE:
        fuzz_current_one(PTM_GET, body, n, now);
        break;
    case F_HEAD_ONE:
        fuzz_current_one(PTM_HEAD, body, n, now);
        break;
    case F_CURRENT:
        fuzz_read(PTM_GET, "/current", "current", now);
        break;
    case F_EVENTS:
        fuzz_events(ct, body, n, now);
        break;
    case F_RUN:
        fuzz_read(PTM_GET, "/run", "run", now);
        break;
    case F_READY:
        fuzz_read(PTM_GET, "/ready", "ready", now);
        break;
    case F_HEALTH:
        fuzz_read(PTM_GET, "/health", "health", now);
        break;
    case F_SHUTDOWN:
        v = call(&resp, PTM_POST, "/shutdown", "shutdown", ct, body, n, now);
        CHECK(resp.status == 409);
        json_decref(v);
        break;
    case F_RAW_PATH:
        /* Any path at all; POST when a Content-Type is sent.  Only the
         * routes that take no body get here with one (ignored). */
        path = apr_pstrcat(g_req_pool, "/", apr_pstrmemdup(g_req_pool, body, n),
                           NULL);
        if (ptm_api_wants_body(ct ? PTM_POST : PTM_GET, path)) {
            break;                      /* the event/start cases do those */
        }
        fuzz_read(ct ? PTM_POST : PTM_GET, path, strrchr(path, '/') + 1, now);
        break;
    case F_WRONG_METHOD:
        v = call(&resp, PTM_GET, "/event", "event", ct, body, n, now);
        CHECK(resp.status == 405 && strcmp(resp.allow, "POST") == 0);
        json_decref(v);
        break;
    }
    free(body);
    /* Whatever happened, the whole current view still reads as JSON. */
    v = call(&resp, PTM_GET, "/current", "current", NULL, NULL, 0, now);
    CHECK(resp.status == 200 && json_is_object(json_object_get(v, "current")));
    json_decref(v);
}

/* Nothing may appear in the scratch directory but the two trees. */
static void check_confined(void)
{
    DIR *d = opendir(g_top);
    struct dirent *de;

    CHECK(d != NULL);
    while ((de = readdir(d)) != NULL) {
        CHECK(strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0
              || strcmp(de->d_name, "site") == 0
              || strcmp(de->d_name, "root") == 0);
    }
    closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    iter_t it;
    size_t i = 1;
    int idx = 0;

    if (!g_pool) {
        fixture_init();
    }
    if (size < 1) {
        return 0;
    }
    /* A fresh state, site directory and set of open files for every
     * input. */
    ptm_store_close_files(g_st);
    /* Bit 3: a recent-events ring of a quarter of the segment. */
    ptm_store_format(g_seg, seg_sizes[data[0] & 3],
                     data[0] & 8 ? seg_sizes[data[0] & 3] / 4 : 0);
    g_roots->nelts = 0;
    if (data[0] & 4) {
        APR_ARRAY_PUSH(g_roots, const char *) = g_root;
    }
    g_conf.run_roots = g_roots;
    memset(&it, 0, sizeof(it));
    while (i <= size && idx < MAX_REQUESTS) {
        const uint8_t *end = memmem(data + i, size - i, SEP, SEP_LEN);
        size_t n = end ? (size_t)(end - (data + i)) : size - i;

        fuzz_one(&it, data + i, n, idx++);
        req_pool_clear();
        if (!end) {
            break;
        }
        i += n + SEP_LEN;
    }
    check_confined();
    /* The runs index this process parsed, and its summary of the ring:
     * each input starts afresh (and LeakSanitizer, which does not look
     * into APR's pool memory, sees nothing left at exit). */
    ptm_runs_cache_clear();
    ptm_store_forget_ring(g_st);
    rm_rf(g_site);
    rm_rf(g_root);
    CHECK(mkdir(g_site, 0777) == 0 && mkdir(g_root, 0777) == 0);
    apr_pool_clear(g_input_pool);
    return 0;
}

#ifdef PTM_FUZZ_REPLAY
#include "fuzz_replay.h"

int main(int argc, char **argv)
{
    return replay_all(argc, argv, 1, "fuzz-replay");
}
#endif

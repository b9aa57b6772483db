/* Unit tests for ptm_api, the router, on a real store in plain memory:
 * what the handlers do when the store misbehaves.  ptm_store_run_peek and
 * ptm_store_event are wrapped at link time (-Wl,--wrap, see the Makefile)
 * so a test can make the first fail and have "another client" restart the
 * run between an event's look at the run and its turn under the lock. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include <apr_file_info.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <jansson.h>
#include "ptm_api.h"
#include "ptm_store.h"

/* ---- the wrapped store functions ---------------------------------------- */

apr_status_t __real_ptm_store_run_peek(ptm_store_run_t *run, ptm_store_t *st,
                                       apr_pool_t *p);
apr_status_t __real_ptm_store_event(ptm_store_t *st,
                                    const ptm_store_event_t *ev,
                                    uint64_t *seq);

static apr_status_t peek_fails;    /* what ptm_store_run_peek returns */
static int restarts;               /* restart the run before this many
                                    * more events */
static int event_calls;
static int runaway;                /* the handler kept retrying */
static const char *restart_dir;

#define RUNAWAY 100

apr_status_t __wrap_ptm_store_run_peek(ptm_store_run_t *run, ptm_store_t *st,
                                       apr_pool_t *p)
{
    if (peek_fails != APR_SUCCESS) {
        /* As a lock failure leaves it: nothing filled in.  Poisoned so
         * that reading it shows (run.active non-zero). */
        memset(run, 0xa5, sizeof(*run));
        return peek_fails;
    }
    return __real_ptm_store_run_peek(run, st, p);
}

apr_status_t __wrap_ptm_store_event(ptm_store_t *st,
                                    const ptm_store_event_t *ev,
                                    uint64_t *seq)
{
    static const char obj[] = "{\"run_dir\":\"x\",\"run_id\":\"again\"}";

    event_calls++;
    if (event_calls > RUNAWAY) {
        runaway = 1;                    /* let the handler finish */
    }
    else if (restarts > 0) {
        /* Another client stops and starts the run just before this one
         * takes the lock: the event is stale, every time. */
        ptm_buf_t b;

        restarts--;
        ptm_buf_init(&b, gpool, 128);
        ptm_store_run_stop(st, &b);
        assert_int_equal(ptm_store_run_start(st, obj, sizeof(obj) - 1,
                                             "again", 5, restart_dir, NULL,
                                             NULL), APR_SUCCESS);
    }
    return __real_ptm_store_event(st, ev, seq);
}

/* ---- a store and a configuration ---------------------------------------- */

#define STATE_SIZE (256 * 1024)

typedef struct {
    void *base;
    ptm_api_conf_t conf;
    char *site;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char tmpl[] = "/tmp/ptm_api_test.XXXXXX";

    if (!f || !(f->base = calloc(1, STATE_SIZE)) || !mkdtemp(tmpl)) {
        return -1;
    }
    f->site = strdup(tmpl);
    ptm_store_format(f->base, STATE_SIZE, 0);
    f->conf.store = ptm_store_attach(f->base, NULL, gpool);
    f->conf.site_dir = f->site;
    f->conf.run_roots = apr_array_make(gpool, 1, sizeof(const char *));
    f->conf.version = "test";
    restart_dir = f->site;
    peek_fails = APR_SUCCESS;
    restarts = 0;
    event_calls = 0;
    runaway = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    ptm_store_close_files(f->conf.store);
    /* The directories beside the site dir some tests make (a failed test
     * does not reach its own clean-up). */
    rm_rf(apr_pstrcat(gpool, f->site, "-out", NULL));
    rm_rf(apr_pstrcat(gpool, f->site, "-root", NULL));
    rm_rf(f->site);
    free(f->site);
    free(f->base);
    free(f);
    return 0;
}

/* One request; the answer's body is checked to be JSON and returned
 * parsed (the caller releases it). */
static json_t *call(ptm_api_resp_t *resp, const fixture_t *f,
                    const char *path, const char *body)
{
    ptm_api_req_t req;
    json_error_t jerr;
    json_t *j;

    memset(&req, 0, sizeof(req));
    req.method = body ? PTM_POST : PTM_GET;
    req.path = path;
    req.content_type = "application/json";
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    req.now = apr_time_now();
    ptm_api_handle(resp, &f->conf, &req, gpool);
    j = json_loadb(resp->body, resp->body_len, 0, &jerr);
    if (!j) {
        fail_msg("%s: status %d, body is not JSON: %.*s", path, resp->status,
                 (int)resp->body_len, resp->body);
    }
    return j;
}

/* The answer is {"detail": "<string containing want>"}. */
static void assert_detail(json_t *j, const char *want)
{
    json_t *d = json_object_get(j, "detail");

    assert_int_equal(json_object_size(j), 1);
    if (!json_is_string(d) || !strstr(json_string_value(d), want)) {
        char *s = json_dumps(j, 0);

        fail_msg("detail %s does not say \"%s\"", s, want);
    }
}

/* ---- POST /run/start when the store cannot be read ---------------------- */

/* A failed look at the run is a 500 that says so; nothing is created and
 * no run starts (it used to read an uninitialised run.active). */
static void test_run_start_peek_fails(void **state)
{
    fixture_t *f = *state;
    ptm_api_resp_t resp;
    struct stat st;
    json_t *j;

    peek_fails = APR_FROM_OS_ERROR(EDEADLK);
    j = call(&resp, f, "/run/start", "{\"run_id\":\"peek\"}");
    assert_int_equal(resp.status, 500);
    assert_detail(j, "shared state");
    json_decref(j);
    assert_int_not_equal(stat(apr_pstrcat(gpool, f->site, "/peek", NULL),
                              &st), 0);
    peek_fails = APR_SUCCESS;
    j = call(&resp, f, "/run", NULL);
    assert_int_equal(resp.status, 404);
    json_decref(j);
}

/* ---- POST /event while the run keeps changing --------------------------- */

/* The retries are capped: an event whose run is restarted before each of
 * its attempts gets a JSON error rather than a thread spinning for as long
 * as the restarts go on; it changes nothing. */
static void test_event_retries_capped(void **state)
{
    fixture_t *f = *state;
    ptm_api_resp_t resp;
    json_t *j;

    j = call(&resp, f, "/run/start", "{\"run_id\":\"r1\"}");
    assert_int_equal(resp.status, 200);
    json_decref(j);

    restarts = 10 * RUNAWAY;
    j = call(&resp, f, "/event", "{\"type\":\"t\",\"data\":1}");
    restarts = 0;
    assert_false(runaway);
    assert_in_range(event_calls, 2, 16);
    assert_int_equal(resp.status, 503);
    assert_detail(j, "run");
    json_decref(j);
    j = call(&resp, f, "/current/t", NULL);
    assert_int_equal(resp.status, 404);
    json_decref(j);

    /* Quiet again: the next event is stored, with the first seq. */
    event_calls = 0;
    j = call(&resp, f, "/event", "{\"type\":\"t\",\"data\":2}");
    assert_int_equal(resp.status, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 1);
    assert_int_equal(event_calls, 1);
    json_decref(j);
}

/* A few restarts are absorbed: the event goes to the run as it is now. */
static void test_event_retries_then_stored(void **state)
{
    fixture_t *f = *state;
    ptm_api_resp_t resp;
    json_t *j;

    j = call(&resp, f, "/run/start", "{\"run_id\":\"r2\"}");
    assert_int_equal(resp.status, 200);
    json_decref(j);

    restarts = 2;
    j = call(&resp, f, "/event",
             "{\"type\":\"t\",\"data\":1,\"store_permanently\":false}");
    restarts = 0;
    assert_false(runaway);
    assert_int_equal(resp.status, 200);
    assert_int_equal(event_calls, 3);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(j, "meta"), "run_id")), "again");
    json_decref(j);
}

/* ---- run directories beneath their root --------------------------------- */

static const char *at(const fixture_t *f, const char *rel)
{
    return apr_pstrcat(gpool, f->site, "/", rel, NULL);
}

/* The answer is a 422 with one value_error item at `loc` (JSON text). */
static void assert_422_at(json_t *j, const ptm_api_resp_t *resp,
                          const char *loc)
{
    json_t *items = json_object_get(j, "detail"), *item, *want;
    json_error_t jerr;

    assert_int_equal(resp->status, 422);
    assert_true(json_is_array(items));
    assert_int_equal(json_array_size(items), 1);
    item = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(item, "type")),
                        "value_error");
    want = json_loads(loc, 0, &jerr);
    assert_true(json_equal(json_object_get(item, "loc"), want));
    json_decref(want);
    assert_true(strncmp(json_string_value(json_object_get(item, "msg")),
                        "Value error, ", 13) == 0);
}

/* The store keeps the real directory; the answers keep pathlib's, and
 * the detour is made as upstream's mkdir -p makes it, so the reported path
 * names the run directory. */
static void test_run_dir_real_and_reported(void **state)
{
    fixture_t *f = *state;
    ptm_api_resp_t resp;
    struct stat st, rep;
    json_t *j;

    j = call(&resp, f, "/run/start",
             "{\"run_dir\":\"a/../b\",\"run_id\":\"r\"}");
    assert_int_equal(resp.status, 200);
    assert_string_equal(json_string_value(json_object_get(j, "run_dir")),
                        at(f, "a/../b"));
    json_decref(j);
    assert_int_equal(stat(at(f, "b"), &st), 0);
    assert_int_equal(stat(at(f, "a/../b"), &rep), 0);
    assert_true(st.st_ino == rep.st_ino);
    j = call(&resp, f, "/event", "{\"type\":\"t\",\"data\":1}");
    assert_int_equal(resp.status, 200);
    json_decref(j);
    assert_int_equal(stat(at(f, "b/telemetry.ndjson"), &st), 0);
    j = call(&resp, f, "/run", NULL);
    assert_string_equal(json_string_value(json_object_get(j, "run_dir")),
                        at(f, "a/../b"));
    json_decref(j);
}

/* Links on the way: 422 at the field that named the directory, nothing
 * made, no run; mid-run a 500 naming the link, no seq used. */
static void test_links_refused(void **state)
{
    fixture_t *f = *state;
    char *out = apr_pstrcat(gpool, f->site, "-out", NULL);
    ptm_api_resp_t resp;
    struct stat st;
    json_t *j;

    assert_int_equal(mkdir(out, 0755), 0);
    assert_int_equal(symlink(out, at(f, "l")), 0);
    j = call(&resp, f, "/run/start", "{\"run_dir\":\"l/x\"}");
    assert_422_at(j, &resp, "[\"body\",\"run_dir\"]");
    json_decref(j);
    j = call(&resp, f, "/run/start", "{\"run_id\":\"l\"}");
    assert_422_at(j, &resp, "[\"body\",\"run_id\"]");
    json_decref(j);
    j = call(&resp, f, "/run/start", "{\"meta\":{\"run_id\":\"l\"}}");
    assert_422_at(j, &resp, "[\"body\",\"meta\",\"run_id\"]");
    json_decref(j);
    /* A detour through the link: the reported path would name a directory
     * out there. */
    j = call(&resp, f, "/run/start", "{\"run_dir\":\"l/../y\"}");
    assert_422_at(j, &resp, "[\"body\",\"run_dir\"]");
    json_decref(j);
    assert_int_not_equal(stat(at(f, "y"), &st), 0);
    assert_int_not_equal(stat(apr_pstrcat(gpool, out, "/x", NULL), &st), 0);
    j = call(&resp, f, "/run", NULL);
    assert_int_equal(resp.status, 404);
    json_decref(j);

    /* Mid-run, the run directory replaced by the link. */
    j = call(&resp, f, "/run/start", "{\"run_dir\":\"r\",\"run_id\":\"r\"}");
    assert_int_equal(resp.status, 200);
    json_decref(j);
    j = call(&resp, f, "/event", "{\"type\":\"t\",\"data\":1}");
    assert_int_equal(resp.status, 200);
    json_decref(j);
    assert_int_equal(rename(at(f, "r"), at(f, "r-moved")), 0);
    assert_int_equal(symlink(out, at(f, "r")), 0);
    j = call(&resp, f, "/event", "{\"type\":\"t\",\"data\":2}");
    assert_int_equal(resp.status, 500);
    assert_detail(j, apr_pstrcat(gpool, "Cannot open ", at(f, "r"),
                                 ": it is a symbolic link", NULL));
    json_decref(j);
    assert_int_not_equal(stat(apr_pstrcat(gpool, out, "/telemetry.ndjson",
                                          NULL), &st), 0);
    assert_int_equal(unlink(at(f, "r")), 0);
    j = call(&resp, f, "/event", "{\"type\":\"t\",\"data\":3}");
    assert_int_equal(resp.status, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 2);
    json_decref(j);
}

/* A run whose root is no longer configured (a restart with other
 * PanoptesTelemetryRunRoot lines): a 500 that says so, nothing written. */
static void test_run_root_gone(void **state)
{
    fixture_t *f = *state;
    char *root = apr_pstrcat(gpool, f->site, "-root", NULL);
    apr_array_header_t *roots = apr_array_make(gpool, 1,
                                               sizeof(const char *));
    const apr_array_header_t *none = f->conf.run_roots;
    ptm_api_resp_t resp;
    struct stat st;
    json_t *j;

    APR_ARRAY_PUSH(roots, const char *) = root;
    f->conf.run_roots = roots;
    j = call(&resp, f, "/run/start", apr_pstrcat(gpool, "{\"run_dir\":\"",
                                                  root, "/n1\"}", NULL));
    assert_int_equal(resp.status, 200);
    json_decref(j);
    f->conf.run_roots = none;
    j = call(&resp, f, "/event", "{\"type\":\"t\",\"data\":1}");
    assert_int_equal(resp.status, 500);
    assert_detail(j, "no longer inside");
    json_decref(j);
    assert_int_not_equal(stat(apr_pstrcat(gpool, root, "/n1/telemetry.ndjson",
                                          NULL), &st), 0);
    f->conf.run_roots = roots;
    j = call(&resp, f, "/event", "{\"type\":\"t\",\"data\":2}");
    assert_int_equal(resp.status, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 1);
    json_decref(j);
}

/* ---- the runs index and GET /events ------------------------------------- */

/* The one site_*.ndjson of the site dir. */
static const char *first_day_file(const fixture_t *f)
{
    apr_dir_t *d;
    apr_finfo_t fi;
    const char *name = NULL;

    assert_int_equal(apr_dir_open(&d, f->site, gpool), APR_SUCCESS);
    while (apr_dir_read(&fi, APR_FINFO_NAME, d) == APR_SUCCESS) {
        if (strncmp(fi.name, "site_", 5) == 0) {
            name = apr_pstrdup(gpool, fi.name);
        }
    }
    apr_dir_close(d);
    assert_non_null(name);
    return name;
}

/* A run start and stop each leave one line in the runs index, in order;
 * an index that cannot be written refuses the start (a run /events could
 * not find after a restart does not start) and changes nothing. */
static void test_runs_index(void **state)
{
    fixture_t *f = *state;
    ptm_api_resp_t resp;
    const char *idx = at(f, ".runs.ndjson");
    char *text;
    size_t len;
    json_t *j;

    j = call(&resp, f, "/run/start", "{\"run_id\":\"r1\"}");
    assert_int_equal(resp.status, 200);
    json_decref(j);
    j = call(&resp, f, "/run/stop", "{}");
    assert_int_equal(resp.status, 200);
    json_decref(j);
    text = slurp(idx, &len, gpool);
    assert_non_null(text);
    assert_non_null(strstr(text, apr_pstrcat(gpool, "{\"run_id\":\"r1\","
                                             "\"run_dir\":\"", at(f, "r1"),
                                             "\",\"start\":\"", NULL)));
    assert_non_null(strstr(text, apr_pstrcat(gpool, "\n{\"run_dir\":\"",
                                             at(f, "r1"), "\",\"stop\":\"",
                                             NULL)));
    /* Two whole lines, nothing else. */
    assert_int_equal(len, strlen(text));
    assert_true(len > 2 && text[len - 1] == '\n');
    assert_non_null(strchr(text, '\n'));
    assert_ptr_equal(strchr(strchr(text, '\n') + 1, '\n'), text + len - 1);
    /* A directory where the index should be: no start. */
    assert_int_equal(unlink(idx), 0);
    assert_int_equal(mkdir(idx, 0755), 0);
    j = call(&resp, f, "/run/start", "{\"run_id\":\"r2\"}");
    assert_int_equal(resp.status, 500);
    assert_detail(j, "runs index");
    json_decref(j);
    j = call(&resp, f, "/run", NULL);
    assert_int_equal(resp.status, 404);
    json_decref(j);
    /* Nothing made either: no directory, so no run id used up. */
    assert_int_not_equal(access(at(f, "r2"), F_OK), 0);
    j = call(&resp, f, "/run/start", "{}");
    assert_int_equal(resp.status, 500);
    json_decref(j);
    assert_int_equal(rmdir(idx), 0);
    j = call(&resp, f, "/run/start", "{}");
    assert_int_equal(resp.status, 200);
    assert_string_equal(json_string_value(json_object_get(j, "run_id")),
                        "001");
    json_decref(j);
    j = call(&resp, f, "/run/stop", "{}");
    json_decref(j);
    /* A directory that cannot be made once the run is noted: the note is
     * taken back, the journal is as it was. */
    text = slurp(idx, &len, gpool);
    assert_int_equal(close(open(at(f, "file"), O_CREAT | O_WRONLY, 0644)),
                     0);
    j = call(&resp, f, "/run/start", "{\"run_id\":\"r3\","
             "\"run_dir\":\"file/r3\"}");
    assert_int_equal(resp.status, 500);
    json_decref(j);
    {
        size_t len2;
        char *text2 = slurp(idx, &len2, gpool);

        assert_int_equal(len2, len);
        assert_memory_equal(text2, text, len);
    }
}

/* GET /events through the router: an ephemeral and a stored event, a run
 * event, all found; a bad parameter is a 422 at ["query", name]. */
static void test_events_route(void **state)
{
    fixture_t *f = *state;
    ptm_api_resp_t resp;
    ptm_api_req_t req;
    json_t *j, *ev;

    ptm_store_format(f->base, STATE_SIZE, 64 * 1024);
    j = call(&resp, f, "/event", "{\"type\":\"w\",\"data\":1}");
    json_decref(j);
    j = call(&resp, f, "/event", "{\"type\":\"s\",\"data\":2,"
             "\"store_permanently\":false}");
    json_decref(j);
    j = call(&resp, f, "/run/start", "{\"run_id\":\"r\"}");
    json_decref(j);
    j = call(&resp, f, "/event", "{\"type\":\"w\",\"data\":3}");
    json_decref(j);
    j = call(&resp, f, "/events", NULL);
    assert_int_equal(resp.status, 200);
    ev = json_object_get(j, "events");
    assert_int_equal(json_array_size(ev), 3);
    /* Newest first: the run's, then the ephemeral one, then the first. */
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(ev, 0), "stream")), "run");
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(ev, 1), "data")), 2);
    assert_true(json_is_null(json_object_get(j, "next")));
    assert_true(json_is_string(json_object_get(j, "recent_since")));
    json_decref(j);

    memset(&req, 0, sizeof(req));
    req.method = PTM_GET;
    req.path = "/events";
    req.args = "type=w&format=ndjson&stream=site";
    req.now = apr_time_now();
    ptm_api_handle(&resp, &f->conf, &req, gpool);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.content_type, "application/x-ndjson");
    {
        size_t n;
        const char *file = slurp(apr_psprintf(gpool, "%s/%s", f->site,
                                              first_day_file(f)), &n, gpool);

        /* The one stored site event, byte for byte its line. */
        assert_int_equal(resp.body_len, n);
        assert_memory_equal(resp.body, file, n);
    }

    req.args = "limit=0";
    ptm_api_handle(&resp, &f->conf, &req, gpool);
    assert_int_equal(resp.status, 422);
    assert_non_null(strstr(resp.body, "[\"query\",\"limit\"]"));
}

/* GET /events holds a JSON answer (and an NDJSON one with a limit) whole,
 * so a page ends, with a `next`, once its events reach
 * PTM_EVENTS_PAGE_BYTES: limit=10000 over events of a MiB each used to
 * hold them all (10000 of PanoptesTelemetryMaxBody's worth, several GiB
 * once escaped).  Following `next` still gives every event once. */
static void test_events_page_bytes(void **state)
{
    fixture_t *f = *state;
    ptm_api_resp_t resp;
    ptm_api_req_t req;
    size_t big = 1024 * 1024;
    char *body = malloc(big + 64), *seen = calloc(64, 1);
    const char *next = NULL, *fmt[2] = { "", "&format=ndjson" };
    int i, k, pages, total;
    json_t *j;

    assert_non_null(body);
    assert_non_null(seen);
    /* Not current: the state of the fixture is far too small. */
    memcpy(body, "{\"type\":\"big\",\"data\":\"", 22);
    memset(body + 22, 'x', big);
    strcpy(body + 22 + big, "\",\"make_current\":false}");
    for (i = 0; i < 40; i++) {
        j = call(&resp, f, "/event", body);
        assert_int_equal(resp.status, 200);
        json_decref(j);
    }
    for (k = 0; k < 2; k++) {
        memset(seen, 0, 64);
        total = pages = 0;
        next = NULL;
        memset(&req, 0, sizeof(req));
        req.method = PTM_GET;
        req.path = "/events";
        req.now = apr_time_now();
        do {
            req.args = apr_pstrcat(gpool, "limit=10000", fmt[k],
                                   next ? "&cursor=" : "", next, NULL);
            ptm_api_handle(&resp, &f->conf, &req, gpool);
            assert_int_equal(resp.status, 200);
            assert_true(resp.body_len <= PTM_EVENTS_PAGE_BYTES + big + 4096);
            if (k == 0) {
                json_t *ev, *e;
                size_t x;

                j = json_loadb(resp.body, resp.body_len, 0, NULL);
                assert_non_null(j);
                ev = json_object_get(j, "events");
                assert_true(json_array_size(ev) > 0);
                json_array_foreach(ev, x, e) {
                    json_int_t seq = json_integer_value(
                        json_object_get(e, "seq"));

                    assert_true(seq >= 1 && seq <= 40);
                    assert_int_equal(seen[seq], 0);
                    seen[seq] = 1;
                    total++;
                }
                next = json_is_string(json_object_get(j, "next"))
                       ? apr_pstrdup(gpool, json_string_value(
                                         json_object_get(j, "next")))
                       : NULL;
                json_decref(j);
            }
            else {
                const char *s = resp.body, *e = s + resp.body_len;

                for (; s < e; s = strchr(s, '\n') + 1) {
                    long seq = strtol(s + 7, NULL, 10);

                    assert_true(seq >= 1 && seq <= 40);
                    assert_int_equal(seen[seq], 0);
                    seen[seq] = 1;
                    total++;
                }
                next = resp.next_cursor;
            }
            assert_true(++pages < 100);
        } while (next);
        assert_int_equal(total, 40);
        assert_true(pages > 1);
    }
    free(seen);
    free(body);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_run_start_peek_fails),
        T(test_event_retries_capped),
        T(test_event_retries_then_stored),
        T(test_run_dir_real_and_reported),
        T(test_links_refused),
        T(test_run_root_gone),
        T(test_runs_index),
        T(test_events_route),
        T(test_events_page_bytes),
    };

    return cmocka_run_group_tests_name("ptm_api", tests, group_setup,
                                       group_teardown);
}

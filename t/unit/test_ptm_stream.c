/* Unit tests for GET /stream (SPEC §12.3, src/ptm_stream.c), driven through
 * the router with a fake writer, on a real store (a state file in a
 * temporary directory, a real global mutex) and a real live board in
 * shared memory: the snapshot first with its id; live events in id order,
 * posted from inside the writer; the type filter; Last-Event-ID resumes
 * exactly, or resets (another epoch, too old, ahead, malformed); both
 * refusals at the cap; StreamTimeout, httpd stopping and a client gone end
 * it; a state without a ring sends snapshots; the slot is given back on
 * every path, even when the child's pools are destroyed mid-stream; an
 * event posted by another process wakes the stream at once.  No threads:
 * the fake `stopping` and `gone` flip after so many calls. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"
#include <apr_global_mutex.h>
#include <jansson.h>
#include "ptm_api.h"
#include "ptm_buf.h"
#include "ptm_live.h"
#include "ptm_store.h"

#define SIZE (256 * 1024)
#define RING (64 * 1024)

typedef struct {
    apr_pool_t *p;
    char *dir;
    apr_global_mutex_t *mx;
    void *base;
    apr_size_t size;
    int fd;
    void *board;                /* the live board's shared mapping */
    ptm_api_conf_t conf;
} fx_t;

static void fx_open(fx_t *fx, apr_size_t ring)
{
    ptm_store_open_e how;

    memset(fx, 0, sizeof(*fx));
    assert_int_equal(apr_pool_create(&fx->p, gpool), APR_SUCCESS);
    fx->size = SIZE + ring;
    fx->dir = ptm_unit_tmpdir(fx->p, "ptm_stream_test");
    assert_int_equal(apr_global_mutex_create(
                         &fx->mx, apr_pstrcat(fx->p, fx->dir, "/lock", NULL),
                         APR_LOCK_DEFAULT, fx->p), APR_SUCCESS);
    assert_int_equal(ptm_store_open_file(&fx->base, &fx->fd, &how, NULL,
                                         apr_pstrcat(fx->p, fx->dir,
                                                     "/state", NULL),
                                         NULL, fx->size, ring, fx->p),
                     APR_SUCCESS);
    fx->board = mmap(NULL, ptm_live_size(), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(fx->board != MAP_FAILED);
    fx->conf.store = ptm_store_attach(fx->base, fx->mx, fx->p);
    fx->conf.site_dir = fx->dir;
    fx->conf.run_roots = apr_array_make(fx->p, 1, sizeof(const char *));
    fx->conf.version = "test";
    fx->conf.live = ptm_live_init(fx->board);
    fx->conf.stream_max = 2;
    fx->conf.stream_timeout = apr_time_from_sec(20);
    fx->conf.stream_ping = apr_time_from_sec(15);
    fx->conf.stream_tick = apr_time_from_msec(10);
}

static void fx_close(fx_t *fx)
{
    ptm_store_close_files(fx->conf.store);
    munmap(fx->board, ptm_live_size());
    munmap(fx->base, fx->size);
    close(fx->fd);
    rm_rf(fx->dir);
    apr_pool_destroy(fx->p);
}

static uint32_t subscribers(fx_t *fx)
{
    ptm_live_stats_t ls;

    ptm_live_stats(fx->conf.live, &ls);
    return ls.subscribers;
}

/* POST /event through the router (so the board is notified). */
static void post(fx_t *fx, const char *type, int data)
{
    ptm_api_resp_t resp;
    ptm_api_req_t req;
    apr_pool_t *p;

    apr_pool_create(&p, fx->p);
    memset(&req, 0, sizeof(req));
    req.method = PTM_POST;
    req.path = "/event";
    req.content_type = "application/json";
    req.body = apr_psprintf(p, "{\"type\":\"%s\",\"data\":%d,"
                            "\"store_permanently\":false}", type, data);
    req.body_len = strlen(req.body);
    req.now = apr_time_now();
    ptm_api_handle(&resp, &fx->conf, &req, p);
    if (resp.status != 200) {
        fail_msg("POST /event: %d %.*s", resp.status, (int)resp.body_len,
                 resp.body);
    }
    apr_pool_destroy(p);
}

/* ---- the fake writer ------------------------------------------------------- */

typedef struct fake_s fake_t;
struct fake_s {
    fx_t *fx;
    ptm_buf_t got;              /* every byte written */
    const char *ctype;          /* what start was given */
    int writes, flushes;
    int writes_at_first_flush;  /* -1 until the first flush */
    int stopping_calls, gone_calls;
    int stop_at;                /* stopping() says 1 from this call on */
    int gone_at;                /* gone() says 1 from this call on */
    int fail_write;             /* write n fails (1-based), 0: none */
    int stop_on_telemetry;      /* stop once a telemetry event came */
    void (*on_write)(fake_t *k, int nth);
    apr_pool_t *kill_pool;      /* on_write_kill: destroy it and exit */
};

static apr_status_t fk_start(void *ctx, const char *type)
{
    fake_t *k = ctx;

    assert_null(k->ctype);
    k->ctype = type;
    return APR_SUCCESS;
}

static apr_status_t fk_write(void *ctx, const char *data, size_t len)
{
    fake_t *k = ctx;

    assert_non_null(k->ctype);
    k->writes++;
    if (k->fail_write == k->writes) {
        return APR_ECONNABORTED;
    }
    ptm_buf_add(&k->got, data, len);
    if (k->on_write) {
        k->on_write(k, k->writes);
    }
    return APR_SUCCESS;
}

static apr_status_t fk_flush(void *ctx)
{
    fake_t *k = ctx;

    if (!k->flushes++) {
        k->writes_at_first_flush = k->writes;
    }
    return APR_SUCCESS;
}

static int fk_stopping(void *ctx)
{
    fake_t *k = ctx;

    k->stopping_calls++;
    if (k->stop_on_telemetry) {
        ptm_buf_putc(&k->got, '\0');
        k->got.len--;
        return strstr(k->got.data, "event: telemetry") != NULL;
    }
    return k->stop_at && k->stopping_calls >= k->stop_at;
}

static int fk_gone(void *ctx)
{
    fake_t *k = ctx;

    k->gone_calls++;
    return k->gone_at && k->gone_calls >= k->gone_at;
}

static void fake_init(fake_t *k, fx_t *fx)
{
    memset(k, 0, sizeof(*k));
    k->fx = fx;
    k->writes_at_first_flush = -1;
    ptm_buf_init(&k->got, fx->p, 1024);
}

/* GET (or HEAD) /stream; the fake gets the stream. */
static void get_stream(ptm_api_resp_t *resp, fake_t *k, ptm_method_e m,
                       const char *args, const char *last_event_id,
                       const char *accept, apr_pool_t *p)
{
    ptm_api_out_t out;
    ptm_api_req_t req;

    out.start = fk_start;
    out.write = fk_write;
    out.gone = fk_gone;
    out.flush = fk_flush;
    out.stopping = fk_stopping;
    out.ctx = k;
    memset(&req, 0, sizeof(req));
    req.method = m;
    req.path = "/stream";
    req.args = args;
    req.last_event_id = last_event_id;
    req.accept = accept;
    req.now = apr_time_now();
    req.out = &out;
    ptm_api_handle(resp, &k->fx->conf, &req, p);
}

/* One request in a pool of its own, destroyed after (its cleanups run:
 * the slot must already be free, and freeing it twice must be harmless). */
static void run_stream(ptm_api_resp_t *resp, fake_t *k, const char *args,
                       const char *last_event_id)
{
    apr_pool_t *p;

    apr_pool_create(&p, k->fx->p);
    get_stream(resp, k, PTM_GET, args, last_event_id, NULL, p);
    assert_int_equal(subscribers(k->fx), 0);
    apr_pool_destroy(p);
    assert_int_equal(subscribers(k->fx), 0);
    ptm_buf_putc(&k->got, '\0');
    k->got.len--;
}

/* ---- reading the stream back --------------------------------------------- */

typedef struct {
    const char *id, *event, *data, *retry, *comment;
} sse_t;

/* The events of `text` (fields as the WHATWG parser sees them, one data
 * line each: envelopes are one line). */
static apr_array_header_t *parse(const char *text, apr_pool_t *p)
{
    apr_array_header_t *evs = apr_array_make(p, 8, sizeof(sse_t));
    char *copy = apr_pstrdup(p, text), *block, *save = NULL;

    /* Every event ends with a blank line. */
    assert_true(!*text || strcmp(text + strlen(text) - 2, "\n\n") == 0);
    for (block = copy; block && *block; ) {
        char *end = strstr(block, "\n\n"), *line, *ls = NULL;
        sse_t *e = apr_array_push(evs);

        memset(e, 0, sizeof(*e));
        assert_non_null(end);
        *end = '\0';
        for (line = apr_strtok(block, "\n", &ls); line;
             line = apr_strtok(NULL, "\n", &ls)) {
            if (strncmp(line, "id: ", 4) == 0) {
                e->id = line + 4;
            }
            else if (strncmp(line, "event: ", 7) == 0) {
                e->event = line + 7;
            }
            else if (strncmp(line, "data: ", 6) == 0) {
                assert_null(e->data);
                e->data = line + 6;
            }
            else if (strncmp(line, "retry: ", 7) == 0) {
                e->retry = line + 7;
            }
            else if (strncmp(line, ": ", 2) == 0) {
                e->comment = line + 2;
            }
            else {
                fail_msg("unexpected line %s", line);
            }
        }
        block = end + 2;
    }
    (void)save;
    return evs;
}

static sse_t *ev_at(apr_array_header_t *evs, int i)
{
    assert_true(i < evs->nelts);
    return &APR_ARRAY_IDX(evs, i, sse_t);
}

static const char *id_of(fx_t *fx, uint64_t n)
{
    return apr_psprintf(fx->p, "%" PRIu64 "-%" PRIu64,
                        ptm_store_epoch(fx->conf.store), n);
}

/* A telemetry event with id E-n whose envelope has `type` and `data`. */
static void assert_telemetry(fx_t *fx, const sse_t *e, uint64_t n,
                             const char *type, int data)
{
    json_error_t jerr;
    json_t *j;

    assert_non_null(e->event);
    assert_string_equal(e->event, "telemetry");
    assert_non_null(e->id);
    assert_string_equal(e->id, id_of(fx, n));
    j = json_loads(e->data, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")), type);
    assert_int_equal(json_integer_value(json_object_get(j, "data")), data);
    assert_non_null(json_object_get(j, "seq"));
    assert_non_null(json_object_get(j, "stream"));
    json_decref(j);
}

/* The GET /current answer now. */
static const char *current(fx_t *fx)
{
    ptm_buf_t b;

    ptm_buf_init(&b, fx->p, 256);
    assert_int_equal(ptm_store_current(fx->conf.store, &b), APR_SUCCESS);
    ptm_buf_putc(&b, '\0');
    return b.data;
}

static void assert_snapshot(fx_t *fx, const sse_t *e, uint64_t last_n)
{
    assert_non_null(e->event);
    assert_string_equal(e->event, "current");
    assert_string_equal(e->id, id_of(fx, last_n));
    assert_string_equal(e->data, current(fx));
}

static void assert_ends_retry(apr_array_header_t *evs, const char *ms)
{
    const sse_t *e = ev_at(evs, evs->nelts - 1);

    assert_non_null(e->retry);
    assert_string_equal(e->retry, ms);
    assert_null(e->event);
}

/* ---- the tests ------------------------------------------------------------- */

/* No id: the snapshot first, its id the last event before it (E-0 when
 * there is none), then, when httpd stops, `retry: 1000`. */
static void test_snapshot_first(void **state)
{
    fx_t fx;
    fake_t k;
    ptm_api_resp_t resp;
    apr_array_header_t *evs;

    fx_open(&fx, RING);
    fake_init(&k, &fx);
    k.stop_at = 1;
    run_stream(&resp, &k, NULL, NULL);
    assert_int_equal(resp.status, 200);
    assert_true(resp.streamed);
    assert_string_equal(k.ctype, "text/event-stream");
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 2);
    assert_snapshot(&fx, ev_at(evs, 0), 0);
    assert_string_equal(ev_at(evs, 0)->data, "{\"current\":{}}");
    assert_ends_retry(evs, "1000");
    assert_true(k.flushes >= 2);

    post(&fx, "a", 1);
    post(&fx, "b", 2);
    fake_init(&k, &fx);
    k.stop_at = 1;
    run_stream(&resp, &k, NULL, NULL);
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 2);
    assert_snapshot(&fx, ev_at(evs, 0), 2);
    assert_non_null(strstr(ev_at(evs, 0)->data, "\"b\":{"));
    fx_close(&fx);
}

/* Posted while the stream runs (from inside its writer): each once, in id
 * order, the file-form line as data; the events counted as sent. */
static void post_three(fake_t *k, int nth)
{
    if (nth == 1) {
        post(k->fx, "a", 1);
        post(k->fx, "b", 2);
        post(k->fx, "a", 3);
    }
    else if (nth == 2) {
        post(k->fx, "c", 4);
    }
}

static void test_live_in_order(void **state)
{
    fx_t fx;
    fake_t k;
    ptm_api_resp_t resp;
    apr_array_header_t *evs;
    ptm_live_stats_t ls;

    fx_open(&fx, RING);
    fake_init(&k, &fx);
    k.on_write = post_three;
    k.stop_at = 5;
    run_stream(&resp, &k, NULL, NULL);
    assert_int_equal(resp.status, 200);
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 6);
    assert_string_equal(ev_at(evs, 0)->event, "current");
    assert_string_equal(ev_at(evs, 0)->id, id_of(&fx, 0));
    assert_telemetry(&fx, ev_at(evs, 1), 1, "a", 1);
    assert_telemetry(&fx, ev_at(evs, 2), 2, "b", 2);
    assert_telemetry(&fx, ev_at(evs, 3), 3, "a", 3);
    assert_telemetry(&fx, ev_at(evs, 4), 4, "c", 4);
    assert_ends_retry(evs, "1000");
    ptm_live_stats(fx.conf.live, &ls);
    assert_int_equal(ls.sent, 4);
    assert_int_equal(ls.high, 1);
    fx_close(&fx);
}

/* type= (repeatable) keeps only those types; the ids of the others are
 * skipped, not sent later. */
static void test_type_filter(void **state)
{
    fx_t fx;
    fake_t k;
    ptm_api_resp_t resp;
    apr_array_header_t *evs;

    fx_open(&fx, RING);
    fake_init(&k, &fx);
    k.on_write = post_three;
    k.stop_at = 5;
    run_stream(&resp, &k, "type=c&x=1&type=a", NULL);
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 5);
    assert_string_equal(ev_at(evs, 0)->event, "current");
    assert_telemetry(&fx, ev_at(evs, 1), 1, "a", 1);
    assert_telemetry(&fx, ev_at(evs, 2), 3, "a", 3);
    assert_telemetry(&fx, ev_at(evs, 3), 4, "c", 4);
    assert_ends_retry(evs, "1000");

    /* Percent-encoded, with a '+' for a space. */
    post(&fx, "a b", 5);
    fake_init(&k, &fx);
    k.stop_at = 1;
    run_stream(&resp, &k, "type=a%20b", id_of(&fx, 0));
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 2);
    assert_telemetry(&fx, ev_at(evs, 0), 5, "a b", 5);
    fake_init(&k, &fx);
    k.stop_at = 1;
    run_stream(&resp, &k, "type=a+b", id_of(&fx, 4));
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 2);
    assert_telemetry(&fx, ev_at(evs, 0), 5, "a b", 5);

    /* A type that is not UTF-8: 422, as GET /events. */
    fake_init(&k, &fx);
    run_stream(&resp, &k, "type=%ff", NULL);
    assert_int_equal(resp.status, 422);
    assert_false(resp.streamed);
    assert_non_null(strstr(resp.body, "string_unicode"));
    assert_non_null(strstr(resp.body, "[\"query\",\"type\"]"));
    assert_null(k.ctype);
    fx_close(&fx);
}

/* Last-Event-ID: exactly the events after it, no snapshot; the header
 * wins over last_event_id=; the last id sends nothing; E-0 all. */
static void test_resume_exact(void **state)
{
    fx_t fx;
    fake_t k;
    ptm_api_resp_t resp;
    apr_array_header_t *evs;
    int i;

    fx_open(&fx, RING);
    for (i = 1; i <= 100; i++) {
        post(&fx, i % 2 ? "odd" : "even", i);
    }
    fake_init(&k, &fx);
    k.stop_at = 1;
    run_stream(&resp, &k, NULL, id_of(&fx, 0));
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 101);
    for (i = 1; i <= 100; i++) {
        assert_telemetry(&fx, ev_at(evs, i - 1), (uint64_t)i,
                         i % 2 ? "odd" : "even", i);
    }
    assert_ends_retry(evs, "1000");

    fake_init(&k, &fx);
    k.stop_at = 1;
    run_stream(&resp, &k, apr_pstrcat(fx.p, "last_event_id=",
                                      id_of(&fx, 97), NULL), NULL);
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 4);
    assert_telemetry(&fx, ev_at(evs, 0), 98, "even", 98);
    assert_telemetry(&fx, ev_at(evs, 2), 100, "even", 100);

    /* The header wins. */
    fake_init(&k, &fx);
    k.stop_at = 1;
    run_stream(&resp, &k, apr_pstrcat(fx.p, "last_event_id=",
                                      id_of(&fx, 10), NULL),
               id_of(&fx, 98));
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 3);
    assert_telemetry(&fx, ev_at(evs, 0), 99, "odd", 99);

    /* The last one: nothing missed, nothing to send; the head goes out
     * at once all the same (flushed before anything is written), or the
     * client would not know its stream is open until the next event. */
    fake_init(&k, &fx);
    k.stop_at = 1;
    run_stream(&resp, &k, "type=odd", id_of(&fx, 100));
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 1);
    assert_ends_retry(evs, "1000");
    assert_int_equal(k.writes_at_first_flush, 0);

    /* With a filter: the matching ones after it. */
    fake_init(&k, &fx);
    k.stop_at = 1;
    run_stream(&resp, &k, "type=odd", id_of(&fx, 94));
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 4);
    assert_telemetry(&fx, ev_at(evs, 0), 95, "odd", 95);
    assert_telemetry(&fx, ev_at(evs, 1), 97, "odd", 97);
    assert_telemetry(&fx, ev_at(evs, 2), 99, "odd", 99);
    fx_close(&fx);
}

/* More than one copy's worth (COPY_MAX, 256) after the id: all, in
 * order. */
static void test_resume_many(void **state)
{
    fx_t fx;
    fake_t k;
    ptm_api_resp_t resp;
    apr_array_header_t *evs;
    int i;

    fx_open(&fx, 256 * 1024);
    for (i = 1; i <= 600; i++) {
        post(&fx, "x", i);
    }
    fake_init(&k, &fx);
    k.stop_at = 1;
    run_stream(&resp, &k, NULL, id_of(&fx, 0));
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 601);
    for (i = 1; i <= 600; i++) {
        assert_string_equal(ev_at(evs, i - 1)->id, id_of(&fx, (uint64_t)i));
    }
    fx_close(&fx);
}

/* An id that cannot be resumed from: `event: reset` (a detail naming the
 * id) then the snapshot; live events go on after it. */
static void check_reset(fx_t *fx, const char *args, const char *id,
                        const char *why)
{
    fake_t k;
    ptm_api_resp_t resp;
    apr_array_header_t *evs;
    json_t *j;
    uint64_t next;
    ptm_recent_info_t info;

    fake_init(&k, fx);
    k.stop_at = 1;
    run_stream(&resp, &k, args, id);
    assert_int_equal(resp.status, 200);
    evs = parse(k.got.data, fx->p);
    assert_int_equal(evs->nelts, 3);
    assert_string_equal(ev_at(evs, 0)->event, "reset");
    assert_null(ev_at(evs, 0)->id);
    j = json_loads(ev_at(evs, 0)->data, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 1);
    if (!strstr(json_string_value(json_object_get(j, "detail")), why)) {
        fail_msg("reset %s does not say %s", ev_at(evs, 0)->data, why);
    }
    json_decref(j);
    assert_int_equal(ptm_store_recent(&info, NULL, NULL, fx->conf.store, 0,
                                      0, NULL, NULL, fx->p), APR_SUCCESS);
    next = info.next_n;
    assert_snapshot(fx, ev_at(evs, 1), next - 1);
    assert_ends_retry(evs, "1000");
}

static void test_reset(void **state)
{
    fx_t fx;
    int i;
    uint64_t e;

    fx_open(&fx, 2048);
    for (i = 1; i <= 60; i++) {
        post(&fx, "a", i);
    }
    e = ptm_store_epoch(fx.conf.store);
    /* Too old: the ring dropped what came after it. */
    check_reset(&fx, NULL, id_of(&fx, 1), "cannot resume after ");
    check_reset(&fx, NULL, id_of(&fx, 1), "no longer kept");
    /* Another epoch. */
    check_reset(&fx, NULL, apr_psprintf(fx.p, "%" PRIu64 "-59", e + 1),
                "made anew");
    /* Ahead of every event. */
    check_reset(&fx, NULL, id_of(&fx, 61), "no event has that id yet");
    check_reset(&fx, NULL, apr_psprintf(fx.p, "%" PRIu64
                                        "-18446744073709551615", e),
                "no event has that id yet");
    /* Malformed, in the header or the query. */
    check_reset(&fx, NULL, "abc", "cannot resume after abc: not an event "
                "id");
    check_reset(&fx, "last_event_id=1-2-3", NULL, "after 1-2-3: not an");
    check_reset(&fx, NULL, " 1-2", "not an event id");
    check_reset(&fx, NULL, "\x01\n\xff", "not an event id");
    fx_close(&fx);
}

/* A subscriber that falls behind the ring while the stream runs (a burst
 * bigger than the ring between two looks): reset and snapshot, then on. */
static void burst(fake_t *k, int nth)
{
    int i;

    if (nth == 1) {
        for (i = 0; i < 60; i++) {
            post(k->fx, "a", i);
        }
    }
    else if (nth == 2) {
        post(k->fx, "b", 7);
    }
}

static void test_fell_behind(void **state)
{
    fx_t fx;
    fake_t k;
    ptm_api_resp_t resp;
    apr_array_header_t *evs;

    fx_open(&fx, 2048);
    fake_init(&k, &fx);
    k.on_write = burst;
    k.stop_at = 4;
    run_stream(&resp, &k, NULL, NULL);
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 5);
    assert_string_equal(ev_at(evs, 0)->event, "current");
    assert_string_equal(ev_at(evs, 1)->event, "reset");
    assert_non_null(strstr(ev_at(evs, 1)->data, "fell behind"));
    assert_string_equal(ev_at(evs, 2)->event, "current");
    assert_string_equal(ev_at(evs, 2)->id, id_of(&fx, 60));
    assert_telemetry(&fx, ev_at(evs, 3), 61, "b", 7);
    assert_ends_retry(evs, "1000");
    fx_close(&fx);
}

/* At the cap: an EventSource gets retry 30000 and `event: busy`, anything
 * else 503 with Retry-After; neither holds a slot; refusals counted.
 * StreamMax 0 and no board refuse alike.  HEAD holds no slot. */
static void test_busy(void **state)
{
    fx_t fx;
    fake_t k;
    ptm_api_resp_t resp;
    ptm_live_stats_t ls;
    apr_array_header_t *evs;
    json_t *j;
    int a, b;

    fx_open(&fx, RING);
    a = ptm_live_claim(fx.conf.live, 2, getpid());
    b = ptm_live_claim(fx.conf.live, 2, getpid());
    assert_true(a >= 0 && b >= 0);

    fake_init(&k, &fx);
    get_stream(&resp, &k, PTM_GET, NULL, NULL, "text/event-stream", fx.p);
    assert_int_equal(resp.status, 200);
    assert_false(resp.streamed);
    assert_null(k.ctype);
    assert_string_equal(resp.content_type, "text/event-stream");
    evs = parse(apr_pstrmemdup(fx.p, resp.body, resp.body_len), fx.p);
    assert_int_equal(evs->nelts, 2);
    assert_string_equal(ev_at(evs, 0)->retry, "30000");
    assert_string_equal(ev_at(evs, 1)->event, "busy");
    j = json_loads(ev_at(evs, 1)->data, 0, NULL);
    assert_non_null(strstr(json_string_value(json_object_get(j, "detail")),
                           "PanoptesTelemetryStreamMax 2"));
    json_decref(j);

    fake_init(&k, &fx);
    get_stream(&resp, &k, PTM_GET, NULL, NULL, "application/json", fx.p);
    assert_int_equal(resp.status, 503);
    assert_null(resp.content_type);
    assert_string_equal(resp.retry_after, "30");
    assert_non_null(strstr(apr_pstrmemdup(fx.p, resp.body, resp.body_len),
                           "{\"detail\":\"Too many live-feed subscribers "
                           "(PanoptesTelemetryStreamMax 2); retry later\"}"));
    ptm_live_stats(fx.conf.live, &ls);
    assert_int_equal(ls.subscribers, 2);
    assert_int_equal(ls.busy, 2);

    /* HEAD: the head of a stream, whatever the slots. */
    fake_init(&k, &fx);
    get_stream(&resp, &k, PTM_HEAD, NULL, NULL, NULL, fx.p);
    assert_int_equal(resp.status, 200);
    assert_true(resp.streamed);
    assert_string_equal(k.ctype, "text/event-stream");
    assert_int_equal(k.writes, 0);

    ptm_live_release(fx.conf.live, a);
    ptm_live_release(fx.conf.live, b);
    assert_int_equal(subscribers(&fx), 0);

    fx.conf.stream_max = 0;
    fake_init(&k, &fx);
    get_stream(&resp, &k, PTM_GET, NULL, NULL, NULL, fx.p);
    assert_int_equal(resp.status, 503);
    assert_non_null(strstr(resp.body, "PanoptesTelemetryStreamMax 0"));
    fake_init(&k, &fx);
    get_stream(&resp, &k, PTM_HEAD, NULL, NULL, NULL, fx.p);
    assert_int_equal(resp.status, 503);
    fx.conf.stream_max = 2;
    fx.conf.live = NULL;
    fake_init(&k, &fx);
    get_stream(&resp, &k, PTM_GET, NULL, NULL, "text/event-stream", fx.p);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(resp.body, "event: busy\n"));
    post(&fx, "a", 1);          /* no board: nothing to notify */
    fx_close(&fx);
}

/* POST /stream: 405 with Allow, like every route. */
static void test_method(void **state)
{
    fx_t fx;
    ptm_api_resp_t resp;
    ptm_api_req_t req;

    fx_open(&fx, RING);
    memset(&req, 0, sizeof(req));
    req.method = PTM_POST;
    req.path = "/stream";
    req.now = apr_time_now();
    ptm_api_handle(&resp, &fx.conf, &req, fx.p);
    assert_int_equal(resp.status, 405);
    assert_string_equal(resp.allow, "GET");
    req.method = PTM_OTHER;
    ptm_api_handle(&resp, &fx.conf, &req, fx.p);
    assert_int_equal(resp.status, 405);
    fx_close(&fx);
}

/* StreamTimeout: ends with retry 1000 once it is reached, pinging before
 * when the ping is due first. */
static void test_timeout_and_ping(void **state)
{
    fx_t fx;
    fake_t k;
    ptm_api_resp_t resp;
    apr_array_header_t *evs;
    apr_time_t t0 = apr_time_now();
    int i, pings = 0;

    fx_open(&fx, RING);
    fx.conf.stream_timeout = apr_time_from_msec(300);
    fx.conf.stream_ping = apr_time_from_msec(100);
    fx.conf.stream_tick = apr_time_from_sec(10);
    fake_init(&k, &fx);
    run_stream(&resp, &k, NULL, NULL);
    assert_true(apr_time_now() - t0 >= apr_time_from_msec(300));
    assert_true(apr_time_now() - t0 < apr_time_from_sec(3));
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(resp.log, "PanoptesTelemetryStreamTimeout"));
    evs = parse(k.got.data, fx.p);
    assert_string_equal(ev_at(evs, 0)->event, "current");
    for (i = 1; i < evs->nelts - 1; i++) {
        assert_string_equal(ev_at(evs, i)->comment, "ping");
        pings++;
    }
    assert_true(pings >= 2 && pings <= 3);
    assert_ends_retry(evs, "1000");
    fx_close(&fx);
}

/* The client gone (asked, or a write failing): ends at once, 499, nothing
 * more written. */
static void test_gone(void **state)
{
    fx_t fx;
    fake_t k;
    ptm_api_resp_t resp;
    apr_array_header_t *evs;

    fx_open(&fx, RING);
    fake_init(&k, &fx);
    k.gone_at = 3;
    run_stream(&resp, &k, NULL, NULL);
    assert_int_equal(resp.status, 499);
    assert_true(resp.streamed);
    assert_int_equal(k.gone_calls, 3);
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 1);
    assert_string_equal(ev_at(evs, 0)->event, "current");

    fake_init(&k, &fx);
    k.fail_write = 2;
    k.on_write = post_three;
    run_stream(&resp, &k, NULL, NULL);
    assert_int_equal(resp.status, 499);
    assert_int_equal(k.writes, 2);

    fake_init(&k, &fx);
    k.fail_write = 1;
    run_stream(&resp, &k, NULL, NULL);
    assert_int_equal(resp.status, 499);
    assert_int_equal(k.writes, 1);
    fx_close(&fx);
}

/* PanoptesTelemetryRecent 0: no events to copy; each change sends the
 * snapshot again, with its id.  A resume works only from the last id. */
static void post_two(fake_t *k, int nth)
{
    if (nth <= 2) {
        post(k->fx, "a", nth);
    }
}

static void test_ring_off(void **state)
{
    fx_t fx;
    fake_t k;
    ptm_api_resp_t resp;
    apr_array_header_t *evs;

    fx_open(&fx, 0);
    fake_init(&k, &fx);
    k.on_write = post_two;
    k.stop_at = 4;
    run_stream(&resp, &k, NULL, NULL);
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 4);
    assert_string_equal(ev_at(evs, 0)->id, id_of(&fx, 0));
    assert_string_equal(ev_at(evs, 1)->event, "current");
    assert_string_equal(ev_at(evs, 1)->id, id_of(&fx, 1));
    assert_string_equal(ev_at(evs, 2)->event, "current");
    assert_snapshot(&fx, ev_at(evs, 2), 2);
    assert_ends_retry(evs, "1000");

    fake_init(&k, &fx);
    k.stop_at = 1;
    run_stream(&resp, &k, NULL, id_of(&fx, 2));
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 1);
    check_reset(&fx, NULL, id_of(&fx, 1), "PanoptesTelemetryRecent 0");
    fx_close(&fx);
}

/* A child serving a stream exits in the middle (httpd destroys its pools
 * on the way out): the pool's cleanup gives the slot back. */
static void die_mid_stream(fake_t *k, int nth)
{
    apr_pool_destroy(k->kill_pool);
    _exit(0);
}

static void test_pool_destroyed(void **state)
{
    fx_t fx;
    fake_t k;
    ptm_api_resp_t resp;
    pid_t pid;
    int status;

    fx_open(&fx, RING);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        apr_pool_t *child, *req;

        apr_pool_create(&child, NULL);
        apr_pool_create(&req, child);
        fake_init(&k, &fx);
        k.kill_pool = child;
        k.on_write = die_mid_stream;
        get_stream(&resp, &k, PTM_GET, NULL, NULL, NULL, req);
        _exit(3);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(subscribers(&fx), 0);
    fx_close(&fx);
}

/* An event posted by another process wakes the stream at once: the tick
 * is 10 s, the event arrives well before. */
static void test_woken_by_other_process(void **state)
{
    fx_t fx;
    fake_t k;
    ptm_api_resp_t resp;
    apr_array_header_t *evs;
    apr_time_t t0;
    pid_t pid;
    int status;

    fx_open(&fx, RING);
    fx.conf.stream_tick = apr_time_from_sec(10);
    fx.conf.stream_timeout = apr_time_from_sec(5);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        usleep(200 * 1000);
        post(&fx, "far", 9);
        _exit(0);
    }
    t0 = apr_time_now();
    fake_init(&k, &fx);
    k.stop_on_telemetry = 1;
    run_stream(&resp, &k, NULL, NULL);
    assert_true(apr_time_now() - t0 < apr_time_from_sec(2));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    evs = parse(k.got.data, fx.p);
    assert_int_equal(evs->nelts, 3);
    assert_telemetry(&fx, ev_at(evs, 1), 1, "far", 9);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_first),
        cmocka_unit_test(test_live_in_order),
        cmocka_unit_test(test_type_filter),
        cmocka_unit_test(test_resume_exact),
        cmocka_unit_test(test_resume_many),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_fell_behind),
        cmocka_unit_test(test_busy),
        cmocka_unit_test(test_method),
        cmocka_unit_test(test_timeout_and_ping),
        cmocka_unit_test(test_gone),
        cmocka_unit_test(test_ring_off),
        cmocka_unit_test(test_pool_destroyed),
        cmocka_unit_test(test_woken_by_other_process),
    };

    return cmocka_run_group_tests_name("ptm_stream", tests, group_setup,
                                       group_teardown);
}

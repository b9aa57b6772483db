/* Unit tests for ptm_store (SPEC §1, §3.4-§3.8, §5, §7, §11.3 F10,
 * §11.4): the shared state on real APR shared memory with a real global
 * mutex, appending to real files, the seq rules, the merged current view,
 * runs, "nothing changes unless everything succeeds" (write errors, 507,
 * stale run), arena compaction, and real fork()ed writers.
 *
 * Events are assembled here by hand from the pieces the store takes, so
 * these tests do not depend on ptm_event or ptm_json. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_global_mutex.h>
#include <apr_pools.h>
#include <apr_shm.h>
#include <apr_strings.h>
#include "ptm_buf.h"
#include "ptm_store.h"

#define TS "2026-03-17T20:15:00.000Z"
#define TS_PART ",\"ts\":\"" TS "\""

static apr_pool_t *gpool;

/* One fresh store per test: segment, mutex, handle, temp dir. */
typedef struct {
    apr_pool_t *p;
    apr_shm_t *shm;
    apr_global_mutex_t *mx;
    const char *lock_path;
    void *base;
    apr_size_t size;
    ptm_store_t *st;
    char *dir;
    char *file;             /* dir/site.ndjson */
} fx_t;

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    return remove(path);
}

/* The fixture a failed test left open (cmocka longjmps past fx_close). */
static fx_t *open_fx;

static void fx_open(fx_t *fx, apr_size_t size)
{
    char tmpl[] = "/tmp/ptm_store_test.XXXXXX";

    memset(fx, 0, sizeof(*fx));
    open_fx = fx;
    assert_int_equal(apr_pool_create(&fx->p, gpool), APR_SUCCESS);
    if (!mkdtemp(tmpl)) {
        fail_msg("mkdtemp: %s", strerror(errno));
    }
    fx->dir = apr_pstrdup(fx->p, tmpl);
    fx->file = apr_pstrcat(fx->p, fx->dir, "/site.ndjson", NULL);
    fx->lock_path = apr_pstrcat(fx->p, fx->dir, "/lock", NULL);
    fx->size = size;
    /* Anonymous: inherited across fork(), like httpd's segment. */
    assert_int_equal(apr_shm_create(&fx->shm, size, NULL, fx->p),
                     APR_SUCCESS);
    fx->base = apr_shm_baseaddr_get(fx->shm);
    assert_true(apr_shm_size_get(fx->shm) >= size);
    assert_int_equal(apr_global_mutex_create(&fx->mx, fx->lock_path,
                                             APR_LOCK_DEFAULT, fx->p),
                     APR_SUCCESS);
    /* Garbage first: format must not rely on a zeroed segment. */
    memset(fx->base, 0xa5, size);
    assert_false(ptm_store_is_formatted(fx->base, size));
    ptm_store_format(fx->base, size);
    assert_true(ptm_store_is_formatted(fx->base, size));
    fx->st = ptm_store_attach(fx->base, fx->mx, fx->p);
    assert_non_null(fx->st);
}

static void fx_close(fx_t *fx)
{
    open_fx = NULL;
    if (fx->mx) {
        apr_global_mutex_destroy(fx->mx);
    }
    if (fx->shm) {
        apr_shm_destroy(fx->shm);
    }
    if (fx->dir) {
        nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
    apr_pool_destroy(fx->p);
}

static int test_teardown(void **state)
{
    if (open_fx) {
        fx_close(open_fx);
    }
    return 0;
}

static int open_append(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0) {
        fail_msg("open %s: %s", path, strerror(errno));
    }
    return fd;
}

/* The whole file, NUL-terminated; "" when it does not exist. */
static char *slurp(const char *path, size_t *len, apr_pool_t *p)
{
    FILE *f = fopen(path, "rb");
    char *s;
    long n;

    if (!f) {
        *len = 0;
        return apr_pstrdup(p, "");
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    s = apr_palloc(p, (apr_size_t)n + 1);
    if (n > 0 && fread(s, 1, (size_t)n, f) != (size_t)n) {
        fail_msg("short read of %s", path);
    }
    s[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return s;
}

static uint64_t run_gen(fx_t *fx)
{
    ptm_store_run_t r;

    assert_int_equal(ptm_store_run_peek(&r, fx->st, fx->p), APR_SUCCESS);
    return r.gen;
}

/* An event whose data is `data` (JSON text). */
static void mk_event(ptm_store_event_t *ev, apr_pool_t *p, uint64_t gen,
                     int stream, const char *type, const char *data,
                     int make_current, int fd)
{
    memset(ev, 0, sizeof(*ev));
    ev->run_gen = gen;
    ev->stream = stream;
    ev->key = apr_psprintf(p, "\"%s\"", type);
    ev->key_len = strlen(ev->key);
    ev->ts_part = TS_PART;
    ev->ts_len = strlen(TS_PART);
    ev->body_part = apr_psprintf(p, ",\"type\":\"%s\",\"data\":%s,"
                                 "\"meta\":{%s}}", type, data,
                                 stream == PTM_STREAM_RUN
                                 ? "\"run_id\":\"001\"" : "");
    ev->body_len = strlen(ev->body_part);
    ev->make_current = make_current;
    ev->fd = fd;
    ev->sync = 0;
}

static const char *file_line(apr_pool_t *p, uint64_t seq,
                             const ptm_store_event_t *ev)
{
    return apr_psprintf(p, "{\"seq\":%" PRIu64 "%.*s,\"stream\":\"%s\"%.*s\n",
                        seq, (int)ev->ts_len, ev->ts_part,
                        ev->stream == PTM_STREAM_RUN ? "run" : "site",
                        (int)ev->body_len, ev->body_part);
}

static const char *public_env(apr_pool_t *p, uint64_t seq,
                              const ptm_store_event_t *ev)
{
    return apr_psprintf(p, "{\"seq\":%" PRIu64 "%.*s%.*s", seq,
                        (int)ev->ts_len, ev->ts_part, (int)ev->body_len,
                        ev->body_part);
}

/* Post and expect success with `want_seq`; returns the public envelope. */
static const char *post_ok(fx_t *fx, int stream, const char *type,
                           const char *data, int make_current, int fd,
                           uint64_t want_seq)
{
    ptm_store_event_t ev;
    uint64_t seq = 0;
    apr_status_t rv;

    mk_event(&ev, fx->p, run_gen(fx), stream, type, data, make_current, fd);
    rv = ptm_store_event(fx->st, &ev, &seq);
    if (rv != APR_SUCCESS) {
        fail_msg("post %s: status %d", type, rv);
    }
    if (seq != want_seq) {
        fail_msg("post %s: seq %" PRIu64 ", want %" PRIu64, type, seq,
                 want_seq);
    }
    return public_env(fx->p, seq, &ev);
}

static const char *current(fx_t *fx)
{
    ptm_buf_t b;

    ptm_buf_init(&b, fx->p, 64);
    assert_int_equal(ptm_store_current(fx->st, &b), APR_SUCCESS);
    ptm_buf_putc(&b, '\0');
    return b.data;
}

static void check_current(fx_t *fx, const char *want)
{
    const char *got = current(fx);

    if (strcmp(got, want) != 0) {
        fail_msg("current:\n  got  %s\n  want %s", got, want);
    }
}

static void check_one(fx_t *fx, const char *type, const char *want)
{
    ptm_buf_t b;
    const char *key = apr_psprintf(fx->p, "\"%s\"", type);
    apr_status_t rv;

    ptm_buf_init(&b, fx->p, 64);
    rv = ptm_store_current_one(fx->st, key, strlen(key), &b);
    if (!want) {
        if (rv != PTM_STORE_NOTFOUND) {
            fail_msg("current_one %s: status %d, want NOTFOUND", type, rv);
        }
        return;
    }
    if (rv != APR_SUCCESS) {
        fail_msg("current_one %s: status %d", type, rv);
    }
    if (b.len != strlen(want) || memcmp(b.data, want, b.len) != 0) {
        fail_msg("current_one %s:\n  got  %.*s\n  want %s", type,
                 (int)b.len, b.data, want);
    }
}

static void check_file(fx_t *fx, const char *path, const char *want)
{
    size_t len;
    const char *got = slurp(path, &len, fx->p);

    if (len != strlen(want) || memcmp(got, want, len) != 0) {
        fail_msg("file %s:\n  got  %s\n  want %s", path, got, want);
    }
}

static ptm_store_stats_t stats(fx_t *fx)
{
    ptm_store_stats_t s;

    memset(&s, 0, sizeof(s));
    assert_int_equal(ptm_store_stats(fx->st, &s), APR_SUCCESS);
    return s;
}

static const char *entry(apr_pool_t *p, const char *type, const char *env)
{
    return apr_psprintf(p, "\"%s\":%s", type, env);
}

typedef struct {
    int calls;
    apr_status_t rv;
    uint64_t floor;                 /* what the "directory" already holds */
} prep_t;

static apr_status_t prepare(void *ctx, uint64_t *seq_floor)
{
    prep_t *c = ctx;

    c->calls++;
    *seq_floor = c->floor;
    return c->rv;
}

static apr_status_t start_run(fx_t *fx, const char *obj, const char *id,
                              const char *dir, prep_t *prep)
{
    return ptm_store_run_start(fx->st, obj, strlen(obj), id, strlen(id), dir,
                               prepare, prep);
}

static const char *stop_run(fx_t *fx)
{
    ptm_buf_t b;

    ptm_buf_init(&b, fx->p, 64);
    assert_int_equal(ptm_store_run_stop(fx->st, &b), APR_SUCCESS);
    ptm_buf_putc(&b, '\0');
    return b.data;
}

#define RUN_OBJ(id) \
    "{\"run_dir\":\"/srv/t/" id "\",\"run_id\":\"" id "\",\"meta\":" \
    "{\"run_id\":\"" id "\"},\"started_at\":\"" TS "\"}"

static int group_setup(void **state)
{
    if (apr_initialize() != APR_SUCCESS) {
        return -1;
    }
    return apr_pool_create(&gpool, NULL) == APR_SUCCESS ? 0 : -1;
}

static int group_teardown(void **state)
{
    apr_pool_destroy(gpool);
    apr_terminate();
    return 0;
}

/* ---- layout ------------------------------------------------------------- */

static void test_format_and_attach(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    ptm_store_stats_t s;
    ptm_store_run_t r;
    ptm_store_t *again;
    ptm_buf_t b;

    fx_open(&fx, 1024 * 1024);
    assert_false(ptm_store_is_formatted(fx.base, fx.size - 8));
    assert_false(ptm_store_is_formatted(fx.base, fx.size + 8));
    assert_ptr_equal(ptm_store_mutex(fx.st), fx.mx);

    s = stats(&fx);
    assert_int_equal(s.seq[0], 0);
    assert_int_equal(s.seq[1], 0);
    assert_int_equal(s.events[0], 0);
    assert_int_equal(s.events[1], 0);
    assert_int_equal(s.types[0], 0);
    assert_int_equal(s.types[1], 0);
    assert_int_equal(s.run_active, 0);
    assert_int_equal(s.bytes_total, fx.size);
    assert_true(s.bytes_used <= s.bytes_total);

    check_current(&fx, "{\"current\":{}}");
    check_one(&fx, "x", NULL);
    assert_int_equal(ptm_store_run_peek(&r, fx.st, fx.p), APR_SUCCESS);
    assert_int_equal(r.active, 0);
    ptm_buf_init(&b, fx.p, 64);
    assert_int_equal(ptm_store_run_get(fx.st, &b), PTM_STORE_NORUN);
    assert_int_equal(ptm_store_run_stop(fx.st, &b), PTM_STORE_NORUN);
    assert_int_equal(b.len, 0);

    /* A second handle on the same segment (a later generation, another
     * child) sees the same state. */
    post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, -1, 1);
    again = ptm_store_attach(fx.base, fx.mx, fx.p);
    ptm_buf_init(&b, fx.p, 64);
    assert_int_equal(ptm_store_current_one(again, "\"a\"", 3, &b),
                     APR_SUCCESS);
    assert_int_equal(ptm_store_is_formatted(fx.base, fx.size), 1);
    fx_close(&fx);
}

/* ---- events on the site stream ------------------------------------------ */

static void test_site_events_file_bytes(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    ptm_store_event_t ev[4];
    const char *want = "", *env[4];
    uint64_t seq;
    int fd, i;
    static const char *const types[] = { "weather", "mount", "weather",
                                         "caf\\u00e9" };
    static const char *const datas[] = { "{\"sky\":\"clear\"}", "[1,2.5]",
                                         "{\"sky\":\"cloudy\"}", "null" };
    ptm_store_stats_t s;

    fx_open(&fx, 1024 * 1024);
    fd = open_append(fx.file);
    for (i = 0; i < 4; i++) {
        mk_event(&ev[i], fx.p, run_gen(&fx), PTM_STREAM_SITE, types[i],
                 datas[i], 1, fd);
        seq = 0;
        assert_int_equal(ptm_store_event(fx.st, &ev[i], &seq), APR_SUCCESS);
        assert_int_equal(seq, (uint64_t)i + 1);
        env[i] = public_env(fx.p, seq, &ev[i]);
        want = apr_pstrcat(fx.p, want, file_line(fx.p, seq, &ev[i]), NULL);
    }
    close(fd);
    /* Byte for byte: {"seq":N + ts_part + ,"stream":"site" + body_part. */
    check_file(&fx, fx.file, want);
    assert_string_equal(file_line(fx.p, 1, &ev[0]),
                        "{\"seq\":1,\"ts\":\"" TS "\",\"stream\":\"site\","
                        "\"type\":\"weather\",\"data\":{\"sky\":\"clear\"},"
                        "\"meta\":{}}\n");
    /* "weather" keeps its first position with its latest value. */
    check_current(&fx, apr_pstrcat(fx.p, "{\"current\":{",
                                   entry(fx.p, "weather", env[2]), ",",
                                   entry(fx.p, "mount", env[1]), ",",
                                   entry(fx.p, "caf\\u00e9", env[3]), "}}",
                                   NULL));
    check_one(&fx, "weather", env[2]);
    check_one(&fx, "mount", env[1]);
    check_one(&fx, "caf\\u00e9", env[3]);
    check_one(&fx, "caf", NULL);
    check_one(&fx, "weather ", NULL);
    s = stats(&fx);
    assert_int_equal(s.seq[PTM_STREAM_SITE], 4);
    assert_int_equal(s.seq[PTM_STREAM_RUN], 0);
    assert_int_equal(s.events[PTM_STREAM_SITE], 4);
    assert_int_equal(s.types[PTM_STREAM_SITE], 3);
    assert_int_equal(s.types[PTM_STREAM_RUN], 0);
    fx_close(&fx);
}

/* make_current=false and ephemeral events still use a seq (§5, §7). */
static void test_make_current_false_and_ephemeral(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    ptm_store_event_t ev;
    const char *e1, *e4, *want_file;
    uint64_t seq;
    int fd;

    fx_open(&fx, 1024 * 1024);
    fd = open_append(fx.file);
    e1 = post_ok(&fx, PTM_STREAM_SITE, "x", "1", 1, fd, 1);
    mk_event(&ev, fx.p, run_gen(&fx), PTM_STREAM_SITE, "x", "2", 0, fd);
    assert_int_equal(ptm_store_event(fx.st, &ev, &seq), APR_SUCCESS);
    assert_int_equal(seq, 2);
    want_file = apr_pstrcat(fx.p, "{\"seq\":1" TS_PART ",\"stream\":\"site\""
                            ",\"type\":\"x\",\"data\":1,\"meta\":{}}\n",
                            file_line(fx.p, 2, &ev), NULL);
    /* A new type with make_current=false stays unknown. */
    post_ok(&fx, PTM_STREAM_SITE, "y", "3", 0, fd, 3);
    check_current(&fx, apr_pstrcat(fx.p, "{\"current\":{",
                                   entry(fx.p, "x", e1), "}}", NULL));
    check_one(&fx, "x", e1);
    check_one(&fx, "y", NULL);
    /* Ephemeral (fd -1): numbered, current, not in the file. */
    e4 = post_ok(&fx, PTM_STREAM_SITE, "x", "4", 1, -1, 4);
    post_ok(&fx, PTM_STREAM_SITE, "z", "5", 0, -1, 5);
    check_one(&fx, "x", e4);
    check_one(&fx, "z", NULL);
    mk_event(&ev, fx.p, run_gen(&fx), PTM_STREAM_SITE, "y", "6", 1, fd);
    want_file = apr_pstrcat(fx.p, want_file,
                            "{\"seq\":3" TS_PART ",\"stream\":\"site\","
                            "\"type\":\"y\",\"data\":3,\"meta\":{}}\n",
                            file_line(fx.p, 6, &ev), NULL);
    assert_int_equal(ptm_store_event(fx.st, &ev, &seq), APR_SUCCESS);
    assert_int_equal(seq, 6);
    close(fd);
    check_file(&fx, fx.file, want_file);
    check_current(&fx, apr_pstrcat(fx.p, "{\"current\":{",
                                   entry(fx.p, "x", e4), ",",
                                   entry(fx.p, "y", public_env(fx.p, 6, &ev)),
                                   "}}", NULL));
    assert_int_equal(stats(&fx).events[PTM_STREAM_SITE], 6);
    assert_int_equal(stats(&fx).types[PTM_STREAM_SITE], 2);
    fx_close(&fx);
}

/* ---- runs and the run stream -------------------------------------------- */

static void test_run_lifecycle_and_seq(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    prep_t prep = { 0, APR_SUCCESS, 0 };
    ptm_store_run_t r;
    ptm_store_stats_t s;
    ptm_buf_t b;
    const char *run_file, *want_run = "", *s1, *s2;
    uint64_t gen0, gen1, seq;
    ptm_store_event_t ev;
    int sfd, rfd;

    fx_open(&fx, 1024 * 1024);
    run_file = apr_pstrcat(fx.p, fx.dir, "/run.ndjson", NULL);
    sfd = open_append(fx.file);
    rfd = open_append(run_file);
    s1 = post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, sfd, 1);
    s2 = post_ok(&fx, PTM_STREAM_SITE, "a", "2", 1, sfd, 2);
    gen0 = run_gen(&fx);

    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", "/srv/t/001",
                               &prep), APR_SUCCESS);
    assert_int_equal(prep.calls, 1);
    assert_int_equal(ptm_store_run_peek(&r, fx.st, fx.p), APR_SUCCESS);
    assert_int_equal(r.active, 1);
    assert_string_equal(r.run_id, "001");
    assert_int_equal(r.run_id_len, 3);
    assert_string_equal(r.run_dir, "/srv/t/001");
    gen1 = r.gen;
    assert_true(gen1 != gen0);
    ptm_buf_init(&b, fx.p, 64);
    assert_int_equal(ptm_store_run_get(fx.st, &b), APR_SUCCESS);
    assert_int_equal(b.len, strlen(RUN_OBJ("001")));
    assert_memory_equal(b.data, RUN_OBJ("001"), b.len);
    assert_int_equal(stats(&fx).run_active, 1);

    /* A second start is BUSY; prepare is not called, nothing changes. */
    assert_int_equal(start_run(&fx, RUN_OBJ("002"), "002", "/srv/t/002",
                               &prep), PTM_STORE_BUSY);
    assert_int_equal(prep.calls, 1);
    assert_int_equal(run_gen(&fx), gen1);
    ptm_buf_init(&b, fx.p, 64);
    assert_int_equal(ptm_store_run_get(fx.st, &b), APR_SUCCESS);
    assert_memory_equal(b.data, RUN_OBJ("001"), b.len);

    /* An event built before the start is STALE and changes nothing. */
    mk_event(&ev, fx.p, gen0, PTM_STREAM_SITE, "a", "3", 1, sfd);
    seq = 77;
    assert_int_equal(ptm_store_event(fx.st, &ev, &seq), PTM_STORE_STALE);
    mk_event(&ev, fx.p, gen0, PTM_STREAM_RUN, "a", "3", 1, rfd);
    assert_int_equal(ptm_store_event(fx.st, &ev, &seq), PTM_STORE_STALE);
    s = stats(&fx);
    assert_int_equal(s.seq[0], 2);
    assert_int_equal(s.seq[1], 0);
    check_current(&fx, apr_pstrcat(fx.p, "{\"current\":{",
                                   entry(fx.p, "a", s2), "}}", NULL));

    /* Run events: their own counter, from 1. */
    mk_event(&ev, fx.p, gen1, PTM_STREAM_RUN, "a", "10", 1, rfd);
    assert_int_equal(ptm_store_event(fx.st, &ev, &seq), APR_SUCCESS);
    assert_int_equal(seq, 1);
    want_run = apr_pstrcat(fx.p, want_run, file_line(fx.p, 1, &ev), NULL);
    assert_string_equal(file_line(fx.p, 1, &ev),
                        "{\"seq\":1" TS_PART ",\"stream\":\"run\",\"type\":"
                        "\"a\",\"data\":10,\"meta\":{\"run_id\":\"001\"}}\n");
    mk_event(&ev, fx.p, gen1, PTM_STREAM_RUN, "b", "11", 1, rfd);
    assert_int_equal(ptm_store_event(fx.st, &ev, &seq), APR_SUCCESS);
    assert_int_equal(seq, 2);
    want_run = apr_pstrcat(fx.p, want_run, file_line(fx.p, 2, &ev), NULL);
    s = stats(&fx);
    assert_int_equal(s.seq[PTM_STREAM_SITE], 2);
    assert_int_equal(s.seq[PTM_STREAM_RUN], 2);

    /* Stop: the object as started; site values show through again. */
    assert_string_equal(stop_run(&fx), RUN_OBJ("001"));
    assert_true(run_gen(&fx) != gen1);
    assert_int_equal(stats(&fx).run_active, 0);
    assert_int_equal(stats(&fx).types[PTM_STREAM_RUN], 0);
    check_current(&fx, apr_pstrcat(fx.p, "{\"current\":{",
                                   entry(fx.p, "a", s2), "}}", NULL));
    check_one(&fx, "b", NULL);
    ptm_buf_init(&b, fx.p, 64);
    assert_int_equal(ptm_store_run_stop(fx.st, &b), PTM_STORE_NORUN);
    assert_int_equal(ptm_store_run_get(fx.st, &b), PTM_STORE_NORUN);
    assert_int_equal(b.len, 0);
    assert_int_equal(ptm_store_run_peek(&r, fx.st, fx.p), APR_SUCCESS);
    assert_int_equal(r.active, 0);
    /* An event built during the run is STALE after the stop. */
    mk_event(&ev, fx.p, gen1, PTM_STREAM_RUN, "a", "12", 1, rfd);
    assert_int_equal(ptm_store_event(fx.st, &ev, &seq), PTM_STORE_STALE);

    /* Site numbers continue after the run. */
    post_ok(&fx, PTM_STREAM_SITE, "c", "4", 1, sfd, 3);

    /* A second run does not reset the run counter (§5, F5), and starts
     * with an empty run view. */
    prep.calls = 0;
    assert_int_equal(start_run(&fx, RUN_OBJ("002"), "002", "/srv/t/002",
                               &prep), APR_SUCCESS);
    assert_int_equal(prep.calls, 1);
    assert_int_equal(ptm_store_run_peek(&r, fx.st, fx.p), APR_SUCCESS);
    assert_string_equal(r.run_id, "002");
    assert_string_equal(r.run_dir, "/srv/t/002");
    check_one(&fx, "b", NULL);
    mk_event(&ev, fx.p, r.gen, PTM_STREAM_RUN, "d", "20", 1, rfd);
    assert_int_equal(ptm_store_event(fx.st, &ev, &seq), APR_SUCCESS);
    assert_int_equal(seq, 3);
    want_run = apr_pstrcat(fx.p, want_run, file_line(fx.p, 3, &ev), NULL);
    assert_string_equal(stop_run(&fx), RUN_OBJ("002"));
    post_ok(&fx, PTM_STREAM_SITE, "c", "5", 1, sfd, 4);

    close(sfd);
    close(rfd);
    check_file(&fx, run_file, want_run);
    check_file(&fx, fx.file,
               "{\"seq\":1" TS_PART ",\"stream\":\"site\",\"type\":\"a\","
               "\"data\":1,\"meta\":{}}\n"
               "{\"seq\":2" TS_PART ",\"stream\":\"site\",\"type\":\"a\","
               "\"data\":2,\"meta\":{}}\n"
               "{\"seq\":3" TS_PART ",\"stream\":\"site\",\"type\":\"c\","
               "\"data\":4,\"meta\":{}}\n"
               "{\"seq\":4" TS_PART ",\"stream\":\"site\",\"type\":\"c\","
               "\"data\":5,\"meta\":{}}\n");
    s = stats(&fx);
    assert_int_equal(s.seq[PTM_STREAM_SITE], 4);
    assert_int_equal(s.seq[PTM_STREAM_RUN], 3);
    assert_int_equal(s.events[PTM_STREAM_RUN], 3);
    (void)s1;
    fx_close(&fx);
}

/* §3.7: site order; a run value wins in the site position; run-only types
 * follow in their own order.  §7: stop shows the site values again. */
static void test_current_merge_order(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    prep_t prep = { 0, APR_SUCCESS, 0 };
    const char *sa, *sb, *sc, *rb, *rd, *ra, *re, *rb2;

    fx_open(&fx, 1024 * 1024);
    sa = post_ok(&fx, PTM_STREAM_SITE, "a", "\"site a\"", 1, -1, 1);
    sb = post_ok(&fx, PTM_STREAM_SITE, "b", "\"site b\"", 1, -1, 2);
    sc = post_ok(&fx, PTM_STREAM_SITE, "c", "\"site c\"", 1, -1, 3);
    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", "/srv/t/001",
                               &prep), APR_SUCCESS);
    /* The run view starts empty: the site values show. */
    check_current(&fx, apr_pstrcat(fx.p, "{\"current\":{",
                                   entry(fx.p, "a", sa), ",",
                                   entry(fx.p, "b", sb), ",",
                                   entry(fx.p, "c", sc), "}}", NULL));
    rd = post_ok(&fx, PTM_STREAM_RUN, "d", "\"run d\"", 1, -1, 1);
    rb = post_ok(&fx, PTM_STREAM_RUN, "b", "\"run b\"", 1, -1, 2);
    re = post_ok(&fx, PTM_STREAM_RUN, "e", "\"run e\"", 1, -1, 3);
    ra = post_ok(&fx, PTM_STREAM_RUN, "a", "\"run a\"", 1, -1, 4);
    rb2 = post_ok(&fx, PTM_STREAM_RUN, "b", "\"run b2\"", 1, -1, 5);
    (void)rb;
    check_current(&fx, apr_pstrcat(fx.p, "{\"current\":{",
                                   entry(fx.p, "a", ra), ",",
                                   entry(fx.p, "b", rb2), ",",
                                   entry(fx.p, "c", sc), ",",
                                   entry(fx.p, "d", rd), ",",
                                   entry(fx.p, "e", re), "}}", NULL));
    /* One type: run first, then site. */
    check_one(&fx, "a", ra);
    check_one(&fx, "b", rb2);
    check_one(&fx, "c", sc);
    check_one(&fx, "d", rd);
    check_one(&fx, "zz", NULL);
    assert_int_equal(stats(&fx).types[PTM_STREAM_RUN], 4);
    assert_int_equal(stats(&fx).types[PTM_STREAM_SITE], 3);

    /* Stop: only the site values, unchanged. */
    stop_run(&fx);
    check_current(&fx, apr_pstrcat(fx.p, "{\"current\":{",
                                   entry(fx.p, "a", sa), ",",
                                   entry(fx.p, "b", sb), ",",
                                   entry(fx.p, "c", sc), "}}", NULL));
    check_one(&fx, "a", sa);
    check_one(&fx, "d", NULL);

    /* The next run never sees the last run's values. */
    assert_int_equal(start_run(&fx, RUN_OBJ("002"), "002", "/srv/t/002",
                               &prep), APR_SUCCESS);
    check_one(&fx, "d", NULL);
    check_one(&fx, "e", NULL);
    check_one(&fx, "b", sb);
    rd = post_ok(&fx, PTM_STREAM_RUN, "d", "\"run2 d\"", 1, -1, 6);
    check_current(&fx, apr_pstrcat(fx.p, "{\"current\":{",
                                   entry(fx.p, "a", sa), ",",
                                   entry(fx.p, "b", sb), ",",
                                   entry(fx.p, "c", sc), ",",
                                   entry(fx.p, "d", rd), "}}", NULL));
    stop_run(&fx);

    /* Only run values, no site values. */
    fx_close(&fx);
    fx_open(&fx, 1024 * 1024);
    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", "/srv/t/001",
                               &prep), APR_SUCCESS);
    rb = post_ok(&fx, PTM_STREAM_RUN, "b", "1", 1, -1, 1);
    ra = post_ok(&fx, PTM_STREAM_RUN, "a", "2", 1, -1, 2);
    check_current(&fx, apr_pstrcat(fx.p, "{\"current\":{",
                                   entry(fx.p, "b", rb), ",",
                                   entry(fx.p, "a", ra), "}}", NULL));
    stop_run(&fx);
    check_current(&fx, "{\"current\":{}}");
    fx_close(&fx);
}

/* run_start's prepare error: returned, and no run. */
static void test_run_start_prepare_error(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    prep_t prep = { 0, APR_EACCES, 0 };
    ptm_store_run_t r;
    ptm_buf_t b;
    uint64_t gen;
    const char *sa;

    fx_open(&fx, 1024 * 1024);
    sa = post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, -1, 1);
    gen = run_gen(&fx);
    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", "/srv/t/001",
                               &prep), APR_EACCES);
    assert_int_equal(prep.calls, 1);
    assert_int_equal(ptm_store_run_peek(&r, fx.st, fx.p), APR_SUCCESS);
    assert_int_equal(r.active, 0);
    assert_int_equal(r.gen, gen);
    ptm_buf_init(&b, fx.p, 64);
    assert_int_equal(ptm_store_run_get(fx.st, &b), PTM_STORE_NORUN);
    assert_int_equal(ptm_store_run_stop(fx.st, &b), PTM_STORE_NORUN);
    assert_int_equal(stats(&fx).run_active, 0);
    check_current(&fx, apr_pstrcat(fx.p, "{\"current\":{",
                                   entry(fx.p, "a", sa), "}}", NULL));
    /* Events still go to the site stream with the same generation. */
    post_ok(&fx, PTM_STREAM_SITE, "a", "2", 1, -1, 2);
    /* And a later start works. */
    prep.rv = APR_SUCCESS;
    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", "/srv/t/001",
                               &prep), APR_SUCCESS);
    assert_int_equal(prep.calls, 2);
    assert_string_equal(stop_run(&fx), RUN_OBJ("001"));

    /* A NULL prepare is allowed. */
    assert_int_equal(ptm_store_run_start(fx.st, "{}", 2, "x", 1, "/d", NULL,
                                         NULL), APR_SUCCESS);
    assert_string_equal(stop_run(&fx), "{}");
    fx_close(&fx);
}

/* ---- failures change nothing -------------------------------------------- */

static void check_write_fails(fx_t *fx, int fd, const char *what,
                              const char *cur_before)
{
    ptm_store_event_t ev;
    ptm_store_stats_t s0, s1;
    uint64_t seq = 12345;
    apr_status_t rv;
    size_t len0, len1;

    slurp(fx->file, &len0, fx->p);
    s0 = stats(fx);
    /* An existing type and a new one. */
    mk_event(&ev, fx->p, run_gen(fx), PTM_STREAM_SITE, "a", "\"changed\"", 1,
             fd);
    rv = ptm_store_event(fx->st, &ev, &seq);
    if (rv == APR_SUCCESS) {
        fail_msg("%s: write succeeded", what);
    }
    mk_event(&ev, fx->p, run_gen(fx), PTM_STREAM_SITE, "new", "1", 1, fd);
    rv = ptm_store_event(fx->st, &ev, &seq);
    if (rv == APR_SUCCESS) {
        fail_msg("%s: write of a new type succeeded", what);
    }
    s1 = stats(fx);
    assert_int_equal(s1.seq[0], s0.seq[0]);
    assert_int_equal(s1.events[0], s0.events[0]);
    assert_int_equal(s1.types[0], s0.types[0]);
    check_current(fx, cur_before);
    check_one(fx, "new", NULL);
    slurp(fx->file, &len1, fx->p);
    assert_int_equal(len1, len0);
}

static void test_write_failure_changes_nothing(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *cur;
    int fd;

    fx_open(&fx, 1024 * 1024);
    fd = open_append(fx.file);
    post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, fd, 1);
    post_ok(&fx, PTM_STREAM_SITE, "b", "2", 1, fd, 2);
    close(fd);
    cur = current(&fx);

    /* Read-only descriptor: EBADF. */
    fd = open(fx.file, O_RDONLY);
    assert_true(fd >= 0);
    check_write_fails(&fx, fd, "O_RDONLY", cur);
    close(fd);

    /* A closed descriptor. */
    fd = open_append(fx.file);
    close(fd);
    check_write_fails(&fx, fd, "closed fd", cur);

    /* A full disk. */
    fd = open("/dev/full", O_WRONLY | O_APPEND);
    if (fd >= 0) {
        check_write_fails(&fx, fd, "/dev/full", cur);
        close(fd);
    }

    /* The next good event gets the next number. */
    fd = open_append(fx.file);
    post_ok(&fx, PTM_STREAM_SITE, "a", "3", 1, fd, 3);
    close(fd);
    check_file(&fx, fx.file,
               "{\"seq\":1" TS_PART ",\"stream\":\"site\",\"type\":\"a\","
               "\"data\":1,\"meta\":{}}\n"
               "{\"seq\":2" TS_PART ",\"stream\":\"site\",\"type\":\"b\","
               "\"data\":2,\"meta\":{}}\n"
               "{\"seq\":3" TS_PART ",\"stream\":\"site\",\"type\":\"a\","
               "\"data\":3,\"meta\":{}}\n");
    fx_close(&fx);
}

/* A JSON string of `n` bytes of `c`. */
static const char *pad(apr_pool_t *p, size_t n, char c)
{
    char *s = apr_palloc(p, n + 3);

    s[0] = '"';
    memset(s + 1, c, n);
    s[n + 1] = '"';
    s[n + 2] = '\0';
    return s;
}

static void expect_full(fx_t *fx, int stream, const char *type,
                        const char *data, int fd)
{
    ptm_store_event_t ev;
    ptm_store_stats_t s0, s1;
    const char *cur = current(fx);
    uint64_t seq = 999;
    size_t len0, len1;
    apr_status_t rv;

    slurp(fx->file, &len0, fx->p);
    s0 = stats(fx);
    mk_event(&ev, fx->p, run_gen(fx), stream, type, data, 1, fd);
    rv = ptm_store_event(fx->st, &ev, &seq);
    if (rv != PTM_STORE_FULL) {
        fail_msg("type %s (%zu bytes): status %d, want PTM_STORE_FULL", type,
                 strlen(data), rv);
    }
    s1 = stats(fx);
    assert_int_equal(s1.seq[stream], s0.seq[stream]);
    assert_int_equal(s1.events[stream], s0.events[stream]);
    assert_int_equal(s1.types[stream], s0.types[stream]);
    check_current(fx, cur);
    slurp(fx->file, &len1, fx->p);
    assert_int_equal(len1, len0);       /* no line was written */
}

/* §11.3 F10: an event whose current value does not fit is 507 and changes
 * nothing; one that needs no room still works. */
static void test_full_big_envelopes(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    prep_t prep = { 0, APR_SUCCESS, 0 };
    const char *ea, *big70, *obj;
    ptm_store_run_t r;
    int fd;

    fx_open(&fx, PTM_STORE_MIN_SIZE);
    fd = open_append(fx.file);
    ea = post_ok(&fx, PTM_STREAM_SITE, "A", pad(fx.p, 40000, 'a'), 1, fd, 1);
    /* A second 40 kB value cannot fit next to the first. */
    expect_full(&fx, PTM_STREAM_SITE, "B", pad(fx.p, 40000, 'b'), fd);
    /* Larger than the whole segment. */
    big70 = pad(fx.p, 70000, 'c');
    expect_full(&fx, PTM_STREAM_SITE, "C", big70, fd);
    expect_full(&fx, PTM_STREAM_SITE, "A", big70, fd);
    check_one(&fx, "A", ea);
    check_one(&fx, "B", NULL);
    /* Without make_current no room is needed: stored and numbered. */
    post_ok(&fx, PTM_STREAM_SITE, "B", pad(fx.p, 40000, 'b'), 0, fd, 2);
    post_ok(&fx, PTM_STREAM_SITE, "C", big70, 0, -1, 3);
    /* Replacing A's value with one of the same size fits: the old value
     * goes away. */
    ea = post_ok(&fx, PTM_STREAM_SITE, "A", pad(fx.p, 40000, 'd'), 1, fd, 4);
    check_one(&fx, "A", ea);
    check_current(&fx, apr_pstrcat(fx.p, "{\"current\":{",
                                   entry(fx.p, "A", ea), "}}", NULL));

    /* A run object that does not fit: FULL, prepare not called, no run. */
    obj = apr_pstrcat(fx.p, "{\"meta\":{\"x\":", pad(fx.p, 30000, 'o'), "}}",
                      NULL);
    assert_int_equal(start_run(&fx, obj, "001", "/srv/t/001", &prep),
                     PTM_STORE_FULL);
    assert_int_equal(prep.calls, 0);
    assert_int_equal(ptm_store_run_peek(&r, fx.st, fx.p), APR_SUCCESS);
    assert_int_equal(r.active, 0);
    /* A small one fits. */
    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", "/srv/t/001",
                               &prep), APR_SUCCESS);
    assert_int_equal(prep.calls, 1);
    /* The run view shares the arena: no room for another 40 kB. */
    expect_full(&fx, PTM_STREAM_RUN, "R", pad(fx.p, 40000, 'r'), -1);
    post_ok(&fx, PTM_STREAM_RUN, "R", pad(fx.p, 4000, 'r'), 1, -1, 1);
    assert_string_equal(stop_run(&fx), RUN_OBJ("001"));
    check_current(&fx, apr_pstrcat(fx.p, "{\"current\":{",
                                   entry(fx.p, "A", ea), "}}", NULL));
    close(fd);
    fx_close(&fx);
}

/* The type table fills up before the arena with many small types. */
static void test_full_type_table(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    ptm_store_event_t ev;
    const char *cur, *ea;
    uint64_t seq = 0, n = 0;
    apr_status_t rv = APR_SUCCESS;
    prep_t prep = { 0, APR_SUCCESS, 0 };
    int fd;

    fx_open(&fx, PTM_STORE_MIN_SIZE);
    fd = open_append(fx.file);
    while (n < 100000) {
        mk_event(&ev, fx.p, run_gen(&fx), PTM_STREAM_SITE,
                 apr_psprintf(fx.p, "t%" PRIu64, n), "0", 1, fd);
        rv = ptm_store_event(fx.st, &ev, &seq);
        if (rv != APR_SUCCESS) {
            break;
        }
        n++;
        assert_int_equal(seq, n);
    }
    assert_int_equal(rv, PTM_STORE_FULL);
    assert_true(n >= 16);
    assert_int_equal(stats(&fx).types[PTM_STREAM_SITE], n);
    /* FULL changed nothing, and keeps doing so. */
    expect_full(&fx, PTM_STREAM_SITE, "another", "1", fd);
    cur = current(&fx);
    assert_non_null(strstr(cur, "\"t0\":{\"seq\":1,"));
    assert_null(strstr(cur, "another"));
    /* Existing types can still be updated, new ones without current. */
    ea = post_ok(&fx, PTM_STREAM_SITE, "t0", "\"again\"", 1, fd, n + 1);
    check_one(&fx, "t0", ea);
    post_ok(&fx, PTM_STREAM_SITE, "another", "2", 0, fd, n + 2);
    check_one(&fx, "another", NULL);
    /* The run map has its own table. */
    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", "/srv/t/001",
                               &prep), APR_SUCCESS);
    post_ok(&fx, PTM_STREAM_RUN, "another", "3", 1, -1, 1);
    stop_run(&fx);
    close(fd);
    fx_close(&fx);
}

/* ---- arena compaction ---------------------------------------------------- */

/* A test-side model of one map: insertion-ordered types, latest envelope. */
#define MODEL_MAX 16
typedef struct {
    int n;
    char *type[MODEL_MAX];
    char *env[MODEL_MAX];
} model_t;

static void model_set(model_t *m, const char *type, const char *env)
{
    int i;

    for (i = 0; i < m->n; i++) {
        if (strcmp(m->type[i], type) == 0) {
            free(m->env[i]);
            m->env[i] = strdup(env);
            return;
        }
    }
    assert_true(m->n < MODEL_MAX);
    m->type[m->n] = strdup(type);
    m->env[m->n] = strdup(env);
    m->n++;
}

static int model_find(const model_t *m, const char *type)
{
    int i;

    for (i = 0; i < m->n; i++) {
        if (strcmp(m->type[i], type) == 0) {
            return i;
        }
    }
    return -1;
}

static void model_clear(model_t *m)
{
    int i;

    for (i = 0; i < m->n; i++) {
        free(m->type[i]);
        free(m->env[i]);
    }
    m->n = 0;
}

/* §3.7 computed independently from the two models. */
static const char *model_current(apr_pool_t *p, const model_t *site,
                                 const model_t *run)
{
    const char *s = "{\"current\":{";
    int i, j, first = 1;

    for (i = 0; i < site->n; i++) {
        j = model_find(run, site->type[i]);
        s = apr_pstrcat(p, s, first ? "" : ",",
                        entry(p, site->type[i],
                              j >= 0 ? run->env[j] : site->env[i]), NULL);
        first = 0;
    }
    for (i = 0; i < run->n; i++) {
        if (model_find(site, run->type[i]) < 0) {
            s = apr_pstrcat(p, s, first ? "" : ",",
                            entry(p, run->type[i], run->env[i]), NULL);
            first = 0;
        }
    }
    return apr_pstrcat(p, s, "}}", NULL);
}

static void check_model(fx_t *fx, const model_t *site, const model_t *run,
                        long iter)
{
    const char *want = model_current(fx->p, site, run);
    const char *got = current(fx);
    int i;

    if (strcmp(got, want) != 0) {
        fail_msg("after %ld events:\n  got  %.300s...\n  want %.300s...",
                 iter, got, want);
    }
    for (i = 0; i < run->n; i++) {
        check_one(fx, run->type[i], run->env[i]);
    }
    for (i = 0; i < site->n; i++) {
        if (model_find(run, site->type[i]) < 0) {
            check_one(fx, site->type[i], site->env[i]);
        }
    }
}

static void test_arena_compaction(void **state)
{
    static const char *const types[] = { "t0", "t1", "t2", "t3", "t4",
                                         "t5" };
    static fx_t fx;     /* outlives a failed test for its teardown */
    model_t site = { 0 }, run = { 0 };
    prep_t prep = { 0, APR_SUCCESS, 0 };
    uint64_t seq[2] = { 0, 0 }, gen;
    uint32_t x = 12345;
    apr_pool_t *iter;
    ptm_buf_t b;
    ptm_store_run_t r;
    long i;
    const char *obj = NULL;

    fx_open(&fx, PTM_STORE_MIN_SIZE);
    assert_int_equal(apr_pool_create(&iter, fx.p), APR_SUCCESS);
    gen = run_gen(&fx);
    for (i = 0; i < 40000; i++) {
        int stream = PTM_STREAM_SITE;
        const char *type, *env;
        ptm_store_event_t ev;
        uint64_t got = 0;
        size_t n;

        if (i == 15000) {
            /* A run object lives in the arena through compactions. */
            obj = apr_pstrcat(fx.p, "{\"run_id\":\"r\",\"meta\":",
                              pad(fx.p, 3000, 'm'), "}", NULL);
            assert_int_equal(start_run(&fx, obj, "r-id", "/srv/t/r-dir",
                                       &prep), APR_SUCCESS);
            gen = run_gen(&fx);
        }
        if (i == 32000) {
            assert_string_equal(stop_run(&fx), obj);
            model_clear(&run);
            gen = run_gen(&fx);
        }
        if (i >= 15000 && i < 32000 && (i % 3) != 0) {
            stream = PTM_STREAM_RUN;
        }
        x = x * 1103515245u + 12345u;
        type = types[(x >> 16) % (stream == PTM_STREAM_RUN ? 6 : 4)];
        n = 1 + (x >> 8) % 4000;
        apr_pool_clear(iter);
        mk_event(&ev, iter, gen, stream, type,
                 apr_psprintf(iter, "{\"i\":%ld,\"p\":%s}", i,
                              pad(iter, n, (char)('a' + i % 26))),
                 1, -1);
        if (ptm_store_event(fx.st, &ev, &got) != APR_SUCCESS) {
            fail_msg("event %ld (%zu bytes) failed", i, n);
        }
        seq[stream]++;
        assert_int_equal(got, seq[stream]);
        env = public_env(iter, got, &ev);
        model_set(stream == PTM_STREAM_RUN ? &run : &site, type, env);
        if (i % 997 == 0 || i == 14999 || i == 31999) {
            check_model(&fx, &site, &run, i);
        }
        if (i >= 15000 && i < 32000 && i % 1999 == 0) {
            ptm_buf_init(&b, iter, 64);
            assert_int_equal(ptm_store_run_get(fx.st, &b), APR_SUCCESS);
            assert_int_equal(b.len, strlen(obj));
            assert_memory_equal(b.data, obj, b.len);
            assert_int_equal(ptm_store_run_peek(&r, fx.st, iter),
                             APR_SUCCESS);
            assert_string_equal(r.run_id, "r-id");
            assert_string_equal(r.run_dir, "/srv/t/r-dir");
        }
    }
    check_model(&fx, &site, &run, i);
    assert_int_equal(stats(&fx).seq[PTM_STREAM_SITE], seq[0]);
    assert_int_equal(stats(&fx).seq[PTM_STREAM_RUN], seq[1]);
    assert_true(stats(&fx).bytes_used <= fx.size);
    model_clear(&site);
    model_clear(&run);
    fx_close(&fx);
}

/* ---- many processes ----------------------------------------------------- */

#define NPROC 4
#define NEVENTS 500

/* Event `i` of child `k`: a type shared by all, a few shared by some, or
 * the child's own; sizes from 0 to ~6 kB (past PIPE_BUF). */
static void mp_event(ptm_store_event_t *ev, apr_pool_t *p, uint64_t gen,
                     int k, int i, int fd)
{
    const char *type;
    size_t n = (size_t)((k * 977 + i * 131) % 6000);

    if (i % 5 == 0) {
        type = "shared";
    }
    else if (i % 3 == 0) {
        type = apr_psprintf(p, "t%d", i % 7);
    }
    else {
        type = apr_psprintf(p, "c%d", k);
    }
    mk_event(ev, p, gen, PTM_STREAM_SITE, type,
             apr_psprintf(p, "{\"child\":%d,\"i\":%d,\"pad\":%s}", k, i,
                          pad(p, n, (char)('a' + (i + k) % 26))),
             i % 11 != 7, fd);
}

static void mp_child(fx_t *fx, int k)
{
    apr_pool_t *p, *iter;
    apr_global_mutex_t *mx = fx->mx;
    ptm_store_t *st;
    ptm_store_event_t ev;
    uint64_t seq;
    int i, fd;

    if (apr_pool_create(&p, NULL) != APR_SUCCESS
        || apr_pool_create(&iter, p) != APR_SUCCESS
        || apr_global_mutex_child_init(&mx, fx->lock_path, p)
           != APR_SUCCESS) {
        _exit(20);
    }
    st = ptm_store_attach(fx->base, mx, p);
    fd = open(fx->file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        _exit(21);
    }
    for (i = 0; i < NEVENTS; i++) {
        apr_pool_clear(iter);
        mp_event(&ev, iter, 0, k, i, fd);
        if (ptm_store_event(st, &ev, &seq) != APR_SUCCESS || seq == 0) {
            _exit(22);
        }
    }
    close(fd);
    _exit(0);
}

static void test_multiprocess_appends(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    pid_t pids[NPROC];
    int k, status, line_no = 0;
    size_t len;
    char *buf, *s, *nl;
    unsigned char seen[NPROC][NEVENTS];
    /* Per type: highest seq among make_current events, in the order the
     * type first became current. */
    model_t cur = { 0 };
    ptm_store_stats_t st;
    apr_pool_t *iter;

    fx_open(&fx, 4 * 1024 * 1024);
    memset(seen, 0, sizeof(seen));
    for (k = 0; k < NPROC; k++) {
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            mp_child(&fx, k);
        }
    }
    for (k = 0; k < NPROC; k++) {
        assert_int_equal(waitpid(pids[k], &status, 0), pids[k]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fail_msg("child %d: status 0x%x", k, status);
        }
    }

    assert_int_equal(apr_pool_create(&iter, fx.p), APR_SUCCESS);
    buf = slurp(fx.file, &len, fx.p);
    assert_true(len > 0);
    assert_int_equal(buf[len - 1], '\n');
    for (s = buf; s < buf + len; s = nl + 1) {
        unsigned long long seq;
        int child, i, used;
        ptm_store_event_t ev;
        const char *want;

        nl = memchr(s, '\n', (size_t)(buf + len - s));
        assert_non_null(nl);
        line_no++;
        /* File order is seq order: line n has seq n. */
        if (sscanf(s, "{\"seq\":%llu%n", &seq, &used) != 1) {
            fail_msg("line %d does not start with a seq: %.80s", line_no, s);
        }
        if (seq != (unsigned long long)line_no) {
            fail_msg("line %d has seq %llu", line_no, seq);
        }
        {
            const char *c = strstr(s, "\"data\":{\"child\":");

            if (!c || c > nl
                || sscanf(c, "\"data\":{\"child\":%d,\"i\":%d", &child, &i)
                   != 2 || child < 0 || child >= NPROC || i < 0
                || i >= NEVENTS) {
                fail_msg("line %d is torn: %.120s", line_no, s);
            }
        }
        if (seen[child][i]++) {
            fail_msg("event %d/%d appears twice", child, i);
        }
        /* The whole line, byte for byte. */
        apr_pool_clear(iter);
        mp_event(&ev, iter, 0, child, i, -1);
        want = file_line(iter, seq, &ev);
        if ((size_t)(nl + 1 - s) != strlen(want)
            || memcmp(s, want, strlen(want)) != 0) {
            fail_msg("line %d differs from event %d/%d", line_no, child, i);
        }
        if (ev.make_current) {
            char *type = apr_pstrmemdup(iter, ev.key + 1, ev.key_len - 2);

            model_set(&cur, type, public_env(iter, seq, &ev));
        }
    }
    assert_int_equal(line_no, NPROC * NEVENTS);
    for (k = 0; k < NPROC; k++) {
        for (line_no = 0; line_no < NEVENTS; line_no++) {
            assert_int_equal(seen[k][line_no], 1);
        }
    }
    st = stats(&fx);
    assert_int_equal(st.seq[PTM_STREAM_SITE], NPROC * NEVENTS);
    assert_int_equal(st.events[PTM_STREAM_SITE], NPROC * NEVENTS);
    assert_int_equal(st.types[PTM_STREAM_SITE], cur.n);
    {
        model_t none = { 0 };

        check_model(&fx, &cur, &none, NPROC * NEVENTS);
    }
    model_clear(&cur);
    fx_close(&fx);
}

/* Every test cleans up after itself, even when it fails. */
#define T(f) cmocka_unit_test_teardown(f, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_format_and_attach),
        T(test_site_events_file_bytes),
        T(test_make_current_false_and_ephemeral),
        T(test_run_lifecycle_and_seq),
        T(test_current_merge_order),
        T(test_run_start_prepare_error),
        T(test_write_failure_changes_nothing),
        T(test_full_big_envelopes),
        T(test_full_type_table),
        T(test_arena_compaction),
        T(test_multiprocess_appends),
    };

    return cmocka_run_group_tests_name("ptm_store", tests, group_setup,
                                       group_teardown);
}

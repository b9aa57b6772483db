/* Unit tests for ptm_store (SPEC §1, §3.4-§3.8, §5, §7, §11.3 F4 and
 * F10, §11.4): the shared state on real APR shared memory with a real
 * global mutex, appending to real files, the seq rules, the merged current
 * view, runs, "nothing changes unless everything succeeds" (write errors,
 * 507, stale run), arena compaction, real fork()ed writers, the state file
 * (new, recovered, busy, unrecognised, resized), writers killed with
 * SIGKILL in the middle of an update (repair), reconciling the counters
 * with the NDJSON files, and the run-start seq floor.
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
#include <dirent.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include <apr_general.h>
#include <apr_global_mutex.h>
#include <apr_pools.h>
#include <apr_shm.h>
#include <apr_strings.h>
#include "ptm_buf.h"
#include "ptm_json.h"
#include "ptm_ndjson.h"
#include "ptm_store.h"

#define TS "2026-03-17T20:15:00.000Z"
#define TS_PART ",\"ts\":\"" TS "\""

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
    /* A state file mapped with ptm_store_open_file (fx_map), if any. */
    const char *state_path; /* dir/state */
    void *map;
    apr_size_t map_size;
    int state_fd;
} fx_t;

/* The fixture a failed test left open (cmocka longjmps past fx_close). */
static fx_t *open_fx;

static void fx_open(fx_t *fx, apr_size_t size)
{

    memset(fx, 0, sizeof(*fx));
    fx->state_fd = -1;
    open_fx = fx;
    assert_int_equal(apr_pool_create(&fx->p, gpool), APR_SUCCESS);
    fx->dir = ptm_unit_tmpdir(fx->p, "ptm_store_test");
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
    assert_false(ptm_store_is_formatted(fx->base, size, 0));
    ptm_store_format(fx->base, size, 0);
    assert_true(ptm_store_is_formatted(fx->base, size, 0));
    fx->st = ptm_store_attach(fx->base, fx->mx, fx->p);
    assert_non_null(fx->st);
}

/* Like fx_open, but with no segment yet: fx_map maps the state file. */
static void fx_open_dir(fx_t *fx)
{

    memset(fx, 0, sizeof(*fx));
    fx->state_fd = -1;
    open_fx = fx;
    assert_int_equal(apr_pool_create(&fx->p, gpool), APR_SUCCESS);
    fx->dir = ptm_unit_tmpdir(fx->p, "ptm_store_test");
    fx->file = apr_pstrcat(fx->p, fx->dir, "/site.ndjson", NULL);
    fx->lock_path = apr_pstrcat(fx->p, fx->dir, "/lock", NULL);
    fx->state_path = apr_pstrcat(fx->p, fx->dir, "/state", NULL);
    assert_int_equal(apr_global_mutex_create(&fx->mx, fx->lock_path,
                                             APR_LOCK_DEFAULT, fx->p),
                     APR_SUCCESS);
}

/* Map the state file (as httpd's parent does at start) and attach to it;
 * returns how it was found. */
static ptm_store_open_e fx_map(fx_t *fx, apr_size_t size)
{
    ptm_store_open_e how = (ptm_store_open_e)-1;
    apr_status_t rv;

    assert_null(fx->map);
    rv = ptm_store_open_file(&fx->map, &fx->state_fd, &how, NULL, fx->state_path, NULL,
                             size, 0, fx->p);
    if (rv != APR_SUCCESS) {
        fx->map = NULL;
        fail_msg("ptm_store_open_file: status %d (%s)", rv, strerror(rv));
    }
    assert_non_null(fx->map);
    assert_true(fx->state_fd >= 0);
    fx->map_size = size;
    fx->base = fx->map;
    fx->size = size;
    assert_true(ptm_store_is_formatted(fx->base, size, 0));
    fx->st = ptm_store_attach(fx->base, fx->mx, fx->p);
    return how;
}

/* What a stopped httpd leaves behind: the file, unlocked and unmapped. */
static void fx_unmap(fx_t *fx)
{
    if (fx->map) {
        munmap(fx->map, fx->map_size);
        fx->map = NULL;
        fx->base = NULL;
        fx->st = NULL;
    }
    if (fx->state_fd >= 0) {
        close(fx->state_fd);
        fx->state_fd = -1;
    }
}

static void fx_close(fx_t *fx)
{
    open_fx = NULL;
    fx_unmap(fx);
    if (fx->mx) {
        apr_global_mutex_destroy(fx->mx);
    }
    if (fx->shm) {
        apr_shm_destroy(fx->shm);
    }
    if (fx->dir) {
        rm_rf(fx->dir);
    }
    apr_pool_destroy(fx->p);
}

static int test_teardown(void **state)
{
    alarm(0);
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

    if (!got) {
        got = "";                       /* missing: empty */
    }
    if (len != strlen(want) || memcmp(got, want, len) != 0) {
        fail_msg("file %s:\n  got  %s\n  want %s", path, got, want);
    }
}

static ptm_store_stats_t stats(fx_t *fx)
{
    ptm_store_stats_t s;

    memset(&s, 0, sizeof(s));
    assert_int_equal(ptm_store_stats(fx->st, &s, fx->p), APR_SUCCESS);
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

/* ---- layout ------------------------------------------------------------- */

static void test_format_and_attach(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    ptm_store_stats_t s;
    ptm_store_run_t r;
    ptm_store_t *again;
    ptm_buf_t b;

    fx_open(&fx, 1024 * 1024);
    assert_false(ptm_store_is_formatted(fx.base, fx.size - 8, 0));
    assert_false(ptm_store_is_formatted(fx.base, fx.size + 8, 0));

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
    assert_int_equal(ptm_store_is_formatted(fx.base, fx.size, 0), 1);
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

typedef struct {
    ptm_store_t *st;
    apr_pool_t *p;
    ptm_store_run_t run;
    apr_status_t rv;
    pthread_barrier_t *bar;
} seen_arg_t;

/* Look; with a barrier, look once, wait, look again. */
static void *seen_thread(void *arg)
{
    seen_arg_t *a = arg;

    a->rv = ptm_store_run_seen(&a->run, a->st, 0, a->p);
    if (a->bar) {
        pthread_barrier_wait(a->bar);
        a->rv = ptm_store_run_seen(&a->run, a->st, 0, a->p);
    }
    return NULL;
}

/* ptm_store_run_seen answers from what this thread saw last while the
 * run's generation is unchanged, without the lock; once the run changes
 * it looks again.  An event built from an answer the run has since
 * overtaken is STALE.  Each thread remembers for itself. */
static void test_run_seen(void **state)
{
    static fx_t fx;
    prep_t prep = { 0, APR_SUCCESS, 0 };
    ptm_store_t *other;
    ptm_store_run_t r, before;
    ptm_store_event_t ev;
    seen_arg_t ta;
    pthread_barrier_t bar;
    pthread_t t;
    struct timespec until;
    ptm_buf_t b;
    uint64_t seq;

    fx_open(&fx, 1024 * 1024);
    /* Another process's handle on the same segment. */
    other = ptm_store_attach(fx.base, fx.mx, fx.p);
    assert_int_equal(ptm_store_run_seen(&r, other, 0, fx.p), APR_SUCCESS);
    assert_int_equal(r.active, 0);
    assert_int_equal(ptm_store_run_seen(&before, fx.st, 0, fx.p),
                     APR_SUCCESS);
    assert_int_equal(before.active, 0);

    /* The remembered answer comes without the lock: a thread that has
     * looked once looks again while the lock is held elsewhere. */
    memset(&ta, 0, sizeof(ta));
    ta.st = fx.st;
    ta.p = fx.p;
    ta.bar = &bar;
    assert_int_equal(pthread_barrier_init(&bar, NULL, 2), 0);
    assert_int_equal(pthread_create(&t, NULL, seen_thread, &ta), 0);
    pthread_barrier_wait(&bar);
    assert_int_equal(apr_global_mutex_lock(fx.mx), APR_SUCCESS);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    if (pthread_timedjoin_np(t, NULL, &until) != 0) {
        apr_global_mutex_unlock(fx.mx);
        pthread_join(t, NULL);
        fail_msg("the remembered answer waited for the lock");
    }
    assert_int_equal(apr_global_mutex_unlock(fx.mx), APR_SUCCESS);
    pthread_barrier_destroy(&bar);
    assert_int_equal(ta.rv, APR_SUCCESS);
    assert_int_equal(ta.run.active, 0);

    assert_int_equal(ptm_store_run_start(other, RUN_OBJ("007"),
                                         strlen(RUN_OBJ("007")), "007", 3,
                                         "/srv/t/007", prepare, &prep),
                     APR_SUCCESS);
    /* Built from the answer before the start: refused, nothing changes. */
    mk_event(&ev, fx.p, before.gen, PTM_STREAM_SITE, "a", "1", 1, -1);
    assert_int_equal(ptm_store_event(fx.st, &ev, &seq), PTM_STORE_STALE);
    assert_int_equal(stats(&fx).seq[PTM_STREAM_SITE], 0);
    /* The next look notices the new generation and sees the run. */
    assert_int_equal(ptm_store_run_seen(&r, fx.st, 0, fx.p), APR_SUCCESS);
    assert_int_equal(r.active, 1);
    assert_string_equal(r.run_id, "007");
    assert_int_equal(r.run_id_len, 3);
    assert_string_equal(r.run_dir, "/srv/t/007");
    assert_true(r.gen != before.gen);
    mk_event(&ev, fx.p, r.gen, PTM_STREAM_RUN, "a", "1", 1, -1);
    assert_int_equal(ptm_store_event(fx.st, &ev, &seq), APR_SUCCESS);
    assert_int_equal(seq, 1);
    /* Remembered, strings included, and copied for each caller. */
    assert_int_equal(ptm_store_run_seen(&before, fx.st, 0, fx.p),
                     APR_SUCCESS);
    assert_int_equal(before.active, 1);
    assert_string_equal(before.run_dir, "/srv/t/007");
    assert_ptr_not_equal(before.run_dir, r.run_dir);
    /* Another thread's first look. */
    memset(&ta, 0, sizeof(ta));
    ta.st = fx.st;
    ta.p = fx.p;
    assert_int_equal(pthread_create(&t, NULL, seen_thread, &ta), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(ta.run.active, 1);
    assert_string_equal(ta.run.run_id, "007");

    /* Stopped through the other handle: seen at the next look, and with
     * refresh. */
    ptm_buf_init(&b, fx.p, 64);
    assert_int_equal(ptm_store_run_stop(other, &b), APR_SUCCESS);
    assert_int_equal(ptm_store_run_seen(&r, fx.st, 0, fx.p), APR_SUCCESS);
    assert_int_equal(r.active, 0);
    assert_null(r.run_id);
    assert_int_equal(ptm_store_run_seen(&r, fx.st, 1, fx.p), APR_SUCCESS);
    assert_int_equal(r.active, 0);
    fx_close(&fx);
}

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

/* /current is built in place from the segment: a run value much longer
 * (or shorter) than the site value it replaces, run-only types after,
 * and what the buffer held before kept in front. */
static void test_current_run_value_sizes(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    prep_t prep = { 0, APR_SUCCESS, 0 };
    const char *sb, *ra, *rc, *rd, *want;
    char *big;
    ptm_buf_t b;
    int i;

    fx_open(&fx, 1024 * 1024);
    big = apr_palloc(fx.p, 3003);
    big[0] = '"';
    for (i = 1; i < 3001; i++) {
        big[i] = (char)('a' + i % 26);
    }
    big[3001] = '"';
    big[3002] = '\0';
    post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, -1, 1);
    sb = post_ok(&fx, PTM_STREAM_SITE, "b", "2", 1, -1, 2);
    post_ok(&fx, PTM_STREAM_SITE, "c", big, 1, -1, 3);
    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", "/srv/t/001",
                               &prep), APR_SUCCESS);
    ra = post_ok(&fx, PTM_STREAM_RUN, "a", big, 1, -1, 1);
    rd = post_ok(&fx, PTM_STREAM_RUN, "d", "4", 1, -1, 2);
    rc = post_ok(&fx, PTM_STREAM_RUN, "c", "3", 1, -1, 3);
    want = apr_pstrcat(fx.p, "{\"current\":{", entry(fx.p, "a", ra), ",",
                       entry(fx.p, "b", sb), ",", entry(fx.p, "c", rc), ",",
                       entry(fx.p, "d", rd), "}}", NULL);
    check_current(&fx, want);
    ptm_buf_init(&b, fx.p, 64);
    ptm_buf_puts(&b, "before:");
    assert_int_equal(ptm_store_current(fx.st, &b), APR_SUCCESS);
    ptm_buf_putc(&b, '\0');
    assert_string_equal(b.data, apr_pstrcat(fx.p, "before:", want, NULL));
    stop_run(&fx);
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

/* The front lock the even children take (test_multiprocess_front_lock),
 * or NULL. */
static ptm_lock_t *mp_lock;

static void mp_child(fx_t *fx, int k)
{
    apr_pool_t *p, *iter;
    apr_global_mutex_t *mx = fx->mx;
    ptm_store_t *st;
    ptm_store_event_t ev;
    ptm_store_run_t run;
    uint64_t seq;
    int i, fd;

    if (apr_pool_create(&p, NULL) != APR_SUCCESS
        || apr_pool_create(&iter, p) != APR_SUCCESS
        || apr_global_mutex_child_init(&mx, fx->lock_path, p)
           != APR_SUCCESS) {
        _exit(20);
    }
    st = ptm_store_attach(fx->base, mx, p);
    if (mp_lock && k % 2 == 0) {
        ptm_store_use_lock(st, mp_lock);
    }
    fd = open(fx->file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || ptm_store_run_peek(&run, st, p) != APR_SUCCESS) {
        _exit(21);
    }
    for (i = 0; i < NEVENTS; i++) {
        apr_pool_clear(iter);
        mp_event(&ev, iter, run.gen, k, i, fd);
        if (ptm_store_event(st, &ev, &seq) != APR_SUCCESS || seq == 0) {
            _exit(22);
        }
    }
    close(fd);
    _exit(0);
}

static void multiprocess_appends(ptm_lock_t *(*make_lock)(fx_t *));

static void test_multiprocess_appends(void **state)
{
    multiprocess_appends(NULL);
}

static ptm_lock_t *front_lock(fx_t *fx)
{
    ptm_lock_t *lock;

    assert_int_equal(ptm_lock_create(&lock, fx->p), APR_SUCCESS);
    return lock;
}

/* The same with the front lock (ptm_lock.h) taken by half of the writers
 * only: the others, like children of a module version without it across a
 * graceful restart, are still excluded by the global mutex. */
static void test_multiprocess_front_lock(void **state)
{
    multiprocess_appends(front_lock);
}

static void multiprocess_appends(ptm_lock_t *(*make_lock)(fx_t *))
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
    mp_lock = make_lock ? make_lock(&fx) : NULL;
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
    mp_lock = NULL;
    fx_close(&fx);
}

/* ---- the state file ------------------------------------------------------ */

/* Post one event from a child: the run generation is fetched afresh, and a
 * run that changed in between means build again.  Returns the status. */
static apr_status_t child_post(ptm_store_t *st, apr_pool_t *p, int stream,
                               const char *type, const char *data,
                               int make_current, int fd, uint64_t *seq)
{
    ptm_store_run_t r;
    ptm_store_event_t ev;
    apr_status_t rv;
    int tries;

    for (tries = 0; tries < 100; tries++) {
        if ((rv = ptm_store_run_peek(&r, st, p)) != APR_SUCCESS) {
            return rv;
        }
        mk_event(&ev, p, r.gen, stream, type, data, make_current, fd);
        rv = ptm_store_event(st, &ev, seq);
        if (rv != PTM_STORE_STALE) {
            return rv;
        }
    }
    return rv;
}

/* The child's side of the file tests: a store of its own on the state
 * file, as one httpd run. */
static ptm_store_t *child_map(fx_t *fx, apr_pool_t **pp, apr_size_t size,
                              ptm_store_open_e want_how)
{
    ptm_store_open_e how;
    void *base;
    int fd;

    child_signals();
    CHILD_CHECK(apr_pool_create(pp, NULL) == APR_SUCCESS, 2);
    CHILD_CHECK(ptm_store_open_file(&base, &fd, &how, NULL, fx->state_path, NULL, size, 0,
                                    *pp) == APR_SUCCESS, 3);
    CHILD_CHECK(how == want_how, 4);
    return ptm_store_attach(base, NULL, *pp);
}

/* The events the restart tests record, and what they leave current. */
static void restart_events(ptm_store_t *st, apr_pool_t *p)
{
    uint64_t seq;

    CHILD_CHECK(child_post(st, p, PTM_STREAM_SITE, "a", "1", 1, -1, &seq)
                == APR_SUCCESS && seq == 1, 10);
    CHILD_CHECK(child_post(st, p, PTM_STREAM_SITE, "b", "[2]", 1, -1, &seq)
                == APR_SUCCESS && seq == 2, 11);
    CHILD_CHECK(child_post(st, p, PTM_STREAM_SITE, "a", "3", 1, -1, &seq)
                == APR_SUCCESS && seq == 3, 12);
    CHILD_CHECK(child_post(st, p, PTM_STREAM_SITE, "c", "4", 0, -1, &seq)
                == APR_SUCCESS && seq == 4, 13);
    CHILD_CHECK(ptm_store_run_start(st, RUN_OBJ("001"),
                                    strlen(RUN_OBJ("001")), "001", 3,
                                    "/srv/t/001", NULL, NULL)
                == APR_SUCCESS, 14);
    CHILD_CHECK(child_post(st, p, PTM_STREAM_RUN, "r", "{\"x\":1}", 1, -1,
                           &seq) == APR_SUCCESS && seq == 1, 15);
    CHILD_CHECK(child_post(st, p, PTM_STREAM_RUN, "s", "null", 1, -1, &seq)
                == APR_SUCCESS && seq == 2, 16);
    CHILD_CHECK(child_post(st, p, PTM_STREAM_RUN, "r", "{\"x\":3}", 1, -1,
                           &seq) == APR_SUCCESS && seq == 3, 17);
    CHILD_CHECK(child_post(st, p, PTM_STREAM_RUN, "a", "\"run a\"", 1, -1,
                           &seq) == APR_SUCCESS && seq == 4, 18);
}

/* The current view restart_events leaves, computed here. */
static const char *restart_current(apr_pool_t *p)
{
    ptm_store_event_t ev;
    const char *b2, *r3, *s2, *a4;

    mk_event(&ev, p, 0, PTM_STREAM_SITE, "b", "[2]", 1, -1);
    b2 = public_env(p, 2, &ev);
    mk_event(&ev, p, 0, PTM_STREAM_RUN, "r", "{\"x\":3}", 1, -1);
    r3 = public_env(p, 3, &ev);
    mk_event(&ev, p, 0, PTM_STREAM_RUN, "s", "null", 1, -1);
    s2 = public_env(p, 2, &ev);
    mk_event(&ev, p, 0, PTM_STREAM_RUN, "a", "\"run a\"", 1, -1);
    a4 = public_env(p, 4, &ev);
    return apr_pstrcat(p, "{\"current\":{", entry(p, "a", a4), ",",
                       entry(p, "b", b2), ",", entry(p, "r", r3), ",",
                       entry(p, "s", s2), "}}", NULL);
}

/* Everything restart_events left, seen through `fx`. */
static void check_restart_state(fx_t *fx)
{
    ptm_store_stats_t s;
    ptm_store_run_t r;
    ptm_buf_t b;

    check_current(fx, restart_current(fx->p));
    check_one(fx, "c", NULL);
    s = stats(fx);
    assert_int_equal(s.seq[PTM_STREAM_SITE], 4);
    assert_int_equal(s.seq[PTM_STREAM_RUN], 4);
    assert_int_equal(s.events[PTM_STREAM_SITE], 4);
    assert_int_equal(s.events[PTM_STREAM_RUN], 4);
    assert_int_equal(s.types[PTM_STREAM_SITE], 2);
    assert_int_equal(s.types[PTM_STREAM_RUN], 3);
    assert_int_equal(s.run_active, 1);
    assert_int_equal(s.bytes_total, fx->size);
    ptm_buf_init(&b, fx->p, 64);
    assert_int_equal(ptm_store_run_get(fx->st, &b), APR_SUCCESS);
    assert_int_equal(b.len, strlen(RUN_OBJ("001")));
    assert_memory_equal(b.data, RUN_OBJ("001"), b.len);
    assert_int_equal(ptm_store_run_peek(&r, fx->st, fx->p), APR_SUCCESS);
    assert_int_equal(r.active, 1);
    assert_string_equal(r.run_id, "001");
    assert_string_equal(r.run_dir, "/srv/t/001");
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    if (!d) {
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        n++;
    }
    closedir(d);
    return n;
}

static void wait_ok(pid_t pid, const char *what)
{
    int status;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_msg("%s: child status 0x%x (exit %d)", what, status,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
}

/* A new file; a stop and start (another process maps it again) finds the
 * state as it was; a second httpd on the same file is refused. */
static void test_state_file_new_recovered_busy(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    struct stat sb;
    ptm_store_open_e how;
    void *base = NULL;
    int fd = -1, fds;
    pid_t pid;

    fx_open_dir(&fx);
    /* The first httpd: a new file, written to, then gone. */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        apr_pool_t *p;
        ptm_store_t *st = child_map(&fx, &p, 1024 * 1024,
                                    PTM_STORE_OPEN_NEW);

        restart_events(st, p);
        _exit(0);
    }
    wait_ok(pid, "first httpd");
    assert_int_equal(stat(fx.state_path, &sb), 0);
    assert_int_equal(sb.st_size, 1024 * 1024);
    assert_int_equal(sb.st_mode & 07777, 0600);

    /* The next one finds it all. */
    assert_int_equal(fx_map(&fx, 1024 * 1024), PTM_STORE_OPEN_RECOVERED);
    check_restart_state(&fx);
    assert_int_equal(ptm_store_repairs(fx.st), 0);
    /* Numbers go on from where they were. */
    post_ok(&fx, PTM_STREAM_SITE, "d", "5", 1, -1, 5);
    post_ok(&fx, PTM_STREAM_RUN, "t", "5", 1, -1, 5);

    /* A second opener, in this process or another, while the file is
     * held: EBUSY, and no descriptor left open. */
    fds = count_fds();
    assert_int_equal(ptm_store_open_file(&base, &fd, &how, NULL, fx.state_path, NULL,
                                         1024 * 1024, 0, fx.p),
                     APR_FROM_OS_ERROR(EBUSY));
    assert_int_equal(count_fds(), fds);
    assert_int_equal(ptm_store_open_file(&base, &fd, &how, NULL, fx.state_path, NULL,
                                         2 * 1024 * 1024, 0, fx.p),
                     APR_FROM_OS_ERROR(EBUSY));
    /* (and it did not resize the file under us) */
    assert_int_equal(stat(fx.state_path, &sb), 0);
    assert_int_equal(sb.st_size, 1024 * 1024);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        apr_pool_t *p;

        child_signals();
        CHILD_CHECK(apr_pool_create(&p, NULL) == APR_SUCCESS, 2);
        CHILD_CHECK(ptm_store_open_file(&base, &fd, &how, NULL, fx.state_path, NULL,
                                        1024 * 1024, 0, p)
                    == APR_FROM_OS_ERROR(EBUSY), 3);
        _exit(0);
    }
    wait_ok(pid, "second httpd");
    /* The refused openers changed nothing. */
    post_ok(&fx, PTM_STREAM_SITE, "d", "6", 1, -1, 6);

    /* Once the holder is gone the file can be opened again. */
    fx_unmap(&fx);
    assert_int_equal(fx_map(&fx, 1024 * 1024), PTM_STORE_OPEN_RECOVERED);
    assert_int_equal(stats(&fx).seq[PTM_STREAM_SITE], 6);
    assert_int_equal(stats(&fx).seq[PTM_STREAM_RUN], 5);

    /* The path cannot be created at all: open's error. */
    assert_int_equal(ptm_store_open_file(&base, &fd, &how, NULL,
                                         apr_pstrcat(fx.p, fx.dir,
                                                     "/no/such/state", NULL), NULL,
                                         1024 * 1024, 0, fx.p),
                     APR_ENOENT);
    fx_close(&fx);
}

/* A file that holds no state of ours is replaced with a fresh one. */
static void test_state_file_unrecognised(void **state)
{
    static const struct {
        const char *what;
        long len;               /* bytes in the file; -1: none */
        int fill;               /* byte value, or -1 for random bytes */
        ptm_store_open_e want;
    } cases[] = {
        { "no file", -1, 0, PTM_STORE_OPEN_NEW },
        { "empty file", 0, 0, PTM_STORE_OPEN_NEW },
        { "random, right size", 1024 * 1024, -1, PTM_STORE_OPEN_UNRECOGNISED },
        { "zeros, right size", 1024 * 1024, 0, PTM_STORE_OPEN_UNRECOGNISED },
        { "0xff, right size", 1024 * 1024, 0xff,
          PTM_STORE_OPEN_UNRECOGNISED },
        { "a few bytes", 10, -1, PTM_STORE_OPEN_UNRECOGNISED },
        { "random, bigger", 3 * 1024 * 1024 + 5, -1,
          PTM_STORE_OPEN_UNRECOGNISED },
        { "random, smaller", 100000, -1, PTM_STORE_OPEN_UNRECOGNISED },
        { "text", 100, 'x', PTM_STORE_OPEN_UNRECOGNISED },
    };
    static fx_t fx;     /* outlives a failed test for its teardown */
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct stat sb;
        ptm_store_stats_t s;

        fx_open_dir(&fx);
        if (cases[i].len >= 0) {
            char *buf = malloc((size_t)cases[i].len + 1);
            int fd = open(fx.state_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            long j;
            uint32_t x = 777u + (uint32_t)i;

            assert_non_null(buf);
            assert_true(fd >= 0);
            for (j = 0; j < cases[i].len; j++) {
                x = x * 1103515245u + 12345u;
                buf[j] = (char)(cases[i].fill >= 0 ? cases[i].fill
                                                   : (int)(x >> 16));
            }
            assert_int_equal(write(fd, buf, (size_t)cases[i].len),
                             cases[i].len);
            close(fd);
            free(buf);
        }
        if (fx_map(&fx, 1024 * 1024) != cases[i].want) {
            fail_msg("%s: not opened as %d", cases[i].what, cases[i].want);
        }
        /* A fresh state of the size asked for. */
        assert_int_equal(stat(fx.state_path, &sb), 0);
        assert_int_equal(sb.st_size, 1024 * 1024);
        s = stats(&fx);
        assert_int_equal(s.seq[0], 0);
        assert_int_equal(s.seq[1], 0);
        assert_int_equal(s.types[0], 0);
        assert_int_equal(s.run_active, 0);
        assert_int_equal(ptm_store_repairs(fx.st), 0);
        check_current(&fx, "{\"current\":{}}");
        post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, -1, 1);
        /* ... that lasts. */
        fx_unmap(&fx);
        assert_int_equal(fx_map(&fx, 1024 * 1024), PTM_STORE_OPEN_RECOVERED);
        assert_int_equal(stats(&fx).seq[PTM_STREAM_SITE], 1);
        fx_close(&fx);
    }
}

/* Another PanoptesTelemetryStateSize: everything is carried over. */
static void test_state_file_resized(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    static const apr_size_t sizes[] = {
        1024 * 1024, 4 * 1024 * 1024, 3 * 1024 * 1024 + 4096,
        PTM_STORE_MIN_SIZE, 1024 * 1024
    };
    struct stat sb;
    const char *cur;
    size_t i;
    pid_t pid;

    fx_open_dir(&fx);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        apr_pool_t *p;
        ptm_store_t *st = child_map(&fx, &p, sizes[0], PTM_STORE_OPEN_NEW);

        restart_events(st, p);
        _exit(0);
    }
    wait_ok(pid, "first httpd");
    cur = restart_current(fx.p);
    /* Bigger, smaller, the smallest, back: the same state every time. */
    for (i = 1; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        assert_int_equal(fx_map(&fx, sizes[i]), PTM_STORE_OPEN_RESIZED);
        assert_int_equal(stat(fx.state_path, &sb), 0);
        assert_int_equal((apr_size_t)sb.st_size, sizes[i]);
        check_current(&fx, cur);
        check_restart_state(&fx);
        assert_int_equal(ptm_store_repairs(fx.st), 0);
        fx_unmap(&fx);
        /* The same size again is no resize. */
        assert_int_equal(fx_map(&fx, sizes[i]), PTM_STORE_OPEN_RECOVERED);
        check_restart_state(&fx);
        fx_unmap(&fx);
    }
    /* It still works after all that: events, then stop. */
    assert_int_equal(fx_map(&fx, 2 * 1024 * 1024), PTM_STORE_OPEN_RESIZED);
    post_ok(&fx, PTM_STREAM_SITE, "b", "7", 1, -1, 5);
    post_ok(&fx, PTM_STREAM_RUN, "s", "7", 1, -1, 5);
    assert_string_equal(stop_run(&fx), RUN_OBJ("001"));
    fx_close(&fx);
}

/* Smaller, and the values do not all fit: those that fit are kept, in
 * their order; the counters and the run always are. */
static void test_state_file_resized_smaller_lossy(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *env[6], *cur;
    ptm_store_stats_t s;
    ptm_buf_t b;
    int i, kept = 0;
    apr_status_t rv;
    prep_t prep = { 0, APR_SUCCESS, 0 };

    fx_open_dir(&fx);
    assert_int_equal(fx_map(&fx, 1024 * 1024), PTM_STORE_OPEN_NEW);
    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", "/srv/t/001",
                               &prep), APR_SUCCESS);
    for (i = 0; i < 6; i++) {
        env[i] = post_ok(&fx, PTM_STREAM_SITE, apr_psprintf(fx.p, "t%d", i),
                         pad(fx.p, 20000, (char)('a' + i)), 1, -1,
                         (uint64_t)i + 1);
    }
    post_ok(&fx, PTM_STREAM_RUN, "r", "1", 1, -1, 1);
    fx_unmap(&fx);
    assert_int_equal(fx_map(&fx, PTM_STORE_MIN_SIZE), PTM_STORE_OPEN_RESIZED);
    s = stats(&fx);
    assert_int_equal(s.seq[PTM_STREAM_SITE], 6);
    assert_int_equal(s.seq[PTM_STREAM_RUN], 1);
    assert_int_equal(s.run_active, 1);
    assert_true(s.bytes_used <= s.bytes_total);
    ptm_buf_init(&b, fx.p, 64);
    assert_int_equal(ptm_store_run_get(fx.st, &b), APR_SUCCESS);
    assert_int_equal(b.len, strlen(RUN_OBJ("001")));
    /* Every value still there is whole, and they keep their order. */
    cur = "{\"current\":{";
    for (i = 0; i < 6; i++) {
        ptm_buf_t one;
        const char *key = apr_psprintf(fx.p, "\"t%d\"", i);

        ptm_buf_init(&one, fx.p, 64);
        rv = ptm_store_current_one(fx.st, key, strlen(key), &one);
        if (rv == APR_SUCCESS) {
            assert_int_equal(one.len, strlen(env[i]));
            assert_memory_equal(one.data, env[i], one.len);
            cur = apr_pstrcat(fx.p, cur, kept ? "," : "",
                              entry(fx.p, apr_psprintf(fx.p, "t%d", i),
                                    env[i]), NULL);
            kept++;
        }
        else {
            assert_int_equal(rv, PTM_STORE_NOTFOUND);
        }
    }
    /* 64 KiB holds two 20 kB values, not six. */
    assert_true(kept >= 1 && kept < 6);
    assert_int_equal(s.types[PTM_STREAM_SITE], (uint32_t)kept);
    {
        ptm_store_event_t ev;

        mk_event(&ev, fx.p, 0, PTM_STREAM_RUN, "r", "1", 1, -1);
        cur = apr_pstrcat(fx.p, cur, ",", entry(fx.p, "r",
                                                 public_env(fx.p, 1, &ev)),
                          "}}", NULL);
    }
    check_current(&fx, cur);
    post_ok(&fx, PTM_STREAM_SITE, "t0", "0", 1, -1, 7);
    fx_close(&fx);
}

/* ---- repair after a writer was killed ------------------------------------ */

/* A prepare that tells the parent it runs (under the lock), then waits
 * to be killed. */
static apr_status_t blocking_prepare(void *ctx, uint64_t *seq_floor)
{
    if (write(*(int *)ctx, "p", 1) != 1) {
        _exit(6);
    }
    for (;;) {
        pause();
    }
    return APR_SUCCESS;
}

/* A child that will block in the append of an event whose line is bigger
 * than a pipe holds: inside the update, holding the lock.  Reading one
 * byte from the pipe proves it got there. */
static pid_t start_blocked_writer(fx_t *fx, int pfd[2], int stream,
                                  const char *type, int open_file)
{
    char c;
    pid_t pid;

    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        apr_pool_t *p;
        apr_global_mutex_t *mx = fx->mx;
        ptm_store_t *st;
        uint64_t seq;

        child_signals();
        close(pfd[0]);
        if (open_file) {
            /* A whole httpd of its own on the state file. */
            st = child_map(fx, &p, fx->size, PTM_STORE_OPEN_RECOVERED);
        }
        else {
            CHILD_CHECK(apr_pool_create(&p, NULL) == APR_SUCCESS, 2);
            CHILD_CHECK(apr_global_mutex_child_init(&mx, fx->lock_path, p)
                        == APR_SUCCESS, 3);
            st = ptm_store_attach(fx->base, mx, p);
        }
        /* Four times what a pipe holds; room for it in the state. */
        child_post(st, p, stream, type, pad(p, 256 * 1024, 'z'), 1, pfd[1],
                   &seq);
        _exit(5);   /* never: the write blocks until we are killed */
    }
    close(pfd[1]);
    assert_int_equal(read(pfd[0], &c, 1), 1);
    assert_int_equal(c, '{');
    return pid;
}

static void kill_child(pid_t pid)
{
    int status;

    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        fail_msg("child %d was not killed: status 0x%x", (int)pid, status);
    }
}

/* A child dies holding the lock in the middle of an event: the next lock
 * holder rebuilds the state; the number the dead child may have written
 * is never given out again. */
static void test_repair_after_killed_writer(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    prep_t prep = { 0, APR_SUCCESS, 0 };
    const char *ea, *eb, *er, *cur;
    ptm_store_stats_t s;
    ptm_store_run_t r;
    ptm_buf_t b;
    uint64_t gen;
    int pfd[2], sfd;
    pid_t pid;

    /* The mutex httpd gets by default must survive a dead holder. */
    fx_open(&fx, 1024 * 1024);
    print_message("global mutex: %s\n", apr_global_mutex_name(fx.mx));
    alarm(60);          /* a lock that never comes back must not hang */
    sfd = open_append(fx.file);
    ea = post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, sfd, 1);
    eb = post_ok(&fx, PTM_STREAM_SITE, "b", "2", 1, sfd, 2);
    cur = current(&fx);

    pid = start_blocked_writer(&fx, pfd, PTM_STREAM_SITE, "a", 0);
    kill_child(pid);
    close(pfd[0]);
    assert_int_equal(ptm_store_repairs(fx.st), 0);
    /* The next lock repairs: seq 3 may be in a file, so it is skipped;
     * the value it would have set never was. */
    s = stats(&fx);
    assert_int_equal(ptm_store_repairs(fx.st), 1);
    assert_int_equal(s.seq[PTM_STREAM_SITE], 3);
    assert_int_equal(s.seq[PTM_STREAM_RUN], 0);
    assert_int_equal(s.types[PTM_STREAM_SITE], 2);
    check_current(&fx, cur);
    check_one(&fx, "a", ea);
    check_one(&fx, "b", eb);
    post_ok(&fx, PTM_STREAM_SITE, "c", "4", 1, sfd, 4);
    assert_int_equal(ptm_store_repairs(fx.st), 1);

    /* The same during a run, on the run stream: the run survives, with a
     * new generation (events built before must be built again). */
    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", "/srv/t/001",
                               &prep), APR_SUCCESS);
    er = post_ok(&fx, PTM_STREAM_RUN, "a", "10", 1, -1, 1);
    gen = run_gen(&fx);
    cur = current(&fx);
    pid = start_blocked_writer(&fx, pfd, PTM_STREAM_RUN, "x", 0);
    kill_child(pid);
    close(pfd[0]);
    assert_int_equal(ptm_store_run_peek(&r, fx.st, fx.p), APR_SUCCESS);
    assert_int_equal(ptm_store_repairs(fx.st), 2);
    assert_int_equal(r.active, 1);
    assert_string_equal(r.run_id, "001");
    assert_string_equal(r.run_dir, "/srv/t/001");
    assert_true(r.gen != gen);
    ptm_buf_init(&b, fx.p, 64);
    assert_int_equal(ptm_store_run_get(fx.st, &b), APR_SUCCESS);
    assert_int_equal(b.len, strlen(RUN_OBJ("001")));
    assert_memory_equal(b.data, RUN_OBJ("001"), b.len);
    check_current(&fx, cur);
    check_one(&fx, "a", er);
    check_one(&fx, "x", NULL);
    s = stats(&fx);
    assert_int_equal(s.seq[PTM_STREAM_SITE], 4);
    assert_int_equal(s.seq[PTM_STREAM_RUN], 2);
    post_ok(&fx, PTM_STREAM_RUN, "x", "11", 1, -1, 3);
    assert_string_equal(stop_run(&fx), RUN_OBJ("001"));
    post_ok(&fx, PTM_STREAM_SITE, "a", "5", 1, sfd, 5);

    /* A holder that dies outside any update (here in prepare, under the
     * lock) leaves nothing to repair. */
    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        apr_pool_t *p;
        apr_global_mutex_t *mx = fx.mx;
        ptm_store_t *st;

        child_signals();
        close(pfd[0]);
        CHILD_CHECK(apr_pool_create(&p, NULL) == APR_SUCCESS, 2);
        CHILD_CHECK(apr_global_mutex_child_init(&mx, fx.lock_path, p)
                    == APR_SUCCESS, 3);
        st = ptm_store_attach(fx.base, mx, p);
        ptm_store_run_start(st, "{}", 2, "x", 1, "/x", blocking_prepare,
                            &pfd[1]);
        _exit(5);
    }
    close(pfd[1]);
    {
        char c;

        assert_int_equal(read(pfd[0], &c, 1), 1);
    }
    close(pfd[0]);
    kill_child(pid);
    s = stats(&fx);
    assert_int_equal(ptm_store_repairs(fx.st), 2);
    assert_int_equal(s.run_active, 0);
    assert_int_equal(s.seq[PTM_STREAM_SITE], 5);
    assert_int_equal(s.seq[PTM_STREAM_RUN], 3);
    post_ok(&fx, PTM_STREAM_SITE, "a", "6", 1, sfd, 6);
    close(sfd);
    /* The file has what was acknowledged, nothing else. */
    {
        size_t len;
        const char *f = slurp(fx.file, &len, fx.p);
        int n = 0;
        const char *c;

        for (c = f; *c; c++) {
            n += *c == '\n';
        }
        assert_int_equal(n, 5);
        assert_int_equal(f[len - 1], '\n');
        assert_null(strstr(f, "zzz"));
    }
    alarm(0);
    fx_close(&fx);
}

/* The same, when the whole httpd died: the next start repairs. */
static void test_repair_on_open(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *cur;
    ptm_store_stats_t s;
    ptm_buf_t b;
    int pfd[2];
    pid_t pid;

    fx_open_dir(&fx);
    alarm(60);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        apr_pool_t *p;
        ptm_store_t *st = child_map(&fx, &p, 1024 * 1024,
                                    PTM_STORE_OPEN_NEW);

        restart_events(st, p);
        _exit(0);
    }
    wait_ok(pid, "first httpd");
    cur = restart_current(fx.p);

    /* The second httpd dies in the middle of a run event. */
    fx.size = 1024 * 1024;
    pid = start_blocked_writer(&fx, pfd, PTM_STREAM_RUN, "r", 1);
    kill_child(pid);
    close(pfd[0]);
    assert_int_equal(fx_map(&fx, 1024 * 1024), PTM_STORE_OPEN_RECOVERED);
    assert_int_equal(ptm_store_repairs(fx.st), 1);
    check_current(&fx, cur);
    s = stats(&fx);
    assert_int_equal(s.seq[PTM_STREAM_SITE], 4);
    assert_int_equal(s.seq[PTM_STREAM_RUN], 5);      /* 5 is skipped */
    assert_int_equal(s.run_active, 1);
    ptm_buf_init(&b, fx.p, 64);
    assert_int_equal(ptm_store_run_get(fx.st, &b), APR_SUCCESS);
    assert_int_equal(b.len, strlen(RUN_OBJ("001")));
    post_ok(&fx, PTM_STREAM_RUN, "r", "6", 1, -1, 6);
    post_ok(&fx, PTM_STREAM_SITE, "a", "5", 1, -1, 5);
    fx_unmap(&fx);

    /* The third dies on the site stream, and the fourth starts with
     * another size: the pending number is skipped all the same. */
    pid = start_blocked_writer(&fx, pfd, PTM_STREAM_SITE, "zz", 1);
    kill_child(pid);
    close(pfd[0]);
    assert_int_equal(fx_map(&fx, 2 * 1024 * 1024), PTM_STORE_OPEN_RESIZED);
    s = stats(&fx);
    assert_int_equal(s.seq[PTM_STREAM_SITE], 6);     /* 6 is skipped */
    assert_int_equal(s.seq[PTM_STREAM_RUN], 6);
    assert_int_equal(s.run_active, 1);
    check_one(&fx, "zz", NULL);
    post_ok(&fx, PTM_STREAM_SITE, "zz", "7", 1, -1, 7);
    alarm(0);
    fx_close(&fx);
}

/* ---- many writers killed at random --------------------------------------- */

/* Event `k` of the kill test, rebuilt from `k` alone so that the parent
 * can check every line and every current value byte for byte:
 *   k % 8 in 0..3  site, small or (one in five) several pages, to the file
 *          4..5    run, the same sizes, to the run file
 *          6       site, 100-250 kB, current only (fd -1)
 *          7       run, the same
 * one in 13 is not made current. */
static void kw_event(ptm_store_event_t *ev, apr_pool_t *p, uint64_t gen,
                     uint64_t k, int sfd, int rfd)
{
    unsigned kind = (unsigned)(k % 8);
    unsigned which = (unsigned)((k / 8) % 4);
    int stream = (kind >= 4 && kind != 6) ? PTM_STREAM_RUN : PTM_STREAM_SITE;
    size_t n;
    const char *type;
    int fd;

    if (kind >= 6) {
        n = 100000 + (size_t)((k * 7919) % 150000);
        type = apr_psprintf(p, "%s%u", kind == 6 ? "B" : "RB", which % 3);
        fd = -1;
    }
    else {
        n = k % 5 == 0 ? 4000 + (size_t)((k * 977) % 9000)
                       : (size_t)((k * 131) % 300);
        type = apr_psprintf(p, "%s%u", kind < 4 ? "s" : "r",
                            kind < 4 ? which : which % 3);
        fd = kind < 4 ? sfd : rfd;
    }
    mk_event(ev, p, gen, stream, type,
             apr_psprintf(p, "{\"k\":%" PRIu64 ",\"n\":%" APR_SIZE_T_FMT
                          ",\"p\":%s}", k, n,
                          pad(p, n, (char)('a' + k % 26))),
             k % 13 != 0, fd);
}

#define KW_RUN_DIR "/srv/t/001"

/* The front lock every writer of the kill test takes
 * (test_kill_writers_front_lock), or NULL. */
static ptm_lock_t *kw_lock;

/* A writer: events from k0 on, until killed; once in 64 events it stops
 * the run and starts it again. */
static void kw_child(fx_t *fx, uint64_t k0, int sfd, int rfd)
{
    apr_pool_t *p, *iter;
    apr_global_mutex_t *mx = fx->mx;
    ptm_store_t *st;
    ptm_store_event_t ev;
    ptm_store_run_t r;
    ptm_buf_t b;
    uint64_t k, seq;
    apr_status_t rv;
    int tries;

    child_signals();
    CHILD_CHECK(apr_pool_create(&p, NULL) == APR_SUCCESS, 20);
    CHILD_CHECK(apr_pool_create(&iter, p) == APR_SUCCESS, 21);
    CHILD_CHECK(apr_global_mutex_child_init(&mx, fx->lock_path, p)
                == APR_SUCCESS, 22);
    st = ptm_store_attach(fx->base, mx, p);
    ptm_store_use_lock(st, kw_lock);
    for (k = k0; k < k0 + 1000000; k++) {
        apr_pool_clear(iter);
        if (k % 64 == 63) {
            ptm_buf_init(&b, iter, 64);
            rv = ptm_store_run_stop(st, &b);
            CHILD_CHECK(rv == APR_SUCCESS || rv == PTM_STORE_NORUN, 23);
        }
        for (tries = 0; tries < 100; tries++) {
            CHILD_CHECK(ptm_store_run_peek(&r, st, iter) == APR_SUCCESS, 24);
            if (!r.active) {
                rv = ptm_store_run_start(st, RUN_OBJ("001"),
                                         strlen(RUN_OBJ("001")), "001", 3,
                                         KW_RUN_DIR, NULL, NULL);
                CHILD_CHECK(rv == APR_SUCCESS || rv == PTM_STORE_BUSY, 25);
                continue;
            }
            kw_event(&ev, iter, r.gen, k, sfd, rfd);
            rv = ptm_store_event(st, &ev, &seq);
            if (rv != PTM_STORE_STALE) {
                break;
            }
        }
        CHILD_CHECK(rv == APR_SUCCESS && seq > 0, 26);
    }
    _exit(0);
}

/* The stream of a kill-test type. */
static int kw_stream(const char *type)
{
    return type[0] == 'r' || type[0] == 'R' ? PTM_STREAM_RUN
                                            : PTM_STREAM_SITE;
}

/* The k in `{..."data":{"k":K,...`, or fail. */
static uint64_t kw_k_of(const char *s, size_t len, const char *what)
{
    static const char key[] = "\"data\":{\"k\":";
    const char *c = NULL, *end = s + len;
    size_t i;

    for (i = 0; i + sizeof(key) - 1 <= len; i++) {
        if (memcmp(s + i, key, sizeof(key) - 1) == 0) {
            c = s + i + sizeof(key) - 1;
            break;
        }
    }
    if (!c || c >= end || *c < '0' || *c > '9') {
        fail_msg("%s: no data.k in %.100s", what, s);
    }
    return strtoull(c, NULL, 10);
}

/* After a kill: the state must be whole.  /current is valid JSON; every
 * value is byte for byte the envelope of the event its k names, with a
 * seq its stream has given out; run values only while a run is active. */
static void kw_check_state(fx_t *fx, apr_pool_t *p, const char *when)
{
    ptm_store_stats_t s = stats(fx);
    ptm_json_error_t err;
    ptm_buf_t b;
    json_t *v, *cur, *env;
    const char *type;
    size_t n = 0;

    ptm_buf_init(&b, p, 1024 * 1024);
    assert_int_equal(ptm_store_current(fx->st, &b), APR_SUCCESS);
    v = ptm_json_parse(b.data, b.len, &err);
    if (!v) {
        size_t at = err.pos > 150 ? err.pos - 150 : 0;

        fail_msg("%s: /current is not JSON: %s at %zu (repairs %" PRIu64
                 "): ...%.300s", when, err.msg, err.pos,
                 ptm_store_repairs(fx->st), b.data + at);
    }
    cur = json_object_get(v, "current");
    if (!json_is_object(cur) || json_object_size(v) != 1) {
        json_decref(v);
        fail_msg("%s: /current is not {\"current\":{...}}", when);
    }
    json_object_foreach(cur, type, env) {
        json_t *seq = json_object_get(env, "seq");
        int stream = kw_stream(type);
        uint64_t k, sq;
        ptm_store_event_t ev;
        const char *want, *key = apr_psprintf(p, "\"%s\"", type);
        ptm_buf_t one;

        if (!json_is_integer(seq) || json_integer_value(seq) < 1) {
            json_decref(v);
            fail_msg("%s: %s has no seq", when, type);
        }
        sq = (uint64_t)json_integer_value(seq);
        if (sq > s.seq[stream]) {
            json_decref(v);
            fail_msg("%s: %s has seq %" PRIu64 " > the counter %" PRIu64,
                     when, type, sq, s.seq[stream]);
        }
        ptm_buf_init(&one, p, 64);
        assert_int_equal(ptm_store_current_one(fx->st, key, strlen(key),
                                               &one), APR_SUCCESS);
        k = kw_k_of(one.data, one.len, when);
        kw_event(&ev, p, 0, k, -1, -1);
        want = public_env(p, sq, &ev);
        if (ev.key_len != strlen(key) || memcmp(ev.key, key, ev.key_len)
            || one.len != strlen(want) || memcmp(one.data, want, one.len)) {
            json_decref(v);
            fail_msg("%s: %s (seq %" PRIu64 ", k %" PRIu64 ") is not the "
                     "value that event set: %.120s", when, type, sq, k,
                     one.data);
        }
        if (stream == PTM_STREAM_RUN && !s.run_active) {
            json_decref(v);
            fail_msg("%s: run value %s with no run active", when, type);
        }
        n++;
    }
    json_decref(v);
    assert_int_equal(n, s.types[0] + s.types[1]);
    if (s.run_active) {
        ptm_store_run_t r;

        ptm_buf_init(&b, p, 64);
        assert_int_equal(ptm_store_run_get(fx->st, &b), APR_SUCCESS);
        assert_int_equal(b.len, strlen(RUN_OBJ("001")));
        assert_memory_equal(b.data, RUN_OBJ("001"), b.len);
        assert_int_equal(ptm_store_run_peek(&r, fx->st, p), APR_SUCCESS);
        assert_string_equal(r.run_id, "001");
        assert_string_equal(r.run_dir, KW_RUN_DIR);
    }
    else {
        assert_int_equal(s.types[PTM_STREAM_RUN], 0);
    }
}

/* Every line of `path` whole and exactly the line of the event its k
 * names, seqs strictly increasing (gaps allowed: a writer killed after its
 * append).  Returns the last seq. */
static uint64_t kw_check_file(fx_t *fx, const char *path, int stream,
                              size_t *lines)
{
    apr_pool_t *iter;
    size_t len;
    char *buf = slurp(path, &len, fx->p), *s, *nl;
    uint64_t last = 0;

    *lines = 0;
    if (len == 0) {
        return 0;
    }
    assert_int_equal(apr_pool_create(&iter, fx->p), APR_SUCCESS);
    if (buf[len - 1] != '\n') {
        fail_msg("%s ends in a partial line", path);
    }
    for (s = buf; s < buf + len; s = nl + 1) {
        unsigned long long seq;
        ptm_store_event_t ev;
        const char *want;
        uint64_t k;
        int used;

        nl = memchr(s, '\n', (size_t)(buf + len - s));
        (*lines)++;
        apr_pool_clear(iter);
        if (sscanf(s, "{\"seq\":%llu%n", &seq, &used) != 1) {
            fail_msg("%s line %zu has no seq: %.80s", path, *lines, s);
        }
        if (seq <= last) {
            fail_msg("%s line %zu: seq %llu after %" PRIu64 " (a duplicate "
                     "or out of order)", path, *lines, seq, last);
        }
        last = seq;
        k = kw_k_of(s, (size_t)(nl - s), path);
        kw_event(&ev, iter, 0, k, 0, 0);
        want = file_line(iter, seq, &ev);
        if (ev.stream != stream || (size_t)(nl + 1 - s) != strlen(want)
            || memcmp(s, want, strlen(want)) != 0) {
            const char *again = NULL;
            char *c;

            for (c = s + 1; c < nl; c++) {
                if (memcmp(c, "{\"seq\":", 7) == 0) {
                    again = c;
                    break;
                }
            }
            fail_msg("%s line %zu (seq %llu, k %" PRIu64 ", %zu bytes, "
                     "want %zu) is torn or wrong: %.120s%s%.120s", path,
                     *lines, seq, k, (size_t)(nl + 1 - s), strlen(want), s,
                     again ? " ... then at the line's byte "
                             : " (no second line start)",
                     again ? apr_psprintf(iter, "%" APR_SIZE_T_FMT ": %.100s",
                                          (size_t)(again - s), again) : "");
        }
    }
    apr_pool_destroy(iter);
    return last;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* §11.4: writers die by SIGKILL anywhere, holding the lock or not, in the
 * middle of an update or not (mid-append, mid-copy, mid-compaction).
 * After each death the next operation works; at the end no number was
 * given out twice, no line is torn, and /current is whole. */
static void kill_writers(int front_lock);

static void test_kill_writers_at_random(void **state)
{
    kill_writers(0);
}

/* The same with the front lock (ptm_lock.h), which its dead holders leave
 * to the next taker, and its tails: a writer killed mid-append leaves a
 * file that no longer ends where the tail says, and its partial line is
 * cut. */
static void test_kill_writers_front_lock(void **state)
{
    kill_writers(1);
}

static void kill_writers(int front_lock)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    int rounds = RUNNING_ON_VALGRIND ? 30 : 200, round, sfd, rfd;
    double t0 = now_s(), limit = RUNNING_ON_VALGRIND ? 120 : 8;
    uint64_t repairs = 0, grew = 0, pseq = 0, last[2];
    const char *run_file;
    apr_pool_t *iter;
    size_t lines[2];
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    ptm_store_stats_t s;

    /* Under valgrind it runs 30 rounds instead of 200; this skips it. */
    if (getenv("PTM_SKIP_KILL_TEST")) {
        skip();
    }
    fx_open_dir(&fx);
    assert_int_equal(fx_map(&fx, 8 * 1024 * 1024), PTM_STORE_OPEN_NEW);
    kw_lock = NULL;
    if (front_lock) {
        assert_int_equal(ptm_lock_create(&kw_lock, fx.p), APR_SUCCESS);
        ptm_store_use_lock(fx.st, kw_lock);
    }
    alarm(RUNNING_ON_VALGRIND ? 600 : 60);
    print_message("kill test: mutex %s%s, seed %u\n",
                  apr_global_mutex_name(fx.mx),
                  front_lock ? " behind the front lock" : "", seed);
    srand(seed);
    run_file = apr_pstrcat(fx.p, fx.dir, "/run.ndjson", NULL);
    /* Opened as the module opens them. */
    assert_int_equal(ptm_ndjson_open(&sfd, fx.file, fx.p), APR_SUCCESS);
    assert_int_equal(ptm_ndjson_open(&rfd, run_file, fx.p), APR_SUCCESS);
    assert_int_equal(apr_pool_create(&iter, fx.p), APR_SUCCESS);

    for (round = 0; round < rounds && now_s() - t0 < limit; round++) {
        pid_t pid;
        ptm_store_event_t ev;
        uint64_t seq = 0, before = ptm_store_repairs(fx.st);
        const char *when;
        apr_status_t rv;

        apr_pool_clear(iter);
        when = apr_psprintf(iter, "after kill %d", round + 1);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            kw_child(&fx, (uint64_t)(round + 1) * 1000000, sfd, rfd);
        }
        /* Somewhere in the first few hundred events (valgrind runs the
         * child some 50 times slower). */
        usleep((useconds_t)(RUNNING_ON_VALGRIND ? 20000 : 300)
               + (useconds_t)(rand() % (RUNNING_ON_VALGRIND ? 60000 : 3000)));
        kill_child(pid);

        /* The next operation works, whatever state the child left. */
        kw_check_state(&fx, iter, when);
        if (ptm_store_repairs(fx.st) > before) {
            grew++;
        }
        /* The parent's own event: numbered after everything so far. */
        kw_event(&ev, iter, run_gen(&fx), 8 * (100000000000ull + round),
                 sfd, rfd);
        rv = ptm_store_event(fx.st, &ev, &seq);
        if (rv != APR_SUCCESS) {
            fail_msg("%s: the next event failed: %d", when, rv);
        }
        if (seq <= pseq) {
            fail_msg("%s: seq %" PRIu64 " after %" PRIu64, when, seq, pseq);
        }
        pseq = seq;
        kw_check_state(&fx, iter, when);
    }
    repairs = ptm_store_repairs(fx.st);
    assert_true(round >= (rounds < 20 ? rounds : 20));

    /* The files: whole lines, strictly increasing seqs. */
    last[PTM_STREAM_SITE] = kw_check_file(&fx, fx.file, PTM_STREAM_SITE,
                                          &lines[0]);
    last[PTM_STREAM_RUN] = kw_check_file(&fx, run_file, PTM_STREAM_RUN,
                                         &lines[1]);
    s = stats(&fx);
    assert_true(s.seq[PTM_STREAM_SITE] >= last[PTM_STREAM_SITE]);
    assert_true(s.seq[PTM_STREAM_RUN] >= last[PTM_STREAM_RUN]);
    print_message("kill test: %d kills in %.1f s, a repair after %" PRIu64
                  " of them (ptm_store_repairs %" PRIu64 "), %zu site and "
                  "%zu run lines, seq %" PRIu64 "/%" PRIu64 "\n", round,
                  now_s() - t0, grew, repairs, lines[0], lines[1], s.seq[0],
                  s.seq[1]);

    /* The next events are numbered past everything in the files. */
    {
        ptm_store_event_t ev;
        uint64_t seq = 0;

        if (!s.run_active) {
            assert_int_equal(ptm_store_run_start(fx.st, RUN_OBJ("001"),
                                                 strlen(RUN_OBJ("001")),
                                                 "001", 3, KW_RUN_DIR, NULL,
                                                 NULL), APR_SUCCESS);
        }
        kw_event(&ev, fx.p, run_gen(&fx), 8 * 200000000000ull, sfd, rfd);
        assert_int_equal(ptm_store_event(fx.st, &ev, &seq), APR_SUCCESS);
        assert_true(seq > last[PTM_STREAM_SITE]);
        kw_event(&ev, fx.p, run_gen(&fx), 8 * 200000000000ull + 4, sfd, rfd);
        assert_int_equal(ptm_store_event(fx.st, &ev, &seq), APR_SUCCESS);
        assert_true(seq > last[PTM_STREAM_RUN]);
    }
    close(sfd);
    close(rfd);
    kw_check_file(&fx, fx.file, PTM_STREAM_SITE, &lines[0]);
    kw_check_file(&fx, run_file, PTM_STREAM_RUN, &lines[1]);

    /* And the state file reopens as it was. */
    {
        const char *cur = current(&fx);

        fx_unmap(&fx);
        assert_int_equal(fx_map(&fx, 8 * 1024 * 1024),
                         PTM_STORE_OPEN_RECOVERED);
        check_current(&fx, cur);
        kw_check_state(&fx, fx.p, "reopened");
    }
    alarm(0);
    kw_lock = NULL;
    fx_close(&fx);
}

/* ---- reconcile with the files -------------------------------------------- */

/* Lines with seqs from..to, then `tail` (a partial line, or ""). */
static void put_lines(fx_t *fx, const char *path, uint64_t from, uint64_t to,
                      const char *tail)
{
    FILE *f = fopen(path, "wb");
    uint64_t i;

    if (!f) {
        fail_msg("fopen %s: %s", path, strerror(errno));
    }
    for (i = from; i <= to; i++) {
        fprintf(f, "{\"seq\":%" PRIu64 ",\"ts\":\"" TS "\",\"stream\":"
                "\"site\",\"type\":\"t\",\"data\":%" PRIu64 ",\"meta\":{}}\n",
                i, i);
    }
    fputs(tail, f);
    fclose(f);
}

static void check_seqs(fx_t *fx, uint64_t site, uint64_t run)
{
    ptm_store_stats_t s = stats(fx);

    if (s.seq[PTM_STREAM_SITE] != site || s.seq[PTM_STREAM_RUN] != run) {
        fail_msg("seqs %" PRIu64 "/%" PRIu64 ", want %" PRIu64 "/%" PRIu64,
                 s.seq[0], s.seq[1], site, run);
    }
}

static void test_reconcile(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    prep_t prep = { 0, APR_SUCCESS, 0 };
    const char *site, *f16, *f17, *run_dir, *run2_dir;
    size_t len, want_len;
    struct stat sb;
    int i;

    fx_open(&fx, 1024 * 1024);
    site = apr_pstrcat(fx.p, fx.dir, "/site", NULL);
    assert_int_equal(mkdir(site, 0755), 0);
    f16 = apr_pstrcat(fx.p, site, "/site_20260316.ndjson", NULL);
    f17 = apr_pstrcat(fx.p, site, "/site_20260317.ndjson", NULL);

    /* No files at all: nothing changes. */
    assert_int_equal(ptm_store_reconcile(fx.st, site, NULL, fx.p), APR_SUCCESS);
    check_seqs(&fx, 0, 0);

    /* Two day files (7 and 12, the later one ending in a partial line),
     * and things that are not site files. */
    put_lines(&fx, f16, 1, 7, "");
    put_lines(&fx, f17, 8, 12, "");
    put_lines(&fx, f17, 8, 12, "{\"seq\":13,\"ts\":\"2026-03-17T2");
    assert_int_equal(stat(f17, &sb), 0);
    want_len = (size_t)sb.st_size;
    put_lines(&fx, apr_pstrcat(fx.p, site, "/other.ndjson", NULL), 90, 99,
              "");
    put_lines(&fx, apr_pstrcat(fx.p, site, "/site_20260318.ndjson.bak",
                               NULL), 90, 99, "");
    put_lines(&fx, apr_pstrcat(fx.p, site, "/xsite_20260318.ndjson", NULL),
              90, 99, "");
    put_lines(&fx, apr_pstrcat(fx.p, site, "/site_.ndjson", NULL), 90, 99,
              "");
    assert_int_equal(mkdir(apr_pstrcat(fx.p, site, "/site_20260319.ndjson",
                                       NULL), 0755), 0);
    assert_int_equal(mkdir(apr_pstrcat(fx.p, site, "/runs", NULL), 0755), 0);
    put_lines(&fx, apr_pstrcat(fx.p, site, "/runs/telemetry.ndjson", NULL),
              90, 99, "");

    /* Links planted by the User (the site directory is theirs) are not
     * followed by root: neither read nor cut. */
    put_lines(&fx, apr_pstrcat(fx.p, fx.dir, "/elsewhere", NULL), 1, 500,
              "{\"seq\":501,");
    assert_int_equal(symlink(apr_pstrcat(fx.p, fx.dir, "/elsewhere", NULL),
                             apr_pstrcat(fx.p, site, "/site_20200101.ndjson",
                                         NULL)), 0);
    assert_int_equal(stat(apr_pstrcat(fx.p, fx.dir, "/elsewhere", NULL),
                          &sb), 0);
    len = (size_t)sb.st_size;

    /* State behind the files (5): raised to 12; the files are only read
     * (the partial line stays for the next append to cut). */
    for (i = 1; i <= 5; i++) {
        post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, -1, (uint64_t)i);
    }
    assert_int_equal(ptm_store_reconcile(fx.st, site, NULL, fx.p), APR_SUCCESS);
    check_seqs(&fx, 12, 0);
    assert_int_equal(stat(apr_pstrcat(fx.p, fx.dir, "/elsewhere", NULL),
                          &sb), 0);
    assert_int_equal((size_t)sb.st_size, len);
    slurp(f17, &len, fx.p);
    assert_int_equal(len, want_len);
    post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, -1, 13);

    /* State ahead of the files (20): stays. */
    for (i = 14; i <= 20; i++) {
        post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, -1, (uint64_t)i);
    }
    assert_int_equal(ptm_store_reconcile(fx.st, site, NULL, fx.p), APR_SUCCESS);
    check_seqs(&fx, 20, 0);

    /* The active run's file: 9 raises the run counter from 0; its partial
     * line is left too. */
    run_dir = apr_pstrcat(fx.p, site, "/runs/001", NULL);
    assert_int_equal(mkdir(run_dir, 0755), 0);
    put_lines(&fx, apr_pstrcat(fx.p, run_dir, "/telemetry.ndjson", NULL), 1,
              9, "{\"seq\":10,");
    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", run_dir, &prep),
                     APR_SUCCESS);
    check_seqs(&fx, 20, 0);
    assert_int_equal(ptm_store_reconcile(fx.st, site, NULL, fx.p), APR_SUCCESS);
    check_seqs(&fx, 20, 9);
    slurp(apr_pstrcat(fx.p, run_dir, "/telemetry.ndjson", NULL), &len, fx.p);
    assert_int_equal(stat(apr_pstrcat(fx.p, run_dir, "/telemetry.ndjson",
                                      NULL), &sb), 0);
    assert_int_equal(len, (size_t)sb.st_size);
    {
        size_t l9;
        const char *t = slurp(apr_pstrcat(fx.p, run_dir, "/telemetry.ndjson",
                                          NULL), &l9, fx.p);

        assert_int_equal(l9, (size_t)sb.st_size);
        assert_non_null(strstr(t, "\"seq\":10,"));
    }
    post_ok(&fx, PTM_STREAM_RUN, "r", "1", 1, -1, 10);
    /* The run counter ahead of the run file: stays. */
    for (i = 11; i <= 15; i++) {
        post_ok(&fx, PTM_STREAM_RUN, "r", "1", 1, -1, (uint64_t)i);
    }
    assert_int_equal(ptm_store_reconcile(fx.st, site, NULL, fx.p), APR_SUCCESS);
    check_seqs(&fx, 20, 15);
    /* A run whose file does not exist (yet): nothing changes. */
    stop_run(&fx);
    run2_dir = apr_pstrcat(fx.p, site, "/runs/002", NULL);
    assert_int_equal(start_run(&fx, RUN_OBJ("002"), "002", run2_dir, &prep),
                     APR_SUCCESS);
    assert_int_equal(ptm_store_reconcile(fx.st, site, NULL, fx.p), APR_SUCCESS);
    check_seqs(&fx, 20, 15);
    /* No run: the old run's file does not count. */
    stop_run(&fx);
    put_lines(&fx, apr_pstrcat(fx.p, run_dir, "/telemetry.ndjson", NULL), 1,
              50, "");
    assert_int_equal(ptm_store_reconcile(fx.st, site, NULL, fx.p), APR_SUCCESS);
    check_seqs(&fx, 20, 15);

    /* A site file appended to behind the state's back (a crash after the
     * append, with an older state file): the next number follows it. */
    put_lines(&fx, f17, 8, 30, "");
    assert_int_equal(ptm_store_reconcile(fx.st, site, NULL, fx.p), APR_SUCCESS);
    check_seqs(&fx, 30, 15);
    post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, -1, 31);

    /* A link on the way to the run's directory (the User can plant one in
     * the site directory): root does not follow it, the counter stays. */
    {
        const char *away = apr_pstrcat(fx.p, fx.dir, "/away", NULL);

        assert_int_equal(mkdir(away, 0755), 0);
        assert_int_equal(mkdir(apr_pstrcat(fx.p, away, "/004", NULL), 0755),
                         0);
        put_lines(&fx, apr_pstrcat(fx.p, away, "/004/telemetry.ndjson",
                                   NULL), 1, 900, "");
        assert_int_equal(symlink(away, apr_pstrcat(fx.p, site, "/linked",
                                                   NULL)), 0);
        assert_int_equal(start_run(&fx, RUN_OBJ("004"), "004",
                                   apr_pstrcat(fx.p, site, "/linked/004",
                                               NULL), &prep), APR_SUCCESS);
        assert_int_equal(ptm_store_reconcile(fx.st, site, NULL, fx.p),
                         APR_SUCCESS);
        check_seqs(&fx, 31, 15);
        stop_run(&fx);
    }

    /* A site dir that is not there, or not a directory: the error, and
     * nothing changes. */
    assert_int_equal(ptm_store_reconcile(fx.st, apr_pstrcat(fx.p, fx.dir,
                                                            "/nope", NULL),
                                         NULL, fx.p), APR_ENOENT);
    assert_int_equal(ptm_store_reconcile(fx.st, f16, NULL, fx.p), APR_ENOTDIR);
    check_seqs(&fx, 31, 15);
    fx_close(&fx);
}

/* ---- the run start's seq floor ------------------------------------------- */

static void test_run_start_seq_floor(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    prep_t prep = { 0, APR_SUCCESS, 0 };
    int i;

    fx_open(&fx, 1024 * 1024);
    post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, -1, 1);
    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", "/srv/t/001",
                               &prep), APR_SUCCESS);
    for (i = 1; i <= 3; i++) {
        post_ok(&fx, PTM_STREAM_RUN, "r", "1", 1, -1, (uint64_t)i);
    }
    stop_run(&fx);

    /* The directory already holds 40: the run goes on from 41. */
    prep.floor = 40;
    assert_int_equal(start_run(&fx, RUN_OBJ("002"), "002", "/srv/t/002",
                               &prep), APR_SUCCESS);
    check_seqs(&fx, 1, 40);
    post_ok(&fx, PTM_STREAM_RUN, "r", "1", 1, -1, 41);
    stop_run(&fx);

    /* A floor below the counter, or equal to it, changes nothing. */
    prep.floor = 10;
    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", "/srv/t/001",
                               &prep), APR_SUCCESS);
    check_seqs(&fx, 1, 41);
    post_ok(&fx, PTM_STREAM_RUN, "r", "1", 1, -1, 42);
    stop_run(&fx);
    prep.floor = 42;
    assert_int_equal(start_run(&fx, RUN_OBJ("001"), "001", "/srv/t/001",
                               &prep), APR_SUCCESS);
    post_ok(&fx, PTM_STREAM_RUN, "r", "1", 1, -1, 43);
    stop_run(&fx);

    /* A prepare that fails: its floor is not taken. */
    prep.floor = 100;
    prep.rv = APR_EACCES;
    assert_int_equal(start_run(&fx, RUN_OBJ("003"), "003", "/srv/t/003",
                               &prep), APR_EACCES);
    check_seqs(&fx, 1, 43);
    /* Nor when the run cannot start at all (one is active). */
    prep.rv = APR_SUCCESS;
    prep.floor = 0;
    assert_int_equal(start_run(&fx, RUN_OBJ("003"), "003", "/srv/t/003",
                               &prep), APR_SUCCESS);
    prep.floor = 200;
    assert_int_equal(start_run(&fx, RUN_OBJ("004"), "004", "/srv/t/004",
                               &prep), PTM_STORE_BUSY);
    check_seqs(&fx, 1, 43);
    post_ok(&fx, PTM_STREAM_RUN, "r", "1", 1, -1, 44);
    /* The site counter never moves with it. */
    post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, -1, 2);
    stop_run(&fx);
    fx_close(&fx);
}

/* Every test cleans up after itself, even when it fails. */
/* A refused event leaves no empty file behind (the open that preceded the
 * lock created it), and an event whose file was deleted after its open is
 * STALE (the caller opens again) with nothing changed. */
static void test_refused_event_leaves_no_file(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    ptm_store_event_t ev;
    ptm_store_stats_t s0, s1;
    const char *fresh;
    struct stat sb;
    uint64_t seq = 0;
    int fd;

    fx_open(&fx, PTM_STORE_MIN_SIZE);
    fresh = apr_pstrcat(fx.p, fx.dir, "/fresh.ndjson", NULL);
    fd = open(fresh, O_WRONLY | O_APPEND | O_CREAT, 0666);
    assert_true(fd >= 0);
    mk_event(&ev, fx.p, run_gen(&fx), PTM_STREAM_SITE, "big",
             pad(fx.p, 70000, 'x'), 1, fd);
    ev.path = fresh;
    assert_int_equal(ptm_store_event(fx.st, &ev, &seq), PTM_STORE_FULL);
    assert_int_equal(stat(fresh, &sb), -1);     /* gone */
    close(fd);

    /* Deleted after the open: STALE, no seq used, nothing written. */
    fd = open(fresh, O_WRONLY | O_APPEND | O_CREAT, 0666);
    assert_true(fd >= 0);
    assert_int_equal(unlink(fresh), 0);
    s0 = stats(&fx);
    mk_event(&ev, fx.p, run_gen(&fx), PTM_STREAM_SITE, "a", "1", 1, fd);
    ev.path = fresh;
    assert_int_equal(ptm_store_event(fx.st, &ev, &seq), PTM_STORE_STALE);
    s1 = stats(&fx);
    assert_int_equal(s1.seq[PTM_STREAM_SITE], s0.seq[PTM_STREAM_SITE]);
    assert_int_equal(s1.types[PTM_STREAM_SITE], s0.types[PTM_STREAM_SITE]);
    close(fd);

    /* Opened for a run that ended before the lock was taken: STALE, and
     * the empty file that open created is removed too. */
    {
        prep_t prep = { 0, APR_SUCCESS, 0 };
        uint64_t gen;

        assert_int_equal(start_run(&fx, RUN_OBJ("008"), "008", fx.dir,
                                   &prep), APR_SUCCESS);
        gen = run_gen(&fx);
        fd = open(fresh, O_WRONLY | O_APPEND | O_CREAT, 0666);
        assert_true(fd >= 0);
        stop_run(&fx);
        mk_event(&ev, fx.p, gen, PTM_STREAM_RUN, "a", "1", 1, fd);
        ev.path = fresh;
        assert_int_equal(ptm_store_event(fx.st, &ev, &seq), PTM_STORE_STALE);
        assert_int_equal(stat(fresh, &sb), -1);     /* gone */
        close(fd);
    }
    fx_close(&fx);
}

/* The mod_status counters: answers by status, write errors, the run. */
static void test_stats_counters(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    prep_t prep = { 0, APR_SUCCESS, 0 };
    ptm_store_stats_t s;
    int i;

    fx_open(&fx, 1024 * 1024);
    ptm_store_count_answer(fx.st, 422);
    ptm_store_count_answer(fx.st, 422);
    ptm_store_count_answer(fx.st, 507);
    ptm_store_count_answer(fx.st, 200);     /* not an error: not counted */
    ptm_store_count_answer(fx.st, 418);     /* not one of ours */
    ptm_store_count_write_error(fx.st);
    post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, -1, 1);
    assert_int_equal(start_run(&fx, RUN_OBJ("007"), "007", "/srv/t/007",
                               &prep), APR_SUCCESS);
    s = stats(&fx);
    for (i = 0; i < PTM_STORE_NSTATUS; i++) {
        int code = ptm_store_status_code(i);

        assert_int_equal(s.answers[i], code == 422 ? 2 : code == 507 ? 1 : 0);
    }
    assert_int_equal(ptm_store_status_code(PTM_STORE_NSTATUS), 0);
    assert_int_equal(s.write_errors, 1);
    assert_int_equal(s.events[PTM_STREAM_SITE], 1);
    assert_int_equal(s.types[PTM_STREAM_SITE], 1);
    assert_int_equal(s.run_active, 1);
    assert_string_equal(s.run_id, "007");
    assert_string_equal(s.run_obj, RUN_OBJ("007"));
    assert_true(s.bytes_used > 0 && s.bytes_used < s.bytes_total);
    stop_run(&fx);
    s = stats(&fx);
    assert_int_equal(s.run_active, 0);
    assert_null(s.run_id);
}

/* What server-status, /ready, /current, /current/{type} and /run read,
 * from a thread of their own. */
typedef struct {
    ptm_store_t *st;
    apr_pool_t *p;
    apr_status_t rv, rv_cur, rv_one, rv_run;
    ptm_store_stats_t s;
    int active;
    ptm_buf_t cur, one, run;
} reader_arg_t;

static void *reader_thread(void *arg)
{
    reader_arg_t *a = arg;

    ptm_buf_init(&a->cur, a->p, 64);
    a->rv_cur = ptm_store_current(a->st, &a->cur);
    ptm_buf_putc(&a->cur, '\0');
    ptm_buf_init(&a->one, a->p, 64);
    a->rv_one = ptm_store_current_one(a->st, "\"a\"", 3, &a->one);
    ptm_buf_putc(&a->one, '\0');
    ptm_buf_init(&a->run, a->p, 64);
    a->rv_run = ptm_store_run_get(a->st, &a->run);
    ptm_buf_putc(&a->run, '\0');
    a->rv = ptm_store_stats(a->st, &a->s, a->p);
    a->active = ptm_store_run_active(a->st);
    return NULL;
}

/* A writer stuck in its append (a hung disk: here a pipe nobody reads)
 * holds the lock for as long as the disk hangs.  server-status, /ready
 * and the reads of the view and the run must still answer, all of it
 * copied without the lock (the view's sequence lock), only the age of the
 * ring's oldest event left out and "busy" said instead. */
static void test_readers_never_wait(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    prep_t prep = { 0, APR_SUCCESS, 0 };
    ptm_store_stats_t s0, s;
    struct timespec until;
    reader_arg_t ra;
    pthread_t t;
    int pfd[2], i;
    pid_t pid;
    const char *cur0, *one0;
    ptm_buf_t b;

    fx_open(&fx, 1024 * 1024);
    alarm(60);          /* a lock that never comes back must not hang */
    assert_int_equal(ptm_store_run_active(fx.st), 0);
    post_ok(&fx, PTM_STREAM_SITE, "a", "1", 1, -1, 1);
    post_ok(&fx, PTM_STREAM_SITE, "b", "2", 1, -1, 2);
    assert_int_equal(start_run(&fx, RUN_OBJ("007"), "007", "/srv/t/007",
                               &prep), APR_SUCCESS);
    assert_int_equal(ptm_store_run_active(fx.st), 1);
    post_ok(&fx, PTM_STREAM_RUN, "a", "3", 1, -1, 1);
    ptm_store_count_answer(fx.st, 422);
    ptm_store_count_write_error(fx.st);
    s0 = stats(&fx);
    assert_int_equal(s0.busy, 0);
    assert_string_equal(s0.run_id, "007");
    cur0 = current(&fx);
    ptm_buf_init(&b, fx.p, 64);
    assert_int_equal(ptm_store_current_one(fx.st, "\"a\"", 3, &b),
                     APR_SUCCESS);
    ptm_buf_putc(&b, '\0');
    one0 = b.data;

    pid = start_blocked_writer(&fx, pfd, PTM_STREAM_RUN, "x", 0);
    memset(&ra, 0, sizeof(ra));
    ra.st = fx.st;
    ra.p = fx.p;
    assert_int_equal(pthread_create(&t, NULL, reader_thread, &ra), 0);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    if (pthread_timedjoin_np(t, NULL, &until) != 0) {
        /* The writer's death frees the lock (a robust mutex): the reader
         * gets it, and the test ends instead of hanging. */
        kill_child(pid);
        close(pfd[0]);
        pthread_join(t, NULL);
        fail_msg("a reader waited for the lock of a stuck writer");
    }
    assert_int_equal(ra.rv, APR_SUCCESS);
    assert_int_equal(ra.s.busy, 1);
    assert_int_equal(ra.active, 1);
    assert_int_equal(ra.s.run_active, 1);
    assert_string_equal(ra.s.run_id, "007");
    assert_string_equal(ra.s.run_obj, RUN_OBJ("007"));
    assert_int_equal(ra.s.recent_oldest, 0);
    assert_int_equal(ra.rv_cur, APR_SUCCESS);
    assert_string_equal(ra.cur.data, cur0);
    assert_int_equal(ra.rv_one, APR_SUCCESS);
    assert_string_equal(ra.one.data, one0);
    assert_int_equal(ra.rv_run, APR_SUCCESS);
    assert_string_equal(ra.run.data, RUN_OBJ("007"));
    /* None of them went to the lock (it was held throughout). */
    assert_int_equal(ra.s.view_locked, 0);
    for (i = 0; i < 2; i++) {
        assert_int_equal(ra.s.seq[i], s0.seq[i]);
        assert_int_equal(ra.s.events[i], s0.events[i]);
        assert_int_equal(ra.s.types[i], s0.types[i]);
    }
    assert_int_equal(ra.s.bytes_used, s0.bytes_used);
    assert_int_equal(ra.s.bytes_total, s0.bytes_total);
    assert_int_equal(ra.s.repairs, 0);
    assert_int_equal(ra.s.write_errors, 1);
    for (i = 0; i < PTM_STORE_NSTATUS; i++) {
        assert_int_equal(ra.s.answers[i], s0.answers[i]);
    }

    /* Once the lock is free again, the full copy; the dead writer's
     * update was repaired. */
    kill_child(pid);
    close(pfd[0]);
    s = stats(&fx);
    assert_int_equal(s.busy, 0);
    assert_int_equal(s.run_active, 1);
    assert_string_equal(s.run_id, "007");
    assert_string_equal(s.run_obj, RUN_OBJ("007"));
    assert_int_equal(s.repairs, 1);
    stop_run(&fx);
    assert_int_equal(ptm_store_run_active(fx.st), 0);
    alarm(0);
    fx_close(&fx);
}

/* ---- group commit (PanoptesTelemetrySync On with a board) ------------------ */

/* The flush seam (ptm_sync_test_flush): counts, takes time, fails when
 * told, and keeps how much of the file a good flush made durable (what
 * the file held when it began). */
typedef struct {
    unsigned flushes;
    int fail_next;
    int64_t durable;
    unsigned delay_us;
} sync_seam_t;

static sync_seam_t *seam;

static int seam_flush(int fd)
{
    struct stat st;
    int64_t before, now;

    if (fstat(fd, &st) != 0) {
        return -1;
    }
    before = st.st_size;
    if (seam->delay_us) {
        usleep(seam->delay_us);
    }
    __atomic_add_fetch(&seam->flushes, 1, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(&seam->fail_next, 0, __ATOMIC_SEQ_CST)) {
        errno = EIO;
        return -1;
    }
    now = __atomic_load_n(&seam->durable, __ATOMIC_SEQ_CST);
    while (now < before
           && !__atomic_compare_exchange_n(&seam->durable, &now, before, 0,
                                           __ATOMIC_SEQ_CST,
                                           __ATOMIC_SEQ_CST)) {
    }
    return 0;
}

/* The board and the seam in memory children share. */
static ptm_sync_t *sync_open(fx_t *fx)
{
    size_t size = sizeof(sync_seam_t) + 64 + ptm_sync_size();
    char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ptm_sync_t *b;

    assert_true(mem != MAP_FAILED);
    memset(mem, 0, size);
    seam = (sync_seam_t *)mem;
    b = ptm_sync_init(mem + 64 + (sizeof(sync_seam_t) & ~(size_t)7));
    ptm_store_use_sync(fx->st, b);
    ptm_sync_test_flush = seam_flush;
    return b;
}

static void sync_close(fx_t *fx)
{
    ptm_sync_test_flush = NULL;
    ptm_store_close_files(fx->st);
    /* The mapping goes with the process. */
}

/* One stored site event through the process's open file, with sync. */
static apr_status_t post_sync(ptm_store_t *st, apr_pool_t *p,
                              const char *path, const char *type, int i,
                              uint64_t *seq, const char **step)
{
    ptm_store_event_t ev;
    ptm_store_run_t r;
    apr_status_t rv;

    if ((rv = ptm_store_run_peek(&r, st, p)) != APR_SUCCESS) {
        return rv;
    }
    mk_event(&ev, p, r.gen, PTM_STREAM_SITE, type,
             apr_psprintf(p, "{\"i\":%d}", i), 1, -1);
    ev.path = path;
    ev.pool = p;
    ev.sync = 1;
    *step = "none";
    ev.failed_step = step;
    return ptm_store_event(st, &ev, seq);
}

/* Where the line of `seq` ends in `path` (0 if it is not there). */
static int64_t line_end(const char *path, uint64_t seq, apr_pool_t *p)
{
    size_t len;
    char *buf = slurp(path, &len, p), *at, *nl;
    char *want = apr_psprintf(p, "{\"seq\":%" PRIu64 ",", seq);

    if (!buf || !(at = strstr(buf, want)) || !(nl = strchr(at, '\n'))) {
        return 0;
    }
    return (int64_t)(nl + 1 - buf);
}

#define SYNC_NPROC 4
#define SYNC_NEVENTS 60

/* Writers in several processes, each with a handle of its own (its own
 * descriptor of the site file, as httpd's children): every event answered
 * has its line inside what a flush made durable, and flushes were shared.
 * Without the wait, answers come before their flush (fails at once). */
static void test_sync_group_commit(void **state)
{
    static fx_t fx;
    pid_t pids[SYNC_NPROC];
    ptm_sync_t *b;
    ptm_sync_stats_t ys;
    int k, status;
    size_t len;
    char *buf, *c;
    unsigned lines = 0;

    fx_open(&fx, 1024 * 1024);
    b = sync_open(&fx);
    seam->delay_us = 500;
    for (k = 0; k < SYNC_NPROC; k++) {
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            apr_pool_t *p;
            ptm_store_t *st;
            int i;

            child_signals();
            CHILD_CHECK(apr_pool_create(&p, NULL) == APR_SUCCESS, 2);
            st = ptm_store_attach(fx.base, fx.mx, p);
            ptm_store_use_sync(st, b);
            for (i = 0; i < SYNC_NEVENTS; i++) {
                const char *step;
                uint64_t seq = 0;
                int64_t end;

                CHILD_CHECK(post_sync(st, p, fx.file, "gc", k * 1000 + i,
                                      &seq, &step) == APR_SUCCESS, 3);
                end = line_end(fx.file, seq, p);
                CHILD_CHECK(end > 0, 4);
                CHILD_CHECK(end <= __atomic_load_n(&seam->durable,
                                                   __ATOMIC_SEQ_CST), 5);
            }
            ptm_store_close_files(st);
            _exit(0);
        }
    }
    for (k = 0; k < SYNC_NPROC; k++) {
        assert_int_equal(waitpid(pids[k], &status, 0), pids[k]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fail_msg("child %d: status 0x%x", k, status);
        }
    }
    buf = slurp(fx.file, &len, fx.p);
    for (c = buf; c && c < buf + len; c = strchr(c, '\n') + 1) {
        lines++;
    }
    assert_int_equal(lines, SYNC_NPROC * SYNC_NEVENTS);
    ptm_sync_stats(b, &ys);
    print_message("    %u events, %u flushes\n", lines, seam->flushes);
    assert_int_equal(ys.lines, SYNC_NPROC * SYNC_NEVENTS);
    assert_int_equal(ys.flushes, seam->flushes);
    assert_true(seam->flushes < SYNC_NPROC * SYNC_NEVENTS);
    sync_close(&fx);
    fx_close(&fx);
}

/* A failed flush: the event answers the flush's error with the step
 * "sync"; it was recorded all the same (its seq is used, its line is in
 * the file, it is current), and the next event is stored and flushed as
 * usual, with the next seq. */
static void test_sync_failure(void **state)
{
    static fx_t fx;
    const char *step;
    uint64_t seq = 0;
    ptm_buf_t out;

    fx_open(&fx, 1024 * 1024);
    sync_open(&fx);
    assert_int_equal(post_sync(fx.st, fx.p, fx.file, "gc", 1, &seq, &step),
                     APR_SUCCESS);
    assert_int_equal(seq, 1);
    assert_string_equal(step, "none");
    assert_int_equal(seam->flushes, 1);
    seam->fail_next = 1;
    assert_int_equal(post_sync(fx.st, fx.p, fx.file, "gc", 2, &seq, &step),
                     APR_FROM_OS_ERROR(EIO));
    assert_string_equal(step, "sync");
    assert_int_equal(seq, 2);
    assert_true(line_end(fx.file, 2, fx.p) > 0);
    assert_int_equal(stats(&fx).seq[PTM_STREAM_SITE], 2);
    ptm_buf_init(&out, fx.p, 256);
    assert_int_equal(ptm_store_current_one(fx.st, "\"gc\"", 4, &out),
                     APR_SUCCESS);
    assert_non_null(strstr(out.data, "\"i\":2"));
    assert_int_equal(post_sync(fx.st, fx.p, fx.file, "gc", 3, &seq, &step),
                     APR_SUCCESS);
    assert_int_equal(seq, 3);
    assert_int_equal(seam->flushes, 3);
    sync_close(&fx);
    fx_close(&fx);
}

#define T(f) cmocka_unit_test_teardown(f, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_format_and_attach),
        T(test_site_events_file_bytes),
        T(test_make_current_false_and_ephemeral),
        T(test_run_lifecycle_and_seq),
        T(test_run_seen),
        T(test_current_merge_order),
        T(test_current_run_value_sizes),
        T(test_run_start_prepare_error),
        T(test_write_failure_changes_nothing),
        T(test_full_big_envelopes),
        T(test_full_type_table),
        T(test_arena_compaction),
        T(test_multiprocess_appends),
        T(test_multiprocess_front_lock),
        T(test_state_file_new_recovered_busy),
        T(test_state_file_unrecognised),
        T(test_state_file_resized),
        T(test_state_file_resized_smaller_lossy),
        T(test_repair_after_killed_writer),
        T(test_repair_on_open),
        T(test_reconcile),
        T(test_run_start_seq_floor),
        T(test_stats_counters),
        T(test_refused_event_leaves_no_file),
        T(test_readers_never_wait),
        T(test_kill_writers_at_random),
        T(test_kill_writers_front_lock),
        T(test_sync_group_commit),
        T(test_sync_failure),
    };

    if (getenv("PTM_TEST_FILTER")) {
        cmocka_set_test_filter(getenv("PTM_TEST_FILTER"));
    }
    return cmocka_run_group_tests_name("ptm_store", tests, group_setup,
                                       group_teardown);
}

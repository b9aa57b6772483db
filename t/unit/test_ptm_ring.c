/* Unit tests for the event ids and the recent-events ring (SPEC §12.1,
 * src/ptm_ring.c): ids count up across both streams; the ring holds every
 * accepted event, stored or not, oldest dropped first, wrapping round;
 * an event bigger than the ring empties it; what GET /events needs to
 * tell ring from file (first seqs per stream and run); a writer killed in
 * the middle of an append (repair keeps the ring, skips an id, never
 * repeats one); a damaged ring dropped whole; a ring carried into a state
 * of another size keeps its newest events. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"
#include <apr_global_mutex.h>
#include <apr_shm.h>
#include <apr_strings.h>
#include "ptm_store.h"
#include "ptm_store_int.h"
#include "ptm_test_hook.h"

#define SIZE (4 * 1024 * 1024)

typedef struct {
    apr_pool_t *p;
    apr_shm_t *shm;
    apr_global_mutex_t *mx;
    void *base;
    ptm_store_t *st;
    char *dir;
} fx_t;

static void fx_open(fx_t *fx, apr_size_t ring)
{
    memset(fx, 0, sizeof(*fx));
    assert_int_equal(apr_pool_create(&fx->p, gpool), APR_SUCCESS);
    fx->dir = ptm_unit_tmpdir(fx->p, "ptm_ring_test");
    assert_int_equal(apr_shm_create(&fx->shm, SIZE, NULL, fx->p),
                     APR_SUCCESS);
    fx->base = apr_shm_baseaddr_get(fx->shm);
    assert_int_equal(apr_global_mutex_create(
                         &fx->mx, apr_pstrcat(fx->p, fx->dir, "/lock", NULL),
                         APR_LOCK_DEFAULT, fx->p), APR_SUCCESS);
    memset(fx->base, 0x5a, SIZE);
    ptm_store_format(fx->base, SIZE, ring);
    assert_true(ptm_store_is_formatted(fx->base, SIZE, ring));
    assert_false(ptm_store_is_formatted(fx->base, SIZE, ring + 8));
    fx->st = ptm_store_attach(fx->base, fx->mx, fx->p);
}

static void fx_close(fx_t *fx)
{
    rm_rf(fx->dir);
    apr_pool_destroy(fx->p);
}

static hdr_t *H(fx_t *fx)
{
    return (hdr_t *)fx->base;
}

/* Post one event (not written anywhere: the ring holds it alone) whose
 * data is `data`; returns its id's n. */
static uint64_t post(fx_t *fx, int stream, const char *type,
                     const char *data, apr_time_t ts, uint32_t tie,
                     uint64_t *seq_out)
{
    ptm_store_event_t ev;
    ptm_store_run_t run;
    uint64_t seq = 0, id = 0;
    const char *key = apr_psprintf(fx->p, "\"%s\"", type);

    memset(&ev, 0, sizeof(ev));
    assert_int_equal(ptm_store_run_peek(&run, fx->st, fx->p), APR_SUCCESS);
    ev.run_gen = run.gen;
    ev.stream = stream;
    ev.key = key;
    ev.key_len = strlen(key);
    ev.ts_part = ",\"ts\":\"2026-12-04T00:00:00.000Z\"";
    ev.ts_len = strlen(ev.ts_part);
    ev.body_part = apr_psprintf(fx->p, ",\"type\":%s,\"data\":%s,"
                                "\"meta\":{}}", key, data);
    ev.body_len = strlen(ev.body_part);
    ev.fd = -1;
    ev.accepted = 1000000 + (apr_time_t)H(fx)->next_n;
    ev.ts_us = ts;
    ev.tie = tie;
    ev.id = &id;
    assert_int_equal(ptm_store_event(fx->st, &ev, &seq), APR_SUCCESS);
    if (seq_out) {
        *seq_out = seq;
    }
    return id;
}

static const char *line_of(fx_t *fx, uint64_t seq, int stream,
                           const char *type, const char *data)
{
    return apr_psprintf(fx->p, "{\"seq\":%" PRIu64 ",\"ts\":\"2026-12-04T"
                        "00:00:00.000Z\",\"stream\":\"%s\",\"type\":\"%s\","
                        "\"data\":%s,\"meta\":{}}", seq,
                        stream ? "run" : "site", type, data);
}

static apr_array_header_t *recent(fx_t *fx, ptm_recent_info_t *info,
                                  uint64_t from_n)
{
    apr_array_header_t *out = apr_array_make(fx->p, 8, sizeof(ptm_recent_t));

    assert_int_equal(ptm_store_recent(info, out, NULL, fx->st, from_n, 0,
                                      NULL, NULL, fx->p), APR_SUCCESS);
    return out;
}

/* Every event gets the next n, whichever its stream; the ring holds all,
 * in order, each line the file form. */
static void test_ids_and_lines(void **state)
{
    fx_t fx;
    ptm_recent_info_t info;
    apr_array_header_t *out;
    uint64_t seq[4], n;
    int i;

    fx_open(&fx, 64 * 1024);
    n = post(&fx, PTM_STREAM_SITE, "weather", "{\"t\":1}", 5, 0, &seq[0]);
    assert_int_equal(n, 1);
    assert_int_equal(post(&fx, PTM_STREAM_SITE, "power", "2", 6, 0, &seq[1]),
                     2);
    assert_int_equal(post(&fx, PTM_STREAM_SITE, "weather", "3", 7, 0,
                          &seq[2]), 3);
    assert_int_equal(seq[2], 3);
    out = recent(&fx, &info, 0);
    assert_int_equal(out->nelts, 3);
    assert_int_equal(info.count, 3);
    assert_int_equal(info.first_n, 1);
    assert_int_equal(info.next_n, 4);
    assert_int_equal(info.epoch, ptm_store_epoch(fx.st));
    assert_true(info.epoch > 0);
    assert_int_equal(info.oldest, 1000001);
    assert_int_equal(info.spans->nelts, 1);
    assert_int_equal(APR_ARRAY_IDX(info.spans, 0, ptm_recent_span_t).lo, 1);
    assert_int_equal(APR_ARRAY_IDX(info.spans, 0, ptm_recent_span_t).hi, 3);
    for (i = 0; i < 3; i++) {
        ptm_recent_t *e = &APR_ARRAY_IDX(out, i, ptm_recent_t);

        assert_int_equal(e->n, (uint64_t)i + 1);
        assert_int_equal(e->seq, seq[i]);
        assert_int_equal(e->ts, 5 + i);
        assert_int_equal(e->stored, 0);
        assert_int_equal(e->stream, PTM_STREAM_SITE);
    }
    assert_string_equal(APR_ARRAY_IDX(out, 0, ptm_recent_t).line,
                        line_of(&fx, 1, 0, "weather", "{\"t\":1}"));
    assert_string_equal(APR_ARRAY_IDX(out, 1, ptm_recent_t).type,
                        "\"power\"");
    /* from_n skips the older ones; info still covers all. */
    out = recent(&fx, &info, 3);
    assert_int_equal(out->nelts, 1);
    assert_int_equal(APR_ARRAY_IDX(out, 0, ptm_recent_t).n, 3);
    assert_int_equal(info.count, 3);
    fx_close(&fx);
}

/* A small ring wraps round many times: it holds the newest events, a
 * run of consecutive ids ending with the last, and never more bytes than
 * it has. */
static void test_wrap_around(void **state)
{
    fx_t fx;
    ptm_recent_info_t info;
    apr_array_header_t *out;
    uint64_t n = 0, i, k;

    fx_open(&fx, 4096);
    for (i = 0; i < 500; i++) {
        /* Sizes vary so that the end of the region is met unevenly. */
        const char *data = apr_psprintf(fx.p, "\"%.*s\"", (int)(i * 37 % 300),
                                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");

        n = post(&fx, (int)(i % 3 == 0), "t", data, (apr_time_t)i,
                 i % 3 == 0 ? 77 : 0, NULL);
        assert_int_equal(n, i + 1);
        out = recent(&fx, &info, 0);
        assert_true(info.count >= 1);
        assert_true(info.bytes <= 4096);
        assert_int_equal(info.count, (uint64_t)out->nelts);
        assert_int_equal(info.first_n + info.count, n + 1);
        for (k = 0; k < info.count; k++) {
            ptm_recent_t *e = &APR_ARRAY_IDX(out, k, ptm_recent_t);

            assert_int_equal(e->n, info.first_n + k);
            assert_int_equal(e->ts, (apr_time_t)(e->n - 1));
        }
    }
    /* Dropped from the oldest: the ring is full, not nearly empty. */
    assert_true(info.bytes > 4096 / 2);
    fx_close(&fx);
}

/* What tells a file line held by the ring: the spans of seqs it holds,
 * per stream and run (by tie). */
static void test_spans(void **state)
{
    fx_t fx;
    ptm_recent_info_t info;
    uint64_t s1, s2, r1, r2, r3;
    ptm_recent_span_t *sp;

    fx_open(&fx, 64 * 1024);
    recent(&fx, &info, 0);
    assert_int_equal(info.spans->nelts, 0);
    assert_int_equal(info.oldest, 0);
    post(&fx, PTM_STREAM_RUN, "a", "1", 1, 11, &r1);
    post(&fx, PTM_STREAM_SITE, "a", "1", 1, 0, &s1);
    post(&fx, PTM_STREAM_RUN, "a", "1", 1, 11, &r2);
    post(&fx, PTM_STREAM_RUN, "a", "1", 1, 22, &r3);
    post(&fx, PTM_STREAM_SITE, "a", "1", 1, 0, &s2);
    assert_int_equal(s2, s1 + 1);
    recent(&fx, &info, 0);
    assert_int_equal(info.spans->nelts, 3);
    sp = &APR_ARRAY_IDX(info.spans, 0, ptm_recent_span_t);
    assert_int_equal(sp->stream, PTM_STREAM_RUN);
    assert_int_equal(sp->tie, 11);
    assert_int_equal(sp->lo, r1);
    assert_int_equal(sp->hi, r2);
    sp = &APR_ARRAY_IDX(info.spans, 1, ptm_recent_span_t);
    assert_int_equal(sp->stream, PTM_STREAM_SITE);
    assert_int_equal(sp->tie, 0);
    assert_int_equal(sp->lo, s1);
    assert_int_equal(sp->hi, s2);
    sp = &APR_ARRAY_IDX(info.spans, 2, ptm_recent_span_t);
    assert_int_equal(sp->tie, 22);
    assert_int_equal(sp->lo, r3);
    assert_int_equal(sp->hi, r3);
    fx_close(&fx);
}

/* An event too big for the ring empties it: the ring never holds newer
 * events with an older one missing. */
static void test_bigger_than_ring(void **state)
{
    fx_t fx;
    ptm_recent_info_t info;
    apr_array_header_t *out;
    char *big = apr_palloc(gpool, 3000);
    uint64_t n;

    fx_open(&fx, 1024);
    post(&fx, PTM_STREAM_SITE, "a", "1", 1, 0, NULL);
    post(&fx, PTM_STREAM_SITE, "a", "2", 1, 0, NULL);
    memset(big, 'y', 2998);
    big[0] = '"';
    big[2997] = '"';
    big[2998] = '\0';
    n = post(&fx, PTM_STREAM_SITE, "a", big, 1, 0, NULL);
    assert_int_equal(n, 3);
    out = recent(&fx, &info, 0);
    assert_int_equal(out->nelts, 0);
    assert_int_equal(info.count, 0);
    assert_int_equal(info.bytes, 0);
    assert_int_equal(info.oldest, 0);
    n = post(&fx, PTM_STREAM_SITE, "a", "4", 1, 0, NULL);
    out = recent(&fx, &info, 0);
    assert_int_equal(out->nelts, 1);
    assert_int_equal(info.first_n, n);
    fx_close(&fx);
}

/* A ring of size 0: ids still count, nothing is held. */
static void test_ring_off(void **state)
{
    fx_t fx;
    ptm_recent_info_t info;
    apr_array_header_t *out;

    fx_open(&fx, 0);
    assert_int_equal(post(&fx, PTM_STREAM_SITE, "a", "1", 1, 0, NULL), 1);
    assert_int_equal(post(&fx, PTM_STREAM_SITE, "a", "1", 1, 0, NULL), 2);
    out = recent(&fx, &info, 0);
    assert_int_equal(out->nelts, 0);
    assert_int_equal(info.size, 0);
    assert_int_equal(info.next_n, 3);
    fx_close(&fx);
}

static void die_hook(const char *where, unsigned n)
{
    if (strcmp(where, "ring:written") == 0) {
        _exit(0);
    }
}

/* A writer killed after writing its record but before the ring counted
 * it: the next locker repairs; the ring keeps what it held, the dead
 * writer's id is never given out again, and the ring goes on. */
static void test_crash_mid_append(void **state)
{
    fx_t fx;
    ptm_recent_info_t info;
    apr_array_header_t *out;
    uint64_t n, k;
    pid_t pid;
    int status, i;

    fx_open(&fx, 2048);
    for (i = 0; i < 30; i++) {
        post(&fx, PTM_STREAM_SITE, "a", "[12345678,123456789]", 1, 0, NULL);
    }
    recent(&fx, &info, 0);
    assert_int_equal(info.next_n, 31);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ptm_test_hook = die_hook;
        post(&fx, PTM_STREAM_SITE, "a", "99", 1, 0, NULL);
        _exit(9);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(H(&fx)->writing, 1);
    n = post(&fx, PTM_STREAM_SITE, "a", "1", 1, 0, NULL);
    assert_int_equal(ptm_store_repairs(fx.st), 1);
    /* 31 may have reached a reader: skipped, never reused. */
    assert_true(n >= 32);
    out = recent(&fx, &info, 0);
    assert_true(info.count >= 2);
    assert_int_equal(APR_ARRAY_IDX(out, info.count - 1, ptm_recent_t).n, n);
    /* The held ones run up to 30, one after the other, then the new one. */
    for (k = 0; k + 1 < info.count; k++) {
        assert_int_equal(APR_ARRAY_IDX(out, k, ptm_recent_t).n,
                         info.first_n + k);
    }
    assert_int_equal(APR_ARRAY_IDX(out, info.count - 2, ptm_recent_t).n, 30);
    /* The dead writer's seq (31) may be in the file, but not in the ring:
     * it falls between the spans. */
    assert_int_equal(info.spans->nelts, 2);
    assert_int_equal(APR_ARRAY_IDX(info.spans, 0, ptm_recent_span_t).hi, 30);
    assert_int_equal(APR_ARRAY_IDX(info.spans, 1, ptm_recent_span_t).lo, 32);
    /* And a later repair keeps the ring with its gap in the ids. */
    H(&fx)->writing = 1;
    n = post(&fx, PTM_STREAM_SITE, "a", "1", 1, 0, NULL);
    out = recent(&fx, &info, 0);
    assert_true(info.count >= 3);
    assert_int_equal(APR_ARRAY_IDX(out, info.count - 3, ptm_recent_t).n, 30);
    fx_close(&fx);
}

/* A record damaged in the middle: the repair cannot tell where the ones
 * after it are, so the whole ring goes (never a ring with a hole); the
 * ids go on. */
static void test_damaged_ring_dropped(void **state)
{
    fx_t fx;
    ptm_recent_info_t info;
    rec_t *r;
    uint64_t n;
    int i;

    fx_open(&fx, 8192);
    for (i = 0; i < 10; i++) {
        post(&fx, PTM_STREAM_SITE, "a", "1", 1, 0, NULL);
    }
    r = (rec_t *)((char *)fx.base + H(&fx)->ring + H(&fx)->ring_head);
    r = (rec_t *)((char *)r + r->len);          /* the second */
    ((char *)(r + 1))[3] ^= 1;
    H(&fx)->writing = 1;                        /* as after a crash */
    n = post(&fx, PTM_STREAM_SITE, "a", "1", 1, 0, NULL);
    assert_true(n > 10);
    recent(&fx, &info, 0);
    assert_int_equal(info.count, 1);
    assert_int_equal(info.first_n, n);
    fx_close(&fx);
}

/* Carried into a state whose ring is smaller (PanoptesTelemetryRecent
 * changed): the newest that fit, ids going on. */
static void test_copy_to_smaller(void **state)
{
    fx_t fx, to;
    ptm_recent_info_t info;
    apr_array_header_t *out;
    unsigned lost;
    int i;

    fx_open(&fx, 16384);
    for (i = 0; i < 40; i++) {
        post(&fx, PTM_STREAM_SITE, "a", apr_psprintf(fx.p, "%d", i), i, 0,
             NULL);
    }
    fx_open(&to, 1024);
    lost = ptm_ring_copy(to.base, H(&to), fx.base, H(&fx), sizeof(hdr_t),
                         SIZE);
    assert_int_equal(lost, 0);
    out = recent(&to, &info, 0);
    assert_true(info.count > 3 && info.count < 40);
    assert_true(info.bytes <= 1024);
    assert_int_equal(info.next_n, 41);
    assert_int_equal(APR_ARRAY_IDX(out, out->nelts - 1, ptm_recent_t).n, 40);
    assert_string_equal(APR_ARRAY_IDX(out, out->nelts - 1, ptm_recent_t).line,
                        line_of(&to, 40, 0, "a", "39"));
    assert_int_equal(post(&to, PTM_STREAM_SITE, "a", "1", 1, 0, NULL), 41);
    fx_close(&to);
    fx_close(&fx);
}

static int want_odd(void *ctx, const ptm_recent_t *ev)
{
    (*(int *)ctx)++;
    return ev->ts % 2 == 1;
}

/* `want` decides; `max` caps the copies and says it did. */
static void test_want_and_max(void **state)
{
    fx_t fx;
    ptm_recent_info_t info;
    apr_array_header_t *out;
    int i, calls = 0, truncated = 0;

    fx_open(&fx, 64 * 1024);
    for (i = 0; i < 10; i++) {
        post(&fx, PTM_STREAM_SITE, "a", "1", i, 0, NULL);
    }
    out = apr_array_make(fx.p, 4, sizeof(ptm_recent_t));
    assert_int_equal(ptm_store_recent(&info, out, &truncated, fx.st, 0, 3,
                                      want_odd, &calls, fx.p), APR_SUCCESS);
    assert_int_equal(calls, 10);
    assert_int_equal(out->nelts, 3);
    assert_true(truncated);
    assert_int_equal(APR_ARRAY_IDX(out, 0, ptm_recent_t).ts, 1);
    assert_int_equal(APR_ARRAY_IDX(out, 2, ptm_recent_t).ts, 5);
    fx_close(&fx);
}

static int want_not_mod(void *ctx, const ptm_recent_t *ev)
{
    unsigned m = *(const unsigned *)ctx;

    return m == 0 || ev->n % m != 0;
}

/* ptm_store_follow gives what ptm_store_recent gives from the same n,
 * whatever its hint: the one it left (followers that keep up, lag, take
 * a few at a time, filter), or any offset at all, across wrap-around, an
 * event bigger than the ring (emptied) and repairs (records moved). */
static void test_follow_matches_recent(void **state)
{
    enum { F = 4 };
    static const unsigned maxes[F] = { 0, 1, 3, 0 };
    static unsigned mods[F] = { 0, 0, 3, 2 };
    fx_t fx;
    ptm_ring_pos_t pos[F];
    char *big = NULL;
    int i, f, k, hinted_calls = 0;

    (void)state;
    fx_open(&fx, 4096);
    srand(7);
    for (f = 0; f < F; f++) {
        pos[f].n = 1;
        pos[f].off = PTM_RING_NOWHERE;
    }
    for (i = 0; i < 3000; i++) {
        int len = rand() % 300;
        const char *data;

        if (i % 500 == 499) {
            len = 5000;                 /* bigger than the ring */
        }
        big = apr_palloc(fx.p, (apr_size_t)len + 3);
        big[0] = '"';
        memset(big + 1, 'y', (size_t)len);
        big[len + 1] = '"';
        big[len + 2] = '\0';
        data = big;
        if (i % 700 == 350) {
            H(&fx)->writing = 1;        /* a writer died: repair */
        }
        post(&fx, (int)(i % 4 == 0), "t", data, i, 0, NULL);
        for (f = 0; f < F; f++) {
            ptm_recent_info_t ie, ig, ir;
            apr_array_header_t *e, *g, *r;
            ptm_ring_pos_t before = pos[f], junk;
            int te = 0, tg = 0, tr = 0;

            if (rand() % 3 == 0) {
                continue;               /* lags behind */
            }
            e = apr_array_make(fx.p, 8, sizeof(ptm_recent_t));
            g = apr_array_make(fx.p, 8, sizeof(ptm_recent_t));
            r = apr_array_make(fx.p, 8, sizeof(ptm_recent_t));
            assert_int_equal(ptm_store_recent(&ie, e, &te, fx.st, before.n,
                                              maxes[f], want_not_mod,
                                              &mods[f], fx.p), APR_SUCCESS);
            hinted_calls += before.off != PTM_RING_NOWHERE;
            assert_int_equal(ptm_store_follow(&ig, g, &tg, fx.st, &pos[f],
                                              maxes[f], want_not_mod,
                                              &mods[f], fx.p), APR_SUCCESS);
            junk.n = before.n;
            junk.at = before.n - (uint64_t)(rand() % 3);
            junk.off = (uint64_t)(rand() % 4200) & ~(uint64_t)(rand() % 2
                                                                ? 7 : 0);
            assert_int_equal(ptm_store_follow(&ir, r, &tr, fx.st, &junk,
                                              maxes[f], want_not_mod,
                                              &mods[f], fx.p), APR_SUCCESS);
            assert_int_equal(te, tg);
            assert_int_equal(te, tr);
            assert_int_equal(e->nelts, g->nelts);
            assert_int_equal(e->nelts, r->nelts);
            for (k = 0; k < e->nelts; k++) {
                ptm_recent_t *a = &APR_ARRAY_IDX(e, k, ptm_recent_t);
                ptm_recent_t *b = &APR_ARRAY_IDX(g, k, ptm_recent_t);
                ptm_recent_t *c = &APR_ARRAY_IDX(r, k, ptm_recent_t);

                assert_int_equal(a->n, b->n);
                assert_int_equal(a->n, c->n);
                assert_int_equal(a->line_len, b->line_len);
                assert_memory_equal(a->line, b->line, a->line_len);
            }
            assert_int_equal(ig.first_n, ie.first_n);
            assert_int_equal(ig.next_n, ie.next_n);
            assert_int_equal(ig.count, ie.count);
            assert_int_equal(ig.oldest, ie.oldest);
            assert_int_equal(junk.n, pos[f].n);
            /* Where it goes on: past everything looked at. */
            if (tg) {
                assert_true(pos[f].n > APR_ARRAY_IDX(g, g->nelts - 1,
                                                     ptm_recent_t).n);
            }
            else {
                assert_int_equal(pos[f].n,
                                 before.n > ig.next_n ? before.n : ig.next_n);
            }
        }
    }
    /* The hints were really used (not always thrown away). */
    assert_true(hinted_calls > 3000);
    fx_close(&fx);
}

static int want_none(void *ctx, const ptm_recent_t *ev)
{
    (*(uint64_t *)ctx)++;
    (void)ev;
    return 0;
}

/* One call looks at PTM_RING_LOOK_MAX records at most, whether it skips
 * them (before pos->n, no hint) or asks `want` about them, and says so;
 * the calls after it go on from there and get through the whole ring. */
static void test_follow_budget(void **state)
{
    fx_t fx;
    ptm_recent_info_t info;
    apr_array_header_t *out;
    ptm_ring_pos_t pos;
    uint64_t asked = 0, last = 0, calls = 0, held, i;
    int truncated;

    (void)state;
    fx_open(&fx, 3 * 1024 * 1024);
    for (i = 0; i < 3 * PTM_RING_LOOK_MAX; i++) {
        last = post(&fx, PTM_STREAM_SITE, "a", "1", (apr_time_t)i, 0, NULL);
    }
    held = H(&fx)->ring_count;
    assert_true(held > 2 * PTM_RING_LOOK_MAX);
    /* A filter that takes nothing: every record asked, a bounded number
     * per call. */
    pos.n = 0;
    pos.off = PTM_RING_NOWHERE;
    do {
        uint64_t before = asked;

        out = apr_array_make(fx.p, 4, sizeof(ptm_recent_t));
        assert_int_equal(ptm_store_follow(&info, out, &truncated, fx.st, &pos,
                                          0, want_none, &asked, fx.p),
                         APR_SUCCESS);
        assert_true(asked - before <= PTM_RING_LOOK_MAX);
        assert_int_equal(out->nelts, 0);
        calls++;
    } while (truncated && calls < 100);
    assert_false(truncated);
    assert_int_equal(asked, held);
    assert_int_equal(calls, (held + PTM_RING_LOOK_MAX - 1) / PTM_RING_LOOK_MAX);
    assert_int_equal(pos.n, last + 1);
    /* From the newest, no hint: the skipping is bounded too, and the
     * newest comes after a few calls, not never. */
    pos.n = last;
    pos.off = PTM_RING_NOWHERE;
    calls = 0;
    do {
        out = apr_array_make(fx.p, 4, sizeof(ptm_recent_t));
        assert_int_equal(ptm_store_follow(&info, out, &truncated, fx.st, &pos,
                                          0, NULL, NULL, fx.p), APR_SUCCESS);
        calls++;
    } while (truncated && calls < 100);
    assert_int_equal(calls, (held + PTM_RING_LOOK_MAX - 1) / PTM_RING_LOOK_MAX);
    assert_int_equal(out->nelts, 1);
    assert_int_equal(APR_ARRAY_IDX(out, 0, ptm_recent_t).n, last);
    fx_close(&fx);
}

typedef struct {
    apr_time_t t0, t1;
    unsigned mod;
    uint64_t asked;
} win_t;

static int want_window(void *ctx, const ptm_recent_t *ev)
{
    win_t *w = ctx;

    w->asked++;
    return ev->ts != PTM_TS_NONE && ev->ts >= w->t0 && ev->ts < w->t1
           && (w->mod == 0 || ev->n % w->mod != 0);
}

static void assert_same_recent(const ptm_recent_info_t *ia,
                               const apr_array_header_t *a, int ta,
                               const ptm_recent_info_t *ib,
                               const apr_array_header_t *b, int tb)
{
    int k;

    assert_int_equal(ta, tb);
    assert_int_equal(a->nelts, b->nelts);
    for (k = 0; k < a->nelts; k++) {
        const ptm_recent_t *x = &APR_ARRAY_IDX(a, k, ptm_recent_t);
        const ptm_recent_t *y = &APR_ARRAY_IDX(b, k, ptm_recent_t);

        assert_int_equal(x->n, y->n);
        assert_int_equal(x->ts, y->ts);
        assert_int_equal(x->seq, y->seq);
        assert_int_equal(x->line_len, y->line_len);
        assert_memory_equal(x->line, y->line, x->line_len);
        assert_int_equal(x->type_len, y->type_len);
        assert_memory_equal(x->type, y->type, x->type_len);
    }
    assert_int_equal(ia->first_n, ib->first_n);
    assert_int_equal(ia->next_n, ib->next_n);
    assert_int_equal(ia->count, ib->count);
    assert_int_equal(ia->oldest, ib->oldest);
    assert_int_equal(ia->spans->nelts, ib->spans->nelts);
    for (k = 0; k < ia->spans->nelts; k++) {
        const ptm_recent_span_t *x = &APR_ARRAY_IDX(ia->spans, k,
                                                    ptm_recent_span_t);
        const ptm_recent_span_t *y = &APR_ARRAY_IDX(ib->spans, k,
                                                    ptm_recent_span_t);

        assert_int_equal(x->stream, y->stream);
        assert_int_equal(x->tie, y->tie);
        assert_int_equal(x->lo, y->lo);
        assert_int_equal(x->hi, y->hi);
    }
}

/* ptm_store_recent_window gives what ptm_store_recent gives with the same
 * filter, for any window, as the ring fills, wraps round, is emptied by an
 * event bigger than it, is laid out anew by repairs, and holds events of
 * both streams and several runs, with ts mostly rising, some far off and
 * some missing. */
static void test_window_matches_recent(void **state)
{
    fx_t fx;
    char *data;
    int i, q;
    uint64_t asked_all = 0, asked_win = 0;

    (void)state;
    fx_open(&fx, 96 * 1024);
    srand(11);
    for (i = 0; i < 6000; i++) {
        int len = rand() % 200, stream = rand() % 5 == 0;
        apr_time_t ts = (apr_time_t)i * 1000 + rand() % 5000;

        if (i % 1500 == 1499) {
            len = 200 * 1024;           /* bigger than the ring */
        }
        if (rand() % 1000 == 0) {
            ts = (apr_time_t)(rand() % 6000) * 1000;    /* far off */
        }
        if (rand() % 97 == 0) {
            ts = PTM_TS_NONE;
        }
        data = apr_palloc(fx.p, (apr_size_t)len + 3);
        data[0] = '"';
        memset(data + 1, 'z', (size_t)len);
        data[len + 1] = '"';
        data[len + 2] = '\0';
        if (i % 900 == 450) {
            H(&fx)->writing = 1;        /* a writer died: repair */
        }
        post(&fx, stream, "w", data, ts, stream ? (uint32_t)(i / 700) : 0,
             NULL);
        for (q = 0; q < (i % 7 == 0 ? 3 : 0); q++) {
            ptm_recent_info_t ia, ib;
            apr_array_header_t *a, *b;
            int ta = 0, tb = 0;
            unsigned max = rand() % 4 == 0 ? (unsigned)(rand() % 40) : 0;
            win_t w;
            apr_time_t lo = (apr_time_t)(rand() % (i + 1)) * 1000;

            w.t0 = lo;
            w.t1 = lo + (apr_time_t)(rand() % 400 + 1) * 1000;
            w.mod = (unsigned)(rand() % 3);
            w.asked = 0;
            a = apr_array_make(fx.p, 8, sizeof(ptm_recent_t));
            b = apr_array_make(fx.p, 8, sizeof(ptm_recent_t));
            assert_int_equal(ptm_store_recent(&ia, a, &ta, fx.st, 0, max,
                                              want_window, &w, fx.p),
                             APR_SUCCESS);
            asked_all += w.asked;
            w.asked = 0;
            assert_int_equal(ptm_store_recent_window(&ib, b, &tb, fx.st,
                                                     w.t0, w.t1, max,
                                                     want_window, &w, fx.p),
                             APR_SUCCESS);
            asked_win += w.asked;
            assert_same_recent(&ia, a, ta, &ib, b, tb);
        }
    }
    /* The window's walk really looked at fewer records (a block with a
     * far-off ts is looked at for every window). */
    assert_true(asked_win * 2 < asked_all);
    fx_close(&fx);
}

/* What the window walk gives for w's window, all of it. */
static apr_array_header_t *window(fx_t *fx, ptm_recent_info_t *info,
                                  win_t *w)
{
    apr_array_header_t *out = apr_array_make(fx->p, 8, sizeof(ptm_recent_t));

    assert_int_equal(ptm_store_recent_window(info, out, NULL, fx->st, w->t0,
                                             w->t1, 0, want_window, w,
                                             fx->p), APR_SUCCESS);
    return out;
}

/* A narrow window of a full ring asks about the records of the blocks it
 * meets (and the first block's), not the whole ring; records moved by a
 * repair are found again. */
static void test_window_walk_follows_window(void **state)
{
    fx_t fx;
    ptm_recent_info_t info;
    apr_array_header_t *out;
    win_t w;
    uint64_t held, i;

    (void)state;
    fx_open(&fx, 3 * 1024 * 1024);
    for (i = 0; i < 20000; i++) {
        post(&fx, PTM_STREAM_SITE, "a", "1", (apr_time_t)i * 10, 0, NULL);
    }
    held = H(&fx)->ring_count;
    assert_int_equal(held, 20000);
    memset(&w, 0, sizeof(w));
    w.t0 = 100000;                      /* events 10000..10099 */
    w.t1 = 101000;
    out = window(&fx, &info, &w);
    assert_int_equal(out->nelts, 100);
    assert_int_equal(APR_ARRAY_IDX(out, 0, ptm_recent_t).n, 10001);
    assert_true(w.asked <= 100 + 3 * 128);
    assert_int_equal(info.spans->nelts, 1);
    assert_int_equal(APR_ARRAY_IDX(info.spans, 0, ptm_recent_span_t).lo, 1);
    assert_int_equal(APR_ARRAY_IDX(info.spans, 0, ptm_recent_span_t).hi,
                     20000);
    /* Windows of one event each, at every block's edges. */
    for (i = 0; i < 2000; i++) {
        w.t0 = (apr_time_t)i * 10;
        w.t1 = w.t0 + 10;
        out = window(&fx, &info, &w);
        assert_int_equal(out->nelts, 1);
        assert_int_equal(APR_ARRAY_IDX(out, 0, ptm_recent_t).n, i + 1);
    }
    w.t0 = 100000;
    w.t1 = 101000;
    /* A repair lays the ring out anew (the summary's offsets are stale);
     * the answer is the same. */
    H(&fx)->writing = 1;
    post(&fx, PTM_STREAM_SITE, "a", "1", 5, 0, NULL);
    w.asked = 0;
    out = window(&fx, &info, &w);
    assert_int_equal(out->nelts, 100);
    assert_int_equal(APR_ARRAY_IDX(out, 99, ptm_recent_t).n, 10100);
    fx_close(&fx);
}


/* The second record of the ring (from the oldest). */
static rec_t *second(fx_t *fx)
{
    rec_t *r = (rec_t *)((char *)fx->base + H(fx)->ring + H(fx)->ring_head);

    return (rec_t *)((char *)r + r->len);
}

/* A writer dies (its writing mark left set) and the next event repairs
 * the state: the ring held a bad record, so it is dropped whole and only
 * that next event is held. */
static void repair_drops_ring(fx_t *fx)
{
    ptm_recent_info_t info;
    apr_array_header_t *out;
    uint64_t n;

    H(fx)->writing = 1;
    n = post(fx, PTM_STREAM_SITE, "a", "3", 1, 0, NULL);
    assert_int_equal(ptm_store_repairs(fx->st), 1);
    out = recent(fx, &info, 0);
    assert_int_equal(info.count, 1);
    assert_int_equal(APR_ARRAY_IDX(out, 0, ptm_recent_t).n, n);
}

/* A repair keeps no record whose line is not well-formed JSON (GET
 * /events serves ring lines as they are): a ring holding one is dropped,
 * as one with any other bad record. */
static void test_repair_checks_lines(void **state)
{
    fx_t fx;
    ptm_recent_info_t info;

    fx_open(&fx, 4096);
    post(&fx, PTM_STREAM_SITE, "a", "1", 1, 0, NULL);
    post(&fx, PTM_STREAM_SITE, "a", "{\"x\":[1,}", 1, 0, NULL);
    post(&fx, PTM_STREAM_SITE, "a", "2", 1, 0, NULL);
    recent(&fx, &info, 0);
    assert_int_equal(info.count, 3);
    repair_drops_ring(&fx);
    fx_close(&fx);
}

/* Nor one whose line is well-formed but not the envelope its record
 * tells: GET /events selects a ring line by its record's numbers and
 * serves it as it is, so a state holding `"xx...x"`, or a line of another
 * seq, stream or type than its record (its check made right, as a planted
 * state would), would put it among the events; nor one with a raw \r or
 * \n in it (JSON whitespace, but an NDJSON answer or an SSE data line
 * would be cut there). */
static void test_repair_checks_envelope(void **state)
{
    int how;

    for (how = 0; how < 6; how++) {
        fx_t fx;
        ptm_recent_info_t info;
        rec_t *r;
        char *line;

        fx_open(&fx, 4096);
        post(&fx, PTM_STREAM_SITE, "a", "1", 1, 0, NULL);
        post(&fx, PTM_STREAM_SITE, "a", "12", 1, 0, NULL);
        r = second(&fx);
        line = (char *)(r + 1) + r->type_len;
        assert_memory_equal(line, "{\"seq\":2,", 9);
        if (how == 0) {
            line[7] = '7';                      /* seq 7 */
        }
        else if (how == 1) {
            r->flags ^= 1u;                     /* the record says run */
        }
        else if (how == 2) {
            ((char *)(r + 1))[1] = 'b';         /* the record says "b" */
        }
        else if (how == 3) {
            memset(line, 'x', r->line_len);     /* a string */
            line[0] = line[r->line_len - 1] = '"';
        }
        else {
            char *d = memmem(line, r->line_len, "\"data\":12,", 10);

            assert_non_null(d);                 /* "data":<CR>2 */
            d[7] = how == 4 ? '\r' : '\n';
        }
        r->check = ptm_ring_check(r);   /* as a planted state would */
        recent(&fx, &info, 0);
        assert_int_equal(info.count, 2);        /* held as it is, till ... */
        repair_drops_ring(&fx);                 /* ... a repair */
        fx_close(&fx);
    }
}

/* A line longer than a record's 32 bits can tell comes with its length
 * capped (ptm_store_event; a body of 2 GiB, were PanoptesTelemetryRecent
 * and PanoptesTelemetryMaxBody set that high): it is too big to hold, and
 * none of it is copied past the record's end. */
static void test_capped_line_not_copied(void **state)
{
    fx_t fx;
    ptm_recent_info_t info;
    rec_t in;
    struct iovec iov;
    char line[512];

    fx_open(&fx, 4096);
    post(&fx, PTM_STREAM_SITE, "a", "1", 1, 0, NULL);
    memset(line, 'x', sizeof(line));
    memset(&in, 0, sizeof(in));
    in.n = H(&fx)->next_n;
    in.seq = 9;
    in.type_len = 3;
    in.line_len = 16;                   /* capped: the line is longer */
    iov.iov_base = line;
    iov.iov_len = sizeof(line);
    assert_int_equal(ptm_store_lock(fx.st), APR_SUCCESS);
    ptm_ring_append_locked(fx.st, &in, "\"a\"", &iov, 1);
    ptm_store_unlock(fx.st);
    recent(&fx, &info, 0);
    assert_int_equal(info.count, 0);
    assert_int_equal(H(&fx)->ring_first_n, in.n + 1);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_and_lines),
        cmocka_unit_test(test_wrap_around),
        cmocka_unit_test(test_spans),
        cmocka_unit_test(test_bigger_than_ring),
        cmocka_unit_test(test_ring_off),
        cmocka_unit_test(test_crash_mid_append),
        cmocka_unit_test(test_repair_checks_lines),
        cmocka_unit_test(test_repair_checks_envelope),
        cmocka_unit_test(test_capped_line_not_copied),
        cmocka_unit_test(test_damaged_ring_dropped),
        cmocka_unit_test(test_copy_to_smaller),
        cmocka_unit_test(test_want_and_max),
        cmocka_unit_test(test_follow_matches_recent),
        cmocka_unit_test(test_follow_budget),
        cmocka_unit_test(test_window_matches_recent),
        cmocka_unit_test(test_window_walk_follows_window),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

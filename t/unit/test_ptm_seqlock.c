/* Unit tests for ptm_seqlock and the reads of the view without the lock
 * (ptm_view.c, ptm_store_run.c; issue 14, 2: readers never wait for
 * writers):
 *
 *  - the generation word and the copy that never reads a byte outside its
 *    range (the source ends at a guard page);
 *  - a torture test: a fork()ed writer changes the view without pause
 *    (site events, run starts, run events, run stops, compaction of a
 *    small arena, now and then a pause in the middle of a value's copy)
 *    while this process reads /current, /current/{type}, /run and the
 *    server-status strings and checks that every answer is one snapshot:
 *    each envelope carries a checksum of itself, and the writer's schedule
 *    is known, so the whole /current answer must be exactly the view after
 *    the number of events its next_n says (never half of one event, never
 *    a type list of two moments); and the same torture with the reader
 *    broken on purpose (it keeps copies without checking the generation)
 *    must find torn ones, so the test can fail;
 *  - the number of tries before the lock is bounded (a generation left
 *    odd; a writer stuck in the middle of its change);
 *  - a state crafted or damaged under the readers (offsets, lengths,
 *    counts, tables out of bounds): every reader answers or says
 *    PTM_STORE_DAMAGED, never reads outside the segment, which sits
 *    between two PROT_NONE pages. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include <apr_global_mutex.h>
#include "ptm_hash.h"
#include "ptm_seqlock.h"
#include "ptm_store_int.h"
#include "ptm_test_hook.h"

#define TS "2026-03-17T20:15:00.000Z"
#define TS_PART ",\"ts\":\"" TS "\""

/* ---- fixture: a segment between guard pages ------------------------------ */

typedef struct {
    apr_pool_t *p;
    char *dir;
    const char *lock_path;
    apr_global_mutex_t *mx;
    char *map;              /* guard page | segment | guard page */
    size_t map_len;
    char *base;
    apr_size_t size;
    ptm_store_t *st;
} fx_t;

static fx_t *open_fx;

/* Shared and anonymous (inherited across fork(), like httpd's), `size`
 * bytes between two pages nobody may touch: a read past either end of
 * the segment is a SIGSEGV. */
static void fx_open(fx_t *fx, apr_size_t size, apr_size_t ring,
                    int with_mutex)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    memset(fx, 0, sizeof(*fx));
    open_fx = fx;
    assert_int_equal(size % page, 0);
    assert_int_equal(apr_pool_create(&fx->p, gpool), APR_SUCCESS);
    fx->dir = ptm_unit_tmpdir(fx->p, "ptm_seqlock_test");
    fx->lock_path = apr_pstrcat(fx->p, fx->dir, "/lock", NULL);
    fx->map_len = size + 2 * page;
    fx->map = mmap(NULL, fx->map_len, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    assert_true(fx->map != MAP_FAILED);
    assert_int_equal(mprotect(fx->map + page, size, PROT_READ | PROT_WRITE),
                     0);
    fx->base = fx->map + page;
    fx->size = size;
    if (with_mutex) {
        assert_int_equal(apr_global_mutex_create(&fx->mx, fx->lock_path,
                                                 APR_LOCK_DEFAULT, fx->p),
                         APR_SUCCESS);
    }
    ptm_store_format(fx->base, size, ring);
    fx->st = ptm_store_attach(fx->base, fx->mx, fx->p);
}

static void fx_close(fx_t *fx)
{
    open_fx = NULL;
    ptm_test_view_unchecked = 0;
    ptm_test_hook = NULL;
    if (fx->mx) {
        apr_global_mutex_destroy(fx->mx);
    }
    munmap(fx->map, fx->map_len);
    rm_rf(fx->dir);
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

static hdr_t *H(fx_t *fx)
{
    return (hdr_t *)(void *)fx->base;
}

/* ---- events of known content ---------------------------------------------- */

static uint64_t gen_of(ptm_store_t *st, apr_pool_t *p)
{
    ptm_store_run_t r;

    return ptm_store_run_peek(&r, st, p) == APR_SUCCESS ? r.gen : 0;
}

static apr_status_t post(ptm_store_t *st, apr_pool_t *p, int stream,
                         const char *type, const char *data)
{
    ptm_store_event_t ev;
    uint64_t seq;

    memset(&ev, 0, sizeof(ev));
    ev.run_gen = gen_of(st, p);
    ev.stream = stream;
    ev.key = apr_psprintf(p, "\"%s\"", type);
    ev.key_len = strlen(ev.key);
    ev.ts_part = TS_PART;
    ev.ts_len = strlen(TS_PART);
    ev.body_part = apr_psprintf(p, ",\"type\":\"%s\",\"data\":%s,"
                                "\"meta\":{}}", type, data);
    ev.body_len = strlen(ev.body_part);
    ev.make_current = 1;
    ev.fd = -1;                 /* no file: the view is what is tested */
    ev.ts_us = PTM_TS_NONE;
    ev.stored = 1;
    return ptm_store_event(st, &ev, &seq);
}

static apr_status_t run_start(ptm_store_t *st, const char *obj,
                              const char *id, const char *dir)
{
    return ptm_store_run_start(st, obj, strlen(obj), id, strlen(id), dir,
                               NULL, NULL);
}

static const char *current(fx_t *fx, apr_status_t want)
{
    ptm_buf_t b;

    ptm_buf_init(&b, fx->p, 64);
    assert_int_equal(ptm_store_current(fx->st, &b), want);
    ptm_buf_putc(&b, '\0');
    return b.data;
}

/* ---- the sequence lock itself ---------------------------------------------- */

static void test_generation(void **state)
{
    uint64_t g = 10, r;

    r = ptm_seq_read_begin(&g);
    assert_true(ptm_seq_read_valid(&g, r));
    ptm_seq_write_begin(&g);
    assert_int_equal(g, 11);
    assert_false(ptm_seq_read_valid(&g, r));
    r = ptm_seq_read_begin(&g);
    assert_false(ptm_seq_read_valid(&g, r));        /* odd: mid-change */
    ptm_seq_write_end(&g);
    assert_int_equal(g, 12);
    assert_false(ptm_seq_read_valid(&g, r));
    /* A writer that died left it odd: the next change still makes a new
     * odd value, and ends on a new even one. */
    g = 13;
    ptm_seq_write_begin(&g);
    assert_int_equal(g, 15);
    ptm_seq_write_end(&g);
    assert_int_equal(g, 16);
    /* Round the top. */
    g = UINT64_MAX - 1;
    ptm_seq_write_begin(&g);
    assert_int_equal(g, UINT64_MAX);
    ptm_seq_write_end(&g);
    assert_int_equal(g, 0);
}

/* Every start and length, the source ending right at a guard page: the
 * bytes are copied and nothing past them is read. */
static void test_copy_bounds(void **state)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *end, dst[80];
    size_t off, n, i;

    assert_true(m != MAP_FAILED);
    assert_int_equal(mprotect(m + page, page, PROT_NONE), 0);
    end = m + page;
    for (i = 0; i < page; i++) {
        m[i] = (char)(i * 7 + 1);
    }
    for (off = 0; off < 16; off++) {
        for (n = 0; n + off <= 64; n++) {
            const char *src = end - off - n;

            memset(dst, 0, sizeof(dst));
            ptm_seq_copy(dst + 3, src, n);      /* unaligned destination */
            assert_memory_equal(dst + 3, src, n);
            assert_int_equal(dst[3 + n], 0);
        }
    }
    munmap(m, 2 * page);
}

/* ---- the torture: a writer that never stops ------------------------------- */

/* The writer's schedule, one cycle after another: S site events (types
 * t0..t5 in turn), a run started, R run events (types t0 u0 u1 u2 in turn:
 * t0's run value hides its site value), the run stopped.  Event k (k from
 * 1) gets the id k: from the schedule alone, the view after K events is
 * known. */
#define NT 6
#define S 13
#define R 9
#define E (S + R)
static const char *const RT[4] = { "t0", "u0", "u1", "u2" };

typedef struct {
    int run;
    uint64_t idx;           /* site event number, or run event in its run */
    unsigned m;             /* run number (from 1), 0 for site */
    char type[8];
} sched_t;

static void sched(uint64_t k, sched_t *x)
{
    uint64_t c = (k - 1) / E, r = (k - 1) % E;

    if (r < S) {
        x->run = 0;
        x->idx = c * S + r;
        x->m = 0;
        snprintf(x->type, sizeof(x->type), "t%u", (unsigned)(x->idx % NT));
    }
    else {
        x->run = 1;
        x->idx = r - S;
        x->m = (unsigned)c + 1;
        snprintf(x->type, sizeof(x->type), "%s", RT[x->idx % 4]);
    }
}

static uint64_t site_k(uint64_t i)
{
    return (i / S) * E + i % S + 1;
}

static uint64_t run_k(unsigned m, uint64_t j)
{
    return (uint64_t)(m - 1) * E + S + j + 1;
}

/* 1..300 bytes of padding, a different size for every event, so that the
 * arena's blobs are all sizes and it is compacted often. */
static size_t pad_len(uint64_t k)
{
    return 1 + (size_t)((k * 7919) % 300);
}

/* The event's data: a JSON string "k<k>i<idx>m<m>p<pad>C<fnv32>", the
 * checksum over everything before it. */
static char *data_of(uint64_t k, const sched_t *x, apr_pool_t *p)
{
    size_t n = pad_len(k);
    char *pad = apr_palloc(p, n + 1);
    char *body;

    memset(pad, 'a' + (int)(k % 26), n);
    pad[n] = '\0';
    body = apr_psprintf(p, "k%" PRIu64 "i%" PRIu64 "m%up%s", k, x->idx,
                        x->m, pad);
    return apr_psprintf(p, "\"%sC%08x\"", body,
                        ptm_fnv32(PTM_FNV32_START, body, strlen(body)));
}

/* The run object of run m: its id and a checksummed padding. */
static char *run_obj(unsigned m, apr_pool_t *p)
{
    size_t n = pad_len(m * 31);
    char *pad = apr_palloc(p, n + 1), *body;

    memset(pad, 'a' + (int)(m % 26), n);
    pad[n] = '\0';
    body = apr_psprintf(p, "{\"run_id\":\"m%u\",\"p\":\"%s\"", m, pad);
    return apr_psprintf(p, "%s,\"c\":\"%08x\"}", body,
                        ptm_fnv32(PTM_FNV32_START, body, strlen(body)));
}

/* One parsed envelope. */
typedef struct {
    char type[8];
    uint64_t seq, k, idx;
    unsigned m;
} ent_t;

/* Parse {"seq":S,"ts":TS,"type":T,"data":"k..i..m..p..C..","meta":{}}
 * and check it is one event whole: its checksum, its padding, its place
 * in the schedule.  Returns NULL or what is wrong. */
static const char *parse_env(const char *e, size_t n, ent_t *x,
                             apr_pool_t *p)
{
    char *s = apr_pstrmemdup(p, e, n);
    char *pad = apr_palloc(p, n + 1);
    unsigned chk;
    int used = -1;
    size_t plen, i;
    const char *body, *c;
    sched_t want;

    if (sscanf(s, "{\"seq\":%" SCNu64 ",\"ts\":\"" TS "\",\"type\":\"%7[a-z0-9]"
               "\",\"data\":\"k%" SCNu64 "i%" SCNu64 "m%up%[a-z]C%8x\","
               "\"meta\":{}}%n", &x->seq, x->type, &x->k, &x->idx, &x->m, pad,
               &chk, &used) != 7 || used != (int)n) {
        return apr_psprintf(p, "not an envelope of ours: %s", s);
    }
    body = strstr(s, "\"data\":\"") + 8;
    c = strrchr(s, 'C');
    if (ptm_fnv32(PTM_FNV32_START, body, (size_t)(c - body)) != chk) {
        return apr_psprintf(p, "checksum: %s", s);
    }
    plen = strlen(pad);
    if (x->k == 0 || plen != pad_len(x->k)) {
        return apr_psprintf(p, "padding length: %s", s);
    }
    for (i = 0; i < plen; i++) {
        if (pad[i] != 'a' + (int)(x->k % 26)) {
            return apr_psprintf(p, "padding: %s", s);
        }
    }
    sched(x->k, &want);
    if (want.idx != x->idx || want.m != x->m || strcmp(want.type, x->type)) {
        return apr_psprintf(p, "not event %" PRIu64 " of the schedule: %s",
                            x->k, s);
    }
    return NULL;
}

/* The view after K events, in /current's order, with or without the run
 * values (`with_run`); returns how many entries, in `want`. */
static int expect(uint64_t K, int with_run, ent_t *want)
{
    uint64_t cycles = K / E, rem = K % E, ns, jd = 0, j;
    unsigned m = 0, x, y;
    uint64_t runk[4] = { 0, 0, 0, 0 };
    int n = 0;

    ns = cycles * S + (rem < S ? rem : S);
    if (with_run) {
        if (rem > S) {
            m = (unsigned)cycles + 1;
            jd = rem - S;
        }
        else if (rem == 0 && cycles > 0) {
            m = (unsigned)cycles;       /* its last event; not stopped yet */
            jd = R;
        }
        for (y = 0; y < 4; y++) {
            if (jd > y) {
                j = y + 4 * ((jd - 1 - y) / 4);
                runk[y] = run_k(m, j);
            }
        }
    }
    for (x = 0; x < NT; x++) {
        if (ns > x) {
            uint64_t i = x + NT * ((ns - 1 - x) / NT);

            want[n].k = x == 0 && runk[0] ? runk[0] : site_k(i);
            snprintf(want[n].type, sizeof(want[n].type), "t%u", x);
            n++;
        }
    }
    for (y = 1; y < 4; y++) {
        if (runk[y]) {
            want[n].k = runk[y];
            snprintf(want[n].type, sizeof(want[n].type), "%s", RT[y]);
            n++;
        }
    }
    return n;
}

/* Check one /current answer taken with `next_n`: returns NULL or why it
 * is not the view after next_n - 1 events. */
static const char *check_snapshot(const char *s, size_t len, uint64_t next_n,
                                  apr_pool_t *p)
{
    ent_t got[NT + 4], want[NT + 4];
    const char *q = s, *end = s + len, *why;
    int n = 0, nw, i, with_run;

    if (len < 14 || memcmp(q, "{\"current\":{", 12) != 0
        || memcmp(end - 2, "}}", 2) != 0) {
        return apr_psprintf(p, "not {\"current\":{...}}: %.*s", (int)len, s);
    }
    q += 12;
    end -= 2;
    while (q < end) {
        const char *k0, *k1, *e1;

        if (n == NT + 4 || *q != '"') {
            return apr_psprintf(p, "entry %d: %.*s", n, (int)len, s);
        }
        k0 = q + 1;
        if (!(k1 = memchr(k0, '"', (size_t)(end - k0))) || k1[1] != ':') {
            return apr_psprintf(p, "key of entry %d: %.*s", n, (int)len, s);
        }
        q = k1 + 2;
        e1 = strstr(q, ",\"meta\":{}}");
        if (!e1 || e1 + 11 > end) {
            return apr_psprintf(p, "envelope of entry %d: %.*s", n, (int)len,
                                s);
        }
        e1 += 11;
        if ((why = parse_env(q, (size_t)(e1 - q), &got[n], p)) != NULL) {
            return why;
        }
        if ((size_t)(k1 - k0) != strlen(got[n].type)
            || memcmp(k0, got[n].type, (size_t)(k1 - k0)) != 0) {
            return apr_psprintf(p, "key %.*s holds type %s", (int)(k1 - k0),
                                k0, got[n].type);
        }
        n++;
        q = e1;
        if (q < end && *q++ != ',') {
            return apr_psprintf(p, "separator: %.*s", (int)len, s);
        }
    }
    /* The whole answer is the view after next_n - 1 events (after the
     * last event of a run it may be the view after its stop too). */
    for (with_run = 1; with_run >= ((next_n - 1) % E == 0 ? 0 : 1);
         with_run--) {
        nw = expect(next_n - 1, with_run, want);
        if (nw != n) {
            continue;
        }
        for (i = 0; i < n; i++) {
            if (strcmp(want[i].type, got[i].type) || want[i].k != got[i].k) {
                break;
            }
        }
        if (i == n) {
            return NULL;
        }
    }
    return apr_psprintf(p, "not the view after %" PRIu64 " events: %.*s",
                        next_n - 1, (int)len, s);
}

/* A run object of ours, whole: the one run_obj makes for its number. */
static const char *check_run_obj(const char *o, size_t n, apr_pool_t *p)
{
    unsigned m;
    char *s = apr_pstrmemdup(p, o, n);

    if (sscanf(s, "{\"run_id\":\"m%u\",", &m) != 1 || m == 0) {
        return apr_psprintf(p, "run object: %s", s);
    }
    if (strcmp(s, run_obj(m, p)) != 0) {
        return apr_psprintf(p, "torn run object: %s", s);
    }
    return NULL;
}

/* The writer: pauses now and then in the middle of a value's copy, with
 * the generation odd and the lock held (a writer preempted there), and
 * just after a change (where anything that belongs to it but was left
 * out of it would show). */
static unsigned copies, dones;

static void writer_hook(const char *where, unsigned n)
{
    if ((strcmp(where, "view:copy") == 0 && ++copies % 32 == 0)
        || (strcmp(where, "view:done") == 0 && ++dones % 32 == 16)) {
        usleep(500);
    }
}

static void writer(fx_t *fx, int ms)
{
    apr_pool_t *p, *ep;
    apr_global_mutex_t *mx = fx->mx;
    ptm_store_t *st;
    struct timespec t0, t;
    uint64_t k = 0;
    sched_t x;

    CHILD_CHECK(apr_pool_create(&p, NULL) == APR_SUCCESS, 2);
    CHILD_CHECK(apr_global_mutex_child_init(&mx, fx->lock_path, p)
                == APR_SUCCESS, 3);
    CHILD_CHECK(apr_pool_create(&ep, p) == APR_SUCCESS, 2);
    st = ptm_store_attach(fx->base, mx, p);
    ptm_test_hook = writer_hook;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        int i;

        /* One cycle at a time, so that it always ends with a stop. */
        for (i = 0; i < E; i++) {
            sched(++k, &x);
            if (x.run && x.idx == 0) {
                CHILD_CHECK(run_start(st, run_obj(x.m, ep),
                                      apr_psprintf(ep, "m%u", x.m),
                                      apr_psprintf(ep, "/srv/t/m%u", x.m))
                            == APR_SUCCESS, 4);
            }
            CHILD_CHECK(post(st, ep, x.run ? PTM_STREAM_RUN : PTM_STREAM_SITE,
                             x.type, data_of(k, &x, ep)) == APR_SUCCESS, 5);
            if (x.run && x.idx == R - 1) {
                ptm_buf_t b;

                ptm_buf_init(&b, ep, 256);
                CHILD_CHECK(ptm_store_run_stop(st, &b) == APR_SUCCESS, 6);
            }
            apr_pool_clear(ep);
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000
             + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
    _exit(0);
}

typedef struct {
    uint64_t reads, runs_seen, ones, run_gets, stats;
    uint64_t bad;
    const char *first_bad;
} tally_t;

static void bad(tally_t *t, const char *why)
{
    if (!t->bad++) {
        t->first_bad = why;
    }
}

/* Read everything a reader can, checking each answer, until the writer
 * `pid` is done (or, with `until_bad`, until an answer is wrong: the
 * writer is then killed); returns its exit status. */
static int read_while(fx_t *fx, pid_t pid, tally_t *t, int until_bad)
{
    apr_pool_t *rp;
    int status = -1;
    unsigned i = 0;

    assert_int_equal(apr_pool_create(&rp, fx->p), APR_SUCCESS);
    for (;;) {
        ptm_buf_t b;
        uint64_t next;
        apr_status_t rv;
        const char *why;

        if (waitpid(pid, &status, WNOHANG) == pid) {
            break;
        }
        if (until_bad && t->bad) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        ptm_buf_init(&b, rp, 4096);
        rv = ptm_store_current_at(fx->st, &b, &next);
        t->reads++;
        if (rv != APR_SUCCESS) {
            bad(t, apr_psprintf(fx->p, "current: status %d", rv));
        }
        else if ((why = check_snapshot(b.data, b.len, next, rp)) != NULL) {
            bad(t, apr_pstrdup(fx->p, why));
        }
        else if (strstr(b.data, "\"u0\"")) {
            t->runs_seen++;         /* a run-only type: a run's values */
        }
        if (i % 2 == 0) {
            const char *type = i % 8 < 4 ? RT[(i / 2) % 4] : "t3";
            const char *key = apr_psprintf(rp, "\"%s\"", type);
            ent_t x;

            ptm_buf_init(&b, rp, 512);
            rv = ptm_store_current_one(fx->st, key, strlen(key), &b);
            t->ones++;
            if (rv == APR_SUCCESS) {
                if ((why = parse_env(b.data, b.len, &x, rp)) != NULL
                    || strcmp(x.type, type) != 0) {
                    bad(t, apr_psprintf(fx->p, "current/%s: %s", type,
                                        why ? why : "another type"));
                }
            }
            else if (rv != PTM_STORE_NOTFOUND) {
                bad(t, apr_psprintf(fx->p, "current/%s: status %d", type,
                                    rv));
            }
        }
        if (i % 4 == 1) {
            ptm_buf_init(&b, rp, 512);
            rv = ptm_store_run_get(fx->st, &b);
            t->run_gets++;
            if (rv == APR_SUCCESS) {
                if ((why = check_run_obj(b.data, b.len, rp)) != NULL) {
                    bad(t, apr_pstrdup(fx->p, why));
                }
            }
            else if (rv != PTM_STORE_NORUN) {
                bad(t, apr_psprintf(fx->p, "run: status %d", rv));
            }
        }
        if (i % 16 == 3) {
            ptm_store_stats_t s;

            rv = ptm_store_stats(fx->st, &s, rp);
            t->stats++;
            if (rv != APR_SUCCESS) {
                bad(t, apr_psprintf(fx->p, "stats: status %d", rv));
            }
            else if (s.run_obj
                     && ((why = check_run_obj(s.run_obj, strlen(s.run_obj),
                                              rp)) != NULL
                         || strncmp(s.run_obj + 11, s.run_id,
                                    strlen(s.run_id)) != 0)) {
                bad(t, apr_psprintf(fx->p, "stats: %s / %s", s.run_obj,
                                    s.run_id));
            }
        }
        i++;
        apr_pool_clear(rp);
    }
    apr_pool_destroy(rp);
    return status;
}

static int torture_ms(void)
{
    const char *e = getenv("PTM_TORTURE_MS");

    if (e && atoi(e) > 0) {
        return atoi(e);
    }
    return RUNNING_ON_VALGRIND ? 3000 : 2000;
}

static void torture(fx_t *fx, tally_t *t, int broken)
{
    pid_t pid;
    int status;

    memset(t, 0, sizeof(*t));
    /* 64 KiB with a 16 KiB ring: the arena holds about a hundred events,
     * so it is compacted (every value moved) every hundred or so. */
    fx_open(fx, 64 * 1024, 16 * 1024, 1);
    alarm(120);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A broken reader is given longer to be caught (it is stopped at
         * the first wrong answer). */
        writer(fx, broken ? 10 * torture_ms() : torture_ms());
    }
    ptm_test_view_unchecked = broken;
    status = read_while(fx, pid, t, broken);
    ptm_test_view_unchecked = 0;
    if (!broken && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
        fail_msg("writer: status 0x%x", status);
    }
    alarm(0);
}

static void test_torture(void **state)
{
    static fx_t fx;
    ptm_store_stats_t s;
    tally_t t;

    torture(&fx, &t, 0);
    assert_int_equal(ptm_store_stats(fx.st, &s, fx.p), APR_SUCCESS);
    print_message("%" PRIu64 " snapshots (%" PRIu64 " with a run's values), "
                  "%" PRIu64 " /current/{type}, %" PRIu64 " /run, %" PRIu64
                  " stats; %" PRIu64 " events; %" PRIu64 " copies made "
                  "again, %" PRIu64 " reads under the lock; %" PRIu64
                  " torn\n", t.reads, t.runs_seen, t.ones, t.run_gets,
                  t.stats, s.next_n - 1, s.view_retries, s.view_locked,
                  t.bad);
    if (t.bad) {
        fail_msg("%" PRIu64 " answers were not snapshots; the first: %s",
                 t.bad, t.first_bad);
    }
    /* It was a race: copies overlapped changes and were made again, and
     * readers met the writer paused in its change often enough to go to
     * the lock; and it saw runs come and go. */
    assert_true(t.reads >= 100);
    assert_true(t.runs_seen > 0);
    assert_true(s.next_n - 1 >= (uint64_t)E * 10);
    assert_true(s.view_retries > 0);
    assert_true(s.view_locked > 0);
    assert_int_equal(s.repairs, 0);
    fx_close(&fx);
}

/* The same with the reader broken on purpose (copies kept without looking
 * at the generation): the checks must catch it, or they check nothing. */
static void test_torture_catches_unchecked_reader(void **state)
{
    static fx_t fx;
    tally_t t;

    torture(&fx, &t, 1);
    print_message("broken reader: caught after %" PRIu64 " snapshots: "
                  "%.300s\n", t.reads, t.first_bad ? t.first_bad : "-");
    assert_true(t.bad > 0);
    fx_close(&fx);
}

/* ---- a bounded number of tries --------------------------------------------- */

/* A generation left odd with nobody writing (a state that no lock holder
 * leaves, but a crafted one may): PTM_VIEW_TRIES tries, then the lock,
 * whose holder repairs the state; the answer is right; later reads go
 * without the lock again. */
static void test_tries_bounded(void **state)
{
    static fx_t fx;
    ptm_store_stats_t s0, s;
    const char *before, *after;

    fx_open(&fx, 64 * 1024, 0, 1);
    assert_int_equal(post(fx.st, fx.p, PTM_STREAM_SITE, "a", "1"),
                     APR_SUCCESS);
    assert_int_equal(post(fx.st, fx.p, PTM_STREAM_SITE, "b", "[2]"),
                     APR_SUCCESS);
    before = current(&fx, APR_SUCCESS);
    assert_int_equal(ptm_store_stats(fx.st, &s0, fx.p), APR_SUCCESS);
    H(&fx)->view_gen |= 1;
    after = current(&fx, APR_SUCCESS);
    assert_string_equal(after, before);
    assert_int_equal(ptm_store_stats(fx.st, &s, fx.p), APR_SUCCESS);
    assert_int_equal(s.view_retries - s0.view_retries, PTM_VIEW_TRIES);
    assert_int_equal(s.view_locked - s0.view_locked, 1);
    assert_int_equal(s.repairs - s0.repairs, 1);
    assert_int_equal(H(&fx)->view_gen & 1, 0);
    s0 = s;
    assert_string_equal(current(&fx, APR_SUCCESS), before);
    assert_int_equal(ptm_store_stats(fx.st, &s, fx.p), APR_SUCCESS);
    assert_int_equal(s.view_retries, s0.view_retries);
    assert_int_equal(s.view_locked, s0.view_locked);
    fx_close(&fx);
}

/* A writer stopped in the middle of its change (a value half copied, the
 * generation odd, the lock held): a reader never returns that half; after
 * its tries it waits for the lock, and answers the whole new value once
 * the writer is done.  server-status, which never waits, leaves the run
 * out instead. */
static int hook_in, hook_out;

static void stuck_hook(const char *where, unsigned n)
{
    char c = 'x';

    if (strcmp(where, "view:copy") == 0) {
        if (write(hook_in, &c, 1) != 1 || read(hook_out, &c, 1) != 1) {
            _exit(7);
        }
    }
}

typedef struct {
    ptm_store_t *st;
    apr_pool_t *p;
    apr_status_t rv;
    ptm_buf_t b;
} cur_arg_t;

static void *cur_thread(void *arg)
{
    cur_arg_t *a = arg;

    ptm_buf_init(&a->b, a->p, 64);
    a->rv = ptm_store_current(a->st, &a->b);
    ptm_buf_putc(&a->b, '\0');
    return NULL;
}

static void test_stuck_writer_in_change(void **state)
{
    static fx_t fx;
    int in[2], out[2], status;
    ptm_store_stats_t s0, s;
    cur_arg_t a;
    pthread_t t;
    pid_t pid;
    char c;

    fx_open(&fx, 64 * 1024, 0, 1);
    alarm(60);
    assert_int_equal(post(fx.st, fx.p, PTM_STREAM_SITE, "a", "\"old\""),
                     APR_SUCCESS);
    assert_int_equal(run_start(fx.st, run_obj(1, fx.p), "m1", "/srv/t/m1"),
                     APR_SUCCESS);
    assert_int_equal(ptm_store_stats(fx.st, &s0, fx.p), APR_SUCCESS);
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        apr_pool_t *p;
        apr_global_mutex_t *mx = fx.mx;

        CHILD_CHECK(apr_pool_create(&p, NULL) == APR_SUCCESS, 2);
        CHILD_CHECK(apr_global_mutex_child_init(&mx, fx.lock_path, p)
                    == APR_SUCCESS, 3);
        hook_in = in[1];
        hook_out = out[0];
        ptm_test_hook = stuck_hook;
        CHILD_CHECK(post(ptm_store_attach(fx.base, mx, p), p,
                         PTM_STREAM_SITE, "a", "\"new, and longer\"")
                    == APR_SUCCESS, 4);
        _exit(0);
    }
    assert_int_equal(read(in[0], &c, 1), 1);       /* stuck mid-change */
    assert_int_equal(H(&fx)->view_gen & 1, 1);
    memset(&a, 0, sizeof(a));
    a.st = fx.st;
    assert_int_equal(apr_pool_create(&a.p, fx.p), APR_SUCCESS);
    assert_int_equal(pthread_create(&t, NULL, cur_thread, &a), 0);
    /* server-status: at once, the run left out (no whole copy without
     * waiting), busy said. */
    assert_int_equal(ptm_store_stats(fx.st, &s, fx.p), APR_SUCCESS);
    assert_int_equal(s.busy, 1);
    assert_int_equal(s.run_active, 1);
    assert_null(s.run_id);
    usleep(300 * 1000);
    assert_int_equal(pthread_tryjoin_np(t, NULL), EBUSY);
    c = 'g';
    assert_int_equal(write(out[1], &c, 1), 1);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(a.rv, APR_SUCCESS);
    assert_non_null(strstr(a.b.data, "\"data\":\"new, and longer\""));
    assert_null(strstr(a.b.data, "old"));
    assert_int_equal(ptm_store_stats(fx.st, &s, fx.p), APR_SUCCESS);
    assert_true(s.view_retries - s0.view_retries >= PTM_VIEW_TRIES);
    /* The reader and server-status's run read each went to the lock. */
    assert_int_equal(s.view_locked - s0.view_locked, 2);
    assert_string_equal(s.run_id, "m1");
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    alarm(0);
    fx_close(&fx);
}

/* ---- crafted and damaged states ---------------------------------------------- */

typedef struct {
    const char *name;
    void (*craft)(fx_t *fx);
    int current;            /* 1: GET /current must say DAMAGED */
    int one;                /* 1: GET /current/b must say DAMAGED */
    int run;                /* 1: GET /run must say DAMAGED */
} craft_t;

static slot_t *slot_of(fx_t *fx, int s, uint32_t i)
{
    return &slots(fx->st, s)[i];
}

static void c_count(fx_t *fx)
{
    H(fx)->map[0].count = H(fx)->map[0].cap + 1;
}

static void c_slots_end(fx_t *fx)
{
    H(fx)->map[0].slots = fx->size - 8;
}

static void c_slots_hdr(fx_t *fx)
{
    H(fx)->map[0].slots = 8;
}

static void c_slots_align(fx_t *fx)
{
    H(fx)->map[0].slots += 4;
}

static void c_cap(fx_t *fx)
{
    H(fx)->map[0].cap = UINT32_MAX;
}

static void c_blob_end(fx_t *fx)
{
    slot_of(fx, 0, 1)->blob = H(fx)->arena_size - 4;
}

static void c_blob_huge(fx_t *fx)
{
    slot_of(fx, 0, 1)->blob = UINT64_MAX - 2;
}

static void c_blob_zero(fx_t *fx)
{
    slot_of(fx, 0, 1)->blob = 0;
}

static void c_env_len(fx_t *fx)
{
    slot_of(fx, 0, 1)->env_len = UINT32_MAX - 7;
}

static void c_key_len(fx_t *fx)
{
    slot_of(fx, 0, 1)->key_len = UINT32_MAX;
}

static void c_bytes_small(fx_t *fx)
{
    H(fx)->map[0].bytes = 1;
}

static void c_bytes_huge(fx_t *fx)
{
    H(fx)->map[0].bytes = UINT64_MAX;
}

static void c_hcap_zero(fx_t *fx)
{
    H(fx)->map[0].hcap = 0;
}

static void c_hcap_odd(fx_t *fx)
{
    H(fx)->map[0].hcap = 100;
}

static void c_hcap_huge(fx_t *fx)
{
    H(fx)->map[0].hcap = 1u << 30;
}

static void c_index_end(fx_t *fx)
{
    H(fx)->map[0].index = fx->size - 4;
}

static void c_index_garbage(fx_t *fx)
{
    uint32_t i;

    for (i = 0; i < H(fx)->map[0].hcap; i++) {
        index_of(fx->st, 0)[i] = UINT32_MAX;
    }
}

/* Every bucket taken, none holding `b`: a lookup that trusted the table
 * would go round it for ever. */
static void c_index_full(fx_t *fx)
{
    uint32_t i;

    for (i = 0; i < H(fx)->map[0].hcap; i++) {
        index_of(fx->st, 0)[i] = 1;
    }
    for (i = 0; i < H(fx)->map[1].hcap; i++) {
        index_of(fx->st, 1)[i] = 1;
    }
}

static void c_arena_off(fx_t *fx)
{
    H(fx)->arena = fx->size + 8;
}

static void c_arena_size(fx_t *fx)
{
    H(fx)->arena_size = fx->size;
}

static void c_arena_wrap(fx_t *fx)
{
    H(fx)->arena_size = UINT64_MAX - H(fx)->arena + 16;
}

/* An arena as big as the byte count it allows (what the copy of
 * /current allocates is bounded by the arena's size, which is bounded
 * by the segment first). */
static void c_bytes_arena_huge(fx_t *fx)
{
    H(fx)->arena_size = UINT64_MAX / 4;
    H(fx)->map[0].bytes = UINT64_MAX / 8;
}

static void c_run_blob(fx_t *fx)
{
    H(fx)->run_blob = H(fx)->arena_size - 8;
}

static void c_run_len(fx_t *fx)
{
    H(fx)->run_dir_len = UINT32_MAX;
}

static void c_run_map(fx_t *fx)
{
    H(fx)->map[1].slots = fx->size;
}

static const craft_t crafts[] = {
    { "count beyond cap", c_count, 1, 0, 0 },
    { "slots at the end", c_slots_end, 1, 1, 0 },
    { "slots in the header", c_slots_hdr, 1, 1, 0 },
    { "slots unaligned", c_slots_align, 1, 1, 0 },
    { "cap huge", c_cap, 1, 1, 0 },
    { "blob at the arena's end", c_blob_end, 1, 1, 0 },
    { "blob offset huge", c_blob_huge, 1, 1, 0 },
    { "blob offset 0", c_blob_zero, 1, 1, 0 },
    { "envelope length huge", c_env_len, 1, 1, 0 },
    { "key length huge", c_key_len, 1, 0, 0 },
    { "byte count too small", c_bytes_small, 1, 0, 0 },
    { "byte count huge", c_bytes_huge, 1, 0, 0 },
    { "index size 0", c_hcap_zero, 0, 1, 0 },
    { "index size not a power of 2", c_hcap_odd, 0, 1, 0 },
    { "index size huge", c_hcap_huge, 0, 1, 0 },
    { "index at the end", c_index_end, 0, 1, 0 },
    { "index entries out of range", c_index_garbage, 0, 1, 0 },
    { "index full", c_index_full, 0, 1, 0 },
    { "arena outside", c_arena_off, 1, 1, 1 },
    { "arena too big", c_arena_size, 1, 1, 1 },
    { "arena size wraps", c_arena_wrap, 1, 1, 1 },
    { "byte count and arena size huge", c_bytes_arena_huge, 1, 1, 1 },
    { "run blob at the end", c_run_blob, 0, 0, 1 },
    { "run length huge", c_run_len, 0, 0, 1 },
    { "run map outside", c_run_map, 1, 1, 0 },
};

/* Each way of damaging the state, on a fresh one: every reader answers
 * (200 or 404 alike) or says PTM_STORE_DAMAGED, where it must; a read
 * outside the segment would meet a guard page. */
static void test_crafted_state(void **state)
{
    static fx_t fx;
    size_t i;

    for (i = 0; i < sizeof(crafts) / sizeof(crafts[0]); i++) {
        const craft_t *c = &crafts[i];
        ptm_store_stats_t s;
        ptm_buf_t b;
        uint64_t next;
        apr_status_t rv;
        const char *key;

        fx_open(&fx, 64 * 1024, 0, 0);
        assert_int_equal(post(fx.st, fx.p, PTM_STREAM_SITE, "a", "1"),
                         APR_SUCCESS);
        assert_int_equal(post(fx.st, fx.p, PTM_STREAM_SITE, "b", "[2,3]"),
                         APR_SUCCESS);
        assert_int_equal(run_start(fx.st, run_obj(1, fx.p), "m1",
                                   "/srv/t/m1"), APR_SUCCESS);
        assert_int_equal(post(fx.st, fx.p, PTM_STREAM_RUN, "r", "{}"),
                         APR_SUCCESS);
        c->craft(&fx);

        ptm_buf_init(&b, fx.p, 64);
        rv = ptm_store_current_at(fx.st, &b, &next);
        if (c->current ? rv != PTM_STORE_DAMAGED
                       : rv != APR_SUCCESS && rv != PTM_STORE_DAMAGED) {
            fail_msg("%s: /current status %d", c->name, rv);
        }
        for (key = "\"b\""; key; key = *key == '"' && key[1] == 'b'
                                       ? "\"zz\"" : NULL) {
            ptm_buf_init(&b, fx.p, 64);
            rv = ptm_store_current_one(fx.st, key, strlen(key), &b);
            if (c->one && key[1] == 'b' ? rv != PTM_STORE_DAMAGED
                : rv != APR_SUCCESS && rv != PTM_STORE_NOTFOUND
                  && rv != PTM_STORE_DAMAGED) {
                fail_msg("%s: /current/%s status %d", c->name, key, rv);
            }
        }
        ptm_buf_init(&b, fx.p, 64);
        rv = ptm_store_run_get(fx.st, &b);
        if (c->run ? rv != PTM_STORE_DAMAGED
                   : rv != APR_SUCCESS && rv != PTM_STORE_DAMAGED) {
            fail_msg("%s: /run status %d", c->name, rv);
        }
        assert_int_equal(ptm_store_stats(fx.st, &s, fx.p), APR_SUCCESS);
        if (c->run && s.run_id) {
            fail_msg("%s: server-status shows run %s", c->name, s.run_id);
        }
        fx_close(&fx);
    }
}

/* A generation left odd on top of damage: the reader's lock holder
 * repairs the state (what checks out is kept) and the reader answers. */
static void test_crafted_odd_generation(void **state)
{
    static fx_t fx;
    const char *before, *cut;

    fx_open(&fx, 64 * 1024, 0, 0);
    assert_int_equal(post(fx.st, fx.p, PTM_STREAM_SITE, "a", "1"),
                     APR_SUCCESS);
    assert_int_equal(post(fx.st, fx.p, PTM_STREAM_SITE, "b", "[2,3]"),
                     APR_SUCCESS);
    before = current(&fx, APR_SUCCESS);
    cut = strstr(before, ",\"b\"");
    assert_non_null(cut);
    slot_of(&fx, 0, 1)->env_len = UINT32_MAX - 7;
    H(&fx)->view_gen |= 1;
    /* "b" did not check out and was dropped; "a" is whole. */
    assert_string_equal(current(&fx, APR_SUCCESS),
                        apr_pstrcat(fx.p, apr_pstrndup(fx.p, before,
                                                       cut - before),
                                    "}}", NULL));
    assert_int_equal(ptm_store_repairs(fx.st), 1);
    fx_close(&fx);
}

#define T(f) cmocka_unit_test_teardown(f, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_generation),
        T(test_copy_bounds),
        T(test_torture),
        T(test_torture_catches_unchecked_reader),
        T(test_tries_bounded),
        T(test_stuck_writer_in_change),
        T(test_crafted_state),
        T(test_crafted_odd_generation),
    };

    if (getenv("PTM_TEST_FILTER")) {
        cmocka_set_test_filter(getenv("PTM_TEST_FILTER"));
    }
    return cmocka_run_group_tests_name("ptm_seqlock", tests, group_setup,
                                       group_teardown);
}

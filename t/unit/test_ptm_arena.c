/* Unit tests for ptm_arena (SPEC §11.4): compaction cut short.  A writer
 * is stopped by the test hook (src/ptm_test_hook.h) right after its k-th
 * blob moved, inside the compaction that a run start or an event needs,
 * for every k.  The next lock holder must then find a whole state: the
 * arena laid out end to end with every blob where its owner says, every
 * value byte for byte the one acknowledged (or dropped, never torn),
 * /current valid JSON, and the next run start and events working with
 * seqs that never go back.  A refused run start (507, prepare error)
 * changes no byte at all.
 *
 * A real state file, a real global mutex and real fork()ed writers.  The
 * state is filled once and copied back before each kill, so that every
 * kill starts from the same bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include <apr_global_mutex.h>
#include <apr_strings.h>
#include "ptm_buf.h"
#include "ptm_json.h"
#include "ptm_store.h"
#include "ptm_store_int.h"
#include "ptm_test_hook.h"

#define TS_PART ",\"ts\":\"2026-03-17T20:15:00.000Z\""
#define SIZE PTM_STORE_MIN_SIZE
#define NTYPES 24               /* site types s00..s23 */
#define MAXT (NTYPES + 4)
#define KILLED 9                /* the exit status of a writer the hook ends */
#define RUN_ID "r1"
#define RUN_DIR "/srv/t/r1"

typedef struct {
    apr_pool_t *p;
    apr_global_mutex_t *mx;
    const char *dir;
    const char *lock_path;
    void *base;
    int fd;
    ptm_store_t *st;
    char *snap;                 /* the filled state every kill starts from */
} fx_t;

/* The fixture a failed test left open (cmocka longjmps past fx_close). */
static fx_t *open_fx;

static void fx_open(fx_t *fx)
{
    ptm_store_open_e how;

    memset(fx, 0, sizeof(*fx));
    fx->fd = -1;
    open_fx = fx;
    assert_int_equal(apr_pool_create(&fx->p, gpool), APR_SUCCESS);
    fx->dir = ptm_unit_tmpdir(fx->p, "ptm_arena_test");
    fx->lock_path = apr_pstrcat(fx->p, fx->dir, "/lock", NULL);
    assert_int_equal(apr_global_mutex_create(&fx->mx, fx->lock_path,
                                             APR_LOCK_DEFAULT, fx->p),
                     APR_SUCCESS);
    assert_int_equal(ptm_store_open_file(&fx->base, &fx->fd, &how, NULL,
                                         apr_pstrcat(fx->p, fx->dir,
                                                     "/state", NULL),
                                         NULL, SIZE, 0, fx->p), APR_SUCCESS);
    assert_int_equal(how, PTM_STORE_OPEN_NEW);
    fx->st = ptm_store_attach(fx->base, fx->mx, fx->p);
    fx->snap = apr_palloc(fx->p, SIZE);
}

static void fx_close(fx_t *fx)
{
    open_fx = NULL;
    ptm_test_hook = NULL;
    if (fx->base) {
        munmap(fx->base, SIZE);
    }
    if (fx->fd >= 0) {
        close(fx->fd);
    }
    if (fx->mx) {
        apr_global_mutex_destroy(fx->mx);
    }
    if (fx->dir) {
        rm_rf(fx->dir);
    }
    apr_pool_destroy(fx->p);
}

static int test_teardown(void **state)
{
    (void)state;
    alarm(0);
    ptm_test_hook = NULL;
    if (open_fx) {
        fx_close(open_fx);
    }
    return 0;
}

/* ---- what was acknowledged ---------------------------------------------- */

/* The values the store acknowledged, in the order /current prints them
 * (site types in insertion order, then the run's own), and the last seq
 * given out per stream. */
typedef struct {
    const char *type[MAXT];
    const char *env[MAXT];
    int stream[MAXT];
    unsigned n;
    uint64_t seq[2];
    int run_active;
} model_t;

static int model_find(const model_t *m, int stream, const char *type)
{
    unsigned i;

    for (i = 0; i < m->n; i++) {
        if (m->stream[i] == stream && strcmp(m->type[i], type) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static void model_set(model_t *m, int stream, const char *type,
                      const char *env)
{
    int i = model_find(m, stream, type);

    if (i < 0) {
        unsigned at = m->n;

        /* A new site type goes after the other site types, before the
         * run's own: where /current prints it. */
        while (stream == PTM_STREAM_SITE && at > 0
               && m->stream[at - 1] == PTM_STREAM_RUN) {
            at--;
        }
        assert_true(m->n < MAXT);
        memmove(&m->type[at + 1], &m->type[at],
                (m->n - at) * sizeof(m->type[0]));
        memmove(&m->env[at + 1], &m->env[at], (m->n - at) * sizeof(m->env[0]));
        memmove(&m->stream[at + 1], &m->stream[at],
                (m->n - at) * sizeof(m->stream[0]));
        m->n++;
        i = (int)at;
        m->type[i] = type;
        m->stream[i] = stream;
    }
    m->env[i] = env;
}

static void model_drop(model_t *m, unsigned i)
{
    m->n--;
    memmove(&m->type[i], &m->type[i + 1], (m->n - i) * sizeof(m->type[0]));
    memmove(&m->env[i], &m->env[i + 1], (m->n - i) * sizeof(m->env[0]));
    memmove(&m->stream[i], &m->stream[i + 1],
            (m->n - i) * sizeof(m->stream[0]));
}

static void model_drop_run(model_t *m)
{
    unsigned i = 0;

    while (i < m->n) {
        if (m->stream[i] == PTM_STREAM_RUN) {
            model_drop(m, i);
        }
        else {
            i++;
        }
    }
}

/* ---- events and runs ----------------------------------------------------- */

/* Event `type` whose data is a string of `n` times `c`. */
static void mk_event(ptm_store_event_t *ev, apr_pool_t *p, uint64_t gen,
                     int stream, const char *type, size_t n, char c)
{
    char *data = apr_palloc(p, n + 3);

    data[0] = '"';
    memset(data + 1, c, n);
    data[n + 1] = '"';
    data[n + 2] = '\0';
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
                                 ? "\"run_id\":\"" RUN_ID "\"" : "");
    ev->body_len = strlen(ev->body_part);
    ev->make_current = 1;
    ev->fd = -1;
}

/* What /current shows for event `ev` numbered `seq`. */
static const char *public_env(apr_pool_t *p, uint64_t seq,
                              const ptm_store_event_t *ev)
{
    return apr_psprintf(p, "{\"seq\":%" PRIu64 "%.*s%.*s", seq,
                        (int)ev->ts_len, ev->ts_part, (int)ev->body_len,
                        ev->body_part);
}

static uint64_t run_gen(ptm_store_t *st, apr_pool_t *p)
{
    ptm_store_run_t r;

    assert_int_equal(ptm_store_run_peek(&r, st, p), APR_SUCCESS);
    return r.gen;
}

/* Post and expect the next seq of its stream; the model follows. */
static void post(fx_t *fx, apr_pool_t *p, model_t *m, int stream,
                 const char *type, size_t n, char c)
{
    ptm_store_event_t ev;
    uint64_t seq = 0;
    apr_status_t rv;

    mk_event(&ev, p, run_gen(fx->st, p), stream, type, n, c);
    rv = ptm_store_event(fx->st, &ev, &seq);
    if (rv != APR_SUCCESS) {
        fail_msg("post %s (%zu bytes): status %d", type, n, rv);
    }
    if (seq != m->seq[stream] + 1) {
        fail_msg("post %s: seq %" PRIu64 ", want %" PRIu64, type, seq,
                 m->seq[stream] + 1);
    }
    m->seq[stream] = seq;
    model_set(m, stream, type, public_env(p, seq, &ev));
}

/* A run object big enough that it never fits in the tail the fill
 * leaves. */
static const char *run_obj(apr_pool_t *p)
{
    char *pad = apr_palloc(p, 3001);

    memset(pad, 'm', 3000);
    pad[3000] = '\0';
    return apr_psprintf(p, "{\"run_id\":\"" RUN_ID "\",\"meta\":{\"pad\":"
                        "\"%s\"}}", pad);
}

static uint64_t run_need(apr_pool_t *p)
{
    return BLOB_TOTAL(strlen(run_obj(p)) + strlen(RUN_ID) + strlen(RUN_DIR));
}

typedef struct {
    int calls;
    apr_status_t rv;
} prep_t;

static apr_status_t prepare(void *ctx, uint64_t *seq_floor)
{
    prep_t *c = ctx;

    c->calls++;
    *seq_floor = 0;
    return c->rv;
}

static apr_status_t start_run(ptm_store_t *st, apr_pool_t *p,
                              const char *obj, prep_t *prep)
{
    return ptm_store_run_start(st, obj, strlen(obj), RUN_ID, strlen(RUN_ID),
                               RUN_DIR, prep ? prepare : NULL, prep);
}

/* The two updates whose compaction is cut short. */
enum { OP_RUN_START, OP_EVENT };

#define OP_EVENT_TYPE "s05"

/* The event of OP_EVENT: it replaces a value with one too big for the
 * tail, so that its room has to be made by compaction. */
static apr_status_t op_event(ptm_store_t *st, apr_pool_t *p,
                             ptm_store_event_t *ev, uint64_t *seq)
{
    mk_event(ev, p, run_gen(st, p), PTM_STREAM_SITE, OP_EVENT_TYPE, 3200,
             'E');
    return ptm_store_event(st, ev, seq);
}

static apr_status_t do_op(ptm_store_t *st, apr_pool_t *p, int op)
{
    ptm_store_event_t ev;
    uint64_t seq;

    return op == OP_RUN_START ? start_run(st, p, run_obj(p), NULL)
                              : op_event(st, p, &ev, &seq);
}

/* ---- the arena as compaction relies on it -------------------------------- */

/* Blobs end to end from 0 to `top`; every owned one where its owner (a
 * slot or the run) says and named by nobody else; every slot and the
 * active run owning exactly one; the owned ones adding up to `live`.
 * Compaction walks the arena trusting all of this. */
static void check_arena(fx_t *fx, apr_pool_t *p, const char *when)
{
    ptm_store_t *st = fx->st;
    hdr_t *h = st->hdr;
    uint64_t off = 0, live = 0;
    char *seen[2];
    const char *bad = NULL;
    unsigned run_seen = 0, i;
    int s;

    assert_int_equal(ptm_store_lock(st), APR_SUCCESS);
    for (s = 0; s < 2; s++) {
        seen[s] = apr_pcalloc(p, h->map[s].cap + 1);
    }
    if (h->writing) {
        bad = "the writing mark is set under the lock";
    }
    if (!bad && (h->top > h->arena_size || h->live > h->top)) {
        bad = apr_psprintf(p, "top %" PRIu64 ", live %" PRIu64 ", arena %"
                           PRIu64, h->top, h->live, h->arena_size);
    }
    while (!bad && off < h->top) {
        blob_t *b = (blob_t *)(arena(st) + off);
        uint64_t payload = off + sizeof(blob_t), total;

        if (h->top - off < sizeof(blob_t)
            || (total = BLOB_TOTAL(b->len)) > h->top - off) {
            bad = apr_psprintf(p, "the blob at %" PRIu64 " (len %u, owner "
                               "%u) runs past the top %" PRIu64, off,
                               b->len, b->owner, h->top);
            break;
        }
        if (b->owner == OWNER_RUN) {
            if (!h->run_active || h->run_blob != payload
                || b->len != (uint64_t)h->run_obj_len + h->run_id_len
                             + h->run_dir_len || run_seen++) {
                bad = apr_psprintf(p, "a run blob at %" PRIu64 " that is "
                                   "not the run's", off);
            }
        }
        else if (b->owner != OWNER_FREE) {
            uint32_t x = b->owner - 2, slot = x / 2;
            slot_t *sl;

            s = (int)(x & 1);
            sl = &slots(st, s)[slot];
            if (slot >= h->map[s].count || sl->blob != payload
                || b->len != (uint64_t)sl->key_len + sl->env_len
                || seen[s][slot]++) {
                bad = apr_psprintf(p, "a blob at %" PRIu64 " owned by "
                                   "stream %d slot %u, which is not there "
                                   "(count %u)", off, s, slot,
                                   h->map[s].count);
            }
        }
        if (b->owner != OWNER_FREE) {
            live += total;
        }
        off += total;
    }
    if (!bad && live != h->live) {
        bad = apr_psprintf(p, "owned blobs add up to %" PRIu64 ", live says "
                           "%" PRIu64, live, h->live);
    }
    if (!bad && run_seen != h->run_active) {
        bad = "the active run owns no blob";
    }
    for (s = 0; s < 2 && !bad; s++) {
        for (i = 0; i < h->map[s].count && !bad; i++) {
            if (!seen[s][i]) {
                bad = apr_psprintf(p, "stream %d slot %u owns no blob", s, i);
            }
        }
    }
    ptm_store_unlock(st);
    if (bad) {
        fail_msg("%s: the arena is torn: %s", when, bad);
    }
}

/* The state after a kill, or after the operations that follow it: the
 * arena whole; every value the one acknowledged, or (if `may_drop`) gone,
 * never another; /current valid JSON and exactly those values in their
 * order; the run as the model says; seqs not gone back.  The model loses
 * the dropped values and takes the counters (a repair may skip the number
 * a dead writer held).  Returns how many values were dropped. */
static unsigned check_state(fx_t *fx, apr_pool_t *p, model_t *m,
                            int may_drop, const char *when)
{
    ptm_store_stats_t s;
    ptm_json_error_t err;
    ptm_buf_t b, want;
    json_t *v;
    unsigned i = 0, dropped = 0;
    int st;

    memset(&s, 0, sizeof(s));
    assert_int_equal(ptm_store_stats(fx->st, &s, p), APR_SUCCESS);
    check_arena(fx, p, when);
    ptm_buf_init(&want, p, 64 * 1024);
    ptm_buf_puts(&want, "{\"current\":{");
    while (i < m->n) {
        const char *key = apr_psprintf(p, "\"%s\"", m->type[i]);
        apr_status_t rv;

        ptm_buf_init(&b, p, 64);
        rv = ptm_store_current_one(fx->st, key, strlen(key), &b);
        if (rv == PTM_STORE_NOTFOUND && may_drop) {
            model_drop(m, i);
            dropped++;
            continue;
        }
        if (rv != APR_SUCCESS) {
            fail_msg("%s: %s is gone (status %d)", when, m->type[i], rv);
        }
        if (b.len != strlen(m->env[i])
            || memcmp(b.data, m->env[i], b.len) != 0) {
            fail_msg("%s: %s is not the value acknowledged:\n  got  %.*s"
                     "\n  want %.100s", when, m->type[i],
                     (int)(b.len < 100 ? b.len : 100), b.data, m->env[i]);
        }
        if (want.len > 12) {
            ptm_buf_putc(&want, ',');
        }
        ptm_buf_puts(&want, key);
        ptm_buf_putc(&want, ':');
        ptm_buf_puts(&want, m->env[i]);
        i++;
    }
    ptm_buf_puts(&want, "}}");

    ptm_buf_init(&b, p, 64 * 1024);
    assert_int_equal(ptm_store_current(fx->st, &b), APR_SUCCESS);
    v = ptm_json_parse(b.data, b.len, &err);
    if (!v) {
        fail_msg("%s: /current is not JSON: %s at %zu", when, err.msg,
                 err.pos);
    }
    json_decref(v);
    if (b.len != want.len || memcmp(b.data, want.data, b.len) != 0) {
        size_t at = 0;

        while (at < b.len && at < want.len && b.data[at] == want.data[at]) {
            at++;
        }
        at = at > 40 ? at - 40 : 0;
        fail_msg("%s: /current is not what was acknowledged, from byte %zu:"
                 "\n  got  %.100s\n  want %.100s", when, at,
                 apr_pstrmemdup(p, b.data + at, b.len - at),
                 apr_pstrmemdup(p, want.data + at, want.len - at));
    }
    if (s.run_active != m->run_active) {
        fail_msg("%s: run active %d, want %d", when, s.run_active,
                 m->run_active);
    }
    if (m->run_active) {
        ptm_store_run_t r;

        ptm_buf_init(&b, p, 64);
        assert_int_equal(ptm_store_run_get(fx->st, &b), APR_SUCCESS);
        assert_int_equal(b.len, strlen(run_obj(p)));
        assert_memory_equal(b.data, run_obj(p), b.len);
        assert_int_equal(ptm_store_run_peek(&r, fx->st, p), APR_SUCCESS);
        assert_string_equal(r.run_id, RUN_ID);
        assert_string_equal(r.run_dir, RUN_DIR);
    }
    for (st = 0; st < 2; st++) {
        unsigned n = 0;

        for (i = 0; i < m->n; i++) {
            n += m->stream[i] == st;
        }
        assert_int_equal(s.types[st], n);
        if (s.seq[st] < m->seq[st]) {
            fail_msg("%s: stream %d seq %" PRIu64 " went back from %" PRIu64,
                     when, st, s.seq[st], m->seq[st]);
        }
        m->seq[st] = s.seq[st];
    }
    return dropped;
}

/* ---- filling the arena --------------------------------------------------- */

/* Every type once, then the odd ones again and again, until the tail is
 * too short for `need` bytes while the arena as a whole still has room
 * for them: the next blob that big has to be made room for by
 * compaction.  The odd values are small and the even ones big and never
 * replaced, so that freed blobs lie between them all over the arena and
 * compaction slides the even ones down by less than their size (the copy
 * overlaps the original) as well as by more. */
static void fill(fx_t *fx, model_t *m, uint64_t need)
{
    hdr_t *h = fx->st->hdr;
    unsigned i, t;

    for (i = 0; i < 10000; i++) {
        t = i < NTYPES ? i : 1 + 2 * (i % (NTYPES / 2));
        post(fx, fx->p, m, PTM_STREAM_SITE, apr_psprintf(fx->p, "s%02u", t),
             t % 2 ? 100 + (i * 389) % 400 : 900 + (i * 389) % 600,
             (char)('a' + i % 26));
        if (i >= 3 * NTYPES && h->arena_size - h->top < need
            && h->live + need + 1024 <= h->arena_size) {
            return;
        }
    }
    fail_msg("the arena never filled up");
}

/* Copy the filled state back (nobody else is attached). */
static void restore(fx_t *fx)
{
    memcpy(fx->base, fx->snap, SIZE);
}

static const char *hook_where;
static unsigned hook_at, hook_count;

static void count_hook(const char *where, unsigned n)
{
    if (strcmp(where, hook_where) == 0) {
        hook_count = n;
    }
}

static void die_hook(const char *where, unsigned n)
{
    if (strcmp(where, hook_where) == 0 && n == hook_at) {
        _exit(KILLED);
    }
}

/* How many blobs the compaction of `op` moves, on the filled state. */
static unsigned count_moves(fx_t *fx, int op)
{
    apr_pool_t *p;

    assert_int_equal(apr_pool_create(&p, fx->p), APR_SUCCESS);
    restore(fx);
    hook_where = "compact:moved";
    hook_count = 0;
    ptm_test_hook = count_hook;
    assert_int_equal(do_op(fx->st, p, op), APR_SUCCESS);
    ptm_test_hook = NULL;
    restore(fx);
    apr_pool_destroy(p);
    return hook_count;
}

/* A writer that dies at the k-th passing of `where` inside `op`. */
static void killed_writer(fx_t *fx, int op, const char *where, unsigned k)
{
    apr_global_mutex_t *mx = fx->mx;
    apr_pool_t *p;
    ptm_store_t *st;

    child_signals();
    CHILD_CHECK(apr_pool_create(&p, NULL) == APR_SUCCESS, 2);
    CHILD_CHECK(apr_global_mutex_child_init(&mx, fx->lock_path, p)
                == APR_SUCCESS, 3);
    st = ptm_store_attach(fx->base, mx, p);
    hook_where = where;
    hook_at = k;
    ptm_test_hook = die_hook;
    do_op(st, p, op);
    _exit(4);                   /* never: the hook ends it */
}

/* After a writer died inside a compaction: the state is whole, and the
 * run start, events, further compactions and the run stop that follow
 * all work on it.  Returns how many values the repair dropped. */
static unsigned after_kill(fx_t *fx, apr_pool_t *p, model_t *m,
                           const char *when)
{
    unsigned dropped, i;

    dropped = check_state(fx, p, m, 1, when);
    assert_int_equal(start_run(fx->st, p, run_obj(p), NULL), APR_SUCCESS);
    m->run_active = 1;
    post(fx, p, m, PTM_STREAM_RUN, "r0", 500, 'r');
    check_state(fx, p, m, 0, apr_pstrcat(p, when, ", run started", NULL));
    /* Every type again, twice: compactions on the repaired arena. */
    for (i = 0; i < 2 * NTYPES; i++) {
        post(fx, p, m, PTM_STREAM_SITE, apr_psprintf(p, "s%02u", i % NTYPES),
             200 + (i * 577) % 1300, (char)('A' + i % 26));
    }
    post(fx, p, m, PTM_STREAM_RUN, "r0", 900, 'R');
    check_state(fx, p, m, 0, apr_pstrcat(p, when, ", refilled", NULL));
    {
        ptm_buf_t b;

        ptm_buf_init(&b, p, 64);
        assert_int_equal(ptm_store_run_stop(fx->st, &b), APR_SUCCESS);
        assert_int_equal(b.len, strlen(run_obj(p)));
    }
    m->run_active = 0;
    model_drop_run(m);
    check_state(fx, p, m, 0, apr_pstrcat(p, when, ", run stopped", NULL));
    return dropped;
}

/* §11.4: a writer killed at any point of a compaction, whether a run
 * start or an event needed it, leaves a state the next lock holder
 * repairs into a whole one. */
static void test_kill_inside_compaction(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    static const char *const wheres[] = { "compact:moved", "compact:owned" };
    static const char *const ops[] = { "run start", "event" };
    model_t filled;
    apr_pool_t *iter;
    unsigned kills = 0, dropped = 0, moves, k;
    uint64_t repairs;
    int op, w;

    (void)state;
    fx_open(&fx);
    alarm(120);                 /* a lock that never comes back */
    memset(&filled, 0, sizeof(filled));
    fill(&fx, &filled, run_need(fx.p));
    check_state(&fx, fx.p, &filled, 0, "filled");
    memcpy(fx.snap, fx.base, SIZE);
    assert_int_equal(apr_pool_create(&iter, fx.p), APR_SUCCESS);

    for (op = OP_RUN_START; op <= OP_EVENT; op++) {
        moves = count_moves(&fx, op);
        print_message("%s: the compaction moves %u blobs\n", ops[op], moves);
        /* Enough to be cut short in many places. */
        assert_true(moves >= 8);
        for (w = 0; w < 2; w++) {
            for (k = 1; k <= moves; k++) {
                const char *when;
                model_t m = filled;
                int status;
                pid_t pid;

                apr_pool_clear(iter);
                when = apr_psprintf(iter, "%s killed at %s %u", ops[op],
                                    wheres[w], k);
                restore(&fx);
                repairs = ptm_store_repairs(fx.st);
                pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                    killed_writer(&fx, op, wheres[w], k);
                }
                assert_int_equal(waitpid(pid, &status, 0), pid);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != KILLED) {
                    fail_msg("%s: the writer ended with status 0x%x", when,
                             status);
                }
                kills++;
                if (op == OP_EVENT) {
                    /* Its number may be in a file: given out, not acked. */
                    m.seq[PTM_STREAM_SITE]++;
                }
                dropped += after_kill(&fx, iter, &m, when);
                /* The kill was inside an update: the next lock repaired. */
                if (ptm_store_repairs(fx.st) != repairs + 1) {
                    fail_msg("%s: %" PRIu64 " repairs, want %" PRIu64, when,
                             ptm_store_repairs(fx.st), repairs + 1);
                }
            }
        }
    }
    print_message("%u kills inside compactions, %u values dropped, none "
                  "torn\n", kills, dropped);
    alarm(0);
    fx_close(&fx);
}

/* A run start refused for want of room (507) or by its prepare changes no
 * byte of the state (so it needs no mark): the compaction it would need
 * happens only once it can no longer fail. */
static void test_refused_run_start_changes_nothing(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    prep_t prep = { 0, APR_EACCES };
    model_t m;
    char *big;

    (void)state;
    fx_open(&fx);
    memset(&m, 0, sizeof(m));
    fill(&fx, &m, run_need(fx.p));
    memcpy(fx.snap, fx.base, SIZE);
    hook_where = "compact:moved";
    hook_count = 0;
    ptm_test_hook = count_hook;

    /* 507: more than even a compacted arena holds. */
    big = apr_palloc(fx.p, SIZE);
    memset(big, 'x', SIZE - 1);
    big[SIZE - 1] = '\0';
    assert_int_equal(start_run(fx.st, fx.p, big, &prep), PTM_STORE_FULL);
    assert_int_equal(prep.calls, 0);
    assert_int_equal(hook_count, 0);
    assert_memory_equal(fx.base, fx.snap, SIZE);

    /* The prepare fails: it runs before anything moved. */
    assert_int_equal(start_run(fx.st, fx.p, run_obj(fx.p), &prep),
                     APR_EACCES);
    assert_int_equal(prep.calls, 1);
    assert_int_equal(hook_count, 0);
    assert_memory_equal(fx.base, fx.snap, SIZE);

    /* And the same start, allowed, compacts. */
    prep.rv = APR_SUCCESS;
    assert_int_equal(start_run(fx.st, fx.p, run_obj(fx.p), &prep),
                     APR_SUCCESS);
    assert_int_equal(prep.calls, 2);
    assert_true(hook_count > 0);
    ptm_test_hook = NULL;
    m.run_active = 1;
    check_state(&fx, fx.p, &m, 0, "run started");
    fx_close(&fx);
}

#define T(f) cmocka_unit_test_teardown(f, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_kill_inside_compaction),
        T(test_refused_run_start_changes_nothing),
    };

    if (getenv("PTM_TEST_FILTER")) {
        cmocka_set_test_filter(getenv("PTM_TEST_FILTER"));
    }
    return cmocka_run_group_tests_name("ptm_arena", tests, group_setup,
                                       group_teardown);
}

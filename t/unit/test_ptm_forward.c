/* Unit tests for forwarding (SPEC §12.5; src/ptm_forward.c and
 * src/ptm_store_fwd.c): the line ({"id":...} then the file line), the
 * resume from the kept position (drops counted exactly, once), a real
 * store and a real pipe: every event written in id order, the position
 * moved per line, a full pipe never blocking longer than the timeout and
 * no line lost or torn meanwhile, a ring overrun while stopped, the
 * rewind after a program exit (repeats counted), a line left half
 * written by a stopping forwarder, the lease, and the layout-6 fields
 * through the repair (carried, clamped, zero from layout 5). */
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
#include <apr_shm.h>
#include <apr_strings.h>
#include "ptm_forward.h"
#include "ptm_store.h"
#include "ptm_store_fwd.h"
#include "ptm_store_int.h"

#define SIZE (4 * 1024 * 1024)

typedef struct {
    apr_pool_t *p;
    void *base;
    ptm_store_t *st;
    ptm_fwd_board_t *b;
    int rd, wr;
} fx_t;

static void fx_open(fx_t *fx, apr_size_t ring, int pipe_size)
{
    int fds[2];

    memset(fx, 0, sizeof(*fx));
    assert_int_equal(apr_pool_create(&fx->p, gpool), APR_SUCCESS);
    fx->base = apr_pcalloc(fx->p, SIZE);
    ptm_store_format(fx->base, SIZE, ring);
    fx->st = ptm_store_attach(fx->base, NULL, fx->p);
    fx->b = ptm_fwd_board_init(apr_pcalloc(fx->p, ptm_fwd_board_size()));
    assert_int_equal(pipe(fds), 0);
    fx->rd = fds[0];
    fx->wr = fds[1];
    if (pipe_size) {
        assert_true(fcntl(fx->wr, F_SETPIPE_SZ, pipe_size) >= pipe_size);
    }
    fcntl(fx->rd, F_SETFL, fcntl(fx->rd, F_GETFL) | O_NONBLOCK);
}

static void fx_close(fx_t *fx)
{
    close(fx->rd);
    close(fx->wr);
    apr_pool_destroy(fx->p);
}

/* Post an event whose data is `data`; returns its id's n. */
static uint64_t post(fx_t *fx, const char *data)
{
    ptm_store_event_t ev;
    ptm_store_run_t run;
    uint64_t seq = 0, id = 0;

    memset(&ev, 0, sizeof(ev));
    assert_int_equal(ptm_store_run_peek(&run, fx->st, fx->p), APR_SUCCESS);
    ev.run_gen = run.gen;
    ev.stream = PTM_STREAM_SITE;
    ev.key = "\"w\"";
    ev.key_len = 3;
    ev.ts_part = ",\"ts\":\"2026-12-04T00:00:00.000Z\"";
    ev.ts_len = strlen(ev.ts_part);
    ev.body_part = apr_psprintf(fx->p, ",\"type\":\"w\",\"data\":%s,"
                                "\"meta\":{}}", data);
    ev.body_len = strlen(ev.body_part);
    ev.fd = -1;
    ev.accepted = apr_time_now();
    ev.ts_us = PTM_TS_NONE;
    ev.id = &id;
    assert_int_equal(ptm_store_event(fx->st, &ev, &seq), APR_SUCCESS);
    return id;
}

/* The line forwarded for event n (posted with data `data`, seq `seq`). */
static const char *line_of(fx_t *fx, uint64_t n, uint64_t seq,
                           const char *data)
{
    return apr_psprintf(fx->p, "{\"id\":\"%" PRIu64 "-%" PRIu64 "\","
                        "\"seq\":%" PRIu64 ",\"ts\":\"2026-12-04T00:00:00."
                        "000Z\",\"stream\":\"site\",\"type\":\"w\","
                        "\"data\":%s,\"meta\":{}}\n", ptm_store_epoch(fx->st),
                        n, seq, data);
}

/* Everything in the pipe now. */
static char *drain(fx_t *fx)
{
    ptm_buf_t b;
    char chunk[65536];
    ssize_t n;

    ptm_buf_init(&b, fx->p, 1024);
    while ((n = read(fx->rd, chunk, sizeof(chunk))) > 0) {
        ptm_buf_add(&b, chunk, (size_t)n);
    }
    ptm_buf_putc(&b, '\0');
    return b.data;
}

static ptm_store_fwd_t pos(fx_t *fx)
{
    ptm_store_fwd_t f;

    ptm_store_fwd_get(fx->st, &f);
    return f;
}

/* ---- pure parts ------------------------------------------------------ */

static void test_line(void **state)
{
    apr_pool_t *p;
    ptm_buf_t b;
    const char *l = "{\"seq\":7,\"type\":\"x\"}";

    apr_pool_create(&p, gpool);
    ptm_buf_init(&b, p, 4);
    ptm_fwd_line(&b, 1700000000000000ull, 42, l, strlen(l));
    ptm_fwd_line(&b, 5, 18446744073709551615ull, "{\"a\":1}", 7);
    assert_int_equal(b.len, strlen("{\"id\":\"1700000000000000-42\","
                                   "\"seq\":7,\"type\":\"x\"}\n{\"id\":\"5-"
                                   "18446744073709551615\",\"a\":1}\n"));
    assert_memory_equal(b.data, "{\"id\":\"1700000000000000-42\",\"seq\":7,"
                        "\"type\":\"x\"}\n{\"id\":\"5-18446744073709551615\","
                        "\"a\":1}\n", b.len);
    apr_pool_destroy(p);
}

static void test_resume(void **state)
{
    static const struct {
        uint64_t pos, first, next, high, want, dropped;
    } t[] = {
        { 0, 1, 1, 0, 1, 0 },         /* never forwarded, empty ring */
        { 0, 50, 90, 0, 50, 0 },      /* never: from the oldest, no drop */
        { 60, 50, 90, 60, 60, 0 },    /* inside the ring */
        { 90, 50, 90, 90, 90, 0 },    /* caught up */
        { 10, 50, 90, 10, 50, 40 },   /* overrun: 10..49 dropped */
        { 10, 50, 90, 30, 50, 20 },   /* after a rewind to 10 from 30:
                                       * only 30..49 were never written */
        { 10, 50, 90, 70, 50, 0 },    /* all of the gap was written once */
        { 95, 50, 90, 95, 90, 0 },    /* past the counter: clamped */
        { 10, 90, 90, 10, 90, 80 },   /* ring emptied (a huge event) */
    };
    size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        uint64_t dropped = 99;

        assert_int_equal(ptm_fwd_resume(t[i].pos, t[i].first, t[i].next,
                                        t[i].high, &dropped), t[i].want);
        assert_int_equal(dropped, t[i].dropped);
    }
}

/* ---- with a store and a pipe ---------------------------------------- */

/* Every event, in id order, each line whole; the position after the last;
 * nothing more to do afterwards. */
static void test_forward(void **state)
{
    fx_t fx;
    ptm_fwd_t *f;
    ptm_fwd_report_t rep;
    ptm_buf_t want;
    int i;

    fx_open(&fx, 64 * 1024, 0);
    f = ptm_fwd_create(fx.b, fx.st, fx.wr, fx.p);
    ptm_fwd_step(f, 0, &rep);
    assert_true(rep.idle);
    assert_int_equal(pos(&fx).next_n, 1);
    ptm_buf_init(&want, fx.p, 1024);
    for (i = 1; i <= 20; i++) {
        const char *d = apr_psprintf(fx.p, "{\"i\":%d}", i);

        assert_int_equal(post(&fx, d), i);
        ptm_buf_puts(&want, line_of(&fx, i, i, d));
    }
    assert_int_equal(ptm_fwd_step(f, apr_time_from_msec(100), &rep),
                     APR_SUCCESS);
    assert_int_equal(rep.lines, 20);
    assert_false(rep.blocked);
    assert_string_equal(drain(&fx), apr_pstrmemdup(fx.p, want.data,
                                                   want.len));
    assert_int_equal(pos(&fx).next_n, 21);
    assert_int_equal(pos(&fx).forwarded, 20);
    assert_int_equal(pos(&fx).repeats, 0);
    ptm_fwd_step(f, 0, &rep);
    assert_true(rep.idle);
    assert_string_equal(drain(&fx), "");
    ptm_fwd_destroy(f, 0);
    fx_close(&fx);
}

/* A pipe that nobody reads: a round returns within its timeout, the
 * position counts only whole lines, events keep being accepted, and once
 * read everything arrives, whole and in order. */
static void test_full_pipe(void **state)
{
    fx_t fx;
    ptm_fwd_t *f;
    ptm_fwd_report_t rep;
    ptm_buf_t want, got;
    char *big = apr_palloc(gpool, 3001);
    apr_time_t t0;
    int i, rounds = 0;

    memset(big, 'x', 3000);
    big[0] = '"';
    big[2999] = '"';
    big[3000] = '\0';
    fx_open(&fx, 128 * 1024, 4096);
    f = ptm_fwd_create(fx.b, fx.st, fx.wr, fx.p);
    ptm_buf_init(&want, fx.p, 1024);
    for (i = 1; i <= 10; i++) {
        post(&fx, big);
        ptm_buf_puts(&want, line_of(&fx, i, i, big));
    }
    t0 = apr_time_now();
    ptm_fwd_step(f, apr_time_from_msec(100), &rep);
    assert_true(rep.blocked);
    assert_true(apr_time_now() - t0 < apr_time_from_msec(600));
    assert_true(pos(&fx).next_n < 11);
    assert_int_equal(pos(&fx).next_n, 1 + pos(&fx).forwarded);
    /* Accepted meanwhile: the store never waits for the pipe. */
    for (i = 11; i <= 12; i++) {
        post(&fx, "1");
        ptm_buf_puts(&want, line_of(&fx, i, i, "1"));
    }
    ptm_buf_init(&got, fx.p, 1024);
    do {
        char *d = drain(&fx);

        ptm_buf_add(&got, d, strlen(d));
        ptm_fwd_step(f, apr_time_from_msec(10), &rep);
        assert_int_equal(rep.error, APR_SUCCESS);
    } while (!rep.idle && ++rounds < 1000);
    {
        char *d = drain(&fx);

        ptm_buf_add(&got, d, strlen(d));
    }
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.data, want.data, want.len);
    assert_int_equal(pos(&fx).next_n, 13);
    assert_int_equal(pos(&fx).forwarded, 12);
    ptm_fwd_destroy(f, 0);
    fx_close(&fx);
}

/* The ring overran while nothing was forwarded: the events that left it
 * are counted once, exactly; forwarding goes on from the oldest held. */
static void test_dropped(void **state)
{
    fx_t fx;
    ptm_fwd_t *f;
    ptm_fwd_report_t rep;
    ptm_recent_info_t info;
    uint64_t first, last = 0;
    int i;

    fx_open(&fx, 8 * 1024, 0);
    f = ptm_fwd_create(fx.b, fx.st, fx.wr, fx.p);
    post(&fx, "1");
    ptm_fwd_step(f, apr_time_from_msec(100), &rep);
    assert_int_equal(rep.lines, 1);
    drain(&fx);
    for (i = 0; i < 200; i++) {
        last = post(&fx, "123456789");
    }
    assert_int_equal(ptm_store_recent(&info, NULL, NULL, fx.st, 0, 0, NULL,
                                      NULL, fx.p), APR_SUCCESS);
    first = info.first_n;
    assert_true(first > 2);
    ptm_fwd_step(f, apr_time_from_msec(100), &rep);
    assert_int_equal(rep.dropped, first - 2);
    assert_int_equal(rep.gap_from, 2);
    assert_int_equal(rep.gap_to, first);
    assert_int_equal(pos(&fx).dropped, first - 2);
    while (!rep.idle) {
        ptm_fwd_step(f, apr_time_from_msec(100), &rep);
        assert_int_equal(rep.dropped, 0);
    }
    assert_int_equal(pos(&fx).next_n, last + 1);
    assert_int_equal(pos(&fx).forwarded, 1 + last - first + 1);
    assert_int_equal(pos(&fx).dropped, first - 2);
    ptm_fwd_destroy(f, 0);
    fx_close(&fx);
}

/* The program read everything, then died: the lines of the last
 * PTM_FWD_REWIND_BYTES it read are written again, counted as repeats;
 * the ones before are not. */
static void test_rewind(void **state)
{
    fx_t fx;
    ptm_fwd_t *f;
    ptm_fwd_report_t rep;
    /* Lines of 8 KB: the margin reaches back over part of them. */
    char *data = apr_palloc(gpool, 8001), *out;
    const char *want;
    size_t line_len, total, end;
    uint64_t n, back;
    int i;

    memset(data, '7', 8000);
    data[8000] = '\0';
    fx_open(&fx, 3 * 1024 * 1024, 0);
    f = ptm_fwd_create(fx.b, fx.st, fx.wr, fx.p);
    for (i = 1; i <= 200; i++) {
        post(&fx, data);
    }
    while (ptm_fwd_step(f, apr_time_from_msec(100), &rep) == APR_SUCCESS
           && !rep.idle) {
        drain(&fx);
    }
    drain(&fx);
    assert_int_equal(pos(&fx).forwarded, 200);
    /* Everything read: consumed = all written.  The lines that end after
     * all - PTM_FWD_REWIND_BYTES are written again, the others not. */
    ptm_fwd_program_exited(fx.b, 9, 0);
    ptm_fwd_step(f, apr_time_from_msec(100), &rep);
    total = 0;
    for (i = 200; i >= 1; i--) {
        total += strlen(line_of(&fx, i, i, data));
    }
    end = total;
    for (n = 200; n >= 1; n--) {
        line_len = strlen(line_of(&fx, n, n, data));
        end -= line_len;            /* now where line n - 1 ends */
        if (end <= total - PTM_FWD_REWIND_BYTES) {
            break;
        }
    }
    /* n: the first line that ends after the mark (n - 1 ends before). */
    assert_true(n > 1);
    assert_int_equal(rep.rewound_to, n);
    back = 200 - n + 1;
    assert_false(rep.rewind_short);
    out = drain(&fx);
    while (!rep.idle) {
        ptm_fwd_step(f, apr_time_from_msec(100), &rep);
        out = apr_pstrcat(fx.p, out, drain(&fx), NULL);
    }
    want = "";
    for (i = (int)n; i <= 200; i++) {
        want = apr_pstrcat(fx.p, want, line_of(&fx, i, i, data), NULL);
    }
    assert_string_equal(out, want);
    assert_int_equal(pos(&fx).repeats, back);
    assert_int_equal(pos(&fx).forwarded, 200);
    assert_int_equal(pos(&fx).next_n, 201);
    /* Handled once: a further round writes nothing again. */
    ptm_fwd_step(f, 0, &rep);
    assert_true(rep.idle);
    assert_int_equal(rep.rewound_to, 0);
    /* An exit with everything still unread: nothing to write again. */
    ptm_fwd_program_exited(fx.b, 9, 0);
    ptm_fwd_step(f, 0, &rep);
    ptm_fwd_destroy(f, 0);
    fx_close(&fx);
}

/* A forwarder stopped in the middle of a line that the pipe has no room
 * for: the stream is marked torn, and the next forwarder first ends the
 * fragment with a newline, then writes that line whole. */
static void test_torn(void **state)
{
    fx_t fx;
    ptm_fwd_t *f;
    ptm_fwd_report_t rep;
    char *big = apr_palloc(gpool, 20001), *out;
    const char *l1;

    memset(big, '5', 20000);
    big[20000] = '\0';
    fx_open(&fx, 128 * 1024, 4096);
    f = ptm_fwd_create(fx.b, fx.st, fx.wr, fx.p);
    post(&fx, big);
    l1 = line_of(&fx, 1, 1, big);
    ptm_fwd_step(f, apr_time_from_msec(50), &rep);
    assert_true(rep.blocked);
    ptm_fwd_destroy(f, apr_time_from_msec(50));
    assert_int_equal(pos(&fx).next_n, 1);
    out = drain(&fx);
    assert_true(strlen(out) > 0 && strlen(out) < strlen(l1));
    assert_memory_equal(out, l1, strlen(out));
    f = ptm_fwd_create(fx.b, fx.st, fx.wr, fx.p);
    do {
        ptm_fwd_step(f, apr_time_from_msec(50), &rep);
        out = apr_pstrcat(fx.p, out ? out : "", drain(&fx), NULL);
    } while (!rep.idle);
    out = apr_pstrcat(fx.p, out, drain(&fx), NULL);
    assert_string_equal(strchr(out, '\n') + 1, l1);
    assert_int_equal(pos(&fx).next_n, 2);
    ptm_fwd_destroy(f, 0);
    fx_close(&fx);
}

static void test_lease(void **state)
{
    fx_t fx;
    pid_t child;
    int st;

    fx_open(&fx, 8192, 0);
    assert_true(ptm_fwd_lease(fx.b, getpid()));
    assert_true(ptm_fwd_lease(fx.b, getpid()));
    /* Held by a live process: refused. */
    assert_false(ptm_fwd_lease(fx.b, getppid()));
    ptm_fwd_unlease(fx.b, getpid());
    /* Held by a process that died without giving it back. */
    child = fork();
    if (child == 0) {
        _exit(0);
    }
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_true(ptm_fwd_lease(fx.b, child));
    assert_true(ptm_fwd_lease(fx.b, getpid()));
    ptm_fwd_unlease(fx.b, getpid());
    fx_close(&fx);
}

/* ---- layout 6 through the repair ------------------------------------- */

static void test_repair_fields(void **state)
{
    fx_t fx;
    unsigned lost;
    int i;

    fx_open(&fx, 64 * 1024, 0);
    for (i = 0; i < 5; i++) {
        post(&fx, "1");
    }
    ptm_store_fwd_set(fx.st, 4);
    ptm_store_fwd_count(fx.st, 3, 2, 1);
    assert_int_equal(ptm_repair_rebuild(&lost, fx.st, SIZE, 1),
                     APR_SUCCESS);
    assert_int_equal(lost, 0);
    assert_int_equal(pos(&fx).next_n, 4);
    assert_int_equal(pos(&fx).forwarded, 3);
    assert_int_equal(pos(&fx).dropped, 2);
    assert_int_equal(pos(&fx).repeats, 1);
    /* A position past the id counter was not ours: clamped. */
    ((hdr_t *)fx.base)->fwd_next_n = 1000;
    assert_int_equal(ptm_repair_rebuild(&lost, fx.st, SIZE, 1),
                     APR_SUCCESS);
    assert_int_equal(lost, 1);
    assert_int_equal(pos(&fx).next_n, 6);
    fx_close(&fx);
}

/* A layout-5 header ended before the forwarding fields: whatever follows
 * it is not read as them (never forwarded). */
static void test_from_layout5(void **state)
{
    hdr_t o, h;

    memset(&o, 0x7f, sizeof(o));
    memset(&h, 0, sizeof(h));
    h.next_n = 10;
    assert_int_equal(ptm_store_fwd_copy(&h, &o, offsetof(hdr_t,
                                                         fwd_next_n)), 0);
    assert_int_equal(h.fwd_next_n, 0);
    assert_int_equal(h.fwd_forwarded, 0);
    assert_int_equal(h.fwd_dropped, 0);
    assert_int_equal(h.fwd_repeats, 0);
    o.fwd_next_n = 7;
    o.fwd_forwarded = 6;
    assert_int_equal(ptm_store_fwd_copy(&h, &o, sizeof(hdr_t)), 0);
    assert_int_equal(h.fwd_next_n, 7);
    assert_int_equal(h.fwd_forwarded, 6);
}

/* After a cold start the forwarder writes again the newest lines handed
 * over that fit the margin (the program and pipe of the httpd before may
 * have died with it), never one not handed over, at least the last. */
static void test_cold_rewind(void **state)
{
    fx_t fx;
    uint64_t n[20];
    size_t line;
    int i;

    (void)state;
    fx_open(&fx, 64 * 1024, 0);
    for (i = 0; i < 20; i++) {
        n[i] = post(&fx, "\"0123456789\"");
    }
    line = strlen(line_of(&fx, n[0], 1, "\"0123456789\"")) - 1 - 9;
    /* Handed over up to n[10] (next 11): 3 lines' worth goes back 3. */
    assert_int_equal(ptm_fwd_cold_rewind(fx.st, n[11], 3 * (line + 48),
                                         fx.p), n[8]);
    /* Less than one line: the last one all the same. */
    assert_int_equal(ptm_fwd_cold_rewind(fx.st, n[11], 1, fx.p), n[10]);
    /* A margin past all: from the oldest held. */
    assert_int_equal(ptm_fwd_cold_rewind(fx.st, n[11], 1 << 20, fx.p), n[0]);
    /* Nothing handed over yet: nothing to write again. */
    assert_int_equal(ptm_fwd_cold_rewind(fx.st, n[0], 1 << 20, fx.p), 0);
    fx_close(&fx);
}

/* A forwarder whose position is far past the oldest held event, with no
 * hint of where it is in the ring (a new one, after a restart): its first
 * rounds only skip (a bounded number of records per hold of the lock) and
 * must say they are not idle, or it would wait for the next event before
 * going on; it then forwards from its position. */
static void test_skip_not_idle(void **state)
{
    fx_t fx;
    ptm_fwd_t *f;
    ptm_fwd_report_t rep;
    uint64_t last = 0;
    int i, rounds = 0;

    (void)state;
    fx_open(&fx, 3 * 1024 * 1024, 0);
    for (i = 0; i < 2 * PTM_RING_LOOK_MAX + 10; i++) {
        last = post(&fx, "1");
    }
    ptm_store_fwd_set(fx.st, last - 2);
    f = ptm_fwd_create(fx.b, fx.st, fx.wr, fx.p);
    do {
        assert_int_equal(ptm_fwd_step(f, apr_time_from_msec(100), &rep),
                         APR_SUCCESS);
        rounds++;
        if (!rep.lines) {
            assert_false(rep.idle);
        }
    } while (!rep.lines && rounds < 10);
    assert_int_equal(rep.lines, 3);
    assert_true(rounds >= 2);
    assert_int_equal(pos(&fx).next_n, last + 1);
    ptm_fwd_destroy(f, 0);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cold_rewind),
        cmocka_unit_test(test_skip_not_idle),
        cmocka_unit_test(test_line),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_forward),
        cmocka_unit_test(test_full_pipe),
        cmocka_unit_test(test_dropped),
        cmocka_unit_test(test_rewind),
        cmocka_unit_test(test_torn),
        cmocka_unit_test(test_lease),
        cmocka_unit_test(test_repair_fields),
        cmocka_unit_test(test_from_layout5),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

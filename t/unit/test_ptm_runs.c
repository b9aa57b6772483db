/* Unit tests for ptm_runs, the runs journal (SPEC §12.2): the lines
 * written for a start and a stop (any id or directory bytes escaped), what
 * the reader makes of them (stops matched, runs without a stop ended by
 * the next start), and what it does with a journal it cannot trust: lines
 * that do not parse, relative directories, a torn last line, a link or a
 * FIFO planted at its name, a file too big to be ours.  Appends leave
 * nothing partial behind (RLIMIT_FSIZE) and cut what a killed writer
 * left. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include <apr_strings.h>
#include <apr_tables.h>
#include "ptm_runs.h"
#include "ptm_time.h"

/* ---- fixture -------------------------------------------------------------*/

typedef struct {
    apr_pool_t *p;
    char *dir;
    char *journal;
} fx_t;

static fx_t *open_fx;

static void fx_open(fx_t *fx)
{
    memset(fx, 0, sizeof(*fx));
    assert_int_equal(apr_pool_create(&fx->p, gpool), APR_SUCCESS);
    fx->dir = ptm_unit_tmpdir(fx->p, "ptm_runs_test");
    fx->journal = apr_pstrcat(fx->p, fx->dir, "/" PTM_RUNS_FILE, NULL);
    open_fx = fx;
}

static void fx_close(fx_t *fx)
{
    open_fx = NULL;
    rm_rf(fx->dir);
    apr_pool_destroy(fx->p);
}

static int test_teardown(void **state)
{
    (void)state;
    ptm_unit_reset_fsize();
    if (open_fx) {
        fx_close(open_fx);
    }
    return 0;
}

static void put_file(const char *path, const char *data)
{
    ptm_unit_put_file(path, data, strlen(data));
}

static apr_time_t T(const char *s)
{
    apr_time_t t;

    if (ptm_time_parse_rfc3339(&t, s, strlen(s), 0) != 0) {
        fail_msg("bad time in the test: %s", s);
    }
    return t;
}

static const ptm_runs_entry_t *entry(const apr_array_header_t *a, int i)
{
    assert_true(i < a->nelts);
    return &APR_ARRAY_IDX(a, i, ptm_runs_entry_t);
}

/* ---- writing -------------------------------------------------------------*/

static void test_note_lines(void **state)
{
    static fx_t fx;
    static const char id[] = "n\"ight\n\0x\xc3\xa9";    /* 12 bytes */
    const char *dir2 = "/srv/t/a\\b\x01";
    const char *want =
        "{\"run_id\":\"001\",\"run_dir\":\"/srv/t/001\","
        "\"start\":\"2026-03-17T20:48:00.123Z\"}\n"
        "{\"run_dir\":\"/srv/t/001\",\"stop\":\"2026-03-18T05:00:00.000Z\"}\n"
        "{\"run_id\":\"n\\\"ight\\n\\u0000x\\u00e9\","
        "\"run_dir\":\"/srv/t/a\\\\b\\u0001\","
        "\"start\":\"2026-03-18T20:00:00.000Z\"}\n";
    struct stat sb;
    size_t len;
    const char *got;
    mode_t old = umask(022);

    fx_open(&fx);
    assert_int_equal(ptm_runs_note_start(fx.dir, "001", 3, "/srv/t/001",
                                         T("2026-03-17T20:48:00.123999Z"),
                                         fx.p), APR_SUCCESS);
    assert_int_equal(ptm_runs_note_stop(fx.dir, "/srv/t/001",
                                        T("2026-03-18T05:00:00Z"), fx.p),
                     APR_SUCCESS);
    assert_int_equal(ptm_runs_note_start(fx.dir, id, sizeof(id) - 1, dir2,
                                         T("2026-03-18T20:00:00Z"), fx.p),
                     APR_SUCCESS);
    umask(old);
    got = slurp(fx.journal, &len, fx.p);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_int_equal(stat(fx.journal, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0644);
    fx_close(&fx);
}

/* A writer killed mid-append left part of a line: the next note is
 * glued to it (nothing is cut: another writer may be mid-line), and the
 * reader still finds the note after the fragment. */
static void test_note_after_partial_line(void **state)
{
    static fx_t fx;
    apr_array_header_t *runs;
    unsigned skipped = 99;

    fx_open(&fx);
    put_file(fx.journal,
             "{\"run_id\":\"1\",\"run_dir\":\"/a/1\","
             "\"start\":\"2026-01-01T00:00:00.000Z\"}\n{\"run_id\":\"2\",\"ru");
    assert_int_equal(ptm_runs_read(&runs, &skipped, fx.dir, fx.p),
                     APR_SUCCESS);
    assert_int_equal(runs->nelts, 1);
    assert_int_equal(skipped, 1);                   /* the torn line */
    assert_int_equal(ptm_runs_note_start(fx.dir, "3", 1, "/a/{\"run_3",
                                         T("2026-01-02T00:00:00Z"), fx.p),
                     APR_SUCCESS);
    assert_int_equal(ptm_runs_note_stop(fx.dir, "/a/{\"run_3",
                                        T("2026-01-02T01:00:00Z"), fx.p),
                     APR_SUCCESS);
    assert_int_equal(ptm_runs_read(&runs, &skipped, fx.dir, fx.p),
                     APR_SUCCESS);
    assert_int_equal(skipped, 1);                   /* the fragment */
    assert_int_equal(runs->nelts, 2);
    assert_string_equal(entry(runs, 1)->run_id, "3");
    assert_string_equal(entry(runs, 1)->run_dir, "/a/{\"run_3");
    assert_true(entry(runs, 0)->stop == T("2026-01-02T00:00:00Z"));
    assert_true(entry(runs, 1)->stop == T("2026-01-02T01:00:00Z"));
    fx_close(&fx);
}

/* A full disk (RLIMIT_FSIZE with SIGXFSZ ignored) in the middle of the
 * line: the error comes back and the journal is as it was. */
static void test_note_write_failure(void **state)
{
    static fx_t fx;
    struct rlimit rl;
    struct stat sb;
    off_t before;
    apr_status_t rv;
    char *longdir;

    fx_open(&fx);
    assert_int_equal(ptm_runs_note_start(fx.dir, "1", 1, "/a/1",
                                         T("2026-01-01T00:00:00Z"), fx.p),
                     APR_SUCCESS);
    assert_int_equal(stat(fx.journal, &sb), 0);
    before = sb.st_size;
    longdir = apr_palloc(fx.p, 5001);
    memset(longdir, 'd', 5000);
    longdir[0] = '/';
    longdir[5000] = '\0';
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = (rlim_t)before + 100;     /* part of the line fits */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
    rv = ptm_runs_note_start(fx.dir, "2", 1, longdir,
                             T("2026-01-02T00:00:00Z"), fx.p);
    rl.rlim_cur = rl.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
    assert_int_equal(rv, APR_FROM_OS_ERROR(EFBIG));
    assert_int_equal(stat(fx.journal, &sb), 0);
    assert_int_equal(sb.st_size, before);
    fx_close(&fx);
}

/* The site directory is the User's: a link or a FIFO planted at the
 * journal's name is neither followed nor waited on. */
static void test_planted_names(void **state)
{
    static fx_t fx;
    apr_array_header_t *runs;
    const char *target;
    unsigned skipped;
    size_t len;

    fx_open(&fx);
    target = apr_pstrcat(fx.p, fx.dir, "/target", NULL);
    put_file(target, "");
    assert_int_equal(symlink(target, fx.journal), 0);
    assert_int_equal(ptm_runs_note_start(fx.dir, "1", 1, "/a/1",
                                         T("2026-01-01T00:00:00Z"), fx.p),
                     APR_FROM_OS_ERROR(ELOOP));
    assert_int_equal(ptm_runs_note_stop(fx.dir, "/a/1",
                                        T("2026-01-01T00:00:00Z"), fx.p),
                     APR_FROM_OS_ERROR(ELOOP));
    assert_non_null(slurp(target, &len, fx.p));
    assert_int_equal(len, 0);
    put_file(target, "{\"run_id\":\"1\",\"run_dir\":\"/a/1\","
                     "\"start\":\"2026-01-01T00:00:00.000Z\"}\n");
    assert_int_equal(ptm_runs_read(&runs, &skipped, fx.dir, fx.p),
                     APR_FROM_OS_ERROR(ELOOP));
    assert_int_equal(runs->nelts, 0);

    /* A FIFO nobody reads or writes: neither side blocks. */
    assert_int_equal(unlink(fx.journal), 0);
    assert_int_equal(mkfifo(fx.journal, 0666), 0);
    alarm(10);
    assert_int_not_equal(ptm_runs_note_start(fx.dir, "1", 1, "/a/1",
                                             T("2026-01-01T00:00:00Z"),
                                             fx.p), APR_SUCCESS);
    assert_int_equal(ptm_runs_read(&runs, &skipped, fx.dir, fx.p),
                     APR_FROM_OS_ERROR(EINVAL));
    alarm(0);
    assert_int_equal(runs->nelts, 0);

    /* A directory. */
    assert_int_equal(unlink(fx.journal), 0);
    assert_int_equal(mkdir(fx.journal, 0755), 0);
    assert_int_not_equal(ptm_runs_note_start(fx.dir, "1", 1, "/a/1",
                                             T("2026-01-01T00:00:00Z"),
                                             fx.p), APR_SUCCESS);
    assert_int_not_equal(ptm_runs_read(&runs, &skipped, fx.dir, fx.p),
                         APR_SUCCESS);
    fx_close(&fx);
}

/* ---- reading -------------------------------------------------------------*/

static void test_read_missing(void **state)
{
    static fx_t fx;
    apr_array_header_t *runs = NULL;
    unsigned skipped = 7;

    fx_open(&fx);
    assert_int_equal(ptm_runs_read(&runs, &skipped, fx.dir, fx.p),
                     APR_SUCCESS);
    assert_non_null(runs);
    assert_int_equal(runs->nelts, 0);
    assert_int_equal(skipped, 0);
    /* A site dir that does not exist yet: an empty index too. */
    assert_int_equal(ptm_runs_read(&runs, NULL,
                                   apr_pstrcat(fx.p, fx.dir, "/no", NULL),
                                   fx.p), APR_SUCCESS);
    assert_int_equal(runs->nelts, 0);
    fx_close(&fx);
}

static void test_read_round_trip(void **state)
{
    static fx_t fx;
    static const char id[] = "n\"ight\n\0x\xc3\xa9";
    apr_array_header_t *runs;
    unsigned skipped = 7;

    fx_open(&fx);
    assert_int_equal(ptm_runs_note_start(fx.dir, "001", 3, "/srv/t/001",
                                         T("2026-03-17T20:48:00.123Z"),
                                         fx.p), APR_SUCCESS);
    assert_int_equal(ptm_runs_note_stop(fx.dir, "/srv/t/001",
                                        T("2026-03-18T05:00:00Z"), fx.p),
                     APR_SUCCESS);
    /* The id holds a NUL: kept up to it (ids are strings in C here). */
    assert_int_equal(ptm_runs_note_start(fx.dir, id, sizeof(id) - 1,
                                         "/srv/t/\xc3\xa9\n",
                                         T("2026-03-18T20:00:00Z"), fx.p),
                     APR_SUCCESS);
    assert_int_equal(ptm_runs_read(&runs, &skipped, fx.dir, fx.p),
                     APR_SUCCESS);
    assert_int_equal(skipped, 0);
    assert_int_equal(runs->nelts, 2);
    assert_string_equal(entry(runs, 0)->run_id, "001");
    assert_string_equal(entry(runs, 0)->run_dir, "/srv/t/001");
    assert_true(entry(runs, 0)->start == T("2026-03-17T20:48:00.123Z"));
    assert_true(entry(runs, 0)->stop == T("2026-03-18T05:00:00Z"));
    assert_string_equal(entry(runs, 1)->run_id, "n\"ight\n");
    assert_string_equal(entry(runs, 1)->run_dir, "/srv/t/\xc3\xa9\n");
    assert_true(entry(runs, 1)->start == T("2026-03-18T20:00:00Z"));
    assert_true(entry(runs, 1)->stop == APR_INT64_MAX);
    fx_close(&fx);
}

/* Stops and starts as a journal can hold them: a run whose stop was never
 * noted ends at the next start; a stop for another directory, or for a run
 * already ended, changes nothing; the same directory may hold many runs. */
static void test_read_matching(void **state)
{
    static fx_t fx;
    apr_array_header_t *runs;
    unsigned skipped;

    fx_open(&fx);
    put_file(fx.journal,
        /* 0: stopped */
        "{\"run_id\":\"a\",\"run_dir\":\"/r/a\""
            ",\"start\":\"2026-01-01T10:00:00Z\"}\n"
        "{\"run_dir\":\"/r/a\",\"stop\":\"2026-01-01T11:00:00Z\"}\n"
        /* a stop of nothing open */
        "{\"run_dir\":\"/r/a\",\"stop\":\"2026-01-01T12:00:00Z\"}\n"
        /* 1: never stopped: ends at 2's start */
        "{\"run_id\":\"b\",\"run_dir\":\"/r/b\""
            ",\"start\":\"2026-01-02T10:00:00Z\"}\n"
        /* 2: a stop for another dir first, then its own */
        "{\"run_id\":\"a\",\"run_dir\":\"/r/a\""
            ",\"start\":\"2026-01-03T10:00:00Z\"}\n"
        "{\"run_dir\":\"/r/b\",\"stop\":\"2026-01-03T10:30:00Z\"}\n"
        "{\"run_dir\":\"/r/a\",\"stop\":\"2026-01-03T11:00:00+01:00\"}\n"
        /* 3: its stop before its start (the stop of the run before it in
         * the same dir, noted late) is not its own: still open */
        "{\"run_id\":\"c\",\"run_dir\":\"/r/c\""
            ",\"start\":\"2026-01-04T10:00:00Z\"}\n"
        "{\"run_dir\":\"/r/c\",\"stop\":\"2026-01-04T09:59:59.999Z\"}\n");
    assert_int_equal(ptm_runs_read(&runs, &skipped, fx.dir, fx.p),
                     APR_SUCCESS);
    assert_int_equal(skipped, 0);
    assert_int_equal(runs->nelts, 4);
    assert_string_equal(entry(runs, 0)->run_id, "a");
    assert_true(entry(runs, 0)->stop == T("2026-01-01T11:00:00Z"));
    assert_string_equal(entry(runs, 1)->run_id, "b");
    assert_true(entry(runs, 1)->stop == T("2026-01-03T10:00:00Z"));
    assert_string_equal(entry(runs, 2)->run_dir, "/r/a");
    assert_true(entry(runs, 2)->start == T("2026-01-03T10:00:00Z"));
    assert_true(entry(runs, 2)->stop == T("2026-01-03T10:00:00Z"));
    assert_string_equal(entry(runs, 3)->run_id, "c");
    assert_true(entry(runs, 3)->stop == APR_INT64_MAX);
    fx_close(&fx);
}

/* Whatever is not a line we write is skipped and counted, and the lines
 * around it still count. */
static void test_read_skips_damage(void **state)
{
    static fx_t fx;
    apr_array_header_t *runs;
    unsigned skipped;

    fx_open(&fx);
    put_file(fx.journal,
        "{\"run_id\":\"a\",\"run_dir\":\"/r/a\""
            ",\"start\":\"2026-01-01T10:00:00Z\"}\n"
        "not json\n"
        "[1,2]\n"
        "\n"                                    /* empty: not counted */
        "{\"run_id\":\"x\",\"run_dir\":\"rel/x\""
            ",\"start\":\"2026-01-01T11:00:00Z\"}\n"
        "{\"run_id\":\"x\",\"run_dir\":\"\""
            ",\"start\":\"2026-01-01T11:00:00Z\"}\n"
        "{\"run_id\":7,\"run_dir\":\"/r/x\""
            ",\"start\":\"2026-01-01T11:00:00Z\"}\n"
        "{\"run_id\":\"x\",\"run_dir\":\"/r/x\",\"start\":\"yesterday\"}\n"
        "{\"run_id\":\"x\",\"run_dir\":\"/r/x\",\"start\":12}\n"
        "{\"run_id\":\"x\",\"run_dir\":\"/r/\\u0000x\""
            ",\"start\":\"2026-01-01T11:00:00Z\"}\n"
        "{\"run_id\":\"x\",\"start\":\"2026-01-01T11:00:00Z\"}\n"
        "{\"run_dir\":\"/r/a\",\"stop\":\"soon\"}\n"
        "{\"run_dir\":\"/r/a\"}\n"
        "{\"run_id\":\"x\",\"run_dir\":\"/r/x\""
            ",\"start\":\"2026-01-01T11:00:00Z\"\n"
        "{\"run_id\":\"x\",\"run_dir\":\"/r/x\""
            ",\"start\":\"2026-01-01T11:00:00Z\",}\n"
        "\xff\xfe\n"
        "{\"run_dir\":\"/r/a\",\"stop\":\"2026-01-01T12:00:00Z\"}\n"
        "{\"run_id\":\"b\",\"run_dir\":\"/r/b\""
            ",\"start\":\"2026-01-02T10:00:00Z\"}");
    assert_int_equal(ptm_runs_read(&runs, &skipped, fx.dir, fx.p),
                     APR_SUCCESS);
    assert_int_equal(skipped, 15);
    assert_int_equal(runs->nelts, 1);
    assert_string_equal(entry(runs, 0)->run_id, "a");
    assert_true(entry(runs, 0)->stop == T("2026-01-01T12:00:00Z"));
    fx_close(&fx);
}

/* A journal bigger than any we write (a hole costs its maker nothing) is
 * refused, not read into memory. */
static void test_read_too_big(void **state)
{
    static fx_t fx;
    apr_array_header_t *runs;
    unsigned skipped;

    fx_open(&fx);
    put_file(fx.journal,
        "{\"run_id\":\"a\",\"run_dir\":\"/r/a\""
            ",\"start\":\"2026-01-01T10:00:00Z\"}\n");
    assert_int_equal(truncate(fx.journal, (off_t)65 << 20), 0);
    assert_int_equal(ptm_runs_read(&runs, &skipped, fx.dir, fx.p),
                     APR_FROM_OS_ERROR(EFBIG));
    assert_int_equal(runs->nelts, 0);
    fx_close(&fx);
}


/* ---- the per-process cache ------------------------------------------------*/

#define LINE1 "{\"run_id\":\"1\",\"run_dir\":\"/a/1\"," \
              "\"start\":\"2026-01-01T00:00:00.000Z\"}\n"
#define STOP1 "{\"run_dir\":\"/a/1\",\"stop\":\"2026-01-01T05:00:00.000Z\"}\n"
#define LINE2 "{\"run_id\":\"2\",\"run_dir\":\"/a/2\"," \
              "\"start\":\"2026-01-02T00:00:00.000Z\"}\n"
#define LINEX "{\"run_id\":\"9\",\"run_dir\":\"/b/9\"," \
              "\"start\":\"2026-01-03T00:00:00.000Z\"}\n"

extern unsigned ptm_runs_cache_parses;
unsigned ptm_runs_cache_slots_used(void);

static const apr_array_header_t *cached_runs(const char *dir, apr_pool_t *p)
{
    const apr_array_header_t *c;
    unsigned bad;

    assert_int_equal(ptm_runs_read_cached(&c, &bad, dir, p), APR_SUCCESS);
    return c;
}

static void append_file(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_APPEND);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
    close(fd);
}

/* The same as ptm_runs_read says, whatever the cache holds. */
static void same_as_read(fx_t *fx, int want_n, unsigned want_bad)
{
    const apr_array_header_t *c;
    apr_array_header_t *r;
    unsigned cb = 99, rb = 99;
    int i;

    assert_int_equal(ptm_runs_read_cached(&c, &cb, fx->dir, fx->p),
                     APR_SUCCESS);
    assert_int_equal(ptm_runs_read(&r, &rb, fx->dir, fx->p), APR_SUCCESS);
    assert_int_equal(c->nelts, want_n);
    assert_int_equal(r->nelts, want_n);
    assert_int_equal(cb, want_bad);
    assert_int_equal(rb, want_bad);
    for (i = 0; i < want_n; i++) {
        assert_string_equal(entry(c, i)->run_id, entry(r, i)->run_id);
        assert_string_equal(entry(c, i)->run_dir, entry(r, i)->run_dir);
        assert_true(entry(c, i)->start == entry(r, i)->start);
        assert_true(entry(c, i)->stop == entry(r, i)->stop);
    }
}

/* Appends are parsed alone; a torn tail is counted and read again once
 * whole; a rewrite (same inode, other bytes, larger) and a replacement
 * (new inode) miss; a shrink misses. */
static void test_cache_follows_changes(void **state)
{
    static fx_t fx;
    unsigned parses;

    fx_open(&fx);
    same_as_read(&fx, 0, 0);                    /* no journal */
    put_file(fx.journal, LINE1);
    parses = ptm_runs_cache_parses;
    same_as_read(&fx, 1, 0);
    assert_int_equal(ptm_runs_cache_parses, parses + 1);
    same_as_read(&fx, 1, 0);                    /* a hit */
    assert_int_equal(ptm_runs_cache_parses, parses + 1);
    append_file(fx.journal, STOP1 "{\"run_id\":\"2\",\"ru");
    same_as_read(&fx, 1, 1);                    /* appended, torn tail */
    assert_int_equal(ptm_runs_cache_parses, parses + 1);
    assert_true(entry(cached_runs(fx.dir, fx.p), 0)->stop
                == T("2026-01-01T05:00:00Z"));
    append_file(fx.journal, LINE2);             /* glued to the fragment */
    same_as_read(&fx, 2, 1);
    assert_int_equal(ptm_runs_cache_parses, parses + 1);

    /* Rewritten in place, larger, with other bytes before the old end. */
    {
        int fd = open(fx.journal, O_WRONLY);
        const char *all = LINEX LINEX LINEX LINEX;

        assert_true(fd >= 0);
        assert_int_equal(write(fd, all, strlen(all)), (ssize_t)strlen(all));
        close(fd);
    }
    same_as_read(&fx, 4, 0);
    assert_int_equal(ptm_runs_cache_parses, parses + 2);
    assert_string_equal(entry(cached_runs(fx.dir, fx.p), 0)->run_dir,
                        "/b/9");
    /* Cut shorter. */
    assert_int_equal(truncate(fx.journal, (off_t)strlen(LINEX)), 0);
    same_as_read(&fx, 1, 0);
    assert_int_equal(ptm_runs_cache_parses, parses + 3);
    /* Replaced by another file (a new inode), of the same size. */
    {
        char *tmp = apr_pstrcat(fx.p, fx.dir, "/new", NULL);

        put_file(tmp, LINE1);
        assert_int_equal(strlen(LINE1), strlen(LINEX));
        assert_int_equal(rename(tmp, fx.journal), 0);
    }
    same_as_read(&fx, 1, 0);
    assert_string_equal(entry(cached_runs(fx.dir, fx.p), 0)->run_dir,
                        "/a/1");
    assert_int_equal(ptm_runs_cache_parses, parses + 4);
    fx_close(&fx);
}

/* An operator's edit in place of an early line, the length kept (an
 * editor that rewrites the file), then a run start: the cache reads the
 * edited journal, not the old runs plus the new line. */
static void test_cache_edit_in_place(void **state)
{
    static fx_t fx;
    char *text;
    int fd;

    fx_open(&fx);
    put_file(fx.journal, LINE1 STOP1 LINE2 LINE2 LINE2 LINE2);
    same_as_read(&fx, 5, 0);
    text = apr_pstrdup(fx.p, LINE1 STOP1 LINE2 LINE2 LINE2 LINE2);
    text[strstr(text, "/a/1") - text + 3] = '7';    /* /a/1 -> /a/7 */
    fd = open(fx.journal, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    append_file(fx.journal, LINEX);
    same_as_read(&fx, 6, 0);
    assert_string_equal(entry(cached_runs(fx.dir, fx.p), 0)->run_dir,
                        "/a/7");
    fx_close(&fx);
}

/* A link planted at the name is not followed, cached or not; neither is a
 * FIFO opened blocking. */
static void test_cache_no_link(void **state)
{
    static fx_t fx;
    const apr_array_header_t *c;
    unsigned bad;
    char *target;

    fx_open(&fx);
    put_file(fx.journal, LINE1);
    assert_int_equal(ptm_runs_read_cached(&c, &bad, fx.dir, fx.p),
                     APR_SUCCESS);
    assert_int_equal(c->nelts, 1);
    target = apr_pstrcat(fx.p, fx.dir, "/elsewhere", NULL);
    put_file(target, LINE1 LINE2);
    assert_int_equal(unlink(fx.journal), 0);
    assert_int_equal(symlink(target, fx.journal), 0);
    assert_int_equal(ptm_runs_read_cached(&c, &bad, fx.dir, fx.p),
                     APR_FROM_OS_ERROR(ELOOP));
    assert_int_equal(c->nelts, 0);
    assert_int_equal(unlink(fx.journal), 0);
    assert_int_equal(mkfifo(fx.journal, 0666), 0);
    alarm(10);
    assert_int_equal(ptm_runs_read_cached(&c, &bad, fx.dir, fx.p),
                     APR_FROM_OS_ERROR(EINVAL));
    alarm(0);
    fx_close(&fx);
}

/* Bounded: many site dirs keep at most a few snapshots; one a request
 * still holds outlives its eviction (ASan sees any use after free). */
static void test_cache_bounded(void **state)
{
    static fx_t fx;
    const apr_array_header_t *held, *c;
    apr_pool_t *req;
    unsigned bad;
    int i;

    fx_open(&fx);
    put_file(fx.journal, LINE1 LINE2);
    assert_int_equal(apr_pool_create(&req, fx.p), APR_SUCCESS);
    assert_int_equal(ptm_runs_read_cached(&held, &bad, fx.dir, req),
                     APR_SUCCESS);
    for (i = 0; i < 40; i++) {
        char *d = apr_psprintf(fx.p, "%s/s%d", fx.dir, i);

        assert_int_equal(mkdir(d, 0755), 0);
        put_file(apr_pstrcat(fx.p, d, "/" PTM_RUNS_FILE, NULL), LINEX);
        assert_int_equal(ptm_runs_read_cached(&c, &bad, d, fx.p),
                         APR_SUCCESS);
        assert_int_equal(c->nelts, 1);
    }
    assert_true(ptm_runs_cache_slots_used() <= 4);
    assert_int_equal(held->nelts, 2);
    assert_string_equal(entry(held, 1)->run_dir, "/a/2");
    apr_pool_destroy(req);
    fx_close(&fx);
}

static int runs_group_setup(void **state)
{
    signal(SIGXFSZ, SIG_IGN);
    return group_setup(state);
}

#define TEST(f) cmocka_unit_test_teardown(f, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_note_lines),
        TEST(test_note_after_partial_line),
        TEST(test_note_write_failure),
        TEST(test_planted_names),
        TEST(test_read_missing),
        TEST(test_read_round_trip),
        TEST(test_read_matching),
        TEST(test_read_skips_damage),
        TEST(test_read_too_big),
        TEST(test_cache_follows_changes),
        TEST(test_cache_edit_in_place),
        TEST(test_cache_no_link),
        TEST(test_cache_bounded),
    };

    return cmocka_run_group_tests_name("ptm_runs", tests, runs_group_setup,
                                       group_teardown);
}

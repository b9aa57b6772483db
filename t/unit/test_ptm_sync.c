/* Unit tests for ptm_sync (group commit, PanoptesTelemetrySync On): one
 * flush covers every line written before it began and no line written
 * after; a failed flush fails every line written before it was noticed,
 * whatever flush succeeds later (PostgreSQL's fsync lesson); a file's
 * flush never covers another file's lines; an entry reused early fails
 * its lines (PTM_SYNC_UNCONFIRMED); a failed line keeps the error of the
 * first failure that covered it; a flusher killed mid-flush does not
 * stall its waiters, not even a new process that was given its pid; and,
 * with real fork()ed writers on real files, no wait ever returns success
 * for a line a model disk has not kept.
 *
 * The flush is the core's test seam (ptm_sync_test_flush, compiled only
 * into these builds): it counts, sleeps, fails, and keeps the model disk:
 * a good flush makes durable what the file held when it began; a failed
 * one loses whatever was not durable when it returned, forever. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"
#include "ptm_sync.h"

#define NFILES 3
#define MAX_LOST 4096

/* What the processes of a test share: the board, the "store lock", the
 * model disk and the seam's settings. */
typedef struct {
    pthread_mutex_t lock;           /* stands for the store lock */
    pthread_mutex_t model;          /* guards what follows */
    int64_t durable[NFILES];        /* bytes of each file kept for sure */
    struct {
        int file;
        int64_t lo, hi;             /* [lo, hi) lost by a failed flush */
    } lost[MAX_LOST];
    unsigned nlost;
    unsigned flushes;               /* seam calls */
    unsigned fails;
    unsigned fail_every;            /* fail every n-th call (0: never) */
    int fail_next;                  /* fail the next call (then 0) */
    int fail_errno;                 /* with it (0: EIO) */
    unsigned delay_us;              /* time a flush takes */
    int block;                      /* the next call never returns */
    int blocked;                    /* ... and it has begun */
    ino_t ino[NFILES];              /* the files, to name them */
    /* A line to append from inside the next flush (during_flush). */
    int append_in_flush;
    ptm_sync_line_t in_flush_line;
    unsigned in_flush_fd_file;
    ptm_sync_line_t reused_line;    /* test_flusher_pid_reused's */
    long board[];                   /* the board, 8-aligned */
} shared_t;

static shared_t *sh;
static int sh_fd = -1;              /* its memory (a memfd: an exec'd
                                     * image maps it again) */
static ptm_sync_t *board;
static char *dir;
static int fds[NFILES];             /* this process's descriptors */
static char *paths[NFILES];

static void shared_open(void)
{
    size_t size = sizeof(shared_t) + ptm_sync_size();
    pthread_mutexattr_t a;
    int i;

    /* Not close-on-exec: test_flusher_pid_reused's exec'd image maps it. */
    sh_fd = memfd_create("ptm_sync_test", 0);
    assert_true(sh_fd >= 0);
    assert_int_equal(ftruncate(sh_fd, (off_t)size), 0);
    sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, sh_fd, 0);
    assert_true(sh != MAP_FAILED);
    memset(sh, 0, size);
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&sh->lock, &a);
    pthread_mutex_init(&sh->model, &a);
    pthread_mutexattr_destroy(&a);
    board = ptm_sync_init(sh->board);
    assert_true(ptm_sync_is_ours(board));
    dir = ptm_unit_tmpdir(gpool, "ptm_sync_test");
    for (i = 0; i < NFILES; i++) {
        struct stat st;

        paths[i] = apr_psprintf(gpool, "%s/f%d.ndjson", dir, i);
        fds[i] = open(paths[i], O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC,
                      0644);
        assert_true(fds[i] >= 0);
        assert_int_equal(fstat(fds[i], &st), 0);
        sh->ino[i] = st.st_ino;
    }
}

static void shared_close(void)
{
    int i;

    ptm_sync_test_flush = NULL;
    for (i = 0; i < NFILES; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
    if (dir) {
        rm_rf(dir);
        dir = NULL;
    }
    if (sh) {
        munmap(sh, sizeof(shared_t) + ptm_sync_size());
        sh = NULL;
    }
    if (sh_fd >= 0) {
        close(sh_fd);
        sh_fd = -1;
    }
}

static int teardown(void **state)
{
    (void)state;
    shared_close();
    return 0;
}

/* Open the files again in a child: a descriptor of its own, as each httpd
 * child has. */
static void reopen_files(void)
{
    int i;

    for (i = 0; i < NFILES; i++) {
        close(fds[i]);
        fds[i] = open(paths[i], O_RDWR | O_APPEND | O_CLOEXEC);
    }
}

static void lock(void)
{
    if (pthread_mutex_lock(&sh->lock) == EOWNERDEAD) {
        pthread_mutex_consistent(&sh->lock);
    }
}

static void unlock(void)
{
    pthread_mutex_unlock(&sh->lock);
}

static int file_of(int fd)
{
    struct stat st;
    int i;

    if (fstat(fd, &st) != 0) {
        return -1;
    }
    for (i = 0; i < NFILES; i++) {
        if (st.st_ino == sh->ino[i]) {
            return i;
        }
    }
    return -1;
}

/* Append one line to file `f` as the store does (ticket, write, record),
 * under the lock unless `locked`; `off`/`end` get where it went. */
static void append_locked(ptm_sync_line_t *line, int f, int stream,
                          int64_t *off, int64_t *end)
{
    char buf[64];
    struct stat st;
    uint64_t t;
    int n;

    t = ptm_sync_ticket_locked(board, stream);
    assert_int_equal(fstat(fds[f], &st), 0);
    n = snprintf(buf, sizeof(buf), "{\"line\":%llu,\"pid\":%ld}\n",
                 (unsigned long long)t, (long)getpid());
    if (write(fds[f], buf, (size_t)n) != n) {
        _exit(90);
    }
    if (off) {
        *off = st.st_size;
    }
    if (end) {
        *end = st.st_size + n;
    }
    ptm_sync_written_locked(board, line, stream, t, st.st_dev, st.st_ino);
}

static void append(ptm_sync_line_t *line, int f, int stream, int64_t *off,
                   int64_t *end)
{
    lock();
    append_locked(line, f, stream, off, end);
    unlock();
}

/* The seam: count, take time, fail when told, keep the model disk. */
static int model_flush(int fd)
{
    struct stat st;
    int64_t before;
    int f = file_of(fd), fail;

    if (fstat(fd, &st) != 0) {
        return -1;
    }
    if (f < 0) {
        /* A file the model does not follow (test_entry_reused). */
        __atomic_add_fetch(&sh->flushes, 1, __ATOMIC_SEQ_CST);
        return 0;
    }
    before = st.st_size;
    if (__atomic_load_n(&sh->block, __ATOMIC_SEQ_CST)) {
        __atomic_store_n(&sh->blocked, 1, __ATOMIC_SEQ_CST);
        for (;;) {
            pause();            /* until killed */
        }
    }
    if (sh->append_in_flush) {
        /* Another writer's line, written while this flush runs (it
         * takes the lock: the flusher does not hold it). */
        sh->append_in_flush = 0;
        append(&sh->in_flush_line, (int)sh->in_flush_fd_file, 0, NULL, NULL);
    }
    if (sh->delay_us) {
        usleep(sh->delay_us);
    }
    pthread_mutex_lock(&sh->model);
    sh->flushes++;
    fail = sh->fail_next || (sh->fail_every
                             && sh->flushes % sh->fail_every == 0);
    sh->fail_next = 0;
    if (fail) {
        /* Whatever was not durable is gone, whatever a later flush
         * says. */
        if (fstat(fd, &st) != 0) {
            _exit(91);
        }
        if (sh->nlost < MAX_LOST) {
            sh->lost[sh->nlost].file = f;
            sh->lost[sh->nlost].lo = sh->durable[f];
            sh->lost[sh->nlost].hi = st.st_size;
            sh->nlost++;
        }
        sh->fails++;
        pthread_mutex_unlock(&sh->model);
        errno = sh->fail_errno ? sh->fail_errno : EIO;
        return -1;
    }
    if (before > sh->durable[f]) {
        sh->durable[f] = before;
    }
    pthread_mutex_unlock(&sh->model);
    return 0;
}

/* 1 if the model disk kept [off, end) of file f. */
static int kept(int f, int64_t off, int64_t end)
{
    unsigned i;
    int ok;

    pthread_mutex_lock(&sh->model);
    ok = end <= sh->durable[f];
    for (i = 0; ok && i < sh->nlost; i++) {
        if (sh->lost[i].file == f && off < sh->lost[i].hi
            && end > sh->lost[i].lo) {
            ok = 0;
        }
    }
    pthread_mutex_unlock(&sh->model);
    return ok;
}

static void setup_model(void)
{
    shared_open();
    ptm_sync_test_flush = model_flush;
}

/* ---- one process ------------------------------------------------------- */

static void test_one_line(void **state)
{
    ptm_sync_line_t l;
    ptm_sync_stats_t s;
    int64_t off, end;

    (void)state;
    setup_model();
    append(&l, 0, 0, &off, &end);
    assert_false(kept(0, off, end));
    assert_int_equal(ptm_sync_wait(board, &l, fds[0]), APR_SUCCESS);
    assert_true(kept(0, off, end));
    assert_int_equal(sh->flushes, 1);
    /* Asked again: known covered, no second flush. */
    assert_int_equal(ptm_sync_wait(board, &l, fds[0]), APR_SUCCESS);
    assert_int_equal(sh->flushes, 1);
    ptm_sync_stats(board, &s);
    assert_int_equal(s.flushes, 1);
    assert_int_equal(s.lines, 2);
    assert_int_equal(s.failures, 0);
    shared_close();
}

/* Five lines, one flush: the last line's waiter flushes for all. */
static void test_one_flush_for_all_before(void **state)
{
    ptm_sync_line_t l[5];
    int i;

    (void)state;
    setup_model();
    for (i = 0; i < 5; i++) {
        append(&l[i], 0, 0, NULL, NULL);
    }
    assert_int_equal(ptm_sync_wait(board, &l[4], fds[0]), APR_SUCCESS);
    for (i = 0; i < 4; i++) {
        assert_int_equal(ptm_sync_wait(board, &l[i], fds[0]), APR_SUCCESS);
    }
    assert_int_equal(sh->flushes, 1);
    shared_close();
}

/* A line written while a flush runs is not covered by it. */
static void test_line_during_flush_not_covered(void **state)
{
    ptm_sync_line_t a;
    unsigned before;

    (void)state;
    setup_model();
    append(&a, 0, 0, NULL, NULL);
    sh->append_in_flush = 1;
    sh->in_flush_fd_file = 0;
    assert_int_equal(ptm_sync_wait(board, &a, fds[0]), APR_SUCCESS);
    assert_int_equal(sh->flushes, 1);
    before = sh->flushes;
    assert_int_equal(ptm_sync_wait(board, &sh->in_flush_line, fds[0]),
                     APR_SUCCESS);
    assert_int_equal(sh->flushes, before + 1);
    shared_close();
}

/* A failed flush fails every line written before it, also those another
 * waiter flushed for, and a later good flush does not change that; lines
 * written after it are flushed again. */
static void test_failed_flush_fails_all_before(void **state)
{
    ptm_sync_line_t l[3], after;
    ptm_sync_stats_t s;
    int i;

    (void)state;
    setup_model();
    for (i = 0; i < 3; i++) {
        append(&l[i], 0, 0, NULL, NULL);
    }
    sh->fail_next = 1;
    assert_int_equal(ptm_sync_wait(board, &l[2], fds[0]),
                     APR_FROM_OS_ERROR(EIO));
    assert_int_equal(sh->flushes, 1);
    for (i = 0; i < 2; i++) {
        assert_int_equal(ptm_sync_wait(board, &l[i], fds[0]),
                         APR_FROM_OS_ERROR(EIO));
    }
    assert_int_equal(sh->flushes, 1);      /* nobody tried again */
    append(&after, 0, 0, NULL, NULL);
    assert_int_equal(ptm_sync_wait(board, &after, fds[0]), APR_SUCCESS);
    assert_int_equal(sh->flushes, 2);
    /* The good flush covered the old lines' bytes too: still failed. */
    for (i = 0; i < 3; i++) {
        assert_int_equal(ptm_sync_wait(board, &l[i], fds[0]),
                         APR_FROM_OS_ERROR(EIO));
    }
    ptm_sync_stats(board, &s);
    assert_int_equal(s.failures, 1);
    assert_int_equal(s.flushes, 2);
    shared_close();
}

/* The errseq case: a line written while a flush was failing (its page may
 * have been in that writeback) is failed too, though the next flush (on a
 * descriptor that already reported the error) says all is well. */
static void test_line_written_during_failed_flush(void **state)
{
    ptm_sync_line_t a;

    (void)state;
    setup_model();
    append(&a, 0, 0, NULL, NULL);
    sh->append_in_flush = 1;
    sh->in_flush_fd_file = 0;
    sh->fail_next = 1;
    assert_int_equal(ptm_sync_wait(board, &a, fds[0]),
                     APR_FROM_OS_ERROR(EIO));
    assert_int_equal(ptm_sync_wait(board, &sh->in_flush_line, fds[0]),
                     APR_FROM_OS_ERROR(EIO));
    shared_close();
}

/* A flush of one file never covers another's lines (a day file that
 * rotated, a new run): each is flushed with its own descriptor. */
static void test_files_apart(void **state)
{
    ptm_sync_line_t a, b, a2;

    (void)state;
    setup_model();
    append(&a, 0, 0, NULL, NULL);
    append(&b, 1, 0, NULL, NULL);
    append(&a2, 0, 0, NULL, NULL);          /* back to the first file */
    assert_int_equal(a.gen, a2.gen);
    assert_true(a.gen != b.gen);
    assert_int_equal(ptm_sync_wait(board, &a2, fds[0]), APR_SUCCESS);
    assert_int_equal(ptm_sync_wait(board, &a, fds[0]), APR_SUCCESS);
    assert_int_equal(sh->flushes, 1);
    assert_int_equal(sh->durable[1], 0);
    assert_int_equal(ptm_sync_wait(board, &b, fds[1]), APR_SUCCESS);
    assert_int_equal(sh->flushes, 2);
    assert_true(sh->durable[1] > 0);
    shared_close();
}

/* The streams keep apart too: a site flush does not cover a run line,
 * and a run failure does not fail a site line written before it. */
static void test_streams_apart(void **state)
{
    ptm_sync_line_t site, run;

    (void)state;
    setup_model();
    append(&site, 0, 0, NULL, NULL);
    append(&run, 1, 1, NULL, NULL);
    sh->fail_next = 1;
    assert_int_equal(ptm_sync_wait(board, &run, fds[1]),
                     APR_FROM_OS_ERROR(EIO));
    assert_int_equal(ptm_sync_wait(board, &site, fds[0]), APR_SUCCESS);
    shared_close();
}

/* One line in a new file of stream 0 (made here), flushed at once with
 * `flush`.  Returns the wait's status (APR_SUCCESS without `flush`). */
static apr_status_t line_in_new_file(int i, int flush)
{
    char *p = apr_psprintf(gpool, "%s/other%d", dir, i);
    int fd = open(p, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    ptm_sync_line_t l;
    struct stat st;
    apr_status_t rv = APR_SUCCESS;
    uint64_t t;

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    lock();
    t = ptm_sync_ticket_locked(board, 0);
    assert_int_equal(write(fd, "x\n", 2), 2);
    ptm_sync_written_locked(board, &l, 0, t, st.st_dev, st.st_ino);
    unlock();
    if (flush) {
        rv = ptm_sync_wait(board, &l, fd);
    }
    close(fd);
    return rv;
}

/* An entry given to another file before its lines were flushed: they
 * cannot be confirmed any more and fail.  Entries whose lines were all
 * flushed are given away without a failure. */
static void test_entry_reused(void **state)
{
    ptm_sync_line_t first, l;
    ptm_sync_stats_t s;
    int i;

    (void)state;
    setup_model();
    append(&first, 0, 0, NULL, NULL);       /* waits, not flushed */
    for (i = 0; i < PTM_SYNC_FILES; i++) {
        assert_int_equal(line_in_new_file(i, 0), APR_SUCCESS);
    }
    assert_int_equal(ptm_sync_wait(board, &first, fds[0]),
                     PTM_SYNC_UNCONFIRMED);
    ptm_sync_stats(board, &s);
    assert_int_equal(s.unconfirmed, 1);
    assert_int_equal(sh->flushes, 0);
    /* The first file comes back as a new entry, and works. */
    append(&l, 0, 0, NULL, NULL);
    assert_int_equal(ptm_sync_wait(board, &l, fds[0]), APR_SUCCESS);
    /* New files, each line flushed: they take the entries of the files
     * above, whose lines nobody waited for (as a waiter killed would
     * leave them): those are counted unconfirmed, nothing else fails. */
    for (i = 0; i < PTM_SYNC_FILES; i++) {
        assert_int_equal(line_in_new_file(100 + i, 1), APR_SUCCESS);
    }
    ptm_sync_stats(board, &s);
    assert_int_equal(s.unconfirmed, 1 + PTM_SYNC_FILES);
    /* Entries whose lines were all flushed are given away quietly. */
    for (i = 0; i < 2 * PTM_SYNC_FILES; i++) {
        assert_int_equal(line_in_new_file(200 + i, 1), APR_SUCCESS);
    }
    ptm_sync_stats(board, &s);
    assert_int_equal(s.unconfirmed, 1 + PTM_SYNC_FILES);
    shared_close();
}

/* A line keeps the error of the first failure that covered it, whatever
 * fails after it: an entry reused after a failed flush does not turn its
 * EIO into "unconfirmed", nor another flush's failure into that one's
 * errno; lines that only the later failure covered get its error. */
static void test_first_error_kept(void **state)
{
    ptm_sync_line_t a, b;
    ptm_sync_stats_t s;
    int i;

    (void)state;
    setup_model();
    append(&a, 0, 0, NULL, NULL);
    sh->fail_next = 1;
    assert_int_equal(ptm_sync_wait(board, &a, fds[0]),
                     APR_FROM_OS_ERROR(EIO));
    /* a's file (never flushed well) loses its entry: unconfirmed too. */
    for (i = 0; i < PTM_SYNC_FILES; i++) {
        assert_int_equal(line_in_new_file(i, 0), APR_SUCCESS);
    }
    ptm_sync_stats(board, &s);
    assert_int_equal(s.unconfirmed, 1);
    assert_int_equal(ptm_sync_wait(board, &a, fds[0]),
                     APR_FROM_OS_ERROR(EIO));
    /* Another failure, of another errno: a keeps its own. */
    append(&b, 1, 0, NULL, NULL);
    sh->fail_next = 1;
    sh->fail_errno = ENOSPC;
    assert_int_equal(ptm_sync_wait(board, &b, fds[1]),
                     APR_FROM_OS_ERROR(ENOSPC));
    assert_int_equal(ptm_sync_wait(board, &a, fds[0]),
                     APR_FROM_OS_ERROR(EIO));
    assert_int_equal(ptm_sync_wait(board, &b, fds[1]),
                     APR_FROM_OS_ERROR(ENOSPC));
    shared_close();
}

/* The reverse: a line that could not be confirmed (its entry reused) says
 * so, though a failed flush later covers it as well. */
static void test_unconfirmed_kept(void **state)
{
    ptm_sync_line_t u, x;
    int i;

    (void)state;
    setup_model();
    append(&u, 0, 0, NULL, NULL);
    for (i = 0; i < PTM_SYNC_FILES; i++) {
        assert_int_equal(line_in_new_file(i, 0), APR_SUCCESS);
    }
    append(&x, 1, 0, NULL, NULL);
    sh->fail_next = 1;
    assert_int_equal(ptm_sync_wait(board, &x, fds[1]),
                     APR_FROM_OS_ERROR(EIO));
    assert_int_equal(ptm_sync_wait(board, &u, fds[0]),
                     PTM_SYNC_UNCONFIRMED);
    shared_close();
}

/* A line that waits while many more failures come (more than the board
 * remembers) still fails, with the error of one that covered it. */
static void test_many_failures_still_fail(void **state)
{
    ptm_sync_line_t a, b;
    apr_status_t rv;
    int i;

    (void)state;
    setup_model();
    append(&a, 0, 0, NULL, NULL);
    sh->fail_next = 1;
    assert_int_equal(ptm_sync_wait(board, &a, fds[0]),
                     APR_FROM_OS_ERROR(EIO));
    sh->fail_errno = ENOSPC;
    for (i = 0; i < 40; i++) {
        append(&b, 0, 0, NULL, NULL);
        sh->fail_next = 1;
        assert_int_equal(ptm_sync_wait(board, &b, fds[0]),
                         APR_FROM_OS_ERROR(ENOSPC));
    }
    rv = ptm_sync_wait(board, &a, fds[0]);
    assert_true(rv == APR_FROM_OS_ERROR(EIO)
                || rv == APR_FROM_OS_ERROR(ENOSPC));
    append(&b, 0, 0, NULL, NULL);
    assert_int_equal(ptm_sync_wait(board, &b, fds[0]), APR_SUCCESS);
    shared_close();
}

/* ---- several processes ------------------------------------------------- */

static void wait_children(pid_t *pids, int n)
{
    int i, status;

    for (i = 0; i < n; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fail_msg("child %d: %s %d", i,
                     WIFEXITED(status) ? "exit" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status)
                                       : WTERMSIG(status));
        }
    }
}

/* A flusher killed in the middle of its flush never hands its token back:
 * its waiters take it over and are answered. */
static void test_flusher_killed(void **state)
{
    ptm_sync_line_t a, b;
    pid_t pid;
    int status, i;

    (void)state;
    setup_model();
    append(&a, 0, 0, NULL, NULL);
    sh->block = 1;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        child_signals();
        reopen_files();
        ptm_sync_wait(board, &a, fds[0]);   /* blocks in the flush */
        _exit(1);
    }
    for (i = 0; i < 500 && !__atomic_load_n(&sh->blocked, __ATOMIC_SEQ_CST);
         i++) {
        usleep(10000);
    }
    assert_true(sh->blocked);
    sh->block = 0;
    append(&b, 0, 0, NULL, NULL);
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(ptm_sync_wait(board, &b, fds[0]), APR_SUCCESS);
    assert_int_equal(ptm_sync_wait(board, &a, fds[0]), APR_SUCCESS);
    assert_true(kept(0, 0, sh->durable[0]) && sh->durable[0] > 0);
    shared_close();
}

/* The exec'd image of test_flusher_pid_reused: `arg` is "<memfd>:<path
 * of file 0>".  Waits for the line the test left on the board; exit 0
 * if it was answered success. */
static int reused_pid_waiter(const char *arg)
{
    size_t size = sizeof(shared_t) + ptm_sync_size();
    char *colon;
    int mfd, fd;

    mfd = (int)strtol(arg, &colon, 10);
    if (*colon != ':') {
        return 3;
    }
    sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (sh == MAP_FAILED) {
        return 4;
    }
    board = (ptm_sync_t *)sh->board;
    if (!ptm_sync_is_ours(board)
        || (fd = open(colon + 1, O_RDWR | O_APPEND | O_CLOEXEC)) < 0) {
        return 5;
    }
    ptm_sync_test_flush = model_flush;
    return ptm_sync_wait(board, &sh->reused_line, fd) == APR_SUCCESS ? 0 : 6;
}

static void *flush_in_thread(void *arg)
{
    ptm_sync_wait(board, arg, fds[0]);      /* blocks in the flush */
    return NULL;
}

/* A flusher whose process ended in the middle of its flush, and whose pid
 * was then given to a new process before any other waiter took the flush
 * over: the new process's waiter takes it over (its own pid in the token
 * does not make the flush its own) and is answered.  The pid reuse is an
 * exec: the same pid, nothing else of the old process (its flushing
 * thread ends with it).  Bounded: a waiter that naps forever fails the
 * test after 5 s. */
static void test_flusher_pid_reused(void **state)
{
    char self[4096], env[4200];
    ptm_sync_line_t a;
    int64_t off, end;
    ssize_t n;
    pid_t pid;
    int status = 0, i;

    (void)state;
    /* The test binary (under valgrind, the program, not valgrind). */
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    assert_true(n > 0);
    self[n] = '\0';
    setup_model();
    append(&a, 0, 0, &off, &end);
    sh->reused_line = a;
    snprintf(env, sizeof(env), "%d:%s", sh_fd, paths[0]);
    sh->block = 1;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pthread_t th;
        char *argv[] = { self, NULL };

        child_signals();
        reopen_files();
        CHILD_CHECK(pthread_create(&th, NULL, flush_in_thread, &a) == 0, 1);
        for (i = 0; i < 500
                    && !__atomic_load_n(&sh->blocked, __ATOMIC_SEQ_CST);
             i++) {
            usleep(10000);
        }
        CHILD_CHECK(sh->blocked, 2);
        __atomic_store_n(&sh->block, 0, __ATOMIC_SEQ_CST);
        setenv("PTM_SYNC_TEST_REUSED_PID", env, 1);
        execv(self, argv);
        _exit(7);
    }
    for (i = 0; i < 500 && waitpid(pid, &status, WNOHANG) == 0; i++) {
        usleep(10000);
    }
    if (i == 500) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("the waiter of a process with a dead flusher's pid still "
                 "waits after 5 s");
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_msg("the waiter with a dead flusher's pid: %s %d",
                 WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    assert_true(kept(0, off, end));
    /* Answered here too, without another flush. */
    i = (int)sh->flushes;
    assert_int_equal(ptm_sync_wait(board, &a, fds[0]), APR_SUCCESS);
    assert_int_equal(sh->flushes, (unsigned)i);
    shared_close();
}

#define NPROC 4
#define NLINES 300

/* Writers in NPROC processes (descriptors of their own), lines spread
 * over NFILES files and both streams, flushes that take time and, with
 * `fail_every`, fail now and then.  Every wait returns; one that says
 * success has its line kept by the model disk; flushes were shared. */
static void many(unsigned fail_every)
{
    pid_t pids[NPROC];
    int k;

    setup_model();
    sh->delay_us = 300;
    sh->fail_every = fail_every;
    for (k = 0; k < NPROC; k++) {
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            unsigned i, good = 0, bad = 0;

            child_signals();
            reopen_files();
            srand((unsigned)getpid());
            for (i = 0; i < NLINES; i++) {
                ptm_sync_line_t l;
                int64_t off, end;
                int f, stream;
                apr_status_t rv;

                /* Files change every 40 lines, as a day file rotates or a
                 * run starts; a few lines go to the other stream. */
                lock();
                f = (int)((i / 40) % NFILES);
                stream = f == 2;
                append_locked(&l, f, stream, &off, &end);
                unlock();
                rv = ptm_sync_wait(board, &l, fds[f]);
                if (rv == APR_SUCCESS) {
                    CHILD_CHECK(kept(f, off, end), 10);
                    good++;
                }
                else {
                    CHILD_CHECK(rv == APR_FROM_OS_ERROR(EIO), 11);
                    bad++;
                }
            }
            CHILD_CHECK(good > 0, 12);
            CHILD_CHECK(fail_every || bad == 0, 13);
            _exit(0);
        }
    }
    wait_children(pids, NPROC);
    /* Shared: far fewer flushes than lines. */
    print_message("    %u lines, %u flushes, %u failed\n", NPROC * NLINES,
                  sh->flushes, sh->fails);
    assert_true(sh->flushes < NPROC * NLINES);
    if (fail_every) {
        assert_true(sh->fails > 0);
    }
    shared_close();
}

static void test_many_processes(void **state)
{
    (void)state;
    many(0);
}

static void test_many_processes_failing(void **state)
{
    (void)state;
    many(7);
}

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_one_line),
        T(test_one_flush_for_all_before),
        T(test_line_during_flush_not_covered),
        T(test_failed_flush_fails_all_before),
        T(test_line_written_during_failed_flush),
        T(test_files_apart),
        T(test_streams_apart),
        T(test_entry_reused),
        T(test_first_error_kept),
        T(test_unconfirmed_kept),
        T(test_many_failures_still_fail),
        T(test_flusher_killed),
        T(test_flusher_pid_reused),
        T(test_many_processes),
        T(test_many_processes_failing),
    };
    const char *reused = getenv("PTM_SYNC_TEST_REUSED_PID");
    int i;

    if (reused) {
        return reused_pid_waiter(reused);
    }
    for (i = 0; i < NFILES; i++) {
        fds[i] = -1;
    }
    return cmocka_run_group_tests_name("ptm_sync", tests, group_setup,
                                       group_teardown);
}

/* Unit tests for ptm_ndjson (SPEC §4, §5, §11.4): mkdir -p, opening for
 * append (and recreating a deleted directory), one-write appends that
 * leave nothing behind when they fail (EFBIG through RLIMIT_FSIZE, ENOSPC
 * on /dev/full and, as root, on a tiny tmpfs), and finding the last seq of
 * a file while cutting a line a crash left unfinished.
 *
 * Everything runs on real files in a fresh temporary directory per test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include "ptm_fs.h"
#include "ptm_ndjson.h"

/* One temporary directory and pool per test. */
typedef struct {
    apr_pool_t *p;
    char *dir;
    char *mnt;              /* a tmpfs mounted by the test, if any */
} fx_t;

/* The fixture a failed test left open (cmocka longjmps past fx_close). */
static fx_t *open_fx;

static void fx_open(fx_t *fx)
{

    memset(fx, 0, sizeof(*fx));
    open_fx = fx;
    assert_int_equal(apr_pool_create(&fx->p, gpool), APR_SUCCESS);
    fx->dir = ptm_unit_tmpdir(fx->p, "ptm_ndjson_test");
}

static void fx_close(fx_t *fx)
{
    open_fx = NULL;
    if (fx->mnt) {
        umount2(fx->mnt, MNT_DETACH);
        fx->mnt = NULL;
    }
    if (fx->dir) {
        rm_rf(fx->dir);
    }
    apr_pool_destroy(fx->p);
}

static int test_teardown(void **state)
{
    ptm_unit_reset_fsize();
    if (open_fx) {
        fx_close(open_fx);
    }
    return 0;
}

static const char *path_in(fx_t *fx, const char *rel)
{
    return apr_pstrcat(fx->p, fx->dir, "/", rel, NULL);
}

static void check_file(fx_t *fx, const char *path, const char *want,
                       size_t want_len)
{
    size_t len;
    const char *got = slurp(path, &len, fx->p);

    if (!got) {
        fail_msg("%s does not exist", path);
    }
    if (len != want_len || memcmp(got, want, len) != 0) {
        fail_msg("%s: %zu bytes, want %zu:\n  got  %.200s\n  want %.200s",
                 path, len, want_len, got, want);
    }
}

static int is_dir(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int ndjson_group_setup(void **state)
{
    /* SIGXFSZ would kill us where we want EFBIG. */
    signal(SIGXFSZ, SIG_IGN);
    return group_setup(state);
}

/* ---- ptm_fs_mkdirs --------------------------------------------------- */

static void test_mkdirs(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    static const struct {
        const char *what;
        const char *pre_dirs;   /* made first (mkdir -p), or NULL */
        const char *pre_file;   /* a regular file made first, or NULL */
        const char *dir;        /* what to create */
        apr_status_t want;
    } cases[] = {
        { "one new level", NULL, NULL, "a", APR_SUCCESS },
        { "several new levels", NULL, NULL, "b/c/d/e", APR_SUCCESS },
        { "already there", "f/g", NULL, "f/g", APR_SUCCESS },
        { "part already there", "h", NULL, "h/i/j", APR_SUCCESS },
        { "trailing slash", NULL, NULL, "k/l/", APR_SUCCESS },
        { "double slash", NULL, NULL, "m//n", APR_SUCCESS },
        { "a file in the way", NULL, "o", "o", APR_ENOTDIR },
        { "a file as a parent", NULL, "p", "p/q/r", APR_ENOTDIR },
        { "a file deeper down", "s", "s/t", "s/t/u", APR_ENOTDIR },
    };
    mode_t old = umask(022);
    size_t i;

    fx_open(&fx);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *dir = path_in(&fx, cases[i].dir);
        apr_status_t rv;

        if (cases[i].pre_dirs) {
            assert_int_equal(ptm_fs_mkdirs(path_in(&fx, cases[i].pre_dirs),
                                               fx.p), APR_SUCCESS);
        }
        if (cases[i].pre_file) {
            ptm_unit_put_file(path_in(&fx, cases[i].pre_file), "x", 1);
        }
        rv = ptm_fs_mkdirs(dir, fx.p);
        if (rv != cases[i].want) {
            fail_msg("%s: status %d, want %d", cases[i].what, rv,
                     cases[i].want);
        }
        if (cases[i].want == APR_SUCCESS) {
            struct stat sb;

            assert_true(is_dir(dir));
            assert_int_equal(stat(dir, &sb), 0);
            /* 0777 less the umask, like Path.mkdir. */
            assert_int_equal(sb.st_mode & 07777, 0755);
            /* Again: still fine. */
            assert_int_equal(ptm_fs_mkdirs(dir, fx.p), APR_SUCCESS);
        }
        else {
            assert_false(is_dir(dir));
        }
    }
    /* The umask is honoured. */
    umask(077);
    assert_int_equal(ptm_fs_mkdirs(path_in(&fx, "v/w"), fx.p),
                     APR_SUCCESS);
    {
        struct stat sb;

        assert_int_equal(stat(path_in(&fx, "v/w"), &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0700);
        assert_int_equal(stat(path_in(&fx, "v"), &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0700);
    }
    umask(old);
    fx_close(&fx);
}

/* Only an unprivileged user can be refused. */
static void test_mkdirs_permission_denied(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */

    if (geteuid() == 0) {
        skip();
    }
    fx_open(&fx);
    assert_int_equal(mkdir(path_in(&fx, "ro"), 0500), 0);
    assert_int_equal(ptm_fs_mkdirs(path_in(&fx, "ro/a/b"), fx.p),
                     APR_EACCES);
    fx_close(&fx);
}

/* ---- ptm_ndjson_open ----------------------------------------------------- */

static void test_open(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    static const struct {
        const char *what;
        const char *pre_dirs;   /* made first, or NULL */
        const char *pre_file;   /* a regular file made first ("old\n") */
        const char *path;
        apr_status_t want;
        const char *want_content; /* after appending "new\n" */
    } cases[] = {
        { "new file, existing dir", "d1", NULL, "d1/f.ndjson", APR_SUCCESS,
          "new\n" },
        { "existing file is appended to", "d2", "d2/f.ndjson",
          "d2/f.ndjson", APR_SUCCESS, "old\nnew\n" },
        { "missing parent", NULL, NULL, "d3/f.ndjson", APR_SUCCESS,
          "new\n" },
        { "missing parents", NULL, NULL, "d4/x/y/f.ndjson", APR_SUCCESS,
          "new\n" },
        { "a directory", "d5/f.ndjson", NULL, "d5/f.ndjson",
          APR_FROM_OS_ERROR(EISDIR), NULL },
        { "a file as the parent", NULL, "d6", "d6/f.ndjson", APR_ENOTDIR,
          NULL },
        { "a file as a grandparent", NULL, "d7", "d7/x/f.ndjson",
          APR_ENOTDIR, NULL },
    };
    mode_t old = umask(022);
    size_t i;

    fx_open(&fx);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *path = path_in(&fx, cases[i].path);
        apr_status_t rv;
        int fd = -7;

        if (cases[i].pre_dirs) {
            assert_int_equal(ptm_fs_mkdirs(path_in(&fx, cases[i].pre_dirs),
                                               fx.p), APR_SUCCESS);
        }
        if (cases[i].pre_file) {
            ptm_unit_put_file(path_in(&fx, cases[i].pre_file), "old\n", 4);
        }
        rv = ptm_ndjson_open(&fd, path, fx.p);
        if (rv != cases[i].want) {
            fail_msg("%s: status %d, want %d", cases[i].what, rv,
                     cases[i].want);
        }
        if (rv == APR_SUCCESS) {
            struct stat sb;

            assert_true(fd >= 0);
            /* O_APPEND, readable and writable (an append looks at the
             * last byte), close-on-exec. */
            assert_true(fcntl(fd, F_GETFL) & O_APPEND);
            assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
            assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
            /* Appends go to the end wherever the offset is. */
            assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
            assert_int_equal(write(fd, "new\n", 4), 4);
            close(fd);
            check_file(&fx, path, cases[i].want_content,
                       strlen(cases[i].want_content));
            assert_int_equal(stat(path, &sb), 0);
            if (!cases[i].pre_file) {
                /* 0666 less the umask. */
                assert_int_equal(sb.st_mode & 07777, 0644);
            }
        }
    }
    umask(old);
    fx_close(&fx);
}

/* The run directory or the site directory is deleted while in use: the
 * next open makes it again, as upstream does before every write. */
static void test_open_recreates_deleted_dir(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *top, *dir, *path;
    int fd;

    fx_open(&fx);
    top = path_in(&fx, "site");
    dir = path_in(&fx, "site/runs/001");
    path = path_in(&fx, "site/runs/001/telemetry.ndjson");
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    assert_int_equal(write(fd, "one\n", 4), 4);
    close(fd);
    check_file(&fx, path, "one\n", 4);

    /* The file's own directory goes. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    assert_true(is_dir(dir));
    assert_int_equal(write(fd, "two\n", 4), 4);
    close(fd);
    check_file(&fx, path, "two\n", 4);

    /* The whole tree goes. */
    rm_rf(top);
    assert_false(is_dir(top));
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    assert_int_equal(write(fd, "three\n", 6), 6);
    close(fd);
    check_file(&fx, path, "three\n", 6);

    /* An open descriptor on a deleted file keeps writing to the deleted
     * file; a new open makes a new one. */
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    rm_rf(top);
    assert_int_equal(write(fd, "lost\n", 5), 5);
    close(fd);
    assert_false(is_dir(top));
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    close(fd);
    check_file(&fx, path, "", 0);
    fx_close(&fx);
}

/* ---- ptm_ndjson_append --------------------------------------------------- */

/* `line` split into up to five pieces at the given cut points, as the
 * store passes a line (head, ts, stream, body, newline). */
static int split_iov(struct iovec *iov, const char *line, size_t len,
                     const size_t *cuts, int ncuts)
{
    size_t at = 0;
    int n = 0, i;

    for (i = 0; i < ncuts && cuts[i] < len; i++) {
        iov[n].iov_base = (void *)(line + at);
        iov[n].iov_len = cuts[i] - at;
        at = cuts[i];
        n++;
    }
    iov[n].iov_base = (void *)(line + at);
    iov[n].iov_len = len - at;
    return n + 1;
}

static const char *mkline(apr_pool_t *p, uint64_t seq, size_t pad)
{
    char *fill = apr_palloc(p, pad + 1);

    memset(fill, 'x', pad);
    fill[pad] = '\0';
    return apr_psprintf(p, "{\"seq\":%" PRIu64 ",\"data\":\"%s\"}\n", seq,
                        fill);
}

static void test_append(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    static const struct {
        size_t pad;
        size_t cuts[4];
        int ncuts;
        int sync;
    } cases[] = {
        { 0, { 0 }, 0, 0 },
        { 10, { 8, 20, 25 }, 3, 0 },
        { 10, { 8, 20, 25, 30 }, 4, 1 },
        { 5000, { 8, 100, 4000, 5005 }, 4, 0 },      /* past PIPE_BUF */
        { 70000, { 8, 30, 69000 }, 3, 1 },
        { 1, { 1, 2, 3, 4 }, 4, 0 },
    };
    const char *path, *want = "";
    size_t i;
    int fd;

    fx_open(&fx);
    path = path_in(&fx, "f.ndjson");
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *line = mkline(fx.p, i + 1, cases[i].pad);
        struct iovec iov[5];
        int n = split_iov(iov, line, strlen(line), cases[i].cuts,
                          cases[i].ncuts);

        assert_int_equal(ptm_ndjson_append(fd, iov, n, cases[i].sync),
                         APR_SUCCESS);
        want = apr_pstrcat(fx.p, want, line, NULL);
        check_file(&fx, path, want, strlen(want));
    }
    close(fd);
    fx_close(&fx);
}

#define ANY_ERROR ((apr_status_t)-1)

/* A failure of any kind leaves the file exactly as it was, and the next
 * append starts a line of its own. */
static void check_append_fails(fx_t *fx, int fd, const char *path,
                               size_t pad, apr_status_t want, int sync,
                               const char *what)
{
    const char *line = mkline(fx->p, 999, pad);
    size_t before_len, after_len;
    const char *before = slurp(path, &before_len, fx->p), *after;
    struct iovec iov[5];
    static const size_t cuts[] = { 8, 12, 20 };
    int n = split_iov(iov, line, strlen(line), cuts, 3);
    apr_status_t rv;

    rv = ptm_ndjson_append(fd, iov, n, sync);
    if (rv == APR_SUCCESS || (want != ANY_ERROR && rv != want)) {
        fail_msg("%s: status %d (%s), want %d", what, rv,
                 strerror(rv), want);
    }
    after = slurp(path, &after_len, fx->p);
    if (after_len != before_len || memcmp(after, before, after_len) != 0) {
        fail_msg("%s: the file changed from %zu to %zu bytes", what,
                 before_len, after_len);
    }
    assert_true(after_len == 0 || after[after_len - 1] == '\n');
}

static void set_fsize(rlim_t n)
{
    struct rlimit rl;

    assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = n == RLIM_INFINITY ? rl.rlim_max : n;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

/* RLIMIT_FSIZE with SIGXFSZ ignored: the cheapest full disk, and it needs
 * no privileges.  The limit is lifted right after each append so that
 * nothing else (cmocka's output to a file) trips on it. */
static void test_append_efbig(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    static const struct {
        const char *what;
        rlim_t room;            /* bytes allowed past the current size */
        int all_but;            /* room: all of the line but this many */
        size_t pad;
        int sync;
        apr_status_t want;
    } cases[] = {
        /* No room at all: writev fails outright. */
        { "at the limit", 0, 0, 10, 0, APR_FROM_OS_ERROR(EFBIG) },
        { "at the limit, sync", 0, 0, 10, 1, APR_FROM_OS_ERROR(EFBIG) },
        /* Part of the line fits: a short write; the rest is written
         * again and fails with the errno that names the cause. */
        { "one byte of room", 1, 0, 10, 0, APR_FROM_OS_ERROR(EFBIG) },
        { "room for the head", 12, 0, 100, 0, APR_FROM_OS_ERROR(EFBIG) },
        { "all but the newline", 0, 1, 200, 0, APR_FROM_OS_ERROR(EFBIG) },
        { "all but the newline, sync", 0, 1, 200, 1, APR_FROM_OS_ERROR(EFBIG) },
        { "a long line, half of it", 35000, 0, 70000, 1, APR_FROM_OS_ERROR(EFBIG) },
    };
    const char *path, *want;
    struct iovec iov[1];
    size_t i, len;
    int fd;

    fx_open(&fx);
    path = path_in(&fx, "f.ndjson");
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    want = apr_pstrcat(fx.p, mkline(fx.p, 1, 20), mkline(fx.p, 2, 3000),
                       NULL);
    iov[0].iov_base = (void *)want;
    iov[0].iov_len = strlen(want);
    assert_int_equal(ptm_ndjson_append(fd, iov, 1, 0), APR_SUCCESS);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *line = mkline(fx.p, 999, cases[i].pad);
        const char *after;
        rlim_t room = cases[i].room;
        struct iovec v[5];
        static const size_t cuts[] = { 8, 12, 20 };
        int n = split_iov(v, line, strlen(line), cuts, 3);
        apr_status_t rv;

        if (cases[i].all_but) {
            room = strlen(line) - (size_t)cases[i].all_but;
        }
        slurp(path, &len, fx.p);
        set_fsize((rlim_t)len + room);
        rv = ptm_ndjson_append(fd, v, n, cases[i].sync);
        set_fsize(RLIM_INFINITY);
        if (rv != cases[i].want) {
            fail_msg("%s: status %d (%s), want %d", cases[i].what, rv,
                     strerror(rv), cases[i].want);
        }
        after = slurp(path, &len, fx.p);
        if (len != strlen(want) || memcmp(after, want, len) != 0) {
            fail_msg("%s: the file changed (%zu bytes, want %zu)",
                     cases[i].what, len, strlen(want));
        }
    }
    /* With room again the same descriptor works and the line is whole. */
    {
        const char *line = mkline(fx.p, 3, 100);

        iov[0].iov_base = (void *)line;
        iov[0].iov_len = strlen(line);
        assert_int_equal(ptm_ndjson_append(fd, iov, 1, 1), APR_SUCCESS);
        want = apr_pstrcat(fx.p, want, line, NULL);
        check_file(&fx, path, want, strlen(want));
    }
    close(fd);
    fx_close(&fx);
}

/* Other failures: a read-only or closed descriptor, /dev/full, and (as
 * root, where mounting is allowed) a really full tmpfs. */
static void test_append_other_failures(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *path, *line;
    struct iovec iov[1];
    int fd;

    fx_open(&fx);
    path = path_in(&fx, "f.ndjson");
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    line = mkline(fx.p, 1, 10);
    iov[0].iov_base = (void *)line;
    iov[0].iov_len = strlen(line);
    assert_int_equal(ptm_ndjson_append(fd, iov, 1, 0), APR_SUCCESS);
    close(fd);

    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    check_append_fails(&fx, fd, path, 10, APR_EBADF, 0, "O_RDONLY");
    close(fd);
    /* fd is closed now */
    check_append_fails(&fx, fd, path, 10, APR_EBADF, 0, "closed fd");

    fd = open("/dev/full", O_WRONLY | O_APPEND);
    if (fd >= 0) {
        check_append_fails(&fx, fd, path, 10, APR_FROM_OS_ERROR(ENOSPC), 0,
                           "/dev/full");
        check_append_fails(&fx, fd, path, 10, APR_FROM_OS_ERROR(ENOSPC), 1,
                           "/dev/full, sync");
        close(fd);
    }
    check_file(&fx, path, line, strlen(line));
    fx_close(&fx);
}

static void test_append_enospc_tmpfs(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *path, *want = "";
    struct iovec iov[1];
    size_t len;
    int fd, i, failed = 0;

    if (geteuid() != 0) {
        skip();
    }
    fx_open(&fx);
    fx.mnt = apr_pstrdup(fx.p, path_in(&fx, "mnt"));
    assert_int_equal(mkdir(fx.mnt, 0700), 0);
    if (mount("tmpfs", fx.mnt, "tmpfs", 0, "size=16k") != 0) {
        /* Root without CAP_SYS_ADMIN (a container): nothing to test. */
        fx.mnt = NULL;
        fx_close(&fx);
        skip();
    }
    path = apr_pstrcat(fx.p, fx.mnt, "/site/f.ndjson", NULL);
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    /* 16 KiB is four pages: lines of ~3 KiB fill it within a few. */
    for (i = 1; i < 20; i++) {
        const char *line = mkline(fx.p, (uint64_t)i, 3000);
        apr_status_t rv;

        iov[0].iov_base = (void *)line;
        iov[0].iov_len = strlen(line);
        rv = ptm_ndjson_append(fd, iov, 1, i % 2);
        if (rv == APR_SUCCESS) {
            assert_int_equal(failed, 0);
            want = apr_pstrcat(fx.p, want, line, NULL);
        }
        else {
            /* A short write (APR_EGENERAL) or ENOSPC, never anything
             * in the file. */
            if (rv != APR_FROM_OS_ERROR(ENOSPC) && rv != APR_EGENERAL) {
                fail_msg("line %d: status %d (%s)", i, rv, strerror(rv));
            }
            failed++;
        }
        check_file(&fx, path, want, strlen(want));
    }
    assert_true(failed > 0);
    slurp(path, &len, fx.p);
    assert_true(len > 0 && len < 16384);
    /* The lines that made it are whole, and stay so. */
    check_append_fails(&fx, fd, path, 20000, ANY_ERROR, 0, "big line");
    close(fd);
    assert_int_equal(umount2(fx.mnt, 0), 0);
    fx.mnt = NULL;
    fx_close(&fx);
}

/* A writer killed in the middle of its append (SIGKILL stops a write to a
 * regular file between pages) leaves part of a line: the next append, on
 * a descriptor from ptm_ndjson_open, cuts it off first, so that the new
 * line is not glued to it. */
static void test_append_cuts_partial_line(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *l1, *l2, *big;
    static const struct {
        const char *what;
        int whole;              /* complete lines before the partial one */
        size_t partial;         /* bytes of the partial line */
        size_t big_pad;         /* pad of the line it is part of */
    } cases[] = {
        { "a few bytes", 1, 5, 100 },
        { "all but the newline", 1, 0 /* computed */, 100 },
        { "a partial line over 8 KiB", 2, 9000, 20000 },
        { "a partial line over 64 KiB", 1, 70000, 100000 },
        { "only a partial line", 0, 3000, 5000 },
        { "only a brace", 0, 1, 10 },
    };
    size_t i;

    fx_open(&fx);
    l1 = mkline(fx.p, 1, 10);
    l2 = mkline(fx.p, 2, 8500);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *path = path_in(&fx, apr_psprintf(fx.p, "c%d.ndjson",
                                                     (int)i));
        const char *before = cases[i].whole == 0 ? ""
                             : cases[i].whole == 1 ? l1
                             : apr_pstrcat(fx.p, l1, l2, NULL);
        const char *line = mkline(fx.p, 9, 30);
        size_t cut = cases[i].partial;
        struct iovec iov[1];
        int fd;

        big = mkline(fx.p, 3, cases[i].big_pad);
        if (cut == 0) {
            cut = strlen(big) - 1;
        }
        ptm_unit_put_file(path, apr_pstrcat(fx.p, before,
                                   apr_pstrndup(fx.p, big, cut), NULL),
                 strlen(before) + cut);
        assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
        iov[0].iov_base = (void *)line;
        iov[0].iov_len = strlen(line);
        if (ptm_ndjson_append(fd, iov, 1, (int)(i % 2)) != APR_SUCCESS) {
            fail_msg("%s: append failed", cases[i].what);
        }
        close(fd);
        check_file(&fx, path, apr_pstrcat(fx.p, before, line, NULL),
                   strlen(before) + strlen(line));
    }

    /* A descriptor that cannot read cannot look: the line goes after
     * whatever is there (the module's own descriptors can read). */
    {
        const char *path = path_in(&fx, "wronly.ndjson");
        struct iovec iov[1];
        int fd;

        ptm_unit_put_file(path, "{\"seq\":1,", 9);
        fd = open(path, O_WRONLY | O_APPEND);
        assert_true(fd >= 0);
        iov[0].iov_base = (void *)l1;
        iov[0].iov_len = strlen(l1);
        assert_int_equal(ptm_ndjson_append(fd, iov, 1, 0), APR_SUCCESS);
        close(fd);
        check_file(&fx, path, apr_pstrcat(fx.p, "{\"seq\":1,", l1, NULL),
                   9 + strlen(l1));
    }
    fx_close(&fx);
}

/* A file the server may write but not read is still appended to. */
static void test_open_write_only_file(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *path;
    struct iovec iov[1];
    int fd;

    if (geteuid() == 0) {
        skip();     /* root reads everything */
    }
    fx_open(&fx);
    path = path_in(&fx, "w.ndjson");
    ptm_unit_put_file(path, "", 0);
    assert_int_equal(chmod(path, 0200), 0);
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_WRONLY);
    iov[0].iov_base = "{\"seq\":1}\n";
    iov[0].iov_len = 10;
    assert_int_equal(ptm_ndjson_append(fd, iov, 1, 0), APR_SUCCESS);
    close(fd);
    assert_int_equal(chmod(path, 0600), 0);
    check_file(&fx, path, "{\"seq\":1}\n", 10);
    fx_close(&fx);
}

/* ---- ptm_ndjson_last_seq ------------------------------------------------- */

static void test_last_seq(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    apr_pool_t *p;
    /* Each case: the file's content (built below), the seq wanted, and the
     * length of the complete lines (the file itself must be left as it was:
     * httpd's parent reads it as root, and the next append cuts a partial
     * last line). */
    struct {
        const char *what;
        const char *content;    /* NULL: no file */
        size_t len;
        uint64_t want;
        size_t want_len;
    } cases[48];
    const char *l1, *l2, *l3, *big8, *big64, *partial;
    size_t n = 0, i;

    fx_open(&fx);
    p = fx.p;
    l1 = "{\"seq\":1,\"ts\":\"x\",\"type\":\"a\"}\n";
    l2 = "{\"seq\":2,\"ts\":\"x\",\"type\":\"b\"}\n";
    l3 = "{\"seq\":12345678901234,\"ts\":\"x\"}\n";
    big8 = mkline(p, 77, 9000);
    big64 = mkline(p, 78, 70000);
    partial = "{\"seq\":99,\"ts\":\"2026-";

/* want_len UNCHANGED: the file must be left as it was. */
#define UNCHANGED ((size_t)-1)
#define CASE(w, c, s, wl)                                                   \
    do {                                                                    \
        cases[n].what = (w);                                                \
        cases[n].content = (c);                                             \
        cases[n].len = strlen(c);                                           \
        cases[n].want = (s);                                                \
        cases[n].want_len = (wl) == UNCHANGED ? cases[n].len : (wl);        \
        n++;                                                                \
    } while (0)

    /* No file at all: 0, and no file is made. */
    cases[n].what = "missing file";
    cases[n].content = NULL;
    cases[n].len = cases[n].want_len = 0;
    cases[n].want = 0;
    n++;
    CASE("empty", "", 0, UNCHANGED);
    CASE("one line", l1, 1, UNCHANGED);
    CASE("two lines", apr_pstrcat(p, l1, l2, NULL), 2, UNCHANGED);
    CASE("many lines, big seq", apr_pstrcat(p, l1, l2, l1, l2, l3, NULL),
         12345678901234u, UNCHANGED);
    CASE("last line over 8 KiB", apr_pstrcat(p, l1, big8, NULL), 77,
         UNCHANGED);
    CASE("only line over 8 KiB", big8, 77, UNCHANGED);
    CASE("last line over 64 KiB", apr_pstrcat(p, l1, l2, big64, NULL), 78,
         UNCHANGED);
    CASE("only line over 64 KiB", big64, 78, UNCHANGED);
    CASE("long line before a short one", apr_pstrcat(p, big64, l2, NULL), 2,
         UNCHANGED);
    CASE("trailing partial line cut", apr_pstrcat(p, l1, l2, partial, NULL),
         2, strlen(l1) + strlen(l2));
    CASE("trailing partial: just a brace", apr_pstrcat(p, l1, "{", NULL), 1,
         strlen(l1));
    CASE("trailing partial over 8 KiB cut",
         apr_pstrcat(p, l1, apr_pstrndup(p, big8, strlen(big8) - 1), NULL),
         1, strlen(l1));
    CASE("trailing partial over 64 KiB cut",
         apr_pstrcat(p, l2, big8, apr_pstrndup(p, big64, 66000), NULL), 77,
         strlen(l2) + strlen(big8));
    CASE("long line, then partial over 64 KiB cut",
         apr_pstrcat(p, big64, apr_pstrndup(p, big64, 69000), NULL), 78,
         strlen(big64));
    CASE("no newline at all", partial, 0, 0);
    CASE("no newline, over 8 KiB", apr_pstrndup(p, big8, 8500), 0, 0);
    CASE("no newline, over 64 KiB", apr_pstrndup(p, big64, 69999), 0, 0);
    CASE("not a seq line", "{\"ts\":\"x\",\"seq\":5}\n", 0, UNCHANGED);
    CASE("seq line, then not one", apr_pstrcat(p, l1, "hello\n", NULL), 0,
         UNCHANGED);
    CASE("space before the brace", " {\"seq\":5}\n", 0, UNCHANGED);
    CASE("seq as a string", "{\"seq\":\"5\"}\n", 0, UNCHANGED);
    CASE("just the head", "{\"seq\":42\n", 42, UNCHANGED);
    CASE("only a newline", "\n", 0, UNCHANGED);
#undef CASE

    /* Where the block walk turns: the last line, or the whole file, is
     * 8 KiB long or a byte or two either side. */
    {
        static const long deltas[] = { -2, -1, 0, 1, 2 };
        size_t d;

        for (d = 0; d < sizeof(deltas) / sizeof(deltas[0]); d++) {
            size_t total = (size_t)(8192 + deltas[d]);
            uint64_t sq = 500 + d;
            const char *c;

            /* A last line of exactly `total` bytes. */
            c = apr_pstrcat(p, l1, mkline(p, sq, total
                                          - strlen(mkline(p, sq, 0))), NULL);
            assert_int_equal(strlen(c), strlen(l1) + total);
            cases[n].what = apr_psprintf(p, "last line of %" APR_SIZE_T_FMT
                                         " bytes", total);
            cases[n].content = c;
            cases[n].len = strlen(c);
            cases[n].want = sq;
            cases[n].want_len = strlen(c);
            n++;
            /* A file of `total` bytes whose last line is short. */
            c = apr_pstrcat(p, mkline(p, sq, total - strlen(l2)
                                      - strlen(mkline(p, sq, 0))),
                            l2, NULL);
            assert_int_equal(strlen(c), total);
            cases[n].what = apr_psprintf(p, "file of %" APR_SIZE_T_FMT
                                         " bytes", total);
            cases[n].content = c;
            cases[n].len = total;
            cases[n].want = 2;
            cases[n].want_len = total;
            n++;
            /* A partial line that ends right there. */
            c = apr_pstrcat(p, l2, apr_pstrndup(p, big64, total
                                                - strlen(l2)), NULL);
            assert_int_equal(strlen(c), total);
            cases[n].what = apr_psprintf(p, "partial line to %"
                                         APR_SIZE_T_FMT " bytes", total);
            cases[n].content = c;
            cases[n].len = total;
            cases[n].want = 2;
            cases[n].want_len = strlen(l2);
            n++;
        }
    }
    assert_true(n <= sizeof(cases) / sizeof(cases[0]));

    for (i = 0; i < n; i++) {
        const char *path = path_in(&fx, apr_psprintf(p, "case%"
                                                     APR_SIZE_T_FMT ".ndjson",
                                                     i));
        uint64_t seq = 12345;
        size_t len;
        const char *after;
        apr_status_t rv;

        if (cases[i].content) {
            ptm_unit_put_file(path, cases[i].content, cases[i].len);
        }
        rv = ptm_ndjson_last_seq(&seq, path);
        if (rv != APR_SUCCESS) {
            fail_msg("%s: status %d", cases[i].what, rv);
        }
        if (seq != cases[i].want) {
            fail_msg("%s: seq %" PRIu64 ", want %" PRIu64, cases[i].what,
                     seq, cases[i].want);
        }
        after = slurp(path, &len, p);
        if (!cases[i].content) {
            /* Not created. */
            assert_null(after);
            continue;
        }
        if (len != cases[i].len
            || memcmp(after, cases[i].content, len) != 0) {
            fail_msg("%s: %zu bytes left, want all %zu", cases[i].what,
                     len, cases[i].len);
        }
        /* A second look finds the same. */
        assert_int_equal(ptm_ndjson_last_seq(&seq, path), APR_SUCCESS);
        assert_int_equal(seq, cases[i].want);
    }

    /* Errors: a directory, a path through a file. */
    {
        uint64_t seq = 5;

        assert_int_equal(ptm_ndjson_last_seq(&seq, fx.dir), APR_EINVAL);
        assert_int_equal(seq, 0);
        /* A link is not followed (root must not read through one a User
         * planted), a FIFO is not waited on. */
        ptm_unit_put_file(path_in(&fx, "target"), "{\"seq\":9}\n", 10);
        assert_int_equal(symlink(path_in(&fx, "target"),
                                 path_in(&fx, "link")), 0);
        seq = 5;
        assert_int_equal(ptm_ndjson_last_seq(&seq, path_in(&fx, "link")),
                         APR_FROM_OS_ERROR(ELOOP));
        assert_int_equal(seq, 0);
        assert_int_equal(mkfifo(path_in(&fx, "fifo"), 0600), 0);
        seq = 5;
        assert_int_equal(ptm_ndjson_last_seq(&seq, path_in(&fx, "fifo")),
                         APR_EINVAL);
        assert_int_equal(seq, 0);
        ptm_unit_put_file(path_in(&fx, "plain"), "x", 1);
        seq = 5;
        assert_int_equal(ptm_ndjson_last_seq(&seq, path_in(&fx, "plain/f")),
                         APR_ENOTDIR);
        assert_int_equal(seq, 0);
    }
    fx_close(&fx);
}

/* An append after a cut starts a line of its own. */
static void test_last_seq_then_append(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *path, *l1, *l2;
    struct iovec iov[1];
    uint64_t seq;
    int fd;

    fx_open(&fx);
    path = path_in(&fx, "f.ndjson");
    l1 = mkline(fx.p, 7, 10);
    l2 = mkline(fx.p, 8, 10);
    ptm_unit_put_file(path, apr_pstrcat(fx.p, l1, "{\"seq\":8,\"da", NULL),
             strlen(l1) + 12);
    assert_int_equal(ptm_ndjson_last_seq(&seq, path), APR_SUCCESS);
    assert_int_equal(seq, 7);
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    iov[0].iov_base = (void *)l2;
    iov[0].iov_len = strlen(l2);
    assert_int_equal(ptm_ndjson_append(fd, iov, 1, 0), APR_SUCCESS);
    close(fd);
    check_file(&fx, path, apr_pstrcat(fx.p, l1, l2, NULL),
               strlen(l1) + strlen(l2));
    assert_int_equal(ptm_ndjson_last_seq(&seq, path), APR_SUCCESS);
    assert_int_equal(seq, 8);
    fx_close(&fx);
}

/* Every test cleans up after itself, even when it fails. */
/* A file deleted after it was opened: the append refuses (the line would
 * go nowhere) with APR_ENOENT, and the caller's new open recreates it. */
static void test_append_deleted_file(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *path, *line;
    struct iovec iov[1];
    int fd, fd2;

    fx_open(&fx);
    path = path_in(&fx, "gone.ndjson");
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    assert_int_equal(unlink(path), 0);
    line = mkline(fx.p, 1, 0);
    iov[0].iov_base = (void *)line;
    iov[0].iov_len = strlen(line);
    assert_int_equal(ptm_ndjson_append(fd, iov, 1, 0), APR_ENOENT);
    assert_int_equal(ptm_ndjson_open(&fd2, path, fx.p), APR_SUCCESS);
    assert_int_equal(ptm_ndjson_append(fd2, iov, 1, 0), APR_SUCCESS);
    check_file(&fx, path, line, strlen(line));
    close(fd);
    close(fd2);
    fx_close(&fx);
}

/* Only the very empty file that fd has open is removed. */
/* ---- a stream's shared tail (ptm_lock.h's board) ------------------------- */

/* The tail is trusted only for the file and size it names: a file that
 * ends there is appended to without looking at its last byte (shown here
 * with a partial line the tail claims is not there: kept), any other
 * file, size or an unknown tail makes the append cut a partial line as
 * ever.  After each append the tail names the line's end; after a failure
 * it is unknown.  Through a process's open file too. */
static void test_append_tail(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    ptm_ndjson_tail_t tail;
    ptm_ndjson_file_t f;
    const char *path = NULL, *l1, *l2, *want;
    struct iovec iov[1];
    struct stat sb;
    int fd, i;

    fx_open(&fx);
    l1 = mkline(fx.p, 1, 10);
    l2 = mkline(fx.p, 2, 20);
    for (i = 0; i < 5; i++) {
        path = path_in(&fx, apr_psprintf(fx.p, "t%d.ndjson", i));
        ptm_unit_put_file(path, apr_pstrcat(fx.p, l1, "{\"seq\":", NULL),
                          strlen(l1) + 7);
        assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
        assert_int_equal(fstat(fd, &sb), 0);
        tail.dev = (uint64_t)sb.st_dev;
        tail.ino = (uint64_t)sb.st_ino;
        tail.end = (int64_t)sb.st_size;
        switch (i) {
        case 1:
            tail.end--;                 /* another size */
            break;
        case 2:
            tail.ino++;                 /* another file */
            break;
        case 3:
            tail.end = -1;              /* unknown */
            break;
        case 4:
            tail.dev++;
            break;
        }
        iov[0].iov_base = (void *)l2;
        iov[0].iov_len = strlen(l2);
        assert_int_equal(ptm_ndjson_append_tail(fd, iov, 1, 0, &tail),
                         APR_SUCCESS);
        want = i == 0 ? apr_pstrcat(fx.p, l1, "{\"seq\":", l2, NULL)
                      : apr_pstrcat(fx.p, l1, l2, NULL);
        check_file(&fx, path, want, strlen(want));
        assert_int_equal(tail.end, (int64_t)strlen(want));
        assert_int_equal(tail.ino, (uint64_t)sb.st_ino);
        assert_int_equal(tail.dev, (uint64_t)sb.st_dev);
        close(fd);
    }

    /* A failed append forgets it (a file size limit below the line). */
    {
        const char *big = mkline(fx.p, 3, 5000);

        assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
        set_fsize((rlim_t)(strlen(want) + 100));
        iov[0].iov_base = (void *)big;
        iov[0].iov_len = strlen(big);
        assert_true(ptm_ndjson_append_tail(fd, iov, 1, 0, &tail)
                    != APR_SUCCESS);
        set_fsize(RLIM_INFINITY);
        assert_int_equal(tail.end, -1);
        check_file(&fx, path, want, strlen(want));
        close(fd);
    }

    /* Through an open file: another process appended a whole line and
     * said so in the tail; then a partial line the tail knows nothing of
     * (a writer without the board, killed mid-line) is cut. */
    path = path_in(&fx, "f.ndjson");
    ptm_ndjson_file_init(&f);
    {
        struct iovec v[1];
        const char *step;

        v[0].iov_base = (void *)l1;
        v[0].iov_len = strlen(l1);
        tail.end = -1;
        assert_int_equal(ptm_ndjson_file_append_tail(&f, path, v, 1, 0, &tail,
                                                     &step, fx.p),
                         APR_SUCCESS);
        assert_int_equal(tail.end, (int64_t)strlen(l1));
        /* "Another process": a line, then the tail moved, then a partial
         * line the tail is told about (so trusted: kept). */
        fd = open(path, O_WRONLY | O_APPEND);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, l2, strlen(l2)), (ssize_t)strlen(l2));
        assert_int_equal(write(fd, "{\"x", 3), 3);
        tail.end += (int64_t)strlen(l2) + 3;
        assert_int_equal(ptm_ndjson_file_append_tail(&f, path, v, 1, 0, &tail,
                                                     &step, fx.p),
                         APR_SUCCESS);
        want = apr_pstrcat(fx.p, l1, l2, "{\"x", l1, NULL);
        check_file(&fx, path, want, strlen(want));
        /* Now a partial line behind the tail's back: cut. */
        assert_int_equal(write(fd, "{\"y", 3), 3);
        assert_int_equal(ptm_ndjson_file_append_tail(&f, path, v, 1, 0, &tail,
                                                     &step, fx.p),
                         APR_SUCCESS);
        want = apr_pstrcat(fx.p, want, l1, NULL);
        check_file(&fx, path, want, strlen(want));
        assert_int_equal(tail.end, (int64_t)strlen(want));
        close(fd);
    }
    ptm_ndjson_file_close(&f);
    fx_close(&fx);
}

/* ---- ptm_ndjson_file_append: a process's open stream file ---------------- */

/* Append `line` through `f`; returns the status, `*step` the failed step. */
static apr_status_t file_line(fx_t *fx, ptm_ndjson_file_t *f,
                              const char *path, const char *line,
                              const char **step)
{
    struct iovec v[5];
    static const size_t cuts[] = { 3, 9 };
    int n = split_iov(v, line, strlen(line), cuts, 2);
    const char *dummy;

    return ptm_ndjson_file_append(f, path, v, n, 0, step ? step : &dummy,
                                  fx->p);
}

/* The file stays open from line to line, and is opened again whenever the
 * path no longer names it as it was: renamed away (rotation), deleted,
 * its directory deleted, its mode changed, or another path asked for (a
 * new day, a new run).  A partial line another writer left is cut; a
 * whole line another writer added is kept. */
static void test_file_append(void **state)
{
    static fx_t fx;
    ptm_ndjson_file_t f;
    const char *path, *path2, *want, *l1, *l2, *l3, *l4, *l5, *l6;
    struct stat sb;
    int fd, other;

    fx_open(&fx);
    ptm_ndjson_file_init(&f);
    assert_int_equal(f.fd, -1);
    path = path_in(&fx, "site/site_20260317.ndjson");
    l1 = mkline(fx.p, 1, 10);
    l2 = mkline(fx.p, 2, 20);
    l3 = mkline(fx.p, 3, 30);

    /* Creates the directory and the file, and keeps it open. */
    assert_int_equal(file_line(&fx, &f, path, l1, NULL), APR_SUCCESS);
    fd = f.fd;
    assert_true(fd >= 0);
    assert_string_equal(f.path, path);
    assert_int_equal(f.end, (off_t)strlen(l1));
    assert_int_equal(file_line(&fx, &f, path, l2, NULL), APR_SUCCESS);
    assert_int_equal(f.fd, fd);
    want = apr_pstrcat(fx.p, l1, l2, NULL);
    check_file(&fx, path, want, strlen(want));

    /* Another writer's whole line is kept; its partial line is cut. */
    other = open(path, O_WRONLY | O_APPEND);
    assert_true(other >= 0);
    assert_int_equal(write(other, l3, strlen(l3)), (ssize_t)strlen(l3));
    assert_int_equal(write(other, "{\"seq\":99,\"ts", 14), 14);
    close(other);
    l4 = mkline(fx.p, 4, 40);
    assert_int_equal(file_line(&fx, &f, path, l4, NULL), APR_SUCCESS);
    assert_int_equal(f.fd, fd);
    want = apr_pstrcat(fx.p, l1, l2, l3, l4, NULL);
    check_file(&fx, path, want, strlen(want));

    /* Renamed away: the next line starts a new file at the path. */
    path2 = path_in(&fx, "site/site_20260317.ndjson.1");
    assert_int_equal(rename(path, path2), 0);
    l5 = mkline(fx.p, 5, 50);
    assert_int_equal(file_line(&fx, &f, path, l5, NULL), APR_SUCCESS);
    check_file(&fx, path2, want, strlen(want));
    check_file(&fx, path, l5, strlen(l5));

    /* Deleted, then its directory deleted: created again each time. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(file_line(&fx, &f, path, l1, NULL), APR_SUCCESS);
    check_file(&fx, path, l1, strlen(l1));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(unlink(path2), 0);
    assert_int_equal(rmdir(path_in(&fx, "site")), 0);
    assert_int_equal(file_line(&fx, &f, path, l2, NULL), APR_SUCCESS);
    check_file(&fx, path, l2, strlen(l2));

    /* A new mode is noticed (as root the open still succeeds, so what
     * shows is that the file was looked at again). */
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(file_line(&fx, &f, path, l3, NULL), APR_SUCCESS);
    assert_int_equal(f.mode & 0777, 0600);
    want = apr_pstrcat(fx.p, l2, l3, NULL);
    check_file(&fx, path, want, strlen(want));

    /* Another path (the next day): that file, and the old one is left. */
    path2 = path_in(&fx, "site/site_20260318.ndjson");
    l6 = mkline(fx.p, 6, 60);
    assert_int_equal(file_line(&fx, &f, path2, l6, NULL), APR_SUCCESS);
    assert_string_equal(f.path, path2);
    check_file(&fx, path2, l6, strlen(l6));
    check_file(&fx, path, want, strlen(want));
    assert_int_equal(fstat(f.fd, &sb), 0);
    assert_int_equal(sb.st_size, (off_t)strlen(l6));

    ptm_ndjson_file_close(&f);
    assert_int_equal(f.fd, -1);
    assert_null(f.path);
    fx_close(&fx);
}

/* A failed line leaves the file as it was (and removes it when this open
 * created it), closes it, and says which step failed. */
static void test_file_append_failures(void **state)
{
    static fx_t fx;
    ptm_ndjson_file_t f;
    const char *path, *fresh, *step, *l1, *l2;
    struct stat sb;

    fx_open(&fx);
    ptm_ndjson_file_init(&f);
    path = path_in(&fx, "a.ndjson");
    fresh = path_in(&fx, "b.ndjson");
    l1 = mkline(fx.p, 1, 10);
    l2 = mkline(fx.p, 2, 3000);
    assert_int_equal(file_line(&fx, &f, path, l1, NULL), APR_SUCCESS);

    /* No room: EFBIG from the write; nothing changed; closed. */
    set_fsize((rlim_t)strlen(l1) + 5);
    step = NULL;
    assert_int_equal(file_line(&fx, &f, path, l2, &step),
                     APR_FROM_OS_ERROR(EFBIG));
    set_fsize(RLIM_INFINITY);
    assert_string_equal(step, "write");
    assert_int_equal(f.fd, -1);
    check_file(&fx, path, l1, strlen(l1));

    /* A file the failed line's open created is removed. */
    set_fsize(5);
    assert_int_equal(file_line(&fx, &f, fresh, l2, &step),
                     APR_FROM_OS_ERROR(EFBIG));
    set_fsize(RLIM_INFINITY);
    assert_int_equal(stat(fresh, &sb), -1);
    assert_int_equal(errno, ENOENT);

    /* The open fails: a file where the directory should be. */
    ptm_unit_put_file(path_in(&fx, "notadir"), "x", 1);
    step = NULL;
    assert_int_equal(file_line(&fx, &f, path_in(&fx, "notadir/c.ndjson"),
                               l1, &step), APR_FROM_OS_ERROR(ENOTDIR));
    assert_string_equal(step, "open");
    assert_int_equal(f.fd, -1);

    /* And it works again afterwards. */
    assert_int_equal(file_line(&fx, &f, path, l2, NULL), APR_SUCCESS);
    check_file(&fx, path, apr_pstrcat(fx.p, l1, l2, NULL),
               strlen(l1) + strlen(l2));
    ptm_ndjson_file_close(&f);
    fx_close(&fx);
}

/* A FIFO at the path (someone's `tail` substitute) is not kept open:
 * with no reader, 1000 lines of 200 bytes (three times a pipe's buffer)
 * would otherwise fill it and block the writer, which holds the store
 * lock.  SIGALRM ends the test if it blocks. */
static void alarm_fail(int sig)
{
    static const char msg[] = "test_ptm_ndjson: a FIFO append blocked\n";

    (void)sig;
    if (write(2, msg, sizeof(msg) - 1) < 0) {
        /* nothing */
    }
    _exit(99);
}

static void test_file_append_fifo(void **state)
{
    static fx_t fx;
    ptm_ndjson_file_t f;
    const char *path, *line;
    int i;

    fx_open(&fx);
    ptm_ndjson_file_init(&f);
    path = path_in(&fx, "fifo.ndjson");
    assert_int_equal(mkfifo(path, 0666), 0);
    line = mkline(fx.p, 1, 180);
    signal(SIGALRM, alarm_fail);
    alarm(20);
    for (i = 0; i < 1000; i++) {
        assert_int_equal(file_line(&fx, &f, path, line, NULL), APR_SUCCESS);
        assert_int_equal(f.fd, -1);
    }
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    ptm_ndjson_file_close(&f);
    fx_close(&fx);
}

/* A line bigger than a FIFO's buffer (64 KiB on Linux) while nobody reads
 * it: the append fails at once (EAGAIN, as the file is opened
 * non-blocking) instead of blocking the writer, and the store lock it
 * holds, forever.  What part of the line went in is dropped with the
 * close, so the next line fits again. */
static void test_file_append_fifo_full(void **state)
{
    static fx_t fx;
    ptm_ndjson_file_t f;
    const char *path, *step = NULL;
    apr_status_t rv;

    fx_open(&fx);
    ptm_ndjson_file_init(&f);
    path = path_in(&fx, "fifo.ndjson");
    assert_int_equal(mkfifo(path, 0666), 0);
    signal(SIGALRM, alarm_fail);
    alarm(20);
    rv = file_line(&fx, &f, path, mkline(fx.p, 1, 100 * 1024), &step);
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    if (!APR_STATUS_IS_EAGAIN(rv)) {
        fail_msg("want EAGAIN, got %d", rv);
    }
    assert_string_equal(step, "write");
    assert_int_equal(f.fd, -1);
    assert_int_equal(file_line(&fx, &f, path, mkline(fx.p, 2, 10), NULL),
                     APR_SUCCESS);
    ptm_ndjson_file_close(&f);
    fx_close(&fx);
}

static void test_discard_if_empty(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *path, *other;
    struct stat sb;
    int fd;

    fx_open(&fx);
    path = path_in(&fx, "empty.ndjson");
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    ptm_ndjson_discard_if_empty(fd, path);
    assert_int_equal(stat(path, &sb), -1);
    close(fd);

    /* Not empty: kept. */
    ptm_unit_put_file(path, "{\"seq\":1}\n", 10);
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    ptm_ndjson_discard_if_empty(fd, path);
    assert_int_equal(stat(path, &sb), 0);
    close(fd);

    /* The path now names another (empty) file: kept. */
    other = path_in(&fx, "other.ndjson");
    assert_int_equal(ptm_ndjson_open(&fd, other, fx.p), APR_SUCCESS);
    assert_int_equal(unlink(path), 0);
    ptm_unit_put_file(path, "", 0);
    ptm_ndjson_discard_if_empty(fd, path);
    assert_int_equal(stat(path, &sb), 0);
    close(fd);
    fx_close(&fx);
}

#define T(f) cmocka_unit_test_teardown(f, test_teardown)

/* ---- symbolic links at the file's name (SPEC §11.6) -------------------- */

/* A link planted where a stream file goes is never followed: not by the
 * open for append (path or directory descriptor), not by the parent's
 * look at the last seq (which would cut a partial last line of whatever
 * the link points at), not by a process that had the real file open.
 * The file behind the link is left as it was. */
static void test_links_not_followed(void **state)
{
    static fx_t fx;
    static const char victim_text[] = "{\"seq\":7}\nnot a whole line";
    ptm_ndjson_file_t f;
    const char *victim, *path, *moved, *l1, *l2, *step = NULL;
    uint64_t seq = 99;
    int fd = -2, dfd;

    fx_open(&fx);
    victim = path_in(&fx, "victim");
    ptm_unit_put_file(victim, victim_text, sizeof(victim_text) - 1);

    path = path_in(&fx, "site_20260317.ndjson");
    assert_int_equal(symlink(victim, path), 0);
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p),
                     APR_FROM_OS_ERROR(ELOOP));
    assert_int_equal(fd, -1);
    assert_int_equal(ptm_ndjson_last_seq(&seq, path),
                     APR_FROM_OS_ERROR(ELOOP));
    assert_int_equal(seq, 0);

    dfd = open(fx.dir, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    assert_int_equal(ptm_ndjson_open_at(&fd, dfd, "site_20260317.ndjson"),
                     APR_FROM_OS_ERROR(ELOOP));
    assert_int_equal(ptm_ndjson_last_seq_at(&seq, dfd,
                                            "site_20260317.ndjson"),
                     APR_FROM_OS_ERROR(ELOOP));
    /* A dangling link is not created through either. */
    assert_int_equal(symlink(path_in(&fx, "made-through"),
                             path_in(&fx, "telemetry.ndjson")), 0);
    assert_int_equal(ptm_ndjson_open_at(&fd, dfd, "telemetry.ndjson"),
                     APR_FROM_OS_ERROR(ELOOP));
    assert_false(is_dir(path_in(&fx, "made-through"))
                 || access(path_in(&fx, "made-through"), F_OK) == 0);

    /* The kept-open file replaced by a link, even one to itself. */
    assert_int_equal(unlink(path), 0);
    ptm_ndjson_file_init(&f);
    l1 = mkline(fx.p, 1, 10);
    l2 = mkline(fx.p, 2, 20);
    assert_int_equal(file_line(&fx, &f, path, l1, NULL), APR_SUCCESS);
    moved = path_in(&fx, "moved.ndjson");
    assert_int_equal(rename(path, moved), 0);
    assert_int_equal(symlink(moved, path), 0);
    assert_int_equal(file_line(&fx, &f, path, l2, &step),
                     APR_FROM_OS_ERROR(ELOOP));
    assert_string_equal(step, "open");
    assert_int_equal(f.fd, -1);
    check_file(&fx, moved, l1, strlen(l1));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(symlink(victim, path), 0);
    assert_int_equal(file_line(&fx, &f, path, l2, &step),
                     APR_FROM_OS_ERROR(ELOOP));
    check_file(&fx, victim, victim_text, sizeof(victim_text) - 1);

    /* The real file back: appends go on. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rename(moved, path), 0);
    assert_int_equal(file_line(&fx, &f, path, l2, NULL), APR_SUCCESS);
    moved = apr_pstrcat(fx.p, l1, l2, NULL);
    check_file(&fx, path, moved, strlen(moved));

    /* Through the directory descriptor, the real file is read and opened. */
    assert_int_equal(ptm_ndjson_last_seq_at(&seq, dfd,
                                            "site_20260317.ndjson"),
                     APR_SUCCESS);
    assert_int_equal(seq, 2);
    assert_int_equal(ptm_ndjson_open_at(&fd, dfd, "new.ndjson"), APR_SUCCESS);
    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    close(fd);
    assert_int_equal(access(path_in(&fx, "new.ndjson"), F_OK), 0);
    close(dfd);
    ptm_ndjson_file_close(&f);
    fx_close(&fx);
}

/* A sparse file costs its maker nothing: a tail of gigabytes without a
 * newline is refused (EFBIG) after PTM_NDJSON_SCAN_MAX bytes, not read
 * for minutes, whether an append looks for the partial line to cut (under
 * the store lock) or httpd's parent looks for the last seq (at start). */
static void test_sparse_tail_refused(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *path, *line = "{\"seq\":1,\"ts\":\"x\"}\n";
    struct iovec iov[1];
    apr_time_t t0;
    uint64_t seq = 7;
    int fd;

    fx_open(&fx);
    path = path_in(&fx, "sparse.ndjson");
    ptm_unit_put_file(path, line, strlen(line));
    assert_int_equal(truncate(path, (off_t)64 << 30), 0);  /* 64 GiB hole */
    t0 = apr_time_now();
    assert_int_equal(ptm_ndjson_open(&fd, path, fx.p), APR_SUCCESS);
    iov[0].iov_base = (void *)line;
    iov[0].iov_len = strlen(line);
    assert_int_equal(ptm_ndjson_append(fd, iov, 1, 0),
                     APR_FROM_OS_ERROR(EFBIG));
    close(fd);
    /* With a newline at the end: the last line's start is as far. */
    fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\n", 1), 1);
    close(fd);
    assert_int_equal(ptm_ndjson_last_seq(&seq, path),
                     APR_FROM_OS_ERROR(EFBIG));
    assert_int_equal(seq, 0);
    /* 64 MiB of a hole read twice, not 64 GiB (minutes). */
    assert_true(apr_time_now() - t0 < apr_time_from_sec(20));
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_mkdirs),
        T(test_mkdirs_permission_denied),
        T(test_open),
        T(test_open_recreates_deleted_dir),
        T(test_append),
        T(test_append_efbig),
        T(test_append_other_failures),
        T(test_append_enospc_tmpfs),
        T(test_append_cuts_partial_line),
        T(test_open_write_only_file),
        T(test_last_seq),
        T(test_last_seq_then_append),
        T(test_append_deleted_file),
        T(test_discard_if_empty),
        T(test_append_tail),
        T(test_file_append),
        T(test_file_append_failures),
        T(test_file_append_fifo),
        T(test_file_append_fifo_full),
        T(test_sparse_tail_refused),
        T(test_links_not_followed),
    };

    return cmocka_run_group_tests_name("ptm_ndjson", tests, ndjson_group_setup,
                                       group_teardown);
}

/* Unit tests for ptm_fs (SPEC §11.3 F1, §11.6): walking beneath a root
 * without following a symbolic link, wherever it is (in the middle, at the
 * end, dangling), never through "." or "..", making what is missing even
 * when other processes make the same directories at the same moment, and
 * refusing a file in the way.  mkdirat is wrapped at link time (see the
 * Makefile) so a test can have "another process" win the race between a
 * walk's open and its mkdir, with a directory, a link or a file. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include <apr_file_info.h>
#include <apr_strings.h>
#include "ptm_fs.h"

/* ---- the wrapped mkdirat ------------------------------------------------ */

int __real_mkdirat(int dfd, const char *name, mode_t mode);

/* What "another process" puts at the name just before the next mkdirat
 * ('d' a directory, 'l' a link to race_target, 'f' a file; 0 nothing). */
static char race_with;
static const char *race_target;

int __wrap_mkdirat(int dfd, const char *name, mode_t mode)
{
    char what = race_with;
    int fd;

    race_with = 0;
    switch (what) {
    case 'd':
        assert_int_equal(__real_mkdirat(dfd, name, 0755), 0);
        break;
    case 'l':
        assert_int_equal(symlinkat(race_target, dfd, name), 0);
        break;
    case 'f':
        fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
        assert_true(fd >= 0);
        close(fd);
        break;
    }
    return __real_mkdirat(dfd, name, mode);
}

/* ---- a root and somewhere outside it ------------------------------------ */

typedef struct {
    char *root;       /* the root the walks start from */
    char *out;        /* a directory outside it, where links point */
} fx_t;

static char *tmp_dir(void)
{
    char tmpl[] = "/tmp/ptm_fs_test.XXXXXX";

    if (!mkdtemp(tmpl)) {
        fail_msg("mkdtemp: %s", strerror(errno));
    }
    return strdup(tmpl);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));

    f->root = tmp_dir();
    f->out = tmp_dir();
    race_with = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;

    rm_rf(f->root);
    rm_rf(f->out);
    free(f->root);
    free(f->out);
    free(f);
    return 0;
}

static const char *at(const char *dir, const char *rel)
{
    return apr_pstrcat(gpool, dir, "/", rel, NULL);
}

static void mk_dir(const char *path)
{
    if (mkdir(path, 0755) != 0) {
        fail_msg("mkdir %s: %s", path, strerror(errno));
    }
}

static void mk_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);

    if (fd < 0) {
        fail_msg("create %s: %s", path, strerror(errno));
    }
    close(fd);
}

static void mk_link(const char *target, const char *path)
{
    if (symlink(target, path) != 0) {
        fail_msg("symlink %s: %s", path, strerror(errno));
    }
}

static int is_dir(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* Number of entries in `dir` (without . and ..). */
static int entries(const char *dir)
{
    apr_dir_t *d;
    apr_finfo_t fi;
    int n = 0;

    if (apr_dir_open(&d, dir, gpool) != APR_SUCCESS) {
        fail_msg("opendir %s", dir);
    }
    while (apr_dir_read(&fi, APR_FINFO_NAME, d) == APR_SUCCESS) {
        if (strcmp(fi.name, ".") && strcmp(fi.name, "..")) {
            n++;
        }
    }
    apr_dir_close(d);
    return n;
}

/* Walk and expect `want`; on failure `bad` must be `want_bad`; on success
 * the descriptor must be the directory at root/rel. */
static void walk(const char *root, const char *rel, int create,
                 apr_status_t want, const char *want_bad)
{
    const char *bad = "untouched";
    struct stat a, b;
    apr_status_t rv;
    int fd = -2;

    rv = ptm_fs_open_dir(&fd, &bad, root, rel, create, gpool);
    if (rv != want) {
        char buf[120];

        fail_msg("%s beneath %s (create %d): status %d (%s), want %d", rel,
                 root, create, rv, apr_strerror(rv, buf, sizeof(buf)), want);
    }
    if (rv != APR_SUCCESS) {
        assert_int_equal(fd, -1);
        assert_non_null(bad);
        assert_string_equal(bad, want_bad);
        return;
    }
    assert_null(bad);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &a), 0);
    assert_int_equal(stat(*rel ? at(root, rel) : root, &b), 0);
    assert_true(S_ISDIR(a.st_mode));
    assert_true(a.st_dev == b.st_dev && a.st_ino == b.st_ino);
    assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    close(fd);
}

/* ---- plain walks -------------------------------------------------------- */

static void test_make_and_open(void **state)
{
    fx_t *f = *state;
    int fd, file;
    const char *bad;

    walk(f->root, "a/b/c", 0, APR_ENOENT, at(f->root, "a"));
    assert_false(exists(at(f->root, "a")));
    walk(f->root, "a/b/c", 1, APR_SUCCESS, NULL);
    assert_true(is_dir(at(f->root, "a/b/c")));
    walk(f->root, "a/b/c", 0, APR_SUCCESS, NULL);    /* existing, reused */
    walk(f->root, "a/b/c", 1, APR_SUCCESS, NULL);
    walk(f->root, "a//b/c/", 0, APR_SUCCESS, NULL);  /* empty components */
    walk(f->root, "", 0, APR_SUCCESS, NULL);         /* the root itself */
    walk(f->root, "a/b/d", 0, APR_ENOENT, at(f->root, "a/b/d"));

    /* The descriptor opens files beneath it. */
    assert_int_equal(ptm_fs_open_dir(&fd, &bad, f->root, "a/b", 0, gpool),
                     APR_SUCCESS);
    file = openat(fd, "f.ndjson", O_WRONLY | O_CREAT | O_NOFOLLOW, 0644);
    assert_true(file >= 0);
    close(file);
    close(fd);
    assert_true(exists(at(f->root, "a/b/f.ndjson")));
}

/* A missing root is made with `create` (mkdir -p), else ENOENT at it. */
static void test_missing_root(void **state)
{
    fx_t *f = *state;
    const char *root = at(f->root, "r1/r2");

    walk(root, "x", 0, APR_ENOENT, root);
    assert_false(exists(at(f->root, "r1")));
    walk(root, "x/y", 1, APR_SUCCESS, NULL);
    assert_true(is_dir(at(root, "x/y")));
}

/* The root's own path is the admin's: a link there is followed. */
static void test_root_through_link(void **state)
{
    fx_t *f = *state;
    const char *root = at(f->root, "disk");

    mk_link(f->out, root);
    walk(root, "run/1", 1, APR_SUCCESS, NULL);
    assert_true(is_dir(at(f->out, "run/1")));
}

/* ---- links -------------------------------------------------------------- */

/* A link in the middle, to a directory outside: nothing is made or opened
 * behind it, with or without `create`. */
static void test_link_in_the_middle(void **state)
{
    fx_t *f = *state;

    mk_dir(at(f->out, "b"));
    mk_dir(at(f->root, "a"));
    mk_link(f->out, at(f->root, "a/l"));
    walk(f->root, "a/l/b", 0, PTM_FS_LINK, at(f->root, "a/l"));
    walk(f->root, "a/l/b/c", 1, PTM_FS_LINK, at(f->root, "a/l"));
    walk(f->root, "a/l/new", 1, PTM_FS_LINK, at(f->root, "a/l"));
    assert_int_equal(entries(f->out), 1);          /* only b */
    assert_int_equal(entries(at(f->out, "b")), 0);
}

/* A link as the last component, even one to a directory inside the root:
 * links are not judged, only not followed. */
static void test_link_at_the_end(void **state)
{
    fx_t *f = *state;

    mk_dir(at(f->root, "inside"));
    mk_link(f->out, at(f->root, "l"));
    mk_link("inside", at(f->root, "alias"));
    walk(f->root, "l", 0, PTM_FS_LINK, at(f->root, "l"));
    walk(f->root, "l", 1, PTM_FS_LINK, at(f->root, "l"));
    walk(f->root, "alias", 1, PTM_FS_LINK, at(f->root, "alias"));
    walk(f->root, "alias/x", 1, PTM_FS_LINK, at(f->root, "alias"));
    assert_int_equal(entries(at(f->root, "inside")), 0);
    assert_int_equal(entries(f->out), 0);
}

/* A dangling link: mkdir -p through it would make its target. */
static void test_dangling_link(void **state)
{
    fx_t *f = *state;
    const char *target = at(f->out, "not-yet");

    mk_link(target, at(f->root, "d"));
    walk(f->root, "d", 0, PTM_FS_LINK, at(f->root, "d"));
    walk(f->root, "d", 1, PTM_FS_LINK, at(f->root, "d"));
    walk(f->root, "d/x/y", 1, PTM_FS_LINK, at(f->root, "d"));
    assert_false(exists(target));
}

/* A link planted where a directory was, after it was made: the next walk
 * refuses it (each walk looks afresh, and only once). */
static void test_link_planted_later(void **state)
{
    fx_t *f = *state;

    walk(f->root, "run/r", 1, APR_SUCCESS, NULL);
    assert_int_equal(rename(at(f->root, "run"), at(f->root, "moved")), 0);
    mk_link(f->out, at(f->root, "run"));
    walk(f->root, "run/r", 1, PTM_FS_LINK, at(f->root, "run"));
    assert_int_equal(entries(f->out), 0);
}

/* ---- "." and ".." ------------------------------------------------------- */

/* ".." never reaches the kernel, so a link before it cannot take the walk
 * elsewhere; and a refused walk has made nothing, not even the part before
 * the "..". */
static void test_dots_refused(void **state)
{
    fx_t *f = *state;

    mk_dir(at(f->out, "a"));
    mk_link(at(f->out, "a"), at(f->root, "data"));
    walk(f->root, "data/../escaped", 1, APR_EINVAL, at(f->root, "data/.."));
    walk(f->root, "new/../x", 1, APR_EINVAL, at(f->root, "new/.."));
    walk(f->root, "..", 1, APR_EINVAL, at(f->root, ".."));
    walk(f->root, "a/./b", 1, APR_EINVAL, at(f->root, "a/."));
    walk(f->root, ".", 0, APR_EINVAL, at(f->root, "."));
    assert_false(exists(at(f->out, "escaped")));
    assert_false(exists(at(f->root, "new")));
    assert_false(exists(at(f->root, "a")));
    assert_int_equal(entries(f->root), 1);          /* only the link */
    /* Names that only start with dots are names. */
    walk(f->root, "...", 1, APR_SUCCESS, NULL);
    walk(f->root, "..a/.b", 1, APR_SUCCESS, NULL);
}

/* ---- a file in the way -------------------------------------------------- */

static void test_file_in_the_way(void **state)
{
    fx_t *f = *state;

    mk_dir(at(f->root, "a"));
    mk_file(at(f->root, "a/f"));
    walk(f->root, "a/f", 0, APR_ENOTDIR, at(f->root, "a/f"));
    walk(f->root, "a/f", 1, APR_ENOTDIR, at(f->root, "a/f"));
    walk(f->root, "a/f/x", 1, APR_ENOTDIR, at(f->root, "a/f"));
    mk_file(at(f->root, "plain"));
    walk(at(f->root, "plain"), "x", 1, APR_ENOTDIR, at(f->root, "plain"));
    /* A FIFO is no directory either. */
    assert_int_equal(mkfifo(at(f->root, "a/p"), 0600), 0);
    walk(f->root, "a/p/x", 1, APR_ENOTDIR, at(f->root, "a/p"));
}

/* ---- mkdir races -------------------------------------------------------- */

/* Another process makes the directory between the walk's open (ENOENT)
 * and its mkdirat (EEXIST): fine, it is a directory.  Had it put a link or
 * a file there, the walk refuses it like any other. */
static void test_mkdir_race(void **state)
{
    fx_t *f = *state;

    race_with = 'd';
    walk(f->root, "a/b", 1, APR_SUCCESS, NULL);
    assert_int_equal(race_with, 0);                 /* the race was run */

    race_with = 'l';
    race_target = f->out;
    walk(f->root, "a/c/d", 1, PTM_FS_LINK, at(f->root, "a/c"));
    assert_int_equal(race_with, 0);
    assert_int_equal(entries(f->out), 0);

    race_with = 'f';
    walk(f->root, "a/e/d", 1, APR_ENOTDIR, at(f->root, "a/e"));
    assert_int_equal(race_with, 0);
}

/* Several processes, let go at the same moment, make the same deep
 * directories: their mkdirat calls may meet EEXIST (the kernel decides
 * who wins), and every walk succeeds whoever made what. */
static void test_concurrent_mkdir(void **state)
{
    fx_t *f = *state;
    enum { KIDS = 6, PATHS = 60 };
    pid_t kids[KIDS];
    int i, status, failed = 0, go[2];

    assert_int_equal(pipe(go), 0);
    for (i = 0; i < KIDS; i++) {
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] == 0) {
            apr_pool_t *p;
            int n, bad_walks = 0;
            char c;

            close(go[1]);
            if (read(go[0], &c, 1) != 0) {      /* EOF: all forked */
                _exit(2);
            }
            apr_pool_create(&p, NULL);
            for (n = 0; n < PATHS; n++) {
                const char *rel = apr_psprintf(p, "r%d/a/b/c/d/e", n);
                const char *bad;
                int fd;

                if (ptm_fs_open_dir(&fd, &bad, f->root, rel, 1, p)
                    != APR_SUCCESS) {
                    bad_walks++;
                }
                else {
                    close(fd);
                }
            }
            _exit(bad_walks ? 1 : 0);
        }
    }
    close(go[0]);
    close(go[1]);
    for (i = 0; i < KIDS; i++) {
        assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            failed++;
        }
    }
    assert_int_equal(failed, 0);
    for (i = 0; i < PATHS; i++) {
        assert_true(is_dir(at(f->root, apr_psprintf(gpool, "r%d/a/b/c/d/e",
                                                       i))));
    }
}

/* ---- messages ----------------------------------------------------------- */

static void test_describe(void **state)
{
    assert_string_equal(ptm_fs_describe(PTM_FS_LINK, "/s/l", gpool),
                        "/s/l is a symbolic link (not followed)");
    assert_string_equal(ptm_fs_describe(APR_ENOTDIR, "/s/f", gpool),
                        "/s/f is not a directory");
    assert_non_null(strstr(ptm_fs_describe(APR_ENOENT, "/s/m", gpool),
                           "/s/m: "));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_make_and_open),
        T(test_missing_root),
        T(test_root_through_link),
        T(test_link_in_the_middle),
        T(test_link_at_the_end),
        T(test_dangling_link),
        T(test_link_planted_later),
        T(test_dots_refused),
        T(test_file_in_the_way),
        T(test_mkdir_race),
        T(test_concurrent_mkdir),
        T(test_describe),
    };

    return cmocka_run_group_tests_name("ptm_fs", tests, group_setup,
                                       group_teardown);
}

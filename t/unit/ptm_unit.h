/* What the cmocka test files share: APR and a pool for the whole group,
 * removing a directory tree, reading and writing a whole file, lifting a
 * file size limit a test set.  Included once, by the
 * test file, after cmocka.h. */
#ifndef PTM_UNIT_H
#define PTM_UNIT_H

#include <ftw.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include "ptm_runs.h"

/* The group's pool, alive from group_setup to group_teardown. */
/* RUNNING_ON_VALGRIND: 1 under valgrind (tests that time themselves or
 * fork many processes scale down), 0 otherwise or without its header. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

static apr_pool_t *gpool;

static int group_setup(void **state)
{
    (void)state;
    if (apr_initialize() != APR_SUCCESS) {
        return -1;
    }
    return apr_pool_create(&gpool, NULL) == APR_SUCCESS ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    ptm_runs_cache_clear();             /* a process's cache, freed */
    apr_pool_destroy(gpool);
    apr_terminate();
    return 0;
}

static inline int ptm_unit_rm_one(const char *path, const struct stat *sb,
                                  int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* rm -rf `dir` (symbolic links are removed, not followed). */
/* A new directory /tmp/<what>.XXXXXX, its name from `p`; fails the test
 * when it cannot be made. */
static inline char *ptm_unit_tmpdir(apr_pool_t *p, const char *what)
{
    char *tmpl = apr_pstrcat(p, "/tmp/", what, ".XXXXXX", NULL);

    if (!mkdtemp(tmpl)) {
        fail_msg("mkdtemp: %s", strerror(errno));
    }
    return tmpl;
}

static inline void rm_rf(const char *dir)
{
    nftw(dir, ptm_unit_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The whole file, NUL-terminated, from `p`; NULL (and *len 0) when it
 * cannot be opened. */
static inline char *slurp(const char *path, size_t *len, apr_pool_t *p)
{
    FILE *f = fopen(path, "rb");
    char *s;
    long n;

    *len = 0;
    if (!f) {
        return NULL;
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

/* Make `path` (0644) hold exactly data[0..len). */
static inline void ptm_unit_put_file(const char *path, const char *data,
                                     size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    if (fd < 0) {
        fail_msg("open %s: %s", path, strerror(errno));
    }
    if (len && write(fd, data, len) != (ssize_t)len) {
        fail_msg("write %s: %s", path, strerror(errno));
    }
    close(fd);
}

/* A failed RLIMIT_FSIZE test must not leave its limit behind. */
static inline void ptm_unit_reset_fsize(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_FSIZE, &rl);
    }
}

/* Code run in a fork()ed child reports failure by its exit status: cmocka
 * must never unwind there (it would go on running tests in the child). */
#define CHILD_CHECK(cond, code) \
    do {                        \
        if (!(cond)) {          \
            _exit(code);        \
        }                       \
    } while (0)

/* In a child, a crash must show as a crash: cmocka's handlers would run
 * the remaining tests in the child instead. */
static inline void child_signals(void)
{
    static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
    size_t i;

    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        signal(sigs[i], SIG_DFL);
    }
}

#endif

/* Unit tests for ptm_filecache, the files GET /events keeps in each
 * child: a file is found only as a stat still sees it (size, mtime,
 * ctime, the inode), an entry in use is never replaced nor dropped, the
 * least recently used goes first, what is kept is bounded (16 MiB), and
 * threads share it (ASan sees any leak, double free or use after free). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include "ptm_filecache.h"

#define MiB ((size_t)1024 * 1024)

static struct stat file_st(ino_t ino, off_t size)
{
    struct stat st;

    memset(&st, 0, sizeof(st));
    st.st_dev = 7;
    st.st_ino = ino;
    st.st_size = size;
    st.st_mtim.tv_sec = 1000;
    st.st_ctim.tv_sec = 1000;
    return st;
}

/* Keep a file of `cap` bytes as `st`; 1 if kept (and released). */
static int keep(const struct stat *st, size_t cap)
{
    char *data = malloc(cap);
    ptm_fc_line_t *lines = calloc(2, sizeof(*lines));
    const ptm_fc_t *e;

    assert_non_null(data);
    assert_non_null(lines);
    memset(data, 'x', cap);
    if (!(e = ptm_fc_put(st, data, cap, lines, 2))) {
        free(data);
        free(lines);
        return 0;
    }
    assert_ptr_equal(e->data, data);
    assert_int_equal(e->nlines, 2);
    ptm_fc_release(e);
    return 1;
}

/* Drop everything kept (16 files of another device, then of nothing). */
static void clear(void)
{
    int i;

    for (i = 0; i < 16; i++) {
        struct stat st;

        memset(&st, 0, sizeof(st));
        st.st_dev = 99;
        st.st_ino = (ino_t)(i + 1);
        assert_true(keep(&st, 1));
    }
}

static void test_identity(void **state)
{
    struct stat st = file_st(1, 100), other;
    const ptm_fc_t *e, *e2;
    char *data;

    (void)state;
    clear();
    assert_null(ptm_fc_get(&st));
    assert_true(keep(&st, 100));
    assert_non_null(e = ptm_fc_get(&st));
    /* Held twice (two requests), its bytes the kept ones. */
    assert_non_null(e2 = ptm_fc_get(&st));
    assert_ptr_equal(e, e2);
    assert_int_equal(e->data[99], 'x');
    /* In use: not replaced by a newer version of the file. */
    other = st;
    other.st_size = 101;
    data = malloc(101);
    assert_null(ptm_fc_put(&other, data, 101, NULL, 0));
    free(data);
    ptm_fc_release(e);
    ptm_fc_release(e2);
    /* Kept already as it is: not twice. */
    data = malloc(100);
    assert_null(ptm_fc_put(&st, data, 100, NULL, 0));
    free(data);
    /* Grown, touched, changed, another inode: not this one. */
    assert_null(ptm_fc_get(&other));
    other = st;
    other.st_mtim.tv_nsec = 1;
    assert_null(ptm_fc_get(&other));
    other = st;
    other.st_ctim.tv_sec = 1001;
    assert_null(ptm_fc_get(&other));
    other = st;
    other.st_ino = 2;
    assert_null(ptm_fc_get(&other));
    /* The same file kept again as it is now replaces what was kept. */
    other = st;
    other.st_size = 200;
    assert_true(keep(&other, 200));
    assert_null(ptm_fc_get(&st));
    assert_non_null(e = ptm_fc_get(&other));
    ptm_fc_release(e);
    ptm_fc_release(NULL);
}

/* 16 entries; the least recently used goes; one in use never does. */
static void test_lru_and_busy(void **state)
{
    struct stat st[20];
    const ptm_fc_t *busy, *e;
    int i;

    (void)state;
    clear();
    for (i = 0; i < 20; i++) {
        st[i] = file_st((ino_t)(100 + i), 10);
    }
    for (i = 0; i < 16; i++) {
        assert_true(keep(&st[i], 10));
    }
    assert_non_null(busy = ptm_fc_get(&st[0]));     /* the oldest, in use */
    assert_non_null(e = ptm_fc_get(&st[1]));        /* used: not the LRU */
    ptm_fc_release(e);
    assert_true(keep(&st[16], 10));                 /* pushes out st[2] */
    assert_null(ptm_fc_get(&st[2]));
    assert_non_null(e = ptm_fc_get(&st[1]));
    ptm_fc_release(e);
    ptm_fc_release(busy);
    assert_non_null(e = ptm_fc_get(&st[0]));
    ptm_fc_release(e);
}

/* At most 16 MiB: the least recently used go to make room, never one in
 * use; a file bigger than that is not kept. */
static void test_bounded(void **state)
{
    struct stat st[8], big = file_st(2000, (off_t)(17 * MiB));
    const ptm_fc_t *held, *e;
    char *data;
    int i;

    (void)state;
    clear();
    for (i = 0; i < 8; i++) {
        st[i] = file_st((ino_t)(1000 + i), (off_t)(3 * MiB));
        assert_true(keep(&st[i], 3 * MiB));
    }
    /* 5 of 3 MiB fit: the first 3 went. */
    for (i = 0; i < 8; i++) {
        e = ptm_fc_get(&st[i]);
        assert_true(i < 3 ? e == NULL : e != NULL);
        ptm_fc_release(e);
    }
    /* All 5 in use: no room for another. */
    for (i = 3; i < 8; i++) {
        assert_non_null(ptm_fc_get(&st[i]));
    }
    data = malloc(3 * MiB);
    assert_null(ptm_fc_put(&st[0], data, 3 * MiB, NULL, 0));
    free(data);
    for (i = 3; i < 8; i++) {
        held = ptm_fc_get(&st[i]);
        ptm_fc_release(held);
        ptm_fc_release(held);
    }
    data = malloc(1);
    assert_null(ptm_fc_put(&big, data, 17 * MiB, NULL, 0));
    free(data);
}

static void *other(void *arg)
{
    struct stat st = file_st(1, 100);
    const ptm_fc_t *e = ptm_fc_get(&st);

    (void)arg;
    if (!e || e->data[0] != 'x') {
        return (void *)1;           /* the child's, not the thread's */
    }
    ptm_fc_release(e);
    return NULL;
}

static void test_shared(void **state)
{
    pthread_t t;
    void *rv = (void *)3;
    struct stat st = file_st(1, 100);

    (void)state;
    clear();
    assert_true(keep(&st, 100));
    assert_int_equal(pthread_create(&t, NULL, other, NULL), 0);
    assert_int_equal(pthread_join(t, &rv), 0);
    assert_null(rv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_lru_and_busy),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_shared),
    };

    return cmocka_run_group_tests_name("ptm_filecache", tests, group_setup,
                                       group_teardown);
}

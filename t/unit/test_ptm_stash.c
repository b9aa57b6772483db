/* Unit tests for ptm_stash, the big buffers kept per thread between
 * requests: what is kept is bounded (a few buffers, 2 MiB in all; bigger
 * ones are freed), a kept buffer serves the next request that fits it,
 * and another thread keeps its own (ASan sees any leak or double free). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <string.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include "ptm_stash.h"

size_t ptm_stash_kept(void);

#define MiB ((size_t)1024 * 1024)

static void test_bounded(void **state)
{
    void *p[10];
    size_t cap, c;
    int i;

    (void)state;
    for (i = 0; i < 10; i++) {
        p[i] = ptm_stash_take(MiB / 2 + (size_t)i, &cap);
        assert_non_null(p[i]);
        assert_true(cap >= MiB / 2 + (size_t)i);
        memset(p[i], i, cap);
    }
    for (i = 0; i < 10; i++) {
        ptm_stash_give(p[i], MiB / 2 + (size_t)i);
        assert_true(ptm_stash_kept() <= 2 * MiB);
    }
    /* Too big to keep: freed. */
    c = ptm_stash_kept();
    p[0] = ptm_stash_take(3 * MiB, &cap);
    ptm_stash_give(p[0], cap);
    assert_int_equal(ptm_stash_kept(), c);
    /* A kept one serves a request that fits it. */
    p[0] = ptm_stash_take(1000, &cap);
    assert_true(cap >= MiB / 2);
    assert_true(ptm_stash_kept() < c);
    ptm_stash_give(p[0], cap);
    assert_int_equal(ptm_stash_kept(), c);
    ptm_stash_give(NULL, 5);
}

static void *other(void *arg)
{
    size_t cap;
    void *p = ptm_stash_take(MiB, &cap);

    (void)arg;
    if (ptm_stash_kept() != 0 && cap == MiB) {
        return (void *)1;           /* not its own */
    }
    ptm_stash_give(p, cap);
    return ptm_stash_kept() == cap ? NULL : (void *)2;
}

static void test_per_thread(void **state)
{
    pthread_t t;
    void *rv = (void *)3;

    (void)state;
    assert_int_equal(pthread_create(&t, NULL, other, NULL), 0);
    assert_int_equal(pthread_join(t, &rv), 0);
    assert_null(rv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_per_thread),
    };

    return cmocka_run_group_tests_name("ptm_stash", tests, group_setup,
                                       group_teardown);
}

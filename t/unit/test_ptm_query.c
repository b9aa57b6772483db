/* Unit tests for ptm_query (SPEC §12.2): the sort key and the run tie. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include "ptm_query.h"

#define U(v) APR_INT64_C(v)

/* ---- ptm_key_cmp, ptm_query_tie ------------------------------------------ */

static void test_key_cmp(void **state)
{
    /* In sort order: ts, then site before run, then seq, then tie. */
    static const ptm_key_t keys[] = {
        { U(-9223372036854775807) - 1, 1, 5, 7 },
        { U(-1), 0, 0, 0 },
        { 0, 0, 0, 0 },
        { 0, 0, 1, 0 },
        { 0, 0, APR_UINT64_C(0xffffffffffffffff), 0 },
        { 0, 1, 0, 1 },
        { 0, 1, 0, 0xffffffffu },
        { 0, 1, 1, 1 },
        { 1, 0, 0, 0 },
        { U(1796320800000000), 1, 3, 2 },
        { U(9223372036854775807), 0, 0, 0 },
    };
    size_t n = sizeof(keys) / sizeof(keys[0]), i, j;

    for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++) {
            int c = ptm_key_cmp(&keys[i], &keys[j]);
            int want = i < j ? -1 : i > j;

            if ((c < 0 ? -1 : c > 0) != want) {
                fail_msg("cmp(keys[%zu], keys[%zu]) = %d", i, j, c);
            }
        }
    }
}

static void test_tie(void **state)
{
    /* FNV-1a 32 test vectors (Fowler, Noll, Vo; also Python). */
    assert_int_equal(ptm_query_tie("a", 1), 0xe40c292cu);
    assert_int_equal(ptm_query_tie("foobar", 6), 0xbf9cf968u);
    assert_int_equal(ptm_query_tie("/data/runs/r1", 13), 0x0b3e41ffu);
    assert_int_equal(ptm_query_tie("", 0), 0x811c9dc5u);
    /* The length counts, not a NUL. */
    assert_int_not_equal(ptm_query_tie("a\0b", 3), ptm_query_tie("a", 1));
    /* "ak4md*" hashes to 0, which is the site's: a run gets 1. */
    assert_int_equal(ptm_query_tie("ak4md*", 6), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_cmp),
        cmocka_unit_test(test_tie),
    };

    return cmocka_run_group_tests_name("ptm_query", tests, group_setup,
                                       group_teardown);
}

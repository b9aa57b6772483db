/* Unit tests for ptm_conf: directive byte counts (digits only, every
 * overflow refused, never truncated to a smaller type) and the request body
 * limit (PanoptesTelemetryMaxBody against LimitRequestBody, kept within a
 * size_t). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ptm_unit.h"
#include "ptm_conf.h"

#define U64 APR_UINT64_C

typedef struct {
    const char *arg;
    apr_uint64_t min, max;
    apr_status_t rv;
    apr_uint64_t want;          /* when rv is APR_SUCCESS */
} bytes_case_t;

static void test_bytes_table(void **state)
{
    static const bytes_case_t cases[] = {
        { "0", 0, 10, APR_SUCCESS, 0 },
        { "1", 1, U64(1) << 40, APR_SUCCESS, 1 },
        { "1048576", 1, U64(1) << 40, APR_SUCCESS, 1048576 },
        { "0100", 1, 1000, APR_SUCCESS, 100 },    /* decimal, not octal */
        { "1099511627776", 1, U64(1) << 40, APR_SUCCESS, U64(1) << 40 },
        { "18446744073709551615", 0, APR_UINT64_MAX, APR_SUCCESS,
          APR_UINT64_MAX },
        /* not numbers of bytes */
        { "", 0, 10, APR_EINVAL, 0 },
        { "1e3", 1, 1000000, APR_EINVAL, 0 },
        { "-1", 0, 10, APR_EINVAL, 0 },
        { "+1", 0, 10, APR_EINVAL, 0 },
        { "0x10", 0, 100, APR_EINVAL, 0 },
        { " 10", 0, 100, APR_EINVAL, 0 },
        { "10 ", 0, 100, APR_EINVAL, 0 },
        { "1.5", 0, 100, APR_EINVAL, 0 },
        { "1k", 0, 100000, APR_EINVAL, 0 },
        { "16M", 0, U64(1) << 40, APR_EINVAL, 0 },
        { "\xef\xbc\x91", 0, 100, APR_EINVAL, 0 },    /* fullwidth 1 */
        { "99999999999999999999999x", 0, APR_UINT64_MAX, APR_EINVAL, 0 },
        /* numbers out of range */
        { "0", 1, 10, APR_ERANGE, 0 },
        { "11", 1, 10, APR_ERANGE, 0 },
        { "1099511627777", 1, U64(1) << 40, APR_ERANGE, 0 },
        { "18446744073709551616", 0, APR_UINT64_MAX, APR_ERANGE, 0 },
        { "99999999999999999999999", 0, APR_UINT64_MAX, APR_ERANGE, 0 },
        /* 2^64 + 1 and 2^65 + 1: they wrap to 1 in 64 bits */
        { "18446744073709551617", 0, APR_UINT64_MAX, APR_ERANGE, 0 },
        { "36893488147419103233", 0, APR_UINT64_MAX, APR_ERANGE, 0 },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        apr_uint64_t out = U64(4242);
        apr_status_t rv = ptm_conf_bytes(&out, cases[i].arg, cases[i].min,
                                         cases[i].max);

        if (rv != cases[i].rv) {
            fail_msg("'%s': status %d, expected %d", cases[i].arg, rv,
                     cases[i].rv);
        }
        if (rv == APR_SUCCESS) {
            assert_true(out == cases[i].want);
        }
        else {
            assert_true(out == U64(4242));    /* untouched */
        }
    }
}

static void test_bytes_null(void **state)
{
    apr_uint64_t out = 7;

    assert_int_equal(ptm_conf_bytes(&out, NULL, 0, 10), APR_EINVAL);
    assert_true(out == 7);
}

/* What the glue passes on a 32-bit build: PanoptesTelemetryStateSize may
 * be at most 4 GiB, but a size_t there holds 4 GiB - 1.  4 GiB must be
 * refused, not truncated to 0 (the old (apr_size_t) cast). */
static void test_bytes_32bit_state_size(void **state)
{
    const apr_uint64_t size_max32 = U64(0xffffffff);
    /* The glue's bound: the smaller of 4 GiB and APR_SIZE_MAX. */
    const apr_uint64_t bound = (U64(4) << 30) < size_max32 ? U64(4) << 30
                                                          : size_max32;
    apr_uint64_t out = 0;

    assert_int_equal(ptm_conf_bytes(&out, "4294967296", 65536, bound),
                     APR_ERANGE);
    assert_int_equal(ptm_conf_bytes(&out, "8589934592", 65536, bound),
                     APR_ERANGE);
    assert_int_equal(ptm_conf_bytes(&out, "4294967295", 65536, bound),
                     APR_SUCCESS);
    assert_true(out == size_max32);
}

static void test_body_limit(void **state)
{
    /* MaxBody against LimitRequestBody (httpd's default is 1 GiB). */
    assert_true(ptm_conf_body_limit(1048576, U64(1) << 30) == 1048576);
    assert_true(ptm_conf_body_limit(4096, 100) == 100);
    assert_true(ptm_conf_body_limit(100, 4096) == 100);
    assert_true(ptm_conf_body_limit(1024, 1024) == 1024);
    /* LimitRequestBody 0: no limit from httpd. */
    assert_true(ptm_conf_body_limit(1024, 0) == 1024);
    assert_true(ptm_conf_body_limit(U64(1) << 40, 0)
                == ((U64(1) << 40) < (apr_uint64_t)APR_SIZE_MAX
                    ? (apr_size_t)(U64(1) << 40) : APR_SIZE_MAX - 1));
    /* Whatever is asked, the body and its NUL fit one size_t. */
    assert_true(ptm_conf_body_limit(APR_UINT64_MAX, 0) == APR_SIZE_MAX - 1);
    assert_true(ptm_conf_body_limit(APR_UINT64_MAX, APR_UINT64_MAX)
                == APR_SIZE_MAX - 1);
    assert_true(ptm_conf_body_limit(APR_UINT64_MAX, 100) == 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_table),
        cmocka_unit_test(test_bytes_null),
        cmocka_unit_test(test_bytes_32bit_state_size),
        cmocka_unit_test(test_body_limit),
    };

    return cmocka_run_group_tests_name("ptm_conf", tests, group_setup,
                                       group_teardown);
}

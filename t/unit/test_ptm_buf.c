/* Unit tests for ptm_buf: the growable pool buffer, its integer printers,
 * and the capped append the glue reads request bodies with (grows with
 * what arrives, never past the limit, no size_t wrap). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ptm_unit.h"
#include "ptm_buf.h"

static void test_add_and_grow(void **state)
{
    ptm_buf_t b;
    int i;

    ptm_buf_init(&b, gpool, 1);
    assert_true(b.cap >= 64);
    for (i = 0; i < 1000; i++) {
        ptm_buf_putc(&b, (char)('a' + i % 26));
    }
    ptm_buf_puts(&b, "end");
    assert_int_equal(b.len, 1003);
    assert_true(b.cap >= b.len);
    assert_memory_equal(b.data, "abcdefghijklmnopqrstuvwxyz", 26);
    assert_memory_equal(b.data + 1000, "end", 3);
}

static void test_integers(void **state)
{
    ptm_buf_t b;
    char out[20];

    ptm_buf_init(&b, gpool, 64);
    ptm_buf_put_int(&b, 0);
    ptm_buf_putc(&b, ' ');
    ptm_buf_put_int(&b, -1);
    ptm_buf_putc(&b, ' ');
    ptm_buf_put_int(&b, INT64_MAX);
    ptm_buf_putc(&b, ' ');
    ptm_buf_put_int(&b, INT64_MIN);
    assert_int_equal(b.len, strlen("0 -1 9223372036854775807 "
                                   "-9223372036854775808"));
    assert_memory_equal(b.data, "0 -1 9223372036854775807 "
                        "-9223372036854775808", b.len);
    assert_int_equal(ptm_fmt_u64(out, UINT64_MAX), 20);
    assert_memory_equal(out, "18446744073709551615", 20);
}

/* A body read from a small start: the buffer follows the bytes that
 * arrived (a client announcing 1 MiB and sending 10 bytes costs 8 KiB),
 * always keeps a byte for the NUL, and never outgrows limit + 1. */
static void test_capped_grows_from_small(void **state)
{
    const size_t limit = 1024 * 1024;
    char chunk[1000];
    ptm_buf_t b;
    size_t i, start = 8192;

    memset(chunk, 'x', sizeof(chunk));
    ptm_buf_init(&b, gpool, start);
    assert_int_equal(ptm_buf_add_capped(&b, chunk, 10, limit), APR_SUCCESS);
    assert_int_equal(b.cap, start);
    for (i = 10; i + sizeof(chunk) <= limit; i += sizeof(chunk)) {
        assert_int_equal(ptm_buf_add_capped(&b, chunk, sizeof(chunk), limit),
                         APR_SUCCESS);
        assert_true(b.cap > b.len);                 /* room for the NUL */
        assert_true(b.cap <= limit + 1);
        assert_true(b.cap == start || b.cap < 2 * (b.len + 1)
                    || b.cap == limit + 1);
    }
    assert_int_equal(b.len, i);
    /* Up to exactly the limit. */
    assert_int_equal(ptm_buf_add_capped(&b, chunk, limit - i, limit),
                     APR_SUCCESS);
    assert_int_equal(b.len, limit);
    assert_int_equal(b.cap, limit + 1);
    b.data[b.len] = '\0';
    /* One byte more is refused, and nothing changes. */
    assert_int_equal(ptm_buf_add_capped(&b, "y", 1, limit), APR_ENOSPC);
    assert_int_equal(b.len, limit);
    assert_int_equal(ptm_buf_add_capped(&b, "", 0, limit), APR_SUCCESS);
    assert_int_equal(b.len, limit);
}

static void test_capped_small_limits(void **state)
{
    ptm_buf_t b;

    /* A limit below the start size: no growth at all. */
    ptm_buf_init(&b, gpool, 64);
    assert_int_equal(ptm_buf_add_capped(&b, "0123456789", 10, 10),
                     APR_SUCCESS);
    assert_int_equal(ptm_buf_add_capped(&b, "a", 1, 10), APR_ENOSPC);
    assert_int_equal(b.len, 10);
    assert_int_equal(b.cap, 64);
    assert_memory_equal(b.data, "0123456789", 10);

    /* 100 bytes with a limit of 100, from 64: one step, to 101. */
    ptm_buf_init(&b, gpool, 64);
    {
        char hundred[100];

        memset(hundred, 'h', sizeof(hundred));
        assert_int_equal(ptm_buf_add_capped(&b, hundred, 60, 100),
                         APR_SUCCESS);
        assert_int_equal(ptm_buf_add_capped(&b, hundred, 41, 100),
                         APR_ENOSPC);
        assert_int_equal(b.len, 60);
        assert_int_equal(ptm_buf_add_capped(&b, hundred, 40, 100),
                         APR_SUCCESS);
        assert_int_equal(b.len, 100);
        assert_int_equal(b.cap, 101);
    }

    /* A zero limit takes only empty bodies. */
    ptm_buf_init(&b, gpool, 64);
    assert_int_equal(ptm_buf_add_capped(&b, "", 0, 0), APR_SUCCESS);
    assert_int_equal(ptm_buf_add_capped(&b, "a", 1, 0), APR_ENOSPC);
    assert_int_equal(b.len, 0);
}

/* The old check, (apr_off_t)(len + n) > limit, wraps when len + n passes
 * SIZE_MAX (a 4 GiB chunk on a 32-bit build): 10 + (SIZE_MAX - 5) is 4.
 * The data pointer is never read on a refusal. */
static void test_capped_no_wrap(void **state)
{
    ptm_buf_t b;
    static const char few[16] = "0123456789abcdef";

    ptm_buf_init(&b, gpool, 64);
    assert_int_equal(ptm_buf_add_capped(&b, few, 10, 100), APR_SUCCESS);
    assert_int_equal(ptm_buf_add_capped(&b, few, SIZE_MAX - 5, 100),
                     APR_ENOSPC);
    assert_int_equal(ptm_buf_add_capped(&b, few, SIZE_MAX, 100),
                     APR_ENOSPC);
    assert_int_equal(ptm_buf_add_capped(&b, few, SIZE_MAX - 10,
                                        SIZE_MAX - 1),
                     APR_ENOSPC);
    assert_int_equal(b.len, 10);
    assert_int_equal(b.cap, 64);
    /* A buffer already past a (smaller) limit takes nothing more. */
    assert_int_equal(ptm_buf_add_capped(&b, few, 0, 5), APR_ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_grow),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_capped_grows_from_small),
        cmocka_unit_test(test_capped_small_limits),
        cmocka_unit_test(test_capped_no_wrap),
    };

    return cmocka_run_group_tests_name("ptm_buf", tests, group_setup,
                                       group_teardown);
}

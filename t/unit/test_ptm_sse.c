/* SSE framing, event ids and Accept (ptm_sse.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "ptm_unit.h"
#include "ptm_sse.h"

static const char *event(int has_id, uint64_t e, uint64_t n, const char *name,
                         const char *data, size_t len)
{
    ptm_buf_t b;

    ptm_buf_init(&b, gpool, 8);
    ptm_sse_event(&b, has_id, e, n, name, data, len);
    ptm_buf_putc(&b, '\0');
    return b.data;
}

static void test_event_one_line(void **state)
{
    const char *env = "{\"seq\":1,\"ts\":\"2026-12-04T00:00:00Z\"}";

    (void)state;
    assert_string_equal(event(1, 1764806400000000ULL, 42, "telemetry", env,
                              strlen(env)),
                        "id: 1764806400000000-42\nevent: telemetry\n"
                        "data: {\"seq\":1,\"ts\":\"2026-12-04T00:00:00Z\"}\n\n");
    /* No id, no name: the data and the blank line only. */
    assert_string_equal(event(0, 0, 0, NULL, "x", 1), "data: x\n\n");
    /* id 0-0 is an id like any other (the snapshot before any event). */
    assert_string_equal(event(1, 0, 0, "current", "{}", 2),
                        "id: 0-0\nevent: current\ndata: {}\n\n");
}

static void test_event_breaks_never_end_it(void **state)
{
    (void)state;
    /* LF, CR and CRLF each start a data: line; none makes a blank line
     * (which would dispatch) nor a field of its own ("id: forged"). */
    assert_string_equal(event(0, 0, 0, "e", "a\nid: forged\r\nb\rc", 17),
                        "event: e\ndata: a\ndata: id: forged\ndata: b\n"
                        "data: c\n\n");
    assert_string_equal(event(0, 0, 0, "e", "a\n\nb", 4),
                        "event: e\ndata: a\ndata: \ndata: b\n\n");
    assert_string_equal(event(0, 0, 0, "e", "a\n", 2),
                        "event: e\ndata: a\ndata: \n\n");
    assert_string_equal(event(0, 0, 0, "e", "", 0), "event: e\ndata: \n\n");
}

static void test_retry_and_comment(void **state)
{
    ptm_buf_t b;

    (void)state;
    ptm_buf_init(&b, gpool, 8);
    ptm_sse_retry(&b, 30000);
    ptm_sse_comment(&b, "ping");
    ptm_sse_retry(&b, 1000);
    ptm_buf_putc(&b, '\0');
    assert_string_equal(b.data, "retry: 30000\n\n: ping\n\nretry: 1000\n\n");
}

static void test_parse_id(void **state)
{
    uint64_t e = 1, n = 1;
    static const char *bad[] = {
        "", "-", "1-", "-1", "1", "12", "a-1", "1-a", "1-2-3", " 1-2",
        "1-2 ", "+1-2", "1--2", "1-+2", "18446744073709551616-1",
        "1-18446744073709551616", "99999999999999999999-1", "1-0x10",
        NULL
    };
    int i;

    (void)state;
    assert_int_equal(ptm_sse_parse_id("1764806400000000-42", 19, &e, &n), 0);
    assert_true(e == 1764806400000000ULL && n == 42);
    assert_int_equal(ptm_sse_parse_id("0-0", 3, &e, &n), 0);
    assert_true(e == 0 && n == 0);
    assert_int_equal(ptm_sse_parse_id("18446744073709551615-"
                                      "18446744073709551615", 41, &e, &n), 0);
    assert_true(e == UINT64_MAX && n == UINT64_MAX);
    /* The length counts, not a NUL: "5-6" out of "5-67". */
    assert_int_equal(ptm_sse_parse_id("5-67", 3, &e, &n), 0);
    assert_true(e == 5 && n == 6);
    assert_int_equal(ptm_sse_parse_id("1-2\0" "3", 5, &e, &n), -1);
    assert_int_equal(ptm_sse_parse_id(NULL, 0, &e, &n), -1);
    for (i = 0; bad[i]; i++) {
        if (ptm_sse_parse_id(bad[i], strlen(bad[i]), &e, &n) != -1) {
            fail_msg("took \"%s\"", bad[i]);
        }
    }
}

static void test_accepts(void **state)
{
    static const struct { const char *accept; int yes; } c[] = {
        { "text/event-stream", 1 },
        { "Text/Event-Stream", 1 },
        { "application/json, text/event-stream", 1 },
        { "text/event-stream;q=0.5, */*", 1 },
        { " text/event-stream ; charset=utf-8", 1 },
        { "text/event-stream;q=0", 0 },
        { "text/event-stream; q=0.000", 0 },
        { "text/event-stream;q=0.001", 1 },
        { "text/event-streams", 0 },
        { "text/event", 0 },
        { "*/*", 0 },
        { "application/json", 0 },
        { "", 0 },
        { "application/x-text/event-stream", 0 },
        { "a;b=\"text/event-stream\"", 0 },
    };
    size_t i;

    (void)state;
    assert_int_equal(ptm_sse_accepts(NULL), 0);
    for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        if (ptm_sse_accepts(c[i].accept) != c[i].yes) {
            fail_msg("Accept: %s -> %d", c[i].accept, !c[i].yes);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_one_line),
        cmocka_unit_test(test_event_breaks_never_end_it),
        cmocka_unit_test(test_retry_and_comment),
        cmocka_unit_test(test_parse_id),
        cmocka_unit_test(test_accepts),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

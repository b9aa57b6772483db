/* Unit tests for ptm_query (SPEC §12.2, §2.6): the sort key, the run tie,
 * how GET /events reads its query string (percent-decoding, '+', repeats,
 * unknown names), each parameter's default and accepted forms, the exact
 * 422 item of every kind of bad parameter and their order, and the cursor:
 * round trip, bound to the epoch and to the parameters, refused after any
 * change, and carrying the first page's window.
 *
 * 422 details are compared as whole documents: err.detail is serialised
 * with json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER) and compared byte for
 * byte with the expected body.  The int, literal and unicode items and
 * which limit texts are ints were checked against pydantic-core 2.46.4, the
 * decoding cases against Python's parse_qsl; the module's own checks use
 * the value_error shape of §2.6. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <jansson.h>
#include "ptm_err.h"
#include "ptm_query.h"

/* ---- helpers ------------------------------------------------------------- */

#define U(v) APR_INT64_C(v)
#define SEC U(1000000)
#define NOW U(1796320800000000)            /* 2026-12-03T18:00:00Z */
#define EPOCH APR_UINT64_C(0x5eed0eb9af800001)

static void parse_ok_at(ptm_query_t *q, const char *args, int accept,
                        apr_time_t now, uint64_t epoch)
{
    ptm_err_t err = { 0, NULL, NULL };

    if (ptm_query_parse(q, &err, args, accept, now, epoch, gpool) != 0) {
        char *d = json_dumps(err.detail, JSON_COMPACT | JSON_PRESERVE_ORDER);

        fail_msg("\"%s\" refused: %s", args ? args : "(null)", d);
    }
    assert_int_equal(err.status, 0);
    assert_null(err.detail);
}

static void parse_ok(ptm_query_t *q, const char *args)
{
    parse_ok_at(q, args, 0, NOW, EPOCH);
}

/* `args` must be refused with exactly the `want` detail. */
static void expect_422_at(const char *args, int accept, apr_time_t now,
                          uint64_t epoch, const char *want)
{
    ptm_err_t err = { 0, NULL, NULL };
    ptm_query_t q;
    char *got;
    int rc = ptm_query_parse(&q, &err, args, accept, now, epoch, gpool);

    if (rc != -1 || err.status != 422 || !err.detail) {
        fail_msg("\"%s\": rc %d status %d, want a 422", args, rc,
                 err.status);
    }
    got = json_dumps(err.detail, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!got || strcmp(got, want) != 0) {
        fail_msg("\"%s\":\n got  %s\n want %s", args, got ? got : "NULL",
                 want);
    }
    free(got);
    ptm_err_clear(&err);
}

static void expect_422(const char *args, const char *want)
{
    expect_422_at(args, 0, NOW, EPOCH, want);
}

/* The detail of a one-item value_error at `name`. */
static const char *value_error(const char *name, const char *input,
                               const char *why)
{
    return apr_psprintf(gpool, "[{\"type\":\"value_error\",\"loc\":"
                        "[\"query\",\"%s\"],\"msg\":\"Value error, %s\","
                        "\"input\":%s,\"ctx\":{\"error\":\"%s\"}}]",
                        name, why, input, why);
}

/* The items of several one-item details, in one detail (NULL ends). */
static const char *items(const char *first, ...)
{
    const char *d, *out = "[";
    va_list ap;

    va_start(ap, first);
    for (d = first; d; d = va_arg(ap, const char *)) {
        out = apr_pstrcat(gpool, out, out[1] ? "," : "",
                          apr_pstrndup(gpool, d + 1, strlen(d) - 2), NULL);
    }
    va_end(ap);
    return apr_pstrcat(gpool, out, "]", NULL);
}

#define WHEN_WHY "not an RFC 3339 time or a duration (90s, 15m, 24h, 7d)"
#define NOT_OURS "not a cursor of this server"
#define OTHERS "the cursor belongs to other parameters"

static const char *type_at(const ptm_query_t *q, int i)
{
    assert_true(i < q->types->nelts);
    return ((const ptm_query_str_t *)q->types->elts)[i].s;
}

static size_t type_len_at(const ptm_query_t *q, int i)
{
    return ((const ptm_query_str_t *)q->types->elts)[i].len;
}

/* base64url without padding, written here from RFC 4648 §5 rather than
 * taken from the code under test. */
static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t unb64(unsigned char *out, const char *s)
{
    size_t n = strlen(s), i, o = 0;
    unsigned acc = 0;
    int bits = 0;

    for (i = 0; i < n; i++) {
        const char *at = strchr(alphabet, s[i]);

        assert_non_null(at);
        acc = acc << 6 | (unsigned)(at - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return o;
}

static char *b64(const unsigned char *in, size_t n)
{
    char *out = apr_palloc(gpool, n * 2 + 1), *o = out;
    unsigned acc = 0;
    int bits = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            *o++ = alphabet[acc >> bits & 63];
        }
    }
    if (bits > 0) {
        *o++ = alphabet[acc << (6 - bits) & 63];
    }
    *o = '\0';
    return out;
}

static int key_eq(const ptm_key_t *a, const ptm_key_t *b)
{
    return a->ts == b->ts && a->stream == b->stream && a->seq == b->seq
           && a->tie == b->tie;
}

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

/* ---- defaults and accepted values ---------------------------------------- */

static void check_defaults(const ptm_query_t *q, int ndjson)
{
    assert_non_null(q->types);
    assert_int_equal(q->types->nelts, 0);
    assert_true(q->since == NOW - 3600 * SEC);
    assert_true(q->until == APR_INT64_MAX);
    assert_int_equal(q->stream, PTM_Q_ALL);
    assert_null(q->run_id);
    assert_int_equal(q->desc, 1);
    assert_int_equal(q->limit, ndjson ? 0 : PTM_QUERY_LIMIT_DEFAULT);
    assert_int_equal(q->limit_given, 0);
    assert_true(q->every == 0);
    assert_int_equal(q->ndjson, ndjson);
    assert_int_equal(q->has_after, 0);
}

static void test_defaults(void **state)
{
    ptm_query_t q;

    memset(&q, 0x5a, sizeof(q));
    parse_ok(&q, NULL);
    check_defaults(&q, 0);
    memset(&q, 0x5a, sizeof(q));
    parse_ok(&q, "");
    check_defaults(&q, 0);
    /* Unknown names and empty items change nothing. */
    parse_ok(&q, "&&foo=bar&Type=x&TYPE=y&=z&limit_=0&&");
    check_defaults(&q, 0);

    /* NDJSON: by Accept or by format=; no limit unless given. */
    parse_ok_at(&q, NULL, 1, NOW, EPOCH);
    check_defaults(&q, 1);
    parse_ok(&q, "format=ndjson");
    check_defaults(&q, 1);
    parse_ok_at(&q, "format=ndjson", 1, NOW, EPOCH);
    check_defaults(&q, 1);
    parse_ok(&q, "format=json");
    check_defaults(&q, 0);
    /* format= in the URL wins over Accept. */
    parse_ok_at(&q, "format=json", 1, NOW, EPOCH);
    check_defaults(&q, 0);

    parse_ok(&q, "format=ndjson&limit=5");
    assert_int_equal(q.ndjson, 1);
    assert_int_equal(q.limit, 5);
    assert_int_equal(q.limit_given, 1);
}

static void test_types(void **state)
{
    ptm_query_t q;

    parse_ok(&q, "type=weather&type=power&type=&type=a%22b%5C&type=%C3%A9"
                 "&type=%F0%9F%94%AD&type=%00&type=weather");
    assert_int_equal(q.types->nelts, 8);
    /* The JSON strings of the files: quotes, escapes, \u for non-ASCII. */
    assert_string_equal(type_at(&q, 0), "\"weather\"");
    assert_int_equal(type_len_at(&q, 0), 9);
    assert_string_equal(type_at(&q, 1), "\"power\"");
    assert_string_equal(type_at(&q, 2), "\"\"");
    assert_int_equal(type_len_at(&q, 2), 2);
    assert_string_equal(type_at(&q, 3), "\"a\\\"b\\\\\"");
    assert_string_equal(type_at(&q, 4), "\"\\u00e9\"");
    assert_string_equal(type_at(&q, 5), "\"\\ud83d\\udd2d\"");
    assert_string_equal(type_at(&q, 6), "\"\\u0000\"");
    assert_int_equal(type_len_at(&q, 6), 8);
    assert_string_equal(type_at(&q, 7), "\"weather\"");
    /* A name with no '=' is a blank value (keep_blank_values). */
    parse_ok(&q, "type");
    assert_int_equal(q.types->nelts, 1);
    assert_string_equal(type_at(&q, 0), "\"\"");
}

static void test_values(void **state)
{
    static const struct {
        const char *args;
        apr_time_t since, until;
    } windows[] = {
        { "since=2026-12-03T17:00:00Z", U(1796317200000000), APR_INT64_MAX },
        { "since=2026-12-03T17:00:00.5%2B05:30", U(1796297400500000),
          APR_INT64_MAX },
        { "since=2026-12-03+17:00:00-08:00", U(1796346000000000),
          APR_INT64_MAX },
        { "since=90s", NOW - 90 * SEC, APR_INT64_MAX },
        { "since=7d", NOW - 7 * 86400 * SEC, APR_INT64_MAX },
        { "since=36525d", NOW - U(3155760000) * SEC, APR_INT64_MAX },
        { "until=15m", NOW - 3600 * SEC, NOW - 900 * SEC },
        { "until=2026-12-03T18:30:00Z", NOW - 3600 * SEC,
          U(1796322600000000) },
        { "since=2h&until=1h30m", NOW - 7200 * SEC, NOW - 5400 * SEC },
        { "since=1970-01-01T00:00:00Z&until=1970-01-01T00:00:00.000001Z", 0,
          1 },
        { "since=0001-01-01T00:00:00Z", U(-62135596800000000),
          APR_INT64_MAX },
    };
    /* pydantic-core 2.46.4 gives the same ints for the decoded texts. */
    static const struct {
        const char *args;
        int limit;
    } limits[] = {
        { "limit=1", 1 }, { "limit=10000", 10000 }, { "limit=250", 250 },
        { "limit=%2B5", 5 }, { "limit=%205%20", 5 }, { "limit=+5+", 5 },
        { "limit=+%2B5", 5 }, { "limit=%095%0A", 5 },
        { "limit=%0B5%0C%0D", 5 }, { "limit=5.0", 5 }, { "limit=5.000", 5 },
        { "limit=0010", 10 }, { "limit=%2B00001.00", 1 },
        { "limit=0000000000000000000000000000000000000000007", 7 },
        /* Single underscores between digits, as Python's int(). */
        { "limit=1_000", 1000 }, { "limit=0_5", 5 }, { "limit=%2B5_0", 50 },
        { "limit=5_0.0", 50 }, { "limit=1_0000", 10000 },
        /* Unicode White_Space is trimmed too. */
        { "limit=%C2%A05", 5 }, { "limit=%C2%855", 5 },
        { "limit=5%C2%85", 5 }, { "limit=%E2%80%895", 5 },
        { "limit=%E3%80%805%E3%80%80", 5 },
        { "limit=%E2%80%A85%E2%80%A9", 5 },
        { "limit=%E2%80%AF%E2%81%9F5", 5 }, { "limit=%E1%9A%805", 5 },
        { "limit=%E2%80%805%E2%80%8A", 5 },
    };
    ptm_query_t q;
    size_t i;

    for (i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
        parse_ok(&q, windows[i].args);
        if (q.since != windows[i].since || q.until != windows[i].until) {
            fail_msg("%s: [%lld, %lld), want [%lld, %lld)", windows[i].args,
                     (long long)q.since, (long long)q.until,
                     (long long)windows[i].since,
                     (long long)windows[i].until);
        }
    }
    for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        parse_ok(&q, limits[i].args);
        if (q.limit != limits[i].limit || !q.limit_given) {
            fail_msg("%s: limit %d given %d", limits[i].args, q.limit,
                     q.limit_given);
        }
    }

    parse_ok(&q, "stream=site");
    assert_int_equal(q.stream, 0);
    parse_ok(&q, "stream=run");
    assert_int_equal(q.stream, 1);
    parse_ok(&q, "stream=all");
    assert_int_equal(q.stream, PTM_Q_ALL);
    parse_ok(&q, "order=asc");
    assert_int_equal(q.desc, 0);
    parse_ok(&q, "order=desc");
    assert_int_equal(q.desc, 1);
    parse_ok(&q, "every=1h30m");
    assert_true(q.every == 5400 * SEC);

    parse_ok(&q, "run_id=r%2F1+x");
    assert_int_equal(q.run_id_len, 5);
    assert_memory_equal(q.run_id, "r/1 x", 5);
    /* Given but empty is not absent. */
    parse_ok(&q, "run_id=");
    assert_non_null(q.run_id);
    assert_int_equal(q.run_id_len, 0);
    parse_ok(&q, "run_id=a%00b");
    assert_int_equal(q.run_id_len, 3);
    assert_memory_equal(q.run_id, "a\0b", 3);
}

/* Python's parse_qsl(keep_blank_values=True), case by case. */
static void test_decoding(void **state)
{
    static const struct {
        const char *args;
        const char *want;   /* the run_id */
        size_t len;
    } cases[] = {
        { "run_id=a+b", "a b", 3 },
        { "run_id=a%2Bb", "a+b", 3 },
        { "run_id=a%2bb", "a+b", 3 },
        { "run_id=%zz", "%zz", 3 },
        { "run_id=%4", "%4", 2 },
        { "run_id=%", "%", 1 },
        { "run_id=%%41", "%A", 2 },
        { "run_id=%4%41", "%4A", 3 },
        { "run_id=%41%", "A%", 2 },
        { "run_id=a=b=c", "a=b=c", 5 },
        { "run_id=%26%3D", "&=", 2 },
        { "run_id=%C3%A9", "\xc3\xa9", 2 },
        { "run_id=\xc3\xa9", "\xc3\xa9", 2 },   /* sent raw: kept */
        { "run_id=%00", "\0", 1 },
        { "run_id", "", 0 },
        { "%72un_id=x", "x", 1 },               /* names are decoded too */
        { "run%5Fid=x", "x", 1 },
        { "run_id=x&run_id%00=y&run_id+=z", "x", 1 },
    };
    ptm_query_t q;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parse_ok(&q, cases[i].args);
        if (!q.run_id || q.run_id_len != cases[i].len
            || memcmp(q.run_id, cases[i].want, cases[i].len) != 0) {
            fail_msg("%s: got \"%.*s\" (%zu)", cases[i].args,
                     (int)q.run_id_len, q.run_id ? q.run_id : "",
                     q.run_id_len);
        }
    }
    parse_ok(&q, "stream=%73ite&order=%61sc&format=nd%6Ason");
    assert_int_equal(q.stream, 0);
    assert_int_equal(q.desc, 0);
    assert_int_equal(q.ndjson, 1);
    /* '+' is a space, so this is not a duration. */
    expect_422("since=1h+", value_error("since", "\"1h \"", WHEN_WHY));
}

/* ---- 422 items ----------------------------------------------------------- */

static void test_422_limit(void **state)
{
    /* int_parsing from pydantic-core 2.46.4 too: among them "5." and
     * spaces that are not White_Space (U+200B, U+FEFF, U+180E, \x1c). */
    static const char *const not_int[] = {
        "abc", "", "5.", "5.5", "5.01", "1e3", "0x10", "5.0.0", "-", "%2B",
        ".0", "%2B-5", "5+0", "%205%20x", "five", "%005", "5%00",
        "%2B%2B5", "0b1", "-%205", "_5", "5_", "5__0", "5_.0", "5.0_",
        "5._0", "%2B_5", "%E2%80%8B5", "%EF%BB%BF5", "%1C5", "%1F5",
        "%E1%A0%8E5", "%EF%BC%91", "%D9%A3", "5%C2%A0.0",
    };
    size_t i;

    for (i = 0; i < sizeof(not_int) / sizeof(not_int[0]); i++) {
        const char *args = apr_pstrcat(gpool, "limit=", not_int[i], NULL);
        ptm_query_t q;
        ptm_err_t err = { 0, NULL, NULL };
        json_t *item;

        assert_int_equal(ptm_query_parse(&q, &err, args, 0, NOW, EPOCH,
                                         gpool), -1);
        item = json_array_get(err.detail, 0);
        assert_int_equal(json_array_size(err.detail), 1);
        if (strcmp(json_string_value(json_object_get(item, "type")),
                   "int_parsing") != 0) {
            fail_msg("%s: %s", args,
                     json_string_value(json_object_get(item, "type")));
        }
        ptm_err_clear(&err);
    }
    expect_422("limit=abc",
               "[{\"type\":\"int_parsing\",\"loc\":[\"query\",\"limit\"],"
               "\"msg\":\"Input should be a valid integer, unable to parse "
               "string as an integer\",\"input\":\"abc\"}]");
    expect_422("limit=",
               "[{\"type\":\"int_parsing\",\"loc\":[\"query\",\"limit\"],"
               "\"msg\":\"Input should be a valid integer, unable to parse "
               "string as an integer\",\"input\":\"\"}]");
    expect_422("limit=0",
               "[{\"type\":\"greater_than_equal\",\"loc\":[\"query\","
               "\"limit\"],\"msg\":\"Input should be greater than or equal "
               "to 1\",\"input\":\"0\",\"ctx\":{\"ge\":1}}]");
    expect_422("limit=-3",
               "[{\"type\":\"greater_than_equal\",\"loc\":[\"query\","
               "\"limit\"],\"msg\":\"Input should be greater than or equal "
               "to 1\",\"input\":\"-3\",\"ctx\":{\"ge\":1}}]");
    expect_422("limit=-99999999999999999999999999",
               "[{\"type\":\"greater_than_equal\",\"loc\":[\"query\","
               "\"limit\"],\"msg\":\"Input should be greater than or equal "
               "to 1\",\"input\":\"-99999999999999999999999999\","
               "\"ctx\":{\"ge\":1}}]");
    expect_422("limit=10_001",
               "[{\"type\":\"less_than_equal\",\"loc\":[\"query\","
               "\"limit\"],\"msg\":\"Input should be less than or equal to "
               "10000\",\"input\":\"10_001\",\"ctx\":{\"le\":10000}}]");
    expect_422("limit=5.",
               "[{\"type\":\"int_parsing\",\"loc\":[\"query\",\"limit\"],"
               "\"msg\":\"Input should be a valid integer, unable to parse "
               "string as an integer\",\"input\":\"5.\"}]");
    expect_422("limit=10001",
               "[{\"type\":\"less_than_equal\",\"loc\":[\"query\","
               "\"limit\"],\"msg\":\"Input should be less than or equal to "
               "10000\",\"input\":\"10001\",\"ctx\":{\"le\":10000}}]");
    /* Far beyond int64: still a number, just too big. */
    expect_422("limit=%2B99999999999999999999999999.0",
               "[{\"type\":\"less_than_equal\",\"loc\":[\"query\","
               "\"limit\"],\"msg\":\"Input should be less than or equal to "
               "10000\",\"input\":\"+99999999999999999999999999.0\","
               "\"ctx\":{\"le\":10000}}]");
}

static void test_422_literals(void **state)
{
    expect_422("stream=bogus",
               "[{\"type\":\"literal_error\",\"loc\":[\"query\",\"stream\"],"
               "\"msg\":\"Input should be 'site', 'run' or 'all'\","
               "\"input\":\"bogus\",\"ctx\":{\"expected\":\"'site', 'run' "
               "or 'all'\"}}]");
    /* Exact and case-sensitive, as pydantic's Literal. */
    expect_422("stream=Site",
               "[{\"type\":\"literal_error\",\"loc\":[\"query\",\"stream\"],"
               "\"msg\":\"Input should be 'site', 'run' or 'all'\","
               "\"input\":\"Site\",\"ctx\":{\"expected\":\"'site', 'run' "
               "or 'all'\"}}]");
    expect_422("stream=",
               "[{\"type\":\"literal_error\",\"loc\":[\"query\",\"stream\"],"
               "\"msg\":\"Input should be 'site', 'run' or 'all'\","
               "\"input\":\"\",\"ctx\":{\"expected\":\"'site', 'run' "
               "or 'all'\"}}]");
    expect_422("order=up",
               "[{\"type\":\"literal_error\",\"loc\":[\"query\",\"order\"],"
               "\"msg\":\"Input should be 'asc' or 'desc'\","
               "\"input\":\"up\",\"ctx\":{\"expected\":\"'asc' or "
               "'desc'\"}}]");
    expect_422("order=asc+",
               "[{\"type\":\"literal_error\",\"loc\":[\"query\",\"order\"],"
               "\"msg\":\"Input should be 'asc' or 'desc'\","
               "\"input\":\"asc \",\"ctx\":{\"expected\":\"'asc' or "
               "'desc'\"}}]");
    expect_422("format=xml",
               "[{\"type\":\"literal_error\",\"loc\":[\"query\",\"format\"],"
               "\"msg\":\"Input should be 'json' or 'ndjson'\","
               "\"input\":\"xml\",\"ctx\":{\"expected\":\"'json' or "
               "'ndjson'\"}}]");
}

static void test_422_times(void **state)
{
    /* As sent, and the input of the item (JSON). */
    static const struct {
        const char *sent, *input;
    } bad[] = {
        { "yesterday", "\"yesterday\"" },
        { "", "\"\"" },
        { "2026-12-03T18:00:00", "\"2026-12-03T18:00:00\"" },
        { "2026-12-03", "\"2026-12-03\"" },
        { "2026-02-29T00:00:00Z", "\"2026-02-29T00:00:00Z\"" },
        { "2026-12-03T18:00:00Z%00", "\"2026-12-03T18:00:00Z\\u0000\"" },
        { "0s", "\"0s\"" },
        { "-1h", "\"-1h\"" },
        { "%2B1h", "\"+1h\"" },
        { "1h%20", "\"1h \"" },
        { "1h%00", "\"1h\\u0000\"" },
        { "36525d1s", "\"36525d1s\"" },
        { "1.5h", "\"1.5h\"" },
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_422(apr_pstrcat(gpool, "since=", bad[i].sent, NULL),
                   value_error("since", bad[i].input, WHEN_WHY));
        expect_422(apr_pstrcat(gpool, "until=", bad[i].sent, NULL),
                   value_error("until", bad[i].input, WHEN_WHY));
    }

    /* until not after since: empty windows and reversed ones. */
    expect_422("since=2026-12-03T18:00:00Z&until=2026-12-03T18:00:00Z",
               value_error("until", "\"2026-12-03T18:00:00Z\"",
                           "until must be after since"));
    expect_422("since=2026-12-03T18:00:00Z&until=2026-12-03T23:29:59%2B05:30",
               value_error("until", "\"2026-12-03T23:29:59+05:30\"",
                           "until must be after since"));
    /* since defaults to 1h: until=1h is an empty window, until=2h a
     * reversed one. */
    expect_422("until=1h", value_error("until", "\"1h\"",
                                       "until must be after since"));
    expect_422("until=2h", value_error("until", "\"2h\"",
                                       "until must be after since"));
    expect_422("since=1h&until=3h", value_error("until", "\"3h\"",
                                                "until must be after since"));
    /* A bad since is one problem, not two. */
    expect_422("since=x&until=3h", value_error("since", "\"x\"", WHEN_WHY));

    expect_422("every=0s", value_error("every", "\"0s\"",
                                       "not a duration (90s, 15m, 24h, 7d)"));
    expect_422("every=", value_error("every", "\"\"",
                                     "not a duration (90s, 15m, 24h, 7d)"));
    expect_422("every=2026-12-03T18:00:00Z",
               value_error("every", "\"2026-12-03T18:00:00Z\"",
                           "not a duration (90s, 15m, 24h, 7d)"));
}

static void test_422_repeats(void **state)
{
    ptm_query_t q;
    char *many = "type=t0";
    int i;

    /* type may repeat, up to PTM_QUERY_TYPES_MAX values. */
    for (i = 1; i < PTM_QUERY_TYPES_MAX; i++) {
        many = apr_psprintf(gpool, "%s&type=t%d", many, i);
    }
    assert_int_equal(ptm_query_parse(&q, &(ptm_err_t){ 0, NULL, NULL },
                                     many, 0, NOW, EPOCH, gpool), 0);
    assert_int_equal(q.types->nelts, PTM_QUERY_TYPES_MAX);
    expect_422(apr_pstrcat(gpool, many, "&type=one-too-many", NULL),
               value_error("type", "65", "at most 64 type values"));

    expect_422("since=1h&since=2h",
               value_error("since", "[\"1h\",\"2h\"]",
                           "given more than once"));
    /* Even when equal, even when bad, even when not UTF-8. */
    expect_422("stream=run&stream=run",
               value_error("stream", "[\"run\",\"run\"]",
                           "given more than once"));
    expect_422("limit=0&limit=x&limit=%FF",
               value_error("limit", "[\"0\",\"x\",\"\xef\xbf\xbd\"]",
                           "given more than once"));
    expect_422("run_id=&run_id",
               value_error("run_id", "[\"\",\"\"]", "given more than once"));
    expect_422("cursor=a&cursor=b",
               value_error("cursor", "[\"a\",\"b\"]",
                           "given more than once"));
    expect_422("format=json&format=ndjson",
               value_error("format", "[\"json\",\"ndjson\"]",
                           "given more than once"));
    expect_422("every=1h&until=1m&order=asc&until=2m&order=asc&every=1h",
               items(value_error("until", "[\"1m\",\"2m\"]",
                                 "given more than once"),
                     value_error("order", "[\"asc\",\"asc\"]",
                                 "given more than once"),
                     value_error("every", "[\"1h\",\"1h\"]",
                                 "given more than once"),
                     NULL));
    /* type may be repeated. */
    parse_ok(&q, "type=a&type=a");
    assert_int_equal(q.types->nelts, 2);
}

static void test_422_not_utf8(void **state)
{
    const char *item = "[{\"type\":\"string_unicode\",\"loc\":[\"query\","
                       "\"%s\"],\"msg\":\"Input should be a valid string, "
                       "unable to parse raw data as a unicode string\","
                       "\"input\":\"%s\"}]";

    expect_422("run_id=a%FFb",
               apr_psprintf(gpool, item, "run_id", "a\xef\xbf\xbd" "b"));
    /* An overlong '/' and a lone surrogate are not UTF-8 either. */
    expect_422("run_id=%C0%AF",
               apr_psprintf(gpool, item, "run_id",
                            "\xef\xbf\xbd\xef\xbf\xbd"));
    expect_422("run_id=%ED%A0%80",
               apr_psprintf(gpool, item, "run_id",
                            "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
    /* type: one item, the first bad value. */
    expect_422("type=ok&type=%FE&type=%FF",
               apr_psprintf(gpool, item, "type", "\xef\xbf\xbd"));
    expect_422("since=1h%FF", apr_psprintf(gpool, item, "since",
                                           "1h\xef\xbf\xbd"));
    expect_422("stream=%FF", apr_psprintf(gpool, item, "stream",
                                          "\xef\xbf\xbd"));
    expect_422("cursor=%80", apr_psprintf(gpool, item, "cursor",
                                          "\xef\xbf\xbd"));
    /* Raw bytes count the same as escaped ones. */
    expect_422("format=\xff", apr_psprintf(gpool, item, "format",
                                           "\xef\xbf\xbd"));
}

/* Every parameter wrong at once, given in reverse: the items come in
 * declaration order, one each. */
static void test_422_all_in_order(void **state)
{
    const char *args = "format=x&cursor=zz&every=q&limit=0&order=q"
                       "&run_id=1&run_id=2&stream=q&until=q&since=q"
                       "&type=%FF";
    const char *want =
        "[{\"type\":\"string_unicode\",\"loc\":[\"query\",\"type\"],"
        "\"msg\":\"Input should be a valid string, unable to parse raw data "
        "as a unicode string\",\"input\":\"\xef\xbf\xbd\"},"
        "{\"type\":\"value_error\",\"loc\":[\"query\",\"since\"],"
        "\"msg\":\"Value error, " WHEN_WHY "\",\"input\":\"q\","
        "\"ctx\":{\"error\":\"" WHEN_WHY "\"}},"
        "{\"type\":\"value_error\",\"loc\":[\"query\",\"until\"],"
        "\"msg\":\"Value error, " WHEN_WHY "\",\"input\":\"q\","
        "\"ctx\":{\"error\":\"" WHEN_WHY "\"}},"
        "{\"type\":\"literal_error\",\"loc\":[\"query\",\"stream\"],"
        "\"msg\":\"Input should be 'site', 'run' or 'all'\",\"input\":\"q\","
        "\"ctx\":{\"expected\":\"'site', 'run' or 'all'\"}},"
        "{\"type\":\"value_error\",\"loc\":[\"query\",\"run_id\"],"
        "\"msg\":\"Value error, given more than once\","
        "\"input\":[\"1\",\"2\"],\"ctx\":{\"error\":\"given more than "
        "once\"}},"
        "{\"type\":\"literal_error\",\"loc\":[\"query\",\"order\"],"
        "\"msg\":\"Input should be 'asc' or 'desc'\",\"input\":\"q\","
        "\"ctx\":{\"expected\":\"'asc' or 'desc'\"}},"
        "{\"type\":\"greater_than_equal\",\"loc\":[\"query\",\"limit\"],"
        "\"msg\":\"Input should be greater than or equal to 1\","
        "\"input\":\"0\",\"ctx\":{\"ge\":1}},"
        "{\"type\":\"value_error\",\"loc\":[\"query\",\"every\"],"
        "\"msg\":\"Value error, not a duration (90s, 15m, 24h, 7d)\","
        "\"input\":\"q\",\"ctx\":{\"error\":\"not a duration (90s, 15m, "
        "24h, 7d)\"}},"
        "{\"type\":\"value_error\",\"loc\":[\"query\",\"cursor\"],"
        "\"msg\":\"Value error, " NOT_OURS "\",\"input\":\"zz\","
        "\"ctx\":{\"error\":\"" NOT_OURS "\"}},"
        "{\"type\":\"literal_error\",\"loc\":[\"query\",\"format\"],"
        "\"msg\":\"Input should be 'json' or 'ndjson'\",\"input\":\"x\","
        "\"ctx\":{\"expected\":\"'json' or 'ndjson'\"}}]";

    expect_422(args, want);
}

/* ---- the cursor ---------------------------------------------------------- */

#define BASE "type=weather&type=power&since=1h&until=2026-12-04T00:00:00Z" \
             "&stream=run&run_id=r1&order=asc&every=5m"

static const ptm_key_t some_key = {
    U(1796318000123456), 1, APR_UINT64_C(4242), 0xdeadbeefu
};

/* The cursor after `key` for the query `args` at NOW. */
static const char *cursor_for(const char *args, const ptm_key_t *key)
{
    ptm_query_t q;

    parse_ok(&q, args);
    return ptm_query_cursor(&q, key, EPOCH, gpool);
}

static const char *with_cursor(const char *args, const char *cursor)
{
    return apr_pstrcat(gpool, args, *args ? "&" : "", "cursor=", cursor,
                       NULL);
}

static void test_cursor_round_trip(void **state)
{
    static const ptm_key_t keys[] = {
        { U(1796318000123456), 1, APR_UINT64_C(4242), 0xdeadbeefu },
        { 0, 0, 0, 0 },
        { U(-62135596800000000), 0, 1, 0 },
        { U(9223372036854775807), 1, APR_UINT64_C(0xffffffffffffffff),
          0xffffffffu },
        { U(-1), 1, APR_UINT64_C(0x8000000000000000), 1 },
    };
    ptm_query_t q1, q2;
    size_t i, j;

    parse_ok(&q1, BASE "&limit=10");
    assert_int_equal(q1.has_after, 0);
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *c = ptm_query_cursor(&q1, &keys[i], EPOCH, gpool);

        /* URL-safe without escaping: 54 bytes in 72 characters. */
        assert_int_equal(strlen(c), 72);
        for (j = 0; j < 72; j++) {
            assert_non_null(strchr(alphabet, c[j]));
        }
        /* The next page, half an hour later. */
        parse_ok_at(&q2, with_cursor(BASE "&limit=10", c), 0,
                    NOW + 1800 * SEC, EPOCH);
        assert_int_equal(q2.has_after, 1);
        if (!key_eq(&q2.after, &keys[i])) {
            fail_msg("key %zu: got ts %lld stream %d seq %llu tie %u", i,
                     (long long)q2.after.ts, q2.after.stream,
                     (unsigned long long)q2.after.seq, q2.after.tie);
        }
        assert_true(q2.since == q1.since);
        assert_true(q2.until == q1.until);
        assert_true(q2.params == q1.params);
        /* The rest is parsed as without a cursor. */
        assert_int_equal(q2.types->nelts, 2);
        assert_int_equal(q2.stream, 1);
        assert_int_equal(q2.desc, 0);
        assert_int_equal(q2.limit, 10);
        assert_true(q2.every == 300 * SEC);
        assert_int_equal(q2.run_id_len, 2);
    }
}

/* since=1h is the hour before the first page on every page, and a window
 * that has crossed over since is not a 422 on the later pages. */
static void test_cursor_keeps_window(void **state)
{
    const char *args = "since=1h&until=2026-12-03T18:10:00Z";
    ptm_query_t q1, q2;
    const char *c;

    parse_ok(&q1, args);
    assert_true(q1.since == NOW - 3600 * SEC);
    assert_true(q1.until == NOW + 600 * SEC);
    c = ptm_query_cursor(&q1, &some_key, EPOCH, gpool);
    /* Two hours later the text alone gives [now - 1h, until): empty. */
    expect_422_at(args, 0, NOW + 7200 * SEC, EPOCH,
                  value_error("until", "\"2026-12-03T18:10:00Z\"",
                              "until must be after since"));
    parse_ok_at(&q2, with_cursor(args, c), 0, NOW + 7200 * SEC, EPOCH);
    assert_true(q2.since == NOW - 3600 * SEC);
    assert_true(q2.until == NOW + 600 * SEC);
    assert_true(key_eq(&q2.after, &some_key));

    /* The defaults too: no until stays no until. */
    parse_ok(&q1, "");
    c = ptm_query_cursor(&q1, &some_key, EPOCH, gpool);
    parse_ok_at(&q2, with_cursor("", c), 0, NOW + 86400 * SEC, EPOCH);
    assert_true(q2.since == NOW - 3600 * SEC);
    assert_true(q2.until == APR_INT64_MAX);
    assert_int_equal(q2.has_after, 1);
}

static void test_cursor_epoch(void **state)
{
    const char *c = cursor_for(BASE, &some_key);
    const char *args = with_cursor(BASE, c);
    const char *want = value_error("cursor",
                                   apr_psprintf(gpool, "\"%s\"", c),
                                   NOT_OURS);
    ptm_query_t q;

    parse_ok_at(&q, args, 0, NOW, EPOCH);
    /* After the state is reset (a new epoch), or on another server. */
    expect_422_at(args, 0, NOW, EPOCH + 1, want);
    expect_422_at(args, 0, NOW, EPOCH ^ APR_UINT64_C(0x8000000000000000),
                  want);
    expect_422_at(args, 0, NOW, 0, want);
}

/* Any change to any byte is refused, whatever the change. */
static void test_cursor_tampered(void **state)
{
    static const unsigned char flips[] = { 0x01, 0x80, 0x10, 0xff };
    const char *c = cursor_for(BASE, &some_key);
    unsigned char b[64], t[64];
    ptm_query_t q;
    size_t n, i, f;

    memset(b, 0, sizeof(b));
    n = unb64(b, c);
    assert_int_equal(n, 54);
    assert_int_equal(b[0], 1);          /* the version */
    /* The helpers above are right: the untouched bytes are accepted. */
    assert_string_equal(b64(b, n), c);
    parse_ok(&q, with_cursor(BASE, b64(b, n)));

    for (i = 0; i < n; i++) {
        for (f = 0; f < sizeof(flips); f++) {
            const char *bad;

            memcpy(t, b, n);
            t[i] ^= flips[f];
            bad = b64(t, n);
            expect_422(with_cursor(BASE, bad),
                       value_error("cursor",
                                   apr_psprintf(gpool, "\"%s\"", bad),
                                   NOT_OURS));
        }
    }
    /* Too short, too long, padded, standard base64, empty. */
    expect_422(with_cursor(BASE, apr_pstrndup(gpool, c, 71)),
               value_error("cursor",
                           apr_psprintf(gpool, "\"%.71s\"", c), NOT_OURS));
    expect_422(with_cursor(BASE, apr_pstrcat(gpool, c, "A", NULL)),
               value_error("cursor", apr_psprintf(gpool, "\"%sA\"", c),
                           NOT_OURS));
    expect_422(with_cursor(BASE, apr_pstrcat(gpool, c, "%3D%3D", NULL)),
               value_error("cursor", apr_psprintf(gpool, "\"%s==\"", c),
                           NOT_OURS));
    expect_422(with_cursor(BASE, ""), value_error("cursor", "\"\"",
                                                  NOT_OURS));
    {
        char *std = apr_pstrdup(gpool, c), *esc;

        /* Put a '/' where the cursor has a '_' or a '-' ('+' would be a
         * space after decoding); make one if it has none. */
        for (i = 0; i < 72 && std[i] != '_' && std[i] != '-'; i++) {
        }
        std[i < 72 ? i : 0] = '/';
        esc = apr_pstrcat(gpool, "", NULL);
        for (i = 0; i < 72; i++) {
            esc = apr_pstrcat(gpool, esc, std[i] == '/' ? "%2F"
                              : apr_pstrndup(gpool, std + i, 1), NULL);
        }
        expect_422(with_cursor(BASE, esc),
                   value_error("cursor", apr_psprintf(gpool, "\"%s\"", std),
                               NOT_OURS));
    }
}

/* A cursor continues only the query it was made for. */
static void test_cursor_other_params(void **state)
{
    static const char *const others[] = {
        /* type: one fewer, one more, other order, other value. */
        "type=weather&since=1h&until=2026-12-04T00:00:00Z&stream=run"
        "&run_id=r1&order=asc&every=5m",
        "type=weather&type=power&type=x&since=1h"
        "&until=2026-12-04T00:00:00Z&stream=run&run_id=r1&order=asc"
        "&every=5m",
        "type=power&type=weather&since=1h&until=2026-12-04T00:00:00Z"
        "&stream=run&run_id=r1&order=asc&every=5m",
        "type=weather&type=powe&since=1h&until=2026-12-04T00:00:00Z"
        "&stream=run&run_id=r1&order=asc&every=5m",
        /* since and until as written: 60m is not 1h, absent is not 1h. */
        "type=weather&type=power&since=60m&until=2026-12-04T00:00:00Z"
        "&stream=run&run_id=r1&order=asc&every=5m",
        "type=weather&type=power&until=2026-12-04T00:00:00Z"
        "&stream=run&run_id=r1&order=asc&every=5m",
        "type=weather&type=power&since=1h&until=2026-12-04T00:00:00%2B00:00"
        "&stream=run&run_id=r1&order=asc&every=5m",
        "type=weather&type=power&since=1h"
        "&stream=run&run_id=r1&order=asc&every=5m",
        /* stream, run_id (absent is not empty), order, every. */
        "type=weather&type=power&since=1h&until=2026-12-04T00:00:00Z"
        "&stream=site&run_id=r1&order=asc&every=5m",
        "type=weather&type=power&since=1h&until=2026-12-04T00:00:00Z"
        "&run_id=r1&order=asc&every=5m",
        "type=weather&type=power&since=1h&until=2026-12-04T00:00:00Z"
        "&stream=run&run_id=r2&order=asc&every=5m",
        "type=weather&type=power&since=1h&until=2026-12-04T00:00:00Z"
        "&stream=run&run_id=&order=asc&every=5m",
        "type=weather&type=power&since=1h&until=2026-12-04T00:00:00Z"
        "&stream=run&order=asc&every=5m",
        "type=weather&type=power&since=1h&until=2026-12-04T00:00:00Z"
        "&stream=run&run_id=r1&every=5m",
        "type=weather&type=power&since=1h&until=2026-12-04T00:00:00Z"
        "&stream=run&run_id=r1&order=desc&every=5m",
        "type=weather&type=power&since=1h&until=2026-12-04T00:00:00Z"
        "&stream=run&run_id=r1&order=asc&every=6m",
        "type=weather&type=power&since=1h&until=2026-12-04T00:00:00Z"
        "&stream=run&run_id=r1&order=asc",
    };
    const char *c = cursor_for(BASE, &some_key);
    ptm_query_t q, base;
    size_t i;

    parse_ok(&base, BASE);
    for (i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        parse_ok(&q, others[i]);
        if (q.params == base.params) {
            fail_msg("same params hash: %s", others[i]);
        }
        expect_422(with_cursor(others[i], c),
                   value_error("cursor", apr_psprintf(gpool, "\"%s\"", c),
                               OTHERS));
    }
    /* Values are framed: moving bytes from one value to the next is
     * another set of parameters (%01 and seven %00 would be the frame). */
    parse_ok(&base, "type=a%01%00%00%00%00%00%00%00b&type=c");
    parse_ok(&q, "type=a&type=b%01%00%00%00%00%00%00%00c");
    assert_true(q.params != base.params);
    parse_ok(&base, "type=ab&type=c");
    parse_ok(&q, "type=a&type=bc");
    assert_true(q.params != base.params);
    parse_ok(&q, "type=abc");
    assert_true(q.params != base.params);
    parse_ok(&base, "run_id=1h");
    parse_ok(&q, "since=1h");
    assert_true(q.params != base.params);
    /* An empty run_id and an empty type list are parameters too. */
    c = cursor_for("run_id=", &some_key);
    expect_422(with_cursor("", c),
               value_error("cursor", apr_psprintf(gpool, "\"%s\"", c),
                           OTHERS));
    c = cursor_for("type=", &some_key);
    expect_422(with_cursor("", c),
               value_error("cursor", apr_psprintf(gpool, "\"%s\"", c),
                           OTHERS));
    c = cursor_for("", &some_key);
    parse_ok(&q, with_cursor("", c));
    expect_422(with_cursor("type=", c),
               value_error("cursor", apr_psprintf(gpool, "\"%s\"", c),
                           OTHERS));
}

/* limit and format are not what a cursor belongs to (except that NDJSON
 * goes oldest first); the order of the parameters in the URL does not
 * matter, nor how they were escaped. */
static void test_cursor_same_params(void **state)
{
    static const char *const same[] = {
        BASE,
        BASE "&limit=1",
        BASE "&limit=10000",
        BASE "&format=json",
        BASE "&format=ndjson",
        "every=5m&order=asc&run_id=r1&stream=run&until=2026-12-04T00:00:00Z"
        "&since=1h&type=weather&type=power",
        "%74ype=weather&type=pow%65r&since=1%68&until=2026-12-04T00:00:00Z"
        "&stream=run&run_id=r%31&order=asc&every=5m&foo=bar",
    };
    const char *c = cursor_for(BASE "&limit=3", &some_key);
    ptm_query_t q, base;
    size_t i;

    parse_ok(&base, BASE);
    for (i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        parse_ok(&q, same[i]);
        assert_true(q.params == base.params);
        parse_ok(&q, with_cursor(same[i], c));
        assert_int_equal(q.has_after, 1);
    }
    parse_ok_at(&q, with_cursor(BASE, c), 1, NOW, EPOCH);
    assert_int_equal(q.has_after, 1);

    /* Default order (desc): continues JSON, not NDJSON (ascending). */
    c = cursor_for("type=x", &some_key);
    parse_ok(&q, with_cursor("type=x&limit=7", c));
    assert_int_equal(q.has_after, 1);
    expect_422(with_cursor("type=x&format=ndjson", c),
               value_error("cursor", apr_psprintf(gpool, "\"%s\"", c),
                           OTHERS));
    expect_422_at(with_cursor("type=x", c), 1, NOW, EPOCH,
                  value_error("cursor", apr_psprintf(gpool, "\"%s\"", c),
                              OTHERS));
    /* An NDJSON cursor continues NDJSON, or JSON order=asc. */
    c = cursor_for("type=x&format=ndjson&limit=2", &some_key);
    parse_ok(&q, with_cursor("type=x&format=ndjson", c));
    assert_int_equal(q.has_after, 1);
    parse_ok(&q, with_cursor("type=x&format=ndjson&order=asc", c));
    assert_int_equal(q.has_after, 1);
    parse_ok_at(&q, with_cursor("type=x", c), 1, NOW, EPOCH);
    assert_int_equal(q.has_after, 1);
    expect_422(with_cursor("type=x", c),
               value_error("cursor", apr_psprintf(gpool, "\"%s\"", c),
                           OTHERS));
}

/* A good cursor next to a bad parameter: the cursor cannot belong to a
 * query that was never answered, except when only limit or format is
 * wrong (they are not part of it). */
static void test_cursor_with_bad_params(void **state)
{
    const char *c = cursor_for("stream=site", &some_key);
    const char *cur = apr_psprintf(gpool, "\"%s\"", c);

    expect_422(with_cursor("stream=sight", c),
               items("[{\"type\":\"literal_error\",\"loc\":[\"query\","
                     "\"stream\"],\"msg\":\"Input should be 'site', "
                     "'run' or 'all'\",\"input\":\"sight\","
                     "\"ctx\":{\"expected\":\"'site', 'run' or "
                     "'all'\"}}]",
                     value_error("cursor", cur, OTHERS), NULL));
    expect_422(with_cursor("stream=site&since=1h&until=1h", c),
               items(value_error("until", "\"1h\"",
                                 "until must be after since"),
                     value_error("cursor", cur, OTHERS), NULL));
    /* A bad value leaves the default behind it, which the cursor of a
     * query without that parameter was made for: still not a match. */
    c = cursor_for("", &some_key);
    cur = apr_psprintf(gpool, "\"%s\"", c);
    expect_422(with_cursor("stream=everything", c),
               items("[{\"type\":\"literal_error\",\"loc\":[\"query\","
                     "\"stream\"],\"msg\":\"Input should be 'site', "
                     "'run' or 'all'\",\"input\":\"everything\","
                     "\"ctx\":{\"expected\":\"'site', 'run' or "
                     "'all'\"}}]",
                     value_error("cursor", cur, OTHERS), NULL));
    expect_422(with_cursor("order=newest", c),
               items("[{\"type\":\"literal_error\",\"loc\":[\"query\","
                     "\"order\"],\"msg\":\"Input should be 'asc' or "
                     "'desc'\",\"input\":\"newest\",\"ctx\":"
                     "{\"expected\":\"'asc' or 'desc'\"}}]",
                     value_error("cursor", cur, OTHERS), NULL));
    expect_422(with_cursor("every=often", c),
               items(value_error("every", "\"often\"",
                                 "not a duration (90s, 15m, 24h, 7d)"),
                     value_error("cursor", cur, OTHERS), NULL));
    expect_422(with_cursor("type=%FF", c),
               items("[{\"type\":\"string_unicode\",\"loc\":[\"query\","
                     "\"type\"],\"msg\":\"Input should be a valid string, "
                     "unable to parse raw data as a unicode string\","
                     "\"input\":\"\xef\xbf\xbd\"}]",
                     value_error("cursor", cur, OTHERS), NULL));
    /* limit and format are no part of it. */
    c = cursor_for("stream=site", &some_key);
    expect_422(with_cursor("stream=site&limit=0", c),
               "[{\"type\":\"greater_than_equal\",\"loc\":[\"query\","
               "\"limit\"],\"msg\":\"Input should be greater than or equal "
               "to 1\",\"input\":\"0\",\"ctx\":{\"ge\":1}}]");
    expect_422(with_cursor("stream=site&format=csv", c),
               "[{\"type\":\"literal_error\",\"loc\":[\"query\",\"format\"],"
               "\"msg\":\"Input should be 'json' or 'ndjson'\","
               "\"input\":\"csv\",\"ctx\":{\"expected\":\"'json' or "
               "'ndjson'\"}}]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_cmp),
        cmocka_unit_test(test_tie),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_decoding),
        cmocka_unit_test(test_422_limit),
        cmocka_unit_test(test_422_literals),
        cmocka_unit_test(test_422_times),
        cmocka_unit_test(test_422_repeats),
        cmocka_unit_test(test_422_not_utf8),
        cmocka_unit_test(test_422_all_in_order),
        cmocka_unit_test(test_cursor_round_trip),
        cmocka_unit_test(test_cursor_keeps_window),
        cmocka_unit_test(test_cursor_epoch),
        cmocka_unit_test(test_cursor_tampered),
        cmocka_unit_test(test_cursor_other_params),
        cmocka_unit_test(test_cursor_same_params),
        cmocka_unit_test(test_cursor_with_bad_params),
    };

    return cmocka_run_group_tests_name("ptm_query", tests, group_setup,
                                       group_teardown);
}

/* Unit tests for ptm_json: the parser against Python's json.loads (message
 * and position of every error), the serialiser against
 * json.dumps(v, separators=(",", ":")), float repr, str repr and the UTF-8
 * helpers.  Expected strings were produced by CPython 3.11 and are compared
 * byte for byte; the few cases where we deliberately differ from Python
 * (SPEC §11 narrowing) carry our own messages. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_pools.h>

#include "ptm_json.h"

#define NELTS(a) (sizeof(a) / sizeof((a)[0]))

#define MSG_NAN      "NaN and Infinity are not allowed"
#define MSG_OVERFLOW "Number out of range (too large for a double)"
#define MSG_INT      "Integer out of range (must fit in 64 bits, " \
                     "-9223372036854775808..9223372036854775807)"
#define MSG_UTF8     "Invalid UTF-8 in request body"
#define MSG_SURR     "Unpaired surrogate in \\uXXXX escape"
#define MSG_DEEP     "Maximum nesting depth exceeded"

static int test_teardown(void **state)
{
    (void)state;
    apr_pool_clear(gpool);
    return 0;
}

/* Compare a buffer with an expected byte string, printing both on failure
 * so a broken table row is easy to find. */
static void assert_bytes(const char *what, const ptm_buf_t *b,
                         const char *exp, size_t elen)
{
    if (b->len != elen || memcmp(b->data, exp, elen) != 0) {
        print_error("%s:\n   got [%.*s]\n  want [%.*s]\n", what,
                    (int)b->len, b->data, (int)elen, exp);
        fail();
    }
}

/* NUL-terminated output of ptm_json_dump_real, from the gpool. */
static const char *real_str(double d)
{
    ptm_buf_t b;

    ptm_buf_init(&b, gpool, 32);
    ptm_json_dump_real(&b, d);
    ptm_buf_putc(&b, '\0');
    return b.data;
}

/* ------------------------------------------------------------------------
 * Floats: Python repr(float)
 */

static const struct {
    double d;
    const char *repr;
} real_cases[] = {
    {1.0, "1.0"},
    {100.0, "100.0"},
    {-0.0, "-0.0"},
    {0.0, "0.0"},
    {0.1, "0.1"},
    {2.1, "2.1"},
    {1e-05, "1e-05"},
    {1e-07, "1e-07"},
    {0.0001, "0.0001"},
    {0.001, "0.001"},
    {1e16, "1e+16"},
    {1.5e16, "1.5e+16"},
    {1e22, "1e+22"},
    {5e-324, "5e-324"},
    {123456789.0, "123456789.0"},
    {1e15, "1000000000000000.0"},
    {9007199254740993.0, "9007199254740992.0"},
    {0.30000000000000004, "0.30000000000000004"},
    {1.7976931348623157e308, "1.7976931348623157e+308"},
    {2.2250738585072014e-308, "2.2250738585072014e-308"},
    {1.5, "1.5"},
    {-1.5, "-1.5"},
    {1.0 / 3, "0.3333333333333333"},
    {2.0 / 3, "0.6666666666666666"},
    {1e100, "1e+100"},
    {1e-100, "1e-100"},
    {123.456, "123.456"},
    {-123.456e-10, "-1.23456e-08"},
    {3.141592653589793, "3.141592653589793"},
    {2.718281828459045, "2.718281828459045"},
    {6.02214076e23, "6.02214076e+23"},
    {1.602176634e-19, "1.602176634e-19"},
    {2.2250738585072009e-308, "2.225073858507201e-308"},
    {0.5, "0.5"},
    {1e21, "1e+21"},
    {9.999999999999999e15, "1e+16"},
    {9999999999999998.0, "9999999999999998.0"},
    {12345678901234567890.0, "1.2345678901234567e+19"},
    /* powers of two: the gap below is half the gap above, and the closest
     * 16-digit decimal (...0444e-307) misses while the next one up reads
     * back; Python prints that one */
    {0x1p-1017, "7.120236347223045e-307"},
    {0x1p-1007, "7.291122019556398e-304"},
    {0.00015, "0.00015"},
    {5e-5, "5e-05"},
    {-1e-05, "-1e-05"},
    {1e300, "1e+300"},
    {9223372036854775808.0, "9.223372036854776e+18"},
    {0.1 + 0.2, "0.30000000000000004"},
    {1e-4, "0.0001"},
    {0.00009999999999999999, "9.999999999999999e-05"},
    {1e-323, "1e-323"},
    {4.35, "4.35"},
    {100000000000000000.0, "1e+17"},
    {1234567.125, "1234567.125"},
    {-2.5e-7, "-2.5e-07"},
    {65536.0, "65536.0"},
    {0x1p-1074, "5e-324"},
    /* sensor-like values (the printf-free path) and its edges */
    {11.5, "11.5"},
    {0.42, "0.42"},
    {4.7, "4.7"},
    {1013.25, "1013.25"},
    {-40.125, "-40.125"},
    {1200.0, "1200.0"},
    {1e-15, "1e-15"},
    {1.5e-15, "1.5e-15"},
    {9.9e-16, "9.9e-16"},
    {999999999999999.0, "999999999999999.0"},
    {99999999999999.9, "99999999999999.9"},
    {123456789012345.6, "123456789012345.6"},
    {0.123456789012345, "0.123456789012345"},
    {0.1234567890123456, "0.1234567890123456"},
    {1e15 - 0.5, "999999999999999.5"},
};

static void test_real_repr(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < NELTS(real_cases); i++) {
        const char *got = real_str(real_cases[i].d);

        if (strcmp(got, real_cases[i].repr) != 0) {
            print_error("row %zu: got %s want %s\n", i, got,
                        real_cases[i].repr);
            fail();
        }
    }
    assert_true(NELTS(real_cases) >= 40);
}

static void test_real_nonfinite(void **state)
{
    (void)state;
    /* repr() spellings; ptm_json_dump refuses them (jansson cannot even
     * hold them, so that path is reached only through dump_real). */
    assert_string_equal(real_str(NAN), "nan");
    assert_string_equal(real_str(INFINITY), "inf");
    assert_string_equal(real_str(-INFINITY), "-inf");
}

/* xorshift64*: a fixed sequence, so a failure is reproducible. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* Significant digits of a repr: "100.0" has 1, "0.0025" has 2. */
static int sig_digits(const char *s)
{
    const char *first = NULL, *last = NULL;
    int n = 0;

    for (; *s != '\0' && *s != 'e'; s++) {
        if (*s >= '1' && *s <= '9') {
            if (first == NULL) {
                first = s;
            }
            last = s;
        }
    }
    for (s = first; s != NULL && s <= last; s++) {
        n += *s >= '0' && *s <= '9';
    }
    return n;
}

/* The significant digits of a repr, in order: "0.0250" -> "25". */
static const char *sig_string(const char *s, char *out)
{
    size_t n = 0;

    for (; *s != '\0' && *s != 'e'; s++) {
        if (*s >= '0' && *s <= '9' && (n > 0 || *s != '0')) {
            out[n++] = *s;
        }
    }
    while (n > 0 && out[n - 1] == '0') {
        n--;
    }
    out[n] = '\0';
    return out;
}

/* Every finite double prints in at most 17 significant digits and reads
 * back exactly, through strtod and through our own parser; and the closest
 * decimal with one digit fewer does not read back (shortest round-trip:
 * the property that keeps 2.1 from becoming 2.1000000000000001). */
static void test_real_roundtrip_random(void **state)
{
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    int i, nd, checked = 0;

    (void)state;
    for (i = 0; i < 50000; i++) {
        uint64_t bits = rng_next(&seed);
        double d, back;
        const char *s;
        char tmp[40];
        ptm_json_error_t err;
        json_t *v;

        memcpy(&d, &bits, sizeof(d));
        if (!isfinite(d)) {
            continue;
        }
        s = real_str(d);
        back = strtod(s, NULL);
        if (memcmp(&back, &d, sizeof(d)) != 0) {
            fail_msg("%s does not read back", s);
        }
        v = ptm_json_parse(s, strlen(s), &err);
        assert_non_null(v);
        assert_true(json_is_real(v));
        back = json_real_value(v);
        json_decref(v);
        if (memcmp(&back, &d, sizeof(d)) != 0) {
            fail_msg("ptm_json_parse(%s) differs", s);
        }
        nd = sig_digits(s);
        assert_true(nd >= 1 && nd <= 17);
        if (nd > 1) {
            snprintf(tmp, sizeof(tmp), "%.*e", nd - 2, d);
            if (strtod(tmp, NULL) == d) {
                fail_msg("%s is not the shortest: %s reads back", s, tmp);
            }
        }
        checked++;
    }
    assert_true(checked > 40000);
}

/* Decimals of 1 to 15 significant digits (what sensors send) print as
 * exactly those digits, whichever path prints them: strtod of the decimal,
 * then repr, gives back the decimal without trailing zeros. */
static void test_real_short_decimals(void **state)
{
    uint64_t seed = 0x2545f4914f6cdd1dULL;
    int i, checked = 0;

    (void)state;
    for (i = 0; i < 50000; i++) {
        uint64_t r = rng_next(&seed);
        int digits = 1 + (int)(r % 15), exp10 = (int)((r >> 8) % 61) - 30;
        unsigned long long m = rng_next(&seed) % 1000000000000000ULL;
        char dec[48], want[48], got[48];
        const char *s;
        double d, back;

        while (m >= 10ULL && (int)snprintf(dec, sizeof(dec), "%llu", m)
               > digits) {
            m /= 10;
        }
        while (m > 0 && m % 10 == 0) {
            m /= 10;
        }
        if (m == 0) {
            continue;
        }
        snprintf(dec, sizeof(dec), "%llue%d", m, exp10);
        d = strtod(dec, NULL);
        s = real_str(d);
        back = strtod(s, NULL);
        if (memcmp(&back, &d, sizeof(d)) != 0) {
            fail_msg("%s (from %s) does not read back", s, dec);
        }
        /* Its significant digits, in order, are m's. */
        snprintf(want, sizeof(want), "%llu", m);
        if (strcmp(sig_string(s, got), want) != 0) {
            fail_msg("%s printed as %s", dec, s);
        }
        checked++;
    }
    assert_true(checked > 40000);
}

/* Float tokens of every shape (signs, leading and trailing zeros, short
 * and long mantissas, exponents near the fast path's edges) parse to the
 * double strtod gives. */
static void test_parse_float_random(void **state)
{
    uint64_t seed = 0x853c49e6748fea9bULL;
    int i;

    (void)state;
    for (i = 0; i < 50000; i++) {
        uint64_t r = rng_next(&seed);
        char tok[96];
        size_t o = 0;
        int j, nint = (int)(r % 18), nfrac = 1 + (int)((r >> 5) % 18);
        ptm_json_error_t err;
        double want, got;
        json_t *v;

        if (r & (1u << 10)) {
            tok[o++] = '-';
        }
        if (nint == 0) {
            tok[o++] = '0';
        }
        for (j = 0; j < nint; j++) {
            tok[o++] = (char)('0' + (j == 0 ? 1 + rng_next(&seed) % 9
                                            : rng_next(&seed) % 10));
        }
        tok[o++] = '.';
        for (j = 0; j < nfrac; j++) {
            /* runs of zeros are common in real numbers: 0.0005, 2.50 */
            tok[o++] = (char)('0' + ((r >> 11) & 1 ? 0 : rng_next(&seed) % 10));
            if (j == nfrac - 1 && (r >> 12) & 1) {
                tok[o - 1] = (char)('1' + rng_next(&seed) % 9);
            }
        }
        if ((r >> 13) & 1) {
            o += (size_t)snprintf(tok + o, sizeof(tok) - o, "%c%s%d",
                                  (r >> 14) & 1 ? 'e' : 'E',
                                  (r >> 15) & 1 ? "-" : ((r >> 16) & 1 ? "+" : ""),
                                  (int)((r >> 17) % 40));
        }
        tok[o] = '\0';
        want = strtod(tok, NULL);
        v = ptm_json_parse(tok, o, &err);
        if (v == NULL || !json_is_real(v)) {
            fail_msg("%s did not parse as a float", tok);
        }
        got = json_real_value(v);
        json_decref(v);
        if (memcmp(&got, &want, sizeof(got)) != 0) {
            fail_msg("%s parsed as %.17g, strtod says %.17g", tok, got, want);
        }
    }
}

/* The C locale is what tests run in; httpd may run with a comma radix. */
static void test_real_locale(void **state)
{
    static const char *const names[] = {
        "de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8",
        "nl_NL.UTF-8", "ru_RU.UTF-8", "de_DE", "fr_FR"
    };
    char *old = setlocale(LC_NUMERIC, NULL);
    char saved[64];
    size_t i;
    const char *set = NULL;
    ptm_json_error_t err;
    json_t *v;
    ptm_buf_t b;

    (void)state;
    snprintf(saved, sizeof(saved), "%s", old ? old : "C");
    for (i = 0; i < NELTS(names) && set == NULL; i++) {
        set = setlocale(LC_NUMERIC, names[i]);
    }
    if (set == NULL || localeconv()->decimal_point[0] == '.') {
        setlocale(LC_NUMERIC, saved);
        skip();
    }
    for (i = 0; i < NELTS(real_cases); i++) {
        if (strcmp(real_str(real_cases[i].d), real_cases[i].repr) != 0) {
            setlocale(LC_NUMERIC, saved);
            fail_msg("row %zu under %s", i, set);
        }
    }
    v = ptm_json_parse("[1.5,2.25e1,-0.5]", 17, &err);
    ptm_buf_init(&b, gpool, 64);
    assert_non_null(v);
    assert_int_equal(ptm_json_dump(&b, v), 0);
    json_decref(v);
    setlocale(LC_NUMERIC, saved);
    assert_bytes("locale", &b, "[1.5,22.5,-0.5]", 15);
}

/* httpd's worker and event MPMs serialise from many threads at once. */
static void *real_thread(void *arg)
{
    apr_pool_t *p;
    long bad = 0;
    int round;
    size_t i;

    (void)arg;
    apr_pool_create(&p, NULL);
    for (round = 0; round < 300; round++) {
        for (i = 0; i < NELTS(real_cases); i++) {
            ptm_buf_t b;

            ptm_buf_init(&b, p, 32);
            ptm_json_dump_real(&b, real_cases[i].d);
            if (b.len != strlen(real_cases[i].repr)
                || memcmp(b.data, real_cases[i].repr, b.len) != 0) {
                bad++;
            }
        }
        apr_pool_clear(p);
    }
    apr_pool_destroy(p);
    return (void *)bad;
}

static void test_real_threads(void **state)
{
    pthread_t t[4];
    void *bad;
    int i;

    (void)state;
    for (i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, real_thread, NULL), 0);
    }
    for (i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], &bad), 0);
        assert_int_equal((long)bad, 0);
    }
}

/* ------------------------------------------------------------------------
 * Parse then dump: json.dumps(json.loads(text), separators=(",", ":"))
 */

static const struct {
    const char *in;
    size_t len;
    const char *out;
} roundtrip_cases[] = {
    {"1E2", 3, "100.0"},
    {"1.50", 4, "1.5"},
    {"-0", 2, "0"},
    {"-0.0", 4, "-0.0"},
    {"1e-400", 6, "0.0"},
    {"-1e-400", 7, "-0.0"},
    {"0", 1, "0"},
    {"-1", 2, "-1"},
    {"1e5", 3, "100000.0"},
    {"1E+5", 4, "100000.0"},
    {"2.5e-3", 6, "0.0025"},
    {"null", 4, "null"},
    {"true", 4, "true"},
    {"false", 5, "false"},
    {" \011\012\015[ 1 , 2 ]\015\012", 15, "[1,2]"},
    {"{}", 2, "{}"},
    {"[]", 2, "[]"},
    {"{\"a\":{\"b\":[{}]}}", 16, "{\"a\":{\"b\":[{}]}}"},
    {"\"\\u00E9\\u00e9\303\251\"", 16, "\"\\u00e9\\u00e9\\u00e9\""},
    {"\"\\ud83d\\ude00\360\237\230\200\"", 18,
     "\"\\ud83d\\ude00\\ud83d\\ude00\""},
    {"\"\\uD83D\\uDE00\"", 14, "\"\\ud83d\\ude00\""},
    {"\"\\u0000a\\u0000\"", 15, "\"\\u0000a\\u0000\""},
    {"{\"\\u0000\":\"\\u0000\"}", 19, "{\"\\u0000\":\"\\u0000\"}"},
    {"\"\\/\\\"\\\\\\b\\f\\n\\r\\t\"", 18, "\"/\\\"\\\\\\b\\f\\n\\r\\t\""},
    {"\"\177\"", 3, "\"\\u007f\""},
    {"\"/\"", 3, "\"/\""},
    {"\"\\u001f\\u0001\\u007f\\u0080\\u00ff\\u0100\\uffff\"", 44,
     "\"\\u001f\\u0001\\u007f\\u0080\\u00ff\\u0100\\uffff\""},
    {"\"\342\200\250\357\273\277\"", 8, "\"\\u2028\\ufeff\""},
    {"\357\273\277{\"a\":1}", 10, "{\"a\":1}"},
    {"{\"z\":1,\"a\":2,\"m\":3}", 19, "{\"z\":1,\"a\":2,\"m\":3}"},
    {"{\"a\":1,\"b\":2,\"a\":3}", 19, "{\"a\":3,\"b\":2}"},
    {"{\"a\":1,\"b\":2,\"a\":{\"x\":[1]},\"b\":null}", 36,
     "{\"a\":{\"x\":[1]},\"b\":null}"},
    {"9223372036854775807", 19, "9223372036854775807"},
    {"-9223372036854775808", 20, "-9223372036854775808"},
    {"1.7976931348623157e308", 22, "1.7976931348623157e+308"},
    {"[1.0,100,1e2,1E-7,0.1,2.1]", 26, "[1.0,100,100.0,1e-07,0.1,2.1]"},
    {"\"\364\217\277\277\"", 6, "\"\\udbff\\udfff\""},
    {"{\"type\":\"weather\",\"data\":{\"sky\":\"clear\",\"t\":-3.5},"
     "\"meta\":{}}", 60,
     "{\"type\":\"weather\",\"data\":{\"sky\":\"clear\",\"t\":-3.5},"
     "\"meta\":{}}"},
    {"[true,false,null,\"x\",{\"k\":[]}]", 30,
     "[true,false,null,\"x\",{\"k\":[]}]"},
    {"12345678901234567890.5", 22, "1.2345678901234567e+19"},
    {"0.000001", 8, "1e-06"},
    {"1e16", 4, "1e+16"},
    {"123e-2", 6, "1.23"},
    {"[-0,0.0,-0E0]", 13, "[0,0.0,-0.0]"},
    {"\"\\ud800\\udc00\\udbff\\udfff\"", 26,
     "\"\\ud800\\udc00\\udbff\\udfff\""},
    {"1000000000000000000", 19, "1000000000000000000"},
    {"0.0000000000000000000000000000001", 33, "1e-31"},
};

static void test_parse_dump(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < NELTS(roundtrip_cases); i++) {
        ptm_json_error_t err;
        ptm_buf_t b;
        json_t *v;
        char what[64];

        v = ptm_json_parse(roundtrip_cases[i].in, roundtrip_cases[i].len,
                           &err);
        if (v == NULL) {
            fail_msg("row %zu: %s at %zu", i, err.msg, err.pos);
        }
        assert_int_equal(err.kind, PTM_JSON_OK);
        ptm_buf_init(&b, gpool, 16);
        assert_int_equal(ptm_json_dump(&b, v), 0);
        json_decref(v);
        snprintf(what, sizeof(what), "roundtrip row %zu", i);
        assert_bytes(what, &b, roundtrip_cases[i].out,
                     strlen(roundtrip_cases[i].out));
    }
}

static void test_parse_types(void **state)
{
    ptm_json_error_t err;
    json_t *v;

    (void)state;
    v = ptm_json_parse("null", 4, &err);
    assert_true(v == json_null());
    json_decref(v);

    v = ptm_json_parse("-0", 2, &err);
    assert_true(json_is_integer(v));
    assert_int_equal(json_integer_value(v), 0);
    json_decref(v);

    v = ptm_json_parse("1.0", 3, &err);
    assert_true(json_is_real(v));
    json_decref(v);

    v = ptm_json_parse("1e2", 3, &err);     /* an exponent makes a float */
    assert_true(json_is_real(v));
    json_decref(v);

    v = ptm_json_parse("-1e-400", 7, &err); /* underflow is fine */
    assert_true(json_is_real(v));
    assert_true(json_real_value(v) == 0.0 && signbit(json_real_value(v)));
    json_decref(v);

    /* Not NUL-terminated: only `len` bytes are read. */
    v = ptm_json_parse("12345", 2, &err);
    assert_int_equal(json_integer_value(v), 12);
    json_decref(v);

    /* err may be NULL. */
    assert_null(ptm_json_parse("{", 1, NULL));
    v = ptm_json_parse("[]", 2, NULL);
    assert_non_null(v);
    json_decref(v);
}

static void test_big_integers(void **state)
{
    static const struct {
        const char *in;
        int ok;
        json_int_t v;
    } rows[] = {
        {"9223372036854775807", 1, INT64_MAX},
        {"-9223372036854775808", 1, INT64_MIN},
        {"9223372036854775806", 1, INT64_MAX - 1},
        {"-9223372036854775807", 1, INT64_MIN + 1},
        {"9223372036854775808", 0, 0},
        {"-9223372036854775809", 0, 0},
        {"10000000000000000000", 0, 0},
        {"99999999999999999999999999999999", 0, 0},
        {"18446744073709551616", 0, 0},     /* 2^64 wraps to 0 if unchecked */
        {"18446744073709551617", 0, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < NELTS(rows); i++) {
        ptm_json_error_t err;
        json_t *v = ptm_json_parse(rows[i].in, strlen(rows[i].in), &err);

        if (rows[i].ok) {
            assert_non_null(v);
            assert_true(json_is_integer(v));
            assert_true(json_integer_value(v) == rows[i].v);
            json_decref(v);
        }
        else {
            assert_null(v);
            assert_int_equal(err.kind, PTM_JSON_SYNTAX);
            assert_int_equal(err.pos, 0);
            assert_string_equal(err.msg, MSG_INT);
        }
    }
}

/* ------------------------------------------------------------------------
 * Errors: Python's message and JSONDecodeError.pos, then our narrowing
 */

static const struct {
    const char *in;
    size_t len;
    const char *msg;
    size_t pos;
} python_error_cases[] = {
    /* generated with json.JSONDecoder().decode() of CPython 3.11, after
     * decoding the bytes as utf-8-sig like json.loads(bytes) does */
    {"", 0, "Expecting value", 0},
    {" ", 1, "Expecting value", 1},
    {"{bad json", 9, "Expecting property name enclosed in double quotes", 1},
    {"{\"type\": }", 10, "Expecting value", 9},
    {"{\"type\":\"x\",\"data\":1} trailing", 30, "Extra data", 22},
    {"[1,]", 4, "Expecting value", 3},
    {"{\"a\":1,}", 8, "Expecting property name enclosed in double quotes", 7},
    {"{\"a\" 1}", 7, "Expecting ':' delimiter", 5},
    {"{\"a\":1 \"b\":2}", 13, "Expecting ',' delimiter", 7},
    {"[1 2]", 5, "Expecting ',' delimiter", 3},
    {"[", 1, "Expecting value", 1},
    {"{", 1, "Expecting property name enclosed in double quotes", 1},
    {"{\"a\":", 5, "Expecting value", 5},
    {"{\"a\"", 4, "Expecting ':' delimiter", 4},
    {"\"abc", 4, "Unterminated string starting at", 0},
    {"[\"abc", 5, "Unterminated string starting at", 1},
    {"\"a\001b\"", 5, "Invalid control character at", 2},
    {"\"tab\011here\"", 10, "Invalid control character at", 4},
    {"\"a\\x\"", 5, "Invalid \\escape", 2},
    {"\"\\u12\"", 6, "Invalid \\uXXXX escape", 2},
    {"\"\\uzzzz\"", 8, "Invalid \\uXXXX escape", 2},
    {"\"\\ud800\\uzzzz\"", 14, "Invalid \\uXXXX escape", 8},
    {"\"\\", 2, "Unterminated string starting at", 0},
    {"\"\\u", 3, "Invalid \\uXXXX escape", 2},
    {"nul", 3, "Expecting value", 0},
    {"tru", 3, "Expecting value", 0},
    {"fals", 4, "Expecting value", 0},
    {"-", 1, "Expecting value", 0},
    {"-a", 2, "Expecting value", 0},
    {"01", 2, "Extra data", 1},
    {"1.", 2, "Extra data", 1},
    {"1e", 2, "Extra data", 1},
    {"1e+", 3, "Extra data", 1},
    {"1.e5", 4, "Extra data", 1},
    {".5", 2, "Expecting value", 0},
    {"+1", 2, "Expecting value", 0},
    {"\303\251", 2, "Expecting value", 0},
    {"\"\303\251\" x", 6, "Extra data", 4},
    {"[\"\360\237\230\200\", x]", 11, "Expecting value", 6},
    {"\357\273\277{bad", 7,
     "Expecting property name enclosed in double quotes", 1},
    {"\357\273\277", 3, "Expecting value", 0},
    {"\357\273\277\357\273\277{}", 8, "Expecting value", 0},
    {"[1]]", 4, "Extra data", 3},
    {"{}{}", 4, "Extra data", 2},
    {"[NaN, }", 7, "Expecting value", 6},
    {"NaN x", 5, "Extra data", 4},
    {"\"\\ud800", 7, "Invalid \\uXXXX escape", 2},
    {"[1e400", 6, "Expecting ',' delimiter", 6},
    {"{\"a\":1e400,}", 12, "Expecting property name enclosed in double quotes",
     11},
    {"{\"a\":-Infinity \"b\":1}", 21, "Expecting ',' delimiter", 15},
    {"{1:2}", 5, "Expecting property name enclosed in double quotes", 1},
    {"{'a':1}", 7, "Expecting property name enclosed in double quotes", 1},
    {"[1,,2]", 6, "Expecting value", 3},
    {"[,]", 3, "Expecting value", 1},
    {"{\"a\":1,\"b\"}", 11, "Expecting ':' delimiter", 10},
    {"true false", 10, "Extra data", 5},
    {"nulll", 5, "Extra data", 4},
    {"\"\\ud800\\udc00", 13, "Invalid \\uXXXX escape", 8},
    {" \011\012\015", 4, "Expecting value", 4},
    {"\014{}", 3, "Expecting value", 0},
    {"{\"a\":[1,2,{\"b\":nul}]}", 21, "Expecting value", 15},
    {"\"\177\000\"", 4, "Invalid control character at", 2},
    {"\012\012  ]", 5, "Expecting value", 4},
    {"{\"\\x\":1}", 8, "Invalid \\escape", 2},
    {"\"\\U0041\"", 8, "Invalid \\escape", 1},
    {"\"\\u00e\"", 7, "Invalid \\uXXXX escape", 2},
};

static void check_error(size_t row, const char *in, size_t len,
                        ptm_json_errkind_e kind, const char *msg, size_t pos)
{
    ptm_json_error_t err;
    json_t *v;

    memset(&err, 0x5a, sizeof(err));
    v = ptm_json_parse(in, len, &err);
    if (v != NULL) {
        json_decref(v);
        fail_msg("row %zu: parsed, want \"%s\" at %zu", row, msg, pos);
    }
    if (err.kind != kind || err.pos != pos || strcmp(err.msg, msg) != 0) {
        fail_msg("row %zu: got kind %d \"%s\" at %zu, want kind %d \"%s\" "
                 "at %zu", row, (int)err.kind, err.msg, err.pos, (int)kind,
                 msg, pos);
    }
}

static void test_python_errors(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < NELTS(python_error_cases); i++) {
        check_error(i, python_error_cases[i].in, python_error_cases[i].len,
                    PTM_JSON_SYNTAX, python_error_cases[i].msg,
                    python_error_cases[i].pos);
    }
}

/* SPEC §2.6 acceptance rows, spelled out so they cannot drift. */
static void test_spec_acceptance(void **state)
{
    (void)state;
    check_error(0, "{bad json", 9, PTM_JSON_SYNTAX,
                "Expecting property name enclosed in double quotes", 1);
    check_error(1, "{\"type\": }", 10, PTM_JSON_SYNTAX, "Expecting value", 9);
    check_error(2, "{\"type\":\"x\",\"data\":1} trailing", 30, PTM_JSON_SYNTAX,
                "Extra data", 22);
    check_error(3, " ", 1, PTM_JSON_SYNTAX, "Expecting value", 1);
    check_error(4, "", 0, PTM_JSON_SYNTAX, "Expecting value", 0);
    check_error(5, NULL, 0, PTM_JSON_SYNTAX, "Expecting value", 0);
}

/* What Python accepts and we refuse.  The first offending token is
 * reported, at its start, but only if the rest of the document is valid. */
static const struct {
    const char *in;
    const char *msg;
    size_t pos;
} narrow_cases[] = {
    {"NaN", MSG_NAN, 0},
    {"Infinity", MSG_NAN, 0},
    {"-Infinity", MSG_NAN, 0},
    {"[1, -Infinity]", MSG_NAN, 4},
    {"{\"a\": NaN}", MSG_NAN, 6},
    {"[\"\360\237\230\200\",NaN]", MSG_NAN, 5},   /* after an emoji */
    {"1e400", MSG_OVERFLOW, 0},
    {"-1e400", MSG_OVERFLOW, 0},
    {"1.8e308", MSG_OVERFLOW, 0},
    {"[0, -1e400]", MSG_OVERFLOW, 4},
    {"{\"x\":1E+999}", MSG_OVERFLOW, 5},
    {"[1, 123456789012345678901234567890]", MSG_INT, 4},
    {"{\"\303\251\":9223372036854775808}", MSG_INT, 5},
    {"\"\\ud800\"", MSG_SURR, 1},
    {"\"ab\\udc00\"", MSG_SURR, 3},
    {"\"\\ud800\\u0041\"", MSG_SURR, 1},
    {"\"\\ud800x\"", MSG_SURR, 1},
    {"\"\\ud800\\n\"", MSG_SURR, 1},
    {"\"\\udbff\\udbff\"", MSG_SURR, 1},
    {"\"\\ude00\\ud83d\"", MSG_SURR, 1},
    {"\"\303\251\\ud800\"", MSG_SURR, 2},
    {"{\"\\ud800\":1}", MSG_SURR, 2},
    {"\"\\ud83d\\ude00\\ud83d\"", MSG_SURR, 13},
    /* the first narrowing wins */
    {"[NaN, 1e400]", MSG_NAN, 1},
    {"[\"\\ud800\", NaN]", MSG_SURR, 2},
    {"[1e999, 99999999999999999999]", MSG_OVERFLOW, 1},
    /* a lone surrogate in a value a duplicate key later replaces still
     * counts: the body is refused, not silently cleaned */
    {"{\"a\":\"\\udc00\",\"a\":1}", MSG_SURR, 6},
};

static void test_narrowing(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < NELTS(narrow_cases); i++) {
        check_error(i, narrow_cases[i].in, strlen(narrow_cases[i].in),
                    PTM_JSON_SYNTAX, narrow_cases[i].msg, narrow_cases[i].pos);
    }
}

/* When Python itself rejects the document, its error wins over ours even
 * if our objection comes first in the text. */
static void test_python_error_beats_narrowing(void **state)
{
    (void)state;
    check_error(0, "[NaN, }", 7, PTM_JSON_SYNTAX, "Expecting value", 6);
    check_error(1, "NaN x", 5, PTM_JSON_SYNTAX, "Extra data", 4);
    check_error(2, "[1e400", 6, PTM_JSON_SYNTAX, "Expecting ',' delimiter", 6);
    check_error(3, "\"\\ud800\\x\"", 10, PTM_JSON_SYNTAX, "Invalid \\escape",
                7);
    check_error(4, "\"\\udc00 ", 8, PTM_JSON_SYNTAX,
                "Unterminated string starting at", 0);
    check_error(5, "[99999999999999999999,]", 23, PTM_JSON_SYNTAX,
                "Expecting value", 22);
    check_error(6, "{\"a\":Infinity \"b\":1}", 20, PTM_JSON_SYNTAX,
                "Expecting ',' delimiter", 14);
}

/* Invalid UTF-8 is refused before scanning (Python decodes the body
 * first); pos is the code point index where the bad sequence starts. */
static const struct {
    const char *in;
    size_t len;
    size_t pos;
} bad_utf8_cases[] = {
    {"\300\200", 2, 0},                 /* overlong NUL */
    {"\301\277", 2, 0},                 /* overlong '\x7f' */
    {"\340\200\200", 3, 0},             /* overlong 3-byte */
    {"\340\237\277", 3, 0},
    {"\360\200\200\200", 4, 0},         /* overlong 4-byte */
    {"\360\217\277\277", 4, 0},
    {"\355\240\200", 3, 0},             /* U+D800 encoded */
    {"\355\277\277", 3, 0},             /* U+DFFF encoded */
    {"\"\355\240\275\355\270\200\"", 8, 1},   /* CESU-8 emoji */
    {"\364\220\200\200", 4, 0},         /* U+110000 */
    {"\365\200\200\200", 4, 0},
    {"\370\210\200\200\200", 5, 0},     /* old 5-byte form */
    {"\377", 1, 0},
    {"\376", 1, 0},
    {"\200", 1, 0},                     /* lone continuation byte */
    {"\"\342\202", 3, 1},               /* truncated at the end */
    {"\"\342\202\"", 4, 1},             /* truncated before a quote */
    {"\"\360\237\230\"", 5, 1},
    {"\"\303\"", 3, 1},
    {"\"\303\251\377\"", 5, 2},
    {"[\"\360\237\230\200\", \"\377\"]", 12, 7},
    {"\357\273\277\377", 4, 0},         /* after a BOM */
    {"{\"a\":1} \377", 9, 8},           /* before Extra data */
    {"{bad \377", 6, 5},                /* before any syntax error */
};

static void test_bad_utf8(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < NELTS(bad_utf8_cases); i++) {
        check_error(i, bad_utf8_cases[i].in, bad_utf8_cases[i].len,
                    PTM_JSON_SYNTAX, MSG_UTF8, bad_utf8_cases[i].pos);
        assert_false(ptm_utf8_valid(bad_utf8_cases[i].in,
                                    bad_utf8_cases[i].len));
    }
}

static void test_bom(void **state)
{
    ptm_json_error_t err;
    ptm_buf_t b;
    json_t *v;

    (void)state;
    v = ptm_json_parse("\357\273\277 [1]", 7, &err);
    assert_non_null(v);
    ptm_buf_init(&b, gpool, 16);
    ptm_json_dump(&b, v);
    json_decref(v);
    assert_bytes("bom", &b, "[1]", 3);
    /* positions count from after the BOM */
    check_error(0, "\357\273\277[1,]", 7, PTM_JSON_SYNTAX,
                "Expecting value", 3);
    /* only one BOM is skipped; a second one is a character */
    check_error(1, "\357\273\277\357\273\277[]", 8, PTM_JSON_SYNTAX,
                "Expecting value", 0);
    /* a BOM that is not at the start is not skipped */
    check_error(2, " \357\273\277[]", 6, PTM_JSON_SYNTAX,
                "Expecting value", 1);
}

/* ------------------------------------------------------------------------
 * Nesting
 */

static char *nested(const char *open, const char *close, int n,
                    const char *mid, size_t *len)
{
    size_t lo = strlen(open), lc = strlen(close), lm = strlen(mid);
    char *s = malloc(n * (lo + lc) + lm + 1), *d = s;
    int i;

    for (i = 0; i < n; i++) {
        memcpy(d, open, lo);
        d += lo;
    }
    memcpy(d, mid, lm);
    d += lm;
    for (i = 0; i < n; i++) {
        memcpy(d, close, lc);
        d += lc;
    }
    *d = '\0';
    *len = (size_t)(d - s);
    return s;
}

static void test_depth(void **state)
{
    ptm_json_error_t err;
    ptm_buf_t b;
    size_t len;
    json_t *v;
    char *s;

    (void)state;
    /* exactly the limit: accepted, and serialised back unchanged */
    s = nested("[", "]", PTM_JSON_MAX_DEPTH, "\"x\"", &len);
    v = ptm_json_parse(s, len, &err);
    assert_non_null(v);
    ptm_buf_init(&b, gpool, len);
    assert_int_equal(ptm_json_dump(&b, v), 0);
    assert_bytes("depth 512", &b, s, len);
    json_decref(v);
    free(s);

    /* one more: refused at the bracket that goes too deep */
    s = nested("[", "]", PTM_JSON_MAX_DEPTH + 1, "", &len);
    check_error(0, s, len, PTM_JSON_TOO_DEEP, MSG_DEEP, PTM_JSON_MAX_DEPTH);
    free(s);

    s = nested("{\"a\":", "}", PTM_JSON_MAX_DEPTH + 1, "1", &len);
    check_error(1, s, len, PTM_JSON_TOO_DEEP, MSG_DEEP,
                PTM_JSON_MAX_DEPTH * 5);
    free(s);

    s = nested("[{\"k\":", "}]", PTM_JSON_MAX_DEPTH, "[]", &len);
    check_error(2, s, len, PTM_JSON_TOO_DEEP, MSG_DEEP,
                PTM_JSON_MAX_DEPTH / 2 * 6);
    free(s);

    /* very deep: no stack overflow, memory freed (valgrind) */
    s = nested("[\"abc\",", "]", 100000, "", &len);
    check_error(3, s, len, PTM_JSON_TOO_DEEP, MSG_DEEP,
                PTM_JSON_MAX_DEPTH * 7);
    free(s);

    /* a syntax error before the limit is reported as such */
    s = nested("[", "]", 1000, "", &len);
    s[3] = 'x';
    check_error(4, s, len, PTM_JSON_SYNTAX, "Expecting value", 3);
    free(s);
}

/* ------------------------------------------------------------------------
 * Objects: order, duplicates, NUL in keys
 */

static void test_key_order_and_duplicates(void **state)
{
    static const char in[] =
        "{\"a\\u0000b\":1,\"a\":2,\"z\":0,\"a\\u0000b\":3}";
    ptm_json_error_t err;
    ptm_buf_t b;
    json_t *v, *x;
    void *it;

    (void)state;
    v = ptm_json_parse(in, sizeof(in) - 1, &err);
    assert_non_null(v);
    assert_int_equal(json_object_size(v), 3);
    x = json_object_getn(v, "a\0b", 3);
    assert_non_null(x);
    assert_int_equal(json_integer_value(x), 3);     /* last value wins */
    x = json_object_getn(v, "a", 1);
    assert_int_equal(json_integer_value(x), 2);
    it = json_object_iter(v);                       /* first position */
    assert_int_equal(json_object_iter_key_len(it), 3);
    assert_memory_equal(json_object_iter_key(it), "a\0b", 3);

    ptm_buf_init(&b, gpool, 16);
    assert_int_equal(ptm_json_dump(&b, v), 0);
    assert_bytes("dup", &b, "{\"a\\u0000b\":3,\"a\":2,\"z\":0}", 26);
    json_decref(v);
}

/* Objects built by other code (not parsed) keep insertion order too. */
static void test_dump_built(void **state)
{
    json_t *o = json_object(), *a = json_array();
    ptm_buf_t b;

    (void)state;
    json_object_set_new(o, "seq", json_integer(12));
    json_object_set_new(o, "ts", json_string("2026-03-17T20:15:00.000Z"));
    json_object_set_new(o, "stream", json_string("site"));
    json_object_set_new(o, "type", json_string("weather"));
    json_array_append_new(a, json_real(1e-7));
    json_array_append_new(a, json_real(100));
    json_array_append_new(a, json_integer(-5));
    json_array_append_new(a, json_true());
    json_array_append_new(a, json_false());
    json_array_append_new(a, json_null());
    json_array_append_new(a, json_stringn("\0\t\037\177\303\251", 6));
    json_object_set_new(o, "data", a);
    json_object_set_new(o, "meta", json_object());
    ptm_buf_init(&b, gpool, 16);
    assert_int_equal(ptm_json_dump(&b, o), 0);
    json_decref(o);
    assert_bytes("built", &b,
                 "{\"seq\":12,\"ts\":\"2026-03-17T20:15:00.000Z\","
                 "\"stream\":\"site\",\"type\":\"weather\",\"data\":[1e-07,"
                 "100.0,-5,true,false,null,"
                 "\"\\u0000\\t\\u001f\\u007f\\u00e9\"],\"meta\":{}}", 154);
    assert_int_equal(ptm_json_dump(&b, NULL), -1);
}

/* ------------------------------------------------------------------------
 * Strings: json.dumps escapes, lossy decoding, UTF-8 validity
 */

static const struct {
    const char *in;
    size_t len;
    const char *out;        /* json.dumps(in.decode("utf-8", "replace")) */
} string_cases[] = {
    {"", 0, "\"\""},
    {"a\0b", 3, "\"a\\u0000b\""},
    {"\001\010\011\012\013\014\015\037", 8,
     "\"\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f\""},
    {"\177", 1, "\"\\u007f\""},
    {"\303\251", 2, "\"\\u00e9\""},
    {"\360\237\230\200", 4, "\"\\ud83d\\ude00\""},
    {"\"\\/", 3, "\"\\\"\\\\/\""},
    {"\357\277\277", 3, "\"\\uffff\""},
    {"\364\217\277\277", 4, "\"\\udbff\\udfff\""},
    {"\340\240\200\342\200\250", 6, "\"\\u0800\\u2028\""},
    {"\302\200\302\240", 4, "\"\\u0080\\u00a0\""},
    {"plain ASCII ~ text", 18, "\"plain ASCII ~ text\""},
    /* invalid UTF-8: one U+FFFD per maximal bad subpart, like Python */
    {"a\377b", 3, "\"a\\ufffdb\""},
    {"\342\202", 2, "\"\\ufffd\""},
    {"\355\240\200", 3, "\"\\ufffd\\ufffd\\ufffd\""},
    {"\360\237\230", 3, "\"\\ufffd\""},
    {"\300\257x", 3, "\"\\ufffd\\ufffdx\""},
    {"\364\220\200\200", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},
    {"\342\202\254\342\202", 5, "\"\\u20ac\\ufffd\""},
};

static void test_dump_string(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < NELTS(string_cases); i++) {
        ptm_buf_t b;
        char what[32];

        ptm_buf_init(&b, gpool, 8);
        ptm_json_dump_string(&b, string_cases[i].in, string_cases[i].len);
        snprintf(what, sizeof(what), "string row %zu", i);
        assert_bytes(what, &b, string_cases[i].out,
                     strlen(string_cases[i].out));
    }
}

static const struct {
    const char *in;
    size_t in_len;
    const char *out;
    size_t out_len;
    int valid;
} lossy_cases[] = {
    {"", 0, "", 0, 1},
    {"abc", 3, "abc", 3, 1},
    {"a\0b", 3, "a\0b", 3, 1},
    {"\303\251\360\237\230\200", 6, "\303\251\360\237\230\200", 6, 1},
    {"\364\217\277\277", 4, "\364\217\277\277", 4, 1},
    {"a\377b", 3, "a\357\277\275b", 5, 0},
    {"\342\202", 2, "\357\277\275", 3, 0},
    {"\342\202A", 3, "\357\277\275A", 4, 0},
    {"\355\240\200", 3, "\357\277\275\357\277\275\357\277\275", 9, 0},
    {"\300\200", 2, "\357\277\275\357\277\275", 6, 0},
    {"\364\220\200\200", 4,
     "\357\277\275\357\277\275\357\277\275\357\277\275", 12, 0},
    {"\200\200", 2, "\357\277\275\357\277\275", 6, 0},
    {"\360\237\230", 3, "\357\277\275", 3, 0},
};

static void test_lossy_and_valid(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < NELTS(lossy_cases); i++) {
        json_t *v = ptm_json_string_lossy(lossy_cases[i].in,
                                          lossy_cases[i].in_len);

        assert_non_null(v);
        assert_int_equal(json_string_length(v), lossy_cases[i].out_len);
        assert_memory_equal(json_string_value(v), lossy_cases[i].out,
                            lossy_cases[i].out_len);
        json_decref(v);
        assert_int_equal(ptm_utf8_valid(lossy_cases[i].in,
                                        lossy_cases[i].in_len),
                         lossy_cases[i].valid);
    }
}

/* ------------------------------------------------------------------------
 * Python repr() of a str
 */

static const struct {
    const char *in;
    size_t len;
    const char *out;
} repr_cases[] = {
    {"abc", 3, "'abc'"},
    {"it's", 4, "\"it's\""},
    {"a\"b", 3, "'a\"b'"},
    {"a\"b'c", 5, "'a\"b\\'c'"},
    {"", 0, "''"},
    {"'", 1, "\"'\""},
    {"\"", 1, "'\"'"},
    {"\\", 1, "'\\\\'"},
    {"a\\b", 3, "'a\\\\b'"},
    {"\012", 1, "'\\n'"},
    {"\011\015\012", 3, "'\\t\\r\\n'"},
    {"\000\001\037\177", 4, "'\\x00\\x01\\x1f\\x7f'"},
    {"\302\200\302\237\302\240\302\255\302\241", 10,
     "'\\x80\\x9f\\xa0\\xad\302\241'"},
    {"\303\251", 2, "'\303\251'"},
    {"na\303\257ve caf\303\251", 12, "'na\303\257ve caf\303\251'"},
    {"\346\227\245\346\234\254\350\252\236", 9,
     "'\346\227\245\346\234\254\350\252\236'"},
    {"\360\237\230\200", 4, "'\360\237\230\200'"},
    {"\342\200\213\342\200\216\342\200\250\342\200\251\343\200\200", 15,
     "'\\u200b\\u200e\\u2028\\u2029\\u3000'"},
    {"\357\273\277", 3, "'\\ufeff'"},
    {"\356\200\200", 3, "'\\ue000'"},
    {"\363\260\200\200", 4, "'\\U000f0000'"},
    {"\364\217\277\275", 4, "'\\U0010fffd'"},
    {"\357\277\276\357\277\277", 6, "'\\ufffe\\uffff'"},
    {"\357\267\220", 3, "'\\ufdd0'"},
    {" ", 1, "' '"},
    {"\302\240", 2, "'\\xa0'"},
    {"x\341\232\200y", 5, "'x\\u1680y'"},
    {"\330\200", 2, "'\\u0600'"},
    {"\363\240\200\201\363\240\201\201", 8, "'\\U000e0001\\U000e0041'"},
    {"\360\235\205\263", 4, "'\\U0001d173'"},
    {"\360\237\230\200\360\237\247\221\342\200\215\360\237\232\200", 15,
     "'\360\237\230\200\360\237\247\221\\u200d\360\237\232\200'"},
    {"it's \"quoted\"", 13, "'it\\'s \"quoted\"'"},
    {"tab\011here", 8, "'tab\\there'"},
    {"''", 2, "\"''\""},
    {"\013\014", 2, "'\\x0b\\x0c'"},
    {"\342\201\240\342\201\246", 6, "'\\u2060\\u2066'"},
    {"\360\223\220\260", 4, "'\\U00013430'"},
    {"\360\233\262\240", 4, "'\\U0001bca0'"},
    {"\330\234", 2, "'\\u061c'"},
    {"\361\220\200\200", 4, "'\\U00050000'"},
    /* invalid UTF-8 reads as U+FFFD (printable), as Python's unquote() */
    {"a\377", 2, "'a\357\277\275'"},
};

static void test_py_repr(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < NELTS(repr_cases); i++) {
        ptm_buf_t b;
        char what[32];

        ptm_buf_init(&b, gpool, 8);
        ptm_json_py_repr(&b, repr_cases[i].in, repr_cases[i].len);
        snprintf(what, sizeof(what), "repr row %zu", i);
        assert_bytes(what, &b, repr_cases[i].out, strlen(repr_cases[i].out));
    }
}

/* ------------------------------------------------------------------------
 * Truthiness
 */

static void test_truthy(void **state)
{
    static const struct {
        const char *in;
        int truthy;
    } rows[] = {
        {"null", 0}, {"false", 0}, {"true", 1}, {"0", 0}, {"-0", 0},
        {"1", 1}, {"-1", 1}, {"0.0", 0}, {"-0.0", 0}, {"1e-400", 0},
        {"0.5", 1}, {"\"\"", 0}, {"\"0\"", 1}, {"\" \"", 1},
        {"\"\\u0000\"", 1}, {"[]", 0}, {"[0]", 1}, {"{}", 0},
        {"{\"a\":null}", 1}, {"[[]]", 1},
    };
    size_t i;

    (void)state;
    for (i = 0; i < NELTS(rows); i++) {
        ptm_json_error_t err;
        json_t *v = ptm_json_parse(rows[i].in, strlen(rows[i].in), &err);

        assert_non_null(v);
        if (ptm_json_truthy(v) != rows[i].truthy) {
            json_decref(v);
            fail_msg("truthy(%s) != %d", rows[i].in, rows[i].truthy);
        }
        json_decref(v);
    }
    assert_int_equal(ptm_json_truthy(NULL), 0);
}

/* ptm_json_well_formed: what a stored value must be to be served again.
 * Checked against jansson's strict parser on every case, and on every
 * prefix of valid documents (a torn value is never well-formed). */
static void test_well_formed(void **state)
{
    static const char *const good[] = {
        "{}", "[]", "0", "-0", "1.5e-3", "-12E+2", "\"\"", "true", "false",
        "null", "{\"a\":1}", "{\"a\":[1,2,{\"b\":null}],\"c\":\"\\u00e9\\n\"}",
        " [ 1 , 2 ] ", "{\"seq\":1,\"ts\":\"x\",\"data\":{\"t\":-1.25e+10}}",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\uABCD\"", "\"caf\xc3\xa9\"",
        "[[[[[]]]]]", "{\"\":{}}",
    };
    static const char *const bad[] = {
        "", " ", "{", "}", "[", "]", "{]", "[}", "{\"a\"}", "{\"a\":}",
        "{\"a\":1,}", "[1,]", "[,1]", "{a:1}", "01", "1.", ".5", "1e", "+1",
        "--1", "tru", "nul", "True", "\"abc", "\"\\x\"", "\"\\u12\"",
        "\"a\nb\"", "1 2", "{} {}", "[1]]", "{\"a\":1}}", "\"\xff\"",
        "\"\xc3\"", "[1,2", "{\"a\" 1}", "NaN", "Infinity", "[1;2]",
    };
    char deep[PTM_JSON_MAX_DEPTH * 2 + 4];
    size_t i, k;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        size_t n = strlen(good[i]);
        json_error_t e;
        json_t *v = json_loadb(good[i], n, JSON_DECODE_ANY, &e);

        assert_non_null(v);
        json_decref(v);
        if (!ptm_json_well_formed(good[i], n)) {
            fail_msg("refused: %s", good[i]);
        }
        /* Every proper prefix that jansson refuses is refused too. */
        for (k = 0; k < n; k++) {
            v = json_loadb(good[i], k, JSON_DECODE_ANY, &e);
            if (!v && ptm_json_well_formed(good[i], k)) {
                fail_msg("accepted the prefix %.*s", (int)k, good[i]);
            }
            json_decref(v);
        }
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ptm_json_well_formed(bad[i], strlen(bad[i]))) {
            fail_msg("accepted: %s", bad[i]);
        }
    }
    /* A NUL inside a string, or after the value. */
    assert_false(ptm_json_well_formed("\"a\0b\"", 5));
    assert_false(ptm_json_well_formed("{}\0", 3));
    /* Nesting: up to PTM_JSON_MAX_DEPTH, not beyond. */
    memset(deep, '[', PTM_JSON_MAX_DEPTH);
    memset(deep + PTM_JSON_MAX_DEPTH, ']', PTM_JSON_MAX_DEPTH);
    assert_true(ptm_json_well_formed(deep, 2 * PTM_JSON_MAX_DEPTH));
    memset(deep, '[', PTM_JSON_MAX_DEPTH + 1);
    memset(deep + PTM_JSON_MAX_DEPTH + 1, ']', PTM_JSON_MAX_DEPTH + 1);
    assert_false(ptm_json_well_formed(deep, 2 * PTM_JSON_MAX_DEPTH + 2));
}

/* The same on long strings: each special byte at every offset around the
 * eight-byte steps of the fast paths, against jansson. */
static void test_well_formed_long(void **state)
{
    static const char *const mid[] = {
        "\"", "\\", "\\n", "\\x", "\x01", "\x1f", "\x7f", " ", "\xff",
        "\xc3\xa9", "\xc3", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\\u00e9",
        "\x80", "\xed\xa0\x80",
    };
    char doc[128];
    size_t i, pre, post;

    (void)state;
    for (i = 0; i < sizeof(mid) / sizeof(mid[0]); i++) {
        for (pre = 0; pre < 20; pre++) {
            for (post = 0; post < 12; post += 5) {
                size_t n = 0, m = strlen(mid[i]);
                json_error_t e;
                json_t *v;
                int want;

                doc[n++] = '[';
                doc[n++] = '"';
                memset(doc + n, 'a', pre);
                n += pre;
                memcpy(doc + n, mid[i], m);
                n += m;
                memset(doc + n, 'b', post);
                n += post;
                doc[n++] = '"';
                doc[n++] = ']';
                v = json_loadb(doc, n, JSON_DECODE_ANY, &e);
                want = v != NULL;
                json_decref(v);
                if (ptm_json_well_formed(doc, n) != want) {
                    fail_msg("%s: %.*s", want ? "refused" : "accepted",
                             (int)n, doc);
                }
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_real_repr, test_teardown),
        cmocka_unit_test_teardown(test_real_nonfinite, test_teardown),
        cmocka_unit_test_teardown(test_real_roundtrip_random, test_teardown),
        cmocka_unit_test_teardown(test_real_short_decimals, test_teardown),
        cmocka_unit_test_teardown(test_parse_float_random, test_teardown),
        cmocka_unit_test_teardown(test_real_locale, test_teardown),
        cmocka_unit_test_teardown(test_real_threads, test_teardown),
        cmocka_unit_test_teardown(test_parse_dump, test_teardown),
        cmocka_unit_test_teardown(test_parse_types, test_teardown),
        cmocka_unit_test_teardown(test_big_integers, test_teardown),
        cmocka_unit_test_teardown(test_python_errors, test_teardown),
        cmocka_unit_test_teardown(test_spec_acceptance, test_teardown),
        cmocka_unit_test_teardown(test_narrowing, test_teardown),
        cmocka_unit_test_teardown(test_python_error_beats_narrowing,
                                  test_teardown),
        cmocka_unit_test_teardown(test_bad_utf8, test_teardown),
        cmocka_unit_test_teardown(test_bom, test_teardown),
        cmocka_unit_test_teardown(test_depth, test_teardown),
        cmocka_unit_test_teardown(test_key_order_and_duplicates,
                                  test_teardown),
        cmocka_unit_test_teardown(test_dump_built, test_teardown),
        cmocka_unit_test_teardown(test_dump_string, test_teardown),
        cmocka_unit_test_teardown(test_lossy_and_valid, test_teardown),
        cmocka_unit_test_teardown(test_py_repr, test_teardown),
        cmocka_unit_test_teardown(test_truthy, test_teardown),
        cmocka_unit_test_teardown(test_well_formed, test_teardown),
        cmocka_unit_test_teardown(test_well_formed_long, test_teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

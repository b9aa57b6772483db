/* Unit tests for ptm_event (SPEC §2.3-§2.6, §3.4 step 3, §3.6, §8,
 * §11.3 F15): how a body is read, pydantic-2 lax validation of
 * EventRequest and RunStartRequest with the exact 422 items, and the bytes
 * of the event envelope pieces.
 *
 * 422 details are compared as whole documents: err.detail is serialised
 * with ptm_json_dump (Python json.dumps, compact, ensure_ascii) and compared
 * byte for byte with what upstream answers. */
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
#include <jansson.h>
#include "ptm_buf.h"
#include "ptm_err.h"
#include "ptm_event.h"
#include "ptm_json.h"

/* ---- helpers ------------------------------------------------------------ */

/* A body as the validators receive it.  jansson's own parser keeps key
 * order, which is all these tests need from it. */
static json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);

    if (!v) {
        fail_msg("test JSON does not parse: %s: %s", text, e.text);
    }
    return v;
}

static const char *dump(const json_t *v)
{
    ptm_buf_t b;

    ptm_buf_init(&b, gpool, 64);
    if (!v) {
        return "(no detail)";
    }
    if (ptm_json_dump(&b, v) != 0) {
        fail_msg("ptm_json_dump failed");
    }
    ptm_buf_putc(&b, '\0');
    return b.data;
}

static void check_detail(const char *what, const ptm_err_t *err,
                         int status, const char *want)
{
    const char *got = dump(err->detail);

    if (err->status != status) {
        fail_msg("%s: status %d, want %d (detail %s)", what, err->status,
                 status, got);
    }
    if (strcmp(got, want) != 0) {
        fail_msg("%s:\n  got  %s\n  want %s", what, got, want);
    }
}

static void check_mem(const char *what, const char *got, size_t got_len,
                      const char *want)
{
    if (got_len != strlen(want) || memcmp(got, want, got_len) != 0) {
        fail_msg("%s:\n  got  %.*s\n  want %s", what, (int)got_len, got,
                 want);
    }
}

/* Item fragments, spelled as upstream (pydantic 2.13) spells them. */
#define MISSING(loc, input) \
    "{\"type\":\"missing\",\"loc\":" loc ",\"msg\":\"Field required\"," \
    "\"input\":" input "}"
#define STRING_TYPE(loc, input) \
    "{\"type\":\"string_type\",\"loc\":" loc ",\"msg\":\"Input should be a " \
    "valid string\",\"input\":" input "}"
#define DICT_TYPE(input) \
    "{\"type\":\"dict_type\",\"loc\":[\"body\",\"meta\"],\"msg\":\"Input " \
    "should be a valid dictionary\",\"input\":" input "}"
#define MODEL_TYPE(input) \
    "{\"type\":\"model_attributes_type\",\"loc\":[\"body\"],\"msg\":\"Input " \
    "should be a valid dictionary or object to extract fields from\"," \
    "\"input\":" input "}"
#define BOOL_PARSING(field, input) \
    "{\"type\":\"bool_parsing\",\"loc\":[\"body\",\"" field "\"],\"msg\":" \
    "\"Input should be a valid boolean, unable to interpret input\"," \
    "\"input\":" input "}"
#define BOOL_TYPE(field, input) \
    "{\"type\":\"bool_type\",\"loc\":[\"body\",\"" field "\"],\"msg\":" \
    "\"Input should be a valid boolean\",\"input\":" input "}"
#define JSON_INVALID(pos, error) \
    "{\"type\":\"json_invalid\",\"loc\":[\"body\"," pos "],\"msg\":\"JSON " \
    "decode error\",\"input\":{},\"ctx\":{\"error\":\"" error "\"}}"

#define LOC_TYPE "[\"body\",\"type\"]"
#define LOC_DATA "[\"body\",\"data\"]"
#define LOC_TS "[\"body\",\"ts\"]"

/* ---- ptm_body_is_json_type ---------------------------------------------- */

static void test_body_is_json_type(void **state)
{
    static const struct {
        const char *ct;
        int want;
    } cases[] = {
        { "application/json", 1 },
        { "APPLICATION/JSON", 1 },
        { "Application/Json", 1 },
        { "application/json; charset=utf-8", 1 },
        { "application/json;charset=UTF-8", 1 },
        { "application/json ; x=y", 1 },
        { "application/vnd.x+json", 1 },
        { "application/geo+json; charset=utf-8", 1 },
        { "application/+json", 1 },
        { "APPLICATION/VND.API+JSON", 1 },
        { "application/x-json", 0 },
        { "application/jsonx", 0 },
        { "application/json5", 0 },
        { "application/a/b+json", 0 },
        { "application/vnd.x+json2", 0 },
        { "application/vnd.x+jsonp", 0 },
        { "text/json", 0 },
        { "text/plain", 0 },
        { "text/plain; charset=application/json", 0 },
        { "multipart/form-data", 0 },
        { "application/x-www-form-urlencoded", 0 },
        { "json", 0 },
        { "application", 0 },
        { "", 0 },
        { NULL, 0 },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = ptm_body_is_json_type(cases[i].ct);

        if (got != cases[i].want) {
            fail_msg("is_json_type(%s%s%s): got %d, want %d",
                     cases[i].ct ? "\"" : "",
                     cases[i].ct ? cases[i].ct : "NULL",
                     cases[i].ct ? "\"" : "", got, cases[i].want);
        }
    }
}

/* ---- ptm_body_parse ----------------------------------------------------- */

typedef struct {
    const char *name;
    const char *ct;
    const char *body;
    size_t len;             /* 0 with body: strlen */
    int want_rv;
    const char *want_obj;   /* dump of *out when rv == 0 (NULL: no body) */
    int want_status;
    const char *want_detail;
} parse_case_t;

static void test_body_parse_table(void **state)
{
    static const parse_case_t cases[] = {
        { "empty", "application/json", "", 0, 0, NULL, 0, NULL },
        { "empty, no content type", NULL, "", 0, 0, NULL, 0, NULL },
        { "empty, text/plain", "text/plain", "", 0, 0, NULL, 0, NULL },
        { "null", "application/json", "null", 0, 0, NULL, 0, NULL },
        { "null with whitespace", "application/json", " \n null\t", 0, 0,
          NULL, 0, NULL },
        { "object", "application/json", "{\"type\":\"x\",\"data\":1}", 0, 0,
          "{\"type\":\"x\",\"data\":1}", 0, NULL },
        { "object, +json", "application/vnd.x+json", "{\"b\":1,\"a\":2}", 0,
          0, "{\"b\":1,\"a\":2}", 0, NULL },
        { "object with BOM", "application/json", "\xef\xbb\xbf{\"a\":1}", 0,
          0, "{\"a\":1}", 0, NULL },
        /* Not declared JSON: validated as raw text (rule 3). */
        { "text/plain", "text/plain", "{\"type\":\"x\"}", 0, -1, NULL, 422,
          "[" MODEL_TYPE("\"{\\\"type\\\":\\\"x\\\"}\"") "]" },
        { "no content type", NULL, "{\"type\":\"x\"}", 0, -1, NULL, 422,
          "[" MODEL_TYPE("\"{\\\"type\\\":\\\"x\\\"}\"") "]" },
        { "application/x-json", "application/x-json", "null", 0, -1, NULL,
          422, "[" MODEL_TYPE("\"null\"") "]" },
        { "text/plain, non-ASCII", "text/plain", "caf\xc3\xa9", 0, -1, NULL,
          422, "[" MODEL_TYPE("\"caf\\u00e9\"") "]" },
        { "text/plain, invalid UTF-8", "text/plain", "a\xff" "b", 0, -1,
          NULL, 422, "[" MODEL_TYPE("\"a\\ufffdb\"") "]" },
        /* JSON errors: Python's position and message. */
        { "bad json", "application/json", "{bad json", 0, -1, NULL, 422,
          "[" JSON_INVALID("1", "Expecting property name enclosed in double "
                                "quotes") "]" },
        { "missing value", "application/json", "{\"type\": }", 0, -1, NULL,
          422, "[" JSON_INVALID("9", "Expecting value") "]" },
        { "extra data", "application/json",
          "{\"type\":\"x\",\"data\":1} trailing", 0, -1, NULL, 422,
          "[" JSON_INVALID("22", "Extra data") "]" },
        { "whitespace only", "application/json", " ", 0, -1, NULL, 422,
          "[" JSON_INVALID("1", "Expecting value") "]" },
        /* Valid JSON that is not an object. */
        { "number", "application/json", "5", 0, -1, NULL, 422,
          "[" MODEL_TYPE("5") "]" },
        { "array", "application/json", "[]", 0, -1, NULL, 422,
          "[" MODEL_TYPE("[]") "]" },
        { "array of things", "application/json", "[1,\"a\",null]", 0, -1,
          NULL, 422, "[" MODEL_TYPE("[1,\"a\",null]") "]" },
        { "string", "application/json", "\"str\"", 0, -1, NULL, 422,
          "[" MODEL_TYPE("\"str\"") "]" },
        { "true", "application/json", "true", 0, -1, NULL, 422,
          "[" MODEL_TYPE("true") "]" },
        { "float", "application/json", "1.50", 0, -1, NULL, 422,
          "[" MODEL_TYPE("1.5") "]" },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const parse_case_t *c = &cases[i];
        ptm_err_t err = { 0 };
        json_t *out = (json_t *)&err;       /* must be overwritten */
        size_t len = c->len ? c->len : strlen(c->body);
        int rv = ptm_body_parse(&out, &err, c->ct, c->body, len);

        if (rv != c->want_rv) {
            fail_msg("%s: rv %d, want %d (detail %s)", c->name, rv,
                     c->want_rv, dump(err.detail));
        }
        if (rv == 0) {
            assert_int_equal(err.status, 0);
            assert_null(err.detail);
            if (!c->want_obj) {
                if (out) {
                    fail_msg("%s: want no body, got %s", c->name, dump(out));
                }
            }
            else {
                if (!out) {
                    fail_msg("%s: want %s, got no body", c->name,
                             c->want_obj);
                }
                check_mem(c->name, dump(out), strlen(dump(out)),
                          c->want_obj);
                json_decref(out);
            }
        }
        else {
            assert_null(out);
            check_detail(c->name, &err, c->want_status, c->want_detail);
        }
        ptm_err_clear(&err);
    }
}

/* Nesting deeper than Python can recurse: 400, not 422. */
static void test_body_parse_too_deep(void **state)
{
    size_t n = 5000, i;
    char *s = malloc(2 * n + 1);
    ptm_err_t err = { 0 };
    json_t *out = NULL;

    for (i = 0; i < n; i++) {
        s[i] = '[';
        s[n + i] = ']';
    }
    s[2 * n] = '\0';
    assert_int_equal(ptm_body_parse(&out, &err, "application/json", s,
                                    2 * n), -1);
    free(s);
    assert_null(out);
    check_detail("too deep", &err, 400,
                 "\"There was an error parsing the body\"");
    ptm_err_clear(&err);
}

/* ---- ptm_event_validate ------------------------------------------------- */

typedef struct {
    const char *name;
    const char *body;       /* NULL: no body */
    const char *want;       /* NULL: valid; else the whole detail */
} validate_case_t;

static const validate_case_t validate_cases[] = {
    /* Missing fields: input is the whole body. */
    { "no body", NULL, "[" MISSING("[\"body\"]", "null") "]" },
    { "missing type", "{\"data\":{\"sky\":\"clear\"}}",
      "[" MISSING(LOC_TYPE, "{\"data\":{\"sky\":\"clear\"}}") "]" },
    { "missing data", "{\"type\":\"x\"}",
      "[" MISSING(LOC_DATA, "{\"type\":\"x\"}") "]" },
    { "empty object", "{}",
      "[" MISSING(LOC_TYPE, "{}") "," MISSING(LOC_DATA, "{}") "]" },
    { "only unknown fields", "{\"seq\":1,\"stream\":\"run\"}",
      "[" MISSING(LOC_TYPE, "{\"seq\":1,\"stream\":\"run\"}") ","
          MISSING(LOC_DATA, "{\"seq\":1,\"stream\":\"run\"}") "]" },
    /* type must be a string. */
    { "type null", "{\"type\":null,\"data\":1}",
      "[" STRING_TYPE(LOC_TYPE, "null") "]" },
    { "type number", "{\"type\":5,\"data\":1}",
      "[" STRING_TYPE(LOC_TYPE, "5") "]" },
    { "type float", "{\"type\":1.5,\"data\":1}",
      "[" STRING_TYPE(LOC_TYPE, "1.5") "]" },
    { "type bool", "{\"type\":true,\"data\":1}",
      "[" STRING_TYPE(LOC_TYPE, "true") "]" },
    { "type array", "{\"type\":[\"x\"],\"data\":1}",
      "[" STRING_TYPE(LOC_TYPE, "[\"x\"]") "]" },
    { "type object", "{\"type\":{\"a\":1},\"data\":1}",
      "[" STRING_TYPE(LOC_TYPE, "{\"a\":1}") "]" },
    { "type empty string is fine", "{\"type\":\"\",\"data\":1}", NULL },
    /* data: anything, null included, but present. */
    { "data null", "{\"type\":\"x\",\"data\":null}", NULL },
    { "data list", "{\"type\":\"x\",\"data\":[1,2]}", NULL },
    { "data string", "{\"type\":\"x\",\"data\":\"s\"}", NULL },
    /* meta: an object; null is an error. */
    { "meta null", "{\"type\":\"x\",\"data\":1,\"meta\":null}",
      "[" DICT_TYPE("null") "]" },
    { "meta list", "{\"type\":\"x\",\"data\":1,\"meta\":[1]}",
      "[" DICT_TYPE("[1]") "]" },
    { "meta string", "{\"type\":\"x\",\"data\":1,\"meta\":\"m\"}",
      "[" DICT_TYPE("\"m\"") "]" },
    { "meta number", "{\"type\":\"x\",\"data\":1,\"meta\":0}",
      "[" DICT_TYPE("0") "]" },
    { "meta empty object", "{\"type\":\"x\",\"data\":1,\"meta\":{}}", NULL },
    /* ts: string or null. */
    { "ts number", "{\"type\":\"x\",\"data\":1,\"ts\":1700000000}",
      "[" STRING_TYPE(LOC_TS, "1700000000") "]" },
    { "ts bool", "{\"type\":\"x\",\"data\":1,\"ts\":false}",
      "[" STRING_TYPE(LOC_TS, "false") "]" },
    { "ts object", "{\"type\":\"x\",\"data\":1,\"ts\":{}}",
      "[" STRING_TYPE(LOC_TS, "{}") "]" },
    { "ts null", "{\"type\":\"x\",\"data\":1,\"ts\":null}", NULL },
    { "ts empty", "{\"type\":\"x\",\"data\":1,\"ts\":\"\"}", NULL },
    { "ts garbage", "{\"type\":\"x\",\"data\":1,\"ts\":\"not-a-ts\"}", NULL },
    /* Every failing field, in declaration order whatever the body order. */
    { "all six fields fail",
      "{\"ts\":[],\"meta\":null,\"store_permanently\":1.5,"
      "\"make_current\":2,\"type\":null}",
      "[" STRING_TYPE(LOC_TYPE, "null") ","
          MISSING(LOC_DATA, "{\"ts\":[],\"meta\":null,\"store_permanently\":"
                            "1.5,\"make_current\":2,\"type\":null}") ","
          BOOL_PARSING("make_current", "2") ","
          BOOL_TYPE("store_permanently", "1.5") ","
          DICT_TYPE("null") ","
          STRING_TYPE(LOC_TS, "[]") "]" },
    { "some fields fail, reversed body order",
      "{\"ts\":5,\"meta\":[],\"make_current\":\"maybe\",\"data\":0,"
      "\"type\":\"ok\"}",
      "[" BOOL_PARSING("make_current", "\"maybe\"") ","
          DICT_TYPE("[]") ","
          STRING_TYPE(LOC_TS, "5") "]" },
    { "type and ts only",
      "{\"ts\":true,\"data\":{},\"type\":false,\"store_permanently\":\"no\"}",
      "[" STRING_TYPE(LOC_TYPE, "false") ","
          STRING_TYPE(LOC_TS, "true") "]" },
    /* Unknown fields are ignored. */
    { "unknown fields",
      "{\"seq\":99,\"stream\":\"run\",\"type\":\"x\",\"extra\":[1],"
      "\"data\":1,\"META\":null}", NULL },
};

static void test_event_validate_table(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(validate_cases) / sizeof(validate_cases[0]);
         i++) {
        const validate_case_t *c = &validate_cases[i];
        ptm_event_req_t ev;
        ptm_err_t err = { 0 };
        int rv;

        rv = ptm_event_validate(&ev, c->body ? J(c->body) : NULL, &err);
        if (!c->want) {
            if (rv != 0 || err.status != 0) {
                fail_msg("%s: want valid, got rv %d detail %s", c->name, rv,
                         dump(err.detail));
            }
        }
        else {
            if (rv != -1) {
                fail_msg("%s: want -1, got %d", c->name, rv);
            }
            check_detail(c->name, &err, 422, c->want);
        }
        ptm_event_req_free(&ev);
        ptm_err_clear(&err);
    }
}

/* What a valid request turns into. */
static void test_event_validate_fields(void **state)
{
    ptm_event_req_t ev;
    ptm_err_t err = { 0 };

    /* Defaults. */
    assert_int_equal(ptm_event_validate(&ev, J("{\"type\":\"weather\","
                                               "\"data\":{\"sky\":\"clear\"}}"),
                                        &err), 0);
    assert_int_equal(err.status, 0);
    assert_non_null(ev.body);
    check_mem("type", ev.type, ev.type_len, "weather");
    check_mem("data", dump(ev.data), strlen(dump(ev.data)),
              "{\"sky\":\"clear\"}");
    assert_non_null(ev.meta);
    check_mem("meta default", dump(ev.meta), strlen(dump(ev.meta)), "{}");
    assert_null(ev.ts);
    assert_int_equal(ev.make_current, 1);
    assert_int_equal(ev.store_permanently, 1);
    ptm_event_req_free(&ev);

    /* Everything given; data null is a value, not "missing". */
    assert_int_equal(ptm_event_validate(&ev, J("{\"type\":\"\",\"data\":null,"
                                               "\"make_current\":\"off\","
                                               "\"store_permanently\":0,"
                                               "\"meta\":{\"b\":1,\"a\":2},"
                                               "\"ts\":\"\"}"),
                                        &err), 0);
    assert_non_null(ev.type);
    assert_int_equal(ev.type_len, 0);
    assert_non_null(ev.data);
    assert_true(json_is_null(ev.data));
    assert_int_equal(ev.make_current, 0);
    assert_int_equal(ev.store_permanently, 0);
    check_mem("meta", dump(ev.meta), strlen(dump(ev.meta)),
              "{\"b\":1,\"a\":2}");
    assert_non_null(ev.ts);
    assert_int_equal(ev.ts_len, 0);
    ptm_event_req_free(&ev);

    /* A type with an embedded NUL keeps its length. */
    assert_int_equal(ptm_event_validate(&ev, J("{\"type\":\"a\\u0000b\","
                                               "\"data\":1,\"ts\":null}"),
                                        &err), 0);
    assert_int_equal(ev.type_len, 3);
    assert_memory_equal(ev.type, "a\0b", 3);
    assert_null(ev.ts);
    ptm_event_req_free(&ev);
    ptm_err_clear(&err);
}

/* ---- lax bools ---------------------------------------------------------- */

typedef struct {
    const char *json;       /* the field value */
    int want;               /* 1, 0, or -1: error */
    const char *kind;       /* error type when want == -1 */
    const char *input;      /* error input as dumped */
} bool_case_t;

static const bool_case_t bool_cases[] = {
    { "true", 1, NULL, NULL },
    { "1", 1, NULL, NULL },
    { "1.0", 1, NULL, NULL },
    { "\"1\"", 1, NULL, NULL },
    { "\"on\"", 1, NULL, NULL },
    { "\"t\"", 1, NULL, NULL },
    { "\"true\"", 1, NULL, NULL },
    { "\"TRUE\"", 1, NULL, NULL },
    { "\"True\"", 1, NULL, NULL },
    { "\"y\"", 1, NULL, NULL },
    { "\"YES\"", 1, NULL, NULL },
    { "\"On\"", 1, NULL, NULL },
    { "false", 0, NULL, NULL },
    { "0", 0, NULL, NULL },
    { "-0", 0, NULL, NULL },
    { "0.0", 0, NULL, NULL },
    { "-0.0", 0, NULL, NULL },
    { "\"0\"", 0, NULL, NULL },
    { "\"off\"", 0, NULL, NULL },
    { "\"f\"", 0, NULL, NULL },
    { "\"false\"", 0, NULL, NULL },
    { "\"FALSE\"", 0, NULL, NULL },
    { "\"n\"", 0, NULL, NULL },
    { "\"NO\"", 0, NULL, NULL },
    { "\"Off\"", 0, NULL, NULL },
    /* Other strings and integers: bool_parsing. */
    { "\"maybe\"", -1, "bool_parsing", "\"maybe\"" },
    { "\"\"", -1, "bool_parsing", "\"\"" },
    { "2", -1, "bool_parsing", "2" },
    { "-1", -1, "bool_parsing", "-1" },
    { "\"true \"", -1, "bool_parsing", "\"true \"" },
    { "\" yes\"", -1, "bool_parsing", "\" yes\"" },
    { "\"2\"", -1, "bool_parsing", "\"2\"" },
    { "\"00\"", -1, "bool_parsing", "\"00\"" },
    { "\"tru\"", -1, "bool_parsing", "\"tru\"" },
    { "\"yes\\u0000\"", -1, "bool_parsing", "\"yes\\u0000\"" },
    { "1000000000000", -1, "bool_parsing", "1000000000000" },
    /* Other floats, null, arrays, objects: bool_type. */
    { "1.5", -1, "bool_type", "1.5" },
    { "0.5", -1, "bool_type", "0.5" },
    { "-0.1", -1, "bool_type", "-0.1" },
    { "null", -1, "bool_type", "null" },
    { "[]", -1, "bool_type", "[]" },
    { "[true]", -1, "bool_type", "[true]" },
    { "{}", -1, "bool_type", "{}" },
};

static void check_bool_field(const char *field)
{
    size_t i;

    for (i = 0; i < sizeof(bool_cases) / sizeof(bool_cases[0]); i++) {
        const bool_case_t *c = &bool_cases[i];
        char text[128], want[512];
        ptm_event_req_t ev;
        ptm_err_t err = { 0 };
        int rv;

        snprintf(text, sizeof(text), "{\"type\":\"x\",\"data\":1,\"%s\":%s}",
                 field, c->json);
        rv = ptm_event_validate(&ev, J(text), &err);
        if (c->want >= 0) {
            int got = strcmp(field, "make_current") == 0
                      ? ev.make_current : ev.store_permanently;
            int other = strcmp(field, "make_current") == 0
                        ? ev.store_permanently : ev.make_current;

            if (rv != 0 || err.status) {
                fail_msg("%s=%s: want %d, got error %s", field, c->json,
                         c->want, dump(err.detail));
            }
            if (got != c->want) {
                fail_msg("%s=%s: got %d, want %d", field, c->json, got,
                         c->want);
            }
            assert_int_equal(other, 1);     /* the other keeps its default */
        }
        else {
            snprintf(want, sizeof(want),
                     "[{\"type\":\"%s\",\"loc\":[\"body\",\"%s\"],"
                     "\"msg\":\"%s\",\"input\":%s}]", c->kind, field,
                     strcmp(c->kind, "bool_type") == 0
                     ? "Input should be a valid boolean"
                     : "Input should be a valid boolean, unable to "
                       "interpret input",
                     c->input);
            if (rv != -1) {
                fail_msg("%s=%s: want an error, got %d", field, c->json, rv);
            }
            check_detail(text, &err, 422, want);
        }
        ptm_event_req_free(&ev);
        ptm_err_clear(&err);
    }
}

static void test_lax_bool_make_current(void **state)
{
    check_bool_field("make_current");
}

static void test_lax_bool_store_permanently(void **state)
{
    check_bool_field("store_permanently");
}

/* The public helper on its own: result and the item it adds. */
static void test_lax_bool_direct(void **state)
{
    ptm_err_t err = { 0 };
    json_t *v;

    v = J("\"Yes\"");
    assert_int_equal(ptm_event_lax_bool(v, "make_current", &err), 1);
    assert_int_equal(err.status, 0);
    json_decref(v);
    v = J("\"nO\"");
    assert_int_equal(ptm_event_lax_bool(v, "make_current", &err), 0);
    json_decref(v);
    v = J("\"x\"");
    assert_int_equal(ptm_event_lax_bool(v, "f1", &err), -1);
    json_decref(v);
    v = J("2.5");
    assert_int_equal(ptm_event_lax_bool(v, "f2", &err), -1);
    json_decref(v);
    check_detail("two bool items", &err, 422,
                 "[" BOOL_PARSING("f1", "\"x\"") "," BOOL_TYPE("f2", "2.5")
                 "]");
    ptm_err_clear(&err);
}

/* ---- ptm_event_envelope ------------------------------------------------- */

#define SERVER_TS "2026-03-17T20:15:00.000Z"

typedef struct {
    const char *name;
    const char *body;
    const char *run_id;     /* NULL: site stream */
    const char *ts_part;
    const char *body_part;
    const char *key;
} env_case_t;

static const env_case_t env_cases[] = {
    { "spec example", "{\"type\":\"weather\",\"data\":{\"sky\":\"clear\"}}",
      NULL, ",\"ts\":\"" SERVER_TS "\"",
      ",\"type\":\"weather\",\"data\":{\"sky\":\"clear\"},\"meta\":{}}",
      "\"weather\"" },
    { "client ts verbatim",
      "{\"type\":\"t\",\"data\":1,\"ts\":\"not-a-timestamp\"}", NULL,
      ",\"ts\":\"not-a-timestamp\"", ",\"type\":\"t\",\"data\":1,"
      "\"meta\":{}}", "\"t\"" },
    { "client ts empty", "{\"type\":\"t\",\"data\":1,\"ts\":\"\"}", NULL,
      ",\"ts\":\"\"", ",\"type\":\"t\",\"data\":1,\"meta\":{}}", "\"t\"" },
    { "client ts null", "{\"type\":\"t\",\"data\":1,\"ts\":null}", NULL,
      ",\"ts\":\"" SERVER_TS "\"", ",\"type\":\"t\",\"data\":1,"
      "\"meta\":{}}", "\"t\"" },
    { "client ts escaped",
      "{\"type\":\"t\",\"data\":1,\"ts\":\"2026\\n\\u00e9\\\"\"}", NULL,
      ",\"ts\":\"2026\\n\\u00e9\\\"\"", ",\"type\":\"t\",\"data\":1,"
      "\"meta\":{}}", "\"t\"" },
    { "unknown fields dropped",
      "{\"seq\":99,\"stream\":\"run\",\"type\":\"x\",\"extra\":true,"
      "\"data\":null,\"make_current\":\"no\"}", NULL,
      ",\"ts\":\"" SERVER_TS "\"", ",\"type\":\"x\",\"data\":null,"
      "\"meta\":{}}", "\"x\"" },
    { "data key order and nesting",
      "{\"data\":{\"z\":1,\"a\":[1,\"two\",{\"b\":null,\"a\":false}]},"
      "\"type\":\"n\",\"meta\":{\"y\":1,\"x\":2}}", NULL,
      ",\"ts\":\"" SERVER_TS "\"",
      ",\"type\":\"n\",\"data\":{\"z\":1,\"a\":[1,\"two\",{\"b\":null,"
      "\"a\":false}]},\"meta\":{\"y\":1,\"x\":2}}", "\"n\"" },
    { "non-ASCII type",
      "{\"type\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\",\"data\":\"\xc3\xa9\"}",
      NULL, ",\"ts\":\"" SERVER_TS "\"",
      ",\"type\":\"caf\\u00e9 \\ud83d\\ude00\",\"data\":\"\\u00e9\","
      "\"meta\":{}}", "\"caf\\u00e9 \\ud83d\\ude00\"" },
    { "empty type", "{\"type\":\"\",\"data\":0}", NULL,
      ",\"ts\":\"" SERVER_TS "\"", ",\"type\":\"\",\"data\":0,\"meta\":{}}",
      "\"\"" },
    /* Site stream: a client meta.run_id is stored untouched. */
    { "site keeps client run_id",
      "{\"type\":\"t\",\"data\":1,\"meta\":{\"run_id\":\"mine\",\"k\":1}}",
      NULL, ",\"ts\":\"" SERVER_TS "\"",
      ",\"type\":\"t\",\"data\":1,\"meta\":{\"run_id\":\"mine\",\"k\":1}}",
      "\"t\"" },
    /* Run stream: run_id stamped, in place or appended last. */
    { "run_id appended to empty meta", "{\"type\":\"t\",\"data\":1}", "003",
      ",\"ts\":\"" SERVER_TS "\"",
      ",\"type\":\"t\",\"data\":1,\"meta\":{\"run_id\":\"003\"}}", "\"t\"" },
    { "run_id appended last",
      "{\"type\":\"t\",\"data\":1,\"meta\":{\"a\":1,\"b\":[2]}}", "003",
      ",\"ts\":\"" SERVER_TS "\"",
      ",\"type\":\"t\",\"data\":1,\"meta\":{\"a\":1,\"b\":[2],"
      "\"run_id\":\"003\"}}", "\"t\"" },
    { "run_id keeps its position",
      "{\"type\":\"t\",\"data\":1,\"meta\":{\"a\":1,\"run_id\":\"client\","
      "\"b\":2}}", "003", ",\"ts\":\"" SERVER_TS "\"",
      ",\"type\":\"t\",\"data\":1,\"meta\":{\"a\":1,\"run_id\":\"003\","
      "\"b\":2}}", "\"t\"" },
    { "run_id overrides a non-string",
      "{\"type\":\"t\",\"data\":1,\"meta\":{\"run_id\":42,\"z\":0}}", "003",
      ",\"ts\":\"" SERVER_TS "\"",
      ",\"type\":\"t\",\"data\":1,\"meta\":{\"run_id\":\"003\",\"z\":0}}",
      "\"t\"" },
    { "run_id with client ts",
      "{\"ts\":\"\",\"meta\":{\"run_id\":null},\"type\":\"t\",\"data\":1}",
      "run 1", ",\"ts\":\"\"",
      ",\"type\":\"t\",\"data\":1,\"meta\":{\"run_id\":\"run 1\"}}",
      "\"t\"" },
};

static void test_event_envelope_table(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(env_cases) / sizeof(env_cases[0]); i++) {
        const env_case_t *c = &env_cases[i];
        ptm_event_req_t ev;
        ptm_envelope_t env;
        ptm_err_t err = { 0 };
        char what[160];

        if (ptm_event_validate(&ev, J(c->body), &err) != 0) {
            fail_msg("%s: invalid: %s", c->name, dump(err.detail));
        }
        memset(&env, 0, sizeof(env));
        if (ptm_event_envelope(&env, &err, &ev, SERVER_TS, c->run_id,
                               c->run_id ? strlen(c->run_id) : 0, gpool)
            != 0) {
            fail_msg("%s: envelope failed: %s", c->name, dump(err.detail));
        }
        snprintf(what, sizeof(what), "%s: ts_part", c->name);
        check_mem(what, env.ts_part, env.ts_len, c->ts_part);
        snprintf(what, sizeof(what), "%s: body_part", c->name);
        check_mem(what, env.body_part, env.body_len, c->body_part);
        snprintf(what, sizeof(what), "%s: key", c->name);
        check_mem(what, env.key, env.key_len, c->key);
        assert_int_equal(err.status, 0);
        /* The public envelope, made in place before the parts, for seqs
         * of every width (the parts stay as they were). */
        {
            static const uint64_t seqs[] = {
                0, 7, 42, 1234567, 9223372036854775807ull,
                18446744073709551615ull
            };
            size_t k;

            for (k = 0; k < sizeof(seqs) / sizeof(seqs[0]); k++) {
                char *want = apr_psprintf(gpool, "{\"seq\":%" APR_UINT64_T_FMT
                                          "%s%s", seqs[k], c->ts_part,
                                          c->body_part);
                size_t len = 0;
                const char *pub = ptm_envelope_public(&env, seqs[k], &len);

                snprintf(what, sizeof(what), "%s: public, seq %" APR_UINT64_T_FMT,
                         c->name, seqs[k]);
                check_mem(what, pub, len, want);
                assert_true(pub >= env.head);
                check_mem(what, env.ts_part, env.ts_len, c->ts_part);
                check_mem(what, env.body_part, env.body_len, c->body_part);
            }
        }
        ptm_event_req_free(&ev);
    }
}

/* The run_id is stamped with its length: it may hold any bytes. */
static void test_event_envelope_run_id_len(void **state)
{
    ptm_event_req_t ev;
    ptm_envelope_t env;
    ptm_err_t err = { 0 };

    assert_int_equal(ptm_event_validate(&ev, J("{\"type\":\"t\",\"data\":1}"),
                                        &err), 0);
    assert_int_equal(ptm_event_envelope(&env, &err, &ev, SERVER_TS,
                                        "007-extra", 3, gpool), 0);
    check_mem("run_id by length", env.body_part, env.body_len,
              ",\"type\":\"t\",\"data\":1,\"meta\":{\"run_id\":\"007\"}}");
    ptm_event_req_free(&ev);
}

/* ---- ptm_run_req_validate ----------------------------------------------- */

typedef struct {
    const char *name;
    const char *body;       /* NULL: no body */
    int want_rv;
    const char *run_dir;    /* expected; NULL: none */
    const char *run_id;     /* expected; NULL: derive */
    int from_meta;
    const char *meta;       /* expected dump of rr.meta */
    const char *detail;     /* when want_rv == -1 */
} run_req_case_t;

#define LOC_META_RUN_ID "[\"body\",\"meta\",\"run_id\"]"

static const run_req_case_t run_req_cases[] = {
    { "no body", NULL, 0, NULL, NULL, 0, "{}", NULL },
    { "empty object", "{}", 0, NULL, NULL, 0, "{}", NULL },
    { "all null", "{\"run_dir\":null,\"run_id\":null,\"meta\":{}}", 0, NULL,
      NULL, 0, "{}", NULL },
    { "run_id", "{\"run_id\":\"007\"}", 0, NULL, "007", 0, "{}", NULL },
    { "run_dir", "{\"run_dir\":\"a//b/\"}", 0, "a//b/", NULL, 0, "{}",
      NULL },
    { "run_dir empty", "{\"run_dir\":\"\"}", 0, "", NULL, 0, "{}", NULL },
    { "run_id wins over meta",
      "{\"run_id\":\"x\",\"meta\":{\"run_id\":\"y\"}}", 0, NULL, "x", 0,
      "{\"run_id\":\"y\"}", NULL },
    { "run_id wins over a bad meta.run_id",
      "{\"run_id\":\"x\",\"meta\":{\"run_id\":true}}", 0, NULL, "x", 0,
      "{\"run_id\":true}", NULL },
    { "empty run_id falls back to meta",
      "{\"run_id\":\"\",\"meta\":{\"run_id\":\"abc\",\"k\":1}}", 0, NULL,
      "abc", 1, "{\"run_id\":\"abc\",\"k\":1}", NULL },
    { "null run_id falls back to meta",
      "{\"run_id\":null,\"meta\":{\"run_id\":\"abc\"}}", 0, NULL, "abc", 1,
      "{\"run_id\":\"abc\"}", NULL },
    { "empty run_id, no meta.run_id", "{\"run_id\":\"\"}", 0, NULL, NULL, 0,
      "{}", NULL },
    { "integer meta.run_id", "{\"meta\":{\"run_id\":4242}}", 0, NULL, "4242",
      1, "{\"run_id\":4242}", NULL },
    { "negative meta.run_id", "{\"meta\":{\"run_id\":-7}}", 0, NULL, "-7", 1,
      "{\"run_id\":-7}", NULL },
    { "int64 meta.run_id", "{\"meta\":{\"run_id\":9223372036854775807}}", 0,
      NULL, "9223372036854775807", 1,
      "{\"run_id\":9223372036854775807}", NULL },
    /* Falsy meta.run_id: derive. */
    { "meta.run_id \"\"", "{\"meta\":{\"run_id\":\"\"}}", 0, NULL, NULL, 0,
      "{\"run_id\":\"\"}", NULL },
    { "meta.run_id 0", "{\"meta\":{\"run_id\":0}}", 0, NULL, NULL, 0,
      "{\"run_id\":0}", NULL },
    { "meta.run_id false", "{\"meta\":{\"run_id\":false}}", 0, NULL, NULL, 0,
      "{\"run_id\":false}", NULL },
    { "meta.run_id null", "{\"meta\":{\"run_id\":null}}", 0, NULL, NULL, 0,
      "{\"run_id\":null}", NULL },
    { "meta.run_id 0.0", "{\"meta\":{\"run_id\":0.0}}", 0, NULL, NULL, 0,
      "{\"run_id\":0.0}", NULL },
    { "meta.run_id []", "{\"meta\":{\"run_id\":[]}}", 0, NULL, NULL, 0,
      "{\"run_id\":[]}", NULL },
    { "meta.run_id {}", "{\"meta\":{\"run_id\":{}}}", 0, NULL, NULL, 0,
      "{\"run_id\":{}}", NULL },
    /* Truthy non-string, non-integer meta.run_id: value_error (F15). */
    { "meta.run_id true", "{\"meta\":{\"run_id\":true}}", -1, NULL, NULL, 0,
      NULL, "true" },
    { "meta.run_id 1.5", "{\"meta\":{\"run_id\":1.5}}", -1, NULL, NULL, 0,
      NULL, "1.5" },
    { "meta.run_id object", "{\"meta\":{\"run_id\":{\"a\":1}}}", -1, NULL,
      NULL, 0, NULL, "{\"a\":1}" },
    { "meta.run_id list", "{\"meta\":{\"run_id\":[1]}}", -1, NULL, NULL, 0,
      NULL, "[1]" },
};

/* Field type errors: exact details. */
static const struct {
    const char *name;
    const char *body;
    const char *detail;
} run_req_errors[] = {
    { "run_id number", "{\"run_id\":5}",
      "[" STRING_TYPE("[\"body\",\"run_id\"]", "5") "]" },
    { "run_id bool", "{\"run_id\":false}",
      "[" STRING_TYPE("[\"body\",\"run_id\"]", "false") "]" },
    { "run_id list", "{\"run_id\":[\"001\"]}",
      "[" STRING_TYPE("[\"body\",\"run_id\"]", "[\"001\"]") "]" },
    { "meta null", "{\"meta\":null}", "[" DICT_TYPE("null") "]" },
    { "meta list", "{\"meta\":[]}", "[" DICT_TYPE("[]") "]" },
    { "run_dir number", "{\"run_dir\":5}",
      "[" STRING_TYPE("[\"body\",\"run_dir\"]", "5") "]" },
    { "run_dir object", "{\"run_dir\":{}}",
      "[" STRING_TYPE("[\"body\",\"run_dir\"]", "{}") "]" },
    { "all three, declaration order",
      "{\"meta\":\"m\",\"run_id\":1.5,\"run_dir\":true}",
      "[" STRING_TYPE("[\"body\",\"run_dir\"]", "true") ","
          STRING_TYPE("[\"body\",\"run_id\"]", "1.5") ","
          DICT_TYPE("\"m\"") "]" },
    /* A field error wins over meta.run_id resolution. */
    { "run_dir error with a meta.run_id",
      "{\"run_dir\":1,\"meta\":{\"run_id\":\"x\"}}",
      "[" STRING_TYPE("[\"body\",\"run_dir\"]", "1") "]" },
};

static void test_run_req_validate_table(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(run_req_cases) / sizeof(run_req_cases[0]); i++) {
        const run_req_case_t *c = &run_req_cases[i];
        ptm_run_req_t rr;
        ptm_err_t err = { 0 };
        int rv;

        rv = ptm_run_req_validate(&rr, c->body ? J(c->body) : NULL, &err,
                                  gpool);
        if (rv != c->want_rv) {
            fail_msg("%s: rv %d, want %d (detail %s)", c->name, rv,
                     c->want_rv, dump(err.detail));
        }
        if (rv == 0) {
            assert_int_equal(err.status, 0);
            if (c->run_dir) {
                if (!rr.run_dir) {
                    fail_msg("%s: run_dir NULL, want \"%s\"", c->name,
                             c->run_dir);
                }
                check_mem(c->name, rr.run_dir, rr.run_dir_len, c->run_dir);
            }
            else if (rr.run_dir) {
                fail_msg("%s: run_dir \"%s\", want NULL", c->name,
                         rr.run_dir);
            }
            if (c->run_id) {
                if (!rr.run_id) {
                    fail_msg("%s: run_id NULL, want \"%s\"", c->name,
                             c->run_id);
                }
                check_mem(c->name, rr.run_id, rr.run_id_len, c->run_id);
                assert_int_equal(rr.run_id[rr.run_id_len], '\0');
                if (rr.run_id_from_meta != c->from_meta) {
                    fail_msg("%s: run_id_from_meta %d, want %d", c->name,
                             rr.run_id_from_meta, c->from_meta);
                }
            }
            else if (rr.run_id) {
                fail_msg("%s: run_id \"%.*s\", want NULL (derive)", c->name,
                         (int)rr.run_id_len, rr.run_id);
            }
            assert_non_null(rr.meta);
            check_mem(c->name, dump(rr.meta), strlen(dump(rr.meta)),
                      c->meta);
        }
        else {
            /* value_error at meta.run_id; the message is ours. */
            json_t *item;

            assert_int_equal(err.status, 422);
            assert_true(json_is_array(err.detail));
            assert_int_equal(json_array_size(err.detail), 1);
            item = json_array_get(err.detail, 0);
            assert_string_equal(json_string_value(json_object_get(item,
                                                                  "type")),
                                "value_error");
            assert_string_equal(dump(json_object_get(item, "loc")),
                                LOC_META_RUN_ID);
            assert_string_equal(dump(json_object_get(item, "input")),
                                c->detail);
            assert_true(json_is_string(json_object_get(item, "msg")));
            assert_true(strncmp(json_string_value(json_object_get(item,
                                                                  "msg")),
                                "Value error, ", 13) == 0);
        }
        ptm_run_req_free(&rr);
        ptm_err_clear(&err);
    }

    for (i = 0; i < sizeof(run_req_errors) / sizeof(run_req_errors[0]);
         i++) {
        ptm_run_req_t rr;
        ptm_err_t err = { 0 };

        if (ptm_run_req_validate(&rr, J(run_req_errors[i].body), &err, gpool)
            != -1) {
            fail_msg("%s: want -1", run_req_errors[i].name);
        }
        check_detail(run_req_errors[i].name, &err, 422,
                     run_req_errors[i].detail);
        ptm_run_req_free(&rr);
        ptm_err_clear(&err);
    }
}

/* The resolved id must outlive a rewrite of meta.run_id (step 7 stamps the
 * resolved id into meta). */
static void test_run_req_id_survives_meta_rewrite(void **state)
{
    ptm_run_req_t rr;
    ptm_err_t err = { 0 };

    assert_int_equal(ptm_run_req_validate(&rr,
                                          J("{\"run_id\":\"\",\"meta\":"
                                            "{\"a\":0,\"run_id\":\"abc\"}}"),
                                          &err, gpool), 0);
    json_object_set_new(rr.meta, "run_id", json_string("zzzzzzzzzzzzzzzz"));
    json_object_del(rr.body, "meta");
    check_mem("after rewrite", rr.run_id, rr.run_id_len, "abc");
    check_mem("meta keeps position", dump(rr.meta), strlen(dump(rr.meta)),
              "{\"a\":0,\"run_id\":\"zzzzzzzzzzzzzzzz\"}");
    ptm_run_req_free(&rr);

    assert_int_equal(ptm_run_req_validate(&rr, J("{\"run_id\":\"r1\"}"),
                                          &err, gpool), 0);
    json_object_clear(rr.body);
    check_mem("run_id field", rr.run_id, rr.run_id_len, "r1");
    ptm_run_req_free(&rr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_is_json_type),
        cmocka_unit_test(test_body_parse_table),
        cmocka_unit_test(test_body_parse_too_deep),
        cmocka_unit_test(test_event_validate_table),
        cmocka_unit_test(test_event_validate_fields),
        cmocka_unit_test(test_lax_bool_make_current),
        cmocka_unit_test(test_lax_bool_store_permanently),
        cmocka_unit_test(test_lax_bool_direct),
        cmocka_unit_test(test_event_envelope_table),
        cmocka_unit_test(test_event_envelope_run_id_len),
        cmocka_unit_test(test_run_req_validate_table),
        cmocka_unit_test(test_run_req_id_survives_meta_rewrite),
    };

    return cmocka_run_group_tests_name("ptm_event", tests, group_setup,
                                       group_teardown);
}

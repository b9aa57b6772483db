/* Request models and the event envelope; see ptm_event.h.  Messages and
 * item shapes are pydantic 2.13's, because clients and acceptance compare
 * them (SPEC §2.6). */
#include <string.h>
#include <strings.h>
#include <apr_strings.h>
#include "ptm_event.h"
#include "ptm_json.h"

#define MSG_MISSING   "Field required"
#define MSG_STRING    "Input should be a valid string"
#define MSG_DICT      "Input should be a valid dictionary"
#define MSG_MODEL     "Input should be a valid dictionary or object to " \
                      "extract fields from"
#define MSG_BOOL_TYPE "Input should be a valid boolean"
#define MSG_BOOL_PARSE "Input should be a valid boolean, unable to " \
                       "interpret input"

static json_t *loc_body(const char *field)
{
    json_t *loc = json_array();

    json_array_append_new(loc, json_string("body"));
    if (field) {
        json_array_append_new(loc, json_string(field));
    }
    return loc;
}

static json_t *copy_or_null(const json_t *v)
{
    return v ? json_deep_copy(v) : json_null();
}

int ptm_body_is_json_type(const char *ct)
{
    size_t n;
    const char *semi;

    if (!ct) {
        return 0;
    }
    while (*ct == ' ' || *ct == '\t') {
        ct++;
    }
    semi = strchr(ct, ';');
    n = semi ? (size_t)(semi - ct) : strlen(ct);
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t')) {
        n--;
    }
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0) {
        return 1;
    }
    /* application/<anything>+json */
    return n >= 17 && strncasecmp(ct, "application/", 12) == 0
           && strncasecmp(ct + n - 5, "+json", 5) == 0
           && memchr(ct + 12, '/', n - 12) == NULL;
}

int ptm_body_parse(json_t **out, ptm_err_t *err, const char *content_type,
                   const char *buf, size_t len)
{
    ptm_json_error_t jerr;
    json_t *v, *loc, *ctx;

    *out = NULL;
    if (len == 0) {
        return 0;                       /* no body */
    }
    if (!ptm_body_is_json_type(content_type)) {
        /* FastAPI validates the raw bytes against the model (rule 3). */
        ptm_err_add_item(err, "model_attributes_type", loc_body(NULL),
                         MSG_MODEL, ptm_json_string_lossy(buf, len), NULL);
        return -1;
    }
    v = ptm_json_parse(buf, len, &jerr);
    if (!v) {
        if (jerr.kind == PTM_JSON_TOO_DEEP) {
            ptm_err_set(err, 400, "There was an error parsing the body");
            err->log = "JSON nesting too deep";
            return -1;
        }
        loc = loc_body(NULL);
        json_array_append_new(loc, json_integer((json_int_t)jerr.pos));
        ctx = json_object();
        json_object_set_new(ctx, "error", json_string(jerr.msg));
        ptm_err_add_item(err, "json_invalid", loc, "JSON decode error",
                         json_object(), ctx);
        return -1;
    }
    if (json_is_null(v)) {
        json_decref(v);
        return 0;                       /* null is "no body" too */
    }
    if (!json_is_object(v)) {
        ptm_err_add_item(err, "model_attributes_type", loc_body(NULL),
                         MSG_MODEL, v, NULL);
        return -1;
    }
    *out = v;
    return 0;
}

int ptm_event_lax_bool(const json_t *v, const char *field, ptm_err_t *err)
{
    static const char *const yes[] = { "1", "on", "t", "true", "y", "yes" };
    static const char *const no[] = { "0", "off", "f", "false", "n", "no" };
    size_t i;

    switch (json_typeof(v)) {
    case JSON_TRUE:
        return 1;
    case JSON_FALSE:
        return 0;
    case JSON_INTEGER:
        if (json_integer_value(v) == 0 || json_integer_value(v) == 1) {
            return (int)json_integer_value(v);
        }
        break;
    case JSON_REAL:
        if (json_real_value(v) == 0.0 || json_real_value(v) == 1.0) {
            return json_real_value(v) == 1.0;
        }
        ptm_err_add_item(err, "bool_type", loc_body(field), MSG_BOOL_TYPE,
                         json_deep_copy(v), NULL);
        return -1;
    case JSON_STRING:
        for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
            if (json_string_length(v) == strlen(yes[i])
                && strcasecmp(json_string_value(v), yes[i]) == 0) {
                return 1;
            }
            if (json_string_length(v) == strlen(no[i])
                && strcasecmp(json_string_value(v), no[i]) == 0) {
                return 0;
            }
        }
        break;
    default:
        ptm_err_add_item(err, "bool_type", loc_body(field), MSG_BOOL_TYPE,
                         copy_or_null(v), NULL);
        return -1;
    }
    ptm_err_add_item(err, "bool_parsing", loc_body(field), MSG_BOOL_PARSE,
                     json_deep_copy(v), NULL);
    return -1;
}

/* Optional string-or-null field: 1 when a string is present, 0 for
 * absent/null, -1 after a string_type item. */
static int opt_string(const json_t *body, const char *field,
                      const char **s, size_t *len, ptm_err_t *err)
{
    json_t *v = json_object_get(body, field);

    *s = NULL;
    *len = 0;
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (!json_is_string(v)) {
        ptm_err_add_item(err, "string_type", loc_body(field), MSG_STRING,
                         json_deep_copy(v), NULL);
        return -1;
    }
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 1;
}

/* meta: an object, default {} (null is an error, unlike the strings). */
static int meta_field(const json_t *body, json_t **meta, ptm_err_t *err)
{
    json_t *v = json_object_get(body, "meta");

    *meta = NULL;
    if (!v) {
        *meta = json_object();
        return 0;
    }
    if (!json_is_object(v)) {
        ptm_err_add_item(err, "dict_type", loc_body("meta"), MSG_DICT,
                         json_deep_copy(v), NULL);
        return -1;
    }
    /* Our reference: callers stamp run_id into it (a run start) or into
     * a copy (an event during a run). */
    *meta = json_incref(v);
    return 0;
}

int ptm_event_validate(ptm_event_req_t *ev, json_t *body, ptm_err_t *err)
{
    json_t *v;
    int b;

    memset(ev, 0, sizeof(*ev));
    ev->body = body;
    ev->make_current = ev->store_permanently = 1;
    if (!body) {
        ptm_err_add_item(err, "missing", loc_body(NULL), MSG_MISSING, NULL,
                         NULL);
        return -1;
    }
    /* Fields in declaration order; every failing one is reported. */
    v = json_object_get(body, "type");
    if (!v) {
        ptm_err_add_item(err, "missing", loc_body("type"), MSG_MISSING,
                         json_deep_copy(body), NULL);
    }
    else if (!json_is_string(v)) {
        ptm_err_add_item(err, "string_type", loc_body("type"), MSG_STRING,
                         json_deep_copy(v), NULL);
    }
    else {
        ev->type = json_string_value(v);
        ev->type_len = json_string_length(v);
    }
    ev->data = json_object_get(body, "data");
    if (!ev->data) {
        ptm_err_add_item(err, "missing", loc_body("data"), MSG_MISSING,
                         json_deep_copy(body), NULL);
    }
    if ((v = json_object_get(body, "make_current")) != NULL
        && (b = ptm_event_lax_bool(v, "make_current", err)) >= 0) {
        ev->make_current = b;
    }
    if ((v = json_object_get(body, "store_permanently")) != NULL
        && (b = ptm_event_lax_bool(v, "store_permanently", err)) >= 0) {
        ev->store_permanently = b;
    }
    meta_field(body, &ev->meta, err);
    opt_string(body, "ts", &ev->ts, &ev->ts_len, err);
    return err->status ? -1 : 0;
}

void ptm_event_req_free(ptm_event_req_t *ev)
{
    json_decref(ev->meta);
    json_decref(ev->body);
    memset(ev, 0, sizeof(*ev));
}

int ptm_event_envelope(ptm_envelope_t *env, ptm_err_t *err,
                       ptm_event_req_t *ev, const char *server_ts,
                       const char *run_id, size_t run_id_len, apr_pool_t *p)
{
    ptm_buf_t b;
    size_t key_at;

    if (run_id) {
        /* Overrides a client value in place, or is appended last. */
        json_object_set_new(ev->meta, "run_id",
                            json_stringn(run_id, run_id_len));
    }
    /* The ts, the keys, a run_id put into meta: the rest is about the
     * body as sent (written again in the same form, numbers and escapes
     * alike, mostly). */
    ptm_buf_init(&b, p, ev->size_hint + run_id_len + 128 > 256
                        ? ev->size_hint + run_id_len + 128 : 256);
    b.len = PTM_ENVELOPE_HEAD;          /* ptm_envelope_public's room */
    ptm_buf_puts(&b, ",\"ts\":");
    if (ev->ts) {
        ptm_json_dump_string(&b, ev->ts, ev->ts_len);
    }
    else {
        ptm_json_dump_string(&b, server_ts, strlen(server_ts));
    }
    env->ts_len = b.len - PTM_ENVELOPE_HEAD;
    ptm_buf_puts(&b, ",\"type\":");
    key_at = b.len;
    ptm_json_dump_string(&b, ev->type, ev->type_len);
    env->key_len = b.len - key_at;
    ptm_buf_puts(&b, ",\"data\":");
    if (ptm_json_dump(&b, ev->data) != 0) {
        goto unprintable;
    }
    ptm_buf_puts(&b, ",\"meta\":");
    if (ptm_json_dump(&b, ev->meta) != 0) {
        goto unprintable;
    }
    ptm_buf_putc(&b, '}');
    /* Pieces point into one block: the buffer may have moved while growing. */
    env->head = b.data;
    env->ts_part = b.data + PTM_ENVELOPE_HEAD;
    env->key = b.data + key_at;
    env->body_part = env->ts_part + env->ts_len;
    env->body_len = b.len - PTM_ENVELOPE_HEAD - env->ts_len;
    return 0;

unprintable:
    /* The parser refuses what could not be printed; be safe anyway. */
    ptm_err_set(err, 500, "Event could not be serialised");
    return -1;
}

const char *ptm_envelope_public(const ptm_envelope_t *env, uint64_t seq,
                                size_t *len)
{
    char digits[20];
    size_t n = ptm_fmt_u64(digits, seq);
    char *at = env->head + PTM_ENVELOPE_HEAD - 7 - n;

    memcpy(at, "{\"seq\":", 7);
    memcpy(at + 7, digits, n);
    *len = 7 + n + env->ts_len + env->body_len;
    return at;
}

/* ---- RunStartRequest ---------------------------------------------------- */

int ptm_run_req_validate(ptm_run_req_t *rr, json_t *body, ptm_err_t *err,
                         apr_pool_t *p)
{
    json_t *mid, *loc;
    int rv;

    memset(rr, 0, sizeof(*rr));
    rr->body = body;
    if (!body) {
        rr->meta = json_object();
        return 0;
    }
    opt_string(body, "run_dir", &rr->run_dir, &rr->run_dir_len, err);
    rv = opt_string(body, "run_id", &rr->run_id, &rr->run_id_len, err);
    meta_field(body, &rr->meta, err);
    if (err->status) {
        return -1;
    }
    if (rv == 1 && rr->run_id_len > 0) {
        /* A non-empty run_id wins.  Copied: meta.run_id gets replaced. */
        rr->run_id = apr_pstrmemdup(p, rr->run_id, rr->run_id_len);
        return 0;
    }
    rr->run_id = NULL;
    rr->run_id_len = 0;
    mid = json_object_get(rr->meta, "run_id");
    if (!mid || !ptm_json_truthy(mid)) {
        return 0;                       /* falsy: derive the next id */
    }
    rr->run_id_from_meta = 1;
    if (json_is_string(mid)) {
        rr->run_id_len = json_string_length(mid);
        rr->run_id = apr_pstrmemdup(p, json_string_value(mid),
                                    rr->run_id_len);
        return 0;
    }
    if (json_is_integer(mid)) {
        rr->run_id = apr_psprintf(p, "%" APR_INT64_T_FMT,
                                  (apr_int64_t)json_integer_value(mid));
        rr->run_id_len = strlen(rr->run_id);
        return 0;
    }
    /* Upstream would store Python's str() of it (SPEC F15). */
    loc = loc_body("meta");
    json_array_append_new(loc, json_string("run_id"));
    ptm_err_add_item(err, "value_error", loc,
                     "Value error, meta.run_id must be a string or an integer",
                     json_deep_copy(mid), NULL);
    return -1;
}

void ptm_run_req_free(ptm_run_req_t *rr)
{
    json_decref(rr->meta);
    json_decref(rr->body);
    memset(rr, 0, sizeof(*rr));
}

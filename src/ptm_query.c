/* The parameters of GET /events (SPEC §12.2); see ptm_query.h.
 *
 * The query string is read the way the upstream stack reads one
 * (Starlette: parse_qsl with keep_blank_values), so a URL a client builds
 * for the Python server means the same here.  Each parameter is then
 * checked the way FastAPI and pydantic 2 (lax mode) check a query
 * parameter, and every bad one becomes one 422 item, in declaration order.
 *
 * The cursor carries what the next page needs and nothing the client
 * could usefully change: the hash of the parameters it was made for, the
 * window the first page resolved (so that since=1h keeps meaning the same
 * hour on every page) and the key of the last event sent, sealed with a
 * check keyed by the store's epoch. */
#include <string.h>
#include <apr_strings.h>
#include "ptm_buf.h"
#include "ptm_hash.h"
#include "ptm_json.h"
#include "ptm_query.h"
#include "ptm_time.h"

int ptm_key_cmp(const ptm_key_t *a, const ptm_key_t *b)
{
    /* Compared, never subtracted: ts and seq span the whole 64 bits. */
    if (a->ts != b->ts) {
        return a->ts < b->ts ? -1 : 1;
    }
    if (a->stream != b->stream) {
        return a->stream < b->stream ? -1 : 1;
    }
    if (a->seq != b->seq) {
        return a->seq < b->seq ? -1 : 1;
    }
    if (a->tie != b->tie) {
        return a->tie < b->tie ? -1 : 1;
    }
    return 0;
}

uint32_t ptm_query_tie(const char *run_dir, size_t len)
{
    uint32_t h = ptm_fnv32(PTM_FNV32_START, run_dir, len);

    /* 0 is the site's tie: a run must never sort as one. */
    return h ? h : 1;
}

/* ---- the query string ---------------------------------------------------- */

/* In declaration order, which is the order of the 422 items. */
enum {
    P_TYPE, P_SINCE, P_UNTIL, P_STREAM, P_RUN_ID, P_ORDER, P_LIMIT,
    P_EVERY, P_CURSOR, P_FORMAT, P_COUNT
};

static const char *const param_names[P_COUNT] = {
    "type", "since", "until", "stream", "run_id", "order", "limit",
    "every", "cursor", "format"
};

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

char *ptm_query_unescape(size_t *len, const char *s, size_t n, int plus,
                         apr_pool_t *p)
{
    char *d = apr_palloc(p, n + 1);
    size_t i, o = 0;
    int hi, lo;

    for (i = 0; i < n; i++) {
        if (plus && s[i] == '+') {
            d[o++] = ' ';
        }
        else if (s[i] == '%' && i + 2 < n
                 && (hi = hex_value(s[i + 1])) >= 0
                 && (lo = hex_value(s[i + 2])) >= 0) {
            d[o++] = (char)(hi << 4 | lo);
            i += 2;
        }
        else {
            d[o++] = s[i];
        }
    }
    d[o] = '\0';
    *len = o;
    return d;
}

/* A query string's name or value, as Python's unquote_plus reads it.
 * Bytes that were sent raw stay raw (Starlette would read them as
 * Latin-1: a UTF-8 name sent unescaped means itself here, which is what
 * the client meant). */
static ptm_query_str_t url_decode(const char *s, size_t n, apr_pool_t *p)
{
    ptm_query_str_t v;

    v.s = ptm_query_unescape(&v.len, s, n, 1, p);
    return v;
}

/* Split on '&' into the values of each known parameter, in the order
 * given.  Empty items are skipped, an item without '=' is a name with an
 * empty value, and unknown names are ignored (as FastAPI does). */
static void split_args(apr_array_header_t **vals, const char *args,
                       apr_pool_t *p)
{
    const char *s = args, *end, *eq;
    ptm_query_str_t name;
    size_t n;
    int i;

    for (i = 0; i < P_COUNT; i++) {
        vals[i] = apr_array_make(p, 1, sizeof(ptm_query_str_t));
    }
    while (s && *s) {
        end = strchr(s, '&');
        n = end ? (size_t)(end - s) : strlen(s);
        if (n > 0) {
            eq = memchr(s, '=', n);
            name = url_decode(s, eq ? (size_t)(eq - s) : n, p);
            for (i = 0; i < P_COUNT; i++) {
                if (name.len == strlen(param_names[i])
                    && memcmp(name.s, param_names[i], name.len) == 0) {
                    *(ptm_query_str_t *)apr_array_push(vals[i]) =
                        eq ? url_decode(eq + 1, (size_t)(s + n - eq - 1), p)
                           : url_decode("", 0, p);
                    break;
                }
            }
        }
        s = end ? end + 1 : NULL;
    }
}

/* ---- 422 items ----------------------------------------------------------- */

/* At most one item per parameter, held until every parameter has been
 * looked at: whether `until` is wrong depends on the cursor, which comes
 * after it. */
typedef struct {
    const char *type;       /* NULL: no problem with this parameter */
    const char *msg;
    json_t *input;
    json_t *ctx;
} item_t;

static json_t *input_of(const ptm_query_str_t *v)
{
    /* The 422 body must stay JSON even for bytes that are not UTF-8. */
    return ptm_json_string_lossy(v->s, v->len);
}

static void value_error(item_t *it, const char *why, json_t *input,
                        apr_pool_t *p)
{
    it->type = "value_error";
    it->msg = apr_pstrcat(p, "Value error, ", why, NULL);
    it->input = input;
    it->ctx = json_object();
    json_object_set_new(it->ctx, "error", json_string(why));
}

static void literal_error(item_t *it, const char *expected,
                          const ptm_query_str_t *v, apr_pool_t *p)
{
    it->type = "literal_error";
    it->msg = apr_pstrcat(p, "Input should be ", expected, NULL);
    it->input = input_of(v);
    it->ctx = json_object();
    json_object_set_new(it->ctx, "expected", json_string(expected));
}

/* pydantic's answer to a str that is not valid unicode. */
static void unicode_error(item_t *it, const ptm_query_str_t *v)
{
    it->type = "string_unicode";
    it->msg = "Input should be a valid string, unable to parse raw data as "
              "a unicode string";
    it->input = input_of(v);
    it->ctx = NULL;
}

/* The one value of a parameter that is not `type`: 0 when absent, 1 with
 * `*v`, or -1 with the item set (given twice, or not UTF-8). */
static int one_value(const ptm_query_str_t **v, item_t *it,
                     const apr_array_header_t *vals, apr_pool_t *p)
{
    const ptm_query_str_t *a = (const ptm_query_str_t *)vals->elts;
    json_t *list;
    int i;

    if (vals->nelts == 0) {
        return 0;
    }
    if (vals->nelts > 1) {
        /* FastAPI would quietly take the last one; a client that sends
         * two windows or two cursors has a bug it should hear about. */
        list = json_array();
        for (i = 0; i < vals->nelts; i++) {
            json_array_append_new(list, input_of(&a[i]));
        }
        value_error(it, "given more than once", list, p);
        return -1;
    }
    if (!ptm_utf8_valid(a[0].s, a[0].len)) {
        unicode_error(it, &a[0]);
        return -1;
    }
    *v = &a[0];
    return 1;
}

static int is_word(const ptm_query_str_t *v, const char *w)
{
    return v->len == strlen(w) && memcmp(v->s, w, v->len) == 0;
}

/* since/until: an RFC 3339 time with its offset, or a duration back from
 * `now`. */
static int parse_when(apr_time_t *out, const ptm_query_str_t *v,
                      apr_time_t now)
{
    apr_interval_time_t d;

    if (ptm_time_parse_rfc3339(out, v->s, v->len, 0) == 0) {
        return 0;
    }
    if (ptm_time_parse_duration(&d, v->s, v->len) == 0) {
        *out = now - d;
        return 0;
    }
    return -1;
}

/* The length of the whitespace character that starts `s` (`n` bytes of
 * valid UTF-8), or 0.  Whitespace is what pydantic trims (Rust's
 * char::is_whitespace, Unicode's White_Space): ASCII \t to \r and space,
 * U+0085, U+00A0, U+1680, U+2000 to U+200A, U+2028, U+2029, U+202F,
 * U+205F and U+3000. */
static size_t space_at(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;

    if (n >= 1 && (u[0] == ' ' || (u[0] >= '\t' && u[0] <= '\r'))) {
        return 1;
    }
    if (n >= 2 && u[0] == 0xc2 && (u[1] == 0x85 || u[1] == 0xa0)) {
        return 2;
    }
    if (n >= 3
        && ((u[0] == 0xe1 && u[1] == 0x9a && u[2] == 0x80)
            || (u[0] == 0xe2 && u[1] == 0x80
                && (u[2] <= 0x8a || u[2] == 0xa8 || u[2] == 0xa9
                    || u[2] == 0xaf))
            || (u[0] == 0xe2 && u[1] == 0x81 && u[2] == 0x9f)
            || (u[0] == 0xe3 && u[1] == 0x80 && u[2] == 0x80))) {
        return 3;
    }
    return 0;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* pydantic 2's int from a str, lax mode, as pydantic-core 2.46 answers
 * (checked against it): the text trimmed of whitespace, an optional sign,
 * digits with single underscores between them ("1_000"), and optionally
 * a '.' followed by one or more zeros only ("5.0" is 5; "5." and "5.5" are
 * not ints).  Not copied: pydantic's answers for numbers of more than 4300
 * digits (int_parsing or int_parsing_size, by rules of its own); here they
 * are just out of range.  Returns 0 with `*out` (saturated far beyond any
 * limit), or -1. */
static int lax_int(apr_int64_t *out, const char *s, size_t n)
{
    apr_int64_t v = 0;
    size_t i = 0, k, start;
    int neg = 0;

    /* A lead byte is never a continuation byte: a match at the end of
     * valid UTF-8 is a whole character. */
    for (;;) {
        for (k = 1; k <= 3 && k <= n && space_at(s + n - k, k) != k; k++) {
        }
        if (k > 3 || k > n) {
            break;
        }
        n -= k;
    }
    while ((k = space_at(s + i, n - i)) > 0) {
        i += k;
    }
    if (i < n && (s[i] == '+' || s[i] == '-')) {
        neg = s[i++] == '-';
    }
    for (start = i; i < n; i++) {
        if (s[i] == '_' && i > start && is_digit(s[i - 1]) && i + 1 < n
            && is_digit(s[i + 1])) {
            continue;
        }
        if (!is_digit(s[i])) {
            break;
        }
        if (v < APR_INT64_C(1000000000000)) {
            v = v * 10 + (s[i] - '0');
        }
    }
    if (i == start) {
        return -1;
    }
    if (i < n && s[i] == '.') {
        if (++i == n) {
            return -1;
        }
        while (i < n && s[i] == '0') {
            i++;
        }
    }
    if (i != n) {
        return -1;
    }
    *out = neg ? -v : v;
    return 0;
}

static void parse_limit(ptm_query_t *q, item_t *it,
                        const ptm_query_str_t *v)
{
    apr_int64_t n;
    json_t *ctx;

    if (lax_int(&n, v->s, v->len) != 0) {
        it->type = "int_parsing";
        it->msg = "Input should be a valid integer, unable to parse string "
                  "as an integer";
        it->input = input_of(v);
        return;
    }
    if (n < 1) {
        ctx = json_object();
        json_object_set_new(ctx, "ge", json_integer(1));
        it->type = "greater_than_equal";
        it->msg = "Input should be greater than or equal to 1";
        it->input = input_of(v);
        it->ctx = ctx;
        return;
    }
    if (n > PTM_QUERY_LIMIT_MAX) {
        ctx = json_object();
        json_object_set_new(ctx, "le", json_integer(PTM_QUERY_LIMIT_MAX));
        it->type = "less_than_equal";
        it->msg = "Input should be less than or equal to 10000";
        it->input = input_of(v);
        it->ctx = ctx;
        return;
    }
    q->limit = (int)n;
    q->limit_given = 1;
}

/* Every type= value as the JSON string the files hold, so the engine
 * compares bytes.  One item for the parameter however many values are
 * bad: the first. */
static void parse_types(ptm_query_t *q, item_t *it,
                        const apr_array_header_t *vals, apr_pool_t *p)
{
    const ptm_query_str_t *a = (const ptm_query_str_t *)vals->elts;
    ptm_query_str_t *t;
    ptm_buf_t b;
    int i;

    if (vals->nelts > PTM_QUERY_TYPES_MAX) {
        /* Every value is compared with every event held in the ring under
         * the store lock: without a bound, one GET could stall the POSTs
         * for as long as it likes. */
        value_error(it, apr_psprintf(p, "at most %d type values",
                                     PTM_QUERY_TYPES_MAX),
                    json_integer(vals->nelts), p);
        return;
    }
    for (i = 0; i < vals->nelts; i++) {
        if (!ptm_utf8_valid(a[i].s, a[i].len)) {
            unicode_error(it, &a[i]);
            return;
        }
        ptm_buf_init(&b, p, a[i].len + 3);
        ptm_json_dump_string(&b, a[i].s, a[i].len);
        t = apr_array_push(q->types);
        t->len = b.len;
        ptm_buf_putc(&b, '\0');
        t->s = b.data;
    }
}

/* ---- hashing ------------------------------------------------------------- */

static void put_le(unsigned char *b, uint64_t v, int width)
{
    int i;

    for (i = 0; i < width; i++) {
        b[i] = (unsigned char)(v >> (8 * i));
    }
}

static uint64_t get_le(const unsigned char *b, int width)
{
    uint64_t v = 0;
    int i;

    for (i = width - 1; i >= 0; i--) {
        v = v << 8 | b[i];
    }
    return v;
}

/* MurmurHash3's 64-bit finaliser (public domain): a bijection on 64-bit
 * words in which every input bit reaches every output bit. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= APR_UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= APR_UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return x;
}

/* The parameters hash: FNV-1a 64 over the fields, each framed (a tag,
 * then for strings the length) so that no two different sets of
 * parameters give the same byte stream; mix64 at the end spreads FNV's
 * weak high bits. */
static void fnv64(uint64_t *h, const void *s, size_t n)
{
    *h = ptm_fnv64(*h, s, n);
}

static void fnv64_u64(uint64_t *h, uint64_t v)
{
    unsigned char b[8];

    put_le(b, v, 8);
    fnv64(h, b, 8);
}

enum { TAG_ABSENT = 0, TAG_GIVEN = 1 };

static void fnv64_opt(uint64_t *h, const ptm_query_str_t *v)
{
    if (!v) {
        fnv64_u64(h, TAG_ABSENT);
        return;
    }
    fnv64_u64(h, TAG_GIVEN);
    fnv64_u64(h, v->len);
    fnv64(h, v->s, v->len);
}

/* What a cursor belongs to: the filters and the window as the client
 * wrote them (since=1h resolves to another instant on the next page; the
 * text does not), and the direction the events went in.  Not limit
 * (pages may be of any size) and not format, except through the
 * direction: NDJSON always goes oldest first, so its cursor continues an
 * order=asc JSON query and no order=desc one. */
static uint64_t params_hash(const apr_array_header_t *types,
                            const ptm_query_str_t *since,
                            const ptm_query_str_t *until,
                            const ptm_query_t *q)
{
    const ptm_query_str_t *t = (const ptm_query_str_t *)types->elts;
    uint64_t h = PTM_FNV64_START;
    ptm_query_str_t run_id;
    int i;

    fnv64_u64(&h, (uint64_t)types->nelts);
    for (i = 0; i < types->nelts; i++) {
        fnv64_opt(&h, &t[i]);
    }
    fnv64_opt(&h, since);
    fnv64_opt(&h, until);
    fnv64_u64(&h, (uint64_t)(apr_int64_t)q->stream);
    run_id.s = q->run_id;
    run_id.len = q->run_id_len;
    fnv64_opt(&h, q->run_id ? &run_id : NULL);
    fnv64_u64(&h, (uint64_t)(q->desc && !q->ndjson));
    fnv64_u64(&h, (uint64_t)q->every);
    return mix64(h);
}

/* ---- the cursor ---------------------------------------------------------- */

/* Bytes, little-endian, then base64url without padding (54 bytes, 72
 * characters: no partial group, so every text decodes to one set of bytes
 * and back to the same text). */
enum {
    C_VERSION = 0,      /* 1 */
    C_PARAMS = 1,       /* params_hash */
    C_SINCE = 9,        /* the window of the first page */
    C_UNTIL = 17,
    C_TS = 25,          /* the key of the last event sent */
    C_STREAM = 33,
    C_SEQ = 34,
    C_TIE = 42,
    C_CHECK = 46,       /* cursor_check of the 46 bytes before it */
    C_LEN = 54
};
#define CURSOR_VERSION 1
#define CURSOR_TEXT_LEN (C_LEN / 3 * 4)

/* A check that the cursor is one this state made, unchanged: a chain of
 * mix64 over the 8-byte words, started from the epoch.  Each step is a
 * bijection of the running value, so a change confined to one word (a
 * flipped byte, say) or another epoch always gives another check, not just
 * almost always.  It is not a MAC and not meant as one: the epoch is no
 * secret (it begins every event id), and a client that forges a cursor
 * only gets a page of events it could ask for directly.  It tells a cursor
 * that is damaged, from another server or from before a reset of the
 * state apart from a real one, so the client hears "not ours" instead of
 * a silently wrong page. */
static uint64_t cursor_check(const unsigned char *b, size_t n, uint64_t epoch)
{
    uint64_t h = mix64(epoch ^ APR_UINT64_C(0x9e3779b97f4a7c15));
    size_t i;

    for (i = 0; i < n; i += 8) {
        h = mix64(h ^ get_le(b + i, n - i < 8 ? (int)(n - i) : 8));
    }
    return mix64(h ^ n);
}

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(char c)
{
    const char *at = c ? strchr(b64url, c) : NULL;

    return at ? (int)(at - b64url) : -1;
}

const char *ptm_query_cursor(const ptm_query_t *q, const ptm_key_t *last,
                             uint64_t epoch, apr_pool_t *p)
{
    unsigned char b[C_LEN];
    char *out = apr_palloc(p, CURSOR_TEXT_LEN + 1), *o = out;
    uint32_t w;
    int i;

    b[C_VERSION] = CURSOR_VERSION;
    put_le(b + C_PARAMS, q->params, 8);
    put_le(b + C_SINCE, (uint64_t)q->since, 8);
    put_le(b + C_UNTIL, (uint64_t)q->until, 8);
    put_le(b + C_TS, (uint64_t)last->ts, 8);
    b[C_STREAM] = (unsigned char)last->stream;
    put_le(b + C_SEQ, last->seq, 8);
    put_le(b + C_TIE, last->tie, 4);
    put_le(b + C_CHECK, cursor_check(b, C_CHECK, epoch), 8);
    for (i = 0; i < C_LEN; i += 3) {
        w = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
        *o++ = b64url[w >> 18];
        *o++ = b64url[w >> 12 & 63];
        *o++ = b64url[w >> 6 & 63];
        *o++ = b64url[w & 63];
    }
    *o = '\0';
    return out;
}

typedef struct {
    uint64_t params;
    apr_time_t since, until;
    ptm_key_t key;
} cursor_t;

/* 0 with `*c` for a cursor this state made, -1 for anything else. */
static int cursor_open(cursor_t *c, const ptm_query_str_t *v,
                       uint64_t epoch)
{
    unsigned char b[C_LEN];
    uint32_t w;
    int i, j, x;

    if (v->len != CURSOR_TEXT_LEN) {
        return -1;
    }
    for (i = 0; i < C_LEN / 3; i++) {
        w = 0;
        for (j = 0; j < 4; j++) {
            if ((x = b64url_value(v->s[i * 4 + j])) < 0) {
                return -1;
            }
            w = w << 6 | (uint32_t)x;
        }
        b[i * 3] = (unsigned char)(w >> 16);
        b[i * 3 + 1] = (unsigned char)(w >> 8);
        b[i * 3 + 2] = (unsigned char)w;
    }
    if (b[C_VERSION] != CURSOR_VERSION
        || get_le(b + C_CHECK, 8) != cursor_check(b, C_CHECK, epoch)) {
        return -1;
    }
    c->params = get_le(b + C_PARAMS, 8);
    c->since = (apr_time_t)get_le(b + C_SINCE, 8);
    c->until = (apr_time_t)get_le(b + C_UNTIL, 8);
    c->key.ts = (apr_time_t)get_le(b + C_TS, 8);
    c->key.stream = b[C_STREAM];
    c->key.seq = get_le(b + C_SEQ, 8);
    c->key.tie = (uint32_t)get_le(b + C_TIE, 4);
    /* What we write always holds this; bytes that passed the check by
     * chance (1 in 2^64) must not hand the engine a window or a stream it
     * cannot take. */
    if (c->key.stream > 1 || c->since >= c->until) {
        return -1;
    }
    return 0;
}

/* ---- the whole query ----------------------------------------------------- */

#define WHEN_WHY "not an RFC 3339 time or a duration (90s, 15m, 24h, 7d)"

int ptm_query_parse(ptm_query_t *q, ptm_err_t *err, const char *args,
                    int accept_ndjson, apr_time_t now, uint64_t epoch,
                    apr_pool_t *p)
{
    apr_array_header_t *vals[P_COUNT];
    item_t it[P_COUNT];
    const ptm_query_str_t *v, *since = NULL, *until = NULL, *cur = NULL;
    cursor_t c;
    int i, fmt = -1, others_bad = 0, bad = 0;

    memset(q, 0, sizeof(*q));
    memset(it, 0, sizeof(it));
    q->types = apr_array_make(p, 1, sizeof(ptm_query_str_t));
    q->since = now - APR_INT64_C(3600) * APR_USEC_PER_SEC;
    q->until = APR_INT64_MAX;
    q->stream = PTM_Q_ALL;
    q->desc = 1;
    split_args(vals, args, p);

    parse_types(q, &it[P_TYPE], vals[P_TYPE], p);
    if (one_value(&since, &it[P_SINCE], vals[P_SINCE], p) == 1
        && parse_when(&q->since, since, now) != 0) {
        value_error(&it[P_SINCE], WHEN_WHY, input_of(since), p);
    }
    if (one_value(&until, &it[P_UNTIL], vals[P_UNTIL], p) == 1
        && parse_when(&q->until, until, now) != 0) {
        value_error(&it[P_UNTIL], WHEN_WHY, input_of(until), p);
    }
    if (one_value(&v, &it[P_STREAM], vals[P_STREAM], p) == 1) {
        if (is_word(v, "site")) {
            q->stream = 0;
        }
        else if (is_word(v, "run")) {
            q->stream = 1;
        }
        else if (!is_word(v, "all")) {
            literal_error(&it[P_STREAM], "'site', 'run' or 'all'", v, p);
        }
    }
    if (one_value(&v, &it[P_RUN_ID], vals[P_RUN_ID], p) == 1) {
        q->run_id = v->s;
        q->run_id_len = v->len;
    }
    if (one_value(&v, &it[P_ORDER], vals[P_ORDER], p) == 1) {
        if (is_word(v, "asc")) {
            q->desc = 0;
        }
        else if (!is_word(v, "desc")) {
            literal_error(&it[P_ORDER], "'asc' or 'desc'", v, p);
        }
    }
    if (one_value(&v, &it[P_LIMIT], vals[P_LIMIT], p) == 1) {
        parse_limit(q, &it[P_LIMIT], v);
    }
    if (one_value(&v, &it[P_EVERY], vals[P_EVERY], p) == 1
        && ptm_time_parse_duration(&q->every, v->s, v->len) != 0) {
        value_error(&it[P_EVERY], "not a duration (90s, 15m, 24h, 7d)",
                    input_of(v), p);
    }
    one_value(&cur, &it[P_CURSOR], vals[P_CURSOR], p);
    if (one_value(&v, &it[P_FORMAT], vals[P_FORMAT], p) == 1) {
        if (is_word(v, "json")) {
            fmt = 0;
        }
        else if (is_word(v, "ndjson")) {
            fmt = 1;
        }
        else {
            literal_error(&it[P_FORMAT], "'json' or 'ndjson'", v, p);
        }
    }

    /* A format in the URL is the more deliberate choice: it wins over
     * Accept either way (a browser can then ask for either). */
    q->ndjson = fmt >= 0 ? fmt : (accept_ndjson ? 1 : 0);
    if (!q->limit_given) {
        q->limit = q->ndjson ? 0 : PTM_QUERY_LIMIT_DEFAULT;
    }
    q->params = params_hash(vals[P_TYPE], since, until, q);

    for (i = P_TYPE; i <= P_EVERY; i++) {
        others_bad |= i != P_LIMIT && it[i].type != NULL;
    }
    if (cur) {
        if (cursor_open(&c, cur, epoch) != 0) {
            value_error(&it[P_CURSOR], "not a cursor of this server",
                        input_of(cur), p);
        }
        else if (others_bad || c.params != q->params) {
            /* No cursor is ever made for bad parameters. */
            value_error(&it[P_CURSOR],
                        "the cursor belongs to other parameters",
                        input_of(cur), p);
        }
        else {
            q->since = c.since;
            q->until = c.until;
            q->has_after = 1;
            q->after = c.key;
        }
    }
    /* After a valid cursor this is the first page's window, checked then
     * (and again by cursor_open): since=1h&until=<a time> may have crossed
     * over since, but the pages of one query must not turn into a 422. */
    if (until && !it[P_SINCE].type && !it[P_UNTIL].type
        && q->until <= q->since) {
        value_error(&it[P_UNTIL], "until must be after since",
                    input_of(until), p);
    }

    for (i = 0; i < P_COUNT; i++) {
        json_t *loc;

        if (!it[i].type) {
            continue;
        }
        loc = json_array();
        json_array_append_new(loc, json_string("query"));
        json_array_append_new(loc, json_string(param_names[i]));
        ptm_err_add_item(err, it[i].type, loc, it[i].msg, it[i].input,
                         it[i].ctx);
        bad = 1;
    }
    return bad ? -1 : 0;
}

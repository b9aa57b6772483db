/* One NDJSON line of a history file, as ptm_history.c reads it: the
 * prefix the module writes, parsed without a JSON parser (the lines are
 * the User's: a line of another shape is damage, not an error), and the
 * tests a line must pass to be selected (type, run_id=, the cursor).
 * Pure functions: no I/O, no allocation. */
#include <string.h>
#include "ptm_hist_int.h"
#include "ptm_query.h"
#include "ptm_store.h"
#include "ptm_time.h"

/* Past the JSON string at s[i] (a '"'); n + 1 when it does not end.  The
 * next quote that an even number of backslashes precedes ends it (memchr
 * finds quotes faster than a loop over every byte). */
static size_t skip_string(const char *s, size_t i, size_t n)
{
    const char *q;
    size_t j, k;

    for (i++; i < n; i = j + 1) {
        if (!(q = memchr(s + i, '"', n - i))) {
            break;
        }
        j = (size_t)(q - s);
        for (k = j; k > i && s[k - 1] == '\\'; k--) {
        }
        if ((j - k) % 2 == 0) {
            return j + 1;
        }
    }
    return n + 1;
}

/* Past the JSON value at s[i], roughly (brackets counted, strings
 * skipped): only to find meta in a line, and only emitted lines are
 * checked to be well-formed.  n + 1 when it does not end. */
static size_t skip_value(const char *s, size_t i, size_t n)
{
    size_t depth = 0;

    if (i >= n) {
        return n + 1;
    }
    if (s[i] == '"') {
        return skip_string(s, i, n);
    }
    if (s[i] != '{' && s[i] != '[') {
        while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']') {
            i++;
        }
        return i;
    }
    while (i < n) {
        char c = s[i];

        if (c == '"') {
            i = skip_string(s, i, n);
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        }
        else if ((c == '}' || c == ']') && --depth == 0) {
            return i + 1;
        }
        i++;
    }
    return n + 1;
}

static int has_prefix(const char *s, size_t n, size_t i, const char *lit,
                      size_t len)
{
    return i <= n && n - i >= len && memcmp(s + i, lit, len) == 0;
}
#define HAS(s, n, i, lit) has_prefix(s, n, i, lit, sizeof(lit) - 1)

/**
 * Read the prefix the module writes: {"seq":N,"ts":"..","stream":"site"
 * (or "run"),"type":"..", then ,"data": and a closing brace at the end.
 * Returns 0, or -1 for a line of another shape.
 */
int ptm_hist_parse_line(line_t *l, const char *s, size_t n)
{
    size_t i = 7, j;
    uint64_t v = 0;

    if (!HAS(s, n, 0, "{\"seq\":") || s[n - 1] != '}') {
        return -1;
    }
    for (j = i; j < n && s[j] >= '0' && s[j] <= '9'; j++) {
        uint64_t d = (uint64_t)(s[j] - '0');

        if (v > ((uint64_t)INT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    if (j == i || !HAS(s, n, j, ",\"ts\":\"")) {
        return -1;
    }
    l->seq = v;
    i = j + 6;
    j = skip_string(s, i, n);
    if (j > n) {
        return -1;
    }
    l->ts_off = i + 1;
    l->ts_len = j - i - 2;
    if (HAS(s, n, j, ",\"stream\":\"site\",\"type\":")) {
        l->stream = PTM_STREAM_SITE;
        i = j + 24;
    }
    else if (HAS(s, n, j, ",\"stream\":\"run\",\"type\":")) {
        l->stream = PTM_STREAM_RUN;
        i = j + 23;
    }
    else {
        return -1;
    }
    if (i >= n || s[i] != '"' || (j = skip_string(s, i, n)) > n
        || !HAS(s, n, j, ",\"data\":")) {
        return -1;
    }
    l->type_off = i;
    l->type_len = j - i;
    l->rest = j;
    return 0;
}

/* 1 if meta.run_id of the line is run_id=: the same string, or an integer
 * written as its text (meta.run_id may be either, SPEC §11.3 F15: 4242
 * and "4242" name the same run). */
int ptm_hist_run_id_matches(const hist_t *h, const char *s, size_t n,
                            size_t i)
{
    i = skip_value(s, i + 8, n);                /* ,"data": */
    if (i > n || !HAS(s, n, i, ",\"meta\":{")) {
        return 0;
    }
    i += 9;
    while (i < n && s[i] == '"') {
        size_t k = i, v;

        i = skip_string(s, i, n);
        if (i >= n || s[i] != ':') {
            return 0;
        }
        v = ++i;
        i = skip_value(s, v, n);
        if (i > n) {
            return 0;
        }
        if (i - v > 0 && v - k == 9 && memcmp(s + k, "\"run_id\":", 9) == 0) {
            return (i - v == h->rid.len
                    && memcmp(s + v, h->rid.data, h->rid.len) == 0)
                   || (h->rid_int && i - v == h->q->run_id_len
                       && memcmp(s + v, h->q->run_id, i - v) == 0);
        }
        if (i < n && s[i] == ',') {
            i++;
        }
    }
    return 0;
}


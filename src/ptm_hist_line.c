/* One NDJSON line of a history file, as ptm_history.c reads it, its
 * prefix parsed (ptm_line.c): the tests a line must pass to be selected
 * (type, run_id=, the cursor).  Pure functions: no I/O, no allocation. */
#include <string.h>
#include "ptm_hist_int.h"
#include "ptm_query.h"

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
        return ptm_line_skip_string(s, i, n);
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
            i = ptm_line_skip_string(s, i, n);
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

/* 1 if meta.run_id of the line is run_id=: the same string, or an integer
 * written as its text (meta.run_id may be either, SPEC §11.3 F15: 4242
 * and "4242" name the same run). */
int ptm_hist_run_id_matches(const hist_t *h, const char *s, size_t n,
                            size_t i)
{
    i = skip_value(s, i + 8, n);                /* ,"data": */
    if (i > n || !PTM_LINE_HAS(s, n, i, ",\"meta\":{")) {
        return 0;
    }
    i += 9;
    while (i < n && s[i] == '"') {
        size_t k = i, v;

        i = ptm_line_skip_string(s, i, n);
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


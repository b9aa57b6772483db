/* The prefix of a line as the module writes it; see ptm_line.h. */
#include <string.h>
#include "ptm_line.h"

/* The next quote that an even number of backslashes precedes ends it (memchr
 * finds quotes faster than a loop over every byte). */
size_t ptm_line_skip_string(const char *s, size_t i, size_t n)
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

int ptm_line_parse(ptm_line_t *l, const char *s, size_t n)
{
    size_t i = 7, j;
    uint64_t v = 0;

    if (!PTM_LINE_HAS(s, n, 0, "{\"seq\":") || s[n - 1] != '}') {
        return -1;
    }
    for (j = i; j < n && s[j] >= '0' && s[j] <= '9'; j++) {
        uint64_t d = (uint64_t)(s[j] - '0');

        if (v > ((uint64_t)INT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    if (j == i || !PTM_LINE_HAS(s, n, j, ",\"ts\":\"")) {
        return -1;
    }
    l->seq = v;
    i = j + 6;
    j = ptm_line_skip_string(s, i, n);
    if (j > n) {
        return -1;
    }
    l->ts_off = i + 1;
    l->ts_len = j - i - 2;
    if (PTM_LINE_HAS(s, n, j, ",\"stream\":\"site\",\"type\":")) {
        l->stream = 0;
        i = j + 24;
    }
    else if (PTM_LINE_HAS(s, n, j, ",\"stream\":\"run\",\"type\":")) {
        l->stream = 1;
        i = j + 23;
    }
    else {
        return -1;
    }
    if (i >= n || s[i] != '"' || (j = ptm_line_skip_string(s, i, n)) > n
        || !PTM_LINE_HAS(s, n, j, ",\"data\":")) {
        return -1;
    }
    l->type_off = i;
    l->type_len = j - i;
    l->rest = j;
    return 0;
}

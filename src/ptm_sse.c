/* Server-Sent Events framing (ptm_sse.h). */
#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include "ptm_sse.h"

void ptm_sse_put_id(ptm_buf_t *b, uint64_t epoch, uint64_t n)
{
    char num[24];

    ptm_buf_add(b, num, ptm_fmt_u64(num, epoch));
    ptm_buf_putc(b, '-');
    ptm_buf_add(b, num, ptm_fmt_u64(num, n));
}

void ptm_sse_event(ptm_buf_t *b, int has_id, uint64_t epoch, uint64_t n,
                   const char *name, const char *data, size_t len)
{
    size_t i = 0, start;

    if (has_id) {
        ptm_buf_puts(b, "id: ");
        ptm_sse_put_id(b, epoch, n);
        ptm_buf_putc(b, '\n');
    }
    if (name) {
        ptm_buf_puts(b, "event: ");
        ptm_buf_puts(b, name);
        ptm_buf_putc(b, '\n');
    }
    /* A line break inside the data would end the field, and an empty line
     * the event: each line goes as a data: line of its own, which the
     * client joins back with LF.  JSON has none (it escapes them): the
     * common case is found with memchr, not byte by byte. */
    if (!memchr(data, '\n', len) && !memchr(data, '\r', len)) {
        char *d = ptm_buf_reserve(b, len + 8);

        memcpy(d, "data: ", 6);
        memcpy(d + 6, data, len);
        d[6 + len] = '\n';
        d[7 + len] = '\n';
        b->len += len + 8;
        return;
    }
    do {
        start = i;
        while (i < len && data[i] != '\n' && data[i] != '\r') {
            i++;
        }
        ptm_buf_puts(b, "data: ");
        ptm_buf_add(b, data + start, i - start);
        ptm_buf_putc(b, '\n');
        if (i < len && data[i] == '\r' && i + 1 < len && data[i + 1] == '\n') {
            i++;
        }
    } while (i++ < len);
    ptm_buf_putc(b, '\n');
}

void ptm_sse_retry(ptm_buf_t *b, unsigned ms)
{
    char num[24];

    ptm_buf_puts(b, "retry: ");
    ptm_buf_add(b, num, ptm_fmt_u64(num, ms));
    ptm_buf_puts(b, "\n\n");
}

void ptm_sse_comment(ptm_buf_t *b, const char *text)
{
    ptm_buf_puts(b, ": ");
    ptm_buf_puts(b, text);
    ptm_buf_puts(b, "\n\n");
}

/* Digits of s[0..len) as a uint64; -1 if empty, not digits, or too big. */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (len == 0 || len > 20) {
        return -1;
    }
    for (i = 0; i < len; i++) {
        unsigned d = (unsigned char)s[i] - '0';

        if (d > 9 || v > (UINT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int ptm_sse_parse_id(const char *s, size_t len, uint64_t *epoch,
                     uint64_t *n)
{
    const char *dash = s ? memchr(s, '-', len) : NULL;

    if (!dash) {
        return -1;
    }
    return parse_u64(s, (size_t)(dash - s), epoch) == 0
           && parse_u64(dash + 1, len - (size_t)(dash - s) - 1, n) == 0
           ? 0 : -1;
}

/* Skip spaces and tabs. */
static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    return s;
}

/* 1 when the parameters from `s` (after the media range, up to the next
 * ',' or the end) carry q=0 (0, 0., 0.0, 0.00, 0.000). */
static int q_zero(const char *s)
{
    while (*s && *s != ',') {
        if (*s == ';') {
            s = skip_ws(s + 1);
            if ((s[0] == 'q' || s[0] == 'Q') && s[1] == '=') {
                const char *v = s + 2;

                if (*v++ != '0') {
                    return 0;
                }
                if (*v == '.') {
                    v++;
                    while (*v == '0') {
                        v++;
                    }
                }
                v = skip_ws(v);
                return *v == '\0' || *v == ',' || *v == ';';
            }
            continue;
        }
        s++;
    }
    return 0;
}

int ptm_sse_accepts(const char *accept)
{
    static const char want[] = "text/event-stream";
    const char *s = accept;

    while (s && *s) {
        const char *end;

        s = skip_ws(s);
        end = s;
        while (*end && *end != ',' && *end != ';' && *end != ' '
               && *end != '\t') {
            end++;
        }
        if ((size_t)(end - s) == sizeof(want) - 1
            && strncasecmp(s, want, sizeof(want) - 1) == 0) {
            return !q_zero(end);
        }
        s = strchr(end, ',');
        if (s) {
            s++;
        }
    }
    return 0;
}

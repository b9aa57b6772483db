/* JSON parsing and serialising that match what upstream's Python does.
 *
 * The parser is a hand-written copy of CPython's json scanner
 * (Modules/_json.c and Lib/json/decoder.py, 3.11/3.12): the same branches
 * in the same order, so that a document Python rejects is rejected here with
 * the same message at the same position (that pair ends up in the 422 body).
 * jansson's own parser cannot be used for that: its messages and positions
 * are its own.  It only builds jansson values.  On top of Python we refuse
 * what SPEC §11 narrows (NaN/Infinity, overflowing numbers, integers outside
 * int64, lone surrogates), at the first such token, but only once the whole
 * document has scanned: a document Python rejects always gets Python's
 * message and position.  Invalid UTF-8 is refused before scanning (Python
 * decodes first) and nesting deeper than PTM_JSON_MAX_DEPTH where it
 * happens (Python's RecursionError, at a depth of its own).
 *
 * The scanner walks bytes, not code points.  That is safe because every
 * decision Python makes looks at ASCII characters (see the one subtle case
 * at the surrogate pair), and byte offsets are turned into code point
 * positions only when an error is reported.  The input is checked to be
 * UTF-8 before scanning, like Python decodes the body before it scans it.
 *
 * Serialising reproduces json.dumps(v, separators=(",", ":")) with
 * ensure_ascii, and float repr().  Nothing here depends on the process
 * locale (httpd may run with a comma LC_NUMERIC): numbers are handed to
 * strtod without a radix character, and the radix printf writes is skipped
 * when reading its digits back.
 */
#include <ctype.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ptm_json.h"

/* ------------------------------------------------------------------------
 * UTF-8
 */

/* Decode one UTF-8 sequence at s[*i] and move *i past it.  Returns the code
 * point, or -1 for an invalid sequence, in which case *i moves past its
 * "maximal subpart" (Unicode §3.9, at least one byte): that is also how
 * Python's decoder counts U+FFFD with errors="replace".  Overlongs, encoded
 * surrogates and values above U+10FFFF are invalid (the second-byte ranges
 * below exclude them). */
static long ptm_utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    size_t k = *i;
    unsigned int c = s[k];
    unsigned int lo = 0x80, hi = 0xbf;
    int need;
    long cp;

    if (c < 0x80) {
        *i = k + 1;
        return (long)c;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
        cp = c & 0x1f;
    }
    else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        cp = c & 0x0f;
        if (c == 0xe0) {
            lo = 0xa0;
        }
        else if (c == 0xed) {
            hi = 0x9f;
        }
    }
    else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        cp = c & 0x07;
        if (c == 0xf0) {
            lo = 0x90;
        }
        else if (c == 0xf4) {
            hi = 0x8f;
        }
    }
    else {
        *i = k + 1;
        return -1;
    }
    k++;
    while (need-- > 0) {
        if (k >= len || s[k] < lo || s[k] > hi) {
            *i = k;
            return -1;
        }
        cp = (cp << 6) | (s[k] & 0x3f);
        lo = 0x80;
        hi = 0xbf;
        k++;
    }
    *i = k;
    return cp;
}

/* Byte offset of the first invalid sequence, or len if there is none. */
#define ONES ((uint64_t)0x0101010101010101ULL)
#define HIGHS ((uint64_t)0x8080808080808080ULL)

/* Eight bytes at s, in whatever order: only tested byte by byte. */
static uint64_t load8(const unsigned char *s)
{
    uint64_t v;

    memcpy(&v, s, 8);
    return v;
}

static size_t ptm_utf8_first_bad(const unsigned char *s, size_t len)
{
    size_t i = 0, at;

    while (i < len) {
        /* ASCII, eight bytes at a time (nearly all of an event). */
        while (len - i >= 8 && (load8(s + i) & HIGHS) == 0) {
            i += 8;
        }
        if (i >= len) {
            break;
        }
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        at = i;
        if (ptm_utf8_next(s, len, &i) < 0) {
            return at;
        }
    }
    return len;
}

/* Number of code points in valid UTF-8 s[0..n). */
static size_t ptm_utf8_count(const unsigned char *s, size_t n)
{
    size_t i, cnt = 0;

    for (i = 0; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            cnt++;
        }
    }
    return cnt;
}

/* Encode cp (<= U+10FFFF, not a surrogate) into d; returns the length. */
static size_t ptm_utf8_put(char *d, unsigned long cp)
{
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xc0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xe0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        d[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    d[0] = (char)(0xf0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    d[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

int ptm_utf8_valid(const char *s, size_t len)
{
    return ptm_utf8_first_bad((const unsigned char *)s, len) == len;
}

json_t *ptm_json_string_lossy(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, o = 0;
    char *d;
    long cp;
    json_t *v;

    if (ptm_utf8_valid(s, len)) {
        return json_stringn_nocheck(len ? s : "", len);
    }
    /* Each replaced subpart is at least one byte and U+FFFD is three. */
    d = malloc(len * 3 + 1);
    if (d == NULL) {
        return NULL;
    }
    while (i < len) {
        cp = ptm_utf8_next(u, len, &i);
        o += ptm_utf8_put(d + o, cp < 0 ? 0xfffd : (unsigned long)cp);
    }
    v = json_stringn_nocheck(d, o);
    free(d);
    return v;
}

/* ------------------------------------------------------------------------
 * Parser
 */

typedef struct {
    const unsigned char *s;     /* the text after an optional BOM */
    size_t len;
    /* Decoded strings and keys are built on a stack of bytes: a key stays
     * on it while its value is parsed, and is popped once it is set.
     * Offsets, not pointers, because the stack moves when it grows. */
    char *stk;
    size_t top;
    size_t cap;
    /* The first error: byte offset, kind and message. */
    ptm_json_errkind_e ekind;
    size_t epos;
    const char *emsg;
    /* The first thing Python accepts and we do not (NaN, 1e400, ...).  It
     * is reported only if the document is otherwise valid: a document
     * Python rejects gets Python's message, wherever our objection was. */
    size_t npos;
    const char *nmsg;
} ptm_json_parser_t;

#define PTM_JSON_MSG_NAN      "NaN and Infinity are not allowed"
#define PTM_JSON_MSG_OVERFLOW "Number out of range (too large for a double)"
#define PTM_JSON_MSG_INT      "Integer out of range (must fit in 64 bits, " \
                              "-9223372036854775808..9223372036854775807)"
#define PTM_JSON_MSG_UTF8     "Invalid UTF-8 in request body"
#define PTM_JSON_MSG_SURR     "Unpaired surrogate in \\uXXXX escape"
#define PTM_JSON_MSG_DEEP     "Maximum nesting depth exceeded"
#define PTM_JSON_MSG_NOMEM    "Out of memory while parsing"

/* Record an error and return NULL, so callers can `return ptm_json_fail()'. */
static json_t *ptm_json_fail(ptm_json_parser_t *p, ptm_json_errkind_e kind,
                             size_t pos, const char *msg)
{
    p->ekind = kind;
    p->epos = pos;
    p->emsg = msg;
    return NULL;
}

/* Note the first narrowing of SPEC §11 and carry on (see nmsg). */
static void ptm_json_narrow(ptm_json_parser_t *p, size_t pos, const char *msg)
{
    if (p->nmsg == NULL) {
        p->npos = pos;
        p->nmsg = msg;
    }
}

/* Out of memory has no kind of its own.  It is reported as TOO_DEEP (a 400
 * "error parsing the body", with our own message) rather than SYNTAX: the
 * body was not understood, but its JSON is not to blame. */
static json_t *ptm_json_nomem(ptm_json_parser_t *p, size_t pos)
{
    return ptm_json_fail(p, PTM_JSON_TOO_DEEP, pos, PTM_JSON_MSG_NOMEM);
}

static int ptm_json_push(ptm_json_parser_t *p, const void *b, size_t n)
{
    if (p->top + n > p->cap) {
        size_t cap = p->cap * 2;
        char *stk;

        while (cap < p->top + n) {
            cap *= 2;
        }
        stk = realloc(p->stk, cap);
        if (stk == NULL) {
            return -1;
        }
        p->stk = stk;
        p->cap = cap;
    }
    memcpy(p->stk + p->top, b, n);
    p->top += n;
    return 0;
}

static size_t ptm_json_skip_ws(const ptm_json_parser_t *p, size_t i)
{
    while (i < p->len && (p->s[i] == ' ' || p->s[i] == '\t'
                          || p->s[i] == '\n' || p->s[i] == '\r')) {
        i++;
    }
    return i;
}

/* Four hex digits at s; -1 if one is not a hex digit. */
static long ptm_json_hex4(const unsigned char *s)
{
    long v = 0;
    int k;

    for (k = 0; k < 4; k++) {
        unsigned int c = s[k];

        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= c - '0';
        }
        else if (c >= 'a' && c <= 'f') {
            v |= c - 'a' + 10;
        }
        else if (c >= 'A' && c <= 'F') {
            v |= c - 'A' + 10;
        }
        else {
            return -1;
        }
    }
    return v;
}

/* Python's scanstring_unicode: `end` is just after the opening quote.  The
 * decoded bytes are pushed on the stack; returns 0 with *next after the
 * closing quote, or -1 with the error recorded. */
static int ptm_json_scan_chars(ptm_json_parser_t *p, size_t end,
                               size_t *next)
{
    const unsigned char *s = p->s;
    size_t n = p->len, begin = end - 1, q, b;
    long c, c2;
    char u8[4];

    for (;;) {
        for (q = end; q < n; q++) {
            if (s[q] == '"' || s[q] == '\\') {
                break;
            }
            if (s[q] <= 0x1f) {
                ptm_json_fail(p, PTM_JSON_SYNTAX, q,
                              "Invalid control character at");
                return -1;
            }
        }
        if (q >= n) {
            ptm_json_fail(p, PTM_JSON_SYNTAX, begin,
                          "Unterminated string starting at");
            return -1;
        }
        if (q > end && ptm_json_push(p, s + end, q - end) != 0) {
            ptm_json_nomem(p, q);
            return -1;
        }
        if (s[q] == '"') {
            *next = q + 1;
            return 0;
        }
        b = q++;
        if (q == n) {
            ptm_json_fail(p, PTM_JSON_SYNTAX, begin,
                          "Unterminated string starting at");
            return -1;
        }
        if (s[q] != 'u') {
            switch (s[q]) {
            case '"':  c = '"';  break;
            case '\\': c = '\\'; break;
            case '/':  c = '/';  break;
            case 'b':  c = '\b'; break;
            case 'f':  c = '\f'; break;
            case 'n':  c = '\n'; break;
            case 'r':  c = '\r'; break;
            case 't':  c = '\t'; break;
            default:
                ptm_json_fail(p, PTM_JSON_SYNTAX, b, "Invalid \\escape");
                return -1;
            }
            end = q + 1;
        }
        else {
            /* Python reports every bad \u escape at its 'u'. */
            q++;
            end = q + 4;
            if (end >= n || (c = ptm_json_hex4(s + q)) < 0) {
                ptm_json_fail(p, PTM_JSON_SYNTAX, q - 1,
                              "Invalid \\uXXXX escape");
                return -1;
            }
            /* Python keeps lone surrogates; we refuse them, but only once
             * the rest has scanned, so U+FFFD stands in meanwhile. */
            if (c >= 0xd800 && c <= 0xdbff) {
                /* Python wants room for 7 more code points; counting
                 * bytes instead changes nothing: with fewer code points
                 * one of "\\uXXXX" is missing or not ASCII, and Python's
                 * next round fails at the same 'u' as the hex check does
                 * here. */
                if (end + 6 < n && s[end] == '\\' && s[end + 1] == 'u') {
                    c2 = ptm_json_hex4(s + end + 2);
                    if (c2 < 0) {
                        ptm_json_fail(p, PTM_JSON_SYNTAX, end + 1,
                                      "Invalid \\uXXXX escape");
                        return -1;
                    }
                    if (c2 >= 0xdc00 && c2 <= 0xdfff) {
                        c = 0x10000 + (((c - 0xd800) << 10) | (c2 - 0xdc00));
                        end += 6;
                    }
                }
                if (c < 0x10000) {
                    ptm_json_narrow(p, b, PTM_JSON_MSG_SURR);
                    c = 0xfffd;
                }
            }
            else if (c >= 0xdc00 && c <= 0xdfff) {
                ptm_json_narrow(p, b, PTM_JSON_MSG_SURR);
                c = 0xfffd;
            }
        }
        if (ptm_json_push(p, u8, ptm_utf8_put(u8, (unsigned long)c)) != 0) {
            ptm_json_nomem(p, b);
            return -1;
        }
    }
}

/* An integer token s[a..b) (grammar already checked) as int64. */
static int ptm_json_to_int(const unsigned char *s, size_t a, size_t b,
                           json_int_t *v)
{
    unsigned long long mag = 0, lim = (unsigned long long)LLONG_MAX;
    int neg = 0;

    if (s[a] == '-') {
        neg = 1;
        lim += 1;
        a++;
    }
    for (; a < b; a++) {
        unsigned int d = s[a] - '0';

        if (mag > (lim - d) / 10) {
            return -1;
        }
        mag = mag * 10 + d;
    }
    if (!neg) {
        *v = (json_int_t)mag;
    }
    else if (mag == (unsigned long long)LLONG_MAX + 1) {
        *v = LLONG_MIN;
    }
    else {
        *v = -(json_int_t)mag;
    }
    return 0;
}

/* 10^0 .. 10^22: the powers of ten a double holds exactly. */
static const double ptm_json_p10[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
    1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

/* Clinger's fast path: at most 15 significant digits (so the integer m is
 * exact) and a decimal exponent within +-22 (so 10^|e| is exact) make
 * m * 10^e or m / 10^-e one correctly rounded operation: the double strtod
 * would give.  Returns 0 when the token is outside that range. */
#if FLT_EVAL_METHOD == 0
static int ptm_json_fast_double(const unsigned char *s, size_t a, size_t b,
                                double *v)
{
    uint64_t m = 0;
    int neg = 0, digits = 0, e = 0, x = 0, xneg = 0;
    double d;

    if (s[a] == '-') {
        neg = 1;
        a++;
    }
    for (; a < b && s[a] >= '0' && s[a] <= '9'; a++) {
        m = m * 10 + (uint64_t)(s[a] - '0');
        digits += m > 0;
        if (digits > 15) {
            return 0;
        }
    }
    if (a < b && s[a] == '.') {
        for (a++; a < b && s[a] >= '0' && s[a] <= '9'; a++) {
            m = m * 10 + (uint64_t)(s[a] - '0');
            digits += m > 0;
            e--;
            if (digits > 15) {
                return 0;
            }
        }
    }
    if (a < b) {                /* 'e' or 'E' */
        a++;
        if (s[a] == '-' || s[a] == '+') {
            xneg = s[a] == '-';
            a++;
        }
        for (; a < b; a++) {
            x = x * 10 + (s[a] - '0');
            if (x > 100) {
                return 0;
            }
        }
    }
    e += xneg ? -x : x;
    if (e < -22 || e > 22) {
        return 0;
    }
    d = (double)m;
    d = e < 0 ? d / ptm_json_p10[-e] : d * ptm_json_p10[e];
    *v = neg ? -d : d;
    return 1;
}
#endif

/* A float token s[a..b) (grammar already checked) as a double.  The token
 * is rewritten as "[-]DIGITSe<exp>" with the radix point folded into the
 * exponent: strtod then reads it the same way in every locale, and glibc's
 * strtod rounds correctly, like Python's. */
static int ptm_json_to_double(const unsigned char *s, size_t a, size_t b,
                              double *v)
{
    char sbuf[96], *buf = sbuf;
    size_t o = 0, frac = 0;
    long long e = 0;
    int eneg = 0;

#if FLT_EVAL_METHOD == 0
    /* (Only where double arithmetic rounds once: not with x87's extended
     * precision, where the one operation would be rounded twice.) */
    if (ptm_json_fast_double(s, a, b, v)) {
        return 0;
    }
#endif
    if (b - a + 32 > sizeof(sbuf)) {
        buf = malloc(b - a + 32);
        if (buf == NULL) {
            return -2;
        }
    }
    if (s[a] == '-') {
        buf[o++] = '-';
        a++;
    }
    while (a < b && s[a] >= '0' && s[a] <= '9') {
        buf[o++] = (char)s[a++];
    }
    if (a < b && s[a] == '.') {
        a++;
        while (a < b && s[a] >= '0' && s[a] <= '9') {
            buf[o++] = (char)s[a++];
            frac++;
        }
    }
    if (a < b) {                /* 'e' or 'E' */
        a++;
        if (s[a] == '-' || s[a] == '+') {
            eneg = s[a] == '-';
            a++;
        }
        for (; a < b; a++) {
            /* Saturate: past 1e9 the result is 0 or infinite anyway. */
            if (e < 1000000000LL) {
                e = e * 10 + (s[a] - '0');
            }
        }
    }
    e = (eneg ? -e : e) - (long long)frac;
    snprintf(buf + o, 32, "e%lld", e);
    *v = strtod(buf, NULL);
    if (buf != sbuf) {
        free(buf);
    }
    return isinf(*v) ? -1 : 0;
}

/* Python's _match_number_unicode. */
static json_t *ptm_json_scan_number(ptm_json_parser_t *p, size_t start,
                                    size_t *next)
{
    const unsigned char *s = p->s;
    size_t n = p->len, i = start, e_start;
    int is_float = 0, rv;
    json_t *v;

    if (s[i] == '-') {
        i++;
        if (i >= n) {
            return ptm_json_fail(p, PTM_JSON_SYNTAX, start, "Expecting value");
        }
    }
    if (s[i] >= '1' && s[i] <= '9') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
    }
    else if (s[i] == '0') {
        i++;
    }
    else {
        return ptm_json_fail(p, PTM_JSON_SYNTAX, start, "Expecting value");
    }
    if (i + 1 < n && s[i] == '.' && s[i + 1] >= '0' && s[i + 1] <= '9') {
        is_float = 1;
        i += 2;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
    }
    if (i + 1 < n && (s[i] == 'e' || s[i] == 'E')) {
        e_start = i++;
        if (i + 1 < n && (s[i] == '-' || s[i] == '+')) {
            i++;
        }
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (s[i - 1] >= '0' && s[i - 1] <= '9') {
            is_float = 1;
        }
        else {
            i = e_start;        /* "1e" or "1e+": the number is just "1" */
        }
    }
    if (is_float) {
        double d;

        rv = ptm_json_to_double(s, start, i, &d);
        if (rv == -2) {
            return ptm_json_nomem(p, start);
        }
        if (rv != 0) {
            ptm_json_narrow(p, start, PTM_JSON_MSG_OVERFLOW);
            d = 0.0;
        }
        v = json_real(d);
    }
    else {
        json_int_t iv;

        if (ptm_json_to_int(s, start, i, &iv) != 0) {
            ptm_json_narrow(p, start, PTM_JSON_MSG_INT);
            iv = 0;
        }
        v = json_integer(iv);
    }
    if (v == NULL) {
        return ptm_json_nomem(p, start);
    }
    *next = i;
    return v;
}

static json_t *ptm_json_scan_value(ptm_json_parser_t *p, size_t i,
                                   size_t *next, int depth);

/* Python's _parse_object_unicode; i is just after the '{'. */
static json_t *ptm_json_scan_object(ptm_json_parser_t *p, size_t i,
                                    size_t *next, int depth)
{
    const unsigned char *s = p->s;
    size_t n = p->len, koff, klen;
    json_t *obj, *val;

    obj = json_object();
    if (obj == NULL) {
        return ptm_json_nomem(p, i);
    }
    i = ptm_json_skip_ws(p, i);
    if (i >= n || s[i] != '}') {
        for (;;) {
            if (i >= n || s[i] != '"') {
                ptm_json_fail(p, PTM_JSON_SYNTAX, i, "Expecting property "
                              "name enclosed in double quotes");
                goto bail;
            }
            koff = p->top;
            if (ptm_json_scan_chars(p, i + 1, &i) != 0) {
                goto bail;
            }
            klen = p->top - koff;
            i = ptm_json_skip_ws(p, i);
            if (i >= n || s[i] != ':') {
                ptm_json_fail(p, PTM_JSON_SYNTAX, i, "Expecting ':' delimiter");
                goto bail;
            }
            i = ptm_json_skip_ws(p, i + 1);
            val = ptm_json_scan_value(p, i, &i, depth);
            if (val == NULL) {
                goto bail;
            }
            /* On a duplicate key jansson replaces the value in place, so
             * the key keeps its first position: Python's dict does the
             * same.  (setn_new releases val if it fails.) */
            if (json_object_setn_new_nocheck(obj, p->stk + koff, klen,
                                             val) != 0) {
                ptm_json_nomem(p, i);
                goto bail;
            }
            p->top = koff;
            i = ptm_json_skip_ws(p, i);
            if (i < n && s[i] == '}') {
                break;
            }
            if (i >= n || s[i] != ',') {
                ptm_json_fail(p, PTM_JSON_SYNTAX, i, "Expecting ',' delimiter");
                goto bail;
            }
            i = ptm_json_skip_ws(p, i + 1);
        }
    }
    *next = i + 1;
    return obj;

bail:
    json_decref(obj);
    return NULL;
}

/* Python's _parse_array_unicode; i is just after the '['. */
static json_t *ptm_json_scan_array(ptm_json_parser_t *p, size_t i,
                                   size_t *next, int depth)
{
    const unsigned char *s = p->s;
    size_t n = p->len;
    json_t *arr, *val;

    arr = json_array();
    if (arr == NULL) {
        return ptm_json_nomem(p, i);
    }
    i = ptm_json_skip_ws(p, i);
    if (i >= n || s[i] != ']') {
        for (;;) {
            val = ptm_json_scan_value(p, i, &i, depth);
            if (val == NULL) {
                goto bail;
            }
            if (json_array_append_new(arr, val) != 0) {
                ptm_json_nomem(p, i);
                goto bail;
            }
            i = ptm_json_skip_ws(p, i);
            if (i < n && s[i] == ']') {
                break;
            }
            if (i >= n || s[i] != ',') {
                ptm_json_fail(p, PTM_JSON_SYNTAX, i, "Expecting ',' delimiter");
                goto bail;
            }
            i = ptm_json_skip_ws(p, i + 1);
        }
    }
    *next = i + 1;
    return arr;

bail:
    json_decref(arr);
    return NULL;
}

/* Python's scan_once_unicode.  Where Python raises StopIteration(idx) and
 * raw_decode turns it into "Expecting value" at idx, we fail directly. */
static json_t *ptm_json_scan_value(ptm_json_parser_t *p, size_t i,
                                   size_t *next, int depth)
{
    const unsigned char *s = p->s;
    size_t n = p->len, off;
    json_t *v;

    if (i >= n) {
        return ptm_json_fail(p, PTM_JSON_SYNTAX, i, "Expecting value");
    }
    switch (s[i]) {
    case '"':
        off = p->top;
        if (ptm_json_scan_chars(p, i + 1, next) != 0) {
            return NULL;
        }
        v = json_stringn_nocheck(p->stk + off, p->top - off);
        p->top = off;
        return v ? v : ptm_json_nomem(p, i);
    case '{':
    case '[':
        /* Python raises RecursionError here, before looking further. */
        if (depth >= PTM_JSON_MAX_DEPTH) {
            return ptm_json_fail(p, PTM_JSON_TOO_DEEP, i, PTM_JSON_MSG_DEEP);
        }
        return s[i] == '{' ? ptm_json_scan_object(p, i + 1, next, depth + 1)
                           : ptm_json_scan_array(p, i + 1, next, depth + 1);
    case 'n':
        if (i + 3 < n && memcmp(s + i + 1, "ull", 3) == 0) {
            *next = i + 4;
            return json_null();
        }
        break;
    case 't':
        if (i + 3 < n && memcmp(s + i + 1, "rue", 3) == 0) {
            *next = i + 4;
            return json_true();
        }
        break;
    case 'f':
        if (i + 4 < n && memcmp(s + i + 1, "alse", 4) == 0) {
            *next = i + 5;
            return json_false();
        }
        break;
    /* Python's constants; null stands in until the narrowing is reported. */
    case 'N':
        if (i + 2 < n && s[i + 1] == 'a' && s[i + 2] == 'N') {
            ptm_json_narrow(p, i, PTM_JSON_MSG_NAN);
            *next = i + 3;
            return json_null();
        }
        break;
    case 'I':
        if (i + 7 < n && memcmp(s + i + 1, "nfinity", 7) == 0) {
            ptm_json_narrow(p, i, PTM_JSON_MSG_NAN);
            *next = i + 8;
            return json_null();
        }
        break;
    case '-':
        if (i + 8 < n && memcmp(s + i + 1, "Infinity", 8) == 0) {
            ptm_json_narrow(p, i, PTM_JSON_MSG_NAN);
            *next = i + 9;
            return json_null();
        }
        break;
    }
    return ptm_json_scan_number(p, i, next);
}

json_t *ptm_json_parse(const char *buf, size_t len, ptm_json_error_t *err)
{
    ptm_json_parser_t p;
    const unsigned char *s = (const unsigned char *)buf;
    json_t *v = NULL;
    size_t i, bad;

    /* Starlette hands the body bytes to json.loads, which decodes them as
     * utf-8-sig when they start with a BOM: positions count after it. */
    if (len >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf) {
        s += 3;
        len -= 3;
    }
    memset(&p, 0, sizeof(p));
    p.s = s;
    p.len = len;

    bad = ptm_utf8_first_bad(s, len);
    if (bad < len) {
        ptm_json_fail(&p, PTM_JSON_SYNTAX, bad, PTM_JSON_MSG_UTF8);
        goto done;
    }
    p.cap = 256;
    p.stk = malloc(p.cap);
    if (p.stk == NULL) {
        ptm_json_nomem(&p, 0);
        goto done;
    }
    i = ptm_json_skip_ws(&p, 0);
    v = ptm_json_scan_value(&p, i, &i, 0);
    if (v != NULL) {
        i = ptm_json_skip_ws(&p, i);
        if (i != len) {
            json_decref(v);
            v = NULL;
            ptm_json_fail(&p, PTM_JSON_SYNTAX, i, "Extra data");
        }
        else if (p.nmsg != NULL) {
            json_decref(v);
            v = NULL;
            ptm_json_fail(&p, PTM_JSON_SYNTAX, p.npos, p.nmsg);
        }
    }

done:
    free(p.stk);
    if (err != NULL) {
        memset(err, 0, sizeof(*err));
        if (v == NULL) {
            err->kind = p.ekind;
            /* The text before the error is valid UTF-8 (checked above, or
             * it is the prefix before the first bad byte). */
            err->pos = ptm_utf8_count(s, p.epos);
            snprintf(err->msg, sizeof(err->msg), "%s", p.emsg);
        }
    }
    return v;
}

/* ------------------------------------------------------------------------
 * Serialiser
 */

static const char ptm_json_hex[] = "0123456789abcdef";

/* Append `lead` then the `ndig` low hex digits of u, lower case. */
static void ptm_json_put_hex(ptm_buf_t *out, const char *lead,
                             unsigned long u, int ndig)
{
    ptm_buf_puts(out, lead);
    while (ndig-- > 0) {
        ptm_buf_putc(out, ptm_json_hex[(u >> (4 * ndig)) & 0xf]);
    }
}

static void ptm_json_put_u4(ptm_buf_t *out, unsigned long u)
{
    char *d = ptm_buf_reserve(out, 6);

    d[0] = '\\';
    d[1] = 'u';
    d[2] = ptm_json_hex[(u >> 12) & 0xf];
    d[3] = ptm_json_hex[(u >> 8) & 0xf];
    d[4] = ptm_json_hex[(u >> 4) & 0xf];
    d[5] = ptm_json_hex[u & 0xf];
    out->len += 6;
}

/* Invalid UTF-8 cannot come from the parser; if a caller passes some, each
 * bad subpart is written as \ufffd rather than producing invalid JSON. */
void ptm_json_dump_string(ptm_buf_t *out, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run;
    long cp;

    ptm_buf_putc(out, '"');
    while (i < len) {
        run = i;
        while (run < len && u[run] >= 0x20 && u[run] < 0x7f
               && u[run] != '"' && u[run] != '\\') {
            run++;
        }
        if (run > i) {
            ptm_buf_add(out, s + i, run - i);
            i = run;
            continue;
        }
        switch (u[i]) {
        case '"':  ptm_buf_add(out, "\\\"", 2); i++; continue;
        case '\\': ptm_buf_add(out, "\\\\", 2); i++; continue;
        case '\n': ptm_buf_add(out, "\\n", 2);  i++; continue;
        case '\r': ptm_buf_add(out, "\\r", 2);  i++; continue;
        case '\t': ptm_buf_add(out, "\\t", 2);  i++; continue;
        case '\b': ptm_buf_add(out, "\\b", 2);  i++; continue;
        case '\f': ptm_buf_add(out, "\\f", 2);  i++; continue;
        }
        cp = ptm_utf8_next(u, len, &i);
        if (cp < 0) {
            cp = 0xfffd;
        }
        if (cp >= 0x10000) {
            cp -= 0x10000;
            ptm_json_put_u4(out, 0xd800 | (cp >> 10));
            ptm_json_put_u4(out, 0xdc00 | (cp & 0x3ff));
        }
        else {
            ptm_json_put_u4(out, (unsigned long)cp);
        }
    }
    ptm_buf_putc(out, '"');
}

/* The code unit of 4 lowercase hex digits (as ptm_json_put_u4 writes
 * them), or -1. */
static long ptm_json_hex4_lower(const unsigned char *s)
{
    long v = 0;
    int k;

    for (k = 0; k < 4; k++) {
        v <<= 4;
        if (s[k] >= '0' && s[k] <= '9') {
            v |= s[k] - '0';
        }
        else if (s[k] >= 'a' && s[k] <= 'f') {
            v |= s[k] - 'a' + 10;
        }
        else {
            return -1;
        }
    }
    return v;
}

int ptm_json_string_canonical(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i, end = len - 1;
    long cp;

    if (len < 2 || s[0] != '"' || s[end] != '"') {
        return 0;
    }
    for (i = 1; i < end; i++) {
        if (u[i] >= 0x20 && u[i] < 0x7f && u[i] != '"' && u[i] != '\\') {
            continue;
        }
        if (u[i] != '\\' || ++i >= end) {
            return 0;
        }
        if (s[i] && strchr("\"\\nrtbf", s[i])) {
            continue;
        }
        if (s[i] != 'u' || i + 4 >= end
            || (cp = ptm_json_hex4_lower(u + i + 1)) < 0) {
            return 0;
        }
        i += 4;
        /* Escaped only what is not printed as itself or with a short
         * escape; a surrogate only as the high half of a pair. */
        if ((cp >= 0x20 && cp < 0x7f) || cp == '\n' || cp == '\r'
            || cp == '\t' || cp == '\b' || cp == '\f'
            || (cp >= 0xdc00 && cp <= 0xdfff)) {
            return 0;
        }
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (i + 6 >= end || s[i + 1] != '\\' || s[i + 2] != 'u'
                || (cp = ptm_json_hex4_lower(u + i + 3)) < 0xdc00
                || cp > 0xdfff) {
                return 0;
            }
            i += 6;
        }
    }
    return 1;
}

/* Digits and exponent of printf's "%.*e" output, whatever radix character
 * the locale put in (it is simply not a digit).  Returns the digit count. */
static int ptm_json_split_e(const char *f, char *dig, int *exp10)
{
    int n = 0, neg = 0, e = 0;

    for (; *f != '\0' && *f != 'e'; f++) {
        if (*f >= '0' && *f <= '9') {
            dig[n++] = *f;
        }
    }
    if (*f == 'e') {
        f++;
    }
    if (*f == '-' || *f == '+') {
        neg = *f == '-';
        f++;
    }
    for (; *f >= '0' && *f <= '9'; f++) {
        e = e * 10 + (*f - '0');
    }
    *exp10 = neg ? -e : e;
    return n;
}

/* The double that D[0].D[1..n-1] x 10^exp10 reads back as. */
static double ptm_json_read_back(const char *dig, int n, int exp10)
{
    char b[48];

    memcpy(b, dig, (size_t)n);
    snprintf(b + n, sizeof(b) - (size_t)n, "e%d", exp10 - (n - 1));
    return strtod(b, NULL);
}

/* The common case without printf: x is m / 10^k for an integer m of at
 * most 15 digits (what sensors send: 11.5, 0.42, 1013.25).  Any decimal of
 * at most 15 significant digits survives decimal -> double -> decimal
 * (DBL_DIG), so two of them never read back as the same normal double: the
 * first such m is the one shortest repr.  x * 10^k lands within 0.25 of m,
 * so rounding finds m; m / 10^k (both exact, one correctly rounded
 * division) == x proves it reads back.  Returns the digit count, or 0 when
 * x is not such a number (then printf decides). */
static int ptm_json_short_decimal(double x, char *dig, int *exp10)
{
    char tmp[16];
    uint64_t m;
    int k, n;

    if (!(x >= 1e-15 && x < 1e15)) {
        return 0;
    }
    for (k = 0; k < 16 && x * ptm_json_p10[k] < 1e15; k++) {
        double y = x * ptm_json_p10[k];

        m = (uint64_t)(y + 0.5);
        if (m == 0 || (double)m / ptm_json_p10[k] != x) {
            continue;
        }
        for (n = 0; m > 0; m /= 10) {
            tmp[n++] = (char)('0' + m % 10);
        }
        *exp10 = n - 1 - k;
        for (k = 0; k < n; k++) {
            dig[k] = tmp[n - 1 - k];
        }
        while (n > 1 && dig[n - 1] == '0') {
            n--;                        /* only when m is a whole x: 1200 */
        }
        return n;
    }
    return 0;
}

/* Shortest digits that read back as x (finite, > 0), like Python's repr
 * (David Gay's dtoa mode 0).  printf's "%.*e" rounds exactly, so the first
 * precision whose output reads back is the shortest, and it is the closest
 * of that length.  One twist: just above a power of two the gap below x is
 * half the gap above, so the closest candidate may lie below and miss while
 * the next one up still reads back; dtoa takes that one, so do we. */
static int ptm_json_shortest(double x, char *dig, int *exp10)
{
    char f[48], up[24];
    int p, n = 0, k;
    double y;

    /* Below 15 digits there is nothing to find that 15 would miss: if a
     * shorter decimal read back, so would its 15-digit padding, and that is
     * what printf rounds x to (DBL_DIG; not so for subnormals). */
    for (p = x >= DBL_MIN ? DBL_DIG - 1 : 0; p <= 16; p++) {
        snprintf(f, sizeof(f), "%.*e", p, x);
        n = ptm_json_split_e(f, dig, exp10);
        y = ptm_json_read_back(dig, n, *exp10);
        if (y == x) {
            break;
        }
        if (y < x) {
            int e = *exp10;

            memcpy(up, dig, (size_t)n);
            for (k = n - 1; k >= 0 && up[k] == '9'; k--) {
                up[k] = '0';
            }
            if (k >= 0) {
                up[k]++;
            }
            else {
                up[0] = '1';    /* 99 -> 10, one decade up */
                e++;
            }
            if (ptm_json_read_back(up, n, e) == x) {
                memcpy(dig, up, (size_t)n);
                *exp10 = e;
                break;
            }
        }
    }
    while (n > 1 && dig[n - 1] == '0') {
        n--;
    }
    return n;
}

void ptm_json_dump_real(ptm_buf_t *out, double d)
{
    char dig[24];
    int n, e, k;

    if (isnan(d)) {
        ptm_buf_puts(out, "nan");
        return;
    }
    if (signbit(d)) {
        ptm_buf_putc(out, '-');
        d = -d;
    }
    if (isinf(d)) {
        ptm_buf_puts(out, "inf");
        return;
    }
    if (d == 0.0) {
        ptm_buf_puts(out, "0.0");
        return;
    }
    if ((n = ptm_json_short_decimal(d, dig, &e)) == 0) {
        n = ptm_json_shortest(d, dig, &e);
    }

    /* float_repr_style "short" with repr's rules: exponent form when the
     * decimal exponent is below -4 or at least 16. */
    if (e < -4 || e >= 16) {
        int ae = e < 0 ? -e : e;    /* at most 324 */

        ptm_buf_putc(out, dig[0]);
        if (n > 1) {
            ptm_buf_putc(out, '.');
            ptm_buf_add(out, dig + 1, (size_t)n - 1);
        }
        ptm_buf_putc(out, 'e');
        ptm_buf_putc(out, e < 0 ? '-' : '+');
        if (ae >= 100) {
            ptm_buf_putc(out, (char)('0' + ae / 100));
        }
        ptm_buf_putc(out, (char)('0' + ae / 10 % 10));
        ptm_buf_putc(out, (char)('0' + ae % 10));
    }
    else if (e < 0) {
        ptm_buf_add(out, "0.", 2);
        for (k = e + 1; k < 0; k++) {
            ptm_buf_putc(out, '0');
        }
        ptm_buf_add(out, dig, (size_t)n);
    }
    else if (n <= e + 1) {
        ptm_buf_add(out, dig, (size_t)n);
        for (k = n; k <= e; k++) {
            ptm_buf_putc(out, '0');
        }
        ptm_buf_add(out, ".0", 2);
    }
    else {
        ptm_buf_add(out, dig, (size_t)e + 1);
        ptm_buf_putc(out, '.');
        ptm_buf_add(out, dig + e + 1, (size_t)(n - e - 1));
    }
}

int ptm_json_dump(ptm_buf_t *out, const json_t *v)
{
    size_t i, n;
    void *it;
    double d;

    if (v == NULL) {
        return -1;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        ptm_buf_putc(out, '{');
        /* jansson keeps insertion order; keys may contain NUL, hence the
         * length-aware accessors. */
        it = json_object_iter((json_t *)v);
        for (i = 0; it != NULL; i++) {
            if (i > 0) {
                ptm_buf_putc(out, ',');
            }
            ptm_json_dump_string(out, json_object_iter_key(it),
                                 json_object_iter_key_len(it));
            ptm_buf_putc(out, ':');
            if (ptm_json_dump(out, json_object_iter_value(it)) != 0) {
                return -1;
            }
            it = json_object_iter_next((json_t *)v, it);
        }
        ptm_buf_putc(out, '}');
        return 0;
    case JSON_ARRAY:
        ptm_buf_putc(out, '[');
        n = json_array_size(v);
        for (i = 0; i < n; i++) {
            if (i > 0) {
                ptm_buf_putc(out, ',');
            }
            if (ptm_json_dump(out, json_array_get(v, i)) != 0) {
                return -1;
            }
        }
        ptm_buf_putc(out, ']');
        return 0;
    case JSON_STRING:
        ptm_json_dump_string(out, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_INTEGER:
        ptm_buf_put_int(out, json_integer_value(v));
        return 0;
    case JSON_REAL:
        d = json_real_value(v);
        if (!isfinite(d)) {
            return -1;
        }
        ptm_json_dump_real(out, d);
        return 0;
    case JSON_TRUE:
        ptm_buf_add(out, "true", 4);
        return 0;
    case JSON_FALSE:
        ptm_buf_add(out, "false", 5);
        return 0;
    case JSON_NULL:
        ptm_buf_add(out, "null", 4);
        return 0;
    }
    return -1;
}

int ptm_json_truthy(const json_t *v)
{
    if (v == NULL) {
        return 0;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return json_object_size(v) > 0;
    case JSON_ARRAY:
        return json_array_size(v) > 0;
    case JSON_STRING:
        return json_string_length(v) > 0;
    case JSON_INTEGER:
        return json_integer_value(v) != 0;
    case JSON_REAL:
        return json_real_value(v) != 0.0;   /* NaN is truthy, as in Python */
    case JSON_TRUE:
        return 1;
    case JSON_FALSE:
    case JSON_NULL:
        return 0;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Python repr() of a str
 */

/* Non-ASCII code points str.isprintable() calls non-printable: categories
 * Cc, Cf, Cs, Co, Zl, Zp and Zs (space excepted), as of Unicode 15.0
 * (Python 3.12).  Cn (unassigned) is approximated: only the
 * noncharacters (handled in code) and the large unassigned blocks are
 * listed (U+2FA1E..U+2FFFF, U+323B0..U+E00FF except the tag characters
 * which are Cf anyway, U+E01F0 up); other unassigned code points (about
 * 100,000 scattered over planes 0-3) are printed raw where Python would
 * escape them.  Only Unicode versions differ there, and they are not
 * names anyone sends.  Surrogates cannot occur (the input is UTF-8). */
static const struct {
    unsigned long lo, hi;
} ptm_json_nonprint[] = {
    {0x007f, 0x00a0}, {0x00ad, 0x00ad}, {0x0600, 0x0605}, {0x061c, 0x061c},
    {0x06dd, 0x06dd}, {0x070f, 0x070f}, {0x0890, 0x0891}, {0x08e2, 0x08e2},
    {0x1680, 0x1680}, {0x180e, 0x180e}, {0x2000, 0x200f}, {0x2028, 0x202f},
    {0x205f, 0x2064}, {0x2066, 0x206f}, {0x3000, 0x3000}, {0xd800, 0xf8ff},
    {0xfdd0, 0xfdef}, {0xfeff, 0xfeff}, {0xfff9, 0xfffb},
    {0x110bd, 0x110bd}, {0x110cd, 0x110cd}, {0x13430, 0x1343f},
    {0x1bca0, 0x1bca3}, {0x1d173, 0x1d17a}, {0x2fa1e, 0x2ffff},
    {0x323b0, 0xe00ff}, {0xe01f0, 0x10ffff},
};

static int ptm_json_printable(unsigned long cp)
{
    size_t lo = 0;
    size_t hi = sizeof(ptm_json_nonprint) / sizeof(ptm_json_nonprint[0]);

    if ((cp & 0xfffe) == 0xfffe) {
        return 0;               /* U+xFFFE, U+xFFFF: noncharacters */
    }
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;

        if (cp < ptm_json_nonprint[mid].lo) {
            hi = mid;
        }
        else if (cp > ptm_json_nonprint[mid].hi) {
            lo = mid + 1;
        }
        else {
            return 0;
        }
    }
    return 1;
}

/* Invalid UTF-8 is read as U+FFFD per bad subpart, like the path segment
 * Python would have decoded with errors="replace". */
void ptm_json_py_repr(ptm_buf_t *out, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i;
    int squote = 0, dquote = 0;
    char quote = '\'', u8[4];
    long cp;

    for (i = 0; i < len; i++) {
        squote |= u[i] == '\'';
        dquote |= u[i] == '"';
    }
    if (squote && !dquote) {
        quote = '"';
    }
    ptm_buf_putc(out, quote);
    i = 0;
    while (i < len) {
        cp = ptm_utf8_next(u, len, &i);
        if (cp < 0) {
            cp = 0xfffd;
        }
        if (cp == quote || cp == '\\') {
            ptm_buf_putc(out, '\\');
            ptm_buf_putc(out, (char)cp);
        }
        else if (cp == '\t') {
            ptm_buf_add(out, "\\t", 2);
        }
        else if (cp == '\n') {
            ptm_buf_add(out, "\\n", 2);
        }
        else if (cp == '\r') {
            ptm_buf_add(out, "\\r", 2);
        }
        else if (cp < 0x20 || cp == 0x7f) {
            ptm_json_put_hex(out, "\\x", (unsigned long)cp, 2);
        }
        else if (cp < 0x7f) {
            ptm_buf_putc(out, (char)cp);
        }
        else if (ptm_json_printable((unsigned long)cp)) {
            ptm_buf_add(out, u8, ptm_utf8_put(u8, (unsigned long)cp));
        }
        else if (cp < 0x100) {
            ptm_json_put_hex(out, "\\x", (unsigned long)cp, 2);
        }
        else if (cp < 0x10000) {
            ptm_json_put_hex(out, "\\u", (unsigned long)cp, 4);
        }
        else {
            ptm_json_put_hex(out, "\\U", (unsigned long)cp, 8);
        }
    }
    ptm_buf_putc(out, quote);
}

/* ------------------------------------------------------------------------
 * Well-formedness, without building values
 * ------------------------------------------------------------------------ */

static size_t skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n'
                     || s[i] == '\r')) {
        i++;
    }
    return i;
}

/* 1 for the bytes wf_string must look at: controls, '"' and '\\'. */
static const unsigned char wf_special[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};

/* The end of the string literal starting at s[i] == '"', or 0. */
static size_t wf_string(const char *s, size_t i, size_t n)
{
    const unsigned char *us = (const unsigned char *)s;
    long cp;

    for (i++; i < n; i++) {
        unsigned char c;

        /* Past the bytes that need no look (bytes of UTF-8 are checked
         * apart): a table beats anything wider on strings this short. */
        while (i < n && !wf_special[us[i]]) {
            i++;
        }
        if (i >= n) {
            break;
        }
        c = (unsigned char)s[i];
        if (c == '"') {
            return i + 1;
        }
        if (c < 0x20) {
            return 0;
        }
        if (c == '\\') {
            if (++i >= n) {
                return 0;
            }
            if (s[i] == 'u') {
                if (i + 4 >= n || (cp = ptm_json_hex4(us + i + 1)) < 0) {
                    return 0;
                }
                i += 4;
                /* A surrogate only as a high-low pair, as the parser
                 * takes it (SPEC 11.3 F9). */
                if (cp >= 0xdc00 && cp <= 0xdfff) {
                    return 0;
                }
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (i + 6 >= n || s[i + 1] != '\\' || s[i + 2] != 'u'
                        || (cp = ptm_json_hex4(us + i + 3)) < 0xdc00
                        || cp > 0xdfff) {
                        return 0;
                    }
                    i += 6;
                }
            }
            else if (!strchr("\"\\/bfnrt", s[i]) || !s[i]) {
                return 0;
            }
        }
    }
    return 0;
}

static size_t wf_digits(const char *s, size_t i, size_t n)
{
    size_t start = i;

    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
    }
    return i > start ? i : 0;
}

/* The end of the number starting at s[i], or 0.  Like the parser, an
 * integer must fit int64 and a float a double (SPEC 11.3 F7). */
static size_t wf_number(const char *s, size_t i, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t start = i;
    int is_float = 0;
    json_int_t iv;
    double dv;

    if (s[i] == '-') {
        i++;
    }
    if (i < n && s[i] == '0') {
        i++;
    }
    else if (!(i = wf_digits(s, i, n))) {
        return 0;
    }
    if (i < n && s[i] == '.') {
        is_float = 1;
        if (!(i = wf_digits(s, i + 1, n))) {
            return 0;
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        is_float = 1;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            i++;
        }
        if (!(i = wf_digits(s, i, n))) {
            return 0;
        }
    }
    if (is_float ? ptm_json_to_double(u, start, i, &dv) != 0
                 : ptm_json_to_int(u, start, i, &iv) != 0) {
        return 0;
    }
    return i;
}

int ptm_json_well_formed(const char *s, size_t len)
{
    /* One byte per open container: '{' or '['. */
    char stack[PTM_JSON_MAX_DEPTH];
    size_t depth = 0, i = 0, e;

    if (!ptm_utf8_valid(s, len)) {
        return 0;
    }
    for (;;) {
        /* A value. */
        i = skip_ws(s, i, len);
        if (i >= len) {
            return 0;
        }
        if (s[i] == '{' || s[i] == '[') {
            if (depth == PTM_JSON_MAX_DEPTH) {
                return 0;
            }
            stack[depth++] = s[i];
            i = skip_ws(s, i + 1, len);
            if (i < len && s[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
                depth--;
                i++;
                goto after_value;
            }
            if (stack[depth - 1] == '[') {
                continue;
            }
            goto key;
        }
        if (s[i] == '"') {
            e = wf_string(s, i, len);
        }
        else if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
            e = wf_number(s, i, len);
        }
        else if (len - i >= 4 && memcmp(s + i, "true", 4) == 0) {
            e = i + 4;
        }
        else if (len - i >= 5 && memcmp(s + i, "false", 5) == 0) {
            e = i + 5;
        }
        else if (len - i >= 4 && memcmp(s + i, "null", 4) == 0) {
            e = i + 4;
        }
        else {
            return 0;
        }
        if (!e) {
            return 0;
        }
        i = e;

    after_value:
        for (;;) {
            i = skip_ws(s, i, len);
            if (depth == 0) {
                return i == len;
            }
            if (i >= len) {
                return 0;
            }
            if (s[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
                depth--;
                i++;
                continue;
            }
            if (s[i] != ',') {
                return 0;
            }
            i++;
            break;
        }
        if (stack[depth - 1] == '[') {
            continue;
        }

    key:
        /* An object member: "key" : value. */
        i = skip_ws(s, i, len);
        if (i >= len || s[i] != '"' || !(i = wf_string(s, i, len))) {
            return 0;
        }
        i = skip_ws(s, i, len);
        if (i >= len || s[i] != ':') {
            return 0;
        }
        i++;
    }
}

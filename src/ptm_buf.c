/* Growable pool buffer; see ptm_buf.h. */
#include <string.h>
#include "ptm_buf.h"

void ptm_buf_init(ptm_buf_t *b, apr_pool_t *p, size_t cap)
{
    if (cap < 64) {
        cap = 64;
    }
    b->pool = p;
    b->cap = cap;
    b->len = 0;
    b->data = apr_palloc(p, cap);
}

char *ptm_buf_reserve(ptm_buf_t *b, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap * 2;
        char *d;
        while (cap < b->len + n) {
            cap *= 2;
        }
        d = apr_palloc(b->pool, cap);
        memcpy(d, b->data, b->len);
        b->data = d;
        b->cap = cap;
    }
    return b->data + b->len;
}

void ptm_buf_add(ptm_buf_t *b, const void *s, size_t n)
{
    memcpy(ptm_buf_reserve(b, n), s, n);
    b->len += n;
}

apr_status_t ptm_buf_add_capped(ptm_buf_t *b, const void *s, size_t n,
                                size_t limit)
{
    /* Compared without adding: len + n could wrap a 32-bit size_t. */
    if (b->len > limit || n > limit - b->len) {
        return APR_ENOSPC;
    }
    if (n >= b->cap - b->len) {
        size_t want = b->len + n + 1;   /* <= limit + 1: no wrap */
        size_t cap = b->cap;
        char *d;

        while (cap < want) {
            cap = cap > limit / 2 ? limit + 1 : cap * 2;
        }
        d = apr_palloc(b->pool, cap);
        memcpy(d, b->data, b->len);
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return APR_SUCCESS;
}

void ptm_buf_puts(ptm_buf_t *b, const char *s)
{
    ptm_buf_add(b, s, strlen(s));
}

void ptm_buf_putc(ptm_buf_t *b, char c)
{
    *ptm_buf_reserve(b, 1) = c;
    b->len++;
}

size_t ptm_fmt_u64(char *out, unsigned long long v)
{
    char tmp[20];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    return n;
}

void ptm_buf_put_int(ptm_buf_t *b, long long v)
{
    char *d = ptm_buf_reserve(b, 21);

    if (v < 0) {
        *d++ = '-';
        b->len++;
        /* -(v + 1) + 1: LLONG_MIN has no positive long long */
        b->len += ptm_fmt_u64(d, (unsigned long long)-(v + 1) + 1);
    }
    else {
        b->len += ptm_fmt_u64(d, (unsigned long long)v);
    }
}

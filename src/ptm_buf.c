/* Growable pool buffer; see ptm_buf.h. */
#include <string.h>
#include <stdio.h>
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

void ptm_buf_puts(ptm_buf_t *b, const char *s)
{
    ptm_buf_add(b, s, strlen(s));
}

void ptm_buf_putc(ptm_buf_t *b, char c)
{
    *ptm_buf_reserve(b, 1) = c;
    b->len++;
}

void ptm_buf_put_int(ptm_buf_t *b, long long v)
{
    char *d = ptm_buf_reserve(b, 24);
    b->len += (size_t)snprintf(d, 24, "%lld", v);
}

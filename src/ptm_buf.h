/* A growable byte buffer in a pool: the serialisers append to it, and the
 * finished bytes are handed to the response, the file and the shared state.
 * Pool-backed so a request never has to free anything on its error paths. */
#ifndef PTM_BUF_H
#define PTM_BUF_H

#include <stddef.h>
#include <apr_errno.h>
#include <apr_pools.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    apr_pool_t *pool;
} ptm_buf_t;

/** Start an empty buffer of at least `cap` bytes. */
void ptm_buf_init(ptm_buf_t *b, apr_pool_t *p, size_t cap);

/** Append `n` bytes (the buffer grows by doubling; old blocks stay in the pool). */
void ptm_buf_add(ptm_buf_t *b, const void *s, size_t n);

/** Append `n` bytes unless the buffer would then hold more than `limit`
 * bytes: APR_ENOSPC, and nothing is appended.  Grows by doubling from the
 * size it was started with, but never beyond `limit` + 1 (the one byte is
 * room for a terminating NUL, always there after a success), so memory
 * follows the bytes that arrived, not what a client announced.  `limit`
 * is at most SIZE_MAX - 1 (ptm_conf_body_limit). */
apr_status_t ptm_buf_add_capped(ptm_buf_t *b, const void *s, size_t n,
                                size_t limit);

/** Append a NUL-terminated string. */
void ptm_buf_puts(ptm_buf_t *b, const char *s);

/** Append one byte. */
void ptm_buf_putc(ptm_buf_t *b, char c);

/** Append a signed decimal integer. */
void ptm_buf_put_int(ptm_buf_t *b, long long v);

/** Write v in decimal at `out` (room for 20 bytes, no NUL); returns the
 * length. */
size_t ptm_fmt_u64(char *out, unsigned long long v);

/** Make room for `n` more bytes and return where they go (len is not moved). */
char *ptm_buf_reserve(ptm_buf_t *b, size_t n);

#endif

/* Server-Sent Events framing (the WHATWG "text/event-stream" format) for
 * GET /stream (SPEC §12.3), and the event ids `<epoch>-<n>` it carries. */
#ifndef PTM_SSE_H
#define PTM_SSE_H

#include <stdint.h>
#include <stddef.h>
#include "ptm_buf.h"

/**
 * Append one event: `id: <epoch>-<n>` when `has_id`, `event: <name>` when
 * `name` is not NULL, `data` as one `data:` line per line of it (a CR, LF
 * or CRLF in `data` starts a new `data:` line, so nothing in it can end
 * the event or forge a field; envelopes are one line, so one `data:`),
 * then the blank line that dispatches it.
 */
void ptm_sse_event(ptm_buf_t *b, int has_id, uint64_t epoch, uint64_t n,
                   const char *name, const char *data, size_t len);

/** Append `retry: <ms>` as an event of its own (the client's reconnection
 * delay). */
void ptm_sse_retry(ptm_buf_t *b, unsigned ms);

/** Append a comment line `: <text>` and a blank line (`: ping`). */
void ptm_sse_comment(ptm_buf_t *b, const char *text);

/** Append `<epoch>-<n>` (the id's text, as in cursors and logs). */
void ptm_sse_put_id(ptm_buf_t *b, uint64_t epoch, uint64_t n);

/** Parse an id `<epoch>-<n>` (decimal digits, no sign, no spaces, each
 * within uint64).  Returns 0, or -1 when `s[0..len)` is not one. */
int ptm_sse_parse_id(const char *s, size_t len, uint64_t *epoch,
                     uint64_t *n);

/** 1 when an Accept header value names text/event-stream (media ranges
 * compared case-insensitively, parameters ignored, q=0 refuses). */
int ptm_sse_accepts(const char *accept);

#endif

/* The prefix of a line as the module writes it (ptm_store_event):
 * {"seq":N,"ts":"..","stream":"site" (or "run"),"type":"..","data":...},
 * read without a JSON parser.  GET /events reads it from the files' lines
 * (the User's: a line of another shape is damage, not an error), and the
 * ring checks it once for each record it takes from an old state (a ring
 * line is then served by its record's numbers alone).  Pure functions:
 * no I/O, no allocation. */
#ifndef PTM_LINE_H
#define PTM_LINE_H

#include <stdint.h>
#include <string.h>
#include <apr_time.h>

typedef struct {
    uint64_t seq;
    apr_time_t ts;              /* PTM_TS_NONE when not a time (set apart:
                                 * ptm_hist_line_ts) */
    int stream;                 /* 0 "site", 1 "run": PTM_STREAM_SITE and
                                 * PTM_STREAM_RUN (ptm_ring.c checks) */
    size_t ts_off, ts_len;      /* the ts string, without its quotes */
    size_t type_off, type_len;  /* the type's JSON string, quotes included */
    size_t rest;                /* just after it: ,"data":... */
} ptm_line_t;

/** Parse the prefix of s[0..n) (and see a closing brace at its end).
 * Returns 0, or -1 for a line of another shape. */
int ptm_line_parse(ptm_line_t *l, const char *s, size_t n);

/** Past the JSON string at s[i] (a '"'); n + 1 when it does not end. */
size_t ptm_line_skip_string(const char *s, size_t i, size_t n);

/* 1 if s[i..n) starts with lit[0..len). */
static inline int ptm_line_has(const char *s, size_t n, size_t i,
                               const char *lit, size_t len)
{
    return i <= n && n - i >= len && memcmp(s + i, lit, len) == 0;
}
#define PTM_LINE_HAS(s, n, i, lit) \
    ptm_line_has(s, n, i, lit, sizeof(lit) - 1)

#endif

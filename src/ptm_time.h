/* Time stamps and the site day key (SPEC §4, §6).  Kept apart so the unit
 * tests can pin the clock and the time zone. */
#ifndef PTM_TIME_H
#define PTM_TIME_H

#include <apr_time.h>

#define PTM_TS_LEN 24       /* "YYYY-MM-DDTHH:MM:SS.mmmZ" */
#define PTM_DAYKEY_LEN 8    /* "YYYYMMDD" */

/** Write the UTC stamp of `now` with milliseconds truncated, NUL-terminated
 * (`out` holds PTM_TS_LEN + 1 bytes). */
void ptm_time_utc_iso(char *out, apr_time_t now);

/**
 * Write the site-file day key of `now`: the local date (process TZ), minus
 * one day before 12:00 local, NUL-terminated (`out` holds
 * PTM_DAYKEY_LEN + 1 bytes).  Returns APR_SUCCESS or the error of
 * apr_time_exp_lt.
 */
apr_status_t ptm_time_day_key(char *out, apr_time_t now);

/**
 * Parse an RFC 3339 date-time: YYYY-MM-DD, 'T' (or 't' or one space),
 * HH:MM:SS, an optional fraction of any length (kept to the microsecond,
 * truncated), then 'Z', 'z' or +HH:MM / -HH:MM.  With `lenient`, a missing
 * offset means UTC (event ts of clients that leave it out).  `s` need not
 * be NUL-terminated.  Returns 0 with `*out` (microseconds since the epoch,
 * UTC), or -1, also for a field out of range: year 0000, month 13,
 * February 30, 24:00, a leap second (:60), an offset of 24 hours or more.
 */
int ptm_time_parse_rfc3339(apr_time_t *out, const char *s, size_t n,
                           int lenient);

/**
 * Parse a duration: one or more <digits><unit> with unit s, m, h, d or w
 * ("90s", "15m", "24h", "7d", "1h30m"), greater than zero and at most
 * 100 years of 365.25 days; no sign, no spaces, units in lower case.
 * Returns 0 with `*out` (microseconds), or -1.
 */
int ptm_time_parse_duration(apr_interval_time_t *out, const char *s,
                            size_t n);

#endif

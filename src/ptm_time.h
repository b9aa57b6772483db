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

#endif

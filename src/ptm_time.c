/* UTC stamps and the noon-boundary day key; see ptm_time.h. */
#include "ptm_time.h"

/* Write v as exactly `width` decimal digits (v < 10^width). */
static void put_digits(char *out, unsigned long v, int width)
{
    while (width-- > 0) {
        out[width] = (char)('0' + v % 10);
        v /= 10;
    }
}

void ptm_time_utc_iso(char *out, apr_time_t now)
{
    apr_time_exp_t t;

    apr_time_exp_gmt(&t, now);
    /* tm_usec / 1000 truncates, as upstream's isoformat()[:23] does.  A
     * year outside 0..9999 (no clock says so) keeps its last four digits:
     * the stamp has a fixed width. */
    put_digits(out, (unsigned long)(t.tm_year + 1900) % 10000, 4);
    out[4] = '-';
    put_digits(out + 5, (unsigned long)t.tm_mon + 1, 2);
    out[7] = '-';
    put_digits(out + 8, (unsigned long)t.tm_mday, 2);
    out[10] = 'T';
    put_digits(out + 11, (unsigned long)t.tm_hour, 2);
    out[13] = ':';
    put_digits(out + 14, (unsigned long)t.tm_min, 2);
    out[16] = ':';
    put_digits(out + 17, (unsigned long)t.tm_sec, 2);
    out[19] = '.';
    put_digits(out + 20, (unsigned long)t.tm_usec / 1000, 3);
    out[23] = 'Z';
    out[PTM_TS_LEN] = '\0';
}

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (Howard
 * Hinnant's civil algorithms).  Calendar arithmetic rather than
 * "now - 12h" keeps the key right on days when DST shifts the clock. */
static long days_from_civil(long y, unsigned m, unsigned d)
{
    long era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long)doe - 719468;
}

static void civil_from_days(long z, long *y, unsigned *m, unsigned *d)
{
    long era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (long)yoe + era * 400 + (*m <= 2);
}

apr_status_t ptm_time_day_key(char *out, apr_time_t now)
{
    apr_time_exp_t t;
    apr_status_t rv;
    long y;
    unsigned m, d;

    rv = apr_time_exp_lt(&t, now);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    y = t.tm_year + 1900;
    m = (unsigned)t.tm_mon + 1;
    d = (unsigned)t.tm_mday;
    if (t.tm_hour < 12) {
        civil_from_days(days_from_civil(y, m, d) - 1, &y, &m, &d);
    }
    put_digits(out, (unsigned long)y % 10000, 4);
    put_digits(out + 4, m, 2);
    put_digits(out + 6, d, 2);
    out[PTM_DAYKEY_LEN] = '\0';
    return APR_SUCCESS;
}

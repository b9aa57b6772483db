/* UTC stamps and the noon-boundary day key, and the two forms a client
 * names a time in (RFC 3339 date-times and durations such as "15m"); see
 * ptm_time.h. */
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

/* ---- parsing ----------------------------------------------------------- */

static int is_digit(char c)
{
    /* Not isdigit(): that follows the locale. */
    return c >= '0' && c <= '9';
}

/* Read exactly `width` digits at s[*i] into *v and move *i past them. */
static int get_digits(unsigned *v, const char *s, size_t n, size_t *i,
                      int width)
{
    unsigned r = 0;

    if (n - *i < (size_t)width) {
        return -1;
    }
    while (width-- > 0) {
        if (!is_digit(s[*i])) {
            return -1;
        }
        r = r * 10 + (unsigned)(s[(*i)++] - '0');
    }
    *v = r;
    return 0;
}

static int get_char(const char *s, size_t n, size_t *i, char c)
{
    if (*i >= n || s[*i] != c) {
        return -1;
    }
    (*i)++;
    return 0;
}

static unsigned days_in_month(unsigned y, unsigned m)
{
    static const unsigned char days[12] = { 31, 28, 31, 30, 31, 30,
                                            31, 31, 30, 31, 30, 31 };

    if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) {
        return 29;
    }
    return days[m - 1];
}

/* The form the module writes, YYYY-MM-DDTHH:MM:SS.mmmZ (nearly every ts
 * in a file: GET /events reads one per line), read at once: 1 and `*out`,
 * -1 for a stamp of this form that is not a time, 0 for another form. */
static int parse_canonical(apr_time_t *out, const char *s, size_t n)
{
    static const unsigned char at[17] = { 0, 1, 2, 3, 5, 6, 8, 9, 11, 12,
                                          14, 15, 17, 18, 20, 21, 22 };
    unsigned v[17], y, mo, d, h, mi, sec;
    int k;

    if (n != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T'
        || s[13] != ':' || s[16] != ':' || s[19] != '.' || s[23] != 'Z') {
        return 0;
    }
    for (k = 0; k < 17; k++) {
        if (!is_digit(s[at[k]])) {
            return 0;
        }
        v[k] = (unsigned)(s[at[k]] - '0');
    }
    y = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3];
    mo = v[4] * 10 + v[5];
    d = v[6] * 10 + v[7];
    h = v[8] * 10 + v[9];
    mi = v[10] * 10 + v[11];
    sec = v[12] * 10 + v[13];
    /* As below. */
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)
        || h > 23 || mi > 59 || sec > 59) {
        return -1;
    }
    *out = ((apr_int64_t)days_from_civil((long)y, mo, d) * 86400
            + (apr_int64_t)h * 3600 + mi * 60 + sec) * APR_USEC_PER_SEC
           + (apr_int64_t)(v[14] * 100 + v[15] * 10 + v[16]) * 1000;
    return 1;
}

int ptm_time_parse_rfc3339(apr_time_t *out, const char *s, size_t n,
                           int lenient)
{
    size_t i = 0;
    unsigned y, mo, d, h, mi, sec, oh, om;
    apr_int64_t usec = 0, scale = 100000, off = 0, secs;
    int c = parse_canonical(out, s, n);

    if (c) {
        return c > 0 ? 0 : -1;
    }

    if (get_digits(&y, s, n, &i, 4) || get_char(s, n, &i, '-')
        || get_digits(&mo, s, n, &i, 2) || get_char(s, n, &i, '-')
        || get_digits(&d, s, n, &i, 2)) {
        return -1;
    }
    /* RFC 3339 §5.6 allows 't' and, by its note, one space. */
    if (i >= n || (s[i] != 'T' && s[i] != 't' && s[i] != ' ')) {
        return -1;
    }
    i++;
    if (get_digits(&h, s, n, &i, 2) || get_char(s, n, &i, ':')
        || get_digits(&mi, s, n, &i, 2) || get_char(s, n, &i, ':')
        || get_digits(&sec, s, n, &i, 2)) {
        return -1;
    }
    if (i < n && s[i] == '.') {
        /* Any number of digits, at least one; what lies beyond the
         * microsecond is dropped (truncated, like the stamps we write). */
        if (++i >= n || !is_digit(s[i])) {
            return -1;
        }
        for (; i < n && is_digit(s[i]); i++) {
            usec += (s[i] - '0') * scale;
            scale /= 10;
        }
    }
    if (i == n) {
        if (!lenient) {
            return -1;
        }
    }
    else if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    }
    else if (s[i] == '+' || s[i] == '-') {
        int west = s[i++] == '-';

        if (get_digits(&oh, s, n, &i, 2) || get_char(s, n, &i, ':')
            || get_digits(&om, s, n, &i, 2) || oh > 23 || om > 59) {
            return -1;
        }
        off = (apr_int64_t)oh * 3600 + om * 60;
        if (west) {
            off = -off;
        }
    }
    else {
        return -1;
    }
    /* Year 0000 is not a year of RFC 3339's grammar; a leap second (60)
     * has no instant of its own on a POSIX clock, so it is refused rather
     * than folded into the next second. */
    if (i != n || y < 1 || mo < 1 || mo > 12 || d < 1
        || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59) {
        return -1;
    }
    secs = (apr_int64_t)days_from_civil((long)y, mo, d) * 86400
           + (apr_int64_t)h * 3600 + mi * 60 + sec - off;
    *out = secs * APR_USEC_PER_SEC + usec;
    return 0;
}

/* 100 years of 365.25 days, in seconds. */
#define PTM_DURATION_MAX_SEC (APR_INT64_C(36525) * 86400)

int ptm_time_parse_duration(apr_interval_time_t *out, const char *s,
                            size_t n)
{
    apr_int64_t total = 0, v, unit;
    size_t i = 0, start;

    if (n == 0) {
        return -1;
    }
    while (i < n) {
        v = 0;
        for (start = i; i < n && is_digit(s[i]); i++) {
            /* Past the maximum the exact count does not matter: v stops
             * growing below 10 x the maximum + 10, so that neither v, nor
             * v x a week, nor the sum below (at most the maximum before
             * it) comes near 2^63 whatever the number of digits. */
            if (v <= PTM_DURATION_MAX_SEC) {
                v = v * 10 + (s[i] - '0');
            }
        }
        if (i == start || i == n) {
            return -1;
        }
        switch (s[i++]) {
        case 's':
            unit = 1;
            break;
        case 'm':
            unit = 60;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'd':
            unit = 86400;
            break;
        case 'w':
            unit = 7 * 86400;
            break;
        default:
            return -1;
        }
        total += v * unit;
        if (total > PTM_DURATION_MAX_SEC) {
            return -1;
        }
    }
    if (total == 0) {
        return -1;
    }
    *out = total * APR_USEC_PER_SEC;
    return 0;
}

/* Unit tests for ptm_time (SPEC §4 day key, §6 timestamps, §12.2 times
 * and durations): the UTC stamp truncates to milliseconds, and the day key
 * is the local date minus one day before 12:00 local, in the process time
 * zone, including DST change days and month, year and leap-day boundaries.
 * RFC 3339 date-times and durations parse to the instants and widths below,
 * and every malformed or out-of-range form is refused.
 *
 * Expected instants were computed independently with Python's zoneinfo
 * (datetime(..., tzinfo=ZoneInfo(tz), fold=...).timestamp()), so the tables
 * do not lean on the code under test or on mktime(). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <apr_general.h>
#include "ptm_time.h"

/* ---- helpers ------------------------------------------------------------ */

static char *saved_tz;

static void set_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static int group_setup(void **state)
{
    const char *tz = getenv("TZ");

    saved_tz = tz ? strdup(tz) : NULL;
    return apr_initialize() == APR_SUCCESS ? 0 : -1;
}

static int group_teardown(void **state)
{
    if (saved_tz) {
        set_tz(saved_tz);
        free(saved_tz);
    }
    else {
        unsetenv("TZ");
        tzset();
    }
    apr_terminate();
    return 0;
}

/* The zone database must know the zone, or every case below is vacuous:
 * an unknown TZ silently behaves like UTC. */
static void require_zone(const char *tz)
{
    char path[256];
    FILE *f;

    if (strcmp(tz, "UTC") == 0) {
        return;
    }
    snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", tz);
    f = fopen(path, "rb");
    if (!f) {
        fail_msg("time zone data for %s is missing (%s)", tz, path);
    }
    fclose(f);
}

/* ---- ptm_time_utc_iso ---------------------------------------------------- */

typedef struct {
    apr_time_t now;
    const char *want;
} iso_case_t;

static const iso_case_t iso_cases[] = {
    { APR_INT64_C(0), "1970-01-01T00:00:00.000Z" },
    /* Truncated, never rounded up into the next second. */
    { APR_INT64_C(999999), "1970-01-01T00:00:00.999Z" },
    { APR_INT64_C(999), "1970-01-01T00:00:00.000Z" },
    { APR_INT64_C(1000), "1970-01-01T00:00:00.001Z" },
    { APR_INT64_C(1999), "1970-01-01T00:00:00.001Z" },
    { APR_INT64_C(1773778500123456), "2026-03-17T20:15:00.123Z" },
    { APR_INT64_C(1773778500000000), "2026-03-17T20:15:00.000Z" },
    /* .999999 at the end of a day, a year and a leap day stays there. */
    { APR_INT64_C(1773791999999999), "2026-03-17T23:59:59.999Z" },
    { APR_INT64_C(1798761599999999), "2026-12-31T23:59:59.999Z" },
    { APR_INT64_C(1835481599999999), "2028-02-29T23:59:59.999Z" },
    { APR_INT64_C(1835438400000500), "2028-02-29T12:00:00.000Z" },
    { APR_INT64_C(253402300799999999), "9999-12-31T23:59:59.999Z" },
};

static void check_iso_table(const char *tz)
{
    size_t i;

    set_tz(tz);
    for (i = 0; i < sizeof(iso_cases) / sizeof(iso_cases[0]); i++) {
        char out[PTM_TS_LEN + 8];

        /* Canary: exactly PTM_TS_LEN bytes and a NUL are written. */
        memset(out, 'X', sizeof(out));
        ptm_time_utc_iso(out, iso_cases[i].now);
        if (strcmp(out, iso_cases[i].want) != 0) {
            fail_msg("TZ=%s utc_iso(%lld): got \"%s\", want \"%s\"", tz,
                     (long long)iso_cases[i].now, out, iso_cases[i].want);
        }
        assert_int_equal(strlen(out), PTM_TS_LEN);
        assert_int_equal(out[PTM_TS_LEN + 1], 'X');
    }
}

static void test_utc_iso_truncates_ms(void **state)
{
    check_iso_table("UTC");
}

/* The stamp is UTC whatever the process zone is. */
static void test_utc_iso_ignores_tz(void **state)
{
    require_zone("Asia/Kolkata");
    check_iso_table("Asia/Kolkata");
    require_zone("America/Santiago");
    check_iso_table("America/Santiago");
    require_zone("Pacific/Honolulu");
    check_iso_table("Pacific/Honolulu");
}

/* ---- ptm_time_day_key --------------------------------------------------- */

typedef struct {
    const char *tz;
    const char *local;      /* for messages: the local wall-clock time */
    apr_time_t now;
    const char *want;
} key_case_t;

#define U(usec) APR_INT64_C(usec)
#define UTC_ "UTC"
#define SCL "America/Santiago"
#define HNL "Pacific/Honolulu"
#define KOL "Asia/Kolkata"
#define BER "Europe/Berlin"

static const key_case_t key_cases[] = {
    /* UTC: noon and midnight, month, year and leap-day boundaries. */
    { UTC_, "2026-03-17 11:59:59.999999", U(1773748799999999), "20260316" },
    { UTC_, "2026-03-17 12:00:00.000", U(1773748800000000), "20260317" },
    { UTC_, "2026-03-17 00:00:00.000", U(1773705600000000), "20260316" },
    { UTC_, "2026-03-17 23:59:59.999999", U(1773791999999999), "20260317" },
    { UTC_, "2026-03-01 11:59:59.999", U(1772366399999000), "20260228" },
    { UTC_, "2026-03-01 12:00:00.000", U(1772366400000000), "20260301" },
    { UTC_, "2027-01-01 00:00:00.000", U(1798761600000000), "20261231" },
    { UTC_, "2027-01-01 11:59:59.999", U(1798804799999000), "20261231" },
    { UTC_, "2027-01-01 12:00:00.000", U(1798804800000000), "20270101" },
    { UTC_, "2028-02-29 11:59:59.999", U(1835438399999000), "20280228" },
    { UTC_, "2028-02-29 12:00:00.000", U(1835438400000000), "20280229" },
    { UTC_, "2028-03-01 00:00:00.000", U(1835481600000000), "20280229" },
    { UTC_, "2028-03-01 11:59:59.999", U(1835524799999000), "20280229" },
    { UTC_, "2028-03-01 12:00:00.000", U(1835524800000000), "20280301" },

    /* Chile: DST ends 2026-04-05 00:00 (23:xx happens twice on 04-04) and
     * starts 2026-09-06 00:00 (00:xx does not exist). */
    { SCL, "2026-03-17 11:59:59.999", U(1773759599999000), "20260316" },
    { SCL, "2026-03-17 12:00:00.000", U(1773759600000000), "20260317" },
    { SCL, "2026-03-17 21:30:00.000", U(1773793800000000), "20260317" },
    { SCL, "2026-04-04 23:30:00.000 (1st)", U(1775356200000000), "20260404" },
    { SCL, "2026-04-04 23:30:00.000 (2nd)", U(1775359800000000), "20260404" },
    { SCL, "2026-04-05 11:59:59.999", U(1775404799999000), "20260404" },
    { SCL, "2026-04-05 12:00:00.000", U(1775404800000000), "20260405" },
    { SCL, "2026-09-05 23:59:59.999", U(1788667199999000), "20260905" },
    { SCL, "2026-09-06 01:00:00.000", U(1788667200000000), "20260905" },
    { SCL, "2026-09-06 11:59:59.999", U(1788706799999000), "20260905" },
    { SCL, "2026-09-06 12:00:00.000", U(1788706800000000), "20260906" },
    { SCL, "2027-01-01 00:00:00.000", U(1798772400000000), "20261231" },
    { SCL, "2027-01-01 12:00:00.000", U(1798815600000000), "20270101" },

    /* Hawaii, UTC-10: the UTC date is often already the next day. */
    { HNL, "2026-03-17 11:59:59.999", U(1773784799999000), "20260316" },
    { HNL, "2026-03-17 12:00:00.000", U(1773784800000000), "20260317" },
    { HNL, "2026-03-17 14:00:00.000", U(1773792000000000), "20260317" },
    { HNL, "2026-12-31 18:00:00.000", U(1798776000000000), "20261231" },
    { HNL, "2028-02-29 13:59:59.999", U(1835481599999000), "20280229" },
    { HNL, "2028-02-29 14:00:00.000", U(1835481600000000), "20280229" },
    { HNL, "2028-03-01 11:59:59.999", U(1835560799999000), "20280229" },

    /* India, UTC+05:30 (a half-hour offset). */
    { KOL, "2026-03-17 11:59:59.999", U(1773728999999000), "20260316" },
    { KOL, "2026-03-17 12:00:00.000", U(1773729000000000), "20260317" },
    { KOL, "2026-03-18 00:00:00.000", U(1773772200000000), "20260317" },
    { KOL, "2026-03-17 05:00:00.000", U(1773703800000000), "20260316" },
    { KOL, "2027-01-01 05:29:59.999", U(1798761599999000), "20261231" },
    { KOL, "2028-03-01 11:59:59.999", U(1835504999999000), "20280229" },

    /* Berlin: 2026-03-29 02:00 -> 03:00 and 2026-10-25 03:00 -> 02:00.
     * "now - 12 h" would get 03-29 12:00 and 10-25 11:30 wrong. */
    { BER, "2026-03-29 01:59:59.999", U(1774745999999000), "20260328" },
    { BER, "2026-03-29 03:00:00.000", U(1774746000000000), "20260328" },
    { BER, "2026-03-29 11:59:59.999", U(1774778399999000), "20260328" },
    { BER, "2026-03-29 12:00:00.000", U(1774778400000000), "20260329" },
    { BER, "2026-03-29 23:59:59.999", U(1774821599999000), "20260329" },
    { BER, "2026-10-25 02:30:00.000 (1st)", U(1792888200000000), "20261024" },
    { BER, "2026-10-25 02:30:00.000 (2nd)", U(1792891800000000), "20261024" },
    { BER, "2026-10-25 11:30:00.000", U(1792924200000000), "20261024" },
    { BER, "2026-10-25 11:59:59.999", U(1792925999999000), "20261024" },
    { BER, "2026-10-25 12:00:00.000", U(1792926000000000), "20261025" },
    { BER, "2026-10-24 12:00:00.000", U(1792836000000000), "20261024" },
    { BER, "2026-10-24 11:59:59.999", U(1792835999999000), "20261023" },
};

static void run_key_cases(const char *only_tz)
{
    size_t i, ran = 0;

    for (i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
        const key_case_t *c = &key_cases[i];
        char out[PTM_DAYKEY_LEN + 8];
        apr_status_t rv;

        if (strcmp(c->tz, only_tz) != 0) {
            continue;
        }
        require_zone(c->tz);
        set_tz(c->tz);
        memset(out, 'X', sizeof(out));
        rv = ptm_time_day_key(out, c->now);
        if (rv != APR_SUCCESS) {
            fail_msg("TZ=%s %s: day_key returned %d", c->tz, c->local, rv);
        }
        if (strcmp(out, c->want) != 0) {
            fail_msg("TZ=%s %s (%lld): got \"%s\", want \"%s\"", c->tz,
                     c->local, (long long)c->now, out, c->want);
        }
        assert_int_equal(out[PTM_DAYKEY_LEN + 1], 'X');
        ran++;
    }
    assert_true(ran > 0);
}

static void test_day_key_utc(void **state)
{
    run_key_cases("UTC");
}

static void test_day_key_santiago(void **state)
{
    run_key_cases("America/Santiago");
}

static void test_day_key_honolulu(void **state)
{
    run_key_cases("Pacific/Honolulu");
}

static void test_day_key_kolkata(void **state)
{
    run_key_cases("Asia/Kolkata");
}

static void test_day_key_berlin(void **state)
{
    run_key_cases("Europe/Berlin");
}

/* The key follows the process zone: one instant, several zones. */
static void test_day_key_same_instant_by_zone(void **state)
{
    /* 2026-03-17T06:30:00Z */
    static const struct {
        const char *tz;
        const char *want;
    } cases[] = {
        { "UTC", "20260316" },              /* 06:30 */
        { "Asia/Kolkata", "20260317" },     /* 12:00 */
        { "Europe/Berlin", "20260316" },    /* 07:30 */
        { "America/Santiago", "20260316" }, /* 03:30 (UTC-3) */
        { "Pacific/Honolulu", "20260316" }, /* 03-16 20:30 */
    };
    apr_time_t now = APR_INT64_C(1773729000000000);
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[PTM_DAYKEY_LEN + 1];

        require_zone(cases[i].tz);
        set_tz(cases[i].tz);
        assert_int_equal(ptm_time_day_key(out, now), APR_SUCCESS);
        if (strcmp(out, cases[i].want) != 0) {
            fail_msg("TZ=%s: got \"%s\", want \"%s\"", cases[i].tz, out,
                     cases[i].want);
        }
    }
}

/* Every millisecond around local noon and midnight flips exactly once. */
static void test_day_key_noon_edge_sweep(void **state)
{
    /* Berlin 2026-10-25 (a 25-hour day): 12:00 local = 11:00Z. */
    apr_time_t noon = APR_INT64_C(1792926000000000);
    apr_time_t t;
    char out[PTM_DAYKEY_LEN + 1];

    set_tz("Europe/Berlin");
    for (t = noon - 5000; t < noon + 5000; t += 1000) {
        assert_int_equal(ptm_time_day_key(out, t), APR_SUCCESS);
        assert_string_equal(out, t < noon ? "20261024" : "20261025");
    }
    /* The first 12 local hours after midnight (CEST then CET: 13 real
     * hours) all belong to the previous day. */
    for (t = noon - APR_INT64_C(13) * 3600 * 1000000 + 1; t < noon;
         t += APR_INT64_C(600) * 1000000) {
        assert_int_equal(ptm_time_day_key(out, t), APR_SUCCESS);
        assert_string_equal(out, "20261024");
    }
}

/* ---- ptm_time_parse_rfc3339 --------------------------------------------- */

typedef struct {
    const char *s;
    int lenient;
    int ok;
    apr_time_t want;
} rfc_case_t;

static const rfc_case_t rfc_cases[] = {
    /* Z, z, offsets east and west, -00:00. */
    { "2026-12-03T18:00:00Z", 0, 1, U(1796320800000000) },
    { "2026-12-03T18:00:00z", 0, 1, U(1796320800000000) },
    { "2026-12-03T18:00:00+00:00", 0, 1, U(1796320800000000) },
    { "2026-12-03T18:00:00-00:00", 0, 1, U(1796320800000000) },
    { "2026-12-03T18:00:00+05:30", 0, 1, U(1796301000000000) },
    { "2026-12-03T18:00:00-08:00", 0, 1, U(1796349600000000) },
    /* Separators: 'T', 't' and one space. */
    { "2026-12-03t18:00:00Z", 0, 1, U(1796320800000000) },
    { "2026-12-03 18:00:00Z", 0, 1, U(1796320800000000) },
    /* Fractions of 1 to 9 digits and beyond, truncated (never rounded). */
    { "2026-12-03T18:00:00.1Z", 0, 1, U(1796320800100000) },
    { "2026-12-03T18:00:00.12Z", 0, 1, U(1796320800120000) },
    { "2026-12-03T18:00:00.123Z", 0, 1, U(1796320800123000) },
    { "2026-12-03T18:00:00.1234Z", 0, 1, U(1796320800123400) },
    { "2026-12-03T18:00:00.12345Z", 0, 1, U(1796320800123450) },
    { "2026-12-03T18:00:00.123456Z", 0, 1, U(1796320800123456) },
    { "2026-12-03T18:00:00.1234567Z", 0, 1, U(1796320800123456) },
    { "2026-12-03T18:00:00.12345678Z", 0, 1, U(1796320800123456) },
    { "2026-12-03T18:00:00.999999999Z", 0, 1, U(1796320800999999) },
    { "2026-12-03T18:00:00.0000009999999999999Z", 0, 1,
      U(1796320800000000) },
    { "2026-12-03T18:00:00.5+05:30", 0, 1, U(1796301000500000) },
    /* Before 1970, leap days, the ends of the range. */
    { "1969-12-31T23:59:59.5Z", 0, 1, U(-500000) },
    { "2028-02-29T23:59:59Z", 0, 1, U(1835481599000000) },
    { "2000-02-29T00:00:00Z", 0, 1, U(951782400000000) },
    { "0001-01-01T00:00:00Z", 0, 1, U(-62135596800000000) },
    { "0001-01-01T00:00:00+23:59", 0, 1, U(-62135683140000000) },
    { "9999-12-31T23:59:59.999999Z", 0, 1, U(253402300799999999) },
    { "9999-12-31T23:59:59-23:59", 0, 1, U(253402387139000000) },
    /* Lenient: a missing offset is UTC; the rest is as strict. */
    { "2026-12-03T18:00:00", 1, 1, U(1796320800000000) },
    { "2026-03-17T20:15:00.123", 1, 1, U(1773778500123000) },
    { "2026-12-03T18:00:00-08:00", 1, 1, U(1796349600000000) },

    /* Refused. */
    { "2026-12-03T18:00:00", 0, 0, 0 },         /* strict: no offset */
    { "2026-12-03T18:00:00.5", 0, 0, 0 },
    { "", 0, 0, 0 },
    { "", 1, 0, 0 },
    { "2026-12-03", 1, 0, 0 },
    { "2026-12-03T", 1, 0, 0 },
    { "2026-12-03T18:00", 1, 0, 0 },
    { "2026-12-03T18:00Z", 0, 0, 0 },
    { "2026-12-03T24:00:00Z", 0, 0, 0 },
    { "2026-12-03T23:60:00Z", 0, 0, 0 },
    { "2026-12-31T23:59:60Z", 0, 0, 0 },        /* a leap second */
    { "2026-13-03T18:00:00Z", 0, 0, 0 },
    { "2026-00-03T18:00:00Z", 0, 0, 0 },
    { "2026-12-00T18:00:00Z", 0, 0, 0 },
    { "2026-12-32T18:00:00Z", 0, 0, 0 },
    { "2026-04-31T18:00:00Z", 0, 0, 0 },
    { "2026-02-29T18:00:00Z", 0, 0, 0 },        /* not a leap year */
    { "1900-02-29T18:00:00Z", 0, 0, 0 },        /* century */
    { "0000-01-01T00:00:00Z", 0, 0, 0 },
    { "2026-12-03T18:00:00ZZ", 0, 0, 0 },       /* trailing junk */
    { "2026-12-03T18:00:00Z ", 0, 0, 0 },
    { " 2026-12-03T18:00:00Z", 0, 0, 0 },
    { "2026-12-03T18:00:00+05:30x", 0, 0, 0 },
    { "2026-12-03T18:00:00x", 1, 0, 0 },
    { "2026-12-03T18:00:00.Z", 0, 0, 0 },       /* '.' needs a digit */
    { "2026-12-03T18:00:00.", 1, 0, 0 },
    { "2026-12-03T18:00:00+24:00", 0, 0, 0 },
    { "2026-12-03T18:00:00+05:60", 0, 0, 0 },
    { "2026-12-03T18:00:00+0530", 0, 0, 0 },
    { "2026-12-03T18:00:00+05", 0, 0, 0 },
    { "2026-12-03T18:00:00+5:30", 0, 0, 0 },
    { "2026-12-03  18:00:00Z", 0, 0, 0 },       /* one space only */
    { "2026-12-03_18:00:00Z", 0, 0, 0 },
    { "2026-12-3T18:00:00Z", 0, 0, 0 },
    { "26-12-03T18:00:00Z", 0, 0, 0 },
    { "+2026-12-03T18:00:00Z", 0, 0, 0 },
    { "2026/12/03T18:00:00Z", 0, 0, 0 },
    { "2026-12-03T18:0a:00Z", 0, 0, 0 },
    { "1h", 0, 0, 0 },
};

static void test_rfc3339_table(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(rfc_cases) / sizeof(rfc_cases[0]); i++) {
        const rfc_case_t *c = &rfc_cases[i];
        apr_time_t got = U(-4242);
        int rc = ptm_time_parse_rfc3339(&got, c->s, strlen(c->s),
                                        c->lenient);

        if (c->ok && (rc != 0 || got != c->want)) {
            fail_msg("\"%s\" lenient=%d: rc %d, got %lld, want %lld", c->s,
                     c->lenient, rc, (long long)got, (long long)c->want);
        }
        if (!c->ok && rc != -1) {
            fail_msg("\"%s\" lenient=%d: accepted as %lld", c->s,
                     c->lenient, (long long)got);
        }
        /* What is refused in lenient mode is refused in strict mode. */
        if (!c->ok && c->lenient
            && ptm_time_parse_rfc3339(&got, c->s, strlen(c->s), 0) != -1) {
            fail_msg("\"%s\": strict accepts what lenient refuses", c->s);
        }
    }
}

/* The text need not end with a NUL: only `n` bytes are looked at. */
static void test_rfc3339_length_bounded(void **state)
{
    const char *s = "2026-12-03T18:00:00Z+05:30";
    apr_time_t t;

    assert_int_equal(ptm_time_parse_rfc3339(&t, s, 20, 0), 0);
    assert_true(t == U(1796320800000000));
    assert_int_equal(ptm_time_parse_rfc3339(&t, s, 19, 0), -1);
    assert_int_equal(ptm_time_parse_rfc3339(&t, s, 19, 1), 0);
    assert_int_equal(ptm_time_parse_rfc3339(&t, s, strlen(s), 0), -1);
    /* A cut inside a field is refused, not read past. */
    assert_int_equal(ptm_time_parse_rfc3339(&t, s, 3, 1), -1);
    assert_int_equal(ptm_time_parse_rfc3339(&t, s, 12, 1), -1);
}

/* The form the module writes (YYYY-MM-DDTHH:MM:SS.mmmZ, read by a short
 * path) means what the same stamp means with +00:00 (read by the general
 * one), valid or not: fields at and past their limits, year 0, Feb 29 of
 * leap and common years, every digit position. */
static void test_rfc3339_canonical_form(void **state)
{
    static const char *stamps[] = {
        "2026-12-03T18:00:00.000Z", "2026-12-03T18:00:00.999Z",
        "0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z",
        "0000-01-01T00:00:00.000Z", "2024-02-29T12:00:00.500Z",
        "2023-02-29T12:00:00.500Z", "2000-02-29T00:00:00.001Z",
        "1900-02-29T00:00:00.001Z", "2026-13-01T00:00:00.000Z",
        "2026-00-01T00:00:00.000Z", "2026-04-31T00:00:00.000Z",
        "2026-04-30T24:00:00.000Z", "2026-04-30T23:60:00.000Z",
        "2026-04-30T23:59:60.000Z", "2026-04-00T23:59:59.000Z",
        "1970-01-01T00:00:00.000Z", "1969-12-31T23:59:59.999Z",
    };
    char buf[40], *p;
    apr_time_t a, b;
    size_t i, k;
    int ra, rb;

    for (i = 0; i < sizeof(stamps) / sizeof(stamps[0]); i++) {
        memcpy(buf, stamps[i], 23);
        memcpy(buf + 23, "+00:00", 7);
        a = b = 0;
        ra = ptm_time_parse_rfc3339(&a, stamps[i], 24, 0);
        rb = ptm_time_parse_rfc3339(&b, buf, 29, 0);
        if (ra != rb || a != b) {
            fail_msg("%s: %d %lld, as +00:00: %d %lld", stamps[i], ra,
                     (long long)a, rb, (long long)b);
        }
    }
    /* A non-digit in any digit's place is refused. */
    for (k = 0; k < 23; k++) {
        memcpy(buf, "2026-12-03T18:00:00.000Z", 25);
        p = buf + k;
        if (*p < '0' || *p > '9') {
            continue;
        }
        *p = 'x';
        assert_int_equal(ptm_time_parse_rfc3339(&a, buf, 24, 0), -1);
    }
}

/* Every day of 1999-2001 (a century leap year between two common ones)
 * parses to the day after the one before it, and the day after the last of
 * each month is refused: the month lengths come out of the calendar. */
static void test_rfc3339_every_day(void **state)
{
    static const int mdays[] = { 31, 28, 31, 30, 31, 30,
                                 31, 31, 30, 31, 30, 31 };
    apr_time_t prev = U(915148800000000) - U(86400000000); /* 1998-12-31 */
    char buf[48];
    int y, m, d, last, rc;
    apr_time_t t;

    for (y = 1999; y <= 2001; y++) {
        for (m = 1; m <= 12; m++) {
            last = mdays[m - 1] + (m == 2 && y == 2000);
            for (d = 1; d <= last + 1; d++) {
                snprintf(buf, sizeof(buf), "%04d-%02d-%02dT00:00:00Z", y, m,
                         d);
                rc = ptm_time_parse_rfc3339(&t, buf, strlen(buf), 0);
                if (d > last) {
                    if (rc != -1) {
                        fail_msg("%s accepted", buf);
                    }
                    continue;
                }
                if (rc != 0) {
                    fail_msg("%s refused", buf);
                }
                if (t != prev + U(86400000000)) {
                    fail_msg("%s: %lld, want %lld", buf, (long long)t,
                             (long long)(prev + U(86400000000)));
                }
                prev = t;
            }
        }
    }
    /* 2002-01-01T00:00:00Z, from Python. */
    assert_true(prev + U(86400000000) == U(1009843200000000));
}

/* ---- ptm_time_parse_duration -------------------------------------------- */

#define SEC U(1000000)

typedef struct {
    const char *s;
    int ok;
    apr_interval_time_t want;
} dur_case_t;

static const dur_case_t dur_cases[] = {
    { "90s", 1, 90 * SEC },
    { "15m", 1, 15 * 60 * SEC },
    { "24h", 1, 24 * 3600 * SEC },
    { "7d", 1, 7 * 86400 * SEC },
    { "2w", 1, 14 * 86400 * SEC },
    { "1s", 1, SEC },
    { "1h30m", 1, 5400 * SEC },
    { "1w1d1h1m1s", 1, (8 * 86400 + 3661) * SEC },
    { "30m1h", 1, 5400 * SEC },
    { "0s1m", 1, 60 * SEC },                    /* the total counts */
    { "007m", 1, 7 * 60 * SEC },
    { "0000000000000000000000001s", 1, SEC },
    /* 100 years of 365.25 days is the most; one second more is not. */
    { "36525d", 1, U(3155760000) * SEC },
    { "3155760000s", 1, U(3155760000) * SEC },
    { "36524d86400s", 1, U(3155760000) * SEC },
    { "3155760001s", 0, 0 },
    { "36525d1s", 0, 0 },
    { "5218w", 0, 0 },
    /* Overflow of the count, of count x unit and of the sum. */
    { "99999999999999999999999999999999s", 0, 0 },
    { "9223372036854775807s", 0, 0 },
    { "9223372036854775807w", 0, 0 },
    { "1537228672809129301w", 0, 0 },   /* x 604800 wraps to -201600 */
    { "36525d36525d", 0, 0 },
    { "30000d30000d", 0, 0 },
    /* Zero, empty, junk. */
    { "0s", 0, 0 },
    { "0h0m", 0, 0 },
    { "", 0, 0 },
    { "1", 0, 0 },
    { "s", 0, 0 },
    { "h1", 0, 0 },
    { "1x", 0, 0 },
    { "1H", 0, 0 },
    { "1y", 0, 0 },
    { "1ms", 0, 0 },
    { "-1h", 0, 0 },
    { "+1h", 0, 0 },
    { " 1h", 0, 0 },
    { "1h ", 0, 0 },
    { "1 h", 0, 0 },
    { "1h 30m", 0, 0 },
    { "1.5h", 0, 0 },
    { "1h30", 0, 0 },
    { "PT1H", 0, 0 },
    { "2026-12-03T18:00:00Z", 0, 0 },
};

static void test_duration_table(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(dur_cases) / sizeof(dur_cases[0]); i++) {
        const dur_case_t *c = &dur_cases[i];
        apr_interval_time_t got = U(-4242);
        int rc = ptm_time_parse_duration(&got, c->s, strlen(c->s));

        if (c->ok && (rc != 0 || got != c->want)) {
            fail_msg("\"%s\": rc %d, got %lld, want %lld", c->s, rc,
                     (long long)got, (long long)c->want);
        }
        if (!c->ok && rc != -1) {
            fail_msg("\"%s\": accepted as %lld", c->s, (long long)got);
        }
    }
}

static void test_duration_length_bounded(void **state)
{
    apr_interval_time_t d;

    assert_int_equal(ptm_time_parse_duration(&d, "15mjunk", 3), 0);
    assert_true(d == 15 * 60 * SEC);
    assert_int_equal(ptm_time_parse_duration(&d, "15m", 2), -1);
    assert_int_equal(ptm_time_parse_duration(&d, "15m", 0), -1);
    assert_int_equal(ptm_time_parse_duration(&d, "1h\0" "1s", 5), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utc_iso_truncates_ms),
        cmocka_unit_test(test_utc_iso_ignores_tz),
        cmocka_unit_test(test_day_key_utc),
        cmocka_unit_test(test_day_key_santiago),
        cmocka_unit_test(test_day_key_honolulu),
        cmocka_unit_test(test_day_key_kolkata),
        cmocka_unit_test(test_day_key_berlin),
        cmocka_unit_test(test_day_key_same_instant_by_zone),
        cmocka_unit_test(test_day_key_noon_edge_sweep),
        cmocka_unit_test(test_rfc3339_table),
        cmocka_unit_test(test_rfc3339_length_bounded),
        cmocka_unit_test(test_rfc3339_canonical_form),
        cmocka_unit_test(test_rfc3339_every_day),
        cmocka_unit_test(test_duration_table),
        cmocka_unit_test(test_duration_length_bounded),
    };

    return cmocka_run_group_tests_name("ptm_time", tests, group_setup,
                                       group_teardown);
}

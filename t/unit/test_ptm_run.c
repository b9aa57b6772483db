/* Unit tests for ptm_run (SPEC §3.4 steps 3-6, §8.6-8.7, §11.3 F1, F2,
 * F13): deriving the next run id from real directories, the one-segment
 * check of a run id, pathlib-style normalisation, and confining run_dir to
 * the site directory or a configured run root. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include "ptm_run.h"

/* ---- temp directories --------------------------------------------------- */

/* Every directory made, so a failed test (cmocka longjmps past its own
 * clean-up) still leaves nothing behind. */
static char *made[64];
static int nmade;

static char *make_site(void)
{
    char tmpl[] = "/tmp/ptm_run_test.XXXXXX";
    char *d = mkdtemp(tmpl);

    if (!d) {
        fail_msg("mkdtemp: %s", strerror(errno));
    }
    d = apr_pstrdup(gpool, d);
    if (nmade < (int)(sizeof(made) / sizeof(made[0]))) {
        made[nmade++] = d;
    }
    return d;
}

static int test_teardown(void **state)
{
    while (nmade > 0) {
        rm_rf(made[--nmade]);
    }
    return 0;
}

static void mk_dir(const char *site, const char *name)
{
    const char *p = apr_pstrcat(gpool, site, "/", name, NULL);

    if (mkdir(p, 0755) != 0) {
        fail_msg("mkdir %s: %s", p, strerror(errno));
    }
}

static void mk_file(const char *site, const char *name)
{
    const char *p = apr_pstrcat(gpool, site, "/", name, NULL);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);

    if (fd < 0) {
        fail_msg("create %s: %s", p, strerror(errno));
    }
    close(fd);
}

static void mk_link(const char *site, const char *target, const char *name)
{
    const char *p = apr_pstrcat(gpool, site, "/", name, NULL);

    if (symlink(target, p) != 0) {
        fail_msg("symlink %s: %s", p, strerror(errno));
    }
}

/* ---- ptm_run_derive_id -------------------------------------------------- */

/* Entries: "d:NAME" a directory, "f:NAME" a file, "l:NAME>TARGET" a
 * symlink (TARGET relative to the site dir, or absolute). */
typedef struct {
    const char *name;
    const char *entries[8];
    const char *want;
} derive_case_t;

#define THIRTY_NINES "999999999999999999999999999999"

static const derive_case_t derive_cases[] = {
    { "empty site dir", { NULL }, "001" },
    { "001 and 002", { "d:001", "d:002", NULL }, "003" },
    { "gap is not filled", { "d:001", "d:005", NULL }, "006" },
    /* The width comes from the integer value, not from the name. */
    { "only 00007", { "d:00007", NULL }, "008" },
    { "999 -> 1000", { "d:999", NULL }, "1000" },
    { "0005 and 12", { "d:0005", "d:12", NULL }, "013" },
    { "0999 and 5", { "d:0999", "d:5", NULL }, "1000" },
    { "00123", { "d:00123", NULL }, "124" },
    { "1 and 2", { "d:1", "d:2", NULL }, "003" },
    { "0", { "d:0", NULL }, "001" },
    { "000", { "d:000", NULL }, "001" },
    { "wide value wins the width", { "d:1234", "d:7", NULL }, "1235" },
    /* Numeric-named files do not count. */
    { "numeric files ignored", { "f:500", "f:9", "d:004", NULL }, "005" },
    { "only numeric files", { "f:001", "f:777", NULL }, "001" },
    /* Non-numeric directories do not count. */
    { "non-numeric dirs ignored",
      { "d:61-x", "d:abc", "d:1a", "d: 7", "d:7 ", "d:+8", "d:010", NULL },
      "011" },
    { "only non-numeric dirs", { "d:61-x", "d:abc", "d:-5", NULL }, "001" },
    /* Symlinks are followed like Path.is_dir(). */
    { "symlink to a dir counts", { "d:abc", "l:050>abc", "d:003", NULL },
      "051" },
    { "symlink to a file ignored", { "f:x", "l:070>x", "d:003", NULL },
      "004" },
    { "dangling symlink ignored", { "l:060>nowhere", "d:003", NULL }, "004" },
    /* Only ASCII digits (F13): Arabic-Indic 33 and superscript two. */
    { "arabic-indic digits ignored",
      { "d:\xd9\xa3\xd9\xa3", "d:002", NULL }, "003" },
    { "superscript two ignored", { "d:\xc2\xb2", "d:002", NULL }, "003" },
    { "only non-ascii digits",
      { "d:\xd9\xa3\xd9\xa3", "d:\xc2\xb2", "d:\xef\xbc\x95", NULL }, "001" },
    /* Thirty digits: string arithmetic, no overflow. */
    { "30 digits",
      { "d:123456789012345678901234567899", "d:5", NULL },
      "123456789012345678901234567900" },
    { "30 nines", { "d:" THIRTY_NINES, NULL },
      "1000000000000000000000000000000" },
    { "30 digits with leading zeros",
      { "d:000000000000000000000000000041", NULL }, "042" },
    { "40 digits beats 39",
      { "d:1000000000000000000000000000000000000000",
        "d:999999999999999999999999999999999999999", NULL },
      "1000000000000000000000000000000000000001" },
};

static void build_entries(const char *site, const char *const *e)
{
    for (; *e; e++) {
        const char *s = *e + 2;

        switch ((*e)[0]) {
        case 'd':
            mk_dir(site, s);
            break;
        case 'f':
            mk_file(site, s);
            break;
        case 'l': {
            const char *gt = strchr(s, '>');
            char *name = apr_pstrmemdup(gpool, s, (apr_size_t)(gt - s));
            const char *target = gt + 1;

            mk_link(site, target, name);
            break;
        }
        default:
            fail_msg("bad entry %s", *e);
        }
    }
}

static void test_derive_id_table(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(derive_cases) / sizeof(derive_cases[0]); i++) {
        const derive_case_t *c = &derive_cases[i];
        char *site = make_site();
        const char *id = "untouched";
        apr_status_t rv;

        build_entries(site, c->entries);
        rv = ptm_run_derive_id(&id, site, gpool);
        rm_rf(site);
        if (rv != APR_SUCCESS) {
            fail_msg("%s: status %d", c->name, rv);
        }
        if (strcmp(id, c->want) != 0) {
            fail_msg("%s: got \"%s\", want \"%s\"", c->name, id, c->want);
        }
    }
}

/* A symlink in the site dir pointing at a directory elsewhere counts. */
static void test_derive_id_symlink_outside(void **state)
{
    char *site = make_site(), *other = make_site();
    const char *id = NULL;

    mk_link(site, other, "041");
    assert_int_equal(ptm_run_derive_id(&id, site, gpool), APR_SUCCESS);
    assert_string_equal(id, "042");
    rm_rf(site);
    rm_rf(other);
}

/* Deriving twice with nothing created in between gives the same id. */
static void test_derive_id_is_pure(void **state)
{
    char *site = make_site();
    const char *a = NULL, *b = NULL;

    mk_dir(site, "017");
    assert_int_equal(ptm_run_derive_id(&a, site, gpool), APR_SUCCESS);
    assert_int_equal(ptm_run_derive_id(&b, site, gpool), APR_SUCCESS);
    assert_string_equal(a, "018");
    assert_string_equal(b, "018");
    mk_dir(site, a);
    assert_int_equal(ptm_run_derive_id(&b, site, gpool), APR_SUCCESS);
    assert_string_equal(b, "019");
    rm_rf(site);
}

static void test_derive_id_missing_site(void **state)
{
    char *site = make_site();
    const char *gone = apr_pstrcat(gpool, site, "/does-not-exist", NULL);
    const char *id = NULL;
    apr_status_t rv;

    rv = ptm_run_derive_id(&id, gone, gpool);
    assert_int_not_equal(rv, APR_SUCCESS);
    assert_true(APR_STATUS_IS_ENOENT(rv));

    /* A regular file where the site dir should be. */
    mk_file(site, "plain");
    rv = ptm_run_derive_id(&id, apr_pstrcat(gpool, site, "/plain", NULL),
                           gpool);
    assert_int_not_equal(rv, APR_SUCCESS);
    assert_true(APR_STATUS_IS_ENOTDIR(rv));
    rm_rf(site);
}

/* ---- ptm_run_id_is_segment ---------------------------------------------- */

typedef struct {
    const char *name;
    const char *id;
    size_t len;             /* 0: strlen(id) (use explicit for "" / NUL) */
    int explicit_len;
    int want;
} seg_case_t;

#define SEG(n, s, w) { n, s, 0, 0, w }
#define SEGN(n, s, l, w) { n, s, l, 1, w }

static char a255[256], a256[257], u255[256], u258[259];

static void fill_long_ids(void)
{
    size_t i;

    memset(a255, 'a', 255);
    a255[255] = '\0';
    memset(a256, 'a', 256);
    a256[256] = '\0';
    /* "運" is 3 bytes in UTF-8: 85 of them are 255 bytes, 86 are 258. */
    for (i = 0; i < 85; i++) {
        memcpy(u255 + 3 * i, "\xe9\x81\x8b", 3);
    }
    u255[255] = '\0';
    for (i = 0; i < 86; i++) {
        memcpy(u258 + 3 * i, "\xe9\x81\x8b", 3);
    }
    u258[258] = '\0';
}

static void test_id_is_segment_table(void **state)
{
    const seg_case_t cases[] = {
        SEGN("empty", "", 0, 0),
        SEG("dot", ".", 0),
        SEG("dotdot", "..", 0),
        SEG("three dots", "...", 1),
        SEG("dot prefix", ".hidden", 1),
        SEG("dotdot prefix", "..a", 1),
        SEG("dotdot suffix", "a..", 1),
        SEG("plain", "001", 1),
        SEG("slash inside", "a/b", 0),
        SEG("leading slash", "/tmp", 0),
        SEG("trailing slash", "a/", 0),
        SEG("only slash", "/", 0),
        SEG("dotdot slash", "../x", 0),
        SEG("control 0x01", "a\x01", 0),
        SEG("tab", "a\tb", 0),
        SEG("newline", "run\n", 0),
        SEG("escape 0x1f", "\x1f", 0),
        SEG("DEL", "a\x7f", 0),
        SEGN("NUL inside", "a\0b", 3, 0),
        SEGN("NUL alone", "\0", 1, 0),
        SEG("255 bytes", a255, 1),
        SEG("256 bytes", a256, 0),
        SEG("255 UTF-8 bytes", u255, 1),
        SEG("258 UTF-8 bytes", u258, 0),
        SEG("space", "run 1", 1),
        SEG("only space", " ", 1),
        SEG("backslash", "a\\b", 1),
        SEG("tilde", "~", 1),
        SEG("tilde user", "~root", 1),
        SEG("utf-8 e-acute", "caf\xc3\xa9", 1),
        SEG("utf-8 CJK", "\xe8\xa7\x82\xe6\xb5\x8b", 1),
        SEG("emoji", "\xf0\x9f\x98\x80", 1),
        SEG("dash", "-", 1),
    };
    size_t i;

    fill_long_ids();
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const seg_case_t *c = &cases[i];
        size_t len = c->explicit_len ? c->len : strlen(c->id);
        int got = ptm_run_id_is_segment(c->id, len);

        if (got != c->want) {
            fail_msg("%s (%zu bytes): got %d, want %d", c->name, len, got,
                     c->want);
        }
    }
}

/* ---- ptm_run_normalise -------------------------------------------------- */

static void test_normalise_table(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        { "/srv/telemetry", "/srv/telemetry" },
        { "/srv/telemetry/", "/srv/telemetry" },
        { "/srv//telemetry", "/srv/telemetry" },
        { "/srv///telemetry///", "/srv/telemetry" },
        { "/srv/./telemetry/.", "/srv/telemetry" },
        { "/./srv", "/srv" },
        { "/", "/" },
        { "/.", "/" },
        { "/a/../b", "/a/../b" },            /* ".." kept, like pathlib */
        { "/a/b/..", "/a/b/.." },
        { "/a/b/../", "/a/b/.." },
        { "/..", "/.." },
        { "/a/.../b", "/a/.../b" },
        { "/a/.b/c.", "/a/.b/c." },
        { "/~/x", "/~/x" },
        { "/run 1/x", "/run 1/x" },
        { "/caf\xc3\xa9/", "/caf\xc3\xa9" },
        { "a//b/./c/", "a/b/c" },
        { "./x", "x" },
        { "", "." },
        { ".", "." },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = ptm_run_normalise(cases[i].in, gpool);

        if (!got || strcmp(got, cases[i].want) != 0) {
            fail_msg("normalise(\"%s\"): got \"%s\", want \"%s\"",
                     cases[i].in, got ? got : "(null)", cases[i].want);
        }
    }
}

/* ---- ptm_run_resolve_dir ------------------------------------------------ */

#define SITE "/srv/telemetry"

typedef struct {
    const char *name;
    const char *run_dir;    /* NULL: none given */
    size_t len;             /* used when explicit_len */
    int explicit_len;
    int with_roots;
    const char *want;       /* NULL: refused */
    const char *real;       /* NULL: the same as want */
} resolve_case_t;

#define RES(n, d, w) { n, d, 0, 0, 1, w, NULL }
#define RESR(n, d, w, r) { n, d, 0, 0, 1, w, r }
#define RES_NOROOTS(n, d, w) { n, d, 0, 0, 0, w, NULL }
#define RESN(n, d, l, w) { n, d, l, 1, 1, w, NULL }

static const resolve_case_t resolve_cases[] = {
    RES("no run_dir", NULL, SITE "/007"),
    RES("empty is the site dir", "", SITE),
    RES("dot is the site dir", ".", SITE),
    RES("dot slash is the site dir", "./", SITE),
    RES("plain relative", "x", SITE "/x"),
    RES("slashes and dots collapse", "a//b/./c/", SITE "/a/b/c"),
    RES("leading ./", "./x", SITE "/x"),
    RES("trailing slashes", "x///", SITE "/x"),
    /* ".." that stays inside: accepted and reported literally. */
    RESR("a/../b stays inside", "a/../b", SITE "/a/../b", SITE "/b"),
    RESR("a/.. is the site itself", "a/..", SITE "/a/..", SITE),
    RESR("back into the site by name", "../telemetry/x",
         SITE "/../telemetry/x", SITE "/x"),
    RES("three dots is a name", "a/.../x", SITE "/a/.../x"),
    RES("three dots first is a dot name", ".../x", NULL),
    /* ".." that escapes. */
    RES("dotdot", "..", NULL),
    RES("dotdot slash x", "../x", NULL),
    RES("a/../../x", "a/../../x", NULL),
    RES("deep escape", "a/b/../../../x", NULL),
    RES("sibling with a common prefix", "../telemetry2/x", NULL),
    RES("sibling with a shorter name", "../tele", NULL),
    /* Ends inside, but mkdir -p would make a directory on the way out. */
    RES("detour outside the site", "../x/../telemetry/r", NULL),
    RES("absolute detour", "/tmp/x/../../srv/telemetry/r", NULL),
    RESR("detour through a root", "../runs/a/../../telemetry/r",
         SITE "/../runs/a/../../telemetry/r", SITE "/r"),
    /* Absolute paths inside the site dir. */
    RES("absolute inside", SITE "/abs", SITE "/abs"),
    RES("absolute inside, normalised", SITE "//abs/./x/", SITE "/abs/x"),
    RES("absolute site dir", SITE, SITE),
    RES("absolute site dir with slash", SITE "/", SITE),
    RESR("absolute inside with dotdot", SITE "/a/../b", SITE "/a/../b",
         SITE "/b"),
    /* Absolute paths outside. */
    RES("absolute outside", "/tmp/x", NULL),
    RES("root", "/", NULL),
    RES("site's parent", "/srv", NULL),
    RES("absolute escape by dotdot", SITE "/../etc", NULL),
    RES("site dir prefix is no boundary", SITE "2/x", NULL),
    /* Run roots. */
    RES("under a run root", "/srv/runs/n1", "/srv/runs/n1"),
    RES("the run root itself", "/srv/runs", "/srv/runs"),
    RES("the run root with slash", "/srv/runs/", "/srv/runs"),
    RES("second run root", "/data/obs//a/./b", "/data/obs/a/b"),
    RES("root prefix is no boundary", "/srv/runs2/x", NULL),
    RES("shorter than the root", "/srv/run", NULL),
    RES("escape from a run root", "/data/obs/../x", NULL),
    RESR("dotdot kept under a run root", "/data/obs/a/../b",
         "/data/obs/a/../b", "/data/obs/b"),
    RESR("from a root back into the site", "/srv/runs/../telemetry/x",
         "/srv/runs/../telemetry/x", SITE "/x"),
    /* A root configured with "..": compared once resolved. */
    RES("under a root spelled with dotdot", "/srv/z/q", "/srv/z/q"),
    RES_NOROOTS("no roots configured", "/srv/runs/n1", NULL),
    RES_NOROOTS("no roots, inside site", SITE "/n1", SITE "/n1"),
    /* "~" is not expanded: a relative name under the site dir. */
    RES("tilde slash", "~/x", SITE "/~/x"),
    RES("tilde alone", "~", SITE "/~"),
    RES("tilde user", "~root/x", SITE "/~root/x"),
    /* NUL anywhere in run_dir. */
    RESN("NUL inside", "a\0b", 3, NULL),
    RESN("NUL at the end", "ab\0", 3, NULL),
    RESN("NUL alone", "\0", 1, NULL),
    /* Names the module keeps in the site dir (SPEC §11.6), as the first
     * component below it once ".." is resolved. */
    RES("a day file name", "site_20261203.ndjson", NULL),
    RES("below a day file name", "site_20261203.ndjson/r", NULL),
    RES("any site_*.ndjson", "site_.ndjson", NULL),
    RES("a dot name", ".hidden", NULL),
    RES("the state file", ".panoptes-telemetry.state/x", NULL),
    RES("absolute, a day file name", SITE "/site_1.ndjson/r", NULL),
    RES("reached by dotdot", "x/../site_1.ndjson", NULL),
    RES("reached by dotdot, dot name", "x/../.h/y", NULL),
    RES("from a root into a dot name", "/srv/runs/../telemetry/.h", NULL),
    /* Only the first component, only in the site dir, only those names. */
    RESR("dot name deeper", "a/.h", SITE "/a/.h", NULL),
    RESR("day file name deeper", "a/site_1.ndjson", SITE "/a/site_1.ndjson",
         NULL),
    /* mkdir -p would make the detour too. */
    RES("a detour through a dot name", ".h/..", NULL),
    RES("a detour through a day name", "site_1.ndjson/../r", NULL),
    RESR("a detour through a deeper dot name", "a/.h/../r",
         SITE "/a/.h/../r", SITE "/a/r"),
    RES("a dot name in a run root", "/srv/runs/.h", "/srv/runs/.h"),
    RES("no prefix", "xsite_1.ndjson", SITE "/xsite_1.ndjson"),
    RES("no suffix", "site_1.ndjsonx", SITE "/site_1.ndjsonx"),
    RES("a dash, not an underscore", "site-1.ndjson", SITE "/site-1.ndjson"),
    RES("a dot inside", "a.h", SITE "/a.h"),
};

static void test_resolve_dir_table(void **state)
{
    apr_array_header_t *roots = apr_array_make(gpool, 2, sizeof(const char *));
    size_t i;

    APR_ARRAY_PUSH(roots, const char *) = "/srv/runs";
    APR_ARRAY_PUSH(roots, const char *) = "/data/obs";
    APR_ARRAY_PUSH(roots, const char *) = "/srv/y/../z";
    for (i = 0; i < sizeof(resolve_cases) / sizeof(resolve_cases[0]); i++) {
        const resolve_case_t *c = &resolve_cases[i];
        size_t len = !c->run_dir ? 0
                     : c->explicit_len ? c->len : strlen(c->run_dir);
        const char *why = "untouched", *real = "untouched";
        const char *want_real = c->real ? c->real : c->want;
        const char *got;

        got = ptm_run_resolve_dir(&real, &why, SITE,
                                  c->with_roots ? roots : NULL, c->run_dir,
                                  len, "007", gpool);
        if (c->want) {
            if (!got || strcmp(got, c->want) != 0) {
                fail_msg("%s: got \"%s\" (why %s), want \"%s\"", c->name,
                         got ? got : "(null)", why ? why : "(null)",
                         c->want);
            }
            if (!real || strcmp(real, want_real) != 0) {
                fail_msg("%s: real \"%s\", want \"%s\"", c->name,
                         real ? real : "(null)", want_real);
            }
        }
        else {
            if (got) {
                fail_msg("%s: got \"%s\", want refusal", c->name, got);
            }
            if (real) {
                fail_msg("%s: refused with a real path \"%s\"", c->name,
                         real);
            }
            if (!why || !*why || strcmp(why, "untouched") == 0) {
                fail_msg("%s: refused without a reason", c->name);
            }
        }
    }
}

/* The refusal says which roots are allowed (F1). */
static void test_resolve_dir_why_names_roots(void **state)
{
    apr_array_header_t *roots = apr_array_make(gpool, 2, sizeof(const char *));
    const char *why = NULL;

    APR_ARRAY_PUSH(roots, const char *) = "/srv/runs";
    APR_ARRAY_PUSH(roots, const char *) = "/data/obs";
    assert_null(ptm_run_resolve_dir(NULL, &why, SITE, roots, "../x", 4,
                                    "007", gpool));
    assert_non_null(why);
    assert_non_null(strstr(why, SITE));
    assert_non_null(strstr(why, "/srv/runs"));
    assert_non_null(strstr(why, "/data/obs"));

    why = NULL;
    assert_null(ptm_run_resolve_dir(NULL, &why, SITE, NULL, "/tmp/x", 6,
                                    "007", gpool));
    assert_non_null(why);
    assert_non_null(strstr(why, SITE));
    assert_null(strstr(why, "/srv/runs"));
}

/* The reported path keeps the site dir as configured, and a run root of
 * "/" allows every absolute path. */
static void test_resolve_dir_other_sites(void **state)
{
    apr_array_header_t *slash = apr_array_make(gpool, 1, sizeof(const char *));
    const char *why;
    const char *got;

    got = ptm_run_resolve_dir(NULL, &why, "/a", NULL, "b/c", 3, "001",
                              gpool);
    assert_non_null(got);
    assert_string_equal(got, "/a/b/c");
    got = ptm_run_resolve_dir(NULL, &why, "/a", NULL, NULL, 0, "run 1",
                              gpool);
    assert_non_null(got);
    assert_string_equal(got, "/a/run 1");
    got = ptm_run_resolve_dir(NULL, &why, "/a", NULL, "/a", 2, "001",
                              gpool);
    assert_non_null(got);
    assert_string_equal(got, "/a");
    assert_null(ptm_run_resolve_dir(NULL, &why, "/a", NULL, "/ab", 3, "001",
                                    gpool));

    APR_ARRAY_PUSH(slash, const char *) = "/";
    got = ptm_run_resolve_dir(NULL, &why, "/a", slash, "/tmp//x/", 8, "001",
                              gpool);
    assert_non_null(got);
    assert_string_equal(got, "/tmp/x");
}

/* The reserved-name refusal says which name and why. */
static void test_resolve_dir_why_reserved(void **state)
{
    const char *why = NULL, *real = "untouched";

    assert_null(ptm_run_resolve_dir(&real, &why, SITE, NULL,
                                    "x/../site_20261203.ndjson/r", 27, NULL,
                                    gpool));
    assert_null(real);
    assert_non_null(why);
    assert_non_null(strstr(why, "site_20261203.ndjson"));
    assert_non_null(strstr(why, "site_*.ndjson"));
}

/* A run directory no path could name (nor its file) is refused, even
 * though a walk beneath its root could make it. */
static void test_resolve_dir_too_long(void **state)
{
    size_t site_len = strlen(SITE "/"), n = PTM_RUN_DIR_MAX - site_len;
    char *rel = apr_palloc(gpool, n + 2), *o;
    const char *why = NULL, *real = NULL;
    size_t i;

    /* Components of 100 bytes: each one fits NAME_MAX. */
    for (i = 0, o = rel; i < n; i++) {
        *o++ = i % 101 == 100 ? '/' : 'd';
    }
    rel[n - 1] = 'e';                   /* not a trailing '/' */
    *o = '\0';
    assert_non_null(ptm_run_resolve_dir(&real, &why, SITE, NULL, rel, n,
                                        NULL, gpool));
    assert_int_equal(strlen(real), PTM_RUN_DIR_MAX);
    rel[n] = 'x';
    rel[n + 1] = '\0';
    assert_null(ptm_run_resolve_dir(&real, &why, SITE, NULL, rel, n + 1,
                                    NULL, gpool));
    assert_non_null(strstr(why, "too long"));
    assert_null(real);
}

/* Detours are walked under the store lock: a few only. */
static void test_resolve_dir_detours_max(void **state)
{
    char *rel = apr_pstrdup(gpool, ""), *more;
    const char *why = NULL, *real = NULL;
    int i;

    for (i = 0; i < PTM_RUN_DETOURS_MAX; i++) {
        rel = apr_psprintf(gpool, "%sd%d/../", rel, i);
    }
    rel = apr_pstrcat(gpool, rel, "r", NULL);
    assert_non_null(ptm_run_resolve_dir(&real, &why, SITE, NULL, rel,
                                        strlen(rel), NULL, gpool));
    assert_string_equal(real, SITE "/r");
    more = apr_pstrcat(gpool, "x/../", rel, NULL);
    assert_null(ptm_run_resolve_dir(&real, &why, SITE, NULL, more,
                                    strlen(more), NULL, gpool));
    assert_non_null(strstr(why, "detours"));
    /* The same detour again is no new one. */
    more = apr_pstrcat(gpool, "d0/../", rel, NULL);
    assert_non_null(ptm_run_resolve_dir(&real, &why, SITE, NULL, more,
                                        strlen(more), NULL, gpool));
}

/* ---- ptm_run_id_has_control, ptm_run_name_is_reserved ------------------- */

static void test_id_has_control_table(void **state)
{
    static const struct {
        const char *id;
        size_t len;
        int want;
    } cases[] = {
        { "abc", 3, 0 },
        { "", 0, 0 },
        { "a b/c ~", 7, 0 },
        { "caf\xc3\xa9", 5, 0 },             /* UTF-8 bytes >= 0x80 */
        { "\xc2\x85", 2, 0 },                 /* U+0085 is UTF-8 bytes */
        { "abc\nPanoptesWriteErrors: 999", 29, 1 },
        { "a\rb", 3, 1 },
        { "\t", 1, 1 },
        { "a\x1f", 2, 1 },
        { "a\x7f", 2, 1 },
        { "a\0b", 3, 1 },
        { "\x01", 1, 1 },
        { " ", 1, 0 },
        { "~\x7e", 2, 0 },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (ptm_run_id_has_control(cases[i].id, cases[i].len)
            != cases[i].want) {
            fail_msg("case %zu (%zu bytes): want %d", i, cases[i].len,
                     cases[i].want);
        }
    }
}

static void test_name_is_reserved_table(void **state)
{
    static const struct {
        const char *name;
        int want;
    } cases[] = {
        { "site_20261203.ndjson", 1 },
        { "site_.ndjson", 1 },
        { "site_x.ndjson", 1 },
        { "site_a/b.ndjson", 1 },       /* a component never holds '/' */
        { ".hidden", 1 },
        { ".", 1 },
        { "..", 1 },
        { ".panoptes-telemetry.state", 1 },
        { "site_20261203.ndjsonx", 0 },
        { "xsite_1.ndjson", 0 },
        { "site-1.ndjson", 0 },
        { "site_1.json", 0 },
        { "site.ndjson", 0 },
        { "site_", 0 },
        { ".ndjson"  + 1, 0 },          /* "ndjson" */
        { "SITE_1.ndjson", 0 },
        { "a.hidden", 0 },
        { "001", 0 },
        { "", 0 },
        { "telemetry.ndjson", 0 },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (ptm_run_name_is_reserved(cases[i].name, strlen(cases[i].name))
            != cases[i].want) {
            fail_msg("\"%s\": want %d", cases[i].name, cases[i].want);
        }
    }
    /* Only `len` bytes count. */
    assert_int_equal(ptm_run_name_is_reserved("site_1.ndjson/x", 13), 1);
    assert_int_equal(ptm_run_name_is_reserved("site_1.ndjsonx", 13), 1);
}

/* ---- ptm_run_detours ---------------------------------------------------- */

static void test_detours_table(void **state)
{
    static const struct {
        const char *path;
        const char *want[4];
    } cases[] = {
        { SITE "/a/b", { NULL } },
        { SITE "/a/../b", { SITE "/a", NULL } },
        { SITE "/a/b/../c", { SITE "/a/b", NULL } },
        { SITE "/a/b/../../c", { SITE "/a/b", SITE "/a", NULL } },
        { SITE "/a/../a/../b", { SITE "/a", NULL } },
        { SITE "/a/../b/../a/../c", { SITE "/a", SITE "/b", NULL } },
        { SITE "/../telemetry/x", { SITE, NULL } },
        { "/..", { NULL } },
        { "/a/..", { "/a", NULL } },
        { SITE "/a/./../b", { SITE "/a", NULL } },
    };
    size_t i;
    int j;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        apr_array_header_t *got = ptm_run_detours(cases[i].path, gpool);

        for (j = 0; cases[i].want[j]; j++) {
            if (j >= got->nelts
                || strcmp(APR_ARRAY_IDX(got, j, const char *),
                          cases[i].want[j]) != 0) {
                fail_msg("%s: detour %d is %s, want %s", cases[i].path, j,
                         j < got->nelts ? APR_ARRAY_IDX(got, j, const char *)
                                        : "(none)", cases[i].want[j]);
            }
        }
        if (got->nelts != j) {
            fail_msg("%s: %d detours, want %d", cases[i].path, got->nelts,
                     j);
        }
    }
}

/* Client input of any length: one pass, each detour once. */
static void test_detours_long_input(void **state)
{
    size_t n = 200000, i;
    char *path = apr_palloc(gpool, 6 * n + 16), *o = path;
    apr_array_header_t *got;

    o += sprintf(o, "%s", SITE);
    for (i = 0; i < n; i++) {
        memcpy(o, i % 2 ? "/b/.." : "/a/..", 5);
        o += 5;
    }
    *o = '\0';
    got = ptm_run_detours(path, gpool);
    assert_int_equal(got->nelts, 2);
}

/* ---- ptm_run_split_dir -------------------------------------------------- */

static void test_split_dir_table(void **state)
{
    static const struct {
        const char *dir, *root, *rel;   /* root NULL: no root holds it */
    } cases[] = {
        { SITE, SITE, "" },
        { SITE "/", SITE, "" },
        { SITE "/007", SITE, "007" },
        { SITE "/a/b/c", SITE, "a/b/c" },
        { SITE "//a/./b/", SITE, "a/b" },
        /* A reported path from an older state: ".." resolved. */
        { SITE "/data/../escaped", SITE, "escaped" },
        { SITE "/a/..", SITE, "" },
        { "/srv/runs/../telemetry/x", SITE, "x" },
        /* Run roots; the site dir wins over a root inside it, and the
         * outermost root over one inside it. */
        { "/srv/runs", "/srv/runs", "" },
        { "/srv/runs/n1/x", "/srv/runs", "n1/x" },
        { "/data/obs/deep/er", "/data/obs", "deep/er" },
        { "/data/obs/inner/x", "/data/obs", "inner/x" },
        { SITE "/inroot/x", SITE, "inroot/x" },
        { "/srv/z/q", "/srv/z", "q" },  /* root spelled /srv/y/../z */
        /* Outside every root: the configuration changed since. */
        { "/tmp/x", NULL, NULL },
        { "/srv/runs2", NULL, NULL },
        { "/srv", NULL, NULL },
        { SITE "/../x", NULL, NULL },
        { "relative/x", NULL, NULL },
    };
    apr_array_header_t *roots = apr_array_make(gpool, 4, sizeof(const char *));
    size_t i;

    APR_ARRAY_PUSH(roots, const char *) = "/data/obs/inner";
    APR_ARRAY_PUSH(roots, const char *) = "/srv/runs";
    APR_ARRAY_PUSH(roots, const char *) = "/data/obs";
    APR_ARRAY_PUSH(roots, const char *) = SITE "/inroot";
    APR_ARRAY_PUSH(roots, const char *) = "/srv/y/../z";
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *root = "untouched", *rel = "untouched";
        apr_status_t rv = ptm_run_split_dir(&root, &rel, cases[i].dir, SITE,
                                            roots, gpool);

        if (!cases[i].root) {
            if (rv == APR_SUCCESS || root || rel) {
                fail_msg("%s: split into %s + %s, want none", cases[i].dir,
                         root ? root : "(null)", rel ? rel : "(null)");
            }
            continue;
        }
        if (rv != APR_SUCCESS || strcmp(root, cases[i].root) != 0
            || strcmp(rel, cases[i].rel) != 0) {
            fail_msg("%s: got %s + \"%s\" (%d), want %s + \"%s\"",
                     cases[i].dir, rv == APR_SUCCESS ? root : "-",
                     rv == APR_SUCCESS ? rel : "-", rv, cases[i].root,
                     cases[i].rel);
        }
    }
    /* No roots at all; and a root of "/". */
    {
        apr_array_header_t *slash = apr_array_make(gpool, 1,
                                                   sizeof(const char *));
        const char *root, *rel;

        assert_int_equal(ptm_run_split_dir(&root, &rel, "/srv/runs/x", SITE,
                                           NULL, gpool), APR_EINVAL);
        APR_ARRAY_PUSH(slash, const char *) = "/";
        assert_int_equal(ptm_run_split_dir(&root, &rel, "/tmp/x", SITE,
                                           slash, gpool), APR_SUCCESS);
        assert_string_equal(root, "/");
        assert_string_equal(rel, "tmp/x");
        assert_int_equal(ptm_run_split_dir(&root, &rel, SITE "/y", SITE,
                                           slash, gpool), APR_SUCCESS);
        assert_string_equal(root, SITE);
        assert_string_equal(rel, "y");
    }
}

/* What resolve_dir accepts, split_dir splits back to a path whose root
 * is where it was confined. */
static void test_resolve_then_split(void **state)
{
    static const char *const dirs[] = {
        "", "x", "a/../b", "../telemetry/y", SITE "/abs", "/srv/runs/r",
        "/srv/runs/../telemetry/z", "/data/obs/a/../b",
    };
    apr_array_header_t *roots = apr_array_make(gpool, 2, sizeof(const char *));
    size_t i;

    APR_ARRAY_PUSH(roots, const char *) = "/srv/runs";
    APR_ARRAY_PUSH(roots, const char *) = "/data/obs";
    for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        const char *why, *real, *root, *rel, *rep;

        rep = ptm_run_resolve_dir(&real, &why, SITE, roots, dirs[i],
                                  strlen(dirs[i]), NULL, gpool);
        assert_non_null(rep);
        assert_int_equal(ptm_run_split_dir(&root, &rel, real, SITE, roots,
                                           gpool), APR_SUCCESS);
        assert_string_equal(apr_pstrcat(gpool, root, *rel ? "/" : "", rel,
                                        NULL), real);
    }
}

/* Every test cleans up after itself, even when it fails. */
#define T(f) cmocka_unit_test_teardown(f, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_derive_id_table),
        T(test_derive_id_symlink_outside),
        T(test_derive_id_is_pure),
        T(test_derive_id_missing_site),
        T(test_id_is_segment_table),
        T(test_normalise_table),
        T(test_resolve_dir_table),
        T(test_resolve_dir_why_names_roots),
        T(test_resolve_dir_other_sites),
        T(test_resolve_dir_why_reserved),
        T(test_resolve_dir_too_long),
        T(test_resolve_dir_detours_max),
        T(test_id_has_control_table),
        T(test_name_is_reserved_table),
        T(test_detours_table),
        T(test_detours_long_input),
        T(test_split_dir_table),
        T(test_resolve_then_split),
    };

    return cmocka_run_group_tests_name("ptm_run", tests, group_setup,
                                       group_teardown);
}

/* make profile: the core's share of a request, in a form callgrind can
 * count.  Serves N requests of one kind through ptm_api_handle with a real
 * store (under an apr_global_mutex, as in httpd) on a temporary site
 * directory, with the bodies bench/wrk.lua sends.  Instruction counts are
 * stable on a noisy machine, unlike wall-clock time; the httpd side of a
 * request is measured by `make bench`, not here.
 *
 *   core_profile MODE N
 *
 * MODE: event (the ~200 B bodies over 20 types), event-5k and event-64k
 * (a reading with a long series of numbers, about that size), run (event
 * with a run active), current and current-one (GET /current and
 * /current/weather07 over 20 types); current-T and event-T for T types
 * instead of 20 (how cost grows, bench/scaling.py), e.g. current-2000.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_global_mutex.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <apr_time.h>

#include "ptm_api.h"
#include "ptm_store.h"

/* PanoptesTelemetryStateSize's default. */
#define SEGMENT (16 * 1024 * 1024)

static void die(const char *what)
{
    fprintf(stderr, "core_profile: %s\n", what);
    exit(1);
}

static void serve(const ptm_api_conf_t *conf, ptm_method_e method,
                  const char *path, const char *body, apr_pool_t *p,
                  int expect)
{
    ptm_api_req_t req;
    ptm_api_resp_t resp;

    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    req.method = method;
    req.path = path;
    req.raw_last = strrchr(path, '/') + 1;
    req.content_type = body ? "application/json" : NULL;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    req.now = apr_time_now();
    ptm_api_handle(&resp, conf, &req, p);
    if (resp.status != expect) {
        fprintf(stderr, "%s %s: %d %.*s\n", body ? "POST" : "GET", path,
                resp.status, (int)resp.body_len, resp.body);
        die("unexpected answer");
    }
}

static const char *event_body(char *buf, size_t n, long i, long types)
{
    snprintf(buf, n,
             "{\"type\":\"weather%02ld\",\"data\":{\"sky\":\"clear\","
             "\"temp_c\":%ld.5,\"humidity\":0.42,\"wind_kph\":[3.1,4.7,2.2],"
             "\"safe\":true,\"station\":\"pan001-aag\"},\"meta\":{\"unit\":"
             "\"PAN001\",\"source\":\"bench\",\"seq_hint\":%ld}}",
             i % types, i % 40, i);
    return buf;
}

/* About `size` bytes (< n): a reading with a long series (issue 14's
 * "5 kB event" at 5000). */
static const char *big_body(char *buf, size_t n, long i, size_t size)
{
    size_t len;
    int k;

    len = (size_t)snprintf(buf, n, "{\"type\":\"spectrum%02ld\",\"data\":"
                           "{\"station\":\"pan001-cam\",\"counts\":[",
                           i % 20);
    for (k = 0; len + 32 < size && len + 16 < n; k++) {
        len += (size_t)snprintf(buf + len, n - len, "%s%ld.%d", k ? "," : "",
                                (i + k) % 997, k % 10);
    }
    snprintf(buf + len, n - len, "]},\"meta\":{\"seq_hint\":%ld}}", i);
    return buf;
}

/* "current-2000" -> 2000 (and *kind "current"); no suffix -> 20. */
static long mode_types(const char *mode, size_t *kind_len)
{
    const char *dash = strrchr(mode, '-');
    char *end;
    long t;

    *kind_len = strlen(mode);
    if (!dash || dash[1] < '0' || dash[1] > '9') {
        return 20;
    }
    t = strtol(dash + 1, &end, 10);
    if (*end) {
        return 20;      /* event-5k, event-64k: a body size */
    }
    *kind_len = (size_t)(dash - mode);
    return t;
}

int main(int argc, char **argv)
{
    apr_pool_t *pool, *req_pool;
    apr_global_mutex_t *mutex;
    ptm_api_conf_t conf;
    char dir[] = "/tmp/ptm-profile-XXXXXX", body[512];
    const char *mode;
    char *kind, *big[20];
    size_t kind_len, big_size = 0;
    void *seg;
    long i, n, types;

    if (argc != 3 || (n = atol(argv[2])) <= 0) {
        die("usage: core_profile MODE N (see the top of core_profile.c)");
    }
    mode = argv[1];
    types = mode_types(mode, &kind_len);
    if (types < 1 || types > 4000) {
        die("between 1 and 4000 types");
    }
    if (!(kind = strndup(mode, kind_len))) {
        die("strndup");
    }
    if (strcmp(kind, "event-5k") == 0) {
        big_size = 5000;
    }
    else if (strcmp(kind, "event-64k") == 0) {
        big_size = 65536;
    }
    else if (strcmp(kind, "event") && strcmp(kind, "run")
             && strcmp(kind, "current") && strcmp(kind, "current-one")) {
        die("unknown mode");
    }
    /* Made once: printing thousands of numbers would outweigh the
     * request. */
    for (i = 0; big_size && i < 20; i++) {
        if (!(big[i] = malloc(big_size + 64))) {
            die("malloc");
        }
        big_body(big[i], big_size + 64, i, big_size);
    }
    apr_initialize();
    apr_pool_create(&pool, NULL);
    apr_pool_create(&req_pool, pool);
    if (!mkdtemp(dir)) {
        die("mkdtemp");
    }
    if (apr_global_mutex_create(&mutex, apr_pstrcat(pool, dir, "/lock", NULL),
                                APR_LOCK_DEFAULT, pool) != APR_SUCCESS) {
        die("apr_global_mutex_create");
    }
    if (!(seg = calloc(1, SEGMENT))) {
        die("calloc");
    }
    ptm_store_format(seg, SEGMENT, 0);
    memset(&conf, 0, sizeof(conf));
    conf.store = ptm_store_attach(seg, mutex, pool);
    conf.site_dir = dir;
    conf.run_roots = apr_array_make(pool, 1, sizeof(const char *));
    conf.version = "profile";

    /* The types /current serves (20 unless the mode names a count), and
     * a run for the run stream. */
    for (i = 0; i < types; i++) {
        serve(&conf, PTM_POST, "/event",
              event_body(body, sizeof(body), i, types), req_pool, 200);
        apr_pool_clear(req_pool);
    }
    if (strcmp(kind, "run") == 0) {
        serve(&conf, PTM_POST, "/run/start", "{}", req_pool, 200);
    }
    apr_pool_clear(req_pool);
    for (i = 0; i < n; i++) {
        if (strcmp(kind, "event") == 0 || strcmp(kind, "run") == 0) {
            serve(&conf, PTM_POST, "/event",
                  event_body(body, sizeof(body), i, types), req_pool, 200);
        }
        else if (big_size) {
            serve(&conf, PTM_POST, "/event", big[i % 20], req_pool, 200);
        }
        else if (strcmp(kind, "current") == 0) {
            serve(&conf, PTM_GET, "/current", NULL, req_pool, 200);
        }
        else {
            serve(&conf, PTM_GET, "/current/weather07", NULL, req_pool, 200);
        }
        apr_pool_clear(req_pool);
    }
    if (system(apr_pstrcat(pool, "rm -rf '", dir, "'", NULL)) != 0) {
        die("cannot remove the site directory");
    }
    apr_terminate();
    return 0;
}

/* make profile: the core's share of a request, in a form callgrind can
 * count.  Serves N requests of one kind through ptm_api_handle with a real
 * store (under an apr_global_mutex, as in httpd) on a temporary site
 * directory, with the bodies bench/wrk.lua sends.  Instruction counts are
 * stable on a noisy machine, unlike wall-clock time; the httpd side of a
 * request is measured by `make bench`, not here.
 *
 *   core_profile event|event-5k|run|current|current-one N
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

#define SEGMENT (4 * 1024 * 1024)

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

static const char *event_body(char *buf, size_t n, long i)
{
    snprintf(buf, n,
             "{\"type\":\"weather%02ld\",\"data\":{\"sky\":\"clear\","
             "\"temp_c\":%ld.5,\"humidity\":0.42,\"wind_kph\":[3.1,4.7,2.2],"
             "\"safe\":true,\"station\":\"pan001-aag\"},\"meta\":{\"unit\":"
             "\"PAN001\",\"source\":\"bench\",\"seq_hint\":%ld}}",
             i % 20, i % 40, i);
    return buf;
}

/* About 5 kB: a reading with a long series (issue 14's "5 kB event"). */
static const char *big_body(char *buf, size_t n, long i)
{
    size_t len;
    int k;

    len = (size_t)snprintf(buf, n, "{\"type\":\"spectrum%02ld\",\"data\":"
                           "{\"station\":\"pan001-cam\",\"counts\":[",
                           i % 20);
    for (k = 0; k < 600 && len + 16 < n; k++) {
        len += (size_t)snprintf(buf + len, n - len, "%s%ld.%d", k ? "," : "",
                                (i + k) % 997, k % 10);
    }
    snprintf(buf + len, n - len, "]},\"meta\":{\"seq_hint\":%ld}}", i);
    return buf;
}

int main(int argc, char **argv)
{
    apr_pool_t *pool, *req_pool;
    apr_global_mutex_t *mutex;
    ptm_api_conf_t conf;
    char dir[] = "/tmp/ptm-profile-XXXXXX", body[512];
    const char *mode;
    void *seg;
    long i, n;

    if (argc != 3 || (n = atol(argv[2])) <= 0) {
        die("usage: core_profile event|event-5k|run|current|current-one N");
    }
    mode = argv[1];
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

    /* The 20 types /current serves, and a run for the run stream. */
    for (i = 0; i < 20; i++) {
        serve(&conf, PTM_POST, "/event", event_body(body, sizeof(body), i),
              req_pool, 200);
    }
    if (strcmp(mode, "run") == 0) {
        serve(&conf, PTM_POST, "/run/start", "{}", req_pool, 200);
    }
    apr_pool_clear(req_pool);
    for (i = 0; i < n; i++) {
        if (strcmp(mode, "event") == 0 || strcmp(mode, "run") == 0) {
            serve(&conf, PTM_POST, "/event",
                  event_body(body, sizeof(body), i), req_pool, 200);
        }
        else if (strcmp(mode, "event-5k") == 0) {
            /* Made once: printing 600 numbers would outweigh the request. */
            static char big[20][8192];

            if (!big[i % 20][0]) {
                big_body(big[i % 20], sizeof(big[0]), i % 20);
            }
            serve(&conf, PTM_POST, "/event", big[i % 20], req_pool, 200);
        }
        else if (strcmp(mode, "current") == 0) {
            serve(&conf, PTM_GET, "/current", NULL, req_pool, 200);
        }
        else if (strcmp(mode, "current-one") == 0) {
            serve(&conf, PTM_GET, "/current/weather07", NULL, req_pool, 200);
        }
        else {
            die("unknown mode");
        }
        apr_pool_clear(req_pool);
    }
    if (system(apr_pstrcat(pool, "rm -rf '", dir, "'", NULL)) != 0) {
        die("cannot remove the site directory");
    }
    apr_terminate();
    return 0;
}

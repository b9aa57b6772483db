/* The router: method + path + body in, status + JSON body out (SPEC §2,
 * §3).  No httpd here; the glue in mod_panoptes_telemetry.c reads the
 * request into a ptm_api_req_t and writes the ptm_api_resp_t back. */
#ifndef PTM_API_H
#define PTM_API_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include "ptm_store.h"

typedef struct {
    ptm_store_t *store;
    const char *site_dir;               /* normalised absolute path */
    const apr_array_header_t *run_roots; /* const char *, normalised */
    int sync;                           /* fdatasync each stored event */
    const char *version;
} ptm_api_conf_t;

typedef enum { PTM_GET, PTM_HEAD, PTM_POST, PTM_OTHER } ptm_method_e;

typedef struct {
    ptm_method_e method;
    const char *path;        /* decoded, relative to the mount ("/event") */
    const char *raw_last;    /* last segment of the raw request path */
    const char *content_type;
    const char *body;
    size_t body_len;
    apr_time_t now;
    int debug;               /* fill resp->debug (costs a string) */
} ptm_api_req_t;

typedef struct {
    int status;
    const char *body;        /* JSON */
    size_t body_len;
    const char *allow;       /* Allow header of a 405, else NULL */
    const char *log;         /* what to say in the error log, else NULL */
    const char *debug;       /* the per-event debug line, when asked */
} ptm_api_resp_t;

/** 1 when the route reads a request body (POST /event, POST /run/start). */
int ptm_api_wants_body(ptm_method_e method, const char *path);

/** Serve one request.  Never fails: errors are responses. */
void ptm_api_handle(ptm_api_resp_t *resp, const ptm_api_conf_t *conf,
                    const ptm_api_req_t *req, apr_pool_t *p);

/** Fill `resp` with {"detail": detail} and `status` (for the glue's own
 * errors: 413, 503, ...). */
void ptm_api_error(ptm_api_resp_t *resp, int status, const char *detail,
                   apr_pool_t *p);

#endif

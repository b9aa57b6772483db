/* The router: method + path + body in, status + JSON body out (SPEC §2,
 * §3).  No httpd here; the glue in mod_panoptes_telemetry.c reads the
 * request into a ptm_api_req_t and writes the ptm_api_resp_t back. */
#ifndef PTM_API_H
#define PTM_API_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include "ptm_err.h"
#include "ptm_live.h"
#include "ptm_store.h"

typedef struct {
    ptm_store_t *store;
    const char *site_dir;               /* normalised absolute path */
    const apr_array_header_t *run_roots; /* const char *, normalised */
    int sync;                           /* fdatasync each stored event */
    const char *version;
    /* GET /stream (SPEC §12.3; ptm_stream.c): */
    ptm_live_t *live;                   /* NULL: no live feed (503) */
    unsigned stream_max;                /* PanoptesTelemetryStreamMax */
    apr_interval_time_t stream_timeout; /* ...StreamTimeout; 0: none */
    apr_interval_time_t stream_ping;    /* `: ping` interval (15 s) */
    apr_interval_time_t stream_tick;    /* how often a waiting stream
                                         * looks at `stopping` and `gone`
                                         * (500 ms; SPEC: end within 2 s) */
} ptm_api_conf_t;

typedef enum { PTM_GET, PTM_HEAD, PTM_POST, PTM_OTHER } ptm_method_e;

/* Where a streamed answer (GET /events as NDJSON without a limit, GET
 * /stream) goes: `start` once, before the first `write`, with the content
 * type of a 200; a status other than APR_SUCCESS (the client went away)
 * stops it.  Any long answer asks `gone` (may be NULL) from time to time.
 * The live feed also needs `flush` (send what was written now) and
 * `stopping` (1 once httpd is stopping or restarting: end the stream). */
typedef struct {
    apr_status_t (*start)(void *ctx, const char *content_type);
    apr_status_t (*write)(void *ctx, const char *data, size_t len);
    int (*gone)(void *ctx);     /* 1 when the client has hung up */
    apr_status_t (*flush)(void *ctx);
    int (*stopping)(void *ctx);
    void *ctx;
} ptm_api_out_t;

typedef struct {
    ptm_method_e method;
    const char *path;        /* decoded, relative to the mount ("/event") */
    const char *raw_last;    /* last segment of the raw request path */
    const char *content_type;
    const char *body;
    size_t body_len;
    apr_time_t now;
    int debug;               /* fill resp->debug (costs a string) */
    const char *args;        /* the raw query string, or NULL */
    const char *accept;      /* the Accept header, or NULL */
    const char *last_event_id; /* the Last-Event-ID header, or NULL */
    const ptm_api_out_t *out;  /* for streamed answers, or NULL */
} ptm_api_req_t;

typedef struct {
    int status;
    const char *body;        /* JSON */
    size_t body_len;
    const char *allow;       /* Allow header of a 405, else NULL */
    const char *log;         /* what to say in the error log, else NULL */
    const char *debug;       /* the per-event debug line, when asked */
    const char *content_type;  /* NULL: application/json */
    const char *next_cursor;   /* Panoptes-Next-Cursor header, or NULL */
    const char *retry_after;   /* Retry-After header, or NULL */
    uint64_t skipped;          /* damaged lines met: Panoptes-Skipped */
    int streamed;            /* the answer went out through req->out
                              * (status 200; a 500 here means it broke
                              * off half way, 499 that the client went
                              * away: close the connection) */
} ptm_api_resp_t;

/** 1 when the route reads a request body (POST /event, POST /run/start). */
int ptm_api_wants_body(ptm_method_e method, const char *path);

/** Serve one request.  Never fails: errors are responses. */
void ptm_api_handle(ptm_api_resp_t *resp, const ptm_api_conf_t *conf,
                    const ptm_api_req_t *req, apr_pool_t *p);

/** Fill `resp` from a core error (its status and detail), releasing it. */
void ptm_api_respond_err(ptm_api_resp_t *resp, ptm_err_t *e, apr_pool_t *p);

/* An answer of GET /events that is built whole (JSON, or NDJSON with a
 * limit: the cursor goes out first) ends, with a cursor, before the event
 * that would take its lines past this many bytes (never before its first
 * event): `limit` counts events, and events can be MiBs each. */
#define PTM_EVENTS_PAGE_BYTES ((size_t)16 * 1024 * 1024)

/** GET /events (SPEC §12.2; ptm_events.c). */
void ptm_events_handle(ptm_api_resp_t *resp, const ptm_api_conf_t *conf,
                       const ptm_api_req_t *req, apr_pool_t *p);

/** GET /stream (SPEC §12.3; ptm_stream.c): holds the caller until the
 * stream ends (client gone, StreamTimeout, httpd stopping).  A refusal
 * (503 over the cap, 422) is an ordinary answer in `resp`; a stream sets
 * resp->streamed (status 200; 499 when the client went away). */
void ptm_stream_handle(ptm_api_resp_t *resp, const ptm_api_conf_t *conf,
                       const ptm_api_req_t *req, apr_pool_t *p);

/** Fill `resp` with {"detail": detail} and `status` (for the glue's own
 * errors: 413, 503, ...). */
void ptm_api_error(ptm_api_resp_t *resp, int status, const char *detail,
                   apr_pool_t *p);

#endif

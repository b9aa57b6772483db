/* The router and the handlers of the routes (GET /events and GET /stream
 * have files of their own, ptm_events.c and ptm_stream.c); see
 * ptm_api.h. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <apr_strings.h>
#include "ptm_api.h"
#include "ptm_event.h"
#include "ptm_fs.h"
#include "ptm_json.h"
#include "ptm_ndjson.h"
#include "ptm_query.h"
#include "ptm_run.h"
#include "ptm_runs.h"
#include "ptm_time.h"

enum {
    R_NONE, R_HEALTH, R_READY, R_RUN, R_RUN_START, R_RUN_STOP, R_EVENT,
    R_CURRENT, R_CURRENT_ONE, R_SHUTDOWN, R_EVENTS, R_STREAM
};

static const struct {
    const char *path;
    int route;
    ptm_method_e method;
} routes[] = {
    { "/health", R_HEALTH, PTM_GET },
    { "/ready", R_READY, PTM_GET },
    { "/run", R_RUN, PTM_GET },
    { "/run/start", R_RUN_START, PTM_POST },
    { "/run/stop", R_RUN_STOP, PTM_POST },
    { "/event", R_EVENT, PTM_POST },
    { "/current", R_CURRENT, PTM_GET },
    { "/shutdown", R_SHUTDOWN, PTM_POST },
    { "/events", R_EVENTS, PTM_GET },
    { "/stream", R_STREAM, PTM_GET },
};

static int route_of(const char *path, ptm_method_e *method)
{
    size_t i;

    for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(path, routes[i].path) == 0) {
            *method = routes[i].method;
            return routes[i].route;
        }
    }
    /* /current/{type}: exactly one more non-empty segment. */
    if (strncmp(path, "/current/", 9) == 0 && path[9]
        && !strchr(path + 9, '/')) {
        *method = PTM_GET;
        return R_CURRENT_ONE;
    }
    return R_NONE;
}

int ptm_api_wants_body(ptm_method_e method, const char *path)
{
    ptm_method_e m;
    int r = route_of(path, &m);

    return method == PTM_POST && (r == R_EVENT || r == R_RUN_START);
}

static void respond(ptm_api_resp_t *resp, int status, const ptm_buf_t *b)
{
    resp->status = status;
    resp->body = b->data;
    resp->body_len = b->len;
}

static void respond_detail(ptm_api_resp_t *resp, int status,
                           const json_t *detail, apr_pool_t *p)
{
    ptm_buf_t b;

    ptm_buf_init(&b, p, 128);
    ptm_buf_puts(&b, "{\"detail\":");
    if (ptm_json_dump(&b, detail) != 0) {
        b.len = 0;
        ptm_buf_puts(&b, "{\"detail\":\"Internal Server Error\"");
        status = 500;
    }
    ptm_buf_putc(&b, '}');
    respond(resp, status, &b);
}

void ptm_api_error(ptm_api_resp_t *resp, int status, const char *detail,
                   apr_pool_t *p)
{
    ptm_err_t e = { 0, NULL, NULL };

    ptm_err_set(&e, status, detail);
    respond_detail(resp, status, e.detail, p);
    ptm_err_clear(&e);
}

void ptm_api_respond_err(ptm_api_resp_t *resp, ptm_err_t *e, apr_pool_t *p)
{
    respond_detail(resp, e->status, e->detail, p);
    if (e->log) {
        resp->log = e->log;
    }
    ptm_err_clear(e);
}

static void respond_literal(ptm_api_resp_t *resp, const char *json)
{
    resp->status = 200;
    resp->body = json;
    resp->body_len = strlen(json);
}

static const char *errstr(apr_status_t rv, apr_pool_t *p)
{
    char buf[120];

    return apr_pstrdup(p, apr_strerror(rv, buf, sizeof(buf)));
}

/* ---- GET /ready ---------------------------------------------------------- */

static void do_ready(ptm_api_resp_t *resp, const ptm_api_conf_t *conf,
                     apr_pool_t *p)
{
    ptm_buf_t b;

    ptm_buf_init(&b, p, 96);
    ptm_buf_puts(&b, "{\"ready\":true,\"run_active\":");
    /* Without the lock: readiness must not wait for a writer's disk. */
    ptm_buf_puts(&b, ptm_store_run_active(conf->store) ? "true" : "false");
    ptm_buf_puts(&b, ",\"version\":");
    ptm_json_dump_string(&b, conf->version, strlen(conf->version));
    ptm_buf_putc(&b, '}');
    respond(resp, 200, &b);
}

/* ---- runs ----------------------------------------------------------------- */

/* 500 for a read of the shared state that failed: the lock's error, or
 * a state that does not check out (a reader bounds what it reads,
 * ptm_view_read). */
static void read_failed(ptm_api_resp_t *resp, apr_status_t rv, apr_pool_t *p)
{
    if (rv == PTM_STORE_DAMAGED) {
        ptm_api_error(resp, 500, "The shared state is damaged", p);
        resp->log = "a reader found offsets or lengths out of bounds";
    }
    else {
        ptm_api_error(resp, 500, "Cannot lock the shared state", p);
        resp->log = errstr(rv, p);
    }
}

static void run_answer(ptm_api_resp_t *resp, apr_status_t rv, ptm_buf_t *b,
                       apr_pool_t *p)
{
    if (rv == PTM_STORE_NORUN) {
        ptm_api_error(resp, 404, "No run is active", p);
    }
    else if (rv != APR_SUCCESS) {
        read_failed(resp, rv, p);
    }
    else {
        respond(resp, 200, b);
    }
}

/* Every run's file, in its run directory (SPEC §4). */
#define RUN_FILE "telemetry.ndjson"

/* Open the run directory `rel` beneath `root` (making it with `create`)
 * without following a link (ptm_fs), then, with `seq_floor`, read the last
 * seq of its file, else only look whether that file is a link.  Returns
 * APR_SUCCESS, or the error with `*bad` the path that failed. */
static apr_status_t open_run_dir(const char **bad, const char *root,
                                 const char *rel, int create,
                                 uint64_t *seq_floor, apr_pool_t *p)
{
    struct stat st;
    apr_status_t rv;
    int fd;

    if ((rv = ptm_fs_open_dir(&fd, bad, root, rel, create, p))
        != APR_SUCCESS) {
        return rv;
    }
    if (seq_floor) {
        /* A reused directory: its file's numbers must not come round
         * again. */
        rv = ptm_ndjson_last_seq_at(seq_floor, fd, RUN_FILE);
    }
    else if (fstatat(fd, RUN_FILE, &st, AT_SYMLINK_NOFOLLOW) == 0
             && S_ISLNK(st.st_mode)) {
        rv = PTM_FS_LINK;
    }
    if (rv != APR_SUCCESS) {
        *bad = apr_pstrcat(p, root, strcmp(root, "/") ? "/" : "", rel,
                           *rel ? "/" : "", RUN_FILE, NULL);
    }
    close(fd);
    return rv;
}

/* Open the run's file `dir`/telemetry.ndjson for one event, walking from
 * `root` to `rel` (the split of `dir`) without following a link.  A
 * missing directory is made again (as upstream does), but not for a run
 * that has ended meanwhile.  Returns APR_SUCCESS with `*fd`, or the error
 * with `*bad` the directory that failed (NULL when the file did). */
static apr_status_t open_run_file(int *fd, const char **bad,
                                  const ptm_api_conf_t *conf,
                                  const ptm_store_run_t *run,
                                  const char *root, const char *rel,
                                  apr_pool_t *p)
{
    apr_status_t rv;
    int dfd;

    *fd = -1;
    rv = ptm_fs_open_dir(&dfd, bad, root, rel, 0, p);
    if (APR_STATUS_IS_ENOENT(rv)
        && !ptm_store_run_changed(conf->store, run->gen)) {
        rv = ptm_fs_open_dir(&dfd, bad, root, rel, 1, p);
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    rv = ptm_ndjson_open_at(fd, dfd, RUN_FILE);
    close(dfd);
    return rv;
}

/* A directory split for ptm_fs: its root and the rest. */
typedef struct {
    const char *root;
    const char *rel;
} place_t;

/* Where mkdir -p of the reported run dir `dir` goes: its detours, then the
 * run directory `real` (place_t, split from the roots).  A detour that no
 * root holds is an ancestor of one (ptm_run_resolve_dir made sure): it is
 * on the admin's path, and left alone.  NULL when no root holds `real`. */
static apr_array_header_t *way_of(const ptm_api_conf_t *conf,
                                  const char *dir, const char *real,
                                  apr_pool_t *p)
{
    apr_array_header_t *detours = ptm_run_detours(dir, p);
    apr_array_header_t *way = apr_array_make(p, detours->nelts + 1,
                                             sizeof(place_t));
    place_t pl;
    int i;

    for (i = 0; i < detours->nelts; i++) {
        if (ptm_run_split_dir(&pl.root, &pl.rel,
                              APR_ARRAY_IDX(detours, i, const char *),
                              conf->site_dir, conf->run_roots, p)
            == APR_SUCCESS) {
            APR_ARRAY_PUSH(way, place_t) = pl;
        }
    }
    if (ptm_run_split_dir(&pl.root, &pl.rel, real, conf->site_dir,
                          conf->run_roots, p) != APR_SUCCESS) {
        return NULL;
    }
    APR_ARRAY_PUSH(way, place_t) = pl;
    return way;
}

/* Make (with `create`) or look at every directory of `way`, the run
 * directory last (open_run_dir).  Making, the first error is returned;
 * looking, only a link counts (what is missing will be made, and what else
 * is wrong is for the making to say). */
static apr_status_t walk_way(const char **bad, const apr_array_header_t *way,
                             int create, uint64_t *seq_floor, apr_pool_t *p)
{
    apr_status_t rv;
    int i, fd;

    for (i = 0; i < way->nelts; i++) {
        const place_t *pl = &APR_ARRAY_IDX(way, i, place_t);

        if (i == way->nelts - 1) {
            rv = open_run_dir(bad, pl->root, pl->rel, create, seq_floor, p);
        }
        else if ((rv = ptm_fs_open_dir(&fd, bad, pl->root, pl->rel, create,
                                       p)) == APR_SUCCESS) {
            close(fd);
        }
        if (rv != APR_SUCCESS && (create || rv == PTM_FS_LINK)) {
            return rv;
        }
    }
    return APR_SUCCESS;
}

typedef struct {
    const apr_array_header_t *way;  /* place_t: way_of */
    const char *bad;         /* where it failed */
    int ran;
    int noted;               /* the runs index failed, not the dir */
    const char *site_dir;    /* for the runs index: */
    const char *run_id;
    size_t run_id_len;
    const char *real;
    apr_time_t now;
    apr_pool_t *pool;
} mkdir_ctx_t;

/* Under the store lock: what was looked at before may have changed.
 * The run goes into the runs index (ptm_runs.h) before it starts: a run
 * GET /events could not find after a restart does not start.  Noted
 * first, and taken back if its directory cannot be made: a refused start
 * leaves nothing behind (a directory made for it would use up its run
 * id: ids are derived from the numbered directories). */
static apr_status_t make_run_dir(void *ctx, uint64_t *seq_floor)
{
    mkdir_ctx_t *m = ctx;
    apr_off_t size = ptm_runs_size(m->site_dir, m->pool);
    apr_status_t rv;

    m->ran = 1;
    if ((rv = ptm_runs_note_start(m->site_dir, m->run_id, m->run_id_len,
                                  m->real, m->now, m->pool))
        != APR_SUCCESS) {
        m->noted = 1;
        return rv;
    }
    if ((rv = walk_way(&m->bad, m->way, 1, seq_floor, m->pool))
        != APR_SUCCESS) {
        /* Best effort: a start nobody took back ends where the next one
         * starts (ptm_runs_read), and its directory holds nothing. */
        ptm_runs_cut(m->site_dir, size, m->pool);
    }
    return rv;
}

static json_t *loc_of(const char *a, const char *b, const char *c)
{
    json_t *loc = json_array();

    json_array_append_new(loc, json_string(a));
    json_array_append_new(loc, json_string(b));
    if (c) {
        json_array_append_new(loc, json_string(c));
    }
    return loc;
}

/* A 422 value_error at run_dir (with a ctx, like the confinement one) or
 * at the run id's field. */
static void run_dir_item(ptm_err_t *err, const ptm_run_req_t *rr,
                         const char *why, apr_pool_t *p)
{
    json_t *ctx = json_object();

    json_object_set_new(ctx, "error", json_string(why));
    ptm_err_add_item(err, "value_error", loc_of("body", "run_dir", NULL),
                     apr_pstrcat(p, "Value error, ", why, NULL),
                     json_stringn(rr->run_dir, rr->run_dir_len), ctx);
}

static void run_id_item(ptm_err_t *err, const ptm_run_req_t *rr,
                        const char *msg)
{
    ptm_err_add_item(err, "value_error",
                     rr->run_id_from_meta ? loc_of("body", "meta", "run_id")
                                          : loc_of("body", "run_id", NULL),
                     msg, json_stringn(rr->run_id, rr->run_id_len), NULL);
}

/* A link met on the way to the run directory: the client's to fix (a
 * path that leaves its root, SPEC §11.3 F1), at the field that named the
 * directory.  0 when no field did (a derived id). */
static int link_item(ptm_err_t *err, const ptm_run_req_t *rr,
                     const char *bad, apr_pool_t *p)
{
    const char *why = apr_pstrcat(p, ptm_fs_describe(PTM_FS_LINK, bad, p),
                                  "; a directory elsewhere must be named as "
                                  "a PanoptesTelemetryRunRoot", NULL);

    if (rr->run_dir) {
        run_dir_item(err, rr, why, p);
    }
    else if (rr->run_id) {
        run_id_item(err, rr, apr_pstrcat(p, "Value error, ", why, NULL));
    }
    else {
        return 0;
    }
    return 1;
}

static void do_run_start(ptm_api_resp_t *resp, const ptm_api_conf_t *conf,
                         const ptm_api_req_t *req, apr_pool_t *p)
{
    ptm_err_t err = { 0, NULL, NULL };
    ptm_run_req_t rr;
    ptm_store_run_t run;
    json_t *body;
    const char *dir = NULL, *real = NULL, *why, *run_id, *bad;
    char started[PTM_TS_LEN + 1];
    ptm_buf_t obj;
    mkdir_ctx_t mk;
    apr_status_t rv;

    memset(&rr, 0, sizeof(rr));
    memset(&mk, 0, sizeof(mk));
    if (ptm_body_parse(&body, &err, req->content_type, req->body,
                       req->body_len) != 0
        || ptm_run_req_validate(&rr, body, &err, p) != 0) {
        goto fail;
    }
    /* The module's own checks are validation too, so they come before the
     * 409 (SPEC §2.6: validation happens before any state check); every
     * failing field is reported, in field order. */
    if (rr.run_dir) {
        dir = ptm_run_resolve_dir(&real, &why, conf->site_dir,
                                  conf->run_roots, rr.run_dir,
                                  rr.run_dir_len, NULL, p);
        if (!dir) {
            run_dir_item(&err, &rr, why, p);
        }
    }
    if (rr.run_id) {
        /* A run id reaches log and server-status lines: no control
         * characters, with or without run_dir.  Without one it names a
         * directory of the site dir. */
        if (ptm_run_id_has_control(rr.run_id, rr.run_id_len)) {
            run_id_item(&err, &rr, "Value error, run_id must not contain "
                        "control characters");
        }
        else if (!rr.run_dir
                 && !ptm_run_id_is_segment(rr.run_id, rr.run_id_len)) {
            run_id_item(&err, &rr, "Value error, run_id must be one safe "
                        "path segment when no run_dir is given (not empty, "
                        "'.' or '..', no '/' or control characters, at most "
                        "255 bytes)");
        }
        else if (!rr.run_dir
                 && ptm_run_name_is_reserved(rr.run_id, rr.run_id_len)) {
            run_id_item(&err, &rr, "Value error, run_id must not be a name "
                        "the module keeps in the site directory "
                        "(site_*.ndjson, or beginning with '.') when no "
                        "run_dir is given");
        }
        else if (!rr.run_dir) {
            dir = ptm_run_resolve_dir(&real, &why, conf->site_dir,
                                      conf->run_roots, NULL, 0, rr.run_id,
                                      p);
        }
    }
    if (err.status) {
        goto fail;
    }
    /* A link on the way to a directory the client named is refused before
     * the 409 too; make_run_dir walks again, under the lock, so a link
     * planted in between is refused just the same. */
    if (real) {
        if (!(mk.way = way_of(conf, dir, real, p))) {
            ptm_err_set(&err, 500, apr_pstrcat(p, "No root holds the run "
                        "directory ", real, NULL));
            goto fail;
        }
        if (walk_way(&bad, mk.way, 0, NULL, p) == PTM_FS_LINK
            && link_item(&err, &rr, bad, p)) {
            goto fail;
        }
    }
    if ((rv = ptm_store_run_peek(&run, conf->store, p)) != APR_SUCCESS) {
        ptm_err_set(&err, 500, "Cannot lock the shared state");
        err.log = apr_pstrcat(p, "cannot lock the shared state: ",
                              errstr(rv, p), NULL);
        goto fail;
    }
    if (run.active) {
        ptm_err_set(&err, 409, "A run is already active");
        goto fail;
    }
    run_id = rr.run_id;
    if (!run_id) {
        rv = ptm_run_derive_id(&run_id, conf->site_dir, p);
        if (rv != APR_SUCCESS) {
            ptm_err_set(&err, 500, apr_pstrcat(p, "Cannot read the site "
                        "directory ", conf->site_dir, ": ", errstr(rv, p),
                        NULL));
            goto fail;
        }
        rr.run_id_len = strlen(run_id);
    }
    if (!dir) {
        /* A derived id: digits, one safe segment, none of the module's
         * names. */
        dir = ptm_run_resolve_dir(&real, &why, conf->site_dir,
                                  conf->run_roots, NULL, 0, run_id, p);
        if (!(mk.way = way_of(conf, dir, real, p))) {
            ptm_err_set(&err, 500, apr_pstrcat(p, "No root holds the run "
                        "directory ", real, NULL));
            goto fail;
        }
    }
    /* meta.run_id is the resolved string, in place or appended last. */
    json_object_set_new(rr.meta, "run_id", json_stringn(run_id,
                                                        rr.run_id_len));
    ptm_time_utc_iso(started, req->now);
    ptm_buf_init(&obj, p, 256);
    ptm_buf_puts(&obj, "{\"run_dir\":");
    ptm_json_dump_string(&obj, dir, strlen(dir));
    ptm_buf_puts(&obj, ",\"run_id\":");
    ptm_json_dump_string(&obj, run_id, rr.run_id_len);
    ptm_buf_puts(&obj, ",\"meta\":");
    if (ptm_json_dump(&obj, rr.meta) != 0) {
        ptm_err_set(&err, 500, "Run meta could not be serialised");
        goto fail;
    }
    ptm_buf_puts(&obj, ",\"started_at\":\"");
    ptm_buf_puts(&obj, started);
    ptm_buf_puts(&obj, "\"}");

    /* The store keeps the real directory: every file operation of the run
     * starts from it (the reported one is in the run object). */
    mk.pool = p;
    mk.site_dir = conf->site_dir;
    mk.run_id = run_id;
    mk.run_id_len = rr.run_id_len;
    mk.real = real;
    mk.now = req->now;
    rv = ptm_store_run_start(conf->store, obj.data, obj.len, run_id,
                             rr.run_id_len, real, make_run_dir, &mk);
    if (rv == PTM_STORE_BUSY) {
        ptm_err_set(&err, 409, "A run is already active");
        goto fail;
    }
    if (rv == PTM_STORE_FULL) {
        ptm_err_set(&err, 507, "The shared state is full; raise "
                    "PanoptesTelemetryStateSize");
        goto fail;
    }
    if (rv != APR_SUCCESS && !mk.ran) {
        ptm_err_set(&err, 500, "Cannot lock the shared state");
        err.log = apr_pstrcat(p, "cannot lock the shared state: ",
                              errstr(rv, p), NULL);
        goto fail;
    }
    if (mk.noted) {
        ptm_err_set(&err, 500, apr_pstrcat(p, "Cannot write the runs index ",
                    conf->site_dir, "/" PTM_RUNS_FILE ": ",
                    ptm_fs_describe(rv, conf->site_dir, p), NULL));
        goto fail;
    }
    if (rv == PTM_FS_LINK && link_item(&err, &rr, mk.bad, p)) {
        goto fail;
    }
    if (rv != APR_SUCCESS) {
        ptm_err_set(&err, 500, apr_pstrcat(p, "Cannot create run directory ",
                    real, ": ", ptm_fs_describe(rv, mk.bad ? mk.bad : real,
                                                p), NULL));
        goto fail;
    }
    ptm_run_req_free(&rr);
    respond(resp, 200, &obj);
    resp->log = apr_pstrcat(p, "run ", run_id, " started in ", dir, NULL);
    return;

fail:
    ptm_run_req_free(&rr);
    ptm_api_respond_err(resp, &err, p);
}

/* ---- POST /run/stop ----------------------------------------------------- */

typedef struct {
    const char *site_dir;
    apr_time_t now;
    apr_status_t rv;
    apr_pool_t *pool;
} stop_note_t;

static void note_stop(void *ctx, const char *run_dir)
{
    stop_note_t *n = ctx;

    n->rv = ptm_runs_note_stop(n->site_dir, run_dir, n->now, n->pool);
}

/* The stop goes into the runs index under the store lock, in order with
 * the starts.  Best effort: a run with no stop line ends where the next
 * one starts (ptm_runs_read); a failure is logged, never a reason to
 * keep a run going. */
static void do_run_stop(ptm_api_resp_t *resp, const ptm_api_conf_t *conf,
                        const ptm_api_req_t *req, ptm_buf_t *b,
                        apr_pool_t *p)
{
    stop_note_t n;

    n.site_dir = conf->site_dir;
    n.now = req->now;
    n.rv = APR_SUCCESS;
    n.pool = p;
    run_answer(resp, ptm_store_run_stop_noting(conf->store, b, note_stop,
                                               &n), b, p);
    if (resp->status != 200) {
        return;
    }
    resp->log = "run stopped";
    if (n.rv != APR_SUCCESS) {
        resp->log = apr_pstrcat(p, "run stopped; cannot note it in the runs "
                                "index ", conf->site_dir, "/" PTM_RUNS_FILE
                                ": ", errstr(n.rv, p), NULL);
    }
}

/* ---- POST /event -------------------------------------------------------- */

/* How many times an event is built for the run as it is before the answer
 * is 503: each retry means a run started or stopped in between. */
#define PTM_API_EVENT_ATTEMPTS 8

static void do_event(ptm_api_resp_t *resp, const ptm_api_conf_t *conf,
                     const ptm_api_req_t *req, apr_pool_t *p)
{
    ptm_err_t err = { 0, NULL, NULL };
    ptm_event_req_t ev;
    ptm_store_event_t se;
    ptm_envelope_t env;
    ptm_store_run_t run;
    json_t *body, *client_meta = NULL;
    char ts[PTM_TS_LEN + 1], day[PTM_DAYKEY_LEN + 1];
    const char *path = NULL, *step = "write", *bad = NULL;
    uint64_t seq = 0, id = 0;
    apr_time_t ts_us;
    int attempt;
    apr_status_t rv;

    memset(&ev, 0, sizeof(ev));
    if (ptm_body_parse(&body, &err, req->content_type, req->body,
                       req->body_len) != 0
        || ptm_event_validate(&ev, body, &err) != 0) {
        goto fail;
    }
    ev.size_hint = req->body_len;
    /* The file is chosen from the server clock, never from a client ts. */
    ptm_time_utc_iso(ts, req->now);
    if ((rv = ptm_time_day_key(day, req->now)) != APR_SUCCESS) {
        ptm_err_set(&err, 500, "Cannot compute the local date");
        goto fail;
    }
    /* Where the event sorts in GET /events: its ts as a time (a client's
     * may be any string, SPEC §6: then it is in no window). */
    if (!ev.ts) {
        ts_us = req->now - req->now % 1000;     /* the stamp truncates */
    }
    else if (ptm_time_parse_rfc3339(&ts_us, ev.ts, ev.ts_len, 1) != 0) {
        ts_us = PTM_TS_NONE;
    }
    /* Keep the client's meta: each attempt stamps a fresh copy. */
    client_meta = ev.meta;
    ev.meta = NULL;
    for (attempt = 0; ; attempt++) {
        /* Built outside the lock for the run this thread saw last; the
         * store refuses it (STALE) if a run started or stopped since, and
         * then it is built again for the run as it is now.  Only so many
         * times: a run restarted before every attempt is a client storm
         * (or a bug), and a thread must not spin under it. */
        if (attempt == PTM_API_EVENT_ATTEMPTS) {
            ptm_err_set(&err, 503, "The run started or stopped before each "
                        "attempt to store this event; nothing was stored, "
                        "send it again");
            goto fail;
        }
        if ((rv = ptm_store_run_seen(&run, conf->store, attempt > 0, p))
            != APR_SUCCESS) {
            break;
        }
        json_decref(ev.meta);
        ev.meta = run.active ? json_deep_copy(client_meta)
                             : json_incref(client_meta);
        if (ptm_event_envelope(&env, &err, &ev, ts, run.run_id,
                               run.run_id_len, p) != 0) {
            goto fail;
        }
        memset(&se, 0, sizeof(se));
        se.run_gen = run.gen;
        se.stream = run.active ? PTM_STREAM_RUN : PTM_STREAM_SITE;
        se.key = env.key;
        se.key_len = env.key_len;
        se.ts_part = env.ts_part;
        se.ts_len = env.ts_len;
        se.body_part = env.body_part;
        se.body_len = env.body_len;
        se.make_current = ev.make_current;
        se.sync = conf->sync;
        se.fd = -1;
        se.path = path = bad = NULL;
        se.pool = p;
        se.failed_step = &step;
        se.accepted = req->now;
        se.ts_us = ts_us;
        se.tie = run.active ? ptm_query_tie(run.run_dir,
                                            strlen(run.run_dir)) : 0;
        se.stored = ev.store_permanently;
        se.id = &id;
        if (ev.store_permanently && !run.active) {
            /* The site file stays open in this process from event to
             * event (ptm_ndjson_file_append checks each time that its
             * name still leads to it). */
            path = apr_pstrcat(p, conf->site_dir, "/site_", day, ".ndjson",
                               NULL);
            se.path = path;
        }
        else if (ev.store_permanently) {
            /* A run file is opened for each event and closed after it, so
             * that no process holds it once the run is over: its disk can
             * be unmounted.  A failed open is only an error for the run as
             * it is. */
            const char *root, *rel;

            path = apr_pstrcat(p, run.run_dir, "/" RUN_FILE, NULL);
            se.path = path;
            if (ptm_run_split_dir(&root, &rel, run.run_dir, conf->site_dir,
                                  conf->run_roots, p) != APR_SUCCESS) {
                if (ptm_store_run_changed(conf->store, run.gen)) {
                    continue;
                }
                ptm_store_count_write_error(conf->store);
                ptm_err_set(&err, 500, apr_pstrcat(p, "Cannot store the "
                            "event: the run directory ", run.run_dir,
                            " is no longer inside the site directory or a "
                            "PanoptesTelemetryRunRoot (the configuration "
                            "changed since the run started); stop the run, "
                            "or name its root again", NULL));
                goto fail;
            }
            rv = open_run_file(&se.fd, &bad, conf, &run, root, rel, p);
            if (rv != APR_SUCCESS) {
                if (ptm_store_run_changed(conf->store, run.gen)) {
                    continue;
                }
                step = "open";
                break;
            }
        }
        rv = ptm_store_event(conf->store, &se, &seq);
        if (se.fd >= 0) {
            close(se.fd);
        }
        if (rv != PTM_STORE_STALE) {
            break;
        }
    }
    if ((rv == APR_SUCCESS || strcmp(step, "sync") == 0) && conf->live) {
        /* The ring holds it now (after a failed flush too: see
         * ptm_store_event): wake the live feed's subscribers (GET
         * /stream) before the answer goes, so that an event reaches them
         * about when its POST is answered. */
        ptm_live_notify(conf->live);
    }
    if (rv == PTM_STORE_FULL) {
        ptm_err_set(&err, 507, "The shared state is full; raise "
                    "PanoptesTelemetryStateSize");
        goto fail;
    }
    if (rv != APR_SUCCESS) {
        ptm_store_count_write_error(conf->store);
        /* "Cannot open|write <what failed>: <why>"; what failed is the
         * directory on the way to the file when the walk stopped there. */
        ptm_err_set(&err, 500, apr_pstrcat(p, "Cannot ", step, " ",
                    bad ? bad : path ? path : "event", ": ",
                    rv == PTM_FS_LINK ? "it is a symbolic link (not "
                                        "followed)"
                    : rv == PTM_SYNC_UNCONFIRMED
                    ? "its flush could not be confirmed (the stream "
                      "changed files too often meanwhile)"
                    : errstr(rv, p),
                    strcmp(step, "sync") == 0
                    ? "; the event is not known to be on stable storage "
                      "(it may be in the file, or may be lost)" : "",
                    NULL));
        goto fail;
    }
    resp->status = 200;
    resp->body = ptm_envelope_public(&env, seq, &resp->body_len);
    if (req->debug) {
        /* Like upstream's --verbose line for each event. */
        resp->debug = apr_psprintf(p, "event type=%.*s stream=%s seq=%"
                                   APR_UINT64_T_FMT "%s%s%s%s id=%"
                                   APR_UINT64_T_FMT "-%" APR_UINT64_T_FMT,
                                   (int)env.key_len, env.key,
                                   run.active ? "run" : "site", seq,
                                   run.active ? " run_id=" : "",
                                   run.active ? run.run_id : "",
                                   ev.store_permanently ? "" : " ephemeral",
                                   ev.make_current ? "" : " not-current",
                                   ptm_store_epoch(conf->store), id);
    }
    json_decref(client_meta);
    ptm_event_req_free(&ev);
    return;

fail:
    json_decref(client_meta);
    ptm_event_req_free(&ev);
    ptm_api_respond_err(resp, &err, p);
}

/* ---- GET /current/{type} ------------------------------------------------ */

static void do_current_one(ptm_api_resp_t *resp, const ptm_api_conf_t *conf,
                           const char *type, size_t len, apr_pool_t *p)
{
    ptm_buf_t key, out, detail;
    apr_status_t rv;

    ptm_buf_init(&key, p, len + 8);
    ptm_json_dump_string(&key, type, len);
    ptm_buf_init(&out, p, 512);
    rv = ptm_store_current_one(conf->store, key.data, key.len, &out);
    if (rv == APR_SUCCESS) {
        respond(resp, 200, &out);
        return;
    }
    if (rv != PTM_STORE_NOTFOUND) {
        read_failed(resp, rv, p);
        return;
    }
    ptm_buf_init(&detail, p, len + 40);
    ptm_buf_puts(&detail, "No current event for type ");
    if (ptm_utf8_valid(type, len)) {
        ptm_json_py_repr(&detail, type, len);
    }
    else {
        json_t *s = ptm_json_string_lossy(type, len);

        ptm_json_py_repr(&detail, json_string_value(s), json_string_length(s));
        json_decref(s);
    }
    ptm_buf_putc(&detail, '\0');
    ptm_api_error(resp, 404, detail.data, p);
}

/* ---- the router --------------------------------------------------------- */

void ptm_api_handle(ptm_api_resp_t *resp, const ptm_api_conf_t *conf,
                    const ptm_api_req_t *req, apr_pool_t *p)
{
    ptm_method_e want;
    ptm_buf_t b;
    int route = route_of(req->path, &want);
    ptm_method_e m = req->method == PTM_HEAD ? PTM_GET : req->method;
    char *type = NULL;
    size_t type_len = 0;

    memset(resp, 0, sizeof(*resp));
    if (route == R_CURRENT_ONE) {
        /* The type is the raw last segment, decoded here: an encoded slash
         * (kept by AllowEncodedSlashes NoDecode) makes it two segments,
         * a route miss whatever the method (SPEC §3.8). */
        const char *raw = req->raw_last ? req->raw_last : "";

        type = ptm_query_unescape(&type_len, raw, strlen(raw), 0, p);
        if (type_len == 0 || memchr(type, '/', type_len)) {
            route = R_NONE;
        }
    }
    if (route == R_NONE) {
        ptm_api_error(resp, 404, "Not Found", p);
        return;
    }
    if (m != want) {
        ptm_api_error(resp, 405, "Method Not Allowed", p);
        resp->allow = want == PTM_GET ? "GET" : "POST";
        return;
    }
    ptm_buf_init(&b, p, 512);
    switch (route) {
    case R_HEALTH:
        respond_literal(resp, "{\"ok\":true}");
        break;
    case R_READY:
        do_ready(resp, conf, p);
        break;
    case R_RUN:
        run_answer(resp, ptm_store_run_get(conf->store, &b), &b, p);
        break;
    case R_RUN_START:
        do_run_start(resp, conf, req, p);
        break;
    case R_RUN_STOP:
        do_run_stop(resp, conf, req, &b, p);
        break;
    case R_EVENT:
        do_event(resp, conf, req, p);
        break;
    case R_CURRENT: {
        apr_status_t rv = ptm_store_current(conf->store, &b);

        if (rv != APR_SUCCESS) {
            read_failed(resp, rv, p);
            break;
        }
        respond(resp, 200, &b);
        break;
    }
    case R_CURRENT_ONE:
        do_current_one(resp, conf, type, type_len, p);
        break;
    case R_EVENTS:
        ptm_events_handle(resp, conf, req, p);
        break;
    case R_STREAM:
        ptm_stream_handle(resp, conf, req, p);
        break;
    case R_SHUTDOWN:
        /* Stopping httpd is the admin's job (SPEC §11.3 F11). */
        ptm_api_error(resp, 409, "Server shutdown not available", p);
        break;
    }
}

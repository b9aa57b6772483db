/* mod_panoptes_telemetry: the PANOPTES telemetry API inside httpd.
 *
 * This file is the glue only: directives, the shared state's life cycle
 * (created once per parent so it outlives graceful restarts), and the
 * handler that turns a request_rec into a ptm_api_req_t and the answer
 * back into a response.  Everything the API does lives in src/ptm_*.c,
 * which never sees an httpd header. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_mutex.h"
#include "ap_mpm.h"
#include "unixd.h"
#include "mod_status.h"

#include "apr_lib.h"
#include "apr_strings.h"
#include "apr_global_mutex.h"

#include "ptm_api.h"
#include "mod_panoptes_telemetry_forward.h"
#include "ptm_fs.h"
#include "ptm_buf.h"
#include "ptm_live.h"
#include "ptm_conf.h"
#include "ptm_run.h"
#include "ptm_runs.h"
#include "ptm_store.h"
#include "ptm_time.h"

#define PTM_VERSION "0.1.0"
#define PTM_HANDLER "panoptes-telemetry"
#define PTM_MUTEX "panoptes-telemetry"
#define PTM_RETAINED "mod_panoptes_telemetry-state"
/* The state file, in PanoptesTelemetryStateDir; earlier versions kept it
 * in the site directory under the legacy name. */
#define PTM_STATE_FILE "state"
#define PTM_LEGACY_STATE_FILE ".panoptes-telemetry.state"
#define PTM_DEFAULT_STATE_DIR "panoptes-telemetry"
#define PTM_DEFAULT_STATE_SIZE (16 * 1024 * 1024)
#define PTM_DEFAULT_MAX_BODY (1024 * 1024)
#define PTM_MAX_MAX_BODY (APR_UINT64_C(1) << 40)
#define PTM_MAX_STATE_SIZE (APR_UINT64_C(4) << 30)
#define PTM_DEFAULT_RECENT (8 * 1024 * 1024)
#define PTM_MAX_RECENT (APR_UINT64_C(4) << 30)
/* A body buffer starts this small and grows with the bytes that arrive. */
#define PTM_BODY_START 8192
/* Answers up to this size are flushed from the handler (send_answer). */
#define PTM_FLUSH_MAX (16 * 1024)
/* GET /stream (SPEC §12.3): the live board's key in the process pool, the
 * directives' defaults and bounds, and how often an open stream pings and
 * looks whether httpd is stopping (the SPEC wants streams ended within 2 s
 * of a graceful restart or stop). */
#define PTM_LIVE_KEY "mod_panoptes_telemetry-live"
/* Group commit's board (ptm_sync.h), kept the same way. */
#define PTM_SYNC_KEY "mod_panoptes_telemetry-sync"
#define PTM_LOCK_KEY "mod_panoptes_telemetry-lock"
#define PTM_DEFAULT_STREAM_MAX 8
#define PTM_DEFAULT_STREAM_TIMEOUT 600
#define PTM_MAX_STREAM_TIMEOUT (366 * 24 * 3600)
#define PTM_STREAM_PING apr_time_from_sec(15)
#define PTM_STREAM_TICK apr_time_from_msec(500)
/* How long a write to a live-feed subscriber may wait for the client to
 * take a byte before the stream ends: a client that stops reading must
 * not hold its worker (nor a graceful restart or stop, which the SPEC
 * wants done within 2 s) for httpd's whole Timeout.  A slow client that
 * reads at all is never cut (the wait starts again at each byte taken);
 * one cut resumes from its Last-Event-ID like any other. */
#define PTM_STREAM_WRITE_WAIT apr_time_from_sec(1)
#define PTM_SSE_TYPE "text/event-stream"

module AP_MODULE_DECLARE_DATA panoptes_telemetry_module;

typedef struct {
    const char *site_dir;              /* normalised absolute, or NULL */
    const char *state_dir;             /* normalised absolute, or NULL */
    apr_array_header_t *run_roots;     /* const char * */
    apr_size_t state_size;
    apr_size_t recent;                 /* bytes of the ring */
    int sync;
    unsigned stream_max;               /* PanoptesTelemetryStreamMax */
    int stream_timeout;                /* seconds; 0: none; -1: unset */
    /* PanoptesTelemetryForward (mod_panoptes_telemetry_forward.c) */
    ptm_fwd_conf_t *forward;           /* NULL: not forwarding */
} ptm_srv_conf_t;

typedef struct {
    apr_off_t max_body;                /* -1: unset */
} ptm_dir_conf_t;

/* Lives in the parent's process pool: the same segment and mutex for
 * every generation, so old and new children share one state across a
 * graceful restart. */
typedef struct {
    void *base;                        /* the mapped state file */
    int fd;                            /* kept open: it holds the flock */
    apr_global_mutex_t *mutex;
    apr_size_t size;                   /* the whole segment */
    apr_size_t recent;                 /* the ring's part of it */
    const char *site_dir;
    const char *state_dir;
} ptm_retained_t;

/* Per process: the handle the handler uses (set in child_init). */
static ptm_store_t *ptm_store;
static ptm_api_conf_t ptm_conf;
/* The live board (ptm_live.h): made once by the parent, kept in its
 * process pool across generations; children inherit it. */
static ptm_live_t *ptm_live;
/* Group commit's board: made once by the parent, like the live board. */
static ptm_sync_t *ptm_sync;

/* ---- configuration ------------------------------------------------------ */

static void *create_srv_conf(apr_pool_t *p, server_rec *s)
{
    ptm_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->run_roots = apr_array_make(p, 2, sizeof(const char *));
    c->state_size = PTM_DEFAULT_STATE_SIZE;
    c->recent = PTM_DEFAULT_RECENT;
    c->stream_max = PTM_DEFAULT_STREAM_MAX;
    c->stream_timeout = -1;
    return c;
}

/* Only PanoptesTelemetryStreamTimeout may differ in a virtual host; every
 * other directive is global and read from the main server. */
static void *merge_srv_conf(apr_pool_t *p, void *basev, void *addv)
{
    ptm_srv_conf_t *base = basev, *add = addv;
    ptm_srv_conf_t *c = apr_palloc(p, sizeof(*c));

    *c = *base;
    if (add->stream_timeout >= 0) {
        c->stream_timeout = add->stream_timeout;
    }
    return c;
}

static void *create_dir_conf(apr_pool_t *p, char *dir)
{
    ptm_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->max_body = -1;
    return c;
}

static void *merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    ptm_dir_conf_t *base = basev, *add = addv;
    ptm_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->max_body = add->max_body >= 0 ? add->max_body : base->max_body;
    return c;
}

static ptm_srv_conf_t *srv_conf(server_rec *s)
{
    return ap_get_module_config(s->module_config,
                                &panoptes_telemetry_module);
}

/* An absolute, normalised directory from a directive argument. */
static const char *dir_arg(cmd_parms *cmd, const char *arg,
                           const char **out)
{
    const char *path;

    if (!*arg) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name,
                           " needs a directory", NULL);
    }
    path = ap_server_root_relative(cmd->pool, arg);
    if (!path) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": invalid path ",
                           arg, NULL);
    }
    *out = ptm_run_normalise(path, cmd->pool);
    return NULL;
}

static const char *set_site_dir(cmd_parms *cmd, void *d, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    return err ? err : dir_arg(cmd, arg, &srv_conf(cmd->server)->site_dir);
}

static const char *set_state_dir(cmd_parms *cmd, void *d, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    return err ? err : dir_arg(cmd, arg, &srv_conf(cmd->server)->state_dir);
}

static const char *add_run_root(cmd_parms *cmd, void *d, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char **slot;

    if (err) {
        return err;
    }
    slot = apr_array_push(srv_conf(cmd->server)->run_roots);
    return dir_arg(cmd, arg, slot);
}

/* A byte count in [min, max].  `room` is what this build can hold in
 * memory: on a 32-bit build it is below `max`, and a larger value is
 * refused rather than truncated. */
static const char *bytes_arg(cmd_parms *cmd, const char *arg,
                             apr_uint64_t min, apr_uint64_t max,
                             apr_uint64_t room, apr_uint64_t *out)
{
    apr_uint64_t top = max < room ? max : room;
    apr_status_t rv = ptm_conf_bytes(out, arg, min, top);

    if (rv == APR_EINVAL) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": '", arg,
                           "' is not a number of bytes (decimal digits "
                           "only)", NULL);
    }
    if (rv != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: %s is out of range (%"
                            APR_UINT64_T_FMT "..%" APR_UINT64_T_FMT ")%s",
                            cmd->cmd->name, arg, min, top,
                            top < max ? "; more does not fit the address "
                            "space of this 32-bit build" : "");
    }
    return NULL;
}

static const char *set_max_body(cmd_parms *cmd, void *d, const char *arg)
{
    ptm_dir_conf_t *c = d;
    apr_uint64_t v;
    /* The body is held in one buffer with a NUL after it. */
    const char *err = bytes_arg(cmd, arg, 1, PTM_MAX_MAX_BODY,
                                (apr_uint64_t)APR_SIZE_MAX - 1, &v);

    if (!err) {
        c->max_body = (apr_off_t)v;
    }
    return err;
}

static const char *set_state_size(cmd_parms *cmd, void *d, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    apr_uint64_t v;

    if (err || (err = bytes_arg(cmd, arg, PTM_STORE_MIN_SIZE,
                                PTM_MAX_STATE_SIZE,
                                (apr_uint64_t)APR_SIZE_MAX, &v))) {
        return err;
    }
    srv_conf(cmd->server)->state_size = (apr_size_t)v;
    return NULL;
}

static const char *set_recent(cmd_parms *cmd, void *d, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    apr_uint64_t v;

    if (err || (err = bytes_arg(cmd, arg, 0, PTM_MAX_RECENT,
                                (apr_uint64_t)APR_SIZE_MAX, &v))) {
        return err;
    }
    srv_conf(cmd->server)->recent = (apr_size_t)v & ~(apr_size_t)7;
    return NULL;
}

static const char *set_sync(cmd_parms *cmd, void *d, int on)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (!err) {
        srv_conf(cmd->server)->sync = on;
    }
    return err;
}

static const char *set_stream_max(cmd_parms *cmd, void *d, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    apr_uint64_t v;

    if (err) {
        return err;
    }
    if (ptm_conf_bytes(&v, arg, 0, PTM_LIVE_SLOTS_MAX) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number from 0 "
                            "to %d", cmd->cmd->name, arg, PTM_LIVE_SLOTS_MAX);
    }
    srv_conf(cmd->server)->stream_max = (unsigned)v;
    return NULL;
}

static const char *set_stream_timeout(cmd_parms *cmd, void *d,
                                      const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);
    apr_uint64_t v;

    if (err) {
        return err;
    }
    if (ptm_conf_bytes(&v, arg, 0, PTM_MAX_STREAM_TIMEOUT) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number of "
                            "seconds from 0 (no limit) to %d",
                            cmd->cmd->name, arg, PTM_MAX_STREAM_TIMEOUT);
    }
    srv_conf(cmd->server)->stream_timeout = (int)v;
    return NULL;
}

/* PanoptesTelemetryForward: mod_panoptes_telemetry_forward.c */
static const char *set_forward(cmd_parms *cmd, void *d, const char *arg)
{
    return ptm_fwd_set_program(cmd, &srv_conf(cmd->server)->forward, arg);
}

static const char *set_forward_user(cmd_parms *cmd, void *d,
                                    const char *user, const char *group)
{
    return ptm_fwd_set_user(cmd, &srv_conf(cmd->server)->forward, user,
                            group);
}

static const command_rec ptm_cmds[] = {
    AP_INIT_TAKE1("PanoptesTelemetrySiteDir", set_site_dir, NULL, RSRC_CONF,
                  "Directory of the site day files and run directories "
                  "(default: telemetry under ServerRoot)"),
    AP_INIT_TAKE1("PanoptesTelemetryStateDir", set_state_dir, NULL,
                  RSRC_CONF,
                  "Directory of the state file, writable by root only "
                  "(default: panoptes-telemetry under DefaultRuntimeDir)"),
    AP_INIT_TAKE1("PanoptesTelemetryRunRoot", add_run_root, NULL, RSRC_CONF,
                  "A directory where absolute run_dir values are also "
                  "allowed (repeatable)"),
    AP_INIT_TAKE1("PanoptesTelemetryMaxBody", set_max_body, NULL,
                  RSRC_CONF | ACCESS_CONF,
                  "Largest request body in bytes (default 1048576)"),
    AP_INIT_TAKE1("PanoptesTelemetryStateSize", set_state_size, NULL,
                  RSRC_CONF,
                  "Bytes of shared memory for the state (default 16 MiB)"),
    AP_INIT_TAKE1("PanoptesTelemetryRecent", set_recent, NULL, RSRC_CONF,
                  "Bytes of shared memory for the recent events, stored or "
                  "not (default 8 MiB; 0 turns it off)"),
    AP_INIT_FLAG("PanoptesTelemetrySync", set_sync, NULL, RSRC_CONF,
                 "fdatasync each stored event before answering (default "
                 "Off)"),
    AP_INIT_TAKE1("PanoptesTelemetryStreamMax", set_stream_max, NULL,
                  RSRC_CONF,
                  "Most GET /stream subscribers at once, across all "
                  "children (default 8; 0 turns the live feed off)"),
    AP_INIT_TAKE1("PanoptesTelemetryStreamTimeout", set_stream_timeout,
                  NULL, RSRC_CONF,
                  "Seconds after which a GET /stream ends, for the client "
                  "to reconnect and resume (default 600; 0: no limit)"),
    AP_INIT_TAKE1("PanoptesTelemetryForward", set_forward, NULL, RSRC_CONF,
                  "\"|program args\": write every accepted event to the "
                  "program's standard input, one line each (default: "
                  "none)"),
    AP_INIT_TAKE12("PanoptesTelemetryForwardUser", set_forward_user, NULL,
                   RSRC_CONF,
                   "user [group]: whom the forwarding program runs as when "
                   "httpd starts as root (default: User and Group)"),
    { NULL }
};

/* ---- life cycle ---------------------------------------------------------- */

static int ptm_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                          apr_pool_t *ptemp)
{
    ap_mutex_register(pconf, PTM_MUTEX, NULL, APR_LOCK_DEFAULT, 0);
    return OK;
}

/* 1 if the directory open as `fd` has no entry but . and .. */
static int dir_is_empty(int fd)
{
    int dfd = dup(fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct dirent *de;
    int n = 0;

    if (!d) {
        if (dfd >= 0) {
            close(dfd);
        }
        return 0;
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            n++;
        }
    }
    closedir(d);
    return n == 0;
}

/* The site directory must exist.  When httpd starts as root and creates
 * it, it gives it to the User the children run as (they create the files);
 * an existing one is the admin's, and its ownership is left alone (a root
 * parent that chowns a path on every start can be pointed at anything by a
 * link).  Only a warning when the children could not write in it. */
static int prepare_site_dir(const char *dir, server_rec *s, apr_pool_t *p)
{
    struct stat sb;
    int existed = stat(dir, &sb) == 0;
    apr_status_t rv = ptm_fs_mkdirs(dir, p);
    uid_t uid = ap_unixd_config.user_id;
    gid_t gid = ap_unixd_config.group_id;
    int fd;

    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot create PanoptesTelemetrySiteDir %s", dir);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (geteuid() != 0) {
        return OK;
    }
    if (!existed) {
        /* Only the empty directory we just made (root's, no link), not
         * one swapped in since by whoever can write its parent. */
        const char *why = NULL;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &sb) != 0) {
            why = apr_pstrcat(p, "cannot open it: ", strerror(errno), NULL);
        }
        else if (sb.st_uid != geteuid() || !dir_is_empty(fd)) {
            why = "it is not the empty directory httpd just made";
        }
        else if (fchown(fd, uid, gid) != 0) {
            why = strerror(errno);
        }
        if (why) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "cannot give %s to the server user: %s", dir, why);
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    else if (stat(dir, &sb) == 0
             && !(sb.st_uid == uid ? sb.st_mode & S_IWUSR
                  : sb.st_gid == gid ? sb.st_mode & S_IWGRP
                  : sb.st_mode & S_IWOTH)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "PanoptesTelemetrySiteDir %s is not writable by the "
                     "server user (uid %ld): events will fail until it is "
                     "(chown it)", dir, (long)uid);
    }
    return OK;
}

/* Where each way of finding the state file is reported. */
static const char *how_found(ptm_store_open_e how)
{
    switch (how) {
    case PTM_STORE_OPEN_NEW:
        return "new";
    case PTM_STORE_OPEN_RECOVERED:
        return "recovered";
    case PTM_STORE_OPEN_RESIZED:
        return "recovered and resized";
    case PTM_STORE_OPEN_UPGRADED:
        return "recovered from an earlier version's layout";
    case PTM_STORE_OPEN_MIGRATED:
        return "moved from " PTM_LEGACY_STATE_FILE " in the site directory";
    default:
        return "not a state file, replaced";
    }
}

/* First generation of this parent: map the state file, so the state
 * outlives httpd (stop/start, crashes).  It lives in a directory only root
 * can write, never in the site directory (SPEC §11.6). */
static int open_state(ptm_retained_t *ret, ptm_srv_conf_t *sc, server_rec *s,
                      apr_pool_t *ptemp)
{
    apr_pool_t *pp = s->process->pool;
    const char *path = apr_pstrcat(pp, sc->state_dir, "/", PTM_STATE_FILE,
                                   NULL);
    const char *legacy = apr_pstrcat(ptemp, sc->site_dir, "/",
                                     PTM_LEGACY_STATE_FILE, NULL);
    const char *why;
    ptm_store_open_e how;
    unsigned dropped = 0;
    struct stat sb;
    apr_status_t rv;

    rv = ptm_store_prepare_dir(&why, sc->state_dir, ptemp);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "PanoptesTelemetryStateDir %s: %s", sc->state_dir, why);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ret->size = sc->state_size + sc->recent;
    ret->recent = sc->recent;
    rv = ptm_store_open_file(&ret->base, &ret->fd, &how, &dropped, path,
                             legacy, ret->size, ret->recent, pp);
    if (APR_STATUS_IS_ENOSPC(rv) && stat(path, &sb) == 0
        && S_ISREG(sb.st_mode) && (apr_size_t)sb.st_size != ret->size
        && sb.st_size >= PTM_STORE_MIN_SIZE
        && (uint64_t)sb.st_size <= APR_SIZE_MAX) {
        /* No room for the new size: the state as it is (its file is
         * still there, untouched) rather than no httpd at all. */
        char err[120];

        rv = ptm_store_open_file(&ret->base, &ret->fd, &how, &dropped, path,
                                 legacy, (apr_size_t)sb.st_size,
                                 PTM_STORE_RING_ANY, pp);
        if (rv == APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "cannot resize the telemetry state %s to %"
                         APR_SIZE_T_FMT " bytes (%s): it keeps its %"
                         APR_OFF_T_FMT " bytes until the next start with "
                         "room for it", path, ret->size,
                         apr_strerror(APR_FROM_OS_ERROR(ENOSPC), err,
                                      sizeof(err)), (apr_off_t)sb.st_size);
            ret->size = (apr_size_t)sb.st_size;
        }
        else {
            rv = APR_FROM_OS_ERROR(ENOSPC);
        }
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot %s the telemetry state %s (%" APR_SIZE_T_FMT
                     " bytes)%s", APR_STATUS_IS_ENOSPC(rv) ? "allocate"
                     : "map", path, sc->state_size + sc->recent,
                     rv == APR_FROM_OS_ERROR(EBUSY)
                     ? ": another httpd uses this state directory"
                     : rv == APR_FROM_OS_ERROR(EPERM)
                       || rv == APR_FROM_OS_ERROR(ELOOP)
                     ? ": not a regular file owned by httpd's user (a link, "
                       "a FIFO, a hard link?)" : "");
        ret->base = NULL;
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ap_log_error(APLOG_MARK, how == PTM_STORE_OPEN_UNRECOGNISED
                 ? APLOG_WARNING : APLOG_INFO, 0, s,
                 "telemetry state %s: %s (%" APR_SIZE_T_FMT " bytes)",
                 path, how_found(how), ret->size);
    if (dropped) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "telemetry state %s: %u values did not check out "
                     "(damaged, or written by something else) and were "
                     "dropped", path, dropped);
    }
    return OK;
}

/* The live board of GET /stream: made once per parent, in its process
 * pool, so that a graceful restart keeps it (the streams of old and new
 * children count against one cap and wait on one word).  Without it the
 * feed answers 503 (ptm_stream.c), nothing else changes. */
static void attach_live(server_rec *s, ptm_srv_conf_t *sc)
{
    apr_pool_t *pp = s->process->pool;
    void *data = NULL;
    ptm_live_t *live;
    int daemons = 0, threads = 0;
    apr_status_t rv;

    apr_pool_userdata_get(&data, PTM_LIVE_KEY, pp);
    if (!data) {
        if ((rv = ptm_live_create(&live, pp)) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                         "cannot make the live board of GET /stream in "
                         "shared memory: the live feed answers 503");
            ptm_live = NULL;
            return;
        }
        apr_pool_userdata_set(live, PTM_LIVE_KEY, apr_pool_cleanup_null, pp);
        data = live;
    }
    ptm_live = data;
    /* Each subscriber holds a worker (httpd 2.4 cannot park a
     * connection): a cap at or above MaxRequestWorkers lets streams take
     * every one. */
    if (sc->stream_max
        && ap_mpm_query(AP_MPMQ_MAX_DAEMONS, &daemons) == APR_SUCCESS
        && ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) == APR_SUCCESS
        && daemons > 0 && (long)sc->stream_max
                          >= (long)daemons * (threads > 0 ? threads : 1)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "PanoptesTelemetryStreamMax %u is not below "
                     "MaxRequestWorkers (%ld): live-feed subscribers could "
                     "hold every worker", sc->stream_max,
                     (long)daemons * (threads > 0 ? threads : 1));
    }
}

/* Group commit's board (PanoptesTelemetrySync On): made once per parent,
 * in its process pool, so that old and new children share it across a
 * graceful restart (their flushes cover each other's lines).  One left by
 * a module of another layout (a graceful restart into an upgrade) is
 * replaced: its children keep theirs, and each side then flushes its own
 * lines.  Without it, Sync On flushes each line under the store lock. */
static void attach_sync(server_rec *s)
{
    apr_pool_t *pp = s->process->pool;
    void *data = NULL;
    ptm_sync_t *board;
    apr_status_t rv;

    apr_pool_userdata_get(&data, PTM_SYNC_KEY, pp);
    if (!data || !ptm_sync_is_ours(data)) {
        if ((rv = ptm_sync_create(&board, pp)) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                         "cannot make the group-commit board in shared "
                         "memory: with PanoptesTelemetrySync On each event "
                         "is flushed on its own, under the lock");
            ptm_sync = NULL;
            return;
        }
        apr_pool_userdata_set(board, PTM_SYNC_KEY, apr_pool_cleanup_null,
                              pp);
        data = board;
    }
    ptm_sync = data;
}

/* The store's front lock (ptm_lock.h), made with the global mutex, once
 * per parent (`make`), in its process pool: every child of every
 * generation then takes the same one.  A parent whose mutex was made
 * without one (by an earlier version of the module, before a graceful
 * restart into this one) keeps to the global mutex alone, as does one
 * whose board another version laid out: the global mutex still excludes
 * them all.  NULL then. */
static ptm_lock_t *attach_lock(server_rec *s, int make)
{
    apr_pool_t *pp = s->process->pool;
    void *data = NULL;
    ptm_lock_t *lock;
    apr_status_t rv;

    apr_pool_userdata_get(&data, PTM_LOCK_KEY, pp);
    if (!data && make) {
        if ((rv = ptm_lock_create(&lock, pp)) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s,
                         "cannot make the store's front lock in shared "
                         "memory: the " PTM_MUTEX " mutex alone guards the "
                         "state");
            return NULL;
        }
        apr_pool_userdata_set(lock, PTM_LOCK_KEY, apr_pool_cleanup_null, pp);
        data = lock;
    }
    return ptm_lock_is_ours(data) ? data : NULL;
}

/* In the parent, when a child has ended (killed, crashed, or done): the
 * slots its streams held are free again (a child killed in the middle of
 * a stream never ran its cleanups). */
static void ptm_child_status(server_rec *s, pid_t pid, ap_generation_t gen,
                             int slot, mpm_child_status state)
{
    unsigned n;

    if (state != MPM_CHILD_EXITED || !ptm_live || pid <= 0) {
        return;
    }
    if ((n = ptm_live_reap(ptm_live, pid)) != 0) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "freed %u live-feed slot%s of child %ld, which ended",
                     n, n == 1 ? "" : "s", (long)pid);
    }
}

static int ptm_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    ptm_srv_conf_t *sc = srv_conf(s);
    ptm_retained_t *ret;
    ptm_store_t *store;
    apr_status_t rv;

    /* The first pass only checks the configuration. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    attach_live(s, sc);
    attach_sync(s);
    if (!sc->site_dir) {
        sc->site_dir = ptm_run_normalise(
            ap_server_root_relative(pconf, "telemetry"), pconf);
    }
    if (prepare_site_dir(sc->site_dir, s, ptemp) != OK) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }

    ret = ap_retained_data_get(PTM_RETAINED);
    if (!ret) {
        ret = ap_retained_data_create(PTM_RETAINED, sizeof(*ret));
    }
    if (!sc->state_dir) {
        sc->state_dir = ptm_run_normalise(
            ap_runtime_dir_relative(pconf, PTM_DEFAULT_STATE_DIR), pconf);
    }
    if (!ret->base) {
        if (open_state(ret, sc, s, ptemp) != OK) {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        rv = ap_global_mutex_create(&ret->mutex, NULL, PTM_MUTEX, NULL, s,
                                    s->process->pool, 0);
        if (rv != APR_SUCCESS) {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        attach_lock(s, 1);
        if (strcmp(apr_global_mutex_name(ret->mutex), "posixsem") == 0) {
            /* Not released when its holder dies: one crashed child would
             * stop every request for good. */
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "Mutex posixsem for " PTM_MUTEX " is not released "
                         "when a child dies holding it; prefer the default "
                         "(pthread), sysvsem, fcntl or flock");
        }
        ret->site_dir = apr_pstrdup(s->process->pool, sc->site_dir);
        ret->state_dir = apr_pstrdup(s->process->pool, sc->state_dir);
        store = ptm_store_attach(ret->base, ret->mutex, ptemp);
        ptm_store_use_lock(store, attach_lock(s, 0));
        /* The files may be ahead of the state (a crash between append and
         * counter, a deleted state file): never give out a seq twice. */
        rv = ptm_store_reconcile(store, sc->site_dir, sc->run_roots, ptemp);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s,
                         "cannot read %s to recover the seq counters",
                         sc->site_dir);
        }
    }
    else if (sc->state_size + sc->recent != ret->size
             || sc->recent != ret->recent
             || strcmp(sc->site_dir, ret->site_dir) != 0
             || strcmp(sc->state_dir, ret->state_dir) != 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "PanoptesTelemetryStateSize, PanoptesTelemetryRecent, "
                     "PanoptesTelemetryStateDir and PanoptesTelemetrySiteDir "
                     "take effect when httpd is "
                     "stopped and started; until then the site directory "
                     "stays %s and the state %s (%" APR_SIZE_T_FMT " bytes)",
                     ret->site_dir, ret->state_dir, ret->size);
        sc->site_dir = ret->site_dir;
        sc->state_dir = ret->state_dir;
    }
    if (!ptm_store_is_formatted(ret->base, ret->size, PTM_STORE_RING_ANY)) {
        /* A graceful restart loaded a module with another state layout
         * (an upgrade): the old children still use the old one, so the new
         * code must not touch it. */
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "the telemetry state in %s has the layout of another "
                     "version of mod_panoptes_telemetry: answering 503 until "
                     "httpd is stopped and started (apachectl stop; "
                     "apachectl start)", ret->state_dir);
        ptm_store = NULL;
        return OK;
    }
    ptm_store = ptm_store_attach(ret->base, ret->mutex, pconf);
    ptm_store_use_lock(ptm_store, attach_lock(s, 0));
    /* Forwarding (SPEC §12.5): the program, the pipe, the thread. */
    if (ptm_fwd_post_config(s, sc->forward, ret->recent, ptm_live, pconf,
                            ptemp) != OK) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

static apr_status_t close_files(void *store)
{
    ptm_store_close_files(store);
    return APR_SUCCESS;
}

static apr_status_t clear_runs_cache(void *data)
{
    (void)data;
    ptm_runs_cache_clear();
    return APR_SUCCESS;
}

static void ptm_child_init(apr_pool_t *p, server_rec *s)
{
    ptm_retained_t *ret = ap_retained_data_get(PTM_RETAINED);
    ptm_srv_conf_t *sc = srv_conf(s);
    apr_global_mutex_t *mutex;
    apr_status_t rv;

    ptm_store = NULL;
    if (!ret || !ret->base || !ptm_store_is_formatted(ret->base, ret->size,
                                                  PTM_STORE_RING_ANY)) {
        /* Requests answer 503; the start-up messages say why. */
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "no telemetry state to attach to");
        return;
    }
    mutex = ret->mutex;
    rv = apr_global_mutex_child_init(&mutex,
                                     apr_global_mutex_lockfile(mutex), p);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot attach to the " PTM_MUTEX " mutex");
        return;
    }
    ptm_store = ptm_store_attach(ret->base, mutex, p);
    ptm_store_use_sync(ptm_store, ptm_sync);
    ptm_store_use_lock(ptm_store, attach_lock(s, 0));
    /* Only here, on the child's pool: a cleanup on a pool that outlives
     * this module's DSO (the parent's) would call unloaded code at exit. */
    apr_pool_cleanup_register(p, ptm_store, close_files,
                              apr_pool_cleanup_null);
    /* The runs journal this child has parsed (ptm_runs_read_cached). */
    apr_pool_cleanup_register(p, NULL, clear_runs_cache,
                              apr_pool_cleanup_null);
    ptm_conf.store = ptm_store;
    ptm_conf.site_dir = ret->site_dir;
    ptm_conf.run_roots = sc->run_roots;
    ptm_conf.sync = sc->sync;
    ptm_conf.version = PTM_VERSION;
    ptm_conf.live = ptm_live;
    ptm_conf.stream_max = sc->stream_max;
    ptm_conf.stream_timeout = apr_time_from_sec(
        sc->stream_timeout >= 0 ? sc->stream_timeout
                                : PTM_DEFAULT_STREAM_TIMEOUT);
    ptm_conf.stream_ping = PTM_STREAM_PING;
    ptm_conf.stream_tick = PTM_STREAM_TICK;
    /* Forwarding: its thread's store handle; the live board it waits on
     * is notified by every accepted event. */
    {
        ptm_live_t *live = ptm_fwd_child_init(p, s, ptm_store);

        if (live && !ptm_conf.live) {
            ptm_conf.live = live;
        }
    }
}

/* ---- requests ------------------------------------------------------------ */

/* Where the API is mounted for this request: the longest <Location> that
 * prefixes the URI and whose SetHandler says panoptes-telemetry.  Routes are
 * relative to it (SPEC §11.1).  Without one (SetHandler in a virtual host,
 * say) the API is at the root. */
static size_t mount_length(request_rec *r)
{
    core_server_config *sconf =
        ap_get_core_module_config(r->server->module_config);
    ap_conf_vector_t **sec = (ap_conf_vector_t **)sconf->sec_url->elts;
    size_t best = 0;
    int i;

    for (i = 0; i < sconf->sec_url->nelts; i++) {
        core_dir_config *d = ap_get_core_module_config(sec[i]);
        const char *h, *err = NULL;
        size_t n;

        if (!d->expr_handler || d->r || d->d_is_fnmatch || !d->d) {
            continue;
        }
        n = strlen(d->d);
        while (n > 0 && d->d[n - 1] == '/') {
            n--;                        /* "/" and "/x/" mount at "" and "/x" */
        }
        if (n <= best || strncmp(r->uri, d->d, n) != 0
            || (r->uri[n] != '/' && r->uri[n] != '\0')) {
            continue;
        }
        h = ap_expr_str_exec(r, d->expr_handler, &err);
        if (h && strcasecmp(h, PTM_HANDLER) == 0) {
            best = n;
        }
    }
    return best;
}

#define PTM_BAD_BODY "{\"detail\":\"Malformed request body (chunked " \
                     "encoding or Content-Length)\"}"

/* The request's config: whether its URI is the API's (ptm_translate), and
 * the answers httpd sends itself when its input filter refuses a body (see
 * prepare_answers; NULL until then). */
typedef struct {
    const char *api_uri;               /* r->uri when it was found the API's */
    const char *bad;                   /* 400 */
    const char *too_large;             /* 413 */
} ptm_req_answers_t;

static ptm_req_answers_t *req_config(request_rec *r)
{
    ptm_req_answers_t *a = ap_get_module_config(r->request_config,
                                                &panoptes_telemetry_module);

    if (!a) {
        a = apr_pcalloc(r->pool, sizeof(*a));
        ap_set_module_config(r->request_config, &panoptes_telemetry_module,
                             a);
    }
    return a;
}

/* The API's URLs name no file: httpd's walk of the file system for them
 * (a stat of the path, then an lstat of each of its directories, since
 * the file is not there: 6 system calls for /api/event under /tmp/x/htdocs)
 * is work for nothing, as for mod_proxy's URLs.  Before the translation,
 * the request's config is that of its <Location> and <If> sections, which
 * httpd merges after any <Directory> or <Files> one: a SetHandler of ours
 * there is the handler the request will have.  Noted here; map_to_storage
 * then skips the walk.  Access control is unchanged where it is set for
 * the API, in its <Location> (httpd walks the locations again after
 * map_to_storage); <Directory> sections and .htaccess files no longer
 * apply to the API's URLs (README "Security"). */
static int ptm_translate(request_rec *r)
{
    core_dir_config *d = ap_get_core_module_config(r->per_dir_config);
    const char *h, *err = NULL;

    if (d->expr_handler && r->uri && r->uri[0] == '/'
        && (h = ap_expr_str_exec(r, d->expr_handler, &err)) != NULL
        && strcasecmp(h, PTM_HANDLER) == 0) {
        req_config(r)->api_uri = r->uri;
    }
    return DECLINED;
}

static int ptm_map_to_storage(request_rec *r)
{
    ptm_req_answers_t *a = ap_get_module_config(r->request_config,
                                                &panoptes_telemetry_module);

    /* TRACE stays httpd's (TraceEnable); a URI another translate_name
     * hook changed (mod_rewrite's [PT], say) is walked as before. */
    if (!a || !a->api_uri || r->method_number == M_TRACE
        || strcmp(a->api_uri, r->uri) != 0) {
        return DECLINED;
    }
    return OK;
}

static ap_filter_rec_t *json_error_filter_handle;

/* The most body bytes this request may send: PanoptesTelemetryMaxBody or
 * httpd's LimitRequestBody, whichever is smaller. */
static apr_size_t body_limit(request_rec *r)
{
    ptm_dir_conf_t *dc = ap_get_module_config(r->per_dir_config,
                                              &panoptes_telemetry_module);

    return ptm_conf_body_limit(dc->max_body >= 0
                               ? (apr_uint64_t)dc->max_body
                               : PTM_DEFAULT_MAX_BODY,
                               (apr_uint64_t)ap_get_limit_req_body(r));
}

static const char *too_large(request_rec *r, apr_size_t limit)
{
    return apr_psprintf(r->pool, "Request body too large (limit %"
                        APR_SIZE_T_FMT " bytes)", limit);
}

static int has_body(request_rec *r)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");

    return apr_table_get(r->headers_in, "Transfer-Encoding") != NULL
           || (cl && strcmp(cl, "0") != 0);
}

/* httpd's input filter answers some bodies itself, with ap_die(): a
 * malformed chunk (400), a body over LimitRequestBody or a chunk size that
 * overflows (413).  ap_send_error_response() then sends the custom
 * response of that status, so ours is set before the body is read: one
 * answer, {"detail": ...}.  It forces text/html on the answer, which
 * json_error_filter (inserted by ptm_insert_error_filter) corrects. */
static void prepare_answers(request_rec *r, apr_size_t limit)
{
    ptm_req_answers_t *a = req_config(r);

    /* Built by hand, as ptm_api_error would: nothing here needs escaping,
     * and this runs for every request with a body. */
    a->bad = PTM_BAD_BODY;
    a->too_large = apr_pstrcat(r->pool, "{\"detail\":\"", too_large(r, limit),
                               "\"}", NULL);
    ap_custom_response(r, HTTP_BAD_REQUEST, a->bad);
    ap_custom_response(r, HTTP_REQUEST_ENTITY_TOO_LARGE, a->too_large);
}

/* The error answer arrives here whole (ap_rputs buffers it until the EOS).
 * httpd would send it without a Content-Length, delimited by the close:
 * its CONTENT_LENGTH filter has already seen this request's EOS, the one
 * that carried the error up.  Give it one. */
static apr_status_t json_error_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    apr_off_t len;

    ap_set_content_type(f->r, "application/json");
    if (!APR_BRIGADE_EMPTY(bb) && APR_BUCKET_IS_EOS(APR_BRIGADE_LAST(bb))
        && apr_brigade_length(bb, 0, &len) == APR_SUCCESS && len >= 0) {
        ap_set_content_length(f->r, len);
    }
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

static void ptm_insert_error_filter(request_rec *r)
{
    ptm_req_answers_t *a;

    if ((r->status == HTTP_BAD_REQUEST
         || r->status == HTTP_REQUEST_ENTITY_TOO_LARGE)
        && (a = ap_get_module_config(r->request_config,
                                     &panoptes_telemetry_module)) != NULL
        && a->bad) {
        ap_add_output_filter_handle(json_error_filter_handle, NULL, r,
                                    r->connection);
    }
}

/* Read the whole body (chunked or not), at most `limit` bytes, into one
 * NUL-terminated buffer.  The buffer starts small and grows with the bytes
 * that arrive: a client that announces a large Content-Length and sends
 * little costs little.  Returns OK, HTTP_REQUEST_ENTITY_TOO_LARGE,
 * AP_FILTER_ERROR (httpd has answered), or another read error's status. */
static int read_body(request_rec *r, apr_size_t limit, char **out,
                     apr_size_t *out_len)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_bucket_brigade *bb;
    ptm_buf_t b;
    int eos = 0;

    if (cl) {
        apr_off_t n;
        char *end;

        /* Too large as announced: refused before a byte is read. */
        if (apr_strtoff(&n, cl, &end, 10) == APR_SUCCESS && !*end && n > 0
            && (apr_uint64_t)n > limit) {
            return HTTP_REQUEST_ENTITY_TOO_LARGE;
        }
    }
    ptm_buf_init(&b, r->pool,
                 limit < PTM_BODY_START ? limit + 1 : PTM_BODY_START);
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    while (!eos) {
        apr_bucket *e;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb,
                                         AP_MODE_READBYTES, APR_BLOCK_READ,
                                         HUGE_STRING_LEN);

        if (rv != APR_SUCCESS) {
            return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
        }
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
             e = APR_BUCKET_NEXT(e)) {
            const char *data;
            apr_size_t n;

            if (APR_BUCKET_IS_EOS(e)) {
                eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(e)) {
                continue;
            }
            rv = apr_bucket_read(e, &data, &n, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
            }
            if (ptm_buf_add_capped(&b, data, n, limit) != APR_SUCCESS) {
                return HTTP_REQUEST_ENTITY_TOO_LARGE;
            }
        }
        apr_brigade_cleanup(bb);
    }
    b.data[b.len] = '\0';              /* add_capped leaves room for it */
    *out = b.data;
    *out_len = b.len;
    return OK;
}

/* One line per failed request (server faults loudly), and a->log.  The
 * client's strings in it (the body excerpt, a run id in a->log) are not
 * escaped here: httpd escapes every error-log message itself
 * (ap_escape_errorlog_item), and escaping them first would double each
 * backslash. */
static void log_answer(request_rec *r, int status, const char *body,
                       apr_size_t body_len, const char *log)
{
    if (status >= 400) {
        int level = status >= 500 ? APLOG_ERR
                    : (status == 413 || status == 507) ? APLOG_WARNING
                    : APLOG_INFO;

        ap_log_rerror(APLOG_MARK, level, 0, r,
                      "%s %s -> %d %.*s%s%s", r->method, r->uri, status,
                      (int)(body_len > 512 ? 512 : body_len), body,
                      log ? " " : "", log ? log : "");
    }
    else if (log) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "%s", log);
    }
}

/* httpd has answered the request already (its input filter refused the
 * body; the answer is prepare_answers' JSON when the status is 400 or
 * 413): count and log that answer like ours, and write nothing more. */
static int answered_by_httpd(request_rec *r)
{
    ptm_req_answers_t *a = ap_get_module_config(r->request_config,
                                                &panoptes_telemetry_module);
    const char *body = !a || !a->bad ? ""
                       : r->status == HTTP_BAD_REQUEST ? a->bad
                       : r->status == HTTP_REQUEST_ENTITY_TOO_LARGE
                       ? a->too_large : "";

    if (ptm_store) {
        ptm_store_count_answer(ptm_store, r->status);
    }
    log_answer(r, r->status, body, strlen(body), NULL);
    return AP_FILTER_ERROR;
}

/* A streamed answer (GET /events as NDJSON): the head when the first
 * event is ready, then the lines through a brigade that passes them down
 * as it fills, so memory stays bounded however long the answer. */
typedef struct {
    request_rec *r;
    apr_bucket_brigade *bb;
    int short_wait;             /* a live feed: PTM_STREAM_WRITE_WAIT set */
} ptm_stream_t;

static apr_status_t stream_start(void *ctx, const char *content_type)
{
    ptm_stream_t *s = ctx;

    s->r->status = HTTP_OK;
    ap_set_content_type(s->r, content_type);
    if (strcmp(content_type, PTM_SSE_TYPE) == 0) {
        apr_socket_t *sock = ap_get_conn_socket(s->r->connection);

        /* A live feed is never one answer to keep (SPEC §12.3). */
        apr_table_setn(s->r->headers_out, "Cache-Control", "no-cache");
        if (sock) {
            apr_socket_timeout_set(sock, PTM_STREAM_WRITE_WAIT);
            s->short_wait = 1;
        }
    }
    return APR_SUCCESS;
}

static apr_status_t stream_write(void *ctx, const char *data, size_t len)
{
    ptm_stream_t *s = ctx;
    apr_status_t rv;

    if (s->r->header_only) {
        return APR_SUCCESS;
    }
    rv = ap_fwrite(s->r->output_filters, s->bb, data, (apr_size_t)len);
    if (rv == APR_SUCCESS && s->r->connection->aborted) {
        rv = APR_ECONNABORTED;
    }
    return rv;
}

/* Send what was written now (GET /stream: each batch of events, each
 * ping).  The FLUSH bucket also makes filters that buffer (mod_deflate)
 * pass on what they hold.  Blocks while the client does not read, up to
 * httpd's Timeout: a failure then ends the stream. */
static apr_status_t stream_flush(void *ctx)
{
    ptm_stream_t *s = ctx;
    apr_status_t rv;

    if (s->r->header_only) {
        return APR_SUCCESS;
    }
    rv = ap_fflush(s->r->output_filters, s->bb);
    if (rv == APR_SUCCESS && s->r->connection->aborted) {
        rv = APR_ECONNABORTED;
    }
    return rv;
}

/* 1 once this child is to stop: a graceful restart or stop (or any
 * other).  Read in httpd 2.4's MPMs: the state becomes AP_MPMQ_STOPPING
 * in a child still busy in a handler, under all three.  prefork: the
 * parent sends AP_SIG_GRACEFUL (SIGUSR1) to every busy child on a graceful
 * restart and on a graceful stop, and the child's handler, stop_listening(),
 * sets it first thing.  worker and event: the parent writes
 * AP_MPM_PODX_GRACEFUL into the pipe of death (graceful restart and
 * graceful stop alike); each child's main thread, which only waits on
 * that pipe while the workers serve, reads it and calls signal_threads(),
 * which sets it before anything else (and an ungraceful stop kills the
 * child anyway).  So the state alone is enough; the stream looks at it
 * every PTM_STREAM_TICK. */
static int stream_stopping(void *ctx)
{
    int state = AP_MPMQ_RUNNING;

    (void)ctx;
    return ap_mpm_query(AP_MPMQ_MPM_STATE, &state) == APR_SUCCESS
           && state == AP_MPMQ_STOPPING;
}

/* A peer's half-close is POLLRDHUP on Linux only; elsewhere a hang-up is
 * only seen once it is whole (POLLHUP), or when httpd writes. */
#ifdef POLLRDHUP
#define PTM_POLLRDHUP POLLRDHUP
#else
#define PTM_POLLRDHUP 0
#endif

/* 1 when the client has hung up: a long GET /events stops rather than
 * work for nobody.  Nothing may have been written yet (a JSON answer is
 * built whole), so httpd has not noticed: the socket is asked, without
 * reading or waiting (a pipelined request is not a hang-up). */
static int stream_gone(void *ctx)
{
    ptm_stream_t *s = ctx;
    conn_rec *c = s->r->connection;
    apr_socket_t *sock = ap_get_conn_socket(c);
    apr_os_sock_t fd;
    struct pollfd pfd;

    if (c->aborted) {
        return 1;
    }
    if (!sock || apr_os_sock_get(&fd, sock) != APR_SUCCESS) {
        return 0;
    }
    pfd.fd = fd;
    pfd.events = POLLIN | PTM_POLLRDHUP;
    pfd.revents = 0;
    return poll(&pfd, 1, 0) == 1
           && (pfd.revents & (PTM_POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* The end of a streamed answer: what is left in the brigade goes; an
 * answer that broke off closes the connection, the only way left to tell
 * the client it is not whole. */
static int end_stream(request_rec *r, ptm_stream_t *s,
                      const ptm_api_resp_t *a)
{
    if (s->short_wait) {
        /* The rest of the connection (keep-alive) as httpd set it. */
        apr_socket_t *sock = ap_get_conn_socket(r->connection);

        if (sock) {
            apr_socket_timeout_set(sock, r->server->timeout);
        }
    }
    if (a->status >= 499) {
        /* 499: the client hung up (nothing to tell it); 500: a fault. */
        ap_log_rerror(APLOG_MARK, a->status == 499 ? APLOG_INFO : APLOG_ERR,
                      0, r, "%s", a->log);
        r->connection->keepalive = AP_CONN_CLOSE;
        r->connection->aborted = 1;
        apr_brigade_cleanup(s->bb);
        return OK;
    }
    if (a->log) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "%s", a->log);
    }
    ap_pass_brigade(r->output_filters, s->bb);
    return OK;
}

static int send_answer(request_rec *r, const ptm_api_resp_t *a)
{
    apr_bucket_brigade *bb;

    r->status = a->status;
    if (a->status >= 400 && ptm_store) {
        ptm_store_count_answer(ptm_store, a->status);
    }
    if (ap_status_drops_connection(a->status)) {
        /* A body we did not read (413) must not be drained for keep-alive. */
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    if (a->allow) {
        apr_table_setn(r->headers_out, "Allow", a->allow);
    }
    if (a->retry_after) {
        apr_table_setn(r->headers_out, "Retry-After", a->retry_after);
    }
    if (a->content_type && strcmp(a->content_type, PTM_SSE_TYPE) == 0) {
        /* GET /stream's refusal for an EventSource. */
        apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    }
    if (a->next_cursor) {
        apr_table_setn(r->headers_out, "Panoptes-Next-Cursor",
                       a->next_cursor);
    }
    if (a->skipped) {
        apr_table_setn(r->headers_out, "Panoptes-Skipped",
                       apr_psprintf(r->pool, "%" APR_UINT64_T_FMT,
                                    a->skipped));
    }
    ap_set_content_type(r, a->content_type ? a->content_type
                                           : "application/json");
    ap_set_content_length(r, (apr_off_t)a->body_len);
    log_answer(r, a->status, a->body, a->body_len, a->log);
    if (a->debug) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "%s", a->debug);
    }
    /* A small answer is sent now, with a flush, rather than at the end of
     * the request: the client can send its next request on a keep-alive
     * connection while this worker finishes up, and the worker then reads
     * it at once instead of handing the connection back to the listener
     * (the event MPM).  At one request at a time that doubles the rate.
     * A large one (a /current of many types) is left to the MPM: a flush
     * writes it all before the handler returns, so a client slow to read
     * would hold this worker. */
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    if (!r->header_only) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_transient_create(
                                    a->body, a->body_len,
                                    r->connection->bucket_alloc));
    }
    if (r->header_only || a->body_len <= PTM_FLUSH_MAX) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(
                                    r->connection->bucket_alloc));
    }
    /* A client gone away is not an error of ours (ap_rwrite ignores it
     * too); the core has marked the connection aborted. */
    ap_pass_brigade(r->output_filters, bb);
    return OK;
}

/* A body read or discard failed: httpd has answered already, or we do. */
static int body_failed(request_rec *r, int rc, apr_size_t limit)
{
    ptm_api_resp_t resp;

    /* sent_bodyct: whatever said so, an answer is on the wire, and bytes
     * after it would be read as the next response. */
    if (rc == AP_FILTER_ERROR || r->sent_bodyct) {
        return answered_by_httpd(r);
    }
    memset(&resp, 0, sizeof(resp));
    if (rc == HTTP_REQUEST_ENTITY_TOO_LARGE) {
        ptm_api_error(&resp, rc, too_large(r, limit), r->pool);
    }
    else {
        ptm_api_error(&resp, rc, "Cannot read the request body", r->pool);
    }
    return send_answer(r, &resp);
}

static int ptm_handler(request_rec *r)
{
    ptm_api_req_t req;
    ptm_api_resp_t resp;
    ptm_api_out_t out;
    ptm_api_conf_t conf;
    ptm_srv_conf_t *sc;
    ptm_stream_t stream;
    const char *raw;
    apr_size_t limit;
    int rc;

    if (!r->handler || strcmp(r->handler, PTM_HANDLER) != 0) {
        return DECLINED;
    }
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    req.now = apr_time_now();
    req.debug = APLOGrdebug(r);
    switch (r->method_number) {
    case M_GET:
        req.method = r->header_only ? PTM_HEAD : PTM_GET;
        break;
    case M_POST:
        req.method = PTM_POST;
        break;
    default:
        req.method = PTM_OTHER;
    }
    req.path = r->uri + mount_length(r);
    raw = r->parsed_uri.path ? strrchr(r->parsed_uri.path, '/') : NULL;
    req.raw_last = raw ? raw + 1 : "";
    req.content_type = apr_table_get(r->headers_in, "Content-Type");
    req.args = r->args;
    req.accept = apr_table_get(r->headers_in, "Accept");
    req.last_event_id = apr_table_get(r->headers_in, "Last-Event-ID");
    stream.r = r;
    stream.bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    out.start = stream_start;
    out.write = stream_write;
    out.gone = stream_gone;
    out.flush = stream_flush;
    out.stopping = stream_stopping;
    out.ctx = &stream;
    req.out = &out;

    limit = body_limit(r);
    if (has_body(r)) {
        prepare_answers(r, limit);
    }
    if (!ptm_store) {
        if ((rc = ap_discard_request_body(r)) != OK) {
            return body_failed(r, rc, limit);
        }
        ptm_api_error(&resp, 503, "Telemetry state unavailable (see the "
                      "error log)", r->pool);
        return send_answer(r, &resp);
    }
    if (ptm_api_wants_body(req.method, req.path)) {
        char *body = NULL;
        apr_size_t len = 0;

        if ((rc = read_body(r, limit, &body, &len)) != OK) {
            return body_failed(r, rc, limit);
        }
        req.body = body;
        req.body_len = len;
    }
    else if ((rc = ap_discard_request_body(r)) != OK) {
        return body_failed(r, rc, limit);
    }
    /* PanoptesTelemetryStreamTimeout is the one setting a virtual host
     * may change. */
    conf = ptm_conf;
    sc = srv_conf(r->server);
    if (sc->stream_timeout >= 0) {
        conf.stream_timeout = apr_time_from_sec(sc->stream_timeout);
    }
    ptm_api_handle(&resp, &conf, &req, r->pool);
    if (resp.streamed) {
        return end_stream(r, &stream, &resp);
    }
    return send_answer(r, &resp);
}

/* ---- mod_status ------------------------------------------------------------ */

/* started_at of a run object we built: its last member. */
static const char *run_started_at(const char *obj, apr_pool_t *p)
{
    const char *s = obj ? strstr(obj, ",\"started_at\":\"") : NULL;
    const char *next;

    while (s && (next = strstr(s + 1, ",\"started_at\":\"")) != NULL) {
        s = next;
    }
    return s ? apr_pstrndup(p, s + 15, 24) : "";
}

static int ptm_status_hook(request_rec *r, int flags)
{
    ptm_store_stats_t st;
    ptm_live_stats_t ls;
    ptm_sync_stats_t ys;
    const char *run_id, *started;
    char oldest[PTM_TS_LEN + 1] = "";
    int i;

    if (!ptm_store || ptm_store_stats(ptm_store, &st, r->pool)
                      != APR_SUCCESS) {
        return OK;
    }
    /* Copied into `st` without waiting for the lock (a writer stuck on a
     * hung disk holds it): the run's id from a consistent copy made
     * without it, the ring's oldest only when it was free, else st.busy.
     * The run id is the client's: escaped like a log item (no line break
     * or other control character can forge a line of ?auto), and so is
     * the start time, read from the state. */
    run_id = st.run_id ? ap_escape_logitem(r->pool, st.run_id) : NULL;
    started = ap_escape_logitem(r->pool,
                                run_started_at(st.run_obj, r->pool));
    if (st.recent_oldest) {
        ptm_time_utc_iso(oldest, st.recent_oldest);
    }
    /* The live feed's board (no lock: atomic reads). */
    memset(&ls, 0, sizeof(ls));
    ls.wake = "off";
    if (ptm_live) {
        ptm_live_stats(ptm_live, &ls);
    }
    /* Group commit (PanoptesTelemetrySync On): lines per flush. */
    memset(&ys, 0, sizeof(ys));
    if (ptm_sync) {
        ptm_sync_stats(ptm_sync, &ys);
    }
    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "PanoptesEventsSite: %" APR_UINT64_T_FMT "\n"
                   "PanoptesEventsRun: %" APR_UINT64_T_FMT "\n"
                   "PanoptesSeqSite: %" APR_UINT64_T_FMT "\n"
                   "PanoptesSeqRun: %" APR_UINT64_T_FMT "\n"
                   "PanoptesRunActive: %d\n",
                   st.events[0], st.events[1], st.seq[0], st.seq[1],
                   st.run_active);
        if (st.run_id) {
            ap_rprintf(r, "PanoptesRunId: %s\nPanoptesRunStartedAt: %s\n",
                       run_id, started);
        }
        ap_rprintf(r, "PanoptesCurrentTypesSite: %u\n"
                   "PanoptesCurrentTypesRun: %u\n"
                   "PanoptesStateBytesUsed: %" APR_UINT64_T_FMT "\n"
                   "PanoptesStateBytesTotal: %" APR_UINT64_T_FMT "\n"
                   "PanoptesWriteErrors: %" APR_UINT64_T_FMT "\n"
                   "PanoptesStateRepairs: %" APR_UINT64_T_FMT "\n",
                   st.types[0], st.types[1], st.bytes_used, st.bytes_total,
                   st.write_errors, st.repairs);
        for (i = 0; i < PTM_STORE_NSTATUS; i++) {
            ap_rprintf(r, "PanoptesAnswers%d: %" APR_UINT64_T_FMT "\n",
                       ptm_store_status_code(i), st.answers[i]);
        }
        ap_rprintf(r, "PanoptesStateBusy: %d\n"
                   "PanoptesReadRetries: %" APR_UINT64_T_FMT "\n"
                   "PanoptesReadLocked: %" APR_UINT64_T_FMT "\n"
                   "PanoptesLockWaits: %" APR_UINT64_T_FMT "\n"
                   "PanoptesRecentEvents: %" APR_UINT64_T_FMT "\n"
                   "PanoptesRecentBytes: %" APR_UINT64_T_FMT "\n"
                   "PanoptesRecentSize: %" APR_UINT64_T_FMT "\n"
                   "PanoptesRecentOldest: %s\n"
                   "PanoptesEventIdNext: %" APR_UINT64_T_FMT "-%"
                   APR_UINT64_T_FMT "\n", st.busy, st.view_retries,
                   st.view_locked, st.lock_waits, st.recent_events,
                   st.recent_bytes, st.recent_size, oldest, st.epoch,
                   st.next_n);
        ap_rprintf(r, "PanoptesStreamSubscribers: %u\n"
                   "PanoptesStreamSubscribersHigh: %u\n"
                   "PanoptesStreamBusy: %" APR_UINT64_T_FMT "\n"
                   "PanoptesStreamEventsSent: %" APR_UINT64_T_FMT "\n"
                   "PanoptesStreamWake: %s\n", ls.subscribers, ls.high,
                   ls.busy, ls.sent, ls.wake);
        ap_rprintf(r, "PanoptesSyncLines: %" APR_UINT64_T_FMT "\n"
                   "PanoptesSyncFlushes: %" APR_UINT64_T_FMT "\n"
                   "PanoptesSyncFailures: %" APR_UINT64_T_FMT "\n"
                   "PanoptesSyncUnconfirmed: %" APR_UINT64_T_FMT "\n",
                   ys.lines, ys.flushes, ys.failures, ys.unconfirmed);
        ptm_fwd_status(r, flags, ptm_store);
        return OK;
    }
    ap_rputs("<hr />\n<h2>PANOPTES telemetry</h2>\n<table border=\"0\">\n",
             r);
    ap_rprintf(r, "<tr><th></th><th>site</th><th>run</th></tr>\n"
               "<tr><td>events accepted</td><td>%" APR_UINT64_T_FMT
               "</td><td>%" APR_UINT64_T_FMT "</td></tr>\n"
               "<tr><td>last seq</td><td>%" APR_UINT64_T_FMT "</td><td>%"
               APR_UINT64_T_FMT "</td></tr>\n"
               "<tr><td>current types</td><td>%u</td><td>%u</td></tr>\n"
               "</table>\n<table border=\"0\">\n",
               st.events[0], st.events[1], st.seq[0], st.seq[1],
               st.types[0], st.types[1]);
    if (st.run_id) {
        ap_rprintf(r, "<tr><td>active run</td><td>%s, started %s</td></tr>\n",
                   ap_escape_html(r->pool, run_id),
                   ap_escape_html(r->pool, started));
    }
    else if (st.run_active) {
        ap_rputs("<tr><td>active run</td><td>yes (busy)</td></tr>\n", r);
    }
    else {
        ap_rputs("<tr><td>active run</td><td>none</td></tr>\n", r);
    }
    if (st.busy) {
        ap_rputs("<tr><td>state lock</td><td>busy: a writer holds it (a "
                 "slow or hung disk?)</td></tr>\n", r);
    }
    ap_rprintf(r, "<tr><td>reads without the lock</td><td>%"
               APR_UINT64_T_FMT " copies made again, %" APR_UINT64_T_FMT
               " reads that took the lock</td></tr>\n"
               "<tr><td>state lock waits</td><td>%" APR_UINT64_T_FMT
               "</td></tr>\n", st.view_retries, st.view_locked,
               st.lock_waits);
    ap_rprintf(r, "<tr><td>shared state</td><td>%" APR_UINT64_T_FMT " of %"
               APR_UINT64_T_FMT " bytes used</td></tr>\n"
               "<tr><td>write errors</td><td>%" APR_UINT64_T_FMT
               "</td></tr>\n<tr><td>repairs after crashes</td><td>%"
               APR_UINT64_T_FMT "</td></tr>\n<tr><td>refused</td><td>",
               st.bytes_used, st.bytes_total, st.write_errors, st.repairs);
    for (i = 0; i < PTM_STORE_NSTATUS; i++) {
        ap_rprintf(r, "%s%d: %" APR_UINT64_T_FMT, i ? ", " : "",
                   ptm_store_status_code(i), st.answers[i]);
    }
    ap_rprintf(r, "</td></tr>\n<tr><td>recent events</td><td>%"
               APR_UINT64_T_FMT " held in %" APR_UINT64_T_FMT " of %"
               APR_UINT64_T_FMT " bytes%s%s</td></tr>\n</table>\n",
               st.recent_events, st.recent_bytes, st.recent_size,
               *oldest ? ", oldest accepted " : "", oldest);
    ap_rprintf(r, "<table border=\"0\">\n"
               "<tr><td>live feed (GET /stream)</td><td>%u subscribers "
               "(at most %u at once), %" APR_UINT64_T_FMT " refused busy, %"
               APR_UINT64_T_FMT " events sent; woken by %s</td></tr>\n"
               "</table>\n", ls.subscribers, ls.high, ls.busy, ls.sent,
               ls.wake);
    if (ys.lines) {
        ap_rprintf(r, "<table border=\"0\">\n"
                   "<tr><td>durable events (PanoptesTelemetrySync)</td><td>%"
                   APR_UINT64_T_FMT " waited for, %" APR_UINT64_T_FMT
                   " flushes (%" APR_UINT64_T_FMT " failed), %"
                   APR_UINT64_T_FMT " unconfirmed</td></tr>\n</table>\n",
                   ys.lines, ys.flushes, ys.failures, ys.unconfirmed);
    }
    ptm_fwd_status(r, flags, ptm_store);
    return OK;
}

static void ptm_register_hooks(apr_pool_t *p)
{
    APR_OPTIONAL_HOOK(ap, status_hook, ptm_status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
    ap_hook_pre_config(ptm_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(ptm_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(ptm_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_status(ptm_child_status, NULL, NULL, APR_HOOK_MIDDLE);
    /* Before mod_rewrite and mod_alias: it only notes the request. */
    ap_hook_translate_name(ptm_translate, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_map_to_storage(ptm_map_to_storage, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(ptm_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_error_filter(ptm_insert_error_filter, NULL, NULL,
                                APR_HOOK_MIDDLE);
    json_error_filter_handle = ap_register_output_filter(
        "PANOPTES_TELEMETRY_JSON_ERROR", json_error_filter, NULL,
        AP_FTYPE_CONTENT_SET);
}

AP_DECLARE_MODULE(panoptes_telemetry) = {
    STANDARD20_MODULE_STUFF,
    create_dir_conf,
    merge_dir_conf,
    create_srv_conf,
    merge_srv_conf,
    ptm_cmds,
    ptm_register_hooks,
    AP_MODULE_FLAG_NONE
};

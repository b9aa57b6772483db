/* Forwarding glue (SPEC §12.5); see mod_panoptes_telemetry_forward.h.
 *
 * The program: started by httpd's parent like a piped CustomLog, but
 * managed here (mod_log_config's piped logs are per generation: a
 * graceful restart would kill the program and lose the pipe).  The pipe
 * and the program outlive generations in the process pool; the parent
 * learns of the program's exit through apr_proc_other_child (the MPM
 * reaps it), notes how much of the pipe it had read (ptm_forward.h: the
 * forwarder writes again what it may have held), and starts it again.
 * When httpd starts as root, the program runs as the User and Group of
 * the children (it needs no privilege to read a pipe, and a consumer
 * talking to the network should not run as root).
 *
 * The thread: a mod_watchdog singleton (one child runs it), whose
 * callback forwards until the child stops: the MPM's state says STOPPING
 * before the child's pool (and with it the watchdog's thread) goes, which
 * is what ends the watchdog's own loop too.  A callback that returned
 * would be called again only after the watchdog's sleep of
 * AP_WD_TM_SLICE (100 ms), a stall of forwarding at every return (it
 * made the lag p99 at 1,000 events/s 90 ms).  The watchdog's own lock is
 * per generation, so while children of two generations overlap, the
 * board's lease keeps the forwarder single. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"
#include "ap_mpm.h"
#include "unixd.h"
#include "mod_status.h"
#include "mod_watchdog.h"

#include "apr_lib.h"
#include "apr_strings.h"
#include "apr_thread_proc.h"

#include "mod_panoptes_telemetry_forward.h"
#include "ptm_forward.h"
#include "ptm_store_fwd.h"
#include "ptm_time.h"

APLOG_USE_MODULE(panoptes_telemetry);

#define FWD_RETAINED "mod_panoptes_telemetry-forward"
#define FWD_WATCHDOG "_panoptes_telemetry_forward_"
/* The longest wait for room in the pipe per write. */
#define FWD_WRITE_WAIT apr_time_from_msec(200)
/* The longest wait for a new event (the live board wakes it sooner); a
 * stopping child waits that long at most for the forwarder to notice. */
#define FWD_IDLE_WAIT apr_time_from_msec(500)
/* How long a stopping forwarder may take to finish a line under way. */
#define FWD_STOP_WAIT apr_time_from_msec(1000)
/* How long the STOPPING state waits for the thread to leave round_ (its
 * longest wait is FWD_IDLE_WAIT or a write of FWD_WRITE_WAIT). */
#define FWD_LEAVE_WAIT apr_time_from_msec(1500)
/* At most one look at the ring per this long: under a burst of POSTs one
 * look carries many events, instead of the forwarder waking, taking the
 * store lock and writing to the pipe for each one (which slowed POSTs by
 * a third at wrk c=8).  An event after a quiet spell goes at once. */
#define FWD_LOOK_EVERY apr_time_from_msec(2)
/* A program that exits sooner than this after its start is restarted
 * only this long after that start (no fork loop). */
#define FWD_RESPAWN_GAP apr_time_from_msec(1000)

struct ptm_fwd_conf_t {
    const char *arg;            /* as written, for messages and status;
                                 * NULL: no program set */
    const char *command;        /* after the | or |$ */
    apr_cmdtype_e cmdtype;
    const char *user, *group;   /* PanoptesTelemetryForwardUser, or NULL */
};

/* In the parent's process pool: the same for every generation. */
typedef struct {
    apr_pool_t *pool;
    ptm_fwd_board_t *board;
    ptm_live_t *live;
    apr_file_t *rd, *wr;        /* the pipe */
    apr_proc_t proc;            /* the program, while `running` */
    int running;
    apr_time_t started;
    const char *arg;            /* the setting the program was started with */
    const char *command;
    apr_cmdtype_e cmdtype;
    const char *user, *group;   /* PanoptesTelemetryForwardUser, or NULL */
    const char *as_user, *as_group;     /* the running program's */
    server_rec *s;              /* of the current generation */
} fwd_retained_t;

/* Per child: the store handle, and the forwarder while it holds the
 * lease (only the watchdog thread touches it). */
static fwd_retained_t *fwd_ret;
static ptm_store_t *fwd_store;
static apr_pool_t *fwd_pool;
static ptm_fwd_t *fwd;
static int fwd_blocked_said, fwd_error_said;

static int same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* ---- the directive ---------------------------------------------------- */

static ptm_fwd_conf_t *conf_of(cmd_parms *cmd, ptm_fwd_conf_t **c)
{
    if (!*c) {
        *c = apr_pcalloc(cmd->pool, sizeof(**c));
    }
    return *c;
}

const char *ptm_fwd_set_program(cmd_parms *cmd, ptm_fwd_conf_t **out,
                                const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    ptm_fwd_conf_t *c;
    const char *p = arg;

    if (err) {
        return err;
    }
    c = conf_of(cmd, out);
    c->arg = arg;
    if (*p != '|') {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": '", arg,
                           "' is not a piped program: write \"|program "
                           "args\" (run directly) or \"|$command\" (run "
                           "through the shell)", NULL);
    }
    p++;
    c->cmdtype = APR_PROGRAM_ENV;
    if (*p == '$') {
        c->cmdtype = APR_SHELLCMD_ENV;
        p++;
    }
    else if (*p == '|') {
        p++;                    /* "||" as mod_log_config: no shell */
    }
    while (apr_isspace(*p)) {
        p++;
    }
    if (!*p) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": '", arg,
                           "' names no program after the |", NULL);
    }
    c->command = p;
    return NULL;
}

const char *ptm_fwd_set_user(cmd_parms *cmd, ptm_fwd_conf_t **out,
                             const char *user, const char *group)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    ptm_fwd_conf_t *c;
    struct passwd *pw;
    struct group *gr;

    if (err) {
        return err;
    }
    /* Checked now, with a clear message, rather than at each start of
     * the program in a forked child. */
    if (!(pw = getpwnam(user))) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": no user '", user,
                           "' on this system", NULL);
    }
    if (group && !getgrnam(group)) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": no group '", group,
                           "' on this system", NULL);
    }
    /* As httpd does for its User: root is not a user to run it as. */
    if (pw->pw_uid == 0) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": '", user,
                           "' is root: the program must not run as root",
                           NULL);
    }
    if (group && getgrnam(group)->gr_gid == 0) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": group '", group,
                           "' is gid 0: the program must not run in root's "
                           "group", NULL);
    }
    if (!group && pw->pw_gid == 0) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": the primary group "
                           "of '", user, "' is gid 0: name another group",
                           NULL);
    }
    if (!group) {
        if (!(gr = getgrgid(pw->pw_gid))) {
            return apr_pstrcat(cmd->pool, cmd->cmd->name, ": the primary "
                               "group of '", user, "' has no name; name "
                               "a group", NULL);
        }
        group = apr_pstrdup(cmd->pool, gr->gr_name);
    }
    c = conf_of(cmd, out);
    c->user = user;
    c->group = group;
    return NULL;
}

/* ---- the program (parent) ---------------------------------------------- */

static void fwd_maintenance(int reason, void *data, apr_wait_t status);

/* Bytes still unread in the pipe. */
static uint64_t unread(fwd_retained_t *ret)
{
    apr_os_file_t fd;
    int n = 0;

    if (apr_os_file_get(&fd, ret->rd) != APR_SUCCESS
        || ioctl(fd, FIONREAD, &n) != 0 || n < 0) {
        return 0;
    }
    return (uint64_t)n;
}

static void child_errfn(apr_pool_t *p, apr_status_t err, const char *desc)
{
    /* In the forked child, before exec: its stderr is the error log. */
    ap_log_error(APLOG_MARK, APLOG_ERR, err, NULL,
                 "PanoptesTelemetryForward: cannot run the program: %s",
                 desc);
}

/* 1 if `command`'s program (run without a shell) can be found and run. */
static int findable(const char *command, apr_pool_t *p)
{
    char **args;
    const char *path, *dir;
    char *list, *last;

    if (apr_tokenize_to_argv(command, &args, p) != APR_SUCCESS || !args[0]) {
        return 0;
    }
    if (strchr(args[0], '/')) {
        return access(args[0], X_OK) == 0;
    }
    path = getenv("PATH");
    list = apr_pstrdup(p, path ? path : "/usr/bin:/bin");
    for (dir = apr_strtok(list, ":", &last); dir;
         dir = apr_strtok(NULL, ":", &last)) {
        if (access(apr_pstrcat(p, dir, "/", args[0], NULL), X_OK) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Give the program `user`'s own supplementary groups, not the root
 * parent's: APR's fork sets the uid and gid only.  The parent takes them
 * on for the fork (it is single-threaded) and gets its own back after;
 * `saved` holds them.  Returns APR_SUCCESS or the error. */
static apr_status_t groups_for(const char *user, const char *group,
                               gid_t **saved, int *nsaved, apr_pool_t *p)
{
    struct group *gr = getgrnam(group);
    int n = getgroups(0, NULL);

    if (!gr || n < 0) {
        return gr ? APR_FROM_OS_ERROR(errno) : APR_FROM_OS_ERROR(ENOENT);
    }
    *saved = apr_palloc(p, (n ? n : 1) * sizeof(gid_t));
    if ((*nsaved = getgroups(n, *saved)) < 0
        || initgroups(user, gr->gr_gid) != 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    return APR_SUCCESS;
}

static apr_status_t spawn(fwd_retained_t *ret, int restart)
{
    apr_pool_t *p;
    apr_procattr_t *attr;
    apr_proc_t proc;
    apr_status_t rv;
    char **args;
    const char *user = ret->user ? ret->user : ap_unixd_config.user_name;
    const char *group = ret->group ? ret->group
                        : ap_unixd_config.group_name;
    gid_t *saved = NULL;
    int nsaved = -1;

    if (ret->cmdtype == APR_PROGRAM_ENV && !findable(ret->command,
                                                     ret->pool)) {
        rv = APR_FROM_OS_ERROR(ENOENT);
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, ret->s,
                     "PanoptesTelemetryForward %s: the program is not found "
                     "or not executable (PATH %s); nothing is forwarded "
                     "until it is (then apachectl graceful); events wait in "
                     "the recent-events ring", ret->arg,
                     getenv("PATH") ? getenv("PATH") : "unset");
        ptm_fwd_note_error(ret->board, PTM_FWD_ERR_START, rv,
                           apr_time_now());
        return rv;
    }
    apr_pool_create(&p, ret->pool);
    if ((rv = apr_procattr_create(&attr, p)) != APR_SUCCESS
        || (rv = apr_procattr_dir_set(attr, ap_server_root)) != APR_SUCCESS
        || (rv = apr_procattr_cmdtype_set(attr, ret->cmdtype))
           != APR_SUCCESS
        || (rv = apr_procattr_child_in_set(attr, ret->rd, NULL))
           != APR_SUCCESS
        || (rv = apr_procattr_error_check_set(attr, 1)) != APR_SUCCESS
        || (rv = apr_procattr_child_errfn_set(attr, child_errfn))
           != APR_SUCCESS
        || (geteuid() == 0
            && ((rv = apr_procattr_user_set(attr, user, NULL))
                != APR_SUCCESS
                || (rv = apr_procattr_group_set(attr, group))
                   != APR_SUCCESS
                || (rv = groups_for(user, group, &saved, &nsaved, p))
                   != APR_SUCCESS))) {
        goto fail;
    }
    if (ret->cmdtype == APR_SHELLCMD_ENV) {
        args = apr_palloc(p, 2 * sizeof(char *));
        args[0] = (char *)ret->command;
        args[1] = NULL;
    }
    else if ((rv = apr_tokenize_to_argv(ret->command, &args, p))
             != APR_SUCCESS) {
        goto fail;
    }
    rv = apr_proc_create(&proc, args[0], (const char *const *)args, NULL,
                         attr, p);
    if (nsaved >= 0) {
        setgroups((size_t)nsaved, saved);
        nsaved = -1;
    }
    if (rv != APR_SUCCESS) {
        goto fail;
    }
    /* Whom it runs as, to start it again when that changes. */
    if (!same(ret->as_user, user) || !same(ret->as_group, group)) {
        ret->as_user = apr_pstrdup(ret->pool, user);
        ret->as_group = apr_pstrdup(ret->pool, group);
    }
    ret->proc.pid = proc.pid;
    ret->proc.in = ret->proc.out = ret->proc.err = NULL;
    ret->running = 1;
    ret->started = apr_time_now();
    ptm_fwd_program_started(ret->board, proc.pid, restart);
    apr_proc_other_child_register(&ret->proc, fwd_maintenance, ret, NULL,
                                  ret->s->process->pconf);
    apr_pool_destroy(p);        /* the dup of the read end, in the parent */
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, ret->s,
                 "PanoptesTelemetryForward %s: %s (pid %ld)", ret->arg,
                 restart ? "restarted" : "started", (long)proc.pid);
    return APR_SUCCESS;

fail:
    if (nsaved >= 0) {
        setgroups((size_t)nsaved, saved);
    }
    apr_pool_destroy(p);
    ap_log_error(APLOG_MARK, APLOG_ERR, rv, ret->s,
                 "PanoptesTelemetryForward %s: cannot start the program",
                 ret->arg);
    ptm_fwd_note_error(ret->board, PTM_FWD_ERR_START, rv, apr_time_now());
    return rv;
}

/* The program has gone (reaped by the MPM, or found gone). */
static void exited(fwd_retained_t *ret, int status, int respawn)
{
    char why[160];
    int mpm_state = AP_MPMQ_STARTING;

    ret->running = 0;
    /* The MPM's main loop gives the exit code or the signal; APR's
     * refresh at a restart gives the raw wait status: a value past 255
     * can only be the latter. */
    if (status > 255 && WIFEXITED(status)) {
        status = WEXITSTATUS(status);
    }
    ptm_fwd_program_exited(ret->board, status, unread(ret));
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ret->s,
                 "PanoptesTelemetryForward %s: %s; lines still in the pipe "
                 "wait for the next program, the last ones it read are "
                 "written again", ret->arg,
                 ptm_fwd_err_text(why, sizeof(why), PTM_FWD_ERR_EXIT,
                                  status));
    if (!respawn || ap_mpm_query(AP_MPMQ_MPM_STATE, &mpm_state)
                    != APR_SUCCESS || mpm_state == AP_MPMQ_STOPPING) {
        return;
    }
    if (apr_time_now() - ret->started < FWD_RESPAWN_GAP) {
        /* A program that dies at once is started once a second at most.
         * This sleeps in the parent's main loop (up to a second per end;
         * its monitor hook runs only every ten passes, too seldom to
         * start the program from there). */
        apr_sleep(FWD_RESPAWN_GAP - (apr_time_now() - ret->started));
    }
    spawn(ret, 1);
}

static void fwd_maintenance(int reason, void *data, apr_wait_t status)
{
    fwd_retained_t *ret = data;

    switch (reason) {
    case APR_OC_REASON_DEATH:
    case APR_OC_REASON_LOST:
        apr_proc_other_child_unregister(ret);
        exited(ret, reason == APR_OC_REASON_DEATH ? status : 0, 1);
        break;
    default:
        /* RESTART: the program outlives generations; UNWRITABLE: a full
         * pipe is the forwarder's business; UNREGISTER: nothing to do. */
        break;
    }
}

/* The program as the previous generation left it: still running, or gone
 * while nothing was registered to hear of it (between generations). */
static void check_running(fwd_retained_t *ret)
{
    int status = 0;
    pid_t r;

    if (!ret->running) {
        return;
    }
    r = waitpid(ret->proc.pid, &status, WNOHANG);
    if (r == ret->proc.pid || (r < 0 && errno == ECHILD)) {
        /* As the MPM tells the maintenance: the code or the signal. */
        exited(ret, r != ret->proc.pid ? 0
                    : WIFEXITED(status) ? WEXITSTATUS(status)
                    : WIFSIGNALED(status) ? WTERMSIG(status) : status, 0);
    }
}

static void stop_program(fwd_retained_t *ret, const char *why)
{
    if (!ret->running) {
        return;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, ret->s,
                 "PanoptesTelemetryForward %s: stopping the program (pid "
                 "%ld): %s", ret->arg, (long)ret->proc.pid, why);
    kill(ret->proc.pid, SIGTERM);
    ret->running = 0;
    ptm_fwd_program_exited(ret->board, SIGTERM, unread(ret));
}

/* ---- the thread (child) -------------------------------------------------- */

static int stopping(void)
{
    int state = AP_MPMQ_RUNNING;

    return ap_mpm_query(AP_MPMQ_MPM_STATE, &state) == APR_SUCCESS
           && state == AP_MPMQ_STOPPING;
}

static void release(void)
{
    /* STOPPING can come twice at once (the watchdog thread at its end,
     * the child pool's cleanup in the thread destroying it): whoever
     * takes the forwarder releases it. */
    ptm_fwd_t *f = __atomic_exchange_n(&fwd, NULL, __ATOMIC_SEQ_CST);

    if (!f) {
        return;
    }
    ptm_fwd_destroy(f, FWD_STOP_WAIT);
    if (fwd_ret->live) {
        ptm_live_watch(fwd_ret->live, 0);
    }
    ptm_fwd_unlease(fwd_ret->board, getpid());
}

static void report(const ptm_fwd_report_t *rep, uint64_t epoch)
{
    server_rec *s = fwd_ret->s;
    apr_time_t now = apr_time_now();

    if (rep->dropped) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "PanoptesTelemetryForward: %" APR_UINT64_T_FMT " events "
                     "(ids %" APR_UINT64_T_FMT "-%" APR_UINT64_T_FMT " to %"
                     APR_UINT64_T_FMT "-%" APR_UINT64_T_FMT ") left the "
                     "recent-events ring before they could be forwarded; "
                     "raise PanoptesTelemetryRecent to ride out longer "
                     "outages", rep->dropped, epoch, rep->gap_from, epoch,
                     rep->gap_to - 1);
        ptm_fwd_note_error(fwd_ret->board, PTM_FWD_ERR_DROPPED, 0, now);
    }
    if (rep->rewound_to) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "PanoptesTelemetryForward: after %s, "
                     "writing again from id %" APR_UINT64_T_FMT "-%"
                     APR_UINT64_T_FMT "%s", rep->rewind_cold
                     ? "a start of httpd (the last program may have died "
                       "with the httpd before)" : "the program's exit",
                     epoch, rep->rewound_to,
                     rep->rewind_short ? " (as far back as remembered: it "
                     "may have held more)" : "");
    }
    if (rep->blocked) {
        if (!fwd_blocked_said) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "PanoptesTelemetryForward: the pipe is full (the "
                         "program is not reading); events wait in the "
                         "recent-events ring");
            fwd_blocked_said = 1;
        }
        /* With no program running the pipe is full because of why it
         * is not (it could not start, it ended): keep that reason. */
        if (ptm_fwd_program_pid(fwd_ret->board) != 0) {
            ptm_fwd_note_error(fwd_ret->board, PTM_FWD_ERR_FULL, 0, now);
        }
    }
    else if (rep->lines) {
        fwd_blocked_said = 0;
    }
    if (rep->error != APR_SUCCESS) {
        if (!fwd_error_said) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rep->error, s,
                         "PanoptesTelemetryForward: cannot forward");
            fwd_error_said = 1;
        }
        ptm_fwd_note_error(fwd_ret->board, PTM_FWD_ERR_WRITE, rep->error,
                           now);
    }
    else if (rep->lines) {
        fwd_error_said = 0;
    }
}

/* mod_watchdog calls the STOPPING state from the child pool's cleanup,
 * in the thread that destroys the pool, while the watchdog thread may
 * still be in round_ (a prefork child ended by SIGTERM never reaches
 * AP_MPMQ_STOPPING): the thread is told to leave, and the forwarder is
 * released only once it has. */
static volatile uint32_t fwd_leave;     /* set by fwd_stopping */
static volatile uint32_t fwd_inside;    /* the thread is in round_ */

static int leaving(void)
{
    return __atomic_load_n(&fwd_leave, __ATOMIC_ACQUIRE) || stopping();
}

static void fwd_stopping(void)
{
    apr_time_t end = apr_time_now() + FWD_LEAVE_WAIT;

    /* Sequentially consistent, here and in round_: each side stores its
     * flag, then loads the other's, and neither may see both unset. */
    __atomic_store_n(&fwd_leave, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&fwd_inside, __ATOMIC_SEQ_CST)
           && apr_time_now() < end) {
        apr_sleep(apr_time_from_msec(5));
    }
    if (!__atomic_load_n(&fwd_inside, __ATOMIC_SEQ_CST)) {
        release();
    }
}

static void round_inside(void);

/* Forward until the child stops. */
static void round_(void)
{
    __atomic_store_n(&fwd_inside, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&fwd_leave, __ATOMIC_SEQ_CST)) {
        round_inside();
    }
    __atomic_store_n(&fwd_inside, 0, __ATOMIC_SEQ_CST);
}

static void round_inside(void)
{
    apr_time_t last_look = 0;
    uint64_t epoch;

    if (!fwd_store || !fwd_ret || !fwd_pool) {
        return;
    }
    if (leaving()) {
        return;
    }
    if (!fwd) {
        apr_os_file_t fd;

        if (!ptm_fwd_lease(fwd_ret->board, getpid())
            || apr_os_file_get(&fd, fwd_ret->wr) != APR_SUCCESS) {
            return;
        }
        fwd = ptm_fwd_create(fwd_ret->board, fwd_store, fd, fwd_pool);
        if (fwd_ret->live) {
            ptm_live_watch(fwd_ret->live, 1);
        }
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, fwd_ret->s,
                     "PanoptesTelemetryForward: this process forwards");
    }
    epoch = ptm_store_epoch(fwd_store);
    while (!leaving()) {
        apr_time_t now = apr_time_now();
        uint32_t seen;
        ptm_fwd_report_t rep;

        if (now - last_look < FWD_LOOK_EVERY) {
            apr_sleep(FWD_LOOK_EVERY - (now - last_look));
            now = apr_time_now();
        }
        last_look = now;
        /* Read before the look: an event accepted after it bumps the
         * word, and the wait below returns at once. */
        seen = fwd_ret->live ? ptm_live_seen(fwd_ret->live) : 0;
        ptm_fwd_step(fwd, FWD_WRITE_WAIT, &rep);
        report(&rep, epoch);
        if (rep.idle) {
            if (fwd_ret->live) {
                ptm_live_wait(fwd_ret->live, seen, FWD_IDLE_WAIT);
            }
            else {
                apr_sleep(apr_time_from_msec(20));
            }
        }
        else if (rep.error != APR_SUCCESS) {
            apr_sleep(apr_time_from_msec(100));
        }
    }
    /* The forwarder is released by fwd_stopping (STOPPING), after this
     * thread has left. */
}

static apr_status_t fwd_callback(int state, void *data, apr_pool_t *pool)
{
    switch (state) {
    case AP_WATCHDOG_STATE_RUNNING:
        round_();
        break;
    case AP_WATCHDOG_STATE_STOPPING:
        fwd_stopping();
        break;
    default:
        break;
    }
    /* Anything else and the watchdog never calls again. */
    return APR_SUCCESS;
}

/* ---- life cycle --------------------------------------------------------- */

int ptm_fwd_post_config(server_rec *s, const ptm_fwd_conf_t *c,
                        apr_size_t recent, ptm_live_t *live,
                        apr_pool_t *pconf, apr_pool_t *ptemp)
{
    APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *get_instance;
    APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *register_cb;
    fwd_retained_t *ret = ap_retained_data_get(FWD_RETAINED);
    ap_watchdog_t *w;
    apr_status_t rv;

    fwd_ret = NULL;
    if (ret) {
        ret->s = s;
        check_running(ret);
    }
    if (c && !c->arg) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "PanoptesTelemetryForwardUser without "
                     "PanoptesTelemetryForward: nothing is forwarded");
        c = NULL;
    }
    if (!c) {
        if (ret) {
            stop_program(ret, "PanoptesTelemetryForward is no longer set");
        }
        return OK;
    }
    if (!recent) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "PanoptesTelemetryForward needs the recent-events ring "
                     "(it forwards from there): PanoptesTelemetryRecent "
                     "must not be 0");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    get_instance = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    register_cb = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    if (!get_instance || !register_cb) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "PanoptesTelemetryForward needs mod_watchdog (built "
                     "into Debian's apache2; elsewhere LoadModule "
                     "watchdog_module)");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (!ret) {
        ret = ap_retained_data_create(FWD_RETAINED, sizeof(*ret));
        ret->pool = s->process->pool;
        ret->s = s;
    }
    if (!ret->board) {
        if ((rv = ptm_fwd_board_create(&ret->board, ret->pool))
            != APR_SUCCESS
            || (rv = apr_file_pipe_create_ex(&ret->rd, &ret->wr,
                                             APR_FULL_BLOCK, ret->pool))
               != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                         "PanoptesTelemetryForward: cannot make the shared "
                         "board or the pipe");
            ret->board = NULL;
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        /* Close-on-exec: the children (forked) keep both ends, but no
         * program httpd runs may hold them: the forwarding program with
         * the write end would never see the end of its input when httpd
         * stops, and would keep lines from the next one. */
        {
            apr_os_file_t fds[2];
            int i;

            apr_os_file_get(&fds[0], ret->rd);
            apr_os_file_get(&fds[1], ret->wr);
            for (i = 0; i < 2; i++) {
                fcntl(fds[i], F_SETFD, fcntl(fds[i], F_GETFD) | FD_CLOEXEC);
            }
        }
    }
    if (!ret->live) {
        ret->live = live;
        if (!ret->live
            && (rv = ptm_live_create(&ret->live, ret->pool)) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                         "PanoptesTelemetryForward: cannot make the live "
                         "board");
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    if (ret->running && strcmp(ret->arg, c->arg) != 0) {
        stop_program(ret, "PanoptesTelemetryForward changed");
    }
    else if (ret->running && geteuid() == 0
             && (!same(ret->as_user, c->user ? c->user
                                     : ap_unixd_config.user_name)
                 || !same(ret->as_group, c->group ? c->group
                                         : ap_unixd_config.group_name))) {
        stop_program(ret, "the user or group it runs as changed");
    }
    /* Kept in the process pool: copied only when they change, so that
     * graceful restarts do not grow it. */
    if (!same(ret->arg, c->arg)) {
        ret->arg = apr_pstrdup(ret->pool, c->arg);
        ret->command = apr_pstrdup(ret->pool, c->command);
    }
    ret->cmdtype = c->cmdtype;
    if (!same(ret->user, c->user) || !same(ret->group, c->group)) {
        ret->user = c->user ? apr_pstrdup(ret->pool, c->user) : NULL;
        ret->group = c->group ? apr_pstrdup(ret->pool, c->group) : NULL;
    }
    if (c->user && geteuid() != 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "PanoptesTelemetryForwardUser %s has no effect: httpd "
                     "does not start as root, the program runs as httpd "
                     "does", c->user);
    }
    if (ret->running) {
        /* Registered again with this generation's code (the DSO may have
         * moved) and pool. */
        apr_proc_other_child_register(&ret->proc, fwd_maintenance, ret, NULL,
                                      pconf);
    }
    else {
        /* A program that cannot start leaves httpd serving: POSTs never
         * depend on forwarding. */
        spawn(ret, 0);
    }
    rv = get_instance(&w, FWD_WATCHDOG, 0, 1, pconf);
    if (rv == APR_SUCCESS) {
        rv = register_cb(w, AP_WD_TM_SLICE, ret, fwd_callback);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "PanoptesTelemetryForward: cannot start the forwarding "
                     "thread (mod_watchdog)");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    fwd_ret = ret;
    return OK;
}

/* The child's pool is going (its end, SIGTERM included: prefork destroys
 * it from the signal handler while the watchdog thread still runs): the
 * thread leaves round_ before the store handle, its mutex and files that
 * were set up before this cleanup are gone. */
static apr_status_t fwd_child_exit(void *data)
{
    (void)data;
    fwd_stopping();
    return APR_SUCCESS;
}

ptm_live_t *ptm_fwd_child_init(apr_pool_t *p, server_rec *s,
                               ptm_store_t *store)
{
    /* Registered after the store's cleanups: run before them. */
    apr_pool_cleanup_register(p, NULL, fwd_child_exit,
                              apr_pool_cleanup_null);
    fwd_store = store;
    /* The forwarder lives in the watchdog thread; the child's pool is
     * the request threads' (prefork's has no mutex at all): a pool of
     * its own, with an allocator of its own, made here before the
     * thread runs, so the two never allocate from one allocator. */
    {
        apr_allocator_t *al = NULL;

        fwd_pool = NULL;
        if (apr_allocator_create(&al) == APR_SUCCESS
            && apr_pool_create_unmanaged_ex(&fwd_pool, NULL, al)
               == APR_SUCCESS) {
            apr_allocator_owner_set(al, fwd_pool);
        }
        else if (al) {
            apr_allocator_destroy(al);
        }
    }
    fwd = NULL;
    return fwd_ret ? fwd_ret->live : NULL;
}

/* ---- server-status ------------------------------------------------------- */

void ptm_fwd_status(request_rec *r, int flags, ptm_store_t *store)
{
    fwd_retained_t *ret = fwd_ret;
    ptm_fwd_board_stats_t b;
    ptm_store_fwd_t pos;
    char err[200], at[PTM_TS_LEN + 1] = "";
    uint64_t pending;
    double lag = 0;
    const char *prog;

    if (!ret || !ret->board || !store) {
        return;
    }
    ptm_fwd_board_stats(ret->board, &b);
    ptm_store_fwd_get(store, &pos);
    pending = pos.next_n && pos.id_next_n > pos.next_n
              ? pos.id_next_n - pos.next_n : 0;
    if (pending && b.head) {
        lag = (double)(apr_time_now() - b.head) / APR_USEC_PER_SEC;
        if (lag < 0) {
            lag = 0;
        }
    }
    ptm_fwd_err_text(err, sizeof(err), b.err, b.err_num);
    if (b.err != PTM_FWD_OK && b.err_at) {
        ptm_time_utc_iso(at, b.err_at);
    }
    prog = ap_escape_logitem(r->pool, ret->arg);
    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "PanoptesForwardProgram: %s\n"
                   "PanoptesForwardRunning: %d\n"
                   "PanoptesForwarded: %" APR_UINT64_T_FMT "\n"
                   "PanoptesForwardPending: %" APR_UINT64_T_FMT "\n"
                   "PanoptesForwardLagSeconds: %.3f\n"
                   "PanoptesForwardDropped: %" APR_UINT64_T_FMT "\n"
                   "PanoptesForwardRestarts: %" APR_UINT64_T_FMT "\n"
                   "PanoptesForwardRepeats: %" APR_UINT64_T_FMT "\n"
                   "PanoptesForwardNext: %" APR_UINT64_T_FMT "\n"
                   "PanoptesForwardLastError: %s%s%s\n",
                   prog, b.program != 0, pos.forwarded, pending, lag,
                   pos.dropped, b.restarts, pos.repeats, pos.next_n, err,
                   *at ? " at " : "", at);
        return;
    }
    ap_rprintf(r, "<table border=\"0\">\n"
               "<tr><td>forwarding to</td><td>%s (%s)</td></tr>\n"
               "<tr><td>forwarded</td><td>%" APR_UINT64_T_FMT " events, %"
               APR_UINT64_T_FMT " pending (%.3f s behind), %"
               APR_UINT64_T_FMT " dropped, %" APR_UINT64_T_FMT
               " written again</td></tr>\n"
               "<tr><td>program restarts</td><td>%" APR_UINT64_T_FMT
               "</td></tr>\n"
               "<tr><td>last forwarding error</td><td>%s%s%s</td></tr>\n"
               "</table>\n",
               ap_escape_html(r->pool, prog),
               b.program ? "running" : "not running", pos.forwarded,
               pending, lag, pos.dropped, pos.repeats, b.restarts,
               ap_escape_html(r->pool, err), *at ? " at " : "", at);
}

/* Unit tests for the state file (SPEC §11.4, §11.6; issue 9 items 2 and 3):
 * what httpd's root parent finds in its state directory at start is data,
 * not code.  A valid state is made through the store, then damaged or
 * crafted field by field and at random; every time ptm_store_open_file
 * must take it, keep exactly what checks out (saying how much it dropped),
 * and leave a store that serves JSON and keeps working.  Also: an older
 * layout (and its run) carried over, the counters kept through a resize
 * and a repair, the state of an earlier version carried over from the
 * site directory but never through a link, a FIFO or someone else's file,
 * the state file itself refused when it is any of those,
 * ptm_store_prepare_dir's checks of the state directory, and every block
 * of the file allocated (a full file system refuses at start, not with a
 * SIGBUS later).
 *
 * The states are crafted through the layout of ptm_store_int.h.  Tests
 * that need root (chown, mount) say so and skip without it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"

#include <apr_strings.h>
#include <jansson.h>
#include "ptm_buf.h"
#include "ptm_json.h"
#include "ptm_store.h"
#include "ptm_store_int.h"

#define SIZE ((apr_size_t)PTM_STORE_MIN_SIZE)
#define BIG (2 * SIZE)
#define TS_PART ",\"ts\":\"2026-03-17T20:15:00.000Z\""
#define RUN_OBJ "{\"run_dir\":\"/srv/t/001\",\"run_id\":\"001\",\"meta\":" \
                "{\"run_id\":\"001\"},\"started_at\":\"2026-03-17T20:15:00Z\"}"
#define LEGACY_NAME ".panoptes-telemetry.state"
#define NOBODY 65534

/* ---- the fixture --------------------------------------------------------- */

typedef struct {
    apr_pool_t *p;
    char *top;              /* scratch: /tmp/ptm_statefile.XXXXXX */
    char *sdir;             /* top/state: the state directory */
    char *state;            /* sdir/state */
    char *site;             /* top/site */
    char *legacy;           /* site/.panoptes-telemetry.state */
    char *outside;          /* top/outside: what must never be touched */
    void *map;              /* the open state, if any */
    apr_size_t size;
    int fd;
    ptm_store_t *st;
    char *mnt;              /* a tmpfs mounted by the test, if any */
} fx_t;

/* The fixture a failed test left open (cmocka longjmps past fx_close). */
static fx_t *open_fx;

static void fx_open(fx_t *fx)
{

    memset(fx, 0, sizeof(*fx));
    fx->fd = -1;
    open_fx = fx;
    assert_int_equal(apr_pool_create(&fx->p, gpool), APR_SUCCESS);
    fx->top = ptm_unit_tmpdir(fx->p, "ptm_statefile");
    fx->sdir = apr_pstrcat(fx->p, fx->top, "/state", NULL);
    fx->state = apr_pstrcat(fx->p, fx->sdir, "/state", NULL);
    fx->site = apr_pstrcat(fx->p, fx->top, "/site", NULL);
    fx->legacy = apr_pstrcat(fx->p, fx->site, "/" LEGACY_NAME, NULL);
    fx->outside = apr_pstrcat(fx->p, fx->top, "/outside", NULL);
    assert_int_equal(mkdir(fx->sdir, 0700), 0);
    assert_int_equal(mkdir(fx->site, 0755), 0);
    assert_int_equal(mkdir(fx->outside, 0755), 0);
}

static void st_close(fx_t *fx)
{
    if (fx->map) {
        ptm_store_close_files(fx->st);
        munmap(fx->map, fx->size);
        fx->map = NULL;
        fx->st = NULL;
    }
    if (fx->fd >= 0) {
        close(fx->fd);
        fx->fd = -1;
    }
}

static void fx_close(fx_t *fx)
{
    open_fx = NULL;
    st_close(fx);
    if (fx->mnt) {
        umount2(fx->mnt, MNT_DETACH);
        fx->mnt = NULL;
    }
    if (fx->top) {
        rm_rf(fx->top);
    }
    apr_pool_destroy(fx->p);
}

static int test_teardown(void **state)
{
    alarm(0);
    if (open_fx) {
        fx_close(open_fx);
    }
    return 0;
}

/* ptm_store_open_file on fx->state (and fx->legacy); on success the store
 * is open in `fx`. */
static apr_status_t st_open(fx_t *fx, apr_size_t size, ptm_store_open_e *how,
                            unsigned *dropped)
{
    apr_status_t rv;

    assert_null(fx->map);
    *how = (ptm_store_open_e)-1;
    *dropped = 12345;
    rv = ptm_store_open_file(&fx->map, &fx->fd, how, dropped, fx->state,
                             fx->legacy, size, 0, fx->p);
    if (rv != APR_SUCCESS) {
        fx->map = NULL;
        fx->fd = -1;
        return rv;
    }
    assert_non_null(fx->map);
    assert_true(ptm_store_is_formatted(fx->map, size, 0));
    fx->size = size;
    fx->st = ptm_store_attach(fx->map, NULL, fx->p);
    return rv;
}

/* st_open that must succeed as `want`; returns what it dropped. */
static unsigned open_as(fx_t *fx, apr_size_t size, ptm_store_open_e want,
                        const char *what)
{
    ptm_store_open_e how;
    unsigned dropped;
    apr_status_t rv = st_open(fx, size, &how, &dropped);

    if (rv != APR_SUCCESS) {
        fail_msg("%s: ptm_store_open_file: %d (%s)", what, rv, strerror(rv));
    }
    if (how != want) {
        fail_msg("%s: opened as %d, want %d", what, how, want);
    }
    return dropped;
}

/* open_as that must drop nothing. */
static void open_clean(fx_t *fx, apr_size_t size, ptm_store_open_e want,
                       const char *what)
{
    unsigned dropped = open_as(fx, size, want, what);

    if (dropped != 0) {
        fail_msg("%s: %u things dropped, want none", what, dropped);
    }
}

/* ---- files --------------------------------------------------------------- */

static void write_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd < 0) {
        fail_msg("open %s: %s", path, strerror(errno));
    }
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* The whole file into a fresh block of `p` (8-aligned: states are read
 * through hdr_t). */
static char *read_file(const char *path, size_t *len, apr_pool_t *p)
{
    char *buf = slurp(path, len, p);

    if (!buf) {
        fail_msg("cannot read %s", path);
    }
    return buf;
}

static void check_file_is(const char *path, const void *buf, size_t len,
                          apr_pool_t *p)
{
    size_t got_len;
    char *got = slurp(path, &got_len, p);

    if (!got || got_len != len || memcmp(got, buf, len) != 0) {
        fail_msg("%s was changed (%zu bytes, want %zu)", path,
                 got ? got_len : 0, len);
    }
}

/* Only `name` (or nothing, when NULL) in the state directory: no
 * state.new left behind, nothing made through a link. */
static void check_sdir_holds(fx_t *fx, const char *name)
{
    DIR *d = opendir(fx->sdir);
    struct dirent *de;
    int found = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        if (!name || strcmp(de->d_name, name) != 0) {
            closedir(d);
            fail_msg("unexpected %s in the state directory", de->d_name);
        }
        found = 1;
    }
    closedir(d);
    assert_int_equal(found, name != NULL);
}

/* ---- the store ----------------------------------------------------------- */

/* Record one event of `type` (any string: the key is written as the
 * store's callers write it) with `data` (JSON text); expect `want_seq`.
 * Returns the envelope /current then shows. */
static const char *post_ok(fx_t *fx, int stream, const char *type,
                           const char *data, int make_current,
                           uint64_t want_seq)
{
    ptm_store_event_t ev;
    ptm_store_run_t run;
    ptm_buf_t key, body;
    uint64_t seq = 0;
    apr_status_t rv;

    assert_int_equal(ptm_store_run_peek(&run, fx->st, fx->p), APR_SUCCESS);
    ptm_buf_init(&key, fx->p, 16);
    ptm_json_dump_string(&key, type, strlen(type));
    ptm_buf_init(&body, fx->p, 128);
    ptm_buf_puts(&body, ",\"type\":");
    ptm_buf_add(&body, key.data, key.len);
    ptm_buf_puts(&body, ",\"data\":");
    ptm_buf_puts(&body, data);
    ptm_buf_puts(&body, ",\"meta\":{");
    if (stream == PTM_STREAM_RUN) {
        ptm_buf_puts(&body, "\"run_id\":");
        ptm_json_dump_string(&body, run.run_id, run.run_id_len);
    }
    ptm_buf_puts(&body, "}}");
    memset(&ev, 0, sizeof(ev));
    ev.run_gen = run.gen;
    ev.stream = stream;
    ev.key = key.data;
    ev.key_len = key.len;
    ev.ts_part = TS_PART;
    ev.ts_len = strlen(TS_PART);
    ev.body_part = body.data;
    ev.body_len = body.len;
    ev.make_current = make_current;
    ev.fd = -1;
    rv = ptm_store_event(fx->st, &ev, &seq);
    if (rv != APR_SUCCESS) {
        fail_msg("post %s: status %d", type, rv);
    }
    if (seq != want_seq) {
        fail_msg("post %s: seq %" PRIu64 ", want %" PRIu64, type, seq,
                 want_seq);
    }
    return apr_psprintf(fx->p, "{\"seq\":%" PRIu64 TS_PART "%.*s", seq,
                        (int)body.len, body.data);
}

static void start_run(fx_t *fx, const char *obj, const char *id,
                      const char *dir)
{
    apr_status_t rv = ptm_store_run_start(fx->st, obj, strlen(obj), id,
                                          strlen(id), dir, NULL, NULL);

    if (rv != APR_SUCCESS) {
        fail_msg("run start %s: status %d", id, rv);
    }
}

static const char *current(fx_t *fx)
{
    ptm_buf_t b;

    ptm_buf_init(&b, fx->p, 256);
    assert_int_equal(ptm_store_current(fx->st, &b), APR_SUCCESS);
    ptm_buf_putc(&b, '\0');
    return b.data;
}

static ptm_store_stats_t stats(fx_t *fx)
{
    ptm_store_stats_t s;

    assert_int_equal(ptm_store_stats(fx->st, &s, fx->p), APR_SUCCESS);
    return s;
}

/* `text` is one JSON value jansson reads (NUL escapes allowed); returns
 * it (the caller decrefs). */
static json_t *parse_ok(const char *text, size_t len, const char *what)
{
    json_error_t err;
    json_t *v = json_loadb(text, len, JSON_ALLOW_NUL, &err);

    if (!v) {
        fail_msg("%s is not JSON (%s at %d): %.*s", what, err.text,
                 err.position, (int)(len > 2000 ? 2000 : len), text);
    }
    return v;
}

/* /current and the run read as JSON, whatever the state held. */
static void check_json(fx_t *fx, const char *what)
{
    const char *cur = current(fx);
    json_t *v = parse_ok(cur, strlen(cur), what);
    ptm_buf_t b;
    apr_status_t rv;

    assert_true(json_is_object(json_object_get(v, "current")));
    assert_int_equal(json_object_size(v), 1);
    json_decref(v);
    ptm_buf_init(&b, fx->p, 256);
    rv = ptm_store_run_get(fx->st, &b);
    if (rv == APR_SUCCESS) {
        v = parse_ok(b.data, b.len, "the run");
        assert_true(json_is_object(v));
        json_decref(v);
    }
    else {
        assert_int_equal(rv, PTM_STORE_NORUN);
    }
}

/* ---- a valid state, and what it shows ------------------------------------ */

/* A current value: its key (a JSON string) and envelope, and whether it
 * is expected to survive. */
typedef struct {
    const char *key;
    const char *env;
    int keep;
} val_t;

/* What a state is expected to show once opened. */
typedef struct {
    val_t site[3];
    val_t run[3];
    int run_kept;
    const char *run_id;
    int lossy;              /* something is dropped: *dropped > 0 */
    uint64_t seq[2];
} want_t;

/* The valid state every crafted one starts from (ptm_store_format's
 * epoch and run_gen aside, the same every time), and what it shows. */
typedef struct {
    char *img;
    size_t len;
    want_t w;
} golden_t;

static void make_golden(fx_t *fx, golden_t *g)
{
    want_t *w = &g->w;
    int i;

    memset(g, 0, sizeof(*g));
    open_as(fx, SIZE, PTM_STORE_OPEN_NEW, "golden");
    w->site[0].env = post_ok(fx, PTM_STREAM_SITE, "a", "1", 1, 1);
    w->site[1].env = post_ok(fx, PTM_STREAM_SITE, "b", "[2]", 1, 2);
    w->site[2].env = post_ok(fx, PTM_STREAM_SITE, "c",
                             "{\"x\":\"\\u00e9\\ud83d\\ude00\"}", 1, 3);
    post_ok(fx, PTM_STREAM_SITE, "d", "4", 0, 4);
    start_run(fx, RUN_OBJ, "001", "/srv/t/001");
    w->run[0].env = post_ok(fx, PTM_STREAM_RUN, "r", "{\"x\":3}", 1, 1);
    w->run[1].env = post_ok(fx, PTM_STREAM_RUN, "a", "\"run a\"", 1, 2);
    w->run[2].env = post_ok(fx, PTM_STREAM_RUN, "s", "null", 1, 3);
    for (i = 0; i < 3; i++) {
        w->site[i].key = apr_psprintf(fx->p, "\"%c\"", "abc"[i]);
        w->run[i].key = apr_psprintf(fx->p, "\"%c\"", "ras"[i]);
        w->site[i].keep = w->run[i].keep = 1;
    }
    w->run_kept = 1;
    w->run_id = "001";
    w->seq[PTM_STREAM_SITE] = 4;
    w->seq[PTM_STREAM_RUN] = 3;
    /* Counters that live in the header only (mod_status). */
    for (i = 0; i < 3; i++) {
        ptm_store_count_write_error(fx->st);
    }
    ptm_store_count_answer(fx->st, 422);
    ptm_store_count_answer(fx->st, 422);
    ptm_store_count_answer(fx->st, 507);
    st_close(fx);
    g->img = read_file(fx->state, &g->len, fx->p);
    assert_int_equal(g->len, SIZE);
    assert_int_equal(unlink(fx->state), 0);
}

/* /current as the store prints it for `w`: site values in their order
 * (the run's value of the same type in place), then run-only values. */
static const char *want_current(const want_t *w, apr_pool_t *p)
{
    ptm_buf_t b;
    int i, j, first = 1;

    ptm_buf_init(&b, p, 1024);
    ptm_buf_puts(&b, "{\"current\":{");
    for (i = 0; i < 3; i++) {
        const char *env = w->site[i].env;

        if (!w->site[i].keep) {
            continue;
        }
        for (j = 0; w->run_kept && j < 3; j++) {
            if (w->run[j].keep && strcmp(w->run[j].key, w->site[i].key) == 0) {
                env = w->run[j].env;
            }
        }
        ptm_buf_puts(&b, first ? "" : ",");
        ptm_buf_puts(&b, apr_pstrcat(p, w->site[i].key, ":", env, NULL));
        first = 0;
    }
    for (j = 0; w->run_kept && j < 3; j++) {
        int shadowed = 0;

        for (i = 0; i < 3; i++) {
            shadowed |= w->site[i].keep
                        && strcmp(w->run[j].key, w->site[i].key) == 0;
        }
        if (w->run[j].keep && !shadowed) {
            ptm_buf_puts(&b, first ? "" : ",");
            ptm_buf_puts(&b, apr_pstrcat(p, w->run[j].key, ":",
                                         w->run[j].env, NULL));
            first = 0;
        }
    }
    ptm_buf_puts(&b, "}}");
    ptm_buf_putc(&b, '\0');
    return b.data;
}

/* The open state shows exactly `w`. */
static void check_want(fx_t *fx, const want_t *w, const char *what)
{
    const char *got = current(fx), *want = want_current(w, fx->p);
    ptm_store_stats_t s;
    ptm_store_run_t run;
    ptm_buf_t b;
    int i;

    json_decref(parse_ok(got, strlen(got), what));
    if (strcmp(got, want) != 0) {
        fail_msg("%s: /current\n  got  %s\n  want %s", what, got, want);
    }
    /* Each value is also found on its own, by its key. */
    for (i = 0; i < 3; i++) {
        if (w->site[i].keep) {
            ptm_buf_init(&b, fx->p, 256);
            assert_int_equal(ptm_store_current_one(fx->st, w->site[i].key,
                                                   strlen(w->site[i].key),
                                                   &b), APR_SUCCESS);
        }
    }
    ptm_buf_init(&b, fx->p, 256);
    if (w->run_kept) {
        assert_int_equal(ptm_store_run_get(fx->st, &b), APR_SUCCESS);
        if (b.len != strlen(RUN_OBJ) || memcmp(b.data, RUN_OBJ, b.len)) {
            fail_msg("%s: run %.*s", what, (int)b.len, b.data);
        }
        assert_int_equal(ptm_store_run_peek(&run, fx->st, fx->p),
                         APR_SUCCESS);
        assert_string_equal(run.run_id, w->run_id);
        assert_string_equal(run.run_dir, "/srv/t/001");
    }
    else if (ptm_store_run_get(fx->st, &b) != PTM_STORE_NORUN) {
        fail_msg("%s: a run is active: %.*s", what, (int)b.len, b.data);
    }
    s = stats(fx);
    if (s.seq[0] != w->seq[0] || s.seq[1] != w->seq[1]) {
        fail_msg("%s: seq %" PRIu64 "/%" PRIu64 ", want %" PRIu64 "/%"
                 PRIu64, what, s.seq[0], s.seq[1], w->seq[0], w->seq[1]);
    }
    assert_int_equal(s.write_errors, 3);
    for (i = 0; i < PTM_STORE_NSTATUS; i++) {
        int code = ptm_store_status_code(i);

        assert_int_equal(s.answers[i], code == 422 ? 2 : code == 507);
    }
}

/* After any open: an event, a run start (or a run event), /current as
 * JSON; then the state reopens as it was left, nothing dropped. */
static void check_usable(fx_t *fx, const want_t *w, const char *what)
{
    apr_size_t size = fx->size;
    const char *before;
    unsigned dropped;

    post_ok(fx, PTM_STREAM_SITE, "new", "{\"k\":[1,2]}", 1, w->seq[0] + 1);
    if (!w->run_kept) {
        start_run(fx, RUN_OBJ, "001", "/srv/t/001");
    }
    post_ok(fx, PTM_STREAM_RUN, "new-run", "1", 1, w->seq[1] + 1);
    check_json(fx, what);
    before = current(fx);
    st_close(fx);
    dropped = open_as(fx, size, PTM_STORE_OPEN_RECOVERED, what);
    if (dropped != 0) {
        fail_msg("%s: reopening dropped %u", what, dropped);
    }
    assert_string_equal(current(fx), before);
    st_close(fx);
}

/* Write `img` as the state file, open it at `size` and check it shows
 * `w` and stays usable. */
static void open_crafted(fx_t *fx, const char *img, size_t len,
                         apr_size_t size, const want_t *w, const char *what)
{
    unsigned dropped;

    write_file(fx->state, img, len);
    dropped = open_as(fx, size, size == len ? PTM_STORE_OPEN_RECOVERED
                                            : PTM_STORE_OPEN_RESIZED, what);
    if (w->lossy ? dropped == 0 : dropped != 0) {
        fail_msg("%s: dropped %u, want %s", what, dropped,
                 w->lossy ? "some" : "none");
    }
    check_sdir_holds(fx, "state");
    check_want(fx, w, what);
    check_usable(fx, w, what);
    assert_int_equal(unlink(fx->state), 0);
}

/* ---- crafting ------------------------------------------------------------ */

static hdr_t *H(char *img)
{
    return (hdr_t *)img;
}

static slot_t *slot_at(char *img, int s, int i)
{
    return (slot_t *)(img + H(img)->map[s].slots) + i;
}

static char *payload_at(char *img, uint64_t payload)
{
    return img + H(img)->arena + payload;
}

static blob_t *blob_at(char *img, uint64_t payload)
{
    return (blob_t *)(payload_at(img, payload) - sizeof(blob_t));
}

/* A new blob of `len` bytes at the arena's top; returns its payload. */
static uint64_t add_blob(char *img, const char *data, size_t len,
                         uint32_t owner)
{
    hdr_t *h = H(img);
    uint64_t payload = h->top + sizeof(blob_t);

    assert_true(h->top + BLOB_TOTAL(len) <= h->arena_size);
    blob_at(img, payload)->len = (uint32_t)len;
    blob_at(img, payload)->owner = owner;
    memcpy(payload_at(img, payload), data, len);
    h->top += BLOB_TOTAL(len);
    h->live += BLOB_TOTAL(len);
    return payload;
}

/* Value `i` of map `s` becomes [key][env], in a blob of its own. */
static void set_value(char *img, int s, int i, const char *key,
                      size_t key_len, const char *env, size_t env_len)
{
    slot_t *x = slot_at(img, s, i);
    char *both = malloc(key_len + env_len + 1);

    assert_non_null(both);
    memcpy(both, key, key_len);
    memcpy(both + key_len, env, env_len);
    x->blob = add_blob(img, both, key_len + env_len, 2u + 2u * i + s);
    x->key_len = (uint32_t)key_len;
    x->env_len = (uint32_t)env_len;
    free(both);
}

/* The run becomes [obj][id][dir], in a blob of its own. */
static void set_run(char *img, const char *obj, const char *id, size_t id_len,
                    const char *dir)
{
    hdr_t *h = H(img);
    size_t obj_len = strlen(obj), dir_len = strlen(dir);
    char *all = malloc(obj_len + id_len + dir_len + 1);

    assert_non_null(all);
    memcpy(all, obj, obj_len);
    memcpy(all + obj_len, id, id_len);
    memcpy(all + obj_len + id_len, dir, dir_len);
    h->run_blob = add_blob(img, all, obj_len + id_len + dir_len, OWNER_RUN);
    h->run_obj_len = (uint32_t)obj_len;
    h->run_id_len = (uint32_t)id_len;
    h->run_dir_len = (uint32_t)dir_len;
    free(all);
}

/* The envelope of value `i` of map `s` in `img`. */
static const char *env_of(char *img, int s, int i, apr_pool_t *p)
{
    slot_t *x = slot_at(img, s, i);

    return apr_pstrmemdup(p, payload_at(img, x->blob) + x->key_len,
                          x->env_len);
}

static void drop_site(want_t *w)
{
    w->site[0].keep = w->site[1].keep = w->site[2].keep = 0;
    w->lossy = 1;
}

/* The run goes, and its values with it. */
static void drop_run(want_t *w)
{
    w->run_kept = 0;
    w->lossy = 1;
}

static void drop_all(want_t *w)
{
    drop_site(w);
    drop_run(w);
}

/* One crafted change to a valid state, and what it leaves. */
typedef struct {
    const char *name;
    void (*craft)(char *img, want_t *w, apr_pool_t *p);
} craft_t;

#define CRAFT(name) static void name(char *img, want_t *w, apr_pool_t *p)

/* -- the header's offsets -- */

CRAFT(arena_past_end)
{
    H(img)->arena = SIZE;
    drop_all(w);
}

CRAFT(arena_in_header)
{
    H(img)->arena = 0;
    drop_all(w);
}

CRAFT(arena_huge)
{
    H(img)->arena = UINT64_MAX - 7;
    drop_all(w);
}

CRAFT(arena_unaligned)
{
    H(img)->arena += 4;
    drop_all(w);
}

CRAFT(arena_size_huge)
{
    H(img)->arena_size = UINT64_MAX;
    drop_all(w);
}

CRAFT(arena_size_past_end)
{
    H(img)->arena_size = SIZE - H(img)->arena + 8;
    drop_all(w);
}

CRAFT(top_past_arena)
{
    H(img)->top = H(img)->arena_size + 8;
    drop_all(w);
}

CRAFT(top_huge)
{
    H(img)->top = UINT64_MAX;
    drop_all(w);
}

CRAFT(top_zero)
{
    H(img)->top = 0;
    drop_all(w);
}

CRAFT(top_cuts_last_value)
{
    /* The last value written is the run's "s". */
    H(img)->top = slot_at(img, PTM_STREAM_RUN, 2)->blob - sizeof(blob_t);
    w->run[2].keep = 0;
    w->lossy = 1;
}

CRAFT(live_huge)
{
    /* Recomputed: events still find room. */
    H(img)->live = UINT64_MAX;
}

CRAFT(slots_past_end)
{
    H(img)->map[0].slots = SIZE;
    drop_site(w);
}

CRAFT(slots_cross_end)
{
    H(img)->map[0].slots = SIZE - 8;
    drop_site(w);
}

CRAFT(slots_huge)
{
    H(img)->map[0].slots = UINT64_MAX - 7;
    drop_site(w);
}

CRAFT(slots_unaligned)
{
    H(img)->map[0].slots += 4;
    drop_site(w);
}

CRAFT(slots_in_header)
{
    H(img)->map[0].slots = 0;
    drop_site(w);
}

CRAFT(slots_on_run_slots)
{
    /* The run's slots, read as the site's: owned by other slots. */
    H(img)->map[0].slots = H(img)->map[1].slots;
    drop_site(w);
}

CRAFT(slots_in_arena)
{
    H(img)->map[0].slots = H(img)->arena;
    drop_site(w);
}

CRAFT(count_huge)
{
    /* The table's empty slots after the three are read, and dropped. */
    H(img)->map[0].count = UINT32_MAX;
    w->lossy = 1;
}

CRAFT(cap_zero)
{
    H(img)->map[0].cap = 0;
    drop_site(w);
}

CRAFT(cap_below_count)
{
    H(img)->map[1].cap = 1;
    w->run[1].keep = w->run[2].keep = 0;
    w->lossy = 1;
}

CRAFT(count_and_cap_huge)
{
    H(img)->map[1].count = H(img)->map[1].cap = UINT32_MAX;
    w->run[0].keep = w->run[1].keep = w->run[2].keep = 0;
    w->lossy = 1;
}

CRAFT(index_and_hcap_garbage)
{
    /* Rebuilt, never read. */
    memset(img + H(img)->map[1].index, 0xff, 64);
    H(img)->map[0].hcap = 0;
    H(img)->map[0].index = UINT64_MAX;
    H(img)->map[1].hcap = 3;
    H(img)->map[1].index = SIZE;
    H(img)->map[0].bytes = UINT64_MAX;
}
/* -- the run -- */

CRAFT(run_blob_huge)
{
    H(img)->run_blob = UINT64_MAX;
    drop_run(w);
}

CRAFT(run_blob_past_end)
{
    H(img)->run_blob = SIZE;
    drop_run(w);
}

CRAFT(run_blob_on_a_value)
{
    H(img)->run_blob = slot_at(img, 0, 0)->blob;
    drop_run(w);
}

CRAFT(run_obj_len_huge)
{
    H(img)->run_obj_len = UINT32_MAX;
    drop_run(w);
}

CRAFT(run_lens_huge)
{
    H(img)->run_id_len = H(img)->run_dir_len = UINT32_MAX;
    drop_run(w);
}

CRAFT(run_obj_cut_short)
{
    /* The same blob split one byte earlier: "{...}" loses its brace. */
    H(img)->run_obj_len--;
    H(img)->run_id_len++;
    drop_run(w);
}

CRAFT(run_obj_not_object)
{
    payload_at(img, H(img)->run_blob)[0] = '[';
    drop_run(w);
}

CRAFT(run_obj_nul)
{
    payload_at(img, H(img)->run_blob)[5] = '\0';
    drop_run(w);
}

CRAFT(run_blob_not_owned)
{
    blob_at(img, H(img)->run_blob)->owner = OWNER_FREE;
    drop_run(w);
}

CRAFT(run_blob_len_wrong)
{
    blob_at(img, H(img)->run_blob)->len += 8;
    drop_run(w);
}

CRAFT(run_id_newline)
{
    set_run(img, RUN_OBJ, "0\n1", 3, "/srv/t/001");
    drop_run(w);
}

CRAFT(run_id_nul)
{
    set_run(img, RUN_OBJ, "0\0" "1", 3, "/srv/t/001");
    drop_run(w);
}

CRAFT(run_id_empty)
{
    set_run(img, RUN_OBJ, "", 0, "/srv/t/001");
    drop_run(w);
}

CRAFT(run_id_long)
{
    /* Longer than a directory name, which run start takes when a run_dir
     * is given: a restart must not drop a run it acknowledged. */
    char id[301];

    memset(id, '7', 300);
    id[300] = '\0';
    set_run(img, RUN_OBJ, id, 300, "/srv/t/001");
    w->run_id = apr_pstrdup(p, id);
}

CRAFT(run_id_longest)
{
    char id[256];

    memset(id, '7', 255);
    id[255] = '\0';
    set_run(img, RUN_OBJ, id, 255, "/srv/t/001");
    w->run_id = apr_pstrdup(p, id);
}

CRAFT(run_id_not_utf8)
{
    /* It becomes meta.run_id in every run event: JSON text. */
    set_run(img, RUN_OBJ, "0\xff" "1", 3, "/srv/t/001");
    drop_run(w);
}

CRAFT(run_dir_relative)
{
    set_run(img, RUN_OBJ, "001", 3, "srv/t/001");
    drop_run(w);
}

CRAFT(run_dir_not_utf8)
{
    /* (A newline is legal in a directory name, and run start takes it.) */
    set_run(img, RUN_OBJ, "001", 3, "/srv/t\xff/001");
    drop_run(w);
}

CRAFT(run_dir_empty)
{
    set_run(img, RUN_OBJ, "001", 3, "");
    drop_run(w);
}

CRAFT(run_active_garbage)
{
    /* Any non-zero is "active": the run itself is what is checked. */
    H(img)->run_active = 0xdeadbeef;
}

CRAFT(run_inactive_values_left)
{
    /* A stop cut short: run values without their run. */
    H(img)->run_active = 0;
    drop_run(w);
}
/* -- blobs and values -- */

CRAFT(blob_len_wrong)
{
    blob_at(img, slot_at(img, 0, 1)->blob)->len += 8;
    w->site[1].keep = 0;
    w->lossy = 1;
}

CRAFT(blob_owner_other_slot)
{
    blob_at(img, slot_at(img, 0, 1)->blob)->owner = 2 + 2 * 2 + 0;
    w->site[1].keep = 0;
    w->lossy = 1;
}

CRAFT(blob_owner_free)
{
    /* A value whose copy was cut short by a crash. */
    blob_at(img, slot_at(img, 0, 1)->blob)->owner = OWNER_FREE;
    w->site[1].keep = 0;
    w->lossy = 1;
}

CRAFT(two_slots_one_blob)
{
    slot_at(img, 0, 2)->blob = slot_at(img, 0, 1)->blob;
    slot_at(img, 0, 2)->key_len = slot_at(img, 0, 1)->key_len;
    slot_at(img, 0, 2)->env_len = slot_at(img, 0, 1)->env_len;
    w->site[2].keep = 0;
    w->lossy = 1;
}

CRAFT(lens_huge)
{
    slot_at(img, 0, 1)->key_len = UINT32_MAX;
    slot_at(img, 0, 1)->env_len = UINT32_MAX;
    w->site[1].keep = 0;
    w->lossy = 1;
}

CRAFT(lens_zero)
{
    slot_at(img, 0, 1)->key_len = 0;
    slot_at(img, 0, 1)->env_len = 0;
    w->site[1].keep = 0;
    w->lossy = 1;
}

CRAFT(blob_offset_huge)
{
    slot_at(img, 1, 0)->blob = UINT64_MAX - 7;
    w->run[0].keep = 0;
    w->lossy = 1;
}

CRAFT(duplicate_site_key)
{
    /* "c" becomes a second "a" (same length, same blob). */
    payload_at(img, slot_at(img, 0, 2)->blob)[1] = 'a';
    w->site[2].keep = 0;
    w->lossy = 1;
}

CRAFT(duplicate_run_key)
{
    payload_at(img, slot_at(img, 1, 2)->blob)[1] = 'r';
    w->run[2].keep = 0;
    w->lossy = 1;
}

CRAFT(seq_beyond_int64)
{
    /* No state gets there: dropped, counted again from the files. */
    H(img)->seq[PTM_STREAM_SITE] = UINT64_MAX;
    H(img)->seq[PTM_STREAM_RUN] = (uint64_t)INT64_MAX;
    w->seq[0] = w->seq[1] = 0;
    w->lossy = 1;
}

CRAFT(pending_seq_beyond_int64)
{
    H(img)->writing = 1;
    H(img)->pending_stream = PTM_STREAM_SITE;
    H(img)->pending_seq = UINT64_MAX - 1;
    w->seq[0] = 0;
    w->lossy = 1;
}

CRAFT(pending_stream_garbage)
{
    /* Set mark, nonsense stream: the pending number is ignored. */
    H(img)->writing = 1;
    H(img)->pending_stream = 9;
    H(img)->pending_seq = 1000;
}

CRAFT(pending_seq_skipped)
{
    /* The writing mark of a crash: the number the append may have
     * used is never given out again. */
    H(img)->writing = 1;
    H(img)->pending_stream = PTM_STREAM_RUN;
    H(img)->pending_seq = 4;
    w->seq[1] = 4;
}

static const craft_t header_cases[] = {
    { "arena past the end", arena_past_end },
    { "arena in the header", arena_in_header },
    { "arena near 2^64", arena_huge },
    { "arena not aligned", arena_unaligned },
    { "arena_size UINT64_MAX", arena_size_huge },
    { "arena_size one past the end", arena_size_past_end },
    { "top past the arena", top_past_arena },
    { "top UINT64_MAX", top_huge },
    { "top 0", top_zero },
    { "top cuts the last value", top_cuts_last_value },
    { "live UINT64_MAX", live_huge },
    { "slots past the end", slots_past_end },
    { "slots across the end", slots_cross_end },
    { "slots near 2^64", slots_huge },
    { "slots not aligned", slots_unaligned },
    { "slots in the header", slots_in_header },
    { "site slots on the run's", slots_on_run_slots },
    { "slots in the arena", slots_in_arena },
    { "count UINT32_MAX", count_huge },
    { "cap 0", cap_zero },
    { "cap below count", cap_below_count },
    { "count and cap UINT32_MAX", count_and_cap_huge },
    { "index and hcap garbage", index_and_hcap_garbage },
    { "seq beyond int64", seq_beyond_int64 },
    { "pending seq beyond int64", pending_seq_beyond_int64 },
    { "pending stream garbage", pending_stream_garbage },
    { "pending seq skipped", pending_seq_skipped },
};

static const craft_t run_cases[] = {
    { "run_blob UINT64_MAX", run_blob_huge },
    { "run_blob past the end", run_blob_past_end },
    { "run_blob on a value", run_blob_on_a_value },
    { "run_obj_len UINT32_MAX", run_obj_len_huge },
    { "run id and dir lengths UINT32_MAX", run_lens_huge },
    { "run object cut short", run_obj_cut_short },
    { "run object not an object", run_obj_not_object },
    { "run object with a NUL", run_obj_nul },
    { "run blob not owned", run_blob_not_owned },
    { "run blob of another length", run_blob_len_wrong },
    { "run id with a newline", run_id_newline },
    { "run id with a NUL", run_id_nul },
    { "run id empty", run_id_empty },
    { "run id of 300 bytes", run_id_long },
    { "run id of 255 bytes", run_id_longest },
    { "run id not UTF-8", run_id_not_utf8 },
    { "run dir relative", run_dir_relative },
    { "run dir not UTF-8", run_dir_not_utf8 },
    { "run dir empty", run_dir_empty },
    { "run_active garbage", run_active_garbage },
    { "run values without a run", run_inactive_values_left },
};

static const craft_t value_cases[] = {
    { "blob of another length", blob_len_wrong },
    { "blob of another slot", blob_owner_other_slot },
    { "blob owned by nobody", blob_owner_free },
    { "two slots, one blob", two_slots_one_blob },
    { "key and envelope lengths UINT32_MAX", lens_huge },
    { "key and envelope lengths 0", lens_zero },
    { "blob offset near 2^64", blob_offset_huge },
    { "duplicate site key", duplicate_site_key },
    { "duplicate run key", duplicate_run_key },
};

/* Every case on a fresh copy of the golden state, used in place and
 * carried over to another size. */
static void run_cases_on(fx_t *fx, const golden_t *g, const craft_t *cases,
                         size_t n)
{
    char *img = apr_palloc(fx->p, g->len);
    size_t i;
    int big;

    for (i = 0; i < n; i++) {
        for (big = 0; big < 2; big++) {
            want_t w = g->w;
            const char *what = apr_psprintf(fx->p, "%s (%s)", cases[i].name,
                                            big ? "resized" : "in place");

            memcpy(img, g->img, g->len);
            cases[i].craft(img, &w, fx->p);
            open_crafted(fx, img, g->len, big ? BIG : SIZE, &w, what);
        }
    }
}

/* A valid state reopens as it was, nothing dropped. */
static void test_valid_state_kept(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    golden_t g;

    fx_open(&fx);
    make_golden(&fx, &g);
    open_crafted(&fx, g.img, g.len, SIZE, &g.w, "as written");
    open_crafted(&fx, g.img, g.len, BIG, &g.w, "resized");
    fx_close(&fx);
}

/* Offsets, lengths and counters of the header. */
static void test_crafted_header(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    golden_t g;

    fx_open(&fx);
    make_golden(&fx, &g);
    run_cases_on(&fx, &g, header_cases,
                 sizeof(header_cases) / sizeof(header_cases[0]));
    fx_close(&fx);
}

static void test_crafted_run(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    golden_t g;

    fx_open(&fx);
    make_golden(&fx, &g);
    run_cases_on(&fx, &g, run_cases,
                 sizeof(run_cases) / sizeof(run_cases[0]));
    fx_close(&fx);
}

static void test_crafted_values(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    golden_t g;

    fx_open(&fx);
    make_golden(&fx, &g);
    run_cases_on(&fx, &g, value_cases,
                 sizeof(value_cases) / sizeof(value_cases[0]));
    fx_close(&fx);
}

/* Keys and envelopes one by one: site value "b" gets each; `keep` says
 * whether it checks out. */
typedef struct {
    const char *name;
    const char *key;        /* NULL: "b" */
    size_t key_len;         /* 0: strlen */
    const char *env;        /* NULL: b's own envelope */
    size_t env_len;
    int keep;
} text_case_t;

#define ENV(rest) "{\"seq\":2" TS_PART rest
static const text_case_t text_cases[] = {
    /* keys */
    { "key not quoted", "b", 0, NULL, 0, 0 },
    { "key unterminated", "\"b", 0, NULL, 0, 0 },
    { "key with trailing bytes", "\"b\"x", 0, NULL, 0, 0 },
    { "key a number", "12", 0, NULL, 0, 0 },
    { "key an object", "{}", 0, NULL, 0, 0 },
    { "key with a blank after it", "\"b\" ", 0, NULL, 0, 0 },
    { "key with a raw NUL", "\"\0\"", 3, NULL, 0, 0 },
    { "key with a raw newline", "\"\n\"", 0, NULL, 0, 0 },
    { "key escaped needlessly", "\"\\u0062\"", 0, NULL, 0, 0 },
    { "key with a slash escaped", "\"\\/\"", 0, NULL, 0, 0 },
    { "key with upper-case hex", "\"\\u00E9\"", 0, NULL, 0, 0 },
    { "key with raw UTF-8", "\"\xc3\xa9\"", 0, NULL, 0, 0 },
    { "key with invalid UTF-8", "\"\xff\"", 0, NULL, 0, 0 },
    { "key with a lone surrogate", "\"\\ud800\"", 0, NULL, 0, 0 },
    { "key with a lone low surrogate", "\"\\udc00\"", 0, NULL, 0, 0 },
    { "key with a bad escape", "\"\\x\"", 0, NULL, 0, 0 },
    { "key as the store writes: escapes", "\"\\u00e9\\ud83d\\ude00\\n\\\"\"",
      0, NULL, 0, 1 },
    { "key as the store writes: controls", "\"\\u0001\\u007f\\u001f\"", 0,
      NULL, 0, 1 },
    /* envelopes */
    { "envelope cut short", NULL, 0, ENV(",\"type\":\"b\""), 0, 0 },
    { "envelope with a brace too many", NULL, 0, ENV("}}"), 0, 0 },
    { "envelope missing its brace", NULL, 0, ENV(",\"data\":{\"x\":1}"), 0,
      0 },
    { "envelope with a raw NUL", NULL, 0, ENV(",\"data\":\"a\0b\"}"),
      sizeof(ENV(",\"data\":\"a\0b\"}")) - 1, 0 },
    { "envelope with a raw control byte", NULL, 0, ENV(",\"data\":\"\x01\"}"),
      0, 0 },
    { "envelope with an invalid byte", NULL, 0, ENV(",\"data\":\"\xff\"}"), 0,
      0 },
    { "envelope with an overlong form", NULL, 0,
      ENV(",\"data\":\"\xc0\xaf\"}"), 0, 0 },
    { "envelope with a raw surrogate", NULL, 0,
      ENV(",\"data\":\"\xed\xa0\x80\"}"), 0, 0 },
    { "envelope with a cut UTF-8 sequence", NULL, 0,
      ENV(",\"data\":\"\xe2\x82\"}"), 0, 0 },
    { "envelope with a lone surrogate escape", NULL, 0,
      ENV(",\"data\":\"\\ud83d\"}"), 0, 0 },
    { "envelope with a reversed pair", NULL, 0,
      ENV(",\"data\":\"\\ude00\\ud83d\"}"), 0, 0 },
    { "envelope with an integer beyond int64", NULL, 0,
      ENV(",\"data\":9223372036854775808}"), 0, 0 },
    { "envelope with an integer below int64", NULL, 0,
      ENV(",\"data\":-9223372036854775809}"), 0, 0 },
    { "envelope with a float beyond double", NULL, 0,
      ENV(",\"data\":1e999}"), 0, 0 },
    { "envelope with NaN", NULL, 0, ENV(",\"data\":NaN}"), 0, 0 },
    { "envelope with a trailing comma", NULL, 0, ENV(",\"data\":[1,]}"), 0,
      0 },
    { "envelope an array", NULL, 0, "[{\"seq\":2}]", 0, 0 },
    { "envelope without seq first", NULL, 0, "{\"ts\":1,\"seq\":2}", 0, 0 },
    { "envelope with garbage after it", NULL, 0, ENV("} {}"), 0, 0 },
    { "envelope of 7 bytes", NULL, 0, "{\"seq\":", 0, 0 },
    { "envelope with the extremes of int64", NULL, 0,
      ENV(",\"data\":[9223372036854775807,-9223372036854775808]}"), 0, 1 },
    { "envelope with raw UTF-8 and a NUL escape", NULL, 0,
      ENV(",\"data\":\"caf\xc3\xa9 \\u0000 \xf0\x9f\x98\x80\"}"), 0, 1 },
    { "envelope with the largest double", NULL, 0,
      ENV(",\"data\":[1.7976931348623157e308,5e-324,0e0]}"), 0, 1 },
};

static void test_crafted_keys_and_envelopes(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    golden_t g;
    char *img;
    size_t i;
    int big;

    fx_open(&fx);
    make_golden(&fx, &g);
    img = apr_palloc(fx.p, g.len);
    for (i = 0; i < sizeof(text_cases) / sizeof(text_cases[0]); i++) {
        const text_case_t *c = &text_cases[i];

        for (big = 0; big < 2; big++) {
            want_t w = g.w;
            const char *key = c->key ? c->key : "\"b\"";
            const char *env;
            size_t key_len = c->key_len ? c->key_len : strlen(key);
            size_t env_len;

            memcpy(img, g.img, g.len);
            env = c->env ? c->env : env_of(img, 0, 1, fx.p);
            env_len = c->env_len ? c->env_len : strlen(env);
            set_value(img, PTM_STREAM_SITE, 1, key, key_len, env, env_len);
            if (c->keep) {
                w.site[1].key = apr_pstrmemdup(fx.p, key, key_len);
                w.site[1].env = apr_pstrmemdup(fx.p, env, env_len);
            }
            else {
                w.site[1].keep = 0;
                w.lossy = 1;
            }
            open_crafted(&fx, img, g.len, big ? BIG : SIZE, &w,
                         apr_psprintf(fx.p, "%s (%s)", c->name,
                                      big ? "resized" : "in place"));
        }
    }
    fx_close(&fx);
}

/* Nesting: as deep as the parser takes is kept, deeper is dropped. */
static void test_crafted_nesting(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    golden_t g;
    char *img;
    int depth;

    fx_open(&fx);
    make_golden(&fx, &g);
    img = apr_palloc(fx.p, g.len);
    for (depth = PTM_JSON_MAX_DEPTH - 1; depth <= PTM_JSON_MAX_DEPTH;
         depth++) {
        want_t w = g.w;
        ptm_buf_t b;
        int i;

        /* The envelope is one level; its data the rest. */
        ptm_buf_init(&b, fx.p, 4096);
        ptm_buf_puts(&b, ENV(",\"data\":"));
        for (i = 0; i < depth; i++) {
            ptm_buf_putc(&b, '[');
        }
        for (i = 0; i < depth; i++) {
            ptm_buf_putc(&b, ']');
        }
        ptm_buf_putc(&b, '}');
        memcpy(img, g.img, g.len);
        set_value(img, PTM_STREAM_SITE, 1, "\"b\"", 3, b.data, b.len);
        if (depth < PTM_JSON_MAX_DEPTH) {
            w.site[1].env = apr_pstrmemdup(fx.p, b.data, b.len);
        }
        else {
            w.site[1].keep = 0;
            w.lossy = 1;
        }
        open_crafted(&fx, img, g.len, SIZE, &w,
                     apr_psprintf(fx.p, "%d levels", depth + 1));
    }
    fx_close(&fx);
}

/* Types of every kind survive a reopen: the checks drop nothing the
 * store itself writes. */
static void test_odd_types_kept(void **state)
{
    static const char *const types[] = {
        "caf\xc3\xa9", "\xf0\x9f\x98\x80", "\x01", "\x7f", "\"", "\\", "/",
        "a b", "\n\r\t\b\f", "\xef\xbf\xbd", "x\xff" /* written as U+FFFD */
    };
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *before;
    size_t i;

    fx_open(&fx);
    open_as(&fx, SIZE, PTM_STORE_OPEN_NEW, "new");
    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        post_ok(&fx, PTM_STREAM_SITE, types[i], "[\"\\u0000\"]", 1, i + 1);
    }
    before = current(&fx);
    json_decref(parse_ok(before, strlen(before), "/current"));
    st_close(&fx);
    open_clean(&fx, SIZE, PTM_STORE_OPEN_RECOVERED, "reopen");
    assert_string_equal(current(&fx), before);
    st_close(&fx);
    open_clean(&fx, BIG, PTM_STORE_OPEN_RESIZED, "resize");
    assert_string_equal(current(&fx), before);
    fx_close(&fx);
}

/* ---- random damage ------------------------------------------------------- */

/* Damage `img` at random (seeded): bit flips anywhere in its used part,
 * and whole fields of the header and tables overwritten with values
 * that break bounds. */
static void damage(char *img, size_t len, unsigned *seed)
{
    const hdr_t *h = H(img);
    uint64_t used = h->arena + h->top + 64;
    uint64_t tables = h->arena;
    int k, n = 1 + rand_r(seed) % 6;

    if (used > len) {
        used = len;
    }
    for (k = 0; k < n; k++) {
        int what = rand_r(seed) % 8;
        uint64_t v, off;

        switch (what) {
        case 0:
        case 1:
        case 2:
            /* A bit anywhere in the used part. */
            off = (uint64_t)rand_r(seed) % used;
            img[off] ^= (char)(1 << (rand_r(seed) % 8));
            break;
        case 3:
            /* A byte of the arena: values, blob headers. */
            off = tables + (uint64_t)rand_r(seed) % (used - tables);
            img[off] = (char)rand_r(seed);
            break;
        default: {
            static const uint64_t evil[] = {
                0, 1, 7, 8, UINT32_MAX, (uint64_t)UINT32_MAX + 1,
                UINT64_MAX, UINT64_MAX - 7, (uint64_t)INT64_MAX, SIZE,
                SIZE - 8, SIZE + 8, 64, 2048
            };

            /* A field of the header or the tables, 4 or 8 bytes. */
            off = (uint64_t)(rand_r(seed) % (int)(tables / 4)) * 4;
            v = rand_r(seed) % 3 ? evil[rand_r(seed) % 14]
                                 : ((uint64_t)rand_r(seed) << 31)
                                   ^ (uint64_t)rand_r(seed);
            if (what == 4 && off + 4 <= len) {
                uint32_t v32 = (uint32_t)v;

                memcpy(img + off, &v32, 4);
            }
            else if (off % 8 == 0 && off + 8 <= len) {
                memcpy(img + off, &v, 8);
            }
            break;
        }
        }
    }
}

/* A few thousand damaged copies of the valid state: each opens, reads
 * as JSON and takes an event. */
static void test_random_damage(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    int rounds = RUNNING_ON_VALGRIND ? 300 : 3000, round;
    apr_pool_t *top;
    golden_t g;
    char *img;

    fx_open(&fx);
    make_golden(&fx, &g);
    img = apr_palloc(fx.p, g.len);
    /* Each round in a pool of its own. */
    top = fx.p;
    assert_int_equal(apr_pool_create(&fx.p, top), APR_SUCCESS);
    for (round = 0; round < rounds; round++) {
        unsigned seed = 0x5eed0000u + (unsigned)round;
        apr_size_t size = round % 3 == 2 ? BIG : SIZE;
        const char *what = apr_psprintf(fx.p, "damage seed %#x", seed);
        ptm_store_open_e how;
        unsigned dropped;
        ptm_store_stats_t s;
        apr_status_t rv;
        ptm_buf_t b;

        memcpy(img, g.img, g.len);
        damage(img, g.len, &seed);
        write_file(fx.state, img, g.len);
        rv = st_open(&fx, size, &how, &dropped);
        if (rv != APR_SUCCESS) {
            fail_msg("%s: ptm_store_open_file: %d", what, rv);
        }
        check_json(&fx, what);
        s = stats(&fx);
        assert_true(s.bytes_used <= s.bytes_total);
        /* Room for one small event whatever survived (64 KiB holds the
         * golden state many times over). */
        post_ok(&fx, PTM_STREAM_SITE, "new", "1", 1, s.seq[0] + 1);
        check_json(&fx, what);
        ptm_buf_init(&b, fx.p, 64);
        rv = ptm_store_run_stop(fx.st, &b);
        assert_true(rv == APR_SUCCESS || rv == PTM_STORE_NORUN);
        start_run(&fx, RUN_OBJ, "001", "/srv/t/001");
        st_close(&fx);
        apr_pool_clear(fx.p);
    }
    fx.p = top;
    fx_close(&fx);
}

/* ---- layouts ------------------------------------------------------------- */

/* `img` (this layout) as the code of layout `version` (3, 4 or 6) wrote
 * it: its header ended before `epoch` (3), before `next_n` (4) or before
 * `view_gen` (6), so everything after it sat that much lower (3 and 4
 * had no ring; the image has none either). */
static void to_layout(char *img, size_t len, unsigned version)
{
    const size_t hend = version == 3   ? offsetof(hdr_t, epoch)
                        : version == 4 ? offsetof(hdr_t, next_n)
                                       : offsetof(hdr_t, view_gen);
    const size_t shift = sizeof(hdr_t) - hend;
    hdr_t *h = H(img);
    int s;

    assert_int_equal(h->ring_size, 0);
    for (s = 0; s < 2; s++) {
        h->map[s].slots -= shift;
        h->map[s].index -= shift;
    }
    h->arena -= shift;
    h->arena_size += shift;
    h->version = version;
    memmove(img + hend, img + sizeof(hdr_t), len - sizeof(hdr_t));
    memset(img + len - shift, 0, shift);
}

/* A state of layout 3, 4 or 6 with a run and values is carried over
 * whole: the run byte for byte, the values, the counters; the file
 * becomes this layout, its ids starting at 1 (3 and 4 gave none out) or
 * going on (6). */
static void test_upgrade_layout3(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    static const unsigned versions[] = { 3, 4, 6 };
    golden_t g;
    char *img;
    int real;
    unsigned version, v;
    apr_time_t t0 = apr_time_now();

    fx_open(&fx);
    make_golden(&fx, &g);
    img = apr_palloc(fx.p, g.len);
    /* real 0: an old version number on a file of this layout (the fields
     * where both have them); real 1: the layout that version wrote. */
    for (v = 0; v < sizeof(versions) / sizeof(versions[0]); v++) {
    for (real = 0; real < 2; real++) {
        version = versions[v];
        const char *what = apr_psprintf(fx.p, "%s %u",
                                        real ? "layout" : "version",
                                        version);
        uint64_t epoch = H(g.img)->epoch;
        size_t len;
        char *now;

        memcpy(img, g.img, g.len);
        if (real) {
            to_layout(img, g.len, version);
        }
        else {
            H(img)->version = version;
        }
        write_file(fx.state, img, g.len);
        open_clean(&fx, SIZE, PTM_STORE_OPEN_UPGRADED, what);
        check_sdir_holds(&fx, "state");
        check_want(&fx, &g.w, what);
        st_close(&fx);
        now = read_file(fx.state, &len, fx.p);
        assert_int_equal(H(now)->version, LAYOUT_VERSION);
        if (version == 3) {
            /* Layout 3 had no epoch: the state gets a fresh one. */
            assert_true(H(now)->epoch >= (uint64_t)t0);
        }
        else {
            assert_int_equal(H(now)->epoch, epoch);
        }
        assert_int_equal(H(now)->next_n,
                         version < 5 ? 1 : H(g.img)->next_n);
        open_clean(&fx, SIZE, PTM_STORE_OPEN_RECOVERED, what);
        check_want(&fx, &g.w, what);
        check_usable(&fx, &g.w, what);

        /* And from the site directory, where that version kept it. */
        assert_int_equal(unlink(fx.state), 0);
        write_file(fx.legacy, img, g.len);
        open_clean(&fx, SIZE, PTM_STORE_OPEN_MIGRATED, what);
        check_want(&fx, &g.w, what);
        assert_int_equal(access(fx.legacy, F_OK), -1);
        check_usable(&fx, &g.w, what);
        assert_int_equal(unlink(fx.state), 0);
    }
    }
    /* A layout from the future, or from before 3: not ours to read. */
    memcpy(img, g.img, g.len);
    H(img)->version = LAYOUT_VERSION + 1;
    write_file(fx.state, img, g.len);
    open_as(&fx, SIZE, PTM_STORE_OPEN_UNRECOGNISED,
            apr_psprintf(fx.p, "version %u", LAYOUT_VERSION + 1));
    assert_string_equal(current(&fx), "{\"current\":{}}");
    st_close(&fx);
    H(img)->version = 2;
    write_file(fx.state, img, g.len);
    open_as(&fx, SIZE, PTM_STORE_OPEN_UNRECOGNISED, "version 2");
    fx_close(&fx);
}

/* A file of a state cut short: the header's size is not the file's. */
static void test_truncated_file(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    golden_t g;
    char *img;
    want_t w;

    fx_open(&fx);
    make_golden(&fx, &g);
    write_file(fx.state, g.img, 4096);
    open_as(&fx, SIZE, PTM_STORE_OPEN_UNRECOGNISED, "cut");
    assert_string_equal(current(&fx), "{\"current\":{}}");
    st_close(&fx);
    /* Cut, and the header made to agree: the counters are kept, no value
     * is read past the end. */
    img = apr_pmemdup(fx.p, g.img, g.len);
    H(img)->size = H(img)->arena + 64;
    write_file(fx.state, img, H(img)->size);
    w = g.w;
    drop_all(&w);
    assert_true(open_as(&fx, SIZE, PTM_STORE_OPEN_RESIZED, "cut, agreed")
                > 0);
    check_want(&fx, &w, "cut, agreed");
    check_usable(&fx, &w, "cut, agreed");
    fx_close(&fx);
}

/* ---- counters through a resize and a repair ------------------------------ */

static void check_counters(fx_t *fx, uint64_t repairs, const char *what)
{
    ptm_store_stats_t s = stats(fx);
    int i;

    if (s.write_errors != 3) {
        fail_msg("%s: write_errors %" PRIu64, what, s.write_errors);
    }
    for (i = 0; i < PTM_STORE_NSTATUS; i++) {
        int code = ptm_store_status_code(i);

        if (s.answers[i] != (uint64_t)(code == 422 ? 2 : code == 507)) {
            fail_msg("%s: %d answers %" PRIu64, what, code, s.answers[i]);
        }
    }
    assert_int_equal(s.repairs, repairs);
}

static void test_counters_kept(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    golden_t g;
    hdr_t *h;
    want_t w;

    fx_open(&fx);
    make_golden(&fx, &g);
    write_file(fx.state, g.img, g.len);
    w = g.w;

    open_as(&fx, BIG, PTM_STORE_OPEN_RESIZED, "bigger");
    check_counters(&fx, 0, "bigger");
    st_close(&fx);
    open_as(&fx, SIZE, PTM_STORE_OPEN_RESIZED, "smaller");
    check_counters(&fx, 0, "smaller");

    /* A child dies mid-update: the next lock repairs. */
    h = (hdr_t *)fx.map;
    ptm_store_begin_locked(h, PTM_STREAM_SITE, h->seq[PTM_STREAM_SITE] + 1);
    check_counters(&fx, 1, "repaired at the lock");
    w.seq[PTM_STREAM_SITE]++;               /* skipped */
    check_want(&fx, &w, "repaired at the lock");

    /* The whole httpd dies mid-update: the next start repairs. */
    h = (hdr_t *)fx.map;
    ptm_store_begin_locked(h, PTM_STREAM_RUN, h->seq[PTM_STREAM_RUN] + 1);
    st_close(&fx);
    open_as(&fx, SIZE, PTM_STORE_OPEN_RECOVERED, "repaired at start");
    check_counters(&fx, 2, "repaired at start");
    w.seq[PTM_STREAM_RUN]++;
    check_want(&fx, &w, "repaired at start");

    /* And the repair of a resized state. */
    h = (hdr_t *)fx.map;
    ptm_store_begin_locked(h, PTM_STREAM_RUN, h->seq[PTM_STREAM_RUN] + 1);
    st_close(&fx);
    open_as(&fx, BIG, PTM_STORE_OPEN_RESIZED, "repaired and resized");
    check_counters(&fx, 2, "repaired and resized");
    w.seq[PTM_STREAM_RUN]++;
    check_want(&fx, &w, "repaired and resized");
    fx_close(&fx);
}

/* ---- the state of an earlier version in the site directory --------------- */

static void test_legacy_migrated(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    struct stat sb;
    golden_t g;

    fx_open(&fx);
    make_golden(&fx, &g);
    write_file(fx.legacy, g.img, g.len);
    open_clean(&fx, SIZE, PTM_STORE_OPEN_MIGRATED, "legacy");
    check_want(&fx, &g.w, "legacy");
    assert_int_equal(lstat(fx.legacy, &sb), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(lstat(fx.state, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_mode & 07777, 0600);
    check_usable(&fx, &g.w, "legacy");

    /* With a state file, the legacy one is not read, nor removed. */
    write_file(fx.legacy, g.img, g.len);
    open_as(&fx, SIZE, PTM_STORE_OPEN_RECOVERED, "both");
    check_file_is(fx.legacy, g.img, g.len, fx.p);

    /* Of another size: carried over all the same. */
    st_close(&fx);
    assert_int_equal(unlink(fx.state), 0);
    open_clean(&fx, BIG, PTM_STORE_OPEN_MIGRATED, "bigger");
    check_want(&fx, &g.w, "legacy, bigger");
    fx_close(&fx);
}

/* What a User could plant at the legacy path: a link to a state (or to
 * anything), a FIFO, a file of its own, a second name of a file.  None is
 * read, followed or removed; the state starts afresh. */
static void test_legacy_refused(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *target;
    struct stat sb, after;
    golden_t g;
    int kind;

    fx_open(&fx);
    make_golden(&fx, &g);
    target = apr_pstrcat(fx.p, fx.outside, "/state", NULL);
    for (kind = 0; kind < 5; kind++) {
        const char *what = (const char *[]){ "a symlink", "a FIFO",
                                             "someone else's", "a hard link",
                                             "not a state" }[kind];

        write_file(target, g.img, g.len);
        switch (kind) {
        case 0:
            assert_int_equal(symlink(target, fx.legacy), 0);
            break;
        case 1:
            assert_int_equal(mkfifo(fx.legacy, 0600), 0);
            break;
        case 2:
            if (geteuid() != 0) {
                continue;               /* chown needs root */
            }
            write_file(fx.legacy, g.img, g.len);
            assert_int_equal(chown(fx.legacy, NOBODY, NOBODY), 0);
            break;
        case 3:
            assert_int_equal(link(target, fx.legacy), 0);
            break;
        case 4:
            write_file(fx.legacy, "not a state", 11);
            break;
        }
        assert_int_equal(lstat(fx.legacy, &sb), 0);
        alarm(10);                      /* a FIFO must not block */
        open_as(&fx, SIZE, PTM_STORE_OPEN_NEW, what);
        alarm(0);
        assert_string_equal(current(&fx), "{\"current\":{}}");
        st_close(&fx);
        /* Still there, the same thing, not written to. */
        assert_int_equal(lstat(fx.legacy, &after), 0);
        assert_int_equal(after.st_ino, sb.st_ino);
        assert_int_equal(after.st_mtime, sb.st_mtime);
        check_file_is(target, g.img, g.len, fx.p);
        if (kind == 2 || kind == 4) {
            check_file_is(fx.legacy, kind == 2 ? g.img : "not a state",
                          kind == 2 ? g.len : 11, fx.p);
        }
        assert_int_equal(unlink(fx.legacy), 0);
        assert_int_equal(unlink(fx.state), 0);
        check_sdir_holds(&fx, NULL);
    }
    fx_close(&fx);
}

/* ---- the state file itself ----------------------------------------------- */

static void test_state_file_refused(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const char *target, *absent, *other;
    ptm_store_open_e how;
    unsigned dropped;
    struct stat sb;
    apr_status_t rv;
    golden_t g;
    int kind;

    fx_open(&fx);
    make_golden(&fx, &g);
    target = apr_pstrcat(fx.p, fx.outside, "/precious", NULL);
    absent = apr_pstrcat(fx.p, fx.outside, "/absent", NULL);
    other = apr_pstrcat(fx.p, fx.outside, "/other-name", NULL);
    for (kind = 0; kind < 6; kind++) {
        const char *what = (const char *[]){
            "a symlink", "a dangling symlink", "a FIFO", "someone else's",
            "a hard link", "a directory" }[kind];

        write_file(target, g.img, g.len);
        switch (kind) {
        case 0:
            assert_int_equal(symlink(target, fx.state), 0);
            break;
        case 1:
            assert_int_equal(symlink(absent, fx.state), 0);
            break;
        case 2:
            assert_int_equal(mkfifo(fx.state, 0600), 0);
            break;
        case 3:
            if (geteuid() != 0) {
                continue;               /* chown needs root */
            }
            write_file(fx.state, g.img, g.len);
            assert_int_equal(chown(fx.state, NOBODY, NOBODY), 0);
            break;
        case 4:
            write_file(fx.state, g.img, g.len);
            assert_int_equal(link(fx.state, other), 0);
            break;
        case 5:
            assert_int_equal(mkdir(fx.state, 0700), 0);
            break;
        }
        alarm(10);                      /* a FIFO must not block */
        rv = st_open(&fx, SIZE, &how, &dropped);
        alarm(0);
        if (rv == APR_SUCCESS) {
            fail_msg("%s: opened (as %d)", what, how);
        }
        if (kind <= 1 ? rv != APR_FROM_OS_ERROR(ELOOP)
            : kind == 5 ? rv != APR_FROM_OS_ERROR(EISDIR)
            : rv != APR_FROM_OS_ERROR(EPERM)) {
            fail_msg("%s: status %d (%s)", what, rv, strerror(rv));
        }
        /* Nothing written, nothing made through the link. */
        check_file_is(target, g.img, g.len, fx.p);
        assert_int_equal(lstat(absent, &sb), -1);
        if (kind == 3 || kind == 4) {
            check_file_is(fx.state, g.img, g.len, fx.p);
        }
        assert_int_equal(lstat(fx.state, &sb), 0);
        assert_true(kind <= 1 ? S_ISLNK(sb.st_mode)
                    : kind == 2 ? S_ISFIFO(sb.st_mode)
                    : kind == 5 ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode));
        check_sdir_holds(&fx, "state");
        assert_int_equal(remove(fx.state), 0);
        unlink(other);
    }

    /* A state.new planted as a link is replaced, not followed. */
    assert_int_equal(symlink(target, apr_pstrcat(fx.p, fx.state, ".new",
                                                 NULL)), 0);
    open_as(&fx, SIZE, PTM_STORE_OPEN_NEW, "state.new a symlink");
    check_file_is(target, g.img, g.len, fx.p);
    check_sdir_holds(&fx, "state");
    assert_int_equal(lstat(fx.state, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_mode & 07777, 0600);
    fx_close(&fx);
}

/* ---- the state directory ------------------------------------------------- */

/* ptm_store_prepare_dir(`dir`) gives `want` (an APR status). */
static void check_prepare(fx_t *fx, const char *dir, apr_status_t want,
                          const char *what)
{
    const char *why = NULL;
    apr_status_t rv = ptm_store_prepare_dir(&why, dir, fx->p);

    if (rv != want) {
        fail_msg("%s: prepare_dir(%s): status %d (%s), want %d", what, dir,
                 rv, why ? why : "-", want);
    }
    if (rv != APR_SUCCESS && (!why || !*why)) {
        fail_msg("%s: refused without saying why", what);
    }
}

static char *mkdir_mode(fx_t *fx, const char *name, mode_t mode)
{
    char *d = apr_pstrcat(fx->p, fx->top, "/", name, NULL);

    assert_int_equal(mkdir(d, 0700), 0);
    assert_int_equal(chmod(d, mode), 0);
    return d;
}

static void test_prepare_dir(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    char *d, *pub, *sticky, *safe, *link_;
    struct stat sb;
    const char *p;

    fx_open(&fx);
    /* The scratch top is 0700 under /tmp (sticky): fine on the way. */
    assert_int_equal(stat(fx.top, &sb), 0);
    check_prepare(&fx, fx.top, APR_SUCCESS, "the scratch dir");

    /* Made when missing, every level 0700 whatever the umask. */
    umask(0);
    d = apr_pstrcat(fx.p, fx.top, "/a/b/c", NULL);
    check_prepare(&fx, d, APR_SUCCESS, "missing");
    umask(022);
    for (p = d; strlen(p) > strlen(fx.top); ) {
        assert_int_equal(lstat(p, &sb), 0);
        assert_true(S_ISDIR(sb.st_mode));
        assert_int_equal(sb.st_mode & 07777, 0700);
        assert_int_equal(sb.st_uid, geteuid());
        p = apr_pstrndup(fx.p, p, strrchr(p, '/') - p);
    }
    check_prepare(&fx, d, APR_SUCCESS, "there");
    check_prepare(&fx, "relative/dir", APR_EINVAL, "relative");

    /* Writable by group or others: refused, as the dir or on the way. */
    pub = mkdir_mode(&fx, "pub", 0777);
    check_prepare(&fx, pub, APR_FROM_OS_ERROR(EPERM), "0777");
    check_prepare(&fx, apr_pstrcat(fx.p, pub, "/x", NULL),
                  APR_FROM_OS_ERROR(EPERM), "under 0777");
    check_prepare(&fx, mkdir_mode(&fx, "grp", 0770),
                  APR_FROM_OS_ERROR(EPERM), "0770");
    check_prepare(&fx, mkdir_mode(&fx, "oth", 0702),
                  APR_FROM_OS_ERROR(EPERM), "0702");

    /* Sticky like /tmp: fine on the way, not as the state dir itself. */
    sticky = mkdir_mode(&fx, "sticky", 01777);
    check_prepare(&fx, sticky, APR_FROM_OS_ERROR(EPERM), "sticky itself");
    check_prepare(&fx, apr_pstrcat(fx.p, sticky, "/s", NULL), APR_SUCCESS,
                  "under sticky");

    /* Someone else's. */
    if (geteuid() == 0) {
        d = mkdir_mode(&fx, "nobody", 0755);
        assert_int_equal(chown(d, NOBODY, NOBODY), 0);
        check_prepare(&fx, d, APR_FROM_OS_ERROR(EPERM), "nobody's");
        check_prepare(&fx, apr_pstrcat(fx.p, d, "/x", NULL),
                      APR_FROM_OS_ERROR(EPERM), "under nobody's");
    }

    /* Links of ours on the way are followed; what they lead to is what
     * gets checked. */
    safe = mkdir_mode(&fx, "safe", 0700);
    link_ = apr_pstrcat(fx.p, fx.top, "/link", NULL);
    assert_int_equal(symlink("safe", link_), 0);
    check_prepare(&fx, link_, APR_SUCCESS, "a link of ours");
    check_prepare(&fx, apr_pstrcat(fx.p, link_, "/sub", NULL), APR_SUCCESS,
                  "under a link of ours");
    assert_int_equal(stat(apr_pstrcat(fx.p, safe, "/sub", NULL), &sb), 0);
    d = apr_pstrcat(fx.p, fx.top, "/link-to-pub", NULL);
    assert_int_equal(symlink(pub, d), 0);
    check_prepare(&fx, d, APR_FROM_OS_ERROR(EPERM), "a link to 0777");

    /* A link in a directory others can write: they can point it anywhere
     * after the check, so it is refused, and nothing is made through it
     * (mkdir -p included). */
    assert_int_equal(symlink(safe, apr_pstrcat(fx.p, pub, "/l", NULL)), 0);
    check_prepare(&fx, apr_pstrcat(fx.p, pub, "/l", NULL),
                  APR_FROM_OS_ERROR(EPERM), "a link in 0777");
    check_prepare(&fx, apr_pstrcat(fx.p, pub, "/l/made", NULL),
                  APR_FROM_OS_ERROR(EPERM), "under a link in 0777");
    assert_int_equal(lstat(apr_pstrcat(fx.p, safe, "/made", NULL), &sb), -1);

    /* In a sticky directory, a link of someone else's: its owner can
     * replace it. */
    if (geteuid() == 0) {
        d = apr_pstrcat(fx.p, sticky, "/theirs", NULL);
        assert_int_equal(symlink(safe, d), 0);
        assert_int_equal(lchown(d, NOBODY, NOBODY), 0);
        check_prepare(&fx, d, APR_FROM_OS_ERROR(EPERM), "someone's link");
        check_prepare(&fx, apr_pstrcat(fx.p, d, "/made", NULL),
                      APR_FROM_OS_ERROR(EPERM), "under someone's link");
        assert_int_equal(lstat(apr_pstrcat(fx.p, safe, "/made", NULL), &sb),
                         -1);
    }

    /* A file, not a directory. */
    write_file(apr_pstrcat(fx.p, fx.top, "/file", NULL), "x", 1);
    d = apr_pstrcat(fx.p, fx.top, "/file", NULL);
    {
        const char *why = NULL;

        assert_int_not_equal(ptm_store_prepare_dir(&why, d, fx.p),
                             APR_SUCCESS);
        assert_non_null(why);
    }
    fx_close(&fx);
}

/* ---- every block allocated ----------------------------------------------- */

static void check_allocated(const char *path, apr_size_t size)
{
    struct stat sb;

    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal((apr_size_t)sb.st_size, size);
    if ((apr_size_t)sb.st_blocks * 512 < size) {
        fail_msg("%s: %lld bytes allocated of %zu", path,
                 (long long)sb.st_blocks * 512, (size_t)size);
    }
}

/* A sparse state file (what ftruncate made before) has its holes filled
 * when it is opened; new and resized files are whole from the start. */
static void test_fallocate_sparse(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    struct stat sb;
    golden_t g;
    size_t used;
    int fd;

    fx_open(&fx);
    make_golden(&fx, &g);
    used = (size_t)(H(g.img)->arena + H(g.img)->top);
    fd = open(fx.state, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)g.len), 0);
    assert_int_equal(pwrite(fd, g.img, used, 0), (ssize_t)used);
    assert_int_equal(close(fd), 0);
    assert_int_equal(stat(fx.state, &sb), 0);
    if ((apr_size_t)sb.st_blocks * 512 >= g.len) {
        skip();                         /* a file system without holes */
    }
    open_clean(&fx, SIZE, PTM_STORE_OPEN_RECOVERED, "sparse");
    check_allocated(fx.state, SIZE);
    check_want(&fx, &g.w, "sparse");
    st_close(&fx);
    open_as(&fx, 4 * SIZE, PTM_STORE_OPEN_RESIZED, "resized");
    check_allocated(fx.state, 4 * SIZE);
    st_close(&fx);
    assert_int_equal(unlink(fx.state), 0);
    open_as(&fx, 4 * SIZE, PTM_STORE_OPEN_NEW, "new");
    check_allocated(fx.state, 4 * SIZE);
    fx_close(&fx);
}

/* On a full file system a state that does not fit is refused at start
 * (ENOSPC), and leaves nothing behind: no state.new, the old state as it
 * was.  Needs root (mount). */
static void test_fallocate_full_fs(void **state)
{
    static fx_t fx;     /* outlives a failed test for its teardown */
    const apr_size_t big = 4 * 1024 * 1024;
    ptm_store_open_e how;
    unsigned dropped;
    apr_status_t rv;
    golden_t g;
    char *mnt;

    fx_open(&fx);
    make_golden(&fx, &g);
    mnt = apr_pstrcat(fx.p, fx.top, "/mnt", NULL);
    assert_int_equal(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m,mode=0700") != 0) {
        fprintf(stderr, "    (no tmpfs: mount needs root and CAP_SYS_ADMIN: "
                "%s; skipped)\n", strerror(errno));
        skip();
    }
    fx.mnt = mnt;
    fx.sdir = apr_pstrcat(fx.p, mnt, "/state", NULL);
    fx.state = apr_pstrcat(fx.p, fx.sdir, "/state", NULL);
    assert_int_equal(mkdir(fx.sdir, 0700), 0);

    /* No state yet: refused, nothing made. */
    rv = st_open(&fx, big, &how, &dropped);
    assert_int_equal(rv, APR_FROM_OS_ERROR(ENOSPC));
    check_sdir_holds(&fx, NULL);

    /* The old state stays as it was when the new size does not fit. */
    write_file(fx.state, g.img, g.len);
    rv = st_open(&fx, big, &how, &dropped);
    assert_int_equal(rv, APR_FROM_OS_ERROR(ENOSPC));
    check_sdir_holds(&fx, "state");
    check_file_is(fx.state, g.img, g.len, fx.p);

    /* And it still opens at its own size. */
    open_clean(&fx, SIZE, PTM_STORE_OPEN_RECOVERED, "fits");
    check_want(&fx, &g.w, "fits");
    check_allocated(fx.state, SIZE);
    fx_close(&fx);
}

#define T(f) cmocka_unit_test_teardown(f, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_valid_state_kept),
        T(test_crafted_header),
        T(test_crafted_run),
        T(test_crafted_values),
        T(test_crafted_keys_and_envelopes),
        T(test_crafted_nesting),
        T(test_odd_types_kept),
        T(test_random_damage),
        T(test_upgrade_layout3),
        T(test_truncated_file),
        T(test_counters_kept),
        T(test_legacy_migrated),
        T(test_legacy_refused),
        T(test_state_file_refused),
        T(test_prepare_dir),
        T(test_fallocate_sparse),
        T(test_fallocate_full_fs),
    };

    if (getenv("PTM_TEST_FILTER")) {
        cmocka_set_test_filter(getenv("PTM_TEST_FILTER"));
    }
    return cmocka_run_group_tests_name("ptm_statefile", tests, group_setup,
                                       group_teardown);
}

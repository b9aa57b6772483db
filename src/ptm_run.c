/* Run ids and run directories; see ptm_run.h. */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include "ptm_run.h"

/* Decimal strings are compared and incremented as text, so a directory
 * named with thirty digits cannot overflow anything (Python's int would
 * not either). */
static int all_ascii_digits(const char *s)
{
    if (!*s) {
        return 0;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return 0;
        }
    }
    return 1;
}

static int dec_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen) {
        return alen < blen ? -1 : 1;
    }
    return memcmp(a, b, alen);
}

apr_status_t ptm_run_derive_id(const char **id, const char *site_dir,
                               apr_pool_t *p)
{
    DIR *d;
    struct dirent *de;
    struct stat st;
    const char *max = NULL;
    size_t max_len = 0, width = 3, n, i;
    char *next;
    int carry;

    d = opendir(site_dir);
    if (!d) {
        return APR_FROM_OS_ERROR(errno);
    }
    while ((de = readdir(d)) != NULL) {
        const char *v = de->d_name;

        if (!all_ascii_digits(v)) {
            continue;
        }
        /* Directories only, following symlinks like Path.is_dir(). */
        if (stat(apr_pstrcat(p, site_dir, "/", v, NULL), &st) != 0
            || !S_ISDIR(st.st_mode)) {
            continue;
        }
        while (v[0] == '0' && v[1]) {
            v++;                        /* str(int(name)) */
        }
        n = strlen(v);
        if (n > width) {
            width = n;
        }
        if (!max || dec_cmp(v, n, max, max_len) > 0) {
            max = apr_pstrdup(p, v);
            max_len = n;
        }
    }
    closedir(d);
    if (!max) {
        *id = "001";
        return APR_SUCCESS;
    }
    /* max + 1, as text, one spare digit for 999 -> 1000. */
    next = apr_palloc(p, max_len + 2);
    next[0] = '0';
    memcpy(next + 1, max, max_len + 1);
    carry = 1;
    for (i = max_len; carry && i > 0; i--) {
        if (next[i] == '9') {
            next[i] = '0';
        }
        else {
            next[i]++;
            carry = 0;
        }
    }
    if (carry) {
        next[0] = '1';
    }
    else {
        next++;
    }
    n = strlen(next);
    if (n >= width) {
        *id = next;
    }
    else {
        char *z = apr_palloc(p, width + 1);

        memset(z, '0', width - n);
        memcpy(z + width - n, next, n + 1);
        *id = z;
    }
    return APR_SUCCESS;
}

int ptm_run_id_has_control(const char *id, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];

        if (c < 0x20 || c == 0x7f) {
            return 1;
        }
    }
    return 0;
}

int ptm_run_name_is_reserved(const char *name, size_t len)
{
    static const char pre[] = "site_", suf[] = ".ndjson";
    size_t np = sizeof(pre) - 1, ns = sizeof(suf) - 1;

    if (len > 0 && name[0] == '.') {
        return 1;
    }
    return len >= np + ns && memcmp(name, pre, np) == 0
           && memcmp(name + len - ns, suf, ns) == 0;
}

int ptm_run_id_is_segment(const char *id, size_t len)
{
    size_t i;

    if (len == 0 || len > PTM_RUN_ID_MAX) {
        return 0;
    }
    if ((len == 1 && id[0] == '.') || (len == 2 && id[0] == '.' && id[1] == '.')) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];

        if (c == '/' || c < 0x20 || c == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* Join `base` and `rel` and normalise like pathlib: empty and "."
 * segments go, ".." stays.  With `resolve`, ".." eats the previous segment
 * instead; *escaped is set when it would climb above the root. */
static char *normalise(const char *path, int resolve, int *escaped,
                       apr_pool_t *p)
{
    size_t n = strlen(path), o = 0;
    char *out = apr_palloc(p, n + 2);
    const char *s = path, *e;
    int absolute = path[0] == '/';

    if (escaped) {
        *escaped = 0;
    }
    while (*s) {
        size_t len;

        while (*s == '/') {
            s++;
        }
        e = s;
        while (*e && *e != '/') {
            e++;
        }
        len = (size_t)(e - s);
        if (len == 0 || (len == 1 && s[0] == '.')) {
            s = e;
            continue;
        }
        if (resolve && len == 2 && s[0] == '.' && s[1] == '.') {
            if (o == 0) {
                if (escaped) {
                    *escaped = 1;
                }
            }
            else {
                while (o > 0 && out[o - 1] != '/') {
                    o--;
                }
                if (o > 0) {
                    o--;                /* the '/' before the segment */
                }
            }
            s = e;
            continue;
        }
        if (o > 0 || absolute) {
            out[o++] = '/';
        }
        memcpy(out + o, s, len);
        o += len;
        s = e;
    }
    if (o == 0) {
        out[o++] = absolute ? '/' : '.';
    }
    out[o] = '\0';
    return out;
}

const char *ptm_run_normalise(const char *path, apr_pool_t *p)
{
    return normalise(path, 0, NULL, p);
}

/* 1 if normalised absolute `path` is `root` or below it. */
static int is_within(const char *path, const char *root)
{
    size_t n = strlen(root);

    if (n == 1 && root[0] == '/') {
        return 1;
    }
    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* 1 if `dir` (`len` bytes of a normalised absolute path) is `area`, below
 * it, or one of its ancestors. */
static int on_way_to(const char *dir, size_t len, const char *area)
{
    size_t n = strlen(area);

    if (n == 1 && area[0] == '/') {
        return 1;
    }
    if (len >= n) {
        return strncmp(dir, area, n) == 0 && (len == n || dir[n] == '/');
    }
    return strncmp(dir, area, len) == 0 && area[len] == '/';
}

/* A walk down an absolute path with ".." taken textually, one component
 * at a time, in one pass (run_dir is client input of any length): `res`
 * holds the path walked so far, `o` bytes of it. */
typedef struct {
    const char *s;
    char *res;
    size_t o;
} walk_t;

enum { WALK_END, WALK_DOWN, WALK_UP };

static void walk_init(walk_t *w, const char *path, apr_pool_t *p)
{
    w->s = path;
    w->res = apr_palloc(p, strlen(path) + 2);
    w->o = 0;
}

/* The next step: WALK_DOWN once a component is added to `res`, WALK_UP at
 * a ".." (`res` still as it was: walk_up takes its last component off), or
 * WALK_END.  Empty and "." components are skipped. */
static int walk_next(walk_t *w)
{
    while (*w->s) {
        const char *b, *e;
        size_t len;

        while (*w->s == '/') {
            w->s++;
        }
        for (b = e = w->s; *e && *e != '/'; e++) {
        }
        len = (size_t)(e - b);
        w->s = e;
        if (len == 2 && b[0] == '.' && b[1] == '.') {
            return WALK_UP;
        }
        if (len > 0 && !(len == 1 && b[0] == '.')) {
            w->res[w->o++] = '/';
            memcpy(w->res + w->o, b, len);
            w->o += len;
            return WALK_DOWN;
        }
    }
    return WALK_END;
}

static void walk_up(walk_t *w)
{
    while (w->o > 0 && w->res[w->o - 1] != '/') {
        w->o--;
    }
    if (w->o > 0) {
        w->o--;
    }
}

/* mkdir -p of the reported path makes each directory on the way before it
 * follows the ".." after it, so a run_dir that ends up inside can still
 * create one outside: "../x/../site/r" makes x beside the site dir.  Every
 * directory on the way (".." resolved) must therefore be inside the site
 * dir or a root, or be an ancestor of one of them.  One pass: run_dir is
 * client input of any length.  (Symlinks are not looked at; the site dir
 * and the roots are the admin's.) */
static int way_is_inside(const char *path, const char *site_real,
                         const apr_array_header_t *roots, apr_pool_t *p)
{
    walk_t w;
    int k, i, ok;

    walk_init(&w, path, p);
    while ((k = walk_next(&w)) != WALK_END) {
        if (k == WALK_UP) {
            walk_up(&w);
            continue;
        }
        ok = on_way_to(w.res, w.o, site_real);
        for (i = 0; !ok && roots && i < roots->nelts; i++) {
            ok = on_way_to(w.res, w.o, APR_ARRAY_IDX(roots, i, const char *));
        }
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* The roots with their ".." resolved, as the real paths are compared with
 * them (NULL when there are none). */
static apr_array_header_t *real_roots(const apr_array_header_t *roots,
                                      apr_pool_t *p)
{
    apr_array_header_t *out;
    int i;

    if (!roots || roots->nelts == 0) {
        return NULL;
    }
    out = apr_array_make(p, roots->nelts, sizeof(const char *));
    for (i = 0; i < roots->nelts; i++) {
        APR_ARRAY_PUSH(out, const char *) =
            normalise(APR_ARRAY_IDX(roots, i, const char *), 1, NULL, p);
    }
    return out;
}

/* The first component of `real` below `site_real` when it is a name the
 * module keeps for itself, else NULL. */
static const char *reserved_below(const char *real, const char *site_real,
                                  apr_pool_t *p)
{
    size_t n = strlen(site_real), len;
    const char *first;

    if (!is_within(real, site_real)) {
        return NULL;
    }
    first = real + (n == 1 ? 0 : n);
    if (*first != '/') {
        return NULL;                    /* the site dir itself */
    }
    first++;
    len = strcspn(first, "/");
    return ptm_run_name_is_reserved(first, len)
           ? apr_pstrmemdup(p, first, len) : NULL;
}

apr_array_header_t *ptm_run_detours(const char *path, apr_pool_t *p)
{
    apr_array_header_t *out = apr_array_make(p, 2, sizeof(const char *));
    apr_hash_t *seen = apr_hash_make(p);
    walk_t w;
    int k;

    /* Each detour once ("a/../" a hundred thousand times is one). */
    walk_init(&w, path, p);
    while ((k = walk_next(&w)) != WALK_END) {
        if (k != WALK_UP) {
            continue;
        }
        if (w.o > 0 && !apr_hash_get(seen, w.res, (apr_ssize_t)w.o)) {
            const char *d = apr_pstrmemdup(p, w.res, w.o);

            apr_hash_set(seen, d, (apr_ssize_t)w.o, d);
            APR_ARRAY_PUSH(out, const char *) = d;
        }
        walk_up(&w);
    }
    return out;
}

const char *ptm_run_resolve_dir(const char **real, const char **why,
                                const char *site_dir,
                                const apr_array_header_t *roots,
                                const char *run_dir, size_t run_dir_len,
                                const char *run_id, apr_pool_t *p)
{
    const char *joined, *reported, *resolved, *site_real, *own = NULL;
    apr_array_header_t *rroots;
    int escaped, i;

    *why = NULL;
    if (real) {
        *real = NULL;
    }
    if (!run_dir) {
        /* run_id was checked to be one safe segment. */
        reported = apr_pstrcat(p, site_dir, "/", run_id, NULL);
        if (real) {
            *real = normalise(reported, 1, NULL, p);
        }
        return reported;
    }
    if (memchr(run_dir, '\0', run_dir_len)) {
        *why = "run_dir must not contain NUL";
        return NULL;
    }
    joined = run_dir[0] == '/' ? run_dir
                               : apr_pstrcat(p, site_dir, "/", run_dir, NULL);
    reported = normalise(joined, 0, NULL, p);
    if (strlen(reported) > PTM_RUN_DIR_MAX) {
        /* The walk beneath a root could make it, but no path could name
         * it (nor its file): not the client, not the start-up look at the
         * run's last seq. */
        *why = apr_psprintf(p, "run_dir is too long: the run directory "
                            "would be %" APR_SIZE_T_FMT " bytes, at most %d",
                            strlen(reported), PTM_RUN_DIR_MAX);
        return NULL;
    }
    resolved = normalise(joined, 1, &escaped, p);
    site_real = normalise(site_dir, 1, NULL, p);
    rroots = real_roots(roots, p);
    if (!escaped && way_is_inside(joined, site_real, rroots, p)) {
        int inside = is_within(resolved, site_real);

        for (i = 0; !inside && rroots && i < rroots->nelts; i++) {
            inside = is_within(resolved, APR_ARRAY_IDX(rroots, i,
                                                       const char *));
        }
        if (inside) {
            /* mkdir -p of the reported path makes the detours too: each
             * is walked from its root, under the store lock, so there may
             * not be many of them. */
            apr_array_header_t *detours = ptm_run_detours(reported, p);

            if (detours->nelts > PTM_RUN_DETOURS_MAX) {
                *why = apr_psprintf(p, "run_dir must not make more than %d "
                                    "detours through '..'",
                                    PTM_RUN_DETOURS_MAX);
                return NULL;
            }
            own = reserved_below(resolved, site_real, p);
            for (i = 0; !own && i < detours->nelts; i++) {
                own = reserved_below(APR_ARRAY_IDX(detours, i, const char *),
                                     site_real, p);
            }
        }
        if (inside && own) {
            *why = apr_pstrcat(p, "run_dir must not take a name the module "
                               "keeps in the site directory (site_*.ndjson, "
                               "or beginning with '.'): ", own, NULL);
            return NULL;
        }
        if (inside) {
            if (real) {
                *real = resolved;
            }
            return reported;
        }
    }
    *why = apr_pstrcat(p, "run_dir must be inside the site directory ",
                       site_dir, NULL);
    for (i = 0; roots && i < roots->nelts; i++) {
        *why = apr_pstrcat(p, *why, i ? ", " : " or a PanoptesTelemetryRunRoot: ",
                           APR_ARRAY_IDX(roots, i, const char *), NULL);
    }
    return NULL;
}

apr_status_t ptm_run_split_dir(const char **root, const char **rel,
                               const char *dir, const char *site_dir,
                               const apr_array_header_t *roots,
                               apr_pool_t *p)
{
    const char *real = normalise(dir, 1, NULL, p);
    const char *site_real = normalise(site_dir, 1, NULL, p);
    apr_array_header_t *rroots = real_roots(roots, p);
    const char *best = NULL;
    size_t n;
    int i;

    /* The site dir first: it is where the module lives, and its own path
     * is opened as configured anyway.  Otherwise the outermost root: one
     * inside another lies in a directory the User can write to. */
    if (real[0] != '/') {
        *root = *rel = NULL;
        return APR_EINVAL;
    }
    if (is_within(real, site_real)) {
        best = site_real;
    }
    for (i = 0; best != site_real && rroots && i < rroots->nelts; i++) {
        const char *r = APR_ARRAY_IDX(rroots, i, const char *);

        if (is_within(real, r) && (!best || strlen(r) < strlen(best))) {
            best = r;
        }
    }
    if (!best) {
        *root = *rel = NULL;
        return APR_EINVAL;
    }
    n = strlen(best);
    *root = best;
    *rel = real + (n == 1 ? 1 : n + (real[n] == '/'));
    return APR_SUCCESS;
}

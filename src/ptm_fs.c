/* Walking beneath a root without following links, and mkdir -p; see
 * ptm_fs.h. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <apr_strings.h>
#include "ptm_fs.h"

/* O_PATH needs only search permission on a directory, like the path
 * lookups it replaces (O_RDONLY would also need read permission). */
#ifdef O_PATH
#define ROOT_FLAGS (O_PATH | O_DIRECTORY | O_CLOEXEC)
#else
#define ROOT_FLAGS (O_RDONLY | O_DIRECTORY | O_CLOEXEC)
#endif
#define DIR_FLAGS (ROOT_FLAGS | O_NOFOLLOW)

apr_status_t ptm_fs_mkdirs(const char *dir, apr_pool_t *p)
{
    struct stat st;
    char *path, *s;

    if (stat(dir, &st) == 0) {
        return S_ISDIR(st.st_mode) ? APR_SUCCESS : APR_ENOTDIR;
    }
    path = apr_pstrdup(p, dir);
    /* Walk down from the top, creating what is missing.  EEXIST is fine
     * (another child may race us); the final stat decides. */
    for (s = path + 1; ; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;

            *s = '\0';
            if (mkdir(path, 0777) != 0 && errno != EEXIST) {
                return APR_FROM_OS_ERROR(errno);
            }
            *s = c;
            if (c == '\0') {
                break;
            }
        }
    }
    if (stat(dir, &st) != 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    return S_ISDIR(st.st_mode) ? APR_SUCCESS : APR_ENOTDIR;
}

/* Why opening `name` in `dfd` as a directory failed with `err`: the
 * kernel says ENOTDIR (or ELOOP without O_PATH) for a link too. */
static apr_status_t classify(int dfd, const char *name, int err)
{
    struct stat st;

    if ((err == ENOTDIR || err == ELOOP)
        && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
            return PTM_FS_LINK;
        }
        if (!S_ISDIR(st.st_mode)) {
            return APR_ENOTDIR;
        }
    }
    return APR_FROM_OS_ERROR(err);
}

/* `root` joined with `rel` up to `end`: where a walk stopped. */
static const char *walked(const char *root, const char *rel,
                          const char *end, apr_pool_t *p)
{
    return apr_pstrcat(p, root, strcmp(root, "/") ? "/" : "",
                       apr_pstrmemdup(p, rel, (apr_size_t)(end - rel)), NULL);
}

/* 1 if the component [s, e) is "." or "..". */
static int is_dots(const char *s, const char *e)
{
    return (e - s == 1 && s[0] == '.')
           || (e - s == 2 && s[0] == '.' && s[1] == '.');
}

apr_status_t ptm_fs_open_dir(int *fd, const char **bad, const char *root,
                             const char *rel, int create, apr_pool_t *p)
{
    const char *s, *e = rel;
    apr_status_t rv;
    int dfd, next;

    *fd = -1;
    *bad = NULL;
    /* "." and ".." first, so that a refused walk has made nothing. */
    for (s = rel; *s; s = e) {
        while (*s == '/') {
            s++;
        }
        for (e = s; *e && *e != '/'; e++) {
        }
        if (is_dots(s, e)) {
            *bad = walked(root, rel, e, p);
            return APR_EINVAL;
        }
    }
    dfd = open(root, ROOT_FLAGS);
    if (dfd < 0 && errno == ENOENT && create) {
        /* The root's own path is the admin's: links on it are his. */
        if ((rv = ptm_fs_mkdirs(root, p)) != APR_SUCCESS) {
            *bad = root;
            return rv;
        }
        dfd = open(root, ROOT_FLAGS);
    }
    if (dfd < 0) {
        *bad = root;
        return APR_FROM_OS_ERROR(errno);
    }
    for (s = e = rel; *s; s = e) {
        char *name;
        size_t len;

        while (*s == '/') {
            s++;
        }
        for (e = s; *e && *e != '/'; e++) {
        }
        len = (size_t)(e - s);
        if (len == 0) {
            break;
        }
        name = apr_pstrmemdup(p, s, len);
        next = openat(dfd, name, DIR_FLAGS);
        if (next < 0 && errno == ENOENT && create) {
            /* EEXIST: someone else made it first, or put something else
             * there; the open below looks at what it is. */
            if (mkdirat(dfd, name, 0777) != 0 && errno != EEXIST) {
                rv = APR_FROM_OS_ERROR(errno);
                goto fail;
            }
            next = openat(dfd, name, DIR_FLAGS);
        }
        if (next < 0) {
            rv = classify(dfd, name, errno);
            goto fail;
        }
        close(dfd);
        dfd = next;
    }
    *fd = dfd;
    return APR_SUCCESS;

fail:
    close(dfd);
    *bad = walked(root, rel, e, p);
    return rv;
}

const char *ptm_fs_describe(apr_status_t rv, const char *path,
                            apr_pool_t *p)
{
    char buf[120];

    if (rv == PTM_FS_LINK) {
        return apr_pstrcat(p, path, " is a symbolic link (not followed)",
                           NULL);
    }
    if (rv == APR_ENOTDIR) {
        return apr_pstrcat(p, path, " is not a directory", NULL);
    }
    return apr_pstrcat(p, path, ": ", apr_strerror(rv, buf, sizeof(buf)),
                       NULL);
}

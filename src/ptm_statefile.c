/* The state file: the segment is a shared mapping of a file, so that the
 * state outlives httpd (stop and start, crashes).
 *
 * httpd's parent opens it as root, before the children exist, so it lives
 * in a directory only root can write (PanoptesTelemetryStateDir), is
 * opened without following links and must be a regular file of ours.
 * Every block of it is allocated before it is mapped: a store into a hole
 * of a sparse file on a full disk raises SIGBUS in whoever makes it.
 * A file of another size or layout, or one found in the site directory
 * where earlier versions kept it, is carried over into a new file that
 * replaces it with rename(), so a failure half-way leaves the old one. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <apr_strings.h>
#include "ptm_store_int.h"

/* Oldest layout whose header we can still read (its fields up to
 * `answers` are where layout 5 has them). */
#define OLDEST_LAYOUT 3u

/* Read a whole file of `size` bytes into memory; NULL when it cannot be
 * read (or changed size meanwhile). */
static hdr_t *slurp(int fd, off_t size)
{
    char *buf;
    off_t got = 0;

    if (size < (off_t)sizeof(hdr_t) || (uint64_t)size > SIZE_MAX
        || !(buf = malloc((size_t)size))) {
        return NULL;
    }
    while (got < size) {
        ssize_t n = pread(fd, buf + got, (size_t)(size - got), got);

        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            free(buf);
            return NULL;
        }
        got += n;
    }
    return (hdr_t *)buf;
}

/* 1 if `h` (of `size` bytes) is a state of a layout we can carry over. */
static int readable(const hdr_t *h, off_t size)
{
    return h->magic == MAGIC && h->version >= OLDEST_LAYOUT
           && h->version <= LAYOUT_VERSION && (off_t)h->size == size;
}

/* 1 if the open file `fd` is a regular file of ours that no other name
 * reaches. */
static int ours(int fd, struct stat *sb)
{
    return fstat(fd, sb) == 0 && S_ISREG(sb->st_mode)
           && sb->st_uid == geteuid() && sb->st_nlink == 1;
}

/* Make `name` in `dfd` a new file of `size` allocated bytes, holding a
 * fresh state filled from `old` (of `old_size` bytes) if given, and map
 * it.  Written as `name`.new and renamed over `name`. */
static apr_status_t create(void **base, unsigned *lost, int dfd,
                           const char *name, apr_size_t size,
                           apr_size_t ring, const hdr_t *old,
                           uint64_t old_size, apr_pool_t *p)
{
    const char *tmp = apr_pstrcat(p, name, ".new", NULL);
    ptm_store_t *st;
    void *map;
    int fd, err;

    if (unlinkat(dfd, tmp, 0) != 0 && errno != ENOENT) {
        return APR_FROM_OS_ERROR(errno);
    }
    fd = openat(dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                0600);
    if (fd < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    if ((err = posix_fallocate(fd, 0, (off_t)size)) != 0) {
        goto fail;
    }
    map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        err = errno;
        goto fail;
    }
    ptm_store_format(map, size, ring);
    st = ptm_store_attach(map, NULL, p);
    *lost = old ? ptm_repair_copy(st, old, old_size) : 0;
    if (renameat(dfd, tmp, dfd, name) != 0) {
        err = errno;
        munmap(map, size);
        goto fail;
    }
    close(fd);                  /* the mapping keeps the file */
    *base = map;
    return APR_SUCCESS;

fail:
    close(fd);
    unlinkat(dfd, tmp, 0);
    return APR_FROM_OS_ERROR(err);
}

/* The state a version before this one kept in the site directory (a
 * directory the User can write): read it, never write it, never follow a
 * link to it.  NULL when there is none worth carrying over. */
static hdr_t *read_legacy(off_t *size, struct stat *sb,
                          const char *legacy)
{
    hdr_t *old = NULL;
    int fd;

    if (!legacy) {
        return NULL;
    }
    fd = open(legacy, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    /* Made by root (0600): anything else was planted. */
    if (ours(fd, sb) && (old = slurp(fd, sb->st_size)) != NULL
        && !readable(old, sb->st_size)) {
        free(old);
        old = NULL;
    }
    close(fd);
    *size = old ? sb->st_size : 0;
    return old;
}

apr_status_t ptm_store_open_file(void **base, int *fd_out,
                                 ptm_store_open_e *how, unsigned *dropped,
                                 const char *path, const char *legacy,
                                 apr_size_t size, apr_size_t ring,
                                 apr_pool_t *p)
{
    const char *slash = strrchr(path, '/');
    const char *dir = slash ? (slash == path ? "/"
                               : apr_pstrmemdup(p, path, slash - path))
                            : ".";
    const char *name = slash ? slash + 1 : path;
    struct stat sb;
    hdr_t *old = NULL;
    off_t old_size = 0;
    unsigned lost = 0;
    apr_status_t rv;
    void *map;
    int dfd, fd, err;

    *how = PTM_STORE_OPEN_NEW;
    if (dropped) {
        *dropped = 0;
    }
    if (size < PTM_STORE_MIN_SIZE || !*name) {
        return APR_EINVAL;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    /* One httpd per state: a second one would bring its own mutex.  The
     * directory is locked, not the file: the file may be replaced. */
    if (flock(dfd, LOCK_EX | LOCK_NB) != 0) {
        err = errno == EWOULDBLOCK ? EBUSY : errno;
        close(dfd);
        return APR_FROM_OS_ERROR(err);
    }
    fd = openat(dfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT) {
        rv = APR_FROM_OS_ERROR(errno);
        goto out;
    }
    if (fd >= 0 && !ours(fd, &sb)) {
        /* A FIFO, a device, someone else's file, a hard link. */
        close(fd);
        rv = APR_FROM_OS_ERROR(EPERM);
        goto out;
    }
    if (fd >= 0 && sb.st_size == (off_t)size) {
        hdr_t head;

        if (pread(fd, &head, sizeof(head), 0) == (ssize_t)sizeof(head)
            && ptm_store_is_formatted(&head, size, ring)) {
            /* This state, this size: fill any hole a sparse file of an
             * earlier version has, then use it in place, rebuilt (its
             * contents are checked like a torn state's). */
            if ((err = posix_fallocate(fd, 0, (off_t)size)) != 0) {
                close(fd);
                rv = APR_FROM_OS_ERROR(err);
                goto out;
            }
            map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                       0);
            close(fd);
            if (map == MAP_FAILED) {
                rv = APR_FROM_OS_ERROR(errno);
                goto out;
            }
            *how = PTM_STORE_OPEN_RECOVERED;
            rv = ptm_repair_rebuild(&lost, ptm_store_attach(map, NULL, p),
                                    size, ((hdr_t *)map)->writing != 0);
            if (rv != APR_SUCCESS) {
                munmap(map, size);
                goto out;
            }
            *base = map;
            goto done;
        }
    }
    if (fd >= 0) {
        /* Another size or layout, or not a state at all. */
        old = slurp(fd, sb.st_size);
        old_size = sb.st_size;
        close(fd);
        if (old && readable(old, old_size)) {
            *how = old->version == LAYOUT_VERSION ? PTM_STORE_OPEN_RESIZED
                                                  : PTM_STORE_OPEN_UPGRADED;
        }
        else {
            free(old);
            old = NULL;
            *how = sb.st_size > 0 ? PTM_STORE_OPEN_UNRECOGNISED
                                  : PTM_STORE_OPEN_NEW;
        }
    }
    else if ((old = read_legacy(&old_size, &sb, legacy)) != NULL) {
        *how = PTM_STORE_OPEN_MIGRATED;
    }
    rv = create(base, &lost, dfd, name, size, ring, old,
                (uint64_t)old_size, p);
    free(old);
    if (rv != APR_SUCCESS) {
        goto out;
    }
    if (*how == PTM_STORE_OPEN_MIGRATED) {
        struct stat now;

        /* Carried over: the old file goes, if it is still the one read
         * (unlink removes a name; it follows no link). */
        if (lstat(legacy, &now) == 0 && now.st_dev == sb.st_dev
            && now.st_ino == sb.st_ino) {
            unlink(legacy);
        }
    }
done:
    if (dropped) {
        *dropped = lost;
    }
    *fd_out = dfd;
    return APR_SUCCESS;

out:
    close(dfd);
    return rv;
}

/* 1 if `sb` is a directory only root (or we) can change. */
static int safe_dir(const struct stat *sb, int last)
{
    uid_t me = geteuid();

    if (!S_ISDIR(sb->st_mode) || (sb->st_uid != 0 && sb->st_uid != me)) {
        return 0;
    }
    /* Writable by others: only a sticky directory (/tmp) on the way, where
     * others cannot rename or remove what is ours. */
    return !(sb->st_mode & 022) || (!last && (sb->st_mode & S_ISVTX));
}

/* Why `path` (of `sb`) is refused. */
static const char *unsafe(const char *path, const struct stat *sb,
                          apr_pool_t *p)
{
    return apr_psprintf(p, "%s is not a directory that only root can change "
                        "(owner %ld, mode %04o)", path, (long)sb->st_uid,
                        (unsigned)(sb->st_mode & 07777));
}

/* `path` is a directory only root (or we) can change; see safe_dir. */
static apr_status_t check_dir(const char **why, const char *path, int last,
                              apr_pool_t *p)
{
    struct stat sb;

    if (lstat(path, &sb) != 0) {
        *why = apr_pstrcat(p, "cannot stat ", path, NULL);
        return APR_FROM_OS_ERROR(errno);
    }
    if (!safe_dir(&sb, last)) {
        *why = unsafe(path, &sb, p);
        return APR_FROM_OS_ERROR(EPERM);
    }
    return APR_SUCCESS;
}

apr_status_t ptm_store_prepare_dir(const char **why, const char *dir,
                                   apr_pool_t *p)
{
    /* Walked from / one name at a time, as the kernel resolves it, so
     * that nothing is made or followed beyond a name someone else could
     * change: every directory passed through must be one only root (or
     * we) can change (sticky ones like /tmp allowed on the way), every
     * link root's or ours (in a sticky directory, a link's owner can
     * replace it), and a missing directory is made (0700, root's alone)
     * only under one that passed.  `cur` is the real path so far, links
     * resolved ("" is /); `rest` what is left to walk. */
    const char *rest = dir, *cur = "";
    apr_status_t rv;
    struct stat sb;
    int links = 0;

    *why = NULL;
    if (dir[0] != '/') {
        *why = "not an absolute path";
        return APR_EINVAL;
    }
    if ((rv = check_dir(why, "/", 0, p)) != APR_SUCCESS) {
        return rv;
    }
    for (;;) {
        const char *name, *next, *slash;
        size_t n;

        while (*rest == '/') {
            rest++;
        }
        if (!*rest) {
            break;
        }
        n = strcspn(rest, "/");
        name = apr_pstrmemdup(p, rest, n);
        rest += n;
        if (strcmp(name, ".") == 0) {
            continue;
        }
        if (strcmp(name, "..") == 0) {
            /* `cur` holds no link: its parent is its dirname. */
            slash = strrchr(cur, '/');
            cur = slash ? apr_pstrmemdup(p, cur, slash - cur) : "";
            continue;
        }
        next = apr_pstrcat(p, cur, "/", name, NULL);
        if (lstat(next, &sb) != 0
            && (errno != ENOENT || (mkdir(next, 0700) != 0 && errno != EEXIST)
                || lstat(next, &sb) != 0)) {
            *why = apr_pstrcat(p, "cannot create ", next, NULL);
            return APR_FROM_OS_ERROR(errno);
        }
        if (S_ISLNK(sb.st_mode)) {
            char *to = apr_palloc(p, (apr_size_t)sb.st_size + 1);
            ssize_t len;

            if (sb.st_uid != 0 && sb.st_uid != geteuid()) {
                *why = apr_psprintf(p, "%s is a link of another user's "
                                    "(owner %ld)", next, (long)sb.st_uid);
                return APR_FROM_OS_ERROR(EPERM);
            }
            len = readlink(next, to, (size_t)sb.st_size + 1);
            if (++links > 40 || len <= 0 || len > (ssize_t)sb.st_size) {
                *why = apr_pstrcat(p, "cannot resolve ", next, NULL);
                return APR_FROM_OS_ERROR(len < 0 ? errno : ELOOP);
            }
            /* Its target is walked next, from / or from here. */
            rest = apr_pstrcat(p, apr_pstrmemdup(p, to, (apr_size_t)len),
                               rest, NULL);
            if (to[0] == '/') {
                cur = "";
            }
            continue;
        }
        if ((rv = check_dir(why, next, 0, p)) != APR_SUCCESS) {
            return rv;
        }
        cur = next;
    }
    /* The directory itself: not even a sticky one. */
    return check_dir(why, *cur ? cur : "/", 1, p);
}

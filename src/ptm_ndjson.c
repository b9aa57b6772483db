/* NDJSON appends; see ptm_ndjson.h. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <apr_strings.h>
#include "ptm_ndjson.h"

apr_status_t ptm_ndjson_mkdirs(const char *dir, apr_pool_t *p)
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

apr_status_t ptm_ndjson_open(int *fd, const char *path, apr_pool_t *p)
{
    const char *slash = strrchr(path, '/');
    apr_status_t rv;

    *fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (*fd >= 0) {
        return APR_SUCCESS;
    }
    if (errno != ENOENT || !slash || slash == path) {
        return APR_FROM_OS_ERROR(errno);
    }
    /* The directory went away (deleted or rotated mid-run): recreate it,
     * as upstream does before every write. */
    rv = ptm_ndjson_mkdirs(apr_pstrmemdup(p, path, (apr_size_t)(slash - path)),
                           p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    *fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    return *fd >= 0 ? APR_SUCCESS : APR_FROM_OS_ERROR(errno);
}

apr_status_t ptm_ndjson_append(int fd, const struct iovec *iov, int n,
                               int sync)
{
    struct stat st;
    size_t want = 0;
    ssize_t got;
    int i, err;

    for (i = 0; i < n; i++) {
        want += iov[i].iov_len;
    }
    if (fstat(fd, &st) != 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    do {
        got = writev(fd, iov, n);
    } while (got < 0 && errno == EINTR);
    if (got == (ssize_t)want) {
        if (sync && fdatasync(fd) != 0) {
            err = errno;
            goto undo;
        }
        return APR_SUCCESS;
    }
    /* ENOSPC usually shows as a short write first, then -1. */
    err = got < 0 ? errno : 0;
undo:
    if (ftruncate(fd, st.st_size) != 0) {
        /* Nothing better to do: the caller reports the write error. */
    }
    return err ? APR_FROM_OS_ERROR(err) : APR_EGENERAL;
}

/* Read seq N from a line starting {"seq":N; 0 when it does not. */
static uint64_t seq_of(const char *s, size_t n)
{
    static const char head[] = "{\"seq\":";
    uint64_t v = 0;
    size_t i = sizeof(head) - 1;

    if (n < i || memcmp(s, head, i) != 0) {
        return 0;
    }
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10) {
            return 0;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v;
}

apr_status_t ptm_ndjson_last_seq(uint64_t *seq, const char *path)
{
    char buf[8192], head[32];
    struct stat st;
    off_t end, pos, line = -1, cut = -1;
    ssize_t n;
    int fd, rv = 0;

    *seq = 0;
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? APR_SUCCESS : APR_FROM_OS_ERROR(errno);
    }
    if (fstat(fd, &st) != 0) {
        rv = errno;
        goto out;
    }
    end = st.st_size;
    /* Walk back from the end in blocks: find where the last complete line
     * starts, and whether a partial line follows it. */
    pos = end;
    while (pos > 0 && line < 0) {
        size_t want = pos > (off_t)sizeof(buf) ? sizeof(buf) : (size_t)pos;
        off_t at = pos - (off_t)want;
        size_t i;

        n = pread(fd, buf, want, at);
        if (n != (ssize_t)want) {
            rv = n < 0 ? errno : EIO;
            goto out;
        }
        for (i = want; i > 0; i--) {
            off_t o = at + (off_t)i - 1;

            if (buf[i - 1] != '\n') {
                continue;
            }
            if (cut < 0) {
                cut = o + 1;            /* end of the last complete line */
                continue;
            }
            line = o + 1;
            break;
        }
        pos = at;
    }
    if (cut < 0) {
        cut = 0;                        /* no newline at all */
    }
    else if (line < 0) {
        line = 0;                       /* the only complete line */
    }
    if (cut < end && ftruncate(fd, cut) != 0) {
        rv = errno;
        goto out;
    }
    if (line >= 0) {
        n = pread(fd, head, sizeof(head), line);
        if (n < 0) {
            rv = errno;
            goto out;
        }
        *seq = seq_of(head, (size_t)n);
    }
out:
    close(fd);
    return rv ? APR_FROM_OS_ERROR(rv) : APR_SUCCESS;
}

/* NDJSON appends; see ptm_ndjson.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <apr_strings.h>
#include "ptm_fs.h"
#include "ptm_ndjson.h"

/* Readable too, so that an append can see whether the file ends in the
 * middle of a line; write-only if reading is not allowed.  Never through a
 * symbolic link planted at the file's name (ELOOP): the directories it is
 * in are writable by every web application of the site (SPEC §11.6).
 * Non-blocking: nothing to a regular file, but a FIFO or device at the
 * name then fails with EAGAIN instead of blocking the writer, and the store
 * lock it holds, for as long as nobody reads. */
static int open_append_at(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW
                                 | O_CLOEXEC | O_NONBLOCK, 0666);

    if (fd < 0 && errno == EACCES) {
        fd = openat(dirfd, name, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW
                                 | O_CLOEXEC | O_NONBLOCK, 0666);
    }
    return fd;
}

static int open_append(const char *path)
{
    return open_append_at(AT_FDCWD, path);
}

apr_status_t ptm_ndjson_open_at(int *fd, int dirfd, const char *name)
{
    *fd = open_append_at(dirfd, name);
    return *fd >= 0 ? APR_SUCCESS : APR_FROM_OS_ERROR(errno);
}

apr_status_t ptm_ndjson_open(int *fd, const char *path, apr_pool_t *p)
{
    const char *slash = strrchr(path, '/');
    apr_status_t rv;

    *fd = open_append(path);
    if (*fd >= 0) {
        return APR_SUCCESS;
    }
    if (errno != ENOENT || !slash || slash == path) {
        return APR_FROM_OS_ERROR(errno);
    }
    /* The directory went away (deleted or rotated mid-run): recreate it,
     * as upstream does before every write. */
    rv = ptm_fs_mkdirs(apr_pstrmemdup(p, path, (apr_size_t)(slash - path)),
                           p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    *fd = open_append(path);
    return *fd >= 0 ? APR_SUCCESS : APR_FROM_OS_ERROR(errno);
}

/* Walk back from `end` in blocks: `*cut` gets the end of the last complete
 * line (0 when there is none) and, with `line`, `*line` where that line
 * starts (-1 when there is no complete line).  Returns 0 or an errno. */
static int scan_back(int fd, off_t end, off_t *cut_out, off_t *line_out)
{
    char buf[8192];
    off_t pos = end, line = -1, cut = -1;
    ssize_t n;

    while (pos > 0 && (line_out ? line < 0 : cut < 0)) {
        size_t want = pos > (off_t)sizeof(buf) ? sizeof(buf) : (size_t)pos;
        off_t at = pos - (off_t)want;
        size_t i;

        /* A tail longer than any line we write (a sparse file costs its
         * maker nothing): refused rather than read for hours, under the
         * store lock or in httpd's parent. */
        if (end - pos >= PTM_NDJSON_SCAN_MAX) {
            return EFBIG;
        }

        n = pread(fd, buf, want, at);
        if (n != (ssize_t)want) {
            return n < 0 ? errno : EIO;
        }
        for (i = want; i > 0; i--) {
            off_t o = at + (off_t)i - 1;

            if (buf[i - 1] != '\n') {
                continue;
            }
            if (cut < 0) {
                cut = o + 1;            /* end of the last complete line */
                if (!line_out) {
                    break;
                }
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
    *cut_out = cut;
    if (line_out) {
        *line_out = cut > 0 ? line : -1;
    }
    return 0;
}

/* A writer killed in the middle of its append (the kernel stops a write
 * to a regular file between pages on SIGKILL) leaves part of a line that
 * was never acknowledged: cut it off, or the next line would be glued to
 * it.  Only possible on a readable descriptor; a write-only one (or a
 * pipe, a device) is taken as it is.  Called under the store lock, so no
 * living writer is in the middle of a line.  Returns 0 or an errno, with
 * `*size` the size the file has now. */
static int cut_partial(int fd, off_t *size)
{
    off_t cut;
    char c;
    int err;

    if (*size <= 0 || pread(fd, &c, 1, *size - 1) != 1 || c == '\n') {
        return 0;
    }
    if ((err = scan_back(fd, *size, &cut, NULL)) != 0) {
        return err;
    }
    if (ftruncate(fd, cut) != 0) {
        return errno;
    }
    *size = cut;
    return 0;
}

/* Append at the end of `fd`, whose size is `size`; `check_tail`: cut a
 * partial last line first.  On success `*end` is where the line ends. */
static apr_status_t append_at(int fd, off_t size, int check_tail,
                              const struct iovec *iov, int n, int sync,
                              off_t *end)
{
    struct iovec rest[PTM_NDJSON_MAX_IOV], part;
    const struct iovec *v = iov;
    size_t want = 0, total;
    ssize_t got;
    int i, err;

    if (n > PTM_NDJSON_MAX_IOV) {
        return APR_EINVAL;
    }
    for (i = 0; i < n; i++) {
        want += iov[i].iov_len;
    }
    total = want;
    if (check_tail && (err = cut_partial(fd, &size)) != 0) {
        return APR_FROM_OS_ERROR(err);
    }
    /* One writev normally.  A short one (the disk filled up mid-line)
     * is followed by another for the rest: it either completes the line
     * (writers are serialised by the store lock, so nothing came in
     * between) or fails with the errno that names the cause. */
    err = 0;
    while (want > 0) {
        got = writev(fd, v, n);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            err = errno;
            goto undo;
        }
        if (got == 0) {
            err = EIO;
            goto undo;
        }
        want -= (size_t)got;
        while (n > 0 && (size_t)got >= v[0].iov_len) {
            got -= (ssize_t)v[0].iov_len;
            v++;
            n--;
        }
        if (n > 0) {
            /* The rest of a part: a private copy of that iovec. */
            part.iov_base = (char *)v[0].iov_base + got;
            part.iov_len = v[0].iov_len - (size_t)got;
            rest[0] = part;
            for (i = 1; i < n && i < PTM_NDJSON_MAX_IOV; i++) {
                rest[i] = v[i];
            }
            v = rest;
        }
    }
    if (sync && fdatasync(fd) != 0) {
        err = errno;
        goto undo;
    }
    *end = size + (off_t)total;
    return APR_SUCCESS;

undo:
    if (ftruncate(fd, size) != 0) {
        /* Nothing better to do: the caller reports the write error. */
    }
    return APR_FROM_OS_ERROR(err);
}

/* 1 if `tail` says the file `st` ends where the last line appended to it
 * did (so in a newline). */
static int at_tail(const ptm_ndjson_tail_t *tail, const struct stat *st)
{
    return tail && tail->end >= 0 && tail->end == (int64_t)st->st_size
           && tail->dev == (uint64_t)st->st_dev
           && tail->ino == (uint64_t)st->st_ino;
}

static void set_tail(ptm_ndjson_tail_t *tail, const struct stat *st,
                     apr_status_t rv, off_t end)
{
    if (!tail) {
        return;
    }
    if (rv != APR_SUCCESS || !S_ISREG(st->st_mode)) {
        tail->end = -1;
        return;
    }
    tail->dev = (uint64_t)st->st_dev;
    tail->ino = (uint64_t)st->st_ino;
    tail->end = (int64_t)end;
}

apr_status_t ptm_ndjson_append_tail(int fd, const struct iovec *iov, int n,
                                    int sync, ptm_ndjson_tail_t *tail)
{
    struct stat st;
    apr_status_t rv;
    off_t end = -1;

    if (fstat(fd, &st) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
        set_tail(tail, &st, rv, end);
        return rv;
    }
    if (S_ISREG(st.st_mode) && st.st_nlink == 0) {
        /* Deleted (rotated, removed) since it was opened: the line would
         * go nowhere.  The caller opens the path again. */
        return APR_ENOENT;
    }
    rv = append_at(fd, st.st_size, S_ISREG(st.st_mode) && !at_tail(tail, &st),
                   iov, n, sync, &end);
    set_tail(tail, &st, rv, end);
    return rv;
}

apr_status_t ptm_ndjson_append(int fd, const struct iovec *iov, int n,
                               int sync)
{
    return ptm_ndjson_append_tail(fd, iov, n, sync, NULL);
}

/* ---- a process's open files ---------------------------------------------- */

void ptm_ndjson_file_init(ptm_ndjson_file_t *f)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
    f->end = -1;
}

void ptm_ndjson_file_close(ptm_ndjson_file_t *f)
{
    if (f->fd >= 0) {
        close(f->fd);
    }
    free(f->path);
    ptm_ndjson_file_init(f);
}

/* The open file is still what `path` names, as it was when opened: not
 * deleted, renamed away, replaced, or given other permissions (an open
 * per line, as upstream does, would notice all of those).  `st` gets the
 * file's status. */
static int still_current(const ptm_ndjson_file_t *f, const char *path,
                         struct stat *st)
{
    /* lstat: a link put in the file's place is not the file, even when it
     * points at it (the open that follows refuses the link). */
    return f->fd >= 0 && strcmp(f->path, path) == 0
           && lstat(path, st) == 0 && st->st_dev == f->dev
           && st->st_ino == f->ino && st->st_mode == f->mode
           && st->st_uid == f->uid && st->st_gid == f->gid;
}

apr_status_t ptm_ndjson_file_append(ptm_ndjson_file_t *f, const char *path,
                                    const struct iovec *iov, int n, int sync,
                                    const char **step, apr_pool_t *p)
{
    return ptm_ndjson_file_append_tail(f, path, iov, n, sync, NULL, step, p);
}

apr_status_t ptm_ndjson_file_append_tail(ptm_ndjson_file_t *f,
                                         const char *path,
                                         const struct iovec *iov, int n,
                                         int sync, ptm_ndjson_tail_t *tail,
                                         const char **step, apr_pool_t *p)
{
    struct stat st;
    apr_status_t rv;
    off_t end;
    int fd;

    *step = "open";
    if (!still_current(f, path, &st)) {
        ptm_ndjson_file_close(f);
        if (tail) {
            tail->end = -1;     /* whatever the failure, nothing is known */
        }
        if ((rv = ptm_ndjson_open(&fd, path, p)) != APR_SUCCESS) {
            return rv;
        }
        if (fstat(fd, &st) != 0 || !(f->path = strdup(path))) {
            rv = errno ? APR_FROM_OS_ERROR(errno) : APR_ENOMEM;
            ptm_ndjson_discard_if_empty(fd, path);
            close(fd);
            return rv;
        }
        f->fd = fd;
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->mode = st.st_mode;
        f->uid = st.st_uid;
        f->gid = st.st_gid;
    }
    *step = "write";
    /* Ending where our own last line ended, the file ends in a newline:
     * no one else appended (or cut) since, so there is no partial line to
     * look for; likewise where the last line of any process ended. */
    rv = append_at(f->fd, st.st_size, S_ISREG(st.st_mode)
                   && st.st_size != f->end && !at_tail(tail, &st),
                   iov, n, sync, &end);
    set_tail(tail, &st, rv, end);
    if (rv != APR_SUCCESS) {
        /* A refused line leaves no trace, not even the empty file the
         * open created; and the next line opens afresh. */
        ptm_ndjson_discard_if_empty(f->fd, path);
        ptm_ndjson_file_close(f);
        return rv;
    }
    f->end = end;
    if (!S_ISREG(st.st_mode)) {
        /* Only regular files stay open: a FIFO held open by us (both
         * ends: it is opened O_RDWR) would fill up with no reader and
         * refuse every line after (EAGAIN); opened per line, what no one
         * read is dropped at the close, as before. */
        ptm_ndjson_file_close(f);
    }
    return APR_SUCCESS;
}

/* Read seq N from a line starting {"seq":N; 0 when it does not, or when N
 * is beyond int64: the module never writes one (JSON readers refuse it),
 * so such a line was planted and must not move the counter. */
static uint64_t seq_of(const char *s, size_t n)
{
    static const char head[] = "{\"seq\":";
    uint64_t v = 0;
    size_t i = sizeof(head) - 1;

    if (n < i || memcmp(s, head, i) != 0) {
        return 0;
    }
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');

        if (v > ((uint64_t)INT64_MAX - d) / 10) {
            return 0;
        }
        v = v * 10 + d;
    }
    return v;
}

apr_status_t ptm_ndjson_last_seq_at(uint64_t *seq, int dirfd,
                                   const char *name)
{
    char head[32];
    struct stat st;
    off_t line, cut;
    ssize_t n;
    int fd, rv = 0;

    *seq = 0;
    /* Read only, and never through a link or into a FIFO: httpd's parent
     * runs this as root over files the User can replace. */
    fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? APR_SUCCESS : APR_FROM_OS_ERROR(errno);
    }
    if (fstat(fd, &st) != 0) {
        rv = errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rv = EINVAL;
        goto out;
    }
    /* Where the last complete line starts.  A partial line after it (a
     * crash cut the append) is left for the next append to cut. */
    if ((rv = scan_back(fd, st.st_size, &cut, &line)) != 0) {
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

apr_status_t ptm_ndjson_last_seq(uint64_t *seq, const char *path)
{
    return ptm_ndjson_last_seq_at(seq, AT_FDCWD, path);
}

void ptm_ndjson_discard_if_empty(int fd, const char *path)
{
    struct stat a, b;

    if (fstat(fd, &a) == 0 && S_ISREG(a.st_mode) && a.st_size == 0
        && a.st_nlink > 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev
        && a.st_ino == b.st_ino) {
        unlink(path);
    }
}

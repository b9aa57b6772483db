/* A disk that keeps only what fdatasync says it kept, for t/27_sync.t.
 *
 * Preloaded into httpd (LD_PRELOAD) by that test only; never built into
 * the module.  Two things:
 *
 *   - every fdatasync of a regular file is written down in the file named
 *     by $PTM_SYNCSPY_LOG, one line per call, after it returned:
 *         ok <dev> <ino> <size>     it succeeded: the first <size> bytes
 *                                   (the file's size when it began) are on
 *                                   stable storage
 *         fail <dev> <ino> <size>   it failed: whatever of the first
 *                                   <size> bytes (its size when it
 *                                   returned) was not on stable storage
 *                                   yet may be lost, whatever a later
 *                                   flush says (PostgreSQL's fsync lesson)
 *     so the test can cut each file where a power cut could have cut it;
 *         trunc <dev> <ino> <size>  ftruncate cut it to <size>: what was
 *                                   beyond is gone, and bytes written there
 *                                   later are new ones
 *   - while the file named by $PTM_SYNCSPY_FAIL exists, the next
 *     fdatasync of a regular file removes it and fails with EIO, as a
 *     disk's writeback error is reported: once.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int (*real_fdatasync)(int);
static int (*real_ftruncate)(int, off_t);

static void note(const char *what, const struct stat *st, long long size)
{
    const char *log = getenv("PTM_SYNCSPY_LOG");
    char line[128];
    int fd, n;

    if (!log) {
        return;
    }
    n = snprintf(line, sizeof(line), "%s %llu %llu %lld\n", what,
                 (unsigned long long)st->st_dev,
                 (unsigned long long)st->st_ino, size);
    fd = open(log, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) {
        /* One write on O_APPEND: lines never mix. */
        if (write(fd, line, (size_t)n) != n) {
            /* The test finds the line missing and fails. */
        }
        close(fd);
    }
}

int fdatasync(int fd)
{
    const char *fail = getenv("PTM_SYNCSPY_FAIL");
    struct stat before, after;
    int rv, err, reg;

    if (!real_fdatasync) {
        real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
        if (!real_fdatasync) {
            errno = ENOSYS;
            return -1;
        }
    }
    reg = fstat(fd, &before) == 0 && S_ISREG(before.st_mode);
    if (reg && fail && unlink(fail) == 0) {
        /* This call found the switch (and took it): a writeback error. */
        if (fstat(fd, &after) != 0) {
            after = before;
        }
        note("fail", &after, (long long)after.st_size);
        errno = EIO;
        return -1;
    }
    rv = real_fdatasync(fd);
    err = errno;
    if (reg) {
        if (rv == 0) {
            note("ok", &before, (long long)before.st_size);
        }
        else if (fstat(fd, &after) == 0) {
            note("fail", &after, (long long)after.st_size);
        }
    }
    errno = err;
    return rv;
}

int ftruncate(int fd, off_t length)
{
    struct stat st;
    int rv, err;

    if (!real_ftruncate) {
        real_ftruncate = (int (*)(int, off_t))dlsym(RTLD_NEXT, "ftruncate");
        if (!real_ftruncate) {
            errno = ENOSYS;
            return -1;
        }
    }
    rv = real_ftruncate(fd, length);
    err = errno;
    if (rv == 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        note("trunc", &st, (long long)length);
    }
    errno = err;
    return rv;
}

/* The same call under its large-file name (64-bit: the same thing). */
int ftruncate64(int fd, off_t length)
{
    return ftruncate(fd, length);
}

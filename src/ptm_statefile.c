/* The state file: the segment is a shared mapping of a file, so that the
 * state outlives httpd (stop and start, crashes). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string.h>
#include "ptm_store_int.h"

apr_status_t ptm_store_open_file(void **base, int *fd_out,
                                 ptm_store_open_e *how, const char *path,
                                 apr_size_t size, apr_pool_t *p)
{
    struct stat sb;
    hdr_t *old = NULL;
    void *map;
    int fd, err;
    ptm_store_t *st;

    *how = PTM_STORE_OPEN_NEW;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    /* One httpd per state: a second one would bring its own mutex. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        err = errno == EWOULDBLOCK ? EBUSY : errno;
        goto fail;
    }
    if (fstat(fd, &sb) != 0) {
        err = errno;
        goto fail;
    }
    if (sb.st_size >= (off_t)sizeof(hdr_t) && (apr_size_t)sb.st_size != size) {
        /* Another StateSize: keep what was there, in the new size. */
        old = malloc((size_t)sb.st_size);
        if (!old || pread(fd, old, (size_t)sb.st_size, 0) != sb.st_size
            || !ptm_store_is_formatted(old, (apr_size_t)sb.st_size)) {
            free(old);
            old = NULL;
        }
        if (ftruncate(fd, 0) != 0) {
            err = errno;
            goto fail;
        }
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        err = errno;
        goto fail;
    }
    map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        err = errno;
        goto fail;
    }
    st = ptm_store_attach(map, NULL, p);
    if (old) {
        ptm_store_format(map, size);
        ptm_repair_copy(st, old);
        free(old);
        *how = PTM_STORE_OPEN_RESIZED;
    }
    else if (ptm_store_is_formatted(map, size)) {
        *how = PTM_STORE_OPEN_RECOVERED;
        if (st->hdr->writing) {
            ptm_repair_locked(st);
        }
    }
    else {
        if (sb.st_size > 0) {
            *how = PTM_STORE_OPEN_UNRECOGNISED;
        }
        ptm_store_format(map, size);
    }
    *base = map;
    *fd_out = fd;
    return APR_SUCCESS;

fail:
    free(old);
    close(fd);
    return APR_FROM_OS_ERROR(err);
}

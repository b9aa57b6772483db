/* Cross-process wake-ups on a shared word (ptm_wake.h).  Linux: a futex.
 * Not FUTEX_PRIVATE_FLAG: the word is in a MAP_SHARED mapping that every
 * child inherits, and a private futex is keyed by the process's address
 * space, so a wake from one child would never reach another. */
#include <errno.h>
#include "ptm_wake.h"

#ifdef __linux__
#include <limits.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

apr_status_t ptm_wake_wait(volatile uint32_t *word, uint32_t seen,
                           apr_interval_time_t timeout)
{
    struct timespec ts;

    if (timeout < 0) {
        timeout = 0;
    }
    ts.tv_sec = (time_t)apr_time_sec(timeout);
    ts.tv_nsec = (long)apr_time_usec(timeout) * 1000;
    /* The kernel compares *word with seen atomically with going to
     * sleep: a wake between our look and the wait is not lost. */
    if (syscall(SYS_futex, word, FUTEX_WAIT, seen, &ts, NULL, 0) == 0) {
        return APR_SUCCESS;
    }
    switch (errno) {
    case EAGAIN:        /* the word had changed already */
        return APR_SUCCESS;
    case ETIMEDOUT:
        return APR_TIMEUP;
    case EINTR:
        return APR_EINTR;
    default:
        return errno;
    }
}

void ptm_wake_all(volatile uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

const char *ptm_wake_method(void)
{
    return "futex";
}

#else /* portable: look at the word every PTM_WAKE_POLL_INTERVAL */

#include <apr_atomic.h>

apr_status_t ptm_wake_wait(volatile uint32_t *word, uint32_t seen,
                           apr_interval_time_t timeout)
{
    apr_interval_time_t step = PTM_WAKE_POLL_INTERVAL;

    if (apr_atomic_read32(word) != seen) {
        return APR_SUCCESS;
    }
    if (timeout <= 0) {
        return APR_TIMEUP;
    }
    apr_sleep(timeout < step ? timeout : step);
    if (apr_atomic_read32(word) != seen) {
        return APR_SUCCESS;
    }
    return timeout <= step ? APR_TIMEUP : APR_SUCCESS;
}

void ptm_wake_all(volatile uint32_t *word)
{
    (void)word;
}

const char *ptm_wake_method(void)
{
    return "polling";
}

#endif

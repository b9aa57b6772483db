/* Waking waiters in other processes (SPEC §12.3: an event posted through
 * one child reaches the subscribers of every child at once, no polling).
 * httpd 2.4 and APR have no cross-process condition variable, so the
 * waiters sleep on a 32-bit word in memory shared by every child: on Linux
 * a futex (FUTEX_WAIT / FUTEX_WAKE, not private: the word is in a shared
 * mapping), elsewhere a short sleep and a look at the word (polling).
 * All the platform code is in ptm_wake.c. */
#ifndef PTM_WAKE_H
#define PTM_WAKE_H

#include <stdint.h>
#include <apr_errno.h>
#include <apr_time.h>

/* How often the portable fallback looks at the word. */
#define PTM_WAKE_POLL_INTERVAL apr_time_from_msec(10)

/**
 * Sleep while `*word` still equals `seen`, at most `timeout` (>= 0).
 * Returns APR_SUCCESS when woken or when the word had already changed,
 * APR_TIMEUP when the time ran out, APR_EINTR when a signal came (httpd's
 * graceful-restart signals do: the caller looks at the server's state).
 * May also return APR_SUCCESS spuriously: callers re-check what they wait
 * for.
 */
apr_status_t ptm_wake_wait(volatile uint32_t *word, uint32_t seen,
                           apr_interval_time_t timeout);

/** Wake every process and thread sleeping on `word` (after changing it). */
void ptm_wake_all(volatile uint32_t *word);

/** "futex" or "polling": what this build uses (server-status, README). */
const char *ptm_wake_method(void);

#endif

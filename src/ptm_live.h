/* The live board (SPEC §12.3): what the subscribers of GET /stream in all
 * children share, in anonymous shared memory the parent makes once and
 * keeps across graceful restarts (children inherit it by fork):
 *
 *   - the wake word, bumped after every accepted event (ptm_wake.h);
 *   - the subscriber slots, one per open stream, holding the pid of the
 *     child that serves it, so that the cap (PanoptesTelemetryStreamMax)
 *     holds across children and a killed child's slots can be reaped;
 *   - counters for server-status.
 *
 * Nothing here is in the state file: subscribers do not outlive the
 * processes that serve them.  Slots are claimed and released with atomic
 * compare-and-swap, never under the store lock, so the root parent can
 * reap without waiting on a child. */
#ifndef PTM_LIVE_H
#define PTM_LIVE_H

#include <stdint.h>
#include <sys/types.h>
#include <apr_pools.h>
#include <apr_time.h>

/* The most PanoptesTelemetryStreamMax can be (slots are fixed when the
 * board is made, so a graceful restart may raise the cap up to this). */
#define PTM_LIVE_SLOTS_MAX 1024

typedef struct ptm_live_t ptm_live_t;

/** Make a board with PTM_LIVE_SLOTS_MAX slots in anonymous shared memory
 * from `p` (the process pool: it must outlive generations). */
apr_status_t ptm_live_create(ptm_live_t **out, apr_pool_t *p);

/** Bytes a board takes, and a board laid out in `mem` (zeroed, 8-aligned,
 * at least that many bytes; tests share it with fork). */
size_t ptm_live_size(void);
ptm_live_t *ptm_live_init(void *mem);

/**
 * Claim a subscriber slot for process `pid` among the first `max`.  When
 * all are taken, slots of processes that no longer exist are reaped first
 * (kill(pid, 0) fails with ESRCH).  Returns the slot (>= 0), or -1 when
 * the cap is reached: the refusal is counted (busy).
 */
int ptm_live_claim(ptm_live_t *l, unsigned max, pid_t pid);

/** Give back a slot from ptm_live_claim (its owner only; once). */
void ptm_live_release(ptm_live_t *l, int slot);

/** Free every slot held by `pid`, a process that ended (httpd's
 * child_status hook in the parent).  Returns how many. */
unsigned ptm_live_reap(ptm_live_t *l, pid_t pid);

/** The wake word now: read it BEFORE looking for new events, then pass it
 * to ptm_live_wait, so an event between the look and the wait is not
 * slept through. */
uint32_t ptm_live_seen(ptm_live_t *l);

/** After an event is accepted (its ring record committed): bump the word
 * and, when anyone sleeps on it, wake them.  Costs no system call when
 * nobody is asleep (no stream open, or every one busy). */
void ptm_live_notify(ptm_live_t *l);

/** Count (on = 1) or uncount (on = 0) a waiter that is not a subscriber
 * (the forwarding thread, SPEC §12.5), for server-status. */
void ptm_live_watch(ptm_live_t *l, int on);

/** Sleep until ptm_live_notify or `timeout` (ptm_wake_wait's returns). */
apr_status_t ptm_live_wait(ptm_live_t *l, uint32_t seen,
                           apr_interval_time_t timeout);

/** Count events written to subscribers. */
void ptm_live_count_sent(ptm_live_t *l, uint64_t n);

typedef struct {
    uint32_t subscribers;   /* slots held now */
    uint32_t high;          /* the most held at once since httpd started */
    uint32_t watchers;      /* waiters without a slot (ptm_live_watch) */
    uint64_t busy;          /* refusals at the cap */
    uint64_t sent;          /* events written to subscribers */
    const char *wake;       /* ptm_wake_method() */
} ptm_live_stats_t;

void ptm_live_stats(ptm_live_t *l, ptm_live_stats_t *out);

#endif

/* The live board (ptm_live.h): wake word, subscriber slots, counters. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <apr_atomic.h>
#include "ptm_live.h"
#include "ptm_wake.h"
#include "ptm_shm.h"

struct ptm_live_t {
    volatile uint32_t word;         /* bumped per accepted event */
    volatile uint32_t subscribers;  /* slots held */
    volatile uint32_t high;
    volatile uint32_t watchers;     /* waiters that hold no slot */
    volatile uint32_t sleepers;     /* in ptm_live_wait now */
    uint32_t pad;
    volatile apr_uint64_t busy;
    volatile apr_uint64_t sent;
    volatile uint32_t pid[PTM_LIVE_SLOTS_MAX];  /* 0: free */
};

size_t ptm_live_size(void)
{
    return sizeof(ptm_live_t);
}

ptm_live_t *ptm_live_init(void *mem)
{
    memset(mem, 0, sizeof(ptm_live_t));
    return mem;
}

apr_status_t ptm_live_create(ptm_live_t **out, apr_pool_t *p)
{
    void *base;
    apr_status_t rv;

    if ((rv = ptm_shm_anon(&base, sizeof(ptm_live_t), p)) != APR_SUCCESS) {
        return rv;
    }
    *out = ptm_live_init(base);
    return APR_SUCCESS;
}

static void raise_high(ptm_live_t *l, uint32_t now)
{
    uint32_t high = apr_atomic_read32(&l->high);

    while (now > high) {
        uint32_t was = apr_atomic_cas32(&l->high, now, high);

        if (was == high) {
            break;
        }
        high = was;
    }
}

static int take_free(ptm_live_t *l, unsigned max, pid_t pid)
{
    unsigned i;

    for (i = 0; i < max; i++) {
        if (apr_atomic_read32(&l->pid[i]) == 0
            && apr_atomic_cas32(&l->pid[i], (uint32_t)pid, 0) == 0) {
            raise_high(l, apr_atomic_inc32(&l->subscribers) + 1);
            return (int)i;
        }
    }
    return -1;
}

/* Free slot i if it still holds `pid`. */
static int drop(ptm_live_t *l, unsigned i, uint32_t pid)
{
    if (pid != 0 && apr_atomic_cas32(&l->pid[i], 0, pid) == pid) {
        apr_atomic_dec32(&l->subscribers);
        return 1;
    }
    return 0;
}

int ptm_live_claim(ptm_live_t *l, unsigned max, pid_t pid)
{
    int slot;
    unsigned i;

    if (max > PTM_LIVE_SLOTS_MAX) {
        max = PTM_LIVE_SLOTS_MAX;
    }
    if (pid <= 0 || (slot = take_free(l, max, pid)) < 0) {
        /* Full: a child killed before the parent reaped it (or whose
         * child_status never came, e.g. the parent was restarted) may
         * still hold slots.  ESRCH only: EPERM means the pid lives. */
        int reaped = 0;

        for (i = 0; pid > 0 && i < max; i++) {
            uint32_t other = apr_atomic_read32(&l->pid[i]);

            if (other != 0 && kill((pid_t)other, 0) != 0 && errno == ESRCH) {
                reaped += drop(l, i, other);
            }
        }
        slot = reaped ? take_free(l, max, pid) : -1;
    }
    if (slot < 0) {
        apr_atomic_add64(&l->busy, 1);
    }
    return slot;
}

void ptm_live_release(ptm_live_t *l, int slot)
{
    if (slot >= 0 && slot < PTM_LIVE_SLOTS_MAX) {
        drop(l, (unsigned)slot, apr_atomic_read32(&l->pid[slot]));
    }
}

unsigned ptm_live_reap(ptm_live_t *l, pid_t pid)
{
    unsigned i, n = 0;

    if (pid <= 0) {
        return 0;
    }
    for (i = 0; i < PTM_LIVE_SLOTS_MAX; i++) {
        if (apr_atomic_read32(&l->pid[i]) == (uint32_t)pid) {
            n += drop(l, i, (uint32_t)pid);
        }
    }
    return n;
}

uint32_t ptm_live_seen(ptm_live_t *l)
{
    return apr_atomic_read32(&l->word);
}

void ptm_live_notify(ptm_live_t *l)
{
    /* Both are full barriers, in this order here and the other way round
     * in ptm_live_wait: either the sleeper is counted before the word is
     * read here (and is woken), or its futex sees the word already moved
     * (and does not sleep).  Subscribers busy writing need no system
     * call: they look at the ring again before they sleep. */
    apr_atomic_inc32(&l->word);
    if (apr_atomic_read32(&l->sleepers) > 0) {
        ptm_wake_all(&l->word);
    }
}

void ptm_live_watch(ptm_live_t *l, int on)
{
    if (on) {
        apr_atomic_inc32(&l->watchers);
    }
    else {
        apr_atomic_dec32(&l->watchers);
    }
}

apr_status_t ptm_live_wait(ptm_live_t *l, uint32_t seen,
                           apr_interval_time_t timeout)
{
    apr_status_t rv;

    apr_atomic_inc32(&l->sleepers);
    rv = ptm_wake_wait(&l->word, seen, timeout);
    apr_atomic_dec32(&l->sleepers);
    return rv;
}

void ptm_live_count_sent(ptm_live_t *l, uint64_t n)
{
    apr_atomic_add64(&l->sent, n);
}

void ptm_live_stats(ptm_live_t *l, ptm_live_stats_t *out)
{
    out->subscribers = apr_atomic_read32(&l->subscribers);
    out->high = apr_atomic_read32(&l->high);
    out->watchers = apr_atomic_read32(&l->watchers);
    out->busy = apr_atomic_read64(&l->busy);
    out->sent = apr_atomic_read64(&l->sent);
    out->wake = ptm_wake_method();
}

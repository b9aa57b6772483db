/* The store's front lock: a process-shared, robust pthread mutex without
 * priority inheritance, taken before the global mutex (apr_global_mutex,
 * the `Mutex` directive's) and let go after it.
 *
 * Why: APR makes its "pthread" mutex (httpd's default) with
 * PTHREAD_PRIO_INHERIT.  A priority-inheriting futex is handed over by the
 * kernel: when its holder lets it go while others wait, the longest waiter
 * owns it at once, asleep, and nobody else can take it until the scheduler
 * has run that thread.  Every event then costs a wake-up and a context
 * switch on the lock's path, and when the CPUs are busy (other work on the
 * machine, or simply more runnable threads than cores) the lock sits owned
 * by a thread waiting for a CPU while every other writer waits behind it:
 * a convoy.  This mutex is not handed over: a releaser wakes one sleeper,
 * and whichever thread comes first takes it, usually one that is running.
 *
 * Held before the global mutex, it leaves that one uncontended (a compare
 * and swap in user space, whatever mechanism the admin chose), and writers
 * still exclude every process that takes only the global mutex: children
 * of an earlier module version still serving across a graceful restart
 * into this one, or back.
 *
 * The board is anonymous shared memory the parent makes once and keeps
 * across graceful restarts (children inherit it by fork).  A holder that
 * dies leaves it to the next taker (robust: EOWNERDEAD is made consistent
 * here); what the dead holder left half done is the store's to repair (its
 * writing mark), as with the global mutex.
 *
 * The board also keeps what its holders share and the state file must
 * not: where the last line of each stream ended (ptm_ndjson_tail_t), so
 * that an append need not read the file's last byte back when another
 * process wrote last.  Only this parent's children know it; a file may
 * change while httpd is stopped. */
#ifndef PTM_LOCK_H
#define PTM_LOCK_H

#include <apr_errno.h>
#include <apr_pools.h>
#include "ptm_ndjson.h"

typedef struct ptm_lock_t ptm_lock_t;

/** Bytes a board takes. */
size_t ptm_lock_size(void);

/** Lay out a board in `mem` (8-aligned, ptm_lock_size() bytes, shared by
 * the processes that will use it); returns it, or NULL when the mutex
 * cannot be made (`*rv` says why). */
ptm_lock_t *ptm_lock_init(void *mem, apr_status_t *rv);

/** Make a board in anonymous shared memory from `p` (the parent's process
 * pool, so that it outlives generations).  Returns APR_SUCCESS or the
 * error of apr_shm_create or of the mutex's making. */
apr_status_t ptm_lock_create(ptm_lock_t **out, apr_pool_t *p);

/** 1 if `lock` was laid out by this version of the code. */
int ptm_lock_is_ours(const ptm_lock_t *lock);

/** Take the lock; with `wait` 0 only if it is free.  Returns APR_SUCCESS,
 * APR_EBUSY (not free, `wait` 0), or the mutex's error (ENOTRECOVERABLE:
 * never here, since every taker of a dead holder's lock makes it
 * consistent). */
apr_status_t ptm_lock_take(ptm_lock_t *lock, int wait);

/** Let it go. */
void ptm_lock_give(ptm_lock_t *lock);

/** Where the last line of `stream` (0 or 1) ended, to read and write
 * only while holding the lock. */
ptm_ndjson_tail_t *ptm_lock_tail(ptm_lock_t *lock, int stream);

/** How many takes found the lock held and waited for it (a counter for
 * server-status; relaxed). */
apr_uint64_t ptm_lock_waits(const ptm_lock_t *lock);

#endif

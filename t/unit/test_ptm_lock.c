/* Unit tests for ptm_lock (the store's front lock): it excludes threads of
 * fork()ed processes from each other (a counter bumped without atomics
 * under it loses nothing), it is free again for the next taker when its
 * holder dies holding it (robust), a take that does not wait says EBUSY
 * while another process holds it, and waits are counted. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ptm_unit.h"
#include "ptm_lock.h"

/* What the processes of a test share. */
typedef struct {
    volatile uint64_t counter;      /* bumped under the lock, not atomic */
    volatile int held;              /* a child holds the lock */
    long board[];                   /* the lock, 8-aligned */
} shared_t;

static shared_t *shared_make(ptm_lock_t **lock)
{
    size_t size = sizeof(shared_t) + ptm_lock_size();
    shared_t *sh = mmap(NULL, size, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    apr_status_t rv;

    assert_true(sh != MAP_FAILED);
    memset(sh, 0, size);
    *lock = ptm_lock_init(sh->board, &rv);
    assert_int_equal(rv, APR_SUCCESS);
    assert_non_null(*lock);
    assert_true(ptm_lock_is_ours(*lock));
    return sh;
}

static void shared_free(shared_t *sh)
{
    munmap(sh, sizeof(shared_t) + ptm_lock_size());
}

static void wait_child(pid_t pid, int want_signal)
{
    int status;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (want_signal) {
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), want_signal);
    }
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_msg("child: status 0x%x", status);
    }
}

static void test_take_give(void **state)
{
    ptm_lock_t *lock;
    shared_t *sh = shared_make(&lock);
    char junk[64];

    (void)state;
    assert_int_equal(ptm_lock_take(lock, 1), APR_SUCCESS);
    ptm_lock_give(lock);
    assert_int_equal(ptm_lock_take(lock, 0), APR_SUCCESS);
    ptm_lock_give(lock);
    assert_int_equal(ptm_lock_waits(lock), 0);
    /* Not ours: anything else, and NULL. */
    memset(junk, 0x5a, sizeof(junk));
    assert_false(ptm_lock_is_ours((ptm_lock_t *)junk));
    assert_false(ptm_lock_is_ours(NULL));
    shared_free(sh);
}

/* Made in a pool's anonymous shared memory, as httpd's parent does. */
static void test_create(void **state)
{
    apr_pool_t *p;
    ptm_lock_t *lock;

    (void)state;
    assert_int_equal(apr_pool_create(&p, gpool), APR_SUCCESS);
    assert_int_equal(ptm_lock_create(&lock, p), APR_SUCCESS);
    assert_true(ptm_lock_is_ours(lock));
    assert_int_equal(ptm_lock_take(lock, 1), APR_SUCCESS);
    ptm_lock_give(lock);
    apr_pool_destroy(p);
}

#define NPROC 4
#define NTHREADS 4
#define NBUMPS 20000

static ptm_lock_t *bump_lock;
static shared_t *bump_sh;

static void *bumper(void *arg)
{
    int i;

    (void)arg;
    for (i = 0; i < NBUMPS; i++) {
        if (ptm_lock_take(bump_lock, 1) != APR_SUCCESS) {
            _exit(30);
        }
        /* Read, yield now and then, write: a lost update if two are in. */
        {
            uint64_t v = bump_sh->counter;

            if (i % 512 == 0) {
                sched_yield();
            }
            bump_sh->counter = v + 1;
        }
        ptm_lock_give(bump_lock);
    }
    return NULL;
}

/* Threads of several processes: every bump counted. */
static void test_excludes(void **state)
{
    pid_t pids[NPROC];
    int k;

    (void)state;
    bump_sh = shared_make(&bump_lock);
    for (k = 0; k < NPROC; k++) {
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            pthread_t t[NTHREADS];
            int i;

            for (i = 0; i < NTHREADS; i++) {
                if (pthread_create(&t[i], NULL, bumper, NULL) != 0) {
                    _exit(31);
                }
            }
            for (i = 0; i < NTHREADS; i++) {
                pthread_join(t[i], NULL);
            }
            _exit(0);
        }
    }
    for (k = 0; k < NPROC; k++) {
        wait_child(pids[k], 0);
    }
    assert_int_equal(bump_sh->counter, (uint64_t)NPROC * NTHREADS * NBUMPS);
    /* With 16 threads on few cores some takes found it held. */
    assert_true(ptm_lock_waits(bump_lock) > 0);
    shared_free(bump_sh);
}

/* A child holds it: a take that does not wait is refused (EBUSY); one
 * that waits gets it once the child lets go. */
static void test_busy(void **state)
{
    ptm_lock_t *lock;
    shared_t *sh = shared_make(&lock);
    int go[2];
    pid_t pid;
    char c = 0;

    (void)state;
    assert_int_equal(pipe(go), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(60);                  /* never outlives a failed parent */
        if (ptm_lock_take(lock, 1) != APR_SUCCESS) {
            _exit(30);
        }
        sh->held = 1;
        if (read(go[0], &c, 1) != 1) {
            _exit(31);
        }
        ptm_lock_give(lock);
        _exit(0);
    }
    while (!sh->held) {
        usleep(1000);
    }
    assert_true(APR_STATUS_IS_EBUSY(ptm_lock_take(lock, 0)));
    assert_int_equal(write(go[1], "x", 1), 1);
    assert_int_equal(ptm_lock_take(lock, 1), APR_SUCCESS);
    ptm_lock_give(lock);
    wait_child(pid, 0);
    close(go[0]);
    close(go[1]);
    shared_free(sh);
}

/* Its holder is killed holding it: the next taker gets it (waiting or
 * not), and so does every one after. */
static void test_holder_dies(void **state)
{
    int wait;

    (void)state;
    for (wait = 0; wait < 2; wait++) {
        ptm_lock_t *lock;
        shared_t *sh = shared_make(&lock);
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
            if (ptm_lock_take(lock, 1) != APR_SUCCESS) {
                _exit(30);
            }
            sh->held = 1;
            alarm(60);
            for (;;) {
                pause();
            }
        }
        while (!sh->held) {
            usleep(1000);
        }
        kill(pid, SIGKILL);
        wait_child(pid, SIGKILL);
        assert_int_equal(ptm_lock_take(lock, wait), APR_SUCCESS);
        ptm_lock_give(lock);
        assert_int_equal(ptm_lock_take(lock, 0), APR_SUCCESS);
        ptm_lock_give(lock);
        assert_int_equal(ptm_lock_take(lock, 1), APR_SUCCESS);
        ptm_lock_give(lock);
        shared_free(sh);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_give),
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_excludes),
        cmocka_unit_test(test_busy),
        cmocka_unit_test(test_holder_dies),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

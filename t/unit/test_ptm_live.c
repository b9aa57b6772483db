/* The live board (ptm_live.c) and the wake word (ptm_wake.c), across
 * real processes: what one child does, another must see. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "ptm_unit.h"
#include "ptm_live.h"
#include "ptm_wake.h"

/* A board in a shared mapping, as the parent's anonymous shm is. */
static ptm_live_t *board(void)
{
    void *mem = mmap(NULL, ptm_live_size(), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    assert_true(mem != MAP_FAILED);
    return ptm_live_init(mem);
}

static void unmap(ptm_live_t *l)
{
    munmap(l, ptm_live_size());
}

static void wait_ok(pid_t pid)
{
    int status;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_msg("child %d ended with status %d", (int)pid, status);
    }
}

static void test_cap_and_release(void **state)
{
    ptm_live_t *l = board();
    ptm_live_stats_t s;
    int a, b, c, d;

    (void)state;
    a = ptm_live_claim(l, 3, getpid());
    b = ptm_live_claim(l, 3, getpid());
    c = ptm_live_claim(l, 3, getpid());
    assert_true(a >= 0 && b >= 0 && c >= 0 && a != b && b != c && a != c);
    assert_int_equal(ptm_live_claim(l, 3, getpid()), -1);
    assert_int_equal(ptm_live_claim(l, 3, getpid()), -1);
    ptm_live_stats(l, &s);
    assert_int_equal(s.subscribers, 3);
    assert_int_equal(s.high, 3);
    assert_true(s.busy == 2);
    ptm_live_release(l, b);
    ptm_live_release(l, b);             /* a second release is harmless */
    ptm_live_stats(l, &s);
    assert_int_equal(s.subscribers, 2);
    d = ptm_live_claim(l, 3, getpid());
    assert_int_equal(d, b);
    /* A larger cap (a graceful restart raised StreamMax) has room. */
    assert_true(ptm_live_claim(l, 4, getpid()) == 3);
    ptm_live_stats(l, &s);
    assert_int_equal(s.subscribers, 4);
    assert_int_equal(s.high, 4);
    /* A cap of 0 refuses everyone; a cap past the slots is the slots. */
    assert_int_equal(ptm_live_claim(l, 0, getpid()), -1);
    ptm_live_release(l, -1);
    ptm_live_release(l, PTM_LIVE_SLOTS_MAX);
    ptm_live_stats(l, &s);
    assert_int_equal(s.subscribers, 4);
    assert_true(s.busy == 3);
    ptm_live_count_sent(l, 5);
    ptm_live_count_sent(l, 2);
    ptm_live_stats(l, &s);
    assert_true(s.sent == 7);
    assert_string_equal(s.wake, ptm_wake_method());
    unmap(l);
}

static void test_reap_by_pid(void **state)
{
    ptm_live_t *l = board();
    ptm_live_stats_t s;
    pid_t other = getpid() + 1;     /* only a number here: never signalled */

    (void)state;
    assert_int_equal(ptm_live_claim(l, 8, getpid()), 0);
    assert_int_equal(ptm_live_claim(l, 8, other), 1);
    assert_int_equal(ptm_live_claim(l, 8, other), 2);
    assert_int_equal(ptm_live_claim(l, 8, getpid()), 3);
    assert_int_equal(ptm_live_reap(l, other), 2);
    assert_int_equal(ptm_live_reap(l, other), 0);
    assert_int_equal(ptm_live_reap(l, 0), 0);
    ptm_live_stats(l, &s);
    assert_int_equal(s.subscribers, 2);
    assert_int_equal(s.high, 4);
    /* The reaped slots are free again, the others still ours. */
    assert_int_equal(ptm_live_claim(l, 8, getpid()), 1);
    ptm_live_release(l, 0);
    ptm_live_release(l, 1);
    ptm_live_release(l, 3);
    ptm_live_stats(l, &s);
    assert_int_equal(s.subscribers, 0);
    unmap(l);
}

/* A child that claimed and died without releasing (kill -9, no reap from
 * the parent): a claim at the cap finds it gone and takes its slot. */
static void test_dead_owner_reaped_at_the_cap(void **state)
{
    ptm_live_t *l = board();
    ptm_live_stats_t s;
    pid_t pid;
    int status;

    (void)state;
    assert_int_equal(ptm_live_claim(l, 2, getpid()), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(ptm_live_claim(l, 2, getpid()) == 1 ? 0 : 1);
    }
    wait_ok(pid);
    ptm_live_stats(l, &s);
    assert_int_equal(s.subscribers, 2);
    /* Our own pid lives: never reaped by a claim. */
    assert_int_equal(ptm_live_claim(l, 1, getpid()), -1);
    assert_int_equal(ptm_live_claim(l, 2, getpid()), 1);
    ptm_live_stats(l, &s);
    assert_int_equal(s.subscribers, 2);
    assert_true(s.busy == 1);
    /* A live child is not reaped either. */
    ptm_live_release(l, 1);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ptm_live_claim(l, 2, getpid());
        pause();
        _exit(0);
    }
    while (ptm_live_stats(l, &s), s.subscribers < 2) {
        usleep(1000);
    }
    assert_int_equal(ptm_live_claim(l, 2, getpid()), -1);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    assert_int_equal(ptm_live_claim(l, 2, getpid()), 1);
    unmap(l);
}

/* The board of ptm_live_create is shared with children forked later. */
static void test_create_shared_by_fork(void **state)
{
    ptm_live_t *l;
    ptm_live_stats_t s;
    pid_t pid;

    (void)state;
    assert_int_equal(ptm_live_create(&l, gpool), APR_SUCCESS);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ptm_live_count_sent(l, 11);
        ptm_live_notify(l);
        _exit(ptm_live_claim(l, 8, getppid()) >= 0 ? 0 : 1);
    }
    wait_ok(pid);
    ptm_live_stats(l, &s);
    assert_int_equal(s.subscribers, 1);
    assert_true(s.sent == 11);
    assert_int_equal(ptm_live_seen(l), 1);
    assert_int_equal(ptm_live_reap(l, getpid()), 1);
}

static void test_wait_returns(void **state)
{
    ptm_live_t *l = board();
    uint32_t seen = ptm_live_seen(l);
    apr_time_t t0 = apr_time_now();

    (void)state;
    assert_int_equal(ptm_live_wait(l, seen, apr_time_from_msec(50)),
                     APR_TIMEUP);
    assert_true(apr_time_now() - t0 >= apr_time_from_msec(40));
    ptm_live_notify(l);
    /* The word moved since `seen`: no sleep at all. */
    t0 = apr_time_now();
    assert_int_equal(ptm_live_wait(l, seen, apr_time_from_sec(5)),
                     APR_SUCCESS);
    assert_true(apr_time_now() - t0 < apr_time_from_sec(1));
    assert_int_equal(ptm_live_seen(l), seen + 1);
    assert_int_equal(ptm_live_wait(l, seen + 1, 0), APR_TIMEUP);
    unmap(l);
}

/* Subscribers in several processes, all woken by one notify from yet
 * another, each well within the 5 s they would otherwise sleep. */
static void test_wake_across_processes(void **state)
{
    enum { WAITERS = 4, ROUNDS = 20 };
    ptm_live_t *l = board();
    pid_t pids[WAITERS];
    int i, r;

    (void)state;
    for (i = 0; i < WAITERS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            /* Half subscribe, half only watch (the forwarder). */
            int slot = i % 2 ? ptm_live_claim(l, WAITERS, getpid()) : 0;
            uint32_t seen;

            if (i % 2 == 0) {
                ptm_live_watch(l, 1);
            }

            /* Notifies come every 20 ms until ROUNDS: a 5 s sleep means
             * one was slept through. */
            while ((seen = ptm_live_seen(l)) < (uint32_t)ROUNDS) {
                if (ptm_live_wait(l, seen, apr_time_from_sec(5))
                    == APR_TIMEUP) {
                    _exit(2);
                }
            }
            if (i % 2) {
                ptm_live_release(l, slot);
            }
            else {
                ptm_live_watch(l, 0);
            }
            _exit(slot >= 0 ? 0 : 1);
        }
    }
    /* Every waiter subscribed, then one notify per round. */
    for (;;) {
        ptm_live_stats_t s;

        ptm_live_stats(l, &s);
        if (s.subscribers == WAITERS / 2 && s.watchers == WAITERS / 2) {
            break;
        }
        usleep(1000);
    }
    for (r = 0; r < ROUNDS; r++) {
        usleep(20000);
        ptm_live_notify(l);
    }
    for (i = 0; i < WAITERS; i++) {
        wait_ok(pids[i]);
    }
    unmap(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_and_release),
        cmocka_unit_test(test_reap_by_pid),
        cmocka_unit_test(test_dead_owner_reaped_at_the_cap),
        cmocka_unit_test(test_create_shared_by_fork),
        cmocka_unit_test(test_wait_returns),
        cmocka_unit_test(test_wake_across_processes),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* Test hooks: named points inside an update where a unit test can step
 * in, e.g. to die there and leave the state exactly as a crash at that
 * point would; and invariants checked only in tests.  Compiled only into
 * the unit-test builds (the Makefile adds -DPTM_TEST_HOOKS there), never
 * into the module. */
#ifndef PTM_TEST_HOOK_H
#define PTM_TEST_HOOK_H

#ifdef PTM_TEST_HOOKS
#include <stdio.h>
#include <stdlib.h>

/* Called with the point's name and a count (how many times the point was
 * passed in this update); NULL: nothing happens. */
extern void (*ptm_test_hook)(const char *where, unsigned n);

/* Non-zero: readers of the view keep their first copy without checking
 * the generation (ptm_view_read), a reader broken on purpose that the
 * torture test must catch. */
extern int ptm_test_view_unchecked;

#define PTM_TEST_HOOK(where, n)             \
    do {                                    \
        if (ptm_test_hook) {                \
            ptm_test_hook((where), (n));    \
        }                                   \
    } while (0)

/* An invariant checked in these builds only (the module never aborts):
 * broken, it ends the process where it broke, as a test should fail. */
#define PTM_TEST_ASSERT(cond)                                           \
    do {                                                                \
        if (!(cond)) {                                                  \
            fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__,  \
                    #cond);                                             \
            abort();                                                    \
        }                                                               \
    } while (0)
#else
#define PTM_TEST_HOOK(where, n) ((void)sizeof(n))
#define PTM_TEST_ASSERT(cond) ((void)0)
#endif

#endif

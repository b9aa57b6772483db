/* The out-of-line parts of the sequence lock (ptm_seqlock.h): the copy of
 * bytes that may change under the reader, and the reader's back-off. */
#include <sched.h>
#include <string.h>
#include "ptm_seqlock.h"

void ptm_seq_copy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;

    /* Byte loads up to an aligned word ... */
    while (n && ((uintptr_t)s & 7)) {
        *d++ = __atomic_load_n(s++, __ATOMIC_RELAXED);
        n--;
    }
    /* ... whole words (plain moves on every target, each one load),
     * four at a time where it can ... */
    while (n >= 32) {
        const uint64_t *w = (const uint64_t *)(const void *)s;
        uint64_t w0 = __atomic_load_n(w, __ATOMIC_RELAXED);
        uint64_t w1 = __atomic_load_n(w + 1, __ATOMIC_RELAXED);
        uint64_t w2 = __atomic_load_n(w + 2, __ATOMIC_RELAXED);
        uint64_t w3 = __atomic_load_n(w + 3, __ATOMIC_RELAXED);

        memcpy(d, &w0, 8);
        memcpy(d + 8, &w1, 8);
        memcpy(d + 16, &w2, 8);
        memcpy(d + 24, &w3, 8);
        d += 32;
        s += 32;
        n -= 32;
    }
    while (n >= 8) {
        uint64_t w = __atomic_load_n((const uint64_t *)(const void *)s,
                                     __ATOMIC_RELAXED);

        memcpy(d, &w, 8);
        d += 8;
        s += 8;
        n -= 8;
    }
    /* ... and the tail byte by byte: a word would read past the range. */
    while (n--) {
        *d++ = __atomic_load_n(s++, __ATOMIC_RELAXED);
    }
}

void ptm_seq_backoff(unsigned round)
{
    if (round < 3) {
        unsigned i;

        for (i = 0; i < (64u << round); i++) {
            PTM_CPU_RELAX();
        }
    }
    else {
        sched_yield();
    }
}

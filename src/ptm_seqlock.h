/* A sequence lock over shared memory: how readers copy what writers
 * change without taking the lock the writers hold (across their file I/O).
 *
 * One 64-bit word, the generation, is even while nothing changes and odd
 * while a writer (who also holds the store lock: writers never race each
 * other) changes what it guards.  A reader notes an even generation,
 * copies what it needs with relaxed loads (the bytes may change under
 * it), and keeps the copy only if the generation is still the same
 * afterwards; otherwise it copies again.  What it copied before the check
 * may be torn in any way, so every length and offset it read must be
 * bounded before it is used.
 *
 * The fences follow Boehm, "Can seqlocks get along with programming
 * language memory models?" (MSPC 2012): the writer's release fence after
 * making the generation odd orders it before the data stores; the
 * reader's acquire fence before the second load orders the data loads
 * before it.  The writer's data stores are plain ones (memcpy): they
 * happen under the lock and the fences keep the compiler from moving them
 * out of the section; on every target httpd runs on, a racing aligned
 * load sees each word either before or after.  No httpd header here. */
#ifndef PTM_SEQLOCK_H
#define PTM_SEQLOCK_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#define PTM_CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define PTM_CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define PTM_CPU_RELAX() __asm__ __volatile__("" ::: "memory")
#endif

/* ---- writers (holding the lock) ---------------------------------------- */

/* Make the generation odd before a change.  Always a new odd value, even
 * if a writer that died left it odd. */
static inline void ptm_seq_write_begin(uint64_t *gen)
{
    uint64_t g = __atomic_load_n(gen, __ATOMIC_RELAXED);

    __atomic_store_n(gen, (g + 1) | 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

/* Make it even again once the change is complete. */
static inline void ptm_seq_write_end(uint64_t *gen)
{
    uint64_t g = __atomic_load_n(gen, __ATOMIC_RELAXED);

    __atomic_store_n(gen, (g | 1) + 1, __ATOMIC_RELEASE);
}

/* ---- readers (no lock) -------------------------------------------------- */

static inline uint64_t ptm_seq_read_begin(const uint64_t *gen)
{
    return __atomic_load_n(gen, __ATOMIC_ACQUIRE);
}

/* 1 if what was read since ptm_seq_read_begin gave `g` is one snapshot:
 * `g` was even and nothing changed since. */
static inline int ptm_seq_read_valid(const uint64_t *gen, uint64_t g)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return !(g & 1) && __atomic_load_n(gen, __ATOMIC_RELAXED) == g;
}

static inline uint32_t ptm_seq_ld32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint64_t ptm_seq_ld64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/**
 * Copy `n` bytes from shared memory that may change meanwhile: relaxed
 * loads, aligned words where it can, never a byte outside [src, src+n).
 * `dst` is private.  Cannot fail; the bytes may be torn (check the
 * generation afterwards).
 */
void ptm_seq_copy(void *dst, const void *src, size_t n);

/**
 * Wait a little for a writer in the middle of a change: `round` 0, 1, 2
 * spin (its section copies a few hundred bytes), later rounds give the
 * processor away (the writer may have been preempted, and on a machine of
 * few cores it needs ours).
 */
void ptm_seq_backoff(unsigned round);

#endif

/* FNV-1a, 32 and 64 bits: the one non-cryptographic hash of the module
 * (current-view keys, ring record checks, run ties, the cursor's
 * parameters, GET /events' type buckets, the runs cache's prefix).
 * Continuable: pass the result of one call as `h` of the next. */
#ifndef PTM_HASH_H
#define PTM_HASH_H

#include <stddef.h>
#include <stdint.h>

#define PTM_FNV32_START 2166136261u
#define PTM_FNV64_START 14695981039346656037ULL

static inline uint32_t ptm_fnv32(uint32_t h, const void *p, size_t n)
{
    const unsigned char *c = p;

    while (n--) {
        h = (h ^ *c++) * 16777619u;
    }
    return h;
}

static inline uint64_t ptm_fnv64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;

    while (n--) {
        h = (h ^ *c++) * 1099511628211ULL;
    }
    return h;
}

#endif

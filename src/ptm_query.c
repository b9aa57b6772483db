/* The order of GET /events (SPEC §12.2); see ptm_query.h. */
#include "ptm_query.h"

int ptm_key_cmp(const ptm_key_t *a, const ptm_key_t *b)
{
    /* Compared, never subtracted: ts and seq span the whole 64 bits. */
    if (a->ts != b->ts) {
        return a->ts < b->ts ? -1 : 1;
    }
    if (a->stream != b->stream) {
        return a->stream < b->stream ? -1 : 1;
    }
    if (a->seq != b->seq) {
        return a->seq < b->seq ? -1 : 1;
    }
    if (a->tie != b->tie) {
        return a->tie < b->tie ? -1 : 1;
    }
    return 0;
}

uint32_t ptm_query_tie(const char *run_dir, size_t len)
{
    const unsigned char *s = (const unsigned char *)run_dir;
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= s[i];
        h *= 16777619u;
    }
    /* 0 is the site's tie: a run must never sort as one. */
    return h ? h : 1;
}

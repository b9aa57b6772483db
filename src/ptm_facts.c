/* What each child knows of the files GET /events reads; see ptm_facts.h.
 *
 * A finished day file is read by every GET /events whose window is near
 * its day, and mostly to learn that its events are not in the window (its
 * neighbours are read because a client's ts may be a day off).  Each child
 * remembers, per file (device and inode) as it was (size, mtime and
 * ctime), the ts range of its lines and how many are damaged, as found by
 * reading it to its end: a file whose range cannot meet a slice is then
 * neither opened nor read (its damaged lines are counted all the same),
 * and one that can is read without parsing the ts of the lines of other
 * types.  Any change to the file (an append, a rewrite, a chmod) changes
 * its size or times and misses; the caller looks with a stat that does
 * not follow a link.  FACTS_SLOTS entries, direct-mapped by inode; one
 * mutex held for a copy in or out (threads of worker and event).
 *
 * Well-formed lines.  Every line of a file that GET /events sends must be
 * well-formed JSON, and checking that was a third of the cost of an
 * export (the same finished day file, line by line, on every request).
 * So each file's entry also says whether all the lines it could send were
 * found well-formed, and in which bytes: a digest of the whole file as it
 * was read.  The size and times alone cannot say the bytes are the same:
 * the files are the User's (SPEC 11.6), and a www-data neighbour can
 * rewrite one in place with the same size within one tick of the clock
 * that stamps ctime, or write through a shared mapping, whose later
 * stores to a page already dirty change no time at all.  The check is
 * skipped only for bytes that are read whole into memory (the bytes then
 * sent are those bytes) and whose digest is the one the check was made
 * on.  The digest is NH (as UMAC's: sums of products of 32-bit words
 * each offset by a key word) over 1 KiB blocks, the blocks' sums chained
 * by a polynomial modulo 2^61-1: for two different inputs of the same
 * length it collides with a chance of about 2^-32 under a random key,
 * and the key is drawn by each process at its first digest and never
 * leaves it; nothing the module answers depends on a digest but whether
 * a line is checked.  (Any process of the User can read a child's memory
 * anyway; what this guards is that a damaged or rewritten file is never
 * passed off as the one checked.)  It runs at several GB/s, the check
 * at well under one. */
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include "ptm_facts.h"

#define FACTS_SLOTS 1024

static pthread_mutex_t facts_lock = PTHREAD_MUTEX_INITIALIZER;
static ptm_facts_t facts[FACTS_SLOTS];
#ifdef PTM_TEST_HOOKS
unsigned ptm_history_facts_slots = FACTS_SLOTS;
#define FACTS_N ((size_t)ptm_history_facts_slots)
/* A test makes a rewrite in place look like the same file (as one within
 * a tick of the clock, or through a mapping, would). */
int ptm_facts_ignore_times;
#define TIMES_EQ(e, st) (ptm_facts_ignore_times \
    || (ts_eq(&(e)->mtime, &(st)->st_mtim) \
        && ts_eq(&(e)->ctime, &(st)->st_ctim)))
#else
#define FACTS_N ((size_t)FACTS_SLOTS)
#define TIMES_EQ(e, st) \
    (ts_eq(&(e)->mtime, &(st)->st_mtim) && ts_eq(&(e)->ctime, &(st)->st_ctim))
#endif

static size_t facts_slot(const struct stat *st)
{
    uint64_t k = (uint64_t)st->st_ino * 0x9e3779b97f4a7c15ULL
                 ^ (uint64_t)st->st_dev;

    return (size_t)(k % FACTS_N);
}

static int ts_eq(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

int ptm_facts_get(ptm_facts_t *f, const struct stat *st)
{
    ptm_facts_t *e = &facts[facts_slot(st)];
    int hit;

    pthread_mutex_lock(&facts_lock);
    hit = e->ino == st->st_ino && e->dev == st->st_dev && e->ino != 0
          && e->size == st->st_size && TIMES_EQ(e, st);
    if (hit) {
        *f = *e;
    }
    pthread_mutex_unlock(&facts_lock);
    return hit;
}

void ptm_facts_put(const struct stat *st, apr_time_t min, apr_time_t max,
                   uint64_t dmg, int verified, uint64_t digest)
{
    ptm_facts_t *e = &facts[facts_slot(st)];

    pthread_mutex_lock(&facts_lock);
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->size = st->st_size;
    e->mtime = st->st_mtim;
    e->ctime = st->st_ctim;
    e->min = min;
    e->max = max;
    e->dmg = dmg;
    e->verified = verified;
    e->digest = digest;
    pthread_mutex_unlock(&facts_lock);
}

/* ---- the digest ---------------------------------------------------------*/

#define NH_WORDS 256                    /* 32-bit words of a block */
#define P61 (((uint64_t)1 << 61) - 1)

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_ok;
static uint32_t nh_key[NH_WORDS];
static uint64_t poly_key;               /* in [1, P61) */

static void key_init(void)
{
    unsigned char *b = (unsigned char *)nh_key;
    size_t have = 0;
    ssize_t got;

    while (have < sizeof(nh_key)) {
        got = getrandom(b + have, sizeof(nh_key) - have, 0);
        if (got <= 0) {
            return;                     /* no key: key_ok stays 0 */
        }
        have += (size_t)got;
    }
    do {
        if (getrandom(&poly_key, sizeof(poly_key), 0)
            != (ssize_t)sizeof(poly_key)) {
            return;
        }
        poly_key &= P61;
    } while (poly_key == 0 || poly_key == P61);
    key_ok = 1;
}

/* (h * poly_key + m) mod 2^61-1, h < 2^61, m < 2^32.  The product (below
 * 2^122) as hi * 2^64 + lo: with a 128-bit type where there is one, else
 * from 32-bit halves (32-bit targets). */
static uint64_t poly_step(uint64_t h, uint64_t m)
{
    uint64_t lo, hi, r;
#if defined(__SIZEOF_INT128__) && !defined(PTM_NO_INT128)
    unsigned __int128 x = (unsigned __int128)h * poly_key;

    lo = (uint64_t)x;
    hi = (uint64_t)(x >> 64);
#else
    uint64_t a0 = h & 0xffffffffu, a1 = h >> 32;
    uint64_t b0 = poly_key & 0xffffffffu, b1 = poly_key >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);

    lo = (mid << 32) | (p00 & 0xffffffffu);
    hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
#endif
    /* 2^64 = 8 (mod 2^61-1): the product is lo's low 61 bits plus the
     * rest, each below 2^61. */
    r = (lo & P61) + ((hi << 3) | (lo >> 61)) + m;
    r = (r & P61) + (r >> 61);
    return r >= P61 ? r - P61 : r;
}

/* NH of `words` 32-bit words (an even number) at `s`. */
static uint64_t nh(const unsigned char *s, size_t words)
{
    uint64_t sum = 0;
    size_t i;

    for (i = 0; i < words; i += 2) {
        uint32_t a, b;

        memcpy(&a, s + 4 * i, 4);
        memcpy(&b, s + 4 * i + 4, 4);
        sum += (uint64_t)(uint32_t)(a + nh_key[i])
               * (uint32_t)(b + nh_key[i + 1]);
    }
    return sum;
}

int ptm_facts_digest(uint64_t *out, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char tail[4 * NH_WORDS];
    uint64_t h = 0, v;
    size_t left = n, words;

    pthread_once(&key_once, key_init);
    if (!key_ok) {
        return -1;
    }
    while (left) {
        if (left >= sizeof(tail)) {
            v = nh(u, NH_WORDS);
            u += sizeof(tail);
            left -= sizeof(tail);
        }
        else {
            /* The last block, zero-padded to whole pairs of words (the
             * length is chained in below). */
            words = (left + 7) / 8 * 2;
            memset(tail, 0, words * 4);
            memcpy(tail, u, left);
            v = nh(tail, words);
            left = 0;
        }
        h = poly_step(h, v >> 32);
        h = poly_step(h, v & 0xffffffffu);
    }
    h = poly_step(h, (uint64_t)n >> 32);
    *out = poly_step(h, (uint64_t)n & 0xffffffffu);
    return 0;
}

/* Byte counts and the body limit; see ptm_conf.h. */
#include "ptm_conf.h"

apr_status_t ptm_conf_bytes(apr_uint64_t *out, const char *arg,
                            apr_uint64_t min, apr_uint64_t max)
{
    apr_uint64_t v = 0;
    int big = 0;
    const char *s;

    if (!arg || !*arg) {
        return APR_EINVAL;
    }
    /* By hand rather than apr_strtoff/strtoull: those take a sign and
     * leading space, and apr_off_t is the wrong type on a 32-bit build. */
    for (s = arg; *s; s++) {
        unsigned d = (unsigned char)*s - '0';

        if (d > 9) {
            return APR_EINVAL;
        }
        if (v > (APR_UINT64_MAX - d) / 10) {
            big = 1;               /* keep going: "1e999..." is EINVAL */
        }
        else {
            v = v * 10 + d;
        }
    }
    if (big || v < min || v > max) {
        return APR_ERANGE;
    }
    *out = v;
    return APR_SUCCESS;
}

apr_size_t ptm_conf_body_limit(apr_uint64_t max_body, apr_uint64_t lrb)
{
    apr_uint64_t limit = max_body;

    if (lrb > 0 && lrb < limit) {
        limit = lrb;
    }
    if (limit > (apr_uint64_t)APR_SIZE_MAX - 1) {
        limit = (apr_uint64_t)APR_SIZE_MAX - 1;
    }
    return (apr_size_t)limit;
}

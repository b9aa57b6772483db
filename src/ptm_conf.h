/* Byte counts from directives and the request body limit: the arithmetic
 * the glue must get right on 32-bit builds too, where a size_t holds less
 * than an apr_off_t.  No httpd here, so it can be unit-tested. */
#ifndef PTM_CONF_H
#define PTM_CONF_H

#include <apr.h>
#include <apr_errno.h>

/**
 * Parse a directive's byte count: ASCII decimal digits only (no sign,
 * space, exponent, hex or suffix), between `min` and `max` inclusive.
 * Returns APR_SUCCESS with `*out` set, APR_EINVAL when `arg` is not such
 * a number, or APR_ERANGE when it is outside [min, max] (however many
 * digits it has).  `*out` is untouched on failure.
 */
apr_status_t ptm_conf_bytes(apr_uint64_t *out, const char *arg,
                            apr_uint64_t min, apr_uint64_t max);

/**
 * The most request-body bytes to accept: `max_body`, or httpd's
 * LimitRequestBody `lrb` when that is smaller (0 means no limit), and
 * never more than APR_SIZE_MAX - 1, so the body and a terminating NUL fit
 * one buffer.  Never fails.
 */
apr_size_t ptm_conf_body_limit(apr_uint64_t max_body, apr_uint64_t lrb);

#endif

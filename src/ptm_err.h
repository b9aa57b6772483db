/* What a failed core step hands back to the router: an HTTP status and the
 * JSON `detail` (a string, or the list of a 422).  The router turns it into
 * the {"detail": ...} body; one shape for every error. */
#ifndef PTM_ERR_H
#define PTM_ERR_H

#include <jansson.h>

typedef struct {
    int status;        /* 0 while no error */
    json_t *detail;    /* owned by the error: a string or a 422 item list */
    const char *log;   /* extra cause for the error log (pool string) */
} ptm_err_t;

/** Record `status` with a string detail (copied). */
void ptm_err_set(ptm_err_t *e, int status, const char *detail);

/** Start or extend a 422: append one pydantic-2 style item
 * {type, loc, msg, input[, ctx]}.  Takes ownership of `loc`, `input` and
 * `ctx` (any may be NULL; a NULL input is JSON null). */
void ptm_err_add_item(ptm_err_t *e, const char *type, json_t *loc,
                      const char *msg, json_t *input, json_t *ctx);

/** Release what the error owns and reset it. */
void ptm_err_clear(ptm_err_t *e);

#endif

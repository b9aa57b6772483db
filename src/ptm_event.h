/* The request models of SPEC §2.3-§2.6 (how a body is read, pydantic-2 lax
 * validation of EventRequest and RunStartRequest, the exact 422 items) and
 * the event envelope of §3.6, serialised once into the pieces that the file
 * line, the response and the current view are assembled from. */
#ifndef PTM_EVENT_H
#define PTM_EVENT_H

#include <apr_pools.h>
#include <jansson.h>
#include "ptm_buf.h"
#include "ptm_err.h"

/**
 * Read a request body as FastAPI does (SPEC §2.3): `*out` is a new object,
 * or NULL when there is "no body" (empty, or the JSON literal null).
 * Returns 0, or -1 with `err` set (422, or 400 for too deep nesting).
 */
int ptm_body_parse(json_t **out, ptm_err_t *err, const char *content_type,
                   const char *buf, size_t len);

/** 1 if the Content-Type names JSON: application/json or application/...+json,
 * case-insensitive, parameters ignored. */
int ptm_body_is_json_type(const char *content_type);

typedef struct {
    json_t *body;          /* owned; the fields below borrow from it */
    const char *type;
    size_t type_len;
    json_t *data;
    json_t *meta;          /* owned reference (a new {} when absent) */
    const char *ts;        /* NULL: use the server clock */
    size_t ts_len;
    int make_current;
    int store_permanently;
    size_t size_hint;      /* the body's bytes (0: unknown): the envelope
                            * is about as long, so its buffer is made that
                            * big at once rather than grown by doubling */
} ptm_event_req_t;

/**
 * Validate an EventRequest.  Takes ownership of `body` (may be NULL for "no
 * body").  Returns 0, or -1 with every failing field reported in `err`.
 * Either way release with ptm_event_req_free().
 */
int ptm_event_validate(ptm_event_req_t *ev, json_t *body, ptm_err_t *err);
void ptm_event_req_free(ptm_event_req_t *ev);

/** Pydantic-2 lax bool: 1/0, or -1 after adding the item at `field`. */
int ptm_event_lax_bool(const json_t *v, const char *field, ptm_err_t *err);

/* The envelope in the pieces it is assembled from, so the seq can be put in
 * under the lock without serialising anything there:
 *   file line  = {"seq":N <ts_part> ,"stream":"<s>" <body_part> \n
 *   public     = {"seq":N <ts_part> <body_part>
 * where ts_part = ,"ts":"..." and body_part = ,"type":..,"data":..,"meta":..} */
typedef struct {
    const char *key;       /* type as a JSON string: the current-view key */
    size_t key_len;
    const char *ts_part;
    size_t ts_len;
    const char *body_part;
    size_t body_len;
    /* The PTM_ENVELOPE_HEAD bytes right before ts_part, in the same
     * block, free for {"seq":N: the public envelope is then one slice of
     * the block (ptm_envelope_public), not a copy. */
    char *head;
} ptm_envelope_t;

/* Room for {"seq": and 20 digits. */
#define PTM_ENVELOPE_HEAD 27

/**
 * The public envelope of `env` with seq `seq` ({"seq":N <ts_part>
 * <body_part>), written into the room before ts_part: returns where it
 * starts, with its length in `*len`.  The block is changed: call it once
 * the parts have been stored.
 */
const char *ptm_envelope_public(const ptm_envelope_t *env, uint64_t seq,
                                size_t *len);

/**
 * Serialise the envelope of `ev` with `server_ts` used when the client sent
 * no ts, and meta.run_id set to `run_id` when it is not NULL (keeping the
 * key's position, SPEC §3.6).  Returns 0, or -1 with a 500 in `err`.
 */
int ptm_event_envelope(ptm_envelope_t *env, ptm_err_t *err,
                       ptm_event_req_t *ev, const char *server_ts,
                       const char *run_id, size_t run_id_len, apr_pool_t *p);

typedef struct {
    json_t *body;          /* owned */
    const char *run_dir;   /* NULL when null or absent */
    size_t run_dir_len;
    const char *run_id;    /* resolved from run_id / meta.run_id; NULL: derive */
    size_t run_id_len;
    int run_id_from_meta;  /* where run_id came from, for error locations */
    json_t *meta;          /* owned reference (a new {} when absent) */
} ptm_run_req_t;

/**
 * Validate a RunStartRequest (the body is optional) and resolve the run id
 * the way upstream's `run_id or meta.get("run_id")` does, with integers
 * stringified and other truthy non-strings refused (SPEC §11.3 F15).
 * Takes ownership of `body`.  Returns 0 or -1 with `err` set.
 */
int ptm_run_req_validate(ptm_run_req_t *rr, json_t *body, ptm_err_t *err,
                         apr_pool_t *p);
void ptm_run_req_free(ptm_run_req_t *rr);

#endif

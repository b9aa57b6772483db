/* JSON for the telemetry core, and the only place that knows jansson's
 * quirks.
 *
 * Parsing follows Python's json.loads (what upstream runs) so that error
 * positions and messages in 422 bodies match upstream's, with the narrowing
 * of SPEC §11: NaN/Infinity, numbers that overflow a double, integers
 * outside int64, invalid UTF-8 and lone surrogates are rejected.  Objects
 * keep key order; a duplicate key keeps its first position and its last
 * value.
 *
 * Serialising is byte-identical to Python's
 * json.dumps(v, separators=(",", ":")) with ensure_ascii: that is what the
 * NDJSON files must contain, and it is also valid for responses. */
#ifndef PTM_JSON_H
#define PTM_JSON_H

#include <stddef.h>
#include <jansson.h>
#include "ptm_buf.h"

/* Deeper documents are refused (upstream: Python RecursionError -> 400). */
#define PTM_JSON_MAX_DEPTH 512

typedef enum {
    PTM_JSON_OK = 0,
    PTM_JSON_SYNTAX,   /* 422 json_invalid: pos + msg as Python would say */
    PTM_JSON_TOO_DEEP  /* 400 There was an error parsing the body */
} ptm_json_errkind_e;

typedef struct {
    ptm_json_errkind_e kind;
    /* Position in characters (code points) of the decoded text after an
     * optional UTF-8 BOM, like Python's JSONDecodeError.pos. */
    size_t pos;
    /* Python's message ("Expecting value", ...), or ours for the cases
     * Python accepts and we do not ("NaN and Infinity are not allowed"). */
    char msg[128];
} ptm_json_error_t;

/**
 * Parse a whole document (`buf` need not be NUL-terminated).  Returns a new
 * reference, or NULL with `err` filled in.  The JSON literal null gives a
 * json_null() value (callers treat it as "no body").
 */
json_t *ptm_json_parse(const char *buf, size_t len, ptm_json_error_t *err);

/**
 * Append the Python json.dumps(separators=(",",":"), ensure_ascii=True)
 * form of `v`.  Returns 0, or -1 for a value Python could not print
 * identically (a NaN/Infinity real), in which case `out` is unspecified.
 */
int ptm_json_dump(ptm_buf_t *out, const json_t *v);

/** Append `s` (UTF-8, `len` bytes, may contain NUL) as a JSON string literal
 * with ensure_ascii escaping. */
void ptm_json_dump_string(ptm_buf_t *out, const char *s, size_t len);

/** 1 if `s` (`len` bytes) is a JSON string exactly as
 * ptm_json_dump_string writes one (so equal strings are equal bytes);
 * 0 otherwise. */
int ptm_json_string_canonical(const char *s, size_t len);

/** Append a double the way Python repr() prints it (shortest round-trip). */
void ptm_json_dump_real(ptm_buf_t *out, double d);

/** Append Python's repr() of the str `s` (UTF-8), e.g. 'abc', "it's". */
void ptm_json_py_repr(ptm_buf_t *out, const char *s, size_t len);

/**
 * 1 if `s` (`len` bytes) is exactly one well-formed JSON value (RFC 8259,
 * UTF-8, at most PTM_JSON_MAX_DEPTH deep) within what the parser takes
 * (integers in int64, floats in a double, surrogates paired: SPEC 11.3 F7,
 * F9), surrounding whitespace allowed; 0 otherwise.  Builds no value (only
 * a float token longer than 64 bytes is copied to the heap to be read), so
 * it can check stored values under a lock.
 */
int ptm_json_well_formed(const char *s, size_t len);

/** 1 if `s` is valid UTF-8 (no surrogates, no overlongs, <= U+10FFFF). */
int ptm_utf8_valid(const char *s, size_t len);

/** A JSON string of `s` decoded as UTF-8 with U+FFFD for invalid bytes
 * (the `input` of a 422 for a body that was not parsed as JSON). */
json_t *ptm_json_string_lossy(const char *s, size_t len);

/** Python truthiness of a JSON value: null, false, 0, 0.0, "", [] and {}
 * are false. */
int ptm_json_truthy(const json_t *v);

#endif

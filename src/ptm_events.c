/* GET /events (SPEC §12.2): the parameters checked (ptm_query), the events
 * selected (ptm_history), the answer assembled.  The JSON form and an
 * NDJSON answer with a limit hold at most `limit` events and about
 * PTM_EVENTS_PAGE_BYTES of them, so they are built whole (the cursor must
 * be known before the head goes out); an
 * NDJSON answer without a limit is streamed through the glue's writer as
 * the events come, in bounded memory whatever the window. */
#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include "ptm_api.h"
#include "ptm_history.h"
#include "ptm_json.h"
#include "ptm_query.h"
#include "ptm_stash.h"
#include "ptm_time.h"

#define NDJSON_TYPE "application/x-ndjson"
/* A streamed answer goes to the glue this much at a time: one write (one
 * pass down the filters) per 64 KiB rather than two per line. */
#define STREAM_CHUNK ((size_t)64 * 1024)
/* An answer held whole starts in a buffer this big (kept per thread). */
#define HELD_START ((size_t)512 * 1024)

/* 1 if the Accept header names application/x-ndjson with a quality above
 * zero (media types are case-insensitive; parameters other than q are
 * ignored). */
static int accepts_ndjson(const char *accept)
{
    const char *s = accept;

    while (s && *s) {
        const char *end = strchr(s, ','), *semi, *q;
        size_t n;

        if (!end) {
            end = s + strlen(s);
        }
        while (s < end && (*s == ' ' || *s == '\t')) {
            s++;
        }
        semi = memchr(s, ';', (size_t)(end - s));
        n = (size_t)((semi ? semi : end) - s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
            n--;
        }
        if (n == sizeof(NDJSON_TYPE) - 1
            && strncasecmp(s, NDJSON_TYPE, n) == 0) {
            int zero = 0;

            /* q=0, q=0.0, ...: "not acceptable". */
            for (q = semi; q && q < end; q = memchr(q + 1, ';',
                                                    (size_t)(end - q - 1))) {
                const char *v = q + 1;

                while (v < end && (*v == ' ' || *v == '\t')) {
                    v++;
                }
                if (end - v >= 2 && (v[0] == 'q' || v[0] == 'Q')
                    && v[1] == '=') {
                    zero = 1;
                    for (v += 2; v < end && *v != ';'; v++) {
                        if (*v >= '1' && *v <= '9') {
                            zero = 0;
                        }
                    }
                }
            }
            if (!zero) {
                return 1;
            }
        }
        s = *end ? end + 1 : end;
    }
    return 0;
}

typedef struct {
    ptm_buf_t *buf;             /* built whole: the answer's body */
    int json;                   /* ... as the JSON form */
    unsigned n;
    const ptm_api_out_t *out;   /* else streamed here */
    int started;
    char *chunk;                /* streamed: lines not written yet */
    size_t chunk_len;
} sink_t;

/* Write what the stream holds. */
static apr_status_t flush_chunk(sink_t *s)
{
    apr_status_t rv;

    if (!s->chunk_len) {
        return APR_SUCCESS;
    }
    rv = s->out->write(s->out->ctx, s->chunk, s->chunk_len);
    s->chunk_len = 0;
    return rv;
}

static apr_status_t emit(void *ctx, const char *line, size_t len)
{
    sink_t *s = ctx;
    apr_status_t rv;

    if (s->buf) {
        if (s->json && s->n) {
            ptm_buf_putc(s->buf, ',');
        }
        ptm_buf_add(s->buf, line, len);
        if (!s->json) {
            ptm_buf_putc(s->buf, '\n');
        }
        s->n++;
        return APR_SUCCESS;
    }
    if (!s->started) {
        s->started = 1;
        if ((rv = s->out->start(s->out->ctx, NDJSON_TYPE)) != APR_SUCCESS) {
            return rv;
        }
    }
    s->n++;
    if (s->chunk_len + len + 1 > STREAM_CHUNK) {
        if ((rv = flush_chunk(s)) != APR_SUCCESS) {
            return rv;
        }
        if (len + 1 > STREAM_CHUNK) {
            /* A line longer than a chunk: as it is. */
            if ((rv = s->out->write(s->out->ctx, line, len)) != APR_SUCCESS) {
                return rv;
            }
            return s->out->write(s->out->ctx, "\n", 1);
        }
    }
    memcpy(s->chunk + s->chunk_len, line, len);
    s->chunk[s->chunk_len + len] = '\n';
    s->chunk_len += len + 1;
    return APR_SUCCESS;
}

/* Start `b` in a buffer kept from an earlier request of this thread: a
 * large answer then costs no fresh pages (nor copies as it grows, up to
 * HELD_START; beyond, ptm_buf grows in the pool as before).  The body goes
 * to the client after this returns (the glue sends it; httpd copies what
 * it cannot write at once): the buffer goes back to the thread's stash
 * with the request's pool. */
static void held_init(ptm_buf_t *b, apr_pool_t *p)
{
    size_t cap;
    void *mem = ptm_stash_take_for(p, HELD_START, &cap);

    if (!mem) {
        ptm_buf_init(b, p, 4096);
        return;
    }
    b->pool = p;
    b->data = mem;
    b->cap = cap;
    b->len = 0;
}

void ptm_events_handle(ptm_api_resp_t *resp, const ptm_api_conf_t *conf,
                       const ptm_api_req_t *req, apr_pool_t *p)
{
    ptm_err_t err = { 0, NULL, NULL };
    ptm_history_conf_t hc;
    ptm_history_result_t res;
    ptm_query_t q;
    ptm_buf_t b;
    sink_t sink;
    uint64_t epoch = ptm_store_epoch(conf->store);
    const char *next = NULL;
    apr_status_t rv;

    if (ptm_query_parse(&q, &err, req->args, accepts_ndjson(req->accept),
                        req->now, epoch, p) != 0) {
        ptm_api_respond_err(resp, &err, p);
        return;
    }
    hc.store = conf->store;
    hc.site_dir = conf->site_dir;
    hc.run_roots = conf->run_roots;
    hc.gone = req->out ? req->out->gone : NULL;
    hc.gone_ctx = req->out ? req->out->ctx : NULL;
    hc.page_bytes = 0;
    memset(&sink, 0, sizeof(sink));
    if (!q.ndjson || q.limit || !req->out) {
        /* Held whole: `limit` bounds the events, this their bytes. */
        hc.page_bytes = PTM_EVENTS_PAGE_BYTES;
        held_init(&b, p);
        sink.buf = &b;
        sink.json = !q.ndjson;
        if (sink.json) {
            ptm_buf_puts(&b, "{\"events\":[");
        }
    }
    else {
        sink.out = req->out;
        sink.chunk = apr_palloc(p, STREAM_CHUNK);
    }
    memset(&res, 0, sizeof(res));
    rv = ptm_history_query(&res, &hc, &q, req->now, emit, &sink, p);
    if (rv == APR_SUCCESS && sink.out) {
        rv = flush_chunk(&sink);
    }
    resp->skipped = res.skipped;
    if (rv != APR_SUCCESS) {
        char why[120];

        if (APR_STATUS_IS_ECONNABORTED(rv)) {
            /* Nobody to answer: the glue writes nothing to a gone client. */
            resp->status = 499;
            resp->streamed = 1;
            resp->log = "GET /events: the client went away";
            return;
        }
        if (sink.started) {
            /* Half an answer is out: only the connection can say so. */
            resp->streamed = 1;
            resp->status = 500;
            resp->log = apr_pstrcat(p, "GET /events broke off: ",
                                    apr_strerror(rv, why, sizeof(why)),
                                    NULL);
            return;
        }
        ptm_err_set(&err, 500, "Cannot read the history");
        err.log = apr_pstrcat(p, "cannot read the history: ",
                              apr_strerror(rv, why, sizeof(why)), NULL);
        ptm_api_respond_err(resp, &err, p);
        return;
    }
    if (res.more) {
        next = ptm_query_cursor(&q, &res.last, epoch, p);
    }
    if (sink.out) {
        if (!sink.started) {
            /* Nothing matched: an empty 200 all the same. */
            if ((rv = req->out->start(req->out->ctx, NDJSON_TYPE))
                != APR_SUCCESS) {
                resp->log = "GET /events: the client went away";
            }
        }
        resp->streamed = 1;
        resp->status = 200;
        return;
    }
    if (sink.json) {
        ptm_buf_puts(&b, "],\"next\":");
        if (next) {
            ptm_json_dump_string(&b, next, strlen(next));
        }
        else {
            ptm_buf_puts(&b, "null");
        }
        ptm_buf_puts(&b, ",\"recent_since\":");
        if (res.recent_since) {
            char ts[PTM_TS_LEN + 1];

            ptm_time_utc_iso(ts, res.recent_since);
            ptm_buf_putc(&b, '"');
            ptm_buf_puts(&b, ts);
            ptm_buf_putc(&b, '"');
        }
        else {
            ptm_buf_puts(&b, "null");
        }
        ptm_buf_putc(&b, '}');
    }
    else {
        resp->content_type = NDJSON_TYPE;
        resp->next_cursor = next;
    }
    resp->status = 200;
    resp->body = b.data;
    resp->body_len = b.len;
}

/* GET /stream (SPEC §12.3): the live feed as Server-Sent Events.  One
 * subscriber holds the caller (a worker of httpd) from its first byte to
 * its last: a slot of the live board (ptm_live.h) caps how many do across
 * every child, the wake word tells it when an event was accepted in any
 * child, and the recent-events ring (SPEC §12.1) is where it copies the
 * events from, so that a subscriber never misses one between two looks
 * and a reconnecting one resumes exactly after its Last-Event-ID.
 *
 * The store lock is only held inside ptm_store_recent and
 * ptm_store_current_at, which copy what they find into this request's
 * memory: nothing is written to the client under it, so a client that
 * reads slowly stalls its own worker (until httpd's Timeout), never a
 * POST.  httpd-free: the glue gives the writer and the two questions
 * (is the client gone, is httpd stopping) through req->out. */
#include <string.h>
#include <unistd.h>
#include <apr_strings.h>
#include "ptm_api.h"
#include "ptm_json.h"
#include "ptm_live.h"
#include "ptm_query.h"
#include "ptm_sse.h"

#define SSE_TYPE "text/event-stream"
/* Events copied out of the ring per hold of the lock. */
#define COPY_MAX 256
/* How long a refused EventSource waits before it tries again, and how
 * soon one whose stream the server ended comes back. */
#define RETRY_BUSY_MS 30000
#define RETRY_END_MS 1000
#define RETRY_AFTER_BUSY "30"
#define DEFAULT_PING apr_time_from_sec(15)
#define DEFAULT_TICK apr_time_from_msec(500)
/* At most one look at the ring per this long per subscriber: in a burst
 * of POSTs one look carries many events, instead of every subscriber
 * taking the store lock again for each one (which would slow the POSTs,
 * SPEC §12.3 wants them answered as fast with subscribers as without).
 * Well inside the 50 ms an event may take to arrive. */
#define LOOK_EVERY apr_time_from_msec(5)

/* The slot held, given back once: by the end of the stream, or by the
 * request pool's cleanup when the stream never reaches its end (the
 * child exits in the middle, httpd destroying the pools). */
typedef struct {
    ptm_live_t *live;
    int slot;
} hold_t;

static apr_status_t hold_release(void *data)
{
    hold_t *h = data;

    if (h->slot >= 0) {
        ptm_live_release(h->live, h->slot);
        h->slot = -1;
    }
    return APR_SUCCESS;
}

/* ---- the query ------------------------------------------------------------ */

typedef struct {
    apr_array_header_t *types;  /* ptm_query_str_t: JSON strings */
    const char *last_id;        /* the query's last_event_id, or NULL */
    size_t last_id_len;
} params_t;

/* `type` (repeatable) and `last_event_id`; anything else is ignored, as
 * FastAPI ignores parameters a route does not declare.  Returns 0, or -1
 * with a 422 in `err` for a type that is not UTF-8 (as GET /events). */
static int parse_params(params_t *pa, ptm_err_t *err, const char *args,
                        apr_pool_t *p)
{
    const char *s = args, *end, *eq;
    char *name, *val;
    size_t n, name_len, val_len;

    pa->types = apr_array_make(p, 2, sizeof(ptm_query_str_t));
    pa->last_id = NULL;
    pa->last_id_len = 0;
    while (s && *s) {
        end = strchr(s, '&');
        n = end ? (size_t)(end - s) : strlen(s);
        eq = memchr(s, '=', n);
        name = ptm_query_unescape(&name_len, s, eq ? (size_t)(eq - s) : n, 1,
                                  p);
        val = ptm_query_unescape(&val_len, eq ? eq + 1 : "",
                                 eq ? (size_t)(s + n - eq - 1) : 0, 1, p);
        if (name_len == 4 && memcmp(name, "type", 4) == 0) {
            ptm_query_str_t *t;
            ptm_buf_t b;

            if (!ptm_utf8_valid(val, val_len)) {
                json_t *loc = json_array();

                json_array_append_new(loc, json_string("query"));
                json_array_append_new(loc, json_string("type"));
                ptm_err_add_item(err, "string_unicode", loc,
                                 "Input should be a valid string, unable "
                                 "to parse raw data as a unicode string",
                                 ptm_json_string_lossy(val, val_len), NULL);
                return -1;
            }
            ptm_buf_init(&b, p, val_len + 3);
            ptm_json_dump_string(&b, val, val_len);
            t = apr_array_push(pa->types);
            t->s = b.data;
            t->len = b.len;
        }
        else if (name_len == 13 && memcmp(name, "last_event_id", 13) == 0
                 && !pa->last_id) {
            pa->last_id = val;
            pa->last_id_len = val_len;
        }
        s = end ? end + 1 : NULL;
    }
    return 0;
}

/* The ring's filter: under the store lock, so only a compare. */
static int want_type(void *ctx, const ptm_recent_t *ev)
{
    const apr_array_header_t *types = ctx;
    const ptm_query_str_t *t = (const ptm_query_str_t *)types->elts;
    int i;

    for (i = 0; i < types->nelts; i++) {
        if (t[i].len == ev->type_len
            && memcmp(t[i].s, ev->type, t[i].len) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- refusals ------------------------------------------------------------- */

/* Over the cap (or no feed at all): an EventSource gets a stream it can
 * understand (it would retry a 503 at once, for ever); anything else the
 * usual JSON error with Retry-After. */
static void refuse(ptm_api_resp_t *resp, const ptm_api_req_t *req,
                   const char *detail, apr_pool_t *p)
{
    ptm_buf_t b;
    json_t *d;

    if (!ptm_sse_accepts(req->accept)) {
        ptm_api_error(resp, 503, detail, p);
        resp->retry_after = RETRY_AFTER_BUSY;
        return;
    }
    ptm_buf_init(&b, p, 256);
    ptm_sse_retry(&b, RETRY_BUSY_MS);
    {
        ptm_buf_t data;

        ptm_buf_init(&data, p, 160);
        ptm_buf_puts(&data, "{\"detail\":");
        d = json_string(detail);
        ptm_json_dump(&data, d);
        json_decref(d);
        ptm_buf_putc(&data, '}');
        ptm_sse_event(&b, 0, 0, 0, "busy", data.data, data.len);
    }
    resp->status = 200;
    resp->content_type = SSE_TYPE;
    resp->body = b.data;
    resp->body_len = b.len;
    resp->log = "GET /stream: refused (busy)";
}

/* ---- the stream ----------------------------------------------------------- */

typedef struct {
    const ptm_api_conf_t *conf;
    const ptm_api_out_t *out;
    apr_array_header_t *types;  /* NULL: every type */
    uint64_t epoch;             /* of the ids this stream sends */
    uint64_t from;              /* the n of the next event to look for */
    ptm_ring_pos_t pos;         /* where the ring's walk goes on */
    uint64_t sent;              /* events written */
    apr_time_t last_write;
    ptm_buf_t b;                /* what goes out next */
    apr_pool_t *round;          /* cleared at each look at the ring */
    const char *log;            /* how it ended */
} stream_t;

/* Write and flush what `s->b` holds.  Any failure means the client is
 * gone (or too slow for httpd's Timeout). */
static apr_status_t put(stream_t *s, apr_time_t now)
{
    apr_status_t rv = APR_SUCCESS;

    if (s->b.len) {
        rv = s->out->write(s->out->ctx, s->b.data, s->b.len);
        s->b.len = 0;
        if (rv == APR_SUCCESS && s->out->flush) {
            rv = s->out->flush(s->out->ctx);
        }
        s->last_write = now;
    }
    return rv;
}

/* `event: reset` saying `why` (when set), then the snapshot: `id:` the
 * event just before the next one, `event: current`, the GET /current
 * answer.  The live events go on from there. */
static apr_status_t snapshot(stream_t *s, const char *why)
{
    ptm_buf_t cur;
    uint64_t next = 0;
    apr_status_t rv;

    if (why) {
        ptm_buf_t data;
        json_t *d = ptm_json_string_lossy(why, strlen(why));

        ptm_buf_init(&data, s->round, strlen(why) + 16);
        ptm_buf_puts(&data, "{\"detail\":");
        ptm_json_dump(&data, d);
        json_decref(d);
        ptm_buf_putc(&data, '}');
        ptm_sse_event(&s->b, 0, 0, 0, "reset", data.data, data.len);
    }
    ptm_buf_init(&cur, s->round, 4096);
    if ((rv = ptm_store_current_at(s->conf->store, &cur, &next))
        != APR_SUCCESS) {
        return rv;
    }
    s->epoch = ptm_store_epoch(s->conf->store);
    ptm_sse_event(&s->b, 1, s->epoch, next ? next - 1 : 0, "current",
                  cur.data, cur.len);
    s->from = next;
    return APR_SUCCESS;
}

/* Why a stream cannot go on from `s->from` with what the ring holds
 * (`info`, read in the same hold of the lock as the copy), or NULL when
 * it can.  `resume`: the id the client gave, on the first look. */
static const char *cannot_go_on(const stream_t *s,
                                const ptm_recent_info_t *info,
                                const char *resume, apr_pool_t *p)
{
    const char *why = NULL;

    if (info->epoch != s->epoch) {
        why = apr_psprintf(p, "the state was made anew (its ids begin with "
                           "%" APR_UINT64_T_FMT "-)", info->epoch);
    }
    else if (s->from > info->next_n) {
        why = "no event has that id yet";
    }
    else if (s->from < info->next_n
             && (info->count == 0 || info->first_n > s->from)) {
        /* Events after the last one sent are gone from the ring. */
        why = info->size == 0
              ? "events are not kept (PanoptesTelemetryRecent 0)"
              : "the events after it are no longer kept (raise "
                "PanoptesTelemetryRecent)";
    }
    if (!why) {
        return NULL;
    }
    return resume ? apr_pstrcat(p, "cannot resume after ", resume, ": ",
                                why, NULL)
                  : apr_pstrcat(p, "the stream fell behind: ", why, NULL);
}

/* Send every matching event from `s->from` on (and a reset and snapshot
 * when that cannot be done).  Returns APR_SUCCESS, the writer's error, or
 * the lock's (with s->log). */
static apr_status_t catch_up(stream_t *s, const char **resume,
                             apr_time_t now)
{
    ptm_recent_info_t info;
    apr_array_header_t *evs;
    int truncated, i, again = 0;
    const char *why;
    apr_status_t rv;

    do {
        uint64_t batch = 0;

        evs = apr_array_make(s->round, 16, sizeof(ptm_recent_t));
        if (s->pos.n != s->from) {
            /* A new start (a snapshot, a resume): no hint. */
            s->pos.n = s->from;
            s->pos.off = PTM_RING_NOWHERE;
        }
        rv = ptm_store_follow(&info, evs, &truncated, s->conf->store,
                              &s->pos, COPY_MAX,
                              s->types ? want_type : NULL, s->types,
                              s->round);
        if (rv != APR_SUCCESS) {
            s->log = "GET /stream broke off: cannot lock the shared state";
            return rv;
        }
        if (info.size == 0 && info.epoch == s->epoch && !*resume
            && info.next_n > s->from) {
            /* No ring: the events themselves cannot be copied; the view
             * they made is sent instead (README: the degraded mode). */
            if ((rv = snapshot(s, NULL)) != APR_SUCCESS) {
                s->log = "GET /stream broke off: cannot lock the shared "
                         "state";
                return rv;
            }
            return put(s, now);
        }
        if ((why = cannot_go_on(s, &info, *resume, s->round)) != NULL) {
            *resume = NULL;
            if ((rv = snapshot(s, why)) != APR_SUCCESS) {
                s->log = "GET /stream broke off: cannot lock the shared "
                         "state";
                return rv;
            }
            if ((rv = put(s, now)) != APR_SUCCESS) {
                return rv;
            }
            /* Once more from the snapshot on; a second failure in a row
             * would only repeat the snapshot: wait for the next event. */
            if (again++) {
                return APR_SUCCESS;
            }
            truncated = 1;
            continue;
        }
        *resume = NULL;
        for (i = 0; i < evs->nelts; i++) {
            const ptm_recent_t *ev = &APR_ARRAY_IDX(evs, i, ptm_recent_t);

            ptm_sse_event(&s->b, 1, s->epoch, ev->n, "telemetry", ev->line,
                          ev->line_len);
            batch++;
        }
        /* Past what was sent and what the filter left out. */
        s->from = s->pos.n;
        if ((rv = put(s, now)) != APR_SUCCESS) {
            return rv;
        }
        if (batch) {
            s->sent += batch;
            ptm_live_count_sent(s->conf->live, batch);
        }
        apr_pool_clear(s->round);
    } while (truncated);
    return APR_SUCCESS;
}

void ptm_stream_handle(ptm_api_resp_t *resp, const ptm_api_conf_t *conf,
                       const ptm_api_req_t *req, apr_pool_t *p)
{
    ptm_err_t err = { 0, NULL, NULL };
    params_t pa;
    hold_t *hold;
    stream_t s;
    const ptm_api_out_t *out = req->out;
    const char *resume = NULL, *id;
    size_t id_len;
    apr_interval_time_t tick, ping, wait;
    apr_time_t now, deadline = 0, last_look = 0;
    uint64_t e, n;
    uint32_t seen;
    apr_status_t rv;

    if (parse_params(&pa, &err, req->args, p) != 0) {
        ptm_api_respond_err(resp, &err, p);
        return;
    }
    if (!conf->live) {
        refuse(resp, req, "The live feed is unavailable (see the error "
               "log)", p);
        return;
    }
    if (conf->stream_max == 0) {
        refuse(resp, req, "The live feed is off "
               "(PanoptesTelemetryStreamMax 0)", p);
        return;
    }
    if (req->method == PTM_HEAD) {
        /* The head of a stream, holding no slot (whether one is free
         * when the GET comes is for the GET to find out). */
        resp->status = 200;
        if (out) {
            resp->streamed = 1;
            if (out->start(out->ctx, SSE_TYPE) != APR_SUCCESS) {
                resp->status = 499;
                resp->log = "GET /stream: the client went away";
            }
            return;
        }
        resp->content_type = SSE_TYPE;
        resp->body = "";
        resp->body_len = 0;
        return;
    }
    if (!out) {
        ptm_api_error(resp, 500, "GET /stream needs a streamed answer", p);
        return;
    }

    hold = apr_palloc(p, sizeof(*hold));
    hold->live = conf->live;
    hold->slot = ptm_live_claim(conf->live, conf->stream_max, getpid());
    if (hold->slot < 0) {
        refuse(resp, req, apr_psprintf(p, "Too many live-feed subscribers "
                                       "(PanoptesTelemetryStreamMax %u); "
                                       "retry later", conf->stream_max), p);
        return;
    }
    apr_pool_cleanup_register(p, hold, hold_release, apr_pool_cleanup_null);

    memset(&s, 0, sizeof(s));
    s.pos.off = PTM_RING_NOWHERE;
    s.conf = conf;
    s.out = out;
    s.types = pa.types->nelts ? pa.types : NULL;
    s.epoch = ptm_store_epoch(conf->store);
    apr_pool_create(&s.round, p);
    ptm_buf_init(&s.b, p, 4096);
    tick = conf->stream_tick > 0 ? conf->stream_tick : DEFAULT_TICK;
    ping = conf->stream_ping > 0 ? conf->stream_ping : DEFAULT_PING;
    now = apr_time_now();
    s.last_write = now;
    if (conf->stream_timeout > 0) {
        deadline = now + conf->stream_timeout;
    }

    resp->streamed = 1;
    resp->status = 200;
    /* The head goes at once: a client resuming with nothing to replay
     * must know its stream is open before the next event. */
    if (out->start(out->ctx, SSE_TYPE) != APR_SUCCESS
        || (out->flush && out->flush(out->ctx) != APR_SUCCESS)) {
        resp->status = 499;
        resp->log = "GET /stream: the client went away";
        goto end;
    }

    /* Where to begin: after the client's id (the header wins over the
     * parameter), else with the snapshot. */
    if (req->last_event_id && *req->last_event_id) {
        id = req->last_event_id;
        id_len = strlen(id);
    }
    else {
        id = pa.last_id;
        id_len = pa.last_id_len;
    }
    if (id) {
        /* Quoted in the reset's detail: at most 64 bytes of it. */
        resume = apr_pstrndup(p, id, id_len > 64 ? 64 : id_len);
        if (ptm_sse_parse_id(id, id_len, &e, &n) != 0) {
            rv = snapshot(&s, apr_pstrcat(p, "cannot resume after ", resume,
                                          ": not an event id (<epoch>-<n>)",
                                          NULL));
            resume = NULL;
        }
        else {
            /* Checked against the ring with the first copy (one hold of
             * the lock): cannot_go_on. */
            s.epoch = e;
            s.from = n + 1 > n ? n + 1 : n;
            rv = APR_SUCCESS;
        }
    }
    else {
        rv = snapshot(&s, NULL);
    }
    if (rv != APR_SUCCESS) {
        resp->status = 500;
        resp->log = "GET /stream broke off: cannot lock the shared state";
        goto end;
    }

    for (;;) {
        now = apr_time_now();
        if (now - last_look < LOOK_EVERY) {
            apr_sleep(LOOK_EVERY - (now - last_look));
            now = apr_time_now();
        }
        last_look = now;
        /* Read before the look: an event accepted after the look bumps
         * the word, and the wait below returns at once. */
        seen = ptm_live_seen(conf->live);
        if ((rv = catch_up(&s, &resume, now)) != APR_SUCCESS) {
            if (s.log) {
                resp->status = 500;
                resp->log = s.log;
            }
            else {
                resp->status = 499;
                resp->log = "GET /stream: the client went away";
            }
            break;
        }
        apr_pool_clear(s.round);
        now = apr_time_now();
        if ((deadline && now >= deadline)
            || (out->stopping && out->stopping(out->ctx))) {
            /* The client comes back in a second and resumes where this
             * ended (its last id); a restarting httpd is not held up. */
            ptm_sse_retry(&s.b, RETRY_END_MS);
            put(&s, now);
            resp->log = apr_psprintf(p, "GET /stream ended (%s) after %"
                                     APR_UINT64_T_FMT " events",
                                     deadline && now >= deadline
                                     ? "PanoptesTelemetryStreamTimeout"
                                     : "httpd is stopping", s.sent);
            break;
        }
        if (out->gone && out->gone(out->ctx)) {
            resp->status = 499;
            resp->log = "GET /stream: the client went away";
            break;
        }
        if (now - s.last_write >= ping) {
            ptm_sse_comment(&s.b, "ping");
            if (put(&s, now) != APR_SUCCESS) {
                resp->status = 499;
                resp->log = "GET /stream: the client went away";
                break;
            }
        }
        wait = tick;
        if (s.last_write + ping - now < wait) {
            wait = s.last_write + ping - now;
        }
        if (deadline && deadline - now < wait) {
            wait = deadline - now;
        }
        ptm_live_wait(conf->live, seen, wait > 0 ? wait : 0);
    }

end:
    apr_pool_cleanup_run(p, hold, hold_release);
}

/* The glue of forwarding (SPEC §12.5), kept out of the main glue file:
 * the PanoptesTelemetryForward directive, the program the parent runs and
 * restarts, the background thread (a mod_watchdog singleton) that
 * forwards, and the server-status lines.  The work is in src/ptm_forward.c
 * and src/ptm_store_fwd.c. */
#ifndef MOD_PANOPTES_TELEMETRY_FORWARD_H
#define MOD_PANOPTES_TELEMETRY_FORWARD_H

#include "httpd.h"
#include "http_config.h"
#include "ptm_live.h"
#include "ptm_store.h"

typedef struct ptm_fwd_conf_t ptm_fwd_conf_t;

/** PanoptesTelemetryForward "|program args": the setting goes to `*c`
 * (made from cmd->pool when NULL).  Returns NULL or the error to show. */
const char *ptm_fwd_set_program(cmd_parms *cmd, ptm_fwd_conf_t **c,
                                const char *arg);

/** PanoptesTelemetryForwardUser user [group]: whom the program runs as
 * when httpd starts as root (default: httpd's User and Group).  Returns
 * NULL or the error to show. */
const char *ptm_fwd_set_user(cmd_parms *cmd, ptm_fwd_conf_t **c,
                             const char *user, const char *group);

/**
 * post_config (not the first, checking pass): with a program configured,
 * make the pipe and the shared board once per parent, start the program
 * (or keep the one running across a graceful restart), and register the
 * forwarding thread.  `recent` is the ring's size (forwarding needs it);
 * `live` the live board to wait on (NULL: one is made here).  Returns OK
 * or HTTP_INTERNAL_SERVER_ERROR after logging why.
 */
int ptm_fwd_post_config(server_rec *s, const ptm_fwd_conf_t *c,
                        apr_size_t recent, ptm_live_t *live,
                        apr_pool_t *pconf, apr_pool_t *ptemp);

/** child_init: the store handle the thread uses; the live board the
 * request handlers must notify (NULL when forwarding is off). */
ptm_live_t *ptm_fwd_child_init(apr_pool_t *p, server_rec *s,
                               ptm_store_t *store);

/** server-status lines (?auto or HTML), when forwarding is on. */
void ptm_fwd_status(request_rec *r, int flags, ptm_store_t *store);

#endif

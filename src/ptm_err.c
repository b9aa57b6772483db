/* Error records for the router; see ptm_err.h. */
#include <string.h>
#include "ptm_err.h"
#include "ptm_json.h"

void ptm_err_set(ptm_err_t *e, int status, const char *detail)
{
    json_decref(e->detail);
    e->status = status;
    /* Details may quote paths from the configuration: never lose the
     * error over a byte that is not UTF-8. */
    e->detail = ptm_json_string_lossy(detail, strlen(detail));
}

void ptm_err_add_item(ptm_err_t *e, const char *type, json_t *loc,
                      const char *msg, json_t *input, json_t *ctx)
{
    json_t *item = json_object();

    if (e->status != 422 || !json_is_array(e->detail)) {
        json_decref(e->detail);
        e->status = 422;
        e->detail = json_array();
    }
    json_object_set_new(item, "type", json_string(type));
    json_object_set_new(item, "loc", loc ? loc : json_array());
    json_object_set_new(item, "msg", json_string(msg));
    json_object_set_new(item, "input", input ? input : json_null());
    if (ctx) {
        json_object_set_new(item, "ctx", ctx);
    }
    json_array_append_new(e->detail, item);
}

void ptm_err_clear(ptm_err_t *e)
{
    json_decref(e->detail);
    e->status = 0;
    e->detail = NULL;
    e->log = NULL;
}

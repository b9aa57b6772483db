#include <string.h>

#include <apr_shm.h>

#include "ptm_shm.h"

apr_status_t ptm_shm_anon(void **base, apr_size_t size, apr_pool_t *p)
{
    apr_shm_t *shm;
    apr_status_t rv;

    /* A NULL name: APR maps it anonymously (MAP_SHARED|MAP_ANON). */
    if ((rv = apr_shm_create(&shm, size, NULL, p)) != APR_SUCCESS) {
        return rv;
    }
    *base = apr_shm_baseaddr_get(shm);
    memset(*base, 0, size);
    return APR_SUCCESS;
}

/* ring_placement.c — placement tokens (see ring.h). */
#include "ring/ring.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/hash.h"

uint32_t ring_series_shard(uint64_t series_id, uint32_t shards_per_service)
{
    if (shards_per_service == 0) shards_per_service = 1;
    /* The series id is already a uniform hash; mixing the high half in keeps
     * small shard counts from depending only on the low bits. */
    return (uint32_t)((series_id ^ (series_id >> 32)) % shards_per_service);
}

uint64_t ring_placement_token(const char *tenant, const char *service_name, uint32_t shard)
{
    uint8_t tmp[512];
    size_t tl = strlen(tenant), sl = strlen(service_name);
    size_t n = 3 + tl + 1 + sl + 1 + 4;
    uint8_t *p = n <= sizeof tmp ? tmp : malloc(n);
    if (p == NULL) return 0;
    size_t o = 0;
    memcpy(p + o, "v1", 3); /* includes the NUL separator */
    o += 3;
    memcpy(p + o, tenant, tl);
    o += tl;
    p[o++] = 0;
    memcpy(p + o, service_name, sl);
    o += sl;
    p[o++] = 0;
    p[o++] = (uint8_t)(shard >> 24);
    p[o++] = (uint8_t)(shard >> 16);
    p[o++] = (uint8_t)(shard >> 8);
    p[o++] = (uint8_t)shard;
    uint64_t h = hash_bytes64(p, o);
    if (p != tmp) free(p);
    return h;
}

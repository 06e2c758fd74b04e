/* ring_placement.c — placement tokens (see ring.h). */
#include "ring/ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
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

int ring_shard_policy_parse(ring_shard_policy_t *p, const char *spec, errmsg_t *em)
{
    p->n = 0;
    for (const char *s = spec; s != NULL && *s != '\0';) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (eq == NULL || eq == s || (size_t)(eq - s) > RING_SERVICE_NAME_MAX)
            return errmsg_set(em, ERR_INVALID_ARGUMENT,
                              "service shards: expected service=N, got '%.*s'", (int)len, s);
        char num[16];
        size_t nlen = len - (size_t)(eq + 1 - s);
        if (nlen == 0 || nlen >= sizeof num)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "service shards: bad count in '%.*s'",
                              (int)len, s);
        memcpy(num, eq + 1, nlen);
        num[nlen] = '\0';
        char *stop;
        unsigned long v = strtoul(num, &stop, 10);
        if (*stop != '\0' || v < 1 || v > RING_MAX_SHARDS)
            return errmsg_set(em, ERR_INVALID_ARGUMENT,
                              "service shards: count in '%.*s' must be 1..%d", (int)len, s,
                              RING_MAX_SHARDS);
        if (p->n == RING_MAX_SHARD_OVERRIDES)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "service shards: more than %d services",
                              RING_MAX_SHARD_OVERRIDES);
        size_t slen = (size_t)(eq - s);
        for (uint32_t i = 0; i < p->n; i++)
            if (strlen(p->over[i].service) == slen && memcmp(p->over[i].service, s, slen) == 0)
                return errmsg_set(em, ERR_INVALID_ARGUMENT, "service shards: '%.*s' given twice",
                                  (int)slen, s);
        memcpy(p->over[p->n].service, s, slen);
        p->over[p->n].service[slen] = '\0';
        p->over[p->n++].shards = (uint32_t)v;
        s = end ? end + 1 : NULL;
    }
    return 0;
}

uint64_t ring_shard_key(const labels_t *labels, uint64_t series_id, const ring_shard_policy_t *p)
{
    if (!p->by_profile || labels == NULL) return series_id;
    /* Pairs hashed one by one in their sorted order (no allocation): the
     * key only has to be the same on every node and for every sample type
     * of one profile's series, which differ in __profile_type__ alone. */
    uint64_t h = 0x666c616d65736864ull; /* "flameshd" */
    for (size_t i = 0; i < labels_count(labels); i++) {
        const char *n = labels_name(labels, i), *v = labels_value(labels, i);
        if (strcmp(n, LABEL_PROFILE_TYPE) == 0) continue;
        h = (h ^ hash_bytes64(n, strlen(n))) * 0x9e3779b97f4a7c15ull;
        h = (h ^ hash_bytes64(v, strlen(v))) * 0x9e3779b97f4a7c15ull;
    }
    return h ^ (h >> 29);
}

uint32_t ring_shards_for(const ring_shard_policy_t *p, const char *service)
{
    for (uint32_t i = 0; service != NULL && i < p->n; i++)
        if (strcmp(p->over[i].service, service) == 0) return p->over[i].shards;
    return p->default_shards > 0 ? p->default_shards : 1;
}

static int by_service(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int ring_shard_policy_format(const ring_shard_policy_t *p, buf_t *out)
{
    const char *names[RING_MAX_SHARD_OVERRIDES];
    uint32_t n = p->n < RING_MAX_SHARD_OVERRIDES ? p->n : RING_MAX_SHARD_OVERRIDES;
    for (uint32_t i = 0; i < n; i++)
        names[i] = p->over[i].service;
    qsort(names, n, sizeof *names, by_service);
    int rc = buf_printf(out, "shards=%u;by_profile=%d;services=",
                        p->default_shards > 0 ? p->default_shards : 1, p->by_profile ? 1 : 0);
    for (uint32_t i = 0; rc == 0 && i < n; i++)
        rc = buf_printf(out, "%s%s=%u", i > 0 ? "," : "", names[i], ring_shards_for(p, names[i]));
    return rc;
}

int ring_shard_policy_read(ring_shard_policy_t *p, const char *text, errmsg_t *em)
{
    static const char svc[] = ";services=";
    unsigned shards = 0;
    int by = -1, used = 0;
    if (sscanf(text, "shards=%u;by_profile=%d%n", &shards, &by, &used) != 2 ||
        strncmp(text + used, svc, sizeof svc - 1) != 0 || shards < 1 || shards > RING_MAX_SHARDS ||
        (by != 0 && by != 1))
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "placement policy: cannot read '%.200s'", text);
    memset(p, 0, sizeof *p);
    p->default_shards = shards;
    p->by_profile = by;
    errmsg_t sem = {{0}};
    if (ring_shard_policy_parse(p, text + used + sizeof svc - 1, &sem) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "placement policy: %s", sem.text);
    return 0;
}

int ring_shard_policy_equal(const ring_shard_policy_t *a, const ring_shard_policy_t *b)
{
    buf_t x, y;
    buf_init(&x, BUF_UNLIMITED);
    buf_init(&y, BUF_UNLIMITED);
    int same = ring_shard_policy_format(a, &x) == 0 && ring_shard_policy_format(b, &y) == 0 &&
               x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
    buf_free(&x);
    buf_free(&y);
    return same;
}

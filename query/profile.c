/* profile.c — GET /api/profiles/ID: one stored profile, exactly its own
 * samples (docs/api.md), and the profile references the listing hands out.
 *
 * A reference is token | series id | profile id in hex: the token says which
 * replicas hold the series (the coordinator asks only them), the series id
 * and profile id make the key of its tree in storage (profile_trees). Each
 * token range is answered by one replica, so exactly one partial can hold
 * the tree: the gather takes it as is, never a sum of copies.
 *
 * A partial that holds it carries its tree, its symbols, one series and one
 * value "TIME_NS PROFILE_TYPE" (the encoders need the type's units).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/varint.h"
#include "query/query_int.h"

void query_profile_ref_write(uint64_t token, uint64_t series_id, const uint8_t id[16], char *out)
{
    int off = snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, token, series_id);
    for (size_t k = 0; k < 16; k++)
        off += snprintf(out + off, 3, "%02x", id[k]);
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int query_profile_ref_parse(const char *s, size_t n, uint64_t *token, uint64_t *series_id,
                            uint8_t id[16])
{
    uint8_t b[QUERY_PROFILE_ID_HEX / 2];
    if (s == NULL || n != QUERY_PROFILE_ID_HEX) return ERR_INVALID_ARGUMENT;
    for (size_t k = 0; k < sizeof b; k++) {
        int hi = hex_val(s[2 * k]), lo = hex_val(s[2 * k + 1]);
        if (hi < 0 || lo < 0) return ERR_INVALID_ARGUMENT;
        b[k] = (uint8_t)(hi << 4 | lo);
    }
    *token = be64_get(b);
    *series_id = be64_get(b + 8);
    memcpy(id, b + 16, 16);
    return 0;
}

/* The value "TIME_NS PROFILE_TYPE" and the spy name of a found profile. */
static int describe(const labels_t *lb, int64_t time_ns, query_partial_t *out)
{
    const char *type = labels_get(lb, LABEL_PROFILE_TYPE);
    const char *spy = labels_get(lb, "pyroscope_spy");
    if (type == NULL) type = "";
    size_t n = strlen(type) + 24;
    out->values = calloc(1, sizeof *out->values);
    if (out->values == NULL || (out->values[0] = malloc(n)) == NULL) return ERR_NOMEM;
    out->nvalues = 1;
    snprintf(out->values[0], n, "%" PRId64 " %s", time_ns, type);
    if (spy != NULL && (out->spy_name = strdup(spy)) == NULL) return ERR_NOMEM;
    out->nseries = 1;
    return 0;
}

/* Reads the profile into out when this node's ranges hold its series. */
static int read_one(storage_t *st, const char *tenant, uint64_t token, uint64_t sid,
                    const uint8_t pid[16], query_partial_t *out, errmsg_t *em)
{
    labels_t *lb = NULL;
    int rc = storage_series_labels(st, tenant, token, sid, &lb);
    int64_t time_ns = 0;
    if (rc == 0) rc = storage_read_profile(st, tenant, token, sid, pid, out->tree, &time_ns);
    if (rc == ERR_NOT_FOUND) {
        labels_free(lb);
        return 0; /* not here: the gather answers 404 when no partial has it */
    }
    if (rc == ERR_LIMIT)
        errmsg_set(em, rc, "the profile's call tree exceeds max_tree_nodes (%zu nodes)",
                   calltree_node_count(out->tree));
    if (rc == 0) rc = describe(lb, time_ns, out);
    labels_free(lb);
    if (rc == 0) rc = query_load_symbols(st, tenant, out->tree, out->syms);
    return rc;
}

int query_profile_partial(storage_t *st, const char *tenant, const query_partial_args_t *a,
                          const rangeset_t *rs, const query_limits_t *lim, query_partial_t *out,
                          errmsg_t *em)
{
    uint64_t token, sid;
    uint8_t pid[16];
    if (a->label == NULL ||
        query_profile_ref_parse(a->label, strlen(a->label), &token, &sid, pid) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "profile id: %d hex digits required",
                          QUERY_PROFILE_ID_HEX);
    out->tree = calltree_new(lim->max_tree_nodes);
    out->syms = symtab_new();
    if (out->tree == NULL || out->syms == NULL) return ERR_NOMEM;
    if (!query_rangeset_has(rs, token)) return 0;
    return read_one(st, tenant, token, sid, pid, out, em);
}

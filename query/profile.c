/* profile.c — GET /api/profiles/ID: one stored profile, exactly its own
 * samples (docs/api.md), and the profile references the listing hands out.
 *
 * A reference is token | series id | time | profile id in hex: the token
 * says which replicas hold the series (the coordinator asks only them), all
 * of it is the key of its tree in storage (profile_trees, without the
 * tenant, which the request carries). Each
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

void query_profile_ref_write(const query_profile_ref_t *r, char *out)
{
    uint64_t t = (uint64_t)r->time_ns ^ (1ULL << 63); /* offset binary: as the key */
    int off =
        snprintf(out, 49, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, r->token, r->series_id, t);
    for (size_t k = 0; k < 16; k++)
        off += snprintf(out + off, 3, "%02x", r->id[k]);
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int query_profile_ref_parse(const char *s, size_t n, query_profile_ref_t *out)
{
    uint8_t b[QUERY_PROFILE_ID_HEX / 2];
    if (s == NULL || n != QUERY_PROFILE_ID_HEX) return ERR_INVALID_ARGUMENT;
    for (size_t k = 0; k < sizeof b; k++) {
        int hi = hex_val(s[2 * k]), lo = hex_val(s[2 * k + 1]);
        if (hi < 0 || lo < 0) return ERR_INVALID_ARGUMENT;
        b[k] = (uint8_t)(hi << 4 | lo);
    }
    out->token = be64_get(b);
    out->series_id = be64_get(b + 8);
    out->time_ns = (int64_t)(be64_get(b + 16) ^ (1ULL << 63));
    memcpy(out->id, b + 24, 16);
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
static int read_one(storage_t *st, const char *tenant, const query_profile_ref_t *ref,
                    query_partial_t *out, errmsg_t *em)
{
    labels_t *lb = NULL;
    int rc = storage_series_labels(st, tenant, ref->token, ref->series_id, &lb);
    if (rc == 0)
        rc = storage_read_profile(st, tenant, ref->token, ref->series_id, ref->time_ns, ref->id,
                                  out->tree);
    if (rc == ERR_NOT_FOUND) {
        labels_free(lb);
        return 0; /* not here: the gather answers 404 when no partial has it */
    }
    if (rc == ERR_LIMIT)
        errmsg_set(em, rc, "the profile's call tree exceeds %zu nodes (query-max-tree-nodes)",
                   calltree_node_count(out->tree));
    if (rc == 0) rc = describe(lb, ref->time_ns, out);
    labels_free(lb);
    if (rc == 0) rc = query_load_symbols(st, tenant, out->tree, out->syms);
    return rc;
}

int query_profile_partial(storage_t *st, const char *tenant, const query_partial_args_t *a,
                          const rangeset_t *rs, const query_limits_t *lim, query_partial_t *out,
                          errmsg_t *em)
{
    query_profile_ref_t ref;
    if (a->label == NULL || query_profile_ref_parse(a->label, strlen(a->label), &ref) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "profile id: %d hex digits required",
                          QUERY_PROFILE_ID_HEX);
    out->tree = calltree_new(lim->max_tree_nodes);
    out->syms = symtab_new();
    if (out->tree == NULL || out->syms == NULL) return ERR_NOMEM;
    if (!query_rangeset_has(rs, ref.token)) return 0;
    return read_one(st, tenant, &ref, out, em);
}

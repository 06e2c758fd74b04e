/* merge.c — summing the stored blocks of the selected series over a plan into
 * one call tree (storage's merger adds blocks as vectors and builds the tree
 * once), and loading the names of the symbols it references. */
#include <stdlib.h>

#include "common/grow.h"
#include "common/hash.h"
#include "query/query_int.h"

int query_merge_series(storage_t *st, const char *tenant, const query_series_t *ser,
                       const query_plan_t *plan, calltree_t *dst, errmsg_t *em)
{
    storage_merger_t *m;
    int rc = storage_merger_new(st, tenant, &m);
    if (rc != 0) return errmsg_set(em, rc, "merging blocks: %s", err_message(rc));
    for (size_t i = 0; i < ser->n && rc == 0; i++)
        for (size_t k = 0; k < plan->n && rc == 0; k++) {
            const query_plan_piece_t *pc = &plan->piece[k];
            rc = storage_merger_add(m, ser->token[i], ser->series_id[i], pc->res, pc->from_s,
                                    pc->until_s);
        }
    if (rc != 0) {
        storage_merger_free(m);
        return errmsg_set(em, rc, "reading blocks: %s", err_message(rc));
    }
    rc = storage_merger_finish(m, dst, em);
    storage_merger_free(m);
    if (rc == ERR_LIMIT)
        return errmsg_set(em, ERR_LIMIT,
                          "merged call tree exceeds max_tree_nodes (%zu nodes); narrow "
                          "the selector or the time range",
                          calltree_node_count(dst));
    return rc;
}

typedef struct ids {
    uint64_t *v;
    size_t n, cap;
} ids_t;

static int id_fn(void *ctx, uint64_t sym)
{
    ids_t *ids = ctx;
    if (sym == SYM_OTHER || sym == SYM_ROOT) return 0;
    if (GROW_FROM(ids->v, ids->cap, ids->n + 1, GROW_UNLIMITED, 1024) != 0) return ERR_NOMEM;
    ids->v[ids->n++] = sym;
    return 0;
}

int query_load_symbols(storage_t *st, const char *tenant, const calltree_t *t, symtab_t *dst)
{
    ids_t ids = {0};
    int rc = calltree_for_each_symbol(t, id_fn, &ids);
    if (rc == 0 && ids.n > 0) rc = storage_load_symbols(st, tenant, ids.v, ids.n, dst);
    free(ids.v);
    return rc;
}

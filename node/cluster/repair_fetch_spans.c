/* repair_fetch_spans.c — the span/trace trees of profiles a peer fetches in
 * anti-entropy (repair_int.h; docs/cluster.md, "Anti-entropy").
 *
 * A fetched profile brings its members of the span trees it went into
 * (storage_profile_spans), as a replicated write carries them,
 * so span queries on the repaired peer are as exact as its flame graphs.
 * A tree whose member of the profile cannot be told goes by kind and id
 * alone (`unknown`): the peer marks its tree possibly short. Profiles of one
 * tenant and token are collected in one call, each through its own entries
 * of profile_span_index (a cost in proportion to its own trees).
 *
 * Budgets keep an answer bounded: one profile's trees at most a quarter of
 * max_message_bytes (past it a tree goes by name; when even the names do not
 * fit, `over`: the profile is counted unavailable), and a run of several
 * profiles all together at most half (past it a profile that lost a tree
 * is `cut`: the answer ends before it and the peer asks again).
 */
#include <stdlib.h>
#include <string.h>

#include "common/calltree.h"
#include "common/grow.h"
#include "node/cluster/repair_int.h"

typedef struct run {
    arena_t *arena;
    repair_pspans_t *p;
    size_t bytes, budget; /* the run's trees so far, and at most (0: one profile) */
    size_t each;          /* one profile's trees at most */
} run_t;

static int add_span(void *ctx, size_t ref, uint8_t kind, uint64_t id, const uint8_t *tree,
                    size_t len)
{
    run_t *r = ctx;
    repair_pspans_t *x = &r->p[ref];
    if (x->over || x->cut) return 0;
    if (r->budget > 0 && r->bytes + len + 32 > r->budget) {
        x->cut = 1; /* ask again, first of an answer */
        return 0;
    }
    if (x->bytes + 32 > r->each) {
        x->over = 1; /* not even named: the profile is counted unavailable */
        return 0;
    }
    if (tree != NULL && x->bytes + len + 32 > r->each) tree = NULL; /* named, unknown */
    int rc = GROW(x->v, x->cap, x->n + 1, GROW_UNLIMITED);
    Flamedb__Cluster__Span *sp = rc == 0 ? arena_zalloc(r->arena, sizeof *sp) : NULL;
    if (rc == 0 && sp == NULL) rc = ERR_NOMEM;
    if (rc == 0 && tree != NULL && x->syms == NULL && (x->syms = calltree_new(0)) == NULL)
        rc = ERR_NOMEM;
    if (rc == 0 && tree != NULL) rc = calltree_decode_merge(x->syms, tree, len);
    if (rc == ERR_CORRUPT) { /* a member that does not decode: named, unknown */
        tree = NULL;
        rc = 0;
    }
    if (rc != 0) return rc;
    flamedb__cluster__span__init(sp);
    sp->kind = kind;
    sp->id = id;
    sp->unknown = tree == NULL;
    if (tree != NULL) {
        sp->calltree.data = arena_memdup(r->arena, tree, len ? len : 1);
        sp->calltree.len = len;
        if (sp->calltree.data == NULL) return ERR_NOMEM;
    }
    x->v[x->n++] = sp;
    x->bytes += (tree != NULL ? len : 0) + 32;
    r->bytes += (tree != NULL ? len : 0) + 32;
    return 0;
}

int repair_fetch_spans(storage_t *s, const repair_options_t *o,
                       Flamedb__Cluster__SeenEntry *const *e, size_t n, arena_t *arena,
                       repair_pspans_t *p)
{
    storage_profile_ref_t *refs = calloc(n ? n : 1, sizeof *refs);
    if (refs == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        refs[i] = (storage_profile_ref_t){e[i]->series_id, e[i]->time_ns, e[i]->profile_id.data};
    run_t r = {.arena = arena,
               .p = p,
               .budget = n > 1 ? o->max_message_bytes / 2 : 0,
               .each = o->max_message_bytes / 4};
    int rc = n > 0 ? storage_profile_spans(s, e[0]->tenant, e[0]->token, refs, n, add_span, &r) : 0;
    free(refs);
    return rc;
}

int repair_pspans_put(arena_t *arena, const repair_pspans_t *x, Flamedb__Cluster__SeriesPart *part)
{
    if (x->n == 0) return 0;
    part->spans = arena_zalloc(arena, x->n * sizeof *part->spans);
    if (part->spans == NULL) return ERR_NOMEM;
    memcpy(part->spans, x->v, x->n * sizeof *part->spans);
    part->n_spans = x->n;
    return 0;
}

void repair_pspans_free(repair_pspans_t *p, size_t n)
{
    for (size_t i = 0; p != NULL && i < n; i++) {
        free(p[i].v);
        calltree_free(p[i].syms);
    }
    free(p);
}

/* merge.c — summing the stored blocks of the selected series over a plan into
 * one call tree (storage's merger adds blocks as vectors and builds the tree
 * once), and loading the names of the symbols it references. */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "common/grow.h"
#include "common/hash.h"
#include "common/u64map.h"
#include "query/query_int.h"

/* Whether every node's total is its self plus its children's totals (sums
 * wrap like the tree's own). A walk over the whole tree: for ASSERT_DEBUG.
 * Children have larger indices than their parents, so one backward pass adds
 * each subtree up before its parent is checked. */
static int totals_add_up(const calltree_t *t)
{
    size_t n = calltree_node_count(t);
    uint64_t *kids = calloc(n, sizeof *kids);
    if (kids == NULL) return 1; /* cannot check; not a failure */
    int ok = 1;
    for (size_t i = n; i-- > 0 && ok;) {
        uint32_t id = (uint32_t)i;
        ok = (uint64_t)calltree_total(t, id) == (uint64_t)calltree_self(t, id) + kids[i];
        if (i > 0) kids[calltree_parent(t, id)] += (uint64_t)calltree_total(t, id);
    }
    free(kids);
    return ok;
}

/* What a helper does beside a selection: the cut's first pass as the
 * forest pass goes (query_cut_follow_t), then, once the forest is made,
 * the names of a shard union's symbols. */
typedef struct beside {
    query_cut_follow_t *filed;
    storage_t *st;
    const char *tenant;
    size_t max_nodes;
    symtab_t *dst;
    int named; /* the union's names loaded into dst */
} beside_t;

/* Waits until the forest pass followed ended: its forest made (1) or not. */
static int forest_made(storage_follow_t *f)
{
    int state;
    for (unsigned spins = 0; (state = atomic_load_explicit(&f->state, memory_order_acquire)) == 0;)
        if (++spins % 64 == 0) sched_yield();
    return state == 1;
}

static void beside_run(void *arg)
{
    beside_t *b = arg;
    query_cut_follow_run(b->filed);
    storage_follow_t *f = query_cut_follow_storage(b->filed);
    /* no more names than nodes kept: a union of very many symbols is not
     * loaded whole (its kept nodes' names are, after); a failure leaves
     * names out: query_load_symbols_kept loads them */
    const storage_merged_tab_t *t = forest_made(f) ? f->tab : NULL;
    if (t != NULL && t->symbols != NULL && t->nsymbols <= b->max_nodes)
        b->named = storage_load_symbols(b->st, b->tenant, t->symbols, t->nsymbols, b->dst) == 0;
}

/* Where the beside part runs: offered to the helper reading with this
 * thread (help->share) for when its part is done, else to an idle helper. */
typedef struct beside_on {
    query_share_t *share;
    assist_t *assist;
    assist_task_t task;
    int helper; /* a helper has it: it runs beside this thread */
} beside_on_t;

static void beside_start(beside_on_t *on, beside_t *b)
{
    if (on->share != NULL)
        query_share_offer(on->share, beside_run, b);
    else
        assist_start(on->assist, &on->task, beside_run, b);
}

/* Once the forest is made: every id filed (by a helper meanwhile and here
 * from the other end, or here now). */
static void beside_filed(beside_on_t *on, beside_t *b)
{
    on->helper = on->share != NULL ? query_share_taken(on->share) : assist_taken(&on->task);
    query_cut_follow_finish(b->filed); /* what the helper has not filed (all without one) */
    if (on->helper) return;
    if (on->share != NULL)
        beside_run(b);
    else
        assist_join(on->assist, &on->task); /* runs it here */
}

/* The beside part done (before the forest it reads goes). */
static void beside_end(beside_on_t *on)
{
    if (on->share != NULL)
        query_share_wait(on->share);
    else if (on->helper)
        assist_join(on->assist, &on->task);
}

/* dst (or, with kept, *kept) already truncated to max_nodes when that is
 * exact (keep.c) and the untruncated merge surely fits in dst (at most the
 * tokens' node counts added up): then a merge refused for its size is
 * refused as before. With help's table and helpers and kept, the cut's
 * first pass and a shard union's names are made beside the forest and
 * the selection (beside_t). Returns 1 when done, 0 to build the whole
 * tree, or an error. */
static int merge_truncated(storage_t *st, const char *tenant, storage_merger_t *m, size_t max_nodes,
                           calltree_t *dst, query_kept_t **kept, const query_help_t *help,
                           alloc_charge_t *charge, errmsg_t *em)
{
    if (max_nodes < 2 || calltree_node_count(dst) != 1 || calltree_root_total(dst) != 0 ||
        calltree_self(dst, 0) != 0)
        return 0;
    storage_merged_tab_t *tabs = NULL;
    size_t n = 0, bound = 1;
    /* parents and least children: one forest is cut by its totals (cut.c);
     * a shard union's, its kept nodes' symbols numbered by the union's */
    unsigned flags =
        STORAGE_TABS_PARENTS | STORAGE_TABS_LEAST |
        (kept != NULL ? STORAGE_TABS_SYMBOLS | STORAGE_TABS_HOLD : 0); /* cut at once, then freed */
    beside_t b = {.st = st, .tenant = tenant, .max_nodes = max_nodes};
    beside_on_t on = {0};
    if (kept != NULL && help != NULL && help->names != NULL && help->assist != NULL)
        b.filed = query_cut_follow_new(0); /* its helper then loads names */
    if (b.filed != NULL) {
        b.dst = help->names;
        on.share = help->share != NULL && help->share->shared ? help->share : NULL;
        on.assist = help->assist;
        storage_merger_follow(m, query_cut_follow_storage(b.filed));
        beside_start(&on, &b);
    }
    int rc = storage_merger_tabs(m, flags, &tabs, &n, em);
    if (b.filed != NULL) beside_filed(&on, &b);
    int ok = rc == 0;
    for (size_t i = 0; ok && i < n; i++) {
        ok &= tabs[i].nonneg;
        bound += tabs[i].nodes - 1;
    }
    /* the selection's working memory counts beside the merger's */
    size_t scratch = ok && bound <= calltree_max_nodes(dst) && charge
                         ? query_keep_scratch_bytes(tabs, n, max_nodes)
                         : 0;
    if (scratch && alloc_charge_add(charge, scratch) != 0) {
        rc = ERR_UNAVAILABLE;
        ok = 0;
    }
    if (ok && bound <= calltree_max_nodes(dst)) {
        rc = kept && n == 1 ? query_keep_cut_filed(&tabs[0], max_nodes, NULL, b.filed, kept) : 1;
        if (rc == 1)
            rc = kept ? query_keep_tabs(tabs, n, max_nodes, kept)
                      : query_truncate_tabs(tabs, n, max_nodes, dst);
        if (scratch) alloc_charge_sub(charge, scratch);
        if (rc == ERR_INVALID_ARGUMENT) { /* a total past INT64_MAX: not exact here */
            rc = kept ? 0 : calltree_clear(dst);
        } else if (rc == 0) {
            rc = 1;
        }
    }
    if (b.filed != NULL) beside_end(&on); /* before the tab it reads goes */
    if (b.named && rc == 1 && *kept != NULL && (*kept)->sid != NULL) (*kept)->named = 1;
    if (tabs != NULL) storage_merged_tabs_free(tabs, n);
    query_cut_follow_free(b.filed);
    return rc;
}

static int merge_error(int rc, errmsg_t *em, const char *what)
{
    if (rc == ERR_UNAVAILABLE) /* the working memory passed its budget */
        return errmsg_set(em, rc,
                          "server busy: merging the selected blocks needs more working memory "
                          "than query-memory-bytes leaves now; retry later or narrow the query");
    return errmsg_set(em, rc, "%s: %s", what, err_message(rc));
}

/* Item `item` of a read: series item / plan->n, piece item % plan->n
 * (series-major: the order a read without a helper takes them), into m. */
static int read_item(storage_merger_t *m, const query_series_t *ser, const query_plan_t *plan,
                     size_t item)
{
    size_t i = item / plan->n;
    const query_plan_piece_t *pc = &plan->piece[item % plan->n];
    return ser->aggregate != NULL && ser->aggregate[i]
               ? storage_merger_add_aggregate(m, ser->token[i], ser->series_id[i], pc->res,
                                              pc->from_s, pc->until_s)
               : storage_merger_add(m, ser->token[i], ser->series_id[i], pc->res, pc->from_s,
                                    pc->until_s);
}

void query_share_init(query_share_t *s, storage_t *st, const char *tenant,
                      const query_series_t *ser, const query_plan_t *plan, alloc_budget_t *budget)
{
    memset(s, 0, sizeof *s);
    s->st = st;
    s->tenant = tenant;
    s->ser = ser;
    s->plan = plan;
    alloc_charge_init(&s->charge, budget);
    s->charged = budget != NULL;
    s->shared = ends_init(&s->ends, ser->n * plan->n);
    atomic_init(&s->state, 0);
    assist_flag_init(&s->done);
    atomic_init(&s->next_state, 0);
    assist_flag_init(&s->next_done);
}

void query_share_offer(query_share_t *s, void (*fn)(void *arg), void *arg)
{
    s->next_fn = fn;
    s->next_arg = arg;
    assist_flag_init(&s->next_done);
    atomic_store_explicit(&s->next_state, 1, memory_order_release);
}

int query_share_taken(query_share_t *s)
{
    int offered = 1;
    return !atomic_compare_exchange_strong(&s->next_state, &offered, 3) && offered == 2;
}

void query_share_wait(query_share_t *s)
{
    if (atomic_load(&s->next_state) == 2) assist_flag_wait(&s->next_done);
    atomic_store(&s->next_state, 0);
}

void query_share_run_offered(query_share_t *s)
{
    int offered = 1;
    if (!atomic_compare_exchange_strong(&s->next_state, &offered, 2)) return;
    s->next_fn(s->next_arg);
    assist_flag_set(&s->next_done, 1);
}

void query_share_help(query_share_t *s)
{
    int open = 0;
    if (!atomic_compare_exchange_strong(&s->state, &open, 1)) return; /* all taken: none */
    int rc = storage_merger_new(s->st, s->tenant, &s->m);
    if (rc == 0) storage_merger_set_charge(s->m, s->charged ? &s->charge : NULL);
    for (size_t item; rc == 0 && ends_take(&s->ends, 1, &item);)
        if ((rc = query_stop_check(s->plan->stop, &s->em)) == 0)
            rc = read_item(s->m, s->ser, s->plan, item);
    s->rc = rc;
    assist_flag_set(&s->done, 1); /* the last it does with the merger and the charge */
}

void query_share_end(query_share_t *s)
{
    int open = 0; /* closed now (the helper will not come), closed before, or it came: */
    if (!atomic_compare_exchange_strong(&s->state, &open, 2) && open == 1)
        assist_flag_wait(&s->done);
    storage_merger_free(s->m); /* the helper is done with it and with its charge */
    s->m = NULL;
    alloc_charge_done(&s->charge);
}

/* Closes share to its helper, and adds what the helper read (if it came)
 * into m: the helper's errors are the merge's. */
static int share_close(query_share_t *share, storage_merger_t *m, int *stopped, errmsg_t *em)
{
    int open = 0;
    if (atomic_compare_exchange_strong(&share->state, &open, 2)) return 0; /* it never came */
    assist_flag_wait(&share->done);
    if (share->rc != 0) {
        *stopped = share->em.text[0] != 0; /* a stop check's message */
        if (*stopped) errmsg_set(em, share->rc, "%s", share->em.text);
        return share->rc;
    }
    return share->m != NULL ? storage_merger_absorb(m, share->m) : 0;
}

/* A merger holding the blocks of every series over the plan, with share's
 * helper when it comes (share may be NULL). */
static int read_blocks(storage_t *st, const char *tenant, const query_series_t *ser,
                       const query_plan_t *plan, query_share_t *share, storage_merger_t **out,
                       errmsg_t *em)
{
    storage_merger_t *m;
    int rc = storage_merger_new(st, tenant, &m);
    if (rc != 0) return errmsg_set(em, rc, "merging blocks: %s", err_message(rc));
    storage_merger_set_charge(m, plan->charge);
    int stopped = 0; /* cancelled or past its deadline: checked per piece */
    /* a share's items fit its two 32-bit ends; a larger read is this thread's */
    if (share != NULL && !share->shared) share = NULL;
    size_t at = 0, item;
    while (rc == 0 && !stopped &&
           ends_next(share ? &share->ends : NULL, 0, ser->n * plan->n, &at, &item)) {
        stopped = (rc = query_stop_check(plan->stop, em)) != 0;
        if (rc == 0) rc = read_item(m, ser, plan, item);
    }
    if (share != NULL && rc != 0) ends_close(&share->ends); /* the helper stops too */
    if (share != NULL) {
        int src = share_close(share, m, &stopped, em);
        if (rc == 0) rc = src;
    }
    if (rc != 0) {
        storage_merger_free(m);
        return stopped ? rc : merge_error(rc, em, "reading blocks");
    }
    *out = m;
    return 0;
}

/* What a merge into dst that ended with rc says. */
static int merge_outcome(int rc, const calltree_t *dst, errmsg_t *em)
{
    if (rc == ERR_UNAVAILABLE) return merge_error(rc, em, "merging blocks");
    ASSERT_DEBUG(rc != 0 || totals_add_up(dst));
    if (rc == ERR_LIMIT)
        return errmsg_set(em, ERR_LIMIT,
                          "merged call tree exceeds %zu nodes (query-max-tree-nodes); narrow "
                          "the selector or the time range",
                          calltree_node_count(dst));
    return rc;
}

int query_merge_series(storage_t *st, const char *tenant, const query_series_t *ser,
                       const query_plan_t *plan, size_t max_nodes, calltree_t *dst, errmsg_t *em)
{
    return query_merge_series_kept(st, tenant, ser, plan, max_nodes, dst, NULL, NULL, em);
}

int query_merge_series_kept(storage_t *st, const char *tenant, const query_series_t *ser,
                            const query_plan_t *plan, size_t max_nodes, calltree_t *dst,
                            query_kept_t **kept, const query_help_t *help, errmsg_t *em)
{
    if (kept) *kept = NULL;
    storage_merger_t *m;
    int rc = read_blocks(st, tenant, ser, plan, help ? help->share : NULL, &m, em);
    if (rc != 0) return rc;
    rc = merge_truncated(st, tenant, m, max_nodes, dst, kept, help, plan->charge, em);
    /* the kept nodes are built while the merger still holds its working
     * memory: both count at once; the caller charges the kept nodes again
     * with its result once the merger is gone */
    size_t kept_charged = 0;
    if (rc == 1 && kept && *kept && plan->charge) {
        rc = alloc_charge_add(plan->charge, query_kept_bytes(*kept)) == 0 ? 1 : ERR_UNAVAILABLE;
        kept_charged = rc == 1 ? query_kept_bytes(*kept) : 0;
    }
    if (rc == 0)
        rc = storage_merger_finish(m, dst, em);
    else if (rc == 1)
        rc = 0;
    storage_merger_free(m);
    if (kept_charged) alloc_charge_sub(plan->charge, kept_charged);
    if (rc == ERR_UNAVAILABLE && kept && *kept) {
        query_kept_free(*kept);
        *kept = NULL;
    }
    return merge_outcome(rc, dst, em);
}

int query_merge_series_forests(storage_t *st, const char *tenant, const query_series_t *ser,
                               const query_plan_t *plan, unsigned flags,
                               const storage_space_known_t *known, size_t nknown, calltree_t *dst,
                               storage_merged_tab_t **tabs, size_t *ntabs, const query_help_t *help,
                               errmsg_t *em)
{
    *tabs = NULL;
    *ntabs = 0;
    storage_merger_t *m;
    int rc = read_blocks(st, tenant, ser, plan, help ? help->share : NULL, &m, em);
    if (rc != 0) return rc;
    storage_merged_tab_t *t;
    size_t n, bound = 1;
    storage_merger_known_spaces(m, known, nknown);
    rc = storage_merger_tabs(m, flags, &t, &n, em);
    int ok = rc == 0;
    for (size_t i = 0; ok && i < n; i++) {
        ok &= t[i].nonneg;
        bound += t[i].nodes - 1;
    }
    if (ok && bound <= calltree_max_nodes(dst)) { /* refused for its size as before */
        storage_merger_hand_selfs(m, t, n);       /* they outlive the merger: no copy */
        *tabs = t;
        *ntabs = n;
    } else if (rc == 0) {
        storage_merged_tabs_free(t, n);
        rc = storage_merger_finish(m, dst, em);
    }
    storage_merger_free(m);
    return merge_outcome(rc, dst, em);
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

/* The names dst lacks of k's symbols, numbered already (by the selection). */
static int load_symbols_numbered(storage_t *st, const char *tenant, const query_kept_t *k,
                                 symtab_t *dst)
{
    if (k->named) return 0;
    uint8_t *seen = calloc(k->nsid, 1);
    ids_t ids = {0};
    int rc = seen != NULL ? 0 : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < k->n; i++) {
        const char *name, *file;
        if (seen[k->sid[i]]) continue;
        seen[k->sid[i]] = 1;
        if (!symtab_get(dst, k->sym[i], &name, &file)) rc = id_fn(&ids, k->sym[i]);
    }
    if (rc == 0 && ids.n > 0) rc = storage_load_symbols(st, tenant, ids.v, ids.n, dst);
    free(seen);
    free(ids.v);
    return rc;
}

int query_load_symbols_kept(storage_t *st, const char *tenant, query_kept_t *k, symtab_t *dst)
{
    if (k->sid != NULL && k->nsid > 0) return load_symbols_numbered(st, tenant, k, dst);
    u64map_t seen; /* a function called from many places is loaded once: symbol -> sid */
    ids_t ids = {0};
    free(k->sid);
    k->nsid = 0;
    k->sid = malloc((k->n ? k->n : 1) * sizeof *k->sid);
    int rc = k->sid ? u64map_init(&seen, k->n) : ERR_NOMEM;
    if (rc != 0) return rc;
    for (size_t i = 0; rc == 0 && i < k->n; i++) {
        int put = u64map_get_or_put(&seen, k->sym[i], (uint32_t)k->nsid, &k->sid[i]);
        if (put < 0) rc = put;
        if (put == 1 && (rc = id_fn(&ids, k->sym[i])) == 0) k->nsid++;
    }
    if (rc == 0 && ids.n > 0) rc = storage_load_symbols(st, tenant, ids.v, ids.n, dst);
    if (rc != 0) { /* no numbering half made */
        free(k->sid);
        k->sid = NULL;
        k->nsid = 0;
    }
    u64map_free(&seen);
    free(ids.v);
    return rc;
}

int query_load_symbols_tabs(storage_t *st, const char *tenant, const storage_merged_tab_t *tabs,
                            size_t ntabs, symtab_t *dst)
{
    size_t all = 0;
    for (size_t i = 0; i < ntabs; i++)
        all += tabs[i].n;
    u64map_t seen; /* tokens share most symbols: each is loaded once */
    ids_t ids = {0};
    int rc = u64map_init(&seen, all / 8 + 16); /* grows as needed; clearing costs */
    for (size_t i = 0; rc == 0 && i < ntabs; i++)
        for (size_t k = 1; rc == 0 && k < tabs[i].n; k++) {
            if (tabs[i].total[k] == 0) continue; /* not a forest node: its sym is unset */
            uint32_t v;
            int put = u64map_get_or_put(&seen, tabs[i].sym[k], 0, &v);
            if (put < 0) rc = put;
            if (put == 1) rc = id_fn(&ids, tabs[i].sym[k]);
        }
    if (rc == 0 && ids.n > 0) rc = storage_load_symbols(st, tenant, ids.v, ids.n, dst);
    u64map_free(&seen);
    free(ids.v);
    return rc;
}

int query_load_symbol_ids(storage_t *st, const char *tenant, const uint64_t *ids, size_t n,
                          const uint64_t *known, size_t nknown, symtab_t *dst)
{
    /* the map holds the forests' distinct ids only (the dictionaries of a
     * service's shards share most symbols), each with its place in once;
     * the known ids are looked up in it, not put: they may be many more
     * than the share's, and a map sized for them all costs its clearing */
    u64map_t seen;
    ids_t once = {0};
    uint8_t *held = NULL;
    int rc = u64map_init(&seen, n + 16); /* no growth even when they are all distinct */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (ids[i] == SYM_OTHER || ids[i] == SYM_ROOT) continue;
        uint32_t v;
        int put = u64map_get_or_put(&seen, ids[i], (uint32_t)once.n, &v);
        if (put < 0) rc = put;
        if (put == 1) rc = id_fn(&once, ids[i]);
    }
    if (rc == 0 && nknown > 0 && once.n > 0) {
        held = calloc(once.n, 1);
        rc = held != NULL ? 0 : ERR_NOMEM;
    }
    for (size_t i = 0; rc == 0 && held != NULL && i < nknown; i++) {
        uint32_t v;
        if (u64map_get(&seen, known[i], &v)) held[v] = 1; /* not loaded */
    }
    size_t k = 0; /* the others, in order of first use */
    for (size_t i = 0; rc == 0 && i < once.n; i++)
        if (held == NULL || !held[i]) once.v[k++] = once.v[i];
    if (rc == 0 && k > 0) rc = storage_load_symbols(st, tenant, once.v, k, dst);
    u64map_free(&seen);
    free(once.v);
    free(held);
    return rc;
}

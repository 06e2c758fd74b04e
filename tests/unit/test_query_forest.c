/* test_query_forest.c — a truncating gather keeps its partials' trees as
 * forests and truncates their union without merging them (query/forest.c,
 * gather.c); its answer must be the bytes of truncating their merge.
 *
 * Generated shares (1 to 9 of them, some empty, values drawn from a small
 * range so totals tie at the cut, shapes that overlap between shares) are
 * added to a gather the ways a coordinator adds them: encoded trees, a
 * share's tree with its token forests (query_gather_add_trees, or _held reading
 * them where they lie in a message it holds until freed, as a
 * PartialResult with forests carries them), and local partials. The answer
 * (folded and flamebearer JSON, several maxNodes) must equal query_truncate
 * of the merged tree encoded by the same encoders, whether the gather was
 * given every name, asked a names function for those of the kept nodes, or
 * never learnt some. Then: a share with a
 * negative value turns the gather back to merging (same bytes), forests
 * round-trip through their encoding, a corrupt forest adds nothing, and
 * totals past INT64_MAX fall back. Forests ship in encoding 3 or 4; the
 * gather reads one of encoding 4 only where its selection looks
 * (query_packed_t), which must give the same answer, also where a subtree
 * is light on every share and heavy merged. Prints its seed; argv[1]
 * replays.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/hash.h"
#include "query/query.h"
#include "query/query_int.h"
#include "tests/unit/check.h"

#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define NSYMS 12

static symtab_t *syms;
static uint64_t sym_ids[NSYMS];

static void make_syms(void)
{
    syms = symtab_new();
    for (int i = 0; i < NSYMS; i++) {
        char name[32];
        snprintf(name, sizeof name, "pkg.fn%d", i);
        symtab_intern(syms, name, strlen(name), "f.go", 4, &sym_ids[i]);
    }
}

/* A share: random stacks over a few symbols (so shares overlap), values
 * 0..vmax (ties), sign -1 makes one value negative. */
static calltree_t *gen_tree(size_t nstacks, int64_t vmax, int negative)
{
    calltree_t *t = calltree_new(0);
    for (size_t i = 0; i < nstacks; i++) {
        uint64_t st[8];
        size_t d = check_rng() % 7;
        for (size_t k = 0; k < d; k++)
            st[k] = sym_ids[check_rng() % (k < 2 ? 3 : NSYMS)];
        int64_t v = (int64_t)(check_rng() % (uint64_t)(vmax + 1));
        CHECK_EQ_INT(calltree_add_stack(t, st, d, v), 0);
    }
    if (negative) {
        uint64_t st[2] = {sym_ids[0], sym_ids[1]};
        CHECK_EQ_INT(calltree_add_stack(t, st, 2, -5), 0);
    }
    return t;
}

/* The reference: truncate the merge and encode it as the gather does,
 * with the names of known. */
static void reference(calltree_t *const *shares, size_t n, const query_spec_t *spec,
                      const symtab_t *known, buf_t *out)
{
    calltree_t *m = calltree_new(0);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(calltree_merge(m, shares[i]), 0);
    size_t max = spec->max_nodes, nodes = calltree_node_count(m);
    if (max == 0 || max > nodes) max = nodes;
    calltree_t *t = m;
    if (nodes > max || (nodes >= 2 && query_tree_has_empty(m)))
        CHECK_EQ_INT(query_truncate(m, max, &t), 0);
    if (spec->format == QUERY_FORMAT_FOLDED) {
        CHECK_EQ_INT(query_encode_folded(t, known, out), 0);
    } else {
        query_timeline_t tl;
        int res;
        CHECK_EQ_INT(query_timeline_init(&spec->plan, &tl, &res), 0);
        CHECK_EQ_INT(query_encode_flamebearer(t, known, CPU, NULL, &tl, out), 0);
        query_timeline_free(&tl);
    }
    if (t != m) calltree_free(t);
    calltree_free(m);
}

static int same_bytes(const buf_t *a, const buf_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Finishes g and checks its answer is want's bytes (both printed when not). */
static void check_gathered(query_gather_t *g, const buf_t *want, const char *what)
{
    errmsg_t em = {{0}};
    query_result_t got;
    query_result_init(&got);
    CHECK_EQ_INT(query_gather_finish(g, NULL, &got, &em), 0);
    int same = same_bytes(&got.body, want);
    if (!same)
        fprintf(stderr, "%s: got\n%.*s\nwant\n%.*s\n", what, (int)got.body.len,
                (const char *)got.body.data, (int)want->len, (const char *)want->data);
    CHECK(same);
    query_result_free(&got);
}

static void add_syms(query_gather_t *g)
{
    for (size_t i = 0; i < symtab_count(syms); i++) {
        const char *name, *file;
        uint64_t id = symtab_id_at(syms, i);
        symtab_get(syms, id, &name, &file);
        CHECK_EQ_INT(query_gather_add_symbol(g, id, name, strlen(name), file, strlen(file)), 0);
    }
}

/* How a gather learns the names: every one added, the even ones added and
 * the rest asked of a names function once the kept nodes are chosen (as a
 * coordinator asks its cache of the names shares sent), or the odd ones
 * never known (written "unknown 0x..."). */
enum names_way { NAMES_ADDED, NAMES_ASKED, NAMES_HALF_KNOWN, NAMES_WAYS };

static size_t names_asked; /* ids the names function was asked for */

static int names_from_syms(void *ctx, const uint64_t *ids, size_t n, symtab_t *dst)
{
    (void)ctx;
    names_asked += n;
    for (size_t i = 0; i < n; i++) {
        const char *name, *file;
        if (!symtab_get(syms, ids[i], &name, &file)) continue;
        int rc = symtab_put(dst, ids[i], name, strlen(name), file, strlen(file));
        if (rc != 0) return rc;
    }
    return 0;
}

/* The names of the way's gather: what its answer must show (known: the
 * caller frees it). */
static symtab_t *name_gather(query_gather_t *g, enum names_way way)
{
    symtab_t *known = symtab_new();
    for (size_t i = 0; i < NSYMS; i++) {
        const char *name, *file;
        symtab_get(syms, sym_ids[i], &name, &file);
        if (way == NAMES_ADDED || i % 2 == 0)
            CHECK_EQ_INT(
                query_gather_add_symbol(g, sym_ids[i], name, strlen(name), file, strlen(file)), 0);
        if (way != NAMES_HALF_KNOWN || i % 2 == 0)
            CHECK_EQ_INT(symtab_put(known, sym_ids[i], name, strlen(name), file, strlen(file)), 0);
    }
    if (way == NAMES_ASKED) query_gather_names_via(g, names_from_syms, NULL);
    return known;
}

/* Splits t into pieces whose sum is t (a share's token forests): every
 * node's self goes to one piece at random. */
static size_t split_tree(const calltree_t *t, calltree_t **piece, size_t npieces)
{
    for (size_t k = 0; k < npieces; k++)
        piece[k] = calltree_new(0);
    size_t n = calltree_node_count(t);
    uint64_t stack[64];
    for (uint32_t i = 0; i < n; i++) {
        size_t d = 0;
        for (uint32_t p = i; p != 0 && d < 64; p = calltree_parent(t, p))
            stack[d++] = calltree_sym(t, p);
        for (size_t a = 0, b = d; a < b / 2; a++) { /* leaf-first to root-first */
            uint64_t x = stack[a];
            stack[a] = stack[b - 1 - a];
            stack[b - 1 - a] = x;
        }
        CHECK_EQ_INT(
            calltree_add_stack(piece[check_rng() % npieces], stack, d, calltree_self(t, i)), 0);
    }
    return npieces;
}

/* A local partial's tree holds at most this many nodes (as
 * query_partial_run makes it, from the limits). */
static size_t local_max_nodes;

/* Messages handed to a gather with query_gather_add_trees_held, and
 * freed by it: every one once, when the gather is freed. */
static size_t holds_given, holds_freed;

static void free_hold(void *p)
{
    holds_freed++;
    memset(p, 0xa5, 8); /* a read after this would see garbage */
    free(p);
}

/* Adds share t to g one of the ways a coordinator gets a share. */
static int add_share(query_gather_t *g, const query_spec_t *spec, calltree_t *t, int how,
                     errmsg_t *em)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    int rc = 0;
    if (how == 0) { /* an encoded tree */
        CHECK_EQ_INT(calltree_encode(t, &b), 0);
        rc = query_gather_add_tree(g, b.data, b.len, em);
    } else if (how == 1) { /* forests of its tokens, encoded, after a tree of nothing */
        calltree_t *piece[4], *empty = calltree_new(0);
        size_t np = split_tree(t, piece, 1 + check_rng() % 4);
        const uint8_t *enc[5];
        size_t len[5], end[5];
        CHECK_EQ_INT(calltree_encode(empty, &b), 0);
        end[0] = b.len;
        int version = QUERY_FOREST_V3 + (int)(check_rng() % 3); /* 3, 4 or 5 */
        for (size_t k = 0; k < np; k++) {
            storage_merged_tab_t f;
            CHECK_EQ_INT(query_forest_of_tree(piece[k], &f), 0);
            if (f.nonneg) {
                uint64_t *dict;
                size_t nd;
                CHECK_EQ_INT(query_forest_encode_dict(&f, version, &b, &dict, &nd), 0);
                free(dict);
            } else { /* a negative value: shipped as a tree */
                CHECK_EQ_INT(calltree_encode(piece[k], &b), 0);
            }
            end[k + 1] = b.len;
            query_forest_free(&f);
            calltree_free(piece[k]);
        }
        for (size_t k = 0; k <= np; k++) {
            enc[k] = b.data + (k ? end[k - 1] : 0);
            len[k] = end[k] - (k ? end[k - 1] : 0);
        }
        if (check_rng() % 2) { /* read where they lie, in a message the gather holds */
            uint8_t *msg = malloc(b.len + 8);
            memcpy(msg, b.data, b.len);
            for (size_t k = 0; k <= np; k++)
                enc[k] = msg + (enc[k] - b.data);
            holds_given++;
            rc = query_gather_add_trees_held(g, enc, len, np + 1, msg, free_hold, em);
            memset(b.data, 0x5a, b.len); /* the copy the gather does not read */
        } else {
            rc = query_gather_add_trees(g, enc, len, np + 1, em);
        }
        calltree_free(empty);
    } else { /* a local partial */
        query_partial_t p = {.kind = QUERY_KIND_RENDER, .tree = calltree_new(local_max_nodes)};
        CHECK_EQ_INT(calltree_merge(p.tree, t), 0);
        int res;
        if (spec->format == QUERY_FORMAT_JSON)
            CHECK_EQ_INT(query_timeline_init(&spec->plan, &p.tl, &res), 0);
        rc = query_gather_add(g, &p, em);
        query_partial_free(&p);
    }
    buf_free(&b);
    return rc;
}

static void spec_of(const char *format, const char *max_nodes, query_spec_t *spec)
{
    query_limits_t lim;
    query_limits_default(&lim);
    query_params_t p = {
        .query = CPU "{}", .from = "now-1h", .format = format, .max_nodes = max_nodes};
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, 1700000000000LL, spec, &em), 0);
}

static void one_round(int negative)
{
    static const char *formats[] = {"folded", "json"};
    static const char *maxes[] = {"2", "3", "5", "8", "16", "40", "100000"};
    query_spec_t spec;
    spec_of(formats[check_rng() % 2], maxes[check_rng() % 7], &spec);
    CHECK(query_spec_forests(&spec));
    size_t n = 1 + check_rng() % 9;
    calltree_t *shares[9];
    int64_t vmax = 1 + (int64_t)(check_rng() % 4);
    for (size_t i = 0; i < n; i++) { /* every fourth share, about, has nothing */
        size_t stacks = check_rng() % 4 == 0 ? 0 : 1 + check_rng() % 60;
        shares[i] = gen_tree(stacks, vmax, negative && i == n / 2);
    }
    query_limits_t lim;
    query_limits_default(&lim);
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    enum names_way way = (enum names_way)(check_rng() % NAMES_WAYS);
    symtab_t *known = name_gather(g, way);
    buf_t want;
    buf_init(&want, BUF_UNLIMITED);
    reference(shares, n, &spec, known, &want);
    symtab_free(known);
    errmsg_t em = {{0}};
    size_t freed = holds_freed;
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(add_share(g, &spec, shares[i], (int)(check_rng() % 3), &em), 0);
    char what[96];
    snprintf(what, sizeof what, "%zu shares, maxNodes %zu, %s, names way %d", n, spec.max_nodes,
             spec.format == QUERY_FORMAT_FOLDED ? "folded" : "json", (int)way);
    check_gathered(g, &want, what);
    CHECK_EQ_INT(holds_freed, freed); /* held while the gather lives */
    query_gather_free(g);
    CHECK_EQ_INT(holds_freed, holds_given); /* then freed, once each */
    buf_free(&want);
    for (size_t i = 0; i < n; i++)
        calltree_free(shares[i]);
    query_spec_free(&spec);
}

/* b is a of the same nodes in the same order: same symbols, values, kid
 * lists and parents. */
static void same_forest(const storage_merged_tab_t *a, const storage_merged_tab_t *b)
{
    CHECK_EQ_INT(b->n, a->n);
    CHECK_EQ_INT(b->nodes, a->nodes);
    for (size_t i = 0; i < a->n && i < b->n; i++) {
        CHECK_EQ_INT(b->sym[i], a->sym[i]);
        CHECK_EQ_INT(b->self[i], a->self[i]);
        CHECK_EQ_INT(b->total[i], a->total[i]);
        CHECK_EQ_INT(b->first_kid[i], a->first_kid[i]);
        if (i > 0) CHECK_EQ_INT(b->next_sib[i], a->next_sib[i]);
        if (i > 0 && a->parent != NULL) CHECK_EQ_INT(b->parent[i], a->parent[i]);
    }
}

/* An encoding-4 or 5 forest opened where it lies reads as its decoding:
 * the root's values, and each node's kids (symbol, total, self) in order. */
static void packed_same_at(const buf_t *b, const storage_merged_tab_t *dec, int at)
{
    query_packed_t pk;
    CHECK_EQ_INT(at ? query_packed_open_at(b->data, b->len, 0, &pk)
                    : query_packed_open(b->data, b->len, 0, &pk),
                 0);
    CHECK(at ? pk.own == NULL && pk.rec > b->data && pk.rec < b->data + b->len : pk.own != NULL);
    CHECK_EQ_INT(query_packed_bytes(&pk), (at ? b->len : pk.len) + pk.nsyms * sizeof(uint64_t));
    CHECK_EQ_INT(pk.nodes, dec->nodes);
    CHECK_EQ_INT(pk.root_total, dec->total[0]);
    CHECK_EQ_INT(pk.root_self, dec->self[0]);
    /* pre-order: walk both, node i of the decoding read as node[i] */
    query_pkid_t *node = calloc(dec->n, sizeof *node);
    node[0] = query_packed_root(&pk);
    query_pkid_t *kids = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < dec->n; i++) {
        size_t nk = 0;
        CHECK_EQ_INT(query_packed_kids(&pk, node[i], &kids, &cap, &nk), 0);
        size_t k = 0;
        for (uint32_t c = dec->first_kid[i]; c != STORAGE_NO_KID && k < nk; c = dec->next_sib[c]) {
            CHECK_EQ_INT(kids[k].sym, dec->sym[c]);
            CHECK_EQ_INT(kids[k].total, dec->total[c]);
            CHECK_EQ_INT(kids[k].self, dec->self[c]);
            node[c] = kids[k++];
        }
        size_t want = 0;
        for (uint32_t c = dec->first_kid[i]; c != STORAGE_NO_KID; c = dec->next_sib[c])
            want++;
        CHECK_EQ_INT(nk, want);
    }
    storage_merged_tab_t whole;
    CHECK_EQ_INT(query_packed_decode(&pk, &whole), 0);
    same_forest(dec, &whole);
    query_forest_free(&whole);
    free(kids);
    free(node);
    query_packed_free(&pk);
}

/* Copied out or read where it lies in b, the same. */
static void packed_same(const buf_t *b, const storage_merged_tab_t *dec)
{
    packed_same_at(b, dec, 0);
    packed_same_at(b, dec, 1);
}

/* A damaged encoding-4 or 5 forest is refused when opened, or its selection
 * (every node read, maxNodes past its size) fails or keeps a tree whose
 * totals add up: never a read outside it. */
static void packed_damaged(const buf_t *b)
{
    query_packed_t pk;
    if (query_packed_open(b->data, b->len, 0, &pk) != 0) return;
    calltree_t *t = calltree_new(0);
    if (query_truncate_mixed_charged(NULL, 0, &pk, 1, 100000, NULL, t) == 0) {
        CHECK(calltree_root_total(t) == pk.root_total);
    }
    calltree_free(t);
    query_packed_free(&pk);
}

/* A forest's encoding decodes to the same forest (and tree); damaged
 * encodings are refused or stay well formed. */
static void test_roundtrip(void)
{
    for (int round = 0; round < 150; round++) {
        calltree_t *t = gen_tree(check_rng() % 80, 3, 0);
        storage_merged_tab_t f, back;
        CHECK_EQ_INT(query_forest_of_tree(t, &f), 0);
        CHECK(f.nonneg);
        /* each version, and version 3 of a forest without parents (as a
         * tab made by hand: they come from the kid lists) */
        int version = round % 5 == 0   ? QUERY_FOREST_V2
                      : round % 5 == 3 ? QUERY_FOREST_V4
                      : round % 5 == 4 ? QUERY_FOREST_V5
                                       : QUERY_FOREST_V3;
        int packed = version == QUERY_FOREST_V4 || version == QUERY_FOREST_V5;
        if (round % 5 == 2) {
            free(f.parent);
            f.parent = NULL;
        }
        buf_t b;
        buf_init(&b, BUF_UNLIMITED);
        uint64_t *dict;
        size_t nd;
        CHECK_EQ_INT(query_forest_encode_dict(&f, version, &b, &dict, &nd), 0);
        free(dict);
        CHECK_EQ_INT(b.data[0], version);
        CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &back), 0);
        if (!packed) same_forest(&f, &back); /* 4 and 5: pre-order ids */
        if (packed) packed_same(&b, &back);
        CHECK_EQ_INT(back.n, f.n);
        CHECK_EQ_INT(back.total[0], calltree_root_total(t));
        calltree_t *u = calltree_new(0);
        CHECK_EQ_INT(query_forest_merge(u, &back), 0);
        buf_t x, y;
        buf_init(&x, BUF_UNLIMITED);
        buf_init(&y, BUF_UNLIMITED);
        CHECK_EQ_INT(query_encode_folded(u, syms, &x), 0);
        CHECK_EQ_INT(query_encode_folded(t, syms, &y), 0);
        CHECK(same_bytes(&x, &y));
        CHECK_EQ_INT(calltree_root_total(u), calltree_root_total(t));
        /* every cut and every flipped byte is refused or decodes to a
         * well-formed forest (its totals add up) */
        for (size_t cut = 0; cut < b.len; cut += 1 + b.len / 16) {
            storage_merged_tab_t c;
            CHECK(query_forest_decode(b.data, cut, 0, &c) != 0);
        }
        for (size_t at = 1; at < b.len; at += 1 + b.len / 32) {
            uint8_t save = b.data[at];
            b.data[at] ^= (uint8_t)(1 + check_rng() % 255);
            storage_merged_tab_t c;
            if (packed) packed_damaged(&b);
            if (query_forest_decode(b.data, b.len, 0, &c) == 0) {
                for (size_t i = 0; i < c.n; i++) {
                    int64_t sum = c.self[i];
                    for (uint32_t k = c.first_kid[i]; k != STORAGE_NO_KID; k = c.next_sib[k]) {
                        CHECK(k > i && k < c.n);
                        sum += c.total[k];
                    }
                    CHECK_EQ_INT(sum, c.total[i]);
                    CHECK(i == 0 || c.total[i] > 0);
                }
                query_forest_free(&c);
            }
            b.data[at] = save;
        }
        /* a forest holds no node of total 0, whatever the tree held */
        for (size_t i = 1; i < back.n; i++)
            CHECK(back.total[i] > 0);
        buf_free(&x);
        buf_free(&y);
        buf_free(&b);
        calltree_free(u);
        calltree_free(t);
        query_forest_free(&f);
        query_forest_free(&back);
    }
}

/* Selves and totals on each side of every varint length (2^7k - 1, 2^7k,
 * 2^7k + 1) come back the same from encodings 4 and 5: the records'
 * writer unrolls the first bytes of a varint. */
static void test_varint_lengths(void)
{
    calltree_t *t = calltree_new(0);
    for (int k = 1; k <= 8; k++)
        for (int d = -1; d <= 1; d++) {
            int64_t v = (int64_t)(1ULL << (7 * k)) + d;
            uint64_t st[2] = {sym_ids[k], sym_ids[10 + (d > 0)]};
            CHECK_EQ_INT(calltree_add_stack(t, st, d == 0 ? 1 : 2, v), 0);
        }
    storage_merged_tab_t f;
    CHECK_EQ_INT(query_forest_of_tree(t, &f), 0);
    for (int version = QUERY_FOREST_V4; version <= QUERY_FOREST_V5; version++) {
        buf_t b, x, y;
        buf_init(&b, BUF_UNLIMITED);
        buf_init(&x, BUF_UNLIMITED);
        buf_init(&y, BUF_UNLIMITED);
        uint64_t *dict;
        size_t nd;
        storage_merged_tab_t back;
        CHECK_EQ_INT(query_forest_encode_dict(&f, version, &b, &dict, &nd), 0);
        free(dict);
        CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &back), 0);
        packed_same(&b, &back);
        calltree_t *u = calltree_new(0);
        CHECK_EQ_INT(query_forest_merge(u, &back), 0);
        CHECK_EQ_INT(query_encode_folded(u, syms, &x), 0);
        CHECK_EQ_INT(query_encode_folded(t, syms, &y), 0);
        CHECK(same_bytes(&x, &y));
        calltree_free(u);
        query_forest_free(&back);
        buf_free(&b);
        buf_free(&x);
        buf_free(&y);
    }
    query_forest_free(&f);
    calltree_free(t);
}

/* A partial whose second forest is corrupt adds nothing: the answer is
 * that of the other shares alone. */
static void test_corrupt(void)
{
    query_spec_t spec;
    spec_of("folded", "8", &spec);
    calltree_t *a = gen_tree(40, 3, 0), *b = gen_tree(40, 3, 0);
    buf_t want;
    buf_init(&want, BUF_UNLIMITED);
    reference(&a, 1, &spec, syms, &want);
    query_limits_t lim;
    query_limits_default(&lim);
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    add_syms(g);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(add_share(g, &spec, a, 0, &em), 0);
    buf_t e1, e2;
    buf_init(&e1, BUF_UNLIMITED);
    buf_init(&e2, BUF_UNLIMITED);
    CHECK_EQ_INT(calltree_encode(b, &e1), 0);
    CHECK_EQ_INT(calltree_encode(b, &e2), 0);
    e2.len -= 1; /* cut short */
    const uint8_t *enc[2] = {e1.data, e2.data};
    size_t len[2] = {e1.len, e2.len};
    CHECK_EQ_INT(query_gather_add_trees(g, enc, len, 2, &em), ERR_CORRUPT);
    check_gathered(g, &want, __func__);
    query_gather_free(g);
    buf_free(&want);
    buf_free(&e1);
    buf_free(&e2);
    calltree_free(a);
    calltree_free(b);
    query_spec_free(&spec);
}

/* Totals that pass INT64_MAX together (each share's fits): the merge wraps,
 * and the gather must answer what the merge answers, not fail. */
static void test_overflow(void)
{
    query_spec_t spec;
    spec_of("folded", "4", &spec);
    calltree_t *s[2];
    for (int i = 0; i < 2; i++) {
        s[i] = calltree_new(0);
        uint64_t st[2] = {sym_ids[i], sym_ids[2]};
        CHECK_EQ_INT(calltree_add_stack(s[i], st, 2, INT64_MAX / 2 + 7), 0);
        CHECK_EQ_INT(calltree_add_stack(s[i], st, 1, 3), 0);
    }
    buf_t want;
    buf_init(&want, BUF_UNLIMITED);
    reference(s, 2, &spec, syms, &want);
    query_limits_t lim;
    query_limits_default(&lim);
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    add_syms(g);
    errmsg_t em = {{0}};
    for (int i = 0; i < 2; i++)
        CHECK_EQ_INT(add_share(g, &spec, s[i], 0, &em), 0);
    check_gathered(g, &want, __func__);
    query_gather_free(g);
    buf_free(&want);
    calltree_free(s[0]);
    calltree_free(s[1]);
    query_spec_free(&spec);
}

/* Forests whose union might pass max_tree_nodes: the gather merges, and
 * refuses with ERR_LIMIT as a merge would. */
static void test_tree_limit(void)
{
    query_spec_t spec;
    spec_of("folded", "8", &spec);
    query_limits_t lim;
    query_limits_default(&lim);
    lim.max_tree_nodes = 30;
    local_max_nodes = 30;
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    errmsg_t em = {{0}};
    int rc = 0;
    for (int i = 0; i < 40 && rc == 0; i++) { /* distinct stacks: the merge grows */
        calltree_t *t = calltree_new(0);
        uint64_t st[3] = {sym_ids[i % NSYMS], sym_ids[(i / NSYMS) % NSYMS], sym_ids[i % 5]};
        CHECK_EQ_INT(calltree_add_stack(t, st, 3, 1 + i), 0);
        rc = add_share(g, &spec, t, (int)(check_rng() % 3), &em);
        calltree_free(t);
    }
    query_result_t got; /* a local partial's tree is checked with the forests at the end */
    query_result_init(&got);
    if (rc == 0) rc = query_gather_finish(g, NULL, &got, &em);
    query_result_free(&got);
    CHECK_EQ_INT(rc, ERR_LIMIT);
    CHECK(strstr(em.text, "query-max-tree-nodes") != NULL);
    query_gather_free(g);
    query_spec_free(&spec);
    local_max_nodes = 0;
}

/* A forest encoding (version 2) of a root with kids of the given selves
 * (each its own dictionary entry, k + 1 for kid k), into b. */
static void forest_bytes(const uint64_t *self, size_t nkids, buf_t *b)
{
    buf_init(b, BUF_UNLIMITED);
    CHECK_EQ_INT(buf_append_byte(b, 2), 0);
    CHECK_EQ_INT(buf_append_uvarint(b, nkids + 1), 0);
    CHECK_EQ_INT(buf_append_uvarint(b, 0), 0); /* the root: index 0, self 0 */
    CHECK_EQ_INT(buf_append_uvarint(b, 0), 0);
    CHECK_EQ_INT(buf_append_uvarint(b, nkids), 0);
    for (size_t k = 1; k <= nkids; k++)
        CHECK_EQ_INT(buf_append_uvarint(b, k), 0);
    for (size_t k = 1; k <= nkids; k++) {
        CHECK_EQ_INT(buf_append_uvarint(b, k), 0);
        CHECK_EQ_INT(buf_append_uvarint(b, self[k - 1]), 0);
        CHECK_EQ_INT(buf_append_uvarint(b, 0), 0);
    }
    CHECK_EQ_INT(buf_append_uvarint(b, nkids + 1), 0);
    for (size_t k = 0; k <= nkids; k++) {
        uint8_t le[8] = {(uint8_t)(k == 0 ? SYM_ROOT : k + 1)};
        CHECK_EQ_INT(buf_append(b, le, 8), 0);
    }
}

/* The decoder's totals: summed from the kids, and a node below the root of
 * total 0 or a total past INT64_MAX refused as corrupt. */
static void test_decode_totals(void)
{
    uint64_t ok[2] = {5, 7}, zero[2] = {5, 0}, over[2] = {INT64_MAX, 1};
    buf_t b;
    storage_merged_tab_t f;
    forest_bytes(ok, 2, &b);
    CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &f), 0);
    CHECK_EQ_INT(f.total[0], 12);
    CHECK_EQ_INT(f.total[1], 5);
    CHECK_EQ_INT(f.total[2], 7);
    CHECK_EQ_INT(f.sym[2], 3);
    query_forest_free(&f);
    buf_free(&b);
    forest_bytes(zero, 2, &b);
    CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &f), ERR_CORRUPT);
    buf_free(&b);
    forest_bytes(over, 2, &b);
    CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &f), ERR_CORRUPT);
    buf_free(&b);
}

/* A version 3 forest encoding of n nodes: node i's parent is i - back[i]
 * (back[0] unused), its self self[i], its symbol dictionary entry i (the
 * root's SYM_ROOT, node i's i + 1). */
static void forest_bytes_v3(const uint64_t *back, const uint64_t *self, size_t n, buf_t *b)
{
    buf_init(b, BUF_UNLIMITED);
    CHECK_EQ_INT(buf_append_byte(b, QUERY_FOREST_V3), 0);
    CHECK_EQ_INT(buf_append_uvarint(b, n), 0);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(buf_append_uvarint(b, i), 0);
        CHECK_EQ_INT(buf_append_uvarint(b, self[i]), 0);
        if (i > 0) CHECK_EQ_INT(buf_append_uvarint(b, back[i]), 0);
    }
    CHECK_EQ_INT(buf_append_uvarint(b, n), 0);
    for (size_t k = 0; k < n; k++) {
        uint64_t id = k == 0 ? SYM_ROOT : k + 1;
        uint8_t le[8] = {(uint8_t)id, (uint8_t)(id >> 8), (uint8_t)(id >> 16)};
        CHECK_EQ_INT(buf_append(b, le, 8), 0);
    }
}

/* Version 3: each node's parent given as its distance back. Kids come out
 * linked in ascending order with their parents and totals; a distance of 0
 * or past the root, a node of total 0, a total past INT64_MAX, bytes left
 * over and a node deeper than CALLTREE_MAX_DEPTH are refused as corrupt. */
static void test_decode_v3(void)
{
    /* root; 1 and 4 under it; 2 and 3 under 1 */
    uint64_t back[5] = {0, 1, 1, 2, 4}, self[5] = {1, 2, 3, 4, 5};
    buf_t b;
    storage_merged_tab_t f;
    forest_bytes_v3(back, self, 5, &b);
    CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &f), 0);
    CHECK_EQ_INT(f.total[0], 15);
    CHECK_EQ_INT(f.total[1], 9);
    CHECK_EQ_INT(f.total[4], 5);
    CHECK_EQ_INT(f.first_kid[0], 1);
    CHECK_EQ_INT(f.next_sib[1], 4);
    CHECK_EQ_INT(f.next_sib[4], STORAGE_NO_KID);
    CHECK_EQ_INT(f.first_kid[1], 2);
    CHECK_EQ_INT(f.next_sib[2], 3);
    CHECK_EQ_INT(f.next_sib[3], STORAGE_NO_KID);
    CHECK_EQ_INT(f.first_kid[2], STORAGE_NO_KID);
    CHECK_EQ_INT(f.parent[3], 1);
    CHECK_EQ_INT(f.sym[3], 4);
    query_forest_free(&f);
    CHECK_EQ_INT(query_forest_decode(b.data, b.len, 4, &f), ERR_LIMIT);
    CHECK_EQ_INT(buf_append_byte(&b, 0), 0); /* a byte left over */
    CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &f), ERR_CORRUPT);
    buf_free(&b);
    uint64_t bad[][5] = {{0, 1, 0, 2, 4}, {0, 1, 3, 2, 4}, {0, 1, 1, 2, 5}};
    for (size_t k = 0; k < 3; k++) {
        forest_bytes_v3(bad[k], self, 5, &b);
        CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &f), ERR_CORRUPT);
        buf_free(&b);
    }
    uint64_t zero[5] = {1, 2, 0, 4, 5}, over[5] = {0, INT64_MAX, 0, 0, 1};
    forest_bytes_v3(back, zero, 5, &b);
    CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &f), ERR_CORRUPT);
    buf_free(&b);
    forest_bytes_v3(back, over, 5, &b);
    CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &f), ERR_CORRUPT);
    buf_free(&b);
    /* a chain CALLTREE_MAX_DEPTH deep below the root, then one deeper */
    size_t n = CALLTREE_MAX_DEPTH + 2;
    uint64_t *cb = malloc(n * sizeof *cb), *cs = calloc(n, sizeof *cs);
    CHECK(cb != NULL && cs != NULL);
    for (size_t i = 0; i < n; i++)
        cb[i] = 1;
    cs[n - 2] = 1;
    forest_bytes_v3(cb, cs, n - 1, &b);
    CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &f), 0);
    CHECK_EQ_INT(f.total[0], 1);
    query_forest_free(&f);
    buf_free(&b);
    cs[n - 2] = 0;
    cs[n - 1] = 1;
    forest_bytes_v3(cb, cs, n, &b);
    CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &f), ERR_CORRUPT);
    buf_free(&b);
    free(cb);
    free(cs);
}

/* The root's symbol is SYM_ROOT in every forest a share sends (and every
 * storage_merged_tab_t): an encoding whose root names another is refused
 * as corrupt, in either version. */
static void test_decode_root_symbol(void)
{
    calltree_t *t = gen_tree(20, 3, 0);
    CHECK_EQ_INT(calltree_add_stack(t, NULL, 0, 1), 0); /* a non-empty tree */
    storage_merged_tab_t f, back;
    CHECK_EQ_INT(query_forest_of_tree(t, &f), 0);
    for (int version = QUERY_FOREST_V2; version <= QUERY_FOREST_V3; version++) {
        buf_t b;
        buf_init(&b, BUF_UNLIMITED);
        uint64_t *dict;
        size_t nd;
        CHECK_EQ_INT(query_forest_encode_dict(&f, version, &b, &dict, &nd), 0);
        CHECK(nd >= 1 && dict[0] == SYM_ROOT); /* the root's entry comes first */
        free(dict);
        CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &back), 0);
        CHECK(back.sym[0] == SYM_ROOT);
        query_forest_free(&back);
        b.data[b.len - 8 * nd] = 0x35; /* the root's entry: another symbol */
        CHECK_EQ_INT(query_forest_decode(b.data, b.len, 0, &back), ERR_CORRUPT);
        CHECK_EQ_INT(back.n, 0);
        buf_free(&b);
    }
    query_forest_free(&f);
    calltree_free(t);
}

/* A forest sized, then written where it is asked (what a share puts in
 * its message): the bytes and dictionary of query_forest_encode_dict, no
 * byte written past its size; other versions and a forest without symbol
 * numbers refused. */
static void sized_same_bytes(const storage_merged_tab_t *f, int version, const buf_t *want,
                             const uint64_t *dict, size_t ndict)
{
    query_forest_sized_t z;
    int rc = query_forest_size(f, version, &z);
    int packed = version == QUERY_FOREST_V4 || version == QUERY_FOREST_V5;
    CHECK_EQ_INT(rc, packed && f->symno != NULL ? 0 : ERR_INVALID_ARGUMENT);
    if (rc == 0) {
        CHECK_EQ_INT(z.bytes, want->len);
        CHECK(z.ndict == ndict && memcmp(z.dict, dict, ndict * sizeof *dict) == 0);
        CHECK(z.held >= f->n * sizeof(uint32_t));
        uint8_t *at = malloc(z.bytes + 16);
        memset(at, 0xa5, z.bytes + 16);
        query_forest_write(&z, at + 8);
        CHECK(memcmp(at + 8, want->data, want->len) == 0);
        for (int k = 0; k < 8; k++) /* nothing before or after it */
            CHECK(at[k] == 0xa5 && at[z.bytes + 8 + k] == 0xa5);
        free(at);
    }
    query_forest_sized_free(&z);
}

/* A forest that carries its table's symbol numbers (storage_merged_tab_t
 * symno, as a share's forests do) encodes to the same bytes and dictionary
 * as without them, in both versions: the numbers (here a random
 * numbering of the symbols, with numbers no node uses) only find a
 * symbol's dictionary index, whose order stays that of first use; into a
 * buffer with a max, both ways fit or refuse alike. */
static void test_symnos_same_bytes(void)
{
    for (int round = 0; round < 100; round++) {
        calltree_t *t = gen_tree(check_rng() % 80, 3, 0);
        storage_merged_tab_t f;
        CHECK_EQ_INT(query_forest_of_tree(t, &f), 0);
        for (size_t i = 0; round % 2 == 1 && i < f.n; i++) { /* records longer than the */
            f.self[i] <<= 36;                                /* room asked up front */
            f.total[i] <<= 36;
        }
        uint32_t no_of[NSYMS + 1]; /* sym_ids[k]'s number; [NSYMS]: the root's */
        size_t nsyms = NSYMS + 1 + check_rng() % 5;
        for (size_t k = 0; k <= NSYMS; k++) { /* distinct numbers below nsyms */
            int dup;
            do {
                no_of[k] = (uint32_t)(check_rng() % nsyms);
                dup = 0;
                for (size_t j = 0; j < k; j++)
                    dup |= no_of[j] == no_of[k];
            } while (dup);
        }
        uint32_t *symno = malloc(f.n * sizeof *symno);
        for (size_t i = 0; i < f.n; i++) {
            size_t k = NSYMS;
            for (size_t j = 0; j < NSYMS; j++)
                if (f.sym[i] == sym_ids[j]) k = j;
            CHECK(k < NSYMS || f.sym[i] == SYM_ROOT);
            symno[i] = no_of[k];
        }
        for (int version = QUERY_FOREST_V2; version <= QUERY_FOREST_V5; version++) {
            buf_t a, b;
            buf_init(&a, BUF_UNLIMITED);
            buf_init(&b, BUF_UNLIMITED);
            uint64_t *da, *db;
            size_t na, nb;
            f.symno = NULL;
            CHECK_EQ_INT(query_forest_encode_dict(&f, version, &a, &da, &na), 0);
            f.symno = symno;
            f.nsyms = nsyms;
            CHECK_EQ_INT(query_forest_encode_dict(&f, version, &b, &db, &nb), 0);
            CHECK(same_bytes(&a, &b));
            CHECK_EQ_INT(nb, na);
            CHECK(nb == na && memcmp(da, db, na * sizeof *da) == 0);
            sized_same_bytes(&f, version, &b, db, nb);
            free(da);
            free(db);
            /* into a buffer whose max is below or near the encoding's size: both
             * ways refuse or fit alike (the room asked per record is the
             * same), and what fits is the same bytes */
            size_t full = a.len;
            for (size_t max = full / 2; max <= full + 24; max++) {
                buf_t c, d;
                buf_init(&c, max);
                buf_init(&d, max);
                f.symno = NULL;
                int rc1 = query_forest_encode_dict(&f, version, &c, &da, &na);
                free(da);
                f.symno = symno;
                int rc2 = query_forest_encode_dict(&f, version, &d, &db, &nb);
                free(db);
                CHECK_EQ_INT(rc2, rc1);
                CHECK(rc1 != 0 || (same_bytes(&c, &a) && same_bytes(&d, &a)));
                CHECK(rc1 == 0 || rc1 == ERR_TOO_LARGE);
                buf_free(&c);
                buf_free(&d);
            }
            buf_free(&a);
            buf_free(&b);
        }
        f.symno = NULL;
        free(symno);
        query_forest_free(&f);
        calltree_free(t);
    }
}

/* Nine shares, each with a heavy path of its own (total 10) and the same
 * light path pkg.fn9;pkg.fn10 (2 on each): on every share the light path
 * is below every heavy one, so a share (or a reader that skipped subtrees
 * by a share's own cut) would drop it; merged it weighs 18, the heaviest
 * path, and must be kept. Shipped in encoding 4, read where they lie. */
static void test_light_everywhere(void)
{
    for (int max = 4; max <= 12; max += 4) {
        char m[8];
        snprintf(m, sizeof m, "%d", max);
        query_spec_t spec;
        spec_of("folded", m, &spec);
        calltree_t *shares[9];
        for (size_t i = 0; i < 9; i++) {
            shares[i] = calltree_new(0);
            uint64_t heavy[2] = {sym_ids[i], sym_ids[11]}, light[2] = {sym_ids[9], sym_ids[10]};
            CHECK_EQ_INT(calltree_add_stack(shares[i], heavy, 2, 10), 0);
            CHECK_EQ_INT(calltree_add_stack(shares[i], light, 2, 2), 0);
        }
        buf_t want;
        buf_init(&want, BUF_UNLIMITED);
        reference(shares, 9, &spec, syms, &want);
        CHECK(strstr((const char *)want.data, "pkg.fn9;pkg.fn10 18") != NULL);
        query_limits_t lim;
        query_limits_default(&lim);
        query_gather_t *g;
        CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
        add_syms(g);
        errmsg_t em = {{0}};
        for (size_t i = 0; i < 9; i++) {
            buf_t b;
            buf_init(&b, BUF_UNLIMITED);
            calltree_t *empty = calltree_new(0);
            CHECK_EQ_INT(calltree_encode(empty, &b), 0);
            size_t e0 = b.len;
            storage_merged_tab_t f;
            CHECK_EQ_INT(query_forest_of_tree(shares[i], &f), 0);
            uint64_t *dict;
            size_t nd;
            CHECK_EQ_INT(query_forest_encode_dict(&f, QUERY_FOREST_V4, &b, &dict, &nd), 0);
            free(dict);
            const uint8_t *enc[2] = {b.data, b.data + e0};
            size_t len[2] = {e0, b.len - e0};
            CHECK_EQ_INT(query_gather_add_trees(g, enc, len, 2, &em), 0);
            query_forest_free(&f);
            calltree_free(empty);
            buf_free(&b);
        }
        check_gathered(g, &want, __func__);
        query_gather_free(g);
        buf_free(&want);
        for (size_t i = 0; i < 9; i++)
            calltree_free(shares[i]);
        query_spec_free(&spec);
    }
}

/* A budget's hook on the buffer encoding 4 is written to: held is what the
 * buffer and its encoder hold together; above limit it refuses. */
typedef struct held_hook {
    size_t limit, peak, last;
} held_hook_t;

static int held_grows(void *ctx, size_t held)
{
    held_hook_t *h = ctx;
    if (held > h->limit) return ERR_UNAVAILABLE;
    h->peak = held > h->peak ? held : h->peak;
    h->last = held;
    return 0;
}

/* Encoding 4's working memory (its per-id arrays) is held beside the
 * answer's buffer: a budget with room for the buffer alone refuses it,
 * one with room for both sees it and has it back at the end. */
static void test_v4_working_memory_charged(void)
{
    for (int round = 0; round < 20; round++) {
        calltree_t *t = gen_tree(20 + check_rng() % 200, 5, 0);
        storage_merged_tab_t f;
        CHECK_EQ_INT(query_forest_of_tree(t, &f), 0);
        uint64_t *dict;
        size_t nd;
        buf_t a;
        buf_init(&a, BUF_UNLIMITED);
        CHECK_EQ_INT(query_forest_encode_dict(&f, QUERY_FOREST_V4, &a, &dict, &nd), 0);
        free(dict);
        for (int room = 0; room < 2; room++) {
            buf_t b;
            buf_init(&b, BUF_UNLIMITED);
            CHECK_EQ_INT(buf_reserve(&b, 2 * a.len + 64), 0); /* no growth while encoding */
            held_hook_t h = {b.cap + (room ? f.n * sizeof(uint32_t) * 2 : 0), 0, 0};
            buf_charge(&b, held_grows, &h);
            int rc = query_forest_encode_dict(&f, QUERY_FOREST_V4, &b, &dict, &nd);
            free(dict);
            if (room) {
                CHECK_EQ_INT(rc, 0);
                CHECK(same_bytes(&a, &b));
                CHECK(h.peak >= b.cap + f.n * sizeof(uint32_t)); /* the arrays were seen */
                CHECK_EQ_INT(h.last, b.cap);                     /* and given back */
            } else {
                CHECK_EQ_INT(rc, ERR_UNAVAILABLE);
            }
            buf_free(&b);
        }
        buf_free(&a);
        query_forest_free(&f);
        calltree_free(t);
    }
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    check_rng_state = seed ? seed : 1;
    make_syms();
    for (int round = 0; round < 400; round++)
        one_round(round % 4 == 3);
    CHECK(names_asked > 0); /* the kept nodes' names were asked for */
    test_roundtrip();
    test_varint_lengths();
    test_corrupt();
    test_overflow();
    test_tree_limit();
    test_decode_totals();
    test_decode_v3();
    test_decode_root_symbol();
    test_symnos_same_bytes();
    test_light_everywhere();
    test_v4_working_memory_charged();
    symtab_free(syms);
    return check_exit();
}

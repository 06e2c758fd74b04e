/* spanval.c — span/trace tree values with their membership (format 8;
 * docs/storage-format.md, `spans`) and their merge operator.
 *
 * A span tree is the sum of the span's samples over every profile that
 * carries the span id (in one series and 10 s window). A node that gains a
 * range receives the source's span trees while live writes reach it too, so
 * the same profile can arrive twice: once inside the streamed tree, once as
 * a live write. A value therefore lists its members, each profile id with
 * its own tree, and every merge unites them by profile id: a profile listed
 * on both sides counts once.
 *
 * The list is bounded (max_span_members): past it the members with the
 * highest ids are folded into one anonymous `rest` tree that keeps only how
 * many profiles it holds. Anonymous profiles cannot be united by id, so the
 * fallback never adds what could already be there:
 *   - an operand from a write (seen-checked: a profile new to this node)
 *     is added, members by id and its rest as it is, unless the value is
 *     SEALED, i.e. its rest may hold profiles that a stream brought and that
 *     this node never recorded as seen; then it is dropped (counted);
 *   - a streamed operand (SPANVAL_STREAM) is united member by member when
 *     neither side has a rest; otherwise the side with more profiles is kept
 *     whole and the other dropped (counted), and a kept streamed rest seals
 *     the value. A value that lists a member a stream brought is FOREIGN,
 *     and folding members of a FOREIGN value into the rest seals it too.
 * So a span may come out short on a node that received it, never long.
 *
 * The merge must never fail (RocksDB turns a failure into corruption): a
 * part that does not parse is skipped and counted, like other operators.
 * A partial merge that meets a streamed operand declines (RocksDB keeps the
 * operands), as union with a rest is not associative.
 */
#include <stdlib.h>
#include <string.h>

#include "common/calltree.h"
#include "common/log.h"
#include "common/varint.h"
#include "storage/storage_int.h"

#define MERGE_SPANS_NAME "flamedb.span_union.v2"

static int member_add(spanval_t *v, const uint8_t *id, const uint8_t *tree, size_t len)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 4;
        spanval_member_t *m = realloc(v->m, cap * sizeof *m);
        if (m == NULL) return ERR_NOMEM;
        v->m = m;
        v->cap = cap;
    }
    memcpy(v->m[v->n].id, id, 16);
    v->m[v->n].tree = tree;
    v->m[v->n++].len = len;
    return 0;
}

int storage_spanval_parse(const uint8_t *p, size_t n, spanval_t *out)
{
    out->flags = 0;
    out->n = 0;
    out->rest_count = 0;
    out->rest = NULL;
    out->rest_len = 0;
    if (n >= 1 && p[0] == 1) { /* format 7: a bare calltree of unknown members */
        out->rest_count = 1;
        out->rest = p;
        out->rest_len = n;
        return 0;
    }
    const uint8_t *end = p + n;
    uint64_t cnt = 0, len = 0;
    if (n < 2 || p[0] != SPANVAL_VERSION) return ERR_CORRUPT;
    out->flags = p[1];
    p += 2;
    if (!varint_read_u(&p, end, &cnt) || cnt > (uint64_t)(end - p) / 17) return ERR_CORRUPT;
    for (uint64_t i = 0; i < cnt; i++) {
        if (end - p < 16) return ERR_CORRUPT;
        const uint8_t *id = p;
        p += 16;
        if (!varint_read_u(&p, end, &len) || len > (uint64_t)(end - p)) return ERR_CORRUPT;
        if (i > 0 && memcmp(out->m[out->n - 1].id, id, 16) >= 0) return ERR_CORRUPT;
        int rc = member_add(out, id, p, (size_t)len);
        if (rc != 0) return rc;
        p += len;
    }
    if (!varint_read_u(&p, end, &out->rest_count)) return ERR_CORRUPT;
    if (out->rest_count == 0) return p == end ? 0 : ERR_CORRUPT;
    out->rest = p;
    out->rest_len = (size_t)(end - p);
    return 0;
}

void storage_spanval_free(spanval_t *v)
{
    free(v->m);
    v->m = NULL;
    v->n = v->cap = 0;
}

static int cmp_member(const void *a, const void *b)
{
    return memcmp(((const spanval_member_t *)a)->id, ((const spanval_member_t *)b)->id, 16);
}

/* Appends v's encoding, rest (when rest_count > 0) the rest's tree. */
static int encode(const spanval_t *v, const calltree_t *rest, buf_t *out)
{
    int rc = buf_append_byte(out, SPANVAL_VERSION);
    if (rc == 0) rc = buf_append_byte(out, v->flags & SPANVAL_KEPT_FLAGS);
    if (rc == 0) rc = buf_append_uvarint(out, v->n);
    for (size_t i = 0; rc == 0 && i < v->n; i++) {
        rc = buf_append(out, v->m[i].id, 16);
        if (rc == 0) rc = buf_append_uvarint(out, v->m[i].len);
        if (rc == 0) rc = buf_append(out, v->m[i].tree, v->m[i].len);
    }
    if (rc == 0) rc = buf_append_uvarint(out, v->rest_count);
    if (rc == 0 && v->rest_count > 0) rc = calltree_encode(rest, out);
    return rc;
}

int storage_spanval_encode_one(const uint8_t id[16], const uint8_t *tree, size_t len, buf_t *out)
{
    spanval_member_t m;
    memcpy(m.id, id, 16);
    m.tree = tree;
    m.len = len;
    spanval_t v = {.m = &m, .n = 1};
    return encode(&v, NULL, out);
}

int storage_spanval_encode_short(buf_t *out)
{
    spanval_t v = {.flags = SPANVAL_SHORT};
    return encode(&v, NULL, out);
}

int storage_span_value_tree(const uint8_t *p, size_t n, calltree_t *dst)
{
    spanval_t v = {0};
    int rc = storage_spanval_parse(p, n, &v);
    for (size_t i = 0; rc == 0 && i < v.n; i++)
        rc = calltree_decode_merge(dst, v.m[i].tree, v.m[i].len);
    if (rc == 0 && v.rest_count > 0) rc = calltree_decode_merge(dst, v.rest, v.rest_len);
    storage_spanval_free(&v);
    return rc;
}

int storage_spanval_calltree(storage_t *s, const uint8_t *p, size_t n, buf_t *tmp,
                             const uint8_t **out, size_t *out_len, int *partial)
{
    spanval_t v = {0};
    int rc = storage_spanval_parse(p, n, &v);
    *out = p; /* what does not parse goes as it is: the reader's decode refuses it */
    *out_len = n;
    *partial = rc == 0 && (v.flags & (SPANVAL_SEALED | SPANVAL_SHORT)) != 0;
    if (rc == 0 && v.n == 1 && v.rest_count == 0) {
        *out = v.m[0].tree;
        *out_len = v.m[0].len;
    } else if (rc == 0 && v.n == 0 && v.rest_count > 0) {
        *out = v.rest;
        *out_len = v.rest_len;
    } else if (rc == 0) {
        calltree_t *t = calltree_new(0), *capped = NULL;
        rc = t != NULL ? 0 : ERR_NOMEM;
        /* a part that does not decode is skipped (the decoder leaves t as
         * it was), as the other parts still count */
        for (size_t i = 0; rc == 0 && i <= v.n; i++) {
            const uint8_t *part = i < v.n ? v.m[i].tree : v.rest;
            size_t len = i < v.n ? v.m[i].len : v.rest_len;
            if (i == v.n && v.rest_count == 0) break;
            int drc = calltree_decode_merge(t, part, len);
            if (drc == ERR_NOMEM)
                rc = drc;
            else if (drc != 0)
                storage_log_corrupt(&s->counters, "span member", (int)i, drc);
        }
        /* each part holds max_span_nodes nodes; their sum is capped again */
        if (rc == 0) rc = storage_cap_tree(t, s->opts.max_span_nodes, &capped);
        if (capped != NULL) atomic_fetch_add(&s->counters.capped_spans, 1);
        buf_reset(tmp);
        if (rc == 0) rc = calltree_encode(capped != NULL ? capped : t, tmp);
        if (rc == 0) {
            *out = tmp->data;
            *out_len = tmp->len;
        }
        calltree_free(capped);
        calltree_free(t);
    }
    storage_spanval_free(&v);
    return rc == ERR_NOMEM ? rc : 0;
}

int storage_spanval_stream_operand(const uint8_t *p, size_t n, buf_t *out)
{
    spanval_t v = {0};
    int rc = storage_spanval_parse(p, n, &v);
    if (rc == 0 && p[0] == 1) { /* a format-7 value: its tree as the rest */
        rc = buf_append_byte(out, SPANVAL_VERSION);
        if (rc == 0) rc = buf_append_byte(out, SPANVAL_STREAM);
        if (rc == 0) rc = buf_append_uvarint(out, 0);
        if (rc == 0) rc = buf_append_uvarint(out, 1);
        if (rc == 0) rc = buf_append(out, p, n);
    } else if (rc == 0) {
        rc = buf_append(out, p, n);
        if (rc == 0)
            out->data[out->len - n + 1] =
                (v.flags & (SPANVAL_SEALED | SPANVAL_SHORT)) | SPANVAL_STREAM;
    }
    storage_spanval_free(&v);
    return rc;
}

/* ---------------------------------------------------------------- merging */

/* The value being built: members borrowed from the parts, the rest summed. */
typedef struct acc {
    storage_counters_t *c;
    spanval_t v;
    calltree_t *rest; /* when v.rest_count > 0 */
    int empty;        /* nothing applied yet */
} acc_t;

static int has_member(const spanval_t *v, const uint8_t *id)
{
    for (size_t i = 0; i < v->n; i++)
        if (memcmp(v->m[i].id, id, 16) == 0) return 1;
    return 0;
}

static int rest_add(acc_t *a, const uint8_t *p, size_t n, uint64_t count)
{
    if (a->rest == NULL && (a->rest = calltree_new(0)) == NULL) return ERR_NOMEM;
    int rc = calltree_decode_merge(a->rest, p, n);
    if (rc == ERR_NOMEM) return rc;
    if (rc != 0) storage_log_corrupt(a->c, "span rest", 0, rc); /* profiles stay counted */
    a->v.rest_count += count;
    return 0;
}

/* Profiles left out of the value: counted, and the value marked SHORT so
 * that readers report it (a left-out side may have overlapped the kept one,
 * but that cannot be told any more). */
static void dropped(acc_t *a, uint64_t profiles)
{
    atomic_fetch_add(&a->c->span_dropped, profiles);
    if (profiles > 0) a->v.flags |= SPANVAL_SHORT;
}

/* a := x (nothing applied before); sealed when x carries a streamed rest. */
static int take(acc_t *a, const spanval_t *x)
{
    a->v.n = 0;
    a->v.rest_count = 0;
    int rc = a->rest != NULL ? calltree_clear(a->rest) : 0;
    a->v.flags = x->flags & (SPANVAL_SEALED | SPANVAL_FOREIGN | SPANVAL_SHORT);
    if ((x->flags & SPANVAL_STREAM) && x->n > 0) a->v.flags |= SPANVAL_FOREIGN;
    if ((x->flags & SPANVAL_STREAM) && x->rest_count > 0) a->v.flags |= SPANVAL_SEALED;
    for (size_t i = 0; rc == 0 && i < x->n; i++)
        rc = member_add(&a->v, x->m[i].id, x->m[i].tree, x->m[i].len);
    if (rc == 0 && x->rest_count > 0) rc = rest_add(a, x->rest, x->rest_len, x->rest_count);
    return rc;
}

/* A write's operand: profiles new to this node, unless the value is sealed. */
static int add_fresh(acc_t *a, const spanval_t *x)
{
    a->v.flags |= x->flags & SPANVAL_SHORT; /* a fetched profile's unknown member */
    if (a->v.flags & SPANVAL_SEALED) {
        dropped(a, x->n + x->rest_count);
        return 0;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < x->n; i++)
        if (!has_member(&a->v, x->m[i].id))
            rc = member_add(&a->v, x->m[i].id, x->m[i].tree, x->m[i].len);
    if (rc == 0 && x->rest_count > 0) rc = rest_add(a, x->rest, x->rest_len, x->rest_count);
    return rc;
}

/* A streamed operand: by profile id, or (a rest on either side) the side
 * with more profiles whole. */
static int unite(acc_t *a, const spanval_t *x)
{
    int rc = 0;
    if (a->v.rest_count == 0 && x->rest_count == 0) {
        for (size_t i = 0; rc == 0 && i < x->n; i++)
            if (!has_member(&a->v, x->m[i].id)) {
                rc = member_add(&a->v, x->m[i].id, x->m[i].tree, x->m[i].len);
                a->v.flags |= SPANVAL_FOREIGN;
            }
        return rc;
    }
    uint64_t mine = a->v.n + a->v.rest_count, theirs = x->n + x->rest_count;
    if (theirs <= mine) {
        dropped(a, theirs);
        return 0;
    }
    int was_short = (a->v.flags & SPANVAL_SHORT) != 0 || mine > 0;
    dropped(a, mine);
    rc = take(a, x);
    if (was_short) a->v.flags |= SPANVAL_SHORT;
    return rc;
}

/* Past max members, the highest ids go to the rest; when a listed member
 * may have come from a stream, the rest may now hold a profile this node
 * did not record as seen, and a later write of it must not be added. */
static int overflow(acc_t *a, size_t max)
{
    if (a->v.n <= max) return 0;
    qsort(a->v.m, a->v.n, sizeof *a->v.m, cmp_member);
    int rc = 0;
    for (size_t i = max; rc == 0 && i < a->v.n; i++)
        rc = rest_add(a, a->v.m[i].tree, a->v.m[i].len, 1);
    a->v.n = max;
    if (a->v.flags & SPANVAL_FOREIGN) a->v.flags |= SPANVAL_SEALED;
    return rc;
}

/* Applies parts in order onto nothing. partial: every part must be a
 * write's operand (else ERR_UNSUPPORTED: RocksDB keeps the operands). */
static int fold(storage_counters_t *c, const char *const *parts, const size_t *lens, int n,
                int partial, buf_t *out)
{
    acc_t a = {.c = c, .empty = 1};
    spanval_t x = {0};
    int rc = 0;
    size_t max = c->span_max_members;
    for (int i = 0; rc == 0 && i < n; i++) {
        int prc = storage_spanval_parse((const uint8_t *)parts[i], lens[i], &x);
        if (prc == ERR_NOMEM) rc = prc;
        if (prc != 0) {
            if (prc != ERR_NOMEM) storage_log_corrupt(c, "span", i, prc);
            continue;
        }
        if (partial && (x.flags & SPANVAL_STREAM))
            rc = ERR_UNSUPPORTED;
        else if (a.empty)
            rc = take(&a, &x);
        else if (x.flags & SPANVAL_STREAM)
            rc = unite(&a, &x);
        else
            rc = add_fresh(&a, &x);
        a.empty = 0;
        /* bounded while folding many operands, not only at the end */
        if (rc == 0 && a.v.n > 2 * max + 16) rc = overflow(&a, max);
    }
    if (rc == 0) rc = overflow(&a, max);
    if (rc == 0 && a.v.n > 1) qsort(a.v.m, a.v.n, sizeof *a.v.m, cmp_member);
    calltree_t *capped = NULL;
    if (rc == 0 && a.v.rest_count > 0) rc = storage_cap_tree(a.rest, c->span_max_nodes, &capped);
    if (capped != NULL) atomic_fetch_add(&c->capped_spans, 1);
    if (rc == 0) rc = encode(&a.v, capped != NULL ? capped : a.rest, out);
    calltree_free(capped);
    calltree_free(a.rest);
    storage_spanval_free(&a.v);
    storage_spanval_free(&x);
    return rc;
}

int storage_fold_spans(storage_counters_t *c, const char *const *parts, const size_t *lens, int n,
                       buf_t *out)
{
    return fold(c, parts, lens, n, 0, out);
}

static char *result(int rc, buf_t *out, unsigned char *success, size_t *new_len)
{
    if (rc != 0) {
        buf_free(out);
        *success = 0;
        *new_len = 0;
        return malloc(1); /* RocksDB copies 0 bytes from it, then frees it */
    }
    *success = 1;
    return (char *)buf_steal(out, new_len);
}

static char *full_merge(void *state, const char *key, size_t key_len, const char *existing,
                        size_t existing_len, const char *const *ops, const size_t *op_lens,
                        int nops, unsigned char *success, size_t *new_len)
{
    int n = nops + (existing != NULL);
    const char **parts = malloc(sizeof *parts * (size_t)(n ? n : 1));
    size_t *lens = malloc(sizeof *lens * (size_t)(n ? n : 1));
    buf_t out;
    buf_init(&out, STORAGE_VALUE_MAX);
    int rc = parts != NULL && lens != NULL ? 0 : ERR_NOMEM;
    if (rc == 0) {
        if (existing != NULL) {
            parts[0] = existing;
            lens[0] = existing_len;
        }
        memcpy(parts + (existing != NULL), ops, sizeof *parts * (size_t)nops);
        memcpy(lens + (existing != NULL), op_lens, sizeof *lens * (size_t)nops);
        rc = fold(state, parts, lens, n, 0, &out);
    }
    free(parts);
    free(lens);
    return result(rc, &out, success, new_len);
}

static char *partial_merge(void *state, const char *key, size_t key_len, const char *const *ops,
                           const size_t *op_lens, int nops, unsigned char *success, size_t *new_len)
{
    buf_t out;
    buf_init(&out, STORAGE_VALUE_MAX);
    return result(fold(state, ops, op_lens, nops, 1, &out), &out, success, new_len);
}

static void delete_value(void *state, const char *value, size_t len)
{
    free((void *)value);
}

static void no_destructor(void *state) {}

static const char *spans_name(void *state)
{
    return MERGE_SPANS_NAME;
}

rocksdb_mergeoperator_t *storage_merge_spans_new(storage_counters_t *c)
{
    return rocksdb_mergeoperator_create(c, no_destructor, full_merge, partial_merge, delete_value,
                                        spans_name);
}

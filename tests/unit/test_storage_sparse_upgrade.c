/* test_storage_sparse_upgrade.c — format 14 to 17: a directory whose
 * blocks and profile trees hold sparse version 2 (what formats 13 and 14
 * wrote), or version 3 with every value in zigzag (format 15 and 16), opens
 * as format 17 and reads the same flame graphs; new pushes merge the
 * current operands onto the old values, and a compaction sums both. */
#include "tests/unit/test_storage_fixture.h"

#include "common/varint.h"

#define PUSHES 24

/* One value's rewrite: appends to b (holding the value's header already)
 * the block p..p+n as an older format wrote it; 0 when it keeps the value
 * as it is. */
typedef int (*block_rewrite_fn)(const uint8_t *p, size_t n, buf_t *b);

/* Rewrites every block value of cf with fn (blocks whole; profile trees
 * after their header, unless scaled or without a tree). Returns how many
 * values it rewrote. */
static int rewrite_blocks(fixture_t *f, enum storage_cf cf, block_rewrite_fn fn)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(f->s->db, f->s->ropts, f->s->cf[cf]);
    size_t head = cf == CF_PTREES ? PTREE_HEADER_LEN : 0;
    buf_t b;
    buf_init(&b, (size_t)1 << 26);
    int count = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, n;
        const char *k = rocksdb_iter_key(it, &kn);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &n);
        if (n <= head || (head && (val[1] & (PTREE_FLAG_NO_TREE | PTREE_FLAG_SCALED)))) continue;
        buf_reset(&b);
        CHECK_EQ_INT(buf_append(&b, val, head), 0);
        if (!fn(val + head, n - head, &b)) continue;
        char *err = NULL;
        rocksdb_put_cf(f->s->db, f->s->wopts, f->s->cf[cf], k, kn, (const char *)b.data, b.len,
                       &err);
        CHECK(err == NULL);
        free(err);
        count++;
    }
    rocksdb_iter_destroy(it);
    buf_free(&b);
    return count;
}

/* A block as version 2 (what formats 13 and 14 wrote). */
static int put_v2(const uint8_t *p, size_t n, buf_t *b)
{
    sparse_vec_t v;
    storage_sparse_init(&v);
    CHECK_EQ_INT(p[0], SPARSE_VERSION); /* what this format writes */
    CHECK_EQ_INT(storage_sparse_decode(p, n, &v), 0);
    CHECK_EQ_INT(storage_sparse_encode_v2(&v, b), 0);
    storage_sparse_free(&v);
    return 1;
}

static int rewrite_v2(fixture_t *f, enum storage_cf cf)
{
    return rewrite_blocks(f, cf, put_v2);
}

/* Appends c's block as format 16 wrote it: the same header and gaps,
 * every value in zigzag whatever its sign. */
static void put_zigzag_cols(const uint8_t *p, const storage_cols_t *c, buf_t *b)
{
    size_t n = (size_t)c->n, head = (size_t)(c->gaps - p) + (n - 1) * c->wi;
    uint32_t *ids = calloc(n, sizeof *ids);
    int64_t *vals = calloc(n, sizeof *vals);
    CHECK(ids != NULL && vals != NULL);
    storage_cols_decode(c, ids, vals);
    uint64_t top = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t z = varint_zigzag(vals[i] / (int64_t)c->scale);
        if (z > top) top = z;
    }
    unsigned wv = 1;
    while (wv < 8 && top >> 8 * wv != 0)
        wv++;
    size_t base = b->len; /* the widths byte is the one before the gaps */
    CHECK_EQ_INT(buf_append(b, p, head), 0);
    b->data[base + (size_t)(c->gaps - p) - 1] = (uint8_t)(c->wi | wv << 4);
    for (unsigned k = 0; k < wv; k++)
        for (size_t i = 0; i < n; i++) {
            uint8_t byte = (uint8_t)(varint_zigzag(vals[i] / (int64_t)c->scale) >> 8 * k);
            CHECK_EQ_INT(buf_append(b, &byte, 1), 0);
        }
    free(ids);
    free(vals);
}

/* A block flagged positive as format 16 wrote it (put_zigzag_cols);
 * other blocks are kept. */
static int put_zigzag(const uint8_t *p, size_t n, buf_t *b)
{
    storage_cols_t c, z;
    CHECK_EQ_INT(storage_cols_parse(p, n, &c), 0);
    if (!c.positive) return 0;
    size_t at = b->len;
    put_zigzag_cols(p, &c, b);
    CHECK_EQ_INT(storage_cols_parse(b->data + at, b->len - at, &z), 0);
    CHECK(!z.positive && z.n == c.n);
    return 1;
}

static int rewrite_zigzag(fixture_t *f, enum storage_cf cf)
{
    return rewrite_blocks(f, cf, put_zigzag);
}

static int count_positive(fixture_t *f, enum storage_cf cf)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(f->s->db, f->s->ropts, f->s->cf[cf]);
    size_t head = cf == CF_PTREES ? PTREE_HEADER_LEN : 0;
    int count = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t n;
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &n);
        storage_cols_t c;
        if (n <= head || (head && (val[1] & (PTREE_FLAG_NO_TREE | PTREE_FLAG_SCALED)))) continue;
        if (val[head] == SPARSE_VERSION && storage_cols_parse(val + head, n - head, &c) == 0)
            count += c.positive != 0;
    }
    rocksdb_iter_destroy(it);
    return count;
}

/* The profile trees of cf, each decoded, summed into one dense vector. */
static void ptree_sums(fixture_t *f, int64_t *sum, size_t cap)
{
    memset(sum, 0, cap * sizeof *sum);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(f->s->db, f->s->ropts, f->s->cf[CF_PTREES]);
    sparse_vec_t v;
    storage_sparse_init(&v);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, n;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &n);
        int rc = storage_ptree_vec(f->s, f->s->ropts, k, kn, val, n, &v);
        if (rc == ERR_NOT_FOUND) continue;
        CHECK_EQ_INT(rc, 0);
        for (size_t i = 0; i < v.n; i++)
            if (v.id[i] < cap) sum[v.id[i]] += v.val[i];
    }
    rocksdb_iter_destroy(it);
    storage_sparse_free(&v);
}

/* Pushes, rewrites the directory as format `old` left it (rewrite), reopens
 * it and checks the trees and blocks read the same; then the same pushes
 * again, read before and after a compaction. */
static void upgrade_from(const char *old, int (*rewrite)(fixture_t *, enum storage_cf))
{
    fixture_t f;
    CHECK_EQ_INT(fx_init(&f), 0);
    labels_t *l = fx_labels("upgrade", NULL);
    symtab_t *st = symtab_new();
    uint64_t token = labels_hash(l) >> 1;
    int64_t t0 = f.now - 2000;
    for (int i = 0; i < PUSHES; i++)
        fx_push(f.s, l, st, token, i, (t0 + 10 * i) * NS, (uint64_t)i + 1);
    enum { CAP = 4096 };
    static int64_t trees_before[CAP], trees_after[CAP];
    ptree_sums(&f, trees_before, CAP);
    calltree_t *before[2];
    int64_t total[2];
    for (int res = 0; res < 2; res++) {
        fx_scan_t sc = fx_blocks(f.s, "t", l, res, t0 - 3600, f.now + 3600);
        before[res] = sc.acc;
        total[res] = calltree_root_total(sc.acc);
        CHECK(total[res] > 0);
    }

    /* as format `old` left it */
    CHECK(rewrite(&f, CF_BLOCKS) > 0);
    CHECK(rewrite(&f, CF_PTREES) > 0);
    CHECK_EQ_INT(count_positive(&f, CF_BLOCKS), 0);
    fx_put_version(&f, old);
    CHECK_EQ_INT(fx_reopen(&f), 0);
    fx_check_version(&f);
    ptree_sums(&f, trees_after, CAP);
    CHECK_EQ_INT(memcmp(trees_before, trees_after, sizeof trees_before), 0);
    for (int res = 0; res < 2; res++) {
        fx_scan_t sc = fx_blocks(f.s, "t", l, res, t0 - 3600, f.now + 3600);
        CHECK_EQ_INT(fx_tree_diff(before[res], sc.acc), 0);
        calltree_free(sc.acc);
    }

    /* the same pushes again (new profile ids): version-3 operands on
     * version-2 values, read unfolded and after a compaction */
    for (int i = 0; i < PUSHES; i++)
        fx_push(f.s, l, st, token, i, (t0 + 10 * i + 1) * NS, (uint64_t)(PUSHES + i + 1));
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) CHECK_EQ_INT(storage_compact(f.s), 0);
        for (int res = 0; res < 2; res++) {
            fx_scan_t sc = fx_blocks(f.s, "t", l, res, t0 - 3600, f.now + 3600);
            CHECK_EQ_INT(calltree_root_total(sc.acc), 2 * total[res]);
            calltree_t *twice = calltree_new(0);
            CHECK_EQ_INT(calltree_merge(twice, before[res]), 0);
            CHECK_EQ_INT(calltree_merge(twice, before[res]), 0);
            CHECK_EQ_INT(fx_tree_diff(twice, sc.acc), 0);
            calltree_free(twice);
            calltree_free(sc.acc);
        }
    }
    CHECK_EQ_INT(f.s->counters.corrupt_operands, 0);
    CHECK(count_positive(&f, CF_BLOCKS) > 0); /* the compaction wrote them anew */
    for (int res = 0; res < 2; res++)
        calltree_free(before[res]);
    symtab_free(st);
    labels_free(l);
    fx_done(&f);
}

int main(void)
{
    /* format 14: every block and tree in version 2 */
    upgrade_from(STORAGE_FORMAT_V14, rewrite_v2);
    /* format 16: version 3, every value in zigzag */
    upgrade_from(STORAGE_FORMAT_V16, rewrite_zigzag);
    return check_exit();
}

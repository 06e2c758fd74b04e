/* seed_forest.c — writes the seed corpus of fuzz_forest
 * (tests/fuzz/corpus/forest) with the project's own encoders: small trees
 * made with calltree_add_stack, laid out as forests (query_forest_of_tree)
 * and encoded in every forest version (query_forest_encode_dict), and one
 * as a call-tree encoding (calltree_encode), the third form
 * query_forest_decode reads.
 *
 *   build-fuzz/fuzz/seed_forest tests/fuzz/corpus/forest
 *
 * The trees are fixed (no randomness): running it again writes the same files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/calltree.h"
#include "query/query.h"
#include "query/query_int.h"

static int write_file(const char *dir, const char *name, const buf_t *b)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL) return -1;
    size_t w = fwrite(b->data, 1, b->len, fp);
    int rc = fclose(fp);
    return w == b->len && rc == 0 ? 0 : -1;
}

/* Writes t as NAME.v2 to NAME.v5 (forest encodings), and NAME.tree when tree. */
static int write_tree(const char *dir, const char *name, const calltree_t *t, int tree)
{
    storage_merged_tab_t f;
    int rc = query_forest_of_tree(t, &f);
    for (int version = QUERY_FOREST_V2; rc == 0 && version <= QUERY_FOREST_V5; version++) {
        buf_t b;
        buf_init(&b, BUF_UNLIMITED);
        uint64_t *dict;
        size_t nd;
        char file[256];
        snprintf(file, sizeof file, "%s.v%d", name, version);
        rc = query_forest_encode_dict(&f, version, &b, &dict, &nd);
        free(dict);
        if (rc == 0) rc = write_file(dir, file, &b);
        buf_free(&b);
    }
    query_forest_free(&f);
    if (rc == 0 && tree) {
        buf_t b;
        buf_init(&b, BUF_UNLIMITED);
        char file[256];
        snprintf(file, sizeof file, "%s.tree", name);
        rc = calltree_encode(t, &b);
        if (rc == 0) rc = write_file(dir, file, &b);
        buf_free(&b);
    }
    return rc;
}

/* A few stacks over shared symbols: kids of several nodes, repeated symbols. */
static int small(calltree_t *t)
{
    static const uint64_t s[][4] = {{11, 12, 13}, {11, 12, 14}, {11, 15}, {16, 12, 13}, {16}};
    static const size_t d[] = {3, 3, 2, 3, 1};
    int rc = calltree_add_stack(t, NULL, 0, 1);
    for (size_t i = 0; rc == 0 && i < sizeof d / sizeof d[0]; i++)
        rc = calltree_add_stack(t, s[i], d[i], (int64_t)(i + 1) * 3);
    return rc;
}

/* The root with 40 kids: more than the encoder keeps from one walk of a kid list. */
static int wide(calltree_t *t)
{
    int rc = 0;
    for (uint64_t k = 0; rc == 0 && k < 40; k++) {
        uint64_t s[2] = {100 + k, 7};
        rc = calltree_add_stack(t, s, 1 + k % 2, (int64_t)k + 1);
    }
    return rc;
}

/* A chain 64 deep with a large value at its leaf (multi-byte varints). */
static int deep(calltree_t *t)
{
    uint64_t s[64];
    for (size_t k = 0; k < 64; k++)
        s[k] = 1000 + k % 5;
    int rc = calltree_add_stack(t, s, 64, (int64_t)1 << 40);
    if (rc == 0) rc = calltree_add_stack(t, s, 10, 5);
    return rc;
}

/* Only the root holds a value. */
static int root_only(calltree_t *t)
{
    return calltree_add_stack(t, NULL, 0, 42);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: seed_forest DIR\n");
        return 2;
    }
    static const struct {
        const char *name;
        int (*make)(calltree_t *);
        int tree;
    } seeds[] = {{"small", small, 1}, {"wide", wide, 0}, {"deep", deep, 0}, {"root", root_only, 1}};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        calltree_t *t = calltree_new(0);
        int rc = t != NULL ? seeds[i].make(t) : ERR_NOMEM;
        if (rc == 0) rc = write_tree(argv[1], seeds[i].name, t, seeds[i].tree);
        calltree_free(t);
        if (rc != 0) {
            fprintf(stderr, "seed_forest: %s: error %d\n", seeds[i].name, rc);
            return 1;
        }
    }
    return 0;
}

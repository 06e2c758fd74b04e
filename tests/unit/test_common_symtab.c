/* test_common_symtab.c — the symbol table: every interned symbol is found
 * again by its id with its name and file, in insertion order, across the
 * index's growth; a symbol interned twice is stored once; ids never
 * interned are not found; its memory figure covers its index (4-byte
 * slots at most 2/3 full) and its entries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/hash.h"
#include "common/symtab.h"

static void test_intern_and_get(void)
{
    enum { N = 100000 };
    symtab_t *s = symtab_new();
    uint64_t *ids = malloc(N * sizeof *ids);
    char name[32], file[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "fn%d", i);
        snprintf(file, sizeof file, "f%d.go", i % 7);
        CHECK_EQ_INT(symtab_intern(s, name, strlen(name), file, strlen(file), &ids[i]), 0);
    }
    CHECK_EQ_INT(symtab_count(s), N);
    for (int i = 0; i < N; i += 97) { /* again: found, not stored twice */
        uint64_t id;
        snprintf(name, sizeof name, "fn%d", i);
        snprintf(file, sizeof file, "f%d.go", i % 7);
        CHECK_EQ_INT(symtab_intern(s, name, strlen(name), file, strlen(file), &id), 0);
        CHECK(id == ids[i]);
    }
    CHECK_EQ_INT(symtab_count(s), N);
    for (int i = 0; i < N; i++) {
        const char *n, *f;
        snprintf(name, sizeof name, "fn%d", i);
        snprintf(file, sizeof file, "f%d.go", i % 7);
        CHECK(symtab_get(s, ids[i], &n, &f) == 1 && strcmp(n, name) == 0 && strcmp(f, file) == 0);
        CHECK(symtab_id_at(s, (size_t)i) == ids[i]);
    }
    const char *n, *f;
    CHECK(symtab_get(s, hash_symbol("absent", 6, "", 0), &n, &f) == 0);
    CHECK(symtab_get(s, SYM_ROOT, &n, &f) == 1 && strcmp(n, "total") == 0);
    size_t mem = symtab_mem_bytes(s);
    fprintf(stderr, "%d symbols: %zu bytes (%.1f a symbol)\n", N, mem, (double)mem / N);
    /* entries (24 bytes) + index slots + strings, growth room included */
    CHECK(mem >= (size_t)N * (24 + 4 * 3 / 2));
    CHECK(mem <= (size_t)N * (24 * 3 / 2 + 4 * 3 + 16) + (64u << 10));
    free(ids);
    symtab_free(s);
}

int main(void)
{
    test_intern_and_get();
    return check_exit();
}

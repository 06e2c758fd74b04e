/* test_common_symtab.c — the symbol table: every interned symbol is found
 * again by its id with its name and file, in insertion order, across the
 * index's growth; a symbol interned twice is stored once; ids never
 * interned are not found; its memory figure covers its index (4-byte
 * slots at most 2/3 full), its entries (16 bytes: the id and one copy of
 * "name\0file\0") and its strings; a name or file is read back up to its
 * first NUL, and a missing file reads as "". */
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
    size_t strings = 0; /* each name and file with its NUL */
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "fn%d", i);
        snprintf(file, sizeof file, "f%d.go", i % 7);
        CHECK_EQ_INT(symtab_intern(s, name, strlen(name), file, strlen(file), &ids[i]), 0);
        strings += strlen(name) + strlen(file) + 2;
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
    /* entries (16 bytes) + index slots (4 bytes, 1.5 to 2.25 a symbol) +
     * strings (in 64 KiB chunks), growth room included; 24-byte entries
     * with a pointer to each string held 48 bytes a symbol here */
    CHECK(mem >= strings + (size_t)N * (16 + 4 * 3 / 2));
    CHECK(mem <= strings + (size_t)N * (16 * 3 / 2 + 4 * 9 / 4) + (64u << 10));
    free(ids);
    symtab_free(s);
}

/* Names and files are C strings when read: up to their first NUL. */
static void test_nul_and_missing_file(void)
{
    symtab_t *s = symtab_new();
    const char *n, *f;
    CHECK_EQ_INT(symtab_put(s, 11, "ab\0cd", 5, NULL, 0), 0);
    CHECK_EQ_INT(symtab_put(s, 12, "main", 4, "x.c\0y", 5), 0);
    CHECK_EQ_INT(symtab_put(s, 13, "", 0, "only.c", 6), 0);
    CHECK_EQ_INT(symtab_put(s, 14, "abcdef", 3, "xyz", 0), 0);
    CHECK(symtab_get(s, 11, &n, &f) == 1 && strcmp(n, "ab") == 0 && strcmp(f, "") == 0);
    CHECK(symtab_get(s, 12, &n, &f) == 1 && strcmp(n, "main") == 0 && strcmp(f, "x.c") == 0);
    CHECK(symtab_get(s, 13, &n, &f) == 1 && strcmp(n, "") == 0 && strcmp(f, "only.c") == 0);
    CHECK(symtab_get(s, 14, &n, &f) == 1 && strcmp(n, "abc") == 0 && strcmp(f, "") == 0);
    symtab_free(s);
}

int main(void)
{
    test_intern_and_get();
    test_nul_and_missing_file();
    return check_exit();
}

/* test_common_symtab.c — the symbol table: every interned symbol is found
 * again by its id with its name and file, in insertion order, across the
 * index's growth; a symbol interned twice is stored once; ids never
 * interned are not found; its memory figure covers its index (4-byte
 * slots at most 2/3 full), its entries (16 bytes: the id and one copy of
 * the name, its NUL and its file's index) and its strings; each distinct
 * file name is held once (symtab_file), whichever call put it; a name or
 * file is read back up to its first NUL, and a missing file reads as "";
 * symtab_put_from copies exactly the symbols asked that the source holds,
 * in the order asked, with their files (past 128 of them: varint indices). */
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
    size_t strings = 0; /* each name with its NUL and file index, each file once */
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "fn%d", i);
        snprintf(file, sizeof file, "f%d.go", i % 7);
        CHECK_EQ_INT(symtab_intern(s, name, strlen(name), file, strlen(file), &ids[i]), 0);
        strings += strlen(name) + 2 + (i < 7 ? strlen(file) + 1 : 0);
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

/* A file name named by many symbols is held once, and symtab_file's index
 * names it for symtab_put_file: the same symbols as symtab_intern's. */
static void test_files_held_once(void)
{
    enum { N = 2000, FILE_LEN = 300 };
    symtab_t *s = symtab_new(), *t = symtab_new();
    char file[FILE_LEN + 1], other[] = "other.go", name[32];
    memset(file, 'd', FILE_LEN);
    file[FILE_LEN] = 0;
    uint32_t fi, fo, again, none;
    CHECK_EQ_INT(symtab_file(t, file, FILE_LEN, &fi), 0);
    CHECK_EQ_INT(symtab_file(t, other, strlen(other), &fo), 0);
    CHECK_EQ_INT(symtab_file(t, file, FILE_LEN, &again), 0);
    CHECK_EQ_INT(symtab_file(t, "", 0, &none), 0);
    CHECK(fi != 0 && fo != 0 && fi != fo && again == fi && none == 0);
    CHECK_EQ_INT(symtab_file(t, "x.c\0y", 5, &again), 0); /* read up to its NUL */
    CHECK_EQ_INT(symtab_file(t, "x.c", 3, &none), 0);
    CHECK(again == none && again != fi && again != fo);
    CHECK(symtab_put_file(t, 5, "bad", 3, 1000, NULL) < 0); /* an index it did not give */
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "fn%d", i);
        uint64_t id;
        const char *f = i % 2 ? file : other;
        CHECK_EQ_INT(symtab_intern(s, name, strlen(name), f, strlen(f), &id), 0);
        CHECK(id == hash_symbol(name, strlen(name), f, strlen(f)));
        uint32_t at = UINT32_MAX;
        CHECK_EQ_INT(symtab_put_file(t, id, name, strlen(name), i % 2 ? fi : fo, &at), 0);
        CHECK_EQ_INT(at, i);
        CHECK_EQ_INT(symtab_put_file(t, id, name, strlen(name), i % 2 ? fi : fo, &at), 0);
        CHECK_EQ_INT(at, i); /* held already: its place */
    }
    CHECK_EQ_INT(symtab_count(s), N);
    CHECK_EQ_INT(symtab_count(t), N);
    uint32_t absent = 7;
    CHECK(symtab_index(s, 12345, &absent) == 0 && absent == 7);
    for (int i = 0; i < N; i++) {
        const char *n1, *f1, *n2, *f2;
        uint64_t id = symtab_id_at(s, (size_t)i);
        snprintf(name, sizeof name, "fn%d", i);
        CHECK(symtab_id_at(t, (size_t)i) == id);
        uint32_t at = UINT32_MAX; /* its place in insertion order */
        CHECK(symtab_index(s, id, &at) == 1 && at == (uint32_t)i);
        CHECK(symtab_index(t, id, &at) == 1 && at == (uint32_t)i);
        CHECK(symtab_get(s, id, &n1, &f1) == 1 && symtab_get(t, id, &n2, &f2) == 1);
        CHECK(strcmp(n1, name) == 0 && strcmp(n2, name) == 0);
        CHECK(strcmp(f1, i % 2 ? file : other) == 0 && strcmp(f2, f1) == 0);
    }
    /* a copy of the file per symbol would be N / 2 x 301 bytes */
    size_t mem = symtab_mem_bytes(s);
    fprintf(stderr, "%d symbols over 2 files: %zu bytes\n", N, mem);
    CHECK(mem < (size_t)N * 64 + (64u << 10));
    symtab_free(s);
    symtab_free(t);
}

/* Many file names with a long common prefix (a module path), differing
 * only near their ends, each interned twice across the table's growth:
 * every distinct name gets its own index once, the same index again, and
 * reads back as itself; a name that is another's prefix, or extends it, is
 * another name. */
static void test_many_files_one_prefix(void)
{
    enum { N = 5000 };
    symtab_t *t = symtab_new();
    static uint32_t idx[N];
    char f[128];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < N; i++) {
            int n = snprintf(f, sizeof f, "github.com/acme/checkout/internal/pkg%d/file.go", i);
            uint32_t at = UINT32_MAX;
            CHECK_EQ_INT(symtab_file(t, f, (size_t)n, &at), 0);
            if (round == 0) {
                CHECK_EQ_INT(at, i + 1); /* new: the next index */
                idx[i] = at;
            } else {
                CHECK_EQ_INT(at, idx[i]);
            }
        }
    uint32_t shorter, longer;
    CHECK_EQ_INT(symtab_file(t, "github.com/acme/checkout/internal/pkg1/file.g", 45, &shorter), 0);
    CHECK_EQ_INT(symtab_file(t, "github.com/acme/checkout/internal/pkg1/file.goo", 47, &longer), 0);
    CHECK(shorter == N + 1 && longer == N + 2);
    for (int i = 0; i < N; i++) { /* read back through a symbol of each */
        char name[32];
        snprintf(name, sizeof name, "fn%d", i);
        CHECK_EQ_INT(symtab_put_file(t, (uint64_t)i + 100, name, strlen(name), idx[i], NULL), 0);
    }
    for (int i = 0; i < N; i++) {
        const char *n, *file;
        snprintf(f, sizeof f, "github.com/acme/checkout/internal/pkg%d/file.go", i);
        CHECK(symtab_get(t, (uint64_t)i + 100, &n, &file) == 1 && strcmp(file, f) == 0);
    }
    symtab_free(t);
}

/* symtab_intern_index: symtab_intern's id and symtab_index's place, for a
 * symbol new to the table and one it holds, with and without a file. */
static void test_intern_index(void)
{
    symtab_t *s = symtab_new(), *t = symtab_new();
    char name[32];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 300; i++) {
            snprintf(name, sizeof name, "f%d", i);
            const char *file = i % 3 ? "a.go" : "";
            uint64_t id = 0, want = 0;
            uint32_t at = UINT32_MAX, place = UINT32_MAX - 1;
            CHECK_EQ_INT(symtab_intern_index(s, name, strlen(name), file, strlen(file), &id, &at),
                         0);
            CHECK_EQ_INT(symtab_intern(t, name, strlen(name), file, strlen(file), &want), 0);
            CHECK(id == want);
            CHECK(symtab_index(t, want, &place) == 1 && at == place && at == (uint32_t)i);
            const char *n, *f;
            CHECK(symtab_get(s, id, &n, &f) == 1 && strcmp(n, name) == 0 && strcmp(f, file) == 0);
        }
    CHECK_EQ_INT(symtab_count(s), 300);
    symtab_free(s);
    symtab_free(t);
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

/* symtab_put_hashed with the file's length and hash gives what symtab_put
 * gives: the same names, files held once, shared with symtab_file's. */
static void test_put_hashed(void)
{
    symtab_t *a = symtab_new(), *b = symtab_new();
    char name[32], file[32];
    for (uint64_t i = 0; i < 500; i++) {
        snprintf(name, sizeof name, "fn%llu", (unsigned long long)i);
        snprintf(file, sizeof file, "pkg/f%llu.go", (unsigned long long)(i % 50));
        size_t fl = i % 9 ? strlen(file) : 0;
        CHECK_EQ_INT(symtab_put(a, 10 + i, name, strlen(name), file, fl), 0);
        CHECK_EQ_INT(symtab_put_hashed(b, 10 + i, name, strlen(name), file, fl,
                                       fl ? hash_bytes64(file, fl) : 0),
                     0);
    }
    uint32_t fa, fb;
    CHECK_EQ_INT(symtab_file(a, "pkg/f7.go", 9, &fa), 0);
    CHECK_EQ_INT(symtab_file(b, "pkg/f7.go", 9, &fb), 0);
    CHECK(fa == fb && fa != 0); /* the hashed puts' file, found by symtab_file */
    CHECK_EQ_INT(symtab_count(a), symtab_count(b));
    for (uint64_t i = 0; i < 500; i++) {
        const char *na, *fa_, *nb, *fb_;
        CHECK(symtab_get(a, 10 + i, &na, &fa_) == 1 && symtab_get(b, 10 + i, &nb, &fb_) == 1);
        CHECK(strcmp(na, nb) == 0 && strcmp(fa_, fb_) == 0);
    }
    symtab_free(a);
    symtab_free(b);
}

static void test_put_from(void)
{
    symtab_t *src = symtab_new(), *dst = symtab_new();
    char name[32], file[32];
    for (uint64_t i = 0; i < 600; i++) { /* 200 files (indices past 127), some none */
        snprintf(name, sizeof name, "fn%llu", (unsigned long long)i);
        snprintf(file, sizeof file, "pkg/f%llu.go", (unsigned long long)(i % 200));
        CHECK_EQ_INT(symtab_put(src, 1000 + i, name, strlen(name), file, i % 7 ? strlen(file) : 0),
                     0);
    }
    CHECK_EQ_INT(symtab_put(dst, 1003, "fn3", 3, "elsewhere.go", 12), 0); /* held: kept as is */
    CHECK_EQ_INT(symtab_put(dst, 5, "mine", 4, "pkg/f9.go", 9), 0);       /* a file it holds */
    uint64_t ids[] = {1599, 1003, 77, SYM_ROOT, 1010, 1599, SYM_OTHER, 1209, 1000, 1007, 1402};
    CHECK_EQ_INT(symtab_put_from(dst, src, ids, sizeof ids / sizeof *ids), 0);
    static const uint64_t want[] = {1003, 5, 1599, 1010, 1209, 1000, 1007, 1402}; /* in order */
    CHECK_EQ_INT(symtab_count(dst), sizeof want / sizeof *want);
    for (size_t i = 0; i < symtab_count(dst) && i < sizeof want / sizeof *want; i++) {
        uint64_t id = symtab_id_at(dst, i);
        CHECK_EQ_INT(id, want[i]);
        const char *n1, *f1, *n2, *f2;
        CHECK(symtab_get(dst, id, &n1, &f1));
        if (id == 1003) {
            CHECK_EQ_STR(f1, "elsewhere.go");
        } else if (id != 5) {
            CHECK(symtab_get(src, id, &n2, &f2));
            CHECK_EQ_STR(n1, n2);
            CHECK_EQ_STR(f1, f2);
        }
    }
    CHECK_EQ_INT(symtab_put_from(dst, src, NULL, 0), 0);
    /* a long list (fetched ahead as it is copied), absent ids among them */
    symtab_t *all = symtab_new();
    uint64_t many[800];
    for (size_t i = 0; i < 800; i++)
        many[i] = 800 + (i * 7 % 800); /* 800..1599 in a scattered order: 600 held */
    CHECK_EQ_INT(symtab_put_from(all, src, many, 800), 0);
    CHECK_EQ_INT(symtab_count(all), 600);
    for (uint64_t id = 1000; id < 1600; id++) {
        const char *n1, *f1, *n2, *f2;
        CHECK(symtab_get(all, id, &n1, &f1) && symtab_get(src, id, &n2, &f2));
        CHECK_EQ_STR(n1, n2);
        CHECK_EQ_STR(f1, f2);
    }
    symtab_free(all);
    symtab_free(src);
    symtab_free(dst);
}

/* A table reserved for n symbols holds them without growing its entries
 * or its index (the memory figure moves by the strings alone), finds each
 * one and no absent id; a reserve past what it holds keeps what it holds,
 * and small reserves (1, 2) grow as before once passed. */
static void test_reserve(void)
{
    enum { N = 1300 };
    char name[32];
    symtab_t *s = symtab_new();
    CHECK_EQ_INT(symtab_reserve(s, N), 0);
    size_t before = symtab_mem_bytes(s);
    uint64_t *ids = malloc(N * sizeof *ids);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "fn%d", i);
        CHECK_EQ_INT(symtab_intern(s, name, strlen(name), "a.go", 4, &ids[i]), 0);
    }
    size_t strings = 5 + 16; /* the file once, the file list's first room (16 names) */
    for (int i = 0; i < N; i++)
        strings += strlen("fn") + (i < 10 ? 1 : i < 100 ? 2 : i < 1000 ? 3 : 4) + 2;
    size_t fslots = 32 * sizeof(uint32_t), files = 16 * (sizeof(char *) + sizeof(uint32_t));
    /* one 64 KiB chunk holds every string: the figure rose by it and the file table alone */
    CHECK(symtab_mem_bytes(s) == before + (64u << 10) + fslots + files);
    CHECK(strings < (64u << 10));
    const char *n, *f;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "fn%d", i);
        CHECK(symtab_get(s, ids[i], &n, &f) == 1 && strcmp(n, name) == 0 && strcmp(f, "a.go") == 0);
    }
    CHECK(symtab_get(s, hash_symbol("absent", 6, "", 0), &n, &f) == 0);
    CHECK_EQ_INT(symtab_reserve(s, 10), 0); /* past what it holds: all still found */
    for (int i = 0; i < N; i++)
        CHECK(symtab_get(s, ids[i], &n, &f) == 1);
    CHECK_EQ_INT(symtab_count(s), N);
    symtab_free(s);
    for (size_t small = 1; small <= 2; small++) {
        s = symtab_new();
        CHECK_EQ_INT(symtab_reserve(s, small), 0);
        for (int i = 0; i < N; i++) {
            snprintf(name, sizeof name, "fn%d", i);
            CHECK_EQ_INT(symtab_intern(s, name, strlen(name), "", 0, &ids[i]), 0);
        }
        for (int i = 0; i < N; i++)
            CHECK(symtab_get(s, ids[i], &n, &f) == 1);
        CHECK(symtab_get(s, hash_symbol("absent", 6, "", 0), &n, &f) == 0);
        symtab_free(s);
    }
    free(ids);
}

int main(void)
{
    test_put_hashed();
    test_put_from();
    test_intern_and_get();
    test_files_held_once();
    test_many_files_one_prefix();
    test_intern_index();
    test_nul_and_missing_file();
    test_reserve();
    return check_exit();
}

/* test_scatter_names.c — the coordinator's cache of shares' symbol names: a
 * render's generation resolves every id it advertised while other renders
 * add names, past the bound every generation is retired, a retired one
 * held by a render still resolves until released, and while one is held no
 * name past the bound is kept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/symtab.h"
#include "node/cluster/scatter_names.h"
#include "tests/unit/check.h"

static scatter_names_sym_t sym(uint64_t id, const char *name)
{
    return (scatter_names_sym_t){id, name, "f.go", strlen(name), 4};
}

static int has(const symtab_t *t, uint64_t id, const char *want)
{
    const char *name, *file;
    return symtab_get(t, id, &name, &file) && strcmp(name, want) == 0 && strcmp(file, "f.go") == 0;
}

static void test_disabled(void)
{
    scatter_names_t *c = NULL;
    CHECK_EQ_INT(scatter_names_new(0, &c), 0);
    CHECK(c == NULL);
    scatter_names_sym_t v = sym(101, "main");
    CHECK_EQ_INT(scatter_names_put(c, "t", &v, 1), 0);
    scatter_names_gen_t *g;
    uint64_t *ids;
    size_t n;
    CHECK_EQ_INT(scatter_names_acquire(c, "t", &g, &ids, &n), 0);
    CHECK(g == NULL && ids == NULL && n == 0);
}

static void test_generations(void)
{
    scatter_names_t *c = NULL;
    CHECK_EQ_INT(scatter_names_new(3 * (48 + 4 + 4), &c), 0); /* three names of 4 bytes */
    scatter_names_sym_t v[] = {sym(101, "aaaa"), sym(102, "bbbb"), sym(101, "aaaa")};
    CHECK_EQ_INT(scatter_names_put(c, "t", v, 3), 0); /* the repeat is held once */
    CHECK_EQ_INT(scatter_names_bytes(c), 2 * 56);
    scatter_names_gen_t *g, *other;
    uint64_t *ids, *oids;
    size_t n, on;
    CHECK_EQ_INT(scatter_names_acquire(c, "u", &other, &oids, &on), 0); /* another tenant's: none */
    CHECK(other == NULL && on == 0);
    CHECK_EQ_INT(scatter_names_acquire(c, "t", &g, &ids, &n), 0);
    CHECK_EQ_INT(n, 2);
    /* a third name fits; a fourth retires every generation, g stays whole */
    scatter_names_sym_t w[] = {sym(103, "cccc"), sym(104, "dddd")};
    CHECK_EQ_INT(scatter_names_put(c, "t", w, 2), 0);
    CHECK_EQ_INT(scatter_names_bytes(c), 56); /* the new generation: id 104 */
    symtab_t *dst = symtab_new();
    CHECK_EQ_INT(scatter_names_get(c, g, ids, n, dst), 0);
    CHECK(has(dst, 101, "aaaa") && has(dst, 102, "bbbb"));
    symtab_t *after = symtab_new();
    uint64_t want[] = {101, 104};
    scatter_names_gen_t *g2;
    uint64_t *ids2;
    size_t n2;
    CHECK_EQ_INT(scatter_names_acquire(c, "t", &g2, &ids2, &n2), 0);
    CHECK_EQ_INT(n2, 1);
    CHECK_EQ_INT(ids2[0], 104);
    CHECK_EQ_INT(scatter_names_get(c, g2, want, 2, after), 0);
    CHECK(!has(after, 101, "aaaa") && has(after, 104, "dddd"));
    /* while g (retired) is held, names past the bound are not kept */
    scatter_names_sym_t x[] = {sym(105, "eeee"), sym(106, "ffff"), sym(107, "gggg")};
    CHECK_EQ_INT(scatter_names_put(c, "t", x, 3), 0);
    CHECK_EQ_INT(scatter_names_bytes(c), 3 * 56);
    scatter_names_release(c, g); /* retired: freed here */
    scatter_names_release(c, g2);
    symtab_free(dst);
    symtab_free(after);
    free(ids);
    free(ids2);
    CHECK_EQ_INT(scatter_names_put(c, "t", &x[2], 1), 0); /* none held: retires, kept */
    CHECK_EQ_INT(scatter_names_bytes(c), 56);
    char longer[200];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    scatter_names_sym_t big = sym(109, longer); /* longer than the whole cache: never held */
    CHECK_EQ_INT(scatter_names_put(c, "t", &big, 1), 0);
    CHECK_EQ_INT(scatter_names_bytes(c), 56);
    scatter_names_free(c);
}

int main(void)
{
    test_disabled();
    test_generations();
    return check_exit();
}

/* test_storage_symcache.c — the symbol cache's batch lookup
 * (storage_symcache_get_many): every id of a batch is found or not as one
 * lookup per id finds it, per tenant, whatever shard it falls in, and the
 * copied name and file are the ones put; a batch over SYMCACHE_BATCH ids
 * and a names buffer over its maximum are refused, and a cleared or empty
 * cache finds nothing. Each hit carries its file's hash (up to the file's
 * first NUL), so a symbol table fills from it without hashing again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "storage/storage_int.h"
#include "tests/unit/check.h"

#define TENANT_A 0x1234u
#define TENANT_B 0x9876u

static void put(symcache_t *c, uint64_t th, uint64_t id)
{
    char name[32], file[32];
    int nn =
        snprintf(name, sizeof name, "%s%llu", th == TENANT_A ? "fn" : "b", (unsigned long long)id);
    int fn = snprintf(file, sizeof file, "f%llu.go", (unsigned long long)(id * 7));
    storage_symcache_put(c, th, id, name, (size_t)nn, file, (size_t)fn);
}

/* Looks up ids from..until (exclusive) in batches of batch; those up to
 * last must be found with put's name and file, the rest not. */
static void check_range(symcache_t *c, uint64_t th, uint64_t from, uint64_t until, uint64_t last,
                        size_t batch)
{
    uint64_t ids[SYMCACHE_BATCH];
    symcache_hit_t hits[SYMCACHE_BATCH];
    buf_t names;
    buf_init(&names, BUF_UNLIMITED);
    for (uint64_t id = from; id < until;) {
        size_t n = 0;
        while (n < batch && id < until) /* descending within a batch: order is the caller's */
            ids[n++] = until - 1 - (id++ - from);
        CHECK_EQ_INT(storage_symcache_get_many(c, th, ids, n, hits, &names), 0);
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ_INT(hits[i].hit, ids[i] <= last);
            if (!hits[i].hit) continue;
            char name[32], file[32];
            snprintf(name, sizeof name, "%s%llu", th == TENANT_A ? "fn" : "b",
                     (unsigned long long)ids[i]);
            snprintf(file, sizeof file, "f%llu.go", (unsigned long long)(ids[i] * 7));
            const char *at = (const char *)names.data + hits[i].off;
            CHECK_EQ_INT(hits[i].name_len, strlen(name));
            CHECK_EQ_INT(hits[i].file_len, strlen(file));
            CHECK_EQ_STR(at, name);
            CHECK_EQ_STR(at + hits[i].name_len + 1, file);
            /* the file's hash comes with it, as symtab_file would compute it */
            CHECK_EQ_INT(hits[i].file_used, strlen(file));
            CHECK(hits[i].file_hash == hash_bytes64(file, strlen(file)));
        }
    }
    buf_free(&names);
}

int main(void)
{
    symcache_t c;
    CHECK_EQ_INT(storage_symcache_init(&c, 64 << 20), 0);
    check_range(&c, TENANT_A, 2, 300, 0, SYMCACHE_BATCH); /* empty: nothing found */
    for (uint64_t id = 2; id <= 1001; id++)
        put(&c, TENANT_A, id);
    for (uint64_t id = 2; id <= 501; id++)
        put(&c, TENANT_B, id);
    check_range(&c, TENANT_A, 2, 1300, 1001, SYMCACHE_BATCH);
    check_range(&c, TENANT_A, 2, 1300, 1001, 1);
    check_range(&c, TENANT_A, 2, 1300, 1001, 37);
    check_range(&c, TENANT_B, 2, 700, 501, SYMCACHE_BATCH);
    check_range(&c, 0x5555u, 2, 700, 0, SYMCACHE_BATCH); /* another tenant's ids: not found */
    {
        /* a file read as a C string: hashed up to its first NUL */
        uint64_t id = 5000;
        symcache_hit_t hit[1];
        buf_t names;
        buf_init(&names, BUF_UNLIMITED);
        storage_symcache_put(&c, TENANT_A, id, "f", 1, "a.c\0tail", 8);
        CHECK_EQ_INT(storage_symcache_get_many(&c, TENANT_A, &id, 1, hit, &names), 0);
        CHECK(hit[0].hit && hit[0].file_len == 8 && hit[0].file_used == 3);
        CHECK(hit[0].file_hash == hash_bytes64("a.c", 3));
        buf_free(&names);
    }

    uint64_t ids[SYMCACHE_BATCH + 1];
    symcache_hit_t hits[SYMCACHE_BATCH + 1];
    for (size_t i = 0; i <= SYMCACHE_BATCH; i++)
        ids[i] = 2 + i;
    buf_t small;
    buf_init(&small, 16);
    CHECK_EQ_INT(storage_symcache_get_many(&c, TENANT_A, ids, SYMCACHE_BATCH + 1, hits, &small),
                 ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(storage_symcache_get_many(&c, TENANT_A, ids, 40, hits, &small), ERR_TOO_LARGE);
    CHECK_EQ_INT(storage_symcache_get_many(&c, TENANT_A, ids, 0, hits, &small), 0);
    buf_free(&small);
    storage_symcache_free(&c);

    /* a shard over its bytes is cleared by the next put: what it held is gone */
    CHECK_EQ_INT(storage_symcache_init(&c, SYMCACHE_SHARDS * 4096), 0);
    for (uint64_t id = 2; id <= 2001; id++)
        put(&c, TENANT_A, id);
    buf_t names;
    buf_init(&names, BUF_UNLIMITED);
    size_t found = 0;
    for (uint64_t base = 2; base <= 2001; base += SYMCACHE_BATCH) {
        size_t n = 0;
        for (; n < SYMCACHE_BATCH && base + n <= 2001; n++)
            ids[n] = base + n;
        CHECK_EQ_INT(storage_symcache_get_many(&c, TENANT_A, ids, n, hits, &names), 0);
        for (size_t i = 0; i < n; i++)
            found += hits[i].hit;
    }
    CHECK(found > 0 && found < 2000);
    buf_free(&names);
    storage_symcache_free(&c);
    return check_exit();
}

/* test_storage_tenant_series.c — tenant_max_series: a write that would store
 * a tenant's series beyond the limit fails with ERR_LIMIT naming
 * tenant-max-series and stores nothing; series already stored (also ones
 * this process never wrote: after a reopen the series cache is empty, so
 * the store is asked) are written again freely; other tenants have their
 * own count; the count survives a reopen; and a series the collector deletes
 * after retention counts no more. Without the limit nothing is counted. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"

static int write_svc(fixture_t *f, const char *tenant, const char *svc, symtab_t *st, uint64_t id)
{
    labels_t *l = fx_labels(svc, NULL);
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "main;work", 3);
    storage_series_write_t sw = {.labels = l, .series_id = labels_hash(l), .tree = t};
    sw.token = sw.series_id >> 1;
    storage_profile_write_t p = {
        .tenant = tenant, .time_ns = (f->now - 5) * NS, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(p.profile_id, id);
    errmsg_t em = {{0}};
    int rc = storage_write_profile(f->s, &p, NULL, &em);
    if (rc == ERR_LIMIT) CHECK(strstr(em.text, "tenant-max-series") != NULL);
    calltree_free(t);
    labels_free(l);
    return rc;
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    symtab_t *st = symtab_new();
    /* off: nothing counted */
    CHECK_EQ_INT(write_svc(&f, "t", "a", st, 1), 0);
    CHECK_EQ_INT(storage_tenant_series(f.s, "t"), 0);

    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) /* every resolution expires */
        f.opts.retention_seconds[r] = 3600;
    f.opts.series_gc_interval_seconds = 0;
    f.opts.tenant_max_series = 3;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    CHECK_EQ_INT(storage_tenant_series(f.s, "t"), 1); /* "a", counted at open */
    CHECK_EQ_INT(write_svc(&f, "t", "b", st, 2), 0);
    CHECK_EQ_INT(write_svc(&f, "t", "c", st, 3), 0);
    CHECK_EQ_INT(storage_tenant_series(f.s, "t"), 3);
    CHECK_EQ_INT(write_svc(&f, "t", "d", st, 4), ERR_LIMIT);
    CHECK_EQ_INT(storage_tenant_series(f.s, "t"), 3);
    CHECK_EQ_INT(write_svc(&f, "t", "a", st, 5), 0); /* stored before the reopen: not new */
    CHECK_EQ_INT(write_svc(&f, "t", "c", st, 6), 0);
    CHECK_EQ_INT(write_svc(&f, "u", "d", st, 7), 0); /* another tenant */
    CHECK_EQ_INT(storage_tenant_series(f.s, "u"), 1);
    CHECK_EQ_INT(storage_tenant_series(f.s, "t"), 3);

    CHECK_EQ_INT(fx_reopen(&f), 0); /* counted again from the store */
    CHECK_EQ_INT(storage_tenant_series(f.s, "t"), 3);
    CHECK_EQ_INT(write_svc(&f, "t", "d", st, 8), ERR_LIMIT);
    CHECK_EQ_INT(write_svc(&f, "t", "b", st, 9), 0);

    /* retention empties a, b and c; the collector deletes them */
    f.now += 3 * 86400;
    CHECK_EQ_INT(write_svc(&f, "t", "b", st, 10), 0); /* b lives on */
    size_t removed = 0;
    CHECK_EQ_INT(storage_gc_series(f.s, &removed), 0);
    CHECK_EQ_INT(removed, 3); /* t's a and c, u's d */
    CHECK_EQ_INT(storage_tenant_series(f.s, "t"), 1);
    CHECK_EQ_INT(storage_tenant_series(f.s, "u"), 0);
    CHECK_EQ_INT(write_svc(&f, "t", "d", st, 11), 0);
    CHECK_EQ_INT(write_svc(&f, "t", "e", st, 12), 0);
    CHECK_EQ_INT(write_svc(&f, "t", "f", st, 13), ERR_LIMIT);
    CHECK_EQ_INT(storage_tenant_series(f.s, "t"), 3);
    symtab_free(st);
    fx_done(&f);
    return check_exit();
}

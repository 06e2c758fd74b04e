/* test_share_body.h — a calltree and its symbols as a regression report's
 * bucket is answered (a render with merged_functions: the functions of the
 * tree a coordinator gathers): for tests of what reads such bodies (the
 * report). Header-only: one static
 * function per test program. The caller keeps t and st (and frees them);
 * out is initialised here and freed by the caller (query_result_free). */
#ifndef FLAMEDB_TEST_SHARE_BODY_H
#define FLAMEDB_TEST_SHARE_BODY_H

#include <string.h>

#include "check.h"
#include "common/buf.h"
#include "common/calltree.h"
#include "common/symtab.h"
#include "query/query.h"

static void share_body_of(const calltree_t *t, const symtab_t *st, query_result_t *out)
{
    buf_t enc;
    buf_init(&enc, BUF_UNLIMITED);
    CHECK_EQ_INT(calltree_encode(t, &enc), 0);
    query_limits_t lim;
    query_limits_default(&lim);
    query_params_t p = {.query = "process_cpu:cpu:nanoseconds:cpu:nanoseconds{}",
                        .from = "now-1h",
                        .until = "now",
                        .merged_functions = 1};
    query_spec_t spec;
    memset(&spec, 0, sizeof spec);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, 1700000000000, &spec, &em), 0);
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    const uint8_t *e = enc.data;
    size_t len = enc.len;
    CHECK_EQ_INT(query_gather_add_trees(g, &e, &len, 1, &em), 0);
    for (size_t i = 0; i < symtab_count(st); i++) {
        uint64_t id = symtab_id_at(st, i);
        const char *nm, *file;
        CHECK(symtab_get(st, id, &nm, &file));
        CHECK_EQ_INT(query_gather_add_symbol(g, id, nm, strlen(nm), file, strlen(file)), 0);
    }
    CHECK_EQ_INT(query_gather_add_series(g, 1, NULL, &em), 0);
    query_result_init(out);
    CHECK_EQ_INT(query_gather_finish(g, NULL, out, &em), 0);
    query_gather_free(g);
    query_spec_free(&spec);
    buf_free(&enc);
}

#endif

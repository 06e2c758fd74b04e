/* util.c — small helpers shared inside query/: symbol names, profile type
 * ids, output-limit errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "query/query_int.h"

void query_sym_name(const symtab_t *syms, uint64_t sym, char *scratch, const char **name,
                    const char **file)
{
    if (syms != NULL && symtab_get(syms, sym, name, file)) {
        if (*file == NULL) *file = "";
        return;
    }
    if (sym == SYM_ROOT)
        *name = "total";
    else if (sym == SYM_OTHER)
        *name = "other";
    else {
        snprintf(scratch, 32, "unknown 0x%016llx", (unsigned long long)sym);
        *name = scratch;
    }
    *file = "";
}

int query_ptype_parse(const char *id, ptype_t *out)
{
    size_t len = strlen(id);
    if (len > QUERY_TYPE_MAX) return ERR_INVALID_ARGUMENT;
    memcpy(out->buf, id, len + 1);
    const char **parts[5] = {&out->name, &out->sample_type, &out->sample_unit, &out->period_type,
                             &out->period_unit};
    char *p = out->buf;
    for (int i = 0; i < 5; i++) {
        *parts[i] = p;
        char *c = strchr(p, ':');
        if ((c == NULL) != (i == 4)) return ERR_INVALID_ARGUMENT;
        if (c != NULL) *c = 0;
        /* Only the name must be non-empty: real profiles have empty period
         * types (py-spy, .NET) and even empty sample types, and ingest keeps
         * them as they are, so they must stay queryable. */
        if (i == 0 && **parts[i] == 0) return ERR_INVALID_ARGUMENT;
        p = c ? c + 1 : p;
    }
    return 0;
}

int query_out_err(int rc, const buf_t *out, errmsg_t *em)
{
    if (rc == ERR_TOO_LARGE)
        return errmsg_set(em, ERR_LIMIT,
                          "response larger than the %zu byte limit; lower "
                          "maxNodes or narrow the query",
                          out->max);
    return rc;
}

/* metrics.c — the registry and the text format (see metrics.h). */
#include "common/metrics.h"

#include "common/err.h"
#include "common/grow.h"

enum source { SRC_U64, SRC_DOUBLE, SRC_READ, SRC_RENDER };

struct metrics_entry {
    enum source src;
    metrics_type_t type;
    const char *name, *help;
    const void *ptr; /* the value, or the callback's ctx */
    metrics_read_fn read;
    metrics_render_fn render;
};

void metrics_registry_init(metrics_registry_t *r)
{
    *r = (metrics_registry_t){0};
}

void metrics_registry_free(metrics_registry_t *r)
{
    free(r->v);
    *r = (metrics_registry_t){0};
}

static void add(metrics_registry_t *r, metrics_entry_t e)
{
    if (r->err != ERR_OK) return;
    r->err = GROW_FROM(r->v, r->cap, r->n + 1, GROW_UNLIMITED, 32);
    if (r->err == ERR_OK) r->v[r->n++] = e;
}

void metrics_add_u64(metrics_registry_t *r, const char *name, const char *help, metrics_type_t type,
                     const uint64_t *value)
{
    add(r,
        (metrics_entry_t){.src = SRC_U64, .type = type, .name = name, .help = help, .ptr = value});
}

void metrics_add_double(metrics_registry_t *r, const char *name, const char *help,
                        metrics_type_t type, const double *value)
{
    add(r, (metrics_entry_t){
               .src = SRC_DOUBLE, .type = type, .name = name, .help = help, .ptr = value});
}

void metrics_add_read(metrics_registry_t *r, const char *name, const char *help,
                      metrics_type_t type, metrics_read_fn read, const void *ctx)
{
    add(r,
        (metrics_entry_t){
            .src = SRC_READ, .type = type, .name = name, .help = help, .ptr = ctx, .read = read});
}

void metrics_add_render(metrics_registry_t *r, metrics_render_fn render, const void *ctx)
{
    add(r, (metrics_entry_t){.src = SRC_RENDER, .ptr = ctx, .render = render});
}

void metrics_add_u64_array(metrics_registry_t *r, const metrics_u64_def_t *defs, size_t n,
                           const void *base)
{
    for (size_t i = 0; i < n; i++)
        metrics_add_u64(r, defs[i].name, defs[i].help, defs[i].type,
                        (const uint64_t *)(const void *)((const char *)base + defs[i].offset));
}

static double value_of(const metrics_entry_t *e)
{
    switch (e->src) {
    case SRC_U64:
        return (double)*(const uint64_t *)e->ptr;
    case SRC_DOUBLE:
        return *(const double *)e->ptr;
    default:
        return e->read(e->ptr);
    }
}

int metrics_registry_render(const metrics_registry_t *r, buf_t *out)
{
    if (r->err != ERR_OK) return r->err;
    for (size_t i = 0; i < r->n; i++) {
        const metrics_entry_t *e = &r->v[i];
        int rc;
        if (e->src == SRC_RENDER) {
            rc = e->render(e->ptr, out);
        } else {
            const char *type = e->type == METRICS_GAUGE ? "gauge" : "counter";
            rc = buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", e->name, e->help,
                            e->name, type, e->name, value_of(e));
        }
        if (rc != ERR_OK) return rc;
    }
    return ERR_OK;
}

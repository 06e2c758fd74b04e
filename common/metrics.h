/* metrics.h — one registry of metrics and its Prometheus text rendering.
 *
 * Owns the list of what /metrics shows and the text format 0.0.4: each
 * subsystem registers its counters and gauges (name, help, type and where the
 * value comes from: a pointer to a u64 or a double, or a read callback), or a
 * render callback for a labelled family (by route, by status, histograms);
 * metrics_registry_render() writes them in registration order.
 *
 * X-macro counter tables register in one call: build a metrics_u64_def_t
 * array with METRICS_U64_DEF(struct type, field, name, help) and hand it to
 * metrics_add_u64_array() with the struct holding the values.
 *
 * Ownership: names, help strings and value pointers are borrowed and must
 * outlive the render (usually they are static strings and a snapshot struct);
 * the caller owns the registry and frees it with metrics_registry_free().
 * Not thread-safe: register and render on one thread, from values that no
 * other thread changes meanwhile (take a snapshot first).
 */
#ifndef FLAMEDB_COMMON_METRICS_H
#define FLAMEDB_COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef enum metrics_type { METRICS_COUNTER, METRICS_GAUGE } metrics_type_t;

typedef struct metrics_entry metrics_entry_t;

typedef struct metrics_registry {
    metrics_entry_t *v;
    size_t n, cap;
    int err; /* first registration failure (ERR_NOMEM), reported by render */
} metrics_registry_t;

/* Appends a labelled family (its own # HELP / # TYPE lines included). */
typedef int (*metrics_render_fn)(const void *ctx, buf_t *out);
/* Reads a value at render time. */
typedef double (*metrics_read_fn)(const void *ctx);

void metrics_registry_init(metrics_registry_t *r);
void metrics_registry_free(metrics_registry_t *r);

void metrics_add_u64(metrics_registry_t *r, const char *name, const char *help, metrics_type_t type,
                     const uint64_t *value);
void metrics_add_double(metrics_registry_t *r, const char *name, const char *help,
                        metrics_type_t type, const double *value);
void metrics_add_read(metrics_registry_t *r, const char *name, const char *help,
                      metrics_type_t type, metrics_read_fn read, const void *ctx);
void metrics_add_render(metrics_registry_t *r, metrics_render_fn render, const void *ctx);

/* One u64 field of a stats struct. */
typedef struct metrics_u64_def {
    const char *name, *help;
    metrics_type_t type;
    size_t offset; /* of the uint64_t field in the struct */
} metrics_u64_def_t;

#define METRICS_U64_DEF(stype, field, name, help)                                                  \
    {                                                                                              \
        (name), (help), METRICS_COUNTER, offsetof(stype, field)                                    \
    }

/* Registers n u64 fields of the struct at base (borrowed). */
void metrics_add_u64_array(metrics_registry_t *r, const metrics_u64_def_t *defs, size_t n,
                           const void *base);

/* Appends every metric, in registration order. ERR_NOMEM when a registration
 * failed, ERR_TOO_LARGE when out's maximum was reached. */
int metrics_registry_render(const metrics_registry_t *r, buf_t *out);

#endif

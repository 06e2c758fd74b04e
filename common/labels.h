/* labels.h — canonical label sets (the identity of a series).
 *
 * A labels_t is an owned, sorted (by name, bytewise), duplicate-free list of
 * name=value pairs. Its canonical encoding — for each pair: name, 0x00, value,
 * 0x00 — is what series ids are hashed from and what storage persists, so two
 * nodes always agree on a series' identity.
 *
 * Ownership: labels_new() returns a set the caller owns (free with
 * labels_free()); strings passed in are copied. Accessors return borrowed
 * pointers valid until the set is changed or freed. Not thread-safe for writes.
 */
#ifndef FLAMEDB_COMMON_LABELS_H
#define FLAMEDB_COMMON_LABELS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef struct labels labels_t;

/* Well-known label names (Pyroscope's reserved and well-known labels). */
#define LABEL_NAME "__name__"
#define LABEL_PROFILE_TYPE "__profile_type__"
#define LABEL_SERVICE_NAME "service_name"

labels_t *labels_new(void);
void labels_free(labels_t *l);
labels_t *labels_clone(const labels_t *l);

/* Sets name=value, replacing an existing value of name. Keeps the set sorted. */
int labels_set(labels_t *l, const char *name, size_t name_len, const char *value, size_t value_len);
int labels_set_str(labels_t *l, const char *name, const char *value);
/* Removes name if present. */
void labels_remove(labels_t *l, const char *name);

size_t labels_count(const labels_t *l);
/* Heap bytes the set holds (its pair array and strings, as allocated). */
size_t labels_mem_bytes(const labels_t *l);
/* i-th pair in sorted order; borrowed. */
const char *labels_name(const labels_t *l, size_t i);
const char *labels_value(const labels_t *l, size_t i);
/* Value of name or NULL; borrowed. */
const char *labels_get(const labels_t *l, const char *name);

/* Canonical encoding appended to out. */
int labels_encode(const labels_t *l, buf_t *out);
/* Parses a canonical encoding into a new set (caller owns). ERR_CORRUPT on bad bytes. */
int labels_decode(const uint8_t *p, size_t n, labels_t **out);
/* XXH3-64 of the canonical encoding: the series id. */
uint64_t labels_hash(const labels_t *l);
/* Appends `{a="1", b="2"}` (Prometheus style, values escaped). */
int labels_format(const labels_t *l, buf_t *out);

#endif

/* scatter_names.c — a coordinator's names of the symbols its shares sent
 * (scatter_names.h). */
#include "node/cluster/scatter_names.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "storage/storage.h"

#define SCATTER_NAMES_ENTRY_BYTES 48 /* counted per symbol beside its strings */

struct scatter_names_gen {
    struct scatter_names_gen *next; /* among the current generations */
    char tenant[STORAGE_TENANT_MAX + 1];
    symtab_t *syms;
    size_t bytes;
    int refs;    /* renders holding it */
    int retired; /* no longer current: freed at its last release */
};

struct scatter_names {
    pthread_mutex_t mu;
    size_t max_bytes;
    size_t bytes;         /* of the current generations */
    size_t retired_bytes; /* of the retired generations still held */
    scatter_names_gen_t *gens;
};

int scatter_names_new(size_t max_bytes, scatter_names_t **out)
{
    *out = NULL;
    if (max_bytes == 0) return 0;
    scatter_names_t *c = calloc(1, sizeof *c);
    if (c == NULL) return ERR_NOMEM;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return ERR_NOMEM;
    }
    c->max_bytes = max_bytes;
    *out = c;
    return 0;
}

static void gen_free(scatter_names_gen_t *g)
{
    symtab_free(g->syms);
    free(g);
}

void scatter_names_free(scatter_names_t *c)
{
    if (c == NULL) return;
    for (scatter_names_gen_t *g = c->gens, *next; g != NULL; g = next) {
        next = g->next;
        gen_free(g);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static scatter_names_gen_t *find(scatter_names_t *c, const char *tenant)
{
    for (scatter_names_gen_t *g = c->gens; g != NULL; g = g->next)
        if (strcmp(g->tenant, tenant) == 0) return g;
    return NULL;
}

int scatter_names_acquire(scatter_names_t *c, const char *tenant, scatter_names_gen_t **gen,
                          uint64_t **ids, size_t *n)
{
    *gen = NULL;
    *ids = NULL;
    *n = 0;
    if (c == NULL) return 0;
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    scatter_names_gen_t *g = find(c, tenant);
    size_t k = g != NULL ? symtab_count(g->syms) : 0;
    if (k > 0) {
        *ids = malloc(k * sizeof **ids);
        rc = *ids != NULL ? 0 : ERR_NOMEM;
        for (size_t i = 0; rc == 0 && i < k; i++)
            (*ids)[i] = symtab_id_at(g->syms, i);
        if (rc == 0) {
            g->refs++;
            *gen = g;
            *n = k;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void scatter_names_release(scatter_names_t *c, scatter_names_gen_t *gen)
{
    if (c == NULL || gen == NULL) return;
    pthread_mutex_lock(&c->mu);
    int last = --gen->refs == 0 && gen->retired;
    if (last) c->retired_bytes -= gen->bytes;
    pthread_mutex_unlock(&c->mu);
    if (last) gen_free(gen);
}

int scatter_names_get(scatter_names_t *c, scatter_names_gen_t *gen, const uint64_t *ids, size_t n,
                      symtab_t *dst)
{
    if (c == NULL || gen == NULL) return 0;
    pthread_mutex_lock(&c->mu); /* gen may grow meanwhile when current */
    int rc = symtab_put_from(dst, gen->syms, ids, n);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* Every current generation retired (those held live until released). */
static void retire_all(scatter_names_t *c)
{
    for (scatter_names_gen_t *g = c->gens, *next; g != NULL; g = next) {
        next = g->next;
        g->retired = 1;
        if (g->refs == 0)
            gen_free(g);
        else
            c->retired_bytes += g->bytes;
    }
    c->gens = NULL;
    c->bytes = 0;
}

static int current(scatter_names_t *c, const char *tenant, scatter_names_gen_t **out)
{
    scatter_names_gen_t *g = find(c, tenant);
    if (g == NULL) {
        g = calloc(1, sizeof *g);
        if (g == NULL || (g->syms = symtab_new()) == NULL) {
            free(g);
            return ERR_NOMEM;
        }
        snprintf(g->tenant, sizeof g->tenant, "%s", tenant);
        g->next = c->gens;
        c->gens = g;
    }
    *out = g;
    return 0;
}

int scatter_names_put(scatter_names_t *c, const char *tenant, const scatter_names_sym_t *v,
                      size_t n)
{
    if (c == NULL || n == 0) return 0;
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    scatter_names_gen_t *g = find(c, tenant);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *name, *file;
        if (g != NULL && symtab_get(g->syms, v[i].id, &name, &file)) continue; /* held */
        size_t b = v[i].name_len + v[i].file_len + SCATTER_NAMES_ENTRY_BYTES;
        if (b > c->max_bytes) continue; /* never held: always sent */
        if (c->bytes + b > c->max_bytes) {
            if (c->retired_bytes > 0) continue; /* at most twice max_bytes: not held, sent */
            retire_all(c);
            g = NULL;
        }
        if (g == NULL && (rc = current(c, tenant, &g)) != 0) break;
        rc = symtab_put(g->syms, v[i].id, v[i].name, v[i].name_len, v[i].file, v[i].file_len);
        if (rc == 0) {
            g->bytes += b;
            c->bytes += b;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

size_t scatter_names_bytes(scatter_names_t *c)
{
    if (c == NULL) return 0;
    pthread_mutex_lock(&c->mu);
    size_t b = c->bytes;
    pthread_mutex_unlock(&c->mu);
    return b;
}

/* ring_tokens.c — the seeded token generator and node identities (ring.h).
 *
 * The identity file is text so an operator can read it; a checksum line
 * catches truncation and hand edits, because a node that came back with other
 * tokens would silently own other data.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "ring/ring_int.h"

#define IDENTITY_MAGIC "flamedb-identity 1\n"

void ring_rng_seed(ring_rng_t *r, uint64_t seed)
{
    r->state = seed;
}

/* splitmix64: tiny, well mixed, and its output for a seed is fixed forever
 * (RING_REPLICA_VERSION pins it). */
uint64_t ring_rng_next(ring_rng_t *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int ring_node_id_check(const char *id, errmsg_t *em)
{
    if (id == NULL || id[0] == 0) return errmsg_set(em, ERR_INVALID_ARGUMENT, "node id: empty");
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            return errmsg_set(em, ERR_INVALID_ARGUMENT,
                              "node id: character 0x%02x not in [A-Za-z0-9._-]", (unsigned char)c);
        if (n >= RING_NODE_ID_MAX)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "node id: longer than %d bytes",
                              RING_NODE_ID_MAX);
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int ring_identity_generate(ring_identity_t *id, const char *node_id, uint32_t ntokens,
                           ring_rng_t *rng, errmsg_t *em)
{
    memset(id, 0, sizeof *id);
    int rc = ring_node_id_check(node_id, em);
    if (rc < 0) return rc;
    if (ntokens == 0 || ntokens > RING_MAX_TOKENS)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "tokens per node: %u not in 1..%d", ntokens,
                          RING_MAX_TOKENS);
    uint64_t *t = malloc(ntokens * sizeof *t);
    if (t == NULL) return errmsg_set(em, ERR_NOMEM, "identity: out of memory");
    uint32_t have = 0;
    /* Draw, sort, drop duplicates, draw again for the missing ones: a
     * duplicate is astronomically rare, but the result must be distinct. */
    while (have < ntokens) {
        for (uint32_t i = have; i < ntokens; i++)
            t[i] = ring_rng_next(rng);
        qsort(t, ntokens, sizeof *t, cmp_u64);
        have = 1;
        for (uint32_t i = 1; i < ntokens; i++)
            if (t[i] != t[have - 1]) t[have++] = t[i];
    }
    memcpy(id->node_id, node_id, strlen(node_id) + 1); /* checked: <= RING_NODE_ID_MAX */
    id->tokens = t;
    id->ntokens = ntokens;
    return 0;
}

int ring_identity_format(const ring_identity_t *id, buf_t *out)
{
    size_t start = out->len;
    int rc = buf_printf(out, IDENTITY_MAGIC "node_id %s\ntokens %" PRIu32 "\n", id->node_id,
                        id->ntokens);
    for (uint32_t i = 0; rc == 0 && i < id->ntokens; i++)
        rc = buf_printf(out, "%016" PRIx64 "\n", id->tokens[i]);
    if (rc < 0) return rc;
    uint64_t sum = hash_bytes64(out->data + start, out->len - start);
    return buf_printf(out, "checksum %016" PRIx64 "\n", sum);
}

/* Reads one '\n'-terminated line at *p into line (NUL-terminated); 0 if none
 * or too long. */
static int read_line(const uint8_t **p, const uint8_t *end, char *line, size_t cap)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (nl == NULL || (size_t)(nl - *p) >= cap) return 0;
    size_t n = (size_t)(nl - *p);
    memcpy(line, *p, n);
    line[n] = 0;
    if (strlen(line) != n) return 0; /* embedded NUL */
    *p = nl + 1;
    return 1;
}

static int parse_hex64(const char *s, uint64_t *v)
{
    if (strlen(s) != 16) return 0;
    uint64_t x = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return 0;
        x = (x << 4) | (uint64_t)d;
    }
    *v = x;
    return 1;
}

static int parse_header(const uint8_t **p, const uint8_t *end, ring_identity_t *id, errmsg_t *em)
{
    char line[128];
    size_t ml = strlen(IDENTITY_MAGIC);
    if ((size_t)(end - *p) < ml || memcmp(*p, IDENTITY_MAGIC, ml) != 0)
        return errmsg_set(em, ERR_CORRUPT, "identity: not a flamedb identity file (version 1)");
    *p += ml;
    if (!read_line(p, end, line, sizeof line) || strncmp(line, "node_id ", 8) != 0)
        return errmsg_set(em, ERR_CORRUPT, "identity: missing node_id line");
    if (ring_node_id_check(line + 8, NULL) < 0)
        return errmsg_set(em, ERR_CORRUPT, "identity: invalid node id");
    memcpy(id->node_id, line + 8, strlen(line + 8) + 1); /* checked: <= RING_NODE_ID_MAX */
    char *e;
    if (!read_line(p, end, line, sizeof line) || strncmp(line, "tokens ", 7) != 0)
        return errmsg_set(em, ERR_CORRUPT, "identity: missing tokens line");
    unsigned long nt = strtoul(line + 7, &e, 10);
    if (*e != 0 || line[7] < '1' || line[7] > '9' || nt > RING_MAX_TOKENS)
        return errmsg_set(em, ERR_CORRUPT, "identity: token count not in 1..%d", RING_MAX_TOKENS);
    id->ntokens = (uint32_t)nt;
    return 0;
}

int ring_identity_parse(ring_identity_t *id, const uint8_t *p, size_t n, errmsg_t *em)
{
    memset(id, 0, sizeof *id);
    const uint8_t *s = p, *end = p + n;
    char line[128];
    int rc = parse_header(&s, end, id, em);
    if (rc < 0) return rc;
    id->tokens = malloc(id->ntokens * sizeof *id->tokens);
    if (id->tokens == NULL) return errmsg_set(em, ERR_NOMEM, "identity: out of memory");
    for (uint32_t i = 0; i < id->ntokens; i++) {
        if (!read_line(&s, end, line, sizeof line) || !parse_hex64(line, &id->tokens[i])) {
            rc = errmsg_set(em, ERR_CORRUPT, "identity: token %u is not 16 hex digits", i);
            goto fail;
        }
        if (i > 0 && id->tokens[i] <= id->tokens[i - 1]) {
            rc = errmsg_set(em, ERR_CORRUPT, "identity: tokens not ascending at %u", i);
            goto fail;
        }
    }
    uint64_t want = hash_bytes64(p, (size_t)(s - p)), got;
    if (!read_line(&s, end, line, sizeof line) || strncmp(line, "checksum ", 9) != 0 ||
        !parse_hex64(line + 9, &got) || got != want || s != end) {
        rc = errmsg_set(em, ERR_CORRUPT, "identity: checksum line missing or wrong");
        goto fail;
    }
    return 0;
fail:
    ring_identity_free(id);
    return rc;
}

void ring_identity_free(ring_identity_t *id)
{
    free(id->tokens);
    id->tokens = NULL;
    id->ntokens = 0;
}

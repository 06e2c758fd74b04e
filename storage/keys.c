/* keys.c — byte layouts of every storage key and small fixed value.
 *
 * This file is the code side of docs/storage-format.md: integers in keys are
 * big-endian so byte order is numeric order, times are offset binary (sign
 * bit flipped) so negative times still sort first, tenants carry a length
 * byte so "ab" and "a" never share a prefix by accident. Keys that begin with
 * the placement token make one token range one contiguous key range.
 */
#include <string.h>

#include "common/hash.h"
#include "common/varint.h"
#include "storage/storage_int.h"

void storage_key_u8(skey_t *k, uint8_t v)
{
    k->b[k->n++] = v;
}

void storage_key_u64(skey_t *k, uint64_t v)
{
    be64_put(k->b + k->n, v);
    k->n += 8;
}

void storage_key_time(skey_t *k, int64_t t)
{
    storage_key_u64(k, (uint64_t)t ^ ((uint64_t)1 << 63));
}

int64_t storage_time_decode(const uint8_t *p)
{
    return (int64_t)(be64_get(p) ^ ((uint64_t)1 << 63));
}

/* The tenant was validated by storage_check_tenant, so it fits. */
void storage_key_tenant(skey_t *k, const char *tenant)
{
    size_t n = strlen(tenant);
    k->b[k->n++] = (uint8_t)n;
    memcpy(k->b + k->n, tenant, n);
    k->n += n;
}

void storage_key_bytes(skey_t *k, const void *p, size_t n)
{
    memcpy(k->b + k->n, p, n);
    k->n += n;
}

void storage_key_series(skey_t *k, uint64_t token, const char *tenant, uint64_t series_id)
{
    skey_reset(k);
    storage_key_u64(k, token);
    storage_key_tenant(k, tenant);
    storage_key_u64(k, series_id);
}

void storage_key_window(skey_t *k, uint64_t token, const char *tenant, uint64_t series_id, int res,
                        int64_t window)
{
    storage_key_series(k, token, tenant, series_id);
    storage_key_u8(k, (uint8_t)res);
    storage_key_time(k, window);
}

void storage_key_profile(skey_t *k, uint64_t token, const char *tenant, uint64_t series_id,
                         const uint8_t profile_id[16])
{
    storage_key_series(k, token, tenant, series_id);
    storage_key_bytes(k, profile_id, 16);
}

void storage_key_ptree(skey_t *k, uint64_t token, const char *tenant, uint64_t series_id,
                       int64_t time_ns, const uint8_t profile_id[16])
{
    storage_key_series(k, token, tenant, series_id);
    storage_key_time(k, time_ns);
    storage_key_bytes(k, profile_id, 16);
}

void storage_key_symbol(skey_t *k, const char *tenant, uint64_t symbol_id)
{
    skey_reset(k);
    storage_key_tenant(k, tenant);
    storage_key_u64(k, symbol_id);
}

void storage_key_span_prefix(skey_t *k, const char *tenant, uint8_t kind, uint64_t id)
{
    skey_reset(k);
    storage_key_tenant(k, tenant);
    storage_key_u8(k, kind);
    storage_key_u64(k, id);
}

void storage_key_span(skey_t *k, const char *tenant, uint8_t kind, uint64_t id, uint64_t token,
                      uint64_t series_id, int64_t window)
{
    storage_key_span_prefix(k, tenant, kind, id);
    storage_key_u64(k, token);
    storage_key_u64(k, series_id);
    storage_key_time(k, window);
}

int storage_key_posting(buf_t *out, const char *tenant, const char *name, const char *value,
                        uint64_t token, uint64_t series_id)
{
    size_t tn = strlen(tenant), nn = strlen(name), vn = strlen(value);
    if (nn > STORAGE_LABEL_MAX || vn > STORAGE_LABEL_MAX) return ERR_LIMIT;
    buf_reset(out);
    int rc = buf_append_byte(out, (uint8_t)tn);
    if (rc == 0) rc = buf_append(out, tenant, tn);
    if (rc == 0) rc = buf_append(out, name, nn + 1); /* with its NUL terminator */
    if (rc == 0) rc = buf_append(out, value, vn + 1);
    if (rc == 0) rc = buf_append_u64be(out, token);
    if (rc == 0) rc = buf_append_u64be(out, series_id);
    return rc;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

uint64_t storage_span_id(const char *s, size_t n)
{
    if (n == 16) {
        uint64_t v = 0;
        size_t i = 0;
        for (; i < 16; i++) {
            int h = hexval(s[i]);
            if (h < 0) break;
            v = (v << 4) | (uint64_t)h;
        }
        if (i == 16) return v;
    }
    return hash_bytes64(s, n);
}

size_t storage_prefix_successor(uint8_t *k, size_t n)
{
    while (n > 0 && k[n - 1] == 0xff)
        n--;
    if (n > 0) k[n - 1]++;
    return n;
}

void storage_i64_put(uint8_t out[8], int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)u;
        u >>= 8;
    }
}

int64_t storage_i64_get(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = (u << 8) | p[i];
    return (int64_t)u;
}

void storage_profile_value(uint8_t out[STORAGE_PROFILE_VALUE_LEN], int64_t time_ns, int64_t total,
                           int64_t written_s)
{
    storage_i64_put(out, time_ns);
    storage_i64_put(out + 8, total);
    storage_i64_put(out + 16, written_s);
}

int storage_symbol_value(buf_t *out, const char *name, const char *file)
{
    size_t nn = strlen(name), fn = strlen(file);
    buf_reset(out);
    int rc = buf_append_uvarint(out, nn);
    if (rc == 0) rc = buf_append(out, name, nn);
    if (rc == 0) rc = buf_append_uvarint(out, fn);
    if (rc == 0) rc = buf_append(out, file, fn);
    return rc;
}

int storage_symbol_decode(const uint8_t *p, size_t n, const char **name, size_t *name_len,
                          const char **file, size_t *file_len)
{
    const uint8_t *end = p + n;
    uint64_t len;
    if (!varint_read_u(&p, end, &len) || len > (uint64_t)(end - p)) return ERR_CORRUPT;
    *name = (const char *)p;
    *name_len = (size_t)len;
    p += len;
    if (!varint_read_u(&p, end, &len) || len != (uint64_t)(end - p)) return ERR_CORRUPT;
    *file = (const char *)p;
    *file_len = (size_t)len;
    return 0;
}

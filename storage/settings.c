/* settings.c — what a data directory records of how its data was made
 * (storage.h): `meta` key "setting/" + name -> the value's bytes. Few keys,
 * each written once when the directory is first used (node/placement.c). */
#include <stdlib.h>
#include <string.h>

#include "storage/storage_int.h"

#define SETTING_PREFIX "setting/"
#define SETTING_PREFIX_LEN 8
#define SETTING_KEY_MAX (SETTING_PREFIX_LEN + STORAGE_SETTING_NAME_MAX)

static int setting_key(char *k, const char *name, size_t *n, errmsg_t *em)
{
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len > STORAGE_SETTING_NAME_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "setting name of %zu bytes", len);
    memcpy(k, SETTING_PREFIX, SETTING_PREFIX_LEN);
    memcpy(k + SETTING_PREFIX_LEN, name, len);
    *n = SETTING_PREFIX_LEN + len;
    return 0;
}

int storage_setting_get(storage_t *s, const char *name, buf_t *out, int *found, errmsg_t *em)
{
    *found = 0;
    char k[SETTING_KEY_MAX];
    size_t kn = 0;
    int rc = setting_key(k, name, &kn, em);
    if (rc != 0) return rc;
    char *err = NULL;
    size_t vn = 0;
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_META], k, kn, &vn, &err);
    rc = storage_rocks_err(err, em, "read setting");
    if (rc == 0 && v != NULL) {
        rc = buf_append(out, v, vn);
        if (rc != 0) errmsg_set(em, rc, "out of memory");
        *found = rc == 0;
    }
    rocksdb_free(v);
    return rc;
}

int storage_setting_put(storage_t *s, const char *name, const char *value, errmsg_t *em)
{
    char k[SETTING_KEY_MAX];
    size_t kn = 0;
    int rc = setting_key(k, name, &kn, em);
    if (rc != 0) return rc;
    char *err = NULL;
    rocksdb_put_cf(s->db, s->wopts, s->cf[CF_META], k, kn, value, strlen(value), &err);
    return storage_rocks_err(err, em, "write setting");
}

int storage_has_series(storage_t *s, int *any, errmsg_t *em)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_SERIES]);
    rocksdb_iter_seek_to_first(it);
    *any = rocksdb_iter_valid(it);
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    return storage_rocks_err(err, em, "read series");
}

/* filter.c — retention as RocksDB compaction filters.
 *
 * blocks/totals: a window [w, w+res) of resolution index r is dropped once
 *   w + res + retention_seconds[r] <= now (the whole window is older than the
 *   retention of its resolution); retention 0 keeps it forever.
 * spans: a span tree filed under 10 s window w is dropped once
 *   w + 10 + span_retention_seconds <= now; span keys without a window
 *   (written before windows were added) can never be selected and are
 *   dropped.
 * span_index: an entry goes with its span tree (the same window).
 * profiles (the seen index): an entry is dropped once
 *   written_s + seen_retention_seconds <= now, where written_s is the clock
 *   when it was stored — not the profile's own time, so a backfilled profile
 *   is still remembered for the full period after it arrived.
 *
 * profile_trees: a profile's tree is dropped once
 *   floor(time_ns / 1e9) + profile_retention_seconds <= now (the profile's
 *   own time, like a window: the data ages, not the write), unless its token
 *   lies in a range being received (storage_range_receiving); a tree in no
 *   block (PTREE_FLAG_UNBLOCKED) also not before its 10 s window expires
 *   (listings and reads of one profile still hide it past profile
 *   retention: storage_ptree_expired).
 *
 * "now" comes from the handle's clock (storage_set_clock), so tests can age
 * data without waiting. Filters only ever see fully merged values and Puts;
 * merge operands are kept until compaction folds them into a value.
 * Keys or values that do not parse are kept: retention never guesses.
 */
#include "common/varint.h"
#include "storage/storage_int.h"

/* Smallest blocks/totals key: token, empty tenant, series_id, res, window. */
#define WINDOW_KEY_MIN (8 + 1 + 8 + 1 + 8)

static int window_expired(storage_t *s, const uint8_t *key, size_t klen)
{
    if (klen < WINDOW_KEY_MIN) return 0;
    int res = key[klen - 9];
    if (res >= STORAGE_RESOLUTION_COUNT) return 0;
    int64_t keep = s->opts.retention_seconds[res];
    if (keep <= 0) return 0;
    int64_t window = storage_time_decode(key + klen - 8);
    int64_t end = window + (int64_t)storage_resolutions[res];
    return end + keep <= storage_now(s);
}

static int span_expired(storage_t *s, const uint8_t *key, size_t klen)
{
    if (klen < 1) return 0;
    size_t prefix = 1 + (size_t)key[0] + 1 + 8; /* tenant, kind, id */
    if (klen == prefix + 16) return 1;          /* no window: never read (read.c) */
    if (klen != prefix + 24) return 0;
    int64_t keep = s->opts.span_retention_seconds;
    if (keep <= 0) return 0;
    int64_t end = storage_time_decode(key + klen - 8) + (int64_t)storage_resolutions[0];
    return end + keep <= storage_now(s);
}

/* A span_index key is a spans key with the token moved first. */
static int span_index_expired(storage_t *s, const uint8_t *key, size_t klen)
{
    if (klen < 9 || klen != 8 + 1 + (size_t)key[8] + 1 + 8 + 16) return 0;
    int64_t keep = s->opts.span_retention_seconds;
    if (keep <= 0) return 0;
    int64_t end = storage_time_decode(key + klen - 8) + (int64_t)storage_resolutions[0];
    return end + keep <= storage_now(s);
}

/* A profile_span_index entry or list key: its window after the tenant and
 * series. */
static int pspan_expired(storage_t *s, const uint8_t *key, size_t klen)
{
    if (!storage_pspan_key_ok(key, klen)) return 0;
    int64_t keep = s->opts.span_retention_seconds;
    if (keep <= 0) return 0;
    int64_t end = storage_time_decode(key + 9 + key[8] + 8) + (int64_t)storage_resolutions[0];
    return end + keep <= storage_now(s);
}

static int seen_expired(storage_t *s, const uint8_t *val, size_t vlen)
{
    int64_t keep = s->opts.seen_retention_seconds;
    if (keep <= 0 || vlen != STORAGE_PROFILE_VALUE_LEN) return 0;
    int64_t written = storage_i64_get(val + 16);
    return written + keep <= storage_now(s);
}

/* Whether the 10 s window of a profile of time time_ns is past
 * resolution 0's retention. */
static int ten_s_expired(storage_t *s, int64_t time_ns)
{
    int64_t keep = s->opts.retention_seconds[0], res = storage_resolutions[0];
    int64_t t = time_ns / 1000000000 - (time_ns % 1000000000 < 0); /* floor */
    int64_t window = t / res * res - (t % res < 0 ? res : 0);
    return keep > 0 && window + res + keep <= storage_now(s);
}

/* A profile_trees key starts with the token (8) and ends with time_ns (8)
 * and the profile id (16). A tree in a range being received stays: the
 * stream may still take it off a window's residual (write.c). A tree in no
 * block (PTREE_FLAG_UNBLOCKED, read from the value's flags byte; val NULL:
 * none) is its 10 s window's data and stays until that window expires too. */
static int ptree_expired(storage_t *s, const uint8_t *key, size_t klen, const uint8_t *val,
                         size_t vlen)
{
    if (klen < 8 + 1 + 8 + 8 + 16) return 0;
    int64_t t = storage_time_decode(key + klen - 24);
    if (!storage_ptree_expired(s, t) || storage_range_receiving(s, be64_get(key))) return 0;
    int unblocked = val != NULL && vlen >= PTREE_HEADER_LEN && val[0] == PTREE_VERSION &&
                    (val[1] & PTREE_FLAG_UNBLOCKED);
    return !unblocked || ten_s_expired(s, t);
}

int storage_ptree_expired(storage_t *s, int64_t time_ns)
{
    int64_t keep = s->opts.profile_retention_seconds;
    int64_t t = time_ns / 1000000000 - (time_ns % 1000000000 < 0); /* floor */
    return keep > 0 && t + keep <= storage_now(s);
}

int storage_filter_expired(storage_t *s, enum storage_cf cf, const uint8_t *key, size_t klen,
                           const uint8_t *val, size_t vlen)
{
    switch (cf) {
    case CF_BLOCKS:
    case CF_TOTALS:
    case CF_WPROFILES: /* a window's profiles go with it */
    case CF_STREAMED:  /* a marker goes with its window */
        return window_expired(s, key, klen);
    case CF_PROFILES:
        return seen_expired(s, val, vlen);
    case CF_SPANS:
        return span_expired(s, key, klen);
    case CF_SPAN_INDEX: /* an entry goes with its tree */
        return span_index_expired(s, key, klen);
    case CF_PSPAN_INDEX:
        return pspan_expired(s, key, klen);
    case CF_PTREES:
        return ptree_expired(s, key, klen, val, vlen);
    default:
        return 0;
    }
}

static unsigned char filter(void *state, int level, const char *key, size_t klen, const char *val,
                            size_t vlen, char **new_value, size_t *new_len, unsigned char *changed)
{
    storage_filter_state_t *fs = state;
    *changed = 0;
    if (!storage_filter_expired(fs->s, fs->cf, (const uint8_t *)key, klen, (const uint8_t *)val,
                                vlen))
        return 0;
    atomic_uint_fast64_t *n = fs->cf == CF_PROFILES      ? &fs->s->counters.filtered_seen
                              : fs->cf == CF_SPANS       ? &fs->s->counters.filtered_spans
                              : fs->cf == CF_PTREES      ? &fs->s->counters.filtered_ptrees
                              : fs->cf == CF_SPAN_INDEX  ? NULL /* counted with its tree */
                              : fs->cf == CF_PSPAN_INDEX ? NULL
                                                         : &fs->s->counters.filtered_windows;
    if (n != NULL) atomic_fetch_add(n, 1);
    return 1;
}

static const char *filter_name(void *state)
{
    storage_filter_state_t *fs = state;
    return fs->cf == CF_PROFILES      ? "flamedb.seen_retention.v1"
           : fs->cf == CF_SPANS       ? "flamedb.span_retention.v1"
           : fs->cf == CF_SPAN_INDEX  ? "flamedb.span_index_retention.v1"
           : fs->cf == CF_PSPAN_INDEX ? "flamedb.profile_span_index_retention.v1"
           : fs->cf == CF_PTREES      ? "flamedb.profile_retention.v1"
                                      : "flamedb.window_retention.v1";
}

static void no_destructor(void *state) {}

rocksdb_compactionfilter_t *storage_filter_new(storage_t *s, enum storage_cf cf)
{
    if (cf != CF_BLOCKS && cf != CF_TOTALS && cf != CF_PROFILES && cf != CF_SPANS &&
        cf != CF_PTREES && cf != CF_STREAMED && cf != CF_SPAN_INDEX && cf != CF_PSPAN_INDEX &&
        cf != CF_WPROFILES)
        return NULL;
    s->filter_state[cf].s = s;
    s->filter_state[cf].cf = cf;
    rocksdb_compactionfilter_t *f =
        rocksdb_compactionfilter_create(&s->filter_state[cf], no_destructor, filter, filter_name);
    if (f != NULL) rocksdb_compactionfilter_set_ignore_snapshots(f, 1);
    return f;
}

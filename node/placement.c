/* placement.c — the placement policy a data directory records (placement.h). */
#include "node/placement.h"

#include <string.h>

#include "common/buf.h"
#include "common/log.h"

#define PLACEMENT_SETTING "placement"

/* The overrides as --service-shards takes them ("" when none), into out. */
static void services_text(const ring_shard_policy_t *p, buf_t *out)
{
    buf_t all;
    buf_init(&all, BUF_UNLIMITED);
    if (ring_shard_policy_format(p, &all) == 0) { /* never empty: data is a string */
        const char *s = strstr((const char *)all.data, ";services=");
        if (s != NULL) (void)buf_append_str(out, s + strlen(";services="));
    }
    buf_free(&all);
}

/* The first setting given that differs from the record, or NULL. */
static const char *differs(const ring_shard_policy_t *want, const ring_shard_policy_t *rec,
                           unsigned given)
{
    if ((given & NODE_PLACEMENT_GIVEN_SHARDS) && want->default_shards != rec->default_shards)
        return "shards-per-service";
    if ((given & NODE_PLACEMENT_GIVEN_BY_PROFILE) && !want->by_profile != !rec->by_profile)
        return "shard-by-profile";
    if (given & NODE_PLACEMENT_GIVEN_SERVICES) {
        ring_shard_policy_t a = *rec, b = *rec;
        memcpy(a.over, want->over, sizeof a.over);
        a.n = want->n;
        if (!ring_shard_policy_equal(&a, &b)) return "service-shards";
    }
    return NULL;
}

static int refuse(const char *setting, const ring_shard_policy_t *want,
                  const ring_shard_policy_t *rec, const char *data_dir, errmsg_t *em)
{
    buf_t w, r; /* the values as text (out of memory: left empty in the message) */
    buf_init(&w, BUF_UNLIMITED);
    buf_init(&r, BUF_UNLIMITED);
    if (strcmp(setting, "service-shards") == 0) {
        services_text(want, &w);
        services_text(rec, &r);
    } else {
        int sh = strcmp(setting, "shards-per-service") == 0;
        (void)buf_printf(&w, "%u", sh ? want->default_shards : (unsigned)!!want->by_profile);
        (void)buf_printf(&r, "%u", sh ? rec->default_shards : (unsigned)!!rec->by_profile);
    }
    int rc = errmsg_set(em, ERR_INVALID_ARGUMENT,
                        "--%s is '%.200s' but the series in %.200s were placed with '%.200s': a "
                        "placement setting cannot change once a data directory holds data "
                        "(leave it unset to use the recorded one)",
                        setting, w.data ? (const char *)w.data : "", data_dir,
                        r.data ? (const char *)r.data : "");
    buf_free(&w);
    buf_free(&r);
    return rc;
}

/* Takes the recorded value of every setting not given. */
static void adopt(ring_shard_policy_t *policy, const ring_shard_policy_t *rec, unsigned given)
{
    if (!(given & NODE_PLACEMENT_GIVEN_SHARDS)) policy->default_shards = rec->default_shards;
    if (!(given & NODE_PLACEMENT_GIVEN_BY_PROFILE)) policy->by_profile = rec->by_profile;
    if (!(given & NODE_PLACEMENT_GIVEN_SERVICES)) {
        memcpy(policy->over, rec->over, sizeof policy->over);
        policy->n = rec->n;
    }
}

static int record(storage_t *st, const ring_shard_policy_t *policy, errmsg_t *em)
{
    buf_t t;
    buf_init(&t, BUF_UNLIMITED);
    int rc = ring_shard_policy_format(policy, &t);
    if (rc != 0) rc = errmsg_set(em, rc, "out of memory");
    if (rc == 0) rc = storage_setting_put(st, PLACEMENT_SETTING, (const char *)t.data, em);
    buf_free(&t);
    return rc;
}

/* A record found: the settings not given taken from it, a given one that
 * differs refused while st holds series (recorded anew while it holds none). */
static int settle_recorded(storage_t *st, const char *data_dir, unsigned given, const char *text,
                           ring_shard_policy_t *policy, int *recorded, errmsg_t *em)
{
    ring_shard_policy_t rec;
    int rc = ring_shard_policy_read(&rec, text, em);
    if (rc != 0) return rc;
    const char *setting = differs(policy, &rec, given);
    if (setting == NULL) {
        adopt(policy, &rec, given);
        *recorded = 1;
        return 0;
    }
    int any = 0;
    rc = storage_has_series(st, &any, em);
    if (rc != 0) return rc;
    if (any) return refuse(setting, policy, &rec, data_dir, em);
    log_info("node", "no series in %s yet: --%s changes its recorded placement", data_dir, setting);
    return record(st, policy, em);
}

int node_placement_settle(storage_t *st, const char *data_dir, unsigned given,
                          ring_shard_policy_t *policy, int *recorded, errmsg_t *em)
{
    buf_t v;
    buf_init(&v, BUF_UNLIMITED);
    int found = 0;
    *recorded = 0;
    int rc = storage_setting_get(st, PLACEMENT_SETTING, &v, &found, em);
    if (rc == 0 && found) {
        rc = settle_recorded(st, data_dir, given, v.data != NULL ? (const char *)v.data : "",
                             policy, recorded, em);
    } else if (rc == 0) {
        int any = 0;
        rc = storage_has_series(st, &any, em);
        /* written before the record: with the old default unless given */
        if (rc == 0 && any && !(given & NODE_PLACEMENT_GIVEN_BY_PROFILE))
            policy->by_profile = NODE_PLACEMENT_LEGACY_BY_PROFILE;
        if (rc == 0) rc = record(st, policy, em);
    }
    buf_free(&v);
    return rc;
}

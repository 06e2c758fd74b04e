/* Golden vectors for ring placement (ring.h). Tokens are persisted as the
 * first 8 bytes of storage keys and decide which nodes own a series: if this
 * test fails, data would move. Bump RING_PLACEMENT_VERSION instead. */
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "common/labels.h"

#include "ring/ring.h"
#include "check.h"

static void test_shard_policy(void)
{
    ring_shard_policy_t p = {.default_shards = 4};
    errmsg_t em = {{0}};
    CHECK_EQ_INT(ring_shard_policy_parse(&p, "", &em), 0);
    CHECK_EQ_INT(p.n, 0);
    CHECK_EQ_INT(ring_shards_for(&p, "api"), 4);
    CHECK_EQ_INT(ring_shard_policy_parse(&p, "checkout=16,search.v2=8", &em), 0);
    CHECK_EQ_INT(p.n, 2);
    CHECK_EQ_INT(ring_shards_for(&p, "checkout"), 16);
    CHECK_EQ_INT(ring_shards_for(&p, "search.v2"), 8);
    CHECK_EQ_INT(ring_shards_for(&p, "checkou"), 4);
    CHECK_EQ_INT(ring_shards_for(&p, NULL), 4);
    static const char *bad[] = {"checkout", "=3", "a=0",     "a=4097",
                                "a=1x",     "a=", "a=1,a=2", "a=1,,b=2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        em.text[0] = 0;
        CHECK_EQ_INT(ring_shard_policy_parse(&p, bad[i], &em), ERR_INVALID_ARGUMENT);
        CHECK(strstr(em.text, "service shards") != NULL);
    }
    char many[2048] = "";
    for (int i = 0; i <= RING_MAX_SHARD_OVERRIDES; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%ss%d=2", i ? "," : "", i);
    CHECK_EQ_INT(ring_shard_policy_parse(&p, many, &em), ERR_INVALID_ARGUMENT);
    ring_shard_policy_t z = {0};
    CHECK_EQ_INT(ring_shards_for(&z, "x"), 1);
}

static labels_t *cpu_labels(const char *type, const char *pod)
{
    labels_t *l = labels_new();
    labels_set_str(l, LABEL_NAME, "process_cpu");
    labels_set_str(l, LABEL_PROFILE_TYPE, type);
    labels_set_str(l, LABEL_SERVICE_NAME, "api");
    labels_set_str(l, "pod", pod);
    return l;
}

/* shard-by-profile: the sample types of one profile share a shard key (a
 * golden value: changing it moves data); without it the key is the series
 * id, as before the setting existed. */
static void test_shard_key(void)
{
    labels_t *s0 = cpu_labels("process_cpu:samples:count:cpu:nanoseconds", "p0");
    labels_t *c0 = cpu_labels("process_cpu:cpu:nanoseconds:cpu:nanoseconds", "p0");
    labels_t *c1 = cpu_labels("process_cpu:cpu:nanoseconds:cpu:nanoseconds", "p1");
    ring_shard_policy_t by_series = {.default_shards = 4}, by_profile = by_series;
    by_profile.by_profile = 1;
    CHECK(ring_shard_key(s0, labels_hash(s0), &by_series) == labels_hash(s0));
    CHECK(ring_shard_key(c0, 77, &by_series) == 77);
    uint64_t ks0 = ring_shard_key(s0, labels_hash(s0), &by_profile);
    CHECK(ks0 == ring_shard_key(c0, labels_hash(c0), &by_profile));
    CHECK(ks0 != ring_shard_key(c1, labels_hash(c1), &by_profile));
    CHECK(ks0 == 0x6a913313926bf228ULL);
    /* spread: pods over 4 shards */
    int seen[4] = {0};
    for (int i = 0; i < 400; i++) {
        char pod[16];
        snprintf(pod, sizeof pod, "p%d", i);
        labels_t *l = cpu_labels("t", pod);
        seen[ring_series_shard(ring_shard_key(l, 0, &by_profile), 4)]++;
        labels_free(l);
    }
    for (int i = 0; i < 4; i++)
        CHECK(seen[i] > 60);
    labels_free(s0);
    labels_free(c0);
    labels_free(c1);
}

int main(void)
{
    test_shard_policy();
    test_shard_key();
    CHECK_EQ_INT(RING_PLACEMENT_VERSION, 1);
    uint64_t t0 = ring_placement_token("anonymous", "api", 0);
    uint64_t t1 = ring_placement_token("anonymous", "api", 1);
    uint64_t t2 = ring_placement_token("acme", "api", 0);
    CHECK(t0 != t1 && t0 != t2 && t1 != t2);
    /* separators keep ("ab","c") and ("a","bc") apart */
    CHECK(ring_placement_token("ab", "c", 0) != ring_placement_token("a", "bc", 0));
    CHECK(t0 == 0xf341a8de1349d614ULL);
    CHECK(t2 == 0x6c9e80bac555e856ULL);
    CHECK_EQ_INT(ring_series_shard(0x0123456789abcdefULL, 4), 0);
    CHECK_EQ_INT(ring_series_shard(12345, 1), 0);
    CHECK_EQ_INT(ring_series_shard(12345, 0), 0);
    /* shards spread */
    int seen[4] = {0};
    for (uint64_t i = 0; i < 1000; i++)
        seen[ring_series_shard(i * 0x9e3779b97f4a7c15ULL, 4)]++;
    for (int i = 0; i < 4; i++)
        CHECK(seen[i] > 150);
    return check_exit();
}

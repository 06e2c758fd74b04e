/* Golden vectors for ring placement (ring.h). Tokens are persisted as the
 * first 8 bytes of storage keys and decide which nodes own a series: if this
 * test fails, data would move. Bump RING_PLACEMENT_VERSION instead. */
#include <stdio.h>

#include "ring/ring.h"
#include "check.h"

int main(void)
{
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

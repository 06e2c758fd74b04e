/* placement.h — the placement policy a data directory's series were placed
 * by (internal to node/): shards per service, the per-service overrides and
 * whether a profile's sample types share a shard (--shards-per-service,
 * --service-shards, --shard-by-profile; ring/ring.h).
 *
 * A series' shard, so its token, stack-node table and replicas, follows the
 * policy in force when it was written: the policy must not change once a
 * directory holds data. The first start records it in the directory
 * (storage_setting_put, "placement"); every later start takes the recorded
 * policy for each of the three settings not given explicitly, and refuses
 * to start when one given differs from it while the directory holds series
 * (with none yet, the given policy is recorded instead). A directory that
 * holds series but no record was written before the record existed, when
 * --shard-by-profile defaulted to 0: unless given, that is its policy.
 *
 * Threads: called once at start, before anything reads the policy.
 * Ownership: the policy is the caller's, updated in place.
 */
#ifndef FLAMEDB_NODE_PLACEMENT_H
#define FLAMEDB_NODE_PLACEMENT_H

#include "common/err.h"
#include "ring/ring.h"
#include "storage/storage.h"

/* Which of the three settings were given (flag or environment). */
#define NODE_PLACEMENT_GIVEN_SHARDS 1u     /* --shards-per-service */
#define NODE_PLACEMENT_GIVEN_SERVICES 2u   /* --service-shards */
#define NODE_PLACEMENT_GIVEN_BY_PROFILE 4u /* --shard-by-profile */

/* The policy before the directory recorded it: --shard-by-profile's old default. */
#define NODE_PLACEMENT_LEGACY_BY_PROFILE 0

/* Settles *policy (as configured; given: NODE_PLACEMENT_GIVEN_* bits) with
 * what st records, recording it when st has no record. *recorded is set to
 * 1 when the policy came from st's record, 0 when it was recorded now.
 * ERR_INVALID_ARGUMENT naming the setting,
 * both values and the directory when a given setting differs from the
 * record; storage errors as returned. */
int node_placement_settle(storage_t *st, const char *data_dir, unsigned given,
                          ring_shard_policy_t *policy, int *recorded, errmsg_t *em);

#endif

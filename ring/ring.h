/* ring.h — placement of series on the token ring.
 *
 * Owns the placement scheme: which 64-bit token a series has. A series is
 * placed by (tenant, service_name, shard) where shard = series id mod
 * shards_per_service, so all series of a service share a few tokens (and so a
 * few replica sets). Storage keys start with the token, so one token range is
 * one contiguous key range.
 *
 * The scheme is versioned (RING_PLACEMENT_VERSION) and pinned by golden vectors
 * in tests/unit/test_ring.c: changing it moves data. Membership, token
 * ownership and replica selection live here too once the cluster lands.
 * No state in this part; thread-safe.
 */
#ifndef FLAMEDB_RING_RING_H
#define FLAMEDB_RING_RING_H

#include <stddef.h>
#include <stdint.h>

#define RING_PLACEMENT_VERSION 1
#define RING_DEFAULT_SHARDS_PER_SERVICE 4

/* Shard of a series within its service. */
uint32_t ring_series_shard(uint64_t series_id, uint32_t shards_per_service);

/* Token of (tenant, service_name, shard): XXH3-64 over
 * "v1" 0x00 tenant 0x00 service_name 0x00 shard(u32 big-endian). */
uint64_t ring_placement_token(const char *tenant, const char *service_name, uint32_t shard);

#endif

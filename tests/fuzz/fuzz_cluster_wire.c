/* fuzz_cluster_wire.c — libFuzzer target for the intra-cluster envelope and
 * body decoder (node/cluster/wire_int.h), the first thing that reads bytes
 * from the cluster port.
 *
 * The first input byte picks whether the receiver has a cluster key; the rest
 * is the message. Beyond "no crash, no leak, no UB": a refusal carries a
 * reason; with a key, nothing unsigned is ever accepted; an accepted message
 * has a known type, a checked body (except gossip, which the ring reads) and
 * stays within the decode bound; the same bytes decode the same way twice.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/cluster/wire_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static digest_key_t *key;
    if (key == NULL && digest_key_new("fuzzing cluster secret", 22, &key) != 0) abort();
    if (size < 1) return 0;
    cluster_wire_limits_t lim;
    cluster_wire_limits_default(&lim);
    lim.max_bytes = 1u << 20;
    lim.max_series = 64;
    lim.max_symbols = 4096;
    lim.max_values = 1u << 16;
    cluster_wire_receiver_t to = {"fuzz", (data[0] & 1) ? key : NULL};
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    cluster_msg_t m;
    errmsg_t em = {{0}};
    int rc = cluster_wire_decode_envelope(p, n, &lim, &to, 0, &m, &em);
    if (rc < 0) {
        if (em.text[0] == 0 || m.env != NULL) abort();
        return 0;
    }
    if (to.key != NULL && m.env->auth.len != DIGEST_SHA256_BYTES) abort();
    int is_gossip = m.env->type == FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_GOSSIP;
    rc = cluster_wire_decode_body(&m, &lim, 0, &em);
    if (is_gossip ? rc != ERR_UNSUPPORTED : (rc == 0) != (m.body != NULL)) abort();
    if (rc < 0 && em.text[0] == 0) abort();
    if (m.arena.total >
        (size_t)CLUSTER_WIRE_DECODE_FACTOR * 2 * n + 4 * CLUSTER_WIRE_DECODE_SLACK + (2u << 20))
        abort();
    cluster_msg_free(&m);
    /* deterministic: the same bytes give the same answer */
    cluster_msg_t again;
    int rc2 = cluster_wire_decode(p, n, &lim, &to, 0, &again, &em);
    if ((rc2 == 0) != (rc == 0 && !is_gossip)) abort();
    if (rc2 == 0) cluster_msg_free(&again);
    return 0;
}

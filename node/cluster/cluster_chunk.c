/* cluster_chunk.c — cutting a message into CHUNK envelopes and putting it
 * back together (chunk_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/cluster/chunk_int.h"

#define T(x) FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_##x

/* ---------- splitting ---------- */

static size_t frame_room(const cluster_wire_sender_t *from)
{
    return CLUSTER_CHUNK_ROOM + strlen(from->cluster ? from->cluster : "") +
           strlen(from->node_id ? from->node_id : "");
}

void cluster_chunk_frames_free(cluster_chunk_frames_t *f)
{
    buf_free(&f->bytes);
    free(f->ends);
    f->ends = NULL;
    f->n = 0;
}

int cluster_chunk_split(const cluster_wire_sender_t *from, uint64_t deadline_unix_ms,
                        uint64_t message_id, const uint8_t *msg, size_t len, size_t frame_bytes,
                        cluster_chunk_frames_t *out)
{
    memset(out, 0, sizeof *out);
    size_t room = frame_room(from);
    if (frame_bytes <= 2 * room || len <= frame_bytes) return ERR_INVALID_ARGUMENT;
    size_t piece = frame_bytes - room, n = (len + piece - 1) / piece;
    if (n > UINT32_MAX) return ERR_TOO_LARGE;
    buf_init(&out->bytes, n * frame_bytes);
    if ((out->ends = malloc(n * sizeof *out->ends)) == NULL) return ERR_NOMEM;
    int rc = buf_reserve(&out->bytes, len + n * room);
    for (size_t i = 0; rc == ERR_OK && i < n; i++) {
        Flamedb__Cluster__Chunk c = FLAMEDB__CLUSTER__CHUNK__INIT;
        c.message_id = message_id;
        c.index = (uint32_t)i;
        c.count = (uint32_t)n;
        c.total_bytes = len;
        size_t at = i * piece;
        c.data = (ProtobufCBinaryData){len - at < piece ? len - at : piece, (uint8_t *)msg + at};
        size_t start = out->bytes.len;
        rc = cluster_wire_encode(T(CHUNK), from, deadline_unix_ms, &c.base, &out->bytes);
        if (rc == ERR_OK && out->bytes.len - start > frame_bytes) rc = ERR_INTERNAL;
        out->ends[i] = out->bytes.len;
        out->n = i + 1;
    }
    if (rc != ERR_OK) cluster_chunk_frames_free(out);
    return rc;
}

/* ---------- putting back together ---------- */

static void partial_drop(cluster_chunks_t *cs, size_t i, int counted)
{
    cs->stats.bytes_held -= cs->v[i].bytes.len;
    if (!cs->v[i].skip) cs->stats.bytes_reserved -= cs->v[i].bytes.max;
    if (counted) cs->stats.dropped++;
    buf_free(&cs->v[i].bytes);
    cs->v[i] = cs->v[--cs->n];
}

static cluster_chunk_partial_t *partial_find(cluster_chunks_t *cs, const char *sender,
                                             uint64_t message_id)
{
    for (size_t i = 0; i < cs->n; i++)
        if (cs->v[i].message_id == message_id && strcmp(cs->v[i].sender, sender) == 0)
            return &cs->v[i];
    return NULL;
}

/* Room for a new partial message of sender: its oldest goes past
 * CLUSTER_CHUNK_PARTIALS_PER_SENDER, the oldest of all past the total. */
static int partial_make_room(cluster_chunks_t *cs, const char *sender)
{
    size_t mine = 0, oldest_mine = 0, oldest = 0;
    for (size_t i = 0; i < cs->n; i++) {
        if (cs->v[i].last_ms < cs->v[oldest].last_ms) oldest = i;
        if (strcmp(cs->v[i].sender, sender) != 0) continue;
        if (mine++ == 0 || cs->v[i].last_ms < cs->v[oldest_mine].last_ms) oldest_mine = i;
    }
    if (mine >= CLUSTER_CHUNK_PARTIALS_PER_SENDER)
        partial_drop(cs, oldest_mine, 1);
    else if (cs->n >= CLUSTER_CHUNK_MAX_PARTIALS)
        partial_drop(cs, oldest, 1);
    if (cs->n < cs->cap) return ERR_OK;
    size_t cap = cs->cap ? 2 * cs->cap : 8;
    cluster_chunk_partial_t *v = realloc(cs->v, cap * sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    cs->v = v;
    cs->cap = cap;
    return ERR_OK;
}

static int partial_start(cluster_chunks_t *cs, const char *sender,
                         const Flamedb__Cluster__Chunk *piece, uint64_t now_ms,
                         cluster_chunk_partial_t **out)
{
    int rc = partial_make_room(cs, sender);
    if (rc != ERR_OK) return rc;
    cluster_chunk_partial_t *p = &cs->v[cs->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->sender, sizeof p->sender, "%s", sender);
    p->message_id = piece->message_id;
    p->count = piece->count;
    p->last_ms = now_ms;
    buf_init(&p->bytes, (size_t)piece->total_bytes);
    *out = p;
    if (cs->max_bytes != 0 && (piece->total_bytes > cs->max_bytes ||
                               cs->stats.bytes_reserved > cs->max_bytes - piece->total_bytes)) {
        p->skip = 1;
        cs->stats.over_budget++;
        cs->stats.dropped++;
        return ERR_LIMIT;
    }
    cs->stats.bytes_reserved += p->bytes.max;
    /* the whole at once: it comes from a member, and is not copied as it grows */
    return buf_reserve(&p->bytes, (size_t)piece->total_bytes);
}

/* A piece of a message dropped over max_bytes: passes (the entry goes with
 * the last one). */
static void partial_skip(cluster_chunks_t *cs, cluster_chunk_partial_t *p,
                         const Flamedb__Cluster__Chunk *piece, uint64_t now_ms)
{
    cs->stats.pieces++;
    p->next++;
    p->last_ms = now_ms;
    if (piece->index + 1 == piece->count) partial_drop(cs, (size_t)(p - cs->v), 0);
}

int cluster_chunks_add(cluster_chunks_t *cs, const char *sender,
                       const Flamedb__Cluster__Chunk *piece, uint64_t now_ms, buf_t *whole,
                       errmsg_t *em)
{
    cluster_chunk_partial_t *p = partial_find(cs, sender, piece->message_id);
    if (p != NULL && (piece->index != p->next || piece->count != p->count ||
                      piece->total_bytes != p->bytes.max)) {
        partial_drop(cs, (size_t)(p - cs->v), 1);
        p = NULL;
        if (piece->index != 0)
            return errmsg_set(em, ERR_INVALID_ARGUMENT,
                              "chunk: piece %u of message %llu from %s out of order", piece->index,
                              (unsigned long long)piece->message_id, sender);
    }
    if (p == NULL && piece->index != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "chunk: piece %u of message %llu from %s without its first", piece->index,
                          (unsigned long long)piece->message_id, sender);
    int rc = p == NULL ? partial_start(cs, sender, piece, now_ms, &p) : ERR_OK;
    size_t at = p != NULL ? (size_t)(p - cs->v) : 0;
    if (rc == ERR_LIMIT || (rc == ERR_OK && p->skip)) {
        uint64_t reserved = cs->stats.bytes_reserved;
        partial_skip(cs, p, piece, now_ms);
        if (rc == ERR_OK) return 0;
        return errmsg_set(em, ERR_LIMIT,
                          "chunk: message %llu from %s of %llu bytes dropped: %llu bytes "
                          "of other messages in pieces held, at most %zu "
                          "(chunk-receive-max-bytes)",
                          (unsigned long long)piece->message_id, sender,
                          (unsigned long long)piece->total_bytes, (unsigned long long)reserved,
                          cs->max_bytes);
    }
    if (rc != ERR_OK) {
        if (p != NULL) partial_drop(cs, at, 1);
        return errmsg_set(em, rc, "chunk: out of memory");
    }
    int last = piece->index + 1 == piece->count;
    if (buf_append(&p->bytes, piece->data.data, piece->data.len) == 0)
        cs->stats.bytes_held += piece->data.len;
    else
        last = -1;
    if (last != 0 && p->bytes.len != p->bytes.max) {
        partial_drop(cs, at, 1);
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "chunk: message %llu from %s does not add up to its size",
                          (unsigned long long)piece->message_id, sender);
    }
    cs->stats.pieces++;
    p->next++;
    p->last_ms = now_ms;
    if (!last) return 0;
    cs->stats.messages++;
    buf_free(whole);
    *whole = p->bytes;
    p->bytes = (buf_t){0};
    cs->stats.bytes_held -= whole->len;
    cs->stats.bytes_reserved -= whole->max; /* p's is empty now */
    partial_drop(cs, at, 0);
    return 1;
}

void cluster_chunks_expire(cluster_chunks_t *cs, uint64_t now_ms, uint64_t idle_ms)
{
    for (size_t i = cs->n; i-- > 0;)
        if (now_ms - cs->v[i].last_ms >= idle_ms) partial_drop(cs, i, 1);
}

void cluster_chunks_free(cluster_chunks_t *cs)
{
    while (cs->n > 0)
        partial_drop(cs, cs->n - 1, 0);
    free(cs->v);
    memset(cs, 0, sizeof *cs);
}

/* replicate_past.c — how old the writes a repair mark holds are
 * (replicate_int.h; docs/cluster.md, "Read correctness: repair marks").
 *
 * Anti-entropy compares the seen index over the span of profile times that
 * no replica can have forgotten (repair_span: --seen-retention less
 * --max-future and an hour). A write a replica missed whose profile is
 * older than that (a backfill, or a replica down for longer than the span
 * moves in a while) is never found by a pass, so a pass must lift a mark
 * only when it compared back to the oldest profile time the mark holds;
 * otherwise only a node that restored every range whole (a full repair
 * after the miss) is read from again. This file keeps, per marked node,
 * that oldest profile time, stored (STORAGE_MARK_OLDEST) before the miss
 * itself is (STORAGE_MARK_LOST), so a restart never reads a mark back with
 * a later oldest time than its writes had.
 *
 * Misses are stamped on the pool threads and the marks live on the loop, so
 * the table has its own lock; an entry holds the misses since the mark's
 * last lift (an entry whose latest miss the lift covers starts afresh).
 */
#include <string.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/replicate_int.h"

static uint64_t slack_ms(const replicate_t *r)
{
    return r->o.write_timeout_ms + 1000;
}

int replicate_past_init(replicate_t *r)
{
    return uv_mutex_init(&r->past_mu) == 0 ? 0 : ERR_NOMEM;
}

void replicate_past_free(replicate_t *r)
{
    uv_mutex_destroy(&r->past_mu);
    free(r->past);
}

/* past_mu held: id's entry (created empty when create), or NULL. */
static replicate_past_t *entry_of(replicate_t *r, const char *id, int create)
{
    for (size_t i = 0; i < r->npast; i++)
        if (strcmp(r->past[i].id, id) == 0) return &r->past[i];
    if (!create || GROW(r->past, r->past_cap, r->npast + 1, GROW_UNLIMITED) != 0) return NULL;
    replicate_past_t *e = &r->past[r->npast++];
    memset(e, 0, sizeof *e);
    snprintf(e->id, sizeof e->id, "%s", id);
    return e;
}

/* past_mu held: whether e holds misses its mark's last lift did not cover. */
static int current(const replicate_t *r, const replicate_past_t *e)
{
    return e->latest_ms != 0 && e->latest_ms + slack_ms(r) >= e->repaired_ms;
}

void replicate_past_drop(replicate_t *r, const char *id, int64_t time_s, uint64_t miss_ms)
{
    if (time_s < 1) time_s = 1; /* 0 on the wire says "none" */
    uv_mutex_lock(&r->past_mu);
    replicate_past_t *e = entry_of(r, id, 1);
    int64_t oldest = time_s;
    if (e != NULL && current(r, e) && e->oldest_s < oldest) oldest = e->oldest_s;
    if (e != NULL) {
        e->oldest_s = oldest;
        if (miss_ms > e->latest_ms) e->latest_ms = miss_ms;
    }
    /* stored under the lock, so two drops store their minimum in order; out
     * of memory, the stored time is the epoch: every mark read back needs
     * a whole copy */
    errmsg_t em = {{0}};
    int rc = storage_repair_mark_put(r->storage, STORAGE_MARK_OLDEST, id,
                                     (uint64_t)(e != NULL ? oldest : 1), &em);
    uv_mutex_unlock(&r->past_mu);
    if (rc != 0) log_warn("replicate", "repair mark for %s: %s", id, errmsg_text(&em, rc));
}

void replicate_past_loaded(replicate_t *r, const char *id, int64_t oldest_s)
{
    uv_mutex_lock(&r->past_mu);
    replicate_past_t *e = entry_of(r, id, 1);
    if (e != NULL) e->oldest_s = oldest_s;
    uv_mutex_unlock(&r->past_mu);
}

void replicate_past_marks(replicate_t *r, const char *id, uint64_t lost_ms, uint64_t repaired_ms)
{
    uv_mutex_lock(&r->past_mu);
    replicate_past_t *e = entry_of(r, id, lost_ms != 0);
    if (e != NULL && lost_ms > e->latest_ms) e->latest_ms = lost_ms;
    if (e != NULL && e->oldest_s == 0) e->oldest_s = 1; /* a mark stored with none: unknown */
    if (e != NULL && repaired_ms > e->repaired_ms) e->repaired_ms = repaired_ms;
    uv_mutex_unlock(&r->past_mu);
}

int replicate_past_oldest(replicate_t *r, const char *id, int64_t *oldest_s, uint64_t *latest_ms)
{
    uv_mutex_lock(&r->past_mu);
    replicate_past_t *e = entry_of(r, id, 0);
    int has = e != NULL && current(r, e);
    if (has) {
        *oldest_s = e->oldest_s;
        *latest_ms = e->latest_ms;
    }
    uv_mutex_unlock(&r->past_mu);
    return has;
}

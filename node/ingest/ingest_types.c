/* ingest_types.c — the profile-type name (__name__) of a pprof sample type.
 *
 * Pyroscope's /ingest (pkg/og/convert/pprof, metricName) gives a whole pprof
 * ONE name: "wall" if any sample type is wall, else the first sample type
 * that matches (after renaming by the default display names samples->cpu,
 * goroutine->goroutines, contentions->mutex_count, delay->mutex_duration,
 * or by the client's sample_type_config): contains "cpu" -> process_cpu;
 * contains "alloc_"/"inuse_" or is "space"/"objects" -> memory; "mutex_" ->
 * mutex; "block_" -> block; "goroutines" -> goroutines.
 *
 * flamedb names each sample type on its own, with the same rules, and falls
 * back to the profile level only when the sample type says nothing. So a Go
 * cpu profile is process_cpu:samples:count:cpu:nanoseconds and
 * process_cpu:cpu:nanoseconds:cpu:nanoseconds (as in Pyroscope), while a
 * .NET profile's exception/lock/alloc sample types are not all filed under
 * process_cpu (Pyroscope would). Order, for one sample type st (display name
 * applied), period type pt:
 *   1. contentions/delay with pt "block" -> block; with pt "mutex" -> mutex
 *   2. st itself: "wall"/"wallclock" -> wall; contains "cpu" (any case) ->
 *      process_cpu; alloc_/inuse_/space/objects -> memory; mutex_/lock_ ->
 *      mutex; block_ -> block; goroutine(s) -> goroutines; exception(s) ->
 *      exceptions
 *   3. st matched nothing and the period type or another sample type is wall
 *      -> wall (nodejs samples/count next to wall/nanoseconds, fgprof)
 *   4. st renamed by the default display names, then rule 2 (Go samples ->
 *      cpu -> process_cpu, goroutine, contentions/delay -> mutex)
 *   5. the period type by rule 2 (JFR live/count, period objects -> memory)
 *   6. the other sample types of the profile (Pyroscope's profile-level name)
 *   7. "unknown" (e.g. parca's sample type with empty strings).
 */
#define _GNU_SOURCE /* strcasestr, memrchr, strndup */
#include <string.h>
#include <strings.h>

#include "node/ingest/ingest_int.h"

static bool has(const char *s, const char *sub)
{
    return strstr(s, sub) != NULL;
}

static bool has_ci(const char *s, const char *sub)
{
    return strcasestr(s, sub) != NULL;
}

/* Pyroscope's default display names (tree.DefaultSampleTypeMapping). */
static const char *default_display(const char *st)
{
    if (strcmp(st, "samples") == 0) return "cpu";
    if (strcmp(st, "goroutine") == 0) return "goroutines";
    if (strcmp(st, "contentions") == 0) return "mutex_count";
    if (strcmp(st, "delay") == 0) return "mutex_duration";
    return st;
}

/* Rules 1, 2 and 4 on one string; NULL when nothing matches. */
static const char *by_rules(const char *s)
{
    if (s[0] == 0) return NULL;
    if (strcmp(s, "wall") == 0 || strcmp(s, "wallclock") == 0) return "wall";
    if (has_ci(s, "cpu")) return "process_cpu";
    if (has(s, "alloc_") || has(s, "inuse_") || strcmp(s, "space") == 0 ||
        strcmp(s, "objects") == 0)
        return "memory";
    if (has(s, "mutex_") || has(s, "lock_")) return has(s, "block_") ? "block" : "mutex";
    if (has(s, "block_")) return "block";
    if (has(s, "goroutine")) return "goroutines";
    if (has(s, "exception")) return "exceptions";
    return NULL;
}

static bool is_wall(const char *s)
{
    return s != NULL && (strcmp(s, "wall") == 0 || strcmp(s, "wallclock") == 0);
}

const char *ingest_type_name(const char *st, const char *pt, const char *const *others,
                             size_t nothers)
{
    if ((strcmp(st, "contentions") == 0 || strcmp(st, "delay") == 0) && pt != NULL) {
        if (strcmp(pt, "block") == 0) return "block";
        if (strcmp(pt, "mutex") == 0) return "mutex";
    }
    const char *r = by_rules(st);
    if (r != NULL) return r;
    /* A generic count (samples, sample, time) next to a wall sample type or
     * in a wall period is wall time (Pyroscope: any "wall" makes it wall). */
    bool wall = is_wall(pt);
    for (size_t i = 0; !wall && i < nothers; i++)
        wall = is_wall(others[i]);
    if (wall) return "wall";
    r = by_rules(default_display(st));
    if (r == NULL && pt != NULL) r = by_rules(default_display(pt));
    if (r == NULL && pt != NULL && strcmp(pt, "contentions") == 0) r = "mutex";
    for (size_t i = 0; r == NULL && i < nothers; i++)
        r = by_rules(default_display(others[i]));
    return r ? r : "unknown";
}

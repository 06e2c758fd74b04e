/* json.h — the one bounded JSON reader (pull style, no tree).
 *
 * Owns: reading JSON text front to back: whitespace, strings (one escape
 * behaviour: \" \\ \/ \b \f \n \r \t and \uXXXX, surrogate pairs joined, a lone
 * surrogate becomes U+FFFD), scalars (numbers, true, false, null, read as their
 * text) and the structure of objects and arrays. The caller walks the shape it
 * expects and skips the rest with json_skip().
 *
 * Bounds are the caller's: json_limits_t caps nesting (json_skip and the
 * enter/next pairs count depth, so hostile nesting cannot exhaust the stack)
 * and the decoded length of any one string. Input is borrowed for the reader's
 * lifetime; the reader allocates nothing (strings go to caller-owned buffers).
 * A json_t is one cursor: not thread-safe, but readers share nothing.
 *
 * Errors: ERR_UNPARSEABLE for malformed text (also for nesting past the
 * depth limit), ERR_TOO_LARGE for a string past max_string or a full buf_t,
 * ERR_NOMEM when a buf_t cannot grow. json_offset() says where it stopped.
 */
#ifndef FLAMEDB_COMMON_JSON_H
#define FLAMEDB_COMMON_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef struct json_limits {
    int max_depth;     /* open objects/arrays at once (at most 64) */
    size_t max_string; /* decoded bytes of one string */
} json_limits_t;

typedef struct json {
    const char *start, *p, *end;
    int depth;        /* open containers */
    uint64_t objects; /* bit d set: the container at depth d is an object */
    bool first;       /* the next json_next() is the first of its container */
    json_limits_t lim;
} json_t;

/* What the next value is, by its first byte (after whitespace). */
typedef enum json_kind {
    JSON_END,    /* no more input */
    JSON_OBJECT, /* { */
    JSON_ARRAY,  /* [ */
    JSON_STRING,
    JSON_NULL,
    JSON_SCALAR, /* number, true, false */
    JSON_BAD,    /* anything else */
} json_kind_t;

void json_init(json_t *j, const void *p, size_t n, json_limits_t lim);
json_kind_t json_peek(json_t *j);
/* Byte offset of the cursor from the start of the input. */
size_t json_offset(const json_t *j);
/* 0 when only whitespace is left, else ERR_UNPARSEABLE. */
int json_finish(json_t *j);

/* Reads a string, decoded, appended to out (out may be NULL to skip it). */
int json_string(json_t *j, buf_t *out);
/* Reads a string into dst (cap > 0): decoded, NUL-terminated, truncated to
 * cap - 1 bytes (the whole string is still consumed). */
int json_string_to(json_t *j, char *dst, size_t cap);
/* Reads a string (decoded) or a bare scalar (its text) into dst, truncated
 * like json_string_to. Objects and arrays are ERR_UNPARSEABLE. */
int json_scalar_to(json_t *j, char *dst, size_t cap);
/* Skips one value of any kind, nesting bounded by max_depth. */
int json_skip(json_t *j);

/* Walking containers. json_enter(j, '{' or '[') consumes the opening bracket;
 * then json_next(j, &rc) is true while there is another member (it consumes
 * the separating comma) and false at the closing bracket (consumed) or on an
 * error (rc set). In an object each member starts with json_key(). */
int json_enter(json_t *j, char open);
bool json_next(json_t *j, int *rc);
/* Reads a member name into key (truncated like json_string_to) and the ':'. */
int json_key(json_t *j, char *key, size_t cap);

#endif

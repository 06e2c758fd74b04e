/* err.h — the one error space of flamedb.
 *
 * Every fallible function returns int: 0 (ERR_OK) on success, a negative ERR_*
 * code on failure. Codes come from one X-macro table that also gives each code a
 * stable machine name (used as the JSON "code" of HTTP error bodies), a default
 * message and the HTTP status it maps to. Foreign errors (RocksDB errptr,
 * nanomsg nn_errno, zstd, libdeflate, protobuf-c) are translated at the one
 * boundary per dependency that calls them.
 *
 * errmsg_t carries a human-readable reason next to the code ("parameter 'from':
 * not a time"); it is a caller-owned fixed buffer, so setting it never allocates.
 * Thread-safe: no state.
 */
#ifndef FLAMEDB_COMMON_ERR_H
#define FLAMEDB_COMMON_ERR_H

#include <stddef.h>

/*   name              value  json code              http  message */
#define ERR_TABLE(X)                                                                               \
    X(OK, 0, "ok", 200, "ok")                                                                      \
    X(NOMEM, -1, "out_of_memory", 500, "out of memory")                                            \
    X(INVALID_ARGUMENT, -2, "invalid_parameter", 400, "invalid parameter")                         \
    X(TOO_LARGE, -3, "too_large", 413, "input too large")                                          \
    X(UNPARSEABLE, -4, "unparseable", 422, "input could not be parsed")                            \
    X(LIMIT, -5, "limit_exceeded", 429, "a limit was exceeded")                                    \
    X(NOT_FOUND, -6, "not_found", 404, "not found")                                                \
    X(IO, -7, "io_error", 500, "storage or file error")                                            \
    X(UNAVAILABLE, -8, "unavailable", 503, "not enough replicas available")                        \
    X(TIMEOUT, -9, "timeout", 504, "deadline exceeded")                                            \
    X(INTERNAL, -10, "internal", 500, "internal error")                                            \
    X(CORRUPT, -11, "corrupt", 500, "stored data is corrupt")                                      \
    X(UNSUPPORTED, -12, "unsupported", 400, "unsupported")                                         \
    X(METHOD, -13, "method_not_allowed", 405, "method not allowed")                                \
    X(UNAUTHORIZED, -14, "unauthorized", 401, "unauthorized")                                      \
    X(FORBIDDEN, -15, "forbidden", 403, "forbidden")                                               \
    X(OVER_LIMIT, -16, "over_limit", 422, "input over a limit")                                    \
    X(CONFLICT, -17, "conflict", 409, "the node's state does not allow it")

enum err_code {
#define ERR_ENUM(name, value, code, http, msg) ERR_##name = value,
    ERR_TABLE(ERR_ENUM)
#undef ERR_ENUM
};

/* Machine name of an error ("invalid_parameter"); static string. */
const char *err_code_name(int err);
/* Default human message of an error; static string. */
const char *err_message(int err);
/* HTTP status an error maps to (500 for unknown codes). */
int err_http_status(int err);

#define ERRMSG_MAX 512

/* A reason to go with an error code. Caller-owned; zero-initialise before use. */
typedef struct errmsg {
    char text[ERRMSG_MAX];
} errmsg_t;

/* Formats a reason into em (truncating) and returns err, so callers can write
 * `return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'from': %s", s);`.
 * em may be NULL. */
int errmsg_set(errmsg_t *em, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Text of em, or err's default message when em is NULL or empty; borrowed. */
const char *errmsg_text(const errmsg_t *em, int err);

#endif

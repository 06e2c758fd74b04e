/* log.h — leveled logging to stderr.
 *
 * The log level is the only process-wide state besides the allocator tuning
 * (common/alloc.h); everything else belongs to a handle. Lines are
 * "ts level module: message" (UTC, milliseconds), cut at 2048 bytes.
 * Thread-safe: each line is one write(2).
 */
#ifndef FLAMEDB_COMMON_LOG_H
#define FLAMEDB_COMMON_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

void log_set_level(enum log_level level);
/* Parses "debug|info|warn|error"; returns 0 or ERR_INVALID_ARGUMENT. */
int log_parse_level(const char *s, enum log_level *out);
void log_write(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(mod, ...) log_write(LOG_DEBUG, mod, __VA_ARGS__)
#define log_info(mod, ...) log_write(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_write(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_write(LOG_ERROR, mod, __VA_ARGS__)

#endif

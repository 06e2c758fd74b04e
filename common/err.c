/* err.c — tables behind err.h. */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>

#define ERR_FIND(field)                                                                            \
    switch (err) {                                                                                 \
        ERR_TABLE(ERR_CASE_##field)                                                                \
    default:                                                                                       \
        break;                                                                                     \
    }

#define ERR_CASE_code(name, value, code, http, msg)                                                \
    case value:                                                                                    \
        return code;
#define ERR_CASE_http(name, value, code, http, msg)                                                \
    case value:                                                                                    \
        return http;
#define ERR_CASE_msg(name, value, code, http, msg)                                                 \
    case value:                                                                                    \
        return msg;

const char *err_code_name(int err)
{
    ERR_FIND(code)
    return "internal";
}

const char *err_message(int err)
{
    ERR_FIND(msg)
    return "unknown error";
}

int err_http_status(int err)
{
    ERR_FIND(http)
    return 500;
}

int errmsg_set(errmsg_t *em, int err, const char *fmt, ...)
{
    if (em != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(em->text, sizeof em->text, fmt, ap);
        va_end(ap);
    }
    return err;
}

const char *errmsg_text(const errmsg_t *em, int err)
{
    if (em != NULL && em->text[0] != '\0') return em->text;
    return err_message(err);
}

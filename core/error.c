/* The thread-local last-error message behind sprig_last_error(). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sp_error.h"

#define SP_ERROR_CAP 8192

static _Thread_local char sp_message[SP_ERROR_CAP];

const char *sprig_last_error(void) { return sp_message; }

const char *sprig_status_name(sprig_status s) {
    switch (s) {
    case SPRIG_OK: return "ok";
    case SPRIG_E_INVALID: return "invalid argument";
    case SPRIG_E_TEMPLATE: return "template error";
    case SPRIG_E_COMPILE: return "compile error";
    case SPRIG_E_NO_DRIVER: return "no CUDA driver";
    case SPRIG_E_NO_DEVICE: return "no CUDA device";
    case SPRIG_E_CUDA: return "CUDA error";
    case SPRIG_E_IO: return "I/O error";
    case SPRIG_E_FORMAT: return "malformed file";
    case SPRIG_E_NOMEM: return "out of memory";
    case SPRIG_E_VERIFY: return "verification failed";
    case SPRIG_E_INTERNAL: return "internal error";
    }
    return "unknown status";
}

sprig_status sp_fail(sprig_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sp_message, sizeof sp_message, fmt, ap);
    va_end(ap);
    return status;
}

sprig_status sp_wrap(sprig_status status, const char *fmt, ...) {
    char old[SP_ERROR_CAP];
    memcpy(old, sp_message, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sp_message, sizeof sp_message, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof sp_message)
        snprintf(sp_message + n, sizeof sp_message - (size_t)n, ": %s", old);
    return status;
}

/* Internal interface of core/ (used by every layer above it; not installed).
 *
 * Error reporting, one macro family for every library (after ggml).
 * A failing call records "what: `statement` at file:line" in a thread-local
 * buffer and returns a sprig_status up the stack; nothing exits or aborts. */
#ifndef SP_ERROR_H
#define SP_ERROR_H

#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* Records a formatted message and returns status, so callers write
 * `return sp_fail(SPRIG_E_INVALID, "g=%d does not divide f=%d", g, f);` */
sprig_status sp_fail(sprig_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prepends context to the current message ("compiling x: <old message>"). */
sprig_status sp_wrap(sprig_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define SP_TRY(expr)                                  \
    do {                                              \
        sprig_status sp_try_s_ = (expr);              \
        if (sp_try_s_ != SPRIG_OK) return sp_try_s_;  \
    } while (0)

/* A library call's result: anything but `ok` records "<lib> error <name>:
 * `statement` at file:line" and returns status. Each library's alias lives
 * beside its loader: SP_CHECK_NVRTC (gen/compile.c), SP_CHECK_CU
 * (exec/sp_cuda.h). */
#define SP_CHECK_RESULT(status, lib, type, ok, name_of, stmt)                            \
    do {                                                                                \
        type sp_r_ = (stmt);                                                            \
        if (sp_r_ != (ok))                                                              \
            return sp_fail(status, lib " error %s: `%s` at %s:%d", name_of(sp_r_), #stmt, \
                           __FILE__, __LINE__);                                         \
    } while (0)

/* Allocation: NULL becomes SPRIG_E_NOMEM naming the statement. */
#define SP_CHECK_ALLOC(ptr)                                                         \
    do {                                                                            \
        if ((ptr) == NULL)                                                          \
            return sp_fail(SPRIG_E_NOMEM, "out of memory: `%s` at %s:%d", #ptr,     \
                           __FILE__, __LINE__);                                     \
    } while (0)

#pragma GCC visibility pop
#endif

/* Internal error reporting, one macro family for every library (after ggml).
 * A failing call records "what: `statement` at file:line" in a thread-local
 * buffer and returns a sprig_status up the stack; nothing exits or aborts. */
#ifndef SP_ERROR_H
#define SP_ERROR_H

#include "sprig.h"

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

/* NVRTC results: the message carries nvrtcGetErrorString, the statement, file and line. */
#define SP_CHECK_NVRTC(stmt)                                                        \
    do {                                                                            \
        nvrtcResult sp_r_ = (stmt);                                                 \
        if (sp_r_ != NVRTC_SUCCESS)                                                 \
            return sp_fail(SPRIG_E_COMPILE, "NVRTC error %s: `%s` at %s:%d",        \
                           nvrtcGetErrorString(sp_r_), #stmt, __FILE__, __LINE__);  \
    } while (0)

/* CUDA driver results (through the dlopen'ed table, see runtime/sp_cuda.h). */
#define SP_CHECK_CU(stmt)                                                           \
    do {                                                                            \
        CUresult sp_r_ = (stmt);                                                    \
        if (sp_r_ != CUDA_SUCCESS)                                                  \
            return sp_fail(SPRIG_E_CUDA, "CUDA error %s: `%s` at %s:%d",            \
                           sp_cu_error_name(sp_r_), #stmt, __FILE__, __LINE__);     \
    } while (0)

/* cuBLAS results. */
#define SP_CHECK_CUBLAS(stmt)                                                       \
    do {                                                                            \
        cublasStatus_t sp_r_ = (stmt);                                              \
        if (sp_r_ != CUBLAS_STATUS_SUCCESS)                                         \
            return sp_fail(SPRIG_E_CUDA, "cuBLAS error %d: `%s` at %s:%d",          \
                           (int)sp_r_, #stmt, __FILE__, __LINE__);                  \
    } while (0)

/* Allocation: NULL becomes SPRIG_E_NOMEM naming the statement. */
#define SP_CHECK_ALLOC(ptr)                                                         \
    do {                                                                            \
        if ((ptr) == NULL)                                                          \
            return sp_fail(SPRIG_E_NOMEM, "out of memory: `%s` at %s:%d", #ptr,     \
                           __FILE__, __LINE__);                                     \
    } while (0)

#endif

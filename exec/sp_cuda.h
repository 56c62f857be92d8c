/* The CUDA driver API, loaded at run time with dlopen so that sprig builds,
 * renders and compiles on machines with no GPU and no driver.
 *
 * Usage: `SP_TRY(sp_cuda_load());` once (cheap after the first call), then
 * `SP_CHECK_CU(sp_cu.cuMemAlloc(&p, n));`. The member names are the cuda.h
 * names, and cuda.h's own macros (cuMemAlloc -> cuMemAlloc_v2, ...) rename
 * both the member and every use, so each slot holds exactly the versioned
 * entry point the header's prototype describes. Every file that touches
 * sp_cu must include this header (it includes cuda.h). */
#ifndef SP_CUDA_H
#define SP_CUDA_H

#include <cuda.h>

#include "sp_error.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* Every driver entry point sprig uses. Types come from cuda.h via typeof, so
 * a prototype change in the toolkit is a compile error, not a silent ABI bug. */
#define SP_CU_FUNCS(X)                                                             \
    X(cuGetErrorName) X(cuInit) X(cuDriverGetVersion)                              \
    X(cuDeviceGetCount) X(cuDeviceGet) X(cuDeviceGetName) X(cuDeviceGetAttribute)  \
    X(cuDeviceTotalMem)                                                            \
    X(cuDevicePrimaryCtxRetain) X(cuDevicePrimaryCtxRelease)                       \
    X(cuCtxSetCurrent) X(cuCtxSynchronize) X(cuMemGetInfo)                         \
    X(cuModuleLoadData) X(cuModuleLoadDataEx) X(cuModuleUnload)                    \
    X(cuModuleGetFunction) X(cuFuncGetAttribute) X(cuFuncSetAttribute)             \
    X(cuLaunchKernel) X(cuLaunchKernelEx)                                          \
    X(cuMemAlloc) X(cuMemFree) X(cuMemcpyHtoD) X(cuMemcpyDtoH) X(cuMemcpyDtoD)    \
    X(cuMemsetD8)                                                                  \
    X(cuStreamCreate) X(cuStreamDestroy) X(cuStreamSynchronize)                    \
    X(cuEventCreate) X(cuEventRecord) X(cuEventSynchronize) X(cuEventElapsedTime)  \
    X(cuEventDestroy)                                                              \
    X(cuStreamBeginCapture) X(cuStreamEndCapture) X(cuGraphInstantiate)            \
    X(cuGraphLaunch) X(cuGraphExecDestroy) X(cuGraphDestroy)

#define SP_CU_MEMBER(name) __typeof__(name) *name;
typedef struct sp_cuda_api {
    SP_CU_FUNCS(SP_CU_MEMBER)
} sp_cuda_api;
#undef SP_CU_MEMBER

/* The resolved table; valid (every member non-NULL) once sp_cuda_load() has
 * returned SPRIG_OK. */
extern sp_cuda_api sp_cu;

/* dlopens libcuda.so.1 (then libcuda.so) and resolves the table, once per
 * process (pthread_once). SPRIG_E_NO_DRIVER, with the loader's reason, when
 * the library or one of its entry points is missing. Does not call cuInit. */
sprig_status sp_cuda_load(void);

/* sp_cuda_load() plus cuInit(0), mapping its failures to statuses:
 * SPRIG_E_NO_DEVICE when the driver reports no GPU, SPRIG_E_NO_DRIVER when
 * the driver is a stub, too old for the toolkit, or otherwise unusable. */
sprig_status sp_cuda_init(void);

/* The symbol names sp_cuda_load hands to dlsym, in table order (the
 * versioned ones cuda.h maps each name to: "cuMemAlloc_v2", ...), so a test
 * can pin them without a driver. Stores at most cap names; returns the count
 * of table entries. */
int sp_cuda_symbol_names(const char **names, int cap);

/* "CUDA_ERROR_OUT_OF_MEMORY" etc. Always a valid string, also when the
 * driver is not loaded (then "CUresult <n>"). */
const char *sp_cu_error_name(CUresult r);

/* CUDA driver results: "CUDA error CUDA_ERROR_...: `statement` at file:line". */
#define SP_CHECK_CU(stmt) SP_CHECK_RESULT(SPRIG_E_CUDA, "CUDA", CUresult, CUDA_SUCCESS, sp_cu_error_name, stmt)

#pragma GCC visibility pop
#endif

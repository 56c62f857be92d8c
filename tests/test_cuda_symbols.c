/* The names sprig hands to dlsym, pinned without a GPU.
 *
 * libcuda exports several generations of many entry points under different
 * names: "cuMemAlloc" is the CUDA 3.x one with 32-bit sizes, "cuMemAlloc_v2"
 * the one cuda.h's prototype describes; "cuGraphInstantiate" takes five
 * arguments, cuda.h's cuGraphInstantiate is "cuGraphInstantiateWithFlags"
 * with three. Resolving the wrong one links and loads fine and then corrupts
 * arguments on the first call. test_cuda_stub shows every name resolves; this
 * test shows each is the right generation:
 *   - the driver table (exec/sp_cuda.h): the strings sp_cuda_load passes to
 *     dlsym equal the versioned names listed here by hand (from cuda.h 13.0:
 *     `#define cuMemAlloc cuMemAlloc_v2`, ...), in table order, and each
 *     member's type is the prototype of that versioned symbol (compile time);
 *     the per-thread-default-stream variants (_ptds/_ptsz) would fail here too,
 *     which matters since exec_cuda.c relies on the legacy default stream;
 *   - the cuBLAS table (tuner/bench_cublas.c): the same for cublas_v2.h's
 *     names, and, where libcublas is installed (no GPU needed to load it),
 *     every name resolves in it. */
#include <stdio.h>
#include <string.h>

#include <cublas_v2.h>

#include "sp_bench.h"
#include "sp_cuda.h"
#include "test_util.h"

/* (name in cuda.h, the symbol it must resolve to), in SP_CU_FUNCS order. */
#define EXPECTED_CU(E)                                                                                  \
    E(cuGetErrorName, cuGetErrorName) E(cuInit, cuInit) E(cuDriverGetVersion, cuDriverGetVersion)         \
    E(cuDeviceGetCount, cuDeviceGetCount) E(cuDeviceGet, cuDeviceGet) E(cuDeviceGetName, cuDeviceGetName) \
    E(cuDeviceGetAttribute, cuDeviceGetAttribute) E(cuDeviceTotalMem, cuDeviceTotalMem_v2)                \
    E(cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain)                                                 \
    E(cuDevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease_v2) E(cuCtxSetCurrent, cuCtxSetCurrent)        \
    E(cuCtxSynchronize, cuCtxSynchronize) E(cuMemGetInfo, cuMemGetInfo_v2)                                \
    E(cuModuleLoadData, cuModuleLoadData) E(cuModuleLoadDataEx, cuModuleLoadDataEx)                       \
    E(cuModuleUnload, cuModuleUnload) E(cuModuleGetFunction, cuModuleGetFunction)                        \
    E(cuFuncGetAttribute, cuFuncGetAttribute) E(cuFuncSetAttribute, cuFuncSetAttribute)                   \
    E(cuLaunchKernel, cuLaunchKernel) E(cuLaunchKernelEx, cuLaunchKernelEx) E(cuMemAlloc, cuMemAlloc_v2) E(cuMemFree, cuMemFree_v2)             \
    E(cuMemcpyHtoD, cuMemcpyHtoD_v2) E(cuMemcpyDtoH, cuMemcpyDtoH_v2) E(cuMemcpyDtoD, cuMemcpyDtoD_v2)    \
    E(cuMemsetD8, cuMemsetD8_v2) E(cuStreamCreate, cuStreamCreate) E(cuStreamDestroy, cuStreamDestroy_v2) \
    E(cuStreamSynchronize, cuStreamSynchronize) E(cuEventCreate, cuEventCreate)                           \
    E(cuEventRecord, cuEventRecord) E(cuEventSynchronize, cuEventSynchronize)                             \
    E(cuEventElapsedTime, cuEventElapsedTime_v2) E(cuEventDestroy, cuEventDestroy_v2)                     \
    E(cuStreamBeginCapture, cuStreamBeginCapture_v2) E(cuStreamEndCapture, cuStreamEndCapture)            \
    E(cuGraphInstantiate, cuGraphInstantiateWithFlags) E(cuGraphLaunch, cuGraphLaunch)                    \
    E(cuGraphExecDestroy, cuGraphExecDestroy) E(cuGraphDestroy, cuGraphDestroy)

/* `#api` and `#sym` are not macro-expanded: the names as written above. */
#define CU_ROW(api, sym) {#api, #sym},
static const char *const kExpectedCu[][2] = {EXPECTED_CU(CU_ROW)};

/* Each slot's type is exactly a pointer to the versioned symbol's prototype
 * (sp_cu.api expands to the member cuda.h renames it to). */
#define CU_TYPE(api, sym)                                                                     \
    _Static_assert(__builtin_types_compatible_p(__typeof__(sp_cu.api), __typeof__(&sym)), \
                   #api " must be typed as " #sym);
EXPECTED_CU(CU_TYPE)

static const char *const kExpectedCublas[] = {"cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2",
                                              "cublasGemmEx"};

static void test_driver_names(void) {
    const int want = (int)(sizeof kExpectedCu / sizeof kExpectedCu[0]);
    const char *names[128];
    const int n = sp_cuda_symbol_names(names, 128);
    CHECK_MSG(n == want, "the driver table has %d entries, the expected list %d", n, want);
    CHECK_MSG((size_t)n * sizeof(void *) == sizeof(sp_cuda_api), "the name list (%d) and the table (%zu slots) differ",
              n, sizeof(sp_cuda_api) / sizeof(void *));
    for (int i = 0; i < n && i < want; ++i)
        CHECK_MSG(!strcmp(names[i], kExpectedCu[i][1]), "entry %d (%s): dlsym gets \"%s\", cuda.h means \"%s\"", i,
                  kExpectedCu[i][0], names[i], kExpectedCu[i][1]);
    printf("test_cuda_symbols: %d driver entry points named as cuda.h versions them\n", n);
}

static void test_cublas_names(void) {
    const int want = (int)(sizeof kExpectedCublas / sizeof kExpectedCublas[0]);
    const char *names[16];
    const int n = sp_cublas_symbol_names(names, 16);
    CHECK_MSG(n == want, "the cuBLAS table has %d entries, the expected list %d", n, want);
    for (int i = 0; i < n && i < want; ++i)
        CHECK_MSG(!strcmp(names[i], kExpectedCublas[i]), "cuBLAS entry %d: dlsym gets \"%s\", cublas_v2.h means \"%s\"",
                  i, names[i], kExpectedCublas[i]);
    /* Loading libcublas needs no GPU; where it is installed every name must resolve. */
    sprig_status s = sp_cublas_load();
    if (s == SPRIG_OK) {
        printf("test_cuda_symbols: libcublas loaded, its %d entry points resolved\n", n);
    } else {
        CHECK_MSG(s == SPRIG_E_NO_DRIVER && sp_contains(sprig_last_error(), "cannot load"),
                  "libcublas loads but: %s", sprig_last_error());
        printf("test_cuda_symbols: no libcublas here (%s); names checked only\n", sprig_last_error());
    }
}

int main(void) {
    test_driver_names();
    test_cublas_names();
    return sp_test_finish("test_cuda_symbols", 0);
}

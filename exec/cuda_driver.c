/* Run-time loading of libcuda (see sp_cuda.h): one dlopen per process, a
 * table of resolved entry points, and the mapping of "no driver / no GPU"
 * conditions to statuses that callers can report as information. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "sp_cuda.h"
#include "sp_error.h"

sp_cuda_api sp_cu;

/* Two-step stringification: the argument is macro-expanded first, so
 * SP_CU_STR(cuMemAlloc) is "cuMemAlloc_v2", the symbol the header means. */
#define SP_CU_STR_(x) #x
#define SP_CU_STR(x) SP_CU_STR_(x)

/* The names handed to dlsym, in table order (sp_cuda_symbol_names shows them). */
#define SP_CU_NAME(name) SP_CU_STR(name),
static const char *const cu_names[] = {SP_CU_FUNCS(SP_CU_NAME)};
#undef SP_CU_NAME
#define CU_N_FUNCS ((int)(sizeof cu_names / sizeof cu_names[0]))
_Static_assert(sizeof(sp_cuda_api) == sizeof cu_names / sizeof cu_names[0] * sizeof(void (*)(void)),
               "one name per slot of sp_cuda_api");

static pthread_once_t cu_once = PTHREAD_ONCE_INIT;
static void *cu_lib;
static sprig_status cu_load_status;
static char cu_load_message[1024];

/* A few versioned entry points are newer than drivers still in service
 * (cuEventElapsedTime_v2 arrived with 12.8); their older names have the
 * same signature and are tried when the versioned one is absent. */
static void *cu_sym_fallback(const char *wanted) {
    static const char *const older[][2] = {
        {"cuEventElapsedTime_v2", "cuEventElapsedTime"},
    };
    for (size_t i = 0; i < sizeof older / sizeof older[0]; ++i)
        if (!strcmp(wanted, older[i][0])) return dlsym(cu_lib, older[i][1]);
    return NULL;
}

/* Entry points sprig runs without (left NULL where the driver lacks them):
 * cuLaunchKernelEx (12.0) only serves programmatic dependent launch, which
 * the CUDA executor then leaves off. */
static int cu_optional(const char *name) { return !strcmp(name, "cuLaunchKernelEx"); }

static int cu_resolve(void **slot, const char *name) {
    *slot = dlsym(cu_lib, name);
    if (!*slot) *slot = cu_sym_fallback(name);
    if (*slot || cu_optional(name)) return 1;
    snprintf(cu_load_message, sizeof cu_load_message,
             "the CUDA driver library lacks %s (driver older than this build of sprig expects?)", name);
    return 0;
}

static void cu_load_once(void) {
    const char *tried[] = {"libcuda.so.1", "libcuda.so"};
    char reasons[768] = "";
    for (size_t i = 0; i < 2 && !cu_lib; ++i) {
        cu_lib = dlopen(tried[i], RTLD_NOW | RTLD_LOCAL);
        if (!cu_lib) {
            const char *why = dlerror();
            size_t used = strlen(reasons);
            snprintf(reasons + used, sizeof reasons - used, "%s%s", used ? "; " : "", why ? why : tried[i]);
        }
    }
    if (!cu_lib) {
        cu_load_status = SPRIG_E_NO_DRIVER;
        snprintf(cu_load_message, sizeof cu_load_message, "cannot load libcuda: %s", reasons);
        return;
    }
    int ok = 1;
#define SP_CU_SLOT(name) (void **)&sp_cu.name,
    void **const slots[] = {SP_CU_FUNCS(SP_CU_SLOT)};
#undef SP_CU_SLOT
    for (int i = 0; i < CU_N_FUNCS && ok; ++i) ok = cu_resolve(slots[i], cu_names[i]);
    if (!ok) {
        memset(&sp_cu, 0, sizeof sp_cu);
        dlclose(cu_lib);
        cu_lib = NULL;
        cu_load_status = SPRIG_E_NO_DRIVER;
        return;
    }
    cu_load_status = SPRIG_OK;
}

int sp_cuda_symbol_names(const char **names, int cap) {
    for (int i = 0; i < CU_N_FUNCS && i < cap; ++i) names[i] = cu_names[i];
    return CU_N_FUNCS;
}

sprig_status sp_cuda_load(void) {
    pthread_once(&cu_once, cu_load_once);
    /* The message is recorded per call: sprig_last_error() is thread-local. */
    if (cu_load_status != SPRIG_OK) return sp_fail(cu_load_status, "%s", cu_load_message);
    return SPRIG_OK;
}

sprig_status sp_cuda_init(void) {
    SP_TRY(sp_cuda_load());
    CUresult r = sp_cu.cuInit(0);
    switch (r) {
    case CUDA_SUCCESS:
        return SPRIG_OK;
    case CUDA_ERROR_NO_DEVICE:
        return sp_fail(SPRIG_E_NO_DEVICE, "the CUDA driver reports no GPU (cuInit: CUDA_ERROR_NO_DEVICE)");
    case CUDA_ERROR_STUB_LIBRARY:
        return sp_fail(SPRIG_E_NO_DRIVER, "libcuda is the toolkit's stub library, not a real driver "
                                          "(cuInit: CUDA_ERROR_STUB_LIBRARY)");
    default:
        /* Insufficient driver, driver/library mismatch, no kernel module...:
         * every one means there is no usable driver. */
        return sp_fail(SPRIG_E_NO_DRIVER, "the CUDA driver failed to initialise (cuInit: %s)",
                       sp_cu_error_name(r));
    }
}

const char *sp_cu_error_name(CUresult r) {
    static _Thread_local char unknown[32];
    const char *name = NULL;
    if (sp_cu.cuGetErrorName && sp_cu.cuGetErrorName(r, &name) == CUDA_SUCCESS && name) return name;
    if (r == CUDA_SUCCESS) return "CUDA_SUCCESS";
    snprintf(unknown, sizeof unknown, "CUresult %d", (int)r);
    return unknown;
}

/* One GPU, the modules loaded on it, and launching a plan's kernels.
 *
 * Threading: sp_device_open makes the device's (primary) context current on
 * the calling thread; another thread must call sp_device_make_current before
 * any other call here. Buffer helpers act on the current context. */
#ifndef SP_DEVICE_H
#define SP_DEVICE_H

#include <stddef.h>

#include "sp_cuda.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* What sprig needs to know about a GPU (tuning-database key, roofs, launch limits). */
typedef struct sp_device_props {
    int ordinal;
    char name[256];
    int cc_major, cc_minor;   /* compute capability: 9.0 -> 9, 0 */
    int sm_count;
    int l2_bytes;
    size_t total_mem_bytes;
    int clock_khz;            /* SM clock (0 if the driver no longer reports it) */
    int mem_clock_khz;        /* 0 if not reported */
    int mem_bus_bits;         /* 0 if not reported */
    int smem_per_block_optin; /* largest dynamic + static shared memory one CTA may opt in to */
    int driver_version;       /* cuDriverGetVersion: 12040 = CUDA 12.4 */
} sp_device_props;

typedef struct sp_device {
    CUdevice dev;
    CUcontext ctx;            /* the retained primary context */
    sp_device_props props;
} sp_device;

/* Loads the driver, cuInit, and counts GPUs. SPRIG_E_NO_DRIVER / SPRIG_E_NO_DEVICE
 * (with the reason in sprig_last_error) when there is nothing to use; a count
 * of 0 is reported as SPRIG_E_NO_DEVICE too. */
sprig_status sp_device_count(int *count);

/* The driver's CUDA version (cuDriverGetVersion: 12040 = 12.4), or 0 when no
 * driver can be loaded or it does not say. */
int sp_driver_version(void);

/* Properties of GPU `ordinal` without creating a context (for `sprig info`). */
sprig_status sp_device_query(int ordinal, sp_device_props *props);

/* Opens GPU `ordinal`: retains its primary context and makes it current.
 * The caller owns *out and releases it with sp_device_close. */
sprig_status sp_device_open(sp_device **out, int ordinal);
/* Releases the primary context and frees dev (NULL is a no-op). Buffers and
 * modules of this device must be freed first. */
void sp_device_close(sp_device *dev);
sprig_status sp_device_make_current(const sp_device *dev);
/* Waits for all work on the device's context; reports asynchronous errors
 * (an illegal address in a kernel shows up here). */
sprig_status sp_device_sync(const sp_device *dev);

/* "sm_90": the architecture to compile for on this device. */
void sp_device_arch(const sp_device *dev, char *buf, size_t cap);

/* ---- modules ----------------------------------------------------------------- */
#define SP_MODULE_MAX_FUNCS (2 * SPRIG_MAX_KERNELS)

typedef struct sp_module_func {
    char name[64];
    CUfunction fn;
    int smem_limit;           /* max dynamic smem allowed now (the driver's: 48 KiB less static, until raised) */
} sp_module_func;

typedef struct sp_module {
    const sp_device *dev;
    CUmodule mod;
    int n_funcs;
    sp_module_func funcs[SP_MODULE_MAX_FUNCS]; /* resolved on demand, by name */
} sp_module;

/* Loads a compiled binary (cubin, or PTX the driver JIT-compiles) into the
 * current context and resolves every kernel the binary names. The caller owns
 * *out (free with sp_module_unload); bin may be freed afterwards. */
sprig_status sp_module_load(const sp_device *dev, const sprig_binary *bin, sp_module **out);
void sp_module_unload(sp_module *mod);

/* The CUfunction of kernel `name` (looked up once, then cached). */
sprig_status sp_module_function(sp_module *mod, const char *name, CUfunction *out);

/* Resolves every kernel of the plan and raises each one's dynamic shared
 * memory limit where the plan asks for more than the default 48 KiB.
 * sp_plan_launch calls it; call it yourself before capturing a CUDA graph so
 * that no attribute is set while capturing. */
sprig_status sp_module_prepare(sp_module *mod, const sprig_plan *plan);

/* Launches plan->kernels[0..n) in order on `stream` (NULL: the context's
 * default stream), each with the plan's grid, block and dynamic smem and the
 * same argument list (docs/kernel-abi.md): args[i] points at the i-th
 * argument's value, as cuLaunchKernel expects. Asynchronous: errors inside a
 * kernel surface at the next synchronisation. */
sprig_status sp_plan_launch(sp_module *mod, const sprig_plan *plan, void **args, CUstream stream);

/* ---- buffers (in the current context) ---------------------------------------------- */
/* bytes == 0 gives *out = 0 and SPRIG_OK. The caller owns the allocation. */
sprig_status sp_buf_alloc(CUdeviceptr *out, size_t bytes);
void sp_buf_free(CUdeviceptr p); /* 0 is a no-op */
sprig_status sp_buf_upload(CUdeviceptr dst, const void *src, size_t bytes);
sprig_status sp_buf_download(void *dst, CUdeviceptr src, size_t bytes);
sprig_status sp_buf_copy(CUdeviceptr dst, CUdeviceptr src, size_t bytes);
/* Sets every byte to `byte` (0 zeroes; 0xFF poisons fp16/bf16 as NaN). */
sprig_status sp_buf_fill(CUdeviceptr p, unsigned char byte, size_t bytes);
static inline sprig_status sp_buf_zero(CUdeviceptr p, size_t bytes) { return sp_buf_fill(p, 0, bytes); }

#pragma GCC visibility pop

/* Within exec only (not exported; the CUDA executor's launches): sp_plan_launch,
 * and with pdl 1 each kernel launched with programmatic dependent launch
 * (sm_90+: it may start while the kernel before it drains, and waits in
 * SP_GRID_DEP_WAIT for it to complete). A programmatic launch the driver refuses
 * is made again plain, and so are the plan's later kernels; then *pdl_refused
 * (unless NULL) gets the refusal. */
sprig_status sp_plan_launch_ex(sp_module *mod, const sprig_plan *plan, void **args, CUstream stream, int pdl,
                               CUresult *pdl_refused);
#endif

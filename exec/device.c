/* GPUs, modules and plan launches over the dlopen'ed driver (sp_device.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_device.h"
#include "sp_error.h"

#define DEV_DEFAULT_SMEM (48 * 1024) /* dynamic smem a kernel may use without opting in */

/* ---- devices ------------------------------------------------------------------ */

sprig_status sp_device_count(int *count) {
    *count = 0;
    SP_TRY(sp_cuda_init());
    SP_CHECK_CU(sp_cu.cuDeviceGetCount(count));
    if (*count == 0) return sp_fail(SPRIG_E_NO_DEVICE, "the CUDA driver loaded but reports no GPU");
    return SPRIG_OK;
}

int sp_driver_version(void) {
    int v = 0;
    if (sp_cuda_load() != SPRIG_OK || sp_cu.cuDriverGetVersion(&v) != CUDA_SUCCESS) v = 0;
    return v;
}

/* Optional attributes read as 0 when the driver does not report them. */
static int dev_attr(CUdevice d, CUdevice_attribute a) {
    int v = 0;
    if (sp_cu.cuDeviceGetAttribute(&v, a, d) != CUDA_SUCCESS) v = 0;
    return v;
}

static sprig_status dev_checked_get(int ordinal, CUdevice *out) {
    int count = 0;
    SP_TRY(sp_device_count(&count));
    if (ordinal < 0 || ordinal >= count)
        return sp_fail(SPRIG_E_INVALID, "GPU %d does not exist (the driver reports %d GPU%s: 0..%d)", ordinal,
                       count, count == 1 ? "" : "s", count - 1);
    SP_CHECK_CU(sp_cu.cuDeviceGet(out, ordinal));
    return SPRIG_OK;
}

sprig_status sp_device_query(int ordinal, sp_device_props *p) {
    memset(p, 0, sizeof *p);
    CUdevice d;
    SP_TRY(dev_checked_get(ordinal, &d));
    p->ordinal = ordinal;
    SP_CHECK_CU(sp_cu.cuDeviceGetName(p->name, (int)sizeof p->name, d));
    SP_CHECK_CU(sp_cu.cuDeviceGetAttribute(&p->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d));
    SP_CHECK_CU(sp_cu.cuDeviceGetAttribute(&p->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d));
    SP_CHECK_CU(sp_cu.cuDeviceGetAttribute(&p->sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, d));
    SP_CHECK_CU(sp_cu.cuDeviceTotalMem(&p->total_mem_bytes, d));
    SP_CHECK_CU(sp_cu.cuDriverGetVersion(&p->driver_version));
    p->l2_bytes = dev_attr(d, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE);
    p->clock_khz = dev_attr(d, CU_DEVICE_ATTRIBUTE_CLOCK_RATE);
    p->mem_clock_khz = dev_attr(d, CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE);
    p->mem_bus_bits = dev_attr(d, CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH);
    p->smem_per_block_optin = dev_attr(d, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
    return SPRIG_OK;
}

sprig_status sp_device_open(sp_device **out, int ordinal) {
    *out = NULL;
    sp_device *dev = calloc(1, sizeof *dev);
    SP_CHECK_ALLOC(dev);
    sprig_status s = sp_device_query(ordinal, &dev->props);
    if (s == SPRIG_OK) s = dev_checked_get(ordinal, &dev->dev);
    if (s != SPRIG_OK) {
        free(dev);
        return s;
    }
    CUresult r = sp_cu.cuDevicePrimaryCtxRetain(&dev->ctx, dev->dev);
    if (r != CUDA_SUCCESS) {
        s = sp_fail(SPRIG_E_CUDA, "cannot create a context on GPU %d (%s): %s", ordinal, dev->props.name,
                    sp_cu_error_name(r));
        free(dev);
        return s;
    }
    r = sp_cu.cuCtxSetCurrent(dev->ctx);
    if (r != CUDA_SUCCESS) {
        sp_cu.cuDevicePrimaryCtxRelease(dev->dev);
        free(dev);
        return sp_fail(SPRIG_E_CUDA, "cannot make GPU %d's context current: %s", ordinal, sp_cu_error_name(r));
    }
    *out = dev;
    return SPRIG_OK;
}

void sp_device_close(sp_device *dev) {
    if (!dev) return;
    sp_cu.cuCtxSetCurrent(NULL);
    sp_cu.cuDevicePrimaryCtxRelease(dev->dev);
    free(dev);
}

sprig_status sp_device_make_current(const sp_device *dev) {
    SP_CHECK_CU(sp_cu.cuCtxSetCurrent(dev->ctx));
    return SPRIG_OK;
}

sprig_status sp_device_sync(const sp_device *dev) {
    (void)dev; /* the context is current on this thread (see sp_device.h) */
    SP_CHECK_CU(sp_cu.cuCtxSynchronize());
    return SPRIG_OK;
}

void sp_device_arch(const sp_device *dev, char *buf, size_t cap) {
    snprintf(buf, cap, "sm_%d%d", dev->props.cc_major, dev->props.cc_minor);
}

/* ---- modules ------------------------------------------------------------------ */

sprig_status sp_module_load(const sp_device *dev, const sprig_binary *bin, sp_module **out) {
    *out = NULL;
    if (!bin || !bin->image || bin->image_size == 0)
        return sp_fail(SPRIG_E_INVALID, "sp_module_load: empty binary");
    sp_module *m = calloc(1, sizeof *m);
    SP_CHECK_ALLOC(m);
    m->dev = dev;
    /* The driver's error log says why a cubin or PTX was refused. */
    char log[4096] = "";
    CUjit_option opts[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *vals[2] = {log, (void *)(size_t)sizeof log};
    CUresult r = sp_cu.cuModuleLoadDataEx(&m->mod, bin->image, 2, opts, vals);
    if (r != CUDA_SUCCESS) {
        free(m);
        /* NVRTC's output needs a driver at least as new as the toolkit it came
         * with; say so, since the driver's own error rarely does. */
        char old[160] = "";
        const int drv = dev->props.driver_version;
        if (drv > 0 && drv < CUDA_VERSION)
            snprintf(old, sizeof old, " (the driver is CUDA %d.%d, older than this build's toolkit %d.%d)",
                     drv / 1000, drv % 1000 / 10, CUDA_VERSION / 1000, CUDA_VERSION % 1000 / 10);
        return sp_fail(SPRIG_E_CUDA, "loading a %s for %s on %s (sm_%d%d) failed: %s%s%s%s",
                       bin->is_ptx ? "PTX module" : "cubin", bin->arch, dev->props.name, dev->props.cc_major,
                       dev->props.cc_minor, sp_cu_error_name(r), old, log[0] ? ": " : "", log);
    }
    *out = m;
    for (int k = 0; k < bin->n_kernels; ++k) {
        CUfunction fn;
        sprig_status s = sp_module_function(m, bin->kernel_names[k], &fn);
        if (s != SPRIG_OK) {
            sp_module_unload(m);
            *out = NULL;
            return s;
        }
    }
    return SPRIG_OK;
}

void sp_module_unload(sp_module *mod) {
    if (!mod) return;
    if (mod->mod) sp_cu.cuModuleUnload(mod->mod);
    free(mod);
}

sprig_status sp_module_function(sp_module *mod, const char *name, CUfunction *out) {
    for (int i = 0; i < mod->n_funcs; ++i)
        if (!strcmp(mod->funcs[i].name, name)) {
            *out = mod->funcs[i].fn;
            return SPRIG_OK;
        }
    CUresult r = sp_cu.cuModuleGetFunction(out, mod->mod, name);
    if (r != CUDA_SUCCESS)
        return sp_fail(SPRIG_E_CUDA, "kernel '%s' is not in the module: %s", name, sp_cu_error_name(r));
    if (mod->n_funcs < SP_MODULE_MAX_FUNCS && strlen(name) < sizeof mod->funcs[0].name) {
        sp_module_func *f = &mod->funcs[mod->n_funcs++];
        snprintf(f->name, sizeof f->name, "%s", name);
        f->fn = *out;
        /* The driver's own limit: 48 KiB less the kernel's static shared
         * memory, so static + dynamic over 48 KiB is opted in too. */
        if (sp_cu.cuFuncGetAttribute(&f->smem_limit, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, *out) !=
            CUDA_SUCCESS)
            f->smem_limit = DEV_DEFAULT_SMEM;
    }
    return SPRIG_OK;
}

static sp_module_func *mod_find(sp_module *mod, CUfunction fn) {
    for (int i = 0; i < mod->n_funcs; ++i)
        if (mod->funcs[i].fn == fn) return &mod->funcs[i];
    return NULL;
}

/* Opts kernel `l` in to the dynamic smem it asks for, checking the device limit
 * so an impossible plan fails with a sentence rather than CUDA_ERROR_INVALID_VALUE. */
static sprig_status mod_raise_smem(sp_module *mod, sp_module_func *f, const sprig_launch *l) {
    int static_smem = 0;
    SP_CHECK_CU(sp_cu.cuFuncGetAttribute(&static_smem, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, f->fn));
    int optin = mod->dev->props.smem_per_block_optin;
    if (optin > 0 && (long)l->smem_bytes + static_smem > optin)
        return sp_fail(SPRIG_E_INVALID,
                       "kernel %s asks for %u bytes of dynamic shared memory (+%d static); %s allows %d per CTA",
                       l->name, l->smem_bytes, static_smem, mod->dev->props.name, optin);
    SP_CHECK_CU(sp_cu.cuFuncSetAttribute(f->fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                         (int)l->smem_bytes));
    f->smem_limit = (int)l->smem_bytes;
    return SPRIG_OK;
}

sprig_status sp_module_prepare(sp_module *mod, const sprig_plan *plan) {
    for (int k = 0; k < plan->n_kernels; ++k) {
        const sprig_launch *l = &plan->kernels[k];
        CUfunction fn;
        SP_TRY(sp_module_function(mod, l->name, &fn));
        sp_module_func *f = mod_find(mod, fn);
        if (f && (int)l->smem_bytes > f->smem_limit) SP_TRY(mod_raise_smem(mod, f, l));
        if (!f && l->smem_bytes > 0) /* uncached (cache full): set every time */
            SP_CHECK_CU(sp_cu.cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                                 (int)l->smem_bytes));
    }
    return SPRIG_OK;
}

/* A launch the driver refuses for resources gets the numbers that explain it. */
static sprig_status mod_launch_failed(CUfunction fn, const sprig_launch *l, CUresult r) {
    int regs = 0, max_threads = 0;
    sp_cu.cuFuncGetAttribute(&regs, CU_FUNC_ATTRIBUTE_NUM_REGS, fn);
    sp_cu.cuFuncGetAttribute(&max_threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, fn);
    return sp_fail(SPRIG_E_CUDA,
                   "launching %s (grid %u,%u,%u block %u,%u,%u smem %u; %d registers, at most %d threads "
                   "per CTA) failed: %s",
                   l->name, l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1], l->block[2],
                   l->smem_bytes, regs, max_threads, sp_cu_error_name(r));
}

/* With pdl, cuLaunchKernelEx and programmatic stream serialisation: the
 * kernel may be scheduled before the one ahead of it on the stream completes
 * (every template waits for it first: SP_GRID_DEP_WAIT in common.cuh.lua). */
static CUresult mod_launch(CUfunction fn, const sprig_launch *l, CUstream stream, void **args, int pdl) {
    if (!pdl)
        return sp_cu.cuLaunchKernel(fn, l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1], l->block[2],
                                    l->smem_bytes, stream, args, NULL);
    CUlaunchAttribute attr;
    memset(&attr, 0, sizeof attr);
    attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    CUlaunchConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDimX = l->grid[0], cfg.gridDimY = l->grid[1], cfg.gridDimZ = l->grid[2];
    cfg.blockDimX = l->block[0], cfg.blockDimY = l->block[1], cfg.blockDimZ = l->block[2];
    cfg.sharedMemBytes = l->smem_bytes, cfg.hStream = stream;
    cfg.attrs = &attr, cfg.numAttrs = 1;
    return sp_cu.cuLaunchKernelEx(&cfg, fn, args, NULL);
}

sprig_status sp_plan_launch_ex(sp_module *mod, const sprig_plan *plan, void **args, CUstream stream, int pdl,
                               CUresult *pdl_refused) {
    SP_TRY(sp_module_prepare(mod, plan));
    for (int k = 0; k < plan->n_kernels; ++k) {
        const sprig_launch *l = &plan->kernels[k];
        CUfunction fn;
        SP_TRY(sp_module_function(mod, l->name, &fn));
        CUresult r = mod_launch(fn, l, stream, args, pdl);
        if (r != CUDA_SUCCESS && pdl && mod_launch(fn, l, stream, args, 0) == CUDA_SUCCESS) {
            if (pdl_refused) *pdl_refused = r; /* the attribute, not the kernel: plain from here */
            pdl = 0, r = CUDA_SUCCESS;
        }
        if (r != CUDA_SUCCESS) return mod_launch_failed(fn, l, r);
    }
    return SPRIG_OK;
}

sprig_status sp_plan_launch(sp_module *mod, const sprig_plan *plan, void **args, CUstream stream) {
    return sp_plan_launch_ex(mod, plan, args, stream, 0, NULL);
}

/* ---- buffers ------------------------------------------------------------------ */

sprig_status sp_buf_alloc(CUdeviceptr *out, size_t bytes) {
    *out = 0;
    if (bytes == 0) return SPRIG_OK;
    CUresult r = sp_cu.cuMemAlloc(out, bytes);
    if (r == CUDA_ERROR_OUT_OF_MEMORY)
        return sp_fail(SPRIG_E_NOMEM, "GPU out of memory allocating %zu bytes", bytes);
    if (r != CUDA_SUCCESS)
        return sp_fail(SPRIG_E_CUDA, "allocating %zu bytes on the GPU failed: %s", bytes, sp_cu_error_name(r));
    return SPRIG_OK;
}

void sp_buf_free(CUdeviceptr p) {
    if (p) sp_cu.cuMemFree(p);
}

sprig_status sp_buf_upload(CUdeviceptr dst, const void *src, size_t bytes) {
    if (bytes) SP_CHECK_CU(sp_cu.cuMemcpyHtoD(dst, src, bytes));
    return SPRIG_OK;
}

sprig_status sp_buf_download(void *dst, CUdeviceptr src, size_t bytes) {
    if (bytes) SP_CHECK_CU(sp_cu.cuMemcpyDtoH(dst, src, bytes));
    return SPRIG_OK;
}

sprig_status sp_buf_copy(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
    if (bytes) SP_CHECK_CU(sp_cu.cuMemcpyDtoD(dst, src, bytes));
    return SPRIG_OK;
}

sprig_status sp_buf_fill(CUdeviceptr p, unsigned char byte, size_t bytes) {
    if (bytes) SP_CHECK_CU(sp_cu.cuMemsetD8(p, byte, bytes));
    return SPRIG_OK;
}

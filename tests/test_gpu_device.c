/* The driver layer itself (exec/sp_cuda.h, exec/sp_device.h).
 *
 * `test_gpu_device` (label gpu): device properties, buffers (round trips,
 * fills, copies, zero-byte cases), module loading and kernel lookup with
 * clear errors, plan launches including a kernel that must be opted in to
 * more than 48 KiB of dynamic shared memory, and a request beyond the
 * device's limit refused with a sentence. Exits 77 without a GPU.
 *
 * `test_gpu_device --stub` (label cpu, run with the toolkit's stub libcuda on
 * LD_LIBRARY_PATH): every entry point of the dlopen table resolves against a
 * real libcuda symbol table, and cuInit's CUDA_ERROR_STUB_LIBRARY becomes
 * SPRIG_E_NO_DRIVER with a message that says so. Without a GPU this is the
 * only check that the versioned symbol names are right. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_cuda.h"
#include "sp_device.h"
#include "sprig.h"
#include "test_util.h"

/* ---- --stub ---------------------------------------------------------------------- */

static int stub_mode(void) {
    sprig_status s = sp_cuda_load();
    CHECK_MSG(s == SPRIG_OK, "loading the stub libcuda: %s", sprig_last_error());
    if (s != SPRIG_OK) return sp_test_finish("test_gpu_device --stub", 0);
    /* Every slot resolved (sp_cuda_load fails otherwise; this checks that claim). */
    const void *const *slot = (const void *const *)&sp_cu;
    size_t n = sizeof sp_cu / sizeof(void *), missing = 0;
    for (size_t i = 0; i < n; ++i) missing += slot[i] == NULL;
    CHECK_MSG(missing == 0, "%zu of %zu driver entry points are NULL", missing, n);
    printf("test_gpu_device --stub: %zu driver entry points resolved\n", n);
    s = sp_cuda_init();
    if (s == SPRIG_OK) {
        /* A real driver was found first on this machine: nothing stubby to check. */
        printf("test_gpu_device --stub: a real driver is installed; the stub case does not apply\n");
        sp_test_finish("test_gpu_device --stub", 0);
        return sp_test_failures ? 1 : 77;
    }
    CHECK_MSG(s == SPRIG_E_NO_DRIVER, "cuInit on the stub gave %s", sprig_status_name(s));
    CHECK_MSG(sp_contains(sprig_last_error(), "stub"), "message: %s", sprig_last_error());
    sp_device *dev = NULL;
    CHECK(sp_device_open(&dev, 0) == SPRIG_E_NO_DRIVER && dev == NULL);
    int count = -1;
    CHECK(sp_device_count(&count) == SPRIG_E_NO_DRIVER && count == 0);
    return sp_test_finish("test_gpu_device --stub", 0);
}

/* ---- on a GPU ---------------------------------------------------------------------- */

/* A hand-written two-kernel plan with one argument list (the ABI rule):
 * reverse n ints through `smem` bytes of dynamic shared memory (a launch
 * without the opt-in fails, a wrong size shows in the data), then add one to
 * each (which also proves the kernels run in plan order). */
static const char *const kSource =
    "extern \"C\" __global__ void sp_test_reverse(const int *in, int *out, int n) {\n"
    "    extern __shared__ int buf[];\n"
    "    for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = in[i];\n"
    "    __syncthreads();\n"
    "    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = buf[n - 1 - i];\n"
    "}\n"
    "extern \"C\" __global__ void sp_test_add_one(const int *in, int *out, int n) {\n"
    "    int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "    if (i < n) out[i] += 1;\n"
    "}\n";

static sprig_plan hand_plan(unsigned smem) {
    sprig_plan p;
    memset(&p, 0, sizeof p);
    p.family = "test";
    p.key = "test:reverse";
    p.source = (char *)kSource;
    p.source_len = strlen(kSource);
    p.n_kernels = 2;
    snprintf(p.kernels[0].name, sizeof p.kernels[0].name, "sp_test_reverse");
    p.kernels[0].grid[0] = p.kernels[0].grid[1] = p.kernels[0].grid[2] = 1;
    p.kernels[0].block[0] = 256, p.kernels[0].block[1] = p.kernels[0].block[2] = 1;
    p.kernels[0].smem_bytes = smem;
    snprintf(p.kernels[1].name, sizeof p.kernels[1].name, "sp_test_add_one");
    p.kernels[1].grid[0] = (smem / 4 + 255) / 256, p.kernels[1].grid[1] = p.kernels[1].grid[2] = 1;
    p.kernels[1].block[0] = 256, p.kernels[1].block[1] = p.kernels[1].block[2] = 1;
    return p;
}

static void test_buffers(void) {
    CUdeviceptr a = 1, b = 0;
    CHECK(sp_buf_alloc(&a, 0) == SPRIG_OK && a == 0); /* zero bytes: no allocation */
    sp_buf_free(0);
    enum { N = 1 << 20 };
    unsigned char *host = malloc(N), *back = malloc(N);
    for (int i = 0; i < N; ++i) host[i] = (unsigned char)(i * 131 + 7);
    CHECK(sp_buf_alloc(&a, N) == SPRIG_OK && a != 0);
    CHECK(sp_buf_alloc(&b, N) == SPRIG_OK && b != 0);
    CHECK(sp_buf_upload(a, host, N) == SPRIG_OK);
    CHECK(sp_buf_copy(b, a, N) == SPRIG_OK);
    CHECK(sp_buf_download(back, b, N) == SPRIG_OK);
    CHECK(memcmp(host, back, N) == 0);
    CHECK(sp_buf_fill(b, 0xFF, N / 2) == SPRIG_OK);
    CHECK(sp_buf_zero(b + N / 2, N / 2) == SPRIG_OK);
    CHECK(sp_buf_download(back, b, N) == SPRIG_OK);
    int ok = 1;
    for (int i = 0; i < N; ++i) ok &= back[i] == (i < N / 2 ? 0xFF : 0x00);
    CHECK_MSG(ok, "fill/zero wrote the wrong bytes");
    CHECK(sp_buf_upload(a, host, 0) == SPRIG_OK && sp_buf_download(back, a, 0) == SPRIG_OK);
    /* An impossible allocation is refused with a status, not a crash. */
    CUdeviceptr huge = 0;
    sprig_status s = sp_buf_alloc(&huge, (size_t)1 << 50);
    CHECK_MSG(s == SPRIG_E_NOMEM || s == SPRIG_E_CUDA, "1 PiB allocation gave %s", sprig_status_name(s));
    CHECK(huge == 0);
    sp_buf_free(a), sp_buf_free(b);
    free(host), free(back);
}

/* Loads the hand plan compiled for arch, launches it with `ints` elements. */
static void test_launch(sp_device *dev, const char *arch, unsigned ints) {
    sprig_plan plan = hand_plan(ints * 4);
    sprig_compile_opts opts = {arch, 0, "", 0};
    sprig_binary *bin = NULL;
    sprig_status s = sprig_compile(&plan, &opts, &bin);
    CHECK_MSG(s == SPRIG_OK, "compiling the test kernels for %s: %s", arch, sprig_last_error());
    if (s != SPRIG_OK) return;
    sp_module *mod = NULL;
    s = sp_module_load(dev, bin, &mod);
    CHECK_MSG(s == SPRIG_OK, "loading: %s", sprig_last_error());
    if (s == SPRIG_OK) {
        CUfunction fn;
        s = sp_module_function(mod, "no_such_kernel", &fn);
        CHECK(s == SPRIG_E_CUDA && sp_contains(sprig_last_error(), "no_such_kernel"));
        int n = (int)ints;
        int *host = malloc(sizeof(int) * ints), *back = malloc(sizeof(int) * ints);
        for (int i = 0; i < n; ++i) host[i] = i * 3;
        CUdeviceptr in = 0, out = 0;
        CHECK(sp_buf_alloc(&in, sizeof(int) * ints) == SPRIG_OK);
        CHECK(sp_buf_alloc(&out, sizeof(int) * ints) == SPRIG_OK);
        CHECK(sp_buf_upload(in, host, sizeof(int) * ints) == SPRIG_OK);
        CHECK(sp_buf_fill(out, 0xFF, sizeof(int) * ints) == SPRIG_OK);
        void *args[] = {&in, &out, &n};
        s = sp_plan_launch(mod, &plan, args, NULL);
        CHECK_MSG(s == SPRIG_OK, "launching with %u bytes of dynamic smem: %s", ints * 4, sprig_last_error());
        if (s == SPRIG_OK) s = sp_device_sync(dev);
        CHECK_MSG(s == SPRIG_OK, "running: %s", sprig_last_error());
        CHECK(sp_buf_download(back, out, sizeof(int) * ints) == SPRIG_OK);
        int ok = 1;
        for (int i = 0; i < n; ++i) ok &= back[i] == host[n - 1 - i] + 1;
        CHECK_MSG(ok, "reverse (%u bytes of shared memory) then add_one came back wrong", ints * 4);
        printf("test_gpu_device: launched with %u bytes of dynamic shared memory (%s)\n", ints * 4, arch);
        sp_buf_free(in), sp_buf_free(out);
        free(host), free(back);

        /* More than the device allows: refused with the numbers, before any launch. */
        sprig_plan too_big = plan;
        too_big.kernels[0].smem_bytes = (unsigned)dev->props.smem_per_block_optin + 1024;
        s = sp_module_prepare(mod, &too_big);
        CHECK_MSG(s == SPRIG_E_INVALID && sp_contains(sprig_last_error(), "shared memory"),
                  "oversized smem gave %s: %s", sprig_status_name(s), sprig_last_error());
        sp_module_unload(mod);
    }
    sprig_binary_free(bin);
}

static int gpu_mode(void) {
    sp_device *dev = NULL;
    sprig_status s = sp_device_open(&dev, 0);
    if (s == SPRIG_E_NO_DRIVER || s == SPRIG_E_NO_DEVICE) {
        printf("test_gpu_device: skipped: %s: %s\n", sprig_status_name(s), sprig_last_error());
        return 77;
    }
    CHECK_MSG(s == SPRIG_OK, "opening GPU 0: %s", sprig_last_error());
    if (s != SPRIG_OK) return sp_test_finish("test_gpu_device", 0);
    const sp_device_props *p = &dev->props;
    printf("test_gpu_device: %s, sm_%d%d, %d SMs, %.1f GiB, L2 %d KiB, optin smem %d, driver %d\n", p->name,
           p->cc_major, p->cc_minor, p->sm_count, p->total_mem_bytes / 1073741824.0, p->l2_bytes / 1024,
           p->smem_per_block_optin, p->driver_version);
    CHECK(p->name[0] != '\0');
    CHECK(p->cc_major >= 3 && p->cc_minor >= 0);
    CHECK(p->sm_count > 0 && p->total_mem_bytes > 0 && p->l2_bytes > 0);
    CHECK(p->driver_version >= 11000);
    CHECK(p->smem_per_block_optin >= 48 * 1024);
    char arch[16];
    sp_device_arch(dev, arch, sizeof arch);
    CHECK(arch[0] == 's' && arch[1] == 'm' && arch[2] == '_');
    sp_device_props q;
    CHECK(sp_device_query(0, &q) == SPRIG_OK && strcmp(q.name, p->name) == 0 && q.sm_count == p->sm_count);
    int count = 0;
    CHECK(sp_device_count(&count) == SPRIG_OK && count >= 1);
    sp_device *none = NULL;
    s = sp_device_open(&none, count); /* one past the last GPU */
    CHECK(s == SPRIG_E_INVALID && none == NULL && sp_contains(sprig_last_error(), "does not exist"));
    CHECK(sp_device_make_current(dev) == SPRIG_OK);

    test_buffers();
    /* An arch NVRTC knows for this GPU; if it does not know it, the harness's
     * PTX fallback is exercised by the family tests instead. */
    int archs[64], n = sprig_supported_archs(archs, 64), known = 0;
    for (int i = 0; i < n && i < 64; ++i) known |= archs[i] == p->cc_major * 10 + p->cc_minor;
    if (known) {
        test_launch(dev, arch, 1024);                                /* 4 KiB: no opt-in */
        test_launch(dev, arch, (unsigned)(64 * 1024 / 4));           /* 64 KiB: opt-in */
        test_launch(dev, arch, (unsigned)(p->smem_per_block_optin / 4)); /* the device's maximum */
    }
    sp_device_close(dev);
    return sp_test_finish("test_gpu_device", 0);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--stub")) return stub_mode();
    return gpu_mode();
}

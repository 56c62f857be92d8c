/* NVRTC compilation of every family, for every model shape, dtype and two
 * architectures: each must compile with zero spills and zero stack frame at
 * its default parameters, and within the register file and static shared
 * memory a CTA may have (registers x threads <= 64K, 48 KB). Also: PTX output, and that the ptxas report parser
 * reads real non-zero stack and shared-memory numbers.
 * Families come from sprig_gen_families_json and shapes from
 * sprig_gen_models_json, so new families and shapes are covered as they land.
 * Compiles run on a few threads through the cache in $SPRIG_CACHE_DIR. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sprig.h"
#include "test_util.h"

#define MAX_JOBS 4096

typedef struct job {
    const sprig_plan *plan;
    char what[160];
    const char *arch;
    sprig_status status;
    char *error;
    sprig_binary *bin;
} job;

static job jobs[MAX_JOBS];
static int n_jobs, next_job;
static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *worker(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&job_lock);
        int i = next_job < n_jobs ? next_job++ : -1;
        pthread_mutex_unlock(&job_lock);
        if (i < 0) return NULL;
        sprig_compile_opts o = {jobs[i].arch, 0, NULL, 0}; /* cache: $SPRIG_CACHE_DIR */
        jobs[i].status = sprig_compile(jobs[i].plan, &o, &jobs[i].bin);
        if (jobs[i].status != SPRIG_OK) jobs[i].error = strdup(sprig_last_error());
    }
}

static void run_jobs(int threads) {
    pthread_t tid[16];
    for (int t = 0; t < threads; ++t) pthread_create(&tid[t], NULL, worker, NULL);
    for (int t = 0; t < threads; ++t) pthread_join(tid[t], NULL);
}

/* The cubin's own tables (sprig_cubin_kernel_info, what sprig falls back on
 * when NVRTC's log is empty) say what ptxas's report in the log said. */
static void check_cubin_tables(const job *j, const sprig_binary *b, int k) {
    sprig_resources e, *r = &((sprig_binary *)b)->res[k];
    int found = sprig_cubin_kernel_info(b->image, b->image_size, b->kernel_names[k], &e);
    CHECK_MSG(found == 1, "%s %s: the cubin's symbol table has no %s (%d)", j->what, j->arch, b->kernel_names[k],
              found);
    if (found != 1) return;
    CHECK_MSG(e.registers == r->registers && e.stack_bytes == r->stack_bytes &&
                  e.static_smem_bytes == r->static_smem_bytes && e.spill_store_bytes == -1,
              "%s %s %s: the cubin says %d registers, %d stack, %d smem; ptxas said %d, %d, %d", j->what, j->arch,
              b->kernel_names[k], e.registers, e.stack_bytes, e.static_smem_bytes, r->registers, r->stack_bytes,
              r->static_smem_bytes);
}

/* Every kernel compiled, with a register count and no spills or stack. */
static void check_job(const job *j, int *hits) {
    CHECK_MSG(j->status == SPRIG_OK, "%s %s: %s", j->what, j->arch, j->error ? j->error : "");
    const sprig_binary *b = j->bin;
    if (!b) return;
    *hits += b->cache_hit;
    CHECK_MSG(!b->is_ptx && b->image_size > 4 && memcmp(b->image, "\177ELF", 4) == 0, "%s %s: not a cubin",
              j->what, j->arch);
    CHECK_MSG(strcmp(b->arch, j->arch) == 0, "%s: arch %s != %s", j->what, b->arch, j->arch);
    CHECK(b->n_kernels == j->plan->n_kernels);
    CHECK(strlen(b->cache_key) == 32);
    CHECK(b->cache_hit ? b->compile_ms == 0 : b->compile_ms > 0);
    for (int k = 0; k < b->n_kernels; ++k) {
        const sprig_resources *r = &b->res[k];
        CHECK_MSG(strcmp(b->kernel_names[k], j->plan->kernels[k].name) == 0, "%s: kernel %d is %s, plan says %s",
                  j->what, k, b->kernel_names[k], j->plan->kernels[k].name);
        CHECK_MSG(r->registers > 0 && r->registers <= 255, "%s %s %s: registers=%d", j->what, j->arch,
                  b->kernel_names[k], r->registers);
        CHECK_MSG(r->spill_store_bytes == 0 && r->spill_load_bytes == 0 && r->stack_bytes == 0,
                  "%s %s %s: spills %d/%d bytes, stack %d bytes at default parameters", j->what, j->arch,
                  b->kernel_names[k], r->spill_store_bytes, r->spill_load_bytes, r->stack_bytes);
        CHECK(r->static_smem_bytes >= 0);
        check_cubin_tables(j, b, k);
        /* What the launch would be refused for ("too many resources requested"):
         * the register file (64K per SM, so per CTA) and 48 KB of static shared
         * memory; the CPU emulator checks the rest of the launch limits. */
        const sprig_launch *l = &j->plan->kernels[k];
        const long threads = (long)l->block[0] * (l->block[1] ? l->block[1] : 1) * (l->block[2] ? l->block[2] : 1);
        CHECK_MSG((long)r->registers * threads <= 65536, "%s %s %s: %d registers x %ld threads > 65536", j->what,
                  j->arch, b->kernel_names[k], r->registers, threads);
        CHECK_MSG(r->static_smem_bytes <= 48 * 1024, "%s %s %s: %d bytes of static shared memory > 48 KB", j->what,
                  j->arch, b->kernel_names[k], r->static_smem_bytes);
    }
}

/* Renders every family x shape x dtype into plans; returns the count. */
static int render_all(sprig_gen *gen, sprig_plan **plans, char what[][160], int max) {
    char *fams_json = NULL, *models_json = NULL;
    CHECK(sprig_gen_families_json(gen, &fams_json) == SPRIG_OK);
    CHECK(sprig_gen_models_json(gen, &models_json) == SPRIG_OK);
    cJSON *fams = cJSON_Parse(fams_json), *models = cJSON_Parse(models_json);
    free(fams_json);
    free(models_json);
    CHECK(cJSON_GetArraySize(fams) >= 1);
    CHECK(cJSON_GetArraySize(models) >= 6);
    static const char *const dtypes[] = {"fp16", "bf16"};
    int n = 0;
    const cJSON *fam, *model;
    cJSON_ArrayForEach(fam, fams) {
        const char *name = cJSON_GetObjectItem(fam, "name")->valuestring;
        int batch = strcmp(name, "gather_gemm") == 0 ? 16 : 1; /* tensor cores: batch >= 8 */
        cJSON_ArrayForEach(model, models) {
            int d = cJSON_GetObjectItem(model, "d")->valueint, f = cJSON_GetObjectItem(model, "f")->valueint;
            for (int t = 0; t < 2 && n < max; ++t) {
                sprig_request req = {name, d, f, dtypes[t], batch, 32, NULL};
                snprintf(what[n], 160, "%s %dx%d %s b%d", name, d, f, dtypes[t], batch);
                sprig_status s = sprig_gen_render(gen, &req, &plans[n]);
                CHECK_MSG(s == SPRIG_OK, "render %s: %s", what[n], sprig_last_error());
                if (s == SPRIG_OK) ++n;
            }
        }
    }
    cJSON_Delete(fams);
    cJSON_Delete(models);
    return n;
}

/* PTX for compute_90 holds every planned kernel as an .entry and no report. */
static void check_ptx(const sprig_plan *plan) {
    sprig_compile_opts o = {"compute_90", 0, NULL, 0};
    sprig_binary *b = NULL;
    sprig_status s = sprig_compile(plan, &o, &b);
    CHECK_MSG(s == SPRIG_OK, "%s compute_90: %s", plan->family, sprig_last_error());
    if (!b) return;
    CHECK(b->is_ptx && strcmp(b->arch, "compute_90") == 0);
    CHECK(sp_contains(b->image, ".entry"));
    CHECK(sp_contains(b->image, plan->kernels[0].name));
    CHECK(strlen(b->image) + 1 == b->image_size); /* NUL-terminated text */
    for (int k = 0; k < b->n_kernels; ++k) CHECK(b->res[k].registers == -1 && b->res[k].spill_store_bytes == -1);
    sprig_binary_free(b);
    /* want_ptx with an sm_ name means PTX for that architecture too */
    sprig_compile_opts o2 = {"sm_80", 1, NULL, 0};
    CHECK(sprig_compile(plan, &o2, &b) == SPRIG_OK);
    if (b) CHECK(b->is_ptx && strcmp(b->arch, "compute_80") == 0 && sp_contains(b->image, ".target sm_80"));
    sprig_binary_free(b);
}

static int write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (!fp) return -1;
    fputs(text, fp);
    return fclose(fp);
}

/* The cubin reader on one architecture: the report's numbers (non-zero stack
 * and shared memory here), a kernel the image lacks, and damaged images. */
static void check_cubin_reader(const sprig_binary *b) {
    sprig_resources e;
    CHECK_MSG(sprig_cubin_kernel_info(b->image, b->image_size, "sprig_dense_gemv", &e) == 1 &&
                  e.registers == b->res[0].registers && e.stack_bytes == b->res[0].stack_bytes &&
                  e.static_smem_bytes == b->res[0].static_smem_bytes,
              "%s: the cubin says %d registers, %d stack, %d smem; ptxas said %d, %d, %d", b->arch, e.registers,
              e.stack_bytes, e.static_smem_bytes, b->res[0].registers, b->res[0].stack_bytes,
              b->res[0].static_smem_bytes);
    CHECK(sprig_cubin_kernel_info(b->image, b->image_size, "sprig_dense_gem", NULL) == 0);
    CHECK(sprig_cubin_kernel_info(b->image, b->image_size, "tile", NULL) == 0); /* a symbol, not a function */
    CHECK(sprig_cubin_kernel_info(NULL, 0, "sprig_dense_gemv", NULL) == -1);
    CHECK(sprig_cubin_kernel_info(b->log, strlen(b->log), "sprig_dense_gemv", NULL) == -1); /* text */
    /* every truncation, and flipped bytes in the headers: an answer, never a crash (ASan runs this) */
    unsigned char *copy = malloc(b->image_size);
    if (!copy) return;
    for (size_t n = 0; n < b->image_size; n += 1 + n / 64) {
        memcpy(copy, b->image, n);
        int r = sprig_cubin_kernel_info(copy, n, "sprig_dense_gemv", &e);
        CHECK(r >= -1 && r <= 1);
    }
    for (size_t at = 0; at < 128 && at < b->image_size; ++at) {
        memcpy(copy, b->image, b->image_size);
        copy[at] ^= 0xff;
        int r = sprig_cubin_kernel_info(copy, b->image_size, "sprig_dense_gemv", &e);
        CHECK(r >= -1 && r <= 1);
    }
    free(copy);
}

/* A template with a dynamically indexed local array (a stack frame) and a
 * static __shared__ buffer: the parsed report must show both, on sm_90 and
 * (through the cubin reader) on every architecture NVRTC targets. */
static void check_report_parser(void) {
    char dir[] = "/tmp/sprig-test-compile-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/dense_gemv.cu.lua", dir);
    CHECK(write_file(path, "{% include(\"templates/common.cuh.lua\") %}\n"
                           "extern \"C\" __global__ void sprig_dense_gemv(const T *W, const T *x, T *y) {\n"
                           "    __shared__ float tile[512];\n"
                           "    volatile float buf[256];\n"
                           "    for (int i = 0; i < 256; ++i) buf[i] = SP_TO_F(x[i * threadIdx.x]);\n"
                           "    tile[threadIdx.x] = buf[W[threadIdx.x] & 255];\n"
                           "    __syncthreads();\n"
                           "    y[threadIdx.x] = SP_FROM_F(tile[511 - threadIdx.x]);\n"
                           "}\n") == 0);
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, dir) == SPRIG_OK);
    sprig_request req = {"dense_gemv", 4096, 11008, "fp16", 1, 32, NULL};
    sprig_plan *plan = NULL;
    CHECK(gen && sprig_gen_render(gen, &req, &plan) == SPRIG_OK);
    sprig_compile_opts o = {"sm_90", 0, "", 0};
    sprig_binary *b = NULL;
    if (plan) CHECK_MSG(sprig_compile(plan, &o, &b) == SPRIG_OK, "%s", sprig_last_error());
    if (b) {
        CHECK_MSG(b->res[0].stack_bytes >= 1024, "stack=%d\n%s", b->res[0].stack_bytes, b->log);
        CHECK_MSG(b->res[0].static_smem_bytes == 2048, "smem=%d\n%s", b->res[0].static_smem_bytes, b->log);
        CHECK(b->res[0].registers > 0);
        CHECK(sp_contains(b->log, "Compiling entry function 'sprig_dense_gemv' for 'sm_90'"));
        CHECK(!b->cache_hit);
    }
    sprig_binary_free(b);
    int archs[64], n_archs = sprig_supported_archs(archs, 64);
    CHECK(n_archs >= 2);
    for (int a = 0; plan && a < n_archs; ++a) {
        char arch[16];
        snprintf(arch, sizeof arch, "sm_%d", archs[a]);
        sprig_compile_opts oa = {arch, 0, "", 0};
        b = NULL;
        CHECK_MSG(sprig_compile(plan, &oa, &b) == SPRIG_OK, "%s: %s", arch, sprig_last_error());
        if (b) check_cubin_reader(b);
        sprig_binary_free(b);
    }
    sprig_plan_free(plan);
    sprig_gen_close(gen);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    double t0 = now_s();
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    if (!gen) return sp_test_finish("test_compile", 0);
    static sprig_plan *plans[MAX_JOBS / 2];
    static char what[MAX_JOBS / 2][160];
    int n_plans = render_all(gen, plans, what, MAX_JOBS / 2);
    static const char *const archs[] = {"sm_80", "sm_90"};
    for (int p = 0; p < n_plans; ++p)
        for (int a = 0; a < 2; ++a) {
            jobs[n_jobs].plan = plans[p];
            jobs[n_jobs].arch = archs[a];
            memcpy(jobs[n_jobs++].what, what[p], sizeof what[p]);
        }
    double t1 = now_s();
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cpus < 2 ? 2 : cpus > 8 ? 8 : (int)cpus;
    run_jobs(threads);
    double t2 = now_s();
    int hits = 0;
    for (int i = 0; i < n_jobs; ++i) check_job(&jobs[i], &hits);
    /* one PTX compile per family (the first plan of each) */
    for (int p = 0; p < n_plans; ++p)
        if (p == 0 || strcmp(plans[p]->family, plans[p - 1]->family) != 0) check_ptx(plans[p]);
    check_report_parser();
    printf("test_compile: %d plans, %d cubins (%d from cache) on %d threads: render %.2f s, compile %.2f s, "
           "total %.2f s\n",
           n_plans, n_jobs, hits, threads, t1 - t0, t2 - t1, now_s() - t0);
    for (int i = 0; i < n_jobs; ++i) {
        sprig_binary_free(jobs[i].bin);
        free(jobs[i].error);
    }
    for (int p = 0; p < n_plans; ++p) sprig_plan_free(plans[p]);
    sprig_gen_close(gen);
    return sp_test_finish("test_compile", n_jobs);
}

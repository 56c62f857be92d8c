/* sprig compile: render one family (or every family at its defaults) for a
 * shape, compile it with NVRTC for one or more architectures in parallel, and
 * report registers, spills, shared memory and compile time per kernel.
 * Rendering happens in the main thread (a generator is single-threaded);
 * only the compiles go to the worker threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "sp_cache.h"
#include "sp_mlp_keys.h"
#include "sp_file.h"

#define CC_MAX_ARCHS 64
#define CC_MAX_PLANS 64

typedef struct cc_opts {
    cli_kernel_args k;
    const char *arch_list;  /* --arch: comma list or "all" */
    int ptx, json, no_cache, jobs, line_info;
    const char *cache_dir;  /* --cache-dir */
    const char *out_dir;    /* -o */
} cc_opts;

/* One rendered plan; skipped ones keep the reason instead. */
typedef struct cc_plan {
    char family[64];
    int batch;
    sprig_plan *plan;
    char *skip_reason;
} cc_plan;

/* One (plan, arch) compile and its outcome, filled by a worker. */
typedef struct cc_job {
    const cc_plan *item;
    char arch[16];
    sprig_binary *bin;
    sprig_status status;
    char *error;
    char output[4200];      /* file written with -o, or "" */
} cc_job;

typedef struct cc_pool {
    cc_job *jobs;
    int n_jobs, next, done;
    const cc_opts *o;
    int progress;           /* stderr is a terminal */
    pthread_mutex_t lock;
} cc_pool;

static void cc_help(FILE *to) {
    fprintf(to,
            "usage: sprig compile [--family NAME] (--model NAME | --shape D,F) [options]\n\n"
            "Renders and compiles kernels with NVRTC (no GPU needed) and prints, per kernel,\n"
            "registers, spill bytes, shared memory, stack frame and compile time. With\n"
            "--family it compiles that one family; without it, every family at its default\n"
            "parameters for the shape (gather_gemm, which needs batch >= 8, at batch 16 when\n"
            "--batch is below 8; a family that cannot serve the request is skipped with a note).\n"
            "Columns: spill st/ld and stack in bytes per thread; smem is static plus dynamic\n"
            "shared memory per CTA; key starts the cache key. Exit status 0 only if every\n"
            "kernel compiled.\n\noptions:\n%s"
            "  --arch LIST         comma list of sm_XX, XX, sm_XXa, compute_XX (PTX), or 'all'\n"
            "                      for every architecture NVRTC supports (default sm_90)\n"
            "  --ptx               emit PTX (compute_XX) instead of cubins; no resource report\n"
            "  --line-info         compile with -lineinfo\n"
            "  -j N                compile with N threads (default: the number of CPUs)\n"
            "  -o DIR              write each image to DIR/<family>.<dtype>.<arch>.cubin (or .ptx)\n"
            "  --cache-dir DIR     cubin cache folder (default $SPRIG_CACHE_DIR, else\n"
            "                      $XDG_CACHE_HOME/sprig, else ~/.cache/sprig)\n"
            "  --no-cache          neither read nor write the cache\n"
            "  --json              print a JSON array (one object per family and arch) instead\n"
            "                      of the table\n",
            cli_kernel_args_help);
}

static int cc_parse_args(int argc, char **argv, cc_opts *o) {
    memset(o, 0, sizeof *o);
    cli_kernel_args_init(&o->k);
    o->arch_list = "sm_90";
    for (int i = 1; i < argc; ++i) {
        int r = cli_kernel_arg(&o->k, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cc_help(stdout);
            return -1;
        } else if (!strcmp(a, "--arch") && has_value) {
            o->arch_list = argv[++i];
        } else if (!strcmp(a, "--cache-dir") && has_value) {
            o->cache_dir = argv[++i];
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && has_value) {
            o->out_dir = argv[++i];
        } else if ((!strcmp(a, "-j") && has_value) || (!strncmp(a, "-j", 2) && a[2])) {
            const char *v = a[2] ? a + 2 : argv[++i]; /* "-j 4" or "-j4" */
            char *end = NULL;
            long j = strtol(v, &end, 10);
            if (!*v || *end || j < 1 || j > 256) {
                fprintf(stderr, "sprig compile: -j expects 1..256, got '%s'\n", v);
                return 2;
            }
            o->jobs = (int)j;
        } else if (!strcmp(a, "--ptx")) {
            o->ptx = 1;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--no-cache")) {
            o->no_cache = 1;
        } else if (!strcmp(a, "--line-info")) {
            o->line_info = 1;
        } else {
            fprintf(stderr, "sprig compile: unknown option or missing value '%s' (sprig compile --help)\n", a);
            return 2;
        }
    }
    if (!o->k.family && o->k.params[0]) {
        fprintf(stderr, "sprig compile: --param needs --family (parameters belong to one family)\n");
        return 2;
    }
    return 0;
}

/* ---- architectures ------------------------------------------------------- */

/* Expands --arch into canonical names ("sm_90", "sm_90a", "compute_90").
 * Returns the count, or -1 after printing why. */
static int cc_add_arch(char archs[][16], int *n, int max, const char *name) {
    for (int i = 0; i < *n; ++i)
        if (!strcmp(archs[i], name)) return 0; /* listed twice: compile once */
    if (*n == max) {
        fprintf(stderr, "sprig compile: more than %d architectures\n", max);
        return -1;
    }
    snprintf(archs[(*n)++], 16, "%s", name);
    return 0;
}

static int cc_add_all_archs(const cc_opts *o, char archs[][16], int *n, int max) {
    int nums[CC_MAX_ARCHS];
    int total = sprig_supported_archs(nums, CC_MAX_ARCHS);
    if (total == 0) fprintf(stderr, "sprig compile: NVRTC reports no supported architectures\n");
    for (int i = 0; i < total && i < CC_MAX_ARCHS; ++i) {
        char name[16];
        snprintf(name, sizeof name, "%s_%d", o->ptx ? "compute" : "sm", nums[i]);
        if (cc_add_arch(archs, n, max, name) != 0) return -1;
    }
    return total ? 0 : -1;
}

static int cc_parse_archs(const cc_opts *o, char archs[][16], int max) {
    int n = 0;
    char list[512];
    snprintf(list, sizeof list, "%s", o->arch_list);
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "all")) {
            if (cc_add_all_archs(o, archs, &n, max) != 0) return -1;
            continue;
        }
        int num = 0, ptx = 0;
        char suffix[2] = "";
        sprig_status s = sprig_parse_arch(tok, &num, &ptx, suffix);
        if (s != SPRIG_OK) {
            cli_error("--arch", s);
            return -1;
        }
        char name[16];
        snprintf(name, sizeof name, "%s_%d%s", (ptx || o->ptx) ? "compute" : "sm", num, suffix);
        if (cc_add_arch(archs, &n, max, name) != 0) return -1;
    }
    if (n == 0) fprintf(stderr, "sprig compile: --arch names no architecture\n");
    return n ? n : -1;
}

/* ---- rendering (main thread) --------------------------------------------- */

/* Renders one family; an invalid request (when compiling every family) is a
 * skip with its reason, anything else a failure. Returns 0, or 1 on failure. */
static int cc_render_one(sprig_gen *gen, const cc_opts *o, const char *family, int all_mode, cc_plan *out) {
    const cli_kernel_args *k = &o->k;
    snprintf(out->family, sizeof out->family, "%s", family);
    out->batch = k->batch;
    /* A family tuned only from a larger batch (the tensor-core gather GEMM, from 8; its spec's
       tune.mlp.from_batch) is shown at a prefill-ish one. */
    if (all_mode && !sp_mlp_default_family(gen, family, out->batch) && sp_mlp_default_family(gen, family, 16))
        out->batch = 16;
    sprig_request req = {family, k->d, k->f, k->dtype, out->batch, k->g, k->params};
    sprig_status s = sprig_gen_render(gen, &req, &out->plan);
    if (s == SPRIG_OK) return 0;
    if (all_mode && s == SPRIG_E_INVALID) {
        out->skip_reason = strdup(sprig_last_error());
        return out->skip_reason ? 0 : cli_error("out of memory", SPRIG_E_NOMEM);
    }
    char what[128];
    snprintf(what, sizeof what, "rendering %s", family);
    return cli_error(what, s);
}

/* Prints one note per skipped family; when every family rejected the request
 * for the same reason, that reason is the error. Returns n, or -1. */
static int cc_note_skips(const cc_plan *plans, int n) {
    int skipped = 0, same = 1;
    const char *first = NULL; /* the first skipped family's reason */
    for (int i = 0; i < n; ++i) {
        if (!plans[i].skip_reason) continue;
        if (!first) first = plans[i].skip_reason;
        same &= !strcmp(plans[i].skip_reason, first);
        ++skipped;
    }
    if (n > 0 && skipped == n && same) {
        fprintf(stderr, "sprig compile: invalid request: %s\n", first);
        return -1;
    }
    for (int i = 0; i < n; ++i)
        if (plans[i].skip_reason)
            fprintf(stderr, "sprig compile: skipping %s: %s\n", plans[i].family, plans[i].skip_reason);
    if (skipped == n) fprintf(stderr, "sprig compile: no family could serve this request; nothing to compile\n");
    return skipped == n ? -1 : n;
}

/* Fills plans with --family, or every available family. Returns the count, -1 on error. */
static int cc_render_all(sprig_gen *gen, const cc_opts *o, cc_plan *plans, int max) {
    if (o->k.family) return cc_render_one(gen, o, o->k.family, 0, &plans[0]) ? -1 : 1;
    char *json = NULL;
    sprig_status s = sprig_gen_families_json(gen, &json);
    if (s != SPRIG_OK) {
        cli_error("listing families", s);
        return -1;
    }
    cJSON *list = cJSON_Parse(json);
    free(json);
    int n = 0, failed = 0;
    const cJSON *fam;
    cJSON_ArrayForEach(fam, list) {
        const cJSON *name = cJSON_GetObjectItem(fam, "name");
        if (!cJSON_IsString(name) || n == max) continue;
        failed |= cc_render_one(gen, o, name->valuestring, 1, &plans[n++]);
    }
    cJSON_Delete(list);
    return failed ? -1 : cc_note_skips(plans, n);
}

/* ---- compiling (worker threads) ------------------------------------------ */

static double cc_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void cc_write_output(const cc_opts *o, cc_job *job) {
    const sprig_binary *b = job->bin;
    snprintf(job->output, sizeof job->output, "%s/%s.%s.%s.%s", o->out_dir, job->item->family, o->k.dtype,
             job->arch, b->is_ptx ? "ptx" : "cubin");
    size_t size = b->is_ptx ? strlen(b->image) : b->image_size; /* PTX without its NUL */
    FILE *fp = fopen(job->output, "wb");
    int ok = fp && fwrite(b->image, 1, size, fp) == size;
    if (fp && fclose(fp) != 0) ok = 0;
    if (!ok) {
        job->status = SPRIG_E_IO;
        char msg[4400];
        snprintf(msg, sizeof msg, "cannot write '%s'", job->output);
        job->error = strdup(msg);
        job->output[0] = '\0';
    }
}

static void cc_run_job(cc_pool *pool, cc_job *job) {
    const cc_opts *o = pool->o;
    sprig_compile_opts co = {job->arch, o->ptx, o->no_cache ? "" : o->cache_dir, o->line_info};
    job->status = sprig_compile(job->item->plan, &co, &job->bin);
    if (job->status != SPRIG_OK) job->error = strdup(sprig_last_error()); /* thread-local: copy now */
    else if (o->out_dir) cc_write_output(o, job);
}

static void cc_progress(cc_pool *pool, const cc_job *job) {
    if (!pool->progress) return;
    fprintf(stderr, "\r\033[K  compiling [%d/%d] %s %s", pool->done, pool->n_jobs, job->item->family, job->arch);
    fflush(stderr);
}

static void *cc_worker(void *arg) {
    cc_pool *pool = arg;
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        int i = pool->next < pool->n_jobs ? pool->next++ : -1;
        if (i >= 0) cc_progress(pool, &pool->jobs[i]);
        pthread_mutex_unlock(&pool->lock);
        if (i < 0) return NULL;
        cc_run_job(pool, &pool->jobs[i]);
        pthread_mutex_lock(&pool->lock);
        pool->done++;
        cc_progress(pool, &pool->jobs[i]);
        pthread_mutex_unlock(&pool->lock);
    }
}

/* Runs every job on n_threads threads (the calling thread included). */
static void cc_run_pool(cc_pool *pool, int n_threads) {
    pthread_t tids[256];
    int started = 0;
    for (int t = 1; t < n_threads; ++t)
        if (pthread_create(&tids[started], NULL, cc_worker, pool) == 0) ++started;
    cc_worker(pool);
    for (int t = 0; t < started; ++t) pthread_join(tids[t], NULL);
    if (pool->progress) fprintf(stderr, "\r\033[K");
}

/* ---- reporting ----------------------------------------------------------- */

static void cc_print_header(void) {
    printf("%-16s %-28s %-10s %-5s %5s %5s %11s %7s %6s %9s  %s\n", "family", "kernel", "arch", "dtype", "batch",
           "regs", "spill st/ld", "smem", "stack", "compile", "key");
}

static void cc_print_job(const cc_opts *o, const cc_job *job) {
    const sprig_binary *b = job->bin;
    if (job->status != SPRIG_OK) {
        printf("%-16s %-28s %-10s %-5s %5d  FAILED: %s (see the message below)\n", job->item->family, "-",
               job->arch, o->k.dtype, job->item->batch, sprig_status_name(job->status));
        return;
    }
    for (int k = 0; k < b->n_kernels; ++k) {
        const sprig_resources *r = &b->res[k];
        char regs[16] = "-", spill[32] = "-", smem[32] = "-", stack[16] = "-", when[32] = "cached";
        unsigned dyn = job->item->plan->kernels[k].smem_bytes;
        if (r->registers >= 0) {
            snprintf(regs, sizeof regs, "%d", r->registers);
            if (r->spill_store_bytes >= 0) /* else the log had no report: "?" (sprig_resources) */
                snprintf(spill, sizeof spill, "%d/%d", r->spill_store_bytes, r->spill_load_bytes);
            else snprintf(spill, sizeof spill, "?");
            snprintf(smem, sizeof smem, "%u", (unsigned)r->static_smem_bytes + dyn);
            snprintf(stack, sizeof stack, "%d", r->stack_bytes);
        }
        if (!b->cache_hit) snprintf(when, sizeof when, "%.0f ms", b->compile_ms);
        printf("%-16s %-28s %-10s %-5s %5d %5s %11s %7s %6s %9s  %.8s\n", job->item->family, b->kernel_names[k],
               b->arch, o->k.dtype, job->item->batch, regs, spill, smem, stack, k ? "" : when, b->cache_key);
    }
}

static cJSON *cc_job_json(const cc_opts *o, const cc_job *job) {
    const sprig_plan *p = job->item->plan;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "family", job->item->family);
    cJSON_AddStringToObject(j, "status", job->status == SPRIG_OK ? "ok" : "failed");
    cJSON_AddStringToObject(j, "arch", job->arch);
    cJSON_AddStringToObject(j, "key", p->key);
    cJSON_AddNumberToObject(j, "d", o->k.d);
    cJSON_AddNumberToObject(j, "f", o->k.f);
    cJSON_AddStringToObject(j, "dtype", o->k.dtype);
    cJSON_AddNumberToObject(j, "batch", job->item->batch);
    cJSON_AddNumberToObject(j, "g", o->k.g);
    cJSON_AddItemToObject(j, "params", cJSON_Parse(p->params_json));
    if (job->status != SPRIG_OK) {
        cJSON_AddStringToObject(j, "error", job->error ? job->error : "");
        return j;
    }
    const sprig_binary *b = job->bin;
    cJSON_AddBoolToObject(j, "ptx", b->is_ptx);
    cJSON_AddBoolToObject(j, "cache_hit", b->cache_hit);
    cJSON_AddNumberToObject(j, "compile_ms", b->compile_ms);
    cJSON_AddStringToObject(j, "cache_key", b->cache_key);
    cJSON_AddNumberToObject(j, "image_bytes", (double)b->image_size);
    if (job->output[0]) cJSON_AddStringToObject(j, "output", job->output);
    cJSON *ks = cJSON_AddArrayToObject(j, "kernels");
    for (int k = 0; k < b->n_kernels; ++k) {
        const sprig_resources *r = &b->res[k];
        const sprig_launch *l = &p->kernels[k];
        cJSON *kj = cJSON_CreateObject();
        cJSON_AddStringToObject(kj, "name", b->kernel_names[k]);
        cJSON_AddItemToObject(kj, "grid", cJSON_CreateIntArray((const int[]){(int)l->grid[0], (int)l->grid[1],
                                                                              (int)l->grid[2]}, 3));
        cJSON_AddItemToObject(kj, "block", cJSON_CreateIntArray((const int[]){(int)l->block[0],
                                                                               (int)l->block[1],
                                                                               (int)l->block[2]}, 3));
        cJSON_AddNumberToObject(kj, "dynamic_smem_bytes", l->smem_bytes);
        if (r->registers >= 0) {  /* PTX has no report: the fields are left out */
            cJSON_AddNumberToObject(kj, "registers", r->registers);
            if (r->spill_store_bytes >= 0) { /* unknown when NVRTC's log had no report */
                cJSON_AddNumberToObject(kj, "spill_store_bytes", r->spill_store_bytes);
                cJSON_AddNumberToObject(kj, "spill_load_bytes", r->spill_load_bytes);
            }
            cJSON_AddNumberToObject(kj, "stack_bytes", r->stack_bytes);
            cJSON_AddNumberToObject(kj, "static_smem_bytes", r->static_smem_bytes);
        }
        cJSON_AddItemToArray(ks, kj);
    }
    return j;
}

static void cc_print_json(const cc_opts *o, const cc_plan *plans, int n_plans, const cc_job *jobs, int n_jobs) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n_jobs; ++i) cJSON_AddItemToArray(arr, cc_job_json(o, &jobs[i]));
    for (int i = 0; i < n_plans; ++i) {
        if (!plans[i].skip_reason) continue;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "family", plans[i].family);
        cJSON_AddStringToObject(j, "status", "skipped");
        cJSON_AddStringToObject(j, "reason", plans[i].skip_reason);
        cJSON_AddItemToArray(arr, j);
    }
    char *text = cJSON_Print(arr);
    if (text) printf("%s\n", text);
    free(text);
    cJSON_Delete(arr);
}

static void cc_print_summary(const cc_opts *o, int n_jobs, int failed, int cached, int kernels, int skipped,
                             double compile_ms, int n_threads, double wall_ms) {
    char cache[4096] = "off";
    if (!o->no_cache && !sp_cache_dir(o->cache_dir, cache, sizeof cache)) snprintf(cache, sizeof cache, "off");
    printf("\n%s (d=%d, f=%d) %s: %d of %d compiles ok, %d kernel%s (%d compiled, %.2f s in NVRTC; "
           "%d cached); %d failed; %d famil%s skipped; %.2f s wall on %d thread%s; cache: %s\n",
           o->k.model ? o->k.model : "shape", o->k.d, o->k.f, o->k.dtype, n_jobs - failed, n_jobs, kernels,
           kernels == 1 ? "" : "s", n_jobs - failed - cached, compile_ms / 1e3, cached, failed, skipped,
           skipped == 1 ? "y" : "ies", wall_ms / 1e3, n_threads, n_threads == 1 ? "" : "s", cache);
}

/* Prints the table and summary (or JSON); returns the number of failures. */
static int cc_report(const cc_opts *o, const cc_plan *plans, int n_plans, const cc_job *jobs, int n_jobs,
                     int n_threads, double wall_ms) {
    int failed = 0, cached = 0, kernels = 0, skipped = 0;
    double compile_ms = 0;
    for (int i = 0; i < n_jobs; ++i) {
        if (jobs[i].status != SPRIG_OK) {
            ++failed;
            continue;
        }
        cached += jobs[i].bin->cache_hit;
        kernels += jobs[i].bin->n_kernels;
        compile_ms += jobs[i].bin->compile_ms;
    }
    for (int i = 0; i < n_plans; ++i) skipped += plans[i].skip_reason != NULL;
    if (o->json) {
        cc_print_json(o, plans, n_plans, jobs, n_jobs);
    } else {
        cc_print_header();
        for (int i = 0; i < n_jobs; ++i) cc_print_job(o, &jobs[i]);
        cc_print_summary(o, n_jobs, failed, cached, kernels, skipped, compile_ms, n_threads, wall_ms);
    }
    fflush(stdout); /* the table first, then the full messages of the failures */
    for (int i = 0; i < n_jobs; ++i)
        if (jobs[i].status != SPRIG_OK)
            fprintf(stderr, "sprig compile: %s for %s: %s: %s\n", jobs[i].item->family, jobs[i].arch,
                    sprig_status_name(jobs[i].status), jobs[i].error ? jobs[i].error : "");
    return failed;
}

/* ---- the command ----------------------------------------------------------- */

static int cc_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

static int cc_compile_plans(const cc_opts *o, cc_plan *plans, int n_plans, char archs[][16], int n_archs) {
    cc_job *jobs = calloc((size_t)n_plans * (size_t)n_archs + 1, sizeof *jobs);
    if (!jobs) {
        fprintf(stderr, "sprig compile: out of memory\n");
        return 1;
    }
    int n_jobs = 0;
    for (int p = 0; p < n_plans; ++p)
        for (int a = 0; a < n_archs && plans[p].plan; ++a) {
            jobs[n_jobs].item = &plans[p];
            memcpy(jobs[n_jobs++].arch, archs[a], sizeof jobs[0].arch);
        }
    int n_threads = o->jobs ? o->jobs : cc_default_threads();
    if (n_threads > n_jobs) n_threads = n_jobs > 0 ? n_jobs : 1;
    cc_pool pool = {jobs, n_jobs, 0, 0, o, isatty(STDERR_FILENO), PTHREAD_MUTEX_INITIALIZER};
    double t0 = cc_now_ms();
    cc_run_pool(&pool, n_threads);
    int failed = cc_report(o, plans, n_plans, jobs, n_jobs, n_threads, cc_now_ms() - t0);
    for (int i = 0; i < n_jobs; ++i) {
        sprig_binary_free(jobs[i].bin);
        free(jobs[i].error);
    }
    free(jobs);
    return failed || n_jobs == 0;
}

int cmd_compile(int argc, char **argv) {
    cc_opts o;
    int rc = cc_parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    char archs[CC_MAX_ARCHS][16];
    int n_archs = cc_parse_archs(&o, archs, CC_MAX_ARCHS);
    if (n_archs < 0) return 2;
    if (o.out_dir && sp_mkdir_p(o.out_dir) != 0) {
        fprintf(stderr, "sprig compile: cannot create output folder '%s'\n", o.out_dir);
        return 1;
    }
    sprig_gen *gen = NULL;
    sprig_status s = sprig_gen_open(&gen, o.k.template_dir);
    if (s != SPRIG_OK) return cli_error("starting the generator", s);
    cc_plan plans[CC_MAX_PLANS];
    memset(plans, 0, sizeof plans);
    int n_plans = -1;
    rc = cli_resolve_model(gen, &o.k);
    if (!rc) {
        n_plans = cc_render_all(gen, &o, plans, CC_MAX_PLANS);
        rc = n_plans < 0;
    }
    sprig_gen_close(gen);
    if (!rc) rc = cc_compile_plans(&o, plans, n_plans, archs, n_archs);
    for (int i = 0; i < CC_MAX_PLANS; ++i) {
        sprig_plan_free(plans[i].plan);
        free(plans[i].skip_reason);
    }
    return rc;
}

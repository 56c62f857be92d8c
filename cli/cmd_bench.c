/* sprig bench: the MLP of one model shape with our tuned kernels, against
 * cuBLAS dense and the bandwidth roof measured in the same run, per batch
 * and sparsity (tuner/sp_bench.h); a table, JSON and an SVG chart. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sp_bench.h"
#include "sp_cache.h"
#include "sp_file.h"

#define BE_MAX_LIST 32

typedef struct be_opts {
    cli_kernel_args k;
    int batches[BE_MAX_LIST], n_batches;
    double sparsities[BE_MAX_LIST];
    int n_sparsities;
    const char *db_dir, *defaults_dir, *json_path, *plot_path, *out_dir;
    int reps, warmup, device, no_cublas;
    double read_gib;
    unsigned long long seed;
} be_opts;

static void be_help(FILE *to) {
    fprintf(to,
            "usage: sprig bench (--model NAME | --shape D,F) [--family F [--param K=V]] [options]\n\n"
            "Times the whole MLP (router + up/gate + down, or fused) with the kernels tuned for\n"
            "this GPU, looked up in the tuning databases (exact -> same GPU, nearest shape ->\n"
            "same architecture -> the family's defaults; the table says which), against\n"
            "  - cuBLAS dense: gate and up with cublasGemmEx (fp32 compute), SwiGLU, down, and\n"
            "  - the roof: bytes the MLP must read / the streaming-read bandwidth measured now.\n"
            "Every pipeline's output is checked against a float64 reference first.\n\n"
            "With --family F, times that family's kernels alone instead: every key of its MLP\n"
            "convention at each batch and sparsity (or, with --param K=V, those fixed parameters),\n"
            "params looked up the same way, verified against the family's reference, against the\n"
            "roof of the bytes its declared arguments occupy (every input read once, every output\n"
            "written once). Any family with a reference can be benchmarked this way.\n\n"
            "options:\n"
            "  --model NAME        named shape, e.g. llama2-7b (sprig models lists them)\n"
            "  --shape D,F         model width and MLP width\n"
            "  --dtype fp16|bf16   operand type (default fp16)\n"
            "  --family F          bench one family's kernels (see above)\n"
            "  --param K=V         with --family: a fixed parameter; repeat for several\n"
            "  --batch LIST        tokens per call (default 1,8,32)\n"
            "  --sparsity LIST     percent of experts inactive (default 0,50,75,90)\n"
            "  --g N               neurons per expert (default 32)\n"
            "  --db-dir DIR        tuning database folder (default as sprig tune)\n"
            "  --defaults-dir DIR  also consult the databases in DIR (e.g. tuner/defaults)\n"
            "  --json FILE         write the results as JSON\n"
            "  --plot FILE.svg     write an SVG chart of time against sparsity\n"
            "  --out-dir DIR       write <date>_<device>_<shape>_<dtype>.json and .svg into DIR\n"
            "  --reps N            timed samples per case (default 50)\n"
            "  --read-gib X        the roof kernel streams X GiB (default 1)\n"
            "  --no-cublas         skip the cuBLAS baseline\n"
            "  --seed N            operands seed (default 1)\n"
            "  --device N          GPU ordinal (default 0)\n"
            "  --template-dir DIR  render templates from DIR instead of the embedded ones\n\n"
            "Needs a GPU: without one it says so and exits 1.\n");
}

static int be_list(const char *opt, const char *text, double lo, double hi, double *out) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", text);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end = NULL;
        errno = 0;
        double v = strtod(tok, &end);
        if (n == BE_MAX_LIST || errno || end == tok || *end || !(v >= lo && v <= hi)) {
            fprintf(stderr, "sprig bench: %s expects up to %d numbers in %g..%g, got '%s'\n", opt, BE_MAX_LIST, lo,
                    hi, text);
            return -1;
        }
        out[n++] = v;
    }
    if (!n) fprintf(stderr, "sprig bench: %s names no value\n", opt);
    return n ? n : -1;
}

static int be_value(be_opts *o, const char *a, const char *v) {
    double list[BE_MAX_LIST];
    int n;
    if (!strcmp(a, "--batch")) {
        if ((n = be_list(a, v, 1, 64, list)) < 0) return -1;
        for (int i = 0; i < n; ++i) o->batches[i] = (int)list[i];
        o->n_batches = n;
    } else if (!strcmp(a, "--sparsity")) {
        if ((n = be_list(a, v, 0, 99, o->sparsities)) < 0) return -1;
        o->n_sparsities = n;
    } else if (!strcmp(a, "--reps") || !strcmp(a, "--device") || !strcmp(a, "--seed") || !strcmp(a, "--read-gib")) {
        double hi = !strcmp(a, "--reps") ? 4096 : !strcmp(a, "--device") ? 255 : !strcmp(a, "--seed") ? 1e15 : 64;
        if (be_list(a, v, !strcmp(a, "--reps") ? 1 : 0, hi, list) != 1) return -1;
        if (!strcmp(a, "--reps")) o->reps = (int)list[0];
        else if (!strcmp(a, "--device")) o->device = (int)list[0];
        else if (!strcmp(a, "--seed")) o->seed = (unsigned long long)list[0];
        else o->read_gib = list[0];
    } else if (!strcmp(a, "--db-dir")) o->db_dir = v;
    else if (!strcmp(a, "--defaults-dir")) o->defaults_dir = v;
    else if (!strcmp(a, "--json")) o->json_path = v;
    else if (!strcmp(a, "--plot")) o->plot_path = v;
    else if (!strcmp(a, "--out-dir")) o->out_dir = v;
    else return 0;
    return 1;
}

static int be_parse(int argc, char **argv, be_opts *o) {
    memset(o, 0, sizeof *o);
    cli_kernel_args_init(&o->k);
    const int batches[] = {1, 8, 32};
    const double sparsities[] = {0, 50, 75, 90};
    memcpy(o->batches, batches, sizeof batches), o->n_batches = 3;
    memcpy(o->sparsities, sparsities, sizeof sparsities), o->n_sparsities = 4;
    o->reps = 50, o->warmup = 3, o->read_gib = 1, o->seed = 1;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            be_help(stdout);
            return -1;
        }
        if (!strcmp(a, "--no-cublas")) {
            o->no_cublas = 1;
            continue;
        }
        if (i + 1 < argc) {
            int r = be_value(o, a, argv[i + 1]);
            if (r < 0) return 2;
            if (r > 0) {
                ++i;
                continue;
            }
        }
        int r = cli_kernel_arg(&o->k, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) {
            fprintf(stderr, "sprig bench: unknown option or missing value '%s' (sprig bench --help)\n", a);
            return 2;
        }
    }
    if (o->k.params[0] && !o->k.family) {
        fprintf(stderr, "sprig bench: --param needs --family\n");
        return 2;
    }
    if (strcmp(o->k.dtype, "fp16") && strcmp(o->k.dtype, "bf16")) {
        fprintf(stderr, "sprig bench: --dtype must be fp16 or bf16\n");
        return 2;
    }
    return 0;
}

/* ---- running -------------------------------------------------------------------------------- */

static void be_log(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}

static int be_open_dbs(const be_opts *o, sp_db_set *set) {
    char dir[4096];
    sprig_status s = sp_db_dir(o->db_dir, dir, sizeof dir);
    if (s == SPRIG_OK) s = sp_db_set_add_dir(set, dir);
    if (s == SPRIG_OK && o->defaults_dir) s = sp_db_set_add_dir(set, o->defaults_dir);
    if (s != SPRIG_OK) return cli_error("reading the tuning databases", s);
    if (set->notes && set->notes[0]) fprintf(stderr, "sprig bench: skipped database files:\n%s\n", set->notes);
    fprintf(stderr, "tuning databases: %s%s%s (%zu file%s)\n", dir, o->defaults_dir ? ", " : "",
            o->defaults_dir ? o->defaults_dir : "", set->n, set->n == 1 ? "" : "s");
    return 0;
}

static int be_write(const char *path, char *text, const char *what) {
    if (!text) return cli_error(what, SPRIG_E_NOMEM);
    sprig_status s = sp_bench_write_file(path, text);
    free(text);
    if (s != SPRIG_OK) return cli_error(what, s);
    fprintf(stderr, "wrote %s\n", path);
    return 0;
}

/* <date>_<device>_<shape>_<dtype> with anything but [A-Za-z0-9.-] as '_'. */
static void be_stem(const sp_bench_report *r, char *buf, size_t cap) {
    snprintf(buf, cap, "%.10s_%s_%s_%s", r->date, r->device, r->shape, r->dtype);
    for (char *p = buf; *p; ++p)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '-'))
            *p = '_';
}

static int be_outputs(const be_opts *o, const sp_bench_report *r) {
    int rc = 0;
    if (o->json_path) rc |= be_write(o->json_path, sp_bench_json(r), "writing the JSON");
    if (o->plot_path) rc |= be_write(o->plot_path, sp_bench_svg(r), "writing the chart");
    if (o->out_dir) {
        char stem[512], path[4700];
        be_stem(r, stem, sizeof stem);
        if (sp_mkdir_p(o->out_dir) != 0) {
            fprintf(stderr, "sprig bench: cannot create '%s'\n", o->out_dir);
            return 1;
        }
        snprintf(path, sizeof path, "%s/%s.json", o->out_dir, stem);
        rc |= be_write(path, sp_bench_json(r), "writing the JSON");
        snprintf(path, sizeof path, "%s/%s.svg", o->out_dir, stem);
        rc |= be_write(path, sp_bench_svg(r), "writing the chart");
    }
    return rc;
}

/* --family: one family's kernels against the roof of their declared bytes. */
static int be_run_family(const be_opts *o, sprig_gen *gen, sp_exec *e, const sp_db_set *set, const sp_gpu_id *gpu) {
    sp_bench_kernel_opts ko = {o->k.family, o->k.params[0] ? o->k.params : NULL, o->k.d, o->k.f, o->k.g,
                               o->k.dtype, o->k.model, o->batches, o->n_batches, o->sparsities, o->n_sparsities,
                               o->warmup, o->reps, o->seed, (size_t)(o->read_gib * 1073741824.0), set, gpu};
    sp_bench_kernel_report r;
    sprig_status s = sp_bench_kernels(e, gen, &ko, &r);
    int rc = 0;
    if (r.n) sp_bench_kernel_print(&r, stdout);
    fflush(stdout);
    if (s != SPRIG_OK) rc = cli_error("benchmarking", s);
    if (r.n && o->json_path) rc |= be_write(o->json_path, sp_bench_kernel_json(&r), "writing the JSON");
    sp_bench_kernel_report_free(&r);
    return rc;
}

static int be_run(const be_opts *o, sprig_gen *gen, sp_exec *e) {
    sp_db_set set;
    sp_db_set_init(&set);
    int rc = be_open_dbs(o, &set);
    sp_gpu_id gpu;
    memset(&gpu, 0, sizeof gpu);
    snprintf(gpu.name, sizeof gpu.name, "%.127s", e->device);
    gpu.cc_major = e->cc_major, gpu.cc_minor = e->cc_minor, gpu.sm_count = e->sm_count;
    if (!rc && o->k.family) {
        rc = be_run_family(o, gen, e, &set, &gpu);
        sp_db_set_free(&set);
        return rc;
    }
    sp_cublas_baseline *cub = NULL;
    if (!rc && !o->no_cublas) {
        sprig_status s = sp_cublas_baseline_open(e, gen, o->k.dtype, &cub);
        if (s != SPRIG_OK) fprintf(stderr, "sprig bench: no cuBLAS baseline: %s\n", sprig_last_error());
    }
    sp_bench_opts bo;
    sp_bench_opts_init(&bo);
    bo.d = o->k.d, bo.f = o->k.f, bo.g = o->k.g, bo.dtype = o->k.dtype, bo.shape_name = o->k.model;
    bo.batches = o->batches, bo.n_batches = o->n_batches;
    bo.sparsities = o->sparsities, bo.n_sparsities = o->n_sparsities;
    bo.reps = o->reps, bo.warmup = o->warmup, bo.seed = o->seed;
    bo.read_bytes = (size_t)(o->read_gib * 1073741824.0);
    bo.dbs = &set, bo.gpu = &gpu;
    sp_gpu_profile profile; /* predictions beside the measurements, to check the static model */
    if (!rc && !cli_model_profile(gen, NULL, e->device, &profile)) bo.model_gpu = &profile;
    bo.baseline = cub ? sp_cublas_time_mlp : NULL, bo.baseline_ctx = cub;
    bo.log = be_log;
    sp_bench_report r;
    memset(&r, 0, sizeof r);
    if (!rc) {
        sprig_status s = sp_bench_run(e, gen, &bo, &r);
        if (r.n) sp_bench_print(&r, stdout);
        fflush(stdout);
        if (s != SPRIG_OK) rc = cli_error("benchmarking", s);
        if (r.n) rc |= be_outputs(o, &r);
    }
    sp_bench_report_free(&r);
    sp_cublas_baseline_close(cub);
    sp_db_set_free(&set);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    be_opts o;
    int rc = be_parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    sprig_gen *gen = NULL;
    sprig_status s = sprig_gen_open(&gen, o.k.template_dir);
    if (s != SPRIG_OK) return cli_error("starting the generator", s);
    rc = cli_resolve_model(gen, &o.k);
    sp_exec *e = NULL;
    if (!rc) {
        s = cli_exec_open(&e, o.device);
        if (s == SPRIG_E_NO_DRIVER || s == SPRIG_E_NO_DEVICE) {
            fprintf(stderr, "sprig bench: no GPU to benchmark on: %s\n"
                            "Benchmarks time kernels on a GPU; run sprig bench on a machine with an NVIDIA GPU "
                            "and driver.\n", sprig_last_error());
            rc = 1;
        } else if (s != SPRIG_OK) {
            rc = cli_error("opening the GPU", s);
        }
    }
    if (!rc) rc = be_run(&o, gen, e);
    sp_exec_close(e);
    sprig_gen_close(gen);
    return rc;
}

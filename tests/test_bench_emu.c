/* sprig bench's engine (sp_bench_run) on the CPU emulator, tiny shape: the
 * roof kernel runs, every pipeline (router + gather_upgate + gather_down,
 * router + fused_mlp, router + gather_gemm; and their dense forms) is
 * verified against float64 and timed, tuned params are found in a database
 * ("exact") where they were put and the families' defaults are used where
 * not ("generic_default"), and the report's writers take the result. The
 * timings are the emulator's wall clock: plumbing, not performance. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_emu.h"
#include "sp_bench.h"
#include "sp_gen_perf.h"
#include "sp_db.h"
#include "sp_mlp_keys.h"
#include "sprig.h"
#include "test_util.h"

#define D 64
#define F 256
#define G 16
#define B 4

static const sp_gpu_id EMU_GPU = {"CPU emulator", 0, 0, 0};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Records params as the tuned winner of (family, variant, sparsity) at batch B. */
static void put_entry(sprig_gen *gen, sp_db *db, const char *family, int v, double sparsity, const char *params) {
    char fixed[64];
    CHECK(sp_mlp_fixed(gen, family, sparsity, v, fixed, sizeof fixed) > v);
    sprig_request req = {family, D, F, "fp16", B, G, params};
    sprig_plan *plan = NULL;
    sprig_status st = sprig_gen_render(gen, &req, &plan);
    CHECK_MSG(st == SPRIG_OK, "%s [%s]: %s", family, params, sprig_last_error());
    if (st != SPRIG_OK) return;
    sp_db_key key;
    CHECK(sp_db_key_make(&key, family, plan->template_hash, D, F, "fp16", B, sparsity, G, fixed) == SPRIG_OK);
    sprig_plan_free(plan);
    sp_trial t;
    memset(&t, 0, sizeof t);
    t.params = (char *)params;
    t.m.verdict = SP_VERDICT_OK, t.m.median_us = 10, t.m.min_us = 9, t.m.runs = 3;
    t.confirmed = 1, t.confirm_median_us = 10;
    sp_search_result r;
    memset(&r, 0, sizeof r);
    r.trials = &t, r.n_trials = 1, r.winner = 0, r.n_ok = 1, r.exhaustive = 1;
    CHECK_MSG(sp_db_put(db, &key, &r) == SPRIG_OK, "%s", sprig_last_error());
}

typedef struct log_lines {
    char text[16384];
    size_t n;
} log_lines;

static void on_log(void *ctx, const char *line) {
    log_lines *l = ctx;
    size_t len = strlen(line);
    if (l->n + len + 2 < sizeof l->text) {
        memcpy(l->text + l->n, line, len);
        l->n += len;
        l->text[l->n++] = '\n';
        l->text[l->n] = '\0';
    }
    printf("%s\n", line);
}

/* The log line of a pipeline at a sparsity, or NULL. */
static const char *line_of(const log_lines *l, const char *prefix) {
    return strstr(l->text, prefix);
}

int main(void) {
    char root[] = "/tmp/sprig_test_bench_emu_XXXXXX";
    if (!mkdtemp(root)) return perror("mkdtemp"), 1;
    sprig_gen *gen = NULL;
    sp_exec *e = NULL;
    if (sprig_gen_open(&gen, NULL) != SPRIG_OK || sp_exec_open_emu(&e) != SPRIG_OK) {
        fprintf(stderr, "setup: %s\n", sprig_last_error());
        return 1;
    }
    sp_db *db = NULL;
    CHECK(sp_db_open(&db, root, &EMU_GPU, 0) == SPRIG_OK);
    const char *up = "threads=64,rows_per_warp=1,vec=8,unroll=2,ksplit=1,min_blocks=1,interleave=1,x_smem=0,all_active=";
    const char *down = "layout=t,threads=64,vec=8,cols_per_cta=64,splits=2,reduce=deterministic,rows_per_warp=1,"
                       "batch_tile=8,unroll=2,all_active=";
    char p[512];
    put_entry(gen, db, "router", 0, 50, "score=sigmoid,threads=64,rows_per_warp=1,vec=8,unroll=1,ksplit=2,min_blocks=1");
    for (int dense = 0; dense < 2; ++dense) {
        snprintf(p, sizeof p, "%s%d", up, dense);
        put_entry(gen, db, "gather_upgate", 0, dense ? 0 : 50, p);
        snprintf(p, sizeof p, "%s%d", down, dense);
        put_entry(gen, db, "gather_down", 0, dense ? 0 : 50, p);
    }
    sp_db_set set;
    sp_db_set_init(&set);
    CHECK(sp_db_set_add(&set, db, 1) == SPRIG_OK);

    const int batches[] = {B};
    const double sparsities[] = {0, 50};
    log_lines log = {"", 0};
    sp_bench_opts o;
    sp_bench_opts_init(&o);
    o.d = D, o.f = F, o.g = G, o.dtype = "fp16", o.shape_name = "tiny";
    o.batches = batches, o.n_batches = 1, o.sparsities = sparsities, o.n_sparsities = 2;
    o.warmup = 0, o.reps = 1, o.read_bytes = 1 << 20;
    o.dbs = &set, o.gpu = &EMU_GPU, o.log = on_log, o.log_ctx = &log;
    sp_gpu_profile h200; /* the prediction printed beside each measurement */
    CHECK(sp_gen_gpu_profile(gen, "h200", &h200) == SPRIG_OK);
    o.model_gpu = &h200;
    sp_bench_report r;
    sprig_status st = sp_bench_run(e, gen, &o, &r);
    CHECK_MSG(st == SPRIG_OK, "%s", sprig_last_error());
    sp_bench_print(&r, stdout);
    CHECK(r.n == 2 && r.read_gbs > 0 && r.read_bytes == 1 << 20);
    for (size_t i = 0; i < r.n; ++i) {
        const sp_bench_row *w = &r.rows[i];
        CHECK_MSG(w->ours_us > 0 && w->ours_rel_err < 1e-2 && w->roof_us > 0 && w->cublas_us < 0,
                  "row %zu: ours %g rel %g roof %g", i, w->ours_us, w->ours_rel_err, w->roof_us);
        CHECK_MSG(!w->note[0], "row %zu note: %s", i, w->note);
        /* at least the roof of the bytes it moves at the profile's bandwidth, plus a round trip */
        CHECK_MSG(w->predicted_us > w->bytes / (h200.read_gbs * 1e3), "row %zu: predicted %g us", i, w->predicted_us);
    }
    if (r.n == 2) {
        /* dense: every expert read; sparse: the union of 4 tokens at 50% */
        CHECK(r.rows[0].active_frac == 1.0 && r.rows[0].bytes == 3.0 * F * D * 2 + 2.0 * B * D);
        CHECK_MSG(r.rows[1].active_frac > 0.5 && r.rows[1].active_frac <= 1.0, "union %g", r.rows[1].active_frac);
        CHECK(!strncmp(r.rows[1].ours_what, "router+", 7) && strncmp(r.rows[0].ours_what, "router+", 7));
    }
    const char *gl = line_of(&log, "b=4 s=50%: router+gather_upgate+gather_down:");
    CHECK_MSG(gl && sp_contains(gl, "[exact,exact,exact]"), "%s", gl ? gl : "(no line)");
    const char *fl = line_of(&log, "b=4 s=50%: router+fused_mlp:");
    CHECK_MSG(fl && sp_contains(fl, "[exact,generic_default]"), "%s", fl ? fl : "(no line)");
    CHECK(line_of(&log, "b=4 s=0%: gather_gemm:") && line_of(&log, "b=4 s=50%: router+gather_gemm:"));
    char *json = sp_bench_json(&r), *svg = sp_bench_svg(&r);
    CHECK(json && sp_contains(json, "\"ours_pipeline\"") && svg && sp_contains(svg, "batch 4"));
    free(json), free(svg);
    sp_bench_report_free(&r);
    sp_db_set_free(&set);
    sp_exec_close(e);
    sprig_gen_close(gen);
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return sp_test_finish("test_bench_emu", 0);
}

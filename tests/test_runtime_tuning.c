/* The runtime's kernel parameters from the tuning database
 * (tuner/sp_runtime_tuning.h), on the CPU emulator with the tiny models:
 *   (a) a database entry for gather_upgate at tiny-llama2's MLP shape is the
 *       hook's answer, source exact;
 *   (b) a kernel set with the hook, opening tiny-llama2, loads a plan with
 *       those params (not the family's defaults, not the emulator's cheap ones);
 *   (c) the logits still match the CPU backend, so the tuned kernel ran right;
 *   (d) another shape falls back to the nearest shape tuned on this GPU, and a
 *       problem with no entry to the backend's defaults (hook returns 0);
 *   (e) a corrupt db file is skipped with a note, and loading works with defaults;
 *   (f) rmsnorm / attention_decode (and router score=silu_abs) never cause a lookup,
 *       even with an entry for that very key in the database;
 * plus what the runtime fixes: an interleaved gather_upgate winner gives way to
 * the fastest non-interleaved measured candidate (an interleaved one gives NaN
 * logits: the backend uploads W_gate and W_up separately), a layout=n
 * gather_down entry is not used where the backend fixes layout=t, a fixed param
 * the tuner skips (dense_gemv accumulate=1) is merged over a tuned answer; the
 * routed requests of tiny-llama2-lte served by nearest entries (its W_down then
 * packed for layout=n) with the CPU's logits; and the summary (JSON, line). */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_emu.h"
#include "sp_cache.h"
#include "sp_file.h"
#include "sp_cpu.h"
#include "sp_db.h"
#include "sp_gpu.h"
#include "sp_mlp_keys.h"
#include "sp_runtime_tuning.h"
#include "test_util.h"

/* tiny-llama2: d=64, f=192, no routers: the dense MLP path (g = 1, all_active=1) */
#define D 64
#define F 192
/* differs from the defaults (threads=256, rows_per_warp=1) and the emulator's (threads=64, rows_per_warp=4) */
#define UP_TUNED "threads=64,rows_per_warp=2,vec=8,unroll=1,ksplit=1,min_blocks=1,interleave=0,all_active=1,x_smem=0"
#define UP_TUNED_KEY "|threads=64,rows_per_warp=2,vec=8,unroll=1,"
#define UP_EMU_KEY "|threads=64,rows_per_warp=4,"

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

typedef struct trial_spec {
    const char *params;
    double us;
    int ok;
} trial_spec;

/* Records trials[0..n) for the key (the first is the winner), as sprig tune
 * would. The key's template hash is that of the family's defaults with the
 * fixed params (what sp_mlp_lookup looks for; a gather_down layout=n plan
 * includes other files than the default layout=t one, so its own hash differs). */
static void put_entry(sprig_gen *gen, sp_db *db, const char *family, int d, int f, int g, double sparsity,
                      const char *fixed, const trial_spec *trials, int n) {
    sprig_request req = {family, d, f, "fp16", 1, g, NULL};
    sprig_plan *plan = NULL;
    for (int i = 0; i < n; ++i) { /* every candidate renders for the key */
        req.params = trials[i].params;
        sprig_status st = sprig_gen_render(gen, &req, &plan);
        CHECK_MSG(st == SPRIG_OK, "%s [%s]: %s", family, trials[i].params, sprig_last_error());
        sprig_plan_free(plan);
        plan = NULL;
    }
    req.params = fixed;
    sprig_status st = sprig_gen_render(gen, &req, &plan);
    CHECK_MSG(st == SPRIG_OK, "%s [%s]: %s", family, fixed, sprig_last_error());
    if (st != SPRIG_OK) return;
    sp_db_key key;
    CHECK(sp_db_key_make(&key, family, plan->template_hash, d, f, "fp16", 1, sparsity, g, fixed) == SPRIG_OK);
    sprig_plan_free(plan);
    sp_trial t[4];
    memset(t, 0, sizeof t);
    for (int i = 0; i < n; ++i) {
        t[i].params = (char *)trials[i].params;
        t[i].m.verdict = trials[i].ok ? SP_VERDICT_OK : SP_VERDICT_WRONG;
        t[i].m.median_us = trials[i].us, t[i].m.min_us = trials[i].us, t[i].m.runs = 3;
        t[i].confirmed = trials[i].ok, t[i].confirm_median_us = trials[i].us;
    }
    sp_search_result r;
    memset(&r, 0, sizeof r);
    r.trials = t, r.n_trials = (size_t)n, r.winner = 0, r.n_ok = 1, r.exhaustive = 1;
    CHECK_MSG(sp_db_put(db, &key, &r) == SPRIG_OK, "%s", sprig_last_error());
}

/* The emulator's database with the entries the cases below look for. */
static void write_db(const char *dir, const sp_gpu_id *gpu) {
    sprig_gen *gen = NULL;
    sp_db *db = NULL;
    CHECK(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    CHECK_MSG(sp_db_open(&db, dir, gpu, 0) == SPRIG_OK, "%s", sprig_last_error());
    if (!gen || !db) return;
    const trial_spec up[] = {{UP_TUNED, 10, 1}};
    put_entry(gen, db, "gather_upgate", D, F, 1, 0, "all_active=1", up, 1);
    /* g = 16 at 50%: the interleaved winner cannot run on the runtime's weights */
    const trial_spec il[] = {
        {"threads=64,rows_per_warp=1,vec=8,unroll=2,ksplit=1,min_blocks=1,interleave=1,all_active=0,x_smem=0", 10, 1},
        {"threads=64,rows_per_warp=1,vec=8,unroll=2,ksplit=1,min_blocks=1,interleave=0,all_active=0,x_smem=0", 14, 1},
        {"threads=128,rows_per_warp=1,vec=8,unroll=2,ksplit=1,min_blocks=1,interleave=0,all_active=0,x_smem=0", 12, 1},
        {"threads=256,rows_per_warp=1,vec=8,unroll=2,ksplit=1,min_blocks=1,interleave=0,all_active=0,x_smem=0", 5, 0},
    };
    put_entry(gen, db, "gather_upgate", D, 256, 16, 50, "all_active=0", il, 4);
    /* gather_down measured with layout n only */
    const trial_spec dn[] = {{"layout=n,threads=64,vec=8,cols_per_cta=256,splits=0,reduce=atomic,"
                              "rows_per_warp=2,batch_tile=8,unroll=2,all_active=0", 10, 1}};
    put_entry(gen, db, "gather_down", D, 256, 16, 50, "all_active=0", dn, 1);
    /* an entry for a family the runtime must not look up */
    const trial_spec norm[] = {{"mode=add,threads=32", 1, 1}};
    put_entry(gen, db, "rmsnorm", D, D, 1, 0, "mode=add", norm, 1);
    CHECK_MSG(sp_db_save(db) == SPRIG_OK, "%s", sprig_last_error());
    sp_db_close(db);
    /* in a folder of its own (it would serve every dense_gemv of the models as the nearest
       shape): dense_gemv, for a request with a param the tuner skips */
    char gemv_dir[300];
    snprintf(gemv_dir, sizeof gemv_dir, "%s-gemv", dir);
    db = NULL;
    CHECK_MSG(sp_db_open(&db, gemv_dir, gpu, 0) == SPRIG_OK, "%s", sprig_last_error());
    const trial_spec gemv[] = {{"op=up,threads=64,rows_per_warp=2,vec=8,unroll=1", 10, 1}};
    if (db) put_entry(gen, db, "dense_gemv", D, 128, 1, 0, "op=up", gemv, 1);
    if (db) CHECK_MSG(sp_db_save(db) == SPRIG_OK, "%s", sprig_last_error());
    sp_db_close(db);
    sprig_gen_close(gen);
}

/* Calls the hook as the backend would; returns its answer (1/0), params in buf. */
static int ask(sp_runtime_tuning *t, const char *family, int d, int f, int g, const char *fixed, double sparsity,
               char *buf, size_t cap) {
    sprig_request req = {family, d, f, "fp16", 1, g, fixed};
    char why[512];
    buf[0] = '\0';
    const int r = sp_runtime_tuning_choose(t, &req, sparsity, buf, cap, why, sizeof why);
    printf("  %s d=%d f=%d g=%d [%s] s=%g -> %d [%s]\n    %s\n", family, d, f, g, fixed, sparsity, r, buf, why);
    return r;
}

/* The recorded answer of the last distinct request. */
static const sp_rt_choice *last(const sp_runtime_tuning *t) {
    size_t n = sp_runtime_tuning_count(t);
    return n ? sp_runtime_tuning_choice(t, n - 1) : NULL;
}

static void hook_cases(const char *dir, sp_exec *e) {
    sp_runtime_tuning *t = NULL;
    CHECK_MSG(sp_runtime_tuning_open(e, dir, NULL, &t) == SPRIG_OK, "%s", sprig_last_error());
    if (!t) return;
    CHECK(sp_runtime_tuning_n_files(t) == 1 && !*sp_runtime_tuning_notes(t));
    char buf[640];
    const sp_rt_choice *c;
    /* (a) exact */
    CHECK(ask(t, "gather_upgate", D, F, 1, "all_active=1", 0, buf, sizeof buf) == 1);
    c = last(t);
    CHECK(c && c->source == SP_RT_EXACT && c->used && sp_contains(c->db, ".json"));
    CHECK_MSG(sp_contains(buf, "rows_per_warp=2") && sp_contains(buf, "threads=64") && sp_contains(buf, "all_active=1"),
              "%s", buf);
    /* asked again: the recorded answer, no second lookup */
    const int lookups = sp_runtime_tuning_lookups(t);
    CHECK(ask(t, "gather_upgate", D, F, 1, "all_active=1", 0, buf, sizeof buf) == 1 && sp_contains(buf, "rows_per_warp=2"));
    CHECK(sp_runtime_tuning_lookups(t) == lookups && sp_runtime_tuning_count(t) == 1);
    /* (d) nearest shape on this GPU */
    CHECK(ask(t, "gather_upgate", D, 256, 1, "all_active=1", 0, buf, sizeof buf) == 1);
    c = last(t);
    CHECK(c && c->source == SP_RT_SAME_GPU_NEAREST && sp_contains(buf, "rows_per_warp=2"));
    /* nothing tuned for the routed variant of that problem (all_active=0 at 50%): defaults */
    CHECK(ask(t, "gather_upgate", D, F, 1, "", 50, buf, sizeof buf) == 0);
    c = last(t);
    CHECK(c && c->source == SP_RT_GENERIC_DEFAULT && !c->used && !buf[0]);
    CHECK(ask(t, "dense_gemv", D, 896, 1, "op=up", 0, buf, sizeof buf) == 0);
    CHECK(last(t)->source == SP_RT_GENERIC_DEFAULT);
    /* the interleaved winner gives way to the fastest verified non-interleaved candidate (12 us, not the
       wrong 5 us) when the request fixes interleave=0, as the backend's does (it packs W_gate, W_up apart) */
    CHECK(ask(t, "gather_upgate", D, 256, 16, "interleave=0", 50, buf, sizeof buf) == 1);
    c = last(t);
    CHECK(c && c->source == SP_RT_EXACT && sp_contains(buf, "interleave=0") && sp_contains(buf, "threads=128"));
    CHECK(c && sp_contains(c->explain, "interleave=1"));
    /* gather_down: layout=n tuned; where the backend fixes layout=t it is not used */
    CHECK(ask(t, "gather_down", D, 256, 16, "", 50, buf, sizeof buf) == 1 && sp_contains(buf, "layout=n"));
    CHECK(last(t)->source == SP_RT_EXACT);
    CHECK(ask(t, "gather_down", D, 256, 16, "layout=t", 50, buf, sizeof buf) == 0);
    c = last(t);
    CHECK(c && c->source == SP_RT_UNUSABLE && !c->used && sp_contains(c->explain, "layout=t"));
    /* (f) untuned families and variants: no lookup, even with an rmsnorm entry in the db */
    const int before = sp_runtime_tuning_lookups(t);
    CHECK(ask(t, "rmsnorm", D, D, 1, "mode=add", 0, buf, sizeof buf) == 0);
    CHECK(last(t)->source == SP_RT_UNTUNED);
    CHECK(ask(t, "attention_decode", D, F, 1, "heads=4,kv_heads=4,head_dim=16", 0, buf, sizeof buf) == 0);
    CHECK(last(t)->source == SP_RT_UNTUNED);
    CHECK(ask(t, "router", D, F, 1, "score=silu_abs", 50, buf, sizeof buf) == 0);
    CHECK(last(t)->source == SP_RT_UNTUNED);
    CHECK_MSG(sp_runtime_tuning_lookups(t) == before, "%d lookups for untuned requests",
              sp_runtime_tuning_lookups(t) - before);
    /* the router's tuned variant is looked up (nothing there: defaults) */
    CHECK(ask(t, "router", D, F, 16, "score=sigmoid", 50, buf, sizeof buf) == 0);
    CHECK(last(t)->source == SP_RT_GENERIC_DEFAULT && sp_runtime_tuning_lookups(t) == before + 1);
    /* summary */
    char line[2048];
    sp_runtime_tuning_summary_line(t, line, sizeof line);
    printf("  %s\n", line);
    CHECK_MSG(sp_contains(line, "11 kernel requests: 3 exact, 1 same_gpu_nearest_shape, 0 same_arch, 3 generic_default, "
                                "3 untuned, 1 unusable; db files: "), "%s", line);
    cJSON *j = sp_runtime_tuning_summary_json(t);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    CHECK(text && sp_contains(text, "\"enabled\":true") && sp_contains(text, "\"exact\":3") &&
          sp_contains(text, "\"source\":\"same_gpu_nearest_shape\"") && sp_contains(text, "\"lookups\":8"));
    const cJSON *reqs = cJSON_GetObjectItemCaseSensitive(j, "requests");
    CHECK(cJSON_GetArraySize(reqs) == 11);
    free(text);
    cJSON_Delete(j);
    j = sp_runtime_tuning_summary_json(NULL);
    text = j ? cJSON_PrintUnformatted(j) : NULL;
    CHECK(text && !strcmp(text, "{\"enabled\":false}"));
    free(text);
    cJSON_Delete(j);
    sp_runtime_tuning_close(t);

    /* a fixed param the tuner does not choose (dense_gemv accumulate, tune.skip) is merged over
       the tuned answer instead of disqualifying it; skipped where dense_gemv has no such param */
    char gemv_dir[300];
    snprintf(gemv_dir, sizeof gemv_dir, "%s-gemv", dir);
    sprig_request acc = {"dense_gemv", D, 128, "fp16", 1, 1, "op=up,accumulate=1"};
    char *acc_defaults = NULL;
    sprig_gen *gen = NULL;
    t = NULL;
    CHECK_MSG(sp_runtime_tuning_open(e, gemv_dir, NULL, &t) == SPRIG_OK, "%s", sprig_last_error());
    if (t && sprig_gen_open(&gen, NULL) == SPRIG_OK && sp_space_defaults(gen, &acc, &acc_defaults, NULL) == SPRIG_OK) {
        CHECK(ask(t, "dense_gemv", D, 128, 1, "op=up,accumulate=1", 0, buf, sizeof buf) == 1);
        c = last(t);
        CHECK(c && c->source == SP_RT_EXACT && sp_contains(buf, "accumulate=1") && sp_contains(buf, "rows_per_warp=2"));
    } else {
        printf("  dense_gemv has no accumulate parameter here: that case is skipped\n");
    }
    free(acc_defaults);
    sprig_gen_close(gen);
    sp_runtime_tuning_close(t);
}


/* Opens the model on the kernel set and compares n positions of a fixed token
 * sequence with the CPU backend (DESIGN tolerance for fp16: 1e-2). */
static void run_model(sp_gpu_kernels *ks, const sp_model *m, const char *what, int n) {
    sp_gpu *g = NULL;
    sp_cpu *c = NULL;
    CHECK_MSG(sp_gpu_open(ks, m, n, SP_MLP_AUTO, "fp16", &g) == SPRIG_OK, "%s: %s", what, sprig_last_error());
    CHECK_MSG(sp_cpu_open(m, n, SP_MLP_AUTO, &c) == SPRIG_OK, "%s: %s", what, sprig_last_error());
    double worst = g && c ? 0 : INFINITY;
    for (int p = 0; g && c && p < n; ++p) {
        const int tok = (p * 131 + 47) % m->cfg->vocab_size;
        const float *lg = NULL, *lc = NULL;
        CHECK_MSG(sp_gpu_forward(g, tok, p, &lg) == SPRIG_OK && sp_cpu_forward(c, tok, p, &lc) == SPRIG_OK, "%s: %s",
                  what, sprig_last_error());
        if (!lg || !lc) break;
        const double err = sp_rel_err_f32(lg, lc, m->cfg->vocab_size);
        if (!(err <= worst)) worst = err;
    }
    printf("%s: %d positions, worst logits rel err %.3g\n", what, n, worst);
    CHECK_MSG(worst < 1e-2, "%s: logits rel err %.3g against the CPU backend", what, worst);
    sp_cpu_close(c);
    sp_gpu_close(g);
}

static int has_key(const sp_gpu_kernels *ks, const char *family, const char *part) {
    for (int i = 0; i < sp_gpu_kernels_count(ks); ++i) {
        const char *k = sp_gpu_kernels_key(ks, i);
        if (!strncmp(k, family, strlen(family)) && k[strlen(family)] == ':' && sp_contains(k, part)) return 1;
    }
    return 0;
}

static void model_cases(const char *dir, const char *bad_dir, sp_exec *e, const char *models) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tiny-llama2", models);
    sp_model *m = NULL, *lte = NULL;
    CHECK_MSG(sp_model_open(path, &m) == SPRIG_OK, "%s", sprig_last_error());
    sp_runtime_tuning *t = NULL, *bad = NULL;
    sp_gpu_kernels *ks = NULL;
    CHECK_MSG(sp_runtime_tuning_open(e, dir, NULL, &t) == SPRIG_OK, "%s", sprig_last_error());
    CHECK(sp_gpu_kernels_open(e, &ks) == SPRIG_OK);
    if (!m || !t || !ks) goto done;
    /* (b), (c): the tuned gather_upgate is loaded and the model still computes the CPU's logits */
    sp_tuning_hook hook = sp_runtime_tuning_hook(t);
    sp_gpu_kernels_set_tuning(ks, &hook);
    run_model(ks, m, "tiny-llama2 tuned", 4);
    for (int i = 0; i < sp_gpu_kernels_count(ks); ++i) printf("  plan %s\n", sp_gpu_kernels_key(ks, i));
    CHECK_MSG(has_key(ks, "gather_upgate", UP_TUNED_KEY), "no gather_upgate plan with %s", UP_TUNED);
    CHECK(!has_key(ks, "gather_upgate", UP_EMU_KEY));
    char line[2048];
    sp_runtime_tuning_summary_line(t, line, sizeof line);
    printf("  %s\n", line);
    /* untuned: the embedding's rmsnorm and attention (the other norms are folded into o_proj and gather_down) */
    CHECK_MSG(sp_contains(line, " 1 exact,") && sp_runtime_tuning_count_source(t, SP_RT_UNTUNED) == 2, "%s", line);
    const size_t llama2_requests = sp_runtime_tuning_count(t);
    /* tiny-llama2-lte (g = 16, f = 192): the routed requests map onto the convention; the
       nearest entries at f = 256 serve gather_upgate (the non-interleaved candidate) and
       gather_down (layout=n: the backend packs W_down for it), and the logits still match */
    snprintf(path, sizeof path, "%s/tiny-llama2-lte", models);
    CHECK_MSG(sp_model_open(path, &lte) == SPRIG_OK, "%s", sprig_last_error());
    if (lte) run_model(ks, lte, "tiny-llama2-lte tuned", 3);
    CHECK(has_key(ks, "gather_down", "d=64,f=192,dtype=fp16,batch=1,g=16|layout=n,threads=64,vec=8,cols_per_cta=256"));
    CHECK(has_key(ks, "gather_upgate", "g=16|threads=128,rows_per_warp=1,vec=8,unroll=2,ksplit=1,min_blocks=1,interleave=0"));
    int routed = 0;
    for (size_t i = 0; i < sp_runtime_tuning_count(t); ++i) {
        const sp_rt_choice *c = sp_runtime_tuning_choice(t, i);
        if (c->g != 16) continue;
        ++routed;
        if (!strcmp(c->family, "router")) CHECK(c->source == SP_RT_GENERIC_DEFAULT && !strcmp(c->fixed, "score=sigmoid"));
        else CHECK_MSG(c->source == SP_RT_SAME_GPU_NEAREST && c->used && c->sparsity == 50, "%s: %s", c->family, c->explain);
    }
    /* the router is folded into gather_upgate (route=sigmoid): two routed requests, the
       upgate answered from the routed key whose tuned params it takes */
    CHECK_MSG(routed == 2, "%d routed requests", routed);
    CHECK(has_key(ks, "gather_upgate", "route=sigmoid") && has_key(ks, "gather_down", "h_index=neuron"));
    /* (e): a folder with a corrupt file only: skipped with a note, every kernel at the defaults
       (on the emulator the cheap plans: only gather_upgate differs from the run above) */
    CHECK_MSG(sp_runtime_tuning_open(e, bad_dir, NULL, &bad) == SPRIG_OK, "%s", sprig_last_error());
    if (!bad) goto done;
    printf("  notes: %s\n", sp_runtime_tuning_notes(bad));
    CHECK(sp_runtime_tuning_n_files(bad) == 0 && sp_contains(sp_runtime_tuning_notes(bad), "CPU_emulator-sm00-0sm.json"));
    hook = sp_runtime_tuning_hook(bad);
    sp_gpu_kernels_set_tuning(ks, &hook);
    const int before = sp_gpu_kernels_count(ks);
    run_model(ks, m, "tiny-llama2 corrupt db", 3);
    CHECK_MSG(sp_gpu_kernels_count(ks) == before + 1 && has_key(ks, "gather_upgate", UP_EMU_KEY), "%d plans, %d before",
              sp_gpu_kernels_count(ks), before);
    for (size_t i = 0; i < sp_runtime_tuning_count(bad); ++i) CHECK(!sp_runtime_tuning_choice(bad, i)->used);
    CHECK(sp_runtime_tuning_count(bad) == llama2_requests);
    sp_runtime_tuning_summary_line(bad, line, sizeof line);
    printf("  %s\n", line);
    CHECK_MSG(sp_contains(line, "no database files in"), "%s", line);
done:
    sp_gpu_kernels_close(ks);
    sp_runtime_tuning_close(bad);
    sp_runtime_tuning_close(t);
    sp_model_close(lte);
    sp_model_close(m);
}

int main(int argc, char **argv) {
    const char *models = argc > 1 ? argv[1] : "tests/fixtures/models";
    char root[] = "/tmp/sprig_test_runtime_tuning_XXXXXX";
    if (!mkdtemp(root)) return perror("mkdtemp"), 1;
    char dir[256], bad_dir[256], bad_file[640];
    snprintf(dir, sizeof dir, "%s/db", root);
    snprintf(bad_dir, sizeof bad_dir, "%s/bad", root);
    sp_exec *e = NULL;
    if (sp_exec_open_emu(&e) != SPRIG_OK) {
        fprintf(stderr, "test_runtime_tuning: %s\n", sprig_last_error());
        return 1;
    }
    sp_gpu_id gpu;
    memset(&gpu, 0, sizeof gpu);
    snprintf(gpu.name, sizeof gpu.name, "%.127s", e->device);
    gpu.cc_major = e->cc_major, gpu.cc_minor = e->cc_minor, gpu.sm_count = e->sm_count;
    write_db(dir, &gpu);
    /* the same file name, truncated JSON */
    char name[256];
    sp_db_file_name(&gpu, name, sizeof name);
    snprintf(bad_file, sizeof bad_file, "%s/%s", bad_dir, name);
    CHECK(sp_mkdir_p(bad_dir) == 0);
    FILE *fp = fopen(bad_file, "w");
    CHECK(fp != NULL);
    if (fp) fputs("{\"format\": \"sprig-tuning-db\", \"version\": 1, \"gpu\": {\"na", fp), fclose(fp);

    printf("hook answers:\n");
    hook_cases(dir, e);
    model_cases(dir, bad_dir, e, models);

    sp_exec_close(e);
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return sp_test_finish("test_runtime_tuning", 0);
}

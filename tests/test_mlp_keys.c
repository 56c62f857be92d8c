/* The MLP key convention of sprig tune / sprig bench (tuner/sp_mlp_keys.h):
 * which families are tuned per batch and sparsity with which fixed params,
 * families that cannot serve a key skipped with their reason, lookups that
 * fall back from a tuned entry to the family's defaults; and the two
 * commands' argument checks and no-GPU exit (argv[1]: the sprig binary). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sp_device.h"
#include "sp_mlp_keys.h"
#include "sprig.h"
#include "test_util.h"

static size_t count_keys(const sp_mlp_keys *k, const char *family, int batch, double s, const char *fixed) {
    size_t n = 0;
    for (size_t i = 0; i < k->n; ++i) {
        const sp_tune_key *x = &k->keys[i];
        if ((!family || !strcmp(x->family, family)) && (batch < 0 || x->batch == batch) &&
            (s < 0 || x->sparsity == s) && (!fixed || !strcmp(x->fixed, fixed)))
            ++n;
    }
    return n;
}

static void test_fixed(sprig_gen *gen) {
    char buf[64];
    CHECK(sp_mlp_fixed(gen, "router", 0, 0, buf, sizeof buf) == 0);
    CHECK(sp_mlp_fixed(gen, "router", 50, 0, buf, sizeof buf) == 1 && !strcmp(buf, "score=sigmoid"));
    CHECK(sp_mlp_fixed(gen, "dense_gemv", 0, 1, buf, sizeof buf) == 2 && !strcmp(buf, "op=down"));
    CHECK(sp_mlp_fixed(gen, "dense_gemv", 75, 0, buf, sizeof buf) == 0);
    CHECK(sp_mlp_fixed(gen, "gather_down", 0, 0, buf, sizeof buf) == 1 && !strcmp(buf, "all_active=1"));
    CHECK(sp_mlp_fixed(gen, "fused_mlp", 90, 0, buf, sizeof buf) == 1 && !strcmp(buf, "all_active=0"));
    CHECK(sp_mlp_fixed(gen, "gather_gemm", 0, 0, buf, sizeof buf) == 2 && !strcmp(buf, "stage=upgate"));
    CHECK(sp_mlp_fixed(gen, "rmsnorm", 0, 0, buf, sizeof buf) == 0);
    CHECK(sp_mlp_default_family(gen, "gather_gemm", 8) && !sp_mlp_default_family(gen, "gather_gemm", 1));
}

static void test_default_keys(sprig_gen *gen) {
    const char *dtypes[] = {"fp16"};
    const int batches[] = {1, 8, 32};
    const double sp[] = {0, 50, 75, 90};
    sp_mlp_key_request req = {4096, 11008, 32, dtypes, 1, batches, 3, sp, 4, NULL, 0};
    sp_mlp_keys k;
    sprig_status st = sp_mlp_keys_build(gen, &req, &k);
    CHECK_MSG(st == SPRIG_OK, "%s", sprig_last_error());
    /* per batch: s=0 gather_upgate, gather_down, fused_mlp, dense_gemv x2; s>0 router, upgate, down, fused;
     * from batch 8 gather_gemm x2 at every s; fused_mlp serves batch <= 8 only */
    CHECK_MSG(k.n == 17 + 25 + 21, "%zu keys", k.n);
    CHECK(count_keys(&k, "router", -1, 0, NULL) == 0 && count_keys(&k, "router", -1, 50, "score=sigmoid") == 3);
    CHECK(count_keys(&k, "dense_gemv", -1, -1, NULL) == 6 && count_keys(&k, "dense_gemv", -1, 50, NULL) == 0);
    CHECK(count_keys(&k, "gather_upgate", -1, 0, "all_active=1") == 3);
    CHECK(count_keys(&k, "gather_down", -1, 90, "all_active=0") == 3);
    CHECK(count_keys(&k, "gather_gemm", 1, -1, NULL) == 0 && count_keys(&k, "gather_gemm", 32, -1, "stage=down") == 4);
    CHECK(count_keys(&k, "fused_mlp", 32, -1, NULL) == 0 && count_keys(&k, "fused_mlp", 8, -1, NULL) == 4);
    CHECK(k.n_skipped == 4);
    for (size_t i = 0; i < k.n_skipped; ++i)
        CHECK_MSG(sp_contains(k.skipped[i], "fused_mlp") && sp_contains(k.skipped[i], "batch=32") &&
                      sp_contains(k.skipped[i], "more than 8"),
                  "%s", k.skipped[i]);
    sp_mlp_keys_free(&k);

    /* asked-for families: gather_gemm at batch 1 is kept (g=32 works), router at 0 is a note */
    const char *fams[] = {"gather_gemm", "router"};
    const int b1[] = {1};
    req.batches = b1, req.n_batches = 1, req.families = fams, req.n_families = 2;
    CHECK(sp_mlp_keys_build(gen, &req, &k) == SPRIG_OK);
    CHECK(count_keys(&k, "gather_gemm", 1, -1, NULL) == 8 && count_keys(&k, "router", 1, -1, NULL) == 3);
    CHECK(k.n_skipped == 1 && sp_contains(k.skipped[0], "router") && sp_contains(k.skipped[0], "sparsity > 0"));
    sp_mlp_keys_free(&k);

    /* g=1 (training-free): gather_gemm cannot serve it and says why */
    req.g = 1, req.n_families = 1;
    CHECK(sp_mlp_keys_build(gen, &req, &k) == SPRIG_OK);
    CHECK(k.n == 0 && k.n_skipped == 8 && sp_contains(k.skipped[0], "multiple of 16"));
    sp_mlp_keys_free(&k);

    const char *bad[] = {"attention_decode"};
    req.families = bad;
    CHECK(sp_mlp_keys_build(gen, &req, &k) == SPRIG_E_INVALID && sp_contains(sprig_last_error(), "attention_decode"));
    const double sp100[] = {100};
    req.families = NULL, req.n_families = 0, req.sparsities = sp100, req.n_sparsities = 1;
    CHECK(sp_mlp_keys_build(gen, &req, &k) == SPRIG_E_INVALID);
}

static void test_lookup(sprig_gen *gen) {
    const sp_gpu_id gpu = {"Test GPU", 9, 0, 132};
    sp_db_set set;
    sp_db_set_init(&set);
    sp_lookup_result r;
    /* nothing tuned: the family's complete defaults with the fixed params */
    sprig_status st = sp_mlp_lookup(gen, &set, &gpu, "gather_upgate", 0, 4096, 11008, "fp16", 1, 32, 50, &r);
    CHECK_MSG(st == SPRIG_OK, "%s", sprig_last_error());
    CHECK(r.source == SP_LOOKUP_GENERIC_DEFAULT && sp_contains(r.params, "all_active=0") &&
          sp_contains(r.params, "threads="));
    CHECK(sp_mlp_lookup(gen, &set, &gpu, "gather_gemm", 1, 4096, 11008, "fp16", 32, 32, 0, &r) == SPRIG_OK &&
          sp_contains(r.params, "stage=down"));
    /* a family that cannot serve the problem */
    CHECK(sp_mlp_lookup(gen, &set, &gpu, "fused_mlp", 0, 4096, 11008, "fp16", 32, 32, 50, &r) == SPRIG_E_INVALID);
    CHECK(sp_mlp_lookup(gen, &set, &gpu, "router", 0, 4096, 11008, "fp16", 1, 32, 0, &r) == SPRIG_E_INVALID);

    /* an entry tuned for a nearby shape on this GPU is used, and named */
    sp_db *db = NULL;
    char dir[] = "/tmp/sprig_test_mlp_keys_XXXXXX";
    CHECK(mkdtemp(dir) && sp_db_open(&db, dir, &gpu, 0) == SPRIG_OK);
    const char *won = "threads=128,rows_per_warp=2,vec=8,unroll=4,ksplit=1,min_blocks=1,interleave=1,all_active=0,x_smem=0";
    sprig_request req = {"gather_upgate", 4096, 11008, "fp16", 1, 32, won};
    sprig_plan *plan = NULL;
    CHECK(sprig_gen_render(gen, &req, &plan) == SPRIG_OK);
    sp_db_key key;
    CHECK(plan && sp_db_key_make(&key, "gather_upgate", plan->template_hash, 4096, 14336, "fp16", 1, 50, 32,
                                 "all_active=0") == SPRIG_OK);
    sprig_plan_free(plan);
    sp_trial t = {(char *)won, 0, {SP_VERDICT_OK, 1e-4, 20, 19, 30, 0, 0, ""}, 1, 20};
    sp_search_result res = {&t, 1, 0, 1, 0, 0, 1, 1, 0, 1.0};
    CHECK(db && sp_db_put(db, &key, &res) == SPRIG_OK);
    CHECK(sp_db_set_add(&set, db, 1) == SPRIG_OK);
    CHECK(sp_mlp_lookup(gen, &set, &gpu, "gather_upgate", 0, 4096, 11008, "fp16", 1, 32, 50, &r) == SPRIG_OK);
    CHECK_MSG(r.source == SP_LOOKUP_SAME_GPU_NEAREST && !strcmp(r.params, won), "%s: %s",
              sp_lookup_source_name(r.source), r.params);
    sp_db_set_free(&set);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* Runs the CLI with args; returns its exit code and its stderr in err. */
static int run_cli(const char *sprig, const char *args, char *err, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1 >/dev/null", sprig, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(err, 1, cap - 1, p);
    err[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(const char *sprig) {
    char err[8192];
    CHECK(run_cli(sprig, "tune --model llama2-7b --batch 0", err, sizeof err) == 2 && sp_contains(err, "--batch"));
    CHECK(run_cli(sprig, "tune --model llama2-7b --sparsity 100", err, sizeof err) == 2);
    CHECK(run_cli(sprig, "tune --model llama2-7b --dtype fp32", err, sizeof err) == 2 && sp_contains(err, "fp32"));
    CHECK(run_cli(sprig, "tune --model nosuch", err, sizeof err) == 1 && sp_contains(err, "unknown model"));
    CHECK(run_cli(sprig, "tune --model llama2-7b --family nosuch", err, sizeof err) == 1 &&
          sp_contains(err, "not an MLP family"));
    CHECK(run_cli(sprig, "bench --model llama2-7b --frobnicate", err, sizeof err) == 2);
    CHECK(run_cli(sprig, "bench --shape 64,256 --dtype int8", err, sizeof err) == 2);
    int gpus = 0;
    if (sp_device_count(&gpus) == SPRIG_OK) {
        printf("test_mlp_keys: a GPU is present: the no-GPU exits are not checked here\n");
        return;
    }
    CHECK(run_cli(sprig, "tune --shape 64,256 --g 16 --batch 1 --sparsity 50", err, sizeof err) == 1 &&
          sp_contains(err, "no GPU to tune on"));
    CHECK(run_cli(sprig, "bench --shape 64,256 --g 16", err, sizeof err) == 1 && sp_contains(err, "no GPU"));
}

int main(int argc, char **argv) {
    sprig_gen *gen = NULL;
    if (sprig_gen_open(&gen, NULL) != SPRIG_OK) {
        fprintf(stderr, "%s\n", sprig_last_error());
        return 1;
    }
    test_fixed(gen);
    test_default_keys(gen);
    test_lookup(gen);
    if (argc > 1) test_cli(argv[1]);
    sprig_gen_close(gen);
    return sp_test_finish("test_mlp_keys", 0);
}

/* A model folder's tuning keys (tuner/sp_model_keys.h), `sprig tune --model-dir`:
 *   (a) tiny-llama2 (unsliced, no routers): qkv, o_proj, lm_head GEMVs and the
 *       dense gathers at g = 1, layers of equal widths sharing keys;
 *   (b) tiny-sliced-25: the fused [attn_shortcut_Qᵀ | W_o] GEMV at d = a_in + qd,
 *       the MLP shortcut GEMVs (80 -> 80, and 80 -> 112 in the last layer), and
 *       the last layer's gather_down at d = hidden_size;
 *   (c) tiny-sliced-25-lte: the exact key list, the routed gathers at
 *       50/75/90 with g = the expert size (the router runs inside
 *       gather_upgate: no key of its own, and asked for, it says so);
 *   (d) LLaMA-2-7B sliced 25% from config.json + SliceGPT JSON alone (no
 *       weights in the folder): 3072-wide keys where the widths are sliced,
 *       4096 where they are not; with LTE (g = 32) the routed keys too;
 *   (e) errors: no config.json, a slicing width that is not a multiple of 8,
 *       a width the generator rejects (named with its layer), unknown and
 *       non-decode families; filters (families, explicit sparsities: the
 *       threshold mode's g = 1 gathers for an unrouted model);
 *   (f) the keys are the runtime's: tuned (sp_tune_run, synthetic timings)
 *       into a database, every request the GPU backend makes on the CPU
 *       emulator (tiny-llama2; tiny-sliced-25 auto and threshold;
 *       tiny-sliced-25-lte auto and dense) is answered by runtime_tuning from
 *       an exact entry, the untuned families excepted, and every key at
 *       batch 1, sparsity 0 and 50 is one the backend asks for;
 *   (g) the CLI: --list / --json output, exit codes.
 * argv[1]: tests/fixtures, argv[2]: the sprig binary. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "exec_emu.h"
#include "sp_db.h"
#include "sp_gpu.h"
#include "sp_model.h"
#include "sp_model_files.h"
#include "sp_model_keys.h"
#include "sp_runtime_tuning.h"
#include "sp_slicegpt.h"
#include "sp_tune.h"
#include "sprig.h"
#include "test_util.h"

static char g_root[] = "/tmp/sprig_test_model_keys_XXXXXX";
static const char *g_fixtures = "tests/fixtures";

/* ---- helpers ------------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void fixture(const char *rel, char *buf, size_t cap) { snprintf(buf, cap, "%s/%s", g_fixtures, rel); }

static int write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (!fp) return 0;
    fputs(text, fp);
    return fclose(fp) == 0;
}

/* Reads the folder's config and builds its keys; returns the status. */
static sprig_status build(sprig_gen *gen, const char *dir, const sp_model_key_request *base, sp_model_keys *k,
                          sp_model_config *cfg) {
    memset(k, 0, sizeof *k);
    sprig_status s = sp_model_keys_config(dir, cfg);
    if (s != SPRIG_OK) return s;
    sp_model_key_request r;
    if (base) r = *base;
    else memset(&r, 0, sizeof r);
    r.cfg = cfg;
    return sp_model_keys_build(gen, &r, k);
}

/* The index of the key (family, fixed, sparsity, d, f, g) at batch 1 / fp16, or -1. */
static long find_key(const sp_model_keys *k, const char *family, const char *fixed, double s, int d, int f, int g) {
    for (size_t i = 0; i < k->n; ++i) {
        const sp_tune_key *x = &k->keys[i];
        if (!strcmp(x->family, family) && !strcmp(x->fixed, fixed) && x->sparsity == s && x->d == d && x->f == f &&
            x->g == g && x->batch == 1 && !strcmp(x->dtype, "fp16"))
            return (long)i;
    }
    return -1;
}

static size_t count_family(const sp_model_keys *k, const char *family, double s) {
    size_t n = 0;
    for (size_t i = 0; i < k->n; ++i) n += !strcmp(k->keys[i].family, family) && (s < 0 || k->keys[i].sparsity == s);
    return n;
}

static void print_keys(const char *what, const sp_model_keys *k) {
    printf("%s: %zu keys\n", what, k->n);
    for (size_t i = 0; i < k->n; ++i) {
        const sp_tune_key *x = &k->keys[i];
        printf("  %-13s %-13s %s b=%d s=%-2g d=%-5d f=%-5d g=%-2d  %s\n", x->family, x->fixed, x->dtype, x->batch,
               x->sparsity, x->d, x->f, x->g, k->uses[i]);
    }
    for (size_t i = 0; i < k->n_skipped; ++i) printf("  skipped: %s\n", k->skipped[i]);
}

/* No two keys alike. */
static void check_distinct(const sp_model_keys *k) {
    for (size_t i = 0; i < k->n; ++i)
        for (size_t j = i + 1; j < k->n; ++j) {
            const sp_tune_key *a = &k->keys[i], *b = &k->keys[j];
            CHECK_MSG(!(!strcmp(a->family, b->family) && !strcmp(a->fixed, b->fixed) && a->d == b->d && a->f == b->f &&
                        a->g == b->g && a->batch == b->batch && a->sparsity == b->sparsity &&
                        !strcmp(a->dtype, b->dtype)),
                      "keys %zu and %zu are the same (%s d=%d f=%d)", i, j, a->family, a->d, a->f);
        }
}

/* ---- (a)-(c) the fixtures -------------------------------------------------------------------- */

static void test_tiny_llama2(sprig_gen *gen, sp_model_config *cfg) {
    char dir[1024];
    fixture("models/tiny-llama2", dir, sizeof dir);
    sp_model_keys k;
    sprig_status s = build(gen, dir, NULL, &k, cfg);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    print_keys("tiny-llama2", &k);
    /* d=64, f=192, 4 heads of 16, vocab 896: qkv 64->192, o 64->64, lm_head 64->896, gathers g=1 */
    CHECK_MSG(k.n == 5, "%zu keys", k.n);
    CHECK(!k.sliced && !k.routed && k.g_dense == 1 && k.n_skipped == 0);
    long i = find_key(&k, "dense_gemv", "op=up", 0, 64, 192, 1);
    CHECK(i >= 0 && !strcmp(k.uses[i], "qkv_proj layers 0-1"));
    i = find_key(&k, "dense_gemv", "op=up", 0, 64, 64, 1);
    CHECK(i >= 0 && !strcmp(k.uses[i], "o_proj layers 0-1"));
    i = find_key(&k, "dense_gemv", "op=up", 0, 64, 896, 1);
    CHECK(i >= 0 && !strcmp(k.uses[i], "lm_head"));
    CHECK(find_key(&k, "gather_upgate", "all_active=1", 0, 64, 192, 1) >= 0);
    CHECK(find_key(&k, "gather_down", "all_active=1", 0, 64, 192, 1) >= 0);
    CHECK(count_family(&k, "router", -1) == 0);
    check_distinct(&k);
    sp_model_keys_free(&k);

    /* an explicit list: batches, dtypes; sparsity 50 gives the threshold mode's g = 1 gathers
       (its silu_abs router is untuned) and asked-for families say why they have nothing */
    const char *dtypes[] = {"fp16", "bf16"};
    const int batches[] = {1, 4};
    const double sp[] = {0, 50};
    const char *fams[] = {"router", "gather_down", "dense_gemv"};
    sp_model_key_request r = {NULL, dtypes, 2, batches, 2, sp, 2, fams, 3};
    s = build(gen, dir, &r, &k, cfg);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    /* per dtype and batch: 3 GEMVs + gather_down at 0, gather_down at 50 */
    CHECK_MSG(k.n == 2 * 2 * 5, "%zu keys", k.n);
    CHECK(find_key(&k, "gather_down", "all_active=0", 50, 64, 192, 1) >= 0);
    CHECK(count_family(&k, "gather_upgate", -1) == 0 && count_family(&k, "router", -1) == 0);
    CHECK(k.keys[k.n - 1].batch == 4 && !strcmp(k.keys[k.n - 1].dtype, "bf16"));
    int said_router = 0, said_gemv = 0;
    for (size_t j = 0; j < k.n_skipped; ++j) {
        said_router += sp_contains(k.skipped[j], "router") && sp_contains(k.skipped[j], "no LTE routers");
        said_gemv += sp_contains(k.skipped[j], "dense_gemv") && sp_contains(k.skipped[j], "sparsity 0 only");
    }
    CHECK_MSG(said_router == 4 && said_gemv == 4, "router %d, dense_gemv %d", said_router, said_gemv);
    sp_model_keys_free(&k);
}

static void test_tiny_sliced(sprig_gen *gen, sp_model_config *cfg) {
    char dir[1024];
    fixture("sliced/tiny-sliced-25", dir, sizeof dir);
    sp_model_keys k;
    sprig_status s = build(gen, dir, NULL, &k, cfg);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    print_keys("tiny-sliced-25", &k);
    /* hidden 112 sliced to 80 (the last MLP output and lm_head keep 112); 4 heads of 28 (qd = 112),
       2 kv heads: qkv_rows 224; f = 128; vocab 160 */
    CHECK(k.sliced && !k.routed && cfg->slice.enabled);
    CHECK_MSG(k.n == 8, "%zu keys", k.n);
    CHECK(find_key(&k, "dense_gemv", "op=up", 0, 80, 224, 1) >= 0);
    long i = find_key(&k, "dense_gemv", "op=up", 0, 80 + 112, 80, 1); /* [attn_shortcut_Qᵀ | W_o] */
    CHECK(i >= 0 && !strcmp(k.uses[i], "o_proj+attn_shortcut layers 0-1"));
    i = find_key(&k, "dense_gemv", "op=up", 0, 80, 80, 1);
    CHECK(i >= 0 && !strcmp(k.uses[i], "mlp_shortcut layer 0"));
    i = find_key(&k, "dense_gemv", "op=up", 0, 80, 112, 1);
    CHECK(i >= 0 && !strcmp(k.uses[i], "mlp_shortcut layer 1"));
    CHECK(find_key(&k, "dense_gemv", "op=up", 0, 112, 160, 1) >= 0); /* lm_head at the full width */
    CHECK(find_key(&k, "gather_upgate", "all_active=1", 0, 80, 128, 1) >= 0);
    i = find_key(&k, "gather_down", "all_active=1", 0, 112, 128, 1);
    CHECK(i >= 0 && !strcmp(k.uses[i], "mlp_dense layer 1"));
    CHECK(find_key(&k, "gather_down", "all_active=1", 0, 80, 128, 1) >= 0);
    check_distinct(&k);
    sp_model_keys_free(&k);
}

typedef struct want_key {
    const char *family, *fixed;
    double s;
    int d, f, g;
    const char *uses;
} want_key;

static void test_tiny_sliced_lte(sprig_gen *gen, sp_model_config *cfg) {
    char dir[1024];
    fixture("sliced/tiny-sliced-25-lte", dir, sizeof dir);
    sp_model_keys k;
    sprig_status s = build(gen, dir, NULL, &k, cfg);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    print_keys("tiny-sliced-25-lte", &k);
    const want_key want[] = {
        {"dense_gemv", "op=up", 0, 80, 224, 1, "qkv_proj layers 0-1"},
        {"dense_gemv", "op=up", 0, 192, 80, 1, "o_proj+attn_shortcut layers 0-1"},
        {"dense_gemv", "op=up", 0, 80, 80, 1, "mlp_shortcut layer 0"},
        {"dense_gemv", "op=up", 0, 80, 112, 1, "mlp_shortcut layer 1"},
        {"dense_gemv", "op=up", 0, 112, 160, 1, "lm_head"},
        {"gather_upgate", "all_active=1", 0, 80, 128, 16, "mlp_dense layers 0-1"},
        {"gather_down", "all_active=1", 0, 80, 128, 16, "mlp_dense layer 0"},
        {"gather_down", "all_active=1", 0, 112, 128, 16, "mlp_dense layer 1"},
        {"gather_upgate", "all_active=0", 50, 80, 128, 16, "mlp_lte layers 0-1"},
        {"gather_down", "all_active=0", 50, 80, 128, 16, "mlp_lte layer 0"},
        {"gather_down", "all_active=0", 50, 112, 128, 16, "mlp_lte layer 1"},
    };
    const size_t n_want = sizeof want / sizeof want[0];
    CHECK_MSG(k.n == 17 && k.routed && k.g_dense == 16 && k.g_routed == 16, "%zu keys", k.n);
    for (size_t i = 0; i < n_want; ++i) {
        const want_key *w = &want[i];
        CHECK_MSG(i < k.n && !strcmp(k.keys[i].family, w->family) && !strcmp(k.keys[i].fixed, w->fixed) &&
                      k.keys[i].sparsity == w->s && k.keys[i].d == w->d && k.keys[i].f == w->f &&
                      k.keys[i].g == w->g && !strcmp(k.uses[i], w->uses),
                  "key %zu is not %s %s s=%g d=%d f=%d g=%d (%s)", i, w->family, w->fixed, w->s, w->d, w->f, w->g,
                  w->uses);
    }
    /* 75 and 90 repeat the routed three */
    for (size_t i = 11; i < k.n && i < 17; ++i) {
        const want_key *w = &want[8 + (i - 11) % 3];
        CHECK(!strcmp(k.keys[i].family, w->family) && k.keys[i].d == w->d && k.keys[i].sparsity == (i < 14 ? 75 : 90));
    }
    check_distinct(&k);
    sp_model_keys_free(&k);

    /* only the router: none, and it says why, at 0 and at each routed sparsity */
    const char *fams[] = {"router"};
    sp_model_key_request r = {NULL, NULL, 0, NULL, 0, NULL, 0, fams, 1};
    CHECK(build(gen, dir, &r, &k, cfg) == SPRIG_OK);
    CHECK(k.n == 0 && count_family(&k, "router", -1) == 0);
    CHECK_MSG(k.n_skipped == 4 && sp_contains(k.skipped[0], "sparsity > 0 only") &&
                  sp_contains(k.skipped[1], "runs inside gather_upgate"), "%d skipped", (int)k.n_skipped);
    sp_model_keys_free(&k);
}

/* ---- (d) LLaMA-2-7B, config only ---------------------------------------------------------------- */

static const char *const LLAMA2_7B =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_act\": \"silu\",\n"
    " \"hidden_size\": 4096, \"intermediate_size\": 11008, \"num_hidden_layers\": 32,\n"
    " \"num_attention_heads\": 32, \"num_key_value_heads\": 32, \"vocab_size\": 32000,\n"
    " \"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0,\n"
    " \"rope_scaling\": null, \"tie_word_embeddings\": false, \"torch_dtype\": \"float16\",\n"
    " \"bos_token_id\": 1, \"eos_token_id\": 2%s}\n";

/* A folder with LLaMA-2-7B's config.json (extra: more top-level keys) and,
 * when width > 0, SliceGPT's const slicing at width as Llama-2-7b-hf_0.25.json. */
static void write_7b(const char *dir, const char *extra, int width) {
    CHECK(mkdir(dir, 0755) == 0);
    char path[1200], text[2048];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(text, sizeof text, LLAMA2_7B, extra);
    CHECK(write_text(path, text));
    if (width <= 0) return;
    sp_model_config *cfg = calloc(1, sizeof *cfg);
    CHECK(cfg && sp_model_config_parse(text, strlen(text), "7b", cfg) == SPRIG_OK);
    if (!cfg) return;
    sp_slice_const(cfg, width, &cfg->slice);
    char *json = sp_slice_to_json(cfg, &cfg->slice);
    snprintf(path, sizeof path, "%s/Llama-2-7b-hf_0.25.json", dir);
    CHECK(json && write_text(path, json));
    free(json);
    free(cfg);
}

static void test_7b(sprig_gen *gen, sp_model_config *cfg) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/llama2-7b-slice25", g_root);
    write_7b(dir, "", sp_slice_width(4096, 0.25, 8));
    sp_model_keys k;
    sprig_status s = build(gen, dir, NULL, &k, cfg);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    print_keys("llama2-7b sliced 25%", &k);
    CHECK(k.sliced && cfg->slice.attn_in[0] == 3072 && cfg->slice.mlp_out[31] == 4096);
    CHECK_MSG(k.n == 8, "%zu keys", k.n);
    CHECK(find_key(&k, "dense_gemv", "op=up", 0, 3072, 3 * 4096, 1) >= 0);      /* qkv */
    CHECK(find_key(&k, "dense_gemv", "op=up", 0, 3072 + 4096, 3072, 1) >= 0);   /* [Q_attnᵀ | W_o] */
    long i = find_key(&k, "dense_gemv", "op=up", 0, 3072, 3072, 1);             /* MLP shortcut */
    CHECK(i >= 0 && !strcmp(k.uses[i], "mlp_shortcut layers 0-30"));
    i = find_key(&k, "dense_gemv", "op=up", 0, 3072, 4096, 1);
    CHECK(i >= 0 && !strcmp(k.uses[i], "mlp_shortcut layer 31"));
    CHECK(find_key(&k, "dense_gemv", "op=up", 0, 4096, 32000, 1) >= 0);         /* lm_head */
    CHECK(find_key(&k, "gather_upgate", "all_active=1", 0, 3072, 11008, 1) >= 0);
    i = find_key(&k, "gather_down", "all_active=1", 0, 3072, 11008, 1);
    CHECK(i >= 0 && !strcmp(k.uses[i], "mlp_dense layers 0-30"));
    CHECK(find_key(&k, "gather_down", "all_active=1", 0, 4096, 11008, 1) >= 0);
    sp_model_keys_free(&k);
    /* it needed no weights: the folder cannot be opened as a model */
    sp_model_files *mf = NULL;
    CHECK(sp_model_files_open(dir, &mf) != SPRIG_OK && mf == NULL);

    /* the same with LTE routers (g = 32): the routed keys at 50/75/90 */
    snprintf(dir, sizeof dir, "%s/llama2-7b-slice25-lte", g_root);
    write_7b(dir, ", \"lte\": {\"expert_size\": 32, \"threshold\": 0.5}", 3072);
    s = build(gen, dir, NULL, &k, cfg);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    CHECK_MSG(k.n == 8 + 3 * 3 && k.routed && k.g_dense == 32 && k.g_routed == 32, "%zu keys", k.n);
    CHECK(find_key(&k, "router", "score=sigmoid", 90, 3072, 11008, 32) < 0); /* inside gather_upgate */
    CHECK(find_key(&k, "gather_upgate", "all_active=0", 90, 3072, 11008, 32) >= 0);
    CHECK(find_key(&k, "gather_down", "all_active=0", 75, 4096, 11008, 32) >= 0);
    CHECK(find_key(&k, "gather_upgate", "all_active=1", 0, 3072, 11008, 32) >= 0);
    check_distinct(&k);
    sp_model_keys_free(&k);

    /* unsliced: 4096 everywhere, o_proj 4096 -> 4096 and no shortcuts */
    snprintf(dir, sizeof dir, "%s/llama2-7b", g_root);
    write_7b(dir, "", 0);
    s = build(gen, dir, NULL, &k, cfg);
    CHECK_MSG(s == SPRIG_OK && k.n == 5 && !k.sliced, "%zu keys: %s", k.n, sprig_last_error());
    CHECK(find_key(&k, "dense_gemv", "op=up", 0, 4096, 4096, 1) >= 0);
    CHECK(find_key(&k, "gather_down", "all_active=1", 0, 4096, 11008, 1) >= 0);
    sp_model_keys_free(&k);
}

/* ---- (e) errors ------------------------------------------------------------------------------ */

static void test_errors(sprig_gen *gen, sp_model_config *cfg) {
    sp_model_keys k;
    char dir[512], path[700];
    /* no config.json */
    snprintf(dir, sizeof dir, "%s/empty", g_root);
    CHECK(mkdir(dir, 0755) == 0);
    sprig_status s = build(gen, dir, NULL, &k, cfg);
    CHECK_MSG(s == SPRIG_E_IO && sp_contains(sprig_last_error(), "has no config.json"), "%s", sprig_last_error());
    CHECK(build(gen, "/nonexistent/sprig-model", NULL, &k, cfg) == SPRIG_E_IO);

    /* a slicing width that is not a multiple of 8 (round_interval 1): named with its layer */
    snprintf(dir, sizeof dir, "%s/slice-3276", g_root);
    write_7b(dir, "", 3072);
    snprintf(path, sizeof path, "%s/Llama-2-7b-hf_0.25.json", dir);
    FILE *fp = fopen(path, "r");
    char text[16384];
    size_t n = fp ? fread(text, 1, sizeof text - 1, fp) : 0;
    if (fp) fclose(fp);
    text[n] = '\0';
    /* layer 5's attention output (and so its MLP input) at 3276 */
    char *at = strstr(text, "\"attention_output_dimensions\"");
    at = at ? strstr(at, "\"5\":") : NULL;
    CHECK(at != NULL);
    if (at) memcpy(strstr(at, "3072"), "3276", 4);
    CHECK(write_text(path, text));
    s = build(gen, dir, NULL, &k, cfg);
    printf("  3276: %s\n", sprig_last_error());
    CHECK_MSG(s == SPRIG_E_FORMAT && sp_contains(sprig_last_error(), "attention_output_dimensions[\"5\"] = 3276") &&
                  sp_contains(sprig_last_error(), "3272"),
              "%s", sprig_last_error());

    /* widths the slicing accepts but the generator does not: hidden_size 100 (a width may stay at
       hidden_size unrounded), the last layer's MLP output and lm_head at 100 */
    snprintf(dir, sizeof dir, "%s/hidden-100", g_root);
    CHECK(mkdir(dir, 0755) == 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(write_text(path,
        "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 100, \"intermediate_size\": 128,\n"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"head_dim\": 16,\n"
        " \"vocab_size\": 160, \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-5,\n"
        " \"slicegpt\": {\"hidden_size\": 100, \"layers_num\": 2, \"do_slice_head\": false, \"parallel_blocks\": false,\n"
        "   \"embedding_dimensions\": {\"0\": 96}, \"attention_input_dimensions\": {\"0\": 96, \"1\": 96},\n"
        "   \"attention_output_dimensions\": {\"0\": 96, \"1\": 96}, \"mlp_input_dimensions\": {\"0\": 96, \"1\": 96},\n"
        "   \"mlp_output_dimensions\": {\"0\": 96, \"1\": 100}, \"head_dimension\": 100, \"const_dimension\": null}}\n"));
    s = build(gen, dir, NULL, &k, cfg);
    printf("  hidden 100: %s\n", sprig_last_error());
    CHECK_MSG(s == SPRIG_E_INVALID && sp_contains(sprig_last_error(), "layer 1 mlp_shortcut") &&
                  sp_contains(sprig_last_error(), "d=96 f=100") && sp_contains(sprig_last_error(), "f=100 is not"),
              "%s", sprig_last_error());
    CHECK(k.n == 0 && k.keys == NULL);

    /* families the decode step does not look up */
    char ok_dir[1024];
    fixture("models/tiny-llama2", ok_dir, sizeof ok_dir);
    const char *bad[] = {"fused_mlp"};
    sp_model_key_request r = {NULL, NULL, 0, NULL, 0, NULL, 0, bad, 1};
    s = build(gen, ok_dir, &r, &k, cfg);
    CHECK_MSG(s == SPRIG_E_INVALID && sp_contains(sprig_last_error(), "fused_mlp") &&
                  sp_contains(sprig_last_error(), "decode step"), "%s", sprig_last_error());
    const double sp100[] = {100};
    sp_model_key_request r2 = {NULL, NULL, 0, NULL, 0, sp100, 1, NULL, 0};
    CHECK(build(gen, ok_dir, &r2, &k, cfg) == SPRIG_E_INVALID);
    /* the largest batch: served by the candidates with few rows per warp */
    const int b64[] = {64};
    const double s50[] = {50};
    const char *router[] = {"router", "gather_upgate"};
    char lte_dir[1024];
    fixture("sliced/tiny-sliced-25-lte", lte_dir, sizeof lte_dir);
    sp_model_key_request r3 = {NULL, NULL, 0, b64, 1, s50, 1, router, 2};
    s = build(gen, lte_dir, &r3, &k, cfg);
    /* the router has no key of its own (it runs inside gather_upgate), and says so */
    CHECK_MSG(s == SPRIG_OK && k.n == 1 && k.keys[0].batch == 64 && k.n_skipped == 1, "%s", sprig_last_error());
    print_keys("tiny-sliced-25-lte batch 64", &k);
    sp_model_keys_free(&k);
}

/* ---- (f) the runtime's lookups hit the keys exactly -------------------------------------------- */

static double num_param(const char *params, const char *key) {
    size_t n = strlen(key);
    for (const char *p = params; p && *p;) {
        if (!strncmp(p, key, n) && p[n] == '=') return atof(p + n + 1);
        p = strchr(p, ',');
        if (p) ++p;
    }
    return NAN;
}

/* Synthetic timings: fewer threads are faster (cheap plans on the emulator); what the
 * backend cannot run (interleaved gate/up, W_down for layout=n) is slow, so winners fit. */
static sprig_status fake_measure(void *ctx, const sp_tune_key *key, const char *params, sp_measurement *m) {
    (void)key;
    ++*(long *)ctx;
    double t = 10;
    const double threads = num_param(params, "threads");
    if (threads == threads) t += threads / 64;
    if (sp_contains(params, "interleave=1")) t += 1000;
    if (sp_contains(params, "layout=n")) t += 1000;
    memset(m, 0, sizeof *m);
    m->verdict = SP_VERDICT_OK;
    m->rel_err = 1e-4;
    m->median_us = t, m->min_us = t * 0.99, m->runs = 10;
    return SPRIG_OK;
}

/* Tunes the keys of every folder into dir's database for gpu (synthetic timings). */
static void tune_into(sprig_gen *gen, const char *dir, const sp_gpu_id *gpu, const sp_model_keys *k) {
    sp_db *db = NULL;
    CHECK_MSG(sp_db_open(&db, dir, gpu, 0) == SPRIG_OK, "%s", sprig_last_error());
    if (!db) return;
    long calls = 0;
    sp_tune_opts o;
    sp_tune_opts_init(&o);
    o.gen = gen, o.db = db, o.keys = k->keys, o.n_keys = k->n;
    o.search.budget_s = 0, o.search.max_trials = 12, o.search.exhaustive_limit = 12, o.search.confirm = 0;
    o.measure = fake_measure, o.ctx = &calls;
    sp_tune_summary sum;
    sprig_status s = sp_tune_run(&o, &sum);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    CHECK_MSG(sum.n_failed == 0 && sum.n_tuned + sum.n_skipped == k->n, "tuned %zu, skipped %zu, failed %zu of %zu",
              sum.n_tuned, sum.n_skipped, sum.n_failed, k->n);
    sp_tune_summary_free(&sum);
    sp_db_close(db);
}

/* Opens the model on the emulator with the database's tuning hook; checks every request of a
 * tuned family is answered exactly, and marks the keys requested. Returns how many requests were
 * the MLP shortcut's accumulate=1 GEMV (keyed op=up: the merge must keep accumulate=1). */
static int check_exact(sp_exec *e, const char *db_dir, const char *model_dir, sp_mlp_mode mode,
                        const sp_model_keys *k, int *key_hit) {
    sp_model *m = NULL;
    CHECK_MSG(sp_model_open(model_dir, &m) == SPRIG_OK, "%s", sprig_last_error());
    sp_runtime_tuning *t = NULL;
    CHECK_MSG(sp_runtime_tuning_open(e, db_dir, NULL, &t) == SPRIG_OK, "%s", sprig_last_error());
    sp_gpu_kernels *ks = NULL;
    CHECK(sp_gpu_kernels_open(e, &ks) == SPRIG_OK);
    sp_gpu *g = NULL;
    if (m && t && ks) {
        sp_tuning_hook hook = sp_runtime_tuning_hook(t);
        sp_gpu_kernels_set_tuning(ks, &hook);
        CHECK_MSG(sp_gpu_open(ks, m, 4, mode, "fp16", &g) == SPRIG_OK, "%s: %s", model_dir, sprig_last_error());
    }
    char line[2048] = "";
    if (t) sp_runtime_tuning_summary_line(t, line, sizeof line);
    printf("%s (mode %d): %s\n", model_dir, (int)mode, line);
    int tuned = 0, accumulate = 0;
    for (size_t i = 0; t && i < sp_runtime_tuning_count(t); ++i) {
        const sp_rt_choice *c = sp_runtime_tuning_choice(t, i);
        const int untuned = !strcmp(c->family, "rmsnorm") || !strcmp(c->family, "attention_decode") ||
                            (!strcmp(c->family, "router") && sp_contains(c->fixed, "silu_abs"));
        if (untuned) {
            CHECK_MSG(c->source == SP_RT_UNTUNED, "%s: %s", c->family, sp_rt_source_name(c->source));
            continue;
        }
        ++tuned;
        if (sp_contains(c->fixed, "accumulate=1")) {
            ++accumulate;
            CHECK_MSG(sp_contains(c->params, "accumulate=1") && !sp_contains(c->params, "accumulate=0"), "%s",
                      c->params);
        }
        CHECK_MSG(c->source == SP_RT_EXACT && c->used, "%s d=%d f=%d g=%d [%s] s=%g: %s, used %d: %s", c->family,
                  c->d, c->f, c->g, c->fixed, c->sparsity, sp_rt_source_name(c->source), c->used, c->explain);
        int found = 0;
        for (size_t j = 0; j < k->n; ++j) {
            const sp_tune_key *x = &k->keys[j];
            if (!strcmp(x->family, c->family) && x->d == c->d && x->f == c->f && x->g == c->g &&
                x->sparsity == c->sparsity && x->batch == 1 && !strcmp(x->dtype, c->dtype))
                found = 1, key_hit[j] = 1;
        }
        CHECK_MSG(found, "no key for the request %s d=%d f=%d g=%d [%s] s=%g", c->family, c->d, c->f, c->g, c->fixed,
                  c->sparsity);
    }
    CHECK(tuned > 0 && t && sp_runtime_tuning_count_source(t, SP_RT_EXACT) == tuned);
    sp_gpu_close(g);
    sp_gpu_kernels_close(ks);
    sp_runtime_tuning_close(t);
    sp_model_close(m);
    return accumulate;
}

/* Every key at batch 1 and a sparsity the backend asks for (0, 50) was requested. */
static void check_all_hit(const char *what, const sp_model_keys *k, const int *key_hit) {
    for (size_t j = 0; j < k->n; ++j) {
        const sp_tune_key *x = &k->keys[j];
        if (x->batch != 1 || (x->sparsity != 0 && x->sparsity != 50)) continue;
        CHECK_MSG(key_hit[j], "%s: key %s d=%d f=%d g=%d [%s] s=%g (%s) was never requested", what, x->family, x->d,
                  x->f, x->g, x->fixed, x->sparsity, k->uses[j]);
    }
}

static void test_exact_lookup(sprig_gen *gen, sp_model_config *cfg) {
    sp_exec *e = NULL;
    if (sp_exec_open_emu(&e) != SPRIG_OK) {
        CHECK_MSG(0, "emulator: %s", sprig_last_error());
        return;
    }
    sp_gpu_id gpu;
    memset(&gpu, 0, sizeof gpu);
    snprintf(gpu.name, sizeof gpu.name, "%.127s", e->device);
    gpu.cc_major = e->cc_major, gpu.cc_minor = e->cc_minor, gpu.sm_count = e->sm_count;
    char db_dir[512];
    snprintf(db_dir, sizeof db_dir, "%s/db", g_root);
    static const struct {
        const char *dir;
        int threshold;     /* also tune sparsity 50 and open in threshold mode */
        sp_mlp_mode also;  /* a second mode to open (AUTO: none) */
    } models[] = {
        {"models/tiny-llama2", 0, SP_MLP_AUTO},
        {"sliced/tiny-sliced-25", 1, SP_MLP_THRESHOLD},
        {"sliced/tiny-sliced-25-lte", 0, SP_MLP_DENSE},
    };
    for (size_t i = 0; i < sizeof models / sizeof models[0]; ++i) {
        char dir[1024];
        fixture(models[i].dir, dir, sizeof dir);
        const double sp[] = {0, 50};
        sp_model_key_request r = {NULL, NULL, 0, NULL, 0, models[i].threshold ? sp : NULL,
                                  models[i].threshold ? 2 : 0, NULL, 0};
        sp_model_keys k;
        CHECK_MSG(build(gen, dir, &r, &k, cfg) == SPRIG_OK, "%s", sprig_last_error());
        tune_into(gen, db_dir, &gpu, &k);
        int *hit = calloc(k.n ? k.n : 1, sizeof *hit);
        CHECK(hit != NULL);
        if (hit) {
            const int acc = check_exact(e, db_dir, dir, SP_MLP_AUTO, &k, hit);
            CHECK_MSG(acc == (strstr(dir, "sliced") ? 2 : 0), "%s: %d accumulate=1 requests", dir, acc);
            if (models[i].also != SP_MLP_AUTO) check_exact(e, db_dir, dir, models[i].also, &k, hit);
            check_all_hit(models[i].dir, &k, hit);
        }
        free(hit);
        sp_model_keys_free(&k);
    }
    sp_exec_close(e);
}

/* ---- (g) the CLI ------------------------------------------------------------------------------ */

/* Runs sh -c cmd, stdout into out; returns the exit status (-1 if it did not exit). */
static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(const char *sprig) {
    static char out[1 << 16];
    char cmd[2048], dir[1024];
    fixture("sliced/tiny-sliced-25-lte", dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "'%s' tune --model-dir '%s' --list --json", sprig, dir);
    CHECK(run(cmd, out, sizeof out) == 0);
    cJSON *j = cJSON_Parse(out);
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(j, "keys");
    CHECK_MSG(cJSON_GetArraySize(keys) == 17, "%s", out);
    const cJSON *k1 = cJSON_GetArrayItem(keys, 1);
    CHECK(k1 && cJSON_GetObjectItem(k1, "d")->valueint == 192 && cJSON_GetObjectItem(k1, "f")->valueint == 80 &&
          !strcmp(cJSON_GetObjectItem(k1, "uses")->valuestring, "o_proj+attn_shortcut layers 0-1"));
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(j, "source");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(src, "sliced")) && cJSON_IsTrue(cJSON_GetObjectItem(src, "lte_routers")));
    cJSON_Delete(j);
    /* the table, filtered */
    snprintf(cmd, sizeof cmd, "'%s' tune --model-dir '%s' --list --family gather_down --sparsity 50 2>&1", sprig, dir);
    CHECK(run(cmd, out, sizeof out) == 0);
    CHECK_MSG(sp_contains(out, "2 keys for") && sp_contains(out, "mlp_lte layer 1") && !sp_contains(out, "score="),
              "%s", out);
    /* the 7B folder without weights */
    snprintf(cmd, sizeof cmd, "'%s' tune --model-dir '%s/llama2-7b-slice25' --dry-run", sprig, g_root);
    CHECK(run(cmd, out, sizeof out) == 0);
    CHECK_MSG(sp_contains(out, "8 keys") && sp_contains(out, "7168") && sp_contains(out, "mlp_shortcut layer 31"), "%s",
              out);
    /* errors: exit 1 for the folder, 2 for the options */
    snprintf(cmd, sizeof cmd, "'%s' tune --model-dir '%s/empty' --list 2>&1", sprig, g_root);
    CHECK(run(cmd, out, sizeof out) == 1 && sp_contains(out, "has no config.json"));
    snprintf(cmd, sizeof cmd, "'%s' tune --model-dir '%s/hidden-100' --list 2>&1", sprig, g_root);
    CHECK_MSG(run(cmd, out, sizeof out) == 1 && sp_contains(out, "layer 1 mlp_shortcut"), "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' tune --model-dir '%s' --shape 64,192 --list 2>&1", sprig, dir);
    CHECK(run(cmd, out, sizeof out) == 2 && sp_contains(out, "give one of"));
    snprintf(cmd, sizeof cmd, "'%s' tune --model-dir '%s' --g 32 --list 2>&1", sprig, dir);
    CHECK(run(cmd, out, sizeof out) == 2 && sp_contains(out, "--g"));
    snprintf(cmd, sizeof cmd, "'%s' tune --model-dir '%s' --family fused_mlp --list 2>&1", sprig, dir);
    CHECK(run(cmd, out, sizeof out) == 1 && sp_contains(out, "decode step"));
    /* --list works for a named shape too; without --list and a GPU, the usual exit 1 */
    snprintf(cmd, sizeof cmd, "'%s' tune --model llama2-7b --batch 1 --list", sprig);
    CHECK(run(cmd, out, sizeof out) == 0 && sp_contains(out, "keys for d=4096, f=11008, g=32"));
    snprintf(cmd, sizeof cmd, "'%s' tune --help", sprig);
    CHECK(run(cmd, out, sizeof out) == 0 && sp_contains(out, "--model-dir DIR") && sp_contains(out, "--list"));
}

int main(int argc, char **argv) {
    if (argc > 1) g_fixtures = argv[1];
    const char *sprig = argc > 2 ? argv[2] : NULL;
    if (!mkdtemp(g_root)) return perror("mkdtemp"), 1;
    sprig_gen *gen = NULL;
    if (sprig_gen_open(&gen, NULL) != SPRIG_OK) {
        fprintf(stderr, "test_model_keys: %s\n", sprig_last_error());
        return 1;
    }
    sp_model_config *cfg = calloc(1, sizeof *cfg); /* per-layer tables: large */
    if (!cfg) return 1;
    test_tiny_llama2(gen, cfg);
    test_tiny_sliced(gen, cfg);
    test_tiny_sliced_lte(gen, cfg);
    test_7b(gen, cfg);
    test_errors(gen, cfg);
    if (sprig) test_cli(sprig);
    else printf("no sprig binary given: CLI cases skipped\n");
    test_exact_lookup(gen, cfg);
    free(cfg);
    sprig_gen_close(gen);
    nftw(g_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return sp_test_finish("test_model_keys", 0);
}

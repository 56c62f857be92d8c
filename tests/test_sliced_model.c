/* SliceGPT-sliced models on the CPU backend, against the PyTorch sliced forward
 * pass of tools/make_slicegpt_fixtures.py: logits at 20/25/30% slicing within
 * 1e-4 relative, identical greedy tokens; sliced + LTE routers (the same expert
 * decisions); sliced + training-free thresholds. And the loader's refusals: a
 * slicing JSON that disagrees with the weights or with itself, widths that are
 * not multiples of 8 (with SliceGPT's rounding in the message), norm weights
 * in a sliced model, shortcut matrices without a slicing config. With the CLI's
 * path as a second argument: `sprig synth --slice` folders load and run. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_cpu.h"
#include "sp_safetensors.h"
#include "sp_slicegpt.h"
#include "test_util.h"

static const char *g_root;

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; ++i)
        if (v[i] > v[best]) best = i;
    return best;
}

/* sqrt(Σ(out-ref)²/Σref²) over one position, accumulated by the caller. */
static void accumulate(const float *out, const sp_tensor *ref_rows, int t, int V, float *ref, double *err2,
                       double *ref2) {
    sp_tensor_row(ref_rows, t, ref);
    for (int v = 0; v < V; ++v) {
        const double e = out[v] - (double)ref[v];
        *err2 += e * e, *ref2 += (double)ref[v] * ref[v];
    }
}

/* The expert decisions of the last token against row t of `active` ([L][T][E]). */
static int count_decision_errors(const sp_cpu *c, const sp_tensor *active, int T, int t, int *decisions) {
    const sp_model *m = c->model;
    const int E = m->cfg->lte.n_experts;
    float *row = malloc(sizeof(float) * E);
    int errors = 0;
    for (int l = 0, r = 0; l < m->cfg->num_hidden_layers; ++l) {
        if (!m->layers[l].router) continue;
        sp_tensor_row(active, (int64_t)r++ * T + t, row);
        for (int e = 0; e < E; ++e, ++*decisions)
            errors += (row[e] > 0.5f) != (sp_cpu_decisions(c, l)[e] != 0);
    }
    free(row);
    return errors;
}

/* Training-free thresholds on a sliced model: calibrate on the tokens at the
 * fixture's sparsity, run them again, compare with the PyTorch thresholds' logits. */
static void check_thresholds(const sp_model *m, const sp_safetensors *ex, const sp_tensor *tokens, const char *name) {
    const sp_tensor *sp = sp_st_find(ex, "thr_sparsity"), *logits = sp_st_find(ex, "thr_logits");
    if (!sp || !logits) return;
    const int T = (int)tokens->shape[0], V = m->cfg->vocab_size;
    float target;
    sp_tensor_row(sp, 0, &target);
    int *ids = malloc(sizeof(int) * T);
    for (int t = 0; t < T; ++t) ids[t] = (int)sp_tensor_int_at(tokens, (size_t)t);
    sp_cpu *c = NULL;
    CHECK(sp_cpu_open(m, T, SP_MLP_AUTO, &c) == SPRIG_OK);
    CHECK_MSG(c && sp_cpu_calibrate(c, ids, T, target) == SPRIG_OK, "%s", sprig_last_error());
    float *ref = malloc(sizeof(float) * V);
    double err2 = 0, ref2 = 0;
    const float *out = NULL;
    for (int t = 0; c && t < T; ++t) {
        CHECK(sp_cpu_forward(c, ids[t], t, &out) == SPRIG_OK);
        accumulate(out, logits, t, V, ref, &err2, &ref2);
    }
    const double rel = sqrt(err2 / ref2), got = c ? sp_cpu_mlp_sparsity(c) : 0;
    printf("%s: thresholds at %.0f%%: MLP sparsity %.2f%%, logits rel err %.3g\n", name, 100 * target, 100 * got, rel);
    CHECK_MSG(rel < 1e-4, "%s: threshold logits rel err %.3g", name, rel);
    CHECK_MSG(fabs(got - target) < 0.01, "%s: measured sparsity %.4f, calibrated for %.2f", name, got, target);
    free(ref);
    free(ids);
    sp_cpu_close(c);
}

static void check_model(const char *name, int width) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", g_root, name);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    sp_model *m = NULL;
    sp_safetensors *ex = NULL;
    CHECK_MSG(sp_model_open(dir, &m) == SPRIG_OK, "%s: %s", name, sprig_last_error());
    CHECK_MSG(sp_st_open(path, &ex) == SPRIG_OK, "%s: %s", name, sprig_last_error());
    if (!m || !ex) goto done;
    const sp_slice_config *s = &m->cfg->slice;
    CHECK_MSG(s->enabled && s->embedding_dim == width && s->attn_in[1] == width && s->mlp_out[1] == m->cfg->hidden_size,
              "%s: slicing %d, embedding width %d (want %d)", name, s->enabled, s->embedding_dim, width);
    const sp_tensor *tokens = sp_st_find(ex, "tokens"), *logits = sp_st_find(ex, "logits");
    const sp_tensor *greedy = sp_st_find(ex, "greedy"), *active = sp_st_find(ex, "active");
    CHECK(tokens && logits && greedy);
    if (!tokens || !logits || !greedy) goto done;
    const int T = (int)tokens->shape[0], V = m->cfg->vocab_size, N = (int)greedy->shape[0];
    sp_cpu *c = NULL;
    CHECK(sp_cpu_open(m, T + N + 1, SP_MLP_AUTO, &c) == SPRIG_OK);
    if (!c) goto done;
    float *ref = malloc(sizeof(float) * V);
    double err2 = 0, ref2 = 0;
    int decisions = 0, decision_errors = 0;
    const float *out = NULL;
    for (int t = 0; t < T; ++t) {
        CHECK(sp_cpu_forward(c, (int)sp_tensor_int_at(tokens, (size_t)t), t, &out) == SPRIG_OK);
        accumulate(out, logits, t, V, ref, &err2, &ref2);
        if (active) decision_errors += count_decision_errors(c, active, T, t, &decisions);
    }
    const double rel = sqrt(err2 / ref2);
    printf("%s: width %d of %d, logits rel err %.3g over %d positions\n", name, width, m->cfg->hidden_size, rel, T);
    CHECK_MSG(rel < 1e-4, "%s: logits rel err %.3g", name, rel);
    if (active) {
        printf("%s: %d expert decisions, %d differ, MLP sparsity %.1f%%\n", name, decisions, decision_errors,
               100 * sp_cpu_mlp_sparsity(c));
        CHECK_MSG(decisions > 0 && decision_errors == 0, "%s: %d of %d expert decisions differ", name,
                  decision_errors, decisions);
        CHECK(sp_cpu_mlp_sparsity(c) > 0.1);
    }
    int mismatched = 0;
    for (int i = 0; i < N; ++i) {
        const int next = argmax(out, V);
        mismatched += next != (int)sp_tensor_int_at(greedy, (size_t)i);
        CHECK(sp_cpu_forward(c, next, T + i, &out) == SPRIG_OK);
    }
    CHECK_MSG(mismatched == 0, "%s: %d of %d greedy tokens differ", name, mismatched, N);
    free(ref);
    sp_cpu_close(c);
    check_thresholds(m, ex, tokens, name);
done:
    sp_st_close(ex);
    sp_model_close(m);
}

/* ---- refusals, on temporary folders built from the 25% fixture ------------------------- */

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

static void write_text(const char *dir, const char *file, const char *text) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

typedef struct tmp_folder {
    char dir[64];
    char files[8][64];
    int n;
} tmp_folder;

/* A folder holding `config` (the 25% fixture's config.json with "slicegpt"
 * replaced by slicegpt_json, or removed when NULL) and a link to its weights. */
static void make_folder(tmp_folder *t, const char *slicegpt_json) {
    memset(t, 0, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "/tmp/sprig_sliced_XXXXXX");
    CHECK(mkdtemp(t->dir) != NULL);
    char src[1200];
    snprintf(src, sizeof src, "%s/tiny-sliced-25/config.json", g_root);
    char *text = read_text(src);
    CHECK(text != NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!root) return;
    cJSON_DeleteItemFromObjectCaseSensitive(root, "slicegpt");
    if (slicegpt_json) cJSON_AddItemToObject(root, "slicegpt", cJSON_Parse(slicegpt_json));
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    write_text(t->dir, "config.json", out);
    free(out);
    snprintf(t->files[t->n++], 64, "config.json");
    char weights[1200], link[200], *abs = realpath(g_root, NULL);
    snprintf(weights, sizeof weights, "%s/tiny-sliced-25/model.safetensors", abs ? abs : g_root);
    free(abs);
    snprintf(link, sizeof link, "%s/model.safetensors", t->dir);
    CHECK(symlink(weights, link) == 0);
    snprintf(t->files[t->n++], 64, "model.safetensors");
}

static void add_file(tmp_folder *t, const char *name, const char *text) {
    write_text(t->dir, name, text);
    snprintf(t->files[t->n++], 64, "%s", name);
}

static void remove_folder(tmp_folder *t) {
    char path[200];
    for (int i = 0; i < t->n; ++i) {
        snprintf(path, sizeof path, "%s/%s", t->dir, t->files[i]);
        unlink(path);
    }
    rmdir(t->dir);
}

/* Opens the folder expecting SPRIG_E_FORMAT whose message contains every needle. */
static void expect_refusal(tmp_folder *t, const char *what, const char *const *needles) {
    sp_model *m = NULL;
    sprig_status s = sp_model_open(t->dir, &m);
    const char *msg = sprig_last_error();
    CHECK_MSG(s == SPRIG_E_FORMAT && m == NULL, "%s: status %d (%s)", what, s, msg);
    for (const char *const *n = needles; *n; ++n) CHECK_MSG(sp_contains(msg, *n), "%s: '%s' not in: %s", what, *n, msg);
    printf("refused (%s): %s\n", what, msg);
    sp_model_close(m);
    remove_folder(t);
}

#define WIDTHS(a, b, c, d)                                                                           \
    "{\"hidden_size\": 112, \"layers_num\": 2, \"do_slice_head\": false, \"parallel_blocks\": false, " \
    "\"embedding_dimensions\": {\"0\": 80}, \"attention_input_dimensions\": {\"0\": 80, \"1\": 80}, "  \
    "\"attention_output_dimensions\": {\"0\": " a ", \"1\": " b "}, \"mlp_input_dimensions\": "         \
    "{\"0\": " c ", \"1\": " d "}, \"mlp_output_dimensions\": {\"0\": 80, \"1\": 112}, "                \
    "\"head_dimension\": 112, \"const_dimension\": null}"

static void test_refusals(void) {
    tmp_folder t;
    /* The JSON and the weights agree everywhere but layer 1's attention output. */
    make_folder(&t, WIDTHS("80", "72", "80", "72"));
    expect_refusal(&t, "one width wrong", (const char *const[]){"model.layers.1.self_attn.o_proj.weight", "80x112",
                                                                "72x112", "attention_output_dimensions", NULL});
    /* Every width 72 (SliceGPT's const_dimension form): the embedding is the first to disagree. */
    make_folder(&t, "{\"hidden_size\": 112, \"layers_num\": 2, \"const_dimension\": 72}");
    expect_refusal(&t, "const width wrong", (const char *const[]){"model.embed_tokens.weight", "160x80", "160x72", NULL});
    /* A JSON that disagrees with itself: the attention output must feed the MLP. */
    make_folder(&t, WIDTHS("72", "80", "80", "80"));
    expect_refusal(&t, "broken chain", (const char *const[]){"attention_output_dimensions", "mlp_input_dimensions",
                                                             "72", "80", NULL});
    /* Shortcut matrices but no slicing config anywhere. */
    make_folder(&t, NULL);
    expect_refusal(&t, "no slicing config", (const char *const[]){"attn_shortcut_Q", "SliceGPT", NULL});
    /* Two SliceGPT-named files and no "slicegpt" key: which one is meant is unclear. */
    make_folder(&t, NULL);
    add_file(&t, "tiny-llama_0.25.json", WIDTHS("80", "80", "80", "80"));
    add_file(&t, "tiny-llama_0.3.json", WIDTHS("80", "80", "80", "80"));
    expect_refusal(&t, "two slicing files", (const char *const[]){"several", "\"slicegpt\"", NULL});
    /* A named file that is there, and one that is not. */
    make_folder(&t, "\"widths.json\"");
    add_file(&t, "widths.json", WIDTHS("80", "80", "80", "80"));
    sp_model *m = NULL;
    CHECK_MSG(sp_model_open(t.dir, &m) == SPRIG_OK && m->cfg->slice.enabled, "named file: %s", sprig_last_error());
    sp_model_close(m);
    remove_folder(&t);
    make_folder(&t, "\"missing.json\"");
    CHECK(sp_model_open(t.dir, &m) == SPRIG_E_IO && sp_contains(sprig_last_error(), "missing.json"));
    remove_folder(&t);
    /* Unknown keys are refused, as SliceGPT's SlicingConfig(**d) refuses them. */
    make_folder(&t, "{\"hidden_size\": 112, \"layers_num\": 2, \"const_dimension\": 80, \"round_interval\": 8}");
    expect_refusal(&t, "unknown key", (const char *const[]){"round_interval", NULL});
}

/* ---- widths and rounding (LLaMA-2-7B shapes, no files) ---------------------------------- */

static const char *LLAMA2_7B =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 4096, \"intermediate_size\": 11008, "
    "\"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"rms_norm_eps\": 1e-5, "
    "\"max_position_embeddings\": 4096, \"vocab_size\": 32000}";

static void test_rounding(void) {
    sp_model_config cfg;
    CHECK(sp_model_config_parse(LLAMA2_7B, strlen(LLAMA2_7B), "7b", &cfg) == SPRIG_OK);
    CHECK(sp_slice_width(4096, 0.20, 8) == 3272 && sp_slice_width(4096, 0.25, 8) == 3072 &&
          sp_slice_width(4096, 0.30, 8) == 2864);
    CHECK(sp_slice_width(4096, 0.20, 1) == 3276 && sp_slice_width(4096, 0.30, 1) == 2867);
    /* The widths the kernels serve round-trip through SliceGPT's JSON. */
    const int good[] = {3272, 3072, 2864};
    for (int i = 0; i < 3; ++i) {
        sp_slice_config s, back;
        sp_slice_const(&cfg, good[i], &s);
        char *json = sp_slice_to_json(&cfg, &s);
        CHECK(json != NULL);
        sprig_status st = json ? sp_slice_parse(json, strlen(json), "7b.json", &cfg, &back) : SPRIG_E_NOMEM;
        CHECK_MSG(st == SPRIG_OK, "%d: %s", good[i], sprig_last_error());
        CHECK(st != SPRIG_OK || (back.embedding_dim == good[i] && back.attn_in[31] == good[i] &&
                                 back.mlp_out[30] == good[i] && back.mlp_out[31] == 4096 && back.lm_head_width == 4096));
        free(json);
    }
    /* round_interval 1 widths (20% and 30% of 4096) are refused with the rounded value. */
    const int bad[][2] = {{3276, 3272}, {2867, 2864}};
    for (int i = 0; i < 2; ++i) {
        char json[160], rounded[16], width[16];
        snprintf(json, sizeof json, "{\"hidden_size\": 4096, \"layers_num\": 32, \"const_dimension\": %d}", bad[i][0]);
        snprintf(width, sizeof width, "%d", bad[i][0]);
        snprintf(rounded, sizeof rounded, "-> %d", bad[i][1]);
        sp_slice_config s;
        CHECK(sp_slice_parse(json, strlen(json), "Llama-2-7b-hf_0.2.json", &cfg, &s) == SPRIG_E_FORMAT);
        const char *msg = sprig_last_error();
        CHECK_MSG(sp_contains(msg, width) && sp_contains(msg, rounded) && sp_contains(msg, "round_interval") &&
                      sp_contains(msg, "multiple of 8"), "%s", msg);
        if (i == 0) printf("refused: %s\n", msg);
    }
    /* The hand-written form for a model saved without its JSON: one width everywhere. */
    sp_slice_config s;
    const char *konst = "{\"const_dimension\": 3072}";
    CHECK_MSG(sp_slice_parse(konst, strlen(konst), "x", &cfg, &s) == SPRIG_OK, "%s", sprig_last_error());
    CHECK(s.enabled && s.embedding_dim == 3072 && s.mlp_in[17] == 3072 && s.mlp_out[31] == 4096 && s.lm_head_width == 4096);
    /* Model mismatch and the Phi-2 layout. */
    const char *other = "{\"hidden_size\": 5120, \"layers_num\": 32, \"const_dimension\": 3072}";
    CHECK(sp_slice_parse(other, strlen(other), "x", &cfg, &s) == SPRIG_E_FORMAT && sp_contains(sprig_last_error(), "5120"));
    const char *par = "{\"hidden_size\": 4096, \"layers_num\": 32, \"parallel_blocks\": true, \"const_dimension\": 3072}";
    CHECK(sp_slice_parse(par, strlen(par), "x", &cfg, &s) == SPRIG_E_FORMAT &&
          sp_contains(sprig_last_error(), "parallel_blocks"));
    const char *layers = "{\"hidden_size\": 4096, \"layers_num\": 32, \"attention_input_dimensions\": {\"0\": 3072}}";
    CHECK(sp_slice_parse(layers, strlen(layers), "x", &cfg, &s) == SPRIG_E_FORMAT &&
          sp_contains(sprig_last_error(), "layer 1"));
}

/* ---- the tensor check on its own: norm weights and router widths ------------------------ */

typedef struct fake_files {
    sp_tensor t[32];
    int n;
} fake_files;

static const sp_tensor *fake_lookup(const void *ctx, const char *name) {
    const fake_files *f = ctx;
    for (int i = 0; i < f->n; ++i)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

static char g_names[32][80];

static void fake_add(fake_files *f, const char *name, int64_t a, int64_t b) {
    snprintf(g_names[f->n], sizeof g_names[0], "%s", name);
    sp_tensor *t = &f->t[f->n++];
    memset(t, 0, sizeof *t);
    t->name = g_names[f->n - 1], t->dtype = SP_DTYPE_F16, t->ndim = b ? 2 : 1, t->shape[0] = a, t->shape[1] = b;
}

static void test_tensor_check(void) {
    /* hidden 16, inter 32, 1 layer, 2 heads of 8, vocab 10; sliced to 8; LTE g = 8 (4 experts). */
    const char *j = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 16, \"intermediate_size\": 32, "
                    "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"rms_norm_eps\": 1e-5, "
                    "\"max_position_embeddings\": 8, \"vocab_size\": 10, \"lte\": {\"expert_size\": 8, \"threshold\": 0.5}}";
    sp_model_config cfg;
    CHECK(sp_model_config_parse(j, strlen(j), "t", &cfg) == SPRIG_OK);
    sp_slice_const(&cfg, 8, &cfg.slice);
    fake_files f = {0};
    fake_add(&f, "model.embed_tokens.weight", 10, 8);
    fake_add(&f, "model.layers.0.self_attn.q_proj.weight", 16, 8);
    fake_add(&f, "model.layers.0.self_attn.k_proj.weight", 16, 8);
    fake_add(&f, "model.layers.0.self_attn.v_proj.weight", 16, 8);
    fake_add(&f, "model.layers.0.self_attn.o_proj.weight", 8, 16);
    fake_add(&f, "model.layers.0.attn_shortcut_Q", 8, 8);
    fake_add(&f, "model.layers.0.mlp.gate_proj.weight", 32, 8);
    fake_add(&f, "model.layers.0.mlp.up_proj.weight", 32, 8);
    fake_add(&f, "model.layers.0.mlp.down_proj.weight", 16, 32);
    fake_add(&f, "model.layers.0.mlp_shortcut_Q", 8, 16);
    fake_add(&f, "model.layers.0.mlp.router.weight", 4, 8);
    fake_add(&f, "lm_head.weight", 10, 16);
    CHECK_MSG(sp_model_config_check_tensors(&cfg, fake_lookup, &f) == SPRIG_OK, "%s", sprig_last_error());
    /* A router over the full width does not fit a sliced MLP input. */
    f.t[10].shape[1] = 16;
    CHECK(sp_model_config_check_tensors(&cfg, fake_lookup, &f) == SPRIG_E_FORMAT &&
          sp_contains(sprig_last_error(), "mlp.router.weight") && sp_contains(sprig_last_error(), "4x8"));
    f.t[10].shape[1] = 8;
    /* A norm weight in a sliced model would be applied on top of the folded one. */
    fake_add(&f, "model.layers.0.input_layernorm.weight", 16, 0);
    CHECK(sp_model_config_check_tensors(&cfg, fake_lookup, &f) == SPRIG_E_FORMAT &&
          sp_contains(sprig_last_error(), "input_layernorm") && sp_contains(sprig_last_error(), "weightless"));
    f.n--;
    /* The shortcut is [in, out], not nn.Linear's [out, in]. */
    f.t[9].shape[0] = 16, f.t[9].shape[1] = 8;
    CHECK(sp_model_config_check_tensors(&cfg, fake_lookup, &f) == SPRIG_E_FORMAT &&
          sp_contains(sprig_last_error(), "mlp_shortcut_Q") && sp_contains(sprig_last_error(), "16x8"));
}

/* ---- sprig synth --slice: a sliced synthetic model loads, has orthogonal shortcut
 * blocks, and runs with LTE routers and with thresholds near their targets ------------- */

static void test_synth(const char *cli) {
    char dir[64] = "/tmp/sprig_synth_XXXXXX", cmd[1024];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(cmd, sizeof cmd, "'%s' synth '%s' --slice 0.25 --lte 16 --dtype fp32 --seed 3 > /dev/null", cli, dir);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    sp_model *m = NULL;
    CHECK_MSG(sp_model_open(dir, &m) == SPRIG_OK, "synth: %s", sprig_last_error());
    if (m) {
        const sp_slice_config *s = &m->cfg->slice;
        const int L = m->cfg->num_hidden_layers, D = m->cfg->hidden_size;
        CHECK(s->enabled && s->embedding_dim == 48 && D == 64 && s->mlp_out[L - 1] == 64 && s->mlp_out[0] == 48);
        CHECK(m->lm_head->shape[1] == 64 && m->layers[0].router->shape[1] == 48);
        /* The last MLP shortcut is a [48][64] block of an orthogonal matrix: orthonormal rows. */
        const sp_tensor *Q = m->layers[L - 1].mlp_shortcut;
        float a[64], b[64];
        double worst = 0;
        for (int i = 0; i < 48; ++i)
            for (int j = 0; j < 48; ++j) {
                sp_tensor_row(Q, i, a), sp_tensor_row(Q, j, b);
                double dot = 0;
                for (int k = 0; k < 64; ++k) dot += (double)a[k] * b[k];
                worst = fmax(worst, fabs(dot - (i == j)));
            }
        CHECK_MSG(worst < 1e-5, "synth shortcut rows: |Q Q^T - I| = %.3g", worst);
        int ids[24];
        for (int t = 0; t < 24; ++t) ids[t] = (t * 97 + 13) % 500;
        sp_cpu *c = NULL;
        CHECK(sp_cpu_open(m, 24, SP_MLP_AUTO, &c) == SPRIG_OK);
        const float *out = NULL;
        int finite = 1;
        for (int t = 0; c && t < 24; ++t) {
            CHECK(sp_cpu_forward(c, ids[t], t, &out) == SPRIG_OK);
            for (int v = 0; v < m->cfg->vocab_size; ++v) finite &= isfinite(out[v]) != 0;
        }
        const double lte = c ? sp_cpu_mlp_sparsity(c) : 0;
        CHECK(c && sp_cpu_calibrate(c, ids, 24, 0.5) == SPRIG_OK);
        for (int t = 0; c && t < 24; ++t) CHECK(sp_cpu_forward(c, ids[t], t, &out) == SPRIG_OK);
        const double thr = c ? sp_cpu_mlp_sparsity(c) : 0;
        printf("synth --slice 0.25 --lte 16: width 48 of 64, shortcut |QQ^T - I| %.2g, LTE sparsity %.1f%% "
               "(target 50%%), thresholds %.1f%%\n", worst, 100 * lte, 100 * thr);
        CHECK(finite && lte > 0.3 && lte < 0.7 && fabs(thr - 0.5) < 0.01);
        sp_cpu_close(c);
        sp_model_close(m);
    }
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 3; ++i) {
        snprintf(cmd, sizeof cmd, "%s/%s", dir, files[i]);
        unlink(cmd);
    }
    rmdir(dir);
}

int main(int argc, char **argv) {
    g_root = argc > 1 ? argv[1] : "tests/fixtures/sliced";
    check_model("tiny-sliced-20", 88);
    check_model("tiny-sliced-25", 80);
    check_model("tiny-sliced-30", 72);
    check_model("tiny-sliced-25-lte", 80);
    test_refusals();
    test_rounding();
    test_tensor_check();
    if (argc > 2) test_synth(argv[2]);
    return sp_test_finish("test_sliced_model", 0);
}

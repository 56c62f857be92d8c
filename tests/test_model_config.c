/* config.json parsing and model folders: good LLaMA-2/LLaMA-3/LTE configs give
 * the right fields; every bad config or folder gives its status and a message
 * with the key facts (tensor names, expected and found shapes). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_model_config.h"
#include "sp_model_files.h"
#include "test_util.h"

/* ---- config.json ------------------------------------------------------------------ */

/* hidden 8, inter 16, 2 layers, 2 heads, 1 kv head (head_dim 4), vocab 10. */
#define BASE_FIELDS                                                                      \
    "\"hidden_size\": 8, \"intermediate_size\": 16, \"num_hidden_layers\": 2, "           \
    "\"num_attention_heads\": 2, \"rms_norm_eps\": 1e-5, \"max_position_embeddings\": 32, " \
    "\"vocab_size\": 10"
#define ARCH "\"architectures\": [\"LlamaForCausalLM\"], "

static const char *LLAMA2 = "{" ARCH BASE_FIELDS ", \"num_key_value_heads\": 1, \"bos_token_id\": 1, "
                            "\"eos_token_id\": 2, \"hidden_act\": \"silu\", \"torch_dtype\": "
                            "\"float16\", \"rope_scaling\": null, \"model_type\": \"llama\"}";

static sprig_status parse(const char *json, sp_model_config *c) {
    return sp_model_config_parse(json, strlen(json), "cfg/config.json", c);
}

static void test_llama2(void) {
    sp_model_config c;
    sprig_status s = parse(LLAMA2, &c);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    CHECK(c.hidden_size == 8 && c.intermediate_size == 16 && c.num_hidden_layers == 2);
    CHECK(c.num_attention_heads == 2 && c.num_key_value_heads == 1 && c.head_dim == 4);
    CHECK(c.rms_norm_eps == 1e-5 && c.rope_theta == 10000.0 && c.max_position_embeddings == 32);
    CHECK(c.vocab_size == 10 && c.tie_word_embeddings == 0 && strcmp(c.torch_dtype, "float16") == 0);
    CHECK(c.bos_token_id == 1 && c.n_eos == 1 && c.eos_token_ids[0] == 2);
    CHECK(c.rope_scaling.kind == SP_ROPE_NONE && !c.lte.enabled);

    /* Defaults: kv heads = heads, no token ids, no dtype. Not NUL-terminated input. */
    const char *min = "{" ARCH BASE_FIELDS "}XXXX";
    s = sp_model_config_parse(min, strlen(min) - 4, NULL, &c);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    CHECK(c.num_key_value_heads == 2 && c.head_dim == 4 && c.bos_token_id == -1 && c.n_eos == 0);
    CHECK(c.torch_dtype[0] == '\0');
}

static void test_llama3(void) {
    const char *j = "{" ARCH BASE_FIELDS ", \"num_key_value_heads\": 1, \"head_dim\": 6, "
                    "\"rope_theta\": 500000.0, \"tie_word_embeddings\": true, \"bos_token_id\": 0, "
                    "\"eos_token_id\": [3, 9, 4], \"dtype\": \"bfloat16\", \"rope_scaling\": "
                    "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                    "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 16}}";
    sp_model_config c;
    sprig_status s = parse(j, &c);
    CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
    CHECK(c.head_dim == 6 && c.rope_theta == 500000.0 && c.tie_word_embeddings == 1);
    CHECK(c.n_eos == 3 && c.eos_token_ids[0] == 3 && c.eos_token_ids[1] == 9 && c.eos_token_ids[2] == 4);
    CHECK(c.bos_token_id == 0 && strcmp(c.torch_dtype, "bfloat16") == 0);
    CHECK(c.rope_scaling.kind == SP_ROPE_LLAMA3 && c.rope_scaling.factor == 8.0 &&
          c.rope_scaling.low_freq_factor == 1.0 && c.rope_scaling.high_freq_factor == 4.0 &&
          c.rope_scaling.original_max_position_embeddings == 16);
    /* The older spelling "type" and the no-op "default" type. */
    const char *old = "{" ARCH BASE_FIELDS ", \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 2, "
                      "\"low_freq_factor\": 1, \"high_freq_factor\": 2, "
                      "\"original_max_position_embeddings\": 8}}";
    CHECK(parse(old, &c) == SPRIG_OK && c.rope_scaling.kind == SP_ROPE_LLAMA3);
    const char *def = "{" ARCH BASE_FIELDS ", \"rope_scaling\": {\"rope_type\": \"default\"}}";
    CHECK(parse(def, &c) == SPRIG_OK && c.rope_scaling.kind == SP_ROPE_NONE);
    /* transformers >= 5 writes "rope_parameters" with rope_theta inside; an
     * empty "rope_scaling" defers to it; original_max_position_embeddings
     * defaults to max_position_embeddings; rope_theta inside wins. */
    const char *v5 = "{" ARCH BASE_FIELDS ", \"rope_theta\": 7.0, \"rope_scaling\": {}, "
                     "\"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, "
                     "\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0}}";
    CHECK_MSG(parse(v5, &c) == SPRIG_OK, "%s", sprig_last_error());
    CHECK(c.rope_scaling.kind == SP_ROPE_LLAMA3 && c.rope_theta == 500000.0 &&
          c.rope_scaling.factor == 8.0 && c.rope_scaling.original_max_position_embeddings == 32);
    const char *v5def = "{" ARCH BASE_FIELDS ", \"rope_parameters\": {\"rope_type\": \"default\", "
                        "\"rope_theta\": 250000.0}}";
    CHECK(parse(v5def, &c) == SPRIG_OK && c.rope_scaling.kind == SP_ROPE_NONE &&
          c.rope_theta == 250000.0);
    /* No type at all means "default" (as in transformers). */
    const char *notype = "{" ARCH BASE_FIELDS ", \"rope_parameters\": {\"rope_theta\": 20.0}}";
    CHECK(parse(notype, &c) == SPRIG_OK && c.rope_scaling.kind == SP_ROPE_NONE && c.rope_theta == 20.0);
    /* The architectures of model/sp_arch.h: which one, and Mistral's window (null: none). */
    CHECK(parse("{" ARCH BASE_FIELDS "}", &c) == SPRIG_OK && c.arch == SP_ARCH_LLAMA && c.sliding_window == 0);
    const char *mistral = "{\"architectures\": [\"MistralForCausalLM\"], " BASE_FIELDS ", \"sliding_window\": 4096}";
    CHECK_MSG(parse(mistral, &c) == SPRIG_OK, "%s", sprig_last_error());
    CHECK(c.arch == SP_ARCH_MISTRAL && c.sliding_window == 4096 && !sp_arch_get(c.arch)->qkv_bias);
    const char *no_window = "{\"architectures\": [\"MistralForCausalLM\"], " BASE_FIELDS ", \"sliding_window\": null}";
    CHECK(parse(no_window, &c) == SPRIG_OK && c.arch == SP_ARCH_MISTRAL && c.sliding_window == 0);
    /* Qwen2: biases by architecture; its sliding_window is ignored while use_sliding_window is false */
    const char *qwen2 = "{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE_FIELDS ", \"sliding_window\": 32, "
                        "\"use_sliding_window\": false}";
    CHECK_MSG(parse(qwen2, &c) == SPRIG_OK, "%s", sprig_last_error());
    CHECK(c.arch == SP_ARCH_QWEN2 && c.sliding_window == 0 && sp_arch_get(c.arch)->qkv_bias);
    CHECK(sp_arch_find("LlamaForCausalLM") == sp_arch_get(SP_ARCH_LLAMA) && !sp_arch_find("llama"));
}

static void test_lte_config(void) {
    const char *j = "{" ARCH BASE_FIELDS ", \"lte\": {\"expert_size\": 4, \"threshold\": 0.5}}";
    sp_model_config c;
    CHECK_MSG(parse(j, &c) == SPRIG_OK, "%s", sprig_last_error());
    CHECK(c.lte.enabled && c.lte.expert_size == 4 && c.lte.n_experts == 4 && c.lte.threshold == 0.5);
    CHECK(c.lte.has_router[0] && c.lte.has_router[1] && !c.lte.has_router[2]);
    j = "{" ARCH BASE_FIELDS ", \"lte\": {\"expert_size\": 8, \"threshold\": 0.25, "
        "\"layers_with_router\": [1]}}";
    CHECK_MSG(parse(j, &c) == SPRIG_OK, "%s", sprig_last_error());
    CHECK(c.lte.n_experts == 2 && !c.lte.has_router[0] && c.lte.has_router[1]);
}

typedef struct bad_case {
    const char *json, *n1, *n2;
} bad_case;

static void test_bad_configs(void) {
    static const bad_case cases[] = {
        {"{\"architectures\": [\"GemmaForCausalLM\"], " BASE_FIELDS "}",
         "unknown architecture 'GemmaForCausalLM'", "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"},
        {"{\"architectures\": [\"MistralForCausalLM\"], " BASE_FIELDS ", \"sliding_window\": 0}", "sliding_window",
         "out of range"},
        {"{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE_FIELDS ", \"use_sliding_window\": true}",
         "use_sliding_window", "Qwen2ForCausalLM"},
        {"{\"architectures\": [\"MistralForCausalLM\"], " BASE_FIELDS ", \"attention_bias\": true}",
         "attention_bias", "mistral layers without biases"},
        {"{" BASE_FIELDS "}", "architectures", NULL},
        {"{\"architectures\": \"LlamaForCausalLM\", " BASE_FIELDS "}", "architectures", NULL},
        {"not json", "not valid JSON", NULL},
        {"[1]", "not a JSON object", NULL},
        {"{" ARCH "\"hidden_size\": 8}", "missing \"intermediate_size\"", NULL},
        {"{" ARCH BASE_FIELDS ", \"hidden_size\": 7}", "\"hidden_size\" appears twice", NULL},
        {"{" ARCH "\"hidden_size\": 7, \"intermediate_size\": 16, \"num_hidden_layers\": 2, "
         "\"num_attention_heads\": 2, \"rms_norm_eps\": 1e-5, \"max_position_embeddings\": 32, "
         "\"vocab_size\": 10}", "hidden_size 7", "num_attention_heads 2"},
        {"{" ARCH BASE_FIELDS ", \"num_key_value_heads\": 3}", "num_attention_heads 2",
         "num_key_value_heads 3"},
        {"{" ARCH BASE_FIELDS ", \"num_key_value_heads\": 0}", "num_key_value_heads", "out of range"},
        {"{" ARCH BASE_FIELDS ", \"head_dim\": 5}", "head_dim 5", "odd"},
        {"{" ARCH "\"hidden_size\": 8.5, \"intermediate_size\": 16}", "\"hidden_size\"", "8.5"},
        {"{" ARCH "\"hidden_size\": \"8\", \"intermediate_size\": 16}", "\"hidden_size\"", "integer"},
        {"{" ARCH "\"hidden_size\": -8, \"intermediate_size\": 16}", "\"hidden_size\" = -8",
         "out of range"},
        {"{" ARCH "\"hidden_size\": 8, \"intermediate_size\": 16, \"num_hidden_layers\": 2, "
         "\"num_attention_heads\": 2, \"rms_norm_eps\": 0, \"max_position_embeddings\": 32, "
         "\"vocab_size\": 10}", "rms_norm_eps", "positive"},
        {"{" ARCH BASE_FIELDS ", \"rope_theta\": \"big\"}", "rope_theta", "number"},
        {"{" ARCH BASE_FIELDS ", \"hidden_act\": \"gelu\"}", "hidden_act", "gelu"},
        {"{" ARCH BASE_FIELDS ", \"attention_bias\": true}", "attention_bias", "not supported"},
        {"{" ARCH BASE_FIELDS ", \"tie_word_embeddings\": 1}", "tie_word_embeddings", "true or false"},
        {"{" ARCH BASE_FIELDS ", \"eos_token_id\": 10}", "eos_token_id", "vocab_size 10"},
        {"{" ARCH BASE_FIELDS ", \"eos_token_id\": [1, -1]}", "eos_token_id", "-1"},
        {"{" ARCH BASE_FIELDS ", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2}}",
         "rope_scaling type 'linear' is not supported", "llama3"},
        {"{" ARCH BASE_FIELDS ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}}",
         "rope_scaling", "missing \"low_freq_factor\""},
        {"{" ARCH BASE_FIELDS ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, "
         "\"low_freq_factor\": 2, \"high_freq_factor\": 2, \"original_max_position_embeddings\": 8}}",
         "high_freq_factor 2", "low_freq_factor 2"},
        {"{" ARCH BASE_FIELDS ", \"rope_scaling\": 3}", "rope_scaling", "null or an object"},
        {"{" ARCH BASE_FIELDS ", \"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4}}",
         "rope_parameters type 'yarn' is not supported", NULL},
        {"{" ARCH BASE_FIELDS ", \"partial_rotary_factor\": 0.5}", "partial_rotary_factor 0.5",
         "not supported"},
        {"{" ARCH BASE_FIELDS ", \"head_dim\": 4, \"num_attention_heads\": 3}",
         "\"num_attention_heads\" appears twice", NULL},
        {"{" ARCH BASE_FIELDS ", \"lte\": {\"expert_size\": 4, \"threshold\": 1.0}}", "threshold 1",
         "between 0 and 1"},
        {"{" ARCH BASE_FIELDS ", \"lte\": {\"expert_size\": 4, \"threshold\": 0}}", "threshold 0",
         "between 0 and 1"},
        {"{" ARCH BASE_FIELDS ", \"lte\": {\"expert_size\": 4}}", "lte", "missing \"threshold\""},
        {"{" ARCH BASE_FIELDS ", \"lte\": {\"expert_size\": 5, \"threshold\": 0.5}}", "expert_size 5",
         "intermediate_size 16"},
        {"{" ARCH BASE_FIELDS ", \"lte\": {\"expert_size\": 4, \"treshold\": 0.5}}", "lte.treshold",
         "unknown key"},
        {"{" ARCH BASE_FIELDS ", \"lte\": {\"expert_size\": 4, \"threshold\": 0.5, "
         "\"layers_with_router\": [0, 2]}}", "layers_with_router", "num_hidden_layers 2"},
        {"{" ARCH BASE_FIELDS ", \"lte\": {\"expert_size\": 4, \"threshold\": 0.5, "
         "\"layers_with_router\": [1, 1]}}", "layer 1 twice", NULL},
        {"{" ARCH BASE_FIELDS ", \"lte\": [4]}", "\"lte\" must be an object", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        sp_model_config c;
        sprig_status s = parse(cases[i].json, &c);
        const char *m = sprig_last_error();
        CHECK_MSG(s == SPRIG_E_FORMAT, "case %zu: got %s (%s)", i, sprig_status_name(s), m);
        CHECK_MSG(sp_contains(m, "cfg/config.json"), "case %zu: '%s' does not name the file", i, m);
        if (getenv("SPRIG_TEST_VERBOSE")) printf("  %s\n", m);
        if (cases[i].n1) CHECK_MSG(sp_contains(m, cases[i].n1), "case %zu: '%s' lacks '%s'", i, m, cases[i].n1);
        if (cases[i].n2) CHECK_MSG(sp_contains(m, cases[i].n2), "case %zu: '%s' lacks '%s'", i, m, cases[i].n2);
    }
}

/* ---- model folders ------------------------------------------------------------------ */

#define MAX_T 64
typedef struct tlist {
    sp_tensor t[MAX_T];
    char names[MAX_T][96];
    int n;
} tlist;

static sp_tensor *add(tlist *l, const char *name, sp_dtype dt, int ndim, int64_t a, int64_t b,
                      const void *data) {
    sp_tensor *t = &l->t[l->n];
    snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
    *t = (sp_tensor){.name = l->names[l->n], .dtype = dt, .ndim = ndim, .shape = {a, b}, .data = data};
    l->n++;
    return t;
}

static sp_tensor *find(tlist *l, const char *name) {
    for (int i = 0; i < l->n; ++i)
        if (strcmp(l->t[i].name, name) == 0) return &l->t[i];
    return NULL;
}

static void drop(tlist *l, const char *name) {
    sp_tensor *t = find(l, name);
    if (t) t->name = "unrelated.tensor.that.is.ignored";
}

/* The tensors of the tiny config (hidden 8, inter 16, 2 layers, q 8, kv 4, vocab 10),
 * all zeros; with routers of E experts when lte_experts > 0. */
static void build_model(tlist *l, int lte_experts, int with_lm_head) {
    memset(l, 0, sizeof *l);
    char n[96];
    add(l, "model.embed_tokens.weight", SP_DTYPE_F16, 2, 10, 8, NULL);
    for (int L = 0; L < 2; ++L) {
#define T(suffix, nd, a, b)                                             \
    snprintf(n, sizeof n, "model.layers.%d.%s", L, suffix);             \
    add(l, n, SP_DTYPE_F16, nd, a, b, NULL)
        T("input_layernorm.weight", 1, 8, 0);
        T("post_attention_layernorm.weight", 1, 8, 0);
        T("self_attn.q_proj.weight", 2, 8, 8);
        T("self_attn.k_proj.weight", 2, 4, 8);
        T("self_attn.v_proj.weight", 2, 4, 8);
        T("self_attn.o_proj.weight", 2, 8, 8);
        T("mlp.gate_proj.weight", 2, 16, 8);
        T("mlp.up_proj.weight", 2, 16, 8);
        T("mlp.down_proj.weight", 2, 8, 16);
        if (lte_experts) {
            T("mlp.router.weight", 2, lte_experts, 8);
        }
#undef T
    }
    add(l, "model.norm.weight", SP_DTYPE_F32, 1, 8, 0, NULL);
    if (with_lm_head) add(l, "lm_head.weight", SP_DTYPE_BF16, 2, 10, 8, NULL);
}

static char root[256];

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

/* A fresh folder root/name with config.json and the tensors in `shards`
 * files (1: model.safetensors; 2: two shards and an index). */
static const char *write_folder(const char *name, const char *config, tlist *l, int shards) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    mkdir(dir, 0755);
    char p[700];
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, config);
    if (shards == 1) {
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        CHECK_MSG(sp_st_write(p, l->t, (size_t)l->n, NULL, NULL, NULL) == SPRIG_OK, "%s",
                  sprig_last_error());
        return dir;
    }
    int half = l->n / 2;
    char idx[8192];
    int k = snprintf(idx, sizeof idx, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int i = 0; i < l->n; ++i)
        k += snprintf(idx + k, sizeof idx - (size_t)k, "%s\"%s\": \"model-%05d-of-00002.safetensors\"",
                      i ? ", " : "", l->t[i].name, i < half ? 1 : 2);
    snprintf(idx + k, sizeof idx - (size_t)k, "}}");
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_text(p, idx);
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    CHECK(sp_st_write(p, l->t, (size_t)half, NULL, NULL, NULL) == SPRIG_OK);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    CHECK(sp_st_write(p, l->t + half, (size_t)(l->n - half), NULL, NULL, NULL) == SPRIG_OK);
    return dir;
}

static void expect_open_fail(const char *dir, sprig_status want, const char *n1, const char *n2,
                             const char *n3) {
    sp_model_files *mf = (sp_model_files *)1;
    sprig_status s = sp_model_files_open(dir, &mf);
    const char *m = sprig_last_error();
    CHECK_MSG(s == want, "%s: got %s, want %s (%s)", dir, sprig_status_name(s), sprig_status_name(want), m);
    CHECK(mf == NULL);
    if (s == SPRIG_OK) sp_model_files_close(mf);
    if (getenv("SPRIG_TEST_VERBOSE")) printf("  %s: %s\n", sprig_status_name(s), m);
    const char *needles[3] = {n1, n2, n3};
    for (int i = 0; i < 3; ++i)
        if (needles[i]) CHECK_MSG(sp_contains(m, needles[i]), "message '%s' lacks '%s'", m, needles[i]);
}

static void test_folders(void) {
    tlist l;
    build_model(&l, 0, 1);
    for (int shards = 1; shards <= 2; ++shards) {
        const char *dir = write_folder(shards == 1 ? "single" : "sharded", LLAMA2, &l, shards);
        sp_model_files *mf = NULL;
        sprig_status s = sp_model_files_open(dir, &mf);
        CHECK_MSG(s == SPRIG_OK, "%s", sprig_last_error());
        if (!mf) continue;
        CHECK(sp_model_files_n_shards(mf) == (size_t)shards);
        CHECK(sp_model_files_count(mf) == (size_t)l.n);
        CHECK(sp_model_files_config(mf)->num_key_value_heads == 1);
        const sp_tensor *k = sp_model_files_find(mf, "model.layers.1.self_attn.k_proj.weight");
        CHECK(k && k->shape[0] == 4 && k->shape[1] == 8 && k->nbytes == 64 && k->dtype == SP_DTYPE_F16);
        const sp_tensor *lm = sp_model_files_find(mf, "lm_head.weight");
        CHECK(lm && lm->dtype == SP_DTYPE_BF16);
        const sp_tensor *got = NULL;
        CHECK(sp_model_files_get(mf, "model.norm.weight", &got) == SPRIG_OK && got);
        CHECK(sp_model_files_get(mf, "nope", &got) == SPRIG_E_FORMAT && !got &&
              sp_contains(sprig_last_error(), "'nope'"));
        sp_model_files_close(mf);
    }

    /* Tied embeddings: no lm_head needed. */
    const char *tied = "{" ARCH BASE_FIELDS ", \"num_key_value_heads\": 1, \"tie_word_embeddings\": true}";
    build_model(&l, 0, 0);
    sp_model_files *mf = NULL;
    CHECK_MSG(sp_model_files_open(write_folder("tied", tied, &l, 1), &mf) == SPRIG_OK, "%s",
              sprig_last_error());
    sp_model_files_close(mf);
    /* ...but untied it is missing. */
    expect_open_fail(write_folder("untied", LLAMA2, &l, 1), SPRIG_E_FORMAT, "missing tensor 'lm_head.weight'",
                     "10x8", NULL);
}

static void test_bad_folders(void) {
    tlist l;
    build_model(&l, 0, 1);
    find(&l, "model.layers.1.self_attn.k_proj.weight")->shape[0] = 8;
    expect_open_fail(write_folder("kshape", LLAMA2, &l, 1), SPRIG_E_FORMAT,
                     "'model.layers.1.self_attn.k_proj.weight' has shape 8x8",
                     "[num_key_value_heads*head_dim, hidden_size] = 4x8", "kshape");

    build_model(&l, 0, 1);
    find(&l, "model.embed_tokens.weight")->shape[0] = 11;
    expect_open_fail(write_folder("vocab", LLAMA2, &l, 2), SPRIG_E_FORMAT, "11x8", "10x8", NULL);

    build_model(&l, 0, 1);
    find(&l, "model.norm.weight")->ndim = 2;
    find(&l, "model.norm.weight")->shape[1] = 1;
    expect_open_fail(write_folder("norm2d", LLAMA2, &l, 1), SPRIG_E_FORMAT, "8x1", "= 8", NULL);

    build_model(&l, 0, 1);
    drop(&l, "model.layers.0.mlp.up_proj.weight");
    expect_open_fail(write_folder("missing", LLAMA2, &l, 2), SPRIG_E_FORMAT,
                     "missing tensor 'model.layers.0.mlp.up_proj.weight'", "16x8", NULL);

    build_model(&l, 0, 1);
    find(&l, "model.layers.0.mlp.down_proj.weight")->dtype = SP_DTYPE_I32;
    expect_open_fail(write_folder("intweight", LLAMA2, &l, 1), SPRIG_E_FORMAT,
                     "'model.layers.0.mlp.down_proj.weight' has dtype I32", NULL, NULL);

    /* Qwen2 layers carry q/k/v biases: a folder without them is refused naming the first. */
    const char *qwen2 = "{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE_FIELDS ", \"num_key_value_heads\": 1}";
    build_model(&l, 0, 1);
    expect_open_fail(write_folder("qwen2", qwen2, &l, 1), SPRIG_E_FORMAT,
                     "missing tensor 'model.layers.0.self_attn.q_proj.bias'", "[num_attention_heads*head_dim]", NULL);

    /* Shards: one file gone, one that lacks a tensor the index promises, a path escape. */
    char p[700];
    build_model(&l, 0, 1);
    const char *dir = write_folder("noshard", LLAMA2, &l, 2);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    unlink(p);
    expect_open_fail(dir, SPRIG_E_IO, "model-00002-of-00002.safetensors", "No such file", NULL);

    dir = write_folder("lacks", LLAMA2, &l, 2);
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    CHECK(sp_st_write(p, l.t + 1, (size_t)(l.n / 2 - 1), NULL, NULL, NULL) == SPRIG_OK);
    expect_open_fail(dir, SPRIG_E_FORMAT, "tensor 'model.embed_tokens.weight'",
                     "'model-00001-of-00002.safetensors', which does not contain it", NULL);

    dir = write_folder("escape", LLAMA2, &l, 1);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_text(p, "{\"weight_map\": {\"model.norm.weight\": \"../single/model.safetensors\"}}");
    expect_open_fail(dir, SPRIG_E_FORMAT, "not a plain file name", NULL, NULL);
    write_text(p, "{\"weight_map\": {}}");
    expect_open_fail(dir, SPRIG_E_FORMAT, "weight_map", NULL, NULL);
    /* refused before any shard is opened: "s.safetensors" does not exist */
    write_text(p, "{\"weight_map\": {\"model.norm.weight\": \"s.safetensors\", \"model.norm.weight\": \"s.safetensors\"}}");
    expect_open_fail(dir, SPRIG_E_FORMAT, "tensor 'model.norm.weight' is listed twice", NULL, NULL);
    write_text(p, "{\"weight_map\": ");
    expect_open_fail(dir, SPRIG_E_FORMAT, "model.safetensors.index.json", "not valid JSON", NULL);

    /* A truncated single file inside a folder. */
    dir = write_folder("trunc", LLAMA2, &l, 1);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK(truncate(p, 2000) == 0);
    expect_open_fail(dir, SPRIG_E_FORMAT, "trunc/model.safetensors", "truncated", NULL);

    /* Missing pieces. */
    snprintf(p, sizeof p, "%s/empty", root);
    mkdir(p, 0755);
    expect_open_fail(p, SPRIG_E_IO, "no config.json", NULL, NULL);
    snprintf(p, sizeof p, "%s/empty/config.json", root);
    write_text(p, LLAMA2);
    snprintf(p, sizeof p, "%s/empty", root);
    expect_open_fail(p, SPRIG_E_IO, "neither model.safetensors nor", NULL, NULL);
    snprintf(p, sizeof p, "%s/does-not-exist", root);
    expect_open_fail(p, SPRIG_E_IO, "does-not-exist", NULL, NULL);
}

/* ---- LTE folders -------------------------------------------------------------------- */

static const char *LTE_CFG = "{" ARCH BASE_FIELDS ", \"num_key_value_heads\": 1, "
                             "\"lte\": {\"expert_size\": 4, \"threshold\": 0.5}}";

static void test_lte_folders(void) {
    tlist l;
    int32_t perm32[16];
    int64_t perm64[16];
    for (int i = 0; i < 16; ++i) perm32[i] = perm64[i] = (i * 5 + 3) % 16;  /* a permutation */
    build_model(&l, 4, 1);
    add(&l, "model.layers.0.mlp.expert_permutation", SP_DTYPE_I32, 1, 16, 0, perm32);
    add(&l, "model.layers.1.mlp.expert_permutation", SP_DTYPE_I64, 1, 16, 0, perm64);
    sp_model_files *mf = NULL;
    CHECK_MSG(sp_model_files_open(write_folder("lte", LTE_CFG, &l, 2), &mf) == SPRIG_OK, "%s",
              sprig_last_error());
    if (mf) {
        const sp_tensor *p = sp_model_files_find(mf, "model.layers.1.mlp.expert_permutation");
        CHECK(p && sp_tensor_int_at(p, 0) == 3 && sp_tensor_int_at(p, 15) == (15 * 5 + 3) % 16);
        CHECK(sp_model_files_config(mf)->lte.n_experts == 4);
    }
    sp_model_files_close(mf);

    /* Without permutations (identity) it is fine too. */
    build_model(&l, 4, 1);
    mf = NULL;
    CHECK_MSG(sp_model_files_open(write_folder("lte_noperm", LTE_CFG, &l, 1), &mf) == SPRIG_OK, "%s",
              sprig_last_error());
    sp_model_files_close(mf);

    int32_t dup[16];
    memcpy(dup, perm32, sizeof dup);
    dup[7] = dup[3];
    build_model(&l, 4, 1);
    add(&l, "model.layers.1.mlp.expert_permutation", SP_DTYPE_I32, 1, 16, 0, dup);
    char want[96];
    snprintf(want, sizeof want, "value %d appears more than once (again at entry 7)", (int)dup[3]);
    expect_open_fail(write_folder("lte_dup", LTE_CFG, &l, 1), SPRIG_E_FORMAT,
                     "'model.layers.1.mlp.expert_permutation' is not a permutation", want, NULL);

    int64_t big[16];
    memcpy(big, perm64, sizeof big);
    big[9] = 16;
    build_model(&l, 4, 1);
    add(&l, "model.layers.0.mlp.expert_permutation", SP_DTYPE_I64, 1, 16, 0, big);
    expect_open_fail(write_folder("lte_range", LTE_CFG, &l, 1), SPRIG_E_FORMAT, "entry 9 = 16",
                     "outside [0, 16)", NULL);

    float fperm[16] = {0};
    build_model(&l, 4, 1);
    add(&l, "model.layers.0.mlp.expert_permutation", SP_DTYPE_F32, 1, 16, 0, fperm);
    expect_open_fail(write_folder("lte_fperm", LTE_CFG, &l, 1), SPRIG_E_FORMAT, "dtype F32",
                     "I32 or I64", NULL);

    build_model(&l, 4, 1);
    add(&l, "model.layers.0.mlp.expert_permutation", SP_DTYPE_I32, 1, 15, 0, perm32);
    expect_open_fail(write_folder("lte_plen", LTE_CFG, &l, 1), SPRIG_E_FORMAT, "has shape 15",
                     "[intermediate_size] = 16", NULL);

    build_model(&l, 8, 1);  /* 8 experts, but expert_size 4 of 16 neurons means 4 */
    expect_open_fail(write_folder("lte_rshape", LTE_CFG, &l, 1), SPRIG_E_FORMAT,
                     "'model.layers.0.mlp.router.weight' has shape 8x8", "= 4x8", NULL);

    build_model(&l, 0, 1);
    expect_open_fail(write_folder("lte_norouter", LTE_CFG, &l, 1), SPRIG_E_FORMAT,
                     "missing tensor 'model.layers.0.mlp.router.weight'", NULL, NULL);

    /* Only layer 1 has a router: layer 0's is not needed. */
    const char *one = "{" ARCH BASE_FIELDS ", \"num_key_value_heads\": 1, \"lte\": {\"expert_size\": "
                      "4, \"threshold\": 0.5, \"layers_with_router\": [1]}}";
    build_model(&l, 4, 1);
    drop(&l, "model.layers.0.mlp.router.weight");
    mf = NULL;
    CHECK_MSG(sp_model_files_open(write_folder("lte_one", one, &l, 1), &mf) == SPRIG_OK, "%s",
              sprig_last_error());
    sp_model_files_close(mf);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/sprig_test_mc_XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_llama2();
    test_llama3();
    test_lte_config();
    test_bad_configs();
    test_folders();
    test_bad_folders();
    test_lte_folders();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return sp_test_finish("test_model_config", 0);
}

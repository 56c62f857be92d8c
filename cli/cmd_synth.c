/* sprig synth: write a random LLaMA-shaped model folder (config.json,
 * model.safetensors, tokenizer.json), optionally with LTE routers tuned to a
 * target sparsity and optionally sliced the SliceGPT way (sp_slicegpt.h), so
 * the runtime can be tested and benchmarked where no real weights can be
 * downloaded. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "sp_error.h"
#include "sp_half.h"
#include "sp_safetensors.h"
#include "sp_slicegpt.h"

typedef struct synth_shape {
    const char *name;
    int d, f, layers, heads, kv_heads, vocab, context;
    double rope_theta;
    int llama3_rope;
} synth_shape;

static const synth_shape kShapes[] = {
    {"tiny", 64, 192, 2, 4, 2, 512, 256, 10000.0, 0},
    {"llama2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0, 0},
    {"llama2-13b", 5120, 13824, 40, 40, 40, 32000, 4096, 10000.0, 0},
    {"llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0, 1},
};

typedef struct synth_opts {
    const char *out;
    synth_shape shape;
    sp_dtype dtype;
    int lte_g;           /* 0: no routers */
    double lte_sparsity; /* target fraction of experts inactive */
    double slice;        /* SliceGPT slicing fraction; < 0: not sliced */
    int slice_width;     /* the residual width it gives (round_interval 8) */
    unsigned long long seed;
    int config_only;     /* config.json and tokenizer.json, no weights (for sprig analyze --model-dir) */
    int force;           /* --force: write into a folder that already holds files */
} synth_opts;

static void synth_help(FILE *to) {
    fprintf(to, "usage: sprig synth OUT_DIR [--model tiny|llama2-7b|llama2-13b|llama3-8b] [options]\n\n"
                "Writes a random model folder that `sprig run` loads like a real one.\n\n"
                "options:\n"
                "  --model NAME        shape preset (default tiny: d 64, f 192, 2 layers, vocab 512)\n"
                "  --layers N          override the number of layers\n"
                "  --dtype fp16|bf16|fp32  weight type (default fp16)\n"
                "  --lte G             add LTE routers with experts of G neurons to every layer\n"
                "  --lte-sparsity P    fraction of experts the routers should leave inactive (default 0.5);\n"
                "                      sets the threshold tau from the router score distribution\n"
                "  --slice S           slice the SliceGPT way at fraction S in [0,1): residual width\n"
                "                      int((1-S)*d) rounded down to a multiple of 8, weightless norms,\n"
                "                      random orthogonal shortcut matrices, the slicing JSON inline in\n"
                "                      config.json (\"slicegpt\"); routers then read the sliced width\n"
                "  --seed S            random seed (default 1)\n"
                "  --config-only       write config.json and tokenizer.json only, no weights: a folder that\n"
                "                      sprig analyze --model-dir and sprig tune --model-dir --list read\n"
                "  --force             write into OUT_DIR even when it already holds files (they may be\n"
                "                      overwritten); without it such a folder is refused\n");
}

/* ---- random data: a pool of random values copied from at random offsets, so
 * multi-gigabyte files are written at memory speed ------------------------------- */
#define POOL_ELEMS (1u << 22)
typedef struct synth_fill {
    uint16_t *pool16;
    float *pool32;
    unsigned long long rng;
    int hidden;          /* D, the unsliced width (shortcut matrices are blocks of D x D) */
    float *block;        /* the shortcut matrix being written, [in][out] */
} synth_fill;

static unsigned long long xorshift(unsigned long long *s) {
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static double uniform(unsigned long long *s) { return (double)(xorshift(s) >> 11) / 9007199254740992.0; }

/* A random n x n orthogonal matrix (row-major): modified Gram-Schmidt, run
 * twice, on uniform random rows. n is small here (a factor of D). */
static void random_orthogonal(synth_fill *f, int n, double *A) {
    for (int i = 0; i < n * n; ++i) A[i] = uniform(&f->rng) - 0.5;
    for (int pass = 0; pass < 2; ++pass)
        for (int i = 0; i < n; ++i) {
            double *r = A + (size_t)i * n;
            for (int k = 0; k < i; ++k) {
                const double *q = A + (size_t)k * n;
                double dot = 0;
                for (int j = 0; j < n; ++j) dot += r[j] * q[j];
                for (int j = 0; j < n; ++j) r[j] -= dot * q[j];
            }
            double norm = 0;
            for (int j = 0; j < n; ++j) norm += r[j] * r[j];
            for (int j = 0; j < n; ++j) r[j] /= sqrt(norm);
        }
}

static void shuffle(synth_fill *f, int *p, int n) {
    for (int i = 0; i < n; ++i) p[i] = i;
    for (int i = n - 1; i > 0; --i) {  /* Fisher-Yates */
        const int j = (int)(xorshift(&f->rng) % (unsigned long long)(i + 1)), t = p[i];
        p[i] = p[j], p[j] = t;
    }
}

/* The [in][out] top-left block of a random orthogonal D x D matrix, as a
 * sliced SliceGPT shortcut is. Q = P_r (A kron B) P_c with A (a x a) and
 * B (b x b) random orthogonal, D = a b, and random row/column permutations:
 * exactly orthogonal, dense, and O(D x out) to write where a QR of a D x D
 * random matrix would take minutes at D = 4096. */
static sprig_status shortcut_block(synth_fill *f, int in, int out) {
    const int D = f->hidden;
    int a = 1;
    for (int k = 1; (long long)k * k <= D; ++k)
        if (D % k == 0) a = k;
    const int b = D / a;
    double *A = malloc(sizeof *A * (size_t)a * a), *B = malloc(sizeof *B * (size_t)b * b);
    int *pr = malloc(sizeof *pr * (size_t)D), *pc = malloc(sizeof *pc * (size_t)D);
    free(f->block);
    f->block = malloc(sizeof(float) * (size_t)in * out);
    if (!A || !B || !pr || !pc || !f->block) {
        free(A), free(B), free(pr), free(pc);
        return sp_fail(SPRIG_E_NOMEM, "out of memory for a %dx%d shortcut matrix", in, out);
    }
    random_orthogonal(f, a, A);
    random_orthogonal(f, b, B);
    shuffle(f, pr, D);
    shuffle(f, pc, D);
    for (int i = 0; i < in; ++i)
        for (int j = 0; j < out; ++j) {
            const int r = pr[i], c = pc[j];
            f->block[(size_t)i * out + j] = (float)(A[(size_t)(r / b) * a + c / b] * B[(size_t)(r % b) * b + c % b]);
        }
    free(A), free(B), free(pr), free(pc);
    return SPRIG_OK;
}

static int is_shortcut(const sp_tensor *t) {
    const size_t n = strlen(t->name);
    return n > 11 && strcmp(t->name + n - 11, "_shortcut_Q") == 0;
}

/* Every float tensor is uniform in ±1/sqrt(columns) (norm weights are 1);
 * SliceGPT shortcut matrices are blocks of random orthogonal matrices. */
static sprig_status fill_tensor(void *ctx, const sp_tensor *t, size_t offset, void *buf, size_t n) {
    synth_fill *f = ctx;
    if (is_shortcut(t)) {
        if (offset == 0) SP_TRY(shortcut_block(f, (int)t->shape[0], (int)t->shape[1]));
        const size_t esz = sp_dtype_size(t->dtype), first = offset / esz;
        unsigned char *out = buf;
        for (size_t i = 0; i < n / esz; ++i) {
            const float v = f->block[first + i];
            const uint16_t h = t->dtype == SP_DTYPE_F16 ? sp_f32_to_f16(v) : sp_f32_to_bf16(v);
            memcpy(out + i * esz, esz == 4 ? (const void *)&v : (const void *)&h, esz);
        }
        return SPRIG_OK;
    }
    const size_t esz = sp_dtype_size(t->dtype);
    const int is_norm = t->ndim == 1;
    const double scale = is_norm ? 0 : 1.0 / sqrt((double)t->shape[t->ndim - 1]);
    unsigned char *out = buf;
    for (size_t done = 0; done < n;) {
        size_t start = (size_t)(xorshift(&f->rng) % (POOL_ELEMS / 2));
        size_t take = (n - done) < (POOL_ELEMS / 2) * esz ? (n - done) : (POOL_ELEMS / 2) * esz;
        if (is_norm) {
            for (size_t i = 0; i < take / esz; ++i) {
                float one = 1.0f;
                uint16_t h = t->dtype == SP_DTYPE_F16 ? sp_f32_to_f16(1.0f) : sp_f32_to_bf16(1.0f);
                memcpy(out + done + i * esz, esz == 4 ? (void *)&one : (void *)&h, esz);
            }
        } else if (esz == 4) {
            for (size_t i = 0; i < take / 4; ++i) {
                float v = (float)(f->pool32[start + i] * scale);
                memcpy(out + done + i * 4, &v, 4);
            }
        } else {
            /* The pools hold values in ±1; scale once per tensor through a small table would
             * cost the same: convert on the fly. */
            for (size_t i = 0; i < take / 2; ++i) {
                float v = (float)(f->pool32[start + i] * scale);
                uint16_t h = t->dtype == SP_DTYPE_F16 ? sp_f32_to_f16(v) : sp_f32_to_bf16(v);
                memcpy(out + done + i * 2, &h, 2);
            }
        }
        done += take;
        (void)offset;
    }
    return SPRIG_OK;
}

/* Inverse of the standard normal CDF by bisection on erfc (precise enough here). */
static double normal_quantile(double p) {
    double lo = -10, hi = 10;
    for (int i = 0; i < 200; ++i) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(-mid / sqrt(2.0)) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

static const char *dtype_json(sp_dtype t) {
    return t == SP_DTYPE_F16 ? "float16" : t == SP_DTYPE_BF16 ? "bfloat16" : "float32";
}

/* config.json's "slicegpt" value: SliceGPT's SlicingConfig for a constant width. */
static char *slice_json(const synth_opts *o) {
    sp_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.hidden_size = o->shape.d, cfg.num_hidden_layers = o->shape.layers;
    sp_slice_config *sl = malloc(sizeof *sl);
    if (!sl) return NULL;
    sp_slice_const(&cfg, o->slice_width, sl);
    char *json = sp_slice_to_json(&cfg, sl);
    free(sl);
    return json;
}

static int write_config(const synth_opts *o, double tau) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", o->out);
    FILE *fp = fopen(path, "w");
    if (!fp) {
        fprintf(stderr, "sprig synth: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    const synth_shape *s = &o->shape;
    fprintf(fp, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
                "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
                "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"vocab_size\": %d,\n"
                "  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": %.1f,\n",
            s->d, s->f, s->layers, s->heads, s->kv_heads, s->vocab, s->context, s->rope_theta);
    if (s->llama3_rope)
        fprintf(fp, "  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                    "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192},\n");
    fprintf(fp, "  \"tie_word_embeddings\": false,\n  \"torch_dtype\": \"%s\",\n  \"bos_token_id\": %d,\n"
                "  \"eos_token_id\": %d",
            dtype_json(o->dtype), s->vocab - 2, s->vocab - 1);
    if (o->lte_g)
        fprintf(fp, ",\n  \"lte\": {\"expert_size\": %d, \"threshold\": %.17g}", o->lte_g, tau);
    if (o->slice >= 0) {
        char *json = slice_json(o);
        if (!json) {
            fclose(fp);
            fprintf(stderr, "sprig synth: out of memory\n");
            return 1;
        }
        fprintf(fp, ",\n  \"slicegpt\": %s", json);
        free(json);
    }
    fprintf(fp, "\n}\n");
    return fclose(fp) != 0;
}

/* A byte-level BPE tokenizer (the GPT-2 byte alphabet, no merges) plus BOS/EOS
 * at the top of the vocabulary: every text encodes, one token per byte. */
static int write_tokenizer(const synth_opts *o) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", o->out);
    FILE *fp = fopen(path, "w");
    if (!fp) {
        fprintf(stderr, "sprig synth: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    const int bos = o->shape.vocab - 2, eos = o->shape.vocab - 1;
    fprintf(fp, "{\"version\":\"1.0\",\"added_tokens\":["
                "{\"id\":%d,\"content\":\"<|begin_of_text|>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                "\"normalized\":false,\"special\":true},"
                "{\"id\":%d,\"content\":\"<|end_of_text|>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                "\"normalized\":false,\"special\":true}],\n\"normalizer\":null,\n"
                "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false},\n"
                "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},"
                "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
                "\"special_tokens\":{\"<|begin_of_text|>\":{\"id\":\"<|begin_of_text|>\",\"ids\":[%d],\"tokens\":[\"<|begin_of_text|>\"]}}},\n"
                "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},\n"
                "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
                "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":true,\"vocab\":{",
            bos, eos, bos);
    /* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest map to U+0100.. */
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)extra++;
        char utf8[8];
        if (cp < 0x80) snprintf(utf8, sizeof utf8, "%s%c", (cp == '"' || cp == '\\') ? "\\" : "", (char)cp);
        else snprintf(utf8, sizeof utf8, "%c%c", (char)(0xC0 | (cp >> 6)), (char)(0x80 | (cp & 0x3F)));
        fprintf(fp, "%s\"%s\":%d", b ? "," : "", utf8, b);
    }
    fprintf(fp, "},\"merges\":[]}}\n");
    return fclose(fp) != 0;
}

static int parse_synth(int argc, char **argv, synth_opts *o) {
    memset(o, 0, sizeof *o);
    o->shape = kShapes[0], o->dtype = SP_DTYPE_F16, o->lte_sparsity = 0.5, o->seed = 1, o->slice = -1;
    int layers = 0;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { synth_help(stdout); exit(0); }
        if (a[0] != '-' && !o->out) { o->out = a; continue; }
        if (!strcmp(a, "--config-only")) { o->config_only = 1; continue; }
        if (!strcmp(a, "--force")) { o->force = 1; continue; }
        if (!v) { fprintf(stderr, "sprig synth: %s needs a value\n", a); return 2; }
        ++i;
        if (!strcmp(a, "--model")) {
            int found = 0;
            for (size_t k = 0; k < sizeof kShapes / sizeof kShapes[0]; ++k)
                if (!strcmp(kShapes[k].name, v)) o->shape = kShapes[k], found = 1;
            if (!found) { fprintf(stderr, "sprig synth: unknown model '%s' (tiny, llama2-7b, llama2-13b, llama3-8b)\n", v); return 2; }
        } else if (!strcmp(a, "--layers")) { if (cli_parse_int("synth", a, v, 1, 1024, &layers)) return 2; }
        else if (!strcmp(a, "--lte")) { if (cli_parse_int("synth", a, v, 1, 1 << 20, &o->lte_g)) return 2; }
        else if (!strcmp(a, "--lte-sparsity")) { if (cli_parse_double("synth", a, v, 0, 1, &o->lte_sparsity)) return 2; }
        else if (!strcmp(a, "--seed")) {
            double seed;
            if (cli_parse_double("synth", a, v, 0, 1e15, &seed)) return 2;
            o->seed = (unsigned long long)seed;
        }
        else if (!strcmp(a, "--slice")) {
            char *end;
            o->slice = strtod(v, &end);
            if (*end || !(o->slice >= 0 && o->slice < 1)) { fprintf(stderr, "sprig synth: --slice must be in [0, 1)\n"); return 2; }
        }
        else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "fp16")) o->dtype = SP_DTYPE_F16;
            else if (!strcmp(v, "bf16")) o->dtype = SP_DTYPE_BF16;
            else if (!strcmp(v, "fp32")) o->dtype = SP_DTYPE_F32;
            else { fprintf(stderr, "sprig synth: --dtype must be fp16, bf16 or fp32\n"); return 2; }
        } else { fprintf(stderr, "sprig synth: unknown option '%s' (see --help)\n", a); return 2; }
    }
    if (!o->out) { fprintf(stderr, "sprig synth: give the output folder (see --help)\n"); return 2; }
    if (layers < 0 || layers > 1024) { fprintf(stderr, "sprig synth: --layers must be 1..1024\n"); return 2; }
    if (layers) o->shape.layers = layers;
    if (o->lte_g && (o->lte_g < 1 || o->shape.f % o->lte_g)) {
        fprintf(stderr, "sprig synth: --lte %d does not divide the MLP width %d\n", o->lte_g, o->shape.f);
        return 2;
    }
    if (!(o->lte_sparsity > 0 && o->lte_sparsity < 1)) { fprintf(stderr, "sprig synth: --lte-sparsity must be in (0, 1)\n"); return 2; }
    if (o->slice >= 0) {
        o->slice_width = sp_slice_width(o->shape.d, o->slice, SP_SLICE_ROUND);
        if (o->slice_width < SP_SLICE_ROUND) {
            fprintf(stderr, "sprig synth: --slice %g leaves width %d of %d\n", o->slice, o->slice_width, o->shape.d);
            return 2;
        }
    }
    return 0;
}

static void set_tensor(sp_tensor *t, char *name, sp_dtype dt, int ndim, int64_t a, int64_t b) {
    memset(t, 0, sizeof *t);
    t->name = name, t->dtype = dt, t->ndim = ndim, t->shape[0] = a, t->shape[1] = b;
}

/* Whether dir holds anything but . and .. (or is not a readable folder). */
static int synth_dir_in_use(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 1;
    int used = 0;
    for (struct dirent *e; !used && (e = readdir(d)) != NULL;)
        used = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return used;
}

int cmd_synth(int argc, char **argv) {
    synth_opts o;
    int rc = parse_synth(argc, argv, &o);
    if (rc) return rc;
    if (mkdir(o.out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "sprig synth: cannot create %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    if (!o.force && synth_dir_in_use(o.out)) {
        fprintf(stderr, "sprig synth: %s already holds files (a model?); not writing over them: give an empty or new "
                        "folder, or --force\n", o.out);
        return 1;
    }
    const synth_shape *s = &o.shape;
    const int hd = s->d / s->heads, L = s->layers, sliced = o.slice >= 0;
    /* Residual widths: d everywhere, or SliceGPT's constant width ds with the
     * last layer's MLP output (and lm_head) at the full d. */
    const int ds = sliced ? o.slice_width : s->d;
    /* Router scores s = W_r x with x of RMS 1 (weightless-norm output) and W_r
     * uniform in ±1/sqrt(d): std(s) = 1/sqrt(3). Sliced: SliceGPT's norm divides
     * by the full d, so the ds inputs have mean square d/ds and W_r is uniform in
     * ±1/sqrt(ds): std(s) = sqrt(d/(3 ds)). An expert is active when
     * sigmoid(s) > tau, i.e. s > logit(tau): choose it at the target quantile. */
    const double score_std = sqrt((double)s->d / (3.0 * ds));
    const double tau = 1.0 / (1.0 + exp(-normal_quantile(o.lte_sparsity) * score_std));
    if (o.config_only) {
        if (write_config(&o, tau) || write_tokenizer(&o)) return 1;
        printf("wrote %s: config.json and tokenizer.json only (d=%d f=%d layers=%d)\n", o.out, s->d, s->f, L);
        return 0;
    }
    const int per_layer = 9 + (o.lte_g ? 1 : 0);
    size_t n = 3 + (size_t)L * per_layer, k = 0;
    sp_tensor *t = calloc(n, sizeof *t);
    char(*names)[96] = calloc(n, sizeof *names);
    if (!t || !names) { fprintf(stderr, "sprig synth: out of memory\n"); return 1; }
#define ADD(dt, nd, a, b, ...) (snprintf(names[k], sizeof names[k], __VA_ARGS__), set_tensor(&t[k], names[k], dt, nd, a, b), ++k)
    ADD(o.dtype, 2, s->vocab, ds, "model.embed_tokens.weight");
    for (int l = 0; l < L; ++l) {
        const int mo = l + 1 < L ? ds : s->d;  /* the last MLP output feeds the full-width head */
        if (!sliced) ADD(o.dtype, 1, s->d, 0, "model.layers.%d.input_layernorm.weight", l);
        ADD(o.dtype, 2, (int64_t)s->heads * hd, ds, "model.layers.%d.self_attn.q_proj.weight", l);
        ADD(o.dtype, 2, (int64_t)s->kv_heads * hd, ds, "model.layers.%d.self_attn.k_proj.weight", l);
        ADD(o.dtype, 2, (int64_t)s->kv_heads * hd, ds, "model.layers.%d.self_attn.v_proj.weight", l);
        ADD(o.dtype, 2, ds, (int64_t)s->heads * hd, "model.layers.%d.self_attn.o_proj.weight", l);
        if (sliced) ADD(o.dtype, 2, ds, ds, "model.layers.%d.attn_shortcut_Q", l);
        if (!sliced) ADD(o.dtype, 1, s->d, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(o.dtype, 2, s->f, ds, "model.layers.%d.mlp.gate_proj.weight", l);
        ADD(o.dtype, 2, s->f, ds, "model.layers.%d.mlp.up_proj.weight", l);
        ADD(o.dtype, 2, sliced ? mo : s->d, s->f, "model.layers.%d.mlp.down_proj.weight", l);
        if (sliced) ADD(o.dtype, 2, ds, mo, "model.layers.%d.mlp_shortcut_Q", l);
        if (o.lte_g) ADD(o.dtype, 2, s->f / o.lte_g, ds, "model.layers.%d.mlp.router.weight", l);
    }
    if (!sliced) ADD(o.dtype, 1, s->d, 0, "model.norm.weight");
    ADD(o.dtype, 2, s->vocab, s->d, "lm_head.weight");
#undef ADD
    synth_fill fill = {0};
    fill.rng = o.seed * 0x9e3779b97f4a7c15ull + 1;
    fill.hidden = s->d;
    fill.pool32 = malloc(sizeof(float) * POOL_ELEMS);
    if (!fill.pool32) { fprintf(stderr, "sprig synth: out of memory\n"); return 1; }
    for (size_t i = 0; i < POOL_ELEMS; ++i)
        fill.pool32[i] = (float)((double)(xorshift(&fill.rng) >> 11) / 4503599627370496.0 - 1.0);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", o.out);
    const char *meta[] = {"format", "pt", "generator", "sprig synth", NULL};
    sprig_status st = sp_st_write(path, t, k, meta, fill_tensor, &fill);
    free(fill.pool32);
    free(fill.block);
    free(t);
    free(names);
    if (st != SPRIG_OK) return cli_error("writing the weights", st);
    if (write_config(&o, tau) || write_tokenizer(&o)) return 1;
    printf("wrote %s: d=%d f=%d layers=%d heads=%d/%d vocab=%d %s", o.out, s->d, s->f, L, s->heads, s->kv_heads,
           s->vocab, dtype_json(o.dtype));
    if (sliced) printf(", SliceGPT %g: residual width %d", o.slice, ds);
    if (o.lte_g) printf(", LTE g=%d tau=%.4f (target %.0f%% of experts inactive)", o.lte_g, tau, 100 * o.lte_sparsity);
    printf("\n");
    return 0;
}

/* Internals of the GPU backend shared by gpu_kernels.c (the kernel set),
 * gpu_backend.c (open, the decode step), gpu_weights.c (packing and upload)
 * and gpu_mlp.c (the MLP kernels per mode). Not exported from the layer.
 * Calls go one way: gpu_backend -> gpu_mlp, gpu_weights -> gpu_kernels. */
#ifndef SP_GPU_INTERNAL_H
#define SP_GPU_INTERNAL_H

#include <stdint.h>

#include "sp_gpu.h"
#include "sp_kargs.h"

/* One plan, compiled and loaded, with its workspace (zeroed once, as the ABI
 * says; a plan that accumulates into it leaves it zeroed again). Owned by the
 * kernel set; calls are serialised on the executor's one stream, so backends
 * sharing the set share the workspace safely. */
typedef struct sp_gpu_kernel {
    sprig_plan *plan;
    sp_exec_module *mod;
    sp_dptr ws;          /* 0 when the plan needs none */
    int d, f, g;         /* the request it was rendered for (batch 1, the plan's dtype) */
    char params[1024];
} sp_gpu_kernel;

struct sp_gpu_kernels {
    sp_exec *exec;       /* borrowed */
    sprig_gen *gen;      /* owned */
    int n, cap;
    sp_gpu_kernel **items;
    sp_tuning_hook tuning; /* choose NULL: the executor's defaults */
    int recording;         /* launches are recorded (sp_gpu_describe), not run */
    sp_gpu_kernel **rec;
    int n_rec, cap_rec;
};

/* Renders (family, shape, params), or finds it by plan key, and loads it.
 * `fixed` holds the parameters the problem dictates ("op=up", "all_active=1",
 * "layout=t"); the tuning parameters come from sp_gpu_choose_params (at the
 * expected MLP sparsity, percent) and never override a fixed one. The
 * returned kernel is owned by the set. */
sprig_status sp_gpu_kernel_get(sp_gpu_kernels *ks, const char *family, int d, int f, const char *dtype, int g,
                               const char *fixed, double sparsity, sp_gpu_kernel **out);
/* Recording instead of launching (on) and the launches recorded since. */
void sp_gpu_kernels_record(sp_gpu_kernels *ks, int on);
sprig_status sp_gpu_kernels_recorded(const sp_gpu_kernels *ks, sp_gpu_step *out);

/* Launches the kernel's plan with its arguments bound by name (sp_kargs.h);
 * while recording, appends it to the record instead. */
sprig_status sp_gpu_kernel_launch(sp_gpu_kernels *ks, sp_gpu_kernel *k, sp_kargs *args);

/* The tuning parameters for one request (req->params: the fixed ones), into
 * buf: the installed hook's choice, else the executor's defaults
 * (sp_exec_default_params; "" on a GPU: the family's defaults). */
void sp_gpu_choose_params(const sp_gpu_kernels *ks, const sprig_request *req, double sparsity, char *buf,
                          size_t cap);

/* Value of `key` in a plan's params_json ("t" for "layout"), copied into buf;
 * 0 if absent. */
int sp_gpu_plan_param(const sprig_plan *plan, const char *key, char *buf, size_t cap);

/* The share of neurons (percent) a routed MLP's kernels are tuned for: the
 * real share is only known after routing, and 50% is the middle of the
 * buckets the tuner measures (0, 50, 75, 90). */
#define SP_GPU_EXPECTED_SPARSITY 50.0

/* How one layer's MLP runs. */
typedef enum gpu_mlp_kind {
    GPU_MLP_DENSE = 0,   /* gather kernels with all_active=1 */
    GPU_MLP_LTE,         /* router (sigmoid) -> gather_upgate -> gather_down, g = expert size */
    GPU_MLP_THRESHOLD    /* router (silu_abs over W_gate) -> gather, g = 1 */
} gpu_mlp_kind;

/* One MLP path: its kernels and expert size. */
typedef struct gpu_mlp_path {
    int g;
    sp_gpu_kernel *router, *upgate, *down;   /* router NULL for DENSE */
} gpu_mlp_path;

/* One layer on the device: its widths, weights (in the compute dtype) and
 * kernels (owned by the set; layers of equal widths share them).
 * Unsliced, every width is d. SliceGPT-sliced (sp_slicegpt.h), the layer
 * reads x of width a_in, its attention block yields a_out (= the MLP's input
 * width) and its MLP m_out (= the next layer's a_in); the norms are weightless
 * over the original d, and the two shortcuts are folded into GEMVs:
 *   wo  = [attn_shortcut_Qᵀ | W_o]  [a_out][a_in + qd], applied to [x ; att]
 *         (one GEMV computes x @ Q + o(att): the shortcut costs no launch);
 *   wsc = mlp_shortcut_Qᵀ            [m_out][a_out], accumulated onto the MLP
 *         output by a dense_gemv with accumulate=1. */
typedef struct gpu_layer {
    int a_in, a_out, m_out;
    sp_dptr attn_norm;   /* [d]; 0 when sliced */
    sp_dptr wqkv;        /* [(H + 2 KV) hd][a_in]: q_proj, k_proj, v_proj rows */
    sp_dptr bqkv;        /* [(H + 2 KV) hd]: their biases (Qwen2), else 0 */
    sp_dptr wo;          /* [d][H hd]; sliced: [a_out][a_in + H hd] as above */
    sp_dptr mlp_norm;    /* [d]; 0 when sliced */
    sp_dptr wg, wu;      /* [f][a_out], rows in expert order (permutation applied) */
    sp_dptr wd;          /* layout t: W_downᵀ [f][m_out]; layout n: W_down [m_out][f]; permuted */
    sp_dptr wr;          /* [E][a_out] LTE router, 0 if the layer has none */
    sp_dptr wsc;         /* sliced: [m_out][a_out], else 0 */
    gpu_mlp_kind kind;
    sp_gpu_kernel *gemv_qkv, *gemv_o;
    sp_gpu_kernel *gemv_sc;    /* sliced: the MLP shortcut */
    gpu_mlp_path dense, lte, thr;
} gpu_layer;

struct sp_gpu {
    sp_gpu_kernels *kernels;
    sp_exec *exec;                     /* = kernels->exec */
    const sp_model *model;             /* borrowed */
    const sp_model_config *cfg;
    char dtype[8];                     /* "fp16" | "bf16" */
    int bf16;
    int max_seq;
    sp_mlp_mode mode;
    /* shapes */
    int d, f, L, hd, H, KV, qd, kvd, qkv_rows, vocab, vocab8;
    int sliced;                        /* a SliceGPT model (gpu_layer says what changes) */
    int head_width;                    /* lm_head's columns: d, or the sliced head width */
    float norm_eps;                    /* rms_norm_eps, or SliceGPT's fixed 1e-5 */
    /* weights */
    sp_dptr embed;                     /* [vocab][a_in of layer 0] */
    sp_dptr final_norm;                /* [d]; 0 when sliced */
    sp_dptr lm_head;                   /* [vocab8][head_width], rows past vocab zero */
    gpu_layer *layers;                 /* [L] */
    size_t weight_bytes;               /* on the device, the embedding excepted */
    size_t mlp_weight_bytes;           /* of which W_gate, W_up, W_down */
    char down_layout[4];               /* "t" or "n": how every layer's wd is packed */
    sp_dptr inv_freq;                  /* fp32 [hd/2] */
    sp_dptr k_cache, v_cache;          /* T [L][max_seq][kvd] */
    /* activations */
    sp_dptr io;                        /* int [2]: token, pos (uploaded per token) */
    sp_dptr x;                         /* fp32 [d] residual stream */
    sp_dptr xb;                        /* T [d] normed input of the next projection */
    sp_dptr qkv;                       /* T [qkv_rows] */
    sp_dptr att;                       /* T [qd] attention output (unsliced) */
    sp_dptr cat;                       /* sliced: T [d + qd]: x as T, then the attention output */
    sp_dptr proj;                      /* T [d] o_proj or MLP output */
    sp_dptr h;                         /* T [f] compact SwiGLU activation */
    sp_dptr logits;                    /* T [vocab8] */
    /* routing: scores and union_count per layer (one download counts all; scores stay
       readable after the token), the rest scratch shared by the layers */
    sp_dptr scores;                    /* fp32 [L][f] */
    sp_dptr ids, counts, union_ids, mask;
    sp_dptr union_counts;              /* int [L] */
    sp_dptr union_bits;                /* u32 [L][bits_words]: each layer's union bitmap, LTE with the router
                                        * folded in (gather_upgate union_out=bits -> gather_down list=bits) */
    int bits_words;
    /* kernels (owned by the set; the per-layer ones are in gpu_layer) */
    sp_gpu_kernel *norm_embed, *gemv_lm, *attn;
    float lte_threshold;               /* logit(tau) */
    int fused_router;                  /* 1: LTE's router runs inside gather_upgate (route=sigmoid) */
    float *thresholds;                 /* [L], threshold mode */
    int thresholds_set;
    /* the decode step captured once as a graph, replayed per token */
    int use_graph;                     /* sp_gpu_set_graph; default on */
    sp_exec_graph *graph;              /* NULL until the first token (and after a mode change) */
    char graph_note[512];              /* why there is no graph, after a capture failed; else "" */
    /* host side */
    uint16_t *logits16;                /* [vocab8] */
    float *logits_f;                   /* [vocab] */
    int *active;                       /* [L] neurons used by the last token */
    int *counts_host;                  /* [L] */
    double mlp_active, mlp_total;
};

/* gpu_weights.c: every weight converted, permuted and uploaded (g->down_layout
 * must be set). */
sprig_status sp_gpu_upload_weights(sp_gpu *g);
void sp_gpu_free_weights(sp_gpu *g);

/* Whether layer l has the widths of layer l - 1 (then it shares its kernels). */
static inline int sp_gpu_same_widths(const sp_gpu *g, int l) {
    if (l == 0) return 0;
    const gpu_layer *a = &g->layers[l - 1], *b = &g->layers[l];
    return a->a_in == b->a_in && a->a_out == b->a_out && a->m_out == b->m_out;
}

/* gpu_mlp.c */
/* Loads every layer's dense and (if the model has routers and the mode wants
 * them) LTE paths for its widths, and decides g->down_layout from the first
 * main path's plan (every other gather_down is forced to it). */
sprig_status sp_gpu_mlp_prepare(sp_gpu *g);
/* Loads every layer's threshold path (layout fixed to g->down_layout). */
sprig_status sp_gpu_mlp_prepare_threshold(sp_gpu *g);
/* Launches layer l's MLP: g->xb -> g->proj. */
sprig_status sp_gpu_mlp_launch(sp_gpu *g, int l);
/* Neurons used per layer from the downloaded union counts. */
int sp_gpu_mlp_active(const sp_gpu *g, int l, const int *union_counts);
#endif

/* A model folder's tuning keys (see sp_model_keys.h): the decode step's
 * kernel requests, from the config alone, deduplicated and keyed by the
 * convention of sp_mlp_keys.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tuner_internal.h"
#include "sp_error.h"
#include "sp_mlp_keys.h"
#include "sp_gguf.h"
#include "sp_model_keys.h"
#include "sp_slicegpt.h"
#include "sp_space.h"

/* The families the decode step looks up, in key order. */
static const char *const sp_model_key_families = "dense_gemv, router, gather_upgate, gather_down";

static const char *const MD_FAMILIES[] = {"dense_gemv", "router", "gather_upgate", "gather_down"};
#define MD_N_FAMILIES (sizeof MD_FAMILIES / sizeof MD_FAMILIES[0])
#define MD_FIXED_CAP 64
#define MD_MAX_ROLES 8

/* ---- reading the folder ------------------------------------------------------------ */

sprig_status sp_model_keys_config(const char *dir, sp_model_config *cfg) {
    if (!dir || !*dir || !cfg) return sp_fail(SPRIG_E_INVALID, "sp_model_keys_config: no folder");
    if (sp_gguf_is_file(dir)) return sp_gguf_config(dir, cfg); /* a llama GGUF: its metadata */
    struct stat sb;
    if (stat(dir, &sb) != 0) return sp_fail(SPRIG_E_IO, "cannot open model folder '%s': %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return sp_fail(SPRIG_E_IO, "model folder '%s' is not a folder", dir);
    size_t len = strlen(dir) + sizeof "/config.json";
    char *path = malloc(len);
    SP_CHECK_ALLOC(path);
    snprintf(path, len, "%s/config.json", dir);
    sprig_status s = access(path, F_OK) == 0 ? sp_model_config_load(path, cfg)
                                              : sp_fail(SPRIG_E_IO, "model folder '%s' has no config.json (%s)", dir,
                                                        path);
    free(path);
    SP_TRY(s);
    return sp_slice_load(dir, cfg); /* the SliceGPT widths, if the folder is sliced */
}

/* ---- the decode step's requests ---------------------------------------------------- */

/* Which keys a request becomes: the attention side and the dense MLP at
 * sparsity 0, the routed MLP above. */
typedef enum md_path { MD_ATTN = 0, MD_DENSE_MLP, MD_ROUTED } md_path;

typedef struct md_role {
    const char *name;     /* static: "qkv_proj", "lm_head", ... */
    int *layers;          /* ascending; none for lm_head */
    int n, cap;
} md_role;

/* One distinct request shape and everywhere the decode step makes it. */
typedef struct md_use {
    const char *family;   /* static */
    const char *op;       /* the convention variant it is keyed on ("op=up"), NULL: the family's only one */
    int d, f, g;
    md_path path;
    md_role roles[MD_MAX_ROLES];
    int n_roles;
} md_use;

typedef struct md_uses {
    md_use *v;
    size_t n, cap;
} md_uses;

static void md_uses_free(md_uses *u) {
    for (size_t i = 0; i < u->n; ++i)
        for (int r = 0; r < u->v[i].n_roles; ++r) free(u->v[i].roles[r].layers);
    free(u->v);
    memset(u, 0, sizeof *u);
}

static sprig_status md_role_add(md_role *r, int layer) {
    if (layer < 0 || (r->n && r->layers[r->n - 1] == layer)) return SPRIG_OK;
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 8;
        int *grown = realloc(r->layers, sizeof *grown * (size_t)cap);
        SP_CHECK_ALLOC(grown);
        r->layers = grown, r->cap = cap;
    }
    r->layers[r->n++] = layer;
    return SPRIG_OK;
}

/* Records that layer (-1: none) runs family at (d, f, g) as role. */
static sprig_status md_use_add(md_uses *u, const char *family, const char *op, int d, int f, int g, md_path path,
                               const char *role, int layer) {
    md_use *x = NULL;
    for (size_t i = 0; i < u->n && !x; ++i) {
        md_use *c = &u->v[i];
        if (c->family == family && c->d == d && c->f == f && c->g == g && c->path == path) x = c;
    }
    if (!x) {
        if (u->n == u->cap) {
            size_t cap = u->cap ? 2 * u->cap : 16;
            md_use *grown = realloc(u->v, sizeof *grown * cap);
            SP_CHECK_ALLOC(grown);
            u->v = grown, u->cap = cap;
        }
        x = &u->v[u->n++];
        memset(x, 0, sizeof *x);
        x->family = family, x->op = op, x->d = d, x->f = f, x->g = g, x->path = path;
    }
    md_role *r = NULL;
    for (int i = 0; i < x->n_roles && !r; ++i)
        if (!strcmp(x->roles[i].name, role)) r = &x->roles[i];
    if (!r) {
        if (x->n_roles == MD_MAX_ROLES) return sp_fail(SPRIG_E_INTERNAL, "model keys: too many uses of one shape");
        r = &x->roles[x->n_roles++];
        r->name = role;
    }
    return md_role_add(r, layer);
}

static int md_has_routers(const sp_model_config *c) {
    for (int l = 0; c->lte.enabled && l < c->num_hidden_layers; ++l)
        if (c->lte.has_router[l]) return 1;
    return 0;
}

/* Every request of the decode step, as gpu_backend.c load_kernels /
 * load_layer_kernels and gpu_mlp.c prepare_layer make them. */
static sprig_status md_collect(const sp_model_config *c, int g_dense, int g_routed, int routers, md_uses *u) {
    const int d = c->hidden_size, ff = c->intermediate_size, L = c->num_hidden_layers;
    const int qd = c->num_attention_heads * c->head_dim;
    const int qkv_rows = qd + 2 * c->num_key_value_heads * c->head_dim;
    const int vocab8 = (c->vocab_size + 7) / 8 * 8;
    const sp_slice_config *sl = &c->slice;
    const int sliced = sl->enabled;
    for (int l = 0; l < L; ++l) {
        const int a_in = sliced ? sl->attn_in[l] : d, a_out = sliced ? sl->attn_out[l] : d;
        const int m_out = sliced ? sl->mlp_out[l] : d;
        SP_TRY(md_use_add(u, "dense_gemv", "op=up", a_in, qkv_rows, 1, MD_ATTN, "qkv_proj", l));
        if (!sliced) {
            SP_TRY(md_use_add(u, "dense_gemv", "op=up", qd, d, 1, MD_ATTN, "o_proj", l));
        } else {
            SP_TRY(md_use_add(u, "dense_gemv", "op=up", a_in + qd, a_out, 1, MD_ATTN, "o_proj+attn_shortcut", l));
            /* run with accumulate=1, which the tuner does not choose: keyed op=up */
            SP_TRY(md_use_add(u, "dense_gemv", "op=up", a_out, m_out, 1, MD_ATTN, "mlp_shortcut", l));
        }
    }
    SP_TRY(md_use_add(u, "dense_gemv", "op=up", sliced ? sl->lm_head_width : d, vocab8, 1, MD_ATTN, "lm_head", -1));
    for (int l = 0; l < L; ++l) {
        const int a_out = sliced ? sl->attn_out[l] : d, m_out = sliced ? sl->mlp_out[l] : d;
        SP_TRY(md_use_add(u, "gather_upgate", NULL, a_out, ff, g_dense, MD_DENSE_MLP, "mlp_dense", l));
        SP_TRY(md_use_add(u, "gather_down", NULL, m_out, ff, g_dense, MD_DENSE_MLP, "mlp_dense", l));
        /* with LTE routers in any layer, every layer gets the LTE path (gpu_mlp.c prepare_layer),
         * whose router runs inside gather_upgate (route=sigmoid, with the routed key's tuned
         * params): no router key. Threshold mode's silu_abs router is not tuned either. */
        const char *routed = routers ? "mlp_lte" : "mlp_threshold";
        SP_TRY(md_use_add(u, "gather_upgate", NULL, a_out, ff, g_routed, MD_ROUTED, routed, l));
        SP_TRY(md_use_add(u, "gather_down", NULL, m_out, ff, g_routed, MD_ROUTED, routed, l));
    }
    return SPRIG_OK;
}

/* ---- describing a use ---------------------------------------------------------------- */

/* "qkv_proj layers 0-3,5, lm_head" into a malloc'ed string. */
static char *md_use_text(const md_use *x) {
    size_t cap = 64;
    for (int r = 0; r < x->n_roles; ++r) cap += strlen(x->roles[r].name) + 16 + 12 * (size_t)x->roles[r].n;
    char *s = malloc(cap);
    if (!s) return NULL;
    size_t at = 0;
    for (int r = 0; r < x->n_roles; ++r) {
        const md_role *ro = &x->roles[r];
        at += (size_t)snprintf(s + at, cap - at, "%s%s", r ? ", " : "", ro->name);
        if (ro->n) at += (size_t)snprintf(s + at, cap - at, " layer%s ", ro->n > 1 ? "s" : "");
        for (int i = 0; i < ro->n;) {
            int j = i;
            while (j + 1 < ro->n && ro->layers[j + 1] == ro->layers[j] + 1) ++j;
            at += (size_t)snprintf(s + at, cap - at, "%s%d", i ? "," : "", ro->layers[i]);
            if (j > i) at += (size_t)snprintf(s + at, cap - at, "-%d", ro->layers[j]);
            i = j + 1;
        }
    }
    return s;
}

/* "layer 3 mlp_shortcut" / "lm_head": the first place the use is made. */
static void md_use_where(const md_use *x, char *buf, size_t cap) {
    const md_role *r = &x->roles[0];
    if (r->n) snprintf(buf, cap, "layer %d %s", r->layers[0], r->name);
    else snprintf(buf, cap, "%s", r->name);
}

/* ---- building the keys --------------------------------------------------------------- */

void sp_model_keys_free(sp_model_keys *k) {
    if (!k) return;
    for (size_t i = 0; i < k->n; ++i) free(k->uses ? k->uses[i] : NULL);
    free(k->uses);
    free(k->keys);
    for (size_t i = 0; i < k->n_skipped; ++i) free(k->skipped[i]);
    free(k->skipped);
    free(k->storage);
    memset(k, 0, sizeof *k);
}

static sprig_status md_skip(sp_model_keys *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static sprig_status md_skip(sp_model_keys *k, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char **grown = realloc(k->skipped, (k->n_skipped + 1) * sizeof *grown);
    SP_CHECK_ALLOC(grown);
    k->skipped = grown;
    k->skipped[k->n_skipped] = strdup(line);
    SP_CHECK_ALLOC(k->skipped[k->n_skipped]);
    ++k->n_skipped;
    return SPRIG_OK;
}

/* The convention's fixed params for use x at sparsity (into buf); 0 when the
 * family has no matching variant there. */
static int md_fixed(sprig_gen *gen, const md_use *x, double sparsity, char *buf, size_t cap) {
    const int n = sp_mlp_fixed(gen, x->family, sparsity, 0, NULL, 0);
    for (int v = 0; v < n; ++v) {
        sp_mlp_fixed(gen, x->family, sparsity, v, buf, cap);
        if (!x->op || !strcmp(buf, x->op)) return 1;
    }
    return 0;
}

static int md_path_at(md_path p, double sparsity) { return sparsity == 0 ? p != MD_ROUTED : p == MD_ROUTED; }

typedef struct md_ctx {
    sprig_gen *gen;
    const sp_model_key_request *r;
    const md_uses *u;
    sp_model_keys *k;
    size_t cap;
} md_ctx;

/* Appends the keys of one (dtype, batch, sparsity, family). */
static sprig_status md_add_family(md_ctx *c, const char *dtype, int batch, double sparsity, const char *family) {
    sp_model_keys *k = c->k;
    size_t made = 0;
    for (size_t i = 0; i < c->u->n; ++i) {
        const md_use *x = &c->u->v[i];
        if (strcmp(x->family, family) != 0 || !md_path_at(x->path, sparsity)) continue;
        if (k->n == c->cap) return sp_fail(SPRIG_E_INTERNAL, "model keys: more keys than counted");
        char *fixed = k->storage + k->n * MD_FIXED_CAP;
        if (!md_fixed(c->gen, x, sparsity, fixed, MD_FIXED_CAP)) continue;
        sp_tune_key key = {family, x->d, x->f, dtype, batch, x->g, sparsity, fixed};
        char why[512], where[96];
        md_use_where(x, where, sizeof where);
        const int ok = sp_tune_key_servable(c->gen, &key, why, sizeof why);
        if (ok < 0) {
            return sp_fail(SPRIG_E_INVALID, "%s: %s %s d=%d f=%d g=%d (%s, batch %d) cannot be generated, so the GPU "
                           "backend cannot run this model: %s", where, family, fixed, x->d, x->f, x->g, dtype, batch,
                           why);
        }
        if (!ok) {
            SP_TRY(md_skip(k, "%s %s d=%d f=%d g=%d %s batch=%d sparsity=%g (%s): %s", family, fixed, x->d, x->f, x->g,
                           dtype, batch, sparsity, where, why));
            continue;
        }
        k->uses[k->n] = md_use_text(x);
        SP_CHECK_ALLOC(k->uses[k->n]);
        k->keys[k->n++] = key;
        ++made;
    }
    if (made || !c->r->families) return SPRIG_OK; /* said only when the family was asked for */
    const char *why = "no request of the decode step";
    if (!strcmp(family, "dense_gemv") && sparsity > 0) why = "tuned at sparsity 0 only (the decode step's GEMVs are dense)";
    else if (!strcmp(family, "router") && sparsity == 0) why = "tuned at sparsity > 0 only";
    else if (!strcmp(family, "router") && !k->routed)
        why = "the model has no LTE routers (threshold mode's router, score=silu_abs, is not tuned)";
    else if (!strcmp(family, "router"))
        why = "the LTE router runs inside gather_upgate (route=sigmoid), with the routed gather_upgate key's "
              "parameters: no key of its own";
    else return SPRIG_OK; /* its keys were skipped, each with its reason */
    return md_skip(k, "%s %s batch=%d sparsity=%g: %s", family, dtype, batch, sparsity, why);
}

static sprig_status md_check_request(const sp_model_key_request *r) {
    if (!r || !r->cfg) return sp_fail(SPRIG_E_INVALID, "model keys: no model config");
    if ((r->n_dtypes > 0 && !r->dtypes) || (r->n_batches > 0 && !r->batches) ||
        (r->n_sparsities > 0 && !r->sparsities) || (r->n_families > 0 && !r->families))
        return sp_fail(SPRIG_E_INVALID, "model keys: a list has a count but no values");
    for (int i = 0; r->dtypes && i < r->n_dtypes; ++i)
        if (strcmp(r->dtypes[i], "fp16") && strcmp(r->dtypes[i], "bf16"))
            return sp_fail(SPRIG_E_INVALID, "dtype '%s' is not fp16 or bf16", r->dtypes[i]);
    for (int i = 0; r->batches && i < r->n_batches; ++i)
        if (r->batches[i] < 1 || r->batches[i] > 64)
            return sp_fail(SPRIG_E_INVALID, "batch %d is outside 1..64", r->batches[i]);
    for (int i = 0; r->sparsities && i < r->n_sparsities; ++i)
        if (!(r->sparsities[i] >= 0 && r->sparsities[i] < 100))
            return sp_fail(SPRIG_E_INVALID, "sparsity %g is outside 0..99 (percent of experts inactive)",
                           r->sparsities[i]);
    for (int i = 0; r->families && i < r->n_families; ++i) {
        int known = 0;
        for (size_t j = 0; j < MD_N_FAMILIES; ++j) known |= !strcmp(r->families[i], MD_FAMILIES[j]);
        if (!known)
            return sp_fail(SPRIG_E_INVALID, "'%s' is not a family the decode step looks up in the tuning database "
                           "(%s)", r->families[i], sp_model_key_families);
    }
    return SPRIG_OK;
}

static int md_asked(const sp_model_key_request *r, const char *family) {
    for (int i = 0; r->families && i < r->n_families; ++i)
        if (!strcmp(r->families[i], family)) return 1;
    return !r->families;
}

static sprig_status md_build(sprig_gen *gen, const sp_model_key_request *r, const md_uses *u, sp_model_keys *out) {
    static const char *const fp16[] = {"fp16"};
    static const int one[] = {1};
    static const double dense_only[] = {0}, with_routed[] = {0, 50, 75, 90};
    const char *const *dtypes = r->dtypes ? r->dtypes : fp16;
    const int n_dtypes = r->dtypes ? r->n_dtypes : 1;
    const int *batches = r->batches ? r->batches : one;
    const int n_batches = r->batches ? r->n_batches : 1;
    const double *sp = r->sparsities ? r->sparsities : out->routed ? with_routed : dense_only;
    const int n_sp = r->sparsities ? r->n_sparsities : out->routed ? 4 : 1;
    const size_t cap = (size_t)n_dtypes * n_batches * n_sp * (u->n ? u->n : 1);
    out->keys = calloc(cap, sizeof *out->keys);
    out->uses = calloc(cap, sizeof *out->uses);
    out->storage = calloc(cap, MD_FIXED_CAP);
    if (!out->keys || !out->uses || !out->storage) return sp_fail(SPRIG_E_NOMEM, "out of memory");
    md_ctx c = {gen, r, u, out, cap};
    for (int di = 0; di < n_dtypes; ++di)
        for (int bi = 0; bi < n_batches; ++bi)
            for (int si = 0; si < n_sp; ++si)
                for (size_t fi = 0; fi < MD_N_FAMILIES; ++fi) {
                    if (!md_asked(r, MD_FAMILIES[fi])) continue;
                    const char *dtype = !strcmp(dtypes[di], "bf16") ? "bf16" : "fp16";
                    SP_TRY(md_add_family(&c, dtype, batches[bi], sp[si], MD_FAMILIES[fi]));
                }
    return SPRIG_OK;
}

sprig_status sp_model_keys_build(sprig_gen *gen, const sp_model_key_request *r, sp_model_keys *out) {
    if (!out) return sp_fail(SPRIG_E_INVALID, "sp_model_keys_build: out is NULL");
    memset(out, 0, sizeof *out);
    if (!gen) return sp_fail(SPRIG_E_INVALID, "sp_model_keys_build: no generator");
    SP_TRY(md_check_request(r));
    const sp_model_config *cfg = r->cfg;
    out->sliced = cfg->slice.enabled;
    out->routed = md_has_routers(cfg);
    /* the dense path's g: the expert size when the model has LTE (gpu_mlp.c: all_active ignores
       it, and it keeps layout=n possible); the routed path's: the expert size, or 1 (threshold) */
    out->g_dense = cfg->lte.enabled ? cfg->lte.expert_size : 1;
    out->g_routed = out->routed ? cfg->lte.expert_size : 1;
    md_uses u = {0};
    sprig_status s = md_collect(cfg, out->g_dense, out->g_routed, out->routed, &u);
    if (s == SPRIG_OK) s = md_build(gen, r, &u, out);
    md_uses_free(&u);
    if (s != SPRIG_OK) {
        sp_model_keys_free(out);
    }
    return s;
}

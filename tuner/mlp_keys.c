/* One model's MLP tuning keys and the lookup of its tuned kernels (see
 * sp_mlp_keys.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tuner_internal.h"
#include "sp_error.h"
#include "sp_gen_mlp.h"
#include "sp_mlp_keys.h"
#include "sp_space.h"

#define MK_FIXED_CAP 64

int sp_mlp_fixed(sprig_gen *gen, const char *family, double sparsity, int v, char *buf, size_t cap) {
    sp_gen_names fixed;
    if (sp_gen_mlp_fixed(gen, family, sparsity, &fixed) != SPRIG_OK) return 0;
    if (v >= 0 && v < fixed.n && buf) snprintf(buf, cap, "%s", fixed.name[v]);
    return fixed.n;
}

int sp_mlp_default_family(sprig_gen *gen, const char *family, int batch) {
    return sp_gen_mlp_default(gen, family, batch);
}

void sp_mlp_keys_free(sp_mlp_keys *k) {
    if (!k) return;
    free(k->keys);
    for (size_t i = 0; i < k->n_skipped; ++i) free(k->skipped[i]);
    free(k->skipped);
    free(k->storage);
    memset(k, 0, sizeof *k);
}

static sprig_status mk_skip(sp_mlp_keys *k, const char *family, const char *fixed, const char *dtype, int batch,
                            double sparsity, const char *why) {
    char **grown = realloc(k->skipped, (k->n_skipped + 1) * sizeof *grown);
    SP_CHECK_ALLOC(grown);
    k->skipped = grown;
    size_t len = strlen(family) + strlen(fixed) + strlen(why) + 96;
    char *line = malloc(len);
    SP_CHECK_ALLOC(line);
    snprintf(line, len, "%s%s%s %s batch=%d sparsity=%g: %s", family, *fixed ? " " : "", fixed, dtype, batch,
             sparsity, why);
    k->skipped[k->n_skipped++] = line;
    return SPRIG_OK;
}

int sp_tune_key_servable(sprig_gen *gen, const sp_tune_key *key, char *why, size_t cap) {
    sprig_request req = {key->family, key->d, key->f, key->dtype, key->batch, key->g, key->fixed};
    sp_space *s = NULL;
    if (sp_space_build(gen, &req, &s) != SPRIG_OK) {
        snprintf(why, cap, "%s", sprig_last_error());
        return -1;
    }
    const int ok = s->n > 0;
    sp_space_free(s);
    if (ok) return 1;
    /* Empty space: the family's own reason for rejecting its defaults says why. */
    char *defaults = NULL;
    snprintf(why, cap, "the family rejects every parameter combination for this key");
    if (sp_space_defaults(gen, &req, &defaults, NULL) == SPRIG_OK &&
        sp_space_check(gen, &req, defaults) == SPRIG_E_INVALID)
        snprintf(why, cap, "%s", sprig_last_error());
    free(defaults);
    return 0;
}

/* The request's family list checked against the specs' MLP families. */
static sprig_status mk_check_request(const sp_mlp_key_request *r, const sp_gen_names *known) {
    if (!r || r->n_dtypes < 1 || r->n_batches < 1 || r->n_sparsities < 1 || !r->dtypes || !r->batches ||
        !r->sparsities || (r->n_families > 0 && !r->families))
        return sp_fail(SPRIG_E_INVALID, "MLP keys: dtypes, batches and sparsities must be given");
    for (int i = 0; i < r->n_sparsities; ++i)
        if (!(r->sparsities[i] >= 0 && r->sparsities[i] < 100))
            return sp_fail(SPRIG_E_INVALID, "sparsity %g is outside 0..99 (percent of experts inactive)",
                           r->sparsities[i]);
    for (int i = 0; r->families && i < r->n_families; ++i) {
        int found = 0;
        char list[SP_GEN_MAX_NAMES * 66] = "";
        for (int k = 0; k < known->n; ++k) {
            found |= !strcmp(r->families[i], known->name[k]);
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", known->name[k]);
        }
        if (!found)
            return sp_fail(SPRIG_E_INVALID, "'%s' is not an MLP family the tuner knows (%s)", r->families[i], list);
    }
    return SPRIG_OK;
}

/* Appends the keys of one (dtype, batch, sparsity, family) to k. */
static sprig_status mk_add(sprig_gen *gen, const sp_mlp_key_request *r, const char *dtype, int batch,
                           double sparsity, const char *family, sp_mlp_keys *k, size_t cap) {
    if (sp_mlp_fixed(gen, family, sparsity, 0, NULL, 0) == 0) /* by convention; said only when asked for */
        return !r->families ? SPRIG_OK : mk_skip(k, family, "", dtype, batch, sparsity,
                       sparsity == 0 ? "tuned at sparsity > 0 only" : "tuned at sparsity 0 only (the dense baseline)");
    for (int v = 0; v < SP_MLP_MAX_VARIANTS; ++v) {
        char *fixed = k->storage + k->n * MK_FIXED_CAP;
        if (v >= sp_mlp_fixed(gen, family, sparsity, v, fixed, MK_FIXED_CAP)) break;
        if (k->n == cap) return sp_fail(SPRIG_E_INTERNAL, "MLP keys: more keys than counted");
        sp_tune_key key = {family, r->d, r->f, dtype, batch, r->g, sparsity, fixed};
        char why[512];
        if (sp_tune_key_servable(gen, &key, why, sizeof why) == 1) k->keys[k->n++] = key;
        else SP_TRY(mk_skip(k, family, fixed, dtype, batch, sparsity, why));
    }
    return SPRIG_OK;
}

sprig_status sp_mlp_keys_build(sprig_gen *gen, const sp_mlp_key_request *r, sp_mlp_keys *out) {
    if (!out) return sp_fail(SPRIG_E_INVALID, "sp_mlp_keys_build: out is NULL");
    memset(out, 0, sizeof *out);
    sp_gen_names known;
    SP_TRY(sp_gen_mlp_families(gen, &known));
    SP_TRY(mk_check_request(r, &known));
    size_t n_fam = r->families ? (size_t)r->n_families : (size_t)known.n;
    size_t cap = (size_t)r->n_dtypes * r->n_batches * r->n_sparsities * n_fam * SP_MLP_MAX_VARIANTS;
    out->keys = calloc(cap ? cap : 1, sizeof *out->keys);
    out->storage = calloc(cap ? cap : 1, MK_FIXED_CAP + sizeof known.name[0]);
    if (!out->keys || !out->storage) {
        sp_mlp_keys_free(out);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    /* the keys' family names live in the storage too, after the fixed params */
    char *names = out->storage + cap * MK_FIXED_CAP;
    sprig_status st = SPRIG_OK;
    for (int di = 0; di < r->n_dtypes && st == SPRIG_OK; ++di)
        for (int bi = 0; bi < r->n_batches && st == SPRIG_OK; ++bi)
            for (int si = 0; si < r->n_sparsities && st == SPRIG_OK; ++si)
                for (size_t fi = 0; fi < n_fam && st == SPRIG_OK; ++fi) {
                    char *fam = names + fi * sizeof known.name[0];
                    snprintf(fam, sizeof known.name[0], "%s", r->families ? r->families[fi] : known.name[fi]);
                    if (!r->families && !sp_mlp_default_family(gen, fam, r->batches[bi])) continue;
                    const char *dtype = !strcmp(r->dtypes[di], "bf16") ? "bf16" : "fp16";
                    st = mk_add(gen, r, dtype, r->batches[bi], r->sparsities[si], fam, out, cap);
                }
    if (st != SPRIG_OK) sp_mlp_keys_free(out);
    return st;
}

/* ---- lookup ------------------------------------------------------------------------------ */

typedef struct mk_valid_ctx {
    sprig_gen *gen;
    sprig_request req;
} mk_valid_ctx;

/* Params tuned for another shape or batch must still be valid here. */
static int mk_valid(void *ctx, const sp_db_key *want, const char *params) {
    (void)want;
    mk_valid_ctx *c = ctx;
    return sp_space_check(c->gen, &c->req, params) == SPRIG_OK;
}

sprig_status sp_mlp_lookup(sprig_gen *gen, const sp_db_set *set, const sp_gpu_id *gpu, const char *family, int v,
                           int d, int f, const char *dtype, int batch, int g, double sparsity,
                           sp_lookup_result *out) {
    char fixed[MK_FIXED_CAP];
    if (!gen || !set || !gpu || !family || !out) return sp_fail(SPRIG_E_INVALID, "sp_mlp_lookup: NULL argument");
    if (v >= sp_mlp_fixed(gen, family, sparsity, v, fixed, sizeof fixed))
        return sp_fail(SPRIG_E_INVALID, "%s has no variant %d at sparsity %g", family, v, sparsity);
    /* The defaults with the fixed params: the generic choice; the template hash as sprig tune records it. */
    sprig_request req = {family, d, f, dtype, batch, g, fixed};
    char *defaults = NULL;
    int valid = 0;
    SP_TRY(sp_space_defaults(gen, &req, &defaults, &valid));
    uint64_t hash = 0;
    sprig_status st = sp_space_template_hash(gen, &req, NULL, &hash);
    sp_db_key key;
    if (st == SPRIG_OK) st = sp_db_key_make(&key, family, hash, d, f, dtype, batch, sparsity, g, fixed);
    if (st == SPRIG_OK) {
        mk_valid_ctx vc = {gen, req};
        st = sp_db_lookup(set, gpu, &key, mk_valid, &vc, out);
    }
    if (st == SPRIG_OK && out->source == SP_LOOKUP_GENERIC_DEFAULT) {
        if (!valid) st = sp_fail(SPRIG_E_INVALID, "%s cannot serve d=%d f=%d %s batch=%d g=%d with its defaults "
                                 "and nothing tuned fits", family, d, f, dtype, batch, g);
        else snprintf(out->params, sizeof out->params, "%s", defaults);
    }
    free(defaults);
    return st;
}

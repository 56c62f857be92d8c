/* sprig's CPU backend against the PyTorch LTE forward of a trained LTE folder
 * (tools/lte, reference written by `python3 -m tools.lte reference`): logits at
 * every position and every router decision. Run by tests/lte_train_test.py.
 *
 * usage: lte_check MODEL_DIR EXPECTED.safetensors MAX_REL_ERR
 * prints one line "rel_err R decisions N differ D min_margin M sparsity S";
 * exit 0 when R <= MAX_REL_ERR and D == 0, else 1 (2 on a load error). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "sp_cpu.h"
#include "sp_safetensors.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: lte_check MODEL_DIR EXPECTED.safetensors MAX_REL_ERR\n");
        return 2;
    }
    const double max_rel = atof(argv[3]);
    sp_model *m = NULL;
    sp_safetensors *ex = NULL;
    sp_cpu *c = NULL;
    if (sp_model_open(argv[1], &m) != SPRIG_OK || sp_st_open(argv[2], &ex) != SPRIG_OK) {
        fprintf(stderr, "lte_check: %s\n", sprig_last_error());
        return 2;
    }
    const sp_tensor *tokens = sp_st_find(ex, "tokens"), *logits = sp_st_find(ex, "logits");
    const sp_tensor *active = sp_st_find(ex, "active"), *margin = sp_st_find(ex, "margin");
    const int T = tokens ? (int)tokens->shape[0] : 0, V = m->cfg->vocab_size, E = m->cfg->lte.n_experts;
    if (!tokens || !logits || !active || !margin || !m->cfg->lte.enabled ||
        sp_cpu_open(m, T + 1, SP_MLP_AUTO, &c) != SPRIG_OK) {
        fprintf(stderr, "lte_check: expected tokens/logits/active/margin and an LTE model (%s)\n",
                sprig_last_error());
        return 2;
    }
    float *ref = malloc(sizeof(float) * V), *row = malloc(sizeof(float) * E), *mar = malloc(sizeof(float) * E);
    double err2 = 0, ref2 = 0, min_margin = 1;
    long decisions = 0, differ = 0;
    const float *out = NULL;
    for (int t = 0; t < T; ++t) {
        if (sp_cpu_forward(c, (int)sp_tensor_int_at(tokens, (size_t)t), t, &out) != SPRIG_OK) {
            fprintf(stderr, "lte_check: %s\n", sprig_last_error());
            return 2;
        }
        sp_tensor_row(logits, t, ref);
        for (int v = 0; v < V; ++v) err2 += (out[v] - (double)ref[v]) * (out[v] - (double)ref[v]), ref2 += (double)ref[v] * ref[v];
        for (int l = 0, r = 0; l < m->cfg->num_hidden_layers; ++l) { /* active: [router layers][T][E] */
            if (!m->layers[l].router) continue;
            sp_tensor_row(active, (int64_t)r * T + t, row);
            sp_tensor_row(margin, (int64_t)r * T + t, mar);
            for (int e = 0; e < E; ++e, ++decisions) {
                differ += (row[e] > 0.5f) != (sp_cpu_decisions(c, l)[e] != 0);
                if (fabs(mar[e]) < min_margin) min_margin = fabs(mar[e]);
            }
            ++r;
        }
    }
    const double rel = sqrt(err2 / ref2);
    printf("rel_err %.3g decisions %ld differ %ld min_margin %.3g sparsity %.4f\n", rel, decisions, differ,
           min_margin, sp_cpu_mlp_sparsity(c));
    free(ref), free(row), free(mar);
    sp_cpu_close(c);
    sp_st_close(ex);
    sp_model_close(m);
    return rel <= max_rel && differ == 0 ? 0 : 1;
}

/* The CPU backend against Hugging Face transformers (tools/make_model_fixtures.py):
 * logits at every position within 1e-4 relative, identical greedy tokens,
 * and for LTE models the same per-token expert decisions as the PyTorch rule. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_cpu.h"
#include "sp_safetensors.h"
#include "test_util.h"

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; ++i)
        if (v[i] > v[best]) best = i;
    return best;
}

static void check_model(const char *root, const char *name) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    sp_model *m = NULL;
    sp_safetensors *ex = NULL;
    sprig_status s = sp_model_open(dir, &m);
    CHECK_MSG(s == SPRIG_OK, "%s: %s", name, sprig_last_error());
    CHECK_MSG(sp_st_open(path, &ex) == SPRIG_OK, "%s: %s", name, sprig_last_error());
    if (!m || !ex) goto done;
    const sp_tensor *tokens = sp_st_find(ex, "tokens"), *logits = sp_st_find(ex, "logits");
    const sp_tensor *greedy = sp_st_find(ex, "greedy"), *active = sp_st_find(ex, "active");
    CHECK(tokens && logits && greedy);
    if (!tokens || !logits || !greedy) goto done;
    const int T = (int)tokens->shape[0], V = m->cfg->vocab_size, N = (int)greedy->shape[0];
    CHECK(logits->shape[0] == T && logits->shape[1] == V);
    sp_cpu *c = NULL;
    CHECK(sp_cpu_open(m, T + N + 1, SP_MLP_AUTO, &c) == SPRIG_OK);
    if (!c) goto done;
    float *ref = malloc(sizeof(float) * V);
    double err2 = 0, ref2 = 0;
    int decisions = 0, decision_errors = 0;
    const float *out = NULL;
    for (int t = 0; t < T; ++t) {
        CHECK(sp_cpu_forward(c, (int)sp_tensor_int_at(tokens, (size_t)t), t, &out) == SPRIG_OK);
        sp_tensor_row(logits, t, ref);
        for (int v = 0; v < V; ++v) err2 += (out[v] - (double)ref[v]) * (out[v] - (double)ref[v]), ref2 += (double)ref[v] * ref[v];
        if (active) { /* [router layers][T][E], in layer order */
            const int E = m->cfg->lte.n_experts;
            float *row = malloc(sizeof(float) * E);
            for (int l = 0, r = 0; l < m->cfg->num_hidden_layers; ++l) {
                if (!m->layers[l].router) continue;
                sp_tensor_row(active, (int64_t)r * T + t, row);
                for (int e = 0; e < E; ++e, ++decisions)
                    decision_errors += (row[e] > 0.5f) != (sp_cpu_decisions(c, l)[e] != 0);
                ++r;
            }
            free(row);
        }
    }
    const double rel = sqrt(err2 / ref2);
    printf("%s: logits rel err %.3g over %d positions\n", name, rel, T);
    CHECK_MSG(rel < 1e-4, "%s: logits rel err %.3g", name, rel);
    if (active) {
        printf("%s: %d expert decisions, %d differ, MLP sparsity %.1f%%\n", name, decisions, decision_errors,
               100 * sp_cpu_mlp_sparsity(c));
        CHECK_MSG(decision_errors == 0, "%s: %d expert decisions differ", name, decision_errors);
        CHECK(sp_cpu_mlp_sparsity(c) > 0.1);
    }
    /* Greedy continuation: the logits at the last prompt position pick the first token. */
    int mismatched = 0;
    for (int i = 0; i < N; ++i) {
        const int next = argmax(out, V);
        mismatched += next != (int)sp_tensor_int_at(greedy, (size_t)i);
        CHECK(sp_cpu_forward(c, next, T + i, &out) == SPRIG_OK);
    }
    CHECK_MSG(mismatched == 0, "%s: %d of %d greedy tokens differ", name, mismatched, N);
    free(ref);
    sp_cpu_close(c);
done:
    sp_st_close(ex);
    sp_model_close(m);
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : "tests/fixtures/models";
    const char *models[] = {"tiny-llama2", "tiny-llama3",    "tiny-llama2-tied", "tiny-llama2-lte",
                            "tiny-llama3-lte", "tiny-mistral", "tiny-qwen2"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; ++i) check_model(root, models[i]);
    return sp_test_finish("test_cpu_model", 0);
}

/* The backend seam (backend/sp_backend.h) on both implementations: the CPU
 * reference, and the GPU decode step on the CPU emulator's executor.
 *   - a backend opened through the seam computes what the implementation
 *     computes directly (same logits, bit for bit);
 *   - thresholds from sp_calibrate_thresholds, set through the seam, give
 *     what sp_cpu_calibrate gives on its own instance (logits, sparsity);
 *   - the GPU's weight bytes are the model's (everything but the embedding,
 *     in the 16-bit compute type, lm_head padded to a multiple of 8 rows),
 *     the MLP's share is 3·L·f·d·2, and the CPU reports none;
 *   - graph replay on and off through the seam give the same logits;
 *   - bad arguments are refused, nothing is leaked on the way. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_emu.h"
#include "sp_backend.h"
#include "sp_cpu.h"
#include "sp_gpu.h"
#include "test_util.h"

#define POSITIONS 6

static const int kTokens[POSITIONS] = {3, 17, 42, 5, 99, 7};

/* Runs the tokens through be; logits of every position into out [POSITIONS][vocab]. */
static int run(sp_backend *be, int vocab, float *out) {
    for (int t = 0; t < POSITIONS; ++t) {
        const float *logits = NULL;
        sprig_status s = sp_backend_forward(be, kTokens[t] % vocab, t, &logits);
        CHECK_MSG(s == SPRIG_OK, "%s forward at %d: %s", be->name, t, sprig_last_error());
        if (s != SPRIG_OK) return 0;
        memcpy(out + (size_t)t * vocab, logits, sizeof(float) * (size_t)vocab);
    }
    return 1;
}

/* The CPU seam against sp_cpu directly, and thresholds through the seam. */
static void cpu_side(const sp_model *m, const char *name) {
    const int V = m->cfg->vocab_size, L = m->cfg->num_hidden_layers;
    float *a = malloc(sizeof(float) * POSITIONS * V), *b = malloc(sizeof(float) * POSITIONS * V);
    sp_backend *be = NULL;
    sp_cpu *c = NULL;
    CHECK(sp_backend_open_cpu(m, POSITIONS, SP_MLP_AUTO, &be) == SPRIG_OK && be);
    CHECK(sp_cpu_open(m, POSITIONS, SP_MLP_AUTO, &c) == SPRIG_OK && c);
    if (be && c && run(be, V, a)) {
        int same = 1;
        for (int t = 0; t < POSITIONS && same; ++t) {
            const float *logits = NULL;
            CHECK(sp_cpu_forward(c, kTokens[t] % V, t, &logits) == SPRIG_OK);
            same = logits && !memcmp(logits, a + (size_t)t * V, sizeof(float) * (size_t)V);
        }
        CHECK_MSG(same, "%s: the CPU seam's logits differ from sp_cpu's", name);
        size_t all = 1, mlp = 1;
        sp_backend_weight_bytes(be, &all, &mlp);
        CHECK(all == 0 && mlp == 0);
        CHECK(!strcmp(be->name, "cpu") && !strcmp(be->dtype, "fp32") && sp_backend_note(be)[0] == 0);
    }
    sp_backend_close(be), be = NULL;
    sp_cpu_close(c), c = NULL;

    /* thresholds: calibrated by the helper and set through the seam, against
     * sp_cpu_calibrate on one instance */
    float *thr = malloc(sizeof(float) * (size_t)L);
    CHECK(sp_calibrate_thresholds(m, kTokens, POSITIONS, 0.5, thr) == SPRIG_OK);
    CHECK(sp_cpu_open(m, POSITIONS, SP_MLP_DENSE, &c) == SPRIG_OK && c);
    CHECK(sp_backend_open_cpu(m, POSITIONS, SP_MLP_DENSE, &be) == SPRIG_OK && be);
    if (c && be && sp_cpu_calibrate(c, kTokens, POSITIONS, 0.5) == SPRIG_OK) {
        CHECK_MSG(!memcmp(thr, c->thresholds, sizeof(float) * (size_t)L), "%s: calibrated thresholds differ", name);
        CHECK(sp_backend_set_thresholds(be, thr) == SPRIG_OK);
        int same = run(be, V, a);
        for (int t = 0; t < POSITIONS && same; ++t) {
            const float *logits = NULL;
            CHECK(sp_cpu_forward(c, kTokens[t] % V, t, &logits) == SPRIG_OK);
            same = logits && !memcmp(logits, a + (size_t)t * V, sizeof(float) * (size_t)V);
        }
        CHECK_MSG(same, "%s: thresholds set through the seam give other logits than sp_cpu_calibrate", name);
        const double sp = sp_backend_mlp_sparsity(be);
        CHECK_MSG(fabs(sp - sp_cpu_mlp_sparsity(c)) < 1e-12 && sp > 0.3 && sp < 0.7, "%s: sparsity %g vs %g", name,
                  sp, sp_cpu_mlp_sparsity(c));
    }
    CHECK(sp_calibrate_thresholds(m, kTokens, POSITIONS, 1.5, thr) == SPRIG_E_INVALID);
    sp_backend_close(be);
    sp_cpu_close(c);
    free(thr), free(a), free(b);
}

/* What the GPU backend uploads, by the model's own shapes: every weight but the
 * embedding at 2 bytes, lm_head padded to a multiple of 8 rows (unsliced models). */
static void expected_bytes(const sp_model *m, size_t *all, size_t *mlp) {
    const sp_model_config *c = m->cfg;
    const size_t d = (size_t)c->hidden_size, f = (size_t)c->intermediate_size, L = (size_t)c->num_hidden_layers;
    const size_t qd = (size_t)c->num_attention_heads * c->head_dim, kvd = (size_t)c->num_key_value_heads * c->head_dim;
    const size_t vocab8 = ((size_t)c->vocab_size + 7) / 8 * 8;
    size_t elems = 0;
    for (size_t l = 0; l < L; ++l) {
        elems += (qd + 2 * kvd) * d + d * qd + 2 * d + 3 * f * d;
        if (m->layers[l].router) elems += (size_t)m->layers[l].router->shape[0] * d;
    }
    elems += d + vocab8 * d;
    *all = 2 * elems;
    *mlp = 2 * 3 * f * d * L;
}

static void gpu_side(sp_gpu_kernels *ks, const sp_model *m, const char *name) {
    const int V = m->cfg->vocab_size;
    float *on = malloc(sizeof(float) * POSITIONS * V), *off = malloc(sizeof(float) * POSITIONS * V);
    sp_backend *be = NULL;
    CHECK(sp_backend_open_gpu(ks, m, POSITIONS, SP_MLP_AUTO, "fp32", &be) == SPRIG_E_INVALID && !be);
    CHECK_MSG(sp_backend_open_gpu(ks, m, POSITIONS, SP_MLP_AUTO, "fp16", &be) == SPRIG_OK && be, "%s: %s", name,
              sprig_last_error());
    if (!be) goto done;
    CHECK(!strcmp(be->name, "cuda") && !strcmp(be->dtype, "fp16"));
    size_t all = 0, mlp = 0, want_all = 0, want_mlp = 0;
    sp_backend_weight_bytes(be, &all, &mlp);
    expected_bytes(m, &want_all, &want_mlp);
    CHECK_MSG(all == want_all && mlp == want_mlp, "%s: weight bytes %zu (MLP %zu), the model's %zu (%zu)", name, all,
              mlp, want_all, want_mlp);
    if (run(be, V, on)) { /* graph captured at the first token, replayed after */
        sp_backend_close(be), be = NULL;
        CHECK(sp_backend_open_gpu(ks, m, POSITIONS, SP_MLP_AUTO, "fp16", &be) == SPRIG_OK && be);
        if (be) sp_backend_set_graph(be, 0);
        if (be && run(be, V, off))
            CHECK_MSG(!memcmp(on, off, sizeof(float) * POSITIONS * (size_t)V),
                      "%s: graph replay and kernel-by-kernel launches differ", name);
        CHECK(be && sp_backend_note(be)[0] == 0);
    }
done:
    sp_backend_close(be);
    free(on), free(off);
}

/* ---- the step described without a GPU is the step launched -------------------------- */
static const sp_exec_ops *real_ops;
static long launched_plans, launched_kernels;
#define MAX_LAUNCHED 512
static char launched_keys[MAX_LAUNCHED][160];
static sprig_status counting_launch(sp_exec *e, sp_exec_module *m, const sprig_plan *plan, void **args) {
    if (launched_plans < MAX_LAUNCHED) snprintf(launched_keys[launched_plans], sizeof launched_keys[0], "%s", plan->key);
    ++launched_plans, launched_kernels += plan->n_kernels;
    return real_ops->launch(e, m, plan, args);
}

/* Each described launch names its request well enough to render it again
 * (sprig analyze does): the same plan, key for key. */
static void described_renders_again(const sp_gpu_step *step, const char *dtype, const char *name) {
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    for (int i = 0; gen && i < step->n; ++i) {
        const sp_gpu_launch *l = &step->launches[i];
        sprig_request req = {l->plan->family, l->d, l->f, dtype, 1, l->g, l->params};
        sprig_plan *plan = NULL;
        CHECK_MSG(sprig_gen_render(gen, &req, &plan) == SPRIG_OK && !strcmp(plan->key, l->plan->key),
                  "%s: launch %d (%s, params '%s') renders as %s, launched %s", name, i, l->plan->family, l->params,
                  plan ? plan->key : sprig_last_error(), l->plan->key);
        sprig_plan_free(plan);
    }
    sprig_gen_close(gen);
}

/* sp_gpu_describe (no executor, no weights: from the config alone) lists the
 * launches sp_gpu_forward makes, counted here on the emulator kernel by kernel. */
static void describe_matches(sp_exec *e, const sp_model *m, const char *name, sp_mlp_mode mode) {
    sp_gpu_kernels *none = NULL;
    sp_gpu_step step;
    CHECK(sp_gpu_kernels_open(NULL, &none) == SPRIG_OK);
    CHECK_MSG(none && sp_gpu_describe(none, m->cfg, mode, "fp16", &step) == SPRIG_OK, "%s: %s", name,
              sprig_last_error());
    sp_exec_ops counting = *e->ops;
    real_ops = e->ops, counting.launch = counting_launch;
    sp_gpu_kernels *ks = NULL;
    sp_gpu *g = NULL;
    CHECK(sp_gpu_kernels_open(e, &ks) == SPRIG_OK);
    CHECK(ks && sp_gpu_open(ks, m, 2, mode, "fp16", &g) == SPRIG_OK);
    if (g) {
        sp_gpu_set_graph(g, 0);
        const float *logits = NULL;
        e->ops = &counting;
        launched_plans = launched_kernels = 0;
        CHECK(sp_gpu_forward(g, 1, 0, &logits) == SPRIG_OK);
        e->ops = real_ops;
        CHECK_MSG(launched_plans == step.n && launched_kernels == step.kernels,
                  "%s: described %d plans (%d kernels), launched %ld (%ld)", name, step.n, step.kernels,
                  launched_plans, launched_kernels);
        printf("%s: %d launches per token (%d kernels), %d layers, described = launched\n", name, step.n,
               step.kernels, m->cfg->num_hidden_layers);
        /* the request part of the key (before '|'): the emulator's executor picks
         * its own default parameters (small CTAs), the description a GPU's */
        for (int i = 0; i < step.n && i < MAX_LAUNCHED; ++i)
            CHECK_MSG(step.launches[i].plan &&
                          !strncmp(step.launches[i].plan->key, launched_keys[i], strcspn(launched_keys[i], "|") + 1),
                      "%s: launch %d described as %s, launched %s", name, i,
                      step.launches[i].plan ? step.launches[i].plan->key : "(none)", launched_keys[i]);
        described_renders_again(&step, "fp16", name);
    }
    e->ops = real_ops;
    sp_gpu_close(g);
    sp_gpu_kernels_close(ks);
    sp_gpu_step_free(&step);
    sp_gpu_kernels_close(none);
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : "tests/fixtures/models";
    sp_exec *e = NULL;
    sp_gpu_kernels *ks = NULL;
    CHECK(sp_exec_open_emu(&e) == SPRIG_OK);
    CHECK(e && sp_gpu_kernels_open(e, &ks) == SPRIG_OK);
    const char *models[] = {"tiny-llama2", "tiny-llama2-lte", "tiny-llama2-tied"};
    for (size_t i = 0; i < sizeof models / sizeof models[0] && ks; ++i) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", root, models[i]);
        sp_model *m = NULL;
        CHECK_MSG(sp_model_open(dir, &m) == SPRIG_OK, "%s: %s", models[i], sprig_last_error());
        if (!m) continue;
        cpu_side(m, models[i]);
        gpu_side(ks, m, models[i]);
        describe_matches(e, m, models[i], SP_MLP_AUTO);
        sp_model_close(m);
    }
    sp_gpu_kernels_close(ks);
    sp_exec_close(e);
    return sp_test_finish("test_backend", 0);
}

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sp_error.h"
#include "sp_generate.h"

sprig_status sp_sampler_init(sp_sampler *s, int vocab, float temperature, float top_p, uint64_t seed) {
    memset(s, 0, sizeof *s);
    if (!(temperature >= 0) || !(top_p > 0 && top_p <= 1))
        return sp_fail(SPRIG_E_INVALID, "temperature must be >= 0 and top-p in (0, 1] (got %g, %g)", temperature, top_p);
    s->vocab = vocab, s->temperature = temperature, s->top_p = top_p;
    s->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
    s->probs = malloc(sizeof(float) * (size_t)vocab);
    s->order = malloc(sizeof(int) * (size_t)vocab);
    if (!s->probs || !s->order) {
        sp_sampler_free(s);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    return SPRIG_OK;
}

void sp_sampler_free(sp_sampler *s) {
    free(s->probs);
    free(s->order);
    s->probs = NULL, s->order = NULL;
}

static double next_unit(sp_sampler *s) {
    s->rng ^= s->rng >> 12, s->rng ^= s->rng << 25, s->rng ^= s->rng >> 27;
    return (double)((s->rng * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

static const float *g_probs; /* qsort has no context argument */
static int by_prob_desc(const void *a, const void *b) {
    const float x = g_probs[*(const int *)a], y = g_probs[*(const int *)b];
    return (x < y) - (x > y);
}

static int sp_sample(sp_sampler *s, const float *logits) {
    int best = 0;
    for (int i = 1; i < s->vocab; ++i)
        if (logits[i] > logits[best]) best = i;
    if (s->temperature == 0) return best;
    double sum = 0;
    for (int i = 0; i < s->vocab; ++i) sum += s->probs[i] = expf((logits[i] - logits[best]) / s->temperature);
    for (int i = 0; i < s->vocab; ++i) s->probs[i] = (float)(s->probs[i] / sum), s->order[i] = i;
    g_probs = s->probs;
    qsort(s->order, (size_t)s->vocab, sizeof(int), by_prob_desc);
    int keep = 0;
    double mass = 0;
    while (keep < s->vocab && mass < s->top_p) mass += s->probs[s->order[keep++]];
    double r = next_unit(s) * mass;
    for (int i = 0; i < keep; ++i) {
        r -= s->probs[s->order[i]];
        if (r <= 0) return s->order[i];
    }
    return s->order[keep - 1];
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

sprig_status sp_generate(sp_backend *be, const int *prompt, int n_prompt, int max_new, int context,
                         sp_sampler *sampler, const int *eos, int n_eos,
                         sprig_status (*on_token)(void *ctx, int token), void *ctx, sp_gen_stats *stats) {
    return sp_generate_at(be, 0, prompt, n_prompt, max_new, context, sampler, eos, n_eos, on_token, ctx, stats);
}

sprig_status sp_generate_at(sp_backend *be, int n_past, const int *prompt, int n_prompt, int max_new, int context,
                            sp_sampler *sampler, const int *eos, int n_eos,
                            sprig_status (*on_token)(void *ctx, int token), void *ctx, sp_gen_stats *stats) {
    memset(stats, 0, sizeof *stats);
    if (n_prompt < 1) return sp_fail(SPRIG_E_INVALID, "the prompt is empty (no tokens to start from)");
    if (n_past < 0 || n_past > context || n_prompt > context - n_past)
        return sp_fail(SPRIG_E_INVALID, "the prompt has %d tokens but the context holds %d", n_past + n_prompt, context);
    const int end = n_past + n_prompt;
    if (max_new > context - end) max_new = context - end; /* no end + max_new: it can overflow */
    const float *logits = NULL;
    double t0 = now_seconds();
    for (int i = 0; i < n_prompt; ++i) SP_TRY(sp_backend_forward(be, prompt[i], n_past + i, &logits));
    stats->prompt_tokens = n_prompt;
    stats->prompt_seconds = now_seconds() - t0;
    t0 = now_seconds();
    for (int i = 0; i < max_new; ++i) {
        const int tok = sp_sample(sampler, logits);
        ++stats->generated;
        if (on_token) SP_TRY(on_token(ctx, tok));
        int stop = 0;
        for (int e = 0; e < n_eos; ++e) stop |= tok == eos[e];
        if (stop) {
            stats->stopped_at_eos = 1;
            break;
        }
        if (i + 1 < max_new) SP_TRY(sp_backend_forward(be, tok, end + i, &logits));
    }
    stats->decode_seconds = now_seconds() - t0;
    return SPRIG_OK;
}

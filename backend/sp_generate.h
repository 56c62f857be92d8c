/* Token sampling and the decode loop, independent of the backend. */
#ifndef SP_GENERATE_H
#define SP_GENERATE_H

#include <stdint.h>

#include "sp_backend.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* temperature 0: greedy (argmax). Otherwise softmax(logits / T) restricted to
 * the smallest set of tokens whose probability reaches top_p (nucleus). */
typedef struct sp_sampler {
    int vocab;
    float temperature, top_p;
    uint64_t rng;        /* xorshift64*, from the seed */
    float *probs;        /* [vocab] scratch */
    int *order;          /* [vocab] scratch */
} sp_sampler;

sprig_status sp_sampler_init(sp_sampler *s, int vocab, float temperature, float top_p, uint64_t seed);
void sp_sampler_free(sp_sampler *s);

typedef struct sp_gen_stats {
    int prompt_tokens, generated;
    double prompt_seconds, decode_seconds;
    int stopped_at_eos;
} sp_gen_stats;

/* Feeds the prompt, then samples up to max_new tokens, stopping after any of
 * eos[0..n_eos). on_token (may be NULL) sees each generated token as it comes.
 * context: the largest number of positions the backend holds. */
sprig_status sp_generate(sp_backend *be, const int *prompt, int n_prompt, int max_new, int context,
                         sp_sampler *sampler, const int *eos, int n_eos,
                         sprig_status (*on_token)(void *ctx, int token), void *ctx, sp_gen_stats *stats);
/* The same, continuing a sequence whose first n_past positions the backend
 * already holds (a chat's earlier turns): the prompt goes to positions
 * n_past.. and generation follows it. n_past + n_prompt must fit the context. */
sprig_status sp_generate_at(sp_backend *be, int n_past, const int *prompt, int n_prompt, int max_new, int context,
                            sp_sampler *sampler, const int *eos, int n_eos,
                            sprig_status (*on_token)(void *ctx, int token), void *ctx, sp_gen_stats *stats);
#pragma GCC visibility pop
#endif

/* Declarations shared by model/'s own files (not exported from the layer). */
#ifndef SP_MODEL_INTERNAL_H
#define SP_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sp_safetensors.h"
#include "sprig.h"

/* arch.c: "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM", for messages. */
const char *sp_arch_supported_list(void);

const char *sp_dtype_name(sp_dtype t);   /* "F16", "BF16", ... as spelled in a safetensors header */
int sp_dtype_is_float(sp_dtype t);       /* F16, BF16, F32 */

/* Writes "4096x4096" (or "scalar" for ndim 0) into buf; returns buf. */
char *sp_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

/* model_files.c: a model.safetensors.index.json, parsed. Its weight map in
 * file order: tensor tensors[i] is in shard file shards[shard_of[i]]. Every
 * shard name is a plain file name (not empty, no '/', not "." or ".."), so it
 * stays inside the model folder; shards holds each once, in order of first
 * mention; no tensor is listed twice; n >= 1. */
typedef struct sp_mf_index {
    size_t n;
    char **tensors;     /* [n] owned */
    size_t *shard_of;   /* [n]: indices into shards */
    size_t n_shards;
    char **shards;      /* [n_shards] owned */
} sp_mf_index;

/* Parses text[0..len) (it need not end in a NUL); path names the file in
 * messages. A problem is SPRIG_E_FORMAT naming path. The caller owns *out's
 * contents (sp_mf_index_free); on failure *out is empty. */
sprig_status sp_mf_index_parse(const char *text, size_t len, const char *path, sp_mf_index *out);
void sp_mf_index_free(sp_mf_index *ix);

#endif

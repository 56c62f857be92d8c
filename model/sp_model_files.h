/* A Hugging Face model folder on disk: config.json plus the weights, either
 * one model.safetensors or shards listed by model.safetensors.index.json
 * ({"weight_map": {tensor name: shard file name}, "metadata": {...}}).
 * Every shard is mapped once; tensors are found by name across shards.
 * Opening validates everything: the config, every shard, that every tensor in
 * the weight map is in its shard, and that the tensors match the config
 * (sp_model_config_check_tensors). tokenizer.json is not read here.
 * A SliceGPT-sliced folder (sp_slicegpt.h) is recognised here: its slicing
 * JSON fills config.slice before the tensors are checked.
 * A llama GGUF file (sp_gguf_is_file: a regular file named *.gguf or starting
 * with the GGUF magic) is taken in place of a folder: the config from its
 * metadata, its tensors under their Hugging Face names, quantized ones
 * dequantized to F32 and owned here (sp_gguf.h); the same tensor check. */
#ifndef SP_MODEL_FILES_H
#define SP_MODEL_FILES_H

#include <stddef.h>

#include "sp_model_config.h"
#include "sp_safetensors.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_model_files sp_model_files;

/* Opens the folder (or GGUF file) `dir`. Missing config.json / weights / shard: SPRIG_E_IO
 * naming the path; malformed or inconsistent contents: SPRIG_E_FORMAT.
 * On success *out is owned by the caller (sp_model_files_close); else NULL. */
sprig_status sp_model_files_open(const char *dir, sp_model_files **out);

/* Unmaps every shard and frees; NULL is a no-op. All tensor pointers from
 * this folder become invalid. */
void sp_model_files_close(sp_model_files *mf);

/* The validated config.json (valid while mf is open). */
const sp_model_config *sp_model_files_config(const sp_model_files *mf);

/* The tensor called `name`, or NULL. O(log n) over all shards. Only tensors
 * named in the weight map (sharded) or the single file are visible. */
const sp_tensor *sp_model_files_find(const sp_model_files *mf, const char *name);

/* Like find, but a missing tensor is SPRIG_E_FORMAT naming it and the folder. */
sprig_status sp_model_files_get(const sp_model_files *mf, const char *name, const sp_tensor **out);

/* Visible tensors in name order: 0 <= i < sp_model_files_count(mf). */
size_t sp_model_files_count(const sp_model_files *mf);

size_t sp_model_files_n_shards(const sp_model_files *mf);


#pragma GCC visibility pop
#endif

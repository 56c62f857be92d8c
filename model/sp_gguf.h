/* Reading GGUF files (llama.cpp's single-file model format): memory-mapped,
 * validated, metadata and tensors looked up by name; and the dequantizers
 * from GGUF's block formats to fp32.
 *
 * Layout (version 2 and 3; version 1 used 32-bit counts and is refused):
 *   "GGUF", u32 version, u64 tensor_count, u64 kv_count,
 *   kv_count x (string key, u32 value type, value),
 *   tensor_count x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type,
 *                   u64 offset),
 *   padding to `general.alignment` (a u32 power of two, default 32),
 *   the data section: tensor i at data + offset_i (a multiple of the alignment).
 * Strings are u64 length + bytes (no NUL). Arrays are u32 element type,
 * u64 count, elements (arrays of arrays included). Everything little-endian.
 * ne[0] is the fastest-varying dimension: a row of ne[0] elements, so the
 * PyTorch/safetensors shape is ne reversed.
 *
 * Everything is checked before anything is exposed: every count, length and
 * offset against the bytes that remain (overflow-safe), value and tensor types
 * known, keys and tensor names unique and free of NULs, dimensions positive
 * and a whole number of blocks per row, every tensor inside the data section
 * and overlapping no other. A violation is SPRIG_E_FORMAT with one line naming
 * the file and what is wrong. */
#ifndef SP_GGUF_H
#define SP_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "sp_model_config.h"
#include "sp_safetensors.h"
#include "sp_tokenizer.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* Used only by model/'s own files (and its tests, which link the layer's
 * objects): not exported from the layer (scripts/check-layers.sh). */
#define SP_GGUF_INTERNAL __attribute__((visibility("hidden")))

/* Metadata value types, as numbered in the file. */
typedef enum sp_gguf_vtype {
    SP_GGUF_U8 = 0, SP_GGUF_I8 = 1, SP_GGUF_U16 = 2, SP_GGUF_I16 = 3, SP_GGUF_U32 = 4,
    SP_GGUF_I32 = 5, SP_GGUF_F32 = 6, SP_GGUF_BOOL = 7, SP_GGUF_STRING = 8, SP_GGUF_ARRAY = 9,
    SP_GGUF_U64 = 10, SP_GGUF_I64 = 11, SP_GGUF_F64 = 12, SP_GGUF_VTYPE_COUNT
} sp_gguf_vtype;

/* ggml tensor types sprig names (ggml.h's numbering; 4, 5, 31-33, 36-38 were removed there). */
enum {
    SP_GGML_F32 = 0, SP_GGML_F16 = 1, SP_GGML_Q4_0 = 2, SP_GGML_Q4_1 = 3, SP_GGML_Q8_0 = 8,
    SP_GGML_Q4_K = 12, SP_GGML_Q6_K = 14, SP_GGML_BF16 = 30
};

typedef struct sp_gguf_str {
    const char *s;     /* into the mapping: NOT NUL-terminated */
    uint64_t len;
} sp_gguf_str;

/* One metadata entry. Scalars are widened: u (unsigned and bool), i (signed),
 * f (F32/F64). Strings: str (into the mapping). Arrays: arr_type and n; the
 * elements of a numeric array are at arr_data, little-endian, packed
 * (sp_gguf_arr_* read them); a string array's elements are arr_str[0..n). */
typedef struct sp_gguf_kv {
    const char *key;   /* owned, NUL-terminated */
    sp_gguf_vtype type;
    uint64_t u;
    int64_t i;
    double f;
    sp_gguf_str str;
    sp_gguf_vtype arr_type;
    uint64_t n;
    const void *arr_data;
    sp_gguf_str *arr_str;   /* owned index, string arrays only */
} sp_gguf_kv;

typedef struct sp_gguf_tensor {
    const char *name;  /* owned, NUL-terminated */
    uint32_t type;     /* ggml type */
    int n_dims;        /* 1..4 */
    int64_t ne[4];     /* ne[0]: row length; unused entries 1 */
    int64_t n_elems;
    uint64_t offset;   /* in the data section */
    const void *data;
    size_t nbytes;
} sp_gguf_tensor;

typedef struct sp_gguf sp_gguf;

/* Maps path read-only and parses it. Missing or unreadable: SPRIG_E_IO naming
 * the path; malformed: SPRIG_E_FORMAT. The caller owns *out (sp_gguf_close). */
SP_GGUF_INTERNAL sprig_status sp_gguf_open(const char *path, sp_gguf **out);
/* Parses a whole file already in memory (tests, fuzzing); buf is borrowed and
 * must outlive the result. label names it in messages. */
sprig_status sp_gguf_parse(const void *buf, size_t size, const char *label, sp_gguf **out);
void sp_gguf_close(sp_gguf *g);

SP_GGUF_INTERNAL const char *sp_gguf_label(const sp_gguf *g);
uint32_t sp_gguf_version(const sp_gguf *g);
size_t sp_gguf_alignment(const sp_gguf *g);

SP_GGUF_INTERNAL size_t sp_gguf_n_kv(const sp_gguf *g);
SP_GGUF_INTERNAL const sp_gguf_kv *sp_gguf_kv_at(const sp_gguf *g, size_t i);           /* file order */
const sp_gguf_kv *sp_gguf_find_kv(const sp_gguf *g, const char *key);  /* or NULL */

size_t sp_gguf_n_tensors(const sp_gguf *g);
SP_GGUF_INTERNAL const sp_gguf_tensor *sp_gguf_tensor_at(const sp_gguf *g, size_t i);   /* file order */
const sp_gguf_tensor *sp_gguf_find_tensor(const sp_gguf *g, const char *name);

/* Typed metadata lookups for loaders. Each: SPRIG_E_FORMAT naming the file and
 * key when the key is missing (required) or has the wrong type/range;
 * an absent optional key leaves *out as it is and returns SPRIG_OK.
 * get_int accepts any integer type whose value fits; get_double F32/F64 and
 * integers; get_str a string (copied, NUL-terminated, into buf; a string that
 * does not fit or holds a NUL is an error). */
sprig_status sp_gguf_get_int(const sp_gguf *g, const char *key, int required, int64_t lo, int64_t hi,
                             int64_t *out);
sprig_status sp_gguf_get_double(const sp_gguf *g, const char *key, int required, double *out);
sprig_status sp_gguf_get_str(const sp_gguf *g, const char *key, int required, char *buf, size_t cap);

/* Element i of a numeric array as an integer / double (i < kv->n). */
int64_t sp_gguf_arr_int(const sp_gguf_kv *kv, uint64_t i);
SP_GGUF_INTERNAL double sp_gguf_arr_double(const sp_gguf_kv *kv, uint64_t i);

/* "F32", "Q4_K", ... for a ggml type; "unknown" past the table. */
SP_GGUF_INTERNAL const char *sp_ggml_type_name(uint32_t type);
/* Elements per block and bytes per block; 0 for a type ggml does not define. */
size_t sp_ggml_block_elems(uint32_t type);
size_t sp_ggml_block_bytes(uint32_t type);
SP_GGUF_INTERNAL const char *sp_gguf_vtype_name(uint32_t vtype);

/* ---- dequantization (gguf_dequant.c) -------------------------------------------
 * 1 when sprig can dequantize the type: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K. */
SP_GGUF_INTERNAL int sp_gguf_can_dequantize(uint32_t type);
/* n elements (a multiple of the type's block size) of type at src -> dst, fp32.
 * The arithmetic is ggml's and gguf-py's, in their order, so the values are
 * bit-identical to theirs. An unsupported type: SPRIG_E_FORMAT naming it. */
sprig_status sp_gguf_dequantize(uint32_t type, const void *src, size_t n, float *dst);

/* ---- a LLaMA-architecture GGUF as a model (gguf_model.c) -------------------------
 * general.architecture must be "llama". The config comes from the llama.*
 * keys and the tokenizer's (vocab size: tokenizer.ggml.tokens, else
 * llama.vocab_size; bos/eos: tokenizer.ggml.bos_token_id / eos_token_id; tied
 * embeddings when output.weight is absent). Tensors get their Hugging Face
 * names (token_embd -> model.embed_tokens, blk.N.attn_q -> model.layers.N.
 * self_attn.q_proj, ...) and shapes (ne reversed). F32/F16/BF16 tensors point
 * into the mapping, as a safetensors file's do; quantized ones are dequantized
 * to owned F32 (exact: an fp16 copy would round Q4_1's d*q+m again, and the
 * GPU backend converts to its compute type at upload anyway); q_proj/k_proj
 * are owned F32 with llama.cpp's RoPE row permutation undone. A tensor of a
 * type sprig cannot dequantize, or with a name it does not know, is refused
 * naming both. */
typedef struct sp_gguf_model sp_gguf_model;

/* 1 when path is a regular file that is a GGUF file: its name ends in .gguf
 * or it starts with the GGUF magic (so a damaged .gguf still gets GGUF errors). */
int sp_gguf_is_file(const char *path);
/* The model config a llama GGUF file implies (its metadata only: nothing is
 * dequantized), as sp_model_open would build it; for commands that need only
 * the shapes (sprig tune/analyze --model-dir). */
sprig_status sp_gguf_config(const char *path, sp_model_config *cfg);
/* Opens path and fills *cfg (validated like config.json; rope scaling none;
 * no LTE, no slicing). The caller owns *out (sp_gguf_model_close). */
SP_GGUF_INTERNAL sprig_status sp_gguf_model_open(const char *path, sp_model_config *cfg, sp_gguf_model **out);
SP_GGUF_INTERNAL void sp_gguf_model_close(sp_gguf_model *m);
/* The mapped tensors in name order (HF names). */
SP_GGUF_INTERNAL size_t sp_gguf_model_count(const sp_gguf_model *m);
SP_GGUF_INTERNAL const sp_tensor *sp_gguf_model_tensor(const sp_gguf_model *m, size_t i);
/* The parsed file underneath (for the tokenizer's metadata). */
SP_GGUF_INTERNAL const sp_gguf *sp_gguf_model_file(const sp_gguf_model *m);

/* ---- the tokenizer (gguf_tokenizer.c) ------------------------------------------------
 * From tokenizer.ggml.*: model "gpt2" (byte-level BPE: tokens, merges) with
 * tokenizer.ggml.pre naming the pre-tokenizer ("default"/"gpt2": GPT-2's
 * regex; "smollm": single digits, then GPT-2's; "llama-bpe" and the LLaMA-3
 * family: LLaMA-3's split; "qwen2": NFC and Qwen2's split); token_type 3
 * (control) tokens become special added tokens, 4 (user-defined) plain added
 * ones; add_bos_token adds a BOS template. Written as the tokenizer.json that
 * structure has in Hugging Face's format and opened by sp_tok_open_json.
 * Model "llama" (SentencePiece, merges implied by scores) and unknown
 * pre-tokenizers are refused naming them. */
sprig_status sp_gguf_tokenizer(const char *gguf_path, sp_tokenizer **out);
SP_GGUF_INTERNAL sprig_status sp_gguf_tokenizer_from(const sp_gguf *g, sp_tokenizer **out);
/* The synthesized tokenizer.json text (malloc'ed, caller frees). */
SP_GGUF_INTERNAL sprig_status sp_gguf_tokenizer_json(const sp_gguf *g, char **json);

#pragma GCC visibility pop
#endif

/* Internals shared by model/tokenizer.c (the pipeline: added tokens,
 * normalizer, pre-tokenizer, post-processor, decoder) and
 * model/tokenizer_bpe.c (string arena, hash maps, UTF-8, the BPE model) and
 * model/tokenizer_nfc.c (the NFC normalizer).
 * Not part of any public interface. */
#ifndef SP_TOK_INTERNAL_H
#define SP_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sprig.h"

/* Largest token id accepted from a file: far above any LLaMA vocabulary
 * (128256), low enough that id-indexed tables cannot be made absurdly large. */
#define SP_TOK_MAX_ID (1 << 24)

/* ---- string arena: stable, NUL-terminated copies freed all at once ---------- */
typedef struct sp_tk_arena_block sp_tk_arena_block;
typedef struct sp_tk_arena {
    sp_tk_arena_block *head;
} sp_tk_arena;

/* Copies len bytes of s plus a NUL; NULL when out of memory. */
char *sp_tk_arena_strdup(sp_tk_arena *a, const char *s, size_t len);
void sp_tk_arena_free(sp_tk_arena *a);

/* ---- growable byte buffer and id list ------------------------------------- */
typedef struct sp_tk_buf {
    char *data;
    size_t len, cap;
} sp_tk_buf;

sprig_status sp_tk_buf_append(sp_tk_buf *b, const void *p, size_t n);
void sp_tk_buf_free(sp_tk_buf *b);

typedef struct sp_tk_ids {
    int32_t *v;
    size_t n, cap;
} sp_tk_ids;

sprig_status sp_tk_ids_push(sp_tk_ids *ids, int32_t id);

/* ---- string -> id hash map (keys are borrowed and must outlive the map) ----- */
typedef struct sp_tk_strslot sp_tk_strslot;
typedef struct sp_tk_strmap {
    sp_tk_strslot *slots;
    size_t mask, n;
} sp_tk_strmap;

sprig_status sp_tk_strmap_init(sp_tk_strmap *m, size_t expected);
/* Inserts or overwrites (a later duplicate wins, as in the reference's maps). */
sprig_status sp_tk_strmap_put(sp_tk_strmap *m, const char *s, size_t len, int32_t id);
/* The id for s, or -1. */
int32_t sp_tk_strmap_get(const sp_tk_strmap *m, const char *s, size_t len);
void sp_tk_strmap_free(sp_tk_strmap *m);

/* ---- UTF-8 ----------------------------------------------------------------- */
#define SP_TK_UTF8_INVALID (-1)   /* *adv = length of the maximal invalid subpart (>= 1) */
#define SP_TK_UTF8_TRUNCATED (-2) /* a valid prefix cut off by the end of the buffer; *adv = n */

/* Decodes the character at s (n > 0 bytes available): its code point, or one
 * of the codes above. "Maximal subpart" follows Unicode 3.9 / Table 3-7, the
 * policy of Rust's from_utf8_lossy and Python's errors="replace". */
int32_t sp_tk_utf8_next(const unsigned char *s, size_t n, size_t *adv);
/* Writes cp as UTF-8 (1..4 bytes) and returns the length. */
size_t sp_tk_utf8_put(uint32_t cp, char *out);
/* Appends s to out with every maximal invalid subpart replaced by U+FFFD;
 * a truncated sequence at the end is one subpart too. */
sprig_status sp_tk_utf8_lossy(const char *s, size_t n, sp_tk_buf *out);
/* 1 when s is entirely valid UTF-8 (nothing truncated). */
int sp_tk_utf8_valid(const char *s, size_t n);

/* ---- normalization (tokenizer_nfc.c, utf8proc) ------------------------------- */

/* Writes the NFC form of s (n bytes of valid UTF-8) into out, replacing what
 * out held (out->len is reset). */
sprig_status sp_tk_nfc(const char *s, size_t n, sp_tk_buf *out);

/* ---- the BPE model ---------------------------------------------------------- */
typedef struct sp_tk_merge_slot sp_tk_merge_slot;
typedef struct sp_tk_bpe {
    sp_tk_strmap vocab;        /* token text -> id; keys live in the arena */
    size_t vocab_count;     /* number of entries (what the reference calls the vocab size) */
    int32_t id_end;         /* 1 + the largest id in vocab */
    const char **id_text;   /* [id_end] token text by id, NULL for holes */
    uint32_t *id_len;       /* [id_end] */
    sp_tk_merge_slot *merges;  /* (left id, right id) -> (rank, merged id) */
    size_t merge_mask, n_merges;
    int32_t unk_id;         /* -1 when there is no unk token, -2 when it names no vocab entry */
    const char *unk_text;
    int fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_ids[256];  /* id of "<0xAB>" for each byte, -1 when absent */
} sp_tk_bpe;

/* Reads a `model` object of type BPE. Unsupported options are SPRIG_E_FORMAT
 * "unsupported tokenizer: ..."; strings are copied into arena. On failure the
 * partly built model must still be released with sp_tk_bpe_free. */
sprig_status sp_tk_bpe_load(sp_tk_bpe *m, const cJSON *model, sp_tk_arena *arena, const char *label);
void sp_tk_bpe_free(sp_tk_bpe *m);

/* Work arrays reused across words of one encode call. */
typedef struct sp_tk_bpe_scratch {
    void *syms;
    size_t syms_cap;
    void *heap;
    size_t heap_cap;
} sp_tk_bpe_scratch;

/* Appends the ids of one pre-tokenized word (valid UTF-8, len > 0). */
sprig_status sp_tk_bpe_encode_word(const sp_tk_bpe *m, const char *w, size_t len, sp_tk_bpe_scratch *s,
                                sp_tk_ids *out);
void sp_tk_bpe_scratch_free(sp_tk_bpe_scratch *s);

#endif

/* Tokenizer for LLaMA-family models, read from a Hugging Face tokenizer.json.
 *
 * These families are supported, and results match the Hugging Face `tokenizers`
 * library id for id (tests/test_tokenizer.c checks it against fixtures the
 * library produced, tools/make_tokenizer_fixtures.py):
 *   - LLaMA-2 / SentencePiece-style BPE: byte_fallback, the normalizer
 *     Sequence[Prepend("▁"), Replace(" ", "▁")] (or, as newer converters write
 *     it, the pre-tokenizer Metaspace(prepend_scheme "first"|"always"|"never",
 *     split false)), the decoder Sequence[Replace("▁", " "), ByteFallback,
 *     Fuse, Strip(" ", n, 0)].
 *   - LLaMA-3 / byte-level BPE: the pre-tokenizer Sequence[Split(Regex, Isolated),
 *     ByteLevel(add_prefix_space false, use_regex false)] with the regex run by
 *     PCRE2 (UTF + UCP), ignore_merges, decoder ByteLevel.
 *   - GPT-2-style byte-level BPE (GPT-2, SmolLM/SmolLM2, StarCoder): the
 *     pre-tokenizer ByteLevel(use_regex true, add_prefix_space true or false),
 *     alone or in a Sequence, optionally after Digits (StarCoder); GPT-2's
 *     pattern then splits the text (case-sensitive contractions), and
 *     add_prefix_space puts a space before every piece not starting with one
 *     (every stretch between added tokens, as the reference does).
 *   - Qwen2 / Qwen2.5: the normalizer NFC (by utf8proc) and the LLaMA-3
 *     layout with Qwen's pattern.
 * All: added tokens (matched verbatim, leftmost-longest, before BPE; with
 * normalized=true matched after normalization), TemplateProcessing (BOS).
 * Anything else in the file is SPRIG_E_FORMAT "unsupported tokenizer: <what>".
 *
 * Known differences from the reference:
 *   - The reference runs regexes with Oniguruma (Unicode 16 tables in
 *     tokenizers 0.23); PCRE2 10.42 has Unicode 14. Characters assigned since
 *     (about 9,300, most of them CJK Extension H, U+31350..U+323AF) are not
 *     \p{L} here and may split differently. \s is rewritten to Oniguruma's
 *     set (PCRE2's alone would also match U+180E).
 *   - NFC comes from utf8proc (Unicode 15 in Debian 12's 2.8); the reference
 *     uses the unicode-normalization-alignments crate. Both follow the stable
 *     composition rules, so they can differ only on characters one of them
 *     does not know yet. Falcon's Punctuation pre-tokenizer and the other
 *     normalizers (NFKC, NFD, Lowercase, ...) are refused.
 *   - decode(skip_special) skips special tokens by id. tokenizers 0.23 fails
 *     to skip special added tokens marked normalized=true (it looks up their
 *     normalized form, "▁<s>"); everything else agrees with it.
 *
 * A tokenizer is immutable after sp_tok_open: encode, decode and the lookups
 * may run concurrently from several threads on one tokenizer; a stream
 * belongs to one thread. */
#ifndef SP_TOKENIZER_H
#define SP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_tokenizer sp_tokenizer;

/* Reads tokenizer.json at path. Missing/unreadable file: SPRIG_E_IO; not JSON,
 * malformed or unsupported: SPRIG_E_FORMAT naming the path and what is wrong.
 * On success *out is owned by the caller (sp_tok_close); on failure NULL. */
sprig_status sp_tok_open(const char *path, sp_tokenizer **out);
/* The same from a JSON text in memory (borrowed, len bytes); label names it in messages. */
sprig_status sp_tok_open_json(const char *json, size_t len, const char *label, sp_tokenizer **out);
void sp_tok_close(sp_tokenizer *tok);

/* 1 + the largest id of the model vocab and the added tokens. */
int32_t sp_tok_n_ids(const sp_tokenizer *tok);
/* "sentencepiece-bpe" or "byte-level-bpe" (from the decoder: LLaMA-3, GPT-2,
 * SmolLM2 and Qwen2 are all byte-level). */
const char *sp_tok_kind(const sp_tokenizer *tok);
/* The token the post-processor puts first (LLaMA: <s> / <|begin_of_text|>),
 * else an added token named <s> or <|begin_of_text|>; -1 if none. */
int32_t sp_tok_bos_id(const sp_tokenizer *tok);
/* An added token named </s>, else <|end_of_text|>, else <|endoftext|>
 * (GPT-2, SmolLM, Qwen2); -1 if none. tokenizer.json
 * does not say which token ends generation: config.json's eos_token_id (which
 * may list several, e.g. LLaMA-3-Instruct's <|eot_id|>) takes precedence. */
int32_t sp_tok_eos_id(const sp_tokenizer *tok);
/* The id of a token given its exact text (added tokens first, then the model
 * vocab, as the reference does), or -1. */
int32_t sp_tok_find(const sp_tokenizer *tok, const char *text);
/* The token's text as stored in the vocab ("▁the", "Ġthe", "<0x0A>",
 * "<|eot_id|>"); NULL for an id out of range or unused. Valid until close. */
const char *sp_tok_text(const sp_tokenizer *tok, int32_t id);
/* 1 for added tokens marked special (skipped by decode with skip_special). */
int sp_tok_is_special(const sp_tokenizer *tok, int32_t id);

/* Encodes len bytes of text (need not be NUL-terminated). add_special applies
 * the post-processor's template (LLaMA: prepends BOS), as the reference's
 * encode(text, add_special_tokens=True). Added tokens written in the text
 * ("<|eot_id|>", "<s>") become their ids, as in the reference.
 * Invalid UTF-8 is not an error: each maximal invalid subsequence is replaced
 * by U+FFFD first (what Python's bytes.decode(errors="replace") gives).
 * *ids is malloc'ed and owned by the caller (free); *n_ids may be 0. */
sprig_status sp_tok_encode(const sp_tokenizer *tok, const char *text, size_t len, int add_special,
                           int32_t **ids, size_t *n_ids);

/* Decodes ids to UTF-8, as the reference's decode(ids, skip_special_tokens).
 * Ids that name no token are ignored (so does the reference). LLaMA-2: the
 * first leading space of the text is removed (the decoder's Strip); byte
 * tokens that do not form valid UTF-8 become U+FFFD, one per byte. LLaMA-3:
 * invalid byte sequences become U+FFFD per maximal invalid subpart. *text is
 * malloc'ed, NUL-terminated, owned by the caller; *len excludes the NUL. */
sprig_status sp_tok_decode(const sp_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                           char **text, size_t *len);

/* Streaming decode for generation: push one id at a time and print what comes
 * back. The concatenation of everything returned by push and finish equals
 * sp_tok_decode of the same ids, byte for byte; every piece returned is valid
 * UTF-8. Bytes that may still combine with later tokens are held back: an
 * incomplete UTF-8 character (byte-level), or a run of byte-fallback tokens
 * (<0xE4><0xBD><0xA0>), which the reference decodes as a whole. */
typedef struct sp_tok_stream sp_tok_stream;

/* tok is borrowed and must outlive the stream. */
sprig_status sp_tok_stream_open(const sp_tokenizer *tok, int skip_special, sp_tok_stream **out);
/* *text (NUL-terminated, *len bytes, possibly 0) stays valid until the next call on s. */
sprig_status sp_tok_stream_push(sp_tok_stream *s, int32_t id, const char **text, size_t *len);
/* Emits whatever was held back; the stream can then start a new text. */
sprig_status sp_tok_stream_finish(sp_tok_stream *s, const char **text, size_t *len);
void sp_tok_stream_close(sp_tok_stream *s);

#pragma GCC visibility pop
#endif

/* Chat plumbing shared by `sprig run --chat` and `sprig chat`: the folder's
 * (or a given) chat template, rendering a conversation to token ids, and the
 * tokens that end an assistant turn. */
#ifndef CLI_CHAT_H
#define CLI_CHAT_H

#include <stddef.h>
#include <stdio.h>

#include "sp_chat_template.h"
#include "sp_model_config.h"
#include "sp_tokenizer.h"

#define CLI_CHAT_MAX_STOP (SP_MAX_EOS + 8)

typedef struct cli_chat {
    sp_chat_template *tmpl;
    sp_chat_source src;
    const char *bos, *eos;   /* the template's bos_token/eos_token (config, else the tokenizer's) */
    const sp_tokenizer *tok;
    int stop[CLI_CHAT_MAX_STOP];
    int n_stop;
} cli_chat;

/* Loads the template (template_file if given, else the folder's) and works
 * out the stop tokens: config.json's eos ids, the tokenizer's EOS, and the
 * special tokens the template writes after an assistant message (LLaMA-3's
 * <|eot_id|>, ChatML's <|im_end|>). Prints why and returns nonzero on failure. */
int cli_chat_open(cli_chat *c, const char *cmd, const char *dir, const char *template_file, const sp_tokenizer *tok,
                  const sp_model_config *cfg);
void cli_chat_close(cli_chat *c);

/* The conversation rendered with add_generation_prompt and tokenized as
 * transformers' apply_chat_template(tokenize=True) does: without adding
 * special tokens (the template writes BOS itself where the model wants it).
 * *ids is malloc'ed. Prints why and returns nonzero on failure. */
int cli_chat_tokens(cli_chat *c, const char *cmd, const sp_chat_msg *m, size_t n, int **ids, int *n_ids);

/* A conversation from a JSON file: [{"role": ..., "content": ...}, ...].
 * *msgs and *store are malloc'ed (free both). */
int cli_chat_read_messages(const char *cmd, const char *path, sp_chat_msg **msgs, size_t *n, void **store);

/* Writes s as a JSON string literal (quotes included) to f. */
void cli_json_string(FILE *f, const char *s, size_t n);

#endif

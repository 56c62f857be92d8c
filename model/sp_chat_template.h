/* Chat templates: the Jinja subset that models' chat templates use, rendered
 * as Hugging Face transformers' apply_chat_template renders them.
 *
 * No maintained C/C++ Jinja engine is packaged for Debian, so sprig carries
 * its own. It mirrors transformers' environment: trim_blocks, lstrip_blocks,
 * `{%-`/`-%}` whitespace control, raise_exception(msg), strftime_now(fmt),
 * namespace(...), a tojson that does not escape HTML (ensure_ascii off), and
 * the variables messages, add_generation_prompt, tools = documents = none,
 * bos_token and eos_token. Supported: text, {{ expr }}, {# #}, if/elif/else,
 * for (tuple targets, `if` filter, loop.index/index0/first/last/length/
 * revindex, break/continue), set (names and namespace attributes),
 * generation blocks (rendered through); expressions with Python semantics
 * (+ - * / // % ~, comparisons, and/or/not, in, is [not] <test>, a if c else
 * b, literals, attribute/item access, slices, negative indices); the filters
 * and methods the common templates call (trim, length, upper, lower, tojson,
 * string, list, join, items, first, last, default, selectattr/rejectattr,
 * select/reject, replace, strip/split/startswith/...). tests/fixtures/chat/
 * holds LLaMA-2, LLaMA-3/3.1, ChatML, SmolLM2, Qwen2.5 and Mistral
 * v0.1/v0.3 templates with transformers' output, matched byte for byte.
 * Anything else (macros, call blocks, includes, block set) is refused with a
 * one-line error naming the line.
 *
 * Errors: a template that does not parse is SPRIG_E_FORMAT; one that fails
 * while rendering (raise_exception, a type error, the size limits) is
 * SPRIG_E_TEMPLATE; both name the label and the template line. */
#ifndef SP_CHAT_TEMPLATE_H
#define SP_CHAT_TEMPLATE_H

#include <stddef.h>

#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_chat_template sp_chat_template;

typedef struct sp_chat_msg {
    const char *role;     /* "system", "user", "assistant", ... */
    const char *content;  /* UTF-8 text */
} sp_chat_msg;

typedef struct sp_chat_vars {
    const char *bos_token, *eos_token; /* NULL: undefined in the template */
    int add_generation_prompt;
} sp_chat_vars;

/* Parses len bytes of template text (need not be NUL-terminated; GGUF's
 * tokenizer.chat_template goes here too). label names it in messages. */
sprig_status sp_chat_template_parse(const char *text, size_t len, const char *label, sp_chat_template **out);
void sp_chat_template_free(sp_chat_template *t);

/* Renders messages[0..n). *out is malloc'ed, NUL-terminated, owned by the
 * caller; *len excludes the NUL. */
sprig_status sp_chat_template_render(const sp_chat_template *t, const sp_chat_msg *messages, size_t n,
                                     const sp_chat_vars *vars, char **out, size_t *len);

/* Where a model folder's chat template comes from: chat_template.jinja, else
 * tokenizer_config.json's "chat_template" (a string, or a list of {name,
 * template} of which the one named "default"); bos_token/eos_token from
 * tokenizer_config.json (a string or an {"content": ...} object) when it has
 * them. A folder with neither is SPRIG_E_IO naming both files. */
typedef struct sp_chat_source {
    char *text;                   /* the template */
    char *bos_token, *eos_token;  /* NULL when not given */
    char *origin;                 /* the file it came from, for messages */
} sp_chat_source;

/* dir may also be a GGUF file: its tokenizer.chat_template, and BOS/EOS as
 * its vocabulary spells tokenizer.ggml.bos_token_id / eos_token_id. */
sprig_status sp_chat_source_load(const char *dir, sp_chat_source *out);
void sp_chat_source_free(sp_chat_source *s);

#pragma GCC visibility pop
#endif

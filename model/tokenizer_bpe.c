/* The BPE model of a Hugging Face tokenizer.json, plus the small containers
 * the tokenizer needs (arena, hash maps, UTF-8). The merge loop is a port of
 * the `tokenizers` library's Word::merge_all so results match it exactly,
 * including its tie-breaking: the lowest merge rank first, then the leftmost
 * position. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "sp_error.h"
#include "tokenizer_internal.h"

/* ---- arena ------------------------------------------------------------------ */

struct sp_tk_arena_block {
    sp_tk_arena_block *next;
    size_t used, cap;
    char data[];
};

#define TKB_ARENA_BLOCK ((size_t)1 << 20)

char *sp_tk_arena_strdup(sp_tk_arena *a, const char *s, size_t len) {
    sp_tk_arena_block *b = a->head;
    if (!b || b->cap - b->used < len + 1) {
        size_t cap = len + 1 > TKB_ARENA_BLOCK ? len + 1 : TKB_ARENA_BLOCK;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    char *p = b->data + b->used;
    if (len) memcpy(p, s, len);
    p[len] = '\0';
    b->used += len + 1;
    return p;
}

void sp_tk_arena_free(sp_tk_arena *a) {
    while (a->head) {
        sp_tk_arena_block *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

/* ---- buffers ------------------------------------------------------------------ */

sprig_status sp_tk_buf_append(sp_tk_buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        SP_CHECK_ALLOC(d);
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0'; /* always NUL-terminated for callers that print it */
    return SPRIG_OK;
}

void sp_tk_buf_free(sp_tk_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

sprig_status sp_tk_ids_push(sp_tk_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        SP_CHECK_ALLOC(v);
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return SPRIG_OK;
}

/* ---- string map (open addressing, linear probing) ------------------------------ */

struct sp_tk_strslot {
    const char *s; /* NULL: empty slot */
    uint32_t len;
    int32_t id;
};

static size_t tkb_pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

sprig_status sp_tk_strmap_init(sp_tk_strmap *m, size_t expected) {
    size_t cap = tkb_pow2_at_least(expected * 2 + 1);
    m->slots = calloc(cap, sizeof *m->slots);
    SP_CHECK_ALLOC(m->slots);
    m->mask = cap - 1;
    m->n = 0;
    return SPRIG_OK;
}

static sprig_status tkb_strmap_grow(sp_tk_strmap *m) {
    sp_tk_strmap bigger;
    SP_TRY(sp_tk_strmap_init(&bigger, (m->mask + 1)));
    for (size_t i = 0; i <= m->mask; ++i)
        if (m->slots[i].s) {
            sprig_status st = sp_tk_strmap_put(&bigger, m->slots[i].s, m->slots[i].len, m->slots[i].id);
            if (st != SPRIG_OK) {
                sp_tk_strmap_free(&bigger);
                return st;
            }
        }
    free(m->slots);
    *m = bigger;
    return SPRIG_OK;
}

sprig_status sp_tk_strmap_put(sp_tk_strmap *m, const char *s, size_t len, int32_t id) {
    if ((m->n + 1) * 2 > m->mask + 1) SP_TRY(tkb_strmap_grow(m));
    size_t i = (size_t)XXH3_64bits(s, len) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        sp_tk_strslot *slot = &m->slots[i];
        if (!slot->s) {
            slot->s = s;
            slot->len = (uint32_t)len;
            slot->id = id;
            ++m->n;
            return SPRIG_OK;
        }
        if (slot->len == len && memcmp(slot->s, s, len) == 0) {
            slot->id = id;
            return SPRIG_OK;
        }
    }
}

int32_t sp_tk_strmap_get(const sp_tk_strmap *m, const char *s, size_t len) {
    if (!m->slots) return -1;
    size_t i = (size_t)XXH3_64bits(s, len) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        const sp_tk_strslot *slot = &m->slots[i];
        if (!slot->s) return -1;
        if (slot->len == len && memcmp(slot->s, s, len) == 0) return slot->id;
    }
}

void sp_tk_strmap_free(sp_tk_strmap *m) {
    free(m->slots);
    m->slots = NULL;
    m->mask = m->n = 0;
}

/* ---- UTF-8 ------------------------------------------------------------------------ */

int32_t sp_tk_utf8_next(const unsigned char *s, size_t n, size_t *adv) {
    unsigned c = s[0];
    if (c < 0x80) {
        *adv = 1;
        return (int32_t)c;
    }
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        cp = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        cp = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        *adv = 1;
        return SP_TK_UTF8_INVALID;
    }
    for (size_t k = 1; k <= need; ++k) {
        if (k >= n) {
            *adv = n;
            return SP_TK_UTF8_TRUNCATED;
        }
        unsigned b = s[k];
        unsigned blo = k == 1 ? lo : 0x80, bhi = k == 1 ? hi : 0xBF;
        if (b < blo || b > bhi) {
            *adv = k; /* the lead byte and the valid continuation bytes before b */
            return SP_TK_UTF8_INVALID;
        }
        cp = (cp << 6) | (b & 0x3F);
    }
    *adv = need + 1;
    return (int32_t)cp;
}

size_t sp_tk_utf8_put(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static const char tkb_replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

sprig_status sp_tk_utf8_lossy(const char *s, size_t n, sp_tk_buf *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: start of the pending valid stretch */
    while (i < n) {
        size_t adv;
        int32_t cp = sp_tk_utf8_next(u + i, n - i, &adv);
        if (cp >= 0) {
            i += adv;
            continue;
        }
        SP_TRY(sp_tk_buf_append(out, s + run, i - run));
        SP_TRY(sp_tk_buf_append(out, tkb_replacement, 3));
        i += adv;
        run = i;
    }
    return sp_tk_buf_append(out, s + run, n - run);
}

int sp_tk_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t adv;
        if (sp_tk_utf8_next(u + i, n - i, &adv) < 0) return 0;
        i += adv;
    }
    return 1;
}

/* ---- merges map: (left, right) -> (rank, merged id) ---------------------------------- */

struct sp_tk_merge_slot {
    uint64_t key; /* (left << 32 | right) + 1; 0 marks an empty slot */
    uint32_t rank;
    int32_t new_id;
};

static uint64_t tkb_pair_key(int32_t a, int32_t b) {
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
}

static size_t tkb_pair_hash(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key;
}

/* A later duplicate pair overwrites an earlier one, as collecting into the
 * reference's HashMap does. */
static void tkb_merge_put(sp_tk_bpe *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id) {
    uint64_t key = tkb_pair_key(a, b);
    for (size_t i = tkb_pair_hash(key) & m->merge_mask;; i = (i + 1) & m->merge_mask) {
        sp_tk_merge_slot *slot = &m->merges[i];
        if (slot->key == 0) ++m->n_merges;
        if (slot->key == 0 || slot->key == key) {
            slot->key = key;
            slot->rank = rank;
            slot->new_id = new_id;
            return;
        }
    }
}

static const sp_tk_merge_slot *tkb_merge_get(const sp_tk_bpe *m, int32_t a, int32_t b) {
    if (!m->merges) return NULL;
    uint64_t key = tkb_pair_key(a, b);
    for (size_t i = tkb_pair_hash(key) & m->merge_mask;; i = (i + 1) & m->merge_mask) {
        const sp_tk_merge_slot *slot = &m->merges[i];
        if (slot->key == key) return slot;
        if (slot->key == 0) return NULL;
    }
}

/* ---- loading ------------------------------------------------------------------------- */

static sprig_status tkb_unsupported(const char *what, const char *label) {
    return sp_fail(SPRIG_E_FORMAT, "%s: unsupported tokenizer: %s", label, what);
}

/* A JSON integer in [0, SP_TOK_MAX_ID). */
static int tkb_json_id(const cJSON *item, int32_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= 0 && v < SP_TOK_MAX_ID) || (double)(int32_t)v != v) return 0;
    *out = (int32_t)v;
    return 1;
}

/* Optional boolean member: absent or null -> def; anything else not a bool -> -1. */
static int tkb_json_flag(const cJSON *obj, const char *name, int def) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it || cJSON_IsNull(it)) return def;
    if (!cJSON_IsBool(it)) return -1;
    return cJSON_IsTrue(it) ? 1 : 0;
}

static sprig_status tkb_load_vocab(sp_tk_bpe *m, const cJSON *vocab, sp_tk_arena *arena, const char *label) {
    if (!cJSON_IsObject(vocab))
        return sp_fail(SPRIG_E_FORMAT, "%s: model.vocab is missing or not an object", label);
    size_t count = (size_t)cJSON_GetArraySize(vocab);
    SP_TRY(sp_tk_strmap_init(&m->vocab, count));
    int32_t id_end = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int32_t id;
        if (!e->string || !tkb_json_id(e, &id))
            return sp_fail(SPRIG_E_FORMAT, "%s: model.vocab entry \"%s\" has no valid id (an integer in [0, %d))",
                           label, e->string ? e->string : "?", SP_TOK_MAX_ID);
        size_t len = strlen(e->string);
        char *s = sp_tk_arena_strdup(arena, e->string, len);
        SP_CHECK_ALLOC(s);
        SP_TRY(sp_tk_strmap_put(&m->vocab, s, len, id));
        if (id + 1 > id_end) id_end = id + 1;
    }
    m->vocab_count = m->vocab.n;
    m->id_end = id_end;
    m->id_text = calloc(id_end ? (size_t)id_end : 1, sizeof *m->id_text);
    m->id_len = calloc(id_end ? (size_t)id_end : 1, sizeof *m->id_len);
    SP_CHECK_ALLOC(m->id_text);
    SP_CHECK_ALLOC(m->id_len);
    for (size_t i = 0; i <= m->vocab.mask; ++i) {
        const sp_tk_strslot *slot = &m->vocab.slots[i];
        if (!slot->s) continue;
        if (m->id_text[slot->id])
            return sp_fail(SPRIG_E_FORMAT, "%s: model.vocab gives id %d to both \"%s\" and \"%s\"", label,
                           (int)slot->id, m->id_text[slot->id], slot->s);
        m->id_text[slot->id] = slot->s;
        m->id_len[slot->id] = slot->len;
    }
    return SPRIG_OK;
}

/* One merge as two strings: "a b" (legacy, exactly one space) or ["a", "b"]. */
static int tkb_merge_parts(const cJSON *e, const char **a, size_t *alen, const char **b, size_t *blen) {
    if (cJSON_IsString(e)) {
        const char *s = e->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ')) return 0;
        *a = s;
        *alen = (size_t)(sp - s);
        *b = sp + 1;
        *blen = strlen(sp + 1);
        return 1;
    }
    if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2) {
        const cJSON *x = cJSON_GetArrayItem(e, 0), *y = cJSON_GetArrayItem(e, 1);
        if (!cJSON_IsString(x) || !cJSON_IsString(y)) return 0;
        *a = x->valuestring;
        *alen = strlen(x->valuestring);
        *b = y->valuestring;
        *blen = strlen(y->valuestring);
        return 1;
    }
    return 0;
}

static sprig_status tkb_load_merges(sp_tk_bpe *m, const cJSON *merges, const char *label) {
    if (!merges || cJSON_IsNull(merges)) return SPRIG_OK;
    if (!cJSON_IsArray(merges)) return sp_fail(SPRIG_E_FORMAT, "%s: model.merges is not an array", label);
    size_t n = (size_t)cJSON_GetArraySize(merges);
    size_t cap = tkb_pow2_at_least(n * 2 + 1);
    m->merges = calloc(cap, sizeof *m->merges);
    SP_CHECK_ALLOC(m->merges);
    m->merge_mask = cap - 1;
    char *joined = NULL;
    size_t joined_cap = 0;
    uint32_t rank = 0;
    const cJSON *e;
    sprig_status st = SPRIG_OK;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        size_t alen, blen;
        if (!tkb_merge_parts(e, &a, &alen, &b, &blen)) {
            st = sp_fail(SPRIG_E_FORMAT, "%s: model.merges[%u] is neither \"a b\" nor [\"a\", \"b\"]", label,
                         (unsigned)rank);
            break;
        }
        int32_t ia = sp_tk_strmap_get(&m->vocab, a, alen), ib = sp_tk_strmap_get(&m->vocab, b, blen);
        if (alen + blen > joined_cap) {
            joined_cap = (alen + blen) * 2 + 16;
            char *j = realloc(joined, joined_cap);
            if (!j) {
                st = sp_fail(SPRIG_E_NOMEM, "out of memory reading merges");
                break;
            }
            joined = j;
        }
        memcpy(joined, a, alen);
        memcpy(joined + alen, b, blen);
        int32_t inew = sp_tk_strmap_get(&m->vocab, joined, alen + blen);
        if (ia < 0 || ib < 0 || inew < 0) {
            st = sp_fail(SPRIG_E_FORMAT, "%s: model.merges[%u] (\"%.*s\" \"%.*s\"): \"%.*s\" is not in the vocab",
                         label, (unsigned)rank, (int)alen, a, (int)blen, b,
                         (int)(ia < 0 ? alen : ib < 0 ? blen : alen + blen),
                         ia < 0 ? a : ib < 0 ? b : joined);
            break;
        }
        tkb_merge_put(m, ia, ib, rank, inew);
        ++rank;
    }
    free(joined);
    return st;
}

sprig_status sp_tk_bpe_load(sp_tk_bpe *m, const cJSON *model, sp_tk_arena *arena, const char *label) {
    memset(m, 0, sizeof *m);
    m->unk_id = -1;
    for (int b = 0; b < 256; ++b) m->byte_ids[b] = -1;
    if (!cJSON_IsObject(model)) return sp_fail(SPRIG_E_FORMAT, "%s: \"model\" is missing or not an object", label);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsString(type)) return tkb_unsupported("model without a \"type\"", label);
    if (strcmp(type->valuestring, "BPE") != 0) {
        char what[96];
        snprintf(what, sizeof what, "model type \"%.40s\" (only BPE is supported)", type->valuestring);
        return tkb_unsupported(what, label);
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return tkb_unsupported("BPE dropout (tokenization would be random)", label);
    const char *affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; ++i) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(model, affix[i]);
        if (it && !cJSON_IsNull(it) && !(cJSON_IsString(it) && it->valuestring[0] == '\0')) {
            char what[64];
            snprintf(what, sizeof what, "BPE %s", affix[i]);
            return tkb_unsupported(what, label);
        }
    }
    m->fuse_unk = tkb_json_flag(model, "fuse_unk", 0);
    m->byte_fallback = tkb_json_flag(model, "byte_fallback", 0);
    m->ignore_merges = tkb_json_flag(model, "ignore_merges", 0);
    if (m->fuse_unk < 0 || m->byte_fallback < 0 || m->ignore_merges < 0)
        return sp_fail(SPRIG_E_FORMAT, "%s: model.fuse_unk, byte_fallback and ignore_merges must be booleans",
                       label);

    SP_TRY(tkb_load_vocab(m, cJSON_GetObjectItemCaseSensitive(model, "vocab"), arena, label));
    SP_TRY(tkb_load_merges(m, cJSON_GetObjectItemCaseSensitive(model, "merges"), label));

    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (unk && !cJSON_IsNull(unk)) {
        if (!cJSON_IsString(unk)) return sp_fail(SPRIG_E_FORMAT, "%s: model.unk_token is not a string", label);
        m->unk_text = sp_tk_arena_strdup(arena, unk->valuestring, strlen(unk->valuestring));
        SP_CHECK_ALLOC(m->unk_text);
        /* The reference fails only when an unknown character needs it. */
        int32_t id = sp_tk_strmap_get(&m->vocab, unk->valuestring, strlen(unk->valuestring));
        m->unk_id = id >= 0 ? id : -2;
    }
    for (int b = 0; b < 256; ++b) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_ids[b] = sp_tk_strmap_get(&m->vocab, name, 6);
    }
    return SPRIG_OK;
}

void sp_tk_bpe_free(sp_tk_bpe *m) {
    sp_tk_strmap_free(&m->vocab);
    free(m->id_text);
    free(m->id_len);
    free(m->merges);
    memset(m, 0, sizeof *m);
}

/* ---- encoding one word ----------------------------------------------------------------- */

typedef struct tkb_sym {
    int32_t c;          /* token id */
    int32_t prev, next; /* neighbours in the linked list, -1 at the ends */
    uint32_t len;       /* bytes covered; 0 once merged into the left neighbour */
} tkb_sym;

typedef struct tkb_merge {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
} tkb_merge;

typedef struct tkb_word {
    tkb_sym *sym;
    size_t n;
    tkb_merge *heap;
    size_t heap_n;
} tkb_word;

static int tkb_merge_less(const tkb_merge *a, const tkb_merge *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void tkb_heap_push(tkb_word *w, tkb_merge m) {
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!tkb_merge_less(&m, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = m;
}

static tkb_merge tkb_heap_pop(tkb_word *w) {
    tkb_merge top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const tkb_merge *bm = &last;
        if (l < n && tkb_merge_less(&w->heap[l], bm)) best = l, bm = &w->heap[l];
        if (r < n && tkb_merge_less(&w->heap[r], bm)) best = r;
        if (best == i) break;
        w->heap[i] = w->heap[best];
        i = best;
    }
    if (n) w->heap[i] = last;
    return top;
}

static void tkb_add(tkb_word *w, int32_t id, uint32_t len) {
    int32_t idx = (int32_t)w->n;
    if (w->n) w->sym[w->n - 1].next = idx;
    w->sym[w->n++] = (tkb_sym){id, idx - 1, -1, len};
}

/* Every merge can push at most two entries and the first pass one per pair,
 * so the heap never holds more than 3 * symbols. */
static sprig_status tkb_reserve(sp_tk_bpe_scratch *s, size_t nsym) {
    if (nsym > s->syms_cap) {
        void *p = realloc(s->syms, nsym * sizeof(tkb_sym));
        SP_CHECK_ALLOC(p);
        s->syms = p;
        s->syms_cap = nsym;
    }
    if (3 * nsym > s->heap_cap) {
        void *p = realloc(s->heap, 3 * nsym * sizeof(tkb_merge));
        SP_CHECK_ALLOC(p);
        s->heap = p;
        s->heap_cap = 3 * nsym;
    }
    return SPRIG_OK;
}

/* Splits w into characters, each its vocab id, its byte tokens (byte
 * fallback) or unk -- in the reference's order, which adds byte tokens
 * without first flushing a pending unk. */
static sprig_status tkb_initial_symbols(const sp_tk_bpe *m, const char *w, size_t len, tkb_word *word) {
    int32_t unk_id = -1;
    uint32_t unk_len = 0;
    int have_unk = 0;
    for (size_t i = 0; i < len;) {
        size_t clen;
        if (sp_tk_utf8_next((const unsigned char *)w + i, len - i, &clen) < 0) clen = 1; /* input is valid */
        int32_t id = sp_tk_strmap_get(&m->vocab, w + i, clen);
        if (id >= 0) {
            if (have_unk) tkb_add(word, unk_id, unk_len);
            have_unk = 0;
            tkb_add(word, id, (uint32_t)clen);
        } else {
            int all_bytes = m->byte_fallback;
            for (size_t k = 0; all_bytes && k < clen; ++k)
                all_bytes = m->byte_ids[(unsigned char)w[i + k]] >= 0;
            if (all_bytes) {
                for (size_t k = 0; k < clen; ++k) tkb_add(word, m->byte_ids[(unsigned char)w[i + k]], 1);
            } else if (m->unk_text) {
                if (m->unk_id < 0)
                    return sp_fail(SPRIG_E_FORMAT, "the unk token \"%s\" is not in the vocab", m->unk_text);
                if (have_unk && m->fuse_unk) {
                    unk_len += (uint32_t)clen;
                } else {
                    if (have_unk) tkb_add(word, unk_id, unk_len);
                    unk_id = m->unk_id;
                    unk_len = (uint32_t)clen;
                    have_unk = 1;
                }
            }
            /* no unk token and no byte fallback: the reference drops the character */
        }
        i += clen;
    }
    if (have_unk) tkb_add(word, unk_id, unk_len);
    return SPRIG_OK;
}

static void tkb_merge_all(const sp_tk_bpe *m, tkb_word *w) {
    for (size_t i = 0; i + 1 < w->n; ++i) {
        const sp_tk_merge_slot *mg = tkb_merge_get(m, w->sym[i].c, w->sym[i + 1].c);
        if (mg) tkb_heap_push(w, (tkb_merge){mg->rank, (uint32_t)i, mg->new_id});
    }
    while (w->heap_n) {
        tkb_merge top = tkb_heap_pop(w);
        tkb_sym *cur = &w->sym[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        int32_t next_pos = cur->next;
        tkb_sym right = w->sym[next_pos];
        const sp_tk_merge_slot *mg = tkb_merge_get(m, cur->c, right.c);
        if (!mg || mg->new_id != top.new_id) continue; /* a stale entry */
        cur->c = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        w->sym[next_pos].len = 0;
        if (right.next >= 0) w->sym[right.next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            mg = tkb_merge_get(m, w->sym[cur->prev].c, cur->c);
            if (mg) tkb_heap_push(w, (tkb_merge){mg->rank, (uint32_t)cur->prev, mg->new_id});
        }
        if (cur->next >= 0) {
            mg = tkb_merge_get(m, cur->c, w->sym[cur->next].c);
            if (mg) tkb_heap_push(w, (tkb_merge){mg->rank, top.pos, mg->new_id});
        }
    }
}

sprig_status sp_tk_bpe_encode_word(const sp_tk_bpe *m, const char *w, size_t len, sp_tk_bpe_scratch *s,
                                sp_tk_ids *out) {
    if (len == 0) return SPRIG_OK;
    if (m->ignore_merges) {
        int32_t id = sp_tk_strmap_get(&m->vocab, w, len);
        if (id >= 0) return sp_tk_ids_push(out, id);
    }
    /* Upper bound on symbols: one per byte. */
    SP_TRY(tkb_reserve(s, len));
    tkb_word word = {s->syms, 0, s->heap, 0};
    SP_TRY(tkb_initial_symbols(m, w, len, &word));
    tkb_merge_all(m, &word);
    for (size_t i = 0; i < word.n; ++i)
        if (word.sym[i].len) SP_TRY(sp_tk_ids_push(out, word.sym[i].c));
    return SPRIG_OK;
}

void sp_tk_bpe_scratch_free(sp_tk_bpe_scratch *s) {
    free(s->syms);
    free(s->heap);
    memset(s, 0, sizeof *s);
}

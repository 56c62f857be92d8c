/* The Jinja subset of chat templates (sp_chat_template.h says which).
 *
 * Three stages: the template is cut into text and tags with Jinja's
 * whitespace rules applied to the text (cut_template); each tag is lexed and
 * parsed into a tree (parse_*); rendering walks the tree over values with
 * Python's semantics (eval_*, exec_*).
 *
 * Memory: the tree lives in the template's arena and each render's values in
 * a render arena, both freed whole, so the evaluator never frees a value.
 * Errors unwind with longjmp to the entry point (parse or render), which
 * frees the arena: with values shared freely and no ownership, that is the
 * one exit that cannot leak. Limits (arena size, evaluation steps, nesting
 * depth) turn hostile templates into errors, not hangs or stack overflows. */
#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sp_chat_template.h"
#include "sp_error.h"

enum { ARENA_LIMIT = 256 << 20, MAX_STEPS = 2000000, MAX_DEPTH = 200, MAX_RANGE = 100000 };

/* --- arena -------------------------------------------------------------- */

typedef struct blk {
    struct blk *next;
    size_t used, cap;
    max_align_t data[];
} blk;

typedef struct arena {
    blk *head;
    size_t total;
} arena;

static void arena_free(arena *a) {
    for (blk *b = a->head, *n; b; b = n) n = b->next, free(b);
    a->head = NULL, a->total = 0;
}

/* NULL when over the limit or out of memory; the caller fails. */
static void *arena_get(arena *a, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!n) n = sizeof(max_align_t);
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (a->total + cap > ARENA_LIMIT) return NULL;
        blk *b = malloc(sizeof(blk) + cap);
        if (!b) return NULL;
        b->next = a->head, b->used = 0, b->cap = cap;
        a->head = b, a->total += cap;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

/* --- values ------------------------------------------------------------- */

typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_FUNC } vkind;

typedef struct list list;
typedef struct dict dict;

typedef struct value {
    vkind k;
    union {
        long long i; /* V_BOOL, V_INT */
        double f;
        struct {
            const char *s; /* V_STR, V_FUNC (its name) */
            size_t n;
        };
        list *l;
        dict *d;
    };
} value;

struct list {
    size_t n, cap;
    value *v;
};

struct dict {
    size_t n, cap;
    value *keys; /* V_STR */
    value *vals;
    int is_ns;   /* a namespace(): the one mutable object */
};

static const value UNDEF = {.k = V_UNDEF};
static const value NONE = {.k = V_NONE};

/* --- the shared context: errors, arena ------------------------------------ */

typedef struct ctx {
    jmp_buf jb;
    arena *ar;
    const char *label;
    sprig_status status;
    long steps;
    int depth;
} ctx;

static _Noreturn void failv(ctx *c, sprig_status st, int line, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* one line: a message from the template (raise_exception) may hold newlines */
    for (char *p = msg; *p; ++p)
        if (*p == '\n' || *p == '\r') *p = ' ';
    if (line > 0) sp_fail(st, "chat template %s, line %d: %s", c->label, line, msg);
    else sp_fail(st, "chat template %s: %s", c->label, msg);
    c->status = st;
    longjmp(c->jb, 1);
}

static _Noreturn __attribute__((format(printf, 4, 5))) void fail(ctx *c, sprig_status st, int line, const char *fmt,
                                                                  ...) {
    va_list ap;
    va_start(ap, fmt);
    failv(c, st, line, fmt, ap);
}

static void *cget(ctx *c, size_t n) {
    void *p = arena_get(c->ar, n);
    if (!p) fail(c, SPRIG_E_NOMEM, 0, "over the %d MiB memory limit", ARENA_LIMIT >> 20);
    return p;
}

static value vstr(ctx *c, const char *s, size_t n) {
    char *d = cget(c, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return (value){.k = V_STR, .s = d, .n = n};
}

static value vstr_borrow(const char *s, size_t n) { return (value){.k = V_STR, .s = s, .n = n}; }
static value vint(long long i) { return (value){.k = V_INT, .i = i}; }
static value vbool(int b) { return (value){.k = V_BOOL, .i = !!b}; }

static list *list_new(ctx *c, size_t cap) {
    list *l = cget(c, sizeof *l);
    l->n = 0, l->cap = cap ? cap : 4;
    l->v = cget(c, sizeof(value) * l->cap);
    return l;
}

static void list_push(ctx *c, list *l, value v) {
    if (l->n == l->cap) {
        value *g = cget(c, sizeof(value) * l->cap * 2);
        memcpy(g, l->v, sizeof(value) * l->n);
        l->v = g, l->cap *= 2;
    }
    l->v[l->n++] = v;
}

static dict *dict_new(ctx *c) {
    dict *d = cget(c, sizeof *d);
    memset(d, 0, sizeof *d);
    return d;
}

static int str_eq(value a, const char *s, size_t n) { return a.n == n && memcmp(a.s, s, n) == 0; }

static value *dict_find(const dict *d, const char *k, size_t n) {
    for (size_t i = 0; i < d->n; ++i)
        if (str_eq(d->keys[i], k, n)) return &d->vals[i];
    return NULL;
}

static void dict_set(ctx *c, dict *d, value k, value v) {
    value *slot = dict_find(d, k.s, k.n);
    if (slot) { *slot = v; return; }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 8;
        value *nk = cget(c, sizeof(value) * cap), *nv = cget(c, sizeof(value) * cap);
        if (d->n) memcpy(nk, d->keys, sizeof(value) * d->n), memcpy(nv, d->vals, sizeof(value) * d->n);
        d->keys = nk, d->vals = nv, d->cap = cap;
    }
    d->keys[d->n] = k, d->vals[d->n] = v, ++d->n;
}

static void dict_setc(ctx *c, dict *d, const char *k, value v) { dict_set(c, d, vstr_borrow(k, strlen(k)), v); }

static const char *type_name(value v) {
    static const char *names[] = {"undefined", "NoneType", "bool", "int", "float", "str", "list", "dict", "function"};
    return v.k == V_DICT && v.d->is_ns ? "Namespace" : names[v.k];
}

/* --- a growable byte buffer (the output, str() of values) ----------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void buf_put(ctx *c, buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        if (cap > ARENA_LIMIT) fail(c, SPRIG_E_NOMEM, 0, "the output is over %d MiB", ARENA_LIMIT >> 20);
        char *g = cget(c, cap);
        if (b->n) memcpy(g, b->p, b->n);
        b->p = g, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void buf_puts(ctx *c, buf *b, const char *s) { buf_put(c, b, s, strlen(s)); }

static void buf_printf(ctx *c, buf *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void buf_printf(ctx *c, buf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_put(c, b, tmp, (size_t)(n < (int)sizeof tmp ? n : (int)sizeof tmp - 1));
}

/* --- UTF-8: Python counts and slices strings by code point ---------------- */

static size_t utf8_len(const char *s, size_t n) {
    size_t cps = 0;
    for (size_t i = 0; i < n; ++i) cps += ((unsigned char)s[i] & 0xC0) != 0x80;
    return cps;
}

/* Byte offset of code point `cp` (clamped to n). */
static size_t utf8_offset(const char *s, size_t n, size_t cp) {
    size_t i = 0;
    while (i < n && cp) {
        ++i;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) ++i;
        --cp;
    }
    return i;
}

/* The code point at s[*i] (advancing *i); invalid bytes read as themselves. */
static unsigned utf8_next(const char *s, size_t n, size_t *i) {
    unsigned char b = (unsigned char)s[*i];
    int more = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : b >= 0xC0 ? 1 : 0;
    unsigned cp = more ? b & (0x3F >> more) : b;
    ++*i;
    for (int k = 0; k < more && *i < n && ((unsigned char)s[*i] & 0xC0) == 0x80; ++k, ++*i)
        cp = cp << 6 | ((unsigned char)s[*i] & 0x3F);
    return cp;
}

/* Python's str.isspace() for str.strip() and the trim filter. */
static int py_space(unsigned cp) {
    return (cp >= 9 && cp <= 13) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* Strips Python whitespace (chars NULL) or any of chars from the ends. */
static value str_strip(ctx *c, value s, const char *chars, size_t nchars, int left, int right) {
    size_t b = 0, e = s.n;
    for (;;) { /* left */
        if (!left || b >= e) break;
        size_t j = b;
        unsigned cp = utf8_next(s.s, e, &j);
        int hit = chars ? cp < 0x80 && memchr(chars, (int)cp, nchars) != NULL : py_space(cp);
        if (!hit) break;
        b = j;
    }
    while (right && e > b) {
        size_t start = e - 1;
        while (start > b && ((unsigned char)s.s[start] & 0xC0) == 0x80) --start;
        size_t j = start;
        unsigned cp = utf8_next(s.s, e, &j);
        int hit = chars ? cp < 0x80 && memchr(chars, (int)cp, nchars) != NULL : py_space(cp);
        if (!hit) break;
        e = start;
    }
    (void)c;
    return vstr_borrow(s.s + b, e - b);
}

/* --- the tree ------------------------------------------------------------- */

typedef enum {
    E_LIT, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NEG, E_NOT, E_BIN, E_AND, E_OR,
    E_COND, E_LIST, E_DICT
} ekind;

typedef struct expr expr;
struct expr {
    ekind k;
    int line, op, negate;  /* op: a binary operator's code; negate: `is not` */
    value lit;             /* E_LIT; the name of E_NAME/E_ATTR/E_FILTER/E_TEST/E_CALL methods */
    expr *a, *b, *c;       /* operands; E_SLICE: a[b:c] (NULL parts absent) */
    expr **args;           /* calls, filters, tests; E_LIST items; E_DICT keys,values alternating */
    value *kw;             /* per arg: its keyword (V_STR) or V_UNDEF for positional */
    int nargs;
};

typedef enum { N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_BREAK, N_CONTINUE } nkind;

typedef struct node node;
struct node {
    nkind k;
    int line;
    node *next;
    value text;            /* N_TEXT */
    expr *e;               /* N_OUT, N_IF condition, N_FOR iterable, N_SET value */
    expr *filter;          /* N_FOR's `if` */
    node *body, *orelse;   /* N_IF: then/else (elif is a nested N_IF); N_FOR: body/else */
    value names[2];        /* N_FOR targets (1 or 2); N_SET: name, attribute (V_UNDEF if none) */
    int nnames;
};

struct sp_chat_template {
    arena ar;
    node *root;
    char *label;
};

/* --- cutting the template into text and tags ------------------------------ */

typedef enum { S_TEXT, S_EXPR, S_STMT } skind;

typedef struct seg {
    skind k;
    const char *s; /* S_TEXT: the text after whitespace control; tags: their inside */
    size_t n;
    int line;
} seg;

typedef struct segs {
    seg *v;
    size_t n, cap;
} segs;

static void segs_push(ctx *c, segs *ss, seg s) {
    if (ss->n == ss->cap) {
        size_t cap = ss->cap ? 2 * ss->cap : 64;
        seg *g = cget(c, sizeof(seg) * cap);
        if (ss->n) memcpy(g, ss->v, sizeof(seg) * ss->n);
        ss->v = g, ss->cap = cap;
    }
    ss->v[ss->n++] = s;
}

static int line_at(const char *t, const char *p) {
    int line = 1;
    for (; t < p; ++t) line += *t == '\n';
    return line;
}

/* The end of a tag whose inside starts at p: the position of `close` outside
 * string literals and brackets (Jinja's lexer balances them, so the `}}` of
 * `{'a': {}}` closes a dict, not the tag), or NULL. Comments skip neither. */
static const char *find_close(const char *p, const char *end, const char *close, int code) {
    int depth = 0;
    while (p + 1 < end || (p < end && depth)) {
        if (code && (*p == '\'' || *p == '"')) {
            char q = *p++;
            while (p < end && *p != q) p += *p == '\\' && p + 1 < end ? 2 : 1;
            if (p >= end) return NULL;
            ++p;
            continue;
        }
        if (code && (*p == '(' || *p == '[' || *p == '{')) ++depth;
        else if (code && depth && (*p == ')' || *p == ']' || *p == '}')) --depth;
        else if (!depth && p + 1 < end && p[0] == close[0] && p[1] == close[1]) return p;
        ++p;
    }
    return NULL;
}

static int is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f'; }

/* Jinja's lexer rules, as transformers configures it: `{%-`/`{{-`/`{#-`
 * strip all whitespace before the tag and `-%}` etc. after it; lstrip_blocks
 * drops spaces and tabs between a line's start and a block or comment tag
 * (`{%+` keeps them); trim_blocks drops the first newline after a block or
 * comment tag (`+%}` keeps it); keep_trailing_newline is off, so one final
 * newline of the template goes. */
static void cut_template(ctx *c, const char *t, size_t len, segs *out) {
    const char *p = t, *end = t + len;
    int trim_next = 0, strip_next = 0;
    if (len && t[len - 1] == '\n') end -= (len >= 2 && t[len - 2] == '\r') ? 2 : 1;
    while (p < end) {
        const char *o = p;
        while (o + 1 < end && !(o[0] == '{' && (o[1] == '{' || o[1] == '%' || o[1] == '#'))) ++o;
        if (o + 1 >= end) o = end;
        const char *ts = p, *te = o;
        if (strip_next) while (ts < te && is_ws(*ts)) ++ts;
        else if (trim_next && ts < te) {
            if (*ts == '\n') ++ts;
            else if (*ts == '\r' && ts + 1 < te && ts[1] == '\n') ts += 2;
        }
        strip_next = trim_next = 0;
        if (o == end) {
            if (te > ts) segs_push(c, out, (seg){S_TEXT, ts, (size_t)(te - ts), line_at(t, ts)});
            break;
        }
        const char kind = o[1];
        const char mod = o + 2 < end ? o[2] : 0;
        if (mod == '-') {
            while (te > ts && is_ws(te[-1])) --te;
        } else if (mod != '+' && kind != '{') {
            /* lstrip_blocks: the text's last line, if only blanks and at a line start */
            const char *ls = te;
            while (ls > ts && ls[-1] != '\n') --ls;
            const int line_start = ls > ts || ts == t || (ts > p && ts[-1] == '\n');
            const char *q = ls;
            while (q < te && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\v' || *q == '\f')) ++q;
            if (line_start && q == te) te = ls;
        }
        if (te > ts) segs_push(c, out, (seg){S_TEXT, ts, (size_t)(te - ts), line_at(t, ts)});
        const char *body = o + 2 + (mod == '-' || mod == '+');
        const char *close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
        const char *ce = find_close(body, t + len, close, kind != '#');
        if (!ce) fail(c, SPRIG_E_FORMAT, line_at(t, o), "a tag opened here is not closed with '%s'", close);
        const char *inner_end = ce;
        const char close_mod = ce > body ? ce[-1] : 0;
        if (close_mod == '-' || close_mod == '+') --inner_end;
        strip_next = close_mod == '-';
        trim_next = kind != '{' && close_mod != '-' && close_mod != '+'; /* trim_blocks; '+%}' keeps the newline */
        if (kind != '#')
            segs_push(c, out, (seg){kind == '{' ? S_EXPR : S_STMT, body, (size_t)(inner_end - body), line_at(t, o)});
        p = ce + 2;
        if (p > end) p = end;
    }
}

/* --- lexing a tag ---------------------------------------------------------- */

typedef enum { T_END, T_NAME, T_STR, T_INT, T_FLOAT, T_OP } tkind;

typedef struct tok {
    tkind k;
    value v;   /* T_NAME/T_STR: the text (strings decoded); T_INT/T_FLOAT: the number */
    char op[3];
} tok;

typedef struct lexed {
    tok *t;
    size_t n, i;
    int line;
} lexed;

static void put_utf8(ctx *c, buf *b, unsigned cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) u[0] = (char)cp, n = 1;
    else if (cp < 0x800) u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 0x3F)), u[2] = (char)(0x80 | (cp >> 6 & 0x3F)),
        u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    buf_put(c, b, u, n);
}

static int hexval(char ch) {
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* A string literal with Python's escapes (Jinja decodes them so). */
static const char *lex_string(ctx *c, const char *p, const char *end, int line, value *out) {
    const char q = *p++;
    buf b = {0};
    buf_put(c, &b, "", 0);
    while (p < end && *p != q) {
        if (*p != '\\' || p + 1 >= end) { buf_put(c, &b, p++, 1); continue; }
        char e = p[1];
        p += 2;
        const char *simple = strchr("nrtbfav\\'\"0", e);
        if (e && simple) {
            static const char from[] = "nrtbfav\\'\"0", to[] = "\n\r\t\b\f\a\v\\'\"\0";
            buf_put(c, &b, &to[strchr(from, e) - from], 1);
        } else if (e == 'x' || e == 'u' || e == 'U') {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            unsigned cp = 0;
            for (int k = 0; k < digits; ++k, ++p) {
                int h = p < end ? hexval(*p) : -1;
                if (h < 0) fail(c, SPRIG_E_FORMAT, line, "a bad \\%c escape in a string literal", e);
                cp = cp << 4 | (unsigned)h;
            }
            if (cp > 0x10FFFF) fail(c, SPRIG_E_FORMAT, line, "a \\U escape beyond U+10FFFF");
            put_utf8(c, &b, cp);
        } else if (e == '\n') {
            /* a backslash-newline continues the line */
        } else {
            buf_put(c, &b, p - 2, 2); /* Python keeps unknown escapes as written */
        }
    }
    if (p >= end) fail(c, SPRIG_E_FORMAT, line, "a string literal is not closed");
    *out = (value){.k = V_STR, .s = b.p, .n = b.n};
    return p + 1;
}

static void lex(ctx *c, const char *s, size_t n, int line, lexed *out) {
    const char *p = s, *end = s + n;
    size_t cap = 16;
    out->t = cget(c, sizeof(tok) * cap), out->n = 0, out->i = 0, out->line = line;
    for (;;) {
        while (p < end && is_ws(*p)) ++p;
        if (out->n + 1 >= cap) {
            tok *g = cget(c, sizeof(tok) * cap * 2);
            memcpy(g, out->t, sizeof(tok) * out->n);
            out->t = g, cap *= 2;
        }
        tok *t = &out->t[out->n];
        memset(t, 0, sizeof *t);
        if (p >= end) { t->k = T_END; break; }
        ++out->n;
        if (isalpha((unsigned char)*p) || *p == '_') {
            const char *b = p;
            while (p < end && (isalnum((unsigned char)*p) || *p == '_')) ++p;
            t->k = T_NAME, t->v = vstr_borrow(b, (size_t)(p - b));
        } else if (isdigit((unsigned char)*p)) {
            const char *b = p;
            while (p < end && (isdigit((unsigned char)*p) || *p == '_')) ++p;
            int is_float = 0;
            if (p + 1 < end && *p == '.' && isdigit((unsigned char)p[1])) {
                is_float = 1, ++p;
                while (p < end && isdigit((unsigned char)*p)) ++p;
            }
            if (p < end && (*p == 'e' || *p == 'E')) { /* 1e3, 2.5E-1 */
                const char *q = p + 1;
                if (q < end && (*q == '+' || *q == '-')) ++q;
                if (q < end && isdigit((unsigned char)*q)) {
                    is_float = 1, p = q;
                    while (p < end && isdigit((unsigned char)*p)) ++p;
                }
            }
            char num[64];
            size_t k = 0;
            for (const char *q = b; q < p && k + 1 < sizeof num; ++q)
                if (*q != '_') num[k++] = *q;
            num[k] = 0;
            if (is_float) t->k = T_FLOAT, t->v = (value){.k = V_FLOAT, .f = strtod(num, NULL)};
            else t->k = T_INT, t->v = vint(strtoll(num, NULL, 10));
        } else if (*p == '\'' || *p == '"') {
            t->k = T_STR;
            p = lex_string(c, p, end, line, &t->v);
        } else {
            static const char *two[] = {"==", "!=", "<=", ">=", "//", "**"};
            t->k = T_OP;
            t->op[0] = *p;
            for (size_t k = 0; k < sizeof two / sizeof *two; ++k)
                if (p + 1 < end && p[0] == two[k][0] && p[1] == two[k][1]) t->op[1] = p[1];
            if (!*p || !strchr("+-*/%~()[]{}.,:|=<>!", *p) || (*p == '!' && !t->op[1]))
                fail(c, SPRIG_E_FORMAT, line, "unexpected character '%c'", *p);
            p += t->op[1] ? 2 : 1;
        }
    }
}

/* --- parsing expressions --------------------------------------------------- */

static tok *peek(lexed *L) { return &L->t[L->i]; }
static int is_op(const tok *t, const char *op) { return t->k == T_OP && !strcmp(t->op, op); }
static int is_kw(const tok *t, const char *kw) { return t->k == T_NAME && str_eq(t->v, kw, strlen(kw)); }

static int accept_op(lexed *L, const char *op) {
    if (!is_op(peek(L), op)) return 0;
    ++L->i;
    return 1;
}

static int accept_kw(lexed *L, const char *kw) {
    if (!is_kw(peek(L), kw)) return 0;
    ++L->i;
    return 1;
}

static const char *tok_desc(const tok *t) {
    return t->k == T_END ? "the end of the tag" : t->k == T_OP ? t->op : t->k == T_STR ? "a string" : t->k == T_NAME ? "a name" : "a number";
}

static void expect_op(ctx *c, lexed *L, const char *op) {
    if (!accept_op(L, op)) fail(c, SPRIG_E_FORMAT, L->line, "expected '%s', found %s", op, tok_desc(peek(L)));
}

static value expect_name(ctx *c, lexed *L) {
    tok *t = peek(L);
    if (t->k != T_NAME) fail(c, SPRIG_E_FORMAT, L->line, "expected a name, found %s", tok_desc(t));
    ++L->i;
    return t->v;
}

static expr *mk(ctx *c, ekind k, int line) {
    expr *e = cget(c, sizeof *e);
    memset(e, 0, sizeof *e);
    e->k = k, e->line = line;
    return e;
}

static expr *parse_expr(ctx *c, lexed *L);

static void enter(ctx *c, int line) {
    if (++c->depth > MAX_DEPTH) fail(c, SPRIG_E_FORMAT, line, "nested deeper than %d", MAX_DEPTH);
}

/* `( args )` after a call, filter or test: positional and name=value. */
static void parse_args(ctx *c, lexed *L, expr *e, const char *close) {
    size_t cap = 4;
    e->args = cget(c, sizeof(expr *) * cap), e->kw = cget(c, sizeof(value) * cap);
    while (!accept_op(L, close)) {
        if (e->nargs && !accept_op(L, ",")) fail(c, SPRIG_E_FORMAT, L->line, "expected ',' or '%s'", close);
        if (accept_op(L, close)) break;
        if ((size_t)e->nargs == cap) {
            expr **ga = cget(c, sizeof(expr *) * cap * 2);
            value *gk = cget(c, sizeof(value) * cap * 2);
            memcpy(ga, e->args, sizeof(expr *) * cap), memcpy(gk, e->kw, sizeof(value) * cap);
            e->args = ga, e->kw = gk, cap *= 2;
        }
        value kw = UNDEF;
        if (peek(L)->k == T_NAME && L->i + 1 < L->n && is_op(&L->t[L->i + 1], "=")) kw = peek(L)->v, L->i += 2;
        e->kw[e->nargs] = kw;
        e->args[e->nargs++] = parse_expr(c, L);
    }
}

static expr *parse_primary(ctx *c, lexed *L) {
    tok *t = peek(L);
    const int line = L->line;
    if (t->k == T_STR) {
        ++L->i;
        value v = t->v;
        while (peek(L)->k == T_STR) { /* adjacent literals join, as in Python */
            value w = peek(L)->v;
            ++L->i;
            buf b = {0};
            buf_put(c, &b, v.s, v.n), buf_put(c, &b, w.s, w.n);
            v = (value){.k = V_STR, .s = b.p, .n = b.n};
        }
        expr *e = mk(c, E_LIT, line);
        e->lit = v;
        return e;
    }
    if (t->k == T_INT || t->k == T_FLOAT) {
        ++L->i;
        expr *e = mk(c, E_LIT, line);
        e->lit = t->v;
        return e;
    }
    if (t->k == T_NAME) {
        ++L->i;
        expr *e = mk(c, E_LIT, line);
        if (is_kw(t, "true") || is_kw(t, "True")) e->lit = vbool(1);
        else if (is_kw(t, "false") || is_kw(t, "False")) e->lit = vbool(0);
        else if (is_kw(t, "none") || is_kw(t, "None")) e->lit = NONE;
        else e->k = E_NAME, e->lit = t->v;
        return e;
    }
    if (accept_op(L, "(")) {
        expr *first = parse_expr(c, L);
        if (accept_op(L, ")")) return first;
        expr *e = mk(c, E_LIST, line); /* a tuple: a list will do */
        size_t cap = 4;
        e->args = cget(c, sizeof(expr *) * cap);
        e->args[e->nargs++] = first;
        expect_op(c, L, ",");
        while (!accept_op(L, ")")) {
            if (e->nargs > 1) expect_op(c, L, ",");
            if (accept_op(L, ")")) break;
            if ((size_t)e->nargs == cap) {
                expr **g = cget(c, sizeof(expr *) * cap * 2);
                memcpy(g, e->args, sizeof(expr *) * cap);
                e->args = g, cap *= 2;
            }
            e->args[e->nargs++] = parse_expr(c, L);
        }
        return e;
    }
    if (accept_op(L, "[")) {
        expr *e = mk(c, E_LIST, line);
        parse_args(c, L, e, "]");
        return e;
    }
    if (accept_op(L, "{")) {
        expr *e = mk(c, E_DICT, line);
        size_t cap = 8;
        e->args = cget(c, sizeof(expr *) * cap);
        while (!accept_op(L, "}")) {
            if (e->nargs && !accept_op(L, ",")) fail(c, SPRIG_E_FORMAT, line, "expected ',' or '}' in a dict literal");
            if (accept_op(L, "}")) break;
            if ((size_t)e->nargs + 2 > cap) {
                expr **g = cget(c, sizeof(expr *) * cap * 2);
                memcpy(g, e->args, sizeof(expr *) * cap);
                e->args = g, cap *= 2;
            }
            e->args[e->nargs++] = parse_expr(c, L);
            expect_op(c, L, ":");
            e->args[e->nargs++] = parse_expr(c, L);
        }
        return e;
    }
    fail(c, SPRIG_E_FORMAT, line, "expected an expression, found %s", tok_desc(t));
}

/* .name, [index], [a:b], (args) */
static expr *parse_postfix(ctx *c, lexed *L, expr *e) {
    for (;;) {
        const int line = L->line;
        if (accept_op(L, ".")) {
            expr *a = mk(c, E_ATTR, line);
            tok *t = peek(L);
            if (t->k == T_INT) a->k = E_ITEM, a->b = mk(c, E_LIT, line), a->b->lit = t->v, ++L->i;
            else a->lit = expect_name(c, L);
            a->a = e, e = a;
        } else if (accept_op(L, "[")) {
            expr *lo = NULL, *hi = NULL;
            if (!is_op(peek(L), ":")) lo = parse_expr(c, L);
            if (accept_op(L, ":")) {
                if (!is_op(peek(L), "]") && !is_op(peek(L), ":")) hi = parse_expr(c, L);
                if (accept_op(L, ":") && !is_op(peek(L), "]")) {
                    expr *step = parse_expr(c, L);
                    if (step->k != E_LIT || step->lit.k != V_INT || step->lit.i != 1)
                        fail(c, SPRIG_E_FORMAT, line, "slices with a step are not supported");
                }
                expr *s = mk(c, E_SLICE, line);
                s->a = e, s->b = lo, s->c = hi, e = s;
            } else {
                if (!lo) fail(c, SPRIG_E_FORMAT, line, "an empty subscript");
                expr *s = mk(c, E_ITEM, line);
                s->a = e, s->b = lo, e = s;
            }
            expect_op(c, L, "]");
        } else if (accept_op(L, "(")) {
            expr *call = mk(c, E_CALL, line);
            call->a = e;
            parse_args(c, L, call, ")");
            e = call;
        } else {
            return e;
        }
    }
}

/* | filter(args), is [not] test [arg | (args)] */
static expr *parse_filters(ctx *c, lexed *L, expr *e) {
    for (;;) {
        const int line = L->line;
        if (accept_op(L, "|")) {
            expr *f = mk(c, E_FILTER, line);
            f->lit = expect_name(c, L), f->a = e;
            if (accept_op(L, "(")) parse_args(c, L, f, ")");
            e = parse_postfix(c, L, f);
        } else if (accept_kw(L, "is")) {
            expr *t = mk(c, E_TEST, line);
            t->negate = accept_kw(L, "not");
            t->lit = expect_name(c, L), t->a = e;
            tok *n = peek(L);
            if (accept_op(L, "(")) parse_args(c, L, t, ")");
            else if (n->k == T_STR || n->k == T_INT || n->k == T_FLOAT ||
                     (n->k == T_NAME && !is_kw(n, "and") && !is_kw(n, "or") && !is_kw(n, "else") && !is_kw(n, "if") &&
                      !is_kw(n, "in") && !is_kw(n, "is") && !is_kw(n, "not"))) {
                t->args = cget(c, sizeof(expr *)), t->kw = cget(c, sizeof(value));
                t->kw[0] = UNDEF;
                t->args[0] = parse_postfix(c, L, parse_primary(c, L)), t->nargs = 1;
            }
            e = t;
        } else {
            return e;
        }
    }
}

static expr *parse_unary(ctx *c, lexed *L) {
    const int line = L->line;
    enter(c, line);
    expr *e;
    if (accept_op(L, "-")) {
        e = mk(c, E_NEG, line);
        e->a = parse_unary(c, L);
    } else if (accept_op(L, "+")) {
        e = parse_unary(c, L);
    } else {
        e = parse_filters(c, L, parse_postfix(c, L, parse_primary(c, L)));
    }
    --c->depth;
    return e;
}

static expr *bin(ctx *c, int op, expr *a, expr *b, int line) {
    expr *e = mk(c, E_BIN, line);
    e->op = op, e->a = a, e->b = b;
    return e;
}

#define OP2(a, b) ((a) << 8 | (b))

static expr *parse_pow(ctx *c, lexed *L) {
    expr *e = parse_unary(c, L);
    while (accept_op(L, "**")) e = bin(c, OP2('*', '*'), e, parse_unary(c, L), L->line);
    return e;
}

static expr *parse_math2(ctx *c, lexed *L) {
    expr *e = parse_pow(c, L);
    for (;;) {
        tok *t = peek(L);
        if (!(is_op(t, "*") || is_op(t, "/") || is_op(t, "//") || is_op(t, "%"))) return e;
        ++L->i;
        e = bin(c, t->op[1] ? OP2(t->op[0], t->op[1]) : t->op[0], e, parse_pow(c, L), L->line);
    }
}

static expr *parse_concat(ctx *c, lexed *L) {
    expr *e = parse_math2(c, L);
    while (accept_op(L, "~")) e = bin(c, '~', e, parse_math2(c, L), L->line);
    return e;
}

static expr *parse_math1(ctx *c, lexed *L) {
    expr *e = parse_concat(c, L);
    for (;;) {
        tok *t = peek(L);
        if (!is_op(t, "+") && !is_op(t, "-")) return e;
        ++L->i;
        e = bin(c, t->op[0], e, parse_concat(c, L), L->line);
    }
}

enum { OP_IN = 'i', OP_NOTIN = 'n' };

static expr *parse_compare(ctx *c, lexed *L) {
    expr *e = parse_math1(c, L);
    for (;;) {
        tok *t = peek(L);
        int op;
        if (is_op(t, "==") || is_op(t, "!=") || is_op(t, "<=") || is_op(t, ">=")) op = OP2(t->op[0], t->op[1]);
        else if (is_op(t, "<") || is_op(t, ">")) op = t->op[0];
        else if (is_kw(t, "in")) op = OP_IN;
        else if (is_kw(t, "not") && L->i + 1 < L->n && is_kw(&L->t[L->i + 1], "in")) op = OP_NOTIN, ++L->i;
        else return e;
        ++L->i;
        e = bin(c, op, e, parse_math1(c, L), L->line);
    }
}

static expr *parse_not(ctx *c, lexed *L) {
    if (accept_kw(L, "not")) {
        enter(c, L->line);
        expr *e = mk(c, E_NOT, L->line);
        e->a = parse_not(c, L);
        --c->depth;
        return e;
    }
    return parse_compare(c, L);
}

static expr *parse_and(ctx *c, lexed *L) {
    expr *e = parse_not(c, L);
    while (accept_kw(L, "and")) {
        expr *a = mk(c, E_AND, L->line);
        a->a = e, a->b = parse_not(c, L), e = a;
    }
    return e;
}

static expr *parse_or(ctx *c, lexed *L) {
    expr *e = parse_and(c, L);
    while (accept_kw(L, "or")) {
        expr *o = mk(c, E_OR, L->line);
        o->a = e, o->b = parse_and(c, L), e = o;
    }
    return e;
}

/* `a if cond else b` (without else: undefined when cond is false). */
static expr *parse_expr(ctx *c, lexed *L) {
    enter(c, L->line);
    expr *e = parse_or(c, L);
    while (accept_kw(L, "if")) {
        expr *k = mk(c, E_COND, L->line);
        k->a = e, k->b = parse_or(c, L);
        if (accept_kw(L, "else")) k->c = parse_expr(c, L);
        e = k;
    }
    --c->depth;
    return e;
}

static void expect_end(ctx *c, lexed *L) {
    if (peek(L)->k != T_END) fail(c, SPRIG_E_FORMAT, L->line, "unexpected %s in the tag", tok_desc(peek(L)));
}

/* --- parsing statements ---------------------------------------------------- */

typedef struct parser {
    ctx *c;
    segs *ss;
    size_t i;
} parser;

static node *mknode(ctx *c, nkind k, int line) {
    node *n = cget(c, sizeof *n);
    memset(n, 0, sizeof *n);
    n->k = k, n->line = line;
    return n;
}

/* Parses nodes until a statement whose keyword is in stops (NULL-ended); its
 * lexed tag is left in *stop_tag (positioned after the keyword). At the end
 * of the template with stops given: an error naming what is missing. */
static node *parse_body(parser *P, const char *const *stops, lexed *stop_tag, const char *opened, int open_line);

static node *parse_if(parser *P, lexed *L) {
    ctx *c = P->c;
    node *n = mknode(c, N_IF, L->line);
    n->e = parse_expr(c, L);
    expect_end(c, L);
    static const char *const stops[] = {"elif", "else", "endif", NULL};
    lexed t;
    n->body = parse_body(P, stops, &t, "if", n->line);
    --t.i;
    if (accept_kw(&t, "elif")) {
        n->orelse = parse_if(P, &t); /* consumes through the shared endif */
    } else if (accept_kw(&t, "else")) {
        expect_end(c, &t);
        static const char *const endif[] = {"endif", NULL};
        n->orelse = parse_body(P, endif, &t, "else", t.line);
        expect_end(c, &t);
    } else {
        ++t.i;
        expect_end(c, &t);
    }
    return n;
}

static node *parse_for(parser *P, lexed *L) {
    ctx *c = P->c;
    node *n = mknode(c, N_FOR, L->line);
    n->names[n->nnames++] = expect_name(c, L);
    if (accept_op(L, ",")) n->names[n->nnames++] = expect_name(c, L);
    if (!accept_kw(L, "in")) fail(c, SPRIG_E_FORMAT, L->line, "expected 'in' in a for loop");
    n->e = parse_or(c, L); /* not parse_expr: its `if` is the loop's filter */
    if (accept_kw(L, "if")) n->filter = parse_expr(c, L);
    if (accept_kw(L, "recursive")) fail(c, SPRIG_E_FORMAT, L->line, "recursive loops are not supported");
    expect_end(c, L);
    static const char *const stops[] = {"else", "endfor", NULL};
    lexed t;
    n->body = parse_body(P, stops, &t, "for", n->line);
    --t.i;
    if (accept_kw(&t, "else")) {
        expect_end(c, &t);
        static const char *const endfor[] = {"endfor", NULL};
        n->orelse = parse_body(P, endfor, &t, "for", n->line);
    } else {
        ++t.i;
    }
    expect_end(c, &t);
    return n;
}

static node *parse_set(parser *P, lexed *L) {
    ctx *c = P->c;
    node *n = mknode(c, N_SET, L->line);
    n->names[0] = expect_name(c, L);
    n->names[1] = UNDEF;
    if (accept_op(L, ".")) n->names[1] = expect_name(c, L);
    if (!accept_op(L, "="))
        fail(c, SPRIG_E_FORMAT, L->line, "expected '=' in set (block set and tuple targets are not supported)");
    n->e = parse_expr(c, L);
    expect_end(c, L);
    return n;
}

/* One statement tag (already lexed, keyword next). NULL for a stop keyword
 * (left for the caller) or a transparent one (generation). */
static node *parse_statement(parser *P, lexed *L, const char *const *stops, int *stopped) {
    ctx *c = P->c;
    tok *kw = peek(L);
    if (kw->k != T_NAME) fail(c, SPRIG_E_FORMAT, L->line, "a statement tag without a keyword");
    ++L->i;
    for (const char *const *s = stops; s && *s; ++s)
        if (str_eq(kw->v, *s, strlen(*s))) { *stopped = 1; return NULL; }
    if (is_kw(kw, "if")) return parse_if(P, L);
    if (is_kw(kw, "for")) return parse_for(P, L);
    if (is_kw(kw, "set")) return parse_set(P, L);
    if (is_kw(kw, "break") || is_kw(kw, "continue")) {
        expect_end(c, L);
        return mknode(c, is_kw(kw, "break") ? N_BREAK : N_CONTINUE, L->line);
    }
    if (is_kw(kw, "elif") || is_kw(kw, "else") || is_kw(kw, "endif") || is_kw(kw, "endfor"))
        fail(c, SPRIG_E_FORMAT, L->line, "'%.*s' without its if or for", (int)kw->v.n, kw->v.s);
    if (is_kw(kw, "generation") || is_kw(kw, "endgeneration")) { /* transformers' assistant-mask markers */
        expect_end(c, L);
        return NULL;
    }
    fail(c, SPRIG_E_FORMAT, L->line, "'%.*s' is not supported here", (int)(kw->v.n > 40 ? 40 : kw->v.n), kw->v.s);
}

static node *parse_body(parser *P, const char *const *stops, lexed *stop_tag, const char *opened, int open_line) {
    ctx *c = P->c;
    node head = {0}, *tail = &head;
    enter(c, open_line);
    while (P->i < P->ss->n) {
        seg *s = &P->ss->v[P->i++];
        node *n = NULL;
        if (s->k == S_TEXT) {
            n = mknode(c, N_TEXT, s->line);
            n->text = vstr_borrow(s->s, s->n);
        } else {
            lexed L;
            lex(c, s->s, s->n, s->line, &L);
            if (s->k == S_EXPR) {
                n = mknode(c, N_OUT, s->line);
                n->e = parse_expr(c, &L);
                expect_end(c, &L);
            } else {
                int stopped = 0;
                n = parse_statement(P, &L, stops, &stopped);
                if (stopped) {
                    *stop_tag = L;
                    --c->depth;
                    return head.next;
                }
            }
        }
        if (n) tail->next = n, tail = n;
    }
    if (stops) fail(c, SPRIG_E_FORMAT, open_line, "'%s' opened here is never closed (expected '%s')", opened, stops[0]);
    --c->depth;
    return head.next;
}

sprig_status sp_chat_template_parse(const char *text, size_t len, const char *label, sp_chat_template **out) {
    *out = NULL;
    sp_chat_template *t = calloc(1, sizeof *t);
    if (!t) return sp_fail(SPRIG_E_NOMEM, "out of memory");
    t->label = strdup(label ? label : "(text)");
    char *copy = t->label ? arena_get(&t->ar, len + 1) : NULL;
    if (!copy) {
        sp_chat_template_free(t);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    memcpy(copy, text, len);
    copy[len] = 0;
    ctx *c = calloc(1, sizeof *c); /* on the heap: longjmp leaves locals indeterminate */
    if (!c) {
        sp_chat_template_free(t);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    c->ar = &t->ar, c->label = t->label;
    if (setjmp(c->jb)) {
        sprig_status st = c->status;
        free(c);
        sp_chat_template_free(t);
        return st;
    }
    segs ss = {0};
    cut_template(c, copy, len, &ss);
    parser P = {c, &ss, 0};
    t->root = parse_body(&P, NULL, NULL, NULL, 1);
    free(c);
    *out = t;
    return SPRIG_OK;
}

void sp_chat_template_free(sp_chat_template *t) {
    if (!t) return;
    arena_free(&t->ar);
    free(t->label);
    free(t);
}

/* --- rendering: Python semantics ------------------------------------------ */

typedef struct render {
    ctx c;
    dict **frames; /* scopes, innermost last: the template's own, then one per loop */
    size_t nframes, capframes;
    dict *globals; /* what the caller passes: messages, bos_token, ... */
    buf out;
} render;

static int truthy(value v) {
    switch (v.k) {
    case V_UNDEF: case V_NONE: return 0;
    case V_BOOL: case V_INT: return v.i != 0;
    case V_FLOAT: return v.f != 0;
    case V_STR: return v.n != 0;
    case V_LIST: return v.l->n != 0;
    case V_DICT: return v.d->is_ns || v.d->n != 0;
    case V_FUNC: return 1;
    }
    return 0;
}

static int is_num(value v) { return v.k == V_INT || v.k == V_BOOL || v.k == V_FLOAT; }
static double num(value v) { return v.k == V_FLOAT ? v.f : (double)v.i; }

static int equal(value a, value b) {
    if (is_num(a) && is_num(b)) return a.k != V_FLOAT && b.k != V_FLOAT ? a.i == b.i : num(a) == num(b);
    if (a.k != b.k) return 0;
    switch (a.k) {
    case V_UNDEF: case V_NONE: return 1;
    case V_STR: case V_FUNC: return a.n == b.n && !memcmp(a.s, b.s, a.n);
    case V_LIST:
        if (a.l->n != b.l->n) return 0;
        for (size_t i = 0; i < a.l->n; ++i)
            if (!equal(a.l->v[i], b.l->v[i])) return 0;
        return 1;
    case V_DICT:
        if (a.d->is_ns || b.d->is_ns) return a.d == b.d;
        if (a.d->n != b.d->n) return 0;
        for (size_t i = 0; i < a.d->n; ++i) {
            value *o = dict_find(b.d, a.d->keys[i].s, a.d->keys[i].n);
            if (!o || !equal(a.d->vals[i], *o)) return 0;
        }
        return 1;
    default: return 0;
    }
}

static void repr(ctx *c, buf *b, value v);

/* Python's repr of a float: the shortest digits that read back the same,
 * positional for exponents -4..15, else d.ddde+XX. */
static void put_float(ctx *c, buf *b, double f) {
    if (isnan(f)) { buf_puts(c, b, "nan"); return; }
    if (isinf(f)) { buf_puts(c, b, f < 0 ? "-inf" : "inf"); return; }
    char t[48];
    for (int prec = 0; prec <= 16; ++prec) {
        snprintf(t, sizeof t, "%.*e", prec, f);
        if (strtod(t, NULL) == f) break;
    }
    char digits[24];
    int nd = 0, neg = t[0] == '-';
    const char *q = t + neg;
    for (; *q && *q != 'e'; ++q)
        if (*q != '.') digits[nd++] = *q;
    while (nd > 1 && digits[nd - 1] == '0') --nd; /* %.*e may pad */
    const int exp = atoi(q + 1);
    if (neg) buf_puts(c, b, "-");
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            buf_puts(c, b, "0.");
            for (int k = 0; k < -exp - 1; ++k) buf_puts(c, b, "0");
            buf_put(c, b, digits, (size_t)nd);
        } else {
            for (int k = 0; k <= exp; ++k) buf_put(c, b, k < nd ? &digits[k] : "0", 1);
            buf_puts(c, b, ".");
            if (nd > exp + 1) buf_put(c, b, digits + exp + 1, (size_t)(nd - exp - 1));
            else buf_puts(c, b, "0");
        }
        return;
    }
    buf_put(c, b, digits, 1);
    if (nd > 1) buf_puts(c, b, "."), buf_put(c, b, digits + 1, (size_t)(nd - 1));
    buf_printf(c, b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
}

/* str(v), as {{ }} prints it (undefined prints nothing). */
static void to_str(ctx *c, buf *b, value v) {
    switch (v.k) {
    case V_UNDEF: return;
    case V_NONE: buf_puts(c, b, "None"); return;
    case V_BOOL: buf_puts(c, b, v.i ? "True" : "False"); return;
    case V_INT: buf_printf(c, b, "%lld", v.i); return;
    case V_FLOAT: put_float(c, b, v.f); return;
    case V_STR: buf_put(c, b, v.s, v.n); return;
    default: repr(c, b, v);
    }
}

static void repr(ctx *c, buf *b, value v) {
    if (v.k == V_STR) {
        const int dq = memchr(v.s, '\'', v.n) && !memchr(v.s, '"', v.n);
        const char q = dq ? '"' : '\'';
        buf_put(c, b, &q, 1);
        for (size_t i = 0; i < v.n; ++i) {
            unsigned char ch = (unsigned char)v.s[i];
            if (ch == '\\' || ch == (unsigned char)q) buf_put(c, b, "\\", 1), buf_put(c, b, v.s + i, 1);
            else if (ch == '\n') buf_puts(c, b, "\\n");
            else if (ch == '\r') buf_puts(c, b, "\\r");
            else if (ch == '\t') buf_puts(c, b, "\\t");
            else if (ch < 0x20 || ch == 0x7f) buf_printf(c, b, "\\x%02x", ch);
            else buf_put(c, b, v.s + i, 1);
        }
        buf_put(c, b, &q, 1);
    } else if (v.k == V_LIST) {
        buf_puts(c, b, "[");
        for (size_t i = 0; i < v.l->n; ++i) {
            if (i) buf_puts(c, b, ", ");
            repr(c, b, v.l->v[i]);
        }
        buf_puts(c, b, "]");
    } else if (v.k == V_DICT) {
        if (v.d->is_ns) { buf_puts(c, b, "<Namespace>"); return; }
        buf_puts(c, b, "{");
        for (size_t i = 0; i < v.d->n; ++i) {
            if (i) buf_puts(c, b, ", ");
            repr(c, b, v.d->keys[i]);
            buf_puts(c, b, ": ");
            repr(c, b, v.d->vals[i]);
        }
        buf_puts(c, b, "}");
    } else if (v.k == V_FUNC) {
        buf_puts(c, b, "<function>");
    } else {
        to_str(c, b, v);
    }
}

static value str_of(ctx *c, value v) {
    if (v.k == V_STR) return v;
    buf b = {0};
    buf_put(c, &b, "", 0);
    to_str(c, &b, v);
    return (value){.k = V_STR, .s = b.p, .n = b.n};
}

/* JSON as transformers' tojson writes it (json.dumps, ensure_ascii=False;
 * indent as given; separators (', ', ': ') without indent, (',', ': ') with). */
static void to_json(ctx *c, buf *b, value v, int indent, int level, int line) {
    if (++c->depth > MAX_DEPTH) fail(c, SPRIG_E_TEMPLATE, line, "tojson: nested deeper than %d", MAX_DEPTH);
    switch (v.k) {
    case V_NONE: buf_puts(c, b, "null"); break;
    case V_BOOL: buf_puts(c, b, v.i ? "true" : "false"); break;
    case V_INT: buf_printf(c, b, "%lld", v.i); break;
    case V_FLOAT:
        if (isnan(v.f) || isinf(v.f)) buf_puts(c, b, isnan(v.f) ? "NaN" : v.f < 0 ? "-Infinity" : "Infinity");
        else put_float(c, b, v.f);
        break;
    case V_STR:
        buf_puts(c, b, "\"");
        for (size_t i = 0; i < v.n; ++i) {
            unsigned char ch = (unsigned char)v.s[i];
            if (ch == '"') buf_puts(c, b, "\\\"");
            else if (ch == '\\') buf_puts(c, b, "\\\\");
            else if (ch == '\n') buf_puts(c, b, "\\n");
            else if (ch == '\r') buf_puts(c, b, "\\r");
            else if (ch == '\t') buf_puts(c, b, "\\t");
            else if (ch == '\b') buf_puts(c, b, "\\b");
            else if (ch == '\f') buf_puts(c, b, "\\f");
            else if (ch < 0x20) buf_printf(c, b, "\\u%04x", ch);
            else buf_put(c, b, v.s + i, 1);
        }
        buf_puts(c, b, "\"");
        break;
    case V_LIST: case V_DICT: {
        const int is_list = v.k == V_LIST;
        const size_t n = is_list ? v.l->n : v.d->n;
        buf_puts(c, b, is_list ? "[" : "{");
        for (size_t i = 0; i < n; ++i) {
            if (i) buf_puts(c, b, indent >= 0 ? "," : ", ");
            if (indent >= 0) {
                buf_puts(c, b, "\n");
                for (int k = 0; k < indent * (level + 1); ++k) buf_puts(c, b, " ");
            }
            if (!is_list) {
                to_json(c, b, v.d->keys[i], indent, level + 1, line);
                buf_puts(c, b, ": ");
            }
            to_json(c, b, is_list ? v.l->v[i] : v.d->vals[i], indent, level + 1, line);
        }
        if (indent >= 0 && n) {
            buf_puts(c, b, "\n");
            for (int k = 0; k < indent * level; ++k) buf_puts(c, b, " ");
        }
        buf_puts(c, b, is_list ? "]" : "}");
        break;
    }
    default: fail(c, SPRIG_E_TEMPLATE, line, "tojson: a %s is not JSON serializable", type_name(v));
    }
    --c->depth;
}

/* --- scopes ------------------------------------------------------------------ */

static void push_frame(render *r) {
    ctx *c = &r->c;
    if (r->nframes == r->capframes) {
        size_t cap = r->capframes ? 2 * r->capframes : 8;
        dict **g = cget(c, sizeof(dict *) * cap);
        if (r->nframes) memcpy(g, r->frames, sizeof(dict *) * r->nframes);
        r->frames = g, r->capframes = cap;
    }
    r->frames[r->nframes++] = dict_new(c);
}

static const char *const builtin_funcs[] = {"raise_exception", "strftime_now", "namespace", "range", NULL};

static value lookup(render *r, value name) {
    for (size_t i = r->nframes; i-- > 0;) {
        value *v = dict_find(r->frames[i], name.s, name.n);
        if (v) return *v;
    }
    value *g = dict_find(r->globals, name.s, name.n);
    if (g) return *g;
    for (const char *const *f = builtin_funcs; *f; ++f)
        if (str_eq(name, *f, strlen(*f))) return (value){.k = V_FUNC, .s = *f, .n = strlen(*f)};
    return UNDEF;
}

/* --- evaluation ------------------------------------------------------------ */

static value eval(render *r, const expr *e);

static void step(render *r, int line) {
    if (++r->c.steps > MAX_STEPS) fail(&r->c, SPRIG_E_TEMPLATE, line, "over the limit of %d evaluation steps", MAX_STEPS);
}

/* Python's index rules: negative counts from the end; out of range is -1. */
static long long norm_index(long long i, size_t n) {
    if (i < 0) i += (long long)n;
    return i < 0 || i >= (long long)n ? -1 : i;
}

static void slice_bounds(long long *lo, long long *hi, int has_lo, int has_hi, size_t n) {
    long long N = (long long)n;
    if (!has_lo) *lo = 0;
    if (!has_hi) *hi = N;
    if (*lo < 0) *lo += N;
    if (*hi < 0) *hi += N;
    if (*lo < 0) *lo = 0;
    if (*hi > N) *hi = N;
    if (*lo > N) *lo = N;
    if (*hi < *lo) *hi = *lo;
}

/* obj.name / obj[name]: Jinja tries both, and gives undefined for neither. */
static value get_item(render *r, value obj, value key, int line) {
    ctx *c = &r->c;
    if (obj.k == V_UNDEF) fail(c, SPRIG_E_TEMPLATE, line, "an undefined value has no attribute or item");
    if (obj.k == V_DICT && key.k == V_STR) {
        value *v = dict_find(obj.d, key.s, key.n);
        return v ? *v : UNDEF;
    }
    if ((obj.k == V_LIST || obj.k == V_STR) && (key.k == V_INT || key.k == V_BOOL)) {
        size_t n = obj.k == V_LIST ? obj.l->n : utf8_len(obj.s, obj.n);
        long long i = norm_index(key.i, n);
        if (i < 0) return UNDEF;
        if (obj.k == V_LIST) return obj.l->v[i];
        size_t b = utf8_offset(obj.s, obj.n, (size_t)i), e = utf8_offset(obj.s, obj.n, (size_t)i + 1);
        return vstr_borrow(obj.s + b, e - b);
    }
    return UNDEF;
}

static value eval_slice(render *r, const expr *e) {
    ctx *c = &r->c;
    value obj = eval(r, e->a);
    long long lo = 0, hi = 0;
    int has_lo = 0, has_hi = 0; /* a missing or none bound is open */
    if (e->b) {
        value v = eval(r, e->b);
        if (v.k != V_INT && v.k != V_NONE) fail(c, SPRIG_E_TEMPLATE, e->line, "slice indices must be integers");
        has_lo = v.k == V_INT, lo = v.i;
    }
    if (e->c) {
        value v = eval(r, e->c);
        if (v.k != V_INT && v.k != V_NONE) fail(c, SPRIG_E_TEMPLATE, e->line, "slice indices must be integers");
        has_hi = v.k == V_INT, hi = v.i;
    }
    if (obj.k == V_LIST) {
        slice_bounds(&lo, &hi, has_lo, has_hi, obj.l->n);
        list *l = list_new(c, (size_t)(hi - lo));
        for (long long i = lo; i < hi; ++i) list_push(c, l, obj.l->v[i]);
        return (value){.k = V_LIST, .l = l};
    }
    if (obj.k == V_STR) {
        slice_bounds(&lo, &hi, has_lo, has_hi, utf8_len(obj.s, obj.n));
        size_t b = utf8_offset(obj.s, obj.n, (size_t)lo), en = utf8_offset(obj.s, obj.n, (size_t)hi);
        return vstr_borrow(obj.s + b, en - b);
    }
    fail(c, SPRIG_E_TEMPLATE, e->line, "a %s cannot be sliced", type_name(obj));
}

static value arith(render *r, int op, value a, value b, int line) {
    ctx *c = &r->c;
    if (op == '+' && a.k == V_STR && b.k == V_STR) {
        buf o = {0};
        buf_put(c, &o, a.s, a.n), buf_put(c, &o, b.s, b.n);
        return (value){.k = V_STR, .s = o.p, .n = o.n};
    }
    if (op == '+' && a.k == V_LIST && b.k == V_LIST) {
        list *l = list_new(c, a.l->n + b.l->n);
        for (size_t i = 0; i < a.l->n; ++i) list_push(c, l, a.l->v[i]);
        for (size_t i = 0; i < b.l->n; ++i) list_push(c, l, b.l->v[i]);
        return (value){.k = V_LIST, .l = l};
    }
    if (op == '*' && ((a.k == V_STR && b.k == V_INT) || (a.k == V_INT && b.k == V_STR))) {
        value s = a.k == V_STR ? a : b;
        long long times = a.k == V_INT ? a.i : b.i;
        buf o = {0};
        buf_put(c, &o, "", 0);
        for (long long i = 0; i < times; ++i) buf_put(c, &o, s.s, s.n);
        return (value){.k = V_STR, .s = o.p, .n = o.n};
    }
    if (!is_num(a) || !is_num(b)) {
        const char *ops = op == OP2('/', '/') ? "//" : op == OP2('*', '*') ? "**" : (char[]){(char)op, 0};
        fail(c, SPRIG_E_TEMPLATE, line, "unsupported operand types for %s: '%s' and '%s'", ops, type_name(a),
             type_name(b));
    }
    const int ints = a.k != V_FLOAT && b.k != V_FLOAT;
    if ((op == '/' || op == '%' || op == OP2('/', '/')) && num(b) == 0)
        fail(c, SPRIG_E_TEMPLATE, line, "division by zero");
    switch (op) {
    case '+': return ints ? vint(a.i + b.i) : (value){.k = V_FLOAT, .f = num(a) + num(b)};
    case '-': return ints ? vint(a.i - b.i) : (value){.k = V_FLOAT, .f = num(a) - num(b)};
    case '*': return ints ? vint(a.i * b.i) : (value){.k = V_FLOAT, .f = num(a) * num(b)};
    case '/': return (value){.k = V_FLOAT, .f = num(a) / num(b)};
    case '%':
        if (ints) {
            long long m = a.i % b.i;
            return vint(m && ((m < 0) != (b.i < 0)) ? m + b.i : m); /* Python's sign rule */
        }
        return (value){.k = V_FLOAT, .f = num(a) - num(b) * floor(num(a) / num(b))};
    case OP2('/', '/'):
        if (ints) {
            long long q = a.i / b.i;
            return vint((a.i % b.i != 0 && ((a.i < 0) != (b.i < 0))) ? q - 1 : q);
        }
        return (value){.k = V_FLOAT, .f = floor(num(a) / num(b))};
    default:
        if (ints && b.i >= 0 && b.i < 64) { /* int ** non-negative int stays an int in Python */
            long long p = 1;
            for (long long k = 0; k < b.i; ++k) p *= a.i;
            return vint(p);
        }
        return (value){.k = V_FLOAT, .f = pow(num(a), num(b))};
    }
}

static int contains(render *r, value hay, value needle, int line) {
    if (hay.k == V_STR) {
        if (needle.k != V_STR) fail(&r->c, SPRIG_E_TEMPLATE, line, "'in <string>' requires a string on the left");
        if (!needle.n) return 1;
        for (size_t i = 0; i + needle.n <= hay.n; ++i)
            if (!memcmp(hay.s + i, needle.s, needle.n)) return 1;
        return 0;
    }
    if (hay.k == V_LIST) {
        for (size_t i = 0; i < hay.l->n; ++i)
            if (equal(hay.l->v[i], needle)) return 1;
        return 0;
    }
    if (hay.k == V_DICT) return needle.k == V_STR && dict_find(hay.d, needle.s, needle.n) != NULL;
    if (hay.k == V_UNDEF) return 0;
    fail(&r->c, SPRIG_E_TEMPLATE, line, "argument of type '%s' is not iterable", type_name(hay));
}

static int compare(render *r, int op, value a, value b, int line) {
    switch (op) {
    case OP2('=', '='): return equal(a, b);
    case OP2('!', '='): return !equal(a, b);
    case OP_IN: return contains(r, b, a, line);
    case OP_NOTIN: return !contains(r, b, a, line);
    }
    int cmp;
    if (is_num(a) && is_num(b)) cmp = num(a) < num(b) ? -1 : num(a) > num(b);
    else if (a.k == V_STR && b.k == V_STR) {
        int m = memcmp(a.s, b.s, a.n < b.n ? a.n : b.n);
        cmp = m ? m : (a.n > b.n) - (a.n < b.n);
    } else
        fail(&r->c, SPRIG_E_TEMPLATE, line, "'<'/'>' not supported between '%s' and '%s'", type_name(a), type_name(b));
    switch (op) {
    case '<': return cmp < 0;
    case '>': return cmp > 0;
    case OP2('<', '='): return cmp <= 0;
    default: return cmp >= 0;
    }
}

/* Evaluated arguments of a call, filter or test: positional first. */
typedef struct args {
    value pos[8];
    int npos;
    value kwv[8];
    value kwk[8];
    int nkw;
} args;

static void eval_args(render *r, const expr *e, int first, args *a) {
    memset(a, 0, sizeof *a);
    for (int i = first; i < e->nargs; ++i) {
        if (a->npos == 8 || a->nkw == 8) fail(&r->c, SPRIG_E_TEMPLATE, e->line, "too many arguments");
        value v = eval(r, e->args[i]);
        if (e->kw[i].k == V_STR) a->kwk[a->nkw] = e->kw[i], a->kwv[a->nkw++] = v;
        else a->pos[a->npos++] = v;
    }
}

/* Argument i by position, else by keyword name, else dflt. */
static value arg(const args *a, int i, const char *name, value dflt) {
    if (i < a->npos) return a->pos[i];
    for (int k = 0; k < a->nkw; ++k)
        if (str_eq(a->kwk[k], name, strlen(name))) return a->kwv[k];
    return dflt;
}

static value need_str(render *r, value v, const char *what, int line) {
    if (v.k != V_STR) fail(&r->c, SPRIG_E_TEMPLATE, line, "%s expects a string, got %s", what, type_name(v));
    return v;
}

static int run_test(render *r, value name, value v, const args *a, int line);

/* Items of something iterable: list items, dict keys, string characters. */
static list *iter_items(render *r, value v, int line) {
    ctx *c = &r->c;
    if (v.k == V_LIST) return v.l;
    list *l = list_new(c, 8);
    if (v.k == V_UNDEF) return l;
    if (v.k == V_DICT && !v.d->is_ns) {
        for (size_t i = 0; i < v.d->n; ++i) list_push(c, l, v.d->keys[i]);
        return l;
    }
    if (v.k == V_STR) {
        for (size_t i = 0; i < v.n;) {
            size_t b = i;
            utf8_next(v.s, v.n, &i);
            list_push(c, l, vstr_borrow(v.s + b, i - b));
        }
        return l;
    }
    fail(c, SPRIG_E_TEMPLATE, line, "'%s' object is not iterable", type_name(v));
}

static value mklist(list *l) { return (value){.k = V_LIST, .l = l}; }

/* select/reject/selectattr/rejectattr: attr NULL for the item itself. */
static value select_items(render *r, value seq, const args *a, int first, int keep, int by_attr, int line) {
    ctx *c = &r->c;
    list *in = iter_items(r, seq, line), *out = list_new(c, in->n);
    value attr = by_attr ? need_str(r, arg(a, 0, "attribute", UNDEF), "selectattr", line) : UNDEF;
    value test = arg(a, first, "test", UNDEF);
    args rest = {0};
    for (int i = first + 1; i < a->npos; ++i) rest.pos[rest.npos++] = a->pos[i];
    for (size_t i = 0; i < in->n; ++i) {
        value item = by_attr ? get_item(r, in->v[i], attr, line) : in->v[i];
        int ok = test.k == V_UNDEF ? truthy(item) : run_test(r, need_str(r, test, "a test name", line), item, &rest, line);
        if (ok == keep) list_push(c, out, in->v[i]);
    }
    return mklist(out);
}

static value filter(render *r, const expr *e, value v) {
    ctx *c = &r->c;
    const int line = e->line;
    const value name = e->lit;
    args a;
    eval_args(r, e, 0, &a);
#define IS(s) str_eq(name, s, strlen(s))
    if (IS("trim")) return str_strip(c, need_str(r, v, "trim", line), NULL, 0, 1, 1);
    if (IS("length") || IS("count")) {
        if (v.k == V_STR) return vint((long long)utf8_len(v.s, v.n));
        if (v.k == V_LIST) return vint((long long)v.l->n);
        if (v.k == V_DICT) return vint((long long)v.d->n);
        if (v.k == V_UNDEF) return vint(0);
        fail(c, SPRIG_E_TEMPLATE, line, "object of type '%s' has no len()", type_name(v));
    }
    if (IS("upper") || IS("lower") || IS("capitalize")) {
        value s = str_of(c, v);
        char *d = cget(c, s.n + 1);
        /* ASCII case only: the templates use it on role names */
        for (size_t i = 0; i < s.n; ++i)
            d[i] = (char)(IS("upper") || (IS("capitalize") && i == 0) ? toupper((unsigned char)s.s[i])
                                                                       : tolower((unsigned char)s.s[i]));
        d[s.n] = 0;
        return vstr_borrow(d, s.n);
    }
    if (IS("string")) return str_of(c, v);
    if (IS("safe") || IS("e") || IS("escape")) return IS("safe") ? v : v.k == V_STR ? v : str_of(c, v);
    if (IS("list")) return mklist(iter_items(r, v, line));
    if (IS("tojson")) {
        value ind = arg(&a, 0, "indent", NONE);
        if (ind.k != V_NONE && ind.k != V_INT) fail(c, SPRIG_E_TEMPLATE, line, "tojson: indent must be an integer");
        buf b = {0};
        buf_put(c, &b, "", 0);
        to_json(c, &b, v, ind.k == V_INT ? (int)(ind.i < 0 ? 0 : ind.i > 64 ? 64 : ind.i) : -1, 0, line);
        return (value){.k = V_STR, .s = b.p, .n = b.n};
    }
    if (IS("join")) {
        value sep = arg(&a, 0, "d", vstr_borrow("", 0));
        sep = need_str(r, sep, "join's separator", line);
        list *l = iter_items(r, v, line);
        buf b = {0};
        buf_put(c, &b, "", 0);
        for (size_t i = 0; i < l->n; ++i) {
            if (i) buf_put(c, &b, sep.s, sep.n);
            to_str(c, &b, l->v[i]);
        }
        return (value){.k = V_STR, .s = b.p, .n = b.n};
    }
    if (IS("first") || IS("last")) {
        list *l = iter_items(r, v, line);
        return l->n ? l->v[IS("first") ? 0 : l->n - 1] : UNDEF;
    }
    if (IS("default") || IS("d")) {
        value dflt = arg(&a, 0, "default_value", vstr_borrow("", 0));
        return v.k == V_UNDEF || (truthy(arg(&a, 1, "boolean", vbool(0))) && !truthy(v)) ? dflt : v;
    }
    if (IS("items")) {
        if (v.k == V_UNDEF) return mklist(list_new(c, 1));
        if (v.k != V_DICT) fail(c, SPRIG_E_TEMPLATE, line, "items expects a mapping, got %s", type_name(v));
        list *l = list_new(c, v.d->n);
        for (size_t i = 0; i < v.d->n; ++i) {
            list *pair = list_new(c, 2);
            list_push(c, pair, v.d->keys[i]), list_push(c, pair, v.d->vals[i]);
            list_push(c, l, mklist(pair));
        }
        return mklist(l);
    }
    if (IS("selectattr")) return select_items(r, v, &a, 1, 1, 1, line);
    if (IS("rejectattr")) return select_items(r, v, &a, 1, 0, 1, line);
    if (IS("select")) return select_items(r, v, &a, 0, 1, 0, line);
    if (IS("reject")) return select_items(r, v, &a, 0, 0, 0, line);
    if (IS("replace")) {
        value s = need_str(r, v, "replace", line);
        value from = need_str(r, arg(&a, 0, "old", UNDEF), "replace", line);
        value to = need_str(r, arg(&a, 1, "new", UNDEF), "replace", line);
        buf b = {0};
        buf_put(c, &b, "", 0);
        for (size_t i = 0; i < s.n;) {
            if (from.n && i + from.n <= s.n && !memcmp(s.s + i, from.s, from.n)) buf_put(c, &b, to.s, to.n), i += from.n;
            else buf_put(c, &b, s.s + i++, 1);
        }
        return (value){.k = V_STR, .s = b.p, .n = b.n};
    }
    if (IS("int")) {
        if (v.k == V_STR) return vint(strtoll(v.s, NULL, 10));
        return is_num(v) ? vint((long long)num(v)) : vint(0);
    }
    if (IS("abs")) {
        if (!is_num(v)) fail(c, SPRIG_E_TEMPLATE, line, "abs expects a number");
        return v.k == V_FLOAT ? (value){.k = V_FLOAT, .f = fabs(v.f)} : vint(v.i < 0 ? -v.i : v.i);
    }
#undef IS
    fail(c, SPRIG_E_TEMPLATE, line, "no filter named '%.*s'", (int)(name.n > 40 ? 40 : name.n), name.s);
}

static int run_test(render *r, value name, value v, const args *a, int line) {
#define IS(s) str_eq(name, s, strlen(s))
    if (IS("defined")) return v.k != V_UNDEF;
    if (IS("undefined")) return v.k == V_UNDEF;
    if (IS("none")) return v.k == V_NONE;
    if (IS("string")) return v.k == V_STR;
    if (IS("number")) return is_num(v) && v.k != V_BOOL;
    if (IS("integer")) return v.k == V_INT;
    if (IS("float")) return v.k == V_FLOAT;
    if (IS("boolean")) return v.k == V_BOOL;
    if (IS("true")) return v.k == V_BOOL && v.i;
    if (IS("false")) return v.k == V_BOOL && !v.i;
    if (IS("mapping")) return v.k == V_DICT;
    if (IS("iterable")) return v.k == V_STR || v.k == V_LIST || v.k == V_DICT;
    if (IS("sequence")) return v.k == V_STR || v.k == V_LIST || v.k == V_DICT;
    if (IS("callable")) return v.k == V_FUNC;
    if (IS("odd") || IS("even")) {
        if (v.k != V_INT) fail(&r->c, SPRIG_E_TEMPLATE, line, "odd/even expect an integer");
        return (int)(v.i & 1) == IS("odd");
    }
    if (a->npos < 1) fail(&r->c, SPRIG_E_TEMPLATE, line, "the test '%.*s' needs an argument", (int)(name.n > 40 ? 40 : name.n), name.s);
    value o = a->pos[0];
    if (IS("equalto") || IS("eq") || IS("==") || IS("sameas")) return equal(v, o);
    if (IS("ne") || IS("!=")) return !equal(v, o);
    if (IS("lt") || IS("<")) return compare(r, '<', v, o, line);
    if (IS("le") || IS("<=")) return compare(r, OP2('<', '='), v, o, line);
    if (IS("gt") || IS(">")) return compare(r, '>', v, o, line);
    if (IS("ge") || IS(">=")) return compare(r, OP2('>', '='), v, o, line);
    if (IS("in")) return contains(r, o, v, line);
    if (IS("divisibleby")) {
        if (v.k != V_INT || o.k != V_INT || !o.i) fail(&r->c, SPRIG_E_TEMPLATE, line, "divisibleby expects integers");
        return v.i % o.i == 0;
    }
#undef IS
    fail(&r->c, SPRIG_E_TEMPLATE, line, "no test named '%.*s'", (int)(name.n > 40 ? 40 : name.n), name.s);
}

static value split(render *r, value s, value sep, int line) {
    ctx *c = &r->c;
    list *l = list_new(c, 8);
    if (sep.k == V_STR) {
        if (!sep.n) fail(c, SPRIG_E_TEMPLATE, line, "split: empty separator");
        size_t b = 0;
        for (size_t i = 0; i + sep.n <= s.n;)
            if (!memcmp(s.s + i, sep.s, sep.n)) list_push(c, l, vstr_borrow(s.s + b, i - b)), i += sep.n, b = i;
            else ++i;
        list_push(c, l, vstr_borrow(s.s + b, s.n - b));
        return mklist(l);
    }
    for (size_t i = 0; i < s.n;) { /* no separator: runs of whitespace */
        while (i < s.n && is_ws(s.s[i])) ++i;
        size_t b = i;
        while (i < s.n && !is_ws(s.s[i])) ++i;
        if (i > b) list_push(c, l, vstr_borrow(s.s + b, i - b));
    }
    return mklist(l);
}

static value call_method(render *r, value obj, value name, const args *a, int line) {
    ctx *c = &r->c;
#define IS(s) str_eq(name, s, strlen(s))
    if (obj.k == V_STR) {
        if (IS("strip") || IS("lstrip") || IS("rstrip")) {
            value chars = arg(a, 0, "chars", NONE);
            if (chars.k != V_NONE) need_str(r, chars, "strip", line);
            return str_strip(c, obj, chars.k == V_STR ? chars.s : NULL, chars.k == V_STR ? chars.n : 0,
                             !IS("rstrip"), !IS("lstrip"));
        }
        if (IS("startswith") || IS("endswith")) {
            value p = need_str(r, arg(a, 0, "prefix", UNDEF), "startswith/endswith", line);
            if (p.n > obj.n) return vbool(0);
            return vbool(!memcmp(IS("startswith") ? obj.s : obj.s + obj.n - p.n, p.s, p.n));
        }
        if (IS("split")) return split(r, obj, arg(a, 0, "sep", NONE), line);
        if (IS("upper") || IS("lower")) {
            char *d = cget(c, obj.n + 1);
            for (size_t i = 0; i < obj.n; ++i)
                d[i] = (char)(IS("upper") ? toupper((unsigned char)obj.s[i]) : tolower((unsigned char)obj.s[i]));
            d[obj.n] = 0;
            return vstr_borrow(d, obj.n);
        }
    } else if (obj.k == V_DICT && !obj.d->is_ns) {
        if (IS("items") || IS("keys") || IS("values")) {
            list *l = list_new(c, obj.d->n);
            for (size_t i = 0; i < obj.d->n; ++i) {
                if (IS("keys")) list_push(c, l, obj.d->keys[i]);
                else if (IS("values")) list_push(c, l, obj.d->vals[i]);
                else {
                    list *pair = list_new(c, 2);
                    list_push(c, pair, obj.d->keys[i]), list_push(c, pair, obj.d->vals[i]);
                    list_push(c, l, mklist(pair));
                }
            }
            return mklist(l);
        }
        if (IS("get")) {
            value k = arg(a, 0, "key", UNDEF);
            value *v = k.k == V_STR ? dict_find(obj.d, k.s, k.n) : NULL;
            return v ? *v : arg(a, 1, "default", NONE);
        }
    }
#undef IS
    fail(c, SPRIG_E_TEMPLATE, line, "'%s' object has no method '%.*s'", type_name(obj), (int)(name.n > 40 ? 40 : name.n),
         name.s);
}

static value call_global(render *r, value fn, const args *a, int line) {
    ctx *c = &r->c;
    if (str_eq(fn, "raise_exception", 15)) {
        value msg = str_of(c, arg(a, 0, "message", vstr_borrow("", 0)));
        fail(c, SPRIG_E_TEMPLATE, line, "the template raised: %.*s", (int)(msg.n > 400 ? 400 : msg.n), msg.s);
    }
    if (str_eq(fn, "strftime_now", 12)) {
        value fmt = need_str(r, arg(a, 0, "format", UNDEF), "strftime_now", line);
        char out[256];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t n = strftime(out, sizeof out, fmt.s, &tm);
        return vstr(c, out, n);
    }
    if (str_eq(fn, "namespace", 9)) {
        dict *d = dict_new(c);
        d->is_ns = 1;
        for (int i = 0; i < a->nkw; ++i) dict_set(c, d, a->kwk[i], a->kwv[i]);
        return (value){.k = V_DICT, .d = d};
    }
    /* range([start,] stop[, step]) */
    long long lo = 0, hi, st = 1;
    for (int i = 0; i < a->npos; ++i)
        if (a->pos[i].k != V_INT) fail(c, SPRIG_E_TEMPLATE, line, "range expects integers");
    if (a->npos == 1) hi = a->pos[0].i;
    else if (a->npos >= 2) lo = a->pos[0].i, hi = a->pos[1].i, st = a->npos > 2 ? a->pos[2].i : 1;
    else fail(c, SPRIG_E_TEMPLATE, line, "range expects 1 to 3 arguments");
    if (st == 0) fail(c, SPRIG_E_TEMPLATE, line, "range: step must not be zero");
    list *l = list_new(c, 8);
    for (long long i = lo; st > 0 ? i < hi : i > hi; i += st) {
        if (l->n >= MAX_RANGE) fail(c, SPRIG_E_TEMPLATE, line, "range over %d items", MAX_RANGE);
        list_push(c, l, vint(i));
    }
    return mklist(l);
}

static value eval_call(render *r, const expr *e) {
    args a;
    if (e->a->k == E_ATTR) {
        value obj = eval(r, e->a->a);
        eval_args(r, e, 0, &a);
        return call_method(r, obj, e->a->lit, &a, e->line);
    }
    value fn = eval(r, e->a);
    if (fn.k != V_FUNC) fail(&r->c, SPRIG_E_TEMPLATE, e->line, "a %s is not callable", type_name(fn));
    eval_args(r, e, 0, &a);
    return call_global(r, fn, &a, e->line);
}

static value eval(render *r, const expr *e) {
    ctx *c = &r->c;
    step(r, e->line);
    if (++c->depth > MAX_DEPTH) fail(c, SPRIG_E_TEMPLATE, e->line, "nested deeper than %d", MAX_DEPTH);
    value v;
    switch (e->k) {
    case E_LIT: v = e->lit; break;
    case E_NAME: v = lookup(r, e->lit); break;
    case E_ATTR: v = get_item(r, eval(r, e->a), e->lit, e->line); break;
    case E_ITEM: {
        value obj = eval(r, e->a);
        v = get_item(r, obj, eval(r, e->b), e->line);
        break;
    }
    case E_SLICE: v = eval_slice(r, e); break;
    case E_CALL: v = eval_call(r, e); break;
    case E_FILTER: v = filter(r, e, eval(r, e->a)); break;
    case E_TEST: {
        value x = eval(r, e->a);
        args a;
        eval_args(r, e, 0, &a);
        v = vbool(run_test(r, e->lit, x, &a, e->line) != e->negate);
        break;
    }
    case E_NEG: {
        value x = eval(r, e->a);
        if (!is_num(x)) fail(c, SPRIG_E_TEMPLATE, e->line, "bad operand type for unary -: '%s'", type_name(x));
        v = x.k == V_FLOAT ? (value){.k = V_FLOAT, .f = -x.f} : vint(-x.i);
        break;
    }
    case E_NOT: v = vbool(!truthy(eval(r, e->a))); break;
    case E_AND: { value x = eval(r, e->a); v = truthy(x) ? eval(r, e->b) : x; break; }
    case E_OR: { value x = eval(r, e->a); v = truthy(x) ? x : eval(r, e->b); break; }
    case E_COND: v = truthy(eval(r, e->b)) ? eval(r, e->a) : e->c ? eval(r, e->c) : UNDEF; break;
    case E_LIST: {
        list *l = list_new(c, (size_t)e->nargs);
        for (int i = 0; i < e->nargs; ++i) list_push(c, l, eval(r, e->args[i]));
        v = mklist(l);
        break;
    }
    case E_DICT: {
        dict *d = dict_new(c);
        for (int i = 0; i + 1 < e->nargs; i += 2) {
            value k = eval(r, e->args[i]);
            if (k.k != V_STR) fail(c, SPRIG_E_TEMPLATE, e->line, "dict keys must be strings here");
            dict_set(c, d, k, eval(r, e->args[i + 1]));
        }
        v = (value){.k = V_DICT, .d = d};
        break;
    }
    case E_BIN: {
        value a = eval(r, e->a), b = eval(r, e->b);
        if (e->op == '~') {
            buf o = {0};
            buf_put(c, &o, "", 0);
            to_str(c, &o, a), to_str(c, &o, b);
            v = (value){.k = V_STR, .s = o.p, .n = o.n};
        } else if (e->op == '+' || e->op == '-' || e->op == '*' || e->op == '/' || e->op == '%' ||
                   e->op == OP2('/', '/') || e->op == OP2('*', '*')) {
            v = arith(r, e->op, a, b, e->line);
        } else {
            v = vbool(compare(r, e->op, a, b, e->line));
        }
        break;
    }
    default: fail(c, SPRIG_E_INTERNAL, e->line, "unknown expression kind %d", (int)e->k);
    }
    --c->depth;
    return v;
}

/* --- statements -------------------------------------------------------------- */

enum { FLOW_NEXT, FLOW_BREAK, FLOW_CONTINUE };

static int exec_body(render *r, const node *n);

/* `loop`: what Jinja's loop object gives for item i of n. */
static value loop_var(render *r, size_t i, size_t n) {
    ctx *c = &r->c;
    dict *d = dict_new(c);
    dict_setc(c, d, "index0", vint((long long)i));
    dict_setc(c, d, "index", vint((long long)i + 1));
    dict_setc(c, d, "first", vbool(i == 0));
    dict_setc(c, d, "last", vbool(i + 1 == n));
    dict_setc(c, d, "length", vint((long long)n));
    dict_setc(c, d, "revindex", vint((long long)(n - i)));
    dict_setc(c, d, "revindex0", vint((long long)(n - i - 1)));
    return (value){.k = V_DICT, .d = d};
}

static void bind_targets(render *r, const node *n, value item) {
    ctx *c = &r->c;
    dict *f = r->frames[r->nframes - 1];
    if (n->nnames == 1) { dict_set(c, f, n->names[0], item); return; }
    if (item.k != V_LIST || item.l->n != 2)
        fail(c, SPRIG_E_TEMPLATE, n->line, "cannot unpack a %s into 2 loop variables", type_name(item));
    dict_set(c, f, n->names[0], item.l->v[0]);
    dict_set(c, f, n->names[1], item.l->v[1]);
}

static void exec_for(render *r, const node *n) {
    ctx *c = &r->c;
    list *items = iter_items(r, eval(r, n->e), n->line);
    push_frame(r);
    if (n->filter) { /* the `if` filters before the loop counts (loop.last sees only kept items) */
        list *kept = list_new(c, items->n);
        for (size_t i = 0; i < items->n; ++i) {
            bind_targets(r, n, items->v[i]);
            if (truthy(eval(r, n->filter))) list_push(c, kept, items->v[i]);
        }
        items = kept;
    }
    for (size_t i = 0; i < items->n; ++i) {
        r->frames[r->nframes - 1] = dict_new(c); /* a fresh scope per iteration */
        bind_targets(r, n, items->v[i]);
        dict_setc(c, r->frames[r->nframes - 1], "loop", loop_var(r, i, items->n));
        if (exec_body(r, n->body) == FLOW_BREAK) break;
    }
    --r->nframes;
    if (!items->n && n->orelse) exec_body(r, n->orelse);
}

static void exec_set(render *r, const node *n) {
    ctx *c = &r->c;
    value v = eval(r, n->e);
    if (n->names[1].k == V_STR) {
        value ns = lookup(r, n->names[0]);
        if (ns.k != V_DICT || !ns.d->is_ns)
            fail(c, SPRIG_E_TEMPLATE, n->line, "cannot assign an attribute of a %s (only a namespace)", type_name(ns));
        dict_set(c, ns.d, n->names[1], v);
        return;
    }
    dict_set(c, r->frames[r->nframes - 1], n->names[0], v);
}

static int exec_body(render *r, const node *n) {
    ctx *c = &r->c;
    if (++c->depth > MAX_DEPTH) fail(c, SPRIG_E_TEMPLATE, n ? n->line : 0, "nested deeper than %d", MAX_DEPTH);
    int flow = FLOW_NEXT;
    for (; n && flow == FLOW_NEXT; n = n->next) {
        step(r, n->line);
        switch (n->k) {
        case N_TEXT: buf_put(c, &r->out, n->text.s, n->text.n); break;
        case N_OUT: to_str(c, &r->out, eval(r, n->e)); break;
        case N_IF: {
            const node *branch = truthy(eval(r, n->e)) ? n->body : n->orelse;
            flow = exec_body(r, branch);
            break;
        }
        case N_FOR: exec_for(r, n); break;
        case N_SET: exec_set(r, n); break;
        case N_BREAK: flow = FLOW_BREAK; break;
        case N_CONTINUE: flow = FLOW_CONTINUE; break;
        }
    }
    --c->depth;
    return flow;
}

sprig_status sp_chat_template_render(const sp_chat_template *t, const sp_chat_msg *messages, size_t n,
                                     const sp_chat_vars *vars, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    arena ar = {0};
    render *r = calloc(1, sizeof *r); /* on the heap: longjmp leaves locals indeterminate */
    if (!r) return sp_fail(SPRIG_E_NOMEM, "out of memory");
    ctx *c = &r->c;
    c->ar = &ar, c->label = t->label;
    if (setjmp(c->jb)) {
        sprig_status st = c->status;
        arena_free(&ar);
        free(r);
        return st;
    }
    r->globals = dict_new(c);
    list *msgs = list_new(c, n);
    for (size_t i = 0; i < n; ++i) {
        dict *m = dict_new(c);
        const char *role = messages[i].role ? messages[i].role : "", *content = messages[i].content;
        dict_setc(c, m, "role", vstr_borrow(role, strlen(role)));
        dict_setc(c, m, "content", content ? vstr_borrow(content, strlen(content)) : NONE);
        list_push(c, msgs, (value){.k = V_DICT, .d = m});
    }
    dict_setc(c, r->globals, "messages", mklist(msgs));
    dict_setc(c, r->globals, "add_generation_prompt", vbool(vars && vars->add_generation_prompt));
    dict_setc(c, r->globals, "tools", NONE);     /* transformers passes tools=None, documents=None */
    dict_setc(c, r->globals, "documents", NONE);
    if (vars && vars->bos_token) dict_setc(c, r->globals, "bos_token", vstr_borrow(vars->bos_token, strlen(vars->bos_token)));
    if (vars && vars->eos_token) dict_setc(c, r->globals, "eos_token", vstr_borrow(vars->eos_token, strlen(vars->eos_token)));
    push_frame(r);
    buf_put(c, &r->out, "", 0);
    exec_body(r, t->root);
    char *res = malloc(r->out.n + 1);
    if (!res) {
        arena_free(&ar);
        free(r);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    memcpy(res, r->out.p, r->out.n + 1);
    if (len) *len = r->out.n;
    *out = res;
    arena_free(&ar);
    free(r);
    return SPRIG_OK;
}

/* Binding a plan's arguments by name (see sp_kargs.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sp_error.h"
#include "sp_kargs.h"

static void kargs_error(sp_kargs *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void kargs_error(sp_kargs *a, const char *fmt, ...) {
    if (a->error[0]) return; /* the first reason is the one reported */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->error, sizeof a->error, fmt, ap);
    va_end(ap);
}

void sp_kargs_init(sp_kargs *a, const sprig_plan *plan) {
    memset(a, 0, sizeof *a);
    a->plan = plan;
}

/* The index of name among the plan's arguments, or -1 (and an error). */
static int find(sp_kargs *a, const char *name, int pointer) {
    for (int i = 0; i < a->plan->n_args; ++i) {
        if (strcmp(a->plan->args[i].name, name) != 0) continue;
        if (a->plan->args[i].pointer != pointer)
            kargs_error(a, "argument '%s' is %s, bound as %s", name, pointer ? "a value" : "a pointer",
                        pointer ? "a pointer" : "a value");
        if (a->bound[i]) kargs_error(a, "argument '%s' bound twice", name);
        a->bound[i] = 1;
        return i;
    }
    kargs_error(a, "no argument named '%s'", name);
    return -1;
}

int sp_kargs_has(const sp_kargs *a, const char *name) {
    for (int i = 0; i < a->plan->n_args; ++i)
        if (!strcmp(a->plan->args[i].name, name)) return 1;
    return 0;
}

void sp_kargs_ptr(sp_kargs *a, const char *name, sp_dptr p) {
    const int i = find(a, name, 1);
    if (i >= 0) a->val[i].ptr = p;
}

void sp_kargs_f32(sp_kargs *a, const char *name, float v) {
    const int i = find(a, name, 0);
    if (i >= 0 && strcmp(a->plan->args[i].type, "f32") != 0)
        kargs_error(a, "argument '%s' is %s, bound as f32", name, a->plan->args[i].type);
    if (i >= 0) a->val[i].f32 = v;
}

sprig_status sp_kargs_finish(sp_kargs *a, void ***out) {
    const sprig_plan *plan = a->plan;
    for (int i = 0; i < plan->n_args && !a->error[0]; ++i) {
        const sprig_arg *d = &plan->args[i];
        if (!a->bound[i] && !d->optional) kargs_error(a, "argument '%s' is not bound", d->name);
        else if (d->pointer && a->val[i].ptr == 0 && !d->optional)
            kargs_error(a, "argument '%s' is NULL, and this plan reads it", d->name);
        else if (d->pointer && d->align > 1 && a->val[i].ptr % (sp_dptr)d->align != 0)
            kargs_error(a, "argument '%s' at 0x%llx is not %d-byte aligned, as its kernel loads it", d->name,
                        (unsigned long long)a->val[i].ptr, d->align);
        a->list[i] = &a->val[i];
    }
    if (a->error[0]) return sp_fail(SPRIG_E_INVALID, "%s: %s", plan->key ? plan->key : plan->family, a->error);
    *out = a->list;
    return SPRIG_OK;
}

sprig_status sp_kargs_launch(sp_exec *e, sp_exec_module *m, sp_kargs *a) {
    void **list = NULL;
    SP_TRY(sp_kargs_finish(a, &list));
    return sp_exec_launch(e, m, a->plan, list);
}

/* Interface of exec/: a kernel's argument list, bound by name.
 *
 * A plan carries its kernels' argument list as the family's spec declares it
 * (sprig_plan.args; lua/sprig/args.lua): names, order, pointer or value,
 * element type, alignment, and which arguments this plan does not use.
 * Callers bind values to names in any order; sp_kargs_finish puts them in the
 * declared order for sp_exec_launch, after checking that every argument the
 * plan uses is bound, that no name is bound that the plan does not declare,
 * and that every pointer is aligned as its kernel loads it. Unbound optional
 * arguments pass NULL. So no caller keeps an argument order of its own.
 *
 *   sp_kargs a;
 *   sp_kargs_init(&a, plan);
 *   sp_kargs_ptr(&a, "W", w);  sp_kargs_ptr(&a, "x", x);  sp_kargs_ptr(&a, "y", y);
 *   SP_TRY(sp_kargs_launch(exec, module, &a));
 *
 * Binding errors are remembered (the first one) and reported by finish, so
 * the binds themselves need no checks. The values live in the sp_kargs: the
 * list stays valid as long as it does. */
#ifndef SP_KARGS_H
#define SP_KARGS_H

#include <stdint.h>

#include "sp_exec.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_kargs {
    const sprig_plan *plan;
    int bound[SPRIG_MAX_ARGS];
    union {
        sp_dptr ptr;
        float f32;
    } val[SPRIG_MAX_ARGS];
    void *list[SPRIG_MAX_ARGS];
    char error[320];           /* the first binding error, "" when none */
} sp_kargs;

void sp_kargs_init(sp_kargs *a, const sprig_plan *plan);
/* Binds a device pointer (0: NULL, for optional arguments) or an f32 value. */
void sp_kargs_ptr(sp_kargs *a, const char *name, sp_dptr p);
void sp_kargs_f32(sp_kargs *a, const char *name, float v);
/* Whether the plan declares an argument of that name (for callers that bind
 * an argument only some plans of a family take). */
int sp_kargs_has(const sp_kargs *a, const char *name);
/* The list in declared order, or SPRIG_E_INVALID naming the plan and the
 * argument (unbound, unknown, NULL where required, misaligned). */
sprig_status sp_kargs_finish(sp_kargs *a, void ***out);
/* finish, then sp_exec_launch. */
sprig_status sp_kargs_launch(sp_exec *e, sp_exec_module *m, sp_kargs *a);

#pragma GCC visibility pop
#endif

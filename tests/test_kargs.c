/* Binding a plan's arguments by name (exec/sp_kargs.h), on real plans:
 * the list comes out in the declared order whatever the binding order, with
 * the values bound; unbound optional arguments are NULL; and every misuse is
 * refused with a message naming the plan and the argument: an unknown name,
 * a required argument unbound or NULL, a pointer bound as a value (and the
 * reverse), one bound twice, and a misaligned pointer. */
#include <string.h>

#include "sp_kargs.h"
#include "test_util.h"

static sprig_plan *render(sprig_gen *gen, const char *family, const char *params) {
    sprig_request req = {family, 4096, 11008, "fp16", 1, 32, params};
    sprig_plan *plan = NULL;
    CHECK_MSG(sprig_gen_render(gen, &req, &plan) == SPRIG_OK, "%s: %s", family, sprig_last_error());
    return plan;
}

/* The finish status of binding fn's bindings on plan, and the message. */
static sprig_status finish(sp_kargs *a) {
    void **list = NULL;
    return sp_kargs_finish(a, &list);
}

int main(void) {
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    sprig_plan *gemv = render(gen, "dense_gemv", "vec=8");
    sprig_plan *router = render(gen, "router", "");
    sprig_plan *dense_up = render(gen, "gather_upgate", "all_active=1");
    if (!gemv || !router || !dense_up) return sp_test_finish("test_kargs", 0);

    /* order: bound backwards, listed as declared (W, x, y) */
    sp_kargs a;
    sp_kargs_init(&a, gemv);
    sp_kargs_ptr(&a, "y", 0x3000);
    sp_kargs_ptr(&a, "x", 0x2000);
    sp_kargs_ptr(&a, "W", 0x1000);
    void **list = NULL;
    CHECK(sp_kargs_finish(&a, &list) == SPRIG_OK && list);
    if (list) {
        CHECK(*(sp_dptr *)list[0] == 0x1000 && *(sp_dptr *)list[1] == 0x2000 && *(sp_dptr *)list[2] == 0x3000);
    }

    /* a value argument: the router's threshold, read as the float it was bound as */
    sp_kargs_init(&a, router);
    const char *ptrs[] = {"Wr", "x", "scores", "ids", "counts", "union_ids", "union_count", "mask", "ws"};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; ++i) sp_kargs_ptr(&a, ptrs[i], 0x10000 * (i + 1));
    sp_kargs_f32(&a, "threshold", 0.25f);
    CHECK(sp_kargs_finish(&a, &list) == SPRIG_OK && list && *(float *)list[3] == 0.25f);

    /* optional arguments: all_active=1 leaves the routing unbound, passed as NULL */
    sp_kargs_init(&a, dense_up);
    sp_kargs_ptr(&a, "Wg", 0x1000), sp_kargs_ptr(&a, "Wu", 0x2000), sp_kargs_ptr(&a, "x", 0x3000);
    sp_kargs_ptr(&a, "h", 0x4000);
    CHECK(sp_kargs_finish(&a, &list) == SPRIG_OK && list && *(sp_dptr *)list[3] == 0 && *(sp_dptr *)list[5] == 0);

    /* misuse */
    struct {
        const char *what, *expect;
        sp_dptr W;
        int unknown, twice, as_value, skip_y;
    } bad[] = {
        {"unknown name", "no argument named 'Z'", 0x1000, 1, 0, 0, 0},
        {"unbound", "'y' is not bound", 0x1000, 0, 0, 0, 1},
        {"NULL required", "'W' is NULL", 0, 0, 0, 0, 0},
        {"misaligned", "not 16-byte aligned", 0x1008, 0, 0, 0, 0},
        {"twice", "'x' bound twice", 0x1000, 0, 1, 0, 0},
        {"pointer as value", "'W' is a pointer, bound as a value", 0x1000, 0, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        sp_kargs_init(&a, gemv);
        if (bad[i].as_value) sp_kargs_f32(&a, "W", 1.0f);
        else sp_kargs_ptr(&a, "W", bad[i].W);
        sp_kargs_ptr(&a, "x", 0x2000);
        if (bad[i].twice) sp_kargs_ptr(&a, "x", 0x2000);
        if (!bad[i].skip_y) sp_kargs_ptr(&a, "y", 0x3000);
        if (bad[i].unknown) sp_kargs_ptr(&a, "Z", 0x4000);
        CHECK_MSG(finish(&a) == SPRIG_E_INVALID, "%s accepted", bad[i].what);
        CHECK_MSG(sp_contains(sprig_last_error(), bad[i].expect) && sp_contains(sprig_last_error(), "dense_gemv:"),
                  "%s: '%s'", bad[i].what, sprig_last_error());
    }
    sp_kargs_init(&a, router);
    sp_kargs_ptr(&a, "threshold", 0x1000);
    CHECK(finish(&a) == SPRIG_E_INVALID && sp_contains(sprig_last_error(), "is a value, bound as a pointer"));
    CHECK(sp_kargs_has(&a, "threshold") && !sp_kargs_has(&a, "raw"));

    sprig_plan_free(gemv), sprig_plan_free(router), sprig_plan_free(dense_up);
    sprig_gen_close(gen);
    return sp_test_finish("test_kargs", 0);
}

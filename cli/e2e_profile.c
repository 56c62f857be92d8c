/* sprig bench-e2e --profile (e2e_profile.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_profile.h"
#include "sp_error.h"

/* The row of plan, appended on its first launch; NULL when out of memory. */
static e2e_prof_row *ep_row(e2e_profile *p, const sprig_plan *plan, int *cap) {
    for (int i = 0; i < p->n; ++i)
        if (p->rows[i].plan == plan) return &p->rows[i];
    if (p->n == *cap) {
        const int grown_cap = *cap ? 2 * *cap : 16;
        e2e_prof_row *grown = realloc(p->rows, sizeof *grown * (size_t)grown_cap);
        if (!grown) return NULL;
        p->rows = grown, *cap = grown_cap;
    }
    p->rows[p->n] = (e2e_prof_row){plan, 0, 0, 0};
    return &p->rows[p->n++];
}

sprig_status e2e_profile_begin(sp_exec *exec) {
    if (!exec->ops->profile_begin) return sp_fail(SPRIG_E_INVALID, "the %s executor cannot profile launches", exec->kind);
    return sp_exec_profile_begin(exec);
}

sprig_status e2e_profile_take(sp_exec *exec, int tokens, e2e_profile *out) {
    memset(out, 0, sizeof *out);
    sp_launch_time *times = NULL;
    int n = 0, cap = 0;
    sprig_status s = sp_exec_profile_end(exec, &times, &n);
    for (int i = 0; s == SPRIG_OK && i < n; ++i) {
        e2e_prof_row *r = ep_row(out, times[i].plan, &cap);
        if (!r) s = sp_fail(SPRIG_E_NOMEM, "out of memory summing %d profiled launches", n);
        else ++r->launches, r->us += times[i].us;
    }
    free(times);
    out->tokens = tokens;
    if (s != SPRIG_OK) e2e_profile_free(out);
    return s;
}

/* The request a plan was rendered for, from its key
 * "family:d=..,f=..,dtype=..,batch=..,g=..|params" (params into buf). */
static int ep_request(const sprig_plan *plan, char *dtype, size_t dtype_cap, char *params, size_t cap,
                      sprig_request *req) {
    const char *colon = strchr(plan->key, ':'), *bar = strchr(plan->key, '|');
    if (!colon || !bar || bar < colon) return 0;
    int d = 0, f = 0, batch = 0, g = 0;
    char dt[16] = "";
    if (sscanf(colon + 1, "d=%d,f=%d,dtype=%15[^,],batch=%d,g=%d", &d, &f, dt, &batch, &g) != 5) return 0;
    snprintf(dtype, dtype_cap, "%s", dt);
    snprintf(params, cap, "%s", bar + 1);
    *req = (sprig_request){plan->family, d, f, dtype, batch, g, params};
    return 1;
}

void e2e_profile_predict(e2e_profile *p, sprig_gen *gen, const sp_gpu_profile *gpu, double active) {
    for (int i = 0; i < p->n; ++i) {
        char dtype[16], params[1024];
        sprig_request req;
        sp_analyze_opts ao = {gpu, active, 512, NULL, ""};
        sp_analyze_plan ap;
        if (ep_request(p->rows[i].plan, dtype, sizeof dtype, params, sizeof params, &req) &&
            sp_analyze_request(gen, &req, &ao, &ap) == SPRIG_OK)
            p->rows[i].predicted_us = ap.t_us;
    }
}

void e2e_profile_print(const e2e_profile *p, const char *title, double row_ms) {
    printf("\n%s: each launch timed alone (no graph), %d tokens\n", title, p->tokens);
    printf("  %-18s %-44s %8s %9s %9s %8s %9s\n", "family", "params", "/token", "us each", "pred us", "meas/pr",
           "us/token");
    double total = 0, total_pred = 0;
    for (int i = 0; i < p->n; ++i) {
        const e2e_prof_row *r = &p->rows[i];
        const double each = r->us / r->launches, per_token = (double)r->launches / p->tokens;
        const char *bar = strchr(r->plan->key, '|');
        char shape[64] = "", dtype[16], params[1024];
        sprig_request req; /* the shape tells apart plans whose parameters print alike (q/k/v vs the LM head) */
        if (ep_request(r->plan, dtype, sizeof dtype, params, sizeof params, &req))
            snprintf(shape, sizeof shape, "%dx%d ", req.d, req.f);
        printf("  %-18s %s%-*.*s %8.2f %9.2f", r->plan->family, shape, 44 - (int)strlen(shape),
               44 - (int)strlen(shape), bar ? bar + 1 : "", per_token, each);
        if (r->predicted_us > 0) printf(" %9.2f %8.3f", r->predicted_us, each / r->predicted_us);
        else printf(" %9s %8s", "-", "-");
        printf(" %9.1f\n", r->us / p->tokens);
        total += r->us / p->tokens;
        total_pred += r->predicted_us * per_token;
    }
    printf("  kernels: %.3f ms/token measured one by one", total / 1e3);
    if (total_pred > 0) printf(" (predicted %.3f)", total_pred / 1e3);
    if (row_ms > 0) printf("; the row's %.3f ms/token leaves %.3f ms outside them (gaps, host)", row_ms,
                           row_ms - total / 1e3);
    printf("\n");
}

cJSON *e2e_profile_json(const e2e_profile *p) {
    cJSON *o = cJSON_CreateObject(), *rows = cJSON_CreateArray();
    cJSON_AddNumberToObject(o, "tokens", p->tokens);
    for (int i = 0; i < p->n; ++i) {
        const e2e_prof_row *r = &p->rows[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "key", r->plan->key);
        cJSON_AddStringToObject(j, "family", r->plan->family);
        cJSON_AddNumberToObject(j, "launches_per_token", (double)r->launches / p->tokens);
        cJSON_AddNumberToObject(j, "us_each", r->us / r->launches);
        if (r->predicted_us > 0) cJSON_AddNumberToObject(j, "predicted_us", r->predicted_us);
        cJSON_AddItemToArray(rows, j);
    }
    cJSON_AddItemToObject(o, "kernels", rows);
    return o;
}

void e2e_profile_free(e2e_profile *p) {
    free(p->rows);
    memset(p, 0, sizeof *p);
}

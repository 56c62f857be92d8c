/* The GPU backend's kernel set (sp_gpu_kernels.h): rendering each requested
 * kernel once, with its parameters from the tuning hook or the executor's
 * defaults, loading it with its workspace, and launching it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "gpu_internal.h"
#include "sp_error.h"

/* ---- tuning parameters ----------------------------------------------------------
 * The one place that decides a kernel's tuning parameters: the installed
 * tuning hook (the database), else what the executor runs by default. */
void sp_gpu_choose_params(const sp_gpu_kernels *ks, const sprig_request *req, double sparsity, char *buf,
                          size_t cap) {
    char why[512] = "";
    if (ks->tuning.choose && ks->tuning.choose(ks->tuning.ctx, req, sparsity, buf, cap, why, sizeof why)) return;
    snprintf(buf, cap, "%s", sp_exec_default_params(ks->exec, req->family));
}

void sp_gpu_kernels_set_tuning(sp_gpu_kernels *ks, const sp_tuning_hook *t) {
    if (t) ks->tuning = *t;
    else memset(&ks->tuning, 0, sizeof ks->tuning);
}

const char *sp_gpu_kernels_key(const sp_gpu_kernels *ks, int i) {
    return ks && i >= 0 && i < ks->n ? ks->items[i]->plan->key : NULL;
}

sprig_status sp_tuning_merge_params(const char *fixed, const char *tuned, char *out, size_t cap) {
    size_t n = (size_t)snprintf(out, cap, "%s", fixed ? fixed : "");
    for (const char *p = tuned ? tuned : ""; *p;) {
        const char *end = strchr(p, ','), *eq = strchr(p, '=');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        const size_t klen = eq && eq < p + len ? (size_t)(eq - p) : len;
        int taken = 0;
        for (const char *q = fixed ? fixed : ""; *q && !taken;) {
            taken = strncmp(q, p, klen) == 0 && q[klen] == '=';
            q = strchr(q, ',');
            q = q ? q + 1 : "";
        }
        if (len && !taken) n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%.*s", n ? "," : "", (int)len, p);
        p = end ? end + 1 : p + len;
    }
    if (n >= cap) return sp_fail(SPRIG_E_INVALID, "kernel parameters too long: %s + %s", fixed, tuned);
    return SPRIG_OK;
}

int sp_gpu_plan_param(const sprig_plan *plan, const char *key, char *buf, size_t cap) {
    cJSON *obj = cJSON_Parse(plan->params_json);
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    int found = 1;
    if (cJSON_IsString(v)) snprintf(buf, cap, "%s", v->valuestring);
    else if (cJSON_IsNumber(v)) snprintf(buf, cap, "%g", v->valuedouble);
    else found = 0;
    cJSON_Delete(obj);
    return found;
}

/* ---- the kernel set ------------------------------------------------------------ */
sprig_status sp_gpu_kernels_open(sp_exec *exec, sp_gpu_kernels **out) {
    *out = NULL;
    sp_gpu_kernels *ks = calloc(1, sizeof *ks);
    SP_CHECK_ALLOC(ks);
    ks->exec = exec;
    sprig_status s = sprig_gen_open(&ks->gen, NULL);
    if (s != SPRIG_OK) {
        free(ks);
        return s;
    }
    *out = ks;
    return SPRIG_OK;
}

void sp_gpu_kernels_close(sp_gpu_kernels *ks) {
    if (!ks) return;
    for (int i = 0; i < ks->n; ++i) {
        sp_gpu_kernel *k = ks->items[i];
        sp_exec_free(ks->exec, k->ws);
        sp_exec_unload(ks->exec, k->mod);
        sprig_plan_free(k->plan);
        free(k);
    }
    free(ks->items);
    free(ks->rec);
    sprig_gen_close(ks->gen);
    free(ks);
}

int sp_gpu_kernels_count(const sp_gpu_kernels *ks) { return ks ? ks->n : 0; }

/* Renders req with the tuned parameters merged over fixed (or fixed alone
 * where they do not fit); used: the parameters the plan was rendered with. */
static sprig_status render(sp_gpu_kernels *ks, sprig_request *req, const char *fixed, double sparsity,
                           sprig_plan **plan, char *used, size_t cap) {
    char params[1024], tuned[512];
    req->params = fixed;
    sp_gpu_choose_params(ks, req, sparsity, tuned, sizeof tuned);
    SP_TRY(sp_tuning_merge_params(fixed, tuned, params, sizeof params));
    req->params = params;
    sprig_status s = sprig_gen_render(ks->gen, req, plan);
    if (s == SPRIG_E_INVALID && *tuned) {
        /* tuned parameters that do not fit this exact problem: the defaults always do */
        req->params = fixed;
        s = sprig_gen_render(ks->gen, req, plan);
    }
    snprintf(used, cap, "%s", req->params ? req->params : "");
    req->params = NULL;
    return s;
}

/* Takes ownership of plan: loads it (with a zeroed workspace) or frees it on failure. */
static sprig_status load(sp_gpu_kernels *ks, sprig_plan *plan, sp_gpu_kernel **out) {
    sp_gpu_kernel *k = calloc(1, sizeof *k);
    if (k && ks->n == ks->cap) {
        const int cap = ks->cap ? 2 * ks->cap : 16;
        sp_gpu_kernel **grown = realloc(ks->items, sizeof *grown * (size_t)cap);
        if (grown) ks->items = grown, ks->cap = cap;
    }
    if (!k || ks->n == ks->cap) { /* the set keeps its old items on failure */
        free(k);
        sprig_plan_free(plan);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    k->plan = plan;
    if (!ks->exec) { /* a set that only describes: rendered, never loaded */
        ks->items[ks->n++] = k;
        *out = k;
        return SPRIG_OK;
    }
    sprig_status s = sp_exec_load(ks->exec, plan, &k->mod);
    if (s == SPRIG_OK && plan->workspace_bytes) {
        s = sp_exec_alloc(ks->exec, &k->ws, plan->workspace_bytes);
        if (s == SPRIG_OK) s = sp_exec_fill(ks->exec, k->ws, 0, plan->workspace_bytes);
    }
    if (s != SPRIG_OK) {
        sp_exec_free(ks->exec, k->ws);
        sp_exec_unload(ks->exec, k->mod);
        free(k);
        sprig_plan_free(plan);
        return s;
    }
    ks->items[ks->n++] = k;
    *out = k;
    return SPRIG_OK;
}

sprig_status sp_gpu_kernel_get(sp_gpu_kernels *ks, const char *family, int d, int f, const char *dtype, int g,
                               const char *fixed, double sparsity, sp_gpu_kernel **out) {
    *out = NULL;
    sprig_request req = {family, d, f, dtype, 1, g, NULL};
    sprig_plan *plan = NULL;
    char used[1024];
    sprig_status s = render(ks, &req, fixed, sparsity, &plan, used, sizeof used);
    if (s != SPRIG_OK)
        return sp_wrap(s, "kernel %s (d=%d, f=%d, %s, g=%d, %s)", family, d, f, dtype, g, fixed);
    for (int i = 0; i < ks->n; ++i)
        if (strcmp(ks->items[i]->plan->key, plan->key) == 0) {
            sprig_plan_free(plan);
            *out = ks->items[i];
            return SPRIG_OK;
        }
    char key[256];
    snprintf(key, sizeof key, "%s", plan->key);
    s = load(ks, plan, out);
    if (s == SPRIG_OK) {
        sp_gpu_kernel *k = *out;
        k->d = d, k->f = f, k->g = g;
        snprintf(k->params, sizeof k->params, "%s", used);
    }
    return s == SPRIG_OK ? s : sp_wrap(s, "kernel %s", key);
}

sprig_status sp_gpu_kernel_launch(sp_gpu_kernels *ks, sp_gpu_kernel *k, sp_kargs *args) {
    if (!ks->recording) return sp_kargs_launch(ks->exec, k->mod, args);
    if (ks->n_rec == ks->cap_rec) {
        const int cap = ks->cap_rec ? 2 * ks->cap_rec : 64;
        sp_gpu_kernel **grown = realloc(ks->rec, sizeof *grown * (size_t)cap);
        SP_CHECK_ALLOC(grown);
        ks->rec = grown, ks->cap_rec = cap;
    }
    ks->rec[ks->n_rec++] = k;
    return SPRIG_OK;
}

void sp_gpu_kernels_record(sp_gpu_kernels *ks, int on) {
    ks->recording = on;
    if (on) ks->n_rec = 0;
}

sprig_status sp_gpu_kernels_recorded(const sp_gpu_kernels *ks, sp_gpu_step *out) {
    memset(out, 0, sizeof *out);
    out->launches = calloc((size_t)(ks->n_rec ? ks->n_rec : 1), sizeof *out->launches);
    SP_CHECK_ALLOC(out->launches);
    for (int i = 0; i < ks->n_rec; ++i) {
        const sp_gpu_kernel *k = ks->rec[i];
        sp_gpu_launch *l = &out->launches[out->n++];
        l->plan = k->plan;
        l->d = k->d, l->f = k->f, l->g = k->g;
        snprintf(l->params, sizeof l->params, "%s", k->params);
        out->kernels += k->plan->n_kernels;
    }
    return SPRIG_OK;
}

void sp_gpu_step_free(sp_gpu_step *s) {
    if (!s) return;
    free(s->launches);
    memset(s, 0, sizeof *s);
}

/* sprig_gen_render: a request goes to Lua (sprig.gen.render) and comes back
 * as a sprig_plan the C side owns. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <xxhash.h>

#include "lua_json.h"
#include "sp_error.h"
#include "gen_internal.h"

void sprig_plan_free(sprig_plan *plan) {
    if (!plan) return;
    free(plan->family);
    free(plan->source);
    free(plan->key);
    free(plan->params_json);
    free(plan);
}

void sp_gen_push_request(lua_State *L, const sprig_request *req, const char *params) {
    lua_createtable(L, 0, 7);
    lua_pushstring(L, req->family ? req->family : "");
    lua_setfield(L, -2, "family");
    lua_pushinteger(L, req->d);
    lua_setfield(L, -2, "d");
    lua_pushinteger(L, req->f);
    lua_setfield(L, -2, "f");
    lua_pushstring(L, req->dtype ? req->dtype : "fp16");
    lua_setfield(L, -2, "dtype");
    lua_pushinteger(L, req->batch);
    lua_setfield(L, -2, "batch");
    lua_pushinteger(L, req->g);
    lua_setfield(L, -2, "g");
    lua_pushstring(L, params ? params : "");
    lua_setfield(L, -2, "params");
}

static char *dup_field(lua_State *L, int idx, const char *name) {
    lua_getfield(L, idx, name);
    const char *s = lua_tostring(L, -1);
    char *copy = s ? strdup(s) : NULL;
    lua_pop(L, 1);
    return copy;
}

static unsigned int_at(lua_State *L, int table, int i) {
    lua_rawgeti(L, table, i);
    lua_Integer v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return (unsigned)(v < 0 ? 0 : v);
}

static sprig_status read_kernels(lua_State *L, int plan_idx, sprig_plan *plan) {
    lua_getfield(L, plan_idx, "kernels");
    int kt = lua_gettop(L);
    int n = (int)lua_rawlen(L, kt);
    if (n < 1 || n > SPRIG_MAX_KERNELS) {
        lua_pop(L, 1);
        return sp_fail(SPRIG_E_INTERNAL, "family %s planned %d kernels (1..%d allowed)", plan->family, n,
                       SPRIG_MAX_KERNELS);
    }
    plan->n_kernels = n;
    for (int i = 0; i < n; ++i) {
        lua_rawgeti(L, kt, i + 1);
        int k = lua_gettop(L);
        sprig_launch *l = &plan->kernels[i];
        lua_getfield(L, k, "name");
        snprintf(l->name, sizeof l->name, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_pop(L, 1);
        lua_getfield(L, k, "grid");
        lua_getfield(L, k, "block");
        for (int j = 0; j < 3; ++j) {
            l->grid[j] = int_at(L, -2, j + 1);
            l->block[j] = int_at(L, -1, j + 1);
        }
        lua_pop(L, 2);
        lua_getfield(L, k, "smem");
        l->smem_bytes = (unsigned)lua_tointeger(L, -1);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    return SPRIG_OK;
}

static sprig_arg_dir arg_dir(const char *dir) {
    if (!strcmp(dir, "out")) return SPRIG_ARG_OUT;
    if (!strcmp(dir, "inout")) return SPRIG_ARG_INOUT;
    if (!strcmp(dir, "scratch")) return SPRIG_ARG_SCRATCH;
    return SPRIG_ARG_IN;
}

static lua_Integer int_field(lua_State *L, int idx, const char *name) {
    lua_getfield(L, idx, name);
    lua_Integer v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

static void text_field(lua_State *L, int idx, const char *name, char *out, size_t cap) {
    lua_getfield(L, idx, name);
    snprintf(out, cap, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
}

/* The declared argument list (lua/sprig/args.lua has already checked it). */
static sprig_status read_args(lua_State *L, int plan_idx, sprig_plan *plan) {
    lua_getfield(L, plan_idx, "args");
    int at = lua_gettop(L);
    int n = (int)lua_rawlen(L, at);
    if (n < 1 || n > SPRIG_MAX_ARGS) {
        lua_pop(L, 1);
        return sp_fail(SPRIG_E_INTERNAL, "family %s declared %d arguments (1..%d allowed)", plan->family, n,
                       SPRIG_MAX_ARGS);
    }
    plan->n_args = n;
    for (int i = 0; i < n; ++i) {
        lua_rawgeti(L, at, i + 1);
        int k = lua_gettop(L);
        sprig_arg *a = &plan->args[i];
        char dir[16];
        text_field(L, k, "name", a->name, sizeof a->name);
        text_field(L, k, "type", a->type, sizeof a->type);
        text_field(L, k, "role", a->role, sizeof a->role);
        text_field(L, k, "dir", dir, sizeof dir);
        a->dir = arg_dir(dir);
        lua_getfield(L, k, "pointer");
        a->pointer = lua_toboolean(L, -1);
        lua_getfield(L, k, "optional");
        a->optional = lua_toboolean(L, -1);
        lua_pop(L, 2);
        a->count = (size_t)int_field(L, k, "count");
        a->rows = (size_t)int_field(L, k, "rows");
        a->cols = (size_t)int_field(L, k, "cols");
        a->align = (int)int_field(L, k, "align");
        a->fan_in = (int)int_field(L, k, "fan_in");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    text_field(L, plan_idx, "verify", plan->verify, sizeof plan->verify);
    return SPRIG_OK;
}

/* XXH3 over every file the render read (template, includes, family spec). */
static uint64_t hash_files(sprig_gen *gen, lua_State *L, int plan_idx) {
    XXH3_state_t *st = XXH3_createState();
    if (!st) return 0;
    XXH3_64bits_reset(st);
    lua_getfield(L, plan_idx, "files");
    int n = (int)lua_rawlen(L, -1);
    for (int i = 1; i <= n; ++i) {
        lua_rawgeti(L, -1, i);
        const char *path = lua_tostring(L, -1);
        size_t len = 0;
        char *text = path ? sp_gen_read_file(gen, path, &len) : NULL;
        if (text) {
            XXH3_64bits_update(st, path, strlen(path) + 1);
            XXH3_64bits_update(st, text, len);
            free(text);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

static sprig_status fill_plan(sprig_gen *gen, int plan_idx, sprig_plan *plan) {
    lua_State *L = gen->L;
    plan->family = dup_field(L, plan_idx, "family");
    plan->key = dup_field(L, plan_idx, "key");
    lua_getfield(L, plan_idx, "source");
    size_t len = 0;
    const char *src = lua_tolstring(L, -1, &len);
    plan->source = src ? malloc(len + 1) : NULL;
    if (plan->source) {
        memcpy(plan->source, src, len + 1);
        plan->source_len = len;
    }
    lua_pop(L, 1);
    SP_CHECK_ALLOC(plan->family);
    SP_CHECK_ALLOC(plan->key);
    SP_CHECK_ALLOC(plan->source);
    lua_getfield(L, plan_idx, "workspace");
    plan->workspace_bytes = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    /* params: ordered {{name, value}, ...} -> a JSON object in declaration order */
    cJSON *obj = cJSON_CreateObject();
    SP_CHECK_ALLOC(obj);
    lua_getfield(L, plan_idx, "params");
    int n = (int)lua_rawlen(L, -1);
    for (int i = 1; i <= n; ++i) {
        lua_rawgeti(L, -1, i);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        cJSON *v = sp_lua_to_json(L, -1);
        if (v) cJSON_AddItemToObject(obj, lua_tostring(L, -2), v);
        lua_pop(L, 3);
    }
    lua_pop(L, 1);
    plan->params_json = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    SP_CHECK_ALLOC(plan->params_json);
    plan->template_hash = hash_files(gen, L, plan_idx);
    SP_TRY(read_args(L, plan_idx, plan));
    return read_kernels(L, plan_idx, plan);
}

sprig_status sprig_gen_render(sprig_gen *gen, const sprig_request *req, sprig_plan **out) {
    if (!gen || !req || !out) return sp_fail(SPRIG_E_INVALID, "sprig_gen_render: NULL argument");
    *out = NULL;
    lua_State *L = gen->L;
    int top = lua_gettop(L);
    SP_TRY(sp_gen_require(gen, "sprig.gen"));
    lua_getfield(L, -1, "render");
    sp_gen_push_request(L, req, req->params);
    lua_getglobal(L, "sp_load_file");
    lua_getglobal(L, "sp_require");
    sprig_status s = sp_gen_pcall(gen, 3, 3);
    if (s != SPRIG_OK) {
        lua_settop(L, top);
        return s;
    }
    if (lua_isnil(L, -3)) {
        const char *kind = lua_tostring(L, -2);
        const char *msg = lua_tostring(L, -1);
        s = sp_fail(kind && strcmp(kind, "template") == 0 ? SPRIG_E_TEMPLATE : SPRIG_E_INVALID, "%s",
                    msg ? msg : "(no message)");
        lua_settop(L, top);
        return s;
    }
    sprig_plan *plan = calloc(1, sizeof *plan);
    if (!plan) {
        lua_settop(L, top);
        return sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    s = fill_plan(gen, lua_absindex(L, -3), plan);
    lua_settop(L, top);
    if (s != SPRIG_OK) {
        sprig_plan_free(plan);
        return s;
    }
    *out = plan;
    return SPRIG_OK;
}

static sprig_status call_to_json(sprig_gen *gen, const char *fn, int pass_require, char **out_json) {
    if (!gen || !out_json) return sp_fail(SPRIG_E_INVALID, "%s: NULL argument", fn);
    lua_State *L = gen->L;
    int top = lua_gettop(L);
    SP_TRY(sp_gen_require(gen, "sprig.gen"));
    lua_getfield(L, -1, fn);
    if (pass_require) lua_getglobal(L, "sp_require");
    sprig_status s = sp_gen_pcall(gen, pass_require, 1);
    if (s != SPRIG_OK) {
        lua_settop(L, top);
        return s;
    }
    cJSON *j = sp_lua_to_json(L, -1);
    lua_settop(L, top);
    SP_CHECK_ALLOC(j);
    *out_json = cJSON_Print(j);
    cJSON_Delete(j);
    SP_CHECK_ALLOC(*out_json);
    return SPRIG_OK;
}

sprig_status sprig_gen_families_json(sprig_gen *gen, char **out_json) {
    return call_to_json(gen, "describe", 1, out_json);
}

sprig_status sprig_gen_models_json(sprig_gen *gen, char **out_json) {
    return call_to_json(gen, "models", 0, out_json);
}

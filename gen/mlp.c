/* The MLP conventions of the family specs (see sp_gen_mlp.h), read from
 * lua/sprig/mlp.lua. */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "gen_internal.h"
#include "sp_error.h"
#include "sp_gen_mlp.h"

/* Calls sprig.mlp.<fn>(args..., sp_require) leaving nres results. */
static sprig_status call(sprig_gen *gen, const char *fn, int nargs, int nres) {
    lua_State *L = gen->L;
    SP_TRY(sp_gen_require(gen, "sprig.mlp"));
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_insert(L, -(nargs + 1)); /* the function under its arguments */
    lua_getglobal(L, "sp_require");
    return sp_gen_pcall(gen, nargs + 1, nres);
}

/* The array of strings on top of the stack into out (popped). */
static sprig_status read_names(lua_State *L, sp_gen_names *out) {
    memset(out, 0, sizeof *out);
    const int n = (int)lua_rawlen(L, -1);
    if (n > SP_GEN_MAX_NAMES) {
        lua_pop(L, 1);
        return sp_fail(SPRIG_E_INTERNAL, "an MLP list of %d names, more than %d", n, SP_GEN_MAX_NAMES);
    }
    for (int i = 0; i < n; ++i) {
        lua_rawgeti(L, -1, i + 1);
        snprintf(out->name[i], sizeof out->name[i], "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_pop(L, 1);
    }
    out->n = n;
    lua_pop(L, 1);
    return SPRIG_OK;
}

sprig_status sp_gen_mlp_families(sprig_gen *gen, sp_gen_names *out) {
    const int top = lua_gettop(gen->L);
    sprig_status s = call(gen, "families", 0, 1);
    if (s == SPRIG_OK) s = read_names(gen->L, out);
    lua_settop(gen->L, top);
    return s;
}

sprig_status sp_gen_mlp_fixed(sprig_gen *gen, const char *family, double sparsity, sp_gen_names *out) {
    lua_State *L = gen->L;
    const int top = lua_gettop(L);
    lua_pushstring(L, family);
    lua_pushnumber(L, sparsity);
    sprig_status s = call(gen, "fixed", 2, 1);
    if (s == SPRIG_OK) s = read_names(L, out);
    lua_settop(L, top);
    return s;
}

int sp_gen_mlp_default(sprig_gen *gen, const char *family, int batch) {
    lua_State *L = gen->L;
    const int top = lua_gettop(L);
    lua_pushstring(L, family);
    lua_pushinteger(L, batch);
    int yes = call(gen, "default", 2, 1) == SPRIG_OK && lua_toboolean(L, -1);
    lua_settop(L, top);
    return yes;
}

/* {family, 1-based variant[, extra params]} at idx into st. */
static void read_stage(lua_State *L, int idx, sp_gen_stage *st) {
    lua_rawgeti(L, idx, 1);
    snprintf(st->family, sizeof st->family, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    lua_rawgeti(L, idx, 2);
    st->variant = (int)lua_tointeger(L, -1) - 1;
    lua_rawgeti(L, idx, 3);
    snprintf(st->extra, sizeof st->extra, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 3);
}

sprig_status sp_gen_mlp_pipelines(sprig_gen *gen, sp_gen_pipelines *out) {
    lua_State *L = gen->L;
    const int top = lua_gettop(L);
    memset(out, 0, sizeof *out);
    sprig_status s = call(gen, "pipelines", 0, 2);
    if (s != SPRIG_OK) return lua_settop(L, top), s;
    read_stage(L, lua_gettop(L), &out->router);
    const int list = lua_gettop(L) - 1;
    const int n = (int)lua_rawlen(L, list);
    for (int i = 0; i < n && i < 8; ++i) {
        lua_rawgeti(L, list, i + 1);
        const int p = lua_gettop(L);
        sp_gen_pipeline *pl = &out->items[out->n++];
        lua_getfield(L, p, "routes");
        pl->routes = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, p, "name");
        snprintf(pl->name, sizeof pl->name, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_getfield(L, p, "stages");
        const int st = lua_gettop(L);
        for (int k = 0; k < (int)lua_rawlen(L, st) && k < SP_GEN_MAX_STAGES; ++k) {
            lua_rawgeti(L, st, k + 1);
            read_stage(L, lua_gettop(L), &pl->stages[pl->n++]);
            lua_pop(L, 1);
        }
        lua_pop(L, 3);
    }
    lua_settop(L, top);
    return SPRIG_OK;
}

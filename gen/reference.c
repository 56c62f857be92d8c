/* A family's Lua reference (see sp_gen_reference.h): arrays in, arrays out. */
#include <lauxlib.h>

#include "gen_internal.h"
#include "sp_error.h"
#include "sp_gen_reference.h"

/* Pushes {name = {v1, v2, ...}, ...} (1-based arrays of numbers). */
static void push_inputs(lua_State *L, int n, const char *const *names, const float *const *vals,
                        const size_t *counts) {
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; ++i) {
        lua_createtable(L, (int)counts[i], 0);
        for (size_t k = 0; k < counts[i]; ++k) {
            lua_pushnumber(L, (lua_Number)vals[i][k]);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        lua_setfield(L, -2, names[i]);
    }
}

/* Copies outputs[name] (a 1-based array of count numbers) into out. */
static sprig_status read_output(lua_State *L, int t, const sprig_request *req, const char *name, double *out,
                                size_t count) {
    lua_getfield(L, t, name);
    sprig_status s = SPRIG_OK;
    if (!lua_istable(L, -1)) {
        s = sp_fail(SPRIG_E_INVALID, "%s: its reference returned no output '%s'", req->family, name);
    } else if ((size_t)lua_rawlen(L, -1) != count) {
        s = sp_fail(SPRIG_E_INVALID, "%s: its reference returned %zu values for '%s', the plan declares %zu",
                    req->family, (size_t)lua_rawlen(L, -1), name, count);
    } else {
        for (size_t k = 0; k < count; ++k) {
            lua_rawgeti(L, -1, (lua_Integer)k + 1);
            out[k] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return s;
}

sprig_status sp_gen_reference(sprig_gen *gen, const sprig_request *req, int n_in, const char *const *in_names,
                              const float *const *in_vals, const size_t *in_counts, int n_out,
                              const char *const *out_names, double *const *out_vals, const size_t *out_counts) {
    if (!gen || !req) return sp_fail(SPRIG_E_INVALID, "sp_gen_reference: NULL argument");
    lua_State *L = gen->L;
    const int top = lua_gettop(L);
    SP_TRY(sp_gen_require(gen, "sprig.gen"));
    lua_getfield(L, -1, "reference");
    sp_gen_push_request(L, req, req->params);
    push_inputs(L, n_in, in_names, in_vals, in_counts);
    lua_getglobal(L, "sp_require");
    sprig_status s = sp_gen_pcall(gen, 3, 2);
    if (s == SPRIG_OK && lua_isnil(L, -2))
        s = sp_fail(SPRIG_E_INVALID, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "no reference");
    for (int i = 0; s == SPRIG_OK && i < n_out; ++i)
        s = read_output(L, lua_absindex(L, -2), req, out_names[i], out_vals[i], out_counts[i]);
    lua_settop(L, top);
    return s;
}

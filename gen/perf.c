/* A family's perf() (see sp_gen_perf.h), read from Lua. */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "gen_internal.h"
#include "sp_error.h"
#include "sp_gen_perf.h"

static double num_field(lua_State *L, int idx, const char *name) {
    lua_getfield(L, idx, name);
    const double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

sprig_status sp_gen_perf_of(sprig_gen *gen, const sprig_request *req, double active, int context, sp_gen_perf *out,
                            int cap, int *n) {
    *n = 0;
    lua_State *L = gen->L;
    const int top = lua_gettop(L);
    SP_TRY(sp_gen_require(gen, "sprig.gen"));
    lua_getfield(L, -1, "perf");
    sp_gen_push_request(L, req, req->params);
    lua_pushnumber(L, active);
    lua_pushinteger(L, context);
    lua_getglobal(L, "sp_require");
    sprig_status s = sp_gen_pcall(gen, 4, 2);
    if (s == SPRIG_OK && lua_isnil(L, -2))
        s = sp_fail(SPRIG_E_INVALID, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "no perf()");
    if (s == SPRIG_OK) {
        const int t = lua_absindex(L, -2);
        const int count = (int)lua_rawlen(L, t);
        for (int i = 0; i < count && i < cap; ++i) {
            lua_rawgeti(L, t, i + 1);
            const int k = lua_gettop(L);
            sp_gen_perf *p = &out[i];
            memset(p, 0, sizeof *p);
            lua_getfield(L, k, "name");
            snprintf(p->name, sizeof p->name, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
            lua_pop(L, 1);
            p->read = num_field(L, k, "read"), p->write = num_field(L, k, "write");
            p->inflight = num_field(L, k, "inflight"), p->load_bytes = num_field(L, k, "load_bytes");
            p->working = num_field(L, k, "working"), p->rounds = num_field(L, k, "rounds");
            p->unsized = num_field(L, k, "unsized");
            p->l2_rounds = num_field(L, k, "l2_rounds");
            p->grid_syncs = (int)num_field(L, k, "grid_syncs");
            lua_getfield(L, k, "tail");
            p->tail = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : -1;
            lua_pop(L, 1);
            p->ctas = (unsigned)num_field(L, k, "ctas"), p->threads = (unsigned)num_field(L, k, "threads");
            p->smem = (int)num_field(L, k, "smem");
            lua_getfield(L, k, "hot");
            p->hot = lua_toboolean(L, -1);
            lua_pop(L, 1);
            lua_getfield(L, k, "prefetch");
            p->prefetch = lua_toboolean(L, -1);
            lua_pop(L, 1);
            lua_pop(L, 1);
            *n = i + 1;
        }
    }
    lua_settop(L, top);
    return s;
}

static void str_field(lua_State *L, int idx, const char *name, char *out, size_t cap) {
    lua_getfield(L, idx, name);
    snprintf(out, cap, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
}

sprig_status sp_gen_gpu_profile(sprig_gen *gen, const char *name, sp_gpu_profile *out) {
    memset(out, 0, sizeof *out);
    lua_State *L = gen->L;
    const int top = lua_gettop(L);
    SP_TRY(sp_gen_require(gen, "sprig.gpus"));
    lua_getfield(L, -1, "find");
    lua_pushstring(L, name ? name : "");
    sp_gen_call_begin(gen);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        sprig_status s = sp_fail(SPRIG_E_INVALID, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "no profile");
        lua_settop(L, top);
        return s;
    }
    const int t = lua_gettop(L);
    str_field(L, t, "name", out->name, sizeof out->name);
    str_field(L, t, "full", out->full, sizeof out->full);
    str_field(L, t, "arch", out->arch, sizeof out->arch);
    out->read_gbs = num_field(L, t, "read_gbs");
    lua_getfield(L, t, "measured");
    out->measured = lua_toboolean(L, -1);
    lua_pop(L, 1);
    out->sms = (int)num_field(L, t, "sms");
    out->l2_mb = num_field(L, t, "l2_mb");
    out->regs_per_sm = (int)num_field(L, t, "regs_per_sm");
    out->smem_per_sm_kb = (int)num_field(L, t, "smem_per_sm_kb");
    out->max_threads_per_sm = (int)num_field(L, t, "max_threads_per_sm");
    out->max_ctas_per_sm = (int)num_field(L, t, "max_ctas_per_sm");
    out->latency_ns = num_field(L, t, "latency_ns");
    out->l2_latency_ns = num_field(L, t, "l2_latency_ns");
    out->launch_us = num_field(L, t, "launch_us");
    out->kernel_us = num_field(L, t, "kernel_us");
    lua_settop(L, top);
    return SPRIG_OK;
}

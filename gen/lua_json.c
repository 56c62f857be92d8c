#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "lua_json.h"

static int is_array(lua_State *L, int idx) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) {
            lua_pop(L, 1);
            return 0;
        }
        ++count;
    }
    return count == n && n > 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static cJSON *object_to_json(lua_State *L, int idx) {
    cJSON *obj = cJSON_CreateObject();
    if (!obj) return NULL;
    /* Collect string keys, sort them so the JSON is deterministic. */
    size_t n = 0, cap = 16;
    const char **keys = malloc(cap * sizeof *keys);
    lua_pushnil(L);
    while (keys && lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) continue;
        if (n == cap) {
            const char **grown = realloc(keys, (cap *= 2) * sizeof *keys);
            if (!grown) { free(keys); keys = NULL; lua_pop(L, 1); break; }
            keys = grown;
        }
        keys[n++] = lua_tostring(L, -1); /* the key stays referenced by the table */
    }
    if (!keys) {
        cJSON_Delete(obj);
        return NULL;
    }
    qsort(keys, n, sizeof *keys, cmp_str);
    for (size_t i = 0; i < n; ++i) {
        lua_getfield(L, idx, keys[i]);
        cJSON *child = sp_lua_to_json(L, lua_gettop(L));
        lua_pop(L, 1);
        if (child) cJSON_AddItemToObject(obj, keys[i], child);
    }
    free(keys);
    return obj;
}

cJSON *sp_lua_to_json(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER: return cJSON_CreateNumber(lua_tonumber(L, idx));
    case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TTABLE:
        if (is_array(L, idx)) {
            cJSON *arr = cJSON_CreateArray();
            lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
            for (lua_Integer i = 1; arr && i <= n; ++i) {
                lua_rawgeti(L, idx, i);
                cJSON *child = sp_lua_to_json(L, lua_gettop(L));
                lua_pop(L, 1);
                if (child) cJSON_AddItemToArray(arr, child);
            }
            return arr;
        }
        return object_to_json(L, idx);
    default: return cJSON_CreateNull();
    }
}

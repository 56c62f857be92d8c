/* Converting Lua values to cJSON (for plans, family listings, tuning spaces). */
#ifndef SP_LUA_JSON_H
#define SP_LUA_JSON_H
#include <cjson/cJSON.h>
#include <lua.h>

/* The value at idx as a new cJSON tree (NULL on allocation failure).
 * Tables with keys 1..n only become arrays; others objects with sorted keys. */
cJSON *sp_lua_to_json(lua_State *L, int idx);
#endif

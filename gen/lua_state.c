/* The embedded, sandboxed Lua state that runs the template engine.
 * Only the base, string, table, math and utf8 libraries are opened; dofile and
 * loadfile are removed; modules come from the embedded copies of lua/ through
 * a private loader, never from the file system's package.path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lualib.h>

#include "embedded.h"
#include "sp_error.h"
#include "sp_file.h"
#include "gen_internal.h"

/* Template overrides are source files: nothing legitimate comes near this. */
#define GEN_MAX_TEMPLATE_BYTES ((size_t)16 << 20)

/* A source path stays inside the source root: relative, no ".." component. */
static int path_is_contained(const char *path) {
    if (!path || path[0] == '/' || path[0] == '\0') return 0;
    for (const char *p = path; *p;) {
        const char *slash = strchr(p, '/');
        const size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return 0;
        p += n + (slash ? 1 : 0);
    }
    return 1;
}

char *sp_gen_read_file(const sprig_gen *gen, const char *path, size_t *len) {
    if (!path_is_contained(path)) return NULL; /* include("templates/../../etc/x") reads nothing */
    if (gen->template_dir && strncmp(path, "templates/", 10) == 0) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", gen->template_dir, path + 10);
        char *text = NULL;
        if (sp_file_read(full, GEN_MAX_TEMPLATE_BYTES, &text, len, NULL) == SPRIG_OK) return text;
    }
    const sp_embedded_file *f = sp_embedded_find(path);
    if (!f) return NULL;
    char *copy = malloc(f->size + 1);
    if (!copy) return NULL;
    memcpy(copy, f->data, f->size + 1);
    if (len) *len = f->size;
    return copy;
}

/* Lua: sp_load_file(path) -> text | nil */
static int l_load_file(lua_State *L) {
    const sprig_gen *gen = lua_touserdata(L, lua_upvalueindex(1));
    const char *path = luaL_checkstring(L, 1);
    size_t len = 0;
    char *text = sp_gen_read_file(gen, path, &len);
    if (!text) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, text, len);
    free(text);
    return 1;
}

/* Lua: sp_embedded_list(prefix) -> the embedded files' paths that start with
 * prefix, in sorted order (e.g. every family spec under "lua/families/"). */
static int l_embedded_list(lua_State *L) {
    const char *prefix = luaL_checkstring(L, 1);
    const size_t n = strlen(prefix);
    lua_newtable(L);
    int i = 0;
    for (const sp_embedded_file *f = sp_embedded_files; f->path; ++f)
        if (strncmp(f->path, prefix, n) == 0) {
            lua_pushstring(L, f->path);
            lua_rawseti(L, -2, ++i);
        }
    return 1;
}

/* Lua: sp_require(name) -> module, loaded once from lua/<name with / for .>.lua */
static int l_require(lua_State *L) {
    const sprig_gen *gen = lua_touserdata(L, lua_upvalueindex(1));
    const char *name = luaL_checkstring(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "sp_loaded");
    if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    char path[512];
    snprintf(path, sizeof path, "lua/%s.lua", name);
    for (char *c = path + 4; *c; ++c)
        if (*c == '.' && strcmp(c, ".lua") != 0) *c = '/';
    size_t len = 0;
    char *text = sp_gen_read_file(gen, path, &len);
    if (!text) return luaL_error(L, "module '%s' not found (%s)", name, path);
    char chunkname[520];
    snprintf(chunkname, sizeof chunkname, "@%s", path);
    int rc = luaL_loadbuffer(L, text, len, chunkname);
    free(text);
    if (rc != LUA_OK) return lua_error(L);
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
    return 1;
}

static void open_sandboxed_libs(lua_State *L) {
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8}, {NULL, NULL}};
    for (const luaL_Reg *lib = libs; lib->func; ++lib) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    lua_setglobal(L, "dofile");
    lua_pushnil(L);
    lua_setglobal(L, "loadfile");
}

/* The Lua state's allocator: realloc, within SP_GEN_LUA_MAX_BYTES. */
static void *lua_alloc_capped(void *ud, void *ptr, size_t osize, size_t nsize) {
    sprig_gen *gen = ud;
    const size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        gen->lua_bytes -= old;
        return NULL;
    }
    if (nsize > old && gen->lua_bytes - old + nsize > SP_GEN_LUA_MAX_BYTES) return NULL; /* Lua raises "not enough memory" */
    void *p = realloc(ptr, nsize);
    if (p) gen->lua_bytes = gen->lua_bytes - old + nsize;
    return p;
}

/* Every million instructions: stop a call that has run too long. */
static void lua_step_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    sprig_gen *gen = NULL;
    lua_getallocf(L, (void **)&gen);
    if (gen && ++gen->lua_steps > SP_GEN_LUA_MAX_STEPS)
        luaL_error(L, "ran more than %d million Lua instructions (an endless loop in a template?)",
                   (int)SP_GEN_LUA_MAX_STEPS);
}

void sp_gen_call_begin(sprig_gen *gen) { gen->lua_steps = 0; }

sprig_status sprig_gen_open(sprig_gen **out, const char *template_dir) {
    if (!out) return sp_fail(SPRIG_E_INVALID, "sprig_gen_open: out is NULL");
    *out = NULL;
    sprig_gen *gen = calloc(1, sizeof *gen);
    SP_CHECK_ALLOC(gen);
    if (template_dir && *template_dir) {
        struct stat st;
        if (stat(template_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            free(gen);
            return sp_fail(SPRIG_E_INVALID, "template folder '%s' is not a readable directory", template_dir);
        }
        gen->template_dir = strdup(template_dir);
        if (!gen->template_dir) {
            free(gen);
            return sp_fail(SPRIG_E_NOMEM, "out of memory");
        }
    }
    gen->L = lua_newstate(lua_alloc_capped, gen);
    if (!gen->L) {
        sprig_gen_close(gen);
        return sp_fail(SPRIG_E_NOMEM, "could not create a Lua state");
    }
    lua_State *L = gen->L;
    lua_sethook(L, lua_step_hook, LUA_MASKCOUNT, 1000000);
    open_sandboxed_libs(L);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "sp_loaded");
    lua_pushlightuserdata(L, gen);
    lua_pushcclosure(L, l_load_file, 1);
    lua_setglobal(L, "sp_load_file");
    lua_pushlightuserdata(L, gen);
    lua_pushcclosure(L, l_require, 1);
    lua_setglobal(L, "sp_require");
    lua_pushcfunction(L, l_embedded_list);
    lua_setglobal(L, "sp_embedded_list");
    /* The Lua modules use plain require(); route it to the embedded loader. */
    lua_getglobal(L, "sp_require");
    lua_setglobal(L, "require");
    sprig_status s = sp_gen_require(gen, "sprig.gen");
    if (s != SPRIG_OK) {
        sprig_gen_close(gen);
        return s;
    }
    lua_pop(L, 1);
    *out = gen;
    return SPRIG_OK;
}

void sprig_gen_close(sprig_gen *gen) {
    if (!gen) return;
    if (gen->L) lua_close(gen->L);
    free(gen->template_dir);
    free(gen);
}

sprig_status sp_gen_pcall(sprig_gen *gen, int nargs, int nresults) {
    sp_gen_call_begin(gen);
    if (lua_pcall(gen->L, nargs, nresults, 0) != LUA_OK) {
        const char *msg = lua_tostring(gen->L, -1);
        sprig_status s = sp_fail(SPRIG_E_INTERNAL, "lua: %s", msg ? msg : "(no message)");
        lua_pop(gen->L, 1);
        return s;
    }
    return SPRIG_OK;
}

sprig_status sp_gen_require(sprig_gen *gen, const char *name) {
    lua_getglobal(gen->L, "sp_require");
    lua_pushstring(gen->L, name);
    return sp_gen_pcall(gen, 1, 1);
}

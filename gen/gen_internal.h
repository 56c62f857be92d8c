/* Internal view of a generator (gen/): its Lua state, for the tuner and CLI
 * modules that ask Lua about tuning spaces and shapes. */
#ifndef SP_GEN_H
#define SP_GEN_H

#include <lua.h>

#include "sprig.h"

struct sprig_gen {
    lua_State *L;        /* sandboxed: base (no dofile/loadfile), string, table, math, utf8 */
    char *template_dir;  /* owned; NULL when only embedded templates are used */
    size_t lua_bytes;    /* the Lua state's allocations now (capped: SP_GEN_LUA_MAX_BYTES) */
    long lua_steps;      /* millions of Lua instructions in the current call (capped: SP_GEN_LUA_MAX_STEPS) */
};

/* The sandbox's limits: a template (--template-dir) that loops or allocates
 * without end fails its render with a clear error instead of hanging. A
 * render of the largest plan takes well under 1% of either. */
#define SP_GEN_LUA_MAX_BYTES ((size_t)256 << 20)
#define SP_GEN_LUA_MAX_STEPS 1000L /* x 1e6 instructions, per call from C */

/* Every call into Lua from C goes through one of these, which reset the
 * instruction count (sp_gen_pcall, or this before a raw lua_pcall). */
void sp_gen_call_begin(sprig_gen *gen);

/* Reads a source file by its path relative to the source root: the template
 * override folder first (templates/ only), then the embedded copy.
 * Returns a malloc'ed NUL-terminated copy, or NULL if there is none. */
char *sp_gen_read_file(const sprig_gen *gen, const char *path, size_t *len);

/* Pushes req as the Lua table sprig.gen and sprig.space take, with params
 * (rather than req->params) as its parameter string. */
void sp_gen_push_request(lua_State *L, const sprig_request *req, const char *params);

/* Pushes the Lua module `name` (e.g. "sprig.gen") onto the stack. */
sprig_status sp_gen_require(sprig_gen *gen, const char *name);

/* Calls the function on top of the stack with nargs arguments under a
 * traceback-free pcall; on error returns SPRIG_E_INTERNAL with the message. */
sprig_status sp_gen_pcall(sprig_gen *gen, int nargs, int nresults);
#endif

/* sprig: kernel generation and autotuning for sparse LLM inference.
 *
 * The public C API of libsprig. Every function that can fail returns a
 * sprig_status; sprig_last_error() then holds a message naming what failed and
 * where (thread-local, valid until the next failing call on that thread).
 * Library code never exits or aborts on bad input. */
#ifndef SPRIG_H
#define SPRIG_H

#include <stddef.h>
#include <stdint.h>

#include "sprig_version.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the public API: exported from libsprig */

typedef enum sprig_status {
    SPRIG_OK = 0,
    SPRIG_E_INVALID,    /* bad argument: unknown family, bad shape, out-of-range parameter */
    SPRIG_E_TEMPLATE,   /* a template failed to render (message names file:line) */
    SPRIG_E_COMPILE,    /* NVRTC rejected the source (message holds the compile log) */
    SPRIG_E_NO_DRIVER,  /* libcuda could not be loaded */
    SPRIG_E_NO_DEVICE,  /* the driver loaded but reports no usable GPU */
    SPRIG_E_CUDA,       /* a CUDA driver / cuBLAS call failed */
    SPRIG_E_IO,         /* a file could not be read or written */
    SPRIG_E_FORMAT,     /* a file exists but its contents are malformed */
    SPRIG_E_NOMEM,      /* an allocation failed */
    SPRIG_E_VERIFY,     /* a kernel produced a wrong result */
    SPRIG_E_INTERNAL    /* a bug in sprig */
} sprig_status;

/* The library's version ("0.1.0"), as SPRIG_VERSION was when it was built. */
const char *sprig_version(void);

const char *sprig_status_name(sprig_status s);
const char *sprig_last_error(void);

/* ---- kernel generation ---------------------------------------------------
 * A generator owns one sandboxed Lua state holding the template engine, the
 * kernel families and the shape rules. Not thread-safe: one per thread. */
typedef struct sprig_gen sprig_gen;

/* template_dir: NULL to use the templates embedded at build time, or a folder
 * holding `<family>.cu.lua` files that override them. */
sprig_status sprig_gen_open(sprig_gen **out, const char *template_dir);
void sprig_gen_close(sprig_gen *gen);

/* A kernel request: which family, for which problem, with which parameters.
 * params is "key=value,key=value" (NULL or "" for the family's defaults);
 * keys the family does not know are an error. */
typedef struct sprig_request {
    const char *family;  /* "dense_gemv", "router", "gather_upgate", ... */
    int d, f;            /* model width and MLP width (multiples of 8) */
    const char *dtype;   /* "fp16" or "bf16" */
    int batch;           /* tokens per call, 1..64 */
    int g;               /* neurons per expert: 1, 16, 32, 64, 128 */
    const char *params;
} sprig_request;

#define SPRIG_MAX_KERNELS 4

/* One kernel of a plan, in launch order. grid may depend on run-time data
 * only through the family's documented arguments (device-side counts). */
typedef struct sprig_launch {
    char name[64];
    unsigned grid[3], block[3];
    unsigned smem_bytes;
} sprig_launch;

#define SPRIG_MAX_ARGS 16

typedef enum sprig_arg_dir {
    SPRIG_ARG_IN = 0,    /* read only */
    SPRIG_ARG_OUT,       /* written (not read) */
    SPRIG_ARG_INOUT,     /* read, then written */
    SPRIG_ARG_SCRATCH    /* a workspace the plan owns the contents of (zeroed once when allocated) */
} sprig_arg_dir;

/* One kernel argument, as the family's spec declares it (lua/sprig/args.lua,
 * docs/kernel-abi.md): every kernel of a plan takes the plan's list in order. */
typedef struct sprig_arg {
    char name[32];         /* the parameter's name in the kernel's signature */
    char type[4];          /* element type: "T" (the request's dtype), "f32", "i32", "u8" */
    char role[24];         /* what it holds ("w_gate", "x", "union_ids", "output", ...: docs/kernel-abi.md) */
    sprig_arg_dir dir;
    int pointer;           /* 1: a device pointer; 0: passed by value */
    int optional;          /* 1: this plan does not use it (it may be NULL) */
    size_t count;          /* elements the kernel may touch (pointers) */
    size_t rows, cols;     /* the same as a matrix (rows * cols == count) */
    int align;             /* bytes the address must be a multiple of */
    int fan_in;            /* weights: the length of the dot products they enter (0: not a weight) */
} sprig_arg;

/* The result of rendering: CUDA source plus everything needed to launch it.
 * Owned by the caller; free with sprig_plan_free. */
typedef struct sprig_plan {
    char *family;
    char *source;          /* NUL-terminated CUDA C++ */
    size_t source_len;
    char *key;             /* canonical "family:d=..,f=..,..." naming this exact kernel */
    char *params_json;     /* every parameter after defaults, as a JSON object */
    uint64_t template_hash;/* XXH3 of the family's template and spec */
    int n_kernels;
    sprig_launch kernels[SPRIG_MAX_KERNELS];
    size_t workspace_bytes;/* device scratch the plan needs (0 if none) */
    int n_args;
    sprig_arg args[SPRIG_MAX_ARGS]; /* the kernels' argument list, in order */
    char verify[24];       /* how the tuner checks its outputs: a reference kind ("gemv", "router",
                              "swiglu", "down", "mlp"), "lua" (the spec's own reference) or "" (none) */
} sprig_plan;

sprig_status sprig_gen_render(sprig_gen *gen, const sprig_request *req, sprig_plan **out);
void sprig_plan_free(sprig_plan *plan);

/* JSON array describing every family: name, summary, parameters with their
 * ranges and defaults. Caller frees with free(). */
sprig_status sprig_gen_families_json(sprig_gen *gen, char **out_json);
/* JSON object of the named model shapes ({"llama2-7b": {"d":4096,"f":11008}, ...}). */
sprig_status sprig_gen_models_json(sprig_gen *gen, char **out_json);

/* ---- compilation ------------------------------------------------------------ */
/* Per kernel, from ptxas's report in NVRTC's log, else from the cubin's own
 * tables (sprig_cubin_kernel_info); -1 where neither says (PTX has neither;
 * a cubin alone does not say how much spilled). */
typedef struct sprig_resources {
    int registers;
    int spill_store_bytes, spill_load_bytes;
    int stack_bytes;
    int static_smem_bytes;
} sprig_resources;

typedef struct sprig_binary {
    char arch[16];         /* "sm_90" */
    int is_ptx;
    void *image;           /* cubin (ELF) or NUL-terminated PTX */
    size_t image_size;
    int cache_hit;
    double compile_ms;     /* 0 on a cache hit */
    int n_kernels;
    char kernel_names[SPRIG_MAX_KERNELS][64];
    sprig_resources res[SPRIG_MAX_KERNELS]; /* per kernel, in plan order */
    char *log;             /* the NVRTC log (may be empty) */
    char cache_key[33];    /* 32 hex digits: XXH3-128 of (source, options, arch, NVRTC version) */
} sprig_binary;

/* cache_dir: NULL for $SPRIG_CACHE_DIR, else $XDG_CACHE_HOME/sprig, else ~/.cache/sprig;
 * "" disables the cache. arch: "sm_90", "90", "compute_90" (PTX), "sm_90a"; NULL = "sm_90".
 * Thread-safe: compile plans from several threads at once. */
typedef struct sprig_compile_opts {
    const char *arch;
    int want_ptx;
    const char *cache_dir;
    int line_info;         /* -lineinfo */
} sprig_compile_opts;

sprig_status sprig_compile(const sprig_plan *plan, const sprig_compile_opts *opts, sprig_binary **out);
void sprig_binary_free(sprig_binary *bin);
/* What a cubin image (ELF) itself says about one kernel: 1 with *out filled
 * (registers, stack frame and static shared memory; spills -1) when the image
 * defines the kernel, 0 when it does not, -1 when it is not a 64-bit
 * little-endian ELF image. out may be NULL. */
int sprig_cubin_kernel_info(const void *image, size_t size, const char *kernel, sprig_resources *out);

/* Architectures NVRTC can target, as integers (75, 80, ... 120). */
int sprig_supported_archs(int *archs, int max);
/* Parses "sm_90" / "90" / "compute_90" / "sm_90a"; 0 and an error if unknown.
 * arch gets 90, is_ptx 1 for "compute_", suffix (at least 2 chars) "", "a" or
 * "f"; any output may be NULL. */
sprig_status sprig_parse_arch(const char *text, int *arch, int *is_ptx, char *suffix);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif

/* What a family's own test needs, driven by the plan's declared arguments:
 * render, load on the CPU emulator's executor, give each argument a buffer
 * of its declared size (inputs from the test's host values, outputs poisoned
 * with NaN and a guard behind them), bind by name, launch, and read the
 * outputs back with the guard checked. The test brings its own float64
 * reference; the harness only carries bytes. Then the same plan through the
 * tuner (verified against the spec's reference, timed) and the single-kernel
 * bench, both on the emulator: a family checked here is tunable and
 * benchmarkable. tests/families/test_<family>.c files are registered by
 * tests/CMakeLists.txt without naming them. */
#ifndef FAMILY_HARNESS_H
#define FAMILY_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "sp_exec.h"
#include "sprig.h"

typedef struct fh_ctx {
    sprig_gen *gen;
    sp_exec *exec;      /* the emulator */
} fh_ctx;

/* 0 on success (failures are counted as CHECKs and printed). */
int fh_open(fh_ctx *c);
void fh_close(fh_ctx *c);

/* One launch's buffers, by argument name (the plan's order). */
typedef struct fh_run {
    sprig_plan *plan;
    sp_exec_module *mod;
    sp_dptr dev[SPRIG_MAX_ARGS];   /* what the kernel gets: aligned to the declared alignment, no more */
    sp_dptr alloc[SPRIG_MAX_ARGS]; /* the emulator buffer it lies in, ending where it ends */
    size_t bytes[SPRIG_MAX_ARGS];
    void *host[SPRIG_MAX_ARGS];  /* outputs after fh_launch */
    float scalars[SPRIG_MAX_ARGS];
} fh_run;

/* Renders and loads family at (d, f, dtype, batch, g, params); NULL plan on
 * failure. Each pointer argument gets a buffer of exactly its declared size
 * (the emulator faults any access past either end), at an address aligned to
 * its declared alignment and, below 16 bytes, to no more: so a kernel that
 * needs more alignment than its spec declares (docs/kernel-abi.md) fails. */
int fh_prepare(fh_ctx *c, fh_run *r, const char *family, int d, int f, const char *dtype, int batch, int g,
               const char *params);
/* Uploads the 16-bit (or f32/i32/u8) bytes of input `name` (its declared size). */
int fh_input(fh_ctx *c, fh_run *r, const char *name, const void *bytes);
/* Sets value argument `name`. */
int fh_scalar(fh_run *r, const char *name, float v);
/* Poisons the outputs, binds everything by name, launches and downloads the
 * outputs into r->host[i]. */
int fh_launch(fh_ctx *c, fh_run *r);
/* The downloaded output `name` (NULL if it is not an output). */
const void *fh_output(const fh_run *r, const char *name);
void fh_release(fh_ctx *c, fh_run *r);

/* The tuner measures (verify + time) the family's defaults at this key:
 * returns 1 when the verdict is OK. */
int fh_tuned(fh_ctx *c, const char *family, int d, int f, const char *dtype, int batch, int g, double sparsity,
             const char *fixed);
/* sprig bench --family's engine times it: 1 when every row verified, with
 * its declared bytes equal to want_bytes (0: not checked). */
int fh_benched(fh_ctx *c, const char *family, int d, int f, const char *dtype, int batch, int g,
               const char *fixed, double want_bytes);

/* Binds a host pointer (the emulator's device addresses are host addresses)
 * to argument `name` of k (exec/sp_kargs.h). */
#include "sp_kargs.h"
static inline void fh_ptr(sp_kargs *k, const char *name, const void *p) {
    sp_kargs_ptr(k, name, (sp_dptr)(uintptr_t)p);
}

/* Host conversions for the tests' operands. */
uint16_t fh_to_bits(int bf16, float v);
float fh_from_bits(int bf16, uint16_t b);

#endif

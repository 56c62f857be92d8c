/* What a cubin says about its kernels, read from its ELF sections.
 *
 * NVRTC's log normally carries ptxas's report ("Used N registers, ..."), and
 * sprig reads it there first. But on a machine with a GPU driver NVRTC can
 * hand back a cubin for code it has compiled before with an empty log (seen
 * on an H200, CUDA 13.0: bench/results/2026-12-04_h200), so the cubin itself
 * is the authority on which kernels exist and what they use:
 *   - a kernel is a defined STT_FUNC symbol of the ELF symbol table;
 *   - `.nv.info` holds per-function attributes as (format, attribute, value)
 *     records: EIATTR_REGCOUNT (registers) and EIATTR_FRAME_SIZE (stack frame),
 *     each an 8-byte value of (symbol index, number);
 *   - `.nv.shared.<kernel>` is its static shared memory. From sm_90 on, the
 *     toolchain starts that section with the 1 KB per CTA reserved for the
 *     system (the symbol `.nv.reservedSmem.offset0` marks such cubins), which
 *     ptxas's report leaves out; so do we.
 * Spill bytes are only in ptxas's report: -1 (unknown) here.
 * tests/test_cubin_info.c checks every field against ptxas's report for every
 * family on every architecture NVRTC targets. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sprig.h"

enum {
    CI_SHT_SYMTAB = 2,
    CI_STT_FUNC = 2,
    CI_EIFMT_SVAL = 4,
    CI_EIATTR_FRAME_SIZE = 0x11,
    CI_EIATTR_REGCOUNT = 0x2f,
    CI_RESERVED_SMEM = 1024,
    CI_MAX_BYTES = 1 << 24, /* more stack or static shared memory than any GPU has */
};

typedef struct ci_elf {
    const unsigned char *p;
    size_t n;
    uint64_t shoff;
    unsigned shnum, shentsize, shstrndx;
} ci_elf;

typedef struct ci_section {
    uint32_t name, type, link;
    uint64_t offset, size;
} ci_section;

static uint16_t ci_u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t ci_u32(const unsigned char *p) { return (uint32_t)ci_u16(p) | (uint32_t)ci_u16(p + 2) << 16; }
static uint64_t ci_u64(const unsigned char *p) { return (uint64_t)ci_u32(p) | (uint64_t)ci_u32(p + 4) << 32; }

/* 1 if [off, off + len) lies inside the image. */
static int ci_inside(const ci_elf *e, uint64_t off, uint64_t len) { return off <= e->n && len <= e->n - off; }

static int ci_open(ci_elf *e, const void *image, size_t n) {
    e->p = image;
    e->n = n;
    if (!image || n < 64 || memcmp(image, "\177ELF", 4) != 0 || e->p[4] != 2 /* 64-bit */ ||
        e->p[5] != 1 /* little-endian */)
        return 0;
    e->shoff = ci_u64(e->p + 0x28);
    e->shentsize = ci_u16(e->p + 0x3a);
    e->shnum = ci_u16(e->p + 0x3c);
    e->shstrndx = ci_u16(e->p + 0x3e);
    return e->shentsize >= 64 && e->shstrndx < e->shnum &&
           ci_inside(e, e->shoff, (uint64_t)e->shnum * e->shentsize);
}

/* Section i; 0 if its contents (unless NOBITS, type 8) lie outside the image. */
static int ci_section_at(const ci_elf *e, unsigned i, ci_section *s) {
    const unsigned char *h = e->p + e->shoff + (uint64_t)i * e->shentsize;
    s->name = ci_u32(h);
    s->type = ci_u32(h + 4);
    s->offset = ci_u64(h + 24);
    s->size = ci_u64(h + 32);
    s->link = ci_u32(h + 40);
    return s->type == 8 || ci_inside(e, s->offset, s->size);
}

/* The NUL-terminated string at off in string-table section strtab, or NULL. */
static const char *ci_string(const ci_elf *e, const ci_section *strtab, uint64_t off) {
    if (off >= strtab->size || strtab->type == 8) return NULL;
    const char *s = (const char *)e->p + strtab->offset + off;
    return memchr(s, '\0', strtab->size - off) ? s : NULL;
}

/* Index of the section named name, or -1. */
static int ci_find_section(const ci_elf *e, const char *name, ci_section *out) {
    ci_section names;
    if (!ci_section_at(e, e->shstrndx, &names)) return -1;
    for (unsigned i = 0; i < e->shnum; ++i) {
        ci_section s;
        if (!ci_section_at(e, i, &s)) continue;
        const char *n = ci_string(e, &names, s.name);
        if (n && strcmp(n, name) == 0) {
            *out = s;
            return (int)i;
        }
    }
    return -1;
}

/* The symbol table's index of the defined function `kernel` (-1: none), and
 * whether the table names the reserved-shared-memory symbol. */
static long ci_find_function(const ci_elf *e, const char *kernel, int *has_reserved_smem) {
    *has_reserved_smem = 0;
    for (unsigned i = 0; i < e->shnum; ++i) {
        ci_section tab, strtab;
        if (!ci_section_at(e, i, &tab) || tab.type != CI_SHT_SYMTAB) continue;
        if (tab.link >= e->shnum || !ci_section_at(e, tab.link, &strtab)) return -1;
        long found = -1;
        for (uint64_t k = 0; k + 1 <= tab.size / 24; ++k) {
            const unsigned char *sym = e->p + tab.offset + k * 24;
            const char *n = ci_string(e, &strtab, ci_u32(sym));
            if (!n) continue;
            if (strcmp(n, ".nv.reservedSmem.offset0") == 0) *has_reserved_smem = 1;
            if ((sym[4] & 0xf) == CI_STT_FUNC && ci_u16(sym + 6) != 0 /* defined */ && strcmp(n, kernel) == 0)
                found = (long)k;
        }
        return found;
    }
    return -1;
}

/* Fills registers and stack frame from `.nv.info`'s records for symbol sym. */
static void ci_read_attributes(const ci_elf *e, long sym, sprig_resources *res) {
    ci_section info;
    if (ci_find_section(e, ".nv.info", &info) < 0 || info.type == 8) return;
    const unsigned char *p = e->p + info.offset, *end = p + info.size;
    while (end - p >= 4) {
        unsigned format = p[0], attr = p[1], value = ci_u16(p + 2);
        p += 4;
        if (format != CI_EIFMT_SVAL) continue; /* the others hold their value in those 4 bytes */
        if ((size_t)(end - p) < value) return;
        if (value == 8 && ci_u32(p) == (uint32_t)sym) {
            uint32_t v = ci_u32(p + 4); /* out of any real range: a damaged image, left unknown */
            if (attr == CI_EIATTR_REGCOUNT && v <= 255) res->registers = (int)v;
            if (attr == CI_EIATTR_FRAME_SIZE && v <= CI_MAX_BYTES) res->stack_bytes = (int)v;
        }
        p += value;
    }
}

int sprig_cubin_kernel_info(const void *image, size_t size, const char *kernel, sprig_resources *out) {
    ci_elf e;
    if (!kernel || !ci_open(&e, image, size)) return -1;
    int reserved = 0;
    long sym = ci_find_function(&e, kernel, &reserved);
    if (sym < 0) return 0;
    sprig_resources res = {-1, -1, -1, 0, 0};
    ci_read_attributes(&e, sym, &res);
    char name[128];
    ci_section shared;
    snprintf(name, sizeof name, ".nv.shared.%s", kernel);
    if (ci_find_section(&e, name, &shared) >= 0) {
        uint64_t bytes = shared.size;
        if (reserved) bytes = bytes > CI_RESERVED_SMEM ? bytes - CI_RESERVED_SMEM : 0;
        if (bytes > CI_MAX_BYTES) return -1;
        res.static_smem_bytes = (int)bytes;
    }
    if (out) *out = res;
    return 1;
}

/* sprig info: what this machine offers sprig — the NVRTC in use and the
 * architectures it targets (always), then the CUDA driver and every GPU, or a
 * plain sentence saying there is no driver or no GPU. Having no GPU is a
 * normal state for sprig (gen and compile need none), so it exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <nvrtc.h>

#include "cli.h"
#include "sp_device.h"

#define INFO_MAX_ARCHS 64

static void info_help(FILE *to) {
    fprintf(to, "usage: sprig info [--json]\n\n"
                "Shows the NVRTC version and the architectures it can compile for, then the\n"
                "CUDA driver version and each GPU: name, compute capability, SM count, memory,\n"
                "L2 size and clock.\n\n"
                "Without a CUDA driver or GPU it says so (\"no CUDA driver found: <reason>\" or\n"
                "\"no CUDA device found\") and still exits 0: that is information, not an error.\n"
                "It exits 1 only when the driver fails in an unexpected way.\n\n"
                "options:\n"
                "  --json     print one JSON object instead (keys: sprig, nvrtc{version,archs},\n"
                "             driver{found,version,reason}, gpus[{index,name,cc,arch,sms,memory_bytes,\n"
                "             l2_bytes,clock_khz,mem_clock_khz,mem_bus_bits,smem_per_block_optin}])\n");
}

typedef struct info_state {
    int nvrtc_major, nvrtc_minor;
    int archs[INFO_MAX_ARCHS];
    int n_archs;
    sprig_status driver;      /* SPRIG_OK, NO_DRIVER, NO_DEVICE or an unexpected failure */
    char reason[1024];        /* sprig_last_error() when driver != SPRIG_OK */
    int driver_version;
    int n_gpus;
    sp_device_props *gpus;    /* n_gpus entries, owned */
} info_state;

/* Fills everything; a failure is recorded in st->driver, never returned. */
static void info_collect(info_state *st) {
    memset(st, 0, sizeof *st);
    if (nvrtcVersion(&st->nvrtc_major, &st->nvrtc_minor) != NVRTC_SUCCESS) st->nvrtc_major = -1;
    st->n_archs = sprig_supported_archs(st->archs, INFO_MAX_ARCHS);
    if (st->n_archs > INFO_MAX_ARCHS) st->n_archs = INFO_MAX_ARCHS;
    int count = 0;
    st->driver = sp_device_count(&count);
    if (st->driver == SPRIG_OK || st->driver == SPRIG_E_NO_DEVICE) {
        /* The driver loaded and initialised (NO_DEVICE may also mean cuInit said
         * so); its version is known either way. */
        st->driver_version = sp_driver_version();
    }
    if (st->driver != SPRIG_OK) {
        snprintf(st->reason, sizeof st->reason, "%s", sprig_last_error());
        return;
    }
    st->gpus = calloc((size_t)count, sizeof *st->gpus);
    if (!st->gpus) {
        st->driver = SPRIG_E_NOMEM;
        snprintf(st->reason, sizeof st->reason, "out of memory");
        return;
    }
    for (int i = 0; i < count; ++i) {
        sprig_status s = sp_device_query(i, &st->gpus[i]);
        if (s != SPRIG_OK) {
            st->driver = s;
            snprintf(st->reason, sizeof st->reason, "querying GPU %d: %s", i, sprig_last_error());
            return;
        }
        st->n_gpus = i + 1;
    }
}

static int info_exit_code(const info_state *st) {
    return (st->driver == SPRIG_OK || st->driver == SPRIG_E_NO_DRIVER || st->driver == SPRIG_E_NO_DEVICE) ? 0 : 1;
}

static void info_print_text(const info_state *st) {
    printf("sprig %s\n", sprig_version());
    if (st->nvrtc_major >= 0) printf("NVRTC %d.%d, compiles for:", st->nvrtc_major, st->nvrtc_minor);
    else printf("NVRTC (version unknown), compiles for:");
    for (int i = 0; i < st->n_archs; ++i) printf(" sm_%d", st->archs[i]);
    printf("\n");
    if (st->driver == SPRIG_E_NO_DRIVER) {
        printf("no CUDA driver found: %s\n", st->reason);
        return;
    }
    if (st->driver_version)
        printf("CUDA driver: %d.%d\n", st->driver_version / 1000, (st->driver_version % 1000) / 10);
    if (st->driver == SPRIG_E_NO_DEVICE) {
        printf("no CUDA device found (%s)\n", st->reason);
        return;
    }
    for (int i = 0; i < st->n_gpus; ++i) {
        const sp_device_props *p = &st->gpus[i];
        printf("GPU %d: %s, compute capability %d.%d (sm_%d%d), %d SMs, %.1f GiB, L2 %.1f MiB", i, p->name,
               p->cc_major, p->cc_minor, p->cc_major, p->cc_minor, p->sm_count,
               (double)p->total_mem_bytes / (1024.0 * 1024.0 * 1024.0), p->l2_bytes / (1024.0 * 1024.0));
        if (p->clock_khz) printf(", %d MHz", p->clock_khz / 1000);
        printf("\n");
    }
    if (st->driver != SPRIG_OK) fprintf(stderr, "sprig info: %s: %s\n", sprig_status_name(st->driver), st->reason);
}

static cJSON *info_gpu_json(const sp_device_props *p) {
    cJSON *g = cJSON_CreateObject();
    char buf[32];
    cJSON_AddNumberToObject(g, "index", p->ordinal);
    cJSON_AddStringToObject(g, "name", p->name);
    snprintf(buf, sizeof buf, "%d.%d", p->cc_major, p->cc_minor);
    cJSON_AddStringToObject(g, "cc", buf);
    snprintf(buf, sizeof buf, "sm_%d%d", p->cc_major, p->cc_minor);
    cJSON_AddStringToObject(g, "arch", buf);
    cJSON_AddNumberToObject(g, "sms", p->sm_count);
    cJSON_AddNumberToObject(g, "memory_bytes", (double)p->total_mem_bytes);
    cJSON_AddNumberToObject(g, "l2_bytes", p->l2_bytes);
    cJSON_AddNumberToObject(g, "clock_khz", p->clock_khz);
    cJSON_AddNumberToObject(g, "mem_clock_khz", p->mem_clock_khz);
    cJSON_AddNumberToObject(g, "mem_bus_bits", p->mem_bus_bits);
    cJSON_AddNumberToObject(g, "smem_per_block_optin", p->smem_per_block_optin);
    return g;
}

static int info_print_json(const info_state *st) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return 1;
    char buf[32];
    cJSON_AddStringToObject(root, "sprig", sprig_version());
    cJSON *nv = cJSON_AddObjectToObject(root, "nvrtc");
    snprintf(buf, sizeof buf, "%d.%d", st->nvrtc_major, st->nvrtc_minor);
    if (st->nvrtc_major >= 0) cJSON_AddStringToObject(nv, "version", buf);
    else cJSON_AddNullToObject(nv, "version");
    cJSON_AddItemToObject(nv, "archs", cJSON_CreateIntArray(st->archs, st->n_archs));
    cJSON *drv = cJSON_AddObjectToObject(root, "driver");
    cJSON_AddBoolToObject(drv, "found", st->driver != SPRIG_E_NO_DRIVER);
    snprintf(buf, sizeof buf, "%d.%d", st->driver_version / 1000, (st->driver_version % 1000) / 10);
    if (st->driver_version) cJSON_AddStringToObject(drv, "version", buf);
    else cJSON_AddNullToObject(drv, "version");
    if (st->driver != SPRIG_OK) cJSON_AddStringToObject(drv, "reason", st->reason);
    else cJSON_AddNullToObject(drv, "reason");
    cJSON *gpus = cJSON_AddArrayToObject(root, "gpus");
    for (int i = 0; i < st->n_gpus; ++i) cJSON_AddItemToArray(gpus, info_gpu_json(&st->gpus[i]));
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return 1;
    printf("%s\n", text);
    free(text);
    return 0;
}

int cmd_info(int argc, char **argv) {
    int json = 0;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            info_help(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "sprig info: unknown option '%s'\n", argv[i]);
            info_help(stderr);
            return 2;
        }
    }
    info_state st;
    info_collect(&st);
    int rc = info_exit_code(&st);
    if (json) {
        if (info_print_json(&st)) rc = 1;
    } else {
        info_print_text(&st);
    }
    free(st.gpus);
    return rc;
}

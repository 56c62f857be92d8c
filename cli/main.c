/* sprig: generate, compile, tune and run sparse LLM kernels. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"gen", cmd_gen, "print or write the CUDA source of one kernel"},
    {"compile", cmd_compile, "compile kernels with NVRTC for one or more architectures; report resources"},
    {"info", cmd_info, "show the GPU and driver sprig sees, or that there is none"},
    {"families", cmd_families, "list the kernel families and their parameters"},
    {"models", cmd_models, "list the named model shapes"},
    {"synth", cmd_synth, "write a random LLaMA-shaped model folder (optionally with LTE routers)"},
    {"bench-e2e", cmd_bench_e2e, "decode ms/token of a model folder, dense against LTE/threshold sparsity"},
    {"run", cmd_run, "generate text with a LLaMA-family model folder (dense, LTE or threshold-sparse)"},
    {"chat", cmd_chat, "talk with an instruct model through its chat template (history kept in the KV cache)"},
    {"perplexity", cmd_perplexity, "perplexity over a text file in strided windows (dense, LTE or threshold-sparse)"},
    {"tune", cmd_tune, "tune a model's MLP kernels on this GPU into its tuning database"},
    {"bench", cmd_bench, "time tuned MLP kernels against cuBLAS and the bandwidth roof"},
    {"analyze", cmd_analyze, "predict kernels' speed on a GPU profile without a GPU (static model)"},
};

static void usage(FILE *to) {
    fprintf(to, "usage: sprig <command> [options]   (sprig <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; ++i)
        fprintf(to, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int sprig_cli_main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("sprig %s\n", sprig_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; ++i)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sprig: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

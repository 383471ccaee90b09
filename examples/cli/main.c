/*
 * colddiff - the command-line front end of libcolddiff. It uses only the
 * public API, so it doubles as an example of embedding the library. Each
 * subcommand lives in its own cmd_*.c; `colddiff CMD --help` lists its
 * options.
 */
#include "cli.h"

#include <string.h>

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"fetch-mnist", cmd_fetch_mnist, "download MNIST and check its MD5s"},
    {"train", cmd_train, "train a model (presets or flags); checkpoints, losses, grids"},
    {"sample", cmd_sample, "unconditional samples from a checkpoint, as a PNG grid"},
    {"restore", cmd_restore, "degrade and restore real images (the report's Figure 2/8)"},
    {"eval", cmd_eval, "test loss, RMSE, SSIM, PSNR, FD, class preservation and entropy"},
    {"reproduce", cmd_reproduce, "the report's Tables 1 and 2: four runs and report.md"},
    {"train-classifier", cmd_train_classifier, "train the MNIST classifier the metrics use"},
    {"schedule", cmd_schedule, "plot alpha-bar_t of a schedule (the report's Figure 5)"},
    {"info", cmd_info, "what a checkpoint holds"},
    {"grid", cmd_grid, "a PNG grid of dataset images"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void print_help(void)
{
    printf("usage: colddiff <command> [options]\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        printf("  %-12s %s\n", commands[i].name, commands[i].summary);
    printf("  %-12s %s\n\nSee 'colddiff <command> --help' for a command's options.\n",
           "version", "print the library version and ABI");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        print_help();
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (cd_abi_version() != CD_ABI_VERSION) {
        fprintf(stderr, "colddiff: library ABI %d does not match this program's %d\n",
                (int)cd_abi_version(), CD_ABI_VERSION);
        return CLI_FAIL;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("libcolddiff %s (ABI %d)\n", cd_version_string(), (int)cd_abi_version());
        return CLI_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "colddiff: unknown command '%s' (see 'colddiff --help')\n", argv[1]);
    return CLI_USAGE;
}

/*
 * cli_commands.c - the table of subcommands, shared by main() and the
 * option fuzzer so that a new subcommand is fuzzed as soon as it exists.
 */
#include "cli.h"

const cli_subcommand cli_subcommands[] = {
    {"fetch-mnist", cmd_fetch_mnist, "download MNIST and check its MD5s"},
    {"train", cmd_train, "train a model (presets or flags); checkpoints, losses, grids"},
    {"sample", cmd_sample, "unconditional samples from a model file, as a PNG grid"},
    {"restore", cmd_restore, "degrade and restore real images (the report's Figure 2/8)"},
    {"eval", cmd_eval, "test loss, RMSE, SSIM, PSNR, FD, class preservation and entropy"},
    {"reproduce", cmd_reproduce, "the report's Tables 1 and 2: four runs and report.md"},
    {"train-classifier", cmd_train_classifier, "train the MNIST classifier the metrics use"},
    {"schedule", cmd_schedule, "plot alpha-bar_t of a schedule (the report's Figure 5)"},
    {"export", cmd_export, "an inference model (decoder + degradation) from a checkpoint"},
    {"info", cmd_info, "what a model file holds: kind, decoder, degradation, schedule"},
    {"grid", cmd_grid, "a PNG grid of dataset images"},
    {NULL, NULL, NULL},
};

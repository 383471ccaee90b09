/*
 * cli_gen.h - sample grids and restoration figures from a trained model,
 * shared by train (at chosen epochs), sample and restore.
 */
#ifndef COLDDIFF_CLI_GEN_H
#define COLDDIFF_CLI_GEN_H

#include "cli.h"

enum { SMP_AUTO, SMP_DDPM, SMP_DDIM, SMP_COLD1, SMP_COLD2, SMP_DIRECT };
extern const char *const cli_sampler_names[];

typedef struct {
    int kind;          /* SMP_*; AUTO: DDPM for noise, cold 2 otherwise */
    int64_t steps;     /* DDIM steps; 0: T */
    double eta;        /* DDIM eta */
    uint64_t seed;
    bool clip;         /* DDIM: clip x0-hat to the data range [-0.5, 0.5] */
    bool ema;          /* sample with the checkpoint's EMA weights */
} cli_sampling;

/* Load a checkpoint for sampling; with o->ema, its EMA weights replace the
 * decoder's. Prints the error and returns a failed status. */
cd_status cli_load_model(cd_trainer **tr, const char *ckpt, const cli_sampling *o);

/* The report's three snapshot times for a model of T steps: T/10, T/2, T
 * (at least 1). */
cli_times cli_default_times(int64_t T);

/* A sampler for the trainer's decoder and degradation. */
cd_status cli_make_sampler(cd_trainer *tr, const cli_sampling *o, cd_sampler **out);

/* n unconditional samples into a grid of cols columns at path. */
cd_status cli_sample_grid(cd_trainer *tr, const cli_sampling *o, int64_t n, int64_t cols,
                          const char *path);

/* The report's Figure 2/8 layout for the first n images of a split: one
 * row per image with x, D(x, t_v) for each time, x-hat at each time, and
 * the final restoration from T. */
cd_status cli_restore_figure(cd_trainer *tr, const cli_sampling *o, cd_dataset *ds,
                             cd_split split, int64_t n, const cli_times *times,
                             const char *path);

#endif /* COLDDIFF_CLI_GEN_H */

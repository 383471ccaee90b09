/*
 * cmd_train.h - what colddiff train's two files share: the run's settings
 * (cmd_train.c trains with them; cmd_train_config.c keeps them in the run
 * folder's config.txt for --resume).
 */
#ifndef COLDDIFF_CMD_TRAIN_H
#define COLDDIFF_CMD_TRAIN_H

#include "cli_gen.h"
#include "cli_model.h"

typedef struct {
    const char *data, *out;
    int64_t epochs, batch, threads, train_limit, val_limit, n_samples, grid_steps, lr_warmup;
    double lr, beta2, val_fraction, ema, clip, grid_eta;
    int64_t seed;
    int64_t channels, size; /* how a PNG folder is read (cli_data_channels, _size) */
    bool resume, times_given, grid_clip, ema_warmup, lr_decay;
    cli_times sample_epochs, restore_times;
    int grid_sampler;
    int64_t bucket;         /* under mpirun: floats per gradient sum (-1: the library's) */
    bool fixed_order;       /* under mpirun: sums in rank order */
    const cli_command *cmd; /* the parsed command line (its options' seen flags) */
} train_opts;

/* config.txt with every setting of o and the model m (atomically). */
int train_write_config(const train_opts *o, const cli_model *m);

/* For --resume: the recorded settings into o, except those the command line
 * gave, which are announced (*n_changed counts them) or, for the data,
 * split, batch and model, refused (CLI_USAGE). A missing file is no error. */
int train_read_config(train_opts *o, const cli_model *m, int *n_changed);

/* config.txt again with the settings a resume changed. */
int train_update_config(const train_opts *o, int n_changed);

/* Whether the command line gave option `flag`. */
bool train_option_given(const train_opts *o, const char *flag);

#endif /* COLDDIFF_CMD_TRAIN_H */

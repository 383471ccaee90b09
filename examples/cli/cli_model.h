/*
 * cli_model.h - a model described on the command line: decoder,
 * degradation and schedule, filled from a preset (docs/models.md, The
 * report presets) and then from explicit flags.
 */
#ifndef COLDDIFF_CLI_MODEL_H
#define COLDDIFF_CLI_MODEL_H

#include "cli.h"

enum {
    SCH_LINEAR,
    SCH_CONSTANT,
    SCH_COSINE,
    SCH_CONSTANT_REPORT,
    SCH_COSINE_REPORT,
    SCH_LINEAR_REPORT
};
/* The index of the preset made to learn fast on a CPU (its training
 * options come with it: cmd_train.c). */
#define CLI_PRESET_FAST 5

extern const char *const cli_schedule_names[];
extern const char *const cli_preset_names[];

typedef struct {
    /* decoder, degradation, padding, prediction: the library's enum values;
     * schedule: an index into cli_schedule_names (SCH_*). */
    int decoder, degradation, schedule, padding, prediction;
    int64_t T, kernel, t_max;
    double beta, beta_min, beta_max, cosine_s, beta_clip, edge_width;
    bool t_per_batch, report_prior;
    cli_times cnn_hidden;              /* n = 0: the report's */
    int64_t unet_dim;                  /* 0: the report's */
    cli_times unet_mults;              /* n = 0: the report's */
    int64_t unet_heads, unet_head_dim; /* 0: the report's */
    bool conditional;                  /* a label table of the data's classes */
    bool classes_if_any;               /* the preset's conditional: only if the data has classes */
    bool unconditional;                /* --unconditional: no label table, whatever the preset */
    double label_dropout;              /* the trainer's, for a conditional model */
} cli_model;

/* The library defaults: CNN, noise, linear 1e-4..0.02, T = 1000. */
void cli_model_defaults(cli_model *m);

/* Overwrite m with preset `index` of cli_preset_names. */
void cli_model_preset(cli_model *m, int index);

/* The defaults, or the preset a "--preset NAME" in argv names, applied
 * before the option parser runs so that explicit flags override it
 * wherever they stand on the line. Returns the preset's index or -1. */
int cli_model_from_preset_flag(cli_model *m, int argc, char **argv);

/* Build the decoder (drawn from rng), the degradation and a trainer for
 * them; fade takes its mean image from ds's train split. The trainer
 * borrows *dec and *deg: the caller frees them after cd_trainer_free.
 * Prints the error and returns CLI_FAIL (all three NULL then). */
int cli_model_build(const cli_model *m, cd_dataset *ds, cd_rng *rng, cd_trainer **out,
                    cd_decoder **dec, cd_degradation **deg);

/* Options that cannot work together, found before any work: CLI_OK, or
 * CLI_USAGE after printing which (as "colddiff CMD: ..."). */
int cli_model_check(const cli_model *m, const char *cmd);

/* The schedule alone (colddiff schedule). */
cd_status cli_model_schedule(const cli_model *m, cd_schedule **out);

/* One "key = value" line per setting. */
void cli_model_write(const cli_model *m, FILE *f);

#endif /* COLDDIFF_CLI_MODEL_H */

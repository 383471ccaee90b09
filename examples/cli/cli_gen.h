/*
 * cli_gen.h - sample grids and restoration figures from a trained model,
 * shared by train (at chosen epochs), sample, restore and eval; loading
 * a model file of either kind; progress lines and Ctrl-C for the chains.
 */
#ifndef COLDDIFF_CLI_GEN_H
#define COLDDIFF_CLI_GEN_H

#include "cli.h"

enum { SMP_AUTO, SMP_DDPM, SMP_DDIM, SMP_COLD1, SMP_COLD2, SMP_DIRECT };
extern const char *const cli_sampler_names[];

/* The CLI's DDIM defaults, those measured best in docs/sampling.md. */
#define CLI_DDIM_STEPS 50
#define CLI_DDIM_ETA 1.0

typedef struct {
    int kind;      /* SMP_*; AUTO: DDPM for noise, cold 2 otherwise */
    int64_t steps; /* DDIM steps; 0: min(CLI_DDIM_STEPS, T) */
    double eta;    /* DDIM eta; NaN: CLI_DDIM_ETA */
    uint64_t seed;
    bool clip;      /* DDIM: clip x0-hat to the data range [-0.5, 0.5] */
    bool ema;       /* sample with a checkpoint's EMA weights (if any) */
    bool range_map; /* grids map [-0.5, 0.5] to 0..255, not each image's percentiles */
    /* A class-conditional model's class for every sample (-1: none), or
     * with class_rows one class per grid row; guidance: the scale w. */
    int64_t cls;
    bool class_rows;
    double guidance;
} cli_sampling;

/* The defaults of sample, restore and eval. */
#define CLI_SAMPLING_DEFAULTS                                   \
    {                                                           \
        SMP_AUTO, 0, NAN, 1, true, false, false, -1, false, 1.0 \
    }

/* The sampling options shared by sample, restore and eval (cmd_sample.c):
 * --sampler, --steps, --eta, --seed, --no-clip (into flags[0]), --no-ema
 * (flags[2]), and --clip (flags[1]) and --ema, kept as no-ops for old
 * scripts. After parsing, cli_sampler_finish sets s->clip and s->ema. */
#define CLI_SAMPLER_OPTS 8
const cli_opt *cli_sampler_opts(cli_sampling *s, int64_t *seed, bool flags[3]);
void cli_sampler_finish(cli_sampling *s, int64_t seed, const bool flags[3]);

/* --class, --class-rows and --guidance (sample and eval). */
#define CLI_CLASS_OPTS 3
const cli_opt *cli_class_opts(cli_sampling *s);

/* CLI_OK when dec can give the class o asks for (or o asks for none);
 * else prints why, as "colddiff CMD: ...", and returns CLI_USAGE. */
int cli_check_class(const cd_decoder *dec, const cli_sampling *o, const char *cmd);

/* How many samples a grid of cols columns holds when none was asked for:
 * a row per class when o gives dec's classes one per row (so that every
 * class shows, up to `most`), else fallback. */
int64_t cli_grid_count(const cd_decoder *dec, const cli_sampling *o, int64_t cols, int64_t most,
                       int64_t fallback);

/* The labels of samples first..first+n-1 (of a grid of cols columns) as
 * o asks (checked by cli_check_class), and o's guidance, on smp; no
 * labels when o asks for no class. */
cd_status cli_set_labels(cd_sampler *smp, const cd_decoder *dec, const cli_sampling *o,
                         int64_t first, int64_t n, int64_t cols);

/* A model read for sampling: from an inference model file or a training
 * checkpoint (with its EMA weights when it has them). From a checkpoint,
 * dec and deg belong to the loaded trainer; otherwise they are ours, and a
 * trainer made for them (cli_load_model's want_trainer) borrows them. */
typedef struct {
    cd_trainer *tr;
    cd_decoder *dec;
    cd_degradation *deg;
    bool checkpoint; /* read from a training checkpoint */
} cli_loaded;

/* Load path (NULL: the pretrained model that ships with the library,
 * cd_model_load_default); with want_trainer, also a trainer for the test loss (a
 * training checkpoint's own, else one with default options). ema: a
 * training checkpoint's EMA weights when it has them (as cd_model_load),
 * else its current weights. Prints the error and returns a failed status. */
cd_status cli_load_model(const char *path, bool want_trainer, bool ema, cli_loaded *m);
void cli_loaded_free(cli_loaded *m);

/* The report's three snapshot times for a model of T steps: T/10, T/2, T
 * (at least 1). */
cli_times cli_default_times(int64_t T);

/* A sampler for dec and deg with o's settings (and the progress line and
 * Ctrl-C check when cli_progress_begin was called). */
cd_status cli_model_sampler(cd_decoder *dec, const cd_degradation *deg, const cli_sampling *o,
                            cd_sampler **out);

/* n unconditional samples into a grid of cols columns at path. */
cd_status cli_model_sample_grid(cd_decoder *dec, const cd_degradation *deg, const cli_sampling *o,
                                int64_t n, int64_t cols, const char *path);

/* The report's Figure 2/8 layout for the first n images of a split: one
 * row per image with x, D(x, t_v) for each time, x-hat at each time, and
 * the final restoration from T. */
cd_status cli_model_restore_figure(cd_decoder *dec, const cd_degradation *deg,
                                   const cli_sampling *o, cd_dataset *ds, cd_split split, int64_t n,
                                   const cli_times *times, const char *path);

/* The same for a trainer's decoder and degradation (colddiff train). */
cd_status cli_make_sampler(cd_trainer *tr, const cli_sampling *o, cd_sampler **out);
cd_status cli_sample_grid(cd_trainer *tr, const cli_sampling *o, int64_t n, int64_t cols,
                          const char *path);
cd_status cli_restore_figure(cd_trainer *tr, const cli_sampling *o, cd_dataset *ds, cd_split split,
                             int64_t n, const cli_times *times, const char *path);

/* One line on stderr when more than 1% of x's values lie outside the data
 * range [-0.5, 0.5] by more than 0.05: the PNG's percentile map would hide
 * it. what names the images ("samples"). */
void cli_warn_range(const cd_tensor *x, const char *what);

/* Progress of the chains that follow: a line on stderr ("LABEL: step
 * 37/50 [####....] ETA 0m12s") when stderr is a terminal, nothing
 * otherwise; and Ctrl-C (SIGINT) stops the chain at its next step with
 * CD_ERR_CANCELLED. begin installs the handler; label is copied. */
void cli_progress_begin(const char *label);
void cli_progress_label(const char *label);
void cli_progress_end(void);
/* Give s the progress callback once cli_progress_begin was called. */
cd_status cli_progress_attach(cd_sampler *s);
/* Whether Ctrl-C was pressed since cli_progress_begin. */
bool cli_interrupted(void);
/* After a failed command step: CLI_INTERRUPTED with a one-line message if
 * Ctrl-C stopped it, else cli_fail(what). */
int cli_fail_or_interrupted(const char *what);

#endif /* COLDDIFF_CLI_GEN_H */

/*
 * cmd_info.c - colddiff info F: what a model file holds, and which kind it
 * is: an inference model (cd_model_save, colddiff export), a training
 * checkpoint (cd_trainer_save) or a decoder alone (cd_decoder_save).
 */
#include "cli_gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void print_decoder(const cd_decoder *dec)
{
    cd_decoder_config *cfg = NULL;
    const cd_decoder_kind kind = cd_decoder_get_kind(dec);
    printf("decoder: %s, %lld parameters", cd_enum_name(CD_ENUM_DECODER_KIND, kind),
           (long long)cd_decoder_param_count(dec));
    const int64_t T = cd_decoder_trained_T(dec);
    if (T > 0)
        printf(", trained for T = %lld", (long long)T);
    else
        printf(", trained T unknown");
    const cd_prediction p = cd_decoder_get_prediction(dec);
    if (p > 0) printf(", predicts %s", cd_enum_name(CD_ENUM_PREDICTION, p));
    printf("\n");
    if (cd_decoder_get_config(dec, &cfg) != CD_OK) return;
    int64_t v[8], n = 0;
    if (kind == CD_DECODER_CNN &&
        cd_decoder_config_get_list(cfg, CD_DECODER_OPT_HIDDEN, v, 8, &n) == CD_OK) {
        printf("  hidden channels:");
        for (int64_t i = 0; i < n; i++) printf(" %lld", (long long)v[i]);
        printf("\n");
    }
    if (kind == CD_DECODER_UNET && cd_decoder_config_get_int(cfg, CD_DECODER_OPT_DIM, v) == CD_OK)
        printf("  base width: %lld\n", (long long)v[0]);
    if (kind == CD_DECODER_UNET &&
        cd_decoder_config_get_list(cfg, CD_DECODER_OPT_DIM_MULTS, v, 8, &n) == CD_OK) {
        printf("  width multipliers:");
        for (int64_t i = 0; i < n; i++) printf(" %lld", (long long)v[i]);
        printf("\n");
    }
    cd_decoder_config_free(cfg);
}

static void print_degradation(const cd_degradation *deg)
{
    const cd_degradation_kind kind = cd_degradation_get_kind(deg);
    const int64_t T = cd_degradation_T(deg);
    const char *name = kind >= 0 ? cd_enum_name(CD_ENUM_DEGRADATION_KIND, kind) : NULL;
    printf("degradation: %s, T = %lld\n", name ? name : "?", (long long)T);
    double mean, sd, jit;
    int32_t fitted = 0;
    if (kind > 0 && cd_degradation_get_prior(deg, &mean, &sd, &jit, &fitted) == CD_OK)
        printf("  prior: constant ~ N(%.4f, %.4f^2), jitter %.4f (%s)\n", mean, sd, jit,
               fitted ? "fitted or set" : "default");
    float *b = malloc((size_t)(T + 1) * sizeof *b), *a = malloc((size_t)(T + 1) * sizeof *a);
    if (b && a && cd_degradation_copy_schedule(deg, b, a, T + 1) == CD_OK)
        printf("schedule: beta_1 = %.6g, beta_T = %.6g, alpha-bar_1 = %.6g, alpha-bar_T = %.6g "
               "(colddiff schedule --checkpoint F --csv F.csv lists them all)\n",
               (double)b[1], (double)b[T], (double)a[1], (double)a[T]);
    free(b);
    free(a);
}

/* One option as name=value, named and typed as the library describes it
 * (a choice by its name). */
static void print_option(cd_trainer *tr, cd_trainer_option key)
{
    cd_option_info info;
    int64_t i = 0;
    double d = 0;
    if (cd_trainer_option_info(key, &info) != CD_OK) return;
    if (info.type == CD_OPTION_REAL) {
        if (cd_trainer_get_real(tr, key, &d) == CD_OK) printf(" %s=%g", info.name, d);
    } else if (cd_trainer_get_int(tr, key, &i) == CD_OK) {
        const char *name =
            info.type == CD_OPTION_CHOICE ? cd_enum_name((cd_enum)info.choices, (int32_t)i) : NULL;
        if (name)
            printf(" %s=%s", info.name, name);
        else
            printf(" %s=%lld", info.name, (long long)i);
    }
}

static void print_training(cd_trainer *tr)
{
    static const cd_trainer_option keys[] = {CD_TRAINER_OPT_LR,        CD_TRAINER_OPT_BATCH,
                                             CD_TRAINER_OPT_EMA_DECAY, CD_TRAINER_OPT_CLIP_NORM,
                                             CD_TRAINER_OPT_T_MAX,     CD_TRAINER_OPT_T_PER_BATCH,
                                             CD_TRAINER_OPT_LOSS};
    printf("training options:");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) print_option(tr, keys[i]);
    double epoch = 0, best = NAN, val = NAN, ema = 0;
    cd_trainer_progress(tr, CD_PROGRESS_EPOCH, &epoch);
    cd_trainer_progress(tr, CD_PROGRESS_BEST_VAL_LOSS, &best);
    cd_trainer_progress(tr, CD_PROGRESS_VAL_LOSS, &val);
    cd_trainer_get_real(tr, CD_TRAINER_OPT_EMA_DECAY, &ema);
    printf("\nprogress: %lld optimiser steps, %.0f epochs\n", (long long)cd_trainer_steps(tr),
           epoch);
    printf("validation loss: last %.6g, best %.6g\n", val, best);
    printf("sampling uses: the %s weights (colddiff export writes them as an inference model)\n",
           ema > 0 && cd_trainer_steps(tr) > 0 ? "EMA" : "current");
}

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    const cli_command cmd = {"info",
                             "MODEL",
                             "Print what a model file is (inference model, training checkpoint "
                             "or decoder only),\nits decoder, degradation, T and schedule, and a "
                             "checkpoint's training progress.",
                             NULL,
                             0,
                             "MODEL",
                             &path};
    const int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (cli_check_only) return CLI_OK;
    cd_trainer *tr = NULL;
    cd_decoder *dec = NULL;
    cd_degradation *deg = NULL;
    if (cd_trainer_load(&tr, path, NULL) == CD_OK) {
        printf("file: %s\nkind: training checkpoint (decoder, degradation, optimiser state)\n",
               path);
        print_decoder(cd_trainer_decoder(tr));
        print_degradation(cd_trainer_degradation(tr));
        print_training(tr);
        cd_trainer_free(tr);
        return CLI_OK;
    }
    if (cd_model_load(path, &dec, &deg) == CD_OK) {
        printf("file: %s\nkind: inference model (decoder and degradation)\n", path);
        print_decoder(dec);
        print_degradation(deg);
        cd_decoder_free(dec);
        cd_degradation_free(deg);
        return CLI_OK;
    }
    /* The model loader's message says why; keep it past the next try. */
    char why[1024];
    snprintf(why, sizeof why, "%s", cd_last_error());
    const cd_status st = cd_last_status();
    if (st == CD_ERR_FORMAT && cd_decoder_load(&dec, path) == CD_OK) {
        printf("file: %s\nkind: decoder only (no degradation or schedule: sample, restore and "
               "eval need an inference model; make one with 'colddiff export' from a training "
               "checkpoint, or examples/python/convert_torch.py with the run's schedule)\n",
               path);
        print_decoder(dec);
        cd_decoder_free(dec);
        return CLI_OK;
    }
    fprintf(stderr, "colddiff: loading the model: %s\n", why);
    return CLI_FAIL;
}

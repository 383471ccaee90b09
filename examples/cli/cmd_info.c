/*
 * cmd_info.c - colddiff info F: what a checkpoint holds.
 */
#include "cli.h"

#include <math.h>

static const char *const kinds[] = {"noise", "blur", "pixelate", "mask", "fade"};

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    const cli_command cmd = {"info", "CHECKPOINT",
                             "Print a checkpoint's configuration, parameter count, training "
                             "progress and\nstored validation loss.",
                             NULL, 0, "CHECKPOINT", &path};
    const int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (cli_check_only) return CLI_OK;
    cd_trainer *tr = NULL;
    if (cd_trainer_load(&tr, path, NULL) != CD_OK) return cli_fail("loading the checkpoint");
    const cd_decoder *dec = cd_trainer_decoder(tr);
    const cd_degradation *deg = cd_trainer_degradation(tr);
    cd_decoder_config *cfg = NULL;
    printf("checkpoint: %s\n", path);
    printf("decoder: %s, %lld parameters\n",
           cd_decoder_get_type(dec) == CD_DECODER_CNN ? "cnn" : "unet",
           (long long)cd_decoder_param_count(dec));
    if (cd_decoder_get_config(dec, &cfg) == CD_OK) {
        int64_t v[8];
        int32_t n = 0;
        if (cd_decoder_get_type(dec) == CD_DECODER_CNN &&
            cd_decoder_config_get_list(cfg, CD_DECODER_HIDDEN, v, 8, &n) == CD_OK) {
            printf("  hidden channels:");
            for (int32_t i = 0; i < n; i++) printf(" %lld", (long long)v[i]);
            printf("\n");
        }
        if (cd_decoder_get_type(dec) == CD_DECODER_UNET &&
            cd_decoder_config_get(cfg, CD_DECODER_DIM, v) == CD_OK)
            printf("  base width: %lld\n", (long long)v[0]);
        cd_decoder_config_free(cfg);
    }
    const int32_t kind = cd_degradation_get_kind(deg);
    printf("degradation: %s, T = %lld\n", kind >= 0 && kind < 5 ? kinds[kind] : "?",
           (long long)cd_degradation_T(deg));
    double mean, sd, jit;
    int32_t fitted = 0;
    if (kind > 0 && cd_degradation_get_prior(deg, &mean, &sd, &jit, &fitted) == CD_OK)
        printf("  prior: constant ~ N(%.4f, %.4f^2), jitter %.4f (%s)\n", mean, sd, jit,
               fitted ? "fitted or set" : "default");
    static const struct { cd_trainer_param key; const char *name; } keys[] = {
        {CD_TRAINER_LR, "lr"}, {CD_TRAINER_BATCH, "batch"}, {CD_TRAINER_EMA_DECAY, "ema"},
        {CD_TRAINER_CLIP_NORM, "clip_norm"}, {CD_TRAINER_T_MAX, "t_max"},
        {CD_TRAINER_T_PER_BATCH, "t_per_batch"}, {CD_TRAINER_LOSS, "loss (0 mse, 1 l1)"}};
    printf("training options:");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        double v = 0;
        if (cd_trainer_get(tr, keys[i].key, &v) == CD_OK) printf(" %s=%g", keys[i].name, v);
    }
    double epoch = 0, best = NAN, val = NAN;
    cd_trainer_progress(tr, CD_PROGRESS_EPOCH, &epoch);
    cd_trainer_progress(tr, CD_PROGRESS_BEST_VAL_LOSS, &best);
    cd_trainer_progress(tr, CD_PROGRESS_VAL_LOSS, &val);
    printf("\nprogress: %lld optimiser steps, %.0f epochs\n", (long long)cd_trainer_steps(tr),
           epoch);
    printf("validation loss: last %.6g, best %.6g\n", val, best);
    cd_trainer_free(tr);
    return CLI_OK;
}

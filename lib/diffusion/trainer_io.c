/*
 * trainer_io.c - a trainer in a checkpoint file: the decoder (decoder_io.c),
 * the degradation and its schedule arrays verbatim, the trainer's options,
 * Adam's state with its EMA, and the generator's state, so that a resumed
 * run continues bit for bit (docs/checkpoint-format.md lists the keys).
 */
#include "diffusion.h"
#include "nn/decoder.h"
#include "nn/nn.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *key;
    cd_trainer_param param;
} option_keys[] = {
    {"trainer.t_max", CD_TRAINER_T_MAX},
    {"trainer.t_per_batch", CD_TRAINER_T_PER_BATCH},
    {"trainer.loss", CD_TRAINER_LOSS},
    {"trainer.val_batch", CD_TRAINER_VAL_BATCH},
};
#define N_OPTIONS (sizeof option_keys / sizeof option_keys[0])

cd_status cd_trainer_save(cd_trainer *tr, const char *path, const cd_rng *rng)
{
    static const char fn[] = "cd_trainer_save";
    CD__CHECK_NOT_NULL(tr, fn);
    CD__CHECK_NOT_NULL(path, fn);
    cd__ckpt *ck = NULL;
    CD__TRY(cd__ckpt_create(&ck));
    cd_decoder *dec = cd_trainer_decoder(tr);
    cd_status st = cd__decoder_config_to_ckpt(dec, ck);
    if (st == CD_OK) st = cd__degradation_to_ckpt(cd_trainer_degradation(tr), ck);
    for (size_t i = 0; st == CD_OK && i < N_OPTIONS; i++) {
        double v = 0.0;
        st = cd_trainer_get(tr, option_keys[i].param, &v);
        if (st == CD_OK) st = cd__ckpt_set_i64(ck, option_keys[i].key, (int64_t)v);
    }
    if (st == CD_OK) st = cd__ckpt_set_counters(ck, cd_trainer_steps(tr), 0);
    if (st == CD_OK && rng) st = cd__ckpt_set_rng(ck, "train", rng);
    if (st == CD_OK) st = cd__ckpt_save(ck, path, cd_decoder_params(dec), cd__trainer_adam(tr));
    cd__ckpt_free(ck);
    return st;
}

static cd_status options_from_ckpt(const cd__ckpt *ck, cd_trainer *tr)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        int64_t v = 0;
        CD__TRY(cd__ckpt_get_i64(ck, option_keys[i].key, &v));
        CD__TRY(cd_trainer_set(tr, option_keys[i].param, (double)v));
    }
    return CD_OK;
}

cd_status cd_trainer_load(cd_trainer **out, const char *path, cd_rng *rng)
{
    static const char fn[] = "cd_trainer_load";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(path, fn);
    cd__ckpt *ck = NULL;
    CD__TRY(cd__ckpt_read(&ck, path));
    cd_decoder *dec = NULL;
    cd_degradation *deg = NULL;
    cd_trainer *tr = NULL;
    cd_status st = cd__decoder_from_ckpt(ck, &dec);
    if (st == CD_OK) st = cd__degradation_from_ckpt(ck, &deg);
    if (st == CD_OK) st = cd_trainer_create(&tr, dec, deg);
    if (st == CD_OK) dec = NULL, deg = NULL; /* owned by tr now */
    if (st == CD_OK) st = options_from_ckpt(ck, tr);
    if (st == CD_OK)
        st = cd__ckpt_apply(ck, cd_decoder_params(cd_trainer_decoder(tr)), cd__trainer_adam(tr), 0);
    /* The generator changes last, so a failure leaves it as it was. */
    if (st == CD_OK && rng) st = cd__ckpt_get_rng(ck, "train", rng);
    cd__ckpt_free(ck);
    cd_decoder_free(dec);
    cd_degradation_free(deg);
    if (st != CD_OK) {
        cd_trainer_free(tr);
        return st;
    }
    *out = tr;
    return CD_OK;
}

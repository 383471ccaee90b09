/*
 * model_io.c - the inference model file: a decoder with the degradation
 * (and schedule) it was trained against, and nothing of the optimiser, so
 * that sampling needs one small file that cannot be paired with the wrong
 * T. The loader also takes a full trainer checkpoint, with its EMA weights
 * when it kept an EMA (docs/checkpoint-format.md lists the keys).
 */
#include "diffusion.h"
#include "nn/decoder.h"
#include "nn/nn.h"

#include <string.h>

/* Everything but the weights, which cd__ckpt_save takes from a params set. */
static cd_status model_to_ckpt(const cd_decoder *dec, const cd_degradation *deg, cd__ckpt *ck)
{
    CD__TRY(cd__decoder_config_to_ckpt(dec, ck));
    /* The file pairs them, so its decoder is the degradation's. */
    CD__TRY(cd__ckpt_set_i64(ck, "decoder.T", deg->T));
    CD__TRY(cd__degradation_to_ckpt(deg, ck));
    return cd__ckpt_set_str(ck, "model.kind", "inference");
}

static cd_status save_model(const char *fn, const char *path, cd_decoder *dec,
                            const cd_degradation *deg, cd_weight_format format)
{
    CD__CHECK_NOT_NULL(path, fn);
    CD__CHECK_NOT_NULL(dec, fn);
    CD__CHECK_NOT_NULL(deg, fn);
    if (format != CD_WEIGHTS_FLOAT32 && format != CD_WEIGHTS_FLOAT16)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: format %d is neither CD_WEIGHTS_FLOAT32 (0) nor "
                         "CD_WEIGHTS_FLOAT16 (1)",
                         fn, (int)format);
    CD__TRY(cd__decoder_check_T(dec, deg->T, fn));
    cd__ckpt *ck = NULL;
    CD__TRY(cd__ckpt_create(&ck));
    cd__ckpt_set_half_weights(ck, format == CD_WEIGHTS_FLOAT16);
    cd_status st = model_to_ckpt(dec, deg, ck);
    if (st == CD_OK) st = cd__ckpt_save(ck, path, cd_decoder_params(dec), NULL);
    cd__ckpt_free(ck);
    return st;
}

cd_status cd_model_save(const char *path, cd_decoder *dec, const cd_degradation *deg)
{
    return save_model("cd_model_save", path, dec, deg, CD_WEIGHTS_FLOAT32);
}

cd_status cd_model_save_as(const char *path, cd_decoder *dec, const cd_degradation *deg,
                           cd_weight_format format)
{
    return save_model("cd_model_save_as", path, dec, deg, format);
}

cd_status cd_trainer_export(cd_trainer *tr, const char *path)
{
    static const char fn[] = "cd_trainer_export";
    CD__CHECK_NOT_NULL(tr, fn);
    CD__CHECK_NOT_NULL(path, fn);
    CD__TRY(cd__trainer_check_weights(tr, fn));
    cd_decoder *dec = cd_trainer_decoder(tr);
    if (!cd__adam_ema(cd__trainer_adam(tr)))
        return cd_model_save(path, dec, cd_trainer_degradation(tr));
    /* The EMA is what gets saved; swapping it in and back out leaves the
     * trainer as it was, with nothing allocated. */
    CD__TRY(cd_trainer_swap_ema(tr));
    const cd_status st = cd_model_save(path, dec, cd_trainer_degradation(tr));
    cd_trainer_swap_ema(tr);
    return st;
}

cd_status cd_model_load(const char *path, cd_decoder **dec, cd_degradation **deg)
{
    static const char fn[] = "cd_model_load";
    CD__CHECK_NOT_NULL(dec, fn);
    *dec = NULL;
    CD__CHECK_NOT_NULL(deg, fn);
    *deg = NULL;
    CD__CHECK_NOT_NULL(path, fn);
    cd__ckpt *ck = NULL;
    CD__TRY(cd__ckpt_read(&ck, path));
    const char *kind = NULL;
    cd_decoder *d = NULL;
    cd_degradation *g = NULL;
    cd_status st = cd__ckpt_get_str(ck, "degradation.kind", &kind);
    if (st == CD_ERR_NOT_FOUND) {
        st = cd__ckpt_get_str(ck, "decoder.type", &kind) == CD_OK
                 ? cd__error(CD_ERR_FORMAT,
                             "%s: '%s' holds a decoder only, with no degradation "
                             "or schedule to sample with; make an inference model with "
                             "'colddiff export' from a training checkpoint, or with "
                             "examples/python/convert_torch.py from the run's schedule",
                             fn, path)
                 : cd__error(CD_ERR_FORMAT,
                             "%s: '%s' holds no model (no decoder.type or "
                             "degradation.kind entry)",
                             fn, path);
    }
    /* A trainer checkpoint samples with its EMA weights when it has them. */
    if (st == CD_OK)
        st = cd__decoder_from_ckpt_flags(ck, cd__ckpt_has_ema(ck) ? CD__CKPT_EMA_AS_VALUES : 0, &d);
    if (st == CD_OK) st = cd__degradation_from_ckpt(ck, &g);
    if (st == CD_OK) st = cd__decoder_check_T(d, g->T, fn);
    cd__ckpt_free(ck);
    if (st != CD_OK) {
        cd_decoder_free(d);
        cd_degradation_free(g);
        return st;
    }
    if (d->trained_T == 0) d->trained_T = g->T;
    *dec = d;
    *deg = g;
    return CD_OK;
}

cd_status cd_degradation_copy_schedule(const cd_degradation *d, float *beta, float *alpha_bar,
                                       int64_t n)
{
    static const char fn[] = "cd_degradation_copy_schedule";
    CD__CHECK_NOT_NULL(d, fn);
    if (n != d->T + 1)
        return cd__error(CD_ERR_SHAPE, "%s: n = %lld, the schedule holds T + 1 = %lld values", fn,
                         (long long)n, (long long)(d->T + 1));
    if (beta) memcpy(beta, d->beta, (size_t)n * sizeof *beta);
    if (alpha_bar) memcpy(alpha_bar, d->alpha_bar, (size_t)n * sizeof *alpha_bar);
    return CD_OK;
}

cd_status cd_model_load_default(cd_decoder **dec, cd_degradation **deg)
{
    static const char fn[] = "cd_model_load_default";
    CD__CHECK_NOT_NULL(dec, fn);
    *dec = NULL;
    CD__CHECK_NOT_NULL(deg, fn);
    *deg = NULL;
    char path[4096];
    CD__TRY(cd__find_data_file(fn, "COLDDIFF_MODEL", "mnist-diffusion.cdm",
                               "the shipped pretrained MNIST model", path, sizeof path));
    return cd_model_load(path, dec, deg);
}

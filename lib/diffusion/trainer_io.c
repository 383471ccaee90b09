/*
 * trainer_io.c - a trainer in a checkpoint file: the decoder (decoder_io.c),
 * the degradation and its schedule arrays verbatim, the trainer's options,
 * Adam's state with its EMA, and the generator's state, so that a resumed
 * run continues bit for bit (docs/checkpoint-format.md lists the keys).
 */
#include "diffusion.h"
#include "nn/decoder.h"
#include "nn/nn.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Options; a key added after the first files (optional) keeps the
 * trainer's default when a file lacks it. */
static const struct {
    const char *key;
    cd_trainer_option param;
    bool optional;
} option_keys[] = {
    {"trainer.t_max", CD_TRAINER_OPT_T_MAX, false},
    {"trainer.t_per_batch", CD_TRAINER_OPT_T_PER_BATCH, false},
    {"trainer.loss", CD_TRAINER_OPT_LOSS, false},
    {"trainer.val_batch", CD_TRAINER_OPT_VAL_BATCH, false},
    {"trainer.batch", CD_TRAINER_OPT_BATCH, true},
};
#define N_OPTIONS (sizeof option_keys / sizeof option_keys[0])

/* Where the epoch loop stands: the epoch counter, trainer.epoch_pos,
 * trainer.epoch_loss_sum, trainer.best_loss, trainer.val_loss and
 * trainer.train_loss (when known), and the generator state that drew the
 * open epoch's order. */
static cd_status fit_to_ckpt(const cd__fit_state *f, int64_t steps, cd__ckpt *ck)
{
    CD__TRY(cd__ckpt_set_counters(ck, steps, f->epoch));
    CD__TRY(cd__ckpt_set_i64(ck, "trainer.epoch_pos", f->pos));
    CD__TRY(cd__ckpt_set_f64(ck, "trainer.epoch_loss_sum", f->loss_sum));
    if (!isnan(f->best_loss)) CD__TRY(cd__ckpt_set_f64(ck, "trainer.best_loss", f->best_loss));
    if (!isnan(f->val_loss)) CD__TRY(cd__ckpt_set_f64(ck, "trainer.val_loss", f->val_loss));
    if (!isnan(f->train_loss)) CD__TRY(cd__ckpt_set_f64(ck, "trainer.train_loss", f->train_loss));
    if (!f->open) return CD_OK;
    cd_rng *r = NULL;
    CD__TRY(cd_rng_create(&r, 0));
    cd_status st = cd_rng_set_state(r, f->open_rng);
    if (st == CD_OK) st = cd__ckpt_set_rng(ck, "epoch", r);
    cd_rng_free(r);
    return st;
}

cd_status cd_trainer_save(cd_trainer *tr, const char *path, const cd_rng *rng)
{
    CD__CHECK_NOT_NULL(path, "cd_trainer_save");
    return cd__trainer_save_to(tr, &path, 1, rng);
}

cd_status cd__trainer_save_to(cd_trainer *tr, const char *const *paths, int n_paths,
                              const cd_rng *rng)
{
    static const char fn[] = "cd_trainer_save";
    CD__CHECK_NOT_NULL(tr, fn);
    CD__TRY(cd__trainer_check_weights(tr, fn));
    cd__ckpt *ck = NULL;
    CD__TRY(cd__ckpt_create(&ck));
    cd_decoder *dec = cd_trainer_decoder(tr);
    cd_status st = cd__decoder_config_to_ckpt(dec, ck);
    if (st == CD_OK) st = cd__degradation_to_ckpt(cd_trainer_degradation(tr), ck);
    for (size_t i = 0; st == CD_OK && i < N_OPTIONS; i++) {
        int64_t v = 0;
        st = cd_trainer_get_int(tr, option_keys[i].param, &v);
        if (st == CD_OK) st = cd__ckpt_set_i64(ck, option_keys[i].key, v);
    }
    /* Only with classes, so other files keep their bytes. */
    double drop = 0.0;
    if (st == CD_OK && cd_decoder_class_count(dec) > 0)
        st = cd_trainer_get_real(tr, CD_TRAINER_OPT_LABEL_DROPOUT, &drop);
    if (st == CD_OK && cd_decoder_class_count(dec) > 0)
        st = cd__ckpt_set_f64(ck, "trainer.label_dropout", drop);
    if (st == CD_OK) st = fit_to_ckpt(cd__trainer_fit_state(tr), cd_trainer_steps(tr), ck);
    if (st == CD_OK && rng) st = cd__ckpt_set_rng(ck, "train", rng);
    if (st == CD_OK)
        st = cd__ckpt_save_to(ck, paths, n_paths, cd_decoder_params(dec), cd__trainer_adam(tr));
    cd__ckpt_free(ck);
    return st;
}

static cd_status options_from_ckpt(const cd__ckpt *ck, cd_trainer *tr)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        int64_t v = 0;
        cd_status st = cd__ckpt_get_i64(ck, option_keys[i].key, &v);
        if (st == CD_ERR_NOT_FOUND && option_keys[i].optional) continue;
        CD__TRY(st);
        CD__TRY(cd_trainer_set_int(tr, option_keys[i].param, v));
    }
    double drop = 0.0;
    CD__TRY(cd_trainer_get_real(tr, CD_TRAINER_OPT_LABEL_DROPOUT, &drop));
    const cd_status st = cd__ckpt_get_f64(ck, "trainer.label_dropout", &drop);
    if (st != CD_OK && st != CD_ERR_NOT_FOUND) return st;
    return cd_trainer_set_real(tr, CD_TRAINER_OPT_LABEL_DROPOUT, drop);
}

/* An optional entry: NOT_FOUND leaves *v as it is. */
static cd_status get_i64_opt(const cd__ckpt *ck, const char *key, int64_t *v)
{
    cd_status st = cd__ckpt_get_i64(ck, key, v);
    return st == CD_ERR_NOT_FOUND ? CD_OK : st;
}

static cd_status get_f64_opt(const cd__ckpt *ck, const char *key, double *v)
{
    cd_status st = cd__ckpt_get_f64(ck, key, v);
    return st == CD_ERR_NOT_FOUND ? CD_OK : st;
}

/* The epoch loop's state from fit_to_ckpt's entries into *f. A file
 * written before they existed (or by a trainer that never fitted) is at
 * the start of epoch 0. */
static cd_status fit_from_ckpt(const cd__ckpt *ck, cd__fit_state *f)
{
    static const char fn[] = "cd_trainer_load";
    cd__fit_state s = {0}; /* the plain fields only; copied into f at the end */
    s.best_loss = s.val_loss = s.train_loss = NAN;
    cd_status st = cd__ckpt_get_counters(ck, NULL, &s.epoch);
    if (st != CD_OK && st != CD_ERR_NOT_FOUND) return st;
    CD__TRY(get_i64_opt(ck, "trainer.epoch_pos", &s.pos));
    CD__TRY(get_f64_opt(ck, "trainer.epoch_loss_sum", &s.loss_sum));
    CD__TRY(get_f64_opt(ck, "trainer.best_loss", &s.best_loss));
    CD__TRY(get_f64_opt(ck, "trainer.val_loss", &s.val_loss));
    CD__TRY(get_f64_opt(ck, "trainer.train_loss", &s.train_loss));
    if (s.pos < 0 || !isfinite(s.loss_sum))
        return cd__error(CD_ERR_FORMAT,
                         "%s: trainer.epoch_pos = %" PRId64
                         " and trainer.epoch_loss_sum = %g are not a position and a loss",
                         fn, s.pos, s.loss_sum);
    cd_rng *r = NULL;
    CD__TRY(cd_rng_create(&r, 0));
    st = cd__ckpt_get_rng(ck, "epoch", r);
    if (st == CD_OK) st = cd_rng_get_state(r, s.open_rng);
    cd_rng_free(r);
    if (st == CD_OK)
        s.open = true;
    else if (st != CD_ERR_NOT_FOUND)
        return st;
    else if (s.pos > 0)
        return cd__error(CD_ERR_FORMAT,
                         "%s: stopped %" PRId64 " images into an epoch, but "
                         "the 'epoch' generator state that ordered it is missing",
                         fn, s.pos);
    f->epoch = s.epoch, f->pos = s.pos, f->loss_sum = s.loss_sum;
    f->best_loss = s.best_loss, f->val_loss = s.val_loss, f->open = s.open;
    f->train_loss = s.train_loss;
    memcpy(f->open_rng, s.open_rng, sizeof f->open_rng);
    return CD_OK;
}

/* The other kinds of model file, named, instead of a missing key. */
static cd_status not_a_training_checkpoint(const cd__ckpt *ck, const char *path)
{
    static const char fn[] = "cd_trainer_load";
    int64_t v = 0;
    const char *kind = NULL;
    if (cd__ckpt_get_i64(ck, "trainer.t_max", &v) != CD_ERR_NOT_FOUND) return CD_OK;
    if (cd__ckpt_get_str(ck, "degradation.kind", &kind) == CD_OK)
        return cd__error(CD_ERR_FORMAT,
                         "%s: '%s' is an inference model (decoder and "
                         "degradation, no training state): sample from it with "
                         "cd_model_load, or train a new model",
                         fn, path);
    if (cd__ckpt_get_str(ck, "decoder.type", &kind) == CD_OK)
        return cd__error(CD_ERR_FORMAT,
                         "%s: '%s' holds a decoder only, no degradation or "
                         "training state",
                         fn, path);
    return cd__error(CD_ERR_FORMAT, "%s: '%s' holds no model (no decoder.type entry)", fn, path);
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
    cd_status st = not_a_training_checkpoint(ck, path);
    if (st == CD_OK) st = cd__decoder_from_ckpt(ck, &dec);
    if (st == CD_OK) st = cd__degradation_from_ckpt(ck, &deg);
    if (st == CD_OK) st = cd_trainer_create(&tr, dec, deg);
    if (st == CD_OK) {
        cd__trainer_adopt_models(tr); /* what the library made goes with tr */
        dec = NULL, deg = NULL;
    }
    if (st == CD_OK) st = options_from_ckpt(ck, tr);
    if (st == CD_OK) st = fit_from_ckpt(ck, cd__trainer_fit_state(tr));
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
    int64_t batch = 1;
    cd_trainer_get_int(tr, CD_TRAINER_OPT_BATCH, &batch);
    cd__fit_publish(cd__trainer_fit_state(tr), batch);
    *out = tr;
    return CD_OK;
}

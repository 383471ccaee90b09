/*
 * trainer.c - Algorithm 1 of the report (docs/models.md, Training
 * objective): draw t, degrade, predict, take the loss, backpropagate, step
 * Adam. The buffers of a batch size are made on its first step and reused
 * afterwards.
 */
#include "diffusion.h"
#include "nn/decoder.h"
#include "nn/nn.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct cd_trainer {
    cd_decoder *dec;
    cd_degradation *deg;
    cd__adam *adam;
    int64_t t_max, t_per_batch, loss_kind, val_batch, batch;
    double label_dropout;
    cd__fit_state fit; /* the epoch loop's state (trainer_fit.c) */
    bool ema_swapped;  /* cd_trainer_swap_ema: the weights hold the EMA */
    bool owns_models;  /* dec and deg are the trainer's (cd_trainer_load) */
    /* Buffers for batch size N, made for up to cap rows. */
    int64_t N, cap;
    cd_tensor *z, *target, *out, *dout, *tau;
    cd_tensor *labels, *uniform; /* a step's labels after dropout, its draws */
    int64_t *t;
};

/* The keys the trainer itself holds; the optimiser's come from adam.c. */
static const cd__option own_options[] = {
    {CD_TRAINER_OPT_T_MAX, "t_max", CD_OPTION_INT, -1, 0, 1e9, false, false, 0},
    {CD_TRAINER_OPT_T_PER_BATCH, "t_per_batch", CD_OPTION_BOOL, -1, 0, 1, false, false, 0},
    {CD_TRAINER_OPT_LOSS, "loss", CD_OPTION_CHOICE, CD_ENUM_LOSS, 0, 1, false, false, 0},
    {CD_TRAINER_OPT_VAL_BATCH, "val_batch", CD_OPTION_INT, -1, 1, 1e6, false, false, 128},
    {CD_TRAINER_OPT_BATCH, "batch", CD_OPTION_INT, -1, 1, 1e6, false, false, 128},
    {CD_TRAINER_OPT_PREDICTION, "prediction", CD_OPTION_CHOICE, CD_ENUM_PREDICTION, 0, 2, false,
     false, 0},
    {CD_TRAINER_OPT_LABEL_DROPOUT, "label_dropout", CD_OPTION_REAL, -1, 0, 1, false, false, 0.1},
};
#define N_OWN (sizeof own_options / sizeof own_options[0])

/* The optimiser's key behind a public one, or -1. Stable keys share
 * Adam's numbers; the experimental cosine decay lives at its own. */
static int adam_index(cd_trainer_option key)
{
    if ((int)key >= 0 && (int)key <= CD_TRAINER_OPT_EMA_WARMUP) return (int)key;
    if ((int)key == CD_TRAINER_OPT_LR_DECAY) return CD__ADAM_LR_DECAY;
    return -1;
}

static const cd__option *find_option(const char *fn, cd_trainer_option key)
{
    const int a = adam_index(key);
    if (a >= 0) return cd__adam_option((cd__adam_param)a, fn);
    return cd__option_find(own_options, N_OWN, (int32_t)key, fn);
}

static int64_t *own_slot(cd_trainer *tr, cd_trainer_option key)
{
    switch (key) {
    case CD_TRAINER_OPT_T_MAX: return &tr->t_max;
    case CD_TRAINER_OPT_T_PER_BATCH: return &tr->t_per_batch;
    case CD_TRAINER_OPT_LOSS: return &tr->loss_kind;
    case CD_TRAINER_OPT_BATCH: return &tr->batch;
    default: return &tr->val_batch;
    }
}

cd_status cd_trainer_option_info(cd_trainer_option key, cd_option_info *info)
{
    static const char fn[] = "cd_trainer_option_info";
    const cd__option *o = find_option(fn, key);
    return o ? cd__option_describe(o, fn, info) : cd_last_status();
}

/* The target lives on the decoder, which files save with it. Changing it
 * under trained weights would make them mean something else. */
static cd_status set_prediction(cd_trainer *tr, int64_t p, const char *fn)
{
    if (p == tr->dec->prediction) return CD_OK;
    const char *name = cd_enum_name(CD_ENUM_PREDICTION, (int32_t)p);
    if (tr->deg->kind != CD_DEGRADATION_NOISE)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: prediction = %s: only the noise "
                         "degradation has a choice of target (the others predict the image)",
                         fn, name);
    if (cd__adam_steps(tr->adam) > 0)
        return cd__error(CD_ERR_STATE,
                         "%s: prediction = %s: the decoder has trained %" PRId64
                         " steps to predict %s; the target can change only before the first "
                         "step",
                         fn, name, cd__adam_steps(tr->adam),
                         cd_enum_name(CD_ENUM_PREDICTION, tr->dec->prediction));
    tr->dec->prediction = (int32_t)p;
    return CD_OK;
}

cd_status cd_trainer_set_int(cd_trainer *tr, cd_trainer_option key, int64_t value)
{
    static const char fn[] = "cd_trainer_set_int";
    CD__CHECK_NOT_NULL(tr, fn);
    const cd__option *o = find_option(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_int(o, fn, value));
    const int a = adam_index(key);
    if (a >= 0) return cd__adam_set(tr->adam, (cd__adam_param)a, (double)value);
    if (key == CD_TRAINER_OPT_T_MAX && value > tr->deg->T)
        return cd__error(CD_ERR_RANGE, "%s: t_max = %" PRId64 " exceeds T = %" PRId64, fn, value,
                         tr->deg->T);
    if (key == CD_TRAINER_OPT_PREDICTION) return set_prediction(tr, value, fn);
    *own_slot(tr, key) = value;
    return CD_OK;
}

cd_status cd_trainer_set_real(cd_trainer *tr, cd_trainer_option key, double value)
{
    static const char fn[] = "cd_trainer_set_real";
    CD__CHECK_NOT_NULL(tr, fn);
    const cd__option *o = find_option(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_real(o, fn, value));
    if (key == CD_TRAINER_OPT_LABEL_DROPOUT) {
        tr->label_dropout = value;
        return CD_OK;
    }
    return cd__adam_set(tr->adam, (cd__adam_param)adam_index(key), value);
}

cd_status cd_trainer_get_int(const cd_trainer *tr, cd_trainer_option key, int64_t *value)
{
    static const char fn[] = "cd_trainer_get_int";
    CD__CHECK_NOT_NULL(tr, fn);
    CD__CHECK_NOT_NULL(value, fn);
    const cd__option *o = find_option(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_read(o, fn, true));
    const int a = adam_index(key);
    if (a >= 0) {
        double v = 0.0;
        CD__TRY(cd__adam_get(tr->adam, (cd__adam_param)a, &v));
        *value = (int64_t)v;
    } else {
        *value = key == CD_TRAINER_OPT_PREDICTION ? (int64_t)tr->dec->prediction
                                                  : *own_slot((cd_trainer *)tr, key);
    }
    return CD_OK;
}

cd_status cd_trainer_get_real(const cd_trainer *tr, cd_trainer_option key, double *value)
{
    static const char fn[] = "cd_trainer_get_real";
    CD__CHECK_NOT_NULL(tr, fn);
    CD__CHECK_NOT_NULL(value, fn);
    const cd__option *o = find_option(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_read(o, fn, false));
    if (key == CD_TRAINER_OPT_LABEL_DROPOUT) {
        *value = tr->label_dropout;
        return CD_OK;
    }
    return cd__adam_get(tr->adam, (cd__adam_param)adam_index(key), value);
}

static void free_buffers(cd_trainer *tr)
{
    cd_tensor_free(tr->z);
    cd_tensor_free(tr->target);
    cd_tensor_free(tr->out);
    cd_tensor_free(tr->dout);
    cd_tensor_free(tr->tau);
    cd_tensor_free(tr->labels);
    cd_tensor_free(tr->uniform);
    cd__free(tr->t);
    tr->z = tr->target = tr->out = tr->dout = tr->tau = tr->labels = tr->uniform = NULL;
    tr->t = NULL;
    tr->N = tr->cap = 0;
}

cd_status cd_trainer_create(cd_trainer **out, cd_decoder *dec, cd_degradation *deg)
{
    static const char fn[] = "cd_trainer_create";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(dec, fn);
    CD__CHECK_NOT_NULL(deg, fn);
    CD__TRY(cd__decoder_check_T(dec, deg->T, fn));
    cd_trainer *tr = cd__calloc(1, sizeof *tr, "trainer");
    if (!tr) return cd_last_status();
    cd_status st = cd__adam_create(&tr->adam, cd_decoder_params(dec));
    if (st != CD_OK) {
        cd__free(tr);
        return st;
    }
    tr->dec = dec;
    tr->deg = deg;
    dec->trained_T = deg->T; /* saved with it, so a model file knows its T */
    tr->val_batch = 128;     /* a stop request waits for at most one batch */
    tr->batch = 128;
    tr->label_dropout = 0.1;
    cd__fit_init(&tr->fit);
    *out = tr;
    return CD_OK;
}

void cd_trainer_free(cd_trainer *tr)
{
    if (!tr) return;
    free_buffers(tr);
    cd__adam_free(tr->adam);
    if (tr->owns_models) {
        cd_decoder_free(tr->dec);
        cd_degradation_free(tr->deg);
    }
    cd__free(tr);
}

cd_decoder *cd_trainer_decoder(cd_trainer *tr)
{
    if (!tr) cd__error(CD_ERR_INVALID_ARGUMENT, "cd_trainer_decoder: argument 'tr' is NULL");
    return tr ? tr->dec : NULL;
}

cd_degradation *cd_trainer_degradation(cd_trainer *tr)
{
    if (!tr) cd__error(CD_ERR_INVALID_ARGUMENT, "cd_trainer_degradation: argument 'tr' is NULL");
    return tr ? tr->deg : NULL;
}

cd__adam *cd__trainer_adam(cd_trainer *tr) { return tr->adam; }

void cd__trainer_adopt_models(cd_trainer *tr) { tr->owns_models = true; }

cd__fit_state *cd__trainer_fit_state(const cd_trainer *tr) { return (cd__fit_state *)&tr->fit; }

int64_t cd_trainer_steps(const cd_trainer *tr)
{
    if (!tr) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_trainer_steps: argument 'tr' is NULL");
        return -1;
    }
    return cd__adam_steps(tr->adam);
}

cd_status cd__trainer_check_weights(const cd_trainer *tr, const char *fn)
{
    if (!tr->ema_swapped) return CD_OK;
    return cd__error(CD_ERR_STATE,
                     "%s: the decoder holds the EMA weights "
                     "(cd_trainer_swap_ema); swap them back first",
                     fn);
}

static cd_status no_ema(const char *fn)
{
    return cd__error(CD_ERR_NOT_FOUND,
                     "%s: the trainer keeps no EMA of the weights (set "
                     "CD_TRAINER_OPT_EMA_DECAY above 0 and train)",
                     fn);
}

cd_status cd_trainer_swap_ema(cd_trainer *tr)
{
    static const char fn[] = "cd_trainer_swap_ema";
    CD__CHECK_NOT_NULL(tr, fn);
    float *ema = cd__adam_ema_mut(tr->adam);
    if (!ema) return no_ema(fn);
    cd_params *p = cd_decoder_params(tr->dec);
    float *w = cd__params_values(p);
    const int64_t n = cd_params_numel(p);
    for (int64_t i = 0; i < n; i++) {
        const float t = w[i];
        w[i] = ema[i], ema[i] = t;
    }
    tr->ema_swapped = !tr->ema_swapped;
    return CD_OK;
}

int32_t cd_trainer_ema_swapped(const cd_trainer *tr)
{
    if (!tr) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_trainer_ema_swapped: argument 'tr' is NULL");
        return -1;
    }
    return tr->ema_swapped ? 1 : 0;
}

cd_status cd_trainer_copy_ema(cd_trainer *tr)
{
    static const char fn[] = "cd_trainer_copy_ema";
    CD__CHECK_NOT_NULL(tr, fn);
    CD__TRY(cd__trainer_check_weights(tr, fn));
    const float *ema = cd__adam_ema(tr->adam);
    if (!ema) return no_ema(fn);
    cd_params *p = cd_decoder_params(tr->dec);
    memcpy(cd__params_values(p), ema, (size_t)cd_params_numel(p) * sizeof *ema);
    return CD_OK;
}

/* Give a buffer made for more rows n rows (its data stay where they are). */
static void set_rows(cd_tensor *t, int64_t n)
{
    t->numel = t->numel / t->shape[0] * n;
    t->shape[0] = n;
}

/* Buffers for batches shaped like `shape`. They are made for the largest
 * N seen at this C x H x W and take a smaller N in place (an epoch's last,
 * partial batch), so steps of a fit allocate nothing after the first. */
static cd_status ensure_buffers(cd_trainer *tr, const int64_t shape[4])
{
    if (tr->z && shape[0] <= tr->cap && tr->z->shape[1] == shape[1] &&
        tr->z->shape[2] == shape[2] && tr->z->shape[3] == shape[3]) {
        cd_tensor *bufs[7] = {tr->z,   tr->target, tr->out,    tr->dout,
                              tr->tau, tr->labels, tr->uniform};
        for (int i = 0; i < 7; i++) set_rows(bufs[i], shape[0]);
        tr->N = shape[0];
        return CD_OK;
    }
    free_buffers(tr);
    cd_status st = CD_OK;
    cd_tensor **bufs[4] = {&tr->z, &tr->target, &tr->out, &tr->dout};
    for (int i = 0; st == CD_OK && i < 4; i++) st = cd_tensor_create(bufs[i], 4, shape);
    if (st == CD_OK) st = cd_tensor_create(&tr->tau, 1, shape);
    if (st == CD_OK) st = cd_tensor_create(&tr->labels, 1, shape);
    if (st == CD_OK) st = cd_tensor_create(&tr->uniform, 1, shape);
    if (st == CD_OK && !(tr->t = cd__malloc((size_t)shape[0] * sizeof *tr->t, "trainer steps")))
        st = CD_ERR_OUT_OF_MEMORY; /* cd__malloc set the message */
    if (st != CD_OK) {
        free_buffers(tr);
        return st;
    }
    tr->N = tr->cap = shape[0];
    return CD_OK;
}

/* Draw t in 1..t_max (per sample, or one per batch) and set tau = t / T. */
static cd_status draw_times(cd_trainer *tr, cd_rng *rng, int64_t N)
{
    const int64_t T = tr->deg->T, hi = tr->t_max > 0 ? tr->t_max : T;
    if (tr->t_per_batch) {
        CD__TRY(cd_rng_int_range(rng, tr->t, 1, 1, hi));
        for (int64_t n = 1; n < N; n++) tr->t[n] = tr->t[0];
    } else {
        CD__TRY(cd_rng_int_range(rng, tr->t, N, 1, hi));
    }
    float *tau = cd_tensor_data(tr->tau);
    for (int64_t n = 0; n < N; n++) tau[n] = (float)((double)tr->t[n] / (double)T);
    return CD_OK;
}

/* tr->labels = labels, each replaced by "no class" (-1) at the dropout
 * rate; the draws come after the times and noise, so a decoder without
 * classes trains on the same stream as before. */
static cd_status drop_labels(cd_trainer *tr, const cd_tensor *labels, cd_rng *rng, int64_t N)
{
    float *lab = tr->labels->data, *u = tr->uniform->data;
    memcpy(lab, labels->data, (size_t)N * sizeof *lab);
    if (tr->label_dropout <= 0.0) return CD_OK;
    CD__TRY(cd_rng_uniform(rng, u, N));
    for (int64_t n = 0; n < N; n++)
        if ((double)u[n] < tr->label_dropout) lab[n] = -1.0f;
    return CD_OK;
}

/* Degrade, predict and score one batch; with train, also dL/d(out) in
 * tr->dout and the activations backward needs, else a forward-only pass
 * (validation). */
static cd_status forward_loss(cd_trainer *tr, const cd_tensor *images, const cd_tensor *labels,
                              cd_rng *rng, double *loss, bool train)
{
    const int64_t N = images->shape[0], n = images->numel;
    CD__TRY(draw_times(tr, rng, N));
    const bool noise = tr->deg->kind == CD_DEGRADATION_NOISE;
    CD__TRY(cd_degradation_apply(tr->deg, images, tr->t, N, rng, tr->z, noise ? tr->target : NULL));
    if (!noise) memcpy(tr->target->data, images->data, (size_t)n * sizeof(float));
    if (noise)
        cd__noise_target(tr->deg, tr->dec->prediction, images->data, tr->t, N, n / N,
                         tr->target->data);
    if (labels && train) CD__TRY(drop_labels(tr, labels, rng, N));
    const cd_tensor *lab = !labels ? NULL : train ? tr->labels : labels;
    CD__TRY(train ? cd_decoder_forward_labeled(tr->dec, tr->z, tr->tau, lab, tr->out)
                  : cd_decoder_infer_labeled(tr->dec, tr->z, tr->tau, lab, tr->out));
    const bool l1 = tr->loss_kind == 1;
    *loss = l1 ? cd__l1_forward(tr->out->data, tr->target->data, n)
               : cd__mse_forward(tr->out->data, tr->target->data, n);
    if (!train) return CD_OK;
    memset(tr->dout->data, 0, (size_t)n * sizeof(float));
    if (l1)
        cd__l1_backward(tr->dout->data, tr->out->data, tr->target->data, n, 1.0f);
    else
        cd__mse_backward(tr->dout->data, tr->out->data, tr->target->data, n, 1.0f);
    return CD_OK;
}

/* The error for a NaN or infinite loss over images first..first+n-1 of a
 * split (first < 0: a training batch of n), naming the first bad
 * prediction when there is one (a finite prediction can still give an
 * infinite loss by overflow). */
static cd_status non_finite_loss(const cd_trainer *tr, const char *fn, double loss, int64_t first,
                                 int64_t n)
{
    const int64_t bad = cd__first_non_finite(tr->out->data, tr->out->numel);
    char where[96] = "";
    if (bad >= 0)
        snprintf(where, sizeof where, " (the prediction for image %" PRId64 " holds %g)",
                 (first > 0 ? first : 0) + bad / (tr->out->numel / tr->N),
                 (double)tr->out->data[bad]);
    char which[64] = "the batch";
    if (first >= 0)
        snprintf(which, sizeof which, "images %" PRId64 "..%" PRId64, first, first + n - 1);
    return cd__error(CD_ERR_NOT_FINITE, "%s: the loss of %s is %g%s; the weights are unchanged", fn,
                     which, loss, where);
}

/* CD_OK for NULL labels, or labels of N values for a decoder with
 * classes; otherwise the error, naming fn. */
static cd_status check_labels(const cd_trainer *tr, const char *fn, const cd_tensor *labels,
                              int64_t N)
{
    if (!labels) return CD_OK;
    if (tr->dec->cfg.classes <= 0)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: labels given, but the decoder has no classes (make it with "
                         "CD_DECODER_OPT_CLASSES > 0)",
                         fn);
    return cd__tensor_expect(labels, fn, "labels", 1, (int64_t[]){N});
}

static cd_status step(cd_trainer *tr, const char *fn, const cd_tensor *images,
                      const cd_tensor *labels, cd_rng *rng, double *loss)
{
    CD__CHECK_NOT_NULL(tr, fn);
    CD__CHECK_NOT_NULL(images, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    CD__CHECK_NOT_NULL(loss, fn);
    CD__TRY(cd__trainer_check_weights(tr, fn));
    if (images->rank != 4)
        return cd__error(CD_ERR_SHAPE, "%s: images must be N x C x H x W, got rank %" PRId32, fn,
                         images->rank);
    CD__TRY(check_labels(tr, fn, labels, images->shape[0]));
    CD__TRY(ensure_buffers(tr, images->shape));
    double l = 0.0;
    CD__TRY(forward_loss(tr, images, labels, rng, &l, true));
    if (!isfinite(l)) return non_finite_loss(tr, fn, l, -1, images->shape[0]);
    cd_params *p = cd_decoder_params(tr->dec);
    CD__TRY(cd_params_zero_grad(p));
    CD__TRY(cd_decoder_backward(tr->dec, tr->dout, NULL));
    CD__TRY(cd__adam_step(tr->adam));
    *loss = l;
    return CD_OK;
}

cd_status cd_trainer_step(cd_trainer *tr, const cd_tensor *images, cd_rng *rng, double *loss)
{
    return step(tr, "cd_trainer_step", images, NULL, rng, loss);
}

cd_status cd_trainer_step_labeled(cd_trainer *tr, const cd_tensor *images, const cd_tensor *labels,
                                  cd_rng *rng, double *loss)
{
    return step(tr, "cd_trainer_step_labeled", images, labels, rng, loss);
}

cd_status cd_trainer_eval_loss(cd_trainer *tr, const cd_dataset *ds, cd_split split, cd_rng *rng,
                               double *loss)
{
    static const char fn[] = "cd_trainer_eval_loss";
    CD__CHECK_NOT_NULL(tr, fn);
    CD__CHECK_NOT_NULL(ds, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    CD__CHECK_NOT_NULL(loss, fn);
    const int64_t count = cd_dataset_count(ds, split);
    if (count < 0) return cd_last_status();
    if (count == 0) return cd__error(CD_ERR_STATE, "%s: the split is empty", fn);
    const int64_t shape[4] = {count < tr->val_batch ? count : tr->val_batch,
                              cd_dataset_channels(ds), cd_dataset_height(ds), cd_dataset_width(ds)};
    cd_tensor *batch = NULL, *labels = NULL;
    CD__TRY(cd_tensor_create(&batch, 4, shape));
    cd_status st = tr->dec->cfg.classes > 0 ? cd_tensor_create(&labels, 1, shape) : CD_OK;
    double sum = 0.0;
    cd__fit_state *f = &tr->fit;
    const int64_t batches = (count + shape[0] - 1) / shape[0];
    if (f->validating) cd__fit_put(f, CD_PROGRESS_VAL_BATCHES, (double)batches);
    for (int64_t first = 0; st == CD_OK && first < count; first += shape[0]) {
        if (f->validating) {
            cd__fit_put(f, CD_PROGRESS_VAL_BATCH, (double)(first / shape[0]));
            /* A fit's stop request ends its validation within a batch. */
            if (atomic_load(&f->stop)) {
                st = cd__error(CD_ERR_CANCELLED, "%s: stopped on request during validation", fn);
                break;
            }
        }
        int64_t got = 0;
        st = cd_dataset_fill_batch(ds, split, first, batch, labels, &got);
        /* The last, partial batch: a view of its first `got` rows. */
        cd_tensor view = *batch, lview = labels ? *labels : view;
        set_rows(&view, got);
        if (labels) set_rows(&lview, got);
        double l = 0.0;
        if (st == CD_OK) st = ensure_buffers(tr, view.shape);
        if (st == CD_OK) st = forward_loss(tr, &view, labels ? &lview : NULL, rng, &l, false);
        if (st == CD_OK && !isfinite(l)) st = non_finite_loss(tr, fn, l, first, got);
        sum += l * (double)got;
        if (f->validating && f->stop_after_val > 0 && --f->stop_after_val == 0)
            atomic_store(&f->stop, 1);
    }
    cd_tensor_free(batch);
    cd_tensor_free(labels);
    if (st == CD_OK) *loss = sum / (double)count;
    return st;
}

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
    cd__fit_state fit; /* the epoch loop's state (trainer_fit.c) */
    bool ema_swapped;  /* cd_trainer_swap_ema: the weights hold the EMA */
    /* Buffers for batch size N, made for up to cap rows. */
    int64_t N, cap;
    cd_tensor *z, *target, *out, *dout, *tau;
    int64_t *t;
};

typedef struct {
    double lo, hi, def;
    bool integer;
} trainer_key;

/* Bounds of the keys the trainer itself holds (Adam's come from adam.c). */
static const trainer_key own_keys[] = {
    [0] = {0, 1e9, 0, true},   /* T_MAX: 0 means T */
    [1] = {0, 1, 0, true},     /* T_PER_BATCH */
    [2] = {0, 1, 0, true},     /* LOSS */
    [3] = {1, 1e6, 128, true}, /* VAL_BATCH */
    [4] = {1, 1e6, 128, true}, /* BATCH */
    [5] = {0, 2, 0, true},     /* PREDICTION (kept on the decoder) */
};
#define OWN_FIRST CD_TRAINER_T_MAX
#define OWN_COUNT 6

static bool is_adam_key(cd_trainer_param key)
{
    return (int)key >= 0 && (int)key < CD__ADAM_NPARAMS;
}

static bool is_own_key(cd_trainer_param key)
{
    return (int)key >= OWN_FIRST && (int)key < OWN_FIRST + OWN_COUNT;
}

static int64_t *own_slot(cd_trainer *tr, cd_trainer_param key)
{
    switch (key) {
    case CD_TRAINER_T_MAX: return &tr->t_max;
    case CD_TRAINER_T_PER_BATCH: return &tr->t_per_batch;
    case CD_TRAINER_LOSS: return &tr->loss_kind;
    case CD_TRAINER_BATCH: return &tr->batch;
    default: return &tr->val_batch;
    }
}

cd_status cd_trainer_bounds(cd_trainer_param key, double *lo, double *hi)
{
    static const char fn[] = "cd_trainer_bounds";
    CD__CHECK_NOT_NULL(lo, fn);
    CD__CHECK_NOT_NULL(hi, fn);
    if (is_adam_key(key)) {
        int32_t open;
        return cd__adam_bounds((cd__adam_param)key, lo, hi, &open);
    }
    if (!is_own_key(key))
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown key %d", fn, (int)key);
    *lo = own_keys[key - OWN_FIRST].lo;
    *hi = own_keys[key - OWN_FIRST].hi;
    return CD_OK;
}

/* The target lives on the decoder, which files save with it. Changing it
 * under trained weights would make them mean something else. */
static cd_status set_prediction(cd_trainer *tr, int32_t p)
{
    static const char fn[] = "cd_trainer_set";
    if (p == tr->dec->prediction) return CD_OK;
    if (tr->deg->kind != CD_DEGRADATION_NOISE)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: prediction = %d: only the noise "
                         "degradation has a choice of target (the others predict the image)",
                         fn, (int)p);
    if (cd__adam_steps(tr->adam) > 0)
        return cd__error(CD_ERR_STATE, "%s: prediction = %d: the decoder has trained %" PRId64
                         " steps to predict %s; the target can change only before the first "
                         "step", fn, (int)p, cd__adam_steps(tr->adam),
                         tr->dec->prediction == CD_PREDICT_X0 ? "x0"
                         : tr->dec->prediction == CD_PREDICT_V ? "v" : "the noise");
    tr->dec->prediction = p;
    return CD_OK;
}

cd_status cd_trainer_set(cd_trainer *tr, cd_trainer_param key, double value)
{
    static const char fn[] = "cd_trainer_set";
    CD__CHECK_NOT_NULL(tr, fn);
    if (!isfinite(value))
        return cd__error(CD_ERR_NOT_FINITE, "%s: key %d: value %g", fn, (int)key, value);
    if (is_adam_key(key)) return cd__adam_set(tr->adam, (cd__adam_param)key, value);
    if (!is_own_key(key))
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown key %d", fn, (int)key);
    const trainer_key *k = &own_keys[key - OWN_FIRST];
    if (value < k->lo || value > k->hi || value != floor(value))
        return cd__error(CD_ERR_RANGE, "%s: key %d: %g is not an integer in %g..%g", fn,
                         (int)key, value, k->lo, k->hi);
    if (key == CD_TRAINER_T_MAX && value > (double)tr->deg->T)
        return cd__error(CD_ERR_RANGE, "%s: t_max = %g exceeds T = %" PRId64, fn, value,
                         tr->deg->T);
    if (key == CD_TRAINER_PREDICTION) return set_prediction(tr, (int32_t)value);
    *own_slot(tr, key) = (int64_t)value;
    return CD_OK;
}

cd_status cd_trainer_get(const cd_trainer *tr, cd_trainer_param key, double *value)
{
    static const char fn[] = "cd_trainer_get";
    CD__CHECK_NOT_NULL(tr, fn);
    CD__CHECK_NOT_NULL(value, fn);
    if (is_adam_key(key)) return cd__adam_get(tr->adam, (cd__adam_param)key, value);
    if (!is_own_key(key))
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown key %d", fn, (int)key);
    *value = key == CD_TRAINER_PREDICTION ? (double)tr->dec->prediction
                                          : (double)*own_slot((cd_trainer *)tr, key);
    return CD_OK;
}

static void free_buffers(cd_trainer *tr)
{
    cd_tensor_free(tr->z);
    cd_tensor_free(tr->target);
    cd_tensor_free(tr->out);
    cd_tensor_free(tr->dout);
    cd_tensor_free(tr->tau);
    cd__free(tr->t);
    tr->z = tr->target = tr->out = tr->dout = tr->tau = NULL;
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
    tr->val_batch = 128; /* a stop request waits for at most one batch */
    tr->batch = 128;
    cd__fit_init(&tr->fit);
    *out = tr;
    return CD_OK;
}

void cd_trainer_free(cd_trainer *tr)
{
    if (!tr) return;
    free_buffers(tr);
    cd__adam_free(tr->adam);
    cd_decoder_free(tr->dec);
    cd_degradation_free(tr->deg);
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

cd__fit_state *cd__trainer_fit_state(const cd_trainer *tr)
{
    return (cd__fit_state *)&tr->fit;
}

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
    return cd__error(CD_ERR_STATE, "%s: the decoder holds the EMA weights "
                     "(cd_trainer_swap_ema); swap them back first", fn);
}

static cd_status no_ema(const char *fn)
{
    return cd__error(CD_ERR_NOT_FOUND, "%s: the trainer keeps no EMA of the weights (set "
                     "CD_TRAINER_EMA_DECAY above 0 and train)", fn);
}

cd_status cd_trainer_swap_ema(cd_trainer *tr)
{
    static const char fn[] = "cd_trainer_swap_ema";
    CD__CHECK_NOT_NULL(tr, fn);
    float *ema = cd__adam_ema_mut(tr->adam);
    if (!ema)
        return no_ema(fn);
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
    if (!ema)
        return no_ema(fn);
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
        cd_tensor *bufs[5] = {tr->z, tr->target, tr->out, tr->dout, tr->tau};
        for (int i = 0; i < 5; i++) set_rows(bufs[i], shape[0]);
        tr->N = shape[0];
        return CD_OK;
    }
    free_buffers(tr);
    cd_status st = CD_OK;
    cd_tensor **bufs[4] = {&tr->z, &tr->target, &tr->out, &tr->dout};
    for (int i = 0; st == CD_OK && i < 4; i++) st = cd_tensor_create(bufs[i], 4, shape);
    if (st == CD_OK) st = cd_tensor_create(&tr->tau, 1, shape);
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

/* Degrade, predict and score one batch; with train, also dL/d(out) in
 * tr->dout and the activations backward needs, else a forward-only pass
 * (validation). */
static cd_status forward_loss(cd_trainer *tr, const cd_tensor *images, cd_rng *rng,
                              double *loss, bool train)
{
    const int64_t N = images->shape[0], n = images->numel;
    CD__TRY(draw_times(tr, rng, N));
    const bool noise = tr->deg->kind == CD_DEGRADATION_NOISE;
    CD__TRY(cd_degradation_apply(tr->deg, images, tr->t, N, rng, tr->z, noise ? tr->target : NULL));
    if (!noise) memcpy(tr->target->data, images->data, (size_t)n * sizeof(float));
    if (noise)
        cd__noise_target(tr->deg, tr->dec->prediction, images->data, tr->t, N, n / N,
                         tr->target->data);
    CD__TRY(train ? cd_decoder_forward(tr->dec, tr->z, tr->tau, tr->out)
                  : cd_decoder_infer(tr->dec, tr->z, tr->tau, tr->out));
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
static cd_status non_finite_loss(const cd_trainer *tr, const char *fn, double loss,
                                 int64_t first, int64_t n)
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
    return cd__error(CD_ERR_NOT_FINITE, "%s: the loss of %s is %g%s; the weights are unchanged",
                     fn, which, loss, where);
}

cd_status cd_trainer_step(cd_trainer *tr, const cd_tensor *images, cd_rng *rng, double *loss)
{
    static const char fn[] = "cd_trainer_step";
    CD__CHECK_NOT_NULL(tr, fn);
    CD__CHECK_NOT_NULL(images, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    CD__CHECK_NOT_NULL(loss, fn);
    CD__TRY(cd__trainer_check_weights(tr, fn));
    if (images->rank != 4)
        return cd__error(CD_ERR_SHAPE, "%s: images must be N x C x H x W, got rank %" PRId32,
                         fn, images->rank);
    CD__TRY(ensure_buffers(tr, images->shape));
    double l = 0.0;
    CD__TRY(forward_loss(tr, images, rng, &l, true));
    if (!isfinite(l)) return non_finite_loss(tr, fn, l, -1, images->shape[0]);
    cd_params *p = cd_decoder_params(tr->dec);
    CD__TRY(cd_params_zero_grad(p));
    CD__TRY(cd_decoder_backward(tr->dec, tr->dout, NULL));
    CD__TRY(cd__adam_step(tr->adam));
    *loss = l;
    return CD_OK;
}

cd_status cd_trainer_eval_loss(cd_trainer *tr, const cd_dataset *ds, cd_split split,
                               cd_rng *rng, double *loss)
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
                              cd_dataset_channels(ds), cd_dataset_height(ds),
                              cd_dataset_width(ds)};
    cd_tensor *batch = NULL;
    CD__TRY(cd_tensor_create(&batch, 4, shape));
    double sum = 0.0;
    cd_status st = CD_OK;
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
        st = cd_dataset_fill_batch(ds, split, first, batch, NULL, &got);
        /* The last, partial batch: a view of its first `got` rows. */
        cd_tensor view = *batch;
        set_rows(&view, got);
        double l = 0.0;
        if (st == CD_OK) st = ensure_buffers(tr, view.shape);
        if (st == CD_OK) st = forward_loss(tr, &view, rng, &l, false);
        if (st == CD_OK && !isfinite(l)) st = non_finite_loss(tr, fn, l, first, got);
        sum += l * (double)got;
        if (f->validating && f->stop_after_val > 0 && --f->stop_after_val == 0)
            atomic_store(&f->stop, 1);
    }
    cd_tensor_free(batch);
    if (st == CD_OK) *loss = sum / (double)count;
    return st;
}

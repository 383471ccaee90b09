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
    /* Data parallelism (cd_trainer_set_distributed): this rank's place,
     * the gradient sum, and its buckets, each a run of parameters whose
     * sum starts once backward has finished all of them. */
    int64_t rank, world, bucket;
    cd_allreduce_fn sum;
    void *sum_user;
    int64_t n_buckets, buckets_for; /* buckets_for: the bucket size they were made for */
    int64_t *bucket_param;          /* bucket b: parameters [bucket_param[b], [b + 1]) */
    int64_t *bucket_off;            /* ... and floats [bucket_off[b], [b + 1]) */
    uint8_t *started;               /* bucket b's sum has begun this step */
    uint8_t *late;                  /* parameter i is complete only when backward ends */
    bool late_known;                /* late holds what a first backward showed */
    cd_status sum_status;           /* the first failed sum begun inside backward */
    const char *sum_fn;             /* the public call it runs for, for messages */
    bool in_backward;               /* a trainer step's backward is running */
    int64_t *t_all, t_all_cap;      /* the times of a whole batch, of which t is a share */
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
    {CD_TRAINER_OPT_BUCKET, "bucket", CD_OPTION_INT, -1, 0, 1e15, false, false, 262144},
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
    case CD_TRAINER_OPT_BUCKET: return &tr->bucket;
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

static void free_buckets(cd_trainer *tr)
{
    cd__free(tr->bucket_param);
    cd__free(tr->bucket_off);
    cd__free(tr->started);
    tr->bucket_param = tr->bucket_off = NULL;
    tr->started = NULL;
    tr->n_buckets = tr->buckets_for = 0;
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
    tr->world = 1;
    tr->bucket = 262144;
    cd__fit_init(&tr->fit);
    *out = tr;
    return CD_OK;
}

void cd_trainer_free(cd_trainer *tr)
{
    if (!tr) return;
    if (tr->world > 1) cd__decoder_watch_grads(tr->dec, NULL, NULL); /* it may outlive tr */
    free_buffers(tr);
    free_buckets(tr);
    cd__free(tr->late);
    cd__free(tr->t_all);
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

/* The rows of a batch a step computes: first..first+N-1 of `total`, the
 * whole batch unless the trainer is one rank of several. */
typedef struct {
    int64_t first, total;
} rows_t;

/* Draw t in 1..t_max (per sample, or one per batch) for the whole batch,
 * keep the N of this rank's rows, and set tau = t / T for them. */
static cd_status draw_times(cd_trainer *tr, cd_rng *rng, int64_t N, rows_t r)
{
    const int64_t T = tr->deg->T, hi = tr->t_max > 0 ? tr->t_max : T;
    int64_t *all = tr->t;
    if (r.total != N) {
        if (r.total > tr->t_all_cap) {
            cd__free(tr->t_all);
            tr->t_all_cap = 0;
            tr->t_all = cd__malloc((size_t)r.total * sizeof *tr->t_all, "trainer batch steps");
            if (!tr->t_all) return cd_last_status();
            tr->t_all_cap = r.total;
        }
        all = tr->t_all;
    }
    if (tr->t_per_batch) {
        CD__TRY(cd_rng_int_range(rng, all, 1, 1, hi));
        for (int64_t n = 1; n < r.total; n++) all[n] = all[0];
    } else {
        CD__TRY(cd_rng_int_range(rng, all, r.total, 1, hi));
    }
    if (all != tr->t && N > 0) memcpy(tr->t, all + r.first, (size_t)N * sizeof *tr->t);
    float *tau = cd_tensor_data(tr->tau);
    for (int64_t n = 0; n < N; n++) tau[n] = (float)((double)tr->t[n] / (double)T);
    return CD_OK;
}

/* tr->labels = labels, each replaced by "no class" (-1) at the dropout
 * rate; the draws come after the times and noise, so a decoder without
 * classes trains on the same stream as before. */
static cd_status drop_labels(cd_trainer *tr, const cd_tensor *labels, cd_rng *rng, int64_t N,
                             rows_t r)
{
    float *lab = N > 0 ? tr->labels->data : NULL, *u = N > 0 ? tr->uniform->data : NULL;
    if (N > 0) memcpy(lab, labels->data, (size_t)N * sizeof *lab);
    if (tr->label_dropout <= 0.0) return CD_OK;
    CD__TRY(cd__rng_uniform_window(rng, u, r.first, N, r.total));
    for (int64_t n = 0; n < N; n++)
        if ((double)u[n] < tr->label_dropout) lab[n] = -1.0f;
    return CD_OK;
}

/* A rank with no rows of a batch draws as the others do, so that the
 * generators stay together. */
static cd_status skip_draws(cd_trainer *tr, const cd_tensor *images, bool labeled, cd_rng *rng,
                            rows_t r)
{
    const int64_t D = images->shape[1] * images->shape[2] * images->shape[3];
    CD__TRY(draw_times(tr, rng, 0, r));
    if (tr->deg->kind == CD_DEGRADATION_NOISE)
        CD__TRY(cd__rng_normal_window(rng, NULL, r.first * D, 0, r.total * D));
    if (labeled) CD__TRY(drop_labels(tr, NULL, rng, 0, r));
    return CD_OK;
}

/* Degrade, predict and score one batch; with train, also dL/d(out) in
 * tr->dout and the activations backward needs, else a forward-only pass
 * (validation). */
static cd_status forward_loss(cd_trainer *tr, const cd_tensor *images, const cd_tensor *labels,
                              cd_rng *rng, double *loss, bool train, rows_t r)
{
    const int64_t N = images->shape[0], n = images->numel;
    CD__TRY(draw_times(tr, rng, N, r));
    const bool noise = tr->deg->kind == CD_DEGRADATION_NOISE;
    CD__TRY(cd__degradation_apply_rows(tr->deg, "cd_degradation_apply", images, tr->t, N, rng,
                                       tr->z, noise ? tr->target : NULL, r.first, r.total));
    if (!noise) memcpy(tr->target->data, images->data, (size_t)n * sizeof(float));
    if (noise)
        cd__noise_target(tr->deg, tr->dec->prediction, images->data, tr->t, N, n / N,
                         tr->target->data);
    if (labels && train) CD__TRY(drop_labels(tr, labels, rng, N, r));
    const cd_tensor *lab = !labels ? NULL : train ? tr->labels : labels;
    CD__TRY(train ? cd_decoder_forward_labeled(tr->dec, tr->z, tr->tau, lab, tr->out)
                  : cd_decoder_infer_labeled(tr->dec, tr->z, tr->tau, lab, tr->out));
    const bool l1 = tr->loss_kind == 1;
    *loss = l1 ? cd__l1_forward(tr->out->data, tr->target->data, n)
               : cd__mse_forward(tr->out->data, tr->target->data, n);
    if (!train) return CD_OK;
    /* The loss is a mean over the whole batch: this rank's rows weigh
     * their share of it (exactly 1 for a whole batch). */
    const float share = (float)((double)N / (double)r.total);
    memset(tr->dout->data, 0, (size_t)n * sizeof(float));
    if (!isfinite(*loss)) return CD_OK; /* reported after the ranks agree on it */
    if (l1)
        cd__l1_backward(tr->dout->data, tr->out->data, tr->target->data, n, share);
    else
        cd__mse_backward(tr->dout->data, tr->out->data, tr->target->data, n, share);
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

/* ---- data parallelism ---------------------------------------------------- */

static void on_stage(void *user, const uint8_t *touched);

cd_status cd_trainer_set_distributed(cd_trainer *tr, int64_t rank, int64_t world,
                                     cd_allreduce_fn sum, void *user)
{
    static const char fn[] = "cd_trainer_set_distributed";
    CD__CHECK_NOT_NULL(tr, fn);
    if (world < 1)
        return cd__error(CD_ERR_RANGE, "%s: world = %" PRId64 " must be at least 1", fn, world);
    if (rank < 0 || rank >= world)
        return cd__error(CD_ERR_RANGE, "%s: rank = %" PRId64 " is outside 0..%" PRId64, fn, rank,
                         world - 1);
    if (world > 1 && !sum)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: %" PRId64 " ranks need a gradient sum (argument 'sum' is NULL)", fn,
                         world);
    CD__TRY(cd__decoder_watch_grads(tr->dec, world > 1 ? on_stage : NULL, tr));
    tr->rank = rank, tr->world = world;
    tr->sum = world > 1 ? sum : NULL;
    tr->sum_user = world > 1 ? user : NULL;
    return CD_OK;
}

cd_status cd_trainer_get_distributed(const cd_trainer *tr, int64_t *rank, int64_t *world)
{
    static const char fn[] = "cd_trainer_get_distributed";
    CD__CHECK_NOT_NULL(tr, fn);
    CD__CHECK_NOT_NULL(rank, fn);
    CD__CHECK_NOT_NULL(world, fn);
    *rank = tr->rank, *world = tr->world;
    return CD_OK;
}

int64_t cd__trainer_shard(const cd_trainer *tr, int64_t n, int64_t *first)
{
    /* In 128 bits, so that no rank x size overflows. */
    const int64_t lo = (int64_t)((__int128)tr->rank * n / tr->world);
    *first = lo;
    return (int64_t)((__int128)(tr->rank + 1) * n / tr->world) - lo;
}

static rows_t shard(const cd_trainer *tr, int64_t n, int64_t *count)
{
    int64_t lo = 0;
    *count = cd__trainer_shard(tr, n, &lo);
    return (rows_t){lo, n};
}

/* One call of the caller's sum, its failure named. */
static cd_status call_sum(cd_trainer *tr, const char *fn, cd_reduce_op op, float *data,
                          int64_t count, const char *what)
{
    cd_clear_error();
    const cd_status st = tr->sum(op, data, count, tr->sum_user);
    if (st == CD_OK) return CD_OK;
    char cause[512];
    snprintf(cause, sizeof cause, "%s", cd_last_error());
    return cd__error(st, "%s: the sum of %s over %" PRId64 " ranks failed%s%s", fn, what, tr->world,
                     cause[0] ? ": " : "", cause);
}

/* Buckets of at most CD_TRAINER_OPT_BUCKET floats (a larger parameter
 * alone), in the parameters' order; one bucket when it is 0. Once a
 * backward has shown which parameters complete only at its end (a time
 * embedding that feeds every layer), no bucket mixes those with the
 * others, which would hold the others' sum back to the end too. */
static cd_status make_buckets(cd_trainer *tr)
{
    if (tr->bucket_param && tr->buckets_for == tr->bucket) return CD_OK;
    free_buckets(tr);
    cd_params *p = cd_decoder_params(tr->dec);
    const int64_t P = cd_params_count(p), cap = tr->bucket > 0 ? tr->bucket : INT64_MAX;
    tr->bucket_param = cd__malloc((size_t)(P + 1) * sizeof(int64_t), "gradient buckets");
    tr->bucket_off = cd__malloc((size_t)(P + 1) * sizeof(int64_t), "gradient buckets");
    tr->started = cd__calloc((size_t)P + 1, 1, "gradient buckets");
    if (!tr->bucket_param || !tr->bucket_off || !tr->started) {
        free_buckets(tr);
        return cd_last_status();
    }
    int64_t nb = 0, size = 0;
    tr->bucket_param[0] = tr->bucket_off[0] = 0;
    for (int64_t i = 0; i < P; i++) {
        const int64_t k = cd_params_numel_at(p, i);
        const bool split =
            tr->bucket > 0 && tr->late_known && i > 0 && tr->late[i] != tr->late[i - 1];
        if (size > 0 && (size > cap - k || split)) {
            nb++;
            tr->bucket_param[nb] = i;
            tr->bucket_off[nb] = cd__params_offset(p, i);
            size = 0;
        }
        size += k;
    }
    nb++;
    tr->bucket_param[nb] = P;
    tr->bucket_off[nb] = cd_params_numel(p);
    tr->n_buckets = nb;
    tr->buckets_for = tr->bucket;
    return CD_OK;
}

static cd_status start_bucket(cd_trainer *tr, const char *fn, int64_t b)
{
    tr->started[b] = 1;
    float *g = cd__params_grads(cd_decoder_params(tr->dec)) + tr->bucket_off[b];
    return call_sum(tr, fn, CD_REDUCE_START, g, tr->bucket_off[b + 1] - tr->bucket_off[b],
                    "the gradients");
}

/* Backward has finished the gradients it marked: start every bucket now
 * complete, from the last, so that all ranks start the same buckets in
 * the same order (backward runs alike on each), and let the sums move. */
static void on_stage(void *user, const uint8_t *touched)
{
    cd_trainer *tr = user;
    if (!tr->in_backward) return;
    /* Until backward ends, late holds what some stage had completed. */
    if (!tr->late_known)
        memcpy(tr->late, touched, (size_t)cd_params_count(cd_decoder_params(tr->dec)));
    if (tr->sum_status != CD_OK || tr->bucket <= 0) return;
    for (int64_t b = tr->n_buckets - 1; b >= 0 && tr->sum_status == CD_OK; b--) {
        if (tr->started[b]) continue;
        bool ready = true;
        for (int64_t i = tr->bucket_param[b]; ready && i < tr->bucket_param[b + 1]; i++)
            ready = touched[i] != 0;
        if (ready) tr->sum_status = start_bucket(tr, tr->sum_fn, b);
    }
    if (tr->sum_status == CD_OK)
        tr->sum_status = call_sum(tr, tr->sum_fn, CD_REDUCE_POLL, NULL, 0, "the gradients");
}

/* Backward with the gradient sums inside it, and the rest after it. */
static cd_status backward_and_sum(cd_trainer *tr, const char *fn)
{
    const int64_t P = cd_params_count(cd_decoder_params(tr->dec));
    if (!tr->late && !(tr->late = cd__calloc((size_t)P, 1, "gradient stages")))
        return cd_last_status();
    CD__TRY(make_buckets(tr));
    memset(tr->started, 0, (size_t)tr->n_buckets);
    tr->sum_status = CD_OK;
    tr->sum_fn = fn;
    tr->in_backward = true;
    const cd_status st = cd_decoder_backward(tr->dec, tr->dout, NULL);
    tr->in_backward = false;
    CD__TRY(st);
    if (!tr->late_known) { /* the next step's buckets keep the late ones apart */
        for (int64_t i = 0; i < P; i++) tr->late[i] = !tr->late[i];
        tr->late_known = true;
        tr->buckets_for = -1;
    }
    CD__TRY(tr->sum_status);
    for (int64_t b = tr->n_buckets - 1; b >= 0; b--)
        if (!tr->started[b]) CD__TRY(start_bucket(tr, fn, b));
    return call_sum(tr, fn, CD_REDUCE_WAIT, NULL, 0, "the gradients");
}

/* A rank without rows of a batch still runs backward, on one row of
 * zeros with a zero loss gradient: its gradients are zeros, and its sums
 * start in the order the others' do. */
static cd_status idle_pass(cd_trainer *tr, const cd_tensor *images, const char *fn)
{
    const int64_t shape[4] = {1, images->shape[1], images->shape[2], images->shape[3]};
    CD__TRY(ensure_buffers(tr, shape));
    memset(tr->z->data, 0, (size_t)tr->z->numel * sizeof(float));
    memset(tr->dout->data, 0, (size_t)tr->dout->numel * sizeof(float));
    tr->tau->data[0] = 1.0f;
    CD__TRY(cd_decoder_forward_labeled(tr->dec, tr->z, tr->tau, NULL, tr->out));
    CD__TRY(cd_params_zero_grad(cd_decoder_params(tr->dec)));
    return backward_and_sum(tr, fn);
}

cd_status cd__trainer_agree_stop(cd_trainer *tr, const char *fn, bool *stop)
{
    const bool mine = atomic_load(&tr->fit.stop) != 0;
    *stop = mine;
    if (tr->world <= 1) return CD_OK;
    float v = mine ? 1.0f : 0.0f;
    CD__TRY(call_sum(tr, fn, CD_REDUCE_START, &v, 1, "the stop requests"));
    CD__TRY(call_sum(tr, fn, CD_REDUCE_WAIT, NULL, 0, "the stop requests"));
    *stop = v > 0.0f;
    if (*stop) atomic_store(&tr->fit.stop, 1);
    return CD_OK;
}

/* Sum one value over the ranks (a loss); the value itself for one. */
static cd_status sum_value(cd_trainer *tr, const char *fn, double *v, const char *what)
{
    if (tr->world <= 1) return CD_OK;
    float f = (float)*v;
    CD__TRY(call_sum(tr, fn, CD_REDUCE_START, &f, 1, what));
    CD__TRY(call_sum(tr, fn, CD_REDUCE_WAIT, NULL, 0, what));
    *v = (double)f;
    return CD_OK;
}

/* ---- a step ---------------------------------------------------------------- */

cd_status cd__trainer_step_rows(cd_trainer *tr, const char *fn, const cd_tensor *images,
                                const cd_tensor *labels, cd_rng *rng, int64_t first, int64_t total,
                                double *loss)
{
    const rows_t r = {first, total};
    const int64_t N = images->shape[0];
    double l = 0.0;
    cd_params *p = cd_decoder_params(tr->dec);
    if (N == 0) {
        CD__TRY(skip_draws(tr, images, labels != NULL, rng, r));
        CD__TRY(idle_pass(tr, images, fn));
    } else {
        CD__TRY(ensure_buffers(tr, images->shape));
        CD__TRY(forward_loss(tr, images, labels, rng, &l, true, r));
        if (tr->world <= 1 && !isfinite(l)) return non_finite_loss(tr, fn, l, -1, N);
        CD__TRY(cd_params_zero_grad(p));
        if (tr->world > 1)
            CD__TRY(backward_and_sum(tr, fn));
        else
            CD__TRY(cd_decoder_backward(tr->dec, tr->dout, NULL));
    }
    if (tr->world > 1) {
        const bool mine_finite = isfinite(l);
        double part = l * (double)N / (double)total;
        CD__TRY(sum_value(tr, fn, &part, "the loss"));
        if (!isfinite(part)) {
            if (N > 0 && !mine_finite) return non_finite_loss(tr, fn, l, -1, N);
            return cd__error(CD_ERR_NOT_FINITE,
                             "%s: the loss of the batch is %g on another rank; the weights are "
                             "unchanged",
                             fn, part);
        }
        l = part;
    }
    CD__TRY(cd__adam_step(tr->adam));
    *loss = l;
    return CD_OK;
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
    const int64_t B = images->shape[0];
    CD__TRY(check_labels(tr, fn, labels, B));
    if (B == 0) return cd__error(CD_ERR_SHAPE, "%s: the batch holds no images", fn);
    int64_t n = B;
    const rows_t r = tr->world > 1 ? shard(tr, B, &n) : (rows_t){0, B};
    cd_tensor view = *images, lview = labels ? *labels : view;
    const int64_t D = images->numel / B;
    view.data += r.first * D;
    view.numel = n * D;
    view.shape[0] = n;
    if (labels) {
        lview.data += r.first;
        lview.numel = lview.shape[0] = n;
    }
    return cd__trainer_step_rows(tr, fn, &view, labels ? &lview : NULL, rng, r.first, B, loss);
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
            bool stop = false;
            st = cd__trainer_agree_stop(tr, fn, &stop);
            if (st == CD_OK && stop)
                st = cd__error(CD_ERR_CANCELLED, "%s: stopped on request during validation", fn);
            if (st != CD_OK) break;
        }
        /* This rank's rows of the batch (all of them for one process). */
        const int64_t rows = count - first < shape[0] ? count - first : shape[0];
        int64_t got = rows, mine = rows;
        const rows_t r = tr->world > 1 ? shard(tr, rows, &mine) : (rows_t){0, rows};
        cd_tensor view = *batch, lview = labels ? *labels : view;
        set_rows(&view, mine);
        if (labels) set_rows(&lview, mine);
        if (mine > 0)
            st = cd_dataset_fill_batch(ds, split, first + r.first, &view, labels ? &lview : NULL,
                                       &got);
        double l = 0.0;
        if (st == CD_OK && mine == 0) st = skip_draws(tr, &view, false, rng, r);
        if (st == CD_OK && mine > 0) st = ensure_buffers(tr, view.shape);
        if (st == CD_OK && mine > 0)
            st = forward_loss(tr, &view, labels ? &lview : NULL, rng, &l, false, r);
        if (st == CD_OK && tr->world <= 1 && !isfinite(l))
            st = non_finite_loss(tr, fn, l, first, got);
        sum += l * (double)mine;
        if (f->validating && f->stop_after_val > 0 && --f->stop_after_val == 0)
            atomic_store(&f->stop, 1);
    }
    cd_tensor_free(batch);
    cd_tensor_free(labels);
    if (st == CD_OK) st = sum_value(tr, fn, &sum, "the validation loss");
    if (st == CD_OK && !isfinite(sum))
        st = cd__error(CD_ERR_NOT_FINITE, "%s: the loss summed over %" PRId64 " ranks is %g", fn,
                       tr->world, sum);
    if (st == CD_OK) *loss = sum / (double)count;
    return st;
}

/*
 * test_loss.c - the training objective as an evaluation metric
 * (docs/models.md, Metrics: Test loss): one fresh t and noise per image,
 * the loss of each image on its own, then their mean and its standard
 * error. The trainer's own options (t_max, one t per batch, MSE or L1)
 * define the objective.
 */
#include "diffusion.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

typedef struct {
    cd_tensor *x, *z, *eps, *tau, *pred;
    cd_tensor *labels; /* NULL for a decoder without classes */
    int64_t *t;
} buffers;

static void free_buffers(buffers *b)
{
    cd_tensor_free(b->x), cd_tensor_free(b->z), cd_tensor_free(b->eps);
    cd_tensor_free(b->tau), cd_tensor_free(b->pred), cd_tensor_free(b->labels);
    cd__free(b->t);
}

static cd_status make_buffers(buffers *b, const int64_t shape[4], bool labels)
{
    if (labels) CD__TRY(cd_tensor_create(&b->labels, 1, shape));
    CD__TRY(cd_tensor_create(&b->x, 4, shape));
    CD__TRY(cd_tensor_create(&b->z, 4, shape));
    CD__TRY(cd_tensor_create(&b->eps, 4, shape));
    CD__TRY(cd_tensor_create(&b->pred, 4, shape));
    CD__TRY(cd_tensor_create(&b->tau, 1, shape));
    b->t = cd__malloc((size_t)shape[0] * sizeof *b->t, "test loss steps");
    return b->t ? CD_OK : CD_ERR_OUT_OF_MEMORY; /* cd__malloc set the message */
}

/* A batch view of the first n rows of t. */
static cd_tensor rows(const cd_tensor *t, int64_t n)
{
    cd_tensor v = *t;
    v.numel = t->numel / t->shape[0] * n;
    v.shape[0] = n;
    return v;
}

/* Per-image losses of one batch of n images (already in b->x), the
 * split's images first..first+n-1. */
static cd_status batch_losses(cd_trainer *tr, buffers *b, int64_t first, int64_t n, cd_rng *rng,
                              double *losses)
{
    const cd_degradation *d = cd_trainer_degradation(tr);
    int64_t t_max = 0, per_batch = 0, l1 = 0;
    CD__TRY(cd_trainer_get_int(tr, CD_TRAINER_OPT_T_MAX, &t_max));
    CD__TRY(cd_trainer_get_int(tr, CD_TRAINER_OPT_T_PER_BATCH, &per_batch));
    CD__TRY(cd_trainer_get_int(tr, CD_TRAINER_OPT_LOSS, &l1));
    const int64_t hi = t_max > 0 ? t_max : d->T;
    CD__TRY(cd_rng_int_range(rng, b->t, per_batch != 0 ? 1 : n, 1, hi));
    for (int64_t i = 0; i < n; i++) {
        if (per_batch != 0) b->t[i] = b->t[0];
        b->tau->data[i] = (float)((double)b->t[i] / (double)d->T);
    }
    cd_tensor x = rows(b->x, n), z = rows(b->z, n), eps = rows(b->eps, n);
    cd_tensor tau = rows(b->tau, n), pred = rows(b->pred, n);
    cd_tensor lab = b->labels ? rows(b->labels, n) : tau;
    const bool noise = d->kind == CD_DEGRADATION_NOISE;
    CD__TRY(cd_degradation_apply(d, &x, b->t, n, rng, &z, noise ? &eps : NULL));
    if (noise)
        cd__noise_target(d, cd_decoder_get_prediction(cd_trainer_decoder(tr)), x.data, b->t, n,
                         x.numel / n, eps.data);
    CD__TRY(
        cd_decoder_infer_labeled(cd_trainer_decoder(tr), &z, &tau, b->labels ? &lab : NULL, &pred));
    const float *target = noise ? eps.data : x.data;
    const int64_t D = x.numel / n;
    for (int64_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int64_t k = i * D; k < (i + 1) * D; k++) {
            const double e = (double)pred.data[k] - (double)target[k];
            s += l1 != 0 ? fabs(e) : e * e;
        }
        losses[i] = s / (double)D;
        if (!isfinite(losses[i]))
            return cd__error(CD_ERR_NOT_FINITE,
                             "cd_trainer_test_loss: the loss of image %" PRId64
                             " is %g (the model's prediction is not finite)",
                             first + i, losses[i]);
    }
    return CD_OK;
}

cd_status cd_trainer_test_loss(cd_trainer *tr, const cd_dataset *ds, cd_split split, cd_rng *rng,
                               double *mean, double *std_error)
{
    static const char fn[] = "cd_trainer_test_loss";
    CD__CHECK_NOT_NULL(tr, fn);
    CD__CHECK_NOT_NULL(ds, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    CD__CHECK_NOT_NULL(mean, fn);
    const int64_t n = cd_dataset_count(ds, split);
    if (n < 0) return cd_last_status();
    if (n == 0) return cd__error(CD_ERR_RANGE, "%s: the split has no images", fn);
    int64_t vb = 0;
    CD__TRY(cd_trainer_get_int(tr, CD_TRAINER_OPT_VAL_BATCH, &vb));
    const int64_t B = n < vb ? n : vb;
    const int64_t shape[4] = {B, cd_dataset_channels(ds), cd_dataset_height(ds),
                              cd_dataset_width(ds)};
    buffers b = {0};
    double *losses = cd__malloc((size_t)n * sizeof *losses, "per-image test losses");
    cd_status st = losses
                       ? make_buffers(&b, shape, cd_decoder_class_count(cd_trainer_decoder(tr)) > 0)
                       : CD_ERR_OUT_OF_MEMORY;
    for (int64_t first = 0; st == CD_OK && first < n; first += B) {
        int64_t filled = 0;
        st = cd_dataset_fill_batch(ds, split, first, b.x, b.labels, &filled);
        if (st == CD_OK) st = batch_losses(tr, &b, first, filled, rng, losses + first);
    }
    if (st == CD_OK) {
        double s = 0.0, ss = 0.0;
        for (int64_t i = 0; i < n; i++) s += losses[i];
        const double m = s / (double)n;
        for (int64_t i = 0; i < n; i++) ss += (losses[i] - m) * (losses[i] - m);
        *mean = m;
        if (std_error) *std_error = n > 1 ? sqrt(ss / (double)(n - 1) / (double)n) : 0.0;
    }
    cd__free(losses);
    free_buffers(&b);
    return st;
}

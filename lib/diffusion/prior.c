/*
 * prior.c - the z_T prior that unconditional sampling starts from (header
 * comment above cd_degradation_fit_prior). Every deterministic operator is
 * affine, D(x, T) = A x + B, with B = D(0, T); the prior is B plus one
 * constant c ~ N(mean, std^2) per sample plus N(0, jitter^2) per pixel,
 * which for the blur is the report's recipe (docs/models.md, Degradations:
 * The z_T prior).
 */
#include "diffusion.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The images fit_prior degrades at a time. */
#define FIT_CHUNK 256

/* B = D(0, T) for one image of ND = C x H x W pixels. */
static void prior_base(const cd_degradation *d, float *base, int64_t C, int64_t H, int64_t W)
{
    const int64_t T = d->T;
    memset(base, 0, (size_t)(C * H * W) * sizeof *base);
    cd__degradation_apply_fixed(d, base, &T, base, 1, C, H, W);
}

/* Per-image means of D(x, T) - B for the first n images of a split. */
static cd_status image_means(const cd_degradation *d, const cd_dataset *ds, cd_split split,
                             int64_t n, cd_tensor *x, const float *base, int64_t *idx, int64_t *tv,
                             double *means)
{
    const int64_t C = x->shape[1], H = x->shape[2], W = x->shape[3], ND = C * H * W;
    for (int64_t first = 0; first < n; first += FIT_CHUNK) {
        const int64_t b = n - first < FIT_CHUNK ? n - first : FIT_CHUNK;
        cd_tensor view = *x;
        view.shape[0] = b;
        view.numel = b * ND;
        for (int64_t i = 0; i < b; i++) idx[i] = first + i, tv[i] = d->T;
        CD__TRY(cd_dataset_gather(ds, split, idx, b, &view, NULL));
        cd__degradation_apply_fixed(d, view.data, tv, view.data, b, C, H, W);
        for (int64_t i = 0; i < b; i++) {
            double sum = 0.0;
            for (int64_t p = 0; p < ND; p++) sum += (double)view.data[i * ND + p] - (double)base[p];
            means[first + i] = sum / (double)ND;
        }
    }
    return CD_OK;
}

cd_status cd_degradation_fit_prior(cd_degradation *d, const cd_dataset *ds, cd_split split,
                                   int64_t max_images)
{
    static const char fn[] = "cd_degradation_fit_prior";
    CD__CHECK_NOT_NULL(d, fn);
    CD__CHECK_NOT_NULL(ds, fn);
    if (max_images < 0)
        return cd__error(CD_ERR_RANGE, "%s: max_images = %" PRId64 " is negative", fn, max_images);
    int64_t n = cd_dataset_count(ds, split);
    if (n < 0) return cd_last_status();
    if (max_images > 0 && max_images < n) n = max_images;
    if (n == 0) return cd__error(CD_ERR_RANGE, "%s: the split has no images", fn);
    if (d->kind == CD_DEGRADATION_NOISE) return CD_OK;
    const int64_t C = cd_dataset_channels(ds), H = cd_dataset_height(ds), W = cd_dataset_width(ds);
    const int64_t shape[4] = {n < FIT_CHUNK ? n : FIT_CHUNK, C, H, W};
    CD__TRY(cd__degradation_check_images(d, fn, shape));
    cd_tensor *x = NULL;
    CD__TRY(cd_tensor_create(&x, 4, shape));
    float *base = cd__calloc((size_t)(C * H * W), sizeof *base, "prior base image");
    int64_t *idx = cd__calloc(2 * FIT_CHUNK, sizeof *idx, "prior indices");
    double *means = cd__calloc((size_t)n, sizeof *means, "prior image means");
    cd_status st = base && idx && means ? CD_OK : cd_last_status();
    if (st == CD_OK) {
        prior_base(d, base, C, H, W);
        st = image_means(d, ds, split, n, x, base, idx, idx + FIT_CHUNK, means);
    }
    if (st == CD_OK) {
        double sum = 0.0, ss = 0.0;
        for (int64_t i = 0; i < n; i++) sum += means[i];
        const double mu = sum / (double)n;
        for (int64_t i = 0; i < n; i++) ss += (means[i] - mu) * (means[i] - mu);
        d->prior_mean = mu;
        d->prior_std = sqrt(ss / (double)n);
        d->prior_fitted = true;
    }
    cd__free(means);
    cd__free(idx);
    cd__free(base);
    cd_tensor_free(x);
    return st;
}

cd_status cd_degradation_set_prior(cd_degradation *d, double mean, double std, double jitter)
{
    static const char fn[] = "cd_degradation_set_prior";
    CD__CHECK_NOT_NULL(d, fn);
    if (d->kind == CD_DEGRADATION_NOISE)
        return cd__error(CD_ERR_UNSUPPORTED, "%s: the noise operator's prior is N(0, I)", fn);
    if (!isfinite(mean) || !isfinite(std) || !isfinite(jitter))
        return cd__error(CD_ERR_NOT_FINITE, "%s: mean %g, std %g and jitter %g must be finite", fn,
                         mean, std, jitter);
    if (std < 0.0 || jitter < 0.0)
        return cd__error(CD_ERR_RANGE, "%s: std %g and jitter %g must be >= 0", fn, std, jitter);
    d->prior_mean = mean;
    d->prior_std = std;
    d->prior_jitter = jitter;
    d->prior_fitted = true;
    return CD_OK;
}

cd_status cd_degradation_get_prior(const cd_degradation *d, double *mean, double *std,
                                   double *jitter, int32_t *fitted)
{
    static const char fn[] = "cd_degradation_get_prior";
    CD__CHECK_NOT_NULL(d, fn);
    CD__CHECK_NOT_NULL(mean, fn);
    CD__CHECK_NOT_NULL(std, fn);
    CD__CHECK_NOT_NULL(jitter, fn);
    *mean = d->prior_mean;
    *std = d->prior_std;
    *jitter = d->prior_jitter;
    if (fitted) *fitted = d->prior_fitted;
    return CD_OK;
}

cd_status cd_degradation_sample_prior(const cd_degradation *d, cd_rng *rng, cd_tensor *z)
{
    static const char fn[] = "cd_degradation_sample_prior";
    CD__CHECK_NOT_NULL(d, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    CD__CHECK_NOT_NULL(z, fn);
    if (z->rank != 4)
        return cd__error(CD_ERR_SHAPE, "%s: z must be N x C x H x W, got rank %" PRId32, fn,
                         z->rank);
    if (d->kind == CD_DEGRADATION_NOISE) return cd_rng_normal(rng, z->data, z->numel);
    CD__TRY(cd__degradation_check_images(d, fn, z->shape));
    const int64_t N = z->shape[0], C = z->shape[1], H = z->shape[2], W = z->shape[3];
    const int64_t ND = C * H * W;
    /* c and B borrow the first N and the next ND floats of two scratch
     * arrays so that the draws stay in the documented order. */
    float *level = cd__calloc((size_t)(N + ND), sizeof *level, "prior scratch");
    if (!level) return cd_last_status();
    float *base = level + N;
    cd_status st = cd_rng_normal(rng, level, N);
    if (st == CD_OK) st = cd_rng_normal(rng, z->data, z->numel);
    if (st == CD_OK) {
        prior_base(d, base, C, H, W);
        for (int64_t n = 0; n < N; n++) {
            const double c = d->prior_mean + d->prior_std * (double)level[n];
            for (int64_t p = 0; p < ND; p++) {
                float *v = z->data + n * ND + p;
                *v = (float)((double)base[p] + c + d->prior_jitter * (double)*v);
            }
        }
    }
    cd__free(level);
    return st;
}

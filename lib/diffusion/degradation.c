/*
 * degradation.c - the degradation operators D(x, t) (docs/degradations.md) behind
 * one interface, with D(x, 0) = x for all of them:
 *
 *   noise:    z = sqrt(abar_t) x + sqrt(1 - abar_t) eps, eps ~ N(0, I) drawn
 *             from the caller's generator and returned (the training
 *             target); the decoder predicts eps.
 *   blur:     z = G_t * ... * G_1 * x, t successive separable k x k
 *             Gaussian blurs with sigma_i = beta_i (blur.c).
 *   pixelate: block means of a size growing with t (pixelate.c).
 *   mask:     a growing square hole in the centre (mask.c).
 *   fade:     z = sqrt(abar_t) x + (1 - sqrt(abar_t)) m, m the mean image.
 * The deterministic ones have the decoder predict x. Their z_T prior is
 * in prior.c.
 */
#include "diffusion.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static cd_status make(cd_degradation **out, const char *fn, const cd_schedule *s,
                      cd_degradation_kind kind)
{
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(s, fn);
    cd_degradation *d = cd__calloc(1, sizeof *d, "degradation");
    if (!d) return cd_last_status();
    d->kind = kind;
    d->T = cd_schedule_T(s);
    d->beta = cd__calloc((size_t)d->T + 1, sizeof(float), "degradation beta");
    d->alpha_bar = d->beta ? cd__calloc((size_t)d->T + 1, sizeof(float), "degradation abar") : NULL;
    if (!d->alpha_bar) {
        cd_degradation_free(d);
        return cd_last_status();
    }
    (void)cd_schedule_copy_arrays(s, d->beta, d->alpha_bar, d->T + 1);
    d->prior_std = kind == CD_DEGRADATION_NOISE ? 1.0 : 0.0;
    if (kind == CD_DEGRADATION_BLUR) {
        /* The report's hard-coded MNIST values until a fit. */
        d->prior_mean = -0.36;
        d->prior_std = 0.05;
    }
    d->prior_jitter = kind == CD_DEGRADATION_NOISE ? 0.0 : 0.002;
    *out = d;
    return CD_OK;
}

cd_status cd_degradation_create_noise(cd_degradation **out, const cd_schedule *s)
{
    return make(out, "cd_degradation_create_noise", s, CD_DEGRADATION_NOISE);
}

cd_status cd_degradation_create_blur(cd_degradation **out, const cd_schedule *s,
                                     int64_t kernel_size, cd_padding padding)
{
    static const char fn[] = "cd_degradation_create_blur";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    if (kernel_size < 1 || kernel_size > CD__BLUR_MAX_KERNEL || kernel_size % 2 == 0)
        return cd__error(CD_ERR_RANGE,
                         "%s: kernel_size = %" PRId64 " must be odd and in "
                         "1..%d",
                         fn, kernel_size, CD__BLUR_MAX_KERNEL);
    if (padding != CD_PADDING_REFLECT && padding != CD_PADDING_CIRCULAR)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown padding %d", fn, (int)padding);
    CD__TRY(make(out, fn, s, CD_DEGRADATION_BLUR));
    cd_degradation *d = *out;
    d->kernel_size = kernel_size;
    d->padding = padding;
    d->kernels =
        cd__calloc((size_t)(d->T + 1) * (size_t)kernel_size, sizeof(float), "blur kernels");
    if (!d->kernels) {
        cd_degradation_free(d);
        *out = NULL;
        return cd_last_status();
    }
    for (int64_t t = 1; t <= d->T; t++)
        cd__blur_kernel(d->kernels + t * kernel_size, kernel_size, d->beta[t]);
    return CD_OK;
}

cd_status cd_degradation_create_pixelate(cd_degradation **out, const cd_schedule *s)
{
    return make(out, "cd_degradation_create_pixelate", s, CD_DEGRADATION_PIXELATE);
}

cd_status cd_degradation_create_mask(cd_degradation **out, const cd_schedule *s, double edge_width)
{
    static const char fn[] = "cd_degradation_create_mask";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    if (!isfinite(edge_width))
        return cd__error(CD_ERR_NOT_FINITE, "%s: edge_width is %g", fn, edge_width);
    if (!(edge_width > 0.0 && edge_width <= 1e6))
        return cd__error(CD_ERR_RANGE, "%s: edge_width = %g must be in (0, 1e6] pixels", fn,
                         edge_width);
    CD__TRY(make(out, fn, s, CD_DEGRADATION_MASK));
    (*out)->edge_width = edge_width;
    return CD_OK;
}

cd_status cd_degradation_create_fade(cd_degradation **out, const cd_schedule *s,
                                     const cd_tensor *mean_image)
{
    static const char fn[] = "cd_degradation_create_fade";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(mean_image, fn);
    const cd_tensor *m = mean_image;
    const int32_t off = m->rank == 4 ? 1 : 0;
    if (!(m->rank == 3 || (m->rank == 4 && m->shape[0] == 1)))
        return cd__error(CD_ERR_SHAPE,
                         "%s: mean_image must be C x H x W or 1 x C x H x W, got "
                         "rank %" PRId32,
                         fn, m->rank);
    for (int64_t i = 0; i < m->numel; i++)
        if (!isfinite(m->data[i]))
            return cd__error(CD_ERR_NOT_FINITE, "%s: mean_image[%" PRId64 "] is %g", fn, i,
                             (double)m->data[i]);
    CD__TRY(make(out, fn, s, CD_DEGRADATION_FADE));
    cd_degradation *d = *out;
    d->mean_image = cd__calloc((size_t)m->numel, sizeof(float), "fade mean image");
    if (!d->mean_image) {
        cd_degradation_free(d);
        *out = NULL;
        return cd_last_status();
    }
    memcpy(d->mean_image, m->data, (size_t)m->numel * sizeof(float));
    for (int i = 0; i < 3; i++) d->mean_shape[i] = m->shape[off + i];
    return CD_OK;
}

void cd_degradation_free(cd_degradation *d)
{
    if (!d) return;
    cd__free(d->beta);
    cd__free(d->alpha_bar);
    cd__free(d->kernels);
    cd__free(d->mean_image);
    cd__free(d);
}

cd_degradation_kind cd_degradation_get_kind(const cd_degradation *d)
{
    if (!d) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_degradation_get_kind: argument 'd' is NULL");
        return CD_DEGRADATION_INVALID;
    }
    return d->kind;
}

cd_target cd_degradation_get_target(const cd_degradation *d)
{
    if (!d) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_degradation_get_target: argument 'd' is NULL");
        return CD_TARGET_INVALID;
    }
    return d->kind == CD_DEGRADATION_NOISE ? CD_TARGET_NOISE : CD_TARGET_IMAGE;
}

int64_t cd_degradation_T(const cd_degradation *d)
{
    if (!d) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_degradation_T: argument 'd' is NULL");
        return -1;
    }
    return d->T;
}

static cd_status check_apply(const cd_degradation *d, const char *fn, const cd_tensor *x,
                             const int64_t *t, int64_t n_t, cd_rng *rng, const cd_tensor *z,
                             const cd_tensor *eps)
{
    CD__CHECK_NOT_NULL(d, fn);
    CD__CHECK_NOT_NULL(x, fn);
    CD__CHECK_NOT_NULL(t, fn);
    if (x->rank != 4)
        return cd__error(CD_ERR_SHAPE, "%s: x must be N x C x H x W, got rank %" PRId32, fn,
                         x->rank);
    CD__TRY(cd__tensor_expect(z, fn, "z", 4, x->shape));
    if (n_t != x->shape[0])
        return cd__error(CD_ERR_SHAPE, "%s: %" PRId64 " times for a batch of %" PRId64, fn, n_t,
                         x->shape[0]);
    for (int64_t i = 0; i < n_t; i++)
        if (t[i] < 0 || t[i] > d->T)
            return cd__error(CD_ERR_RANGE,
                             "%s: t[%" PRId64 "] = %" PRId64 " is outside 0..%" PRId64, fn, i, t[i],
                             d->T);
    CD__TRY(cd__check_finite(x, fn, "x"));
    if (d->kind == CD_DEGRADATION_NOISE) {
        CD__CHECK_ARG(rng != NULL, fn, "the noise degradation needs an RNG");
        if (eps) CD__TRY(cd__tensor_expect(eps, fn, "eps", 4, x->shape));
        CD__CHECK_ARG(eps || z != x, fn,
                      "z may not be x for the noise degradation "
                      "without an eps tensor (the noise is drawn into z)");
        CD__CHECK_ARG(!eps || (eps != x && eps != z), fn, "eps must differ from x and z");
    } else if (eps) {
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: eps is only for the noise degradation", fn);
    }
    return cd__degradation_check_images(d, fn, x->shape);
}

cd_status cd__degradation_check_images(const cd_degradation *d, const char *fn,
                                       const int64_t shape[4])
{
    const int64_t C = shape[1], H = shape[2], W = shape[3];
    switch (d->kind) {
    case CD_DEGRADATION_BLUR: return cd__blur_check(d, fn, H, W);
    case CD_DEGRADATION_PIXELATE:
        if (H * W > CD__BLUR_MAX_PIXELS)
            return cd__error(CD_ERR_UNSUPPORTED,
                             "%s: pixelate takes images of at most %d "
                             "pixels, got %" PRId64 "x%" PRId64,
                             fn, CD__BLUR_MAX_PIXELS, H, W);
        return CD_OK;
    case CD_DEGRADATION_FADE:
        if (C != d->mean_shape[0] || H != d->mean_shape[1] || W != d->mean_shape[2])
            return cd__error(CD_ERR_SHAPE,
                             "%s: fade's mean image is %" PRId64 "x%" PRId64 "x%" PRId64
                             ", the images are %" PRId64 "x%" PRId64 "x%" PRId64,
                             fn, d->mean_shape[0], d->mean_shape[1], d->mean_shape[2], C, H, W);
        return CD_OK;
    case CD_DEGRADATION_NOISE:
    case CD_DEGRADATION_MASK:
    case CD_DEGRADATION_INVALID: break;
    }
    return CD_OK;
}

/* z = sqrt(abar) x + sqrt(1 - abar) eps, per sample; eps is drawn into z's
 * own storage first when the caller does not want it back. */
static void apply_noise(const cd_degradation *d, const cd_tensor *x, const int64_t *t, float *eps,
                        float *z)
{
    const int64_t N = x->shape[0], D = x->numel / N;
    for (int64_t n = 0; n < N; n++) {
        const double ab = d->alpha_bar[t[n]];
        const float a = (float)sqrt(ab), b = (float)sqrt(1.0 - ab);
        const float *xi = x->data + n * D, *ei = eps + n * D;
        float *zi = z + n * D;
        for (int64_t i = 0; i < D; i++) zi[i] = a * xi[i] + b * ei[i];
    }
}

cd_status cd_degradation_apply(const cd_degradation *d, const cd_tensor *x, const int64_t *t,
                               int64_t n_t, cd_rng *rng, cd_tensor *z, cd_tensor *eps)
{
    const int64_t rows = x ? x->shape[0] : 0;
    return cd__degradation_apply_rows(d, "cd_degradation_apply", x, t, n_t, rng, z, eps, 0, rows);
}

cd_status cd__degradation_apply_rows(const cd_degradation *d, const char *fn, const cd_tensor *x,
                                     const int64_t *t, int64_t n_t, cd_rng *rng, cd_tensor *z,
                                     cd_tensor *eps, int64_t first, int64_t total)
{
    CD__TRY(check_apply(d, fn, x, t, n_t, rng, z, eps));
    if (d->kind == CD_DEGRADATION_NOISE) {
        /* Without an eps tensor the noise goes through z itself (drawn,
         * then combined elementwise in place). */
        float *e = eps ? eps->data : z->data;
        const int64_t D = x->numel / (x->shape[0] > 0 ? x->shape[0] : 1);
        CD__TRY(cd__rng_normal_window(rng, e, first * D, x->numel, total * D));
        apply_noise(d, x, t, e, z->data);
        return CD_OK;
    }
    cd__degradation_apply_fixed(d, x->data, t, z->data, x->shape[0], x->shape[1], x->shape[2],
                                x->shape[3]);
    return CD_OK;
}

/* z = sqrt(abar_t) x + (1 - sqrt(abar_t)) m, in double, rounded once: at
 * t = 0 that is x exactly. */
static void apply_fade(const cd_degradation *d, const float *x, const int64_t *t, float *z,
                       int64_t N, int64_t D)
{
    for (int64_t n = 0; n < N; n++) {
        const double a = sqrt((double)d->alpha_bar[t[n]]), b = 1.0 - a;
        for (int64_t i = 0; i < D; i++)
            z[n * D + i] = (float)(a * (double)x[n * D + i] + b * (double)d->mean_image[i]);
    }
}

void cd__degradation_apply_fixed(const cd_degradation *d, const float *x, const int64_t *t,
                                 float *z, int64_t N, int64_t C, int64_t H, int64_t W)
{
    switch (d->kind) {
    case CD_DEGRADATION_PIXELATE: cd__pixelate(d, x, t, z, N, C, H, W); return;
    case CD_DEGRADATION_MASK: cd__mask(d, x, t, z, N, C, H, W); return;
    case CD_DEGRADATION_FADE: apply_fade(d, x, t, z, N, C * H * W); return;
    case CD_DEGRADATION_BLUR:
    case CD_DEGRADATION_NOISE:
    case CD_DEGRADATION_INVALID: break;
    }
    if (z != x) memcpy(z, x, (size_t)(N * C * H * W) * sizeof(float));
    cd__blur_steps(d, z, N, C, H, W, t, NULL);
}

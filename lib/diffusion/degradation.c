/*
 * degradation.c - the degradation operators D(x, t) of spec section 3 behind
 * one interface: Gaussian noise (DDPM) and Gaussian blur (cold diffusion).
 *
 *   noise: z = sqrt(abar_t) x + sqrt(1 - abar_t) eps, eps ~ N(0, I) drawn
 *          from the caller's generator and returned (the training target);
 *          the decoder predicts eps.
 *   blur:  z = G_t * ... * G_1 * x, t successive separable k x k Gaussian
 *          blurs with sigma_i = beta_i (blur.c); the decoder predicts x.
 * D(x, 0) = x for both.
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
    cd_degradation *d = calloc(1, sizeof *d);
    if (!d) return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: no memory", fn);
    d->kind = kind;
    d->T = cd_schedule_T(s);
    d->beta = cd__calloc((size_t)d->T + 1, sizeof(float), "degradation beta");
    d->alpha_bar = d->beta ? cd__calloc((size_t)d->T + 1, sizeof(float), "degradation abar")
                           : NULL;
    if (!d->alpha_bar) {
        cd_degradation_free(d);
        return cd_last_status();
    }
    (void)cd_schedule_copy_arrays(s, d->beta, d->alpha_bar, d->T + 1);
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
        return cd__error(CD_ERR_RANGE, "%s: kernel_size = %" PRId64 " must be odd and in "
                         "1..%d", fn, kernel_size, CD__BLUR_MAX_KERNEL);
    if (padding != CD_PADDING_REFLECT && padding != CD_PADDING_CIRCULAR)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown padding %d", fn, (int)padding);
    CD__TRY(make(out, fn, s, CD_DEGRADATION_BLUR));
    cd_degradation *d = *out;
    d->kernel_size = kernel_size;
    d->padding = padding;
    d->kernels = cd__calloc((size_t)(d->T + 1) * (size_t)kernel_size, sizeof(float),
                            "blur kernels");
    if (!d->kernels) {
        cd_degradation_free(d);
        *out = NULL;
        return cd_last_status();
    }
    for (int64_t t = 1; t <= d->T; t++)
        cd__blur_kernel(d->kernels + t * kernel_size, kernel_size, d->beta[t]);
    return CD_OK;
}

void cd_degradation_free(cd_degradation *d)
{
    if (!d) return;
    cd__free(d->beta);
    cd__free(d->alpha_bar);
    cd__free(d->kernels);
    free(d);
}

int32_t cd_degradation_get_kind(const cd_degradation *d)
{
    if (!d) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_degradation_get_kind: argument 'd' is NULL");
        return -1;
    }
    return (int32_t)d->kind;
}

int32_t cd_degradation_target(const cd_degradation *d)
{
    if (!d) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_degradation_target: argument 'd' is NULL");
        return -1;
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
        return cd__error(CD_ERR_SHAPE, "%s: %" PRId64 " times for a batch of %" PRId64, fn,
                         n_t, x->shape[0]);
    for (int64_t i = 0; i < n_t; i++)
        if (t[i] < 0 || t[i] > d->T)
            return cd__error(CD_ERR_RANGE, "%s: t[%" PRId64 "] = %" PRId64 " is outside 0..%"
                             PRId64, fn, i, t[i], d->T);
    for (int64_t i = 0; i < x->numel; i++)
        if (!isfinite(x->data[i]))
            return cd__error(CD_ERR_NOT_FINITE, "%s: x[%" PRId64 "] is %g", fn, i, x->data[i]);
    if (d->kind == CD_DEGRADATION_NOISE) {
        CD__CHECK_ARG(rng != NULL, fn, "the noise degradation needs an RNG");
        if (eps) CD__TRY(cd__tensor_expect(eps, fn, "eps", 4, x->shape));
        CD__CHECK_ARG(eps || z != x, fn, "z may not be x for the noise degradation "
                      "without an eps tensor (the noise is drawn into z)");
        CD__CHECK_ARG(!eps || (eps != x && eps != z), fn, "eps must differ from x and z");
    } else if (eps) {
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: eps is only for the noise degradation",
                         fn);
    } else {
        CD__TRY(cd__blur_check(d, fn, x->shape[2], x->shape[3]));
    }
    return CD_OK;
}

/* z = sqrt(abar) x + sqrt(1 - abar) eps, per sample; eps is drawn into z's
 * own storage first when the caller does not want it back. */
static void apply_noise(const cd_degradation *d, const cd_tensor *x, const int64_t *t,
                        float *eps, float *z)
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
    static const char fn[] = "cd_degradation_apply";
    CD__TRY(check_apply(d, fn, x, t, n_t, rng, z, eps));
    if (d->kind == CD_DEGRADATION_NOISE) {
        /* Without an eps tensor the noise goes through z itself (drawn,
         * then combined elementwise in place). */
        float *e = eps ? eps->data : z->data;
        CD__TRY(cd_rng_normal(rng, e, x->numel));
        apply_noise(d, x, t, e, z->data);
        return CD_OK;
    }
    if (z->data != x->data) memcpy(z->data, x->data, (size_t)x->numel * sizeof(float));
    cd__blur_steps(d, z->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], t, NULL);
    return CD_OK;
}

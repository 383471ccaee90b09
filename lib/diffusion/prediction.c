/*
 * prediction.c - the decoder's target under the noise degradation, and
 * its output read back as a noise estimate. With a = sqrt(abar_t) and
 * s = sqrt(1 - abar_t), z = a x0 + s eps, and:
 *   noise: target eps;
 *   x0:    target x0,                   eps = (z - a x0-hat) / s;
 *   v:     target v = a eps - s x0,     eps = a v-hat + s z.
 * The samplers keep working on noise estimates, so every noise sampler
 * serves every parameterisation. Arithmetic in double, rounded once.
 */
#include "diffusion.h"

#include <math.h>

void cd__noise_target(const cd_degradation *d, int32_t prediction, const float *x, const int64_t *t,
                      int64_t N, int64_t per, float *target)
{
    if (prediction == CD_PREDICT_NOISE) return;
    for (int64_t n = 0; n < N; n++) {
        const double ab = d->alpha_bar[t[n]], a = sqrt(ab), s = sqrt(1.0 - ab);
        const float *xn = x + n * per;
        float *g = target + n * per;
        if (prediction == CD_PREDICT_X0)
            for (int64_t i = 0; i < per; i++) g[i] = xn[i];
        else
            for (int64_t i = 0; i < per; i++) g[i] = (float)(a * g[i] - s * xn[i]);
    }
}

void cd__prediction_to_noise(const cd_degradation *d, int32_t prediction, const float *z, int64_t t,
                             int64_t count, float *out)
{
    if (prediction == CD_PREDICT_NOISE) return;
    const double ab = d->alpha_bar[t], a = sqrt(ab), s = sqrt(1.0 - ab);
    if (prediction == CD_PREDICT_X0)
        for (int64_t i = 0; i < count; i++) out[i] = (float)((z[i] - a * out[i]) / s);
    else
        for (int64_t i = 0; i < count; i++) out[i] = (float)(a * out[i] + s * z[i]);
}

/*
 * embed.c - the decoders' time encodings (the CNN's and the UNet's).
 *
 * Each rounding step below is the one PyTorch performs on float32 tensors
 * in the reference models: phases are float products, because a more exact
 * phase shifts sin by up to 6e-5 at the CNN's highest frequency. sin and cos of a
 * float phase are taken in double and rounded once, which is within an ulp
 * of PyTorch's vectorised float versions.
 */
#include "ops.h"

#include <math.h>

static const double two_pi = 6.28318530717958647692;

void cd__cnn_frequencies_n(float *freq, int64_t n)
{
    freq[0] = 0.0f;
    /* 1.5^(j-1) is exact in double for j < 34, so the value matches
     * Python's double 2*pi*1.5**k before the one rounding to float32. */
    for (int64_t j = 1; j < n; j++) freq[j] = (float)(two_pi * pow(1.5, (double)(j - 1)));
}

void cd__cnn_frequencies(float freq[CD__CNN_NFREQ]) { cd__cnn_frequencies_n(freq, CD__CNN_NFREQ); }

void cd__cnn_time_encoding(float *out, const float *tau, const float *freq, int64_t N,
                           int64_t nfreq)
{
    for (int64_t n = 0; n < N; n++) {
        float *o = out + n * 2 * nfreq;
        for (int64_t j = 0; j < nfreq; j++) {
            const float phase = freq[j] * tau[n];
            o[j] = (float)sin((double)phase);
            o[nfreq + j] = (float)cos((double)phase) - 1.0f;
        }
    }
}

void cd__sinusoidal_embedding(float *out, const float *tau, int64_t N, int64_t dim)
{
    const int64_t half = dim / 2;
    const float scale = (float)(-log(10000.0) / (double)(half - 1));
    for (int64_t n = 0; n < N; n++) {
        float *o = out + n * dim;
        for (int64_t j = 0; j < half; j++) {
            /* expf of a float argument, correctly rounded via double. */
            const float w = (float)exp((double)((float)j * scale));
            const float phase = tau[n] * w;
            o[j] = (float)sin((double)phase);
            o[half + j] = (float)cos((double)phase);
        }
    }
}

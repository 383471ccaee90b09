/*
 * xent.c - softmax cross-entropy, forward and backward (see xent.h).
 */
#include "xent.h"

#include <math.h>

double cd__xent_forward(float *probs, const float *logits, const int64_t *labels, int64_t B,
                        int64_t K)
{
    double total = 0.0;
    for (int64_t b = 0; b < B; b++) {
        const float *l = logits + b * K;
        float *p = probs + b * K;
        float mx = l[0];
        for (int64_t k = 1; k < K; k++)
            if (l[k] > mx) mx = l[k];
        double sum = 0.0;
        for (int64_t k = 0; k < K; k++) {
            const double e = exp((double)l[k] - (double)mx);
            p[k] = (float)e;
            sum += e;
        }
        const double inv = 1.0 / sum;
        for (int64_t k = 0; k < K; k++) p[k] = (float)((double)p[k] * inv);
        if (labels) total += (double)mx + log(sum) - (double)l[labels[b]];
    }
    return labels && B > 0 ? total / (double)B : 0.0;
}

void cd__xent_backward(float *dlogits, const float *probs, const int64_t *labels, int64_t B,
                       int64_t K, float scale)
{
    const float s = scale / (float)B;
    for (int64_t b = 0; b < B; b++) {
        const float *p = probs + b * K;
        float *d = dlogits + b * K;
        for (int64_t k = 0; k < K; k++) d[k] += s * (p[k] - (k == labels[b] ? 1.0f : 0.0f));
    }
}

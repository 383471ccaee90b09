/*
 * loss.c - mean squared and mean absolute error. The means are accumulated
 * in double: a float sum over a batch of 128 images would lose the digits
 * that distinguish one training step's loss from the next.
 */
#include "ops.h"

#include <math.h>

double cd__mse_forward(const float *pred, const float *target, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)pred[i] - (double)target[i];
        s += d * d;
    }
    return s / (double)n;
}

void cd__mse_backward(float *dpred, const float *pred, const float *target, int64_t n, float scale)
{
    /* PyTorch folds the mean and the upstream gradient into one factor. */
    if (!dpred) return;
    const float k = (float)(2.0 * (double)scale / (double)n);
    for (int64_t i = 0; i < n; i++) dpred[i] += k * (pred[i] - target[i]);
}

double cd__l1_forward(const float *pred, const float *target, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += fabs((double)pred[i] - (double)target[i]);
    return s / (double)n;
}

void cd__l1_backward(float *dpred, const float *pred, const float *target, int64_t n, float scale)
{
    if (!dpred) return;
    const float k = (float)((double)scale / (double)n);
    for (int64_t i = 0; i < n; i++) {
        const float d = pred[i] - target[i];
        dpred[i] += d > 0.0f ? k : d < 0.0f ? -k : 0.0f;
    }
}

/*
 * mask.c - the mask operator (header comment of cd_degradation_create_mask):
 * D(x, t) = M_t x, M_t = clamp((d - r_t) / w, 0, 1) with d the Chebyshev
 * distance to the centre and r_t = -w + (t / T)(R + w). The soft edge of
 * width w makes D continuous in t; r_0 = -w gives M_0 = 1 (D(x, 0) = x)
 * and r_T = R gives M_T = 0 everywhere.
 */
#include "diffusion.h"

#include <math.h>

typedef struct {
    const cd_degradation *d;
    const float *x;
    float *z;
    const int64_t *t;
    int64_t C, H, W;
} mask_job;

static void mask_task(void *ctx, int64_t i)
{
    const mask_job *j = ctx;
    const int64_t H = j->H, W = j->W, t = j->t[i / j->C];
    const double w = j->d->edge_width, cy = 0.5 * (double)(H - 1), cx = 0.5 * (double)(W - 1);
    const double R = cy > cx ? cy : cx;
    const double r = -w + (double)t / (double)j->d->T * (R + w);
    const float *x = j->x + i * H * W;
    float *z = j->z + i * H * W;
    for (int64_t y = 0; y < H; y++)
        for (int64_t c = 0; c < W; c++) {
            const double dy = fabs((double)y - cy), dx = fabs((double)c - cx);
            const double m = fmin(1.0, fmax(0.0, ((dy > dx ? dy : dx) - r) / w));
            /* m == 0 writes +0, not the -0 of a negative pixel times 0. */
            z[y * W + c] = m == 0.0 ? 0.0f : (float)(m * (double)x[y * W + c]);
        }
}

void cd__mask(const cd_degradation *d, const float *x, const int64_t *t, float *z, int64_t N,
              int64_t C, int64_t H, int64_t W)
{
    mask_job j = {d, x, z, t, C, H, W};
    cd__parallel_for(N * C, mask_task, &j);
}

/*
 * pixelate.c - the pixelation operator (header comment of
 * cd_degradation_create_pixelate): with L = ceil(log2(max(H, W))) levels
 * and s = L t / T, k = floor(s), w = s - k,
 *   D(x, t) = (1 - w) P_{2^k}(x) + w P_{2^(k+1)}(x),
 * P_f replacing each f x f block (from the top-left corner; edge blocks cut
 * short) by its mean. Blending neighbouring levels makes D continuous in
 * t, and D(x, 0) = P_1(x) = x exactly.
 */
#include "diffusion.h"

#include <math.h>
#include <string.h>

int64_t cd__pixelate_levels(int64_t H, int64_t W)
{
    const int64_t m = H > W ? H : W;
    int64_t L = 0;
    while (((int64_t)1 << L) < m) L++;
    return L;
}

/* Means of the f x f blocks of an H x W plane, row-major over blocks,
 * summed in double and rounded once (f = 1 copies the plane exactly). */
static void block_means(const float *x, int64_t H, int64_t W, int64_t f, float *means)
{
    const int64_t bh = (H + f - 1) / f, bw = (W + f - 1) / f;
    for (int64_t by = 0; by < bh; by++) {
        const int64_t y1 = (by + 1) * f < H ? (by + 1) * f : H;
        for (int64_t bx = 0; bx < bw; bx++) {
            const int64_t x1 = (bx + 1) * f < W ? (bx + 1) * f : W;
            double sum = 0.0;
            for (int64_t y = by * f; y < y1; y++)
                for (int64_t c = bx * f; c < x1; c++) sum += x[y * W + c];
            means[by * bw + bx] = (float)(sum / (double)((y1 - by * f) * (x1 - bx * f)));
        }
    }
}

typedef struct {
    const cd_degradation *d;
    const float *x;
    float *z;
    const int64_t *t;
    int64_t C, H, W, L;
} pixelate_job;

/* Task i pixelates plane i = (sample, channel). Both levels' means are
 * taken before anything is written, so z may be x. */
static void pixelate_task(void *ctx, int64_t i)
{
    const pixelate_job *j = ctx;
    const int64_t H = j->H, W = j->W, HW = H * W, t = j->t[i / j->C];
    const float *x = j->x + i * HW;
    float *z = j->z + i * HW;
    if (t == 0 || j->L == 0) {
        if (z != x) memcpy(z, x, (size_t)HW * sizeof *z);
        return;
    }
    const double s = (double)j->L * (double)t / (double)j->d->T;
    int64_t k = (int64_t)floor(s);
    double w = s - (double)k;
    if (k >= j->L) k = j->L, w = 0.0;
    const int64_t fa = (int64_t)1 << k, fb = 2 * fa;
    const int64_t bwa = (W + fa - 1) / fa, bwb = (W + fb - 1) / fb;
    float ma[CD__BLUR_MAX_PIXELS], mb[CD__BLUR_MAX_PIXELS / 4 + 1];
    block_means(x, H, W, fa, ma);
    if (w > 0.0) block_means(x, H, W, fb, mb);
    for (int64_t y = 0; y < H; y++)
        for (int64_t c = 0; c < W; c++) {
            const double a = ma[(y / fa) * bwa + c / fa];
            z[y * W + c] = w > 0.0
                               ? (float)((1.0 - w) * a + w * (double)mb[(y / fb) * bwb + c / fb])
                               : (float)a;
        }
}

void cd__pixelate(const cd_degradation *d, const float *x, const int64_t *t, float *z, int64_t N,
                  int64_t C, int64_t H, int64_t W)
{
    pixelate_job j = {d, x, z, t, C, H, W, cd__pixelate_levels(H, W)};
    cd__parallel_for(N * C, pixelate_task, &j);
}

/*
 * blur.c - the cold-diffusion Gaussian blur (docs/models.md, Degradations:
 * Gaussian blur) as t
 * successive separable passes. A k x k Gaussian is the outer product of a
 * 1-D kernel, and padding each axis in turn gives the same result as
 * padding the image once and convolving in 2-D, so a horizontal pass and a
 * vertical pass reproduce torchvision's 2-D blur (to float rounding) at
 * 2k instead of k^2 multiply-adds per pixel.
 */
#include "diffusion.h"

#include <inttypes.h>
#include <math.h>

cd_status cd__blur_check(const cd_degradation *d, const char *fn, int64_t H, int64_t W)
{
    const int64_t r = d->kernel_size / 2;
    if (H * W > CD__BLUR_MAX_PIXELS)
        return cd__error(CD_ERR_UNSUPPORTED,
                         "%s: the blur takes images of at most %d pixels, "
                         "got %" PRId64 "x%" PRId64,
                         fn, CD__BLUR_MAX_PIXELS, H, W);
    if (d->padding == CD_PADDING_REFLECT && (r >= H || r >= W))
        return cd__error(CD_ERR_SHAPE,
                         "%s: reflect padding of %" PRId64 " needs images larger "
                         "than %" PRId64 "x%" PRId64 ", got %" PRId64 "x%" PRId64,
                         fn, r, r, r, H, W);
    return CD_OK;
}

void cd__blur_kernel(float *kernel, int64_t k, float sigma)
{
    const int64_t r = k / 2;
    double w[CD__BLUR_MAX_KERNEL], sum = 0.0;
    for (int64_t i = 0; i < k; i++) {
        const double x = (double)(i - r) / (double)sigma;
        w[i] = exp(-0.5 * x * x);
        sum += w[i];
    }
    for (int64_t i = 0; i < k; i++) kernel[i] = (float)(w[i] / sum);
}

/* Index i of a line of n pixels, padded: reflect mirrors without repeating
 * the edge pixel (valid for |overhang| < n), circular wraps around. */
static inline int64_t pad_index(int64_t i, int64_t n, cd_padding padding)
{
    if (padding == CD_PADDING_CIRCULAR) return ((i % n) + n) % n;
    if (i < 0) return -i;
    if (i >= n) return 2 * (n - 1) - i;
    return i;
}

/* One blur of an H x W plane: rows into tmp, then columns back into x.
 * Each output sums its k taps in order from 0.0f, as a direct loop would,
 * but with the pixel loop innermost so that it vectorises; the padded row
 * buffer keeps pad_index out of that loop. */
static void blur_plane(float *restrict x, float *restrict tmp, int64_t H, int64_t W,
                       const float *restrict kern, int64_t k, cd_padding padding)
{
    const int64_t r = k / 2;
    float prow[CD__BLUR_MAX_PIXELS + CD__BLUR_MAX_KERNEL];
    for (int64_t y = 0; y < H; y++) {
        const float *row = x + y * W;
        float *out = tmp + y * W;
        for (int64_t i = 0; i < W + 2 * r; i++) prow[i] = row[pad_index(i - r, W, padding)];
        for (int64_t c = 0; c < W; c++) out[c] = 0.0f;
        for (int64_t j = 0; j < k; j++) {
            const float kj = kern[j];
            const float *src = prow + j;
            for (int64_t c = 0; c < W; c++) out[c] += kj * src[c];
        }
    }
    for (int64_t y = 0; y < H; y++) {
        float *out = x + y * W;
        for (int64_t c = 0; c < W; c++) out[c] = 0.0f;
        for (int64_t j = 0; j < k; j++) {
            const float kj = kern[j];
            const float *src = tmp + pad_index(y + j - r, H, padding) * W;
            for (int64_t c = 0; c < W; c++) out[c] += kj * src[c];
        }
    }
}

typedef struct {
    const cd_degradation *d;
    float *x;
    int64_t C, H, W;
    const int64_t *to, *from;
} blur_job;

/* Task i blurs plane i = (sample, channel), with its row buffer on the
 * stack (planes are at most CD__BLUR_MAX_PIXELS, checked by the callers),
 * so the sampling loop allocates nothing. */
static void blur_task(void *ctx, int64_t i)
{
    const blur_job *j = ctx;
    const int64_t n = i / j->C, HW = j->H * j->W;
    const int64_t from = j->from ? j->from[n] : 0, to = j->to[n];
    float tmp[CD__BLUR_MAX_PIXELS];
    float *plane = j->x + i * HW;
    const int64_t k = j->d->kernel_size;
    for (int64_t t = from + 1; t <= to; t++)
        blur_plane(plane, tmp, j->H, j->W, j->d->kernels + t * k, k, j->d->padding);
}

void cd__blur_steps(const cd_degradation *d, float *x, int64_t N, int64_t C, int64_t H, int64_t W,
                    const int64_t *to, const int64_t *from)
{
    blur_job j = {d, x, C, H, W, to, from};
    cd__parallel_for(N * C, blur_task, &j);
}

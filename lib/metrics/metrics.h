/*
 * metrics.h - internals of the metrics layer: the SSIM kernel on already
 * normalised double images, for images.c and the tests. Nothing here is
 * exported.
 */
#ifndef CD_METRICS_H
#define CD_METRICS_H

#include "core.h"

/* The SSIM window: 11 taps, sigma 1.5, radius 5. */
#define CD__SSIM_TAPS 11
#define CD__SSIM_C1 (0.01 * 0.01)
#define CD__SSIM_C2 (0.03 * 0.03)

/* The 1-D factor g of piq's 2-D window: exp(-k^2 / (2 sigma^2)) at
 * k = -5..5, normalised to sum 1. The 2-D window exp(-(i^2 + j^2) /
 * (2 sigma^2)) / sum is exactly g(i) g(j), so the convolution is applied
 * separably. */
void cd__ssim_window(double g[CD__SSIM_TAPS]);

/* piq's average-pooling factor for an H x W image: max(1, round(min(H, W)
 * / 256)) with Python's round-half-to-even. */
int64_t cd__ssim_pool_factor(int64_t H, int64_t W);

/* Doubles of scratch cd__ssim_image needs for a C x H x W image. */
int64_t cd__ssim_scratch_len(int64_t C, int64_t H, int64_t W);

/*
 * SSIM of two C x H x W images x and y given in double and taken as they
 * are (no normalisation; piq's recipe with data range 1, including its
 * pooling for large images): the mean of the SSIM map over all channels.
 * H and W must be at least CD__SSIM_TAPS after pooling (the caller checks);
 * scratch holds cd__ssim_scratch_len(C, H, W) doubles.
 */
double cd__ssim_image(const double *x, const double *y, int64_t C, int64_t H, int64_t W,
                      double *scratch);

#endif /* CD_METRICS_H */

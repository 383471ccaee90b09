/*
 * diffusion.h - internals of the diffusion layer: the degradation object
 * and the separable blur it uses. Nothing here is exported.
 */
#ifndef CD_DIFFUSION_H
#define CD_DIFFUSION_H

#include "core.h"

#define CD__BLUR_MAX_KERNEL 63
/* The largest plane the blur takes (128 x 128): its scratch row buffer
 * lives on the stack. */
#define CD__BLUR_MAX_PIXELS 16384

struct cd_degradation {
    cd_degradation_kind kind;
    int64_t T;
    float *beta, *alpha_bar; /* copies of the schedule, t = 0..T */
    /* blur */
    int64_t kernel_size;
    cd_padding padding;
    float *kernels;          /* (T + 1) x kernel_size; row t is G_t's 1-D kernel */
};

/* The 1-D kernel exp(-(x/sigma)^2 / 2) at x = -k/2..k/2, normalised to sum 1
 * (torchvision's GaussianBlur), computed in double and rounded. */
void cd__blur_kernel(float *kernel, int64_t k, float sigma);

/*
 * Blur each of the N samples (C x H x W, in place) with G_{from+1}, ...,
 * G_{to} for its own from[n] < to[n] (from == NULL means 0; from[n] >=
 * to[n] leaves the sample as it is). Padding and kernels come from d.
 * Runs over (sample, channel) tasks: the same bits for any thread count.
 */
void cd__blur_steps(const cd_degradation *d, float *x, int64_t N, int64_t C, int64_t H,
                    int64_t W, const int64_t *to, const int64_t *from);

#endif /* CD_DIFFUSION_H */

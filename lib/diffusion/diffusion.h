/*
 * diffusion.h - internals of the diffusion layer: the degradation object
 * and the separable blur it uses. Nothing here is exported.
 */
#ifndef CD_DIFFUSION_H
#define CD_DIFFUSION_H

#include "core.h"
#include "nn/nn.h"

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

/* What the blur needs of an H x W plane (cd__blur_steps itself trusts
 * its arguments): at most CD__BLUR_MAX_PIXELS, and larger than the kernel
 * radius for reflect padding. Messages name fn. */
cd_status cd__blur_check(const cd_degradation *d, const char *fn, int64_t H, int64_t W);

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

/* DDIM's i-th time (0 <= i < S) for S steps down from t_start:
 * t_start - floor(i (t_start - 1) / (S - 1) + 1/2) in exact integer
 * arithmetic (spec section 6); the step after the last goes to 0. */
int64_t cd__sampler_step_time(int64_t t_start, int64_t S, int64_t i);

/* The optimiser inside a trainer (for trainer_io.c). */
cd__adam *cd__trainer_adam(cd_trainer *tr);

#endif /* CD_DIFFUSION_H */

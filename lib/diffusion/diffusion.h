/*
 * diffusion.h - internals of the diffusion layer: the degradation object
 * and the separable blur it uses. Nothing here is exported.
 */
#ifndef CD_DIFFUSION_H
#define CD_DIFFUSION_H

#include "core.h"
#include "nn/nn.h"

#define CD__BLUR_MAX_KERNEL 63
/* The largest plane the blur and the pixelation take (128 x 128): their
 * scratch buffers live on the stack. */
#define CD__BLUR_MAX_PIXELS 16384

struct cd_degradation {
    cd_degradation_kind kind;
    int64_t T;
    float *beta, *alpha_bar; /* copies of the schedule, t = 0..T */
    /* blur */
    int64_t kernel_size;
    cd_padding padding;
    float *kernels; /* (T + 1) x kernel_size; row t is G_t's 1-D kernel */
    /* mask */
    double edge_width;
    /* fade: m, C x H x W */
    float *mean_image;
    int64_t mean_shape[3];
    /* the z_T prior of the deterministic operators (cd_degradation_sample_prior) */
    double prior_mean, prior_std, prior_jitter;
    bool prior_fitted;
};

/* Whether each image of an N x C x H x W batch can go through d: the plane
 * limits of blur and pixelate, fade's image shape. Messages name fn. */
cd_status cd__degradation_check_images(const cd_degradation *d, const char *fn,
                                       const int64_t shape[4]);

/* cd_degradation_apply for rows first..first+N-1 of a batch of `total`
 * (N = x's rows): the noise is those rows' share of the draw for the
 * whole batch (a rank of a data-parallel job). Errors name fn. */
cd_status cd__degradation_apply_rows(const cd_degradation *d, const char *fn, const cd_tensor *x,
                                     const int64_t *t, int64_t n_t, cd_rng *rng, cd_tensor *z,
                                     cd_tensor *eps, int64_t first, int64_t total);

/* z = D(x, t[n]) for the deterministic operators, trusting the arguments
 * (checked by the callers); z may be x. */
void cd__degradation_apply_fixed(const cd_degradation *d, const float *x, const int64_t *t,
                                 float *z, int64_t N, int64_t C, int64_t H, int64_t W);

/* pixelate.c and mask.c: one operator each over N x C x H x W. */
int64_t cd__pixelate_levels(int64_t H, int64_t W);
void cd__pixelate(const cd_degradation *d, const float *x, const int64_t *t, float *z, int64_t N,
                  int64_t C, int64_t H, int64_t W);
void cd__mask(const cd_degradation *d, const float *x, const int64_t *t, float *z, int64_t N,
              int64_t C, int64_t H, int64_t W);

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
void cd__blur_steps(const cd_degradation *d, float *x, int64_t N, int64_t C, int64_t H, int64_t W,
                    const int64_t *to, const int64_t *from);

/* DDIM's i-th time (0 <= i < S) for S steps down from t_start:
 * t_start - floor(i (t_start - 1) / (S - 1) + 1/2) in exact integer
 * arithmetic (docs/models.md, Samplers: DDIM); the step after the last
 * goes to 0. */
int64_t cd__sampler_step_time(int64_t t_start, int64_t S, int64_t i);

/* The operator's kind, parameters, schedule and prior as checkpoint
 * entries (degradation_io.c), and back: *out is a new operator. */
cd_status cd__degradation_to_ckpt(const cd_degradation *d, cd__ckpt *ck);
cd_status cd__degradation_from_ckpt(const cd__ckpt *ck, cd_degradation **out);

/* prediction.c. The noise degradation's training target for a decoder of
 * `prediction` (cd_prediction), in place: target holds the drawn eps of
 * the N images of `per` values each (x the clean images, t their times)
 * and is left holding the target. */
void cd__noise_target(const cd_degradation *d, int32_t prediction, const float *x, const int64_t *t,
                      int64_t N, int64_t per, float *target);

/* A decoder's output at time t (count values, z its input) turned into
 * the noise estimate, in place. */
void cd__prediction_to_noise(const cd_degradation *d, int32_t prediction, const float *z, int64_t t,
                             int64_t count, float *out);

/* The optimiser inside a trainer (for trainer_io.c). */
cd__adam *cd__trainer_adam(cd_trainer *tr);

/* Make the trainer free its decoder and degradation with itself: for one
 * the library built (cd_trainer_load), not one a caller lent it. */
void cd__trainer_adopt_models(cd_trainer *tr);
/* CD_OK unless cd_trainer_swap_ema has the EMA in the decoder's weights:
 * then CD_ERR_STATE naming fn, since a step, a save or an export would
 * treat the average as the training weights. */
cd_status cd__trainer_check_weights(const cd_trainer *tr, const char *fn);

/* ---- trainer fit (trainer_fit.c; the state's helpers: fit_state.c) ---- */

#include <stdatomic.h>

#define CD__PROGRESS_COUNT 13 /* keys of cd_progress_key */

/*
 * The epoch loop's state inside a trainer. The first group is what a
 * checkpoint must hold to resume a fit bit for bit (trainer_io.c writes it
 * as trainer.* entries, docs/checkpoint-format.md); the rest is control.
 */
typedef struct cd__fit_state {
    int64_t epoch;          /* epochs completed */
    int64_t pos;            /* images of the current epoch trained so far */
    double loss_sum;        /* sum over its batches of batch loss x batch size */
    double best_loss;       /* best epoch score for best_path (NaN: none yet) */
    double val_loss;        /* the last validation loss (NaN: none yet) */
    double train_loss;      /* the last completed epoch's mean training loss (NaN: none) */
    bool open;              /* the current epoch's order was drawn ... */
    uint64_t open_rng[4];   /* ... by a generator in this state */
    atomic_int stop;        /* set by cd_trainer_request_stop */
    int64_t stop_after;     /* test hook: request a stop after this many batches */
    bool validating;        /* inside the fit's validation: a stop ends it */
    int64_t stop_after_val; /* test hook: a stop after this many validation batches */
    _Atomic uint64_t progress[CD__PROGRESS_COUNT]; /* bits of doubles */
} cd__fit_state;

/* Publish one progress value (atomically; any thread may read it). */
void cd__fit_put(cd__fit_state *f, cd_progress_key key, double v);

/* The fit state of a new trainer: nothing trained, no stop requested. */
void cd__fit_init(cd__fit_state *f);

/* The trainer's fit state (trainer.c). */
cd__fit_state *cd__trainer_fit_state(const cd_trainer *tr);

/* cd_trainer_save to each of n_paths files in turn, the checkpoint
 * serialised and compressed once. */
cd_status cd__trainer_save_to(cd_trainer *tr, const char *const *paths, int n_paths,
                              const cd_rng *rng);

/* Republish the progress values of a trainer that is not fitting (after a
 * load): epoch, batches done of the open epoch at this batch size, losses,
 * RUNNING = 0. */
void cd__fit_publish(cd__fit_state *f, int64_t batch);

/* A training step on rows first..first+N-1 of a batch of `total` images
 * (images holds the N rows; N may be 0 on a rank of a data-parallel job).
 * Errors name fn. */
cd_status cd__trainer_step_rows(cd_trainer *tr, const char *fn, const cd_tensor *images,
                                const cd_tensor *labels, cd_rng *rng, int64_t first, int64_t total,
                                double *loss);

/* This rank's rows of a batch of n: *first and the count returned, the
 * share floor(rank n / world) .. floor((rank + 1) n / world) - 1. */
int64_t cd__trainer_shard(const cd_trainer *tr, int64_t n, int64_t *first);

/* Whether a stop was requested: on any rank, for a data-parallel trainer
 * (a sum every rank joins; the trainer's own request is then set too). */
cd_status cd__trainer_agree_stop(cd_trainer *tr, const char *fn, bool *stop);

/* Test hook: make the next cd_trainer_fit() request its own stop after n
 * batches (0: never), as if cd_trainer_request_stop() came then. */
void cd__trainer_stop_after(cd_trainer *tr, int64_t n_batches);

/* Test hook: the next fit's validation requests a stop after n of its
 * batches (0: never). */
void cd__trainer_stop_in_validation(cd_trainer *tr, int64_t n_batches);

#endif /* CD_DIFFUSION_H */

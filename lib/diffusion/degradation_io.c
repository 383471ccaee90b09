/*
 * degradation_io.c - a degradation operator in a checkpoint: its kind and
 * parameters, its schedule's arrays verbatim (an imported schedule need not
 * be reproducible from a formula) and its z_T prior
 * (docs/checkpoint-format.md lists the keys).
 */
#include "diffusion.h"

#include <stdlib.h>
#include <string.h>

static cd_status params_to_ckpt(const cd_degradation *d, cd__ckpt *ck)
{
    switch (d->kind) {
    case CD_DEGRADATION_BLUR:
        CD__TRY(cd__ckpt_set_i64(ck, "degradation.kernel_size", d->kernel_size));
        return cd__ckpt_set_i64(ck, "degradation.padding", (int64_t)d->padding);
    case CD_DEGRADATION_MASK: return cd__ckpt_set_f64(ck, "degradation.edge_width", d->edge_width);
    case CD_DEGRADATION_FADE:
        CD__TRY(cd__ckpt_set_i64_array(ck, "degradation.mean_shape", d->mean_shape, 3));
        return cd__ckpt_set_f32_array(ck, "degradation.mean_image", d->mean_image,
                                      d->mean_shape[0] * d->mean_shape[1] * d->mean_shape[2]);
    case CD_DEGRADATION_NOISE:
    case CD_DEGRADATION_PIXELATE:
    case CD_DEGRADATION_INVALID: break;
    }
    return CD_OK;
}

cd_status cd__degradation_to_ckpt(const cd_degradation *d, cd__ckpt *ck)
{
    CD__TRY(
        cd__ckpt_set_str(ck, "degradation.kind", cd_enum_name(CD_ENUM_DEGRADATION_KIND, d->kind)));
    CD__TRY(params_to_ckpt(d, ck));
    if (d->kind != CD_DEGRADATION_NOISE) {
        CD__TRY(cd__ckpt_set_f64(ck, "degradation.prior_mean", d->prior_mean));
        CD__TRY(cd__ckpt_set_f64(ck, "degradation.prior_std", d->prior_std));
        CD__TRY(cd__ckpt_set_f64(ck, "degradation.prior_jitter", d->prior_jitter));
        CD__TRY(cd__ckpt_set_i64(ck, "degradation.prior_fitted", d->prior_fitted));
    }
    CD__TRY(cd__ckpt_set_i64(ck, "schedule.T", d->T));
    CD__TRY(cd__ckpt_set_f32_array(ck, "schedule.beta", d->beta, d->T + 1));
    return cd__ckpt_set_f32_array(ck, "schedule.alpha_bar", d->alpha_bar, d->T + 1);
}

/* fade's mean image, C x H x W with at most 2^24 pixels. */
static cd_status fade_from_ckpt(const cd__ckpt *ck, const cd_schedule *s, cd_degradation **out)
{
    int64_t shape[3] = {0, 0, 0}, n = 0;
    CD__TRY(cd__ckpt_get_i64_array(ck, "degradation.mean_shape", shape, 3, &n));
    if (n != 3 || shape[0] < 1 || shape[1] < 1 || shape[2] < 1 || shape[0] > 4096 ||
        shape[1] > 4096 || shape[2] > 4096 || shape[0] * shape[1] * shape[2] > ((int64_t)1 << 24))
        return cd__error(CD_ERR_FORMAT, "checkpoint: degradation.mean_shape is not a C x H x W "
                                        "image of at most 2^24 pixels");
    /* Count first: the shape alone must not make us allocate. */
    const int64_t pixels = shape[0] * shape[1] * shape[2];
    CD__TRY(cd__ckpt_get_f32_array(ck, "degradation.mean_image", NULL, 0, &n));
    if (n != pixels)
        return cd__error(CD_ERR_FORMAT,
                         "checkpoint: degradation.mean_image has %lld values "
                         "for %lld pixels",
                         (long long)n, (long long)pixels);
    cd_tensor *m = NULL;
    CD__TRY(cd_tensor_create(&m, 3, shape));
    cd_status st = cd__ckpt_get_f32_array(ck, "degradation.mean_image", m->data, m->numel, &n);
    if (st == CD_OK) st = cd_degradation_create_fade(out, s, m);
    cd_tensor_free(m);
    return st;
}

static cd_status create_from_ckpt(const cd__ckpt *ck, const char *kind, const cd_schedule *s,
                                  cd_degradation **out)
{
    int64_t k = 0, pad = 0;
    double w = 0.0;
    int32_t kind_value = -1;
    if (cd_enum_parse(CD_ENUM_DEGRADATION_KIND, kind, &kind_value) != CD_OK) cd_clear_error();
    switch ((cd_degradation_kind)kind_value) {
    case CD_DEGRADATION_NOISE: return cd_degradation_create_noise(out, s);
    case CD_DEGRADATION_BLUR:
        CD__TRY(cd__ckpt_get_i64(ck, "degradation.kernel_size", &k));
        CD__TRY(cd__ckpt_get_i64(ck, "degradation.padding", &pad));
        return cd_degradation_create_blur(out, s, k, (cd_padding)pad);
    case CD_DEGRADATION_PIXELATE: return cd_degradation_create_pixelate(out, s);
    case CD_DEGRADATION_MASK:
        CD__TRY(cd__ckpt_get_f64(ck, "degradation.edge_width", &w));
        return cd_degradation_create_mask(out, s, w);
    case CD_DEGRADATION_FADE: return fade_from_ckpt(ck, s, out);
    case CD_DEGRADATION_INVALID: break;
    }
    return cd__error(CD_ERR_FORMAT, "checkpoint: unknown degradation.kind '%s'", kind);
}

/* The prior keys came after the first checkpoints: without them the
 * operator keeps its defaults, unfitted. */
static cd_status prior_from_ckpt(const cd__ckpt *ck, cd_degradation *d)
{
    double mean = 0.0, sd = 0.0, jitter = 0.0;
    int64_t fitted = 0;
    cd_status st = cd__ckpt_get_f64(ck, "degradation.prior_mean", &mean);
    if (d->kind == CD_DEGRADATION_NOISE || st == CD_ERR_NOT_FOUND) {
        cd_clear_error();
        return CD_OK;
    }
    if (st == CD_OK) st = cd__ckpt_get_f64(ck, "degradation.prior_std", &sd);
    if (st == CD_OK) st = cd__ckpt_get_f64(ck, "degradation.prior_jitter", &jitter);
    if (st == CD_OK) st = cd__ckpt_get_i64(ck, "degradation.prior_fitted", &fitted);
    if (st == CD_OK) st = cd_degradation_set_prior(d, mean, sd, jitter);
    if (st != CD_OK) return cd__error(CD_ERR_FORMAT, "checkpoint: bad prior: %s", cd_last_error());
    d->prior_fitted = fitted != 0;
    return CD_OK;
}

cd_status cd__degradation_from_ckpt(const cd__ckpt *ck, cd_degradation **out)
{
    const char *kind = NULL;
    int64_t T = 0, n = 0;
    *out = NULL;
    CD__TRY(cd__ckpt_get_str(ck, "degradation.kind", &kind));
    CD__TRY(cd__ckpt_get_i64(ck, "schedule.T", &T));
    if (T < 1 || T > 1000000)
        return cd__error(CD_ERR_FORMAT, "checkpoint: schedule.T = %lld", (long long)T);
    /* The arrays' lengths before T sizes anything. */
    static const char *const arrays[2] = {"schedule.beta", "schedule.alpha_bar"};
    for (int i = 0; i < 2; i++) {
        CD__TRY(cd__ckpt_get_f32_array(ck, arrays[i], NULL, 0, &n));
        if (n != T + 1)
            return cd__error(CD_ERR_FORMAT,
                             "checkpoint: %s holds %lld values; schedule.T = "
                             "%lld needs T + 1",
                             arrays[i], (long long)n, (long long)T);
    }
    float *beta = cd__calloc((size_t)T + 1, sizeof *beta, "schedule.beta");
    float *abar = beta ? cd__calloc((size_t)T + 1, sizeof *abar, "schedule.alpha_bar") : NULL;
    cd_schedule *s = NULL;
    cd_status st = abar ? CD_OK : cd_last_status();
    if (st == CD_OK) st = cd__ckpt_get_f32_array(ck, "schedule.beta", beta, T + 1, &n);
    if (st == CD_OK) st = cd__ckpt_get_f32_array(ck, "schedule.alpha_bar", abar, T + 1, &n);
    if (st == CD_OK) st = cd_schedule_create_arrays(&s, beta, abar, T);
    if (st == CD_OK) st = create_from_ckpt(ck, kind, s, out);
    if (st == CD_OK) st = prior_from_ckpt(ck, *out);
    if (st != CD_OK) {
        cd_degradation_free(*out);
        *out = NULL;
    }
    cd_schedule_free(s);
    cd__free(beta);
    cd__free(abar);
    return st;
}

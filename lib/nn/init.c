/*
 * init.c - PyTorch's default initialisation of Conv2d, ConvTranspose2d,
 * Linear and LayerNorm, drawn from a cd_rng.
 *
 * PyTorch's reset_parameters() calls kaiming_uniform_(w, a=sqrt(5)):
 * gain = sqrt(2 / (1 + a^2)) = sqrt(1/3), std = gain / sqrt(fan_in) and
 * bound = sqrt(3) std = 1 / sqrt(fan_in); the bias is U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)) with the same fan_in. So both are U(-b, b), b =
 * 1/sqrt(fan_in). Only the distribution matches PyTorch: the numbers come
 * from the Philox stream of docs/rng.md, not from torch's mt19937, so a
 * seed here never reproduces torch.manual_seed(seed)'s weights (import a
 * checkpoint for that).
 */
#include "nn.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

int64_t cd__init_fan_in(cd__layer_kind kind, int32_t rank, const int64_t *shape)
{
    int32_t want = kind == CD__LAYER_LINEAR ? 2 : 4;
    if (kind != CD__LAYER_CONV2D && kind != CD__LAYER_CONV_TRANSPOSE2D &&
        kind != CD__LAYER_LINEAR) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd__init_fan_in: unknown layer kind %d", (int)kind);
        return -1;
    }
    if (!shape || rank != want) {
        cd__error(CD_ERR_SHAPE, "cd__init_fan_in: a %s weight must have rank %d, not %d",
                  kind == CD__LAYER_LINEAR ? "Linear" : "convolution", (int)want, (int)rank);
        return -1;
    }
    /* PyTorch: size(1) * receptive field, whatever the layout means. */
    int64_t fan_in = shape[1];
    for (int32_t d = 2; d < rank; d++) fan_in *= shape[d];
    return fan_in;
}

cd_status cd__init_uniform(cd_rng *rng, float *dst, int64_t n, double bound)
{
    static const char fn[] = "cd__init_uniform";
    if (!(bound >= 0.0) || !isfinite(bound))
        return cd__error(CD_ERR_RANGE, "%s: bound %g must be finite and >= 0", fn, bound);
    CD__TRY(cd_rng_uniform(rng, dst, n));
    /* u is a multiple of 2^-24 in [0, 1), so 2u - 1 is exact. */
    for (int64_t i = 0; i < n; i++) dst[i] = (float)((2.0 * (double)dst[i] - 1.0) * bound);
    return CD_OK;
}

/* The output size the bias must have for this weight. */
static int64_t bias_len(cd__layer_kind kind, const int64_t *wshape)
{
    return kind == CD__LAYER_CONV_TRANSPOSE2D ? wshape[1] : wshape[0];
}

static cd_status check_bias(const cd_params *p, cd__layer_kind kind, int64_t weight, int64_t bias)
{
    const int64_t *ws = cd__params_dims(p, weight);
    int64_t want = bias_len(kind, ws);
    if (cd_params_rank(p, bias) < 0) return cd_last_status();
    if (cd_params_rank(p, bias) != 1 || cd_params_numel_at(p, bias) != want)
        return cd__error(CD_ERR_SHAPE,
                         "cd__init_layer: bias '%s' must be a vector of "
                         "%" PRId64 " values for weight '%s'",
                         cd_params_name(p, bias), want, cd_params_name(p, weight));
    return CD_OK;
}

cd_status cd__init_layer(cd_params *p, cd__layer_kind kind, int64_t weight, int64_t bias,
                         cd_rng *rng)
{
    static const char fn[] = "cd__init_layer";
    CD__CHECK_NOT_NULL(p, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    int32_t rank = cd_params_rank(p, weight);
    if (rank < 0) return cd_last_status();
    if (rank != (kind == CD__LAYER_LINEAR ? 2 : 4) && kind >= CD__LAYER_CONV2D &&
        kind <= CD__LAYER_LINEAR)
        return cd__error(CD_ERR_SHAPE,
                         "%s: weight '%s' has rank %d, which does not fit "
                         "a %s layer",
                         fn, cd_params_name(p, weight), (int)rank,
                         kind == CD__LAYER_LINEAR ? "Linear" : "convolution");
    int64_t fan_in = cd__init_fan_in(kind, rank, cd__params_dims(p, weight));
    if (fan_in < 0) return cd_last_status();
    if (bias >= 0) CD__TRY(check_bias(p, kind, weight, bias));
    double bound = 1.0 / sqrt((double)fan_in);
    float *w = cd_params_data(p, weight);
    if (!w) return cd_last_status();
    CD__TRY(cd__init_uniform(rng, w, cd_params_numel_at(p, weight), bound));
    if (bias >= 0)
        CD__TRY(cd__init_uniform(rng, cd_params_data(p, bias), cd_params_numel_at(p, bias), bound));
    return CD_OK;
}

static cd_status fill_tensor(cd_params *p, int64_t i, float value)
{
    if (i < 0) return CD_OK;
    float *x = cd_params_data(p, i);
    if (!x) return cd_last_status();
    int64_t n = cd_params_numel_at(p, i);
    for (int64_t k = 0; k < n; k++) x[k] = value;
    return CD_OK;
}

cd_status cd__init_layer_norm(cd_params *p, int64_t weight, int64_t bias)
{
    CD__CHECK_NOT_NULL(p, "cd__init_layer_norm");
    if (weight >= 0 && bias >= 0 && cd_params_numel_at(p, weight) != cd_params_numel_at(p, bias))
        return cd__error(CD_ERR_SHAPE, "cd__init_layer_norm: weight and bias differ in "
                                       "size");
    CD__TRY(fill_tensor(p, weight, 1.0f));
    return fill_tensor(p, bias, 0.0f);
}

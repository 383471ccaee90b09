/* decoder.c - the cd_decoder front end: creation, parameters, the memory
 * plan, and argument checks around each architecture's forward/backward. */
#include "decoder.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

float *cd__arena_take(cd__arena *a, size_t n)
{
    float *p = a->base ? a->base + a->used : NULL;
    a->used += (n + 15) & ~(size_t)15; /* keep every piece 64-byte aligned */
    return p;
}

/* ---- parameters ------------------------------------------------------- */

static cd_status add_param(cd_decoder *d, const char *prefix, const char *suffix, int32_t rank,
                           const int64_t *shape, int64_t *index)
{
    char name[CD_PARAMS_MAX_NAME + 1];
    int n = snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    if (n < 0 || (size_t)n >= sizeof name)
        return cd__error(CD_ERR_INTERNAL, "parameter name '%s.%s' is too long", prefix, suffix);
    return cd__params_add(d->params, name, rank, shape, index);
}

cd_status cd__decoder_add_init(cd_decoder *d, int kind, int64_t w, int64_t b)
{
    if (d->n_init >= CD__DEC_MAX_LAYERS)
        return cd__error(CD_ERR_INTERNAL, "decoder has more than %d layers", CD__DEC_MAX_LAYERS);
    d->init[d->n_init++] = (cd__init_entry){kind, w, b};
    return CD_OK;
}

cd_status cd__decoder_add_conv(cd_decoder *d, const char *prefix, int64_t out, int64_t in_per_group,
                               int64_t kh, int64_t kw, bool bias, int64_t *w, int64_t *b)
{
    const int64_t ws[4] = {out, in_per_group, kh, kw};
    *b = -1;
    CD__TRY(add_param(d, prefix, "weight", 4, ws, w));
    if (bias) CD__TRY(add_param(d, prefix, "bias", 1, &out, b));
    return cd__decoder_add_init(d, CD__LAYER_CONV2D, *w, *b);
}

cd_status cd__decoder_add_convt(cd_decoder *d, const char *prefix, int64_t in, int64_t out,
                                int64_t kh, int64_t kw, int64_t *w, int64_t *b)
{
    const int64_t ws[4] = {in, out, kh, kw};
    CD__TRY(add_param(d, prefix, "weight", 4, ws, w));
    CD__TRY(add_param(d, prefix, "bias", 1, &out, b));
    return cd__decoder_add_init(d, CD__LAYER_CONV_TRANSPOSE2D, *w, *b);
}

cd_status cd__decoder_add_linear(cd_decoder *d, const char *prefix, int64_t out, int64_t in,
                                 int64_t *w, int64_t *b)
{
    const int64_t ws[2] = {out, in};
    CD__TRY(add_param(d, prefix, "weight", 2, ws, w));
    CD__TRY(add_param(d, prefix, "bias", 1, &out, b));
    return cd__decoder_add_init(d, CD__LAYER_LINEAR, *w, *b);
}

cd_status cd__decoder_add_layernorm(cd_decoder *d, const char *prefix, int32_t rank,
                                    const int64_t *shape, int64_t *w, int64_t *b)
{
    CD__TRY(add_param(d, prefix, "weight", rank, shape, w));
    CD__TRY(add_param(d, prefix, "bias", rank, shape, b));
    return cd__decoder_add_init(d, CD__INIT_LAYER_NORM, *w, *b);
}

float *cd__decoder_value(cd_decoder *d, int64_t index)
{
    return index < 0 ? NULL : cd__params_values(d->params) + cd__params_offset(d->params, index);
}

float *cd__decoder_grad(cd_decoder *d, int64_t index)
{
    if (index < 0) return NULL;
    if (d->touched) d->touched[index] = 1;
    return cd__params_grads(d->params) + cd__params_offset(d->params, index);
}

void cd__decoder_stage_done(cd_decoder *d)
{
    if (d->on_stage) d->on_stage(d->stage_user, d->touched);
}

cd_status cd__decoder_watch_grads(cd_decoder *d, cd__stage_fn fn, void *user)
{
    cd__free(d->touched);
    d->touched = NULL;
    d->on_stage = NULL;
    d->stage_user = NULL;
    if (!fn) return CD_OK;
    d->touched = cd__calloc((size_t)cd_params_count(d->params), 1, "decoder gradient marks");
    if (!d->touched) return cd_last_status();
    d->on_stage = fn;
    d->stage_user = user;
    return CD_OK;
}

static cd_status init_params(cd_decoder *d, cd_rng *rng)
{
    for (int32_t i = 0; i < d->n_init; i++) {
        const cd__init_entry *e = &d->init[i];
        if (e->kind == CD__INIT_LAYER_NORM)
            CD__TRY(cd__init_layer_norm(d->params, e->weight, e->bias));
        else if (e->kind == CD__INIT_NORMAL)
            CD__TRY(cd_rng_normal(rng, cd__decoder_value(d, e->weight),
                                  cd_params_numel_at(d->params, e->weight)));
        else
            CD__TRY(cd__init_layer(d->params, (cd__layer_kind)e->kind, e->weight, e->bias, rng));
    }
    return CD_OK;
}

/* ---- lifecycle -------------------------------------------------------- */

cd_status cd__decoder_describe(cd_decoder **out, const cd__decoder_cfg *cfg)
{
    *out = NULL;
    CD__TRY(cd__decoder_cfg_validate(cfg));
    cd_decoder *d = cd__calloc(1, sizeof *d, "decoder");
    if (!d) return cd_last_status();
    d->cfg = *cfg;
    d->ops = cfg->type == CD_DECODER_CNN ? &cd__cnn_ops : &cd__unet_ops;
    cd_status st = cd_params_create(&d->params);
    if (st == CD_OK) st = d->ops->build(d);
    if (st != CD_OK) {
        cd_decoder_free(d);
        return st;
    }
    *out = d;
    return CD_OK;
}

cd_status cd_decoder_create(cd_decoder **out, const cd_decoder_config *cfg, cd_rng *rng)
{
    static const char fn[] = "cd_decoder_create";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(cfg, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    cd_decoder *d = NULL;
    CD__TRY(cd__decoder_describe(&d, &cfg->c));
    cd_status st = cd__params_finalize(d->params);
    if (st == CD_OK) st = init_params(d, rng);
    if (st != CD_OK) {
        cd_decoder_free(d);
        return st;
    }
    *out = d;
    return CD_OK;
}

void cd_decoder_free(cd_decoder *d)
{
    if (!d) return;
    if (d->impl) d->ops->free_impl(d->impl);
    cd__decoder_drop_prepared(d);
    cd_params_free(d->params);
    cd__free(d->arena);
    cd__free(d->label_rows);
    cd__free(d->touched);
    cd__free(d);
}

cd_params *cd_decoder_params(cd_decoder *d)
{
    if (!d) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_decoder_params: argument 'd' is NULL");
        return NULL;
    }
    return d->params;
}

int64_t cd_decoder_param_count(const cd_decoder *d)
{
    if (!d) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_decoder_param_count: argument 'd' is NULL");
        return -1;
    }
    return cd_params_numel(d->params);
}

cd_decoder_kind cd_decoder_get_kind(const cd_decoder *d)
{
    if (!d) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_decoder_get_kind: argument 'd' is NULL");
        return CD_DECODER_INVALID;
    }
    return d->cfg.type;
}

cd_status cd_decoder_get_config(const cd_decoder *d, cd_decoder_config **out)
{
    static const char fn[] = "cd_decoder_get_config";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(d, fn);
    CD__TRY(cd_decoder_config_create(out, d->cfg.type));
    (*out)->c = d->cfg;
    return CD_OK;
}

/* ---- shapes and the memory plan --------------------------------------- */

/* Far above any batch that fits in memory, and low enough that no plan
 * size computed from it (pixels x widest layer x buffers) can overflow. */
#define MAX_BATCH_PIXELS (INT64_C(1) << 31)

static cd_status check_dims(const cd_decoder *d, const char *fn, int64_t N, int64_t C, int64_t H,
                            int64_t W)
{
    if (N < 1 || H < 1 || W < 1)
        return cd__error(CD_ERR_SHAPE,
                         "%s: batch and image sizes must be positive, got "
                         "%" PRId64 "x%" PRId64 "x%" PRId64 "x%" PRId64,
                         fn, N, C, H, W);
    if (H > MAX_BATCH_PIXELS || W > MAX_BATCH_PIXELS / H || N > MAX_BATCH_PIXELS / (H * W))
        return cd__error(CD_ERR_OVERFLOW,
                         "%s: a batch of %" PRId64 " images of %" PRId64 "x%" PRId64
                         " is beyond the supported %" PRId64 " pixels",
                         fn, N, H, W, MAX_BATCH_PIXELS);
    if (C != d->cfg.channels)
        return cd__error(CD_ERR_SHAPE,
                         "%s: the decoder takes %" PRId64 " channel(s), the "
                         "input has %" PRId64,
                         fn, d->cfg.channels, C);
    return d->ops->check_shape(d, fn, H, W);
}

cd_status cd__decoder_plan_bytes(cd_decoder *d, int64_t N, int64_t H, int64_t W, bool train,
                                 int64_t *bytes)
{
    static const char fn[] = "cd_decoder_workspace_size";
    CD__CHECK_NOT_NULL(d, fn);
    CD__CHECK_NOT_NULL(bytes, fn);
    CD__TRY(check_dims(d, fn, N, d->cfg.channels, H, W));
    cd__arena a = {0};
    d->ops->plan(d, &a, N, H, W, train);
    *bytes = (int64_t)(a.used * sizeof(float));
    /* Measuring rebinds the architecture's buffers to the null arena; bind
     * them back to the real one so the current plan stays usable. */
    if (d->arena) {
        a = (cd__arena){.base = d->arena};
        d->ops->plan(d, &a, d->N, d->H, d->W, d->train);
    }
    return CD_OK;
}

cd_status cd_decoder_workspace_size(cd_decoder *d, int64_t N, int64_t H, int64_t W, int64_t *bytes)
{
    return cd__decoder_plan_bytes(d, N, H, W, true, bytes);
}

/* Make the arena fit (N, H, W) and the mode; reuses it while they are
 * unchanged, and never shrinks it, so a trainer that validates between
 * steps lays out its forward-only plan in the training plan's memory. */
static cd_status ensure_plan(cd_decoder *d, int64_t N, int64_t H, int64_t W, bool train)
{
    if (d->arena && d->N == N && d->H == H && d->W == W && d->train == train) return CD_OK;
    cd__arena a = {0};
    d->ops->plan(d, &a, N, H, W, train);
    if (a.used > d->arena_floats) {
        float *p = cd__calloc(a.used, sizeof(float), "decoder workspace");
        if (!p) {
            /* Measuring bound the buffers to the null arena: put the old
             * plan back, so the decoder (and a saved forward) still works. */
            if (d->arena) {
                a = (cd__arena){.base = d->arena};
                d->ops->plan(d, &a, d->N, d->H, d->W, d->train);
            }
            return cd_last_status();
        }
        cd__free(d->arena);
        d->arena = p;
        d->arena_floats = a.used;
    }
    a = (cd__arena){.base = d->arena};
    d->ops->plan(d, &a, N, H, W, train);
    d->N = N, d->H = H, d->W = W, d->train = train;
    d->forward_done = false;
    return CD_OK;
}

static cd_status image_dims(const cd_tensor *t, const char *fn, const char *name, int64_t dims[4])
{
    if (!t) return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: tensor '%s' is NULL", fn, name);
    if (cd_tensor_rank(t) != 4)
        return cd__error(CD_ERR_SHAPE, "%s: '%s' must be N x C x H x W, got rank %" PRId64, fn,
                         name, cd_tensor_rank(t));
    return cd_tensor_shape(t, dims, 4);
}

static cd_status run_forward(cd_decoder *d, const char *fn, const cd_tensor *z,
                             const cd_tensor *tau, const cd_tensor *labels, cd_tensor *out,
                             bool train)
{
    CD__CHECK_NOT_NULL(d, fn);
    int64_t s[4];
    CD__TRY(image_dims(z, fn, "z", s));
    CD__TRY(check_dims(d, fn, s[0], s[1], s[2], s[3]));
    CD__TRY(cd__tensor_expect(tau, fn, "tau", 1, (int64_t[]){s[0]}));
    CD__TRY(cd__tensor_expect(out, fn, "out", 4, s));
    const float *t = tau->data;
    for (int64_t i = 0; i < s[0]; i++)
        if (!isfinite(t[i]))
            return cd__error(CD_ERR_NOT_FINITE, "%s: tau[%" PRId64 "] is %g", fn, i, t[i]);
    /* One read of z, cheap beside the network, and a NaN would otherwise
     * come out as a NaN prediction that nothing names. */
    CD__TRY(cd__check_finite(z, fn, "z"));
    CD__TRY(cd__decoder_take_labels(d, fn, labels, s[0]));
    CD__TRY(ensure_plan(d, s[0], s[2], s[3], train));
    /* Training changes the weights every step: from its first pass on,
     * the decoder prepares none (decoder_prepared.c). */
    if (train) {
        d->trains = true;
        cd__decoder_drop_prepared(d);
    }
    /* A forward-only pass overwrites what a training forward saved. */
    d->forward_done = false;
    d->ops->forward(d, out->data, z->data, t);
    d->forward_done = train;
    return CD_OK;
}

cd_status cd_decoder_forward(cd_decoder *d, const cd_tensor *z, const cd_tensor *tau,
                             cd_tensor *out)
{
    return run_forward(d, "cd_decoder_forward", z, tau, NULL, out, true);
}

cd_status cd_decoder_forward_labeled(cd_decoder *d, const cd_tensor *z, const cd_tensor *tau,
                                     const cd_tensor *labels, cd_tensor *out)
{
    return run_forward(d, "cd_decoder_forward_labeled", z, tau, labels, out, true);
}

cd_status cd_decoder_infer_labeled(cd_decoder *d, const cd_tensor *z, const cd_tensor *tau,
                                   const cd_tensor *labels, cd_tensor *out)
{
    return run_forward(d, "cd_decoder_infer_labeled", z, tau, labels, out, false);
}

cd_status cd_decoder_infer(cd_decoder *d, const cd_tensor *z, const cd_tensor *tau, cd_tensor *out)
{
    return run_forward(d, "cd_decoder_infer", z, tau, NULL, out, false);
}

cd_status cd_decoder_backward(cd_decoder *d, const cd_tensor *dout, cd_tensor *dz)
{
    static const char fn[] = "cd_decoder_backward";
    CD__CHECK_NOT_NULL(d, fn);
    if (!d->forward_done)
        return cd__error(CD_ERR_STATE,
                         "%s: call cd_decoder_forward first (backward uses "
                         "the activations it saved, and uses them up; "
                         "cd_decoder_infer saves none)",
                         fn);
    const int64_t s[4] = {d->N, d->cfg.channels, d->H, d->W};
    CD__TRY(cd__tensor_expect(dout, fn, "dout", 4, s));
    CD__TRY(cd__check_finite(dout, fn, "dout"));
    if (dz) {
        CD__TRY(cd__tensor_expect(dz, fn, "dz", 4, s));
        if (dz == dout)
            return cd__error(CD_ERR_INVALID_ARGUMENT,
                             "%s: dz and dout are the same tensor "
                             "(dz is cleared before dout is read)",
                             fn);
        memset(dz->data, 0, (size_t)dz->numel * sizeof(float));
    }
    if (d->touched) memset(d->touched, 0, (size_t)cd_params_count(d->params));
    /* Backward overwrites some of what forward saved (the UNet's attention
     * turns its q, k and v into their gradients), as PyTorch frees its
     * graph: a second backward needs a second forward. */
    d->forward_done = false;
    d->ops->backward(d, dz ? dz->data : NULL, dout->data);
    /* A UNet takes any size its levels divide; it keeps the size it
     * learns at, so that sampling without a dataset, and its files, know
     * what to draw (the CNN's size is fixed, and this is a no-op). */
    d->cfg.height = d->H, d->cfg.width = d->W;
    return CD_OK;
}

cd_status cd_decoder_image_shape(const cd_decoder *d, int64_t shape[3])
{
    static const char fn[] = "cd_decoder_image_shape";
    CD__CHECK_NOT_NULL(d, fn);
    CD__CHECK_NOT_NULL(shape, fn);
    shape[0] = d->cfg.channels, shape[1] = d->cfg.height, shape[2] = d->cfg.width;
    return CD_OK;
}

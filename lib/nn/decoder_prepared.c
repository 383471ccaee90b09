/*
 * decoder_prepared.c - convolution weights prepared once for many
 * forward-only passes.
 *
 * A sampler calls the same decoder tens to thousands of times with the
 * same weights, and every call would transform them again: the Winograd
 * path's 3x3 weights into 6x6 tiles, the spectral path's 7x7 kernels into
 * spectra. That work does not grow with the batch, so it weighs most at
 * the small batches sampling uses. A forward-only pass keeps the prepared
 * form per weight, with a copy of the weights it came from.
 *
 * The weights are compared bit for bit on every pass rather than tracked:
 * a host may write them through cd_params_data at any time, and a
 * comparison costs one read of the weights, far less than preparing them.
 * A decoder that trains prepares nothing from its first training pass
 * on, which frees what it had prepared: its weights change from one
 * validation to the next, and preparing would add its memory (60 MB for
 * the report's UNet) to the training plan's peak for a gain of a fraction
 * of a percent of an epoch.
 */
#include "decoder.h"

#include <string.h>

static void drop_one(cd__prepared *p)
{
    cd__free(p->prep);
    cd__free(p->weights);
    *p = (cd__prepared){0};
}

void cd__decoder_drop_prepared(cd_decoder *d)
{
    if (!d->prepared) return;
    const int64_t n = cd_params_count(d->params);
    for (int64_t i = 0; i < n; i++) drop_one(&d->prepared[i]);
    cd__free(d->prepared);
    d->prepared = NULL;
}

/* The same convolution but perhaps for N: the prepared forms do not
 * depend on it, so a last, short batch reuses them. */
static bool same_layer(const cd__conv2d *a, const cd__conv2d *b)
{
    return a->C_in == b->C_in && a->H == b->H && a->W == b->W && a->C_out == b->C_out &&
           a->kh == b->kh && a->kw == b->kw && a->stride == b->stride && a->pad == b->pad &&
           a->groups == b->groups && a->H_out == b->H_out && a->W_out == b->W_out &&
           a->bias == b->bias;
}

/* Weight w prepared for c, prepared again if c, its path or any bit of
 * the weights changed since; NULL where c's path has no prepared form or
 * the memory for it is missing (the caller then runs the plain forward,
 * and no error is left behind). */
static const float *prepared(cd_decoder *d, const cd__conv2d *c, int64_t w, float *ws)
{
    const int32_t kind = cd__conv2d_prepared_kind(c);
    if (kind == 0) return NULL;
    cd__saved_error err;
    cd__error_save(&err);
    if (!d->prepared) {
        d->prepared = cd__calloc((size_t)cd_params_count(d->params), sizeof *d->prepared,
                                 "the table of prepared weights");
        if (!d->prepared) goto fail;
    }
    cd__prepared *p = &d->prepared[w];
    const float *weight = cd__decoder_value(d, w);
    const size_t nw = (size_t)cd_params_numel_at(d->params, w);
    const size_t np = cd__conv2d_prepared_size(c);
    if (p->prep && p->kind == kind && same_layer(&p->c, c) &&
        memcmp(p->weights, weight, nw * sizeof(float)) == 0)
        return p->prep;
    if (p->n_prep != np || p->n_weights != nw) {
        drop_one(p);
        p->prep = cd__calloc(np, sizeof(float), "prepared convolution weights");
        p->weights = p->prep ? cd__malloc(nw * sizeof(float), "a copy of the weights") : NULL;
        if (!p->weights) {
            drop_one(p);
            goto fail;
        }
        p->n_prep = np, p->n_weights = nw;
    }
    cd__conv2d_prepare(c, p->prep, weight, ws);
    memcpy(p->weights, weight, nw * sizeof(float));
    p->c = *c;
    p->kind = kind;
    return p->prep;
fail:
    cd__error_restore(&err);
    return NULL;
}

void cd__decoder_conv_forward(cd_decoder *d, const cd__conv2d *c, int64_t w, const float *bias,
                              float *out, const float *in, float *ws, cd__task_fn epi,
                              void *epi_ctx)
{
    const float *prep = d->trains ? NULL : prepared(d, c, w, ws);
    if (prep)
        cd__conv2d_forward_prepared(c, out, in, prep, bias, ws, epi, epi_ctx);
    else
        cd__conv2d_forward_epi(c, out, in, cd__decoder_value(d, w), bias, ws, epi, epi_ctx);
}

/*
 * decoder_labels.c - class conditioning shared by both architectures: a
 * table of one embedding row per class plus a "no class" row, added to
 * the time embedding. Training drops labels to the last row at a rate, so
 * one network learns both the conditional and the unconditional model
 * that classifier-free guidance mixes.
 */
#include "decoder.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

cd_status cd__decoder_add_label_embed(cd_decoder *d, int64_t width, int64_t *w)
{
    *w = -1;
    if (d->cfg.classes <= 0) return CD_OK;
    const int64_t shape[2] = {d->cfg.classes + 1, width};
    CD__TRY(cd__params_add(d->params, "label_embed.weight", 2, shape, w));
    return cd__decoder_add_init(d, CD__INIT_NORMAL, *w, -1);
}

void cd__decoder_label_forward(cd_decoder *d, float *emb, int64_t width)
{
    if (d->cfg.classes <= 0) return;
    const float *table = cd__decoder_value(d, d->label_w);
    for (int64_t n = 0; n < d->N; n++) {
        const float *row = table + (int64_t)d->label_rows[n] * width;
        float *e = emb + n * width;
        for (int64_t j = 0; j < width; j++) e[j] += row[j];
    }
}

void cd__decoder_label_backward(cd_decoder *d, const float *demb, int64_t width)
{
    if (d->cfg.classes <= 0) return;
    float *grad = cd__decoder_grad(d, d->label_w);
    for (int64_t n = 0; n < d->N; n++) {
        float *row = grad + (int64_t)d->label_rows[n] * width;
        const float *g = demb + n * width;
        for (int64_t j = 0; j < width; j++) row[j] += g[j];
    }
}

cd_status cd__decoder_take_labels(cd_decoder *d, const char *fn, const cd_tensor *labels, int64_t N)
{
    const int64_t K = d->cfg.classes;
    if (labels && K <= 0)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: labels given to a decoder without classes (make it with "
                         "CD_DECODER_OPT_CLASSES > 0, or pass NULL)",
                         fn);
    if (K <= 0) return CD_OK;
    if (labels) CD__TRY(cd__tensor_expect(labels, fn, "labels", 1, (int64_t[]){N}));
    for (int64_t n = 0; labels && n < N; n++) {
        const float v = labels->data[n];
        if (!(v >= -1.0f && v <= (float)(K - 1)) || v != floorf(v))
            return cd__error(CD_ERR_RANGE,
                             "%s: labels[%" PRId64 "] is %g, not a class in 0..%" PRId64
                             " or -1 for none",
                             fn, n, (double)v, K - 1);
    }
    if (d->label_cap < N) {
        int32_t *rows = cd__malloc((size_t)N * sizeof *rows, "decoder label rows");
        if (!rows) return cd_last_status();
        cd__free(d->label_rows);
        d->label_rows = rows;
        d->label_cap = N;
    }
    /* The rows a saved training forward needs are about to change. */
    d->forward_done = false;
    for (int64_t n = 0; n < N; n++) {
        const float v = labels ? labels->data[n] : -1.0f;
        d->label_rows[n] = v < 0.0f ? (int32_t)K : (int32_t)v;
    }
    return CD_OK;
}

int64_t cd_decoder_class_count(const cd_decoder *d)
{
    if (!d) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_decoder_class_count: argument 'd' is NULL");
        return -1;
    }
    return d->cfg.classes;
}

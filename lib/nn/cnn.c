/*
 * cnn.c - the report's Part 1 decoder (docs/models.md, Decoders: CNN).
 *
 *   e   = MLP(time_encoding(tau)) [+ E[label]]     N x hidden[0]
 *   x_0 = GELU(LN_0(conv_0(z))) + e                broadcast over H x W
 *   x_i = GELU(LN_i(conv_i(x_{i-1})))              i = 1 .. L-1
 *   out = conv_L(x_{L-1})                          3 x 3, to C channels
 *
 * The LayerNorms normalise each sample over C x H x W jointly with an
 * elementwise affine of that shape, so a CNN is built for one H x W.
 */
#include "decoder.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXL CD__DEC_MAX_LIST

typedef struct {
    int32_t L;   /* hidden blocks */
    int32_t M;   /* time-MLP linear layers: time_layers + 1 */
    int64_t enc; /* encoding width: 2 x frequencies */
    int64_t conv_w[MAXL + 1], conv_b[MAXL + 1], ln_w[MAXL], ln_b[MAXL];
    int64_t mlp_w[MAXL], mlp_b[MAXL], mlp_in[MAXL], mlp_out[MAXL];
    float freq[64];
    /* The plan for (N, H, W). */
    int64_t N, HW;
    cd__conv2d conv[MAXL + 1];
    float *z, *tenc, *pre[MAXL], *act[MAXL], *dpre, *dact, *demb;
    float *c[MAXL], *x[MAXL], *mean[MAXL], *rstd[MAXL];
    float *gp[MAXL]; /* GELU'(LN(c[i])), saved by a training forward */
    float *dx[2];    /* dL/dx_i, then dL/dc_i in place, in turns by i */
    float *ws, *lg_ws;
} cnn_t;

static cd_status cnn_build(cd_decoder *d)
{
    const cd__decoder_cfg *cfg = &d->cfg;
    cnn_t *m = cd__calloc(1, sizeof *m, "CNN layers");
    if (!m) return cd_last_status();
    d->impl = m;
    m->L = (int32_t)cfg->n_hidden;
    m->M = (int32_t)cfg->time_layers + 1;
    m->enc = 2 * cfg->time_freqs;
    char name[64];
    int64_t in = cfg->channels;
    for (int32_t i = 0; i < m->L; i++) {
        const int64_t h = cfg->hidden[i], ln_shape[3] = {h, cfg->height, cfg->width};
        snprintf(name, sizeof name, "blocks.%" PRId32 ".net.0", i);
        CD__TRY(cd__decoder_add_conv(d, name, h, in, cfg->kernel, cfg->kernel, true, &m->conv_w[i],
                                     &m->conv_b[i]));
        snprintf(name, sizeof name, "blocks.%" PRId32 ".net.1", i);
        CD__TRY(cd__decoder_add_layernorm(d, name, 3, ln_shape, &m->ln_w[i], &m->ln_b[i]));
        in = h;
    }
    snprintf(name, sizeof name, "blocks.%" PRId32, m->L);
    CD__TRY(cd__decoder_add_conv(d, name, cfg->channels, in, 3, 3, true, &m->conv_w[m->L],
                                 &m->conv_b[m->L]));
    /* time_embed.{0,2,4,...}: Linear layers with GELUs between them. */
    for (int32_t j = 0; j < m->M; j++) {
        m->mlp_in[j] = j == 0 ? m->enc : cfg->time_hidden;
        m->mlp_out[j] = j == m->M - 1 ? cfg->hidden[0] : cfg->time_hidden;
        snprintf(name, sizeof name, "time_embed.%" PRId32, 2 * j);
        CD__TRY(cd__decoder_add_linear(d, name, m->mlp_out[j], m->mlp_in[j], &m->mlp_w[j],
                                       &m->mlp_b[j]));
    }
    cd__cnn_frequencies_n(m->freq, cfg->time_freqs);
    return cd__decoder_add_label_embed(d, cfg->hidden[0], &d->label_w);
}

static cd_status cnn_check_shape(const cd_decoder *d, const char *fn, int64_t H, int64_t W)
{
    if (H != d->cfg.height || W != d->cfg.width)
        return cd__error(CD_ERR_SHAPE,
                         "%s: this CNN decoder was built for %" PRId64 "x%" PRId64
                         " images (its LayerNorms are C x H x W), got %" PRId64 "x%" PRId64,
                         fn, d->cfg.height, d->cfg.width, H, W);
    return CD_OK;
}

static void cnn_plan(cd_decoder *d, cd__arena *a, int64_t N, int64_t H, int64_t W, bool train)
{
    cnn_t *m = d->impl;
    const cd__decoder_cfg *cfg = &d->cfg;
    m->N = N;
    m->HW = H * W;
    size_t ws = 0, lg_ws = 0, widest = 0, mlp_widest = 0;
    int64_t in = cfg->channels;
    for (int32_t i = 0; i <= m->L; i++) {
        const int64_t out = i < m->L ? cfg->hidden[i] : cfg->channels;
        const int64_t k = i < m->L ? cfg->kernel : 3;
        /* Shapes were validated at creation and by check_shape. */
        (void)cd__conv2d_init(&m->conv[i], N, in, H, W, out, k, k, 1, k / 2, 1, true);
        size_t w = cd__conv2d_workspace(&m->conv[i]);
        if (w > ws) ws = w;
        if ((size_t)out > widest) widest = (size_t)out;
        if (i < m->L && cd__ln_gelu_workspace(N, out, H * W) > lg_ws)
            lg_ws = cd__ln_gelu_workspace(N, out, H * W);
        in = out;
    }
    for (int32_t j = 0; j < m->M; j++)
        if ((size_t)m->mlp_out[j] > mlp_widest) mlp_widest = (size_t)m->mlp_out[j];
    const size_t n = (size_t)N;
    m->z = cd__arena_take(a, n * (size_t)(cfg->channels * m->HW));
    m->tenc = cd__arena_take(a, n * (size_t)m->enc);
    for (int32_t j = 0; j < m->M; j++) {
        m->pre[j] = cd__arena_take(a, n * (size_t)m->mlp_out[j]);
        m->act[j] = cd__arena_take(a, n * (size_t)m->mlp_out[j]);
    }
    if (!train) {
        /* Forward only: no gradients, and layer i's buffers are dead once
         * layer i + 1 has read them, so two sets take turns. */
        m->dpre = m->dact = m->demb = m->dx[0] = m->dx[1] = m->lg_ws = NULL;
        for (int32_t i = 0; i < m->L; i++) {
            if (i < 2) {
                const size_t sz = n * widest * (size_t)m->HW;
                m->c[i] = cd__arena_take(a, sz);
                m->x[i] = cd__arena_take(a, sz);
                m->mean[i] = cd__arena_take(a, n);
                m->rstd[i] = cd__arena_take(a, n);
            } else {
                m->c[i] = m->c[i - 2], m->x[i] = m->x[i - 2];
                m->mean[i] = m->mean[i - 2], m->rstd[i] = m->rstd[i - 2];
            }
            m->gp[i] = NULL;
        }
        m->ws = cd__arena_take(a, ws);
        return;
    }
    m->dpre = cd__arena_take(a, n * mlp_widest);
    m->dact = cd__arena_take(a, n * mlp_widest);
    m->demb = cd__arena_take(a, n * (size_t)cfg->hidden[0]);
    for (int32_t i = 0; i < m->L; i++) {
        const size_t sz = n * (size_t)(cfg->hidden[i] * m->HW);
        m->c[i] = cd__arena_take(a, sz);
        m->x[i] = cd__arena_take(a, sz);
        m->gp[i] = cd__arena_take(a, sz);
        m->mean[i] = cd__arena_take(a, n);
        m->rstd[i] = cd__arena_take(a, n);
    }
    m->dx[0] = cd__arena_take(a, n * widest * (size_t)m->HW);
    m->dx[1] = cd__arena_take(a, n * widest * (size_t)m->HW);
    m->ws = cd__arena_take(a, ws);
    m->lg_ws = cd__arena_take(a, lg_ws);
}

static void cnn_forward(cd_decoder *d, float *out, const float *z, const float *tau)
{
    cnn_t *m = d->impl;
    const int64_t N = m->N, HW = m->HW;
    cd__cnn_time_encoding(m->tenc, tau, m->freq, N, d->cfg.time_freqs);
    const float *in = m->tenc;
    for (int32_t j = 0; j < m->M; j++) {
        cd__linear_forward(m->pre[j], in, cd__decoder_value(d, m->mlp_w[j]),
                           cd__decoder_value(d, m->mlp_b[j]), N, m->mlp_in[j], m->mlp_out[j]);
        if (j < m->M - 1) cd__gelu_forward(m->act[j], m->pre[j], N * m->mlp_out[j]);
        in = m->act[j];
    }
    /* The last layer has no GELU, so backward never reads its input
     * back and the label rows can be added in place. */
    cd__decoder_label_forward(d, m->pre[m->M - 1], d->cfg.hidden[0]);
    const float *emb = m->pre[m->M - 1];
    /* Keep z: the first convolution's weight gradient needs it, and the
     * caller may reuse its tensor before calling backward. */
    memcpy(m->z, z, (size_t)(N * d->cfg.channels * HW) * sizeof *z);
    in = m->z;
    for (int32_t i = 0; i < m->L; i++) {
        /* LayerNorm + GELU (+ e) run per image right after its convolution,
         * while c[i] of that image is still in cache. */
        cd__ln_gelu_args lg = {m->x[i],
                               m->gp[i],
                               m->mean[i],
                               m->rstd[i],
                               m->c[i],
                               cd__decoder_value(d, m->ln_w[i]),
                               cd__decoder_value(d, m->ln_b[i]),
                               i == 0 ? emb : NULL,
                               N,
                               d->cfg.hidden[i],
                               HW,
                               1e-5f};
        cd__decoder_conv_forward(d, &m->conv[i], m->conv_w[i], cd__decoder_value(d, m->conv_b[i]),
                                 m->c[i], in, m->ws, cd__ln_gelu_forward_task, &lg);
        in = m->x[i];
    }
    cd__decoder_conv_forward(d, &m->conv[m->L], m->conv_w[m->L],
                             cd__decoder_value(d, m->conv_b[m->L]), out, in, m->ws, NULL, NULL);
}

static void mlp_backward(cd_decoder *d, cnn_t *m, const float *demb)
{
    const int64_t N = m->N;
    const float *g = demb; /* dL/d(pre[j]); the last layer has no GELU */
    for (int32_t j = m->M - 1; j >= 0; j--) {
        const int64_t nin = m->mlp_in[j];
        const float *in = j == 0 ? m->tenc : m->act[j - 1];
        float *din = j == 0 ? NULL : m->dact;
        if (din) memset(din, 0, (size_t)(N * nin) * sizeof *din);
        cd__linear_backward(din, cd__decoder_grad(d, m->mlp_w[j]), cd__decoder_grad(d, m->mlp_b[j]),
                            g, in, cd__decoder_value(d, m->mlp_w[j]), N, nin, m->mlp_out[j]);
        if (j == 0) break;
        memset(m->dpre, 0, (size_t)(N * nin) * sizeof *m->dpre);
        cd__gelu_backward(m->dpre, m->dact, m->pre[j - 1], N * nin);
        g = m->dpre;
    }
}

static void cnn_backward(cd_decoder *d, float *dz, const float *dout)
{
    cnn_t *m = d->impl;
    const int64_t N = m->N, HW = m->HW;
    /* Each gradient buffer is written whole by the convolution above it:
     * no clearing. */
    cd__conv2d_backward_set(&m->conv[m->L], m->dx[(m->L - 1) & 1],
                            cd__decoder_grad(d, m->conv_w[m->L]),
                            cd__decoder_grad(d, m->conv_b[m->L]), dout, m->x[m->L - 1],
                            cd__decoder_value(d, m->conv_w[m->L]), m->ws);
    cd__decoder_stage_done(d);
    memset(m->demb, 0, (size_t)(N * d->cfg.hidden[0]) * sizeof(float));
    for (int32_t i = m->L - 1; i >= 0; i--) {
        /* dL/dx_i becomes dL/dc_i in place. x_0 = GELU(.) + e: e's gradient
         * is dL/dx_0 summed over each channel's pixels. */
        float *g = m->dx[i & 1];
        cd__ln_gelu_backward(g, cd__decoder_grad(d, m->ln_w[i]), cd__decoder_grad(d, m->ln_b[i]),
                             i == 0 ? m->demb : NULL, g, m->gp[i], m->c[i],
                             cd__decoder_value(d, m->ln_w[i]), m->mean[i], m->rstd[i], N,
                             d->cfg.hidden[i], HW, m->lg_ws);
        /* dz (NULL unless asked for) is overwritten, as the API says. */
        cd__conv2d_backward_set(&m->conv[i], i > 0 ? m->dx[(i - 1) & 1] : dz,
                                cd__decoder_grad(d, m->conv_w[i]),
                                cd__decoder_grad(d, m->conv_b[i]), g, i > 0 ? m->x[i - 1] : m->z,
                                cd__decoder_value(d, m->conv_w[i]), m->ws);
        cd__decoder_stage_done(d);
    }
    cd__decoder_label_backward(d, m->demb, d->cfg.hidden[0]);
    mlp_backward(d, m, m->demb);
}

static void cnn_free(void *impl) { cd__free(impl); }

const cd__decoder_ops cd__cnn_ops = {cnn_build,   cnn_check_shape, cnn_plan,
                                     cnn_forward, cnn_backward,    cnn_free};

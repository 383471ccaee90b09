/*
 * unet.c - the report's Part 2 decoder, the cold-diffusion ConvNeXt UNet
 * (docs/models.md, Decoders: UNet), wired from the blocks of unet_blocks.c.
 *
 * With dims = [C, dim m_0, .., dim m_{L-1}] and level i at H/2^i x W/2^i:
 *   temb  = Lin(GELU(Lin(sinusoidal(tau))));  every timed block gets GELU(temb)
 *   down i: ConvNeXt(dims[i] -> dims[i+1]), ConvNeXt, attention -> skip i,
 *           then Conv 4x4 stride 2 unless i is the last level
 *   mid:    ConvNeXt, attention, ConvNeXt at dims[L]
 *   up j:   cat(x, skip L-1-j), ConvNeXt(2 dims[L-j] -> dims[L-1-j]),
 *           ConvNeXt, attention, ConvTranspose 4x4 stride 2
 *   final:  ConvNeXt without time, Conv 1x1 to C
 * Skip 0 is made but never read, as in the trained model. The final block
 * runs at dims[1] channels, which is PyTorch's `dim` whenever m_0 = 1 (the
 * only case PyTorch can build).
 *
 * Every tensor between blocks (an "activation") keeps its value and has its
 * own gradient buffer; the gradient buffers lie in one arena range that
 * backward zeroes once, after which every op simply adds, so skips and
 * residuals need no special handling.
 */
#include "unet.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXL CD__DEC_MAX_LIST
/* Activations: 4 per down level, 3 mid, 5 per up level, 1 final. */
#define MAX_ACTS (9 * MAXL)
/* Layers registered for initialisation (see decoder.h). */
#define BLOCK_LAYERS 5
#define ATTN_LAYERS 2

#define VAL(i) cd__decoder_value(d, (i))
#define GRAD(i) cd__decoder_grad(d, (i))

typedef struct {
    float *x, *dx;
    size_t n;
} act_t;

typedef struct {
    int32_t L;
    int64_t dims[MAXL + 1];
    int64_t tdim;
    int64_t t1_w, t1_b, t3_w, t3_b;
    cd__unet_block down[MAXL][2], mid[2], up[MAXL][2], fin;
    cd__unet_attn down_attn[MAXL], mid_attn, up_attn[MAXL];
    int64_t dconv_w[MAXL], dconv_b[MAXL], uconv_w[MAXL], uconv_b[MAXL], fconv_w, fconv_b;
    /* The plan for (N, H, W). */
    int64_t N, H, W;
    cd__conv2d dconv[MAXL], fconv;
    cd__convt2d uconv[MAXL];
    cd__unet_scratch s;
    float *z, *enc, *t1, *t1g, *temb, *gtemb;
    float *dgtemb, *dtemb, *dt1g, *dt1;
    float *grads; /* the gradients that gather (time, skips), cleared at once */
    size_t grad_floats;
    act_t act[MAX_ACTS];
    /* A forward-only plan lays every block's internals out in one shared
     * region (blk), sized by its largest user (blk_peak floats): they are
     * dead once the block's output is written. */
    bool train;
    cd__arena blk;
    size_t blk_peak;
} unet_t;

/* Activation slots: down(i, k): block0, block1, attention (skip i),
 * downsample; mid(k): block1, attention, block2; up(j, k): concat, block0,
 * block1, attention, upsample; then the final block. */
static act_t *down_act(unet_t *m, int32_t i, int k) { return &m->act[4 * i + k]; }
static act_t *mid_act(unet_t *m, int k) { return &m->act[4 * m->L + k]; }
static act_t *up_act(unet_t *m, int32_t j, int k) { return &m->act[4 * m->L + 3 + 5 * j + k]; }
static act_t *fin_act(unet_t *m) { return &m->act[4 * m->L + 3 + 5 * (m->L - 1)]; }

/* ---- build ----------------------------------------------------------------- */

static cd_status check_layers(const cd__decoder_cfg *cfg)
{
    const int64_t L = cfg->n_mults;
    const int64_t blocks = 2 * L + 2 + 2 * (L - 1) + 1, attns = 2 * L;
    const int64_t layers = 2 + blocks * BLOCK_LAYERS + attns * ATTN_LAYERS + 2 * (L - 1) + 1;
    if (layers > CD__DEC_MAX_LAYERS)
        return cd__error(CD_ERR_RANGE,
                         "cd_decoder_create: a UNet of %" PRId64 " levels "
                         "(CD_DECODER_OPT_DIM_MULTS) has up to %" PRId64 " layers, more than the "
                         "%d supported",
                         L, layers, CD__DEC_MAX_LAYERS);
    return CD_OK;
}

static cd_status add_down(cd_decoder *d, unet_t *m, int32_t i)
{
    const int64_t mult = d->cfg.convnext_mult, heads = d->cfg.heads, hd = d->cfg.head_dim;
    const int64_t cin = m->dims[i], c = m->dims[i + 1];
    char p[64];
    snprintf(p, sizeof p, "downs.%" PRId32 ".0", i);
    CD__TRY(cd__unet_block_add(d, &m->down[i][0], p, cin, c, mult, m->tdim));
    snprintf(p, sizeof p, "downs.%" PRId32 ".1", i);
    CD__TRY(cd__unet_block_add(d, &m->down[i][1], p, c, c, mult, m->tdim));
    snprintf(p, sizeof p, "downs.%" PRId32 ".2", i);
    CD__TRY(cd__unet_attn_add(d, &m->down_attn[i], p, c, heads, hd));
    m->dconv_w[i] = m->dconv_b[i] = -1;
    if (i == m->L - 1) return CD_OK; /* nn.Identity: no parameters */
    snprintf(p, sizeof p, "downs.%" PRId32 ".3", i);
    return cd__decoder_add_conv(d, p, c, c, 4, 4, true, &m->dconv_w[i], &m->dconv_b[i]);
}

static cd_status add_up(cd_decoder *d, unet_t *m, int32_t j)
{
    const int64_t mult = d->cfg.convnext_mult, heads = d->cfg.heads, hd = d->cfg.head_dim;
    const int64_t cout = m->dims[m->L - j], c = m->dims[m->L - 1 - j];
    char p[64];
    snprintf(p, sizeof p, "ups.%" PRId32 ".0", j);
    CD__TRY(cd__unet_block_add(d, &m->up[j][0], p, 2 * cout, c, mult, m->tdim));
    snprintf(p, sizeof p, "ups.%" PRId32 ".1", j);
    CD__TRY(cd__unet_block_add(d, &m->up[j][1], p, c, c, mult, m->tdim));
    snprintf(p, sizeof p, "ups.%" PRId32 ".2", j);
    CD__TRY(cd__unet_attn_add(d, &m->up_attn[j], p, c, heads, hd));
    snprintf(p, sizeof p, "ups.%" PRId32 ".3", j);
    return cd__decoder_add_convt(d, p, c, c, 4, 4, &m->uconv_w[j], &m->uconv_b[j]);
}

/* Parameters in PyTorch's state_dict order: time_mlp, downs, ups, mid,
 * final_conv (the module lists are assigned before the mid blocks). */
static cd_status unet_build(cd_decoder *d)
{
    const cd__decoder_cfg *cfg = &d->cfg;
    CD__TRY(check_layers(cfg));
    unet_t *m = cd__calloc(1, sizeof *m, "UNet layers");
    if (!m) return cd_last_status();
    d->impl = m;
    m->L = (int32_t)cfg->n_mults;
    m->tdim = cfg->dim;
    m->dims[0] = cfg->channels;
    for (int32_t i = 0; i < m->L; i++) m->dims[i + 1] = cfg->dim * cfg->dim_mults[i];
    const int64_t mult = cfg->convnext_mult, top = m->dims[m->L];
    CD__TRY(cd__decoder_add_linear(d, "time_mlp.1", 4 * m->tdim, m->tdim, &m->t1_w, &m->t1_b));
    CD__TRY(cd__decoder_add_linear(d, "time_mlp.3", m->tdim, 4 * m->tdim, &m->t3_w, &m->t3_b));
    for (int32_t i = 0; i < m->L; i++) CD__TRY(add_down(d, m, i));
    for (int32_t j = 0; j < m->L - 1; j++) CD__TRY(add_up(d, m, j));
    CD__TRY(cd__unet_block_add(d, &m->mid[0], "mid_block1", top, top, mult, m->tdim));
    CD__TRY(cd__unet_attn_add(d, &m->mid_attn, "mid_attn", top, cfg->heads, cfg->head_dim));
    CD__TRY(cd__unet_block_add(d, &m->mid[1], "mid_block2", top, top, mult, m->tdim));
    CD__TRY(cd__unet_block_add(d, &m->fin, "final_conv.0", m->dims[1], m->dims[1], mult, 0));
    CD__TRY(cd__decoder_add_conv(d, "final_conv.1", cfg->channels, m->dims[1], 1, 1, true,
                                 &m->fconv_w, &m->fconv_b));
    return cd__decoder_add_label_embed(d, m->tdim, &d->label_w);
}

static cd_status unet_check_shape(const cd_decoder *d, const char *fn, int64_t H, int64_t W)
{
    const int64_t f = (int64_t)1 << (d->cfg.n_mults - 1);
    if (H % f == 0 && W % f == 0) return CD_OK;
    char bad[64];
    if (H % f != 0 && W % f != 0)
        snprintf(bad, sizeof bad, "H = %" PRId64 " and W = %" PRId64 " are not", H, W);
    else
        snprintf(bad, sizeof bad, "%s = %" PRId64 " is not", H % f != 0 ? "H" : "W",
                 H % f != 0 ? H : W);
    return cd__error(CD_ERR_SHAPE,
                     "%s: the UNet halves H and W %" PRId64 " times, so both must be multiples "
                     "of %" PRId64 " (2^(levels-1)); got %" PRId64 "x%" PRId64 " (%s)",
                     fn, d->cfg.n_mults - 1, f, H, W, bad);
}

static void unet_free(void *impl) { cd__free(impl); }

/* ---- the memory plan --------------------------------------------------------- */

static void take_act(cd__arena *a, act_t *t, size_t n)
{
    t->n = n;
    t->x = cd__arena_take(a, n);
}

/* The arena for one block's internals: the plan's own when training, else
 * the shared region, started afresh. */
static cd__arena *block_arena(unet_t *m, cd__arena *a)
{
    if (m->train) return a;
    m->blk.used = 0;
    return &m->blk;
}

static void block_planned(unet_t *m)
{
    if (!m->train && m->blk.used > m->blk_peak) m->blk_peak = m->blk.used;
}

static void plan_block(unet_t *m, cd__arena *a, cd__unet_block *b, int64_t H, int64_t W)
{
    cd__unet_block_plan(b, block_arena(m, a), &m->s, m->N, H, W);
    block_planned(m);
}

static void plan_attn(unet_t *m, cd__arena *a, cd__unet_attn *t, int64_t H, int64_t W)
{
    cd__unet_attn_plan(t, block_arena(m, a), &m->s, m->N, H, W, m->train);
    block_planned(m);
}

static void plan_down(unet_t *m, cd__arena *a, int32_t i)
{
    const int64_t N = m->N, H = m->H >> i, W = m->W >> i, c = m->dims[i + 1];
    const size_t sz = (size_t)(N * c * H * W);
    plan_block(m, a, &m->down[i][0], H, W);
    plan_block(m, a, &m->down[i][1], H, W);
    plan_attn(m, a, &m->down_attn[i], H, W);
    for (int k = 0; k < 3; k++) take_act(a, down_act(m, i, k), sz);
    if (i == m->L - 1) return;
    (void)cd__conv2d_init(&m->dconv[i], N, c, H, W, c, 4, 4, 2, 1, 1, true);
    cd__unet_need(&m->s, CD__US_WS, cd__conv2d_workspace(&m->dconv[i]));
    take_act(a, down_act(m, i, 3), sz / 4);
}

static void plan_up(unet_t *m, cd__arena *a, int32_t j)
{
    const int32_t lvl = m->L - 1 - j;
    const int64_t N = m->N, H = m->H >> lvl, W = m->W >> lvl;
    const int64_t cout = m->dims[m->L - j], c = m->dims[lvl];
    const size_t sz = (size_t)(N * c * H * W);
    plan_block(m, a, &m->up[j][0], H, W);
    plan_block(m, a, &m->up[j][1], H, W);
    plan_attn(m, a, &m->up_attn[j], H, W);
    (void)cd__convt2d_init(&m->uconv[j], N, c, H, W, c, 4, 4, 2, 1, true);
    cd__unet_need(&m->s, CD__US_WS, cd__convt2d_workspace(&m->uconv[j]));
    take_act(a, up_act(m, j, 0), (size_t)(N * 2 * cout * H * W));
    for (int k = 1; k < 4; k++) take_act(a, up_act(m, j, k), sz);
    take_act(a, up_act(m, j, 4), 4 * sz);
}

static void plan_time(unet_t *m, cd__arena *a)
{
    const size_t n = (size_t)m->N, t = (size_t)m->tdim;
    m->enc = cd__arena_take(a, n * t);
    m->t1 = cd__arena_take(a, n * 4 * t);
    m->t1g = cd__arena_take(a, n * 4 * t);
    m->temb = cd__arena_take(a, n * t);
    m->gtemb = cd__arena_take(a, n * t);
}

/* The activations' gradients in backward's order, skips left out: each is
 * written by one step and read by the next, so two buffers can take turns
 * (the skips' gradients gather from two paths and get their own). Returns
 * the count. */
static int32_t grad_chain(unet_t *m, act_t **chain)
{
    int32_t k = 0;
    chain[k++] = fin_act(m);
    chain[k++] = up_act(m, m->L - 2, 4); /* mid(2) when there is no up path */
    for (int32_t j = m->L - 2; j >= 0; j--) {
        for (int q = 3; q >= 0; q--) chain[k++] = up_act(m, j, q);
        chain[k++] = j > 0 ? up_act(m, j - 1, 4) : mid_act(m, 2);
    }
    chain[k++] = mid_act(m, 1);
    chain[k++] = mid_act(m, 0);
    for (int32_t i = m->L - 1; i >= 0; i--) {
        chain[k++] = down_act(m, i, 1);
        chain[k++] = down_act(m, i, 0);
        if (i > 0) chain[k++] = down_act(m, i - 1, 3);
    }
    return k;
}

static void plan_grads(unet_t *m, cd__arena *a)
{
    const size_t n = (size_t)m->N, t = (size_t)m->tdim, start = a->used;
    /* One range, cleared at once before backward: these gather. */
    m->dgtemb = cd__arena_take(a, n * t);
    m->dtemb = cd__arena_take(a, n * t);
    m->dt1g = cd__arena_take(a, n * 4 * t);
    m->dt1 = cd__arena_take(a, n * 4 * t);
    for (int32_t i = 0; i < m->L; i++)
        down_act(m, i, 2)->dx = cd__arena_take(a, down_act(m, i, 2)->n);
    m->grad_floats = a->used - start;
    m->grads = a->base ? a->base + start : NULL;
    act_t *chain[MAX_ACTS];
    const int32_t k = grad_chain(m, chain);
    size_t widest = 0;
    for (int32_t i = 0; i < k; i++)
        if (chain[i]->n > widest) widest = chain[i]->n;
    float *turn[2] = {cd__arena_take(a, widest), cd__arena_take(a, widest)};
    for (int32_t i = 0; i < k; i++) chain[i]->dx = turn[i % 2];
}

/* Every buffer but the shared region of a forward-only plan. */
static void plan_walk(cd_decoder *d, unet_t *m, cd__arena *a)
{
    const int64_t N = m->N, H = m->H, W = m->W;
    memset(&m->s, 0, sizeof m->s);
    memset(m->act, 0, sizeof m->act);
    m->z = cd__arena_take(a, (size_t)(N * d->cfg.channels * H * W));
    plan_time(m, a);
    for (int32_t i = 0; i < m->L; i++) plan_down(m, a, i);
    const int32_t top = m->L - 1;
    const int64_t Ht = H >> top, Wt = W >> top;
    plan_block(m, a, &m->mid[0], Ht, Wt);
    plan_attn(m, a, &m->mid_attn, Ht, Wt);
    plan_block(m, a, &m->mid[1], Ht, Wt);
    for (int k = 0; k < 3; k++) take_act(a, mid_act(m, k), (size_t)(N * m->dims[m->L] * Ht * Wt));
    for (int32_t j = 0; j < m->L - 1; j++) plan_up(m, a, j);
    plan_block(m, a, &m->fin, H, W);
    take_act(a, fin_act(m), (size_t)(N * m->dims[1] * H * W));
    (void)cd__conv2d_init(&m->fconv, N, m->dims[1], H, W, d->cfg.channels, 1, 1, 1, 0, 1, true);
    cd__unet_need(&m->s, CD__US_WS, cd__conv2d_workspace(&m->fconv));
    if (m->train) {
        plan_grads(m, a);
    } else {
        /* Only the scratch a forward uses. */
        m->dgtemb = m->dtemb = m->dt1g = m->dt1 = m->grads = NULL;
        m->grad_floats = 0;
        m->s.need[CD__US_WIDE] = m->s.need[CD__US_PRE] = 0;
        m->s.need[CD__US_NORM] = m->s.need[CD__US_CTX] = 0;
    }
    for (int r = 0; r < CD__US_COUNT; r++) m->s.buf[r] = cd__arena_take(a, m->s.need[r]);
}

static void unet_plan(cd_decoder *d, cd__arena *a, int64_t N, int64_t H, int64_t W, bool train)
{
    unet_t *m = d->impl;
    m->N = N, m->H = H, m->W = W, m->train = train;
    if (train) {
        plan_walk(d, m, a);
        return;
    }
    /* Size the shared region first, then lay it out ahead of the rest. */
    cd__arena count = {0};
    m->blk = (cd__arena){0};
    m->blk_peak = 0;
    plan_walk(d, m, &count);
    m->blk = (cd__arena){.base = cd__arena_take(a, m->blk_peak)};
    plan_walk(d, m, a);
}

/* ---- forward ----------------------------------------------------------------- */

static void time_forward(cd_decoder *d, unet_t *m, const float *tau)
{
    const int64_t N = m->N, t = m->tdim;
    cd__sinusoidal_embedding(m->enc, tau, N, t);
    cd__linear_forward(m->t1, m->enc, VAL(m->t1_w), VAL(m->t1_b), N, t, 4 * t);
    cd__gelu_forward(m->t1g, m->t1, N * 4 * t);
    cd__linear_forward(m->temb, m->t1g, VAL(m->t3_w), VAL(m->t3_b), N, 4 * t, t);
    cd__decoder_label_forward(d, m->temb, t);
    /* Every timed block starts its mlp with a GELU of temb: do it once. */
    cd__gelu_forward(m->gtemb, m->temb, N * t);
}

/* Returns the level's output (the downsampled tensor, or the skip at the
 * last level). */
static const float *down_forward(cd_decoder *d, unet_t *m, int32_t i, const float *x)
{
    cd__unet_block_forward(d, &m->down[i][0], &m->s, down_act(m, i, 0)->x, x, m->gtemb);
    cd__unet_block_forward(d, &m->down[i][1], &m->s, down_act(m, i, 1)->x, down_act(m, i, 0)->x,
                           m->gtemb);
    const float *skip = down_act(m, i, 2)->x;
    cd__unet_attn_forward(d, &m->down_attn[i], &m->s, down_act(m, i, 2)->x, down_act(m, i, 1)->x);
    if (i == m->L - 1) return skip;
    cd__conv2d_forward(&m->dconv[i], down_act(m, i, 3)->x, skip, VAL(m->dconv_w[i]),
                       VAL(m->dconv_b[i]), m->s.buf[CD__US_WS]);
    return down_act(m, i, 3)->x;
}

static const float *mid_forward(cd_decoder *d, unet_t *m, const float *x)
{
    cd__unet_block_forward(d, &m->mid[0], &m->s, mid_act(m, 0)->x, x, m->gtemb);
    cd__unet_attn_forward(d, &m->mid_attn, &m->s, mid_act(m, 1)->x, mid_act(m, 0)->x);
    cd__unet_block_forward(d, &m->mid[1], &m->s, mid_act(m, 2)->x, mid_act(m, 1)->x, m->gtemb);
    return mid_act(m, 2)->x;
}

static const float *up_forward(cd_decoder *d, unet_t *m, int32_t j, const float *x)
{
    const int32_t lvl = m->L - 1 - j;
    const int64_t c = m->dims[lvl + 1], HW = (m->H >> lvl) * (m->W >> lvl);
    cd__concat_forward(up_act(m, j, 0)->x, x, down_act(m, lvl, 2)->x, m->N, c, c, HW);
    cd__unet_block_forward(d, &m->up[j][0], &m->s, up_act(m, j, 1)->x, up_act(m, j, 0)->x,
                           m->gtemb);
    cd__unet_block_forward(d, &m->up[j][1], &m->s, up_act(m, j, 2)->x, up_act(m, j, 1)->x,
                           m->gtemb);
    cd__unet_attn_forward(d, &m->up_attn[j], &m->s, up_act(m, j, 3)->x, up_act(m, j, 2)->x);
    cd__convt2d_forward(&m->uconv[j], up_act(m, j, 4)->x, up_act(m, j, 3)->x, VAL(m->uconv_w[j]),
                        VAL(m->uconv_b[j]), m->s.buf[CD__US_WS]);
    return up_act(m, j, 4)->x;
}

static void unet_forward(cd_decoder *d, float *out, const float *z, const float *tau)
{
    unet_t *m = d->impl;
    time_forward(d, m, tau);
    /* Keep z: the first block's weight gradients need it, and the caller
     * may reuse its tensor before calling backward. */
    memcpy(m->z, z, (size_t)(m->N * d->cfg.channels * m->H * m->W) * sizeof *z);
    const float *x = m->z;
    for (int32_t i = 0; i < m->L; i++) x = down_forward(d, m, i, x);
    x = mid_forward(d, m, x);
    for (int32_t j = 0; j < m->L - 1; j++) x = up_forward(d, m, j, x);
    cd__unet_block_forward(d, &m->fin, &m->s, fin_act(m)->x, x, m->gtemb);
    cd__conv2d_forward(&m->fconv, out, fin_act(m)->x, VAL(m->fconv_w), VAL(m->fconv_b),
                       m->s.buf[CD__US_WS]);
}

/* ---- backward ---------------------------------------------------------------- */

/* An activation's gradient buffer, cleared for a step that adds into it
 * (its turn buffer held another gradient before). */
static float *fresh(act_t *a)
{
    memset(a->dx, 0, a->n * sizeof *a->dx);
    return a->dx;
}

static void time_backward(cd_decoder *d, unet_t *m)
{
    const int64_t N = m->N, t = m->tdim;
    cd__gelu_backward(m->dtemb, m->dgtemb, m->temb, N * t);
    cd__decoder_label_backward(d, m->dtemb, t);
    cd__linear_backward(m->dt1g, GRAD(m->t3_w), GRAD(m->t3_b), m->dtemb, m->t1g, VAL(m->t3_w), N,
                        4 * t, t);
    cd__gelu_backward(m->dt1, m->dt1g, m->t1, N * 4 * t);
    cd__linear_backward(NULL, GRAD(m->t1_w), GRAD(m->t1_b), m->dt1, m->enc, VAL(m->t1_w), N, t,
                        4 * t);
}

static void up_backward(cd_decoder *d, unet_t *m, int32_t j)
{
    const int32_t lvl = m->L - 1 - j;
    const int64_t c = m->dims[lvl + 1], HW = (m->H >> lvl) * (m->W >> lvl);
    act_t *cat = up_act(m, j, 0), *b0 = up_act(m, j, 1), *b1 = up_act(m, j, 2);
    act_t *at = up_act(m, j, 3), *prev = j == 0 ? mid_act(m, 2) : up_act(m, j - 1, 4);
    cd__convt2d_backward(&m->uconv[j], fresh(at), GRAD(m->uconv_w[j]), GRAD(m->uconv_b[j]),
                         up_act(m, j, 4)->dx, at->x, VAL(m->uconv_w[j]), m->s.buf[CD__US_WS]);
    cd__unet_attn_backward(d, &m->up_attn[j], &m->s, fresh(b1), at->dx, b1->x);
    cd__unet_block_backward(d, &m->up[j][1], &m->s, fresh(b0), m->dgtemb, b1->dx, b0->x, m->gtemb);
    cd__unet_block_backward(d, &m->up[j][0], &m->s, fresh(cat), m->dgtemb, b0->dx, cat->x,
                            m->gtemb);
    cd__concat_backward(fresh(prev), down_act(m, lvl, 2)->dx, cat->dx, m->N, c, c, HW);
}

static void mid_backward(cd_decoder *d, unet_t *m)
{
    act_t *b1 = mid_act(m, 0), *at = mid_act(m, 1), *in = down_act(m, m->L - 1, 2);
    cd__unet_block_backward(d, &m->mid[1], &m->s, fresh(at), m->dgtemb, mid_act(m, 2)->dx, at->x,
                            m->gtemb);
    cd__unet_attn_backward(d, &m->mid_attn, &m->s, fresh(b1), at->dx, b1->x);
    cd__unet_block_backward(d, &m->mid[0], &m->s, in->dx, m->dgtemb, b1->dx, in->x, m->gtemb);
}

/* dz may be NULL. The skip's gradient already holds the up path's share. */
static void down_backward(cd_decoder *d, unet_t *m, int32_t i, float *dz)
{
    act_t *b0 = down_act(m, i, 0), *b1 = down_act(m, i, 1), *skip = down_act(m, i, 2);
    if (i < m->L - 1)
        cd__conv2d_backward(&m->dconv[i], skip->dx, GRAD(m->dconv_w[i]), GRAD(m->dconv_b[i]),
                            down_act(m, i, 3)->dx, skip->x, VAL(m->dconv_w[i]),
                            m->s.buf[CD__US_WS]);
    cd__unet_attn_backward(d, &m->down_attn[i], &m->s, fresh(b1), skip->dx, b1->x);
    cd__unet_block_backward(d, &m->down[i][1], &m->s, fresh(b0), m->dgtemb, b1->dx, b0->x,
                            m->gtemb);
    float *dx = i == 0 ? dz : fresh(down_act(m, i - 1, 3));
    const float *x = i == 0 ? m->z : down_act(m, i - 1, 3)->x;
    cd__unet_block_backward(d, &m->down[i][0], &m->s, dx, m->dgtemb, b0->dx, x, m->gtemb);
}

static void unet_backward(cd_decoder *d, float *dz, const float *dout)
{
    unet_t *m = d->impl;
    memset(m->grads, 0, m->grad_floats * sizeof *m->grads);
    act_t *fin = fin_act(m), *in = up_act(m, m->L - 2, 4);
    cd__conv2d_backward(&m->fconv, fresh(fin), GRAD(m->fconv_w), GRAD(m->fconv_b), dout, fin->x,
                        VAL(m->fconv_w), m->s.buf[CD__US_WS]);
    cd__unet_block_backward(d, &m->fin, &m->s, fresh(in), NULL, fin->dx, in->x, NULL);
    cd__decoder_stage_done(d);
    for (int32_t j = m->L - 2; j >= 0; j--) {
        up_backward(d, m, j);
        cd__decoder_stage_done(d);
    }
    mid_backward(d, m);
    cd__decoder_stage_done(d);
    for (int32_t i = m->L - 1; i >= 0; i--) {
        down_backward(d, m, i, dz);
        cd__decoder_stage_done(d);
    }
    time_backward(d, m);
}

const cd__decoder_ops cd__unet_ops = {unet_build,   unet_check_shape, unet_plan,
                                      unet_forward, unet_backward,    unet_free};

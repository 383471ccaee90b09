/*
 * unet_blocks.c - the UNet's ConvNeXt block and linear attention, forward
 * and backward (docs/models.md, Decoders: UNet; see unet.h for the
 * memory rules).
 *
 * Attention works per sample on the to_qkv output as it lies: for sample b
 * the q, k and v blocks are each heads x dh x HW, and head h's dh x HW
 * matrix is contiguous (channel = dh h + d), so every product is a plain
 * row-major sgemm on the conv output with no layout copy. One task per
 * sample runs all its heads, so the bits do not depend on the thread count.
 */
#include "unet.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define LN_EPS 1e-5f
/* Elements per task of the elementwise add. */
#define ADD_CHUNK 16384

#define VAL(i) cd__decoder_value(d, (i))
#define GRAD(i) cd__decoder_grad(d, (i))

void cd__unet_need(cd__unet_scratch *s, int role, size_t n)
{
    if (n > s->need[role]) s->need[role] = n;
}

typedef struct {
    float *y;
    const float *x;
    int64_t n;
} add_ctx;

static void add_task(void *ctx, int64_t t)
{
    const add_ctx *c = ctx;
    const int64_t end = (t + 1) * ADD_CHUNK < c->n ? (t + 1) * ADD_CHUNK : c->n;
    cd__add_into(c->y + t * ADD_CHUNK, c->x + t * ADD_CHUNK, end - t * ADD_CHUNK);
}

void cd__unet_add(float *y, const float *x, int64_t n)
{
    add_ctx c = {y, x, n};
    cd__parallel_for((n + ADD_CHUNK - 1) / ADD_CHUNK, add_task, &c);
}

static void zero(float *p, int64_t n) { memset(p, 0, (size_t)n * sizeof *p); }

static cd_status join(char *buf, size_t cap, const char *prefix, const char *suffix)
{
    int n = snprintf(buf, cap, "%s.%s", prefix, suffix);
    if (n < 0 || (size_t)n >= cap)
        return cd__error(CD_ERR_INTERNAL, "parameter prefix '%s.%s' is too long", prefix, suffix);
    return CD_OK;
}

static size_t conv_ws(const cd__conv2d *c) { return cd__conv2d_workspace(c); }

/* ---- ConvNeXt block -------------------------------------------------------- */

cd_status cd__unet_block_add(cd_decoder *d, cd__unet_block *b, const char *prefix, int64_t cin,
                             int64_t cout, int64_t mult, int64_t tdim)
{
    char name[CD_PARAMS_MAX_NAME + 1];
    *b = (cd__unet_block){.cin = cin,
                          .cout = cout,
                          .hid = mult * cout,
                          .tdim = tdim,
                          .mlp_w = -1,
                          .mlp_b = -1,
                          .res_w = -1,
                          .res_b = -1};
    if (tdim > 0) {
        CD__TRY(join(name, sizeof name, prefix, "mlp.1"));
        CD__TRY(cd__decoder_add_linear(d, name, cin, tdim, &b->mlp_w, &b->mlp_b));
    }
    CD__TRY(join(name, sizeof name, prefix, "ds_conv"));
    CD__TRY(cd__decoder_add_conv(d, name, cin, 1, 7, 7, true, &b->ds_w, &b->ds_b));
    CD__TRY(join(name, sizeof name, prefix, "net.0"));
    CD__TRY(cd__decoder_add_conv(d, name, b->hid, cin, 3, 3, true, &b->c1_w, &b->c1_b));
    CD__TRY(join(name, sizeof name, prefix, "net.2"));
    CD__TRY(cd__decoder_add_conv(d, name, cout, b->hid, 3, 3, true, &b->c2_w, &b->c2_b));
    if (cin != cout) {
        CD__TRY(join(name, sizeof name, prefix, "res_conv"));
        CD__TRY(cd__decoder_add_conv(d, name, cout, cin, 1, 1, true, &b->res_w, &b->res_b));
    }
    return CD_OK;
}

void cd__unet_block_plan(cd__unet_block *b, cd__arena *a, cd__unet_scratch *s, int64_t N, int64_t H,
                         int64_t W)
{
    const size_t n = (size_t)N, hw = (size_t)(H * W);
    const size_t cin = (size_t)b->cin, cout = (size_t)b->cout, hid = (size_t)b->hid;
    b->N = N;
    b->HW = H * W;
    /* Shapes were validated by check_shape; these cannot fail. */
    (void)cd__conv2d_init(&b->ds, N, b->cin, H, W, b->cin, 7, 7, 1, 3, b->cin, true);
    (void)cd__conv2d_init(&b->c1, N, b->cin, H, W, b->hid, 3, 3, 1, 1, 1, true);
    (void)cd__conv2d_init(&b->c2, N, b->hid, H, W, b->cout, 3, 3, 1, 1, 1, true);
    cd__unet_need(s, CD__US_WS, conv_ws(&b->ds));
    cd__unet_need(s, CD__US_WS, conv_ws(&b->c1));
    cd__unet_need(s, CD__US_WS, conv_ws(&b->c2));
    if (b->res_w >= 0) {
        (void)cd__conv2d_init(&b->res, N, b->cin, H, W, b->cout, 1, 1, 1, 0, 1, true);
        cd__unet_need(s, CD__US_WS, conv_ws(&b->res));
    }
    b->h = cd__arena_take(a, n * cin * hw);
    b->n = cd__arena_take(a, n * cin * hw);
    b->a = cd__arena_take(a, n * hid * hw);
    cd__unet_need(s, CD__US_GELU, n * hid * hw);
    b->mean = cd__arena_take(a, n);
    b->rstd = cd__arena_take(a, n);
    cd__unet_need(s, CD__US_WIDE, n * hid * hw);
    cd__unet_need(s, CD__US_NORM, n * cin * hw);
    cd__unet_need(s, CD__US_IN, n * (cin > cout ? cin : cout) * hw);
    cd__unet_need(s, CD__US_COND, n * cin);
}

void cd__unet_block_forward(cd_decoder *d, const cd__unet_block *b, cd__unet_scratch *s, float *y,
                            const float *x, const float *gtemb)
{
    const int64_t N = b->N, HW = b->HW, cin = b->cin, cout = b->cout;
    float *ws = s->buf[CD__US_WS];
    cd__conv2d_forward(&b->ds, b->h, x, VAL(b->ds_w), VAL(b->ds_b), ws);
    if (b->tdim > 0) {
        float *cond = s->buf[CD__US_COND];
        cd__linear_forward(cond, gtemb, VAL(b->mlp_w), VAL(b->mlp_b), N, b->tdim, cin);
        cd__add_channel_forward(b->h, b->h, cond, N, cin, HW);
    }
    cd__layernorm_forward(b->n, b->mean, b->rstd, b->h, NULL, NULL, N, cin * HW, LN_EPS);
    /* GELU and the residual add run per image straight after that image's
     * convolution, while its output is still in cache. */
    float *g = s->buf[CD__US_GELU];
    cd__image_args gelu = {g, b->a, b->hid * HW};
    cd__decoder_conv_forward(d, &b->c1, b->c1_w, VAL(b->c1_b), b->a, b->n, ws, cd__gelu_image_task,
                             &gelu);
    cd__image_args res = {y, x, cout * HW};
    if (b->res_w >= 0) {
        float *r = s->buf[CD__US_IN];
        cd__conv2d_forward(&b->res, r, x, VAL(b->res_w), VAL(b->res_b), ws);
        res.in = r;
    }
    cd__decoder_conv_forward(d, &b->c2, b->c2_w, VAL(b->c2_b), y, g, ws, cd__add_image_task, &res);
}

void cd__unet_block_backward(cd_decoder *d, const cd__unet_block *b, cd__unet_scratch *s, float *dx,
                             float *dgtemb, const float *dy, const float *x, const float *gtemb)
{
    const int64_t N = b->N, HW = b->HW, cin = b->cin;
    const int64_t nc = N * cin * HW;
    float *dg = s->buf[CD__US_WIDE];
    float *dn = s->buf[CD__US_NORM], *dh = s->buf[CD__US_IN], *ws = s->buf[CD__US_WS];
    /* GELU(a) again, image by image as the forward made it (the same
     * bits), and GELU'(a) over a, which nothing reads after this. */
    float *g = s->buf[CD__US_GELU];
    cd__gelu_pair_args pair = {g, b->a, b->hid * HW};
    cd__parallel_for(N, cd__gelu_pair_image_task, &pair);
    /* The gradients through conv2, GELU and conv1 overwrite their buffers:
     * no clearing passes. Each image of dg turns from dL/dg into dL/da
     * while it is still in cache. */
    cd__image_args mul = {dg, b->a, b->hid * HW};
    cd__conv2d_backward_set_epi(&b->c2, dg, GRAD(b->c2_w), GRAD(b->c2_b), dy, g, VAL(b->c2_w), ws,
                                cd__mul_image_task, &mul);
    cd__conv2d_backward_set(&b->c1, dn, GRAD(b->c1_w), GRAD(b->c1_b), dg, b->n, VAL(b->c1_w), ws);
    zero(dh, nc);
    cd__layernorm_backward(dh, NULL, NULL, dn, b->h, NULL, b->mean, b->rstd, N, cin * HW);
    if (b->tdim > 0) {
        float *dcond = s->buf[CD__US_COND];
        zero(dcond, N * cin);
        cd__add_channel_backward(NULL, dcond, dh, N, cin, HW);
        cd__linear_backward(dgtemb, GRAD(b->mlp_w), GRAD(b->mlp_b), dcond, gtemb, VAL(b->mlp_w), N,
                            b->tdim, cin);
    }
    cd__conv2d_backward(&b->ds, dx, GRAD(b->ds_w), GRAD(b->ds_b), dh, x, VAL(b->ds_w), ws);
    if (b->res_w >= 0)
        cd__conv2d_backward(&b->res, dx, GRAD(b->res_w), GRAD(b->res_b), dy, x, VAL(b->res_w), ws);
    else if (dx)
        cd__unet_add(dx, dy, N * b->cout * HW);
}

/* ---- linear attention ------------------------------------------------------ */

cd_status cd__unet_attn_add(cd_decoder *d, cd__unet_attn *t, const char *prefix, int64_t C,
                            int64_t heads, int64_t dh)
{
    char name[CD_PARAMS_MAX_NAME + 1];
    int64_t no_bias;
    *t = (cd__unet_attn){.C = C, .heads = heads, .dh = dh};
    CD__TRY(join(name, sizeof name, prefix, "fn.fn.to_qkv"));
    CD__TRY(cd__decoder_add_conv(d, name, 3 * heads * dh, C, 1, 1, false, &t->qkv_w, &no_bias));
    CD__TRY(join(name, sizeof name, prefix, "fn.fn.to_out"));
    return cd__decoder_add_conv(d, name, C, heads * dh, 1, 1, true, &t->out_w, &t->out_b);
}

/* Floats of q, k and v per forward-only pass: 4 MiB, and at least two
 * images, one per thread. */
#define ATTN_PASS_FLOATS ((int64_t)1 << 20)

void cd__unet_attn_plan(cd__unet_attn *t, cd__arena *a, cd__unet_scratch *s, int64_t N, int64_t H,
                        int64_t W, bool train)
{
    const size_t hw = (size_t)(H * W), hid = (size_t)(t->heads * t->dh);
    t->N = N;
    t->HW = H * W;
    const int64_t per_image = 3 * (int64_t)(hid * hw);
    const int64_t pass = ATTN_PASS_FLOATS / per_image > 2 ? ATTN_PASS_FLOATS / per_image : 2;
    t->chunk = train || pass > N ? N : pass;
    const size_t n = (size_t)t->chunk; /* images per pass */
    (void)cd__conv2d_init(&t->qkv, N, t->C, H, W, 3 * t->heads * t->dh, 1, 1, 1, 0, 1, false);
    (void)cd__conv2d_init(&t->out, N, t->heads * t->dh, H, W, t->C, 1, 1, 1, 0, 1, true);
    cd__unet_need(s, CD__US_WS, conv_ws(&t->qkv));
    cd__unet_need(s, CD__US_WS, conv_ws(&t->out));
    t->n = cd__arena_take(a, (size_t)N * (size_t)t->C * hw);
    t->mean = cd__arena_take(a, (size_t)N);
    t->rstd = cd__arena_take(a, (size_t)N);
    t->qkv_buf = cd__arena_take(a, n * 3 * hid * hw);
    t->ctx = cd__arena_take(a, n * (size_t)(t->heads * t->dh * t->dh));
    t->o = cd__arena_take(a, n * hid * hw);
    /* Backward's scratch: only a training plan keeps it, for all N. */
    const size_t nb = (size_t)N;
    cd__unet_need(s, CD__US_WIDE, nb * (size_t)(t->dh) * hw);
    cd__unet_need(s, CD__US_PRE, nb * hid * hw);
    cd__unet_need(s, CD__US_NORM, nb * (size_t)t->C * hw);
    cd__unet_need(s, CD__US_CTX, nb * (size_t)(t->heads * t->dh * t->dh));
}

/* PyTorch multiplies q by the Python float dh ** -0.5, cast to float. */
static float attn_scale(int64_t dh) { return (float)pow((double)dh, -0.5); }

typedef struct {
    const cd__unet_attn *t;
    const float *dO;
    float *dks, *dctx;
} attn_ctx;

/* C = K V^T, out = C^T Q, with q scaled and k softmaxed in place first. */
static void attn_fwd_task(void *ctx, int64_t b)
{
    const cd__unet_attn *t = ((const attn_ctx *)ctx)->t;
    const int64_t dh = t->dh, HW = t->HW, hid = t->heads * dh, blk = dh * HW;
    float *q = t->qkv_buf + b * 3 * hid * HW, *k = q + hid * HW, *v = k + hid * HW;
    const float scale = attn_scale(dh);
    for (int64_t i = 0; i < hid * HW; i++) q[i] *= scale;
    for (int64_t r = 0; r < hid; r++) cd__softmax_row(k + r * HW, k + r * HW, HW);
    for (int64_t h = 0; h < t->heads; h++) {
        float *c = t->ctx + (b * t->heads + h) * dh * dh;
        float *o = t->o + b * hid * HW + h * blk;
        cd__gemm_nt(dh, dh, HW, 1.0f, k + h * blk, HW, v + h * blk, HW, c, dh);
        cd__gemm_xn(true, dh, HW, dh, 1.0f, c, dh, q + h * blk, HW, o, HW);
    }
}

/*
 * With O = C^T Qs and C = Ks V^T:  dC = Qs dO^T,  dQs = C dO,
 * dKs = dC V,  dV = dC^T Ks;  then dq = scale dQs and dk = softmax'(dKs).
 * The gradients overwrite q, k and v in place, each once its value is no
 * longer read, so training keeps no second 3 x heads x dh x HW buffer per
 * sample: only dKs needs a place of its own (dks, dh x HW), as dV still
 * reads Ks.
 */
static void attn_bwd_task(void *ctx, int64_t b)
{
    const attn_ctx *a = ctx;
    const cd__unet_attn *t = a->t;
    const int64_t dh = t->dh, HW = t->HW, hid = t->heads * dh, blk = dh * HW;
    float *q = t->qkv_buf + b * 3 * hid * HW, *k = q + hid * HW, *v = k + hid * HW;
    float *dks = a->dks + b * blk;
    for (int64_t h = 0; h < t->heads; h++) {
        const float *c = t->ctx + (b * t->heads + h) * dh * dh;
        const float *go = a->dO + b * hid * HW + h * blk;
        float *dc = a->dctx + (b * t->heads + h) * dh * dh;
        float *qh = q + h * blk, *kh = k + h * blk, *vh = v + h * blk;
        cd__gemm_nt(dh, dh, HW, 1.0f, qh, HW, go, HW, dc, dh);
        cd__gemm_xn(false, dh, HW, dh, attn_scale(dh), c, dh, go, HW, qh, HW);
        cd__gemm_xn(false, dh, HW, dh, 1.0f, dc, dh, vh, HW, dks, HW);
        cd__gemm_xn(true, dh, HW, dh, 1.0f, dc, dh, kh, HW, vh, HW);
        for (int64_t r = 0; r < dh; r++)
            cd__softmax_row_backward(kh + r * HW, dks + r * HW, kh + r * HW, HW, false);
    }
}

void cd__unet_attn_forward(cd_decoder *d, const cd__unet_attn *t, cd__unet_scratch *s, float *y,
                           const float *x)
{
    const int64_t N = t->N, HW = t->HW;
    float *ws = s->buf[CD__US_WS];
    cd__layernorm_forward(t->n, t->mean, t->rstd, x, NULL, NULL, N, t->C * HW, LN_EPS);
    /* Each sample's attention runs straight after its qkv projection, while
     * the 3 x 128 x HW floats are still in cache. Every image is computed
     * alone, so passes of any size give the same bits. */
    const int64_t img = t->C * HW;
    for (int64_t n0 = 0; n0 < N; n0 += t->chunk) {
        cd__conv2d qkv = t->qkv, out = t->out;
        qkv.N = out.N = N - n0 < t->chunk ? N - n0 : t->chunk;
        attn_ctx c = {.t = t};
        cd__conv2d_forward_epi(&qkv, t->qkv_buf, t->n + n0 * img, VAL(t->qkv_w), NULL, ws,
                               attn_fwd_task, &c);
        cd__image_args res = {y + n0 * img, x + n0 * img, img};
        cd__conv2d_forward_epi(&out, y + n0 * img, t->o, VAL(t->out_w), VAL(t->out_b), ws,
                               cd__add_image_task, &res);
    }
}

void cd__unet_attn_backward(cd_decoder *d, const cd__unet_attn *t, cd__unet_scratch *s, float *dx,
                            const float *dy, const float *x)
{
    const int64_t N = t->N, HW = t->HW;
    float *ws = s->buf[CD__US_WS], *dO = s->buf[CD__US_PRE], *dn = s->buf[CD__US_NORM];
    cd__conv2d_backward_set(&t->out, dO, GRAD(t->out_w), GRAD(t->out_b), dy, t->o, VAL(t->out_w),
                            ws);
    attn_ctx c = {.t = t, .dO = dO, .dks = s->buf[CD__US_WIDE], .dctx = s->buf[CD__US_CTX]};
    cd__parallel_for(N, attn_bwd_task, &c);
    /* qkv_buf now holds dL/d(qkv). */
    cd__conv2d_backward_set(&t->qkv, dn, GRAD(t->qkv_w), NULL, t->qkv_buf, t->n, VAL(t->qkv_w), ws);
    if (!dx) return;
    cd__layernorm_backward(dx, NULL, NULL, dn, x, NULL, t->mean, t->rstd, N, t->C * HW);
    cd__unet_add(dx, dy, N * t->C * HW);
}

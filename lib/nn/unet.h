/*
 * unet.h - the UNet's building blocks (unet_blocks.c), shared with the
 * network that wires them together (unet.c); docs/models.md, Decoders:
 * UNet.
 *
 * Each block saves what its backward needs in the arena during plan().
 * Gradient temporaries are not saved: blocks run backward one at a time, so
 * they share a few scratch areas, each sized for its largest user. A block's
 * plan() raises those sizes (cd__unet_scratch.need); the UNet takes the
 * areas once all blocks are planned.
 */
#ifndef CD_NN_UNET_H
#define CD_NN_UNET_H

#include "decoder.h"

/* The shared scratch areas, by role. */
enum {
    CD__US_WIDE, /* ConvNeXt: dL/d(GELU out), then in place dL/d(conv1 out);
                    attention: dL/d(softmaxed k), one head per sample */
    CD__US_PRE,  /* attention: dL/d(heads out) */
    CD__US_NORM, /* dL/d(layer-norm output) */
    CD__US_IN,   /* ConvNeXt: dL/d(depthwise out), or the residual (forward) */
    CD__US_COND, /* ConvNeXt: the time projection N x C_in, or its gradient */
    CD__US_CTX,  /* attention: dL/d(context), one per sample and head */
    CD__US_WS,   /* convolution workspace */
    CD__US_GELU, /* ConvNeXt: GELU(conv1 out), conv2's input; backward
                    recomputes it from the saved conv1 output rather than
                    keep one per block */
    CD__US_COUNT
};

typedef struct cd__unet_scratch {
    size_t need[CD__US_COUNT]; /* floats */
    float *buf[CD__US_COUNT];
} cd__unet_scratch;

/* ConvNeXt block dim_in -> dim_out with hidden width mult * dim_out. */
typedef struct cd__unet_block {
    int64_t cin, cout, hid, tdim; /* tdim 0: no time input */
    int64_t mlp_w, mlp_b, ds_w, ds_b, c1_w, c1_b, c2_w, c2_b, res_w, res_b; /* -1: absent */
    /* The plan. */
    int64_t N, HW;
    cd__conv2d ds, c1, c2, res;
    float *h; /* depthwise conv (+ time), the layer norm's input */
    float *n; /* layer-normed h, conv1's input */
    float *a; /* conv1 output (its GELU lives in CD__US_GELU); backward turns
                 it into GELU'(conv1 output) */
    float *mean, *rstd;
} cd__unet_block;

/* Residual(PreNorm(LinearAttention)): y = x + to_out(attn(LN(x))). */
typedef struct cd__unet_attn {
    int64_t C, heads, dh;
    int64_t qkv_w, out_w, out_b;
    /* The plan. The forward runs in passes of `chunk` images: all N when
     * training, which keeps every pass's buffers for backward; a few when
     * forward-only, so that one pass's q, k, v and output stay in cache
     * between the products instead of a batch's going through memory. */
    int64_t N, HW, chunk;
    cd__conv2d qkv, out;
    float *n, *mean, *rstd;
    float *qkv_buf; /* per image of a pass: q scaled, softmax(k), v; each
                       heads x dh x HW; backward overwrites it with dL/d(qkv) */
    float *ctx;     /* chunk x heads x dh x dh */
    float *o;       /* chunk x (heads dh) x HW, to_out's input */
} cd__unet_attn;

/* Register "<prefix>.mlp.1" (if tdim > 0), ".ds_conv", ".net.0", ".net.2"
 * and ".res_conv" (if cin != cout). */
cd_status cd__unet_block_add(cd_decoder *d, cd__unet_block *b, const char *prefix, int64_t cin,
                             int64_t cout, int64_t mult, int64_t tdim);
void cd__unet_block_plan(cd__unet_block *b, cd__arena *a, cd__unet_scratch *s, int64_t N, int64_t H,
                         int64_t W);
/* y = block(x, gtemb), where gtemb = GELU(temb) is N x tdim. */
void cd__unet_block_forward(cd_decoder *d, const cd__unet_block *b, cd__unet_scratch *s, float *y,
                            const float *x, const float *gtemb);
/* Adds dL/dx (dx may be NULL), dL/d(gtemb) and the parameter gradients. */
void cd__unet_block_backward(cd_decoder *d, const cd__unet_block *b, cd__unet_scratch *s, float *dx,
                             float *dgtemb, const float *dy, const float *x, const float *gtemb);

/* Register "<prefix>.fn.fn.to_qkv" and "<prefix>.fn.fn.to_out". */
cd_status cd__unet_attn_add(cd_decoder *d, cd__unet_attn *t, const char *prefix, int64_t C,
                            int64_t heads, int64_t dh);
/* train: keep what backward needs (else forward-only, in passes). */
void cd__unet_attn_plan(cd__unet_attn *t, cd__arena *a, cd__unet_scratch *s, int64_t N, int64_t H,
                        int64_t W, bool train);
void cd__unet_attn_forward(cd_decoder *d, const cd__unet_attn *t, cd__unet_scratch *s, float *y,
                           const float *x);
/* Adds dL/dx and the parameter gradients. */
void cd__unet_attn_backward(cd_decoder *d, const cd__unet_attn *t, cd__unet_scratch *s, float *dx,
                            const float *dy, const float *x);

/* Raise a scratch size; y[i] += x[i] on the pool. */
void cd__unet_need(cd__unet_scratch *s, int role, size_t n);
void cd__unet_add(float *y, const float *x, int64_t n);

#endif /* CD_NN_UNET_H */

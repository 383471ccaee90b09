/*
 * conv2d_pointwise.c - 1x1, stride-1, unpadded, ungrouped convolutions on
 * AVX-512 CPUs: the UNet attention's qkv and output projections and the
 * residual 1x1 layers. Such a layer is a matrix product per image, and
 * the dense path's frames and wide positions buy it nothing.
 *
 * Forward, per image (NCHW, weight [C_out][C_in], p a pixel):
 *     out[co][p] = b[co] + sum_ci w[co][ci] in[ci][p].
 * The weights are packed once per call into blocks of PW_MR output
 * channels, [block][ci][PW_MR], so a micro-kernel broadcasts PW_MR
 * consecutive floats per ci against two vectors of 16 pixels of the image
 * (read in place, or, with few output channels, from blocks copied to the
 * stack, which fetch the input from memory faster): PW_MR x 2
 * accumulators, one FMA chain per output, in ci order, started from the
 * bias. Pixel counts that are no multiple of 32
 * (49, 196) end in a micro-tile with a masked last vector; masked loads do
 * not touch memory past the mask, so no tensor is read or written past
 * its end.
 *
 * The input gradient is the same product with the transposed weights
 * (din[ci][p] = sum_co w[co][ci] dout[co][p]), packed the same way, and
 * either overwrites din or adds into it (each chain then starts from din's
 * value rather than from zero: no second buffer, one rounding fewer).
 *
 * The weight gradient dW[co][ci] = sum_n sum_p dout[n][co][p] in[n][ci][p]
 * has a long sum (N x HW) along which both operands are contiguous. Per
 * batch tile of images, the operand with fewer channels is packed,
 * transposed to [block of up to PW_DC channels][k][block] with the tile's
 * pixels end to end (16 x 16 transposes); a micro-kernel broadcasts rows of
 * the other operand, read in place, against three vectors of the packed
 * one. Its accumulators go to a float buffer between chunks of the sum and
 * come back from it, which is exact: every weight's gradient is one FMA
 * chain over all N x HW products in (image, pixel) order, added once into
 * dweight at the end. Tasks own blocks of the buffer within a tile and
 * tiles run in order, so the bits depend neither on the thread count nor
 * on the task split. Packing tile t + 1 and the input gradient of tile t's
 * images (whose output gradient the products just read) share one
 * cd__parallel_for with the products of tile t, so a tile costs one
 * wake-up of the workers and the output gradient is read from memory
 * about once for both gradients.
 *
 * Rounding: C_in roundings per output on the forward, C_out on the input
 * gradient, N x HW + 1 per weight on the weight gradient; check_conv.c
 * derives the bounds and tests them.
 */
#include "conv2d_internal.h"

#include <string.h>

#ifdef CD__CONV_X86

/* Output rows per forward micro-tile (x 2 vectors of pixels: 24
 * accumulators, with room for the two pixel vectors and a broadcast). */
#define PW_MR 12
#define PW_NP 32
/* A staged block of B: PW_KB rows x PW_PB pixels, 32 KiB, like the
 * depthwise kernels' stack buffers. */
#define PW_KB 128
#define PW_PB 64
/* Weight gradient: up to PW_DC channels (three vectors) of the packed
 * operand per block, and PW_DR rows of the other (broadcast) per
 * micro-tile, 24 accumulators; blocks of up to two vectors take PW_DR2
 * rows instead, for 24 accumulators again. */
#define PW_DR 8
#define PW_DR2 12
#define PW_DC 48
/* Pixels per chunk of the weight gradient's sum: a chunk of the packed
 * operand (PW_KC x PW_DC floats, 24 KiB) stays in L1 across a task's
 * rows. */
#define PW_KC 128
/* A weight-gradient batch tile is one round of tasks: it aims at about
 * PW_ROUND_FMAS multiply-adds (2 per pixel and channel pair: both
 * gradients), so a wake-up of the workers costs a few per cent at most,
 * and at least PW_KT pixels; its pack stays within PW_PACK floats. */
#define PW_ROUND_FMAS ((int64_t)1 << 25)
#define PW_KT 2048
#define PW_PACK ((int64_t)1 << 19)
/* Tasks to aim for: with fewer images than this the forward also splits
 * the output channels, the weight gradient its blocks. */
#define PW_TASKS 8

static int64_t pw_blocks(int64_t M) { return cd__ceil_div(M, PW_MR); }

/* The weight gradient's operands: the one with fewer channels is packed
 * (transposed, vectors along its channels), the other broadcast from its
 * planes in place, so the packing costs the smaller of the two. */
typedef struct {
    bool swap;         /* dout packed, in broadcast: D holds dW transposed */
    int64_t Cv, Ca;    /* channels of the packed and the broadcast operand */
    int64_t dc;        /* channels per packed block (a multiple of 16, at most PW_DC) */
    int64_t dr;        /* broadcast rows per micro-tile */
    int64_t NB, KT;    /* images and pixels per tile */
    int64_t ncb, nrb;  /* blocks of dc packed channels, of dr broadcast rows */
    int64_t ldd;       /* floats per row of the accumulators D[Ca][ldd] */
    int64_t acc, pack; /* floats of the accumulators and of one tile's pack */
} pw_grad_plan;

static pw_grad_plan pw_grad_planner(const cd__conv2d *c)
{
    pw_grad_plan g;
    g.swap = c->C_out < c->C_in;
    g.Cv = g.swap ? c->C_out : c->C_in;
    g.Ca = g.swap ? c->C_in : c->C_out;
    /* Blocks of equal width: 64 channels as 32 + 32, not 48 + 16. */
    g.ncb = cd__ceil_div(g.Cv, PW_DC);
    g.dc = cd__round_up(cd__ceil_div(g.Cv, g.ncb), 16);
    g.dr = g.dc > 32 ? PW_DR : PW_DR2;
    const int64_t P = c->H * c->W;
    const int64_t kt =
        cd__min64(cd__max64(PW_KT, PW_ROUND_FMAS / (c->C_in * c->C_out)), PW_PACK / (g.ncb * g.dc));
    g.NB = cd__max64(1, cd__min64(c->N, (kt + P / 2) / P));
    g.KT = g.NB * P;
    g.nrb = cd__ceil_div(g.Ca, g.dr);
    g.ldd = cd__round_up(g.Cv, 16);
    g.acc = cd__round_up(g.Ca * g.ldd, 16);
    g.pack = cd__round_up(g.ncb * g.KT * g.dc, 16);
    return g;
}

/* Floats of the weight gradient's accumulators and pack buffers. */
static int64_t pw_grad_floats(const cd__conv2d *c)
{
    const pw_grad_plan g = pw_grad_planner(c);
    return g.acc + 2 * g.pack;
}

size_t cd__conv2d_pointwise_workspace(const cd__conv2d *c)
{
    const int64_t fwd = pw_blocks(c->C_out) * PW_MR * c->C_in;
    /* The backward's transposed weights follow the weight gradient's
     * buffers: both gradients are computed in the same rounds. */
    const int64_t bwd = pw_grad_floats(c) + pw_blocks(c->C_in) * PW_MR * c->C_out;
    /* Slack to align ws to a cache line here: the entry points may be
     * called with any workspace. */
    return (size_t)(cd__max64(fwd, bwd) + CD__ALIGN / (int64_t)sizeof(float));
}

bool cd__conv2d_pointwise_suits(const cd__conv2d *c)
{
    /* With fewer than 16 channels on a side, the weight gradient's vectors
     * run mostly empty and its backward loses to the dense path (the
     * forward still wins, but one path serves both). */
    return c->kh == 1 && c->kw == 1 && c->stride == 1 && c->pad == 0 && c->groups == 1 &&
           c->C_in >= 16 && c->C_out >= 16;
}

/* Ap[block][k][PW_MR] = the M x K matrix (element (m, k) at
 * src[m * sm + k * sk]), rows past M zero. */
static void pw_pack_rows(float *Ap, const float *src, int64_t M, int64_t K, int64_t sm, int64_t sk)
{
    const int64_t nb = pw_blocks(M);
    for (int64_t b = 0; b < nb; b++) {
        float *d = Ap + b * K * PW_MR;
        const int64_t mr = cd__min64(PW_MR, M - b * PW_MR);
        for (int64_t k = 0; k < K; k++) {
            const float *s = src + b * PW_MR * sm + k * sk;
            int64_t r = 0;
            for (; r < mr; r++) d[k * PW_MR + r] = s[r * sm];
            for (; r < PW_MR; r++) d[k * PW_MR + r] = 0.0f;
        }
    }
}

/* ---- the product micro-kernel ------------------------------------------------ */

/* How a micro-tile's sums start and end. */
enum {
    PW_SET,  /* from the bias (or zero) */
    PW_CONT, /* from C: a chain begun by an earlier call, or adding into C */
};

/* C[r][0..np) = bias[r] (or C[r][..] itself, as mode says) + sum_k
 * A[k][r] B[k][0..np) for r < mr, np pixels in nv vectors, the last
 * masked by mk. Each output is one FMA chain in k order. */
CD__ALWAYS_INLINE CD__AVX512 void pw_mk(int mr, int nv, int64_t K, const float *A, const float *B,
                                        int64_t ldb, float *C, int64_t ldc, __mmask16 mk,
                                        const float *bias, int mode)
{
    __m512 acc[PW_MR][2];
    const __mmask16 m0 = nv > 1 ? (__mmask16)0xFFFF : mk;
    CD__UNROLL
    for (int r = 0; r < mr; r++) {
        if (mode == PW_CONT) {
            acc[r][0] = _mm512_maskz_loadu_ps(m0, C + r * ldc);
            acc[r][1] = nv > 1 ? _mm512_maskz_loadu_ps(mk, C + r * ldc + 16) : acc[r][0];
        } else {
            acc[r][0] = acc[r][1] = bias ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
        }
    }
    for (int64_t k = 0; k < K; k++) {
        const float *bk = B + k * ldb;
        /* Read in place, the next micro-tile wants the next 32 pixels of
         * these rows: a line per row and vector, K rows apart, too many
         * streams for the hardware prefetchers. (Staged, the prefetch hits
         * the stack block; past a row's end it does not fault.) */
        _mm_prefetch((const char *)(bk + PW_NP), _MM_HINT_T1);
        _mm_prefetch((const char *)(bk + PW_NP + 16), _MM_HINT_T1);
        const __m512 b0 = nv > 1 ? _mm512_loadu_ps(bk) : _mm512_maskz_loadu_ps(mk, bk);
        const __m512 b1 = nv > 1 ? _mm512_maskz_loadu_ps(mk, bk + 16) : b0;
        const float *ak = A + k * PW_MR;
        CD__UNROLL
        for (int r = 0; r < mr; r++) {
            const __m512 a = _mm512_set1_ps(ak[r]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            if (nv > 1) acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    CD__UNROLL
    for (int r = 0; r < mr; r++) {
        float *c = C + r * ldc;
        _mm512_mask_storeu_ps(c, m0, acc[r][0]);
        if (nv > 1) _mm512_mask_storeu_ps(c + 16, mk, acc[r][1]);
    }
}

typedef void (*pw_mk_fn)(int64_t, const float *, const float *, int64_t, float *, int64_t,
                         __mmask16, const float *, int);

/* Every row count up to PW_MR, so the last block keeps its accumulators
 * in registers too. */
#define PW_MK(MR, NV)                                                                          \
    static CD__AVX512 void pw_mk_##MR##_##NV(int64_t K, const float *A, const float *B,        \
                                             int64_t ldb, float *C, int64_t ldc, __mmask16 mk, \
                                             const float *bias, int mode)                      \
    {                                                                                          \
        pw_mk(MR, NV, K, A, B, ldb, C, ldc, mk, bias, mode);                                   \
    }
#define PW_MK2(MR) PW_MK(MR, 1) PW_MK(MR, 2)
PW_MK2(1)
PW_MK2(2)
PW_MK2(3)
PW_MK2(4)
PW_MK2(5)
PW_MK2(6)
PW_MK2(7)
PW_MK2(8)
PW_MK2(9)
PW_MK2(10)
PW_MK2(11)
PW_MK2(12)
#undef PW_MK2
#undef PW_MK

#define PW_ROW(MR)                     \
    {                                  \
        pw_mk_##MR##_1, pw_mk_##MR##_2 \
    }
static const pw_mk_fn pw_mks[PW_MR][2] = {PW_ROW(1), PW_ROW(2),  PW_ROW(3),  PW_ROW(4),
                                          PW_ROW(5), PW_ROW(6),  PW_ROW(7),  PW_ROW(8),
                                          PW_ROW(9), PW_ROW(10), PW_ROW(11), PW_ROW(12)};
#undef PW_ROW

/* ---- forward and input gradient ----------------------------------------------- */

/* C = A B (+ bias, or + C) for one image: A packed M x K, B K x P, C M x
 * P, rows [b0 PW_MR, b1 PW_MR) of C only. With many rows, a block of rows
 * at a time across the image, so the stores run along PW_MR rows (streams
 * the prefetchers follow) rather than across all M, and B comes from L2
 * after the first block; with few, B is the bulk of the traffic and is
 * staged block by block (pw_staged). */
typedef struct {
    const float *Ap, *B, *bias;
    float *C;
    int64_t M, K, P, b_img, c_img;
    bool add;
    int64_t nch, nblk; /* row chunks per image, row blocks */
    int64_t n0;        /* the first image of the call */
    bool rows_outer;   /* a block of rows across the image, else B staged */
    cd__task_fn epi;
    void *epi_ctx;
} pw_job;

static void pw_direct(const pw_job *j, const float *B, float *C, int64_t b0, int64_t b1);
static CD__AVX512 void pw_staged(const pw_job *j, const float *B, float *C, int64_t b0, int64_t b1);

static void pw_task(void *ctx, int64_t i)
{
    const pw_job *j = ctx;
    const int64_t n = j->n0 + i / j->nch, ch = i % j->nch;
    const int64_t b0 = ch * j->nblk / j->nch, b1 = (ch + 1) * j->nblk / j->nch;
    const float *B = j->B + n * j->b_img;
    float *C = j->C + n * j->c_img;
    if (!j->rows_outer) {
        pw_staged(j, B, C, b0, b1);
    } else {
        pw_direct(j, B, C, b0, b1);
    }
    if (j->epi && j->nch == 1) j->epi(j->epi_ctx, n);
}

/* Rows [b0 PW_MR, b1 PW_MR) of C, a block of rows at a time, B read in
 * place. */
static void pw_direct(const pw_job *j, const float *B, float *C, int64_t b0, int64_t b1)
{
    const int64_t P = j->P, K = j->K;
    for (int64_t b = b0; b < b1; b++) {
        const int mr = (int)cd__min64(PW_MR, j->M - b * PW_MR);
        for (int64_t p0 = 0; p0 < P; p0 += PW_NP) {
            const int64_t npx = cd__min64(PW_NP, P - p0);
            const int nv = npx > 16 ? 2 : 1;
            const __mmask16 mk = (__mmask16)((1u << (npx - 16 * (nv - 1))) - 1u);
            pw_mks[mr - 1][nv - 1](K, j->Ap + b * K * PW_MR, B + p0, P, C + b * PW_MR * P + p0, P,
                                   mk, j->bias ? j->bias + b * PW_MR : NULL,
                                   j->add ? PW_CONT : PW_SET);
        }
    }
}

/* The same, B staged through a buffer on the stack, PW_KB
 * rows x PW_PB pixels at a time: few rows to compute means B is read from
 * memory as fast as it is used, and in place its rows make too many
 * streams for the prefetchers (a line or two from each of K rows), while
 * copying whole row segments keeps many loads in flight. The sums resume
 * from C after each block of rows (PW_CONT): the same FMA chains, the
 * same bits. */
static CD__AVX512 void pw_staged(const pw_job *j, const float *B, float *C, int64_t b0, int64_t b1)
{
    _Alignas(64) float buf[PW_KB * PW_PB];
    const int64_t P = j->P, K = j->K;
    for (int64_t p0 = 0; p0 < P; p0 += PW_PB) {
        const int64_t npb = cd__min64(PW_PB, P - p0);
        __mmask16 mv[PW_PB / 16];
        for (int v = 0; v < PW_PB / 16; v++) {
            const int64_t n = cd__max64(0, cd__min64(16, npb - 16 * v));
            mv[v] = (__mmask16)((1u << n) - 1u);
        }
        for (int64_t k0 = 0; k0 < K; k0 += PW_KB) {
            const int64_t kb = cd__min64(PW_KB, K - k0);
            for (int64_t k = 0; k < kb; k++) {
                const float *src = B + (k0 + k) * P + p0;
                CD__UNROLL
                for (int v = 0; v < PW_PB / 16; v++)
                    _mm512_store_ps(buf + k * PW_PB + 16 * v,
                                    _mm512_maskz_loadu_ps(mv[v], src + 16 * v));
            }
            for (int64_t b = b0; b < b1; b++) {
                const int mr = (int)cd__min64(PW_MR, j->M - b * PW_MR);
                for (int64_t q0 = 0; q0 < npb; q0 += PW_NP) {
                    const int64_t npx = cd__min64(PW_NP, npb - q0);
                    const int nv = npx > 16 ? 2 : 1;
                    const __mmask16 mk = (__mmask16)((1u << (npx - 16 * (nv - 1))) - 1u);
                    pw_mks[mr - 1][nv - 1](kb, j->Ap + (b * K + k0) * PW_MR, buf + q0, PW_PB,
                                           C + b * PW_MR * P + p0 + q0, P, mk,
                                           j->bias ? j->bias + b * PW_MR : NULL,
                                           k0 || j->add ? PW_CONT : PW_SET);
                }
            }
        }
    }
}

/* Rows per image up to which B is staged (see pw_job). */
#define PW_FEW_ROWS 48

static void pw_plan(pw_job *j, int64_t N)
{
    j->nblk = pw_blocks(j->M);
    j->nch = N >= PW_TASKS ? 1 : cd__min64(j->nblk, cd__ceil_div(PW_TASKS, N));
    j->rows_outer = j->M > PW_FEW_ROWS;
}

static void pw_run(pw_job *j, int64_t N)
{
    pw_plan(j, N);
    cd__parallel_for(N * j->nch, pw_task, j);
    if (j->epi && j->nch > 1) cd__parallel_for(N, j->epi, j->epi_ctx);
}

void cd__conv2d_pointwise_forward(const cd__conv2d *c, float *out, const float *in,
                                  const float *weight, const float *bias, float *ws,
                                  cd__task_fn epi, void *epi_ctx)
{
    float *Ap = cd__align_ws(ws);
    const int64_t P = c->H * c->W;
    pw_pack_rows(Ap, weight, c->C_out, c->C_in, c->C_in, 1);
    pw_job j = {.Ap = Ap,
                .B = in,
                .bias = c->bias ? bias : NULL,
                .C = out,
                .M = c->C_out,
                .K = c->C_in,
                .P = P,
                .b_img = c->C_in * P,
                .c_img = c->C_out * P,
                .add = false,
                .epi = epi,
                .epi_ctx = epi_ctx};
    pw_run(&j, c->N);
}

/* ---- weight gradient ------------------------------------------------------------- */

/* D[r][16 v..] (from zero when first, else from D) plus the sum over
 * k < K of A[r][k] B[k][16 v..]: rows of A lda apart, read in place, B
 * packed ldb floats per k. */
CD__ALWAYS_INLINE CD__AVX512 void pw_dw_mk(int mr, int nv, int64_t K, const float *A, int64_t lda,
                                           const float *B, int64_t ldb, float *D, int64_t ldd,
                                           bool first)
{
    __m512 acc[PW_DR2][3];
    const float *a[PW_DR2];
    CD__UNROLL
    for (int r = 0; r < mr; r++) {
        a[r] = A + r * lda;
        CD__UNROLL
        for (int v = 0; v < nv; v++)
            acc[r][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(D + r * ldd + 16 * v);
    }
    for (int64_t k = 0; k < K; k++) {
        const float *bk = B + k * ldb;
        const __m512 b0 = _mm512_loadu_ps(bk);
        const __m512 b1 = nv > 1 ? _mm512_loadu_ps(bk + 16) : b0;
        const __m512 b2 = nv > 2 ? _mm512_loadu_ps(bk + 32) : b0;
        CD__UNROLL
        for (int r = 0; r < mr; r++) {
            const __m512 x = _mm512_set1_ps(a[r][k]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            if (nv > 1) acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
            if (nv > 2) acc[r][2] = _mm512_fmadd_ps(x, b2, acc[r][2]);
        }
    }
    CD__UNROLL
    for (int r = 0; r < mr; r++) {
        CD__UNROLL
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(D + r * ldd + 16 * v, acc[r][v]);
    }
}

typedef void (*pw_dw_fn)(int64_t, const float *, int64_t, const float *, int64_t, float *, int64_t,
                         bool);

#define PW_DW(MR, NV)                                                                            \
    static CD__AVX512 void pw_dw_##MR##_##NV(int64_t K, const float *A, int64_t lda,             \
                                             const float *B, int64_t ldb, float *D, int64_t ldd, \
                                             bool first)                                         \
    {                                                                                            \
        pw_dw_mk(MR, NV, K, A, lda, B, ldb, D, ldd, first);                                      \
    }
#define PW_DW3(MR) PW_DW(MR, 1) PW_DW(MR, 2) PW_DW(MR, 3)
#define PW_DW2(MR) PW_DW(MR, 1) PW_DW(MR, 2)
PW_DW3(1)
PW_DW3(2)
PW_DW3(3)
PW_DW3(4)
PW_DW3(5)
PW_DW3(6)
PW_DW3(7)
PW_DW3(8)
PW_DW2(9)
PW_DW2(10)
PW_DW2(11)
PW_DW2(12)
#undef PW_DW2
#undef PW_DW3
#undef PW_DW

/* Rows past PW_DR only with up to two vectors. */
#define PW_ROW3(MR)                                    \
    {                                                  \
        pw_dw_##MR##_1, pw_dw_##MR##_2, pw_dw_##MR##_3 \
    }
#define PW_ROW2(MR)                          \
    {                                        \
        pw_dw_##MR##_1, pw_dw_##MR##_2, NULL \
    }
static const pw_dw_fn pw_dws[PW_DR2][3] = {PW_ROW3(1), PW_ROW3(2),  PW_ROW3(3),  PW_ROW3(4),
                                           PW_ROW3(5), PW_ROW3(6),  PW_ROW3(7),  PW_ROW3(8),
                                           PW_ROW2(9), PW_ROW2(10), PW_ROW2(11), PW_ROW2(12)};
#undef PW_ROW3
#undef PW_ROW2

typedef struct {
    const cd__conv2d *c;
    const pw_grad_plan *g;
    const float *vsrc, *asrc; /* the packed and the broadcast operand */
    float *D;
    float *pack[2];     /* the two pack buffers */
    int64_t t;          /* the tile being summed */
    int64_t ntile, ncc; /* tiles, chunks of broadcast row blocks per packed block */
    pw_job *din;        /* the input gradient, computed tile by tile, or NULL */
} pw_grad_job;

/* Image i of tile t + 1 into pack buffer (t + 1) % 2: [block][k][dc],
 * 16 channels x 16 pixels transposed at a time, channels past Cv zero. */
static CD__AVX512 void pw_pack_task(void *ctx, int64_t i)
{
    const pw_grad_job *j = ctx;
    const pw_grad_plan *g = j->g;
    const int64_t tile = j->t + 1, P = j->c->H * j->c->W, C = g->Cv, k0 = i * P;
    const float *img = j->vsrc + (tile * g->NB + i) * C * P;
    float *dst = j->pack[tile % 2];
    for (int64_t gr = 0; gr < cd__ceil_div(C, 16); gr++)
        for (int64_t p0 = 0; p0 < P; p0 += 16) {
            const int64_t nq = cd__min64(16, P - p0);
            const __mmask16 m = (__mmask16)((1u << nq) - 1u);
            __m512 r[16];
            CD__UNROLL
            for (int k = 0; k < 16; k++)
                r[k] = 16 * gr + k < C ? _mm512_maskz_loadu_ps(m, img + (16 * gr + k) * P + p0)
                                       : _mm512_setzero_ps();
            cd__transpose16(r);
            const int64_t per = g->dc / 16; /* groups per block */
            float *d = dst + ((gr / per) * g->KT + k0 + p0) * g->dc + (gr % per) * 16;
            for (int64_t x = 0; x < nq; x++) _mm512_storeu_ps(d + x * g->dc, r[x]);
        }
}

/* Packed block cb, chunk ch of the broadcast row blocks, over the tile's
 * images in order, PW_KC pixels at a time. */
static void pw_grad_task(void *ctx, int64_t i)
{
    const pw_grad_job *j = ctx;
    const cd__conv2d *c = j->c;
    const pw_grad_plan *g = j->g;
    const int64_t cb = i / j->ncc, ch = i % j->ncc, tile = j->t, P = c->H * c->W;
    const int64_t r0 = ch * g->nrb / j->ncc, r1 = (ch + 1) * g->nrb / j->ncc;
    const int64_t nimg = cd__min64(g->NB, c->N - tile * g->NB);
    const int nv = (int)cd__ceil_div(cd__min64(g->dc, g->Cv - cb * g->dc), 16);
    const float *Bp = j->pack[tile % 2] + cb * g->KT * g->dc;
    for (int64_t t = 0; t < nimg; t++) {
        const float *A = j->asrc + (tile * g->NB + t) * g->Ca * P;
        for (int64_t k0 = 0; k0 < P; k0 += PW_KC) {
            const int64_t kc = cd__min64(PW_KC, P - k0);
            const bool first = tile == 0 && t == 0 && k0 == 0;
            for (int64_t rb = r0; rb < r1; rb++) {
                const int mr = (int)cd__min64(g->dr, g->Ca - rb * g->dr);
                pw_dws[mr - 1][nv - 1](kc, A + rb * g->dr * P + k0, P, Bp + (t * P + k0) * g->dc,
                                       g->dc, j->D + rb * g->dr * g->ldd + cb * g->dc, g->ldd,
                                       first);
            }
        }
    }
}

/* The weight gradient, and the input gradient (din, planned) of each tile's
 * images in the tile's round, while its output gradient is in cache. */
static void pw_grad(const cd__conv2d *c, float *dweight, const float *dout, const float *in,
                    float *ws, pw_job *din)
{
    const pw_grad_plan g = pw_grad_planner(c);
    pw_grad_job j = {.c = c,
                     .g = &g,
                     .vsrc = g.swap ? dout : in,
                     .asrc = g.swap ? in : dout,
                     .D = ws,
                     .din = din};
    j.pack[0] = ws + g.acc;
    j.pack[1] = j.pack[0] + g.pack;
    j.ntile = cd__ceil_div(c->N, g.NB);
    j.ncc = cd__min64(g.nrb, cd__ceil_div(PW_TASKS, g.ncb));
    j.t = -1;
    cd__parallel_for(cd__min64(g.NB, c->N), pw_pack_task, &j);
    for (j.t = 0; j.t < j.ntile; j.t++) {
        cd__task_list l = {.count = 0};
        cd__tasks_add(&l, pw_grad_task, &j, g.ncb * j.ncc);
        if (din) {
            din->n0 = j.t * g.NB;
            cd__tasks_add(&l, pw_task, din, cd__min64(g.NB, c->N - din->n0) * din->nch);
        }
        if (j.t + 1 < j.ntile)
            cd__tasks_add(&l, pw_pack_task, &j, cd__min64(g.NB, c->N - (j.t + 1) * g.NB));
        cd__tasks_run(&l);
    }
    /* One rounding more per weight: the finished sum into dweight. */
    for (int64_t co = 0; co < c->C_out; co++)
        for (int64_t ci = 0; ci < c->C_in; ci++)
            dweight[co * c->C_in + ci] += g.swap ? j.D[ci * g.ldd + co] : j.D[co * g.ldd + ci];
}

void cd__conv2d_pointwise_backward(const cd__conv2d *c, float *din, bool din_set, float *dweight,
                                   const float *dout, const float *in, const float *weight,
                                   float *ws)
{
    ws = cd__align_ws(ws);
    const int64_t P = c->H * c->W;
    float *Ap = ws + pw_grad_floats(c);
    /* Rows ci, sum over co: the weights read transposed. */
    if (din) pw_pack_rows(Ap, weight, c->C_in, c->C_out, 1, c->C_in);
    pw_job j = {.Ap = Ap,
                .B = dout,
                .bias = NULL,
                .C = din,
                .M = c->C_in,
                .K = c->C_out,
                .P = P,
                .b_img = c->C_out * P,
                .c_img = c->C_in * P,
                .add = !din_set};
    if (dweight) {
        if (din) pw_plan(&j, c->N);
        pw_grad(c, dweight, dout, in, ws, din ? &j : NULL);
    } else if (din) {
        pw_run(&j, c->N);
    }
}

#endif /* CD__CONV_X86 */

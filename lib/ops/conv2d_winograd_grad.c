/*
 * conv2d_winograd_grad.c - the weight gradient of the Winograd F(4x4, 3x3)
 * convolutions: 3x3, stride 1, pad 1, groups 1, on AVX-512 CPUs.
 *
 * The forward computes a tile of outputs as A^T [(G g G^T) . (B^T d B)] A,
 * linear in g, so one tile's share of the weight gradient is
 * G^T [(A dY A^T) . (B^T d B)] G, dY the tile's 4x4 output gradient
 * (zeros past the image). Summed over tiles and images, per pair of
 * channels:
 *
 *     dg[co][ci] = G^T Z[co][ci] G,  Z[xi][ci][co] = sum_tiles V[xi][ci] D[xi][co],
 *
 * V = B^T d B (the forward's input transform) and D = A dY A^T: 36
 * products of [C_in x tiles] by [tiles x C_out], 2.25 multiply-adds per
 * output pixel and channel pair instead of the direct sum's 9.
 *
 * The method, per call:
 *   - images go in rounds of WG_TASKS tasks. In a round, each task
 *     transforms its images' inputs into V and their output gradients into
 *     D, at its own tiles of one round-wide matrix per component;
 *   - then one task per component adds the round's product V^T D into Z,
 *     summing the round's tiles in tile order in registers first;
 *   - at the end, G^T Z G per channel pair, in double, rounded once and
 *     added into dweight.
 * The tiles' order, and so every sum's order, depends on the shapes only:
 * the bits never depend on the thread count.
 *
 * Rounding: V carries 4 roundings (2 per dimension), D as many, a round's
 * sum one per tile, Z one per round, and the result one more: an entry's
 * error is at most (R + rounds + 9) u (u = 2^-24, R the tiles per round)
 * times the same sum taken over absolute values of the transforms and
 * data; check_conv.c derives and tests a bound of that form.
 */
#include "conv2d_winograd.h"

#include <string.h>

#ifdef CD__CONV_X86

/* Input channels per micro-tile of the products, and vectors of 16 output
 * channels (3: 24 accumulators, 11 loads per 24 multiply-adds). */
#define WGD_NR 8
#define WGD_NV 3

typedef struct {
    cd__wg_geom g;
    int64_t vs, ds;  /* floats per component of V, of D: a round's tiles */
    int64_t z, v, d; /* floats of Z, V, D */
    int64_t frame;   /* floats of a thread slot's frame */
} wgd_plan;

static wgd_plan wgd_planner(const cd__conv2d *c)
{
    wgd_plan p;
    p.g = cd__wg_geometry(c);
    /* A cache line more per component, as in the forward: strides of a
     * multiple of 4 KiB would put the transforms' 36 stores in one set. */
    p.vs = WG_TASKS * p.g.TT * p.g.CiP + 16;
    p.ds = WG_TASKS * p.g.TT * p.g.CoP + 16;
    p.z = WG_XI * p.g.CiP * p.g.CoP;
    p.v = WG_XI * p.vs;
    p.d = WG_XI * p.ds;
    p.frame = p.g.Hp * p.g.Wp * cd__max64(p.g.CiP, p.g.CoP);
    return p;
}

size_t cd__conv2d_winograd_grad_workspace(const cd__conv2d *c)
{
    const wgd_plan p = wgd_planner(c);
    return (size_t)(p.z + p.v + p.d + WG_TASKS * p.frame + CD__ALIGN / (int64_t)sizeof(float));
}

/* ---- transforms ----------------------------------------------------------------- */

/* y = A x (4 points to 6): two roundings on any path. */
CD__ALWAYS_INLINE CD__AVX512 void wgd_a(__m512 *y, __m512 x0, __m512 x1, __m512 x2, __m512 x3)
{
    const __m512 e = _mm512_add_ps(x0, x2), o = _mm512_add_ps(x1, x3);
    const __m512 e4 = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), x2, x0);
    const __m512 o4 =
        _mm512_fmadd_ps(_mm512_set1_ps(2.0f), x1, _mm512_mul_ps(_mm512_set1_ps(8.0f), x3));
    y[0] = x0;
    y[1] = _mm512_add_ps(e, o);
    y[2] = _mm512_sub_ps(e, o);
    y[3] = _mm512_add_ps(e4, o4);
    y[4] = _mm512_sub_ps(e4, o4);
    y[5] = x3;
}

/* D[xi][tile0 + tile][16 channels] = A dY A^T for every tile of one frame
 * of output gradients. */
static CD__AVX512 void wgd_dout(float *D, int64_t ds, const float *fr, int64_t CoP,
                                const wgd_plan *p, int64_t tile0)
{
    const int64_t Wp = p->g.Wp;
    for (int64_t ty = 0; ty < p->g.TH; ty++)
        for (int64_t tx = 0; tx < p->g.TW; tx++) {
            const int64_t tile = tile0 + ty * p->g.TW + tx;
            for (int64_t cb = 0; cb < CoP; cb += 16) {
                const float *s = fr + ((WG_M * ty + 1) * Wp + WG_M * tx + 1) * CoP + cb;
                __m512 r[WG_M][WG_A];
                CD__UNROLL
                for (int i = 0; i < WG_M; i++) {
                    const float *row = s + i * Wp * CoP;
                    wgd_a(r[i], _mm512_loadu_ps(row), _mm512_loadu_ps(row + CoP),
                          _mm512_loadu_ps(row + 2 * CoP), _mm512_loadu_ps(row + 3 * CoP));
                }
                float *d = D + tile * CoP + cb;
                CD__UNROLL
                for (int l = 0; l < WG_A; l++) {
                    __m512 col[WG_A];
                    wgd_a(col, r[0][l], r[1][l], r[2][l], r[3][l]);
                    CD__UNROLL
                    for (int k = 0; k < WG_A; k++)
                        _mm512_storeu_ps(d + (k * WG_A + l) * ds, col[k]);
                }
            }
        }
}

typedef struct {
    const cd__conv2d *c;
    const wgd_plan *p;
    const float *in, *dout;
    float *V, *D, *frames, *Z;
    int64_t n0;    /* first image of the round */
    int64_t tiles; /* tiles of the round */
    bool add;      /* Z holds earlier rounds */
} wgd_job;

static void wgd_transform_task(void *ctx, int64_t k)
{
    const wgd_job *j = ctx;
    const cd__conv2d *c = j->c;
    const wgd_plan *p = j->p;
    const int64_t n0 = j->n0 + k * p->g.IB, nimg = cd__min64(p->g.IB, c->N - n0);
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * c->H_out * c->W_out;
    float *fr = j->frames + cd__task_slot() * p->frame;
    for (int64_t t = 0; t < nimg; t++) {
        const int64_t tile0 = k * p->g.TT + t * p->g.P;
        cd__wg_frame(fr, j->in + (n0 + t) * in_img, c->C_in, p->g.CiP, c->H, c->W, p->g.Hp,
                     p->g.Wp);
        cd__wg_input(j->V, p->vs, p->g.CiP, fr, p->g.CiP, p->g.Wp, p->g.TH, p->g.TW, tile0);
        cd__wg_frame(fr, j->dout + (n0 + t) * out_img, c->C_out, p->g.CoP, c->H_out, c->W_out,
                     p->g.Hp, p->g.Wp);
        wgd_dout(j->D, p->ds, fr, p->g.CoP, p, tile0);
    }
}

/* ---- products ------------------------------------------------------------------- */

/* Z[r][co..] (+)= sum_k V[k][r] D[k][co..] for WGD_NR input channels r and
 * nv vectors of output channels, summed in k order from zero. */
CD__ALWAYS_INLINE CD__AVX512 void wgd_mk(int nv, bool add, int64_t K, const float *V, int64_t vk,
                                         const float *D, int64_t dk, float *Z, int64_t zs)
{
    __m512 acc[WGD_NR][WGD_NV];
    CD__UNROLL
    for (int r = 0; r < WGD_NR; r++) {
        CD__UNROLL
        for (int v = 0; v < WGD_NV; v++) acc[r][v] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < K; k++) {
        __m512 d[WGD_NV];
        CD__UNROLL
        for (int v = 0; v < WGD_NV; v++)
            d[v] = v < nv ? _mm512_loadu_ps(D + k * dk + 16 * v) : _mm512_setzero_ps();
        CD__UNROLL
        for (int r = 0; r < WGD_NR; r++) {
            const __m512 b = _mm512_set1_ps(V[k * vk + r]);
            CD__UNROLL
            for (int v = 0; v < WGD_NV; v++)
                if (v < nv) acc[r][v] = _mm512_fmadd_ps(b, d[v], acc[r][v]);
        }
    }
    CD__UNROLL
    for (int r = 0; r < WGD_NR; r++) {
        CD__UNROLL
        for (int v = 0; v < nv; v++) {
            float *z = Z + r * zs + 16 * v;
            _mm512_storeu_ps(z, add ? _mm512_add_ps(_mm512_loadu_ps(z), acc[r][v]) : acc[r][v]);
        }
    }
}

typedef void (*wgd_mk_fn)(int64_t, const float *, int64_t, const float *, int64_t, float *,
                          int64_t);

#define WGD_MK(NV, ADD, NAME)                                                                      \
    static CD__AVX512 void NAME(int64_t K, const float *V, int64_t vk, const float *D, int64_t dk, \
                                float *Z, int64_t zs)                                              \
    {                                                                                              \
        wgd_mk(NV, ADD, K, V, vk, D, dk, Z, zs);                                                   \
    }
WGD_MK(1, false, wgd_mk_1_set)
WGD_MK(2, false, wgd_mk_2_set)
WGD_MK(3, false, wgd_mk_3_set)
WGD_MK(1, true, wgd_mk_1_add)
WGD_MK(2, true, wgd_mk_2_add)
WGD_MK(3, true, wgd_mk_3_add)
#undef WGD_MK

static const wgd_mk_fn wgd_mks[2][WGD_NV] = {{wgd_mk_1_set, wgd_mk_2_set, wgd_mk_3_set},
                                             {wgd_mk_1_add, wgd_mk_2_add, wgd_mk_3_add}};

/* Z[xi] (+)= V[xi]^T D[xi] over the round's tiles. Blocks of output
 * channels outside: their slice of D stays in cache across the input
 * channels. Channels past C_in and C_out hold zeros and are skipped. */
static void wgd_product_task(void *ctx, int64_t xi)
{
    const wgd_job *j = ctx;
    const wgd_plan *p = j->p;
    const int64_t CiP = p->g.CiP, CoP = p->g.CoP;
    const int64_t ci_end = cd__round_up(j->c->C_in, WGD_NR), co_end = cd__round_up(j->c->C_out, 16);
    const float *V = j->V + xi * p->vs, *D = j->D + xi * p->ds;
    float *Z = j->Z + xi * CiP * CoP;
    for (int64_t co = 0; co < co_end; co += 16 * WGD_NV) {
        const int nv = (int)cd__min64(WGD_NV, (co_end - co) / 16);
        const wgd_mk_fn mk = wgd_mks[j->add][nv - 1];
        for (int64_t ci = 0; ci < ci_end; ci += WGD_NR)
            mk(j->tiles, V + ci, CiP, D + co, CoP, Z + ci * CoP + co, CoP);
    }
}

/* ---- the weights ---------------------------------------------------------------- */

/* y = G^T z (6 points to 3 taps), 8 channels per vector, in double. */
CD__ALWAYS_INLINE CD__AVX512 void wgd_gt(__m512d *y, const __m512d *z)
{
    const __m512d s12 = _mm512_add_pd(z[1], z[2]), d12 = _mm512_sub_pd(z[2], z[1]);
    const __m512d s34 = _mm512_add_pd(z[3], z[4]), d34 = _mm512_sub_pd(z[3], z[4]);
    const __m512d sixth = _mm512_set1_pd(1.0 / 6.0);
    y[0] = _mm512_fmadd_pd(z[0], _mm512_set1_pd(0.25),
                           _mm512_fmadd_pd(s34, _mm512_set1_pd(1.0 / 24.0),
                                           _mm512_mul_pd(s12, _mm512_set1_pd(-1.0 / 6.0))));
    y[1] = _mm512_fmadd_pd(d34, _mm512_set1_pd(1.0 / 12.0), _mm512_mul_pd(d12, sixth));
    y[2] = _mm512_add_pd(_mm512_mul_pd(_mm512_sub_pd(s34, s12), sixth), z[5]);
}

typedef struct {
    const cd__conv2d *c;
    const wgd_plan *p;
    const float *Z;
    float *dweight;
} wgd_weight_job;

/* dweight[co][ci] += G^T Z[..][ci][co] G for 8 output channels co0.. and
 * every input channel. */
static CD__AVX512 void wgd_weight_task(void *ctx, int64_t blk)
{
    const wgd_weight_job *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t CiP = j->p->g.CiP, CoP = j->p->g.CoP, co0 = 8 * blk;
    const int64_t nco = cd__min64(8, c->C_out - co0);
    for (int64_t ci = 0; ci < c->C_in; ci++) {
        __m512d t[WG_A][3];
        CD__UNROLL
        for (int i = 0; i < WG_A; i++) {
            __m512d z[WG_A];
            CD__UNROLL
            for (int l = 0; l < WG_A; l++)
                z[l] = _mm512_cvtps_pd(
                    _mm256_loadu_ps(j->Z + ((i * WG_A + l) * CiP + ci) * CoP + co0));
            wgd_gt(t[i], z);
        }
        double g[9][8];
        CD__UNROLL
        for (int b = 0; b < 3; b++) {
            __m512d col[WG_A], y[3];
            CD__UNROLL
            for (int i = 0; i < WG_A; i++) col[i] = t[i][b];
            wgd_gt(y, col);
            CD__UNROLL
            for (int a = 0; a < 3; a++) _mm512_storeu_pd(g[a * 3 + b], y[a]);
        }
        for (int64_t q = 0; q < nco; q++) {
            float *dw = j->dweight + ((co0 + q) * c->C_in + ci) * 9;
            for (int k = 0; k < 9; k++) dw[k] += (float)g[k][q];
        }
    }
}

void cd__conv2d_winograd_grad(const cd__conv2d *c, float *dweight, const float *dout,
                              const float *in, float *ws)
{
    if (c->N == 0) return;
    const wgd_plan p = wgd_planner(c);
    ws = cd__align_ws(ws);
    wgd_job j = {c, &p, in, dout, ws + p.z, ws + p.z + p.v, ws + p.z + p.v + p.d, ws, 0, 0, false};
    for (int64_t n0 = 0; n0 < c->N; n0 += WG_TASKS * p.g.IB) {
        const int64_t nimg = cd__min64(WG_TASKS * p.g.IB, c->N - n0);
        j.n0 = n0;
        j.tiles = nimg * p.g.P;
        cd__parallel_for(cd__ceil_div(nimg, p.g.IB), wgd_transform_task, &j);
        cd__parallel_for(WG_XI, wgd_product_task, &j);
        j.add = true;
    }
    wgd_weight_job wj = {c, &p, ws, dweight};
    cd__parallel_for(cd__ceil_div(c->C_out, 8), wgd_weight_task, &wj);
}

#endif /* CD__CONV_X86 */

/*
 * conv2d.c - 2-D convolution with zero padding, stride and groups, forward
 * and backward (see ops.h for the conventions).
 *
 * Four implementations sit behind the one descriptor; which one runs
 * depends only on the shape and the CPU, never on the thread count:
 *
 *   spectral   "same" convolutions with odd kernels of 5x5 and up and 8+
 *              channels each way on AVX-512 CPUs, where products of 2-D
 *              spectra cost a fraction of the direct sums (the CNN's 7x7
 *              layers): conv2d_fft.c.
 *   dense      every other non-depthwise convolution on x86-64 CPUs with
 *              AVX-512 (chosen at run time). Each image is copied into
 *              zero-padded frames of row stride Wp (unpadded tensors are
 *              read in place); the output pixel at flat "wide" position
 *              q = y Wp + x reads tap (ci, ky, kx) at
 *              frame[ci][q + ky Wp + kx], so every row of the implicit
 *              im2col matrix is a shifted view of a frame and no column
 *              buffer exists. Stride s becomes stride 1 on space-to-depth
 *              frames (s^2 frames per channel, a ceil(k/s)-tap kernel). The
 *              input gradient is the same convolution of the padded output
 *              gradient with flipped, transposed weights. Two kernel
 *              families do the arithmetic:
 *                - vectorised over pixels: 16 consecutive wide positions
 *                  per vector, the wide positions with x >= W_out wasted;
 *                - vectorised over 16 output channels, the frame value
 *                  broadcast: no waste, used when the other family would
 *                  waste much (small images, 7x7 kernels) and, for the
 *                  weight gradient, whenever there are 16+ outputs.
 *   depthwise  groups == C_in == C_out with stride 1: register-blocked
 *              AVX-512 kernels for 3x3, 5x5 and 7x7, and a portable kernel
 *              (row loops the compiler vectorises) for other sizes and CPUs.
 *   gemm       everything else on CPUs without AVX-512: im2col +
 *              cblas_sgemm on tiles of images, so the column buffer is
 *              bounded whatever the batch.
 *
 * The BLAS runs single-threaded (threads.c pins it, because OpenBLAS's own
 * threading changes the bits with the thread count). All parallelism comes
 * from cd__parallel_for over fixed tasks in which every output element, and
 * every weight-gradient element, is summed by one task in a fixed order:
 * the bits never depend on the thread count. Weight gradients are summed
 * per batch tile (of a size fixed by the shape) into an accumulator that is
 * added to dweight once, so backward adds the same value every call.
 */
#include "ops.h"

#include "conv2d_fft.h"

#include <cblas.h>
/* OpenBLAS's cblas.h pulls in <complex.h>, whose I macro would clobber
 * identifiers below. */
#undef I
#include <inttypes.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && \
    !defined(CD_CONV_PORTABLE_ONLY)
#define CONV_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 32")
#endif

/* Images per batch tile of the direct kernels: enough to amortise the
 * weight-gradient reductions and the cost of waking the workers. */
#define DIRECT_TILE 16
/* Tiles shrink so that one tile's buffers stay below this many floats. */
#define TILE_BUDGET ((int64_t)1 << 21)
/* Zeros after each padded image (dense) or plane (depthwise): vector loads
 * run up to 15 floats past the last valid position. */
#define FRAME_SLACK 64
#define PLANE_SLACK 32
/* The gemm path's tile budget (floats) and largest tile. */
#define GEMM_BUDGET ((int64_t)1 << 21)
#define GEMM_MAX_TILE 16

enum conv_path { PATH_GEMM, PATH_DENSE, PATH_FFT, PATH_DEPTHWISE, PATH_DEPTHWISE_PORTABLE };

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

/* ---- path selection ------------------------------------------------------ */

/* Test hook (not in ops.h): true restricts every convolution to the
 * portable paths, so the tests and the benchmark can run them on an
 * AVX-512 machine. Set it before sizing workspaces. */
void cd__conv2d_force_portable(bool on);
static _Atomic bool g_force_portable = false;

void cd__conv2d_force_portable(bool on) { g_force_portable = on; }

/* Test hook (not in ops.h): true keeps the spectral path out, so the tests
 * and the benchmark can run the direct kernels on the shapes it takes. */
void cd__conv2d_force_direct(bool on);
static _Atomic bool g_force_direct = false;

void cd__conv2d_force_direct(bool on) { g_force_direct = on; }

static bool have_avx512(void)
{
#ifdef CONV_X86
    if (g_force_portable) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

static bool is_depthwise(const cd__conv2d *c)
{
    return c->groups == c->C_in && c->groups == c->C_out;
}

static enum conv_path choose_path(const cd__conv2d *c)
{
    const bool avx512 = have_avx512();
    if (is_depthwise(c) && c->stride == 1 && c->pad < c->kh && c->pad < c->kw) {
        const bool fast = c->kh == c->kw && (c->kh == 3 || c->kh == 5 || c->kh == 7);
        if (fast && avx512) return PATH_DEPTHWISE;
        if (!avx512) return PATH_DEPTHWISE_PORTABLE;
    }
    if (avx512 && !g_force_direct && cd__conv2d_fft_suits(c)) return PATH_FFT;
    return avx512 ? PATH_DENSE : PATH_GEMM;
}

/* ---- init ---------------------------------------------------------------- */

cd_status cd__conv2d_init(cd__conv2d *c, int64_t N, int64_t C_in, int64_t H,
                          int64_t W, int64_t C_out, int64_t kh, int64_t kw,
                          int64_t stride, int64_t pad, int64_t groups, bool bias)
{
    static const char fn[] = "cd__conv2d_init";
    CD__CHECK_NOT_NULL(c, fn);
    if (N < 1 || C_in < 1 || H < 1 || W < 1 || C_out < 1 || kh < 1 || kw < 1)
        return cd__error(CD_ERR_SHAPE, "%s: sizes must be positive (N %" PRId64
                         ", C_in %" PRId64 ", H %" PRId64 ", W %" PRId64 ", C_out %"
                         PRId64 ", kernel %" PRId64 "x%" PRId64 ")", fn, N, C_in, H,
                         W, C_out, kh, kw);
    if (stride < 1)
        return cd__error(CD_ERR_RANGE, "%s: stride %" PRId64 " < 1", fn, stride);
    if (pad < 0)
        return cd__error(CD_ERR_RANGE, "%s: padding %" PRId64 " < 0", fn, pad);
    if (groups < 1 || C_in % groups != 0 || C_out % groups != 0)
        return cd__error(CD_ERR_SHAPE, "%s: groups %" PRId64 " must be positive and "
                         "divide C_in %" PRId64 " and C_out %" PRId64, fn, groups,
                         C_in, C_out);
    /* Keep every index product well inside int64 (and the BLAS int). */
    const int64_t lim = (int64_t)1 << 30;
    if (N > lim || C_in > lim || C_out > lim || H > lim || W > lim || kh > lim ||
        kw > lim || stride > lim || pad > lim)
        return cd__error(CD_ERR_OVERFLOW, "%s: a size exceeds 2^30", fn);
    const int64_t Hp = H + 2 * pad, Wp = W + 2 * pad;
    if (Hp < kh || Wp < kw)
        return cd__error(CD_ERR_SHAPE, "%s: kernel %" PRId64 "x%" PRId64 " exceeds "
                         "the padded input %" PRId64 "x%" PRId64 ": output would be "
                         "smaller than 1x1", fn, kh, kw, Hp, Wp);
    const double per_image = (double)(C_in > C_out ? C_in : C_out) * (double)Hp *
                             (double)Wp;
    const double cols = (double)(C_in / groups) * (double)kh * (double)kw *
                        (double)((Hp - kh) / stride + 1) * (double)((Wp - kw) / stride + 1);
    if (per_image > 1e15 || cols > (double)INT32_MAX || per_image * (double)N > 4e18)
        return cd__error(CD_ERR_OVERFLOW, "%s: tensors too large", fn);

    *c = (cd__conv2d){.N = N, .C_in = C_in, .H = H, .W = W, .C_out = C_out,
                      .kh = kh, .kw = kw, .stride = stride, .pad = pad,
                      .groups = groups, .bias = bias};
    c->H_out = (Hp - kh) / stride + 1;
    c->W_out = (Wp - kw) / stride + 1;
    return CD_OK;
}

/* ---- padded frames ------------------------------------------------------- */

/* Channels as zero-padded frames of Hp x Wp, CS floats apart (CS >= Hp Wp),
 * an image IS floats apart. */
typedef struct {
    int64_t C, H, W;      /* the source planes */
    int64_t top, left;    /* zero rows above, zero columns left */
    int64_t Hp, Wp;
    int64_t CS;           /* floats per frame */
    int64_t IS;           /* floats per image, a multiple of 16 */
} framing;

#ifdef CONV_X86
/* Frames back to back with FRAME_SLACK zeros after each image. */
static framing make_frame(int64_t C, int64_t H, int64_t W, int64_t pad_h, int64_t pad_w)
{
    framing f = {.C = C, .H = H, .W = W, .top = pad_h, .left = pad_w,
                 .Hp = H + 2 * pad_h, .Wp = W + 2 * pad_w};
    f.CS = f.Hp * f.Wp;
    f.IS = round_up(C * f.CS + FRAME_SLACK, 16);
    return f;
}
#endif

/* Frames with PLANE_SLACK zeros after each, so one task can fill one plane
 * while another reads its neighbour. */
static framing make_plane_frame(int64_t C, int64_t H, int64_t W, int64_t pad_h, int64_t pad_w)
{
    framing f = {.C = C, .H = H, .W = W, .top = pad_h, .left = pad_w,
                 .Hp = H + 2 * pad_h, .Wp = W + 2 * pad_w};
    f.CS = round_up(f.Hp * f.Wp + PLANE_SLACK, 16);
    f.IS = C * f.CS;
    return f;
}

/* Frame (and the slack up to CS) of one plane. Rows are short (28 floats
 * at the decoders' shapes), so plain loops beat memcpy/memset calls. */
static void pad_plane(float *dst, const float *src, const framing *f)
{
    const int64_t Wp = f->Wp, left = f->left, W = f->W;
    for (int64_t i = 0; i < f->top * Wp; i++) dst[i] = 0.0f;
    float *d = dst + f->top * Wp;
    for (int64_t y = 0; y < f->H; y++, d += Wp) {
        const float *s = src + y * W;
        for (int64_t x = 0; x < left; x++) d[x] = 0.0f;
        for (int64_t x = 0; x < W; x++) d[left + x] = s[x];
        for (int64_t x = left + W; x < Wp; x++) d[x] = 0.0f;
    }
    const int64_t rest = f->CS - (f->top + f->H) * Wp;
    for (int64_t i = 0; i < rest; i++) d[i] = 0.0f;
}

#ifdef CONV_X86
/* All planes of one image, then the image's slack. */
static void pad_image(float *dst, const float *src, const framing *f)
{
    for (int64_t ch = 0; ch < f->C; ch++)
        pad_plane(dst + ch * f->CS, src + ch * f->H * f->W, f);
    memset(dst + f->C * f->CS, 0, (size_t)(f->IS - f->C * f->CS) * sizeof *dst);
}
#endif

/* ---- task lists ------------------------------------------------------------ */

/* Several kinds of independent tasks in one cd__parallel_for, so a phase
 * costs one wake-up of the workers and the kinds share the threads. */
typedef struct {
    cd__task_fn fn[4];
    void *ctx[4];
    int64_t n[4];
    int count;
} task_list;

static void tasks_add(task_list *l, cd__task_fn fn, void *ctx, int64_t n)
{
    if (n <= 0) return;
    l->fn[l->count] = fn;
    l->ctx[l->count] = ctx;
    l->n[l->count] = n;
    l->count++;
}

static void tasks_one(void *ctx, int64_t i)
{
    const task_list *l = ctx;
    for (int k = 0; k < l->count; k++) {
        if (i < l->n[k]) {
            l->fn[k](l->ctx[k], i);
            return;
        }
        i -= l->n[k];
    }
}

static void tasks_run(task_list *l)
{
    int64_t total = 0;
    for (int k = 0; k < l->count; k++) total += l->n[k];
    if (total > 0) cd__parallel_for(total, tasks_one, l);
    l->count = 0;
}

/* ---- sums for the bias gradient ------------------------------------------- */

/* Sum of x[0..n) in a fixed order: 16 float lanes (vectorisable), then
 * double. */
static double plane_sum(const float *x, int64_t n)
{
    float lane[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) lane[k] += x[i + k];
    double s = 0.0;
    for (int k = 0; k < 16; k++) s += lane[k];
    for (; i < n; i++) s += x[i];
    return s;
}

typedef struct {
    float *db;
    const float *dout;
    int64_t N, C, HW;
} bias_job;

static void bias_task(void *ctx, int64_t co)
{
    const bias_job *j = ctx;
    double s = 0.0;
    for (int64_t n = 0; n < j->N; n++) s += plane_sum(j->dout + (n * j->C + co) * j->HW, j->HW);
    j->db[co] += (float)s;
}

static void bias_backward(float *db, const float *dout, int64_t N, int64_t C, int64_t HW)
{
    bias_job j = {db, dout, N, C, HW};
    cd__parallel_for(C, bias_task, &j);
}

#ifdef CONV_X86
/* ---- writing wide results ------------------------------------------------ */

/*
 * Copy wide positions [q0, q0 + nq) of rows acc[i][...] (i < mr, row stride
 * ld) into dst channels (stride cs) of Ho x Wo, dropping x >= Wo and
 * q >= Qv. Adds bias[i] when bias is given, adds into dst when accumulate.
 */
static void store_wide(float *dst, int64_t cs, int mr, const float *acc, int64_t ld,
                       int64_t q0, int64_t nq, int64_t Qv, int64_t Wp, int64_t Wo,
                       const float *bias, bool accumulate)
{
    const int64_t qend = min64(q0 + nq, Qv);
    for (int64_t y = q0 / Wp; y * Wp < qend; y++) {
        const int64_t xa = max64(q0 - y * Wp, 0), xb = min64(qend - y * Wp, Wo);
        if (xa >= xb) continue;
        const int64_t shift = y * Wp - q0; /* acc index of x = 0 in this row */
        for (int i = 0; i < mr; i++) {
            float *o = dst + i * cs + y * Wo;
            const float *a = acc + i * ld;
            if (accumulate) {
                for (int64_t x = xa; x < xb; x++) o[x] += a[shift + x];
            } else {
                const float b = bias ? bias[i] : 0.0f;
                for (int64_t x = xa; x < xb; x++) o[x] = a[shift + x] + b;
            }
        }
    }
}
#endif

/* ==== dense kernels (AVX-512) =============================================== */

/* Output channels per weight block of the dense kernels. */
#define MRB 8
/* Wide vectors per compute item of the dense kernel: a multiple of every NV. */
#define QCHUNK 24
/* Weight-gradient blocking: 4 output channels x 6 taps per micro-tile,
 * 8 micro-tiles (48 taps) per task. */
#define DW_MR 4
#define DW_NK 6
#define DW_NB 8
/* Images of at least this many wide vectors are summed image by image. */
#define DW_BIG_IMAGE 32
/* Tiles of at least this many images use one task per image (frames built
 * and consumed on one core); smaller tiles split the work finer. */
#define IMAGE_TASKS_MIN 4

#ifdef CONV_X86

/* Where a micro-tile's results go: raw rows into buf (for store_wide), or,
 * when wide positions are output indices (Wp == W_out), straight into dst
 * rows with the bias or accumulation applied. */
typedef struct {
    float *buf;
    int64_t ld;             /* floats per buf row */
    float *dst;             /* row 0 at the micro-tile's first position */
    int64_t cs;             /* floats per dst row (channel) */
    const float *bias;      /* per row, or NULL */
    int64_t nvalid;         /* valid positions from the first one */
    int rows;               /* rows to write (the kernel may compute more) */
    bool accumulate;
    __mmask16 tail;         /* lanes of the last vector that may be read */
} mk_out;

/*
 * acc[i][j] = sum over taps k of w[k][i] * src[off(k) + 16 j + lane], with
 * taps k = (ci, ky, kx) at off(k) = ci cs + ky wp + kx, i < MR, j < NV. The
 * weights are packed [k][MRB].
 */
ALWAYS_INLINE AVX512 void dense_mk(const int MR, const int NV, const float *src,
                                   int64_t cs, int64_t wp, int64_t C, int64_t kh,
                                   int64_t kw, const float *wpk, const mk_out *o)
{
    /* Every loop over i and j is unrolled in full so that acc[][] lives in
     * registers; a loop left rolled would put it on the stack. */
    __m512 acc[MRB][8];
    const __mmask16 tail = o->tail;
    UNROLL for (int i = 0; i < MR; i++)
        UNROLL for (int j = 0; j < NV; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t ci = 0; ci < C; ci++) {
        for (int64_t ky = 0; ky < kh; ky++) {
            const float *row = src + ci * cs + ky * wp;
            for (int64_t kx = 0; kx < kw; kx++, wpk += MRB) {
                __m512 x[8];
                UNROLL for (int j = 0; j < NV - 1; j++) x[j] = _mm512_loadu_ps(row + kx + 16 * j);
                x[NV - 1] = _mm512_maskz_loadu_ps(tail, row + kx + 16 * (NV - 1));
                UNROLL for (int i = 0; i < MR; i++) {
                    const __m512 w = _mm512_set1_ps(wpk[i]);
                    UNROLL for (int j = 0; j < NV; j++)
                        acc[i][j] = _mm512_fmadd_ps(w, x[j], acc[i][j]);
                }
            }
        }
    }
    if (o->buf) {
        UNROLL for (int i = 0; i < MR; i++)
            UNROLL for (int j = 0; j < NV; j++)
                _mm512_storeu_ps(o->buf + i * o->ld + 16 * j, acc[i][j]);
        return;
    }
    UNROLL for (int j = 0; j < NV; j++) {
        const int64_t n = o->nvalid - 16 * j;
        const __mmask16 m = n >= 16 ? (__mmask16)0xFFFF
                          : n <= 0  ? (__mmask16)0
                                    : (__mmask16)((1u << n) - 1u);
        UNROLL for (int i = 0; i < MR; i++) {
            if (i >= o->rows) continue;
            float *d = o->dst + i * o->cs + 16 * j;
            __m512 v = acc[i][j];
            if (o->accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), v);
            else if (o->bias) v = _mm512_add_ps(v, _mm512_set1_ps(o->bias[i]));
            _mm512_mask_storeu_ps(d, m, v);
        }
    }
}

#define DENSE_MK(MR, NV)                                                          \
    static AVX512 void dense_mk_##MR##x##NV(const float *src, int64_t cs, int64_t wp, \
                                            int64_t C, int64_t kh, int64_t kw,    \
                                            const float *wpk, const mk_out *o)    \
    {                                                                             \
        dense_mk(MR, NV, src, cs, wp, C, kh, kw, wpk, o);                         \
    }
DENSE_MK(8, 3)
DENSE_MK(8, 2)
DENSE_MK(8, 1)
DENSE_MK(4, 6)
DENSE_MK(4, 3)
DENSE_MK(4, 2)
DENSE_MK(4, 1)
DENSE_MK(2, 8)
DENSE_MK(2, 4)
DENSE_MK(2, 2)
DENSE_MK(2, 1)
DENSE_MK(1, 8)
DENSE_MK(1, 4)
DENSE_MK(1, 2)
DENSE_MK(1, 1)

typedef void (*dense_mk_fn)(const float *, int64_t, int64_t, int64_t, int64_t, int64_t,
                            const float *, const mk_out *);

/* Kernels by row class (8, 4, 2, 1 rows), widest first. */
typedef struct {
    int nv[4];
    dense_mk_fn fn[4];
} mk_class;

static const mk_class mk_classes[4] = {
    {{3, 2, 1, 0}, {dense_mk_8x3, dense_mk_8x2, dense_mk_8x1, NULL}},
    {{6, 3, 2, 1}, {dense_mk_4x6, dense_mk_4x3, dense_mk_4x2, dense_mk_4x1}},
    {{8, 4, 2, 1}, {dense_mk_2x8, dense_mk_2x4, dense_mk_2x2, dense_mk_2x1}},
    {{8, 4, 2, 1}, {dense_mk_1x8, dense_mk_1x4, dense_mk_1x2, dense_mk_1x1}},
};

/* Where a channel-vectorised micro-tile goes: channel m, row r, pixel i
 * lands at dst[m cs + r ld + i]. Channels from nm on and pixels before xs
 * (an earlier tile stored those) are skipped. */
typedef struct {
    float *dst;
    int64_t cs, ld;
    int nm, xs;
    const float *bias;      /* per channel, or NULL */
    bool accumulate;
} fcv_out;

/* In place: r[j] lane i becomes r[i] lane j (unpack 32- and 64-bit, then
 * two rounds of 128-bit lane shuffles). */
ALWAYS_INLINE AVX512 void transpose16(__m512 *r)
{
    __m512 t[16], u[16];
    UNROLL for (int a = 0; a < 8; a++) {
        t[2 * a] = _mm512_unpacklo_ps(r[2 * a], r[2 * a + 1]);
        t[2 * a + 1] = _mm512_unpackhi_ps(r[2 * a], r[2 * a + 1]);
    }
    UNROLL for (int b = 0; b < 4; b++) {
        const __m512d t0 = _mm512_castps_pd(t[4 * b]), t1 = _mm512_castps_pd(t[4 * b + 1]);
        const __m512d t2 = _mm512_castps_pd(t[4 * b + 2]), t3 = _mm512_castps_pd(t[4 * b + 3]);
        u[4 * b + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[4 * b + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[4 * b + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[4 * b + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    /* u[4b + m] lane L now holds column 4L + m of rows 4b..4b+3. */
    UNROLL for (int m = 0; m < 4; m++) {
        const __m512 x0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x44);
        const __m512 x1 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x44);
        const __m512 x2 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xEE);
        const __m512 x3 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xEE);
        r[m] = _mm512_shuffle_f32x4(x0, x1, 0x88);
        r[4 + m] = _mm512_shuffle_f32x4(x0, x1, 0xDD);
        r[8 + m] = _mm512_shuffle_f32x4(x2, x3, 0x88);
        r[12 + m] = _mm512_shuffle_f32x4(x2, x3, 0xDD);
    }
}

/*
 * The dense kernel vectorised over output channels, for layers with 16 or
 * more of them: out[16 c + lane][r][i] = sum over taps k = (ci, ky, kx) of
 * w[k][16 c + lane] * rows[r][ci cs + ky wp + kx + i], for NR output rows
 * of NPX consecutive pixels and NCV vectors of channels. Every lane is a
 * real output: no wide positions are wasted. The weights are packed
 * [k][16 NCV]; the results are transposed in registers on the way out.
 */
ALWAYS_INLINE AVX512 void fcv_mk(const int NR, const int NPX, const int NCV,
                                 const float *const *rows, int64_t cs, int64_t wp, int64_t C,
                                 int64_t kh, int64_t kw, const float *w, const fcv_out *o)
{
    __m512 acc[28][2];
    UNROLL for (int a = 0; a < NR * NPX; a++)
        UNROLL for (int c = 0; c < NCV; c++) acc[a][c] = _mm512_setzero_ps();
    for (int64_t ci = 0; ci < C; ci++) {
        for (int64_t ky = 0; ky < kh; ky++) {
            const float *q[4];
            UNROLL for (int r = 0; r < NR; r++) q[r] = rows[r] + ci * cs + ky * wp;
            for (int64_t kx = 0; kx < kw; kx++, w += 16 * NCV) {
                /* Opaque pointers, as in dwcv_mk. */
                UNROLL for (int r = 0; r < NR; r++) __asm__("" : "+r"(q[r]));
                __m512 wv[2];
                UNROLL for (int c = 0; c < NCV; c++) wv[c] = _mm512_loadu_ps(w + 16 * c);
                UNROLL for (int r = 0; r < NR; r++) {
                    UNROLL for (int i = 0; i < NPX; i++) {
                        const __m512 b = _mm512_set1_ps(q[r][i]);
                        UNROLL for (int c = 0; c < NCV; c++)
                            acc[r * NPX + i][c] = _mm512_fmadd_ps(b, wv[c], acc[r * NPX + i][c]);
                    }
                    q[r]++;
                }
            }
        }
    }
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                           14, 15);
    UNROLL for (int c = 0; c < NCV; c++) {
        UNROLL for (int g0 = 0; g0 < NR * NPX; g0 += 16) {
            /* Sixteen pixels (of up to two rows) x 16 channels at a time. */
            __m512 v[16];
            UNROLL for (int i = 0; i < 16; i++)
                v[i] = g0 + i < NR * NPX ? acc[g0 + i][c] : _mm512_setzero_ps();
            transpose16(v);
            UNROLL for (int m = 0; m < 16; m++) {
                const int ch = 16 * c + m;
                if (ch >= o->nm) continue;
                const __m512 b = o->bias ? _mm512_set1_ps(o->bias[ch]) : _mm512_setzero_ps();
                UNROLL for (int r = 0; r < NR; r++) {
                    if (r * NPX >= g0 + 16 || (r + 1) * NPX <= g0) continue;
                    const int p0 = r * NPX + o->xs > g0 ? r * NPX + o->xs : g0;
                    const int p1 = (r + 1) * NPX < g0 + 16 ? (r + 1) * NPX : g0 + 16;
                    if (p0 >= p1) continue;
                    /* Lanes p0 - g0 .. p1 - g0 to the front, then a masked
                     * store of the row segment. */
                    const __m512 x = _mm512_permutexvar_ps(
                        _mm512_add_epi32(iota, _mm512_set1_epi32(p0 - g0)), v[m]);
                    const __mmask16 mk = (__mmask16)((1u << (p1 - p0)) - 1u);
                    float *d = o->dst + ch * o->cs + r * o->ld + (p0 - r * NPX);
                    const __m512 y = o->accumulate
                                         ? _mm512_add_ps(_mm512_maskz_loadu_ps(mk, d), x)
                                         : _mm512_add_ps(x, b);
                    _mm512_mask_storeu_ps(d, mk, y);
                }
            }
        }
    }
}

typedef void (*fcv_fn)(const float *const *, int64_t, int64_t, int64_t, int64_t, int64_t,
                       const float *, const fcv_out *);

#define FCV_MK(NR, NPX, NCV)                                                        \
    static AVX512 void fcv_mk_##NR##x##NPX##x##NCV(                                 \
        const float *const *rows, int64_t cs, int64_t wp, int64_t C, int64_t kh,     \
        int64_t kw, const float *w, const fcv_out *o)                                \
    {                                                                               \
        fcv_mk(NR, NPX, NCV, rows, cs, wp, C, kh, kw, w, o);                        \
    }
FCV_MK(1, 14, 2)
FCV_MK(2, 7, 2)
FCV_MK(2, 14, 1)
FCV_MK(4, 7, 1)
/* One-row forms for the rows left below the last full block. */
FCV_MK(1, 7, 2)
FCV_MK(1, 14, 1)
FCV_MK(1, 7, 1)

/* Output channels per block of the channel-vectorised kernels: 32, or 16
 * for layers of 16 to 31 outputs. */
#define CVB 32

/*
 * lanes[i][j][:] += sum over images t < nimg and wide vectors v < nv of
 * d[i][t dstride + 16v + lane] * src[t sstride + off[j] + 16v + lane]:
 * DW_MR output-gradient rows against DW_NK shifted views of the padded
 * inputs.
 */
static AVX512 void dense_dw_mk(const float *const *d, const float *src,
                               const int64_t *off, int64_t nv, int64_t nimg,
                               int64_t dstride, int64_t sstride, __mmask16 tail,
                               float *lanes)
{
    __m512 acc[DW_MR][DW_NK];
    UNROLL for (int i = 0; i < DW_MR; i++)
        UNROLL for (int j = 0; j < DW_NK; j++)
            acc[i][j] = _mm512_loadu_ps(lanes + (i * DW_NK + j) * 16);
    for (int64_t t = 0; t < nimg; t++) {
        const float *d0 = d[0] + t * dstride, *d1 = d[1] + t * dstride,
                    *d2 = d[2] + t * dstride, *d3 = d[3] + t * dstride;
        const float *st = src + t * sstride;
        const float *s0 = st + off[0], *s1 = st + off[1], *s2 = st + off[2],
                    *s3 = st + off[3], *s4 = st + off[4], *s5 = st + off[5];
        for (int64_t v = 0; v < nv; v++) {
            /* The last vector reads only lanes before the end of the plane;
             * the other lanes are zero. */
            const __mmask16 m = v == nv - 1 ? tail : (__mmask16)0xFFFF;
            const int64_t q = 16 * v;
            const __m512 dv[DW_MR] = {
                _mm512_maskz_loadu_ps(m, d0 + q), _mm512_maskz_loadu_ps(m, d1 + q),
                _mm512_maskz_loadu_ps(m, d2 + q), _mm512_maskz_loadu_ps(m, d3 + q)};
            const float *sp[DW_NK] = {s0, s1, s2, s3, s4, s5};
            UNROLL for (int j = 0; j < DW_NK; j++) {
                const __m512 x = _mm512_maskz_loadu_ps(m, sp[j] + q);
                UNROLL for (int i = 0; i < DW_MR; i++)
                    acc[i][j] = _mm512_fmadd_ps(dv[i], x, acc[i][j]);
            }
        }
    }
    UNROLL for (int i = 0; i < DW_MR; i++)
        UNROLL for (int j = 0; j < DW_NK; j++)
            _mm512_storeu_ps(lanes + (i * DW_NK + j) * 16, acc[i][j]);
}

/*
 * The weight gradient vectorised over output channels, for layers with 16
 * or more of them: out[r kw + kx][16 c + lane] += sum over output pixels
 * (y, x) of rows[r][y wp + x + kx] * dT[(y Wo + x) ldT + 16 c + lane], for
 * R rows of taps (input channel, kernel row) x KW taps x NCV vectors of
 * output channels. dT is the output gradient transposed to pixel-major.
 * Every lane is a finished sum (no horizontal reduction), and only valid
 * pixels are visited. Rows r >= nr are computed but not written.
 */
ALWAYS_INLINE AVX512 void dwcv_mk(const int R, const int KW, const int NCV,
                                  const float *const *rows, const float *dT, int64_t ldT,
                                  int64_t Ho, int64_t Wo, int64_t wp, int nr, float *out,
                                  int64_t ldo)
{
    __m512 acc[28][2];
    UNROLL for (int a = 0; a < R * KW; a++)
        UNROLL for (int c = 0; c < NCV; c++) acc[a][c] = _mm512_setzero_ps();
    const float *d = dT;
    for (int64_t y = 0; y < Ho; y++) {
        const float *sp[8];
        UNROLL for (int r = 0; r < R; r++) sp[r] = rows[r] + y * wp;
        for (int64_t x = 0; x < Wo; x++, d += ldT) {
            /* Opaque pointers: otherwise GCC carries the values shared by
             * neighbouring pixels from one iteration to the next through
             * the stack, which is slower than loading them again. */
            UNROLL for (int r = 0; r < R; r++) __asm__("" : "+r"(sp[r]));
            __m512 dv[2];
            UNROLL for (int c = 0; c < NCV; c++) dv[c] = _mm512_loadu_ps(d + 16 * c);
            UNROLL for (int r = 0; r < R; r++) {
                UNROLL for (int kx = 0; kx < KW; kx++) {
                    const __m512 b = _mm512_set1_ps(sp[r][kx]);
                    UNROLL for (int c = 0; c < NCV; c++)
                        acc[r * KW + kx][c] = _mm512_fmadd_ps(b, dv[c], acc[r * KW + kx][c]);
                }
                sp[r]++;
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        if (r >= nr) continue;
        UNROLL for (int kx = 0; kx < KW; kx++)
            UNROLL for (int c = 0; c < NCV; c++) {
                float *o = out + (r * KW + kx) * ldo + 16 * c;
                _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), acc[r * KW + kx][c]));
            }
    }
}

typedef void (*dwcv_fn)(const float *const *, const float *, int64_t, int64_t, int64_t,
                        int64_t, int, float *, int64_t);

#define DWCV_MK(KW, R, NCV)                                                         \
    static AVX512 void dwcv_mk_##KW##_##R##_##NCV(                                  \
        const float *const *rows, const float *dT, int64_t ldT, int64_t Ho,          \
        int64_t Wo, int64_t wp, int nr, float *out, int64_t ldo)                     \
    {                                                                               \
        dwcv_mk(R, KW, NCV, rows, dT, ldT, Ho, Wo, wp, nr, out, ldo);               \
    }
DWCV_MK(7, 2, 2)
DWCV_MK(7, 3, 1)
DWCV_MK(5, 2, 2)
DWCV_MK(5, 4, 1)
DWCV_MK(3, 4, 2)
DWCV_MK(3, 8, 1)
DWCV_MK(2, 6, 2)
DWCV_MK(2, 8, 1)
DWCV_MK(1, 8, 2)
DWCV_MK(1, 8, 1)

/* The kernels by frame-kernel width: rows R and function for NCV = 2, 1. */
typedef struct {
    int kw;
    int R[2];
    dwcv_fn fn[2];
} dwcv_kind;

static const dwcv_kind dwcv_kinds[] = {
    {7, {2, 3}, {dwcv_mk_7_2_2, dwcv_mk_7_3_1}},
    {5, {2, 4}, {dwcv_mk_5_2_2, dwcv_mk_5_4_1}},
    {3, {4, 8}, {dwcv_mk_3_4_2, dwcv_mk_3_8_1}},
    {2, {6, 8}, {dwcv_mk_2_6_2, dwcv_mk_2_8_1}},
    {1, {8, 8}, {dwcv_mk_1_8_2, dwcv_mk_1_8_1}},
};

/* ---- the dense plan -------------------------------------------------------- */

/*
 * A convolution of stride s runs as a stride-1 convolution on
 * space-to-depth frames: input channel ci and phase (a, b) in s x s give
 * frame channel (ci s + a) s + b, holding xpad[ci][Y s + a][X s + b] (xpad
 * the zero-padded input), and the kernel shrinks to khs x kws =
 * ceil(kh/s) x ceil(kw/s) taps per frame channel, taps past kh x kw being
 * zero. For s = 1 the frames are just the padded input. Group g owns frame
 * channels [g Cs, (g+1) Cs) and weight rows [g Cog, (g+1) Cog).
 */
typedef struct {
    int64_t s, G, Cig, Cog;
    int64_t Cs;            /* frame channels per group: Cig s^2 */
    int64_t khs, kws;      /* taps per frame channel */
    int64_t Ks;            /* Cs khs kws: reduction length per output */
    framing in;            /* input frames, C_in s^2 channels */
    bool in_direct;        /* s = 1, pad = 0: the input is its own frames */
    bool din_direct;       /* s = 1 and pad < kernel: din accumulated in place */
    framing dout;          /* padded output gradients, for din */
    bool dout_direct;      /* no padding needed: dout is its own frames */
    bool wide_direct;      /* W_out == Wp: dout rows are their own wide rows */
    int64_t Hd, Wd;        /* frame-gradient planes, when !din_direct */
    int64_t dxs;           /* floats of frame gradient per image */
    int64_t Qv, nvq, QS;   /* output-gradient rows at the frame stride */
    int64_t DS;            /* floats per image of those rows, or of doutT */
    int64_t wpk;           /* floats of packed weights (either packing) */
    int64_t dws;           /* floats of the weight-gradient accumulator */
    int64_t fin, fdout, dwide; /* floats of buffer per image (0 when direct) */
    /* Weight gradient vectorised over output channels (cv), else over
     * pixels: */
    const dwcv_kind *cv;   /* NULL: the pixel-vectorised kernel */
    int cvv;               /* 16-channel vectors per micro-tile (1 or 2) */
    int64_t cvR;           /* tap rows per micro-tile */
    int64_t CoP;           /* doutT row: C_out rounded up to 16 cvv */
    int64_t Hout, Wout;    /* the convolution's output size */
    int64_t T;             /* images per tile */
} dense_plan;

/* Packed weight rows per block for M outputs: the channel kernels' block
 * (dense_job_finish: 32, or 16 below 32 outputs), which they need 16 or
 * more outputs for, else the pixel kernels' MRB. */
static int64_t pack_rows(int64_t M)
{
    return M >= 32 ? CVB : M >= 16 ? 16 : MRB;
}

static dense_plan dense_planner(const cd__conv2d *c)
{
    dense_plan p;
    const int64_t s = c->stride;
    p.s = s;
    p.G = c->groups;
    p.Cig = c->C_in / p.G;
    p.Cog = c->C_out / p.G;
    p.Cs = p.Cig * s * s;
    p.khs = ceil_div(c->kh, s);
    p.kws = ceil_div(c->kw, s);
    p.Ks = p.Cs * p.khs * p.kws;
    p.in = (framing){.C = c->C_in * s * s, .H = c->H, .W = c->W, .top = c->pad,
                     .left = c->pad, .Hp = ceil_div(c->H + 2 * c->pad, s),
                     .Wp = ceil_div(c->W + 2 * c->pad, s)};
    p.in.CS = p.in.Hp * p.in.Wp;
    p.in.IS = round_up(p.in.C * p.in.CS + FRAME_SLACK, 16);
    /* Without padding the source tensors serve as frames as they are: the
     * kernels mask their last vector, so they never read past a plane's
     * last valid position plus the taps' reach, which stays in the plane. */
    p.in_direct = s == 1 && c->pad == 0;
    if (p.in_direct) p.in.IS = c->C_in * p.in.CS;
    p.din_direct = s == 1 && c->pad < c->kh && c->pad < c->kw;
    p.dout_direct = false;
    if (p.din_direct) {
        p.dout = make_frame(c->C_out, c->H_out, c->W_out, c->kh - 1 - c->pad,
                            c->kw - 1 - c->pad);
        p.dout_direct = c->kh - 1 - c->pad == 0 && c->kw - 1 - c->pad == 0;
        if (p.dout_direct) p.dout.IS = c->C_out * p.dout.CS;
        p.Hd = p.Wd = p.dxs = 0;
    } else {
        p.dout = make_frame(c->C_out, c->H_out, c->W_out, p.khs - 1, p.kws - 1);
        p.Hd = c->H_out + p.khs - 1;
        p.Wd = c->W_out + p.kws - 1;
        p.dxs = round_up(p.in.C * p.Hd * p.Wd, 16);
    }
    p.Qv = (c->H_out - 1) * p.in.Wp + c->W_out;
    p.nvq = ceil_div(p.Qv, 16);
    p.wide_direct = p.in.Wp == c->W_out;
    p.QS = p.wide_direct ? p.Qv : p.nvq * 16;
    p.DS = c->C_out * p.QS;
    p.Hout = c->H_out;
    p.Wout = c->W_out;
    p.cv = NULL;
    p.cvv = 0;
    p.cvR = 0;
    p.CoP = 0;
    /* The channel-vectorised kernel needs dout transposed; with few taps
     * and dout usable in place (1x1 layers), that copy costs more than the
     * kernel saves. */
    if (p.G == 1 && c->C_out >= 16 && !(p.wide_direct && p.Ks < 64))
        for (size_t k = 0; k < sizeof dwcv_kinds / sizeof dwcv_kinds[0]; k++)
            if (dwcv_kinds[k].kw == p.kws) p.cv = &dwcv_kinds[k];
    if (p.cv) {
        /* doutT replaces the wide rows. */
        p.cvv = c->C_out >= 32 ? 2 : 1;
        p.cvR = p.cv->R[2 - p.cvv];
        p.CoP = round_up(c->C_out, 16 * p.cvv);
        p.wide_direct = false;
        p.DS = c->H_out * c->W_out * p.CoP;
    }
    const int64_t fwd = p.G * round_up(p.Cog, pack_rows(p.Cog)) * p.Ks;
    const int64_t bwd = p.G * round_up(p.Cs, pack_rows(p.Cs)) * p.Cog * p.khs * p.kws;
    p.wpk = round_up(max64(fwd, bwd), 16);
    p.dws = round_up(p.cv ? p.Ks * p.CoP : c->C_out * p.Ks, 16);
    p.fin = p.in_direct ? 0 : p.in.IS;
    p.fdout = p.dout_direct ? 0 : p.dout.IS;
    p.dwide = p.wide_direct ? 0 : p.DS;
    const int64_t per_image = max64(1, 2 * p.fin + 2 * p.dwide + p.fdout + p.dxs);
    p.T = max64(1, min64(min64(c->N, DIRECT_TILE), TILE_BUDGET / per_image));
    return p;
}

/* Backward layout: wpk, dws, input frames x2, dwide (or doutT) x2, dout
 * frames, dxf.
 * Forward uses wpk and the first input frames. */
static size_t dense_workspace(const cd__conv2d *c)
{
    const dense_plan p = dense_planner(c);
    return (size_t)(p.wpk + p.dws + p.T * (2 * p.fin + 2 * p.dwide + p.fdout + p.dxs));
}

/* Weight packing: every layout is [g][ceil(M/blk)][K][blk], zero rows past
 * M, so a micro-kernel reads the blk weights of one tap from one cache
 * line. Forward: M = Cog output rows over the K = Ks frame taps
 * W'[co][cs][kys][kxs]. Input gradient ("flipped"): M = Cs frame channels
 * over the taps (co, ky, kx), reading W'[co][cs][khs-1-ky][kws-1-kx]. One
 * task per (group, block); it runs on every call, so it avoids divisions
 * in the inner loop. */
typedef struct {
    float *dst;
    const float *w;
    const cd__conv2d *c;
    const dense_plan *p;
    int64_t blk, nblk;
    bool flipped;
} pack_job;

/* The weight read by frame channel cs at frame tap (kys, kxs) of output
 * co (group-local), or 0 past the real kernel. */
static float frame_weight(const pack_job *j, int64_t co, int64_t cs, int64_t kys, int64_t kxs)
{
    const cd__conv2d *c = j->c;
    const int64_t s = j->p->s;
    const int64_t ci = s == 1 ? cs : cs / (s * s), a = s == 1 ? 0 : (cs / s) % s;
    const int64_t ky = kys * s + a, kx = kxs * s + (s == 1 ? 0 : cs % s);
    if (ky >= c->kh || kx >= c->kw) return 0.0f;
    return j->w[((co * j->p->Cig + ci) * c->kh + ky) * c->kw + kx];
}

static void pack_task(void *ctx, int64_t gb)
{
    const pack_job *j = ctx;
    const dense_plan *p = j->p;
    const int64_t g = gb / j->nblk, b = gb % j->nblk, blk = j->blk;
    const int64_t M = j->flipped ? p->Cs : p->Cog, taps = p->khs * p->kws;
    const int64_t K = (j->flipped ? p->Cog : p->Cs) * taps;
    float *dst = j->dst + gb * K * blk;
    for (int64_t k = 0; k < K; k++, dst += blk) {
        const int64_t outer = k / taps, ky = k % taps / p->kws, kx = k % p->kws;
        for (int64_t i = 0; i < blk; i++) {
            const int64_t m = b * blk + i;
            if (m >= M) dst[i] = 0.0f;
            else if (j->flipped)
                dst[i] = frame_weight(j, g * p->Cog + outer, m, p->khs - 1 - ky, p->kws - 1 - kx);
            else
                dst[i] = frame_weight(j, g * p->Cog + m, outer, ky, kx);
        }
    }
}

static void pack_weights(float *dst, const float *w, const cd__conv2d *c, const dense_plan *p,
                         int64_t blk, bool flipped)
{
    pack_job j = {dst, w, c, p, blk, ceil_div(flipped ? p->Cs : p->Cog, blk), flipped};
    cd__parallel_for(p->G * j.nblk, pack_task, &j);
}

/* Frames of input channel ci of one image (for s > 1, its s^2
 * space-to-depth frames), plus the image's slack after the last channel. */
static void frames_plane(float *img, const float *src_img, const cd__conv2d *c,
                         const framing *f, int64_t ci)
{
    const int64_t s = c->stride;
    const float *src = src_img + ci * c->H * c->W;
    if (s == 1) {
        pad_plane(img + ci * f->CS, src, f);
    } else {
        for (int64_t a = 0; a < s; a++)
            for (int64_t b = 0; b < s; b++) {
                float *fr = img + ((ci * s + a) * s + b) * f->CS;
                for (int64_t Y = 0; Y < f->Hp; Y++) {
                    float *row = fr + Y * f->Wp;
                    const int64_t u = Y * s + a - c->pad;
                    if (u < 0 || u >= c->H) {
                        memset(row, 0, (size_t)f->Wp * sizeof *row);
                        continue;
                    }
                    const float *sr = src + u * c->W;
                    for (int64_t X = 0; X < f->Wp; X++) {
                        const int64_t v = X * s + b - c->pad;
                        row[X] = v >= 0 && v < c->W ? sr[v] : 0.0f;
                    }
                }
            }
    }
    if (ci == c->C_in - 1)
        memset(img + f->C * f->CS, 0, (size_t)(f->IS - f->C * f->CS) * sizeof *img);
}

/* Tasks (image, input channel) filling a tile of frames. */
typedef struct {
    const cd__conv2d *c;
    const framing *f;
    float *dst;
    const float *src;   /* first image of the tile */
} frames_job;

static void frames_task(void *ctx, int64_t i)
{
    const frames_job *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t t = i / c->C_in, ci = i % c->C_in;
    frames_plane(j->dst + t * j->f->IS, j->src + t * c->C_in * c->H * c->W, c, j->f, ci);
}

/* A stride-1 convolution of a tile of frames, per group: items
 * (group, block of MRB output rows, QCHUNK wide vectors) of each image. */
typedef struct {
    const framing *f;
    const float *frames;      /* first image of the tile */
    int64_t C, kh, kw;        /* reduction: frame channels per group x taps */
    const float *wpk;         /* [G][nblk][C kh kw][MRB] */
    int64_t G, M, Ho, Wo;
    float *dst;               /* first image of the tile */
    int64_t dst_is;           /* floats per destination image */
    const float *bias;
    bool accumulate;
    int64_t nblk, nqc, nvec, Qv, items;
    /* Channel-vectorised: kernel, its one-row form, its pixel block,
     * channels per block, and blocks per image. */
    fcv_fn cv, cv1;
    int nr, npx;
    int64_t cvb, ncb, nyb, nxb;
} dense_job;

/* Lanes doing useful work, per kernel family, decide between them. */
static bool use_channel_kernel(const dense_job *j, int nr, int npx, int64_t cvb)
{
    /* Short reductions (the first layer's 49 taps) cannot hide the
     * transposed stores. */
    if (j->M < cvb || j->Ho < nr || j->Wo < npx || j->C * j->kh * j->kw < 128) return false;
    const double pixel = (double)(j->Ho * j->Wo) / (double)(16 * ceil_div(j->Qv, 16));
    const double chan = (double)(j->Ho * j->Wo) /
                        (double)(round_up(j->Ho, nr) * round_up(j->Wo, npx)) *
                        (double)j->M / (double)round_up(j->M, cvb);
    /* The channel kernel does a little more work per FMA (transposed
     * stores, more broadcasts), so it must win clearly on lanes. */
    return chan > 1.12 * pixel;
}

/* Call after filling f, C, kh, kw, M, Ho, Wo: picks the kernel family;
 * the caller packs wpk to match (j->cv set: pack_cv_*). */
static void dense_job_finish(dense_job *j)
{
    j->Qv = (j->Ho - 1) * j->f->Wp + j->Wo;
    j->nvec = ceil_div(j->Qv, 16);
    j->cv = NULL;
    j->cvb = j->M >= 32 ? 32 : 16;
    const bool wide = j->cvb == 32;
    if (use_channel_kernel(j, wide ? 1 : 2, 14, j->cvb)) {
        j->cv = wide ? fcv_mk_1x14x2 : fcv_mk_2x14x1, j->nr = wide ? 1 : 2, j->npx = 14;
        j->cv1 = wide ? fcv_mk_1x14x2 : fcv_mk_1x14x1;
    } else if (use_channel_kernel(j, wide ? 2 : 4, 7, j->cvb)) {
        j->cv = wide ? fcv_mk_2x7x2 : fcv_mk_4x7x1, j->nr = wide ? 2 : 4, j->npx = 7;
        j->cv1 = wide ? fcv_mk_1x7x2 : fcv_mk_1x7x1;
    }
    if (j->cv) {
        j->ncb = ceil_div(j->M, j->cvb);
        j->nyb = ceil_div(j->Ho, j->nr);
        j->nxb = ceil_div(j->Wo, j->npx);
        j->items = j->G * j->ncb * j->nyb;
    } else {
        j->nblk = ceil_div(j->M, MRB);
        j->nqc = ceil_div(j->nvec, QCHUNK);
        j->items = j->G * j->nblk * j->nqc;
    }
}

/* One item of the channel-vectorised kernel: a block of cvb channels over
 * NR output rows, all pixel blocks along them. Blocks at the right edge
 * are moved back inside the image, pixels an earlier block already stored
 * are skipped, so accumulation adds each output once. */
static void dense_item_cv(const dense_job *j, int64_t t, int64_t item)
{
    const framing *f = j->f;
    const int64_t g = item / (j->ncb * j->nyb), rem = item % (j->ncb * j->nyb);
    const int64_t b = rem / j->nyb, yb = rem % j->nyb;
    const int64_t cvb = j->cvb, m0 = b * cvb, nm = min64(cvb, j->M - m0);
    const int64_t K = j->C * j->kh * j->kw, HW = j->Ho * j->Wo;
    const float *w = j->wpk + (g * j->ncb + b) * K * cvb;
    const float *src = j->frames + t * f->IS + g * j->C * f->CS;
    float *dst = j->dst + t * j->dst_is + (g * j->M + m0) * HW;
    const float *bias = j->bias ? j->bias + g * j->M + m0 : NULL;
    /* A partial last block (7 rows in blocks of 2) runs row by row rather
     * than recomputing rows of the block above. */
    const bool partial = (yb + 1) * j->nr > j->Ho;
    const int64_t y_end = partial ? j->Ho : yb * j->nr + 1;
    const int nr = partial ? 1 : j->nr;
    fcv_out o = {NULL, HW, j->Wo, (int)nm, 0, bias, j->accumulate};
    for (int64_t y0 = yb * j->nr; y0 < y_end; y0++)
        for (int64_t xb = 0; xb < j->nxb; xb++) {
            const int64_t x0 = min64(xb * j->npx, j->Wo - j->npx);
            const float *rows[4];
            for (int r = 0; r < nr; r++) rows[r] = src + (y0 + r) * f->Wp + x0;
            o.dst = dst + y0 * j->Wo + x0;
            o.xs = (int)(xb * j->npx - x0);
            (partial ? j->cv1 : j->cv)(rows, f->CS, f->Wp, j->C, j->kh, j->kw, w, &o);
        }
}

static void dense_item(const dense_job *j, int64_t t, int64_t item)
{
    if (j->cv) {
        dense_item_cv(j, t, item);
        return;
    }
    const framing *f = j->f;
    const int64_t g = item / (j->nblk * j->nqc), rem = item % (j->nblk * j->nqc);
    const int64_t b = rem / j->nqc, qc = rem % j->nqc;
    const int64_t m0 = b * MRB, rows = min64(MRB, j->M - m0);
    const int64_t K = j->C * j->kh * j->kw;
    const float *wpk = j->wpk + (g * j->nblk + b) * K * MRB;
    const float *src = j->frames + t * f->IS + g * j->C * f->CS;
    float *dst = j->dst + t * j->dst_is + (g * j->M + m0) * j->Ho * j->Wo;
    const float *bias = j->bias ? j->bias + g * j->M + m0 : NULL;

    const mk_class *cls = &mk_classes[rows > 4 ? 0 : rows > 2 ? 1 : rows == 2 ? 2 : 3];
    /* Wide positions are output indices when no column is dropped. */
    const bool direct = f->Wp == j->Wo;
    float acc[MRB * 8 * 16];
    mk_out o = {direct ? NULL : acc, 0, NULL, j->Ho * j->Wo, bias, 0, (int)rows,
                j->accumulate, (__mmask16)0xFFFF};
    const int64_t last_lanes = j->Qv - 16 * (j->nvec - 1);
    const int64_t v_end = min64((qc + 1) * QCHUNK, j->nvec);
    for (int64_t v = qc * QCHUNK; v < v_end;) {
        int k = 0;
        while (cls->nv[k] > v_end - v) k++;
        const int nv = cls->nv[k];
        const int64_t q0 = 16 * v;
        o.ld = 16 * nv;
        o.dst = dst + q0;
        o.nvalid = j->Qv - q0;
        o.tail = v + nv == j->nvec ? (__mmask16)((1u << last_lanes) - 1u) : (__mmask16)0xFFFF;
        cls->fn[k](src + q0, f->CS, f->Wp, j->C, j->kh, j->kw, wpk, &o);
        if (!direct)
            store_wide(dst, j->Ho * j->Wo, (int)rows, acc, o.ld, q0, o.ld, j->Qv, f->Wp,
                       j->Wo, bias, j->accumulate);
        v += nv;
    }
}

static void dense_item_task(void *ctx, int64_t i)
{
    const dense_job *j = ctx;
    dense_item(j, i / j->items, i % j->items);
}

/* Weight gradient of a tile into the accumulator dws[co][Ks]: tasks
 * (group, DW_MR output channels, DW_NK DW_NB taps), each summing over the
 * tile's images in order. */
typedef struct {
    const dense_plan *p;
    const float *frames;
    const float *dwide;       /* output-gradient rows of stride Wp, zeros elsewhere */
    int64_t T, nkc, ncb;
    float *dws;
} dense_dw_job;

static void dense_dw_task(void *ctx, int64_t task)
{
    const dense_dw_job *j = ctx;
    const dense_plan *p = j->p;
    const framing *f = &p->in;
    const int64_t g = task / (j->ncb * j->nkc), rem = task % (j->ncb * j->nkc);
    const int64_t cb = rem / j->nkc, kc = rem % j->nkc;
    const int64_t co0 = g * p->Cog + cb * DW_MR, co_end = (g + 1) * p->Cog;
    const int64_t k0 = kc * DW_NK * DW_NB, khw = p->khs * p->kws;
    int64_t off[DW_NB][DW_NK];
    for (int b = 0; b < DW_NB; b++)
        for (int jj = 0; jj < DW_NK; jj++) {
            const int64_t k = min64(k0 + b * DW_NK + jj, p->Ks - 1);
            const int64_t cs = k / khw, ky = (k % khw) / p->kws, kx = k % p->kws;
            off[b][jj] = (g * p->Cs + cs) * f->CS + ky * f->Wp + kx;
        }
    const int nb = (int)min64(DW_NB, ceil_div(p->Ks - k0, DW_NK));

    float lanes[DW_NB][DW_MR * DW_NK * 16];
    memset(lanes, 0, sizeof lanes);
    const float *d[DW_MR];
    for (int i = 0; i < DW_MR; i++) d[i] = j->dwide + min64(co0 + i, co_end - 1) * p->QS;
    const int64_t last_lanes = p->Qv - 16 * (p->nvq - 1);
    const __mmask16 tail = (__mmask16)((1u << last_lanes) - 1u);
    if (p->nvq >= DW_BIG_IMAGE) {
        /* Image by image: its rows stay in L1 across the micro-tiles. */
        for (int64_t t = 0; t < j->T; t++) {
            const float *dt[DW_MR];
            for (int i = 0; i < DW_MR; i++) dt[i] = d[i] + t * p->DS;
            for (int b = 0; b < nb; b++)
                dense_dw_mk(dt, j->frames + t * f->IS, off[b], p->nvq, 1, 0, 0, tail,
                            lanes[b]);
        }
    } else {
        /* Small images: each micro-tile runs over the whole tile at once. */
        for (int b = 0; b < nb; b++)
            dense_dw_mk(d, j->frames, off[b], p->nvq, j->T, p->DS, f->IS, tail, lanes[b]);
    }
    for (int b = 0; b < nb; b++)
        for (int i = 0; i < DW_MR && co0 + i < co_end; i++)
            for (int jj = 0; jj < DW_NK; jj++) {
                const int64_t k = k0 + b * DW_NK + jj;
                if (k >= p->Ks) break;
                const float *l = lanes[b] + (i * DW_NK + jj) * 16;
                float s = 0.0f;
                for (int x = 0; x < 16; x++) s += l[x];
                j->dws[(co0 + i) * p->Ks + k] += s;
            }
}

/* Output-gradient rows at the frame stride Wp, zeros in columns >= W_out
 * and after the last row: tasks (image, output channel). */
typedef struct {
    const cd__conv2d *c;
    const dense_plan *p;
    float *dwide;
    const float *dout;        /* first image of the tile */
} wide_job;

static void wide_task(void *ctx, int64_t i)
{
    const wide_job *j = ctx;
    const cd__conv2d *c = j->c;
    const dense_plan *p = j->p;
    const int64_t t = i / c->C_out, co = i % c->C_out;
    float *d = j->dwide + t * p->DS + co * p->QS;
    const float *s = j->dout + (t * c->C_out + co) * c->H_out * c->W_out;
    for (int64_t y = 0; y < c->H_out; y++) {
        float *r = d + y * p->in.Wp;
        memcpy(r, s + y * c->W_out, (size_t)c->W_out * sizeof *d);
        const int64_t end = min64(p->QS, (y + 1) * p->in.Wp) - y * p->in.Wp;
        memset(r + c->W_out, 0, (size_t)(end - c->W_out) * sizeof *d);
    }
    const int64_t filled = min64(p->QS, c->H_out * p->in.Wp);
    memset(d + filled, 0, (size_t)(p->QS - filled) * sizeof *d);
}

/* The output gradient transposed to pixel-major rows of CoP floats, zero
 * past C_out: tasks (image, block of 64 pixels). */
typedef struct {
    const cd__conv2d *c;
    const dense_plan *p;
    float *dT;
    const float *dout;        /* first image of the tile */
} tr_job;

#define TR_BLOCK 64

static void tr_task(void *ctx, int64_t i)
{
    const tr_job *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t P = c->H_out * c->W_out, npb = ceil_div(P, TR_BLOCK);
    const int64_t t = i / npb, p0 = (i % npb) * TR_BLOCK, np = min64(TR_BLOCK, P - p0);
    const int64_t CoP = j->p->CoP;
    float *dst = j->dT + t * j->p->DS + p0 * CoP;
    const float *src = j->dout + t * c->C_out * P + p0;
    for (int64_t q = 0; q < np; q++) {
        float *row = dst + q * CoP;
        for (int64_t co = 0; co < c->C_out; co++) row[co] = src[co * P + q];
        for (int64_t co = c->C_out; co < CoP; co++) row[co] = 0.0f;
    }
}

/* Channel-vectorised weight gradient of a tile into dwsT[k][CoP]: tasks
 * (block of 16 cvv output channels, chunk of tap rows), each summing image
 * by image so one image's doutT stays in cache across the chunk. */
typedef struct {
    const dense_plan *p;
    const float *frames;
    const float *dT;
    int64_t T, nrows, nrb, chunk, nch;
    float *dwsT;
} cv_dw_job;

static void cv_dw_task(void *ctx, int64_t i)
{
    const cv_dw_job *j = ctx;
    const dense_plan *p = j->p;
    const framing *f = &p->in;
    const int64_t cb = i / j->nch, ch = i % j->nch;
    const int64_t rb0 = ch * j->chunk, rb1 = min64(j->nrb, rb0 + j->chunk);
    const int64_t co0 = cb * 16 * p->cvv, R = p->cvR;
    const dwcv_fn fn = p->cv->fn[2 - p->cvv];
    for (int64_t t = 0; t < j->T; t++) {
        const float *img = j->frames + t * f->IS;
        for (int64_t rb = rb0; rb < rb1; rb++) {
            const float *rows[8];
            for (int64_t r = 0; r < R; r++) {
                const int64_t ri = min64(rb * R + r, j->nrows - 1);
                rows[r] = img + (ri / p->khs) * f->CS + (ri % p->khs) * f->Wp;
            }
            fn(rows, j->dT + t * p->DS + co0, p->CoP, p->Hout, p->Wout, f->Wp,
               (int)min64(R, j->nrows - rb * R), j->dwsT + rb * R * p->kws * p->CoP + co0,
               p->CoP);
        }
    }
}

/* din (one image) += the frame gradient mapped back through
 * space-to-depth, cropping the padding. */
static void d2s_image(float *din, const float *dxf, const cd__conv2d *c, const dense_plan *p)
{
    const int64_t s = p->s;
    for (int64_t ci = 0; ci < c->C_in; ci++) {
        const float *src = dxf + ci * s * s * p->Hd * p->Wd;
        float *dst = din + ci * c->H * c->W;
        for (int64_t iy = 0; iy < c->H; iy++) {
            const int64_t u = iy + c->pad, Y = u / s, a = u % s;
            if (Y >= p->Hd) break;
            for (int64_t ix = 0; ix < c->W; ix++) {
                const int64_t v = ix + c->pad, X = v / s, b = v % s;
                if (X >= p->Wd) break;
                dst[iy * c->W + ix] += src[((a * s + b) * p->Hd + Y) * p->Wd + X];
            }
        }
    }
}

/* One image end to end: its frames (unless the source is used directly),
 * then every compute item, then for a strided input gradient the mapping
 * back through space-to-depth. Forward tasks for tiles of IMAGE_TASKS_MIN
 * images or more, and the input-gradient tasks of backward. */
typedef struct {
    const cd__conv2d *c;
    const dense_plan *p;
    const dense_job *j;
    float *build;             /* frames to fill (= j->frames), or NULL */
    const float *src;         /* first source image of the tile */
    int64_t src_is;           /* floats per source image */
    bool backward;            /* frames from dout; d2s when !din_direct */
    float *din;               /* first image of the tile, for d2s */
    const struct epi_job *epi; /* forward: per-image epilogue, or NULL */
} dense_image_job;

/* A forward epilogue for the images of one tile: fn(ctx, n0 + t). */
typedef struct epi_job {
    cd__task_fn fn;
    void *ctx;
    int64_t n0;
} epi_job;

static void epi_task(void *ctx, int64_t t)
{
    const epi_job *e = ctx;
    e->fn(e->ctx, e->n0 + t);
}

static void dense_image_task(void *ctx, int64_t t)
{
    const dense_image_job *ij = ctx;
    const dense_job *j = ij->j;
    if (ij->build) {
        float *img = ij->build + t * j->f->IS;
        if (ij->backward) {
            pad_image(img, ij->src + t * ij->src_is, j->f);
        } else {
            for (int64_t ci = 0; ci < ij->c->C_in; ci++)
                frames_plane(img, ij->src + t * ij->src_is, ij->c, j->f, ci);
        }
    }
    for (int64_t item = 0; item < j->items; item++) dense_item(j, t, item);
    if (ij->backward && !ij->p->din_direct)
        d2s_image(ij->din + t * ij->c->C_in * ij->c->H * ij->c->W,
                  j->dst + t * j->dst_is, ij->c, ij->p);
    /* While the image's output is still in this core's cache. */
    if (ij->epi) epi_task((void *)ij->epi, t);
}

static void dense_forward(const cd__conv2d *c, float *out, const float *in,
                          const float *weight, const float *bias, float *ws,
                          cd__task_fn epi, void *epi_ctx)
{
    const dense_plan p = dense_planner(c);
    float *wpk = ws, *frames = ws + p.wpk + p.dws;
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * c->H_out * c->W_out;
    dense_job j = {.f = &p.in, .frames = frames, .C = p.Cs, .kh = p.khs, .kw = p.kws,
                   .wpk = wpk, .G = p.G, .M = p.Cog, .Ho = c->H_out, .Wo = c->W_out,
                   .dst_is = out_img, .bias = c->bias ? bias : NULL, .accumulate = false};
    dense_job_finish(&j);
    pack_weights(wpk, weight, c, &p, j.cv ? j.cvb : MRB, false);
    for (int64_t n0 = 0; n0 < c->N; n0 += p.T) {
        const int64_t T = min64(p.T, c->N - n0);
        const float *src = in + n0 * in_img;
        j.dst = out + n0 * out_img;
        j.frames = p.in_direct ? src : frames;
        const epi_job e = {epi, epi_ctx, n0};
        if (p.in_direct && !(epi && T >= IMAGE_TASKS_MIN)) {
            cd__parallel_for(T * j.items, dense_item_task, &j);
        } else if (T >= IMAGE_TASKS_MIN) {
            /* One task per image (building its frames unless it is read in
             * place), so the epilogue finds the image's output in cache. */
            dense_image_job ij = {c, &p, &j, p.in_direct ? NULL : frames, src, in_img, false,
                                  NULL, epi ? &e : NULL};
            cd__parallel_for(T, dense_image_task, &ij);
            continue;
        } else {
            frames_job fj = {c, &p.in, frames, src};
            cd__parallel_for(T * c->C_in, frames_task, &fj);
            cd__parallel_for(T * j.items, dense_item_task, &j);
        }
        if (epi) cd__parallel_for(T, epi_task, (void *)&e);
    }
}

/* Queue the frames and wide rows of the tile at image n0 for the weight
 * gradient, or point its job at the sources when they need no copy. */
static void prep_dw(task_list *tl, const cd__conv2d *c, const dense_plan *p, dense_dw_job *wj,
                    cv_dw_job *cj, frames_job *fj, wide_job *wdj, tr_job *trj,
                    const float *in, const float *dout, int64_t n0)
{
    const int64_t T = min64(p->T, c->N - n0);
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * c->H_out * c->W_out;
    if (p->in_direct) {
        wj->frames = cj->frames = in + n0 * in_img;
    } else {
        fj->src = in + n0 * in_img;
        tasks_add(tl, frames_task, fj, T * c->C_in);
    }
    if (p->cv) {
        trj->dout = dout + n0 * out_img;
        tasks_add(tl, tr_task, trj, T * ceil_div(c->H_out * c->W_out, TR_BLOCK));
    } else if (p->wide_direct) {
        wj->dwide = dout + n0 * out_img;
    } else {
        wdj->dout = dout + n0 * out_img;
        tasks_add(tl, wide_task, wdj, T * c->C_out);
    }
}

/*
 * Backward, pipelined over tiles so that each tile costs one wake-up of the
 * workers: step i runs the input-gradient image tasks of tile i, the
 * weight-gradient tasks of tile i (on frames built in step i-1) and builds
 * the weight-gradient frames of tile i+1 into the other buffer. Sources
 * that need no padding are read in place.
 */
static void dense_backward(const cd__conv2d *c, float *din, bool din_set, float *dweight,
                           const float *dout, const float *in, const float *weight,
                           float *ws)
{
    const dense_plan p = dense_planner(c);
    /* din_direct stores every din element once, so it can overwrite; the
     * space-to-depth path adds frame gradients and needs a cleared din. */
    if (din && din_set && !p.din_direct)
        memset(din, 0, (size_t)(c->N * c->C_in * c->H * c->W) * sizeof *din);
    float *wpkt = ws, *dws = ws + p.wpk;
    float *fin[2], *dwide[2];
    fin[0] = dws + p.dws;
    fin[1] = fin[0] + p.T * p.fin;
    dwide[0] = fin[1] + p.T * p.fin;
    dwide[1] = dwide[0] + p.T * p.dwide;
    float *fdout = dwide[1] + p.T * p.dwide;
    float *dxf = fdout + p.T * p.fdout;
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * c->H_out * c->W_out;
    const int64_t ntiles = ceil_div(c->N, p.T);
    if (dweight) memset(dws, 0, (size_t)p.dws * sizeof *dws);

    dense_job dj = {.f = &p.dout, .frames = fdout, .C = p.Cog, .kh = p.khs, .kw = p.kws,
                    .wpk = wpkt, .G = p.G, .M = p.Cs, .accumulate = p.din_direct && !din_set};
    if (p.din_direct) dj.Ho = c->H, dj.Wo = c->W, dj.dst_is = in_img;
    else dj.Ho = p.Hd, dj.Wo = p.Wd, dj.dst_is = p.dxs, dj.dst = dxf;
    dense_job_finish(&dj);
    if (din) pack_weights(wpkt, weight, c, &p, dj.cv ? dj.cvb : MRB, true);
    dense_image_job ij = {c, &p, &dj, p.dout_direct ? NULL : fdout, NULL, out_img, true, NULL,
                          NULL};
    dense_dw_job wj[2];
    cv_dw_job cj[2];
    frames_job fj[2];
    wide_job wdj[2];
    tr_job trj[2];
    const int64_t nrows = p.Cs * p.khs, nrb = p.cv ? ceil_div(nrows, p.cvR) : 0;
    const int64_t ncb = p.cv ? p.CoP / (16 * p.cvv) : 0;
    /* About 16 tasks: enough for the threads, few enough that each reuses
     * an image's doutT over many tap rows. */
    const int64_t chunk = p.cv ? max64(1, ceil_div(nrb * ncb, 16)) : 0;
    for (int k = 0; k < 2; k++) {
        wj[k] = (dense_dw_job){&p, fin[k], dwide[k], 0, ceil_div(p.Ks, DW_NK * DW_NB),
                               ceil_div(p.Cog, DW_MR), dws};
        cj[k] = (cv_dw_job){&p, fin[k], dwide[k], 0, nrows, nrb, chunk,
                            p.cv ? ceil_div(nrb, chunk) : 0, dws};
        fj[k] = (frames_job){c, &p.in, fin[k], NULL};
        wdj[k] = (wide_job){c, &p, dwide[k], NULL};
        trj[k] = (tr_job){c, &p, dwide[k], NULL};
    }
    task_list tl = {0};
    if (dweight) {
        prep_dw(&tl, c, &p, &wj[0], &cj[0], &fj[0], &wdj[0], &trj[0], in, dout, 0);
        tasks_run(&tl);
    }
    for (int64_t i = 0; i < ntiles; i++) {
        const int64_t n0 = i * p.T, T = min64(p.T, c->N - n0);
        const int cur = (int)(i & 1), nxt = cur ^ 1;
        if (din) {
            ij.src = dout + n0 * out_img;
            ij.din = din + n0 * in_img;
            if (p.dout_direct) dj.frames = dout + n0 * out_img;
            if (p.din_direct) dj.dst = din + n0 * in_img;
            tasks_add(&tl, dense_image_task, &ij, T);
        }
        if (dweight) {
            if (p.cv) {
                cj[cur].T = T;
                tasks_add(&tl, cv_dw_task, &cj[cur], ncb * cj[cur].nch);
            } else {
                wj[cur].T = T;
                tasks_add(&tl, dense_dw_task, &wj[cur], p.G * wj[cur].ncb * wj[cur].nkc);
            }
            if (i + 1 < ntiles)
                prep_dw(&tl, c, &p, &wj[nxt], &cj[nxt], &fj[nxt], &wdj[nxt], &trj[nxt], in,
                        dout, n0 + p.T);
        }
        tasks_run(&tl);
    }
    if (dweight) {
        for (int64_t co = 0; co < c->C_out; co++)
            for (int64_t cs = 0; cs < p.Cs; cs++)
                for (int64_t ky = 0; ky < p.khs; ky++)
                    for (int64_t kx = 0; kx < p.kws; kx++) {
                        const int64_t s = p.s, ci = cs / (s * s), a = (cs / s) % s, b = cs % s;
                        const int64_t y = ky * s + a, x = kx * s + b;
                        if (y >= c->kh || x >= c->kw) continue;
                        const int64_t k = (cs * p.khs + ky) * p.kws + kx;
                        dweight[((co * p.Cig + ci) * c->kh + y) * c->kw + x] +=
                            p.cv ? dws[k * p.CoP + co] : dws[co * p.Ks + k];
                    }
    }
}

#endif /* CONV_X86 */

#ifdef CONV_X86

/* ==== depthwise kernels (AVX-512) ========================================== */

/*
 * R output rows x NV vectors of one channel: dst[i][16j + lane] (+)=
 * sum over (kx, ky) of w[ky][kx] * src[(i + ky) wp + 16 j + kx + lane].
 * The last vector of a row stores only the lanes in `last`.
 */
ALWAYS_INLINE AVX512 void dw_mk(const int K, const int R, const int NV, const float *src,
                                int64_t wp, const float *w, float *dst, int64_t wo,
                                __mmask16 last, float bias, bool accumulate)
{
    __m512 acc[8][2];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < NV; j++) acc[i][j] = _mm512_set1_ps(accumulate ? 0.0f : bias);
    /* Fully unrolled below kx, so that every ky = r - i is a constant and
     * the accumulators and weights stay in registers. */
    for (int kx = 0; kx < K; kx++) {
        __m512 wv[7];
        UNROLL for (int ky = 0; ky < K; ky++) wv[ky] = _mm512_set1_ps(w[ky * K + kx]);
        UNROLL for (int r = 0; r < R + K - 1; r++) {
            UNROLL for (int j = 0; j < NV; j++) {
                const __m512 x = _mm512_loadu_ps(src + r * wp + kx + 16 * j);
                UNROLL for (int i = 0; i < R; i++) {
                    const int ky = r - i;
                    if (ky >= 0 && ky < K) acc[i][j] = _mm512_fmadd_ps(x, wv[ky], acc[i][j]);
                }
            }
        }
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < NV; j++) {
            float *o = dst + i * wo + 16 * j;
            const __mmask16 m = j == NV - 1 ? last : (__mmask16)0xFFFF;
            __m512 v = acc[i][j];
            if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, o), v);
            _mm512_mask_storeu_ps(o, m, v);
        }
}

typedef void (*dw_mk_fn)(const float *, int64_t, const float *, float *, int64_t,
                         __mmask16, float, bool);

#define DW_MK(K, R, NV)                                                            \
    static AVX512 void dw_mk_##K##_##R##_##NV(const float *src, int64_t wp,        \
                                              const float *w, float *dst, int64_t wo, \
                                              __mmask16 last, float bias, bool acc) \
    {                                                                              \
        dw_mk(K, R, NV, src, wp, w, dst, wo, last, bias, acc);                     \
    }
#define DW_MK_K(K)                                                                 \
    DW_MK(K, 8, 2) DW_MK(K, 4, 2) DW_MK(K, 2, 2) DW_MK(K, 1, 2)                    \
    DW_MK(K, 8, 1) DW_MK(K, 4, 1) DW_MK(K, 2, 1) DW_MK(K, 1, 1)
DW_MK_K(3)
DW_MK_K(5)
DW_MK_K(7)

/* [K index][R index: 8, 4, 2, 1][NV - 1] */
static const dw_mk_fn dw_kernels[3][4][2] = {
    {{dw_mk_3_8_1, dw_mk_3_8_2}, {dw_mk_3_4_1, dw_mk_3_4_2},
     {dw_mk_3_2_1, dw_mk_3_2_2}, {dw_mk_3_1_1, dw_mk_3_1_2}},
    {{dw_mk_5_8_1, dw_mk_5_8_2}, {dw_mk_5_4_1, dw_mk_5_4_2},
     {dw_mk_5_2_1, dw_mk_5_2_2}, {dw_mk_5_1_1, dw_mk_5_1_2}},
    {{dw_mk_7_8_1, dw_mk_7_8_2}, {dw_mk_7_4_1, dw_mk_7_4_2},
     {dw_mk_7_2_1, dw_mk_7_2_2}, {dw_mk_7_1_1, dw_mk_7_1_2}},
};

/* One channel plane: dst (Ho x Wo) (+)= depthwise(src frame, w K x K). */
static void dw_plane(int64_t K, const float *src, int64_t wp, const float *w, float *dst,
                     int64_t Ho, int64_t Wo, float bias, bool accumulate)
{
    const int ki = K == 3 ? 0 : K == 5 ? 1 : 2;
    const int64_t nvec = ceil_div(Wo, 16);
    static const int rows[4] = {8, 4, 2, 1};
    int64_t y = 0;
    for (int ri = 0; ri < 4; ri++) {
        for (; y + rows[ri] <= Ho; y += rows[ri]) {
            for (int64_t v = 0; v < nvec; v += 2) {
                const int nv = (int)min64(2, nvec - v);
                const int64_t lastn = min64(16, Wo - 16 * (v + nv - 1));
                const __mmask16 last = (__mmask16)((1u << lastn) - 1u);
                dw_kernels[ki][ri][nv - 1](src + y * wp + 16 * v, wp, w,
                                           dst + y * Wo + 16 * v, Wo, last, bias, accumulate);
            }
        }
    }
}

/*
 * Weight gradient of one channel over nimg images, G kernel rows at a
 * time: lanes[g][kx] = sum over images and pixels of dout[y][x] *
 * frame[y + g][x + kx], frames starting at kernel row ky0. Frame row r
 * serves output rows y = r - g, so its K shifted vectors are loaded once
 * for all G kernel rows.
 */
ALWAYS_INLINE AVX512 void dwg_mk(const int K, const int G, const float *frame0, int64_t wp,
                                 int64_t fstride, const float *dout0, int64_t dstride,
                                 int64_t nimg, int64_t Ho, int64_t Wo, float *lanes)
{
    __m512 acc[3][7];
    UNROLL for (int g = 0; g < G; g++)
        UNROLL for (int kx = 0; kx < K; kx++) acc[g][kx] = _mm512_setzero_ps();
    for (int64_t t = 0; t < nimg; t++) {
        const float *frame = frame0 + t * fstride, *dout = dout0 + t * dstride;
        for (int64_t r = 0; r < Ho + G - 1; r++) {
            for (int64_t x0 = 0; x0 < Wo; x0 += 16) {
                const int64_t n = min64(16, Wo - x0);
                const __mmask16 m = (__mmask16)((1u << n) - 1u);
                const float *s = frame + r * wp + x0;
                __m512 x[7];
                UNROLL for (int kx = 0; kx < K; kx++) x[kx] = _mm512_loadu_ps(s + kx);
                UNROLL for (int g = 0; g < G; g++) {
                    const int64_t y = r - g;
                    if (y < 0 || y >= Ho) continue;
                    const __m512 d = _mm512_maskz_loadu_ps(m, dout + y * Wo + x0);
                    UNROLL for (int kx = 0; kx < K; kx++)
                        acc[g][kx] = _mm512_fmadd_ps(d, x[kx], acc[g][kx]);
                }
            }
        }
    }
    UNROLL for (int g = 0; g < G; g++)
        UNROLL for (int kx = 0; kx < K; kx++)
            _mm512_storeu_ps(lanes + (g * K + kx) * 16, acc[g][kx]);
}

typedef void (*dwg_mk_fn)(const float *, int64_t, int64_t, const float *, int64_t, int64_t,
                          int64_t, int64_t, float *);
#define DWG_MK(K, G)                                                               \
    static AVX512 void dwg_mk_##K##_##G(const float *frame, int64_t wp, int64_t fstride, \
                                        const float *dout, int64_t dstride,         \
                                        int64_t nimg, int64_t Ho, int64_t Wo,        \
                                        float *lanes)                                \
    {                                                                              \
        dwg_mk(K, G, frame, wp, fstride, dout, dstride, nimg, Ho, Wo, lanes);      \
    }
DWG_MK(3, 3)
DWG_MK(5, 3)
DWG_MK(5, 2)
DWG_MK(7, 3)
DWG_MK(7, 1)

#endif /* CONV_X86 */

/* ==== depthwise driver (AVX-512 or portable) ============================== */

/* Plane frames (each with its own slack) for a tile of images. */
typedef struct {
    int64_t T;
    framing in;       /* padded inputs */
    framing dout;     /* output gradients padded for the input gradient */
    int64_t wf;       /* floats of flipped weights */
} dw_geom;

static dw_geom dw_geometry(const cd__conv2d *c)
{
    dw_geom g;
    g.in = make_plane_frame(c->C_in, c->H, c->W, c->pad, c->pad);
    g.dout = make_plane_frame(c->C_out, c->H_out, c->W_out, c->kh - 1 - c->pad,
                              c->kw - 1 - c->pad);
    g.wf = round_up(c->C_in * c->kh * c->kw, 16);
    const int64_t per_image = g.in.IS + g.dout.IS;
    g.T = max64(1, min64(min64(c->N, DIRECT_TILE), TILE_BUDGET / per_image));
    return g;
}

static size_t dw_workspace(const cd__conv2d *c)
{
    const dw_geom g = dw_geometry(c);
    return (size_t)(g.wf + g.T * (g.in.IS + g.dout.IS));
}

/* Portable plane kernel, in strips of up to DW_STRIP columns so the
 * running row stays in L1; taps go in the same (kx, ky) order as the
 * vector kernel. */
#define DW_STRIP 256

static void dw_plane_portable(int64_t kh, int64_t kw, const float *src, int64_t wp,
                              const float *w, float *dst, int64_t Ho, int64_t Wo,
                              float bias, bool accumulate)
{
    float row[DW_STRIP];
    for (int64_t x0 = 0; x0 < Wo; x0 += DW_STRIP) {
        const int64_t wn = min64(DW_STRIP, Wo - x0);
        for (int64_t y = 0; y < Ho; y++) {
            for (int64_t x = 0; x < wn; x++) row[x] = accumulate ? 0.0f : bias;
            for (int64_t kx = 0; kx < kw; kx++)
                for (int64_t ky = 0; ky < kh; ky++) {
                    const float wt = w[ky * kw + kx];
                    const float *s = src + (y + ky) * wp + x0 + kx;
                    for (int64_t x = 0; x < wn; x++) row[x] += wt * s[x];
                }
            float *o = dst + y * Wo + x0;
            if (accumulate) for (int64_t x = 0; x < wn; x++) o[x] += row[x];
            else memcpy(o, row, (size_t)wn * sizeof *o);
        }
    }
}

/* Plane tasks (image, channel): pad the source plane, then convolve it. */
typedef struct {
    const cd__conv2d *c;
    const framing *f;
    float *frames;
    const float *src;     /* first image of the tile */
    const float *w;       /* K x K per channel (flipped for the input gradient) */
    const float *bias;
    float *dst;           /* first image of the tile, C x Ho x Wo each */
    int64_t Ho, Wo, T;
    bool accumulate, fast;
} dw_job;

/* Padded planes up to this many floats are built on the task's stack: a
 * tile buffer slot would be written by a different core from one tile to
 * the next, and moving its cache lines between cores costs more than the
 * small convolution itself. */
#define DW_LOCAL 8192

static void dw_plane_task(const dw_job *j, int64_t i)
{
    const cd__conv2d *c = j->c;
    const int64_t ch = i % c->C_in;
    _Alignas(64) float local[DW_LOCAL];
    float *frame = j->f->CS <= DW_LOCAL ? local : j->frames + i * j->f->CS;
    pad_plane(frame, j->src + i * j->f->H * j->f->W, j->f);
    const float *w = j->w + ch * c->kh * c->kw;
    float *dst = j->dst + i * j->Ho * j->Wo;
    const float b = j->bias ? j->bias[ch] : 0.0f;
#ifdef CONV_X86
    if (j->fast) {
        dw_plane(c->kh, frame, j->f->Wp, w, dst, j->Ho, j->Wo, b, j->accumulate);
        return;
    }
#endif
    dw_plane_portable(c->kh, c->kw, frame, j->f->Wp, w, dst, j->Ho, j->Wo, b, j->accumulate);
}

/* Planes per task: small planes are grouped so a task is worth taking. */
static int64_t dw_planes_per_task(const cd__conv2d *c)
{
    return max64(1, 131072 / (c->H_out * c->W_out * c->kh * c->kw));
}

static void dw_task(void *ctx, int64_t i)
{
    const dw_job *j = ctx;
    const int64_t per = dw_planes_per_task(j->c), n = j->T * j->c->C_in;
    for (int64_t p = i * per; p < n && p < (i + 1) * per; p++) dw_plane_task(j, p);
}

/* Weight gradient of one channel: pad that channel of every image of the
 * tile, then sum over images in order. */
typedef struct {
    const cd__conv2d *c;
    const framing *f;
    float *frames;
    const float *in;       /* first image of the tile */
    const float *dout;     /* first image of the tile */
    int64_t T;
    float *dweight;
    bool fast;
} dwg_job;

static void dwg_channel(const dwg_job *j, int64_t ch)
{
    const cd__conv2d *c = j->c;
    const framing *f = j->f;
    const int64_t C = c->C_in, Ho = c->H_out, Wo = c->W_out, kh = c->kh, kw = c->kw;
    float *dw = j->dweight + ch * kh * kw;
    /* This channel's planes of the tile, image after image (fs apart). */
    _Alignas(64) float local[DW_LOCAL];
    const bool loc = j->T * f->CS <= DW_LOCAL;
    float *frames = loc ? local : j->frames + ch * f->CS;
    const int64_t fs = loc ? f->CS : C * f->CS;
    for (int64_t t = 0; t < j->T; t++)
        pad_plane(frames + t * fs, j->in + (t * C + ch) * c->H * c->W, f);
#ifdef CONV_X86
    if (j->fast) {
        /* Kernel rows three at a time: 4 x 5 or 4 x 7 accumulators plus the
         * operands do not fit the 32 registers. */
        float lanes[3 * 7 * 16], sum[7 * 7];
        for (int64_t ky0 = 0; ky0 < kh; ky0 += 3) {
            const int64_t G = min64(3, kh - ky0);
            dwg_mk_fn mk = kh == 3 ? dwg_mk_3_3
                         : kh == 5 ? (G == 3 ? dwg_mk_5_3 : dwg_mk_5_2)
                                   : (G == 3 ? dwg_mk_7_3 : dwg_mk_7_1);
            mk(frames + ky0 * f->Wp, f->Wp, fs, j->dout + ch * Ho * Wo, C * Ho * Wo, j->T, Ho,
               Wo, lanes);
            for (int64_t g = 0; g < G; g++)
                for (int64_t kx = 0; kx < kw; kx++) {
                    const float *l = lanes + (g * kw + kx) * 16;
                    float s = 0.0f;
                    for (int x = 0; x < 16; x++) s += l[x];
                    sum[(ky0 + g) * kw + kx] = s;
                }
        }
        /* One pass over dweight at the end: neighbouring channels share its
         * cache lines, which would bounce between cores on every add. */
        for (int64_t i = 0; i < kh * kw; i++) dw[i] += sum[i];
        return;
    }
#endif
    for (int64_t ky = 0; ky < kh; ky++)
        for (int64_t kx = 0; kx < kw; kx++) {
            double s = 0.0;
            for (int64_t t = 0; t < j->T; t++) {
                const float *fr = frames + t * fs;
                const float *d = j->dout + (t * C + ch) * Ho * Wo;
                float lane[16] = {0};
                for (int64_t y = 0; y < Ho; y++) {
                    const float *srow = fr + (y + ky) * f->Wp + kx, *drow = d + y * Wo;
                    int64_t x = 0;
                    for (; x + 16 <= Wo; x += 16)
                        for (int l = 0; l < 16; l++) lane[l] += drow[x + l] * srow[x + l];
                    for (; x < Wo; x++) lane[x & 15] += drow[x] * srow[x];
                }
                for (int l = 0; l < 16; l++) s += lane[l];
            }
            dw[ky * kw + kx] += (float)s;
        }
}

/* Channels per weight-gradient task: a run of neighbouring channels reads
 * contiguous memory in every image, where single channels picked by
 * alternating cores would share (and fetch twice) the cache lines at
 * their plane boundaries. */
static int64_t dwg_channels_per_task(const cd__conv2d *c)
{
    return max64(1, min64(16, 4096 / (c->H_out * c->W_out)));
}

static void dwg_task(void *ctx, int64_t i)
{
    const dwg_job *j = ctx;
    const int64_t per = dwg_channels_per_task(j->c);
    for (int64_t ch = i * per; ch < j->c->C_in && ch < (i + 1) * per; ch++) dwg_channel(j, ch);
}

static void flip_depthwise(float *wf, const float *w, int64_t C, int64_t kh, int64_t kw)
{
    for (int64_t ch = 0; ch < C; ch++)
        for (int64_t ky = 0; ky < kh; ky++)
            for (int64_t kx = 0; kx < kw; kx++)
                wf[(ch * kh + ky) * kw + kx] =
                    w[(ch * kh + kh - 1 - ky) * kw + kw - 1 - kx];
}

static void depthwise_forward(const cd__conv2d *c, float *out, const float *in,
                              const float *weight, const float *bias, float *ws, bool fast)
{
    const dw_geom g = dw_geometry(c);
    float *frames = ws + g.wf;
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * c->H_out * c->W_out;
    for (int64_t n0 = 0; n0 < c->N; n0 += g.T) {
        const int64_t T = min64(g.T, c->N - n0);
        dw_job j = {c, &g.in, frames, in + n0 * in_img, weight, c->bias ? bias : NULL,
                    out + n0 * out_img, c->H_out, c->W_out, T, false, fast};
        cd__parallel_for(ceil_div(T * c->C_in, dw_planes_per_task(c)), dw_task, &j);
    }
}

/* Per tile, one wake-up: input-gradient plane tasks and weight-gradient
 * channel tasks, each padding what it reads. */
static void depthwise_backward(const cd__conv2d *c, float *din, float *dweight,
                               const float *dout, const float *in, const float *weight,
                               float *ws, bool fast)
{
    const dw_geom g = dw_geometry(c);
    float *wf = ws;
    float *fin = ws + g.wf;
    float *fdout = fin + g.T * g.in.IS;
    if (din) flip_depthwise(wf, weight, c->C_in, c->kh, c->kw);
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * c->H_out * c->W_out;
    task_list tl = {0};
    for (int64_t n0 = 0; n0 < c->N; n0 += g.T) {
        const int64_t T = min64(g.T, c->N - n0);
        dw_job j = {c, &g.dout, fdout, dout + n0 * out_img, wf, NULL,
                    din ? din + n0 * in_img : NULL, c->H, c->W, T, true, fast};
        dwg_job k = {c, &g.in, fin, in ? in + n0 * in_img : NULL, dout + n0 * out_img, T,
                     dweight, fast};
        if (din) tasks_add(&tl, dw_task, &j, ceil_div(T * c->C_in, dw_planes_per_task(c)));
        if (dweight) tasks_add(&tl, dwg_task, &k, ceil_div(c->C_in, dwg_channels_per_task(c)));
        tasks_run(&tl);
    }
}

/* ==== im2col + GEMM path ==================================================== */

/*
 * The portable path. The BLAS runs single-threaded (threads.c pins it:
 * OpenBLAS's own threading changes the bits with the thread count), so
 * the work is cut into fixed tasks here, each calling sgemm on its own
 * slice:
 *   forward      (image, block of output rows): im2col of the block, then
 *                W_g x col into the output, for each group;
 *   input grad   (image, group, block of input channels): those rows of
 *                W_g^T x dout, then col2im into that block's planes;
 *   weight grad  (group, block of im2col rows): those im2col rows of every
 *                image of the tile, dout x col^T summed image by image into
 *                an accumulator that is added to dweight at the end.
 * A 1x1 convolution with stride 1 and no padding skips im2col.
 */
typedef struct {
    int64_t T;        /* images per tile */
    int64_t Cig, Cog; /* channels per group */
    int64_t Kg;       /* Cig kh kw: rows of one group's im2col */
    int64_t K;        /* C_in kh kw: rows of an image's im2col */
    int64_t P;        /* output pixels per image */
    int64_t RB, nrb;  /* output rows per forward block, blocks per image */
    int64_t CB, ncb;  /* input channels per input-gradient block, blocks per group */
    int64_t KB, nkb;  /* im2col rows per weight-gradient block, blocks per group */
    int64_t col;      /* floats of column buffer per image */
    int64_t dws;      /* floats of weight-gradient accumulator */
} gemm_geom;

static bool is_pointwise(const cd__conv2d *c)
{
    return c->kh == 1 && c->kw == 1 && c->stride == 1 && c->pad == 0 && c->groups == 1;
}

static gemm_geom gemm_geometry(const cd__conv2d *c)
{
    gemm_geom g;
    g.Cig = c->C_in / c->groups;
    g.Cog = c->C_out / c->groups;
    g.Kg = g.Cig * c->kh * c->kw;
    g.K = c->C_in * c->kh * c->kw;
    g.P = c->H_out * c->W_out;
    /* Blocks of about 256 pixels, 64 im2col rows, 8 channels: enough tasks
     * for the threads even for one image, big enough for sgemm. */
    g.RB = min64(c->H_out, max64(1, 256 / c->W_out));
    g.nrb = ceil_div(c->H_out, g.RB);
    g.CB = min64(g.Cig, 8);
    g.ncb = ceil_div(g.Cig, g.CB);
    g.KB = min64(g.Kg, 64);
    g.nkb = ceil_div(g.Kg, g.KB);
    /* Forward blocks, input-gradient rows and weight-gradient rows of one
     * image all fit in the larger of K x P and the forward blocks. */
    g.col = round_up(max64(g.K * g.P, g.nrb * g.Kg * g.RB * c->W_out), 16);
    g.dws = round_up(c->C_out * g.Kg, 16);
    const int64_t per_image = g.col + c->C_in * c->H * c->W;
    g.T = max64(1, min64(min64(c->N, GEMM_MAX_TILE), GEMM_BUDGET / per_image));
    return g;
}

static size_t gemm_workspace(const cd__conv2d *c)
{
    if (is_pointwise(c)) return 0;
    const gemm_geom g = gemm_geometry(c);
    return (size_t)(g.dws + g.T * (g.col + c->C_in * c->H * c->W));
}

/* im2col rows k in [k0, k1) of group gr of one image, output rows
 * [oy0, oy1), into col (row stride ld). Row k = (ci, ky, kx) holds the
 * input pixel under tap (ky, kx) of each output pixel, or 0. */
static void im2col_rows(float *col, int64_t ld, const cd__conv2d *c, const float *img,
                        int64_t gr, int64_t k0, int64_t k1, int64_t oy0, int64_t oy1)
{
    const int64_t s = c->stride, H = c->H, W = c->W, Wo = c->W_out;
    const int64_t Cig = c->C_in / c->groups, khw = c->kh * c->kw;
    for (int64_t k = k0; k < k1; k++) {
        const int64_t ci = k / khw, ky = (k % khw) / c->kw, kx = k % c->kw;
        const float *plane = img + (gr * Cig + ci) * H * W;
        float *row = col + (k - k0) * ld;
        const int64_t xo = kx - c->pad;
        /* Output columns whose input column is inside the image. */
        const int64_t lo = min64(Wo, xo >= 0 ? 0 : ceil_div(-xo, s));
        const int64_t hi = max64(lo, min64(Wo, xo < W ? ceil_div(W - xo, s) : 0));
        for (int64_t oy = oy0; oy < oy1; oy++) {
            float *r = row + (oy - oy0) * Wo;
            const int64_t iy = oy * s - c->pad + ky;
            if (iy < 0 || iy >= H) {
                memset(r, 0, (size_t)Wo * sizeof *r);
                continue;
            }
            const float *src = plane + iy * W + xo;
            for (int64_t ox = 0; ox < lo; ox++) r[ox] = 0.0f;
            if (s == 1) memcpy(r + lo, src + lo, (size_t)(hi - lo) * sizeof *r);
            else for (int64_t ox = lo; ox < hi; ox++) r[ox] = src[ox * s];
            for (int64_t ox = hi; ox < Wo; ox++) r[ox] = 0.0f;
        }
    }
}

/* plane (H x W) += col2im of im2col rows of channel ci (kh kw rows of
 * stride P), summed in scratch first so it is added once. */
static void col2im_plane(float *plane, float *scratch, const float *col, const cd__conv2d *c)
{
    const int64_t s = c->stride, H = c->H, W = c->W, Ho = c->H_out, Wo = c->W_out;
    memset(scratch, 0, (size_t)(H * W) * sizeof *scratch);
    for (int64_t ky = 0; ky < c->kh; ky++)
        for (int64_t kx = 0; kx < c->kw; kx++) {
            const float *row = col + (ky * c->kw + kx) * Ho * Wo;
            const int64_t xo = kx - c->pad;
            const int64_t lo = min64(Wo, xo >= 0 ? 0 : ceil_div(-xo, s));
            const int64_t hi = max64(lo, min64(Wo, xo < W ? ceil_div(W - xo, s) : 0));
            for (int64_t oy = 0; oy < Ho; oy++) {
                const int64_t iy = oy * s - c->pad + ky;
                if (iy < 0 || iy >= H) continue;
                const float *r = row + oy * Wo;
                float *dst = scratch + iy * W + xo;
                if (s == 1) for (int64_t ox = lo; ox < hi; ox++) dst[ox] += r[ox];
                else for (int64_t ox = lo; ox < hi; ox++) dst[ox * s] += r[ox];
            }
        }
    for (int64_t x = 0; x < H * W; x++) plane[x] += scratch[x];
}

typedef struct {
    const cd__conv2d *c;
    const gemm_geom *g;
    float *col;           /* T x g->col */
    float *scratch;       /* T x C_in x H W */
    float *dws;
    const float *in, *dout, *weight, *bias;   /* first image of the tile */
    float *out, *din;
    int64_t T;
} gemm_job;

static void gemm_fwd_task(void *ctx, int64_t i)
{
    const gemm_job *j = ctx;
    const cd__conv2d *c = j->c;
    const gemm_geom *g = j->g;
    const int64_t t = i / g->nrb, rb = i % g->nrb;
    const int64_t oy0 = rb * g->RB, oy1 = min64(c->H_out, oy0 + g->RB);
    const int64_t np = (oy1 - oy0) * c->W_out, p0 = oy0 * c->W_out;
    const float *img = j->in + t * c->C_in * c->H * c->W;
    float *col = j->col + t * g->col + rb * g->Kg * g->RB * c->W_out;
    for (int64_t gr = 0; gr < c->groups; gr++) {
        float *o = j->out + (t * c->C_out + gr * g->Cog) * g->P + p0;
        im2col_rows(col, np, c, img, gr, 0, g->Kg, oy0, oy1);
        if (j->bias)
            for (int64_t co = 0; co < g->Cog; co++)
                for (int64_t x = 0; x < np; x++) o[co * g->P + x] = j->bias[gr * g->Cog + co];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->Cog, (int)np,
                    (int)g->Kg, 1.0f, j->weight + gr * g->Cog * g->Kg, (int)g->Kg, col,
                    (int)np, j->bias ? 1.0f : 0.0f, o, (int)g->P);
    }
}

static void gemm_din_task(void *ctx, int64_t i)
{
    const gemm_job *j = ctx;
    const cd__conv2d *c = j->c;
    const gemm_geom *g = j->g;
    const int64_t per_t = c->groups * g->ncb;
    const int64_t t = i / per_t, gr = (i % per_t) / g->ncb, cb = i % g->ncb;
    const int64_t ci0 = cb * g->CB, nci = min64(g->CB, g->Cig - ci0);
    const int64_t khw = c->kh * c->kw;
    float *col = j->col + t * g->col + (gr * g->Kg + ci0 * khw) * g->P;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(nci * khw), (int)g->P,
                (int)g->Cog, 1.0f, j->weight + gr * g->Cog * g->Kg + ci0 * khw, (int)g->Kg,
                j->dout + (t * c->C_out + gr * g->Cog) * g->P, (int)g->P, 0.0f, col,
                (int)g->P);
    for (int64_t ci = ci0; ci < ci0 + nci; ci++) {
        const int64_t ch = gr * g->Cig + ci;
        col2im_plane(j->din + (t * c->C_in + ch) * c->H * c->W,
                     j->scratch + (t * c->C_in + ch) * c->H * c->W,
                     col + (ci - ci0) * khw * g->P, c);
    }
}

static void gemm_dw_task(void *ctx, int64_t i)
{
    const gemm_job *j = ctx;
    const cd__conv2d *c = j->c;
    const gemm_geom *g = j->g;
    const int64_t gr = i / g->nkb, kb = i % g->nkb;
    const int64_t k0 = kb * g->KB, nk = min64(g->KB, g->Kg - k0);
    /* This block's rows of every image's column buffer. */
    float *col = j->col + (gr * g->Kg + k0) * g->P;
    for (int64_t t = 0; t < j->T; t++) {
        float *ct = col + t * g->col;
        im2col_rows(ct, g->P, c, j->in + t * c->C_in * c->H * c->W, gr, k0, k0 + nk, 0,
                    c->H_out);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->Cog, (int)nk, (int)g->P,
                    1.0f, j->dout + (t * c->C_out + gr * g->Cog) * g->P, (int)g->P, ct,
                    (int)g->P, 1.0f, j->dws + gr * g->Cog * g->Kg + k0, (int)g->Kg);
    }
}

/* 1x1: tasks over (image, block of 256 pixels) for forward and input
 * gradient, over blocks of 64 input channels for the weight gradient. */
typedef struct {
    const cd__conv2d *c;
    const float *in, *dout, *weight, *bias;
    float *out, *din, *dweight;
    int64_t nblk;
} pw_job;

#define PW_BLOCK 256
#define PW_CBLOCK 64

static void pw_fwd_task(void *ctx, int64_t i)
{
    const pw_job *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t P = c->H * c->W, n = i / j->nblk, p0 = (i % j->nblk) * PW_BLOCK;
    const int64_t np = min64(PW_BLOCK, P - p0);
    float *o = j->out + n * c->C_out * P + p0;
    if (j->bias)
        for (int64_t co = 0; co < c->C_out; co++)
            for (int64_t x = 0; x < np; x++) o[co * P + x] = j->bias[co];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)c->C_out, (int)np,
                (int)c->C_in, 1.0f, j->weight, (int)c->C_in, j->in + n * c->C_in * P + p0,
                (int)P, j->bias ? 1.0f : 0.0f, o, (int)P);
}

static void pw_din_task(void *ctx, int64_t i)
{
    const pw_job *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t P = c->H * c->W, n = i / j->nblk, p0 = (i % j->nblk) * PW_BLOCK;
    const int64_t np = min64(PW_BLOCK, P - p0);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c->C_in, (int)np,
                (int)c->C_out, 1.0f, j->weight, (int)c->C_in, j->dout + n * c->C_out * P + p0,
                (int)P, 1.0f, j->din + n * c->C_in * P + p0, (int)P);
}

static void pw_dw_task(void *ctx, int64_t i)
{
    const pw_job *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t P = c->H * c->W, ci0 = i * PW_CBLOCK, nci = min64(PW_CBLOCK, c->C_in - ci0);
    for (int64_t n = 0; n < c->N; n++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c->C_out, (int)nci, (int)P,
                    1.0f, j->dout + n * c->C_out * P, (int)P, j->in + (n * c->C_in + ci0) * P,
                    (int)P, 1.0f, j->dweight + ci0, (int)c->C_in);
}

static void gemm_forward(const cd__conv2d *c, float *out, const float *in,
                         const float *weight, const float *bias, float *ws)
{
    const gemm_geom g = gemm_geometry(c);
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * g.P;
    if (is_pointwise(c)) {
        pw_job j = {c, in, NULL, weight, c->bias ? bias : NULL, out, NULL, NULL,
                    ceil_div(g.P, PW_BLOCK)};
        cd__parallel_for(c->N * j.nblk, pw_fwd_task, &j);
        return;
    }
    gemm_job j = {c, &g, ws + g.dws, NULL, NULL, NULL, NULL, weight, c->bias ? bias : NULL,
                  NULL, NULL, 0};
    for (int64_t n0 = 0; n0 < c->N; n0 += g.T) {
        j.T = min64(g.T, c->N - n0);
        j.in = in + n0 * in_img;
        j.out = out + n0 * out_img;
        cd__parallel_for(j.T * g.nrb, gemm_fwd_task, &j);
    }
}

static void gemm_backward(const cd__conv2d *c, float *din, float *dweight,
                          const float *dout, const float *in, const float *weight,
                          float *ws)
{
    const gemm_geom g = gemm_geometry(c);
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * g.P;
    if (is_pointwise(c)) {
        pw_job j = {c, in, dout, weight, NULL, NULL, din, dweight, ceil_div(g.P, PW_BLOCK)};
        if (din) cd__parallel_for(c->N * j.nblk, pw_din_task, &j);
        if (dweight) cd__parallel_for(ceil_div(c->C_in, PW_CBLOCK), pw_dw_task, &j);
        return;
    }
    float *dws = ws, *col = ws + g.dws, *scratch = col + g.T * g.col;
    gemm_job j = {c, &g, col, scratch, dws, NULL, NULL, weight, NULL, NULL, NULL, 0};
    if (dweight) memset(dws, 0, (size_t)(c->C_out * g.Kg) * sizeof *dws);
    for (int64_t n0 = 0; n0 < c->N; n0 += g.T) {
        j.T = min64(g.T, c->N - n0);
        j.in = in ? in + n0 * in_img : NULL;
        j.dout = dout + n0 * out_img;
        j.din = din ? din + n0 * in_img : NULL;
        /* Weight-gradient rows first: the input gradient reuses the buffer. */
        if (dweight) cd__parallel_for(c->groups * g.nkb, gemm_dw_task, &j);
        if (din) cd__parallel_for(j.T * c->groups * g.ncb, gemm_din_task, &j);
    }
    if (dweight)
        for (int64_t i = 0; i < c->C_out * g.Kg; i++) dweight[i] += dws[i];
}

/* ==== entry points ========================================================== */

/* Buffers start on a cache line whatever the caller's alignment: tasks on
 * different cores write neighbouring frames, and a line shared across a
 * frame boundary would bounce between them. Every buffer size is a
 * multiple of 16 floats, so aligning the base aligns them all. */
static float *align_ws(float *ws)
{
    const uintptr_t a = (uintptr_t)ws, r = a % CD__ALIGN;
    return r ? (float *)(void *)((char *)ws + (CD__ALIGN - r)) : ws;
}

size_t cd__conv2d_workspace(const cd__conv2d *c)
{
    const size_t slack = CD__ALIGN / sizeof(float);
    switch (choose_path(c)) {
#ifdef CONV_X86
    case PATH_DENSE: return dense_workspace(c) + slack;
    case PATH_FFT: return cd__conv2d_fft_workspace(c) + slack;
#endif
    case PATH_DEPTHWISE:
    case PATH_DEPTHWISE_PORTABLE: return dw_workspace(c) + slack;
    default: break;
    }
    return gemm_workspace(c) + slack;
}

void cd__conv2d_forward_epi(const cd__conv2d *c, float *out, const float *in,
                            const float *weight, const float *bias, float *ws,
                            cd__task_fn epi, void *epi_ctx)
{
    ws = align_ws(ws);
    switch (choose_path(c)) {
#ifdef CONV_X86
    case PATH_DENSE: dense_forward(c, out, in, weight, bias, ws, epi, epi_ctx); return;
    case PATH_FFT: cd__conv2d_fft_forward(c, out, in, weight, bias, ws, epi, epi_ctx); return;
#endif
    case PATH_DEPTHWISE: depthwise_forward(c, out, in, weight, bias, ws, true); break;
    case PATH_DEPTHWISE_PORTABLE: depthwise_forward(c, out, in, weight, bias, ws, false); break;
    default: gemm_forward(c, out, in, weight, bias, ws); break;
    }
    if (epi) cd__parallel_for(c->N, epi, epi_ctx);
}

void cd__conv2d_forward(const cd__conv2d *c, float *out, const float *in,
                        const float *weight, const float *bias, float *ws)
{
    cd__conv2d_forward_epi(c, out, in, weight, bias, ws, NULL, NULL);
}

/* din_set: overwrite din instead of adding into it. Only the dense and
 * spectral paths can do that without clearing din first. */
static void conv_backward(const cd__conv2d *c, float *din, bool din_set, float *dweight,
                          float *dbias, const float *dout, const float *in,
                          const float *weight, float *ws)
{
    const enum conv_path path = choose_path(c);
    /* The spectral path reads the bias gradient off its spectra for free. */
    const bool spectral_bias = path == PATH_FFT && (din || dweight);
    if (dbias && c->bias && !spectral_bias)
        bias_backward(dbias, dout, c->N, c->C_out, c->H_out * c->W_out);
    if (!din && !dweight) return;
    ws = align_ws(ws);
    if (din && din_set && path != PATH_DENSE && path != PATH_FFT)
        memset(din, 0, (size_t)(c->N * c->C_in * c->H * c->W) * sizeof *din);
    switch (path) {
#ifdef CONV_X86
    case PATH_DENSE: dense_backward(c, din, din_set, dweight, dout, in, weight, ws); return;
    case PATH_FFT:
        cd__conv2d_fft_backward(c, din, din_set, dweight, c->bias ? dbias : NULL, dout, in,
                                weight, ws);
        return;
#endif
    case PATH_DEPTHWISE: depthwise_backward(c, din, dweight, dout, in, weight, ws, true); return;
    case PATH_DEPTHWISE_PORTABLE:
        depthwise_backward(c, din, dweight, dout, in, weight, ws, false);
        return;
    default: break;
    }
    gemm_backward(c, din, dweight, dout, in, weight, ws);
}

/* `in` may be NULL when dweight is (the transposed convolution relies on
 * it). */
void cd__conv2d_backward(const cd__conv2d *c, float *din, float *dweight,
                         float *dbias, const float *dout, const float *in,
                         const float *weight, float *ws)
{
    conv_backward(c, din, false, dweight, dbias, dout, in, weight, ws);
}

void cd__conv2d_backward_set(const cd__conv2d *c, float *din, float *dweight,
                             float *dbias, const float *dout, const float *in,
                             const float *weight, float *ws)
{
    conv_backward(c, din, true, dweight, dbias, dout, in, weight, ws);
}

/*
 * check_ops.c - the linear, activation, norm, embedding and loss kernels:
 * gradients through the shared checker (cd_gradcheck), forward values
 * against closed forms and naive loops, and thread-count independence.
 * The PyTorch parity of the same ops lives in check_parity.c.
 */
#include "test_util.h"

#include <inttypes.h>
#include <float.h>
#include <math.h>

#include "gradcheck.h"
#include "ops/ops.h"
#include "ops/vmath.h"

/* ---- small helpers -------------------------------------------------------- */

/* Every test buffer comes from one pool, freed at the end of the test. */
#define POOL_MAX 64
static void *g_pool[POOL_MAX];
static int g_npool;

static float *buf(int64_t n)
{
    ck_assert_int_lt(g_npool, POOL_MAX);
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    ck_assert_ptr_nonnull(p);
    return g_pool[g_npool++] = p;
}

static float *randn(int64_t n, uint64_t seed, float scale)
{
    float *p = buf(n);
    cd_gc_randn(p, n, seed, scale);
    return p;
}

static void pool_free(void)
{
    while (g_npool > 0) free(g_pool[--g_npool]);
}

static void teardown(void) { pool_free(); }

static void report(const char *what, double maa) { printf("worst maa %-32s %.2e\n", what, maa); }

/* The checker's noise is the float rounding of L divided by the step, so
 * steps are as large as each op's truncation error allows: 0.1 for ops
 * linear in the checked input (no truncation error at all), 0.05 for the
 * smooth ones, whose inputs vary on a scale of 1 or more. */
static cd_gc_opts step_opts(double eps)
{
    cd_gc_opts o = cd_gc_default_opts();
    o.eps = eps;
    return o;
}

/* Assert two float arrays are bit-identical. */
static void assert_same_bits(const float *a, const float *b, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(memcmp(&a[i], &b[i], sizeof *a) == 0, "%s differs at %lld: %.9g vs %.9g",
                      what, (long long)i, a[i], b[i]);
}

static void assert_close(double got, double want, double tol, const char *what)
{
    ck_assert_msg(fabs(got - want) <= tol, "%s: got %.10g, want %.10g (tol %.1e)", what, got, want,
                  tol);
}

/* ---- linear ---------------------------------------------------------------- */

typedef struct {
    float *out, *dout, *in, *W, *b, *din, *dW, *db;
    int64_t B, I, O;
} linear_t;

static void linear_fwd(void *ctx)
{
    linear_t *c = ctx;
    cd__linear_forward(c->out, c->in, c->W, c->b, c->B, c->I, c->O);
}

static void linear_bwd(void *ctx)
{
    linear_t *c = ctx;
    cd__linear_backward(c->din, c->dW, c->db, c->dout, c->in, c->W, c->B, c->I, c->O);
}

static void gradcheck_linear(int64_t B, int64_t I, int64_t O)
{
    linear_t c = {.B = B, .I = I, .O = O};
    c.in = randn(B * I, 1, 1.0f), c.W = randn(O * I, 2, 0.5f), c.b = randn(O, 3, 0.5f);
    c.out = buf(B * O), c.dout = buf(B * O);
    c.din = buf(B * I), c.dW = buf(O * I), c.db = buf(O);
    cd_gc_op op = {.name = "linear",
                   .ctx = &c,
                   .forward = linear_fwd,
                   .backward = linear_bwd,
                   .out = c.out,
                   .dout = c.dout,
                   .n_out = B * O};
    cd_gc_add_input(&op, "in", c.in, c.din, B * I);
    cd_gc_add_input(&op, "W", c.W, c.dW, O * I);
    cd_gc_add_input(&op, "b", c.b, c.db, O);
    cd_gc_opts o = step_opts(0.1);
    report("linear", cd_gradcheck(&op, &o));
}

START_TEST(linear_gradients)
{
    gradcheck_linear(1, 5, 3);
    gradcheck_linear(3, 7, 4);
    gradcheck_linear(3, 4, 9);
}
END_TEST

START_TEST(linear_forward_matches_naive)
{
    const int64_t B = 3, I = 6, O = 5;
    float *in = randn(B * I, 4, 1.0f), *W = randn(O * I, 5, 1.0f), *b = randn(O, 6, 1.0f);
    float *out = buf(B * O), *nob = buf(B * O);
    cd__linear_forward(out, in, W, b, B, I, O);
    cd__linear_forward(nob, in, W, NULL, B, I, O);
    for (int64_t r = 0; r < B; r++)
        for (int64_t o = 0; o < O; o++) {
            double s = 0.0;
            for (int64_t i = 0; i < I; i++) s += (double)in[r * I + i] * W[o * I + i];
            assert_close(nob[r * O + o], s, 1e-5, "linear without bias");
            assert_close(out[r * O + o], s + b[o], 1e-5, "linear with bias");
        }
}
END_TEST

/* ---- bmm -------------------------------------------------------------------- */

typedef struct {
    float *C, *C0, *dout, *A, *Bm, *dA, *dB;
    int64_t batch, M, N, K;
    bool ta, tb;
    float alpha, beta;
} bmm_t;

static void bmm_fwd(void *ctx)
{
    bmm_t *c = ctx;
    memcpy(c->C, c->C0, (size_t)(c->batch * c->M * c->N) * sizeof(float));
    cd__bmm(c->C, c->A, c->Bm, c->batch, c->M, c->N, c->K, c->ta, c->tb, c->alpha, c->beta);
}

/* With op(A) = A', op(B) = B': dA' = alpha dC B'^T and dB' = alpha A'^T dC,
 * each written back through cd__bmm itself (transposed where A or B is). */
static void bmm_bwd(void *ctx)
{
    bmm_t *c = ctx;
    const int64_t M = c->M, N = c->N, K = c->K;
    if (!c->ta)
        cd__bmm(c->dA, c->dout, c->Bm, c->batch, M, K, N, false, !c->tb, c->alpha, 1.0f);
    else
        cd__bmm(c->dA, c->Bm, c->dout, c->batch, K, M, N, c->tb, true, c->alpha, 1.0f);
    if (!c->tb)
        cd__bmm(c->dB, c->A, c->dout, c->batch, K, N, M, !c->ta, false, c->alpha, 1.0f);
    else
        cd__bmm(c->dB, c->dout, c->A, c->batch, N, K, M, true, c->ta, c->alpha, 1.0f);
}

static void gradcheck_bmm(int64_t batch, bool ta, bool tb)
{
    const int64_t M = 3, N = 5, K = 4;
    bmm_t c =
        {.batch = batch, .M = M, .N = N, .K = K, .ta = ta, .tb = tb, .alpha = 0.75f, .beta = 0.5f};
    c.A = randn(batch * M * K, 7, 1.0f), c.Bm = randn(batch * K * N, 8, 1.0f);
    c.C0 = randn(batch * M * N, 9, 1.0f), c.C = buf(batch * M * N);
    c.dout = buf(batch * M * N), c.dA = buf(batch * M * K), c.dB = buf(batch * K * N);
    cd_gc_op op = {.name = "bmm",
                   .ctx = &c,
                   .forward = bmm_fwd,
                   .backward = bmm_bwd,
                   .out = c.C,
                   .dout = c.dout,
                   .n_out = batch * M * N};
    cd_gc_add_input(&op, "A", c.A, c.dA, batch * M * K);
    cd_gc_add_input(&op, "B", c.Bm, c.dB, batch * K * N);
    cd_gc_opts o = step_opts(0.1);
    report("bmm", cd_gradcheck(&op, &o));
}

START_TEST(bmm_gradients)
{
    for (int t = 0; t < 4; t++) {
        gradcheck_bmm(1, t & 1, t & 2);
        gradcheck_bmm(3, t & 1, t & 2);
        pool_free();
    }
}
END_TEST

START_TEST(bmm_matches_naive)
{
    const int64_t batch = 3, M = 4, N = 3, K = 5;
    for (int t = 0; t < 4; t++) {
        const bool ta = t & 1, tb = t & 2;
        float *A = randn(batch * M * K, 10, 1.0f), *B = randn(batch * K * N, 11, 1.0f);
        float *C = randn(batch * M * N, 12, 1.0f), *C0 = buf(batch * M * N);
        memcpy(C0, C, (size_t)(batch * M * N) * sizeof *C);
        cd__bmm(C, A, B, batch, M, N, K, ta, tb, 1.5f, -0.25f);
        for (int64_t i = 0; i < batch; i++)
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < N; n++) {
                    const float *a = A + i * M * K, *b = B + i * K * N;
                    double s = 0.0;
                    for (int64_t k = 0; k < K; k++)
                        s += (double)(ta ? a[k * M + m] : a[m * K + k]) *
                             (tb ? b[n * K + k] : b[k * N + n]);
                    const int64_t at = (i * M + m) * N + n;
                    assert_close(C[at], 1.5 * s - 0.25 * C0[at], 1e-5, "bmm");
                }
        pool_free();
    }
}
END_TEST

/* ---- GELU ------------------------------------------------------------------ */

typedef struct {
    float *out, *dout, *x, *dx;
    int64_t n;
} unary_t;

static void gelu_fwd(void *ctx)
{
    unary_t *c = ctx;
    cd__gelu_forward(c->out, c->x, c->n);
}

static void gelu_bwd(void *ctx)
{
    unary_t *c = ctx;
    cd__gelu_backward(c->dx, c->dout, c->x, c->n);
}

START_TEST(gelu_values)
{
    static const float x[] = {1.0f, -1.0f, 0.0f, 3.0f, -6.0f};
    static const double want[] = {0.8413447460685429, -0.15865525393145707, 0.0, 2.9959502,
                                  -5.9e-9};
    float out[5];
    cd__gelu_forward(out, x, 5);
    for (int i = 0; i < 5; i++) assert_close(out[i], want[i], 2e-7 * (1.0 + fabs(want[i])), "gelu");
    /* GELU'(0) = 1/2, GELU'(1) = Phi(1) + phi(1). */
    float d[2] = {0, 0};
    const float ones[2] = {1, 1}, at[2] = {0.0f, 1.0f};
    cd__gelu_backward(d, ones, at, 2);
    assert_close(d[0], 0.5, 1e-7, "gelu'(0)");
    assert_close(d[1], 0.8413447460685429 + 0.24197072451914337, 2e-7, "gelu'(1)");
}
END_TEST

/* GELU and GELU' in one pass per image (the UNet block's backward), then
 * dout times GELU' per image: the same values as the separate passes, for
 * images longer than a vector and not a multiple of one. */
START_TEST(gelu_pair_matches_separate_passes)
{
    const int64_t N = 3, per = 5003, n = N * per;
    float *x = malloc((size_t)n * sizeof *x), *dout = malloc((size_t)n * sizeof *dout);
    float *g = malloc((size_t)n * sizeof *g), *want_g = malloc((size_t)n * sizeof *want_g);
    float *want_d = calloc((size_t)n, sizeof *want_d), *d = malloc((size_t)n * sizeof *d);
    cd_gc_randn(x, n, 5, 3.0f);
    cd_gc_randn(dout, n, 6, 1.0f);
    cd__gelu_forward(want_g, x, n);
    cd__gelu_backward(want_d, dout, x, n);
    memcpy(d, dout, (size_t)n * sizeof *d);
    cd__gelu_pair_args pair = {g, x, per};
    cd__image_args mul = {d, x, per};
    for (int64_t i = 0; i < N; i++) {
        cd__gelu_pair_image_task(&pair, i);
        cd__mul_image_task(&mul, i);
    }
    /* == rather than memcmp: the adding backward turns -0 into +0. */
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(g[i] == want_g[i], "GELU differs at %lld", (long long)i);
        ck_assert_msg(d[i] == want_d[i], "the gradient differs at %lld", (long long)i);
    }
    free(x), free(dout), free(g), free(want_g), free(want_d), free(d);
}
END_TEST

START_TEST(gelu_gradients)
{
    unary_t c = {.n = 61};
    c.x = randn(c.n, 13, 2.0f), c.out = buf(c.n), c.dout = buf(c.n), c.dx = buf(c.n);
    cd_gc_op op = {.name = "gelu",
                   .ctx = &c,
                   .forward = gelu_fwd,
                   .backward = gelu_bwd,
                   .out = c.out,
                   .dout = c.dout,
                   .n_out = c.n};
    cd_gc_add_input(&op, "x", c.x, c.dx, c.n);
    cd_gc_opts o = step_opts(0.05);
    report("gelu", cd_gradcheck(&op, &o));
}
END_TEST

/* The inlined erf and exp (vmath.h) against double, and the vectorised
 * GELU kernels against the scalar functions: one code path per CPU, but
 * both must agree to the bit on every input (tails included). */
START_TEST(gelu_fast_math)
{
    const int64_t n = 200003;
    float *x = buf(n), *y = buf(n), *g = buf(n), *ones = buf(n);
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = -12.0f + 24.0f * (float)i / (float)(n - 1);
        ones[i] = 1.0f;
        const double want = erf((double)x[i]);
        const double ulp = nextafterf((float)fabs(want), INFINITY) - (float)fabs(want);
        const double e = fabs(cd__erff(x[i]) - want) / ulp;
        worst = e > worst ? e : worst;
        if (x[i] <= 0.0f) {
            const double w = exp((double)x[i]);
            assert_close(cd__expf_neg(x[i]), w, 1.5e-7 * w, "exp");
        }
    }
    printf("erf worst error %.3f ulp\n", worst);
    ck_assert_msg(worst <= 1.5, "erf error %.3f ulp", worst);
    cd__gelu_forward(y, x, n);
    cd__gelu_backward(g, ones, x, n);
    for (int64_t i = 0; i < n; i++) {
        const float fy = cd__gelu(x[i]), fg = cd__gelu_grad(x[i]);
        ck_assert_msg(memcmp(&fy, &y[i], sizeof fy) == 0 && memcmp(&fg, &g[i], sizeof fg) == 0,
                      "gelu at %.9g: vector %.9g %.9g, scalar %.9g %.9g", x[i], y[i], g[i], fy, fg);
    }
    ck_assert(cd__gelu(INFINITY) == INFINITY && isnan(cd__gelu(NAN)));
}
END_TEST

/* ---- add_channel and concat ------------------------------------------------ */

typedef struct {
    float *out, *dout, *x, *v, *dx, *dv;
    int64_t N, C, C2, HW;
} chan_t;

static void add_channel_fwd(void *ctx)
{
    chan_t *c = ctx;
    cd__add_channel_forward(c->out, c->x, c->v, c->N, c->C, c->HW);
}

static void add_channel_bwd(void *ctx)
{
    chan_t *c = ctx;
    cd__add_channel_backward(c->dx, c->dv, c->dout, c->N, c->C, c->HW);
}

static void gradcheck_add_channel(int64_t N, int64_t C, int64_t H, int64_t W)
{
    chan_t c = {.N = N, .C = C, .HW = H * W};
    const int64_t n = N * C * H * W;
    c.x = randn(n, 14, 1.0f), c.v = randn(N * C, 15, 1.0f);
    c.out = buf(n), c.dout = buf(n), c.dx = buf(n), c.dv = buf(N * C);
    cd_gc_op op = {.name = "add_channel",
                   .ctx = &c,
                   .forward = add_channel_fwd,
                   .backward = add_channel_bwd,
                   .out = c.out,
                   .dout = c.dout,
                   .n_out = n};
    cd_gc_add_input(&op, "x", c.x, c.dx, n);
    cd_gc_add_input(&op, "v", c.v, c.dv, N * C);
    cd_gc_opts o = step_opts(0.1);
    report("add_channel", cd_gradcheck(&op, &o));
}

START_TEST(add_channel_gradients)
{
    gradcheck_add_channel(3, 2, 5, 7);
    gradcheck_add_channel(1, 4, 3, 2);
}
END_TEST

START_TEST(add_channel_in_place)
{
    const int64_t N = 2, C = 3, HW = 4;
    float *x = randn(N * C * HW, 16, 1.0f), *v = randn(N * C, 17, 1.0f);
    float *out = buf(N * C * HW);
    cd__add_channel_forward(out, x, v, N, C, HW);
    cd__add_channel_forward(x, x, v, N, C, HW);
    assert_same_bits(out, x, N * C * HW, "in-place add_channel");
    for (int64_t i = 0; i < N * C * HW; i++) ck_assert(out[i] == out[i]);
}
END_TEST

static void concat_fwd(void *ctx)
{
    chan_t *c = ctx;
    cd__concat_forward(c->out, c->x, c->v, c->N, c->C, c->C2, c->HW);
}

static void concat_bwd(void *ctx)
{
    chan_t *c = ctx;
    cd__concat_backward(c->dx, c->dv, c->dout, c->N, c->C, c->C2, c->HW);
}

static void gradcheck_concat(int64_t N, int64_t Ca, int64_t Cb, int64_t HW)
{
    chan_t c = {.N = N, .C = Ca, .C2 = Cb, .HW = HW};
    const int64_t n = N * (Ca + Cb) * HW;
    c.x = randn(N * Ca * HW, 18, 1.0f), c.v = randn(N * Cb * HW, 19, 1.0f);
    c.out = buf(n), c.dout = buf(n), c.dx = buf(N * Ca * HW), c.dv = buf(N * Cb * HW);
    cd_gc_op op = {.name = "concat",
                   .ctx = &c,
                   .forward = concat_fwd,
                   .backward = concat_bwd,
                   .out = c.out,
                   .dout = c.dout,
                   .n_out = n};
    cd_gc_add_input(&op, "a", c.x, c.dx, N * Ca * HW);
    cd_gc_add_input(&op, "b", c.v, c.dv, N * Cb * HW);
    cd_gc_opts o = step_opts(0.1);
    report("concat", cd_gradcheck(&op, &o));
    /* Layout: sample n holds a's channels, then b's. */
    concat_fwd(&c);
    for (int64_t s = 0; s < N; s++) {
        ck_assert(c.out[s * (Ca + Cb) * HW] == c.x[s * Ca * HW]);
        ck_assert(c.out[(s * (Ca + Cb) + Ca) * HW] == c.v[s * Cb * HW]);
    }
}

START_TEST(concat_gradients)
{
    gradcheck_concat(3, 2, 3, 35);
    gradcheck_concat(1, 1, 2, 6);
}
END_TEST

/* ---- softmax ---------------------------------------------------------------- */

typedef struct {
    float *out, *dout, *x, *dx;
    int64_t rows, cols;
} softmax_t;

static void softmax_fwd(void *ctx)
{
    softmax_t *c = ctx;
    cd__softmax_forward(c->out, c->x, c->rows, c->cols);
}

static void softmax_bwd(void *ctx)
{
    softmax_t *c = ctx;
    cd__softmax_backward(c->dx, c->dout, c->out, c->rows, c->cols);
}

START_TEST(softmax_gradients)
{
    softmax_t c = {.rows = 6, .cols = 35};
    const int64_t n = c.rows * c.cols;
    c.x = randn(n, 20, 1.0f), c.out = buf(n), c.dout = buf(n), c.dx = buf(n);
    cd_gc_op op = {.name = "softmax",
                   .ctx = &c,
                   .forward = softmax_fwd,
                   .backward = softmax_bwd,
                   .out = c.out,
                   .dout = c.dout,
                   .n_out = n};
    cd_gc_add_input(&op, "x", c.x, c.dx, n);
    cd_gc_opts o = step_opts(0.05);
    report("softmax", cd_gradcheck(&op, &o));
}
END_TEST

START_TEST(softmax_properties)
{
    const int64_t rows = 5, cols = 49, n = rows * cols;
    float *x = randn(n, 21, 3.0f), *y = buf(n), *xs = buf(n), *ys = buf(n);
    for (int64_t i = 0; i < n; i++) xs[i] = x[i] + 1000.0f * (float)(i / cols + 1);
    cd__softmax_forward(y, x, rows, cols);
    cd__softmax_forward(ys, xs, rows, cols);
    for (int64_t r = 0; r < rows; r++) {
        double s = 0.0;
        for (int64_t j = 0; j < cols; j++) {
            ck_assert(y[r * cols + j] > 0.0f && isfinite(ys[r * cols + j]));
            s += y[r * cols + j];
        }
        assert_close(s, 1.0, 1e-6, "softmax row sum");
    }
    /* A large shift changes x's rounding, hence the tolerance. */
    for (int64_t i = 0; i < n; i++)
        assert_close(ys[i], y[i], 2e-4 * y[i] + 1e-7, "shifted softmax");
    float big[3] = {1000.0f, 1000.0f, -1000.0f}, out[3];
    cd__softmax_forward(out, big, 1, 3);
    assert_close(out[0], 0.5, 1e-7, "softmax of large values");
    assert_close(out[2], 0.0, 1e-30, "softmax of large values");
}
END_TEST

/* ---- the AVX-512 and scalar paths ------------------------------------------ */

static void assert_all_close(const float *a, const float *b, int64_t n, double rel,
                             const char *what)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)a[i] - b[i]) <= rel * (fabs((double)b[i]) + 1e-3),
                      "%s[%" PRId64 "]: vector %.9g, scalar %.9g", what, i, a[i], b[i]);
}

/* Softmax and layer norm run one of two paths depending on the CPU; both
 * are checked here on lengths with vector tails (on a CPU without
 * AVX-512 both runs take the scalar path and agree trivially). */
START_TEST(vector_and_scalar_paths_agree)
{
    const int64_t rows = 7, cols = 49, n = rows * cols, D = 3 * 7 * 7 + 5;
    float *x = randn(n, 31, 4.0f), *g = randn(n, 32, 1.0f), *w = randn(D, 33, 1.0f);
    float *b = randn(D, 34, 1.0f), *lx = randn(2 * D, 35, 2.0f), *lg = randn(2 * D, 36, 1.0f);
    float *out[2], *din[2], *lo[2], *ldx[2], *m[2], *r[2];
    for (int k = 0; k < 2; k++) {
        cd__cpu_force_portable(CD__KERNELS_VMATH, k == 1);
        out[k] = buf(n), din[k] = buf(n), lo[k] = buf(2 * D), ldx[k] = buf(2 * D);
        m[k] = buf(2), r[k] = buf(2);
        cd__softmax_forward(out[k], x, rows, cols);
        cd__softmax_backward(din[k], g, out[k], rows, cols);
        cd__layernorm_forward(lo[k], m[k], r[k], lx, w, b, 2, D, 1e-5f);
        cd__layernorm_backward(ldx[k], NULL, NULL, lg, lx, w, m[k], r[k], 2, D);
        cd__layernorm_forward(lo[k] + D, m[k], r[k], lx, NULL, NULL, 1, D, 1e-5f);
        cd__layernorm_backward(ldx[k] + D, NULL, NULL, lg, lx, NULL, m[k], r[k], 1, D);
    }
    cd__cpu_force_portable(CD__KERNELS_VMATH, false);
    assert_all_close(out[0], out[1], n, 1e-6, "softmax");
    assert_all_close(din[0], din[1], n, 1e-5, "softmax backward");
    assert_all_close(lo[0], lo[1], 2 * D, 1e-6, "layer norm");
    assert_all_close(ldx[0], ldx[1], 2 * D, 1e-5, "layer norm backward");
    assert_all_close(m[0], m[1], 2, 1e-7, "layer norm mean");
    assert_all_close(r[0], r[1], 2, 1e-7, "layer norm rstd");
}
END_TEST

/* ---- the attention's small products ------------------------------------------ */

/* Every entry of C against the product in double, within the bound on a
 * k-term float sum: 2 k eps sum_p |alpha a_ip b_pj| (a(i, p) and b(p, j)
 * read through the strides below), so only a wrong entry can fail. */
static void check_product(const float *C, int64_t ldc, const float *A, int64_t a_row, int64_t a_col,
                          const float *B, int64_t b_row, int64_t b_col, int64_t m, int64_t n,
                          int64_t k, float alpha, const char *what)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double ref = 0, mag = 0;
            for (int64_t p = 0; p < k; p++) {
                const double t = (double)A[i * a_row + p * a_col] * B[p * b_row + j * b_col];
                ref += t, mag += fabs(t);
            }
            ref *= alpha, mag *= fabs(alpha);
            const double err = fabs(C[i * ldc + j] - ref);
            ck_assert_msg(err <= 2.0 * (double)k * FLT_EPSILON * mag + 1e-30,
                          "%s %" PRId64 "x%" PRId64 "x%" PRId64 " [%" PRId64 "][%" PRId64
                          "]: %.9g, want %.9g",
                          what, m, n, k, i, j, C[i * ldc + j], ref);
        }
}

/* n floats of N(0, 1) from seed, freed by the caller. */
static float *gaussians(int64_t n, uint64_t seed)
{
    float *p = malloc((size_t)n * sizeof *p);
    ck_assert_ptr_nonnull(p);
    cd_gc_randn(p, n, seed, 1.0f);
    return p;
}

/* The columns n..ldc-1 of C's m rows still hold gaussians(m * ldc, seed). */
static void check_padding_kept(const float *C, int64_t ldc, int64_t m, int64_t n, uint64_t seed,
                               const char *what)
{
    float *was = gaussians(m * ldc, seed);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = n; j < ldc; j++)
            ck_assert_msg(C[i * ldc + j] == was[i * ldc + j], "%s wrote [%" PRId64 "][%" PRId64 "]",
                          what, i, j);
    free(was);
}

START_TEST(small_products_match_double)
{
    /* The UNet's attention shapes (dh 32 and 16 on 28 x 28, 14 x 14 and
     * 7 x 7 planes) and edges of every block: odd m and n, k and n off the
     * vector width, strides wider than the rows. */
    static const int64_t shapes[][3] = {{32, 784, 32}, {16, 196, 16}, {32, 49, 32}, {5, 70, 3},
                                        {3, 17, 5},    {1, 1, 1},     {6, 65, 9},   {4, 64, 4}};
    for (int path = 0; path < 2; path++) {
        cd__cpu_force_portable(CD__KERNELS_GEMM, path == 1);
        for (uint64_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int64_t dh = shapes[s][0], hw = shapes[s][1], kk = shapes[s][2], pad = 3;
            const int64_t lda = hw + pad;
            const float alpha = s % 2 ? 0.25f : 1.0f;
            /* nt: C (dh x kk) = alpha A B^T, A dh x hw and B kk x hw: k = hw. */
            float *A = gaussians(dh * lda, 40 + s), *B = gaussians(kk * lda, 50 + s);
            float *C = gaussians(dh * (kk + pad), 1);
            cd__gemm_nt(dh, kk, hw, alpha, A, lda, B, lda, C, kk + pad);
            check_product(C, kk + pad, A, lda, 1, B, 1, lda, dh, kk, hw, alpha, "nt");
            check_padding_kept(C, kk + pad, dh, kk, 1, "nt");
            /* xn: D (dh x hw) = alpha op(S) W, op(S) dh x kk and W kk x hw. */
            float *S = gaussians((dh + pad) * (kk + pad), 60 + s);
            float *W = gaussians(kk * lda, 70 + s), *D = gaussians(dh * lda, 2);
            cd__gemm_xn(false, dh, hw, kk, alpha, S, kk + pad, W, lda, D, lda);
            check_product(D, lda, S, kk + pad, 1, W, lda, 1, dh, hw, kk, alpha, "xn");
            check_padding_kept(D, lda, dh, hw, 2, "xn");
            cd__gemm_xn(true, dh, hw, kk, alpha, S, dh + pad, W, lda, D, lda);
            check_product(D, lda, S, 1, dh + pad, W, lda, 1, dh, hw, kk, alpha, "xn, A^T");
            check_padding_kept(D, lda, dh, hw, 2, "xn, A^T");
            free(A), free(B), free(C), free(S), free(W), free(D);
        }
    }
    cd__cpu_force_portable(CD__KERNELS_GEMM, false);
}
END_TEST

/* ---- layer norm ------------------------------------------------------------- */

typedef struct {
    float *out, *dout, *x, *w, *b, *dx, *dw, *db, *mean, *rstd;
    int64_t N, D;
} ln_t;

static void ln_fwd(void *ctx)
{
    ln_t *c = ctx;
    cd__layernorm_forward(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->N, c->D, 1e-5f);
}

static void ln_bwd(void *ctx)
{
    ln_t *c = ctx;
    cd__layernorm_backward(c->dx, c->dw, c->db, c->dout, c->x, c->w, c->mean, c->rstd, c->N, c->D);
}

static void ln_setup(ln_t *c, int64_t N, int64_t D, bool affine)
{
    *c = (ln_t){.N = N, .D = D};
    c->x = randn(N * D, 22, 1.5f), c->out = buf(N * D), c->dout = buf(N * D);
    c->dx = buf(N * D), c->mean = buf(N), c->rstd = buf(N);
    for (int64_t i = 0; i < N * D; i++) c->x[i] += 0.5f;
    if (affine) {
        c->w = randn(D, 23, 0.5f), c->b = randn(D, 24, 0.5f);
        for (int64_t i = 0; i < D; i++) c->w[i] += 1.0f;
        c->dw = buf(D), c->db = buf(D);
    }
}

static void gradcheck_layernorm(int64_t N, int64_t C, int64_t H, int64_t W, bool affine)
{
    ln_t c;
    ln_setup(&c, N, C * H * W, affine);
    const int64_t n = N * c.D;
    cd_gc_op op = {.name = affine ? "layernorm_affine" : "layernorm",
                   .ctx = &c,
                   .forward = ln_fwd,
                   .backward = ln_bwd,
                   .out = c.out,
                   .dout = c.dout,
                   .n_out = n};
    cd_gc_add_input(&op, "x", c.x, c.dx, n);
    if (affine) {
        cd_gc_add_input(&op, "weight", c.w, c.dw, c.D);
        cd_gc_add_input(&op, "bias", c.b, c.db, c.D);
    }
    cd_gc_opts o = step_opts(0.05);
    report(op.name, cd_gradcheck(&op, &o));
}

START_TEST(layernorm_gradients)
{
    gradcheck_layernorm(3, 2, 5, 7, true);
    gradcheck_layernorm(1, 2, 5, 7, true);
    gradcheck_layernorm(3, 2, 5, 7, false);
    gradcheck_layernorm(1, 3, 4, 2, false);
}
END_TEST

/* Per sample: mean 0 and biased variance 1 (up to eps), for the largest D
 * the decoders use and with means of 50 and 100, where a float sum of D
 * elements would drift far beyond the tolerances. */
START_TEST(layernorm_normalises)
{
    const int64_t N = 2, D = 128 * 28 * 28;
    ln_t c;
    ln_setup(&c, N, D, false);
    for (int64_t i = 0; i < N * D; i++) c.x[i] += 50.0f * (float)(1 + i / D);
    ln_fwd(&c);
    for (int64_t s = 0; s < N; s++) {
        double m = 0.0, v = 0.0, mx = 0.0, vx = 0.0;
        for (int64_t i = 0; i < D; i++) m += c.out[s * D + i], mx += c.x[s * D + i];
        m /= (double)D, mx /= (double)D;
        for (int64_t i = 0; i < D; i++) {
            v += (c.out[s * D + i] - m) * (c.out[s * D + i] - m);
            vx += (c.x[s * D + i] - mx) * (c.x[s * D + i] - mx);
        }
        v /= (double)D, vx /= (double)D;
        assert_close(m, 0.0, 1e-5, "layernorm mean");
        assert_close(v, vx / (vx + 1e-5), 1e-4, "layernorm variance");
        assert_close(c.mean[s], mx, 1e-6 * fabs(mx), "saved mean");
        assert_close(c.rstd[s], 1.0 / sqrt(vx + 1e-5), 1e-5 / sqrt(vx), "saved rstd");
    }
}
END_TEST

/* ---- fused LayerNorm + GELU + channel add ----------------------------------- */

typedef struct {
    float *out, *gp, *dout, *x, *w, *b, *v, *dx, *dw, *db, *dv, *mean, *rstd, *dxs, *ws;
    int64_t N, C, HW;
} lg_t;

static void lg_fwd(void *ctx)
{
    lg_t *c = ctx;
    cd__ln_gelu_forward(c->out, c->gp, c->mean, c->rstd, c->x, c->w, c->b, c->v, c->N, c->C, c->HW,
                        1e-5f);
}

/* The fused backward overwrites dx, here in place over a copy of dout, as
 * the CNN runs it: add, so the checker sees the usual conventions. */
static void lg_bwd(void *ctx)
{
    lg_t *c = ctx;
    const int64_t n = c->N * c->C * c->HW;
    memcpy(c->dxs, c->dout, (size_t)n * sizeof *c->dxs);
    cd__ln_gelu_backward(c->dxs, c->dw, c->db, c->dv, c->dxs, c->gp, c->x, c->w, c->mean, c->rstd,
                         c->N, c->C, c->HW, c->ws);
    for (int64_t i = 0; i < n; i++) c->dx[i] += c->dxs[i];
}

static void lg_setup(lg_t *c, int64_t N, int64_t C, int64_t HW)
{
    const int64_t n = N * C * HW, D = C * HW;
    *c = (lg_t){.N = N, .C = C, .HW = HW};
    c->x = randn(n, 40, 1.5f), c->out = buf(n), c->dout = buf(n);
    c->dx = buf(n), c->gp = buf(n), c->dxs = buf(n), c->mean = buf(N), c->rstd = buf(N);
    c->w = randn(D, 41, 0.5f), c->b = randn(D, 42, 0.5f), c->dw = buf(D), c->db = buf(D);
    for (int64_t i = 0; i < D; i++) c->w[i] += 1.0f;
    c->v = randn(N * C, 43, 1.0f), c->dv = buf(N * C);
    c->ws = buf((int64_t)cd__ln_gelu_workspace(N, C, HW));
}

START_TEST(ln_gelu_gradients)
{
    lg_t c;
    lg_setup(&c, 3, 2, 19); /* 19 pixels: every vector loop has a tail */
    const int64_t n = c.N * c.C * c.HW, D = c.C * c.HW;
    cd_gc_op op = {.name = "ln_gelu",
                   .ctx = &c,
                   .forward = lg_fwd,
                   .backward = lg_bwd,
                   .out = c.out,
                   .dout = c.dout,
                   .n_out = n};
    cd_gc_add_input(&op, "x", c.x, c.dx, n);
    cd_gc_add_input(&op, "weight", c.w, c.dw, D);
    cd_gc_add_input(&op, "bias", c.b, c.db, D);
    cd_gc_add_input(&op, "v", c.v, c.dv, c.N * c.C);
    cd_gc_opts o = step_opts(0.05);
    report(op.name, cd_gradcheck(&op, &o));
}
END_TEST

/* The fused op against the separate ones it replaces in the CNN; 19
 * samples make three blocks of partial affine gradients, the last short. */
START_TEST(ln_gelu_matches_separate)
{
    const int64_t N = 19, C = 5, HW = 37, D = C * HW, n = N * D;
    lg_t c;
    lg_setup(&c, N, C, HW);
    cd_gc_randn(c.dout, n, 44, 1.0f);
    lg_fwd(&c);
    lg_bwd(&c);
    float *y = buf(n), *o = buf(n), *dn = buf(n), *dx = buf(n), *dw = buf(D), *db = buf(D);
    float *dv = buf(N * C), *mean = buf(N), *rstd = buf(N);
    cd__layernorm_forward(y, mean, rstd, c.x, c.w, c.b, N, D, 1e-5f);
    cd__gelu_forward(o, y, n);
    cd__add_channel_forward(o, o, c.v, N, C, HW);
    cd__add_channel_backward(NULL, dv, c.dout, N, C, HW);
    cd__gelu_backward(dn, c.dout, y, n);
    cd__layernorm_backward(dx, dw, db, dn, c.x, c.w, mean, rstd, N, D);
    for (int64_t i = 0; i < n; i++) {
        assert_close(c.out[i], o[i], 1e-6 * (1.0 + fabs(o[i])), "fused out");
        assert_close(c.dx[i], dx[i], 1e-5 * (1.0 + fabs(dx[i])), "fused dx");
    }
    for (int64_t i = 0; i < D; i++) {
        assert_close(c.dw[i], dw[i], 1e-5 * (1.0 + fabs(dw[i])), "fused dweight");
        assert_close(c.db[i], db[i], 1e-5 * (1.0 + fabs(db[i])), "fused dbias");
    }
    for (int64_t i = 0; i < N * C; i++)
        assert_close(c.dv[i], dv[i], 1e-5 * (1.0 + fabs(dv[i])), "fused dv");
    for (int64_t i = 0; i < N; i++) {
        assert_close(c.mean[i], mean[i], 1e-6 * fabs(mean[i]), "fused mean");
        assert_close(c.rstd[i], rstd[i], 1e-6 * rstd[i], "fused rstd");
    }
}
END_TEST

/* The fused op's AVX-512 and scalar paths (the scalar one runs on CPUs
 * without AVX-512): 9 samples (two blocks of partial affine gradients),
 * 17 pixels (vector tails). */
START_TEST(ln_gelu_vector_and_scalar_agree)
{
    const int64_t N = 9, C = 3, HW = 17, n = N * C * HW, D = C * HW;
    lg_t c[2];
    for (int k = 0; k < 2; k++) {
        lg_setup(&c[k], N, C, HW);
        cd_gc_randn(c[k].dout, n, 45, 1.0f);
        cd__cpu_force_portable(CD__KERNELS_VMATH, k == 1);
        lg_fwd(&c[k]);
        lg_bwd(&c[k]);
    }
    cd__cpu_force_portable(CD__KERNELS_VMATH, false);
    assert_all_close(c[0].out, c[1].out, n, 1e-6, "ln_gelu");
    assert_all_close(c[0].dx, c[1].dx, n, 1e-5, "ln_gelu dx");
    assert_all_close(c[0].dw, c[1].dw, D, 1e-5, "ln_gelu dweight");
    assert_all_close(c[0].db, c[1].db, D, 1e-5, "ln_gelu dbias");
    assert_all_close(c[0].dv, c[1].dv, N * C, 1e-5, "ln_gelu dv");
}
END_TEST

/* ---- time encodings ----------------------------------------------------------- */

START_TEST(cnn_frequencies)
{
    float f[CD__CNN_NFREQ];
    cd__cnn_frequencies(f);
    ck_assert(f[0] == 0.0f);
    ck_assert(f[1] == (float)(2.0 * 3.14159265358979323846));
    ck_assert(f[2] == (float)(3.0 * 3.14159265358979323846));
    for (int j = 2; j < CD__CNN_NFREQ; j++)
        assert_close(f[j] / f[j - 1], 1.5, 1e-6, "frequency ratio");
    ck_assert(f[15] == 1834.24560546875f); /* fl32(2 pi 1.5^14) */
}
END_TEST

START_TEST(cnn_time_encoding)
{
    float f[CD__CNN_NFREQ], tau[3] = {0.0f, 0.25f, 1.0f}, out[3 * 32];
    cd__cnn_frequencies(f);
    cd__cnn_time_encoding(out, tau, f, 3, CD__CNN_NFREQ);
    for (int j = 0; j < 32; j++) ck_assert(out[j] == 0.0f);
    for (int n = 1; n < 3; n++) {
        const float *o = out + n * 32;
        ck_assert(o[0] == 0.0f && o[16] == 0.0f); /* f_0 = 0 */
        for (int j = 0; j < 16; j++)
            assert_close(o[j] * o[j] + (o[16 + j] + 1.0) * (o[16 + j] + 1.0), 1.0, 1e-6,
                         "sin^2 + cos^2");
    }
    /* tau = 1/4: f_1 tau = pi/2 and f_2 tau = 3 pi/4, to float rounding. */
    assert_close(out[32 + 1], 1.0, 1e-7, "sin(pi/2)");
    assert_close(out[32 + 16 + 1], -1.0, 1e-7, "cos(pi/2) - 1");
    assert_close(out[32 + 2], sqrt(0.5), 1e-7, "sin(3pi/4)");
    /* The phase is the float product: at tau = 1 it is f_15 exactly. */
    assert_close(out[64 + 15], sin((double)f[15]), 6e-8, "sin(f_15)");
}
END_TEST

START_TEST(sinusoidal_embedding)
{
    const int64_t dim = 32, half = 16;
    float tau[2] = {0.0f, 7.0f}, out[2 * 32];
    cd__sinusoidal_embedding(out, tau, 2, dim);
    for (int64_t j = 0; j < half; j++) {
        ck_assert(out[j] == 0.0f);
        ck_assert(out[half + j] == 1.0f);
    }
    /* w_0 = 1 and w_{half-1} = 1e-4. */
    assert_close(out[dim + 0], sin(7.0), 1e-7, "sin(tau w_0)");
    assert_close(out[dim + half], cos(7.0), 1e-7, "cos(tau w_0)");
    assert_close(out[dim + half - 1], sin(7e-4), 1e-9, "sin(tau w_last)");
    for (int64_t j = 0; j < half; j++) {
        const double w = exp(-log(10000.0) * (double)j / (double)(half - 1));
        assert_close(out[dim + j], sin(7.0 * w), 2e-6, "sin(tau w_j)");
        assert_close(out[dim + half + j], cos(7.0 * w), 2e-6, "cos(tau w_j)");
    }
}
END_TEST

/* ---- losses --------------------------------------------------------------------- */

typedef struct {
    float *out, *dout, *pred, *target, *dpred;
    int64_t n;
    bool l1;
} loss_t;

static void loss_fwd(void *ctx)
{
    loss_t *c = ctx;
    c->out[0] = (float)(c->l1 ? cd__l1_forward(c->pred, c->target, c->n)
                              : cd__mse_forward(c->pred, c->target, c->n));
}

static void loss_bwd(void *ctx)
{
    loss_t *c = ctx;
    if (c->l1)
        cd__l1_backward(c->dpred, c->pred, c->target, c->n, c->dout[0]);
    else
        cd__mse_backward(c->dpred, c->pred, c->target, c->n, c->dout[0]);
}

static void gradcheck_loss(bool l1)
{
    loss_t c = {.n = 3 * 35, .l1 = l1};
    c.pred = randn(c.n, 25, 1.0f), c.target = randn(c.n, 26, 1.0f);
    c.out = buf(1), c.dout = buf(1), c.dpred = buf(c.n);
    /* Keep L1 off its kink: |pred - target| >= 0.5, beyond every step the
     * checker takes (2 eps, times |v| < 5 in the directional check). */
    for (int64_t i = 0; i < c.n; i++) {
        const float d = c.pred[i] - c.target[i];
        if (fabsf(d) < 0.5f) c.target[i] = c.pred[i] + (d < 0 ? 0.5f : -0.5f);
    }
    cd_gc_op op = {.name = l1 ? "l1" : "mse",
                   .ctx = &c,
                   .forward = loss_fwd,
                   .backward = loss_bwd,
                   .out = c.out,
                   .dout = c.dout,
                   .n_out = 1};
    cd_gc_add_input(&op, "pred", c.pred, c.dpred, c.n);
    cd_gc_opts o = step_opts(0.05);
    report(op.name, cd_gradcheck(&op, &o));
}

START_TEST(loss_gradients)
{
    gradcheck_loss(false);
    gradcheck_loss(true);
}
END_TEST

START_TEST(loss_values)
{
    const float p[4] = {1.0f, -2.0f, 0.5f, 3.0f}, t[4] = {0.0f, 1.0f, 0.5f, 1.0f};
    assert_close(cd__mse_forward(p, t, 4), (1.0 + 9.0 + 0.0 + 4.0) / 4.0, 1e-12, "mse");
    assert_close(cd__l1_forward(p, t, 4), (1.0 + 3.0 + 0.0 + 2.0) / 4.0, 1e-12, "l1");
    float g[4] = {0, 0, 0, 0};
    cd__l1_backward(g, p, t, 4, 2.0f);
    ck_assert(g[0] == 0.5f && g[1] == -0.5f && g[2] == 0.0f && g[3] == 0.5f);
    memset(g, 0, sizeof g);
    cd__mse_backward(g, p, t, 4, 1.0f);
    ck_assert(g[0] == 0.5f && g[1] == -1.5f && g[2] == 0.0f && g[3] == 1.0f);
}
END_TEST

/* ---- thread-count independence ---------------------------------------------------- */

/* Run every kernel parallelised here on inputs big enough to split into many
 * tasks, plus the BLAS-backed linear and bmm (the BLAS runs single-threaded
 * under libcolddiff's own workers, see threads.c); results go to
 * consecutive n-float blocks of out (PAR_BLOCKS of them). */
#define PAR_BLOCKS 17
static void run_parallel_ops(float *out, int64_t n, const float *x, const float *w, const float *v)
{
    const int64_t N = 4, C = 32, HW = 784, D = C * HW;
    /* The same n floats as 16 samples of 8 channels: two blocks of the
     * fused LayerNorm's partial gradients. */
    const int64_t N2 = 16, C2 = 8;
    float *b[PAR_BLOCKS], mean[16], rstd[16];
    memset(out, 0, (size_t)(PAR_BLOCKS * n) * sizeof *out);
    for (int k = 0; k < PAR_BLOCKS; k++) b[k] = out + k * n;
    cd__gelu_forward(b[0], x, n);
    cd__gelu_backward(b[1], w, x, n);
    cd__add_channel_forward(b[2], x, v, N, C, HW);
    cd__add_channel_backward(b[3], b[4], w, N, C, HW);
    cd__softmax_forward(b[5], x, N * C, HW);
    cd__softmax_backward(b[6], w, b[5], N * C, HW);
    cd__layernorm_forward(b[7], mean, rstd, x, w, v, N, D, 1e-5f);
    cd__layernorm_backward(b[8], b[9], b[9] + D, w, x, w, mean, rstd, N, D);
    /* Linear attention's context products (32 x 32 over 784 pixels). */
    cd__bmm(b[10], x, w, N, 32, 32, HW, false, true, 1.0f, 0.0f);
    cd__linear_forward(b[11], x, w, v, 128, 784, 128);
    cd__linear_backward(b[12], b[13], NULL, v, x, w, 128, 784, 128);
    /* The CNN block (GELU' in b[15]); dv in b[4] after add_channel's. */
    cd__ln_gelu_forward(b[14], b[15], mean, rstd, x, w, v, v, N2, C2, HW, 1e-5f);
    float *ws = buf((int64_t)cd__ln_gelu_workspace(N2, C2, HW));
    cd__ln_gelu_backward(b[16], b[9], b[9] + C2 * HW, b[4] + N * C, w, b[15], x, w, mean, rstd, N2,
                         C2, HW, ws);
}

START_TEST(thread_count_independence)
{
    const int64_t n = 4 * 32 * 784;
    float *x = randn(n, 27, 1.0f), *w = randn(n, 28, 1.0f), *v = randn(n, 29, 1.0f);
    float *one = buf(PAR_BLOCKS * n), *two = buf(PAR_BLOCKS * n);
    const int64_t saved = cd_get_num_threads();
    CD_ASSERT_OK(cd_set_num_threads(1));
    run_parallel_ops(one, n, x, w, v);
    for (int64_t t = 2; t <= 3; t++) {
        CD_ASSERT_OK(cd_set_num_threads(t));
        run_parallel_ops(two, n, x, w, v);
        assert_same_bits(one, two, PAR_BLOCKS * n, "kernel output");
    }
    CD_ASSERT_OK(cd_set_num_threads(saved));
}
END_TEST

/* A NULL gradient buffer is skipped, and the others are still filled. */
START_TEST(null_gradients_are_skipped)
{
    const int64_t N = 2, C = 3, HW = 5, n = N * C * HW;
    float *x = randn(n, 30, 1.0f), *g = randn(n, 31, 1.0f), *y = buf(n), *dx = buf(n);
    float *W = randn(C * HW, 32, 1.0f), *dW = buf(C * HW), mean[2], rstd[2];
    cd__linear_backward(NULL, dW, NULL, g, x, W, N * C, HW, 1);
    cd__linear_backward(dx, NULL, NULL, g, x, W, N * C, HW, 1);
    cd__gelu_backward(NULL, g, x, n);
    cd__add_channel_backward(NULL, NULL, g, N, C, HW);
    cd__add_channel_backward(dx, NULL, g, N, C, HW);
    cd__concat_backward(NULL, dx, g, N, 1, C - 1, HW);
    cd__softmax_backward(NULL, g, x, N * C, HW);
    cd__layernorm_forward(y, mean, rstd, x, W, W, N, C * HW, 1e-5f);
    cd__layernorm_backward(NULL, dW, NULL, g, x, W, mean, rstd, N, C * HW);
    cd__layernorm_backward(dx, NULL, NULL, g, x, W, mean, rstd, N, C * HW);
    cd__mse_backward(NULL, x, g, n, 1.0f);
    cd__l1_backward(NULL, x, g, n, 1.0f);
    for (int64_t i = 0; i < n; i++) ck_assert(isfinite(dx[i]));
    for (int64_t i = 0; i < C * HW; i++) ck_assert(isfinite(dW[i]));
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("ops");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, linear_gradients);
    tcase_add_test(tc, linear_forward_matches_naive);
    tcase_add_test(tc, bmm_gradients);
    tcase_add_test(tc, bmm_matches_naive);
    tcase_add_test(tc, gelu_values);
    tcase_add_test(tc, gelu_pair_matches_separate_passes);
    tcase_add_test(tc, gelu_gradients);
    tcase_add_test(tc, gelu_fast_math);
    tcase_add_test(tc, add_channel_gradients);
    tcase_add_test(tc, add_channel_in_place);
    tcase_add_test(tc, concat_gradients);
    tcase_add_test(tc, softmax_gradients);
    tcase_add_test(tc, softmax_properties);
    tcase_add_test(tc, vector_and_scalar_paths_agree);
    tcase_add_test(tc, small_products_match_double);
    tcase_add_test(tc, layernorm_gradients);
    tcase_add_test(tc, layernorm_normalises);
    tcase_add_test(tc, ln_gelu_gradients);
    tcase_add_test(tc, ln_gelu_matches_separate);
    tcase_add_test(tc, ln_gelu_vector_and_scalar_agree);
    tcase_add_test(tc, cnn_frequencies);
    tcase_add_test(tc, cnn_time_encoding);
    tcase_add_test(tc, sinusoidal_embedding);
    tcase_add_test(tc, loss_gradients);
    tcase_add_test(tc, loss_values);
    tcase_add_test(tc, thread_count_independence);
    tcase_add_test(tc, null_gradients_are_skipped);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)

/* check_parity.c - every op of lib/ops/ops.h against the PyTorch reference
 * fixtures in tests/reference (written by make_fixtures.py; see its README).
 *
 * Each test loads one fixture file, runs the C forward and backward on the
 * stored inputs with the stored "dout", and compares the output and every
 * gradient. Each comparison prints its maximum absolute and relative error.
 *
 * Tolerances. The fixtures hold PyTorch's result computed in float64 from the
 * float32 inputs and rounded to float32, i.e. the exactly rounded answer, so
 * what is measured is the C kernel's own float32 error. A comparison passes
 * when |got - want| <= atol + rtol |want| elementwise, with atol scaled by the
 * largest |want| of the tensor (cmp() below), because the error of a float32
 * reduction grows with the magnitude of its terms, not of its result:
 *   - TOL_REDUCE (2e-5, rtol 1e-4) for the ops with sums of up to a few
 *     hundred products (conv, transposed conv, linear, bmm, layer norm);
 *     make_fixtures.py asserts that float32 PyTorch itself meets this bound
 *     on the same data (it comes within 3e-5 absolute on the 17-batch conv
 *     weight gradient, whose values reach 48).
 *   - TOL_ELEM (1e-6, rtol 1e-5) for elementwise ops and short sums (GELU,
 *     softmax, add_channel, the loss gradients): a few ulps.
 *   - concat is a copy and must be exact.
 *   - The time encodings are absolute (values in [-2, 1]): 3e-7, about 5 ulps
 *     of 1. The reference is float32 PyTorch here, as in the report; its
 *     expf and sinf may differ by an ulp from a correctly rounded C, which
 *     moves the result by ~1e-7. Computing the phase more exactly than
 *     fl32(f tau) moves it by up to 6e-5 (docs/models.md, Decoders: CNN),
 *     well outside.
 */
#include "test_util.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fixture.h"
#include "ops/ops.h"

#define TOL_REDUCE 2e-5
#define RTOL_REDUCE 1e-4
#define TOL_ELEM 1e-6
#define RTOL_ELEM 1e-5
#define TOL_EMBED 3e-7

/* ---- helpers ------------------------------------------------------------- */

/* Tensor `prefix``name` of f, with its element count. */
static const float *get(const cd_fixture *f, const char *prefix, const char *name, int64_t *numel)
{
    char full[128];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return cd_fixture_get(f, full, numel);
}

/* The i-th entry of the case's "cfg" tensor, as an integer. */
static int64_t cfg(const cd_fixture *f, const char *prefix, int i)
{
    int64_t n;
    const float *c = get(f, prefix, "cfg", &n);
    ck_assert_msg(i < n, "%scfg has %lld entries, need %d", prefix, (long long)n, i + 1);
    return (int64_t)c[i];
}

static float *zeros(int64_t n)
{
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p;
}

static float *workspace(size_t nfloats)
{
    float *p = malloc((nfloats > 0 ? nfloats : 1) * sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p;
}

static double max_abs(const float *x, int64_t n)
{
    double m = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (fabs((double)x[i]) > m) m = fabs((double)x[i]);
    return m;
}

/* Compare got[n] with fixture tensor prefix+name (whose size must be n), at
 * atol = tol * max(1, max |want|) and rtol; `note` (may be "") is appended
 * to the printed label. */
static void cmp_note(const cd_fixture *f, const char *file, const char *prefix, const char *name,
                     const char *note, const float *got, int64_t n, double tol, double rtol)
{
    int64_t nw;
    const float *want = get(f, prefix, name, &nw);
    ck_assert_msg(nw == n, "%s %s%s: fixture has %lld values, the op gives %lld", file, prefix,
                  name, (long long)nw, (long long)n);
    double scale = max_abs(want, n);
    char what[128];
    snprintf(what, sizeof what, "%s %s%s%s", file, prefix, name, note);
    cd_fixture_compare(what, got, want, n, tol * (scale > 1.0 ? scale : 1.0), rtol);
}

static void cmp(const cd_fixture *f, const char *file, const char *prefix, const char *name,
                const float *got, int64_t n, double tol, double rtol)
{
    cmp_note(f, file, prefix, name, "", got, n, tol, rtol);
}

/* ---- fixture files ------------------------------------------------------- */

static const char *const FILES[] = {
    "conv2d.bin",    "conv_transpose2d.bin", "linear.bin", "gelu.bin",
    "layernorm.bin", "add_channel.bin",      "concat.bin", "softmax.bin",
    "bmm.bin",       "time_embed.bin",       "loss.bin",
};
#define NFILES (sizeof FILES / sizeof FILES[0])

/* Every fixture starts with "CDFX" and version 1 (checked on the raw bytes
 * here, and again by the reader), and loads completely. */
START_TEST(fixture_headers)
{
    for (size_t i = 0; i < NFILES; i++) {
        char path[512];
#ifdef CD_TEST_REFERENCE_DIR
        cd_test_path(path, sizeof path, CD_TEST_REFERENCE_DIR, FILES[i]);
#else
        cd_test_path(path, sizeof path, "tests/reference", FILES[i]);
#endif
        FILE *fp = fopen(path, "rb");
        ck_assert_msg(fp != NULL, "cannot open %s", path);
        unsigned char h[12];
        ck_assert_msg(fread(h, 1, sizeof h, fp) == sizeof h, "%s is too short", path);
        fclose(fp);
        ck_assert_msg(memcmp(h, "CDFX", 4) == 0, "%s: bad magic", path);
        uint32_t version =
            (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
        uint32_t count =
            (uint32_t)h[8] | (uint32_t)h[9] << 8 | (uint32_t)h[10] << 16 | (uint32_t)h[11] << 24;
        ck_assert_msg(version == 1, "%s: version %u, expected 1", path, version);
        ck_assert_msg(count > 0, "%s holds no tensors", path);
        cd_fixture_free(cd_fixture_load(FILES[i]));
    }
}
END_TEST

/* ---- conv2d -------------------------------------------------------------- */

/* cd__cpu_force_portable(CD__KERNELS_CONV, ...) (core.h) restricts every
 * convolution to the portable paths (im2col + sgemm, the portable depthwise
 * kernel), so that both code paths meet PyTorch on an AVX-512 machine. */

static void conv2d_cases(bool portable)
{
    static const char *const cases[] = {"k7p3.",   "k3p1.", "k1.", "k1nb.", "k4s2p1.",
                                        "k3s2p1.", "dw7.",  "g2.", "k3x5.", "tile."};
    const char *file = "conv2d.bin", *note = portable ? " (portable)" : "";
    cd__cpu_force_portable(CD__KERNELS_CONV, portable);
    cd_fixture *f = cd_fixture_load(file);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const char *p = cases[ci];
        bool bias = cfg(f, p, 10) != 0;
        cd__conv2d c;
        CD_ASSERT_OK(cd__conv2d_init(&c, cfg(f, p, 0), cfg(f, p, 1), cfg(f, p, 2), cfg(f, p, 3),
                                     cfg(f, p, 4), cfg(f, p, 5), cfg(f, p, 6), cfg(f, p, 7),
                                     cfg(f, p, 8), cfg(f, p, 9), bias));
        int64_t nx, nw, nb = 0, no;
        const float *x = get(f, p, "x", &nx);
        const float *w = get(f, p, "weight", &nw);
        const float *b = bias ? get(f, p, "bias", &nb) : NULL;
        const float *dout = get(f, p, "dout", &no);
        ck_assert_int_eq(nx, c.N * c.C_in * c.H * c.W);
        ck_assert_int_eq(no, c.N * c.C_out * c.H_out * c.W_out);

        float *ws = workspace(cd__conv2d_workspace(&c));
        float *out = zeros(no), *dx = zeros(nx), *dw = zeros(nw), *db = zeros(nb);
        cd__conv2d_forward(&c, out, x, w, b, ws);
        cmp_note(f, file, p, "out", note, out, no, TOL_REDUCE, RTOL_REDUCE);
        cd__conv2d_backward(&c, dx, dw, bias ? db : NULL, dout, x, w, ws);
        cmp_note(f, file, p, "dx", note, dx, nx, TOL_REDUCE, RTOL_REDUCE);
        cmp_note(f, file, p, "dweight", note, dw, nw, TOL_REDUCE, RTOL_REDUCE);
        if (bias) cmp_note(f, file, p, "dbias", note, db, nb, TOL_REDUCE, RTOL_REDUCE);
        free(ws);
        free(out);
        free(dx);
        free(dw);
        free(db);
    }
    cd_fixture_free(f);
    cd__cpu_force_portable(CD__KERNELS_CONV, false);
}

START_TEST(conv2d_parity) { conv2d_cases(false); }
END_TEST

START_TEST(conv2d_portable_parity) { conv2d_cases(true); }
END_TEST

/* ---- conv_transpose2d ---------------------------------------------------- */

START_TEST(conv_transpose2d_parity)
{
    static const char *const cases[] = {"b1.", "b3.", "sq.", "k3s2p0nb."};
    const char *file = "conv_transpose2d.bin";
    cd_fixture *f = cd_fixture_load(file);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const char *p = cases[ci];
        bool bias = cfg(f, p, 9) != 0;
        cd__convt2d c;
        CD_ASSERT_OK(cd__convt2d_init(&c, cfg(f, p, 0), cfg(f, p, 1), cfg(f, p, 2), cfg(f, p, 3),
                                      cfg(f, p, 4), cfg(f, p, 5), cfg(f, p, 6), cfg(f, p, 7),
                                      cfg(f, p, 8), bias));
        int64_t nx, nw, nb = 0, no;
        const float *x = get(f, p, "x", &nx);
        const float *w = get(f, p, "weight", &nw);
        const float *b = bias ? get(f, p, "bias", &nb) : NULL;
        const float *dout = get(f, p, "dout", &no);
        ck_assert_int_eq(nx, c.N * c.C_in * c.H * c.W);
        ck_assert_int_eq(nw, c.C_in * c.C_out * c.kh * c.kw);
        ck_assert_int_eq(no, c.N * c.C_out * c.H_out * c.W_out);

        float *ws = workspace(cd__convt2d_workspace(&c));
        float *out = zeros(no), *dx = zeros(nx), *dw = zeros(nw), *db = zeros(nb);
        cd__convt2d_forward(&c, out, x, w, b, ws);
        cmp(f, file, p, "out", out, no, TOL_REDUCE, RTOL_REDUCE);
        cd__convt2d_backward(&c, dx, dw, bias ? db : NULL, dout, x, w, ws);
        cmp(f, file, p, "dx", dx, nx, TOL_REDUCE, RTOL_REDUCE);
        cmp(f, file, p, "dweight", dw, nw, TOL_REDUCE, RTOL_REDUCE);
        if (bias) cmp(f, file, p, "dbias", db, nb, TOL_REDUCE, RTOL_REDUCE);
        free(ws);
        free(out);
        free(dx);
        free(dw);
        free(db);
    }
    cd_fixture_free(f);
}
END_TEST

/* ---- linear -------------------------------------------------------------- */

START_TEST(linear_parity)
{
    static const char *const cases[] = {"b1.", "b3.", "nb.", "wide."};
    const char *file = "linear.bin";
    cd_fixture *f = cd_fixture_load(file);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const char *p = cases[ci];
        int64_t B = cfg(f, p, 0), I = cfg(f, p, 1), O = cfg(f, p, 2);
        bool bias = cfg(f, p, 3) != 0;
        int64_t nx, nw, nb = 0, no;
        const float *x = get(f, p, "x", &nx);
        const float *w = get(f, p, "weight", &nw);
        const float *b = bias ? get(f, p, "bias", &nb) : NULL;
        const float *dout = get(f, p, "dout", &no);
        ck_assert_int_eq(nx, B * I);
        ck_assert_int_eq(nw, O * I);
        ck_assert_int_eq(no, B * O);

        float *out = zeros(no), *dx = zeros(nx), *dw = zeros(nw), *db = zeros(nb);
        cd__linear_forward(out, x, w, b, B, I, O);
        cmp(f, file, p, "out", out, no, TOL_REDUCE, RTOL_REDUCE);
        cd__linear_backward(dx, dw, bias ? db : NULL, dout, x, w, B, I, O);
        cmp(f, file, p, "dx", dx, nx, TOL_REDUCE, RTOL_REDUCE);
        cmp(f, file, p, "dweight", dw, nw, TOL_REDUCE, RTOL_REDUCE);
        if (bias) cmp(f, file, p, "dbias", db, nb, TOL_REDUCE, RTOL_REDUCE);
        free(out);
        free(dx);
        free(dw);
        free(db);
    }
    cd_fixture_free(f);
}
END_TEST

/* ---- gelu ---------------------------------------------------------------- */

START_TEST(gelu_parity)
{
    const char *file = "gelu.bin", *p = "a.";
    cd_fixture *f = cd_fixture_load(file);
    int64_t n, no;
    const float *x = get(f, p, "x", &n);
    const float *dout = get(f, p, "dout", &no);
    ck_assert_int_eq(n, no);
    float *out = zeros(n), *dx = zeros(n);
    cd__gelu_forward(out, x, n);
    cmp(f, file, p, "out", out, n, TOL_ELEM, RTOL_ELEM);
    cd__gelu_backward(dx, dout, x, n);
    cmp(f, file, p, "dx", dx, n, TOL_ELEM, RTOL_ELEM);
    free(out);
    free(dx);
    cd_fixture_free(f);
}
END_TEST

/* ---- layernorm ----------------------------------------------------------- */

static void layernorm_case(const cd_fixture *f, const char *file, const char *p)
{
    int64_t N = cfg(f, p, 0), D = cfg(f, p, 1) * cfg(f, p, 2) * cfg(f, p, 3);
    bool affine = cfg(f, p, 4) != 0;
    int64_t nx, no;
    const float *x = get(f, p, "x", &nx);
    const float *w = affine ? get(f, p, "weight", NULL) : NULL;
    const float *b = affine ? get(f, p, "bias", NULL) : NULL;
    const float *dout = get(f, p, "dout", &no);
    ck_assert_int_eq(nx, N * D);
    ck_assert_int_eq(no, N * D);

    float *out = zeros(nx), *mean = zeros(N), *rstd = zeros(N), *dx = zeros(nx);
    float *dw = zeros(D), *db = zeros(D);
    cd__layernorm_forward(out, mean, rstd, x, w, b, N, D, 1e-5f);
    cmp(f, file, p, "out", out, nx, TOL_REDUCE, RTOL_REDUCE);
    cmp(f, file, p, "mean", mean, N, TOL_ELEM, RTOL_ELEM);
    cmp(f, file, p, "rstd", rstd, N, TOL_ELEM, RTOL_ELEM);
    cd__layernorm_backward(dx, affine ? dw : NULL, affine ? db : NULL, dout, x, w, mean, rstd, N,
                           D);
    cmp(f, file, p, "dx", dx, nx, TOL_REDUCE, RTOL_REDUCE);
    if (affine) {
        cmp(f, file, p, "dweight", dw, D, TOL_REDUCE, RTOL_REDUCE);
        cmp(f, file, p, "dbias", db, D, TOL_REDUCE, RTOL_REDUCE);
    }
    free(out);
    free(mean);
    free(rstd);
    free(dx);
    free(dw);
    free(db);
}

/* make_fixtures.py's det_stream: the inputs of the realistic-size case,
 * regenerated bit for bit (lowbias32 hash, 24 bits, exact dyadic map). */
static uint32_t hash32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static float *det_stream(uint32_t stream, int64_t n, double lo, double hi)
{
    float *v = zeros(n);
    for (int64_t i = 0; i < n; i++) {
        uint32_t k = hash32((uint32_t)i + stream * 0x9E3779B9U) >> 8;
        v[i] = (float)(lo + (hi - lo) * (double)k / 16777216.0);
    }
    return v;
}

/* Every stride-th element of x[n] (as Python's x[::stride]). */
static float *strided(const float *x, int64_t n, int64_t stride, int64_t *m)
{
    *m = (n + stride - 1) / stride;
    float *s = zeros(*m);
    for (int64_t i = 0; i < *m; i++) s[i] = x[i * stride];
    return s;
}

/* N=2, C=32, 28x28 with affine: a 25088-element reduction per sample. The
 * inputs are regenerated (too large to store); the results are stored at
 * every stride-th element. */
static void layernorm_big(const cd_fixture *f, const char *file)
{
    const char *p = "big.";
    int64_t N = cfg(f, p, 0), D = cfg(f, p, 1) * cfg(f, p, 2) * cfg(f, p, 3);
    int64_t stride = cfg(f, p, 6);
    ck_assert(cfg(f, p, 4) != 0);
    float *x = det_stream(1, N * D, -3.0, 5.0);
    float *w = det_stream(2, D, 0.5, 1.5);
    float *b = det_stream(3, D, -0.5, 0.5);
    float *dout = det_stream(4, N * D, -1.0, 1.0);

    /* The regenerated inputs are the generator's: exact head, and the sum. */
    cd_fixture_compare("layernorm.bin big.x_head (generator)", x, get(f, p, "x_head", NULL), 8, 0.0,
                       0.0);
    double sum = 0.0;
    for (int64_t i = 0; i < N * D; i++) sum += x[i];
    float fsum = (float)sum;
    cd_fixture_compare("layernorm.bin big.x_sum (generator)", &fsum, get(f, p, "x_sum", NULL), 1,
                       0.0, 1e-6);

    float *out = zeros(N * D), *mean = zeros(N), *rstd = zeros(N), *dx = zeros(N * D);
    float *dw = zeros(D), *db = zeros(D);
    cd__layernorm_forward(out, mean, rstd, x, w, b, N, D, 1e-5f);
    cmp(f, file, p, "mean", mean, N, TOL_ELEM, RTOL_ELEM);
    cmp(f, file, p, "rstd", rstd, N, TOL_ELEM, RTOL_ELEM);
    cd__layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, N, D);

    struct {
        const char *name;
        const float *full;
        int64_t n;
    } res[] = {{"out_s", out, N * D},
               {"dx_s", dx, N * D},
               {"dweight_s", dw, D},
               {"dbias_s", db, D}};
    for (size_t i = 0; i < sizeof res / sizeof res[0]; i++) {
        int64_t m;
        float *s = strided(res[i].full, res[i].n, stride, &m);
        cmp(f, file, p, res[i].name, s, m, TOL_REDUCE, RTOL_REDUCE);
        free(s);
    }
    free(x);
    free(w);
    free(b);
    free(dout);
    free(out);
    free(mean);
    free(rstd);
    free(dx);
    free(dw);
    free(db);
}

START_TEST(layernorm_parity)
{
    const char *file = "layernorm.bin";
    cd_fixture *f = cd_fixture_load(file);
    layernorm_case(f, file, "affine.");
    layernorm_case(f, file, "plain.");
    layernorm_case(f, file, "offset.");
    layernorm_big(f, file);
    cd_fixture_free(f);
}
END_TEST

/* ---- add_channel, concat, softmax ---------------------------------------- */

START_TEST(add_channel_parity)
{
    static const char *const cases[] = {"b3.", "b1."};
    const char *file = "add_channel.bin";
    cd_fixture *f = cd_fixture_load(file);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const char *p = cases[ci];
        int64_t N = cfg(f, p, 0), C = cfg(f, p, 1), HW = cfg(f, p, 2) * cfg(f, p, 3);
        int64_t nx, nv;
        const float *x = get(f, p, "x", &nx);
        const float *v = get(f, p, "v", &nv);
        const float *dout = get(f, p, "dout", NULL);
        ck_assert_int_eq(nx, N * C * HW);
        ck_assert_int_eq(nv, N * C);
        float *out = zeros(nx), *dx = zeros(nx), *dv = zeros(nv);
        cd__add_channel_forward(out, x, v, N, C, HW);
        cmp(f, file, p, "out", out, nx, TOL_ELEM, RTOL_ELEM);
        /* In place (out == x), as ops.h allows. */
        memcpy(out, x, (size_t)nx * sizeof(float));
        cd__add_channel_forward(out, out, v, N, C, HW);
        cmp_note(f, file, p, "out", " (in place)", out, nx, TOL_ELEM, RTOL_ELEM);
        cd__add_channel_backward(dx, dv, dout, N, C, HW);
        cmp(f, file, p, "dx", dx, nx, TOL_ELEM, RTOL_ELEM);
        cmp(f, file, p, "dv", dv, nv, TOL_ELEM, RTOL_ELEM);
        free(out);
        free(dx);
        free(dv);
    }
    cd_fixture_free(f);
}
END_TEST

START_TEST(concat_parity)
{
    static const char *const cases[] = {"b2.", "b1."};
    const char *file = "concat.bin";
    cd_fixture *f = cd_fixture_load(file);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const char *p = cases[ci];
        int64_t N = cfg(f, p, 0), Ca = cfg(f, p, 1), Cb = cfg(f, p, 2);
        int64_t HW = cfg(f, p, 3) * cfg(f, p, 4);
        int64_t na, nb, no;
        const float *a = get(f, p, "a", &na);
        const float *b = get(f, p, "b", &nb);
        const float *dout = get(f, p, "dout", &no);
        ck_assert_int_eq(no, N * (Ca + Cb) * HW);
        float *out = zeros(no), *da = zeros(na), *db = zeros(nb);
        /* A copy: exact. */
        cd__concat_forward(out, a, b, N, Ca, Cb, HW);
        cmp(f, file, p, "out", out, no, 0.0, 0.0);
        cd__concat_backward(da, db, dout, N, Ca, Cb, HW);
        cmp(f, file, p, "da", da, na, 0.0, 0.0);
        cmp(f, file, p, "db", db, nb, 0.0, 0.0);
        free(out);
        free(da);
        free(db);
    }
    cd_fixture_free(f);
}
END_TEST

START_TEST(softmax_parity)
{
    static const char *const cases[] = {"attn.", "large.", "one."};
    const char *file = "softmax.bin";
    cd_fixture *f = cd_fixture_load(file);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const char *p = cases[ci];
        int64_t rows = cfg(f, p, 0), cols = cfg(f, p, 1), n;
        const float *x = get(f, p, "x", &n);
        const float *dout = get(f, p, "dout", NULL);
        ck_assert_int_eq(n, rows * cols);
        float *out = zeros(n), *dx = zeros(n);
        cd__softmax_forward(out, x, rows, cols);
        cmp(f, file, p, "out", out, n, TOL_ELEM, RTOL_ELEM);
        cd__softmax_backward(dx, dout, out, rows, cols);
        cmp(f, file, p, "dx", dx, n, TOL_ELEM, RTOL_ELEM);
        free(out);
        free(dx);
    }
    cd_fixture_free(f);
}
END_TEST

/* ---- bmm (linear attention's products) ----------------------------------- */

/*
 * Per batch entry, with q, k, v d x n:
 *   context = k v^T             bmm(k, v;  M=d, N=d, K=n, -, T)
 *   out     = context^T q       bmm(ctx, q; M=d, N=n, K=d, T, -)
 * and the backward the attention layer does, also through cd__bmm:
 *   dq = context dout           bmm(ctx, dout; d, n, d, -, -)
 *   dC = q dout^T               bmm(q, dout;   d, d, n, -, T)
 *   dk = dC v                   bmm(dC, v;     d, n, d, -, -)
 *   dv = dC^T k                 bmm(dC, k;     d, n, d, T, -)
 */
static void bmm_attention_case(const cd_fixture *f, const char *file, const char *p)
{
    int64_t B = cfg(f, p, 0), d = cfg(f, p, 1), n = cfg(f, p, 2), nq;
    const float *q = get(f, p, "q", &nq);
    const float *k = get(f, p, "k", NULL);
    const float *v = get(f, p, "v", NULL);
    const float *dout = get(f, p, "dout", NULL);
    ck_assert_int_eq(nq, B * d * n);
    int64_t nc = B * d * d;
    float *ctx = zeros(nc), *out = zeros(nq), *dC = zeros(nc);
    float *dq = zeros(nq), *dk = zeros(nq), *dv = zeros(nq);

    cd__bmm(ctx, k, v, B, d, d, n, false, true, 1.0f, 0.0f);
    cmp(f, file, p, "context", ctx, nc, TOL_REDUCE, RTOL_REDUCE);
    cd__bmm(out, ctx, q, B, d, n, d, true, false, 1.0f, 0.0f);
    cmp(f, file, p, "out", out, nq, TOL_REDUCE, RTOL_REDUCE);

    /* alpha and beta: 0.5 A B over garbage with beta 0, then + 0.5 A B with
     * beta 1, gives A B again (the halves are exact). */
    for (int64_t i = 0; i < nq; i++) out[i] = 1e3f;
    cd__bmm(out, ctx, q, B, d, n, d, true, false, 0.5f, 0.0f);
    cd__bmm(out, ctx, q, B, d, n, d, true, false, 0.5f, 1.0f);
    cmp_note(f, file, p, "out", " (alpha, beta)", out, nq, TOL_REDUCE, RTOL_REDUCE);

    cd__bmm(dq, ctx, dout, B, d, n, d, false, false, 1.0f, 1.0f);
    cd__bmm(dC, q, dout, B, d, d, n, false, true, 1.0f, 0.0f);
    cd__bmm(dk, dC, v, B, d, n, d, false, false, 1.0f, 1.0f);
    cd__bmm(dv, dC, k, B, d, n, d, true, false, 1.0f, 1.0f);
    cmp(f, file, p, "dq", dq, nq, TOL_REDUCE, RTOL_REDUCE);
    cmp(f, file, p, "dk", dk, nq, TOL_REDUCE, RTOL_REDUCE);
    cmp(f, file, p, "dv", dv, nq, TOL_REDUCE, RTOL_REDUCE);
    free(ctx);
    free(out);
    free(dC);
    free(dq);
    free(dk);
    free(dv);
}

/* C = A^T B^T (A stored K x M, B stored N x K); da = B^T dout^T and
 * db = dout^T A^T, both also transposed-transposed products. */
static void bmm_tt_case(const cd_fixture *f, const char *file)
{
    const char *p = "tt.";
    int64_t B = cfg(f, p, 0), M = cfg(f, p, 1), N = cfg(f, p, 2), K = cfg(f, p, 3);
    int64_t na, nb, no;
    const float *a = get(f, p, "a", &na);
    const float *b = get(f, p, "b", &nb);
    const float *dout = get(f, p, "dout", &no);
    ck_assert_int_eq(na, B * K * M);
    ck_assert_int_eq(nb, B * N * K);
    ck_assert_int_eq(no, B * M * N);
    float *out = zeros(no), *da = zeros(na), *db = zeros(nb);
    cd__bmm(out, a, b, B, M, N, K, true, true, 1.0f, 0.0f);
    cmp(f, file, p, "out", out, no, TOL_REDUCE, RTOL_REDUCE);
    cd__bmm(da, b, dout, B, K, M, N, true, true, 1.0f, 1.0f);
    cd__bmm(db, dout, a, B, N, K, M, true, true, 1.0f, 1.0f);
    cmp(f, file, p, "da", da, na, TOL_REDUCE, RTOL_REDUCE);
    cmp(f, file, p, "db", db, nb, TOL_REDUCE, RTOL_REDUCE);
    free(out);
    free(da);
    free(db);
}

START_TEST(bmm_parity)
{
    const char *file = "bmm.bin";
    cd_fixture *f = cd_fixture_load(file);
    bmm_attention_case(f, file, "attn.");
    bmm_attention_case(f, file, "small.");
    bmm_tt_case(f, file);
    cd_fixture_free(f);
}
END_TEST

/* ---- time encodings ------------------------------------------------------ */

START_TEST(time_embed_parity)
{
    const char *file = "time_embed.bin";
    cd_fixture *f = cd_fixture_load(file);
    int64_t N;
    const float *tau = cd_fixture_get(f, "tau", &N);

    /* The frequencies buffer is float32(2 pi 1.5^(j-1)): exact. */
    float freq[CD__CNN_NFREQ];
    cd__cnn_frequencies(freq);
    cmp(f, file, "cnn.", "freq", freq, CD__CNN_NFREQ, 0.0, 0.0);

    float *out = zeros(N * 2 * CD__CNN_NFREQ);
    cd__cnn_time_encoding(out, tau, freq, N, CD__CNN_NFREQ);
    cmp(f, file, "cnn.", "out", out, N * 2 * CD__CNN_NFREQ, TOL_EMBED, 0.0);
    free(out);

    static const int64_t dims[] = {32, 16};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        char prefix[16];
        snprintf(prefix, sizeof prefix, "unet%lld.", (long long)dims[i]);
        out = zeros(N * dims[i]);
        cd__sinusoidal_embedding(out, tau, N, dims[i]);
        cmp(f, file, prefix, "out", out, N * dims[i], TOL_EMBED, 0.0);
        free(out);
    }
    cd_fixture_free(f);
}
END_TEST

/* ---- losses -------------------------------------------------------------- */

START_TEST(loss_parity)
{
    static const char *const cases[] = {"a.", "b1."};
    const char *file = "loss.bin";
    cd_fixture *f = cd_fixture_load(file);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const char *p = cases[ci];
        int64_t n;
        const float *pred = get(f, p, "pred", &n);
        const float *target = get(f, p, "target", NULL);
        float scale = get(f, p, "dout", NULL)[0];
        ck_assert_int_eq(n, cfg(f, p, 0));
        float *dpred = zeros(n);

        /* The losses are means accumulated in double: a few ulps. */
        float mse = (float)cd__mse_forward(pred, target, n);
        cmp(f, file, p, "mse", &mse, 1, 0.0, 1e-6);
        cd__mse_backward(dpred, pred, target, n, scale);
        cmp(f, file, p, "mse.dpred", dpred, n, TOL_ELEM, RTOL_ELEM);

        memset(dpred, 0, (size_t)n * sizeof(float));
        float l1 = (float)cd__l1_forward(pred, target, n);
        cmp(f, file, p, "l1", &l1, 1, 0.0, 1e-6);
        cd__l1_backward(dpred, pred, target, n, scale);
        cmp(f, file, p, "l1.dpred", dpred, n, TOL_ELEM, RTOL_ELEM);
        free(dpred);
    }
    cd_fixture_free(f);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("parity");
    TCase *tc = tcase_create("pytorch");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fixture_headers);
    tcase_add_test(tc, conv2d_parity);
    tcase_add_test(tc, conv2d_portable_parity);
    tcase_add_test(tc, conv_transpose2d_parity);
    tcase_add_test(tc, linear_parity);
    tcase_add_test(tc, gelu_parity);
    tcase_add_test(tc, layernorm_parity);
    tcase_add_test(tc, add_channel_parity);
    tcase_add_test(tc, concat_parity);
    tcase_add_test(tc, softmax_parity);
    tcase_add_test(tc, bmm_parity);
    tcase_add_test(tc, time_embed_parity);
    tcase_add_test(tc, loss_parity);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)

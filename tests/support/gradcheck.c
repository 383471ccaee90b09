/* gradcheck.c - see gradcheck.h. */
#include "gradcheck.h"

#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "colddiff.h"

/* The first failed criterion; later ones are not recorded. */
__attribute__((format(printf, 2, 3))) static void gc_fail(cd_gc_verdict *v, const char *fmt, ...)
{
    if (!v->ok) return;
    v->ok = false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->why, sizeof v->why, fmt, ap);
    va_end(ap);
}

cd_gc_opts cd_gc_default_opts(void)
{
    return (
        cd_gc_opts){.eps = 1e-2, .max_maa = 1e-3, .max_dir = 2e-3, .max_elems = 256, .seed = 1234};
}

void cd_gc_add_input(cd_gc_op *op, const char *name, float *x, float *dx, int64_t n)
{
    ck_assert_msg(op->n_inputs < CD_GC_MAX_INPUTS, "too many gradcheck inputs");
    op->in[op->n_inputs++] = (cd_gc_input){name, x, dx, n};
}

void cd_gc_randn(float *x, int64_t n, uint64_t seed, float scale)
{
    cd_rng *r = NULL;
    ck_assert_int_eq(cd_rng_create(&r, seed), CD_OK);
    ck_assert_int_eq(cd_rng_normal(r, x, n), CD_OK);
    for (int64_t i = 0; i < n; i++) x[i] *= scale;
    cd_rng_free(r);
}

static double loss(cd_gc_op *op)
{
    op->forward(op->ctx);
    double s = 0.0;
    for (int64_t i = 0; i < op->n_out; i++) s += (double)op->out[i] * op->dout[i];
    return s;
}

/* Five-point derivative of L along direction v (v == NULL: unit vector at
 * element i) with step h. */
static double numeric(cd_gc_op *op, cd_gc_input *in, int64_t i, const float *v, double h,
                      float *saved)
{
    static const double steps[4] = {2, 1, -1, -2}, weights[4] = {-1, 8, -8, 1};
    double acc = 0.0;
    for (int s = 0; s < 4; s++) {
        if (v) {
            for (int64_t k = 0; k < in->n; k++) in->x[k] = (float)(saved[k] + steps[s] * h * v[k]);
        } else {
            in->x[i] = (float)(saved[i] + steps[s] * h);
        }
        acc += weights[s] * loss(op);
    }
    if (v)
        memcpy(in->x, saved, (size_t)in->n * sizeof *saved);
    else
        in->x[i] = saved[i];
    return acc / (12.0 * h);
}

/*
 * The error model. A float32 forward returns L(x) + e(x), e being rounding
 * noise that changes pseudo-randomly with x; its size depends on the BLAS
 * kernel and the library's code path, so no fixed tolerance fits every
 * machine. Measure it instead: along a direction v, the sixth differences of
 * L on a grid of step delta are delta^6 L^(6) (negligible) plus the
 * differences of the noise, whose standard deviation is sigma sqrt(924)
 * (924 = the sum of the squared binomial weights C(6, k)). The five-point
 * quotient weights four values by (1, 8, 8, 1) / 12h, so it carries noise of
 * standard deviation sigma sqrt(130) / 12h: the allowance below is a fixed
 * number of those.
 */
#define NOISE_POINTS 26
#define NOISE_SIGMAS 6.0

static double loss_noise(cd_gc_op *op, cd_gc_input *in, const float *v, double delta,
                         const float *saved)
{
    double Ls[NOISE_POINTS], ss = 0.0;
    for (int j = 0; j < NOISE_POINTS; j++) {
        const double t = (j - NOISE_POINTS / 2) * delta;
        for (int64_t k = 0; k < in->n; k++) in->x[k] = (float)(saved[k] + t * v[k]);
        Ls[j] = loss(op);
    }
    memcpy(in->x, saved, (size_t)in->n * sizeof *saved);
    for (int j = 0; j + 6 < NOISE_POINTS; j++) {
        const double d6 = Ls[j] - 6 * Ls[j + 1] + 15 * Ls[j + 2] - 20 * Ls[j + 3] + 15 * Ls[j + 4] -
                          6 * Ls[j + 5] + Ls[j + 6];
        ss += d6 * d6;
    }
    return sqrt(ss / (NOISE_POINTS - 6) / 924.0);
}

/* What rounding noise alone may move a five-point quotient of step h by. */
static double noise_allowance(double sigma, double h)
{
    return NOISE_SIGMAS * sigma * sqrt(130.0) / (12.0 * h);
}

/* A random direction of unit length. */
static float *unit_direction(int64_t n, uint64_t seed)
{
    float *v = malloc((size_t)n * sizeof *v);
    cd_gc_randn(v, n, seed, 1.0f);
    double norm = 0.0;
    for (int64_t i = 0; i < n; i++) norm += (double)v[i] * v[i];
    for (int64_t i = 0; i < n; i++) v[i] = (float)(v[i] / sqrt(norm));
    return v;
}

static void zero_grads(cd_gc_op *op)
{
    for (int k = 0; k < op->n_inputs; k++)
        memset(op->in[k].dx, 0, (size_t)op->in[k].n * sizeof(float));
}

/* The second backward adds its contributions one by one onto the first's
 * result, so an element that is a cancelling sum (a shared weight, a bias
 * summed over tiles) can differ from 2g by the rounding of its terms, which
 * may be as large as the input's largest gradient: the allowance is a few
 * ulps of that. Not accumulating at all misses by |g| on every element. */
static void check_accumulates(cd_gc_op *op, float **ga, cd_gc_verdict *v)
{
    op->backward(op->ctx); /* second call, no zeroing */
    for (int k = 0; k < op->n_inputs; k++) {
        cd_gc_input *in = &op->in[k];
        double largest = 0.0;
        for (int64_t i = 0; i < in->n; i++) largest = fmax(largest, fabs(ga[k][i]));
        for (int64_t i = 0; i < in->n; i++) {
            double want = 2.0 * ga[k][i];
            if (fabs(in->dx[i] - want) > 1e-5 * fabs(want) + 1e-6 * largest + 1e-30) {
                gc_fail(v, "%s: backward does not accumulate into d%s[%lld]: %g vs 2 x %g",
                        op->name, in->name, (long long)i, in->dx[i], ga[k][i]);
                return;
            }
        }
    }
}

/* Per element, ggml's asymmetry |a - n| / (|a| + |n|) of what the measured
 * noise cannot explain: the part of |a - n| beyond the allowance. */
static double check_elements(cd_gc_op *op, cd_gc_input *in, const float *ga, const cd_gc_opts *o,
                             cd_rng *rng, double allow, cd_gc_verdict *v)
{
    float *saved = malloc((size_t)in->n * sizeof *saved);
    memcpy(saved, in->x, (size_t)in->n * sizeof *saved);
    int64_t m = in->n < o->max_elems ? in->n : o->max_elems;
    double mean_abs = 0.0;
    for (int64_t i = 0; i < in->n; i++) mean_abs += fabs(ga[i]);
    mean_abs /= (double)in->n;
    double floor_ = 1e-3 * mean_abs + 1e-7;

    double sum = 0.0, worst = 0.0, worst_a = 0.0, worst_n = 0.0;
    int64_t worst_i = -1, resolved = 0;
    for (int64_t j = 0; j < m; j++) {
        int64_t i = j;
        if (m < in->n) ck_assert_int_eq(cd_rng_int_range(rng, &i, 1, 0, in->n - 1), CD_OK);
        double gn = numeric(op, in, i, NULL, o->eps, saved);
        double excess = fmax(0.0, fabs(ga[i] - gn) - allow);
        double a = excess / (fabs(ga[i]) + fabs(gn) + floor_);
        sum += a;
        resolved += fabs(ga[i]) > allow;
        if (a > worst) worst = a, worst_i = i, worst_a = ga[i], worst_n = gn;
    }
    free(saved);
    double maa = sum / (double)m;
    printf("gradcheck %-28s d%-8s n=%-7lld maa=%.2e worst[%lld]=%.2e (%.6g vs %.6g) "
           "noise allowance %.2e, %lld of %lld above it\n",
           op->name, in->name, (long long)in->n, maa, (long long)worst_i, worst, worst_a, worst_n,
           allow, (long long)resolved, (long long)m);
    if (maa > o->max_maa)
        gc_fail(v,
                "%s: d%s mean abs asymmetry %.3e > %.1e (worst element %lld: analytic "
                "%.8g, numeric %.8g; noise allowance %.3g)",
                op->name, in->name, maa, o->max_maa, (long long)worst_i, worst_a, worst_n, allow);
    return maa;
}

/* The derivative along v against <grad, v>, beyond the noise allowance and
 * the truncation error, which Richardson's estimate bounds: the five-point
 * error grows as h^4, so D(2h) - D(h) is 15 times D(h)'s. */
static void check_direction(cd_gc_op *op, cd_gc_input *in, const float *ga, const cd_gc_opts *o,
                            const float *v, double allow, cd_gc_verdict *verdict)
{
    float *saved = malloc((size_t)in->n * sizeof *saved);
    memcpy(saved, in->x, (size_t)in->n * sizeof *saved);
    double dot = 0.0, gnorm = 0.0;
    for (int64_t i = 0; i < in->n; i++) {
        dot += (double)ga[i] * v[i];
        gnorm += (double)ga[i] * ga[i];
    }
    gnorm = sqrt(gnorm);
    double dn = numeric(op, in, 0, v, o->eps, saved);
    double dn2 = numeric(op, in, 0, v, 2.0 * o->eps, saved);
    double trunc = fabs(dn2 - dn) / 15.0;
    /* A random v can be nearly orthogonal to the gradient, hence the floor
     * of 1e-3 |grad| in the scale. */
    double excess = fmax(0.0, fabs(dn - dot) - allow - trunc);
    double rel = excess / (fabs(dot) + fabs(dn) + 1e-3 * gnorm + 1e-9);
    if (rel > o->max_dir)
        gc_fail(verdict,
                "%s: directional check on %s: numeric %.8g vs <grad, v> %.8g "
                "(relative excess %.2e over noise %.2e + truncation %.2e)",
                op->name, in->name, dn, dot, rel, allow, trunc);
    /* An allowance near the gradient itself would let anything pass. */
    if (allow + trunc > 1e-2 * gnorm + 1e-9)
        gc_fail(verdict,
                "%s: d%s cannot be checked: noise %.3g + truncation %.3g exceed 1%% "
                "of |grad| = %.3g (adjust eps)",
                op->name, in->name, allow, trunc, gnorm);
    free(saved);
}

cd_gc_verdict cd_gradcheck_verdict(cd_gc_op *op, const cd_gc_opts *opts)
{
    cd_gc_opts o = opts ? *opts : cd_gc_default_opts();
    cd_gc_verdict verdict = {.ok = true};
    ck_assert_msg(op->out && op->dout && op->n_out > 0 && op->n_inputs > 0,
                  "%s: gradcheck op is incomplete", op->name);
    cd_gc_randn(op->dout, op->n_out, o.seed, 1.0f);

    float *ga[CD_GC_MAX_INPUTS];
    zero_grads(op);
    op->forward(op->ctx);
    op->backward(op->ctx);
    for (int k = 0; k < op->n_inputs; k++) {
        size_t bytes = (size_t)op->in[k].n * sizeof(float);
        ga[k] = malloc(bytes);
        memcpy(ga[k], op->in[k].dx, bytes);
        for (int64_t i = 0; i < op->in[k].n && verdict.ok; i++)
            if (!isfinite(ga[k][i]))
                gc_fail(&verdict, "%s: d%s[%lld] is not finite", op->name, op->in[k].name,
                        (long long)i);
    }
    check_accumulates(op, ga, &verdict);

    cd_rng *rng = NULL;
    ck_assert_int_eq(cd_rng_create(&rng, o.seed + 1), CD_OK);
    for (int k = 0; k < op->n_inputs; k++) {
        cd_gc_input *in = &op->in[k];
        float *v = unit_direction(in->n, o.seed + 2 + (uint64_t)k);
        float *saved = malloc((size_t)in->n * sizeof *saved);
        memcpy(saved, in->x, (size_t)in->n * sizeof *saved);
        double allow = noise_allowance(loss_noise(op, in, v, o.eps / 4.0, saved), o.eps);
        free(saved);
        double maa = check_elements(op, in, ga[k], &o, rng, allow, &verdict);
        if (maa > verdict.worst_maa) verdict.worst_maa = maa;
        check_direction(op, in, ga[k], &o, v, allow, &verdict);
        free(v);
        free(ga[k]);
    }
    cd_rng_free(rng);
    return verdict;
}

double cd_gradcheck(cd_gc_op *op, const cd_gc_opts *opts)
{
    cd_gc_verdict v = cd_gradcheck_verdict(op, opts);
    ck_assert_msg(v.ok, "%s", v.why);
    return v.worst_maa;
}

/* ---- whole decoders ---------------------------------------------------- */

typedef struct {
    cd_decoder *d;
    cd_tensor *z, *tau, *out, *dout, *dz_tmp;
    cd_tensor *labels; /* NULL for a decoder without classes */
    float *dz;         /* the gradcheck's accumulating dz */
    bool saved;        /* a forward's activations are there for backward */
} net_ctx;

static void net_forward(void *ctx)
{
    net_ctx *c = ctx;
    ck_assert_int_eq(cd_decoder_forward_labeled(c->d, c->z, c->tau, c->labels, c->out), CD_OK);
    c->saved = true;
}

/* cd_decoder_backward overwrites dz; the gradcheck wants it added. A
 * backward uses up its forward's activations, and the gradcheck's second
 * backward (the accumulation check) comes without a forward: run it again,
 * which gives the same activations. */
static void net_backward(void *ctx)
{
    net_ctx *c = ctx;
    if (!c->saved) net_forward(c);
    c->saved = false;
    ck_assert_int_eq(cd_decoder_backward(c->d, c->dout, c->dz_tmp), CD_OK);
    const float *g = cd_tensor_data(c->dz_tmp);
    for (int64_t i = 0; i < cd_tensor_numel(c->dz_tmp); i++) c->dz[i] += g[i];
}

static cd_tensor *image_tensor(int64_t N, int64_t C, int64_t H, int64_t W)
{
    cd_tensor *t = NULL;
    ck_assert_int_eq(cd_tensor_create(&t, 4, (int64_t[]){N, C, H, W}), CD_OK);
    return t;
}

double cd_gc_check_decoder(cd_decoder *d, int64_t N, int64_t C, int64_t H, int64_t W,
                           const char *name, const cd_gc_opts *opts, float z_scale)
{
    net_ctx c = {.d = d};
    c.z = image_tensor(N, C, H, W);
    c.out = image_tensor(N, C, H, W);
    c.dout = image_tensor(N, C, H, W);
    c.dz_tmp = image_tensor(N, C, H, W);
    ck_assert_int_eq(cd_tensor_create(&c.tau, 1, (int64_t[]){N}), CD_OK);
    cd_gc_randn(cd_tensor_data(c.z), N * C * H * W, 5, z_scale);
    for (int64_t i = 0; i < N; i++) cd_tensor_data(c.tau)[i] = (float)(i + 1) / (float)(N + 2);
    const int64_t K = cd_decoder_class_count(d);
    if (K > 0) {
        /* Even images take classes, odd ones "no class": both kinds of row. */
        ck_assert_int_eq(cd_tensor_create(&c.labels, 1, (int64_t[]){N}), CD_OK);
        for (int64_t i = 0; i < N; i++)
            cd_tensor_data(c.labels)[i] = i % 2 ? -1.0f : (float)((i / 2) % K);
    }
    c.dz = calloc((size_t)(N * C * H * W), sizeof(float));

    cd_params *p = cd_decoder_params(d);
    cd_gc_op op = {.name = name,
                   .ctx = &c,
                   .forward = net_forward,
                   .backward = net_backward,
                   .out = cd_tensor_data(c.out),
                   .dout = cd_tensor_data(c.dout),
                   .n_out = N * C * H * W};
    cd_gc_add_input(&op, "z", cd_tensor_data(c.z), c.dz, N * C * H * W);
    cd_gc_add_input(&op, "params", cd_params_data(p, -1), cd_params_grad(p, -1),
                    cd_params_numel(p));
    double worst = cd_gradcheck(&op, opts);
    free(c.dz);
    cd_tensor_free(c.z);
    cd_tensor_free(c.out);
    cd_tensor_free(c.dout);
    cd_tensor_free(c.dz_tmp);
    cd_tensor_free(c.tau);
    cd_tensor_free(c.labels);
    return worst;
}

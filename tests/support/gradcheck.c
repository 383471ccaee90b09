/* gradcheck.c - see gradcheck.h. */
#include "gradcheck.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "colddiff.h"

cd_gc_opts cd_gc_default_opts(void)
{
    return (cd_gc_opts){.eps = 1e-2, .max_maa = 1e-3, .max_dir = 2e-3,
                        .max_elems = 256, .seed = 1234};
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
static double numeric(cd_gc_op *op, cd_gc_input *in, int64_t i, const float *v,
                      double h, float *saved)
{
    static const double steps[4] = {2, 1, -1, -2}, weights[4] = {-1, 8, -8, 1};
    double acc = 0.0;
    for (int s = 0; s < 4; s++) {
        if (v) {
            for (int64_t k = 0; k < in->n; k++)
                in->x[k] = (float)(saved[k] + steps[s] * h * v[k]);
        } else {
            in->x[i] = (float)(saved[i] + steps[s] * h);
        }
        acc += weights[s] * loss(op);
    }
    if (v) memcpy(in->x, saved, (size_t)in->n * sizeof *saved);
    else in->x[i] = saved[i];
    return acc / (12.0 * h);
}

static void zero_grads(cd_gc_op *op)
{
    for (int k = 0; k < op->n_inputs; k++)
        memset(op->in[k].dx, 0, (size_t)op->in[k].n * sizeof(float));
}

static void check_accumulates(cd_gc_op *op, float **ga)
{
    op->backward(op->ctx); /* second call, no zeroing */
    for (int k = 0; k < op->n_inputs; k++) {
        cd_gc_input *in = &op->in[k];
        for (int64_t i = 0; i < in->n; i++) {
            double want = 2.0 * ga[k][i];
            ck_assert_msg(fabs(in->dx[i] - want) <= 1e-5 * (fabs(want) + 1e-6),
                          "%s: backward does not accumulate into d%s[%lld]: %g vs 2 x %g",
                          op->name, in->name, (long long)i, in->dx[i], ga[k][i]);
        }
    }
}

static double check_elements(cd_gc_op *op, cd_gc_input *in, const float *ga,
                             const cd_gc_opts *o, cd_rng *rng)
{
    float *saved = malloc((size_t)in->n * sizeof *saved);
    memcpy(saved, in->x, (size_t)in->n * sizeof *saved);
    int64_t m = in->n < o->max_elems ? in->n : o->max_elems;
    double mean_abs = 0.0;
    for (int64_t i = 0; i < in->n; i++) mean_abs += fabs(ga[i]);
    mean_abs /= (double)in->n;
    double floor_ = 1e-3 * mean_abs + 1e-7;

    double sum = 0.0, worst = 0.0, worst_a = 0.0, worst_n = 0.0;
    int64_t worst_i = -1;
    for (int64_t j = 0; j < m; j++) {
        int64_t i = j;
        if (m < in->n) ck_assert_int_eq(cd_rng_int_range(rng, &i, 1, 0, in->n - 1), CD_OK);
        double gn = numeric(op, in, i, NULL, o->eps, saved);
        double a = fabs(ga[i] - gn) / (fabs(ga[i]) + fabs(gn) + floor_);
        sum += a;
        if (a > worst) worst = a, worst_i = i, worst_a = ga[i], worst_n = gn;
    }
    free(saved);
    double maa = sum / (double)m;
    printf("gradcheck %-28s d%-8s n=%-7lld maa=%.2e worst[%lld]=%.2e (%.6g vs %.6g)\n",
           op->name, in->name, (long long)in->n, maa, (long long)worst_i, worst, worst_a,
           worst_n);
    ck_assert_msg(maa <= o->max_maa, "%s: d%s mean abs asymmetry %.3e > %.1e "
                  "(worst element %lld: analytic %.8g, numeric %.8g)", op->name, in->name,
                  maa, o->max_maa, (long long)worst_i, worst_a, worst_n);
    return maa;
}

static void check_direction(cd_gc_op *op, cd_gc_input *in, const float *ga,
                            const cd_gc_opts *o, uint64_t seed)
{
    float *v = malloc((size_t)in->n * sizeof *v);
    float *saved = malloc((size_t)in->n * sizeof *saved);
    cd_gc_randn(v, in->n, seed, 1.0f);
    memcpy(saved, in->x, (size_t)in->n * sizeof *saved);
    /* A unit direction, so a step of eps moves the whole input by eps, not
     * every element by eps (which would leave the linear regime for large
     * inputs). */
    double vnorm = 0.0;
    for (int64_t i = 0; i < in->n; i++) vnorm += (double)v[i] * v[i];
    for (int64_t i = 0; i < in->n; i++) v[i] = (float)(v[i] / sqrt(vnorm));
    double dot = 0.0, gnorm = 0.0;
    for (int64_t i = 0; i < in->n; i++) {
        dot += (double)ga[i] * v[i];
        gnorm += (double)ga[i] * ga[i];
    }
    double dn = numeric(op, in, 0, v, o->eps, saved);
    double rel = fabs(dn - dot) / (fabs(dot) + fabs(dn) + 1e-3 * sqrt(gnorm) + 1e-9);
    ck_assert_msg(rel <= o->max_dir, "%s: directional check on %s: numeric %.8g vs "
                  "<grad, v> %.8g (relative %.2e)", op->name, in->name, dn, dot, rel);
    free(v);
    free(saved);
}

double cd_gradcheck(cd_gc_op *op, const cd_gc_opts *opts)
{
    cd_gc_opts o = opts ? *opts : cd_gc_default_opts();
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
        for (int64_t i = 0; i < op->in[k].n; i++)
            ck_assert_msg(isfinite(ga[k][i]), "%s: d%s[%lld] is not finite", op->name,
                          op->in[k].name, (long long)i);
    }
    check_accumulates(op, ga);

    cd_rng *rng = NULL;
    ck_assert_int_eq(cd_rng_create(&rng, o.seed + 1), CD_OK);
    double worst = 0.0;
    for (int k = 0; k < op->n_inputs; k++) {
        double maa = check_elements(op, &op->in[k], ga[k], &o, rng);
        if (maa > worst) worst = maa;
        check_direction(op, &op->in[k], ga[k], &o, o.seed + 2 + (uint64_t)k);
        free(ga[k]);
    }
    cd_rng_free(rng);
    return worst;
}

/* ---- whole decoders ---------------------------------------------------- */

typedef struct {
    cd_decoder *d;
    cd_tensor *z, *tau, *out, *dout, *dz_tmp;
    float *dz; /* the gradcheck's accumulating dz */
} net_ctx;

static void net_forward(void *ctx)
{
    net_ctx *c = ctx;
    ck_assert_int_eq(cd_decoder_forward(c->d, c->z, c->tau, c->out), CD_OK);
}

/* cd_decoder_backward overwrites dz; the gradcheck wants it added. */
static void net_backward(void *ctx)
{
    net_ctx *c = ctx;
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
    c.dz = calloc((size_t)(N * C * H * W), sizeof(float));

    cd_params *p = cd_decoder_params(d);
    cd_gc_op op = {.name = name, .ctx = &c, .forward = net_forward, .backward = net_backward,
                   .out = cd_tensor_data(c.out), .dout = cd_tensor_data(c.dout),
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
    return worst;
}

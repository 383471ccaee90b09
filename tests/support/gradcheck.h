/*
 * gradcheck.h - the one gradient-check helper every op test uses.
 *
 * An op under test is wrapped as a closure: forward() recomputes `out`
 * from the current inputs, backward() ADDS dL/d(input) into each input's
 * gradient buffer given dL/d(out) in `dout`. The scalar checked is
 * L = sum_i out[i] * r[i] for a fixed random r, so every output element
 * matters.
 *
 * cd_gradcheck() then checks, for every registered input (data or
 * parameter):
 *   1. the accumulate rule: a second backward() without zeroing doubles
 *      the gradient;
 *   2. per element, the analytic gradient against a five-point central
 *      difference computed in double from float forwards
 *      (-L(x+2h) + 8L(x+h) - 8L(x-h) + L(x-2h)) / 12h, scored by ggml's
 *      mean absolute asymmetry |a - n| / (|a| + |n|) (with a small floor in
 *      the denominator so exact zeros do not divide by zero); inputs larger
 *      than max_elems are sampled at max_elems random positions;
 *   3. a directional derivative along a random unit direction v of the
 *      whole input, against <grad, v> (the floor in its relative error is
 *      1e-3 |grad|, since a random direction can be nearly orthogonal to
 *      the gradient).
 *
 * Tolerances follow an error model rather than one machine's rounding. The
 * float32 forward carries rounding noise that depends on the BLAS kernel and
 * the library's code path; the checker measures it for each input (sixth
 * differences of L on a fine grid along v) and discounts from every
 * |analytic - numeric| what six standard deviations of that noise, carried
 * through the five-point weights, can explain. The directional check also
 * discounts the truncation error estimated from a second step of 2h. What
 * is left is scored against max_maa and max_dir, and an input whose noise
 * exceeds 1% of its gradient's norm fails as uncheckable instead of
 * passing vacuously.
 */
#ifndef CD_GRADCHECK_H
#define CD_GRADCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "colddiff.h"

#define CD_GC_MAX_INPUTS 12

typedef struct cd_gc_input {
    const char *name;
    float *x;  /* the values; perturbed in place and restored */
    float *dx; /* the gradient buffer backward() adds into */
    int64_t n;
} cd_gc_input;

typedef struct cd_gc_op {
    const char *name;
    void *ctx;
    void (*forward)(void *ctx);
    void (*backward)(void *ctx);
    float *out;  /* written by forward() */
    float *dout; /* read by backward(); filled by the helper */
    int64_t n_out;
    int n_inputs;
    cd_gc_input in[CD_GC_MAX_INPUTS];
} cd_gc_op;

typedef struct cd_gc_opts {
    double eps;        /* step h, e.g. 1e-2 (float forwards limit how small) */
    double max_maa;    /* largest mean absolute asymmetry allowed, e.g. 1e-3 */
    double max_dir;    /* largest relative error of the directional check */
    int64_t max_elems; /* per-input element budget, e.g. 256 */
    uint64_t seed;
} cd_gc_opts;

/* Sensible defaults for float32 ops of moderate size. */
cd_gc_opts cd_gc_default_opts(void);

/* Register an input; returns the op for chaining. */
void cd_gc_add_input(cd_gc_op *op, const char *name, float *x, float *dx, int64_t n);

/* The outcome of all checks: ok, or why not (the first failure). */
typedef struct cd_gc_verdict {
    bool ok;
    double worst_maa;
    char why[512];
} cd_gc_verdict;

/* Run all checks and report instead of asserting (for testing the checker). */
cd_gc_verdict cd_gradcheck_verdict(cd_gc_op *op, const cd_gc_opts *opts);

/* Run all checks; ck_asserts on failure. Returns the worst asymmetry. */
double cd_gradcheck(cd_gc_op *op, const cd_gc_opts *opts);

/*
 * Gradient-check a whole decoder through the public API at batch N and
 * H x W: dz and every parameter (the flat block is one input), with z of
 * normals times z_scale and tau = (n + 1)/(N + 2); a decoder with classes
 * gets label (n / 2) mod K for even n and -1 ("no class") for odd n.
 * Returns the worst asymmetry.
 */
double cd_gc_check_decoder(cd_decoder *d, int64_t N, int64_t C, int64_t H, int64_t W,
                           const char *name, const cd_gc_opts *opts, float z_scale);

/* Fill x[n] with normals from a seed (for test inputs). */
void cd_gc_randn(float *x, int64_t n, uint64_t seed, float scale);

#endif /* CD_GRADCHECK_H */

/*
 * schedule.c - noise / degradation schedules (docs/models.md, Schedules).
 *
 * A schedule is two arrays indexed t = 0..T: beta_t and alpha-bar_t, with
 * beta_0 = 0 and alpha-bar_0 = 1 unless a report preset or an imported
 * array says otherwise. alpha-bar is the product of (1 - beta_s) over
 * s = 1..t, accumulated in double from the stored float betas and rounded
 * once, so training and sampling read exactly the same numbers.
 */
#include "core.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* T's upper bound: far beyond any diffusion run, small enough that the
 * arrays can never overflow a size. */
#define MAX_T 1000000

struct cd_schedule {
    cd_schedule_kind kind;
    int64_t T;
    float *beta;      /* T + 1 */
    float *alpha_bar; /* T + 1 */
};

static cd_status check_T(const char *fn, int64_t T)
{
    if (T < 1 || T > MAX_T)
        return cd__error(CD_ERR_RANGE, "%s: T = %" PRId64 " is outside 1..%d", fn, T, MAX_T);
    return CD_OK;
}

/* beta must be finite and in (0, 1]: 1 is allowed because the report's blur
 * uses a constant schedule of 1 (there beta is the blur's sigma); the noise
 * samplers refuse a beta of 1 themselves. */
static cd_status check_beta(const char *fn, const char *what, double b)
{
    if (!isfinite(b)) return cd__error(CD_ERR_NOT_FINITE, "%s: %s is %g", fn, what, b);
    /* Checked as stored: a positive double can round to a float 0. */
    if (!((float)b > 0.0f && b <= 1.0))
        return cd__error(CD_ERR_RANGE, "%s: %s = %g is outside (0, 1] in float32", fn, what, b);
    return CD_OK;
}

static cd_status make(cd_schedule **out, const char *fn, cd_schedule_kind kind, int64_t T)
{
    cd_schedule *s = cd__calloc(1, sizeof *s, "schedule");
    if (s) {
        s->beta = cd__calloc((size_t)T + 1, sizeof(float), "schedule beta");
        s->alpha_bar =
            s->beta ? cd__calloc((size_t)T + 1, sizeof(float), "schedule alpha-bar") : NULL;
    }
    if (!s || !s->beta || !s->alpha_bar) {
        char cause[512];
        snprintf(cause, sizeof cause, "%s", cd_last_error());
        cd_schedule_free(s);
        return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: T = %" PRId64 ": %s", fn, T, cause);
    }
    s->kind = kind;
    s->T = T;
    *out = s;
    return CD_OK;
}

/* alpha-bar from beta_1..beta_T, with beta_0 = 0 and alpha-bar_0 = 1. */
static void derive_alpha_bar(cd_schedule *s)
{
    double prod = 1.0;
    s->beta[0] = 0.0f;
    s->alpha_bar[0] = 1.0f;
    for (int64_t t = 1; t <= s->T; t++) {
        prod *= 1.0 - (double)s->beta[t];
        s->alpha_bar[t] = (float)prod;
    }
}

cd_status cd_schedule_create_linear(cd_schedule **out, int64_t T, double beta_min, double beta_max)
{
    static const char fn[] = "cd_schedule_create_linear";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__TRY(check_T(fn, T));
    CD__TRY(check_beta(fn, "beta_min", beta_min));
    CD__TRY(check_beta(fn, "beta_max", beta_max));
    CD__TRY(make(out, fn, CD_SCHEDULE_LINEAR, T));
    /* T = 1 has no spacing to speak of: its one step is beta_min. */
    for (int64_t t = 1; t <= T; t++)
        (*out)->beta[t] =
            (float)(T == 1 ? beta_min
                           : beta_min + (beta_max - beta_min) * (double)(t - 1) / (double)(T - 1));
    derive_alpha_bar(*out);
    return CD_OK;
}

/* PyTorch's float32 linspace on a CPU (the AVX2 kernel of Debian's
 * python3-torch): step = (end - start)/(T - 1) in float; the first half
 * counts up from start, the second down from end, each element through a
 * fused multiply-add; inside whole blocks of 16 elements, each group of 8
 * instead takes its first element that way and adds step * j in float. */
static float torch_linspace_at(float start, float end, float step, int64_t T, int64_t i)
{
    const int64_t blocks_end = T - T % 16;
    const int64_t base_i = i < blocks_end ? i - i % 8 : i;
    const float base = base_i < T / 2 ? fmaf(step, (float)base_i, start)
                                      : fmaf(-step, (float)(T - base_i - 1), end);
    if (base_i == i) return base;
    const float inc = step * (float)(i - base_i);
    return base + inc;
}

/* log and exp rounded once from double: PyTorch's float32 log agrees with
 * that on every entry of the report's schedules; its exp within 1 ulp. */
static float log_f32(float x) { return (float)log((double)x); }
static float exp_f32(float x) { return (float)exp((double)x); }

cd_status cd_schedule_create_linear_report(cd_schedule **out, int64_t T, double beta_min,
                                           double beta_max)
{
    static const char fn[] = "cd_schedule_create_linear_report";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__TRY(check_T(fn, T));
    CD__TRY(check_beta(fn, "beta_min", beta_min));
    CD__TRY(check_beta(fn, "beta_max", beta_max));
    CD__TRY(make(out, fn, CD_SCHEDULE_LINEAR_REPORT, T));
    cd_schedule *s = *out;
    const float start = (float)beta_min, end = (float)beta_max;
    const float step = T > 1 ? (end - start) / (float)(T - 1) : 0.0f;
    /* alpha-bar = exp(cumsum(log(1 - beta))) over t = 0..T with beta_0 = 0,
     * all in float32 and summed in order, as the report's code did. */
    float acc = 0.0f;
    s->beta[0] = 0.0f;
    s->alpha_bar[0] = 1.0f;
    for (int64_t t = 1; t <= T; t++) {
        /* Between two floats in (0, 1], so in (0, 1] itself. */
        s->beta[t] = T == 1 ? start : torch_linspace_at(start, end, step, T, t - 1);
        acc += log_f32(1.0f - s->beta[t]);
        s->alpha_bar[t] = exp_f32(acc);
    }
    return CD_OK;
}

cd_status cd_schedule_create_constant(cd_schedule **out, int64_t T, double c)
{
    static const char fn[] = "cd_schedule_create_constant";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__TRY(check_T(fn, T));
    CD__TRY(check_beta(fn, "c", c));
    CD__TRY(make(out, fn, CD_SCHEDULE_CONSTANT, T));
    for (int64_t t = 1; t <= T; t++) (*out)->beta[t] = (float)c;
    derive_alpha_bar(*out);
    return CD_OK;
}

cd_status cd_schedule_create_constant_report(cd_schedule **out, int64_t T, double c)
{
    static const char fn[] = "cd_schedule_create_constant_report";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__TRY(check_T(fn, T));
    CD__TRY(check_beta(fn, "c", c));
    CD__TRY(make(out, fn, CD_SCHEDULE_CONSTANT_REPORT, T));
    cd_schedule *s = *out;
    /* The report's code: beta_0 = c as well, and
     * alpha-bar = exp(cumsum(log(1 - beta))) over t = 0..t in float32, so
     * alpha-bar_t is about (1 - c)^(t + 1). */
    const float cf = (float)c, l = logf(1.0f - cf);
    float acc = 0.0f;
    for (int64_t t = 0; t <= T; t++) {
        s->beta[t] = cf;
        acc += l;
        s->alpha_bar[t] = expf(acc);
    }
    return CD_OK;
}

/* f(t) / f(0) with f(t) = cos^2(pi/2 (t/T + s) / (1 + s)), in double. */
static double cosine_abar(int64_t t, int64_t T, double s)
{
    const double half_pi = 1.57079632679489661923;
    double f = cos(half_pi * ((double)t / (double)T + s) / (1.0 + s));
    double f0 = cos(half_pi * s / (1.0 + s));
    return (f * f) / (f0 * f0);
}

static cd_status check_cosine(const char *fn, int64_t T, double s, double clip)
{
    CD__TRY(check_T(fn, T));
    if (!isfinite(s) || !isfinite(clip))
        return cd__error(CD_ERR_NOT_FINITE, "%s: s = %g, beta_clip = %g", fn, s, clip);
    if (!(s >= 0.0 && s <= 1.0))
        return cd__error(CD_ERR_RANGE, "%s: s = %g is outside [0, 1]", fn, s);
    return check_beta(fn, "beta_clip", clip);
}

static void cosine_betas(cd_schedule *sch, double s, double clip)
{
    double prev = 1.0;
    for (int64_t t = 1; t <= sch->T; t++) {
        double a = cosine_abar(t, sch->T, s);
        double b = 1.0 - a / prev;
        sch->beta[t] = (float)(b < clip ? b : clip);
        prev = a;
    }
}

cd_status cd_schedule_create_cosine(cd_schedule **out, int64_t T, double s, double beta_clip)
{
    static const char fn[] = "cd_schedule_create_cosine";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__TRY(check_cosine(fn, T, s, beta_clip));
    CD__TRY(make(out, fn, CD_SCHEDULE_COSINE, T));
    cosine_betas(*out, s, beta_clip);
    derive_alpha_bar(*out); /* from the clipped betas, so both agree */
    return CD_OK;
}

cd_status cd_schedule_create_cosine_report(cd_schedule **out, int64_t T)
{
    static const char fn[] = "cd_schedule_create_cosine_report";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__TRY(check_cosine(fn, T, 0.008, 0.9));
    CD__TRY(make(out, fn, CD_SCHEDULE_COSINE_REPORT, T));
    cd_schedule *sch = *out;
    /* The report's preset: clip at 0.9 and keep the unclipped alpha-bar. */
    cosine_betas(sch, 0.008, 0.9);
    sch->alpha_bar[0] = 1.0f;
    for (int64_t t = 1; t <= T; t++) sch->alpha_bar[t] = (float)cosine_abar(t, T, 0.008);
    return CD_OK;
}

cd_status cd_schedule_create_custom(cd_schedule **out, const float *beta, int64_t T)
{
    static const char fn[] = "cd_schedule_create_custom";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(beta, fn);
    CD__TRY(check_T(fn, T));
    for (int64_t i = 0; i < T; i++) {
        char what[64];
        snprintf(what, sizeof what, "beta[%" PRId64 "] (t = %" PRId64 ")", i, i + 1);
        CD__TRY(check_beta(fn, what, beta[i]));
    }
    CD__TRY(make(out, fn, CD_SCHEDULE_CUSTOM, T));
    memcpy((*out)->beta + 1, beta, (size_t)T * sizeof *beta);
    derive_alpha_bar(*out);
    return CD_OK;
}

static cd_status check_unit(const char *fn, const char *name, const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            return cd__error(CD_ERR_NOT_FINITE, "%s: %s[%" PRId64 "] is %g", fn, name, i, v[i]);
        if (v[i] < 0.0f || v[i] > 1.0f)
            return cd__error(CD_ERR_RANGE, "%s: %s[%" PRId64 "] = %g is outside [0, 1]", fn, name,
                             i, v[i]);
    }
    return CD_OK;
}

cd_status cd_schedule_create_arrays(cd_schedule **out, const float *beta, const float *alpha_bar,
                                    int64_t T)
{
    static const char fn[] = "cd_schedule_create_arrays";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(beta, fn);
    CD__CHECK_NOT_NULL(alpha_bar, fn);
    CD__TRY(check_T(fn, T));
    CD__TRY(check_unit(fn, "beta", beta, T + 1));
    CD__TRY(check_unit(fn, "alpha_bar", alpha_bar, T + 1));
    CD__TRY(make(out, fn, CD_SCHEDULE_ARRAYS, T));
    memcpy((*out)->beta, beta, (size_t)(T + 1) * sizeof *beta);
    memcpy((*out)->alpha_bar, alpha_bar, (size_t)(T + 1) * sizeof *alpha_bar);
    return CD_OK;
}

void cd_schedule_free(cd_schedule *s)
{
    if (!s) return;
    cd__free(s->beta);
    cd__free(s->alpha_bar);
    cd__free(s);
}

int64_t cd_schedule_T(const cd_schedule *s)
{
    if (!s) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_schedule_T: argument 's' is NULL");
        return -1;
    }
    return s->T;
}

cd_schedule_kind cd_schedule_get_kind(const cd_schedule *s)
{
    if (!s) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_schedule_get_kind: argument 's' is NULL");
        return CD_SCHEDULE_INVALID;
    }
    return s->kind;
}

cd_status cd_schedule_at(const cd_schedule *s, int64_t t, float *beta, float *alpha_bar)
{
    static const char fn[] = "cd_schedule_at";
    CD__CHECK_NOT_NULL(s, fn);
    if (t < 0 || t > s->T)
        return cd__error(CD_ERR_RANGE, "%s: t = %" PRId64 " is outside 0..%" PRId64, fn, t, s->T);
    if (beta) *beta = s->beta[t];
    if (alpha_bar) *alpha_bar = s->alpha_bar[t];
    return CD_OK;
}

cd_status cd_schedule_copy_arrays(const cd_schedule *s, float *beta, float *alpha_bar, int64_t n)
{
    static const char fn[] = "cd_schedule_copy_arrays";
    CD__CHECK_NOT_NULL(s, fn);
    if (n != s->T + 1)
        return cd__error(CD_ERR_SHAPE, "%s: n = %" PRId64 " must be T + 1 = %" PRId64, fn, n,
                         s->T + 1);
    if (beta) memcpy(beta, s->beta, (size_t)n * sizeof *beta);
    if (alpha_bar) memcpy(alpha_bar, s->alpha_bar, (size_t)n * sizeof *alpha_bar);
    return CD_OK;
}

/*
 * adam.c - torch.optim.Adam / AdamW over a flat parameter set, with
 * clip_grad_norm_ and a weight EMA.
 *
 * The arithmetic is PyTorch 1.13's _single_tensor_adam(w) in float32, op for
 * op, with the scalars computed in double as Python does:
 *   bc1 = 1 - beta1^t, bc2 = 1 - beta2^t            (double, t = 1, 2, ...)
 *   g  = fma(p, wd, g)           grad.add(param, alpha=wd)       (Adam, wd > 0)
 *   p  = p * (1 - lr wd)         param.mul_(1 - lr*wd)           (AdamW)
 *   m  = fma(g, 1-b1, m b1)      exp_avg.mul_(b1).add_(g, alpha=1-b1)
 *   v  = fma((1-b2) g, g, v b2)  exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2)
 *   d  = sqrt(v) / sqrt(bc2) + eps   (eps outside the square root)
 *   p  = p + (-(lr/bc1) m) / d   param.addcdiv_(m, d, value=-lr/bc1)
 * Every double scalar is rounded to float before use, as ATen does. The
 * fused multiply-adds are where PyTorch's AVX2 CPU kernels fuse (add_ with
 * alpha and addcmul_ use vec::fmadd); with them the result is bit-identical
 * to PyTorch on such machines (tests/check_adam.c), and within an ulp per op
 * of PyTorch builds that do not fuse. fmaf, sqrtf and division are
 * correctly rounded and elements are independent, so the bits do not depend
 * on the CPU's FMA support or on the thread count. On x86-64 with AVX-512
 * the loops are compiled a second time for it, where fmaf is an instruction
 * rather than a libm call and the loops vectorise: the same bits, a few
 * times faster.
 *
 * clip_grad_norm_ is followed in its semantics, not its rounding: PyTorch
 * sums the squared gradients in float32 (8-lane vectors per tensor, then
 * the norm of the per-tensor norms), libcolddiff in double over the flat
 * block. The total norm can differ by an ulp, which moves the clip
 * coefficient by an ulp (~3e-7 relative in the parameters).
 */
#include "nn.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct cd__adam {
    cd_params *params;
    double hyper[CD__ADAM_NPARAMS];
    int64_t steps;
    float *m, *v;
    float *ema; /* NULL while there is no EMA */
    double last_norm;
};

#define REAL(k, n, lo, hi, lo_open, hi_open, def)               \
    {                                                           \
        k, n, CD_OPTION_REAL, -1, lo, hi, lo_open, hi_open, def \
    }
#define WHOLE(k, n, type, hi)                  \
    {                                          \
        k, n, type, -1, 0, hi, false, false, 0 \
    }

static const cd__option g_specs[CD__ADAM_NPARAMS] = {
    REAL(CD__ADAM_LR, "lr", 0.0, DBL_MAX, true, false, 2e-4),
    REAL(CD__ADAM_BETA1, "beta1", 0.0, 1.0, false, true, 0.9),
    REAL(CD__ADAM_BETA2, "beta2", 0.0, 1.0, false, true, 0.999),
    REAL(CD__ADAM_EPS, "eps", 0.0, DBL_MAX, true, false, 1e-8),
    REAL(CD__ADAM_WEIGHT_DECAY, "weight_decay", 0.0, DBL_MAX, false, false, 0.0),
    WHOLE(CD__ADAM_DECOUPLED, "decoupled", CD_OPTION_BOOL, 1),
    REAL(CD__ADAM_CLIP_NORM, "clip_norm", 0.0, DBL_MAX, false, false, 0.0),
    REAL(CD__ADAM_EMA_DECAY, "ema_decay", 0.0, 1.0, false, true, 0.0),
    WHOLE(CD__ADAM_LR_WARMUP, "lr_warmup", CD_OPTION_INT, 1e9),
    WHOLE(CD__ADAM_EMA_WARMUP, "ema_warmup", CD_OPTION_BOOL, 1),
    WHOLE(CD__ADAM_LR_DECAY, "lr_decay", CD_OPTION_INT, 1e12),
};

static bool known_key(cd__adam_param key) { return (int)key >= 0 && (int)key < CD__ADAM_NPARAMS; }

const cd__option *cd__adam_option(cd__adam_param key, const char *fn)
{
    if (known_key(key)) return &g_specs[key];
    cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown Adam key %d", fn, (int)key);
    return NULL;
}

const char *cd__adam_param_name(cd__adam_param key)
{
    return known_key(key) ? g_specs[key].name : NULL;
}

double cd__adam_default(cd__adam_param key) { return known_key(key) ? g_specs[key].def : NAN; }

cd_status cd__adam_check(const char *who, cd__adam_param key, double value)
{
    const cd__option *o = cd__adam_option(key, who);
    if (!o) return cd_last_status();
    if (o->type == CD_OPTION_REAL) return cd__option_check_real(o, who, value);
    if (!isfinite(value) || value != floor(value) || fabs(value) > 9.0e15)
        return cd__error(CD_ERR_RANGE, "%s: %s = %g must be a whole number", who, o->name, value);
    return cd__option_check_int(o, who, (int64_t)value);
}

cd_status cd__adam_create(cd__adam **out, cd_params *params)
{
    static const char fn[] = "cd__adam_create";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(params, fn);
    CD__TRY(cd__params_finalize(params));
    size_t n = (size_t)cd_params_numel(params);
    cd__adam *a = cd__calloc(1, sizeof *a, "optimiser");
    if (!a) return cd_last_status();
    a->params = params;
    for (int k = 0; k < CD__ADAM_NPARAMS; k++) a->hyper[k] = g_specs[k].def;
    a->m = cd__calloc(n, sizeof(float), "Adam first moments");
    a->v = a->m ? cd__calloc(n, sizeof(float), "Adam second moments") : NULL;
    if (!a->v) {
        cd__adam_free(a);
        return cd_last_status();
    }
    *out = a;
    return CD_OK;
}

void cd__adam_free(cd__adam *a)
{
    if (!a) return;
    cd__free(a->m);
    cd__free(a->v);
    cd__free(a->ema);
    cd__free(a);
}

cd_status cd__adam_set(cd__adam *a, cd__adam_param key, double value)
{
    CD__CHECK_NOT_NULL(a, "cd__adam_set");
    CD__TRY(cd__adam_check("cd__adam_set", key, value));
    a->hyper[key] = value;
    if (key == CD__ADAM_EMA_DECAY && value == 0.0) {
        cd__free(a->ema);
        a->ema = NULL;
    }
    return CD_OK;
}

cd_status cd__adam_get(const cd__adam *a, cd__adam_param key, double *value)
{
    CD__CHECK_NOT_NULL(a, "cd__adam_get");
    CD__CHECK_NOT_NULL(value, "cd__adam_get");
    if (!known_key(key))
        return cd__error(CD_ERR_INVALID_ARGUMENT, "cd__adam_get: unknown key %d", (int)key);
    *value = a->hyper[key];
    return CD_OK;
}

int64_t cd__adam_steps(const cd__adam *a) { return a ? a->steps : -1; }
double cd__adam_last_grad_norm(const cd__adam *a) { return a ? a->last_norm : 0.0; }
cd_params *cd__adam_params(const cd__adam *a) { return a ? a->params : NULL; }
const float *cd__adam_m(const cd__adam *a) { return a ? a->m : NULL; }
const float *cd__adam_v(const cd__adam *a) { return a ? a->v : NULL; }
const float *cd__adam_ema(const cd__adam *a) { return a ? a->ema : NULL; }
float *cd__adam_ema_mut(cd__adam *a) { return a ? a->ema : NULL; }

/* ---- one step ---------------------------------------------------------- */

/* The error for the first non-finite gradient, naming its tensor. */
static cd_status non_finite_grad(const cd_params *p, const float *g, int64_t n)
{
    int64_t bad = 0;
    while (bad < n && isfinite(g[bad])) bad++;
    int64_t t = 0, count = cd_params_count(p);
    while (t + 1 < count && cd__params_offset(p, t + 1) <= bad) t++;
    return cd__error(CD_ERR_NOT_FINITE,
                     "cd__adam_step: the gradient of '%s' holds %g at "
                     "element %" PRId64 "; nothing was updated",
                     cd_params_name(p, t), (double)g[bad], bad - cd__params_offset(p, t));
}

/* torch.nn.utils.clip_grad_norm_: coef = max_norm * (1 / (total + 1e-6)) in
 * float (Tensor.__rtruediv__ is reciprocal-then-multiply), clamped at 1:
 * the gradients are scaled by it when it is below 1. */
static float clip_coef(double norm, double max_norm)
{
    float coef = (1.0f / ((float)norm + 1e-6f)) * (float)max_norm;
    return coef < 1.0f ? coef : 1.0f;
}

typedef struct {
    float b1, b2, c1, c2; /* beta1, beta2, 1 - beta1, 1 - beta2 */
    float neg_step, bc2_sqrt, eps, wd, decay;
    bool l2, decoupled;
} step_consts;

/* The learning rate of step t (1-based): a linear ramp over the first
 * lr_warmup steps W, since Adam's early steps at a high rate can throw a
 * freshly initialised network far off; then, with lr_decay = N > W, half a
 * cosine from lr at step W down to 0 at step N, where it stays. A short run
 * that ends at a small rate lands nearer a minimum than one that stops at
 * full rate. */
static double step_lr(const double *h, int64_t t)
{
    const double lr = h[CD__ADAM_LR], warm = h[CD__ADAM_LR_WARMUP], n = h[CD__ADAM_LR_DECAY];
    const double s = (double)t;
    if (warm > 0.0 && s < warm) return lr * s / warm;
    if (n <= warm || n <= 0.0) return lr;
    if (s >= n) return 0.0;
    const double pi = 3.14159265358979323846;
    return lr * 0.5 * (1.0 + cos(pi * (s - warm) / (n - warm)));
}

/* The EMA decay of step t: with the warm-up, min(d, (1 + t) / (10 + t)),
 * so a short run's EMA forgets the random initial weights. */
static double step_ema_decay(const double *h, int64_t t)
{
    const double d = h[CD__ADAM_EMA_DECAY];
    if (h[CD__ADAM_EMA_WARMUP] == 0.0) return d;
    const double ramp = (1.0 + (double)t) / (10.0 + (double)t);
    return ramp < d ? ramp : d;
}

static step_consts make_consts(const double *h, int64_t t)
{
    double bc1 = 1.0 - pow(h[CD__ADAM_BETA1], (double)t);
    double bc2 = 1.0 - pow(h[CD__ADAM_BETA2], (double)t);
    double lr = step_lr(h, t), wd = h[CD__ADAM_WEIGHT_DECAY];
    step_consts k = {
        .b1 = (float)h[CD__ADAM_BETA1],
        .b2 = (float)h[CD__ADAM_BETA2],
        .c1 = (float)(1.0 - h[CD__ADAM_BETA1]),
        .c2 = (float)(1.0 - h[CD__ADAM_BETA2]),
        .neg_step = (float)-(lr / bc1),
        .bc2_sqrt = (float)sqrt(bc2),
        .eps = (float)h[CD__ADAM_EPS],
        .wd = (float)wd,
        .decay = (float)(1.0 - lr * wd),
        .decoupled = h[CD__ADAM_DECOUPLED] != 0.0,
    };
    k.l2 = !k.decoupled && wd != 0.0;
    return k;
}

/* The loops' bodies are inlined into two copies of each loop (below). */
#define ADAM_INLINE static inline __attribute__((always_inline))

/* One element's new weight and moments. */
typedef struct {
    float p, m, v;
} adam_elem;

ADAM_INLINE adam_elem adam_one(const step_consts *k, float p, float grad, float m, float v)
{
    float g = k->l2 ? fmaf(p, k->wd, grad) : grad;
    float pi = k->decoupled ? p * k->decay : p;
    adam_elem e;
    e.m = fmaf(g, k->c1, m * k->b1);
    e.v = fmaf(k->c2 * g, g, v * k->b2);
    float denom = sqrtf(e.v) / k->bc2_sqrt + k->eps;
    e.p = pi + (k->neg_step * e.m) / denom;
    return e;
}

/* ema.mul_(d).add_(p, alpha=1-d), fused as PyTorch's add_ is. */
ADAM_INLINE float ema_one(float ema, float p, float df, float cf) { return fmaf(p, cf, ema * df); }

/* The loops' bodies, inlined into a plain and, on x86-64, an AVX-512 copy
 * of each loop (ADAM_LOOP). */
ADAM_INLINE void adam_update_body(const step_consts *kp, float *restrict p,
                                  const float *restrict grad, float *restrict m, float *restrict v,
                                  int64_t n)
{
    /* A copy the stores cannot alias, so the loop can vectorise. */
    const step_consts k = *kp;
    for (int64_t i = 0; i < n; i++) {
        adam_elem e = adam_one(&k, p[i], grad[i], m[i], v[i]);
        m[i] = e.m, v[i] = e.v, p[i] = e.p;
    }
}

ADAM_INLINE void ema_update_body(float *restrict ema, const float *restrict p, int64_t n, float df,
                                 float cf)
{
    for (int64_t i = 0; i < n; i++) ema[i] = ema_one(ema[i], p[i], df, cf);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define ADAM_VECTOR 1
#define ADAM_LOOP(name, params, args)                                                             \
    __attribute__((target("avx512f,fma"))) static void name##_avx512 params { name##_body args; } \
    static void name params                                                                       \
    {                                                                                             \
        if (cd__cpu_use_avx512(CD__KERNELS_ADAM))                                                 \
            name##_avx512 args;                                                                   \
        else                                                                                      \
            name##_body args;                                                                     \
    }
#else
#define ADAM_LOOP(name, params, args) \
    static void name params { name##_body args; }
#endif

ADAM_LOOP(adam_update,
          (const step_consts *k, float *p, const float *grad, float *m, float *v, int64_t n),
          (k, p, grad, m, v, n))
ADAM_LOOP(ema_update, (float *ema, const float *p, int64_t n, float df, float cf),
          (ema, p, n, df, cf))

/* Elements are independent, so chunks may run on any thread in any order
 * and give the same bits. */
#define CHUNK 65536

typedef struct {
    step_consts k;
    cd__adam *a;
    float *p, *g;
    int64_t n;
    float ema_d, ema_c;
    /* The trial: the clip coefficient to apply to g on the fly (1: none),
     * the EMA before the step (the values themselves when it starts now,
     * NULL without one), and whether some chunk saw a non-finite result. */
    float coef;
    const float *ema_old;
    atomic_int bad;
} step_job;

static void step_chunk(void *ctx, int64_t c)
{
    step_job *job = ctx;
    int64_t lo = c * CHUNK, len = job->n - lo < CHUNK ? job->n - lo : CHUNK;
    adam_update(&job->k, job->p + lo, job->g + lo, job->a->m + lo, job->a->v + lo, len);
    if (job->a->ema) ema_update(job->a->ema + lo, job->p + lo, len, job->ema_d, job->ema_c);
}

/* Zero when x is finite (x 0 is a zero), else the bits of a NaN: an OR
 * of these over a loop vectorises where a chain of comparisons does not. */
ADAM_INLINE uint32_t nonfinite(float x)
{
    const float z = x * 0.0f;
    uint32_t u;
    memcpy(&u, &z, sizeof u);
    return u & 0x7fffffffu;
}

ADAM_INLINE uint32_t nonfinite4(adam_elem e, float ema)
{
    return nonfinite(e.p) | nonfinite(e.m) | nonfinite(e.v) | nonfinite(ema);
}

/* Element i's step computed as step_chunk would, without writing it. */
ADAM_INLINE bool trial_one(const step_job *job, int64_t i, adam_elem *e, float *ema)
{
    const cd__adam *a = job->a;
    const float g = job->g[i] * job->coef; /* x 1 is exact: the trial's loops do the same */
    *e = adam_one(&job->k, job->p[i], g, a->m[i], a->v[i]);
    *ema = job->ema_old ? ema_one(job->ema_old[i], e->p, job->ema_d, job->ema_c) : 0.0f;
    return nonfinite4(*e, *ema) == 0;
}

/* The trial over [lo, hi) for one setting of the flags, which the callers
 * pass as constants: with no test left inside, the loops vectorise. */
ADAM_INLINE uint32_t trial_loop(const step_job *job, int64_t lo, int64_t hi, bool l2,
                                bool decoupled)
{
    step_consts k = job->k;
    k.l2 = l2, k.decoupled = decoupled;
    const float *restrict g = job->g, *restrict p = job->p;
    const float *restrict m = job->a->m, *restrict v = job->a->v, *restrict old = job->ema_old;
    const float coef = job->coef, df = job->ema_d, cf = job->ema_c;
    /* g x 1 is g, bit for bit: no test of coef inside the loops. */
    uint32_t bad = 0;
    if (old)
        for (int64_t i = lo; i < hi; i++) {
            const adam_elem e = adam_one(&k, p[i], g[i] * coef, m[i], v[i]);
            bad |= nonfinite4(e, ema_one(old[i], e.p, df, cf));
        }
    else
        for (int64_t i = lo; i < hi; i++)
            bad |= nonfinite4(adam_one(&k, p[i], g[i] * coef, m[i], v[i]), 0.0f);
    return bad;
}

/* trial_one over [lo, hi): true when every element stays finite. */
ADAM_INLINE bool trial_range_body(const step_job *job, int64_t lo, int64_t hi)
{
    if (job->k.l2) return trial_loop(job, lo, hi, true, false) == 0;
    if (job->k.decoupled) return trial_loop(job, lo, hi, false, true) == 0;
    return trial_loop(job, lo, hi, false, false) == 0;
}

#ifdef ADAM_VECTOR
__attribute__((target("avx512f,fma"))) static bool trial_range_avx512(const step_job *job,
                                                                      int64_t lo, int64_t hi)
{
    return trial_range_body(job, lo, hi);
}
#endif

static void trial_chunk(void *ctx, int64_t c)
{
    step_job *job = ctx;
    int64_t lo = c * CHUNK, hi = job->n - lo < CHUNK ? job->n : lo + CHUNK;
#ifdef ADAM_VECTOR
    const bool ok = cd__cpu_use_avx512(CD__KERNELS_ADAM) ? trial_range_avx512(job, lo, hi)
                                                         : trial_range_body(job, lo, hi);
#else
    const bool ok = trial_range_body(job, lo, hi);
#endif
    if (!ok) atomic_store(&job->bad, 1);
}

/* The error for a step that would leave a NaN or an infinity: names the
 * first element, its tensor and which value would break. */
static cd_status non_finite_step(const step_job *job)
{
    const cd_params *p = job->a->params;
    int64_t bad = 0;
    adam_elem e = {0};
    float ema = 0.0f;
    while (bad < job->n && trial_one(job, bad, &e, &ema)) bad++;
    if (bad == job->n) /* cannot happen: the trial found one */
        return cd__error(CD_ERR_INTERNAL, "cd__adam_step: a non-finite update went missing");
    const char *what = !isfinite(e.m)   ? "first moment"
                       : !isfinite(e.v) ? "second moment"
                       : !isfinite(e.p) ? "value"
                                        : "EMA";
    const float got = !isfinite(e.m) ? e.m : !isfinite(e.v) ? e.v : !isfinite(e.p) ? e.p : ema;
    int64_t t = 0, count = cd_params_count(p);
    while (t + 1 < count && cd__params_offset(p, t + 1) <= bad) t++;
    return cd__error(CD_ERR_NOT_FINITE,
                     "cd__adam_step: the step would make the %s of '%s' "
                     "element %" PRId64 " %g (gradient %g, lr %g); nothing was updated",
                     what, cd_params_name(p, t), bad - cd__params_offset(p, t), (double)got,
                     (double)job->g[bad], job->a->hyper[CD__ADAM_LR]);
}

/* Start the EMA from the current values (before they change). */
static cd_status ema_start(cd__adam *a, const float *p, int64_t n)
{
    if (a->hyper[CD__ADAM_EMA_DECAY] == 0.0 || a->ema) return CD_OK;
    a->ema = cd__calloc((size_t)n, sizeof(float), "EMA weights");
    if (!a->ema) return cd_last_status();
    memcpy(a->ema, p, (size_t)n * sizeof(float));
    return CD_OK;
}

cd_status cd__adam_step(cd__adam *a)
{
    CD__CHECK_NOT_NULL(a, "cd__adam_step");
    cd_params *params = a->params;
    int64_t n = cd_params_numel(params);
    float *p = cd__params_values(params), *g = cd__params_grads(params);
    double sumsq = 0.0;
    for (int64_t i = 0; i < n; i++) sumsq += (double)g[i] * (double)g[i];
    /* Squares of finite floats cannot overflow a double sum. */
    if (!isfinite(sumsq)) return non_finite_grad(params, g, n);
    const double norm = sqrt(sumsq), d = step_ema_decay(a->hyper, a->steps + 1);
    step_job job =
        {make_consts(a->hyper, a->steps + 1),    a, p, g, n, (float)d, (float)(1.0 - d), 1.0f,
         d > 0.0 ? (a->ema ? a->ema : p) : NULL, 0};
    if (a->hyper[CD__ADAM_CLIP_NORM] > 0.0)
        job.coef = clip_coef(norm, a->hyper[CD__ADAM_CLIP_NORM]);
    /* Finite gradients can still overflow: a huge learning rate, or a
     * gradient whose square is beyond float. The trial computes every
     * element's step without writing it, so a step that would poison the
     * state is refused with nothing changed. It costs what the step costs:
     * Adam is about 0.5% of a training step of the report's CNN or UNet
     * (one thread, batch 128), the trial adds as much again. */
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
    if (chunks > 1)
        cd__parallel_for(chunks, trial_chunk, &job);
    else if (chunks == 1)
        trial_chunk(&job, 0);
    if (atomic_load(&job.bad)) return non_finite_step(&job);
    CD__TRY(ema_start(a, p, n));
    a->last_norm = norm;
    if (job.coef < 1.0f)
        for (int64_t i = 0; i < n; i++) g[i] *= job.coef;
    a->steps++;
    if (chunks > 1)
        cd__parallel_for(chunks, step_chunk, &job);
    else if (chunks == 1)
        step_chunk(&job, 0);
    return CD_OK;
}

/* ---- checkpoint restore ------------------------------------------------ */

cd_status cd__adam_restore(cd__adam *a, const double *hyper, int64_t steps, const float *m,
                           const float *v, const float *ema)
{
    static const char fn[] = "cd__adam_restore";
    CD__CHECK_NOT_NULL(a, fn);
    CD__CHECK_NOT_NULL(hyper, fn);
    CD__CHECK_NOT_NULL(m, fn);
    CD__CHECK_NOT_NULL(v, fn);
    for (int k = 0; k < CD__ADAM_NPARAMS; k++)
        CD__TRY(cd__adam_check(fn, (cd__adam_param)k, hyper[k]));
    if (steps < 0)
        return cd__error(CD_ERR_RANGE, "%s: step count %" PRId64 " is negative", fn, steps);
    size_t n = (size_t)cd_params_numel(a->params);
    float *new_ema = NULL;
    if (ema && hyper[CD__ADAM_EMA_DECAY] != 0.0) {
        new_ema = a->ema ? a->ema : cd__calloc(n, sizeof(float), "EMA weights");
        if (!new_ema) return cd_last_status();
        memcpy(new_ema, ema, n * sizeof(float));
    } else {
        cd__free(a->ema);
    }
    a->ema = new_ema;
    memcpy(a->hyper, hyper, sizeof a->hyper);
    a->steps = steps;
    memcpy(a->m, m, n * sizeof(float));
    memcpy(a->v, v, n * sizeof(float));
    return CD_OK;
}

/*
 * sampler.c - the reverse chains of spec section 6 (DDPM, DDIM, cold
 * algorithms 1 and 2, direct), unconditional and conditional, behind one
 * opaque object. The chain state lives in the caller's output tensor; a
 * call allocates the prediction, tau and at most two scratch batches once
 * and reuses them at every step.
 *
 * Every pixel update is done in double from double coefficients (computed
 * from the float schedule) and rounded once, so the float arithmetic adds
 * one rounding per step and nothing depends on the thread count: the only
 * parallel parts are the blur and the decoder, both tiled deterministically.
 */
#include "diffusion.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_KEYS 6
/* The thread-local message buffer's size in status.c. */
#define ERROR_CAP 1024

struct cd_sampler {
    cd_sampler_kind kind;
    const cd_degradation *deg; /* borrowed */
    double opt[N_KEYS];
    cd_decoder *decoder;       /* borrowed; or fn(user, ...) */
    cd_predictor_fn fn;
    void *user;
};

/* One call's chain: shapes, workspace and snapshot requests. */
typedef struct {
    const cd_sampler *s;
    const char *fn;
    cd_rng *rng;
    int64_t N, ND, T, t_start, n_steps;
    cd_tensor *z;             /* the caller's out: the chain state */
    cd_tensor *g, *tau;       /* predictor output and times */
    cd_tensor *b1, *b2;       /* scratch batches (noise, blurs, x0-hat) */
    int64_t *ta, *tb;         /* per-sample step vectors for the blur */
    int64_t n_snap;
    int64_t *snap_at;         /* the chain time each snapshot records */
    cd_tensor *snap_z, *snap_xhat;
} chain;

/* ---- the DDIM step sequence --------------------------------------------- */

/* Declared here rather than in a header so tests/check_sampler.c, which
 * repeats this prototype, can test the formula directly. */

/* t_i = t_start - floor(i (t_start - 1)/(S - 1) + 1/2), as the exact
 * integer floor((2 i (t_start - 1) + S - 1) / (2 (S - 1))). For S <= t_start
 * the step is at least 1 before rounding, so the times strictly decrease
 * from t_start to 1. S = 1 is the single step t_start -> 0. */
int64_t cd__sampler_step_time(int64_t t_start, int64_t S, int64_t i)
{
    if (S <= 1) return t_start;
    return t_start - (2 * i * (t_start - 1) + (S - 1)) / (2 * (S - 1));
}

static int64_t count_steps(const cd_sampler *s, int64_t t_start)
{
    switch (s->kind) {
    case CD_SAMPLER_DDIM: {
        const int64_t S = (int64_t)s->opt[CD_SAMPLER_STEPS];
        return S < t_start ? S : t_start;
    }
    case CD_SAMPLER_DIRECT: return 1;
    default: return t_start;
    }
}

/* ---- creation and options ----------------------------------------------- */

static bool is_noise_kind(cd_sampler_kind k)
{
    return k == CD_SAMPLER_DDPM || k == CD_SAMPLER_DDIM;
}

/* The noise chains divide by sqrt(1 - abar_t), sqrt(abar_t) and
 * sqrt(1 - beta_t), so those must be positive at every step. */
static cd_status check_noise_schedule(const cd_degradation *d, const char *fn)
{
    for (int64_t t = 1; t <= d->T; t++) {
        const float b = d->beta[t], a = d->alpha_bar[t];
        if (!(b < 1.0f && a > 0.0f && a < 1.0f))
            return cd__error(CD_ERR_RANGE, "%s: the noise samplers need beta_t < 1 and 0 < "
                             "alpha-bar_t < 1, but t = %" PRId64 " has beta %g, alpha-bar %g",
                             fn, t, (double)b, (double)a);
    }
    return CD_OK;
}

cd_status cd_sampler_create(cd_sampler **out, cd_sampler_kind kind, const cd_degradation *deg)
{
    static const char fn[] = "cd_sampler_create";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(deg, fn);
    if ((int)kind < CD_SAMPLER_DDPM || (int)kind > CD_SAMPLER_DIRECT)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown sampler kind %d", fn, (int)kind);
    const bool noise = cd_degradation_target(deg) == CD_TARGET_NOISE;
    if (noise != is_noise_kind(kind))
        return cd__error(CD_ERR_UNSUPPORTED, "%s: %s needs %s degradation", fn,
                         is_noise_kind(kind) ? "DDPM and DDIM" : "the cold and direct samplers",
                         is_noise_kind(kind) ? "the noise" : "a deterministic");
    if (noise) CD__TRY(check_noise_schedule(deg, fn));
    cd_sampler *s = calloc(1, sizeof *s);
    if (!s) return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: no memory", fn);
    s->kind = kind;
    s->deg = deg;
    s->opt[CD_SAMPLER_STEPS] = (double)deg->T;
    s->opt[CD_SAMPLER_CLIP_LO] = -1.0;
    s->opt[CD_SAMPLER_CLIP_HI] = 1.0;
    *out = s;
    return CD_OK;
}

void cd_sampler_free(cd_sampler *s) { free(s); }

int32_t cd_sampler_get_kind(const cd_sampler *s)
{
    if (!s) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_sampler_get_kind: argument 's' is NULL");
        return -1;
    }
    return (int32_t)s->kind;
}

/* Bounds of a key; *whole says it takes whole numbers only. */
static cd_status key_bounds(const cd_sampler *s, const char *fn, cd_sampler_key key,
                            double *lo, double *hi, bool *whole)
{
    *whole = key == CD_SAMPLER_STEPS || key == CD_SAMPLER_POSTERIOR_VARIANCE ||
             key == CD_SAMPLER_CLIP;
    switch (key) {
    case CD_SAMPLER_STEPS: *lo = 1.0, *hi = (double)s->deg->T; return CD_OK;
    case CD_SAMPLER_ETA:
    case CD_SAMPLER_POSTERIOR_VARIANCE:
    case CD_SAMPLER_CLIP: *lo = 0.0, *hi = 1.0; return CD_OK;
    case CD_SAMPLER_CLIP_LO:
    case CD_SAMPLER_CLIP_HI: *lo = -FLT_MAX, *hi = FLT_MAX; return CD_OK;
    }
    return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown sampler key %d", fn, (int)key);
}

cd_status cd_sampler_bounds(const cd_sampler *s, cd_sampler_key key, double *lo, double *hi)
{
    static const char fn[] = "cd_sampler_bounds";
    CD__CHECK_NOT_NULL(s, fn);
    CD__CHECK_NOT_NULL(lo, fn);
    CD__CHECK_NOT_NULL(hi, fn);
    bool whole = false;
    return key_bounds(s, fn, key, lo, hi, &whole);
}

cd_status cd_sampler_set(cd_sampler *s, cd_sampler_key key, double value)
{
    static const char fn[] = "cd_sampler_set";
    CD__CHECK_NOT_NULL(s, fn);
    double lo = 0.0, hi = 0.0;
    bool whole = false;
    CD__TRY(key_bounds(s, fn, key, &lo, &hi, &whole));
    if (!isfinite(value))
        return cd__error(CD_ERR_NOT_FINITE, "%s: key %d: value is %g", fn, (int)key, value);
    if (value < lo || value > hi || (whole && value != floor(value)))
        return cd__error(CD_ERR_RANGE, "%s: key %d: %g is not %s in [%g, %g]", fn, (int)key,
                         value, whole ? "a whole number" : "a number", lo, hi);
    s->opt[key] = value;
    return CD_OK;
}

cd_status cd_sampler_get(const cd_sampler *s, cd_sampler_key key, double *value)
{
    static const char fn[] = "cd_sampler_get";
    CD__CHECK_NOT_NULL(s, fn);
    CD__CHECK_NOT_NULL(value, fn);
    double lo = 0.0, hi = 0.0;
    bool whole = false;
    CD__TRY(key_bounds(s, fn, key, &lo, &hi, &whole));
    *value = s->opt[key];
    return CD_OK;
}

cd_status cd_sampler_set_decoder(cd_sampler *s, cd_decoder *d)
{
    CD__CHECK_NOT_NULL(s, "cd_sampler_set_decoder");
    s->decoder = d;
    s->fn = NULL;
    s->user = NULL;
    return CD_OK;
}

cd_status cd_sampler_set_predictor(cd_sampler *s, cd_predictor_fn fn, void *user)
{
    CD__CHECK_NOT_NULL(s, "cd_sampler_set_predictor");
    s->decoder = NULL;
    s->fn = fn;
    s->user = fn ? user : NULL;
    return CD_OK;
}

cd_status cd_sampler_step_times(const cd_sampler *s, int64_t t_start, int64_t *times,
                                int64_t capacity, int64_t *n)
{
    static const char fn[] = "cd_sampler_step_times";
    CD__CHECK_NOT_NULL(s, fn);
    CD__CHECK_NOT_NULL(n, fn);
    CD__CHECK_ARG(capacity >= 0 && (times || capacity == 0), fn,
                  "times must hold capacity >= 0 entries");
    if (t_start < 1 || t_start > s->deg->T)
        return cd__error(CD_ERR_RANGE, "%s: t_start = %" PRId64 " is outside 1..%" PRId64, fn,
                         t_start, s->deg->T);
    const int64_t S = count_steps(s, t_start);
    *n = S;
    for (int64_t i = 0; i < S && i < capacity; i++)
        times[i] = cd__sampler_step_time(t_start, S, i);
    if (capacity < S)
        return cd__error(CD_ERR_SHAPE, "%s: %" PRId64 " times do not fit in %" PRId64, fn, S,
                         capacity);
    return CD_OK;
}

/* ---- validation ---------------------------------------------------------- */

/* Checks shared by sample() and restore(): the sampler is ready, out is an
 * image batch, and the options agree with each other. */
static cd_status check_run(const cd_sampler *s, const char *fn, const cd_rng *rng,
                           bool need_rng, const cd_tensor *out)
{
    CD__CHECK_NOT_NULL(s, fn);
    if (!s->decoder && !s->fn)
        return cd__error(CD_ERR_STATE, "%s: no predictor: call cd_sampler_set_decoder() or "
                         "cd_sampler_set_predictor() first", fn);
    CD__CHECK_NOT_NULL(out, fn);
    if (need_rng || s->deg->kind == CD_DEGRADATION_NOISE)
        CD__CHECK_ARG(rng != NULL, fn, "argument 'rng' is NULL (sampling draws from it)");
    if (out->rank != 4)
        return cd__error(CD_ERR_SHAPE, "%s: out must be N x C x H x W, got rank %" PRId32, fn,
                         out->rank);
    if (s->deg->kind == CD_DEGRADATION_BLUR)
        CD__TRY(cd__blur_check(s->deg, fn, out->shape[2], out->shape[3]));
    if (s->opt[CD_SAMPLER_CLIP] != 0.0 && s->opt[CD_SAMPLER_CLIP_LO] > s->opt[CD_SAMPLER_CLIP_HI])
        return cd__error(CD_ERR_RANGE, "%s: the clip range [%g, %g] is empty", fn,
                         s->opt[CD_SAMPLER_CLIP_LO], s->opt[CD_SAMPLER_CLIP_HI]);
    return CD_OK;
}

static cd_status check_snapshot_tensor(const char *fn, const char *name, const cd_tensor *snap,
                                       int64_t n_snap, const cd_tensor *x)
{
    if (!snap) return CD_OK;
    CD__CHECK_ARG(n_snap > 0, fn, "snapshot tensors given for n_snap = 0");
    const int64_t shape[5] = {n_snap, x->shape[0], x->shape[1], x->shape[2], x->shape[3]};
    return cd__tensor_expect(snap, fn, name, 5, shape);
}

static cd_status check_snapshots(const char *fn, const cd_tensor *x, int64_t t_start,
                                 const int64_t *times, int64_t n_snap,
                                 const cd_tensor *const snaps[3])
{
    static const char *const names[3] = {"snap_z", "snap_xhat", "snap_fwd"};
    if (n_snap < 0)
        return cd__error(CD_ERR_RANGE, "%s: n_snap = %" PRId64 " is negative", fn, n_snap);
    CD__CHECK_ARG(n_snap == 0 || times != NULL, fn, "snap_times is NULL but n_snap > 0");
    for (int64_t v = 0; v < n_snap; v++)
        if (times[v] < 0 || times[v] > t_start)
            return cd__error(CD_ERR_RANGE, "%s: snap_times[%" PRId64 "] = %" PRId64 " is "
                             "outside 0..%" PRId64 " (t_start)", fn, v, times[v], t_start);
    for (int k = 0; k < 3; k++) {
        CD__TRY(check_snapshot_tensor(fn, names[k], snaps[k], n_snap, x));
        /* Rank 5 already keeps them apart from x and out. */
        for (int j = 0; j < k && snaps[k]; j++)
            if (snaps[j] == snaps[k])
                return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: %s and %s are the same tensor",
                                 fn, names[j], names[k]);
    }
    return CD_OK;
}

/* ---- workspace ----------------------------------------------------------- */

static void chain_free(chain *c)
{
    cd_tensor_free(c->g);
    cd_tensor_free(c->tau);
    cd_tensor_free(c->b1);
    cd_tensor_free(c->b2);
    cd__free(c->ta);
    cd__free(c->tb);
    cd__free(c->snap_at);
}

/* Everything the chain needs, allocated once per call; the scratch
 * batches only for the samplers that use them. */
static cd_status chain_alloc(chain *c)
{
    const cd_tensor *z = c->z;
    const bool scratch = c->s->kind != CD_SAMPLER_COLD1 && c->s->kind != CD_SAMPLER_DIRECT;
    CD__TRY(cd_tensor_create(&c->g, 4, z->shape));
    CD__TRY(cd_tensor_create(&c->tau, 1, &c->N));
    if (scratch) {
        CD__TRY(cd_tensor_create(&c->b1, 4, z->shape));
        CD__TRY(cd_tensor_create(&c->b2, 4, z->shape));
    }
    c->ta = cd__calloc((size_t)c->N, sizeof(int64_t), "sampler step vector");
    c->tb = c->ta ? cd__calloc((size_t)c->N, sizeof(int64_t), "sampler step vector") : NULL;
    if (!c->tb) return cd_last_status();
    if (c->n_snap > 0) {
        c->snap_at = cd__calloc((size_t)c->n_snap, sizeof(int64_t), "sampler snapshot times");
        if (!c->snap_at) return cd_last_status();
    }
    return CD_OK;
}

static void fill_steps(int64_t *t, int64_t n, int64_t value)
{
    for (int64_t i = 0; i < n; i++) t[i] = value;
}

static int64_t chain_time(const chain *c, int64_t i)
{
    return cd__sampler_step_time(c->t_start, c->n_steps, i);
}

/* The chain time snapshot time t_v records: the first visited time <= t_v,
 * or 0 (the result) when the chain passes none. */
static void map_snapshots(chain *c, const int64_t *times)
{
    for (int64_t v = 0; v < c->n_snap; v++) {
        c->snap_at[v] = 0;
        for (int64_t i = 0; i < c->n_steps; i++) {
            const int64_t t = chain_time(c, i);
            if (t <= times[v]) {
                c->snap_at[v] = t;
                break;
            }
        }
    }
}

/* Copy src (one batch) into every snapshot of snap that records time t. */
static void snap_copy(const chain *c, cd_tensor *snap, int64_t t, const float *src)
{
    if (!snap) return;
    for (int64_t v = 0; v < c->n_snap; v++)
        if (c->snap_at[v] == t)
            memcpy(snap->data + v * c->N * c->ND, src, (size_t)(c->N * c->ND) * sizeof(float));
}

static bool snap_wanted(const chain *c, const cd_tensor *snap, int64_t t)
{
    if (!snap) return false;
    for (int64_t v = 0; v < c->n_snap; v++)
        if (c->snap_at[v] == t) return true;
    return false;
}

/* ---- the predictor ------------------------------------------------------- */

static cd_status predictor_failed(const chain *c, int64_t t, cd_status st)
{
    char msg[ERROR_CAP];
    snprintf(msg, sizeof msg, "%s", cd_last_error());
    if (st > 0)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: the predictor returned %d at t = %"
                         PRId64 ", which is not a cd_status: %s", c->fn, (int)st, t, msg);
    return cd__error(st, "%s: the predictor failed at t = %" PRId64 " (%s): %s", c->fn, t,
                     cd_status_string(st), msg[0] ? msg : "no message");
}

/* g = predictor(z, t/T), checked: a shape change or a NaN would otherwise
 * run silently through every remaining step. */
static cd_status predict(const chain *c, int64_t t)
{
    const cd_sampler *s = c->s;
    const float tau = (float)((double)t / (double)c->T);
    for (int64_t n = 0; n < c->N; n++) c->tau->data[n] = tau;
    if (!s->decoder) cd_clear_error(); /* so a silent failure is not given a stale message */
    const cd_status st = s->decoder ? cd_decoder_forward(s->decoder, c->z, c->tau, c->g)
                                    : s->fn(s->user, c->z, c->tau, c->g);
    if (st != CD_OK) return predictor_failed(c, t, st);
    if (cd__tensor_expect(c->g, c->fn, "predictor output", 4, c->z->shape) != CD_OK)
        return cd__error(CD_ERR_SHAPE, "%s: the predictor changed its output's shape at t = %"
                         PRId64, c->fn, t);
    const float *g = c->g->data;
    for (int64_t i = 0; i < c->N * c->ND; i++)
        if (!isfinite(g[i]))
            return cd__error(CD_ERR_NOT_FINITE, "%s: the predictor's output at t = %" PRId64
                             " is %g at element %" PRId64, c->fn, t, (double)g[i], i);
    return CD_OK;
}

/* ---- one step of each algorithm ------------------------------------------ */

/* x0-hat = (z - sqrt(1 - abar_t) eps-hat) / sqrt(abar_t), for snapshots. */
static void noise_x0(const chain *c, int64_t t, float *x0)
{
    const double a = c->s->deg->alpha_bar[t], sa = sqrt(a), s1 = sqrt(1.0 - a);
    const float *z = c->z->data, *g = c->g->data;
    for (int64_t i = 0; i < c->N * c->ND; i++)
        x0[i] = (float)(((double)z[i] - s1 * (double)g[i]) / sa);
}

static cd_status step_ddpm(const chain *c, int64_t t)
{
    const cd_degradation *d = c->s->deg;
    const double b = d->beta[t], a = d->alpha_bar[t];
    const double k = b / sqrt(1.0 - a), inv = 1.0 / sqrt(1.0 - b);
    double sigma = 0.0;
    if (t > 1) {
        const bool post = c->s->opt[CD_SAMPLER_POSTERIOR_VARIANCE] != 0.0;
        sigma = sqrt(post ? b * (1.0 - (double)d->alpha_bar[t - 1]) / (1.0 - a) : b);
        CD__TRY(cd_rng_normal(c->rng, c->b1->data, c->N * c->ND));
    }
    if (snap_wanted(c, c->snap_xhat, t)) {
        noise_x0(c, t, c->b2->data);
        snap_copy(c, c->snap_xhat, t, c->b2->data);
    }
    float *z = c->z->data;
    const float *g = c->g->data, *xi = c->b1->data;
    for (int64_t i = 0; i < c->N * c->ND; i++) {
        const double noise = t > 1 ? sigma * (double)xi[i] : 0.0;
        z[i] = (float)(((double)z[i] - k * (double)g[i]) * inv + noise);
    }
    return CD_OK;
}

static cd_status step_ddim(const chain *c, int64_t t, int64_t p)
{
    const cd_sampler *s = c->s;
    const double a = s->deg->alpha_bar[t], ap = p > 0 ? (double)s->deg->alpha_bar[p] : 1.0;
    const double sa = sqrt(a), s1 = sqrt(1.0 - a), sap = sqrt(ap);
    /* fmax: a schedule imported verbatim need not be monotone. */
    const double sigma = s->opt[CD_SAMPLER_ETA] * sqrt((1.0 - ap) / (1.0 - a)) *
                         sqrt(fmax(0.0, 1.0 - a / ap));
    const double q = sqrt(fmax(0.0, 1.0 - ap - sigma * sigma));
    const bool clip = s->opt[CD_SAMPLER_CLIP] != 0.0;
    const double lo = s->opt[CD_SAMPLER_CLIP_LO], hi = s->opt[CD_SAMPLER_CLIP_HI];
    if (sigma > 0.0) CD__TRY(cd_rng_normal(c->rng, c->b1->data, c->N * c->ND));
    float *z = c->z->data, *x0s = c->b2->data;
    const float *g = c->g->data, *xi = c->b1->data;
    for (int64_t i = 0; i < c->N * c->ND; i++) {
        const double e = g[i];
        double x0 = ((double)z[i] - s1 * e) / sa;
        if (clip) x0 = fmin(fmax(x0, lo), hi);
        x0s[i] = (float)x0;
        z[i] = (float)(sap * x0 + q * e + (sigma > 0.0 ? sigma * (double)xi[i] : 0.0));
    }
    snap_copy(c, c->snap_xhat, t, x0s);
    return CD_OK;
}

/* dst = D(src, t) for every sample, through the degradation's public
 * operator (its checks included); rng only for the noise. */
static cd_status degrade(const chain *c, const cd_tensor *src, int64_t t, int64_t *tv,
                         cd_rng *rng, cd_tensor *dst)
{
    fill_steps(tv, c->N, t);
    return cd_degradation_apply(c->s->deg, src, tv, c->N, rng, dst, NULL);
}

static cd_status step_cold1(const chain *c, int64_t t)
{
    return degrade(c, c->g, t - 1, c->ta, NULL, c->z);
}

/* z += D(x-hat, t-1) - D(x-hat, t). The blur makes D(x-hat, t) from a copy
 * of D(x-hat, t-1) with the one extra blur G_t (spec section 3). */
static cd_status step_cold2(const chain *c, int64_t t)
{
    const size_t bytes = (size_t)(c->N * c->ND) * sizeof(float);
    const cd_tensor *z = c->z;
    if (c->s->deg->kind == CD_DEGRADATION_BLUR) {
        memcpy(c->b1->data, c->g->data, bytes);
        fill_steps(c->ta, c->N, t - 1);
        fill_steps(c->tb, c->N, t);
        cd__blur_steps(c->s->deg, c->b1->data, c->N, z->shape[1], z->shape[2], z->shape[3],
                       c->ta, NULL);
        memcpy(c->b2->data, c->b1->data, bytes);
        cd__blur_steps(c->s->deg, c->b2->data, c->N, z->shape[1], z->shape[2], z->shape[3],
                       c->tb, c->ta);
    } else {
        CD__TRY(degrade(c, c->g, t - 1, c->ta, NULL, c->b1));
        CD__TRY(degrade(c, c->g, t, c->tb, NULL, c->b2));
    }
    float *zp = z->data;
    const float *prev = c->b1->data, *cur = c->b2->data;
    for (int64_t i = 0; i < c->N * c->ND; i++)
        zp[i] = (float)((double)zp[i] - (double)cur[i] + (double)prev[i]);
    return CD_OK;
}

static cd_status step(const chain *c, int64_t t, int64_t p)
{
    switch (c->s->kind) {
    case CD_SAMPLER_DDPM: return step_ddpm(c, t);
    case CD_SAMPLER_DDIM: return step_ddim(c, t, p);
    case CD_SAMPLER_COLD1: snap_copy(c, c->snap_xhat, t, c->g->data); return step_cold1(c, t);
    case CD_SAMPLER_COLD2: snap_copy(c, c->snap_xhat, t, c->g->data); return step_cold2(c, t);
    case CD_SAMPLER_DIRECT: break;
    }
    snap_copy(c, c->snap_xhat, t, c->g->data);
    memcpy(c->z->data, c->g->data, (size_t)(c->N * c->ND) * sizeof(float));
    return CD_OK;
}

/* From z_{t_start} (already in c->z) down to z_0, recording snapshots. */
static cd_status run_chain(const chain *c)
{
    for (int64_t i = 0; i < c->n_steps; i++) {
        const int64_t t = chain_time(c, i);
        const int64_t p = i + 1 < c->n_steps ? chain_time(c, i + 1) : 0;
        snap_copy(c, c->snap_z, t, c->z->data);
        CD__TRY(predict(c, t));
        CD__TRY(step(c, t, p));
    }
    snap_copy(c, c->snap_z, 0, c->z->data);
    snap_copy(c, c->snap_xhat, 0, c->z->data);
    return CD_OK;
}

/* ---- entry points -------------------------------------------------------- */

/* D(x, t_v) for each snapshot, drawn after the chain so that it neither
 * shares noise with it nor changes it. */
static cd_status forward_snapshots(const chain *c, const cd_tensor *x, const int64_t *times,
                                   cd_tensor *snap_fwd)
{
    if (!snap_fwd) return CD_OK;
    for (int64_t v = 0; v < c->n_snap; v++) {
        cd_tensor view = *c->z; /* one batch of snap_fwd, shaped as out */
        view.data = snap_fwd->data + v * c->N * c->ND;
        fill_steps(c->ta, c->N, times[v]);
        CD__TRY(cd_degradation_apply(c->s->deg, x, c->ta, c->N, c->rng, &view, NULL));
    }
    return CD_OK;
}

static void chain_init(chain *c, const cd_sampler *s, const char *fn, cd_rng *rng,
                       cd_tensor *out, int64_t t_start)
{
    memset(c, 0, sizeof *c);
    c->s = s;
    c->fn = fn;
    c->rng = rng;
    c->z = out;
    c->N = out->shape[0];
    c->ND = out->numel / c->N;
    c->T = s->deg->T;
    c->t_start = t_start;
    c->n_steps = count_steps(s, t_start);
}

/* Running a user predictor clears the thread's error message before each
 * call; a successful run puts the caller's earlier message back. */
typedef struct {
    cd_status status;
    char msg[ERROR_CAP];
} saved_error;

static void save_error(saved_error *e)
{
    e->status = cd_last_status();
    snprintf(e->msg, sizeof e->msg, "%s", cd_last_error());
}

static cd_status finish(const saved_error *e, cd_status st)
{
    if (st != CD_OK) return st;
    if (e->status != CD_OK)
        cd__error(e->status, "%s", e->msg);
    else
        cd_clear_error();
    return CD_OK;
}

cd_status cd_sampler_sample(cd_sampler *s, cd_rng *rng, cd_tensor *out)
{
    static const char fn[] = "cd_sampler_sample";
    CD__TRY(check_run(s, fn, rng, true, out));
    saved_error e;
    save_error(&e);
    chain c;
    chain_init(&c, s, fn, rng, out, s->deg->T);
    cd_status st = chain_alloc(&c);
    if (st == CD_OK) st = cd_degradation_sample_prior(s->deg, rng, out);
    if (st == CD_OK) st = run_chain(&c);
    chain_free(&c);
    return finish(&e, st);
}

static cd_status check_restore(const cd_sampler *s, const char *fn, const cd_tensor *x,
                               int64_t t_start, const cd_rng *rng, const cd_tensor *out,
                               const int64_t *times, int64_t n_snap,
                               const cd_tensor *const snaps[3])
{
    CD__TRY(check_run(s, fn, rng, false, out));
    CD__CHECK_NOT_NULL(x, fn);
    CD__TRY(cd__tensor_expect(out, fn, "out", 4, x->shape));
    CD__CHECK_ARG(out != x, fn, "out may not be x (x is read again for the forward snapshots)");
    if (t_start < 1 || t_start > s->deg->T)
        return cd__error(CD_ERR_RANGE, "%s: t_start = %" PRId64 " is outside 1..%" PRId64, fn,
                         t_start, s->deg->T);
    return check_snapshots(fn, x, t_start, times, n_snap, snaps);
}

cd_status cd_sampler_restore(cd_sampler *s, const cd_tensor *x, int64_t t_start, cd_rng *rng,
                             cd_tensor *out, const int64_t *snap_times, int64_t n_snap,
                             cd_tensor *snap_z, cd_tensor *snap_xhat, cd_tensor *snap_fwd)
{
    static const char fn[] = "cd_sampler_restore";
    const cd_tensor *const snaps[3] = {snap_z, snap_xhat, snap_fwd};
    CD__TRY(check_restore(s, fn, x, t_start, rng, out, snap_times, n_snap, snaps));
    saved_error e;
    save_error(&e);
    chain c;
    chain_init(&c, s, fn, rng, out, t_start);
    c.n_snap = n_snap;
    c.snap_z = snap_z;
    c.snap_xhat = snap_xhat;
    cd_status st = chain_alloc(&c);
    if (st == CD_OK) {
        map_snapshots(&c, snap_times);
        st = degrade(&c, x, t_start, c.ta, rng, out);
    }
    if (st == CD_OK) st = run_chain(&c);
    if (st == CD_OK) st = forward_snapshots(&c, x, snap_times, snap_fwd);
    chain_free(&c);
    return finish(&e, st);
}

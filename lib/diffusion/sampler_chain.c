/*
 * sampler_chain.c - one call's reverse chain (docs/models.md, Samplers): the
 * workspace, allocated once per call and reused at every step, the
 * predictor calls, one step of each algorithm, and the snapshots.
 *
 * Every pixel update is done in double from double coefficients (computed
 * from the float schedule) and rounded once, so the float arithmetic adds
 * one rounding per step and nothing depends on the thread count: the only
 * parallel parts are the degradations and the decoder, both tiled
 * deterministically.
 */
#include "sampler.h"
#include "nn/decoder.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

/* ---- workspace ----------------------------------------------------------- */

void cd__chain_free(cd__chain *c)
{
    cd_tensor_free(c->g);
    cd_tensor_free(c->g_uncond);
    cd_tensor_free(c->tau);
    cd_tensor_free(c->b1);
    cd_tensor_free(c->b2);
    cd__free(c->ta);
    cd__free(c->tb);
    cd__free(c->snap_at);
}

/* Everything the chain needs, allocated once per call; the scratch
 * batches only for the samplers that use them. */
cd_status cd__chain_alloc(cd__chain *c)
{
    /* Checked per call, before anything is drawn: the decoder may be set
     * on the sampler before it is loaded with weights for another T. */
    if (c->s->decoder) CD__TRY(cd__decoder_check_T(c->s->decoder, c->s->deg->T, c->fn));
    const cd_tensor *z = c->z;
    const bool scratch = c->s->kind != CD_SAMPLER_COLD1 && c->s->kind != CD_SAMPLER_DIRECT;
    CD__TRY(cd_tensor_create(&c->g, 4, z->shape));
    CD__TRY(cd_tensor_create(&c->tau, 1, &c->N));
    const double w = c->s->opt[CD_SAMPLER_OPT_GUIDANCE];
    if (c->s->labels && w != 0.0 && w != 1.0) CD__TRY(cd_tensor_create(&c->g_uncond, 4, z->shape));
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

static int64_t chain_time(const cd__chain *c, int64_t i)
{
    return cd__sampler_step_time(c->t_start, c->n_steps, i);
}

/* The chain time snapshot time t_v records: the first visited time <= t_v,
 * or 0 (the result) when the chain passes none. */
void cd__chain_map_snapshots(cd__chain *c, const int64_t *times)
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
static void snap_copy(const cd__chain *c, cd_tensor *snap, int64_t t, const float *src)
{
    if (!snap) return;
    for (int64_t v = 0; v < c->n_snap; v++)
        if (c->snap_at[v] == t)
            memcpy(snap->data + v * c->N * c->ND, src, (size_t)(c->N * c->ND) * sizeof(float));
}

static bool snap_wanted(const cd__chain *c, const cd_tensor *snap, int64_t t)
{
    if (!snap) return false;
    for (int64_t v = 0; v < c->n_snap; v++)
        if (c->snap_at[v] == t) return true;
    return false;
}

/* ---- the predictor ------------------------------------------------------- */

static cd_status predictor_failed(const cd__chain *c, int64_t t, cd_status st)
{
    char msg[CD__ERROR_CAP];
    snprintf(msg, sizeof msg, "%s", cd_last_error());
    if (st > 0)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: the predictor returned %d at t = %" PRId64
                         ", which is not a cd_status: %s",
                         c->fn, (int)st, t, msg);
    return cd__error(st, "%s: the predictor failed at t = %" PRId64 " (%s): %s", c->fn, t,
                     cd_status_string(st), msg[0] ? msg : "no message");
}

/* g = the decoder's output, guided by the labels when there are any:
 * u + w (c - u), with the two ends, w = 0 and w = 1, one pass each. */
static cd_status run_decoder(const cd__chain *c)
{
    const cd_sampler *s = c->s;
    const double w = s->opt[CD_SAMPLER_OPT_GUIDANCE];
    if (!s->labels || w == 0.0) return cd_decoder_infer(s->decoder, c->z, c->tau, c->g);
    CD__TRY(cd_decoder_infer_labeled(s->decoder, c->z, c->tau, s->labels, c->g));
    if (w == 1.0) return CD_OK;
    CD__TRY(cd_decoder_infer(s->decoder, c->z, c->tau, c->g_uncond));
    float *g = c->g->data;
    const float *u = c->g_uncond->data;
    for (int64_t i = 0; i < c->N * c->ND; i++)
        g[i] = (float)((double)u[i] + w * ((double)g[i] - (double)u[i]));
    return CD_OK;
}

/* g = predictor(z, t/T), checked: a shape change or a NaN would otherwise
 * run silently through every remaining step. */
static cd_status predict(const cd__chain *c, int64_t t)
{
    const cd_sampler *s = c->s;
    const float tau = (float)((double)t / (double)c->T);
    for (int64_t n = 0; n < c->N; n++) c->tau->data[n] = tau;
    if (!s->decoder) cd_clear_error(); /* so a silent failure is not given a stale message */
    const cd_status st = s->decoder ? run_decoder(c) : s->fn(c->z, c->tau, c->g, s->user);
    if (st != CD_OK) return predictor_failed(c, t, st);
    if (cd__tensor_expect(c->g, c->fn, "predictor output", 4, c->z->shape) != CD_OK)
        return cd__error(CD_ERR_SHAPE,
                         "%s: the predictor changed its output's shape at t = %" PRId64, c->fn, t);
    const float *g = c->g->data;
    for (int64_t i = 0; i < c->N * c->ND; i++)
        if (!isfinite(g[i]))
            return cd__error(CD_ERR_NOT_FINITE,
                             "%s: the predictor's output at t = %" PRId64
                             " is %g at element %" PRId64,
                             c->fn, t, (double)g[i], i);
    if (s->decoder && s->deg->kind == CD_DEGRADATION_NOISE)
        cd__prediction_to_noise(s->deg, s->decoder->prediction, c->z->data, t, c->N * c->ND,
                                c->g->data);
    return CD_OK;
}

/* ---- one step of each algorithm ------------------------------------------ */

/* x0-hat = (z - sqrt(1 - abar_t) eps-hat) / sqrt(abar_t), for snapshots. */
static void noise_x0(const cd__chain *c, int64_t t, float *x0)
{
    const double a = c->s->deg->alpha_bar[t], sa = sqrt(a), s1 = sqrt(1.0 - a);
    const float *z = c->z->data, *g = c->g->data;
    for (int64_t i = 0; i < c->N * c->ND; i++)
        x0[i] = (float)(((double)z[i] - s1 * (double)g[i]) / sa);
}

static cd_status step_ddpm(const cd__chain *c, int64_t t)
{
    const cd_degradation *d = c->s->deg;
    const double b = d->beta[t], a = d->alpha_bar[t];
    const double k = b / sqrt(1.0 - a), inv = 1.0 / sqrt(1.0 - b);
    double sigma = 0.0;
    if (t > 1) {
        const bool post = c->s->opt[CD_SAMPLER_OPT_POSTERIOR_VARIANCE] != 0.0;
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

static cd_status step_ddim(const cd__chain *c, int64_t t, int64_t p)
{
    const cd_sampler *s = c->s;
    const double a = s->deg->alpha_bar[t], ap = p > 0 ? (double)s->deg->alpha_bar[p] : 1.0;
    const double sa = sqrt(a), s1 = sqrt(1.0 - a), sap = sqrt(ap);
    /* fmax: a schedule imported verbatim need not be monotone. */
    const double sigma =
        s->opt[CD_SAMPLER_OPT_ETA] * sqrt((1.0 - ap) / (1.0 - a)) * sqrt(fmax(0.0, 1.0 - a / ap));
    const double q = sqrt(fmax(0.0, 1.0 - ap - sigma * sigma));
    const bool clip = s->opt[CD_SAMPLER_OPT_CLIP] != 0.0;
    const bool rederive = clip && s->opt[CD_SAMPLER_OPT_REDERIVE] != 0.0 && s1 > 0.0;
    const double lo = s->opt[CD_SAMPLER_OPT_CLIP_LO], hi = s->opt[CD_SAMPLER_OPT_CLIP_HI];
    if (sigma > 0.0) CD__TRY(cd_rng_normal(c->rng, c->b1->data, c->N * c->ND));
    float *z = c->z->data, *x0s = c->b2->data;
    const float *g = c->g->data, *xi = c->b1->data;
    for (int64_t i = 0; i < c->N * c->ND; i++) {
        double e = g[i];
        double x0 = ((double)z[i] - s1 * e) / sa;
        if (clip) {
            const double xc = fmin(fmax(x0, lo), hi);
            /* Only where the clip moved x0-hat, so that the unclipped
             * pixels keep the model's eps-hat bit for bit. */
            if (rederive && xc != x0) e = ((double)z[i] - sa * xc) / s1;
            x0 = xc;
        }
        x0s[i] = (float)x0;
        z[i] = (float)(sap * x0 + q * e + (sigma > 0.0 ? sigma * (double)xi[i] : 0.0));
    }
    snap_copy(c, c->snap_xhat, t, x0s);
    return CD_OK;
}

/* dst = D(src, t) for every sample, through the degradation's public
 * operator (its checks included); rng only for the noise. */
cd_status cd__chain_degrade(const cd__chain *c, const cd_tensor *src, int64_t t, int64_t *tv,
                            cd_rng *rng, cd_tensor *dst)
{
    fill_steps(tv, c->N, t);
    return cd_degradation_apply(c->s->deg, src, tv, c->N, rng, dst, NULL);
}

static cd_status step_cold1(const cd__chain *c, int64_t t)
{
    return cd__chain_degrade(c, c->g, t - 1, c->ta, NULL, c->z);
}

/* z += D(x-hat, t-1) - D(x-hat, t). The blur makes D(x-hat, t) from a copy
 * of D(x-hat, t-1) with the one extra blur G_t: D is t successive blurs,
 * not one closed-form Gaussian, so this halves the work. */
static cd_status step_cold2(const cd__chain *c, int64_t t)
{
    const size_t bytes = (size_t)(c->N * c->ND) * sizeof(float);
    const cd_tensor *z = c->z;
    if (c->s->deg->kind == CD_DEGRADATION_BLUR) {
        memcpy(c->b1->data, c->g->data, bytes);
        fill_steps(c->ta, c->N, t - 1);
        fill_steps(c->tb, c->N, t);
        cd__blur_steps(c->s->deg, c->b1->data, c->N, z->shape[1], z->shape[2], z->shape[3], c->ta,
                       NULL);
        memcpy(c->b2->data, c->b1->data, bytes);
        cd__blur_steps(c->s->deg, c->b2->data, c->N, z->shape[1], z->shape[2], z->shape[3], c->tb,
                       c->ta);
    } else {
        CD__TRY(cd__chain_degrade(c, c->g, t - 1, c->ta, NULL, c->b1));
        CD__TRY(cd__chain_degrade(c, c->g, t, c->tb, NULL, c->b2));
    }
    float *zp = z->data;
    const float *prev = c->b1->data, *cur = c->b2->data;
    for (int64_t i = 0; i < c->N * c->ND; i++)
        zp[i] = (float)((double)zp[i] - (double)cur[i] + (double)prev[i]);
    return CD_OK;
}

/* The cold samplers' x-hat is the predictor's output: clipped in place,
 * as DDIM clips its x0-hat, before anything reads it. */
static void clip_prediction(const cd__chain *c)
{
    const cd_sampler *s = c->s;
    if (s->opt[CD_SAMPLER_OPT_CLIP] == 0.0) return;
    const float lo = (float)s->opt[CD_SAMPLER_OPT_CLIP_LO],
                hi = (float)s->opt[CD_SAMPLER_OPT_CLIP_HI];
    float *g = c->g->data;
    for (int64_t i = 0; i < c->N * c->ND; i++) g[i] = g[i] < lo ? lo : g[i] > hi ? hi : g[i];
}

static cd_status step(const cd__chain *c, int64_t t, int64_t p)
{
    if (c->s->kind != CD_SAMPLER_DDPM && c->s->kind != CD_SAMPLER_DDIM) clip_prediction(c);
    switch (c->s->kind) {
    case CD_SAMPLER_DDPM: return step_ddpm(c, t);
    case CD_SAMPLER_DDIM: return step_ddim(c, t, p);
    case CD_SAMPLER_COLD1: snap_copy(c, c->snap_xhat, t, c->g->data); return step_cold1(c, t);
    case CD_SAMPLER_COLD2: snap_copy(c, c->snap_xhat, t, c->g->data); return step_cold2(c, t);
    case CD_SAMPLER_DIRECT:
    case CD_SAMPLER_INVALID: break;
    }
    snap_copy(c, c->snap_xhat, t, c->g->data);
    memcpy(c->z->data, c->g->data, (size_t)(c->N * c->ND) * sizeof(float));
    return CD_OK;
}

/* The user's progress callback after step i of the chain (at time t): a
 * non-OK return stops the chain with that status. */
static cd_status report_progress(const cd__chain *c, int64_t i, int64_t t)
{
    const cd_status st = c->s->progress(i, c->n_steps, c->s->progress_user);
    if (st == CD_OK) return CD_OK;
    if (st > 0)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: the progress callback returned %d "
                         "after step %" PRId64 " of %" PRId64 ", which is not a cd_status",
                         c->fn, (int)st, i, c->n_steps);
    return cd__error(st,
                     "%s: stopped by the progress callback after step %" PRId64 " of %" PRId64
                     " (t = %" PRId64 ")",
                     c->fn, i, c->n_steps, t);
}

/* From z_{t_start} (already in c->z) down to z_0, recording snapshots. */
cd_status cd__chain_run(const cd__chain *c)
{
    for (int64_t i = 0; i < c->n_steps; i++) {
        const int64_t t = chain_time(c, i);
        const int64_t p = i + 1 < c->n_steps ? chain_time(c, i + 1) : 0;
        snap_copy(c, c->snap_z, t, c->z->data);
        CD__TRY(predict(c, t));
        CD__TRY(step(c, t, p));
        if (c->s->progress) CD__TRY(report_progress(c, i + 1, t));
    }
    snap_copy(c, c->snap_z, 0, c->z->data);
    snap_copy(c, c->snap_xhat, 0, c->z->data);
    return CD_OK;
}

/* D(x, t_v) for each snapshot, drawn after the chain so that it neither
 * shares noise with it nor changes it. */
cd_status cd__chain_forward_snapshots(const cd__chain *c, const cd_tensor *x, const int64_t *times,
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

void cd__chain_init(cd__chain *c, const cd_sampler *s, const char *fn, cd_rng *rng, cd_tensor *out,
                    int64_t t_start)
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
    c->n_steps = cd__sampler_count_steps(s, t_start);
}

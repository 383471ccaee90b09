/*
 * sampler.c - the reverse chains (DDPM, DDIM, cold algorithms 1 and 2,
 * direct; docs/models.md, Samplers), unconditional and conditional,
 * behind one opaque object: creation, options, argument checks and the two
 * entry points. The chain itself is in sampler_chain.c; its state lives in the
 * caller's output tensor.
 */
#include "sampler.h"
#include "nn/decoder.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- creation and options ----------------------------------------------- */

static const char *const kind_names[] = {"DDPM", "DDIM", "cold1", "cold2", "direct"};
static const cd__option options[CD__SAMPLER_N_KEYS] = {
    {CD_SAMPLER_OPT_STEPS, "steps", CD_OPTION_INT, -1, 1, 1e9, false, false, 50},
    {CD_SAMPLER_OPT_ETA, "eta", CD_OPTION_REAL, -1, 0, 1, false, false, 1},
    {CD_SAMPLER_OPT_POSTERIOR_VARIANCE, "posterior_variance", CD_OPTION_BOOL, -1, 0, 1, false,
     false, 0},
    {CD_SAMPLER_OPT_CLIP, "clip", CD_OPTION_BOOL, -1, 0, 1, false, false, 1},
    {CD_SAMPLER_OPT_CLIP_LO, "clip_lo", CD_OPTION_REAL, -1, -FLT_MAX, FLT_MAX, false, false, -0.5},
    {CD_SAMPLER_OPT_CLIP_HI, "clip_hi", CD_OPTION_REAL, -1, -FLT_MAX, FLT_MAX, false, false, 0.5},
    {CD_SAMPLER_OPT_GUIDANCE, "guidance", CD_OPTION_REAL, -1, 0, 100, false, false, 1},
    {CD_SAMPLER_OPT_REDERIVE, "rederive", CD_OPTION_BOOL, -1, 0, 1, false, false, 0},
};

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
            return cd__error(CD_ERR_RANGE,
                             "%s: the noise samplers need beta_t < 1 and 0 < "
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
    const bool noise = cd_degradation_get_target(deg) == CD_TARGET_NOISE;
    if (noise != is_noise_kind(kind))
        return cd__error(CD_ERR_UNSUPPORTED,
                         "%s: the %s sampler needs %s, but the "
                         "degradation is %s",
                         fn, kind_names[kind],
                         is_noise_kind(kind) ? "the noise degradation"
                                             : "a deterministic degradation",
                         cd_enum_name(CD_ENUM_DEGRADATION_KIND, deg->kind));
    if (noise) CD__TRY(check_noise_schedule(deg, fn));
    cd_sampler *s = cd__calloc(1, sizeof *s, "sampler");
    if (!s) return cd_last_status();
    s->kind = kind;
    s->deg = deg;
    /* Safe defaults: x0-hat clipped to the data range, and for DDIM the
     * setting that measured best (docs/sampling.md): 50 stochastic steps.
     * Unclipped, an under-trained noise model's x0-hat divides its error by
     * sqrt(abar_T) and deterministic DDIM diverges. */
    for (int k = 0; k < CD__SAMPLER_N_KEYS; k++) s->opt[k] = options[k].def;
    if ((double)deg->T < s->opt[CD_SAMPLER_OPT_STEPS])
        s->opt[CD_SAMPLER_OPT_STEPS] = (double)deg->T;
    *out = s;
    return CD_OK;
}

void cd_sampler_free(cd_sampler *s)
{
    if (!s) return;
    cd_tensor_free(s->labels);
    cd__free(s);
}

cd_sampler_kind cd_sampler_get_kind(const cd_sampler *s)
{
    if (!s) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_sampler_get_kind: argument 's' is NULL");
        return CD_SAMPLER_INVALID;
    }
    return s->kind;
}

static const cd__option *find_option(const char *fn, cd_sampler_option key)
{
    return cd__option_find(options, CD__SAMPLER_N_KEYS, (int32_t)key, fn);
}

cd_status cd_sampler_option_info(cd_sampler_option key, cd_option_info *info)
{
    static const char fn[] = "cd_sampler_option_info";
    const cd__option *o = find_option(fn, key);
    return o ? cd__option_describe(o, fn, info) : cd_last_status();
}

cd_status cd_sampler_set_int(cd_sampler *s, cd_sampler_option key, int64_t value)
{
    static const char fn[] = "cd_sampler_set_int";
    CD__CHECK_NOT_NULL(s, fn);
    const cd__option *o = find_option(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_int(o, fn, value));
    if (key == CD_SAMPLER_OPT_STEPS && value > s->deg->T)
        return cd__error(CD_ERR_RANGE,
                         "%s: %s sampler: steps = %" PRId64 " exceeds the "
                         "degradation's T = %" PRId64,
                         fn, kind_names[s->kind], value, s->deg->T);
    s->opt[key] = (double)value;
    return CD_OK;
}

cd_status cd_sampler_set_real(cd_sampler *s, cd_sampler_option key, double value)
{
    static const char fn[] = "cd_sampler_set_real";
    CD__CHECK_NOT_NULL(s, fn);
    const cd__option *o = find_option(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_real(o, fn, value));
    s->opt[key] = value;
    return CD_OK;
}

cd_status cd_sampler_get_int(const cd_sampler *s, cd_sampler_option key, int64_t *value)
{
    static const char fn[] = "cd_sampler_get_int";
    CD__CHECK_NOT_NULL(s, fn);
    CD__CHECK_NOT_NULL(value, fn);
    const cd__option *o = find_option(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_read(o, fn, true));
    *value = (int64_t)s->opt[key];
    return CD_OK;
}

cd_status cd_sampler_get_real(const cd_sampler *s, cd_sampler_option key, double *value)
{
    static const char fn[] = "cd_sampler_get_real";
    CD__CHECK_NOT_NULL(s, fn);
    CD__CHECK_NOT_NULL(value, fn);
    const cd__option *o = find_option(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_read(o, fn, false));
    *value = s->opt[key];
    return CD_OK;
}

cd_status cd_sampler_set_decoder(cd_sampler *s, cd_decoder *d)
{
    CD__CHECK_NOT_NULL(s, "cd_sampler_set_decoder");
    /* Early, for a clear message; sampling checks again, since a fresh
     * decoder learns its T only when a trainer takes it. */
    if (d) CD__TRY(cd__decoder_check_T(d, s->deg->T, "cd_sampler_set_decoder"));
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

cd_status cd_sampler_set_labels(cd_sampler *s, const cd_tensor *labels)
{
    static const char fn[] = "cd_sampler_set_labels";
    CD__CHECK_NOT_NULL(s, fn);
    cd_tensor *copy = NULL;
    if (labels) {
        if (labels->rank != 1)
            return cd__error(CD_ERR_SHAPE,
                             "%s: labels must be rank 1 (one per image), got rank %" PRId32, fn,
                             labels->rank);
        for (int64_t i = 0; i < labels->numel; i++) {
            const float v = labels->data[i];
            if (!(v >= -1.0f && v < 65536.0f) || v != floorf(v))
                return cd__error(CD_ERR_RANGE,
                                 "%s: labels[%" PRId64 "] is %g, not a class or -1 for none", fn, i,
                                 (double)v);
        }
        CD__TRY(cd_tensor_create(&copy, 1, labels->shape));
        memcpy(copy->data, labels->data, (size_t)labels->numel * sizeof *copy->data);
    }
    cd_tensor_free(s->labels);
    s->labels = copy;
    return CD_OK;
}

cd_status cd_sampler_set_progress(cd_sampler *s, cd_sampler_progress_fn fn, void *user)
{
    CD__CHECK_NOT_NULL(s, "cd_sampler_set_progress");
    s->progress = fn;
    s->progress_user = fn ? user : NULL;
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
    const int64_t S = cd__sampler_count_steps(s, t_start);
    *n = S;
    for (int64_t i = 0; i < S && i < capacity; i++) times[i] = cd__sampler_step_time(t_start, S, i);
    if (capacity < S)
        return cd__error(CD_ERR_SHAPE, "%s: %" PRId64 " times do not fit in %" PRId64, fn, S,
                         capacity);
    return CD_OK;
}

/* ---- validation ---------------------------------------------------------- */

static cd_status check_labels(const cd_sampler *s, const char *fn, int64_t N)
{
    if (!s->decoder)
        return cd__error(CD_ERR_STATE,
                         "%s: labels are set, but the sampler has a predictor function, which "
                         "takes none: set a decoder with classes",
                         fn);
    const int64_t K = cd_decoder_class_count(s->decoder);
    if (K <= 0)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: labels are set, but the decoder has no classes (it was made "
                         "with CD_DECODER_OPT_CLASSES = 0)",
                         fn);
    if (s->labels->numel != N)
        return cd__error(CD_ERR_SHAPE, "%s: %" PRId64 " labels for a batch of %" PRId64, fn,
                         s->labels->numel, N);
    for (int64_t i = 0; i < N; i++)
        if (s->labels->data[i] > (float)(K - 1))
            return cd__error(CD_ERR_RANGE,
                             "%s: labels[%" PRId64 "] is %g, but the decoder has %" PRId64
                             " classes (0..%" PRId64 ")",
                             fn, i, (double)s->labels->data[i], K, K - 1);
    return CD_OK;
}

/* Checks shared by sample() and restore(): the sampler is ready, out is an
 * image batch, and the options agree with each other. */
static cd_status check_run(const cd_sampler *s, const char *fn, const cd_rng *rng, bool need_rng,
                           const cd_tensor *out)
{
    CD__CHECK_NOT_NULL(s, fn);
    if (!s->decoder && !s->fn)
        return cd__error(CD_ERR_STATE,
                         "%s: no predictor: call cd_sampler_set_decoder() or "
                         "cd_sampler_set_predictor() first",
                         fn);
    CD__CHECK_NOT_NULL(out, fn);
    if (need_rng || s->deg->kind == CD_DEGRADATION_NOISE)
        CD__CHECK_ARG(rng != NULL, fn, "argument 'rng' is NULL (sampling draws from it)");
    if (out->rank != 4)
        return cd__error(CD_ERR_SHAPE, "%s: out must be N x C x H x W, got rank %" PRId32, fn,
                         out->rank);
    if (s->deg->kind == CD_DEGRADATION_BLUR)
        CD__TRY(cd__blur_check(s->deg, fn, out->shape[2], out->shape[3]));
    if (s->labels) CD__TRY(check_labels(s, fn, out->shape[0]));
    if (s->opt[CD_SAMPLER_OPT_CLIP] != 0.0 &&
        s->opt[CD_SAMPLER_OPT_CLIP_LO] > s->opt[CD_SAMPLER_OPT_CLIP_HI])
        return cd__error(CD_ERR_RANGE, "%s: the clip range [%g, %g] is empty", fn,
                         s->opt[CD_SAMPLER_OPT_CLIP_LO], s->opt[CD_SAMPLER_OPT_CLIP_HI]);
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
            return cd__error(CD_ERR_RANGE,
                             "%s: snap_times[%" PRId64 "] = %" PRId64 " is "
                             "outside 0..%" PRId64 " (t_start)",
                             fn, v, times[v], t_start);
    for (int k = 0; k < 3; k++) {
        CD__TRY(check_snapshot_tensor(fn, names[k], snaps[k], n_snap, x));
        /* Rank 5 already keeps them apart from x and out. */
        for (int j = 0; j < k && snaps[k]; j++)
            if (snaps[j] == snaps[k])
                return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: %s and %s are the same tensor", fn,
                                 names[j], names[k]);
    }
    return CD_OK;
}

/* ---- entry points -------------------------------------------------------- */

/* Running a user predictor clears the thread's error message before each
 * call; a successful run puts the caller's earlier message back. */
static cd_status finish(const cd__saved_error *e, cd_status st)
{
    if (st != CD_OK) return st;
    cd__error_restore(e);
    return CD_OK;
}

cd_status cd_sampler_sample(cd_sampler *s, cd_rng *rng, cd_tensor *out)
{
    static const char fn[] = "cd_sampler_sample";
    CD__TRY(check_run(s, fn, rng, true, out));
    cd__saved_error e;
    cd__error_save(&e);
    cd__chain c;
    cd__chain_init(&c, s, fn, rng, out, s->deg->T);
    cd_status st = cd__chain_alloc(&c);
    if (st == CD_OK) st = cd_degradation_sample_prior(s->deg, rng, out);
    if (st == CD_OK) st = cd__chain_run(&c);
    cd__chain_free(&c);
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
    CD__TRY(cd__check_finite(x, fn, "x"));
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
    cd__saved_error e;
    cd__error_save(&e);
    cd__chain c;
    cd__chain_init(&c, s, fn, rng, out, t_start);
    c.n_snap = n_snap;
    c.snap_z = snap_z;
    c.snap_xhat = snap_xhat;
    cd_status st = cd__chain_alloc(&c);
    if (st == CD_OK) {
        cd__chain_map_snapshots(&c, snap_times);
        st = cd__chain_degrade(&c, x, t_start, c.ta, rng, out);
    }
    if (st == CD_OK) st = cd__chain_run(&c);
    if (st == CD_OK) st = cd__chain_forward_snapshots(&c, x, snap_times, snap_fwd);
    cd__chain_free(&c);
    return finish(&e, st);
}

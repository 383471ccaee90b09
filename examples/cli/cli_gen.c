/*
 * cli_gen.c - sample grids and restoration figures (see cli_gen.h).
 */
#include "cli_gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const cli_sampler_names[] = {"auto", "ddpm", "ddim", "cold1", "cold2", "direct", NULL};

cli_times cli_default_times(int64_t T)
{
    return (cli_times){3, {T / 10 > 0 ? T / 10 : 1, T / 2 > 0 ? T / 2 : 1, T}};
}

cd_status cli_load_model(const char *path, bool want_trainer, bool ema, cli_loaded *m)
{
    memset(m, 0, sizeof *m);
    cd_status st = CD_ERR_NOT_FOUND;
    if (!path) {
        st = cd_model_load_default(&m->dec, &m->deg);
        if (st == CD_OK && want_trainer) {
            st = cd_trainer_create(&m->tr, m->dec, m->deg);
            if (st != CD_OK) cli_loaded_free(m);
        }
        if (st != CD_OK) cli_fail("loading the shipped pretrained model");
        return st;
    }
    /* A training checkpoint keeps the options its test loss is defined by,
     * and the raw weights next to the EMA. */
    if ((want_trainer || !ema) && cd_trainer_load(&m->tr, path, NULL) == CD_OK) {
        m->checkpoint = true;
        /* The weights to sample with, as cd_model_load takes them. */
        if (ema && cd_trainer_copy_ema(m->tr) != CD_OK) cd_clear_error();
        m->dec = cd_trainer_decoder(m->tr);
        m->deg = cd_trainer_degradation(m->tr);
        return CD_OK;
    }
    st = cd_model_load(path, &m->dec, &m->deg);
    if (st == CD_OK && want_trainer) {
        st = cd_trainer_create(&m->tr, m->dec, m->deg);
        if (st != CD_OK) cli_loaded_free(m);
    }
    if (st != CD_OK) {
        cli_fail("loading the model");
        return st;
    }
    return CD_OK;
}

void cli_loaded_free(cli_loaded *m)
{
    cd_trainer_free(m->tr); /* first: a trainer we made borrows dec and deg */
    if (!m->checkpoint) {   /* a loaded trainer's own go with it */
        cd_decoder_free(m->dec);
        cd_degradation_free(m->deg);
    }
    memset(m, 0, sizeof *m);
}

cd_status cli_model_sampler(cd_decoder *dec, const cd_degradation *deg, const cli_sampling *o,
                            cd_sampler **out)
{
    const bool noise = cd_degradation_get_target(deg) == CD_TARGET_NOISE;
    static const cd_sampler_kind kinds[] = {CD_SAMPLER_DDPM,  CD_SAMPLER_DDPM,  CD_SAMPLER_DDIM,
                                            CD_SAMPLER_COLD1, CD_SAMPLER_COLD2, CD_SAMPLER_DIRECT};
    /* auto: DDIM for noise models (docs/sampling.md: 50 steps at eta 1,
     * clipped, come within a few percent of DDPM-1000's FD, 20x faster). */
    const cd_sampler_kind kind =
        o->kind == SMP_AUTO ? (noise ? CD_SAMPLER_DDIM : CD_SAMPLER_COLD2) : kinds[o->kind];
    const int64_t T = cd_degradation_T(deg);
    cd_status st = cd_sampler_create(out, kind, deg);
    if (st == CD_OK) st = cd_sampler_set_decoder(*out, dec);
    if (st == CD_OK) st = cli_progress_attach(*out);
    if (st == CD_OK && kind == CD_SAMPLER_DDIM) {
        /* Set even where the library's defaults agree, so the command line
         * keeps them whatever library it runs on (docs/sampling.md). */
        const int64_t steps = o->steps > 0 ? o->steps : T < CLI_DDIM_STEPS ? T : CLI_DDIM_STEPS;
        st = cd_sampler_set_int(*out, CD_SAMPLER_OPT_STEPS, steps);
        if (st == CD_OK)
            st = cd_sampler_set_real(*out, CD_SAMPLER_OPT_ETA,
                                     isnan(o->eta) ? CLI_DDIM_ETA : o->eta);
        /* An under-trained noise model's x0-hat divides its error by
         * sqrt(abar_t); clipping to the data range keeps the chain there. */
        if (st == CD_OK) st = cd_sampler_set_int(*out, CD_SAMPLER_OPT_CLIP, o->clip ? 1 : 0);
        if (st == CD_OK) st = cd_sampler_set_real(*out, CD_SAMPLER_OPT_CLIP_LO, -0.5);
        if (st == CD_OK) st = cd_sampler_set_real(*out, CD_SAMPLER_OPT_CLIP_HI, 0.5);
    }
    if (st != CD_OK) {
        cd_sampler_free(*out);
        *out = NULL;
    }
    return st;
}

int cli_check_class(const cd_decoder *dec, const cli_sampling *o, const char *cmd)
{
    if (o->cls < 0 && !o->class_rows) return CLI_OK;
    const int64_t K = cd_decoder_class_count(dec);
    if (K <= 0)
        return cli_usage(cmd,
                         "%s needs a class-conditional model (train one with --conditional); "
                         "this one has no classes",
                         o->class_rows ? "--class-rows" : "--class");
    if (o->cls >= K)
        return cli_usage(cmd, "--class %lld: the model has %lld classes (0..%lld)",
                         (long long)o->cls, (long long)K, (long long)K - 1);
    return CLI_OK;
}

int64_t cli_grid_count(const cd_decoder *dec, const cli_sampling *o, int64_t cols, int64_t most,
                       int64_t fallback)
{
    const int64_t K = cd_decoder_class_count(dec);
    return o->cls < 0 && o->class_rows && K > 0 && K <= most / cols ? K * cols : fallback;
}

cd_status cli_set_labels(cd_sampler *smp, const cd_decoder *dec, const cli_sampling *o,
                         int64_t first, int64_t n, int64_t cols)
{
    if (o->cls < 0 && !o->class_rows) return cd_sampler_set_labels(smp, NULL);
    const int64_t K = cd_decoder_class_count(dec);
    cd_tensor *labels = NULL;
    cd_status st = cd_tensor_create(&labels, 1, &n);
    for (int64_t i = 0; st == CD_OK && i < n; i++)
        cd_tensor_data(labels)[i] = (float)(o->cls >= 0 ? o->cls : ((first + i) / cols) % K);
    if (st == CD_OK) st = cd_sampler_set_labels(smp, labels);
    if (st == CD_OK) st = cd_sampler_set_real(smp, CD_SAMPLER_OPT_GUIDANCE, o->guidance);
    /* Guidance pushes x0-hat far outside the data range; stepping with
     * the model's noise beside the clipped x0-hat then leaves the class. */
    if (st == CD_OK && cd_sampler_get_kind(smp) == CD_SAMPLER_DDIM)
        st = cd_sampler_set_int(smp, CD_SAMPLER_OPT_REDERIVE, o->clip && o->guidance > 1.0);
    cd_tensor_free(labels);
    return st;
}

cd_status cli_make_sampler(cd_trainer *tr, const cli_sampling *o, cd_sampler **out)
{
    return cli_model_sampler(cd_trainer_decoder(tr), cd_trainer_degradation(tr), o, out);
}

/* Training's grids show an unfinished model: no range warnings there. */
static bool g_quiet;

cd_status cli_sample_grid(cd_trainer *tr, const cli_sampling *o, int64_t n, int64_t cols,
                          const char *path)
{
    g_quiet = true;
    const cd_status st =
        cli_model_sample_grid(cd_trainer_decoder(tr), cd_trainer_degradation(tr), o, n, cols, path);
    g_quiet = false;
    return st;
}

cd_status cli_restore_figure(cd_trainer *tr, const cli_sampling *o, cd_dataset *ds, cd_split split,
                             int64_t n, const cli_times *times, const char *path)
{
    g_quiet = true;
    const cd_status st =
        cli_model_restore_figure(cd_trainer_decoder(tr), cd_trainer_degradation(tr), o, ds, split,
                                 n, times, path);
    g_quiet = false;
    return st;
}

void cli_warn_range(const cd_tensor *x, const char *what)
{
    const int64_t n = cd_tensor_numel(x);
    const float *v = cd_tensor_data((cd_tensor *)x);
    int64_t out = 0;
    if (g_quiet) return;
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(v[i]) <= 0.55f)) out++;
    if (n > 0 && out * 100 > n)
        fprintf(stderr,
                "colddiff: warning: %.1f%% of the %s' pixels lie more than 0.05 outside "
                "the data range [-0.5, 0.5] (the PNG's percentile map hides this); the model "
                "may need more training (DDIM: keep x0-hat clipped, without --no-clip)\n",
                100.0 * (double)out / (double)n, what);
}

/* The image shape for n samples: the dataset's, or without one (unconditional
 * sampling) the one the decoder is for. */
static cd_status image_shape(const cd_decoder *dec, cd_dataset *ds, int64_t n, int64_t shape[4])
{
    shape[0] = n;
    const cd_status st = cd_decoder_image_shape(dec, shape + 1);
    if (st == CD_OK && ds) {
        shape[2] = cd_dataset_height(ds);
        shape[3] = cd_dataset_width(ds);
    }
    return st;
}

cd_status cli_model_sample_grid(cd_decoder *dec, const cd_degradation *deg, const cli_sampling *o,
                                int64_t n, int64_t cols, const char *path)
{
    cd_sampler *smp = NULL;
    cd_rng *rng = NULL;
    cd_tensor *out = NULL;
    int64_t shape[4];
    cd_status st = image_shape(dec, NULL, n, shape);
    if (st == CD_OK) st = cli_model_sampler(dec, deg, o, &smp);
    if (st == CD_OK) st = cli_set_labels(smp, dec, o, 0, n, cols);
    if (st == CD_OK) st = cd_rng_create(&rng, o->seed);
    if (st == CD_OK) st = cd_tensor_create(&out, 4, shape);
    if (st == CD_OK) st = cd_sampler_sample(smp, rng, out);
    if (st == CD_OK) cli_warn_range(out, "samples");
    if (st == CD_OK) st = cli_write_grid(path, out, cols, o->range_map);
    cd_tensor_free(out);
    cd_rng_free(rng);
    cd_sampler_free(smp);
    return st;
}

/* Copy image i of a (n x C x H x W) into slot k of the figure. */
static void put(cd_tensor *fig, int64_t k, const float *src, int64_t pixels)
{
    memcpy(cd_tensor_data(fig) + k * pixels, src, (size_t)pixels * sizeof(float));
}

cd_status cli_model_restore_figure(cd_decoder *dec, const cd_degradation *deg,
                                   const cli_sampling *o, cd_dataset *ds, cd_split split, int64_t n,
                                   const cli_times *times, const char *path)
{
    const int64_t nv = times->n, cols = 2 + 2 * nv, T = cd_degradation_T(deg);
    int64_t shape[4], sshape[5];
    cd_status st = image_shape(dec, ds, n, shape);
    if (st != CD_OK) return st;
    const int64_t pixels = shape[1] * shape[2] * shape[3];
    sshape[0] = nv;
    memcpy(sshape + 1, shape, sizeof shape);
    const int64_t fshape[4] = {n * cols, shape[1], shape[2], shape[3]};
    cd_sampler *smp = NULL;
    cd_rng *rng = NULL;
    cd_tensor *x = NULL, *out = NULL, *sx = NULL, *sf = NULL, *fig = NULL;
    int64_t filled = 0;
    st = cli_model_sampler(dec, deg, o, &smp);
    if (st == CD_OK) st = cd_rng_create(&rng, o->seed);
    if (st == CD_OK) st = cd_tensor_create(&x, 4, shape);
    if (st == CD_OK) st = cd_tensor_create(&out, 4, shape);
    if (st == CD_OK) st = cd_tensor_create(&sx, 5, sshape);
    if (st == CD_OK) st = cd_tensor_create(&sf, 5, sshape);
    if (st == CD_OK) st = cd_tensor_create(&fig, 4, fshape);
    if (st == CD_OK) st = cd_dataset_fill_batch(ds, split, 0, x, NULL, &filled);
    if (st == CD_OK) st = cd_sampler_restore(smp, x, T, rng, out, times->v, nv, NULL, sx, sf);
    if (st == CD_OK) cli_warn_range(out, "restorations");
    for (int64_t i = 0; st == CD_OK && i < n; i++) {
        put(fig, i * cols, cd_tensor_data(x) + i * pixels, pixels);
        for (int64_t v = 0; v < nv; v++) {
            put(fig, i * cols + 1 + v, cd_tensor_data(sf) + (v * n + i) * pixels, pixels);
            put(fig, i * cols + 1 + nv + v, cd_tensor_data(sx) + (v * n + i) * pixels, pixels);
        }
        put(fig, i * cols + cols - 1, cd_tensor_data(out) + i * pixels, pixels);
    }
    if (st == CD_OK) st = cli_write_grid(path, fig, cols, o->range_map);
    cd_tensor_free(fig), cd_tensor_free(sf), cd_tensor_free(sx);
    cd_tensor_free(out), cd_tensor_free(x);
    cd_rng_free(rng);
    cd_sampler_free(smp);
    return st;
}

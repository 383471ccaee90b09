/*
 * cli_gen.c - sample grids and restoration figures (see cli_gen.h).
 */
#include "cli_gen.h"

#include <stdlib.h>
#include <string.h>

const char *const cli_sampler_names[] = {"auto", "ddpm", "ddim", "cold1", "cold2", "direct",
                                         NULL};

cli_times cli_default_times(int64_t T)
{
    return (cli_times){3, {T / 10 > 0 ? T / 10 : 1, T / 2 > 0 ? T / 2 : 1, T}};
}

cd_status cli_load_model(cd_trainer **tr, const char *ckpt, const cli_sampling *o)
{
    cd_status st = cd_trainer_load(tr, ckpt, NULL);
    if (st != CD_OK) {
        cli_fail("loading the checkpoint");
        return st;
    }
    if (o->ema && (st = cd_trainer_copy_ema(*tr)) != CD_OK) {
        cli_fail("--ema");
        cd_trainer_free(*tr);
        *tr = NULL;
    }
    return st;
}

cd_status cli_make_sampler(cd_trainer *tr, const cli_sampling *o, cd_sampler **out)
{
    const cd_degradation *deg = cd_trainer_degradation(tr);
    const bool noise = cd_degradation_target(deg) == CD_TARGET_NOISE;
    static const cd_sampler_kind kinds[] = {CD_SAMPLER_DDPM, CD_SAMPLER_DDPM, CD_SAMPLER_DDIM,
                                            CD_SAMPLER_COLD1, CD_SAMPLER_COLD2,
                                            CD_SAMPLER_DIRECT};
    const cd_sampler_kind kind = o->kind == SMP_AUTO ? (noise ? CD_SAMPLER_DDPM : CD_SAMPLER_COLD2)
                                                     : kinds[o->kind];
    cd_status st = cd_sampler_create(out, kind, deg);
    if (st == CD_OK) st = cd_sampler_set_decoder(*out, cd_trainer_decoder(tr));
    if (st == CD_OK && kind == CD_SAMPLER_DDIM) {
        if (o->steps > 0) st = cd_sampler_set(*out, CD_SAMPLER_STEPS, (double)o->steps);
        if (st == CD_OK) st = cd_sampler_set(*out, CD_SAMPLER_ETA, o->eta);
        /* An under-trained noise model's x0-hat divides its error by
         * sqrt(abar_T); clipping keeps the DDIM chain in range
         * (docs/sampling.md). */
        if (st == CD_OK && o->clip) {
            st = cd_sampler_set(*out, CD_SAMPLER_CLIP, 1.0);
            if (st == CD_OK) st = cd_sampler_set(*out, CD_SAMPLER_CLIP_LO, -0.5);
            if (st == CD_OK) st = cd_sampler_set(*out, CD_SAMPLER_CLIP_HI, 0.5);
        }
    }
    if (st != CD_OK) {
        cd_sampler_free(*out);
        *out = NULL;
    }
    return st;
}

/* The image shape for n samples: the dataset's, or without one (unconditional
 * sampling) the decoder's channels and, for the CNN, the size its layer
 * norms were fitted to; a UNet takes MNIST's 28 x 28. */
static cd_status image_shape(cd_trainer *tr, cd_dataset *ds, int64_t n, int64_t shape[4])
{
    cd_decoder *dec = cd_trainer_decoder(tr);
    cd_decoder_config *cfg = NULL;
    shape[0] = n, shape[1] = 1, shape[2] = 28, shape[3] = 28;
    cd_status st = cd_decoder_get_config(dec, &cfg);
    if (st == CD_OK) st = cd_decoder_config_get(cfg, CD_DECODER_CHANNELS, &shape[1]);
    if (st == CD_OK && ds) {
        shape[2] = cd_dataset_height(ds);
        shape[3] = cd_dataset_width(ds);
    } else if (st == CD_OK && cd_decoder_get_type(dec) == CD_DECODER_CNN) {
        st = cd_decoder_config_get(cfg, CD_DECODER_HEIGHT, &shape[2]);
        if (st == CD_OK) st = cd_decoder_config_get(cfg, CD_DECODER_WIDTH, &shape[3]);
    }
    cd_decoder_config_free(cfg);
    return st;
}

cd_status cli_sample_grid(cd_trainer *tr, const cli_sampling *o, int64_t n, int64_t cols,
                          const char *path)
{
    cd_sampler *smp = NULL;
    cd_rng *rng = NULL;
    cd_tensor *out = NULL;
    int64_t shape[4];
    cd_status st = image_shape(tr, NULL, n, shape);
    if (st == CD_OK) st = cli_make_sampler(tr, o, &smp);
    if (st == CD_OK) st = cd_rng_create(&rng, o->seed);
    if (st == CD_OK) st = cd_tensor_create(&out, 4, shape);
    if (st == CD_OK) st = cd_sampler_sample(smp, rng, out);
    if (st == CD_OK) st = cli_write_grid(path, out, cols);
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

cd_status cli_restore_figure(cd_trainer *tr, const cli_sampling *o, cd_dataset *ds,
                             cd_split split, int64_t n, const cli_times *times,
                             const char *path)
{
    const int64_t nv = times->n, cols = 2 + 2 * nv, T = cd_degradation_T(cd_trainer_degradation(tr));
    int64_t shape[4], sshape[5];
    cd_status st = image_shape(tr, ds, n, shape);
    if (st != CD_OK) return st;
    const int64_t pixels = shape[1] * shape[2] * shape[3];
    sshape[0] = nv;
    memcpy(sshape + 1, shape, sizeof shape);
    const int64_t fshape[4] = {n * cols, shape[1], shape[2], shape[3]};
    cd_sampler *smp = NULL;
    cd_rng *rng = NULL;
    cd_tensor *x = NULL, *out = NULL, *sx = NULL, *sf = NULL, *fig = NULL;
    int64_t filled = 0;
    st = cli_make_sampler(tr, o, &smp);
    if (st == CD_OK) st = cd_rng_create(&rng, o->seed);
    if (st == CD_OK) st = cd_tensor_create(&x, 4, shape);
    if (st == CD_OK) st = cd_tensor_create(&out, 4, shape);
    if (st == CD_OK) st = cd_tensor_create(&sx, 5, sshape);
    if (st == CD_OK) st = cd_tensor_create(&sf, 5, sshape);
    if (st == CD_OK) st = cd_tensor_create(&fig, 4, fshape);
    if (st == CD_OK) st = cd_dataset_fill_batch(ds, split, 0, x, NULL, &filled);
    if (st == CD_OK)
        st = cd_sampler_restore(smp, x, T, rng, out, times->v, nv, NULL, sx, sf);
    for (int64_t i = 0; st == CD_OK && i < n; i++) {
        put(fig, i * cols, cd_tensor_data(x) + i * pixels, pixels);
        for (int64_t v = 0; v < nv; v++) {
            put(fig, i * cols + 1 + v, cd_tensor_data(sf) + (v * n + i) * pixels, pixels);
            put(fig, i * cols + 1 + nv + v, cd_tensor_data(sx) + (v * n + i) * pixels, pixels);
        }
        put(fig, i * cols + cols - 1, cd_tensor_data(out) + i * pixels, pixels);
    }
    if (st == CD_OK) st = cli_write_grid(path, fig, cols);
    cd_tensor_free(fig), cd_tensor_free(sf), cd_tensor_free(sx);
    cd_tensor_free(out), cd_tensor_free(x);
    cd_rng_free(rng);
    cd_sampler_free(smp);
    return st;
}

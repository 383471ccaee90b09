/*
 * train_and_sample.c - libcolddiff from C, start to finish: load MNIST,
 * split it, train a small DDPM decoder, export an inference model, load it
 * back and draw a grid of samples with DDIM.
 *
 *   train_and_sample DATA_DIR OUT_DIR [EPOCHS]
 *
 * DATA_DIR holds the four MNIST IDX files, or only the t10k pair (the
 * 1,000-image slice in tests/data), which then serves as the training pool.
 * OUT_DIR must exist; the program writes model.cdm and samples.png there.
 * Every call returns a cd_status; on failure cd_last_error() says what
 * went wrong, in one line, and the program stops there.
 */
#include <colddiff.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print the failed step with the library's message; true on failure. */
static int failed(cd_status st, const char *what)
{
    if (st == CD_OK) return 0;
    fprintf(stderr, "train_and_sample: %s: %s\n", what, cd_last_error());
    return 1;
}

static const char *join(char *buf, size_t cap, const char *dir, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

/* An IDX file of dir, raw or gzipped. */
static const char *idx_path(char *buf, size_t cap, const char *dir, const char *name)
{
    char gz[256];
    FILE *f = fopen(join(buf, cap, dir, name), "rb");
    if (f) {
        fclose(f);
        return buf;
    }
    snprintf(gz, sizeof gz, "%s.gz", name);
    return join(buf, cap, dir, gz);
}

/* The full MNIST folder, or its t10k pair alone as the training pool. */
static cd_status load_data(cd_dataset **ds, const char *dir)
{
    char images[4096], labels[4096];
    if (cd_dataset_load_mnist(ds, dir) == CD_OK) return CD_OK;
    return cd_dataset_load_idx(ds, idx_path(images, sizeof images, dir, "t10k-images-idx3-ubyte"),
                               idx_path(labels, sizeof labels, dir, "t10k-labels-idx1-ubyte"), NULL,
                               NULL);
}

/* A CNN decoder narrower than the report's, so that the demo is quick. */
static cd_status make_decoder(cd_decoder **dec, cd_rng *rng)
{
    static const int64_t hidden[] = {16, 16};
    cd_decoder_config *cfg = NULL;
    cd_status st = cd_decoder_config_create(&cfg, CD_DECODER_CNN);
    if (st == CD_OK) st = cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, hidden, 2);
    if (st == CD_OK) st = cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 5);
    if (st == CD_OK) st = cd_decoder_create(dec, cfg, rng);
    cd_decoder_config_free(cfg);
    return st;
}

/* Train: Gaussian noise on the linear schedule, Adam, checkpoints per epoch.
 * The trainer borrows the decoder and the degradation: they are freed
 * after it. */
static int train(cd_dataset *ds, cd_rng *rng, int64_t epochs, const char *out_dir,
                 const char *model_path)
{
    cd_schedule *sch = NULL;
    cd_degradation *deg = NULL;
    cd_decoder *dec = NULL;
    cd_trainer *tr = NULL;
    char last[4096];
    int bad = failed(cd_schedule_create_linear(&sch, 1000, 1e-4, 0.02), "the schedule") ||
              failed(cd_degradation_create_noise(&deg, sch), "the degradation") ||
              failed(make_decoder(&dec, rng), "the decoder") ||
              failed(cd_trainer_create(&tr, dec, deg), "the trainer");
    cd_schedule_free(sch); /* the degradation copied its arrays */
    if (!bad)
        bad = failed(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 1e-3), "the learning rate") ||
              failed(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, 64), "the batch size") ||
              failed(cd_trainer_fit(tr, ds, epochs, NULL,
                                    join(last, sizeof last, out_dir, "last.cdm"), rng, NULL, NULL),
                     "training");
    double loss = 0.0;
    if (!bad) cd_trainer_progress(tr, CD_PROGRESS_TRAIN_LOSS, &loss);
    if (!bad) printf("trained %lld epochs, last training loss %.4f\n", (long long)epochs, loss);
    /* The inference model: decoder and degradation with its schedule, no
     * optimiser state; it is what sampling needs. */
    if (!bad) bad = failed(cd_trainer_export(tr, model_path), "exporting the model");
    cd_trainer_free(tr); /* before the decoder and degradation it borrows */
    cd_decoder_free(dec);
    cd_degradation_free(deg);
    return bad;
}

/* Load the model and draw n samples with DDIM (its defaults: 50 steps,
 * eta 1, x0-hat clipped to the data range). */
static int sample(const char *model_path, const char *png, int64_t n)
{
    cd_decoder *dec = NULL;
    cd_degradation *deg = NULL;
    cd_sampler *smp = NULL;
    cd_rng *rng = NULL;
    cd_tensor *out = NULL;
    const int64_t shape[4] = {n, 1, 28, 28};
    const int bad =
        failed(cd_model_load(model_path, &dec, &deg), "loading the model") ||
        failed(cd_sampler_create(&smp, CD_SAMPLER_DDIM, deg), "the sampler") ||
        failed(cd_sampler_set_decoder(smp, dec), "the sampler's decoder") ||
        failed(cd_rng_create(&rng, 7), "the generator") ||
        failed(cd_tensor_create(&out, 4, shape), "the output") ||
        failed(cd_sampler_sample(smp, rng, out), "sampling") ||
        failed(cd_image_grid_write_png(png, out, 8, 2, 128, CD_PIXELS_RANGE, -0.5f, 0.5f),
               "the grid");
    if (!bad) printf("wrote %lld samples to %s\n", (long long)n, png);
    cd_tensor_free(out);
    cd_rng_free(rng);
    cd_sampler_free(smp);
    cd_degradation_free(deg);
    cd_decoder_free(dec);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s DATA_DIR OUT_DIR [EPOCHS]\n", argv[0]);
        return 2;
    }
    const int64_t epochs = argc == 4 ? strtoll(argv[3], NULL, 10) : 1;
    if (epochs < 1) {
        fprintf(stderr, "train_and_sample: EPOCHS must be a whole number of at least 1\n");
        return 2;
    }
    printf("libcolddiff %s\n", cd_version_string());
    cd_dataset *ds = NULL;
    cd_rng *rng = NULL;
    char model[4096], png[4096];
    join(model, sizeof model, argv[2], "model.cdm");
    join(png, sizeof png, argv[2], "samples.png");
    int bad = failed(load_data(&ds, argv[1]), "loading the data") ||
              failed(cd_dataset_split(ds, 0.1, 42), "the split") ||
              failed(cd_rng_create(&rng, 42), "the generator");
    if (!bad)
        printf("training on %lld images, validating on %lld\n",
               (long long)cd_dataset_count(ds, CD_SPLIT_TRAIN),
               (long long)cd_dataset_count(ds, CD_SPLIT_VAL));
    if (!bad) bad = train(ds, rng, epochs, argv[2], model);
    if (!bad) bad = sample(model, png, 16);
    cd_rng_free(rng);
    cd_dataset_free(ds);
    return bad ? 1 : 0;
}

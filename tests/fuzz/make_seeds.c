/*
 * make_seeds.c - writes the fuzz targets' seed corpora with the library
 * itself: `fuzz_make_seeds DIR` fills DIR/idx, DIR/png, DIR/ckpt and
 * DIR/cli (the folders must exist). The committed tests/fuzz/corpus came
 * from it.
 *
 * Every model is tiny (4 x 4 images, a few channels) so each seed stays
 * around a kilobyte. Each checkpoint is written twice: as the file and as
 * its inflated body, which fuzz_ckpt wraps in a valid header itself. The
 * PNG seeds come from the library's own writers and, for the colour types,
 * depths and interlacing those never write, from libpng.
 */
#include "diffusion/diffusion.h"
#include "nn/classifier.h"
#include "nn/nn.h"

#include <colddiff.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SIDE 4 /* image height and width */
#define N_IMAGES 8
#define T_STEPS 4

static const char *g_dir;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_make_seeds: %s: %s\n", what, cd_last_error());
    exit(1);
}

static void ok(cd_status st, const char *what)
{
    if (st != CD_OK) fail(what);
}

static const char *path_of(const char *sub, const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s/%s", g_dir, sub, name);
    return buf;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "fuzz_make_seeds: cannot write %s\n", path);
        exit(1);
    }
}

/* ---- IDX ------------------------------------------------------------------ */

static size_t idx_bytes(uint8_t *buf, uint32_t rank, const uint32_t *dims)
{
    size_t n = 4 + 4 * (size_t)rank, count = 1;
    memset(buf, 0, 4);
    buf[2] = 0x08;
    buf[3] = (uint8_t)rank;
    for (uint32_t d = 0; d < rank; d++) {
        for (int i = 0; i < 4; i++) buf[4 + 4 * d + i] = (uint8_t)(dims[d] >> (24 - 8 * i));
        count *= dims[d];
    }
    /* Labels 0..9, images a gradient: any bytes are valid pixels. */
    for (size_t i = 0; i < count; i++) buf[n + i] = (uint8_t)(rank == 1 ? i % 10 : i * 37 % 256);
    return n + count;
}

static void write_gz(const char *path, const uint8_t *data, size_t n)
{
    gzFile gz = gzopen(path, "wb9");
    if (!gz || gzwrite(gz, data, (unsigned)n) != (int)n || gzclose(gz) != Z_OK) {
        fprintf(stderr, "fuzz_make_seeds: cannot write %s\n", path);
        exit(1);
    }
}

static void idx_seeds(void)
{
    uint8_t buf[1024];
    const uint32_t images[3] = {N_IMAGES, SIDE, SIDE}, labels[1] = {N_IMAGES};
    size_t n = idx_bytes(buf, 3, images);
    write_file(path_of("idx", "images-8x4x4.idx"), buf, n);
    write_gz(path_of("idx", "images-8x4x4.idx.gz"), buf, n);
    n = idx_bytes(buf, 1, labels);
    write_file(path_of("idx", "labels-8.idx"), buf, n);
    write_gz(path_of("idx", "labels-8.idx.gz"), buf, n);
    const uint32_t wide[3] = {2, 3, 20};
    n = idx_bytes(buf, 3, wide);
    write_file(path_of("idx", "images-2x3x20.idx"), buf, n);
}

/* ---- PNG ------------------------------------------------------------------ */

/* A PNG through libpng, with samples that are any bytes (every value is a
 * valid sample, a palette index included when the palette has 2^depth
 * entries). */
static void libpng_seed(const char *name, int color_type, int depth, int interlace, bool trns)
{
    const char *path = path_of("png", name);
    FILE *fp = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!fp || !info) {
        fprintf(stderr, "fuzz_make_seeds: cannot write %s\n", path);
        exit(1);
    }
    if (setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "fuzz_make_seeds: libpng failed writing %s\n", path);
        exit(1);
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, SIDE + 1, SIDE, depth, color_type, interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_color palette[16];
    png_byte alpha[16];
    for (int i = 0; i < 16; i++) {
        palette[i] = (png_color){(png_byte)(16 * i), (png_byte)(255 - 16 * i), (png_byte)(7 * i)};
        alpha[i] = (png_byte)(255 - 16 * i);
    }
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_PLTE(png, info, palette, 1 << depth);
    if (trns && color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_tRNS(png, info, alpha, 1 << depth, NULL);
    if (trns && color_type != PNG_COLOR_TYPE_PALETTE) {
        png_color_16 key = {0, 7, 7, 7, 7};
        png_set_tRNS(png, info, NULL, 0, &key);
    }
    png_write_info(png, info);
    png_byte rows[SIDE][64];
    png_bytep rp[SIDE];
    for (int y = 0; y < SIDE; y++) {
        for (int x = 0; x < 64; x++) rows[y][x] = (png_byte)(37 * y + 11 * x);
        rp[y] = rows[y];
    }
    png_write_image(png, rp);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(fp) != 0) {
        fprintf(stderr, "fuzz_make_seeds: cannot write %s\n", path);
        exit(1);
    }
}

static void png_seeds(void)
{
    uint8_t grey[SIDE * SIDE];
    for (int i = 0; i < SIDE * SIDE; i++) grey[i] = (uint8_t)(i * 37 % 256);
    ok(cd_png_write_gray(path_of("png", "grey-4x4.png"), grey, SIDE, SIDE), "grey PNG");
    /* An RGB image the grid writer lays out on its own: one image, no border. */
    const int64_t shape[4] = {1, 3, SIDE, SIDE + 1};
    cd_tensor *rgb = NULL;
    ok(cd_tensor_create(&rgb, 4, shape), "RGB image");
    float *v = cd_tensor_data(rgb);
    for (int64_t i = 0; i < cd_tensor_numel(rgb); i++) v[i] = (float)(i * 29 % 256) / 255.0f - 0.5f;
    ok(cd_image_grid_write_png(path_of("png", "rgb-4x5.png"), rgb, 1, 0, 0, CD_PIXELS_RANGE, -0.5f,
                               0.5f),
       "RGB PNG");
    cd_tensor_free(rgb);
    libpng_seed("palette-4bit-trns.png", PNG_COLOR_TYPE_PALETTE, 4, PNG_INTERLACE_NONE, true);
    libpng_seed("grey-1bit.png", PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, false);
    libpng_seed("grey-alpha-16bit-adam7.png", PNG_COLOR_TYPE_GRAY_ALPHA, 16, PNG_INTERLACE_ADAM7,
                false);
    libpng_seed("rgba-8bit.png", PNG_COLOR_TYPE_RGB_ALPHA, 8, PNG_INTERLACE_NONE, false);
    libpng_seed("rgb-16bit-trns-adam7.png", PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_ADAM7, true);
}

/* ---- checkpoints ---------------------------------------------------------- */

/* Also write path's inflated body as <name>.body. */
static void write_body_of(const char *name)
{
    char src[4096];
    snprintf(src, sizeof src, "%s", path_of("ckpt", name));
    FILE *f = fopen(src, "rb");
    static uint8_t file[1 << 20], body[1 << 22];
    size_t n = f ? fread(file, 1, sizeof file, f) : 0;
    if (f) fclose(f);
    if (n < 56) {
        fprintf(stderr, "fuzz_make_seeds: cannot read %s\n", src);
        exit(1);
    }
    uLongf len = sizeof body;
    if (uncompress(body, &len, file + 56, (uLong)(n - 56)) != Z_OK) {
        fprintf(stderr, "fuzz_make_seeds: cannot inflate %s\n", src);
        exit(1);
    }
    char dst[300];
    snprintf(dst, sizeof dst, "%.*s.body", (int)(strlen(name) - 4), name);
    write_file(path_of("ckpt", dst), body, len);
}

static cd_decoder *tiny_decoder(cd_decoder_kind type, cd_rng *rng)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL;
    ok(cd_decoder_config_create(&cfg, type), "decoder config");
    if (type == CD_DECODER_CNN) {
        const int64_t hidden[2] = {2, 2};
        ok(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEIGHT, SIDE), "height");
        ok(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_WIDTH, SIDE), "width");
        ok(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, hidden, 2), "hidden");
        ok(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 3), "kernel");
        ok(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_FREQS, 2), "time freqs");
        ok(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_HIDDEN, 4), "time hidden");
        ok(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_LAYERS, 1), "time layers");
    } else {
        const int64_t mults[2] = {1, 1};
        ok(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, 4), "dim");
        ok(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, mults, 2), "mults");
        ok(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEADS, 1), "heads");
        ok(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEAD_DIM, 2), "head dim");
        ok(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CONVNEXT_MULT, 1), "convnext mult");
    }
    ok(cd_decoder_create(&d, cfg, rng), "decoder");
    cd_decoder_config_free(cfg);
    return d;
}

static void decoder_seeds(cd_rng *rng)
{
    cd_decoder *d = tiny_decoder(CD_DECODER_CNN, rng);
    ok(cd_decoder_save(d, path_of("ckpt", "decoder-cnn.cdm")), "saving");
    cd_decoder_free(d);
    write_body_of("decoder-cnn.cdm");
    d = tiny_decoder(CD_DECODER_UNET, rng);
    ok(cd_decoder_save(d, path_of("ckpt", "decoder-unet.cdm")), "saving");
    cd_decoder_free(d);
    write_body_of("decoder-unet.cdm");
}

static cd_degradation *degradation(cd_degradation_kind kind, cd_dataset *ds)
{
    cd_schedule *s = NULL;
    cd_degradation *deg = NULL;
    ok(cd_schedule_create_linear(&s, T_STEPS, 1e-4, 0.02), "schedule");
    switch (kind) {
    case CD_DEGRADATION_INVALID: break;
    case CD_DEGRADATION_NOISE: ok(cd_degradation_create_noise(&deg, s), "noise"); break;
    case CD_DEGRADATION_BLUR:
        ok(cd_degradation_create_blur(&deg, s, 3, CD_PADDING_CIRCULAR), "blur");
        break;
    case CD_DEGRADATION_PIXELATE: ok(cd_degradation_create_pixelate(&deg, s), "pixelate"); break;
    case CD_DEGRADATION_MASK: ok(cd_degradation_create_mask(&deg, s, 1.5), "mask"); break;
    case CD_DEGRADATION_FADE: {
        const int64_t shape[3] = {1, SIDE, SIDE};
        cd_tensor *mean = NULL;
        ok(cd_tensor_create(&mean, 3, shape), "mean image");
        ok(cd_dataset_mean_image(ds, CD_SPLIT_TRAIN, mean), "mean image");
        ok(cd_degradation_create_fade(&deg, s, mean), "fade");
        cd_tensor_free(mean);
        break;
    }
    }
    cd_schedule_free(s);
    return deg;
}

/* A trainer fitted for a batch or an epoch, so its file holds Adam's
 * moments, the EMA, generator states and the epoch loop's position. */
static void trainer_seed(const char *name, cd_decoder_kind type, cd_degradation_kind kind,
                         cd_dataset *ds, cd_rng *rng, bool open_epoch)
{
    cd_trainer *tr = NULL;
    cd_decoder *dec = tiny_decoder(type, rng);
    cd_degradation *deg = degradation(kind, ds);
    ok(cd_trainer_create(&tr, dec, deg), "trainer"); /* borrows both */
    ok(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, 4), "batch");
    ok(cd_trainer_set_real(tr, CD_TRAINER_OPT_EMA_DECAY, 0.9), "ema");
    const char *path = path_of("ckpt", name);
    if (open_epoch) {
        /* Stopped after one batch: the file holds the open epoch's order. */
        cd__trainer_stop_after(tr, 1);
        if (cd_trainer_fit(tr, ds, 1, NULL, path, rng, NULL, NULL) != CD_ERR_CANCELLED)
            fail("a stopped fit");
    } else {
        ok(cd_trainer_fit(tr, ds, 1, NULL, path, rng, NULL, NULL), "fit");
    }
    cd_trainer_free(tr);
    cd_decoder_free(dec);
    cd_degradation_free(deg);
    write_body_of(name);
}

/* The inference model of a trainer's file with float16 weights: the one
 * writer of TENS dtype 2. */
static void half_model_seed(const char *from, const char *name)
{
    cd_decoder *dec = NULL;
    cd_degradation *deg = NULL;
    ok(cd_model_load(path_of("ckpt", from), &dec, &deg), "loading a model");
    ok(cd_model_save_as(path_of("ckpt", name), dec, deg, CD_WEIGHTS_FLOAT16), "saving");
    cd_decoder_free(dec);
    cd_degradation_free(deg);
    write_body_of(name);
}

static void classifier_seed(cd_rng *rng)
{
    const cd__classifier_cfg cfg = {SIDE, SIDE, {1, 2, 1}, 2, 3};
    cd_classifier *c = NULL;
    ok(cd__classifier_create_cfg(&c, &cfg, rng), "classifier");
    ok(cd_classifier_save(c, path_of("ckpt", "classifier.cdm")), "saving");
    cd_classifier_free(c);
    write_body_of("classifier.cdm");
}

/* Every entry type, metadata, counters and a generator state, around one
 * small tensor with Adam's state: the sections no model writes all at once. */
static void generic_seed(cd_rng *rng)
{
    cd__ckpt *ck = NULL;
    cd_params *p = NULL;
    cd__adam *adam = NULL;
    const int64_t shape[2] = {2, 3};
    const float f[3] = {0.5f, -1.0f, 2.0f};
    const int64_t l[2] = {7, -7};
    ok(cd__ckpt_create(&ck), "ckpt");
    ok(cd__ckpt_set_i64(ck, "an.int", 42), "i64");
    ok(cd__ckpt_set_f64(ck, "a.double", 0.25), "f64");
    ok(cd__ckpt_set_str(ck, "a.string", "text"), "str");
    ok(cd__ckpt_set_f32_array(ck, "floats", f, 3), "f32 array");
    ok(cd__ckpt_set_i64_array(ck, "ints", l, 2), "i64 array");
    ok(cd__ckpt_set_meta(ck, "written.by", "fuzz_make_seeds"), "meta");
    ok(cd__ckpt_set_counters(ck, 3, 1), "counters");
    ok(cd__ckpt_set_rng(ck, "train", rng), "rng");
    ok(cd_params_create(&p), "params");
    ok(cd_params_add(p, "w", 2, shape), "param");
    ok(cd__adam_create(&adam, p), "adam");
    ok(cd__adam_set(adam, CD__ADAM_EMA_DECAY, 0.5), "ema");
    ok(cd__ckpt_save(ck, path_of("ckpt", "generic.cdm"), p, adam), "saving");
    cd__adam_free(adam);
    cd_params_free(p);
    cd__ckpt_free(ck);
    write_body_of("generic.cdm");
}

static void ckpt_seeds(void)
{
    cd_rng *rng = NULL;
    cd_dataset *ds = NULL;
    ok(cd_rng_create(&rng, 1), "rng");
    char images[4096];
    snprintf(images, sizeof images, "%s", path_of("idx", "images-8x4x4.idx"));
    ok(cd_dataset_load_idx(&ds, images, path_of("idx", "labels-8.idx"), NULL, NULL), "dataset");
    ok(cd_dataset_split(ds, 0.25, 1), "split");
    decoder_seeds(rng);
    trainer_seed("trainer-noise-cnn.cdm", CD_DECODER_CNN, CD_DEGRADATION_NOISE, ds, rng, false);
    trainer_seed("trainer-blur.cdm", CD_DECODER_CNN, CD_DEGRADATION_BLUR, ds, rng, false);
    half_model_seed("trainer-noise-cnn.cdm", "model-float16.cdm");
    trainer_seed("trainer-pixelate-open.cdm", CD_DECODER_CNN, CD_DEGRADATION_PIXELATE, ds, rng,
                 true);
    trainer_seed("trainer-mask.cdm", CD_DECODER_CNN, CD_DEGRADATION_MASK, ds, rng, false);
    trainer_seed("trainer-fade.cdm", CD_DECODER_CNN, CD_DEGRADATION_FADE, ds, rng, false);
    classifier_seed(rng);
    generic_seed(rng);
    cd_dataset_free(ds);
    cd_rng_free(rng);
}

/* ---- command lines -------------------------------------------------------- */

/* Words separated by '|' become NUL-separated: fuzz_cli's argv. */
static void cli_seed(const char *name, const char *words)
{
    char buf[1024];
    size_t n = strlen(words);
    memcpy(buf, words, n);
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '|') buf[i] = '\0';
    write_file(path_of("cli", name), buf, n);
}

static void cli_seeds(void)
{
    cli_seed("train-preset", "train|--data|data/mnist|--out|runs/blur|--preset|cold-blur-unet|"
                             "--epochs|3|--resume|--threads|2");
    cli_seed("train-flags", "train|--data|tests/data|--out|r|--decoder|unet|--degradation|"
                            "fade|--schedule|cosine|--T|200|--beta-clip|0.9|--cosine-s|0.01|"
                            "--t-max|150|--t-per-batch|--unet-dim|8|--batch|32|--lr|1e-3|"
                            "--val-fraction|0.1|--seed|7|--ema|0.995|--clip-norm|1.0");
    cli_seed("train-cnn", "train|--data|d|--out|o|--cnn-hidden|8,16,8|--degradation|blur|"
                          "--kernel|5|--padding|circular|--beta|1|--schedule|constant|"
                          "--sample-epochs|1,2,3|--n-samples|16|--grid-sampler|ddim|"
                          "--grid-steps|50|--grid-eta|1|--grid-clip|--restore-times|0,10,20|"
                          "--train-limit|64|--edge-width|2.5|--beta-min|1e-4|--beta-max|0.02");
    cli_seed("sample", "sample|--checkpoint|run/best.cdm|--out|s.png|--n|16|--cols|4|"
                       "--sampler|ddim|--steps|50|--eta|1|--clip|--ema|--seed|3");
    cli_seed("restore", "restore|--checkpoint|c.cdm|--data|d|--out|r.png|--n|4|--times|1,5,10|"
                        "--split|val|--sampler|cold2|--threads|1");
    cli_seed("eval", "eval|--checkpoint|c.cdm|--data|d|--n|100|--fd-samples|100|--reduction|"
                     "report|--classifier|cls.cdm|--json|m.json|--sampler|ddpm|--seed|2");
    cli_seed("reproduce", "reproduce|--data|d|--out|rep|--budget|smoke|--threads|2");
    cli_seed("train-classifier", "train-classifier|--data|d|--out|c.cdm|--epochs|2|--batch|64|"
                                 "--lr|0.001|--max-shift|2|--seed|42");
    cli_seed("schedule", "schedule|--out|a.svg|--preset|ddpm-cnn-linear|--compare|--log|"
                         "--schedule|constant-report|--T|100|--beta|0.1");
    cli_seed("info", "info|run/last.cdm");
    cli_seed("grid", "grid|--images|i.idx|--labels|l.idx|--out|g.png|--split|train|--n|16|"
                     "--cols|4|--seed|5|--map|percentile");
    cli_seed("fetch", "fetch-mnist|--dir|data/mnist");
    cli_seed("help", "sample|--help");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_make_seeds DIR (with DIR/idx, DIR/png, DIR/ckpt, DIR/cli)\n");
        return 2;
    }
    g_dir = argv[1];
    cd_set_num_threads(1);
    idx_seeds();
    png_seeds();
    ckpt_seeds();
    cli_seeds();
    return 0;
}

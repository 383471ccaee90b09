/*
 * cmd_sample.c - colddiff sample and colddiff restore: sample grids
 * (unconditional, or of a class-conditional model's classes) and the
 * report's restoration figure from a model file (an
 * inference model or a training checkpoint).
 */
#include "cli_gen.h"

#include <math.h>
#include <string.h>

const cli_opt *cli_sampler_opts(cli_sampling *s, int64_t *seed, bool flags[3])
{
    static cli_opt opts[CLI_SAMPLER_OPTS];
    const cli_opt o[CLI_SAMPLER_OPTS] = {
        {"--sampler", OPT_CHOICE, &s->kind, 0, 0, cli_sampler_names,
         "reverse chain (auto: ddim for noise models, cold2 otherwise)", NULL},
        {"--steps", OPT_I64, &s->steps, 0, 100000, NULL, "DDIM steps (0: 50, or T if smaller)",
         NULL},
        {"--eta", OPT_F64, &s->eta, 0, 1, NULL, "DDIM eta (1)", NULL},
        {"--seed", OPT_I64, seed, 0, (double)INT64_MAX, NULL, "sampling seed (1)", NULL},
        {"--no-clip", OPT_FLAG, &flags[0], 0, 0, NULL,
         "DDIM: do not clip x0-hat to the data range [-0.5, 0.5]", NULL},
        {"--clip", OPT_FLAG, &flags[1], 0, 0, NULL, "(the default now; accepted, does nothing)",
         NULL},
        {"--no-ema", OPT_FLAG, &flags[2], 0, 0, NULL,
         "a training checkpoint's current weights, not its EMA", NULL},
        {"--ema", OPT_FLAG, &s->ema, 0, 0, NULL,
         "(the default now: a checkpoint's EMA weights, when it has them)", NULL},
    };
    memcpy(opts, o, sizeof o);
    return opts;
}

const cli_opt *cli_class_opts(cli_sampling *s)
{
    static cli_opt opts[CLI_CLASS_OPTS];
    const cli_opt o[CLI_CLASS_OPTS] = {
        {"--class", OPT_I64, &s->cls, -1, 65535, NULL,
         "class of every sample, for a class-conditional model (-1: none, the 'no class' "
         "label; by default one class per grid row)",
         NULL},
        {"--class-rows", OPT_FLAG, &s->class_rows, 0, 0, NULL,
         "one class per grid row: 0, 1, ..., K-1, 0, ... (a class-conditional model's default)",
         NULL},
        {"--guidance", OPT_F64, &s->guidance, 0, 100, NULL,
         "classifier-free guidance w: 0 unconditional, 1 plain conditional, more is "
         "stronger (1)",
         NULL},
    };
    memcpy(opts, o, sizeof o);
    return opts;
}

void cli_sampler_finish(cli_sampling *s, int64_t seed, const bool flags[3])
{
    s->seed = (uint64_t)seed;
    s->clip = !flags[0];
    s->ema = !flags[2];
}

/* --class left out: the model decides (see cmd_sample). */
#define CLASS_NOT_GIVEN (-2)

int cmd_sample(int argc, char **argv)
{
    const char *ckpt = NULL, *out = NULL;
    int64_t n = 0, cols = 8, seed = 1, threads = 0;
    int map = 0;
    cli_sampling s = CLI_SAMPLING_DEFAULTS;
    s.cls = CLASS_NOT_GIVEN;
    bool flags[3] = {false, false, false};
    const cli_opt *so = cli_sampler_opts(&s, &seed, flags), *co = cli_class_opts(&s);
    const cli_opt opts[] = {
        {"--checkpoint", OPT_STR, &ckpt, 0, 0, NULL,
         "a model: inference file or training checkpoint (default: the shipped pretrained MNIST model)",
         NULL},
        {"--out", OPT_STR, &out, 0, 0, NULL, "the PNG grid to write", NULL},
        co[0],
        co[1],
        co[2],
        {"--n", OPT_I64, &n, 1, 100000, NULL,
         "number of samples (64, or a row of --cols per class for a class-conditional model)",
         NULL},
        {"--cols", OPT_I64, &cols, 1, 1000, NULL, "grid columns (8)", NULL},
        {"--map", OPT_CHOICE, &map, 0, 0, cli_map_names, CLI_MAP_HELP, NULL},
        {"--threads", OPT_I64, &threads, 1, 256, NULL, "worker threads (all cores)", NULL},
        so[0],
        so[1],
        so[2],
        so[3],
        so[4],
        so[5],
        so[6],
        so[7],
    };
    const cli_command cmd = {"sample",
                             "--out grid.png [--checkpoint F] [options]",
                             "Draw samples from the degradation's prior and write a grid; "
                             "of chosen classes with a class-conditional model.",
                             opts,
                             (int)(sizeof opts / sizeof opts[0]),
                             NULL,
                             NULL};
    const int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!out) return cli_usage("sample", "--out is required");
    if (s.class_rows && s.cls >= 0)
        return cli_usage("sample", "--class and --class-rows exclude each other");
    if (cli_check_only) return CLI_OK;
    if (threads > 0 && cd_set_num_threads(threads) != CD_OK) return cli_fail("--threads");
    if (cli_output_ok("sample", "the grid", out, false) != CLI_OK) return CLI_FAIL;
    cli_sampler_finish(&s, seed, flags);
    s.range_map = map == 1;
    cli_loaded m;
    if (cli_load_model(ckpt, false, s.ema, &m) != CD_OK) return CLI_FAIL;
    /* A class-conditional model draws the classes in turn unless told
     * otherwise, as the training grids and colddiff eval do: its "no class"
     * label saw only the dropped-out share of the training. */
    const int64_t K = cd_decoder_class_count(m.dec);
    if (s.cls == CLASS_NOT_GIVEN) {
        s.cls = -1;
        s.class_rows = s.class_rows || K > 0;
    }
    if (n == 0) n = cli_grid_count(m.dec, &s, cols, 100000, 64);
    if (cli_check_class(m.dec, &s, "sample") != CLI_OK) {
        cli_loaded_free(&m);
        return CLI_USAGE;
    }
    char label[64];
    snprintf(label, sizeof label, "sampling %lld images", (long long)n);
    cli_progress_begin(label);
    const cd_status st = cli_model_sample_grid(m.dec, m.deg, &s, n, cols, out);
    const int ret = st != CD_OK ? cli_fail_or_interrupted("sampling") : CLI_OK;
    cli_progress_end();
    cli_loaded_free(&m);
    if (ret != CLI_OK) return ret;
    char which[96] = "";
    if (K > 0 && s.cls >= 0)
        snprintf(which, sizeof which, " (class %lld)", (long long)s.cls);
    else if (K > 0 && s.class_rows)
        snprintf(which, sizeof which, " (classes 0..%lld, one per row)", (long long)K - 1);
    else if (K > 0)
        snprintf(which, sizeof which, " (no class)");
    printf("colddiff: wrote %lld samples to %s%s\n", (long long)n, out, which);
    return CLI_OK;
}

int cmd_restore(int argc, char **argv)
{
    const char *ckpt = NULL, *out = NULL, *data = NULL;
    int64_t n = 8, seed = 1, threads = 0;
    int split = 2, map = 0;
    bool split_given = false;
    static const char *const splits[] = {"train", "val", "test", NULL};
    cli_times times = {0, {0}};
    cli_sampling s = CLI_SAMPLING_DEFAULTS;
    bool flags[3] = {false, false, false};
    const cli_opt *so = cli_sampler_opts(&s, &seed, flags);
    const cli_opt opts[] = {
        {"--checkpoint", OPT_STR, &ckpt, 0, 0, NULL,
         "a model: inference file or training checkpoint (default: the shipped pretrained MNIST model)",
         NULL},
        {"--data", OPT_STR, &data, 0, 0, NULL, "MNIST folder, or a folder of PNG images", NULL},
        {"--out", OPT_STR, &out, 0, 0, NULL, "the PNG figure to write", NULL},
        CLI_DATA_SHAPE_OPTS,
        {"--n", OPT_I64, &n, 1, 1000, NULL, "images (rows) to restore (8)", NULL},
        {"--times", OPT_TIMES, &times, 0, 100000, NULL, "snapshot times (T/10,T/2,T)", NULL},
        {"--split", OPT_CHOICE, &split, 0, 0, splits,
         "where the images come from (test; without one, val: the images the run held out)",
         &split_given},
        {"--map", OPT_CHOICE, &map, 0, 0, cli_map_names, CLI_MAP_HELP, NULL},
        {"--threads", OPT_I64, &threads, 1, 256, NULL, "worker threads (all cores)", NULL},
        so[0],
        so[1],
        so[2],
        so[3],
        so[4],
        so[5],
        so[6],
        so[7],
    };
    const cli_command cmd = {"restore",
                             "--data D --out fig.png [--checkpoint F] [options]",
                             "Degrade real images to T and restore them. Each row shows x, "
                             "D(x, t) at each\ntime, x-hat at each time, and the final "
                             "restoration (the report's Figures 2 and 8).",
                             opts,
                             (int)(sizeof opts / sizeof opts[0]),
                             NULL,
                             NULL};
    const int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!out || !data) return cli_usage("restore", "--data and --out are required");
    if (cli_check_only) return CLI_OK;
    if (threads > 0 && cd_set_num_threads(threads) != CD_OK) return cli_fail("--threads");
    if (cli_output_ok("restore", "the figure", out, false) != CLI_OK) return CLI_FAIL;
    cli_sampler_finish(&s, seed, flags);
    s.range_map = map == 1;
    cli_loaded m;
    cd_dataset *ds = NULL;
    if (cli_load_model(ckpt, false, s.ema, &m) != CD_OK) return CLI_FAIL;
    const int64_t T = cd_degradation_T(m.deg);
    if (times.n == 0) times = cli_default_times(T);
    for (int64_t i = 0; i < times.n; i++)
        if (times.v[i] > T) {
            cli_loaded_free(&m);
            return cli_usage("restore", "--times: %lld exceeds the model's T = %lld",
                             (long long)times.v[i], (long long)T);
        }
    int ret = CLI_OK;
    cli_holdout held;
    cli_holdout_of(ckpt, &held);
    const bool loaded = cli_load_data(&ds, data, held.fraction, (uint64_t)held.seed) == CD_OK;
    if (loaded && !split_given) split = (int)cli_default_split(ds, data, &held);
    if (!loaded) {
        ret = cli_fail("loading the data");
    } else if (cd_dataset_count(ds, (cd_split)split) < n) {
        fprintf(stderr,
                "colddiff: the %s split has %lld images, fewer than the %lld asked for (--n)\n",
                splits[split], (long long)cd_dataset_count(ds, (cd_split)split), (long long)n);
        ret = CLI_FAIL;
    } else {
        char label[64];
        snprintf(label, sizeof label, "restoring %lld images", (long long)n);
        cli_progress_begin(label);
        if (cli_model_restore_figure(m.dec, m.deg, &s, ds, (cd_split)split, n, &times, out) !=
            CD_OK)
            ret = cli_fail_or_interrupted("restoring");
        cli_progress_end();
        if (ret == CLI_OK) printf("colddiff: wrote %lld restorations to %s\n", (long long)n, out);
    }
    cd_dataset_free(ds);
    cli_loaded_free(&m);
    return ret;
}

/*
 * cmd_sample.c - colddiff sample and colddiff restore: unconditional sample
 * grids and the report's restoration figure from a checkpoint.
 */
#include "cli_gen.h"

#include <string.h>

static const cli_opt *sampler_opts(cli_sampling *s, int64_t *seed)
{
    static cli_opt opts[6];
    const cli_opt o[6] = {
        {"--sampler", OPT_CHOICE, &s->kind, 0, 0, cli_sampler_names,
         "reverse chain (auto: ddpm for noise models, cold2 otherwise)", NULL},
        {"--steps", OPT_I64, &s->steps, 0, 100000, NULL, "DDIM steps (0: T)", NULL},
        {"--eta", OPT_F64, &s->eta, 0, 1, NULL, "DDIM eta (0)", NULL},
        {"--seed", OPT_I64, seed, 0, (double)INT64_MAX, NULL, "sampling seed (1)", NULL},
        {"--clip", OPT_FLAG, &s->clip, 0, 0, NULL, "DDIM: clip x0-hat to [-0.5, 0.5]", NULL},
        {"--ema", OPT_FLAG, &s->ema, 0, 0, NULL, "use the checkpoint's EMA weights", NULL},
    };
    memcpy(opts, o, sizeof o);
    return opts;
}

int cmd_sample(int argc, char **argv)
{
    const char *ckpt = NULL, *out = NULL;
    int64_t n = 64, cols = 8, seed = 1, threads = 0;
    cli_sampling s = {SMP_AUTO, 0, 0.0, 1, false, false};
    const cli_opt *so = sampler_opts(&s, &seed);
    const cli_opt opts[] = {
        {"--checkpoint", OPT_STR, &ckpt, 0, 0, NULL, "a trained model (RUN/best.cdm)", NULL},
        {"--out", OPT_STR, &out, 0, 0, NULL, "the PNG grid to write", NULL},
        {"--n", OPT_I64, &n, 1, 100000, NULL, "number of samples (64)", NULL},
        {"--cols", OPT_I64, &cols, 1, 1000, NULL, "grid columns (8)", NULL},
        {"--threads", OPT_I64, &threads, 1, 256, NULL, "worker threads (all cores)", NULL},
        so[0], so[1], so[2], so[3], so[4], so[5],
    };
    const cli_command cmd = {"sample", "--checkpoint F --out grid.png [options]",
                             "Draw unconditional samples from the degradation's prior and "
                             "write a grid.", opts, (int)(sizeof opts / sizeof opts[0]), NULL,
                             NULL};
    const int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!ckpt || !out) return cli_usage("sample", "--checkpoint and --out are required");
    if (cli_check_only) return CLI_OK;
    if (threads > 0 && cd_set_num_threads((int32_t)threads) != CD_OK) return cli_fail("--threads");
    if (cli_output_ok("sample", "the grid", out, false) != CLI_OK) return CLI_FAIL;
    s.seed = (uint64_t)seed;
    cd_trainer *tr = NULL;
    if (cli_load_model(&tr, ckpt, &s) != CD_OK) return CLI_FAIL;
    const cd_status st = cli_sample_grid(tr, &s, n, cols, out);
    cd_trainer_free(tr);
    if (st != CD_OK) return cli_fail("sampling");
    printf("colddiff: wrote %lld samples to %s\n", (long long)n, out);
    return CLI_OK;
}

int cmd_restore(int argc, char **argv)
{
    const char *ckpt = NULL, *out = NULL, *data = NULL;
    int64_t n = 8, seed = 1, threads = 0;
    int split = 2;
    static const char *const splits[] = {"train", "val", "test", NULL};
    cli_times times = {0, {0}};
    cli_sampling s = {SMP_AUTO, 0, 0.0, 1, false, false};
    const cli_opt *so = sampler_opts(&s, &seed);
    const cli_opt opts[] = {
        {"--checkpoint", OPT_STR, &ckpt, 0, 0, NULL, "a trained model (RUN/best.cdm)", NULL},
        {"--data", OPT_STR, &data, 0, 0, NULL, "MNIST folder", NULL},
        {"--out", OPT_STR, &out, 0, 0, NULL, "the PNG figure to write", NULL},
        {"--n", OPT_I64, &n, 1, 1000, NULL, "images (rows) to restore (8)", NULL},
        {"--times", OPT_TIMES, &times, 0, 100000, NULL, "snapshot times (T/10,T/2,T)", NULL},
        {"--split", OPT_CHOICE, &split, 0, 0, splits, "where the images come from (test)", NULL},
        {"--threads", OPT_I64, &threads, 1, 256, NULL, "worker threads (all cores)", NULL},
        so[0], so[1], so[2], so[3], so[4], so[5],
    };
    const cli_command cmd = {"restore", "--checkpoint F --data D --out fig.png [options]",
                             "Degrade real images to T and restore them. Each row shows x, "
                             "D(x, t) at each\ntime, x-hat at each time, and the final "
                             "restoration (the report's Figures 2 and 8).",
                             opts, (int)(sizeof opts / sizeof opts[0]), NULL, NULL};
    const int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!ckpt || !out || !data)
        return cli_usage("restore", "--checkpoint, --data and --out are required");
    if (cli_check_only) return CLI_OK;
    if (threads > 0 && cd_set_num_threads((int32_t)threads) != CD_OK) return cli_fail("--threads");
    if (cli_output_ok("restore", "the figure", out, false) != CLI_OK) return CLI_FAIL;
    s.seed = (uint64_t)seed;
    cd_trainer *tr = NULL;
    cd_dataset *ds = NULL;
    if (cli_load_model(&tr, ckpt, &s) != CD_OK) return CLI_FAIL;
    const int64_t T = cd_degradation_T(cd_trainer_degradation(tr));
    if (times.n == 0) times = cli_default_times(T);
    for (int64_t i = 0; i < times.n; i++)
        if (times.v[i] > T) {
            cd_trainer_free(tr);
            return cli_usage("restore", "--times: %lld exceeds the model's T = %lld",
                             (long long)times.v[i], (long long)T);
        }
    int ret = CLI_OK;
    if (cli_load_data(&ds, data, 0.2, 42) != CD_OK) {
        ret = cli_fail("loading the data");
    } else if (cd_dataset_count(ds, (cd_split)split) < n) {
        fprintf(stderr, "colddiff: the %s split has fewer than %lld images\n", splits[split],
                (long long)n);
        ret = CLI_FAIL;
    } else if (cli_restore_figure(tr, &s, ds, (cd_split)split, n, &times, out) != CD_OK) {
        ret = cli_fail("restoring");
    } else {
        printf("colddiff: wrote %lld restorations to %s\n", (long long)n, out);
    }
    cd_dataset_free(ds);
    cd_trainer_free(tr);
    return ret;
}

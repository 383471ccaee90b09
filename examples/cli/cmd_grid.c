/*
 * cmd_grid.c - colddiff grid: a PNG grid of dataset images.
 */
#include "cli.h"

int cmd_grid(int argc, char **argv)
{
    const char *data = NULL, *images = NULL, *labels = NULL, *out = NULL;
    int64_t n = 64, cols = 8, seed = 0;
    int split = 2, map = 0;
    bool split_given = false;
    static const char *const splits[] = {"train", "val", "test", NULL};
    static const char *const maps[] = {"range", "percentile", NULL};
    const cli_opt opts[] = {
        {"--data", OPT_STR, &data, 0, 0, NULL,
         "MNIST folder (the four IDX files, raw or .gz), or a folder of PNG images", NULL},
        CLI_DATA_SHAPE_OPTS,
        {"--images", OPT_STR, &images, 0, 0, NULL, "an IDX image file instead of --data", NULL},
        {"--labels", OPT_STR, &labels, 0, 0, NULL, "its IDX label file", NULL},
        {"--split", OPT_CHOICE, &split, 0, 0, splits,
         "which split (test; val for data without a test split)", &split_given},
        {"--n", OPT_I64, &n, 1, 100000, NULL, "number of images (64)", NULL},
        {"--cols", OPT_I64, &cols, 1, 1000, NULL, "grid columns (8)", NULL},
        {"--seed", OPT_I64, &seed, 0, (double)INT64_MAX, NULL,
         "shuffle seed; 0 keeps the split's order (0)", NULL},
        {"--map", OPT_CHOICE, &map, 0, 0, maps, "pixel mapping: fixed [-0.5, 0.5] or percentiles",
         NULL},
        {"--out", OPT_STR, &out, 0, 0, NULL, "the PNG to write (required)", NULL},
    };
    const cli_command cmd = {"grid",
                             "(--data DIR | --images F --labels F) --out FILE.png",
                             "Write a PNG grid of dataset images (split seed 42, 80/20).",
                             opts,
                             (int)(sizeof opts / sizeof opts[0]),
                             NULL,
                             NULL};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!out) return cli_usage("grid", "--out FILE.png is required");
    if (!data == !images) return cli_usage("grid", "give exactly one of --data or --images");
    if (images && !labels) return cli_usage("grid", "--images needs --labels too");
    if (cli_check_only) return CLI_OK;
    if (cli_output_ok("grid", "the grid", out, false) != CLI_OK) return CLI_FAIL;

    cd_dataset *ds = NULL;
    cd_tensor *batch = NULL;
    cd_rng *rng = NULL;
    int64_t filled = 0;
    rc = CLI_FAIL;
    const cd_status st = data ? cli_load_data(&ds, data, 0.2, 42)
                              : cd_dataset_load_idx(&ds, images, labels, images, labels);
    cli_holdout held;
    cli_holdout_of(NULL, &held);
    if (st == CD_OK && data && !split_given) split = (int)cli_default_split(ds, data, &held);
    if (st != CD_OK) {
        cli_fail("loading the data");
    } else if (!data && cd_dataset_split(ds, 0.2, 42) != CD_OK) {
        cli_fail("splitting");
    } else if (cd_dataset_count(ds, (cd_split)split) < 1) {
        fprintf(stderr, "colddiff: the %s split is empty\n", splits[split]);
    } else {
        const int64_t count = cd_dataset_count(ds, (cd_split)split);
        const int64_t shape[4] = {n < count ? n : count, cd_dataset_channels(ds),
                                  cd_dataset_height(ds), cd_dataset_width(ds)};
        if (cd_tensor_create(&batch, 4, shape) != CD_OK)
            cli_fail("allocating");
        else if (seed && (cd_rng_create(&rng, (uint64_t)seed) != CD_OK ||
                          cd_dataset_shuffle(ds, (cd_split)split, rng) != CD_OK))
            cli_fail("shuffling");
        else if (cd_dataset_fill_batch(ds, (cd_split)split, 0, batch, NULL, &filled) != CD_OK)
            cli_fail("reading images");
        else if (cd_image_grid_write_png(out, batch, cols, 2, 128,
                                         map ? CD_PIXELS_PERCENTILE : CD_PIXELS_RANGE, -0.5f,
                                         0.5f) != CD_OK)
            cli_fail("writing the grid");
        else {
            printf("colddiff: wrote %lld images to %s\n", (long long)filled, out);
            rc = CLI_OK;
        }
    }
    cd_rng_free(rng);
    cd_tensor_free(batch);
    cd_dataset_free(ds);
    return rc;
}

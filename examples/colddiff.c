/*
 * colddiff - the command-line front end of libcolddiff. It uses only the
 * public API, so it doubles as an example of embedding the library.
 *
 *   colddiff version
 *   colddiff grid (--data DIR | --images F --labels F) --out FILE.png [options]
 */
#include <colddiff.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what)
{
    fprintf(stderr, "colddiff: %s: %s\n", what, cd_last_error());
    return 1;
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "colddiff: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see 'colddiff --help')\n");
    return 2;
}

/* Parse a whole decimal integer in [lo, hi]; false on junk or overflow. */
static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static void print_help(void)
{
    puts("usage: colddiff <command> [options]\n"
         "\n"
         "commands:\n"
         "  version      print the library version and ABI\n"
         "  grid         write a PNG grid of dataset images\n"
         "\n"
         "colddiff grid options:\n"
         "  --data DIR        MNIST folder (the four IDX files, raw or .gz)\n"
         "  --images FILE     an IDX image file instead of --data (e.g. the\n"
         "  --labels FILE     tests/data slice), with its IDX label file\n"
         "  --split S         train, val or test (default test)\n"
         "  --n N             number of images (default 64)\n"
         "  --cols C          grid columns (default 8)\n"
         "  --seed S          shuffle seed; 0 keeps the split's order: the file\n"
         "                    order for test, the seed-42 split order for\n"
         "                    train and val (default 0)\n"
         "  --map M           range (fixed [-0.5, 0.5]) or percentile (default range)\n"
         "  --out FILE        the PNG to write (required)");
}

typedef struct {
    const char *data, *images, *labels, *out;
    cd_split split;
    int64_t n, cols;
    uint64_t seed;
    cd_pixel_map map;
} grid_opts;

static int parse_grid(int argc, char **argv, grid_opts *o)
{
    *o = (grid_opts){.split = CD_SPLIT_TEST, .n = 64, .cols = 8, .map = CD_PIXELS_RANGE};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help();
            exit(0);
        }
        if (i + 1 >= argc) return usage_error("option '%s' needs a value", a);
        const char *v = argv[++i];
        int64_t x;
        if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--images")) o->images = v;
        else if (!strcmp(a, "--labels")) o->labels = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--split")) {
            if (!strcmp(v, "train")) o->split = CD_SPLIT_TRAIN;
            else if (!strcmp(v, "val")) o->split = CD_SPLIT_VAL;
            else if (!strcmp(v, "test")) o->split = CD_SPLIT_TEST;
            else return usage_error("--split must be train, val or test, not '%s'", v);
        } else if (!strcmp(a, "--n")) {
            if (!parse_i64(v, 1, 100000, &o->n))
                return usage_error("--n must be an integer in 1..100000, not '%s'", v);
        } else if (!strcmp(a, "--cols")) {
            if (!parse_i64(v, 1, 1000, &o->cols))
                return usage_error("--cols must be an integer in 1..1000, not '%s'", v);
        } else if (!strcmp(a, "--seed")) {
            if (!parse_i64(v, 0, INT64_MAX, &x))
                return usage_error("--seed must be a non-negative integer, not '%s'", v);
            o->seed = (uint64_t)x;
        } else if (!strcmp(a, "--map")) {
            if (!strcmp(v, "range")) o->map = CD_PIXELS_RANGE;
            else if (!strcmp(v, "percentile")) o->map = CD_PIXELS_PERCENTILE;
            else return usage_error("--map must be range or percentile, not '%s'", v);
        } else {
            return usage_error("unknown option '%s'", a);
        }
    }
    if (!o->out) return usage_error("%s", "grid needs --out FILE.png");
    if (!o->data == !o->images) return usage_error("%s", "grid needs exactly one of --data or --images");
    if (o->images && !o->labels) return usage_error("%s", "--images needs --labels too");
    return 0;
}

static int cmd_grid(int argc, char **argv)
{
    grid_opts o;
    int rc = parse_grid(argc, argv, &o);
    if (rc) return rc;

    cd_dataset *ds = NULL;
    cd_tensor *batch = NULL;
    cd_rng *rng = NULL;
    int64_t filled = 0;
    rc = 1;
    cd_status st = o.data ? cd_dataset_load_mnist(&ds, o.data)
                          : cd_dataset_load_idx(&ds, o.images, o.labels, o.images, o.labels);
    if (st != CD_OK) { fail("loading the data"); goto done; }
    if (cd_dataset_split(ds, 0.2, 42) != CD_OK) { fail("splitting"); goto done; }
    int64_t count = cd_dataset_count(ds, o.split);
    if (count < 1) {
        fprintf(stderr, "colddiff: the chosen split is empty\n");
        goto done;
    }
    int64_t n = o.n < count ? o.n : count;
    int64_t shape[4] = {n, cd_dataset_channels(ds), cd_dataset_height(ds), cd_dataset_width(ds)};
    if (cd_tensor_create(&batch, 4, shape) != CD_OK) { fail("allocating"); goto done; }
    if (o.seed) {
        if (cd_rng_create(&rng, o.seed) != CD_OK || cd_dataset_shuffle(ds, o.split, rng) != CD_OK) {
            fail("shuffling");
            goto done;
        }
    }
    if (cd_dataset_fill_batch(ds, o.split, 0, batch, NULL, &filled) != CD_OK) {
        fail("reading images");
        goto done;
    }
    if (cd_image_grid_write_png(o.out, batch, o.cols, 2, 128, o.map, -0.5f, 0.5f) != CD_OK) {
        fail("writing the grid");
        goto done;
    }
    printf("colddiff: wrote %" PRId64 " images to %s\n", filled, o.out);
    rc = 0;
done:
    cd_rng_free(rng);
    cd_tensor_free(batch);
    cd_dataset_free(ds);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        print_help();
        return argc < 2 ? 2 : 0;
    }
    if (cd_abi_version() != CD_ABI_VERSION) {
        fprintf(stderr, "colddiff: library ABI %d does not match this program's %d\n",
                (int)cd_abi_version(), CD_ABI_VERSION);
        return 1;
    }
    if (!strcmp(argv[1], "version")) {
        printf("libcolddiff %s (ABI %d)\n", cd_version_string(), (int)cd_abi_version());
        return 0;
    }
    if (!strcmp(argv[1], "grid")) return cmd_grid(argc - 2, argv + 2);
    return usage_error("unknown command '%s'", argv[1]);
}

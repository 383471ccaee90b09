/*
 * cli_util.c - data loading with the tests/data fallback, folders, sample
 * grids and SVG charts for the colddiff subcommands.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *cli_join(char *buf, size_t cap, const char *dir, const char *name)
{
    if ((size_t)snprintf(buf, cap, "%s/%s", dir, name) >= cap) buf[0] = '\0';
    return buf;
}

int cli_mkdirs(const char *dir)
{
    char path[4096];
    if (strlen(dir) >= sizeof path) return ENAMETOOLONG;
    strcpy(path, dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) return errno;
        *p = '/';
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST) return errno;
    /* EEXIST is also what a file of that name gives. */
    struct stat st;
    if (stat(path, &st) != 0) return errno;
    return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
}

/* Create and remove a file next to path, as writing path through a
 * temporary file and a rename will. */
static int probe_folder_of(const char *path)
{
    char probe[4200];
    if ((size_t)snprintf(probe, sizeof probe, "%s.probe.%ld", path, (long)getpid()) >= sizeof probe)
        return ENAMETOOLONG;
    const int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return errno;
    close(fd);
    unlink(probe);
    return 0;
}

int cli_check_output(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return EISDIR;
    return probe_folder_of(path);
}

int cli_prepare_dir(const char *dir)
{
    char inside[4200];
    const int e = cli_mkdirs(dir);
    if (e) return e;
    return probe_folder_of(cli_join(inside, sizeof inside, dir, ".colddiff"));
}

int cli_output_ok(const char *cmd, const char *what, const char *path, bool folder)
{
    const int e = folder ? cli_prepare_dir(path) : cli_check_output(path);
    if (e == 0) return CLI_OK;
    fprintf(stderr, "colddiff %s: cannot write %s %s: %s\n", cmd, what, path, strerror(e));
    return CLI_FAIL;
}

int cli_open_read(const char *path, FILE **f)
{
    *f = NULL;
    /* O_NONBLOCK: opening a FIFO without a writer would wait forever. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return errno;
    struct stat st;
    int e = fstat(fd, &st) != 0 ? errno : !S_ISREG(st.st_mode) ? -1 : 0;
    int flags = e ? 0 : fcntl(fd, F_GETFL);
    if (!e && (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)) e = errno;
    if (!e && !(*f = fdopen(fd, "r"))) e = errno;
    if (e) close(fd);
    return e;
}

const char *cli_strerror(int e)
{
    if (e == -1) return "not a regular file";
    if (e == -2) return "a symbolic link to a missing file";
    return strerror(e);
}

int cli_path_state(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) return 0;
    const int e = errno;
    if (e != ENOENT) return e;
    return lstat(path, &st) == 0 ? -2 : ENOENT;
}

/* Whether dir/name or dir/name.gz is there (whether or not it can be read:
 * the loader then says why not). */
static bool exists_either(char *buf, size_t cap, const char *dir, const char *name)
{
    char gz[512];
    snprintf(gz, sizeof gz, "%s.gz", name);
    if (cli_path_state(cli_join(buf, cap, dir, name)) != ENOENT) return true;
    return cli_path_state(cli_join(buf, cap, dir, gz)) != ENOENT;
}

/* Whether dir holds any of the four MNIST files, in either spelling. */
static bool has_mnist_file(const char *dir)
{
    static const char *const names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    char buf[4096];
    for (int i = 0; i < 4; i++)
        if (exists_either(buf, sizeof buf, dir, names[i])) return true;
    return false;
}

int64_t cli_data_channels, cli_data_size;

cd_status cli_load_data(cd_dataset **out, const char *dir, double val_fraction, uint64_t seed)
{
    char im[4096], lb[4096];
    cd_status st;
    if (cli_data_channels == 2) {
        fprintf(stderr, "colddiff: --channels takes 1 (grey) or 3 (RGB)\n");
        return CD_ERR_RANGE;
    }
    if (has_mnist_file(dir) && (cli_data_channels > 1 || cli_data_size > 0)) {
        fprintf(stderr,
                "colddiff: --channels 3 and --size apply to folders of PNG images; %s "
                "holds MNIST's IDX files (1 x 28 x 28)\n",
                dir);
        return CD_ERR_INVALID_ARGUMENT;
    }
    /* Only when the training files are truly absent (not unreadable) does
     * the t10k pair stand in for them; a folder with no MNIST file at all
     * (a missing one included, whose error the folder loader names) is a
     * folder of PNG images. */
    if (!has_mnist_file(dir)) {
        st = cd_dataset_load_folder(out, dir, cli_data_channels, cli_data_size);
        if (st == CD_ERR_SHAPE && cli_data_size == 0)
            fprintf(stderr, "colddiff: note: --size N centre-crops every image to N x N pixels, so "
                            "that images of different sizes load together\n");
    } else if (!exists_either(im, sizeof im, dir, "train-images-idx3-ubyte") &&
               exists_either(im, sizeof im, dir, "t10k-images-idx3-ubyte") &&
               exists_either(lb, sizeof lb, dir, "t10k-labels-idx1-ubyte")) {
        fprintf(stderr,
                "colddiff: note: %s has only the t10k files; using them for training "
                "and as the test set (the tests/data slice)\n",
                dir);
        st = cd_dataset_load_idx(out, im, lb, im, lb);
    } else {
        st = cd_dataset_load_mnist(out, dir);
    }
    if (st != CD_OK || val_fraction < 0.0) return st;
    st = cd_dataset_split(*out, val_fraction, seed);
    if (st != CD_OK) {
        cd_dataset_free(*out);
        *out = NULL;
    }
    return st;
}

int64_t cli_class_count(const cd_dataset *ds)
{
    const int64_t named = cd_dataset_class_count(ds);
    if (named > 0) return named > 1 ? named : 0;
    /* IDX files name no classes: read the labels, in batches. */
    int64_t bound = 0;
    const int64_t shape[4] = {256, cd_dataset_channels(ds), cd_dataset_height(ds),
                              cd_dataset_width(ds)};
    cd_tensor *x = NULL, *y = NULL;
    const cd_split splits[3] = {CD_SPLIT_TRAIN, CD_SPLIT_VAL, CD_SPLIT_TEST};
    cd_status st = cd_tensor_create(&x, 4, shape);
    if (st == CD_OK) st = cd_tensor_create(&y, 1, shape);
    for (int k = 0; st == CD_OK && k < 3; k++)
        for (int64_t first = 0, got = 0; st == CD_OK && first < cd_dataset_count(ds, splits[k]);
             first += got) {
            st = cd_dataset_fill_batch(ds, splits[k], first, x, y, &got);
            for (int64_t i = 0; st == CD_OK && i < got; i++)
                if ((int64_t)cd_tensor_data(y)[i] + 1 > bound)
                    bound = (int64_t)cd_tensor_data(y)[i] + 1;
        }
    cd_tensor_free(x);
    cd_tensor_free(y);
    return st == CD_OK && bound > 1 ? bound : 0;
}

const char *cli_config_value(const char *text, const char *key, char *buf, size_t cap)
{
    const size_t k = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, key, k) && !strncmp(l + k, " = ", 3)) {
            const size_t n = strcspn(l + k + 3, "\n");
            snprintf(buf, cap, "%.*s", (int)(n < cap ? n : cap - 1), l + k + 3);
            return buf;
        }
    return NULL;
}

/* The number recorded for key in config.txt's text, into *v. */
static bool recorded_number(const char *text, const char *key, double *v)
{
    char buf[64], *end = NULL;
    if (!cli_config_value(text, key, buf, sizeof buf)) return false;
    errno = 0;
    *v = strtod(buf, &end);
    return errno == 0 && end != buf && *end == '\0';
}

void cli_holdout_of(const char *checkpoint, cli_holdout *h)
{
    h->fraction = 0.2;
    h->seed = 42;
    h->config[0] = '\0';
    if (!checkpoint) return;
    char path[4096];
    const char *slash = strrchr(checkpoint, '/');
    if (slash)
        snprintf(path, sizeof path, "%.*s/config.txt", (int)(slash - checkpoint), checkpoint);
    else
        snprintf(path, sizeof path, "config.txt");
    FILE *f = NULL;
    if (cli_open_read(path, &f) != 0) return;
    char text[16384]; /* config.txt is about 1 KB */
    text[fread(text, 1, sizeof text - 1, f)] = '\0';
    fclose(f);
    double fraction = 0, seed = 0;
    const bool both = recorded_number(text, "val_fraction", &fraction) &&
                      recorded_number(text, "seed", &seed) && fraction >= 0 && fraction < 1 &&
                      seed >= 0 && seed <= 9007199254740992.0 && seed == (double)(int64_t)seed;
    if (!both) return;
    if (fraction == 0) {
        fprintf(stderr,
                "colddiff: note: %s records val_fraction = 0: the run held out no images, so "
                "the 20%% (seed 42) split used here holds images it trained on\n",
                path);
        return;
    }
    h->fraction = fraction;
    h->seed = (int64_t)seed;
    snprintf(h->config, sizeof h->config, "%s", path);
}

cd_split cli_default_split(const cd_dataset *ds, const char *dir, const cli_holdout *h)
{
    if (cd_dataset_count(ds, CD_SPLIT_TEST) > 0) return CD_SPLIT_TEST;
    if (h->config[0])
        fprintf(stderr,
                "colddiff: note: %s has no test split; using the validation split the run "
                "held out (%g%%, seed %lld, from %s)\n",
                dir, 100 * h->fraction, (long long)h->seed, h->config);
    else
        fprintf(stderr,
                "colddiff: note: %s has no test split; using the validation split (20%%, seed "
                "42: the images colddiff train holds out by default)\n",
                dir);
    return CD_SPLIT_VAL;
}

const char *const cli_map_names[] = {"percentile", "range", NULL};

cd_status cli_write_grid(const char *path, const cd_tensor *images, int64_t cols, bool range)
{
    return range ? cd_image_grid_write_png(path, images, cols, 2, 128, CD_PIXELS_RANGE, -0.5f, 0.5f)
                 : cd_image_grid_write_png(path, images, cols, 2, 128, CD_PIXELS_PERCENTILE, 0.0f,
                                           1.0f);
}

/* ---- SVG charts ------------------------------------------------------------ */

static double tick_step(double span)
{
    const double raw = span / 5.0, mag = pow(10.0, floor(log10(raw)));
    const double r = raw / mag;
    return mag * (r < 1.5 ? 1.0 : r < 3.5 ? 2.0 : r < 7.5 ? 5.0 : 10.0);
}

/* Ticks of a log axis spanning 10^lo..10^hi, as values (not logs): whole
 * decades when the span is wide, else 1-2-5 or 1..9 times a decade, else
 * a linear 1-2-5 step; the first rule that gives 3 to 12 ticks wins. */
static int log_ticks(double lo, double hi, double *out, int cap)
{
    static const double sets[2][9] = {{1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
    static const int sizes[2] = {3, 9};
    int n = 0;
    if (hi - lo >= 2.0) {
        const double step = fmax(1.0, floor(tick_step(hi - lo) + 0.5));
        for (double k = ceil(lo / step) * step; k <= hi + 1e-9 && n < cap; k += step)
            out[n++] = pow(10.0, k);
        return n;
    }
    for (int r = 0; r < 2; r++) {
        n = 0;
        for (double d = floor(lo); d <= ceil(hi) && n < cap; d += 1.0)
            for (int m = 0; m < sizes[r] && n < cap; m++) {
                const double v = sets[r][m] * pow(10.0, d), l = log10(v);
                if (l >= lo - 1e-9 && l <= hi + 1e-9) out[n++] = v;
            }
        if (n >= 3) return n;
    }
    const double a = pow(10.0, lo), b = pow(10.0, hi), step = tick_step(b - a);
    n = 0;
    for (double v = ceil(a / step) * step; v <= b * (1 + 1e-9) && n < cap; v += step) out[n++] = v;
    return n;
}

static void range_of(const cli_series *s, int n, bool y, bool log_y, double *lo, double *hi)
{
    *lo = INFINITY, *hi = -INFINITY;
    for (int k = 0; k < n; k++)
        for (int64_t i = 0; i < s[k].n; i++) {
            double v = y ? s[k].y[i] : s[k].x[i];
            if (!isfinite(v) || (y && log_y && v <= 0.0)) continue;
            if (y && log_y) v = log10(v);
            if (v < *lo) *lo = v;
            if (v > *hi) *hi = v;
        }
    if (!isfinite(*lo)) *lo = 0.0, *hi = 1.0;
    if (*hi <= *lo) *hi = *lo + 1.0;
}

int cli_write_svg_plot(const char *path, const char *title, const char *xlabel, const char *ylabel,
                       const cli_series *series, int n_series, bool log_y, bool whole_x)
{
    const double W = 640, H = 400, L = 70, R = 150, T = 40, B = 50;
    double x0, x1, y0, y1;
    range_of(series, n_series, false, false, &x0, &x1);
    range_of(series, n_series, true, log_y, &y0, &y1);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return errno;
#define PX(v) (L + ((v)-x0) / (x1 - x0) * (W - L - R))
#define PY(v) (H - B - ((v)-y0) / (y1 - y0) * (H - T - B))
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
            "height=\"100%%\" fill=\"white\"/>\n",
            W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">%s</text>\n",
            (L + W - R) / 2, title);
    double xs = tick_step(x1 - x0);
    if (whole_x && xs < 1.0) xs = 1.0; /* no epoch 1.5 */
    for (double v = ceil(x0 / xs) * xs; v <= x1 + 1e-9 * xs; v += xs)
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%g</text>\n",
                PX(v), T, PX(v), H - B, PX(v), H - B + 16, fabs(v) < 1e-9 * xs ? 0.0 : v);
    /* y ticks as values: a log axis is labelled 0.01, 0.02, 0.05, ... */
    double ticks[64];
    int n_ticks = 0;
    if (log_y) {
        n_ticks = log_ticks(y0, y1, ticks, 64);
    } else {
        const double ys = tick_step(y1 - y0);
        for (double v = ceil(y0 / ys) * ys; v <= y1 + 1e-9 * ys && n_ticks < 64; v += ys)
            ticks[n_ticks++] = fabs(v) < 1e-9 * ys ? 0.0 : v;
    }
    for (int i = 0; i < n_ticks; i++) {
        const double at = log_y ? log10(ticks[i]) : ticks[i];
        fprintf(f,
                "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n",
                L, PY(at), W - R, PY(at), L - 6, PY(at) + 4, ticks[i]);
    }
    fprintf(f,
            "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
            "stroke=\"black\"/>\n",
            L, T, W - L - R, H - T - B);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", (L + W - R) / 2,
            H - 12, xlabel);
    fprintf(f,
            "<text transform=\"translate(16 %.0f) rotate(-90)\" text-anchor=\"middle\">"
            "%s%s</text>\n",
            (T + H - B) / 2, ylabel, log_y ? " (log scale)" : "");
    for (int k = 0; k < n_series; k++) {
        const cli_series *s = &series[k];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", s->color);
        for (int64_t i = 0; i < s->n; i++) {
            double v = s->y[i];
            if (!isfinite(v) || (log_y && v <= 0.0)) continue;
            fprintf(f, "%.1f,%.1f ", PX(s->x[i]), PY(log_y ? log10(v) : v));
        }
        fprintf(f, "\"/>\n");
        /* Markers, so that a curve of one point still shows. */
        for (int64_t i = 0; i < s->n; i++) {
            const double v = s->y[i];
            if (isfinite(v) && !(log_y && v <= 0.0))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(s->x[i]),
                        PY(log_y ? log10(v) : v), s->color);
        }
        fprintf(f,
                "<line x1=\"%.0f\" y1=\"%d\" x2=\"%.0f\" y2=\"%d\" stroke=\"%s\" "
                "stroke-width=\"2\"/><text x=\"%.0f\" y=\"%d\">%s</text>\n",
                W - R + 10, 50 + 18 * k, W - R + 30, 50 + 18 * k, s->color, W - R + 35, 54 + 18 * k,
                s->name);
    }
#undef PX
#undef PY
    fprintf(f, "</svg>\n");
    return cli_commit_file(f, tmp, path);
}

int cli_commit_file(FILE *f, const char *tmp, const char *path)
{
    int e = fflush(f) != 0 || ferror(f) ? (errno ? errno : EIO) : 0;
    if (!e && fsync(fileno(f)) != 0) e = errno;
    if (fclose(f) != 0 && !e) e = errno;
    if (!e && rename(tmp, path) != 0) e = errno;
    if (e) remove(tmp);
    return e;
}

const char *cli_fmt_double(char *buf, double v)
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, 32, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) break;
    }
    return buf;
}

double cli_now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

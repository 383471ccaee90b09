/*
 * cli.h - what the colddiff subcommands share: a declarative option parser
 * (one table per command gives parsing, range checks and --help), error
 * printing in one line, data loading and the model presets. Everything here
 * uses only the public API, so the command line doubles as an example of
 * embedding libcolddiff.
 */
#ifndef COLDDIFF_CLI_H
#define COLDDIFF_CLI_H

#include <colddiff.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes: 0 success, 1 a failure while working, 2 bad usage, 130
 * stopped by Ctrl-C (after saving). */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_INTERRUPTED = 130 };

typedef enum {
    OPT_STR,    /* const char *            */
    OPT_I64,    /* int64_t in [lo, hi]     */
    OPT_F64,    /* double in [lo, hi]      */
    OPT_FLAG,   /* bool, takes no value    */
    OPT_CHOICE, /* int: index into choices */
    OPT_ENUM,   /* int: a value of the library's cd_enum `lo`, by its name */
    OPT_TIMES   /* cli_times: comma list of integers in [lo, hi] */
} cli_opt_type;

#define CLI_MAX_TIMES 16
typedef struct {
    int64_t n;
    int64_t v[CLI_MAX_TIMES];
} cli_times;

typedef struct {
    const char *name; /* "--epochs" */
    cli_opt_type type;
    void *dst;
    double lo, hi;              /* OPT_I64, OPT_F64, OPT_TIMES; OPT_ENUM: lo is the cd_enum */
    const char *const *choices; /* OPT_CHOICE, NULL-terminated */
    const char *help;
    bool *seen; /* optional: set when given */
} cli_opt;

typedef struct {
    const char *name, *args, *summary; /* "train", "[options]", one line */
    const cli_opt *opts;
    int n_opts;
    const char *positional; /* name of one positional argument, or NULL */
    const char **pos_dst;
} cli_command;

/* When set, every command returns CLI_OK right after its options are
 * parsed and checked, before it reads, writes or computes anything (the
 * option parser's fuzz target sets it). */
extern bool cli_check_only;

/* Parse argv (after the command name) into the table's destinations.
 * Returns CLI_OK, CLI_USAGE (after printing one line), or -1 when --help
 * printed the command's help (exit 0). */
int cli_parse(const cli_command *cmd, int argc, char **argv);
void cli_print_help(const cli_command *cmd);

/* Give the integer flag `flag` of opts (OPT_I64 or OPT_TIMES) the bounds
 * the library states for the option it sets (cd_<object>_option_info), so
 * that the command line takes what the library takes. The table's own
 * bounds stay if the library does not describe the key. */
typedef enum { CLI_LIB_DECODER, CLI_LIB_TRAINER, CLI_LIB_CLASSIFIER } cli_lib_object;
void cli_library_bounds(cli_opt *opts, int n_opts, const char *flag, cli_lib_object object,
                        int key);

/* "colddiff: what: <cd_last_error()>" on stderr; returns CLI_FAIL. */
int cli_fail(const char *what);
/* "colddiff CMD: message" on stderr; returns CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...);

/* MNIST from dir: the four IDX files, or, when only the t10k pair is there
 * (the tests/data slice), that pair as both training pool and test set,
 * with a note on stderr. Then the seeded train/validation split, unless
 * val_fraction is negative: then all training images train, in file order. */
cd_status cli_load_data(cd_dataset **out, const char *dir, double val_fraction, uint64_t seed);

/* How cli_load_data reads a folder of PNG images: as 1 or 3 channels (0:
 * as the first image is) and centre-cropped to size x size (0: as they
 * are); the --channels and --size of the commands that take --data. For
 * MNIST both must stay 0. */
extern int64_t cli_data_channels, cli_data_size;
/* clang-format off */
#define CLI_DATA_SHAPE_OPTS                                                                  \
    {"--channels", OPT_I64, &cli_data_channels, 0, 3, NULL,                                  \
     "PNG folder: read as 1 (grey) or 3 (RGB) channels (0: as the first image is)", NULL},  \
    {"--size", OPT_I64, &cli_data_size, 0, 4096, NULL,                                       \
     "PNG folder: centre-crop every image to SIZE x SIZE (0: all must be one size)", NULL}
/* clang-format on */

/* The classes a class-conditional model of ds needs: its named classes, or
 * for labelled IDX files without names one more than the largest label;
 * 0 when there are fewer than two. */
int64_t cli_class_count(const cd_dataset *ds);

/* The value of `key` in the text of a config.txt (a "key = value" line)
 * into buf (cut to cap - 1 bytes), or NULL when no line has it. */
const char *cli_config_value(const char *text, const char *key, char *buf, size_t cap);

/* Which images of data without a test split (a PNG folder) are held out:
 * train's defaults (20%, seed 42), or, for a checkpoint of a colddiff train
 * run, the fraction and seed its config.txt records, so that restore and
 * eval read the images that run never trained on. */
typedef struct {
    double fraction;
    int64_t seed;
    char config[4096]; /* the config.txt they came from; "" for the defaults */
} cli_holdout;

/* h for checkpoint (NULL: the shipped model, the defaults). A config.txt
 * that is absent, unreadable or records no split leaves the defaults; one
 * that records no validation images too, with a note on stderr. */
void cli_holdout_of(const char *checkpoint, cli_holdout *h);

/* The split that restore, eval and grid read when none is asked for: the
 * test split, or for data without one (a PNG folder) the validation split
 * that h describes, with a note naming dir on stderr. */
cd_split cli_default_split(const cd_dataset *ds, const char *dir, const cli_holdout *h);

/* Open path for reading as a regular file without ever blocking (a FIFO is
 * refused): 0, or an errno (ENOENT: it does not exist), or -1 for a file
 * that is not a regular one. cli_strerror() words either code. */
int cli_open_read(const char *path, FILE **f);
const char *cli_strerror(int e);
/* Whether anything is at path: 0 if so (readable or not), ENOENT if
 * nothing is, -2 for a symbolic link to nothing, or the errno of a path
 * that cannot be looked at (ELOOP, EACCES on a folder). Only ENOENT means
 * "missing"; callers report anything else. */
int cli_path_state(const char *path);

/* Folder helpers: create dir and its parents (0, or the errno; ENOTDIR when
 * a file is in the way); join dir and name. */
int cli_mkdirs(const char *dir);
const char *cli_join(char *buf, size_t cap, const char *dir, const char *name);

/* Checks of an output before any long work, so that a bad --out fails at
 * once and with its reason. cli_check_output: a file can be written at
 * path by a temporary file and a rename (its folder takes a new file, and
 * path is no folder). cli_prepare_dir: dir exists or is made, and takes
 * new files. Both return 0 or an errno. cli_output_ok prints "colddiff
 * CMD: cannot write WHAT PATH: reason" and returns CLI_FAIL if not. */
int cli_check_output(const char *path);
int cli_prepare_dir(const char *dir);
int cli_output_ok(const char *cmd, const char *what, const char *path, bool folder);

/* Seconds on the monotonic clock, for durations. */
double cli_now_sec(void);

/* v in the fewest significant digits (15 to 17) that read back as the
 * same double: "0.0002", not "0.00020000000000000001". buf holds 32. */
const char *cli_fmt_double(char *buf, double v);

/* Images N x C x H x W (C = 1 or 3) as a PNG grid with the report's
 * percentile map, or with range, the data range [-0.5, 0.5] to 0..255. */
cd_status cli_write_grid(const char *path, const cd_tensor *images, int64_t cols, bool range);

/* --map for sample and restore: "percentile" (0, the default) or "range". */
extern const char *const cli_map_names[];
#define CLI_MAP_HELP                                                                       \
    "pixel mapping: each image's 1st..99th percentiles (the report's), or the data range " \
    "[-0.5, 0.5], which keeps colours and contrast as they are"

/* Plain SVG line charts: series of (x, y) points with names and colours;
 * a log y axis is ticked at decades (or 1-2-5 within them), whole_x keeps
 * x ticks on whole numbers (epochs, steps). */
typedef struct {
    const char *name, *color;
    const double *x, *y;
    int64_t n;
} cli_series;
/* Returns 0 or the errno of the failed write. */
int cli_write_svg_plot(const char *path, const char *title, const char *xlabel, const char *ylabel,
                       const cli_series *series, int n_series, bool log_y, bool whole_x);

/* Finish a file written to tmp: flush, fsync, close, rename to path (tmp
 * is removed on failure). Returns 0 or the errno of the first failure. */
int cli_commit_file(FILE *f, const char *tmp, const char *path);

/* The subcommands. */
/* The subcommands, ending with a NULL name (cli_commands.c). */
typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} cli_subcommand;
extern const cli_subcommand cli_subcommands[];

int cmd_grid(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_schedule(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_fetch_mnist(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_train_classifier(int argc, char **argv);
int cmd_reproduce(int argc, char **argv);

#endif /* COLDDIFF_CLI_H */

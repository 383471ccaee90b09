/*
 * cmd_schedule.c - colddiff schedule: the report's Figure 5, alpha-bar_t
 * against t, for a preset or a schedule given by flags, optionally next to
 * the other presets' noise schedules; or the arrays as CSV, also of the
 * schedule a model file holds.
 */
#include "cli_model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* beta_0..T and alpha-bar_0..T (malloc'ed, T + 1 floats each): of m, or
 * with a model file given, of the degradation stored in it. */
static int arrays(const cli_model *m, const char *model, float **beta, float **abar, int64_t *T)
{
    cd_schedule *s = NULL;
    cd_decoder *dec = NULL;
    cd_degradation *deg = NULL;
    *beta = *abar = NULL;
    if (model) {
        if (cd_model_load(model, &dec, &deg) != CD_OK) return cli_fail("loading the model");
        *T = cd_degradation_T(deg);
    } else {
        if (cli_model_schedule(m, &s) != CD_OK) return cli_fail("the schedule");
        *T = m->T;
    }
    *beta = malloc((size_t)(*T + 1) * sizeof **beta);
    *abar = malloc((size_t)(*T + 1) * sizeof **abar);
    int rc = CLI_OK;
    if (!*beta || !*abar) {
        fprintf(stderr, "colddiff: out of memory\n");
        rc = CLI_FAIL;
    } else if ((model ? cd_degradation_copy_schedule(deg, *beta, *abar, *T + 1)
                      : cd_schedule_copy_arrays(s, *beta, *abar, *T + 1)) != CD_OK) {
        rc = cli_fail("the schedule");
    }
    cd_schedule_free(s);
    cd_decoder_free(dec);
    cd_degradation_free(deg);
    return rc;
}

/* alpha-bar_0..T as doubles, with t as x. */
static int curve(const cli_model *m, const char *model, double **x, double **y, int64_t *T)
{
    float *beta = NULL, *ab = NULL;
    int rc = arrays(m, model, &beta, &ab, T);
    *x = rc == CLI_OK ? malloc((size_t)(*T + 1) * sizeof **x) : NULL;
    *y = rc == CLI_OK ? malloc((size_t)(*T + 1) * sizeof **y) : NULL;
    if (rc == CLI_OK && (!*x || !*y)) {
        fprintf(stderr, "colddiff: out of memory\n");
        rc = CLI_FAIL;
    }
    for (int64_t t = 0; rc == CLI_OK && t <= *T; t++) (*x)[t] = (double)t, (*y)[t] = ab[t];
    free(beta);
    free(ab);
    return rc;
}

/* t, beta_t, alpha-bar_t per line, through a temporary file. */
static int write_csv(const cli_model *m, const char *model, const char *path)
{
    float *beta = NULL, *ab = NULL;
    int64_t T = 0;
    int rc = arrays(m, model, &beta, &ab, &T);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = rc == CLI_OK ? fopen(tmp, "w") : NULL;
    int e = rc == CLI_OK && !f ? errno : 0;
    if (f) {
        fprintf(f, "t,beta,alpha_bar\n");
        for (int64_t t = 0; t <= T; t++)
            fprintf(f, "%lld,%.9g,%.9g\n", (long long)t, (double)beta[t], (double)ab[t]);
        e = cli_commit_file(f, tmp, path);
    }
    if (e) {
        fprintf(stderr, "colddiff: cannot write %s: %s\n", path, strerror(e));
        rc = CLI_FAIL;
    }
    free(beta);
    free(ab);
    return rc;
}

int cmd_schedule(int argc, char **argv)
{
    cli_model m;
    const int preset = cli_model_from_preset_flag(&m, argc, argv);
    const char *out = NULL, *csv = NULL, *model = NULL;
    int dummy = 0;
    bool compare = false, log_y = false;
    const cli_opt opts[] = {
        {"--out", OPT_STR, &out, 0, 0, NULL, "the SVG to write", NULL},
        {"--csv", OPT_STR, &csv, 0, 0, NULL, "the arrays to write as CSV: t,beta,alpha_bar", NULL},
        {"--checkpoint", OPT_STR, &model, 0, 0, NULL, "the schedule stored in a model file", NULL},
        {"--preset", OPT_CHOICE, &dummy, 0, 0, cli_preset_names, "a report run's schedule", NULL},
        {"--schedule", OPT_CHOICE, &m.schedule, 0, 0, cli_schedule_names, "schedule kind", NULL},
        {"--T", OPT_I64, &m.T, 1, 100000, NULL, "steps (1000)", NULL},
        {"--beta", OPT_F64, &m.beta, 1e-12, 1e6, NULL, "constant beta (0.001)", NULL},
        {"--beta-min", OPT_F64, &m.beta_min, 1e-12, 1, NULL, "linear start (1e-4)", NULL},
        {"--beta-max", OPT_F64, &m.beta_max, 1e-12, 1, NULL, "linear end (0.02)", NULL},
        {"--cosine-s", OPT_F64, &m.cosine_s, 0, 1, NULL, "cosine offset (0.008)", NULL},
        {"--beta-clip", OPT_F64, &m.beta_clip, 1e-12, 1, NULL, "cosine clip (0.999)", NULL},
        {"--compare", OPT_FLAG, &compare, 0, 0, NULL, "also draw the report's four noise schedules",
         NULL},
        {"--log", OPT_FLAG, &log_y, 0, 0, NULL, "logarithmic alpha-bar axis", NULL},
    };
    const cli_command cmd = {"schedule",
                             "--out alpha.svg | --csv F.csv [--preset P | --checkpoint "
                             "MODEL | schedule flags]",
                             "Plot alpha-bar_t against t (the report's Figure 5), or list beta_t "
                             "and alpha-bar_t\nas CSV; of a preset, of flags, or of the schedule "
                             "a model file holds.",
                             opts,
                             (int)(sizeof opts / sizeof opts[0]),
                             NULL,
                             NULL};
    const int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!out && !csv) return cli_usage("schedule", "--out FILE.svg or --csv FILE.csv is required");
    const int bad = cli_model_check(&m, "schedule");
    if (bad) return bad;
    if (cli_check_only) return CLI_OK;
    if (out && cli_output_ok("schedule", "the plot", out, false) != CLI_OK) return CLI_FAIL;
    if (csv && cli_output_ok("schedule", "the CSV", csv, false) != CLI_OK) return CLI_FAIL;
    if (csv && write_csv(&m, model, csv) != CLI_OK) return CLI_FAIL;
    if (csv) printf("colddiff: wrote %s\n", csv);
    if (!out) return CLI_OK;
    static const char *const colors[] = {"#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e"};
    cli_series s[5];
    double *mem[10] = {0};
    int n = 0, ret = CLI_OK;
    char names[5][64];
    const int presets[4] = {0, 1, 2, 4}; /* the noise presets */
    for (int k = -1; k < (compare ? 4 : 0) && ret == CLI_OK; k++) {
        cli_model c = m;
        if (k >= 0) cli_model_preset(&c, presets[k]);
        if (k >= 0 && preset == presets[k]) continue;
        int64_t T = 0;
        ret = curve(&c, k < 0 ? model : NULL, &mem[2 * n], &mem[2 * n + 1], &T);
        snprintf(names[n], sizeof names[n], "%s",
                 k >= 0        ? cli_preset_names[presets[k]]
                 : model       ? "model"
                 : preset >= 0 ? cli_preset_names[preset]
                               : cli_schedule_names[m.schedule]);
        s[n] = (cli_series){names[n], colors[n], mem[2 * n], mem[2 * n + 1], T + 1};
        n++;
    }
    const int e = ret == CLI_OK
                      ? cli_write_svg_plot(out, "alpha-bar_t", "t", "alpha-bar", s, n, log_y, true)
                      : 0;
    if (e) {
        fprintf(stderr, "colddiff: cannot write %s: %s\n", out, strerror(e));
        ret = CLI_FAIL;
    }
    if (ret == CLI_OK) printf("colddiff: wrote %s\n", out);
    for (int i = 0; i < 10; i++) free(mem[i]);
    return ret;
}
